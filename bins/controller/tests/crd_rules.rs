//! The CRD's CEL rules and `lifecycle_types::validation` are two copies of
//! the same rules. This test sends the same specs to a real kube-apiserver
//! and to the code, and expects both to accept the valid ones and to name
//! the same field for each invalid one.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use kube::api::{DynamicObject, PostParams};
use lifecycle_types::OpenBaoClusterSpec;
use lifecycle_types::validation::validate_spec;
use serde_json::{Value, json};
use test_support::ControlPlane;

const NAMESPACE: &str = "default";

fn object(name: &str, spec: &Value) -> DynamicObject {
    test_support::crds::openbao_cluster(name, spec.clone())
}

fn transit() -> Value {
    json!({"address": "https://t:8200", "keyName": "k", "tokenSecretRef": "t"})
}

fn aws() -> Value {
    json!({"region": "eu-west-1", "kmsKeyId": "alias/openbao"})
}

fn plugin() -> Value {
    json!({"image": "ghcr.io/openbao/openbao-plugin-kms-aws", "version": "v0.1.0",
           "binaryName": "openbao-plugin-kms-aws", "sha256sum": "0".repeat(64)})
}

#[tokio::test]
async fn cel_rules_and_code_agree_on_every_rule() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    plane.install_crds().await.unwrap();
    let clusters = test_support::crds::openbao_clusters(&client, NAMESPACE);

    let valid = [
        ("minimal", json!({"version": "2.7.2"})),
        (
            "kms-2-6-builtin",
            json!({"version": "2.6.2", "unseal": {"type": "awskms", "awskms": aws(),
                   "workloadIdentity": {"serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}}}}),
        ),
        (
            "kms-2-7-plugin",
            json!({"version": "2.7.2", "unseal": {"type": "awskms", "awskms": aws(),
                   "credentialsSecretRef": "aws", "kmsPlugin": plugin()}}),
        ),
        (
            "eval-source-reference",
            json!({"version": "2.7.2", "selfInit": {"enabled": true, "requests": [
                {"name": "login", "path": "auth/userpass/login/admin",
                 "data": {"password": {"eval_type": "string", "eval_source": "request",
                          "initialize_name": "humans", "request_name": "admin",
                          "field_selector": ["map", "password"]}}}]}}),
        ),
        (
            "no-cleanup-low-quorum",
            json!({"version": "2.7.2", "configuration": {"raft": {"autopilot": {
                "cleanupDeadServers": false, "minQuorum": 1}}}}),
        ),
        (
            "image-registry-port-digest",
            json!({"version": "2.7.2", "image": format!(
                "registry.example:5000/team/openbao:2.7.2@sha256:{}", "a".repeat(64))}),
        ),
        (
            "storage-size-mi",
            json!({"version": "2.7.2", "storage": {"size": "500Mi"}}),
        ),
        (
            "backup-with-drill",
            json!({"version": "2.7.2", "backup": {"schedule": "0 */6 * * *", "timeZone": "Europe/Berlin",
                   "destination": {"url": "s3://backups/p", "endpoint": "http://10.0.0.5:9000"},
                   "credentials": {"secretRef": "s3"},
                   "retention": {"keepLast": 7, "maxAge": "30d"},
                   "objectLock": {"mode": "Compliance", "days": 30},
                   "drill": {"everyNthBackup": 4}}}),
        ),
        (
            "rotation-period-bounds",
            json!({"version": "2.7.2", "tls": {"rotationPeriod": "8760h"}}),
        ),
        (
            "hardened-https-transit",
            json!({"version": "2.7.2", "profile": "Hardened", "selfInit": {"enabled": true},
                   "unseal": {"type": "transit", "transit": transit()}}),
        ),
        (
            "development-http-transit",
            json!({"version": "2.7.2", "unseal": {"type": "transit", "transit":
                   {"address": "http://t:8200", "keyName": "k", "tokenSecretRef": "t"}}}),
        ),
        (
            "env-names-share-a-prefix-only",
            json!({"version": "2.7.2", "selfInit": {"enabled": true, "requests": [
                {"name": "a-b", "path": "auth/userpass/users/x",
                 "dataFrom": [{"field": "c", "secretKeyRef": {"name": "s", "key": "k"}}]},
                {"name": "a", "path": "auth/userpass/users/y",
                 "dataFrom": [{"field": "password", "secretKeyRef": {"name": "s", "key": "k"}},
                              {"field": "b_c", "source": "File",
                               "secretKeyRef": {"name": "s", "key": "k"}}]}]}}),
        ),
        (
            "audit-file-in-folder",
            json!({"version": "2.7.2", "configuration": {"audit": [{"type": "file", "path": "file",
                   "file": {"filePath": "/openbao/audit/audit.log"}}]}}),
        ),
    ];
    for (name, spec) in &valid {
        let typed: OpenBaoClusterSpec = serde_json::from_value(spec.clone()).unwrap();
        assert_eq!(
            validate_spec(&typed),
            [],
            "{name}: the code rejects a valid spec"
        );
        clusters
            .create(&PostParams::default(), &object(name, spec))
            .await
            .unwrap_or_else(|e| panic!("{name}: the API server rejects a valid spec: {e}"));
    }

    let invalid = [
        (
            "acme-missing",
            json!({"version": "2.7.2", "tls": {"mode": "ACME"}}),
            "spec.tls.acme",
        ),
        (
            "acme-unused",
            json!({"version": "2.7.2", "tls": {"acme": {"directoryURL": "https://a/dir",
                   "domains": ["a.example"], "email": "ops@example.com"}}}),
            "spec.tls.acme",
        ),
        (
            "transit-unused",
            json!({"version": "2.7.2", "unseal": {"transit": transit()}}),
            "spec.unseal.transit",
        ),
        (
            "awskms-missing",
            json!({"version": "2.7.2", "unseal": {"type": "awskms", "credentialsSecretRef": "a",
                   "kmsPlugin": plugin()}}),
            "spec.unseal.awskms",
        ),
        (
            "kms-no-plugin",
            json!({"version": "2.7.2", "unseal": {"type": "awskms", "awskms": aws(),
                   "credentialsSecretRef": "aws"}}),
            "spec.unseal.kmsPlugin",
        ),
        (
            "kms-no-credentials",
            json!({"version": "2.6.2", "unseal": {"type": "awskms", "awskms": aws()}}),
            "spec.unseal",
        ),
        (
            "requests-without-self-init",
            json!({"version": "2.7.2", "selfInit": {"requests": [
                {"name": "a", "path": "sys/auth/userpass", "data": {"type": "userpass"}}]}}),
            "spec.selfInit.requests",
        ),
        (
            "inline-password",
            json!({"version": "2.7.2", "selfInit": {"enabled": true, "requests": [
                {"name": "admin", "path": "auth/userpass/users/admin",
                 "data": {"password": "hunter2", "token_policies": ["admin"]}}]}}),
            "spec.selfInit.requests[0].data",
        ),
        (
            "dead-server-threshold",
            json!({"version": "2.7.2", "configuration": {"raft": {"autopilot": {
                "deadServerLastContactThreshold": "30s"}}}}),
            "spec.configuration.raft.autopilot.deadServerLastContactThreshold",
        ),
        (
            "min-quorum",
            json!({"version": "2.7.2", "configuration": {"raft": {"autopilot": {"minQuorum": 2}}}}),
            "spec.configuration.raft.autopilot.minQuorum",
        ),
        (
            "socket-audit-without-address",
            json!({"version": "2.7.2", "configuration": {"audit": [{"type": "socket", "path": "siem"}]}}),
            "spec.configuration.audit[0].socket",
        ),
        (
            "raw-audit-in-hardened",
            json!({"version": "2.7.2", "profile": "Hardened", "selfInit": {"enabled": true},
                   "configuration": {"audit": [{"type": "file", "path": "file", "logRaw": true}]}}),
            "spec.configuration.audit",
        ),
        (
            "ingress-without-host",
            json!({"version": "2.7.2", "ingress": {"enabled": true}}),
            "spec.ingress.host",
        ),
        (
            "audit-file-path-dot-dot",
            json!({"version": "2.7.2", "configuration": {"audit": [{"type": "file", "path": "file",
                   "file": {"filePath": "/openbao/audit/.."}}]}}),
            "spec.configuration.audit[0].file.filePath",
        ),
        (
            "audit-prefix",
            json!({"version": "2.7.2", "configuration": {"audit": [{"type": "file", "path": "file",
                   "prefix": "bao:"}]}}),
            "spec.configuration.audit[0].prefix",
        ),
        (
            "secret-key-dot-dot",
            json!({"version": "2.7.2", "selfInit": {"enabled": true, "requests": [
                {"name": "admin", "path": "auth/userpass/users/admin", "dataFrom": [
                    {"field": "password", "source": "File",
                     "secretKeyRef": {"name": "s", "key": ".."}}]}]}}),
            "spec.selfInit.requests[0].dataFrom[0].secretKeyRef.key",
        ),
        (
            "kms-binary-with-folder",
            json!({"version": "2.7.2", "unseal": {"type": "awskms", "awskms": aws(),
                   "credentialsSecretRef": "aws", "kmsPlugin": {
                       "image": "ghcr.io/openbao/openbao-plugin-kms-aws", "version": "v0.1.0",
                       "binaryName": "../../bin/sh", "sha256sum": "0".repeat(64)}}}),
            "spec.unseal.kmsPlugin.binaryName",
        ),
        (
            "env-var-collision-across-requests",
            json!({"version": "2.7.2", "selfInit": {"enabled": true, "requests": [
                {"name": "a-b", "path": "auth/userpass/users/x",
                 "dataFrom": [{"field": "c", "secretKeyRef": {"name": "s", "key": "k"}}]},
                {"name": "a", "path": "auth/userpass/users/y",
                 "dataFrom": [{"field": "b_c", "secretKeyRef": {"name": "s", "key": "k"}}]}]}}),
            "spec.selfInit.requests",
        ),
        (
            "env-var-collision-in-a-request",
            json!({"version": "2.7.2", "selfInit": {"enabled": true, "requests": [
                {"name": "admin", "path": "auth/userpass/users/admin", "dataFrom": [
                    {"field": "password", "secretKeyRef": {"name": "s", "key": "a"}},
                    {"field": "PASSWORD", "secretKeyRef": {"name": "s", "key": "b"}}]}]}}),
            "spec.selfInit.requests[0].dataFrom",
        ),
        (
            "image-with-newline",
            json!({"version": "2.7.2", "image": "openbao/openbao:2.7.2\nevil"}),
            "spec.image",
        ),
        (
            "storage-size-not-a-quantity",
            json!({"version": "2.7.2", "storage": {"size": "lots"}}),
            "spec.storage.size",
        ),
        (
            "storage-size-negative",
            json!({"version": "2.7.2", "storage": {"size": "-1Gi"}}),
            "spec.storage.size",
        ),
        (
            "request-path-dot-dot",
            json!({"version": "2.7.2", "selfInit": {"enabled": true, "requests": [
                {"name": "raw", "path": "../../sys/raw/core"}]}}),
            "spec.selfInit.requests[0].path",
        ),
        (
            "hardened-http-transit",
            json!({"version": "2.7.2", "profile": "Hardened", "selfInit": {"enabled": true},
                   "unseal": {"type": "transit", "transit":
                       {"address": "http://t:8200", "keyName": "k", "tokenSecretRef": "t"}}}),
            "spec.unseal.transit.address",
        ),
        (
            "rotation-period-too-short",
            json!({"version": "2.7.2", "tls": {"rotationPeriod": "30m"}}),
            "spec.tls.rotationPeriod",
        ),
        (
            "rotation-period-too-long",
            json!({"version": "2.7.2", "tls": {"rotationPeriod": "8761h"}}),
            "spec.tls.rotationPeriod",
        ),
        (
            "object-lock-on-gcs",
            json!({"version": "2.7.2", "backup": {"schedule": "0 * * * *",
                   "destination": {"url": "gs://backups/p"},
                   "objectLock": {"mode": "Governance", "days": 7}}}),
            "spec.backup.objectLock",
        ),
        (
            "two-kinds-of-credentials",
            json!({"version": "2.7.2", "backup": {"schedule": "0 * * * *",
                   "destination": {"url": "s3://backups/p"},
                   "credentials": {"secretRef": "s3", "workloadIdentity": {}}}}),
            "spec.backup.credentials",
        ),
        (
            "endpoint-for-azure",
            json!({"version": "2.7.2", "backup": {"schedule": "0 * * * *",
                   "destination": {"url": "az://backups/p", "endpoint": "http://10.0.0.5:1"}}}),
            "spec.backup.destination.endpoint",
        ),
        (
            "storage-ca-over-http",
            json!({"version": "2.7.2", "backup": {"schedule": "0 * * * *",
                   "destination": {"url": "s3://backups/p", "endpoint": "http://10.0.0.5:1",
                                   "caSecretRef": "s3-ca"}}}),
            "spec.backup.destination.caSecretRef",
        ),
        (
            "restore-from-nowhere",
            json!({"version": "2.7.2", "restoreFrom": {"cluster": "old"}}),
            "spec.restoreFrom.destination",
        ),
        (
            "drill-both-ways",
            json!({"version": "2.7.2", "backup": {"schedule": "0 * * * *",
                   "destination": {"url": "s3://backups/p"},
                   "drill": {"schedule": "0 3 * * *", "everyNthBackup": 2}}}),
            "spec.backup.drill",
        ),
    ];
    for (name, spec, field) in &invalid {
        let typed: OpenBaoClusterSpec = serde_json::from_value(spec.clone()).unwrap();
        let errors = validate_spec(&typed);
        assert!(
            errors.iter().any(|e| e.field.starts_with(field)),
            "{name}: the code does not name {field}: {errors:?}"
        );
        let err = clusters
            .create(&PostParams::default(), &object(name, spec))
            .await
            .expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(field),
            "{name}: the API server does not name {field}: {text}"
        );
    }

    // The image rule is a regular expression in CEL and a parser in code:
    // both must draw the line in the same place.
    let images = [
        ("openbao", true),
        ("quay.io/openbao/openbao:2.7.2-ubi", true),
        ("localhost:5000/openbao:latest", true),
        ("Registry.Example/team/open_bao__x/bao-1", true),
        ("OpenBao/OpenBao", false),
        ("openbao/openbao:", false),
        ("https://registry/openbao", false),
        ("openbao/open___bao", false),
        ("openbao@sha256:abc", false),
        ("openbao/openbao:2.7.2 ", false),
    ];
    for (i, (image, valid)) in images.iter().enumerate() {
        let spec = json!({"version": "2.7.2", "image": image});
        let typed: OpenBaoClusterSpec = serde_json::from_value(spec.clone()).unwrap();
        assert_eq!(
            validate_spec(&typed).is_empty(),
            *valid,
            "{image:?}: the code disagrees"
        );
        let created = clusters
            .create(
                &PostParams::default(),
                &object(&format!("image-{i}"), &spec),
            )
            .await;
        assert_eq!(
            created.is_ok(),
            *valid,
            "{image:?}: the API server disagrees: {created:?}"
        );
    }

    // Kubernetes gives CEL no view of schemaless fields, so this rule on a
    // request's free-form `data` is checked only in code: the API server
    // stores the object, the controller refuses it with the field named.
    let name = "data-and-data-from";
    let spec = json!({"version": "2.7.2", "selfInit": {"enabled": true, "requests": [
        {"name": "admin", "path": "auth/userpass/users/admin",
         "data": {"password": {"eval_source": "env"}},
         "dataFrom": [{"field": "password", "secretKeyRef": {"name": "s", "key": "k"}}]}]}});
    let typed: OpenBaoClusterSpec = serde_json::from_value(spec.clone()).unwrap();
    assert_eq!(
        validate_spec(&typed)[0].field,
        "spec.selfInit.requests[0].dataFrom[0].field"
    );
    clusters
        .create(&PostParams::default(), &object(name, &spec))
        .await
        .unwrap();

    // The version policy is a transition rule: the API server compares the
    // stored spec with the new one, the code the same pair; both refuse
    // with the same message.
    let moves = [
        ("2.6.2", json!({"version": "2.7.2"}), None),
        (
            "2.7.2",
            json!({"version": "2.6.2"}),
            Some(lifecycle_types::cluster::VERSION_LOWER_MESSAGE),
        ),
        (
            "2.5.0",
            json!({"version": "2.7.2"}),
            Some(lifecycle_types::cluster::VERSION_SKIP_MESSAGE),
        ),
        (
            "2.5.0",
            json!({"version": "2.7.2", "upgrade": {"allowSkippingVersions": true}}),
            None,
        ),
        (
            "2.7.2",
            json!({"version": "3.0.0"}),
            Some(lifecycle_types::cluster::VERSION_SKIP_MESSAGE),
        ),
    ];
    for (i, (from, to, refusal)) in moves.iter().enumerate() {
        let name = format!("version-{i}");
        let old = json!({"version": from});
        clusters
            .create(&PostParams::default(), &object(&name, &old))
            .await
            .unwrap();
        let typed =
            |spec: &Value| -> OpenBaoClusterSpec { serde_json::from_value(spec.clone()).unwrap() };
        let code: Vec<String> =
            lifecycle_types::validation::validate_update(&typed(&old), &typed(to))
                .into_iter()
                .map(|e| e.message)
                .collect();
        let api = clusters
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": to})),
            )
            .await;
        match refusal {
            None => {
                assert!(
                    code.is_empty(),
                    "{from} -> {to}: the code refuses it: {code:?}"
                );
                api.unwrap_or_else(|e| panic!("{from} -> {to}: the API server refuses it: {e}"));
            }
            Some(message) => {
                assert_eq!(code, [*message], "{from} -> {to}");
                let text = api.expect_err(&name).to_string();
                assert!(
                    text.contains("spec.version") && text.contains(message),
                    "{from} -> {to}: the API server says: {text}"
                );
            }
        }
    }

    // OpenBaoRestore: its CEL rules and validate_restore_spec.
    let gvk =
        kube::api::GroupVersionKind::gvk(lifecycle_types::API_GROUP, "v1alpha1", "OpenBaoRestore");
    let restores: kube::Api<DynamicObject> = kube::Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &kube::api::ApiResource::from_gvk(&gvk),
    );
    let manifest = "s3://copies/2026/20261202T080000Z-1a2b3c.json";
    let cases = [
        (
            "by-name",
            json!({"backup": "20261202T080000Z-1a2b3c"}),
            None,
        ),
        ("newest", json!({"latest": true}), None),
        ("by-manifest", json!({"manifest": manifest}), None),
        ("none", json!({}), Some("spec.source")),
        (
            "two",
            json!({"latest": true, "manifest": manifest}),
            Some("spec.source"),
        ),
        (
            "not-a-manifest",
            json!({"manifest": "s3://copies/20261202T080000Z-1a2b3c.snap"}),
            Some("spec.source.manifest"),
        ),
        (
            "manifest-and-folder",
            json!({"manifest": manifest, "fromCluster": "old"}),
            Some("spec.source"),
        ),
    ];
    for (name, source, field) in cases {
        let spec = json!({"cluster": "dev", "source": source});
        let typed: lifecycle_types::restore::OpenBaoRestoreSpec =
            serde_json::from_value(spec.clone()).unwrap();
        let errors = lifecycle_types::validation::validate_restore_spec(&typed);
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "openbao.org/v1alpha1", "kind": "OpenBaoRestore",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        let created = restores.create(&PostParams::default(), &object).await;
        match field {
            None => {
                assert!(errors.is_empty(), "{name}: the code refuses it: {errors:?}");
                created.unwrap_or_else(|e| panic!("{name}: the API server refuses it: {e}"));
            }
            Some(field) => {
                assert!(
                    errors.iter().any(|e| e.field == field),
                    "{name}: the code does not name {field}: {errors:?}"
                );
                let text = created.expect_err(name).to_string();
                assert!(
                    text.contains(field),
                    "{name}: the API server does not name {field}: {text}"
                );
            }
        }
    }
}

/// The collision rule computes the bootstrap pod's environment variable
/// names the way the self-init renderer does; the two must not drift.
#[test]
fn the_collision_rule_and_the_renderer_name_variables_alike() {
    for (request, field) in [
        ("a-b", "c"),
        ("a", "b_c"),
        ("admin", "Password"),
        ("x-1-y", "f_2"),
    ] {
        assert_eq!(
            lifecycle_types::cluster::self_init_env_var(request, field),
            controller::render::self_init::secret_env_var(request, field),
        );
    }
}
