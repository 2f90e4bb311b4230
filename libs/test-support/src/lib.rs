//! The project's test environment: real servers on this machine, started by
//! tests and stopped when the handle is dropped.
//!
//! - [`ControlPlane`]: etcd, kube-apiserver and kube-controller-manager.
//! - [`BaoCluster`]: an OpenBao Raft cluster of N nodes on 127.0.0.x.
//! - [`S3Server`]: a real S3-compatible server (versitygw) with a bucket.
//! - [`NodeAgent`]: a kubelet stand-in that runs a control plane's pods as
//!   local processes, with their own network namespaces and cluster DNS.
//! - [`openbao_pods`]: OpenBao as a StatefulSet on a control plane, run by a
//!   [`NodeAgent`], the way an operator deploys it.
//!
//! The binaries come from `ci/install-test-env.sh`. This crate is a
//! dev-dependency only; it uses `anyhow` because its callers are tests.

pub mod azure;
pub mod control_plane;
pub mod crds;
pub mod devenv;
pub mod gcs;
pub mod identities;
pub mod jobs;
pub mod net;
pub mod node_agent;
pub mod openbao;
pub mod openbao_pods;
pub mod pki;
pub mod process;
pub mod proxy;
pub mod s3;
pub mod tools;
pub mod wait;

use std::path::{Path, PathBuf};

pub use control_plane::ControlPlane;
pub use node_agent::{NodeAgent, NodeAgentOptions};
pub use openbao::{BaoCluster, BaoClusterOptions};
pub use s3::S3Server;

/// Installs rustls' ring provider as the process default. Every TLS client in
/// this workspace uses ring; installing it explicitly avoids a panic when more
/// than one provider is compiled in.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Logs to the test output, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Logging for the binaries a user runs (devenv, golden-path): their own
/// lines and real problems. The kube client's retries while the API server
/// starts are not (the binaries wait for it and say so); `RUST_LOG`
/// overrides.
pub fn init_user_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client=off,kube_runtime=off".into()),
        )
        .try_init();
}

/// Runs `work` until it ends or Ctrl-C or SIGTERM arrives; on a signal the
/// future is dropped, which stops and removes whatever it had started.
pub async fn until_signal(
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = work => result,
        result = tokio::signal::ctrl_c() => { println!("stopping..."); Ok(result?) }
        _ = term.recv() => { println!("stopping..."); Ok(()) }
    }
}

/// A scratch folder for one environment. Removed on drop unless
/// `KEEP_TEST_ENV=1`, in which case its path is printed for debugging.
#[derive(Debug)]
pub struct EnvDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl EnvDir {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("openbao-operator-{prefix}-"))
            .tempdir()?;
        let path = dir.path().to_path_buf();
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EnvDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_ENV").is_some_and(|v| v == "1")
            && let Some(dir) = self.dir.take()
        {
            eprintln!("KEEP_TEST_ENV=1: keeping {}", dir.keep().display());
        }
    }
}

/// Writes `text` to a file only its owner may read (keys, tokens).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())?;
    Ok(())
}
