//! The Transit module against a real OpenBao, and the keystore plugin's two
//! policies (`policies/keystore-plugin*.hcl`) as checked in: what each
//! allows and what each denies.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use lifecycle_types::identities::Identity;
use openbao_client::transit::{
    CreateKey, EncryptOptions, KeyConfig, KeyType, Transit, ciphertext_version, expose,
};
use openbao_client::{Client, ClientConfig, Error, Token};
use reqwest::Method;
use serde_json::{Value, json};
use test_support::{BaoCluster, BaoClusterOptions};

async fn transit_server() -> BaoCluster {
    let bao = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    bao.expect_ok(
        0,
        Method::POST,
        "sys/mounts/transit",
        json!({"type": "transit"}),
    )
    .await
    .unwrap();
    bao
}

fn client(bao: &BaoCluster, token: &str) -> Client {
    Client::new(
        ClientConfig::new(&bao.addr(0))
            .unwrap()
            .with_ca_pem(bao.ca_pem().unwrap()),
    )
    .unwrap()
    .with_token(Token::new(token))
}

/// A token holding only `identity`'s policy (plus `default`).
async fn token_for(bao: &BaoCluster, identity: Identity) -> String {
    bao.expect_ok(
        0,
        Method::PUT,
        &format!("sys/policies/acl/{}", identity.policy_name()),
        json!({"policy": identity.policy_hcl()}),
    )
    .await
    .unwrap();
    let answer = bao
        .expect_ok(
            0,
            Method::POST,
            "auth/token/create",
            json!({"policies": [identity.policy_name()], "ttl": "1h"}),
        )
        .await
        .unwrap();
    answer["auth"]["client_token"].as_str().unwrap().to_owned()
}

fn denied<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::PermissionDenied { .. }) => {}
        other => panic!("{what}: expected permission denied, got {other:?}"),
    }
}

#[tokio::test]
async fn transit_keys_versions_and_batches() {
    let bao = transit_server().await;
    let transit = client(&bao, bao.root_token()).transit("transit").unwrap();
    assert!(transit.read_key("openkcm-t").await.unwrap().is_none());
    transit
        .create_key("openkcm-t", &CreateKey::new(KeyType::Aes256Gcm96))
        .await
        .unwrap();
    let info = transit.read_key("openkcm-t").await.unwrap().unwrap();
    assert_eq!(
        (info.key_type.clone(), info.latest_version),
        (KeyType::Aes256Gcm96, 1)
    );
    assert!(info.latest_created().is_some() && !info.soft_deleted);

    let one = transit
        .encrypt("openkcm-t", b"L2 key material", &EncryptOptions::default())
        .await
        .unwrap();
    assert_eq!(ciphertext_version(&one.ciphertext), Some(1));
    transit.rotate_key("openkcm-t").await.unwrap();
    let items: Vec<&[u8]> = vec![b"a", b"bb", b""];
    let batch = transit
        .encrypt_batch("openkcm-t", &items, &EncryptOptions::default())
        .await
        .unwrap();
    assert!(batch.iter().all(|r| r.as_ref().unwrap().key_version == 2));
    let ciphertexts: Vec<&str> = batch
        .iter()
        .map(|r| r.as_ref().unwrap().ciphertext.as_str())
        .chain([one.ciphertext.as_str(), "vault:v1:bm90IHZhbGlk"])
        .collect();
    let plain = transit
        .decrypt_batch("openkcm-t", &ciphertexts)
        .await
        .unwrap();
    assert_eq!(expose(plain[1].as_ref().unwrap()), b"bb");
    assert_eq!(expose(plain[2].as_ref().unwrap()), b"");
    assert_eq!(expose(plain[3].as_ref().unwrap()), b"L2 key material");
    assert!(plain[4].is_err(), "a bad item fails alone");
    let rewrapped = transit
        .rewrap_batch("openkcm-t", &[one.ciphertext.as_str()])
        .await
        .unwrap();
    assert_eq!(rewrapped[0].as_ref().unwrap().key_version, 2);
    let pinned = transit
        .encrypt(
            "openkcm-t",
            b"x",
            &EncryptOptions {
                key_version: Some(1),
                associated_data: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(pinned.key_version, 1);

    // min_decryption_version hides old versions and refuses their ciphertexts.
    transit
        .configure_key(
            "openkcm-t",
            &KeyConfig {
                min_decryption_version: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let info = transit.read_key("openkcm-t").await.unwrap().unwrap();
    assert_eq!(info.versions.keys().copied().collect::<Vec<_>>(), [2]);
    let err = transit
        .decrypt("openkcm-t", &one.ciphertext, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("too old"), "{err}");

    // Soft-delete refuses crypto, restore brings it back.
    transit.soft_delete_key("openkcm-t").await.unwrap();
    assert!(
        transit
            .read_key("openkcm-t")
            .await
            .unwrap()
            .unwrap()
            .soft_deleted
    );
    let err = transit
        .encrypt("openkcm-t", b"x", &EncryptOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("soft-deleted"), "{err}");
    transit.restore_key("openkcm-t").await.unwrap();
    transit
        .encrypt("openkcm-t", b"x", &EncryptOptions::default())
        .await
        .unwrap();

    // Deletion needs deletion_allowed.
    assert!(matches!(
        transit.delete_key("openkcm-t").await,
        Err(Error::BadRequest { .. })
    ));
    transit
        .configure_key(
            "openkcm-t",
            &KeyConfig {
                deletion_allowed: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    transit.delete_key("openkcm-t").await.unwrap();
    assert!(transit.read_key("openkcm-t").await.unwrap().is_none());
    assert!(
        transit
            .wrapping_key()
            .await
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
}

#[tokio::test]
async fn keystore_policies_allow_their_paths_and_deny_the_rest() {
    let bao = transit_server().await;
    let root = client(&bao, bao.root_token()).transit("transit").unwrap();
    root.create_key("not-openkcm", &CreateKey::new(KeyType::Aes256Gcm96))
        .await
        .unwrap();
    let mgmt_token = token_for(&bao, Identity::KeystorePlugin).await;
    let crypto_token = token_for(&bao, Identity::KeystorePluginCrypto).await;
    let mgmt: Transit = client(&bao, &mgmt_token).transit("transit").unwrap();
    let crypto: Transit = client(&bao, &crypto_token).transit("transit").unwrap();

    // Management: create, read, rotate, configure, soft-delete, restore,
    // wrapping key, delete — on openkcm-* only; no crypto.
    mgmt.create_key("openkcm-p", &CreateKey::new(KeyType::Aes256Gcm96))
        .await
        .unwrap();
    mgmt.create_key("openkcm-rsa", &CreateKey::new(KeyType::Rsa3072))
        .await
        .unwrap();
    assert_eq!(
        mgmt.read_key("openkcm-p")
            .await
            .unwrap()
            .unwrap()
            .latest_version,
        1
    );
    mgmt.rotate_key("openkcm-p").await.unwrap();
    mgmt.soft_delete_key("openkcm-p").await.unwrap();
    mgmt.restore_key("openkcm-p").await.unwrap();
    mgmt.wrapping_key().await.unwrap();
    mgmt.configure_key(
        "openkcm-rsa",
        &KeyConfig {
            deletion_allowed: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    mgmt.delete_key("openkcm-rsa").await.unwrap();
    denied(
        mgmt.create_key("other", &CreateKey::new(KeyType::Aes256Gcm96))
            .await,
        "mgmt creates a key outside its prefix",
    );
    denied(
        mgmt.read_key("not-openkcm").await,
        "mgmt reads a foreign key",
    );
    denied(
        mgmt.rotate_key("not-openkcm").await,
        "mgmt rotates a foreign key",
    );
    denied(
        mgmt.encrypt("openkcm-p", b"x", &EncryptOptions::default())
            .await,
        "mgmt encrypts",
    );
    denied(
        mgmt.set_disable_upsert(true).await,
        "mgmt changes the engine config",
    );
    denied(
        client(&bao, &mgmt_token)
            .read("sys/policies/acl/openbao-keystore-plugin")
            .await,
        "mgmt reads policies",
    );

    // Crypto: encrypt, decrypt, rewrap and read on openkcm-*; nothing else,
    // and no upsert of a missing key.
    let wrapped = crypto
        .encrypt("openkcm-p", b"L2", &EncryptOptions::default())
        .await
        .unwrap();
    assert_eq!(wrapped.key_version, 2);
    assert_eq!(
        expose(
            &crypto
                .decrypt("openkcm-p", &wrapped.ciphertext, None)
                .await
                .unwrap()
        ),
        b"L2"
    );
    crypto
        .rewrap("openkcm-p", &wrapped.ciphertext, None)
        .await
        .unwrap();
    assert_eq!(
        crypto
            .read_key("openkcm-p")
            .await
            .unwrap()
            .unwrap()
            .latest_version,
        2
    );
    denied(
        crypto
            .encrypt("openkcm-missing", b"x", &EncryptOptions::default())
            .await,
        "crypto upserts a key by encrypting",
    );
    assert!(root.read_key("openkcm-missing").await.unwrap().is_none());
    denied(crypto.rotate_key("openkcm-p").await, "crypto rotates");
    denied(crypto.soft_delete_key("openkcm-p").await, "crypto disables");
    denied(
        crypto
            .configure_key(
                "openkcm-p",
                &KeyConfig {
                    min_decryption_version: Some(2),
                    ..Default::default()
                },
            )
            .await,
        "crypto configures",
    );
    denied(crypto.delete_key("openkcm-p").await, "crypto deletes");
    denied(
        crypto
            .create_key("openkcm-new", &CreateKey::new(KeyType::Aes256Gcm96))
            .await,
        "crypto creates",
    );
    denied(crypto.wrapping_key().await, "crypto reads the wrapping key");
    denied(
        crypto
            .encrypt("not-openkcm", b"x", &EncryptOptions::default())
            .await,
        "crypto uses a foreign key",
    );

    // Both keep token self-service from the default policy.
    for token in [&mgmt_token, &crypto_token] {
        let info = client(&bao, token).lookup_self().await.unwrap();
        assert!(info.policies.contains(&"default".to_owned()), "{info:?}");
    }
    let (status, _): (_, Value) = bao
        .request(0, Method::GET, "transit/keys/openkcm-p", None)
        .await
        .unwrap();
    assert!(status.is_success());
}
