//! The operator Deployment: reconciles `OpenBaoCluster` objects into
//! StatefulSets, Services, Secrets and status.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use controller::context::{Context, Settings};
use controller::metrics::Metrics;
use controller::openbao::{Connector, Credentials};
use controller::serve::{Probes, router, serve};
use controller::stores::Scope;
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};

/// OpenBao operator controller.
///
/// Watches OpenBaoCluster objects and turns each into a running, initialized,
/// unsealed, TLS-protected OpenBao Raft cluster: it renders the StatefulSet,
/// Services, configuration and Secrets, bootstraps the cluster (self-init, so
/// no root token is stored), rolls every pod restart through one
/// health-checked gate, and writes conditions and Events that say what is
/// wrong and what to do. It logs in to OpenBao with its own JWT role, using
/// a short-lived token of its ServiceAccount minted for each cluster alone.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Namespace the operator runs in (the subject of its JWT role, and
    /// where its leader-election Lease lives).
    #[arg(long, env = "POD_NAMESPACE", default_value = "openbao-operator-system")]
    namespace: String,
    /// The controller's own ServiceAccount (in --namespace). It mints a
    /// ten-minute token of it for each cluster (TokenRequest API), with an
    /// audience naming that cluster, and logs in to OpenBao with it.
    #[arg(long, env = "POD_SERVICE_ACCOUNT", default_value = controller::context::DEFAULT_SERVICE_ACCOUNT)]
    service_account: String,
    /// The legacy projected ServiceAccount token (audience openbao-internal),
    /// used only to move a cluster bootstrapped by an earlier release to
    /// its per-cluster audience; re-read at every use.
    #[arg(long, default_value = "/var/run/secrets/openbao-internal/token")]
    openbao_token_file: PathBuf,
    /// CA of the Kubernetes API server; OpenBao trusts it for OIDC discovery
    /// of the ServiceAccount issuer.
    #[arg(
        long,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    kube_ca_file: PathBuf,
    /// The ServiceAccount token issuer; discovered from the API server's
    /// /.well-known/openid-configuration when unset.
    #[arg(long)]
    service_account_issuer: Option<String>,
    /// Where OpenBao pods fetch the API server's signing keys when the
    /// issuer URL is not reachable from them, for example
    /// https://kubernetes.default.svc/openid/v1/jwks; OIDC discovery of the
    /// issuer when unset.
    #[arg(long)]
    oidc_jwks_url: Option<String>,
    /// Where /metrics is served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_bind_address: SocketAddr,
    /// Where /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8081")]
    health_bind_address: SocketAddr,
    /// Take the Lease before acting, so only one replica reconciles.
    #[arg(long)]
    leader_elect: bool,
    /// How often a converged cluster is checked again, in seconds.
    #[arg(long, default_value_t = 60)]
    resync_seconds: u64,
    /// Resolve OpenBao pod names through this DNS server (ip:port) instead
    /// of the system resolver; for a controller run outside the cluster.
    #[arg(long)]
    dns_server: Option<SocketAddr>,
    /// Namespaces whose OpenBaoClusters this controller manages, comma
    /// separated; every namespace when empty. Objects, pods and Secrets are
    /// watched only there, so the operator's Secret access can be confined
    /// to these namespaces with RoleBindings.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    watch_namespaces: Vec<String>,
    /// The multi-tenant install (manifests/overlays/multi-tenant): the
    /// controller reads Secrets only in namespaces an OpenBaoTenant has
    /// onboarded, and manages clusters only there.
    #[arg(long, env = "MULTI_TENANT", conflicts_with = "watch_namespaces")]
    multi_tenant: bool,
    /// Image of the backup Jobs (unless a cluster's spec.backup.image names another).
    #[arg(long, env = "BACKUP_IMAGE", default_value = controller::context::DEFAULT_BACKUP_IMAGE)]
    backup_image: String,
    /// Image of restore-drill Jobs (unless a cluster's spec.backup.drill.image names another).
    #[arg(long, env = "RESTORE_IMAGE", default_value = controller::context::DEFAULT_RESTORE_IMAGE)]
    restore_image: String,
    /// Image of the upgrade step Jobs (preflight, snapshot, verify).
    #[arg(long, env = "UPGRADE_IMAGE", default_value = controller::context::DEFAULT_UPGRADE_IMAGE)]
    upgrade_image: String,
    /// Log as JSON lines (the default in a pod) instead of text.
    #[arg(long, env = "LOG_JSON", default_value_t = false)]
    log_json: bool,
}

/// Name of the leader-election Lease.
const LEASE: &str = "openbao-operator-controller";

// One thread: reconciles wait on the network, not the CPU, and one thread
// keeps the controller's memory small and flat however many clusters exist.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_json);
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut config = kube::Config::infer().await.context(
        "cannot find the Kubernetes API server: run in a pod with a ServiceAccount, or set KUBECONFIG",
    )?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&format!(
            "{}/{}",
            lifecycle_types::names::CONTROLLER_USER_AGENT,
            env!("CARGO_PKG_VERSION")
        ))?,
    ));
    let client = kube::Client::try_from(config.clone())
        .context("cannot build a Kubernetes client from the configuration")?;
    let issuer = match &args.service_account_issuer {
        Some(issuer) => issuer.clone(),
        None => discover_issuer(&client).await?,
    };
    let kube_ca_pem = std::fs::read_to_string(&args.kube_ca_file).with_context(|| {
        format!(
            "cannot read the API server CA at {} (--kube-ca-file)",
            args.kube_ca_file.display()
        )
    })?;
    let mut settings = Settings::new(
        args.namespace.clone(),
        issuer,
        kube_ca_pem,
        args.openbao_token_file.clone(),
    );
    settings.service_account = args.service_account.clone();
    settings.jwks_url = args.oidc_jwks_url.clone();
    settings.resync = Duration::from_secs(args.resync_seconds);
    settings.scope = if args.multi_tenant {
        Scope::Tenants
    } else {
        Scope::from_list(&args.watch_namespaces)
    };
    settings.backup_image = args.backup_image.clone();
    settings.restore_image = args.restore_image.clone();
    settings.upgrade_image = args.upgrade_image.clone();
    let metrics = Metrics::new();
    let probes = Probes {
        metrics: metrics.clone(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    for address in dedup([args.metrics_bind_address, args.health_bind_address]) {
        let app = router(probes.clone());
        tokio::spawn(async move {
            if let Err(error) = serve(address, app).await {
                tracing::error!(%error, %address, "the HTTP endpoint stopped");
            }
        });
    }
    let resolver: Option<Arc<dyn reqwest::dns::Resolve>> = match args.dns_server {
        Some(server) => Some(Arc::new(
            controller::dns::ClusterDns::new(server).context("--dns-server")?,
        )),
        None => None,
    };
    let ctx = Arc::new(
        Context::new(
            config,
            settings,
            Connector::new(
                Credentials::new(
                    client.clone(),
                    &args.namespace,
                    &args.service_account,
                    args.openbao_token_file,
                ),
                resolver,
            ),
            metrics,
        )
        .context("cannot build the controller's Kubernetes client")?,
    );
    probes.ready.store(true, Ordering::Relaxed);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    if !args.leader_elect {
        tracing::info!("starting without leader election");
        controller::run::run(ctx, wait_true(stop_rx)).await;
        return Ok(());
    }
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| uuid_like());
    let manager = LeaseManagerBuilder::new(client, LEASE)
        .with_namespace(&args.namespace)
        .with_identity(&identity)
        .with_field_manager(format!("openbao-operator-{identity}"))
        .with_create_mode(LeaseCreateMode::AutoCreate)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .context("cannot set up leader election (Lease in the operator namespace)")?;
    let (mut leader, _task) = manager.watch().await;
    tracing::info!(%identity, "waiting to become the leader");
    let mut stop = stop_rx.clone();
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader.changed() => changed.context("leader election stopped")?,
            _ = stop.changed() => return Ok(()),
        }
    }
    tracing::info!(%identity, "became the leader; reconciling");
    let lost = async move {
        loop {
            if leader.changed().await.is_err() || !*leader.borrow() {
                tracing::warn!("lost the leader Lease; stopping so a restart can compete again");
                return;
            }
        }
    };
    let stopped = wait_true(stop_rx);
    controller::run::run(ctx, async move {
        tokio::select! {
            () = lost => {}
            () = stopped => {}
        }
    })
    .await;
    Ok(())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The issuer from the API server's OIDC discovery document.
async fn discover_issuer(client: &kube::Client) -> anyhow::Result<String> {
    let request = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .context("building the discovery request")?;
    let document: serde_json::Value = client.request(request).await.context(
        "cannot read /.well-known/openid-configuration from the API server; set --service-account-issuer",
    )?;
    document["issuer"]
        .as_str()
        .map(str::to_owned)
        .context("the API server's discovery document has no issuer; set --service-account-issuer")
}

fn dedup(addresses: [SocketAddr; 2]) -> Vec<SocketAddr> {
    if addresses[0] == addresses[1] {
        vec![addresses[0]]
    } else {
        addresses.to_vec()
    }
}

async fn wait_true(mut flag: tokio::sync::watch::Receiver<bool>) {
    while !*flag.borrow_and_update() {
        if flag.changed().await.is_err() {
            return;
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A unique identity when the pod name is not known (outside a pod).
fn uuid_like() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    format!("controller-{}", hex::encode(bytes))
}
