//! Proves the local control plane is a real Kubernetes API: CRDs install and
//! validate, the controller-manager creates Pods, and service-account tokens
//! verify against the API server's own OIDC discovery and JWKS.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use lifecycle_types::OpenBaoCluster;
use serde_json::json;
use test_support::ControlPlane;
use test_support::wait::poll_until;

const NAMESPACE: &str = "default";

fn dynamic_clusters(client: &kube::Client) -> Api<DynamicObject> {
    test_support::crds::openbao_clusters(client, NAMESPACE)
}

fn cluster_object(name: &str, spec: serde_json::Value) -> DynamicObject {
    test_support::crds::openbao_cluster(name, spec)
}

#[tokio::test]
async fn crd_installs_and_a_minimal_cluster_round_trips_with_defaults() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    plane.install_crds().await.unwrap();

    dynamic_clusters(&client)
        .create(
            &PostParams::default(),
            &cluster_object("dev", json!({"version": "2.7.2"})),
        )
        .await
        .unwrap();

    let typed: Api<OpenBaoCluster> = Api::namespaced(client, NAMESPACE);
    let stored = typed.get("dev").await.unwrap();
    // Defaults come from the CRD schema, applied by the API server.
    assert_eq!(stored.spec.version, "2.7.2");
    assert_eq!(stored.spec.replicas, 3);
    assert_eq!(stored.spec.storage.size.0, "10Gi");
    assert_eq!(stored.spec.self_init.oidc.audience, "openbao-internal");
    assert!(lifecycle_types::validation::validate_spec(&stored.spec).is_empty());

    // The audit log says who acted, as whom, by User-Agent.
    let mut config = plane.config().await.unwrap();
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("audit-check/1"),
    ));
    let admin = kube::Client::try_from(config.clone()).unwrap();
    config.auth_info.impersonate = Some("alice".into());
    config.auth_info.impersonate_groups = Some(vec!["system:masters".into()]);
    let alice = kube::Client::try_from(config).unwrap();
    Api::<OpenBaoCluster>::namespaced(admin, NAMESPACE)
        .get("dev")
        .await
        .unwrap();
    Api::<OpenBaoCluster>::namespaced(alice, NAMESPACE)
        .list(&Default::default())
        .await
        .unwrap();
    let expected = std::collections::BTreeMap::from([
        ("admin".to_owned(), 1),
        ("admin as alice".to_owned(), 1),
    ]);
    poll_until(Duration::from_secs(10), "both requests audited", || async {
        Ok(plane.acting_identities("audit-check/")? == expected)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn every_sample_is_accepted_as_written() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    plane.install_crds().await.unwrap();
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/samples");
    let mut applied = 0;
    for entry in std::fs::read_dir(samples).unwrap() {
        let path = entry.unwrap().path();
        let object: DynamicObject =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // OpenBaoTenants are cluster-scoped; the clusters go to NAMESPACE.
        let api = if object
            .types
            .as_ref()
            .is_some_and(|t| t.kind == "OpenBaoTenant")
        {
            let resource = kube::discovery::ApiResource::from_gvk(
                &kube::core::GroupVersionKind::gvk("openbao.org", "v1alpha1", "OpenBaoTenant"),
            );
            Api::<DynamicObject>::all_with(client.clone(), &resource)
        } else {
            dynamic_clusters(&client)
        };
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("{} was rejected: {e}", path.display()));
        applied += 1;
    }
    assert!(
        applied >= 4,
        "expected the sample manifests (three clusters and a tenant), found {applied}"
    );
}

#[tokio::test]
async fn invalid_clusters_are_rejected_naming_the_field() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    plane.install_crds().await.unwrap();
    let clusters = dynamic_clusters(&client);

    let cases = [
        ("bad-version", json!({"version": "latest"}), "spec.version"),
        (
            "bad-replicas",
            json!({"version": "2.7.2", "replicas": 0}),
            "spec.replicas",
        ),
        (
            "hardened-no-selfinit",
            json!({"version": "2.7.2", "profile": "Hardened"}),
            "spec.selfInit.enabled",
        ),
        (
            "external-no-secret",
            json!({"version": "2.7.2", "tls": {"mode": "External"}}),
            "spec.tls.externalSecretName",
        ),
        (
            "transit-no-settings",
            json!({"version": "2.7.2", "unseal": {"type": "transit"}}),
            "spec.unseal.transit",
        ),
    ];
    for (name, spec, field) in cases {
        let err = clusters
            .create(&PostParams::default(), &cluster_object(name, spec))
            .await
            .expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(field),
            "{name}: error does not name {field}: {text}"
        );
        assert!(
            clusters.get_opt(name).await.unwrap().is_none(),
            "{name} was stored"
        );
    }

    // A transition rule: self-init cannot be switched off after creation.
    clusters
        .create(
            &PostParams::default(),
            &cluster_object(
                "selfinit",
                json!({"version": "2.7.2", "selfInit": {"enabled": true}}),
            ),
        )
        .await
        .unwrap();
    let err = clusters
        .patch(
            "selfinit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selfInit": {"enabled": false}}})),
        )
        .await
        .expect_err("selfInit.enabled changed");
    assert!(err.to_string().contains("selfInit"), "{err}");
}

#[tokio::test]
async fn a_statefulset_gets_pods_from_the_controller_manager() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]},
            },
        },
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    poll_until(
        Duration::from_secs(60),
        "two pods of the StatefulSet",
        || {
            let pods = pods.clone();
            async move {
                let list = pods.list(&Default::default()).await?;
                let owned = list
                    .items
                    .iter()
                    .filter(|p| {
                        p.metadata.owner_references.as_ref().is_some_and(|o| {
                            o.iter().any(|r| r.kind == "StatefulSet" && r.name == "web")
                        })
                    })
                    .count();
                Ok(owned == 2)
            }
        },
    )
    .await
    .unwrap();
    let names: Vec<_> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(
        names.contains(&"web-0".to_owned()) && names.contains(&"web-1".to_owned()),
        "{names:?}"
    );
}

#[derive(serde::Deserialize, Debug)]
struct Claims {
    sub: String,
    aud: Vec<String>,
    iss: String,
}

#[tokio::test]
async fn a_projected_token_for_openbao_verifies_against_the_issuer_jwks() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "openbao-operator"}})).unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();

    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": ["openbao-internal"], "expirationSeconds": 600},
    }))
    .unwrap();
    let issued: TokenRequest = accounts
        .create_subresource(
            "token",
            "openbao-operator",
            &PostParams::default(),
            &request,
        )
        .await
        .unwrap();
    let token = issued.status.unwrap().token.unwrap();

    // Discovery and JWKS come from the API server, as OpenBao would fetch them.
    let get = |path: &str| http::Request::get(path).body(Vec::new()).unwrap();
    let discovery: serde_json::Value = serde_json::from_str(
        &client
            .request_text(get("/.well-known/openid-configuration"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(discovery["issuer"], plane.issuer());
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    let jwks_path = jwks_uri
        .strip_prefix(plane.issuer())
        .expect("JWKS served by the issuer");
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&client.request_text(get(jwks_path)).await.unwrap()).unwrap();

    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("signing key in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["openbao-internal"]);
    validation.set_issuer(&[plane.issuer()]);
    let claims = jsonwebtoken::decode::<Claims>(&token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims.sub, "system:serviceaccount:default:openbao-operator");
    assert_eq!(claims.aud, ["openbao-internal"]);
    assert_eq!(claims.iss, plane.issuer());

    // The same token does not verify for another audience.
    let mut other = jsonwebtoken::Validation::new(header.alg);
    other.set_audience(&["someone-else"]);
    assert!(jsonwebtoken::decode::<Claims>(&token, &key, &other).is_err());
}

#[tokio::test]
async fn dropping_the_control_plane_stops_every_process() {
    let plane = ControlPlane::start().await.unwrap();
    let pids = plane.pids();
    assert_eq!(pids.len(), 3);
    let dir = plane.dir().to_path_buf();
    drop(plane);
    for pid in pids {
        assert!(!test_support::process::pid_alive(pid), "pid {pid} survived");
    }
    assert!(!dir.exists(), "{} was left behind", dir.display());
}
