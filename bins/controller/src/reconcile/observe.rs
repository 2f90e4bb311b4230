//! Step 4: what the pods and OpenBao say.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::ListParams;
use lifecycle_types::{OpenBaoCluster, labels, names};
use openbao_client::{Error as BaoError, HealthState};

use super::ReconcileError;
use super::objects::Stage;
use super::secrets::Material;
use crate::context::Context;
use crate::openbao::ClusterAddress;
use crate::status::{InitView, Observation, PodView};

/// Where the cluster's pods are and which CA to trust.
pub fn address(cluster: &OpenBaoCluster, material: &Material) -> ClusterAddress {
    ClusterAddress {
        name: cluster.name_any(),
        namespace: cluster.namespace().unwrap_or_default(),
        scheme: "https",
        ca_pem: material.ca_pem.clone(),
    }
}

pub async fn observe(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    material: &Material,
    stage: &Stage,
) -> Result<Observation, ReconcileError> {
    let name = cluster.name_any();
    let pods = cluster_pods(cluster, ctx).await?;
    let addr = address(cluster, material);
    let set = names::statefulset(&name);
    let count = stage.replicas.max(cluster.spec.replicas).max(0) as usize;
    let revision = stage.update_revision();

    let views = futures::future::join_all((0..count).map(|ordinal| {
        let pod_name = format!("{set}-{ordinal}");
        let pod = pods.iter().find(|p| p.name_any() == pod_name);
        let addr = &addr;
        async move {
            let exists = pod.is_some();
            let terminating = pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some());
            let ready = !terminating && pod.is_some_and(pod_ready);
            let current = match (pod, revision) {
                (Some(p), Some(rev)) => runs_revision(p, rev),
                _ => false,
            };
            let restarts = pod.map(restarts).unwrap_or(0);
            let running = pod
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Running");
            // A pod that is not running has no address to ask.
            let health = if running && !terminating {
                match ctx.openbao.pod(addr, &pod_name) {
                    Ok(client) => client.health().await.ok(),
                    Err(_) => None,
                }
            } else {
                None
            };
            PodView {
                name: pod_name,
                exists,
                running,
                ready,
                current,
                restarts,
                version: health
                    .as_ref()
                    .map(|h| h.body.version.clone())
                    .filter(|v| !v.is_empty()),
                health: health.map(|h| h.state),
            }
        }
    }))
    .await;

    let initialized = cluster.status.as_ref().is_some_and(|s| s.initialized);
    let mut seen = Observation {
        pods: views,
        membership: None,
        membership_error: None,
        init: if initialized {
            InitView::Done {
                by_operator: material.root_token_stored,
            }
        } else {
            InitView::Waiting(format!("waiting for the bootstrap pod {set}-0 to answer"))
        },
        tls: material.tls.clone(),
        root_token_stored: material.root_token_stored,
        invalid_spec: None,
        exposure_problem: stage.exposure_problem.clone(),
    };
    if initialized {
        read_membership(ctx, &addr, &mut seen).await;
    }
    Ok(seen)
}

/// Raft membership through the active node with the controller's login.
pub async fn read_membership(ctx: &Context, addr: &ClusterAddress, seen: &mut Observation) {
    let Some(active) = seen
        .pods
        .iter()
        .find(|p| p.health == Some(HealthState::Active))
        .map(|p| p.name.clone())
    else {
        seen.membership = None;
        return;
    };
    let result = async {
        let client = ctx.openbao.logged_in(addr, &active).await?;
        client.membership().await
    }
    .await;
    match result {
        Ok(membership) => {
            seen.membership = Some(membership);
            seen.membership_error = None;
        }
        Err(error) => {
            if matches!(error, BaoError::PermissionDenied { .. }) {
                ctx.openbao.forget(addr);
            }
            seen.membership = None;
            seen.membership_error = Some(format!(
                "the controller cannot read Raft state on {active} with its JWT role: {error}. Check that auth/jwt/role/openbao-operator exists with policy openbao-operator (created at bootstrap) and that the operator's projected token has audience openbao-internal"
            ));
        }
    }
}

/// The cluster's pods, by the cluster label.
pub async fn cluster_pods(
    cluster: &OpenBaoCluster,
    ctx: &Context,
) -> Result<Vec<Pod>, ReconcileError> {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    Ok(ctx
        .applier
        .api::<Pod>(&namespace)
        .list(&ListParams::default().labels(&format!("{}={name}", labels::CLUSTER)))
        .await
        .map_err(|source| crate::apply::api_error::<Pod>("list", &namespace, &name, source))?
        .items)
}

/// The pod was created from the StatefulSet revision `revision`.
pub fn runs_revision(pod: &Pod, revision: &str) -> bool {
    pod.labels()
        .get("controller-revision-hash")
        .map(String::as_str)
        == Some(revision)
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| {
            c.iter()
                .filter(|c| c.name == names::CONTAINER)
                .map(|c| c.restart_count)
                .sum()
        })
        .unwrap_or(0)
}
