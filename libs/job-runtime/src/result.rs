//! The final result line: one JSON object, printed last on stdout with a
//! fixed prefix and written to the termination-message file, so the
//! controller can read it from the Pod status without reading logs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::exit::{ExitCode, JobError};

/// Prefix of the result line on stdout.
pub const RESULT_PREFIX: &str = "OPENBAO_OPERATOR_RESULT ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// `backup`, `restore` or `upgrade`.
    pub job: String,
    pub outcome: Outcome,
    pub exit_code: u8,
    pub reason: String,
    pub message: String,
    /// Job-specific facts (object names, size, SHA-256, Raft index, ...).
    #[serde(default)]
    pub details: serde_json::Value,
}

impl JobResult {
    pub fn success(job: &str, message: impl Into<String>, details: serde_json::Value) -> Self {
        Self {
            job: job.to_owned(),
            outcome: Outcome::Succeeded,
            exit_code: ExitCode::Success.code(),
            reason: ExitCode::Success.reason().to_owned(),
            message: message.into(),
            details,
        }
    }

    pub fn failure(job: &str, error: &JobError, details: serde_json::Value) -> Self {
        Self {
            job: job.to_owned(),
            outcome: Outcome::Failed,
            exit_code: error.code.code(),
            reason: error.code.reason().to_owned(),
            message: error.message.clone(),
            details,
        }
    }

    /// The result line (prefix + compact JSON).
    pub fn line(&self) -> String {
        format!(
            "{RESULT_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// Prints the line on stdout and, when given, writes the JSON to
    /// `result_file` (e.g. `/dev/termination-log`); a file that cannot be
    /// written is reported on stderr, not fatal.
    pub fn emit(&self, result_file: Option<&Path>) {
        println!("{}", self.line());
        if let Some(path) = result_file {
            let json = serde_json::to_string(self).unwrap_or_default();
            if let Err(error) = std::fs::write(path, json) {
                tracing::warn!(path = %path.display(), %error, "cannot write the result file");
            }
        }
    }

    /// The last result line in a log, if any.
    pub fn parse_log(log: &str) -> Option<Self> {
        log.lines()
            .rev()
            .find_map(|line| line.strip_prefix(RESULT_PREFIX))
            .and_then(|json| serde_json::from_str(json).ok())
    }
}

/// Parses the command line; a usage error still ends with a result line
/// (reason `InvalidConfiguration`, exit 2) so the controller sees why.
pub fn parse_args<T: clap::Parser>(job: &str) -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            let _ = error.print();
            let failure =
                JobError::new(ExitCode::Config, error.kind().to_string() + ": see --help");
            JobResult::failure(job, &failure, serde_json::Value::Null).emit(None);
            std::process::exit(ExitCode::Config.code().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_result_line_wins() {
        let first = JobResult::success("backup", "one", serde_json::json!({"n": 1}));
        let failed = JobResult::failure(
            "backup",
            &JobError::new(ExitCode::Storage, "bucket gone; check the destination"),
            serde_json::Value::Null,
        );
        let log = format!(
            "{{\"level\":\"INFO\"}}\n{}\nnoise\n{}\n",
            first.line(),
            failed.line()
        );
        let parsed = JobResult::parse_log(&log).unwrap();
        assert_eq!(parsed, failed);
        assert_eq!(parsed.exit_code, 6);
        assert_eq!(parsed.reason, "StorageFailed");
        assert!(JobResult::parse_log("nothing here").is_none());
    }
}
