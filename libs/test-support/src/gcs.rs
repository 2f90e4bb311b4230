//! A Google Cloud Storage emulator (fake-gcs-server) on loopback.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::net::free_port;
use crate::process::ManagedProcess;
use crate::wait::poll_until;
use crate::{EnvDir, tools};

/// A running emulator with one bucket. It takes no credentials, so clients
/// send unsigned requests to [`GcsServer::endpoint`].
#[derive(Debug)]
pub struct GcsServer {
    process: ManagedProcess,
    pub endpoint: String,
    pub bucket: String,
    dir: EnvDir,
}

impl GcsServer {
    pub async fn start(bucket: &str) -> anyhow::Result<Self> {
        let dir = EnvDir::new("gcs")?;
        let data = dir.path().join("data");
        // Folders under -data become buckets at start.
        std::fs::create_dir_all(data.join(bucket))?;
        let port = free_port(Ipv4Addr::LOCALHOST)?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let process = ManagedProcess::spawn(
            "fake-gcs-server",
            &tools::fake_gcs_server()?,
            &[
                "-scheme=http".to_owned(),
                "-host=127.0.0.1".to_owned(),
                format!("-port={port}"),
                format!("-public-host=127.0.0.1:{port}"),
                format!("-external-url={endpoint}"),
                "-backend=filesystem".to_owned(),
                format!("-filesystem-root={}", dir.path().join("storage").display()),
                format!("-data={}", data.display()),
                "-log-level=warn".to_owned(),
            ],
            &[],
            &dir.path().join("fake-gcs-server.log"),
        )?;
        let mut server = Self {
            process,
            endpoint,
            bucket: bucket.to_owned(),
            dir,
        };
        let addr = format!("127.0.0.1:{port}");
        let process = &mut server.process;
        poll_until(Duration::from_secs(30), "fake-gcs-server to listen", || {
            let running = process.is_running();
            let tail = process.log_tail(20);
            let addr = addr.clone();
            async move {
                anyhow::ensure!(running, "fake-gcs-server exited:\n{tail}");
                Ok(tokio::net::TcpStream::connect(addr).await.is_ok())
            }
        })
        .await?;
        Ok(server)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Files of this server (data, log).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
