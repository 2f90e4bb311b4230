//! Restore Job: verifies a backup against its manifest, then streams it
//! into `snapshot-force` on the active node and waits for health.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::TryStreamExt;
use job_runtime::connection::parse_duration;
use job_runtime::{ExitCode, JobError, OpenBaoArgs};
use lifecycle_types::identities::{CANARY_FIELD, CANARY_PATH};
use lifecycle_types::restore::manifest_url_parts;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStoreExt};
use openbao_client::HealthState;
use serde_json::json;
use snapshot_store::layout::{BackupName, cluster_folder, manifest_path, snapshot_path};
use snapshot_store::manifest::{Manifest, RestoreOverrides, check_restore_target};
use snapshot_store::store::DestinationOptions;
use snapshot_store::verify::{StreamDigest, check, verifying};
use snapshot_store::{Destination, StoreError};
use tokio_util::sync::CancellationToken;

const JOB: &str = "restore";
/// The restore identity's JWT role (policies/jwt-roles.hcl).
const DEFAULT_ROLE: &str = "openbao-operator-restore";
/// The restore-drill identity's JWT role, on the throwaway node before the
/// restore and in the restored copy after it.
const DRILL_ROLE: &str = "openbao-operator-drill";

/// OpenBao restore Job.
///
/// Logs in with the restore JWT role, reads the backup's manifest and
/// verifies the snapshot's size and SHA-256 against it before a single
/// byte reaches OpenBao; refuses a backup of another cluster or of a newer
/// OpenBao version (or one where either cannot be told: a missing cluster
/// id, an unparseable version) unless told otherwise. A manifest larger
/// than 64 KiB is refused unread. Then streams the snapshot (the
/// same object version it verified) into sys/storage/raft/snapshot-force on
/// the active node, checking it again on the way, and waits until the
/// cluster is unsealed and active. A restore replaces all data, policies and
/// tokens of the cluster with the backup's; the cluster must use the seal
/// the backup was taken with.
///
/// By hand:
///   OPENBAO_ADDR=https://127.0.0.1:8200 OPENBAO_CACERT=ca.pem \
///   restore --auth token --token-file ~/.bao-token \
///     --destination file:///tmp/backups --namespace dev --cluster local --latest
///
/// With --drill the target is a restore drill's throwaway node (in the same
/// pod, on loopback): the backup is restored there, and the restored copy
/// must report a Raft index at least the manifest's and hold the canary the
/// operator wrote at bootstrap (--drill-canary, the cluster's uid).
///
/// The last stdout line is `OPENBAO_OPERATOR_RESULT {json}`.
#[derive(Parser, Debug)]
#[command(version, after_help = ExitCode::help_table())]
struct Args {
    #[command(flatten)]
    openbao: OpenBaoArgs,
    /// Where backups are: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir.
    #[arg(long, env = "RESTORE_SOURCE", required_unless_present = "manifest")]
    destination: Option<String>,
    /// One backup's manifest by URL (`<storage URL>/<UTC timestamp>-<id>.json`), wherever it was copied; its snapshot lies next to it.
    #[arg(
        long,
        env = "RESTORE_MANIFEST",
        conflicts_with_all = ["backup", "latest", "from_namespace", "from_cluster"]
    )]
    manifest: Option<String>,
    /// Namespace of the OpenBaoCluster being restored.
    #[arg(long, env = "RESTORE_NAMESPACE")]
    namespace: String,
    /// Name of the OpenBaoCluster being restored.
    #[arg(long, env = "RESTORE_CLUSTER")]
    cluster: String,
    /// Backup to restore, as `<UTC timestamp>-<id>` (the file name without extension).
    #[arg(
        long,
        env = "RESTORE_BACKUP",
        conflicts_with = "latest",
        required_unless_present_any = ["latest", "manifest"]
    )]
    backup: Option<String>,
    /// Restore the newest backup that has a manifest.
    #[arg(long, env = "RESTORE_LATEST")]
    latest: bool,
    /// Take backups from another cluster's folder (`--from-namespace/--from-cluster`) or accept another (or an unknown) OpenBao cluster id.
    #[arg(long, env = "RESTORE_ALLOW_OTHER_CLUSTER")]
    allow_other_cluster: bool,
    /// Namespace whose backups to read (defaults to --namespace).
    #[arg(long, env = "RESTORE_FROM_NAMESPACE")]
    from_namespace: Option<String>,
    /// Cluster whose backups to read (defaults to --cluster).
    #[arg(long, env = "RESTORE_FROM_CLUSTER")]
    from_cluster: Option<String>,
    /// Accept a snapshot taken by a newer OpenBao than the target runs (known to leave nodes stuck), or one whose version cannot be compared.
    #[arg(long, env = "RESTORE_ALLOW_NEWER_VERSION")]
    allow_newer_version: bool,
    #[arg(long, env = "RESTORE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    #[arg(long, env = "RESTORE_GCS_ENDPOINT")]
    gcs_endpoint: Option<String>,
    /// The source is a local emulator: unsigned requests, no credential lookup.
    #[arg(long, env = "RESTORE_STORAGE_EMULATOR")]
    storage_emulator: bool,
    /// PEM CA certificates of a private storage endpoint, trusted besides the usual roots.
    #[arg(long, env = "RESTORE_STORAGE_CA_FILE")]
    storage_ca_file: Option<std::path::PathBuf>,
    /// How long to wait for the cluster to be active again after the restore.
    #[arg(long, env = "RESTORE_WAIT_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    wait_timeout: Duration,
    /// Also write the result JSON here (Kubernetes reads /dev/termination-log).
    #[arg(long, env = "RESTORE_RESULT_FILE")]
    result_file: Option<PathBuf>,
    /// Use the seal-checking `sys/storage/raft/snapshot` endpoint: OpenBao
    /// refuses a snapshot sealed by other keys than the target's.
    #[arg(long, env = "RESTORE_SEAL_CHECKED")]
    seal_checked: bool,
    /// The target is a restore drill's throwaway node: its own cluster id is
    /// expected, and the restored copy is checked (Raft index, canary).
    #[arg(long, env = "RESTORE_DRILL", requires = "drill_canary")]
    drill: bool,
    /// The value the restored canary must hold (the cluster's uid).
    #[arg(long, env = "RESTORE_DRILL_CANARY")]
    drill_canary: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Args = job_runtime::parse_args(JOB);
    let result_file = args.result_file.clone();
    job_runtime::run_job(JOB, "restore completed", result_file.as_deref(), |stop| async move {
        tracing::info!(cluster = %args.cluster, namespace = %args.namespace, "restore of this cluster");
        run(&args, &stop).await
    })
    .await
}

fn verification(message: impl Into<String>) -> JobError {
    JobError::new(ExitCode::Verification, message)
}

fn storage(error: StoreError) -> JobError {
    JobError::new(
        ExitCode::Storage,
        format!("{error}; check the source and its credentials"),
    )
}

async fn run(args: &Args, stop: &CancellationToken) -> Result<serde_json::Value, JobError> {
    // A manifest URL names the folder to open and the backup in it.
    let named = match &args.manifest {
        Some(url) => Some(manifest_url_parts(url).ok_or_else(|| {
            JobError::new(
                ExitCode::Config,
                format!("--manifest {url:?} is not a backup manifest's URL; give <storage URL>/<UTC timestamp>-<id>.json"),
            )
        })?),
        None => None,
    };
    let location = match (named, &args.destination) {
        (Some((folder, _)), _) => folder,
        (None, Some(destination)) => destination.as_str(),
        (None, None) => {
            return Err(JobError::new(
                ExitCode::Config,
                "give --destination (RESTORE_SOURCE) or --manifest (RESTORE_MANIFEST)",
            ));
        }
    };
    let source = Destination::open(
        location,
        &DestinationOptions {
            s3_endpoint: args.s3_endpoint.clone(),
            gcs_endpoint: args.gcs_endpoint.clone(),
            emulator: args.storage_emulator,
            ca_file: args.storage_ca_file.clone(),
        },
    )
    .map_err(|e| JobError::new(ExitCode::Config, e.to_string()))?;
    let from_namespace = args.from_namespace.as_deref().unwrap_or(&args.namespace);
    let from_cluster = args.from_cluster.as_deref().unwrap_or(&args.cluster);
    if (from_namespace, from_cluster) != (args.namespace.as_str(), args.cluster.as_str())
        && !args.allow_other_cluster
    {
        return Err(JobError::new(
            ExitCode::Config,
            "--from-namespace/--from-cluster name another cluster's backups; add --allow-other-cluster to restore them here",
        ));
    }
    let folder = match named {
        Some(_) => source.prefix.clone(),
        None => cluster_folder(&source.prefix, from_namespace, from_cluster),
    };

    // 1. The manifest: without one there is no backup.
    let name = match (named.map(|(_, name)| name).or(args.backup.as_deref()), args.latest) {
        (Some(name), _) => BackupName::parse(&format!("{name}.json"))
            .map(|(n, _)| n)
            .ok_or_else(|| JobError::new(ExitCode::Config, format!("--backup {name:?} is not <UTC timestamp>-<id>, e.g. 20261125T210000Z-1a2b3c4d5e6f")))?,
        (None, _) => {
            let (good, _) = source.list_backups(&folder).await.map_err(|e| {
                if e.is_bad_manifest() {
                    verification(e.to_string())
                } else {
                    storage(e)
                }
            })?;
            good.last()
                .map(|b| b.name.clone())
                .ok_or_else(|| verification(format!("no backup with a manifest under {folder}; nothing to restore")))?
        }
    };
    let manifest_object = manifest_path(&folder, &name);
    let manifest = match source.read_manifest(&manifest_object).await {
        Ok(manifest) => manifest,
        Err(e) if e.is_not_found() => {
            return Err(verification(format!(
                "manifest {manifest_object} is missing; a snapshot without a manifest is not a complete backup and is never restored"
            )));
        }
        Err(e) if e.is_bad_manifest() => return Err(verification(e.to_string())),
        Err(e) => return Err(storage(e)),
    };

    // 2. The target, and whether this backup belongs on it.
    let role = if args.drill { DRILL_ROLE } else { DEFAULT_ROLE };
    let node = args.openbao.connect(role).await?;
    check_target(args, &manifest, &node.health.body)?;

    // 3. Verify every byte before any reaches OpenBao; remember the version read.
    // The snapshot sits next to its manifest: backups stay restorable when
    // copied to another bucket or prefix.
    let snapshot_object = snapshot_path(&folder, &name);
    if manifest.snapshot.rsplit('/').next() != snapshot_object.filename() {
        return Err(verification(format!(
            "manifest {manifest_object} describes {}, not {snapshot_object}; it was renamed or belongs to another backup",
            manifest.snapshot
        )));
    }
    let verified_etag = verify_object(&source, &snapshot_object, &manifest, stop).await?;

    // 4. Stream the same object version into snapshot-force, checking again.
    let options = GetOptions {
        if_match: verified_etag,
        ..Default::default()
    };
    let body = source
        .store
        .get_opts(&snapshot_object, options)
        .await
        .map_err(|e| storage(StoreError::object("get", &snapshot_object, e)))?
        .into_stream();
    let checked = verifying(body, manifest.size, manifest.sha256.clone());
    tracing::info!(address = %node.address, snapshot = %snapshot_object, size = manifest.size, "restoring");
    let started = Instant::now();
    let restore = async {
        if args.seal_checked {
            node.client.snapshot_restore(checked).await.map_err(|e| {
                JobError::from_openbao(ExitCode::Snapshot, "snapshot (seal-checked)", e)
            })
        } else {
            node.client
                .snapshot_force(checked)
                .await
                .map_err(|e| JobError::from_openbao(ExitCode::Snapshot, "snapshot-force", e))
        }
    };
    tokio::select! {
        result = restore => result?,
        _ = stop.cancelled() => return Err(JobError::new(ExitCode::Interrupted, "stopped by a signal during the upload; OpenBao only applies a complete snapshot, so the cluster is unchanged")),
    }

    // 5. The restored cluster must come back active and unsealed.
    let raft_index = wait_active(&node.client, args.wait_timeout).await?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        ?raft_index,
        "restore applied"
    );
    if let Some(canary) = args.drill_canary.as_deref().filter(|_| args.drill) {
        drill_checks(args, &manifest, raft_index, canary).await?;
    }
    Ok(json!({
        "backup": format!("{}-{}", name.stamp, name.id),
        "drill": args.drill,
        "manifest": manifest_object.to_string(),
        "snapshot": manifest.snapshot,
        "size": manifest.size,
        "sha256": manifest.sha256,
        "backupOpenbaoVersion": manifest.openbao_version,
        "backupNamespace": manifest.namespace,
        "backupCluster": manifest.cluster,
        "backupClusterUid": manifest.kubernetes_uid,
        "backupRaftIndex": manifest.raft_index,
        "restoredRaftIndex": raft_index,
    }))
}

/// Refuses a backup of another cluster or a newer OpenBao, or one whose
/// cluster or version cannot be compared, unless allowed.
fn check_target(
    args: &Args,
    manifest: &Manifest,
    target: &openbao_client::sys::HealthBody,
) -> Result<(), JobError> {
    let from = (
        args.from_namespace.as_deref().unwrap_or(&args.namespace),
        args.from_cluster.as_deref().unwrap_or(&args.cluster),
    );
    if (manifest.namespace.as_str(), manifest.cluster.as_str()) != from {
        return Err(verification(format!(
            "the manifest says this backup is of {}/{}, not {}/{}; it was moved or renamed",
            manifest.namespace, manifest.cluster, from.0, from.1
        )));
    }
    check_restore_target(
        manifest,
        &target.version,
        target.cluster_id.as_deref(),
        RestoreOverrides {
            // A throwaway node is a cluster of its own by design.
            allow_other_cluster: args.allow_other_cluster || args.drill,
            allow_newer_version: args.allow_newer_version,
        },
    )
    .map_err(|mismatch| verification(mismatch.to_string()))
}

/// A drill's proof that the restored copy is the cluster's data as of the
/// backup: the Raft index reached the manifest's, and the drill identity of
/// the restored data (its own JWT role and policy, from the backup) reads
/// back the canary written at bootstrap.
async fn drill_checks(
    args: &Args,
    manifest: &Manifest,
    restored_index: Option<u64>,
    expected: &str,
) -> Result<(), JobError> {
    if let Some(wanted) = manifest.raft_index {
        match restored_index {
            Some(index) if index >= wanted => {}
            other => {
                return Err(verification(format!(
                    "the restored node reports Raft index {other:?}, below the manifest's {wanted}; the snapshot does not hold what the backup recorded"
                )));
            }
        }
    }
    // The restore replaced the throwaway node's auth with the backup's: log
    // in again, now as the cluster's drill identity.
    let node = args.openbao.connect(DRILL_ROLE).await.map_err(|e| {
        JobError::new(
            e.code,
            format!(
                "{}; the restored copy has no usable {DRILL_ROLE} role (a cluster bootstrapped before restore drills existed lacks it, and the operator never rewrites roles: create it and its policy from policies/ by hand)",
                e.message
            ),
        )
    })?;
    let canary = node
        .client
        .read(CANARY_PATH)
        .await
        .map_err(|e| JobError::from_openbao(ExitCode::Verification, "read the canary", e))?;
    let found = canary
        .as_ref()
        .and_then(|body| body["data"][CANARY_FIELD].as_str())
        .map(str::to_owned);
    if found.as_deref() != Some(expected) {
        return Err(verification(format!(
            "the restored copy's canary {CANARY_PATH} holds {found:?}, not this cluster's uid; the backup is not this cluster's data or is damaged"
        )));
    }
    tracing::info!(canary = CANARY_PATH, "the restored copy holds the canary");
    Ok(())
}

/// Reads the whole object, checking size and SHA-256; returns its ETag so
/// the restore reads the very same version.
async fn verify_object(
    source: &Destination,
    object: &Path,
    manifest: &Manifest,
    stop: &CancellationToken,
) -> Result<Option<String>, JobError> {
    let result = match source.store.get(object).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(verification(format!(
                "snapshot {object} named by the manifest is missing"
            )));
        }
        Err(e) => return Err(storage(StoreError::object("get", object, e))),
    };
    let etag = result.meta.e_tag.clone();
    let mut stream = result.into_stream();
    let mut digest = StreamDigest::default();
    loop {
        let chunk = tokio::select! {
            chunk = stream.try_next() => chunk.map_err(|e| storage(StoreError::object("read", object, e)))?,
            _ = stop.cancelled() => return Err(JobError::new(ExitCode::Interrupted, "stopped by a signal while verifying; nothing was sent to OpenBao")),
        };
        let Some(chunk) = chunk else { break };
        digest.update(&chunk);
        if digest.size() > manifest.size {
            break;
        }
    }
    check(digest, manifest.size, &manifest.sha256)
        .map_err(|m| verification(format!("{m}; refusing to restore {object}")))?;
    Ok(etag)
}

/// Polls health (no token needed: the restore replaced the tokens) until
/// the node is active and unsealed; returns the Raft index it reports.
async fn wait_active(
    client: &openbao_client::Client,
    timeout: Duration,
) -> Result<Option<u64>, JobError> {
    let anonymous = client.without_token();
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match anonymous.health().await {
            Ok(health) if health.state == HealthState::Active && !health.body.sealed => {
                let leader = anonymous.leader().await.ok();
                return Ok(leader.and_then(|l| l.raft_committed_index));
            }
            Ok(health) => last = format!("{:?}", health.state),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(JobError::new(
                ExitCode::Snapshot,
                format!(
                    "the cluster did not become active within {timeout:?} after the restore (last: {last}); if it is sealed, it needs the seal key of the cluster the backup came from"
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
