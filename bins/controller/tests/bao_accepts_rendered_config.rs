//! Every rendered configuration is started by the real `bao` binary.
//!
//! The renderer takes its file paths and listen addresses as inputs, so the
//! test points them at a temporary folder and a free loopback port. One
//! stanza is removed before starting: `service_registration "kubernetes"`,
//! which refuses to start outside a pod (it needs the in-cluster service
//! account files at a fixed path); the node-agent end-to-end tests run it.
//! Kubernetes auto-join only logs that it finds no pods here, which is what
//! a bootstrap pod sees too.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use controller::render::{Inputs, Listen, Paths, config, self_init};
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::cluster::{AuditDevice, AuditType, FileAudit};
use lifecycle_types::names;
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::ControlPlane;
use test_support::net::{free_port, next_loopback_ip};
use test_support::pki::TestCa;
use test_support::process::ManagedProcess;
use test_support::wait::poll_until;
use test_support::{EnvDir, tools};

fn sample(file: &str) -> OpenBaoCluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/samples")
        .join(file);
    let mut cluster: OpenBaoCluster =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cluster.metadata.namespace = Some("team-a".into());
    cluster.metadata.uid = Some("00000000-0000-4000-8000-000000000001".into());
    cluster
}

/// A server started from rendered files, with a client that trusts its CA.
struct Server {
    process: ManagedProcess,
    audit_dir: String,
    addr: String,
    http: reqwest::Client,
    _dir: EnvDir,
}

impl Server {
    /// Renders the cluster's configuration (and self-init file, if any)
    /// under a temporary folder and starts `bao server` on it.
    fn start(
        cluster: &OpenBaoCluster,
        inputs_for: impl FnOnce(&mut Inputs),
        envs: &[(&str, &str)],
    ) -> Self {
        test_support::install_crypto_provider();
        let dir = EnvDir::new("controller-render").unwrap();
        let root = dir.path().display().to_string();
        let name = cluster.metadata.name.clone().unwrap();
        let ip = next_loopback_ip();
        let (api_port, cluster_port) = (free_port(ip).unwrap(), free_port(ip).unwrap());

        let mut inputs = Inputs {
            paths: Paths::under(&root),
            listen: Listen {
                api: format!("{ip}:{api_port}"),
                cluster: format!("{ip}:{cluster_port}"),
            },
            static_key_id: format!("{name}-1"),
            ..Inputs::in_pod("openbao-system", "https://unused.invalid")
        };
        inputs_for(&mut inputs);
        let paths = inputs.paths.clone();
        for folder in [
            &paths.config_dir,
            &paths.self_init_dir,
            &paths.tls_dir,
            &paths.data_dir,
            &paths.seal_dir,
            &paths.audit_dir,
        ] {
            std::fs::create_dir_all(folder).unwrap();
        }

        // TLS as the operator issues it: the pod names plus the join name.
        let ca = TestCa::new("render test CA").unwrap();
        let ip_text = ip.to_string();
        let join_name = names::tls_server_name(&name);
        let pair = ca.issue(&join_name, None, &[&join_name, &ip_text]).unwrap();
        std::fs::write(
            format!("{}/{}", paths.tls_dir, config::TLS_CERT),
            &pair.cert_pem,
        )
        .unwrap();
        std::fs::write(
            format!("{}/{}", paths.tls_dir, config::TLS_KEY),
            &pair.key_pem,
        )
        .unwrap();
        std::fs::write(
            format!("{}/{}", paths.tls_dir, config::TLS_CA),
            ca.cert_pem(),
        )
        .unwrap();
        // The static seal key as the unseal Secret holds it: 32 raw bytes.
        std::fs::write(
            format!("{}/{}", paths.seal_dir, config::SEAL_KEY_FILE),
            random_key(),
        )
        .unwrap();

        let mut body = config::body(cluster, &inputs).unwrap();
        let before = body.blocks().count();
        body = body
            .into_iter()
            .filter(|s| !matches!(s, hcl::Structure::Block(b) if b.identifier() == "service_registration"))
            .collect();
        assert_eq!(
            body.blocks().count(),
            before - 1,
            "exactly one stanza is removed"
        );
        let config_file = format!("{}/{}", paths.config_dir, names::CONFIG_KEY);
        std::fs::write(&config_file, hcl::to_string(&body).unwrap()).unwrap();
        let mut args = vec!["server".to_owned(), format!("-config={config_file}")];
        if let Some(text) = self_init::render(cluster, &inputs).unwrap() {
            let file = format!("{}/{}", paths.self_init_dir, names::SELF_INIT_KEY);
            std::fs::write(&file, text).unwrap();
            args.push(format!("-config={file}"));
        }

        // What the StatefulSet sets from the downward API.
        let addr = format!("https://{ip}:{api_port}");
        let mut env: Vec<(String, String)> = vec![
            ("BAO_RAFT_NODE_ID".into(), format!("{name}-0")),
            ("BAO_API_ADDR".into(), addr.clone()),
            (
                "BAO_CLUSTER_ADDR".into(),
                format!("https://{ip}:{cluster_port}"),
            ),
        ];
        env.extend(envs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let bao = tools::bao(tools::latest_openbao()).unwrap();
        let process =
            ManagedProcess::spawn("bao", &bao, &args, &env, &dir.path().join("bao.log")).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            process,
            audit_dir: paths.audit_dir.clone(),
            addr,
            http,
            _dir: dir,
        }
    }

    /// A file the rendered audit folder holds.
    fn audit_file(&self, name: &str) -> std::path::PathBuf {
        Path::new(&self.audit_dir).join(name)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Polls `sys/health` until `done` accepts the status; fails at once if
    /// the server exits (a rejected configuration ends the process).
    async fn wait_health(&self, what: &str, done: fn(StatusCode) -> bool) {
        let deadline = Duration::from_secs(90);
        let pid = self.process.pid().unwrap();
        let result = poll_until(deadline, what, || async move {
            anyhow::ensure!(test_support::process::pid_alive(pid), "bao exited");
            let health = self
                .call(reqwest::Method::GET, "sys/health", None, None)
                .await;
            Ok(health.is_ok_and(|(status, _)| done(status)))
        })
        .await;
        if let Err(e) = result {
            panic!("{e}\n{}", self.process.log_tail(40));
        }
    }
}

fn random_key() -> Vec<u8> {
    use std::io::Read;
    let mut key = vec![0; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut key)
        .unwrap();
    key
}

fn file_audit(path: &str, file_path: &str) -> AuditDevice {
    AuditDevice {
        type_: AuditType::File,
        path: path.into(),
        description: Some("rendered by the test".into()),
        format: None,
        log_raw: None,
        hmac_accessor: None,
        prefix: None,
        file: Some(FileAudit {
            file_path: file_path.into(),
            mode: Some("0600".into()),
        }),
        socket: None,
        syslog: None,
    }
}

#[tokio::test]
async fn a_static_seal_development_config_starts_and_waits_for_init() {
    let mut cluster = sample("openbaocluster-development.yaml");
    cluster.spec.configuration.raft.performance_multiplier = Some(1);
    cluster.spec.configuration.audit = vec![
        file_audit("stdout", "stdout"),
        file_audit("file", "/openbao/audit/audit.log"),
    ];
    let server = Server::start(&cluster, |_| {}, &[]);
    // 501: listening over TLS, unsealable, and waiting for initialization.
    server
        .wait_health("the server to listen, uninitialized", |s| s.as_u16() == 501)
        .await;
    let (status, body) = server
        .call(reqwest::Method::GET, "sys/seal-status", None, None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["type"], "static", "{body}");
}

#[tokio::test]
async fn a_self_init_config_initializes_the_cluster_without_a_root_token() {
    // The service-account issuer of a real kube-apiserver, so the JWT auth
    // method is configured through OIDC discovery as in production.
    let plane = ControlPlane::start().await.unwrap();
    plane.allow_anonymous_issuer_discovery().await.unwrap();
    let mut cluster = sample("openbaocluster-hardened.yaml");
    // The sample's Transit seal needs another OpenBao; this test is about
    // self-init and the configuration, on a node that unseals by itself
    // (the e2e story runs the Transit seal with real pods).
    cluster.spec.unseal = Default::default();
    // Every optional configuration field at least once, on a node that
    // unseals (audit devices are set up only after unsealing, where OpenBao
    // refuses what it does not allow: a prefix, for one). Syslog is left
    // out: no syslog daemon runs here.
    let audit_sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_address = audit_sink.local_addr().unwrap().to_string();
    cluster.spec.configuration.ui = true;
    cluster.spec.configuration.log_level = lifecycle_types::cluster::LogLevel::Debug;
    cluster.spec.configuration.raft.performance_multiplier = Some(2);
    let mut every_option = file_audit("every-option", "/openbao/audit/every-option.log");
    every_option.format = Some(lifecycle_types::cluster::AuditFormat::Json);
    every_option.log_raw = Some(false);
    every_option.hmac_accessor = Some(true);
    let mut socket = file_audit("socket", "");
    socket.type_ = AuditType::Socket;
    socket.file = None;
    socket.socket = Some(lifecycle_types::cluster::SocketAudit {
        address: sink_address,
        socket_type: lifecycle_types::cluster::SocketType::default(),
        write_timeout: Some("2s".into()),
    });
    cluster.spec.configuration.audit = vec![every_option, socket];
    let issuer = plane.issuer().to_owned();
    let ca_pem = plane.ca_pem.clone();
    let password = "correct horse battery staple";
    let server = Server::start(
        &cluster,
        |inputs| {
            inputs.service_account_issuer = issuer;
            let ca_file = Path::new(&inputs.paths.kube_ca_file);
            std::fs::create_dir_all(ca_file.parent().unwrap()).unwrap();
            std::fs::write(ca_file, ca_pem).unwrap();
        },
        // The bootstrap pod gets it from the Secret the sample references.
        &[(
            &self_init::secret_env_var("admin-user", "password"),
            password,
        )],
    );
    // Self-init keeps the listener down until it has finished; 200 means
    // every request succeeded (any failure ends the process).
    server
        .wait_health("self-init to finish", |s| s == StatusCode::OK)
        .await;

    // A human logs in through the user's requests...
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "auth/userpass/login/admin",
            None,
            Some(json!({"password": password})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    // Both audit devices took entries: OpenBao accepted every option.
    audit_sink.set_nonblocking(false).unwrap();
    let (mut stream, _) = audit_sink.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first = [0u8; 64];
    let read = std::io::Read::read(&mut stream, &mut first).unwrap();
    assert!(
        first[..read].starts_with(b"{"),
        "the socket device sent no JSON entry"
    );
    let logged = std::fs::read_to_string(server.audit_file("every-option.log")).unwrap();
    assert!(
        logged.lines().any(|l| l.contains("\"type\":\"response\"")),
        "{logged}"
    );
    let admin = body["auth"]["client_token"].as_str().unwrap().to_owned();
    // ...and no root token survived: the admin's is the only token left.
    let (status, body) = server
        .call(
            reqwest::Method::from_bytes(b"LIST").unwrap(),
            "auth/token/accessors",
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["keys"].as_array().unwrap().len(), 1, "{body}");

    // The controller logs in with the token it mints for this cluster (the
    // audience names the cluster) and holds only its policy; its legacy
    // projected token is refused.
    let audience = lifecycle_types::identities::controller_audience(
        "team-a",
        cluster.metadata.name.as_deref().unwrap(),
        cluster.metadata.uid.as_deref().unwrap(),
    );
    let mint = |audience: String| {
        let plane = &plane;
        async move {
            plane
                .service_account_token(
                    "openbao-system",
                    "openbao-operator",
                    &audience,
                    Duration::from_secs(600),
                )
                .await
                .unwrap()
        }
    };
    let legacy = mint("openbao-internal".into()).await;
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "auth/jwt/login",
            None,
            Some(json!({"role": "openbao-operator", "jwt": legacy})),
        )
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a token for any cluster must be refused"
    );
    let jwt = mint(audience).await;
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "auth/jwt/login",
            None,
            Some(json!({"role": "openbao-operator", "jwt": jwt})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let controller = body["auth"]["client_token"].as_str().unwrap().to_owned();
    let (status, _) = server
        .call(
            reqwest::Method::GET,
            "sys/storage/raft/autopilot/state",
            Some(&controller),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .call(
            reqwest::Method::GET,
            "sys/storage/raft/snapshot",
            Some(&controller),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the controller must not read snapshots"
    );
}
