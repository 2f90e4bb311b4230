//! The manifest: the proof that a snapshot upload completed, and what the
//! restore checks before a single byte reaches OpenBao.

use serde::{Deserialize, Serialize};

/// Current manifest format.
pub const FORMAT_VERSION: u32 = 1;

/// The largest manifest read (64 KiB). One this tool writes is well under
/// 1 KiB; anything larger is refused before it is parsed.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

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
    /// The `OpenBaoCluster`'s metadata.uid, when the operator ran the backup:
    /// a restore into a new cluster needs it to find the operator's own JWT
    /// role in the restored data (its audience names the old uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_uid: Option<String>,
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

/// What the operator of a restore accepted on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOverrides {
    /// `--allow-other-cluster`: the backup may come from another OpenBao
    /// cluster, or from one whose id cannot be compared.
    pub allow_other_cluster: bool,
    /// `--allow-newer-version`: the backup may come from a newer OpenBao,
    /// or from one whose version cannot be compared.
    pub allow_newer_version: bool,
}

/// Why a backup does not belong on a restore target. A check that cannot
/// be made (a missing id, an unparseable version) refuses too: an unknown
/// answer is never taken as a yes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetMismatch {
    #[error(
        "the backup was taken from OpenBao cluster {backup} but the target is cluster {target}; add --allow-other-cluster to restore it anyway (the target must then use the backup's seal)"
    )]
    OtherCluster { backup: String, target: String },
    #[error(
        "cannot tell whether the backup is of the target's OpenBao cluster: {missing} reports no cluster id; add --allow-other-cluster to restore it anyway (the target must then use the backup's seal)"
    )]
    UnknownCluster { missing: &'static str },
    #[error(
        "the backup was taken by OpenBao {backup} but the target runs {target}; restoring a newer snapshot onto an older server leaves it stuck. Upgrade the target first, or add --allow-newer-version"
    )]
    NewerVersion { backup: String, target: String },
    #[error(
        "cannot tell whether the backup's OpenBao version {backup:?} is newer than the target's {target:?} (one is not MAJOR.MINOR.PATCH); restoring a newer snapshot onto an older server leaves it stuck. If you know it is not newer, add --allow-newer-version"
    )]
    UnknownVersion { backup: String, target: String },
}

/// Checks that the backup described by `manifest` may be restored onto a
/// target that reports `target_version` and `target_cluster_id` (from its
/// `sys/health`): the same OpenBao cluster and not a newer version, unless
/// `overrides` accept otherwise.
pub fn check_restore_target(
    manifest: &Manifest,
    target_version: &str,
    target_cluster_id: Option<&str>,
    overrides: RestoreOverrides,
) -> Result<(), TargetMismatch> {
    if !overrides.allow_other_cluster {
        match (
            known_id(manifest.cluster_id.as_deref()),
            known_id(target_cluster_id),
        ) {
            (Some(backup), Some(target)) if backup != target => {
                return Err(TargetMismatch::OtherCluster {
                    backup: backup.to_owned(),
                    target: target.to_owned(),
                });
            }
            (Some(_), Some(_)) => {}
            (None, _) => {
                return Err(TargetMismatch::UnknownCluster {
                    missing: "the backup's manifest",
                });
            }
            (_, None) => {
                return Err(TargetMismatch::UnknownCluster {
                    missing: "the target",
                });
            }
        }
    }
    if !overrides.allow_newer_version {
        match compare_versions(&manifest.openbao_version, target_version) {
            Some(std::cmp::Ordering::Greater) => {
                return Err(TargetMismatch::NewerVersion {
                    backup: manifest.openbao_version.clone(),
                    target: target_version.to_owned(),
                });
            }
            Some(_) => {}
            None => {
                return Err(TargetMismatch::UnknownVersion {
                    backup: manifest.openbao_version.clone(),
                    target: target_version.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// A cluster id that says something: present and not blank.
fn known_id(id: Option<&str>) -> Option<&str> {
    id.filter(|id| !id.trim().is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cmp::Ordering;

    /// A manifest as the backup writes it.
    pub(crate) fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            cluster: "vault".into(),
            namespace: "team-a".into(),
            cluster_id: Some("abc".into()),
            kubernetes_uid: None,
            openbao_version: "2.7.2".into(),
            raft_index: Some(42),
            raft_term: Some(3),
            snapshot: "p/team-a/vault/20261125T210000Z-x.snap".into(),
            size: 10,
            sha256: "00".repeat(32),
            started_at: "2026-11-25T21:00:00Z".parse().unwrap(),
            finished_at: "2026-11-25T21:00:01Z".parse().unwrap(),
        }
    }

    const STRICT: RestoreOverrides = RestoreOverrides {
        allow_other_cluster: false,
        allow_newer_version: false,
    };

    #[test]
    fn the_same_cluster_at_the_same_or_a_newer_version_is_accepted() {
        let manifest = sample();
        for target in ["2.7.2", "2.7.3", "2.10.0", "v2.7.2"] {
            assert_eq!(
                check_restore_target(&manifest, target, Some("abc"), STRICT),
                Ok(())
            );
        }
    }

    #[test]
    fn another_or_an_unknown_cluster_is_refused_unless_allowed() {
        let mut manifest = sample();
        let other = check_restore_target(&manifest, "2.7.2", Some("xyz"), STRICT).unwrap_err();
        assert!(matches!(other, TargetMismatch::OtherCluster { .. }));
        assert!(
            other.to_string().contains("--allow-other-cluster"),
            "{other}"
        );
        for target_id in [None, Some(""), Some("  ")] {
            let err = check_restore_target(&manifest, "2.7.2", target_id, STRICT).unwrap_err();
            assert_eq!(
                err,
                TargetMismatch::UnknownCluster {
                    missing: "the target"
                }
            );
        }
        manifest.cluster_id = None;
        let err = check_restore_target(&manifest, "2.7.2", Some("abc"), STRICT).unwrap_err();
        assert!(
            err.to_string().contains("manifest")
                && err.to_string().contains("--allow-other-cluster"),
            "{err}"
        );
        let allowed = RestoreOverrides {
            allow_other_cluster: true,
            ..STRICT
        };
        assert_eq!(
            check_restore_target(&manifest, "2.7.2", None, allowed),
            Ok(())
        );
        manifest.cluster_id = Some("abc".into());
        assert_eq!(
            check_restore_target(&manifest, "2.7.2", Some("xyz"), allowed),
            Ok(())
        );
    }

    #[test]
    fn a_newer_or_an_unparseable_version_is_refused_unless_allowed() {
        let mut manifest = sample();
        let newer = check_restore_target(&manifest, "2.6.2", Some("abc"), STRICT).unwrap_err();
        assert!(matches!(newer, TargetMismatch::NewerVersion { .. }));
        assert!(newer.to_string().contains("Upgrade the target"), "{newer}");
        for (backup, target) in [("2.7", "2.7.2"), ("2.7.2", ""), ("unknown", "2.7.2")] {
            manifest.openbao_version = backup.into();
            let err = check_restore_target(&manifest, target, Some("abc"), STRICT).unwrap_err();
            assert!(
                matches!(err, TargetMismatch::UnknownVersion { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("--allow-newer-version"), "{err}");
            let allowed = RestoreOverrides {
                allow_newer_version: true,
                ..STRICT
            };
            assert_eq!(
                check_restore_target(&manifest, target, Some("abc"), allowed),
                Ok(())
            );
        }
    }

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
        let manifest = sample();
        let json = manifest.to_json();
        assert!(String::from_utf8_lossy(&json).contains("\"openbaoVersion\""));
        assert_eq!(Manifest::from_json(&json).unwrap(), manifest);
    }
}
