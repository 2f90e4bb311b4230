//! Wiring: the `kube::runtime::Controller` with its watches, run until
//! shutdown. Owned objects are watched (metadata only, filtered to the
//! operator's label), so a deleted Service or ConfigMap triggers a
//! reconcile at once; pods are watched through their cluster label.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use lifecycle_types::{OpenBaoCluster, labels, names};

use crate::context::Context;
use crate::reconcile::{error_policy, reconcile};

/// Clusters reconciled at the same time.
pub const CONCURRENCY: u16 = 8;

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client().clone();
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::APP_MANAGED_BY,
        labels::MANAGED_BY_OPERATOR
    ));
    let pods = watcher::Config::default().labels(labels::CLUSTER);

    let controller = Controller::new(
        Api::<OpenBaoCluster>::all(client.clone()),
        watcher::Config::default(),
    );
    let clusters = controller.store();
    let controller = owns::<StatefulSet>(controller, &client, &managed);
    let controller = owns::<Service>(controller, &client, &managed);
    let controller = owns::<ConfigMap>(controller, &client, &managed);
    let controller = owns::<ServiceAccount>(controller, &client, &managed);
    let controller = owns::<Role>(controller, &client, &managed);
    let controller = owns::<RoleBinding>(controller, &client, &managed);
    let controller = owns::<PodDisruptionBudget>(controller, &client, &managed);
    let controller = owns::<NetworkPolicy>(controller, &client, &managed);
    let controller = owns::<Ingress>(controller, &client, &managed);
    controller
        .watches(
            Api::<PartialObjectMeta<Pod>>::all(client.clone()),
            pods,
            |pod| {
                let cluster = pod.labels().get(labels::CLUSTER)?.clone();
                Some(ObjectRef::new(&cluster).within(&pod.namespace()?))
            },
        )
        // A bounded number of clusters in flight keeps peak memory flat
        // when many clusters need a reconcile at once (start-up, resync).
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        // Every Secret a cluster uses, whoever owns it: the operator's keys
        // and certificates, and the user's (an External certificate that
        // cert-manager renews, the Transit token, KMS credentials).
        .watches(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default(),
            move |secret| {
                let namespace = secret.namespace();
                let name = secret.name_any();
                clusters
                    .state()
                    .into_iter()
                    .filter(|c| c.namespace() == namespace && uses_secret(c, &name))
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile trigger failed");
            }
        })
        .await;
}

fn owns<K>(
    controller: Controller<OpenBaoCluster>,
    client: &kube::Client,
    config: &watcher::Config,
) -> Controller<OpenBaoCluster>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    // Metadata only: the controller reads what it needs when it reconciles,
    // so the watches cost little memory however many objects exist.
    controller.owns(
        Api::<PartialObjectMeta<K>>::all(client.clone()),
        config.clone(),
    )
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
