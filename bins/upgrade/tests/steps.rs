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
async fn preflight_step_down_and_verify_with_the_upgrade_identity() {
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
