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
//!   controller, and its Job identities log in with the custom audience;
//! - signing-key rotation: after the API server restarts with a new
//!   service-account signing key (the old public key kept), tokens signed
//!   with the new key log in at the same running OpenBao, unchanged (it
//!   fetches the issuer's keys live, by OIDC discovery or a `jwks_url`, as
//!   the operator renders either), tokens signed before still log in, and
//!   the controller keeps managing the cluster.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use controller::openbao::{ClusterLogin, Credentials};
use controller::render::Inputs;
use controller::render::self_init::{KubeCa, operator_requests};
use kube::Api;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::identities::{
    Identity, JWT_AUTH_MOUNT, SubjectVars, controller_audience, jwt_role,
};
use openbao_client::{Client, ClientConfig, Credential, Error, Login, RetryPolicy};
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
    let file = common::legacy_token_file(plane, dir.path()).await;
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

/// Creates the OpenBaoCluster `NS/name` with `spec` and returns it as the
/// API server stores it (defaults applied, metadata.uid set).
async fn stored_cluster(plane: &ControlPlane, name: &str, spec: Value) -> OpenBaoCluster {
    plane.install_crds().await.unwrap();
    plane.allow_anonymous_issuer_discovery().await.unwrap();
    let kube = plane.client().await.unwrap();
    common::namespace(&kube, NS).await;
    common::apply_cluster(&kube, NS, name, spec).await;
    Api::<OpenBaoCluster>::namespaced(kube, NS)
        .get(name)
        .await
        .unwrap()
}

/// Bootstraps `bao` with exactly the writes the operator renders for
/// `cluster` (the Development sys/init path sends them over the API;
/// self-init puts the same list in its initialize blocks).
async fn bootstrap_as_rendered(
    bao: &BaoCluster,
    plane: &ControlPlane,
    cluster: &OpenBaoCluster,
    inputs: &Inputs,
) {
    let ca = KubeCa::Pem(plane.ca_pem.clone());
    for (_, requests) in operator_requests(cluster, inputs, &ca).unwrap() {
        for request in requests {
            bao.expect_ok(0, Method::POST, &request.path, request.data)
                .await
                .unwrap();
        }
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

    // Data without the controller's identity (a restore of an older
    // backup): the refusal names what is missing and the commands to fix it.
    b.expect_ok(
        0,
        Method::DELETE,
        "sys/policies/acl/openbao-operator",
        Value::Null,
    )
    .await
    .unwrap();
    let policyless = ClusterLogin::new(credentials.clone(), NS, "beta", UID_B);
    let at_b = policyless.client(client_for(&b)).await.unwrap();
    let denied = at_b.raft_configuration().await.err().unwrap();
    let said = policyless
        .identity_missing(Some(&at_b), &denied)
        .await
        .unwrap();
    assert!(
        said.contains("policy openbao-operator is missing")
            && said.contains("bao policy write openbao-operator policies/controller.hcl"),
        "{said}"
    );
    b.expect_ok(0, Method::DELETE, ROLE_PATH, Value::Null)
        .await
        .unwrap();
    let roleless = ClusterLogin::new(credentials.clone(), NS, "beta", UID_B);
    let refused = roleless.client(client_for(&b)).await.err().unwrap();
    let said = roleless.identity_missing(None, &refused).await.unwrap();
    assert!(
        said.contains(&format!("bao write {ROLE_PATH} ")) && said.contains(&audience_b),
        "{said}"
    );
    // The command it gives restores the login.
    let body = test_support::identities::bao_write_body(&said, ROLE_PATH).unwrap();
    b.expect_ok(0, Method::POST, ROLE_PATH, Value::Object(body))
        .await
        .unwrap();
    ClusterLogin::new(credentials.clone(), NS, "beta", UID_B)
        .client(client_for(&b))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_self_init_audience_no_longer_locks_the_controller_out() {
    test_support::install_crypto_provider();
    let plane = ControlPlane::start().await.unwrap();
    let cluster = stored_cluster(
        &plane,
        "prod",
        json!({
            "version": "2.7.2",
            "replicas": 1,
            "profile": "Development",
            "selfInit": {"oidc": {"audience": "bao-prod"}},
        }),
    )
    .await;
    assert_eq!(cluster.spec.self_init.oidc.audience, "bao-prod");
    let uid = cluster.metadata.uid.clone().unwrap();

    let bao = one_node().await;
    let inputs = Inputs::in_pod(OPERATOR_NAMESPACE, plane.issuer());
    bootstrap_as_rendered(&bao, &plane, &cluster, &inputs).await;

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

/// The `kid` of a JWT's header (the header only is decoded; the token is
/// never shown).
fn key_id(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap_or_default();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("a JWT header")).unwrap();
    header["kid"]
        .as_str()
        .expect("a kid in the header")
        .to_owned()
}

/// The key ids in the issuer's JWKS, as OpenBao fetches it.
async fn jwks_key_ids(plane: &ControlPlane) -> Vec<String> {
    let request = http::Request::get("/openid/v1/jwks")
        .body(Vec::new())
        .unwrap();
    let text = plane
        .client()
        .await
        .unwrap()
        .request_text(request)
        .await
        .unwrap();
    let jwks: Value = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A direct login with `jwt`, tried exactly once (no client retry).
async fn login_once(bao: &BaoCluster, jwt: &str) -> Result<(), Error> {
    let mut config = ClientConfig::new(&bao.addr(0))
        .unwrap()
        .with_retry(RetryPolicy::none());
    if let Some(ca) = bao.ca_pem() {
        config = config.with_ca_pem(ca);
    }
    Client::new(config)
        .unwrap()
        .login(&Login::jwt(ROLE, Credential::value(jwt)))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_service_account_signing_key_keeps_the_controller_logged_in() {
    test_support::install_crypto_provider();
    let mut plane = ControlPlane::start().await.unwrap();
    let cluster = stored_cluster(
        &plane,
        "rotated",
        json!({"version": "2.7.2", "replicas": 1, "profile": "Development"}),
    )
    .await;
    let uid = cluster.metadata.uid.clone().unwrap();
    let audience = controller_audience(NS, "rotated", &uid);

    // The two JWT configurations the operator renders: OIDC discovery of
    // the issuer (the default) and a JWKS URL (--oidc-jwks-url, for pods
    // that cannot reach the issuer URL), both with the API server's CA.
    let (discovery, jwks) = tokio::join!(one_node(), one_node());
    let mut inputs = Inputs::in_pod(OPERATOR_NAMESPACE, plane.issuer());
    bootstrap_as_rendered(&discovery, &plane, &cluster, &inputs).await;
    inputs.jwks_url = Some(format!("{}/openid/v1/jwks", plane.issuer()));
    bootstrap_as_rendered(&jwks, &plane, &cluster, &inputs).await;
    let servers = [("oidc_discovery_url", &discovery), ("jwks_url", &jwks)];
    let config_path = format!("auth/{JWT_AUTH_MOUNT}/config");
    let mut configs = Vec::new();
    for (key, bao) in servers {
        let config = read_role(bao, &config_path).await;
        assert!(config[key].is_string(), "{key} not rendered: {config}");
        configs.push(config);
    }

    // Before: the controller logs in at both, and so does a token of its
    // ServiceAccount for this cluster.
    let dir = tempfile::tempdir().unwrap();
    let (credentials, _) = credentials(&plane, &dir).await;
    let kept: Vec<ClusterLogin> = servers
        .iter()
        .map(|_| ClusterLogin::new(credentials.clone(), NS, "rotated", &uid))
        .collect();
    for ((_, bao), login) in servers.iter().zip(&kept) {
        let controller = login.client(client_for(bao)).await.unwrap();
        controller.raft_configuration().await.unwrap();
    }
    let old_token = plane
        .service_account_token(
            OPERATOR_NAMESPACE,
            OPERATOR_ACCOUNT,
            &audience,
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let old_kid = key_id(&old_token);
    assert_eq!(jwks_key_ids(&plane).await, std::slice::from_ref(&old_kid));
    for (_, bao) in servers {
        login_once(bao, &old_token).await.unwrap();
    }
    let old_pid = plane.pids()[1];

    // Rotate: the API server restarts with a new signing key and both
    // public keys.
    let rotating = Instant::now();
    plane.rotate_service_account_signing_key().await.unwrap();
    eprintln!(
        "kube-apiserver restarted with a new signing key and ready in {:?}",
        rotating.elapsed()
    );
    assert_ne!(plane.pids()[1], old_pid, "a new kube-apiserver process");
    assert!(!test_support::process::pid_alive(old_pid));

    // New tokens carry the new key; the JWKS serves both.
    let new_token = plane
        .service_account_token(
            OPERATOR_NAMESPACE,
            OPERATOR_ACCOUNT,
            &audience,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let new_kid = key_id(&new_token);
    assert_ne!(new_kid, old_kid, "new tokens are signed with the new key");
    let mut both = vec![old_kid.clone(), new_kid.clone()];
    both.sort();
    assert_eq!(jwks_key_ids(&plane).await, both);

    for (((key, bao), login), config) in servers.iter().zip(&kept).zip(&configs) {
        // A token of the new key logs in at the running OpenBao at the
        // first try: its JWT auth fetches the unknown key id live.
        let first = Instant::now();
        let result = login_once(bao, &new_token).await;
        eprintln!(
            "{key}: first login with a new-key token (kid unknown to OpenBao so far): {} in {:?}",
            if result.is_ok() {
                "accepted"
            } else {
                "refused"
            },
            first.elapsed()
        );
        if let Err(error) = &result {
            assert!(!error.to_string().contains("eyJ"), "a JWT in: {error}");
        }
        result.unwrap_or_else(|e| panic!("{key}: the new key was not picked up live: {e}"));

        // The controller: a fresh login (a token minted now, so signed
        // with the new key, through the same Credentials and API client as
        // before the restart), then work that needs it.
        let fresh = ClusterLogin::new(credentials.clone(), NS, "rotated", &uid);
        let controller = fresh.client(client_for(bao)).await.unwrap();
        controller.raft_configuration().await.unwrap();
        controller.autopilot_configuration().await.unwrap();
        let info = controller.lookup_self().await.unwrap();
        assert!(
            info.policies.iter().any(|p| p == "openbao-operator"),
            "{info:?}"
        );

        // Tokens signed before the rotation still log in: the old key is
        // still served. The kept login logs in again with the token it
        // minted before the rotation.
        login_once(bao, &old_token).await.unwrap();
        login.forget();
        login
            .client(client_for(bao))
            .await
            .unwrap()
            .raft_configuration()
            .await
            .unwrap();

        // Nothing was reconfigured.
        assert_eq!(&read_role(bao, &config_path).await, config, "{key}");
    }

    // The restarted API server stops with the control plane.
    let pids = plane.pids();
    assert_eq!(pids.len(), 3);
    drop(plane);
    for pid in pids {
        assert!(!test_support::process::pid_alive(pid), "pid {pid} survived");
    }
}
