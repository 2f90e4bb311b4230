//! The spec rules again, in code: the controller checks every object it reads,
//! because an object may have been stored before a rule existed or with the
//! CRD's validation bypassed. Each error names the field and the fix.
//!
//! Every rule here has a CEL twin in [`crate::cluster`]; the controller's
//! `crd_rules` test submits the same bad specs to a real API server and
//! expects both to name the same field.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::cluster::{
    AuditType, OpenBaoClusterSpec, Profile, SECRET_DATA_KEYS, TlsMode, UnsealType,
};

/// One violated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the offending field, for example `spec.replicas` or
    /// `spec.selfInit.requests[0].data`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Checks a spec; an empty list means valid.
pub fn validate_spec(spec: &OpenBaoClusterSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut fail = |field: String, message: String| errors.push(FieldError { field, message });

    if !is_semver(&spec.version) {
        fail(
            "spec.version".into(),
            format!(
                "{:?} is not a MAJOR.MINOR.PATCH version; set it to an OpenBao release such as \"2.7.2\"",
                spec.version
            ),
        );
    }
    if !(1..=9).contains(&spec.replicas) {
        fail(
            "spec.replicas".into(),
            format!(
                "{} is out of range; use 1 to 9 (an odd number in production)",
                spec.replicas
            ),
        );
    }
    if spec.profile == Profile::Hardened && !spec.self_init.enabled {
        fail(
            "spec.selfInit.enabled".into(),
            "must be true when spec.profile is Hardened; set spec.selfInit.enabled: true or use profile Development".into(),
        );
    }

    // TLS.
    let tls = &spec.tls;
    if tls.mode == TlsMode::External && tls.external_secret_name.as_deref().unwrap_or("").is_empty()
    {
        fail(
            "spec.tls.externalSecretName".into(),
            "is required when spec.tls.mode is External; name the Secret that holds tls.crt, tls.key and ca.crt".into(),
        );
    }
    if parse_duration(&tls.rotation_period).is_none() {
        fail(
            "spec.tls.rotationPeriod".into(),
            format!(
                "{:?} is not a duration; write it like \"720h\"",
                tls.rotation_period
            ),
        );
    }
    match (&tls.acme, tls.mode == TlsMode::Acme) {
        (None, true) => fail(
            "spec.tls.acme".into(),
            "is required when spec.tls.mode is ACME; set directoryURL, domains and email".into(),
        ),
        (Some(_), false) => fail(
            "spec.tls.acme".into(),
            "is only used when spec.tls.mode is ACME; remove it or set the mode to ACME".into(),
        ),
        (Some(acme), true) => {
            if !acme.directory_url.starts_with("https://") {
                fail(
                    "spec.tls.acme.directoryURL".into(),
                    "must be an https:// URL of the ACME directory".into(),
                );
            }
            if acme.domains.is_empty() {
                fail(
                    "spec.tls.acme.domains".into(),
                    "needs at least one domain to request a certificate for".into(),
                );
            }
            if !acme.email.contains('@') {
                fail(
                    "spec.tls.acme.email".into(),
                    "must be a contact e-mail address for the ACME account".into(),
                );
            }
        }
        (None, false) => {}
    }

    // Unseal.
    let unseal = &spec.unseal;
    let blocks = [
        (
            UnsealType::Transit,
            unseal.transit.is_some(),
            "transit",
            "address, keyName and tokenSecretRef",
        ),
        (
            UnsealType::Awskms,
            unseal.awskms.is_some(),
            "awskms",
            "region and kmsKeyId",
        ),
        (
            UnsealType::Gcpckms,
            unseal.gcpckms.is_some(),
            "gcpckms",
            "project, region, keyRing and cryptoKey",
        ),
        (
            UnsealType::Azurekeyvault,
            unseal.azurekeyvault.is_some(),
            "azurekeyvault",
            "tenantId, vaultName and keyName",
        ),
    ];
    for (type_, present, name, what) in blocks {
        let wanted = unseal.type_ == type_;
        if wanted && !present {
            fail(
                format!("spec.unseal.{name}"),
                format!("is required when spec.unseal.type is {name}; set {what}"),
            );
        } else if present && !wanted {
            fail(
                format!("spec.unseal.{name}"),
                format!(
                    "is only used when spec.unseal.type is {name}; remove it or set the type to {name}"
                ),
            );
        }
    }
    let has_secret = unseal.credentials_secret_ref.is_some();
    let has_identity = unseal.workload_identity.is_some();
    if unseal.type_.is_cloud_kms() {
        if has_secret == has_identity {
            fail(
                "spec.unseal.credentialsSecretRef".into(),
                "a cloud KMS seal needs exactly one of credentialsSecretRef or workloadIdentity"
                    .into(),
            );
        }
        if unseal.kms_plugin.is_none() && version_at_least(&spec.version, 2, 7) {
            fail(
                "spec.unseal.kmsPlugin".into(),
                "is required for cloud KMS seals from OpenBao 2.7 on (they are plugins now); set image, version, binaryName and sha256sum".into(),
            );
        }
    } else {
        if has_secret || has_identity {
            fail(
                "spec.unseal.credentialsSecretRef".into(),
                format!(
                    "credentialsSecretRef and workloadIdentity are only used by cloud KMS seals, not {}; remove them",
                    unseal.type_.seal_name()
                ),
            );
        }
        if unseal.kms_plugin.is_some() {
            fail(
                "spec.unseal.kmsPlugin".into(),
                format!(
                    "is only used by cloud KMS seals, not {}; remove it",
                    unseal.type_.seal_name()
                ),
            );
        }
    }

    // Self-init.
    let self_init = &spec.self_init;
    if !self_init.enabled && !self_init.requests.is_empty() {
        fail(
            "spec.selfInit.requests".into(),
            "are only applied when spec.selfInit.enabled is true; enable self-init or remove the requests".into(),
        );
    }
    let mut names = BTreeSet::new();
    for (i, request) in self_init.requests.iter().enumerate() {
        let at = format!("spec.selfInit.requests[{i}]");
        if !is_dns_label(&request.name) {
            fail(
                format!("{at}.name"),
                format!(
                    "{:?} must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)",
                    request.name
                ),
            );
        }
        if !names.insert(request.name.as_str()) {
            fail(
                format!("{at}.name"),
                format!(
                    "{:?} is used by another request; names must be unique",
                    request.name
                ),
            );
        }
        if request.path.is_empty() || request.path.starts_with('/') || request.path.len() > 256 {
            fail(
                format!("{at}.path"),
                "must be an API path without /v1/, for example sys/auth/userpass".into(),
            );
        }
        if let Some(data) = &request.data {
            for key in data.keys() {
                let inline_string = !data[key].is_object();
                if SECRET_DATA_KEYS.contains(&key.as_str()) && inline_string {
                    fail(
                        format!("{at}.data"),
                        format!(
                            "{key:?} holds a secret inline, which would be stored in the OpenBaoCluster; put it in a Secret and reference it with dataFrom"
                        ),
                    );
                }
            }
        }
        let mut fields = BTreeSet::new();
        for (j, from) in request.data_from.iter().enumerate() {
            if request
                .data
                .as_ref()
                .is_some_and(|d| d.contains_key(&from.field))
            {
                fail(
                    format!("{at}.dataFrom[{j}].field"),
                    format!(
                        "{:?} is also set in data; a field comes from data or from a Secret, not both",
                        from.field
                    ),
                );
            }
            if !fields.insert(from.field.as_str()) {
                fail(
                    format!("{at}.dataFrom[{j}].field"),
                    format!("{:?} appears twice in dataFrom", from.field),
                );
            }
        }
    }

    // Autopilot.
    let autopilot = &spec.configuration.raft.autopilot;
    let base = "spec.configuration.raft.autopilot";
    match parse_duration(&autopilot.dead_server_last_contact_threshold) {
        None => fail(
            format!("{base}.deadServerLastContactThreshold"),
            format!(
                "{:?} is not a duration; write it like \"5m\"",
                autopilot.dead_server_last_contact_threshold
            ),
        ),
        Some(d) if d < Duration::from_secs(60) => fail(
            format!("{base}.deadServerLastContactThreshold"),
            "must be at least 1m (OpenBao rejects less)".into(),
        ),
        Some(_) => {}
    }
    if autopilot.cleanup_dead_servers && autopilot.min_quorum.is_some_and(|q| q < 3) {
        fail(
            format!("{base}.minQuorum"),
            "must be at least 3 when cleanupDeadServers is true (OpenBao rejects less); raise it or disable cleanupDeadServers".into(),
        );
    }
    for (field, value) in [
        (
            "serverStabilizationTime",
            &autopilot.server_stabilization_time,
        ),
        ("lastContactThreshold", &autopilot.last_contact_threshold),
    ] {
        if parse_duration(value).is_none() {
            fail(
                format!("{base}.{field}"),
                format!("{value:?} is not a duration; write it like \"10s\""),
            );
        }
    }

    // Audit devices.
    let mut paths = BTreeSet::new();
    for (i, device) in spec.configuration.audit.iter().enumerate() {
        let at = format!("spec.configuration.audit[{i}]");
        if !paths.insert(device.path.as_str()) {
            fail(
                format!("{at}.path"),
                format!(
                    "{:?} is used by another audit device; paths must be unique",
                    device.path
                ),
            );
        }
        let mismatched = [
            ("file", device.file.is_some(), AuditType::File),
            ("socket", device.socket.is_some(), AuditType::Socket),
            ("syslog", device.syslog.is_some(), AuditType::Syslog),
        ];
        for (name, present, type_) in mismatched {
            if present && device.type_ != type_ {
                fail(
                    format!("{at}.{name}"),
                    format!("is only valid for type {name}; remove it or set the type to {name}"),
                );
            }
        }
        if device.type_ == AuditType::Socket && device.socket.is_none() {
            fail(
                format!("{at}.socket"),
                "is required for type socket; set its address".into(),
            );
        }
        if spec.profile == Profile::Hardened && device.log_raw == Some(true) {
            fail(
                format!("{at}.logRaw"),
                "must be false when spec.profile is Hardened: raw audit logs contain tokens and secrets in plain text".into(),
            );
        }
    }

    // Exposure.
    if let Some(ingress) = &spec.ingress
        && ingress.enabled
        && ingress.host.is_empty()
    {
        fail(
            "spec.ingress.host".into(),
            "is required when spec.ingress.enabled is true".into(),
        );
    }
    errors
}

/// Checks a change to a stored spec (the CRD's transition rules).
pub fn validate_update(old: &OpenBaoClusterSpec, new: &OpenBaoClusterSpec) -> Vec<FieldError> {
    let mut errors = validate_spec(new);
    if old.self_init.enabled != new.self_init.enabled {
        errors.push(FieldError {
            field: "spec.selfInit.enabled".into(),
            message: "cannot change after creation: initialization happens once; create a new OpenBaoCluster instead".into(),
        });
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

/// True when `version` (MAJOR.MINOR.PATCH) is at least `major.minor`; false
/// when it does not parse (the version rule reports that).
pub fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(ma)), Some(Ok(mi))) => (ma, mi) >= (major, minor),
        _ => false,
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Parses a Go duration made of `<number><unit>` groups (`1h30m`, `1.5s`),
/// the form OpenBao and CEL's `duration()` accept. `None` when malformed.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        if rest[..number_len].starts_with('.') || rest[..number_len].ends_with('.') {
            return None;
        }
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{
        AcmeSpec, AuditDevice, AwsKmsUnseal, IngressSpec, SecretField, SecretKeyRef, SecretSource,
        SelfInitOperation, SelfInitRequest, TransitUnseal, WorkloadIdentity,
    };
    use serde_json::json;

    fn fields(spec: &OpenBaoClusterSpec) -> Vec<String> {
        validate_spec(spec).into_iter().map(|e| e.field).collect()
    }

    fn request(name: &str, data: serde_json::Value) -> SelfInitRequest {
        SelfInitRequest {
            name: name.into(),
            operation: SelfInitOperation::Update,
            path: "auth/userpass/users/admin".into(),
            data: data.as_object().cloned(),
            data_from: Vec::new(),
            allow_failure: false,
        }
    }

    fn audit(type_: AuditType, path: &str) -> AuditDevice {
        AuditDevice {
            type_,
            path: path.into(),
            description: None,
            format: None,
            log_raw: None,
            hmac_accessor: None,
            prefix: None,
            file: None,
            socket: None,
            syslog: None,
        }
    }

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
        assert_eq!(
            fields(&spec),
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
    fn acme_settings_go_with_acme_mode_only() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.tls.mode = TlsMode::Acme;
        assert_eq!(fields(&spec), ["spec.tls.acme"]);
        spec.tls.acme = Some(AcmeSpec {
            directory_url: "http://acme.example/dir".into(),
            domains: vec![],
            email: "ops".into(),
        });
        assert_eq!(
            fields(&spec),
            [
                "spec.tls.acme.directoryURL",
                "spec.tls.acme.domains",
                "spec.tls.acme.email"
            ]
        );
        spec.tls.mode = TlsMode::OperatorManaged;
        let errors = validate_spec(&spec);
        assert_eq!(errors[0].field, "spec.tls.acme");
        assert!(
            errors[0].message.contains("only used when"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn seal_blocks_must_match_the_seal_type() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.unseal.transit = Some(TransitUnseal {
            address: "https://transit:8200".into(),
            key_name: "k".into(),
            mount_path: "transit/".into(),
            token_secret_ref: "t".into(),
            ca_secret_ref: None,
            tls_server_name: None,
        });
        assert_eq!(fields(&spec), ["spec.unseal.transit"]);
        spec.unseal.type_ = UnsealType::Transit;
        assert!(fields(&spec).is_empty());
    }

    #[test]
    fn cloud_kms_needs_credentials_and_on_2_7_a_plugin() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.unseal.type_ = UnsealType::Awskms;
        spec.unseal.awskms = Some(AwsKmsUnseal {
            region: "eu-west-1".into(),
            kms_key_id: "alias/openbao".into(),
            endpoint: None,
        });
        assert_eq!(
            fields(&spec),
            ["spec.unseal.credentialsSecretRef", "spec.unseal.kmsPlugin"]
        );
        spec.unseal.workload_identity = Some(WorkloadIdentity::default());
        spec.version = "2.6.2".into();
        assert!(fields(&spec).is_empty(), "2.6 has awskms built in");
        spec.unseal.credentials_secret_ref = Some("aws".into());
        assert_eq!(fields(&spec), ["spec.unseal.credentialsSecretRef"]);
    }

    #[test]
    fn static_seal_takes_no_cloud_credentials() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.unseal.credentials_secret_ref = Some("aws".into());
        let errors = validate_spec(&spec);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("not static"), "{}", errors[0]);
    }

    #[test]
    fn self_init_requests_need_self_init_and_unique_names() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.self_init.requests = vec![
            request("userpass", json!({"type": "userpass"})),
            request("userpass", json!({})),
        ];
        assert_eq!(
            fields(&spec),
            ["spec.selfInit.requests", "spec.selfInit.requests[1].name"]
        );
        spec.self_init.enabled = true;
        spec.self_init.requests[1].name = "Admin_User".into();
        assert_eq!(fields(&spec), ["spec.selfInit.requests[1].name"]);
    }

    #[test]
    fn secrets_may_not_be_inline_but_may_be_references() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.self_init.enabled = true;
        spec.self_init.requests = vec![request(
            "admin",
            json!({"password": "hunter2", "token_policies": ["admin"], "token_ttl": "1h"}),
        )];
        let errors = validate_spec(&spec);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "spec.selfInit.requests[0].data");
        assert!(errors[0].message.contains("dataFrom"), "{}", errors[0]);
        // An eval_source object (for example another request's response) is fine.
        spec.self_init.requests[0].data =
            json!({"password": {"eval_type": "string", "eval_source": "request"}})
                .as_object()
                .cloned();
        assert!(fields(&spec).is_empty());
    }

    #[test]
    fn a_field_comes_from_data_or_from_a_secret() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.self_init.enabled = true;
        let mut admin = request("admin", json!({"password": {"eval_source": "env"}}));
        let from = SecretField {
            field: "password".into(),
            secret_key_ref: SecretKeyRef {
                name: "admin".into(),
                key: "password".into(),
            },
            source: SecretSource::Env,
        };
        admin.data_from = vec![from.clone(), from];
        spec.self_init.requests = vec![admin];
        assert_eq!(
            fields(&spec),
            [
                "spec.selfInit.requests[0].dataFrom[0].field",
                "spec.selfInit.requests[0].dataFrom[1].field",
                "spec.selfInit.requests[0].dataFrom[1].field"
            ]
        );
    }

    #[test]
    fn autopilot_limits_are_openbaos() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        let autopilot = &mut spec.configuration.raft.autopilot;
        autopilot.dead_server_last_contact_threshold = "30s".into();
        autopilot.min_quorum = Some(2);
        autopilot.server_stabilization_time = "10 s".into();
        assert_eq!(
            fields(&spec),
            [
                "spec.configuration.raft.autopilot.deadServerLastContactThreshold",
                "spec.configuration.raft.autopilot.minQuorum",
                "spec.configuration.raft.autopilot.serverStabilizationTime"
            ]
        );
        let autopilot = &mut spec.configuration.raft.autopilot;
        autopilot.dead_server_last_contact_threshold = "1m".into();
        autopilot.cleanup_dead_servers = false;
        autopilot.server_stabilization_time = "1.5s".into();
        assert!(
            fields(&spec).is_empty(),
            "min_quorum only matters with cleanup"
        );
    }

    #[test]
    fn audit_devices_are_unique_typed_and_not_raw_in_hardened() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.profile = Profile::Hardened;
        spec.self_init.enabled = true;
        let mut raw = audit(AuditType::File, "file");
        raw.log_raw = Some(true);
        raw.syslog = Some(Default::default());
        spec.configuration.audit = vec![raw, audit(AuditType::Socket, "file")];
        assert_eq!(
            fields(&spec),
            [
                "spec.configuration.audit[0].syslog",
                "spec.configuration.audit[0].logRaw",
                "spec.configuration.audit[1].path",
                "spec.configuration.audit[1].socket"
            ]
        );
    }

    #[test]
    fn an_enabled_ingress_needs_a_host() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.ingress = Some(IngressSpec {
            enabled: true,
            class_name: None,
            host: String::new(),
            path: "/".into(),
            tls_secret_name: None,
            annotations: Default::default(),
        });
        assert_eq!(fields(&spec), ["spec.ingress.host"]);
    }

    #[test]
    fn self_init_cannot_be_switched_after_creation() {
        let old = OpenBaoClusterSpec::with_version("2.7.2");
        let mut new = old.clone();
        new.self_init.enabled = true;
        let errors = validate_update(&old, &new);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.selfInit.enabled");
        assert!(validate_update(&old, &old).is_empty());
    }

    #[test]
    fn version_must_be_three_numbers() {
        for bad in ["", "2", "2.7.x", "v2.7.2", "2..2", "2.7.2.1"] {
            assert!(!is_semver(bad), "{bad} accepted");
        }
        assert!(is_semver("10.0.12"));
        assert!(version_at_least("2.7.0", 2, 7) && version_at_least("3.0.0", 2, 7));
        assert!(!version_at_least("2.6.9", 2, 7) && !version_at_least("x", 2, 7));
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "5", "m", "5 m", "5d", "-1s", ".5s", "5.s"] {
            assert_eq!(parse_duration(bad), None, "{bad} accepted");
        }
    }
}
