//! A real Kubernetes control plane on loopback: etcd, kube-apiserver and
//! kube-controller-manager, with generated certificates and a
//! service-account issuer whose discovery document and JWKS are served by
//! the API server itself. The API server can be restarted with a new
//! service-account signing key ([`ControlPlane::rotate_service_account_signing_key`]).
//! Its audit log records who made each request ([`ControlPlane::acting_identities`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::net::free_port;
use crate::pki::{CertAndKey, TestCa, signing_key_pair};
use crate::process::ManagedProcess;
use crate::wait::poll_until;
use crate::{EnvDir, tools};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Service ClusterIPs are only bookkeeping here: nothing ever connects to
/// them, traffic goes to pod and loopback addresses.
const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Every request at `Metadata` level (who, what, which object; no bodies,
/// so no secret values), except the control plane's own components.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:apiserver", "system:kube-controller-manager", "system:kube-scheduler"]
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
"#;
/// The API server's audit log, in the control plane's folder.
const AUDIT_LOG: &str = "audit.log";

/// A running control plane. Dropping it stops every process and removes its
/// files (set `KEEP_TEST_ENV=1` to keep the files for debugging).
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: the controller-manager and API server stop
    // before etcd, and the folder goes last.
    controller_manager: ManagedProcess,
    apiserver: ManagedProcess,
    etcd: ManagedProcess,
    /// `https://127.0.0.1:<port>`: API server URL and service-account issuer.
    pub server_url: String,
    /// Admin kubeconfig (user `admin`, group `system:masters`).
    pub kubeconfig_path: PathBuf,
    /// PEM of the CA that signed the API server's certificate.
    pub ca_pem: String,
    /// How the API server is started (kept for restarts).
    apiserver_setup: ApiServerSetup,
    dir: EnvDir,
}

/// Everything the API server is started with, so it can be restarted on
/// the same etcd, port, certificates and issuer.
#[derive(Debug)]
struct ApiServerSetup {
    etcd_url: String,
    port: u16,
    pki: PathBuf,
    /// Every public key tokens are verified with (and the JWKS serves),
    /// oldest first.
    public_keys: Vec<PathBuf>,
    /// The private key new tokens are signed with.
    signing_key: PathBuf,
    /// How many times the API server was started (names its log file).
    starts: u32,
}

/// Names of the processes a control plane runs, in start order.
pub const PROCESS_NAMES: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

impl ControlPlane {
    /// Starts etcd, the API server and the controller-manager, and returns
    /// once the API server is ready and the controller-manager is working.
    pub async fn start() -> anyhow::Result<Self> {
        // Ports are picked free and then handed to etcd and the API server,
        // so a concurrent test can take one in between: one more try, on
        // new ports, before the failure counts.
        match Self::start_in(EnvDir::new("control-plane")?).await {
            Ok(plane) => Ok(plane),
            Err(error) => {
                eprintln!(
                    "the control plane did not start ({error:#}); trying once more on new ports"
                );
                Self::start_in(EnvDir::new("control-plane")?).await
            }
        }
    }

    /// Like [`ControlPlane::start`] but keeps its files in `dir`.
    pub async fn start_in(dir: EnvDir) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let root = dir.path().to_path_buf();
        let pki = write_pki(&root)?;

        let etcd_client = free_port(LOCALHOST)?;
        let etcd_peer = free_port(LOCALHOST)?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let etcd = ManagedProcess::spawn(
            "etcd",
            &tools::etcd()?,
            &args(&[
                ("name", "default"),
                ("data-dir", &path_str(&root.join("etcd"))),
                ("listen-client-urls", &etcd_url),
                ("advertise-client-urls", &etcd_url),
                ("listen-peer-urls", &peer_url),
                ("initial-advertise-peer-urls", &peer_url),
                ("initial-cluster", &format!("default={peer_url}")),
                ("log-level", "warn"),
                // Durability buys nothing in a throwaway test store and
                // costs seconds of fsync on a small machine.
                ("unsafe-no-fsync", "true"),
            ]),
            &[],
            &root.join("etcd.log"),
        )?;

        let port = free_port(LOCALHOST)?;
        let server_url = format!("https://127.0.0.1:{port}");
        let mut apiserver_setup = ApiServerSetup {
            etcd_url,
            port,
            pki: pki.clone(),
            public_keys: vec![pki.join("sa.pub")],
            signing_key: pki.join("sa.key"),
            starts: 0,
        };
        let apiserver = apiserver_setup.spawn(&root)?;

        let mut plane = PartialPlane {
            etcd,
            apiserver,
            root: root.clone(),
            server_url: server_url.clone(),
        };
        let kubeconfig_path = root.join("admin.kubeconfig");
        write_kubeconfig(&kubeconfig_path, &server_url, &pki, "admin")?;
        plane.wait_ready(&kubeconfig_path).await?;

        let kcm_kubeconfig = root.join("controller-manager.kubeconfig");
        write_kubeconfig(&kcm_kubeconfig, &server_url, &pki, "controller-manager")?;
        let controller_manager = ManagedProcess::spawn(
            "kube-controller-manager",
            &tools::kubernetes("kube-controller-manager")?,
            &args(&[
                ("kubeconfig", &path_str(&kcm_kubeconfig)),
                ("authentication-kubeconfig", &path_str(&kcm_kubeconfig)),
                ("authorization-kubeconfig", &path_str(&kcm_kubeconfig)),
                ("secure-port", "0"),
                ("leader-elect", "false"),
                ("use-service-account-credentials", "true"),
                (
                    "service-account-private-key-file",
                    &path_str(&pki.join("sa.key")),
                ),
                ("root-ca-file", &path_str(&pki.join("ca.crt"))),
                ("cluster-signing-cert-file", &path_str(&pki.join("ca.crt"))),
                ("cluster-signing-key-file", &path_str(&pki.join("ca.key"))),
                ("service-cluster-ip-range", SERVICE_CIDR),
                ("controllers", "*"),
            ]),
            &[],
            &root.join("kube-controller-manager.log"),
        )?;

        let PartialPlane {
            etcd, apiserver, ..
        } = plane;
        let mut control_plane = Self {
            controller_manager,
            apiserver,
            etcd,
            server_url,
            kubeconfig_path,
            ca_pem: std::fs::read_to_string(pki.join("ca.crt"))?,
            apiserver_setup,
            dir,
        };
        control_plane.wait_controller_manager().await?;
        Ok(control_plane)
    }

    /// A client authenticated as the cluster admin.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_from(&self.kubeconfig_path).await
    }

    /// The admin's client configuration.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        config_from(&self.kubeconfig_path).await
    }

    /// A client acting as `user` in `groups` plus `system:masters` (the
    /// admin impersonates it): RBAC allows it everything, so only
    /// admission decides what it may do.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> anyhow::Result<kube::Client> {
        let mut config = self.config().await?;
        config.auth_info.impersonate = Some(user.into());
        config.auth_info.impersonate_groups = Some(
            groups
                .iter()
                .chain(&["system:masters", "system:authenticated"])
                .map(|g| (*g).to_owned())
                .collect(),
        );
        Ok(kube::Client::try_from(config)?)
    }

    /// Files of this environment (logs, certificates, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process ids of etcd, the API server and the controller-manager.
    pub fn pids(&self) -> Vec<u32> {
        [&self.etcd, &self.apiserver, &self.controller_manager]
            .iter()
            .filter_map(|p| p.pid())
            .collect()
    }

    /// Who the requests whose `User-Agent` starts with `user_agent` acted
    /// as, from the API server's audit log: each identity (`<user> as
    /// <impersonated user>` when the request impersonated) with its number
    /// of requests.
    pub fn acting_identities(&self, user_agent: &str) -> anyhow::Result<BTreeMap<String, usize>> {
        let path = self.audit_log();
        let log = std::fs::read_to_string(&path)
            .with_context(|| format!("read the audit log {}", path.display()))?;
        let mut requests = std::collections::BTreeSet::new();
        let mut identities = BTreeMap::new();
        for line in log.lines() {
            // The last line may be half written while the API server runs.
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let agent = event["userAgent"].as_str().unwrap_or_default();
            // A watch logs ResponseStarted and later ResponseComplete: one
            // request, counted once.
            if !agent.starts_with(user_agent)
                || !requests.insert(event["auditID"].as_str().unwrap_or_default().to_owned())
            {
                continue;
            }
            let user = event["user"]["username"].as_str().unwrap_or_default();
            let identity = match event["impersonatedUser"]["username"].as_str() {
                Some(impersonated) => format!("{user} as {impersonated}"),
                None => user.to_owned(),
            };
            *identities.entry(identity).or_insert(0) += 1;
        }
        Ok(identities)
    }

    /// The API server's audit log (JSON lines, `Metadata` level).
    pub fn audit_log(&self) -> PathBuf {
        self.dir().join(AUDIT_LOG)
    }

    /// The service-account issuer (the API server URL).
    pub fn issuer(&self) -> &str {
        &self.server_url
    }

    /// Restarts the API server with a new service-account signing key,
    /// generated like the first one, on the same etcd, port, serving
    /// certificates and issuer. Every earlier public key stays in
    /// `--service-account-key-file` (and so in the issuer's JWKS), so tokens
    /// signed before still verify; tokens issued from now on carry the new
    /// key's `kid`. Returns once the new API server answers `/readyz`.
    ///
    /// The controller-manager keeps running (it reconnects) and keeps its
    /// `--service-account-private-key-file`: it only signs legacy Secret
    /// tokens, which the kept old public key still verifies.
    pub async fn rotate_service_account_signing_key(&mut self) -> anyhow::Result<()> {
        let setup = &mut self.apiserver_setup;
        let generation = setup.public_keys.len();
        let (key, public) = signing_key_pair()?;
        let key_path = setup.pki.join(format!("sa-{generation}.key"));
        let public_path = setup.pki.join(format!("sa-{generation}.pub"));
        std::fs::write(&key_path, key)?;
        std::fs::write(&public_path, public)?;

        // The old process must be gone before the new one binds the port.
        // It is killed, not drained: after SIGTERM kube-apiserver 1.37
        // stopped its controllers at once but was still running 30 s later
        // (measured, with the controller-manager's watches open), and it
        // keeps no state of its own (etcd does).
        self.apiserver.stop(Duration::ZERO);

        setup.public_keys.push(public_path);
        setup.signing_key = key_path;
        // Replacing the field drops the stopped process; the new one is
        // stopped with the control plane like the first.
        self.apiserver = setup.spawn(self.dir.path())?;
        wait_apiserver_ready(
            &mut self.apiserver,
            &mut self.etcd,
            &self.kubeconfig_path,
            &self.server_url,
            self.dir.path(),
        )
        .await
    }

    // The controller-manager is working once its service-account controller
    // has created the `default` ServiceAccount in the `default` namespace.
    async fn wait_controller_manager(&mut self) -> anyhow::Result<()> {
        let client = self.client().await?;
        let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client, "default");
        let kcm = &mut self.controller_manager;
        poll_until(
            Duration::from_secs(90),
            "kube-controller-manager to start",
            || {
                let accounts = accounts.clone();
                let running = kcm.is_running();
                let tail = kcm.log_tail(20);
                async move {
                    anyhow::ensure!(running, "kube-controller-manager exited:\n{tail}");
                    Ok(accounts.get_opt("default").await?.is_some())
                }
            },
        )
        .await
    }
}

/// etcd and the API server before the controller-manager exists; its Drop
/// (through the fields) cleans up if readiness fails.
struct PartialPlane {
    etcd: ManagedProcess,
    apiserver: ManagedProcess,
    root: PathBuf,
    server_url: String,
}

impl PartialPlane {
    async fn wait_ready(&mut self, kubeconfig: &Path) -> anyhow::Result<()> {
        wait_apiserver_ready(
            &mut self.apiserver,
            &mut self.etcd,
            kubeconfig,
            &self.server_url,
            &self.root,
        )
        .await
    }
}

impl ApiServerSetup {
    /// Starts kube-apiserver with this setup, logging to
    /// `kube-apiserver.log` (the first start) or `kube-apiserver-<n>.log`.
    fn spawn(&mut self, root: &Path) -> anyhow::Result<ManagedProcess> {
        let audit_policy = root.join("audit-policy.yaml");
        std::fs::write(&audit_policy, AUDIT_POLICY)?;
        let audit_policy = path_str(&audit_policy);
        let audit_log = path_str(&root.join(AUDIT_LOG));
        let pki = &self.pki;
        let server_url = format!("https://127.0.0.1:{}", self.port);
        let port = self.port.to_string();
        let cert_dir = path_str(&root.join("apiserver-certs"));
        let tls_cert = path_str(&pki.join("apiserver.crt"));
        let tls_key = path_str(&pki.join("apiserver.key"));
        let client_ca = path_str(&pki.join("ca.crt"));
        let signing_key = path_str(&self.signing_key);
        let public_keys: Vec<String> = self.public_keys.iter().map(|p| path_str(p)).collect();
        let mut pairs = vec![
            ("etcd-servers", self.etcd_url.as_str()),
            ("bind-address", "127.0.0.1"),
            ("advertise-address", "127.0.0.1"),
            // The API server refuses to publish a loopback address as the
            // `kubernetes` Service endpoint; nothing here needs it.
            ("endpoint-reconciler-type", "none"),
            ("secure-port", &port),
            ("cert-dir", &cert_dir),
            ("tls-cert-file", &tls_cert),
            ("tls-private-key-file", &tls_key),
            ("client-ca-file", &client_ca),
            ("service-account-issuer", &server_url),
            ("service-account-signing-key-file", &signing_key),
            ("service-cluster-ip-range", SERVICE_CIDR),
            ("authorization-mode", "Node,RBAC"),
            ("allow-privileged", "true"),
            ("profiling", "false"),
            ("event-ttl", "1h"),
            ("audit-policy-file", &audit_policy),
            ("audit-log-path", &audit_log),
            ("audit-log-format", "json"),
            // One file for the whole run (restarts append to it).
            ("audit-log-maxsize", "0"),
        ];
        // Repeated: every key verifies tokens and is served in the JWKS.
        pairs.extend(
            public_keys
                .iter()
                .map(|key| ("service-account-key-file", key.as_str())),
        );
        self.starts += 1;
        let log = match self.starts {
            1 => root.join("kube-apiserver.log"),
            n => root.join(format!("kube-apiserver-{n}.log")),
        };
        ManagedProcess::spawn(
            "kube-apiserver",
            &tools::kubernetes("kube-apiserver")?,
            &args(&pairs),
            &[],
            &log,
        )
    }
}

/// Waits until the API server at `url` answers `/readyz` with `ok`, failing
/// at once if it or etcd exits.
async fn wait_apiserver_ready(
    apiserver: &mut ManagedProcess,
    etcd: &mut ManagedProcess,
    kubeconfig: &Path,
    url: &str,
    root: &Path,
) -> anyhow::Result<()> {
    let client = client_from(kubeconfig).await?;
    poll_until(Duration::from_secs(90), "kube-apiserver /readyz", || {
        let client = client.clone();
        let running = apiserver.is_running() && etcd.is_running();
        let tail = format!(
            "kube-apiserver:\n{}\netcd:\n{}",
            apiserver.log_tail(15),
            etcd.log_tail(15)
        );
        async move {
            anyhow::ensure!(running, "a control-plane process exited:\n{tail}");
            let request = http::Request::get("/readyz").body(Vec::new())?;
            Ok(client
                .request_text(request)
                .await
                .is_ok_and(|body| body == "ok"))
        }
    })
    .await
    .with_context(|| format!("API server {url} (files in {})", root.display()))
}

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(config_from(kubeconfig).await?)?)
}

/// The client configuration in a kubeconfig file.
pub async fn config_from(kubeconfig: &Path) -> anyhow::Result<kube::Config> {
    crate::install_crypto_provider();
    Ok(kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?)
}

fn args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// CA, API server certificate, client certificates and the service-account
/// signing key, written as files the servers read.
fn write_pki(root: &Path) -> anyhow::Result<PathBuf> {
    let pki = root.join("pki");
    std::fs::create_dir_all(&pki)?;
    let ca = TestCa::new("openbao-operator test control plane")?;
    let write = |name: &str, pem: &str| std::fs::write(pki.join(name), pem);
    write("ca.crt", &ca.cert_pem())?;
    write("ca.key", ca.key_pem())?;
    let server = ca.issue(
        "kube-apiserver",
        None,
        &[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
    )?;
    write_pair(&pki, "apiserver", &server)?;
    write_pair(
        &pki,
        "admin",
        &ca.issue("admin", Some("system:masters"), &[])?,
    )?;
    write_pair(
        &pki,
        "controller-manager",
        &ca.issue("system:kube-controller-manager", None, &[])?,
    )?;
    let (sa_key, sa_pub) = signing_key_pair()?;
    write("sa.key", &sa_key)?;
    write("sa.pub", &sa_pub)?;
    Ok(pki)
}

fn write_pair(pki: &Path, name: &str, pair: &CertAndKey) -> std::io::Result<()> {
    std::fs::write(pki.join(format!("{name}.crt")), &pair.cert_pem)?;
    std::fs::write(pki.join(format!("{name}.key")), &pair.key_pem)
}

/// Writes a kubeconfig for the client certificate `pki/<user>.crt`.
fn write_kubeconfig(path: &Path, server: &str, pki: &Path, user: &str) -> anyhow::Result<()> {
    let b64 =
        |name: String| -> anyhow::Result<String> { Ok(B64.encode(std::fs::read(pki.join(name))?)) };
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server,
            "certificate-authority-data": b64("ca.crt".into())?,
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(format!("{user}.crt"))?,
            "client-key-data": b64(format!("{user}.key"))?,
        }}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    });
    let yaml = serde_yaml_ng::to_string(&config)?;
    Kubeconfig::from_yaml(&yaml).context("generated kubeconfig does not parse")?;
    std::fs::write(path, yaml)?;
    Ok(())
}
