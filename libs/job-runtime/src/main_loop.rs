//! The shape every Job's `main` shares: logs, TLS provider, stop signal,
//! one run, the result line, the exit code.

use std::future::Future;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::exit::{ExitCode, JobError};
use crate::result::JobResult;

/// Runs `run` (which gets a token cancelled on SIGTERM/SIGINT), prints the
/// result line (and writes `result_file`), and returns the exit code.
/// `success` is the result message of a successful run.
pub async fn run_job<F, Fut>(
    job: &str,
    success: &str,
    result_file: Option<&Path>,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, JobError>>,
{
    crate::logging::init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), job, "starting");
    let stop = crate::shutdown::on_signal();
    let (result, code) = match run(stop).await {
        Ok(details) => (JobResult::success(job, success, details), ExitCode::Success),
        Err(error) => {
            tracing::error!(code = error.code.code(), reason = error.code.reason(), error = %error.message, "{job} failed");
            (
                JobResult::failure(job, &error, serde_json::Value::Null),
                error.code,
            )
        }
    };
    result.emit(result_file);
    code.into()
}
