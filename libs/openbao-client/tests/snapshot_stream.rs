//! A snapshot of a cluster holding 20,000 KV entries streams through the
//! client with peak memory far below its size, and the same stream, piped
//! straight into `snapshot-force` on another cluster with the same seal,
//! brings every entry back.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use openbao_client::{Client, ClientConfig, Token};
use serde_json::json;
use test_support::wait::poll_until_ok;
use test_support::{BaoCluster, BaoClusterOptions};

const ENTRIES: usize = 20_000;
const VALUE_BYTES: usize = 1_500;

fn root_client(bao: &BaoCluster, index: usize) -> Client {
    let mut config = ClientConfig::new(&bao.addr(index)).unwrap();
    if let Some(ca) = bao.ca_pem() {
        config = config.with_ca_pem(ca);
    }
    Client::new(config)
        .unwrap()
        .with_token(Token::new(bao.root_token()))
}

fn value_for(i: usize) -> String {
    // Distinct, deterministic and incompressible enough to keep the snapshot large.
    let seed = format!("{i:08}-");
    seed.repeat(VALUE_BYTES / seed.len() + 1)[..VALUE_BYTES].to_owned()
}

/// Peak resident memory of this process (VmHWM) in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Resets the peak so the next reading measures only what follows.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_streams_in_bounded_memory_and_restores_elsewhere() {
    let source = BaoCluster::start_default().await.unwrap();
    let leader = source.leader().await.unwrap();
    let client = root_client(&source, leader);
    client
        .write(
            "sys/mounts/kv",
            &json!({"type": "kv", "options": {"version": "1"}}),
        )
        .await
        .unwrap();

    let started = Instant::now();
    stream::iter(0..ENTRIES)
        .map(|i| {
            let client = client.clone();
            async move {
                client
                    .write(&format!("kv/e{i}"), &json!({ "v": value_for(i) }))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    println!(
        "wrote {ENTRIES} entries of {VALUE_BYTES} B in {:?}",
        started.elapsed()
    );

    // Stream into a sink that only counts, measuring this process's peak memory.
    reset_peak_rss();
    let baseline = peak_rss();
    let started = Instant::now();
    let mut size = 0u64;
    let mut largest_chunk = 0usize;
    let mut snapshot = Box::pin(client.snapshot().await.unwrap());
    while let Some(chunk) = snapshot.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len() as u64;
        largest_chunk = largest_chunk.max(chunk.len());
    }
    let peak = peak_rss();
    let growth = peak.saturating_sub(baseline);
    println!(
        "snapshot: {size} bytes in {:?}; process peak RSS {} KiB (baseline {} KiB, growth {} KiB); largest chunk {largest_chunk} B",
        started.elapsed(),
        peak / 1024,
        baseline / 1024,
        growth / 1024
    );
    assert!(
        size > (ENTRIES * VALUE_BYTES) as u64 / 2,
        "snapshot of {size} bytes is too small to hold the data"
    );
    assert!(
        growth < size / 4,
        "memory grew by {growth} bytes streaming a {size}-byte snapshot"
    );

    // Pipe a fresh stream from the source straight into the target.
    let target = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        seal_key: Some(source.seal_key().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let target_client = root_client(&target, 0);
    let stream = client.snapshot().await.unwrap();
    target_client.snapshot_force(stream).await.unwrap();

    // The restore carries the source's tokens; data appears seconds later.
    let restored = target_client.with_token(Token::new(source.root_token()));
    let keys = poll_until_ok(
        Duration::from_secs(60),
        "restored data to appear",
        || async {
            let keys = restored.list("kv/").await.unwrap_or_default();
            Ok((keys.len() == ENTRIES).then_some(keys))
        },
    )
    .await
    .unwrap();
    assert_eq!(keys.len(), ENTRIES);
    for i in (0..ENTRIES).step_by(97) {
        let value = restored.read(&format!("kv/e{i}")).await.unwrap().unwrap();
        assert_eq!(value["data"]["v"], value_for(i), "entry {i}");
    }
}
