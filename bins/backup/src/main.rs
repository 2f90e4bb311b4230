//! Backup Job: streams a Raft snapshot from the active OpenBao node into
//! object storage, hashing it on the way, and writes the manifest last.

mod object_lock;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use job_runtime::connection::parse_duration;
use job_runtime::{ExitCode, JobError, OpenBaoArgs};
use object_store::ObjectStoreExt;
use serde_json::json;
use snapshot_store::layout::{BackupName, cluster_folder, manifest_path, snapshot_path};
use snapshot_store::manifest::Manifest;
use snapshot_store::retention::{RetentionPolicy, expired};
use snapshot_store::store::DestinationOptions;
use snapshot_store::upload::{Origin, UploadError, upload_snapshot};
use snapshot_store::{Destination, StoreError};
use tokio_util::sync::CancellationToken;

const JOB: &str = "backup";
/// The backup identity's JWT role (policies/jwt-roles.hcl).
const DEFAULT_ROLE: &str = "openbao-operator-backup";

/// OpenBao backup Job.
///
/// Logs in with the backup JWT role (projected ServiceAccount token,
/// audience openbao-internal), finds the active node and streams
/// sys/storage/raft/snapshot straight into object storage, computing its
/// SHA-256 and size on the way; nothing is staged on local disk. The
/// manifest (<name>.json) is written only after the snapshot upload
/// completed, so an interrupted backup never counts as good. Then
/// retention deletes old backups, never the newest good one.
///
/// Objects: <prefix>/<namespace>/<cluster>/<UTC timestamp>-<id>.snap and
/// .json. Destinations: s3://bucket/prefix, gs://bucket/prefix,
/// az://container/prefix, file:///dir. Storage credentials come from the
/// provider's standard chain (AWS_*, GOOGLE_*, AZURE_* environment, web or
/// workload identity, instance metadata), never from flags.
///
/// By hand, against a local cluster:
///   OPENBAO_ADDR=https://127.0.0.1:8200 OPENBAO_CACERT=ca.pem \
///   backup --auth token --token-file ~/.bao-token \
///     --destination file:///tmp/backups --namespace dev --cluster local
///
/// The last stdout line is `OPENBAO_OPERATOR_RESULT {json}`.
#[derive(Parser, Debug)]
#[command(version, after_help = ExitCode::help_table())]
struct Args {
    #[command(flatten)]
    openbao: OpenBaoArgs,
    /// Where backups go: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir.
    #[arg(long, env = "BACKUP_DESTINATION")]
    destination: String,
    /// Namespace of the OpenBaoCluster (part of the object path and the manifest).
    #[arg(long, env = "BACKUP_NAMESPACE")]
    namespace: String,
    /// Name of the OpenBaoCluster.
    #[arg(long, env = "BACKUP_CLUSTER")]
    cluster: String,
    /// The OpenBaoCluster's metadata.uid, recorded in the manifest (a
    /// restore into a new cluster uses it to find the operator's JWT role).
    #[arg(long, env = "BACKUP_CLUSTER_UID")]
    cluster_uid: Option<String>,
    /// S3-compatible endpoint URL (MinIO, versitygw, ...).
    #[arg(long, env = "BACKUP_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// GCS endpoint URL (an emulator).
    #[arg(long, env = "BACKUP_GCS_ENDPOINT")]
    gcs_endpoint: Option<String>,
    /// The destination is a local emulator: unsigned requests, no credential lookup.
    #[arg(long, env = "BACKUP_STORAGE_EMULATOR")]
    storage_emulator: bool,
    /// PEM CA certificates of a private storage endpoint, trusted besides the usual roots.
    #[arg(long, env = "BACKUP_STORAGE_CA_FILE")]
    storage_ca_file: Option<std::path::PathBuf>,
    /// Keep at least this many newest backups.
    #[arg(long, env = "BACKUP_KEEP_LAST")]
    keep_last: Option<usize>,
    /// Keep backups younger than this (e.g. 30d).
    #[arg(long, env = "BACKUP_MAX_AGE", value_parser = parse_duration)]
    max_age: Option<Duration>,
    /// Make each backup immutable with S3 Object Lock in this mode (s3:// only; the bucket needs Object Lock enabled).
    #[arg(
        long,
        env = "BACKUP_OBJECT_LOCK_MODE",
        value_enum,
        requires = "object_lock_days"
    )]
    object_lock_mode: Option<object_lock::LockMode>,
    /// How long Object Lock keeps each backup, in days.
    #[arg(long, env = "BACKUP_OBJECT_LOCK_DAYS", requires = "object_lock_mode")]
    object_lock_days: Option<u64>,
    /// Extra attempts after a transient failure (new leader, storage hiccup).
    #[arg(long, env = "BACKUP_RETRIES", default_value_t = 2)]
    retries: u32,
    /// Also write the result JSON here (Kubernetes reads /dev/termination-log).
    #[arg(long, env = "BACKUP_RESULT_FILE")]
    result_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Args = job_runtime::parse_args(JOB);
    let result_file = args.result_file.clone();
    job_runtime::run_job(JOB, "backup completed", result_file.as_deref(), |stop| async move {
        tracing::info!(cluster = %args.cluster, namespace = %args.namespace, "backup of this cluster");
        run(&args, &stop).await
    })
    .await
}

async fn run(args: &Args, stop: &CancellationToken) -> Result<serde_json::Value, JobError> {
    let destination = Destination::open(
        &args.destination,
        &DestinationOptions {
            s3_endpoint: args.s3_endpoint.clone(),
            gcs_endpoint: args.gcs_endpoint.clone(),
            emulator: args.storage_emulator,
            ca_file: args.storage_ca_file.clone(),
        },
    )
    .map_err(|e| JobError::new(ExitCode::Config, e.to_string()))?;
    let folder = cluster_folder(&destination.prefix, &args.namespace, &args.cluster);
    let lock = match (args.object_lock_mode, args.object_lock_days) {
        (Some(mode), Some(days)) => {
            let bucket = args
                .destination
                .strip_prefix("s3://")
                .and_then(|rest| rest.split('/').next())
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    JobError::new(
                        ExitCode::Config,
                        "--object-lock-mode needs an s3://bucket/prefix destination",
                    )
                })?;
            let period = Duration::from_secs(days * 86_400);
            // Destination::open has read and checked the same file.
            let ca_pem = match &args.storage_ca_file {
                Some(file) => Some(std::fs::read(file).map_err(|e| {
                    JobError::new(
                        ExitCode::Config,
                        format!("cannot read the storage CA file {}: {e}", file.display()),
                    )
                })?),
                None => None,
            };
            let endpoint = args.s3_endpoint.as_deref();
            Some(
                object_lock::ObjectLock::new(bucket, endpoint, ca_pem, mode, period)
                    .await
                    .map_err(|e| JobError::new(ExitCode::Config, e))?,
            )
        }
        _ => None,
    };

    let mut attempt = 0;
    let manifest = loop {
        attempt += 1;
        match attempt_backup(args, &destination, &folder, lock.as_ref(), stop).await {
            Ok(manifest) => break manifest,
            Err(error) if error.transient && attempt <= args.retries && !stop.is_cancelled() => {
                let pause = Duration::from_secs(2u64.pow(attempt.min(4)));
                tracing::warn!(attempt, error = %error.message, ?pause, "backup attempt failed; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled() => return Err(interrupted()),
                }
            }
            Err(error) => return Err(error),
        }
    };
    let deleted = apply_retention(args, &destination, &folder).await;
    Ok(json!({
        "destination": destination.url,
        "snapshot": manifest.snapshot,
        "manifest": manifest_path_for(&folder, &manifest),
        "size": manifest.size,
        "sha256": manifest.sha256,
        "openbaoVersion": manifest.openbao_version,
        "raftIndex": manifest.raft_index,
        "raftTerm": manifest.raft_term,
        "attempts": attempt,
        "objectLock": lock.as_ref().map(|_| json!({"mode": format!("{:?}", args.object_lock_mode), "days": args.object_lock_days})),
        "retention": deleted,
    }))
}

fn manifest_path_for(folder: &object_store::path::Path, manifest: &Manifest) -> String {
    let file = manifest.snapshot.rsplit('/').next().unwrap_or_default();
    BackupName::parse(file)
        .map(|(name, _)| manifest_path(folder, &name).to_string())
        .unwrap_or_default()
}

fn interrupted() -> JobError {
    JobError::new(
        ExitCode::Interrupted,
        "stopped by a signal before the backup completed; no manifest was written, so this attempt does not count as a backup",
    )
}

fn storage(error: StoreError) -> JobError {
    JobError::new(
        ExitCode::Storage,
        format!("{error}; check the destination and its credentials"),
    )
    .transient()
}

/// One attempt: discovery, login, stream, manifest. Leaves no manifest and
/// no snapshot object unless everything succeeded.
async fn attempt_backup(
    args: &Args,
    destination: &Destination,
    folder: &object_store::path::Path,
    lock: Option<&object_lock::ObjectLock>,
    stop: &CancellationToken,
) -> Result<Manifest, JobError> {
    let node = args.openbao.connect(DEFAULT_ROLE).await?;
    tracing::info!(address = %node.address, version = %node.health.body.version, "streaming a snapshot from the active node");
    let started = Instant::now();
    let snapshot = node
        .client
        .snapshot()
        .await
        .map_err(|e| JobError::from_openbao(ExitCode::Snapshot, "starting the snapshot", e))?;
    let uploaded = upload_snapshot(destination, folder, snapshot, stop)
        .await
        .map_err(|error| match error {
            UploadError::Source(e) => {
                JobError::from_openbao(ExitCode::Snapshot, "reading the snapshot stream", e)
                    .transient()
            }
            UploadError::Store(e) => storage(e),
            UploadError::Interrupted => interrupted(),
        })?;
    let snapshot_object = &uploaded.snapshot;
    let manifest = uploaded.manifest(Origin {
        cluster: args.cluster.clone(),
        namespace: args.namespace.clone(),
        cluster_id: node.health.body.cluster_id.clone(),
        kubernetes_uid: args.cluster_uid.clone(),
        openbao_version: node.health.body.version.clone(),
    });
    if stop.is_cancelled() {
        let _ = destination.store.delete(snapshot_object).await;
        return Err(interrupted());
    }
    // Lock the snapshot before the manifest exists, so that a backup that
    // counts is always an immutable one.
    if let Some(lock) = lock
        && let Err(message) = lock.retain(snapshot_object.as_ref()).await
    {
        let _ = destination.store.delete(snapshot_object).await;
        return Err(JobError::new(ExitCode::Storage, message));
    }
    // The manifest goes last: only now does the backup count.
    let manifest_object = uploaded
        .write_manifest(destination, folder, &manifest)
        .await
        .map_err(storage)?;
    if let Some(lock) = lock
        && let Err(message) = lock.retain(manifest_object.as_ref()).await
    {
        let _ = destination.store.delete(&manifest_object).await;
        return Err(JobError::new(ExitCode::Storage, message));
    }
    tracing::info!(
        snapshot = %snapshot_object,
        size = uploaded.size,
        seconds = started.elapsed().as_secs_f64(),
        raft_index = ?manifest.raft_index,
        "backup written"
    );
    Ok(manifest)
}

/// Deletes expired backups (manifest first, so a half-deleted backup never
/// looks good) and snapshots left without a manifest by failed attempts.
/// Failures are logged and reported; they do not fail the backup.
async fn apply_retention(
    args: &Args,
    destination: &Destination,
    folder: &object_store::path::Path,
) -> serde_json::Value {
    let policy = RetentionPolicy {
        keep_last: args.keep_last,
        max_age: args.max_age,
    };
    let (good, orphans) = match destination.list_backups(folder).await {
        Ok(listed) => listed,
        Err(error) => {
            tracing::warn!(%error, "cannot list backups for retention");
            return json!({"error": error.to_string()});
        }
    };
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for name in expired(&good, &policy, jiff::Timestamp::now()) {
        for path in [manifest_path(folder, &name), snapshot_path(folder, &name)] {
            match destination.store.delete(&path).await {
                Ok(()) => deleted.push(path.to_string()),
                Err(error) => errors.push(format!("{path}: {error}")),
            }
        }
    }
    // Only debris older than an hour: a younger one may belong to a backup
    // that is about to write its manifest.
    let debris_age = jiff::SignedDuration::from_hours(1);
    for orphan in orphans
        .into_iter()
        .filter(|o| jiff::Timestamp::now().duration_since(o.modified) > debris_age)
    {
        let path = orphan.path;
        match destination.store.delete(&path).await {
            Ok(()) => deleted.push(path.to_string()),
            Err(error) => errors.push(format!("{path}: {error}")),
        }
    }
    if !errors.is_empty() {
        tracing::warn!(?errors, "some expired backups could not be deleted");
    }
    json!({"deleted": deleted, "errors": errors})
}
