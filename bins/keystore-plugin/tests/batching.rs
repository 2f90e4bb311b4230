//! Natural batching of L1 crypto calls against a real OpenBao: concurrent
//! callers of one key share Transit `batch_input` requests, each gets its
//! own result, and a bad item fails only its own caller, with exactly the
//! status (code, message, details) the same call alone gets.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;

use base64::Engine;
use futures_util::future::join_all;
use keystore_plugin::batch::BatchStats;
use keystore_plugin::config::PluginConfig;
use keystore_plugin::keystore::{Keystore, L1Key};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use support::{Bao, Host, params};
use tonic::{Code, Status};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ENCRYPT: &str = "/openbao.keystore.v1.L1KeyCrypto/Encrypt";
const DECRYPT: &str = "/openbao.keystore.v1.L1KeyCrypto/Decrypt";
const CALLERS: usize = 32;

/// A ciphertext of the right shape whose GCM tag no longer matches.
fn corrupt(ciphertext: &str) -> String {
    let (prefix, payload) = ciphertext.rsplit_once(':').unwrap();
    let mut bytes = B64.decode(payload).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    format!("{prefix}:{}", B64.encode(bytes))
}

fn assert_same_status(batched: &Status, alone: &Status) {
    assert_eq!(
        (batched.code(), batched.message(), batched.details()),
        (alone.code(), alone.message(), alone.details()),
        "a batched caller gets what the call alone gets"
    );
}

/// Calls made since `before`, as (batch requests, calls they carried).
fn since(key: &L1Key, before: BatchStats) -> (u64, u64) {
    let now = key.batch_stats();
    (now.requests - before.requests, now.items - before.items)
}

async fn key_of(bao: &Bao, keystore: &Keystore, name: &str, key_type: &str) -> L1Key {
    bao.cluster
        .expect_ok(
            0,
            Method::POST,
            &format!("transit/keys/{name}"),
            json!({"type": key_type}),
        )
        .await
        .unwrap();
    let access = bao.crypto.own_credential();
    keystore
        .key(access.as_object().unwrap(), &format!("transit/{name}"))
        .unwrap()
}

#[tokio::test]
async fn concurrent_callers_share_batches_and_fail_alone() {
    let bao = Bao::start().await.unwrap();
    let keystore = Keystore::new(PluginConfig::from_yaml(&bao.yaml()).unwrap()).unwrap();
    let key = &key_of(&bao, &keystore, "openkcm-batch", "aes256-gcm96").await;

    // 32 concurrent encrypts: the first is sent alone at once, the other 31
    // arrive while it is in flight and share one request.
    let plaintexts: Vec<Vec<u8>> = (0..CALLERS as u8).map(|i| vec![i; 32]).collect();
    let before = key.batch_stats();
    let wrapped = join_all(plaintexts.iter().map(|p| key.encrypt(p, None, None))).await;
    assert_eq!(since(key, before), (1, CALLERS as u64 - 1));
    let ciphertexts: Vec<String> = wrapped.into_iter().map(|w| w.unwrap().ciphertext).collect();
    let distinct: HashSet<&String> = ciphertexts.iter().collect();
    assert_eq!(
        distinct.len(),
        CALLERS,
        "every caller has its own ciphertext"
    );

    // ... and each decrypts, concurrently, to its own plaintext.
    let opened = join_all(ciphertexts.iter().map(|c| key.decrypt(c, None))).await;
    for (plain, opened) in plaintexts.iter().zip(opened) {
        assert_eq!(opened.unwrap().expose_secret(), plain.as_slice());
    }

    // One corrupted ciphertext among good ones fails only its caller, with
    // the status it gets alone (InvalidArgument, OpenBao's reason).
    let corrupted = corrupt(&ciphertexts[5]);
    let alone = key.decrypt(&corrupted, None).await.unwrap_err();
    assert_eq!(alone.code(), Code::InvalidArgument, "{alone:?}");
    assert!(
        alone
            .message()
            .starts_with("OpenBao rejected the request: "),
        "{alone:?}"
    );
    let mut inputs = ciphertexts.clone();
    inputs[5] = corrupted;
    let before = key.batch_stats();
    let opened = join_all(inputs.iter().map(|c| key.decrypt(c, None))).await;
    assert_eq!(since(key, before), (1, CALLERS as u64 - 1));
    for (i, (plain, opened)) in plaintexts.iter().zip(opened).enumerate() {
        match opened {
            Ok(opened) => {
                assert_ne!(i, 5);
                assert_eq!(opened.expose_secret(), plain.as_slice());
            }
            Err(status) => {
                assert_eq!(i, 5, "only the bad item fails: {status:?}");
                assert_same_status(&status, &alone);
                // OpenBao's 400 carries the other items' plaintexts; the
                // error must not.
                let text = format!("{status:?}");
                assert!(!text.contains(&B64.encode(&plaintexts[4])), "{text}");
            }
        }
    }

    // Associated data is per item: a wrong one fails only its caller.
    let with_ad = join_all(
        plaintexts
            .iter()
            .enumerate()
            .map(|(i, p)| async move { key.encrypt(p, None, Some(&[i as u8])).await }),
    )
    .await;
    let with_ad: Vec<String> = with_ad.into_iter().map(|w| w.unwrap().ciphertext).collect();
    let wrong_ad = key.decrypt(&with_ad[9], Some(b"other")).await.unwrap_err();
    let opened = join_all(with_ad.iter().enumerate().map(|(i, c)| async move {
        let ad = if i == 9 {
            b"other".to_vec()
        } else {
            vec![i as u8]
        };
        key.decrypt(c, Some(&ad)).await
    }))
    .await;
    for (i, opened) in opened.into_iter().enumerate() {
        match opened {
            Ok(opened) => assert_eq!(opened.expose_secret(), plaintexts[i].as_slice()),
            Err(status) => {
                assert_eq!(i, 9, "{status:?}");
                assert_same_status(&status, &wrong_ad);
            }
        }
    }

    // Rewrap batches too, with each item's target version; after the old
    // version is retired, its one ciphertext fails alone ("too old").
    bao.cluster
        .expect_ok(
            0,
            Method::POST,
            "transit/keys/openkcm-batch/rotate",
            json!({}),
        )
        .await
        .unwrap();
    let before = key.batch_stats();
    // Item 1 (batched) stays at version 1.
    let rewrapped = join_all(ciphertexts.iter().enumerate().map(|(i, c)| async move {
        let version = if i == 1 { Some(1) } else { None };
        key.rewrap(c, version).await
    }))
    .await;
    assert_eq!(since(key, before), (1, CALLERS as u64 - 1));
    let mut current: Vec<String> = Vec::new();
    for (i, rewrapped) in rewrapped.into_iter().enumerate() {
        let rewrapped = rewrapped.unwrap();
        let expected = if i == 1 { 1 } else { 2 };
        assert_eq!(rewrapped.key_version, expected, "item {i}");
        current.push(rewrapped.ciphertext);
    }
    bao.cluster
        .expect_ok(
            0,
            Method::POST,
            "transit/keys/openkcm-batch/config",
            json!({"min_decryption_version": 2}),
        )
        .await
        .unwrap();
    let too_old = key.decrypt(&current[1], None).await.unwrap_err();
    assert!(too_old.message().contains("too old"), "{too_old:?}");
    let opened = join_all(current.iter().map(|c| key.decrypt(c, None))).await;
    for (i, opened) in opened.into_iter().enumerate() {
        match opened {
            Ok(_) => assert_ne!(i, 1),
            Err(status) => {
                assert_eq!(i, 1, "{status:?}");
                assert_same_status(&status, &too_old);
            }
        }
    }

    // A failure of the whole request (a disabled key) reaches every caller
    // as it would alone.
    let (deleted, _) = bao
        .cluster
        .request(
            0,
            Method::DELETE,
            "transit/keys/openkcm-batch/soft-delete",
            None,
        )
        .await
        .unwrap();
    assert!(deleted.is_success(), "{deleted}");
    let disabled = key.encrypt(b"x", None, None).await.unwrap_err();
    assert_eq!(disabled.code(), Code::FailedPrecondition, "{disabled:?}");
    let refused = join_all(plaintexts.iter().map(|p| key.encrypt(p, None, None))).await;
    for status in refused {
        assert_same_status(&status.unwrap_err(), &disabled);
    }
}

#[tokio::test]
async fn item_errors_that_name_their_index_read_as_a_lone_call() {
    let bao = Bao::start().await.unwrap();
    let keystore = Keystore::new(PluginConfig::from_yaml(&bao.yaml()).unwrap()).unwrap();
    // RSA has no associated data: OpenBao refuses it per item, naming the
    // item's index in the batch.
    let key = &key_of(&bao, &keystore, "openkcm-rsa", "rsa-3072").await;
    let alone = key.encrypt(b"l2", None, Some(b"ad")).await.unwrap_err();
    assert!(
        alone.message().contains("'[0].associated_data'"),
        "{alone:?}"
    );
    let before = key.batch_stats();
    let results = join_all((0..8).map(|i| async move {
        let ad: Option<&[u8]> = if i == 6 { Some(b"ad") } else { None };
        key.encrypt(b"l2", None, ad).await
    }))
    .await;
    assert_eq!(since(key, before), (1, 7));
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(wrapped) => assert!(wrapped.ciphertext.starts_with("vault:v1:")),
            Err(status) => {
                assert_eq!(i, 6, "{status:?}");
                assert_same_status(&status, &alone);
            }
        }
    }
}

/// The same through the plugin: 32 concurrent CMK-style gRPC calls.
#[tokio::test]
async fn concurrent_grpc_calls_through_the_plugin() {
    let bao = Bao::start().await.unwrap();
    let mut host = Host::start(&bao.yaml(), bao.dir.path()).await.unwrap();
    bao.cluster
        .expect_ok(
            0,
            Method::POST,
            "transit/keys/openkcm-grpc",
            json!({"type": "aes256-gcm96"}),
        )
        .await
        .unwrap();
    let crypto = bao.crypto.own_credential();
    let key_id = "transit/openkcm-grpc";
    let plaintexts: Vec<String> = (0..CALLERS as u8).map(|i| B64.encode([i; 32])).collect();
    let calls: Vec<Value> = plaintexts
        .iter()
        .map(|p| json!({"method": ENCRYPT, "request": {"parameters": params(&crypto, key_id), "plaintext": p}}))
        .collect();
    let answers = parallel(&mut host, calls).await;
    let ciphertexts: Vec<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a["code"], "OK", "{a}");
            a["response"]["ciphertext"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ciphertexts.iter().collect::<HashSet<_>>().len(), CALLERS);

    let corrupted = corrupt(&ciphertexts[7]);
    let decrypt = |c: &str| json!({"method": DECRYPT, "request": {"parameters": params(&crypto, key_id), "ciphertext": c}});
    let alone = host.send(decrypt(&corrupted)).await.unwrap();
    assert_eq!(alone["code"], "InvalidArgument", "{alone}");
    let mut calls: Vec<Value> = ciphertexts.iter().map(|c| decrypt(c)).collect();
    calls[7] = decrypt(&corrupted);
    let answers = parallel(&mut host, calls).await;
    for (i, answer) in answers.iter().enumerate() {
        if i == 7 {
            assert_eq!(answer, &alone, "the bad call fails as it does alone");
        } else {
            assert_eq!(answer["code"], "OK", "{answer}");
            assert_eq!(answer["response"]["plaintext"], plaintexts[i]);
        }
    }
    host.close().await.unwrap();
}

async fn parallel(host: &mut Host, calls: Vec<Value>) -> Vec<Value> {
    let answer = host
        .send(json!({"method": "parallel", "calls": calls}))
        .await
        .unwrap();
    assert_eq!(answer["code"], "OK", "{answer}");
    answer["answers"].as_array().unwrap().clone()
}
