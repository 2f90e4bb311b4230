//! The admission policy `openbao-operator-cluster-invariants`
//! (manifests/admission) on a real kube-apiserver, beside the code that
//! holds the same rules: every bad spec and update below is refused by both,
//! each naming the same field; the good ones pass both.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use lifecycle_types::OpenBaoClusterSpec;
use lifecycle_types::validation::{validate_references, validate_spec, validate_update};
use serde::Deserialize;
use serde_json::{Value, json};
use test_support::ControlPlane;
use test_support::wait::poll_until;

const NAMESPACE: &str = "default";

fn typed(spec: &Value) -> OpenBaoClusterSpec {
    serde_json::from_value(spec.clone()).unwrap()
}

/// `base` with `change` merged in as a JSON merge patch (RFC 7386) does.
fn merged(base: &Value, change: &Value) -> Value {
    let (Value::Object(base), Value::Object(change)) = (base, change) else {
        return change.clone();
    };
    let mut out = base.clone();
    for (key, value) in change {
        if value.is_null() {
            out.remove(key);
        } else {
            let merged = merged(out.get(key).unwrap_or(&Value::Null), value);
            out.insert(key.clone(), merged);
        }
    }
    Value::Object(out)
}

/// The fields the code refuses for a new cluster `name` with `spec`.
fn code_on_create(name: &str, spec: &Value) -> Vec<String> {
    let spec = typed(spec);
    validate_spec(&spec)
        .into_iter()
        .chain(validate_references(name, &spec))
        .map(|e| e.field)
        .collect()
}

/// Applies every document of manifests/admission as the admin.
async fn install_admission_policies(client: &kube::Client) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/admission/cluster-invariants.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let object = DynamicObject::deserialize(document).unwrap();
        let types = object.types.clone().unwrap();
        let (group, version) = types.api_version.split_once('/').unwrap();
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &types.kind);
        let resource = kube::api::ApiResource::from_gvk(&gvk);
        let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &resource);
        api.patch(
            &object.metadata.name.clone().unwrap(),
            &PatchParams::apply("test").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn bad_specs_and_updates_are_refused_by_the_policy_and_the_code() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    plane.install_crds().await.unwrap();
    install_admission_policies(&client).await;
    let clusters = test_support::crds::openbao_clusters(&client, NAMESPACE);
    let create = |name: String, spec: Value| {
        let clusters = clusters.clone();
        async move {
            clusters
                .create(
                    &PostParams::default(),
                    &test_support::crds::openbao_cluster(&name, spec),
                )
                .await
        }
    };

    // The policy is in force once it refuses a loopback endpoint (the API
    // server picks a new policy up within a second or so).
    let loopback = json!({"version": "2.7.2", "backup": {"schedule": "0 0 * * *",
        "destination": {"url": "s3://backups/p", "endpoint": "http://127.0.0.1:9000"}}});
    poll_until(Duration::from_secs(30), "the policy in force", || async {
        let _ = clusters.delete("probe", &Default::default()).await;
        Ok(create("probe".into(), loopback.clone())
            .await
            .is_err_and(|e| e.to_string().contains("points at the node")))
    })
    .await
    .unwrap();

    // Creates: one spec each, refused by the policy (or the CRD) and by the
    // code, naming `field`.
    let backup_at = |endpoint: &str| {
        json!({"version": "2.7.2", "backup": {"schedule": "0 0 * * *",
               "destination": {"url": "s3://backups/p", "endpoint": endpoint},
               "credentials": {"secretRef": "s3"}}})
    };
    let transit_at = |address: &str| {
        json!({"version": "2.7.2", "unseal": {"type": "transit",
               "transit": {"address": address, "keyName": "k", "tokenSecretRef": "t"}}})
    };
    let mut bad_creates: Vec<(String, Value, &str)> = Vec::new();
    for (i, endpoint) in [
        "http://127.0.0.1:9000",
        "http://localhost:9000",
        "http://minio.localhost",
        "http://127.1:9000",
        "http://2130706433:9000",
        "http://0x7f000001:9000",
        "http://0177.0.0.1:9000",
        "http://0.0.0.0:9000",
        "http://169.254.169.254/latest",
        "http://metadata.google.internal",
        "http://metadata",
        "http://[::1]:9000",
        "http://[::]:9000",
        "http://[fe80::1]:9000",
        "http://[::ffff:127.0.0.1]:9000",
        "http://[::ffff:7f00:1]:9000",
        "http://[fd00:ec2::254]",
    ]
    .into_iter()
    .enumerate()
    {
        bad_creates.push((
            format!("endpoint-{i}"),
            backup_at(endpoint),
            "spec.backup.destination.endpoint",
        ));
    }
    for (i, address) in [
        "https://127.0.0.1:8200",
        "https://[::1]:8200",
        "https://169.254.169.254",
        "https://2130706433:8200",
    ]
    .into_iter()
    .enumerate()
    {
        bad_creates.push((
            format!("transit-{i}"),
            transit_at(address),
            "spec.unseal.transit.address",
        ));
    }
    bad_creates.push((
        "restore-from".into(),
        json!({"version": "2.7.2", "restoreFrom": {"cluster": "old",
               "destination": {"url": "s3://backups/p", "endpoint": "http://[fe80::2]"}}}),
        "spec.restoreFrom.destination.endpoint",
    ));
    let mut hardened_plain = backup_at("http://minio.storage.svc:9000");
    hardened_plain["profile"] = json!("Hardened");
    hardened_plain["replicas"] = json!(3);
    hardened_plain["selfInit"] = json!({"enabled": true});
    bad_creates.push((
        "hardened-plain".into(),
        hardened_plain,
        "spec.backup.destination.endpoint",
    ));
    // References to the Secrets the operator manages for the cluster.
    bad_creates.push((
        "own-seal".into(),
        json!({"version": "2.7.2", "unseal": {"type": "transit", "transit": {
            "address": "https://transit:8200", "keyName": "k", "tokenSecretRef": "own-seal-unseal-key"}}}),
        "spec.unseal.transit.tokenSecretRef",
    ));
    bad_creates.push((
        "own-ca".into(),
        json!({"version": "2.7.2", "unseal": {"type": "transit", "transit": {
            "address": "https://transit:8200", "keyName": "k", "tokenSecretRef": "t",
            "caSecretRef": "own-ca-tls-ca"}}}),
        "spec.unseal.transit.caSecretRef",
    ));
    bad_creates.push((
        "own-root".into(),
        json!({"version": "2.7.2", "backup": {"schedule": "0 0 * * *",
               "destination": {"url": "s3://backups/p"}, "credentials": {"secretRef": "own-root-root-token"}}}),
        "spec.backup.credentials.secretRef",
    ));
    bad_creates.push((
        "own-server".into(),
        json!({"version": "2.7.2", "selfInit": {"enabled": true, "requests": [
            {"name": "r", "path": "sys/auth/userpass", "dataFrom": [
                {"field": "password", "secretKeyRef": {"name": "own-server-tls-server", "key": "tls.key"}}]}]}}),
        "spec.selfInit.requests[",
    ));

    let mut refused = 0;
    for (name, spec, field) in &bad_creates {
        let code = code_on_create(name, spec);
        assert!(
            code.iter().any(|f| f.starts_with(field)),
            "{name}: the code does not refuse {field}: {code:?}"
        );
        let error = create(name.clone(), spec.clone())
            .await
            .expect_err(&format!("{name}: the API server accepted {spec}"))
            .to_string();
        let field_prefix = field.split('[').next().unwrap();
        assert!(
            error.contains(field_prefix),
            "{name}: the refusal does not name {field}: {error}"
        );
        println!("{name}: {error}");
        refused += 1;
    }

    // Updates of a live cluster: each refused by both, naming the field.
    let base = json!({"version": "2.6.2", "storage": {"size": "10Gi", "storageClassName": "fast"}});
    let bad_updates = [
        (json!({"storage": {"size": "5Gi"}}), "spec.storage.size"),
        (json!({"storage": {"size": "9999Mi"}}), "spec.storage.size"),
        (json!({"storage": {"size": "10G"}}), "spec.storage.size"),
        (
            json!({"storage": {"storageClassName": "slow"}}),
            "spec.storage.storageClassName",
        ),
        (
            json!({"storage": {"storageClassName": null}}),
            "spec.storage.storageClassName",
        ),
        (json!({"version": "2.6.1"}), "spec.version"),
        (
            json!({"unseal": {"type": "transit", "transit": {"address": "https://[::1]", "keyName": "k", "tokenSecretRef": "t"}}}),
            "spec.unseal.transit.address",
        ),
    ];
    let good_updates = [
        json!({"storage": {"size": "10240Mi"}}),
        json!({"storage": {"size": "20Gi"}}),
        json!({"version": "2.7.2"}),
    ];
    create("live".into(), base.clone()).await.unwrap();
    for (change, field) in &bad_updates {
        let new = merged(&base, change);
        let code = validate_update(&typed(&base), &typed(&new));
        let Some(refusal) = code.iter().find(|e| e.field == *field) else {
            panic!("{change}: the code does not refuse {field}: {code:?}");
        };
        let error = clusters
            .patch(
                "live",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": change})),
            )
            .await
            .expect_err(&format!("the API server accepted {change}"))
            .to_string();
        assert!(
            error.contains(field),
            "{change}: not naming {field}: {error}"
        );
        // The storage and version rules say it in the same words.
        if !field.starts_with("spec.unseal") {
            assert!(
                error.contains(&refusal.message),
                "{change}: the API server's words differ from the code's ({}): {error}",
                refusal.message
            );
        }
        println!("update {change}: {error}");
        refused += 1;
    }
    for change in &good_updates {
        let stored: OpenBaoClusterSpec =
            serde_json::from_value(clusters.get("live").await.unwrap().data["spec"].clone())
                .unwrap();
        let new = merged(&serde_json::to_value(&stored).unwrap(), change);
        assert_eq!(validate_update(&stored, &typed(&new)), vec![], "{change}");
        clusters
            .patch(
                "live",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": change})),
            )
            .await
            .unwrap_or_else(|e| panic!("{change} refused: {e}"));
    }

    // Good creates pass both.
    for (name, spec) in [
        (
            "plain-s3",
            backup_at("https://s3.eu-central-1.amazonaws.com"),
        ),
        ("pod-network", backup_at("http://10.244.3.1:9000")),
        ("in-cluster", backup_at("http://minio.storage.svc:9000")),
        ("v6", transit_at("https://[2001:db8::5]:8200")),
    ] {
        assert_eq!(code_on_create(name, &spec), Vec::<String>::new(), "{name}");
        create(name.into(), spec)
            .await
            .unwrap_or_else(|e| panic!("{name} refused: {e}"));
    }
    println!("{refused} bad specs and updates refused by the policy and the code");
    assert!(refused >= 30, "only {refused} cases");
}
