//! The built plugin loaded by OpenKCM's real plugin-sdk catalog (Go host in
//! `hosttest/`, go-plugin AutoMTLS) against a real OpenBao: every RPC,
//! L1 wrap/unwrap/rewrap with rotation, BYOK, failures, and shutdown.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Bao, Host, config, params, plugin_credential};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ENCRYPT: &str = "/openbao.keystore.v1.L1KeyCrypto/Encrypt";
const DECRYPT: &str = "/openbao.keystore.v1.L1KeyCrypto/Decrypt";
const REWRAP: &str = "/openbao.keystore.v1.L1KeyCrypto/Rewrap";
const ROTATE: &str = "/openbao.keystore.v1.L1KeyCrypto/RotateKey";
const VERSIONS: &str = "/plugin.keystore.operations.v1.KeystoreInstanceKeyOperation/GetKeyVersions";
const MSG_AUTH: &str = "failed to authenticate with the keystore provider";
const MSG_NOT_FOUND: &str = "key not found in the keystore provider";

fn assert_status(answer: &Value, code: &str, message: &str) {
    assert_eq!(answer["code"], code, "{answer}");
    assert_eq!(answer["message"], message, "{answer}");
}

#[tokio::test]
async fn plugin_sdk_catalog_drives_every_rpc_against_openbao() {
    let bao = Bao::start().await.unwrap();
    // The management role is the plugin's own credential (YAML); the
    // crypto role's credential comes with each request.
    let mut host = Host::start(&bao.yaml_as(&bao.mgmt), bao.dir.path())
        .await
        .unwrap();
    let services: Vec<String> = serde_json::from_value(host.ready["services"].clone()).unwrap();
    assert_eq!(
        services,
        [
            "plugin.keystore.operations.v1.KeystoreInstanceKeyOperation",
            "service.common.config.v1.Config"
        ]
    );
    let build: Value = serde_json::from_str(host.ready["build"].as_str().unwrap()).unwrap();
    assert_eq!(build["name"], "openbao-keystore");
    let health = host.send(json!({"method": "health"})).await.unwrap();
    assert_eq!(health["response"]["status"], "SERVING");

    let mgmt = plugin_credential();
    let crypto = bao.crypto.own_credential();

    // Pure RPCs.
    let valid = host
        .ok(
            "ValidateKey",
            json!({"keyType": "KEY_TYPE_HYOK", "algorithm": "KEY_ALGORITHM_AES256",
                                  "region": "eu-test", "nativeKeyId": "transit/openkcm-hyok"}),
        )
        .await;
    assert_eq!(valid["isValid"], true, "{valid}");
    let invalid = host
        .ok(
            "ValidateKey",
            json!({"keyType": "KEY_TYPE_SYSTEM_MANAGED", "algorithm": "KEY_ALGORITHM_AES256",
                                  "region": "mars-1"}),
        )
        .await;
    assert_eq!(invalid["isValid"], false);
    assert!(invalid["message"].as_str().unwrap().contains("mars-1"));
    let access = host
        .ok(
            "ValidateKeyAccessData",
            json!({"management": mgmt, "crypto": {"eu": crypto}}),
        )
        .await;
    assert_eq!(access["isValid"], true, "{access}");
    let bad_access = host
        .ok("ValidateKeyAccessData", json!({"management": {"authMethod": "approle", "secretId": "s"}, "crypto": {"eu": {"authMethod": "kubernetes"}}}))
        .await;
    assert_eq!(bad_access["isValid"], false);
    let message = bad_access["message"].as_str().unwrap();
    assert!(
        message.contains("roleId") && message.contains("kubernetesRole"),
        "{message}"
    );
    let region = host
        .ok("ExtractKeyRegion", json!({"nativeKeyId": "transit/openkcm-a", "managementAccessData": {"region": "us-test"}}))
        .await;
    assert_eq!(region["region"], "us-test");
    let region = host
        .ok(
            "ExtractKeyRegion",
            json!({"nativeKeyId": "transit/openkcm-a"}),
        )
        .await;
    assert_eq!(region["region"], "eu-test", "from the plugin YAML");
    let access_json = json!({"eu": {"certificateSubject": "CN=x", "isEditable": true, "versionIdentifier": "2",
                                    "authMethod": "approle", "roleId": bao.crypto.role_id}});
    let transformed = host
        .ok(
            "TransformCryptoAccessData",
            json!({"nativeKeyId": "transit/openkcm-t",
             "accessData": B64.encode(access_json.to_string())}),
        )
        .await;
    assert!(
        !transformed["transformedAccessData"]["eu"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let garbage = host
        .call(
            "TransformCryptoAccessData",
            json!({"nativeKeyId": "transit/openkcm-t", "accessData": B64.encode("[1")}),
        )
        .await;
    assert_status(&garbage, "InvalidArgument", "invalid key access data");
    assert_eq!(garbage["reasons"][0], "CANNOT_PARSE_DATA");

    // CreateKey and GetKey, AES and RSA.
    let id = uuid::Uuid::new_v4().to_string();
    let created = host
        .ok(
            "CreateKey",
            json!({"config": config(&mgmt), "algorithm": "KEY_ALGORITHM_AES256", "id": id,
                                "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}),
        )
        .await;
    let key_id = format!("transit/openkcm-{id}");
    assert_eq!(created["keyId"], key_id);
    assert_eq!(created["status"], "ENABLED");
    let again = host
        .call(
            "CreateKey",
            json!({"config": config(&mgmt), "algorithm": "KEY_ALGORITHM_AES256", "id": id,
                                  "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}),
        )
        .await;
    assert_eq!(again["code"], "AlreadyExists", "{again}");
    // CMK's recovery after AlreadyExists: GetKey with its own key UUID.
    let recovered = host
        .ok("GetKey", json!({"parameters": params(&mgmt, &id)}))
        .await;
    assert_eq!(recovered["keyId"], key_id);
    let key = host
        .ok("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(key["algorithm"], "KEY_ALGORITHM_AES256");
    assert_eq!(key["status"], "ENABLED");
    assert_eq!(key["usage"], "ENCRYPT_DECRYPT");
    assert_eq!(key["latestKeyVersionId"], "1");
    assert!(key["latestRotationTime"].is_string(), "{key}");
    for (algorithm, expected) in [
        ("KEY_ALGORITHM_RSA3072", "rsa-3072"),
        ("KEY_ALGORITHM_RSA4096", "rsa-4096"),
    ] {
        let rsa = host
            .ok("CreateKey", json!({"config": config(&mgmt), "algorithm": algorithm, "id": format!("{expected}-{id}"),
                                    "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}))
            .await;
        let got = host
            .ok(
                "GetKey",
                json!({"parameters": params(&mgmt, rsa["keyId"].as_str().unwrap())}),
            )
            .await;
        assert_eq!(got["algorithm"], algorithm);
        let (_, read) = bao
            .cluster
            .request(
                0,
                Method::GET,
                &format!("transit/keys/openkcm-{expected}-{id}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(read["data"]["type"], expected);
    }
    let hyok = host
        .call("CreateKey", json!({"config": config(&mgmt), "algorithm": "KEY_ALGORITHM_AES256", "keyType": "KEY_TYPE_HYOK"}))
        .await;
    assert_eq!(hyok["code"], "InvalidArgument");

    // L1 wrap/unwrap with the crypto-only identity.
    let l2 = B64.encode([42u8; 32]);
    let wrapped = host
        .ok(
            ENCRYPT,
            json!({"parameters": params(&crypto, &key_id), "plaintext": l2}),
        )
        .await;
    let v1_ciphertext = wrapped["ciphertext"].as_str().unwrap().to_owned();
    assert!(v1_ciphertext.starts_with("vault:v1:"), "{wrapped}");
    let unwrapped = host
        .ok(
            DECRYPT,
            json!({"parameters": params(&crypto, &key_id), "ciphertext": v1_ciphertext}),
        )
        .await;
    assert_eq!(unwrapped["plaintext"], l2);
    // The crypto identity cannot rotate; the management one can.
    let denied = host
        .call(ROTATE, json!({"parameters": params(&crypto, &key_id)}))
        .await;
    assert_status(&denied, "InvalidArgument", MSG_AUTH);
    let rotated = host
        .ok(ROTATE, json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(rotated["latestVersion"], 2);
    let key = host
        .ok("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(key["latestKeyVersionId"], "2");
    let versions = host
        .ok(VERSIONS, json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    let ids: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["2", "1"]);
    // Rotation reaches L2 by rewrap: the plaintext never leaves OpenBao.
    let rewrapped = host
        .ok(
            REWRAP,
            json!({"parameters": params(&crypto, &key_id), "ciphertext": v1_ciphertext}),
        )
        .await;
    let v2_ciphertext = rewrapped["ciphertext"].as_str().unwrap().to_owned();
    assert!(v2_ciphertext.starts_with("vault:v2:"), "{rewrapped}");
    let unwrapped = host
        .ok(
            DECRYPT,
            json!({"parameters": params(&crypto, &key_id), "ciphertext": v2_ciphertext}),
        )
        .await;
    assert_eq!(unwrapped["plaintext"], l2);
    assert_eq!(unwrapped["keyVersion"], 2);
    // Only after every L2 is rewrapped does an operator raise
    // min_decryption_version; old ciphertexts then stop working.
    bao.cluster
        .expect_ok(
            0,
            Method::POST,
            &format!("transit/keys/openkcm-{id}/config"),
            json!({"min_decryption_version": 2}),
        )
        .await
        .unwrap();
    let old = host
        .call(
            DECRYPT,
            json!({"parameters": params(&crypto, &key_id), "ciphertext": v1_ciphertext}),
        )
        .await;
    assert_eq!(old["code"], "InvalidArgument", "{old}");
    assert!(
        old["message"].as_str().unwrap().contains("too old"),
        "{old}"
    );
    let versions = host
        .ok(VERSIONS, json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );

    // Disable, enable, delete (pending), cancel, purge.
    host.ok("DisableKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    let key = host
        .ok("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(key["status"], "DISABLED");
    let refused = host
        .call(
            ENCRYPT,
            json!({"parameters": params(&crypto, &key_id), "plaintext": l2}),
        )
        .await;
    assert_eq!(refused["code"], "FailedPrecondition", "{refused}");
    host.ok("DisableKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    host.ok("EnableKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(
        host.ok("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
            .await["status"],
        "ENABLED"
    );
    host.ok(
        ENCRYPT,
        json!({"parameters": params(&crypto, &key_id), "plaintext": l2}),
    )
    .await;
    host.ok(
        "DeleteKey",
        json!({"parameters": params(&mgmt, &key_id), "window": 7}),
    )
    .await;
    assert_eq!(
        host.ok("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
            .await["status"],
        "PENDING_DELETION"
    );
    let versions = host
        .ok(VERSIONS, json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(versions["versions"][0]["status"], "PENDING_DELETION");
    host.ok("EnableKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(
        host.ok("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
            .await["status"],
        "ENABLED"
    );
    host.ok(
        "DeleteKey",
        json!({"parameters": params(&mgmt, &key_id), "window": 0}),
    )
    .await;
    let gone = host
        .call("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_status(&gone, "NotFound", MSG_NOT_FOUND);
    host.ok(
        "DeleteKey",
        json!({"parameters": params(&mgmt, &key_id), "window": 0}),
    )
    .await;
    for method in ["DisableKey", "EnableKey"] {
        let missing = host
            .call(method, json!({"parameters": params(&mgmt, &key_id)}))
            .await;
        assert_status(&missing, "NotFound", MSG_NOT_FOUND);
    }

    // BYOK: create (pending import), import parameters, customer-side wrap,
    // import, then prove OpenBao uses exactly the imported material.
    let byok_id = uuid::Uuid::new_v4().to_string();
    let byok = host
        .ok(
            "CreateKey",
            json!({"config": config(&mgmt), "algorithm": "KEY_ALGORITHM_AES256", "id": byok_id,
                                "region": "eu-test", "keyType": "KEY_TYPE_BYOK"}),
        )
        .await;
    assert_eq!(byok["status"], "PENDING_IMPORT");
    let byok_key = byok["keyId"].as_str().unwrap().to_owned();
    let import = host
        .ok(
            "GetImportParameters",
            json!({"parameters": params(&mgmt, &byok_key), "algorithm": "KEY_ALGORITHM_AES256"}),
        )
        .await;
    let parameters = import["importParameters"].clone();
    assert_eq!(parameters["wrappingAlgorithm"], "CKM_RSA_AES_KEY_WRAP");
    assert_eq!(parameters["hashFunction"], "SHA256");
    assert!(
        parameters["publicKey"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert!(!parameters["providerParams"].as_str().unwrap().is_empty());
    let material = B64.encode([7u8; 32]);
    let wrapped = host
        .ok(
            "byok_wrap",
            json!({"publicKey": parameters["publicKey"], "keyMaterial": material}),
        )
        .await;
    let garbage = host
        .call(
            "ImportKeyMaterial",
            json!({"parameters": params(&mgmt, &byok_key), "importParameters": parameters,
                                          "encryptedKeyMaterial": B64.encode([1u8; 552])}),
        )
        .await;
    assert_eq!(garbage["code"], "InvalidArgument", "{garbage}");
    host.ok(
        "ImportKeyMaterial",
        json!({"parameters": params(&mgmt, &byok_key), "importParameters": parameters,
                                        "encryptedKeyMaterial": wrapped["encryptedKeyMaterial"]}),
    )
    .await;
    let key = host
        .ok("GetKey", json!({"parameters": params(&mgmt, &byok_key)}))
        .await;
    assert_eq!(key["status"], "ENABLED");
    let sealed = host
        .ok(
            ENCRYPT,
            json!({"parameters": params(&crypto, &byok_key), "plaintext": l2}),
        )
        .await;
    let opened = host
        .ok(
            "local_decrypt",
            json!({"keyMaterial": material, "ciphertext": sealed["ciphertext"]}),
        )
        .await;
    assert_eq!(
        opened["plaintext"], l2,
        "OpenBao encrypted with the imported key"
    );

    // Shutdown: Deinit, GRPCController.Shutdown, and the process is gone
    // well within go-plugin's 2 s grace.
    let plugin_pids = children(host.pid().unwrap());
    assert_eq!(plugin_pids.len(), 1, "one plugin process: {plugin_pids:?}");
    let closed = host.close().await.unwrap();
    assert_eq!(closed["error"], "", "{closed}");
    assert!(closed["close_ms"].as_i64().unwrap() < 2000, "{closed}");
    assert!(!std::path::Path::new(&format!("/proc/{}", plugin_pids[0])).exists());
}

/// Children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        if after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

#[tokio::test]
async fn failures_return_documented_statuses_and_the_plugin_keeps_serving() {
    let mut bao = Bao::start().await.unwrap();
    let mut host = Host::start(&bao.yaml_as(&bao.mgmt), bao.dir.path())
        .await
        .unwrap();
    let mgmt = plugin_credential();
    let id = uuid::Uuid::new_v4().to_string();
    let created = host
        .ok(
            "CreateKey",
            json!({"config": config(&mgmt), "algorithm": "KEY_ALGORITHM_AES256", "id": id,
                                "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}),
        )
        .await;
    let key_id = created["keyId"].as_str().unwrap().to_owned();

    // Wrong credentials.
    let wrong = json!({"authMethod": "approle", "roleId": bao.mgmt.role_id,
                       "secretId": "00000000-0000-0000-0000-000000000000"});
    for method in ["GetKey", "DisableKey"] {
        let answer = host
            .call(method, json!({"parameters": params(&wrong, &key_id)}))
            .await;
        assert_status(&answer, "InvalidArgument", MSG_AUTH);
        assert!(
            !answer.to_string().contains("00000000-0000"),
            "no secret in errors: {answer}"
        );
    }
    // The plugin's own secret_id file is missing.
    let missing_file = support::AppRole {
        secret_id_file: "/nonexistent/secret".into(),
        ..bao.mgmt.clone()
    };
    let mut misconfigured = Host::start(&bao.yaml_as(&missing_file), bao.dir.path())
        .await
        .unwrap();
    let answer = misconfigured
        .call("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_status(&answer, "InvalidArgument", MSG_AUTH);
    misconfigured.close().await.unwrap();

    // Bad access data.
    let answer = host
        .call(
            "GetKey",
            json!({"parameters": params(&json!({"authMethod": "approle", "secretId": "s"}), &key_id)}),
        )
        .await;
    assert_status(&answer, "InvalidArgument", "invalid key access data");
    assert_eq!(answer["metadata"]["missingFields"], "roleId", "{answer}");
    assert_eq!(answer["reasons"][0], "MISSING_FIELDS");
    let answer = host
        .call(
            "GetKey",
            json!({"parameters": params(&json!({"authMethod": "approle", "roleId": 7}), &key_id)}),
        )
        .await;
    assert_status(&answer, "InvalidArgument", "invalid key access data");
    assert_eq!(answer["reasons"][0], "CANNOT_PARSE_DATA");
    let answer = host
        .call("CreateKey", json!({"config": config(&json!({"authMethod": "ldap"})), "algorithm": "KEY_ALGORITHM_AES256",
                                  "keyType": "KEY_TYPE_SYSTEM_MANAGED"}))
        .await;
    assert_status(&answer, "InvalidArgument", "invalid key access data");
    assert_eq!(answer["reasons"][0], "CANNOT_PARSE_DATA");

    // Missing key.
    let answer = host
        .call(
            "GetKey",
            json!({"parameters": params(&mgmt, "transit/openkcm-missing")}),
        )
        .await;
    assert_status(&answer, "NotFound", MSG_NOT_FOUND);

    // An expired (here: revoked) token is a 403: the plugin logs in once more.
    bao.cluster
        .expect_ok(
            0,
            Method::PUT,
            "sys/leases/revoke-prefix/auth/approle/login",
            json!({}),
        )
        .await
        .unwrap();
    let key = host
        .ok("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(key["status"], "ENABLED");
    // A token whose TTL ran out is replaced by a fresh login.
    let short = bao
        .approle("keystore-short", "openbao-keystore-plugin", "2s", "3s")
        .await
        .unwrap();
    host.ok(
        "GetKey",
        json!({"parameters": params(&short.own_credential(), &key_id)}),
    )
    .await;
    let expired_at = Instant::now() + Duration::from_secs(3);
    // Waiting for a TTL to elapse is the point of this step.
    tokio::time::sleep_until(expired_at.into()).await;
    host.ok(
        "GetKey",
        json!({"parameters": params(&short.own_credential(), &key_id)}),
    )
    .await;

    // Sealed.
    bao.cluster
        .expect_ok(0, Method::PUT, "sys/seal", json!({}))
        .await
        .unwrap();
    let answer = host
        .call("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_status(&answer, "Unknown", "failed to get key");
    assert_eq!(answer["reasons"][0], "Sealed", "{answer}");
    let answer = host
        .call("DisableKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_eq!(answer["code"], "Unavailable", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("sealed"),
        "{answer}"
    );

    // Unreachable.
    bao.cluster.stop_node(0);
    let answer = host
        .call("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
        .await;
    assert_status(&answer, "Unknown", "failed to get key");
    assert_eq!(answer["reasons"][0], "Unreachable", "{answer}");
    let answer = host
        .call(ENCRYPT, json!({"parameters": params(&bao.crypto.own_credential(), &key_id), "plaintext": B64.encode(b"x")}))
        .await;
    assert_eq!(answer["code"], "Unavailable", "{answer}");
    let health = host.send(json!({"method": "health"})).await.unwrap();
    assert_eq!(health["response"]["status"], "SERVING");

    // Back: the same plugin process serves again.
    bao.cluster.start_node(0).unwrap();
    bao.cluster.wait_unsealed(0).await.unwrap();
    // Poll with a deadline: the node needs a moment to become active.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = host
            .call("GetKey", json!({"parameters": params(&mgmt, &key_id)}))
            .await;
        if answer["code"] == "OK" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GetKey did not work again: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    host.close().await.unwrap();
}

#[tokio::test]
async fn wrapped_secret_id_and_certificate_auth() {
    let bao = Bao::start().await.unwrap();

    // A response-wrapped secret_id, named in the plugin YAML, is unwrapped
    // once and kept in memory.
    let wrapped = bao.dir.path().join("wrapped");
    std::fs::write(&wrapped, bao.wrapped_secret_id("keystore").await.unwrap()).unwrap();
    let wrapped_yaml = format!(
        "{}auth:\n  roleId: {}\n  wrappedSecretIdFile: {}\n",
        bao.yaml(),
        bao.mgmt.role_id,
        wrapped.display()
    );
    let mut host = Host::start(&wrapped_yaml, bao.dir.path()).await.unwrap();
    let access = plugin_credential();
    let id = uuid::Uuid::new_v4().to_string();
    let created = host
        .ok(
            "CreateKey",
            json!({"config": config(&access), "algorithm": "KEY_ALGORITHM_AES256", "id": id,
                                "region": "eu-test", "keyType": "KEY_TYPE_SYSTEM_MANAGED"}),
        )
        .await;
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    // The session re-logs in with the in-memory secret_id after a revocation.
    bao.cluster
        .expect_ok(
            0,
            Method::PUT,
            "sys/leases/revoke-prefix/auth/approle/login",
            json!({}),
        )
        .await
        .unwrap();
    host.ok("GetKey", json!({"parameters": params(&access, &key_id)}))
        .await;
    // Another process cannot reuse the wrapping token.
    let mut second = Host::start(&wrapped_yaml, bao.dir.path()).await.unwrap();
    let reused = second
        .call("GetKey", json!({"parameters": params(&access, &key_id)}))
        .await;
    assert_status(&reused, "InvalidArgument", MSG_AUTH);
    second.close().await.unwrap();

    host.close().await.unwrap();

    // Certificate auth, as CMK sends it (authType + clientCert + privateKey),
    // to a plugin without a credential of its own.
    let mut host = Host::start(&bao.yaml(), bao.dir.path()).await.unwrap();
    let tenant_ca = test_support::pki::TestCa::new("openkcm tenant CA").unwrap();
    let client = tenant_ca
        .issue("tenant-a", Some("OpenKCM"), &["tenant-a"])
        .unwrap();
    bao.cluster
        .expect_ok(0, Method::POST, "sys/auth/cert", json!({"type": "cert"}))
        .await
        .unwrap();
    bao.cluster
        .expect_ok(0, Method::POST, "auth/cert/certs/tenant-a", json!({
            "certificate": tenant_ca.cert_pem(), "allowed_common_names": ["tenant-a"],
            "token_policies": ["openbao-keystore-plugin"], "token_ttl": "1h", "token_max_ttl": "4h"}))
        .await
        .unwrap();
    let cmk = json!({"authType": "AUTH_TYPE_CERTIFICATE", "clientCert": client.cert_pem,
                     "privateKey": client.key_pem, "certRole": "tenant-a"});
    let key = host
        .ok("GetKey", json!({"parameters": params(&cmk, &key_id)}))
        .await;
    assert_eq!(key["status"], "ENABLED");
    let stranger = tenant_ca.issue("tenant-b", None, &["tenant-b"]).unwrap();
    let other = json!({"authType": "AUTH_TYPE_CERTIFICATE", "clientCert": stranger.cert_pem,
                       "privateKey": stranger.key_pem, "certRole": "tenant-a"});
    let refused = host
        .call("GetKey", json!({"parameters": params(&other, &key_id)}))
        .await;
    assert_status(&refused, "InvalidArgument", MSG_AUTH);
    // A certificate without its key cannot borrow the cached session.
    let without_key = json!({"authType": "AUTH_TYPE_CERTIFICATE", "clientCert": client.cert_pem,
                             "privateKey": stranger.key_pem, "certRole": "tenant-a"});
    let refused = host
        .call(
            "GetKey",
            json!({"parameters": params(&without_key, &key_id)}),
        )
        .await;
    assert_eq!(refused["code"], "InvalidArgument", "{refused}");
    host.close().await.unwrap();
}

#[test]
fn refuses_to_run_without_a_plugin_host() {
    let output = std::process::Command::new(support::PLUGIN)
        .env_remove("KeystoreInstanceKeyOperation")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("This binary is a plugin."), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    let output = std::process::Command::new(support::PLUGIN)
        .env(
            "KeystoreInstanceKeyOperation",
            "KeystoreInstanceKeyOperation",
        )
        .env("PLUGIN_PROTOCOL_VERSIONS", "2")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("protocol versions"));
    let help = std::process::Command::new(support::PLUGIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("KeystoreInstanceKeyOperation"));
}

/// Without `PLUGIN_CLIENT_CERT` (no AutoMTLS) the plugin refuses to serve
/// unless plaintext is allowed on purpose; either way its socket is
/// private (0600, in a 0700 folder).
#[test]
fn plaintext_grpc_needs_an_opt_in_and_the_socket_is_private() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let sockets = tempfile::tempdir().unwrap();
    let plugin = || {
        let mut command = std::process::Command::new(support::PLUGIN);
        command
            .env(
                "KeystoreInstanceKeyOperation",
                "KeystoreInstanceKeyOperation",
            )
            .env("PLUGIN_PROTOCOL_VERSIONS", "1")
            .env("PLUGIN_UNIX_SOCKET_DIR", sockets.path())
            .env_remove("PLUGIN_CLIENT_CERT")
            .env_remove("OPENBAO_KEYSTORE_ALLOW_PLAINTEXT_GRPC");
        command
    };
    let refused = plugin().output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty(), "no handshake");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("PLUGIN_CLIENT_CERT")
            && stderr.contains("OPENBAO_KEYSTORE_ALLOW_PLAINTEXT_GRPC=true"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(sockets.path()).unwrap().count(),
        0,
        "no socket was created"
    );

    let mut allowed = plugin()
        .env("OPENBAO_KEYSTORE_ALLOW_PLAINTEXT_GRPC", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut handshake = String::new();
    std::io::BufReader::new(allowed.stdout.take().unwrap())
        .read_line(&mut handshake)
        .unwrap();
    let fields: Vec<&str> = handshake.trim_end().split('|').collect();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777);
    let socket = std::path::PathBuf::from(fields[3]);
    let socket_mode = mode(&socket);
    let folder_mode = mode(socket.parent().unwrap());
    allowed.kill().unwrap();
    allowed.wait().unwrap();
    assert_eq!(fields[..3], ["1", "1", "unix"], "{handshake}");
    assert_eq!(fields[5], "", "plaintext: no server certificate");
    assert!(socket.starts_with(sockets.path()), "{handshake}");
    assert_eq!(socket_mode.unwrap(), 0o600);
    assert_eq!(folder_mode.unwrap(), 0o700);
}
