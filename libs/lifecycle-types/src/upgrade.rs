//! A version upgrade as status shows it (`status.upgrade`), and which
//! version the pods' template carries while one runs.
//!
//! An upgrade runs in steps: a preflight Job, a pre-upgrade snapshot Job,
//! the roll (pods restarted one at a time by the rollout gate, the leader
//! last after it stepped down) and a verify Job. Until the roll starts the
//! template keeps the running version, so a refused or failed preflight or
//! snapshot restarts nothing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::OpenBaoCluster;

/// Where an upgrade is, or how it ended.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradePhase {
    /// A step runs (`step` says which).
    Running,
    /// A step failed; `spec.upgrade.retry` runs it again.
    Failed,
    /// `spec.upgrade.abort` stopped it before `step`.
    Aborted,
    /// Verified: every voter runs `to`.
    Completed,
}

/// The steps of an upgrade, in order.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum UpgradeStep {
    /// Autopilot healthy, one version, failure tolerance left.
    Preflight,
    /// The pre-upgrade snapshot, with its manifest.
    Snapshot,
    /// Pods restarted one at a time onto the new version.
    Roll,
    /// Every voter on the new version, one leader, voters = pods.
    Verify,
}

impl UpgradeStep {
    /// The step's name in Job names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Snapshot => "snapshot",
            Self::Roll => "roll",
            Self::Verify => "verify",
        }
    }
}

/// `status.upgrade`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// The version the pods ran when the upgrade started.
    pub from: String,
    /// `spec.version` it upgrades to.
    pub to: String,
    pub phase: UpgradePhase,
    /// The step running, or the one that failed or was not started
    /// because of an abort.
    pub step: UpgradeStep,
    /// Pods running `to` on the new template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods_done: Vec<String>,
    /// The pre-upgrade backup (its name in the backup destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The step's Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Why the last step failed, and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The `spec.upgrade.retry` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_retry: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

impl UpgradeStatus {
    /// An upgrade from `from` to `to` that starts now, at its preflight.
    /// `last_retry` is `spec.upgrade.retry` as it stands: a value set
    /// before the upgrade is not a request to retry.
    pub fn started(from: &str, to: &str, last_retry: Option<String>, now: &str) -> Self {
        Self {
            from: from.to_owned(),
            to: to.to_owned(),
            phase: UpgradePhase::Running,
            step: UpgradeStep::Preflight,
            pods_done: Vec::new(),
            backup: None,
            job: None,
            last_error: None,
            last_retry,
            started_at: now.to_owned(),
            completed_at: None,
        }
    }

    /// An upgrade that reached the roll and did not complete: its pods
    /// move to (or stay on) `to`, whatever the spec says by now.
    pub fn rolling(&self) -> bool {
        self.phase != UpgradePhase::Completed && self.step >= UpgradeStep::Roll
    }
}

/// The version the pods' template carries: the running version until an
/// upgrade reaches its roll, then the upgrade's target (never back down).
/// Before the cluster first runs, `spec.version`.
pub fn template_version(cluster: &OpenBaoCluster) -> &str {
    let status = cluster.status.as_ref();
    let Some(running) = status.and_then(|s| s.current_version.as_deref()) else {
        return cluster.spec.version.as_str();
    };
    match status.and_then(|s| s.upgrade.as_ref()) {
        Some(upgrade) if upgrade.rolling() => upgrade.to.as_str(),
        _ => running,
    }
}

/// Whether a change of `spec.version` waits for or runs an upgrade: the
/// cluster runs one version and the spec names another.
pub fn version_change_pending(cluster: &OpenBaoCluster) -> bool {
    cluster
        .status
        .as_ref()
        .and_then(|s| s.current_version.as_deref())
        .is_some_and(|running| running != cluster.spec.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(
        spec_version: &str,
        running: Option<&str>,
        upgrade: Option<UpgradeStatus>,
    ) -> OpenBaoCluster {
        let mut cluster = OpenBaoCluster::new(
            "c",
            serde_json::from_value(serde_json::json!({"version": spec_version})).unwrap(),
        );
        cluster.status = Some(crate::OpenBaoClusterStatus {
            current_version: running.map(str::to_owned),
            upgrade,
            ..Default::default()
        });
        cluster
    }

    fn record(step: UpgradeStep, phase: UpgradePhase) -> UpgradeStatus {
        UpgradeStatus {
            phase,
            step,
            ..UpgradeStatus::started("2.6.2", "2.7.2", None, "2026-12-02T10:00:00Z")
        }
    }

    #[test]
    fn the_template_keeps_the_running_version_until_the_roll() {
        assert_eq!(template_version(&cluster("2.7.2", None, None)), "2.7.2");
        assert_eq!(
            template_version(&cluster("2.7.2", Some("2.7.2"), None)),
            "2.7.2"
        );
        assert_eq!(
            template_version(&cluster("2.7.2", Some("2.6.2"), None)),
            "2.6.2"
        );
        for (step, phase, carried) in [
            (UpgradeStep::Preflight, UpgradePhase::Running, "2.6.2"),
            (UpgradeStep::Snapshot, UpgradePhase::Failed, "2.6.2"),
            (UpgradeStep::Snapshot, UpgradePhase::Aborted, "2.6.2"),
            (UpgradeStep::Roll, UpgradePhase::Running, "2.7.2"),
            (UpgradeStep::Roll, UpgradePhase::Aborted, "2.7.2"),
            (UpgradeStep::Verify, UpgradePhase::Failed, "2.7.2"),
        ] {
            let c = cluster("2.7.2", Some("2.6.2"), Some(record(step, phase)));
            assert_eq!(template_version(&c), carried, "{step:?} {phase:?}");
        }
        // A roll under way keeps its target when the spec moves on.
        let c = cluster(
            "2.8.0",
            Some("2.6.2"),
            Some(record(UpgradeStep::Roll, UpgradePhase::Running)),
        );
        assert_eq!(template_version(&c), "2.7.2");
        // Completed: the running version is the new one.
        let c = cluster(
            "2.7.2",
            Some("2.7.2"),
            Some(record(UpgradeStep::Verify, UpgradePhase::Completed)),
        );
        assert_eq!(template_version(&c), "2.7.2");
    }
}
