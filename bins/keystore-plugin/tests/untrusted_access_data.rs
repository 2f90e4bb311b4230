//! Access data is untrusted input: it comes from CMK's tenants. Through
//! the real plugin-sdk host, access data that names another address, a
//! file path or an `http://` address is refused with `InvalidArgument`, and
//! a recording HTTPS server on loopback sees no request and no credential.
//! Controls show the refusals are not blanket: the same recorder does
//! receive a login when a request brings its own credential, and an
//! `allowedAddresses` alias of the real OpenBao works with the plugin's
//! credential. Evicted and closed sessions revoke their tokens.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use lifecycle_types::identities::Identity;
use reqwest::Method;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use support::{Bao, Host, config, params, plugin_credential};
use test_support::proxy::{ProxyOptions, TcpProxy};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const ENCRYPT: &str = "/openbao.keystore.v1.L1KeyCrypto/Encrypt";
const MSG_AUTH: &str = "failed to authenticate with the keystore provider";
/// A tenant's own secret_id, as HYOK access data may carry it.
const TENANT_SECRET: &str = "tenant-own-secret-id-6d1c";

/// One HTTP request the recorder received.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    /// Headers and body, to search for credentials.
    text: String,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

/// An HTTPS server on 127.0.0.1 that records every TCP connection and every
/// request, and refuses each request with 400.
struct Recorder {
    addr: SocketAddr,
    ca_pem: String,
    connections: Arc<AtomicUsize>,
    requests: Log,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts every accepted TCP connection (TLS or not: an `http://` request
/// reaching this port counts too), then completes the TLS handshake.
struct CountingTlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    connections: Arc<AtomicUsize>,
}

impl axum::serve::Listener for CountingTlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.tcp.accept().await else {
                continue;
            };
            self.connections.fetch_add(1, Ordering::SeqCst);
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn record(State(log): State<Log>, request: Request) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let headers: Vec<String> = parts
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
        .collect();
    log.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        text: format!(
            "{}\n\n{}",
            headers.join("\n"),
            String::from_utf8_lossy(&body)
        ),
    });
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"errors":["refused by the recording server"]}"#,
    )
}

impl Recorder {
    async fn start() -> Self {
        let ca = test_support::pki::TestCa::new("recording server CA").unwrap();
        let leaf = ca.issue("recorder", None, &["127.0.0.1"]).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests: Log = Arc::default();
        let listener = CountingTlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            connections: connections.clone(),
        };
        let router = axum::Router::new()
            .fallback(record)
            .with_state(requests.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            addr,
            ca_pem: ca.cert_pem(),
            connections,
            requests,
            task,
        }
    }

    fn https(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Asserts a refusal of `fields`: InvalidArgument, reason
/// ACCESS_DATA_REFUSED, each field named in the message, no secret echoed.
fn assert_refused(answer: &Value, fields: &[&str], secrets: &[&str]) {
    assert_eq!(answer["code"], "InvalidArgument", "{answer}");
    assert_eq!(answer["reasons"][0], "ACCESS_DATA_REFUSED", "{answer}");
    let message = answer["message"].as_str().unwrap();
    for field in fields {
        assert!(
            message.contains(&format!("access data field {field} is refused")),
            "{field} named: {message}"
        );
    }
    let text = answer.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "a secret is echoed: {text}");
    }
}

#[tokio::test]
async fn access_data_cannot_send_credentials_or_files_elsewhere() {
    let bao = Bao::start().await.unwrap();
    let recorder = Recorder::start().await;
    let mut host = Host::start(&bao.yaml_as(&bao.mgmt), bao.dir.path())
        .await
        .unwrap();
    let platform_secret = bao.mgmt.secret_id();
    let secrets = [platform_secret.as_str(), TENANT_SECRET];

    // The plugin's own credential works at its own address.
    let key_id = create_key(&mut host, &plugin_credential()).await;

    let secret_id_file = bao.mgmt.secret_id_file.display().to_string();
    let refusals: Vec<(Value, Vec<&str>)> = vec![
        // Another address, for the plugin's own credential.
        (json!({"address": recorder.https()}), vec!["address"]),
        (
            json!({"address": recorder.https(), "authMethod": "approle", "roleId": bao.mgmt.role_id}),
            vec!["address"],
        ),
        (
            json!({"address": recorder.https(), "caCertPem": recorder.ca_pem}),
            vec!["address"],
        ),
        // File paths, wherever they would be sent.
        (
            json!({"address": recorder.https(), "roleId": bao.mgmt.role_id, "secretIdFile": secret_id_file}),
            vec!["secretIdFile", "address"],
        ),
        (
            json!({"roleId": bao.mgmt.role_id, "secretIdFile": secret_id_file}),
            vec!["secretIdFile"],
        ),
        (
            json!({"address": recorder.https(), "authMethod": "approle", "roleId": bao.mgmt.role_id,
                   "wrappedSecretIdFile": secret_id_file}),
            vec!["wrappedSecretIdFile"],
        ),
        (
            json!({"address": recorder.https(), "authMethod": "kubernetes", "kubernetesRole": "cmk",
                   "serviceAccountTokenPath": secret_id_file}),
            vec!["serviceAccountTokenPath"],
        ),
        // Plain http, with the plugin's credential or the request's own.
        (json!({"address": recorder.http()}), vec!["address"]),
        (
            json!({"address": recorder.http(), "roleId": "tenant-role", "secretId": TENANT_SECRET}),
            vec!["address"],
        ),
        // The plugin's credential trusts only the YAML's CA.
        (json!({"caCertPem": recorder.ca_pem}), vec!["caCertPem"]),
        // ... and logs in only as the YAML's role.
        (json!({"roleId": bao.crypto.role_id}), vec!["roleId"]),
    ];
    for (access, fields) in &refusals {
        let calls = [
            ("GetKey", json!({"parameters": params(access, &key_id)})),
            (
                "CreateKey",
                json!({"config": config(access), "algorithm": "KEY_ALGORITHM_AES256",
                       "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}),
            ),
            (
                "DeleteKey",
                json!({"parameters": params(access, &key_id), "window": 0}),
            ),
            (
                ENCRYPT,
                json!({"parameters": params(access, &key_id), "plaintext": "AAAA"}),
            ),
        ];
        for (method, request) in calls {
            let answer = host.call(method, request).await;
            assert_refused(&answer, fields, &secrets);
        }
        let stored = host
            .ok("ValidateKeyAccessData", json!({"management": access}))
            .await;
        if fields.contains(&"secretIdFile")
            || fields.contains(&"wrappedSecretIdFile")
            || fields.contains(&"serviceAccountTokenPath")
            || access["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("http://"))
        {
            assert_eq!(stored["isValid"], false, "{access}: {stored}");
            assert!(
                stored["message"].as_str().unwrap().contains(fields[0]),
                "{stored}"
            );
        }
    }
    assert_eq!(
        recorder.connections(),
        0,
        "no connection reached the recorder: {:?}",
        recorder.requests()
    );
    assert!(recorder.requests().is_empty());

    // The key id cannot choose the Transit mount either.
    let other_mount = host
        .call(
            "GetKey",
            json!({"parameters": params(&plugin_credential(), "tenant-b/openkcm-x")}),
        )
        .await;
    assert_eq!(other_mount["code"], "InvalidArgument", "{other_mount}");
    assert!(
        other_mount["message"]
            .as_str()
            .unwrap()
            .contains("transitMount"),
        "{other_mount}"
    );
    // The key is still there, untouched by the refused DeleteKey calls.
    let key = host
        .ok(
            "GetKey",
            json!({"parameters": params(&plugin_credential(), &key_id)}),
        )
        .await;
    assert_eq!(key["status"], "ENABLED");

    // Control: a request bringing its own credential may use the recorder,
    // which then sees that credential, and never the plugin's.
    let tenant = json!({"address": recorder.https(), "caCertPem": recorder.ca_pem,
                        "roleId": "tenant-role", "secretId": TENANT_SECRET});
    let answer = host
        .call("GetKey", json!({"parameters": params(&tenant, &key_id)}))
        .await;
    assert_eq!(answer["code"], "InvalidArgument", "{answer}");
    assert_eq!(answer["message"], MSG_AUTH, "{answer}");
    assert!(!answer.to_string().contains(TENANT_SECRET), "{answer}");
    let requests = recorder.requests();
    assert!(!requests.is_empty(), "the recorder works");
    assert!(recorder.connections() >= 1);
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/v1/auth/approle/login"),
            "{request:?}"
        );
        assert!(request.text.contains(TENANT_SECRET), "{request:?}");
        assert!(!request.text.contains(&platform_secret), "{request:?}");
        assert!(!request.text.contains(&bao.mgmt.role_id), "{request:?}");
    }
    host.close().await.unwrap();
}

#[tokio::test]
async fn allowed_addresses_extend_where_the_plugins_credential_may_go() {
    let bao = Bao::start().await.unwrap();
    let recorder = Recorder::start().await;
    // A second name for the same OpenBao: localhost (in its certificate)
    // through a TCP proxy on 127.0.0.1.
    let node = &bao.cluster.nodes()[0];
    let proxy = TcpProxy::start(
        SocketAddr::from((node.ip, node.api_port)),
        ProxyOptions::default(),
    )
    .await
    .unwrap();
    let alias = format!("https://localhost:{}", proxy.addr.port());
    let yaml = format!("{}allowedAddresses: ['{alias}/']\n", bao.yaml_as(&bao.mgmt));
    let mut host = Host::start(&yaml, bao.dir.path()).await.unwrap();
    let key_id = create_key(&mut host, &json!({"address": alias})).await;
    assert!(
        proxy.bytes_sent() > 0,
        "the call went through the allowed address"
    );
    let key = host
        .ok(
            "GetKey",
            json!({"parameters": params(&plugin_credential(), &key_id)}),
        )
        .await;
    assert_eq!(key["status"], "ENABLED", "the same OpenBao");
    // Still nowhere else.
    let answer = host
        .call(
            "GetKey",
            json!({"parameters": params(&json!({"address": recorder.https()}), &key_id)}),
        )
        .await;
    assert_refused(&answer, &["address"], &[&bao.mgmt.secret_id()]);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("allowedAddresses"),
        "{answer}"
    );
    assert_eq!(recorder.connections(), 0);
    host.close().await.unwrap();
}

/// Live tokens whose policies include `policy`, by token accessor.
/// Creates an AES-256 key with access data `credential`; its id.
async fn create_key(host: &mut Host, credential: &Value) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let created = host
        .ok(
            "CreateKey",
            json!({"config": config(credential), "algorithm": "KEY_ALGORITHM_AES256",
                   "id": id, "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}),
        )
        .await;
    created["keyId"].as_str().unwrap().to_owned()
}

async fn live_tokens(bao: &Bao, policy: &str) -> usize {
    let (status, listed) = bao
        .cluster
        .request(
            0,
            Method::from_bytes(b"LIST").unwrap(),
            "auth/token/accessors",
            None,
        )
        .await
        .unwrap();
    assert!(status.is_success(), "{status}: {listed}");
    let mut count = 0;
    for accessor in listed["data"]["keys"].as_array().unwrap() {
        let (status, token) = bao
            .cluster
            .request(
                0,
                Method::POST,
                "auth/token/lookup-accessor",
                Some(json!({"accessor": accessor})),
            )
            .await
            .unwrap();
        if status.is_success()
            && token["data"]["policies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == policy)
        {
            count += 1;
        }
    }
    count
}

/// Waits (revocation of an evicted session runs in the background) until
/// `policy` has `expected` live tokens.
async fn wait_for_tokens(bao: &Bao, policy: &str, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live = live_tokens(bao, policy).await;
        if live == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{policy}: {live} live tokens, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn evicted_and_closed_sessions_revoke_their_tokens() {
    let bao = Bao::start().await.unwrap();
    let yaml = format!("{}maxCachedSessions: 1\n", bao.yaml_as(&bao.mgmt));
    let mut host = Host::start(&yaml, bao.dir.path()).await.unwrap();
    let mgmt_policy = Identity::KeystorePlugin.policy_name();
    let crypto_policy = Identity::KeystorePluginCrypto.policy_name();
    let key_id = create_key(&mut host, &plugin_credential()).await;
    wait_for_tokens(&bao, mgmt_policy, 1).await;
    assert_eq!(live_tokens(&bao, crypto_policy).await, 0);

    // A second identity does not fit: the first session is evicted and
    // its token revoked.
    let crypto = bao.crypto.own_credential();
    host.ok(
        ENCRYPT,
        json!({"parameters": params(&crypto, &key_id), "plaintext": "AAAA"}),
    )
    .await;
    wait_for_tokens(&bao, mgmt_policy, 0).await;
    assert_eq!(live_tokens(&bao, crypto_policy).await, 1);

    // And back: a fresh login for the first, the second revoked.
    host.ok(
        "GetKey",
        json!({"parameters": params(&plugin_credential(), &key_id)}),
    )
    .await;
    wait_for_tokens(&bao, crypto_policy, 0).await;
    assert_eq!(live_tokens(&bao, mgmt_policy).await, 1);

    // Closing the plugin (Deinit) revokes what is cached.
    host.close().await.unwrap();
    assert_eq!(live_tokens(&bao, mgmt_policy).await, 0);
}
