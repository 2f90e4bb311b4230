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
    let reads = running.ctx.api_counters.reads();
    let reconciles = reconcile_count(&running);
    until(WAIT, "three more reconciles", || async {
        reconcile_count(&running) >= reconciles + 3
    })
    .await
    .unwrap();
    let reconciled = reconcile_count(&running) - reconciles;
    let read = running.ctx.api_counters.reads() - reads;
    println!("steady state: {read} API reads and 0 writes over {reconciled} reconciles");
    assert_eq!(
        running.ctx.applier.writes(),
        writes,
        "a converged reconcile wrote"
    );
    // Everything comes from the watch caches: not even the one read per
    // owned kind the budget allows.
    assert_eq!(read, 0, "a converged reconcile read from the API");
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
    assert_eq!(
        condition(&cluster(&client, "dev").await, types::PAUSED),
        Some(("True".into(), "Paused".into()))
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
    until(WAIT, "the Paused condition gone", || async {
        condition(&cluster(&client, "dev").await, types::PAUSED).is_none()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn deletion_policies_keep_or_remove_the_keys() {
    let (_plane, client, _running) = start().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let clusters: Api<OpenBaoCluster> = Api::namespaced(client.clone(), NS);

    for (name, policy) in [
        ("keep", "Retain"),
        ("wipe", "DeleteAll"),
        ("data", "DeletePVCs"),
    ] {
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
    for name in ["keep", "wipe", "data"] {
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
    for (name, policy) in [("keep", "Retain"), ("data", "DeletePVCs")] {
        assert!(
            secrets
                .get_opt(&names::unseal_secret(name))
                .await
                .unwrap()
                .is_some(),
            "{policy} must keep the seal key"
        );
    }
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

/// A ValidatingAdmissionPolicy that refuses the operator's StatefulSets in
/// `NS` with `message`.
async fn deny_statefulsets(client: &kube::Client, message: &str) {
    let policies = admission_api(client, POLICY);
    let bindings = admission_api(client, BINDING);
    let apply = PatchParams::apply("test").force();
    policies
        .patch(
            "freeze-statefulsets",
            &apply,
            &Patch::Apply(json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": "freeze-statefulsets"},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {"resourceRules": [{
                        "apiGroups": ["apps"], "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"], "resources": ["statefulsets"],
                    }]},
                    "validations": [{"expression": "false", "message": message}],
                },
            })),
        )
        .await
        .unwrap();
    bindings
        .patch(
            "freeze-statefulsets",
            &apply,
            &Patch::Apply(json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": "freeze-statefulsets"},
                "spec": {
                    "policyName": "freeze-statefulsets",
                    "validationActions": ["Deny"],
                    "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}}},
                },
            })),
        )
        .await
        .unwrap();
    // The binding takes effect once the API server has compiled it: probe
    // with a dry-run create until it is refused.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let probe: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "x",
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }))
    .unwrap();
    until(WAIT, "the policy in force", || async {
        sets.create(
            &kube::api::PostParams {
                dry_run: true,
                ..Default::default()
            },
            &probe,
        )
        .await
        .is_err()
    })
    .await
    .unwrap();
}

async fn lift_statefulset_denial(client: &kube::Client) {
    for kind in [BINDING, POLICY] {
        admission_api(client, kind)
            .delete("freeze-statefulsets", &DeleteParams::default())
            .await
            .unwrap();
    }
}

const POLICY: (&str, &str) = ("ValidatingAdmissionPolicy", "validatingadmissionpolicies");
const BINDING: (&str, &str) = (
    "ValidatingAdmissionPolicyBinding",
    "validatingadmissionpolicybindings",
);

fn admission_api(
    client: &kube::Client,
    (kind, plural): (&str, &str),
) -> Api<kube::api::DynamicObject> {
    Api::all_with(
        client.clone(),
        &kube::discovery::ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        },
    )
}

/// Events about the cluster `name` with `reason`: (count, message) each.
async fn events(client: &kube::Client, name: &str, reason: &str) -> Vec<(i32, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .map(|e| {
            let count = e.series.as_ref().map(|s| s.count).unwrap_or(1);
            (count, e.note.unwrap_or_default())
        })
        .collect()
}

/// A write the API server refuses is seen by the user (a Warning Event and
/// Degraded, both with the server's message), and clears once the cause is
/// gone; a cluster whose pods never answer is retried with growing delays;
/// a deleted cluster leaves no metric series behind.
#[tokio::test]
async fn refusals_are_visible_retries_back_off_and_deletion_forgets() {
    let plane = ControlPlane::start().await.unwrap();
    plane.install_crds().await.unwrap();
    let client = plane.client().await.unwrap();
    namespace(&client, NS).await;
    // Back-off from half a second, so several doublings fit in the test.
    let running = Running::start_with(&plane, Arc::new(NoNames), |settings| {
        settings.progress_interval = Duration::from_millis(500);
    })
    .await;

    // Refused by an admission policy.
    const DENIAL: &str = "statefulsets are frozen in team-a by the platform team";
    deny_statefulsets(&client, DENIAL).await;
    apply_cluster(
        &client,
        NS,
        "frozen",
        json!({"version": "2.7.2", "profile": "Development"}),
    )
    .await;
    until(WAIT, "Degraded with the API server's message", || async {
        let c = cluster(&client, "frozen").await;
        let degraded = c.status.as_ref().and_then(|s| {
            lifecycle_types::conditions::find(&s.conditions, types::DEGRADED).cloned()
        });
        degraded.is_some_and(|d| d.reason == "KubernetesWriteRefused" && d.message.contains(DENIAL))
            && c.status.as_ref().and_then(|s| s.phase).is_some()
    })
    .await
    .unwrap();
    let warnings = events(&client, "frozen", "KubernetesWriteRefused").await;
    assert!(
        warnings
            .iter()
            .any(|(_, note)| note.contains(DENIAL) && note.contains("admission policy")),
        "{warnings:?}"
    );
    lift_statefulset_denial(&client).await;
    until(
        WAIT,
        "Degraded cleared after the policy is gone",
        || async {
            condition(&cluster(&client, "frozen").await, types::DEGRADED)
                == Some(("False".into(), "AsExpected".into()))
        },
    )
    .await
    .unwrap();
    let settled = events(&client, "frozen", "KubernetesWriteRefused").await;
    let reconciles = reconcile_count(&running);
    until(WAIT, "three more reconciles", || async {
        reconcile_count(&running) >= reconciles + 3
    })
    .await
    .unwrap();
    assert_eq!(
        events(&client, "frozen", "KubernetesWriteRefused").await,
        settled,
        "Warning Events went on after the cluster converged"
    );

    // OpenBao never answers: a pod that has run for ten minutes (its
    // status written here, as a kubelet would) whose name resolves nowhere.
    apply_cluster(
        &client,
        NS,
        "silent",
        json!({"version": "2.7.2", "profile": "Development"}),
    )
    .await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    let pod = names::statefulset("silent") + "-0";
    poll_until_ok(WAIT, "the bootstrap pod", || async {
        Ok(pods.get_opt(&pod).await?)
    })
    .await
    .unwrap();
    let started =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(600);
    pods.patch_status(
        &pod,
        &PatchParams::apply("kubelet-stand-in").force(),
        &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Pod",
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{
                    "name": names::CONTAINER, "image": "openbao/openbao:2.7.2", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"running": {"startedAt": started.to_string()}},
                }],
            },
        })),
    )
    .await
    .unwrap();
    // Record when each failure is counted.
    let failures = || {
        running
            .ctx
            .metrics
            .encode()
            .lines()
            .find(|l| {
                l.starts_with("openbao_operator_reconcile_errors_total")
                    && l.contains("name=\"silent\"")
                    && l.contains("reason=\"OpenBaoUnreachable\"")
            })
            .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut seen_at = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut last = failures();
    while seen_at.len() < 6 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = failures();
        if now > last {
            seen_at.push(std::time::Instant::now());
            last = now;
        }
    }
    assert!(
        seen_at.len() >= 6,
        "only {} failures counted",
        seen_at.len()
    );
    let intervals: Vec<f64> = seen_at
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    println!("retry intervals (s): {intervals:.1?}");
    // The first retry may come early (the failure's own status write
    // triggers one); from then on each delay doubles, give or take the
    // jitter (at most a fifth) and polling.
    for pair in intervals[1..].windows(2) {
        assert!(
            pair[1] > pair[0] * 1.4,
            "the retry delay did not grow: {intervals:?}"
        );
    }
    let c = cluster(&client, "silent").await;
    let degraded =
        lifecycle_types::conditions::find(&c.status.unwrap().conditions, types::DEGRADED)
            .cloned()
            .unwrap();
    assert_eq!(degraded.reason, "OpenBaoUnreachable");
    assert!(
        degraded.message.contains("NetworkPolicy"),
        "{}",
        degraded.message
    );

    // Deleting a cluster drops its series.
    assert!(running.ctx.metrics.encode().contains("name=\"silent\""));
    Api::<OpenBaoCluster>::namespaced(client.clone(), NS)
        .delete("silent", &DeleteParams::default())
        .await
        .unwrap();
    until(WAIT, "no series of the deleted cluster", || async {
        !running.ctx.metrics.encode().contains("name=\"silent\"")
    })
    .await
    .unwrap();
    assert!(running.ctx.metrics.encode().contains("name=\"frozen\""));
}
