//! One reconcile of an `OpenBaoCluster`: a pipeline of small steps.
//!
//! 1. Dereference: read everything the reconcile needs once, into a
//!    snapshot (watch caches, changed Secret data, OpenBao's answers).
//! 2. Validate the spec (in code, again: the object may predate a rule).
//! 3. Key material: the static seal key and, for operator-managed TLS, the
//!    CA and server certificate.
//! 4. Render every object with the pure renderers and apply what differs.
//! 5. Act, at most one disruptive step per reconcile: initialize, remove
//!    scaled-away Raft peers, or roll one pod through the gate.
//! 6. Write status when it changed.
//!
//! A failure at any step is published as a Warning Event and `Degraded`
//! with the error's reason, counted by reason, and retried with capped,
//! jittered exponential back-off. Every step decides from the snapshot, so
//! a controller killed between any two steps converges when it starts
//! again.

pub mod backup;
mod bootstrap;
mod dereference;
mod drill;
pub mod error;
mod objects;
mod raft;
mod restore;
mod rollout;
mod secrets;
pub mod snapshot;
mod tls;
pub mod upgrade;

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::backup::OperationKind;
use lifecycle_types::cluster::OpenBaoClusterStatus;
use lifecycle_types::events::actions;
use lifecycle_types::validation::{
    validate_hardened, validate_references, validate_spec, validate_version_change,
};
use openbao_client::HealthState;

pub use error::ReconcileError;

use crate::apply::FIELD_MANAGER;
use crate::clusters::{ClusterKey, ClusterState, backoff, lock};
use crate::context::Context;
use crate::metrics::{ClusterLabels, ErrorLabels};
use crate::status::{self, InitView, Observation, Refusal, TlsView};
use snapshot::{last_termination, running_for};

/// What the steps decided about the next look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Converged: look again after the resync period.
    Steady,
    /// Something is in motion: look again soon.
    Soon,
    /// Only the first status was written: go on as soon as a slot is free.
    Now,
    /// Converged until a scheduled operation is due after this long.
    After(std::time::Duration),
}

/// The entry point `kube::runtime::Controller` calls.
pub async fn reconcile(
    cluster: Arc<OpenBaoCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let key = key(&cluster);
    if !ctx.settings.scope.contains(&key.0) {
        // Not a namespace this controller watches: nothing is cached for
        // it, and another controller may own it.
        return Ok(Action::await_change());
    }
    let state = ctx.clusters.state(&key);
    let result = reconcile_inner(&cluster, &ctx, &state).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    match &result {
        Ok(_) => *lock(&state.failures) = 0,
        Err(error) => report(&cluster, &ctx, &state, error).await,
    }
    ctx.metrics
        .api_writes
        .inner()
        .store(ctx.applier.writes(), std::sync::atomic::Ordering::Relaxed);
    ctx.metrics.api_reads.inner().store(
        ctx.api_counters.reads(),
        std::sync::atomic::Ordering::Relaxed,
    );
    result.map(|next| match next {
        Next::Steady => Action::requeue(ctx.settings.resync),
        Next::Soon => Action::requeue(ctx.settings.progress_interval),
        Next::Now => Action::requeue(std::time::Duration::ZERO),
        Next::After(due) => Action::requeue(due.min(ctx.settings.resync)),
    })
}

/// Back-off after an error (already reported by [`reconcile`]): doubling
/// from the progress interval up to the cap, with jitter.
pub fn error_policy(
    cluster: Arc<OpenBaoCluster>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let failures = *lock(&ctx.clusters.state(&key(&cluster)).failures);
    let delay = backoff(
        failures,
        ctx.settings.progress_interval,
        ctx.settings.max_backoff,
        jitter(),
    );
    tracing::warn!(
        cluster = %cluster.name_any(),
        namespace = %cluster.namespace().unwrap_or_default(),
        reason = error.reason(),
        %error,
        failures,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Drops everything kept for a deleted cluster: its connection and
/// login, caches, and its metric series.
pub fn forget(ctx: &Context, key: &ClusterKey) {
    let reasons: Vec<&str> = ctx
        .clusters
        .remove(key)
        .map(|state| lock(&state.error_reasons).iter().copied().collect())
        .unwrap_or_default();
    ctx.metrics.forget(
        &ClusterLabels {
            namespace: key.0.clone(),
            name: key.1.clone(),
        },
        &reasons,
    );
}

fn key(cluster: &OpenBaoCluster) -> ClusterKey {
    (cluster.namespace().unwrap_or_default(), cluster.name_any())
}

fn labels(cluster: &OpenBaoCluster) -> ClusterLabels {
    ClusterLabels {
        namespace: cluster.namespace().unwrap_or_default(),
        name: cluster.name_any(),
    }
}

/// A number in [0, 1) from the system's random source.
fn jitter() -> f64 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u16::from_le_bytes(bytes)) / 65536.0
}

/// A failed reconcile, told to the user: a Warning Event, `Degraded` with
/// the same reason and message, and the error metric.
async fn report(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    state: &ClusterState,
    error: &ReconcileError,
) {
    *lock(&state.failures) += 1;
    let reason = error.reason();
    lock(&state.error_reasons).insert(reason);
    let labels = labels(cluster);
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            namespace: labels.namespace,
            name: labels.name,
            reason: reason.to_owned(),
        })
        .inc();
    let message = error.to_string();
    event(
        ctx,
        cluster,
        EventType::Warning,
        reason,
        actions::RECONCILE,
        &message,
    )
    .await;
    let new = status::with_error(cluster, cluster.status.as_ref(), reason, &message, now());
    if cluster.status.as_ref() != Some(&new)
        && let Err(error) = patch_status(ctx, cluster, &new).await
    {
        tracing::warn!(%error, "could not write the failure to status");
    }
}

async fn reconcile_inner(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    state: &ClusterState,
) -> Result<Next, ReconcileError> {
    if cluster.meta().deletion_timestamp.is_some() {
        // Owned objects go with the cluster through garbage collection; the
        // deletion policy was rendered into owner references and the
        // StatefulSet's claim retention, so there is nothing left to do.
        forget(ctx, &key(cluster));
        return Ok(Next::Steady);
    }

    let mut errors = validate_spec(&cluster.spec);
    errors.extend(validate_references(&cluster.name_any(), &cluster.spec));
    // A cluster running before the Hardened rules existed keeps serving;
    // its gaps stay in ProductionReady.
    if !cluster.status.as_ref().is_some_and(|s| s.initialized) {
        errors.extend(validate_hardened(&cluster.spec));
    }
    // The version policy, against what the pods run (the API server checks
    // it against the stored spec, which a forced edit may have bypassed).
    if let Some(running) = cluster
        .status
        .as_ref()
        .and_then(|s| s.current_version.as_deref())
    {
        errors.extend(validate_version_change(running, &cluster.spec));
    }
    let refused = if !errors.is_empty() {
        Some(Refusal::invalid_spec(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ))
    } else {
        match ctx.tenancy.as_ref().map(|t| t.onboarded(&key(cluster).0)) {
            // The tenants are not listed yet: ask again shortly.
            Some(None) => return Ok(Next::Soon),
            Some(Some(Err(message))) => Some(Refusal::not_onboarded(message)),
            _ => None,
        }
    };
    if let Some(refused) = refused {
        let message = refused.message.clone();
        let seen = Observation {
            pods: Vec::new(),
            membership: None,
            membership_error: None,
            init: InitView::Waiting(String::new()),
            tls: TlsView {
                ready: false,
                reason: refused.reason,
                message,
            },
            root_token_stored: false,
            refused: Some(refused),
            exposure_problem: None,
            stuck: None,
            backup: backup::BackupView::default(),
            upgrade: upgrade::UpgradeView::unchanged(cluster),
            admission_gap: ctx.admission_gap(),
        };
        // The Degraded transition to InvalidSpec is announced as an Event.
        write_status(cluster, ctx, &seen).await?;
        return Ok(Next::Steady);
    }

    // A new cluster shows a phase at once, before the slow steps (keys,
    // certificates, OpenBao calls): this pass only writes it and queues the
    // cluster again behind every other new cluster, so many new clusters
    // all get a first status before any gets the slow steps.
    if cluster.status.is_none() && !std::mem::replace(&mut *lock(&state.first_status_written), true)
    {
        patch_status(ctx, cluster, &status::first(cluster)).await?;
        return Ok(Next::Now);
    }

    let paused = cluster.spec.paused;
    // A restore replaces the cluster's data: nothing else changes the
    // cluster until it ends (no new template, no scaling, no rollout).
    let restoring = cluster
        .status
        .as_ref()
        .and_then(|s| s.operation.as_ref())
        .is_some_and(|l| l.kind == OperationKind::Restore);
    let hold = paused || restoring;
    let mut snapshot = dereference::kubernetes(cluster, ctx, state).await?;
    let material = secrets::ensure(cluster, ctx, &snapshot, paused).await?;
    if let Some(expiry) = material.certificate_expiry {
        ctx.metrics
            .certificate_expiry
            .get_or_create(&labels(cluster))
            .set(expiry as f64);
    }
    let stage = objects::apply(cluster, ctx, state, &snapshot, &material, hold).await?;
    let connection = dereference::openbao(cluster, ctx, state, &mut snapshot).await;
    unreachable(ctx, &snapshot)?;

    let seen_pods = &snapshot.openbao.pods;
    // A started pod that is not ready yet is about to change in ways no
    // watch reports (OpenBao unsealing, joining); pods that are not running
    // yet are reported by the pod watch when they start.
    let mut next = if seen_pods.iter().any(|p| p.running && !p.ready) {
        Next::Soon
    } else {
        Next::Steady
    };
    let initialized = cluster.status.as_ref().is_some_and(|s| s.initialized);
    let mut init = if initialized {
        InitView::Done {
            by_operator: snapshot.secrets.root_token_stored,
        }
    } else {
        InitView::Waiting(format!(
            "waiting for the bootstrap pod {}-0 to answer",
            snapshot.statefulset_name()
        ))
    };
    if !paused {
        if !initialized {
            let (view, busy) =
                bootstrap::step(cluster, ctx, connection.as_deref(), &snapshot).await?;
            init = view;
            if busy {
                next = Next::Soon;
            }
        } else if let Some(connection) = connection.as_ref().filter(|_| !restoring) {
            // At most one disruptive step: Raft upkeep first, then the gate.
            if raft::step(cluster, ctx, connection, &snapshot).await?
                || (upgrade::rollout_allowed(cluster)
                    && rollout::step(cluster, ctx, connection, &snapshot.openbao).await?)
            {
                next = Next::Soon;
            }
        }
    }
    if snapshot.openbao.membership_error.is_some() {
        next = Next::Soon;
    }
    // Serving: initialized with one active node that answers the
    // controller's Raft read (a node that flips between active and standby
    // does not), or, while bootstrapping, initialization done.
    let active = snapshot
        .openbao
        .pods
        .iter()
        .filter(|p| p.health == Some(HealthState::Active))
        .count();
    // A paused cluster is not expected to progress.
    let serving = paused
        || if initialized {
            active == 1 && snapshot.openbao.membership.is_some()
        } else {
            matches!(init, InitView::Done { .. })
        };
    let stuck = stuck(ctx, state, &snapshot, serving);
    let may_start = !paused && initialized && serving;
    let backups_may_start = may_start && !lifecycle_types::restore::restore_from_pending(cluster);
    let (mut backup, wake) =
        backup::step(cluster, ctx, state, &snapshot, &material, backups_may_start).await?;
    (backup.operation, backup.restored_from) = restore::step(
        cluster,
        ctx,
        &snapshot,
        connection.as_deref(),
        backup.operation.take(),
        may_start,
    )
    .await?;
    let upgrade = if may_start {
        let unhealthy = upgrade_blocker(cluster, &snapshot);
        let (operation, view) =
            upgrade::step(cluster, ctx, &snapshot, backup.operation.take(), unhealthy).await?;
        backup.operation = operation;
        view
    } else {
        // Not serving, paused or bootstrapping: the upgrade stays as it was.
        upgrade::UpgradeView::unchanged(cluster)
    };
    if backup
        .operation
        .as_ref()
        .is_some_and(|l| matches!(l.kind, OperationKind::Restore | OperationKind::Upgrade))
    {
        next = Next::Soon;
    }
    if let (Next::Steady, Some(due)) = (&next, wake) {
        next = Next::After(due);
    }
    let seen = Observation {
        pods: snapshot.openbao.pods.clone(),
        membership: snapshot.openbao.membership.clone(),
        membership_error: snapshot.openbao.membership_error.clone(),
        init,
        tls: material.tls.clone(),
        root_token_stored: snapshot.secrets.root_token_stored,
        refused: None,
        exposure_problem: stage.exposure_problem.clone(),
        stuck,
        backup,
        upgrade,
        admission_gap: ctx.admission_gap(),
    };
    if write_status(cluster, ctx, &seen).await? {
        tracing::debug!(cluster = %cluster.name_any(), "status updated");
    }
    Ok(next)
}

/// Why a version change may not start now (`None`: it may): every wanted
/// pod ready and Raft healthy with a failure tolerance left, as the
/// preflight Job checks again from inside.
fn upgrade_blocker(cluster: &OpenBaoCluster, snapshot: &snapshot::Snapshot) -> Option<String> {
    let view = &snapshot.openbao;
    if let Some((_, message)) = &view.membership_error {
        return Some(format!("Raft state cannot be read: {message}"));
    }
    let replicas = cluster.spec.replicas.max(1) as usize;
    if let Some(pod) = view.pods.iter().take(replicas).find(|p| !p.ready) {
        return Some(format!("{} is not ready", pod.name));
    }
    // One change at a time: a roll of another change finishes first, so
    // the upgrade's roll restarts each pod once.
    if let Some(pod) = view.pods.iter().take(replicas).find(|p| !p.current) {
        return Some(format!(
            "{} still runs an older template (a rollout is in progress)",
            pod.name
        ));
    }
    let membership = view.membership.as_ref()?;
    if membership.voters().count() != replicas {
        return Some(format!(
            "Raft has {} voters for {replicas} pods",
            membership.voters().count()
        ));
    }
    if membership.healthy != Some(true) {
        return Some("autopilot does not report Raft healthy".into());
    }
    if replicas >= 3 && membership.failure_tolerance.unwrap_or(0) < 1 {
        return Some("Raft has no failure tolerance left".into());
    }
    None
}

/// Pods that have run past the grace period and none answers: an error
/// (the user must act), retried with back-off.
fn unreachable(ctx: &Context, snapshot: &snapshot::Snapshot) -> Result<(), ReconcileError> {
    let view = &snapshot.openbao;
    if view.unanswered.is_empty() || view.pods.iter().any(|p| p.health.is_some()) {
        return Ok(());
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let grace = ctx.settings.unreachable_grace.as_secs() as i64;
    let settled = view.unanswered.iter().all(|(pod, _)| {
        snapshot
            .pod(pod)
            .is_some_and(|p| running_for(p, now) >= grace)
    });
    if !settled {
        return Ok(());
    }
    let pods: Vec<&str> = view.unanswered.iter().map(|(p, _)| p.as_str()).collect();
    Err(ReconcileError::Unreachable {
        pods: pods.join(", "),
        detail: view.unanswered[0].1.clone(),
    })
}

/// Whether pods are kept from serving past the bound (see
/// [`status::stuck`]); the clock of "answering but not serving" lives in
/// the cluster's state.
fn stuck(
    ctx: &Context,
    state: &ClusterState,
    snapshot: &snapshot::Snapshot,
    serving: bool,
) -> Option<(&'static str, String)> {
    const CLOCK: &str = "not-serving";
    let pods = &snapshot.openbao.pods;
    let answering = pods.iter().any(|p| p.health.is_some());
    let no_active_for = {
        let mut clocks = lock(&state.stuck_since);
        if answering && !serving {
            let since = *clocks.entry(CLOCK.to_owned()).or_insert_with(Instant::now);
            Some(since.elapsed().as_secs())
        } else {
            clocks.remove(CLOCK);
            None
        }
    };
    let terminations: Vec<(String, String)> = snapshot
        .pods
        .iter()
        .filter_map(|p| last_termination(p).map(|why| (p.name_any(), why)))
        .collect();
    status::stuck(
        pods,
        &terminations,
        no_active_for,
        ctx.settings.stuck_after.as_secs(),
    )
}

/// Patches status when it differs; true when written.
async fn write_status(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    seen: &Observation,
) -> Result<bool, ReconcileError> {
    let previous = cluster.status.as_ref();
    let new = status::compute(cluster, previous, seen, now());
    let labels = labels(cluster);
    ctx.metrics
        .ready_replicas
        .get_or_create(&labels)
        .set(new.ready_replicas.into());
    ctx.metrics.sealed_nodes.get_or_create(&labels).set(
        seen.pods
            .iter()
            .filter(|p| p.health == Some(HealthState::Sealed))
            .count() as i64,
    );
    if previous == Some(&new) {
        return Ok(false);
    }
    // The cached object can lag behind the status this controller wrote a
    // moment ago; compare with the stored one before writing (and before
    // announcing transitions that already were announced).
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let stored = ctx
        .applier
        .get::<OpenBaoCluster>(&namespace, &name)
        .await?
        .and_then(|c| c.status);
    let previous = stored.as_ref().or(previous);
    let new = status::compute(cluster, previous, seen, now());
    if previous == Some(&new) {
        return Ok(false);
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let before = serde_json::to_value(previous).unwrap_or_default();
        let after = serde_json::to_value(&new).unwrap_or_default();
        tracing::debug!(
            cluster = %cluster.name_any(),
            at = %crate::render::first_difference(&before, &after, ""),
            "status changed"
        );
    }
    announce_transitions(ctx, cluster, previous, &new).await;
    patch_status(ctx, cluster, &new).await?;
    Ok(true)
}

/// One server-side apply of the whole status, counted.
async fn patch_status(
    ctx: &Context,
    cluster: &OpenBaoCluster,
    status: &OpenBaoClusterStatus,
) -> Result<(), ReconcileError> {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    ctx.applier.count_write();
    ctx.applier
        .api::<OpenBaoCluster>(&namespace)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": OpenBaoCluster::api_version(&()),
                "kind": OpenBaoCluster::kind(&()),
                "status": status,
            })),
        )
        .await
        .map_err(|source| {
            crate::apply::api_error::<OpenBaoCluster>("patch status of", &namespace, &name, source)
        })?;
    Ok(())
}

/// An Event for every condition that changed status.
async fn announce_transitions(
    ctx: &Context,
    cluster: &OpenBaoCluster,
    previous: Option<&lifecycle_types::cluster::OpenBaoClusterStatus>,
    new: &lifecycle_types::cluster::OpenBaoClusterStatus,
) {
    use lifecycle_types::conditions::{ConditionStatus, find, types};
    for condition in &new.conditions {
        let before = previous.and_then(|p| find(&p.conditions, &condition.type_));
        if before.is_some_and(|b| b.status == condition.status && b.reason == condition.reason) {
            continue;
        }
        let bad = match condition.type_.as_str() {
            types::SEALED | types::DEGRADED => condition.status == ConditionStatus::True,
            types::PRODUCTION_READY => false,
            types::UPGRADING => {
                condition.reason == lifecycle_types::conditions::reasons::UPGRADE_FAILED
            }
            _ => condition.status == ConditionStatus::False,
        };
        // Waiting states before the first pod answers are not news, nor is
        // the first look at a new cluster, unless it is already in trouble
        // (an invalid spec, for example).
        if condition.status == ConditionStatus::Unknown
            || (before.is_none() && !(condition.type_ == types::DEGRADED && bad))
        {
            continue;
        }
        let kind = if bad {
            EventType::Warning
        } else {
            EventType::Normal
        };
        event(
            ctx,
            cluster,
            kind,
            &condition.reason,
            &condition.type_,
            &condition.message,
        )
        .await;
    }
}

/// Publishes an Event; a failure to publish is logged, never fatal.
pub(crate) async fn event(
    ctx: &Context,
    cluster: &OpenBaoCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    ctx.applier.count_write();
    tracing::debug!(cluster = %cluster.name_any(), reason, "publishing an Event");
    let reference = cluster.object_ref(&());
    let published = ctx
        .recorder
        .publish(
            &Event {
                type_,
                reason: reason.to_owned(),
                note: Some(note.chars().take(1000).collect()),
                action: action.to_owned(),
                secondary: None,
            },
            &reference,
        )
        .await;
    if let Err(error) = published {
        tracing::warn!(%error, reason, "could not publish an Event");
    }
}

pub(crate) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
