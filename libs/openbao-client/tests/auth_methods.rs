//! Every login method against real servers, the token keeper's renewal and
//! re-login, and that no credential ever shows in errors or debug output.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openbao_client::{
    Client, ClientConfig, Credential, Error, Login, SecretIdSource, Token, TokenKeeper,
};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use test_support::pki::TestCa;
use test_support::wait::poll_until_ok;
use test_support::{BaoCluster, BaoClusterOptions, ControlPlane};

async fn single_node() -> BaoCluster {
    BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn config(bao: &BaoCluster) -> ClientConfig {
    ClientConfig::new(&bao.addr(0))
        .unwrap()
        .with_ca_pem(bao.ca_pem().unwrap())
}

fn anonymous(bao: &BaoCluster) -> Client {
    Client::new(config(bao)).unwrap()
}

/// Enables AppRole with role `name` and returns (role_id, secret_id).
async fn approle(bao: &BaoCluster, name: &str, ttl: &str, max_ttl: &str) -> (String, String) {
    let _ = bao
        .request(
            0,
            Method::POST,
            "sys/auth/approle",
            Some(json!({"type": "approle"})),
        )
        .await;
    bao.expect_ok(
        0,
        Method::POST,
        &format!("auth/approle/role/{name}"),
        json!({"token_ttl": ttl, "token_max_ttl": max_ttl, "secret_id_num_uses": 0}),
    )
    .await
    .unwrap();
    let role_id = bao
        .expect_ok(
            0,
            Method::GET,
            &format!("auth/approle/role/{name}/role-id"),
            Value::Null,
        )
        .await
        .unwrap();
    let secret = bao
        .expect_ok(
            0,
            Method::POST,
            &format!("auth/approle/role/{name}/secret-id"),
            json!({}),
        )
        .await
        .unwrap();
    (
        role_id["data"]["role_id"].as_str().unwrap().to_owned(),
        secret["data"]["secret_id"].as_str().unwrap().to_owned(),
    )
}

async fn wrapped_secret_id(bao: &BaoCluster, name: &str) -> String {
    let response: Value = bao
        .http()
        .post(format!(
            "{}/v1/auth/approle/role/{name}/secret-id",
            bao.addr(0)
        ))
        .header("X-Vault-Token", bao.root_token())
        .header("X-Vault-Wrap-TTL", "120s")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["wrap_info"]["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn approle_login_from_value_file_and_wrapped_token() {
    let bao = single_node().await;
    let (role_id, secret_id) = approle(&bao, "app", "1h", "4h").await;
    let client = anonymous(&bao);
    let approle = |secret_id| Login::AppRole {
        mount: "approle".into(),
        role_id: role_id.clone(),
        secret_id,
    };

    let from_value = client
        .login(&approle(SecretIdSource::Plain(Credential::Value(
            SecretString::from(secret_id.clone()),
        ))))
        .await
        .unwrap();
    assert!(from_value.policies.contains(&"default".to_owned()));
    assert_eq!(from_value.lease_duration, Duration::from_secs(3600));

    // Files may end in a newline; it is not part of the secret.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{secret_id}\n")).unwrap();
    client
        .login(&approle(SecretIdSource::Plain(Credential::File(
            file.path().to_owned(),
        ))))
        .await
        .unwrap();

    // A wrapping token works once; the keeper unwraps once and reuses the secret_id.
    let wrapping = wrapped_secret_id(&bao, "app").await;
    let keeper = TokenKeeper::new(
        client.clone(),
        approle(SecretIdSource::Wrapped(Credential::Value(
            SecretString::from(wrapping.clone()),
        ))),
    );
    let first = keeper.client().await.unwrap().lookup_self().await.unwrap();
    keeper.invalidate().await;
    let second = keeper.client().await.unwrap().lookup_self().await.unwrap();
    assert_ne!(
        first.accessor, second.accessor,
        "the second login made a new token"
    );
    let reused = client
        .login(&approle(SecretIdSource::Wrapped(Credential::Value(
            SecretString::from(wrapping.clone()),
        ))))
        .await
        .unwrap_err();
    assert!(
        reused.to_string().contains("wrapping token is not valid"),
        "{reused}"
    );

    // Wrong credentials: a clear error that does not echo the secret.
    let wrong = client
        .login(&approle(SecretIdSource::Plain(Credential::Value(
            SecretString::from("00000000-dead-beef-0000-000000000000".to_owned()),
        ))))
        .await
        .unwrap_err();
    assert!(matches!(wrong, Error::BadRequest { .. }), "{wrong}");
    assert!(
        wrong.to_string().contains("invalid role or secret ID"),
        "{wrong}"
    );
    for text in [
        wrong.to_string(),
        format!("{wrong:?}"),
        format!("{keeper:?}"),
    ] {
        assert!(
            !text.contains("dead-beef") && !text.contains(&secret_id) && !text.contains(&wrapping),
            "{text}"
        );
    }
}

#[tokio::test]
async fn token_keeper_renews_then_logs_in_again_and_recovers_from_revocation() {
    let bao = single_node().await;
    let (role_id, secret_id) = approle(&bao, "short", "4s", "8s").await;
    let keeper = TokenKeeper::new(
        anonymous(&bao),
        Login::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id: SecretIdSource::Plain(Credential::Value(SecretString::from(secret_id))),
        },
    );
    let started = Instant::now();
    let first = keeper
        .client()
        .await
        .unwrap()
        .lookup_self()
        .await
        .unwrap()
        .accessor;

    // Use the keeper continuously; every call must find a valid token. The
    // first token outlives its 4 s TTL only if it was renewed, and after the
    // 8 s max TTL the keeper must have logged in again.
    let mut seen = BTreeSet::new();
    let mut first_alive_after_ttl = false;
    let deadline = started + Duration::from_secs(30);
    while seen.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second login within 30 s: {seen:?}"
        );
        let info = keeper.client().await.unwrap().lookup_self().await.unwrap();
        if info.accessor == first && started.elapsed() > Duration::from_secs(5) {
            first_alive_after_ttl = true;
        }
        seen.insert(info.accessor);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        first_alive_after_ttl,
        "the first token was not renewed past its TTL"
    );

    // A revoked token looks like a missing permission; `call` logs in again.
    let current = keeper
        .client()
        .await
        .unwrap()
        .lookup_self()
        .await
        .unwrap()
        .accessor;
    bao.expect_ok(
        0,
        Method::POST,
        "auth/token/revoke-accessor",
        json!({"accessor": current}),
    )
    .await
    .unwrap();
    let after = keeper
        .call(|client| async move { client.lookup_self().await })
        .await
        .unwrap();
    assert_ne!(after.accessor, current);
}

#[tokio::test]
async fn kubernetes_login_through_a_real_token_review() {
    let plane = ControlPlane::start().await.unwrap();
    let bao = single_node().await;
    let kube = plane.client().await.unwrap();

    // The reviewer identity OpenBao uses to call the TokenReview API.
    let reviewer = plane
        .service_account_token(
            "openbao-system",
            "token-reviewer",
            plane.issuer(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "openbao-token-reviewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "token-reviewer", "namespace": "openbao-system"}],
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(kube)
        .create(&Default::default(), &binding)
        .await
        .unwrap();

    bao.expect_ok(
        0,
        Method::POST,
        "sys/auth/kubernetes",
        json!({"type": "kubernetes"}),
    )
    .await
    .unwrap();
    bao.expect_ok(
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
    bao.expect_ok(
        0,
        Method::POST,
        "auth/kubernetes/role/app",
        json!({
            "bound_service_account_names": ["app"],
            "bound_service_account_namespaces": ["team-a"],
            "audience": "openbao-internal",
            "token_ttl": "1h",
        }),
    )
    .await
    .unwrap();

    let token = plane
        .service_account_token(
            "team-a",
            "app",
            "openbao-internal",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &token).unwrap();
    let login = |role: &str, jwt| Login::Kubernetes {
        mount: "kubernetes".into(),
        role: role.into(),
        jwt,
    };
    let auth = anonymous(&bao)
        .login(&login("app", Credential::File(file.path().to_owned())))
        .await
        .unwrap();
    assert!(auth.policies.contains(&"default".to_owned()));

    // A token of another namespace's account is refused by the role.
    let other = plane
        .service_account_token(
            "team-b",
            "app",
            "openbao-internal",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let err = anonymous(&bao)
        .login(&login(
            "app",
            Credential::Value(SecretString::from(other.clone())),
        ))
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    assert!(!err.to_string().contains(&other));
}

#[tokio::test]
async fn certificate_login_with_a_client_identity() {
    let bao = single_node().await;
    let ca = TestCa::new("client CA").unwrap();
    bao.expect_ok(0, Method::POST, "sys/auth/cert", json!({"type": "cert"}))
        .await
        .unwrap();
    bao.expect_ok(
        0,
        Method::POST,
        "auth/cert/certs/plugin",
        json!({"certificate": ca.cert_pem(), "token_ttl": "1h", "allowed_common_names": ["keystore-plugin"]}),
    )
    .await
    .unwrap();

    let login = Login::Cert {
        mount: "cert".into(),
        name: Some("plugin".into()),
    };
    let identity = |cn: &str| {
        let pair = ca.issue(cn, None, &[]).unwrap();
        SecretString::from(format!("{}{}", pair.cert_pem, pair.key_pem))
    };
    let client =
        Client::new(config(&bao).with_client_identity_pem(identity("keystore-plugin"))).unwrap();
    let auth = client.login(&login).await.unwrap();
    assert_eq!(auth.lease_duration, Duration::from_secs(3600));
    let info = client.with_token(auth.token).lookup_self().await.unwrap();
    assert!(info.path.starts_with("auth/cert/login"), "{}", info.path);

    // Another common name from the same CA is not allowed by the role.
    let stranger =
        Client::new(config(&bao).with_client_identity_pem(identity("stranger"))).unwrap();
    assert!(stranger.login(&login).await.is_err());
    // And no client certificate at all gets nowhere.
    assert!(anonymous(&bao).login(&login).await.is_err());
}

#[tokio::test]
async fn health_and_status_of_a_real_cluster() {
    let mut bao = BaoCluster::start_default().await.unwrap();
    let leader = bao.leader().await.unwrap();
    let standby = (leader + 1) % 3;
    let clients: Vec<Client> = (0..3)
        .map(|i| {
            Client::new(
                ClientConfig::new(&bao.addr(i))
                    .unwrap()
                    .with_ca_pem(bao.ca_pem().unwrap()),
            )
            .unwrap()
        })
        .collect();
    let at = |i: usize| clients[i].clone();
    assert_eq!(
        at(leader).health().await.unwrap().state,
        openbao_client::HealthState::Active
    );
    let health = at(standby).health().await.unwrap();
    assert_eq!(health.state, openbao_client::HealthState::Standby);
    assert_eq!(health.body.version, bao.version());
    let seal = at(standby).seal_status().await.unwrap();
    assert!(!seal.sealed && seal.initialized && seal.seal_type == "static");
    assert!(!at(standby).leader().await.unwrap().is_self);

    let root = at(leader).with_token(Token::new(bao.root_token()));
    let membership = root.membership().await.unwrap();
    assert_eq!(membership.voters().count(), 3);
    assert_eq!(membership.failure_tolerance, Some(1));
    assert!(membership.members.iter().all(|m| m.healthy == Some(true)));
    let leader_id = membership.leader().unwrap().node_id.clone();
    // The checked removal refuses the leader; plain remove-peer would not.
    let refused = root.remove_peer_checked(&leader_id).await.unwrap_err();
    assert!(refused.to_string().contains("leader"), "{refused}");

    // A stopped node is unreachable (a transport error naming what to check).
    bao.stop_node(standby);
    let err = at(standby).health().await.unwrap_err();
    assert!(
        matches!(err, Error::Transport { .. }) && err.to_string().contains("check the address"),
        "{err}"
    );
    // The others still agree on a leader and report the missing peer unhealthy.
    let view = poll_until_ok(
        Duration::from_secs(60),
        "autopilot to see the node gone",
        || async {
            let view = root.membership().await?;
            Ok((view
                .members
                .iter()
                .filter(|m| m.healthy == Some(false))
                .count()
                == 1)
                .then_some(view))
        },
    )
    .await
    .unwrap();
    assert_eq!(view.members.len(), 3);
}

#[tokio::test]
async fn init_returns_a_root_token_and_recovery_keys() {
    let bao = BaoCluster::start(BaoClusterOptions {
        nodes: 1,
        initialize: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = anonymous(&bao);
    assert_eq!(
        client.health().await.unwrap().state,
        openbao_client::HealthState::Uninitialized
    );
    let init = client
        .init(&openbao_client::InitRequest {
            recovery_shares: Some(1),
            recovery_threshold: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(init.recovery_keys_base64.len(), 1);
    assert!(!format!("{init:?}").contains(&init.root_token));
    let root = client.with_token(Token::new(init.root_token.clone()));
    poll_until_ok(
        Duration::from_secs(60),
        "the node to become active",
        || async {
            Ok((client.health().await?.state == openbao_client::HealthState::Active).then_some(()))
        },
    )
    .await
    .unwrap();
    assert!(
        root.lookup_self()
            .await
            .unwrap()
            .policies
            .contains(&"root".to_owned())
    );
    // A second init is refused with OpenBao's own words.
    let again = client
        .init(&openbao_client::InitRequest::default())
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already initialized"), "{again}");
}

#[tokio::test]
async fn demote_and_promote_change_a_members_vote() {
    let bao = BaoCluster::start_default().await.unwrap();
    let leader = bao.leader().await.unwrap();
    let root = anonymous(&bao)
        .with_address(bao.addr(leader).parse().unwrap())
        .unwrap()
        .with_token(Token::new(bao.root_token()));
    let standby = bao.nodes()[(leader + 1) % 3].id.clone();
    let vote = |wanted: bool| {
        let root = root.clone();
        let standby = standby.clone();
        async move {
            poll_until_ok(
                Duration::from_secs(60),
                "autopilot to apply the change",
                || async {
                    let config = root.raft_configuration().await?;
                    let voter = config
                        .servers
                        .iter()
                        .find(|s| s.node_id == standby)
                        .map(|s| s.voter);
                    Ok((voter == Some(wanted)).then_some(()))
                },
            )
            .await
            .unwrap()
        }
    };
    root.raft_demote(&standby).await.unwrap();
    vote(false).await;
    root.raft_promote(&standby).await.unwrap();
    vote(true).await;
    let unknown = root.raft_promote("no-such-node").await.unwrap_err();
    assert!(unknown.to_string().contains("not found"), "{unknown}");
}
