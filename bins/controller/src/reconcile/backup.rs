//! Scheduled backups: the controller is the scheduler. A reconcile reads
//! the backup Job that holds the cluster (`status.operation`) from the
//! caches, records its result, and starts the next Job when a schedule slot
//! or a manual request is due and nothing else holds the cluster. The Job's
//! name is derived from its cause, so a controller killed between creating
//! a Job and recording it finds the same Job again.
//!
//! [`decide`] is the whole policy as a pure function; [`step`] applies it.

use std::sync::Arc;
use std::time::Duration;

use job_runtime::{ExitCode, JobResult, Outcome};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::backup::{
    BackupFailure, BackupRecord, BackupStatus, OperationKind, OperationLock,
};
use lifecycle_types::conditions::{ConditionStatus, reasons};
use lifecycle_types::events::{actions, reasons as event_reasons};

use super::snapshot::{Material, Snapshot};
use super::{ReconcileError, drill, event};
use crate::clusters::ClusterState;
use crate::context::Context;
use crate::render;
use crate::render::backup::{BackupCause, job, job_name, service_account};
use crate::render::drill::{DrillCause, job_name as drill_job_name};
use crate::schedule::Schedule;
use crate::stores::{JOB_NAME_LABEL, Known};

/// How long a finished Job's pod may be missing from the cache before the
/// result counts as lost.
const POD_GRACE_SECONDS: i64 = 30;

/// What became of the Job that holds the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Running,
    Succeeded {
        details: serde_json::Value,
        seconds: Option<i64>,
    },
    Failed {
        exit_code: Option<i32>,
        reason: String,
        message: String,
    },
}

/// An Event to publish: (type is Warning, reason, message).
pub type Event = (bool, &'static str, String);

/// Backups as status shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupView {
    pub status: Option<BackupStatus>,
    pub operation: Option<OperationLock>,
    /// `BackupHealthy`; `None` without `spec.backup`.
    pub health: Option<(ConditionStatus, String, String)>,
    /// `BackupVerified`; `None` without `spec.backup.drill`.
    pub verified: Option<(ConditionStatus, String, String)>,
    /// A `spec.restoreFrom` restore that ended in this reconcile.
    pub restored_from: Option<lifecycle_types::restore::RestoredFrom>,
    /// A `ProductionReady` gap.
    pub gap: Option<(&'static str, String)>,
}

/// One reconcile's backup decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub view: BackupView,
    /// Start a Job for this cause.
    pub start: Option<BackupCause>,
    /// Start a restore drill of this backup.
    pub start_drill: Option<(DrillCause, String)>,
    pub events: Vec<Event>,
    /// The finished Job, for metrics: Some(true) succeeded, Some(false) failed.
    pub finished: Option<bool>,
    /// When to look again (the next slot).
    pub wake: Option<Duration>,
}

/// Reads the outcome of the Job that holds `lock` from the cached Job and
/// its pod's termination message (the Job's result line as JSON, or the
/// log's tail).
pub fn outcome(
    lock: &OperationLock,
    job: Option<&Job>,
    known: &Known,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> JobOutcome {
    // The lock is written after the Job is created, but the Job's watch
    // event may reach the cache after a reconcile that reads the lock.
    let young = lock
        .started_at
        .parse::<Timestamp>()
        .is_ok_and(|t| now.as_second() - t.as_second() < POD_GRACE_SECONDS);
    let Some(job) = job else {
        return match known {
            Known::Absent if !young => JobOutcome::Failed {
                exit_code: None,
                reason: reasons::BACKUP_JOB_LOST.into(),
                message: "the Job is gone before its result was read (deleted by hand?); the next slot runs a new one".into(),
            },
            _ => JobOutcome::Running,
        };
    };
    let status = job.status.clone().unwrap_or_default();
    let finished = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
    let Some(finished) = finished else {
        return JobOutcome::Running;
    };
    let name = job.name_any();
    let terminated = pods
        .iter()
        .filter(|p| p.labels().get(JOB_NAME_LABEL) == Some(&name))
        .find_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .find_map(|c| c.state.as_ref()?.terminated.clone())
        });
    let seconds = match (&status.start_time, &status.completion_time) {
        (Some(start), Some(end)) => Some(end.0.as_second() - start.0.as_second()),
        _ => None,
    };
    let Some(terminated) = terminated else {
        let since = finished
            .last_transition_time
            .as_ref()
            .map(|t| now.as_second() - t.0.as_second())
            .unwrap_or(i64::MAX);
        if since < POD_GRACE_SECONDS {
            return JobOutcome::Running;
        }
        return JobOutcome::Failed {
            exit_code: None,
            reason: finished
                .reason
                .clone()
                .unwrap_or_else(|| reasons::BACKUP_JOB_LOST.into()),
            message: format!(
                "the Job {name} ended without a result: {}; see `kubectl describe job {name}`",
                finished.message.clone().unwrap_or_default()
            ),
        };
    };
    let message = terminated.message.clone().unwrap_or_default();
    let result = serde_json::from_str::<JobResult>(&message)
        .ok()
        .or_else(|| JobResult::parse_log(&message));
    match result {
        Some(result) if result.outcome == Outcome::Succeeded && terminated.exit_code == 0 => {
            JobOutcome::Succeeded {
                details: result.details,
                seconds,
            }
        }
        Some(result) => JobOutcome::Failed {
            exit_code: Some(terminated.exit_code),
            reason: result.reason,
            message: result.message,
        },
        None => JobOutcome::Failed {
            exit_code: Some(terminated.exit_code),
            reason: ExitCode::from_code(terminated.exit_code)
                .map(|c| c.reason().to_owned())
                .or_else(|| finished.reason.clone())
                .unwrap_or_else(|| reasons::BACKUP_JOB_LOST.into()),
            message: format!(
                "the Job {name} ended (exit code {}) without a result line; see its logs",
                terminated.exit_code
            ),
        },
    }
}

/// The whole backup policy. `outcome` is the Job in `status.operation`;
/// `may_start` is false while the cluster is paused or not initialized.
pub fn decide(
    cluster: &OpenBaoCluster,
    outcome: Option<JobOutcome>,
    now: Timestamp,
    may_start: bool,
) -> Decision {
    let previous = cluster.status.as_ref();
    let mut status = previous.and_then(|s| s.backup.clone()).unwrap_or_default();
    let mut operation = previous.and_then(|s| s.operation.clone());
    let mut decision = Decision::default();

    // The Job that holds the cluster, if it finished (a restore's or an
    // upgrade's lock is its own step's to release).
    if let Some(lock) = operation
        .clone()
        .filter(|l| l.kind.released_by_backup_step())
    {
        let outcome = outcome.unwrap_or(JobOutcome::Running);
        if outcome != JobOutcome::Running {
            operation = None;
            match lock.kind {
                OperationKind::Restore | OperationKind::Upgrade => {}
                OperationKind::Backup => {
                    decision.finished = Some(backup_finished(
                        &mut status,
                        &lock,
                        outcome,
                        now,
                        &mut decision.events,
                    ));
                }
                OperationKind::Drill => {
                    drill::finished(&mut status, &lock, outcome, now, &mut decision.events);
                }
            }
        }
    }

    let Some(spec) = &cluster.spec.backup else {
        decision.view = BackupView {
            status: previous.and_then(|s| s.backup.clone()),
            operation,
            health: None,
            verified: None,
            restored_from: None,
            gap: Some((
                reasons::BACKUPS_NOT_CONFIGURED,
                "spec.backup is not set: no backups are taken; configure scheduled backups".into(),
            )),
        };
        return decision;
    };
    let name = cluster.name_any();
    let schedule = Schedule::parse(&spec.schedule, spec.time_zone.as_deref());
    let created = cluster
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let mut last_slot = status
        .last_schedule_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .unwrap_or(created);

    if operation.is_none() && may_start {
        let requested = spec
            .trigger
            .as_ref()
            .filter(|t| status.last_trigger.as_ref() != Some(*t));
        let start = if let Some(trigger) = requested {
            status.last_trigger = Some(trigger.clone());
            Some(BackupCause::Trigger(trigger.clone()))
        } else if let (false, Ok(schedule)) = (spec.suspend, &schedule) {
            schedule.due(last_slot, now).map(|slot| {
                status.last_schedule_time = Some(slot.to_string());
                last_slot = slot;
                BackupCause::Schedule(slot_id(slot))
            })
        } else {
            None
        };
        if let Some(cause) = start {
            let job = job_name(&name, &cause);
            decision.events.push((
                false,
                event_reasons::BACKUP_STARTED,
                format!("backup Job {job} started ({})", cause.describe()),
            ));
            operation = Some(OperationLock {
                kind: OperationKind::Backup,
                job,
                cause: cause.describe(),
                started_at: now.to_string(),
            });
            decision.start = Some(cause);
        } else if let Some(drill_spec) = &spec.drill
            && let Some((cause, backup)) = drill::due(
                drill_spec,
                spec.time_zone.as_deref(),
                &mut status,
                created,
                now,
            )
        {
            let job = drill_job_name(&name, &cause);
            decision.events.push((
                false,
                event_reasons::DRILL_STARTED,
                format!(
                    "restore drill Job {job} started for backup {backup} ({})",
                    cause.describe()
                ),
            ));
            operation = Some(OperationLock {
                kind: OperationKind::Drill,
                job,
                cause: cause.describe(),
                started_at: now.to_string(),
            });
            decision.start_drill = Some((cause, backup));
        }
    }

    status.next_scheduled = match (&schedule, spec.suspend) {
        (Ok(schedule), false) => schedule
            .next_after(last_slot.max(now))
            .map(|t| t.to_string()),
        _ => None,
    };
    let next_drill = spec
        .drill
        .as_ref()
        .and_then(|d| drill::next(d, spec.time_zone.as_deref(), &status, created, now));
    decision.wake = status
        .next_scheduled
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .into_iter()
        .chain(next_drill)
        .min()
        .and_then(|next| Duration::try_from(next.duration_since(now)).ok())
        .map(|d| d + Duration::from_secs(1));

    let health = match &schedule {
        Err(error) => (
            ConditionStatus::False,
            reasons::BACKUP_SCHEDULE_INVALID.to_owned(),
            error.to_string(),
        ),
        Ok(_) if status.consecutive_failures > 0 => {
            let failure = status.last_failure.clone().unwrap_or_default();
            (
                ConditionStatus::False,
                failure.reason.clone(),
                format!(
                    "{} backup(s) in a row failed; the last ({}) said: {}; {}",
                    status.consecutive_failures,
                    failure.job,
                    failure.message,
                    remedy(&failure.reason)
                ),
            )
        }
        Ok(_) => match &status.last_successful {
            Some(last) => (
                ConditionStatus::True,
                reasons::BACKUP_SUCCEEDED.to_owned(),
                format!(
                    "the last backup {} completed at {} ({} bytes)",
                    last.name, last.completed_at, last.size_bytes
                ),
            ),
            None => (
                ConditionStatus::Unknown,
                reasons::NO_BACKUP_YET.to_owned(),
                format!(
                    "no backup has completed yet; the next starts at {}",
                    status
                        .next_scheduled
                        .as_deref()
                        .unwrap_or("the next request")
                ),
            ),
        },
    };
    let gap = match &schedule {
        Ok(schedule) => stale(schedule, &status, created, now),
        Err(error) => Some((reasons::BACKUPS_STALE, error.to_string())),
    };
    decision.view = BackupView {
        verified: drill::verified(spec.drill.as_ref(), &status),
        status: Some(status),
        operation,
        health: Some(health),
        restored_from: None,
        gap,
    };
    decision
}

/// Records a finished backup Job; true when it succeeded.
fn backup_finished(
    status: &mut BackupStatus,
    lock: &OperationLock,
    outcome: JobOutcome,
    now: Timestamp,
    events: &mut Vec<Event>,
) -> bool {
    match outcome {
        JobOutcome::Running => false,
        JobOutcome::Succeeded { details, .. } => {
            let record = record(&details, &lock.job, now);
            events.push((
                false,
                event_reasons::BACKUP_SUCCEEDED,
                format!(
                    "backup {} ({} bytes, sha256 {}) written by Job {}",
                    record.name, record.size_bytes, record.sha256, lock.job
                ),
            ));
            status.last_successful = Some(record);
            status.consecutive_failures = 0;
            status.backups_since_drill += 1;
            true
        }
        JobOutcome::Failed {
            exit_code,
            reason,
            message,
        } => {
            status.consecutive_failures += 1;
            events.push((
                true,
                event_reasons::BACKUP_FAILED,
                format!("backup Job {} failed ({reason}): {message}", lock.job),
            ));
            status.last_failure = Some(BackupFailure {
                time: now.to_string(),
                job: lock.job.clone(),
                exit_code,
                reason,
                message,
            });
            false
        }
    }
}

/// A gap when no backup succeeded within twice the schedule's interval
/// (counted from the cluster's creation until the first one).
fn stale(
    schedule: &Schedule,
    status: &BackupStatus,
    created: Timestamp,
    now: Timestamp,
) -> Option<(&'static str, String)> {
    let interval = schedule.interval(now)?;
    let since = status
        .last_successful
        .as_ref()
        .and_then(|r| r.completed_at.parse::<Timestamp>().ok())
        .unwrap_or(created);
    let age = Duration::try_from(now.duration_since(since)).unwrap_or_default();
    (age > interval * 2).then(|| {
        (
            reasons::BACKUPS_STALE,
            format!(
                "no backup succeeded in the last {}s, more than twice the schedule's interval ({}s); see the BackupHealthy condition",
                age.as_secs(),
                interval.as_secs()
            ),
        )
    })
}

/// What the user can do about a failure, by its reason.
fn remedy(reason: &str) -> &'static str {
    match ExitCode::ALL.iter().find(|c| c.reason() == reason) {
        Some(ExitCode::Storage) => {
            "check spec.backup.destination, the storage credentials and that the bucket exists"
        }
        Some(ExitCode::Auth) => {
            "the backup identity could not log in: check the openbao-operator-backup JWT role and policy"
        }
        Some(ExitCode::LeaderDiscovery) => {
            "no active OpenBao node answered; see the Available condition"
        }
        Some(ExitCode::Config) => "the backup Job's settings are invalid; check spec.backup",
        _ => "see the Job's logs; the next slot tries again",
    }
}

/// A schedule slot as part of a Job name: `YYYYMMDDhhmm` in UTC.
pub fn slot_id(slot: Timestamp) -> String {
    slot.strftime("%Y%m%d%H%M").to_string()
}

/// The good backup a Job reported.
fn record(details: &serde_json::Value, job: &str, now: Timestamp) -> BackupRecord {
    let text = |key: &str| details[key].as_str().unwrap_or_default().to_owned();
    let snapshot = text("snapshot");
    let file = snapshot.rsplit('/').next().unwrap_or_default();
    BackupRecord {
        name: file.strip_suffix(".snap").unwrap_or(file).to_owned(),
        snapshot,
        size_bytes: details["size"].as_i64().unwrap_or_default(),
        sha256: text("sha256"),
        raft_index: details["raftIndex"].as_i64(),
        openbao_version: details["openbaoVersion"].as_str().map(str::to_owned),
        completed_at: now.to_string(),
        job: job.to_owned(),
    }
}

/// Applies [`decide`]: the identity's ServiceAccount, the Job, Events and
/// metrics. Returns the view for status and when to look again.
pub async fn step(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    state: &ClusterState,
    snapshot: &Snapshot,
    material: &Material,
    may_start: bool,
) -> Result<(BackupView, Option<Duration>), ReconcileError> {
    let now = Timestamp::now();
    let outcome = cluster
        .status
        .as_ref()
        .and_then(|s| s.operation.as_ref())
        .map(|lock| snapshot.operation_outcome(lock, now));
    let decision = decide(cluster, outcome.clone(), now, may_start);
    if cluster.spec.backup.is_some() && may_start {
        ctx.applier
            .apply_known(
                &service_account(cluster)?,
                &snapshot.objects.backup_service_account,
                &state.verified,
            )
            .await?;
    }
    if let Some(cause) = &decision.start {
        ctx.applier
            .apply(&job(cluster, cause, &ctx.settings.backup_image)?)
            .await?;
    }
    if let Some((cause, backup)) = &decision.start_drill {
        // Applied when a drill starts, not watched: only drills read it.
        let inputs = super::objects::inputs(cluster, ctx, material)?;
        ctx.applier
            .apply(&render::drill::service_account(cluster)?)
            .await?;
        ctx.applier
            .apply(&render::drill::config_map(cluster, &inputs)?)
            .await?;
        ctx.applier
            .apply(&render::drill::job(
                cluster,
                cause,
                backup,
                &ctx.settings.restore_image,
            )?)
            .await?;
    }
    let labels = super::labels(cluster);
    match (decision.finished, outcome) {
        (Some(true), Some(JobOutcome::Succeeded { seconds, .. })) => {
            let last = decision
                .view
                .status
                .as_ref()
                .and_then(|s| s.last_successful.as_ref());
            ctx.metrics
                .backup_last_success
                .get_or_create(&labels)
                .set(now.as_second() as f64);
            if let Some(seconds) = seconds {
                ctx.metrics
                    .backup_duration
                    .get_or_create(&labels)
                    .set(seconds as f64);
            }
            if let Some(last) = last {
                ctx.metrics
                    .backup_size
                    .get_or_create(&labels)
                    .set(last.size_bytes);
            }
        }
        (Some(false), _) => {
            ctx.metrics.backup_failures.get_or_create(&labels).inc();
        }
        _ => {}
    }
    for (warning, reason, message) in &decision.events {
        let kind = if *warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let action = if reason.starts_with("Drill") {
            actions::DRILL
        } else {
            actions::BACKUP
        };
        event(ctx, cluster, kind, reason, action, message).await;
    }
    Ok((decision.view, decision.wake))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn cluster(backup: serde_json::Value, status: serde_json::Value) -> OpenBaoCluster {
        let mut cluster = fixtures::development();
        cluster.metadata.creation_timestamp = Some(Time(at("2026-12-02T07:00:10Z")));
        cluster.spec.backup = Some(serde_json::from_value(backup).unwrap());
        cluster.status = Some(serde_json::from_value(status).unwrap());
        cluster
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn every_minute() -> serde_json::Value {
        json!({"schedule": "*/1 * * * *", "destination": {"url": "s3://b/p"}})
    }

    #[test]
    fn a_due_slot_starts_one_job_and_takes_the_lock() {
        let c = cluster(every_minute(), json!({}));
        let d = decide(&c, None, at("2026-12-02T07:01:05Z"), true);
        assert_eq!(d.start, Some(BackupCause::Schedule("202612020701".into())));
        let view = d.view;
        let lock = view.operation.unwrap();
        assert_eq!(lock.job, "dev-backup-202612020701");
        let status = view.status.unwrap();
        assert_eq!(
            status.last_schedule_time.as_deref(),
            Some("2026-12-02T07:01:00Z")
        );
        assert_eq!(
            status.next_scheduled.as_deref(),
            Some("2026-12-02T07:02:00Z")
        );
        assert_eq!(view.health.unwrap().1, reasons::NO_BACKUP_YET);
        assert_eq!(d.wake, Some(Duration::from_secs(56)));
    }

    #[test]
    fn nothing_starts_while_the_lock_is_held_paused_or_suspended() {
        let held = cluster(
            every_minute(),
            json!({"operation": {"kind": "Backup", "job": "dev-backup-202612020701", "cause": "schedule", "startedAt": "2026-12-02T07:01:01Z"}}),
        );
        let d = decide(
            &held,
            Some(JobOutcome::Running),
            at("2026-12-02T07:03:00Z"),
            true,
        );
        assert_eq!(d.start, None);
        assert!(d.view.operation.is_some());
        let free = cluster(every_minute(), json!({}));
        assert_eq!(
            decide(&free, None, at("2026-12-02T07:03:00Z"), false).start,
            None
        );
        let mut suspended = every_minute();
        suspended["suspend"] = json!(true);
        let suspended = cluster(suspended, json!({}));
        let d = decide(&suspended, None, at("2026-12-02T07:03:00Z"), true);
        assert_eq!(d.start, None);
        assert_eq!(d.view.status.unwrap().next_scheduled, None);
    }

    #[test]
    fn a_manual_request_runs_once() {
        let mut spec = every_minute();
        spec["suspend"] = json!(true);
        spec["trigger"] = json!("before-upgrade-1");
        let c = cluster(spec.clone(), json!({}));
        let d = decide(&c, None, at("2026-12-02T07:00:30Z"), true);
        assert_eq!(
            d.start,
            Some(BackupCause::Trigger("before-upgrade-1".into()))
        );
        let handled = cluster(
            spec,
            json!({"backup": {"lastTrigger": "before-upgrade-1", "consecutiveFailures": 0}}),
        );
        assert_eq!(
            decide(&handled, None, at("2026-12-02T07:00:40Z"), true).start,
            None
        );
    }

    #[test]
    fn results_update_status_and_failures_name_the_exit_code() {
        let held = json!({"operation": {"kind": "Backup", "job": "dev-backup-202612020701", "cause": "schedule", "startedAt": "2026-12-02T07:01:01Z"}, "backup": {"lastScheduleTime": "2026-12-02T07:01:00Z"}});
        let c = cluster(every_minute(), held.clone());
        let failed = JobOutcome::Failed {
            exit_code: Some(6),
            reason: "StorageFailed".into(),
            message: "bucket unreachable".into(),
        };
        let d = decide(&c, Some(failed), at("2026-12-02T07:01:30Z"), true);
        assert_eq!(d.finished, Some(false));
        let (state, reason, message) = d.view.health.unwrap();
        assert_eq!(state, ConditionStatus::False);
        assert_eq!(reason, "StorageFailed");
        assert!(message.contains("destination"), "{message}");
        assert_eq!(d.view.status.as_ref().unwrap().consecutive_failures, 1);
        assert!(d.view.operation.is_none());

        let ok = JobOutcome::Succeeded {
            details: json!({"snapshot": "p/ns/dev/20261202T070102Z-ab.snap", "size": 1234, "sha256": "ff", "raftIndex": 42, "openbaoVersion": "2.7.2"}),
            seconds: Some(3),
        };
        let d = decide(&c, Some(ok), at("2026-12-02T07:01:30Z"), true);
        let status = d.view.status.unwrap();
        let last = status.last_successful.unwrap();
        assert_eq!(last.name, "20261202T070102Z-ab");
        assert_eq!(last.sha256, "ff");
        assert_eq!(last.raft_index, Some(42));
        assert_eq!(status.consecutive_failures, 0);
        assert_eq!(d.view.health.unwrap().0, ConditionStatus::True);
    }

    #[test]
    fn without_backups_or_recent_success_production_ready_has_a_gap() {
        let mut none = fixtures::development();
        none.spec.backup = None;
        let d = decide(&none, None, at("2026-12-02T07:00:00Z"), true);
        assert_eq!(d.view.gap.unwrap().0, reasons::BACKUPS_NOT_CONFIGURED);
        let c = cluster(every_minute(), json!({}));
        let d = decide(&c, None, at("2026-12-02T07:10:00Z"), false);
        assert_eq!(d.view.gap.unwrap().0, reasons::BACKUPS_STALE);
        let d = decide(&c, None, at("2026-12-02T07:01:00Z"), false);
        assert_eq!(d.view.gap, None);
    }

    #[test]
    fn a_finished_job_is_read_from_its_pods_termination_message() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "dev-backup-1", "namespace": "team-a"},
            "status": {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-02T07:01:10Z"}],
                        "startTime": "2026-12-02T07:01:01Z", "completionTime": "2026-12-02T07:01:09Z"}
        }))
        .unwrap();
        let result = JobResult::success("backup", "done", json!({"size": 5}));
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {JOB_NAME_LABEL: "dev-backup-1"}},
            "status": {"containerStatuses": [{"name": "backup", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": serde_json::to_string(&result).unwrap()}}}]}
        }))
        .unwrap();
        let now = at("2026-12-02T07:01:20Z");
        let known = Known::At("1".into());
        let lock = OperationLock {
            kind: OperationKind::Backup,
            job: "dev-backup-1".into(),
            cause: "schedule".into(),
            started_at: "2026-12-02T07:01:00Z".into(),
        };
        assert_eq!(
            outcome(&lock, Some(&job), &known, &[Arc::new(pod)], now),
            JobOutcome::Succeeded {
                details: json!({"size": 5}),
                seconds: Some(8)
            }
        );
        // The pod not cached yet: wait a little, then count it as lost.
        assert_eq!(
            outcome(&lock, Some(&job), &known, &[], now),
            JobOutcome::Running
        );
        let late = at("2026-12-02T07:05:00Z");
        assert!(matches!(
            outcome(&lock, Some(&job), &known, &[], late),
            JobOutcome::Failed { .. }
        ));
        // A Job missing from the cache: just created, or gone.
        assert_eq!(
            outcome(&lock, None, &Known::Absent, &[], now),
            JobOutcome::Running
        );
        assert!(matches!(
            outcome(&lock, None, &Known::Absent, &[], late),
            JobOutcome::Failed { .. }
        ));
    }
}
