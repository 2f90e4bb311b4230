//! Every rendered Kubernetes object is accepted by a real kube-apiserver
//! (schema, defaults and validation), for the development sample initialized
//! (open API port, PodDisruptionBudget) and the full sample in its bootstrap
//! stage (API port for the operator's pods only, self-init ConfigMap).
//! The Gateway API CRDs are not installed in the test API server, so the
//! routes (`render::exposure::route`) are only golden-tested.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use controller::render::{self, Inputs};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::cluster::IngressSpec;
use serde_json::{Value, json};
use std::time::Duration;
use test_support::ControlPlane;
use test_support::wait::poll_until;

fn sample(file: &str) -> OpenBaoCluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/samples")
        .join(file);
    let mut cluster: OpenBaoCluster =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cluster.metadata.namespace = Some("team-a".into());
    cluster.metadata.uid = Some("00000000-0000-4000-8000-000000000001".into());
    cluster
}

fn objects(cluster: &OpenBaoCluster, inputs: &Inputs) -> Vec<Value> {
    let v = |o: &dyn Erased| o.value();
    let mut all = vec![
        v(&render::config::config_map(cluster, inputs).unwrap()),
        v(&render::statefulset::statefulset(cluster, inputs).unwrap()),
        v(&render::services::headless(cluster).unwrap()),
        v(&render::services::active(cluster).unwrap()),
        v(&render::rbac::service_account(cluster).unwrap()),
        v(&render::rbac::role_binding(cluster).unwrap()),
        v(&render::network_policy::network_policy(cluster, inputs).unwrap()),
        v(&render::secrets::unseal_secret(cluster, &[7; 32], "x-1").unwrap()),
        v(&render::secrets::tls_server_secret(cluster, "CERT", "KEY", "CA").unwrap()),
    ];
    if let Some(map) = render::self_init::config_map(cluster, inputs).unwrap() {
        all.push(v(&map));
    }
    if let Some(pdb) = render::pdb::pdb(cluster, inputs).unwrap() {
        all.push(v(&pdb));
    }
    if let Some(ingress) = render::exposure::ingress(cluster).unwrap() {
        all.push(v(&ingress));
    }
    all
}

const OPERATOR: &str = "system:serviceaccount:openbao-operator-system:openbao-operator";

/// Appends `item` to the JSON array `list`.
fn push(list: &mut Value, item: Value) {
    list.as_array_mut().unwrap().push(item);
}

/// Serializes any rendered object with its apiVersion and kind.
trait Erased {
    fn value(&self) -> Value;
}

impl<T: serde::Serialize + k8s_openapi::Resource> Erased for T {
    fn value(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap();
        value["apiVersion"] = json!(T::API_VERSION);
        value["kind"] = json!(T::KIND);
        value
    }
}

#[tokio::test]
async fn the_api_server_accepts_every_rendered_object() {
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut inputs = Inputs::in_pod(
        "openbao-system",
        "https://kubernetes.default.svc.cluster.local",
    );
    inputs.static_key_id = "x-1".into();
    // Created as the operator, under the admission policies: the lock on
    // managed objects and the guard on the operator's StatefulSet writes
    // let through everything the renderer produces.
    plane.install_admission_policies().await.unwrap();
    let client = plane
        .client_as(OPERATOR, &["system:serviceaccounts"])
        .await
        .unwrap();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "StatefulSet"));
    let sets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "team-a", &resource);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    // In force once a StatefulSet with a sidecar is refused.
    let mut probe = serde_json::to_value(
        render::statefulset::statefulset(&sample("openbaocluster-development.yaml"), &inputs)
            .unwrap(),
    )
    .unwrap();
    probe["apiVersion"] = json!("apps/v1");
    probe["kind"] = json!("StatefulSet");
    push(
        &mut probe["spec"]["template"]["spec"]["containers"],
        json!({"name": "sidecar", "image": "evil:latest"}),
    );
    let probe: DynamicObject = serde_json::from_value(probe).unwrap();
    poll_until(
        Duration::from_secs(30),
        "the write guard in force",
        || async { Ok(sets.create(&dry_run, &probe).await.is_err()) },
    )
    .await
    .unwrap();
    let mut rendered_set = None;
    let mut created = 0;
    for (file, initialized) in [
        ("openbaocluster-development.yaml", true),
        ("openbaocluster-full.yaml", false),
    ] {
        inputs.initialized = initialized;
        let mut cluster = sample(file);
        if cluster.spec.ingress.is_none() {
            // The development sample has no Ingress: give it one with TLS.
            cluster.spec.ingress = Some(IngressSpec {
                enabled: true,
                class_name: Some("nginx".into()),
                host: "bao.example.com".into(),
                path: "/".into(),
                tls_secret_name: Some("bao-example-com-tls".into()),
                annotations: [(
                    "nginx.ingress.kubernetes.io/backend-protocol".to_owned(),
                    "HTTPS".to_owned(),
                )]
                .into(),
            });
        }
        for object in objects(&cluster, &inputs) {
            if object["kind"] == "StatefulSet" {
                rendered_set = Some(object.clone());
            }
            let object: DynamicObject = serde_json::from_value(object).unwrap();
            let types = object.types.clone().unwrap();
            let (group, version) = types
                .api_version
                .split_once('/')
                .unwrap_or(("", &types.api_version));
            let resource =
                ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &types.kind));
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "team-a", &resource);
            // Server-side validation without persisting: both samples share names.
            let params = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            api.create(&params, &object).await.unwrap_or_else(|e| {
                panic!(
                    "{file}: {} {:?} rejected: {e}",
                    types.kind, object.metadata.name
                )
            });
            created += 1;
        }
    }

    // What the renderer never produces is refused, even from the operator.
    let set = rendered_set.unwrap();
    type Injection = fn(&mut Value);
    let injected: [(&str, Injection, &str); 6] = [
        (
            "a sidecar",
            |pod| {
                push(
                    &mut pod["containers"],
                    json!({"name": "sidecar", "image": "evil:latest"}),
                )
            },
            "exactly one container",
        ),
        (
            "an init container",
            |pod| pod["initContainers"] = json!([{"name": "init", "image": "evil:latest"}]),
            "exactly one container",
        ),
        (
            "a hostPath volume",
            |pod| {
                push(
                    &mut pod["volumes"],
                    json!({"name": "host", "hostPath": {"path": "/"}}),
                )
            },
            "spec.template.spec.volumes",
        ),
        (
            "another command",
            |pod| pod["containers"][0]["command"] = json!(["sh", "-c", "id"]),
            "containers[0].command",
        ),
        (
            "another config file",
            |pod| {
                push(
                    &mut pod["containers"][0]["args"],
                    json!("-config=/etc/evil.hcl"),
                )
            },
            "containers[0].command",
        ),
        (
            "the host network",
            |pod| pod["hostNetwork"] = json!(true),
            "no host namespaces",
        ),
    ];
    for (what, inject, named) in injected {
        let mut changed = set.clone();
        inject(&mut changed["spec"]["template"]["spec"]);
        let object: DynamicObject = serde_json::from_value(changed).unwrap();
        let error = sets
            .create(&dry_run, &object)
            .await
            .expect_err(&format!("the operator wrote a StatefulSet with {what}"))
            .to_string();
        assert!(error.contains(named), "{what}: {error}");
        println!("{what}: refused: {error}");
    }
    assert!(
        created >= 22,
        "expected every object of both samples, got {created}"
    );
}
