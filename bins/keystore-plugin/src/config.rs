//! The plugin's YAML configuration (from `Config.Configure`) and the access
//! data every request carries in `config.values`. Pure parsing, no I/O
//! except reading the CA file named in the YAML.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The plugin YAML. Every field is optional and `""` is a valid document.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PluginConfig {
    /// OpenBao address used when the access data has none.
    pub address: Option<String>,
    /// Transit mount for bare key ids and new keys.
    pub transit_mount: String,
    /// Prefix of every key name the plugin creates (the policies grant
    /// `transit/keys/openkcm-*`).
    pub key_name_prefix: String,
    /// Logical region reported by ExtractKeyRegion when the access data has none.
    pub region: Option<String>,
    /// Regions ValidateKey accepts; empty means any non-empty region.
    pub regions: Vec<String>,
    pub tls: TlsConfig,
    /// `auto_rotate_period` of new system-managed keys, e.g. `"2160h"`;
    /// unset means no automatic rotation.
    pub auto_rotate_period: Option<String>,
    /// Accept RSA3072/RSA4096 in CreateKey.
    pub allow_rsa: bool,
    /// Let OpenBao rotate BYOK keys after import (`allow_rotation`).
    pub allow_imported_key_rotation: bool,
    pub deletion: DeletionConfig,
    /// Limit for one OpenBao call, in seconds.
    pub request_timeout_seconds: u64,
    /// Access-data defaults used for fields a request does not carry, for
    /// example `{authMethod: approle, roleId: ..., secretIdFile: ...}`.
    pub auth: BTreeMap<String, String>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            address: None,
            transit_mount: "transit".into(),
            key_name_prefix: "openkcm-".into(),
            region: None,
            regions: Vec::new(),
            tls: TlsConfig::default(),
            auto_rotate_period: None,
            allow_rsa: true,
            allow_imported_key_rotation: false,
            deletion: DeletionConfig::default(),
            request_timeout_seconds: 10,
            auth: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsConfig {
    pub ca_cert_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DeletionConfig {
    /// Purge keys at once on DeleteKey instead of leaving them soft-deleted
    /// (PENDING_DELETION) for an operator.
    pub purge_immediately: bool,
}

impl PluginConfig {
    /// Parses the YAML; blank means all defaults.
    pub fn from_yaml(yaml: &str) -> Result<Self, String> {
        if yaml.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: Self = serde_yaml_ng::from_str(yaml).map_err(|e| {
            format!("the plugin's yamlConfiguration is invalid: {e}; see bins/keystore-plugin/README.md for the fields")
        })?;
        if !openbao_client::transit::valid_key_name(
            config.key_name_prefix.trim_end_matches(['-', '_', '.']),
        ) && !config.key_name_prefix.is_empty()
        {
            return Err(format!(
                "keyNamePrefix {:?} must use letters, digits, '_', '-' and '.'",
                config.key_name_prefix
            ));
        }
        Ok(config)
    }
}

/// `google.protobuf.Struct` as JSON.
pub fn struct_to_json(value: &prost_types::Struct) -> Map<String, Value> {
    value
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

fn value_to_json(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
    }
}

/// JSON as `google.protobuf.Struct` (for import parameters).
pub fn json_to_struct(map: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// How the plugin logs in to OpenBao for one request.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthSpec {
    /// Certificate auth with the client certificate and key CMK sends.
    Cert {
        mount: String,
        role: Option<String>,
        /// Certificate PEM followed by the private key PEM.
        identity_pem: String,
    },
    AppRole {
        mount: String,
        role_id: String,
        secret: SecretIdSpec,
    },
    Kubernetes {
        mount: String,
        role: String,
        token_path: PathBuf,
    },
}

impl fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Where an AppRole secret_id comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretIdSpec {
    /// A file holding the secret_id, re-read at every login.
    File(PathBuf),
    /// A file holding a response-wrapped secret_id, unwrapped once.
    WrappedFile(PathBuf),
    /// The secret_id itself (discouraged; only for access data stored in CMK).
    Value(String),
}

impl fmt::Debug for SecretIdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretIdSpec::File(p) => f.debug_tuple("File").field(p).finish(),
            SecretIdSpec::WrappedFile(p) => f.debug_tuple("WrappedFile").field(p).finish(),
            SecretIdSpec::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl AuthSpec {
    pub fn method(&self) -> &'static str {
        match self {
            AuthSpec::Cert { .. } => "cert",
            AuthSpec::AppRole { .. } => "approle",
            AuthSpec::Kubernetes { .. } => "kubernetes",
        }
    }

    pub fn mount(&self) -> &str {
        match self {
            AuthSpec::Cert { mount, .. }
            | AuthSpec::AppRole { mount, .. }
            | AuthSpec::Kubernetes { mount, .. } => mount,
        }
    }

    /// Method, mount and role, never a secret.
    pub fn describe(&self) -> String {
        match self {
            AuthSpec::Cert { mount, role, .. } => {
                format!(
                    "cert at auth/{mount} role {}",
                    role.as_deref().unwrap_or("(any)")
                )
            }
            AuthSpec::AppRole { mount, role_id, .. } => {
                format!("approle at auth/{mount} role_id {role_id}")
            }
            AuthSpec::Kubernetes { mount, role, .. } => {
                format!("kubernetes at auth/{mount} role {role}")
            }
        }
    }
}

/// Everything needed to reach one OpenBao as one identity.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub ca_pem: Option<String>,
    pub tls_server_name: Option<String>,
    pub transit_mount: String,
    pub auth: AuthSpec,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("address", &self.address)
            .field("transit_mount", &self.transit_mount)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The cache key of this identity: a SHA-256 over everything that
    /// decides which token a login yields, secrets included, so two callers
    /// share a token only if they present the same credentials.
    pub fn identity_key(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        let mut part = |label: &str, value: &str| {
            hash.update(label.as_bytes());
            hash.update((value.len() as u64).to_be_bytes());
            hash.update(value.as_bytes());
        };
        part("address", &self.address);
        part("ca", self.ca_pem.as_deref().unwrap_or(""));
        part("sni", self.tls_server_name.as_deref().unwrap_or(""));
        part("method", self.auth.method());
        part("mount", self.auth.mount());
        match &self.auth {
            AuthSpec::Cert {
                role, identity_pem, ..
            } => {
                part("role", role.as_deref().unwrap_or(""));
                part("identity", identity_pem);
            }
            AuthSpec::AppRole {
                role_id, secret, ..
            } => {
                part("role_id", role_id);
                match secret {
                    SecretIdSpec::File(p) => part("secret_file", &p.display().to_string()),
                    SecretIdSpec::WrappedFile(p) => part("wrapped_file", &p.display().to_string()),
                    SecretIdSpec::Value(v) => part("secret_value", v),
                }
            }
            AuthSpec::Kubernetes {
                role, token_path, ..
            } => {
                part("role", role);
                part("token_path", &token_path.display().to_string());
            }
        }
        hash.finalize().into()
    }

    /// The openbao-client login for this identity.
    pub fn login(&self) -> openbao_client::Login {
        use openbao_client::{Credential, Login, SecretIdSource};
        match &self.auth {
            AuthSpec::Cert { mount, role, .. } => Login::Cert {
                mount: mount.clone(),
                name: role.clone(),
            },
            AuthSpec::AppRole {
                mount,
                role_id,
                secret,
            } => Login::AppRole {
                mount: mount.clone(),
                role_id: role_id.clone(),
                secret_id: match secret {
                    SecretIdSpec::File(p) => SecretIdSource::Plain(Credential::File(p.clone())),
                    SecretIdSpec::WrappedFile(p) => {
                        SecretIdSource::Wrapped(Credential::File(p.clone()))
                    }
                    SecretIdSpec::Value(v) => {
                        SecretIdSource::Plain(Credential::Value(SecretString::from(v.clone())))
                    }
                },
            },
            AuthSpec::Kubernetes {
                mount,
                role,
                token_path,
            } => Login::Kubernetes {
                mount: mount.clone(),
                role: role.clone(),
                jwt: Credential::File(token_path.clone()),
            },
        }
    }
}

/// When access data is checked: stored in CMK (ValidateKeyAccessData), or
/// used for a call (CMK has added the client certificate by then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Stored,
    Call,
}

/// Why access data cannot be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessDataProblem {
    pub missing: Vec<String>,
    pub invalid: Vec<String>,
}

impl AccessDataProblem {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.invalid.is_empty()
    }
}

impl fmt::Display for AccessDataProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing fields: {}", self.missing.join(", ")));
        }
        parts.extend(self.invalid.iter().cloned());
        f.write_str(&parts.join("; "))
    }
}

/// Default path of the projected ServiceAccount token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Reads access data (request values over the YAML's `auth` defaults) into a
/// [`Target`]. At [`Stage::Stored`] the certificate and the address may be
/// missing, since CMK and the plugin YAML add them later.
pub fn resolve_target(
    values: &Map<String, Value>,
    config: &PluginConfig,
    config_ca_pem: Option<&str>,
    stage: Stage,
) -> Result<Target, AccessDataProblem> {
    let mut problem = AccessDataProblem::default();
    let get = |key: &str, problem: &mut AccessDataProblem| -> Option<String> {
        match values.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::String(_)) | Some(Value::Null) | None => config
                .auth
                .get(key)
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_owned()),
            Some(other) => {
                problem
                    .invalid
                    .push(format!("{key} must be a string, not {}", json_kind(other)));
                None
            }
        }
    };
    let address = get("address", &mut problem).or_else(|| config.address.clone());
    if let Some(namespace) = get("namespace", &mut problem) {
        problem.invalid.push(format!(
            "namespace {namespace:?} is not supported yet; use a transit mount per tenant (transitMount)"
        ));
    }
    let transit_mount =
        get("transitMount", &mut problem).unwrap_or_else(|| config.transit_mount.clone());
    let ca_pem = get("caCertPem", &mut problem).or_else(|| config_ca_pem.map(str::to_owned));
    let tls_server_name =
        get("tlsServerName", &mut problem).or_else(|| config.tls.server_name.clone());
    let method = get("authMethod", &mut problem).or_else(|| {
        match get("authType", &mut AccessDataProblem::default()).as_deref() {
            Some("AUTH_TYPE_CERTIFICATE") => Some("cert".into()),
            Some("AUTH_TYPE_SECRET") => Some("approle".into()),
            _ => None,
        }
    });
    let method = method.or_else(|| {
        if values.contains_key("roleId") || config.auth.contains_key("roleId") {
            Some("approle".into())
        } else if values.contains_key("kubernetesRole")
            || config.auth.contains_key("kubernetesRole")
        {
            Some("kubernetes".into())
        } else {
            Some("cert".into())
        }
    });
    let mount = get("authMount", &mut problem);
    let auth = match method.as_deref() {
        Some("cert") => {
            let cert = get("clientCert", &mut problem);
            let key = get("privateKey", &mut problem);
            match (cert, key) {
                (Some(cert), Some(key)) => Some(AuthSpec::Cert {
                    mount: mount.unwrap_or_else(|| "cert".into()),
                    role: get("certRole", &mut problem),
                    identity_pem: format!("{}\n{}\n", cert.trim_end(), key.trim_end()),
                }),
                (cert, key) => {
                    if stage == Stage::Call {
                        if cert.is_none() {
                            problem.missing.push("clientCert".into());
                        }
                        if key.is_none() {
                            problem.missing.push("privateKey".into());
                        }
                    }
                    None
                }
            }
        }
        Some("approle") => {
            let role_id = get("roleId", &mut problem);
            if role_id.is_none() {
                problem.missing.push("roleId".into());
            }
            let secret = if let Some(path) = get("secretIdFile", &mut problem) {
                Some(SecretIdSpec::File(path.into()))
            } else if let Some(path) = get("wrappedSecretIdFile", &mut problem) {
                Some(SecretIdSpec::WrappedFile(path.into()))
            } else {
                get("secretId", &mut problem).map(SecretIdSpec::Value)
            };
            if secret.is_none() {
                problem
                    .missing
                    .push("secretIdFile|wrappedSecretIdFile|secretId".into());
            }
            match (role_id, secret) {
                (Some(role_id), Some(secret)) => Some(AuthSpec::AppRole {
                    mount: mount.unwrap_or_else(|| "approle".into()),
                    role_id,
                    secret,
                }),
                _ => None,
            }
        }
        Some("kubernetes") => match get("kubernetesRole", &mut problem) {
            Some(role) => Some(AuthSpec::Kubernetes {
                mount: mount.unwrap_or_else(|| "kubernetes".into()),
                role,
                token_path: get("serviceAccountTokenPath", &mut problem)
                    .unwrap_or_else(|| SERVICE_ACCOUNT_TOKEN.into())
                    .into(),
            }),
            None => {
                problem.missing.push("kubernetesRole".into());
                None
            }
        },
        Some(other) => {
            problem.invalid.push(format!(
                "authMethod {other:?} is not supported; use cert, approle or kubernetes"
            ));
            None
        }
        None => None,
    };
    if address.is_none() && stage == Stage::Call {
        problem.missing.push("address".into());
    }
    if let Some(address) = &address
        && !(address.starts_with("https://") || address.starts_with("http://"))
    {
        problem.invalid.push(format!(
            "address {address:?} must start with https:// (or http://)"
        ));
    }
    if !valid_mount(&transit_mount) {
        problem.invalid.push(format!(
            "transitMount {transit_mount:?} is not a valid mount path"
        ));
    }
    if !problem.is_empty() {
        return Err(problem);
    }
    match (address, auth) {
        (Some(address), Some(auth)) => Ok(Target {
            address,
            ca_pem,
            tls_server_name,
            transit_mount,
            auth,
        }),
        // Stored access data without certificate or address: valid, but
        // not a usable target yet.
        _ => Err(AccessDataProblem::default()),
    }
}

/// Checks stored access data (ValidateKeyAccessData).
pub fn validate_stored(
    values: &Map<String, Value>,
    config: &PluginConfig,
) -> Result<(), AccessDataProblem> {
    match resolve_target(values, config, None, Stage::Stored) {
        Ok(_) => Ok(()),
        Err(problem) if problem.is_empty() => Ok(()),
        Err(problem) => Err(problem),
    }
}

/// A mount path: segments of letters, digits, `_`, `-` and `.`.
pub fn valid_mount(mount: &str) -> bool {
    let mount = mount.trim_matches('/');
    !mount.is_empty()
        && mount
            .split('/')
            .all(openbao_client::transit::valid_key_name)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn blank_yaml_is_all_defaults_and_typos_are_refused() {
        assert_eq!(
            PluginConfig::from_yaml("").unwrap(),
            PluginConfig::default()
        );
        assert_eq!(
            PluginConfig::from_yaml("  \n").unwrap().transit_mount,
            "transit"
        );
        let config = PluginConfig::from_yaml(
            "address: https://bao:8200\nregions: [eu, us]\ndeletion: {purgeImmediately: true}\nauth: {authMethod: approle}\n",
        )
        .unwrap();
        assert_eq!(config.regions, ["eu", "us"]);
        assert!(config.deletion.purge_immediately);
        let err = PluginConfig::from_yaml("adress: x").unwrap_err();
        assert!(err.contains("adress") && err.contains("README"), "{err}");
    }

    #[test]
    fn cmk_certificate_access_data_becomes_cert_auth() {
        let values = map(json!({
            "authType": "AUTH_TYPE_CERTIFICATE", "clientCert": "CERT", "privateKey": "KEY",
            "address": "https://bao:8200", "certRole": "tenant-a", "isEditable": true
        }));
        let target = resolve_target(&values, &PluginConfig::default(), None, Stage::Call).unwrap();
        assert_eq!(target.auth.method(), "cert");
        assert_eq!(target.auth.mount(), "cert");
        assert_eq!(target.transit_mount, "transit");
        assert!(!format!("{target:?}").contains("KEY"));
    }

    #[test]
    fn approle_needs_role_id_and_a_secret_source() {
        let config = PluginConfig {
            address: Some("https://bao:8200".into()),
            ..Default::default()
        };
        let problem = resolve_target(
            &map(json!({"authMethod": "approle"})),
            &config,
            None,
            Stage::Call,
        )
        .unwrap_err();
        assert_eq!(
            problem.missing,
            ["roleId", "secretIdFile|wrappedSecretIdFile|secretId"]
        );
        let target = resolve_target(
            &map(json!({"roleId": "r", "wrappedSecretIdFile": "/run/w"})),
            &config,
            None,
            Stage::Call,
        )
        .unwrap();
        assert!(matches!(
            target.auth,
            AuthSpec::AppRole {
                secret: SecretIdSpec::WrappedFile(_),
                ..
            }
        ));
    }

    #[test]
    fn yaml_auth_defaults_fill_gaps_and_requests_win() {
        let mut config = PluginConfig::default();
        config.auth.insert("authMethod".into(), "kubernetes".into());
        config.auth.insert("kubernetesRole".into(), "cmk".into());
        config.address = Some("https://bao:8200".into());
        let target = resolve_target(&Map::new(), &config, None, Stage::Call).unwrap();
        assert_eq!(
            target.auth.describe(),
            "kubernetes at auth/kubernetes role cmk"
        );
        let other = resolve_target(
            &map(json!({"kubernetesRole": "x"})),
            &config,
            None,
            Stage::Call,
        )
        .unwrap();
        assert_eq!(
            other.auth.describe(),
            "kubernetes at auth/kubernetes role x"
        );
    }

    #[test]
    fn bad_values_are_reported_not_guessed() {
        let problem = resolve_target(
            &map(json!({"address": 5, "authMethod": "ldap", "namespace": "t1", "transitMount": "../sys"})),
            &PluginConfig::default(),
            None,
            Stage::Call,
        )
        .unwrap_err();
        let text = problem.to_string();
        assert!(text.contains("address must be a string"), "{text}");
        assert!(text.contains("ldap"), "{text}");
        assert!(text.contains("namespace"), "{text}");
        assert!(text.contains("transitMount"), "{text}");
    }

    #[test]
    fn stored_cert_access_data_is_valid_without_the_certificate() {
        let values = map(json!({"authMethod": "cert", "certRole": "tenant"}));
        assert!(validate_stored(&values, &PluginConfig::default()).is_ok());
        assert!(
            validate_stored(
                &map(json!({"authMethod": "approle"})),
                &PluginConfig::default()
            )
            .is_err()
        );
    }

    #[test]
    fn identities_differ_when_any_secret_differs() {
        let config = PluginConfig::default();
        let target = |key: &str| {
            resolve_target(
                &map(json!({"address": "https://b:1", "clientCert": "C", "privateKey": key})),
                &config,
                None,
                Stage::Call,
            )
            .unwrap()
        };
        assert_eq!(target("K1").identity_key(), target("K1").identity_key());
        assert_ne!(target("K1").identity_key(), target("K2").identity_key());
    }

    #[test]
    fn structs_round_trip_through_json() {
        let json = map(json!({"a": "x", "b": true, "c": 2.0, "d": {"e": [1.0, null]}}));
        assert_eq!(struct_to_json(&json_to_struct(&json)), json);
    }
}
