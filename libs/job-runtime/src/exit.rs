//! Exit codes: one per failure class, stable, documented in each binary's
//! `--help`, so a Job's status alone says what went wrong.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitCode {
    Success,
    /// A bug or an error no class covers.
    Unexpected,
    /// Bad flags or environment.
    Config,
    /// Login failed or the identity's policy lacks a path.
    Auth,
    /// No active OpenBao node could be found.
    LeaderDiscovery,
    /// OpenBao failed to produce or accept the snapshot.
    Snapshot,
    /// Object storage failed.
    Storage,
    /// The backup failed verification (size, SHA-256, manifest, cluster, version).
    Verification,
    /// Stopped by SIGTERM or SIGINT before finishing.
    Interrupted,
}

impl ExitCode {
    pub const ALL: [ExitCode; 9] = [
        ExitCode::Success,
        ExitCode::Unexpected,
        ExitCode::Config,
        ExitCode::Auth,
        ExitCode::LeaderDiscovery,
        ExitCode::Snapshot,
        ExitCode::Storage,
        ExitCode::Verification,
        ExitCode::Interrupted,
    ];

    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Unexpected => 1,
            ExitCode::Config => 2,
            ExitCode::Auth => 3,
            ExitCode::LeaderDiscovery => 4,
            ExitCode::Snapshot => 5,
            ExitCode::Storage => 6,
            ExitCode::Verification => 7,
            ExitCode::Interrupted => 8,
        }
    }

    /// PascalCase reason for conditions and events.
    pub fn reason(self) -> &'static str {
        match self {
            ExitCode::Success => "Succeeded",
            ExitCode::Unexpected => "Unexpected",
            ExitCode::Config => "InvalidConfiguration",
            ExitCode::Auth => "AuthenticationFailed",
            ExitCode::LeaderDiscovery => "NoActiveNode",
            ExitCode::Snapshot => "SnapshotFailed",
            ExitCode::Storage => "StorageFailed",
            ExitCode::Verification => "VerificationFailed",
            ExitCode::Interrupted => "Interrupted",
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| i32::from(c.code()) == code)
    }

    /// The table for `--help`.
    pub fn help_table() -> String {
        let mut out = String::from("Exit codes:\n");
        for code in Self::ALL {
            out.push_str(&format!("  {:>2}  {}\n", code.code(), code.reason()));
        }
        out
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

/// A failure with its class. The message says what failed and what to do,
/// and never contains a credential.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub code: ExitCode,
    pub message: String,
    /// Whether trying again (from leader discovery) may help.
    pub transient: bool,
}

impl JobError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            transient: false,
        }
    }

    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    /// Classifies an OpenBao error met while doing `what`: permission and
    /// login problems are [`ExitCode::Auth`], everything else `fallback`.
    pub fn from_openbao(fallback: ExitCode, what: &str, error: openbao_client::Error) -> Self {
        let code = match &error {
            openbao_client::Error::PermissionDenied { .. } => ExitCode::Auth,
            openbao_client::Error::Config(_) | openbao_client::Error::CredentialFile { .. } => {
                ExitCode::Config
            }
            _ => fallback,
        };
        let transient = error.is_transient();
        Self {
            code,
            message: format!("{what}: {error}"),
            transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ExitCode::ALL {
            assert!(seen.insert(code.code()), "{code:?} reuses {}", code.code());
            assert_eq!(ExitCode::from_code(code.code().into()), Some(code));
        }
        assert!(ExitCode::help_table().contains(" 7  VerificationFailed"));
    }

    #[test]
    fn permission_errors_are_auth_errors() {
        let denied = openbao_client::Error::PermissionDenied {
            path: "sys/storage/raft/snapshot".into(),
            message: "permission denied".into(),
        };
        let error = JobError::from_openbao(ExitCode::Snapshot, "streaming the snapshot", denied);
        assert_eq!(error.code, ExitCode::Auth);
        assert!(error.message.contains("sys/storage/raft/snapshot"));
    }
}
