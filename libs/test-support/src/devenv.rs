//! The local environment that `ci/up.sh` (the `devenv` binary) and
//! `ci/golden-path.sh` (the `golden-path` binary) bring up: the control
//! plane, a node agent that runs pods from the operator's images, a local
//! S3 server for the sample's backups, and the operator installed as a user
//! installs it (`manifests/overlays/development`: the controller runs as a
//! pod of its image, as the operator's ServiceAccount, holding the leader
//! Lease). Every step prints one line a user can follow.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams};
use lifecycle_types::backup::{BackupFailure, BackupRecord, DrillResult, OperationLock};
use lifecycle_types::cluster::OpenBaoClusterStatus;
use lifecycle_types::{OpenBaoCluster, names};

use crate::crds::{OPERATOR_NAMESPACE, OPERATOR_USER};
use crate::node_agent::ImageMap;
use crate::s3::S3Server;
use crate::{ControlPlane, NodeAgent, NodeAgentOptions, tools, write_private};

/// OpenBao's API port.
pub const API_PORT: u16 = 8200;
/// The sample both binaries apply.
pub const SAMPLE: &str = "manifests/samples/openbaocluster-development.yaml";
/// The install overlay, applied as a user would with
/// `kubectl apply --server-side -k`.
pub const OVERLAY: &str = "overlays/development";
/// The operator's images, by repository (`cargo xtask images --profile dev`
/// writes them; the install's image references match on the repository).
const IMAGES: [&str; 4] = ["controller", "backup", "restore", "upgrade"];
/// The controller image's entrypoint, as the pod's process shows it.
const CONTROLLER_PROGRAM: &str = "/usr/local/bin/controller";
/// Field manager of what these binaries apply.
const MANAGER: &str = "devenv";

/// A running environment. Dropping it stops the S3 server, then the node
/// agent (every pod, the controller's too, and the network), then the
/// control plane, and removes their files.
pub struct DevEnvironment {
    // Field order is drop order.
    /// The S3 server the sample backs up to (`None` when it backs up
    /// elsewhere or not at all).
    pub s3: Option<S3Server>,
    pub agent: NodeAgent,
    pub plane: ControlPlane,
    /// The cluster admin.
    pub client: kube::Client,
    /// The sample as it is applied (version, replicas, S3 endpoint set).
    pub cluster: OpenBaoCluster,
    /// `controller.log` in the control plane's folder: a link to the
    /// controller pod's log.
    pub controller_log: PathBuf,
}

impl std::fmt::Debug for DevEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevEnvironment")
            .field("plane", &self.plane.dir())
            .field("cluster", &self.cluster.metadata.name)
            .finish_non_exhaustive()
    }
}

impl DevEnvironment {
    /// Starts everything and installs the operator; the sample (at
    /// `version`, with `replicas`) is read but not applied yet.
    pub async fn up(version: &str, replicas: i32) -> anyhow::Result<Self> {
        let mut cluster: OpenBaoCluster = serde_yaml_ng::from_str(
            &std::fs::read_to_string(workspace_file(SAMPLE))
                .with_context(|| format!("read {SAMPLE}"))?,
        )
        .with_context(|| format!("{SAMPLE} is not an OpenBaoCluster"))?;
        cluster.spec.version = version.to_owned();
        cluster.spec.replicas = replicas;
        let namespace = cluster.metadata.namespace.clone().unwrap_or_default();

        println!(
            "starting the local control plane (etcd, kube-apiserver, kube-controller-manager)..."
        );
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
        let s3 = start_backup_storage(&client, &agent, &mut cluster, &namespace).await?;
        let controller_log = install_operator(&plane, &agent).await?;
        Ok(Self {
            s3,
            agent,
            plane,
            client,
            cluster,
            controller_log,
        })
    }

    /// The sample's name and namespace.
    pub fn name(&self) -> &str {
        self.cluster.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.cluster
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_default()
    }

    pub fn clusters(&self) -> Api<OpenBaoCluster> {
        Api::namespaced(self.client.clone(), self.namespace())
    }

    /// The sample's status as the controller last wrote it.
    pub async fn status(&self) -> anyhow::Result<OpenBaoClusterStatus> {
        Ok(self
            .clusters()
            .get(self.name())
            .await?
            .status
            .unwrap_or_default())
    }

    /// Applies the sample as it stands in [`Self::cluster`].
    pub async fn apply_cluster(&self) -> anyhow::Result<()> {
        self.clusters()
            .patch(
                self.name(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&self.cluster),
            )
            .await
            .with_context(|| format!("apply {SAMPLE}"))?;
        Ok(())
    }

    /// Reads the status every second until `check` returns a value,
    /// printing each new line `check` gives (a phase, the Job that holds
    /// the cluster); `None` once `within` has passed.
    async fn watch<T>(
        &self,
        within: Duration,
        mut check: impl FnMut(OpenBaoClusterStatus) -> (String, Option<T>),
    ) -> anyhow::Result<Option<T>> {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let (line, done) = check(self.status().await?);
            print_changed(&mut last, line);
            if done.is_some() || started.elapsed() > within {
                return Ok(done);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits until the controller reports the cluster Available with every
    /// replica ready and a voter, on `version` when given, printing each
    /// new phase and reason.
    pub async fn wait_available(
        &self,
        version: Option<&str>,
        within: Duration,
    ) -> anyhow::Result<OpenBaoClusterStatus> {
        let replicas = self.cluster.spec.replicas;
        let available = self
            .watch(within, |status| {
                let available = lifecycle_types::conditions::find(&status.conditions, "Available");
                let initialized =
                    lifecycle_types::conditions::find(&status.conditions, "Initialized");
                let line = format!(
                    "  phase {}, {}/{replicas} ready, {}{}",
                    shown(status.phase.as_ref()).unwrap_or_else(|| "not set yet".into()),
                    status.ready_replicas,
                    status
                        .current_version
                        .as_ref()
                        .map(|v| format!("OpenBao {v}, "))
                        .unwrap_or_default(),
                    initialized
                        .filter(|c| {
                            c.reason != "SelfInitialized" && c.reason != "OperatorInitialized"
                        })
                        .or(available)
                        .map(|c| format!("{}: {}", c.reason, c.message))
                        .unwrap_or_default()
                );
                let voters = status.raft.as_ref().map(|r| r.voters.len()).unwrap_or(0);
                let done = available.is_some_and(|c| {
                    c.status == lifecycle_types::conditions::ConditionStatus::True
                }) && status.ready_replicas == replicas
                    && voters == replicas as usize
                    && version.is_none_or(|v| status.current_version.as_deref() == Some(v));
                (line, done.then_some(status))
            })
            .await?;
        available.with_context(|| {
            format!(
                "the cluster did not become Available within {} s; see {} and `kubectl get openbaoclusters -o yaml`",
                within.as_secs(),
                self.controller_log.display()
            )
        })
    }

    /// Waits until a backup run for `trigger` (`spec.backup.trigger`) has
    /// succeeded and nothing holds the cluster, printing the Jobs that run
    /// and the failures, each once.
    pub async fn wait_backup(
        &self,
        trigger: &str,
        within: Duration,
    ) -> anyhow::Result<BackupRecord> {
        let logs = self.pod_logs();
        let record = self
            .watch(within, |status| {
                let backup = status.backup.unwrap_or_default();
                if backup.last_trigger.as_deref() == Some(trigger)
                    && status.operation.is_none()
                    && let Some(record) = backup.last_successful
                {
                    return (String::new(), Some(record));
                }
                let line = operation_line(
                    status.operation.as_ref(),
                    backup.last_failure.as_ref(),
                    &logs,
                );
                (line, None)
            })
            .await?;
        record.with_context(|| {
            format!(
                "no backup for trigger {trigger} succeeded within {} s; see `kubectl get openbaocluster {} -o jsonpath='{{.status.backup}}'` and the pod logs under {logs}",
                within.as_secs(),
                self.name()
            )
        })
    }

    /// Waits for the restore drill of `backup` (when the sample asks for
    /// drills) and prints its result; gives up quietly after `within`.
    pub async fn wait_drill(&self, backup: &str, within: Duration) -> anyhow::Result<()> {
        if self
            .cluster
            .spec
            .backup
            .as_ref()
            .is_none_or(|b| b.drill.is_none())
        {
            return Ok(());
        }
        println!("waiting for the restore drill of backup {backup}...");
        let logs = self.pod_logs();
        let drill = self
            .watch(within, |status| {
                match status.backup.and_then(|b| b.last_verified) {
                    Some(drill) => (String::new(), Some(drill)),
                    None => (operation_line(status.operation.as_ref(), None, &logs), None),
                }
            })
            .await?;
        let Some(drill) = drill else {
            println!(
                "Restore drill: no result within {} s (status.backup.lastVerified is empty); it keeps running, see `kubectl get jobs` and the pod logs under {logs}",
                within.as_secs()
            );
            return Ok(());
        };
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
        Ok(())
    }

    /// One line on a backup: name, size, Raft index, Job and where its
    /// files lie.
    pub fn describe_backup(&self, record: &BackupRecord) -> String {
        format!(
            "Backup {} ({} bytes, Raft index {}, Job {}) is in {}",
            record.name,
            record.size_bytes,
            record
                .raft_index
                .map_or_else(|| "unknown".to_owned(), |i| i.to_string()),
            record.job,
            self.backup_folder(record).unwrap_or_default().display()
        )
    }

    /// Where a backup's files lie in the local S3 server's folder.
    pub fn backup_folder(&self, record: &BackupRecord) -> Option<PathBuf> {
        let s3 = self.s3.as_ref()?;
        let bucket = s3.data_dir().join(&s3.bucket);
        Some(
            Path::new(&record.snapshot)
                .parent()
                .map_or_else(|| bucket.clone(), |p| bucket.join(p)),
        )
    }

    /// The pods' log files (the node agent serves no `kubectl logs`).
    pub fn pod_logs(&self) -> String {
        format!("{}/pods/*/logs/", self.agent.dir().display())
    }

    /// The active pod's name and IP.
    pub async fn active_pod(&self) -> anyhow::Result<(String, Ipv4Addr)> {
        let status = self.status().await?;
        let active = status.active_leader.context("no active node")?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace());
        let ip = pods
            .get(&active)
            .await?
            .status
            .and_then(|s| s.pod_ip)
            .context("the active pod has no IP")?
            .parse()?;
        Ok((active, ip))
    }

    /// A client for the cluster's active Service (through the cluster DNS)
    /// holding the Development root token.
    pub async fn root_client(&self) -> anyhow::Result<openbao_client::Client> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace());
        let ca = secret_field(
            &secrets.get(&names::tls_server_secret(self.name())).await?,
            "ca.crt",
        )?;
        let root = secret_field(
            &secrets.get(&names::root_token_secret(self.name())).await?,
            names::ROOT_TOKEN,
        )?;
        let url = format!(
            "https://{}.{}.svc:{API_PORT}",
            names::active_service(self.name()),
            self.namespace()
        );
        Ok(openbao_client::Client::new(
            openbao_client::ClientConfig::new(&url)?
                .with_ca_pem(ca)
                .with_dns_resolver(self.agent.resolver()),
        )?
        .with_token(openbao_client::Token::new(root)))
    }

    /// One line on who the controller acted as, from the API server's
    /// audit log: it must be the operator's ServiceAccount only.
    pub fn acting_identity_line(&self) -> anyhow::Result<String> {
        let identities = self.plane.acting_identities(names::CONTROLLER_USER_AGENT)?;
        let requests: usize = identities.values().sum();
        let log = self.plane.audit_log();
        anyhow::ensure!(
            identities.keys().all(|identity| identity == OPERATOR_USER),
            "the controller acted as {identities:?}, not only as {OPERATOR_USER} (audit log {})",
            log.display()
        );
        Ok(format!(
            "API server audit log ({}): the controller made {requests} requests, all as {OPERATOR_USER}",
            log.display()
        ))
    }

    /// The controller pod's peak memory, when its process is found, and
    /// which build its image holds (the folder of the running binary:
    /// `local`, `release`, or `debug`, which is unoptimized and larger).
    pub fn controller_memory_line(&self) -> Option<String> {
        let build = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.file_name()?.to_string_lossy().into_owned()))
            .unwrap_or_default();
        crate::process::peak_rss_kib(CONTROLLER_PROGRAM).map(|kib| {
            format!(
                "Controller pod memory: peak RSS {:.1} MiB ({build} build)",
                kib as f64 / 1024.0
            )
        })
    }

    /// Writes `env.sh` (kubectl, bao, KUBECONFIG, BAO_ADDR and TLS settings
    /// for the active pod) and the Development root token in a file
    /// readable only by the owner; the token is never printed.
    pub async fn write_env_file(
        &self,
        pod_host: &str,
        active_ip: Ipv4Addr,
    ) -> anyhow::Result<PathBuf> {
        let dir = self.plane.dir();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace());
        let root = secrets.get(&names::root_token_secret(self.name())).await?;
        let token_file = dir.join("bao-root-token");
        write_private(&token_file, &secret_field(&root, names::ROOT_TOKEN)?)?;
        let tls = secrets.get(&names::tls_server_secret(self.name())).await?;
        let ca_file = dir.join("openbao-ca.crt");
        std::fs::write(&ca_file, secret_field(&tls, "ca.crt")?)?;
        let bin_dir = |path: PathBuf| {
            path.parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
                .display()
                .to_string()
        };
        // The host shell cannot resolve cluster names, so it uses the pod's
        // IP and verifies the certificate against the pod's DNS name.
        let exports = vec![
            (
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir(tools::kubernetes("kubectl")?),
                    bin_dir(tools::bao(tools::latest_openbao())?)
                ),
            ),
            (
                "KUBECONFIG",
                self.plane.kubeconfig_path.display().to_string(),
            ),
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
}

/// An API enum as the API spells it (`Pending`, `Backup`), not Rust's
/// Debug text.
pub fn shown(value: Option<&impl serde::Serialize>) -> Option<String> {
    match serde_json::to_value(value?).ok()? {
        serde_json::Value::String(text) => Some(text),
        other => Some(other.to_string()),
    }
}

/// A file of this repository, wherever the binary was started from.
pub fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Prints `line` unless it is empty or the one printed last.
fn print_changed(last: &mut String, line: String) {
    if !line.is_empty() && line != *last {
        println!("{line}");
    }
    *last = line;
}

/// What holds the cluster (a backup, drill, restore or upgrade Job) or how
/// the last backup failed; empty when neither.
fn operation_line(
    operation: Option<&OperationLock>,
    failure: Option<&BackupFailure>,
    logs: &str,
) -> String {
    match (operation, failure) {
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
    }
}

fn secret_field(secret: &Secret, key: &str) -> anyhow::Result<String> {
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
}

/// A binary of this workspace next to the running one
/// (`target/<profile>/<name>`; `tools::workspace_binary` looks one folder
/// up, from a test's `deps/`).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let binary = std::env::current_exe()?
        .parent()
        .context("no folder for this executable")?
        .join(name);
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing; build the operator's binaries beside this one (`bash ci/local-build.sh devenv` does, for the local profile)",
        binary.display()
    );
    Ok(binary)
}

/// When the sample backs up to `s3://<bucket>/...`: starts an S3 server
/// with that bucket on the bridge's gateway (the host address pods reach),
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
            "{SAMPLE} backs up to {}, not to S3: no local S3 server is started",
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
                &PatchParams::apply(MANAGER).force(),
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

/// Installs the operator as a user would (`kubectl apply --server-side -k
/// manifests/overlays/development`, CRDs included) and waits until its
/// controller pod, running the controller image as the operator's
/// ServiceAccount, holds the leader Lease. Only the issuer is added to its
/// flags (see `ControlPlane::install_operator`). Returns `controller.log`
/// in the control plane's folder: a link to the pod's log.
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

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
