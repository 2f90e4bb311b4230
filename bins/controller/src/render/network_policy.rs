//! The NetworkPolicy of the OpenBao pods: the cluster port (Raft and
//! request forwarding) only from the cluster's own pods; the API port from
//! anywhere, because OpenBao's clients are unknown to the operator and the
//! API is TLS with authentication (narrow it with an extra policy). Egress is
//! left open: the pods must reach DNS, the Kubernetes API, the issuer, a
//! Transit or KMS server and a plugin registry, whose addresses the
//! operator cannot know.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::{
    API_PORT, CLUSTER_PORT, RenderError, from_json, metadata_json, name_and_namespace,
    owned_metadata, selector_labels,
};

pub fn network_policy(cluster: &OpenBaoCluster) -> Result<NetworkPolicy, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
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
                    {"ports": [{"protocol": "TCP", "port": API_PORT}]},
                    {
                        "from": [{"podSelector": {"matchLabels": selector_labels(name)}}],
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

    #[test]
    fn the_cluster_port_admits_only_the_clusters_pods() {
        let policy = network_policy(&fixtures::development()).unwrap();
        insta::assert_yaml_snapshot!("network_policy", policy);
        let rules = policy.spec.unwrap().ingress.unwrap();
        let cluster_rule = &rules[1];
        let from = cluster_rule.from.as_ref().unwrap();
        let selector = from[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(selector["openbao.org/cluster"], "dev");
    }
}
