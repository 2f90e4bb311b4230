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
use openbao_client::raft::AutopilotState;
use serde_json::json;

const JOB: &str = "upgrade";
const DEFAULT_ROLE: &str = "openbao-operator-upgrade";

/// OpenBao upgrade Job.
///
/// Logs in with the upgrade JWT role and performs one step of a rolling
/// upgrade: `preflight` before the first pod is replaced, `step-down`
/// before the leader is replaced (last), `verify` after the last. Its
/// policy holds only those paths: it reads no secret and cannot restore.
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
    },
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
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Args = job_runtime::parse_args(JOB);
    let result_file = args.result_file.clone();
    job_runtime::run_job(
        JOB,
        "upgrade step done",
        result_file.as_deref(),
        |_stop| async move { run(&args).await },
    )
    .await
}

fn verification(problems: Vec<String>) -> JobError {
    JobError::new(ExitCode::Verification, problems.join("; "))
}

async fn run(args: &Args) -> Result<serde_json::Value, JobError> {
    let node = args.openbao.connect(DEFAULT_ROLE).await?;
    let state = node.client.autopilot_state().await.map_err(|e| {
        JobError::from_openbao(
            ExitCode::Unexpected,
            "read sys/storage/raft/autopilot/state",
            e,
        )
    })?;
    match &args.step {
        Command::Preflight {
            min_failure_tolerance,
        } => {
            let problems = preflight_problems(&state, *min_failure_tolerance);
            if !problems.is_empty() {
                return Err(verification(problems));
            }
            Ok(json!({
                "step": "preflight",
                "versions": versions(&state),
                "voters": state.voters,
                "leader": state.leader,
                "failureTolerance": state.failure_tolerance,
            }))
        }
        Command::StepDown { wait_timeout } => {
            let previous = state.leader.clone();
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
        } => {
            let problems = verify_problems(&state, target_version, expected_voters);
            if !problems.is_empty() {
                return Err(verification(problems));
            }
            Ok(json!({
                "step": "verify",
                "version": target_version,
                "voters": state.voters,
                "leader": state.leader,
            }))
        }
    }
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
