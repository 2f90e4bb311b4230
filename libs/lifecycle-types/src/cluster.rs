//! `OpenBaoCluster`: one OpenBao Raft cluster that the operator creates,
//! initializes, unseals and keeps healthy.
//!
//! Field names follow the reference operator where users already know them
//! (`spec.selfInit.oidc.enabled`, `spec.selfInit.requests`, `spec.tls.extraSANs`,
//! `spec.unseal.credentialsSecretRef`, ...). Rules that span fields are CEL
//! rules here and are checked again in code by [`crate::validation`]; keep
//! the two in step (the controller's tests run both against the same specs).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// Go duration as OpenBao and CEL's `duration()` parse it, for example
/// `90s`, `5m` or `1h30m`. The pattern keeps CEL's `duration()` from failing
/// at admission time on a malformed value.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";

/// Top-level keys of a self-init request's `data` that hold secrets by
/// their usual meaning in OpenBao's API. They may not carry an inline string
/// (it would be stored in etcd and visible to anyone who can read the
/// `OpenBaoCluster`); use `dataFrom` with a Secret instead. The schema of
/// [`SelfInitRequest::data`] is generated from this list.
pub const SECRET_DATA_KEYS: &[&str] = &[
    "password",
    "bindpass",
    "client_secret",
    "oidc_client_secret",
    "secret_id",
    "secret_key",
    "private_key",
    "pem_bundle",
    "token",
    "credentials",
    "root_password",
];

/// The unseal types that are cloud KMS seals (plugins from OpenBao 2.7 on).
pub const CLOUD_KMS_TYPES: &[&str] = &["awskms", "gcpckms", "azurekeyvault"];

/// A container image reference: `[registry[:port]/]path[:tag][@digest]`,
/// as container runtimes parse it (lowercase path components separated by
/// `.`, `_`, `__` or dashes; a tag of at most 128 characters; an
/// `algorithm:hex` digest). [`crate::validation::is_image_reference`] is
/// the same grammar in code.
pub const IMAGE_PATTERN: &str = concat!(
    r"^(([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)(\.([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?))*(:[0-9]+)?/)?",
    r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*",
    r"(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?",
    r"(@[a-zA-Z][a-zA-Z0-9]*([-_+.][a-zA-Z][a-zA-Z0-9]*)*:[0-9a-fA-F]{32,})?$"
);

/// A plain file name: no folder, no leading dot (so never `.` or `..`).
pub const FILE_NAME_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9._-]*$";

/// The shortest `spec.tls.rotationPeriod` (1h): certificates renewed faster
/// would roll the pods more often than they restart.
pub const MIN_ROTATION_PERIOD_SECONDS: u64 = 3600;
/// The longest `spec.tls.rotationPeriod` (8760h, one year).
pub const MAX_ROTATION_PERIOD_SECONDS: u64 = 8760 * 3600;

fn cel_string_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|k| format!("'{k}'")).collect();
    format!("[{}]", quoted.join(", "))
}

fn cloud_kms_needs_plugin_rule() -> String {
    format!(
        "!(self.unseal.type in {}) || has(self.unseal.kmsPlugin) || self.version.matches('^([01]|2\\\\.[0-6])\\\\.')",
        cel_string_list(CLOUD_KMS_TYPES)
    )
}

/// Two requests' `Env` fields can only share an environment variable when
/// one request is named `<a>` and the other `<a>-<rest>`:
/// `BAO_SELF_INIT_<A>_<F>` is `BAO_SELF_INIT_<A>_<REST>_<G>` when the field
/// `F` of `<a>` is `<REST>_<G>` (case-insensitively, `-` as `_`; see
/// [`self_init_env_var`]). Any other pair of names gives different
/// prefixes, and `F` then holds a `_`. Comparing every field of one with
/// every field of the other for every pair of requests is far beyond the
/// API server's CEL cost budget (it estimates 64 x 64 x 16 string
/// comparisons), so the rule, and its twin in [`crate::validation`], refuse
/// the shape that allows a collision: `<a>` has an `Env` field with a `_`
/// and a request named `<a>-...` has an `Env` field.
fn self_init_env_collision_rule() -> String {
    "!has(self.requests) || self.requests.all(a, !has(a.dataFrom) || \
     !a.dataFrom.exists(f, f.source == 'Env' && f.field.contains('_')) || \
     self.requests.all(b, !has(b.dataFrom) || !b.name.startsWith(a.name + '-') || \
     !b.dataFrom.exists(g, g.source == 'Env')))"
        .to_owned()
}

// A CEL rule rather than a schema `pattern`: a pattern failure only
// echoes the regular expression, a rule says what to write instead. CEL's
// raw strings (`r'...'`) take the pattern as it is.
/// A version change never goes down: a newer node's data breaks an older one.
const VERSION_NOT_LOWER_RULE: &str = "!isSemver(self.version) || !isSemver(oldSelf.version) || semver(self.version).compareTo(semver(oldSelf.version)) >= 0";
/// Refusal of a downgrade, the same in CEL and in code.
pub const VERSION_LOWER_MESSAGE: &str = "spec.version cannot be lowered: a newer OpenBao's data breaks an older one; set it back to the running version or a later one (to go back, restore an older backup into a new cluster)";

/// A version change moves at most one minor version within a major
/// version, unless acknowledged.
const VERSION_ONE_MINOR_RULE: &str = "!isSemver(self.version) || !isSemver(oldSelf.version) || semver(self.version).compareTo(semver(oldSelf.version)) <= 0 || (semver(self.version).major() == semver(oldSelf.version).major() && semver(self.version).minor() <= semver(oldSelf.version).minor() + 1) || (has(self.upgrade) && has(self.upgrade.allowSkippingVersions) && self.upgrade.allowSkippingVersions)";
/// Refusal of a skip, the same in CEL and in code.
pub const VERSION_SKIP_MESSAGE: &str = "spec.version may move up one minor version at a time: upgrade through each minor version in turn, or set spec.upgrade.allowSkippingVersions: true after reading the release notes of every version skipped";

/// `spec.upgrade`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePolicy {
    /// Accept a version change of more than one minor version, or to a new
    /// major version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_skipping_versions: bool,
    /// Upgrade without a pre-upgrade snapshot when `spec.backup` is not
    /// set. Without it, such an upgrade waits until backups are configured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_without_snapshot: bool,
    /// Set to a new value to run the failed upgrade step again
    /// (`status.upgrade.step`); the value itself means nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub retry: Option<String>,
    /// Stop the upgrade before its next step or pod. Nothing is
    /// downgraded: pods already on the new version stay on it. Set it back
    /// to false to go on from where it stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
}

fn image_rule() -> String {
    format!("!has(self.image) || self.image.matches(r'{IMAGE_PATTERN}')")
}

fn file_name_rule(field: &str) -> String {
    format!("self.{field}.matches(r'{FILE_NAME_PATTERN}')")
}

fn cloud_kms_credentials_rule() -> String {
    format!(
        "self.type in {list} ? has(self.credentialsSecretRef) != has(self.workloadIdentity) : !has(self.credentialsSecretRef) && !has(self.workloadIdentity) && !has(self.kmsPlugin)",
        list = cel_string_list(CLOUD_KMS_TYPES)
    )
}

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
#[x_kube(validation = Rule::new(cloud_kms_needs_plugin_rule()).message(
    "spec.unseal.kmsPlugin is required for cloud KMS seals from OpenBao 2.7 on (they are no longer built into the server): set image, version, binaryName and sha256sum of the KMS plugin"
).field_path(".unseal.kmsPlugin"))]
#[x_kube(validation = Rule::new(
    "self.profile != 'Hardened' || !has(self.configuration.audit) || !self.configuration.audit.exists(a, has(a.logRaw) && a.logRaw)"
).message(
    "spec.configuration.audit[].logRaw must be false when spec.profile is Hardened: raw audit logs contain tokens and secrets in plain text"
).field_path(".configuration.audit"))]
#[x_kube(validation = Rule::new(image_rule()).message(
    "spec.image must be a container image reference such as registry.example/openbao/openbao:2.7.2 (optionally @sha256:<digest>), on one line; remove it to use the official image"
).field_path(".image"))]
#[x_kube(validation = Rule::new(
    "self.profile != 'Hardened' || self.unseal.type != 'transit' || !has(self.unseal.transit) || self.unseal.transit.address.startsWith('https://')"
).message(
    "spec.unseal.transit.address must be an https:// URL when spec.profile is Hardened: the Transit token and the seal key's wrapping travel over this connection; serve the Transit server over TLS or use profile Development"
).field_path(".unseal.transit.address"))]
#[x_kube(validation = Rule::new(
    "!has(self.restoreFrom) || has(self.restoreFrom.destination) || has(self.backup)"
).message(
    "spec.restoreFrom.destination is required when spec.backup is not set: name where the old cluster's backups are"
).field_path(".restoreFrom.destination"))]
#[x_kube(validation = Rule::new(VERSION_NOT_LOWER_RULE).message(VERSION_LOWER_MESSAGE).field_path(".version"))]
#[x_kube(validation = Rule::new(VERSION_ONE_MINOR_RULE).message(VERSION_SKIP_MESSAGE).field_path(".version"))]
#[serde(rename_all = "camelCase")]
pub struct OpenBaoClusterSpec {
    /// OpenBao version to run, as MAJOR.MINOR.PATCH (for example `2.7.2`).
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$"), length(max = 32))]
    pub version: String,

    /// Container image; defaults to the official OpenBao image at `version`.
    /// A reference such as `registry.example:5000/openbao/openbao:2.7.2` or
    /// `...@sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,

    /// Number of OpenBao servers (Raft voters). Use an odd number in production.
    /// The operator runs one server until the cluster is initialized, then scales.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,

    /// Security posture. `Hardened` requires self-initialization; the
    /// `ProductionReady` condition names every other gap.
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

    /// Typed OpenBao server configuration.
    #[serde(default)]
    pub configuration: ConfigurationSpec,

    /// CPU and memory of the OpenBao container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Where the OpenBao pods run.
    #[serde(default)]
    pub scheduling: SchedulingSpec,

    /// Extra labels and annotations on the OpenBao pods.
    #[serde(default)]
    pub pod_metadata: PodMetadata,

    /// The client Service (selects the active node).
    #[serde(default)]
    pub service: ServiceSpec,

    /// An Ingress in front of the client Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,

    /// A Gateway API route (HTTPRoute, or TLSRoute with passthrough) to the client Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,

    /// What happens to data when the `OpenBaoCluster` is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// When true the operator makes no changes to this cluster (status is still reported).
    #[serde(default)]
    pub paused: bool,

    /// Scheduled backups to object storage, run as Jobs by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::backup::BackupSpec>,
    /// Disaster recovery: start from another (usually deleted) cluster's
    /// backup. The cluster bootstraps one node, restores the backup into
    /// it, and only then scales to `replicas`. With a static seal, the
    /// cluster must use the old cluster's key: keep its `<name>-unseal-key`
    /// Secret (a cluster of the same name adopts it) or copy it under this
    /// cluster's name before creating it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<crate::restore::RestoreFrom>,

    /// How version changes are carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradePolicy>,
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
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "self.mode != 'External' || (has(self.externalSecretName) && self.externalSecretName != '')"
).message(
    "spec.tls.externalSecretName is required when spec.tls.mode is External: name the Secret (type kubernetes.io/tls, with ca.crt) that holds the server certificate"
).field_path(".externalSecretName"))]
#[x_kube(validation = Rule::new("has(self.acme) == (self.mode == 'ACME')").message(
    "spec.tls.acme must be set exactly when spec.tls.mode is ACME: give directoryURL, domains and email for ACME, or remove spec.tls.acme"
).field_path(".acme"))]
#[x_kube(validation = Rule::new(
    "duration(self.rotationPeriod) >= duration('1h') && duration(self.rotationPeriod) <= duration('8760h')"
).message(
    "spec.tls.rotationPeriod must be between 1h and 8760h (one year): set a duration such as 720h"
).field_path(".rotationPeriod"))]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    #[serde(default)]
    pub mode: TlsMode,
    /// Secret with `tls.crt`, `tls.key` and `ca.crt`, when `mode` is `External`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_secret_name: Option<String>,
    /// Renew an operator-managed certificate when less than this remains
    /// of its validity (Go duration from `1h` to `8760h`, for example `720h`).
    #[serde(default = "default_rotation_period")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub rotation_period: String,
    /// Extra DNS names or IP addresses for the server certificate.
    #[serde(default, rename = "extraSANs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub extra_sans: Vec<String>,
    /// OpenBao's own ACME client, when `mode` is `ACME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeSpec>,
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self {
            mode: TlsMode::default(),
            external_secret_name: None,
            rotation_period: default_rotation_period(),
            extra_sans: Vec::new(),
            acme: None,
        }
    }
}

fn default_rotation_period() -> String {
    "720h".to_owned()
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

/// OpenBao's ACME listener settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AcmeSpec {
    /// ACME directory, for example `https://acme-v02.api.letsencrypt.org/directory`.
    #[serde(rename = "directoryURL")]
    #[schemars(regex(pattern = r"^https://"), length(max = 2048))]
    pub directory_url: String,
    /// Names the certificate is issued for; the first is also the name Raft
    /// joins verify.
    #[schemars(length(min = 1, max = 16))]
    pub domains: Vec<String>,
    /// Contact address registered with the ACME account.
    #[schemars(regex(pattern = r"^[^@\s]+@[^@\s]+$"), length(max = 256))]
    pub email: String,
}

/// Unseal configuration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new(
    "has(self.transit) == (self.type == 'transit')"
).message(
    "spec.unseal.transit is required when spec.unseal.type is transit (and only then): set address, keyName and tokenSecretRef of the Transit server"
).field_path(".transit"))]
#[x_kube(validation = Rule::new("has(self.awskms) == (self.type == 'awskms')").message(
    "spec.unseal.awskms is required when spec.unseal.type is awskms (and only then): set region and kmsKeyId"
).field_path(".awskms"))]
#[x_kube(validation = Rule::new("has(self.gcpckms) == (self.type == 'gcpckms')").message(
    "spec.unseal.gcpckms is required when spec.unseal.type is gcpckms (and only then): set project, region, keyRing and cryptoKey"
).field_path(".gcpckms"))]
#[x_kube(validation = Rule::new("has(self.azurekeyvault) == (self.type == 'azurekeyvault')").message(
    "spec.unseal.azurekeyvault is required when spec.unseal.type is azurekeyvault (and only then): set tenantId, vaultName and keyName"
).field_path(".azurekeyvault"))]
#[x_kube(validation = Rule::new(cloud_kms_credentials_rule()).message(
    "spec.unseal: a cloud KMS seal needs exactly one of credentialsSecretRef or workloadIdentity, and other seal types take neither (nor kmsPlugin)"
))]
#[serde(rename_all = "camelCase")]
pub struct UnsealSpec {
    #[serde(default, rename = "type")]
    pub type_: UnsealType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit: Option<TransitUnseal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awskms: Option<AwsKmsUnseal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcpckms: Option<GcpCkmsUnseal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azurekeyvault: Option<AzureKeyVaultUnseal>,
    /// Secret with the cloud credentials, in the same namespace. Keys by
    /// type: awskms `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (optional
    /// `AWS_SESSION_TOKEN`); gcpckms `credentials.json`; azurekeyvault
    /// `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<String>,
    /// Use the cloud's workload identity instead of a Secret: the annotations
    /// go on the OpenBao ServiceAccount, the labels on its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentity>,
    /// The KMS plugin OpenBao downloads at start (OCI image), required for
    /// cloud KMS seals from OpenBao 2.7 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_plugin: Option<KmsPlugin>,
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
    /// AWS KMS.
    Awskms,
    /// Google Cloud KMS.
    Gcpckms,
    /// Azure Key Vault.
    Azurekeyvault,
}

impl UnsealType {
    /// The seal stanza's label in OpenBao's configuration.
    pub fn seal_name(self) -> &'static str {
        match self {
            UnsealType::Static => "static",
            UnsealType::Transit => "transit",
            UnsealType::Awskms => "awskms",
            UnsealType::Gcpckms => "gcpckms",
            UnsealType::Azurekeyvault => "azurekeyvault",
        }
    }

    pub fn is_cloud_kms(self) -> bool {
        CLOUD_KMS_TYPES.contains(&self.seal_name())
    }
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
    /// Secret (key `ca.crt`) with the CA that signed the Transit server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<String>,
    /// Name to verify in the Transit server's certificate, when it differs from the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

fn default_transit_mount() -> String {
    "transit/".to_owned()
}

/// AWS KMS seal.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsKmsUnseal {
    #[schemars(length(min = 1))]
    pub region: String,
    /// Key id, ARN or alias (`alias/...`).
    #[schemars(length(min = 1))]
    pub kms_key_id: String,
    /// VPC endpoint or other KMS endpoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Google Cloud KMS seal.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcpCkmsUnseal {
    #[schemars(length(min = 1))]
    pub project: String,
    #[schemars(length(min = 1))]
    pub region: String,
    #[schemars(length(min = 1))]
    pub key_ring: String,
    #[schemars(length(min = 1))]
    pub crypto_key: String,
}

/// Azure Key Vault seal.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureKeyVaultUnseal {
    #[schemars(length(min = 1))]
    pub tenant_id: String,
    #[schemars(length(min = 1))]
    pub vault_name: String,
    #[schemars(length(min = 1))]
    pub key_name: String,
    /// Azure environment, for example `AZUREPUBLICCLOUD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// Cloud workload identity for the OpenBao pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentity {
    /// For example `eks.amazonaws.com/role-arn` or `iam.gke.io/gcp-service-account`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_account_annotations: BTreeMap<String, String>,
    /// For example `azure.workload.identity/use: "true"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
}

/// A KMS plugin distributed as an OCI image (OpenBao's declarative plugins).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(file_name_rule("binaryName")).message(
    "spec.unseal.kmsPlugin.binaryName must be a plain file name (letters, digits, '.', '_', '-'; no '/' and no leading '.'): the plugin binary's name inside the image, e.g. openbao-plugin-kms-aws"
).field_path(".binaryName"))]
#[serde(rename_all = "camelCase")]
pub struct KmsPlugin {
    /// Image without tag, for example `ghcr.io/openbao/openbao-plugin-kms-aws`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image tag, for example `v0.1.0`.
    #[schemars(length(min = 1))]
    pub version: String,
    /// File name of the plugin binary inside the image (no folder), for
    /// example `openbao-plugin-kms-aws`.
    #[schemars(length(min = 1, max = 255))]
    pub binary_name: String,
    /// SHA-256 of the plugin binary, hex; OpenBao refuses a binary that does not match.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256sum: String,
}

/// Self-initialization settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.enabled == oldSelf.enabled").message(
    "spec.selfInit.enabled cannot change after creation: initialization happens once; create a new OpenBaoCluster instead"
))]
#[x_kube(validation = Rule::new("self.enabled || !has(self.requests) || size(self.requests) == 0").message(
    "spec.selfInit.requests are only applied when spec.selfInit.enabled is true: enable self-init or remove the requests"
).field_path(".requests"))]
#[x_kube(validation = Rule::new(self_init_env_collision_rule()).message(
    "spec.selfInit.requests: Env dataFrom fields of two requests could map to one environment variable of the bootstrap pod (BAO_SELF_INIT_<REQUEST>_<FIELD>, uppercased, '-' as '_'): request a has an Env field with '_' and a request named a-... has Env fields (a's field b_c and a-b's field c are both BAO_SELF_INIT_A_B_C); rename the longer request so it does not start with the other's name and '-', or use source File"
).field_path(".requests"))]
#[serde(rename_all = "camelCase")]
pub struct SelfInitSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub oidc: SelfInitOidc,
    /// Requests OpenBao makes once, on the bootstrap server's first start,
    /// after the operator's own auth method, policies and roles. Include at
    /// least one human login path: the root token is revoked at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub requests: Vec<SelfInitRequest>,
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
    #[schemars(regex(pattern = r"^https://"))]
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

/// One request of OpenBao's declarative self-initialization.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!self.path.matches('(^|/)[.][.]?(/|$)')").message(
    "spec.selfInit.requests[].path may not contain . or .. segments (they would reach another API path than the one written); write the path itself, for example sys/auth/userpass"
).field_path(".path"))]
#[x_kube(validation = Rule::new(
    "!has(self.dataFrom) || self.dataFrom.all(f, f.source != 'Env' || self.dataFrom.exists_one(g, g.source == 'Env' && g.field.upperAscii() == f.field.upperAscii()))"
).message(
    "spec.selfInit.requests[].dataFrom: two Env fields differ only in case and would share one environment variable of the bootstrap pod; rename one or use source File"
).field_path(".dataFrom"))]
// Two rules on `data` live in the schema or in code only, because
// Kubernetes gives CEL no view of schemaless fields: inline secrets are
// refused by the schema (see `free_form_object`), and a field set both in
// `data` and `dataFrom` by `validation::validate_spec`.
#[serde(rename_all = "camelCase")]
pub struct SelfInitRequest {
    /// Unique name; also names the `initialize` block in OpenBao's configuration.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"),
        length(max = 63)
    )]
    pub name: String,
    #[serde(default)]
    pub operation: SelfInitOperation,
    /// API path without `/v1/`, for example `sys/auth/userpass`; no `.` or
    /// `..` segments.
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9_.+@=:-][A-Za-z0-9_.+@=:/-]*$"),
        length(max = 256)
    )]
    pub path: String,
    /// Request body. Values may be OpenBao `eval_source` objects; secrets go in `dataFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    /// Body fields whose values come from Secrets, never from this object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["field"]))]
    pub data_from: Vec<SecretField>,
    /// Continue self-init when this request fails (any other failure is
    /// permanent for the cluster's storage).
    #[serde(default)]
    pub allow_failure: bool,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // Free-form (OpenBao request bodies have any shape), except that the
    // keys in SECRET_DATA_KEYS are declared as objects: an inline secret
    // string is then rejected by the schema itself, naming the field, while
    // an `eval_source` object passes. (CEL cannot do this check: Kubernetes
    // gives CEL no view of fields without a schema.)
    let secret = serde_json::json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "A secret: never inline. Set it through dataFrom (or an OpenBao eval_source object).",
    });
    let properties: serde_json::Map<String, serde_json::Value> = SECRET_DATA_KEYS
        .iter()
        .map(|key| ((*key).to_owned(), secret.clone()))
        .collect();
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": properties,
    })
}

/// Environment variable of the bootstrap pod that carries a Secret-backed
/// field of a self-init request (`source: Env`):
/// `BAO_SELF_INIT_<REQUEST>_<FIELD>`, uppercased, with `-` as `_`. Distinct
/// request and field names can share one (`a-b`/`c` and `a`/`b_c`); the
/// spec rules refuse that.
pub fn self_init_env_var(request: &str, field: &str) -> String {
    format!("BAO_SELF_INIT_{request}_{field}")
        .to_ascii_uppercase()
        .replace('-', "_")
}

/// HTTP operation of a self-init request.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SelfInitOperation {
    Create,
    Read,
    #[default]
    Update,
    Delete,
    List,
    Patch,
}

impl SelfInitOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            SelfInitOperation::Create => "create",
            SelfInitOperation::Read => "read",
            SelfInitOperation::Update => "update",
            SelfInitOperation::Delete => "delete",
            SelfInitOperation::List => "list",
            SelfInitOperation::Patch => "patch",
        }
    }
}

/// A request body field read from a Secret when OpenBao initializes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretField {
    /// Top-level field of the request body, for example `password`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_]+$"), length(max = 64))]
    pub field: String,
    pub secret_key_ref: SecretKeyRef,
    /// How the value reaches OpenBao: an environment variable of the
    /// bootstrap pod (`Env`, exact bytes) or a file from a Secret volume (`File`).
    #[serde(default)]
    pub source: SecretSource,
}

/// A key of a Secret in the cluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new(
    "self.key != '.' && !self.key.contains('..') && !self.key.contains('/')"
).message(
    "secretKeyRef.key must be a plain Secret key without '/' or '..' (it names a file in the bootstrap pod's Secret volume); use the key as it appears in the Secret's data"
).field_path(".key"))]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"),
        length(max = 253)
    )]
    pub name: String,
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]{1,253}$"), length(max = 253))]
    pub key: String,
}

/// OpenBao `eval_source` for a Secret-backed field.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretSource {
    #[default]
    Env,
    File,
}

/// Raft storage settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "!has(self.size) || (type(self.size) == string ? isQuantity(self.size) && quantity(self.size).isGreaterThan(quantity('0')) : self.size > 0)"
).message(
    "spec.storage.size must be a positive Kubernetes quantity such as 10Gi or 500Mi"
).field_path(".size"))]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each server's PersistentVolumeClaim: a positive quantity
    /// such as `10Gi`.
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

/// The OpenBao server configuration the operator renders. Listener,
/// storage, seal and service registration are the operator's; these are
/// the settings users choose.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationSpec {
    #[serde(default)]
    pub log_level: LogLevel,
    /// Serve the web UI.
    #[serde(default = "default_true")]
    pub ui: bool,
    #[serde(default)]
    pub raft: RaftSpec,
    /// Audit devices, declared in the configuration (OpenBao refuses to
    /// create audit devices through its API).
    #[serde(default)]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["path"]))]
    pub audit: Vec<AuditDevice>,
}

impl Default for ConfigurationSpec {
    fn default() -> Self {
        Self {
            log_level: LogLevel::default(),
            ui: true,
            raft: RaftSpec::default(),
            audit: Vec::new(),
        }
    }
}

/// OpenBao's log level.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Raft settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RaftSpec {
    /// Raft timing multiplier (1 is fastest, 10 most tolerant); OpenBao's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub performance_multiplier: Option<i32>,
    #[serde(default)]
    pub autopilot: AutopilotSpec,
}

/// Raft autopilot, applied by the controller through
/// `sys/storage/raft/autopilot/configuration`. The limits are OpenBao's own.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "duration(self.deadServerLastContactThreshold) >= duration('1m')"
).message(
    "spec.configuration.raft.autopilot.deadServerLastContactThreshold must be at least 1m (OpenBao rejects less)"
).field_path(".deadServerLastContactThreshold"))]
#[x_kube(validation = Rule::new(
    "!self.cleanupDeadServers || !has(self.minQuorum) || self.minQuorum >= 3"
).message(
    "spec.configuration.raft.autopilot.minQuorum must be at least 3 when cleanupDeadServers is true (OpenBao rejects less); raise it or disable cleanupDeadServers"
).field_path(".minQuorum"))]
#[serde(rename_all = "camelCase")]
pub struct AutopilotSpec {
    /// Remove servers autopilot considers dead. The controller also removes
    /// peers explicitly on scale-down.
    #[serde(default = "default_true")]
    pub cleanup_dead_servers: bool,
    /// How long a server may be out of contact before it counts as dead (at least 1m).
    #[serde(default = "default_dead_server_threshold")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub dead_server_last_contact_threshold: String,
    /// Voters autopilot never prunes below; defaults to max(3, replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9))]
    pub min_quorum: Option<i32>,
    #[serde(default = "default_stabilization_time")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub server_stabilization_time: String,
    #[serde(default = "default_last_contact_threshold")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub last_contact_threshold: String,
    #[serde(default = "default_max_trailing_logs")]
    #[schemars(range(min = 1))]
    pub max_trailing_logs: i64,
}

impl Default for AutopilotSpec {
    fn default() -> Self {
        Self {
            cleanup_dead_servers: true,
            dead_server_last_contact_threshold: default_dead_server_threshold(),
            min_quorum: None,
            server_stabilization_time: default_stabilization_time(),
            last_contact_threshold: default_last_contact_threshold(),
            max_trailing_logs: default_max_trailing_logs(),
        }
    }
}

fn default_dead_server_threshold() -> String {
    "5m".to_owned()
}
fn default_stabilization_time() -> String {
    "10s".to_owned()
}
fn default_last_contact_threshold() -> String {
    "10s".to_owned()
}
fn default_max_trailing_logs() -> i64 {
    1000
}

/// One declarative audit device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.file) || self.type == 'file'").message(
    "spec.configuration.audit[].file is only valid for type file"
).field_path(".file"))]
#[x_kube(validation = Rule::new("has(self.socket) == (self.type == 'socket')").message(
    "spec.configuration.audit[].socket is required for type socket (and only then): set its address"
).field_path(".socket"))]
#[x_kube(validation = Rule::new("!has(self.syslog) || self.type == 'syslog'").message(
    "spec.configuration.audit[].syslog is only valid for type syslog"
).field_path(".syslog"))]
#[x_kube(validation = Rule::new("!has(self.prefix)").message(
    "spec.configuration.audit[].prefix is not supported: OpenBao refuses audit log prefixing and the node would never become active; remove prefix"
).field_path(".prefix"))]
#[serde(rename_all = "camelCase")]
pub struct AuditDevice {
    #[serde(rename = "type")]
    pub type_: AuditType,
    /// Where the device is mounted, for example `file`; unique per cluster.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AuditFormat>,
    /// Log secrets unhashed. Never in production; refused in Hardened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_raw: Option<bool>,
    /// Log token accessors unhashed (OpenBao's default is to hash them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_accessor: Option<bool>,
    /// Not supported, and refused: OpenBao (2.7 on) refuses audit log
    /// prefixing and a node with a prefixed device never becomes active.
    /// The field stays in the API only so that a spec that sets it is
    /// refused with that reason instead of the value being silently dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileAudit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<SocketAudit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogAudit>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditType {
    File,
    Socket,
    Syslog,
}

impl AuditType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditType::File => "file",
            AuditType::Socket => "socket",
            AuditType::Syslog => "syslog",
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    Json,
    Jsonx,
}

/// File audit device options.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!self.filePath.contains('..')").message(
    "spec.configuration.audit[].file.filePath may not contain '..': it must stay inside /openbao/audit/; use stdout, discard or /openbao/audit/<file name>"
).field_path(".filePath"))]
#[serde(rename_all = "camelCase")]
pub struct FileAudit {
    /// `stdout` (the default: the pod log), `discard`, or a file under
    /// `/openbao/audit/` (an emptyDir: ship it with a log collector); never
    /// with `..`.
    #[serde(default = "default_audit_file")]
    #[schemars(
        regex(pattern = r"^(stdout|discard|/openbao/audit/[A-Za-z0-9._-]+)$"),
        length(max = 256)
    )]
    pub file_path: String,
    /// File mode, octal, for example `0600`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^0?[0-7]{3}$"))]
    pub mode: Option<String>,
}

/// Default `file_path` of a file audit device: the pod's log.
pub const DEFAULT_AUDIT_FILE: &str = "stdout";

fn default_audit_file() -> String {
    DEFAULT_AUDIT_FILE.to_owned()
}

/// Socket audit device options.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SocketAudit {
    /// `host:port` (tcp, udp) or a socket path (unix).
    #[schemars(length(min = 1))]
    pub address: String,
    #[serde(default)]
    pub socket_type: SocketType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"))]
    pub write_timeout: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SocketType {
    #[default]
    Tcp,
    Udp,
    Unix,
}

impl SocketType {
    pub fn as_str(self) -> &'static str {
        match self {
            SocketType::Tcp => "tcp",
            SocketType::Udp => "udp",
            SocketType::Unix => "unix",
        }
    }
}

/// Syslog audit device options.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyslogAudit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Where the OpenBao pods run. Without `affinity` the operator prefers to
/// put every pod on a different node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Replaces the default pod anti-affinity when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Extra pod labels and annotations. Operator-owned keys win on conflict.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The client Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Client CIDRs allowed through a LoadBalancer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// An Ingress to the client Service (HTTPS to the backend).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!self.enabled || self.host != ''").message(
    "spec.ingress.host is required when spec.ingress.enabled is true"
).field_path(".host"))]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    #[serde(default)]
    pub host: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// Secret with the certificate the Ingress presents; the host is added to the server certificate's SANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn default_path() -> String {
    "/".to_owned()
}

/// A Gateway API route to the client Service. Ignored, with a `Degraded`
/// condition, when the Gateway API CRDs are not installed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub gateway_ref: GatewayRef,
    /// Host name routed to OpenBao; added to the server certificate's SANs.
    #[schemars(length(min = 1))]
    pub hostname: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// The Gateway listener (`sectionName`) to attach to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Pass TLS through to OpenBao (TLSRoute) instead of terminating it at the Gateway (HTTPRoute).
    #[serde(default)]
    pub tls_passthrough: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    #[schemars(length(min = 1))]
    pub name: String,
    /// Defaults to the cluster's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
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
    /// True once the cluster has been initialized (by self-init or `sys/init`).
    /// From then on no pod is ever started with an `initialize` block.
    #[serde(default)]
    pub initialized: bool,
    /// Raft as autopilot reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftStatus>,
    /// One entry per OpenBao pod or Raft server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub nodes: Vec<NodeStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Scheduled backups: the last good one, the last failure, the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::backup::BackupStatus>,
    /// The long operation (a backup Job) that holds the cluster now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<crate::backup::OperationLock>,
    /// The `spec.restoreFrom` restore, once it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<crate::restore::RestoredFrom>,
    /// The last version upgrade: where it is, or how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<crate::upgrade::UpgradeStatus>,
}

/// Cluster-wide Raft health from autopilot.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RaftStatus {
    pub healthy: bool,
    /// How many voters can fail without losing quorum.
    pub failure_tolerance: i32,
    /// Raft node id of the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters: Vec<String>,
}

/// One server as the pod and autopilot see it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Pod name, which is also the Raft node id.
    pub name: String,
    pub raft_state: RaftState,
    /// Autopilot's verdict.
    #[serde(default)]
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<bool>,
    /// Time since the leader last heard from this server, as autopilot reports it (for example `1.2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A server's place in Raft.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftState {
    Leader,
    Voter,
    NonVoter,
    /// Running but not in the Raft configuration (for example removed, or not joined yet).
    NotMember,
    Unknown,
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
            configuration: ConfigurationSpec::default(),
            resources: None,
            scheduling: SchedulingSpec::default(),
            pod_metadata: PodMetadata::default(),
            service: ServiceSpec::default(),
            ingress: None,
            gateway: None,
            deletion_policy: DeletionPolicy::default(),
            paused: false,
            backup: None,
            restore_from: None,
            upgrade: None,
        }
    }

    /// The image to run: `spec.image`, or the official image at `spec.version`.
    pub fn image(&self) -> String {
        self.image_at(&self.version)
    }

    /// The image of `version`: `spec.image` when set (it names its own
    /// version), else the official image's tag.
    pub fn image_at(&self, version: &str) -> String {
        self.image
            .clone()
            .unwrap_or_else(|| format!("{DEFAULT_IMAGE_REPOSITORY}:{version}"))
    }
}

/// Repository of the official OpenBao image.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "openbao/openbao";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_spec_deserializes_with_defaults() {
        let spec: OpenBaoClusterSpec =
            serde_json::from_value(serde_json::json!({"version": "2.7.2"})).unwrap();
        assert_eq!(spec, OpenBaoClusterSpec::with_version("2.7.2"));
        assert_eq!(spec.image(), "openbao/openbao:2.7.2");
        assert_eq!(
            spec.configuration
                .raft
                .autopilot
                .dead_server_last_contact_threshold,
            "5m"
        );
    }
}
