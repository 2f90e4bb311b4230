//! Step 5a: initialization. Self-init clusters initialize themselves (the
//! controller only watches the bootstrap pod); a Development cluster
//! without self-init is initialized through `sys/init`, its root token is
//! stored in a Secret, and the controller's own JWT auth, policies and
//! roles are written with it, so the controller never uses the root token
//! after bootstrap.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use lifecycle_types::events::{actions, reasons};
use lifecycle_types::{OpenBaoCluster, names};
use openbao_client::{HealthState, InitRequest, Token};

use super::dereference::secret_text;
use super::snapshot::Snapshot;
use super::{ReconcileError, event};
use crate::context::Context;
use crate::openbao::ClusterConnection;
use crate::render::self_init::{KubeCa, operator_requests};
use crate::status::InitView;

/// Advances initialization: how it stands, and whether it is still in
/// progress (look again soon).
pub async fn step(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    connection: Option<&ClusterConnection>,
    snapshot: &Snapshot,
) -> Result<(InitView, bool), ReconcileError> {
    let name = &snapshot.name;
    let Some(pod) = snapshot.openbao.pods.first().cloned() else {
        return Ok((
            InitView::Waiting("waiting for the StatefulSet's first pod".into()),
            true,
        ));
    };
    let self_init = cluster.spec.self_init.enabled;
    let init = match (pod.health, connection) {
        (None, _) | (_, None) => InitView::Waiting(format!(
            "waiting for the bootstrap pod {} to answer",
            pod.name
        )),
        (Some(HealthState::Uninitialized), _) if self_init => {
            if pod.restarts > 0 {
                InitView::Failed(format!(
                    "the bootstrap pod {} restarted before self-init finished: a self-init request failed and OpenBao refuses to start on that storage again. Read the pod's log, fix spec.selfInit.requests, then delete PersistentVolumeClaim data-{}-0 and the pod to start over",
                    pod.name,
                    names::statefulset(name)
                ))
            } else {
                InitView::Waiting(format!("self-init is running on {}", pod.name))
            }
        }
        // A root token Secret before sys/init is an earlier cluster's of
        // the same name (kept by its deletion policy): the new root token
        // could not be stored, and OpenBao shows a root token only once.
        (Some(HealthState::Uninitialized), Some(_)) if snapshot.secrets.root_token_stored => {
            InitView::Failed(format!(
                "Secret {ns}/{secret} holds the root token of an earlier cluster named {name}, so the root token of this one could not be stored; the controller does not initialize {pod} until it is gone. Delete that Secret (keep a copy first if you restore that cluster's backup with spec.restoreFrom: it is the restored data's root token)",
                ns = snapshot.namespace,
                secret = names::root_token_secret(name),
                pod = pod.name,
            ))
        }
        (Some(HealthState::Uninitialized), Some(connection)) => {
            operator_init(cluster, ctx, connection, &pod.name).await?;
            InitView::Waiting(format!(
                "initialized {} through sys/init; waiting for it to unseal",
                pod.name
            ))
        }
        (Some(HealthState::Active), _) if self_init => InitView::Done { by_operator: false },
        (Some(HealthState::Active), Some(connection)) => {
            match operator_bootstrap(cluster, ctx, connection, snapshot, &pod.name).await {
                Ok(view) => view,
                Err(error) => InitView::Waiting(format!(
                    "writing the operator's JWT auth, policies and roles on {} failed: {error}; retrying",
                    pod.name
                )),
            }
        }
        (Some(state), _) => InitView::Waiting(format!(
            "the bootstrap pod {} answers {state:?}; waiting for it to become active",
            pod.name
        )),
    };
    if let InitView::Done { .. } = init {
        event(
            ctx,
            cluster,
            EventType::Normal,
            reasons::INITIALIZED,
            actions::INITIALIZE,
            "the cluster is initialized; scaling to spec.replicas",
        )
        .await;
        return Ok((init, true));
    }
    // Poll only while OpenBao answers and initialization is under way; a
    // pod that is not running yet triggers a reconcile through the pod watch
    // when it starts.
    let busy = pod.health.is_some() && !matches!(init, InitView::Failed(_));
    Ok((init, busy))
}

/// `sys/init` with one recovery share (auto-unseal), root token to a Secret.
async fn operator_init(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    connection: &ClusterConnection,
    pod: &str,
) -> Result<(), ReconcileError> {
    let client = connection
        .pod(pod)
        .map_err(|source| ReconcileError::OpenBao {
            pod: pod.to_owned(),
            source,
        })?;
    let response = client
        .init(&InitRequest {
            recovery_shares: Some(1),
            recovery_threshold: Some(1),
            ..InitRequest::default()
        })
        .await
        .map_err(|source| ReconcileError::OpenBao {
            pod: pod.to_owned(),
            source,
        })?;
    let secret = crate::render::secrets::root_token_secret(cluster, &response.root_token)?;
    ctx.applier.create_if_missing(&secret).await?;
    event(
        ctx,
        cluster,
        EventType::Warning,
        reasons::ROOT_TOKEN_STORED,
        actions::INITIALIZE,
        &format!(
            "initialized through sys/init (Development): the root token is in Secret {}; revoke it and use spec.selfInit for anything beyond development",
            names::root_token_secret(&cluster.name_any())
        ),
    )
    .await;
    Ok(())
}

/// The controller's JWT auth, policies and roles, written with the root
/// token. Idempotent: the auth method is enabled only when absent, the rest
/// are plain writes.
async fn operator_bootstrap(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    connection: &ClusterConnection,
    snapshot: &Snapshot,
    pod: &str,
) -> Result<InitView, ReconcileError> {
    let namespace = &snapshot.namespace;
    let secret_name = names::root_token_secret(&snapshot.name);
    // Read only here, once, while bootstrapping.
    let stored = if snapshot.secrets.root_token_stored {
        ctx.applier.get::<Secret>(namespace, &secret_name).await?
    } else {
        None
    };
    let Some(secret) = stored else {
        return Ok(InitView::Failed(format!(
            "{pod} is initialized but Secret {namespace}/{secret_name} with the root token does not exist (the operator stopped between sys/init and storing it, or the Secret was deleted). The controller cannot bootstrap its access: delete the cluster's PersistentVolumeClaims and pods to start over, or use spec.selfInit"
        )));
    };
    let token = secret_text(&secret, names::ROOT_TOKEN).unwrap_or_default();
    let fail = |source| ReconcileError::OpenBao {
        pod: pod.to_owned(),
        source,
    };
    let root = connection
        .pod(pod)
        .map_err(fail)?
        .with_token(Token::new(token));
    let mut inputs = crate::render::Inputs::in_pod(
        &ctx.settings.operator_namespace,
        &ctx.settings.service_account_issuer,
    );
    inputs.initialized = true;
    inputs.jwks_url = ctx.settings.jwks_url.clone();
    // A controller killed mid-way runs these writes again: enabling a
    // mount twice fails, so mounts that exist are skipped.
    let mut existing = Vec::new();
    for listing in ["sys/auth", "sys/mounts"] {
        let mounts = root.read(listing).await.map_err(fail)?.unwrap_or_default();
        existing.push((format!("{listing}/"), mounts));
    }
    let ca = KubeCa::Pem(ctx.settings.kube_ca_pem.clone());
    for (_, requests) in operator_requests(cluster, &inputs, &ca)? {
        for request in requests {
            let enabled = existing.iter().any(|(prefix, mounts)| {
                request
                    .path
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|name| {
                        let mount = format!("{name}/");
                        // Listed at the top level and under `data`, depending on version.
                        mounts.get(&mount).is_some() || mounts["data"].get(&mount).is_some()
                    })
            });
            if enabled {
                continue;
            }
            root.write(&request.path, &request.data)
                .await
                .map_err(fail)?;
        }
    }
    Ok(InitView::Done { by_operator: true })
}
