//! In-place restores (`OpenBaoRestore`), driven by the target cluster's
//! reconcile: a restore takes the cluster's operation lock, so backups,
//! drills, rollouts, scaling and other restores wait for it; its Job is
//! read back from the caches like a backup's, so a controller killed at any
//! point finds the lock and the Job again and finishes the restore.
//!
//! [`decide`] is the policy as a pure function; [`step`] applies it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use lifecycle_types::backup::{OperationKind, OperationLock};
use lifecycle_types::events::{actions, reasons as event_reasons};
use lifecycle_types::identities::controller_audience;
use lifecycle_types::restore::{
    OpenBaoRestoreStatus, RestorePhase, RestoredFrom, restore_from_request,
};
use lifecycle_types::validation::validate_restore_spec;
use lifecycle_types::{OpenBaoCluster, OpenBaoRestore, names};

use super::backup::{Event, JobOutcome};
use super::snapshot::Snapshot;
use super::{ReconcileError, event};
use crate::apply::FIELD_MANAGER;
use crate::context::Context;
use crate::openbao::ClusterConnection;
use crate::render::restore::{job, job_name, service_account, source};

/// `status.operation.cause` of a restore: `restore:<name>`.
const CAUSE_PREFIX: &str = "restore:";

/// One reconcile's restore decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// The cluster's lock after this step.
    pub operation: Option<OperationLock>,
    /// Start the Job of this restore.
    pub start: Option<String>,
    /// Restores whose status changes: (name, new status).
    pub updates: Vec<(String, OpenBaoRestoreStatus)>,
    /// The restore ended: remove the restore identity.
    pub ended: bool,
    /// The finished Job's result details.
    pub details: Option<serde_json::Value>,
    pub events: Vec<Event>,
}

/// The restore policy. `operation` is the lock as the backup step left it;
/// `outcome` is its Job's, when the lock is a restore's; `restores` target
/// this cluster; `may_start` is false while the cluster is paused, not
/// initialized or not serving.
pub fn decide(
    cluster: &OpenBaoCluster,
    restores: &[Arc<OpenBaoRestore>],
    operation: Option<OperationLock>,
    outcome: Option<JobOutcome>,
    now: Timestamp,
    may_start: bool,
) -> Decision {
    let mut decision = Decision {
        operation,
        ..Decision::default()
    };
    let find = |name: &str| restores.iter().find(|r| r.name_any() == name);
    let update =
        |decision: &mut Decision, restore: &OpenBaoRestore, mut new: OpenBaoRestoreStatus| {
            new.set_conditions(restore.metadata.generation, Time(now));
            if restore.status.as_ref() != Some(&new) {
                decision.updates.push((restore.name_any(), new));
            }
        };

    // The restore that holds the cluster.
    let held = decision
        .operation
        .clone()
        .filter(|l| l.kind == OperationKind::Restore);
    let holder_name = held
        .as_ref()
        .and_then(|l| l.cause.strip_prefix(CAUSE_PREFIX))
        .map(str::to_owned);
    if let Some(lock) = held {
        let holder = holder_name.as_deref().and_then(find);
        let mut status = holder.and_then(|r| r.status.clone()).unwrap_or_default();
        status.job = Some(lock.job.clone());
        status.started_at = Some(lock.started_at.clone());
        // A reconcile that reads the cluster before its last status write
        // sees a lock whose restore already ended: release it, change nothing.
        let already = holder
            .and_then(|r| r.status.as_ref())
            .is_some_and(|s| s.phase.finished() && s.job.as_deref() == Some(lock.job.as_str()));
        match outcome.unwrap_or(JobOutcome::Running) {
            _ if already => {
                decision.operation = None;
            }
            JobOutcome::Running => {
                status.phase = RestorePhase::Running;
                status.message = Some(format!(
                    "the restore Job {} verifies the backup against its manifest, then restores it",
                    lock.job
                ));
            }
            JobOutcome::Succeeded { details, .. } => {
                decision.details = Some(details.clone());
                status.phase = RestorePhase::Completed;
                status.backup = details["backup"].as_str().map(str::to_owned);
                status.restored_raft_index = details["restoredRaftIndex"].as_i64();
                status.completed_at = Some(now.to_string());
                status.reason = None;
                let message = format!(
                    "restored backup {} into the cluster; Raft index {}",
                    status.backup.as_deref().unwrap_or("?"),
                    status
                        .restored_raft_index
                        .map_or("unknown".into(), |i| i.to_string())
                );
                status.message = Some(message.clone());
                decision
                    .events
                    .push((false, event_reasons::RESTORE_COMPLETED, message));
                decision.operation = None;
                decision.ended = true;
            }
            JobOutcome::Failed {
                reason, message, ..
            } => {
                // The binary names its flags; the user wrote spec fields.
                let message = message
                    .replace("--allow-other-cluster", "spec.allowOtherCluster: true")
                    .replace("--allow-newer-version", "spec.allowNewerVersion: true");
                status.phase = RestorePhase::Failed;
                status.completed_at = Some(now.to_string());
                status.reason = Some(reason.clone());
                status.message = Some(message.clone());
                decision.events.push((
                    true,
                    event_reasons::RESTORE_FAILED,
                    format!("restore Job {} failed ({reason}): {message}", lock.job),
                ));
                decision.operation = None;
                decision.ended = true;
            }
        }
        if let Some(restore) = holder {
            update(&mut decision, restore, status);
        }
    }

    // The oldest unfinished restore goes next; the others wait.
    let mut waiting: Vec<&Arc<OpenBaoRestore>> = restores
        .iter()
        .filter(|r| {
            !r.status.as_ref().is_some_and(|s| s.phase.finished())
                && holder_name.as_deref() != Some(r.name_any().as_str())
        })
        .collect();
    waiting.sort_by_key(|r| (r.metadata.creation_timestamp.clone(), r.name_any()));
    let cluster_name = cluster.name_any();
    for (index, restore) in waiting.into_iter().enumerate() {
        let mut status = restore.status.clone().unwrap_or_default();
        if index == 0 && decision.operation.is_none() && may_start {
            match validate(cluster, restore) {
                Ok(()) => {
                    let job = job_name(&cluster_name, restore);
                    status.phase = RestorePhase::Validating;
                    status.job = Some(job.clone());
                    status.started_at = Some(now.to_string());
                    status.message = Some(format!(
                        "the restore Job {job} started; it verifies the backup before a byte reaches OpenBao"
                    ));
                    decision.events.push((
                        false,
                        event_reasons::RESTORE_STARTED,
                        format!("restore {} started as Job {job}", restore.name_any()),
                    ));
                    decision.operation = Some(OperationLock {
                        kind: OperationKind::Restore,
                        job,
                        cause: format!("{CAUSE_PREFIX}{}", restore.name_any()),
                        started_at: now.to_string(),
                    });
                    decision.start = Some(restore.name_any());
                }
                Err(message) => {
                    status.phase = RestorePhase::Failed;
                    status.completed_at = Some(now.to_string());
                    status.reason = Some("InvalidRestore".into());
                    status.message = Some(message.clone());
                    decision.events.push((
                        true,
                        event_reasons::RESTORE_FAILED,
                        format!("restore {} refused: {message}", restore.name_any()),
                    ));
                }
            }
        } else {
            status.phase = RestorePhase::Pending;
            status.message = Some(match (&decision.operation, may_start) {
                (Some(lock), _) => format!(
                    "waiting: {:?} Job {} holds the cluster; restores run one at a time",
                    lock.kind, lock.job
                ),
                (None, false) => "waiting for the cluster to be initialized and serving".to_owned(),
                (None, true) => "waiting for an earlier restore".to_owned(),
            });
        }
        update(&mut decision, restore, status);
    }
    decision
}

/// What the controller can check before a Job runs; the Job checks the
/// backup itself. Each message names the field and the fix.
fn validate(cluster: &OpenBaoCluster, restore: &OpenBaoRestore) -> Result<(), String> {
    let spec = &restore.spec;
    if let Some(error) = validate_restore_spec(spec).first() {
        return Err(error.to_string());
    }
    if source(cluster, restore).is_none() {
        return Err(
            "spec.source.destination: not set, and the cluster has no spec.backup; name where the backups are"
                .into(),
        );
    }
    let namespace = cluster.namespace().unwrap_or_default();
    let other = spec
        .source
        .from_namespace
        .as_ref()
        .is_some_and(|n| *n != namespace)
        || spec
            .source
            .from_cluster
            .as_ref()
            .is_some_and(|c| *c != cluster.name_any());
    if other && !spec.allow_other_cluster {
        return Err(format!(
            "spec.allowOtherCluster: spec.source names the backups of {}/{}, another cluster; set spec.allowOtherCluster: true to restore them here (the cluster must use that cluster's seal)",
            spec.source.from_namespace.as_deref().unwrap_or(&namespace),
            spec.source
                .from_cluster
                .as_deref()
                .unwrap_or(&cluster.name_any()),
        ));
    }
    Ok(())
}

/// Applies [`decide`]: the restore identity and Job, the restores' status,
/// Events. Returns the cluster's lock after this step, and the record of a
/// `spec.restoreFrom` restore that ended in it.
pub async fn step(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    snapshot: &Snapshot,
    connection: Option<&ClusterConnection>,
    operation: Option<OperationLock>,
    may_start: bool,
) -> Result<(Option<OperationLock>, Option<RestoredFrom>), ReconcileError> {
    let now = Timestamp::now();
    let restoring = operation
        .as_ref()
        .filter(|l| l.kind == OperationKind::Restore);
    let job_outcome = restoring.map(|lock| snapshot.operation_outcome(lock, now));
    // Disaster recovery takes the same path as an OpenBaoRestore, first.
    let from = restore_from_request(cluster).map(Arc::new);
    let mut restores = snapshot.restores.clone();
    restores.extend(from.clone());
    let decision = decide(cluster, &restores, operation, job_outcome, now, may_start);
    // The restored data has its own tokens, roles and policies: the next
    // reconcile logs in again, which shows whether the controller's own
    // identity survived (the backup may predate it).
    if decision.details.is_some()
        && let Some(connection) = connection
    {
        connection.forget_login();
    }
    // The identity of a restore that ended goes first: the next restore,
    // started in the same pass, gets an account of its own.
    if decision.ended {
        ctx.applier
            .delete_known::<ServiceAccount>(
                &snapshot.namespace,
                &names::restore_service_account(&snapshot.name),
                &snapshot.objects.restore_service_account,
            )
            .await?;
    }
    if let Some(name) = &decision.start
        && let Some(restore) = restores.iter().find(|r| r.name_any() == *name)
    {
        ctx.applier
            .apply(&service_account(cluster, restore)?)
            .await?;
        ctx.applier
            .apply(&job(cluster, restore, &ctx.settings.restore_image)?)
            .await?;
    }
    let mut restored_from = None;
    for (name, status) in &decision.updates {
        if from.as_ref().is_some_and(|f| f.name_any() == *name) {
            if status.phase.finished() {
                restored_from = Some(record(status, decision.details.as_ref(), now));
            }
            continue;
        }
        patch_restore_status(ctx, &snapshot.namespace, name, status).await?;
    }
    if restored_from
        .as_ref()
        .is_some_and(|r| r.phase == RestorePhase::Completed)
    {
        // The node keeps the Raft TLS keys it had before the restore in
        // memory; nodes joining it then fail the Raft handshake. A restart
        // loads the restored keys, before the cluster scales.
        let pod = format!("{}-0", names::statefulset(&snapshot.name));
        ctx.applier
            .delete_known::<k8s_openapi::api::core::v1::Pod>(
                &snapshot.namespace,
                &pod,
                &crate::stores::Known::Unknown,
            )
            .await?;
        event(
            ctx,
            cluster,
            EventType::Normal,
            event_reasons::POD_RESTARTED,
            actions::RESTORE,
            &format!("restarted {pod} so it loads the restored Raft keys before the cluster scales to spec.replicas"),
        )
        .await;
    }
    for (warning, reason, message) in &decision.events {
        let kind = if *warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        event(ctx, cluster, kind, reason, actions::RESTORE, message).await;
    }
    Ok((decision.operation, restored_from))
}

/// `status.restoredFrom` for a finished `spec.restoreFrom` restore: the
/// old cluster's operator audience comes from the backup's manifest.
fn record(
    status: &OpenBaoRestoreStatus,
    details: Option<&serde_json::Value>,
    now: Timestamp,
) -> RestoredFrom {
    let previous = details.and_then(|d| {
        Some(controller_audience(
            d["backupNamespace"].as_str()?,
            d["backupCluster"].as_str()?,
            d["backupClusterUid"].as_str()?,
        ))
    });
    RestoredFrom {
        phase: status.phase,
        message: status.message.clone(),
        backup: status.backup.clone(),
        restored_raft_index: status.restored_raft_index,
        completed_at: now.to_string(),
        previous_controller_audience: previous,
    }
}

async fn patch_restore_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &OpenBaoRestoreStatus,
) -> Result<(), ReconcileError> {
    use kube::Resource;
    ctx.applier.count_write();
    ctx.applier
        .api::<OpenBaoRestore>(namespace)
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": OpenBaoRestore::api_version(&()),
                "kind": OpenBaoRestore::kind(&()),
                "status": status,
            })),
        )
        .await
        .map_err(|source| {
            crate::apply::api_error::<OpenBaoRestore>("patch status of", namespace, name, source)
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use lifecycle_types::conditions::{ConditionStatus, find, restore_types};
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn cluster() -> OpenBaoCluster {
        let mut cluster = fixtures::development();
        cluster.spec.backup = Some(
            serde_json::from_value(
                json!({"schedule": "0 * * * *", "destination": {"url": "s3://backups/p"}}),
            )
            .unwrap(),
        );
        cluster
    }

    fn restore(name: &str, created: &str, spec: serde_json::Value) -> Arc<OpenBaoRestore> {
        let mut restore: OpenBaoRestore = serde_json::from_value(json!({
            "apiVersion": "openbao.org/v1alpha1", "kind": "OpenBaoRestore",
            "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}")},
            "spec": spec,
        }))
        .unwrap();
        restore.metadata.creation_timestamp = Some(Time(at(created)));
        Arc::new(restore)
    }

    fn latest(name: &str, created: &str) -> Arc<OpenBaoRestore> {
        restore(
            name,
            created,
            json!({"cluster": "dev", "source": {"latest": true}}),
        )
    }

    #[test]
    fn the_oldest_restore_takes_the_lock_and_the_next_waits() {
        let now = at("2026-12-02T09:00:00Z");
        let restores = [
            latest("second", "2026-12-02T08:59:00Z"),
            latest("first", "2026-12-02T08:58:00Z"),
        ];
        let d = decide(&cluster(), &restores, None, None, now, true);
        assert_eq!(d.start.as_deref(), Some("first"));
        let lock = d.operation.clone().unwrap();
        assert_eq!(
            (lock.kind, lock.cause.as_str()),
            (OperationKind::Restore, "restore:first")
        );
        let phase = |name: &str| {
            d.updates
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.phase)
        };
        assert_eq!(phase("first"), Some(RestorePhase::Validating));
        assert_eq!(phase("second"), Some(RestorePhase::Pending));
        let running = |name: &str| {
            let (_, status) = d.updates.iter().find(|(n, _)| n == name).unwrap();
            find(&status.conditions, restore_types::RUNNING).map(|c| c.status)
        };
        assert_eq!(running("first"), Some(ConditionStatus::True));
        assert_eq!(running("second"), Some(ConditionStatus::False));
        // Nothing starts while a backup holds the cluster or it is not serving.
        let backup = OperationLock {
            kind: OperationKind::Backup,
            job: "dev-backup-1".into(),
            cause: "schedule".into(),
            started_at: now.to_string(),
        };
        assert_eq!(
            decide(&cluster(), &restores, Some(backup), None, now, true).start,
            None
        );
        assert_eq!(
            decide(&cluster(), &restores, None, None, now, false).start,
            None
        );
    }

    #[test]
    fn a_finished_job_completes_the_restore_and_releases_the_lock() {
        let now = at("2026-12-02T09:05:00Z");
        let restores = [latest("first", "2026-12-02T08:58:00Z")];
        let lock = OperationLock {
            kind: OperationKind::Restore,
            job: "dev-restore-r1".into(),
            cause: "restore:first".into(),
            started_at: "2026-12-02T09:00:00Z".into(),
        };
        let done = JobOutcome::Succeeded {
            details: json!({"backup": "20261202T085000Z-abc", "restoredRaftIndex": 420}),
            seconds: Some(12),
        };
        let d = decide(
            &cluster(),
            &restores,
            Some(lock.clone()),
            Some(done),
            now,
            true,
        );
        assert_eq!(d.operation, None);
        assert!(d.ended);
        let status = &d.updates[0].1;
        assert_eq!(status.phase, RestorePhase::Completed);
        assert_eq!(status.restored_raft_index, Some(420));
        assert_eq!(status.backup.as_deref(), Some("20261202T085000Z-abc"));
        let holds = |status: &OpenBaoRestoreStatus, type_: &str| {
            find(&status.conditions, type_).map(|c| (c.status, c.reason.clone()))
        };
        assert_eq!(
            holds(status, restore_types::COMPLETE),
            Some((ConditionStatus::True, "Completed".into()))
        );
        assert_eq!(
            holds(status, restore_types::RUNNING).map(|c| c.0),
            Some(ConditionStatus::False)
        );
        let failed = JobOutcome::Failed {
            exit_code: Some(7),
            reason: "VerificationFailed".into(),
            message: "the backup was taken from OpenBao cluster a but the target is cluster b; add --allow-other-cluster to restore it anyway".into(),
        };
        let d = decide(
            &cluster(),
            &restores,
            Some(lock.clone()),
            Some(failed.clone()),
            now,
            true,
        );
        let status = &d.updates[0].1;
        assert_eq!(status.phase, RestorePhase::Failed);
        assert!(
            status
                .message
                .as_deref()
                .unwrap()
                .contains("spec.allowOtherCluster")
        );
        assert!(d.events[0].0, "a failed restore is a Warning");
        assert_eq!(
            holds(status, restore_types::FAILED),
            Some((ConditionStatus::True, "VerificationFailed".into()))
        );
        assert_eq!(
            find(&status.conditions, restore_types::FAILED).map(|c| c.message.clone()),
            status.message.clone()
        );
        // A stale cluster read repeats the lock: released, nothing rewritten.
        let mut ended = (*restores[0]).clone();
        ended.status = Some(status.clone());
        let later = at("2026-12-02T09:06:00Z");
        let d = decide(
            &cluster(),
            &[Arc::new(ended)],
            Some(lock),
            Some(failed),
            later,
            true,
        );
        assert_eq!(d.operation, None);
        assert!(
            d.updates.is_empty() && d.events.is_empty() && !d.ended,
            "{d:?}"
        );
    }

    #[test]
    fn another_clusters_backups_need_the_override_and_the_field_is_named() {
        let now = at("2026-12-02T09:00:00Z");
        let foreign = restore(
            "foreign",
            "2026-12-02T08:58:00Z",
            json!({"cluster": "dev", "source": {"latest": true, "fromCluster": "old"}}),
        );
        let d = decide(&cluster(), &[foreign], None, None, now, true);
        assert_eq!(d.start, None);
        let status = &d.updates[0].1;
        assert_eq!(status.phase, RestorePhase::Failed);
        assert!(
            status
                .message
                .as_deref()
                .unwrap()
                .starts_with("spec.allowOtherCluster")
        );
    }
}
