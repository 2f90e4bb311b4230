//! The operator's CRDs on a test control plane, and `OpenBaoCluster`
//! objects written as raw JSON (so tests see exactly what the API server
//! stores and defaults, not what the Rust types would fill in).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

use crate::ControlPlane;
use crate::wait::poll_until;

/// The fixed ClusterRole the controller binds to each cluster's pods
/// (shipped in `manifests/base`).
const OPENBAO_PODS_CLUSTER_ROLE: &str =
    include_str!("../../../manifests/base/openbao-pods-cluster-role.yaml");

impl ControlPlane {
    /// What the install manifests provide that a controller running in a
    /// test (as the admin, outside the install) needs: the pods'
    /// ClusterRole its RoleBindings reference.
    pub async fn install_operator_roles(&self) -> anyhow::Result<()> {
        let role: k8s_openapi::api::rbac::v1::ClusterRole =
            serde_yaml_ng::from_str(OPENBAO_PODS_CLUSTER_ROLE)?;
        let name = role.metadata.name.clone().unwrap_or_default();
        Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(self.client().await?)
            .patch(
                &name,
                &PatchParams::apply("test-support").force(),
                &Patch::Apply(&role),
            )
            .await?;
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
