//! The upgrade identity's ServiceAccount and the Job of one upgrade step
//! (`upgrade preflight`, `upgrade snapshot`, `upgrade verify`).
//!
//! The upgrade identity may read a Raft snapshot, so, like the restore
//! identity, it exists only while an upgrade runs: the controller creates
//! `<cluster>-upgrade` with the first Job and deletes it when the upgrade
//! stops.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use lifecycle_types::upgrade::UpgradeStep;
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::jobs::{self, JobParts, TERMINATION_LOG, env_var};
use super::{RenderError, name_and_namespace};

/// Label value of `app.kubernetes.io/component` on upgrade Jobs and pods.
pub const COMPONENT_UPGRADE: &str = "upgrade";
/// How long one step may run; a snapshot of a large cluster takes longest.
const STEP_DEADLINE_SECONDS: i64 = 1800;

/// The Job of `step` for the upgrade to `to`, attempt `attempt` (the
/// `spec.upgrade.retry` value acted on): the same inputs give the same
/// name, so a controller restarted between creating the Job and recording
/// it finds the Job again, and a retry gets a new one.
pub fn job_name(cluster: &str, step: UpgradeStep, to: &str, attempt: Option<&str>) -> String {
    let cause = format!("{to}/{}", attempt.unwrap_or_default());
    jobs::job_name(
        cluster,
        &format!("upgrade-{}", step.name()),
        &jobs::digest_suffix('u', &cause),
    )
}

/// The upgrade identity's ServiceAccount (`<cluster>-upgrade`, the subject
/// of the `openbao-operator-upgrade` JWT role), with the backup
/// credentials' workload identity: the snapshot step writes there.
pub fn service_account(cluster: &OpenBaoCluster) -> Result<ServiceAccount, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    let credentials = cluster
        .spec
        .backup
        .as_ref()
        .and_then(|b| b.credentials.as_ref());
    jobs::service_account(cluster, credentials, names::upgrade_service_account(name))
}

/// The Job that runs `step` of the upgrade to `to`.
pub fn job(
    cluster: &OpenBaoCluster,
    step: UpgradeStep,
    to: &str,
    attempt: Option<&str>,
    image: &str,
) -> Result<Job, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let mut env = vec![
        env_var("OPENBAO_ADDR", &super::backup::addresses(cluster)?),
        env_var("UPGRADE_RESULT_FILE", TERMINATION_LOG),
        env_var("LOG_JSON", "true"),
    ];
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}})];
    let mut mounts = vec![
        jobs::token_mount(),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let replicas = cluster.spec.replicas.max(1);
    let mut credentials = None;
    match step {
        UpgradeStep::Preflight => {
            // A single server has no tolerance to keep; its restart is the
            // outage the user chose with one replica.
            let tolerance = if replicas >= 3 { 1 } else { 0 };
            env.push(env_var(
                "UPGRADE_MIN_FAILURE_TOLERANCE",
                &tolerance.to_string(),
            ));
        }
        UpgradeStep::Snapshot => {
            let backup = super::backup::backup_spec(cluster)?;
            credentials = backup.credentials.as_ref();
            env.extend([
                env_var("UPGRADE_NAMESPACE", namespace),
                env_var("UPGRADE_CLUSTER", name),
                env_var("UPGRADE_CLUSTER_UID", super::cluster_uid(cluster)?),
            ]);
            jobs::storage_access(
                &backup.destination,
                "UPGRADE_",
                "DESTINATION",
                &mut volumes,
                &mut mounts,
                &mut env,
            );
            if let Some(dir) = backup.destination.url.strip_prefix("file://") {
                volumes.push(json!({"name": "backups", "emptyDir": {}}));
                mounts.push(json!({"name": "backups", "mountPath": dir}));
            }
        }
        UpgradeStep::Verify => {
            let statefulset = names::statefulset(name);
            let voters: Vec<String> = (0..replicas)
                .map(|ordinal| format!("{statefulset}-{ordinal}"))
                .collect();
            env.push(env_var("UPGRADE_TARGET_VERSION", to));
            env.push(env_var("UPGRADE_EXPECTED_VOTERS", &voters.join(",")));
        }
        UpgradeStep::Roll => {
            return Err(RenderError::Build {
                kind: "Job",
                message: "the roll is the rollout gate's, not a Job".into(),
            });
        }
    }
    jobs::trust_servers_ca(cluster, &mut volumes, &mut mounts, &mut env);
    let mut container = jobs::binary_container(
        COMPONENT_UPGRADE,
        image,
        env,
        jobs::credentials_env_from(credentials),
        mounts,
        None,
    )?;
    container["args"] = json!([step.name()]);
    jobs::job(
        cluster,
        JobParts {
            name: job_name(name, step, to, attempt),
            component: COMPONENT_UPGRADE,
            service_account: names::upgrade_service_account(name),
            token_seconds: jobs::TOKEN_SECONDS,
            deadline_seconds: STEP_DEADLINE_SECONDS,
            ttl_seconds_after_finished: 3600,
            init_containers: Vec::new(),
            containers: vec![container],
            volumes,
            pod_labels: jobs::workload_identity_labels(credentials),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    fn backed_up() -> OpenBaoCluster {
        let mut cluster = fixtures::backed_up();
        cluster.spec.replicas = 3;
        cluster
    }

    fn container(job: &Job) -> serde_json::Value {
        serde_json::to_value(job).unwrap()["spec"]["template"]["spec"]["containers"][0].clone()
    }

    #[test]
    fn each_step_runs_as_the_upgrade_identity_with_only_its_inputs() {
        let cluster = backed_up();
        let preflight = job(
            &cluster,
            UpgradeStep::Preflight,
            "2.7.2",
            None,
            "x/upgrade:1",
        )
        .unwrap();
        let pod = serde_json::to_value(&preflight).unwrap()["spec"]["template"]["spec"].clone();
        assert_eq!(pod["serviceAccountName"], "dev-upgrade");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let c = container(&preflight);
        assert_eq!(c["args"], json!(["preflight"]));
        assert_eq!(
            fixtures::env_value(&c, "UPGRADE_MIN_FAILURE_TOLERANCE").as_deref(),
            Some("1")
        );
        // Only the snapshot step gets the storage and its credentials.
        assert_eq!(c["envFrom"], json!([]));
        assert_eq!(fixtures::env_value(&c, "UPGRADE_DESTINATION"), None);

        let snapshot = container(
            &job(
                &cluster,
                UpgradeStep::Snapshot,
                "2.7.2",
                None,
                "x/upgrade:1",
            )
            .unwrap(),
        );
        assert_eq!(snapshot["args"], json!(["snapshot"]));
        assert_eq!(
            fixtures::env_value(&snapshot, "UPGRADE_DESTINATION").as_deref(),
            Some("s3://backups/openbao")
        );
        assert_eq!(
            snapshot["envFrom"][0]["secretRef"]["name"],
            "s3-credentials"
        );

        let verify =
            container(&job(&cluster, UpgradeStep::Verify, "2.7.2", None, "x/upgrade:1").unwrap());
        assert_eq!(
            fixtures::env_value(&verify, "UPGRADE_EXPECTED_VOTERS").as_deref(),
            Some("dev-0,dev-1,dev-2")
        );
        assert_eq!(
            fixtures::env_value(&verify, "UPGRADE_TARGET_VERSION").as_deref(),
            Some("2.7.2")
        );
    }

    #[test]
    fn a_retry_gets_a_new_job_and_a_restart_finds_the_same_one() {
        let first = job_name("dev", UpgradeStep::Snapshot, "2.7.2", None);
        assert_eq!(first, job_name("dev", UpgradeStep::Snapshot, "2.7.2", None));
        assert_ne!(
            first,
            job_name("dev", UpgradeStep::Snapshot, "2.7.2", Some("1"))
        );
        assert_ne!(first, job_name("dev", UpgradeStep::Verify, "2.7.2", None));
        let long = job_name(&"c".repeat(80), UpgradeStep::Preflight, "2.7.2", None);
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn a_snapshot_without_backups_names_the_field() {
        let mut cluster = backed_up();
        cluster.spec.backup = None;
        let err = job(&cluster, UpgradeStep::Snapshot, "2.7.2", None, "x").unwrap_err();
        assert!(err.to_string().contains("spec.backup"), "{err}");
    }
}
