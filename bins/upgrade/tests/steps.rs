//! The upgrade Job's steps against a real 3-node OpenBao Raft cluster,
//! logged in with a token that holds only the upgrade policy.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lifecycle_types::identities::Identity;
use serde_json::Value;
use test_support::jobs::{JobRun, run_job};
use test_support::tools::workspace_binary;
use test_support::wait::poll_until_ok;
use test_support::{BaoCluster, BaoClusterOptions};

async fn upgrade(env: &[(String, String)], args: &[&str]) -> JobRun {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run_job(&workspace_binary("upgrade").unwrap(), &args, env)
        .await
        .unwrap()
}

fn details(run: &JobRun, code: i32) -> Value {
    assert_eq!(run.code, Some(code), "{}", run.output());
    run.result()
        .unwrap_or_else(|| panic!("no result line:\n{}", run.output()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_snapshot_step_down_and_verify_with_the_upgrade_identity() {
    let bao = BaoCluster::start(BaoClusterOptions {
        nodes: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    bao.wait_for_voters(3).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, bao.ca_pem().unwrap()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, bao.identity_token(Identity::Upgrade).await.unwrap()).unwrap();
    let env: Vec<(String, String)> = [
        ("OPENBAO_ADDR", bao.addrs().join(",")),
        ("OPENBAO_CACERT", ca.display().to_string()),
        ("OPENBAO_AUTH", "token".into()),
        ("OPENBAO_TOKEN_FILE", token.display().to_string()),
        ("OPENBAO_DISCOVERY_TIMEOUT", "20s".into()),
        // Refusals at once; the wait is checked below.
        ("UPGRADE_SETTLE_TIMEOUT", "0s".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    // Preflight passes once autopilot calls every server healthy.
    let preflight = poll_until_ok(Duration::from_secs(90), "a passing preflight", || async {
        let run = upgrade(&env, &["preflight"]).await;
        Ok((run.code == Some(0)).then_some(run))
    })
    .await
    .unwrap();
    let result = details(&preflight, 0);
    assert_eq!(result["details"]["voters"].as_array().unwrap().len(), 3);
    assert_eq!(result["details"]["versions"][0], bao.version());
    // One voter cannot be lost safely when two must stay: refused, named.
    let strict = upgrade(&env, &["preflight", "--min-failure-tolerance", "2"]).await;
    let refused = details(&strict, 7);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("failure tolerance is 1"),
        "{refused}"
    );

    // Verify: every voter on the running version, the nodes as voters.
    let voters: Vec<String> = bao
        .raft_servers()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let verified = upgrade(
        &env,
        &[
            "verify",
            "--target-version",
            bao.version(),
            "--expected-voters",
            &voters.join(","),
        ],
    )
    .await;
    details(&verified, 0);
    let behind = upgrade(&env, &["verify", "--target-version", "9.9.9"]).await;
    let refused = details(&behind, 7);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("not every voter runs 9.9.9"),
        "{refused}"
    );
    let missing = upgrade(
        &env,
        &[
            "verify",
            "--target-version",
            bao.version(),
            "--expected-voters",
            &voters[..2].join(","),
        ],
    )
    .await;
    assert!(
        details(&missing, 7)["message"]
            .as_str()
            .unwrap()
            .contains("membership is inconsistent")
    );

    // Snapshot: the pre-upgrade backup and its manifest land in the
    // cluster's folder of the backup destination, read with the upgrade
    // identity.
    let mut s3 = test_support::S3Server::start("upgrades").await.unwrap();
    let mut storage_env = env.clone();
    storage_env.extend(
        [
            ("AWS_ACCESS_KEY_ID", s3.access_key_id().to_owned()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key().to_owned()),
            ("AWS_REGION", test_support::s3::REGION.to_owned()),
            ("UPGRADE_DESTINATION", "s3://upgrades/pre".to_owned()),
            ("UPGRADE_S3_ENDPOINT", s3.endpoint.clone()),
            ("UPGRADE_NAMESPACE", "team-a".to_owned()),
            ("UPGRADE_CLUSTER", "vault".to_owned()),
            ("UPGRADE_CLUSTER_UID", "uid-1".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let stored = upgrade(&storage_env, &["snapshot"]).await;
    let result = details(&stored, 0);
    let folder = s3.data_dir().join("upgrades/pre/team-a/vault");
    let object = |key: &str| {
        let name = result["details"][key]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        std::fs::read(folder.join(name)).unwrap()
    };
    let snapshot = object("snapshot");
    assert_eq!(
        result["details"]["size"].as_u64(),
        Some(snapshot.len() as u64),
        "{result}"
    );
    let manifest: Value = serde_json::from_slice(&object("manifest")).unwrap();
    assert_eq!(
        manifest["sha256"], result["details"]["sha256"],
        "{manifest}"
    );
    assert_eq!(manifest["openbaoVersion"], bao.version(), "{manifest}");
    // The storage down: a storage failure that says what to check, without
    // the storage's keys.
    s3.stop();
    let failed = upgrade(&storage_env, &["snapshot"]).await;
    let refused = details(&failed, 6);
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("backup destination"), "{message}");
    assert!(!failed.output().contains(s3.secret_access_key()));

    // Step-down: another node becomes active.
    let stepped = upgrade(&env, &["step-down"]).await;
    let result = details(&stepped, 0);
    let (before, after) = (
        result["details"]["previousLeader"].as_str().unwrap(),
        result["details"]["leader"].as_str().unwrap(),
    );
    assert!(!before.is_empty() && before != after, "{result}");
    assert!(voters.iter().any(|v| v == after), "{result}");
}
