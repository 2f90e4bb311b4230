//! Running this project's Job binaries in tests, as a Job's container would:
//! arguments and environment only, stdout's last line is the result.

use std::path::Path;
use std::process::Stdio;

use lifecycle_types::identities::Identity;
use reqwest::Method;
use serde_json::{Value, json};

use crate::BaoCluster;

/// Prefix of a Job's result line (see the job-runtime crate).
pub const RESULT_PREFIX: &str = "OPENBAO_OPERATOR_RESULT ";

/// What a Job run produced.
#[derive(Debug)]
pub struct JobRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl JobRun {
    /// The parsed result line.
    pub fn result(&self) -> Option<Value> {
        self.stdout
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(RESULT_PREFIX))
            .and_then(|json| serde_json::from_str(json).ok())
    }

    /// Both streams, for assertion messages.
    pub fn output(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `binary args` with `envs` (and nothing inherited but PATH and HOME).
pub async fn run_job(
    binary: &Path,
    args: &[String],
    envs: &[(String, String)],
) -> anyhow::Result<JobRun> {
    let output = job_command(binary, args, envs).output().await?;
    Ok(JobRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// The command [`run_job`] runs, for tests that signal it mid-way.
pub fn job_command(
    binary: &Path,
    args: &[String],
    envs: &[(String, String)],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .args(args)
        .env_clear()
        .envs(
            ["PATH", "HOME"]
                .iter()
                .filter_map(|k| Some((*k, std::env::var(k).ok()?))),
        )
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

impl BaoCluster {
    /// Installs `identity`'s policy and returns a token holding only it
    /// (plus `default`), for Jobs run with `--auth token`.
    pub async fn identity_token(&self, identity: Identity) -> anyhow::Result<String> {
        let leader = self.leader().await?;
        self.expect_ok(
            leader,
            Method::PUT,
            &format!("sys/policies/acl/{}", identity.policy_name()),
            json!({"policy": identity.policy_hcl()}),
        )
        .await?;
        let answer = self
            .expect_ok(
                leader,
                Method::POST,
                "auth/token/create",
                json!({"policies": [identity.policy_name()], "ttl": "1h"}),
            )
            .await?;
        answer["auth"]["client_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("token create returned no token"))
    }
}
