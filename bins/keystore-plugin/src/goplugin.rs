//! The server side of HashiCorp go-plugin's gRPC protocol (v1.8), as
//! OpenKCM's plugin-sdk catalog drives it:
//!
//! 1. the magic cookie (`<Type>=<Type>` in the environment) and
//!    `PLUGIN_PROTOCOL_VERSIONS` are checked by the plugin;
//! 2. the plugin listens on a unix socket and prints
//!    `1|1|unix|<path>|grpc|<base64 DER of its certificate>` on stdout;
//! 3. AutoMTLS: the plugin serves TLS with a fresh self-signed certificate
//!    for `localhost`, requires the host's certificate from
//!    `PLUGIN_CLIENT_CERT` byte for byte, and negotiates ALPN `h2`;
//! 4. it serves go-plugin's internal services: health (`plugin`), the
//!    broker stream, the controller's `Shutdown`, and stdio.
//!
//! The host's certificate is ECDSA P-521; rustls' ring provider cannot
//! verify P-521 signatures, so the verifier adds one algorithm implemented
//! with RustCrypto's `p521`.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use base64::Engine;
use futures_util::Stream;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, PrivateKeyDer, PrivatePkcs8KeyDer,
    SignatureVerificationAlgorithm, UnixTime, alg_id,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::grpc::health::v1 as health;
use crate::proto::plugin as gp;

/// go-plugin's core protocol version (first handshake field).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The application protocol version the plugin-sdk catalog asks for.
pub const APP_PROTOCOL_VERSION: u32 = 1;
/// The service name go-plugin's health ping asks about.
pub const HEALTH_SERVICE: &str = "plugin";
/// Environment variable that lets the plugin serve gRPC without TLS when
/// the host sets no `PLUGIN_CLIENT_CERT`. Only `true` enables it. The
/// plugin-sdk catalog always sets the certificate (AutoMTLS), so only a
/// host of one's own, e.g. a debugger, needs this.
pub const ALLOW_PLAINTEXT_ENV: &str = "OPENBAO_KEYSTORE_ALLOW_PLAINTEXT_GRPC";
/// Mode of the plugin's unix socket: only the user running the plugin (and
/// its host, the same user) may connect.
pub const SOCKET_MODE: u32 = 0o600;
/// Mode of the private folder the socket is created in.
pub const SOCKET_DIR_MODE: u32 = 0o700;
/// Name of the socket inside its private folder.
const SOCKET_NAME: &str = "plugin.sock";

/// Why the process refuses to serve.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "This binary is a plugin. These are not meant to be executed directly.\n\
         Please execute the program that consumes these plugins, which will\n\
         load any plugins automatically.\n\
         (OpenKCM starts it as a plugin of type {cookie}: the environment variable \
         {cookie}={cookie} is missing. See --help.)"
    )]
    NotAPluginHost { cookie: String },
    #[error(
        "the host speaks plugin protocol versions {offered:?}, this plugin speaks {APP_PROTOCOL_VERSION}; \
         use a host built on plugin-sdk v0.14 or later"
    )]
    ProtocolVersion { offered: String },
    #[error("PLUGIN_CLIENT_CERT is not a PEM certificate: {0}")]
    ClientCert(String),
    #[error(
        "PLUGIN_CLIENT_CERT is not set, so the plugin would serve gRPC without TLS and without \
         knowing its host, to anyone who can reach its socket; start it from a plugin-sdk host \
         (which always sets it), or set {ALLOW_PLAINTEXT_ENV}=true to accept plaintext gRPC on \
         purpose (for a host of your own, e.g. when debugging)"
    )]
    PlaintextRefused,
    #[error(
        "{ALLOW_PLAINTEXT_ENV}={value:?} is not understood; set it to true or false, or unset it"
    )]
    PlaintextSetting { value: String },
    #[error("cannot create the plugin's TLS certificate: {0}")]
    ServerCert(String),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot create the socket folder {path} (mode 0700) in PLUGIN_UNIX_SOCKET_DIR or the temp dir: {source}"
    )]
    SocketDir {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot restrict the socket {path} to mode 0600: {source}")]
    SocketMode {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What the host told the plugin through its environment.
#[derive(Debug, Clone)]
pub struct HostEnv {
    /// The host's AutoMTLS certificate; `None` means plaintext.
    pub client_cert: Option<CertificateDer<'static>>,
    /// Folder for the unix socket.
    pub socket_dir: PathBuf,
}

impl HostEnv {
    /// Checks the magic cookie and protocol version and reads the host's
    /// certificate. `lookup` is the environment (`std::env::var`).
    pub fn from_env(
        cookie: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LaunchError> {
        if lookup(cookie).as_deref() != Some(cookie) {
            return Err(LaunchError::NotAPluginHost {
                cookie: cookie.to_owned(),
            });
        }
        if let Some(offered) = lookup("PLUGIN_PROTOCOL_VERSIONS") {
            let speaks = offered
                .split(',')
                .any(|v| v.trim() == APP_PROTOCOL_VERSION.to_string());
            if !speaks {
                return Err(LaunchError::ProtocolVersion { offered });
            }
        }
        let client_cert = match lookup("PLUGIN_CLIENT_CERT").filter(|s| !s.trim().is_empty()) {
            Some(pem) => Some(parse_cert_pem(&pem)?),
            None => None,
        };
        let plaintext_allowed = match lookup(ALLOW_PLAINTEXT_ENV).as_deref().map(str::trim) {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(LaunchError::PlaintextSetting {
                    value: other.to_owned(),
                });
            }
        };
        if client_cert.is_none() && !plaintext_allowed {
            return Err(LaunchError::PlaintextRefused);
        }
        let socket_dir = lookup("PLUGIN_UNIX_SOCKET_DIR")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        Ok(Self {
            client_cert,
            socket_dir,
        })
    }
}

fn parse_cert_pem(pem: &str) -> Result<CertificateDer<'static>, LaunchError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| LaunchError::ClientCert(e.to_string()))
}

/// The handshake line (without the newline).
pub fn handshake_line(socket: &Path, server_cert: Option<&CertificateDer<'_>>) -> String {
    let cert = server_cert
        .map(|c| base64::engine::general_purpose::STANDARD_NO_PAD.encode(c.as_ref()))
        .unwrap_or_default();
    format!(
        "{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|unix|{}|grpc|{cert}",
        socket.display()
    )
}

/// A fresh self-signed certificate for `localhost` (P-256), shaped like
/// go-plugin's own: CA flag, server and client auth.
pub fn server_identity() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), LaunchError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| LaunchError::ServerCert(e.to_string());
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "openbao-operator keystore plugin");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(30)).into();
    params.not_after = (now + std::time::Duration::from_secs(30 * 365 * 86_400)).into();
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

/// ECDSA P-521 with SHA-512, which the ring provider lacks.
#[derive(Debug)]
struct EcdsaP521Sha512;

impl SignatureVerificationAlgorithm for EcdsaP521Sha512 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        use p521::ecdsa::signature::Verifier;
        let key =
            p521::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let signature =
            p521::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P521
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA512
    }
}

static P521: EcdsaP521Sha512 = EcdsaP521Sha512;
static P521_ONLY: [&dyn SignatureVerificationAlgorithm; 1] = [&P521];

/// ring's algorithms plus ECDSA P-521/SHA-512.
fn supported_algorithms() -> WebPkiSupportedAlgorithms {
    static ALGS: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    *ALGS.get_or_init(|| {
        let ring = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let mut all: Vec<&'static dyn SignatureVerificationAlgorithm> = ring.all.to_vec();
        all.push(&P521);
        let mut mapping = ring.mapping.to_vec();
        mapping.push((SignatureScheme::ECDSA_NISTP521_SHA512, &P521_ONLY[..]));
        WebPkiSupportedAlgorithms {
            all: Vec::leak(all),
            mapping: Vec::leak(mapping),
        }
    })
}

/// Accepts exactly one client certificate: the host's.
#[derive(Debug)]
pub struct PinnedClientCert {
    pinned: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClientCert {
    pub fn new(pinned: CertificateDer<'static>) -> Self {
        Self {
            pinned,
            algorithms: supported_algorithms(),
        }
    }
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls server configuration of AutoMTLS.
pub fn tls_config(
    client_cert: CertificateDer<'static>,
    server_cert: CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, LaunchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LaunchError::ServerCert(e.to_string()))?
        .with_client_cert_verifier(Arc::new(PinnedClientCert::new(client_cert)))
        .with_single_cert(vec![server_cert], server_key)
        .map_err(|e| LaunchError::ServerCert(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A connection from the host: TLS (AutoMTLS) or plaintext.
#[derive(Debug)]
pub enum Conn {
    Tls(Box<tokio_rustls::server::TlsStream<UnixStream>>),
    Plain(UnixStream),
}

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Tls(s) => s.is_write_vectored(),
            Conn::Plain(s) => s.is_write_vectored(),
        }
    }
}

/// The listening socket, its handshake line and the stream of accepted
/// (and TLS-authenticated) connections.
pub struct Listener {
    pub socket: PathBuf,
    pub handshake: String,
    listener: UnixListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("socket", &self.socket)
            .field("mtls", &self.acceptor.is_some())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Binds a fresh socket and prepares AutoMTLS. The socket is created in
    /// a new folder of mode 0700 inside `env.socket_dir` (which is often the
    /// shared temp dir), so no other user can reach it even in the moment
    /// before it is narrowed to mode 0600.
    pub fn bind(env: &HostEnv) -> Result<Self, LaunchError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let folder = env.socket_dir.join(format!(
            "openbao-keystore-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        // `create` (not `create_all`) fails if the name exists, so a folder
        // planted by someone else is never used.
        std::fs::DirBuilder::new()
            .mode(SOCKET_DIR_MODE)
            .create(&folder)
            .map_err(|source| LaunchError::SocketDir {
                path: folder.display().to_string(),
                source,
            })?;
        let socket = folder.join(SOCKET_NAME);
        let listener = UnixListener::bind(&socket).map_err(|source| LaunchError::Listen {
            path: socket.display().to_string(),
            source,
        })?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
            |source| LaunchError::SocketMode {
                path: socket.display().to_string(),
                source,
            },
        )?;
        let (acceptor, server_cert) = match &env.client_cert {
            Some(client_cert) => {
                let (cert, key) = server_identity()?;
                let config = tls_config(client_cert.clone(), cert.clone(), key)?;
                (
                    Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                    Some(cert),
                )
            }
            None => (None, None),
        };
        let handshake = handshake_line(&socket, server_cert.as_ref());
        Ok(Self {
            socket,
            handshake,
            listener,
            acceptor,
        })
    }

    /// Accepted connections. TLS handshakes run concurrently; failed ones are
    /// logged and dropped so that one bad client cannot stop the server.
    pub fn incoming(self) -> impl Stream<Item = Result<Conn, io::Error>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<Conn>(16);
        let Listener {
            listener, acceptor, ..
        } = self;
        tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a host connection failed");
                        continue;
                    }
                };
                let tx = tx.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let conn = match acceptor {
                        None => Conn::Plain(stream),
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => Conn::Tls(Box::new(tls)),
                            Err(error) => {
                                tracing::warn!(%error, "TLS handshake with the host failed; is the connection from the host that started this plugin?");
                                return;
                            }
                        },
                    };
                    let _ = tx.send(conn).await;
                });
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|conn| (Ok(conn), rx))
        })
    }
}

/// Removes the socket and its private folder (made by [`Listener::bind`]).
pub fn remove_socket(socket: &Path) {
    let _ = std::fs::remove_file(socket);
    if socket.file_name().is_some_and(|name| name == SOCKET_NAME)
        && let Some(folder) = socket.parent()
    {
        // Only an empty folder is removed: nothing else of ours lives there.
        let _ = std::fs::remove_dir(folder);
    }
}

/// A one-shot, cloneable shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`Shutdown::trigger`] was called.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|triggered| *triggered).await;
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream that yields `first` (if any) and then stays open until shutdown.
fn open_until_shutdown<T: Send + 'static>(first: Option<T>, shutdown: Shutdown) -> BoxStream<T> {
    let head = futures_util::stream::iter(first.map(Ok));
    let tail = futures_util::stream::unfold(shutdown, |shutdown| async move {
        shutdown.wait().await;
        None::<(Result<T, Status>, Shutdown)>
    });
    Box::pin(futures_util::StreamExt::chain(head, tail))
}

/// go-plugin's internal services.
#[derive(Debug, Clone)]
pub struct Internal {
    pub shutdown: Shutdown,
}

#[tonic::async_trait]
impl gp::grpc_broker_server::GrpcBroker for Internal {
    type StartStreamStream = BoxStream<gp::ConnInfo>;

    async fn start_stream(
        &self,
        request: Request<Streaming<gp::ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        // The host announces its host-services listener here; this plugin
        // uses no host services, so the announcements are only drained.
        let mut inbound = request.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(info)) = inbound.message().await {
                tracing::debug!(
                    service_id = info.service_id,
                    network = %info.network,
                    "host broker offered a connection"
                );
            }
        });
        Ok(Response::new(open_until_shutdown(
            None,
            self.shutdown.clone(),
        )))
    }
}

#[tonic::async_trait]
impl gp::grpc_controller_server::GrpcController for Internal {
    async fn shutdown(&self, _: Request<gp::Empty>) -> Result<Response<gp::Empty>, Status> {
        tracing::info!("host asked the plugin to shut down");
        self.shutdown.trigger();
        Ok(Response::new(gp::Empty {}))
    }
}

#[tonic::async_trait]
impl gp::grpc_stdio_server::GrpcStdio for Internal {
    type StreamStdioStream = BoxStream<gp::StdioData>;

    async fn stream_stdio(
        &self,
        _: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        // Logs go to stderr directly; nothing is forwarded over this stream.
        Ok(Response::new(open_until_shutdown(
            None,
            self.shutdown.clone(),
        )))
    }
}

/// Health of the plugin process: SERVING for `plugin` and the empty name.
pub fn health_status(service: &str) -> Option<health::health_check_response::ServingStatus> {
    (service.is_empty() || service == HEALTH_SERVICE)
        .then_some(health::health_check_response::ServingStatus::Serving)
}

#[tonic::async_trait]
impl health::health_server::Health for Internal {
    type WatchStream = BoxStream<health::HealthCheckResponse>;

    async fn check(
        &self,
        request: Request<health::HealthCheckRequest>,
    ) -> Result<Response<health::HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        match health_status(&service) {
            Some(status) => Ok(Response::new(health::HealthCheckResponse {
                status: status.into(),
            })),
            None => Err(Status::not_found(format!("unknown service {service:?}"))),
        }
    }

    async fn watch(
        &self,
        request: Request<health::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let status = health_status(&request.into_inner().service)
            .unwrap_or(health::health_check_response::ServingStatus::ServiceUnknown);
        Ok(Response::new(open_until_shutdown(
            Some(health::HealthCheckResponse {
                status: status.into(),
            }),
            self.shutdown.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const COOKIE: &str = "KeystoreInstanceKeyOperation";

    #[test]
    fn missing_or_wrong_cookie_is_refused_with_go_plugins_words() {
        let err = HostEnv::from_env(COOKIE, env(&[])).unwrap_err().to_string();
        assert!(err.starts_with("This binary is a plugin."), "{err}");
        assert!(err.contains("KeystoreInstanceKeyOperation=KeystoreInstanceKeyOperation"));
        assert!(HostEnv::from_env(COOKIE, env(&[(COOKIE, "other")])).is_err());
    }

    #[test]
    fn protocol_versions_must_include_one() {
        let err = HostEnv::from_env(
            COOKIE,
            env(&[(COOKIE, COOKIE), ("PLUGIN_PROTOCOL_VERSIONS", "2,3")]),
        )
        .unwrap_err();
        assert!(matches!(err, LaunchError::ProtocolVersion { .. }));
        let ok = HostEnv::from_env(
            COOKIE,
            env(&[
                (COOKIE, COOKIE),
                ("PLUGIN_PROTOCOL_VERSIONS", "2,1"),
                ("PLUGIN_UNIX_SOCKET_DIR", "/run/x"),
                (ALLOW_PLAINTEXT_ENV, "true"),
            ]),
        )
        .unwrap();
        assert!(ok.client_cert.is_none());
        assert_eq!(ok.socket_dir, PathBuf::from("/run/x"));
    }

    #[test]
    fn plaintext_grpc_needs_an_explicit_opt_in() {
        let err = HostEnv::from_env(COOKIE, env(&[(COOKIE, COOKIE)])).unwrap_err();
        assert!(matches!(err, LaunchError::PlaintextRefused));
        let text = err.to_string();
        assert!(
            text.contains("PLUGIN_CLIENT_CERT") && text.contains(ALLOW_PLAINTEXT_ENV),
            "names the cause and the fix: {text}"
        );
        for refused in ["", "false", " false "] {
            assert!(
                matches!(
                    HostEnv::from_env(
                        COOKIE,
                        env(&[(COOKIE, COOKIE), (ALLOW_PLAINTEXT_ENV, refused)])
                    ),
                    Err(LaunchError::PlaintextRefused)
                ),
                "{refused:?}"
            );
        }
        assert!(matches!(
            HostEnv::from_env(
                COOKIE,
                env(&[(COOKIE, COOKIE), (ALLOW_PLAINTEXT_ENV, "yes")])
            ),
            Err(LaunchError::PlaintextSetting { .. })
        ));
        let (host, _) = server_identity().unwrap();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(host.as_ref())
        );
        let with_cert = HostEnv::from_env(
            COOKIE,
            env(&[(COOKIE, COOKIE), ("PLUGIN_CLIENT_CERT", &pem)]),
        )
        .unwrap();
        assert_eq!(with_cert.client_cert.unwrap().as_ref(), host.as_ref());
    }

    #[tokio::test]
    async fn the_socket_is_private_to_the_plugins_user() {
        use std::os::unix::fs::PermissionsExt;
        let shared = tempfile::tempdir().unwrap();
        let env = HostEnv {
            client_cert: None,
            socket_dir: shared.path().to_owned(),
        };
        let listener = Listener::bind(&env).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(&listener.socket),
            SOCKET_MODE,
            "{:o}",
            mode(&listener.socket)
        );
        let folder = listener.socket.parent().unwrap().to_owned();
        assert_eq!(mode(&folder), SOCKET_DIR_MODE);
        assert_eq!(folder.parent().unwrap(), shared.path());
        assert!(
            listener
                .handshake
                .contains(&*listener.socket.to_string_lossy())
        );
        let socket = listener.socket.clone();
        drop(listener);
        remove_socket(&socket);
        assert!(!folder.exists(), "the socket and its folder are removed");
    }

    #[test]
    fn handshake_line_has_raw_base64_der() {
        let (cert, _) = server_identity().unwrap();
        let line = handshake_line(Path::new("/tmp/p.sock"), Some(&cert));
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields[..5], ["1", "1", "unix", "/tmp/p.sock", "grpc"]);
        assert!(!fields[5].ends_with('='));
        let der = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(fields[5])
            .unwrap();
        assert_eq!(der, cert.as_ref());
        assert_eq!(handshake_line(Path::new("/s"), None), "1|1|unix|/s|grpc|");
    }

    #[test]
    fn verifier_pins_the_host_certificate_and_offers_p521() {
        let (host, _) = server_identity().unwrap();
        let (other, _) = server_identity().unwrap();
        let verifier = PinnedClientCert::new(host.clone());
        let now = UnixTime::now();
        assert!(verifier.verify_client_cert(&host, &[], now).is_ok());
        assert!(verifier.verify_client_cert(&other, &[], now).is_err());
        assert!(
            verifier
                .supported_verify_schemes()
                .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
        );
        assert!(verifier.client_auth_mandatory());
    }

    #[test]
    fn p521_signatures_verify_and_forgeries_do_not() {
        use p521::ecdsa::signature::Signer;
        let mut bytes = p521::FieldBytes::default();
        bytes[65] = 7;
        let signing = p521::ecdsa::SigningKey::from_bytes(&bytes).unwrap();
        let verifying = p521::ecdsa::VerifyingKey::from(&signing);
        let signature: p521::ecdsa::Signature = signing.sign(b"hello");
        let public = verifying.to_encoded_point(false);
        let der = signature.to_der();
        assert!(
            P521.verify_signature(public.as_bytes(), b"hello", der.as_bytes())
                .is_ok()
        );
        assert!(
            P521.verify_signature(public.as_bytes(), b"hellO", der.as_bytes())
                .is_err()
        );
    }

    #[test]
    fn health_answers_for_plugin_only() {
        assert!(health_status("plugin").is_some());
        assert!(health_status("").is_some());
        assert!(health_status("other").is_none());
    }
}
