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
    AuditType, MAX_ROTATION_PERIOD_SECONDS, MIN_ROTATION_PERIOD_SECONDS, OpenBaoClusterSpec,
    Profile, SECRET_DATA_KEYS, SecretField, SecretSource, SelfInitRequest, TlsMode, UnsealType,
    self_init_env_var,
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
    if let Some(image) = &spec.image
        && !is_image_reference(image)
    {
        fail(
            "spec.image".into(),
            format!(
                "{image:?} is not a container image reference; write it like registry.example/openbao/openbao:2.7.2 (optionally @sha256:<digest>), or remove it to use the official image"
            ),
        );
    }
    match parse_quantity(&spec.storage.size.0) {
        Some(q) if q.positive => {}
        Some(_) => fail(
            "spec.storage.size".into(),
            format!(
                "{:?} is not positive; give each server's volume a size such as \"10Gi\"",
                spec.storage.size.0
            ),
        ),
        None => fail(
            "spec.storage.size".into(),
            format!(
                "{:?} is not a Kubernetes quantity; write it like \"10Gi\" or \"500Mi\"",
                spec.storage.size.0
            ),
        ),
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
    match parse_duration(&tls.rotation_period) {
        None => fail(
            "spec.tls.rotationPeriod".into(),
            format!(
                "{:?} is not a duration; write it like \"720h\"",
                tls.rotation_period
            ),
        ),
        Some(period)
            if period < Duration::from_secs(MIN_ROTATION_PERIOD_SECONDS)
                || period > Duration::from_secs(MAX_ROTATION_PERIOD_SECONDS) =>
        {
            fail(
                "spec.tls.rotationPeriod".into(),
                format!(
                    "{:?} is out of range; use a duration from 1h to 8760h (one year), such as \"720h\"",
                    tls.rotation_period
                ),
            )
        }
        Some(_) => {}
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
    if spec.profile == Profile::Hardened
        && let Some(address) = plain_transit_address(spec)
    {
        fail(
            "spec.unseal.transit.address".into(),
            format!(
                "{address:?} is not https:// but spec.profile is Hardened: the Transit token and the seal key's wrapping would cross the network in plain text; serve Transit over TLS or use profile Development"
            ),
        );
    }
    if let Some(plugin) = &unseal.kms_plugin
        && !is_file_name(&plugin.binary_name)
    {
        fail(
            "spec.unseal.kmsPlugin.binaryName".into(),
            format!(
                "{:?} is not a plain file name; give the plugin binary's name inside the image without a folder, e.g. openbao-plugin-kms-aws",
                plugin.binary_name
            ),
        );
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
        } else if request.path.split('/').any(|s| s == "." || s == "..") {
            fail(
                format!("{at}.path"),
                format!(
                    "{:?} has a . or .. segment, which would reach another API path than the one written; write the path itself, for example sys/auth/userpass",
                    request.path
                ),
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
            let key = &from.secret_key_ref.key;
            if key.is_empty() || key == "." || key.contains("..") || key.contains('/') {
                fail(
                    format!("{at}.dataFrom[{j}].secretKeyRef.key"),
                    format!(
                        "{key:?} is not a plain Secret key: no '/' or '..' (it names a file in the bootstrap pod's Secret volume); use the key as it appears in the Secret's data"
                    ),
                );
            }
        }
    }
    // Env fields become environment variables of the bootstrap pod
    // (`self_init_env_var`); two that map to one variable would silently
    // hand OpenBao the wrong secret. Within a request that takes two fields
    // equal but for case; across requests, a request `<a>` with an Env field
    // `<rest>_<g>` and a request `<a>-<rest>` with an Env field `<g>`. The
    // CEL twin cannot afford to compare every field pair, so both refuse
    // the shape that allows it: `<a>` has an Env field with '_' and a
    // request named `<a>-...` has an Env field.
    for (i, request) in self_init.requests.iter().enumerate() {
        let env = env_fields(request);
        for (k, (j, from)) in env.iter().enumerate() {
            if let Some((first, other)) = env[..k]
                .iter()
                .find(|(_, o)| o.field != from.field && o.field.eq_ignore_ascii_case(&from.field))
            {
                fail(
                    format!("spec.selfInit.requests[{i}].dataFrom[{j}].field"),
                    format!(
                        "{:?} and {:?} (dataFrom[{first}]) differ only in case, so both would be the environment variable {}; rename one or use source File",
                        from.field,
                        other.field,
                        self_init_env_var(&request.name, &from.field)
                    ),
                );
            }
        }
        let Some((_, underscored)) = env.iter().find(|(_, f)| f.field.contains('_')) else {
            continue;
        };
        let longer = format!("{}-", request.name);
        for (b, other) in self_init.requests.iter().enumerate() {
            if other.name.starts_with(&longer) && !env_fields(other).is_empty() {
                fail(
                    format!("spec.selfInit.requests[{b}].name"),
                    format!(
                        "request {:?} starts with {longer:?} and has Env fields, while request {:?} has the Env field {:?}: their environment variables could coincide (a's field b_c and a-b's field c are both BAO_SELF_INIT_A_B_C); rename {:?} so it does not start with {longer:?}, or use source File for these fields",
                        other.name, request.name, underscored.field, other.name
                    ),
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
        if device.prefix.is_some() {
            fail(
                format!("{at}.prefix"),
                "is not supported: OpenBao refuses audit log prefixing and the node would never become active; remove prefix".into(),
            );
        }
        if let Some(file) = &device.file {
            let path = file.file_path.as_str();
            let in_folder = path.strip_prefix("/openbao/audit/").is_some_and(|name| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
            if path.contains("..") {
                fail(
                    format!("{at}.file.filePath"),
                    format!(
                        "{path:?} contains '..' but must stay inside /openbao/audit/; use stdout, discard or /openbao/audit/<file name>"
                    ),
                );
            } else if !(path == "stdout" || path == "discard" || in_folder) {
                fail(
                    format!("{at}.file.filePath"),
                    format!(
                        "{path:?} is not stdout, discard or /openbao/audit/<file name>; use one of those"
                    ),
                );
            }
        }
        if spec.profile == Profile::Hardened && device.log_raw == Some(true) {
            fail(
                format!("{at}.logRaw"),
                "must be false when spec.profile is Hardened: raw audit logs contain tokens and secrets in plain text".into(),
            );
        }
    }

    // Backups (the CEL rules on BackupSpec and DrillSpec). The schedule's
    // meaning (fields in range, a known time zone) is checked by the
    // controller's parser and reported as BackupHealthy=False.
    if let Some(backup) = &spec.backup {
        let url = &backup.destination.url;
        if backup.object_lock.is_some() && !url.starts_with("s3://") {
            fail(
                "spec.backup.objectLock".into(),
                "needs an s3:// destination (S3 Object Lock); remove objectLock or use an S3 bucket with Object Lock enabled".into(),
            );
        }
        if let Some(credentials) = &backup.credentials
            && credentials.secret_ref.is_some() == credentials.workload_identity.is_some()
        {
            fail(
                "spec.backup.credentials".into(),
                "takes exactly one of secretRef and workloadIdentity".into(),
            );
        }
        if backup.destination.endpoint.is_some()
            && !(url.starts_with("s3://") || url.starts_with("gs://"))
        {
            fail(
                "spec.backup.destination.endpoint".into(),
                "applies to s3:// and gs:// destinations only; remove it".into(),
            );
        }
        if backup.destination.ca_secret_ref.is_some()
            && !backup
                .destination
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("https://"))
        {
            fail(
                "spec.backup.destination.caSecretRef".into(),
                CA_NEEDS_HTTPS_ENDPOINT.into(),
            );
        }
        if let Some(drill) = &backup.drill
            && drill.schedule.is_some() == drill.every_nth_backup.is_some()
        {
            fail(
                "spec.backup.drill".into(),
                "takes exactly one of schedule and everyNthBackup".into(),
            );
        }
    }

    // Where the Jobs and pods connect: never the node, the link or a
    // metadata service. (Plain-text storage is a ProductionReady gap.)
    let endpoints = [
        (
            "spec.unseal.transit.address",
            unseal.transit.as_ref().map(|t| t.address.as_str()),
        ),
        (
            "spec.backup.destination.endpoint",
            spec.backup
                .as_ref()
                .and_then(|b| b.destination.endpoint.as_deref()),
        ),
        (
            "spec.restoreFrom.destination.endpoint",
            spec.restore_from
                .as_ref()
                .and_then(|r| r.destination.as_ref())
                .and_then(|d| d.endpoint.as_deref()),
        ),
    ];
    for (field, endpoint) in endpoints {
        let Some(endpoint) = endpoint else { continue };
        if let Some(why) = crate::endpoints::forbidden_endpoint(endpoint) {
            fail(field.into(), why);
        }
    }

    if spec
        .restore_from
        .as_ref()
        .is_some_and(|from| from.destination.is_none() && spec.backup.is_none())
    {
        fail(
            "spec.restoreFrom.destination".into(),
            "is required when spec.backup is not set: name where the old cluster's backups are"
                .into(),
        );
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

/// Checks an `OpenBaoRestore`'s spec: the code twin of its CEL rules.
pub fn validate_restore_spec(spec: &crate::restore::OpenBaoRestoreSpec) -> Vec<FieldError> {
    let source = &spec.source;
    let mut errors = Vec::new();
    let chosen = [
        source.backup.is_some(),
        source.latest,
        source.manifest.is_some(),
    ]
    .iter()
    .filter(|chosen| **chosen)
    .count();
    if chosen != 1 {
        errors.push(FieldError {
            field: "spec.source".into(),
            message: "takes exactly one of backup (a name from status.backup), latest: true and manifest (a manifest's URL)".into(),
        });
    }
    if let Some(manifest) = &source.manifest {
        if crate::restore::manifest_url_parts(manifest).is_none() {
            errors.push(FieldError {
                field: "spec.source.manifest".into(),
                message: format!(
                    "{manifest:?} is not a backup manifest's URL; give s3://, gs://, az:// or file:// and a path ending in <UTC timestamp>-<id>.json"
                ),
            });
        }
        if source.from_namespace.is_some() || source.from_cluster.is_some() {
            errors.push(FieldError {
                field: "spec.source".into(),
                message: "spec.source.manifest names the backup itself: remove fromNamespace and fromCluster".into(),
            });
        }
    }
    errors
}

/// Checks a change to a stored spec (the CRD's transition rules).
pub fn validate_update(old: &OpenBaoClusterSpec, new: &OpenBaoClusterSpec) -> Vec<FieldError> {
    let mut errors = validate_spec(new);
    errors.extend(validate_version_change(&old.version, new));
    if old.self_init.enabled != new.self_init.enabled {
        errors.push(FieldError {
            field: "spec.selfInit.enabled".into(),
            message: "cannot change after creation: initialization happens once; create a new OpenBaoCluster instead".into(),
        });
    }
    errors.extend(validate_storage_change(&old.storage, &new.storage));
    errors
}

/// Volumes only grow (a PersistentVolumeClaim cannot shrink) and keep
/// their StorageClass. The messages are the admission policy's own.
pub fn validate_storage_change(
    old: &crate::cluster::StorageSpec,
    new: &crate::cluster::StorageSpec,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let (Some(before), Some(after)) = (quantity_value(&old.size.0), quantity_value(&new.size.0))
        && after < before
    {
        errors.push(FieldError {
            field: "spec.storage.size".into(),
            message: format!(
                "cannot shrink from {} to {}: a PersistentVolumeClaim only grows; set it to {} or more",
                old.size.0, new.size.0, old.size.0
            ),
        });
    }
    if old.storage_class_name != new.storage_class_name {
        errors.push(FieldError {
            field: "spec.storage.storageClassName".into(),
            message: "cannot change after creation: the volumes exist in their StorageClass; set it back, or restore a backup into a new cluster".into(),
        });
    }
    errors
}

/// The Transit seal's address when the seal type is transit and the
/// address is not `https://`: the Transit token and the wrapping of the
/// seal key would then cross the network in plain text. Refused in a
/// Hardened spec; a Development spec may use it (a `ProductionReady` gap).
pub fn plain_transit_address(spec: &OpenBaoClusterSpec) -> Option<&str> {
    let transit = spec.unseal.transit.as_ref()?;
    (spec.unseal.type_ == UnsealType::Transit && !transit.address.starts_with("https://"))
        .then_some(transit.address.as_str())
}

/// The object-store endpoints a spec reaches in plain text (`http://`):
/// snapshots and storage credentials would cross the network unencrypted,
/// a `ProductionReady` gap.
pub fn plain_storage_endpoints(spec: &OpenBaoClusterSpec) -> Vec<&'static str> {
    let backup = spec
        .backup
        .as_ref()
        .and_then(|b| b.destination.endpoint.as_deref());
    let restore = spec
        .restore_from
        .as_ref()
        .and_then(|r| r.destination.as_ref())
        .and_then(|d| d.endpoint.as_deref());
    [
        ("spec.backup.destination.endpoint", backup),
        ("spec.restoreFrom.destination.endpoint", restore),
    ]
    .into_iter()
    .filter(|(_, endpoint)| endpoint.is_some_and(|e| e.starts_with("http://")))
    .map(|(field, _)| field)
    .collect()
}

/// The Hardened profile's posture: a certificate the operator's own CA did
/// not issue (External or ACME), a seal whose key does not sit in a
/// Kubernetes Secret next to the data (not static), at least three voters,
/// and https to object storage. Checked for clusters not yet initialized;
/// a running cluster created before these rules keeps them as
/// `ProductionReady` gaps (the
/// admission policy likewise lets an update through when the old object
/// already broke the rule).
pub fn validate_hardened(spec: &OpenBaoClusterSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if spec.profile != Profile::Hardened {
        return errors;
    }
    if spec.tls.mode == TlsMode::OperatorManaged {
        errors.push(FieldError {
            field: "spec.tls.mode".into(),
            message: HARDENED_TLS_MESSAGE.into(),
        });
    }
    if spec.unseal.type_ == UnsealType::Static {
        errors.push(FieldError {
            field: "spec.unseal.type".into(),
            message: HARDENED_SEAL_MESSAGE.into(),
        });
    }
    if spec.replicas < 3 {
        errors.push(FieldError {
            field: "spec.replicas".into(),
            message: HARDENED_REPLICAS_MESSAGE.into(),
        });
    }
    // (The Transit address is the CRD's rule, checked in validate_spec.)
    for field in plain_storage_endpoints(spec) {
        errors.push(FieldError {
            field: field.into(),
            message: HARDENED_HTTPS_MESSAGE.into(),
        });
    }
    errors
}

/// The words of [`validate_hardened`], shared with the admission policy
/// (manifests/admission/cluster-invariants.yaml).
pub const HARDENED_TLS_MESSAGE: &str = "must be External or ACME when spec.profile is Hardened: the operator's own CA key lives in a Secret beside the cluster; give a certificate from cert-manager (External) or use ACME, or use profile Development";
pub const HARDENED_SEAL_MESSAGE: &str = "must not be static when spec.profile is Hardened: a static key sits in a Kubernetes Secret next to the data it unseals; use transit or a cloud KMS, or use profile Development";
/// The words of the CRD rule on a destination's `caSecretRef`.
pub const CA_NEEDS_HTTPS_ENDPOINT: &str = "is the CA of a private https endpoint: set an https:// endpoint, or remove caSecretRef to trust the usual public roots";
pub const HARDENED_HTTPS_MESSAGE: &str = "must be https when spec.profile is Hardened: snapshots and storage credentials must not cross the network in plain text; serve the storage over TLS (a private CA goes in the caSecretRef beside the endpoint), or use profile Development";
pub const HARDENED_REPLICAS_MESSAGE: &str = "must be at least 3 when spec.profile is Hardened: with fewer voters one lost pod loses quorum; set 3 or 5, or use profile Development";

/// Secrets the spec names that the operator itself manages for the
/// cluster `name` (its seal key, CA, server certificate, root token): a
/// spec may not point the operator's Jobs or pods at them.
pub fn validate_references(name: &str, spec: &OpenBaoClusterSpec) -> Vec<FieldError> {
    let managed = [
        crate::names::unseal_secret(name),
        crate::names::tls_ca_secret(name),
        crate::names::tls_server_secret(name),
        crate::names::root_token_secret(name),
    ];
    let mut references: Vec<(String, &str)> = Vec::new();
    if let Some(transit) = &spec.unseal.transit {
        references.push((
            "spec.unseal.transit.tokenSecretRef".into(),
            &transit.token_secret_ref,
        ));
        if let Some(ca) = &transit.ca_secret_ref {
            references.push(("spec.unseal.transit.caSecretRef".into(), ca));
        }
    }
    if let Some(credentials) = &spec.unseal.credentials_secret_ref {
        references.push(("spec.unseal.credentialsSecretRef".into(), credentials));
    }
    if let Some(secret) = spec
        .backup
        .as_ref()
        .and_then(|b| b.credentials.as_ref())
        .and_then(|c| c.secret_ref.as_deref())
    {
        references.push(("spec.backup.credentials.secretRef".into(), secret));
    }
    if let Some(secret) = spec
        .restore_from
        .as_ref()
        .and_then(|r| r.credentials.as_ref())
        .and_then(|c| c.secret_ref.as_deref())
    {
        references.push(("spec.restoreFrom.credentials.secretRef".into(), secret));
    }
    for (i, request) in spec.self_init.requests.iter().enumerate() {
        for (j, from) in request.data_from.iter().enumerate() {
            references.push((
                format!("spec.selfInit.requests[{i}].dataFrom[{j}].secretKeyRef.name"),
                &from.secret_key_ref.name,
            ));
        }
    }
    references
        .into_iter()
        .filter(|(_, secret)| managed.iter().any(|m| m == secret))
        .map(|(field, secret)| FieldError {
            field,
            message: format!(
                "{secret:?} is a Secret the operator manages for this cluster; reference a Secret of your own"
            ),
        })
        .collect()
}

/// The version policy for moving from version `from` (the stored spec's,
/// or the one the pods run) to `new.version`: never down, and one minor
/// version at a time unless `spec.upgrade.allowSkippingVersions`. The
/// messages are the CRD transition rules' own.
pub fn validate_version_change(from: &str, new: &OpenBaoClusterSpec) -> Option<FieldError> {
    let (from, to) = (semver_parts(from)?, semver_parts(&new.version)?);
    let skipping_allowed = new
        .upgrade
        .as_ref()
        .is_some_and(|u| u.allow_skipping_versions);
    let message = if to < from {
        crate::cluster::VERSION_LOWER_MESSAGE
    } else if to > from && !skipping_allowed && (to[0] != from[0] || to[1] > from[1] + 1) {
        crate::cluster::VERSION_SKIP_MESSAGE
    } else {
        return None;
    };
    Some(FieldError {
        field: "spec.version".into(),
        message: message.into(),
    })
}

/// MAJOR, MINOR and PATCH of a MAJOR.MINOR.PATCH version.
fn semver_parts(version: &str) -> Option<[u64; 3]> {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    let parsed = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some(parsed)
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

/// The `Env` fields of a self-init request, with their index in `dataFrom`.
fn env_fields(request: &SelfInitRequest) -> Vec<(usize, &SecretField)> {
    request
        .data_from
        .iter()
        .enumerate()
        .filter(|(_, f)| f.source == SecretSource::Env)
        .collect()
}

/// A plain file name as [`crate::cluster::FILE_NAME_PATTERN`] says: no
/// folder, no leading dot.
fn is_file_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name.len() <= 255
}

/// What [`parse_quantity`] learns about a Kubernetes quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantityShape {
    /// Greater than zero.
    pub positive: bool,
}

/// Parses a Kubernetes quantity (`10Gi`, `500M`, `1.5e3`, `+2k`) as the API
/// server's `resource.ParseQuantity` does: an optionally signed decimal
/// number and one suffix (binary `Ki`..`Ei`, decimal `m`, `k`, `M`..`E`, or
/// an exponent `e<int>`/`E<int>`). `None` when malformed.
pub fn parse_quantity(text: &str) -> Option<QuantityShape> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'+' => (false, &text[1..]),
        b'-' => (true, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let suffix_ok = match suffix {
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            true
        }
        _ => suffix.strip_prefix(['e', 'E']).is_some_and(|exponent| {
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }),
    };
    let nonzero = number.bytes().any(|b| (b'1'..=b'9').contains(&b));
    suffix_ok.then_some(QuantityShape {
        positive: nonzero && !negative,
    })
}

/// The value of a well-formed quantity ([`parse_quantity`]), to compare
/// two sizes (exact well beyond any disk: f64 holds 2^53 bytes exactly).
pub fn quantity_value(text: &str) -> Option<f64> {
    parse_quantity(text)?;
    let unsigned = text.trim_start_matches(['+', '-']);
    let sign = if text.starts_with('-') { -1.0 } else { 1.0 };
    let split = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(split);
    let binary = |power: i32| 1024f64.powi(power);
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        exponent => 10f64.powi(exponent[1..].parse().ok()?),
    };
    Some(sign * number.parse::<f64>().ok()? * multiplier)
}

/// A container image reference as [`crate::cluster::IMAGE_PATTERN`] says:
/// `[registry[:port]/]path[:tag][@digest]`.
pub fn is_image_reference(image: &str) -> bool {
    if image.len() > 512 {
        return false;
    }
    let (name_and_tag, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if digest.is_some_and(|d| !is_digest(d)) {
        return false;
    }
    // A tag follows the last ':' after the last '/' (a registry port's ':'
    // comes before a '/').
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) {
        return false;
    }
    // The first component is a registry when the rest parses as a path
    // (it may be a path component too: `openbao/openbao`).
    let path_ok = |path: &str| path.split('/').all(is_path_component);
    path_ok(name)
        || name
            .split_once('/')
            .is_some_and(|(registry, path)| is_registry(registry) && path_ok(path))
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(b) {
            let ok = separator.is_empty()
                || matches!(separator.as_str(), "." | "_" | "__")
                || separator.bytes().all(|s| s == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if b"._-".contains(&b) {
            separator.push(b as char);
        } else {
            return false;
        }
    }
    true
}

/// `host[:port]`: DNS-like labels of letters, digits and inner dashes.
fn is_registry(registry: &str) -> bool {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A tag: a word character, then up to 127 of word characters, `.` and `-`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`, for example `sha256:` and 64 hex digits.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
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
        AcmeSpec, AuditDevice, AwsKmsUnseal, FileAudit, IngressSpec, KmsPlugin, SecretField,
        SecretKeyRef, SecretSource, SelfInitOperation, SelfInitRequest, TransitUnseal,
        WorkloadIdentity,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
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

    /// A 2.7.2 spec with an AWS KMS seal and nothing else set.
    fn aws_kms_spec() -> OpenBaoClusterSpec {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.unseal.type_ = UnsealType::Awskms;
        spec.unseal.awskms = Some(AwsKmsUnseal {
            region: "eu-west-1".into(),
            kms_key_id: "alias/openbao".into(),
            endpoint: None,
        });
        spec
    }

    #[test]
    fn cloud_kms_needs_credentials_and_on_2_7_a_plugin() {
        let mut spec = aws_kms_spec();
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
    fn volumes_only_grow_and_keep_their_class() {
        let mut old = OpenBaoClusterSpec::with_version("2.7.2");
        old.storage.size = Quantity("10Gi".into());
        old.storage.storage_class_name = Some("fast".into());
        let with = |size: &str, class: Option<&str>| {
            let mut new = old.clone();
            new.storage.size = Quantity(size.into());
            new.storage.storage_class_name = class.map(str::to_owned);
            validate_update(&old, &new)
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(with("10Gi", Some("fast")), Vec::<String>::new());
        assert_eq!(with("10240Mi", Some("fast")), Vec::<String>::new());
        assert_eq!(with("1Ti", Some("fast")), Vec::<String>::new());
        assert_eq!(
            with("10G", Some("fast")),
            [
                "spec.storage.size: cannot shrink from 10Gi to 10G: a PersistentVolumeClaim only grows; set it to 10Gi or more"
            ]
        );
        assert_eq!(with("9999Mi", Some("fast")).len(), 1);
        let changed = with("10Gi", None);
        assert_eq!(changed.len(), 1);
        assert!(changed[0].starts_with("spec.storage.storageClassName: cannot change"));
        assert_eq!(quantity_value("1.5Ki"), Some(1536.0));
        assert_eq!(quantity_value("2e3"), Some(2000.0));
        assert_eq!(quantity_value("500m"), Some(0.5));
        assert_eq!(quantity_value("lots"), None);
    }

    #[test]
    fn a_spec_may_not_point_at_the_secrets_the_operator_manages() {
        let spec: OpenBaoClusterSpec = serde_json::from_value(serde_json::json!({
            "version": "2.7.2",
            "unseal": {"type": "transit", "transit": {"address": "https://t:8200", "keyName": "k",
                "tokenSecretRef": "vault-unseal-key", "caSecretRef": "transit-ca"}},
            "backup": {"schedule": "0 0 * * *", "destination": {"url": "s3://backups/p"},
                "credentials": {"secretRef": "vault-root-token"}},
            "selfInit": {"enabled": true, "requests": [{"name": "r", "path": "sys/x",
                "dataFrom": [{"field": "f", "secretKeyRef": {"name": "vault-tls-ca", "key": "ca.key"}}]}]},
        }))
        .unwrap();
        let fields: Vec<String> = validate_references("vault", &spec)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.unseal.transit.tokenSecretRef",
                "spec.backup.credentials.secretRef",
                "spec.selfInit.requests[0].dataFrom[0].secretKeyRef.name",
            ]
        );
        // The same names are the user's own in another cluster.
        assert!(validate_references("other", &spec).is_empty());
    }

    #[test]
    fn endpoints_may_not_reach_the_node_its_link_or_metadata() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.backup = Some(
            serde_json::from_value(serde_json::json!({"schedule": "0 0 * * *",
                "destination": {"url": "s3://backups/p", "endpoint": "http://0x7f000001:9000"}}))
            .unwrap(),
        );
        assert_eq!(fields(&spec), ["spec.backup.destination.endpoint"]);
        if let Some(b) = spec.backup.as_mut() {
            b.destination.endpoint = Some("http://minio.storage.svc:9000".into());
        }
        assert!(fields(&spec).is_empty());
        assert_eq!(
            plain_storage_endpoints(&spec),
            ["spec.backup.destination.endpoint"]
        );
    }

    #[test]
    fn versions_go_up_one_minor_at_a_time_unless_skipping_is_allowed() {
        let at = |version: &str| OpenBaoClusterSpec::with_version(version);
        let refused = |from: &str, to: &OpenBaoClusterSpec| {
            validate_update(&at(from), to)
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
        };
        for (from, to) in [
            ("2.6.2", "2.7.2"),
            ("2.7.2", "2.7.3"),
            ("2.7.2", "2.7.2"),
            ("2.6.9", "2.7.0"),
        ] {
            assert!(refused(from, &at(to)).is_empty(), "{from} -> {to}");
        }
        for (from, to) in [("2.7.2", "2.6.2"), ("2.7.2", "2.7.1"), ("3.0.0", "2.9.9")] {
            assert_eq!(
                refused(from, &at(to)),
                [crate::cluster::VERSION_LOWER_MESSAGE],
                "{from} -> {to}"
            );
        }
        for (from, to) in [("2.5.0", "2.7.2"), ("2.7.2", "3.0.0")] {
            assert_eq!(
                refused(from, &at(to)),
                [crate::cluster::VERSION_SKIP_MESSAGE],
                "{from} -> {to}"
            );
            let mut allowed = at(to);
            allowed.upgrade = Some(crate::cluster::UpgradePolicy {
                allow_skipping_versions: true,
                ..Default::default()
            });
            assert!(refused(from, &allowed).is_empty(), "{from} -> {to} allowed");
        }
        // Skipping never allows going down.
        let mut down = at("2.6.2");
        down.upgrade = Some(crate::cluster::UpgradePolicy {
            allow_skipping_versions: true,
            ..Default::default()
        });
        assert_eq!(
            refused("2.7.2", &down),
            [crate::cluster::VERSION_LOWER_MESSAGE]
        );
    }

    fn env_field(field: &str, source: SecretSource) -> SecretField {
        SecretField {
            field: field.into(),
            secret_key_ref: SecretKeyRef {
                name: "admin".into(),
                key: "value".into(),
            },
            source,
        }
    }

    fn self_init(requests: Vec<SelfInitRequest>) -> OpenBaoClusterSpec {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.self_init.enabled = true;
        spec.self_init.requests = requests;
        spec
    }

    #[test]
    fn image_must_be_a_reference() {
        for good in [
            "openbao/openbao:2.7.2",
            "openbao",
            "quay.io/openbao/openbao:2.7.2-ubi",
            "registry.example:5000/team/open_bao__x/openbao",
            "localhost:5000/openbao:latest",
            "ghcr.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ghcr.io/a/b:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_image_reference(good), "{good} refused");
        }
        for bad in [
            "",
            "openbao/openbao:2.7.2\nevil",
            "openbao/openbao:2.7.2 ",
            "OpenBao/OpenBao",
            "openbao/openbao:",
            "openbao//openbao",
            "/openbao",
            "openbao/-openbao",
            "openbao/open..bao",
            "openbao/open___bao",
            "openbao@sha256:xyz",
            "openbao:-tag",
            "https://registry/openbao",
        ] {
            assert!(!is_image_reference(bad), "{bad:?} accepted");
        }
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.image = Some("openbao/openbao:2.7.2\n".into());
        let errors = validate_spec(&spec);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "spec.image");
        assert!(
            errors[0].message.contains("registry.example/"),
            "{}",
            errors[0]
        );
        spec.image = Some("registry.example/openbao/openbao:2.7.2".into());
        assert!(fields(&spec).is_empty());
    }

    #[test]
    fn storage_size_must_be_a_positive_quantity() {
        for good in [
            "10Gi", "500M", "1.5e3", "+2k", "1Ei", "0.5Gi", ".5Ti", "3", "1E",
        ] {
            assert!(
                parse_quantity(good).is_some_and(|q| q.positive),
                "{good} refused"
            );
        }
        for bad in [
            "lots", "", "10 Gi", "10GB", "10gi", "1e", "Gi", "1..2", "--1", "1Gi\n",
        ] {
            assert_eq!(parse_quantity(bad), None, "{bad:?} parsed");
        }
        for not_positive in ["0", "-1Gi", "0.0Mi"] {
            assert_eq!(
                parse_quantity(not_positive),
                Some(QuantityShape { positive: false })
            );
        }
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into());
        let errors = validate_spec(&spec);
        assert_eq!(errors[0].field, "spec.storage.size");
        assert!(errors[0].message.contains("10Gi"), "{}", errors[0]);
        spec.storage.size.0 = "-1Gi".into();
        assert_eq!(fields(&spec), ["spec.storage.size"]);
    }

    #[test]
    fn rotation_period_is_between_an_hour_and_a_year() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        for bad in ["59m", "8761h", "1s"] {
            spec.tls.rotation_period = bad.into();
            let errors = validate_spec(&spec);
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].field, "spec.tls.rotationPeriod");
            assert!(errors[0].message.contains("8760h"), "{}", errors[0]);
        }
        for good in ["1h", "8760h", "1h30m", "720h"] {
            spec.tls.rotation_period = good.into();
            assert!(fields(&spec).is_empty(), "{good} refused");
        }
    }

    #[test]
    fn hardened_transit_must_use_tls() {
        let mut spec = self_init(Vec::new());
        spec.profile = Profile::Hardened;
        spec.unseal.type_ = UnsealType::Transit;
        spec.unseal.transit = Some(TransitUnseal {
            address: "http://transit:8200".into(),
            key_name: "k".into(),
            mount_path: "transit/".into(),
            token_secret_ref: "t".into(),
            ca_secret_ref: None,
            tls_server_name: None,
        });
        assert_eq!(plain_transit_address(&spec), Some("http://transit:8200"));
        let errors = validate_spec(&spec);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "spec.unseal.transit.address");
        assert!(errors[0].message.contains("https://"), "{}", errors[0]);
        spec.profile = Profile::Development;
        assert!(fields(&spec).is_empty(), "Development may use http");
        assert_eq!(plain_transit_address(&spec), Some("http://transit:8200"));
        spec.profile = Profile::Hardened;
        if let Some(transit) = spec.unseal.transit.as_mut() {
            transit.address = "https://transit:8200".into();
        }
        assert!(fields(&spec).is_empty());
        assert_eq!(plain_transit_address(&spec), None);
    }

    #[test]
    fn kms_plugin_binary_is_a_plain_file_name() {
        let mut spec = aws_kms_spec();
        spec.unseal.credentials_secret_ref = Some("aws".into());
        let plugin = |binary: &str| KmsPlugin {
            image: "ghcr.io/openbao/openbao-plugin-kms-aws".into(),
            version: "v0.1.0".into(),
            binary_name: binary.into(),
            sha256sum: "0".repeat(64),
        };
        for bad in [
            "../../bin/sh",
            "bin/plugin",
            ".hidden",
            "..",
            "",
            "a plugin",
            "x\n",
        ] {
            spec.unseal.kms_plugin = Some(plugin(bad));
            let errors = validate_spec(&spec);
            assert_eq!(errors.len(), 1, "{bad:?}: {errors:?}");
            assert_eq!(errors[0].field, "spec.unseal.kmsPlugin.binaryName");
            assert!(errors[0].message.contains("file name"), "{}", errors[0]);
        }
        spec.unseal.kms_plugin = Some(plugin("openbao-plugin-kms-aws_v1.2"));
        assert!(fields(&spec).is_empty());
    }

    #[test]
    fn request_paths_have_no_dot_segments() {
        for bad in [
            "../../sys/raw/core",
            "sys/./raw",
            "auth/..",
            "..",
            "auth/userpass/..",
        ] {
            let mut r = request("r", json!({}));
            r.path = bad.into();
            let errors = validate_spec(&self_init(vec![r]));
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].field, "spec.selfInit.requests[0].path");
            assert!(errors[0].message.contains(".."), "{}", errors[0]);
        }
        let mut r = request("r", json!({}));
        r.path = "auth/userpass/users/a..b".into();
        assert!(fields(&self_init(vec![r])).is_empty());
    }

    #[test]
    fn secret_keys_are_plain_keys() {
        for bad in ["..", "../token", "a/b", ".", "..data"] {
            let mut r = request("r", json!({}));
            let mut from = env_field("password", SecretSource::File);
            from.secret_key_ref.key = bad.into();
            r.data_from = vec![from];
            let errors = validate_spec(&self_init(vec![r]));
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(
                errors[0].field,
                "spec.selfInit.requests[0].dataFrom[0].secretKeyRef.key"
            );
        }
        let mut r = request("r", json!({}));
        let mut from = env_field("password", SecretSource::File);
        from.secret_key_ref.key = ".dockerconfigjson".into();
        r.data_from = vec![from];
        assert!(fields(&self_init(vec![r])).is_empty());
    }

    #[test]
    fn env_fields_may_not_share_an_environment_variable() {
        assert_eq!(self_init_env_var("a-b", "c"), "BAO_SELF_INIT_A_B_C");
        assert_eq!(self_init_env_var("a", "b_c"), "BAO_SELF_INIT_A_B_C");
        // Across requests: `a-b`/`c` and `a`/`b_c` are one variable.
        let mut ab = request("a-b", json!({}));
        ab.data_from = vec![env_field("c", SecretSource::Env)];
        let mut a = request("a", json!({}));
        a.data_from = vec![env_field("b_c", SecretSource::Env)];
        let errors = validate_spec(&self_init(vec![ab.clone(), a.clone()]));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "spec.selfInit.requests[0].name");
        assert!(
            errors[0].message.contains("\"a-b\"")
                && errors[0].message.contains("\"b_c\"")
                && errors[0].message.contains("rename"),
            "{}",
            errors[0]
        );
        // A File source uses no variable, on either side.
        a.data_from[0].source = SecretSource::File;
        assert!(fields(&self_init(vec![ab.clone(), a.clone()])).is_empty());
        a.data_from[0].source = SecretSource::Env;
        ab.data_from[0].source = SecretSource::File;
        assert!(fields(&self_init(vec![ab.clone(), a.clone()])).is_empty());
        ab.data_from[0].source = SecretSource::Env;
        // Fields without '_' cannot reach into another request's variables.
        a.data_from = vec![env_field("password", SecretSource::Env)];
        assert!(fields(&self_init(vec![ab.clone(), a.clone()])).is_empty());
        // A name that extends another without '-' never collides with it.
        a.data_from = vec![env_field("b_c", SecretSource::Env)];
        let mut longer = request("ab", json!({}));
        longer.data_from = vec![env_field("c", SecretSource::Env)];
        assert!(fields(&self_init(vec![longer, a])).is_empty());
        // Within a request: fields that differ only in case.
        let mut one = request("one", json!({}));
        one.data_from = vec![
            env_field("password", SecretSource::Env),
            env_field("PASSWORD", SecretSource::Env),
        ];
        let errors = validate_spec(&self_init(vec![one.clone()]));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].field,
            "spec.selfInit.requests[0].dataFrom[1].field"
        );
        assert!(
            errors[0].message.contains("BAO_SELF_INIT_ONE_PASSWORD"),
            "{}",
            errors[0]
        );
        one.data_from[1].source = SecretSource::File;
        assert!(fields(&self_init(vec![one])).is_empty());
    }

    #[test]
    fn audit_file_paths_stay_in_the_audit_folder_and_prefixes_are_refused() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        let mut file = audit(AuditType::File, "file");
        file.file = Some(FileAudit {
            file_path: "/openbao/audit/../../etc/passwd".into(),
            mode: None,
        });
        let mut prefixed = audit(AuditType::Syslog, "syslog");
        prefixed.prefix = Some("bao:".into());
        spec.configuration.audit = vec![file, prefixed];
        let errors = validate_spec(&spec);
        assert_eq!(
            errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            [
                "spec.configuration.audit[0].file.filePath",
                "spec.configuration.audit[1].prefix"
            ]
        );
        assert!(errors[0].message.contains("'..'"), "{}", errors[0]);
        assert!(errors[1].message.contains("remove prefix"), "{}", errors[1]);
        for (path, ok) in [
            ("/openbao/audit/..", false),
            ("/var/log/audit.log", false),
            ("/openbao/audit/", false),
            ("stdout", true),
            ("discard", true),
            ("/openbao/audit/audit.log", true),
        ] {
            spec.configuration.audit = vec![audit(AuditType::File, "file")];
            spec.configuration.audit[0].file = Some(FileAudit {
                file_path: path.into(),
                mode: None,
            });
            assert_eq!(fields(&spec).is_empty(), ok, "{path}");
        }
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

    #[test]
    fn hardened_needs_an_outside_certificate_a_real_seal_and_three_voters() {
        let mut spec = OpenBaoClusterSpec::with_version("2.7.2");
        spec.replicas = 1;
        assert!(validate_hardened(&spec).is_empty(), "Development is free");
        spec.profile = Profile::Hardened;
        let names: Vec<String> = validate_hardened(&spec)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            names,
            ["spec.tls.mode", "spec.unseal.type", "spec.replicas"]
        );
        spec.tls.mode = TlsMode::Acme;
        spec.unseal.type_ = UnsealType::Awskms;
        spec.replicas = 3;
        assert!(validate_hardened(&spec).is_empty());
        let backup: crate::backup::BackupSpec = serde_json::from_value(serde_json::json!({
            "schedule": "0 * * * *",
            "destination": {"url": "s3://b/p", "endpoint": "http://s3.internal:9000"},
        }))
        .unwrap();
        spec.backup = Some(backup);
        let errors = validate_hardened(&spec);
        assert_eq!(errors[0].field, "spec.backup.destination.endpoint");
        assert_eq!(errors[0].message, HARDENED_HTTPS_MESSAGE);
        spec.backup.as_mut().unwrap().destination.endpoint =
            Some("https://s3.internal:9000".into());
        assert!(validate_hardened(&spec).is_empty());
    }

    /// The admission policy refuses in the code's words.
    #[test]
    fn the_admission_policy_says_what_the_code_says() {
        let policy = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../manifests/admission/cluster-invariants.yaml"),
        )
        .unwrap();
        for (field, message) in [
            ("spec.tls.mode", HARDENED_TLS_MESSAGE),
            ("spec.unseal.type", HARDENED_SEAL_MESSAGE),
            ("spec.replicas", HARDENED_REPLICAS_MESSAGE),
        ] {
            assert!(
                policy.contains(&format!("message: \"{field}: {message}\"")),
                "{field}: the policy's message differs from the code's"
            );
        }
        // The endpoint rule names whichever field it finds.
        assert!(
            policy.contains(&format!("+ ': {HARDENED_HTTPS_MESSAGE}'")),
            "the https message differs from the code's"
        );
    }
}
