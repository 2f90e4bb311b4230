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
use super::snapshot::{Material, Snapshot, Stage};
use crate::clusters::{ClusterState, lock};
use crate::context::Context;
use crate::render::{self, Inputs};

/// The inputs every renderer shares.
pub fn inputs(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    material: &Material,
) -> Result<Inputs, ReconcileError> {
    let settings = &ctx.settings;
    let mut inputs = Inputs::in_pod(
        &settings.operator_namespace,
        &settings.service_account_issuer,
    );
    inputs.initialized = cluster.status.as_ref().is_some_and(|s| s.initialized);
    inputs.static_key_id = material.static_key_id.clone();
    inputs.jwks_url = settings.jwks_url.clone();
    inputs.tls_hash = material.tls_hash.clone();
    inputs.config_hash = render::config::hash(&render::config::render(cluster, &inputs)?);
    Ok(inputs)
}

pub async fn apply(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    state: &ClusterState,
    snapshot: &Snapshot,
    material: &Material,
    paused: bool,
) -> Result<Stage, ReconcileError> {
    let namespace = &snapshot.namespace;
    let name = &snapshot.name;
    let applier = &ctx.applier;
    let known = &snapshot.objects;
    let verified = &state.verified;
    let live_replicas = snapshot.live_replicas();
    let cached_revision = snapshot
        .statefulset
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());
    if paused {
        return Ok(Stage {
            exposure_problem: None,
            update_revision: cached_revision,
            replicas: live_replicas,
        });
    }
    let inputs = inputs(cluster, ctx, material)?;

    applier
        .apply_known(
            &render::rbac::service_account(cluster)?,
            &known.service_account,
            verified,
        )
        .await?;
    applier
        .apply_known(
            &render::rbac::role_binding(cluster)?,
            &known.role_binding,
            verified,
        )
        .await?;
    applier
        .apply_known(
            &render::config::config_map(cluster, &inputs)?,
            &known.config_map,
            verified,
        )
        .await?;
    match render::self_init::config_map(cluster, &inputs)? {
        Some(map) => {
            applier
                .apply_known(&map, &known.self_init_config_map, verified)
                .await?;
        }
        None => {
            applier
                .delete_known::<ConfigMap>(
                    namespace,
                    &names::self_init_config_map(name),
                    &known.self_init_config_map,
                )
                .await?;
        }
    }
    applier
        .apply_known(
            &render::services::headless(cluster)?,
            &known.headless_service,
            verified,
        )
        .await?;
    applier
        .apply_known(
            &render::services::active(cluster)?,
            &known.active_service,
            verified,
        )
        .await?;
    match render::pdb::pdb(cluster, &inputs)? {
        Some(pdb) => {
            applier
                .apply_known(&pdb, &known.pod_disruption_budget, verified)
                .await?;
        }
        None => {
            applier
                .delete_known::<PodDisruptionBudget>(
                    namespace,
                    &names::pod_disruption_budget(name),
                    &known.pod_disruption_budget,
                )
                .await?;
        }
    }
    applier
        .apply_known(
            &render::network_policy::network_policy(cluster, &inputs)?,
            &known.network_policy,
            verified,
        )
        .await?;
    match render::exposure::ingress(cluster)? {
        Some(ingress) => {
            applier
                .apply_known(&ingress, &known.ingress, verified)
                .await?;
        }
        None => {
            applier
                .delete_known::<Ingress>(namespace, &names::ingress(name), &known.ingress)
                .await?;
        }
    }
    let exposure_problem = apply_route(cluster, ctx, state).await?;

    let mut desired = render::statefulset::statefulset(cluster, &inputs)?;
    let replicas = hold_for_raft(cluster, desired_replicas(&desired), live_replicas);
    desired.spec.replicas = Some(replicas);
    let applied = applier
        .apply_known(&desired, &known.statefulset, verified)
        .await?;
    let update_revision = match applied {
        Some(set) => set.status.and_then(|s| s.update_revision),
        None => cached_revision,
    };
    Ok(Stage {
        exposure_problem,
        update_revision,
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
    state: &ClusterState,
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
    // Routes are not watched (their CRDs may be missing): the kinds the
    // spec does not ask for are cleaned once per process and after each
    // spec change, not read on every reconcile.
    let generation = cluster.metadata.generation;
    if *lock(&state.routes_clean_for_generation) != generation {
        for resource in [http_route_resource(), tls_route_resource()] {
            if wanted.as_ref() != Some(&resource) {
                ctx.applier
                    .delete_from(&api(&resource), &resource.kind, &namespace, &route_name)
                    .await?;
            }
        }
        *lock(&state.routes_clean_for_generation) = generation;
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
