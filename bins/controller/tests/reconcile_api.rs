//! The controller against a real kube-apiserver and controller-manager, with
//! no pods running: the objects it renders, zero writes once converged,
//! drift repaired through watches, `paused`, truthful status, and the
//! deletion policies carried out by the garbage collector.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{NoNames, Running, apply_cluster, condition, namespace};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use lifecycle_types::conditions::types;
use lifecycle_types::{OpenBaoCluster, labels, names};
use serde_json::json;
use test_support::ControlPlane;
use test_support::wait::{poll_until, poll_until_ok};

/// Polls a yes/no check with a deadline.
async fn until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll_until(timeout, what, || {
        let pending = check();
        async move { Ok(pending.await) }
    })
    .await
}

const NS: &str = "team-a";
const WAIT: Duration = Duration::from_secs(60);

async fn cluster(client: &kube::Client, name: &str) -> OpenBaoCluster {
    Api::<OpenBaoCluster>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

/// resourceVersion of every object the operator manages for `name`, and of
/// the cluster itself.
async fn versions(client: &kube::Client, name: &str) -> BTreeMap<String, String> {
    let selector = ListParams::default().labels(&format!("{}={name}", labels::CLUSTER));
    let mut all = BTreeMap::new();
    macro_rules! collect {
        ($kind:ty) => {
            for o in Api::<$kind>::namespaced(client.clone(), NS)
                .list(&selector)
                .await
                .unwrap()
            {
                all.insert(
                    format!("{}/{}", stringify!($kind), o.name_any()),
                    o.resource_version().unwrap(),
                );
            }
        };
    }
    collect!(StatefulSet);
    collect!(Service);
    collect!(ConfigMap);
    collect!(Secret);
    collect!(ServiceAccount);
    collect!(Role);
    collect!(RoleBinding);
    collect!(NetworkPolicy);
    all.insert(
        "cluster".into(),
        cluster(client, name).await.resource_version().unwrap(),
    );
    all
}

/// A control plane with the CRDs, the tenant namespace and the controller.
async fn start() -> (ControlPlane, kube::Client, Running) {
    let plane = ControlPlane::start().await.unwrap();
    plane.install_crds().await.unwrap();
    let client = plane.client().await.unwrap();
    namespace(&client, NS).await;
    let running = Running::start(&plane, Arc::new(NoNames)).await;
    (plane, client, running)
}

#[tokio::test]
async fn objects_status_idempotence_drift_and_pause() {
    let (_plane, client, running) = start().await;

    apply_cluster(
        &client,
        NS,
        "dev",
        json!({"version": "2.7.2", "replicas": 3, "profile": "Development"}),
    )
    .await;

    // Rendered objects appear; one bootstrap replica until initialized.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let set = poll_until_ok(WAIT, "the StatefulSet", || async {
        Ok(sets.get_opt(&names::statefulset("dev")).await?)
    })
    .await
    .unwrap();
    assert_eq!(set.spec.replicas, Some(1));
    let owner = &set.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("OpenBaoCluster", "dev")
    );
    for service in [names::headless_service("dev"), names::active_service("dev")] {
        Api::<Service>::namespaced(client.clone(), NS)
            .get(&service)
            .await
            .unwrap();
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let unseal = secrets.get(&names::unseal_secret("dev")).await.unwrap();
    assert_eq!(unseal.data.unwrap()[names::UNSEAL_KEY].0.len(), 32);
    assert!(
        unseal.metadata.owner_references.is_none(),
        "Retain keeps the key"
    );
    let server_tls = secrets.get(&names::tls_server_secret("dev")).await.unwrap();
    assert!(server_tls.data.unwrap().contains_key("tls.crt"));

    // Status says what is true: nothing answers yet.
    until(WAIT, "status written", || async {
        let c = cluster(&client, "dev").await;
        c.status.as_ref().and_then(|s| s.observed_generation) == Some(1)
            && condition(&c, types::INITIALIZED)
                == Some(("False".into(), "WaitingForBootstrapPod".into()))
    })
    .await
    .unwrap();
    let c = cluster(&client, "dev").await;
    assert_eq!(
        condition(&c, types::AVAILABLE),
        Some(("False".into(), "NoActiveNode".into()))
    );
    assert_eq!(
        condition(&c, types::PRODUCTION_READY).unwrap().1,
        "DevelopmentProfile"
    );
    assert!(!c.status.as_ref().unwrap().initialized);

    // Converged: reconciles go on (the resync period is short here) and
    // write nothing.
    let settled = || async {
        let before = running.ctx.applier.writes();
        tokio::time::sleep(Duration::from_secs(5)).await;
        running.ctx.applier.writes() == before
    };
    until(WAIT, "no more writes", settled).await.unwrap();
    let before = versions(&client, "dev").await;
    let writes = running.ctx.applier.writes();
    let reconciles = reconcile_count(&running);
    until(WAIT, "three more reconciles", || async {
        reconcile_count(&running) >= reconciles + 3
    })
    .await
    .unwrap();
    assert_eq!(
        running.ctx.applier.writes(),
        writes,
        "a converged reconcile wrote"
    );
    assert_eq!(versions(&client, "dev").await, before, "an object changed");

    // Drift: a deleted ConfigMap comes back, an edited StatefulSet is put back.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let config = names::config_map("dev");
    maps.delete(&config, &DeleteParams::default())
        .await
        .unwrap();
    poll_until_ok(
        Duration::from_secs(15),
        "the ConfigMap restored",
        || async { Ok(maps.get_opt(&config).await?) },
    )
    .await
    .unwrap();
    sets.patch(
        &names::statefulset("dev"),
        &PatchParams::apply("someone-else").force(),
        &Patch::Apply(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "spec": {"template": {"spec": {"containers": [{"name": names::CONTAINER, "image": "evil:latest"}]}}},
        })),
    )
    .await
    .unwrap();
    until(Duration::from_secs(15), "the image restored", || async {
        let set = sets.get(&names::statefulset("dev")).await.unwrap();
        set.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref()
            == Some("openbao/openbao:2.7.2")
    })
    .await
    .unwrap();

    // Paused: nothing is changed, status says so.
    apply_cluster(
        &client,
        NS,
        "dev",
        json!({"version": "2.7.2", "replicas": 3, "profile": "Development", "paused": true}),
    )
    .await;
    until(WAIT, "generation 2 observed", || async {
        cluster(&client, "dev")
            .await
            .status
            .and_then(|s| s.observed_generation)
            == Some(2)
    })
    .await
    .unwrap();
    maps.delete(&config, &DeleteParams::default())
        .await
        .unwrap();
    let reconciles = reconcile_count(&running);
    until(WAIT, "reconciles while paused", || async {
        reconcile_count(&running) >= reconciles + 2
    })
    .await
    .unwrap();
    assert!(
        maps.get_opt(&config).await.unwrap().is_none(),
        "paused but repaired"
    );
    apply_cluster(
        &client,
        NS,
        "dev",
        json!({"version": "2.7.2", "replicas": 3, "profile": "Development"}),
    )
    .await;
    poll_until_ok(
        Duration::from_secs(15),
        "repaired after unpausing",
        || async { Ok(maps.get_opt(&config).await?) },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn deletion_policies_keep_or_remove_the_keys() {
    let (_plane, client, _running) = start().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let clusters: Api<OpenBaoCluster> = Api::namespaced(client.clone(), NS);

    for (name, policy) in [("keep", "Retain"), ("wipe", "DeleteAll")] {
        apply_cluster(
            &client,
            NS,
            name,
            json!({"version": "2.7.2", "profile": "Development", "deletionPolicy": policy}),
        )
        .await;
        poll_until_ok(WAIT, "the seal key", || async {
            Ok(secrets.get_opt(&names::unseal_secret(name)).await?)
        })
        .await
        .unwrap();
        poll_until_ok(WAIT, "the StatefulSet", || async {
            Ok(Api::<StatefulSet>::namespaced(client.clone(), NS)
                .get_opt(&names::statefulset(name))
                .await?)
        })
        .await
        .unwrap();
        let set = Api::<StatefulSet>::namespaced(client.clone(), NS)
            .get(&names::statefulset(name))
            .await
            .unwrap();
        let retention = set.spec.persistent_volume_claim_retention_policy.unwrap();
        let expected = if policy == "Retain" {
            "Retain"
        } else {
            "Delete"
        };
        assert_eq!(retention.when_deleted.as_deref(), Some(expected));
        clusters
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    // The garbage collector removes what the cluster owned.
    for name in ["keep", "wipe"] {
        until(WAIT, "the StatefulSet collected", || async {
            Api::<StatefulSet>::namespaced(client.clone(), NS)
                .get_opt(&names::statefulset(name))
                .await
                .unwrap()
                .is_none()
        })
        .await
        .unwrap();
    }
    until(WAIT, "DeleteAll removed the key", || async {
        secrets
            .get_opt(&names::unseal_secret("wipe"))
            .await
            .unwrap()
            .is_none()
    })
    .await
    .unwrap();
    assert!(
        secrets
            .get_opt(&names::unseal_secret("keep"))
            .await
            .unwrap()
            .is_some(),
        "Retain must keep the seal key"
    );
}

fn reconcile_count(running: &Running) -> u64 {
    let text = running.ctx.metrics.encode();
    text.lines()
        .find(|l| l.starts_with("openbao_operator_reconcile_duration_seconds_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
