//! The OpenBao pods' own ServiceAccount and the RoleBinding that grants it,
//! in the cluster's namespace only, the fixed ClusterRole
//! [`OPENBAO_PODS_CLUSTER_ROLE`] (`manifests/base/openbao-pods-cluster-role.yaml`):
//! pods `get` and `patch` for Kubernetes service registration (its own
//! pod's labels) and `list` for Raft auto-join, nothing else.
//!
//! Why a fixed ClusterRole and no Role per cluster: Kubernetes lets a writer
//! create a Role only with permissions it holds itself (or `escalate`), so a
//! per-cluster Role granting pod writes would force the controller to hold
//! pod writes in every namespace. A RoleBinding may instead reference a
//! role the writer does not hold if it has `bind` on that role's name; the
//! controller holds `bind` on this one ClusterRole and nothing else.
//!
//! The price: one shared role cannot name each cluster's pods
//! (`resourceNames` `<c>-0` ... `<c>-8`), so `get` and `patch` reach every
//! pod in the cluster's namespace, as before. Narrowing them per cluster
//! would need a per-cluster Role and therefore pod writes for the
//! controller again, which is the larger risk: the controller's reach is
//! every namespace, a cluster's is its own.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::RoleBinding;
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::{RenderError, from_json, metadata_json, name_and_namespace, owned_metadata};

/// The ClusterRole the install manifests ship for the OpenBao pods, the
/// only role the controller may bind.
pub const OPENBAO_PODS_CLUSTER_ROLE: &str = "openbao-operator-openbao-pods";

/// The ServiceAccount; cloud workload-identity annotations go here.
pub fn service_account(cluster: &OpenBaoCluster) -> Result<ServiceAccount, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    let mut metadata = owned_metadata(cluster, names::service_account(name))?;
    if let Some(identity) = &cluster.spec.unseal.workload_identity
        && !identity.service_account_annotations.is_empty()
    {
        metadata.annotations = Some(identity.service_account_annotations.clone());
    }
    from_json(
        "ServiceAccount",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata_json(&metadata)?}),
    )
}

/// Name of the RoleBinding. Not `names::role_binding`: that name belonged to
/// the binding of the former per-cluster Role, and a RoleBinding's `roleRef`
/// is immutable, so applying a ClusterRole reference under the old name
/// would fail on every cluster created before.
pub fn role_binding_name(cluster: &str) -> String {
    format!("{cluster}-openbao-pods")
}

/// Grants [`OPENBAO_PODS_CLUSTER_ROLE`] to the cluster's ServiceAccount in
/// the cluster's namespace.
pub fn role_binding(cluster: &OpenBaoCluster) -> Result<RoleBinding, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    from_json(
        "RoleBinding",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata_json(&owned_metadata(cluster, role_binding_name(name))?)?,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPENBAO_PODS_CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": names::service_account(name), "namespace": namespace}],
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use k8s_openapi::api::rbac::v1::ClusterRole;
    use lifecycle_types::cluster::WorkloadIdentity;

    #[test]
    fn rbac_golden() {
        let cluster = fixtures::development();
        insta::assert_yaml_snapshot!("service_account", service_account(&cluster).unwrap());
        insta::assert_yaml_snapshot!("role_binding", role_binding(&cluster).unwrap());
    }

    #[test]
    fn the_binding_grants_the_shipped_cluster_role_to_the_clusters_account_only() {
        let binding = role_binding(&fixtures::development()).unwrap();
        assert_eq!(binding.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(binding.role_ref.name, OPENBAO_PODS_CLUSTER_ROLE);
        let subjects = binding.subjects.unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(
            (
                subjects[0].kind.as_str(),
                subjects[0].name.as_str(),
                subjects[0].namespace.as_deref()
            ),
            ("ServiceAccount", "dev-serviceaccount", Some("team-a"))
        );
        assert_ne!(
            binding.metadata.name.unwrap(),
            names::role_binding("dev"),
            "the old name's roleRef points at a Role and cannot be changed"
        );
    }

    /// The manifest the controller's `bind` names is the role referenced
    /// here, and it grants pods `get`, `list`, `patch` and nothing else.
    #[test]
    fn the_shipped_cluster_role_grants_pod_labels_and_listing_only() {
        let role: ClusterRole = serde_yaml_ng::from_str(include_str!(
            "../../../../manifests/base/openbao-pods-cluster-role.yaml"
        ))
        .unwrap();
        assert_eq!(
            role.metadata.name.as_deref(),
            Some(OPENBAO_PODS_CLUSTER_ROLE)
        );
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].api_groups.as_deref(), Some(&[String::new()][..]));
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["pods".to_owned()][..])
        );
        assert_eq!(rules[0].verbs, ["get", "list", "patch"]);
        assert!(rules[0].resource_names.is_none());
    }

    #[test]
    fn workload_identity_annotates_the_service_account() {
        let mut cluster = fixtures::aws_kms();
        cluster.spec.unseal.credentials_secret_ref = None;
        cluster.spec.unseal.workload_identity = Some(WorkloadIdentity {
            service_account_annotations: [(
                "eks.amazonaws.com/role-arn".to_owned(),
                "arn:aws:iam::1:role/bao".to_owned(),
            )]
            .into(),
            pod_labels: Default::default(),
        });
        let account = service_account(&cluster).unwrap();
        assert_eq!(
            account.metadata.annotations.unwrap()["eks.amazonaws.com/role-arn"],
            "arn:aws:iam::1:role/bao"
        );
    }
}
