//! The NetworkPolicy of the OpenBao pods. The cluster port (Raft and request
//! forwarding) admits only the cluster's own pods. The API port depends on
//! the stage:
//! - **Until the cluster is initialized**, only the operator's pods (its
//!   namespace and the controller's pod labels) reach it. An uninitialized
//!   OpenBao answers `sys/init` to whoever asks first, and whoever does
//!   holds the root token and unseal material; in this window the operator
//!   is the only legitimate caller (a Development cluster is initialized by
//!   the controller; a self-init cluster keeps its listener closed until it
//!   has initialized itself, so nothing is lost for it).
//! - **Afterwards** from anywhere, because OpenBao's clients are unknown to
//!   the operator and the API is TLS with authentication (narrow it with an
//!   extra policy).
//!
//! The kubelet's probes come from the node, which NetworkPolicy
//! implementations admit, so a bootstrap pod still turns ready. Egress is
//! left open: the pods must reach DNS, the Kubernetes API, the issuer, a
//! Transit or KMS server and a plugin registry, whose addresses the operator
//! cannot know.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::{
    API_PORT, CLUSTER_PORT, Inputs, RenderError, from_json, metadata_json, name_and_namespace,
    owned_metadata, selector_labels,
};

/// Labels of the controller's pods: the selector of the Deployment in
/// `manifests/base/deployment.yaml` (a test keeps the two equal).
pub const OPERATOR_POD_LABELS: [(&str, &str); 2] = [
    ("app.kubernetes.io/name", "openbao-operator"),
    ("app.kubernetes.io/component", "controller"),
];

/// The label every namespace carries with its own name (set by the API server).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub fn network_policy(
    cluster: &OpenBaoCluster,
    inputs: &Inputs,
) -> Result<NetworkPolicy, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    let api_port = json!([{"protocol": "TCP", "port": API_PORT}]);
    let api_rule = if inputs.initialized {
        json!({"ports": api_port})
    } else {
        let operator_pods: BTreeMap<&str, &str> = OPERATOR_POD_LABELS.into_iter().collect();
        // One peer with both selectors: the operator's pods in the
        // operator's namespace (two peers would admit either).
        json!({
            "from": [{
                "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: inputs.operator_namespace}},
                "podSelector": {"matchLabels": operator_pods},
            }],
            "ports": api_port,
        })
    };
    from_json(
        "NetworkPolicy",
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata_json(&owned_metadata(cluster, names::network_policy(name))?)?,
            "spec": {
                "podSelector": {"matchLabels": selector_labels(name)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    api_rule,
                    {
                        // The cluster's OpenBao pods, not its Jobs' pods
                        // (backup, drill), which carry the cluster label too.
                        "from": [{"podSelector": {
                            "matchLabels": selector_labels(name),
                            "matchExpressions": [{"key": crate::stores::JOB_NAME_LABEL, "operator": "DoesNotExist"}],
                        }}],
                        "ports": [{"protocol": "TCP", "port": CLUSTER_PORT}],
                    },
                ],
            },
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::networking::v1::NetworkPolicyIngressRule;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn rules(inputs: &Inputs) -> Vec<NetworkPolicyIngressRule> {
        network_policy(&fixtures::development(), inputs)
            .unwrap()
            .spec
            .unwrap()
            .ingress
            .unwrap()
    }

    fn port(rule: &NetworkPolicyIngressRule) -> IntOrString {
        let ports = rule.ports.as_ref().unwrap();
        assert_eq!(ports.len(), 1);
        ports[0].port.clone().unwrap()
    }

    #[test]
    fn network_policy_golden() {
        let mut inputs = fixtures::inputs();
        inputs.initialized = false;
        let bootstrap = network_policy(&fixtures::development(), &inputs).unwrap();
        insta::assert_yaml_snapshot!("network_policy_bootstrap", bootstrap);
        inputs.initialized = true;
        let steady = network_policy(&fixtures::development(), &inputs).unwrap();
        insta::assert_yaml_snapshot!("network_policy", steady);
    }

    #[test]
    fn the_cluster_port_admits_only_the_clusters_pods() {
        for initialized in [false, true] {
            let mut inputs = fixtures::inputs();
            inputs.initialized = initialized;
            let all = rules(&inputs);
            let cluster_rule = &all[1];
            assert_eq!(port(cluster_rule), IntOrString::Int(CLUSTER_PORT.into()));
            let from = cluster_rule.from.as_ref().unwrap();
            assert_eq!(from.len(), 1);
            assert!(from[0].namespace_selector.is_none());
            let selector = from[0].pod_selector.as_ref().unwrap();
            assert_eq!(
                selector.match_labels.as_ref().unwrap(),
                &selector_labels("dev")
            );
        }
    }

    /// Before initialization the API port admits exactly one peer: the
    /// operator's pods, selected by namespace AND pod labels in the same
    /// peer; afterwards it admits everyone.
    #[test]
    fn until_initialized_only_the_operators_pods_reach_the_api() {
        let mut inputs = fixtures::inputs();
        inputs.operator_namespace = "ops".into();
        inputs.initialized = false;
        let bootstrap = rules(&inputs);
        assert_eq!(bootstrap.len(), 2);
        let api_rule = &bootstrap[0];
        assert_eq!(port(api_rule), IntOrString::Int(API_PORT.into()));
        let from = api_rule
            .from
            .as_ref()
            .expect("a bootstrap API rule names its peers");
        assert_eq!(from.len(), 1, "one peer, both selectors");
        let namespaces = from[0].namespace_selector.as_ref().unwrap();
        assert_eq!(
            namespaces.match_labels.as_ref().unwrap(),
            &BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), "ops".to_owned())])
        );
        assert!(namespaces.match_expressions.is_none());
        let pods = from[0].pod_selector.as_ref().unwrap();
        let expected: BTreeMap<String, String> = OPERATOR_POD_LABELS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pods.match_labels.as_ref().unwrap(), &expected);
        assert!(from[0].ip_block.is_none());

        inputs.initialized = true;
        let steady = rules(&inputs);
        assert_eq!(steady.len(), 2);
        assert_eq!(port(&steady[0]), IntOrString::Int(API_PORT.into()));
        assert!(steady[0].from.is_none(), "initialized: the API is open");
    }

    /// The selector names the pods the install manifests actually run.
    #[test]
    fn the_operator_labels_select_the_shipped_deployments_pods() {
        let deployment: Deployment =
            serde_yaml_ng::from_str(include_str!("../../../../manifests/base/deployment.yaml"))
                .unwrap();
        let spec = deployment.spec;
        let template = spec.template.metadata.unwrap().labels.unwrap();
        let selector = spec.selector.match_labels.unwrap();
        for (key, value) in OPERATOR_POD_LABELS {
            assert_eq!(template.get(key).map(String::as_str), Some(value), "{key}");
            assert_eq!(selector.get(key).map(String::as_str), Some(value), "{key}");
        }
    }
}
