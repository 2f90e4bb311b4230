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

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams};
use lifecycle_types::backup::{BackupFailure, DrillResult, OperationLock};
use lifecycle_types::{OpenBaoCluster, names};

use test_support::crds::OPERATOR_NAMESPACE;
use test_support::node_agent::ImageMap;
use test_support::s3::S3Server;
use test_support::{ControlPlane, NodeAgent, NodeAgentOptions, tools, write_private};

/// OpenBao's API port.
const API_PORT: u16 = 8200;
const SAMPLE: &str = "manifests/samples/openbaocluster-development.yaml";
/// The operator's images, by repository (`cargo xtask images --profile dev`
/// writes them; the install's image references match on the repository).
const IMAGES: [&str; 4] = ["controller", "backup", "restore", "upgrade"];
/// The install overlay devenv applies, as a user would with
/// `kubectl apply --server-side -k`.
const OVERLAY: &str = "overlays/development";
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

/// An API enum as the API spells it (`Pending`, `Backup`), not Rust's
/// Debug text.
fn shown(value: Option<&impl serde::Serialize>) -> Option<String> {
    match serde_json::to_value(value?).ok()? {
        serde_json::Value::String(text) => Some(text),
        other => Some(other.to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // What a user needs: devenv's own lines and real problems. The kube
    // client's retries while the API server starts are not (devenv waits
    // for it and says so); RUST_LOG overrides.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client=off,kube_runtime=off".into()),
        )
        .try_init();
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
/// the caller stops it by dropping the future, which stops the controller
/// and the S3 server, drops the node agent (pods, network) and then the
/// control plane.
async fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster: OpenBaoCluster = serde_yaml_ng::from_str(
        &std::fs::read_to_string(workspace_file(SAMPLE))
            .with_context(|| format!("read {SAMPLE}"))?,
    )
    .with_context(|| format!("{SAMPLE} is not an OpenBaoCluster"))?;
    cluster.spec.version = args.openbao_version.clone();
    cluster.spec.replicas = args.nodes;
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let ns = cluster.metadata.namespace.clone().unwrap_or_default();

    println!("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)...");
    let plane = ControlPlane::start().await?;
    let client = plane.client().await?;
    plane.install_crds().await?;

    println!("starting the node agent (kubelet stand-in, kube-scheduler, cluster DNS)...");
    let mut images = ImageMap::default();
    for name in IMAGES {
        let layout = tools::image_of(&sibling_binary(name)?)?;
        images = images.with_layout(&format!("openbao-operator/{name}"), &layout);
    }
    let agent = NodeAgent::start(
        &plane,
        NodeAgentOptions {
            images,
            ..NodeAgentOptions::default()
        },
    )
    .await?;
    println!(
        "node {} is Ready (pods on bridge {}, {}/24)",
        agent.nodes().join(", "),
        agent.bridge_name(),
        agent.gateway()
    );

    // Declared after the agent and before the controller, so that it stops
    // after the controller and before the pods' network goes away.
    let s3 = start_backup_storage(&client, &agent, &mut cluster, &ns).await?;

    let controller_log = install_operator(&plane, &agent).await?;

    let clusters: Api<OpenBaoCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .patch(
            &name,
            &PatchParams::apply("devenv").force(),
            &Patch::Apply(&cluster),
        )
        .await
        .with_context(|| format!("apply {SAMPLE}"))?;
    println!(
        "applied {SAMPLE} as OpenBaoCluster {ns}/{name} (OpenBao {}, {} replicas); the controller takes it from here...",
        args.openbao_version, args.nodes
    );
    let status = wait_available(&clusters, &name, args.nodes).await?;
    if let Some(s3) = &s3 {
        wait_backup(&clusters, &name, s3, &agent).await?;
    }

    let voters = status.raft.map(|r| r.voters).unwrap_or_default();
    let active = status.active_leader.context("no active node")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let active_ip: Ipv4Addr = pods
        .get(&active)
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .context("the active pod has no IP")?
        .parse()?;
    let ready: Vec<String> = (0..args.nodes)
        .map(|i| format!("{}-{i}", names::statefulset(&name)))
        .collect();
    let pod_host = format!("{active}.{}.{ns}.svc", names::headless_service(&name));
    let env_file = write_env_file(&plane, &client, &name, &ns, &pod_host, active_ip).await?;
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
    if s3.is_some() {
        println!(
            "  kubectl get openbaocluster -n {ns} {name} -o jsonpath='{{.status.backup}}'   # last backup, failures, next slot, last restore drill"
        );
        println!("  kubectl get jobs -n {ns}   # backup and restore-drill Jobs");
    }
    println!(
        "  bao operator raft list-peers   # uses the Development root token in $BAO_TOKEN_FILE"
    );
    println!(
        "Controller log: {}; pod logs (no kubectl logs: the node agent serves no kubelet API): {}/pods/*/logs/",
        controller_log.display(),
        agent.dir().display()
    );
    if let Some(kib) = test_support::process::peak_rss_kib(CONTROLLER_PROGRAM) {
        println!(
            "Controller pod memory: peak RSS {:.1} MiB (this is the unoptimized dev build)",
            kib as f64 / 1024.0
        );
    }
    if let Some(s3) = &s3 {
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

/// A file of this repository, wherever devenv was started from.
fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// A binary of this workspace next to this one (`target/<profile>/<name>`;
/// `tools::workspace_binary` looks one folder up, from a test's `deps/`).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let binary = std::env::current_exe()?
        .parent()
        .context("no folder for this executable")?
        .join(name);
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing; build it with `cargo build -p {name}` (ci/up.sh does)",
        binary.display()
    );
    Ok(binary)
}

/// When the sample backs up to `s3://<bucket>/...`: starts an S3 server with
/// that bucket on the bridge's gateway (the host address pods reach),
/// applies the credentials Secret the sample names, and points the sample's
/// endpoint (a placeholder) at the server.
async fn start_backup_storage(
    client: &kube::Client,
    agent: &NodeAgent,
    cluster: &mut OpenBaoCluster,
    ns: &str,
) -> anyhow::Result<Option<S3Server>> {
    let Some(backup) = cluster.spec.backup.as_mut() else {
        return Ok(None);
    };
    let Some(bucket) = backup
        .destination
        .url
        .strip_prefix("s3://")
        .and_then(|rest| rest.split('/').next())
    else {
        println!(
            "{SAMPLE} backs up to {}, not to S3: devenv starts no S3 server",
            backup.destination.url
        );
        return Ok(None);
    };
    let s3 = S3Server::start_on(bucket, agent.gateway()).await?;
    backup.destination.endpoint = Some(s3.endpoint.clone());
    let secret_name = backup
        .credentials
        .as_ref()
        .and_then(|c| c.secret_ref.clone());
    if let Some(secret_name) = &secret_name {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        secrets
            .patch(
                secret_name,
                &PatchParams::apply("devenv").force(),
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": secret_name, "namespace": ns},
                    "stringData": {
                        "AWS_ACCESS_KEY_ID": s3.access_key_id(),
                        "AWS_SECRET_ACCESS_KEY": s3.secret_access_key(),
                    },
                })),
            )
            .await
            .with_context(|| format!("apply Secret {ns}/{secret_name}"))?;
    }
    println!(
        "started an S3 server at {} (bucket {bucket}, files under {}){}; the sample's backups go there",
        s3.endpoint,
        s3.data_dir().display(),
        secret_name
            .map(|s| format!(", its keys in Secret {ns}/{s}"))
            .unwrap_or_default()
    );
    Ok(Some(s3))
}

/// Waits for the first successful backup and prints where it lies; then
/// waits a little for its restore drill (when the sample asks for drills)
/// and prints what is known. Neither failing stops devenv: the cluster is
/// usable without them, and the lines say where to look.
async fn wait_backup(
    clusters: &Api<OpenBaoCluster>,
    name: &str,
    s3: &S3Server,
    agent: &NodeAgent,
) -> anyhow::Result<()> {
    println!(
        "waiting for the first backup (spec.backup.trigger runs one once the cluster serves)..."
    );
    let logs = format!("{}/pods/*/logs/", agent.dir().display());
    let started = Instant::now();
    let mut last = String::new();
    // Prints what holds the cluster (a backup or drill Job) and a failed
    // backup, each once.
    let mut watch = |operation: Option<&OperationLock>, failure: Option<&BackupFailure>| {
        let line = match (operation, failure) {
            (Some(op), _) => format!(
                "  {} Job {} running ({})",
                shown(Some(&op.kind)).unwrap_or_default(),
                op.job,
                op.cause
            ),
            (None, Some(f)) => format!(
                "  backup Job {} failed: {}: {} (pod logs under {logs})",
                f.job, f.reason, f.message
            ),
            (None, None) => String::new(),
        };
        if !line.is_empty() && line != last {
            println!("{line}");
        }
        last = line;
    };
    let (backup, drills) = loop {
        let cluster = clusters.get(name).await?;
        let drills = cluster
            .spec
            .backup
            .as_ref()
            .is_some_and(|b| b.drill.is_some());
        let status = cluster.status.unwrap_or_default();
        let backup = status.backup.clone().unwrap_or_default();
        if let Some(record) = &backup.last_successful {
            let folder = Path::new(&record.snapshot)
                .parent()
                .map(|p| s3.data_dir().join(&s3.bucket).join(p))
                .unwrap_or_else(|| s3.data_dir().join(&s3.bucket));
            println!(
                "Backup {} ({} bytes, Raft index {}, Job {}) is in {}",
                record.name,
                record.size_bytes,
                record
                    .raft_index
                    .map_or_else(|| "unknown".to_owned(), |i| i.to_string()),
                record.job,
                folder.display()
            );
            break (record.clone(), drills);
        }
        watch(status.operation.as_ref(), backup.last_failure.as_ref());
        if started.elapsed() > BACKUP_WAIT {
            println!(
                "No backup succeeded within {}s; see `kubectl get openbaocluster {name} -o jsonpath='{{.status.backup}}'` and the pod logs under {logs}",
                BACKUP_WAIT.as_secs()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if !drills {
        return Ok(());
    }

    println!("waiting for the restore drill of backup {}...", backup.name);
    let started = Instant::now();
    loop {
        let status = clusters.get(name).await?.status.unwrap_or_default();
        let backups = status.backup.clone().unwrap_or_default();
        if let Some(drill) = &backups.last_verified {
            let index = drill
                .restored_raft_index
                .map(|i| format!(", restored Raft index {i}"))
                .unwrap_or_default();
            let which = drill.backup.as_deref().unwrap_or("(unknown backup)");
            match drill.result {
                DrillResult::Passed => println!(
                    "Restore drill Passed: backup {which} restored into a throwaway node ({}{index}; Job {})",
                    drill.reason, drill.job
                ),
                DrillResult::Failed => println!(
                    "Restore drill Failed: backup {which}: {}: {} (Job {}; pod logs under {logs})",
                    drill.reason, drill.message, drill.job
                ),
            }
            return Ok(());
        }
        watch(status.operation.as_ref(), None);
        if started.elapsed() > DRILL_WAIT {
            println!(
                "Restore drill: no result within {}s (status.backup.lastVerified is empty); it keeps running, see `kubectl get jobs` and the pod logs under {logs}",
                DRILL_WAIT.as_secs()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The controller image's entrypoint, as the pod's process shows it.
const CONTROLLER_PROGRAM: &str = "/usr/local/bin/controller";

/// Installs the operator as a user would (`kubectl apply --server-side -k
/// manifests/overlays/development`, CRDs included) and waits until its
/// controller pod, running the controller image as the operator's
/// ServiceAccount, holds the leader Lease. Only the issuer is added to its
/// flags (see `ControlPlane::install_operator`). Returns
/// `controller.log` in the control plane's folder: a link to the pod's log.
async fn install_operator(plane: &ControlPlane, agent: &NodeAgent) -> anyhow::Result<PathBuf> {
    plane.install_operator(OVERLAY, &[]).await?;
    println!(
        "applied manifests/{OVERLAY} (CRDs, RBAC, the controller Deployment); waiting for the controller pod..."
    );
    let holder = plane
        .operator_leader(Duration::from_secs(180))
        .await
        .with_context(|| {
            format!(
                "the controller pod did not take the leader Lease within 3 minutes; see {}/pods/{OPERATOR_NAMESPACE}_*/logs/controller/",
                agent.dir().display()
            )
        })?;
    let pods: Api<Pod> = Api::namespaced(plane.client().await?, OPERATOR_NAMESPACE);
    let uid = pods.get(&holder).await?.metadata.uid.unwrap_or_default();
    let pod_log = agent
        .dir()
        .join("pods")
        .join(format!("{OPERATOR_NAMESPACE}_{holder}_{uid}"))
        .join("logs/controller/0.log");
    let link = plane.dir().join("controller.log");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&pod_log, &link)?;
    println!(
        "the controller runs as pod {OPERATOR_NAMESPACE}/{holder} (image ghcr.io/openbao-operator/controller) and leads"
    );
    Ok(link)
}

/// Waits until the controller reports the cluster Available with every
/// replica ready and a voter, printing each new phase and reason.
async fn wait_available(
    clusters: &Api<OpenBaoCluster>,
    name: &str,
    replicas: i32,
) -> anyhow::Result<lifecycle_types::cluster::OpenBaoClusterStatus> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = String::new();
    loop {
        let status = clusters.get(name).await?.status.unwrap_or_default();
        let available = lifecycle_types::conditions::find(&status.conditions, "Available");
        let initialized = lifecycle_types::conditions::find(&status.conditions, "Initialized");
        let line = format!(
            "  phase {}, {}/{replicas} ready, {}",
            shown(status.phase.as_ref()).unwrap_or_else(|| "not set yet".into()),
            status.ready_replicas,
            initialized
                .filter(|c| c.reason != "SelfInitialized" && c.reason != "OperatorInitialized")
                .or(available)
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default()
        );
        if line != last {
            println!("{line}");
            last = line;
        }
        let voters = status.raft.as_ref().map(|r| r.voters.len()).unwrap_or(0);
        if available.is_some_and(|c| c.status == lifecycle_types::conditions::ConditionStatus::True)
            && status.ready_replicas == replicas
            && voters == replicas as usize
        {
            return Ok(status);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the cluster did not become Available within 10 minutes; see the controller log and `kubectl get openbaoclusters -o yaml`"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Writes `env.sh` (kubectl, bao, KUBECONFIG, BAO_ADDR and TLS settings for
/// the active pod) and the Development root token in a file readable only
/// by the owner; the token is never printed.
async fn write_env_file(
    plane: &ControlPlane,
    client: &kube::Client,
    name: &str,
    ns: &str,
    pod_host: &str,
    active_ip: Ipv4Addr,
) -> anyhow::Result<PathBuf> {
    let dir = plane.dir();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let field = |secret: &Secret, key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .with_context(|| {
                format!(
                    "Secret {} has no {key}",
                    secret.metadata.name.clone().unwrap_or_default()
                )
            })
    };
    let root = secrets.get(&names::root_token_secret(name)).await?;
    let token_file = dir.join("bao-root-token");
    write_private(&token_file, &field(&root, names::ROOT_TOKEN)?)?;
    let tls = secrets.get(&names::tls_server_secret(name)).await?;
    let ca_file = dir.join("openbao-ca.crt");
    std::fs::write(&ca_file, field(&tls, "ca.crt")?)?;
    let bin_dir = |path: PathBuf| {
        path.parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .display()
            .to_string()
    };
    // The host shell cannot resolve cluster names, so it uses the pod's IP
    // and verifies the certificate against the pod's DNS name.
    let exports = vec![
        (
            "PATH",
            format!(
                "{}:{}",
                bin_dir(tools::kubernetes("kubectl")?),
                bin_dir(tools::bao(tools::latest_openbao())?)
            ),
        ),
        ("KUBECONFIG", plane.kubeconfig_path.display().to_string()),
        ("BAO_ADDR", format!("https://{active_ip}:{API_PORT}")),
        ("BAO_CACERT", ca_file.display().to_string()),
        ("BAO_TLS_SERVER_NAME", pod_host.to_owned()),
        ("BAO_TOKEN_FILE", token_file.display().to_string()),
    ];
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
