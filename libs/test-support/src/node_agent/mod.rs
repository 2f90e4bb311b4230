//! A test-only node agent: plays the kubelet (and a little of kube-proxy,
//! CoreDNS and a volume provisioner) for one or more Node objects, so that
//! StatefulSet and Job pods of a [`ControlPlane`] really run, as local
//! processes.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use test_support::{ControlPlane, NodeAgent, NodeAgentOptions};
//! let plane = ControlPlane::start().await?;
//! let agent = NodeAgent::start(&plane, NodeAgentOptions::default()).await?;
//! // ... create StatefulSets, Jobs; reach pods by name with `agent.resolver()`.
//! println!("{}", agent.logs("default", "bao-0", "openbao")?);
//! # Ok(()) }
//! ```
//!
//! How each kubelet duty is met (details in each module):
//!
//! - Node, lease, scheduling, volumes: [`node`] (the real kube-scheduler
//!   binds pods; PersistentVolumes are provisioned as folders).
//! - Pods: [`pod`] (sandbox, init containers, sidecars, containers,
//!   restarts, probes, graceful deletion, status through the status
//!   subresource).
//! - Containers: [`container`] (a process in the pod's network namespace
//!   with a private mount namespace and a tmpfs root where volumes appear at
//!   their real mountPaths).
//! - Termination messages: [`termination`] (`terminationMessagePath` and
//!   `terminationMessagePolicy`, read into `state.terminated.message`).
//! - Images: [`images`] (image name to local executable, configurable).
//! - Network and DNS: [`network`], [`dns`] (a bridge and a /24 of the
//!   agent's own, per-pod network namespaces, cluster DNS from
//!   EndpointSlices, a TCP proxy to the API server).
//!
//! Everything the agent starts is stopped on drop: container processes,
//! pause processes (and with them every pod network namespace and veth),
//! the bridge, and the files (unless `KEEP_TEST_ENV=1`).

pub mod container;
pub mod dns;
pub mod env;
pub mod images;
pub mod network;
pub mod node;
pub mod oci;
pub mod pod;
pub mod probes;
pub mod status;
pub mod termination;
pub mod users;
pub mod volumes;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::task::JoinHandle;

use crate::process::ManagedProcess;
use crate::{ControlPlane, EnvDir, tools};

pub use dns::ClusterResolver;
pub use images::{ImageMap, ImageRule, ImageSource};
pub use node::Capacity;

/// Port of the API-server proxy on the bridge (`KUBERNETES_SERVICE_PORT`).
pub const APISERVER_PROXY_PORT: u16 = 443;
/// `KUBERNETES_SERVICE_HOST` as pods see it: a name in the API server's
/// certificate, resolved by the cluster DNS to the proxy.
pub const APISERVER_SERVICE_HOST: &str = "kubernetes.default.svc";

/// How to start an agent.
#[derive(Debug, Clone)]
pub struct NodeAgentOptions {
    /// Node names; the agent plays the kubelet for each.
    pub nodes: Vec<String>,
    pub capacity: Capacity,
    pub images: ImageMap,
    /// Run the real kube-scheduler (turn off only if the test binds pods
    /// itself by setting `spec.nodeName`).
    pub scheduler: bool,
}

impl Default for NodeAgentOptions {
    fn default() -> Self {
        Self {
            nodes: vec!["node-agent-0".into()],
            capacity: Capacity::default(),
            images: ImageMap::default(),
            scheduler: true,
        }
    }
}

/// State shared by the agent's tasks.
pub(crate) struct Shared {
    pub client: kube::Client,
    pub images: ImageMap,
    pub bridge_name: String,
    pub bridge_index: u8,
    pub gateway: Ipv4Addr,
    pub pool: Mutex<network::IpPool>,
    pub registry: container::ProcessRegistry,
    pub sandboxes: Mutex<HashMap<String, network::Sandbox>>,
    pub dir: PathBuf,
    pub host_entries: Vec<container::RootEntry>,
    pub probe_http: reqwest::Client,
    /// `(namespace, pod, container)` to its log files, oldest first.
    pub logs: Mutex<HashMap<(String, String, String), Vec<PathBuf>>>,
    /// `(namespace, pod)` to the folder of its latest incarnation.
    pub pod_dirs: Mutex<HashMap<(String, String), PathBuf>>,
    /// `(namespace, pod, container)` to the process group of its latest
    /// instance, so a test can crash it.
    pub processes: Mutex<HashMap<(String, String, String), u32>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("bridge", &self.bridge_name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A running node agent. Dropping it stops every pod process, removes every
/// network namespace, veth and the bridge, and deletes its files.
#[derive(Debug)]
pub struct NodeAgent {
    tasks: Vec<JoinHandle<()>>,
    workers: Arc<Mutex<HashMap<String, pod::WorkerHandle>>>,
    shared: Arc<Shared>,
    resolver: ClusterResolver,
    scheduler: Option<ManagedProcess>,
    nodes: Vec<String>,
    // Dropped after everything that lives on it.
    bridge: network::Bridge,
    dir: EnvDir,
}

impl NodeAgent {
    /// Creates the bridge, DNS and API-server proxy, registers the nodes,
    /// starts the scheduler and the provisioner, and starts running the
    /// pods bound to the nodes. Returns once the nodes are Ready.
    pub async fn start(plane: &ControlPlane, options: NodeAgentOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !options.nodes.is_empty(),
            "a node agent needs at least one node name"
        );
        crate::install_crypto_provider();
        let dir = EnvDir::new("node-agent")?;
        let root = dir.path().to_path_buf();
        let client = plane.client().await?;
        let bridge = network::Bridge::create().context(
            "create the node agent's bridge (needs root and iproute2: `ip link add ... type bridge`)",
        )?;

        let shared = Arc::new(Shared {
            client: client.clone(),
            images: options.images.clone(),
            bridge_name: bridge.name.clone(),
            bridge_index: bridge.index,
            gateway: bridge.gateway,
            pool: Mutex::new(network::IpPool::default()),
            registry: container::ProcessRegistry::default(),
            sandboxes: Mutex::new(HashMap::new()),
            dir: root.clone(),
            host_entries: container::host_root_entries(),
            probe_http: probes::probe_http_client()?,
            logs: Mutex::new(HashMap::new()),
            pod_dirs: Mutex::new(HashMap::new()),
            processes: Mutex::new(HashMap::new()),
        });
        let table = dns::DnsTable::default();
        let mut agent = Self {
            tasks: Vec::new(),
            workers: Arc::new(Mutex::new(HashMap::new())),
            shared: shared.clone(),
            resolver: ClusterResolver::new(table.clone()),
            scheduler: None,
            nodes: options.nodes.clone(),
            bridge,
            dir,
        };

        // DNS for the pods, on the bridge address.
        let socket = tokio::net::UdpSocket::bind(SocketAddr::from((agent.bridge.gateway, 53)))
            .await
            .context("bind the cluster DNS server on the bridge address, port 53")?;
        agent
            .tasks
            .push(tokio::spawn(dns::serve(socket, table.clone())));
        agent.tasks.push(tokio::spawn(watch_endpoint_slices(
            client.clone(),
            table,
            agent.bridge.gateway,
        )));

        // The API server, reachable from pods.
        let upstream: SocketAddr = plane
            .server_url
            .trim_start_matches("https://")
            .parse()
            .context("the control plane's server URL is not https://<ip>:<port>")?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((
            agent.bridge.gateway,
            APISERVER_PROXY_PORT,
        )))
        .await
        .context("bind the API-server proxy on the bridge address")?;
        agent
            .tasks
            .push(tokio::spawn(network::proxy_apiserver(listener, upstream)));

        node::register(
            &client,
            &options.nodes,
            agent.bridge.gateway,
            &options.capacity,
        )
        .await?;
        agent.tasks.push(tokio::spawn(node::heartbeat(
            client.clone(),
            options.nodes.clone(),
            agent.bridge.gateway,
            options.capacity.clone(),
        )));
        let volumes = root.join("volumes");
        std::fs::create_dir_all(&volumes)?;
        agent
            .tasks
            .push(tokio::spawn(node::provisioner(client.clone(), volumes)));
        if options.scheduler {
            let config = root.join("kube-scheduler.yaml");
            std::fs::write(&config, node::scheduler_config(&plane.kubeconfig_path))?;
            agent.scheduler = Some(ManagedProcess::spawn(
                "kube-scheduler",
                &tools::kubernetes("kube-scheduler")?,
                &[
                    format!("--config={}", config.display()),
                    "--secure-port=0".into(),
                ],
                &[],
                &root.join("kube-scheduler.log"),
            )?);
        }
        agent.tasks.push(tokio::spawn(pod::dispatch(
            shared,
            options.nodes.clone(),
            agent.workers.clone(),
        )));
        agent.wait_nodes_ready().await?;
        Ok(agent)
    }

    async fn wait_nodes_ready(&self) -> anyhow::Result<()> {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.shared.client.clone());
        for name in &self.nodes {
            crate::wait::poll_until(
                Duration::from_secs(30),
                &format!("node {name} Ready"),
                || {
                    let nodes = nodes.clone();
                    let name = name.clone();
                    async move {
                        let node = nodes.get(&name).await?;
                        let ready = node.status.and_then(|s| s.conditions).is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                        let tainted = node
                            .spec
                            .and_then(|s| s.taints)
                            .is_some_and(|t| t.iter().any(|t| t.effect == "NoSchedule"));
                        Ok(ready && !tainted)
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Node names this agent runs.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// A reqwest resolver for cluster names (`<pod>.<svc>.<ns>.svc`,
    /// `<svc>.<ns>.svc`, optionally with `.cluster.local`); other names go to
    /// the system resolver. Use with `reqwest::ClientBuilder::dns_resolver`.
    pub fn resolver(&self) -> Arc<ClusterResolver> {
        Arc::new(self.resolver.clone())
    }

    /// The address of the bridge: node InternalIP, DNS server (port 53) and
    /// API-server proxy (port 443) for pods.
    pub fn gateway(&self) -> Ipv4Addr {
        self.bridge.gateway
    }

    /// Name of the agent's bridge interface.
    pub fn bridge_name(&self) -> &str {
        &self.bridge.name
    }

    /// Crashes a running container (SIGKILL to its process group), as an
    /// out-of-memory kill would: the pod stays, and its restart policy
    /// starts the container again.
    pub fn kill_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> anyhow::Result<()> {
        let key = (namespace.to_owned(), pod.to_owned(), container.to_owned());
        let pgid = self
            .shared
            .processes
            .lock()
            .ok()
            .and_then(|p| p.get(&key).copied())
            .filter(|pgid| self.shared.registry.pids().contains(pgid))
            .with_context(|| format!("no running container {container} in {namespace}/{pod}"))?;
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .with_context(|| format!("kill container {container} in {namespace}/{pod}"))
    }

    /// The log of the current (or last) instance of a container.
    pub fn logs(&self, namespace: &str, pod: &str, container: &str) -> anyhow::Result<String> {
        self.log_instance(namespace, pod, container, 0)
    }

    /// The log of the previous instance (before the last restart).
    pub fn previous_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> anyhow::Result<String> {
        self.log_instance(namespace, pod, container, 1)
    }

    fn log_instance(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        back: usize,
    ) -> anyhow::Result<String> {
        let path = {
            let logs = self
                .shared
                .logs
                .lock()
                .map_err(|_| anyhow::anyhow!("log index lock poisoned"))?;
            let files = logs
                .get(&(ns.to_owned(), pod.to_owned(), container.to_owned()))
                .with_context(|| {
                    format!(
                        "no logs for container {container} of pod {ns}/{pod} (never started here)"
                    )
                })?;
            files.iter().rev().nth(back).cloned().with_context(|| {
                format!("{ns}/{pod}/{container} has no instance {back} restarts back")
            })?
        };
        Ok(std::fs::read_to_string(&path)?)
    }

    /// The host folder of a pod volume (ConfigMap, Secret, projected,
    /// emptyDir) of the pod's latest incarnation, for tests that inspect or
    /// change what a container sees. Files of rendered volumes are under
    /// their key names.
    pub fn pod_volume_dir(
        &self,
        namespace: &str,
        pod: &str,
        volume: &str,
    ) -> anyhow::Result<PathBuf> {
        let dirs = self
            .shared
            .pod_dirs
            .lock()
            .map_err(|_| anyhow::anyhow!("pod folder lock poisoned"))?;
        let dir = dirs
            .get(&(namespace.to_owned(), pod.to_owned()))
            .with_context(|| format!("pod {namespace}/{pod} never ran on this agent"))?;
        let path = dir.join("volumes").join(volume);
        anyhow::ensure!(
            path.is_dir(),
            "pod {namespace}/{pod} has no volume folder {volume:?} (claims live under the agent's volumes/)"
        );
        Ok(path)
    }

    /// Pids of every process the agent runs now (containers, pause
    /// processes, scheduler), for leak checks.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = self.shared.registry.pids();
        if let Ok(sandboxes) = self.shared.sandboxes.lock() {
            pids.extend(sandboxes.values().filter_map(|s| s.pause_pid()));
        }
        pids.extend(self.scheduler.as_ref().and_then(|s| s.pid()));
        pids
    }

    /// The agent's files (pod folders with logs, volumes, scheduler log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Ok(workers) = self.workers.lock() {
            for worker in workers.values() {
                worker.abort();
            }
        }
        // Synchronously: the tasks above stop at their next await point,
        // which may be after the caller has moved on.
        self.shared.registry.stop_all(Duration::from_secs(5));
        let sandboxes: Vec<network::Sandbox> = self
            .shared
            .sandboxes
            .lock()
            .map(|mut s| s.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        drop(sandboxes);
        if let Some(mut scheduler) = self.scheduler.take() {
            scheduler.stop(Duration::from_secs(5));
        }
        // The bridge and the folder go with the remaining fields.
    }
}

/// Keeps the DNS table in step with the EndpointSlices.
async fn watch_endpoint_slices(client: kube::Client, table: dns::DnsTable, gateway: Ipv4Addr) {
    let api: Api<EndpointSlice> = Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    futures::pin_mut!(stream);
    table.replace(dns::records_from_slices(&[], gateway));
    while let Some(event) = stream.next().await {
        if event.is_ok() {
            let slices = reader.state();
            table.replace(dns::records_from_slices(
                slices.iter().map(|s| s.as_ref()),
                gateway,
            ));
        }
    }
}

/// Whether `pod` is bound to one of `nodes`.
fn on_nodes(pod: &Pod, nodes: &[String]) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| nodes.contains(n))
}
