//! Operator-managed TLS: the decisions of [`crate::tls`] carried out. The
//! CA Secret is written before the server Secret, so a key is stored before
//! anything depends on it; a controller killed between the two writes is
//! asked for exactly the missing one on its next look.

use kube::runtime::events::EventType;
use lifecycle_types::conditions::reasons;
use lifecycle_types::{OpenBaoCluster, labels};

use super::secrets::{TlsState, tls_hash};
use super::snapshot::{Snapshot, runs_revision};
use super::{ReconcileError, event};
use crate::context::Context;
use crate::render;
use crate::status::TlsView;
use crate::tls::{self, StoredTls, TlsAction, TlsPolicy};
use lifecycle_types::events::actions;

pub async fn operator_managed(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    snapshot: &Snapshot,
    paused: bool,
) -> Result<TlsState, ReconcileError> {
    let name = &snapshot.name;
    let applier = &ctx.applier;
    let invalid = |message: String| TlsState {
        hash: String::new(),
        view: TlsView {
            ready: false,
            reason: reasons::TLS_SECRET_INVALID,
            message,
        },
        expiry: None,
    };
    let mut stored = match StoredTls::from_secrets(
        name,
        snapshot.secrets.tls_ca.as_deref(),
        snapshot.secrets.tls_server.as_deref(),
    ) {
        Ok(stored) => stored,
        Err(error) => return Ok(invalid(error.to_string())),
    };
    let policy = match TlsPolicy::from_rotation_period(&cluster.spec.tls.rotation_period) {
        Ok(policy) => policy,
        Err(error) => return Ok(invalid(format!("spec.tls.rotationPeriod: {error}"))),
    };
    let sans = render::secrets::server_sans(cluster)?;
    let rolled_out = rolled_out(snapshot, &stored);
    let now = k8s_openapi::jiff::Timestamp::now();
    // Act until nothing is left to do now: a new cluster gets its CA and
    // its server certificate in one reconcile. Bounded, in case a decision
    // repeats.
    let mut last = TlsAction::Keep;
    let mut done = Vec::new();
    for _ in 0..4 {
        let state = match tls::TlsState::read(&stored, rolled_out) {
            Ok(state) => state,
            Err(error) => return Ok(invalid(error.to_string())),
        };
        last = tls::plan(&state, &sans, now, &policy);
        if paused || matches!(last, TlsAction::Keep | TlsAction::AwaitRollout { .. }) {
            break;
        }
        let writes = tls::perform(&last, &stored, &sans, now, &policy)
            .map_err(|e| ReconcileError::Tls(e.to_string()))?;
        if let Some(ca) = &writes.ca_secret {
            let mut secret = render::secrets::tls_ca_secret(cluster, "", "")?;
            secret.data = Some(ca.data());
            applier.apply(&secret).await?;
        }
        if let Some(server) = &writes.server_secret {
            let mut secret = render::secrets::tls_server_secret(cluster, "", "", "")?;
            secret.data = Some(server.data());
            applier.apply(&secret).await?;
        }
        stored.apply(&writes);
        done.push(last.clone());
    }
    // One Event for what this reconcile did (a new cluster's CA and its
    // server certificate are one story), named after the first step.
    if let Some(first) = done.first() {
        let message = done
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; then ");
        event(
            ctx,
            cluster,
            EventType::Normal,
            first.kind(),
            actions::MANAGE_TLS,
            &message,
        )
        .await;
    }
    let (reason, message) = match &last {
        TlsAction::Keep => (reasons::CERTIFICATE_VALID, String::new()),
        TlsAction::AwaitRollout { .. } | TlsAction::StartCaRotation { .. } => {
            (reasons::CA_ROTATING, last.to_string())
        }
        other => (reasons::CERTIFICATE_RENEWING, other.to_string()),
    };
    let Some(server) = &stored.server else {
        return Ok(TlsState {
            hash: String::new(),
            view: TlsView {
                ready: false,
                reason: reasons::TLS_SECRET_MISSING,
                message: "the server certificate is not issued yet (paused?)".into(),
            },
            expiry: None,
        });
    };
    let expiry = tls::inspect(&server.cert_pem).ok().map(|i| i.not_after);
    let message = if message.is_empty() {
        format!(
            "operator-managed certificate valid until {}",
            expiry.map(|e| e.to_string()).unwrap_or_default()
        )
    } else {
        message
    };
    Ok(TlsState {
        hash: tls_hash(&server.cert_pem, &stored.bundle_pem),
        view: TlsView {
            ready: true,
            reason,
            message,
        },
        expiry: expiry.map(|e| e.as_second()),
    })
}

/// Every pod was started with the server Secret exactly as it is now: the
/// StatefulSet's template carries its hash, and every pod runs that
/// template's revision.
fn rolled_out(snapshot: &Snapshot, stored: &StoredTls) -> bool {
    let (Some(server), Some(set)) = (&stored.server, &snapshot.statefulset) else {
        return false;
    };
    let want = tls_hash(&server.cert_pem, &stored.bundle_pem);
    let spec = &set.spec;
    let template_hash = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(labels::TLS_HASH));
    if template_hash != Some(&want) {
        return false;
    }
    let Some(revision) = set
        .status
        .as_ref()
        .and_then(|s| s.update_revision.as_deref())
    else {
        return false;
    };
    let replicas = spec.replicas.unwrap_or(0) as usize;
    snapshot.pods.len() >= replicas
        && snapshot
            .pods
            .iter()
            .all(|p| runs_revision(p, revision) && p.metadata.deletion_timestamp.is_none())
}
