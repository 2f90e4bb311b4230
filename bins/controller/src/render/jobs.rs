//! What every Job the operator generates shares: its labels, the identity's
//! projected OpenBao token (never the Kubernetes API token: it is not
//! mounted), the restricted Pod Security profile, one attempt, a deadline
//! and a TTL, and the result line in the termination message, where the
//! controller reads it from the pod status.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ResourceRequirements, ServiceAccount};
use lifecycle_types::backup::{BackupCredentials, BackupDestination};
use lifecycle_types::{OpenBaoCluster, labels};
use serde_json::{Value, json};

use super::config::TLS_CA;
use super::{RenderError, from_json, metadata_json, name_and_namespace, owned_metadata};

/// Where Kubernetes reads a container's termination message.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Where the projected OpenBao token is mounted (the Job binaries' default).
const TOKEN_DIR: &str = "/var/run/secrets/openbao";
/// Where a private object-storage CA is mounted.
const STORAGE_CA_DIR: &str = "/etc/openbao-operator/storage-ca";
/// The identity's projected token lives at most this long.
pub const TOKEN_SECONDS: i64 = 3600;
/// uid and gid of the distroless non-root user the images run as.
pub const NON_ROOT: i64 = 65532;

/// One generated Job: its parts beyond what every Job shares.
#[derive(Debug)]
pub struct JobParts<'a> {
    pub name: String,
    /// `app.kubernetes.io/component` of the Job and its pod.
    pub component: &'a str,
    pub service_account: String,
    /// Lifetime of the identity's projected token.
    pub token_seconds: i64,
    pub deadline_seconds: i64,
    pub ttl_seconds_after_finished: i32,
    /// Sidecars (init containers with `restartPolicy: Always`).
    pub init_containers: Vec<Value>,
    pub containers: Vec<Value>,
    /// Besides the token volume [`token_mount`] mounts.
    pub volumes: Vec<Value>,
    pub pod_labels: BTreeMap<String, String>,
}

/// The Job, with labels, the identity's token volume and pod security.
pub fn job(cluster: &OpenBaoCluster, parts: JobParts<'_>) -> Result<Job, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    let mut metadata = owned_metadata(cluster, parts.name)?;
    let job_labels = BTreeMap::from([
        (labels::CLUSTER.to_owned(), name.to_owned()),
        (
            labels::APP_NAME.to_owned(),
            labels::APP_NAME_OPENBAO.to_owned(),
        ),
        (labels::APP_INSTANCE.to_owned(), name.to_owned()),
        (labels::APP_COMPONENT.to_owned(), parts.component.to_owned()),
        (
            labels::APP_MANAGED_BY.to_owned(),
            labels::MANAGED_BY_OPERATOR.to_owned(),
        ),
    ]);
    metadata.labels = Some(job_labels.clone());
    let mut pod_labels = parts.pod_labels;
    pod_labels.extend(job_labels);
    let mut volumes = vec![json!({
        "name": "openbao-token",
        "projected": {"sources": [{"serviceAccountToken": {
            "audience": cluster.spec.self_init.oidc.audience,
            "expirationSeconds": parts.token_seconds,
            "path": "token",
        }}]},
    })];
    volumes.extend(parts.volumes);
    let mut pod = json!({
        "serviceAccountName": parts.service_account,
        "automountServiceAccountToken": false,
        "restartPolicy": "Never",
        "enableServiceLinks": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": NON_ROOT,
            "runAsGroup": NON_ROOT,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": parts.containers,
        "volumes": volumes,
    });
    if !parts.init_containers.is_empty() {
        pod["initContainers"] = json!(parts.init_containers);
    }
    from_json(
        "Job",
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": metadata_json(&metadata)?,
            "spec": {
                // One attempt: the schedule is the retry, and a second pod
                // would hide the first one's termination message.
                "backoffLimit": 0,
                "activeDeadlineSeconds": parts.deadline_seconds,
                "ttlSecondsAfterFinished": parts.ttl_seconds_after_finished,
                "template": {"metadata": {"labels": pod_labels}, "spec": pod},
            },
        }),
    )
}

/// A Job identity's ServiceAccount: the subject of its JWT role, with the
/// annotations a cloud workload identity asks for.
pub fn service_account(
    cluster: &OpenBaoCluster,
    credentials: Option<&BackupCredentials>,
    name: String,
) -> Result<ServiceAccount, RenderError> {
    let mut metadata = owned_metadata(cluster, name)?;
    if let Some(identity) = credentials.and_then(|c| c.workload_identity.as_ref())
        && !identity.service_account_annotations.is_empty()
    {
        metadata.annotations = Some(identity.service_account_annotations.clone());
    }
    from_json(
        "ServiceAccount",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata_json(&metadata)?}),
    )
}

/// Where a Job mounts the OpenBao servers' CA.
const CA_DIR: &str = "/etc/openbao/ca";

/// Lets a Job's container verify the OpenBao servers: the pods' `ca.crt`
/// as a volume and `OPENBAO_CACERT`. Nothing for ACME, whose certificates
/// chain to the public roots.
pub fn trust_servers_ca(
    cluster: &OpenBaoCluster,
    volumes: &mut Vec<Value>,
    mounts: &mut Vec<Value>,
    env: &mut Vec<Value>,
) {
    if let Some(ca_secret) = super::secrets::tls_files_secret(cluster) {
        volumes.push(json!({
            "name": "openbao-ca",
            "secret": {"secretName": ca_secret, "items": [{"key": TLS_CA, "path": TLS_CA}]},
        }));
        mounts.push(json!({"name": "openbao-ca", "mountPath": CA_DIR, "readOnly": true}));
        env.push(env_var("OPENBAO_CACERT", &format!("{CA_DIR}/{TLS_CA}")));
    }
}

/// The mount of the identity's projected token, for the container that logs in.
pub fn token_mount() -> Value {
    json!({"name": "openbao-token", "mountPath": TOKEN_DIR, "readOnly": true})
}

/// The container that runs one of this project's Job binaries: restricted,
/// read-only, reporting through the termination message.
pub fn binary_container(
    name: &str,
    image: &str,
    env: Vec<Value>,
    env_from: Value,
    mounts: Vec<Value>,
    resources: Option<&ResourceRequirements>,
) -> Result<Value, RenderError> {
    let mut container = json!({
        "name": name,
        "image": image,
        "env": env,
        "envFrom": env_from,
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted(),
    });
    if let Some(resources) = resources {
        container["resources"] =
            serde_json::to_value(resources).map_err(|e| RenderError::Build {
                kind: "Job",
                message: e.to_string(),
            })?;
    }
    Ok(container)
}

/// A container's share of the restricted Pod Security profile.
pub fn restricted() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// How a Job binary reaches the object storage: the destination in its
/// environment (`{prefix}{location}`, endpoint, region) and, for a private
/// CA, the CA file mounted from `caSecretRef` (`{prefix}STORAGE_CA_FILE`).
pub fn storage_access(
    destination: &BackupDestination,
    prefix: &str,
    location: &str,
    volumes: &mut Vec<Value>,
    mounts: &mut Vec<Value>,
    env: &mut Vec<Value>,
) {
    env.extend(storage_env(destination, prefix, location));
    if let Some(ca_secret) = &destination.ca_secret_ref {
        volumes.push(json!({
            "name": "storage-ca",
            "secret": {"secretName": ca_secret, "items": [{"key": TLS_CA, "path": TLS_CA}]},
        }));
        mounts.push(json!({"name": "storage-ca", "mountPath": STORAGE_CA_DIR, "readOnly": true}));
        env.push(env_var(
            &format!("{prefix}STORAGE_CA_FILE"),
            &format!("{STORAGE_CA_DIR}/{TLS_CA}"),
        ));
    }
}

/// The destination's variables. They share a prefix (`BACKUP_`,
/// `RESTORE_`); `location` names the one that takes the URL.
fn storage_env(destination: &BackupDestination, prefix: &str, location: &str) -> Vec<Value> {
    let mut env = vec![env_var(&format!("{prefix}{location}"), &destination.url)];
    if let Some(endpoint) = &destination.endpoint {
        let kind = if destination.url.starts_with("gs://") {
            "GCS"
        } else {
            "S3"
        };
        env.push(env_var(&format!("{prefix}{kind}_ENDPOINT"), endpoint));
    }
    if destination.emulator {
        env.push(env_var(&format!("{prefix}STORAGE_EMULATOR"), "true"));
    }
    if let Some(region) = &destination.region {
        env.push(env_var("AWS_REGION", region));
    }
    env
}

/// The storage credentials Secret's keys as the environment; its values
/// never appear in the Job.
pub fn credentials_env_from(credentials: Option<&BackupCredentials>) -> Value {
    credentials
        .and_then(|c| c.secret_ref.as_ref())
        .map(|secret| json!([{"secretRef": {"name": secret}}]))
        .unwrap_or_else(|| json!([]))
}

/// Pod labels a cloud workload identity asks for.
pub fn workload_identity_labels(
    credentials: Option<&BackupCredentials>,
) -> BTreeMap<String, String> {
    credentials
        .and_then(|c| c.workload_identity.as_ref())
        .map(|identity| identity.pod_labels.clone())
        .unwrap_or_default()
}

pub fn env_var(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// A Job-name suffix for a free-form cause (label-like but not lowercase):
/// `tag` and 11 hex digits of its digest.
pub fn digest_suffix(tag: char, cause: &str) -> String {
    let digest = super::config::hash(cause);
    format!("{tag}{}", &digest[..11])
}

/// A Job's name: `<cluster>-<kind>-<suffix>`, the cluster part cut so the
/// whole fits a label value (63 characters).
pub fn job_name(cluster: &str, kind: &str, suffix: &str) -> String {
    let room = 63 - kind.len() - 2 - suffix.len();
    let base: String = cluster.chars().take(room).collect();
    format!("{}-{kind}-{suffix}", base.trim_end_matches('-'))
}
