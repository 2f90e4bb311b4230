//! The multi-tenant install on a real API server: the controller, acting
//! as its ServiceAccount under `manifests/overlays/multi-tenant`, reads no
//! Secret until an OpenBaoTenant onboards a namespace; a cluster elsewhere
//! reports `NamespaceNotOnboarded` and gets nothing; a tenant being deleted
//! waits for its clusters, then its RoleBinding, quota and limits go.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    NoNames, OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, Running, apply_cluster, condition, namespace,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, ResourceQuota, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use lifecycle_types::conditions::{reasons, types};
use lifecycle_types::tenant::tenant_conditions;
use lifecycle_types::{OpenBaoCluster, OpenBaoTenant, labels, names};
use serde_json::json;
use test_support::ControlPlane;
use test_support::wait::poll_until;

const ONBOARDED: &str = "team-a";
const OUTSIDER: &str = "team-b";

/// Whether the controller's ServiceAccount may `verb` `resource` (core
/// group) in `namespace` (`""`: across namespaces).
async fn controller_may(admin: &kube::Client, verb: &str, resource: &str, namespace: &str) -> bool {
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{OPERATOR_NAMESPACE}"), "system:authenticated"],
            "resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace},
        }
    }))
    .unwrap();
    Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap()
        .allowed
}

/// The Secret rows of the matrix: (verb, namespace, expected), checked until
/// the authorizer has seen the latest RoleBinding (its own watch), within a bound.
async fn secrets_matrix(admin: &kube::Client, rows: &[(&str, &str, bool)]) {
    let mut wrong = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        wrong.clear();
        for (verb, namespace, expected) in rows {
            let got = controller_may(admin, verb, "secrets", namespace).await;
            if got != *expected {
                wrong.push(format!(
                    "{verb} secrets in {namespace:?}: allowed={got}, want {expected}"
                ));
            }
        }
        if wrong.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    println!(
        "SubjectAccessReview of the controller's Secret access: {} rows as expected",
        rows.len()
    );
}

async fn cluster(client: &kube::Client, ns: &str, name: &str) -> OpenBaoCluster {
    Api::<OpenBaoCluster>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

/// What the operator made in `ns`: objects with its managed-by label.
async fn operator_objects(client: &kube::Client, ns: &str) -> Vec<String> {
    let managed = ListParams::default().labels(&format!(
        "{}={}",
        labels::APP_MANAGED_BY,
        labels::MANAGED_BY_OPERATOR
    ));
    let mut found = Vec::new();
    for s in Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&managed)
        .await
        .unwrap()
    {
        found.push(format!("StatefulSet/{}", s.name_any()));
    }
    for s in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&managed)
        .await
        .unwrap()
    {
        found.push(format!("ConfigMap/{}", s.name_any()));
    }
    // Every Secret, not only labelled ones: the seal key must not exist.
    for s in Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        found.push(format!("Secret/{}", s.name_any()));
    }
    found
}

fn dev_spec() -> serde_json::Value {
    json!({"version": "2.7.2", "replicas": 1, "profile": "Development"})
}

#[tokio::test]
async fn tenants_confine_the_controller_to_onboarded_namespaces() {
    let plane = ControlPlane::start().await.unwrap();
    plane.install_crds().await.unwrap();
    let admin = plane.client().await.unwrap();
    for ns in [ONBOARDED, OUTSIDER] {
        namespace(&admin, ns).await;
    }
    plane.install_admission_policies().await.unwrap();
    let _running = Running::start_with(&plane, Arc::new(NoNames), |settings| {
        settings.scope = controller::stores::Scope::Tenants;
    })
    .await;

    // Before any tenant: no Secret anywhere, and clusters wait with a
    // condition that says what to do, with nothing made.
    secrets_matrix(
        &admin,
        &[
            ("get", ONBOARDED, false),
            ("list", ONBOARDED, false),
            ("create", ONBOARDED, false),
            ("get", OUTSIDER, false),
            ("list", "", false),
            ("get", "kube-system", false),
        ],
    )
    .await;
    apply_cluster(&admin, ONBOARDED, "vault", dev_spec()).await;
    apply_cluster(&admin, OUTSIDER, "vault", dev_spec()).await;
    for ns in [ONBOARDED, OUTSIDER] {
        poll_until(Duration::from_secs(60), "NamespaceNotOnboarded", || async {
            Ok(
                condition(&cluster(&admin, ns, "vault").await, types::DEGRADED)
                    == Some(("True".into(), reasons::NAMESPACE_NOT_ONBOARDED.into())),
            )
        })
        .await
        .unwrap();
    }
    let waiting = cluster(&admin, OUTSIDER, "vault").await;
    let message = &lifecycle_types::conditions::find(
        &waiting.status.as_ref().unwrap().conditions,
        types::DEGRADED,
    )
    .unwrap()
    .message;
    assert!(message.contains("OpenBaoTenant named team-b"), "{message}");
    assert_eq!(
        operator_objects(&admin, OUTSIDER).await,
        Vec::<String>::new()
    );

    // The API refuses a tenant not named after its namespace, and
    // Kubernetes' own namespaces.
    let tenants: Api<OpenBaoTenant> = Api::all(admin.clone());
    let tenant = |name: &str, spec: serde_json::Value| -> OpenBaoTenant {
        serde_json::from_value(json!({
            "apiVersion": "openbao.org/v1alpha1", "kind": "OpenBaoTenant",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    };
    for (name, spec, field) in [
        ("other", json!({"namespace": OUTSIDER}), "metadata.name"),
        (
            "kube-system",
            json!({"namespace": "kube-system"}),
            "spec.namespace",
        ),
        (
            "team-c",
            json!({"namespace": "team-c", "resourceQuota": {"hard": {}}}),
            "spec.resourceQuota.hard",
        ),
    ] {
        let error = tenants
            .create(&PostParams::default(), &tenant(name, spec))
            .await
            .unwrap_err();
        assert!(error.to_string().contains(field), "{name}: {error}");
    }

    // Onboard team-a with the sample (a quota and limits).
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/samples/openbaotenant.yaml");
    let sample: OpenBaoTenant =
        serde_yaml_ng::from_str(&std::fs::read_to_string(sample).unwrap()).unwrap();
    assert_eq!(sample.spec.namespace, ONBOARDED);
    tenants
        .create(&PostParams::default(), &sample)
        .await
        .unwrap();
    poll_until(Duration::from_secs(60), "the tenant Ready", || async {
        let status = tenants.get(ONBOARDED).await?.status.unwrap_or_default();
        Ok(
            lifecycle_types::conditions::find(&status.conditions, tenant_conditions::READY)
                .is_some_and(|c| c.reason == tenant_conditions::ONBOARDED),
        )
    })
    .await
    .unwrap();
    let status = tenants.get(ONBOARDED).await.unwrap().status.unwrap();
    assert_eq!(
        status.objects,
        [
            "RoleBinding/openbao-operator",
            "ResourceQuota/openbao-tenant",
            "LimitRange/openbao-tenant"
        ]
    );
    let quota = Api::<ResourceQuota>::namespaced(admin.clone(), ONBOARDED)
        .get("openbao-tenant")
        .await
        .unwrap();
    assert_eq!(quota.spec.unwrap().hard.unwrap()["pods"].0, "20");
    secrets_matrix(
        &admin,
        &[
            ("get", ONBOARDED, true),
            ("list", ONBOARDED, true),
            ("watch", ONBOARDED, true),
            ("create", ONBOARDED, true),
            ("get", OUTSIDER, false),
            ("list", "", false),
            ("get", "kube-system", false),
            ("get", OPERATOR_NAMESPACE, false),
        ],
    )
    .await;

    the_operator_cannot_onboard_a_namespace_by_itself(&plane).await;

    // The onboarded namespace's cluster gets its objects, and then a status
    // that no longer says NamespaceNotOnboarded (written after the
    // objects); the other still nothing.
    poll_until(
        Duration::from_secs(60),
        "the onboarded cluster's objects and status",
        || async {
            let made = operator_objects(&admin, ONBOARDED).await;
            let onboarded = cluster(&admin, ONBOARDED, "vault").await;
            Ok(
                made.contains(&format!("StatefulSet/{}", names::statefulset("vault")))
                    && made.contains(&format!("Secret/{}", names::unseal_secret("vault")))
                    && condition(&onboarded, types::DEGRADED).map(|c| c.1)
                        != Some(reasons::NAMESPACE_NOT_ONBOARDED.into()),
            )
        },
    )
    .await
    .unwrap();
    poll_until(
        Duration::from_secs(30),
        "the tenant counts its cluster",
        || async {
            Ok(tenants
                .get(ONBOARDED)
                .await?
                .status
                .unwrap_or_default()
                .clusters
                == ["vault"])
        },
    )
    .await
    .unwrap();
    assert_eq!(
        operator_objects(&admin, OUTSIDER).await,
        Vec::<String>::new()
    );
    assert_eq!(
        condition(&cluster(&admin, OUTSIDER, "vault").await, types::DEGRADED).map(|c| c.1),
        Some(reasons::NAMESPACE_NOT_ONBOARDED.into())
    );

    // Dropping the limits from the spec removes the LimitRange.
    tenants
        .patch(
            ONBOARDED,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"limitRange": null}})),
        )
        .await
        .unwrap();
    let limits: Api<LimitRange> = Api::namespaced(admin.clone(), ONBOARDED);
    poll_until(
        Duration::from_secs(30),
        "the LimitRange removed",
        || async { Ok(limits.get_opt("openbao-tenant").await?.is_none()) },
    )
    .await
    .unwrap();

    // Deleting the tenant waits for its cluster and keeps the access.
    tenants
        .delete(ONBOARDED, &DeleteParams::default())
        .await
        .unwrap();
    poll_until(Duration::from_secs(30), "ClustersRemain", || async {
        let status = tenants.get(ONBOARDED).await?.status.unwrap_or_default();
        Ok(
            lifecycle_types::conditions::find(&status.conditions, tenant_conditions::READY)
                .is_some_and(|c| {
                    c.reason == tenant_conditions::CLUSTERS_REMAIN && c.message.contains("vault")
                }),
        )
    })
    .await
    .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), ONBOARDED);
    assert!(
        bindings
            .get_opt("openbao-operator")
            .await
            .unwrap()
            .is_some()
    );
    secrets_matrix(&admin, &[("get", ONBOARDED, true)]).await;

    // Once the namespace is empty the tenant goes, and with it the RoleBinding and the quota.
    Api::<OpenBaoCluster>::namespaced(admin.clone(), ONBOARDED)
        .delete("vault", &DeleteParams::default())
        .await
        .unwrap();
    poll_until(
        Duration::from_secs(60),
        "the tenant and its objects gone",
        || async {
            Ok(tenants.get_opt(ONBOARDED).await?.is_none()
                && bindings.get_opt("openbao-operator").await?.is_none()
                && Api::<ResourceQuota>::namespaced(admin.clone(), ONBOARDED)
                    .get_opt("openbao-tenant")
                    .await?
                    .is_none())
        },
    )
    .await
    .unwrap();
    secrets_matrix(
        &admin,
        &[("get", ONBOARDED, false), ("list", ONBOARDED, false)],
    )
    .await;
}

/// manifests/admission/tenant-bindings.yaml: the operator (impersonated)
/// holds `bind` on the tenant role and may write RoleBindings anywhere, yet
/// cannot grant itself Secrets where no tenant owns the binding.
async fn the_operator_cannot_onboard_a_namespace_by_itself(plane: &ControlPlane) {
    let operator = plane
        .client_as(
            &format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"),
            &["system:serviceaccounts", "system:authenticated"],
        )
        .await
        .unwrap();
    let binding = |namespace: &str, name: &str| -> RoleBinding {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": controller::render::tenant::TENANT_CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": OPERATOR_NAMESPACE}],
        }))
        .unwrap()
    };
    let cases = [
        (
            "kube-system",
            "openbao-operator",
            "may not bind openbao-operator-tenant in namespace kube-system",
        ),
        (
            OPERATOR_NAMESPACE,
            "openbao-operator",
            "may not bind openbao-operator-tenant in namespace",
        ),
        (
            OUTSIDER,
            "openbao-operator",
            "owned by the namespace's OpenBaoTenant",
        ),
        (OUTSIDER, "sneaky", "owned by the namespace's OpenBaoTenant"),
    ];
    for (namespace, name, refusal) in cases {
        let api: Api<RoleBinding> = Api::namespaced(operator.clone(), namespace);
        // The policy is in force within a moment of its install; a binding
        // that got through before is removed and tried again.
        poll_until(
            Duration::from_secs(30),
            "the tenant-binding guard",
            || async {
                match api
                    .create(&PostParams::default(), &binding(namespace, name))
                    .await
                {
                    Ok(_) => {
                        Api::<RoleBinding>::namespaced(plane.client().await?, namespace)
                            .delete(name, &DeleteParams::default())
                            .await?;
                        Ok(false)
                    }
                    Err(error) => {
                        assert!(
                            error.to_string().contains(refusal),
                            "{namespace}/{name}: {error}"
                        );
                        Ok(true)
                    }
                }
            },
        )
        .await
        .unwrap();
    }
    println!(
        "the operator's own tenant bindings: {} forged ones refused",
        cases.len()
    );
}
