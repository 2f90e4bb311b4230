//! The Helm chart (`charts/openbao-operator`): `helm lint` passes; with its
//! default values `helm template` renders the same objects as `kubectl
//! kustomize` renders for `manifests/base` and `manifests/admission` (apart
//! from Helm's labels and the Namespace, which Helm creates itself); and a
//! `helm install` on a real control plane runs a ready controller pod from
//! the controller image that leads.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::Value;
use test_support::node_agent::ImageMap;
use test_support::wait::poll_until;
use test_support::{ControlPlane, NodeAgent, NodeAgentOptions, tools};

use test_support::crds::OPERATOR_NAMESPACE as NAMESPACE;

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Runs a tool and returns its standard output, failing with its error.
fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// What kustomize's re-serialization changes and Helm keeps as written:
/// line breaks in folded scalars (the policies' CEL), collapsed here to
/// single spaces, and whole floats (`86400.0` becomes `86400`).
fn normalize(value: &mut Value) {
    match value {
        Value::String(text) => *text = text.split_whitespace().collect::<Vec<_>>().join(" "),
        Value::Number(number) => {
            if let Some(float) = number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && !number.is_i64())
            {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::Object(fields) => fields.values_mut().for_each(normalize),
        _ => {}
    }
}

/// Each object of a YAML stream by kind, namespace and name, without the
/// labels only Helm sets.
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let mut object: Value = serde::Deserialize::deserialize(document).unwrap();
        if object.is_null() {
            continue;
        }
        // (`get_mut`: indexing would add a null `labels` where there is none.)
        if let Some(labels) = object
            .get_mut("metadata")
            .and_then(|m| m.get_mut("labels"))
            .and_then(Value::as_object_mut)
        {
            for helm in [
                "helm.sh/chart",
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
            ] {
                labels.remove(helm);
            }
        }
        normalize(&mut object);
        let key = format!(
            "{} {}/{}",
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["namespace"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        out.insert(key, object);
    }
    out
}

#[test]
fn the_chart_lints_and_renders_what_kustomize_renders() {
    let helm = tools::helm().unwrap();
    let chart = repo("charts/openbao-operator");
    let chart = chart.to_str().unwrap();
    let lint = run(&helm, &["lint", "--strict", chart]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let rendered = objects(&run(
        &helm,
        &[
            "template",
            "openbao-operator",
            chart,
            "--namespace",
            NAMESPACE,
            "--include-crds",
        ],
    ));
    let kubectl = tools::kubernetes("kubectl").unwrap();
    let mut kustomized = BTreeMap::new();
    for folder in ["manifests/base", "manifests/admission"] {
        kustomized.extend(objects(&run(
            &kubectl,
            &["kustomize", repo(folder).to_str().unwrap()],
        )));
    }
    kustomized.retain(|key, _| !key.starts_with("Namespace "));
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        kustomized.keys().collect::<Vec<_>>(),
        "the chart and the kustomize install hold different objects"
    );
    let differ: Vec<&String> = kustomized
        .iter()
        .filter(|(key, object)| rendered[*key] != **object)
        .map(|(key, _)| key)
        .collect();
    assert!(
        differ.is_empty(),
        "the chart renders these differently: {differ:?}"
    );
    println!("{} objects rendered alike", rendered.len());

    // The values change what they say.
    let tuned = objects(&run(
        &helm,
        &[
            "template",
            "openbao-operator",
            chart,
            "--namespace",
            "ops",
            "--set",
            "watchNamespaces={team-a,team-b},leaderElection.enabled=false,metrics.enabled=false,image.tag=9.9.9,admissionPolicies.enabled=false",
        ],
    ));
    let deployment = &tuned["Deployment ops/openbao-operator-controller"];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "ghcr.io/openbao-operator/controller:9.9.9"
    );
    assert!(
        !container["args"]
            .as_array()
            .unwrap()
            .contains(&"--leader-elect".into())
    );
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "WATCH_NAMESPACES" && e["value"] == "team-a,team-b")
    );
    assert!(!tuned.keys().any(|k| k.starts_with("Service ")));
    assert!(
        !tuned
            .keys()
            .any(|k| k.starts_with("ValidatingAdmissionPolicy"))
    );
    assert_eq!(
        tuned["RoleBinding ops/openbao-operator-leader-election"]["subjects"][0]["namespace"],
        "ops"
    );
}

#[tokio::test]
async fn a_helm_install_runs_a_ready_controller_pod_that_leads() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    let images = ImageMap::default().with_layout(
        "openbao-operator/controller",
        &tools::workspace_image("controller").unwrap(),
    );
    let _agent = NodeAgent::start(
        &plane,
        NodeAgentOptions {
            images,
            ..NodeAgentOptions::default()
        },
    )
    .await
    .unwrap();
    let flags = plane.operator_flags().await.unwrap();
    let extra_args = serde_json::to_string(&flags).unwrap();
    let kubeconfig = plane.kubeconfig_path.display().to_string();
    let chart = repo("charts/openbao-operator");
    let installed = run(
        &tools::helm().unwrap(),
        &[
            "install",
            "openbao-operator",
            chart.to_str().unwrap(),
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--set-json",
            &format!("extraArgs={extra_args}"),
        ],
    );
    assert!(installed.contains("STATUS: deployed"), "{installed}");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    poll_until(Duration::from_secs(180), "the controller Ready", || async {
        let deployment = deployments.get("openbao-operator-controller").await?;
        Ok(deployment
            .status
            .and_then(|s| s.available_replicas)
            .is_some_and(|n| n == 1))
    })
    .await
    .unwrap();
    let holder = plane
        .operator_leader(Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        holder.starts_with("openbao-operator-controller-"),
        "{holder}"
    );
}
