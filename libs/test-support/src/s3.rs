//! A real S3-compatible server (versitygw with its POSIX backend) on loopback.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::net::free_port;
use crate::pki::TestCa;
use crate::process::ManagedProcess;
use crate::wait::poll_until;
use crate::{EnvDir, tools};

const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// Region the server reports; clients must sign for it.
pub const REGION: &str = "us-east-1";

/// A running S3 server with one bucket. Dropping it stops the server and
/// removes its data.
pub struct S3Server {
    process: ManagedProcess,
    /// `http://127.0.0.1:<port>`, or `https://` from [`Self::start_tls_on`].
    pub endpoint: String,
    pub bucket: String,
    /// The CA that signed the server's certificate, when it serves https.
    pub ca_pem: Option<String>,
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
        Self::start_on(bucket, Ipv4Addr::LOCALHOST).await
    }

    /// [`Self::start`] listening on `ip`, for example a node agent's
    /// gateway, the one host address its pods can reach.
    pub async fn start_on(bucket: &str, ip: Ipv4Addr) -> anyhow::Result<Self> {
        Self::launch(bucket, ip, false).await
    }

    /// [`Self::start_on`] serving https, with a certificate for `ip` from
    /// a CA of its own (in [`Self::ca_pem`]), as a private endpoint would.
    pub async fn start_tls_on(bucket: &str, ip: Ipv4Addr) -> anyhow::Result<Self> {
        Self::launch(bucket, ip, true).await
    }

    async fn launch(bucket: &str, ip: Ipv4Addr, tls: bool) -> anyhow::Result<Self> {
        let dir = EnvDir::new("s3")?;
        let data = dir.path().join("data");
        // With the POSIX backend a bucket is a top-level directory.
        std::fs::create_dir_all(data.join(bucket))?;
        let port = free_port(ip)?;
        let access_key_id = format!("test{}", std::process::id());
        let secret_access_key = hex_secret()?;
        let (endpoint, ca_pem) = if tls {
            let ca = TestCa::new("s3-test-ca")?;
            let server = ca.issue("s3", None, &[&ip.to_string()])?;
            std::fs::write(dir.path().join(TLS_CERT), server.cert_pem)?;
            crate::write_private(&dir.path().join(TLS_KEY), &server.key_pem)?;
            (format!("https://{ip}:{port}"), Some(ca.cert_pem()))
        } else {
            (format!("http://{ip}:{port}"), None)
        };
        let process = spawn(&dir, &endpoint, &access_key_id, &secret_access_key)?;
        let mut server = Self {
            process,
            endpoint,
            bucket: bucket.to_owned(),
            ca_pem,
            access_key_id,
            secret_access_key,
            dir,
        };
        server.wait_listening().await?;
        Ok(server)
    }

    /// Starts the stopped server again on the same address and data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process = spawn(
            &self.dir,
            &self.endpoint,
            &self.access_key_id,
            &self.secret_access_key,
        )?;
        self.wait_listening().await
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
        let addr = host_port(&self.endpoint).to_owned();
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

fn spawn(
    dir: &EnvDir,
    endpoint: &str,
    access_key_id: &str,
    secret_access_key: &str,
) -> anyhow::Result<ManagedProcess> {
    let mut args = vec![
        format!("--port={}", host_port(endpoint)),
        format!("--region={REGION}"),
        "--quiet".to_owned(),
    ];
    if endpoint.starts_with("https://") {
        args.push(format!("--cert={}", dir.path().join(TLS_CERT).display()));
        args.push(format!("--key={}", dir.path().join(TLS_KEY).display()));
    }
    args.extend([
        "posix".to_owned(),
        dir.path().join("data").display().to_string(),
    ]);
    ManagedProcess::spawn(
        "versitygw",
        &tools::versitygw()?,
        &args,
        // Credentials go through the environment, never the command line.
        &[
            ("ROOT_ACCESS_KEY_ID".to_owned(), access_key_id.to_owned()),
            (
                "ROOT_SECRET_ACCESS_KEY".to_owned(),
                secret_access_key.to_owned(),
            ),
        ],
        &dir.path().join("versitygw.log"),
    )
}

/// `ip:port` of an `http://` or `https://` endpoint.
fn host_port(endpoint: &str) -> &str {
    endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
}

fn hex_secret() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
