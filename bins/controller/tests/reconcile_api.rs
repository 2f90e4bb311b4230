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

    // Drift: a deleted Service or ConfigMap comes back, an edited
    // StatefulSet is put back.
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let active = names::active_service("dev");
    let old_uid = services.get(&active).await.unwrap().uid();
    services
        .delete(&active, &DeleteParams::default())
        .await
        .unwrap();
    poll_until_ok(Duration::from_secs(15), "the Service restored", || async {
        Ok(services
            .get_opt(&active)
            .await?
            .filter(|s| s.uid() != old_uid))
    })
    .await
    .unwrap();
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
    common::reconciles_in(&running.ctx.metrics.encode()).unwrap_or(0)
}

#[tokio::test]
async fn ingress_is_applied_and_a_missing_gateway_api_is_reported() {
    let (_plane, client, _running) = start().await;
    let exposed = |gateway: bool| {
        json!({
            "version": "2.7.2", "profile": "Development",
            "ingress": {"enabled": true, "host": "bao.example.test",
                        "annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}},
            "gateway": {"enabled": gateway, "hostname": "bao.example.test",
                        "gatewayRef": {"name": "public", "namespace": "gateways"}},
        })
    };
    apply_cluster(&client, NS, "web", exposed(true)).await;
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(client.clone(), NS);
    let ingress = poll_until_ok(WAIT, "the Ingress", || async {
        Ok(ingresses.get_opt(&names::ingress("web")).await?)
    })
    .await
    .unwrap();
    let rule = &ingress.spec.unwrap().rules.unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("bao.example.test"));
    until(WAIT, "Degraded: the Gateway API is missing", || async {
        condition(&cluster(&client, "web").await, types::DEGRADED)
            == Some(("True".into(), "GatewayAPIMissing".into()))
    })
    .await
    .unwrap();
    // The server certificate names the exposure host.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let cert = secrets.get(&names::tls_server_secret("web")).await.unwrap();
    let pem = String::from_utf8(cert.data.unwrap()["tls.crt"].0.clone()).unwrap();
    let info = controller::tls::inspect(&pem).unwrap();
    assert!(
        info.sans.iter().any(|s| s == "bao.example.test"),
        "{:?}",
        info.sans
    );

    apply_cluster(&client, NS, "web", exposed(false)).await;
    until(WAIT, "Degraded cleared", || async {
        condition(&cluster(&client, "web").await, types::DEGRADED)
            == Some(("False".into(), "AsExpected".into()))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_external_certificate_is_read_and_its_renewal_rolls_the_template() {
    use controller::tls::{issue_ca, issue_server};
    let (_plane, client, _running) = start().await;
    apply_cluster(
        &client,
        NS,
        "ext",
        json!({"version": "2.7.2", "profile": "Development",
               "tls": {"mode": "External", "externalSecretName": "ext-cert"}}),
    )
    .await;
    until(WAIT, "TLSReady False: the Secret is missing", || async {
        condition(&cluster(&client, "ext").await, types::TLS_READY)
            == Some(("False".into(), "TLSSecretMissing".into()))
    })
    .await
    .unwrap();

    let now = k8s_openapi::jiff::Timestamp::now();
    let day = Duration::from_secs(86_400);
    let ca = issue_ca("ext", now, day * 30).unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let template_hash = || async {
        sets.get_opt(&names::statefulset("ext"))
            .await
            .unwrap()
            .and_then(|s| s.spec.template.metadata)
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(labels::TLS_HASH).cloned())
    };
    let mut hashes = Vec::new();
    for round in 0..2 {
        // What cert-manager would write, renewed in the second round.
        let server =
            issue_server(&ca, &["ext.team-a.svc".to_owned()], now, day * (10 + round)).unwrap();
        secrets
            .patch(
                "ext-cert",
                &PatchParams::apply("cert-manager").force(),
                &Patch::Apply(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "ext-cert"},
                    "type": "kubernetes.io/tls",
                    "stringData": {"tls.crt": server.cert_pem, "tls.key": server.key_pem, "ca.crt": ca.cert_pem},
                })),
            )
            .await
            .unwrap();
        let previous = hashes.last().cloned();
        let hash = poll_until_ok(WAIT, "the template follows the certificate", || {
            let previous = previous.clone();
            async move {
                Ok(template_hash()
                    .await
                    .filter(|h| !h.is_empty() && Some(h) != previous.as_ref()))
            }
        })
        .await
        .unwrap();
        hashes.push(hash);
    }
    assert_eq!(
        condition(&cluster(&client, "ext").await, types::TLS_READY),
        Some(("True".into(), "CertificateValid".into()))
    );
    // The user's Secret is read, never written or owned by the operator.
    let cert = secrets.get("ext-cert").await.unwrap();
    assert!(cert.metadata.owner_references.is_none());
    assert!(
        cert.metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .all(|f| f.manager.as_deref() != Some("openbao-operator")),
        "the operator wrote the user's Secret"
    );
}
