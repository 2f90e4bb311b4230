//! Raft membership and autopilot under `sys/storage/raft/`.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::sys::required;

/// One server in the Raft configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct RaftServer {
    pub node_id: String,
    pub address: String,
    #[serde(default)]
    pub leader: bool,
    #[serde(default)]
    pub voter: bool,
}

/// `sys/storage/raft/configuration`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct RaftConfiguration {
    pub servers: Vec<RaftServer>,
    #[serde(default)]
    pub index: u64,
}

/// Parameters of `sys/storage/raft/join`, sent to the node that joins.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinRequest {
    pub leader_api_addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_ca_cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_tls_servername: Option<String>,
    /// Join as a non-voter (read replica; promoted only explicitly).
    pub non_voter: bool,
    pub retry: bool,
}

/// Autopilot settings. Unknown fields are ignored by the server, so only
/// the ones OpenBao implements are modelled.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct AutopilotConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_dead_servers: Option<bool>,
    /// At least "1m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_server_last_contact_threshold: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact_threshold: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_trailing_logs: Option<u64>,
    /// At least 3 when `cleanup_dead_servers` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_quorum: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_stabilization_time: Option<String>,
}

/// One server as autopilot sees it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct AutopilotServer {
    pub id: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub node_status: String,
    #[serde(default)]
    pub healthy: bool,
    /// "leader", "voter" or "non-voter".
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub last_index: u64,
    #[serde(default)]
    pub last_term: u64,
    #[serde(default)]
    pub node_type: String,
}

/// `sys/storage/raft/autopilot/state`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct AutopilotState {
    pub healthy: bool,
    pub failure_tolerance: i64,
    #[serde(default)]
    pub leader: String,
    #[serde(default)]
    pub voters: Vec<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, AutopilotServer>,
}

/// A member as the operator should judge it: from the Raft configuration
/// (who is in the cluster) joined with autopilot (who is healthy). Health
/// alone misleads: a removed or quorum-less node still answers 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: String,
    pub address: String,
    pub voter: bool,
    pub leader: bool,
    /// `None` when autopilot state could not be read.
    pub healthy: Option<bool>,
    pub version: Option<String>,
}

/// The cluster's membership view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub members: Vec<Member>,
    /// From autopilot; `None` when it could not be read.
    pub failure_tolerance: Option<i64>,
    pub healthy: Option<bool>,
}

impl Membership {
    /// Joins the configuration with autopilot state (if readable).
    pub fn from_parts(config: &RaftConfiguration, autopilot: Option<&AutopilotState>) -> Self {
        let members = config
            .servers
            .iter()
            .map(|server| {
                let seen = autopilot.and_then(|a| a.servers.get(&server.node_id));
                Member {
                    node_id: server.node_id.clone(),
                    address: server.address.clone(),
                    voter: server.voter,
                    leader: server.leader,
                    healthy: autopilot.map(|_| seen.is_some_and(|s| s.healthy)),
                    version: seen.map(|s| s.version.clone()).filter(|v| !v.is_empty()),
                }
            })
            .collect();
        Self {
            members,
            failure_tolerance: autopilot.map(|a| a.failure_tolerance),
            healthy: autopilot.map(|a| a.healthy),
        }
    }

    pub fn voters(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.voter)
    }

    pub fn leader(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.leader)
    }

    pub fn contains(&self, node_id: &str) -> bool {
        self.members.iter().any(|m| m.node_id == node_id)
    }
}

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Deserialize)]
struct ConfigData {
    config: RaftConfiguration,
}

impl Client {
    pub async fn raft_configuration(&self) -> Result<RaftConfiguration> {
        let path = "sys/storage/raft/configuration";
        let data: Data<ConfigData> =
            required(self.call_json(Method::GET, path, None).await?, path)?;
        Ok(data.data.config)
    }

    /// Asks *this* node to join the cluster led from `request.leader_api_addr`.
    pub async fn raft_join(&self, request: &JoinRequest) -> Result<bool> {
        let path = "sys/storage/raft/join";
        let body = serde_json::to_value(request).map_err(|e| Error::Config(e.to_string()))?;
        let answer: Option<serde_json::Value> =
            self.call_json(Method::POST, path, Some(&body)).await?;
        Ok(answer.is_some_and(|v| v["joined"] == serde_json::Value::Bool(true)))
    }

    /// Removes a peer. OpenBao accepts unknown ids (204) and will remove the
    /// leader itself, so callers must check membership first
    /// ([`Client::remove_peer_checked`]).
    pub async fn raft_remove_peer(&self, node_id: &str) -> Result<()> {
        self.raft_node_op("sys/storage/raft/remove-peer", node_id)
            .await
    }

    /// Removes `node_id` only if it is a member and not the leader.
    pub async fn remove_peer_checked(&self, node_id: &str) -> Result<()> {
        let config = self.raft_configuration().await?;
        match config.servers.iter().find(|s| s.node_id == node_id) {
            None => Ok(()),
            Some(server) if server.leader => Err(Error::Config(format!(
                "refusing to remove {node_id}: it is the Raft leader; step it down first"
            ))),
            Some(_) => self.raft_remove_peer(node_id).await,
        }
    }

    /// Makes a non-voter a voter (applied by autopilot within seconds).
    pub async fn raft_promote(&self, node_id: &str) -> Result<()> {
        self.raft_node_op("sys/storage/raft/promote", node_id).await
    }

    /// Makes a voter a non-voter (applied by autopilot within seconds).
    pub async fn raft_demote(&self, node_id: &str) -> Result<()> {
        self.raft_node_op("sys/storage/raft/demote", node_id).await
    }

    async fn raft_node_op(&self, path: &str, node_id: &str) -> Result<()> {
        let body = json!({ "server_id": node_id });
        self.call_json::<serde_json::Value>(Method::POST, path, Some(&body))
            .await
            .map(drop)
    }

    pub async fn autopilot_configuration(&self) -> Result<AutopilotConfig> {
        let path = "sys/storage/raft/autopilot/configuration";
        let data: Data<AutopilotConfig> =
            required(self.call_json(Method::GET, path, None).await?, path)?;
        Ok(data.data)
    }

    /// Merges the set fields into the autopilot configuration.
    pub async fn set_autopilot_configuration(&self, config: &AutopilotConfig) -> Result<()> {
        let path = "sys/storage/raft/autopilot/configuration";
        let body = serde_json::to_value(config).map_err(|e| Error::Config(e.to_string()))?;
        self.call_json::<serde_json::Value>(Method::POST, path, Some(&body))
            .await
            .map(drop)
    }

    pub async fn autopilot_state(&self) -> Result<AutopilotState> {
        let path = "sys/storage/raft/autopilot/state";
        let data: Data<AutopilotState> =
            required(self.call_json(Method::GET, path, None).await?, path)?;
        Ok(data.data)
    }

    /// Raft configuration joined with autopilot state; autopilot is optional
    /// (a policy without it still gets the membership, with unknown health).
    pub async fn membership(&self) -> Result<Membership> {
        let config = self.raft_configuration().await?;
        let autopilot = match self.autopilot_state().await {
            Ok(state) => Some(state),
            Err(Error::PermissionDenied { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(Membership::from_parts(&config, autopilot.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RaftConfiguration {
        serde_json::from_value(json!({"servers": [
            {"node_id": "a", "address": "10.0.0.1:8201", "leader": true, "voter": true},
            {"node_id": "b", "address": "10.0.0.2:8201", "leader": false, "voter": true},
            {"node_id": "c", "address": "10.0.0.3:8201", "leader": false, "voter": false},
        ], "index": 0}))
        .unwrap()
    }

    #[test]
    fn membership_marks_members_missing_from_autopilot_unhealthy() {
        let autopilot: AutopilotState = serde_json::from_value(json!({
            "healthy": false, "failure_tolerance": 0, "leader": "a", "voters": ["a", "b"],
            "servers": {
                "a": {"id": "a", "healthy": true, "status": "leader", "version": "2.7.2"},
                "b": {"id": "b", "healthy": false, "status": "voter", "version": "2.6.2"},
            }
        }))
        .unwrap();
        let view = Membership::from_parts(&config(), Some(&autopilot));
        let health: Vec<_> = view.members.iter().map(|m| m.healthy).collect();
        assert_eq!(health, [Some(true), Some(false), Some(false)]);
        assert_eq!(view.voters().count(), 2);
        assert_eq!(view.leader().unwrap().node_id, "a");
        assert_eq!(view.members[1].version.as_deref(), Some("2.6.2"));
        assert_eq!(view.failure_tolerance, Some(0));
    }

    #[test]
    fn membership_without_autopilot_has_unknown_health() {
        let view = Membership::from_parts(&config(), None);
        assert!(view.members.iter().all(|m| m.healthy.is_none()));
        assert!(view.contains("c") && !view.contains("d"));
    }

    #[test]
    fn autopilot_config_sends_only_set_fields() {
        let config = AutopilotConfig {
            cleanup_dead_servers: Some(true),
            min_quorum: Some(3),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&config).unwrap(),
            json!({"cleanup_dead_servers": true, "min_quorum": 3})
        );
    }
}
