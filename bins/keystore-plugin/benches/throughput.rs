//! Encrypt and decrypt throughput and latency through the plugin (L1KeyCrypto
//! over go-plugin AutoMTLS, loaded by plugin-sdk's catalog) against direct
//! Transit HTTP calls from the same machine, at 1 and 32 concurrent callers.
//! Both sides are driven by the same Go host, with tokens of the same AppRole.
//! The direct side makes one Transit HTTP call per operation (Go net/http,
//! keep-alive, no `batch_input`), as an application calling Transit would;
//! the plugin coalesces concurrent calls of one key into `batch_input`
//! requests (`src/batch.rs`).
//!
//! `cargo bench -p keystore-plugin --bench throughput` (seconds per run:
//! `KEYSTORE_BENCH_SECONDS`, default 5). Prints figures; asserts nothing.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use base64::Engine;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("KEYSTORE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let bao = support::Bao::start().await?;
    // The management role is the plugin's own credential (YAML); the
    // crypto role comes with each request, as a tenant's would.
    let mut host = support::Host::start(&bao.yaml_as(&bao.mgmt), bao.dir.path()).await?;
    let mgmt = support::plugin_credential();
    let crypto = bao.crypto.own_credential();
    let created = host
        .ok("CreateKey", json!({"config": support::config(&mgmt), "algorithm": "KEY_ALGORITHM_AES256",
                                "id": "bench", "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}))
        .await;
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    let plaintext = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let wrapped = host
        .ok(
            "/openbao.keystore.v1.L1KeyCrypto/Encrypt",
            json!({"parameters": support::params(&crypto, &key_id), "plaintext": plaintext}),
        )
        .await;
    let ciphertext = wrapped["ciphertext"].as_str().unwrap().to_owned();
    let token = bao.login(&bao.crypto).await?;
    let base = format!("{}/v1/transit", bao.cluster.addr(0));

    println!(
        "keystore plugin vs direct Transit HTTP, OpenBao {} single node (TLS), AES-256-GCM, 32-byte L2, {seconds} s per run",
        bao.cluster.version()
    );
    println!(
        "direct: one Transit HTTP call per operation (Go net/http, keep-alive, no batch_input); \
         plugin: gRPC over AutoMTLS, concurrent calls of one key coalesced into batch_input"
    );
    println!(
        "{:<8} {:>4} | {:>10} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>10}",
        "op",
        "conc",
        "plugin/s",
        "p50 ms",
        "p99 ms",
        "direct/s",
        "p50 ms",
        "p99 ms",
        "plugin/direct"
    );
    for op in ["encrypt", "decrypt"] {
        for concurrency in [1, 32] {
            let (method, request, body) = if op == "encrypt" {
                (
                    "/openbao.keystore.v1.L1KeyCrypto/Encrypt",
                    json!({"parameters": support::params(&crypto, &key_id), "plaintext": plaintext}),
                    json!({"plaintext": plaintext}),
                )
            } else {
                (
                    "/openbao.keystore.v1.L1KeyCrypto/Decrypt",
                    json!({"parameters": support::params(&crypto, &key_id), "ciphertext": ciphertext}),
                    json!({"ciphertext": ciphertext}),
                )
            };
            let duration_ms = seconds * 1000;
            let plugin = host
                .send(json!({"method": "bench", "bench": {"mode": "plugin", "method": method, "request": request,
                             "concurrency": concurrency, "duration_ms": duration_ms}}))
                .await?;
            let direct = host
                .send(json!({"method": "bench", "bench": {"mode": "direct",
                             "url": format!("{base}/{op}/openkcm-bench"), "token": token,
                             "ca_pem": bao.cluster.ca_pem().unwrap(), "body": body,
                             "concurrency": concurrency, "duration_ms": duration_ms}}))
                .await?;
            check(&plugin);
            check(&direct);
            let ratio = plugin["per_sec"].as_f64().unwrap() / direct["per_sec"].as_f64().unwrap();
            println!(
                "{:<8} {:>4} | {:>10.0} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} {:>8.2} | {:>9.1}%",
                op,
                concurrency,
                plugin["per_sec"].as_f64().unwrap(),
                plugin["p50_ms"].as_f64().unwrap(),
                plugin["p99_ms"].as_f64().unwrap(),
                direct["per_sec"].as_f64().unwrap(),
                direct["p50_ms"].as_f64().unwrap(),
                direct["p99_ms"].as_f64().unwrap(),
                ratio * 100.0
            );
        }
    }
    host.close().await?;
    Ok(())
}

fn check(result: &Value) {
    if result["code"] != "OK" || result["errors"].as_i64().unwrap_or(0) > 0 {
        eprintln!("bench run had errors: {result}");
    }
}
