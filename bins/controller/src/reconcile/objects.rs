//! Step 3: render every object and apply what differs.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use lifecycle_types::cluster::RaftState;
use lifecycle_types::{OpenBaoCluster, names};

use super::ReconcileError;
use super::secrets::Material;
use crate::context::Context;
use crate::render::{self, Inputs};

/// What the applied objects say about the cluster's stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The StatefulSet as it is now (`None` while paused before creation).
    pub statefulset: Option<StatefulSet>,
    /// Pods the StatefulSet runs now; may exceed `spec.replicas` while
    /// scaled-away peers are still being removed from Raft.
    pub replicas: i32,
}

impl Stage {
    /// `status.updateRevision`: the revision a pod must run to be current.
    pub fn update_revision(&self) -> Option<&str> {
        self.statefulset
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.update_revision.as_deref())
    }
}

pub async fn apply(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    material: &Material,
    paused: bool,
) -> Result<Stage, ReconcileError> {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let settings = &ctx.settings;
    let applier = &ctx.applier;
    let status = cluster.status.as_ref();
    let mut inputs = Inputs::in_pod(
        &settings.operator_namespace,
        &settings.service_account_issuer,
    );
    inputs.initialized = status.is_some_and(|s| s.initialized);
    inputs.static_key_id = material.static_key_id.clone();
    inputs.jwks_url = settings.jwks_url.clone();
    inputs.tls_hash = material.tls_hash.clone();
    inputs.config_hash = render::config::hash(&render::config::render(cluster, &inputs)?);

    let live = applier
        .get::<StatefulSet>(&namespace, &names::statefulset(&name))
        .await?;
    let live_replicas = live.as_ref().and_then(|s| s.spec.replicas).unwrap_or(0);
    if paused {
        return Ok(Stage {
            statefulset: live,
            replicas: live_replicas,
        });
    }

    applier
        .apply(&render::rbac::service_account(cluster)?)
        .await?;
    applier.apply(&render::rbac::role(cluster)?).await?;
    applier.apply(&render::rbac::role_binding(cluster)?).await?;
    applier
        .apply(&render::config::config_map(cluster, &inputs)?)
        .await?;
    match render::self_init::config_map(cluster, &inputs)? {
        Some(map) => {
            applier.apply(&map).await?;
        }
        None => {
            applier
                .delete::<ConfigMap>(&namespace, &names::self_init_config_map(&name))
                .await?;
        }
    }
    applier.apply(&render::services::headless(cluster)?).await?;
    applier.apply(&render::services::active(cluster)?).await?;
    match render::pdb::pdb(cluster, &inputs)? {
        Some(pdb) => {
            applier.apply(&pdb).await?;
        }
        None => {
            applier
                .delete::<PodDisruptionBudget>(&namespace, &names::pod_disruption_budget(&name))
                .await?;
        }
    }
    applier
        .apply(&render::network_policy::network_policy(cluster)?)
        .await?;

    let mut desired = render::statefulset::statefulset(cluster, &inputs)?;
    let replicas = hold_for_raft(cluster, desired_replicas(&desired), live_replicas);
    desired.spec.replicas = Some(replicas);
    let statefulset = applier.apply(&desired).await?;
    Ok(Stage {
        statefulset: Some(statefulset),
        replicas,
    })
}

fn desired_replicas(set: &StatefulSet) -> i32 {
    set.spec.replicas.unwrap_or(1)
}

/// Scale-down waits until the departing pods' Raft peers are removed (see
/// `raft::step`), judged from the last status: a pod still listed as a
/// Raft member keeps its place in the StatefulSet.
fn hold_for_raft(cluster: &OpenBaoCluster, desired: i32, live: i32) -> i32 {
    if desired >= live {
        return desired;
    }
    let name = cluster.name_any();
    let set = names::statefulset(&name);
    let still_member = |ordinal: i32| {
        let pod = format!("{set}-{ordinal}");
        cluster.status.as_ref().is_some_and(|s| {
            s.nodes.iter().any(|n| {
                n.name == pod
                    && matches!(
                        n.raft_state,
                        RaftState::Leader | RaftState::Voter | RaftState::NonVoter
                    )
            })
        })
    };
    if (desired..live).any(still_member) {
        live
    } else {
        desired
    }
}
