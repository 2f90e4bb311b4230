//! Wiring: the `kube::runtime::Controller` with its watches, run until
//! shutdown. The watches that fill the caches (see [`crate::stores`]) are
//! also the controller's triggers: a deleted Service or ConfigMap triggers
//! a reconcile of its owner at once, a pod its cluster by label, a Secret
//! every cluster that reads it. A deleted cluster's state is dropped as
//! its deletion is seen.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use lifecycle_types::{OpenBaoCluster, labels, names};

use crate::context::{Context, ScopeTriggers};
use crate::reconcile::{error_policy, forget, reconcile};

/// Clusters reconciled at the same time.
pub const CONCURRENCY: u16 = 8;

/// Runs the controller until `shutdown` resolves: one `Controller` per
/// watched scope (every namespace, or each of `--watch-namespaces`), so no
/// watch, not even the clusters', reaches beyond the scope.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let Some(triggers) = ctx.take_triggers() else {
        tracing::error!("the controller's watches were already taken; run() was called twice");
        return;
    };
    ctx.check_admission_policies().await;
    let shutdown = shutdown.shared();
    let scopes = ctx.settings.scope.keys();
    let runs = scopes
        .into_iter()
        .zip(triggers)
        .map(|(namespace, triggers)| {
            run_scope(ctx.clone(), namespace, triggers, shutdown.clone()).boxed()
        });
    let tenants = ctx
        .tenancy
        .is_some()
        .then(|| crate::tenants::run(ctx.clone(), shutdown.clone()).boxed());
    futures::future::join_all(runs.chain(tenants)).await;
}

async fn run_scope(
    ctx: Arc<Context>,
    namespace: Option<String>,
    triggers: ScopeTriggers,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client().clone();
    let api: Api<OpenBaoCluster> = match &namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    let (clusters, writer) = reflector::store::<OpenBaoCluster>();
    let on_event = {
        let ctx = ctx.clone();
        let clusters = clusters.clone();
        move |event: &Result<watcher::Event<OpenBaoCluster>, watcher::Error>| match event {
            Ok(watcher::Event::Delete(cluster)) => forget(&ctx, &key(cluster)),
            // After a relist, deletions missed while disconnected.
            Ok(watcher::Event::InitDone) => {
                for gone in ctx.clusters.keys().into_iter().filter(|(ns, name)| {
                    namespace.as_deref().is_none_or(|scope| scope == ns)
                        && clusters.get(&ObjectRef::new(name).within(ns)).is_none()
                }) {
                    forget(&ctx, &gone);
                }
            }
            _ => {}
        }
    };
    let cluster_stream = watcher(api, watcher::Config::default().streaming_lists())
        .default_backoff()
        // Nothing reads a cluster's annotations, and kubectl's
        // last-applied one holds a second copy of the whole spec.
        .modify(|cluster: &mut OpenBaoCluster| {
            cluster.metadata.managed_fields = None;
            cluster.metadata.annotations = None;
        })
        .reflect(writer)
        .inspect(on_event)
        .touched_objects();
    let controller = Controller::for_stream(cluster_stream, clusters.clone());
    wire(controller, triggers, clusters)
        // A bounded number of clusters in flight keeps peak memory flat
        // when many clusters need a reconcile at once (start-up, resync).
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile trigger failed");
            }
        })
        .await;
}

fn key(cluster: &OpenBaoCluster) -> (String, String) {
    (cluster.namespace().unwrap_or_default(), cluster.name_any())
}

/// Every cache's watch as a trigger.
fn wire(
    controller: Controller<OpenBaoCluster>,
    triggers: ScopeTriggers,
    clusters: Store<OpenBaoCluster>,
) -> Controller<OpenBaoCluster> {
    let ScopeTriggers {
        statefulsets,
        pods,
        secrets,
        services,
        config_maps,
        service_accounts,
        role_bindings,
        pod_disruption_budgets,
        network_policies,
        ingresses,
        jobs,
        restores,
        tenants,
    } = triggers;
    let controller = match tenants {
        // A tenant's change (onboarded, offboarded) concerns the clusters
        // of its namespace.
        Some(tenants) => {
            let clusters = clusters.clone();
            controller.watches_stream(tenants, move |tenant| {
                let namespace = tenant.spec.namespace.clone();
                clusters
                    .state()
                    .into_iter()
                    .filter(|c| c.namespace().as_deref() == Some(namespace.as_str()))
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            })
        }
        None => controller,
    };
    controller
        .owns_stream(statefulsets)
        .owns_stream(services)
        .owns_stream(config_maps)
        .owns_stream(service_accounts)
        .owns_stream(role_bindings)
        .owns_stream(pod_disruption_budgets)
        .owns_stream(network_policies)
        .owns_stream(ingresses)
        .owns_stream(jobs)
        .watches_stream(restores, |restore| {
            Some(ObjectRef::new(&restore.spec.cluster).within(&restore.namespace()?))
        })
        .watches_stream(pods, |pod| {
            let cluster = pod.labels().get(labels::CLUSTER)?.clone();
            Some(ObjectRef::new(&cluster).within(&pod.namespace()?))
        })
        // Every Secret a cluster uses, whoever owns it: the operator's keys
        // and certificates, and the user's (an External certificate that
        // cert-manager renews, the Transit token, KMS credentials).
        .watches_stream(secrets, move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            clusters
                .state()
                .into_iter()
                .filter(|c| c.namespace() == namespace && uses_secret(c, &name))
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
}

/// Whether the cluster reads the Secret `name` (in its own namespace).
pub fn uses_secret(cluster: &OpenBaoCluster, name: &str) -> bool {
    let own = cluster.name_any();
    let spec = &cluster.spec;
    let managed = [
        names::unseal_secret(&own),
        names::tls_ca_secret(&own),
        names::tls_server_secret(&own),
        names::root_token_secret(&own),
    ];
    managed.iter().any(|m| m == name)
        || spec.tls.external_secret_name.as_deref() == Some(name)
        || spec.unseal.credentials_secret_ref.as_deref() == Some(name)
        || spec
            .unseal
            .transit
            .as_ref()
            .is_some_and(|t| t.token_secret_ref == name || t.ca_secret_ref.as_deref() == Some(name))
        || spec
            .self_init
            .requests
            .iter()
            .flat_map(|r| &r.data_from)
            .any(|f| f.secret_key_ref.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn managed_and_referenced_secrets_trigger_their_cluster_only() {
        let mut cluster = fixtures::development();
        assert!(uses_secret(&cluster, &names::tls_server_secret("dev")));
        assert!(uses_secret(&cluster, &names::unseal_secret("dev")));
        assert!(!uses_secret(&cluster, "cert-manager-cert"));
        assert!(!uses_secret(&cluster, &names::tls_server_secret("other")));
        cluster.spec.tls.external_secret_name = Some("cert-manager-cert".into());
        assert!(uses_secret(&cluster, "cert-manager-cert"));
    }
}
