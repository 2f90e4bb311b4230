//! Restore drills, as pure decisions the backup step applies: when a drill
//! is due, what its finished Job means for `status.backup.lastVerified`,
//! and the `BackupVerified` condition. Drills take the same per-cluster
//! lock as backups, so a drill never overlaps a backup, a restore or an
//! upgrade; a backup that falls due first goes first.

use k8s_openapi::jiff::Timestamp;
use lifecycle_types::backup::{BackupStatus, DrillRecord, DrillResult, DrillSpec, OperationLock};
use lifecycle_types::conditions::{ConditionStatus, reasons};
use lifecycle_types::events::reasons as event_reasons;

use super::backup::{Event, JobOutcome, slot_id};
use crate::render::drill::DrillCause;
use crate::schedule::Schedule;

/// The drill to start now, if one is due: with `everyNthBackup`, once that
/// many backups succeeded since the last drill; with a schedule, at its
/// slots. Either way only when a backup exists to drill. Updates the
/// counters in `status` for the drill it returns.
pub fn due(
    spec: &DrillSpec,
    time_zone: Option<&str>,
    status: &mut BackupStatus,
    created: Timestamp,
    now: Timestamp,
) -> Option<(DrillCause, String)> {
    let backup = status.last_successful.as_ref()?.name.clone();
    if let Some(every) = spec.every_nth_backup {
        if status.backups_since_drill < every {
            return None;
        }
        status.backups_since_drill = 0;
        return Some((DrillCause::AfterBackup(backup.clone()), backup));
    }
    let schedule = Schedule::parse(spec.schedule.as_deref()?, time_zone).ok()?;
    let last = last_slot(status, created);
    let slot = schedule.due(last, now)?;
    status.last_drill_schedule_time = Some(slot.to_string());
    status.backups_since_drill = 0;
    Some((DrillCause::Schedule(slot_id(slot)), backup))
}

/// When a scheduled drill is next due (to wake the controller for it).
pub fn next(
    spec: &DrillSpec,
    time_zone: Option<&str>,
    status: &BackupStatus,
    created: Timestamp,
    now: Timestamp,
) -> Option<Timestamp> {
    let schedule = Schedule::parse(spec.schedule.as_deref()?, time_zone).ok()?;
    schedule.next_after(last_slot(status, created).max(now))
}

fn last_slot(status: &BackupStatus, created: Timestamp) -> Timestamp {
    status
        .last_drill_schedule_time
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(created)
}

/// Records a finished drill Job in `status.backup.lastVerified`.
pub fn finished(
    status: &mut BackupStatus,
    lock: &OperationLock,
    outcome: JobOutcome,
    now: Timestamp,
    events: &mut Vec<Event>,
) {
    let record = match outcome {
        JobOutcome::Running => return,
        JobOutcome::Succeeded { details, .. } => {
            let backup = details["backup"].as_str().map(str::to_owned);
            let index = details["restoredRaftIndex"].as_i64();
            let message = format!(
                "backup {} restored into a throwaway node: unsealed with the cluster's seal, Raft index {} (the manifest's {}), canary read back",
                backup.as_deref().unwrap_or("?"),
                index.map_or("unknown".into(), |i| i.to_string()),
                details["backupRaftIndex"]
                    .as_i64()
                    .map_or("unknown".into(), |i| i.to_string()),
            );
            events.push((false, event_reasons::DRILL_PASSED, message.clone()));
            DrillRecord {
                backup,
                time: now.to_string(),
                job: lock.job.clone(),
                result: DrillResult::Passed,
                reason: reasons::DRILL_PASSED.to_owned(),
                message,
                restored_raft_index: index,
            }
        }
        JobOutcome::Failed {
            reason, message, ..
        } => {
            events.push((
                true,
                event_reasons::DRILL_FAILED,
                format!(
                    "restore drill Job {} failed ({reason}): {message}",
                    lock.job
                ),
            ));
            DrillRecord {
                backup: lock
                    .cause
                    .strip_prefix("after-backup:")
                    .map(str::to_owned)
                    .or_else(|| status.last_successful.as_ref().map(|b| b.name.clone())),
                time: now.to_string(),
                job: lock.job.clone(),
                result: DrillResult::Failed,
                reason,
                message,
                restored_raft_index: None,
            }
        }
    };
    status.last_verified = Some(record);
}

/// The `BackupVerified` condition; `None` without drills.
pub fn verified(
    spec: Option<&DrillSpec>,
    status: &BackupStatus,
) -> Option<(ConditionStatus, String, String)> {
    spec?;
    Some(match &status.last_verified {
        None => (
            ConditionStatus::Unknown,
            reasons::NO_DRILL_YET.to_owned(),
            "no restore drill has run yet; one runs after the next backup that makes it due"
                .to_owned(),
        ),
        Some(record) if record.result == DrillResult::Passed => (
            ConditionStatus::True,
            reasons::DRILL_PASSED.to_owned(),
            format!(
                "{} (drill {} at {})",
                record.message, record.job, record.time
            ),
        ),
        Some(record) => (
            ConditionStatus::False,
            record.reason.clone(),
            format!(
                "the restore drill of backup {} failed: {}; that backup may not restore: check it, and take a new backup (spec.backup.trigger)",
                record.backup.as_deref().unwrap_or("?"),
                record.message
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifecycle_types::backup::{BackupRecord, OperationKind};
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn with_backup(since: i32) -> BackupStatus {
        BackupStatus {
            last_successful: Some(BackupRecord {
                name: "20261202T070100Z-aaa".into(),
                ..BackupRecord::default()
            }),
            backups_since_drill: since,
            ..BackupStatus::default()
        }
    }

    fn every(n: i32) -> DrillSpec {
        serde_json::from_value(json!({"everyNthBackup": n})).unwrap()
    }

    #[test]
    fn every_nth_backup_counts_successes_and_resets() {
        let now = at("2026-12-02T07:05:00Z");
        let mut status = with_backup(1);
        assert_eq!(due(&every(2), None, &mut status, now, now), None);
        status.backups_since_drill = 2;
        let (cause, backup) = due(&every(2), None, &mut status, now, now).unwrap();
        assert_eq!(backup, "20261202T070100Z-aaa");
        assert_eq!(cause, DrillCause::AfterBackup(backup));
        assert_eq!(status.backups_since_drill, 0);
        let mut empty = BackupStatus {
            backups_since_drill: 5,
            ..BackupStatus::default()
        };
        assert_eq!(
            due(&every(1), None, &mut empty, now, now),
            None,
            "nothing to drill"
        );
    }

    #[test]
    fn a_drill_schedule_starts_at_its_slots() {
        let spec: DrillSpec = serde_json::from_value(json!({"schedule": "0 3 * * *"})).unwrap();
        let created = at("2026-12-01T12:00:00Z");
        let mut status = with_backup(0);
        assert_eq!(
            due(
                &spec,
                None,
                &mut status,
                created,
                at("2026-12-02T02:59:00Z")
            ),
            None
        );
        let (cause, _) = due(
            &spec,
            None,
            &mut status,
            created,
            at("2026-12-02T03:00:30Z"),
        )
        .unwrap();
        assert_eq!(cause, DrillCause::Schedule("202612020300".into()));
        assert_eq!(
            next(&spec, None, &status, created, at("2026-12-02T03:00:30Z")),
            Some(at("2026-12-03T03:00:00Z"))
        );
    }

    #[test]
    fn results_become_the_condition() {
        let lock = OperationLock {
            kind: OperationKind::Drill,
            job: "dev-drill-b1".into(),
            cause: "after-backup:20261202T070100Z-aaa".into(),
            started_at: "2026-12-02T07:05:00Z".into(),
        };
        let mut status = with_backup(0);
        assert_eq!(
            verified(Some(&every(1)), &status).unwrap().1,
            reasons::NO_DRILL_YET
        );
        assert_eq!(verified(None, &status), None);
        let mut events = Vec::new();
        let details = json!({"backup": "20261202T070100Z-aaa", "restoredRaftIndex": 90, "backupRaftIndex": 88});
        finished(
            &mut status,
            &lock,
            JobOutcome::Succeeded {
                details,
                seconds: Some(20),
            },
            at("2026-12-02T07:06:00Z"),
            &mut events,
        );
        let (state, reason, message) = verified(Some(&every(1)), &status).unwrap();
        assert_eq!(
            (state, reason.as_str()),
            (ConditionStatus::True, reasons::DRILL_PASSED)
        );
        assert!(
            message.contains("20261202T070100Z-aaa") && message.contains("90"),
            "{message}"
        );
        finished(
            &mut status,
            &lock,
            JobOutcome::Failed {
                exit_code: Some(4),
                reason: "VerificationFailed".into(),
                message: "sha256 mismatch".into(),
            },
            at("2026-12-02T07:07:00Z"),
            &mut events,
        );
        let (state, reason, message) = verified(Some(&every(1)), &status).unwrap();
        assert_eq!(
            (state, reason.as_str()),
            (ConditionStatus::False, "VerificationFailed")
        );
        assert!(message.contains("sha256 mismatch") && message.contains("20261202T070100Z-aaa"));
        assert_eq!(events.len(), 2);
        assert!(events[1].0, "a failed drill is a Warning");
    }
}
