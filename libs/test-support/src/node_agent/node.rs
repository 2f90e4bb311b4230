//! The cluster-facing parts of a kubelet that are not about one pod: the
//! Node object and its lease, the scheduler, and a PersistentVolume
//! provisioner.
//!
//! - Each node is registered Ready with the configured capacity; its Lease
//!   in `kube-node-lease` is renewed every 10 s (the node lifecycle
//!   controller marks a node NotReady after 40 s without renewal) and its
//!   status is re-sent every minute.
//! - The real `kube-scheduler` binds pods to the nodes, so affinity,
//!   resources and volume binding behave as in a cluster.
//! - Every pending PersistentVolumeClaim gets a PersistentVolume pre-bound to
//!   it (`claimRef`), backed by a folder under the agent's directory; the
//!   real PV controller then binds the pair. The folder is keyed by the
//!   claim's uid, so it survives pod restarts and is gone when the claim is
//!   deleted (reclaim policy Delete, carried out here).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

/// Annotation marking the PersistentVolumes this agent provisioned.
pub const PROVISIONED_BY: &str = "openbao-operator-node-agent";
const FIELD_MANAGER: &str = "node-agent";

/// What each node reports as capacity (and allocatable).
#[derive(Debug, Clone)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            cpu: "8".into(),
            memory: "16Gi".into(),
            pods: 110,
        }
    }
}

fn now_time() -> Value {
    serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null)
}

/// The Node object (metadata and spec) a kubelet registers.
pub fn node_object(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.openbao.org/node-agent": "true",
            },
        },
        "spec": {},
    })
}

/// The node status: Ready, the capacity, and the bridge address as
/// InternalIP.
pub fn node_status(name: &str, ip: Ipv4Addr, capacity: &Capacity) -> Value {
    let now = now_time();
    let resources = json!({
        "cpu": capacity.cpu,
        "memory": capacity.memory,
        "pods": capacity.pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "node agent"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "node agent"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "node agent"),
                condition("Ready", "True", "KubeletReady", "node agent is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": ip.to_string()},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "node-agent", "systemUUID": "node-agent", "bootID": "node-agent",
                "kernelVersion": "", "osImage": "openbao-operator node agent",
                "containerRuntimeVersion": "node-agent://1", "kubeletVersion": "v1.37.2",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    })
}

/// Creates (or takes over) each node and posts its status and lease.
pub async fn register(
    client: &kube::Client,
    names: &[String],
    ip: Ipv4Addr,
    capacity: &Capacity,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in names {
        nodes
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(node_object(name)),
            )
            .await?;
        post_status(client, name, ip, capacity).await?;
        renew_lease(client, name).await?;
    }
    Ok(())
}

async fn post_status(
    client: &kube::Client,
    name: &str,
    ip: Ipv4Addr,
    capacity: &Capacity,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(node_status(name, ip, capacity)),
        )
        .await?;
    Ok(())
}

async fn renew_lease(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": serde_json::to_value(MicroTime(Timestamp::now()))?,
        },
    });
    leases
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(lease),
        )
        .await?;
    Ok(())
}

/// Renews leases every 10 s and re-posts status every minute, forever.
pub async fn heartbeat(client: kube::Client, names: Vec<String>, ip: Ipv4Addr, capacity: Capacity) {
    let mut tick = 0u32;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        tick += 1;
        for name in &names {
            if let Err(e) = renew_lease(&client, name).await {
                tracing::warn!("node agent: renewing the lease of {name}: {e:#}");
            }
            if tick.is_multiple_of(6)
                && let Err(e) = post_status(&client, name, ip, &capacity).await
            {
                tracing::warn!("node agent: posting the status of {name}: {e:#}");
            }
        }
    }
}

/// The scheduler's configuration file: no leader election, the admin
/// kubeconfig.
pub fn scheduler_config(kubeconfig: &Path) -> String {
    format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\n\
         kind: KubeSchedulerConfiguration\n\
         clientConnection:\n  kubeconfig: {}\n\
         leaderElection:\n  leaderElect: false\n",
        serde_json::to_string(&kubeconfig.display().to_string()).unwrap_or_default()
    )
}

/// The PersistentVolume pre-bound to `claim`, backed by `dir`.
pub fn volume_for_claim(claim: &PersistentVolumeClaim, dir: &Path) -> Option<Value> {
    let uid = claim.metadata.uid.as_deref()?;
    let spec = claim.spec.as_ref()?;
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "1Gi".to_owned(), |q| q.0.clone());
    let mut pv = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": format!("pvc-{uid}"),
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONED_BY},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": "Delete",
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": dir.display().to_string(), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": claim.metadata.namespace, "name": claim.metadata.name, "uid": uid,
            },
        },
    });
    if let Some(class) = &spec.storage_class_name {
        pv["spec"]["storageClassName"] = json!(class);
    }
    Some(pv)
}

/// Provisions and reclaims volumes until aborted.
pub async fn provisioner(client: kube::Client, root: PathBuf) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claim_events = watcher(claims, watcher::Config::default()).map(either_claim);
    let volume_events = watcher(volumes.clone(), watcher::Config::default()).map(either_volume);
    let mut events = std::pin::pin!(futures::stream::select(claim_events, volume_events));
    while let Some(event) = events.next().await {
        match event {
            Watched::Claim(claim) => {
                let pending =
                    claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
                let unbound = claim
                    .spec
                    .as_ref()
                    .is_none_or(|s| s.volume_name.as_deref().unwrap_or("").is_empty());
                if !(pending && unbound) || claim.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let Some(uid) = claim.metadata.uid.clone() else {
                    continue;
                };
                let dir = root.join(format!("pvc-{uid}"));
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    tracing::warn!("node agent: creating {}: {e}", dir.display());
                    continue;
                }
                let Some(pv) = volume_for_claim(&claim, &dir) else {
                    continue;
                };
                let pv: PersistentVolume = match serde_json::from_value(pv) {
                    Ok(pv) => pv,
                    Err(e) => {
                        tracing::warn!("node agent: building a PersistentVolume: {e}");
                        continue;
                    }
                };
                match volumes.create(&PostParams::default(), &pv).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => tracing::warn!("node agent: creating a PersistentVolume: {e}"),
                }
            }
            Watched::Volume(pv) => {
                let ours = pv
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
                    .is_some_and(|v| v == PROVISIONED_BY);
                let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
                if !ours || !matches!(phase, Some("Released" | "Failed")) {
                    continue;
                }
                let Some(name) = pv.metadata.name.clone() else {
                    continue;
                };
                let _ = std::fs::remove_dir_all(root.join(&name));
                match volumes.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => tracing::warn!("node agent: deleting PersistentVolume {name}: {e}"),
                }
            }
            Watched::Nothing => {}
        }
    }
}

enum Watched {
    Claim(Box<PersistentVolumeClaim>),
    Volume(Box<PersistentVolume>),
    Nothing,
}

fn either_claim(event: Result<watcher::Event<PersistentVolumeClaim>, watcher::Error>) -> Watched {
    match event {
        Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => Watched::Claim(Box::new(c)),
        _ => Watched::Nothing,
    }
}

fn either_volume(event: Result<watcher::Event<PersistentVolume>, watcher::Error>) -> Watched {
    match event {
        Ok(watcher::Event::Apply(v) | watcher::Event::InitApply(v)) => Watched::Volume(Box::new(v)),
        _ => Watched::Nothing,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_status_is_ready_with_capacity_and_address() {
        let status = node_status("n1", Ipv4Addr::new(10, 244, 3, 1), &Capacity::default());
        let node: Node = serde_json::from_value(status).unwrap();
        let status = node.status.unwrap();
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(status.allocatable.unwrap()["pods"].0, "110");
        assert_eq!(status.addresses.unwrap()[0].address, "10.244.3.1");
    }

    #[test]
    fn a_claim_gets_a_pre_bound_volume_of_its_size_and_class() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data-bao-0", "namespace": "ns", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "resources": {"requests": {"storage": "2Gi"}}},
        }))
        .unwrap();
        let pv: PersistentVolume =
            serde_json::from_value(volume_for_claim(&claim, Path::new("/x/pvc-u1")).unwrap())
                .unwrap();
        let spec = pv.spec.unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u1"));
        assert_eq!(spec.capacity.unwrap()["storage"].0, "2Gi");
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(
            (claim_ref.name.as_deref(), claim_ref.uid.as_deref()),
            (Some("data-bao-0"), Some("u1"))
        );
        assert_eq!(spec.host_path.unwrap().path, "/x/pvc-u1");
    }
}
