//! The manifest: the proof that a snapshot upload completed, and what the
//! restore checks before a single byte reaches OpenBao.

use serde::{Deserialize, Serialize};

/// Current manifest format.
pub const FORMAT_VERSION: u32 = 1;

/// Written next to each snapshot, after its upload completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    /// The `OpenBaoCluster` (or the name given on the command line).
    pub cluster: String,
    pub namespace: String,
    /// OpenBao's own cluster id, when the active node reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Version of the node that produced the snapshot.
    pub openbao_version: String,
    /// Raft position of the snapshot, read from its own `meta.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_term: Option<u64>,
    /// Object path of the snapshot, relative to the store's root.
    pub snapshot: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the snapshot bytes.
    pub sha256: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Compares dotted versions numerically (`2.10.0` > `2.9.9`); `None` if
/// either is not MAJOR.MINOR.PATCH.
pub fn compare_versions(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let parse = |v: &str| -> Option<Vec<u64>> {
        let parts: Vec<u64> = v
            .trim_start_matches('v')
            .split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        (parts.len() == 3).then_some(parts)
    };
    Some(parse(a)?.cmp(&parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("2.7.2", "2.6.2"), Some(Ordering::Greater));
        assert_eq!(compare_versions("2.10.0", "2.9.9"), Some(Ordering::Greater));
        assert_eq!(compare_versions("v2.7.2", "2.7.2"), Some(Ordering::Equal));
        assert_eq!(
            compare_versions("2.7.2-rc1", "2.7.2"),
            Some(Ordering::Equal)
        );
        assert_eq!(compare_versions("2.7", "2.7.2"), None);
    }

    #[test]
    fn manifest_round_trips_as_camel_case_json() {
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            cluster: "vault".into(),
            namespace: "team-a".into(),
            cluster_id: Some("abc".into()),
            openbao_version: "2.7.2".into(),
            raft_index: Some(42),
            raft_term: Some(3),
            snapshot: "p/team-a/vault/20261125T210000Z-x.snap".into(),
            size: 10,
            sha256: "00".repeat(32),
            started_at: "2026-11-25T21:00:00Z".parse().unwrap(),
            finished_at: "2026-11-25T21:00:01Z".parse().unwrap(),
        };
        let json = manifest.to_json();
        assert!(String::from_utf8_lossy(&json).contains("\"openbaoVersion\""));
        assert_eq!(Manifest::from_json(&json).unwrap(), manifest);
    }
}
