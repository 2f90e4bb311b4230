//! The body the controller writes to `sys/storage/raft/autopilot/configuration`
//! (autopilot is runtime state, not server configuration).

use lifecycle_types::OpenBaoCluster;
use serde_json::{Value, json};

/// Autopilot settings for the cluster. `min_quorum` defaults to
/// max(3, replicas): autopilot never prunes a dead server below that many
/// voters, and OpenBao requires at least 3 whenever dead-server cleanup is on.
pub fn configuration(cluster: &OpenBaoCluster) -> Value {
    let autopilot = &cluster.spec.configuration.raft.autopilot;
    let min_quorum = autopilot
        .min_quorum
        .unwrap_or_else(|| cluster.spec.replicas.max(3));
    json!({
        "cleanup_dead_servers": autopilot.cleanup_dead_servers,
        "dead_server_last_contact_threshold": autopilot.dead_server_last_contact_threshold,
        "min_quorum": min_quorum,
        "server_stabilization_time": autopilot.server_stabilization_time,
        "last_contact_threshold": autopilot.last_contact_threshold,
        "max_trailing_logs": autopilot.max_trailing_logs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn min_quorum_defaults_to_at_least_three() {
        let mut cluster = fixtures::development();
        cluster.spec.replicas = 1;
        assert_eq!(configuration(&cluster)["min_quorum"], 3);
        cluster.spec.replicas = 5;
        assert_eq!(configuration(&cluster)["min_quorum"], 5);
        cluster.spec.configuration.raft.autopilot.min_quorum = Some(4);
        assert_eq!(configuration(&cluster)["min_quorum"], 4);
        assert_eq!(
            configuration(&cluster)["dead_server_last_contact_threshold"],
            "5m"
        );
    }
}
