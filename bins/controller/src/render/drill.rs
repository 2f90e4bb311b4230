//! A restore drill's Job: the drill identity's ServiceAccount, the
//! throwaway node's configuration, and one pod that holds both the
//! throwaway OpenBao (a native sidecar) and the restore binary in drill
//! mode.
//!
//! Why one pod: the throwaway node listens on the pod's loopback only, so
//! nothing but the drill container can reach it (no Service, no pod-IP
//! listener, no label a cluster Service selects), and it ends with the pod:
//! when the drill container exits, Kubernetes stops the sidecar and the
//! Job completes. Its data lives in an emptyDir and goes with the pod.
//!
//! The node unseals with the cluster's own seal (the same key or Transit
//! token, mounted as the cluster's pods mount it) because the restored
//! keyring is the cluster's. It bootstraps itself with self-init: the
//! cluster's JWT auth and a drill role whose throwaway policy may only
//! restore; no root token survives.

use hcl::{Block, Body};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::backup::backup_spec;
use super::jobs::{self, JobParts, TERMINATION_LOG, env_var};
use super::statefulset::{OPENBAO_GID, OPENBAO_UID, seal_access};
use super::{Inputs, Paths, RenderError, name_and_namespace, owned_metadata};

/// Label value of `app.kubernetes.io/component` on drill Jobs and pods.
pub const COMPONENT_DRILL: &str = "drill";
/// The container running the restore binary in drill mode.
pub const DRILL_CONTAINER: &str = "drill";
/// The throwaway OpenBao sidecar.
pub const THROWAWAY_CONTAINER: &str = "throwaway-openbao";
/// The throwaway node's configuration key in the drill ConfigMap.
pub const THROWAWAY_CONFIG_KEY: &str = "throwaway.hcl";
/// The throwaway node's API, on the pod's loopback only.
const THROWAWAY_API: &str = "127.0.0.1:8200";
const THROWAWAY_CLUSTER: &str = "127.0.0.1:8201";
/// Where the pod mounts the Kubernetes API server's CA (for JWT auth).
const KUBE_CA_DIR: &str = "/openbao/kube-ca";

/// Why a drill runs; part of its Job's name, so a restarted controller
/// finds the same Job again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillCause {
    /// The drill schedule's slot, as `YYYYMMDDhhmm` (UTC).
    Schedule(String),
    /// Every Nth backup: the backup that completed the count.
    AfterBackup(String),
}

impl DrillCause {
    /// For `status.operation.cause`.
    pub fn describe(&self) -> String {
        match self {
            Self::Schedule(slot) => format!("drill-schedule:{slot}"),
            Self::AfterBackup(backup) => format!("after-backup:{backup}"),
        }
    }

    fn suffix(&self) -> String {
        match self {
            Self::Schedule(slot) => slot.clone(),
            Self::AfterBackup(backup) => jobs::digest_suffix('b', backup),
        }
    }
}

/// The drill Job's name for `cause`: at most 63 characters (a label value).
pub fn job_name(cluster: &str, cause: &DrillCause) -> String {
    jobs::job_name(cluster, "drill", &cause.suffix())
}

/// The drill identity's ServiceAccount (`<cluster>-drill`, the subject of
/// the `openbao-operator-drill` JWT role).
pub fn service_account(cluster: &OpenBaoCluster) -> Result<ServiceAccount, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    jobs::service_account(
        cluster,
        backup_spec(cluster)?.credentials.as_ref(),
        names::drill_service_account(name),
    )
}

/// Paths inside the throwaway container: the pod's, but the API server's
/// CA from the `kube-root-ca.crt` ConfigMap (the pod mounts no API token).
fn throwaway_paths() -> Paths {
    Paths {
        kube_ca_file: format!("{KUBE_CA_DIR}/ca.crt"),
        ..Paths::in_pod()
    }
}

/// The throwaway node's whole configuration: one Raft node on loopback,
/// plain HTTP (nothing leaves the pod), the cluster's seal, and its own
/// self-init.
pub fn throwaway_config(cluster: &OpenBaoCluster, inputs: &Inputs) -> Result<String, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    let inputs = Inputs {
        paths: throwaway_paths(),
        ..inputs.clone()
    };
    let mut body = Body::builder()
        .add_attribute(("ui", false))
        .add_attribute(("cluster_name", format!("{name}-drill")))
        .add_attribute(("log_level", "warn"))
        .add_attribute(("api_addr", format!("http://{THROWAWAY_API}")))
        .add_attribute(("cluster_addr", format!("https://{THROWAWAY_CLUSTER}")))
        .add_block(
            Block::builder("listener")
                .add_label("tcp")
                .add_attribute(("address", THROWAWAY_API))
                .add_attribute(("cluster_address", THROWAWAY_CLUSTER))
                .add_attribute(("tls_disable", true))
                .build(),
        )
        .add_block(
            Block::builder("storage")
                .add_label("raft")
                .add_attribute(("path", inputs.paths.data_dir.as_str()))
                .add_attribute(("node_id", "drill"))
                .build(),
        );
    body = super::config::with_seal(body, cluster, &inputs)?;
    for block in super::self_init::drill_initialize(cluster, &inputs)? {
        body = body.add_block(block);
    }
    hcl::to_string(&body.build()).map_err(|source| RenderError::Hcl {
        what: THROWAWAY_CONFIG_KEY,
        source,
    })
}

/// The ConfigMap that carries [`throwaway_config`].
pub fn config_map(cluster: &OpenBaoCluster, inputs: &Inputs) -> Result<ConfigMap, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    Ok(ConfigMap {
        metadata: owned_metadata(cluster, names::drill_config_map(name))?,
        data: Some(
            [(
                THROWAWAY_CONFIG_KEY.to_owned(),
                throwaway_config(cluster, inputs)?,
            )]
            .into(),
        ),
        ..ConfigMap::default()
    })
}

/// The Job for one drill of `backup` (`<UTC timestamp>-<id>`).
pub fn job(
    cluster: &OpenBaoCluster,
    cause: &DrillCause,
    backup: &str,
    default_image: &str,
) -> Result<Job, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let spec = backup_spec(cluster)?;
    let drill = spec.drill.as_ref();
    let uid = super::cluster_uid(cluster)?;
    let paths = throwaway_paths();

    // The throwaway node.
    let seal = seal_access(cluster, &paths);
    let mut volumes = seal.volumes;
    volumes.extend([
        json!({"name": "throwaway-config", "configMap": {
            "name": names::drill_config_map(name),
            "items": [{"key": THROWAWAY_CONFIG_KEY, "path": THROWAWAY_CONFIG_KEY}],
        }}),
        json!({"name": "throwaway-data", "emptyDir": {}}),
        // OpenBao stages an uploaded snapshot in /tmp: as large as the backup.
        json!({"name": "throwaway-tmp", "emptyDir": {}}),
        json!({"name": "kube-ca", "configMap": {
            "name": "kube-root-ca.crt",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}),
    ]);
    let mut throwaway_mounts = seal.mounts;
    throwaway_mounts.extend([
        json!({"name": "throwaway-config", "mountPath": paths.config_dir, "readOnly": true}),
        json!({"name": "throwaway-data", "mountPath": paths.data_dir}),
        json!({"name": "throwaway-tmp", "mountPath": "/tmp"}),
        json!({"name": "kube-ca", "mountPath": KUBE_CA_DIR, "readOnly": true}),
    ]);
    let mut security = jobs::restricted();
    security["runAsUser"] = json!(OPENBAO_UID);
    security["runAsGroup"] = json!(OPENBAO_GID);
    let throwaway = json!({
        "name": THROWAWAY_CONTAINER,
        "image": cluster.spec.image_at(lifecycle_types::upgrade::template_version(cluster)),
        // A native sidecar: started before the drill, stopped after it.
        "restartPolicy": "Always",
        "command": ["bao"],
        "args": ["server", format!("-config={}/{THROWAWAY_CONFIG_KEY}", paths.config_dir)],
        "env": seal.env,
        "volumeMounts": throwaway_mounts,
        "securityContext": security,
    });

    // The drill: the restore binary against the throwaway node.
    let mut env = vec![
        env_var("OPENBAO_ADDR", &format!("http://{THROWAWAY_API}")),
        // Loopback inside the pod: no token crosses a network.
        env_var("OPENBAO_ALLOW_HTTP", "true"),
        // Self-init keeps the listener closed until it has finished.
        env_var("OPENBAO_DISCOVERY_TIMEOUT", "5m"),
        env_var("RESTORE_NAMESPACE", namespace),
        env_var("RESTORE_CLUSTER", name),
        env_var("RESTORE_BACKUP", backup),
        env_var("RESTORE_DRILL", "true"),
        env_var("RESTORE_DRILL_CANARY", uid),
        env_var("RESTORE_RESULT_FILE", TERMINATION_LOG),
        env_var("LOG_JSON", "true"),
    ];
    let mut mounts = vec![
        jobs::token_mount(),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    jobs::storage_access(
        &spec.destination,
        "RESTORE_",
        "SOURCE",
        &mut volumes,
        &mut mounts,
        &mut env,
    );
    let container = jobs::binary_container(
        DRILL_CONTAINER,
        drill
            .and_then(|d| d.image.as_deref())
            .unwrap_or(default_image),
        env,
        jobs::credentials_env_from(spec.credentials.as_ref()),
        mounts,
        spec.resources.as_ref(),
    )?;
    jobs::job(
        cluster,
        JobParts {
            name: job_name(name, cause),
            component: COMPONENT_DRILL,
            service_account: names::drill_service_account(name),
            token_seconds: jobs::TOKEN_SECONDS,
            deadline_seconds: drill.map_or(900, |d| d.deadline_seconds),
            ttl_seconds_after_finished: spec.ttl_seconds_after_finished,
            init_containers: vec![throwaway],
            containers: vec![container],
            volumes,
            pod_labels: jobs::workload_identity_labels(spec.credentials.as_ref()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    fn with_drill() -> OpenBaoCluster {
        let mut cluster = fixtures::development();
        cluster.spec.backup = Some(
            serde_json::from_value(json!({
                "schedule": "*/5 * * * *",
                "destination": {"url": "s3://backups/openbao", "endpoint": "http://127.0.0.1:9000"},
                "credentials": {"secretRef": "s3-credentials"},
                "drill": {"everyNthBackup": 2},
            }))
            .unwrap(),
        );
        cluster
    }

    #[test]
    fn the_throwaway_node_listens_on_loopback_only_and_may_only_restore() {
        let mut inputs = fixtures::inputs();
        inputs.static_key_id = "key-1".into();
        let text = throwaway_config(&with_drill(), &inputs).unwrap();
        let body: hcl::Body = hcl::from_str(&text).unwrap();
        let listener = body
            .blocks()
            .find(|b| b.identifier() == "listener")
            .unwrap();
        let address = listener
            .body()
            .attributes()
            .find(|a| a.key() == "address")
            .unwrap();
        assert_eq!(address.expr(), &hcl::Expression::from(THROWAWAY_API));
        assert!(body.blocks().any(|b| b.identifier() == "seal"));
        assert!(!text.contains("service_registration"));
        assert!(!text.contains("retry_join"));
        // Only the throwaway policy and the drill role: no cluster policy.
        assert!(text.contains("sys/storage/raft/snapshot-force"));
        assert!(text.contains("auth/jwt/role/openbao-operator-drill"));
        assert!(!text.contains("openbao-operator-backup"));
        assert!(text.contains("system:serviceaccount:team-a:dev-drill"));
    }

    #[test]
    fn the_drill_pod_runs_the_throwaway_node_as_a_sidecar_under_the_drill_identity() {
        let cluster = with_drill();
        let cause = DrillCause::AfterBackup("20261202T080000Z-abc".into());
        let job = job(
            &cluster,
            &cause,
            "20261202T080000Z-abc",
            "example/restore:1",
        )
        .unwrap();
        let value = serde_json::to_value(&job).unwrap();
        let pod = &value["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "dev-drill");
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["initContainers"][0]["restartPolicy"], "Always");
        assert_eq!(pod["initContainers"][0]["name"], THROWAWAY_CONTAINER);
        let drill = &pod["containers"][0];
        let var = |name: &str| fixtures::env_value(drill, name);
        assert_eq!(
            var("OPENBAO_ADDR").as_deref(),
            Some("http://127.0.0.1:8200")
        );
        assert_eq!(
            var("RESTORE_BACKUP").as_deref(),
            Some("20261202T080000Z-abc")
        );
        assert_eq!(
            var("RESTORE_SOURCE").as_deref(),
            Some("s3://backups/openbao")
        );
        assert_eq!(
            var("RESTORE_S3_ENDPOINT").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(drill["envFrom"][0]["secretRef"]["name"], "s3-credentials");
        assert_eq!(drill["terminationMessagePath"], TERMINATION_LOG);
        // No port, no Service: nothing outside the pod reaches the node.
        assert!(pod["initContainers"][0].get("ports").is_none());
        assert!(job_name("dev", &cause).starts_with("dev-drill-b"));
    }
}
