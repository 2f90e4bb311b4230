//! One-shot upgrade Job: one step of a rolling upgrade, under the upgrade
//! identity (`policies/upgrade.hcl`).
//!
//! The checks are pure functions of OpenBao's autopilot state
//! ([`preflight_problems`], [`verify_problems`]); `main` only logs in,
//! reads and reports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use job_runtime::connection::parse_duration;
use job_runtime::{ExitCode, JobError, OpenBaoArgs};
use object_store::ObjectStoreExt;
use openbao_client::raft::AutopilotState;
use serde_json::json;
use snapshot_store::layout::cluster_folder;
use snapshot_store::store::DestinationOptions;
use snapshot_store::upload::{Origin, UploadError, upload_snapshot};
use snapshot_store::{Destination, StoreError};
use tokio_util::sync::CancellationToken;

const JOB: &str = "upgrade";
const DEFAULT_ROLE: &str = "openbao-operator-upgrade";

/// OpenBao upgrade Job.
///
/// Logs in with the upgrade JWT role and performs one step of a rolling
/// upgrade: `preflight` before the first pod is replaced, `snapshot` (the
/// pre-upgrade backup, streamed to the backup destination with its
/// manifest), `step-down` before the leader is replaced (last), `verify`
/// after the last. Its policy holds only those paths: it reads no secret
/// and cannot restore.
#[derive(Parser, Debug)]
#[command(version, after_help = ExitCode::help_table())]
struct Args {
    #[command(flatten)]
    openbao: OpenBaoArgs,
    /// Also write the result JSON here (Kubernetes reads /dev/termination-log).
    #[arg(long, env = "UPGRADE_RESULT_FILE", global = true)]
    result_file: Option<PathBuf>,
    #[command(subcommand)]
    step: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Autopilot healthy, every voter on one version, and a failure
    /// tolerance of at least --min-failure-tolerance.
    Preflight {
        #[arg(long, env = "UPGRADE_MIN_FAILURE_TOLERANCE", default_value_t = 1)]
        min_failure_tolerance: i64,
        #[command(flatten)]
        settle: Settle,
    },
    /// Streams a pre-upgrade snapshot from the active node into the
    /// backup destination and writes its manifest last, like a backup
    /// (the restore accepts it).
    Snapshot(SnapshotArgs),
    /// Steps the active node down and waits until another node is active.
    StepDown {
        #[arg(long, env = "UPGRADE_WAIT_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
        wait_timeout: Duration,
    },
    /// Every voter on --target-version, one leader, autopilot healthy, and
    /// the voters exactly --expected-voters (the pods' node ids) when given.
    Verify {
        #[arg(long, env = "UPGRADE_TARGET_VERSION")]
        target_version: String,
        #[arg(long, env = "UPGRADE_EXPECTED_VOTERS", value_delimiter = ',')]
        expected_voters: Vec<String>,
        #[command(flatten)]
        settle: Settle,
    },
}

/// How long a check keeps re-reading autopilot before it reports what is
/// wrong: a node that just restarted is unhealthy, and reports no version,
/// until autopilot's stabilization time has passed.
#[derive(clap::Args, Debug)]
struct Settle {
    /// Re-check every 2 s for this long before failing (0s: check once).
    #[arg(long = "settle-timeout", env = "UPGRADE_SETTLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(clap::Args, Debug)]
struct SnapshotArgs {
    /// Where backups go: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir.
    #[arg(long, env = "UPGRADE_DESTINATION")]
    destination: String,
    /// Namespace of the OpenBaoCluster (part of the object path and the manifest).
    #[arg(long, env = "UPGRADE_NAMESPACE")]
    namespace: String,
    /// Name of the OpenBaoCluster.
    #[arg(long, env = "UPGRADE_CLUSTER")]
    cluster: String,
    /// The OpenBaoCluster's metadata.uid, recorded in the manifest.
    #[arg(long, env = "UPGRADE_CLUSTER_UID")]
    cluster_uid: Option<String>,
    /// S3-compatible endpoint URL (MinIO, versitygw, ...).
    #[arg(long, env = "UPGRADE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// GCS endpoint URL (an emulator).
    #[arg(long, env = "UPGRADE_GCS_ENDPOINT")]
    gcs_endpoint: Option<String>,
    /// The destination is a local emulator: unsigned requests, no credential lookup.
    #[arg(long, env = "UPGRADE_STORAGE_EMULATOR")]
    storage_emulator: bool,
    /// PEM CA certificates of a private storage endpoint, trusted besides the usual roots.
    #[arg(long, env = "UPGRADE_STORAGE_CA_FILE")]
    storage_ca_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Args = job_runtime::parse_args(JOB);
    let result_file = args.result_file.clone();
    job_runtime::run_job(
        JOB,
        "upgrade step done",
        result_file.as_deref(),
        |stop| async move {
            match &args.step {
                Command::Snapshot(snapshot) => pre_upgrade_snapshot(&args, snapshot, &stop).await,
                _ => run(&args).await,
            }
        },
    )
    .await
}

fn verification(problems: Vec<String>) -> JobError {
    JobError::new(ExitCode::Verification, problems.join("; "))
}

/// Reads autopilot's view of the cluster.
async fn autopilot_state(client: &openbao_client::Client) -> Result<AutopilotState, JobError> {
    client.autopilot_state().await.map_err(|e| {
        JobError::from_openbao(
            ExitCode::Unexpected,
            "read sys/storage/raft/autopilot/state",
            e,
        )
    })
}

/// Autopilot's state once `problems` finds nothing, re-read every 2 s
/// until `settle` has passed; then the problems of the last read.
async fn settled(
    client: &openbao_client::Client,
    settle: &Settle,
    problems: impl Fn(&AutopilotState) -> Vec<String>,
) -> Result<AutopilotState, JobError> {
    let deadline = Instant::now() + settle.timeout;
    loop {
        let state = autopilot_state(client).await?;
        let found = problems(&state);
        if found.is_empty() {
            return Ok(state);
        }
        if Instant::now() >= deadline {
            return Err(verification(found));
        }
        tracing::info!(problems = %found.join("; "), "waiting for the cluster to settle");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn run(args: &Args) -> Result<serde_json::Value, JobError> {
    let node = args.openbao.connect(DEFAULT_ROLE).await?;
    match &args.step {
        Command::Preflight {
            min_failure_tolerance,
            settle,
        } => {
            let state = settled(&node.client, settle, |state| {
                preflight_problems(state, *min_failure_tolerance)
            })
            .await?;
            Ok(json!({
                "step": "preflight",
                "versions": versions(&state),
                "voters": state.voters,
                "leader": state.leader,
                "failureTolerance": state.failure_tolerance,
            }))
        }
        Command::Snapshot(_) => unreachable!("the snapshot step runs on its own"),
        Command::StepDown { wait_timeout } => {
            let previous = autopilot_state(&node.client).await?.leader;
            node.client.step_down().await.map_err(|e| {
                JobError::from_openbao(
                    ExitCode::Unexpected,
                    "step the active node down (sys/step-down)",
                    e,
                )
            })?;
            let leader = wait_for_new_leader(args, &previous, *wait_timeout).await?;
            Ok(json!({"step": "step-down", "previousLeader": previous, "leader": leader}))
        }
        Command::Verify {
            target_version,
            expected_voters,
            settle,
        } => {
            let state = settled(&node.client, settle, |state| {
                verify_problems(state, target_version, expected_voters)
            })
            .await?;
            Ok(json!({
                "step": "verify",
                "version": target_version,
                "voters": state.voters,
                "leader": state.leader,
            }))
        }
    }
}

/// The pre-upgrade snapshot: the backup's own code path (snapshot-store),
/// under the upgrade identity. One attempt: the controller reports a
/// failure and `spec.upgrade.retry` runs it again.
async fn pre_upgrade_snapshot(
    args: &Args,
    snapshot_args: &SnapshotArgs,
    stop: &CancellationToken,
) -> Result<serde_json::Value, JobError> {
    let storage = |error: StoreError| {
        JobError::new(
            ExitCode::Storage,
            format!(
                "{error}; check the backup destination and its credentials, then retry the upgrade step"
            ),
        )
    };
    let destination = Destination::open(
        &snapshot_args.destination,
        &DestinationOptions {
            s3_endpoint: snapshot_args.s3_endpoint.clone(),
            gcs_endpoint: snapshot_args.gcs_endpoint.clone(),
            emulator: snapshot_args.storage_emulator,
            ca_file: snapshot_args.storage_ca_file.clone(),
        },
    )
    .map_err(|e| JobError::new(ExitCode::Config, e.to_string()))?;
    let folder = cluster_folder(
        &destination.prefix,
        &snapshot_args.namespace,
        &snapshot_args.cluster,
    );
    let node = args.openbao.connect(DEFAULT_ROLE).await?;
    tracing::info!(address = %node.address, version = %node.health.body.version, "streaming the pre-upgrade snapshot from the active node");
    let stream = node
        .client
        .snapshot()
        .await
        .map_err(|e| JobError::from_openbao(ExitCode::Snapshot, "starting the snapshot", e))?;
    let interrupted = || {
        JobError::new(
            ExitCode::Interrupted,
            "stopped by a signal before the snapshot was stored; no manifest was written",
        )
    };
    let uploaded = upload_snapshot(&destination, &folder, stream, stop)
        .await
        .map_err(|error| match error {
            UploadError::Source(e) => {
                JobError::from_openbao(ExitCode::Snapshot, "reading the snapshot stream", e)
            }
            UploadError::Store(e) => storage(e),
            UploadError::Interrupted => interrupted(),
        })?;
    let manifest = uploaded.manifest(Origin {
        cluster: snapshot_args.cluster.clone(),
        namespace: snapshot_args.namespace.clone(),
        cluster_id: node.health.body.cluster_id.clone(),
        kubernetes_uid: snapshot_args.cluster_uid.clone(),
        openbao_version: node.health.body.version.clone(),
    });
    if stop.is_cancelled() {
        let _ = destination.store.delete(&uploaded.snapshot).await;
        return Err(interrupted());
    }
    let manifest_object = uploaded
        .write_manifest(&destination, &folder, &manifest)
        .await
        .map_err(storage)?;
    tracing::info!(snapshot = %uploaded.snapshot, size = uploaded.size, "pre-upgrade snapshot written");
    Ok(json!({
        "step": "snapshot",
        "destination": destination.url,
        "backup": format!("{}-{}", uploaded.name.stamp, uploaded.name.id),
        "snapshot": manifest.snapshot,
        "manifest": manifest_object.to_string(),
        "size": manifest.size,
        "sha256": manifest.sha256,
        "openbaoVersion": manifest.openbao_version,
        "raftIndex": manifest.raft_index,
    }))
}

/// Polls for an active node other than `previous`.
async fn wait_for_new_leader(
    args: &Args,
    previous: &str,
    timeout: Duration,
) -> Result<String, JobError> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match args.openbao.connect(DEFAULT_ROLE).await {
            Ok(node) => node.client.autopilot_state().await.ok().map(|s| s.leader),
            Err(_) => None,
        };
        match seen {
            Some(leader) if !leader.is_empty() && leader != previous => return Ok(leader),
            _ if Instant::now() >= deadline => {
                return Err(JobError::new(
                    ExitCode::LeaderDiscovery,
                    format!(
                        "no node other than {previous} became active within {timeout:?} after the step-down; check the standbys' logs and sys/storage/raft/autopilot/state"
                    ),
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The distinct versions the voters report.
fn versions(state: &AutopilotState) -> BTreeSet<&str> {
    state
        .voters
        .iter()
        .filter_map(|id| state.servers.get(id))
        .map(|s| s.version.as_str())
        .collect()
}

/// Why the cluster must not start an upgrade now; empty when it may.
pub fn preflight_problems(state: &AutopilotState, min_failure_tolerance: i64) -> Vec<String> {
    let mut problems = Vec::new();
    if !state.healthy {
        let unhealthy: Vec<&str> = state
            .servers
            .values()
            .filter(|s| !s.healthy)
            .map(|s| s.id.as_str())
            .collect();
        problems.push(format!(
            "autopilot reports the cluster unhealthy (unhealthy servers: {}); wait for it to recover before upgrading",
            unhealthy.join(", ")
        ));
    }
    let versions = versions(state);
    if versions.len() > 1 {
        problems.push(format!(
            "the voters run different versions ({}); finish or undo the earlier change first",
            versions.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if state.failure_tolerance < min_failure_tolerance {
        problems.push(format!(
            "failure tolerance is {} (at least {min_failure_tolerance} needed): restarting a node could lose quorum; run at least 3 voters",
            state.failure_tolerance
        ));
    }
    problems
}

/// What is not yet as an upgrade to `target` should leave it; empty when done.
pub fn verify_problems(
    state: &AutopilotState,
    target: &str,
    expected_voters: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    let behind: Vec<String> = state
        .voters
        .iter()
        .filter_map(|id| state.servers.get(id))
        .filter(|s| s.version != target)
        .map(|s| format!("{} runs {}", s.id, s.version))
        .collect();
    if !behind.is_empty() {
        problems.push(format!(
            "not every voter runs {target}: {}",
            behind.join(", ")
        ));
    }
    let leaders = state
        .servers
        .values()
        .filter(|s| s.status == "leader")
        .count();
    if leaders != 1 || state.leader.is_empty() {
        problems.push(format!(
            "{leaders} servers report themselves leader, not one"
        ));
    }
    if !state.healthy {
        problems.push("autopilot reports the cluster unhealthy".into());
    }
    if !expected_voters.is_empty() {
        let want: BTreeSet<&str> = expected_voters.iter().map(String::as_str).collect();
        let have: BTreeSet<&str> = state.voters.iter().map(String::as_str).collect();
        if want != have {
            problems.push(format!(
                "the voters are {} but the pods are {}: membership is inconsistent",
                have.into_iter().collect::<Vec<_>>().join(","),
                want.into_iter().collect::<Vec<_>>().join(",")
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(servers: &[(&str, &str, bool, &str)], tolerance: i64) -> AutopilotState {
        serde_json::from_value(json!({
            "healthy": servers.iter().all(|s| s.2),
            "failure_tolerance": tolerance,
            "leader": servers.iter().find(|s| s.3 == "leader").map_or("", |s| s.0),
            "voters": servers.iter().map(|s| s.0).collect::<Vec<_>>(),
            "servers": servers.iter().map(|(id, version, healthy, status)| (id.to_string(), json!({
                "id": id, "address": format!("{id}:8201"), "node_status": "alive",
                "healthy": healthy, "status": status, "version": version,
                "last_index": 10, "last_term": 2, "node_type": "voter",
            }))).collect::<serde_json::Map<_, _>>(),
        }))
        .unwrap()
    }

    #[test]
    fn preflight_wants_health_one_version_and_room_to_lose_a_node() {
        let good = state(
            &[
                ("a", "2.6.2", true, "leader"),
                ("b", "2.6.2", true, "voter"),
                ("c", "2.6.2", true, "voter"),
            ],
            1,
        );
        assert!(preflight_problems(&good, 1).is_empty());
        let mixed = state(
            &[
                ("a", "2.6.2", true, "leader"),
                ("b", "2.7.2", true, "voter"),
                ("c", "2.6.2", true, "voter"),
            ],
            1,
        );
        assert!(preflight_problems(&mixed, 1)[0].contains("2.6.2, 2.7.2"));
        let alone = state(&[("a", "2.6.2", true, "leader")], 0);
        assert!(preflight_problems(&alone, 1)[0].contains("failure tolerance is 0"));
        let sick = state(
            &[
                ("a", "2.6.2", true, "leader"),
                ("b", "2.6.2", false, "voter"),
                ("c", "2.6.2", true, "voter"),
            ],
            0,
        );
        let problems = preflight_problems(&sick, 1);
        assert!(problems[0].contains("unhealthy servers: b"), "{problems:?}");
    }

    #[test]
    fn verify_wants_every_voter_on_the_target_and_the_pods_as_voters() {
        let done = state(
            &[
                ("a", "2.7.2", true, "voter"),
                ("b", "2.7.2", true, "leader"),
                ("c", "2.7.2", true, "voter"),
            ],
            1,
        );
        let pods = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert!(verify_problems(&done, "2.7.2", &pods).is_empty());
        assert!(verify_problems(&done, "2.7.2", &[]).is_empty());
        let half = state(
            &[
                ("a", "2.7.2", true, "voter"),
                ("b", "2.6.2", true, "leader"),
                ("c", "2.7.2", true, "voter"),
            ],
            1,
        );
        assert!(verify_problems(&half, "2.7.2", &pods)[0].contains("b runs 2.6.2"));
        let extra = [
            "a".to_owned(),
            "b".to_owned(),
            "c".to_owned(),
            "d".to_owned(),
        ];
        assert!(verify_problems(&done, "2.7.2", &extra)[0].contains("membership is inconsistent"));
    }
}
