//! A real S3-compatible server (versitygw with its POSIX backend) on loopback.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::net::free_port;
use crate::process::ManagedProcess;
use crate::wait::poll_until;
use crate::{EnvDir, tools};

/// Region the server reports; clients must sign for it.
pub const REGION: &str = "us-east-1";

/// A running S3 server with one bucket. Dropping it stops the server and
/// removes its data.
pub struct S3Server {
    process: ManagedProcess,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub bucket: String,
    access_key_id: String,
    secret_access_key: String,
    dir: EnvDir,
}

impl fmt::Debug for S3Server {
    // Hand-written so that the secret key never reaches test output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Starts the server with bucket `bucket` and waits until it answers.
    pub async fn start(bucket: &str) -> anyhow::Result<Self> {
        let dir = EnvDir::new("s3")?;
        let data = dir.path().join("data");
        // With the POSIX backend a bucket is a top-level directory.
        std::fs::create_dir_all(data.join(bucket))?;
        let port = free_port(Ipv4Addr::LOCALHOST)?;
        let access_key_id = format!("test{}", std::process::id());
        let secret_access_key = hex_secret()?;
        let process = ManagedProcess::spawn(
            "versitygw",
            &tools::versitygw()?,
            &[
                format!("--port=127.0.0.1:{port}"),
                format!("--region={REGION}"),
                "--quiet".to_owned(),
                "posix".to_owned(),
                data.display().to_string(),
            ],
            // Credentials go through the environment, never the command line.
            &[
                ("ROOT_ACCESS_KEY_ID".to_owned(), access_key_id.clone()),
                (
                    "ROOT_SECRET_ACCESS_KEY".to_owned(),
                    secret_access_key.clone(),
                ),
            ],
            &dir.path().join("versitygw.log"),
        )?;
        let mut server = Self {
            process,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_owned(),
            access_key_id,
            secret_access_key,
            dir,
        };
        server.wait_listening().await?;
        Ok(server)
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The root secret key; never print it.
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The folder holding the buckets (the POSIX backend's root).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server (SIGTERM, then SIGKILL), as an outage would.
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(5));
    }

    async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let addr = self.endpoint.trim_start_matches("http://").to_owned();
        let process = &mut self.process;
        poll_until(Duration::from_secs(30), "versitygw to listen", || {
            let running = process.is_running();
            let tail = process.log_tail(20);
            let addr = addr.clone();
            async move {
                anyhow::ensure!(running, "versitygw exited:\n{tail}");
                Ok(tokio::net::TcpStream::connect(addr).await.is_ok())
            }
        })
        .await
    }
}

fn hex_secret() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
