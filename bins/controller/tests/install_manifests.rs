//! The install manifests (`manifests/`): the base and each overlay render
//! with `kubectl kustomize` (no wildcard in any RBAC rule, the image and the
//! ServiceAccount match the project's conventions), install with
//! `kubectl apply --server-side -k` on a real kube-apiserver, and their RBAC
//! grants the controller exactly what it needs. That last part is proved two
//! ways: a table of SubjectAccessReviews (allowed and denied), and by acting
//! as the controller's ServiceAccount (impersonation) to server-side apply a
//! cluster's rendered objects, including the Role whose creation Kubernetes
//! RBAC escalation prevention checks.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use controller::render::{self, Inputs};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::identities::{Identity, SubjectVars, jwt_role};
use serde::Deserialize;
use serde_json::{Value, json};
use test_support::ControlPlane;
use test_support::wait::poll_until;

const NAMESPACE: &str = "openbao-operator-system";
const SERVICE_ACCOUNT: &str = "openbao-operator";
const USER: &str = "system:serviceaccount:openbao-operator-system:openbao-operator";
const GROUPS: [&str; 3] = [
    "system:serviceaccounts",
    "system:serviceaccounts:openbao-operator-system",
    "system:authenticated",
];
const LEASE: &str = "openbao-operator-controller";
const DEPLOYMENT: &str = "openbao-operator-controller";
/// Where the tests put an OpenBaoCluster (any tenant namespace).
const TENANT: &str = "team-a";

/// Every kustomization a user can install, relative to `manifests/`.
const KUSTOMIZATIONS: [&str; 3] = ["base", "overlays/development", "overlays/production"];

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

/// Runs the cached `kubectl` (built by ci/install-test-env.sh); stdout on success.
fn kubectl(args: &[&str]) -> String {
    let kubectl = test_support::tools::kubernetes("kubectl").unwrap();
    let output = Command::new(&kubectl).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The documents `kubectl kustomize` renders for one kustomization.
fn kustomize(dir: &str) -> Vec<Value> {
    let path = manifests().join(dir);
    let yaml = kubectl(&["kustomize", path.to_str().unwrap()]);
    serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn rendered_manifests_have_no_wildcards_and_follow_the_conventions() {
    let controller_role = jwt_role(Identity::Controller).unwrap().unwrap();
    let subject = controller_role.subject(&SubjectVars {
        operator_namespace: NAMESPACE,
        namespace: "",
        cluster: "",
    });
    assert_eq!(
        subject, USER,
        "the ServiceAccount must be the subject of the controller's JWT role (policies/jwt-roles.hcl)"
    );
    let image = format!(
        "ghcr.io/openbao-operator/controller:{}",
        env!("CARGO_PKG_VERSION")
    );

    for dir in KUSTOMIZATIONS {
        let docs = kustomize(dir);

        let roles: Vec<&Value> = of_kind(&docs, "ClusterRole")
            .into_iter()
            .chain(of_kind(&docs, "Role"))
            .collect();
        assert_eq!(roles.len(), 2, "{dir}: one ClusterRole and one Role");
        for role in roles {
            let name = &role["metadata"]["name"];
            let rules = role["rules"].as_array().unwrap();
            assert!(!rules.is_empty(), "{dir}: {name} has no rules");
            for rule in rules {
                let text = rule.to_string();
                assert!(!text.contains('*'), "{dir}: {name} has a wildcard: {text}");
                assert!(
                    rule.get("nonResourceURLs").is_none(),
                    "{dir}: {name}: {text}"
                );
                for verb in strings(&rule["verbs"]) {
                    assert!(
                        !["escalate", "bind", "impersonate", "deletecollection"].contains(&verb),
                        "{dir}: {name} grants {verb}: {text}"
                    );
                }
            }
        }

        let accounts = of_kind(&docs, "ServiceAccount");
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0]["metadata"]["name"], SERVICE_ACCOUNT);
        assert_eq!(accounts[0]["metadata"]["namespace"], NAMESPACE);
        assert_eq!(accounts[0]["automountServiceAccountToken"], false);

        let deployments = of_kind(&docs, "Deployment");
        assert_eq!(deployments.len(), 1);
        let pod = &deployments[0]["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], SERVICE_ACCOUNT);
        assert_eq!(pod["automountServiceAccountToken"], false);
        let container = &pod["containers"][0];
        assert_eq!(
            container["image"],
            image.as_str(),
            "{dir}: images/README.md"
        );
        let security = &container["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );

        // The OpenBao login token: its own audience, at most an hour.
        let openbao_token = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| {
                v["projected"]["sources"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|s| s["serviceAccountToken"].clone())
            .find(|t| t["audience"] == "openbao-internal")
            .unwrap_or_else(|| panic!("{dir}: no openbao-internal token"));
        assert!(
            controller_role
                .bound_audiences
                .iter()
                .any(|a| a == "openbao-internal")
        );
        assert!(openbao_token["expirationSeconds"].as_i64().unwrap() <= 3600);
        let mounts: Vec<&str> = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        assert!(mounts.contains(&"/var/run/secrets/kubernetes.io/serviceaccount"));
        assert!(mounts.contains(&"/var/run/secrets/openbao-internal"));
    }
}

#[test]
fn the_crd_kustomization_lists_every_generated_crd() {
    #[derive(Deserialize)]
    struct Kustomization {
        resources: Vec<String>,
    }
    let text = std::fs::read_to_string(manifests().join("crds/kustomization.yaml")).unwrap();
    let mut listed = serde_yaml_ng::from_str::<Kustomization>(&text)
        .unwrap()
        .resources;
    listed.sort();
    let mut generated: Vec<String> = lifecycle_types::crds()
        .iter()
        .map(lifecycle_types::crd_file_name)
        .collect();
    generated.sort();
    assert_eq!(
        listed, generated,
        "manifests/crds/kustomization.yaml must list exactly the CRDs `cargo xtask gen` writes"
    );
}

/// One access check: verb, `group/resource[/subresource]` (core: `/pods`),
/// namespace (`""`: all namespaces, or a cluster-scoped resource), name.
type Access = (&'static str, &'static str, &'static str, &'static str);

/// Everything the controller does, in a tenant namespace unless noted.
fn allowed() -> Vec<Access> {
    let mut all: Vec<Access> = Vec::new();
    for verb in ["get", "list", "watch", "patch"] {
        all.push((verb, "openbao.org/openbaoclusters", TENANT, ""));
    }
    for verb in ["list", "watch"] {
        all.push((verb, "openbao.org/openbaoclusters", "", ""));
    }
    all.push(("patch", "openbao.org/openbaoclusters/status", TENANT, "dev"));
    for resource in [
        "apps/statefulsets",
        "/services",
        "/configmaps",
        "/secrets",
        "/serviceaccounts",
        "rbac.authorization.k8s.io/roles",
        "rbac.authorization.k8s.io/rolebindings",
        "policy/poddisruptionbudgets",
        "networking.k8s.io/networkpolicies",
        "networking.k8s.io/ingresses",
    ] {
        for verb in ["get", "list", "watch", "create", "patch", "delete"] {
            all.push((verb, resource, TENANT, ""));
        }
        // Watches span all namespaces.
        for verb in ["list", "watch"] {
            all.push((verb, resource, "", ""));
        }
    }
    for verb in ["get", "list", "watch", "delete", "update", "patch"] {
        all.push((verb, "/pods", TENANT, "dev-0"));
    }
    for verb in ["get", "list", "watch", "delete"] {
        all.push((verb, "/persistentvolumeclaims", TENANT, "data-dev-2"));
    }
    for resource in ["events.k8s.io/events", "/events"] {
        for verb in ["create", "patch"] {
            all.push((verb, resource, TENANT, ""));
        }
    }
    all.push(("create", "coordination.k8s.io/leases", NAMESPACE, ""));
    for verb in ["get", "update", "patch"] {
        all.push((verb, "coordination.k8s.io/leases", NAMESPACE, LEASE));
    }
    all
}

/// What the controller must never be able to do.
fn denied() -> Vec<Access> {
    vec![
        // It mints no tokens.
        ("create", "/serviceaccounts/token", TENANT, "dev"),
        // Leader election: its own Lease in its own namespace only.
        ("update", "coordination.k8s.io/leases", "kube-system", LEASE),
        ("get", "coordination.k8s.io/leases", TENANT, LEASE),
        ("create", "coordination.k8s.io/leases", "kube-system", ""),
        (
            "update",
            "coordination.k8s.io/leases",
            NAMESPACE,
            "kube-controller-manager",
        ),
        ("delete", "coordination.k8s.io/leases", NAMESPACE, LEASE),
        ("list", "coordination.k8s.io/leases", NAMESPACE, ""),
        // Cluster-scoped objects.
        ("delete", "/namespaces", "", TENANT),
        ("create", "/namespaces", "", ""),
        ("get", "/namespaces", "", TENANT),
        ("get", "/nodes", "", ""),
        ("list", "/nodes", "", ""),
        ("create", "rbac.authorization.k8s.io/clusterroles", "", ""),
        (
            "create",
            "rbac.authorization.k8s.io/clusterrolebindings",
            "",
            "",
        ),
        (
            "get",
            "apiextensions.k8s.io/customresourcedefinitions",
            "",
            "",
        ),
        (
            "list",
            "apiextensions.k8s.io/customresourcedefinitions",
            "",
            "",
        ),
        (
            "create",
            "apiextensions.k8s.io/customresourcedefinitions",
            "",
            "",
        ),
        (
            "patch",
            "apiextensions.k8s.io/customresourcedefinitions",
            "",
            "openbaoclusters.openbao.org",
        ),
        (
            "delete",
            "apiextensions.k8s.io/customresourcedefinitions",
            "",
            "openbaoclusters.openbao.org",
        ),
        (
            "create",
            "admissionregistration.k8s.io/validatingwebhookconfigurations",
            "",
            "",
        ),
        // No way around RBAC escalation prevention, no identity borrowing.
        ("escalate", "rbac.authorization.k8s.io/roles", TENANT, ""),
        ("bind", "rbac.authorization.k8s.io/roles", TENANT, ""),
        (
            "bind",
            "rbac.authorization.k8s.io/clusterroles",
            "",
            "cluster-admin",
        ),
        (
            "impersonate",
            "/serviceaccounts",
            TENANT,
            "dev-serviceaccount",
        ),
        ("impersonate", "/users", "", "admin"),
        ("create", "authentication.k8s.io/tokenreviews", "", ""),
        // The user owns OpenBaoClusters; status is patched, never replaced.
        ("create", "openbao.org/openbaoclusters", TENANT, ""),
        ("delete", "openbao.org/openbaoclusters", TENANT, "dev"),
        (
            "update",
            "openbao.org/openbaoclusters/status",
            TENANT,
            "dev",
        ),
        (
            "update",
            "openbao.org/openbaoclusters/finalizers",
            TENANT,
            "dev",
        ),
        // Workloads run only through the StatefulSet it applies.
        ("create", "/pods", TENANT, ""),
        ("create", "/pods/exec", TENANT, "dev-0"),
        ("create", "/pods/eviction", TENANT, "dev-0"),
        ("create", "/persistentvolumeclaims", TENANT, ""),
        ("update", "apps/statefulsets", TENANT, "dev"),
        ("create", "apps/deployments", TENANT, ""),
        ("create", "apps/daemonsets", TENANT, ""),
        ("deletecollection", "/secrets", TENANT, ""),
        ("deletecollection", "/pods", TENANT, ""),
        // Backup, restore and upgrade Jobs arrive with their own issues.
        ("create", "batch/jobs", TENANT, ""),
        ("create", "batch/cronjobs", TENANT, ""),
    ]
}

/// Whether the API server's authorizer lets the controller's ServiceAccount do `access`.
async fn allows(client: &kube::Client, (verb, resource, namespace, name): Access) -> bool {
    let (group, rest) = resource.split_once('/').unwrap();
    let (resource, subresource) = rest.split_once('/').unwrap_or((rest, ""));
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(USER.into()),
            groups: Some(GROUPS.iter().map(|g| (*g).to_owned()).collect()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: (!subresource.is_empty()).then(|| subresource.into()),
                namespace: (!namespace.is_empty()).then(|| namespace.into()),
                name: (!name.is_empty()).then(|| name.into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviewed = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    reviewed.status.unwrap().allowed
}

/// Whether the controller's ServiceAccount may `get` a non-resource URL.
async fn allows_path(client: &kube::Client, path: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(USER.into()),
            groups: Some(GROUPS.iter().map(|g| (*g).to_owned()).collect()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.into()),
                verb: Some("get".into()),
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviewed = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    reviewed.status.unwrap().allowed
}

/// A client that acts as the controller's ServiceAccount (the admin
/// impersonates it), so every request goes through the real authorizer and
/// the RBAC storage's escalation checks.
async fn controller_client(plane: &ControlPlane) -> kube::Client {
    let mut config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&plane.kubeconfig_path).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.auth_info.impersonate = Some(USER.into());
    config.auth_info.impersonate_groups = Some(GROUPS.iter().map(|g| (*g).to_owned()).collect());
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn installs_on_a_real_api_server_with_least_privilege_rbac() {
    let plane = ControlPlane::start().await.unwrap();
    let admin = plane.client().await.unwrap();
    let kubeconfig = plane.kubeconfig_path.to_str().unwrap().to_owned();

    install_each_kustomization(&admin, &kubeconfig).await;
    the_controller_pod_passes_admission(&admin).await;

    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": TENANT}})).unwrap(),
        )
        .await
        .unwrap();

    // The table: every needed access allowed, every dangerous one denied.
    let mut wrong = Vec::new();
    let allowed = allowed();
    let denied = denied();
    for access in &allowed {
        if !allows(&admin, *access).await {
            wrong.push(format!("DENIED but needed: {access:?}"));
        }
    }
    for access in &denied {
        if allows(&admin, *access).await {
            wrong.push(format!("ALLOWED but must not be: {access:?}"));
        }
    }
    // Issuer discovery (for self-init's JWT auth) comes from Kubernetes'
    // default binding system:service-account-issuer-discovery, not from
    // these manifests; nothing else outside the API is readable.
    for path in ["/.well-known/openid-configuration", "/openid/v1/jwks"] {
        if !allows_path(&admin, path).await {
            wrong.push(format!("DENIED but needed: get {path}"));
        }
    }
    for path in ["/metrics", "/debug/pprof/"] {
        if allows_path(&admin, path).await {
            wrong.push(format!("ALLOWED but must not be: get {path}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "RBAC differs from the controller's needs:\n{}",
        wrong.join("\n")
    );
    eprintln!(
        "SubjectAccessReview: {} allowed and {} denied as expected",
        allowed.len(),
        denied.len()
    );

    let controller = controller_client(&plane).await;
    leader_election_works_as_the_controller(&controller).await;
    the_controller_applies_and_deletes_a_clusters_objects(&admin, &controller).await;
}

/// `kubectl apply --server-side -k` of the base, then each overlay over it.
async fn install_each_kustomization(admin: &kube::Client, kubeconfig: &str) {
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), NAMESPACE);
    for dir in KUSTOMIZATIONS {
        let path = manifests().join(dir);
        kubectl(&[
            "--kubeconfig",
            kubeconfig,
            "apply",
            "--server-side",
            "-k",
            path.to_str().unwrap(),
        ]);
        let deployment = deployments.get(DEPLOYMENT).await.unwrap();
        let spec = deployment.spec;
        let container = &spec.template.spec.unwrap().containers[0];
        let log = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "RUST_LOG")
            .and_then(|e| e.value.clone())
            .unwrap();
        match dir {
            "overlays/development" => {
                assert_eq!(spec.replicas, Some(1), "{dir}");
                assert!(log.contains("debug"), "{dir}: RUST_LOG={log}");
            }
            "overlays/production" => {
                assert_eq!(spec.replicas, Some(2), "{dir}");
                assert_eq!(log, "info", "{dir}");
            }
            _ => assert_eq!(spec.replicas, Some(1), "{dir}"),
        }
    }

    // Everything the production install holds exists.
    Api::<CustomResourceDefinition>::all(admin.clone())
        .get("openbaoclusters.openbao.org")
        .await
        .unwrap();
    let namespace = Api::<Namespace>::all(admin.clone())
        .get(NAMESPACE)
        .await
        .unwrap();
    assert_eq!(
        namespace.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    Api::<ClusterRole>::all(admin.clone())
        .get(DEPLOYMENT)
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .get(DEPLOYMENT)
        .await
        .unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .get(SERVICE_ACCOUNT)
        .await
        .unwrap();
    Api::<Role>::namespaced(admin.clone(), NAMESPACE)
        .get("openbao-operator-leader-election")
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), NAMESPACE)
        .get("openbao-operator-leader-election")
        .await
        .unwrap();
    Api::<Service>::namespaced(admin.clone(), NAMESPACE)
        .get("openbao-operator-controller-metrics")
        .await
        .unwrap();
    Api::<NetworkPolicy>::namespaced(admin.clone(), NAMESPACE)
        .get(DEPLOYMENT)
        .await
        .unwrap();
    let pdb = Api::<PodDisruptionBudget>::namespaced(admin.clone(), NAMESPACE)
        .get(DEPLOYMENT)
        .await
        .unwrap();
    assert_eq!(
        pdb.spec.unwrap().min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let spread = deployments
        .get(DEPLOYMENT)
        .await
        .unwrap()
        .spec
        .template
        .spec
        .unwrap()
        .topology_spread_constraints
        .unwrap_or_default();
    assert_eq!(spread.len(), 2, "production spreads over nodes and zones");
}

/// The controller-manager's ReplicaSet creates the pods, so they pass Pod
/// Security `restricted`, and no token is injected beside the projected ones.
async fn the_controller_pod_passes_admission(admin: &kube::Client) {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let selector = ListParams::default()
        .labels("app.kubernetes.io/name=openbao-operator,app.kubernetes.io/component=controller");
    let waited = poll_until(
        Duration::from_secs(90),
        "the controller Deployment's pods",
        || {
            let pods = pods.clone();
            let selector = selector.clone();
            async move { Ok(!pods.list(&selector).await?.items.is_empty()) }
        },
    )
    .await;
    if let Err(error) = waited {
        let failures = replica_set_failures(admin).await;
        panic!("{error}; ReplicaSet conditions in {NAMESPACE}:\n{failures}");
    }
    for pod in pods.list(&selector).await.unwrap() {
        let spec = pod.spec.unwrap();
        let mut volumes: Vec<String> = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        volumes.sort();
        assert_eq!(
            volumes,
            ["kube-api-token", "openbao-token"],
            "only the two projected tokens"
        );
    }
}

/// Why the ReplicaSets made no pods (e.g. a Pod Security rejection).
async fn replica_set_failures(admin: &kube::Client) -> String {
    let sets: Api<ReplicaSet> = Api::namespaced(admin.clone(), NAMESPACE);
    match sets.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .flat_map(|set| set.status.and_then(|s| s.conditions).unwrap_or_default())
            .map(|c| format!("{:?}: {:?}", c.type_, c.message))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(error) => error.to_string(),
    }
}

/// Creates and renews the controller's Lease as the controller, the way
/// kube-lease-manager does; any other Lease is out of reach.
async fn leader_election_works_as_the_controller(controller: &kube::Client) {
    let leases: Api<Lease> = Api::namespaced(controller.clone(), NAMESPACE);
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": LEASE}})).unwrap(),
        )
        .await
        .unwrap();
    leases
        .patch(
            LEASE,
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"holderIdentity": "controller-0", "leaseDurationSeconds": 15}}),
            ),
        )
        .await
        .unwrap();
    let mut lease = leases.get(LEASE).await.unwrap();
    lease.spec.as_mut().unwrap().lease_transitions = Some(1);
    leases
        .replace(LEASE, &PostParams::default(), &lease)
        .await
        .unwrap();
    let elsewhere: Api<Lease> = Api::namespaced(controller.clone(), "kube-system");
    assert_forbidden(
        elsewhere
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": LEASE}})).unwrap(),
            )
            .await,
        "a Lease in kube-system",
    );
}

/// Acting as the controller: server-side apply of everything rendered for
/// a Development cluster (the Role passes escalation prevention because the
/// controller holds what it grants), status patch, then deletion. A Role
/// granting more than the controller holds is refused.
async fn the_controller_applies_and_deletes_a_clusters_objects(
    admin: &kube::Client,
    controller: &kube::Client,
) {
    let path = manifests().join("samples/openbaocluster-development.yaml");
    let mut cluster: OpenBaoCluster =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cluster.metadata.namespace = Some(TENANT.into());
    // The CRD was just installed: wait until it serves.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    poll_until(Duration::from_secs(30), "the OpenBaoCluster CRD", || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("openbaoclusters.openbao.org").await?;
            Ok(crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"))
        }
    })
    .await
    .unwrap();
    let cluster = Api::<OpenBaoCluster>::namespaced(admin.clone(), TENANT)
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    let name = cluster.metadata.name.clone().unwrap();

    let params = PatchParams::apply(lifecycle_types::labels::CONTROLLER_FIELD_MANAGER).force();
    let mut inputs = Inputs::in_pod(NAMESPACE, "https://kubernetes.default.svc.cluster.local");
    inputs.static_key_id = "x-1".into();
    let objects = objects(&cluster, &inputs);
    for object in &objects {
        let (api, name) = dynamic(controller, object);
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| {
                panic!("the controller cannot apply {} {name}: {e}", object["kind"])
            });
    }

    // Status goes through the status subresource.
    Api::<OpenBaoCluster>::namespaced(controller.clone(), TENANT)
        .patch_status(
            &name,
            &params,
            &Patch::Apply(json!({
                "apiVersion": "openbao.org/v1alpha1",
                "kind": "OpenBaoCluster",
                "status": {"observedGeneration": 1, "readyReplicas": 0, "initialized": false},
            })),
        )
        .await
        .unwrap();

    // No `escalate`: a Role granting what the controller lacks is refused.
    let exec_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "exec", "namespace": TENANT},
        "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}],
    });
    let (roles, _) = dynamic(controller, &exec_role);
    assert_forbidden(
        roles
            .patch("exec", &params, &Patch::Apply(&exec_role))
            .await,
        "a Role granting pods/exec",
    );
    // Nor may it delete what the user owns.
    assert_forbidden(
        Api::<OpenBaoCluster>::namespaced(controller.clone(), TENANT)
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| ()),
        "deleting the OpenBaoCluster",
    );

    for object in objects.iter().rev() {
        let (api, name) = dynamic(controller, object);
        api.delete(&name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the controller cannot delete {} {name}: {e}",
                    object["kind"]
                )
            });
    }
}

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// The API for a rendered object (as JSON with apiVersion and kind) and its name.
fn dynamic(client: &kube::Client, object: &Value) -> (Api<DynamicObject>, String) {
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let namespace = object["metadata"]["namespace"].as_str().unwrap();
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    (
        Api::namespaced_with(client.clone(), namespace, &resource),
        name,
    )
}

/// What the controller renders for one cluster, in apply order.
fn objects(cluster: &OpenBaoCluster, inputs: &Inputs) -> Vec<Value> {
    let v = |o: &dyn Typed| o.typed();
    let mut all = vec![
        v(&render::rbac::service_account(cluster).unwrap()),
        v(&render::rbac::role(cluster).unwrap()),
        v(&render::rbac::role_binding(cluster).unwrap()),
        v(&render::config::config_map(cluster, inputs).unwrap()),
        v(&render::secrets::unseal_secret(cluster, &[7; 32], "x-1").unwrap()),
        v(&render::services::headless(cluster).unwrap()),
        v(&render::services::active(cluster).unwrap()),
        v(&render::network_policy::network_policy(cluster).unwrap()),
    ];
    if let Some(pdb) = render::pdb::pdb(cluster, inputs).unwrap() {
        all.push(v(&pdb));
    }
    all.push(v(
        &render::statefulset::statefulset(cluster, inputs).unwrap()
    ));
    all
}

/// Serializes a rendered object with its apiVersion and kind.
trait Typed {
    fn typed(&self) -> Value;
}

impl<T: serde::Serialize + k8s_openapi::Resource> Typed for T {
    fn typed(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap();
        value["apiVersion"] = json!(T::API_VERSION);
        value["kind"] = json!(T::KIND);
        value
    }
}
