//! The restore identity's ServiceAccount and the restore Job of one
//! `OpenBaoRestore`.
//!
//! The restore identity can replace everything the cluster holds, so it
//! exists only while a restore runs: the controller creates
//! `<cluster>-restore` with the Job and deletes it when the restore ends.
//! Without the ServiceAccount nobody can mint a token for it (the API
//! server refuses a TokenRequest and a pod for a missing account), and the
//! Job's projected token lives ten minutes, the least Kubernetes allows.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use lifecycle_types::backup::{BackupCredentials, BackupDestination};
use lifecycle_types::restore::{RestoreMode, manifest_url_parts};
use lifecycle_types::{OpenBaoCluster, OpenBaoRestore, names};
use serde_json::json;

use super::jobs::{self, JobParts, TERMINATION_LOG, env_var};
use super::{RenderError, name_and_namespace};

/// Label value of `app.kubernetes.io/component` on restore Jobs and pods.
pub const COMPONENT_RESTORE: &str = "restore";
/// The shortest projected token Kubernetes issues.
const TOKEN_SECONDS: i64 = 600;

/// The restore Job's name: the restore's uid makes a restore deleted and
/// created again under the same name a new Job.
pub fn job_name(cluster: &str, restore: &OpenBaoRestore) -> String {
    let uid = restore.metadata.uid.as_deref().unwrap_or_default();
    jobs::job_name(cluster, "restore", &jobs::digest_suffix('r', uid))
}

/// Where the backups are: the restore's own source, else the cluster's
/// backup destination. For a `manifest` URL, the folder it lies in, with
/// the destination's endpoint settings when the scheme is the same.
pub fn source(
    cluster: &OpenBaoCluster,
    restore: &OpenBaoRestore,
) -> Option<(BackupDestination, Option<BackupCredentials>)> {
    let own = &restore.spec.source;
    let configured = match (&own.destination, &cluster.spec.backup) {
        (Some(destination), _) => Some((destination.clone(), own.credentials.clone())),
        (None, Some(backup)) => Some((
            backup.destination.clone(),
            own.credentials
                .clone()
                .or_else(|| backup.credentials.clone()),
        )),
        (None, None) => None,
    };
    let Some((folder, _)) = own.manifest.as_deref().and_then(manifest_url_parts) else {
        return configured;
    };
    let scheme = |url: &str| url.split_once("://").map(|(s, _)| s.to_owned());
    let (settings, credentials) = match configured {
        Some((d, c)) if scheme(&d.url) == scheme(folder) => (Some(d), c),
        Some((_, c)) => (None, c),
        None => (None, own.credentials.clone()),
    };
    let destination = match settings {
        Some(d) => BackupDestination {
            url: folder.to_owned(),
            ..d
        },
        None => BackupDestination {
            url: folder.to_owned(),
            endpoint: None,
            region: None,
            emulator: false,
            ca_secret_ref: None,
        },
    };
    Some((destination, credentials))
}

fn missing_source() -> RenderError {
    RenderError::InvalidSpec {
        field: "spec.source.destination".into(),
        message: "is not set and the cluster has no spec.backup; name where the backups are".into(),
    }
}

/// The restore identity's ServiceAccount (`<cluster>-restore`).
pub fn service_account(
    cluster: &OpenBaoCluster,
    restore: &OpenBaoRestore,
) -> Result<ServiceAccount, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    let (_, credentials) = source(cluster, restore).ok_or_else(missing_source)?;
    jobs::service_account(
        cluster,
        credentials.as_ref(),
        names::restore_service_account(name),
    )
}

/// The Job that restores `restore` into `cluster`.
pub fn job(
    cluster: &OpenBaoCluster,
    restore: &OpenBaoRestore,
    default_image: &str,
) -> Result<Job, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let (destination, credentials) = source(cluster, restore).ok_or_else(missing_source)?;
    let spec = &restore.spec;
    let mut env = vec![
        env_var("OPENBAO_ADDR", &super::backup::addresses(cluster)?),
        env_var("RESTORE_NAMESPACE", namespace),
        env_var("RESTORE_CLUSTER", name),
        env_var("RESTORE_RESULT_FILE", TERMINATION_LOG),
        env_var("LOG_JSON", "true"),
    ];
    match (&spec.source.backup, &spec.source.manifest) {
        (Some(backup), _) => env.push(env_var("RESTORE_BACKUP", backup)),
        (None, Some(manifest)) => env.push(env_var("RESTORE_MANIFEST", manifest)),
        (None, None) => env.push(env_var("RESTORE_LATEST", "true")),
    }
    for (variable, value) in [
        ("RESTORE_FROM_NAMESPACE", &spec.source.from_namespace),
        ("RESTORE_FROM_CLUSTER", &spec.source.from_cluster),
    ] {
        if let Some(value) = value {
            env.push(env_var(variable, value));
        }
    }
    for (variable, on) in [
        ("RESTORE_ALLOW_OTHER_CLUSTER", spec.allow_other_cluster),
        ("RESTORE_ALLOW_NEWER_VERSION", spec.allow_newer_version),
        (
            "RESTORE_SEAL_CHECKED",
            spec.mode == RestoreMode::SealChecked,
        ),
    ] {
        if on {
            env.push(env_var(variable, "true"));
        }
    }
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}})];
    let mut mounts = vec![
        jobs::token_mount(),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    jobs::storage_access(
        &destination,
        "RESTORE_",
        "SOURCE",
        &mut volumes,
        &mut mounts,
        &mut env,
    );
    jobs::trust_servers_ca(cluster, &mut volumes, &mut mounts, &mut env);
    let container = jobs::binary_container(
        COMPONENT_RESTORE,
        spec.image.as_deref().unwrap_or(default_image),
        env,
        jobs::credentials_env_from(credentials.as_ref()),
        mounts,
        None,
    )?;
    jobs::job(
        cluster,
        JobParts {
            name: job_name(name, restore),
            component: COMPONENT_RESTORE,
            service_account: names::restore_service_account(name),
            token_seconds: TOKEN_SECONDS,
            deadline_seconds: spec.deadline_seconds,
            ttl_seconds_after_finished: 3600,
            init_containers: Vec::new(),
            containers: vec![container],
            volumes,
            pod_labels: jobs::workload_identity_labels(credentials.as_ref()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    fn restore(spec: serde_json::Value) -> OpenBaoRestore {
        let mut restore: OpenBaoRestore = serde_json::from_value(json!({
            "apiVersion": "openbao.org/v1alpha1", "kind": "OpenBaoRestore",
            "metadata": {"name": "r1", "namespace": "team-a", "uid": "0f0e"},
            "spec": spec,
        }))
        .unwrap();
        restore.metadata.uid = Some("0f0e".into());
        restore
    }

    #[test]
    fn the_job_restores_the_named_backup_with_a_ten_minute_token() {
        let cluster = fixtures::backed_up();
        let r = restore(
            json!({"cluster": "dev", "source": {"backup": "20261202T080000Z-abc"},
                               "mode": "SealChecked"}),
        );
        let value = serde_json::to_value(job(&cluster, &r, "example/restore:1").unwrap()).unwrap();
        let pod = &value["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "dev-restore");
        assert_eq!(
            pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            600
        );
        let var = |name: &str| fixtures::env_value(&pod["containers"][0], name);
        assert_eq!(
            var("RESTORE_BACKUP").as_deref(),
            Some("20261202T080000Z-abc")
        );
        assert_eq!(
            var("RESTORE_SOURCE").as_deref(),
            Some("s3://backups/openbao")
        );
        assert_eq!(var("RESTORE_SEAL_CHECKED").as_deref(), Some("true"));
        assert_eq!(var("RESTORE_LATEST"), None);
        assert_eq!(
            var("OPENBAO_CACERT").as_deref(),
            Some("/etc/openbao/ca/ca.crt")
        );
        assert_eq!(
            pod["containers"][0]["envFrom"][0]["secretRef"]["name"],
            "s3-credentials"
        );
        assert!(
            value["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("dev-restore-r")
        );
    }

    #[test]
    fn a_manifest_url_is_read_where_it_lies_with_the_clusters_endpoint() {
        let cluster = fixtures::backed_up();
        let manifest = "s3://copies/2026/20261202T080000Z-abc.json";
        let r = restore(json!({"cluster": "dev", "source": {"manifest": manifest}}));
        let value = serde_json::to_value(job(&cluster, &r, "x").unwrap()).unwrap();
        let container = &value["spec"]["template"]["spec"]["containers"][0];
        let var = |name: &str| fixtures::env_value(container, name);
        assert_eq!(var("RESTORE_MANIFEST").as_deref(), Some(manifest));
        assert_eq!(var("RESTORE_SOURCE").as_deref(), Some("s3://copies/2026"));
        assert_eq!(
            var("RESTORE_S3_ENDPOINT").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!((var("RESTORE_BACKUP"), var("RESTORE_LATEST")), (None, None));
        // Another kind of storage: none of the cluster's endpoint settings.
        let r = restore(json!({"cluster": "dev", "source":
            {"manifest": "gs://copies/20261202T080000Z-abc.json"}}));
        let value = serde_json::to_value(job(&cluster, &r, "x").unwrap()).unwrap();
        let container = &value["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(fixtures::env_value(container, "RESTORE_S3_ENDPOINT"), None);
        assert_eq!(fixtures::env_value(container, "RESTORE_GCS_ENDPOINT"), None);
    }

    #[test]
    fn without_a_destination_the_field_is_named() {
        let mut cluster = fixtures::development();
        cluster.spec.backup = None;
        let r = restore(json!({"cluster": "dev", "source": {"latest": true}}));
        let err = job(&cluster, &r, "x").unwrap_err();
        assert!(err.to_string().contains("spec.source.destination"), "{err}");
    }
}
