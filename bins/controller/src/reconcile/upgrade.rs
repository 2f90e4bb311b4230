//! Version upgrades: a change of `spec.version` runs as checked steps under
//! the cluster's operation lock, recorded in `status.upgrade`:
//!
//! 1. the preflight Job (autopilot healthy, one version, tolerance left);
//! 2. the snapshot Job (a pre-upgrade backup with its manifest), or none
//!    when the user acknowledged `spec.upgrade.allowWithoutSnapshot`;
//! 3. the roll: only now does the template carry the new version
//!    ([`lifecycle_types::upgrade::template_version`]), and the rollout
//!    gate restarts each pod once, standbys first, the leader last after
//!    it stepped down;
//! 4. the verify Job (every voter on the new version, one leader, voters =
//!    pods). Only then does `status.currentVersion` move.
//!
//! Everything is decided from status, the step's Job and the pods, so a
//! controller restarted at any point goes on where it was, and a pod that
//! died mid-roll comes back on the template it would have been given.
//! [`decide`] is the policy as a pure function; [`step`] applies it.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use lifecycle_types::backup::{OperationKind, OperationLock};
use lifecycle_types::conditions::{ConditionStatus, reasons};
use lifecycle_types::events::{actions, reasons as event_reasons};
use lifecycle_types::upgrade::{UpgradePhase, UpgradeStatus, UpgradeStep};
use lifecycle_types::{OpenBaoCluster, names};

use super::backup::{Event, JobOutcome};
use super::snapshot::Snapshot;
use super::{ReconcileError, event};
use crate::context::Context;
use crate::render::upgrade::{job, job_name, service_account};
use crate::status::PodView;

/// `status.operation.cause` of an upgrade.
const CAUSE_PREFIX: &str = "upgrade:";

/// The upgrade as status shows it: `status.upgrade` and `Upgrading`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpgradeView {
    pub status: Option<UpgradeStatus>,
    /// `Upgrading`; `None` when no version change was ever asked for.
    pub condition: Option<(ConditionStatus, &'static str, String)>,
}

impl UpgradeView {
    /// Status as it was (a reconcile that does not look at the upgrade).
    pub fn unchanged(cluster: &OpenBaoCluster) -> Self {
        Self {
            status: cluster.status.as_ref().and_then(|s| s.upgrade.clone()),
            condition: None,
        }
    }
}

/// What the cluster looks like to the upgrade.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The wanted pods (`spec.replicas` of them), in ordinal order.
    pub pods: &'a [PodView],
    /// Why the cluster may not start an upgrade now; `None` when healthy.
    pub unhealthy: Option<String>,
}

/// One reconcile's upgrade decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// The cluster's lock after this step.
    pub operation: Option<OperationLock>,
    pub view: UpgradeView,
    /// Create this step's Job (its name is in `view.status.job`).
    pub start: Option<UpgradeStep>,
    /// No upgrade runs: the upgrade identity must not exist.
    pub ended: bool,
    pub events: Vec<Event>,
}

/// Whether the rollout gate may restart pods now: not while a preflight
/// or snapshot runs before the roll (each pod restarts once, after them),
/// and not after an abort stopped a roll (pods keep the version they run).
pub fn rollout_allowed(cluster: &OpenBaoCluster) -> bool {
    let Some(record) = cluster.status.as_ref().and_then(|s| s.upgrade.as_ref()) else {
        return true;
    };
    match record.phase {
        UpgradePhase::Running => record.step >= UpgradeStep::Roll,
        UpgradePhase::Aborted => record.step < UpgradeStep::Roll,
        UpgradePhase::Failed | UpgradePhase::Completed => true,
    }
}

/// The upgrade policy. `operation` is the lock as the earlier steps left
/// it; `outcome` is its Job's, when the lock is an upgrade's.
pub fn decide(
    cluster: &OpenBaoCluster,
    operation: Option<OperationLock>,
    outcome: Option<JobOutcome>,
    facts: &Facts<'_>,
    now: Timestamp,
) -> Decision {
    let mut d = Decision {
        operation,
        ..Decision::default()
    };
    let status = cluster.status.as_ref();
    let spec_version = cluster.spec.version.as_str();
    let policy = cluster.spec.upgrade.clone().unwrap_or_default();
    let running = status.and_then(|s| s.current_version.clone());
    let mut record = status.and_then(|s| s.upgrade.clone());
    let ours = |lock: &Option<OperationLock>| {
        lock.as_ref()
            .is_some_and(|l| l.kind == OperationKind::Upgrade)
    };

    // An upgrade that had not reached the roll when the spec moved on
    // restarted nothing: it is dropped, and the new version starts over.
    if let Some(r) = &record
        && r.phase != UpgradePhase::Completed
        && r.step < UpgradeStep::Roll
        && r.to != spec_version
    {
        if ours(&d.operation) {
            d.operation = None;
        }
        d.ended = true;
        record = None;
    }

    let mut r = match record {
        Some(r) if r.phase != UpgradePhase::Completed => r,
        finished => {
            // Nothing in flight: start one if the spec asks for another version.
            d.ended = true;
            let Some(from) = running.filter(|v| v != spec_version) else {
                d.view = UpgradeView {
                    condition: finished.as_ref().map(completed_condition),
                    status: finished,
                };
                return d;
            };
            if let Some(why) = blocked(&d.operation, facts) {
                d.view = UpgradeView {
                    status: finished,
                    condition: Some((
                        ConditionStatus::False,
                        reasons::UPGRADE_WAITING,
                        format!(
                            "the change of spec.version from {from} to {spec_version} waits: {why}; nothing is restarted until it starts"
                        ),
                    )),
                };
                return d;
            }
            d.ended = false;
            d.events.push((
                false,
                event_reasons::UPGRADE_STEP_STARTED,
                format!("upgrade from {from} to {spec_version} started"),
            ));
            UpgradeStatus::started(&from, spec_version, policy.retry.clone(), &now.to_string())
        }
    };
    r.pods_done = pods_done(facts.pods, &r.to);

    // The user's controls.
    if policy.abort && r.phase == UpgradePhase::Running {
        r.phase = UpgradePhase::Aborted;
        d.events.push((
            true,
            event_reasons::UPGRADE_ABORTED,
            format!(
                "spec.upgrade.abort stopped the upgrade to {} before its {} step; nothing was downgraded",
                r.to,
                r.step.name()
            ),
        ));
    }
    let retry = policy
        .retry
        .as_ref()
        .filter(|v| r.phase == UpgradePhase::Failed && r.last_retry.as_ref() != Some(*v));
    let resume = !policy.abort && r.phase == UpgradePhase::Aborted;
    if (retry.is_some() || resume) && (d.operation.is_none() || ours(&d.operation)) {
        if let Some(value) = retry {
            r.last_retry = Some(value.clone());
            // A new attempt is a new Job.
            r.job = None;
        }
        r.phase = UpgradePhase::Running;
        r.last_error = None;
    }

    if r.phase == UpgradePhase::Running {
        advance(cluster, &mut r, &mut d, outcome, facts, &policy, now);
    }
    if r.phase == UpgradePhase::Running {
        let job = r.job.clone().unwrap_or_else(|| {
            job_name(
                &cluster.name_any(),
                UpgradeStep::Verify,
                &r.to,
                r.last_retry.as_deref(),
            )
        });
        let cause = format!("{CAUSE_PREFIX}{}->{}", r.from, r.to);
        match &mut d.operation {
            Some(lock) if lock.kind == OperationKind::Upgrade => {
                lock.job = job;
                lock.cause = cause;
            }
            Some(_) => {}
            None => {
                d.operation = Some(OperationLock {
                    kind: OperationKind::Upgrade,
                    job,
                    cause,
                    started_at: now.to_string(),
                });
            }
        }
    } else {
        if ours(&d.operation) {
            d.operation = None;
        }
        d.ended = true;
    }
    d.view = UpgradeView {
        condition: Some(condition(&r)),
        status: Some(r),
    };
    d
}

/// Moves a running upgrade as far as it can go in this pass.
fn advance(
    cluster: &OpenBaoCluster,
    r: &mut UpgradeStatus,
    d: &mut Decision,
    outcome: Option<JobOutcome>,
    facts: &Facts<'_>,
    policy: &lifecycle_types::cluster::UpgradePolicy,
    now: Timestamp,
) {
    // Another operation took the lock while this upgrade was stopped: wait.
    if d.operation
        .as_ref()
        .is_some_and(|l| l.kind != OperationKind::Upgrade)
    {
        r.last_error = None;
        return;
    }
    // The outcome is of the Job the lock names, which is this step's; a
    // step that starts in this pass has none yet.
    let mut outcome = match (&d.operation, &r.job) {
        (Some(lock), Some(job)) if lock.job == *job => outcome,
        _ => None,
    };
    let name = cluster.name_any();
    // Each pass moves at most through every step once.
    for _ in 0..4 {
        match (r.step, r.job.clone()) {
            (UpgradeStep::Roll, _) => {
                let all_ready = !facts.pods.is_empty() && facts.pods.iter().all(|p| p.ready);
                if r.pods_done.len() < facts.pods.len() || !all_ready {
                    return;
                }
                d.events.push((
                    false,
                    event_reasons::UPGRADE_STEP_SUCCEEDED,
                    format!("every pod was restarted onto {}; verifying", r.to),
                ));
                r.step = UpgradeStep::Verify;
                r.job = None;
            }
            (step, None) => {
                if step == UpgradeStep::Snapshot && cluster.spec.backup.is_none() {
                    if policy.allow_without_snapshot {
                        r.step = UpgradeStep::Roll;
                        r.last_error = None;
                        continue;
                    }
                    r.last_error = Some("no pre-upgrade snapshot can be taken: spec.backup is not set; configure spec.backup (the snapshot goes to its destination), or set spec.upgrade.allowWithoutSnapshot: true to upgrade without one".into());
                    return;
                }
                let job = job_name(&name, step, &r.to, r.last_retry.as_deref());
                d.events.push((
                    false,
                    event_reasons::UPGRADE_STEP_STARTED,
                    format!("upgrade to {}: the {} Job {job} started", r.to, step.name()),
                ));
                r.job = Some(job);
                r.last_error = None;
                d.start = Some(step);
                return;
            }
            (step, Some(job)) => match outcome.take() {
                None | Some(JobOutcome::Running) => return,
                Some(JobOutcome::Failed {
                    reason, message, ..
                }) => {
                    let error =
                        format!("the {} Job {job} failed ({reason}): {message}", step.name());
                    d.events
                        .push((true, event_reasons::UPGRADE_STEP_FAILED, error.clone()));
                    r.last_error = Some(error);
                    r.phase = UpgradePhase::Failed;
                    return;
                }
                Some(JobOutcome::Succeeded { details, .. }) => {
                    d.events.push((
                        false,
                        event_reasons::UPGRADE_STEP_SUCCEEDED,
                        format!("upgrade to {}: the {} step succeeded", r.to, step.name()),
                    ));
                    r.last_error = None;
                    r.job = None;
                    match step {
                        UpgradeStep::Preflight => r.step = UpgradeStep::Snapshot,
                        UpgradeStep::Snapshot => {
                            r.backup = details["backup"].as_str().map(str::to_owned);
                            r.step = UpgradeStep::Roll;
                        }
                        UpgradeStep::Verify | UpgradeStep::Roll => {
                            r.phase = UpgradePhase::Completed;
                            r.completed_at = Some(now.to_string());
                            d.events.push((
                                false,
                                event_reasons::UPGRADE_COMPLETED,
                                format!(
                                    "upgraded from {} to {}: every voter runs {}",
                                    r.from, r.to, r.to
                                ),
                            ));
                            return;
                        }
                    }
                }
            },
        }
    }
}

/// Pods on the new template that run `to`.
fn pods_done(pods: &[PodView], to: &str) -> Vec<String> {
    pods.iter()
        .filter(|p| p.exists && p.current && p.version.as_deref() == Some(to))
        .map(|p| p.name.clone())
        .collect()
}

/// Why an upgrade may not start now.
fn blocked(operation: &Option<OperationLock>, facts: &Facts<'_>) -> Option<String> {
    if let Some(lock) = operation {
        return Some(format!(
            "the {:?} Job {} holds the cluster ({}); the upgrade starts when it ends",
            lock.kind, lock.job, lock.cause
        ));
    }
    facts.unhealthy.clone()
}

fn completed_condition(r: &UpgradeStatus) -> (ConditionStatus, &'static str, String) {
    (
        ConditionStatus::False,
        reasons::UPGRADE_COMPLETE,
        format!(
            "upgraded from {} to {}{}; verified: every voter runs {}",
            r.from,
            r.to,
            r.backup
                .as_ref()
                .map(|b| format!(" (pre-upgrade backup {b})"))
                .unwrap_or_default(),
            r.to
        ),
    )
}

/// `Upgrading` for an upgrade in flight.
fn condition(r: &UpgradeStatus) -> (ConditionStatus, &'static str, String) {
    let headline = format!("upgrade from {} to {}", r.from, r.to);
    match r.phase {
        UpgradePhase::Completed => completed_condition(r),
        UpgradePhase::Running => match &r.last_error {
            Some(waiting) => (
                ConditionStatus::False,
                reasons::UPGRADE_WAITING,
                format!("{headline} waits at its {} step: {waiting}", r.step.name()),
            ),
            None => {
                let doing = match r.step {
                    UpgradeStep::Preflight => {
                        "checking that the cluster may be upgraded (preflight Job)".to_owned()
                    }
                    UpgradeStep::Snapshot => {
                        "taking the pre-upgrade snapshot (snapshot Job)".to_owned()
                    }
                    UpgradeStep::Roll => format!(
                        "restarting pods one at a time, the leader last; {} on {}",
                        if r.pods_done.is_empty() {
                            "none yet".to_owned()
                        } else {
                            r.pods_done.join(", ")
                        },
                        r.to
                    ),
                    UpgradeStep::Verify => {
                        "verifying every voter runs the new version (verify Job)".to_owned()
                    }
                };
                (
                    ConditionStatus::True,
                    reasons::UPGRADE_RUNNING,
                    format!("{headline}: {doing}"),
                )
            }
        },
        UpgradePhase::Failed => (
            ConditionStatus::False,
            reasons::UPGRADE_FAILED,
            format!(
                "{headline} failed at its {} step: {}; fix the cause, then set spec.upgrade.retry to a new value to run the step again, or spec.upgrade.abort: true to stop",
                r.step.name(),
                r.last_error.as_deref().unwrap_or("no details")
            ),
        ),
        UpgradePhase::Aborted => (
            ConditionStatus::False,
            reasons::UPGRADE_ABORTED,
            format!(
                "{headline} was stopped by spec.upgrade.abort before its {} step; pods on {}: {}; nothing was downgraded; set spec.upgrade.abort: false to go on",
                r.step.name(),
                r.to,
                if r.pods_done.is_empty() {
                    "none".to_owned()
                } else {
                    r.pods_done.join(", ")
                }
            ),
        ),
    }
}

/// Applies [`decide`]: the identity, the step's Job, Events. Returns the
/// lock and the view for status.
pub async fn step(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    snapshot: &Snapshot,
    operation: Option<OperationLock>,
    unhealthy: Option<String>,
) -> Result<(Option<OperationLock>, UpgradeView), ReconcileError> {
    let now = Timestamp::now();
    let outcome = operation
        .as_ref()
        .filter(|l| l.kind == OperationKind::Upgrade)
        .map(|lock| snapshot.operation_outcome(lock, now));
    let replicas = cluster.spec.replicas.max(0) as usize;
    let pods: Vec<PodView> = snapshot
        .openbao
        .pods
        .iter()
        .take(replicas)
        .cloned()
        .collect();
    let facts = Facts {
        pods: &pods,
        unhealthy,
    };
    let decision = decide(cluster, operation, outcome, &facts, now);
    if decision.ended {
        ctx.applier
            .delete_known::<ServiceAccount>(
                &snapshot.namespace,
                &names::upgrade_service_account(&snapshot.name),
                &snapshot.objects.upgrade_service_account,
            )
            .await?;
    }
    if let (Some(step), Some(record)) = (decision.start, decision.view.status.as_ref()) {
        ctx.applier.apply(&service_account(cluster)?).await?;
        ctx.applier
            .apply(&job(
                cluster,
                step,
                &record.to,
                record.last_retry.as_deref(),
                &ctx.settings.upgrade_image,
            )?)
            .await?;
    }
    for (warning, reason, message) in &decision.events {
        let kind = if *warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        event(ctx, cluster, kind, reason, actions::UPGRADE, message).await;
    }
    Ok((decision.operation, decision.view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use openbao_client::HealthState;
    use serde_json::json;

    const NOW: &str = "2026-12-02T10:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// A 3-replica cluster running 2.6.2 with backups, asked for 2.7.2.
    fn cluster(upgrade: Option<&UpgradeStatus>, policy: serde_json::Value) -> OpenBaoCluster {
        let mut cluster = fixtures::development();
        cluster.spec.replicas = 3;
        cluster.spec.version = "2.7.2".into();
        cluster.spec.upgrade = Some(serde_json::from_value(policy).unwrap());
        cluster.spec.backup = Some(
            serde_json::from_value(
                json!({"schedule": "0 * * * *", "destination": {"url": "s3://b/p"}}),
            )
            .unwrap(),
        );
        cluster.status = Some(lifecycle_types::OpenBaoClusterStatus {
            current_version: Some("2.6.2".into()),
            initialized: true,
            upgrade: upgrade.cloned(),
            ..Default::default()
        });
        cluster
    }

    fn pods(versions: [&str; 3], current: [bool; 3]) -> Vec<PodView> {
        (0..3)
            .map(|i| PodView {
                name: format!("dev-{i}"),
                exists: true,
                running: true,
                ready: true,
                current: current[i],
                restarts: 0,
                health: Some(if i == 0 {
                    HealthState::Active
                } else {
                    HealthState::Standby
                }),
                version: Some(versions[i].into()),
            })
            .collect()
    }

    fn old_pods() -> Vec<PodView> {
        pods(["2.6.2"; 3], [true; 3])
    }

    fn facts(pods: &[PodView]) -> Facts<'_> {
        Facts {
            pods,
            unhealthy: None,
        }
    }

    fn succeeded(details: serde_json::Value) -> Option<JobOutcome> {
        Some(JobOutcome::Succeeded {
            details,
            seconds: Some(3),
        })
    }

    /// Feeds the decision back as the next reconcile's status.
    fn then(cluster: &mut OpenBaoCluster, d: &Decision) {
        let status = cluster.status.as_mut().unwrap();
        status.upgrade = d.view.status.clone();
        status.operation = d.operation.clone();
    }

    #[test]
    fn a_version_change_runs_preflight_snapshot_roll_and_verify_in_order() {
        let pods0 = old_pods();
        let mut c = cluster(None, json!({}));
        assert!(rollout_allowed(&c));
        let d = decide(&c, None, None, &facts(&pods0), now());
        assert_eq!(d.start, Some(UpgradeStep::Preflight));
        let record = d.view.status.clone().unwrap();
        assert_eq!(
            (record.from.as_str(), record.to.as_str()),
            ("2.6.2", "2.7.2")
        );
        let lock = d.operation.clone().unwrap();
        assert_eq!(lock.kind, OperationKind::Upgrade);
        assert_eq!(Some(&lock.job), record.job.as_ref());
        assert_eq!(
            d.view.condition.as_ref().unwrap().1,
            reasons::UPGRADE_RUNNING
        );
        then(&mut c, &d);
        // The template still carries the running version, and no pod rolls.
        assert_eq!(lifecycle_types::upgrade::template_version(&c), "2.6.2");
        assert!(!rollout_allowed(&c));

        // Preflight still running: nothing moves.
        let d = decide(
            &c,
            c.status.as_ref().unwrap().operation.clone(),
            Some(JobOutcome::Running),
            &facts(&pods0),
            now(),
        );
        assert_eq!(d.start, None);
        then(&mut c, &d);

        let lock = c.status.as_ref().unwrap().operation.clone();
        let d = decide(
            &c,
            lock,
            succeeded(json!({"step": "preflight"})),
            &facts(&pods0),
            now(),
        );
        assert_eq!(d.start, Some(UpgradeStep::Snapshot));
        then(&mut c, &d);
        assert_eq!(lifecycle_types::upgrade::template_version(&c), "2.6.2");

        let lock = c.status.as_ref().unwrap().operation.clone();
        let d = decide(
            &c,
            lock,
            succeeded(json!({"backup": "20261202T100000Z-abc"})),
            &facts(&pods0),
            now(),
        );
        assert_eq!(d.start, None);
        let record = d.view.status.clone().unwrap();
        assert_eq!(record.step, UpgradeStep::Roll);
        assert_eq!(record.backup.as_deref(), Some("20261202T100000Z-abc"));
        then(&mut c, &d);
        // Only now does the template move, and the gate may restart pods.
        assert_eq!(lifecycle_types::upgrade::template_version(&c), "2.7.2");
        assert!(rollout_allowed(&c));

        // Two of three pods done: still rolling, and status names them.
        let half = pods(["2.6.2", "2.7.2", "2.7.2"], [false, true, true]);
        let lock = c.status.as_ref().unwrap().operation.clone();
        let d = decide(&c, lock, Some(JobOutcome::Running), &facts(&half), now());
        let record = d.view.status.clone().unwrap();
        assert_eq!(record.pods_done, ["dev-1", "dev-2"]);
        assert_eq!(record.step, UpgradeStep::Roll);
        assert!(
            d.view
                .condition
                .as_ref()
                .unwrap()
                .2
                .contains("dev-1, dev-2 on 2.7.2")
        );
        then(&mut c, &d);

        let done = pods(["2.7.2"; 3], [true; 3]);
        let lock = c.status.as_ref().unwrap().operation.clone();
        let d = decide(&c, lock, Some(JobOutcome::Running), &facts(&done), now());
        assert_eq!(d.start, Some(UpgradeStep::Verify));
        then(&mut c, &d);

        let lock = c.status.as_ref().unwrap().operation.clone();
        let d = decide(
            &c,
            lock,
            succeeded(json!({"step": "verify"})),
            &facts(&done),
            now(),
        );
        let record = d.view.status.clone().unwrap();
        assert_eq!(record.phase, UpgradePhase::Completed);
        assert_eq!(d.operation, None, "the lock is released");
        assert!(d.ended, "the upgrade identity goes");
        assert_eq!(
            d.view.condition.as_ref().unwrap().1,
            reasons::UPGRADE_COMPLETE
        );
    }

    fn at(step: UpgradeStep, phase: UpgradePhase, job: Option<&str>) -> UpgradeStatus {
        UpgradeStatus {
            phase,
            step,
            job: job.map(str::to_owned),
            ..UpgradeStatus::started("2.6.2", "2.7.2", None, NOW)
        }
    }

    fn lock(job: &str) -> Option<OperationLock> {
        Some(OperationLock {
            kind: OperationKind::Upgrade,
            job: job.into(),
            cause: "upgrade:2.6.2->2.7.2".into(),
            started_at: NOW.into(),
        })
    }

    #[test]
    fn a_failed_snapshot_stops_before_any_pod_and_a_retry_runs_a_new_job() {
        let pods0 = old_pods();
        let running = at(
            UpgradeStep::Snapshot,
            UpgradePhase::Running,
            Some("dev-upgrade-snapshot-x"),
        );
        let mut c = cluster(Some(&running), json!({}));
        let d = decide(
            &c,
            lock("dev-upgrade-snapshot-x"),
            Some(JobOutcome::Failed {
                exit_code: Some(5),
                reason: "StorageFailed".into(),
                message: "connection refused".into(),
            }),
            &facts(&pods0),
            now(),
        );
        let record = d.view.status.clone().unwrap();
        assert_eq!(record.phase, UpgradePhase::Failed);
        assert_eq!(
            d.operation, None,
            "backups may run while it waits for the user"
        );
        let (state, reason, message) = d.view.condition.clone().unwrap();
        assert_eq!(
            (state, reason),
            (ConditionStatus::False, reasons::UPGRADE_FAILED)
        );
        assert!(
            message.contains("StorageFailed") && message.contains("spec.upgrade.retry"),
            "{message}"
        );
        then(&mut c, &d);
        assert_eq!(lifecycle_types::upgrade::template_version(&c), "2.6.2");
        // Without a new retry value it stays failed.
        let again = decide(&c, None, None, &facts(&pods0), now());
        assert_eq!(
            (again.start, again.view.status.unwrap().phase),
            (None, UpgradePhase::Failed)
        );

        c.spec.upgrade.as_mut().unwrap().retry = Some("1".into());
        let d = decide(&c, None, None, &facts(&pods0), now());
        assert_eq!(d.start, Some(UpgradeStep::Snapshot));
        let record = d.view.status.clone().unwrap();
        assert_eq!(record.last_retry.as_deref(), Some("1"));
        assert_ne!(record.job.as_deref(), Some("dev-upgrade-snapshot-x"));
        assert_eq!(d.operation.unwrap().job, record.job.unwrap());
    }

    #[test]
    fn abort_stops_the_roll_and_resume_goes_on_without_downgrading() {
        let half = pods(["2.6.2", "2.7.2", "2.7.2"], [false, true, true]);
        let rolling = at(UpgradeStep::Roll, UpgradePhase::Running, None);
        let mut c = cluster(Some(&rolling), json!({"abort": true}));
        let d = decide(&c, lock("dev-upgrade-verify-x"), None, &facts(&half), now());
        let record = d.view.status.clone().unwrap();
        assert_eq!(record.phase, UpgradePhase::Aborted);
        assert_eq!(d.operation, None);
        let message = d.view.condition.clone().unwrap().2;
        assert!(
            message.contains("dev-1, dev-2") && message.contains("nothing was downgraded"),
            "{message}"
        );
        then(&mut c, &d);
        assert!(
            !rollout_allowed(&c),
            "no further pod restarts after an abort"
        );
        assert_eq!(
            lifecycle_types::upgrade::template_version(&c),
            "2.7.2",
            "never back down"
        );

        c.spec.upgrade.as_mut().unwrap().abort = false;
        let d = decide(&c, None, None, &facts(&half), now());
        assert_eq!(d.view.status.clone().unwrap().phase, UpgradePhase::Running);
        assert_eq!(d.operation.as_ref().unwrap().kind, OperationKind::Upgrade);
        then(&mut c, &d);
        assert!(rollout_allowed(&c));
    }

    #[test]
    fn an_unhealthy_or_busy_cluster_does_not_start_and_says_why() {
        let pods0 = old_pods();
        let c = cluster(None, json!({}));
        let sick = Facts {
            pods: &pods0,
            unhealthy: Some("dev-1 is not ready".into()),
        };
        let d = decide(&c, None, None, &sick, now());
        assert_eq!((d.start, d.operation.clone()), (None, None));
        let (state, reason, message) = d.view.condition.unwrap();
        assert_eq!(
            (state, reason),
            (ConditionStatus::False, reasons::UPGRADE_WAITING)
        );
        assert!(message.contains("dev-1 is not ready"), "{message}");

        let backup = Some(OperationLock {
            kind: OperationKind::Backup,
            job: "dev-backup-1".into(),
            cause: "schedule:1".into(),
            started_at: NOW.into(),
        });
        let d = decide(&c, backup.clone(), None, &facts(&pods0), now());
        assert_eq!((d.start, d.operation), (None, backup));
        assert!(d.view.condition.unwrap().2.contains("dev-backup-1"));
    }

    #[test]
    fn without_backups_the_upgrade_waits_unless_acknowledged() {
        let pods0 = old_pods();
        let preflight = at(UpgradeStep::Preflight, UpgradePhase::Running, Some("p"));
        let mut c = cluster(Some(&preflight), json!({}));
        c.spec.backup = None;
        let d = decide(&c, lock("p"), succeeded(json!({})), &facts(&pods0), now());
        assert_eq!(d.start, None);
        let record = d.view.status.clone().unwrap();
        assert_eq!(
            (record.step, record.phase),
            (UpgradeStep::Snapshot, UpgradePhase::Running)
        );
        let (_, reason, message) = d.view.condition.clone().unwrap();
        assert_eq!(reason, reasons::UPGRADE_WAITING);
        assert!(
            message.contains("spec.upgrade.allowWithoutSnapshot"),
            "{message}"
        );
        then(&mut c, &d);
        assert_eq!(lifecycle_types::upgrade::template_version(&c), "2.6.2");

        c.spec.upgrade.as_mut().unwrap().allow_without_snapshot = true;
        let lock = c.status.as_ref().unwrap().operation.clone();
        let d = decide(&c, lock, None, &facts(&pods0), now());
        assert_eq!(d.view.status.unwrap().step, UpgradeStep::Roll);
    }
}
