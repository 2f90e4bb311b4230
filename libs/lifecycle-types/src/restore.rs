//! `OpenBaoRestore`: one in-place restore of an `OpenBaoCluster` from a
//! backup, declared as an object. The controller runs it as a Job under the
//! cluster's operation lock (`status.operation`), so it never overlaps a
//! backup, a drill, a rollout or a second restore.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup::{BackupCredentials, BackupDestination};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{Condition, restore_types, upsert};

/// A backup's name: `<UTC timestamp>-<id>`, as `status.backup` records it.
pub const BACKUP_NAME_PATTERN: &str = r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9]+$";

/// A backup manifest's URL: a storage URL whose last segment is
/// `<backup name>.json`.
pub const MANIFEST_URL_PATTERN: &str =
    r"^(s3|gs|az|file)://[^\s]+/[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9]+\.json$";

/// Splits a manifest URL into the folder URL it lies in and the backup's
/// name; `None` unless it matches [`MANIFEST_URL_PATTERN`].
pub fn manifest_url_parts(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (folder, file) = url.rsplit_once('/')?;
    let name = file.strip_suffix(".json")?;
    let (stamp, id) = name.split_once('-')?;
    let stamp_ok = stamp.len() == 16
        && stamp.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    let ok = ["s3", "gs", "az", "file"].contains(&scheme)
        && rest.contains('/')
        && !url.chars().any(char::is_whitespace)
        && stamp_ok
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some((folder, name))
}

/// Restores a backup into an existing OpenBaoCluster, replacing all of its
/// data, policies and tokens with the backup's.
// Each `printcolumn(...)` repeats the same keys, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "openbao.org",
    version = "v1alpha1",
    kind = "OpenBaoRestore",
    plural = "openbaorestores",
    shortname = "obr",
    namespaced,
    status = "OpenBaoRestoreStatus",
    derive = "PartialEq",
    doc = "A restore of an OpenBaoCluster from one of its backups, run by the OpenBao operator.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Backup", type_ = "string", json_path = ".status.backup"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Raft index",
        type_ = "integer",
        json_path = ".status.restoredRaftIndex"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message(
    "spec of an OpenBaoRestore cannot change once created; delete it and create a new OpenBaoRestore"
))]
#[serde(rename_all = "camelCase")]
pub struct OpenBaoRestoreSpec {
    /// The OpenBaoCluster (in this namespace) to restore into.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub cluster: String,
    /// Which backup to restore.
    pub source: RestoreSource,
    /// Accept a backup of another OpenBao cluster (or one whose cluster id
    /// is unknown), and backups read from another cluster's folder.
    #[serde(default)]
    pub allow_other_cluster: bool,
    /// Accept a snapshot taken by a newer OpenBao than the cluster runs
    /// (known to leave nodes stuck).
    #[serde(default)]
    pub allow_newer_version: bool,
    /// `Force` (snapshot-force: the backup may come from a cluster with
    /// other unseal keys) or `SealChecked` (refused unless the snapshot was
    /// sealed by this cluster's keys).
    #[serde(default)]
    pub mode: RestoreMode,
    /// The restore image; defaults to the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// A restore Job still running after this many seconds is stopped and fails.
    #[serde(default = "default_deadline_seconds")]
    #[schemars(range(min = 60, max = 86400))]
    pub deadline_seconds: i64,
}

fn default_deadline_seconds() -> i64 {
    1800
}

/// Where the backup comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.backup), has(self.latest) && self.latest, has(self.manifest)].filter(x, x).size() == 1").message(
    "spec.source takes exactly one of backup (a name from status.backup), latest: true and manifest (a manifest's URL)"
))]
#[x_kube(validation = Rule::new("!has(self.manifest) || (!has(self.fromNamespace) && !has(self.fromCluster))").message(
    "spec.source.manifest names the backup itself: remove fromNamespace and fromCluster"
))]
#[serde(rename_all = "camelCase")]
pub struct RestoreSource {
    /// A backup's name (`<UTC timestamp>-<id>`), e.g. `status.backup.lastSuccessful.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = BACKUP_NAME_PATTERN), length(max = 128))]
    pub backup: Option<String>,
    /// The newest backup that has a manifest.
    #[serde(default)]
    pub latest: bool,
    /// One backup's manifest by URL (`s3://bucket/any/path/<name>.json`),
    /// e.g. a backup copied to another bucket; its snapshot lies next to
    /// it. Endpoint, region and emulator come from `destination` (or the
    /// cluster's `spec.backup.destination`); their `url` is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = MANIFEST_URL_PATTERN), length(max = 1024))]
    pub manifest: Option<String>,
    /// Where the backups are; defaults to the cluster's `spec.backup.destination`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BackupDestination>,
    /// Storage credentials; defaults to the cluster's `spec.backup.credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<BackupCredentials>,
    /// Read the backups of another cluster's folder (needs `allowOtherCluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub from_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub from_cluster: Option<String>,
}

/// Which restore endpoint the Job uses.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestoreMode {
    /// `sys/storage/raft/snapshot-force`.
    #[default]
    Force,
    /// `sys/storage/raft/snapshot`: refused when the snapshot was sealed by
    /// other keys.
    SealChecked,
}

/// Where a restore is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestorePhase {
    /// Waiting for the cluster's operation lock.
    #[default]
    Pending,
    /// Checking the request against the cluster.
    Validating,
    /// The restore Job runs.
    Running,
    Completed,
    Failed,
}

impl RestorePhase {
    pub fn finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// What the restore did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OpenBaoRestoreStatus {
    #[serde(default)]
    pub phase: RestorePhase,
    /// The backup restored (resolved from `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The restore Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The Raft index the cluster reported after the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_raft_index: Option<i64>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The Job's exit-code reason when it failed (`VerificationFailed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, and what to do when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl RestorePhase {
    /// The phase's name, which is also the reason of the conditions it sets.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Validating => "Validating",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
        }
    }
}

impl OpenBaoRestoreStatus {
    /// Sets `Running`, `Complete` and `Failed` from the phase, reason and
    /// message. A condition whose status did not change keeps its
    /// transition time, so an unchanged restore compares equal.
    pub fn set_conditions(&mut self, generation: Option<i64>, now: Time) {
        use crate::conditions::ConditionStatus::{False, True};
        let phase = self.phase;
        let message = self.message.clone().unwrap_or_default();
        let holds = |yes: bool| if yes { True } else { False };
        let failed_reason = match (phase, &self.reason) {
            (RestorePhase::Failed, Some(reason)) => reason.as_str(),
            _ => phase.name(),
        };
        for (type_, status, reason) in [
            (
                restore_types::RUNNING,
                holds(matches!(
                    phase,
                    RestorePhase::Validating | RestorePhase::Running
                )),
                phase.name(),
            ),
            (
                restore_types::COMPLETE,
                holds(phase == RestorePhase::Completed),
                phase.name(),
            ),
            (
                restore_types::FAILED,
                holds(phase == RestorePhase::Failed),
                failed_reason,
            ),
        ] {
            upsert(
                &mut self.conditions,
                Condition::new(type_, status, reason, message.clone(), generation),
                now.clone(),
            );
        }
    }
}

/// `spec.restoreFrom`: the backup a new cluster starts from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFrom {
    /// The old cluster's name (its backups' folder).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub cluster: String,
    /// The old cluster's namespace; this cluster's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub namespace: Option<String>,
    /// A backup's name; the newest backup with a manifest when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = BACKUP_NAME_PATTERN), length(max = 128))]
    pub backup: Option<String>,
    /// Where the backups are; defaults to `spec.backup.destination`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BackupDestination>,
    /// Storage credentials; default to `spec.backup.credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<BackupCredentials>,
}

/// What `spec.restoreFrom` restored, or why it could not.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoredFrom {
    /// `Completed`, or `Failed` (the cluster stays at one node, empty:
    /// fix the cause, then delete and create the cluster again).
    #[serde(default)]
    pub phase: RestorePhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_raft_index: Option<i64>,
    /// RFC 3339.
    pub completed_at: String,
    /// The audience the old cluster's operator role accepted, which the
    /// controller logs in with once to move the role to this cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_controller_audience: Option<String>,
}

/// The in-memory `OpenBaoRestore` that carries out `spec.restoreFrom`, so
/// disaster recovery takes the same path (lock, Job, checks) as a restore.
pub fn restore_from_request(cluster: &crate::OpenBaoCluster) -> Option<OpenBaoRestore> {
    let from = cluster.spec.restore_from.as_ref()?;
    let name = cluster.metadata.name.clone()?;
    let mut restore = OpenBaoRestore::new(
        &format!("{name}{RESTORE_FROM_SUFFIX}"),
        OpenBaoRestoreSpec {
            cluster: name,
            source: RestoreSource {
                backup: from.backup.clone(),
                latest: from.backup.is_none(),
                manifest: None,
                destination: from.destination.clone(),
                credentials: from.credentials.clone(),
                from_namespace: from.namespace.clone(),
                from_cluster: Some(from.cluster.clone()),
            },
            // A new cluster has its own OpenBao cluster id by design.
            allow_other_cluster: true,
            allow_newer_version: false,
            mode: RestoreMode::Force,
            image: None,
            deadline_seconds: default_deadline_seconds(),
        },
    );
    restore.metadata.namespace = cluster.metadata.namespace.clone();
    restore.metadata.uid = cluster.metadata.uid.clone();
    restore.metadata.creation_timestamp = cluster.metadata.creation_timestamp.clone();
    restore.status = cluster
        .status
        .as_ref()
        .and_then(|s| s.restored_from.as_ref())
        .map(|done| OpenBaoRestoreStatus {
            phase: done.phase,
            backup: done.backup.clone(),
            ..OpenBaoRestoreStatus::default()
        });
    Some(restore)
}

/// Name suffix of the [`restore_from_request`].
pub const RESTORE_FROM_SUFFIX: &str = "-restore-from";

/// Whether the cluster still waits for its `spec.restoreFrom` restore: it
/// stays at one node and takes no backup (an empty cluster's backup would
/// count as the newest and could push the old ones out by retention).
pub fn restore_from_pending(cluster: &crate::OpenBaoCluster) -> bool {
    cluster.spec.restore_from.is_some()
        && !cluster
            .status
            .as_ref()
            .and_then(|s| s.restored_from.as_ref())
            .is_some_and(|r| r.phase == RestorePhase::Completed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_url_splits_into_its_folder_and_backup_name() {
        assert_eq!(
            manifest_url_parts("s3://copies/2026/team-a/rs/20261202T090000Z-1a2b3c.json"),
            Some(("s3://copies/2026/team-a/rs", "20261202T090000Z-1a2b3c"))
        );
        assert_eq!(
            manifest_url_parts("file:///backups/20261202T090000Z-x.json"),
            Some(("file:///backups", "20261202T090000Z-x"))
        );
        for bad in [
            "s3://copies/20261202T090000Z-1a2b3c.snap",
            "s3://copies/2026120T090000Z-1a2b3c.json",
            "s3://copies/20261202T090000Z-.json",
            "http://copies/20261202T090000Z-1a2b3c.json",
            "s3://copies/a b/20261202T090000Z-1a2b3c.json",
            "20261202T090000Z-1a2b3c.json",
        ] {
            assert_eq!(manifest_url_parts(bad), None, "{bad}");
        }
    }
}
