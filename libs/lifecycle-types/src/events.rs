//! Reasons and actions of the Events the controller publishes. Like
//! condition reasons they are stable: tools and alerts match on them.

/// Event reasons (what happened).
pub mod reasons {
    pub const AUTOPILOT_CONFIGURED: &str = "AutopilotConfigured";
    pub const LEADER_STEPPED_DOWN: &str = "LeaderSteppedDown";
    pub const RAFT_PEER_REMOVED: &str = "RaftPeerRemoved";
    pub const POD_RESTARTED: &str = "PodRestarted";
    pub const INITIALIZED: &str = "Initialized";
    pub const ROOT_TOKEN_STORED: &str = "RootTokenStored";
    pub const BACKUP_STARTED: &str = "BackupStarted";
    pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
    pub const BACKUP_FAILED: &str = "BackupFailed";
    pub const DRILL_STARTED: &str = "DrillStarted";
    pub const DRILL_PASSED: &str = "DrillPassed";
    pub const DRILL_FAILED: &str = "DrillFailed";
    pub const RESTORE_STARTED: &str = "RestoreStarted";
    pub const RESTORE_COMPLETED: &str = "RestoreCompleted";
    pub const RESTORE_FAILED: &str = "RestoreFailed";
    /// An upgrade step's Job started (the message names the step).
    pub const UPGRADE_STEP_STARTED: &str = "UpgradeStepStarted";
    pub const UPGRADE_STEP_SUCCEEDED: &str = "UpgradeStepSucceeded";
    pub const UPGRADE_STEP_FAILED: &str = "UpgradeStepFailed";
    pub const UPGRADE_ABORTED: &str = "UpgradeAborted";
    pub const UPGRADE_COMPLETED: &str = "UpgradeCompleted";
}

/// Event actions (what the controller was doing).
pub mod actions {
    pub const CONFIGURE_AUTOPILOT: &str = "ConfigureAutopilot";
    pub const SCALE_DOWN: &str = "ScaleDown";
    pub const ROLLOUT: &str = "Rollout";
    pub const INITIALIZE: &str = "Initialize";
    pub const MANAGE_TLS: &str = "ManageTLS";
    pub const BACKUP: &str = "Backup";
    pub const DRILL: &str = "Drill";
    pub const RESTORE: &str = "Restore";
    pub const UPGRADE: &str = "Upgrade";
    /// A reconcile failed; the reason is the error's.
    pub const RECONCILE: &str = "Reconcile";
}
