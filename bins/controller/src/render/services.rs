//! The headless Service (per-pod DNS for Raft and auto-join) and the client
//! Service (the active node only).

use k8s_openapi::api::core::v1::Service;
use lifecycle_types::labels::service_registration;
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::{
    API_PORT, CLUSTER_PORT, RenderError, from_json, metadata_json, name_and_namespace,
    owned_metadata, selector_labels,
};

/// The governing headless Service. It publishes not-ready pods so that each
/// pod's DNS name (its `api_addr`, `cluster_addr` and certificate name)
/// resolves before it is initialized, unsealed and ready.
pub fn headless(cluster: &OpenBaoCluster) -> Result<Service, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    from_json(
        "Service",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata_json(&owned_metadata(cluster, names::headless_service(name))?)?,
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": true,
                "selector": selector_labels(name),
                "ports": [
                    {"name": "api", "port": API_PORT, "targetPort": "api", "protocol": "TCP"},
                    {"name": "cluster", "port": CLUSTER_PORT, "targetPort": "cluster", "protocol": "TCP"},
                ],
            },
        }),
    )
}

/// The client Service: selects the pod OpenBao's service registration
/// labels `openbao-active=true`, so clients always reach the leader and
/// never a standby, a sealed or an uninitialized pod.
pub fn active(cluster: &OpenBaoCluster) -> Result<Service, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    let service = &cluster.spec.service;
    let mut metadata = owned_metadata(cluster, names::active_service(name))?;
    if !service.annotations.is_empty() {
        metadata.annotations = Some(service.annotations.clone());
    }
    let mut selector = selector_labels(name);
    selector.insert(service_registration::ACTIVE.to_owned(), "true".to_owned());
    let mut spec = json!({
        "type": service.type_.as_str(),
        "selector": selector,
        "ports": [{"name": "api", "port": API_PORT, "targetPort": "api", "protocol": "TCP"}],
    });
    if !service.load_balancer_source_ranges.is_empty() {
        spec["loadBalancerSourceRanges"] = json!(service.load_balancer_source_ranges);
    }
    from_json(
        "Service",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata_json(&metadata)?,
            "spec": spec,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn services_golden() {
        let cluster = fixtures::full();
        insta::assert_yaml_snapshot!("service_headless", headless(&cluster).unwrap());
        insta::assert_yaml_snapshot!("service_active", active(&cluster).unwrap());
    }

    #[test]
    fn the_client_service_selects_the_active_node_only() {
        let service = active(&fixtures::development()).unwrap();
        let selector = service.spec.unwrap().selector.unwrap();
        assert_eq!(selector["openbao-active"], "true");
        assert_eq!(selector["openbao.org/cluster"], "dev");
        let headless = headless(&fixtures::development()).unwrap().spec.unwrap();
        assert_eq!(headless.publish_not_ready_addresses, Some(true));
        assert!(!headless.selector.unwrap().contains_key("openbao-active"));
    }
}
