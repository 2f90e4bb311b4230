//! The startup check of the admission guardrails (`manifests/admission`):
//! each policy of [`names::ADMISSION_POLICIES`] exists with
//! `failurePolicy: Fail`, and its binding of the same name exists and
//! denies. What is missing becomes a `ProductionReady` gap of every cluster
//! (`AdmissionPoliciesMissing`): the operator works without them, but the
//! objects it manages are then open to edits it would not make.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::Api;
use lifecycle_types::names;

/// What is wrong with one policy and its binding, as read.
pub fn problems(
    name: &str,
    policy: Option<&ValidatingAdmissionPolicy>,
    binding: Option<&ValidatingAdmissionPolicyBinding>,
) -> Vec<String> {
    let mut found = Vec::new();
    match policy.and_then(|p| p.spec.as_ref()) {
        None => found.push(format!("policy {name} is not installed")),
        Some(spec) if spec.failure_policy.as_deref().unwrap_or("Fail") != "Fail" => found.push(
            format!("policy {name} has failurePolicy Ignore (it must be Fail)"),
        ),
        Some(_) => {}
    }
    match binding.map(|b| &b.spec) {
        None => found.push(format!("binding {name} is not installed")),
        Some(spec) => {
            if spec.policy_name != name {
                found.push(format!("binding {name} does not bind policy {name}"));
            }
            let actions = &spec.validation_actions;
            if !actions.iter().any(|a| a == "Deny") {
                found.push(format!(
                    "binding {name} does not deny (validationActions {actions:?})"
                ));
            }
        }
    }
    found
}

/// The gap to report, or `None` when every guardrail is in place.
pub fn gap(found: &[String]) -> Option<String> {
    (!found.is_empty()).then(|| {
        format!(
            "the admission guardrails are not enforced ({}); install them with kubectl apply --server-side -k manifests/admission",
            found.join("; ")
        )
    })
}

/// Reads every policy and binding by name.
pub async fn check(client: &kube::Client) -> Option<String> {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let mut found = Vec::new();
    for name in names::ADMISSION_POLICIES {
        let (policy, binding) = match (policies.get_opt(name).await, bindings.get_opt(name).await) {
            (Ok(policy), Ok(binding)) => (policy, binding),
            (Err(error), _) | (_, Err(error)) => {
                found.push(format!(
                    "cannot read policy or binding {name} ({error}); grant get on validatingadmissionpolicies and validatingadmissionpolicybindings by name (manifests/base/cluster-role.yaml)"
                ));
                continue;
            }
        };
        found.extend(problems(name, policy.as_ref(), binding.as_ref()));
    }
    gap(&found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(failure: Option<&str>) -> ValidatingAdmissionPolicy {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"failurePolicy": failure},
        }))
        .unwrap()
    }

    fn binding(policy: &str, actions: &[&str]) -> ValidatingAdmissionPolicyBinding {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"policyName": policy, "validationActions": actions},
        }))
        .unwrap()
    }

    #[test]
    fn a_policy_counts_only_when_it_fails_closed_and_its_binding_denies() {
        assert!(
            problems(
                "p",
                Some(&policy(Some("Fail"))),
                Some(&binding("p", &["Deny"]))
            )
            .is_empty()
        );
        assert!(
            problems(
                "p",
                Some(&policy(None)),
                Some(&binding("p", &["Deny", "Audit"]))
            )
            .is_empty()
        );
        let each = [
            problems("p", None, Some(&binding("p", &["Deny"]))),
            problems(
                "p",
                Some(&policy(Some("Ignore"))),
                Some(&binding("p", &["Deny"])),
            ),
            problems("p", Some(&policy(None)), None),
            problems(
                "p",
                Some(&policy(None)),
                Some(&binding("p", &["Warn", "Audit"])),
            ),
            problems("p", Some(&policy(None)), Some(&binding("other", &["Deny"]))),
        ];
        for found in &each {
            assert_eq!(found.len(), 1, "{found:?}");
        }
        let message = gap(&each[1]).unwrap();
        assert!(
            message.contains("failurePolicy Ignore") && message.contains("manifests/admission"),
            "{message}"
        );
        assert_eq!(gap(&[]), None);
    }
}
