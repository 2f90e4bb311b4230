//! The condition type every status in this API shares, its well-known types
//! and reasons, and the one function that updates a condition list.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether a condition holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observation about a resource, shaped like `metav1.Condition` so that
/// `kubectl wait --for=condition=...` and generic tooling understand it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type in PascalCase, for example `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// Machine-readable PascalCase reason for the last transition.
    pub reason: String,
    /// Human-readable message that says what is wrong and what to do.
    #[serde(default)]
    pub message: String,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed; not touched when only reason or message change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Well-known condition types of `OpenBaoCluster`.
pub mod types {
    pub const AVAILABLE: &str = "Available";
    pub const TLS_READY: &str = "TLSReady";
    pub const INITIALIZED: &str = "Initialized";
    pub const SEALED: &str = "Sealed";
    pub const LEADER_FOUND: &str = "LeaderFound";
    pub const PRODUCTION_READY: &str = "ProductionReady";
    pub const DEGRADED: &str = "Degraded";
    /// Present (True) only while `spec.paused` is set.
    pub const PAUSED: &str = "Paused";
    /// Present while `spec.backup` is set: whether the backups succeed.
    /// A failure's reason is the backup Job's exit-code meaning
    /// (`StorageFailed`, `AuthenticationFailed`, `NoActiveNode`, ...).
    pub const BACKUP_HEALTHY: &str = "BackupHealthy";
    /// The last restore drill restored the newest backup.
    pub const BACKUP_VERIFIED: &str = "BackupVerified";
    /// Present once `spec.version` differs from the running version: True
    /// while an upgrade runs, False when it waits, failed, was aborted or
    /// completed (the reason says which).
    pub const UPGRADING: &str = "Upgrading";
}

/// Condition types of `OpenBaoRestore`, shaped like a Job's so that
/// `kubectl wait --for=condition=Complete` works.
pub mod restore_types {
    /// The restore Job holds the cluster (Validating or Running).
    pub const RUNNING: &str = "Running";
    pub const COMPLETE: &str = "Complete";
    pub const FAILED: &str = "Failed";
}

/// Well-known reasons. Reasons are stable API: tools match on them.
pub mod reasons {
    // Any condition.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Multi-tenant install: no OpenBaoTenant has onboarded the namespace.
    pub const NAMESPACE_NOT_ONBOARDED: &str = "NamespaceNotOnboarded";
    pub const RECONCILING: &str = "Reconciling";
    pub const PAUSED: &str = "Paused";

    // Available.
    /// The active node answers and every desired replica is ready.
    pub const ALL_REPLICAS_READY: &str = "AllReplicasReady";
    /// The active node answers but some replicas are not ready.
    pub const SOME_REPLICAS_NOT_READY: &str = "SomeReplicasNotReady";
    /// No node answers as active.
    pub const NO_ACTIVE_NODE: &str = "NoActiveNode";

    // TLSReady.
    pub const CERTIFICATE_VALID: &str = "CertificateValid";
    pub const TLS_SECRET_MISSING: &str = "TLSSecretMissing";
    pub const TLS_SECRET_INVALID: &str = "TLSSecretInvalid";
    /// The certificate is inside its rotation window and is being renewed.
    pub const CERTIFICATE_RENEWING: &str = "CertificateRenewing";
    /// A new CA is being distributed before it signs anything.
    pub const CA_ROTATING: &str = "CARotating";
    /// OpenBao obtains its own certificate (ACME); the operator holds none.
    pub const ACME_MANAGED: &str = "ACMEManaged";

    // Initialized.
    pub const SELF_INITIALIZED: &str = "SelfInitialized";
    /// Initialized through the operator's `sys/init` (Development only); the root token is in a Secret.
    pub const OPERATOR_INITIALIZED: &str = "OperatorInitialized";
    pub const WAITING_FOR_BOOTSTRAP_POD: &str = "WaitingForBootstrapPod";
    /// Self-init failed; OpenBao refuses to start on that storage again.
    pub const SELF_INIT_FAILED: &str = "SelfInitFailed";

    // Sealed.
    pub const ALL_UNSEALED: &str = "AllUnsealed";
    pub const NODES_SEALED: &str = "NodesSealed";
    /// The Transit (or KMS) server that unseals the nodes cannot be reached.
    pub const SEAL_BACKEND_UNREACHABLE: &str = "SealBackendUnreachable";

    // LeaderFound.
    pub const LEADER_ELECTED: &str = "LeaderElected";
    pub const NO_LEADER: &str = "NoLeader";
    /// More than one pod claims to be active (split brain).
    pub const MULTIPLE_LEADERS: &str = "MultipleLeaders";

    // ProductionReady: one reason per gap, the first gap found wins and the
    // message lists them all.
    pub const PRODUCTION_READY: &str = "ProductionReady";
    pub const DEVELOPMENT_PROFILE: &str = "DevelopmentProfile";
    pub const ROOT_TOKEN_STORED: &str = "RootTokenStored";
    pub const STATIC_UNSEAL_IN_USE: &str = "StaticUnsealInUse";
    pub const OPERATOR_MANAGED_TLS: &str = "OperatorManagedTLS";
    pub const TOO_FEW_REPLICAS: &str = "TooFewReplicas";
    pub const NO_HUMAN_LOGIN: &str = "NoHumanLogin";
    pub const NO_AUDIT_DEVICE: &str = "NoAuditDevice";
    /// The admission guardrails (`manifests/admission`) are not installed
    /// and enforced.
    pub const ADMISSION_POLICIES_MISSING: &str = "AdmissionPoliciesMissing";
    /// Object storage reached over plain HTTP.
    pub const PLAIN_TEXT_STORAGE: &str = "PlainTextStorage";
    pub const BACKUPS_NOT_CONFIGURED: &str = "BackupsNotConfigured";
    /// No backup succeeded within twice the schedule's interval.
    pub const BACKUPS_STALE: &str = "BackupsStale";

    // BackupHealthy (failures carry the Job's exit-code reason).
    pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
    pub const NO_BACKUP_YET: &str = "NoBackupYet";
    pub const BACKUP_SCHEDULE_INVALID: &str = "BackupScheduleInvalid";
    /// The Job ended without a result (deadline, deleted, evicted).
    pub const BACKUP_JOB_LOST: &str = "BackupJobLost";
    // BackupVerified (failures carry the drill Job's exit-code reason).
    pub const DRILL_PASSED: &str = "DrillPassed";
    pub const NO_DRILL_YET: &str = "NoDrillYet";

    // Upgrading.
    pub const UPGRADE_RUNNING: &str = "UpgradeRunning";
    /// The version change waits: the cluster is not healthy, another
    /// operation holds it, or there is nowhere to put the pre-upgrade
    /// snapshot.
    pub const UPGRADE_WAITING: &str = "UpgradeWaiting";
    /// A step failed; `spec.upgrade.retry` runs it again.
    pub const UPGRADE_FAILED: &str = "UpgradeFailed";
    pub const UPGRADE_ABORTED: &str = "UpgradeAborted";
    pub const UPGRADE_COMPLETE: &str = "UpgradeComplete";

    // Degraded.
    pub const RAFT_UNHEALTHY: &str = "RaftUnhealthy";
    pub const QUORUM_AT_RISK: &str = "QuorumAtRisk";
    pub const GATEWAY_API_MISSING: &str = "GatewayAPIMissing";
    pub const MISSING_CAPABILITY: &str = "MissingCapability";
    /// The controller's own JWT role, auth method or policy is missing in
    /// the cluster's data (a restore of a backup that predates them).
    pub const OPERATOR_IDENTITY_MISSING: &str = "OperatorIdentityMissing";
    pub const AS_EXPECTED: &str = "AsExpected";
    /// A running pod answers but has not become active or standby within
    /// the bound: OpenBao refused part of its configuration or cannot
    /// reach its seal.
    pub const NODE_NOT_ACTIVE: &str = "NodeNotBecomingActive";
    /// A pod's OpenBao container keeps restarting.
    pub const NODE_RESTARTING: &str = "NodeRestarting";

    // Degraded, set by a reconcile that failed; one reason per error kind.
    /// The API server refused a write (RBAC, an admission policy, or an
    /// invalid object).
    pub const KUBERNETES_WRITE_REFUSED: &str = "KubernetesWriteRefused";
    /// The API server could not be read or written for another reason.
    pub const KUBERNETES_API_ERROR: &str = "KubernetesAPIError";
    /// Running pods do not answer on the OpenBao port.
    pub const OPENBAO_UNREACHABLE: &str = "OpenBaoUnreachable";
    /// OpenBao refused or failed a call the controller made.
    pub const OPENBAO_REQUEST_FAILED: &str = "OpenBaoRequestFailed";
    /// Issuing or reading the operator-managed certificates failed.
    pub const TLS_FAILED: &str = "TLSFailed";
    /// The seal key Secret is not usable.
    pub const SEAL_KEY_INVALID: &str = "SealKeyInvalid";
    /// An object could not be rendered from the spec.
    pub const RENDER_FAILED: &str = "RenderFailed";
    /// The system random source failed.
    pub const RANDOM_SOURCE_FAILED: &str = "RandomSourceFailed";
}

impl Condition {
    pub fn new(
        type_: impl Into<String>,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
        observed_generation: Option<i64>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            observed_generation,
            last_transition_time: None,
        }
    }
}

/// Inserts or replaces the condition of the same type.
///
/// The transition time is kept when the status did not change, so a
/// reconcile that only rewrites the message does not look like a flap, and a
/// reconcile that changes nothing produces an identical list (zero writes).
pub fn upsert(conditions: &mut Vec<Condition>, mut new: Condition, now: Time) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            new.last_transition_time = if existing.status == new.status {
                existing.last_transition_time.clone().or(Some(now))
            } else {
                Some(now)
            };
            *existing = new;
        }
        None => {
            new.last_transition_time = Some(now);
            conditions.push(new);
        }
    }
}

/// The condition of the given type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn upsert_keeps_transition_time_when_status_is_unchanged() {
        let mut list = Vec::new();
        let first = Condition::new(types::AVAILABLE, ConditionStatus::False, "A", "m1", Some(1));
        upsert(&mut list, first, at(100));
        let second = Condition::new(types::AVAILABLE, ConditionStatus::False, "B", "m2", Some(2));
        upsert(&mut list, second, at(200));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].reason, "B");
        assert_eq!(list[0].last_transition_time, Some(at(100)));
    }

    #[test]
    fn upsert_moves_transition_time_when_status_changes() {
        let mut list = Vec::new();
        upsert(
            &mut list,
            Condition::new(types::SEALED, ConditionStatus::True, "S", "", None),
            at(100),
        );
        upsert(
            &mut list,
            Condition::new(types::SEALED, ConditionStatus::False, "U", "", None),
            at(300),
        );
        assert_eq!(
            find(&list, types::SEALED).unwrap().last_transition_time,
            Some(at(300))
        );
    }

    #[test]
    fn upsert_appends_new_types_in_order() {
        let mut list = Vec::new();
        for t in [types::AVAILABLE, types::SEALED, types::AVAILABLE] {
            upsert(
                &mut list,
                Condition::new(t, ConditionStatus::Unknown, "R", "", None),
                at(1),
            );
        }
        let types: Vec<_> = list.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [types::AVAILABLE, types::SEALED]);
    }
}
