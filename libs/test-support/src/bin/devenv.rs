//! `devenv`: the README's run command. Brings up the local control plane, a
//! node agent that runs its pods from the operator's images, and installs
//! the operator as a user would (`manifests/overlays/development`: the
//! controller runs as a pod of its image, as the operator's ServiceAccount,
//! holding the leader Lease); applies the Development sample
//! `OpenBaoCluster` and waits until the controller has made it an Available
//! 3-voter OpenBao cluster; prints how to reach it, and tears everything
//! down on Ctrl-C or SIGTERM.
//!
//! The sample's `spec.backup` writes to a local S3 server (versitygw) that
//! devenv starts on the node agent's bridge, with its credentials in a
//! Secret; the backup and restore-drill Jobs run the backup and restore
//! images. devenv waits for the first backup (and, briefly,
//! its restore drill) and says where the files are.

use std::time::Duration;

use clap::Parser;
use lifecycle_types::names;

use test_support::devenv::{API_PORT, DevEnvironment, SAMPLE};
use test_support::tools;

/// How long to wait, once the cluster is Available, for the first backup and
/// then for its restore drill; devenv goes on (and says so) after either.
const BACKUP_WAIT: Duration = Duration::from_secs(180);
const DRILL_WAIT: Duration = Duration::from_secs(180);

/// Local environment: a real Kubernetes control plane where the operator
/// runs a real OpenBao cluster as pods.
#[derive(Parser, Debug)]
struct Args {
    /// OpenBao version to run (one the installer provides).
    #[arg(long, env = "DEVENV_OPENBAO_VERSION", default_value_t = tools::latest_openbao().to_owned())]
    openbao_version: String,
    /// Number of OpenBao pods (spec.replicas of the sample).
    #[arg(long, env = "DEVENV_NODES", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=9))]
    nodes: i32,
    /// Exit once everything is ready instead of waiting for Ctrl-C (for tests).
    #[arg(long)]
    exit_when_ready: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    test_support::init_user_logging();
    let args = Args::parse();
    // Listening for signals from the start means a Ctrl-C during start-up
    // also drops (stops and removes) whatever has come up so far.
    test_support::until_signal(run(args)).await
}

/// Brings everything up, then waits forever (unless `--exit-when-ready`);
/// the caller stops it by dropping the future, which drops the environment.
async fn run(args: Args) -> anyhow::Result<()> {
    let env = DevEnvironment::up(&args.openbao_version, args.nodes).await?;
    let (name, ns) = (env.name(), env.namespace());
    env.apply_cluster().await?;
    println!(
        "applied {SAMPLE} as OpenBaoCluster {ns}/{name} (OpenBao {}, {} replicas); the controller takes it from here...",
        args.openbao_version, args.nodes
    );
    let status = env.wait_available(None, Duration::from_secs(600)).await?;
    if env.s3.is_some() {
        println!(
            "waiting for the first backup (spec.backup.trigger runs one once the cluster serves)..."
        );
        let trigger = env
            .cluster
            .spec
            .backup
            .as_ref()
            .and_then(|b| b.trigger.clone())
            .unwrap_or_default();
        // Neither the backup nor its drill failing stops devenv: the
        // cluster is usable without them, and the lines say where to look.
        match env.wait_backup(&trigger, BACKUP_WAIT).await {
            Ok(record) => {
                println!("{}", env.describe_backup(&record));
                env.wait_drill(&record.name, DRILL_WAIT).await?;
            }
            Err(error) => println!("{error:#}"),
        }
    }

    let voters = status.raft.map(|r| r.voters).unwrap_or_default();
    let (active, active_ip) = env.active_pod().await?;
    let ready: Vec<String> = (0..args.nodes)
        .map(|i| format!("{}-{i}", names::statefulset(name)))
        .collect();
    let pod_host = format!("{active}.{}.{ns}.svc", names::headless_service(name));
    let env_file = env.write_env_file(&pod_host, active_ip).await?;
    println!();
    println!("Ready. Pods ready: {}", ready.join(", "));
    println!("Raft voters: {}", voters.join(", "));
    println!(
        "Active: {active} (https://{pod_host}:{API_PORT}, https://{active_ip}:{API_PORT} from this machine)"
    );
    println!("Point kubectl and bao at it from another shell:");
    println!("  source {}", env_file.display());
    println!("  kubectl get openbaoclusters -A   # status and conditions the controller writes");
    println!("  kubectl describe openbaocluster -n {ns} {name}   # its Events");
    println!("  kubectl get pods,statefulsets,pvc,secrets -n {ns}");
    if env.s3.is_some() {
        println!(
            "  kubectl get openbaocluster -n {ns} {name} -o jsonpath='{{.status.backup}}'   # last backup, failures, next slot, last restore drill"
        );
        println!("  kubectl get jobs -n {ns}   # backup and restore-drill Jobs");
    }
    println!(
        "  bao operator raft list-peers   # uses the Development root token in $BAO_TOKEN_FILE"
    );
    println!(
        "Controller log: {}; pod logs (no kubectl logs: the node agent serves no kubelet API): {}",
        env.controller_log.display(),
        env.pod_logs()
    );
    println!("{}", env.acting_identity_line()?);
    if let Some(line) = env.controller_memory_line() {
        println!("{line}");
    }
    if let Some(s3) = &env.s3 {
        println!(
            "Backups: S3 server {} (bucket {}), its files under {}",
            s3.endpoint,
            s3.bucket,
            s3.data_dir().display()
        );
    }
    println!();

    if args.exit_when_ready {
        println!("--exit-when-ready: stopping...");
        return Ok(());
    }
    println!("Press Ctrl-C to stop and remove everything.");
    std::future::pending::<()>().await;
    Ok(())
}
