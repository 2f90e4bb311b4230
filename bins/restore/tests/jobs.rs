//! The backup and restore Jobs end to end, against real servers: OpenBao
//! Raft clusters, an S3-compatible server, a GCS emulator, Azurite and the
//! local filesystem. The binaries run as a Job's container would: flags,
//! environment, exit code and a final result line.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};
use lifecycle_types::identities::{Identity, SubjectVars};
use reqwest::Method;
use serde_json::{Value, json};
use test_support::azure::AzuriteServer;
use test_support::gcs::GcsServer;
use test_support::jobs::{JobRun, job_command, run_job};
use test_support::proxy::{ProxyOptions, TcpProxy};
use test_support::tools::workspace_binary;
use test_support::wait::poll_until_ok;
use test_support::{BaoCluster, BaoClusterOptions, ControlPlane, S3Server};

const NAMESPACE: &str = "team-a";
const CLUSTER: &str = "vault";

/// Files a Job pod would have mounted: the CA and its credential.
struct Mounts {
    dir: tempfile::TempDir,
}

impl Mounts {
    fn new(bao: &BaoCluster) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), bao.ca_pem().unwrap()).unwrap();
        Self { dir }
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// A token holding only `identity`'s policy, as a file named `name`.
    async fn identity_token(&self, bao: &BaoCluster, name: &str, identity: Identity) -> PathBuf {
        self.file(name, &bao.identity_token(identity).await.unwrap())
    }

    fn ca(&self) -> String {
        self.dir.path().join("ca.crt").display().to_string()
    }
}

/// A single-node cluster with the backup and restore identities' tokens
/// mounted as files and a root client with a `kv` mount.
struct SingleNode {
    bao: BaoCluster,
    mounts: Mounts,
    backup_token: PathBuf,
    restore_token: PathBuf,
    client: openbao_client::Client,
}

impl SingleNode {
    async fn start() -> Self {
        let bao = BaoCluster::start(BaoClusterOptions {
            nodes: 1,
            ..Default::default()
        })
        .await
        .unwrap();
        let mounts = Mounts::new(&bao);
        let backup_token = mounts
            .identity_token(&bao, "backup-token", Identity::Backup)
            .await;
        let restore_token = mounts
            .identity_token(&bao, "restore-token", Identity::Restore)
            .await;
        let client = kv(&bao).await;
        Self {
            bao,
            mounts,
            backup_token,
            restore_token,
            client,
        }
    }
}

/// Environment for a Job talking to `bao` with a token file.
fn token_env(bao: &BaoCluster, mounts: &Mounts, token_file: &Path) -> Vec<(String, String)> {
    vec![
        ("OPENBAO_ADDR".into(), bao.addrs().join(",")),
        ("OPENBAO_CACERT".into(), mounts.ca()),
        ("OPENBAO_AUTH".into(), "token".into()),
        (
            "OPENBAO_TOKEN_FILE".into(),
            token_file.display().to_string(),
        ),
        ("OPENBAO_DISCOVERY_TIMEOUT".into(), "20s".into()),
    ]
}

fn s3_env(s3: &S3Server, secret: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), s3.access_key_id().into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        ("AWS_REGION".into(), test_support::s3::REGION.into()),
    ]
}

fn args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| {
            if v.is_empty() {
                vec![format!("--{k}")]
            } else {
                vec![format!("--{k}"), v.to_string()]
            }
        })
        .collect()
}

async fn backup(envs: &[(String, String)], extra: &[(&str, &str)]) -> JobRun {
    let mut all = vec![("namespace", NAMESPACE), ("cluster", CLUSTER)];
    all.extend_from_slice(extra);
    run_job(&workspace_binary("backup").unwrap(), &args(&all), envs)
        .await
        .unwrap()
}

async fn restore(envs: &[(String, String)], extra: &[(&str, &str)]) -> JobRun {
    let mut all = vec![
        ("namespace", NAMESPACE),
        ("cluster", CLUSTER),
        ("wait-timeout", "90s"),
    ];
    all.extend_from_slice(extra);
    run_job(&workspace_binary("restore").unwrap(), &args(&all), envs)
        .await
        .unwrap()
}

fn assert_exit(run: &JobRun, code: i32, reason: &str) -> Value {
    assert_eq!(run.code, Some(code), "{}", run.output());
    let result = run
        .result()
        .unwrap_or_else(|| panic!("no result line:\n{}", run.output()));
    assert_eq!(result["reason"], reason, "{}", run.output());
    result
}

async fn kv(bao: &BaoCluster) -> openbao_client::Client {
    let leader = bao.leader().await.unwrap();
    let client = openbao_client::Client::new(
        openbao_client::ClientConfig::new(&bao.addr(leader))
            .unwrap()
            .with_ca_pem(bao.ca_pem().unwrap()),
    )
    .unwrap()
    .with_token(openbao_client::Token::new(bao.root_token()));
    if client.read("sys/mounts/kv").await.unwrap_or(None).is_none() {
        client
            .write(
                "sys/mounts/kv",
                &json!({"type": "kv", "options": {"version": "1"}}),
            )
            .await
            .unwrap();
    }
    client
}

async fn write_secrets(client: &openbao_client::Client, range: std::ops::Range<usize>, tag: &str) {
    stream::iter(range)
        .map(|i| {
            let client = client.clone();
            let tag = tag.to_owned();
            async move {
                client
                    .write(&format!("kv/s{i}"), &json!({"v": format!("{tag}-{i}")}))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

/// Waits until secret `s{i}` reads `expected` (restored data shows up
/// seconds after the restore call returns).
async fn wait_value(client: &openbao_client::Client, i: usize, expected: Option<&str>) {
    let path = format!("kv/s{i}");
    poll_until_ok(Duration::from_secs(60), "restored data", || async {
        let value = client.read(&path).await.ok().flatten();
        let actual = value
            .as_ref()
            .and_then(|v| v["data"]["v"].as_str().map(str::to_owned));
        Ok((actual.as_deref() == expected).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_secrets_round_trip_through_s3_with_jwt_identities() {
    let plane = ControlPlane::start().await.unwrap();
    let bao = BaoCluster::start_default().await.unwrap();
    let vars = SubjectVars {
        operator_namespace: "openbao-system",
        namespace: NAMESPACE,
        cluster: CLUSTER,
    };
    bao.install_operator_identities(&plane, &vars)
        .await
        .unwrap();
    let s3 = S3Server::start("backups").await.unwrap();
    let mounts = Mounts::new(&bao);
    let job_env = |sa: &str, role: &str, token: &str| {
        let mut env = vec![
            ("OPENBAO_ADDR".to_owned(), bao.addrs().join(",")),
            ("OPENBAO_CACERT".to_owned(), mounts.ca()),
            ("OPENBAO_JWT_ROLE".to_owned(), role.to_owned()),
            (
                "OPENBAO_JWT_TOKEN_FILE".to_owned(),
                mounts.file(sa, token).display().to_string(),
            ),
        ];
        env.extend(s3_env(&s3, s3.secret_access_key()));
        env
    };
    let token = |sa: &'static str| {
        plane.service_account_token(NAMESPACE, sa, "openbao-internal", Duration::from_secs(600))
    };
    let backup_env = job_env(
        "vault-backup",
        "openbao-operator-backup",
        &token("vault-backup").await.unwrap(),
    );
    let restore_env = job_env(
        "vault-restore",
        "openbao-operator-restore",
        &token("vault-restore").await.unwrap(),
    );

    let client = kv(&bao).await;
    write_secrets(&client, 0..10_000, "original").await;
    let destination = ("destination", "s3://backups/prod");
    let endpoint = ("s3-endpoint", s3.endpoint.as_str());
    let run = backup(&backup_env, &[destination, endpoint]).await;
    let result = assert_exit(&run, 0, "Succeeded");
    let details = &result["details"];
    assert!(
        details["snapshot"]
            .as_str()
            .unwrap()
            .starts_with("prod/team-a/vault/"),
        "{details}"
    );
    assert!(details["size"].as_u64().unwrap() > 100_000);
    assert_eq!(details["sha256"].as_str().unwrap().len(), 64);
    assert!(details["raftIndex"].as_u64().unwrap() > 10_000, "{details}");
    assert_eq!(details["openbaoVersion"], bao.version());

    // Change, delete and add data after the backup.
    write_secrets(&client, 0..100, "changed").await;
    for i in 100..200 {
        client.delete(&format!("kv/s{i}")).await.unwrap();
    }
    write_secrets(&client, 10_000..10_100, "added").await;

    let run = restore(&restore_env, &[destination, endpoint, ("latest", "")]).await;
    let result = assert_exit(&run, 0, "Succeeded");
    assert!(
        result["details"]["restoredRaftIndex"].as_u64().is_some(),
        "{result}"
    );

    wait_value(&client, 10_050, None).await;
    let keys = client.list("kv/").await.unwrap();
    assert_eq!(keys.len(), 10_000, "exactly the original keys");
    let mismatches: Vec<_> = stream::iter(0..10_000usize)
        .map(|i| {
            let client = client.clone();
            async move {
                let value = client.read(&format!("kv/s{i}")).await.unwrap().unwrap();
                (value["data"]["v"] != format!("original-{i}")).then_some(i)
            }
        })
        .buffer_unordered(32)
        .filter_map(|m| async move { m })
        .collect()
        .await;
    assert!(
        mismatches.is_empty(),
        "secrets differ after restore: {:?}",
        &mismatches[..mismatches.len().min(10)]
    );
    // Logs and results never carry the JWT.
    for text in [run.stdout.as_str(), run.stderr.as_str()] {
        assert!(!text.contains("eyJ"), "a JWT leaked into the Job output");
    }
}

/// One cluster, each destination kind: back up, change a secret, restore,
/// see the old value again. (GCS is not here: object_store's GCS client
/// uploads through the XML multipart API, which the GCS emulator that can
/// be installed here, fake-gcs-server, does not implement.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_destination_kind_backs_up_and_restores() {
    let SingleNode {
        bao,
        mounts,
        backup_token,
        restore_token,
        client,
    } = SingleNode::start().await;

    let s3 = S3Server::start("backups").await.unwrap();
    let azure = AzuriteServer::start("backups").await.unwrap();
    let local = tempfile::tempdir().unwrap();
    let local_url = format!("file://{}", local.path().display());
    // (kind, destination URL, storage environment, extra flags)
    type Case<'a> = (
        &'a str,
        String,
        Vec<(String, String)>,
        Vec<(&'a str, String)>,
    );
    let kinds: Vec<Case> = vec![
        (
            "s3",
            "s3://backups/p".into(),
            s3_env(&s3, s3.secret_access_key()),
            vec![("s3-endpoint", s3.endpoint.clone())],
        ),
        (
            "azure",
            "az://backups/p".into(),
            vec![
                ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
                ("AZURITE_BLOB_STORAGE_URL".into(), azure.endpoint.clone()),
            ],
            vec![],
        ),
        ("local", local_url, vec![], vec![]),
    ];
    for (kind, url, storage_env, extra) in kinds {
        write_secrets(&client, 0..50, kind).await;
        let mut flags: Vec<(&str, &str)> = vec![("destination", url.as_str())];
        flags.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let mut env = token_env(&bao, &mounts, &backup_token);
        env.extend(storage_env.clone());
        let run = backup(&env, &flags).await;
        assert_exit(&run, 0, "Succeeded");

        write_secrets(&client, 0..50, "after").await;
        let mut env = token_env(&bao, &mounts, &restore_token);
        env.extend(storage_env);
        flags.push(("latest", ""));
        let run = restore(&env, &flags).await;
        assert_exit(&run, 0, "Succeeded");
        wait_value(&client, 7, Some(&format!("{kind}-7"))).await;
    }
    let local_files: Vec<_> = walk(local.path());
    assert!(
        local_files.iter().any(|f| f.ends_with(".snap"))
            && local_files.iter().any(|f| f.ends_with(".json")),
        "{local_files:?}"
    );

    // A backup copied to a folder of another shape restores from its
    // manifest's URL; the snapshot is found next to it.
    let copies = tempfile::tempdir().unwrap();
    let moved = copies.path().join("archive/2026");
    std::fs::create_dir_all(&moved).unwrap();
    for file in &local_files {
        let path = Path::new(file);
        std::fs::copy(path, moved.join(path.file_name().unwrap())).unwrap();
    }
    let manifest = walk(&moved)
        .into_iter()
        .find(|f| f.ends_with(".json"))
        .unwrap();
    // Only the copy is left to restore from.
    for file in &local_files {
        std::fs::remove_file(file).unwrap();
    }
    write_secrets(&client, 0..50, "after-copy").await;
    let run = restore(
        &token_env(&bao, &mounts, &restore_token),
        &[("manifest", &format!("file://{manifest}"))],
    )
    .await;
    let result = assert_exit(&run, 0, "Succeeded");
    assert!(
        manifest.ends_with(result["details"]["manifest"].as_str().unwrap()),
        "{result}"
    );
    wait_value(&client, 7, Some("local-7")).await;
    // The manifest and the backup it names are one choice: not both.
    let run = restore(
        &token_env(&bao, &mounts, &restore_token),
        &[("manifest", &format!("file://{manifest}")), ("latest", "")],
    )
    .await;
    assert_exit(&run, 2, "InvalidConfiguration");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_backups_and_removes_old_debris() {
    let bao = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let mounts = Mounts::new(&bao);
    let token = mounts.identity_token(&bao, "token", Identity::Backup).await;
    let local = tempfile::tempdir().unwrap();
    let url = format!("file://{}", local.path().display());
    let env = token_env(&bao, &mounts, &token);
    let folder = local.path().join("team-a/vault");

    for _ in 0..3 {
        assert_exit(
            &backup(&env, &[("destination", &url)]).await,
            0,
            "Succeeded",
        );
    }
    // Debris of a failed attempt, two hours old, and a fresh one.
    std::fs::write(folder.join("20200101T000000Z-old0debris.snap"), b"partial").unwrap();
    let touched = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(folder.join("20200101T000000Z-old0debris.snap"))
        .status()
        .unwrap();
    assert!(touched.success());
    std::fs::write(folder.join("20990101T000000Z-newdebris.snap"), b"in flight").unwrap();

    let run = backup(&env, &[("destination", &url), ("keep-last", "2")]).await;
    let result = assert_exit(&run, 0, "Succeeded");
    let mut files: Vec<_> = walk(&folder)
        .into_iter()
        .map(|f| f.rsplit('/').next().unwrap().to_owned())
        .collect();
    files.sort();
    let manifests = files.iter().filter(|f| f.ends_with(".json")).count();
    let snapshots = files
        .iter()
        .filter(|f| f.ends_with(".snap") && !f.contains("debris"))
        .count();
    assert_eq!((manifests, snapshots), (2, 2), "{files:?}\n{result}");
    assert!(
        !files.iter().any(|f| f.contains("old0debris")),
        "old debris stays: {files:?}"
    );
    assert!(
        files.iter().any(|f| f.contains("newdebris")),
        "young debris must survive: {files:?}"
    );
    // The newest backup (this run's) is among the survivors.
    let newest = result["details"]["snapshot"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert!(files.contains(&newest.to_owned()));
}

/// Stops the S3 server after `after` bytes of upload through a proxy.
async fn s3_failing_after(
    s3: &S3Server,
    after: u64,
    rate: Option<u64>,
) -> (TcpProxy, tokio::sync::oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let target = s3.endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = TcpProxy::start(
        target,
        ProxyOptions {
            upload_rate: rate,
            after_bytes: Some((
                after,
                Box::new(move || {
                    let _ = tx.send(());
                }),
            )),
        },
    )
    .await
    .unwrap();
    (proxy, rx)
}

/// Starts a backup into `s3` through a throttled proxy and returns, with the
/// running Job, once `after` bytes of its upload have passed.
async fn backup_in_flight(
    s3: &S3Server,
    env: &[(String, String)],
    after: u64,
    rate: u64,
    retries: &str,
) -> (TcpProxy, tokio::process::Child) {
    let (proxy, passed) = s3_failing_after(s3, after, Some(rate)).await;
    let proxy_url = format!("http://{}", proxy.addr);
    let flags = args(&[
        ("namespace", NAMESPACE),
        ("cluster", CLUSTER),
        ("destination", "s3://backups/p"),
        ("s3-endpoint", &proxy_url),
        ("retries", retries),
    ]);
    let job = job_command(&workspace_binary("backup").unwrap(), &flags, env)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), passed)
        .await
        .unwrap()
        .unwrap();
    (proxy, job)
}

async fn finish(job: tokio::process::Child) -> JobRun {
    let output = job.wait_with_output().await.unwrap();
    JobRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into(),
        stderr: String::from_utf8_lossy(&output.stderr).into(),
    }
}

fn manifests(s3: &S3Server) -> usize {
    objects(s3).iter().filter(|f| f.ends_with(".json")).count()
}

fn objects(s3: &S3Server) -> Vec<String> {
    walk(&s3.data_dir().join("backups"))
        .into_iter()
        .filter(|f| !f.contains("/.sgw"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_faults_end_with_the_right_code_and_no_manifest() {
    let mut bao = BaoCluster::start_default().await.unwrap();
    let mounts = Mounts::new(&bao);
    let token = mounts.identity_token(&bao, "token", Identity::Backup).await;
    let client = kv(&bao).await;
    // A snapshot (~60 MB) much larger than the Job's upload buffers, so the
    // OpenBao stream is still open while the throttled upload crawls.
    write_secrets(&client, 0..5_000, &"x".repeat(12_000)).await;
    let mut s3 = S3Server::start("backups").await.unwrap();
    let base_env = token_env(&bao, &mounts, &token);
    let with_secret = |secret: &str| {
        let mut env = base_env.clone();
        env.extend(s3_env(&s3, secret));
        env
    };
    let (good_env, bad_env) = (
        with_secret(s3.secret_access_key()),
        with_secret("wrong-secret"),
    );

    // Wrong storage credentials.
    let run = backup(
        &bad_env,
        &[
            ("destination", "s3://backups/p"),
            ("s3-endpoint", &s3.endpoint),
            ("retries", "0"),
        ],
    )
    .await;
    let result = assert_exit(&run, 6, "StorageFailed");
    assert!(
        result["message"].as_str().unwrap().contains("credentials"),
        "{result}"
    );
    assert!(
        !run.stderr.contains("wrong-secret") && !run.stdout.contains("wrong-secret"),
        "the secret leaked"
    );
    assert!(objects(&s3).is_empty(), "{:?}", objects(&s3));

    // The OpenBao leader dies mid-snapshot (the upload is throttled so the
    // snapshot stream is still open when it dies).
    let (proxy, job) = backup_in_flight(&s3, &good_env, 1_000_000, 1_500_000, "0").await;
    let leader = bao.leader().await.unwrap();
    bao.stop_node(leader);
    let run = finish(job).await;
    assert_exit(&run, 5, "SnapshotFailed");
    assert_eq!(
        manifests(&s3),
        0,
        "a manifest was written: {:?}",
        objects(&s3)
    );
    bao.start_node(leader).unwrap();
    bao.wait_unsealed(leader).await.unwrap();
    drop(proxy);

    // With retries, the same fault heals on the new leader.
    let (proxy, job) = backup_in_flight(&s3, &good_env, 1_000_000, 8_000_000, "2").await;
    let leader = bao.leader().await.unwrap();
    bao.stop_node(leader);
    let run = finish(job).await;
    let result = assert_exit(&run, 0, "Succeeded");
    assert!(
        result["details"]["attempts"].as_u64().unwrap() >= 2,
        "{result}"
    );
    bao.start_node(leader).unwrap();
    drop(proxy);

    // The object store stops mid-upload.
    let before = manifests(&s3);
    let (_proxy, job) = backup_in_flight(&s3, &good_env, 2_000_000, 2_000_000, "0").await;
    s3.stop();
    let run = finish(job).await;
    assert_exit(&run, 6, "StorageFailed");
    assert_eq!(
        manifests(&s3),
        before,
        "a failed backup wrote a manifest: {:?}",
        objects(&s3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_backup_without_a_manifest() {
    let bao = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let mounts = Mounts::new(&bao);
    let token = mounts.identity_token(&bao, "token", Identity::Backup).await;
    write_secrets(&kv(&bao).await, 0..2_000, &"y".repeat(2_000)).await;
    let s3 = S3Server::start("backups").await.unwrap();
    let mut env = token_env(&bao, &mounts, &token);
    env.extend(s3_env(&s3, s3.secret_access_key()));
    let (_proxy, job) = backup_in_flight(&s3, &env, 500_000, 500_000, "2").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(job.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let run = finish(job).await;
    assert_exit(&run, 8, "Interrupted");
    assert!(
        objects(&s3).is_empty(),
        "an interrupted backup left objects: {:?}",
        objects(&s3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_bad_backups_and_leaves_the_cluster_untouched() {
    let SingleNode {
        bao,
        mounts,
        backup_token,
        restore_token,
        client,
    } = SingleNode::start().await;
    write_secrets(&client, 0..100, "original").await;
    let local = tempfile::tempdir().unwrap();
    let url = format!("file://{}", local.path().display());
    let run = backup(
        &token_env(&bao, &mounts, &backup_token),
        &[("destination", &url)],
    )
    .await;
    let result = assert_exit(&run, 0, "Succeeded");
    let snapshot = local
        .path()
        .join(result["details"]["snapshot"].as_str().unwrap());
    let manifest = local
        .path()
        .join(result["details"]["manifest"].as_str().unwrap());
    let name = manifest.file_stem().unwrap().to_str().unwrap().to_owned();
    let original = std::fs::read(&snapshot).unwrap();
    // A marker written after the backup: any restore would remove it.
    write_secrets(&client, 5_000..5_001, "marker").await;
    let env = token_env(&bao, &mounts, &restore_token);
    let flags = [("destination", url.as_str()), ("backup", name.as_str())];

    let mut corrupted = original.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xFF;
    std::fs::write(&snapshot, &corrupted).unwrap();
    let result = assert_exit(&restore(&env, &flags).await, 7, "VerificationFailed");
    assert!(
        result["message"].as_str().unwrap().contains("SHA-256"),
        "{result}"
    );

    std::fs::write(&snapshot, &original[..original.len() - 1000]).unwrap();
    let result = assert_exit(&restore(&env, &flags).await, 7, "VerificationFailed");
    assert!(
        result["message"].as_str().unwrap().contains("truncated"),
        "{result}"
    );

    std::fs::write(&snapshot, &original).unwrap();
    let manifest_text = std::fs::read(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    let result = assert_exit(&restore(&env, &flags).await, 7, "VerificationFailed");
    assert!(
        result["message"].as_str().unwrap().contains("manifest"),
        "{result}"
    );
    std::fs::write(&manifest, &manifest_text).unwrap();

    // The backup identity cannot restore.
    let result = assert_exit(
        &restore(&token_env(&bao, &mounts, &backup_token), &flags).await,
        3,
        "AuthenticationFailed",
    );
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{result}"
    );
    // And the restore identity cannot take backups (or read secrets).
    let result = assert_exit(
        &backup(&env, &[("destination", &url)]).await,
        3,
        "AuthenticationFailed",
    );
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{result}"
    );
    let restore_client = client.with_token(openbao_client::Token::new(
        std::fs::read_to_string(&restore_token).unwrap(),
    ));
    assert!(
        restore_client
            .read("kv/s1")
            .await
            .unwrap_err()
            .is_permission_denied()
    );

    // A check that cannot be made refuses: a version that does not parse
    // or a missing cluster id, each naming the flag that overrides it.
    let original_manifest: Value = serde_json::from_slice(&manifest_text).unwrap();
    let mut unknown_version = original_manifest.clone();
    unknown_version["openbaoVersion"] = json!("2.7");
    std::fs::write(&manifest, serde_json::to_vec(&unknown_version).unwrap()).unwrap();
    let result = assert_exit(&restore(&env, &flags).await, 7, "VerificationFailed");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains("cannot tell") && message.contains("--allow-newer-version"),
        "{result}"
    );
    let mut no_cluster_id = original_manifest.clone();
    no_cluster_id.as_object_mut().unwrap().remove("clusterId");
    std::fs::write(&manifest, serde_json::to_vec(&no_cluster_id).unwrap()).unwrap();
    let result = assert_exit(&restore(&env, &flags).await, 7, "VerificationFailed");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains("no cluster id") && message.contains("--allow-other-cluster"),
        "{result}"
    );
    // A manifest larger than 64 KiB is refused unread, even when it is
    // the real one padded with whitespace (valid JSON).
    let mut padded = manifest_text.clone();
    padded.resize(64 * 1024 + 1, b' ');
    std::fs::write(&manifest, &padded).unwrap();
    let result = assert_exit(&restore(&env, &flags).await, 7, "VerificationFailed");
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("larger than 65536 bytes"),
        "{result}"
    );
    std::fs::write(&manifest, &manifest_text).unwrap();

    // Nothing above touched the cluster.
    wait_value(&client, 5_000, Some("marker-5000")).await;

    // A backup of another OpenBao cluster is refused unless allowed.
    let other = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        seal_key: Some(bao.seal_key().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let other_mounts = Mounts::new(&other);
    let other_token = other_mounts
        .identity_token(&other, "token", Identity::Restore)
        .await;
    let other_env = token_env(&other, &other_mounts, &other_token);
    let result = assert_exit(&restore(&other_env, &flags).await, 7, "VerificationFailed");
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("allow-other-cluster"),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_snapshot_is_not_restored_onto_an_older_server() {
    let versions = test_support::tools::openbao_versions();
    let (older, newer) = (versions[0], versions[versions.len() - 1]);
    let source = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        version: newer.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let target = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        version: older.into(),
        seal_key: Some(source.seal_key().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mounts = Mounts::new(&source);
    let backup_token = mounts
        .identity_token(&source, "backup", Identity::Backup)
        .await;
    let local = tempfile::tempdir().unwrap();
    let url = format!("file://{}", local.path().display());
    assert_exit(
        &backup(
            &token_env(&source, &mounts, &backup_token),
            &[("destination", &url)],
        )
        .await,
        0,
        "Succeeded",
    );

    let target_mounts = Mounts::new(&target);
    let restore_token = target_mounts
        .identity_token(&target, "restore", Identity::Restore)
        .await;
    let env = token_env(&target, &target_mounts, &restore_token);
    let run = restore(
        &env,
        &[
            ("destination", &url),
            ("latest", ""),
            ("allow-other-cluster", ""),
        ],
    )
    .await;
    let result = assert_exit(&run, 7, "VerificationFailed");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains(newer)
            && message.contains(older)
            && message.contains("Upgrade the target"),
        "{message}"
    );
    // The older server is untouched and still active.
    let (status, _) = target
        .request(0, Method::GET, "sys/health", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
}

/// GCS: object_store uploads large objects through the XML multipart API,
/// which the installable emulator (fake-gcs-server) lacks, so the backup is
/// taken to a local folder and copied in with single-part uploads; the
/// restore then reads, verifies and restores it from the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_reads_a_backup_from_gcs() {
    let SingleNode {
        bao,
        mounts,
        backup_token,
        restore_token,
        client,
    } = SingleNode::start().await;
    write_secrets(&client, 0..20, "gcs").await;
    let local = tempfile::tempdir().unwrap();
    let url = format!("file://{}", local.path().display());
    assert_exit(
        &backup(
            &token_env(&bao, &mounts, &backup_token),
            &[("destination", &url)],
        )
        .await,
        0,
        "Succeeded",
    );
    write_secrets(&client, 0..20, "after").await;

    // Copy the backup in through the emulator's JSON media upload.
    let gcs = GcsServer::start("backups").await.unwrap();
    let http = reqwest::Client::new();
    for file in walk(local.path()) {
        let relative = file
            .strip_prefix(&format!("{}/", local.path().display()))
            .unwrap()
            .to_owned();
        let response = http
            .post(
                url::Url::parse_with_params(
                    &format!("{}/upload/storage/v1/b/backups/o", gcs.endpoint),
                    &[("uploadType", "media"), ("name", &format!("p/{relative}"))],
                )
                .unwrap(),
            )
            .body(std::fs::read(&file).unwrap())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "upload {relative}: {}",
            response.status()
        );
    }

    let flags = [
        ("destination", "gs://backups/p"),
        ("gcs-endpoint", gcs.endpoint.as_str()),
        ("storage-emulator", ""),
        ("latest", ""),
    ];
    assert_exit(
        &restore(&token_env(&bao, &mounts, &restore_token), &flags).await,
        0,
        "Succeeded",
    );
    wait_value(&client, 3, Some("gcs-3")).await;
}
