//! Backup of a >= 256 MiB snapshot into a real S3 server: this project's
//! streaming `backup` binary beside the baseline `bao operator raft snapshot
//! save` to a file followed by `aws s3 cp` of that file, in one run, with
//! wall time, throughput and peak RSS of each process (GNU time).
//!
//! Run with `ci/bench.sh backup` (it installs the AWS CLI into the cache).
//! Figures depend on the machine; nothing here asserts a timing.

// A benchmark fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt, stream};
use lifecycle_types::identities::Identity;
use serde_json::json;
use test_support::{BaoCluster, BaoClusterOptions, S3Server};

const TARGET_BYTES: u64 = 256 * 1024 * 1024;
const VALUE_BYTES: usize = 12_000;

/// Peak RSS (KiB) and elapsed seconds of `command`, measured by GNU time.
fn measured(command: Command, what: &str) -> (u64, f64) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let envs: Vec<_> = command
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let status = Command::new("/usr/bin/time")
        .arg("-o")
        .arg(report.path())
        .arg("-f")
        .arg("%M %e")
        .arg(program)
        .args(args)
        .envs(envs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{what} failed");
    let text = std::fs::read_to_string(report.path()).unwrap();
    let mut fields = text.split_whitespace().rev().take(2).collect::<Vec<_>>();
    fields.reverse();
    (fields[0].parse().unwrap(), fields[1].parse().unwrap())
}

fn aws_cli() -> std::path::PathBuf {
    let path = test_support::tools::cache_dir().join("bench-awscli/bin/aws");
    assert!(
        path.is_file(),
        "{} is missing; run ci/bench.sh backup",
        path.display()
    );
    path
}

#[tokio::main]
async fn main() {
    let bao = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca.crt");
    std::fs::write(&ca, bao.ca_pem().unwrap()).unwrap();
    let token_file = work.path().join("backup-token");
    std::fs::write(
        &token_file,
        bao.identity_token(Identity::Backup).await.unwrap(),
    )
    .unwrap();

    let client = openbao_client::Client::new(
        openbao_client::ClientConfig::new(&bao.addr(0))
            .unwrap()
            .with_ca_pem(bao.ca_pem().unwrap()),
    )
    .unwrap()
    .with_token(openbao_client::Token::new(bao.root_token()));
    client
        .write(
            "sys/mounts/kv",
            &json!({"type": "kv", "options": {"version": "1"}}),
        )
        .await
        .unwrap();
    let entries = (TARGET_BYTES as usize / VALUE_BYTES) * 11 / 10;
    let started = Instant::now();
    stream::iter(0..entries)
        .map(|i| {
            let client = client.clone();
            async move {
                let value = format!("{i:010}").repeat(VALUE_BYTES / 10);
                client
                    .write(&format!("kv/e{i}"), &json!({ "v": value }))
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    println!(
        "wrote {entries} entries of {VALUE_BYTES} B in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let s3 = S3Server::start("bench").await.unwrap();
    let storage_env = [
        ("AWS_ACCESS_KEY_ID", s3.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key().to_owned()),
        ("AWS_REGION", test_support::s3::REGION.to_owned()),
        ("AWS_DEFAULT_REGION", test_support::s3::REGION.to_owned()),
    ];

    let mut rows = Vec::new();
    for round in 1..=2 {
        // Baseline: snapshot to a local file, then upload it.
        let file = work.path().join("snapshot.snap");
        let mut save = Command::new(test_support::tools::bao(bao.version()).unwrap());
        save.args(["operator", "raft", "snapshot", "save"])
            .arg(&file)
            .env("BAO_ADDR", bao.addr(0))
            .env("BAO_CACERT", &ca)
            .env("BAO_TOKEN", std::fs::read_to_string(&token_file).unwrap());
        let (save_rss, save_secs) = measured(save, "bao operator raft snapshot save");
        let size = std::fs::metadata(&file).unwrap().len();
        let mut upload = Command::new(aws_cli());
        upload
            .args(["s3", "cp", "--only-show-errors"])
            .arg(&file)
            .arg(format!("s3://bench/baseline/{round}.snap"))
            .args(["--endpoint-url", &s3.endpoint])
            .envs(storage_env.iter().map(|(k, v)| (k, v)));
        let (upload_rss, upload_secs) = measured(upload, "aws s3 cp");
        std::fs::remove_file(&file).unwrap();
        rows.push((
            format!("baseline save + aws s3 cp (round {round})"),
            save_secs + upload_secs,
            size,
            save_rss.max(upload_rss),
            format!(
                "save {save_secs:.2}s / {save_rss} KiB, upload {upload_secs:.2}s / {upload_rss} KiB"
            ),
        ));

        // Ours: one streaming process, no local file.
        let mut ours = Command::new(env!("CARGO_BIN_EXE_backup"));
        ours.args([
            "--namespace",
            "bench",
            "--cluster",
            "bench",
            "--retries",
            "0",
        ])
        .args([
            "--destination",
            "s3://bench/ours",
            "--s3-endpoint",
            &s3.endpoint,
        ])
        .env("OPENBAO_ADDR", bao.addr(0))
        .env("OPENBAO_CACERT", &ca)
        .env("OPENBAO_AUTH", "token")
        .env("OPENBAO_TOKEN_FILE", &token_file)
        .envs(storage_env.iter().map(|(k, v)| (k, v)));
        let (rss, secs) = measured(ours, "backup");
        rows.push((
            format!("backup binary (round {round})"),
            secs,
            size,
            rss,
            String::new(),
        ));
    }
    assert!(
        rows[0].2 >= TARGET_BYTES,
        "snapshot of {} bytes is below 256 MiB",
        rows[0].2
    );

    println!(
        "\n{:<42} {:>9} {:>10} {:>14}  detail",
        "what", "wall s", "MiB/s", "peak RSS MiB"
    );
    for (what, secs, size, rss, detail) in &rows {
        let mib = *size as f64 / (1024.0 * 1024.0);
        println!(
            "{what:<42} {secs:>9.2} {:>10.1} {:>14.1}  {detail}",
            mib / secs,
            *rss as f64 / 1024.0
        );
    }
    println!(
        "\nsnapshot size: {:.1} MiB",
        rows[0].2 as f64 / (1024.0 * 1024.0)
    );
}
