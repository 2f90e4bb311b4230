//! What an `OpenBaoTenant` makes in its namespace: the RoleBinding that
//! grants the operator the fixed ClusterRole [`TENANT_CLUSTER_ROLE`] there
//! (Secrets, quotas, limits) and, when asked, a ResourceQuota and a
//! LimitRange. Every object is owned by the tenant, so garbage collection
//! removes them once its finalizer lets it go.
//!
//! A RoleBinding to a fixed ClusterRole, not a Role per tenant: Kubernetes
//! lets the operator create a Role only with permissions it already holds
//! (or `escalate`), and in the multi-tenant install it holds no Secret
//! access anywhere. `bind` on this one ClusterRole's name is all it needs.

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::{Resource, ResourceExt};
use lifecycle_types::OpenBaoTenant;
use lifecycle_types::labels;
use serde_json::{Value, json};

use super::{RenderError, from_json};

/// The ClusterRole each tenant's RoleBinding references
/// (`manifests/overlays/multi-tenant/tenant-cluster-role.yaml`).
pub const TENANT_CLUSTER_ROLE: &str = "openbao-operator-tenant";
/// The RoleBinding's name in the tenant's namespace.
pub const ROLE_BINDING: &str = "openbao-operator";
/// The ResourceQuota's and the LimitRange's name.
pub const LIMITS: &str = "openbao-tenant";
/// Label naming the tenant on what it made.
pub const TENANT_LABEL: &str = "openbao.org/tenant";

/// The objects of one tenant; quota and limits only when the spec asks.
#[derive(Debug, Clone)]
pub struct TenantObjects {
    pub role_binding: RoleBinding,
    pub quota: Option<ResourceQuota>,
    pub limits: Option<LimitRange>,
}

/// Renders the tenant's objects for the operator's ServiceAccount
/// `service_account` in `operator_namespace`.
pub fn objects(
    tenant: &OpenBaoTenant,
    operator_namespace: &str,
    service_account: &str,
) -> Result<TenantObjects, RenderError> {
    let namespace = tenant.spec.namespace.as_str();
    let metadata = |name: &str| -> Result<Value, RenderError> {
        let owner = tenant
            .controller_owner_ref(&())
            .filter(|_| tenant.meta().uid.is_some())
            .ok_or(RenderError::MissingMetadata("metadata.uid"))?;
        Ok(json!({
            "name": name,
            "namespace": namespace,
            "labels": {
                labels::APP_MANAGED_BY: labels::MANAGED_BY_OPERATOR,
                TENANT_LABEL: tenant.name_any(),
            },
            "ownerReferences": [owner],
        }))
    };
    let role_binding = from_json(
        "RoleBinding",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(ROLE_BINDING)?,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": TENANT_CLUSTER_ROLE,
            },
            "subjects": [{
                "kind": "ServiceAccount",
                "name": service_account,
                "namespace": operator_namespace,
            }],
        }),
    )?;
    let quota = tenant
        .spec
        .resource_quota
        .as_ref()
        .map(|quota| {
            from_json(
                "ResourceQuota",
                json!({
                    "apiVersion": "v1",
                    "kind": "ResourceQuota",
                    "metadata": metadata(LIMITS)?,
                    "spec": {"hard": quota.hard},
                }),
            )
        })
        .transpose()?;
    let limits = tenant
        .spec
        .limit_range
        .as_ref()
        .map(|limits| {
            let mut item = json!({"type": "Container"});
            if !limits.default.is_empty() {
                item["default"] = json!(limits.default);
            }
            if !limits.default_request.is_empty() {
                item["defaultRequest"] = json!(limits.default_request);
            }
            from_json(
                "LimitRange",
                json!({
                    "apiVersion": "v1",
                    "kind": "LimitRange",
                    "metadata": metadata(LIMITS)?,
                    "spec": {"limits": [item]},
                }),
            )
        })
        .transpose()?;
    Ok(TenantObjects {
        role_binding,
        quota,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(spec: Value) -> OpenBaoTenant {
        serde_json::from_value(json!({
            "apiVersion": "openbao.org/v1alpha1",
            "kind": "OpenBaoTenant",
            "metadata": {"name": "team-a", "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn a_tenant_binds_the_fixed_role_to_the_operator_in_its_namespace_only() {
        let objects = objects(
            &tenant(json!({"namespace": "team-a"})),
            "ops",
            "openbao-operator",
        )
        .unwrap();
        let binding = &objects.role_binding;
        assert_eq!(binding.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(binding.role_ref.name, TENANT_CLUSTER_ROLE);
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (subject.name.as_str(), subject.namespace.as_deref()),
            ("openbao-operator", Some("ops"))
        );
        let owner = &binding.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("OpenBaoTenant", "u-1")
        );
        assert!(objects.quota.is_none() && objects.limits.is_none());
    }

    #[test]
    fn quota_and_limits_carry_the_spec() {
        let objects = objects(
            &tenant(json!({
                "namespace": "team-a",
                "resourceQuota": {"hard": {"pods": "10", "requests.cpu": "4"}},
                "limitRange": {"defaultRequest": {"cpu": "250m"}},
            })),
            "ops",
            "sa",
        )
        .unwrap();
        let hard = objects.quota.unwrap().spec.unwrap().hard.unwrap();
        assert_eq!(hard["pods"].0, "10");
        let item = &objects.limits.unwrap().spec.unwrap().limits[0];
        assert_eq!(item.type_, "Container");
        assert_eq!(item.default_request.as_ref().unwrap()["cpu"].0, "250m");
        assert!(item.default.is_none());
    }

    #[test]
    fn a_tenant_not_read_from_the_api_is_not_rendered() {
        let mut t = tenant(json!({"namespace": "team-a"}));
        t.metadata.uid = None;
        assert!(objects(&t, "ops", "sa").is_err());
    }
}
