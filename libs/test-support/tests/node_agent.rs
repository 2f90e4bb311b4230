//! The node agent runs a real control plane's pods as local processes:
//! Jobs run to completion, probes drive readiness and EndpointSlices, pods
//! get their own addresses and cluster DNS, projected tokens verify against
//! the API server's JWKS, a 3-node OpenBao StatefulSet forms a Raft cluster
//! with Kubernetes auto-join, and nothing is left behind.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use test_support::openbao_pods::{OpenBaoPodsOptions, deploy_openbao};
use test_support::process::pid_alive;
use test_support::wait::{poll_until, poll_until_ok};
use test_support::{ControlPlane, NodeAgent, NodeAgentOptions};

const NS: &str = "default";
const BAO_IMAGE: &str = "quay.io/openbao/openbao:2.7.2";

async fn start() -> (ControlPlane, NodeAgent, kube::Client) {
    test_support::init_tracing();
    let plane = ControlPlane::start().await.unwrap();
    let agent = NodeAgent::start(&plane, NodeAgentOptions::default())
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    (plane, agent, client)
}

async fn create<K>(client: &kube::Client, object: Value) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object).unwrap();
    Api::<K>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &object)
        .await
        .unwrap()
}

fn job(name: &str, command: &[&str]) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": BAO_IMAGE, "command": command}],
            }},
        },
    })
}

/// Waits for a Job condition (`Complete` or `Failed`) set by the real Job
/// controller from the pod phase the agent reports.
async fn wait_job(client: &kube::Client, name: &str, condition: &str) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    poll_until(
        Duration::from_secs(90),
        &format!("job {name} {condition}"),
        || {
            let jobs = jobs.clone();
            async move {
                let job = jobs.get(name).await?;
                let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
                let other = if condition == "Complete" {
                    "Failed"
                } else {
                    "Complete"
                };
                anyhow::ensure!(
                    !conditions
                        .iter()
                        .any(|c| c.type_ == other && c.status == "True"),
                    "job {name} is {other}"
                );
                Ok(conditions
                    .iter()
                    .any(|c| c.type_ == condition && c.status == "True"))
            }
        },
    )
    .await
    .unwrap();
}

async fn job_pod(client: &kube::Client, job: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1, "one pod for job {job}");
    list.items.into_iter().next().unwrap()
}

fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_to_completion_and_report_exit_codes() {
    let (_plane, agent, client) = start().await;
    create::<Job>(&client, job("version", &["bao", "version"])).await;
    create::<Job>(&client, job("fails", &["sh", "-c", "echo failing; exit 1"])).await;

    wait_job(&client, "version", "Complete").await;
    wait_job(&client, "fails", "Failed").await;

    let ok = job_pod(&client, "version").await;
    assert_eq!(
        ok.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(exit_code(&ok), Some(0));
    let name = ok.metadata.name.unwrap();
    assert!(
        agent
            .logs(NS, &name, "main")
            .unwrap()
            .contains("OpenBao v2.7.2"),
        "bao version prints its version"
    );
    let failed = job_pod(&client, "fails").await;
    assert_eq!(
        failed.status.as_ref().unwrap().phase.as_deref(),
        Some("Failed")
    );
    assert_eq!(exit_code(&failed), Some(1));
    let name = failed.metadata.name.unwrap();
    assert_eq!(agent.logs(NS, &name, "main").unwrap(), "failing\n");
}

async fn wait_pod_ready(client: &kube::Client, name: &str, ready: bool) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    poll_until_ok(
        Duration::from_secs(120),
        &format!("pod {name} Ready={ready}"),
        || {
            let pods = pods.clone();
            async move {
                let Some(pod) = pods.get_opt(name).await? else {
                    return Ok(None);
                };
                let is_ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                let alive = pod.metadata.deletion_timestamp.is_none();
                Ok((is_ready == ready && alive).then_some(pod))
            }
        },
    )
    .await
    .unwrap()
}

#[derive(serde::Deserialize, Debug)]
struct Claims {
    sub: String,
    aud: Vec<String>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_see_env_volumes_and_a_projected_token_that_verifies_against_the_jwks() {
    let (plane, agent, client) = start().await;
    create::<Secret>(
        &client,
        json!({"metadata": {"name": "app"}, "stringData": {"password": "s3cret"}}),
    )
    .await;
    create::<ConfigMap>(
        &client,
        json!({"metadata": {"name": "app"}, "data": {"mode": "test", "app.hcl": "x = 1\n"}}),
    )
    .await;
    // The script checks what the container sees and exits non-zero (so the
    // pod never becomes ready) if anything is off. Values of secrets are
    // compared, never printed.
    let script = r#"
set -e
sa=/var/run/secrets/kubernetes.io/serviceaccount
test -s $sa/token; test -s $sa/ca.crt
test "$(cat $sa/namespace)" = "$POD_NAMESPACE"
test "$PASSWORD" = s3cret
test "$MODE" = test
test "$(cat /etc/app/app.hcl)" = "x = 1"
test "$(hostname)" = "$POD_NAME"
test "$ADDR" = "https://$POD_IP:8200"
test "$KUBERNETES_SERVICE_HOST" = kubernetes.default.svc
echo "checked name=$POD_NAME ip=$POD_IP ns=$POD_NAMESPACE"
touch /scratch/ok
exec sleep 3600
"#;
    create::<Pod>(
        &client,
        json!({
            "metadata": {"name": "checker"},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{
                    "name": "main", "image": BAO_IMAGE, "command": ["sh", "-c", script],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "ADDR", "value": "https://$(POD_IP):8200"},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app", "key": "password"}}},
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode"}}},
                    ],
                    "readinessProbe": {"exec": {"command": ["test", "-f", "/scratch/ok"]}, "periodSeconds": 1},
                    "volumeMounts": [
                        {"name": "openbao-token", "mountPath": "/var/run/secrets/tokens/openbao", "readOnly": true},
                        {"name": "config", "mountPath": "/etc/app"},
                        {"name": "scratch", "mountPath": "/scratch"},
                    ],
                }],
                "volumes": [
                    {"name": "openbao-token", "projected": {"sources": [{"serviceAccountToken": {
                        "path": "token", "audience": "openbao-internal", "expirationSeconds": 600}}]}},
                    {"name": "config", "configMap": {"name": "app"}},
                    {"name": "scratch", "emptyDir": {}},
                ],
            },
        }),
    )
    .await;
    let pod = wait_pod_ready(&client, "checker", true).await;
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert!(
        ip.starts_with("10.244."),
        "pod address from the agent's range: {ip}"
    );
    assert_eq!(
        agent.logs(NS, "checker", "main").unwrap(),
        format!("checked name=checker ip={ip} ns={NS}\n")
    );

    // The token the container sees, verified as OpenBao's JWT auth would.
    let token = std::fs::read_to_string(
        agent
            .pod_volume_dir(NS, "checker", "openbao-token")
            .unwrap()
            .join("token"),
    )
    .unwrap();
    let get = |path: &str| http::Request::get(path).body(Vec::new()).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&client.request_text(get("/openid/v1/jwks")).await.unwrap()).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["openbao-internal"]);
    validation.set_issuer(&[plane.issuer()]);
    let claims = jsonwebtoken::decode::<Claims>(&token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims.sub, "system:serviceaccount:default:default");
    assert_eq!(claims.aud, ["openbao-internal"]);
    assert_eq!(
        claims.kubernetes["pod"]["name"], "checker",
        "bound to the pod"
    );
    let mut other = jsonwebtoken::Validation::new(header.alg);
    other.set_audience(&["someone-else"]);
    assert!(jsonwebtoken::decode::<Claims>(&token, &key, &other).is_err());
}

fn web_pod_script() -> &'static str {
    "echo \"$POD_NAME\" > /srv/name && touch /srv/ready && \
     exec python3 -m http.server 8080 --bind 0.0.0.0 --directory /srv"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_addresses_dns_and_readiness_drives_endpoints() {
    let (_plane, agent, client) = start().await;
    let labels = json!({"app": "web"});
    create::<Service>(
        &client,
        json!({"metadata": {"name": "web"}, "spec": {
        "clusterIP": "None", "selector": labels, "ports": [{"name": "http", "port": 8080}]}}),
    )
    .await;
    create::<Service>(
        &client,
        json!({"metadata": {"name": "web-svc"}, "spec": {
        "selector": labels, "ports": [{"name": "http", "port": 8080}]}}),
    )
    .await;
    create::<StatefulSet>(&client, json!({
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web", "replicas": 2, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{
                    "name": "web", "image": BAO_IMAGE, "command": ["sh", "-c", web_pod_script()],
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"},
                                       "periodSeconds": 1, "failureThreshold": 1},
                    "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
                    "volumeMounts": [{"name": "srv", "mountPath": "/srv"}],
                }],
                "volumes": [{"name": "srv", "emptyDir": {}}],
            }},
        },
    })).await;
    wait_pod_ready(&client, "web-0", true).await;
    wait_pod_ready(&client, "web-1", true).await;

    // Both pods listen on 8080, each in its own namespace; the test reaches
    // them by their DNS names.
    let http = reqwest::Client::builder()
        .dns_resolver(agent.resolver())
        .no_proxy()
        .build()
        .unwrap();
    for name in ["web-0", "web-1"] {
        let body = poll_until_ok(Duration::from_secs(30), "DNS for the pod", || async {
            let url = format!("http://{name}.web.{NS}.svc:8080/name");
            Ok(Some(http.get(url).send().await?.text().await?))
        })
        .await
        .unwrap();
        assert_eq!(body, format!("{name}\n"));
    }

    // Pod to pod (short name through the search path) and pod to API server
    // (in-cluster token and CA, as client libraries do it).
    let client_script = r#"
import os, ssl, sys, urllib.request
body = urllib.request.urlopen("http://web-1.web:8080/name", timeout=5).read()
assert body == b"web-1\n", body
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
url = "https://%s:%s/version" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + open(sa + "/token").read()})
assert b"gitVersion" in urllib.request.urlopen(req, context=ctx, timeout=5).read()
print("reached web-1 and the API server")
"#;
    create::<Job>(&client, json!({
        "metadata": {"name": "peer"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": BAO_IMAGE, "command": ["python3", "-c", client_script]}]}}},
    })).await;
    wait_job(&client, "peer", "Complete").await;

    // Readiness failure: web-0 leaves the Endpoints, the EndpointSlice
    // marks it not ready and its DNS name stops resolving.
    let web0 = wait_pod_ready(&client, "web-0", true).await;
    let ip0 = web0.status.unwrap().pod_ip.unwrap();
    let srv = agent.pod_volume_dir(NS, "web-0", "srv").unwrap();
    std::fs::remove_file(srv.join("ready")).unwrap();
    wait_pod_ready(&client, "web-0", false).await;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NS);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let in_service = |ready: bool| {
        let (endpoints, slices, ip0) = (endpoints.clone(), slices.clone(), ip0.clone());
        async move {
            let ep = endpoints.get("web-svc").await?;
            let subsets = ep.subsets.unwrap_or_default();
            let listed = |not_ready: bool| {
                subsets.iter().any(|s| {
                    let addrs = if not_ready {
                        &s.not_ready_addresses
                    } else {
                        &s.addresses
                    };
                    addrs.iter().flatten().any(|a| a.ip == ip0)
                })
            };
            let slice_ready = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web-svc"))
                .await?
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.addresses.contains(&ip0))
                .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true));
            Ok(listed(!ready) && !listed(ready) && slice_ready == ready)
        }
    };
    poll_until(
        Duration::from_secs(30),
        "web-0 out of the endpoints",
        || in_service(false),
    )
    .await
    .unwrap();
    let resolver = agent.resolver();
    poll_until(Duration::from_secs(30), "web-0 out of DNS", || async {
        Ok(resolver.resolve_cluster("web-0.web.default.svc").is_err())
    })
    .await
    .unwrap();
    assert_eq!(
        resolver
            .resolve_cluster("web-svc.default.svc")
            .unwrap()
            .len(),
        1,
        "only web-1 serves"
    );

    std::fs::write(srv.join("ready"), "").unwrap();
    wait_pod_ready(&client, "web-0", true).await;
    poll_until(
        Duration::from_secs(30),
        "web-0 back in the endpoints",
        || in_service(true),
    )
    .await
    .unwrap();
}

/// Inode of a process's network namespace.
fn netns_of(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_agent_leaves_no_process_namespace_mount_or_file() {
    let (_plane, agent, client) = start().await;
    create::<Pod>(
        &client,
        json!({
            "metadata": {"name": "sleeper"},
            "spec": {"containers": [{"name": "main", "image": BAO_IMAGE,
                "command": ["sh", "-c", "sleep 3600 & exec sleep 3600"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
                "volumes": [{"name": "scratch", "emptyDir": {}}]},
        }),
    )
    .await;
    wait_pod_ready(&client, "sleeper", true).await;

    let pids = agent.pids();
    let dir = agent.dir().to_path_buf();
    let bridge = agent.bridge_name().to_owned();
    assert!(pids.len() >= 3, "container, pause and scheduler: {pids:?}");
    let namespaces: Vec<_> = pids.iter().filter_map(|p| netns_of(*p)).collect();
    let own_netns = netns_of(std::process::id()).unwrap();
    assert!(
        namespaces.iter().any(|n| *n != own_netns),
        "the pod has its own netns"
    );
    // The container's mounts exist in its own namespace only.
    let dir_text = dir.display().to_string();
    let container_has_mounts = pids.iter().any(|p| {
        std::fs::read_to_string(format!("/proc/{p}/mountinfo"))
            .is_ok_and(|m| m.contains(&dir_text) && m.contains("/scratch"))
    });
    assert!(container_has_mounts, "the container sees its volume mounts");
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&dir_text)
    );

    drop(agent);

    for pid in &pids {
        assert!(!pid_alive(*pid), "process {pid} outlived the agent");
    }
    // No process left in any pod namespace.
    let pod_namespaces: Vec<_> = namespaces.into_iter().filter(|n| *n != own_netns).collect();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>()
            && let Some(ns) = netns_of(pid)
        {
            assert!(
                !pod_namespaces.contains(&ns),
                "process {pid} is still in a pod namespace"
            );
        }
    }
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists(),
        "bridge {bridge} removed"
    );
    let index = bridge.trim_start_matches("nabr");
    let veths: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("nv{index}h")))
        .collect();
    assert!(veths.is_empty(), "veths left: {veths:?}");
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&dir_text)
    );
    assert!(!dir.exists(), "agent folder removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_statefulset_forms_a_raft_cluster_with_kubernetes_auto_join() {
    let (_plane, agent, client) = start().await;
    let options = OpenBaoPodsOptions {
        version: "2.7.2".into(),
        ..OpenBaoPodsOptions::default()
    };
    let mut bao = deploy_openbao(&client, &agent, options.clone())
        .await
        .unwrap();

    // Initialise the first pod; the others find it through the Kubernetes
    // API (auto-join lists the cluster's Ready pods by label) and join.
    bao.initialize().await.unwrap();
    let voters = bao.wait_voters(3).await.unwrap();
    assert_eq!(voters, ["openbao-0", "openbao-1", "openbao-2"]);
    assert_eq!(
        bao.wait_pods_ready().await.unwrap().len(),
        3,
        "the readiness probe passes once each pod is unsealed"
    );

    // Service registration labels the pods through the API server.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    poll_until(Duration::from_secs(60), "openbao-active labels", || async {
        let list = pods
            .list(&ListParams::default().labels(&options.pod_selector()))
            .await?;
        let label = |p: &Pod, k: &str| p.metadata.labels.as_ref().and_then(|l| l.get(k).cloned());
        let active = list
            .items
            .iter()
            .filter(|p| label(p, "openbao-active").as_deref() == Some("true"))
            .count();
        let initialized = list
            .items
            .iter()
            .filter(|p| label(p, "openbao-initialized").as_deref() == Some("true"))
            .count();
        Ok(active == 1 && initialized == 3)
    })
    .await
    .unwrap();

    // Deleting a pod: the StatefulSet recreates it with the same claim, so
    // it comes back with its Raft data and does not join again.
    let old = pods.get("openbao-1").await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let claim_uid = claims.get("data-openbao-1").await.unwrap().metadata.uid;
    pods.delete("openbao-1", &DeleteParams::default())
        .await
        .unwrap();
    let new = poll_until_ok(
        Duration::from_secs(120),
        "openbao-1 recreated and ready",
        || async {
            let pod = wait_pod_ready(&client, "openbao-1", true).await;
            Ok((pod.metadata.uid != old.metadata.uid).then_some(pod))
        },
    )
    .await
    .unwrap();
    assert_ne!(new.metadata.uid, old.metadata.uid);
    assert_eq!(
        claims.get("data-openbao-1").await.unwrap().metadata.uid,
        claim_uid
    );
    assert_eq!(
        bao.wait_voters(3).await.unwrap(),
        voters,
        "the same three Raft servers, none new"
    );
    let joined = "successfully joined the raft cluster";
    assert!(
        agent
            .previous_logs(NS, "openbao-1", "openbao")
            .unwrap()
            .contains(joined),
        "the first openbao-1 joined"
    );
    assert!(
        !agent
            .logs(NS, "openbao-1", "openbao")
            .unwrap()
            .contains(joined),
        "the second openbao-1 started from its kept Raft data"
    );
    let (status, _) = bao
        .call("openbao-1", reqwest::Method::GET, "sys/health", None)
        .await
        .unwrap();
    assert_eq!(status, 429, "openbao-1 is an unsealed standby again");
}
