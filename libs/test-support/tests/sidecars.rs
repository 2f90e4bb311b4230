//! Native sidecar containers (KEP-753) through the node agent on a real API
//! server: a Job whose pod has a sidecar (an init container with
//! `restartPolicy: Always`) runs its main container only once the sidecar
//! has started, the sidecar is restarted when it dies and counts toward
//! readiness, and once the main container is done the sidecar is stopped,
//! so the pod Succeeds, the Job Completes and no process is left.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, ListParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use test_support::process::pid_alive;
use test_support::wait::{poll_until, poll_until_ok};
use test_support::{ControlPlane, NodeAgent, NodeAgentOptions};

const NS: &str = "default";
const BAO_IMAGE: &str = "quay.io/openbao/openbao:2.7.2";
const GREETING: &str = "hello from the sidecar";

/// Serves `/greeting` on 8080 after a second, so a main container started
/// before the sidecar's startup probe passed would find nothing there.
/// (`$$$$` is the shell's `$$`: Kubernetes turns `$$` into `$` in commands.)
const SIDECAR: &str = "echo $$$$ > /shared/sidecar.pid; \
     printf sidecar-stopped > /dev/termination-log; \
     mkdir -p /srv && printf %s \"$GREETING\" > /srv/greeting && sleep 1; \
     exec python3 -m http.server 8080 --bind 0.0.0.0 --directory /srv";

/// Reaches the sidecar over the pod's loopback at once (it must already
/// serve), then again when the test says go, into its termination message.
const MAIN: &str = r#"set -e
echo $$$$ > /shared/main.pid
fetch() {
  python3 -c 'import sys, urllib.request
sys.stdout.buffer.write(urllib.request.urlopen("http://127.0.0.1:8080/greeting", timeout=5).read())'
}
fetch > /shared/first
until [ -e /shared/go ]; do sleep 0.1; done
fetch > /dev/termination-log
"#;

fn init_status(pod: &Pod, name: &str) -> Option<ContainerStatus> {
    pod.status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == name)
        .cloned()
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn running(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn read_pid(dir: &Path, file: &str) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(dir.join(file))?;
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{file} holds {text:?}: {e}"))
}

/// Waits until the sidecar has started, is ready (both shown in
/// initContainerStatuses) and has restarted `restarts` times, and the main
/// container runs: the pod is then Initialized and Ready.
async fn wait_running(pods: &Api<Pod>, restarts: i32) -> Pod {
    poll_until_ok(
        Duration::from_secs(90),
        &format!("sidecar ready after {restarts} restarts, main running"),
        || async move {
            let list = pods
                .list(&ListParams::default().labels("job-name=with-sidecar"))
                .await?;
            let Some(pod) = list.items.into_iter().next() else {
                return Ok(None);
            };
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            anyhow::ensure!(
                !matches!(phase.as_deref(), Some("Succeeded" | "Failed")),
                "the pod is {phase:?} before the test let its main container finish"
            );
            let Some(sidecar) = init_status(&pod, "sidecar") else {
                return Ok(None);
            };
            let main = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|s| s.first())
                .is_some_and(running);
            let up = running(&sidecar)
                && sidecar.ready
                && sidecar.started == Some(true)
                && sidecar.restart_count == restarts
                && main
                && condition(&pod, "Initialized").as_deref() == Some("True")
                && condition(&pod, "Ready").as_deref() == Some("True");
            Ok(up.then_some(pod))
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_sidecar_completes_and_the_sidecar_is_stopped() {
    test_support::init_tracing();
    let plane = ControlPlane::start().await.unwrap();
    let agent = NodeAgent::start(&plane, NodeAgentOptions::default())
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    let baseline: BTreeSet<u32> = agent.pids().into_iter().collect();

    let shared = json!([{"name": "shared", "mountPath": "/shared"}]);
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "with-sidecar"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "initContainers": [{
                "name": "sidecar", "image": BAO_IMAGE, "restartPolicy": "Always",
                "command": ["sh", "-c", SIDECAR],
                "env": [{"name": "GREETING", "value": GREETING}],
                "ports": [{"name": "http", "containerPort": 8080}],
                "startupProbe": {"httpGet": {"path": "/greeting", "port": "http"},
                                 "periodSeconds": 1, "failureThreshold": 30},
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                "volumeMounts": shared,
            }],
            "containers": [{"name": "main", "image": BAO_IMAGE,
                            "command": ["sh", "-c", MAIN], "volumeMounts": shared}],
            "volumes": [{"name": "shared", "emptyDir": {}}],
        }}},
    }))
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    let pod = wait_running(&pods, 0).await;
    let name = pod.metadata.name.clone().unwrap();
    let shared_dir = agent.pod_volume_dir(NS, &name, "shared").unwrap();
    let first_sidecar = read_pid(&shared_dir, "sidecar.pid").unwrap();
    let main_pid = read_pid(&shared_dir, "main.pid").unwrap();
    assert_eq!(
        std::fs::read_to_string(shared_dir.join("first")).unwrap(),
        GREETING,
        "the main container started only once the sidecar served"
    );
    let mut pod_pids: BTreeSet<u32> = agent
        .pids()
        .into_iter()
        .filter(|p| !baseline.contains(p))
        .collect();
    assert!(
        pod_pids.contains(&first_sidecar) && pod_pids.contains(&main_pid),
        "the agent lists the pod's processes: {pod_pids:?}"
    );

    // A dead sidecar is restarted although the pod's restartPolicy is Never.
    kill(Pid::from_raw(first_sidecar as i32), Signal::SIGKILL).unwrap();
    let pod = wait_running(&pods, 1).await;
    let last = init_status(&pod, "sidecar").unwrap().last_state.unwrap();
    assert_eq!(last.terminated.unwrap().exit_code, 137);
    pod_pids.extend(agent.pids().into_iter().filter(|p| !baseline.contains(p)));

    std::fs::write(shared_dir.join("go"), "").unwrap();
    poll_until(Duration::from_secs(60), "job with-sidecar Complete", || {
        let jobs = jobs.clone();
        async move {
            let status = jobs.get("with-sidecar").await?.status;
            let conditions = status.and_then(|s| s.conditions).unwrap_or_default();
            let is = |t: &str| {
                conditions
                    .iter()
                    .any(|c| c.type_ == t && c.status == "True")
            };
            anyhow::ensure!(!is("Failed"), "job with-sidecar Failed");
            Ok(is("Complete"))
        }
    })
    .await
    .unwrap();

    let pod = pods.get(&name).await.unwrap();
    let status = pod.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let main = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (main.exit_code, main.message.as_deref()),
        (0, Some(GREETING)),
        "main reached the sidecar on 127.0.0.1; log: {}",
        agent.logs(NS, &name, "main").unwrap()
    );
    let sidecar = init_status(&pod, "sidecar").unwrap();
    let stopped = sidecar.state.unwrap().terminated.unwrap();
    assert_eq!(
        (stopped.exit_code, stopped.message.as_deref()),
        (128 + 15, Some("sidecar-stopped")),
        "stopped by SIGTERM after main exited, its termination message kept"
    );
    assert_eq!(sidecar.restart_count, 1);
    assert!(!sidecar.ready);
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"));

    for pid in &pod_pids {
        assert!(!pid_alive(*pid), "process {pid} of the pod outlived it");
    }
    assert_eq!(
        agent.pids().into_iter().collect::<BTreeSet<_>>(),
        baseline,
        "only the scheduler is left"
    );
}
