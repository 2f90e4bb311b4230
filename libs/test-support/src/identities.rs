//! Wires the operator's identities into a test OpenBao: JWT auth trusting the
//! local control plane's service-account issuer (through its OIDC discovery
//! document, as production does), the policies from `policies/` and the JWT
//! roles from `policies/jwt-roles.hcl`.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, Patch, PatchParams};
use lifecycle_types::identities::{Identity, SubjectVars, jwt_roles};
use reqwest::Method;
use serde_json::json;

use crate::{BaoCluster, ControlPlane};

/// Mount path of the JWT auth method in tests.
pub const JWT_MOUNT: &str = "jwt";

/// The metadata.uid [`BaoCluster::install_operator_identities`] binds the
/// controller's role to (its audience names the cluster's uid).
pub const TEST_CLUSTER_UID: &str = "00000000-0000-4000-8000-00000000c1a5";

impl ControlPlane {
    /// Lets anonymous clients (OpenBao) read the issuer's discovery document
    /// and JWKS, which Kubernetes only grants to service accounts by default.
    pub async fn allow_anonymous_issuer_discovery(&self) -> anyhow::Result<()> {
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client().await?);
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "service-account-issuer-discovery-anonymous"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:service-account-issuer-discovery"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}],
        }))?;
        bindings
            .patch(
                "service-account-issuer-discovery-anonymous",
                &PatchParams::apply("test-support"),
                &Patch::Apply(&binding),
            )
            .await?;
        Ok(())
    }

    /// A projected-style token (TokenRequest API) for `namespace/name`,
    /// creating the namespace and ServiceAccount if needed.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
        lifetime: Duration,
    ) -> anyhow::Result<String> {
        let client = self.client().await?;
        let apply = PatchParams::apply("test-support");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )?;
        namespaces
            .patch(namespace, &apply, &Patch::Apply(&ns))
            .await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
        let account: ServiceAccount = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
        )?;
        accounts
            .patch(name, &apply, &Patch::Apply(&account))
            .await?;
        let request = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": lifetime.as_secs()},
        });
        let issued: serde_json::Value = accounts
            .create_subresource("token", name, &Default::default(), &request)
            .await
            .with_context(|| format!("TokenRequest for {namespace}/{name}"))?;
        issued["status"]["token"]
            .as_str()
            .map(str::to_owned)
            .context("TokenRequest returned no token")
    }
}

impl BaoCluster {
    /// Enables JWT auth at [`JWT_MOUNT`], trusting `plane`'s issuer through
    /// its discovery document, and installs every policy and JWT role: the
    /// controller's bound to its audience for the cluster `vars` names
    /// with uid [`TEST_CLUSTER_UID`], the Jobs' to `openbao-internal`.
    pub async fn install_operator_identities(
        &self,
        plane: &ControlPlane,
        vars: &SubjectVars<'_>,
    ) -> anyhow::Result<()> {
        self.install_operator_identities_for(plane, vars, TEST_CLUSTER_UID, "openbao-internal")
            .await
    }

    /// [`Self::install_operator_identities`] for the cluster with `uid`,
    /// the Jobs' roles bound to `jobs_audience` (as self-init renders them
    /// for `spec.selfInit.oidc.audience`).
    pub async fn install_operator_identities_for(
        &self,
        plane: &ControlPlane,
        vars: &SubjectVars<'_>,
        uid: &str,
        jobs_audience: &str,
    ) -> anyhow::Result<()> {
        plane.allow_anonymous_issuer_discovery().await?;
        let leader = self.leader().await?;
        self.expect_ok(
            leader,
            Method::POST,
            &format!("sys/auth/{JWT_MOUNT}"),
            json!({"type": "jwt"}),
        )
        .await?;
        self.expect_ok(
            leader,
            Method::POST,
            &format!("auth/{JWT_MOUNT}/config"),
            json!({
                "oidc_discovery_url": plane.issuer(),
                "oidc_discovery_ca_pem": plane.ca_pem,
                "bound_issuer": plane.issuer(),
            }),
        )
        .await?;
        for identity in Identity::ALL {
            self.expect_ok(
                leader,
                Method::PUT,
                &format!("sys/policies/acl/{}", identity.policy_name()),
                json!({"policy": identity.policy_hcl()}),
            )
            .await?;
        }
        for role in jwt_roles()? {
            let mut body = role.request_body(vars);
            body["bound_audiences"] = json!(role.audiences(vars, uid, jobs_audience));
            self.expect_ok(
                leader,
                Method::POST,
                &format!("auth/{JWT_MOUNT}/role/{}", role.name),
                body,
            )
            .await?;
        }
        Ok(())
    }

    /// A root-token request that must succeed.
    pub async fn expect_ok(
        &self,
        index: usize,
        method: Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let (status, answer) = self.request(index, method, path, Some(body)).await?;
        anyhow::ensure!(status.is_success(), "{path} answered {status}: {answer}");
        Ok(answer)
    }
}

/// The body of the `bao write <path> key=value ...` command quoted in
/// backticks in `message` (what the controller prints as a fix), as the
/// JSON an API write takes; `None` when the message quotes no such command.
pub fn bao_write_body(
    message: &str,
    path: &str,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let command = message
        .split('`')
        .find(|part| part.starts_with(&format!("bao write {path} ")))?;
    command
        .split_whitespace()
        .skip(3)
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.to_owned(), serde_json::json!(value)))
        })
        .collect()
}
