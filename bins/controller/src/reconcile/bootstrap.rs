//! Step 5a: initialization. Self-init clusters initialize themselves (the
//! controller only watches the bootstrap pod); a Development cluster
//! without self-init is initialized through `sys/init`, its root token is
//! stored in a Secret, and the controller's own JWT auth, policies and
//! roles are written with it, so the controller never uses the root token
//! after bootstrap.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use lifecycle_types::{OpenBaoCluster, names};
use openbao_client::{HealthState, InitRequest, Token};

use super::secrets::{Material, secret_text};
use super::{ReconcileError, event};
use crate::context::Context;
use crate::reconcile::observe::address;
use crate::render::self_init::{KubeCa, operator_requests};
use crate::status::{InitView, Observation};

/// Advances initialization; true while it is still in progress.
pub async fn step(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    material: &Material,
    seen: &mut Observation,
) -> Result<bool, ReconcileError> {
    let name = cluster.name_any();
    let Some(pod) = seen.pods.first().cloned() else {
        return Ok(true);
    };
    let self_init = cluster.spec.self_init.enabled;
    seen.init = match pod.health {
        None => InitView::Waiting(format!(
            "waiting for the bootstrap pod {} to answer",
            pod.name
        )),
        Some(HealthState::Uninitialized) if self_init => {
            if pod.restarts > 0 {
                InitView::Failed(format!(
                    "the bootstrap pod {} restarted before self-init finished: a self-init request failed and OpenBao refuses to start on that storage again. Read the pod's log, fix spec.selfInit.requests, then delete PersistentVolumeClaim data-{}-0 and the pod to start over",
                    pod.name,
                    names::statefulset(&name)
                ))
            } else {
                InitView::Waiting(format!("self-init is running on {}", pod.name))
            }
        }
        Some(HealthState::Uninitialized) => {
            operator_init(cluster, ctx, material, &pod.name).await?;
            InitView::Waiting(format!(
                "initialized {} through sys/init; waiting for it to unseal",
                pod.name
            ))
        }
        Some(HealthState::Active) if self_init => InitView::Done { by_operator: false },
        Some(HealthState::Active) => {
            match operator_bootstrap(cluster, ctx, material, &pod.name).await {
                Ok(view) => view,
                Err(error) => InitView::Waiting(format!(
                    "writing the operator's JWT auth, policies and roles on {} failed: {error}; retrying",
                    pod.name
                )),
            }
        }
        Some(state) => InitView::Waiting(format!(
            "the bootstrap pod {} answers {state:?}; waiting for it to become active",
            pod.name
        )),
    };
    if matches!(seen.init, InitView::Done { .. }) {
        seen.root_token_stored = ctx
            .applier
            .get::<Secret>(
                &cluster.namespace().unwrap_or_default(),
                &names::root_token_secret(&name),
            )
            .await?
            .is_some();
        seen.init = InitView::Done {
            by_operator: seen.root_token_stored,
        };
        event(
            ctx,
            cluster,
            EventType::Normal,
            "Initialized",
            "Initialize",
            "the cluster is initialized; scaling to spec.replicas",
        )
        .await;
        return Ok(true);
    }
    // Poll only while OpenBao answers and initialization is under way; a
    // pod that is not running yet triggers a reconcile through the pod watch
    // when it starts.
    Ok(pod.health.is_some() && !matches!(seen.init, InitView::Failed(_)))
}

/// `sys/init` with one recovery share (auto-unseal), root token to a Secret.
async fn operator_init(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    material: &Material,
    pod: &str,
) -> Result<(), ReconcileError> {
    let client = ctx
        .openbao
        .pod(&address(cluster, material), pod)
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
        "RootTokenStored",
        "Initialize",
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
    material: &Material,
    pod: &str,
) -> Result<InitView, ReconcileError> {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let secret_name = names::root_token_secret(&name);
    let Some(secret) = ctx.applier.get::<Secret>(&namespace, &secret_name).await? else {
        return Ok(InitView::Failed(format!(
            "{pod} is initialized but Secret {namespace}/{secret_name} with the root token does not exist (the operator stopped between sys/init and storing it, or the Secret was deleted). The controller cannot bootstrap its access: delete the cluster's PersistentVolumeClaims and pods to start over, or use spec.selfInit"
        )));
    };
    let token = secret_text(&secret, names::ROOT_TOKEN).unwrap_or_default();
    let fail = |source| ReconcileError::OpenBao {
        pod: pod.to_owned(),
        source,
    };
    let root = ctx
        .openbao
        .pod(&address(cluster, material), pod)
        .map_err(fail)?
        .with_token(Token::new(token));
    let mut inputs = crate::render::Inputs::in_pod(
        &ctx.settings.operator_namespace,
        &ctx.settings.service_account_issuer,
    );
    inputs.initialized = true;
    inputs.jwks_url = ctx.settings.jwks_url.clone();
    let mounts = root
        .read("sys/auth")
        .await
        .map_err(fail)?
        .unwrap_or_default();
    let ca = KubeCa::Pem(ctx.settings.kube_ca_pem.clone());
    for (_, requests) in operator_requests(cluster, &inputs, &ca)? {
        for request in requests {
            if request.path.starts_with("sys/auth/") {
                let mount = format!("{}/", request.path.trim_start_matches("sys/auth/"));
                // Listed at the top level and under `data`, depending on version.
                if mounts.get(&mount).is_some() || mounts["data"].get(&mount).is_some() {
                    continue;
                }
            }
            root.write(&request.path, &request.data)
                .await
                .map_err(fail)?;
        }
    }
    Ok(InitView::Done { by_operator: true })
}
