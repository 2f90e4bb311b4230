//! Termination messages through the node agent on a real API server: the
//! file at `terminationMessagePath` starts empty and writable, what a
//! container writes there becomes `state.terminated.message` (its last
//! 4096 bytes, cut to the pod's 12 KiB share), and
//! `FallbackToLogsOnError` reports the log's tail of a failed container.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use test_support::wait::poll_until_ok;
use test_support::{ControlPlane, NodeAgent, NodeAgentOptions};

const NS: &str = "default";
const BAO_IMAGE: &str = "quay.io/openbao/openbao:2.7.2";

/// Fails (exit 9) unless the default file is there, empty and writable.
const CHECK_FILE: &str = "test -f /dev/termination-log && test -w /dev/termination-log \
     && test ! -s /dev/termination-log && test -c /dev/null || exit 9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_messages_reach_the_pod_status() {
    test_support::init_tracing();
    let host_file_before = Path::new("/dev/termination-log").exists();
    let plane = ControlPlane::start().await.unwrap();
    let agent = NodeAgent::start(&plane, NodeAgentOptions::default())
        .await
        .unwrap();
    let client = plane.client().await.unwrap();

    // `sh`, `seq`, `head`, `tr` come from the host's /usr, which every
    // container sees (commands that are not the image's executable).
    let ctr = |name: &str, script: String| json!({"name": name, "image": BAO_IMAGE, "command": ["sh", "-c", script]});
    let mut custom = ctr(
        "custom",
        "mkdir -p /tmp/out && printf custom > /tmp/out/result; exit 3".into(),
    );
    custom["terminationMessagePath"] = json!("/tmp/out/result");
    let mut fallback = ctr(
        "fallback",
        format!("{CHECK_FILE}; for i in $(seq 1 100); do echo \"line $i\"; done; exit 4"),
    );
    fallback["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    let mut fallback_ok = ctr("fallback-ok", "echo fine".into());
    fallback_ok["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    let containers = json!([
        ctr(
            "result",
            format!(
                "{CHECK_FILE}; echo noise; \
                 printf '{{\"outcome\":\"Succeeded\"}}' > /dev/termination-log"
            ),
        ),
        custom,
        fallback,
        fallback_ok,
        ctr("silent", "echo only-in-logs; exit 5".into()),
        ctr(
            "big",
            "{ head -c 1000 /dev/zero | tr '\\0' a; head -c 4000 /dev/zero | tr '\\0' b; } \
             > /dev/termination-log"
                .into(),
        ),
    ]);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "messages"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
                 "containers": containers},
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let pod = poll_until_ok(Duration::from_secs(90), "pod messages Failed", || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("messages").await?;
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            anyhow::ensure!(phase.as_deref() != Some("Succeeded"), "pod succeeded");
            Ok((phase.as_deref() == Some("Failed")).then_some(pod))
        }
    })
    .await
    .unwrap();
    let terminated: BTreeMap<String, ContainerStateTerminated> = pod
        .status
        .unwrap()
        .container_statuses
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.state.unwrap().terminated.unwrap()))
        .collect();
    let get = |name: &str| {
        let t = &terminated[name];
        (t.exit_code, t.reason.as_deref().unwrap(), t.message.clone())
    };

    assert_eq!(
        get("result"),
        (0, "Completed", Some(r#"{"outcome":"Succeeded"}"#.into())),
        "log: {}",
        agent.logs(NS, "messages", "result").unwrap()
    );
    assert_eq!(get("custom"), (3, "Error", Some("custom".into())));
    let (code, reason, message) = get("fallback");
    assert_eq!((code, reason), (4, "Error"));
    let message = message.unwrap();
    assert!(
        message.starts_with("line 21\n") && message.ends_with("line 100\n"),
        "the last 80 log lines: {message:?}"
    );
    assert_eq!(
        get("fallback-ok"),
        (0, "Completed", None),
        "no fallback on success"
    );
    assert_eq!(
        get("silent"),
        (5, "Error", None),
        "policy File never reads logs"
    );
    // The file's last 4096 bytes (96 a, 4000 b), cut to 12 KiB / 6.
    let big = get("big").2.unwrap();
    assert_eq!(big.len(), 12 * 1024 / 6);
    assert_eq!(big, format!("{}{}", "a".repeat(96), "b".repeat(2048 - 96)));

    if !host_file_before {
        assert!(
            !Path::new("/dev/termination-log").exists(),
            "the host's /dev is untouched"
        );
    }
}
