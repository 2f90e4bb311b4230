//! The multi-tenant install (`--multi-tenant`): the controller's
//! ClusterRole reads no Secret anywhere. A platform team onboards a
//! namespace with an `OpenBaoTenant`; this module's controller binds the
//! fixed ClusterRole `openbao-operator-tenant` to the operator there (see
//! [`crate::render::tenant`]), adds the quota and limits the tenant asks
//! for, and starts the namespace's Secret watch. OpenBaoClusters in a
//! namespace without a tenant get `Degraded`/`NamespaceNotOnboarded` and
//! no objects ([`Tenancy::onboarded`]).
//!
//! A tenant's finalizer holds it while OpenBaoClusters live in its
//! namespace, so the operator keeps the access it needs to finish with
//! them; afterwards garbage collection removes what the tenant made.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use lifecycle_types::conditions::{Condition, ConditionStatus, upsert};
use lifecycle_types::tenant::{FINALIZER, tenant_conditions, validate_tenant};
use lifecycle_types::{OpenBaoCluster, OpenBaoTenant, OpenBaoTenantStatus};

use crate::apply::{ApplyError, FIELD_MANAGER};
use crate::context::Context;
use crate::render::tenant::{self as render, TenantObjects};
use crate::stores::{self, Cache, Trigger};

/// The tenants as the cluster reconcile sees them, and the Secret watches
/// of the onboarded namespaces.
pub struct Tenancy {
    tenants: Store<OpenBaoTenant>,
    secrets: SecretWatches,
}

impl std::fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenancy").finish_non_exhaustive()
    }
}

impl Tenancy {
    /// The tenancy, the tenants' watch (which fills it and triggers the
    /// clusters of a tenant's namespace) and the stream of every onboarded
    /// namespace's Secret events (the clusters' Secret trigger).
    pub fn new(
        client: &kube::Client,
        secrets: &Cache<PartialObjectMeta<Secret>>,
    ) -> (
        Self,
        Trigger<OpenBaoTenant>,
        Trigger<PartialObjectMeta<Secret>>,
    ) {
        let (tenants, writer) = reflector::store();
        let tenant_trigger = watcher(
            Api::<OpenBaoTenant>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|tenant: &mut OpenBaoTenant| tenant.metadata.managed_fields = None)
        .reflect(writer)
        .touched_objects()
        .boxed();
        let (sender, receiver) = mpsc::unbounded();
        let tenancy = Self {
            tenants,
            secrets: SecretWatches {
                client: client.clone(),
                cache: secrets.clone(),
                sender,
                running: Mutex::default(),
            },
        };
        (tenancy, tenant_trigger, receiver.boxed())
    }

    /// Whether the operator may manage clusters in `namespace`: its tenant
    /// has bound the operator's role there (and still does while it waits
    /// for the clusters to go); `None` until the tenants are listed. Starts
    /// the namespace's Secret watch.
    pub fn onboarded(&self, namespace: &str) -> Option<Result<(), String>> {
        if !stores::is_ready(&self.tenants) {
            return None;
        }
        let Some(tenant) = self.tenants.get(&ObjectRef::new(namespace)) else {
            return Some(Err(not_onboarded_message(namespace)));
        };
        if !serves_clusters(&tenant) {
            return Some(Err(tenant_not_ready_message(&tenant)));
        }
        self.secrets.ensure(namespace);
        Some(Ok(()))
    }
}

/// The tenant's RoleBinding is in place: onboarded, or deleting but held
/// for the clusters that remain.
pub fn serves_clusters(tenant: &OpenBaoTenant) -> bool {
    tenant
        .status
        .as_ref()
        .and_then(|s| lifecycle_types::conditions::find(&s.conditions, tenant_conditions::READY))
        .is_some_and(|ready| {
            ready.status == ConditionStatus::True
                || ready.reason == tenant_conditions::CLUSTERS_REMAIN
        })
}

/// The message of `Degraded`/`NamespaceNotOnboarded`.
pub fn not_onboarded_message(namespace: &str) -> String {
    format!(
        "namespace {namespace} is not onboarded (the operator runs in the multi-tenant install mode and may not read Secrets here): a platform admin creates an OpenBaoTenant named {namespace} with spec.namespace: {namespace}; nothing is created until then"
    )
}

/// The message when the namespace's tenant exists but has not bound the
/// operator's role (yet): its own Ready condition says why.
fn tenant_not_ready_message(tenant: &OpenBaoTenant) -> String {
    let name = tenant.name_any();
    let why = tenant
        .status
        .as_ref()
        .and_then(|s| lifecycle_types::conditions::find(&s.conditions, tenant_conditions::READY))
        .map(|ready| format!("{}: {}", ready.reason, ready.message))
        .unwrap_or_else(|| "the operator has not processed it yet".into());
    format!(
        "namespace {} is not onboarded yet: OpenBaoTenant {name} is not Ready ({why}); see `kubectl get openbaotenant {name} -o yaml`",
        tenant.spec.namespace
    )
}

/// One metadata watch of Secrets per onboarded namespace, started when a
/// cluster there is first reconciled, all feeding one trigger stream.
struct SecretWatches {
    client: kube::Client,
    cache: Cache<PartialObjectMeta<Secret>>,
    sender: mpsc::UnboundedSender<Result<PartialObjectMeta<Secret>, watcher::Error>>,
    running: Mutex<BTreeMap<String, tokio::task::AbortHandle>>,
}

impl SecretWatches {
    fn ensure(&self, namespace: &str) {
        let mut running = crate::clusters::lock(&self.running);
        if running.contains_key(namespace) {
            return;
        }
        let config = watcher::Config::default().streaming_lists();
        let mut events = stores::metadata(&self.cache, &self.client, Some(namespace), &config);
        let mut sender = self.sender.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if sender.send(event).await.is_err() {
                    break;
                }
            }
        });
        tracing::info!(namespace, "watching the onboarded namespace's Secrets");
        running.insert(namespace.to_owned(), task.abort_handle());
    }

    fn stop(&self, namespace: &str) {
        if let Some(task) = crate::clusters::lock(&self.running).remove(namespace) {
            task.abort();
            self.cache.forget(namespace);
        }
    }
}

/// Why a tenant's reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{0}")]
    Render(#[from] crate::render::RenderError),
    #[error(
        "cannot {action} (check the operator's ClusterRole openbao-operator-tenants): {source}"
    )]
    Api {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    /// Deleting waits for the namespace's clusters (not a failure).
    #[error("{0}")]
    ClustersRemain(String),
}

/// Runs the tenants' controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client().clone();
    // A cluster created or deleted changes its tenant's status and can
    // release a deleting tenant; tenants are named after their namespace.
    Controller::new(
        Api::<OpenBaoTenant>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<OpenBaoCluster>::all(client),
        watcher::Config::default(),
        |cluster| cluster.namespace().map(|ns| ObjectRef::new(&ns)),
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "tenant reconcile trigger failed");
        }
    })
    .await;
}

async fn reconcile(
    tenant: Arc<OpenBaoTenant>,
    ctx: Arc<Context>,
) -> Result<Action, finalizer::Error<TenantError>> {
    let api = Api::<OpenBaoTenant>::all(ctx.client().clone());
    finalizer::finalizer(&api, FINALIZER, tenant, |event| async {
        match event {
            Event::Apply(tenant) => onboard(&tenant, &ctx).await,
            Event::Cleanup(tenant) => offboard(&tenant, &ctx).await,
        }
    })
    .await
}

fn error_policy(
    tenant: Arc<OpenBaoTenant>,
    error: &finalizer::Error<TenantError>,
    ctx: Arc<Context>,
) -> Action {
    match error {
        finalizer::Error::CleanupFailed(TenantError::ClustersRemain(_)) => {}
        error => tracing::warn!(tenant = %tenant.name_any(), %error, "tenant reconcile failed"),
    }
    Action::requeue(ctx.settings.progress_interval.max(Duration::from_secs(2)))
}

async fn onboard(tenant: &OpenBaoTenant, ctx: &Context) -> Result<Action, TenantError> {
    let namespace = tenant.spec.namespace.clone();
    let clusters = clusters_in(ctx, &namespace).await?;
    let errors = validate_tenant(
        &tenant.name_any(),
        &tenant.spec,
        &ctx.settings.operator_namespace,
    );
    if !errors.is_empty() {
        let message = errors.join("; ");
        write_status(
            ctx,
            tenant,
            False(tenant_conditions::INVALID_TENANT),
            &message,
            &[],
            &clusters,
        )
        .await?;
        return Ok(Action::await_change());
    }
    match apply_objects(tenant, ctx).await {
        Ok(made) => {
            let message = format!(
                "the operator manages OpenBaoClusters in namespace {namespace} through RoleBinding {namespace}/{} (ClusterRole {})",
                render::ROLE_BINDING,
                render::TENANT_CLUSTER_ROLE
            );
            write_status(
                ctx,
                tenant,
                True(tenant_conditions::ONBOARDED),
                &message,
                &made,
                &clusters,
            )
            .await?;
            Ok(Action::requeue(ctx.settings.resync))
        }
        Err(error) => {
            let message = error.to_string();
            write_status(
                ctx,
                tenant,
                False(tenant_conditions::APPLY_FAILED),
                &message,
                &[],
                &clusters,
            )
            .await?;
            Err(error)
        }
    }
}

/// Applies the binding first: the quota and limits are written through it.
async fn apply_objects(tenant: &OpenBaoTenant, ctx: &Context) -> Result<Vec<String>, TenantError> {
    let settings = &ctx.settings;
    let namespace = &tenant.spec.namespace;
    let TenantObjects {
        role_binding,
        quota,
        limits,
    } = render::objects(
        tenant,
        &settings.operator_namespace,
        &settings.service_account,
    )?;
    ctx.applier.apply(&role_binding).await?;
    let mut made = vec![format!("RoleBinding/{}", render::ROLE_BINDING)];
    made.extend(apply_or_remove::<ResourceQuota>(ctx, namespace, quota).await?);
    made.extend(apply_or_remove::<LimitRange>(ctx, namespace, limits).await?);
    Ok(made)
}

/// Applies an optional object of the tenant (`Kind/name` when made), or
/// deletes it when the spec no longer asks for it.
async fn apply_or_remove<K>(
    ctx: &Context,
    namespace: &str,
    object: Option<K>,
) -> Result<Option<String>, TenantError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&());
    match object {
        Some(object) => {
            ctx.applier.apply(&object).await?;
            Ok(Some(format!("{kind}/{}", render::LIMITS)))
        }
        None => {
            ctx.applier.delete::<K>(namespace, render::LIMITS).await?;
            Ok(None)
        }
    }
}

async fn offboard(tenant: &OpenBaoTenant, ctx: &Context) -> Result<Action, TenantError> {
    let namespace = &tenant.spec.namespace;
    let clusters = clusters_in(ctx, namespace).await?;
    if !clusters.is_empty() {
        let message = format!(
            "deleting: namespace {namespace} still has OpenBaoClusters {}; delete them first (the operator keeps its access here until they are gone)",
            clusters.join(", ")
        );
        let made = tenant
            .status
            .as_ref()
            .map(|s| s.objects.clone())
            .unwrap_or_default();
        write_status(
            ctx,
            tenant,
            False(tenant_conditions::CLUSTERS_REMAIN),
            &message,
            &made,
            &clusters,
        )
        .await?;
        return Err(TenantError::ClustersRemain(message));
    }
    if let Some(tenancy) = &ctx.tenancy {
        tenancy.secrets.stop(namespace);
    }
    tracing::info!(namespace = %namespace, "tenant offboarded; garbage collection removes its RoleBinding, quota and limits");
    Ok(Action::await_change())
}

async fn clusters_in(ctx: &Context, namespace: &str) -> Result<Vec<String>, TenantError> {
    let list = Api::<OpenBaoCluster>::namespaced(ctx.client().clone(), namespace)
        .list_metadata(&ListParams::default())
        .await
        .map_err(|source| TenantError::Api {
            action: "list the namespace's OpenBaoClusters",
            source,
        })?;
    let mut names: Vec<String> = list.items.iter().map(|c| c.name_any()).collect();
    names.sort();
    Ok(names)
}

/// The `Ready` condition's status and reason.
enum Ready {
    True(&'static str),
    False(&'static str),
}
use Ready::{False, True};

async fn write_status(
    ctx: &Context,
    tenant: &OpenBaoTenant,
    ready: Ready,
    message: &str,
    made: &[String],
    clusters: &[String],
) -> Result<(), TenantError> {
    let old = tenant.status.clone().unwrap_or_default();
    let mut status = OpenBaoTenantStatus {
        conditions: old.conditions.clone(),
        objects: made.to_vec(),
        clusters: clusters.to_vec(),
        cluster_count: clusters.len() as i64,
        observed_generation: tenant.meta().generation,
    };
    let (holds, reason) = match ready {
        True(reason) => (ConditionStatus::True, reason),
        False(reason) => (ConditionStatus::False, reason),
    };
    upsert(
        &mut status.conditions,
        Condition::new(
            tenant_conditions::READY,
            holds,
            reason,
            message,
            tenant.meta().generation,
        ),
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    if status == old {
        return Ok(());
    }
    ctx.applier.count_write();
    Api::<OpenBaoTenant>::all(ctx.client().clone())
        .patch_status(
            &tenant.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": OpenBaoTenant::api_version(&()),
                "kind": OpenBaoTenant::kind(&()),
                "status": status,
            })),
        )
        .await
        .map_err(|source| TenantError::Api {
            action: "write the OpenBaoTenant's status",
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_cluster_is_told_why_its_tenant_is_not_ready() {
        let mut tenant: OpenBaoTenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "openbao.org/v1alpha1", "kind": "OpenBaoTenant",
            "metadata": {"name": "team-a"}, "spec": {"namespace": "team-a"},
        }))
        .unwrap();
        assert!(!serves_clusters(&tenant));
        assert!(tenant_not_ready_message(&tenant).contains("has not processed it yet"));
        tenant.status = Some(OpenBaoTenantStatus {
            conditions: vec![Condition::new(
                tenant_conditions::READY,
                ConditionStatus::False,
                tenant_conditions::APPLY_FAILED,
                "create ResourceQuota team-a/openbao-tenant failed: quantities must match",
                None,
            )],
            ..Default::default()
        });
        let message = tenant_not_ready_message(&tenant);
        assert!(
            message
                .contains("OpenBaoTenant team-a is not Ready (ApplyFailed: create ResourceQuota"),
            "{message}"
        );
        assert!(!serves_clusters(&tenant));
        assert!(not_onboarded_message("team-b").contains("OpenBaoTenant named team-b"));
    }
}
