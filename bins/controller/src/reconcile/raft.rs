//! Step 5b: Raft upkeep after initialization: autopilot configured as the
//! spec says, and the peers of scaled-away pods removed (never the leader:
//! it is stepped down first, and removal only targets ordinals at or above
//! `spec.replicas`).

use kube::ResourceExt;
use kube::runtime::events::EventType;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::events::{actions, reasons};
use lifecycle_types::names;
use lifecycle_types::validation::parse_duration;
use openbao_client::HealthState;
use openbao_client::raft::AutopilotConfig;

use super::snapshot::Snapshot;
use super::{ReconcileError, event};
use crate::context::Context;
use crate::openbao::ClusterConnection;
use crate::render;

/// True when it changed Raft membership (look again soon).
pub async fn step(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    connection: &ClusterConnection,
    snapshot: &Snapshot,
) -> Result<bool, ReconcileError> {
    let seen = &snapshot.openbao;
    let (Some(membership), Some(have)) = (&seen.membership, &seen.autopilot) else {
        return Ok(false);
    };
    let Some(active) = seen
        .pods
        .iter()
        .find(|p| p.health == Some(HealthState::Active))
        .map(|p| p.name.clone())
    else {
        return Ok(false);
    };
    let fail = |source| ReconcileError::OpenBao {
        pod: active.clone(),
        source,
    };
    let client = connection.logged_in(&active).await.map_err(fail)?;

    let want: AutopilotConfig = serde_json::from_value(render::autopilot::configuration(cluster))
        .map_err(|e| {
        ReconcileError::Render(render::RenderError::Build {
            kind: "autopilot configuration",
            message: e.to_string(),
        })
    })?;
    if !same_autopilot(have, &want) {
        client
            .set_autopilot_configuration(&want)
            .await
            .map_err(fail)?;
        event(
            ctx,
            cluster,
            EventType::Normal,
            reasons::AUTOPILOT_CONFIGURED,
            actions::CONFIGURE_AUTOPILOT,
            "Raft autopilot configured from spec.configuration.raft.autopilot",
        )
        .await;
        return Ok(true);
    }

    let set = names::statefulset(&cluster.name_any());
    let wanted: Vec<String> = (0..cluster.spec.replicas)
        .map(|i| format!("{set}-{i}"))
        .collect();
    let departing: Vec<_> = membership
        .members
        .iter()
        .filter(|m| is_scaled_away(&m.node_id, &set, cluster.spec.replicas))
        .collect();
    if departing.is_empty() || wanted.iter().any(|w| !membership.contains(w)) {
        // Removal waits until every wanted pod is a member, so quorum
        // never rests on the departing ones.
        return Ok(false);
    }
    for member in departing {
        if member.leader {
            client.step_down().await.map_err(fail)?;
            event(
                ctx,
                cluster,
                EventType::Normal,
                reasons::LEADER_STEPPED_DOWN,
                actions::SCALE_DOWN,
                &format!(
                    "{} is leaving (scale-down) and was the leader; it stepped down first",
                    member.node_id
                ),
            )
            .await;
            return Ok(true);
        }
        client
            .remove_peer_checked(&member.node_id)
            .await
            .map_err(fail)?;
        event(
            ctx,
            cluster,
            EventType::Normal,
            reasons::RAFT_PEER_REMOVED,
            actions::SCALE_DOWN,
            &format!(
                "removed Raft peer {} before its pod is scaled away",
                member.node_id
            ),
        )
        .await;
    }
    Ok(true)
}

/// A node id of this StatefulSet with an ordinal at or above `replicas`.
fn is_scaled_away(node_id: &str, set: &str, replicas: i32) -> bool {
    node_id
        .strip_prefix(set)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|ordinal| ordinal.parse::<i32>().ok())
        .is_some_and(|ordinal| ordinal >= replicas)
}

/// Equal settings; OpenBao answers durations normalized ("5m0s" for "5m").
fn same_autopilot(have: &AutopilotConfig, want: &AutopilotConfig) -> bool {
    let duration = |d: &Option<String>| d.as_deref().and_then(parse_duration);
    have.cleanup_dead_servers == want.cleanup_dead_servers
        && have.min_quorum == want.min_quorum
        && have.max_trailing_logs == want.max_trailing_logs
        && duration(&have.dead_server_last_contact_threshold)
            == duration(&want.dead_server_last_contact_threshold)
        && duration(&have.last_contact_threshold) == duration(&want.last_contact_threshold)
        && duration(&have.server_stabilization_time) == duration(&want.server_stabilization_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ordinals_at_or_above_replicas_are_scaled_away() {
        assert!(is_scaled_away("dev-3", "dev", 3));
        assert!(is_scaled_away("dev-4", "dev", 3));
        assert!(!is_scaled_away("dev-2", "dev", 3));
        assert!(!is_scaled_away("other-9", "dev", 3));
        assert!(!is_scaled_away("dev-x", "dev", 3));
        assert!(!is_scaled_away("dev-extra-5", "dev", 3));
    }

    #[test]
    fn normalized_durations_compare_equal() {
        let want = AutopilotConfig {
            dead_server_last_contact_threshold: Some("5m".into()),
            ..AutopilotConfig::default()
        };
        let have = AutopilotConfig {
            dead_server_last_contact_threshold: Some("5m0s".into()),
            ..AutopilotConfig::default()
        };
        assert!(same_autopilot(&have, &want));
    }
}
