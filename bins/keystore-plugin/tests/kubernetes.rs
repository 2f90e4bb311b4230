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
use serde_json::json;
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

/// The plugin YAML making `role`, with the token in `token_path`, the
/// plugin's own credential: Kubernetes auth is only ever configured there.
fn yaml_as(bao: &Bao, role: Identity, token_path: &str) -> String {
    format!(
        "{}auth:\n  authMethod: kubernetes\n  kubernetesRole: {}\n  serviceAccountTokenPath: {token_path}\n",
        bao.yaml(),
        role.key()
    )
}

#[tokio::test]
async fn kubernetes_auth_with_service_account_tokens_from_the_api_server() {
    let plane = ControlPlane::start().await.unwrap();
    let bao = Bao::start().await.unwrap();
    enable_kubernetes_auth(&bao, &plane).await;
    let dir = bao.dir.path();
    let (mgmt_token, _) = token_file(&plane, dir, Identity::KeystorePlugin.key()).await;
    let (crypto_token, _) = token_file(&plane, dir, Identity::KeystorePluginCrypto.key()).await;
    // One plugin process per identity, as CMK and the crypto layer each
    // run their own, each logging in with its own ServiceAccount's token.
    let mut mgmt = Host::start(&yaml_as(&bao, Identity::KeystorePlugin, &mgmt_token), dir)
        .await
        .unwrap();
    let mut crypto = Host::start(
        &yaml_as(&bao, Identity::KeystorePluginCrypto, &crypto_token),
        dir,
    )
    .await
    .unwrap();
    let access = json!({"authMethod": "kubernetes"});

    // Allowed: each identity logs in with its own ServiceAccount's token.
    let id = uuid::Uuid::new_v4().to_string();
    let created = mgmt
        .ok(
            "CreateKey",
            json!({"config": config(&access), "algorithm": "KEY_ALGORITHM_AES256", "id": id,
                   "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}),
        )
        .await;
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    let l2 = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let wrapped = crypto
        .ok(
            "/openbao.keystore.v1.L1KeyCrypto/Encrypt",
            json!({"parameters": params(&access, &key_id), "plaintext": l2}),
        )
        .await;
    let unwrapped = crypto
        .ok(
            "/openbao.keystore.v1.L1KeyCrypto/Decrypt",
            json!({"parameters": params(&access, &key_id), "ciphertext": wrapped["ciphertext"]}),
        )
        .await;
    assert_eq!(unwrapped["plaintext"], l2);

    // Access data cannot point the login at another token file, nor pick
    // another role for the plugin's token.
    let other_file = json!({"authMethod": "kubernetes", "serviceAccountTokenPath": crypto_token});
    let refused = mgmt
        .call(
            "GetKey",
            json!({"parameters": params(&other_file, &key_id)}),
        )
        .await;
    assert_eq!(refused["code"], "InvalidArgument", "{refused}");
    assert_eq!(refused["reasons"][0], "ACCESS_DATA_REFUSED", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("serviceAccountTokenPath"),
        "{refused}"
    );
    let other_role = json!({"kubernetesRole": Identity::KeystorePluginCrypto.key()});
    let refused = mgmt
        .call(
            "GetKey",
            json!({"parameters": params(&other_role, &key_id)}),
        )
        .await;
    assert_eq!(refused["reasons"][0], "ACCESS_DATA_REFUSED", "{refused}");
    mgmt.close().await.unwrap();
    crypto.close().await.unwrap();

    // Refused: a token of another ServiceAccount for the management role,
    // whether an unrelated account or the crypto identity's own.
    let (intruder_token, intruder) = token_file(&plane, dir, "intruder").await;
    for token_path in [&intruder_token, &crypto_token] {
        let mut host = Host::start(&yaml_as(&bao, Identity::KeystorePlugin, token_path), dir)
            .await
            .unwrap();
        let refused = host
            .call("GetKey", json!({"parameters": params(&access, &key_id)}))
            .await;
        assert_eq!(refused["code"], "InvalidArgument", "{refused}");
        assert_eq!(refused["message"], MSG_AUTH, "{refused}");
        assert_eq!(refused["reasons"][0], "AUTHENTICATION_FAILED", "{refused}");
        assert!(
            !refused.to_string().contains(&intruder),
            "no token in errors"
        );
        host.close().await.unwrap();
    }
}
