//! `OpenBaoCluster`: one OpenBao Raft cluster that the operator creates,
//! initializes, unseals and keeps healthy.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// Desired state of an OpenBao cluster.
// Each `printcolumn(...)` repeats the same keys, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "openbao.org",
    version = "v1alpha1",
    kind = "OpenBaoCluster",
    plural = "openbaoclusters",
    shortname = "obc",
    shortname = "baocluster",
    namespaced,
    status = "OpenBaoClusterStatus",
    derive = "PartialEq",
    doc = "An OpenBao Raft cluster managed by the OpenBao operator.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.currentVersion"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.activeLeader"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "self.profile != 'Hardened' || self.selfInit.enabled"
).message(
    "spec.selfInit.enabled must be true when spec.profile is Hardened: a Hardened cluster never stores a root token; set spec.selfInit.enabled: true or use profile Development"
).field_path(".selfInit.enabled"))]
#[serde(rename_all = "camelCase")]
pub struct OpenBaoClusterSpec {
    /// OpenBao version to run, as MAJOR.MINOR.PATCH (for example `2.7.2`).
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$"))]
    pub version: String,

    /// Container image; defaults to the official OpenBao image at `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Number of OpenBao servers (Raft voters). Use an odd number in production.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,

    /// Security posture. `Hardened` requires self-initialization.
    #[serde(default)]
    pub profile: Profile,

    /// How the servers' TLS certificates are provided.
    #[serde(default)]
    pub tls: TlsSpec,

    /// How the servers unseal themselves.
    #[serde(default)]
    pub unseal: UnsealSpec,

    /// Declarative self-initialization: no root token ever leaves the server.
    #[serde(default)]
    pub self_init: SelfInitSpec,

    /// Raft storage for each server.
    #[serde(default)]
    pub storage: StorageSpec,

    /// What happens to data when the `OpenBaoCluster` is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// When true the operator makes no changes to this cluster (status is still reported).
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    3
}

/// Security posture of a cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// Convenient defaults for local work; may use operator `sys/init`.
    #[default]
    Development,
    /// Production posture: self-init, no stored root token.
    Hardened,
}

/// TLS configuration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new(
    "self.mode != 'External' || (has(self.externalSecretName) && self.externalSecretName != '')"
).message(
    "spec.tls.externalSecretName is required when spec.tls.mode is External: name the Secret (type kubernetes.io/tls, with ca.crt) that holds the server certificate"
).field_path(".externalSecretName"))]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    #[serde(default)]
    pub mode: TlsMode,
    /// Secret with `tls.crt`, `tls.key` and `ca.crt`, when `mode` is `External`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_secret_name: Option<String>,
    /// Extra DNS names or IP addresses for the server certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_sans: Vec<String>,
}

/// Who issues the servers' certificates.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// The operator runs a CA and issues and renews server certificates.
    #[default]
    OperatorManaged,
    /// The user provides the certificate in a Secret (for example from cert-manager).
    External,
    /// OpenBao obtains its certificate through ACME.
    #[serde(rename = "ACME")]
    Acme,
}

/// Unseal configuration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new(
    "self.type != 'transit' || has(self.transit)"
).message(
    "spec.unseal.transit is required when spec.unseal.type is transit: set address, keyName and tokenSecretRef of the Transit server"
).field_path(".transit"))]
#[serde(rename_all = "camelCase")]
pub struct UnsealSpec {
    #[serde(default, rename = "type")]
    pub type_: UnsealType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit: Option<TransitUnseal>,
}

/// Seal mechanism.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnsealType {
    /// A static AES-256 key kept in a Secret the operator generates.
    #[default]
    Static,
    /// Another OpenBao's Transit engine holds the key.
    Transit,
}

/// Transit auto-unseal settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransitUnseal {
    /// Address of the Transit server, for example `https://transit.example:8200`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub address: String,
    #[schemars(length(min = 1))]
    pub key_name: String,
    #[serde(default = "default_transit_mount")]
    pub mount_path: String,
    /// Secret (key `token`) holding a token allowed to encrypt and decrypt with the key.
    #[schemars(length(min = 1))]
    pub token_secret_ref: String,
}

fn default_transit_mount() -> String {
    "transit/".to_owned()
}

/// Self-initialization settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.enabled == oldSelf.enabled").message(
    "spec.selfInit.enabled cannot change after creation: initialization happens once; create a new OpenBaoCluster instead"
))]
#[serde(rename_all = "camelCase")]
pub struct SelfInitSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub oidc: SelfInitOidc,
}

/// The controller's own JWT auth path created during self-init.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelfInitOidc {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Audience of the projected ServiceAccount tokens OpenBao accepts.
    #[serde(default = "default_audience")]
    #[schemars(length(min = 1))]
    pub audience: String,
    /// Issuer URL; defaults to the Kubernetes API server's service-account issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

impl Default for SelfInitOidc {
    fn default() -> Self {
        Self {
            enabled: true,
            audience: default_audience(),
            issuer: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Default audience of every projected token this operator's identities use.
pub const DEFAULT_JWT_AUDIENCE: &str = "openbao-internal";

fn default_audience() -> String {
    DEFAULT_JWT_AUDIENCE.to_owned()
}

/// Raft storage settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each server's PersistentVolumeClaim.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// StorageClass of the claims; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".to_owned())
}

/// What deleting the `OpenBaoCluster` removes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep PersistentVolumeClaims and Secrets (unseal key, CA) so the data can be recovered.
    #[default]
    Retain,
    /// Delete PersistentVolumeClaims, keep Secrets.
    #[serde(rename = "DeletePVCs")]
    DeletePvcs,
    /// Delete everything the operator created.
    DeleteAll,
}

/// Observed state of an OpenBao cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OpenBaoClusterStatus {
    /// The `.metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pod name of the active (leader) node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_leader: Option<String>,
    /// OpenBao version every server runs, once they agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Coarse lifecycle phase, for humans; tools should read conditions.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Initializing,
    Running,
    Degraded,
    Failed,
    Deleting,
}

impl OpenBaoClusterSpec {
    /// A spec with every default applied, as the API server would store it.
    pub fn with_version(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            image: None,
            replicas: default_replicas(),
            profile: Profile::default(),
            tls: TlsSpec::default(),
            unseal: UnsealSpec::default(),
            self_init: SelfInitSpec::default(),
            storage: StorageSpec::default(),
            deletion_policy: DeletionPolicy::default(),
            paused: false,
        }
    }
}
