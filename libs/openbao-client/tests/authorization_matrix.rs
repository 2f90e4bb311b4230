//! The per-identity authorization split, proven against real OpenBao Raft
//! clusters: every identity logs in with its own JWT role using a token the
//! real kube-apiserver minted (audience `openbao-internal`, the controller's
//! per-cluster audience for the controller), then calls every
//! privileged endpoint. Each cell must be allowed exactly when the identity's
//! policy files grant it, and a denial must surface as a typed error.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use lifecycle_types::identities::{
    CANARY_FIELD, CANARY_MOUNT, CANARY_PATH, Identity, JwtRole, SubjectVars, controller_audience,
    jwt_roles,
};
use openbao_client::raft::{AutopilotConfig, JoinRequest};
use openbao_client::{Client, ClientConfig, Credential, Error, Login};
use secrecy::SecretString;
use test_support::identities::{JWT_MOUNT, TEST_CLUSTER_UID};
use test_support::{BaoCluster, BaoClusterOptions, ControlPlane};

const AUDIENCE: &str = "openbao-internal";
const VARS: SubjectVars<'static> = SubjectVars {
    operator_namespace: "openbao-system",
    namespace: "team-a",
    cluster: "vault",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Denied,
}

/// An endpoint: the policy path and capabilities it needs, and whether
/// OpenBao serves it without a token at all.
struct Endpoint {
    name: &'static str,
    path: &'static str,
    needs: &'static [&'static str],
    unauthenticated: bool,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        name: "health",
        path: "sys/health",
        needs: &["read"],
        unauthenticated: true,
    },
    Endpoint {
        name: "raft-config",
        path: "sys/storage/raft/configuration",
        needs: &["read"],
        unauthenticated: false,
    },
    Endpoint {
        name: "remove-peer",
        path: "sys/storage/raft/remove-peer",
        needs: &["update"],
        unauthenticated: false,
    },
    Endpoint {
        name: "autopilot-config-read",
        path: "sys/storage/raft/autopilot/configuration",
        needs: &["read"],
        unauthenticated: false,
    },
    Endpoint {
        name: "autopilot-config-update",
        path: "sys/storage/raft/autopilot/configuration",
        needs: &["update"],
        unauthenticated: false,
    },
    Endpoint {
        name: "autopilot-state",
        path: "sys/storage/raft/autopilot/state",
        needs: &["read"],
        unauthenticated: false,
    },
    Endpoint {
        name: "snapshot",
        path: "sys/storage/raft/snapshot",
        needs: &["read"],
        unauthenticated: false,
    },
    // The seal-checking restore: `update` on the snapshot path.
    Endpoint {
        name: "snapshot-restore",
        path: "sys/storage/raft/snapshot",
        needs: &["update"],
        unauthenticated: false,
    },
    Endpoint {
        name: "snapshot-force",
        path: "sys/storage/raft/snapshot-force",
        needs: &["update"],
        unauthenticated: false,
    },
    // Served without a token: the joining node is new and holds none.
    Endpoint {
        name: "join",
        path: "sys/storage/raft/join",
        needs: &["update"],
        unauthenticated: true,
    },
    Endpoint {
        name: "promote",
        path: "sys/storage/raft/promote",
        needs: &["update"],
        unauthenticated: false,
    },
    Endpoint {
        name: "demote",
        path: "sys/storage/raft/demote",
        needs: &["update"],
        unauthenticated: false,
    },
    Endpoint {
        name: "read-secret",
        path: "secret/data/app",
        needs: &["read"],
        unauthenticated: false,
    },
    // The restore-drill canary (the cluster's uid, in the operator's own
    // KV mount): only the drill identity reads it.
    Endpoint {
        name: "canary",
        path: CANARY_PATH,
        needs: &["read"],
        unauthenticated: false,
    },
    // The controller may move its own role to its per-cluster audience;
    // the call writes the audience the role already has.
    Endpoint {
        name: "controller-role-audience",
        path: "auth/jwt/role/openbao-operator",
        needs: &["update"],
        unauthenticated: false,
    },
    // Last: a granted step-down changes the leader.
    Endpoint {
        name: "step-down",
        path: "sys/step-down",
        needs: &["sudo", "update"],
        unauthenticated: false,
    },
];

/// What the policy files say the role may do.
fn expected(role: &JwtRole, endpoint: &Endpoint) -> Outcome {
    if endpoint.unauthenticated {
        return Outcome::Allowed;
    }
    let granted = Identity::ALL
        .iter()
        .filter(|i| role.token_policies.iter().any(|p| p == i.policy_name()))
        .flat_map(|i| i.policy().unwrap())
        .filter(|rule| rule.path == endpoint.path)
        .any(|rule| endpoint.needs.iter().all(|cap| rule.allows(cap)));
    if granted {
        Outcome::Allowed
    } else {
        Outcome::Denied
    }
}

/// Calls the endpoint. A permission error is a denial; any other answer
/// (success or a business error such as "server not found") means the
/// request got past authorization.
async fn call(client: &Client, endpoint: &Endpoint, leader_addr: &str) -> (Outcome, String) {
    let result: Result<(), Error> = match endpoint.name {
        "health" => client.health().await.map(drop),
        "raft-config" => client.raft_configuration().await.map(drop),
        "remove-peer" => client.raft_remove_peer("no-such-node").await,
        "autopilot-config-read" => client.autopilot_configuration().await.map(drop),
        "autopilot-config-update" => {
            client
                .set_autopilot_configuration(&AutopilotConfig {
                    server_stabilization_time: Some("2s".into()),
                    ..Default::default()
                })
                .await
        }
        "autopilot-state" => client.autopilot_state().await.map(drop),
        "snapshot" => client.snapshot().await.map(drop),
        // Not a snapshot: authorization is checked before the body is read.
        "snapshot-force" => client.snapshot_force(junk()).await,
        "snapshot-restore" => client.snapshot_restore(junk()).await,
        "join" => client
            .raft_join(&JoinRequest {
                leader_api_addr: leader_addr.to_owned(),
                non_voter: true,
                ..Default::default()
            })
            .await
            .map(drop),
        "promote" => client.raft_promote("no-such-node").await,
        "demote" => client.raft_demote("no-such-node").await,
        "read-secret" => client.read("secret/data/app").await.map(drop),
        "canary" => client.read(CANARY_PATH).await.map(drop),
        "controller-role-audience" => client
            .write(
                "auth/jwt/role/openbao-operator",
                &serde_json::json!({"role_type": "jwt", "bound_audiences": controller_audience_for_tests()}),
            )
            .await
            .map(drop),
        "step-down" => client.step_down().await,
        other => panic!("unknown endpoint {other}"),
    };
    match result {
        Err(Error::PermissionDenied { message, .. }) => (Outcome::Denied, message),
        Err(other) => (Outcome::Allowed, other.to_string()),
        Ok(()) => (Outcome::Allowed, "ok".to_owned()),
    }
}

fn junk() -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    stream::iter([Ok(Bytes::from_static(b"not a snapshot"))])
}

/// The audience the controller's role is bound to in these clusters.
fn controller_audience_for_tests() -> String {
    controller_audience(VARS.namespace, VARS.cluster, TEST_CLUSTER_UID)
}

/// The audience a role's tokens are minted with here.
fn audience_of(role: &JwtRole) -> String {
    if role.identity == Identity::Controller.key() {
        controller_audience_for_tests()
    } else {
        AUDIENCE.to_owned()
    }
}

fn service_account(role: &JwtRole) -> (String, String) {
    let subject = role.subject(&VARS);
    let mut parts = subject.rsplitn(2, ':');
    let name = parts.next().unwrap().to_owned();
    let namespace = parts.next().unwrap().rsplit(':').next().unwrap().to_owned();
    (namespace, name)
}

fn client_for(bao: &BaoCluster, index: usize) -> Client {
    let config = ClientConfig::new(&bao.addr(index))
        .unwrap()
        .with_ca_pem(bao.ca_pem().unwrap());
    Client::new(config).unwrap()
}

async fn login(
    bao: &BaoCluster,
    plane: &ControlPlane,
    role: &str,
    namespace: &str,
    name: &str,
    audience: &str,
) -> Result<Client, Error> {
    let token = plane
        .service_account_token(namespace, name, audience, Duration::from_secs(600))
        .await
        .unwrap();
    let client = client_for(bao, 0);
    let login = Login::Jwt {
        mount: JWT_MOUNT.into(),
        role: role.into(),
        jwt: Credential::Value(SecretString::from(token)),
    };
    let auth = client.login(&login).await?;
    Ok(client.with_token(auth.token))
}

async fn matrix(version: &str) {
    let plane = ControlPlane::start().await.unwrap();
    let bao = BaoCluster::start(BaoClusterOptions {
        version: version.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    bao.install_operator_identities(&plane, &VARS)
        .await
        .unwrap();
    let leader = bao.leader().await.unwrap();
    bao.expect_ok(
        leader,
        reqwest::Method::POST,
        "sys/mounts/secret",
        serde_json::json!({"type": "kv-v2"}),
    )
    .await
    .unwrap();
    bao.expect_ok(
        leader,
        reqwest::Method::POST,
        &format!("sys/mounts/{CANARY_MOUNT}"),
        serde_json::json!({"type": "kv", "options": {"version": "1"}}),
    )
    .await
    .unwrap();
    bao.expect_ok(
        leader,
        reqwest::Method::POST,
        CANARY_PATH,
        serde_json::json!({CANARY_FIELD: TEST_CLUSTER_UID}),
    )
    .await
    .unwrap();
    test_support::wait::poll_until_ok(
        Duration::from_secs(30),
        "kv mount to accept writes",
        || async {
            let (status, _) = bao
                .request(
                    bao.leader().await?,
                    reqwest::Method::POST,
                    "secret/data/app",
                    Some(serde_json::json!({"data": {"password": "hunter2"}})),
                )
                .await?;
            Ok(status.is_success().then_some(()))
        },
    )
    .await
    .unwrap();

    let mut table = format!(
        "OpenBao {version}: identity x endpoint (A = allowed, d = denied)\n{:<20}",
        ""
    );
    for endpoint in ENDPOINTS {
        table.push_str(&format!(
            " {:>5}",
            &endpoint.name[..endpoint.name.len().min(5)]
        ));
    }
    let mut mismatches = Vec::new();
    for role in jwt_roles().unwrap() {
        let (namespace, name) = service_account(&role);
        let client = login(
            &bao,
            &plane,
            &role.name,
            &namespace,
            &name,
            &audience_of(&role),
        )
        .await
        .unwrap();
        let info = client.lookup_self().await.unwrap();
        let policies: BTreeSet<_> = info.policies.iter().cloned().collect();
        for policy in &role.token_policies {
            assert!(
                policies.contains(policy),
                "{}: token lacks {policy}: {policies:?}",
                role.name
            );
        }
        table.push_str(&format!("\n{:<20}", role.identity));
        for endpoint in ENDPOINTS {
            // Calls go to the active node, as the operator's binaries do; a
            // standby would redirect a streamed snapshot before checking ACLs.
            let leader_addr = bao.addr(bao.leader().await.unwrap());
            let at_leader = client.with_address(leader_addr.parse().unwrap()).unwrap();
            let (outcome, detail) = call(&at_leader, endpoint, &leader_addr).await;
            table.push_str(&format!(
                " {:>5}",
                if outcome == Outcome::Allowed {
                    "A"
                } else {
                    "d"
                }
            ));
            if outcome != expected(&role, endpoint) {
                mismatches.push(format!(
                    "{} {}: got {outcome:?} ({detail})",
                    role.identity, endpoint.name
                ));
            }
            if endpoint.name == "step-down" && outcome == Outcome::Allowed {
                // Let the election settle before the next identity's calls.
                bao.wait_for_voters(3).await.unwrap();
            }
        }
    }
    println!("{table}");
    assert!(
        mismatches.is_empty(),
        "cells that disagree with the policy files:\n{}",
        mismatches.join("\n")
    );

    // The headline guarantees, spelled out.
    let backup = jwt_roles()
        .unwrap()
        .into_iter()
        .find(|r| r.identity == "backup")
        .unwrap();
    let restore = jwt_roles()
        .unwrap()
        .into_iter()
        .find(|r| r.identity == "restore")
        .unwrap();
    let force = ENDPOINTS
        .iter()
        .find(|e| e.name == "snapshot-force")
        .unwrap();
    let secret = ENDPOINTS.iter().find(|e| e.name == "read-secret").unwrap();
    assert_eq!(expected(&backup, force), Outcome::Denied);
    assert_eq!(expected(&restore, secret), Outcome::Denied);

    // A token for another audience, and one for another subject, are refused.
    let (namespace, name) = service_account(&backup);
    let err = login(
        &bao,
        &plane,
        &backup.name,
        &namespace,
        &name,
        "someone-else",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::BadRequest { .. }), "{err}");
    assert!(err.to_string().contains("invalid audience"), "{err}");
    let err = login(&bao, &plane, &backup.name, &namespace, "intruder", AUDIENCE)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid subject"), "{err}");
    // Another cluster's backup Job (same namespace, or the same cluster
    // name in another namespace) cannot log in here.
    for (other_namespace, other_account) in [
        (namespace.as_str(), "payments-backup"),
        ("team-b", name.as_str()),
    ] {
        let err = login(
            &bao,
            &plane,
            &backup.name,
            other_namespace,
            other_account,
            AUDIENCE,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("invalid subject"), "{err}");
    }
    // Errors name the reason but never carry the JWT.
    assert!(!err.to_string().contains("eyJ"), "{err}");
}

#[tokio::test]
async fn identities_are_split_on_2_7_2() {
    matrix("2.7.2").await;
}

#[tokio::test]
async fn identities_are_split_on_2_6_2() {
    matrix("2.6.2").await;
}
