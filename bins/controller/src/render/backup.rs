//! The backup identity's ServiceAccount and the backup Job, from
//! `spec.backup`. The Job logs in with its own JWT role; what it shares
//! with every generated Job is in [`super::jobs`].

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use lifecycle_types::backup::BackupSpec;
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::jobs::{self, JobParts, TERMINATION_LOG, env_var};
use super::{API_PORT, RenderError, name_and_namespace};

/// Label value of `app.kubernetes.io/component` on backup Jobs and pods.
pub const COMPONENT_BACKUP: &str = "backup";

/// Why a backup Job runs; part of its name, so a controller that restarts
/// between creating the Job and recording it finds the same Job again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupCause {
    /// The schedule slot, as `YYYYMMDDhhmm` (UTC).
    Schedule(String),
    /// `spec.backup.trigger`.
    Trigger(String),
}

impl BackupCause {
    /// For `status.operation.cause`.
    pub fn describe(&self) -> String {
        match self {
            Self::Schedule(slot) => format!("schedule:{slot}"),
            Self::Trigger(value) => format!("trigger:{value}"),
        }
    }

    fn suffix(&self) -> String {
        match self {
            Self::Schedule(slot) => slot.clone(),
            // Trigger values are label-like but not lowercase; a digest is.
            Self::Trigger(value) => jobs::digest_suffix('m', value),
        }
    }
}

/// The backup Job's name for `cause`: at most 63 characters (a label value).
pub fn job_name(cluster: &str, cause: &BackupCause) -> String {
    jobs::job_name(cluster, "backup", &cause.suffix())
}

/// The backup identity's ServiceAccount (`<cluster>-backup`, the subject
/// of the `openbao-operator-backup` JWT role).
pub fn service_account(cluster: &OpenBaoCluster) -> Result<ServiceAccount, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    jobs::service_account(
        cluster,
        backup_spec(cluster)?.credentials.as_ref(),
        names::backup_service_account(name),
    )
}

/// The Job for one backup.
pub fn job(
    cluster: &OpenBaoCluster,
    cause: &BackupCause,
    default_image: &str,
) -> Result<Job, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let spec = backup_spec(cluster)?;
    let mut volumes = Vec::new();
    let mut mounts = vec![jobs::token_mount()];
    let mut env = vec![
        env_var("OPENBAO_ADDR", &addresses(cluster)?),
        env_var("BACKUP_NAMESPACE", namespace),
        env_var("BACKUP_CLUSTER", name),
        env_var("BACKUP_CLUSTER_UID", super::cluster_uid(cluster)?),
        env_var("BACKUP_RESULT_FILE", TERMINATION_LOG),
        env_var("LOG_JSON", "true"),
    ];
    jobs::storage_access(
        &spec.destination,
        "BACKUP_",
        "DESTINATION",
        &mut volumes,
        &mut mounts,
        &mut env,
    );
    jobs::trust_servers_ca(cluster, &mut volumes, &mut mounts, &mut env);
    if let Some(retention) = &spec.retention {
        if let Some(keep) = retention.keep_last {
            env.push(env_var("BACKUP_KEEP_LAST", &keep.to_string()));
        }
        if let Some(age) = &retention.max_age {
            env.push(env_var("BACKUP_MAX_AGE", age));
        }
    }
    if let Some(lock) = &spec.object_lock {
        let mode = match lock.mode {
            lifecycle_types::backup::ObjectLockMode::Governance => "governance",
            lifecycle_types::backup::ObjectLockMode::Compliance => "compliance",
        };
        env.push(env_var("BACKUP_OBJECT_LOCK_MODE", mode));
        env.push(env_var("BACKUP_OBJECT_LOCK_DAYS", &lock.days.to_string()));
    }
    // A file:// destination is a directory inside the Job (development).
    if let Some(dir) = spec.destination.url.strip_prefix("file://") {
        volumes.push(json!({"name": "backups", "emptyDir": {}}));
        mounts.push(json!({"name": "backups", "mountPath": dir}));
    }
    volumes.push(json!({"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}));
    mounts.push(json!({"name": "tmp", "mountPath": "/tmp"}));
    let container = jobs::binary_container(
        COMPONENT_BACKUP,
        spec.image.as_deref().unwrap_or(default_image),
        env,
        jobs::credentials_env_from(spec.credentials.as_ref()),
        mounts,
        spec.resources.as_ref(),
    )?;
    jobs::job(
        cluster,
        JobParts {
            name: job_name(name, cause),
            component: COMPONENT_BACKUP,
            service_account: names::backup_service_account(name),
            token_seconds: jobs::TOKEN_SECONDS,
            deadline_seconds: spec.deadline_seconds,
            ttl_seconds_after_finished: spec.ttl_seconds_after_finished,
            init_containers: Vec::new(),
            containers: vec![container],
            volumes,
            pod_labels: jobs::workload_identity_labels(spec.credentials.as_ref()),
        },
    )
}

pub(super) fn backup_spec(cluster: &OpenBaoCluster) -> Result<&BackupSpec, RenderError> {
    cluster
        .spec
        .backup
        .as_ref()
        .ok_or_else(|| RenderError::InvalidSpec {
            field: "spec.backup".into(),
            message: "is not set; a backup Job is rendered only for a cluster with backups".into(),
        })
}

/// The active Service first, then every pod: the Job finds the leader.
pub(super) fn addresses(cluster: &OpenBaoCluster) -> Result<String, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let headless = names::headless_service(name);
    let statefulset = names::statefulset(name);
    let mut all = vec![format!(
        "https://{}.{namespace}.svc:{API_PORT}",
        names::active_service(name)
    )];
    all.extend((0..cluster.spec.replicas.max(1)).map(|ordinal| {
        format!("https://{statefulset}-{ordinal}.{headless}.{namespace}.svc:{API_PORT}")
    }));
    Ok(all.join(","))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::render::fixtures;

    fn with_backup() -> OpenBaoCluster {
        let mut cluster = fixtures::development();
        cluster.spec.backup = Some(
            serde_json::from_value(json!({
                "schedule": "*/5 * * * *",
                "destination": {"url": "s3://backups/openbao", "endpoint": "http://127.0.0.1:9000", "region": "us-east-1"},
                "credentials": {"secretRef": "s3-credentials"},
                "retention": {"keepLast": 2, "maxAge": "7d"},
            }))
            .unwrap(),
        );
        cluster
    }

    #[test]
    fn the_job_runs_as_the_backup_identity_under_restricted_security() {
        let cluster = with_backup();
        let cause = BackupCause::Schedule("202612020700".into());
        let job = job(&cluster, &cause, "example/backup:1").unwrap();
        let value = serde_json::to_value(&job).unwrap();
        let pod = &value["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "dev-backup");
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let container = &pod["containers"][0];
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"][0],
            "ALL"
        );
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(container["terminationMessagePath"], TERMINATION_LOG);
        assert_eq!(
            pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
            "openbao-internal"
        );
        assert_eq!(
            container["envFrom"][0]["secretRef"]["name"],
            "s3-credentials"
        );
        let env: BTreeMap<String, String> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(env["BACKUP_KEEP_LAST"], "2");
        assert_eq!(env["BACKUP_S3_ENDPOINT"], "http://127.0.0.1:9000");
        assert!(env["OPENBAO_ADDR"].starts_with("https://dev-active.team-a.svc:8200,"));
        assert_eq!(value["spec"]["backoffLimit"], 0);
        assert_eq!(value["spec"]["activeDeadlineSeconds"], 1800);
        assert_eq!(value["metadata"]["name"], "dev-backup-202612020700");
        assert!(!env.contains_key("BACKUP_STORAGE_CA_FILE"));
    }

    #[test]
    fn a_private_storage_ca_is_mounted_and_named_to_the_binary() {
        let mut cluster = with_backup();
        let destination = &mut cluster.spec.backup.as_mut().unwrap().destination;
        destination.endpoint = Some("https://s3.storage.svc:9000".into());
        destination.ca_secret_ref = Some("s3-ca".into());
        let job = job(&cluster, &BackupCause::Trigger("t".into()), "b:1").unwrap();
        let pod = serde_json::to_value(job.spec.unwrap().template.spec.unwrap()).unwrap();
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["secret"]["secretName"] == "s3-ca")
            .expect("the CA Secret is a volume");
        let container = &pod["containers"][0];
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume["name"])
            .expect("and mounted");
        assert_eq!(mount["readOnly"], true);
        let file = fixtures::env_value(container, "BACKUP_STORAGE_CA_FILE").unwrap();
        assert_eq!(
            file,
            format!("{}/ca.crt", mount["mountPath"].as_str().unwrap())
        );
    }

    #[test]
    fn job_names_are_stable_and_fit_a_label() {
        let long = "a".repeat(60);
        let trigger = BackupCause::Trigger("Release-1.2".into());
        let name = job_name(&long, &trigger);
        assert!(name.len() <= 63, "{name}");
        assert_eq!(name, job_name(&long, &trigger));
        assert_ne!(
            name,
            job_name(&long, &BackupCause::Trigger("Release-1.3".into()))
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
