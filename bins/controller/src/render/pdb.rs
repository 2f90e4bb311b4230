//! The PodDisruptionBudget: voluntary evictions (node drains) take at most
//! one OpenBao pod at a time, which keeps quorum for three voters or more.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::statefulset::replicas;
use super::{
    Inputs, RenderError, from_json, metadata_json, name_and_namespace, owned_metadata,
    selector_labels,
};

/// `None` below three running replicas: there is no eviction one or two
/// voters survive without losing quorum, and a budget that allows none
/// would block node drains forever.
pub fn pdb(
    cluster: &OpenBaoCluster,
    inputs: &Inputs,
) -> Result<Option<PodDisruptionBudget>, RenderError> {
    if replicas(cluster, inputs) < 3 {
        return Ok(None);
    }
    let (name, _) = name_and_namespace(cluster)?;
    from_json(
        "PodDisruptionBudget",
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata_json(&owned_metadata(cluster, names::pod_disruption_budget(name))?)?,
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": selector_labels(name)},
                // A pod that is not ready (sealed, say) may be evicted even
                // when the budget is spent: it is not holding quorum.
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        }),
    )
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn a_budget_only_once_three_voters_run() {
        let cluster = fixtures::development();
        let mut inputs = fixtures::inputs();
        assert!(
            pdb(&cluster, &inputs).unwrap().is_none(),
            "bootstrap runs one pod"
        );
        inputs.initialized = true;
        let budget = pdb(&cluster, &inputs).unwrap().unwrap();
        insta::assert_yaml_snapshot!("pdb", budget);
        let mut small = cluster.clone();
        small.spec.replicas = 2;
        assert!(pdb(&small, &inputs).unwrap().is_none());
    }
}
