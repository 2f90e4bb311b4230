//! The admission policies of manifests/admission on a real kube-apiserver:
//! `openbao-operator-cluster-invariants` beside the code that holds the
//! same rules (every bad spec and update below is refused by both, each
//! naming the same field; the good ones pass both), and the lock on the
//! objects the operator manages. The guard on the operator's StatefulSet
//! writes is tested with the rendered objects
//! (rendered_objects_are_accepted.rs).

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use lifecycle_types::OpenBaoClusterSpec;
use lifecycle_types::validation::{
    validate_hardened, validate_references, validate_spec, validate_update,
};
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
        .chain(validate_hardened(&spec))
        .map(|e| e.field)
        .collect()
}

#[tokio::test]
async fn bad_specs_and_updates_are_refused_by_the_policy_and_the_code() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    plane.install_crds().await.unwrap();
    // The controller's startup check: a gap naming each policy and binding
    // before the install, none after.
    let before = controller::admission::check(&client).await.unwrap();
    for name in lifecycle_types::names::ADMISSION_POLICIES {
        assert!(
            before.contains(&format!("policy {name} is not installed")),
            "{before}"
        );
        assert!(
            before.contains(&format!("binding {name} is not installed")),
            "{before}"
        );
    }
    plane.install_admission_policies().await.unwrap();
    assert_eq!(controller::admission::check(&client).await, None);
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

    // The Hardened profile's posture: one rule broken at a time.
    let hardened = |change: Value| {
        merged(
            &json!({"version": "2.7.2", "profile": "Hardened", "replicas": 3,
                    "selfInit": {"enabled": true},
                    "tls": {"mode": "External", "externalSecretName": "prod-tls"},
                    "unseal": {"type": "transit", "transit": {
                        "address": "https://transit:8200", "keyName": "k", "tokenSecretRef": "t"}}}),
            &change,
        )
    };
    for (name, change, field) in [
        (
            "hardened-own-ca",
            json!({"tls": {"mode": "OperatorManaged", "externalSecretName": null}}),
            "spec.tls.mode",
        ),
        (
            "hardened-default-tls",
            json!({"tls": null}),
            "spec.tls.mode",
        ),
        (
            "hardened-static-seal",
            json!({"unseal": {"type": "static", "transit": null}}),
            "spec.unseal.type",
        ),
        (
            "hardened-default-seal",
            json!({"unseal": null}),
            "spec.unseal.type",
        ),
        (
            "hardened-one-voter",
            json!({"replicas": 1}),
            "spec.replicas",
        ),
        (
            "hardened-plain-backup",
            json!({"backup": {"schedule": "0 * * * *", "destination": {
                "url": "s3://backups/p", "endpoint": "http://s3.storage.svc:9000"}}}),
            "spec.backup.destination.endpoint",
        ),
        (
            "hardened-plain-restore",
            json!({"restoreFrom": {"cluster": "old", "destination": {
                "url": "s3://backups/p", "endpoint": "http://s3.storage.svc:9000"}}}),
            "spec.restoreFrom.destination.endpoint",
        ),
    ] {
        bad_creates.push((name.into(), hardened(change), field));
    }
    let hardened_ok = hardened(json!({"backup": {"schedule": "0 * * * *", "destination": {
        "url": "s3://backups/p", "endpoint": "https://s3.storage.svc:9000", "caSecretRef": "s3-ca"}}}));
    assert!(code_on_create("hardened-ok", &hardened_ok).is_empty());
    create("hardened-ok".into(), hardened_ok)
        .await
        .expect("a Hardened spec that keeps every rule is accepted");

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

const OPERATOR: &str = "system:serviceaccount:openbao-operator-system:openbao-operator";
const MAINTAINERS: &str = "openbao-operator:maintainers";
const MAINTENANCE: &str = "openbao.org/maintenance";

/// The objects the operator manages for the cluster `vault`: the seal-key
/// Secret, the ConfigMap and the StatefulSet, labelled as managed.
fn managed_objects() -> Vec<Value> {
    let metadata = |name: &str| {
        json!({"name": name, "namespace": NAMESPACE,
               "labels": {"app.kubernetes.io/managed-by": "openbao-operator", "openbao.org/cluster": "vault"}})
    };
    vec![
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata("vault-unseal-key"),
               "stringData": {"key": "not-a-real-key"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("vault-config"),
               "data": {"config.hcl": "ui = false"}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata("vault"),
               "spec": {"replicas": 0, "serviceName": "vault",
                        "selector": {"matchLabels": {"openbao.org/cluster": "vault"}},
                        "template": {"metadata": {"labels": {"openbao.org/cluster": "vault"}},
                                     "spec": {"containers": [{"name": "openbao", "image": "openbao/openbao:2.7.2",
                                                              "command": ["bao"], "args": ["server", "-config=/openbao/config/config.hcl"]}]}}}}),
    ]
}

/// The Api of a JSON object's kind, in [`NAMESPACE`].
fn api_of(client: &kube::Client, object: &Value) -> (kube::Api<DynamicObject>, String) {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (
            String::new(),
            object["apiVersion"].as_str().unwrap().to_owned(),
        ),
    };
    let gvk = kube::api::GroupVersionKind::gvk(&group, &version, object["kind"].as_str().unwrap());
    let api = kube::Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &kube::api::ApiResource::from_gvk(&gvk),
    );
    (api, object["metadata"]["name"].as_str().unwrap().to_owned())
}

/// A merge patch that adds an annotation `touched-by` (and, with `why`,
/// the maintenance annotation).
fn touch(who: &str, why: Option<&str>) -> Patch<Value> {
    let mut annotations = json!({"touched-by": who});
    if let Some(why) = why {
        annotations[MAINTENANCE] = json!(why);
    }
    Patch::Merge(json!({"metadata": {"annotations": annotations}}))
}

#[tokio::test]
async fn managed_objects_are_changed_only_by_the_operator_and_maintainers() {
    let plane = ControlPlane::start().await.unwrap();
    let admin = plane.client().await.unwrap();
    plane.install_admission_policies().await.unwrap();
    let operator = plane
        .client_as(OPERATOR, &["system:serviceaccounts"])
        .await
        .unwrap();
    let mallory = plane.client_as("mallory", &[]).await.unwrap();
    let maria = plane.client_as("maria", &[MAINTAINERS]).await.unwrap();
    let objects = managed_objects();

    // The operator creates them (once the policy is in force, a stranger's
    // create of a managed object is refused).
    poll_until(Duration::from_secs(30), "the lock in force", || async {
        let (api, _) = api_of(&mallory, &objects[1]);
        let mut probe = objects[1].clone();
        probe["metadata"]["name"] = json!("probe");
        let object: DynamicObject = serde_json::from_value(probe).unwrap();
        Ok(api
            .create(&PostParams::default(), &object)
            .await
            .is_err_and(|e| e.to_string().contains("is managed by the openbao-operator")))
    })
    .await
    .unwrap();
    for object in &objects {
        let (api, _) = api_of(&operator, object);
        api.create(
            &PostParams::default(),
            &serde_json::from_value(object.clone()).unwrap(),
        )
        .await
        .unwrap();
    }

    let mut refusals = 0;
    for object in &objects {
        let (as_mallory, name) = api_of(&mallory, object);
        let (as_maria, _) = api_of(&maria, object);
        let (as_operator, _) = api_of(&operator, object);
        let (as_admin, _) = api_of(&admin, object);
        let params = PatchParams::default();
        // Denied: another user's edit, even a cluster admin's, even with
        // the annotation when not a maintainer; a maintainer's without it.
        for (who, api, why) in [
            ("mallory", &as_mallory, None),
            ("mallory", &as_mallory, Some("I say so")),
            ("admin", &as_admin, None),
            ("maria", &as_maria, None),
        ] {
            let error = api
                .patch(&name, &params, &touch(who, why))
                .await
                .expect_err(&format!("{who} changed {name} (annotation {why:?})"))
                .to_string();
            assert!(
                error.contains("is managed by the openbao-operator") && error.contains(MAINTAINERS),
                "{error}"
            );
            refusals += 1;
        }
        let error = as_mallory
            .delete(&name, &Default::default())
            .await
            .expect_err(&format!("mallory deleted {name}"))
            .to_string();
        assert!(
            error.contains("is managed by the openbao-operator"),
            "{error}"
        );
        // Allowed: the operator's own change; a maintainer's with the
        // annotation.
        as_operator
            .patch(&name, &params, &touch("operator", None))
            .await
            .unwrap();
        as_maria
            .patch(
                &name,
                &params,
                &touch("maria", Some("rotating by hand, ticket 42")),
            )
            .await
            .unwrap();
        let touched = as_admin.get(&name).await.unwrap();
        assert_eq!(touched.metadata.annotations.unwrap()["touched-by"], "maria");
    }
    println!("{refusals} edits and {} deletes refused", objects.len());

    // A binding that only warns is not enforcement: the startup check says so.
    let bindings: kube::Api<
        k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    > = kube::Api::all(admin.clone());
    let set_actions = |actions: Value| {
        let bindings = bindings.clone();
        async move {
            bindings
                .patch(
                    "openbao-operator-managed-objects",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"validationActions": actions}})),
                )
                .await
                .unwrap();
        }
    };
    set_actions(json!(["Warn"])).await;
    let gap = controller::admission::check(&admin).await.unwrap();
    assert!(
        gap.contains("binding openbao-operator-managed-objects does not deny"),
        "{gap}"
    );
    set_actions(json!(["Deny"])).await;

    // Garbage collection deletes them when their owner goes, through the
    // lock.
    let owner = api_of(
        &operator,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}),
    );
    let created = owner
        .0
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "owner", "namespace": NAMESPACE}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();
    for object in &objects {
        let (api, name) = api_of(&operator, object);
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}})),
        )
        .await
        .unwrap();
    }
    owner.0.delete("owner", &Default::default()).await.unwrap();
    poll_until(Duration::from_secs(60), "garbage collection", || async {
        let mut left = 0;
        for object in &objects {
            let (api, name) = api_of(&admin, object);
            left += usize::from(api.get_opt(&name).await?.is_some());
        }
        Ok(left == 0)
    })
    .await
    .unwrap();
}
