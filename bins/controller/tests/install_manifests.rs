//! The install manifests (`manifests/`): the base and each overlay render
//! with `kubectl kustomize` (no wildcard in any RBAC rule, the image and the
//! ServiceAccount match the project's conventions), install with
//! `kubectl apply --server-side -k` on a real kube-apiserver, and their RBAC
//! grants the controller exactly what it needs. That last part is proved two
//! ways: a table of SubjectAccessReviews (allowed and denied, printed; run
//! with `--no-capture` to read it), and by acting as the controller's
//! ServiceAccount (impersonation): server-side apply of a cluster's rendered
//! objects, including the RoleBinding that Kubernetes RBAC escalation
//! prevention lets through only by `bind` on the OpenBao pods' ClusterRole,
//! the few deletes it makes, TokenRequest for itself, and garbage collection
//! of what it may not delete.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use controller::render::rbac::OPENBAO_PODS_CLUSTER_ROLE;
use controller::render::{self, Inputs};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
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
use lifecycle_types::cluster::IngressSpec;
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

        let mut role_names: Vec<&str> = of_kind(&docs, "ClusterRole")
            .into_iter()
            .chain(of_kind(&docs, "Role"))
            .filter_map(|r| r["metadata"]["name"].as_str())
            .collect();
        role_names.sort();
        assert_eq!(
            role_names,
            [
                "openbao-operator-admin",
                "openbao-operator-controller",
                "openbao-operator-editor",
                "openbao-operator-leader-election",
                OPENBAO_PODS_CLUSTER_ROLE,
                "openbao-operator-token-request",
                "openbao-operator-viewer",
            ],
            "{dir}: the controller's ClusterRole, the OpenBao pods' ClusterRole, leader election, TokenRequest and the users' roles"
        );
        let roles: Vec<&Value> = of_kind(&docs, "ClusterRole")
            .into_iter()
            .chain(of_kind(&docs, "Role"))
            .collect();
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
                let resources = strings(&rule["resources"]);
                let names = strings(&rule["resourceNames"]);
                for verb in strings(&rule["verbs"]) {
                    assert!(
                        !["escalate", "impersonate", "deletecollection", "*"].contains(&verb),
                        "{dir}: {name} grants {verb}: {text}"
                    );
                    // `bind` only on the OpenBao pods' ClusterRole, by name.
                    if verb == "bind" {
                        assert_eq!(resources, ["clusterroles"], "{dir}: {name}: {text}");
                        assert_eq!(names, [OPENBAO_PODS_CLUSTER_ROLE], "{dir}: {name}: {text}");
                    }
                }
                // Tokens only for the controller's own ServiceAccount.
                if resources.contains(&"serviceaccounts/token") {
                    assert_eq!(resources, ["serviceaccounts/token"], "{dir}: {text}");
                    assert_eq!(strings(&rule["verbs"]), ["create"], "{dir}: {text}");
                    assert_eq!(names, [SERVICE_ACCOUNT], "{dir}: {text}");
                    assert_eq!(role["kind"], "Role", "{dir}: {text}");
                    assert_eq!(role["metadata"]["namespace"], NAMESPACE, "{dir}: {text}");
                }
            }
        }
        // Nothing binds the OpenBao pods' ClusterRole at install time: the
        // controller binds it per cluster, in the cluster's namespace only.
        for binding in of_kind(&docs, "ClusterRoleBinding")
            .into_iter()
            .chain(of_kind(&docs, "RoleBinding"))
        {
            assert_ne!(
                binding["roleRef"]["name"], OPENBAO_PODS_CLUSTER_ROLE,
                "{dir}: {binding}"
            );
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
        // Only for migration now: the controller logs in with tokens it
        // mints per cluster, and this one moves a role bootstrapped by an
        // earlier release (bound to openbao-internal) to them.
        assert_eq!(controller::openbao::LEGACY_AUDIENCE, "openbao-internal");
        assert!(
            controller_role.bound_audiences[0]
                .starts_with(lifecycle_types::identities::CONTROLLER_AUDIENCE_PREFIX)
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
fn the_admission_kustomization_ships_every_policy_the_controller_checks() {
    let docs = kustomize("admission");
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        let mut shipped: Vec<&str> = of_kind(&docs, kind)
            .iter()
            .filter_map(|d| d["metadata"]["name"].as_str())
            .collect();
        shipped.sort();
        assert_eq!(
            shipped,
            lifecycle_types::names::ADMISSION_POLICIES,
            "{kind}"
        );
    }
    for policy in of_kind(&docs, "ValidatingAdmissionPolicy") {
        assert_eq!(policy["spec"]["failurePolicy"], "Fail", "{policy}");
    }
    for binding in of_kind(&docs, "ValidatingAdmissionPolicyBinding") {
        assert_eq!(
            binding["spec"]["validationActions"],
            json!(["Deny"]),
            "{binding}"
        );
        assert_eq!(binding["spec"]["policyName"], binding["metadata"]["name"]);
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

/// A row of the SubjectAccessReview table: an access and why it is
/// expected (allowed: what code needs it; denied: why it must not be).
type Row = (Access, &'static str);

/// Kinds a cluster owns for its whole life: applied and watched, never
/// deleted by the controller (the garbage collector follows the owner
/// reference).
const OWNED_FOR_LIFE: [&str; 6] = [
    "apps/statefulsets",
    "batch/jobs",
    "/services",
    "/secrets",
    "rbac.authorization.k8s.io/rolebindings",
    "networking.k8s.io/networkpolicies",
];

/// Kinds a spec change (or the end of a restore) can make obsolete: the
/// controller deletes them.
const DELETED_ON_CHANGE: [&str; 4] = [
    "/serviceaccounts",
    "/configmaps",
    "policy/poddisruptionbudgets",
    "networking.k8s.io/ingresses",
];

const GATEWAY_ROUTES: [&str; 2] = [
    "gateway.networking.k8s.io/httproutes",
    "gateway.networking.k8s.io/tlsroutes",
];

/// Everything the controller does, in a tenant namespace unless noted.
fn allowed() -> Vec<Row> {
    let mut all: Vec<Row> = Vec::new();
    for name in lifecycle_types::names::ADMISSION_POLICIES {
        for resource in [
            "admissionregistration.k8s.io/validatingadmissionpolicies",
            "admissionregistration.k8s.io/validatingadmissionpolicybindings",
        ] {
            all.push((
                ("get", resource, "", name),
                "the startup check of the admission guardrails",
            ));
        }
    }
    for verb in ["get", "list", "watch"] {
        all.push((
            (verb, "openbao.org/openbaoclusters", TENANT, ""),
            "read and watch clusters",
        ));
    }
    for verb in ["list", "watch"] {
        all.push((
            (verb, "openbao.org/openbaoclusters", "", ""),
            "the cluster watch spans namespaces",
        ));
    }
    all.push((
        ("patch", "openbao.org/openbaoclusters/status", TENANT, "dev"),
        "status by server-side apply",
    ));
    for verb in ["get", "list", "watch"] {
        all.push((
            (verb, "openbao.org/openbaorestores", TENANT, ""),
            "read and watch restores",
        ));
    }
    all.push((
        ("patch", "openbao.org/openbaorestores/status", TENANT, "r1"),
        "restore status by server-side apply",
    ));
    for resource in OWNED_FOR_LIFE.iter().chain(&DELETED_ON_CHANGE) {
        for verb in ["get", "create", "patch"] {
            all.push(((verb, resource, TENANT, ""), "server-side apply"));
        }
        for verb in ["list", "watch"] {
            all.push(((verb, resource, TENANT, ""), "owned-object watch"));
            all.push((
                (verb, resource, "", ""),
                "owned-object watch, all namespaces",
            ));
        }
    }
    for resource in DELETED_ON_CHANGE {
        all.push((
            ("delete", resource, TENANT, ""),
            "self-init map after init, PDB at 1 replica, disabled Ingress, the restore identity after a restore",
        ));
    }
    for resource in GATEWAY_ROUTES {
        for verb in ["get", "create", "patch"] {
            all.push((
                (verb, resource, TENANT, "dev"),
                "spec.gateway route (apply)",
            ));
        }
        all.push((
            ("delete", resource, TENANT, "dev"),
            "the route of the kind no longer wanted",
        ));
    }
    all.push((
        (
            "bind",
            "rbac.authorization.k8s.io/clusterroles",
            TENANT,
            OPENBAO_PODS_CLUSTER_ROLE,
        ),
        "each cluster's RoleBinding to the pods' role",
    ));
    for verb in ["get", "list", "watch"] {
        all.push(((verb, "/pods", TENANT, "dev-0"), "pod health and revisions"));
    }
    for verb in ["list", "watch"] {
        all.push(((verb, "/pods", "", ""), "the pod watch spans namespaces"));
    }
    all.push((("delete", "/pods", TENANT, "dev-0"), "the rollout gate"));
    for verb in ["create", "patch"] {
        all.push((
            (verb, "events.k8s.io/events", TENANT, ""),
            "Events (kube-runtime recorder)",
        ));
    }
    all.push((
        ("create", "coordination.k8s.io/leases", NAMESPACE, ""),
        "leader election: first Lease",
    ));
    for verb in ["get", "update", "patch"] {
        all.push((
            (verb, "coordination.k8s.io/leases", NAMESPACE, LEASE),
            "leader election: its Lease",
        ));
    }
    all.push((
        (
            "create",
            "/serviceaccounts/token",
            NAMESPACE,
            SERVICE_ACCOUNT,
        ),
        "TokenRequest for its own account",
    ));
    all
}

/// What the controller must never be able to do: first every verb this
/// change removed, then what it never had.
fn denied() -> Vec<Row> {
    let mut all: Vec<Row> = vec![
        // Removed: the spec is the user's; status only.
        (
            ("patch", "openbao.org/openbaoclusters", TENANT, "dev"),
            "removed: spec is the user's",
        ),
        (
            ("update", "openbao.org/openbaoclusters", TENANT, "dev"),
            "spec is the user's",
        ),
        (
            ("create", "openbao.org/openbaorestores", TENANT, ""),
            "the user asks for restores",
        ),
        (
            ("patch", "openbao.org/openbaorestores", TENANT, "r1"),
            "a restore's spec is the user's",
        ),
        (
            ("delete", "openbao.org/openbaorestores", TENANT, "r1"),
            "a restore's record is the user's",
        ),
        // Removed: pod writes (only the pods' own ClusterRole has them).
        (
            ("update", "/pods", TENANT, "dev-0"),
            "removed: the pods' role holds it",
        ),
        (
            ("patch", "/pods", TENANT, "dev-0"),
            "removed: the pods' role holds it",
        ),
        (
            ("patch", "/pods", "kube-system", "kube-apiserver"),
            "removed: no pod writes anywhere",
        ),
    ];
    for resource in OWNED_FOR_LIFE {
        all.push((
            ("delete", resource, TENANT, "dev"),
            "removed: garbage collection",
        ));
    }
    for verb in ["get", "list", "watch", "create", "patch", "delete"] {
        all.push((
            (verb, "rbac.authorization.k8s.io/roles", TENANT, ""),
            "removed: no per-cluster Role",
        ));
    }
    for verb in ["get", "list", "watch", "delete"] {
        all.push((
            (verb, "/persistentvolumeclaims", TENANT, "data-dev-2"),
            "removed: the StatefulSet's retention policy",
        ));
    }
    for verb in ["create", "patch"] {
        all.push((
            (verb, "/events", TENANT, ""),
            "removed: core Events are never written",
        ));
    }
    for resource in GATEWAY_ROUTES {
        for verb in ["list", "watch"] {
            all.push(((verb, resource, TENANT, ""), "routes are read by name only"));
        }
    }
    all.extend([
        (
            ("create", "gateway.networking.k8s.io/gateways", TENANT, ""),
            "the user owns Gateways",
        ),
        (
            ("create", "gateway.networking.k8s.io/grpcroutes", TENANT, ""),
            "no such route is rendered",
        ),
        // Tokens: its own account in its own namespace only.
        (
            (
                "create",
                "/serviceaccounts/token",
                TENANT,
                "dev-serviceaccount",
            ),
            "no tokens for the pods' account",
        ),
        (
            ("create", "/serviceaccounts/token", NAMESPACE, "default"),
            "no tokens for another account",
        ),
        (
            (
                "create",
                "/serviceaccounts/token",
                "kube-system",
                SERVICE_ACCOUNT,
            ),
            "same name elsewhere",
        ),
        // Binding: the pods' ClusterRole only; no escalation.
        (
            (
                "bind",
                "rbac.authorization.k8s.io/clusterroles",
                TENANT,
                "cluster-admin",
            ),
            "bind only the pods' role",
        ),
        (
            (
                "bind",
                "rbac.authorization.k8s.io/clusterroles",
                TENANT,
                "admin",
            ),
            "bind only the pods' role",
        ),
        (
            (
                "bind",
                "rbac.authorization.k8s.io/clusterroles",
                "",
                "openbao-operator-controller",
            ),
            "bind only the pods' role",
        ),
        (
            ("bind", "rbac.authorization.k8s.io/roles", TENANT, "dev"),
            "bind only the pods' role",
        ),
        (
            ("escalate", "rbac.authorization.k8s.io/roles", TENANT, ""),
            "no escalation",
        ),
        (
            (
                "escalate",
                "rbac.authorization.k8s.io/clusterroles",
                "",
                OPENBAO_PODS_CLUSTER_ROLE,
            ),
            "the pods' role is fixed",
        ),
        (
            (
                "patch",
                "rbac.authorization.k8s.io/clusterroles",
                "",
                OPENBAO_PODS_CLUSTER_ROLE,
            ),
            "the pods' role is fixed",
        ),
        (
            ("create", "rbac.authorization.k8s.io/clusterroles", "", ""),
            "no cluster-scoped RBAC",
        ),
        (
            (
                "create",
                "rbac.authorization.k8s.io/clusterrolebindings",
                "",
                "",
            ),
            "no cluster-scoped RBAC",
        ),
        (
            (
                "impersonate",
                "/serviceaccounts",
                TENANT,
                "dev-serviceaccount",
            ),
            "no identity borrowing",
        ),
        (
            ("impersonate", "/users", "", "admin"),
            "no identity borrowing",
        ),
        (
            ("create", "authentication.k8s.io/tokenreviews", "", ""),
            "never needed",
        ),
        // Leader election: its own Lease in its own namespace only.
        (
            ("update", "coordination.k8s.io/leases", "kube-system", LEASE),
            "own namespace only",
        ),
        (
            ("get", "coordination.k8s.io/leases", TENANT, LEASE),
            "own namespace only",
        ),
        (
            ("create", "coordination.k8s.io/leases", "kube-system", ""),
            "own namespace only",
        ),
        (
            (
                "update",
                "coordination.k8s.io/leases",
                NAMESPACE,
                "kube-controller-manager",
            ),
            "its own Lease only",
        ),
        (
            ("delete", "coordination.k8s.io/leases", NAMESPACE, LEASE),
            "never deletes its Lease",
        ),
        (
            ("list", "coordination.k8s.io/leases", NAMESPACE, ""),
            "its own Lease only",
        ),
        // Cluster-scoped objects.
        (("delete", "/namespaces", "", TENANT), "no namespaces"),
        (("create", "/namespaces", "", ""), "no namespaces"),
        (("get", "/namespaces", "", TENANT), "no namespaces"),
        (("get", "/nodes", "", ""), "no nodes"),
        (("list", "/nodes", "", ""), "no nodes"),
        (
            (
                "get",
                "apiextensions.k8s.io/customresourcedefinitions",
                "",
                "",
            ),
            "no CRDs",
        ),
        (
            (
                "list",
                "apiextensions.k8s.io/customresourcedefinitions",
                "",
                "",
            ),
            "no CRDs",
        ),
        (
            (
                "create",
                "apiextensions.k8s.io/customresourcedefinitions",
                "",
                "",
            ),
            "no CRDs",
        ),
        (
            (
                "patch",
                "apiextensions.k8s.io/customresourcedefinitions",
                "",
                "openbaoclusters.openbao.org",
            ),
            "no CRDs",
        ),
        (
            (
                "delete",
                "apiextensions.k8s.io/customresourcedefinitions",
                "",
                "openbaoclusters.openbao.org",
            ),
            "no CRDs",
        ),
        (
            (
                "create",
                "admissionregistration.k8s.io/validatingwebhookconfigurations",
                "",
                "",
            ),
            "no admission control",
        ),
        (
            (
                "patch",
                "admissionregistration.k8s.io/validatingadmissionpolicybindings",
                "",
                "openbao-operator-managed-objects",
            ),
            "reads its guardrails, never changes them",
        ),
        (
            (
                "delete",
                "admissionregistration.k8s.io/validatingadmissionpolicies",
                "",
                "openbao-operator-managed-objects",
            ),
            "reads its guardrails, never changes them",
        ),
        (
            (
                "list",
                "admissionregistration.k8s.io/validatingadmissionpolicies",
                "",
                "",
            ),
            "reads its own guardrails by name only",
        ),
        // The user owns OpenBaoClusters; status is patched, never replaced.
        (
            ("create", "openbao.org/openbaoclusters", TENANT, ""),
            "the user's object",
        ),
        (
            ("delete", "openbao.org/openbaoclusters", TENANT, "dev"),
            "the user's object",
        ),
        (
            (
                "update",
                "openbao.org/openbaoclusters/status",
                TENANT,
                "dev",
            ),
            "status is patched",
        ),
        (
            (
                "update",
                "openbao.org/openbaoclusters/finalizers",
                TENANT,
                "dev",
            ),
            "no finalizers",
        ),
        // Workloads run only through the StatefulSet it applies.
        (
            ("create", "/pods", TENANT, ""),
            "pods come from the StatefulSet",
        ),
        (("create", "/pods/exec", TENANT, "dev-0"), "no exec"),
        (
            ("create", "/pods/eviction", TENANT, "dev-0"),
            "deletes, not evicts",
        ),
        (
            ("create", "/persistentvolumeclaims", TENANT, ""),
            "claims come from the StatefulSet",
        ),
        (
            ("update", "apps/statefulsets", TENANT, "dev"),
            "server-side apply only",
        ),
        (("create", "apps/deployments", TENANT, ""), "never needed"),
        (("create", "apps/daemonsets", TENANT, ""), "never needed"),
        (
            ("deletecollection", "/secrets", TENANT, ""),
            "no bulk deletes",
        ),
        (("deletecollection", "/pods", TENANT, ""), "no bulk deletes"),
        (
            ("deletecollection", "/configmaps", TENANT, ""),
            "no bulk deletes",
        ),
        (
            ("delete", "batch/jobs", TENANT, ""),
            "finished Jobs go by their TTL",
        ),
        (
            ("create", "batch/cronjobs", TENANT, ""),
            "the controller schedules backup Jobs itself",
        ),
    ]);
    all
}

/// A user and its groups, as a ServiceAccount's token presents them.
struct Subject {
    user: String,
    groups: Vec<String>,
}

impl Subject {
    fn service_account(namespace: &str, name: &str) -> Subject {
        Subject {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }

    fn controller() -> Subject {
        let subject = Subject::service_account(NAMESPACE, SERVICE_ACCOUNT);
        assert_eq!(subject.user, USER);
        assert_eq!(subject.groups, GROUPS);
        subject
    }
}

/// Whether the API server's authorizer lets `subject` do `access`.
async fn allows(
    client: &kube::Client,
    subject: &Subject,
    (verb, resource, namespace, name): Access,
) -> bool {
    let (group, rest) = resource.split_once('/').unwrap();
    let (resource, subresource) = rest.split_once('/').unwrap_or((rest, ""));
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(subject.user.clone()),
            groups: Some(subject.groups.clone()),
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

/// Reviews every row for `subject` and prints them as a table; returns the
/// rows whose answer differs from `expect`.
async fn review_table(
    client: &kube::Client,
    subject: &Subject,
    title: &str,
    rows: &[(Row, bool)],
) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut table = format!(
        "\n{title} ({})\n{:<6} {:<5} {:<16} {:<46} {:<24} {:<30} why\n",
        subject.user, "ok", "want", "verb", "resource", "namespace", "name"
    );
    for ((access, why), expect) in rows {
        let got = allows(client, subject, *access).await;
        let (verb, resource, namespace, name) = access;
        let ok = if got == *expect { "ok" } else { "WRONG" };
        table.push_str(&format!(
            "{ok:<6} {:<5} {verb:<16} {resource:<46} {:<24} {:<30} {why}\n",
            if *expect { "allow" } else { "deny" },
            if namespace.is_empty() { "*" } else { namespace },
            if name.is_empty() { "*" } else { name },
        ));
        if got != *expect {
            wrong.push(format!(
                "{}: {access:?} ({why})",
                if *expect {
                    "DENIED but needed"
                } else {
                    "ALLOWED but must not be"
                }
            ));
        }
    }
    println!("{table}");
    wrong
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

    // The table: every needed access allowed, every removed or dangerous
    // one denied (run with --no-capture to see it).
    let allowed = allowed();
    let denied = denied();
    let rows: Vec<(Row, bool)> = allowed
        .iter()
        .map(|row| (*row, true))
        .chain(denied.iter().map(|row| (*row, false)))
        .collect();
    let controller_subject = Subject::controller();
    let mut wrong = review_table(
        &admin,
        &controller_subject,
        "SubjectAccessReview of the controller",
        &rows,
    )
    .await;
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
    println!(
        "SubjectAccessReview: {} allowed and {} denied as expected",
        allowed.len(),
        denied.len()
    );

    confining_the_controller_to_namespaces_confines_secrets(&admin).await;
    users_get_the_operators_kinds_through_the_default_roles(&admin).await;

    let controller = controller_client(&plane).await;
    leader_election_works_as_the_controller(&controller).await;
    the_controller_mints_tokens_for_itself_only(&controller).await;
    the_controller_applies_and_deletes_a_clusters_objects(&admin, &controller).await;
}

/// manifests/base/user-roles.yaml: whoever holds Kubernetes' `view`,
/// `edit` or `admin` in a namespace gets the operator's kinds there (read;
/// read and write; read and write), never their status, and nothing in a
/// namespace where they hold nothing.
async fn users_get_the_operators_kinds_through_the_default_roles(admin: &kube::Client) {
    let users = [("vera", "view"), ("eddie", "edit"), ("ada", "admin")];
    for (user, role) in users {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("{user}-{role}"), "namespace": TENANT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(admin.clone(), TENANT)
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
    }
    let person = |user: &str| Subject {
        user: user.into(),
        groups: vec!["system:authenticated".into()],
    };
    // The controller-manager aggregates the rules in the background.
    poll_until(
        Duration::from_secs(60),
        "the operator's kinds aggregated into view, edit and admin",
        || async {
            let mut all = true;
            for (user, _) in users {
                all &= allows(
                    admin,
                    &person(user),
                    ("list", "openbao.org/openbaoclusters", TENANT, ""),
                )
                .await;
            }
            Ok(all)
        },
    )
    .await
    .unwrap();
    let reads = [
        ("get", "openbao.org/openbaoclusters"),
        ("list", "openbao.org/openbaoclusters"),
        ("watch", "openbao.org/openbaorestores"),
        ("get", "openbao.org/openbaoclusters/status"),
    ];
    let writes = [
        ("create", "openbao.org/openbaoclusters"),
        ("patch", "openbao.org/openbaoclusters"),
        ("delete", "openbao.org/openbaoclusters"),
        ("create", "openbao.org/openbaorestores"),
    ];
    let never = [
        ("patch", "openbao.org/openbaoclusters/status"),
        ("update", "openbao.org/openbaorestores/status"),
    ];
    let mut wrong = Vec::new();
    for (user, role) in users {
        let mut rows: Vec<(Row, bool)> = Vec::new();
        for (verb, resource) in reads {
            rows.push((((verb, resource, TENANT, ""), "read"), true));
            rows.push((
                ((verb, resource, "elsewhere", ""), "no binding there"),
                false,
            ));
        }
        for (verb, resource) in writes {
            rows.push((((verb, resource, TENANT, ""), "write"), role != "view"));
            rows.push((
                ((verb, resource, "elsewhere", ""), "no binding there"),
                false,
            ));
        }
        for (verb, resource) in never {
            rows.push((
                (
                    (verb, resource, TENANT, ""),
                    "only the controller reports status",
                ),
                false,
            ));
        }
        let title = format!("SubjectAccessReview of a user holding {role} in {TENANT}");
        wrong.extend(review_table(admin, &person(user), &title, &rows).await);
    }
    assert!(wrong.is_empty(), "users' roles:\n{}", wrong.join("\n"));
}

/// The recipe in manifests/README.md for `--watch-namespaces`: the
/// controller's ClusterRole bound with a RoleBinding in each watched
/// namespace instead of the ClusterRoleBinding. Shown on a second
/// ServiceAccount, so the installed binding stays as it is: Secrets (and
/// everything else, `bind` included) in the bound namespace, none elsewhere.
async fn confining_the_controller_to_namespaces_confines_secrets(admin: &kube::Client) {
    const CONFINED: &str = "openbao-operator-confined";
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "openbao-operator-controller", "namespace": TENANT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DEPLOYMENT},
        "subjects": [{"kind": "ServiceAccount", "name": CONFINED, "namespace": NAMESPACE}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), TENANT)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let rows: Vec<(Row, bool)> = vec![
        (
            (
                ("get", "/secrets", TENANT, "dev-unseal-key"),
                "bound namespace",
            ),
            true,
        ),
        ((("list", "/secrets", TENANT, ""), "bound namespace"), true),
        (
            (("create", "/secrets", TENANT, ""), "bound namespace"),
            true,
        ),
        (
            (
                (
                    "bind",
                    "rbac.authorization.k8s.io/clusterroles",
                    TENANT,
                    OPENBAO_PODS_CLUSTER_ROLE,
                ),
                "bound namespace",
            ),
            true,
        ),
        (
            (("get", "/secrets", "team-b", "x"), "not bound there"),
            false,
        ),
        (
            (("list", "/secrets", "", ""), "no cluster-wide watch"),
            false,
        ),
        (
            (("get", "/secrets", "kube-system", "x"), "not bound there"),
            false,
        ),
        (
            (
                ("list", "openbao.org/openbaoclusters", "", ""),
                "no cluster-wide watch",
            ),
            false,
        ),
    ];
    // The API server's authorizer sees a new RoleBinding through its own
    // watch: ask again until it has, within a bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let wrong = loop {
        let wrong = review_table(
            admin,
            &Subject::service_account(NAMESPACE, CONFINED),
            "SubjectAccessReview of a controller bound per namespace",
            &rows,
        )
        .await;
        if wrong.is_empty() || std::time::Instant::now() > deadline {
            break wrong;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Api::<RoleBinding>::namespaced(admin.clone(), TENANT)
        .delete("openbao-operator-controller", &DeleteParams::default())
        .await
        .unwrap();
}

/// TokenRequest as the controller: a token for its own ServiceAccount, and
/// 403 for any other account.
async fn the_controller_mints_tokens_for_itself_only(controller: &kube::Client) {
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": ["openbao-internal"], "expirationSeconds": 600},
    }))
    .unwrap();
    let own = Api::<ServiceAccount>::namespaced(controller.clone(), NAMESPACE)
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .unwrap();
    assert!(!own.status.unwrap().token.unwrap_or_default().is_empty());
    assert_forbidden(
        Api::<ServiceAccount>::namespaced(controller.clone(), NAMESPACE)
            .create_token_request("default", &PostParams::default(), &request)
            .await,
        "a token for another ServiceAccount",
    );
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
    Api::<ClusterRole>::all(admin.clone())
        .get(OPENBAO_PODS_CLUSTER_ROLE)
        .await
        .unwrap();
    for name in [
        "openbao-operator-leader-election",
        "openbao-operator-token-request",
    ] {
        Api::<Role>::namespaced(admin.clone(), NAMESPACE)
            .get(name)
            .await
            .unwrap();
        Api::<RoleBinding>::namespaced(admin.clone(), NAMESPACE)
            .get(name)
            .await
            .unwrap();
    }
    Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .get(SERVICE_ACCOUNT)
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
/// a Development cluster with an Ingress (the RoleBinding passes escalation
/// prevention through `bind` on the pods' ClusterRole alone), status patch,
/// the deletes the controller makes (and no others), and garbage
/// collection of what it may not delete. A Role of its own, or a binding to
/// any other role, is refused; so is an OpenBao pod's write outside its
/// namespace.
async fn the_controller_applies_and_deletes_a_clusters_objects(
    admin: &kube::Client,
    controller: &kube::Client,
) {
    let path = manifests().join("samples/openbaocluster-development.yaml");
    let mut cluster: OpenBaoCluster =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cluster.metadata.namespace = Some(TENANT.into());
    cluster.spec.ingress = Some(IngressSpec {
        enabled: true,
        class_name: None,
        host: "bao.example.com".into(),
        path: "/".into(),
        tls_secret_name: None,
        annotations: Default::default(),
    });
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
    // Initialized: three replicas, so the PodDisruptionBudget exists too.
    inputs.initialized = true;
    let objects = objects(&cluster, &inputs);
    for object in &objects {
        let (api, name) = dynamic(controller, object);
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| {
                panic!("the controller cannot apply {} {name}: {e}", object["kind"])
            });
    }

    // Status goes through the status subresource; the spec is the user's.
    let clusters = Api::<OpenBaoCluster>::namespaced(controller.clone(), TENANT);
    clusters
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
    assert_forbidden(
        clusters
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"x": "y"}}})),
            )
            .await,
        "patching the OpenBaoCluster itself",
    );

    // The OpenBao pods' account got exactly the pods' ClusterRole, in the
    // cluster's namespace only.
    let pods_account =
        Subject::service_account(TENANT, &lifecycle_types::names::service_account(&name));
    let rows: Vec<(Row, bool)> = vec![
        (
            (("get", "/pods", TENANT, "dev-0"), "service registration"),
            true,
        ),
        (
            (
                ("patch", "/pods", TENANT, "dev-0"),
                "service registration labels",
            ),
            true,
        ),
        ((("list", "/pods", TENANT, ""), "Raft auto-join"), true),
        (
            (("update", "/pods", TENANT, "dev-0"), "labels are patched"),
            false,
        ),
        ((("delete", "/pods", TENANT, "dev-0"), "never"), false),
        ((("create", "/pods", TENANT, ""), "never"), false),
        ((("watch", "/pods", TENANT, ""), "not used"), false),
        (
            (("get", "/secrets", TENANT, "dev-unseal-key"), "never"),
            false,
        ),
        (
            (("patch", "/pods", "kube-system", "x"), "its namespace only"),
            false,
        ),
        ((("list", "/pods", "", ""), "its namespace only"), false),
    ];
    let wrong = review_table(
        admin,
        &pods_account,
        "SubjectAccessReview of the OpenBao pods' account",
        &rows,
    )
    .await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // No Roles at all, and no binding to any role but the pods' one.
    let exec_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "exec", "namespace": TENANT},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    });
    let (roles, _) = dynamic(controller, &exec_role);
    assert_forbidden(
        roles
            .patch("exec", &params, &Patch::Apply(&exec_role))
            .await,
        "a Role (even one granting only what it holds)",
    );
    // (Its own ClusterRole is not in this list: Kubernetes lets anyone who
    // may write RoleBindings bind a role whose every permission it holds.)
    for role in ["admin", "edit", "cluster-admin"] {
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": format!("to-{role}"), "namespace": TENANT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "dev-serviceaccount", "namespace": TENANT}],
        });
        let (bindings, binding_name) = dynamic(controller, &binding);
        assert_forbidden(
            bindings
                .patch(&binding_name, &params, &Patch::Apply(&binding))
                .await,
            &format!("a RoleBinding to ClusterRole {role}"),
        );
    }
    // Nor may it delete what the user owns.
    assert_forbidden(
        clusters
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| ()),
        "deleting the OpenBaoCluster",
    );

    // Deletes: only the kinds a spec change (or the end of a restore, for
    // the restore identity's ServiceAccount) makes obsolete; everything
    // else is refused, and left to the garbage collector.
    let deletable = [
        "ConfigMap",
        "PodDisruptionBudget",
        "Ingress",
        "ServiceAccount",
    ];
    let mut deleted = Vec::new();
    let mut collected = Vec::new();
    for object in objects.iter().rev() {
        let kind = object["kind"].as_str().unwrap();
        let (api, object_name) = dynamic(controller, object);
        let result = api.delete(&object_name, &DeleteParams::default()).await;
        if deletable.contains(&kind) {
            result.unwrap_or_else(|e| {
                panic!("the controller cannot delete {kind} {object_name}: {e}")
            });
            deleted.push(kind);
        } else {
            assert_forbidden(result, &format!("deleting {kind} {object_name}"));
            if object["metadata"]["ownerReferences"].is_array() {
                collected.push(object);
            }
        }
    }
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "ConfigMap",
            "Ingress",
            "PodDisruptionBudget",
            "ServiceAccount"
        ]
    );
    let mut owned: Vec<&str> = collected
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    owned.sort();
    // The unseal Secret is kept on purpose (deletionPolicy Retain: no owner).
    assert_eq!(
        owned,
        [
            "NetworkPolicy",
            "RoleBinding",
            "Service",
            "Service",
            "StatefulSet"
        ]
    );

    // The user deletes the cluster; kube-controller-manager's garbage
    // collector removes every owned object the controller could not.
    Api::<OpenBaoCluster>::namespaced(admin.clone(), TENANT)
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    for object in collected {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let (api, object_name) = dynamic(admin, object);
        poll_until(
            Duration::from_secs(90),
            &format!("garbage collection of {kind} {object_name}"),
            || {
                let api = api.clone();
                let object_name = object_name.clone();
                async move { Ok(api.get_opt(&object_name).await?.is_none()) }
            },
        )
        .await
        .unwrap();
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
        v(&render::rbac::role_binding(cluster).unwrap()),
        v(&render::config::config_map(cluster, inputs).unwrap()),
        v(&render::secrets::unseal_secret(cluster, &[7; 32], "x-1").unwrap()),
        v(&render::services::headless(cluster).unwrap()),
        v(&render::services::active(cluster).unwrap()),
        v(&render::network_policy::network_policy(cluster, inputs).unwrap()),
    ];
    if let Some(pdb) = render::pdb::pdb(cluster, inputs).unwrap() {
        all.push(v(&pdb));
    }
    if let Some(ingress) = render::exposure::ingress(cluster).unwrap() {
        all.push(v(&ingress));
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
