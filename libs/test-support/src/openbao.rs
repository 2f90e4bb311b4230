//! Real OpenBao Raft clusters on loopback: each node has its own 127.0.0.x
//! address, a static seal shared by all nodes (so restarts unseal by
//! themselves) and, by default, TLS from a throwaway CA.
//!
//! The cluster is initialized with `sys/init` for test setup; the root token
//! it returns stays inside this handle and is never logged.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hcl::{Block, Body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::net::{free_port, next_loopback_ip};
use crate::pki::TestCa;
use crate::process::ManagedProcess;
use crate::wait::{poll_until, poll_until_ok};
use crate::{EnvDir, tools};

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct BaoClusterOptions {
    /// OpenBao version; must be one the installer provides.
    pub version: String,
    /// Number of nodes, all of which become Raft voters.
    pub nodes: usize,
    /// Serve the API over TLS (certificates from a throwaway CA).
    pub tls: bool,
    /// Initialize the cluster (`sys/init` on node 0) and start every node.
    /// When false only node 0 is started, uninitialized, for tests of init.
    pub initialize: bool,
    /// The 32-byte static seal key; random when `None`. Two clusters with the
    /// same key can restore each other's snapshots without a restart.
    pub seal_key: Option<Vec<u8>>,
}

impl Default for BaoClusterOptions {
    fn default() -> Self {
        Self {
            version: tools::latest_openbao().to_owned(),
            nodes: 3,
            tls: true,
            initialize: true,
            seal_key: None,
        }
    }
}

/// One server of a [`BaoCluster`].
#[derive(Debug)]
pub struct BaoNode {
    /// Raft node id, `node-<index>`.
    pub id: String,
    pub ip: Ipv4Addr,
    pub api_port: u16,
    pub cluster_port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
    process: Option<ManagedProcess>,
}

/// A running cluster. Dropping it stops every node and removes its files.
pub struct BaoCluster {
    nodes: Vec<BaoNode>,
    version: String,
    binary: PathBuf,
    scheme: &'static str,
    ca_pem: Option<String>,
    root_token: String,
    http: reqwest::Client,
    dir: EnvDir,
}

impl fmt::Debug for BaoCluster {
    // Hand-written so that the root token can never reach a test's output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaoCluster")
            .field("version", &self.version)
            .field("nodes", &self.nodes)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// Static seal key id every node of a test cluster uses.
const SEAL_KEY_ID: &str = "test-static-1";

impl BaoCluster {
    /// Starts a cluster with default options (3 nodes, newest version, TLS).
    pub async fn start_default() -> anyhow::Result<Self> {
        Self::start(BaoClusterOptions::default()).await
    }

    /// Starts `options.nodes` servers, initializes the first, and returns
    /// once every node is an unsealed Raft voter.
    pub async fn start(options: BaoClusterOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(options.nodes >= 1, "a cluster needs at least one node");
        crate::install_crypto_provider();
        let dir = EnvDir::new(&format!("openbao-{}", options.version))?;
        let root = dir.path().to_path_buf();
        let binary = tools::bao(&options.version)?;

        let mut nodes = Vec::with_capacity(options.nodes);
        for index in 0..options.nodes {
            let ip = next_loopback_ip();
            nodes.push(BaoNode {
                id: format!("node-{index}"),
                ip,
                api_port: free_port(ip)?,
                cluster_port: free_port(ip)?,
                config_path: root.join(format!("node-{index}.hcl")),
                log_path: root.join(format!("node-{index}.log")),
                process: None,
            });
        }

        let ca = if options.tls {
            let ca = TestCa::new("openbao-operator test OpenBao")?;
            std::fs::write(root.join("ca.crt"), ca.cert_pem())?;
            for node in &nodes {
                let ip = node.ip.to_string();
                let pair = ca.issue(&node.id, None, &[&ip, "localhost"])?;
                std::fs::write(root.join(format!("{}.crt", node.id)), &pair.cert_pem)?;
                std::fs::write(root.join(format!("{}.key", node.id)), &pair.key_pem)?;
            }
            Some(ca.cert_pem())
        } else {
            None
        };
        let seal_key = root.join("seal.key");
        let key_bytes = match &options.seal_key {
            Some(key) => key.clone(),
            None => random_bytes(32)?,
        };
        anyhow::ensure!(key_bytes.len() == 32, "a static seal key is 32 bytes");
        std::fs::write(&seal_key, &key_bytes)?;

        let scheme = if options.tls { "https" } else { "http" };
        let join_addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("{scheme}://{}:{}", n.ip, n.api_port))
            .collect();
        for node in &nodes {
            let config = render_node_config(node, &root, &seal_key, options.tls, &join_addrs)?;
            std::fs::write(&node.config_path, config)?;
        }

        let mut cluster = Self {
            nodes,
            version: options.version,
            binary,
            scheme,
            http: http_client(ca.as_deref())?,
            ca_pem: ca,
            root_token: String::new(),
            dir,
        };
        cluster.start_node(0)?;
        if !options.initialize {
            cluster.wait_listening(0).await?;
            return Ok(cluster);
        }
        cluster.initialize().await?;
        for index in 1..cluster.nodes.len() {
            cluster.start_node(index)?;
        }
        cluster.wait_for_voters(cluster.nodes.len()).await?;
        for index in 0..cluster.nodes.len() {
            cluster.wait_unsealed(index).await?;
        }
        Ok(cluster)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn nodes(&self) -> &[BaoNode] {
        &self.nodes
    }

    /// API address of node `index`, for example `https://127.0.0.7:40123`.
    pub fn addr(&self, index: usize) -> String {
        let node = &self.nodes[index];
        format!("{}://{}:{}", self.scheme, node.ip, node.api_port)
    }

    /// PEM of the CA that signed the nodes' certificates (None without TLS).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The setup root token (empty when started with `initialize: false`).
    /// Tests use it to arrange state (policies, auth
    /// methods, data); never print it.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The static seal key every node uses.
    pub fn seal_key(&self) -> anyhow::Result<Vec<u8>> {
        Ok(std::fs::read(self.dir().join("seal.key"))?)
    }

    /// An `openbao_client`-style address list of every node.
    pub fn addrs(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.addr(i)).collect()
    }

    /// An HTTP client that trusts the cluster's CA.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Files of this cluster (configs, logs, data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.process.as_ref()?.pid())
            .collect()
    }

    /// Starts (or restarts) node `index` with its existing data.
    pub fn start_node(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        if let Some(mut old) = node.process.take() {
            old.stop(Duration::from_secs(20));
        }
        node.process = Some(ManagedProcess::spawn(
            &format!("bao {}", node.id),
            &self.binary,
            &[
                "server".to_owned(),
                format!("-config={}", node.config_path.display()),
            ],
            &[],
            &node.log_path,
        )?);
        Ok(())
    }

    /// Stops node `index` (SIGTERM, then SIGKILL after 20 s).
    pub fn stop_node(&mut self, index: usize) {
        if let Some(mut process) = self.nodes[index].process.take() {
            process.stop(Duration::from_secs(20));
        }
    }

    /// Sends a request to node `index` with the root token; returns the
    /// status and the JSON body (`Null` when empty).
    pub async fn request(
        &self,
        index: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}/v1/{}", self.addr(index), path.trim_start_matches('/'));
        let mut request = self.http.request(method, &url);
        if !self.root_token.is_empty() {
            request = request.header("X-Vault-Token", &self.root_token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("request {url}"))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, value))
    }

    /// Index of the active node, asking each node's `sys/leader`.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        poll_until_ok(Duration::from_secs(30), "an active node", || async {
            for index in 0..self.nodes.len() {
                if self.nodes[index].process.is_none() {
                    continue;
                }
                if let Ok((StatusCode::OK, body)) =
                    self.request(index, Method::GET, "sys/leader", None).await
                    && body["is_self"] == Value::Bool(true)
                {
                    return Ok(Some(index));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Raft servers as `(node_id, voter)` from `sys/storage/raft/configuration`.
    pub async fn raft_servers(&self) -> anyhow::Result<Vec<(String, bool)>> {
        let leader = self.leader().await?;
        let (status, body) = self
            .request(leader, Method::GET, "sys/storage/raft/configuration", None)
            .await?;
        anyhow::ensure!(status.is_success(), "raft configuration: {status} {body}");
        let servers = body["data"]["config"]["servers"]
            .as_array()
            .context("raft configuration has no servers list")?;
        Ok(servers
            .iter()
            .map(|s| {
                (
                    s["node_id"].as_str().unwrap_or_default().to_owned(),
                    s["voter"].as_bool().unwrap_or(false),
                )
            })
            .collect())
    }

    /// Waits until node `index` answers and reports itself unsealed.
    pub async fn wait_unsealed(&self, index: usize) -> anyhow::Result<()> {
        let what = format!("{} to be unsealed", self.nodes[index].id);
        poll_until(Duration::from_secs(60), &what, || async {
            self.ensure_running(index)?;
            Ok(self
                .request(index, Method::GET, "sys/seal-status", None)
                .await
                .is_ok_and(|(status, body)| {
                    status.is_success() && body["sealed"] == Value::Bool(false)
                }))
        })
        .await
        .with_context(|| self.logs_hint())
    }

    /// Waits until autopilot reports `count` healthy voters.
    pub async fn wait_for_voters(&self, count: usize) -> anyhow::Result<()> {
        let what = format!("{count} healthy Raft voters");
        poll_until_ok(Duration::from_secs(120), &what, || async {
            let leader = self.leader().await?;
            let (status, body) = self
                .request(
                    leader,
                    Method::GET,
                    "sys/storage/raft/autopilot/state",
                    None,
                )
                .await?;
            anyhow::ensure!(status.is_success(), "autopilot state: {status} {body}");
            let voters = body["data"]["voters"].as_array().map_or(0, Vec::len);
            let healthy = body["data"]["healthy"] == Value::Bool(true);
            Ok((voters == count && healthy).then_some(()))
        })
        .await
        .with_context(|| self.logs_hint())
    }

    // Initializes node 0 with one recovery share (so a later static-key
    // rotation works) and waits until it is active.
    async fn wait_listening(&self, index: usize) -> anyhow::Result<()> {
        poll_until(Duration::from_secs(60), "the node to listen", || async {
            self.ensure_running(index)?;
            Ok(self
                .request(index, Method::GET, "sys/health", None)
                .await
                .is_ok())
        })
        .await
        .with_context(|| self.logs_hint())
    }

    async fn initialize(&mut self) -> anyhow::Result<()> {
        self.wait_listening(0).await?;
        let (status, body) = self
            .request(
                0,
                Method::PUT,
                "sys/init",
                Some(json!({"recovery_shares": 1, "recovery_threshold": 1})),
            )
            .await?;
        anyhow::ensure!(status.is_success(), "sys/init answered {status}");
        self.root_token = body["root_token"]
            .as_str()
            .context("sys/init returned no root_token")?
            .to_owned();
        poll_until(
            Duration::from_secs(60),
            "node-0 to become active",
            || async {
                self.ensure_running(0)?;
                Ok(self
                    .request(0, Method::GET, "sys/health", None)
                    .await
                    .is_ok_and(|(status, _)| status == StatusCode::OK))
            },
        )
        .await
        .with_context(|| self.logs_hint())?;
        // New voters are promoted after the stabilization time; the default
        // of 10 s only slows tests down.
        let (status, body) = self
            .request(
                0,
                Method::POST,
                "sys/storage/raft/autopilot/configuration",
                Some(json!({"server_stabilization_time": "2s"})),
            )
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "autopilot configuration: {status} {body}"
        );
        Ok(())
    }

    fn ensure_running(&self, index: usize) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        let exited = node
            .process
            .as_ref()
            .and_then(|p| p.pid())
            .is_none_or(|pid| !crate::process::pid_alive(pid));
        anyhow::ensure!(
            !exited,
            "{} exited:\n{}",
            node.id,
            node.process
                .as_ref()
                .map(|p| p.log_tail(20))
                .unwrap_or_default()
        );
        Ok(())
    }

    fn logs_hint(&self) -> String {
        format!(
            "OpenBao logs are in {} (KEEP_TEST_ENV=1 keeps them)",
            self.dir().display()
        )
    }
}

fn http_client(ca_pem: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5));
    if let Some(pem) = ca_pem {
        builder = builder.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes())?]);
    }
    Ok(builder.build()?)
}

fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Renders one node's server configuration with the HCL library.
fn render_node_config(
    node: &BaoNode,
    root: &Path,
    seal_key: &Path,
    tls: bool,
    join_addrs: &[String],
) -> anyhow::Result<String> {
    let scheme = if tls { "https" } else { "http" };
    let api = format!("{}:{}", node.ip, node.api_port);
    let cluster = format!("{}:{}", node.ip, node.cluster_port);
    let path = |p: PathBuf| p.display().to_string();

    let mut listener = Block::builder("listener")
        .add_label("tcp")
        .add_attribute(("address", api.clone()))
        .add_attribute(("cluster_address", cluster.clone()));
    listener = if tls {
        listener
            .add_attribute(("tls_cert_file", path(root.join(format!("{}.crt", node.id)))))
            .add_attribute(("tls_key_file", path(root.join(format!("{}.key", node.id)))))
    } else {
        listener.add_attribute(("tls_disable", true))
    };

    let data_dir = root.join(format!("{}-data", node.id));
    std::fs::create_dir_all(&data_dir)?;
    let mut storage = Block::builder("storage")
        .add_label("raft")
        .add_attribute(("path", path(data_dir)))
        .add_attribute(("node_id", node.id.clone()));
    for addr in join_addrs {
        let mut join =
            Block::builder("retry_join").add_attribute(("leader_api_addr", addr.clone()));
        if tls {
            join = join.add_attribute(("leader_ca_cert_file", path(root.join("ca.crt"))));
        }
        storage = storage.add_block(join.build());
    }

    let body = Body::builder()
        .add_attribute(("ui", false))
        .add_attribute(("api_addr", format!("{scheme}://{api}")))
        .add_attribute(("cluster_addr", format!("https://{cluster}")))
        .add_block(listener.build())
        .add_block(
            Block::builder("seal")
                .add_label("static")
                .add_attribute(("current_key_id", SEAL_KEY_ID))
                .add_attribute(("current_key", format!("file://{}", seal_key.display())))
                .build(),
        )
        .add_block(storage.build())
        .build();
    Ok(hcl::to_string(&body)?)
}
