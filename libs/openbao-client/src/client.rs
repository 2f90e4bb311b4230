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

/// Where and how to connect.
#[derive(Clone)]
pub struct ClientConfig {
    /// For example `https://openbao-0.openbao-internal.ns.svc:8200`.
    pub address: Url,
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
        let scheme = config.address.scheme();
        if scheme != "https" && scheme != "http" {
            return Err(Error::Config(format!(
                "address scheme {scheme:?} is not supported; use https:// (or http:// for a test server)"
            )));
        }
        let mut base = config.address.clone();
        let mut builder = reqwest::Client::builder()
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

    /// The same settings and token, pointed at another node.
    pub fn with_address(&self, address: Url) -> Result<Self> {
        let mut config = self.inner.config.clone();
        config.address = address;
        let mut client = Self::new(config)?;
        client.token = self.token.clone();
        Ok(client)
    }

    pub fn address(&self) -> &Url {
        &self.inner.config.address
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
    /// retries transient failures when `idempotent`.
    pub(crate) async fn send(
        &self,
        path: &str,
        idempotent: bool,
        mut build: impl FnMut() -> Result<reqwest::RequestBuilder>,
    ) -> Result<reqwest::Response> {
        let policy = &self.inner.config.retry;
        let attempts = if idempotent {
            policy.attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let result = self.send_once(path, build()?).await;
            match result {
                Err(e) if attempt < attempts && e.is_transient() => {
                    tracing::debug!(path, attempt, error = %e, "retrying OpenBao call");
                    tokio::time::sleep(policy.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|source| Error::Transport {
            path: path.to_owned(),
            source: source.without_url(),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::TEMPORARY_REDIRECT {
            // A standby redirects what it cannot forward (e.g. a streamed
            // snapshot-force body, which cannot be replayed).
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("the active node")
                .to_owned();
            return Err(Error::Standby {
                path: path.to_owned(),
                message: format!("redirected to {location}; send this call to the active node"),
            });
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(Error::from_response(path, status, &body))
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
        let timeout = self.inner.config.timeout;
        let response = self
            .send(path, idempotent, || {
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
