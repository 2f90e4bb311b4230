//! Step 1: read everything the reconcile needs, once, into a snapshot.
//!
//! Kubernetes objects come from the watch caches (no request in steady
//! state); Secret data is read from the API only when the cached
//! resourceVersion moved. OpenBao is asked once per pod for health and,
//! once initialized, once for Raft and autopilot through the controller's
//! login. Every later step decides from this snapshot alone.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use lifecycle_types::cluster::TlsMode;
use lifecycle_types::conditions::reasons;
use lifecycle_types::{OpenBaoCluster, labels, names};
use openbao_client::{Error as BaoError, HealthState};

use super::ReconcileError;
use super::snapshot::{
    KnownObjects, OpenBaoView, Secrets, Snapshot, pod_ready, pod_running, restarts, runs_revision,
};
use crate::clusters::{ClusterState, lock};
use crate::context::Context;
use crate::openbao::{ClusterAddress, ClusterConnection};
use crate::render::config::TLS_CA;
use crate::status::PodView;
use crate::stores::Known;

/// The Kubernetes half of the snapshot (caches only, plus Secret data
/// that changed).
pub async fn kubernetes(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    state: &ClusterState,
) -> Result<Snapshot, ReconcileError> {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let caches = &ctx.caches;
    let ns = namespace.as_str();
    let operation_job = cluster
        .status
        .as_ref()
        .and_then(|s| s.operation.as_ref())
        .map(|o| o.job.as_str());
    let objects = KnownObjects {
        service_account: caches
            .service_accounts
            .known(ns, &names::service_account(&name)),
        role_binding: caches
            .role_bindings
            .known(ns, &crate::render::rbac::role_binding_name(&name)),
        config_map: caches.config_maps.known(ns, &names::config_map(&name)),
        self_init_config_map: caches
            .config_maps
            .known(ns, &names::self_init_config_map(&name)),
        headless_service: caches.services.known(ns, &names::headless_service(&name)),
        active_service: caches.services.known(ns, &names::active_service(&name)),
        pod_disruption_budget: caches
            .pod_disruption_budgets
            .known(ns, &names::pod_disruption_budget(&name)),
        network_policy: caches
            .network_policies
            .known(ns, &names::network_policy(&name)),
        ingress: caches.ingresses.known(ns, &names::ingress(&name)),
        statefulset: caches.statefulsets.known(ns, &names::statefulset(&name)),
        backup_service_account: caches
            .service_accounts
            .known(ns, &names::backup_service_account(&name)),
        restore_service_account: caches
            .service_accounts
            .known(ns, &names::restore_service_account(&name)),
        upgrade_service_account: caches
            .service_accounts
            .known(ns, &names::upgrade_service_account(&name)),
        operation_job: operation_job
            .map(|job| caches.jobs.known(ns, job))
            .unwrap_or(Known::Absent),
    };
    let operation_job = operation_job.and_then(|job| caches.jobs.get(ns, job));
    let statefulset = caches.statefulsets.get(ns, &names::statefulset(&name));
    // The cluster's Jobs' pods carry its label too; the OpenBao pods are
    // the others.
    let (job_pods, mut pods): (Vec<_>, Vec<_>) = caches
        .pods
        .labelled(ns, labels::CLUSTER, &name)
        .into_iter()
        .partition(|p| p.labels().contains_key(crate::stores::JOB_NAME_LABEL));
    pods.sort_by_key(|p| p.name_any());

    let spec = &cluster.spec;
    let operator_tls = spec.tls.mode == TlsMode::OperatorManaged;
    let unseal_name = names::unseal_secret(&name);
    let secrets = Secrets {
        unseal: caches.secrets.get(ns, &unseal_name),
        tls_ca: if operator_tls {
            secret_data(ctx, state, ns, &names::tls_ca_secret(&name)).await?
        } else {
            None
        },
        tls_server: if operator_tls {
            secret_data(ctx, state, ns, &names::tls_server_secret(&name)).await?
        } else {
            None
        },
        external_tls: match (&spec.tls.mode, &spec.tls.external_secret_name) {
            (TlsMode::External, Some(secret)) => secret_data(ctx, state, ns, secret).await?,
            _ => None,
        },
        root_token_stored: matches!(
            caches.secrets.known(ns, &names::root_token_secret(&name)),
            Known::At(_)
        ),
    };
    let restores = caches.restores.filtered(ns, |r| r.spec.cluster == name);
    Ok(Snapshot {
        name,
        namespace,
        objects,
        statefulset,
        pods,
        job_pods,
        operation_job,
        restores,
        secrets,
        openbao: OpenBaoView::default(),
    })
}

/// A Secret's data, read again only when its resourceVersion moved.
async fn secret_data(
    ctx: &Context,
    state: &ClusterState,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<Secret>>, ReconcileError> {
    let known = ctx.caches.secrets.known(namespace, name);
    if known == Known::Absent {
        lock(&state.secrets).remove(name);
        return Ok(None);
    }
    if let Known::At(version) = &known
        && let Some((seen, secret)) = lock(&state.secrets).get(name)
        && seen == version
    {
        return Ok(Some(secret.clone()));
    }
    let Some(mut secret) = ctx.applier.get::<Secret>(namespace, name).await? else {
        lock(&state.secrets).remove(name);
        return Ok(None);
    };
    crate::stores::strip_metadata(&mut secret.metadata);
    let secret = Arc::new(secret);
    if let Some(version) = secret.resource_version() {
        lock(&state.secrets).insert(name.to_owned(), (version, secret.clone()));
    }
    Ok(Some(secret))
}

/// The CA bundle the pods' certificates chain to, as stored.
fn ca_bundle(cluster: &OpenBaoCluster, secrets: &Secrets) -> Option<String> {
    let secret = match cluster.spec.tls.mode {
        TlsMode::OperatorManaged => secrets.tls_server.as_ref(),
        TlsMode::External => secrets.external_tls.as_ref(),
        TlsMode::Acme => None,
    }?;
    secret_text(secret, TLS_CA).filter(|pem| !pem.is_empty())
}

/// One field of a Secret as text.
pub fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// The cluster's connection for the CA it has now, with the controller's
/// login for this cluster (tokens minted for its namespace, name and uid);
/// built when first needed and again only when the CA changes.
pub async fn connection(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    state: &ClusterState,
    snapshot: &Snapshot,
) -> Result<Arc<ClusterConnection>, BaoError> {
    let address = ClusterAddress {
        name: snapshot.name.clone(),
        namespace: snapshot.namespace.clone(),
        ca_pem: ca_bundle(cluster, &snapshot.secrets),
    };
    let uid = cluster.metadata.uid.as_deref().ok_or_else(|| {
        BaoError::Config(
            "the OpenBaoCluster has no metadata.uid, which the controller's per-cluster token names; reconcile an object read from the API server".into(),
        )
    })?;
    let audience =
        lifecycle_types::identities::controller_audience(&address.namespace, &address.name, uid);
    // After a restore from another cluster, its operator role's audience.
    let previous = cluster
        .status
        .as_ref()
        .and_then(|s| s.restored_from.as_ref())
        .and_then(|r| r.previous_controller_audience.clone());
    if let Some(kept) = lock(&state.connection).clone()
        && *kept.address() == address
        && kept.audience() == audience
    {
        kept.set_previous_audience(previous);
        return Ok(kept);
    }
    let built = ctx.connector.connect_cluster(address, uid).await?;
    built.set_previous_audience(previous);
    *lock(&state.connection) = Some(built.clone());
    Ok(built)
}

/// The OpenBao half of the snapshot: health of every running pod, and
/// Raft and autopilot through the active node once initialized.
pub async fn openbao(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    state: &ClusterState,
    snapshot: &mut Snapshot,
) -> Option<Arc<ClusterConnection>> {
    let set = snapshot.statefulset_name();
    let count = snapshot.live_replicas().max(cluster.spec.replicas).max(0) as usize;
    let revision = snapshot
        .statefulset
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());
    let any_running = snapshot.pods.iter().any(|p| pod_running(p));
    let connection = if any_running {
        match connection(cluster, ctx, state, snapshot).await {
            Ok(connection) => Some(connection),
            Err(error) => {
                tracing::warn!(cluster = %snapshot.name, %error, "cannot build the OpenBao client");
                None
            }
        }
    } else {
        None
    };
    let connection_ref = connection.as_ref();
    let views = futures::future::join_all((0..count).map(|ordinal| {
        let pod_name = format!("{set}-{ordinal}");
        let pod = snapshot.pod(&pod_name);
        let revision = revision.as_deref();
        async move {
            let running = pod.is_some_and(pod_running);
            let health = match (running, connection_ref) {
                (true, Some(connection)) => Some(match connection.pod(&pod_name) {
                    Ok(client) => client.health().await,
                    Err(error) => Err(error),
                }),
                _ => None,
            };
            let (health, unanswered) = match health {
                Some(Ok(health)) => (Some(health), None),
                Some(Err(error)) => (None, Some(error.to_string())),
                None => (None, None),
            };
            let view = PodView {
                name: pod_name.clone(),
                exists: pod.is_some(),
                running,
                ready: pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p)),
                current: match (pod, revision) {
                    (Some(p), Some(rev)) => runs_revision(p, rev),
                    _ => false,
                },
                restarts: pod.map(restarts).unwrap_or(0),
                version: health
                    .as_ref()
                    .map(|h| h.body.version.clone())
                    .filter(|v| !v.is_empty()),
                health: health.map(|h| h.state),
            };
            (view, unanswered.map(|why| (pod_name, why)))
        }
    }))
    .await;
    let mut view = OpenBaoView::default();
    for (pod, unanswered) in views {
        view.pods.push(pod);
        view.unanswered.extend(unanswered);
    }
    let initialized = cluster.status.as_ref().is_some_and(|s| s.initialized);
    if let (true, Some(connection)) = (initialized, connection_ref) {
        read_raft(connection, &mut view).await;
    }
    snapshot.openbao = view;
    connection
}

/// Raft membership and autopilot settings through the active node.
async fn read_raft(connection: &ClusterConnection, view: &mut OpenBaoView) {
    let Some(active) = view
        .pods
        .iter()
        .find(|p| p.health == Some(HealthState::Active))
        .map(|p| p.name.clone())
    else {
        return;
    };
    let (client, result) = match connection.logged_in(&active).await {
        Ok(client) => {
            let read = async {
                let membership = client.membership().await?;
                let autopilot = client.autopilot_configuration().await?;
                Ok::<_, BaoError>((membership, autopilot))
            }
            .await;
            (Some(client), read)
        }
        Err(error) => (None, Err(error)),
    };
    match result {
        Ok((membership, autopilot)) => {
            view.membership = Some(membership);
            view.autopilot = Some(autopilot);
        }
        Err(error) => {
            if matches!(error, BaoError::PermissionDenied { .. }) {
                connection.forget_login();
            }
            if let Some(missing) = connection.identity_missing(client.as_ref(), &error).await {
                view.membership_error = Some((reasons::OPERATOR_IDENTITY_MISSING, missing));
                return;
            }
            let audience = connection.audience();
            view.membership_error = Some((
                reasons::MISSING_CAPABILITY,
                format!(
                    "the controller cannot read Raft state on {active} with its JWT role: {error}. Check that auth/jwt/role/openbao-operator exists with policy openbao-operator (created at bootstrap), is bound to audience {audience} and that the controller may create tokens for its own ServiceAccount (serviceaccounts/token)"
                ),
            ));
        }
    }
}
