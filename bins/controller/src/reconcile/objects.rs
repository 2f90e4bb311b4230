//! Step 3: render every object and apply what differs.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use lifecycle_types::cluster::RaftState;
use lifecycle_types::{OpenBaoCluster, names};

use super::ReconcileError;
use super::secrets::Material;
use crate::context::Context;
use crate::render::{self, Inputs};

/// What the applied objects say about the cluster's stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Why the requested exposure could not be applied (Gateway API CRDs
    /// missing), for the Degraded condition.
    pub exposure_problem: Option<String>,
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
            exposure_problem: None,
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

    match render::exposure::ingress(cluster)? {
        Some(ingress) => {
            applier.apply(&ingress).await?;
        }
        None => {
            applier
                .delete::<Ingress>(&namespace, &names::ingress(&name))
                .await?;
        }
    }
    let exposure_problem = apply_route(cluster, ctx).await?;

    let mut desired = render::statefulset::statefulset(cluster, &inputs)?;
    let replicas = hold_for_raft(cluster, desired_replicas(&desired), live_replicas);
    desired.spec.replicas = Some(replicas);
    let statefulset = applier.apply(&desired).await?;
    Ok(Stage {
        exposure_problem,
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

/// The Gateway API route, if `spec.gateway` asks for one, and no route of
/// the other kind. The Gateway API is optional in a cluster: when its CRDs
/// are missing the route cannot exist, and the answer says so.
async fn apply_route(
    cluster: &OpenBaoCluster,
    ctx: &Context,
) -> Result<Option<String>, ReconcileError> {
    use render::exposure::{
        http_route_resource, route, route_api_resource, route_name, tls_route_resource,
    };
    let namespace = cluster.namespace().unwrap_or_default();
    let wanted = route_api_resource(cluster);
    let route_name = route_name(&cluster.name_any());
    let api = |resource: &kube::discovery::ApiResource| {
        Api::<DynamicObject>::namespaced_with(ctx.client().clone(), &namespace, resource)
    };
    for resource in [http_route_resource(), tls_route_resource()] {
        if wanted.as_ref() != Some(&resource) {
            ctx.applier
                .delete_from(&api(&resource), &resource.kind, &namespace, &route_name)
                .await?;
        }
    }
    let (Some(resource), Some(desired)) = (wanted, route(cluster)?) else {
        return Ok(None);
    };
    match ctx.applier.apply_dynamic(&api(&resource), &desired).await {
        Ok(_) => Ok(None),
        Err(error) if error.is_not_found() => Ok(Some(format!(
            "spec.gateway asks for a {} but the Gateway API CRDs ({}) are not installed; install them or disable spec.gateway",
            resource.kind, resource.group
        ))),
        Err(error) => Err(error.into()),
    }
}
