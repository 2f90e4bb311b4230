//! Node status and cluster-wide operations under `sys/`.

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::client::{Client, Replay, check_scheme, decode};
use crate::error::{Error, Result};

/// What `sys/health` says about one node, from its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// 200: the active node.
    Active,
    /// 429: an unsealed standby. Also what a node that lost quorum or was
    /// removed from Raft answers, so never judge membership by this alone
    /// (see [`crate::raft::Membership`]).
    Standby,
    /// 472: a disaster-recovery secondary.
    DrSecondary,
    /// 473: a performance standby (OpenBao has none; kept for completeness).
    PerformanceStandby,
    /// 501: not initialized.
    Uninitialized,
    /// 503: sealed.
    Sealed,
    /// 530: removed from the HA cluster.
    Removed,
    /// Any other code.
    Unknown(u16),
}

impl HealthState {
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            200 => Self::Active,
            429 => Self::Standby,
            472 => Self::DrSecondary,
            473 => Self::PerformanceStandby,
            501 => Self::Uninitialized,
            503 => Self::Sealed,
            530 => Self::Removed,
            other => Self::Unknown(other),
        }
    }

    /// Serving requests (active or standby).
    pub fn is_unsealed_member(self) -> bool {
        matches!(
            self,
            Self::Active | Self::Standby | Self::PerformanceStandby
        )
    }
}

/// The body of `sys/health`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct HealthBody {
    #[serde(default)]
    pub initialized: bool,
    #[serde(default)]
    pub sealed: bool,
    #[serde(default)]
    pub standby: bool,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub server_time_utc: Option<i64>,
}

/// One node's health: the state from the code plus the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub state: HealthState,
    pub body: HealthBody,
}

/// `sys/seal-status` (always 200, no token needed).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct SealStatus {
    #[serde(rename = "type", default)]
    pub seal_type: String,
    pub initialized: bool,
    pub sealed: bool,
    #[serde(default)]
    pub t: u32,
    #[serde(default)]
    pub n: u32,
    #[serde(default)]
    pub progress: u32,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub recovery_seal: bool,
    #[serde(default)]
    pub storage_type: Option<String>,
}

/// `sys/leader`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Leader {
    #[serde(default)]
    pub ha_enabled: bool,
    #[serde(default)]
    pub is_self: bool,
    /// Absent during an election.
    #[serde(default)]
    pub leader_address: Option<String>,
    #[serde(default)]
    pub leader_cluster_address: Option<String>,
    #[serde(default)]
    pub raft_committed_index: Option<u64>,
    #[serde(default)]
    pub raft_applied_index: Option<u64>,
}

impl Leader {
    /// The active node's API address as a URL, or `None` while no leader is
    /// elected. A caller sends its token there next, so an `http://` address
    /// is refused unless `allow_http` (TLS explicitly disabled for
    /// development): a node must not be able to move the caller to plain
    /// text. Pass [`Client::allows_http`] of the client that asked.
    pub fn leader_url(&self, allow_http: bool) -> Result<Option<url::Url>> {
        let Some(address) = self.leader_address.as_deref().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let url = url::Url::parse(address).map_err(|e| Error::Decode {
            path: "sys/leader".into(),
            message: format!("leader_address {address:?} is not a URL: {e}"),
        })?;
        check_scheme(&url, allow_http, "leader address (from sys/leader)")?;
        Ok(Some(url))
    }
}

/// Parameters of `sys/init`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InitRequest {
    /// Shamir seals only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_shares: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_threshold: Option<u32>,
    /// Auto-unseal (static, transit, KMS) only. Without recovery keys a
    /// static seal key cannot be rotated later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_shares: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_threshold: Option<u32>,
}

/// What `sys/init` returns. Holds secrets: its `Debug` redacts them.
#[derive(Clone, Deserialize)]
pub struct InitResponse {
    #[serde(default)]
    pub keys_base64: Vec<String>,
    #[serde(default)]
    pub recovery_keys_base64: Vec<String>,
    pub root_token: String,
}

impl std::fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitResponse")
            .field("keys", &self.keys_base64.len())
            .field("recovery_keys", &self.recovery_keys_base64.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `sys/health` on this node; every status code maps to a state rather
    /// than an error. Only transport failures are errors.
    pub async fn health(&self) -> Result<Health> {
        let path = "sys/health";
        let timeout = self.timeout();
        let response = self
            .request(Method::GET, path)?
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| Error::Transport {
                path: path.into(),
                source: source.without_url(),
            })?;
        let state = HealthState::from_status(response.status());
        let body = response.bytes().await.unwrap_or_default();
        Ok(Health {
            state,
            body: serde_json::from_slice(&body).unwrap_or_default(),
        })
    }

    pub async fn seal_status(&self) -> Result<SealStatus> {
        required(
            self.call_json(Method::GET, "sys/seal-status", None).await?,
            "sys/seal-status",
        )
    }

    pub async fn leader(&self) -> Result<Leader> {
        required(
            self.call_json(Method::GET, "sys/leader", None).await?,
            "sys/leader",
        )
    }

    /// Initializes the cluster. Not retried: a second call would fail.
    pub async fn init(&self, request: &InitRequest) -> Result<InitResponse> {
        let path = "sys/init";
        let body = serde_json::to_value(request).map_err(|e| Error::Config(e.to_string()))?;
        let response = self
            .send(path, Replay::IfNotApplied, || {
                Ok(self.request(Method::PUT, path)?.json(&body))
            })
            .await?;
        required(decode(path, response).await?, path)
    }

    /// Asks the active node to step down (needs `sudo`). Forwarded by
    /// standbys. Not retried: a retry could depose the new leader too.
    pub async fn step_down(&self) -> Result<()> {
        let path = "sys/step-down";
        self.send(path, Replay::Never, || self.request(Method::PUT, path))
            .await
            .map(drop)
    }
}

pub(crate) fn required<T>(value: Option<T>, path: &str) -> Result<T> {
    value.ok_or_else(|| Error::Decode {
        path: path.to_owned(),
        message: "empty answer".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_health_code_has_a_state() {
        let cases = [
            (200, HealthState::Active),
            (429, HealthState::Standby),
            (472, HealthState::DrSecondary),
            (473, HealthState::PerformanceStandby),
            (501, HealthState::Uninitialized),
            (503, HealthState::Sealed),
            (530, HealthState::Removed),
            (418, HealthState::Unknown(418)),
        ];
        for (code, state) in cases {
            assert_eq!(
                HealthState::from_status(StatusCode::from_u16(code).unwrap()),
                state
            );
        }
        assert!(HealthState::Standby.is_unsealed_member());
        assert!(!HealthState::Sealed.is_unsealed_member());
    }

    #[test]
    fn leader_addresses_are_https_unless_plain_http_is_allowed() {
        let leader = |address: &str| Leader {
            leader_address: Some(address.into()),
            ..Leader::default()
        };
        assert_eq!(
            leader("https://10.0.0.2:8200").leader_url(false).unwrap(),
            Some("https://10.0.0.2:8200".parse().unwrap())
        );
        let err = leader("http://10.0.0.2:8200")
            .leader_url(false)
            .unwrap_err();
        assert!(
            matches!(err, Error::Config(_)) && err.to_string().contains("http://10.0.0.2:8200"),
            "{err}"
        );
        assert!(err.to_string().contains("use https://"), "{err}");
        assert_eq!(
            leader("http://10.0.0.2:8200").leader_url(true).unwrap(),
            Some("http://10.0.0.2:8200".parse().unwrap())
        );
        assert!(leader("ftp://x").leader_url(true).is_err());
        assert!(matches!(
            leader("not a url").leader_url(true),
            Err(Error::Decode { .. })
        ));
        assert_eq!(leader("").leader_url(false).unwrap(), None);
        assert_eq!(Leader::default().leader_url(false).unwrap(), None);
    }

    #[test]
    fn init_response_debug_hides_the_root_token() {
        let response: InitResponse = serde_json::from_str(
            r#"{"keys_base64":[],"recovery_keys_base64":["cmVj"],"root_token":"s.rootvalue"}"#,
        )
        .unwrap();
        let text = format!("{response:?}");
        assert!(
            !text.contains("rootvalue") && !text.contains("cmVj"),
            "{text}"
        );
    }
}
