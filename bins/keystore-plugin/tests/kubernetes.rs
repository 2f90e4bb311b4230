//! Kubernetes auth from the plugin: OpenBao reviews the plugin's
//! ServiceAccount token with a real kube-apiserver (TokenReview), so the
//! plugin holds no secret at rest. Loaded by plugin-sdk's catalog, like CMK.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use lifecycle_types::identities::Identity;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Bao, Host, config, params};
use test_support::ControlPlane;

const MSG_AUTH: &str = "failed to authenticate with the keystore provider";
const AUDIENCE: &str = "openbao-internal";
const NAMESPACE: &str = "openkcm";

/// Kubernetes auth at `auth/kubernetes`, reviewing tokens with `plane`,
/// with one role per plugin identity bound to its own ServiceAccount.
async fn enable_kubernetes_auth(bao: &Bao, plane: &ControlPlane) {
    let reviewer = plane
        .service_account_token(
            "openbao-system",
            "token-reviewer",
            plane.issuer(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    // The reviewer may call the TokenReview API (kubectl: this crate has no
    // Kubernetes client of its own).
    let bound = std::process::Command::new(test_support::tools::kubernetes("kubectl").unwrap())
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig_path)
        .args([
            "create",
            "clusterrolebinding",
            "openbao-token-reviewer",
            "--clusterrole=system:auth-delegator",
            "--serviceaccount=openbao-system:token-reviewer",
        ])
        .output()
        .unwrap();
    assert!(
        bound.status.success(),
        "{}",
        String::from_utf8_lossy(&bound.stderr)
    );
    bao.cluster
        .expect_ok(
            0,
            Method::POST,
            "sys/auth/kubernetes",
            json!({"type": "kubernetes"}),
        )
        .await
        .unwrap();
    bao.cluster
        .expect_ok(
            0,
            Method::POST,
            "auth/kubernetes/config",
            json!({
                "kubernetes_host": plane.server_url,
                "kubernetes_ca_cert": plane.ca_pem,
                "token_reviewer_jwt": reviewer,
                "disable_local_ca_jwt": true,
            }),
        )
        .await
        .unwrap();
    for identity in [Identity::KeystorePlugin, Identity::KeystorePluginCrypto] {
        bao.cluster
            .expect_ok(
                0,
                Method::POST,
                &format!("auth/kubernetes/role/{}", identity.key()),
                json!({
                    "bound_service_account_names": [identity.key()],
                    "bound_service_account_namespaces": [NAMESPACE],
                    "audience": AUDIENCE,
                    "token_policies": [identity.policy_name()],
                    "token_ttl": "1h",
                    "token_max_ttl": "4h",
                }),
            )
            .await
            .unwrap();
    }
}

/// A projected-style token of `account` in a file, as the kubelet mounts it.
async fn token_file(plane: &ControlPlane, dir: &Path, account: &str) -> (String, String) {
    let token = plane
        .service_account_token(NAMESPACE, account, AUDIENCE, Duration::from_secs(600))
        .await
        .unwrap();
    let path = dir.join(format!("{account}.token"));
    std::fs::write(&path, &token).unwrap();
    (path.display().to_string(), token)
}

fn access(role: Identity, token_path: &str) -> Value {
    json!({"authMethod": "kubernetes", "kubernetesRole": role.key(),
           "serviceAccountTokenPath": token_path})
}

#[tokio::test]
async fn kubernetes_auth_with_service_account_tokens_from_the_api_server() {
    let plane = ControlPlane::start().await.unwrap();
    let bao = Bao::start().await.unwrap();
    enable_kubernetes_auth(&bao, &plane).await;
    let mut host = Host::start(&bao.yaml(), bao.dir.path()).await.unwrap();
    let dir = bao.dir.path();
    let (mgmt_token, _) = token_file(&plane, dir, Identity::KeystorePlugin.key()).await;
    let (crypto_token, _) = token_file(&plane, dir, Identity::KeystorePluginCrypto.key()).await;
    let mgmt = access(Identity::KeystorePlugin, &mgmt_token);
    let crypto = access(Identity::KeystorePluginCrypto, &crypto_token);

    // Allowed: each identity logs in with its own ServiceAccount's token.
    let id = uuid::Uuid::new_v4().to_string();
    let created = host
        .ok(
            "CreateKey",
            json!({"config": config(&mgmt), "algorithm": "KEY_ALGORITHM_AES256", "id": id,
                   "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}),
        )
        .await;
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    let l2 = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let wrapped = host
        .ok(
            "/openbao.keystore.v1.L1KeyCrypto/Encrypt",
            json!({"parameters": params(&crypto, &key_id), "plaintext": l2}),
        )
        .await;
    let unwrapped = host
        .ok(
            "/openbao.keystore.v1.L1KeyCrypto/Decrypt",
            json!({"parameters": params(&crypto, &key_id), "ciphertext": wrapped["ciphertext"]}),
        )
        .await;
    assert_eq!(unwrapped["plaintext"], l2);

    // Refused: a token of another ServiceAccount for the management role,
    // whether an unrelated account or the crypto identity's own.
    let (intruder_token, intruder) = token_file(&plane, dir, "intruder").await;
    for token_path in [&intruder_token, &crypto_token] {
        let refused = host
            .call(
                "GetKey",
                json!({"parameters": params(&access(Identity::KeystorePlugin, token_path), &key_id)}),
            )
            .await;
        assert_eq!(refused["code"], "InvalidArgument", "{refused}");
        assert_eq!(refused["message"], MSG_AUTH, "{refused}");
        assert_eq!(refused["reasons"][0], "AUTHENTICATION_FAILED", "{refused}");
        assert!(
            !refused.to_string().contains(&intruder),
            "no token in errors"
        );
    }
    host.close().await.unwrap();
}
