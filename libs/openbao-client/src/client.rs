//! Connection settings and the request plumbing every endpoint module uses.

use std::fmt;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Result};

/// A client token. Its `Debug` and `Display` never show the value.
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The raw value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// How often and how patiently idempotent calls are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total tries, including the first.
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// No retries: every call is tried once.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// When a failed call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// After any transient failure (reads).
    Idempotent,
    /// Only when the server provably did not act on it: a standby's 307,
    /// which is never followed (it would carry the token to whatever host
    /// the `Location` names). Writes and logins with a rebuildable body.
    IfNotApplied,
    /// Never (a consumed body, or a call whose repetition changes meaning).
    Never,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct ClientConfig {
    /// For example `https://openbao-0.openbao-internal.ns.svc:8200`.
    pub address: Url,
    /// Plain `http://` addresses are accepted: TLS is disabled, for a
    /// development server only. [`ClientConfig::new`] sets it when given an
    /// `http://` address (the caller chose plain HTTP); a client for an
    /// `https://` address then never moves to an `http://` one (see
    /// [`Client::with_address`] and [`crate::Leader::leader_url`]).
    pub allow_http: bool,
    /// PEM bundle of the CAs to trust; the system roots when `None`.
    pub ca_pem: Option<String>,
    /// Name to verify the server certificate against (and send as SNI) when
    /// it differs from the host in `address`, e.g. when dialling a pod IP.
    pub tls_server_name: Option<String>,
    /// PEM client certificate followed by its private key, for TLS client
    /// authentication (certificate login).
    pub client_identity_pem: Option<SecretString>,
    /// Limit for one whole call; streaming snapshot bodies are exempt and
    /// bounded by `read_timeout` instead.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Longest pause between two reads of a response body.
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
    /// Name resolution other than the system's, e.g. a test cluster's DNS.
    pub dns_resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("address", &self.address.as_str())
            .field("allow_http", &self.allow_http)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("tls_server_name", &self.tls_server_name)
            .field(
                "client_identity_pem",
                &self.client_identity_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ClientConfig {
    pub fn new(address: &str) -> Result<Self> {
        let address = Url::parse(address).map_err(|e| {
            Error::Config(format!(
                "address {address:?} is not a URL ({e}); use e.g. https://openbao:8200"
            ))
        })?;
        Ok(Self {
            allow_http: address.scheme() == "http",
            address,
            ca_pem: None,
            tls_server_name: None,
            client_identity_pem: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            dns_resolver: None,
        })
    }

    pub fn with_dns_resolver(mut self, resolver: Arc<dyn reqwest::dns::Resolve>) -> Self {
        self.dns_resolver = Some(resolver);
        self
    }

    pub fn with_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    pub fn with_tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into());
        self
    }

    pub fn with_client_identity_pem(mut self, pem: SecretString) -> Self {
        self.client_identity_pem = Some(pem);
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Accept (or refuse) plain `http://` addresses; see [`Self::allow_http`].
    pub fn with_allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }
}

/// Refuses an `http://` address unless plain HTTP is allowed: every call
/// may carry a token, which must not cross the network in plain text.
pub(crate) fn check_scheme(address: &Url, allow_http: bool, what: &str) -> Result<()> {
    match address.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => Err(Error::Config(format!(
            "{what} {} is http:// and a token would cross the network in plain text; use https:// (TLS), or allow plain HTTP explicitly for a development server without TLS",
            address.as_str()
        ))),
        scheme => Err(Error::Config(format!(
            "{what} scheme {scheme:?} is not supported; use https:// (or http:// for a development server without TLS)"
        ))),
    }
}

/// A connection to one OpenBao address, optionally carrying a token.
/// Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    token: Option<Token>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    config: ClientConfig,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.inner.config.address.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self> {
        check_scheme(&config.address, config.allow_http, "address")?;
        let mut base = config.address.clone();
        let mut builder = reqwest::Client::builder()
            // Never follow a redirect: reqwest would resend the X-Vault-Token
            // header to whatever host the Location names. A standby's 307 is
            // answered in `send_once` instead.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .use_preconfigured_tls(tls_config(&config)?);
        if let Some(resolver) = &config.dns_resolver {
            builder = builder.dns_resolver(resolver.clone());
        }
        if let Some(name) = &config.tls_server_name {
            // Dial the configured address but verify the certificate for `name`.
            let host = config.address.host_str().unwrap_or_default();
            let port = config.address.port_or_known_default().unwrap_or(8200);
            let socket = (host, port)
                .to_socket_addrs()
                .map_err(|e| Error::Config(format!("cannot resolve {host}: {e}")))?
                .next()
                .ok_or_else(|| Error::Config(format!("{host} has no address")))?;
            base.set_host(Some(name)).map_err(|e| {
                Error::Config(format!("tls_server_name {name:?} is not a host name: {e}"))
            })?;
            builder = builder.resolve(name, socket);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner { http, base, config }),
            token: None,
        })
    }

    /// The same connection, sending `token` with every call.
    pub fn with_token(&self, token: Token) -> Self {
        Self {
            inner: self.inner.clone(),
            token: Some(token),
        }
    }

    /// The same connection without a token (for logins and unauthenticated calls).
    pub fn without_token(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            token: None,
        }
    }

    /// The same settings and token, pointed at another node. The
    /// connection pool and TLS setup are shared (no trust store is read
    /// again), unless a fixed TLS server name ties the client to one address.
    pub fn with_address(&self, address: Url) -> Result<Self> {
        // A client for an https:// address never moves to plain HTTP unless
        // its configuration allows plain HTTP.
        check_scheme(&address, self.inner.config.allow_http, "address")?;
        let mut config = self.inner.config.clone();
        config.address = address;
        if config.tls_server_name.is_some() {
            let mut client = Self::new(config)?;
            client.token = self.token.clone();
            return Ok(client);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                base: config.address.clone(),
                config,
            }),
            token: self.token.clone(),
        })
    }

    pub fn address(&self) -> &Url {
        &self.inner.config.address
    }

    /// Whether this client may talk plain HTTP (see [`ClientConfig::allow_http`]).
    pub fn allows_http(&self) -> bool {
        self.inner.config.allow_http
    }

    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.inner
            .base
            .join(&format!("v1/{}", path.trim_start_matches('/')))
            .map_err(|e| Error::Config(format!("bad path {path:?}: {e}")))
    }

    /// A request with the token header; nothing is sent yet.
    pub(crate) fn request(&self, method: Method, path: &str) -> Result<reqwest::RequestBuilder> {
        let mut request = self.inner.http.request(method, self.url(path)?);
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token.expose());
        }
        Ok(request)
    }

    /// Sends a request built by `build` and returns the successful answer;
    /// sends it again as `replay` allows.
    pub(crate) async fn send(
        &self,
        path: &str,
        replay: Replay,
        mut build: impl FnMut() -> Result<reqwest::RequestBuilder>,
    ) -> Result<reqwest::Response> {
        let policy = &self.inner.config.retry;
        let attempts = match replay {
            Replay::Never => 1,
            Replay::Idempotent | Replay::IfNotApplied => policy.attempts.max(1),
        };
        let mut attempt = 1;
        loop {
            let (error, not_applied) = match self.send_once(path, build()?).await {
                Ok(response) => return Ok(response),
                Err(failed) => failed,
            };
            let again = attempt < attempts
                && match replay {
                    Replay::Idempotent => error.is_transient(),
                    Replay::IfNotApplied => not_applied,
                    Replay::Never => false,
                };
            if !again {
                return Err(error);
            }
            tracing::debug!(path, attempt, error = %error, "retrying OpenBao call");
            tokio::time::sleep(policy.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// One try. A failure comes with whether the server provably did not
    /// act on the request (a redirect), so that even a write may be sent again.
    async fn send_once(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, (Error, bool)> {
        let response = request.send().await.map_err(|source| {
            let error = Error::Transport {
                path: path.to_owned(),
                source: source.without_url(),
            };
            (error, false)
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            // A standby redirects what it cannot forward (a streamed
            // snapshot-force body, a call during an election). The redirect
            // is never followed: the token stays with the address this
            // client was made for. The caller finds the active node itself.
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("the active node")
                .to_owned();
            let error = Error::Standby {
                path: path.to_owned(),
                message: format!(
                    "answered {} to {location} (not followed); send this call to the active node",
                    status.as_u16()
                ),
            };
            return Err((error, true));
        }
        let body = response.bytes().await.unwrap_or_default();
        Err((Error::from_response(path, status, &body), false))
    }

    /// Calls `path` and decodes the JSON answer. `None` for 204.
    pub async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>> {
        let idempotent = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
            || method.as_str() == "LIST";
        let replay = if idempotent {
            Replay::Idempotent
        } else {
            Replay::IfNotApplied
        };
        let timeout = self.inner.config.timeout;
        let response = self
            .send(path, replay, || {
                let mut request = self.request(method.clone(), path)?.timeout(timeout);
                if let Some(body) = body {
                    request = request.json(body);
                }
                Ok(request)
            })
            .await?;
        decode(path, response).await
    }

    /// Reads `path` (GET); `None` when the path holds nothing.
    pub async fn read(&self, path: &str) -> Result<Option<serde_json::Value>> {
        match self.call_json(Method::GET, path, None).await {
            Err(Error::NotFound { .. }) => Ok(None),
            other => other,
        }
    }

    /// Writes `body` to `path` (POST); the answer, if any.
    pub async fn write(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>> {
        self.call_json(Method::POST, path, Some(body)).await
    }

    /// Deletes `path`.
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.call_json::<serde_json::Value>(Method::DELETE, path, None)
            .await
            .map(drop)
    }

    /// Lists keys under `path` (LIST); empty when there are none.
    pub async fn list(&self, path: &str) -> Result<Vec<String>> {
        let list = Method::from_bytes(b"LIST").map_err(|e| Error::Config(e.to_string()))?;
        match self.call_json::<serde_json::Value>(list, path, None).await {
            Ok(Some(value)) => {
                Ok(serde_json::from_value(value["data"]["keys"].clone()).unwrap_or_default())
            }
            Ok(None) | Err(Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn timeout(&self) -> std::time::Duration {
        self.inner.config.timeout
    }
}

pub(crate) async fn decode<T: DeserializeOwned>(
    path: &str,
    response: reqwest::Response,
) -> Result<Option<T>> {
    if response.status() == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    let bytes = response.bytes().await.map_err(|source| Error::Transport {
        path: path.to_owned(),
        source: source.without_url(),
    })?;
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Decode {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// rustls with the ring provider, the configured CAs (or system roots) and
/// an optional client identity.
fn tls_config(config: &ClientConfig) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert =
                    cert.map_err(|e| Error::Config(format!("CA bundle is not valid PEM: {e}")))?;
                roots.add(cert).map_err(|e| {
                    Error::Config(format!("CA bundle holds an unusable certificate: {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::Config("the CA bundle holds no certificate; pass the PEM of the CA that signed OpenBao's certificate".into()));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    let tls = match &config.client_identity_pem {
        Some(identity) => {
            let pem = identity.expose_secret().as_bytes();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Config(format!("client certificate is not valid PEM: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(pem).map_err(|_| {
                Error::Config("client identity has no PEM private key after the certificate".into())
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                Error::Config(format!("client certificate and key do not match: {e}"))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1), Duration::from_millis(200));
        assert_eq!(policy.backoff(2), Duration::from_millis(400));
        assert_eq!(policy.backoff(9), Duration::from_secs(2));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let client = Client::new(ClientConfig::new("http://127.0.0.1:8200").unwrap())
            .unwrap()
            .with_token(Token::new("s.supersecretvalue"));
        let text = format!("{client:?} {:?}", client.token());
        assert!(!text.contains("supersecret"), "{text}");
    }

    #[test]
    fn bad_configuration_says_what_to_do() {
        let err = ClientConfig::new("not a url").unwrap_err().to_string();
        assert!(err.contains("https://"), "{err}");
        let mut config = ClientConfig::new("https://127.0.0.1:8200").unwrap();
        config.ca_pem = Some("garbage".into());
        let err = Client::new(config).unwrap_err().to_string();
        assert!(err.contains("CA bundle"), "{err}");
    }

    #[test]
    fn plain_http_is_only_used_when_chosen() {
        // An http:// address is an explicit choice of plain HTTP.
        let http = ClientConfig::new("http://127.0.0.1:8200").unwrap();
        assert!(http.allow_http);
        assert!(Client::new(http.clone()).unwrap().allows_http());
        let err = Client::new(http.with_allow_http(false))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("https://") && err.contains("plain text"),
            "{err}"
        );
        // An https:// client never moves to plain HTTP.
        let https = Client::new(ClientConfig::new("https://127.0.0.1:8200").unwrap())
            .unwrap()
            .with_token(Token::new("s.supersecretvalue"));
        assert!(!https.allows_http());
        let err = https
            .with_address("http://10.0.0.2:8200".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://10.0.0.2:8200"), "{err}");
        assert!(!err.contains("supersecret"), "{err}");
        assert!(
            https
                .with_address("https://10.0.0.2:8200".parse().unwrap())
                .is_ok()
        );
        let err = Client::new(ClientConfig::new("ftp://x").unwrap()).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn server_name_override_keeps_the_dialled_address() {
        let config = ClientConfig::new("https://127.0.0.1:8200")
            .unwrap()
            .with_tls_server_name("openbao-0.openbao.svc");
        let client = Client::new(config).unwrap();
        assert_eq!(
            client.url("sys/health").unwrap().as_str(),
            "https://openbao-0.openbao.svc:8200/v1/sys/health"
        );
    }
}
