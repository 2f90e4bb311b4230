//! Proves the OpenBao harness runs real Raft clusters of both pinned versions.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use reqwest::Method;
use test_support::{BaoCluster, BaoClusterOptions, tools};

#[tokio::test]
async fn a_three_node_cluster_reports_three_voters() {
    let cluster = BaoCluster::start_default().await.unwrap();
    let servers = cluster.raft_servers().await.unwrap();
    assert_eq!(servers.len(), 3, "{servers:?}");
    assert!(servers.iter().all(|(_, voter)| *voter), "{servers:?}");
    // Every node has its own loopback address.
    let mut ips: Vec<_> = cluster.nodes().iter().map(|n| n.ip).collect();
    ips.dedup();
    assert_eq!(ips.len(), 3);

    // Data written through the leader is readable on a standby's forward.
    let leader = cluster.leader().await.unwrap();
    let (status, _) = cluster
        .request(
            leader,
            Method::POST,
            "sys/mounts/kv",
            Some(serde_json::json!({"type": "kv-v2"})),
        )
        .await
        .unwrap();
    assert!(status.is_success(), "{status}");
    let standby = (leader + 1) % 3;
    let (status, body) = cluster
        .request(standby, Method::GET, "sys/health", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 429, "standby health: {body}");
    assert_eq!(body["version"], cluster.version());
}

#[tokio::test]
async fn every_pinned_version_starts_and_is_reported() {
    for version in tools::openbao_versions() {
        let cluster = BaoCluster::start(BaoClusterOptions {
            version: version.to_owned(),
            nodes: 1,
            tls: false,
            initialize: true,
            seal_key: None,
        })
        .await
        .unwrap();
        let (status, body) = cluster
            .request(0, Method::GET, "sys/seal-status", None)
            .await
            .unwrap();
        assert!(status.is_success());
        assert_eq!(body["version"], version);
        assert_eq!(body["sealed"], false);
        assert_eq!(body["type"], "static");
    }
}

#[tokio::test]
async fn a_restarted_node_unseals_and_rejoins() {
    let mut cluster = BaoCluster::start(BaoClusterOptions {
        nodes: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let standby = (cluster.leader().await.unwrap() + 1) % 3;
    cluster.stop_node(standby);
    cluster.start_node(standby).unwrap();
    cluster.wait_unsealed(standby).await.unwrap();
    cluster.wait_for_voters(3).await.unwrap();
    let (status, body) = cluster
        .request(standby, Method::GET, "sys/seal-status", None)
        .await
        .unwrap();
    assert!(status.is_success());
    assert_eq!(body["sealed"], false);
}

#[tokio::test]
async fn dropping_the_cluster_stops_every_node() {
    let cluster = BaoCluster::start(BaoClusterOptions {
        nodes: 2,
        tls: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let pids = cluster.pids();
    assert_eq!(pids.len(), 2);
    let dir = cluster.dir().to_path_buf();
    drop(cluster);
    for pid in pids {
        assert!(!test_support::process::pid_alive(pid), "pid {pid} survived");
    }
    assert!(!dir.exists());
}
