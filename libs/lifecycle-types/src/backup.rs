//! `spec.backup` and `status.backup`: scheduled backups that the operator
//! runs as Jobs, and what the last runs left behind.
//!
//! The controller schedules the Jobs itself (no CronJob): one lock per
//! cluster serialises backups with restores and upgrades, a manual request
//! and a missed slot take the same path, and `status.backup.nextScheduled`
//! is exactly when the next Job will be created.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster::WorkloadIdentity;

/// Five cron fields (minute, hour, day of month, month, day of week), as a
/// Kubernetes CronJob takes them.
pub const SCHEDULE_PATTERN: &str = r"^\s*[0-9A-Za-z*/,\-?LW#]+(\s+[0-9A-Za-z*/,\-?LW#]+){4}\s*$";
/// Backup destinations the Job can write to.
pub const DESTINATION_PATTERN: &str =
    r"^(s3|gs|az)://[a-z0-9][a-z0-9.\-_]{1,254}(/[^\s]*)?$|^file:///[^\s]+$";
/// A maximum age such as `30d`, `12h` or `90m`.
pub const AGE_PATTERN: &str = r"^[0-9]{1,6}(s|m|h|d)$";
/// A manual request token: any label-like value.
pub const TRIGGER_PATTERN: &str = r"^[A-Za-z0-9]([A-Za-z0-9._\-]{0,61}[A-Za-z0-9])?$";

/// Scheduled backups of the cluster's Raft data to object storage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "!has(self.objectLock) || self.destination.url.startsWith('s3://')"
).message(
    "spec.backup.objectLock needs an s3:// destination (S3 Object Lock); remove objectLock or use an S3 bucket with Object Lock enabled"
).field_path(".objectLock"))]
#[x_kube(validation = Rule::new(
    "!has(self.credentials) || has(self.credentials.secretRef) != has(self.credentials.workloadIdentity)"
).message(
    "spec.backup.credentials takes exactly one of secretRef and workloadIdentity"
).field_path(".credentials"))]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// When to back up: five cron fields (minute hour day-of-month month
    /// day-of-week), for example `0 */6 * * *`.
    #[schemars(regex(pattern = SCHEDULE_PATTERN), length(max = 128))]
    pub schedule: String,
    /// IANA time zone of the schedule (for example `Europe/Berlin`); UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$"),
        length(max = 64)
    )]
    pub time_zone: Option<String>,
    /// Where the snapshots and their manifests go.
    pub destination: BackupDestination,
    /// Storage credentials; without them the Job uses the provider's default chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<BackupCredentials>,
    /// Which backups to keep. The newest good backup is never deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<BackupRetention>,
    /// Write every backup immutable with S3 Object Lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLockSpec>,
    /// Stop creating scheduled backups (a manual request still runs).
    #[serde(default)]
    pub suspend: bool,
    /// Change this to any new value to request one backup now; the handled
    /// value is recorded in `status.backup.lastTrigger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TRIGGER_PATTERN))]
    pub trigger: Option<String>,
    /// The backup image; defaults to the operator's own backup image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// CPU and memory of the backup container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A backup Job still running after this many seconds is stopped and counted as failed.
    #[serde(default = "default_deadline_seconds")]
    #[schemars(range(min = 60, max = 86400))]
    pub deadline_seconds: i64,
    /// Finished backup Jobs are deleted this many seconds later.
    #[serde(default = "default_ttl_seconds")]
    #[schemars(range(min = 0, max = 604800))]
    pub ttl_seconds_after_finished: i32,
    /// Restore drills: prove that the newest backup restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSpec>,
}

/// A restore drill restores the newest backup into a throwaway single-node
/// OpenBao inside the drill Job's pod (listening on the pod's loopback
/// only, so no client can reach it), unseals it with the cluster's seal,
/// checks its Raft index and reads back the canary the operator wrote at
/// bootstrap. The throwaway node ends with the Job's pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "has(self.schedule) != has(self.everyNthBackup)"
).message(
    "spec.backup.drill takes exactly one of schedule and everyNthBackup"
))]
#[serde(rename_all = "camelCase")]
pub struct DrillSpec {
    /// When to drill: five cron fields, in `spec.backup.timeZone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SCHEDULE_PATTERN), length(max = 128))]
    pub schedule: Option<String>,
    /// Drill after every Nth successful backup (1: after each one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub every_nth_backup: Option<i32>,
    /// The restore image that runs the drill; defaults to the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// A drill still running after this many seconds is stopped and counted as failed.
    #[serde(default = "default_drill_deadline_seconds")]
    #[schemars(range(min = 60, max = 86400))]
    pub deadline_seconds: i64,
}

fn default_drill_deadline_seconds() -> i64 {
    900
}

fn default_deadline_seconds() -> i64 {
    1800
}

fn default_ttl_seconds() -> i32 {
    3600
}

/// A backup destination.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "!has(self.endpoint) || self.url.startsWith('s3://') || self.url.startsWith('gs://')"
).message(
    "spec.backup.destination.endpoint applies to s3:// and gs:// destinations only; remove it"
).field_path(".endpoint"))]
#[x_kube(validation = Rule::new(
    "!has(self.caSecretRef) || (has(self.endpoint) && self.endpoint.startsWith('https://'))"
).message(
    "spec.backup.destination.caSecretRef is the CA of a private https endpoint: set an https:// endpoint, or remove caSecretRef to trust the usual public roots"
).field_path(".caSecretRef"))]
#[serde(rename_all = "camelCase")]
pub struct BackupDestination {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
    /// or `file:///dir` (development only: a directory inside the Job).
    #[schemars(regex(pattern = DESTINATION_PATTERN), length(max = 1024))]
    pub url: String,
    /// S3-compatible or GCS endpoint (MinIO, an emulator, a private endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/[^\s]*)?$"), length(max = 512))]
    pub endpoint: Option<String>,
    /// S3 region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9\-]+$"), length(max = 64))]
    pub region: Option<String>,
    /// The endpoint is a local emulator: unsigned requests, no credential lookup.
    #[serde(default)]
    pub emulator: bool,
    /// A Secret in the cluster's namespace whose `ca.crt` holds the CA
    /// certificates that sign the endpoint's certificate (a private CA);
    /// without it the Job trusts the usual public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub ca_secret_ref: Option<String>,
}

/// Storage credentials of the backup Job.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupCredentials {
    /// A Secret in the cluster's namespace whose keys become the Job's
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AZURE_STORAGE_ACCOUNT_KEY`, ...). Values never appear in the Job's spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub secret_ref: Option<String>,
    /// Cloud workload identity on the backup ServiceAccount and pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentity>,
}

/// Which backups retention keeps.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRetention {
    /// Keep at least this many newest backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub keep_last: Option<i32>,
    /// Delete backups older than this (`30d`, `12h`), except the `keepLast` newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = AGE_PATTERN))]
    pub max_age: Option<String>,
}

/// S3 Object Lock for every backup.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLockSpec {
    pub mode: ObjectLockMode,
    /// Days each backup stays locked.
    #[schemars(range(min = 1, max = 36500))]
    pub days: i32,
}

/// S3 Object Lock retention mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectLockMode {
    /// Users with a special permission may still delete.
    Governance,
    /// Nobody can delete before the period ends.
    Compliance,
}

/// What the backups left behind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The newest backup that completed with its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful: Option<BackupRecord>,
    /// The last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<BackupFailure>,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub consecutive_failures: i32,
    /// When the next scheduled backup starts (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scheduled: Option<String>,
    /// The schedule slot the last scheduled backup was started for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// The last `spec.backup.trigger` value a backup was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trigger: Option<String>,
    /// The last restore drill: which backup, when, and whether it restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<DrillRecord>,
    /// Successful backups since the last drill started (`everyNthBackup`).
    #[serde(default)]
    pub backups_since_drill: i32,
    /// The drill schedule slot the last scheduled drill was started for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill_schedule_time: Option<String>,
}

/// One restore drill's result.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillRecord {
    /// The backup the drill restored (`<UTC timestamp>-<id>`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// When the drill ended (RFC 3339).
    pub time: String,
    pub job: String,
    pub result: DrillResult,
    /// The Job's reason (`Verified`, `VerificationFailed`, ...).
    pub reason: String,
    pub message: String,
    /// The Raft index the restored node reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_raft_index: Option<i64>,
}

/// Whether a drill proved its backup.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DrillResult {
    Passed,
    #[default]
    Failed,
}

/// One good backup, as its manifest describes it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// The backup's name (`<UTC timestamp>-<id>`); `OpenBaoRestore` accepts it.
    pub name: String,
    /// Object key of the snapshot.
    pub snapshot: String,
    #[serde(default)]
    pub size_bytes: i64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openbao_version: Option<String>,
    /// When the backup completed (RFC 3339).
    pub completed_at: String,
    /// The Job that made it.
    pub job: String,
}

/// One failed attempt.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupFailure {
    /// When the attempt ended (RFC 3339).
    pub time: String,
    pub job: String,
    /// The Job's exit code, when it ran to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What the exit code means, for example `StorageFailed`.
    pub reason: String,
    pub message: String,
}

/// A long operation that holds the cluster: at most one runs at a time,
/// and a restarted controller resumes it from here.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OperationLock {
    pub kind: OperationKind,
    /// The Job doing the work.
    pub job: String,
    /// Why it started: `schedule`, `trigger:<value>`, ...
    pub cause: String,
    /// When it started (RFC 3339).
    pub started_at: String,
}

/// What holds the cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    Backup,
    /// A restore drill (a throwaway node; the cluster itself is untouched).
    Drill,
    /// An `OpenBaoRestore` replacing the cluster's data.
    Restore,
    /// A version upgrade, from its preflight to its verification.
    Upgrade,
}

impl OperationKind {
    /// Whether the backup step releases this lock when its Job ends (a
    /// restore or an upgrade runs several steps and releases its own).
    pub fn released_by_backup_step(self) -> bool {
        matches!(self, Self::Backup | Self::Drill)
    }
}
