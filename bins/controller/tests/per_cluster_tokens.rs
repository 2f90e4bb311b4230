//! Per-cluster controller tokens (issue 12), against real OpenBao 2.7.2
//! servers whose JWT auth trusts a real kube-apiserver's issuer through
//! OIDC discovery, with the controller's own login code
//! ([`controller::openbao::ClusterLogin`]) minting through the real
//! TokenRequest API:
//!
//! - a token minted for cluster A logs in at A and is refused at B with
//!   OpenBao's audience error, so a token captured at one cluster cannot be
//!   replayed at another;
//! - a role still bound to the shared `openbao-internal` audience is moved
//!   to the per-cluster audience through the legacy token, and the
//!   controller policy allows that write and nothing wider (allow and deny
//!   sides both exercised); with a policy that predates the move, the
//!   controller keeps working on the legacy login and changes nothing;
//! - a cluster with a custom `spec.selfInit.oidc.audience`, bootstrapped
//!   with exactly the writes the operator renders, is usable by the
//!   controller, and its Job identities log in with the custom audience.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use controller::openbao::{ClusterLogin, Credentials};
use controller::render::Inputs;
use controller::render::self_init::{KubeCa, operator_requests};
use kube::Api;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::identities::{
    Identity, JWT_AUTH_MOUNT, SubjectVars, controller_audience, jwt_role,
};
use openbao_client::{Client, ClientConfig, Credential, Error, Login};
use reqwest::Method;
use serde_json::{Value, json};
use test_support::{BaoCluster, BaoClusterOptions, ControlPlane};

use common::{OPERATOR_ACCOUNT, OPERATOR_NAMESPACE};

const NS: &str = "team-a";
const ROLE: &str = "openbao-operator";
const ROLE_PATH: &str = "auth/jwt/role/openbao-operator";
const UID_A: &str = "0a0a0a0a-0000-4000-8000-00000000000a";
const UID_B: &str = "0b0b0b0b-0000-4000-8000-00000000000b";
const AUDIENCE_REFUSED: &str = "invalid audience (aud) claim";

fn vars(cluster: &str) -> SubjectVars<'_> {
    SubjectVars {
        operator_namespace: OPERATOR_NAMESPACE,
        namespace: NS,
        cluster,
    }
}

/// One-node OpenBao with TLS, as the test harness builds it.
async fn one_node() -> BaoCluster {
    BaoCluster::start(BaoClusterOptions {
        version: "2.7.2".into(),
        nodes: 1,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// An unauthenticated client for node 0.
fn client_for(bao: &BaoCluster) -> Client {
    let mut config = ClientConfig::new(&bao.addr(0)).unwrap();
    if let Some(ca) = bao.ca_pem() {
        config = config.with_ca_pem(ca);
    }
    Client::new(config).unwrap()
}

/// The controller's credentials with a legacy (openbao-internal) token
/// file, as the Deployment mounts it.
async fn credentials(plane: &ControlPlane, dir: &tempfile::TempDir) -> (Credentials, PathBuf) {
    let legacy = plane
        .service_account_token(
            OPERATOR_NAMESPACE,
            OPERATOR_ACCOUNT,
            "openbao-internal",
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let file = dir.path().join("openbao-internal-token");
    std::fs::write(&file, &legacy).unwrap();
    let credentials = Credentials::new(
        plane.client().await.unwrap(),
        OPERATOR_NAMESPACE,
        OPERATOR_ACCOUNT,
        file.clone(),
    );
    (credentials, file)
}

/// A direct JWT login as the controller's role with `jwt`.
async fn login_with(bao: &BaoCluster, role: &str, jwt: &str) -> Result<Client, Error> {
    let client = client_for(bao);
    let auth = client
        .login(&Login::jwt(role, Credential::value(jwt)))
        .await?;
    Ok(client.with_token(auth.token))
}

/// The role as OpenBao stores it (root token).
async fn read_role(bao: &BaoCluster, path: &str) -> Value {
    let (status, body) = bao.request(0, Method::GET, path, None).await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body["data"].clone()
}

/// Sets the controller role's audiences with the root token (what an
/// earlier release's bootstrap left behind, or an admin's fix).
async fn bind_role(bao: &BaoCluster, audiences: &[&str]) {
    bao.expect_ok(
        0,
        Method::POST,
        ROLE_PATH,
        json!({"role_type": "jwt", "bound_audiences": audiences}),
    )
    .await
    .unwrap();
}

fn assert_audience_refused(result: Result<Client, Error>) {
    let Err(error) = result else {
        panic!("the login must be refused");
    };
    assert!(
        matches!(error, Error::BadRequest { .. }) && error.to_string().contains(AUDIENCE_REFUSED),
        "{error}"
    );
    assert!(!error.to_string().contains("eyJ"), "a JWT in: {error}");
}

fn assert_denied(result: Result<Option<Value>, Error>, what: &str) {
    match result {
        Err(Error::PermissionDenied { .. }) => {}
        other => panic!("{what}: expected permission denied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_per_cluster_and_old_roles_migrate_without_a_root_token() {
    test_support::install_crypto_provider();
    let plane = ControlPlane::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (credentials, legacy_file) = credentials(&plane, &dir).await;
    let (a, b) = tokio::join!(one_node(), one_node());
    a.install_operator_identities_for(&plane, &vars("alpha"), UID_A, "openbao-internal")
        .await
        .unwrap();
    b.install_operator_identities_for(&plane, &vars("beta"), UID_B, "openbao-internal")
        .await
        .unwrap();
    let audience_a = controller_audience(NS, "alpha", UID_A);
    let audience_b = controller_audience(NS, "beta", UID_B);

    // The controller logs in at each cluster with its own token for it,
    // and the login carries the controller policy.
    let login_a = ClusterLogin::new(credentials.clone(), NS, "alpha", UID_A);
    assert_eq!(login_a.audience(), audience_a);
    let at_a = login_a.client(client_for(&a)).await.unwrap();
    let info = at_a.lookup_self().await.unwrap();
    assert!(
        info.policies.iter().any(|p| p == "openbao-operator"),
        "{info:?}"
    );
    at_a.raft_configuration().await.unwrap();
    let login_b = ClusterLogin::new(credentials.clone(), NS, "beta", UID_B);
    login_b
        .client(client_for(&b))
        .await
        .unwrap()
        .raft_configuration()
        .await
        .unwrap();

    // Cross-cluster replay: a token minted for A (as captured from A's raw
    // audit log or by an image A's tenant chose) works at A only.
    let token_a = plane
        .service_account_token(
            OPERATOR_NAMESPACE,
            OPERATOR_ACCOUNT,
            &audience_a,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    login_with(&a, ROLE, &token_a).await.unwrap();
    assert_audience_refused(login_with(&b, ROLE, &token_a).await);
    // The shared openbao-internal token no longer opens either cluster.
    let legacy = std::fs::read_to_string(&legacy_file).unwrap();
    assert_audience_refused(login_with(&a, ROLE, &legacy).await);
    assert_audience_refused(login_with(&b, ROLE, &legacy).await);
    // And the controller's login for A, pointed at B, is refused there
    // (both its token and the legacy one) without touching B's role.
    let misrouted = ClusterLogin::new(credentials.clone(), NS, "alpha", UID_A);
    let error = misrouted.client(client_for(&b)).await.err().unwrap();
    assert!(error.to_string().contains(AUDIENCE_REFUSED), "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("role_type=jwt bound_audiences={audience_a}")),
        "the error says how to fix the role: {error}"
    );
    assert!(!error.to_string().contains("eyJ"), "{error}");
    assert_eq!(
        read_role(&b, ROLE_PATH).await["bound_audiences"],
        json!([audience_b])
    );

    // The controller policy: its own role's audience, and nothing else.
    let allowed = at_a
        .write(
            ROLE_PATH,
            &json!({"role_type": "jwt", "bound_audiences": audience_a}),
        )
        .await;
    assert!(
        allowed.is_ok(),
        "moving its own role must be allowed: {allowed:?}"
    );
    let attempts = [
        (
            "token_policies beside the audience",
            ROLE_PATH,
            json!({"bound_audiences": audience_a, "token_policies": "openbao-operator-restore"}),
        ),
        (
            "token_policies alone",
            ROLE_PATH,
            json!({"token_policies": "root"}),
        ),
        (
            "bound_subject beside the audience",
            ROLE_PATH,
            json!({"bound_audiences": audience_a, "bound_subject": "system:serviceaccount:team-a:intruder"}),
        ),
        (
            "token_ttl beside the audience",
            ROLE_PATH,
            json!({"bound_audiences": audience_a, "token_ttl": "768h"}),
        ),
        (
            "back to the shared audience",
            ROLE_PATH,
            json!({"bound_audiences": "openbao-internal"}),
        ),
        (
            "a comma-separated list re-admitting the shared audience",
            ROLE_PATH,
            json!({"bound_audiences": format!("{audience_a},openbao-internal")}),
        ),
        (
            "a JSON list re-admitting the shared audience",
            ROLE_PATH,
            json!({"bound_audiences": [audience_a, "openbao-internal"]}),
        ),
        (
            "another identity's role",
            "auth/jwt/role/openbao-operator-restore",
            json!({"bound_audiences": audience_a}),
        ),
        (
            "a new role",
            "auth/jwt/role/openbao-operator-2",
            json!({"bound_audiences": audience_a}),
        ),
    ];
    for (what, path, body) in attempts {
        assert_denied(at_a.write(path, &body).await, what);
    }
    let role = read_role(&a, ROLE_PATH).await;
    assert_eq!(role["bound_audiences"], json!([audience_a]));
    assert_eq!(role["token_policies"], json!(["openbao-operator"]));
    assert_eq!(
        role["bound_subject"],
        format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}")
    );

    // Migration, first with a controller policy from before this release
    // (no grant on its role): the controller keeps working through the
    // legacy token and changes nothing.
    let old_policy = Identity::Controller
        .policy_hcl()
        .split("# Move its own JWT role")
        .next()
        .unwrap()
        .to_owned();
    assert!(!old_policy.contains("auth/jwt"));
    b.expect_ok(
        0,
        Method::PUT,
        "sys/policies/acl/openbao-operator",
        json!({"policy": old_policy}),
    )
    .await
    .unwrap();
    bind_role(&b, &["openbao-internal"]).await;
    let stuck = ClusterLogin::new(credentials.clone(), NS, "beta", UID_B);
    let legacy_login = stuck.client(client_for(&b)).await.unwrap();
    legacy_login.raft_configuration().await.unwrap();
    assert_eq!(
        read_role(&b, ROLE_PATH).await["bound_audiences"],
        json!(["openbao-internal"])
    );

    // Then with this release's policy: the legacy login moves the role.
    b.expect_ok(
        0,
        Method::PUT,
        "sys/policies/acl/openbao-operator",
        json!({"policy": Identity::Controller.policy_hcl()}),
    )
    .await
    .unwrap();
    let before = read_role(&b, ROLE_PATH).await;
    let migrating = ClusterLogin::new(credentials.clone(), NS, "beta", UID_B);
    let migrated = migrating.client(client_for(&b)).await.unwrap();
    migrated.raft_configuration().await.unwrap();
    let after = read_role(&b, ROLE_PATH).await;
    assert_eq!(after["bound_audiences"], json!([audience_b]));
    // Nothing but the audience changed (still a jwt role, same subject,
    // policies, claim and TTLs).
    for field in [
        "role_type",
        "bound_subject",
        "token_policies",
        "user_claim",
        "token_ttl",
        "token_max_ttl",
    ] {
        assert_eq!(after[field], before[field], "{field} changed");
    }
    assert_eq!(after["role_type"], "jwt");
    // Afterwards the per-cluster token logs in, and the legacy one is out.
    let fresh = ClusterLogin::new(credentials.clone(), NS, "beta", UID_B);
    fresh
        .client(client_for(&b))
        .await
        .unwrap()
        .raft_configuration()
        .await
        .unwrap();
    let token_b = plane
        .service_account_token(
            OPERATOR_NAMESPACE,
            OPERATOR_ACCOUNT,
            &audience_b,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    login_with(&b, ROLE, &token_b).await.unwrap();
    assert_audience_refused(login_with(&b, ROLE, &legacy).await);
    assert_audience_refused(login_with(&b, ROLE, &token_a).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_self_init_audience_no_longer_locks_the_controller_out() {
    test_support::install_crypto_provider();
    let plane = ControlPlane::start().await.unwrap();
    plane.install_crds().await.unwrap();
    plane.allow_anonymous_issuer_discovery().await.unwrap();
    let kube = plane.client().await.unwrap();
    common::namespace(&kube, NS).await;
    common::apply_cluster(
        &kube,
        NS,
        "prod",
        json!({
            "version": "2.7.2",
            "replicas": 1,
            "profile": "Development",
            "selfInit": {"oidc": {"audience": "bao-prod"}},
        }),
    )
    .await;
    let cluster = Api::<OpenBaoCluster>::namespaced(kube.clone(), NS)
        .get("prod")
        .await
        .unwrap();
    assert_eq!(cluster.spec.self_init.oidc.audience, "bao-prod");
    let uid = cluster.metadata.uid.clone().unwrap();

    // Bootstrap OpenBao with exactly the writes the operator renders (the
    // Development sys/init path sends them over the API; self-init puts
    // the same list in its initialize blocks).
    let bao = one_node().await;
    let inputs = Inputs::in_pod(OPERATOR_NAMESPACE, plane.issuer());
    let ca = KubeCa::Pem(plane.ca_pem.clone());
    for (_, requests) in operator_requests(&cluster, &inputs, &ca).unwrap() {
        for request in requests {
            bao.expect_ok(0, Method::POST, &request.path, request.data)
                .await
                .unwrap();
        }
    }

    // The controller's role works: its per-cluster token, not the Jobs'
    // custom audience, which it could not present before.
    let dir = tempfile::tempdir().unwrap();
    let (credentials, legacy_file) = credentials(&plane, &dir).await;
    let login = ClusterLogin::new(credentials, NS, "prod", &uid);
    let controller = login.client(client_for(&bao)).await.unwrap();
    controller.raft_configuration().await.unwrap();
    controller.autopilot_configuration().await.unwrap();
    let legacy = std::fs::read_to_string(legacy_file).unwrap();
    assert_audience_refused(login_with(&bao, ROLE, &legacy).await);
    assert_eq!(
        read_role(&bao, ROLE_PATH).await["bound_audiences"],
        json!([controller_audience(NS, "prod", &uid)]),
        "the login needed no migration"
    );

    // A Job identity uses the custom audience, and only it.
    let backup = jwt_role(Identity::Backup).unwrap().unwrap();
    let account = "prod-backup".to_owned();
    let job_token = |audience: &'static str| {
        let plane = &plane;
        let account = account.clone();
        async move {
            plane
                .service_account_token(NS, &account, audience, Duration::from_secs(600))
                .await
                .unwrap()
        }
    };
    let backup_client = login_with(&bao, &backup.name, &job_token("bao-prod").await)
        .await
        .unwrap();
    let policies = backup_client.lookup_self().await.unwrap().policies;
    assert!(
        policies.iter().any(|p| p == "openbao-operator-backup"),
        "{policies:?}"
    );
    assert_audience_refused(
        login_with(&bao, &backup.name, &job_token("openbao-internal").await).await,
    );
    assert_eq!(
        read_role(&bao, &format!("auth/{JWT_AUTH_MOUNT}/role/{}", backup.name)).await["bound_audiences"],
        json!(["bao-prod"])
    );
}
