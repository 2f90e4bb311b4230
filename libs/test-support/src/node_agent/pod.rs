//! One worker task per pod bound to the agent's nodes: the kubelet's pod
//! lifecycle.
//!
//! 1. Sandbox: an address, a network namespace (pause process + veth), and
//!    the pod's `/etc/hosts`, `/etc/resolv.conf` (cluster DNS).
//! 2. Volumes: rendered or created; a claim waits until it is bound.
//! 3. Init containers one by one, then all containers; a container that
//!    exits is restarted by the pod's restartPolicy with back-off (1 s
//!    doubling to 30 s, shorter than the kubelet's 10 s to 5 min so tests
//!    stay quick).
//! 4. Sidecars (init containers with `restartPolicy: Always`, KEP-753):
//!    the next init container starts once the sidecar has started; it is
//!    restarted whenever it exits and counts toward readiness. Once every
//!    regular container is done for good (restartPolicy Never/OnFailure),
//!    or an init container failed for good, the sidecars are stopped in
//!    reverse order and only then is the pod Succeeded or Failed.
//! 5. Probes drive `started`/`ready`; a failed liveness or startup probe
//!    kills the container (which is then restarted by policy).
//! 6. Deletion: SIGTERM, the grace period, SIGKILL (regular containers
//!    first, then the sidecars in reverse order); then the sandbox is
//!    removed and the pod object deleted for good, which is what lets a
//!    StatefulSet create the pod again.
//!
//! Status goes to the status subresource as a strategic merge patch that
//! carries the pod's uid (a precondition: a patch never lands on a newer pod
//! with the same name), only when it changed. Projected tokens are minted
//! with the TokenRequest API bound to the pod and refreshed at 80 % of their
//! lifetime; ConfigMap/Secret volumes are refreshed every 10 s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::container::{self, ContainerProcess, Launch, RootEntry};
use super::env::{EnvSources, PodFacts, container_env, expand_all, referenced_objects};
use super::network::Sandbox;
use super::probes::{ExecTarget, ProbeKind, ProbeTracker, probe_once, timings};
use super::status::{
    CtrState, CtrView, Terminated, conditions, container_status, final_exit_codes,
    init_container_done, pod_phase, restarts,
};
use super::termination;
use super::volumes::{
    FileSet, TokenSpec, VolumeKind, container_mounts, render_files, token_specs, volume_kind,
    write_atomic,
};
use super::{APISERVER_PROXY_PORT, APISERVER_SERVICE_HOST, Shared, on_nodes};

/// A pod worker as seen by the dispatcher.
#[derive(Debug)]
pub struct WorkerHandle {
    updates: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Watches all pods and feeds each one bound to `nodes` to its worker.
pub(crate) async fn dispatch(
    shared: Arc<Shared>,
    nodes: Vec<String>,
    workers: Arc<Mutex<HashMap<String, WorkerHandle>>>,
) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let stream = watcher(pods, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        let Ok(event) = event else {
            continue;
        };
        let (pod, present) = match event {
            watcher::Event::Init => {
                listed.clear();
                continue;
            }
            watcher::Event::InitApply(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    listed.insert(uid.clone());
                }
                (pod, true)
            }
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was down.
                if let Ok(workers) = workers.lock() {
                    for (uid, worker) in workers.iter() {
                        if !listed.contains(uid) {
                            let _ = worker.updates.send(None);
                        }
                    }
                }
                continue;
            }
            watcher::Event::Apply(pod) => (pod, true),
            watcher::Event::Delete(pod) => (pod, false),
        };
        if !on_nodes(&pod, &nodes) {
            continue;
        }
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let Ok(mut workers) = workers.lock() else {
            return;
        };
        workers.retain(|_, w| !w.task.is_finished());
        match workers.get(&uid) {
            Some(worker) => {
                let _ = worker.updates.send(present.then_some(pod));
            }
            None if present => {
                let (tx, rx) = watch::channel(Some(pod.clone()));
                let task = tokio::spawn(run(shared.clone(), pod, rx));
                workers.insert(uid, WorkerHandle { updates: tx, task });
            }
            None => {}
        }
    }
}

/// Messages from a pod's helper tasks to its worker.
#[derive(Debug)]
enum Event {
    Exited {
        name: String,
        instance: u32,
        code: i32,
    },
    Probe {
        name: String,
        instance: u32,
        kind: ProbeKind,
        ok: bool,
    },
    RestartDue {
        name: String,
        instance: u32,
    },
}

/// One container of the pod, init or main.
struct Ctr {
    spec: Container,
    init: bool,
    /// An init container with `restartPolicy: Always`.
    sidecar: bool,
    /// Increases with every start; events of older instances are ignored.
    instance: u32,
    restart_count: i32,
    state: CtrState,
    last: Option<Terminated>,
    ready: bool,
    started: bool,
    /// `started` was true once: a sidecar that restarts later does not hold
    /// the pod's initialization back again.
    has_started: bool,
    process: Option<Arc<ContainerProcess>>,
    probes: Option<JoinHandle<()>>,
}

impl Ctr {
    fn new(spec: Container, init: bool) -> Self {
        Self {
            sidecar: init && spec.restart_policy.as_deref() == Some("Always"),
            spec,
            init,
            instance: 0,
            restart_count: 0,
            state: CtrState::waiting(
                if init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                },
                "",
            ),
            last: None,
            ready: false,
            started: false,
            has_started: false,
            process: None,
            probes: None,
        }
    }

    fn mark_started(&mut self) {
        self.started = true;
        self.has_started = true;
    }

    fn is_ready(&self) -> bool {
        self.ready && self.started && matches!(self.state, CtrState::Running { .. })
    }

    fn view(&self, uid: &str) -> CtrView {
        CtrView {
            name: self.spec.name.clone(),
            image: self.spec.image.clone().unwrap_or_default(),
            state: self.state.clone(),
            last: self.last.clone(),
            ready: self.ready,
            started: self.started,
            restart_count: self.restart_count,
            container_id: format!("node-agent://{uid}/{}/{}", self.spec.name, self.instance),
        }
    }

    /// For an init container: whether the next one may start.
    fn init_done(&self) -> bool {
        init_container_done(self.sidecar, self.has_started, &self.state)
    }
}

/// A projected token and when to mint the next one.
struct Minted {
    token: String,
    refresh_at: Instant,
}

struct Worker {
    shared: Arc<Shared>,
    pod: Pod,
    uid: String,
    ns: String,
    name: String,
    dir: PathBuf,
    policy: String,
    facts: Option<PodFacts>,
    start_time: Value,
    ctrs: Vec<Ctr>,
    init_failed: bool,
    /// The sidecars are being (or have been) stopped for good.
    sidecars_stopping: bool,
    sandbox_released: bool,
    volume_dirs: BTreeMap<String, PathBuf>,
    written: HashMap<String, FileSet>,
    tokens: HashMap<TokenSpec, Minted>,
    sources: EnvSources,
    transitions: HashMap<&'static str, (bool, Value)>,
    last_status: Option<Value>,
    events: mpsc::UnboundedSender<Event>,
}

fn now() -> Value {
    serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null)
}

async fn run(shared: Arc<Shared>, pod: Pod, mut updates: watch::Receiver<Option<Pod>>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let Some(mut worker) = Worker::new(shared, pod, tx) else {
        return;
    };
    // Setup, retried until it works or the pod goes away.
    loop {
        if worker.pod.metadata.deletion_timestamp.is_some() {
            worker.terminate(Some(0)).await;
            return;
        }
        match worker.setup().await {
            Ok(()) => break,
            Err(e) => {
                let message = format!("{e:#}");
                tracing::warn!("node agent: pod {}/{}: {message}", worker.ns, worker.name);
                for ctr in &mut worker.ctrs {
                    ctr.state = CtrState::waiting("ContainerCreating", &message);
                }
                worker.publish().await;
            }
        }
        tokio::select! {
            changed = updates.changed() => {
                let pod = updates.borrow_and_update().clone();
                match (changed, pod) {
                    (Ok(()), Some(pod)) => worker.pod = pod,
                    _ => { worker.terminate(None).await; return; }
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let mut refresh = tokio::time::interval(Duration::from_secs(10));
    loop {
        worker.step().await;
        worker.publish().await;
        tokio::select! {
            changed = updates.changed() => {
                let pod = updates.borrow_and_update().clone();
                match (changed, pod) {
                    (Ok(()), Some(pod)) => {
                        let deleting = pod.metadata.deletion_timestamp.is_some();
                        let grace = pod.metadata.deletion_grace_period_seconds;
                        worker.pod = pod;
                        if deleting {
                            worker.terminate(grace).await;
                            return;
                        }
                    }
                    _ => { worker.terminate(Some(0)).await; return; }
                }
            }
            Some(event) = rx.recv() => worker.handle(event).await,
            _ = refresh.tick() => {
                if let Err(e) = worker.refresh_volumes().await {
                    tracing::warn!("node agent: refreshing volumes of {}/{}: {e:#}", worker.ns, worker.name);
                }
            }
        }
    }
}

impl Worker {
    fn new(shared: Arc<Shared>, pod: Pod, events: mpsc::UnboundedSender<Event>) -> Option<Self> {
        let uid = pod.metadata.uid.clone()?;
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone()?;
        let spec = pod.spec.clone()?;
        let dir = shared.dir.join("pods").join(format!("{ns}_{name}_{uid}"));
        let mut ctrs: Vec<Ctr> = spec
            .init_containers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| Ctr::new(c, true))
            .collect();
        ctrs.extend(spec.containers.iter().cloned().map(|c| Ctr::new(c, false)));
        if let Ok(mut dirs) = shared.pod_dirs.lock() {
            dirs.insert((ns.clone(), name.clone()), dir.clone());
        }
        Some(Self {
            shared,
            policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            pod,
            uid,
            ns,
            name,
            dir,
            facts: None,
            start_time: now(),
            ctrs,
            init_failed: false,
            sidecars_stopping: false,
            sandbox_released: false,
            volume_dirs: BTreeMap::new(),
            written: HashMap::new(),
            tokens: HashMap::new(),
            sources: EnvSources::default(),
            transitions: HashMap::new(),
            last_status: None,
            events,
        })
    }

    fn hostname(&self) -> String {
        let spec = self.pod.spec.as_ref();
        let name = spec
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.name.clone());
        name.chars().take(63).collect()
    }

    /// Sandbox, /etc files and volumes.
    async fn setup(&mut self) -> anyhow::Result<()> {
        if self.facts.is_none() {
            let host = self
                .shared
                .pool
                .lock()
                .map_err(|_| anyhow::anyhow!("address pool lock poisoned"))?
                .allocate()
                .ok_or_else(|| anyhow::anyhow!("the node agent's /24 has no free address"))?;
            let sandbox = Sandbox::create(
                &self.shared.bridge_name,
                self.shared.bridge_index,
                host,
                &self.hostname(),
                &self.dir,
            );
            let sandbox = match sandbox {
                Ok(s) => s,
                Err(e) => {
                    if let Ok(mut pool) = self.shared.pool.lock() {
                        pool.release(host);
                    }
                    return Err(e.context("create the pod's network namespace"));
                }
            };
            let ip = sandbox.ip;
            if let Ok(mut sandboxes) = self.shared.sandboxes.lock() {
                sandboxes.insert(self.uid.clone(), sandbox);
            }
            self.facts = Some(PodFacts {
                pod_ip: ip.to_string(),
                host_ip: self.shared.gateway.to_string(),
                hostname: self.hostname(),
                apiserver_host: APISERVER_SERVICE_HOST.into(),
                apiserver_port: APISERVER_PROXY_PORT,
            });
            self.write_etc(ip)?;
            self.publish().await;
        }
        self.fetch_sources().await?;
        self.mint_tokens().await?;
        let volumes: Vec<Volume> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for volume in &volumes {
            let dir = match volume_kind(volume)? {
                VolumeKind::Files => {
                    let dir = self.dir.join("volumes").join(&volume.name);
                    self.write_volume(volume, &dir)?;
                    dir
                }
                VolumeKind::EmptyDir => {
                    let dir = self.dir.join("volumes").join(&volume.name);
                    std::fs::create_dir_all(&dir)?;
                    // As the kubelet makes it: any container user may write.
                    std::fs::set_permissions(
                        &dir,
                        std::os::unix::fs::PermissionsExt::from_mode(0o777),
                    )?;
                    dir
                }
                VolumeKind::Claim(claim) => self.claim_dir(&claim).await?,
                VolumeKind::HostPath(path) => path,
            };
            self.volume_dirs.insert(volume.name.clone(), dir);
        }
        Ok(())
    }

    fn write_etc(&self, ip: Ipv4Addr) -> anyhow::Result<()> {
        let etc = self.dir.join("etc");
        std::fs::create_dir_all(&etc)?;
        let spec = self.pod.spec.as_ref();
        let hostname = self.hostname();
        let fqdn = spec
            .and_then(|s| s.subdomain.clone())
            .map(|sub| {
                format!(
                    "{hostname}.{sub}.{}.svc.{}\t",
                    self.ns,
                    super::dns::CLUSTER_DOMAIN
                )
            })
            .unwrap_or_default();
        let mut hosts = format!(
            "# Kubernetes-managed hosts file (node agent).\n127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{fqdn}{hostname}\n"
        );
        for alias in spec
            .and_then(|s| s.host_aliases.clone())
            .unwrap_or_default()
        {
            hosts.push_str(&format!(
                "{}\t{}\n",
                alias.ip,
                alias.hostnames.unwrap_or_default().join("\t")
            ));
        }
        std::fs::write(etc.join("hosts"), hosts)?;
        std::fs::write(
            etc.join("resolv.conf"),
            format!(
                "search {ns}.svc.{d} svc.{d} {d}\nnameserver {gw}\noptions ndots:5\n",
                ns = self.ns,
                d = super::dns::CLUSTER_DOMAIN,
                gw = self.shared.gateway
            ),
        )?;
        std::fs::write(etc.join("hostname"), format!("{hostname}\n"))?;
        std::fs::write(etc.join("nsswitch.conf"), "hosts: files dns\n")?;
        Ok(())
    }

    /// Fetches the ConfigMaps and Secrets the pod refers to.
    async fn fetch_sources(&mut self) -> anyhow::Result<()> {
        let (config_maps, secrets) = referenced_objects(&self.pod);
        let cms: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.ns);
        let ss: Api<Secret> = Api::namespaced(self.shared.client.clone(), &self.ns);
        let mut sources = EnvSources::default();
        for name in config_maps {
            if let Some(cm) = cms.get_opt(&name).await? {
                sources
                    .config_maps
                    .insert(name, cm.data.unwrap_or_default());
            }
        }
        for name in secrets {
            if let Some(secret) = ss.get_opt(&name).await? {
                let mut data: BTreeMap<String, Vec<u8>> = secret
                    .string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                data.extend(
                    secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                );
                sources.secrets.insert(name, data);
            }
        }
        self.sources = sources;
        Ok(())
    }

    /// Mints the projected tokens that are missing or due for refresh.
    async fn mint_tokens(&mut self) -> anyhow::Result<()> {
        let service_account = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let accounts: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &self.ns);
        for spec in token_specs(&self.pod) {
            if self
                .tokens
                .get(&spec)
                .is_some_and(|m| Instant::now() < m.refresh_at)
            {
                continue;
            }
            let request: TokenRequest = serde_json::from_value(json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": spec.audience.iter().collect::<Vec<_>>(),
                    "expirationSeconds": spec.expiration_seconds,
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
                },
            }))?;
            let response = accounts
                .create_token_request(&service_account, &PostParams::default(), &request)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "TokenRequest for service account {}/{service_account}: {e}",
                        self.ns
                    )
                })?;
            let status = response
                .status
                .ok_or_else(|| anyhow::anyhow!("TokenRequest returned no token"))?;
            let token = status
                .token
                .ok_or_else(|| anyhow::anyhow!("TokenRequest returned no token"))?;
            let lifetime = status
                .expiration_timestamp
                .map(|t| t.0.duration_since(Timestamp::now()).unsigned_abs())
                .unwrap_or(Duration::from_secs(spec.expiration_seconds.max(0) as u64));
            // The kubelet refreshes at 80 % of the lifetime.
            let refresh_at = Instant::now() + lifetime.mul_f64(0.8);
            self.tokens.insert(spec, Minted { token, refresh_at });
        }
        Ok(())
    }

    fn write_volume(&mut self, volume: &Volume, dir: &std::path::Path) -> anyhow::Result<()> {
        let facts = self
            .facts
            .clone()
            .ok_or_else(|| anyhow::anyhow!("volumes are written after the sandbox"))?;
        let tokens: HashMap<TokenSpec, String> = self
            .tokens
            .iter()
            .map(|(k, v)| (k.clone(), v.token.clone()))
            .collect();
        if let Some(files) = render_files(volume, &self.pod, &facts, &self.sources, &tokens)?
            && self.written.get(&volume.name) != Some(&files)
        {
            let fs_group = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|c| c.fs_group)
                .and_then(|g| u32::try_from(g).ok());
            write_atomic(dir, &files, fs_group)?;
            self.written.insert(volume.name.clone(), files);
        }
        Ok(())
    }

    async fn refresh_volumes(&mut self) -> anyhow::Result<()> {
        if self.sandbox_released || self.facts.is_none() {
            return Ok(());
        }
        self.fetch_sources().await?;
        self.mint_tokens().await?;
        let volumes: Vec<Volume> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for volume in &volumes {
            if volume_kind(volume)? == VolumeKind::Files {
                let dir = self.dir.join("volumes").join(&volume.name);
                self.write_volume(volume, &dir)?;
            }
        }
        Ok(())
    }

    /// The folder of the PersistentVolume bound to `claim`.
    async fn claim_dir(&self, claim: &str) -> anyhow::Result<PathBuf> {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.shared.client.clone(), &self.ns);
        let pvc = claims
            .get_opt(claim)
            .await?
            .ok_or_else(|| anyhow::anyhow!("persistentvolumeclaim {claim:?} not found"))?;
        let volume = pvc
            .spec
            .and_then(|s| s.volume_name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| anyhow::anyhow!("persistentvolumeclaim {claim:?} is not bound yet"))?;
        let pvs: Api<PersistentVolume> = Api::all(self.shared.client.clone());
        let pv = pvs.get(&volume).await?;
        let path = pv
            .spec
            .and_then(|s| s.host_path)
            .map(|h| PathBuf::from(h.path))
            .ok_or_else(|| {
                anyhow::anyhow!("persistentvolume {volume} is not a hostPath volume; the node agent cannot mount it")
            })?;
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }

    /// Starts whatever should run now: the next init container, or every
    /// main container that never started; stops the sidecars once nothing
    /// else will run.
    async fn step(&mut self) {
        if self.sandbox_released {
            return;
        }
        if !self.init_failed {
            match self.ctrs.iter().position(|c| c.init && !c.init_done()) {
                Some(i) => {
                    if self.ctrs[i].instance == 0 && self.ctrs[i].process.is_none() {
                        self.start(i);
                    }
                }
                None => {
                    for i in 0..self.ctrs.len() {
                        if !self.ctrs[i].init
                            && self.ctrs[i].instance == 0
                            && self.ctrs[i].process.is_none()
                        {
                            self.start(i);
                        }
                    }
                }
            }
        }
        if !self.sidecars_stopping
            && (self.init_failed
                || final_exit_codes(&self.policy, &self.states(|c| !c.init)).is_some())
        {
            self.stop_sidecars();
        }
        // The kubelet tears the sandbox down once a pod is finished and its
        // last process is gone.
        if matches!(self.phase(), "Succeeded" | "Failed")
            && self.ctrs.iter().all(|c| c.process.is_none())
        {
            self.release_sandbox();
        }
    }

    /// Stops the sidecars for good (see [`stop_in_reverse`]); the exits
    /// arrive as events. A sidecar waiting to restart reports its last
    /// termination, as it will not run again.
    fn stop_sidecars(&mut self) {
        self.sidecars_stopping = true;
        let deadline = Instant::now() + self.grace(None);
        let mut running = Vec::new();
        for ctr in self.ctrs.iter_mut().filter(|c| c.sidecar) {
            match (&ctr.process, &ctr.last) {
                (Some(process), _) => running.push(process.clone()),
                (None, Some(last)) if matches!(ctr.state, CtrState::Waiting { .. }) => {
                    ctr.state = CtrState::Terminated(last.clone());
                }
                (None, _) => {}
            }
        }
        if !running.is_empty() {
            tokio::spawn(stop_in_reverse(running, deadline));
        }
    }

    fn start(&mut self, i: usize) {
        self.ctrs[i].instance += 1;
        let instance = self.ctrs[i].instance;
        let name = self.ctrs[i].spec.name.clone();
        match self.launch(i) {
            Ok((process, env)) => {
                let process = Arc::new(process);
                let ctr = &mut self.ctrs[i];
                ctr.state = CtrState::Running { started_at: now() };
                ctr.ready = false;
                ctr.started = false;
                if ctr.spec.startup_probe.is_none() {
                    ctr.mark_started();
                }
                ctr.process = Some(process.clone());
                let mut exit = process.exit_watch();
                let events = self.events.clone();
                let exit_name = name.clone();
                tokio::spawn(async move {
                    let code = exit
                        .wait_for(Option::is_some)
                        .await
                        .ok()
                        .and_then(|c| *c)
                        .unwrap_or(137);
                    let _ = events.send(Event::Exited {
                        name: exit_name,
                        instance,
                        code,
                    });
                });
                if !ctr.init || ctr.sidecar {
                    let probes = self.spawn_probes(i, instance, process.pid(), env);
                    self.ctrs[i].probes = probes;
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::warn!(
                    "node agent: {}/{} container {name}: {message}",
                    self.ns,
                    self.name
                );
                let reason = if message.contains("ImageMap") {
                    "ErrImagePull"
                } else {
                    "CreateContainerConfigError"
                };
                self.ctrs[i].state = CtrState::waiting(reason, &message);
                self.restart_later(&name, instance, Duration::from_secs(2));
            }
        }
    }

    fn launch(&mut self, i: usize) -> anyhow::Result<(ContainerProcess, Vec<(String, String)>)> {
        let facts = self
            .facts
            .clone()
            .ok_or_else(|| anyhow::anyhow!("containers start after the sandbox"))?;
        let spec = self.ctrs[i].spec.clone();
        let env = container_env(&self.pod, &spec, &facts, &self.sources)?;
        let command = spec.command.as_ref().map(|c| expand_all(c, &env));
        let args = spec.args.as_ref().map(|a| expand_all(a, &env));
        let image = spec.image.clone().unwrap_or_default();
        let resolved = self
            .shared
            .images
            .resolve(&image, command.as_deref(), args.as_deref())?;
        let (mut entries, env, run_as) = match &resolved.image {
            // A real image: its own files, the kernel's folders, its user.
            Some(image) => (
                image_root(image)?,
                with_image_env(env, &image.env, &spec),
                Some(super::users::run_as(
                    &self.pod,
                    &spec,
                    image.user.as_deref(),
                )?),
            ),
            None => (self.shared.host_entries.clone(), env, None),
        };
        let etc = self.dir.join("etc");
        for file in ["hosts", "resolv.conf", "hostname", "nsswitch.conf"] {
            entries.push(RootEntry::File {
                source: etc.join(file),
                target: format!("/etc/{file}"),
                read_only: false,
            });
        }
        if let Some((executable, name)) = &resolved.image_executable {
            entries.push(RootEntry::File {
                source: executable.clone(),
                target: format!("{}/{name}", super::images::IMAGE_BIN_DIR),
                read_only: true,
            });
        }
        for mount in container_mounts(&spec, &self.volume_dirs, &env)? {
            if !mount.source.exists() {
                std::fs::create_dir_all(&mount.source)?;
            }
            entries.push(if mount.source.is_dir() {
                RootEntry::Dir {
                    source: mount.source,
                    target: mount.target,
                    read_only: mount.read_only,
                }
            } else {
                RootEntry::File {
                    source: mount.source,
                    target: mount.target,
                    read_only: mount.read_only,
                }
            });
        }
        let pause_pid = self
            .shared
            .sandboxes
            .lock()
            .ok()
            .and_then(|s| s.get(&self.uid).and_then(|s| s.pause_pid()))
            .ok_or_else(|| anyhow::anyhow!("the pod's sandbox is gone"))?;
        let instance = self.ctrs[i].instance;
        let instance_dir = self.instance_dir(&spec.name, instance);
        let log_path = self.log_path(&spec.name, instance);
        // The termination-message file: fresh, empty and writable by any
        // user for each instance, mounted after the volumes so that a path
        // inside a volume mount gets it too (see `termination.rs`).
        let message_target = termination::message_path(&spec)?;
        std::fs::create_dir_all(&instance_dir)?;
        let message_file = instance_dir.join(termination::HOST_FILE_NAME);
        std::fs::File::create(&message_file)
            .with_context(|| format!("create {}", message_file.display()))?;
        std::fs::set_permissions(
            &message_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )?;
        entries.push(RootEntry::File {
            source: message_file,
            target: message_target,
            read_only: false,
        });
        let launch = Launch {
            pause_pid,
            root_mount_point: instance_dir.join("root"),
            working_dir: spec
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            entries,
            argv: resolved.argv,
            env: env.clone(),
            log_path: log_path.clone(),
            run_as,
        };
        let process = ContainerProcess::start(&launch, &self.shared.registry)?;
        if let Ok(mut processes) = self.shared.processes.lock() {
            processes.insert(
                (self.ns.clone(), self.name.clone(), spec.name.clone()),
                process.pid(),
            );
        }
        if let Ok(mut logs) = self.shared.logs.lock() {
            logs.entry((self.ns.clone(), self.name.clone(), spec.name.clone()))
                .or_default()
                .push(log_path);
        }
        Ok((process, env))
    }

    /// Host folder of one container instance (root mount point and
    /// termination-message file).
    fn instance_dir(&self, name: &str, instance: u32) -> PathBuf {
        self.dir
            .join("containers")
            .join(format!("{name}-{instance}"))
    }

    fn log_path(&self, name: &str, instance: u32) -> PathBuf {
        self.dir
            .join("logs")
            .join(name)
            .join(format!("{instance}.log"))
    }

    fn spawn_probes(
        &self,
        i: usize,
        instance: u32,
        pid: u32,
        env: Vec<(String, String)>,
    ) -> Option<JoinHandle<()>> {
        let spec = &self.ctrs[i].spec;
        let probes: Vec<(ProbeKind, k8s_openapi::api::core::v1::Probe)> = [
            (ProbeKind::Startup, spec.startup_probe.clone()),
            (ProbeKind::Readiness, spec.readiness_probe.clone()),
            (ProbeKind::Liveness, spec.liveness_probe.clone()),
        ]
        .into_iter()
        .filter_map(|(k, p)| Some((k, p?)))
        .collect();
        let pod_ip: Ipv4Addr = self.facts.as_ref()?.pod_ip.parse().ok()?;
        let name = spec.name.clone();
        let ports = spec.ports.clone().unwrap_or_default();
        let http = self.shared.probe_http.clone();
        let events = self.events.clone();
        let has_readiness = spec.readiness_probe.is_some();
        let exec = ExecTarget { pid, env };
        Some(tokio::spawn(async move {
            let send = |kind, ok| {
                let _ = events.send(Event::Probe {
                    name: name.clone(),
                    instance,
                    kind,
                    ok,
                });
            };
            let startup = probes.iter().find(|(k, _)| *k == ProbeKind::Startup);
            if let Some((_, probe)) = startup {
                let ok = probe_until_result(probe, pod_ip, &ports, &exec, &http).await;
                send(ProbeKind::Startup, ok);
                if !ok {
                    return;
                }
            }
            if !has_readiness {
                // Without a readiness probe a started container is ready.
                send(ProbeKind::Readiness, true);
            }
            let loops =
                probes
                    .iter()
                    .filter(|(k, _)| *k != ProbeKind::Startup)
                    .map(|(kind, probe)| {
                        let (kind, probe) = (*kind, probe.clone());
                        let (ports, exec, http, send) =
                            (ports.clone(), exec.clone(), http.clone(), &send);
                        async move {
                            let (period, _, delay) = timings(&probe);
                            tokio::time::sleep(delay).await;
                            let mut tracker = ProbeTracker::new(&probe);
                            loop {
                                let ok = probe_once(&probe, pod_ip, &ports, &exec, &http)
                                    .await
                                    .is_ok();
                                if let Some(result) = tracker.record(ok) {
                                    send(kind, result);
                                }
                                tokio::time::sleep(period).await;
                            }
                        }
                    });
            futures::future::join_all(loops).await;
        }))
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Exited {
                name,
                instance,
                code,
            } => {
                let policy = self.policy.clone();
                let stopping = self.sidecars_stopping;
                let Some(i) = self.index(&name, instance) else {
                    return;
                };
                let message = termination::read_message(
                    &self
                        .instance_dir(&name, instance)
                        .join(termination::HOST_FILE_NAME),
                    &self.log_path(&name, instance),
                    termination::falls_back_to_logs(&self.ctrs[i].spec),
                    code,
                );
                let ctr = &mut self.ctrs[i];
                if let Some(task) = ctr.probes.take() {
                    task.abort();
                }
                ctr.process = None;
                ctr.ready = false;
                let started_at = match &ctr.state {
                    CtrState::Running { started_at } => started_at.clone(),
                    _ => now(),
                };
                let terminated = Terminated {
                    exit_code: code,
                    reason: termination::reason(code).into(),
                    message,
                    started_at,
                    finished_at: now(),
                };
                ctr.state = CtrState::Terminated(terminated.clone());
                let again = if ctr.sidecar {
                    !stopping
                } else if ctr.init {
                    if code == 0 {
                        false
                    } else if policy == "Never" {
                        self.init_failed = true;
                        false
                    } else {
                        true
                    }
                } else {
                    restarts(&policy, code)
                };
                if again {
                    let ctr = &mut self.ctrs[i];
                    ctr.last = Some(terminated);
                    ctr.restart_count += 1;
                    let delay =
                        Duration::from_secs(1 << (ctr.restart_count - 1).clamp(0, 5) as u32)
                            .min(Duration::from_secs(30));
                    ctr.state = CtrState::waiting(
                        "CrashLoopBackOff",
                        &format!(
                            "back-off {}s restarting failed container {name}",
                            delay.as_secs()
                        ),
                    );
                    self.restart_later(&name, instance, delay);
                }
            }
            Event::RestartDue { name, instance } => {
                if let Some(i) = self.index(&name, instance)
                    && self.ctrs[i].process.is_none()
                    && !self.sandbox_released
                    && !(self.ctrs[i].sidecar && self.sidecars_stopping)
                {
                    self.start(i);
                }
            }
            Event::Probe {
                name,
                instance,
                kind,
                ok,
            } => {
                let Some(i) = self.index(&name, instance) else {
                    return;
                };
                match (kind, ok) {
                    (ProbeKind::Readiness, ok) => self.ctrs[i].ready = ok,
                    (ProbeKind::Startup, true) => self.ctrs[i].mark_started(),
                    (ProbeKind::Startup | ProbeKind::Liveness, false) => {
                        tracing::info!(
                            "node agent: {}/{} container {name} failed its {kind:?} probe; killing it",
                            self.ns,
                            self.name
                        );
                        self.ctrs[i].ready = false;
                        if let Some(process) = self.ctrs[i].process.clone() {
                            let grace = self.grace(None);
                            tokio::spawn(async move {
                                process.stop(grace).await;
                            });
                        }
                    }
                    (ProbeKind::Liveness, true) => {}
                }
            }
        }
    }

    fn index(&self, name: &str, instance: u32) -> Option<usize> {
        self.ctrs
            .iter()
            .position(|c| c.spec.name == name && c.instance == instance)
    }

    fn restart_later(&self, name: &str, instance: u32, delay: Duration) {
        let events = self.events.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::RestartDue { name, instance });
        });
    }

    fn grace(&self, requested: Option<i64>) -> Duration {
        let seconds = requested
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(seconds.max(0) as u64)
    }

    fn states(&self, pick: impl Fn(&Ctr) -> bool) -> Vec<CtrState> {
        self.ctrs
            .iter()
            .filter(|c| pick(c))
            .map(|c| c.state.clone())
            .collect()
    }

    fn initialized(&self) -> bool {
        self.ctrs.iter().filter(|c| c.init).all(Ctr::init_done)
    }

    fn phase(&self) -> &'static str {
        pod_phase(
            &self.policy,
            self.facts.is_some(),
            self.init_failed,
            self.initialized(),
            &self.states(|c| !c.init),
            &self.states(|c| c.sidecar),
        )
    }

    fn render_status(&mut self) -> Value {
        let phase = self.phase();
        let init_done = self.initialized();
        // Sidecars count toward readiness like regular containers.
        let ready: Vec<bool> = self
            .ctrs
            .iter()
            .filter(|c| !c.init || c.sidecar)
            .map(Ctr::is_ready)
            .collect();
        let mut conds = Vec::new();
        for (type_, status, reason) in conditions(phase, self.facts.is_some(), init_done, &ready) {
            let since = match self.transitions.get(type_) {
                Some((old, since)) if *old == status => since.clone(),
                _ => {
                    let t = now();
                    self.transitions.insert(type_, (status, t.clone()));
                    t
                }
            };
            let mut c = json!({
                "type": type_,
                "status": if status { "True" } else { "False" },
                "lastProbeTime": null,
                "lastTransitionTime": since,
            });
            if !reason.is_empty() {
                c["reason"] = json!(reason);
            }
            conds.push(c);
        }
        let budget = termination::per_container_budget(self.ctrs.len());
        let statuses = |init: bool| -> Vec<Value> {
            self.ctrs
                .iter()
                .filter(|c| c.init == init)
                .map(|c| {
                    let mut view = c.view(&self.uid);
                    view.limit_messages(budget);
                    view.ready = c.is_ready();
                    container_status(&view)
                })
                .collect()
        };
        let mut status = json!({
            "phase": phase,
            "hostIP": self.shared.gateway.to_string(),
            "hostIPs": [{"ip": self.shared.gateway.to_string()}],
            "startTime": self.start_time,
            "conditions": conds,
            "containerStatuses": statuses(false),
        });
        let init = statuses(true);
        if !init.is_empty() {
            status["initContainerStatuses"] = json!(init);
        }
        if let Some(facts) = &self.facts {
            status["podIP"] = json!(facts.pod_ip);
            status["podIPs"] = json!([{"ip": facts.pod_ip}]);
        }
        status
    }

    /// Sends the status if it changed since the last successful send.
    async fn publish(&mut self) {
        let status = self.render_status();
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.ns);
        let patch = json!({"metadata": {"uid": self.uid}, "status": status});
        match pods
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(e) => tracing::debug!("node agent: status of {}/{}: {e}", self.ns, self.name),
        }
    }

    /// Stops every container (SIGTERM, grace, SIGKILL; the sidecars after
    /// the others, in reverse order, within the same grace period), removes
    /// the sandbox and deletes the pod object for good.
    async fn terminate(&mut self, requested_grace: Option<i64>) {
        let grace = self.grace(requested_grace);
        let deadline = Instant::now() + grace;
        let (mut regular, mut sidecars) = (Vec::new(), Vec::new());
        for ctr in &mut self.ctrs {
            if let Some(task) = ctr.probes.take() {
                task.abort();
            }
            if let Some(process) = ctr.process.take() {
                if ctr.sidecar {
                    sidecars.push(process);
                } else {
                    regular.push(process);
                }
            }
        }
        futures::future::join_all(regular.iter().map(|p| p.stop(grace))).await;
        stop_in_reverse(sidecars, deadline).await;
        self.release_sandbox();
        let pods: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(&self.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!("node agent: deleting pod {}/{}: {e}", self.ns, self.name),
        }
    }

    fn release_sandbox(&mut self) {
        if self.sandbox_released {
            return;
        }
        self.sandbox_released = true;
        let sandbox = self
            .shared
            .sandboxes
            .lock()
            .ok()
            .and_then(|mut s| s.remove(&self.uid));
        if let Some(sandbox) = sandbox {
            let host = sandbox.host;
            drop(sandbox);
            if let Ok(mut pool) = self.shared.pool.lock() {
                pool.release(host);
            }
        }
    }
}

/// Stops `processes` one after the other, last first, each with what is
/// left of the grace period until `deadline` (then SIGKILL), as the kubelet
/// stops sidecars: a sidecar may serve the ones started after it until they
/// are gone.
async fn stop_in_reverse(processes: Vec<Arc<ContainerProcess>>, deadline: Instant) {
    for process in processes.iter().rev() {
        process
            .stop(deadline.saturating_duration_since(Instant::now()))
            .await;
    }
}

/// Runs a probe until its result is known (used for the startup probe,
/// which gates the others).
async fn probe_until_result(
    probe: &k8s_openapi::api::core::v1::Probe,
    pod_ip: Ipv4Addr,
    ports: &[k8s_openapi::api::core::v1::ContainerPort],
    exec: &ExecTarget,
    http: &reqwest::Client,
) -> bool {
    let (period, _, delay) = timings(probe);
    tokio::time::sleep(delay).await;
    let mut tracker = ProbeTracker::new(probe);
    loop {
        let ok = probe_once(probe, pod_ip, ports, exec, http).await.is_ok();
        if let Some(result) = tracker.record(ok) {
            return result;
        }
        tokio::time::sleep(period).await;
    }
}

/// The root of a container running a real image: `/proc`, `/sys` and a
/// private `/dev` as for every container, then each of the image's files
/// bind-mounted read-only (folders are made in the root's tmpfs, so volume
/// mounts can go anywhere).
fn image_root(image: &super::oci::UnpackedImage) -> anyhow::Result<Vec<RootEntry>> {
    let mut entries: Vec<RootEntry> = container::host_root_entries()
        .into_iter()
        .filter(|e| matches!(e, RootEntry::RecursiveDir { .. } | RootEntry::Dev { .. }))
        .collect();
    for (source, target, symlink) in super::oci::image_files(&image.root)? {
        entries.push(if symlink {
            RootEntry::Link {
                points_to: std::fs::read_link(&source)?.display().to_string(),
                target,
            }
        } else {
            RootEntry::File {
                source,
                target,
                read_only: true,
            }
        });
    }
    Ok(entries)
}

/// The image's environment under the container's: the image's `PATH` and
/// `HOME` replace the agent's defaults unless the container sets them.
fn with_image_env(
    mut env: Vec<(String, String)>,
    image_env: &[(String, String)],
    spec: &Container,
) -> Vec<(String, String)> {
    let set_by_container = |name: &str| spec.env.iter().flatten().any(|v| v.name == name);
    for (name, value) in image_env {
        match env.iter_mut().find(|(k, _)| k == name) {
            Some(pair) if !set_by_container(name) && (name == "PATH" || name == "HOME") => {
                pair.1 = value.clone();
            }
            Some(_) => {}
            None => env.insert(0, (name.clone(), value.clone())),
        }
    }
    env
}
