//! The plugin process: checks that a plugin host started it, prints the
//! go-plugin handshake, and serves gRPC over AutoMTLS until the host asks
//! it to stop.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use keystore_plugin::goplugin::{HostEnv, Internal, Listener, Shutdown};
use keystore_plugin::keystore::Keystore;
use keystore_plugin::proto::grpc::health::v1::health_server::HealthServer;
use keystore_plugin::proto::openbao::keystore::v1::l1_key_crypto_server::L1KeyCryptoServer;
use keystore_plugin::proto::plugin::grpc_broker_server::GrpcBrokerServer;
use keystore_plugin::proto::plugin::grpc_controller_server::GrpcControllerServer;
use keystore_plugin::proto::plugin::grpc_stdio_server::GrpcStdioServer;
use keystore_plugin::proto::plugin::keystore::operations::v1::keystore_instance_key_operation_server::KeystoreInstanceKeyOperationServer;
use keystore_plugin::proto::service::common::config::v1::config_server::ConfigServer;
use keystore_plugin::proto::service::init::v1::bootstrap_server::BootstrapServer;
use keystore_plugin::service::Plugin;
use keystore_plugin::{PLUGIN_TYPE, hclog};

/// OpenKCM keystore plugin backed by OpenBao Transit.
///
/// This binary is not run by hand: OpenKCM's CMK (plugin-sdk catalog, on
/// HashiCorp go-plugin) starts it as a plugin of type
/// KeystoreInstanceKeyOperation, for example with
///
///   plugins:
///     - name: OPENBAO
///       type: KeystoreInstanceKeyOperation
///       path: /usr/local/bin/keystore-plugin
///       yamlConfiguration: |
///         address: https://openbao.example:8200
///         tls: {caCertFile: /etc/openkcm/openbao-ca.pem}
///
/// The host sets KeystoreInstanceKeyOperation=KeystoreInstanceKeyOperation
/// and PLUGIN_CLIENT_CERT; the plugin prints the handshake line on stdout,
/// serves gRPC over mutual TLS on a unix socket (mode 0600, in a private
/// folder), and logs hclog JSON on stderr (filter: OPENBAO_KEYSTORE_LOG,
/// default info). Without PLUGIN_CLIENT_CERT it refuses to start, unless
/// OPENBAO_KEYSTORE_ALLOW_PLAINTEXT_GRPC=true accepts plaintext gRPC.
///
/// It creates, reads, enables, disables, deletes and imports customer master
/// keys in OpenBao Transit, and (extension service
/// openbao.keystore.v1.L1KeyCrypto) wraps, unwraps and re-wraps L2 key
/// material there, so key material never leaves OpenBao. It logs in with
/// the credential a request's access data carries (certificate auth, what
/// CMK sends, or AppRole), or with its own AppRole or Kubernetes credential
/// from the yamlConfiguration, which it sends only to the configured
/// addresses. See bins/keystore-plugin/README.md.
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {}

fn main() -> ExitCode {
    let _args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = match HostEnv::from_env(PLUGIN_TYPE, |k| std::env::var(k).ok()) {
        Ok(env) => env,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    hclog::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "the plugin stopped");
            ExitCode::from(1)
        }
    }
}

async fn run(env: HostEnv) -> anyhow::Result<()> {
    let listener = Listener::bind(&env)?;
    let socket = listener.socket.clone();
    {
        // The handshake must be the first line on stdout, before any call
        // to OpenBao.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", listener.handshake)?;
        stdout.flush()?;
    }
    tracing::info!(socket = %socket.display(), mtls = env.client_cert.is_some(), "serving");
    let shutdown = Shutdown::new();
    watch_signals(shutdown.clone())?;
    let internal = Internal {
        shutdown: shutdown.clone(),
    };
    let plugin = Plugin {
        keystore: Arc::new(Keystore::default()),
        shutdown: shutdown.clone(),
    };
    let server = tonic::transport::Server::builder()
        .add_service(HealthServer::new(internal.clone()))
        .add_service(GrpcBrokerServer::new(internal.clone()))
        .add_service(GrpcControllerServer::new(internal.clone()))
        .add_service(GrpcStdioServer::new(internal))
        .add_service(BootstrapServer::new(plugin.clone()))
        .add_service(ConfigServer::new(plugin.clone()))
        .add_service(KeystoreInstanceKeyOperationServer::new(plugin.clone()))
        .add_service(L1KeyCryptoServer::new(plugin))
        .serve_with_incoming_shutdown(listener.incoming(), {
            let shutdown = shutdown.clone();
            async move { shutdown.wait().await }
        });
    // After Shutdown, in-flight calls get a moment to finish; the host
    // kills the process 2 s after asking anyway.
    let grace = async {
        shutdown.wait().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    };
    let result = tokio::select! {
        result = server => result.map_err(anyhow::Error::from),
        () = grace => Ok(()),
    };
    keystore_plugin::goplugin::remove_socket(&socket);
    tracing::info!("stopped");
    result
}

/// SIGINT is ignored (a Ctrl-C to the host's process group must not kill
/// the plugin before the host shuts it down); SIGTERM stops it.
fn watch_signals(shutdown: Shutdown) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => tracing::debug!("ignoring SIGINT; the host stops this plugin"),
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM received; stopping");
                    shutdown.trigger();
                    return;
                }
            }
        }
    });
    Ok(())
}
