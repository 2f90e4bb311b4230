//! OpenBao as pods: the objects an operator creates for a Raft cluster on
//! Kubernetes (static-seal Secret, TLS Secret, config ConfigMap, headless
//! Service, ServiceAccount with the Role OpenBao's Kubernetes service
//! registration and auto-join need, and a StatefulSet), and a handle that
//! initialises the cluster and talks to its pods through a [`NodeAgent`].
//!
//! The builders are pure (options in, typed objects out) so they are unit
//! tested here; [`deploy_openbao`] only applies them. The names follow the
//! reference operator's layout (`<c>`, `<c>-config`, `<c>-unseal-key`, ...)
//! so the controller, when it reconciles an `OpenBaoCluster`, can take over
//! from this hand-made StatefulSet piece by piece.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use test_support::openbao_pods::{OpenBaoPodsOptions, deploy_openbao};
//! use test_support::{ControlPlane, NodeAgent, NodeAgentOptions};
//! let plane = ControlPlane::start().await?;
//! let agent = NodeAgent::start(&plane, NodeAgentOptions::default()).await?;
//! let mut bao = deploy_openbao(&plane.client().await?, &agent, OpenBaoPodsOptions::default()).await?;
//! bao.initialize().await?;
//! let voters = bao.wait_voters(3).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;
use hcl::{Block, Body};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::pki::{CertAndKey, TestCa};
use crate::wait::{poll_until, poll_until_ok};
use crate::{NodeAgent, tools};

/// OpenBao's API port (container port `api`).
pub const API_PORT: u16 = 8200;
/// OpenBao's cluster (Raft and forwarding) port (container port `cluster`).
pub const CLUSTER_PORT: u16 = 8201;

const CONFIG_DIR: &str = "/openbao/config";
const TLS_DIR: &str = "/openbao/tls";
const SEAL_DIR: &str = "/openbao/seal";
const DATA_DIR: &str = "/openbao/data";
/// Static seal key id; the key itself lives only in the unseal Secret.
const SEAL_KEY_ID: &str = "openbao-static-1";
/// Field manager for server-side apply.
const FIELD_MANAGER: &str = "test-support-openbao-pods";

/// What to deploy.
#[derive(Debug, Clone)]
pub struct OpenBaoPodsOptions {
    /// Cluster name: the StatefulSet and headless Service, and the prefix of
    /// every other object.
    pub name: String,
    pub namespace: String,
    /// OpenBao version: the image tag (the node agent runs the cached `bao`
    /// of that version).
    pub version: String,
    pub replicas: i32,
    /// Serve the API with TLS from a throwaway CA. Without it the API is
    /// plain HTTP (the cluster port always uses OpenBao's own TLS).
    pub tls: bool,
    /// Size requested by each pod's data claim.
    pub storage: String,
}

impl Default for OpenBaoPodsOptions {
    fn default() -> Self {
        Self {
            name: "openbao".into(),
            namespace: "default".into(),
            version: tools::latest_openbao().to_owned(),
            replicas: 3,
            tls: true,
            storage: "1Gi".into(),
        }
    }
}

impl OpenBaoPodsOptions {
    pub fn image(&self) -> String {
        format!("openbao/openbao:{}", self.version)
    }

    /// The governing headless Service (`<c>`).
    pub fn service_name(&self) -> &str {
        &self.name
    }

    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }

    pub fn unseal_secret_name(&self) -> String {
        format!("{}-unseal-key", self.name)
    }

    pub fn tls_secret_name(&self) -> String {
        format!("{}-tls-server", self.name)
    }

    pub fn service_account_name(&self) -> String {
        format!("{}-serviceaccount", self.name)
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Pod names, `<c>-0` to `<c>-<replicas-1>`.
    pub fn pod_names(&self) -> Vec<String> {
        (0..self.replicas.max(0))
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }

    /// A pod's cluster DNS name (`<pod>.<c>.<ns>.svc`).
    pub fn pod_host(&self, pod: &str) -> String {
        format!("{pod}.{}.{}.svc", self.service_name(), self.namespace)
    }

    /// The name joining nodes verify the leader's certificate against (the
    /// leader is found by pod IP, which no certificate names).
    pub fn tls_server_name(&self) -> String {
        format!("openbao-cluster-{}.local", self.name)
    }

    /// Labels of every object; the pods carry them too.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "openbao".into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
            ("openbao.org/cluster".into(), self.name.clone()),
        ])
    }

    /// The label selector of this cluster's pods (auto-join, kubectl).
    pub fn pod_selector(&self) -> String {
        format!("openbao.org/cluster={}", self.name)
    }

    /// Subject alternative names of the server certificate: the pods' DNS
    /// names, the join name, and loopback for a CLI inside a pod.
    pub fn tls_sans(&self) -> Vec<String> {
        let (svc, ns) = (self.service_name(), &self.namespace);
        vec![
            self.tls_server_name(),
            format!("{svc}.{ns}.svc"),
            format!("*.{svc}"),
            format!("*.{svc}.{ns}.svc"),
            format!(
                "*.{svc}.{ns}.svc.{}",
                crate::node_agent::dns::CLUSTER_DOMAIN
            ),
            "localhost".into(),
            "127.0.0.1".into(),
        ]
    }
}

/// The server configuration every pod shares, rendered with the HCL
/// library. Node id, API and cluster addresses come from the environment
/// (`BAO_RAFT_NODE_ID`, `BAO_API_ADDR`, `BAO_CLUSTER_ADDR`) so that one
/// ConfigMap serves every pod. There is no `initialize` block: the cluster
/// is initialised through `sys/init` on pod 0 only.
pub fn openbao_config(options: &OpenBaoPodsOptions) -> anyhow::Result<String> {
    let mut listener = Block::builder("listener")
        .add_label("tcp")
        .add_attribute(("address", format!("0.0.0.0:{API_PORT}")))
        .add_attribute(("cluster_address", format!("0.0.0.0:{CLUSTER_PORT}")));
    listener = if options.tls {
        listener
            .add_attribute(("tls_cert_file", format!("{TLS_DIR}/tls.crt")))
            .add_attribute(("tls_key_file", format!("{TLS_DIR}/tls.key")))
    } else {
        listener.add_attribute(("tls_disable", true))
    };

    // go-discover's k8s provider lists this cluster's running, Ready pods
    // and joins one by pod IP.
    let auto_join = format!(
        "provider=k8s namespace={} label_selector=\"{}\"",
        options.namespace,
        options.pod_selector()
    );
    let mut join = Block::builder("retry_join")
        .add_attribute(("auto_join", auto_join))
        .add_attribute(("auto_join_scheme", options.scheme()))
        .add_attribute(("auto_join_port", i64::from(API_PORT)));
    if options.tls {
        join = join
            .add_attribute(("leader_ca_cert_file", format!("{TLS_DIR}/ca.crt")))
            .add_attribute(("leader_tls_servername", options.tls_server_name()));
    }

    let body = Body::builder()
        .add_attribute(("ui", false))
        .add_attribute(("cluster_name", options.name.clone()))
        .add_block(listener.build())
        .add_block(
            Block::builder("seal")
                .add_label("static")
                .add_attribute(("current_key_id", SEAL_KEY_ID))
                .add_attribute(("current_key", format!("file://{SEAL_DIR}/key")))
                .build(),
        )
        .add_block(
            Block::builder("storage")
                .add_label("raft")
                .add_attribute(("path", DATA_DIR))
                .add_block(join.build())
                .build(),
        )
        .add_block(
            Block::builder("service_registration")
                .add_label("kubernetes")
                .build(),
        )
        .build();
    Ok(hcl::to_string(&body)?)
}

fn metadata(options: &OpenBaoPodsOptions, name: &str) -> Value {
    json!({"name": name, "namespace": options.namespace, "labels": options.labels()})
}

/// The static seal key. Raw bytes, so no encoding and no trailing newline
/// can break it (OpenBao rejects hex or base64 keys that end in one).
pub fn unseal_secret(options: &OpenBaoPodsOptions, key: &[u8]) -> anyhow::Result<Secret> {
    anyhow::ensure!(key.len() == 32, "a static seal key is 32 bytes");
    Ok(serde_json::from_value(json!({
        "metadata": metadata(options, &options.unseal_secret_name()),
        "immutable": true,
        "data": {"key": k8s_openapi::ByteString(key.to_vec())},
    }))?)
}

/// The server certificate, its key and the CA that signed it.
pub fn tls_secret(
    options: &OpenBaoPodsOptions,
    pair: &CertAndKey,
    ca_pem: &str,
) -> anyhow::Result<Secret> {
    Ok(serde_json::from_value(json!({
        "metadata": metadata(options, &options.tls_secret_name()),
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": ca_pem},
    }))?)
}

pub fn config_map(options: &OpenBaoPodsOptions) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": metadata(options, &options.config_map_name()),
        "data": {"config.hcl": openbao_config(options)?},
    }))?)
}

/// The governing headless Service. It publishes not-ready pods so that each
/// pod's DNS name resolves before it is initialised and ready.
pub fn headless_service(options: &OpenBaoPodsOptions) -> anyhow::Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": metadata(options, options.service_name()),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": {"openbao.org/cluster": options.name},
            "ports": [{"name": "api", "port": API_PORT}, {"name": "cluster", "port": CLUSTER_PORT}],
        },
    }))?)
}

pub fn service_account(options: &OpenBaoPodsOptions) -> anyhow::Result<ServiceAccount> {
    Ok(serde_json::from_value(json!({
        "metadata": metadata(options, &options.service_account_name()),
    }))?)
}

/// What auto-join (list pods) and service registration (get and label its
/// own pod) need, and nothing else.
pub fn role(options: &OpenBaoPodsOptions) -> anyhow::Result<Role> {
    Ok(serde_json::from_value(json!({
        "metadata": metadata(options, &format!("{}-role", options.service_account_name())),
        "rules": [{"apiGroups": [""], "resources": ["pods"],
                   "verbs": ["get", "list", "watch", "update", "patch"]}],
    }))?)
}

pub fn role_binding(options: &OpenBaoPodsOptions) -> anyhow::Result<RoleBinding> {
    let account = options.service_account_name();
    Ok(serde_json::from_value(json!({
        "metadata": metadata(options, &format!("{account}-rolebinding")),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": format!("{account}-role")},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": options.namespace}],
    }))?)
}

/// The StatefulSet: `replicas` OpenBao servers started in parallel, each
/// with its own data claim. A pod is Ready once it is initialised and
/// unsealed (active or standby), which is also what auto-join looks for.
pub fn openbao_statefulset(options: &OpenBaoPodsOptions) -> anyhow::Result<StatefulSet> {
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let scheme = options.scheme();
    let pod_host = format!(
        "$(POD_NAME).{}.{}.svc",
        options.service_name(),
        options.namespace
    );
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": options.config_map_name()}}),
        json!({"name": "seal", "secret": {"secretName": options.unseal_secret_name()}}),
    ];
    let mut mounts = vec![
        json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}),
        json!({"name": "seal", "mountPath": SEAL_DIR, "readOnly": true}),
        json!({"name": "data", "mountPath": DATA_DIR}),
    ];
    if options.tls {
        volumes.push(json!({"name": "tls", "secret": {"secretName": options.tls_secret_name()}}));
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
    }
    Ok(serde_json::from_value(json!({
        "metadata": metadata(options, &options.name),
        "spec": {
            "serviceName": options.service_name(),
            "replicas": options.replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"openbao.org/cluster": options.name}},
            "template": {
                "metadata": {"labels": options.labels()},
                "spec": {
                    "serviceAccountName": options.service_account_name(),
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "openbao",
                        "image": options.image(),
                        "args": ["server", format!("-config={CONFIG_DIR}/config.hcl")],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                            {"name": "BAO_K8S_POD_NAME", "valueFrom": field("metadata.name")},
                            {"name": "BAO_K8S_NAMESPACE", "valueFrom": field("metadata.namespace")},
                            // Stable Raft ids: `raft list-peers` names pods.
                            {"name": "BAO_RAFT_NODE_ID", "value": "$(POD_NAME)"},
                            {"name": "BAO_API_ADDR",
                             "value": format!("{scheme}://{pod_host}:{API_PORT}")},
                            {"name": "BAO_CLUSTER_ADDR",
                             "value": format!("https://{pod_host}:{CLUSTER_PORT}")},
                        ],
                        "ports": [{"name": "api", "containerPort": API_PORT},
                                  {"name": "cluster", "containerPort": CLUSTER_PORT}],
                        "readinessProbe": {
                            "httpGet": {"scheme": scheme.to_ascii_uppercase(), "port": "api",
                                        "path": "/v1/sys/health?standbyok=true"},
                            "periodSeconds": 2, "failureThreshold": 2,
                        },
                        "livenessProbe": {"tcpSocket": {"port": "api"}, "initialDelaySeconds": 5,
                                          "periodSeconds": 5, "failureThreshold": 6},
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": options.storage}}}}],
        },
    }))?)
}

/// A deployed cluster: talks to its pods by their DNS names through the
/// node agent's resolver. After [`OpenBaoPods::initialize`] it holds the
/// setup (root) token, which it never prints.
pub struct OpenBaoPods {
    options: OpenBaoPodsOptions,
    client: kube::Client,
    http: reqwest::Client,
    ca_pem: Option<String>,
    token: String,
    logs_hint: String,
}

impl fmt::Debug for OpenBaoPods {
    // Hand-written so that the setup token can never reach any output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoPods")
            .field("options", &self.options)
            .field("initialized", &!self.token.is_empty())
            .finish_non_exhaustive()
    }
}

/// Applies every object of the cluster (server-side apply, so running it
/// twice is harmless) and returns a handle; the pods start in the
/// background and stay unready until [`OpenBaoPods::initialize`].
pub async fn deploy_openbao(
    client: &kube::Client,
    agent: &NodeAgent,
    options: OpenBaoPodsOptions,
) -> anyhow::Result<OpenBaoPods> {
    crate::install_crypto_provider();
    anyhow::ensure!(options.replicas >= 1, "a cluster needs at least one pod");
    let ns = options.namespace.as_str();
    let ca_pem = if options.tls {
        let ca = TestCa::new(&format!("{} test CA", options.name))?;
        let sans = options.tls_sans();
        let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
        let pair = ca.issue(&options.tls_server_name(), None, &sans)?;
        apply(client, ns, &tls_secret(&options, &pair, &ca.cert_pem())?).await?;
        Some(ca.cert_pem())
    } else {
        None
    };
    let key = random_bytes(32)?;
    apply(client, ns, &unseal_secret(&options, &key)?).await?;
    apply(client, ns, &config_map(&options)?).await?;
    apply(client, ns, &service_account(&options)?).await?;
    apply(client, ns, &role(&options)?).await?;
    apply(client, ns, &role_binding(&options)?).await?;
    apply(client, ns, &headless_service(&options)?).await?;
    apply(client, ns, &openbao_statefulset(&options)?).await?;

    let mut http = reqwest::Client::builder()
        .dns_resolver(agent.resolver())
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .no_proxy();
    if let Some(pem) = &ca_pem {
        http = http.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes())?]);
    }
    Ok(OpenBaoPods {
        logs_hint: format!(
            "pod logs are under {}/pods/{ns}_<pod>_<uid>/logs/ (KEEP_TEST_ENV=1 keeps them)",
            agent.dir().display()
        ),
        options,
        client: client.clone(),
        http: http.build()?,
        ca_pem,
        token: String::new(),
    })
}

async fn apply<K>(client: &kube::Client, namespace: &str, object: &K) -> anyhow::Result<()>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + fmt::Debug,
    K::DynamicType: Default,
{
    let name = object
        .meta()
        .name
        .clone()
        .context("object without a name")?;
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .with_context(|| format!("apply {} {namespace}/{name}", K::kind(&Default::default())))?;
    Ok(())
}

impl OpenBaoPods {
    pub fn options(&self) -> &OpenBaoPodsOptions {
        &self.options
    }

    pub fn pod_names(&self) -> Vec<String> {
        self.options.pod_names()
    }

    /// PEM of the CA that signed the servers' certificate (None without TLS).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The setup (root) token from `sys/init`, empty before. For arranging
    /// state in tests and for a developer's 0600 token file; never print it.
    pub fn setup_token(&self) -> &str {
        &self.token
    }

    /// An HTTP client that resolves cluster names and trusts the cluster CA.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A pod's API address by DNS name, e.g. `https://openbao-0.openbao.default.svc:8200`.
    pub fn pod_url(&self, pod: &str) -> String {
        format!(
            "{}://{}:{API_PORT}",
            self.options.scheme(),
            self.options.pod_host(pod)
        )
    }

    /// Sends a request to one pod (with the setup token once initialised);
    /// returns the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        pod: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/v1/{}", self.pod_url(pod), path.trim_start_matches('/'));
        let mut request = self.http.request(method, &url);
        if !self.token.is_empty() {
            request = request.header("X-Vault-Token", &self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("request {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Initialises the cluster through pod 0 (`sys/init`, one recovery
    /// share: the static seal unseals), waits until pod 0 is active and
    /// shortens autopilot's stabilization time so that joined pods become
    /// voters in seconds. The other pods then find pod 0 by auto-join.
    pub async fn initialize(&mut self) -> anyhow::Result<()> {
        let pod0 = self
            .pod_names()
            .into_iter()
            .next()
            .context("no pods to initialise")?;
        let status = poll_until_ok(
            Duration::from_secs(180),
            &format!("{pod0} to answer sys/health"),
            || async {
                let (status, _) = self.call(&pod0, Method::GET, "sys/health", None).await?;
                Ok(Some(status))
            },
        )
        .await
        .with_context(|| self.logs_hint.clone())?;
        anyhow::ensure!(
            status == 501,
            "{pod0} is not uninitialised (sys/health answered {status})"
        );
        let (status, body) = self
            .call(
                &pod0,
                Method::PUT,
                "sys/init",
                Some(json!({"recovery_shares": 1, "recovery_threshold": 1})),
            )
            .await?;
        // The body holds the token and the recovery key: never in errors.
        anyhow::ensure!(status == 200, "sys/init on {pod0} answered {status}");
        self.token = body["root_token"]
            .as_str()
            .context("sys/init returned no root_token")?
            .to_owned();
        poll_until(
            Duration::from_secs(60),
            &format!("{pod0} to become active"),
            || async {
                Ok(self
                    .call(&pod0, Method::GET, "sys/health", None)
                    .await
                    .is_ok_and(|(status, _)| status == 200))
            },
        )
        .await
        .with_context(|| self.logs_hint.clone())?;
        let (status, body) = self
            .call(
                &pod0,
                Method::POST,
                "sys/storage/raft/autopilot/configuration",
                Some(json!({"server_stabilization_time": "2s"})),
            )
            .await?;
        anyhow::ensure!(status < 300, "autopilot configuration: {status} {body}");
        Ok(())
    }

    /// Raft server ids, sorted, once autopilot reports `count` healthy
    /// voters (asked of the first pod that answers; standbys forward).
    pub async fn wait_voters(&self, count: usize) -> anyhow::Result<Vec<String>> {
        poll_until_ok(
            Duration::from_secs(180),
            &format!("{count} healthy Raft voters"),
            || async {
                let mut last = None;
                for pod in self.pod_names() {
                    match self
                        .call(&pod, Method::GET, "sys/storage/raft/autopilot/state", None)
                        .await
                    {
                        Ok((200, body)) => {
                            let mut voters: Vec<String> = body["data"]["voters"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect();
                            voters.sort();
                            let healthy = body["data"]["healthy"] == Value::Bool(true);
                            return Ok((voters.len() == count && healthy).then_some(voters));
                        }
                        Ok((status, body)) => {
                            last =
                                Some(anyhow::anyhow!("autopilot state on {pod}: {status} {body}"))
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| anyhow::anyhow!("no pod answered")))
            },
        )
        .await
        .with_context(|| self.logs_hint.clone())
    }

    /// The pod whose `sys/health` says active (200).
    pub async fn active_pod(&self) -> anyhow::Result<String> {
        poll_until_ok(Duration::from_secs(60), "an active pod", || async {
            for pod in self.pod_names() {
                if let Ok((200, _)) = self.call(&pod, Method::GET, "sys/health", None).await {
                    return Ok(Some(pod));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Waits until every pod is Ready (its readiness probe, run by the node
    /// agent, sees it initialised and unsealed) and returns their names.
    pub async fn wait_pods_ready(&self) -> anyhow::Result<Vec<String>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.options.namespace);
        for name in self.pod_names() {
            poll_until(
                Duration::from_secs(180),
                &format!("pod {name} Ready"),
                || {
                    let pods = pods.clone();
                    let name = name.clone();
                    async move {
                        let Some(pod) = pods.get_opt(&name).await? else {
                            return Ok(false);
                        };
                        Ok(pod.metadata.deletion_timestamp.is_none() && pod_ready(&pod))
                    }
                },
            )
            .await
            .with_context(|| self.logs_hint.clone())?;
        }
        Ok(self.pod_names())
    }

    /// A pod's IP address on the node agent's bridge (reachable from the
    /// host, unlike its DNS name).
    pub async fn pod_ip(&self, pod: &str) -> anyhow::Result<Ipv4Addr> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.options.namespace);
        let pod = pods.get(pod).await?;
        pod.status
            .and_then(|s| s.pod_ip)
            .context("the pod has no IP yet")?
            .parse()
            .context("the pod IP is not IPv4")
    }
}

/// Whether a pod's Ready condition is true.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn options() -> OpenBaoPodsOptions {
        OpenBaoPodsOptions {
            name: "bao".into(),
            namespace: "ns".into(),
            version: "2.7.2".into(),
            replicas: 3,
            tls: true,
            storage: "2Gi".into(),
        }
    }

    /// The blocks of `body` with identifier `name`.
    fn blocks<'a>(body: &'a hcl::Body, name: &str) -> Vec<&'a hcl::Block> {
        body.blocks().filter(|b| b.identifier() == name).collect()
    }

    fn attr(block: &hcl::Block, key: &str) -> Option<hcl::Expression> {
        block
            .body()
            .attributes()
            .find(|a| a.key() == key)
            .map(|a| a.expr().clone())
    }

    fn string(value: &str) -> Option<hcl::Expression> {
        Some(hcl::Expression::String(value.into()))
    }

    #[test]
    fn config_auto_joins_this_clusters_pods_over_tls_and_registers_with_kubernetes() {
        let body: hcl::Body = hcl::from_str(&openbao_config(&options()).unwrap()).unwrap();
        let storage = blocks(&body, "storage");
        assert_eq!(storage.len(), 1);
        assert_eq!(attr(storage[0], "path"), string("/openbao/data"));
        let join: Vec<_> = blocks(storage[0].body(), "retry_join");
        assert_eq!(join.len(), 1, "one auto_join block, no static addresses");
        assert_eq!(
            attr(join[0], "auto_join"),
            string(r#"provider=k8s namespace=ns label_selector="openbao.org/cluster=bao""#)
        );
        assert_eq!(attr(join[0], "auto_join_scheme"), string("https"));
        assert_eq!(
            attr(join[0], "leader_tls_servername"),
            string("openbao-cluster-bao.local")
        );
        let listener = blocks(&body, "listener");
        assert_eq!(
            attr(listener[0], "tls_cert_file"),
            string("/openbao/tls/tls.crt")
        );
        assert_eq!(attr(listener[0], "tls_disable"), None);
        let seal = blocks(&body, "seal");
        assert_eq!(seal[0].labels()[0].as_str(), "static");
        assert_eq!(
            attr(seal[0], "current_key"),
            string("file:///openbao/seal/key")
        );
        let registration = blocks(&body, "service_registration");
        assert_eq!(registration[0].labels()[0].as_str(), "kubernetes");
        // Never self-initialise from a shared config: every pod would
        // bootstrap its own cluster.
        assert!(blocks(&body, "initialize").is_empty());
    }

    #[test]
    fn config_without_tls_disables_it_and_joins_over_http() {
        let plain = OpenBaoPodsOptions {
            tls: false,
            ..options()
        };
        let body: hcl::Body = hcl::from_str(&openbao_config(&plain).unwrap()).unwrap();
        let listener = blocks(&body, "listener");
        assert_eq!(
            attr(listener[0], "tls_disable"),
            Some(hcl::Expression::Bool(true))
        );
        let storage = blocks(&body, "storage");
        let join = blocks(storage[0].body(), "retry_join");
        assert_eq!(attr(join[0], "auto_join_scheme"), string("http"));
        assert_eq!(attr(join[0], "leader_ca_cert_file"), None);
        let sts = openbao_statefulset(&plain).unwrap();
        let pod = sts.spec.template.spec.unwrap();
        assert!(
            pod.volumes.unwrap().iter().all(|v| v.name != "tls"),
            "no TLS Secret to mount"
        );
    }

    #[test]
    fn statefulset_runs_the_versioned_image_with_probe_claims_and_identity() {
        let o = options();
        let sts = openbao_statefulset(&o).unwrap();
        let spec = sts.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("bao"));
        let template_labels = spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in spec.selector.match_labels.unwrap() {
            assert_eq!(template_labels.get(&k), Some(&v), "selector matches pods");
        }
        let pod = spec.template.spec.unwrap();
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("bao-serviceaccount")
        );
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("openbao/openbao:2.7.2"));
        let probe = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some("/v1/sys/health?standbyok=true"));
        assert_eq!(probe.scheme.as_deref(), Some("HTTPS"));
        let env: BTreeMap<_, _> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.clone()))
            .collect();
        assert_eq!(
            env["BAO_API_ADDR"].as_deref(),
            Some("https://$(POD_NAME).bao.ns.svc:8200")
        );
        assert_eq!(env["BAO_RAFT_NODE_ID"].as_deref(), Some("$(POD_NAME)"));
        assert!(env.contains_key("BAO_K8S_POD_NAME") && env.contains_key("BAO_K8S_NAMESPACE"));
        let mounts: Vec<_> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(mounts, ["config", "seal", "data", "tls"]);
        let claims = spec.volume_claim_templates.unwrap();
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
        let request = &claims[0].spec.as_ref().unwrap().resources.as_ref().unwrap();
        assert_eq!(request.requests.as_ref().unwrap()["storage"].0, "2Gi");
    }

    #[test]
    fn unseal_secret_holds_exactly_the_raw_key() {
        let key: Vec<u8> = (0..32).collect();
        let secret = unseal_secret(&options(), &key).unwrap();
        assert_eq!(
            secret.data.unwrap()["key"].0,
            key,
            "no newline, no encoding"
        );
        assert_eq!(secret.immutable, Some(true));
        assert!(unseal_secret(&options(), &key[..31]).is_err());
    }

    #[test]
    fn rbac_grants_pod_access_to_the_pods_service_account_only() {
        let o = options();
        let role = role(&o).unwrap();
        let rule = &role.rules.as_ref().unwrap()[0];
        assert_eq!(rule.resources.as_deref(), Some(&["pods".to_owned()][..]));
        for verb in ["get", "list", "update", "patch"] {
            assert!(rule.verbs.iter().any(|v| v == verb), "{verb}");
        }
        assert!(!rule.verbs.iter().any(|v| v == "delete" || v == "create"));
        let binding = role_binding(&o).unwrap();
        assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
        assert_eq!(
            binding.subjects.unwrap()[0].name,
            service_account(&o).unwrap().metadata.name.unwrap()
        );
    }

    #[test]
    fn headless_service_publishes_unready_pods_and_certificate_names_them() {
        let o = options();
        let svc = headless_service(&o).unwrap().spec.unwrap();
        assert_eq!(svc.cluster_ip.as_deref(), Some("None"));
        assert_eq!(svc.publish_not_ready_addresses, Some(true));
        assert_eq!(o.pod_names(), ["bao-0", "bao-1", "bao-2"]);
        assert_eq!(o.pod_host("bao-1"), "bao-1.bao.ns.svc");
        let sans = o.tls_sans();
        for name in [
            "*.bao.ns.svc",
            "*.bao.ns.svc.cluster.local",
            "openbao-cluster-bao.local",
        ] {
            assert!(sans.iter().any(|s| s == name), "{name} in {sans:?}");
        }
        let ca = TestCa::new("unit").unwrap();
        let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
        let pair = ca.issue("bao", None, &sans).unwrap();
        let secret = tls_secret(&o, &pair, &ca.cert_pem()).unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.string_data.unwrap();
        assert!(data["tls.crt"].contains("BEGIN CERTIFICATE"));
        assert_eq!(data["ca.crt"], ca.cert_pem());
    }
}
