//! One reconcile of an `OpenBaoCluster`: a pipeline of small steps.
//!
//! 1. Validate the spec (in code, again: the object may predate a rule).
//! 2. Make sure the key material exists: the static seal key and, for
//!    operator-managed TLS, the CA and server certificate.
//! 3. Render every object with the pure renderers and apply what differs.
//! 4. Observe: each pod's health, and Raft through the controller's own
//!    JWT login.
//! 5. Act, at most one disruptive step per reconcile: initialize, remove
//!    scaled-away Raft peers, or roll one pod through the gate.
//! 6. Write status when it changed.
//!
//! Every step reads the world before it acts, so a controller killed
//! between any two steps converges when it starts again.

mod bootstrap;
mod objects;
mod observe;
mod raft;
mod rollout;
mod secrets;
mod tls;

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::validation::validate_spec;

use crate::apply::{ApplyError, FIELD_MANAGER};
use crate::context::Context;
use crate::metrics::ClusterLabels;
use crate::render::RenderError;
use crate::status::{self, InitView, Observation, TlsView};

/// Why a reconcile stopped early; retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("rendering failed: {0}")]
    Render(#[from] RenderError),
    #[error("{0}")]
    Tls(String),
    #[error("OpenBao at {pod}: {source}")]
    OpenBao {
        pod: String,
        #[source]
        source: openbao_client::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// What the steps decided about the next look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Converged: look again after the resync period.
    Steady,
    /// Something is in motion: look again soon.
    Soon,
}

/// The entry point `kube::runtime::Controller` calls.
pub async fn reconcile(
    cluster: Arc<OpenBaoCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = reconcile_inner(&cluster, &ctx).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    if result.is_err() {
        ctx.metrics
            .reconcile_errors
            .get_or_create(&labels(&cluster))
            .inc();
    }
    ctx.metrics
        .api_writes
        .inner()
        .store(ctx.applier.writes(), std::sync::atomic::Ordering::Relaxed);
    result.map(|next| match next {
        Next::Steady => Action::requeue(ctx.settings.resync),
        Next::Soon => Action::requeue(ctx.settings.progress_interval),
    })
}

/// Back-off after an error; the error itself is logged and, when it is the
/// user's to fix, already in status.
pub fn error_policy(
    cluster: Arc<OpenBaoCluster>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(
        cluster = %cluster.name_any(),
        namespace = %cluster.namespace().unwrap_or_default(),
        error = %error,
        "reconcile failed; retrying"
    );
    Action::requeue(ctx.settings.progress_interval * 2)
}

fn labels(cluster: &OpenBaoCluster) -> ClusterLabels {
    ClusterLabels {
        namespace: cluster.namespace().unwrap_or_default(),
        name: cluster.name_any(),
    }
}

async fn reconcile_inner(cluster: &OpenBaoCluster, ctx: &Context) -> Result<Next, ReconcileError> {
    if cluster.meta().deletion_timestamp.is_some() {
        // Owned objects go with the cluster through garbage collection; the
        // deletion policy was rendered into owner references and the
        // StatefulSet's claim retention, so there is nothing left to do.
        ctx.metrics.forget(&labels(cluster));
        return Ok(Next::Steady);
    }

    let errors = validate_spec(&cluster.spec);
    if !errors.is_empty() {
        let message = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let seen = Observation {
            pods: Vec::new(),
            membership: None,
            membership_error: None,
            init: InitView::Waiting(String::new()),
            tls: TlsView {
                ready: false,
                reason: lifecycle_types::conditions::reasons::INVALID_SPEC,
                message: message.clone(),
            },
            root_token_stored: false,
            invalid_spec: Some(message.clone()),
            exposure_problem: None,
        };
        // The Degraded transition to InvalidSpec is announced as an Event.
        write_status(cluster, ctx, &seen).await?;
        return Ok(Next::Steady);
    }

    let paused = cluster.spec.paused;
    let material = secrets::ensure(cluster, ctx, paused).await?;
    if let Some(expiry) = material.certificate_expiry {
        ctx.metrics
            .certificate_expiry
            .get_or_create(&labels(cluster))
            .set(expiry as f64);
    }
    let stage = objects::apply(cluster, ctx, &material, paused).await?;
    let mut seen = observe::observe(cluster, ctx, &material, &stage).await?;

    // A started pod that is not ready yet is about to change in ways no
    // watch reports (OpenBao unsealing, joining); pods that are not running
    // yet are reported by the pod watch when they start.
    let mut next = if seen.pods.iter().any(|p| p.running && !p.ready) {
        Next::Soon
    } else {
        Next::Steady
    };
    if !paused {
        if !cluster.status.as_ref().is_some_and(|s| s.initialized) {
            if bootstrap::step(cluster, ctx, &material, &mut seen).await? {
                next = Next::Soon;
            }
        } else {
            if raft::step(cluster, ctx, &material, &stage, &mut seen).await? {
                next = Next::Soon;
            }
            if rollout::step(cluster, ctx, &material, &stage, &seen).await? {
                next = Next::Soon;
            }
        }
    }
    if seen.membership_error.is_some() {
        next = Next::Soon;
    }
    if write_status(cluster, ctx, &seen).await? {
        tracing::debug!(cluster = %cluster.name_any(), "status updated");
    }
    Ok(next)
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
            .filter(|p| p.health == Some(openbao_client::HealthState::Sealed))
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
    ctx.applier.count_write();
    ctx.applier
        .api::<OpenBaoCluster>(&namespace)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": OpenBaoCluster::api_version(&()),
                "kind": OpenBaoCluster::kind(&()),
                "status": new,
            })),
        )
        .await
        .map_err(|source| {
            crate::apply::api_error::<OpenBaoCluster>("patch status of", &namespace, &name, source)
        })?;
    Ok(true)
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
