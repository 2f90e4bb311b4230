//! Pure renderers: `fn(&OpenBaoCluster, &Inputs) -> object`. They read no
//! clock, no randomness and no API; whatever they need from the world
//! (paths, whether the cluster is initialized, the service-account issuer,
//! random bytes, certificates) comes in through [`Inputs`] or an argument,
//! so the same inputs always give the same object and golden files can pin
//! them. One file per rendered object.

pub mod autopilot;
pub mod backup;
pub mod config;
pub mod drill;
pub mod exposure;
pub mod jobs;
pub mod network_policy;
pub mod pdb;
pub mod rbac;
pub mod restore;
pub mod secrets;
pub mod self_init;
pub mod services;
pub mod statefulset;
pub mod tenant;
pub mod upgrade;

#[cfg(test)]
pub(crate) mod fixtures;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::labels;

/// OpenBao's API port (container port `api`).
pub const API_PORT: u16 = 8200;
/// OpenBao's cluster (Raft and request forwarding) port; always TLS.
pub const CLUSTER_PORT: u16 = 8201;

/// Where files live inside the OpenBao container. The config renderer takes
/// them as input (not constants) so a test can run the rendered
/// configuration on the host with every path under a temporary folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The server configuration (ConfigMap volume).
    pub config_dir: String,
    /// The self-init configuration (bootstrap pod only).
    pub self_init_dir: String,
    /// `tls.crt`, `tls.key`, `ca.crt` (Secret volume).
    pub tls_dir: String,
    /// Raft data (the PersistentVolumeClaim).
    pub data_dir: String,
    /// Static seal key or Transit token (Secret volume).
    pub seal_dir: String,
    /// `ca.crt` of the Transit server (Secret volume).
    pub seal_ca_dir: String,
    /// Cloud KMS credential files (Secret volume).
    pub seal_credentials_dir: String,
    /// KMS plugins OpenBao downloads (emptyDir).
    pub plugin_dir: String,
    /// File audit logs (emptyDir).
    pub audit_dir: String,
    /// Secrets of self-init requests read with `eval_source = "file"`; one
    /// folder per Secret.
    pub self_init_secrets_dir: String,
    /// The Kubernetes API server's CA, for OIDC discovery of the
    /// service-account issuer.
    pub kube_ca_file: String,
}

impl Paths {
    /// The paths inside an OpenBao pod.
    pub fn in_pod() -> Self {
        Self::under("")
    }

    /// Every path under `root` (for a test on the host); `""` gives the pod's paths.
    pub fn under(root: &str) -> Self {
        let at = |p: &str| format!("{root}{p}");
        Self {
            config_dir: at("/openbao/config"),
            self_init_dir: at("/openbao/self-init"),
            tls_dir: at("/openbao/tls"),
            data_dir: at("/openbao/data"),
            seal_dir: at("/openbao/seal"),
            seal_ca_dir: at("/openbao/seal-ca"),
            seal_credentials_dir: at("/openbao/seal-credentials"),
            plugin_dir: at("/openbao/plugins"),
            audit_dir: at("/openbao/audit"),
            self_init_secrets_dir: at("/openbao/self-init-secrets"),
            kube_ca_file: at(KUBE_CA_FILE),
        }
    }
}

/// The CA every pod's default service-account mount carries.
pub const KUBE_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// Addresses the listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub api: String,
    pub cluster: String,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            api: format!("0.0.0.0:{API_PORT}"),
            cluster: format!("0.0.0.0:{CLUSTER_PORT}"),
        }
    }
}

/// What the renderers need from outside the `OpenBaoCluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub paths: Paths,
    pub listen: Listen,
    /// Whether the cluster has ever been initialized (status, confirmed by
    /// OpenBao). Until then the StatefulSet runs one bootstrap pod that
    /// loads the self-init configuration; afterwards no pod ever does.
    pub initialized: bool,
    /// Namespace the operator runs in (the controller's JWT role subject).
    pub operator_namespace: String,
    /// Service-account issuer of the Kubernetes API server, used when
    /// `spec.selfInit.oidc.issuer` is unset.
    pub service_account_issuer: String,
    /// Id of the static seal key, read from the unseal Secret's annotation.
    pub static_key_id: String,
    /// Where OpenBao fetches the service-account issuer's signing keys when
    /// the issuer's discovery document is not reachable from the pods
    /// (e.g. `https://kubernetes.default.svc/openid/v1/jwks`); `None` uses
    /// OIDC discovery. Either way keys are fetched live, so a signing-key
    /// rotation keeps working.
    pub jwks_url: Option<String>,
    /// SHA-256 of the rendered configuration (see [`config::hash`]).
    pub config_hash: String,
    /// SHA-256 of the TLS material the pods mount; empty for ACME.
    pub tls_hash: String,
}

impl Inputs {
    /// Inputs for a pod in a real cluster.
    pub fn in_pod(operator_namespace: &str, service_account_issuer: &str) -> Self {
        Self {
            paths: Paths::in_pod(),
            listen: Listen::default(),
            initialized: false,
            operator_namespace: operator_namespace.to_owned(),
            service_account_issuer: service_account_issuer.to_owned(),
            static_key_id: String::new(),
            jwks_url: None,
            config_hash: String::new(),
            tls_hash: String::new(),
        }
    }
}

/// A cluster that cannot be rendered; names the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "the OpenBaoCluster has no {0}; render objects from a cluster read from the API server"
    )]
    MissingMetadata(&'static str),
    #[error("{field}: {message}")]
    InvalidSpec { field: String, message: String },
    #[error("HCL rendering of {what} failed: {source}")]
    Hcl {
        what: &'static str,
        #[source]
        source: hcl::Error,
    },
    #[error("building the {kind} failed (a renderer bug): {message}")]
    Build { kind: &'static str, message: String },
    #[error("the {what} policy or role files do not parse: {source}")]
    Identities {
        what: &'static str,
        #[source]
        source: lifecycle_types::identities::PolicyError,
    },
}

/// Cluster name and namespace, or an error naming what is missing.
pub fn name_and_namespace(cluster: &OpenBaoCluster) -> Result<(&str, &str), RenderError> {
    let name = cluster
        .metadata
        .name
        .as_deref()
        .ok_or(RenderError::MissingMetadata("metadata.name"))?;
    let namespace = cluster
        .metadata
        .namespace
        .as_deref()
        .ok_or(RenderError::MissingMetadata("metadata.namespace"))?;
    Ok((name, namespace))
}

/// Labels that select this cluster's OpenBao pods: the cluster label only,
/// so user labels can never change what a selector matches.
/// The cluster's uid (the controller's audience and the drill canary).
pub fn cluster_uid(cluster: &OpenBaoCluster) -> Result<&str, RenderError> {
    cluster
        .metadata
        .uid
        .as_deref()
        .ok_or(RenderError::MissingMetadata("metadata.uid"))
}

pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::CLUSTER.to_owned(), name.to_owned())])
}

/// Labels on every object the operator renders for a cluster.
pub fn common_labels(name: &str) -> BTreeMap<String, String> {
    let mut all = selector_labels(name);
    all.extend([
        (
            labels::APP_NAME.to_owned(),
            labels::APP_NAME_OPENBAO.to_owned(),
        ),
        (labels::APP_INSTANCE.to_owned(), name.to_owned()),
        (
            labels::APP_COMPONENT.to_owned(),
            labels::COMPONENT_SERVER.to_owned(),
        ),
        (
            labels::APP_MANAGED_BY.to_owned(),
            labels::MANAGED_BY_OPERATOR.to_owned(),
        ),
    ]);
    all
}

/// Metadata of an object named `object_name` owned by the cluster: deleting
/// the cluster garbage-collects it (deletion policies orphan what they keep).
pub fn owned_metadata(
    cluster: &OpenBaoCluster,
    object_name: String,
) -> Result<ObjectMeta, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    Ok(ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.to_owned()),
        labels: Some(common_labels(name)),
        owner_references: Some(vec![owner_reference(cluster)?]),
        ..ObjectMeta::default()
    })
}

fn owner_reference(cluster: &OpenBaoCluster) -> Result<OwnerReference, RenderError> {
    if cluster.metadata.uid.is_none() {
        return Err(RenderError::MissingMetadata("metadata.uid"));
    }
    cluster
        .controller_owner_ref(&())
        .ok_or(RenderError::MissingMetadata("metadata.name"))
}

/// Builds a typed object from JSON and checks that nothing was dropped on
/// the way (an unknown or misspelt field would otherwise vanish silently).
pub fn from_json<T>(kind: &'static str, value: serde_json::Value) -> Result<T, RenderError>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| RenderError::Build {
        kind,
        message: e.to_string(),
    })?;
    let back = serde_json::to_value(&typed).map_err(|e| RenderError::Build {
        kind,
        message: e.to_string(),
    })?;
    if back != value {
        return Err(RenderError::Build {
            kind,
            message: format!(
                "a field was dropped or changed at {}",
                first_difference(&value, &back, "")
            ),
        });
    }
    Ok(typed)
}

/// Metadata as JSON, for [`from_json`] builders.
pub fn metadata_json(meta: &ObjectMeta) -> Result<serde_json::Value, RenderError> {
    serde_json::to_value(meta).map_err(|e| RenderError::Build {
        kind: "metadata",
        message: e.to_string(),
    })
}

/// The JSON path of the first place two values differ.
pub(crate) fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> String {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                let (l, r) = (x.get(key), y.get(key));
                if l != r {
                    let path = format!("{at}.{key}");
                    return match (l, r) {
                        (Some(l), Some(r)) => first_difference(l, r, &path),
                        _ => path,
                    };
                }
            }
            at.to_owned()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find(|(_, (l, r))| l != r)
            .map(|(i, (l, r))| first_difference(l, r, &format!("{at}[{i}]")))
            .unwrap_or_else(|| at.to_owned()),
        _ => at.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use serde_json::json;

    #[test]
    fn a_misspelt_field_is_caught_and_located() {
        let err = from_json::<ServiceAccount>(
            "ServiceAccount",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x", "lables": {"a": "b"}}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains(".metadata.lables"), "{err}");
    }
}
