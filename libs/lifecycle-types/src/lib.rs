//! The operator's API: custom resource types, condition types and reasons,
//! label keys and the names of generated objects.
//!
//! This crate performs no I/O and holds no client, so every binary (and the
//! CRD generator) can depend on it without pulling in a runtime.

pub mod backup;
pub mod cluster;
pub mod conditions;
pub mod endpoints;
pub mod events;
pub mod identities;
pub mod labels;
pub mod names;
pub mod restore;
pub mod tenant;
pub mod upgrade;
pub mod validation;

pub use cluster::{OpenBaoCluster, OpenBaoClusterSpec, OpenBaoClusterStatus};
pub use conditions::{Condition, ConditionStatus};
pub use restore::{OpenBaoRestore, OpenBaoRestoreSpec, OpenBaoRestoreStatus};
pub use tenant::{OpenBaoTenant, OpenBaoTenantSpec, OpenBaoTenantStatus};

/// API group of every custom resource this operator owns.
pub const API_GROUP: &str = "openbao.org";

/// Every CustomResourceDefinition this crate defines, in the order they are
/// written to `manifests/crds/`.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        OpenBaoCluster::crd(),
        OpenBaoRestore::crd(),
        OpenBaoTenant::crd(),
    ]
}

/// Renders a CRD as the YAML document checked in under `manifests/crds/`.
/// The generator and the drift test share this so that they cannot disagree.
pub fn crd_file_name(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}
