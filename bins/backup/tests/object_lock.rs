//! With --object-lock-mode, a backup's snapshot and manifest are immutable
//! in a real S3-compatible server: retention is set and early deletion fails.
//! The server is a private https endpoint: the backup trusts it through
//! --storage-ca-file, on both of its S3 clients, and refuses it without.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use aws_sdk_s3::types::ObjectLockMode;
use aws_smithy_http_client::tls;
use lifecycle_types::identities::Identity;
use test_support::jobs::run_job;
use test_support::{BaoCluster, BaoClusterOptions, S3Server};

async fn s3_client(s3: &S3Server) -> aws_sdk_s3::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(
                    tls::TrustStore::empty().with_pem_certificate(s3.ca_pem.clone().unwrap()),
                )
                .build()
                .unwrap(),
        )
        .build_https();
    let credentials = aws_sdk_s3::config::Credentials::new(
        s3.access_key_id(),
        s3.secret_access_key(),
        None,
        None,
        "test",
    );
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_sdk_s3::config::Region::new(test_support::s3::REGION))
        .credentials_provider(credentials)
        .endpoint_url(&s3.endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_makes_backups_immutable() {
    let bao = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let s3 = S3Server::start_tls_on("plain", std::net::Ipv4Addr::LOCALHOST)
        .await
        .unwrap();
    assert!(s3.endpoint.starts_with("https://"));
    let client = s3_client(&s3).await;
    client
        .create_bucket()
        .bucket("locked")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), bao.ca_pem().unwrap()).unwrap();
    let storage_ca = dir.path().join("storage-ca.crt");
    std::fs::write(&storage_ca, s3.ca_pem.as_deref().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("token"),
        bao.identity_token(Identity::Backup).await.unwrap(),
    )
    .unwrap();
    let env: Vec<(String, String)> = vec![
        ("OPENBAO_ADDR".into(), bao.addr(0)),
        (
            "OPENBAO_CACERT".into(),
            dir.path().join("ca.crt").display().to_string(),
        ),
        ("OPENBAO_AUTH".into(), "token".into()),
        (
            "OPENBAO_TOKEN_FILE".into(),
            dir.path().join("token").display().to_string(),
        ),
        ("AWS_ACCESS_KEY_ID".into(), s3.access_key_id().into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            s3.secret_access_key().into(),
        ),
        ("AWS_REGION".into(), test_support::s3::REGION.into()),
    ];
    let without_ca = |bucket: &str| -> Vec<String> {
        [
            "--namespace",
            "team-a",
            "--cluster",
            "vault",
            "--destination",
            &format!("s3://{bucket}/p"),
            "--s3-endpoint",
            &s3.endpoint,
            "--object-lock-mode",
            "governance",
            "--object-lock-days",
            "1",
            "--retries",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let flags = |bucket: &str| -> Vec<String> {
        let mut flags = without_ca(bucket);
        flags.extend(["--storage-ca-file".into(), storage_ca.display().to_string()]);
        flags
    };
    let backup = std::path::Path::new(env!("CARGO_BIN_EXE_backup"));
    let run = run_job(backup, &flags("locked"), &env).await.unwrap();
    assert_eq!(run.code, Some(0), "{}", run.output());
    let details = run.result().unwrap()["details"].clone();

    for key in [
        details["snapshot"].as_str().unwrap(),
        details["manifest"].as_str().unwrap(),
    ] {
        // HeadObject reports the retention (versitygw answers GetObjectRetention
        // with a root element the SDK does not accept).
        let head = client
            .head_object()
            .bucket("locked")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode(),
            Some(&ObjectLockMode::Governance),
            "{key}"
        );
        let until = head.object_lock_retain_until_date().unwrap().secs();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (until - now - 86_400).abs() < 600,
            "{key} retained until {until}"
        );
        let version = head.version_id().map(str::to_owned);
        let mut delete = client.delete_object().bucket("locked").key(key);
        if let Some(version) = version {
            delete = delete.version_id(version);
        }
        assert!(
            delete.send().await.is_err(),
            "{key} was deleted despite Object Lock"
        );
    }

    // A bucket without Object Lock: the backup fails as a storage error and
    // leaves no manifest behind.
    let run = run_job(backup, &flags("plain"), &env).await.unwrap();
    assert_eq!(run.code, Some(6), "{}", run.output());
    assert!(
        run.result().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("Object Lock"),
        "{}",
        run.output()
    );
    let listed = client
        .list_objects_v2()
        .bucket("plain")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(keys.is_empty(), "{keys:?}");

    // Without the CA the endpoint is not trusted: a storage failure that
    // says so, and no secret in what the Job printed.
    let run = run_job(backup, &without_ca("locked"), &env).await.unwrap();
    assert_eq!(run.code, Some(6), "{}", run.output());
    let message = run.result().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert!(!run.output().contains(s3.secret_access_key()));
}
