//! End to end: the controller manages real OpenBao pods run by the node
//! agent on a real control plane. A Development cluster bootstraps through
//! the operator's `sys/init`, becomes Available with one leader, heals a
//! killed pod and scales 3 to 5 to 3 with exactly 3 Raft voters at the end.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Running, apply_cluster, condition, namespace};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use lifecycle_types::conditions::types;
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;
use test_support::wait::poll_until;
use test_support::{ControlPlane, NodeAgent, NodeAgentOptions};

const NS: &str = "team-a";

async fn get(client: &kube::Client, name: &str) -> OpenBaoCluster {
    Api::<OpenBaoCluster>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

/// Waits until the cluster is Available with `replicas` ready pods, one
/// leader and exactly `replicas` Raft voters.
async fn converged(client: &kube::Client, name: &str, replicas: usize, within: Duration) {
    let what = format!("{name}: Available with {replicas} ready pods and {replicas} voters");
    let result = poll_until(within, &what, || async {
        let c = get(client, name).await;
        let Some(status) = c.status.as_ref() else {
            return Ok(false);
        };
        let voters = status.raft.as_ref().map(|r| r.voters.len()).unwrap_or(0);
        Ok(
            condition(&c, types::AVAILABLE).map(|c| c.0) == Some("True".into())
                && status.ready_replicas == replicas as i32
                && voters == replicas
                && status.raft.as_ref().is_some_and(|r| r.healthy)
                && condition(&c, types::LEADER_FOUND).map(|c| c.0) == Some("True".into()),
        )
    })
    .await;
    if let Err(error) = result {
        let c = get(client, name).await;
        panic!(
            "{error}\nstatus: {}",
            serde_json::to_string_pretty(&c.status).unwrap()
        );
    }
}

#[tokio::test]
async fn development_cluster_bootstraps_heals_and_scales() {
    let plane = ControlPlane::start().await.unwrap();
    plane.install_crds().await.unwrap();
    let client = plane.client().await.unwrap();
    namespace(&client, NS).await;
    let agent = NodeAgent::start(&plane, NodeAgentOptions::default())
        .await
        .unwrap();
    let running = Running::start(&plane, agent.resolver()).await;
    let spec = |replicas: i32| {
        json!({
            "version": "2.7.2",
            "replicas": replicas,
            "profile": "Development",
            "configuration": {"raft": {"autopilot": {"serverStabilizationTime": "3s"}}},
        })
    };

    apply_cluster(&client, NS, "dev", spec(3)).await;
    converged(&client, "dev", 3, Duration::from_secs(240)).await;
    let c = get(&client, "dev").await;
    let status = c.status.as_ref().unwrap();
    assert!(status.initialized);
    assert_eq!(status.current_version.as_deref(), Some("2.7.2"));
    assert_eq!(
        condition(&c, types::INITIALIZED).unwrap().1,
        "OperatorInitialized"
    );
    let leader = status.active_leader.clone().unwrap();
    assert!(leader.starts_with("dev-"));
    // Development keeps the root token (and says so); the controller's own
    // Raft reads used its JWT role (status.raft is filled only from them).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    assert!(
        secrets
            .get_opt(&names::root_token_secret("dev"))
            .await
            .unwrap()
            .is_some()
    );
    let gaps = lifecycle_types::conditions::find(&status.conditions, types::PRODUCTION_READY)
        .unwrap()
        .message
        .clone();
    assert!(gaps.contains("root token"), "{gaps}");
    // Every pod runs the post-bootstrap template (the gate replaced pod 0).
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let set = sets.get(&names::statefulset("dev")).await.unwrap();
    let revision = set.status.unwrap().update_revision.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    poll_until(
        Duration::from_secs(120),
        "every pod on the current template",
        || async {
            let mut current = 0;
            for i in 0..3 {
                let pod = pods.get(&format!("dev-{i}")).await?;
                if pod.labels().get("controller-revision-hash") == Some(&revision) {
                    current += 1;
                }
            }
            Ok(current == 3)
        },
    )
    .await
    .unwrap();
    converged(&client, "dev", 3, Duration::from_secs(120)).await;

    // A killed pod comes back unsealed and rejoined.
    let victim = format!("dev-{}", if leader == "dev-1" { 2 } else { 1 });
    let old_uid = pods.get(&victim).await.unwrap().uid();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    poll_until(Duration::from_secs(60), "the pod recreated", || async {
        Ok(pods
            .get_opt(&victim)
            .await?
            .is_some_and(|p| p.uid() != old_uid))
    })
    .await
    .unwrap();
    converged(&client, "dev", 3, Duration::from_secs(120)).await;

    // Scale up, then down: Raft peers follow the pods.
    apply_cluster(&client, NS, "dev", spec(5)).await;
    converged(&client, "dev", 5, Duration::from_secs(180)).await;
    apply_cluster(&client, NS, "dev", spec(3)).await;
    converged(&client, "dev", 3, Duration::from_secs(180)).await;
    poll_until(Duration::from_secs(60), "pods 3 and 4 gone", || async {
        Ok(pods.get_opt("dev-3").await?.is_none() && pods.get_opt("dev-4").await?.is_none())
    })
    .await
    .unwrap();
    let voters = get(&client, "dev")
        .await
        .status
        .unwrap()
        .raft
        .unwrap()
        .voters;
    assert_eq!(voters.len(), 3, "{voters:?}");
    assert!(
        voters
            .iter()
            .all(|v| ["dev-0", "dev-1", "dev-2"].contains(&v.as_str()))
    );
    drop(running);
}
