//! `OpenBaoTenant`: a platform team hands one namespace to the operator.
//!
//! In the multi-tenant install mode the controller's ClusterRole reads no
//! Secret anywhere; a tenant binds the fixed ClusterRole
//! `openbao-operator-tenant` to the operator's ServiceAccount in its
//! namespace, and only there (a RoleBinding). OpenBaoClusters elsewhere get
//! `Degraded` with reason `NamespaceNotOnboarded` and no objects.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// Namespaces no tenant may take: Kubernetes' own.
pub const RESERVED_NAMESPACES: [&str; 4] =
    ["kube-system", "kube-public", "kube-node-lease", "default"];

/// The finalizer that keeps a tenant while OpenBaoClusters live in its namespace.
pub const FINALIZER: &str = "openbao.org/tenant";

/// Onboards one namespace for the OpenBao operator.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "openbao.org",
    version = "v1alpha1",
    kind = "OpenBaoTenant",
    plural = "openbaotenants",
    shortname = "obt",
    status = "OpenBaoTenantStatus",
    derive = "PartialEq",
    validation = Rule::new("self.metadata.name == self.spec.namespace").message(
        "metadata.name must equal spec.namespace: one OpenBaoTenant per namespace, named after it"
    ),
    doc = "One namespace onboarded for the OpenBao operator: the operator may manage OpenBaoClusters there, and only there.",
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.namespace"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Clusters", type_ = "integer", json_path = ".status.clusterCount"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct OpenBaoTenantSpec {
    /// The namespace to onboard. One tenant per namespace: the tenant's
    /// `metadata.name` must equal it.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    #[x_kube(validation = Rule::new("!(self in ['kube-system', 'kube-public', 'kube-node-lease', 'default'])").message(
        "spec.namespace: Kubernetes' own namespaces (kube-system, kube-public, kube-node-lease, default) cannot be onboarded; choose a namespace for the team"
    ))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.namespace cannot change: create an OpenBaoTenant for the other namespace and delete this one once its clusters are gone"
    ))]
    pub namespace: String,
    /// A ResourceQuota (`openbao-tenant`) for the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_quota: Option<TenantQuota>,
    /// A LimitRange (`openbao-tenant`) with container defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range: Option<TenantLimits>,
}

/// The quota's hard limits, as in a ResourceQuota's `spec.hard`
/// (`requests.cpu`, `limits.memory`, `pods`, `requests.storage`, ...).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("size(self.hard) > 0").message(
    "spec.resourceQuota.hard is empty: name at least one resource (for example pods: \"10\"), or remove resourceQuota"
))]
#[serde(rename_all = "camelCase")]
pub struct TenantQuota {
    #[schemars(schema_with = "quantity_map")]
    pub hard: BTreeMap<String, Quantity>,
}

/// Container defaults, as in a LimitRange's `Container` item.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("size(self.default) > 0 || size(self.defaultRequest) > 0").message(
    "spec.limitRange sets nothing: give default or defaultRequest (for example cpu: 500m), or remove limitRange"
))]
#[serde(rename_all = "camelCase")]
pub struct TenantLimits {
    /// Limits for containers that set none.
    #[serde(default)]
    #[schemars(schema_with = "quantity_map")]
    pub default: BTreeMap<String, Quantity>,
    /// Requests for containers that set none.
    #[serde(default)]
    #[schemars(schema_with = "quantity_map")]
    pub default_request: BTreeMap<String, Quantity>,
}

/// A map of resource names to quantities (int or string, as Kubernetes takes them).
fn quantity_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": true
        }
    })
}

/// What the tenant's onboarding created and what lives in the namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OpenBaoTenantStatus {
    /// `Ready`: the namespace is onboarded (reason `Onboarded`), or why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The objects the operator made in the namespace, as `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// The OpenBaoClusters in the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    #[serde(default)]
    pub cluster_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition types and reasons of `OpenBaoTenant`.
pub mod tenant_conditions {
    pub const READY: &str = "Ready";
    /// The RoleBinding (and quota, limits) exist.
    pub const ONBOARDED: &str = "Onboarded";
    /// Deleting, but OpenBaoClusters still live in the namespace.
    pub const CLUSTERS_REMAIN: &str = "ClustersRemain";
    /// Another reason the onboarding cannot be done (the message says which).
    pub const INVALID_TENANT: &str = "InvalidTenant";
    /// Kubernetes refused a write; the message says which.
    pub const APPLY_FAILED: &str = "ApplyFailed";
}

/// Why a tenant cannot onboard its namespace, beyond what the CRD checks:
/// the name must equal the namespace (one tenant per namespace), and the
/// operator's own namespace is not a tenant's.
pub fn validate_tenant(
    name: &str,
    spec: &OpenBaoTenantSpec,
    operator_namespace: &str,
) -> Vec<String> {
    let mut errors = Vec::new();
    if name != spec.namespace {
        errors.push(format!(
            "metadata.name {name:?} differs from spec.namespace {:?}: name the OpenBaoTenant after its namespace (one tenant per namespace)",
            spec.namespace
        ));
    }
    if RESERVED_NAMESPACES.contains(&spec.namespace.as_str()) {
        errors.push(format!(
            "spec.namespace {:?} is Kubernetes' own; choose a namespace for the team",
            spec.namespace
        ));
    }
    if spec.namespace == operator_namespace {
        errors.push(format!(
            "spec.namespace {operator_namespace:?} is the operator's own namespace; run OpenBao clusters in a namespace of their own"
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespace: &str) -> OpenBaoTenantSpec {
        OpenBaoTenantSpec {
            namespace: namespace.into(),
            resource_quota: None,
            limit_range: None,
        }
    }

    #[test]
    fn a_tenant_is_named_after_a_namespace_of_its_own() {
        assert!(validate_tenant("team-a", &spec("team-a"), "openbao-operator-system").is_empty());
        let wrong_name = validate_tenant("a", &spec("team-a"), "ops");
        assert!(wrong_name[0].contains("metadata.name"), "{wrong_name:?}");
        let reserved = validate_tenant("kube-system", &spec("kube-system"), "ops");
        assert!(reserved[0].contains("spec.namespace"), "{reserved:?}");
        let own = validate_tenant("ops", &spec("ops"), "ops");
        assert!(own[0].contains("operator's own namespace"), "{own:?}");
    }
}
