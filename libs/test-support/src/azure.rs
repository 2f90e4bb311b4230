//! Azurite, the Azure Blob Storage emulator, on loopback, with a container
//! created through the real Azure Storage SDK.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;

use crate::net::free_port;
use crate::process::ManagedProcess;
use crate::wait::poll_until;
use crate::{EnvDir, tools};

/// Azurite's well-known development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key: public, documented, not a secret.
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite with one container. Clients use the emulator's
/// well-known development credentials: set `AZURE_STORAGE_USE_EMULATOR=true`
/// and `AZURITE_BLOB_STORAGE_URL` to [`AzuriteServer::endpoint`].
#[derive(Debug)]
pub struct AzuriteServer {
    process: ManagedProcess,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub container: String,
    dir: EnvDir,
}

impl AzuriteServer {
    pub async fn start(container: &str) -> anyhow::Result<Self> {
        let dir = EnvDir::new("azurite")?;
        let install = tools::azurite_dir()?;
        let port = free_port(Ipv4Addr::LOCALHOST)?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let process = ManagedProcess::spawn(
            "azurite-blob",
            &install.join("node_modules/.bin/azurite-blob"),
            &[
                "--blobHost=127.0.0.1".to_owned(),
                format!("--blobPort={port}"),
                format!("--location={}", dir.path().join("data").display()),
                "--silent".to_owned(),
                "--skipApiVersionCheck".to_owned(),
            ],
            &[],
            &dir.path().join("azurite.log"),
        )?;
        let mut server = Self {
            process,
            endpoint,
            container: container.to_owned(),
            dir,
        };
        let addr = format!("127.0.0.1:{port}");
        let process = &mut server.process;
        poll_until(Duration::from_secs(60), "azurite to listen", || {
            let running = process.is_running();
            let tail = process.log_tail(20);
            let addr = addr.clone();
            async move {
                anyhow::ensure!(running, "azurite exited:\n{tail}");
                Ok(tokio::net::TcpStream::connect(addr).await.is_ok())
            }
        })
        .await?;
        server.create_container(&install).await?;
        Ok(server)
    }

    /// Creates the container with the Azure Storage SDK for JavaScript.
    async fn create_container(&self, install: &std::path::Path) -> anyhow::Result<()> {
        let script = r#"
            const { BlobServiceClient } = require("@azure/storage-blob");
            const [endpoint, account, key, container] = process.argv.slice(1);
            const connection = `DefaultEndpointsProtocol=http;AccountName=${account};AccountKey=${key};BlobEndpoint=${endpoint}/${account};`;
            BlobServiceClient.fromConnectionString(connection)
              .getContainerClient(container)
              .createIfNotExists()
              .then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1); });
        "#;
        let output = tokio::process::Command::new("node")
            .arg("-e")
            .arg(script)
            .args([&self.endpoint, ACCOUNT, ACCOUNT_KEY, &self.container])
            .env("NODE_PATH", install.join("node_modules"))
            .kill_on_drop(true)
            .output()
            .await
            .context("run node to create the Azurite container")?;
        anyhow::ensure!(
            output.status.success(),
            "creating container {} failed: {}",
            self.container,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Files of this server (data, log).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
