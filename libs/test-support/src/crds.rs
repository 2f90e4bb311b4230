//! The operator's CRDs on a test control plane, and `OpenBaoCluster`
//! objects written as raw JSON (so tests see exactly what the API server
//! stores and defaults, not what the Rust types would fill in).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

use crate::ControlPlane;
use crate::wait::{poll_until, poll_until_ok};

/// The operator's namespace and its controller's leader Lease, as
/// `manifests/base` installs them.
pub const OPERATOR_NAMESPACE: &str = "openbao-operator-system";
pub const OPERATOR_LEASE: &str = "openbao-operator-controller";
/// The operator's ServiceAccount, as the API server names its user.
pub const OPERATOR_USER: &str = "system:serviceaccount:openbao-operator-system:openbao-operator";

/// The RBAC kinds of the operator's install (`manifests/base`).
const RBAC_KINDS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

impl ControlPlane {
    /// The operator's namespace, ServiceAccount and RBAC exactly as
    /// `manifests/base` ships them (rendered by the cached `kubectl
    /// kustomize`), without its Deployment: a controller run by a test can
    /// then act as that ServiceAccount and hold only what a user's install
    /// grants it.
    pub async fn install_operator_rbac(&self) -> anyhow::Result<()> {
        self.apply_kustomization("base", |kind| RBAC_KINDS.contains(&kind))
            .await
    }

    /// [`Self::install_operator_rbac`] for the multi-tenant install
    /// (`manifests/overlays/multi-tenant`): no Secret access in the
    /// controller's ClusterRole, the tenants' roles added.
    pub async fn install_operator_rbac_multi_tenant(&self) -> anyhow::Result<()> {
        self.apply_kustomization("overlays/multi-tenant", |kind| RBAC_KINDS.contains(&kind))
            .await
    }

    /// Onboards `namespace` in the multi-tenant install (an OpenBaoTenant
    /// named after it) and waits until the controller reports it Ready.
    pub async fn onboard_tenant(&self, namespace: &str) -> anyhow::Result<()> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "openbao.org",
            "v1alpha1",
            "OpenBaoTenant",
        ));
        let api: Api<DynamicObject> = Api::all_with(self.client().await?, &resource);
        let tenant: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "openbao.org/v1alpha1",
            "kind": "OpenBaoTenant",
            "metadata": {"name": namespace},
            "spec": {"namespace": namespace},
        }))?;
        api.patch(
            namespace,
            &PatchParams::apply("test-support").force(),
            &Patch::Apply(&tenant),
        )
        .await?;
        poll_until(Duration::from_secs(60), "the tenant Ready", || async {
            let tenant = api.get(namespace).await?;
            Ok(tenant.data["status"]["conditions"]
                .as_array()
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                }))
        })
        .await
    }

    /// The admission policies and bindings of `manifests/admission`.
    pub async fn install_admission_policies(&self) -> anyhow::Result<()> {
        self.apply_kustomization("admission", |_| true).await
    }

    /// The whole install as a user applies it (`kubectl apply -k
    /// manifests/<folder>`): CRDs, RBAC and the controller Deployment, whose
    /// controller gets [`Self::operator_flags`] and `extra_args` on top of
    /// its own.
    pub async fn install_operator(&self, folder: &str, extra_args: &[&str]) -> anyhow::Result<()> {
        let mut flags = self.operator_flags().await?;
        flags.extend(extra_args.iter().map(|a| (*a).to_owned()));
        self.apply_kustomization_with(
            folder,
            |_| true,
            |object| {
                if object
                    .types
                    .as_ref()
                    .is_some_and(|t| t.kind == "Deployment")
                {
                    let container = &mut object.data["spec"]["template"]["spec"]["containers"][0];
                    if let Some(args) = container["args"].as_array_mut() {
                        args.extend(flags.iter().map(|f| serde_json::json!(f)));
                    }
                }
            },
        )
        .await
    }

    /// The flags a controller pod needs here on top of an install's: the
    /// issuer, a loopback URL the pods cannot reach, so OpenBao fetches the
    /// keys through the in-cluster name (which anonymous discovery allows).
    pub async fn operator_flags(&self) -> anyhow::Result<Vec<String>> {
        self.allow_anonymous_issuer_discovery().await?;
        Ok(vec![
            format!("--service-account-issuer={}", self.issuer()),
            "--oidc-jwks-url=https://kubernetes.default.svc/openid/v1/jwks".to_owned(),
        ])
    }

    /// The pod holding the controller's leader Lease, once one does.
    pub async fn operator_leader(&self, within: Duration) -> anyhow::Result<String> {
        let leases: Api<Lease> = Api::namespaced(self.client().await?, OPERATOR_NAMESPACE);
        poll_until_ok(within, "a controller pod to hold the leader Lease", || {
            let leases = leases.clone();
            async move {
                Ok(leases
                    .get_opt(OPERATOR_LEASE)
                    .await?
                    .and_then(|l| l.spec)
                    .and_then(|s| s.holder_identity)
                    .filter(|h| !h.is_empty()))
            }
        })
        .await
    }

    async fn apply_kustomization(
        &self,
        folder: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        self.apply_kustomization_with(folder, wanted, |_| {}).await
    }

    /// Applies the objects of `manifests/<folder>` (rendered by the cached
    /// `kubectl kustomize`) whose kind `wanted` accepts, each first passed
    /// to `tune`.
    async fn apply_kustomization_with(
        &self,
        folder: &str,
        wanted: impl Fn(&str) -> bool,
        tune: impl Fn(&mut DynamicObject),
    ) -> anyhow::Result<()> {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../manifests")
            .join(folder);
        let output = std::process::Command::new(crate::tools::kubernetes("kubectl")?)
            .arg("kustomize")
            .arg(&base)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "kubectl kustomize {} failed: {}",
            base.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let client = self.client().await?;
        for document in serde_yaml_ng::Deserializer::from_slice(&output.stdout) {
            let mut object: DynamicObject = serde::Deserialize::deserialize(document)?;
            let Some(types) = object.types.clone() else {
                continue;
            };
            if !wanted(&types.kind) {
                continue;
            }
            tune(&mut object);
            let gvk = GroupVersionKind::try_from(&types)?;
            let resource = ApiResource::from_gvk(&gvk);
            let name = object.metadata.name.clone().unwrap_or_default();
            let api: Api<DynamicObject> = match &object.metadata.namespace {
                Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            api.patch(
                &name,
                &PatchParams::apply("test-support").force(),
                &Patch::Apply(&object),
            )
            .await?;
        }
        Ok(())
    }

    /// Applies every CRD of `lifecycle_types` and waits until each is
    /// established (served).
    pub async fn install_crds(&self) -> anyhow::Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client().await?);
        for crd in lifecycle_types::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(
                &name,
                &PatchParams::apply("test-support").force(),
                &Patch::Apply(&crd),
            )
            .await?;
            poll_until(Duration::from_secs(30), "the CRD to be established", || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let crd = crds.get(&name).await?;
                    Ok(crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    }))
                }
            })
            .await?;
        }
        Ok(())
    }
}

/// `OpenBaoCluster` objects in `namespace`, untyped.
pub fn openbao_clusters(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(lifecycle_types::API_GROUP, "v1alpha1", "OpenBaoCluster");
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk))
}

/// An `OpenBaoCluster` named `name` with exactly `spec`.
pub fn openbao_cluster(name: &str, spec: serde_json::Value) -> DynamicObject {
    let value = serde_json::json!({
        "apiVersion": "openbao.org/v1alpha1",
        "kind": "OpenBaoCluster",
        "metadata": {"name": name},
        "spec": spec,
    });
    serde_json::from_value(value).expect("an OpenBaoCluster object is valid JSON for DynamicObject")
}
