//! The OpenBao pods' own ServiceAccount and the Role their Kubernetes
//! service registration (label its own pod) and auto-join (list the
//! cluster's pods) need, and nothing else.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::{RenderError, from_json, metadata_json, name_and_namespace, owned_metadata};

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

/// Pods only: `get`, `update` and `patch` for service registration's
/// labels, `list` for auto-join. Kubernetes RBAC cannot narrow this to the
/// cluster's own pods by label; the namespace is the boundary.
pub fn role(cluster: &OpenBaoCluster) -> Result<Role, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    from_json(
        "Role",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata_json(&owned_metadata(cluster, names::role(name))?)?,
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "update", "patch"]}],
        }),
    )
}

pub fn role_binding(cluster: &OpenBaoCluster) -> Result<RoleBinding, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    from_json(
        "RoleBinding",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata_json(&owned_metadata(cluster, names::role_binding(name))?)?,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names::role(name)},
            "subjects": [{"kind": "ServiceAccount", "name": names::service_account(name), "namespace": namespace}],
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use lifecycle_types::cluster::WorkloadIdentity;

    #[test]
    fn rbac_golden() {
        let cluster = fixtures::development();
        insta::assert_yaml_snapshot!("service_account", service_account(&cluster).unwrap());
        insta::assert_yaml_snapshot!("role", role(&cluster).unwrap());
        insta::assert_yaml_snapshot!("role_binding", role_binding(&cluster).unwrap());
    }

    #[test]
    fn the_role_grants_pods_only_and_never_secrets() {
        let role = role(&fixtures::development()).unwrap();
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["pods".to_owned()][..])
        );
        assert!(
            !rules[0]
                .verbs
                .iter()
                .any(|v| v == "delete" || v == "*" || v == "create")
        );
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
