//! Pure mapping between OpenKCM's keystore model and OpenBao Transit:
//! native key ids, statuses, algorithms, versions and errors.

use std::time::SystemTime;

use openbao_client::Error as BaoError;
use openbao_client::transit::{KeyInfo, KeyType};
use prost::Message;
use tonic::{Code, Status};

use crate::proto::google::rpc;
use crate::proto::plugin::keystore::operations::v1::{KeyAlgorithm, KeyVersion};

/// Key states CMK understands.
pub const ENABLED: &str = "ENABLED";
pub const DISABLED: &str = "DISABLED";
pub const PENDING_DELETION: &str = "PENDING_DELETION";
pub const PENDING_IMPORT: &str = "PENDING_IMPORT";
pub const ENCRYPT_DECRYPT: &str = "ENCRYPT_DECRYPT";

/// The exact messages CMK matches on (code and text).
pub const MSG_AUTH: &str = "failed to authenticate with the keystore provider";
pub const MSG_NOT_FOUND: &str = "key not found in the keystore provider";
pub const MSG_GET_KEY: &str = "failed to get key";
pub const MSG_ACCESS_DATA: &str = "invalid key access data";

/// `google.rpc.ErrorInfo.domain` of this plugin's error details.
pub const ERROR_DOMAIN: &str = "openbao.keystore.openkcm";

/// A key in OpenBao: mount and name. Its native id is `<mount>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    pub mount: String,
    pub name: String,
}

impl KeyRef {
    pub fn native_id(&self) -> String {
        format!("{}/{}", self.mount, self.name)
    }
}

/// Parses a native key id against the Transit mount the access data names
/// (`transitMount`, default from the plugin YAML). The mount always comes
/// from there, never from the key id: a key id is data CMK stores per key,
/// and letting it pick the mount would let one tenant's key id reach
/// another tenant's mount with the plugin's credential. So `<mount>/<name>`
/// (split on the last `/`; mounts may be nested) must name that mount, and
/// a bare id is a name in it, prefixed unless it has the prefix already,
/// so that CMK's recovery call (GetKey with its own key UUID) finds the key
/// CreateKey made.
pub fn parse_key_id(id: &str, mount: &str, prefix: &str) -> Result<KeyRef, String> {
    let id = id.trim();
    let mount = mount.trim_matches('/');
    let (id_mount, name) = split_key_id(id)?;
    let name = match id_mount {
        Some(id_mount) if id_mount != mount => {
            return Err(format!(
                "key id {id:?} is in the Transit mount {id_mount:?}, but the access data's transitMount (or the plugin YAML's default) is {mount:?}; the mount comes only from transitMount, so set transitMount: {id_mount} in the key's access data"
            ));
        }
        Some(_) => name.to_owned(),
        None => key_name(prefix, name),
    };
    if !crate::config::valid_mount(mount) {
        return Err(format!("transitMount {mount:?} is not a valid mount path"));
    }
    if !openbao_client::transit::valid_key_name(&name) {
        return Err(format!(
            "key id {id:?} has no valid key name; use <mount>/<name> with letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(KeyRef {
        mount: mount.to_owned(),
        name,
    })
}

/// Splits a native key id into its mount (if any) and name, checking only
/// its shape (for ValidateKey, which has no access data).
pub fn split_key_id(id: &str) -> Result<(Option<&str>, &str), String> {
    let id = id.trim();
    if id.is_empty() {
        return Err("the key id is empty".into());
    }
    let (mount, name) = match id.rsplit_once('/') {
        Some((mount, name)) => (Some(mount.trim_matches('/')), name),
        None => (None, id),
    };
    if let Some(mount) = mount
        && !crate::config::valid_mount(mount)
    {
        return Err(format!(
            "the mount {mount:?} of key id {id:?} is not a valid path"
        ));
    }
    if !openbao_client::transit::valid_key_name(name) {
        return Err(format!(
            "key id {id:?} has no valid key name; use <mount>/<name> with letters, digits, '_', '-' and '.'"
        ));
    }
    Ok((mount, name))
}

/// `prefix + id`, unless `id` already starts with the prefix.
pub fn key_name(prefix: &str, id: &str) -> String {
    if id.starts_with(prefix) {
        id.to_owned()
    } else {
        format!("{prefix}{id}")
    }
}

pub fn transit_type(algorithm: KeyAlgorithm) -> Option<KeyType> {
    match algorithm {
        KeyAlgorithm::Aes256 => Some(KeyType::Aes256Gcm96),
        KeyAlgorithm::Rsa3072 => Some(KeyType::Rsa3072),
        KeyAlgorithm::Rsa4096 => Some(KeyType::Rsa4096),
        KeyAlgorithm::Unspecified => None,
    }
}

pub fn algorithm(key_type: &KeyType) -> KeyAlgorithm {
    match key_type {
        KeyType::Aes256Gcm96 => KeyAlgorithm::Aes256,
        KeyType::Rsa3072 => KeyAlgorithm::Rsa3072,
        KeyType::Rsa4096 => KeyAlgorithm::Rsa4096,
        _ => KeyAlgorithm::Unspecified,
    }
}

/// The key state: soft-deleted keys are DISABLED, or PENDING_DELETION when
/// deletion was also allowed (DeleteKey sets both).
pub fn key_status(info: &KeyInfo) -> &'static str {
    match (info.soft_deleted, info.deletion_allowed) {
        (false, _) => ENABLED,
        (true, false) => DISABLED,
        (true, true) => PENDING_DELETION,
    }
}

pub fn key_usage(info: &KeyInfo) -> &'static str {
    if info.supports_encryption && info.supports_decryption {
        ENCRYPT_DECRYPT
    } else {
        "UNSUPPORTED"
    }
}

pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// Versions newest first. A version below `min_decryption_version` is
/// DISABLED; every version shares the key's state when that is not ENABLED.
pub fn key_versions(info: &KeyInfo) -> Vec<KeyVersion> {
    let key_state = key_status(info);
    info.versions
        .iter()
        .rev()
        .map(|(number, version)| KeyVersion {
            version_id: number.to_string(),
            creation_time: Some(timestamp(version.created)),
            status: if key_state != ENABLED {
                key_state
            } else if *number >= info.min_decryption_version {
                ENABLED
            } else {
                DISABLED
            }
            .to_owned(),
        })
        .collect()
}

/// The kind of RPC an error happens in (GetKey reports failures its own way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    GetKey,
    Other,
}

/// A status with a `google.rpc.ErrorInfo` detail.
pub fn status_with_info(
    code: Code,
    message: &str,
    reason: &str,
    metadata: &[(&str, String)],
) -> Status {
    let info = rpc::ErrorInfo {
        reason: reason.to_owned(),
        domain: ERROR_DOMAIN.to_owned(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    };
    let details = rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
            value: info.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

/// The status for unusable access data. Missing or malformed fields give
/// CMK's exact `invalid key access data` status. Refused fields (a file
/// path, an address the plugin's credential must not go to, `http://`)
/// give an `InvalidArgument` whose message names each field and the fix,
/// since whoever wrote the access data has to change it; ErrorInfo reason
/// `ACCESS_DATA_REFUSED`, `fields` lists them.
pub fn invalid_access_data(problem: &crate::config::AccessDataProblem) -> Status {
    let mut metadata = vec![("detail", problem.to_string())];
    if !problem.refused.is_empty() {
        let message = problem
            .refused
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let fields = problem
            .refused
            .iter()
            .map(|r| r.field.as_str())
            .collect::<Vec<_>>()
            .join(",");
        metadata.push(("fields", fields));
        return status_with_info(
            Code::InvalidArgument,
            &message,
            "ACCESS_DATA_REFUSED",
            &metadata,
        );
    }
    let reason = if problem.missing.is_empty() {
        "CANNOT_PARSE_DATA"
    } else {
        metadata.push(("missingFields", problem.missing.join(",")));
        "MISSING_FIELDS"
    };
    status_with_info(Code::InvalidArgument, MSG_ACCESS_DATA, reason, &metadata)
}

pub fn auth_failed(detail: &str) -> Status {
    status_with_info(
        Code::InvalidArgument,
        MSG_AUTH,
        "AUTHENTICATION_FAILED",
        &[("detail", detail.to_owned())],
    )
}

pub fn not_found(key: &str) -> Status {
    status_with_info(
        Code::NotFound,
        MSG_NOT_FOUND,
        "KEY_NOT_FOUND",
        &[("keyId", key.to_owned())],
    )
}

/// Whether an OpenBao error means "these credentials do not work": a 403
/// that survived one re-login, a refused login, an unreadable credential
/// file, or a wrapping token that was already used.
pub fn is_auth_failure(error: &BaoError) -> bool {
    match error {
        BaoError::PermissionDenied { .. } | BaoError::CredentialFile { .. } => true,
        BaoError::BadRequest { path, .. }
        | BaoError::Server { path, .. }
        | BaoError::NotFound { path, .. } => {
            (path.starts_with("auth/") && path.ends_with("/login")) || path == "sys/wrapping/unwrap"
        }
        _ => false,
    }
}

/// Maps an OpenBao error to the status CMK expects.
pub fn status_from_bao(error: &BaoError, rpc: Rpc) -> Status {
    let detail = error.to_string();
    let info = |code: Code, message: &str, reason: &str| {
        status_with_info(code, message, reason, &[("detail", detail.clone())])
    };
    if is_auth_failure(error) {
        return auth_failed(&detail);
    }
    if let BaoError::NotFound { .. } = error {
        return info(Code::NotFound, MSG_NOT_FOUND, "KEY_NOT_FOUND");
    }
    if rpc == Rpc::GetKey {
        return info(Code::Unknown, MSG_GET_KEY, error.reason());
    }
    match error {
        BaoError::BadRequest { message, .. } if message.contains("soft-deleted") => info(
            Code::FailedPrecondition,
            "the key is disabled or pending deletion in OpenBao; enable it first",
            "KEY_DISABLED",
        ),
        BaoError::BadRequest { message, .. } | BaoError::Server { message, .. }
            if message.contains("soft-deleted") =>
        {
            info(
                Code::FailedPrecondition,
                "the key is disabled or pending deletion in OpenBao; enable it first",
                "KEY_DISABLED",
            )
        }
        BaoError::BadRequest { message, .. } => {
            Status::invalid_argument(format!("OpenBao rejected the request: {message}"))
        }
        BaoError::Sealed { .. } => info(
            Code::Unavailable,
            "OpenBao is sealed; unseal it and retry",
            "SEALED",
        ),
        BaoError::Transport { .. } | BaoError::Standby { .. } => info(
            Code::Unavailable,
            "OpenBao is unreachable; check the address, TLS settings and that the server runs",
            error.reason(),
        ),
        BaoError::Server { status, .. } if status.is_server_error() || status.as_u16() == 429 => {
            info(
                Code::Unavailable,
                &format!("OpenBao answered {status}; retry later"),
                error.reason(),
            )
        }
        BaoError::Config(_) => info(Code::InvalidArgument, MSG_ACCESS_DATA, "CANNOT_PARSE_DATA"),
        _ => Status::unknown(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openbao_client::transit::KeyVersionInfo;
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    fn info(soft: bool, deletion: bool) -> KeyInfo {
        let mut versions = BTreeMap::new();
        for n in 1..=3 {
            versions.insert(
                n,
                KeyVersionInfo {
                    created: UNIX_EPOCH + Duration::from_secs(1000 * u64::from(n)),
                    public_key: None,
                },
            );
        }
        KeyInfo {
            name: "openkcm-a".into(),
            key_type: KeyType::Aes256Gcm96,
            latest_version: 3,
            min_available_version: 0,
            min_decryption_version: 2,
            min_encryption_version: 0,
            deletion_allowed: deletion,
            soft_deleted: soft,
            imported_key: false,
            exportable: false,
            supports_encryption: true,
            supports_decryption: true,
            auto_rotate_period: Duration::ZERO,
            versions,
        }
    }

    #[test]
    fn key_ids() {
        let r = parse_key_id("transit/openkcm-x", "transit", "openkcm-").unwrap();
        assert_eq!(
            (r.mount.as_str(), r.name.as_str()),
            ("transit", "openkcm-x")
        );
        let r = parse_key_id(
            "tenants/a/transit/openkcm-x",
            "tenants/a/transit",
            "openkcm-",
        )
        .unwrap();
        assert_eq!(r.mount, "tenants/a/transit");
        let r = parse_key_id("0b7f-uuid", "kms", "openkcm-").unwrap();
        assert_eq!(r.native_id(), "kms/openkcm-0b7f-uuid");
        let r = parse_key_id("openkcm-0b7f", "kms", "openkcm-").unwrap();
        assert_eq!(r.native_id(), "kms/openkcm-0b7f");
        assert!(parse_key_id("", "transit", "p").is_err());
        assert!(parse_key_id("transit/", "transit", "p").is_err());
        assert!(parse_key_id("../sys/x", "transit", "p").is_err());
        assert!(parse_key_id("transit/a b", "transit", "p").is_err());
    }

    #[test]
    fn the_mount_comes_from_the_access_data_never_from_the_key_id() {
        let error = parse_key_id("tenant-b/openkcm-x", "tenant-a", "openkcm-").unwrap_err();
        assert!(
            error.contains("transitMount") && error.contains("tenant-b"),
            "names the field and the fix: {error}"
        );
        assert!(parse_key_id("tenants/a/transit/openkcm-x", "transit", "openkcm-").is_err());
        // A bare id is a name in the access data's mount, however it looks.
        let r = parse_key_id("openkcm-x", "tenant-a", "openkcm-").unwrap();
        assert_eq!(r.native_id(), "tenant-a/openkcm-x");
        assert_eq!(
            split_key_id("tenants/a/transit/openkcm-x").unwrap(),
            (Some("tenants/a/transit"), "openkcm-x")
        );
        assert!(split_key_id("../x/k").is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(key_status(&info(false, false)), ENABLED);
        assert_eq!(key_status(&info(false, true)), ENABLED);
        assert_eq!(key_status(&info(true, false)), DISABLED);
        assert_eq!(key_status(&info(true, true)), PENDING_DELETION);
    }

    #[test]
    fn versions_newest_first_with_min_decryption() {
        let versions = key_versions(&info(false, false));
        let ids: Vec<_> = versions.iter().map(|v| v.version_id.as_str()).collect();
        assert_eq!(ids, ["3", "2", "1"]);
        let states: Vec<_> = versions.iter().map(|v| v.status.as_str()).collect();
        assert_eq!(states, [ENABLED, ENABLED, DISABLED]);
        assert_eq!(versions[0].creation_time.unwrap().seconds, 3000);
        let disabled = key_versions(&info(true, false));
        assert!(disabled.iter().all(|v| v.status == DISABLED));
    }

    #[test]
    fn algorithms_round_trip() {
        for alg in [
            KeyAlgorithm::Aes256,
            KeyAlgorithm::Rsa3072,
            KeyAlgorithm::Rsa4096,
        ] {
            assert_eq!(algorithm(&transit_type(alg).unwrap()), alg);
        }
        assert!(transit_type(KeyAlgorithm::Unspecified).is_none());
        assert_eq!(
            algorithm(&KeyType::ChaCha20Poly1305),
            KeyAlgorithm::Unspecified
        );
    }

    fn error_info(status: &Status) -> rpc::ErrorInfo {
        let details = rpc::Status::decode(status.details()).unwrap();
        rpc::ErrorInfo::decode(details.details[0].value.as_slice()).unwrap()
    }

    #[test]
    fn errors_use_cmks_exact_statuses() {
        let denied = BaoError::PermissionDenied {
            path: "transit/keys/openkcm-a".into(),
            message: "permission denied".into(),
        };
        let status = status_from_bao(&denied, Rpc::Other);
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, MSG_AUTH)
        );
        assert_eq!(error_info(&status).reason, "AUTHENTICATION_FAILED");
        let bad_login = BaoError::BadRequest {
            path: "auth/approle/login".into(),
            message: "invalid role or secret ID".into(),
        };
        assert_eq!(status_from_bao(&bad_login, Rpc::GetKey).message(), MSG_AUTH);
        let sealed = BaoError::Sealed {
            path: "transit/keys/x".into(),
        };
        assert_eq!(
            status_from_bao(&sealed, Rpc::Other).code(),
            Code::Unavailable
        );
        let get = status_from_bao(&sealed, Rpc::GetKey);
        assert_eq!((get.code(), get.message()), (Code::Unknown, MSG_GET_KEY));
        assert_eq!(error_info(&get).reason, "Sealed");
        let soft = BaoError::BadRequest {
            path: "transit/encrypt/x".into(),
            message: "refusing to use soft-deleted key".into(),
        };
        assert_eq!(
            status_from_bao(&soft, Rpc::Other).code(),
            Code::FailedPrecondition
        );
        let missing = BaoError::NotFound {
            path: "transit/keys/x".into(),
            message: String::new(),
        };
        let status = status_from_bao(&missing, Rpc::GetKey);
        assert_eq!(
            (status.code(), status.message()),
            (Code::NotFound, MSG_NOT_FOUND)
        );
    }

    #[test]
    fn access_data_status_lists_missing_fields() {
        let problem = crate::config::AccessDataProblem {
            missing: vec!["roleId".into(), "address".into()],
            ..Default::default()
        };
        let status = invalid_access_data(&problem);
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, MSG_ACCESS_DATA)
        );
        let info = error_info(&status);
        assert_eq!(info.reason, "MISSING_FIELDS");
        assert_eq!(info.metadata["missingFields"], "roleId,address");
    }

    #[test]
    fn refused_access_data_names_each_field_and_fix_in_the_message() {
        let problem = crate::config::AccessDataProblem {
            missing: vec!["roleId".into()],
            refused: vec![
                crate::config::Refusal {
                    field: "secretIdFile".into(),
                    fix: "read only from the plugin YAML (auth.secretIdFile)".into(),
                },
                crate::config::Refusal {
                    field: "address".into(),
                    fix: "use https://".into(),
                },
            ],
            ..Default::default()
        };
        let status = invalid_access_data(&problem);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "access data field secretIdFile is refused: read only from the plugin YAML (auth.secretIdFile); \
             access data field address is refused: use https://"
        );
        let info = error_info(&status);
        assert_eq!(info.reason, "ACCESS_DATA_REFUSED");
        assert_eq!(info.metadata["fields"], "secretIdFile,address");
        assert!(info.metadata["detail"].contains("missing fields: roleId"));
    }
}
