//! `golden-path` (`ci/golden-path.sh`): the operator's whole life as a new
//! user lives it, on the local environment `ci/up.sh` brings up, one timed
//! step at a time:
//!
//! 1. install the operator (`manifests/overlays/development`; the
//!    controller runs as a pod of its image);
//! 2. a cluster: the Development sample on the older OpenBao version;
//! 3. write a secret;
//! 4. a backup, requested through `spec.backup.trigger`;
//! 5. change the secret, then restore the backup (`OpenBaoRestore`): the
//!    secret is back;
//! 6. upgrade to the newer OpenBao version: the secret is still there;
//! 7. uninstall: the cluster, its volumes and the operator
//!    (`kubectl delete -k`), and nothing of them is left.
//!
//! Each step prints what it did and how long it took; the end prints the
//! total. Ctrl-C at any moment stops and removes everything.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use lifecycle_types::names;
use lifecycle_types::restore::{OpenBaoRestore, RestorePhase};
use serde_json::json;

use test_support::crds::OPERATOR_NAMESPACE;
use test_support::devenv::{DevEnvironment, OVERLAY, SAMPLE, workspace_file};
use test_support::tools;
use test_support::wait::{poll_until, poll_until_ok};

const STEPS: usize = 7;
/// The secret the story writes, restores and keeps through the upgrade.
const MOUNT: &str = "golden";
const SECRET: &str = "golden/first";
const VALUE: &str = "written in step 3";
/// The `spec.backup.trigger` value that requests the story's backup.
const TRIGGER: &str = "golden-path";
const RESTORE: &str = "golden-path";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    test_support::init_user_logging();
    test_support::until_signal(run()).await
}

async fn run() -> anyhow::Result<()> {
    let versions = tools::openbao_versions();
    let (from, to) = (versions[0], *versions.last().context("no OpenBao version")?);
    anyhow::ensure!(
        from != to,
        "the upgrade step needs two OpenBao versions; ci/versions.env pins only {from}"
    );
    let mut timings = Timings {
        started: Instant::now(),
        steps: Vec::new(),
    };

    let mut env = timings
        .step(
            1,
            &format!("install the operator (manifests/{OVERLAY}) on a local control plane"),
            DevEnvironment::up(from, 3),
        )
        .await?;
    let (name, ns) = (env.name().to_owned(), env.namespace().to_owned());

    timings
        .step(
            2,
            &format!("a cluster: {SAMPLE} on OpenBao {from}"),
            async {
                env.apply_cluster().await?;
                let status = env
                    .wait_available(Some(from), Duration::from_secs(600))
                    .await?;
                let voters = status.raft.map(|r| r.voters).unwrap_or_default();
                println!(
                    "OpenBaoCluster {ns}/{name} is Available on OpenBao {from}; Raft voters {}",
                    voters.join(", ")
                );
                Ok(())
            },
        )
        .await?;

    let bao = env.root_client().await?;
    timings
        .step(3, &format!("write a secret ({SECRET})"), async {
            bao.write(&format!("sys/mounts/{MOUNT}"), &json!({"type": "kv"}))
                .await?;
            bao.write(SECRET, &json!({"value": VALUE})).await?;
            anyhow::ensure!(
                read_value(&bao).await?.as_deref() == Some(VALUE),
                "{SECRET} does not read back as written"
            );
            println!(
                "enabled a KV engine at {MOUNT}/, wrote {SECRET} and read it back through Service {}",
                names::active_service(&name)
            );
            Ok(())
        })
        .await?;

    // Changed in the applied sample, so that the later applies keep it.
    env.cluster
        .spec
        .backup
        .as_mut()
        .context("the sample configures no backup")?
        .trigger = Some(TRIGGER.to_owned());
    let backup = timings
        .step(
            4,
            &format!("a backup (spec.backup.trigger: {TRIGGER})"),
            async {
                env.apply_cluster().await?;
                let record = env.wait_backup(TRIGGER, Duration::from_secs(300)).await?;
                println!("{}", env.describe_backup(&record));
                Ok(record)
            },
        )
        .await?;

    timings
        .step(
            5,
            &format!("change {SECRET}, then restore backup {}", backup.name),
            async {
                bao.write(SECRET, &json!({"value": "changed after the backup"}))
                    .await?;
                let restores: Api<OpenBaoRestore> = Api::namespaced(env.client.clone(), &ns);
                let restore: OpenBaoRestore = serde_json::from_value(json!({
                    "apiVersion": "openbao.org/v1alpha1", "kind": "OpenBaoRestore",
                    "metadata": {"name": RESTORE, "namespace": ns},
                    "spec": {"cluster": name, "source": {"backup": backup.name}},
                }))?;
                restores.create(&PostParams::default(), &restore).await?;
                println!("created OpenBaoRestore {ns}/{RESTORE}; waiting for it to finish...");
                let status = poll_until_ok(
                    Duration::from_secs(600),
                    "the restore to finish",
                    || async {
                        let status = restores.get(RESTORE).await?.status.unwrap_or_default();
                        Ok(status.phase.finished().then_some(status))
                    },
                )
                .await?;
                anyhow::ensure!(
                    status.phase == RestorePhase::Completed,
                    "the restore ended {}: {}: {}",
                    status.phase.name(),
                    status.reason.unwrap_or_default(),
                    status.message.unwrap_or_default()
                );
                served(&bao, "the restored value").await?;
                println!(
                    "restore Completed (Raft index {}); {SECRET} reads as written in step 3 again",
                    status
                        .restored_raft_index
                        .map_or_else(|| "unknown".to_owned(), |i| i.to_string())
                );
                Ok(())
            },
        )
        .await?;

    env.cluster.spec.version = to.to_owned();
    timings
        .step(6, &format!("upgrade OpenBao {from} -> {to}"), async {
            env.apply_cluster().await?;
            env.wait_available(Some(to), Duration::from_secs(900))
                .await?;
            served(&bao, "the secret after the upgrade").await?;
            println!("every pod runs OpenBao {to}; {SECRET} still reads as written in step 3");
            println!("{}", env.acting_identity_line()?);
            if let Some(line) = env.controller_memory_line() {
                println!("{line}");
            }
            Ok(())
        })
        .await?;

    timings
        .step(
            7,
            "uninstall: the cluster, its volumes, then the operator",
            uninstall(&env),
        )
        .await?;

    println!();
    timings.print();
    println!("stopping the local environment...");
    Ok(())
}

/// The story's secret, `None` when it does not exist.
async fn read_value(bao: &openbao_client::Client) -> anyhow::Result<Option<String>> {
    Ok(bao
        .read(SECRET)
        .await?
        .and_then(|body| body["data"]["value"].as_str().map(str::to_owned)))
}

/// Waits until the story's secret reads as written in step 3 (through a
/// leader change, a restore or a roll, reads can fail for a moment).
async fn served(bao: &openbao_client::Client, what: &str) -> anyhow::Result<()> {
    poll_until(Duration::from_secs(120), what, || async {
        Ok(read_value(bao).await.ok().flatten().as_deref() == Some(VALUE))
    })
    .await
}

/// Deletes what a user deletes to remove the operator and checks that
/// nothing of it is left: the OpenBaoCluster (its pods, StatefulSet and
/// Services follow it), its volume claims (`deletionPolicy: Retain` keeps
/// them, so the user deletes them), the backup credentials Secret, then
/// `kubectl delete -k manifests/overlays/development` (CRDs, RBAC, the
/// operator's namespace and Deployment).
async fn uninstall(env: &DevEnvironment) -> anyhow::Result<()> {
    let (name, ns) = (env.name(), env.namespace());
    let client = &env.client;
    env.clusters()
        .delete(name, &DeleteParams::default())
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector =
        ListParams::default().labels(&format!("{}={name}", lifecycle_types::labels::CLUSTER));
    poll_until(
        Duration::from_secs(180),
        "the cluster and its pods to go",
        || async {
            Ok(env.clusters().get_opt(name).await?.is_none()
                && pods.list(&selector).await?.items.is_empty())
        },
    )
    .await?;
    println!("deleted OpenBaoCluster {ns}/{name}; its pods are gone");

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let prefix = format!("{}-{}-", names::DATA_VOLUME, names::statefulset(name));
    let kept: Vec<String> = object_names(&claims)
        .await?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    for claim in &kept {
        claims.delete(claim, &DeleteParams::default()).await?;
    }
    // The node agent's volumes are reclaimed (policy Delete) once released.
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    poll_until(
        Duration::from_secs(120),
        "the volume claims and their volumes to go",
        || async {
            let claims_left = object_names(&claims)
                .await?
                .iter()
                .any(|n| n.starts_with(&prefix));
            Ok(!claims_left && object_names(&volumes).await?.is_empty())
        },
    )
    .await?;
    println!(
        "deleted the volume claims deletionPolicy Retain kept ({}); their volumes are reclaimed",
        kept.join(", ")
    );
    if let Some(secret) = env
        .cluster
        .spec
        .backup
        .as_ref()
        .and_then(|b| b.credentials.as_ref())
        .and_then(|c| c.secret_ref.as_deref())
    {
        Api::<Secret>::namespaced(client.clone(), ns)
            .delete(secret, &DeleteParams::default())
            .await?;
        println!("deleted the backup credentials Secret {ns}/{secret}");
    }

    let overlay = workspace_file(&format!("manifests/{OVERLAY}"));
    let output = tokio::process::Command::new(tools::kubernetes("kubectl")?)
        .arg("--kubeconfig")
        .arg(&env.plane.kubeconfig_path)
        .args(["delete", "--wait", "--timeout=180s", "-k"])
        .arg(&overlay)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "kubectl delete -k manifests/{OVERLAY} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let deleted = String::from_utf8_lossy(&output.stdout).lines().count();
    println!("kubectl delete -k manifests/{OVERLAY}: {deleted} objects deleted");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    poll_until(
        Duration::from_secs(120),
        "the operator's namespace and CRDs to go",
        || async {
            let crds_left = crds
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .any(|c| c.spec.group == lifecycle_types::API_GROUP);
            Ok(namespaces.get_opt(OPERATOR_NAMESPACE).await?.is_none() && !crds_left)
        },
    )
    .await?;
    let left = object_names(&pods).await?;
    anyhow::ensure!(left.is_empty(), "pods left in {ns}: {left:?}");
    println!(
        "nothing is left: no {} CRDs, no namespace {OPERATOR_NAMESPACE}, no pods in {ns}",
        lifecycle_types::API_GROUP
    );
    Ok(())
}

/// The names of every object `api` lists.
async fn object_names<K>(api: &Api<K>) -> anyhow::Result<Vec<String>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|object| object.meta().name.clone())
        .collect())
}

/// How long each step took, and when the first began.
struct Timings {
    started: Instant,
    steps: Vec<(String, Duration)>,
}

impl Timings {
    /// Runs one step between a header line and a line with its duration.
    async fn step<T>(
        &mut self,
        number: usize,
        title: &str,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        println!("\n[{number}/{STEPS}] {title}");
        let started = Instant::now();
        let value = work
            .await
            .with_context(|| format!("step {number}/{STEPS} ({title}) failed"))?;
        let took = started.elapsed();
        println!("[{number}/{STEPS}] done in {:.0} s", took.as_secs_f64());
        self.steps.push((title.to_owned(), took));
        Ok(value)
    }

    fn print(&self) {
        println!("Golden path passed:");
        for (number, (title, took)) in self.steps.iter().enumerate() {
            println!("  {}. {title}: {:.0} s", number + 1, took.as_secs_f64());
        }
        let total = self.started.elapsed();
        println!(
            "Total: {} min {} s",
            total.as_secs() / 60,
            total.as_secs() % 60
        );
    }
}
