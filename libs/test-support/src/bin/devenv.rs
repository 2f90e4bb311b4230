//! `devenv`: the README's run command. Brings up the local control plane with
//! the operator's CRDs, a node agent that runs its pods, and a real OpenBao
//! Raft cluster as a StatefulSet of pods that join each other through
//! Kubernetes auto-join; prints how to reach both, and tears everything down
//! on Ctrl-C or SIGTERM.
//!
//! The OpenBao objects are the hand-made ones of
//! [`test_support::openbao_pods`] until the controller reconciles a sample
//! `OpenBaoCluster` instead.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Parser;

use test_support::openbao_pods::{API_PORT, OpenBaoPods, OpenBaoPodsOptions, deploy_openbao};
use test_support::{ControlPlane, NodeAgent, NodeAgentOptions, tools};

/// Local environment: a real Kubernetes control plane running a real
/// OpenBao cluster as pods.
#[derive(Parser, Debug)]
struct Args {
    /// OpenBao version to run (one the installer provides).
    #[arg(long, env = "DEVENV_OPENBAO_VERSION", default_value_t = tools::latest_openbao().to_owned())]
    openbao_version: String,
    /// Number of OpenBao pods (StatefulSet replicas).
    #[arg(long, env = "DEVENV_NODES", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=9))]
    nodes: i32,
    /// Exit once everything is ready instead of waiting for Ctrl-C (for tests).
    #[arg(long)]
    exit_when_ready: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    test_support::init_tracing();
    let args = Args::parse();
    // Listening for signals from the start means a Ctrl-C during start-up
    // also drops (stops and removes) whatever has come up so far.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = run(args) => result,
        result = tokio::signal::ctrl_c() => { println!("stopping..."); Ok(result?) }
        _ = term.recv() => { println!("stopping..."); Ok(()) }
    }
}

/// Brings everything up, then waits forever (unless `--exit-when-ready`);
/// the caller stops it by dropping the future, which drops the node agent
/// (pods, network) and then the control plane.
async fn run(args: Args) -> anyhow::Result<()> {
    println!("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)...");
    let plane = ControlPlane::start().await?;
    let client = plane.client().await?;
    plane.install_crds().await?;
    for crd in lifecycle_types::crds() {
        println!("installed CRD {}", crd.metadata.name.unwrap_or_default());
    }

    println!("starting the node agent (kubelet stand-in, kube-scheduler, cluster DNS)...");
    let agent = NodeAgent::start(&plane, NodeAgentOptions::default()).await?;
    println!(
        "node {} is Ready (pods on bridge {}, {}/24)",
        agent.nodes().join(", "),
        agent.bridge_name(),
        agent.gateway()
    );

    let options = OpenBaoPodsOptions {
        version: args.openbao_version.clone(),
        replicas: args.nodes,
        ..OpenBaoPodsOptions::default()
    };
    println!(
        "deploying OpenBao {version} as StatefulSet {ns}/{name} ({replicas} replicas of {image}) \
         with its Secrets, ConfigMap, headless Service and RBAC...",
        version = options.version,
        ns = options.namespace,
        name = options.name,
        replicas = options.replicas,
        image = options.image(),
    );
    let mut bao = deploy_openbao(&client, &agent, options.clone()).await?;
    println!("initialising {} through sys/init...", bao.pod_names()[0]);
    bao.initialize().await?;
    let voters = bao.wait_voters(bao.pod_names().len()).await?;
    let ready = bao.wait_pods_ready().await?;
    let active = bao.active_pod().await?;
    let active_ip = bao.pod_ip(&active).await?;

    let env_file = write_env_file(&plane, &bao, &active, active_ip)?;
    println!();
    println!("Ready. Pods ready: {}", ready.join(", "));
    println!("Raft voters: {}", voters.join(", "));
    println!(
        "Active: {active} ({}, https://{active_ip}:{API_PORT} from this machine)",
        bao.pod_url(&active)
    );
    println!("Point kubectl and bao at it from another shell:");
    println!("  source {}", env_file.display());
    println!(
        "  kubectl get pods,statefulsets,pvc -l {}",
        options.pod_selector()
    );
    println!(
        "  kubectl get pods -L openbao-active,openbao-sealed   # labels from service registration"
    );
    println!("  kubectl get crds,openbaoclusters -A");
    println!("  bao operator raft list-peers   # uses the setup token in $BAO_TOKEN_FILE");
    println!(
        "Pod logs (no kubectl logs: the node agent serves no kubelet API): {}/pods/*/logs/",
        agent.dir().display()
    );
    println!();

    if args.exit_when_ready {
        println!("--exit-when-ready: stopping...");
        return Ok(());
    }
    println!("Press Ctrl-C to stop and remove everything.");
    std::future::pending::<()>().await;
    Ok(())
}

/// Writes `env.sh` (kubectl, bao, KUBECONFIG, BAO_ADDR and TLS settings for
/// the active pod) and the setup token in a file readable only by the
/// owner; the token is never printed.
fn write_env_file(
    plane: &ControlPlane,
    bao: &OpenBaoPods,
    active: &str,
    active_ip: Ipv4Addr,
) -> anyhow::Result<PathBuf> {
    let dir = plane.dir();
    let token_file = dir.join("bao-root-token");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&token_file)?
        .write_all(bao.setup_token().as_bytes())?;
    let options = bao.options();
    let bin_dir = |path: PathBuf| {
        path.parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .display()
            .to_string()
    };
    let mut exports = vec![
        (
            "PATH",
            format!(
                "{}:{}",
                bin_dir(tools::kubernetes("kubectl")?),
                bin_dir(tools::bao(&options.version)?)
            ),
        ),
        ("KUBECONFIG", plane.kubeconfig_path.display().to_string()),
    ];
    // The host shell cannot resolve cluster names, so it uses the pod's IP
    // and verifies the certificate against the pod's DNS name.
    let scheme = if options.tls { "https" } else { "http" };
    exports.push(("BAO_ADDR", format!("{scheme}://{active_ip}:{API_PORT}")));
    if let Some(ca) = bao.ca_pem() {
        let ca_file = dir.join("openbao-ca.crt");
        std::fs::write(&ca_file, ca)?;
        exports.push(("BAO_CACERT", ca_file.display().to_string()));
        exports.push(("BAO_TLS_SERVER_NAME", options.pod_host(active)));
    }
    exports.push(("BAO_TOKEN_FILE", token_file.display().to_string()));
    let mut env = String::new();
    for (name, value) in exports {
        let value = if name == "PATH" {
            format!("{}:\"$PATH\"", shell_quote(&value))
        } else {
            shell_quote(&value)
        };
        env.push_str(&format!("export {name}={value}\n"));
    }
    // Read at `source` time, so the token is in no file but its own.
    env.push_str("export BAO_TOKEN=\"$(cat \"$BAO_TOKEN_FILE\")\"\n");
    let env_file = dir.join("env.sh");
    std::fs::write(&env_file, env)?;
    Ok(env_file)
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
