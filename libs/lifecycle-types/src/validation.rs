//! The spec rules again, in code: the controller checks every object it reads,
//! because an object may have been stored before a rule existed or with the
//! CRD's validation bypassed. Each error names the field and the fix.

use std::fmt;

use crate::cluster::{OpenBaoClusterSpec, Profile, TlsMode, UnsealType};

/// One violated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the offending field, for example `spec.replicas`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Checks a spec; an empty list means valid.
pub fn validate_spec(spec: &OpenBaoClusterSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut fail = |field, message: String| errors.push(FieldError { field, message });

    if !is_semver(&spec.version) {
        fail(
            "spec.version",
            format!(
                "{:?} is not a MAJOR.MINOR.PATCH version; set it to an OpenBao release such as \"2.7.2\"",
                spec.version
            ),
        );
    }
    if !(1..=9).contains(&spec.replicas) {
        fail(
            "spec.replicas",
            format!(
                "{} is out of range; use 1 to 9 (an odd number in production)",
                spec.replicas
            ),
        );
    }
    if spec.profile == Profile::Hardened && !spec.self_init.enabled {
        fail(
            "spec.selfInit.enabled",
            "must be true when spec.profile is Hardened; set spec.selfInit.enabled: true or use profile Development".into(),
        );
    }
    if spec.tls.mode == TlsMode::External
        && spec
            .tls
            .external_secret_name
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        fail(
            "spec.tls.externalSecretName",
            "is required when spec.tls.mode is External; name the Secret that holds tls.crt, tls.key and ca.crt".into(),
        );
    }
    if spec.unseal.type_ == UnsealType::Transit && spec.unseal.transit.is_none() {
        fail(
            "spec.unseal.transit",
            "is required when spec.unseal.type is transit; set address, keyName and tokenSecretRef"
                .into(),
        );
    }
    errors
}

fn is_semver(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(validate_spec(&OpenBaoClusterSpec::with_version("2.7.2")).is_empty());
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7");
        spec.replicas = 0;
        spec.profile = Profile::Hardened;
        spec.tls.mode = TlsMode::External;
        spec.unseal.type_ = UnsealType::Transit;
        let fields: Vec<_> = validate_spec(&spec).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "spec.version",
                "spec.replicas",
                "spec.selfInit.enabled",
                "spec.tls.externalSecretName",
                "spec.unseal.transit"
            ]
        );
    }

    #[test]
    fn version_must_be_three_numbers() {
        for bad in ["", "2", "2.7.x", "v2.7.2", "2..2", "2.7.2.1"] {
            assert!(!is_semver(bad), "{bad} accepted");
        }
        assert!(is_semver("10.0.12"));
    }
}
