//! `devenv`: the README's run command. Brings up the local control plane with
//! the operator's CRDs and a real OpenBao Raft cluster, prints how to reach
//! both, and tears everything down on Ctrl-C.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use clap::Parser;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use test_support::{BaoCluster, BaoClusterOptions, ControlPlane, tools};

/// Local environment: a real Kubernetes control plane and a real OpenBao cluster.
#[derive(Parser, Debug)]
struct Args {
    /// OpenBao version to run (one the installer provides).
    #[arg(long, env = "DEVENV_OPENBAO_VERSION", default_value_t = tools::latest_openbao().to_owned())]
    openbao_version: String,
    /// Number of OpenBao nodes.
    #[arg(long, env = "DEVENV_NODES", default_value_t = 3)]
    nodes: usize,
    /// Exit once everything is ready instead of waiting for Ctrl-C (for tests).
    #[arg(long)]
    exit_when_ready: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    test_support::init_tracing();
    let args = Args::parse();
    println!("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)...");
    let plane = ControlPlane::start().await?;
    let client = plane.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for crd in lifecycle_types::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("devenv").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        println!("installed CRD {name}");
    }

    println!(
        "starting a {}-node OpenBao {} Raft cluster...",
        args.nodes, args.openbao_version
    );
    let bao = BaoCluster::start(BaoClusterOptions {
        version: args.openbao_version.clone(),
        nodes: args.nodes,
        tls: true,
        initialize: true,
        seal_key: None,
    })
    .await?;
    let servers = bao.raft_servers().await?;

    let leader_addr = bao.addr(bao.leader().await?);
    let env_file = write_env_file(plane.dir(), &plane, &bao, &leader_addr)?;
    println!();
    println!(
        "Ready. Raft voters: {}",
        servers
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("Point kubectl and bao at it from another shell:");
    println!("  source {}", env_file.display());
    println!("  kubectl get crds,openbaoclusters -A");
    println!("  bao operator raft list-peers   # uses the setup token in $BAO_TOKEN_FILE");
    println!();

    if args.exit_when_ready {
        return Ok(());
    }
    println!("Press Ctrl-C to stop and remove everything.");
    wait_for_shutdown().await?;
    println!("stopping...");
    drop(bao);
    drop(plane);
    Ok(())
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Writes `env.sh` (kubectl, KUBECONFIG, BAO_ADDR, BAO_CACERT) and the setup
/// token in a file readable only by the owner; the token is never printed.
fn write_env_file(
    dir: &Path,
    plane: &ControlPlane,
    bao: &BaoCluster,
    leader_addr: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let token_file = dir.join("bao-root-token");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&token_file)?
        .write_all(bao.root_token().as_bytes())?;
    let ca_file = dir.join("openbao-ca.crt");
    std::fs::write(&ca_file, bao.ca_pem().unwrap_or_default())?;
    let kubectl_dir = tools::kubernetes("kubectl")?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let env = format!(
        "export PATH={kubectl}:{bao_dir}:$PATH\nexport KUBECONFIG={kubeconfig}\nexport BAO_ADDR={addr}\nexport BAO_CACERT={ca}\nexport BAO_TOKEN_FILE={token}\nexport BAO_TOKEN=$(cat \"$BAO_TOKEN_FILE\")\n",
        kubectl = shell_quote(&kubectl_dir.display().to_string()),
        bao_dir = shell_quote(
            &tools::bao(bao.version())?
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        kubeconfig = shell_quote(&plane.kubeconfig_path.display().to_string()),
        addr = shell_quote(leader_addr),
        ca = shell_quote(&ca_file.display().to_string()),
        token = shell_quote(&token_file.display().to_string()),
    );
    let env_file = dir.join("env.sh");
    std::fs::write(&env_file, env)?;
    Ok(env_file)
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
