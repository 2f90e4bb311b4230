//! Two controller processes against one real API server: only the holder of
//! the Lease reconciles, and when it dies the other takes over.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{OPERATOR_NAMESPACE, apply_cluster, namespace};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use test_support::ControlPlane;
use test_support::wait::poll_until;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    plane: &ControlPlane,
    dir: &Path,
    identity: &str,
    metrics: SocketAddr,
    dns: SocketAddr,
) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_controller"))
        .arg(format!("--namespace={OPERATOR_NAMESPACE}"))
        .arg(format!(
            "--openbao-token-file={}",
            dir.join("token").display()
        ))
        .arg(format!("--kube-ca-file={}", dir.join("ca.crt").display()))
        .arg(format!("--service-account-issuer={}", plane.issuer()))
        .arg(format!("--dns-server={dns}"))
        .arg(format!("--metrics-bind-address={metrics}"))
        .arg(format!("--health-bind-address={metrics}"))
        .arg("--leader-elect")
        .env("KUBECONFIG", &plane.kubeconfig_path)
        .env("POD_NAME", identity)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Reconciles so far, from the process's /metrics (None while it starts).
async fn reconciles(address: SocketAddr) -> Option<u64> {
    let text = reqwest::get(format!("http://{address}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    common::reconciles_in(&text)
}

async fn holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get_opt("openbao-operator-controller")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_the_other_takes_over() {
    test_support::install_crypto_provider();
    let plane = ControlPlane::start().await.unwrap();
    plane.install_crds().await.unwrap();
    let client = plane.client().await.unwrap();
    namespace(&client, "team-a").await;
    namespace(&client, OPERATOR_NAMESPACE).await;
    let dir = tempfile::tempdir().unwrap();
    common::legacy_token_file(&plane, dir.path()).await;
    std::fs::write(dir.path().join("ca.crt"), &plane.ca_pem).unwrap();
    // A loopback port with nothing behind it: no pod name resolves.
    let dns = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (a_metrics, b_metrics) = (free_port(), free_port());
    let mut a = Some(start(&plane, dir.path(), "controller-a", a_metrics, dns));
    poll_until(
        Duration::from_secs(60),
        "controller-a holds the Lease",
        || async { Ok(holder(&client).await.as_deref() == Some("controller-a")) },
    )
    .await
    .unwrap();
    let _b = start(&plane, dir.path(), "controller-b", b_metrics, dns);
    poll_until(
        Duration::from_secs(30),
        "controller-b serves metrics",
        || async { Ok(reconciles(b_metrics).await.is_some()) },
    )
    .await
    .unwrap();
    // A standby is alive and ready (ready to take over), as the Deployment's
    // probes ask.
    for path in ["healthz", "readyz"] {
        let answer = reqwest::get(format!("http://{b_metrics}/{path}"))
            .await
            .unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::OK, "/{path}");
    }

    apply_cluster(
        &client,
        "team-a",
        "dev",
        json!({"version": "2.7.2", "profile": "Development"}),
    )
    .await;
    poll_until(Duration::from_secs(60), "the leader reconciles", || async {
        Ok(reconciles(a_metrics).await.unwrap_or(0) >= 2)
    })
    .await
    .unwrap();
    assert_eq!(
        reconciles(b_metrics).await,
        Some(0),
        "the standby reconciled"
    );

    // The leader dies without releasing the Lease; the standby takes over
    // once the Lease expires.
    drop(a.take());
    poll_until(
        Duration::from_secs(90),
        "controller-b takes over and reconciles",
        || async {
            Ok(holder(&client).await.as_deref() == Some("controller-b")
                && reconciles(b_metrics).await.unwrap_or(0) >= 1)
        },
    )
    .await
    .unwrap();
}
