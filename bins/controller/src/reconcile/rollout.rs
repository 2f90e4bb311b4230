//! Step 5c: the rollout gate, the only place pods are restarted.
//!
//! The StatefulSet uses `OnDelete`, so a new template (image, config hash,
//! certificates, resources, the end of bootstrap) restarts nothing by
//! itself. Here one outdated pod at a time is deleted and recreated from
//! the new template: standbys first, the leader last and only after it
//! stepped down, and only when every wanted pod is ready and Raft is
//! healthy with a failure tolerance left.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::events::{actions, reasons};
use openbao_client::HealthState;

use super::snapshot::OpenBaoView;
use super::{ReconcileError, event};
use crate::context::Context;
use crate::openbao::ClusterConnection;
use crate::status::PodView;

/// What the gate may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Every pod runs the current template.
    Done,
    /// Something must settle first (the reason, for logs).
    Wait(String),
    /// Restart this standby.
    Restart(String),
    /// Ask the leader to step down; it is restarted on a later look.
    StepDown(String),
}

/// The gate's decision, a pure function of what was observed.
pub fn decide(replicas: i32, seen: &OpenBaoView) -> Gate {
    let wanted: Vec<&PodView> = seen.pods.iter().take(replicas.max(0) as usize).collect();
    let outdated: Vec<&PodView> = wanted.iter().copied().filter(|p| !p.current).collect();
    if outdated.is_empty() {
        return Gate::Done;
    }
    if let Some(pod) = wanted.iter().find(|p| !p.exists || !p.ready) {
        return Gate::Wait(format!("{} is not ready", pod.name));
    }
    if replicas > 1 {
        let Some(membership) = &seen.membership else {
            return Gate::Wait("Raft membership is unknown".into());
        };
        if membership.healthy != Some(true) {
            return Gate::Wait("autopilot does not report Raft healthy".into());
        }
        // Every wanted pod a voter: a restart then never leaves the quorum
        // to a minority (a freshly joined non-voter does not count).
        if let Some(pod) = wanted
            .iter()
            .find(|p| !membership.voters().any(|v| v.node_id == p.name))
        {
            return Gate::Wait(format!("{} is not a Raft voter yet", pod.name));
        }
        if membership.voters().count() >= 3 && membership.failure_tolerance.unwrap_or(0) < 1 {
            return Gate::Wait("no failure tolerance left".into());
        }
    }
    // Standbys first, highest ordinal first (the order a StatefulSet uses).
    if let Some(standby) = outdated
        .iter()
        .rev()
        .find(|p| p.health != Some(HealthState::Active))
    {
        return Gate::Restart(standby.name.clone());
    }
    let leader = &outdated[0].name;
    if replicas > 1 {
        Gate::StepDown(leader.clone())
    } else {
        // A single server cannot hand over; its restart is the outage the
        // user chose with one replica.
        Gate::Restart(leader.clone())
    }
}

/// Applies the gate's decision; true while a rollout is in progress.
pub async fn step(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    connection: &ClusterConnection,
    seen: &OpenBaoView,
) -> Result<bool, ReconcileError> {
    match decide(cluster.spec.replicas, seen) {
        Gate::Done => Ok(false),
        Gate::Wait(reason) => {
            tracing::debug!(cluster = %cluster.name_any(), %reason, "rollout waits");
            Ok(true)
        }
        Gate::StepDown(pod) => {
            let fail = |source| ReconcileError::OpenBao {
                pod: pod.clone(),
                source,
            };
            let client = connection.logged_in(&pod).await.map_err(fail)?;
            client.step_down().await.map_err(fail)?;
            event(
                ctx,
                cluster,
                EventType::Normal,
                reasons::LEADER_STEPPED_DOWN,
                actions::ROLLOUT,
                &format!("{pod} stepped down so it can be restarted with the new template"),
            )
            .await;
            Ok(true)
        }
        Gate::Restart(pod) => {
            let namespace = cluster.namespace().unwrap_or_default();
            ctx.applier
                .delete_known::<Pod>(&namespace, &pod, &crate::stores::Known::Unknown)
                .await?;
            event(
                ctx,
                cluster,
                EventType::Normal,
                reasons::POD_RESTARTED,
                actions::ROLLOUT,
                &format!(
                    "restarted {pod} to apply the new template (one pod at a time, standbys first, health and quorum checked)"
                ),
            )
            .await;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openbao_client::raft::{Member, Membership};

    fn pod(name: &str, health: HealthState, current: bool) -> PodView {
        PodView {
            name: name.into(),
            exists: true,
            running: true,
            ready: true,
            current,
            restarts: 0,
            health: Some(health),
            version: None,
        }
    }

    fn seen(pods: Vec<PodView>, tolerance: i64) -> OpenBaoView {
        let members = pods
            .iter()
            .map(|p| Member {
                node_id: p.name.clone(),
                address: String::new(),
                voter: true,
                leader: p.health == Some(HealthState::Active),
                healthy: Some(true),
                version: None,
            })
            .collect();
        OpenBaoView {
            pods,
            membership: Some(Membership {
                members,
                failure_tolerance: Some(tolerance),
                healthy: Some(true),
            }),
            ..OpenBaoView::default()
        }
    }

    #[test]
    fn standbys_go_first_then_the_leader_steps_down() {
        let all_old = vec![
            pod("b-0", HealthState::Active, false),
            pod("b-1", HealthState::Standby, false),
            pod("b-2", HealthState::Standby, false),
        ];
        assert_eq!(decide(3, &seen(all_old, 1)), Gate::Restart("b-2".into()));
        let leader_left = vec![
            pod("b-0", HealthState::Active, false),
            pod("b-1", HealthState::Standby, true),
            pod("b-2", HealthState::Standby, true),
        ];
        assert_eq!(
            decide(3, &seen(leader_left, 1)),
            Gate::StepDown("b-0".into())
        );
    }

    #[test]
    fn nothing_restarts_without_ready_pods_or_quorum_margin() {
        let mut pods = vec![
            pod("b-0", HealthState::Active, true),
            pod("b-1", HealthState::Standby, false),
            pod("b-2", HealthState::Standby, true),
        ];
        assert!(matches!(decide(3, &seen(pods.clone(), 0)), Gate::Wait(_)));
        pods[2].ready = false;
        assert!(matches!(decide(3, &seen(pods.clone(), 1)), Gate::Wait(_)));
        pods[2].ready = true;
        let mut unhealthy = seen(pods.clone(), 1);
        if let Some(m) = unhealthy.membership.as_mut() {
            m.healthy = Some(false);
        }
        assert!(matches!(decide(3, &unhealthy), Gate::Wait(_)));
        let mut non_voter = seen(pods.clone(), 1);
        if let Some(m) = non_voter.membership.as_mut() {
            m.members[2].voter = false;
        }
        assert!(matches!(decide(3, &non_voter), Gate::Wait(_)));
        assert_eq!(decide(3, &seen(pods, 1)), Gate::Restart("b-1".into()));
    }

    #[test]
    fn a_current_cluster_needs_nothing() {
        let pods = vec![pod("b-0", HealthState::Active, true)];
        assert_eq!(decide(1, &seen(pods, 0)), Gate::Done);
    }
}
