//! The plugin's YAML configuration (from `Config.Configure`) and the access
//! data every request carries in `config.values`. Pure parsing, no I/O
//! except reading the CA file named in the YAML.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Default most sessions (identities with a token) kept at once.
pub const DEFAULT_MAX_CACHED_SESSIONS: usize = 1024;

/// The plugin YAML. Every field is optional and `""` is a valid document.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PluginConfig {
    /// The OpenBao address for requests whose access data names none, and
    /// the one address (with [`PluginConfig::allowed_addresses`]) the
    /// plugin's own credential is ever sent to. `https://` only.
    pub address: Option<String>,
    /// Further addresses of the same OpenBao (other nodes, another DNS
    /// name) that access data may name while using the plugin's own
    /// credential. They are verified with `tls` too. `https://` only.
    pub allowed_addresses: Vec<String>,
    /// Transit mount for requests whose access data names none.
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
    /// Most sessions kept at once. When a new identity would exceed it, the
    /// cache is emptied and the evicted sessions' tokens are revoked.
    pub max_cached_sessions: usize,
    /// The plugin's own OpenBao credential, for requests whose access data
    /// carries none; see [`PluginCredential`].
    pub auth: PluginCredential,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            address: None,
            allowed_addresses: Vec::new(),
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
            max_cached_sessions: DEFAULT_MAX_CACHED_SESSIONS,
            auth: PluginCredential::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsConfig {
    /// CA bundle verifying the YAML's addresses; for requests with their
    /// own credential, the default when the access data has no `caCertPem`.
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

/// The plugin's own credential (YAML `auth`). Its files and token path are
/// the only files the plugin reads for a login, and it is only sent to the
/// YAML's `address` or `allowedAddresses`. It names files, never secrets:
/// the YAML is configuration, often readable by more people than a Secret.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PluginCredential {
    /// `approle` or `kubernetes`; inferred from the other fields when unset.
    pub auth_method: Option<String>,
    /// Default `approle` or `kubernetes`.
    pub auth_mount: Option<String>,
    pub role_id: Option<String>,
    /// A file holding the secret_id, re-read at every login.
    pub secret_id_file: Option<PathBuf>,
    /// A file holding a response-wrapped secret_id, unwrapped once.
    pub wrapped_secret_id_file: Option<PathBuf>,
    pub kubernetes_role: Option<String>,
    /// Default [`SERVICE_ACCOUNT_TOKEN`].
    pub service_account_token_path: Option<PathBuf>,
    /// Only there to refuse an inline secret with a helpful message; the
    /// value itself is never kept.
    #[serde(rename = "secretId", deserialize_with = "present")]
    inline_secret_id: bool,
}

/// Deserializes any value and keeps only the fact that it was there.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

impl PluginCredential {
    /// Whether the YAML configures a credential at all.
    pub fn is_configured(&self) -> bool {
        self != &Self::default()
    }

    /// The login this credential describes, `None` when none is configured.
    pub fn auth_spec(&self) -> Result<Option<AuthSpec>, String> {
        if !self.is_configured() {
            return Ok(None);
        }
        if self.inline_secret_id {
            return Err("auth.secretId is not accepted in the plugin YAML; write the secret_id to a file (a mounted Secret) and set auth.secretIdFile".into());
        }
        let non_empty = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let method = match non_empty(&self.auth_method) {
            Some(method) => method,
            None if self.kubernetes_role.is_some() || self.service_account_token_path.is_some() => {
                "kubernetes".into()
            }
            None => "approle".into(),
        };
        match method.as_str() {
            "approle" => {
                let role_id = non_empty(&self.role_id)
                    .ok_or("auth.roleId is missing; set the role_id of the plugin's AppRole")?;
                let secret = match (&self.secret_id_file, &self.wrapped_secret_id_file) {
                    (Some(file), None) => SecretIdSpec::File(file.clone()),
                    (None, Some(file)) => SecretIdSpec::WrappedFile(file.clone()),
                    (Some(_), Some(_)) => {
                        return Err(
                            "auth.secretIdFile and auth.wrappedSecretIdFile are both set; keep one"
                                .into(),
                        );
                    }
                    (None, None) => {
                        return Err("auth.secretIdFile (or auth.wrappedSecretIdFile) is missing; name the file holding the AppRole secret_id".into());
                    }
                };
                if self.kubernetes_role.is_some() || self.service_account_token_path.is_some() {
                    return Err(
                        "auth mixes AppRole and Kubernetes fields; keep those of one method".into(),
                    );
                }
                Ok(Some(AuthSpec::AppRole {
                    mount: non_empty(&self.auth_mount).unwrap_or_else(|| "approle".into()),
                    role_id,
                    secret,
                }))
            }
            "kubernetes" => {
                let role = non_empty(&self.kubernetes_role)
                    .ok_or("auth.kubernetesRole is missing; set the OpenBao Kubernetes role bound to the plugin's ServiceAccount")?;
                if self.role_id.is_some()
                    || self.secret_id_file.is_some()
                    || self.wrapped_secret_id_file.is_some()
                {
                    return Err(
                        "auth mixes AppRole and Kubernetes fields; keep those of one method".into(),
                    );
                }
                Ok(Some(AuthSpec::Kubernetes {
                    mount: non_empty(&self.auth_mount).unwrap_or_else(|| "kubernetes".into()),
                    role,
                    token_path: self
                        .service_account_token_path
                        .clone()
                        .unwrap_or_else(|| SERVICE_ACCOUNT_TOKEN.into()),
                }))
            }
            other => Err(format!(
                "auth.authMethod {other:?} is not supported for the plugin's own credential; use approle or kubernetes (certificate auth comes with each request)"
            )),
        }
    }
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
        if let Some(address) = &config.address {
            https_origin(address).map_err(|why| format!("address {why}"))?;
        }
        for (index, address) in config.allowed_addresses.iter().enumerate() {
            https_origin(address).map_err(|why| format!("allowedAddresses[{index}] {why}"))?;
        }
        if config.max_cached_sessions == 0 {
            return Err("maxCachedSessions must be at least 1".into());
        }
        config.auth.auth_spec()?;
        Ok(config)
    }

    /// The origins the plugin's own credential may be sent to: `address`
    /// and `allowedAddresses`, normalised by [`https_origin`].
    pub fn own_credential_origins(&self) -> Vec<String> {
        self.address
            .iter()
            .chain(&self.allowed_addresses)
            .filter_map(|address| https_origin(address).ok())
            .collect()
    }
}

/// The origin `https://host:port[/path]` of an OpenBao address, the form in
/// which addresses are compared. `Err` says why the address is refused
/// (without repeating it: it could carry a password) and how to fix it.
pub fn https_origin(address: &str) -> Result<String, String> {
    let url = url::Url::parse(address.trim())
        .map_err(|_| "is not a URL; use e.g. https://openbao.example:8200".to_owned())?;
    if url.scheme() != "https" {
        return Err(
            "must start with https://: the plugin sends credentials and key material only over TLS; use OpenBao's https:// address"
                .into(),
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry a user name or password; credentials belong in the auth fields".into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment; use https://host:port".into());
    }
    let host = url
        .host_str()
        .ok_or_else(|| "has no host; use e.g. https://openbao.example:8200".to_owned())?;
    let port = url.port_or_known_default().unwrap_or(443);
    let path = url.path().trim_end_matches('/');
    Ok(format!("https://{host}:{port}{path}"))
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
    pub owner: CredentialOwner,
}

/// Whose credential a request logs in with, which decides where it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialOwner {
    /// The access data's own (`clientCert` and `privateKey`, or `roleId`
    /// and `secretId`): the caller chose it, so it may name any `https://`
    /// address and CA.
    Request,
    /// The plugin YAML's `auth`: only for the YAML's `address` and
    /// `allowedAddresses`, verified with the YAML's `tls`.
    Plugin,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("address", &self.address)
            .field("transit_mount", &self.transit_mount)
            .field("auth", &self.auth)
            .field("owner", &self.owner)
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
    /// Fields refused because honouring them would let the access data
    /// choose a file the plugin reads or a server its own credential goes to.
    pub refused: Vec<Refusal>,
}

impl AccessDataProblem {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.invalid.is_empty() && self.refused.is_empty()
    }

    fn refuse(&mut self, field: &str, fix: impl Into<String>) {
        self.refused.push(Refusal {
            field: field.to_owned(),
            fix: fix.into(),
        });
    }
}

impl fmt::Display for AccessDataProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.refused.iter().map(ToString::to_string).collect();
        if !self.missing.is_empty() {
            parts.push(format!("missing fields: {}", self.missing.join(", ")));
        }
        parts.extend(self.invalid.iter().cloned());
        f.write_str(&parts.join("; "))
    }
}

/// One refused access-data field, with what to do instead. The text never
/// repeats a value of the access data (it could be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub fix: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access data field {} is refused: {}",
            self.field, self.fix
        )
    }
}

/// Default path of the projected ServiceAccount token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Access-data fields naming a file on the plugin's host, and how to do
/// without. Access data comes from CMK's tenants; a path there would let a
/// tenant have any file the plugin can read sent to a server of its choice.
const FILE_FIELDS: [(&str, &str); 5] = [
    (
        "secretIdFile",
        "credential files are read only from the plugin YAML (auth.secretIdFile); remove it, or send the tenant's own roleId and secretId",
    ),
    (
        "wrappedSecretIdFile",
        "credential files are read only from the plugin YAML (auth.wrappedSecretIdFile); remove it, or send the tenant's own roleId and secretId",
    ),
    (
        "serviceAccountTokenPath",
        "the ServiceAccount token path is read only from the plugin YAML (auth.serviceAccountTokenPath); remove it",
    ),
    (
        "tokenFile",
        "the plugin reads no token file named in access data; remove it and send the tenant's own credential",
    ),
    (
        "caCertFile",
        "the plugin reads no CA file named in access data; send the CA itself as caCertPem, or set tls.caCertFile in the plugin YAML",
    ),
];

/// What the access data resolves to, before it has to be usable for a
/// call: [`Stage::Stored`] access data may lack the certificate CMK adds
/// later, or name a role whose credential another process holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAccess {
    pub address: Option<String>,
    pub transit_mount: String,
    pub ca_pem: Option<String>,
    pub tls_server_name: Option<String>,
    /// `cert`, `approle` or `kubernetes`.
    pub method: String,
    pub auth_mount: String,
    /// Cert role, AppRole role_id or Kubernetes role.
    pub role: Option<String>,
    /// The login, when the access data or the YAML fully provide one.
    pub auth: Option<AuthSpec>,
    pub owner: Option<CredentialOwner>,
}

/// Reads string fields of access data, noting wrongly typed ones.
struct Fields<'a> {
    values: &'a Map<String, Value>,
    problem: AccessDataProblem,
}

impl Fields<'_> {
    fn string(&mut self, key: &str) -> Option<String> {
        match self.values.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::String(_)) | Some(Value::Null) | None => None,
            Some(other) => {
                self.problem
                    .invalid
                    .push(format!("{key} must be a string, not {}", json_kind(other)));
                None
            }
        }
    }

    fn is_set(&self, key: &str) -> bool {
        match self.values.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
        }
    }
}

/// Resolves access data against the plugin YAML:
///
/// - File and token paths come only from the YAML: access data naming one
///   is refused.
/// - A request carrying its own credential (`clientCert` and `privateKey`,
///   or `secretId` with `roleId`) logs in with it, at any `https://`
///   address and with its own `caCertPem`.
/// - Otherwise the YAML's `auth` is used, but only when the access data
///   names no other role, only at the YAML's `address` or one of its
///   `allowedAddresses`, and only with the YAML's `tls`.
/// - Only `https://` addresses are accepted.
///
/// The method is the access data's `authMethod`, else approle when it
/// carries a `secretId`, else the YAML credential's when the address is
/// one it may go to, else CMK's `authType`, else inferred from
/// `roleId`/`kubernetesRole`, else cert. So CMK's certificate (sent with
/// every request) is used for a customer's OpenBao, and the plugin's own
/// credential for its own.
pub fn resolve_access(
    values: &Map<String, Value>,
    config: &PluginConfig,
    config_ca_pem: Option<&str>,
    stage: Stage,
) -> Result<ResolvedAccess, AccessDataProblem> {
    let mut fields = Fields {
        values,
        problem: AccessDataProblem::default(),
    };
    for (field, fix) in FILE_FIELDS {
        if fields.is_set(field) {
            fields.problem.refuse(field, fix);
        }
    }
    if let Some(namespace) = fields.string("namespace") {
        fields.problem.invalid.push(format!(
            "namespace {namespace:?} is not supported yet; use a transit mount per tenant (transitMount)"
        ));
    }
    let plugin_auth_configured = config.auth.is_configured();
    let plugin_auth = match config.auth.auth_spec() {
        Ok(auth) => auth,
        Err(why) => {
            fields.problem.invalid.push(format!(
                "the plugin YAML's own credential is unusable: {why}"
            ));
            None
        }
    };
    let requested_address = fields.string("address");
    let transit_mount = fields
        .string("transitMount")
        .unwrap_or_else(|| config.transit_mount.clone());
    let requested_ca = fields.string("caCertPem");
    let requested_server_name = fields.string("tlsServerName");
    let auth_type = fields.string("authType");
    let client_cert = fields.string("clientCert");
    let private_key = fields.string("privateKey");
    let secret_id = fields.string("secretId");
    let role_id = fields.string("roleId");
    let kubernetes_role = fields.string("kubernetesRole");
    let cert_role = fields.string("certRole");
    let requested_mount = fields.string("authMount");
    let address = requested_address.clone().or_else(|| config.address.clone());
    let own_origins = config.own_credential_origins();
    // Where the plugin's own credential may go (no address means the
    // YAML's); elsewhere it is no default.
    let at_own_origin = match &address {
        None => true,
        Some(address) => https_origin(address).is_ok_and(|origin| own_origins.contains(&origin)),
    };
    let plugin_credential_elsewhere =
        plugin_auth_configured && !at_own_origin && stage == Stage::Call;
    let method = fields
        .string("authMethod")
        .or_else(|| secret_id.as_ref().map(|_| "approle".to_owned()))
        .or_else(|| {
            plugin_auth
                .as_ref()
                .filter(|_| at_own_origin)
                .map(|auth| auth.method().to_owned())
        })
        .or_else(|| match auth_type.as_deref() {
            Some("AUTH_TYPE_CERTIFICATE") => Some("cert".to_owned()),
            Some("AUTH_TYPE_SECRET") => Some("approle".to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| {
            if role_id.is_some() {
                "approle"
            } else if kubernetes_role.is_some() {
                "kubernetes"
            } else {
                "cert"
            }
            .to_owned()
        });
    let mut problem = fields.problem;
    let (requested_role, role_field, plugin_role_field) = match method.as_str() {
        "approle" => (role_id.clone(), "roleId", "auth.roleId"),
        "kubernetes" => (
            kubernetes_role.clone(),
            "kubernetesRole",
            "auth.kubernetesRole",
        ),
        _ => (cert_role.clone(), "certRole", ""),
    };
    let brings_own = match method.as_str() {
        "cert" => client_cert.is_some() || private_key.is_some(),
        "approle" => secret_id.is_some(),
        _ => false,
    };
    let mut auth = None;
    let mut owner = None;
    match method.as_str() {
        "cert" | "approle" | "kubernetes" => {}
        other => problem.invalid.push(format!(
            "authMethod {other:?} is not supported; use cert, approle or kubernetes"
        )),
    }
    if brings_own {
        let mount = requested_mount.clone().unwrap_or_else(|| method.clone());
        match (
            method.as_str(),
            client_cert,
            private_key,
            &role_id,
            secret_id,
        ) {
            ("cert", Some(cert), Some(key), _, _) => {
                auth = Some(AuthSpec::Cert {
                    mount,
                    role: cert_role.clone(),
                    identity_pem: format!("{}\n{}\n", cert.trim_end(), key.trim_end()),
                });
            }
            ("cert", cert, _, _, _) => problem.missing.push(
                if cert.is_none() {
                    "clientCert"
                } else {
                    "privateKey"
                }
                .into(),
            ),
            ("approle", _, _, Some(role_id), Some(secret)) => {
                auth = Some(AuthSpec::AppRole {
                    mount,
                    role_id: role_id.clone(),
                    secret: SecretIdSpec::Value(secret),
                });
            }
            _ => problem.missing.push("roleId".into()),
        }
        owner = auth.as_ref().map(|_| CredentialOwner::Request);
    } else if let Some(plugin) = plugin_auth.filter(|auth| auth.method() == method) {
        // The plugin's credential logs in as the YAML's role only: access
        // data naming another role would pick a role the platform's
        // identity may also be bound to.
        let plugin_role = match &plugin {
            AuthSpec::AppRole { role_id, .. } => Some(role_id.as_str()),
            AuthSpec::Kubernetes { role, .. } => Some(role.as_str()),
            AuthSpec::Cert { .. } => None,
        };
        let mut conflicts = Vec::new();
        if let Some(role) = &requested_role
            && Some(role.as_str()) != plugin_role
        {
            conflicts.push((role_field, plugin_role_field));
        }
        if let Some(mount) = &requested_mount
            && mount.trim_matches('/') != plugin.mount().trim_matches('/')
        {
            conflicts.push(("authMount", "auth.authMount"));
        }
        if conflicts.is_empty() {
            auth = Some(plugin);
            owner = Some(CredentialOwner::Plugin);
        } else if stage == Stage::Call {
            for (field, yaml_field) in conflicts {
                problem.refuse(
                    field,
                    format!(
                        "it differs from the plugin's own credential ({yaml_field} in the plugin YAML) and the access data carries no credential for it; send that role's own credential with it, or remove {field} to use the plugin's credential"
                    ),
                );
            }
        }
        // Stored access data may name a role whose credential another
        // process (the crypto layer's plugin) holds in its own YAML.
    } else if plugin_credential_elsewhere {
        // A call without a credential of its own at an address the
        // plugin's credential may not go to: the address check below says
        // why and what to do, which helps more than a list of fields.
    } else {
        match method.as_str() {
            "cert" if stage == Stage::Call => {
                problem.missing.push("clientCert".into());
                problem.missing.push("privateKey".into());
            }
            "approle" => {
                if role_id.is_none() {
                    problem.missing.push("roleId".into());
                }
                if stage == Stage::Call {
                    problem.missing.push("secretId".into());
                }
            }
            "kubernetes" => {
                if kubernetes_role.is_none() {
                    problem.missing.push("kubernetesRole".into());
                }
                if stage == Stage::Call {
                    problem.refuse(
                        "authMethod",
                        "kubernetes auth logs in with the plugin's own ServiceAccount token, so it is configured only in the plugin YAML (auth.authMethod: kubernetes and auth.kubernetesRole); configure it there, or send the tenant's own credential",
                    );
                }
            }
            _ => {}
        }
    }

    match &address {
        Some(address) => match https_origin(address) {
            Err(why) => problem.refuse("address", format!("the address {why}")),
            Ok(origin) => {
                let wants_own_credential = owner == Some(CredentialOwner::Plugin)
                    || (owner.is_none() && !brings_own && plugin_credential_elsewhere);
                if wants_own_credential && !own_origins.contains(&origin) {
                    problem.refuse(
                        "address",
                        format!(
                            "{origin} is not an address of the plugin's own credential, which goes only to the plugin YAML's address and allowedAddresses; add {origin} to allowedAddresses in the plugin YAML, or send the tenant's own credential (clientCert and privateKey, or roleId and secretId)"
                        ),
                    );
                }
            }
        },
        None if stage == Stage::Call => problem.missing.push("address".into()),
        None => {}
    }
    let (ca_pem, tls_server_name) = if owner == Some(CredentialOwner::Plugin) {
        if requested_ca.as_deref().map(str::trim) != config_ca_pem.map(str::trim)
            && requested_ca.is_some()
        {
            problem.refuse(
                "caCertPem",
                "the plugin's own credential is sent only to servers verified with the plugin YAML's tls.caCertFile; remove caCertPem, or send the tenant's own credential with it",
            );
        }
        if requested_server_name.is_some() && requested_server_name != config.tls.server_name {
            problem.refuse(
                "tlsServerName",
                "the plugin's own credential is sent only to servers verified as the plugin YAML's tls.serverName; remove tlsServerName, or send the tenant's own credential with it",
            );
        }
        (
            config_ca_pem.map(str::to_owned),
            config.tls.server_name.clone(),
        )
    } else {
        (
            requested_ca.or_else(|| config_ca_pem.map(str::to_owned)),
            requested_server_name.or_else(|| config.tls.server_name.clone()),
        )
    };
    if !valid_mount(&transit_mount) {
        problem.invalid.push(format!(
            "transitMount {transit_mount:?} is not a valid mount path"
        ));
    }
    if !problem.is_empty() {
        return Err(problem);
    }
    let auth_mount = auth
        .as_ref()
        .map(|auth| auth.mount().to_owned())
        .or(requested_mount)
        .unwrap_or_else(|| method.clone());
    let role = match &auth {
        Some(AuthSpec::Cert { role, .. }) => role.clone(),
        Some(AuthSpec::AppRole { role_id, .. }) => Some(role_id.clone()),
        Some(AuthSpec::Kubernetes { role, .. }) => Some(role.clone()),
        None => requested_role,
    };
    Ok(ResolvedAccess {
        address,
        transit_mount,
        ca_pem,
        tls_server_name,
        method,
        auth_mount,
        role,
        auth,
        owner,
    })
}

/// Resolves access data to a usable [`Target`] (see [`resolve_access`]).
/// At [`Stage::Stored`], access data without certificate or address is
/// valid but gives no target: the error is then empty.
pub fn resolve_target(
    values: &Map<String, Value>,
    config: &PluginConfig,
    config_ca_pem: Option<&str>,
    stage: Stage,
) -> Result<Target, AccessDataProblem> {
    let access = resolve_access(values, config, config_ca_pem, stage)?;
    match (access.address, access.auth, access.owner) {
        (Some(address), Some(auth), Some(owner)) => Ok(Target {
            address,
            ca_pem: access.ca_pem,
            tls_server_name: access.tls_server_name,
            transit_mount: access.transit_mount,
            auth,
            owner,
        }),
        _ => Err(AccessDataProblem::default()),
    }
}

/// Checks stored access data (ValidateKeyAccessData).
pub fn validate_stored(
    values: &Map<String, Value>,
    config: &PluginConfig,
    config_ca_pem: Option<&str>,
) -> Result<(), AccessDataProblem> {
    resolve_access(values, config, config_ca_pem, Stage::Stored).map(|_| ())
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
    use std::path::Path;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    const BAO: &str = "https://bao.example:8200";

    /// A YAML with the plugin's own AppRole credential.
    fn with_own_approle() -> PluginConfig {
        PluginConfig::from_yaml(&format!(
            "address: {BAO}\nallowedAddresses: ['https://bao-1.example:8200/']\n\
             auth: {{roleId: platform-role, secretIdFile: /run/secrets/openbao/secret-id}}\n"
        ))
        .unwrap()
    }

    fn call(values: Value, config: &PluginConfig) -> Result<Target, AccessDataProblem> {
        resolve_target(&map(values), config, Some("YAML CA"), Stage::Call)
    }

    fn refused_fields(problem: &AccessDataProblem) -> Vec<&str> {
        problem.refused.iter().map(|r| r.field.as_str()).collect()
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
            "address: https://bao:8200\nregions: [eu, us]\ndeletion: {purgeImmediately: true}\nmaxCachedSessions: 3\n",
        )
        .unwrap();
        assert_eq!(config.regions, ["eu", "us"]);
        assert!(config.deletion.purge_immediately);
        assert_eq!(config.max_cached_sessions, 3);
        let err = PluginConfig::from_yaml("adress: x").unwrap_err();
        assert!(err.contains("adress") && err.contains("README"), "{err}");
    }

    #[test]
    fn yaml_addresses_must_be_https() {
        let err = PluginConfig::from_yaml("address: http://bao:8200").unwrap_err();
        assert!(
            err.starts_with("address ") && err.contains("https://"),
            "{err}"
        );
        let err =
            PluginConfig::from_yaml("allowedAddresses: [https://a:1, http://b:2]").unwrap_err();
        assert!(err.contains("allowedAddresses[1]"), "{err}");
        let err = PluginConfig::from_yaml("address: https://user:pw@bao:8200").unwrap_err();
        assert!(!err.contains("pw"), "the password is not repeated: {err}");
        assert!(PluginConfig::from_yaml("maxCachedSessions: 0").is_err());
    }

    #[test]
    fn yaml_credential_is_complete_and_names_files_not_secrets() {
        let own = with_own_approle().auth.auth_spec().unwrap().unwrap();
        assert_eq!(
            own.describe(),
            "approle at auth/approle role_id platform-role"
        );
        let kubernetes = PluginConfig::from_yaml("auth: {kubernetesRole: cmk}")
            .unwrap()
            .auth
            .auth_spec()
            .unwrap()
            .unwrap();
        assert!(matches!(
            &kubernetes,
            AuthSpec::Kubernetes { token_path, .. } if token_path == Path::new(SERVICE_ACCOUNT_TOKEN)
        ));
        let err = PluginConfig::from_yaml("auth: {roleId: r, secretId: s3cr3t}").unwrap_err();
        assert!(
            err.contains("auth.secretIdFile") && !err.contains("s3cr3t"),
            "{err}"
        );
        let err = PluginConfig::from_yaml("auth: {authMethod: approle, roleId: r}").unwrap_err();
        assert!(err.contains("auth.secretIdFile"), "{err}");
        let err = PluginConfig::from_yaml("auth: {authMethod: cert}").unwrap_err();
        assert!(err.contains("approle or kubernetes"), "{err}");
        let err = PluginConfig::from_yaml("auth: {roleId: r, secretIdFile: /a, kubernetesRole: k}")
            .unwrap_err();
        assert!(err.contains("one method"), "{err}");
    }

    #[test]
    fn cmk_certificate_access_data_becomes_cert_auth_owned_by_the_request() {
        let values = json!({
            "authType": "AUTH_TYPE_CERTIFICATE", "clientCert": "CERT", "privateKey": "KEY",
            "address": "https://tenant-bao:8200", "certRole": "tenant-a", "isEditable": true,
            "caCertPem": "TENANT CA"
        });
        let target = call(values, &PluginConfig::default()).unwrap();
        assert_eq!(target.auth.method(), "cert");
        assert_eq!(target.auth.mount(), "cert");
        assert_eq!(target.owner, CredentialOwner::Request);
        assert_eq!(target.transit_mount, "transit");
        assert_eq!(target.ca_pem.as_deref(), Some("TENANT CA"));
        assert!(!format!("{target:?}").contains("KEY"));
    }

    #[test]
    fn the_plugins_credential_is_used_only_at_the_yamls_addresses() {
        let config = with_own_approle();
        // No credential in the access data: the plugin's own, at its address.
        let target = call(json!({}), &config).unwrap();
        assert_eq!(target.owner, CredentialOwner::Plugin);
        assert_eq!(target.address, BAO);
        assert_eq!(target.ca_pem.as_deref(), Some("YAML CA"));
        assert!(matches!(
            &target.auth,
            AuthSpec::AppRole { secret: SecretIdSpec::File(f), .. } if f == Path::new("/run/secrets/openbao/secret-id")
        ));
        // The same address spelled differently, and an allowed address.
        for same in ["https://BAO.example:8200/", "https://bao-1.example:8200"] {
            assert_eq!(
                call(json!({"address": same}), &config).unwrap().address,
                same
            );
        }
        // Another host, another port, or plain http: refused, naming the
        // field and the fix.
        for other in [
            "https://evil.example:8200",
            "https://bao.example:8201",
            "https://bao.example",
        ] {
            let problem = call(json!({"address": other}), &config).unwrap_err();
            assert_eq!(refused_fields(&problem), ["address"], "{other}");
            assert!(
                problem.to_string().contains("allowedAddresses"),
                "{problem}"
            );
        }
        let problem = call(json!({"address": "http://bao.example:8200"}), &config).unwrap_err();
        assert_eq!(refused_fields(&problem), ["address"]);
        assert!(problem.to_string().contains("https://"), "{problem}");
        // Its TLS trust is the YAML's.
        let problem = call(
            json!({"caCertPem": "ATTACKER CA", "tlsServerName": "evil"}),
            &config,
        )
        .unwrap_err();
        assert_eq!(refused_fields(&problem), ["caCertPem", "tlsServerName"]);
        assert!(call(json!({"caCertPem": "YAML CA"}), &config).is_ok());
    }

    #[test]
    fn cmks_certificate_is_used_where_the_plugins_credential_may_not_go() {
        let config = with_own_approle();
        let cmk = |address: &str| {
            json!({"authType": "AUTH_TYPE_CERTIFICATE", "clientCert": "CERT",
                   "privateKey": "KEY", "address": address})
        };
        // A customer's OpenBao: CMK's certificate, the request's own.
        let hyok = call(cmk("https://customer.example:8200"), &config).unwrap();
        assert_eq!(
            (hyok.owner, hyok.auth.method()),
            (CredentialOwner::Request, "cert")
        );
        // The plugin's own OpenBao: its own credential, unless the access
        // data asks for the certificate.
        let own = call(cmk(BAO), &config).unwrap();
        assert_eq!(
            (own.owner, own.auth.method()),
            (CredentialOwner::Plugin, "approle")
        );
        let mut explicit = cmk(BAO);
        explicit["authMethod"] = json!("cert");
        assert_eq!(
            call(explicit, &config).unwrap().owner,
            CredentialOwner::Request
        );
    }

    #[test]
    fn access_data_naming_another_role_does_not_borrow_the_plugins_credential() {
        let config = with_own_approle();
        let problem = call(json!({"roleId": "tenant-b-role"}), &config).unwrap_err();
        assert_eq!(refused_fields(&problem), ["roleId"]);
        assert!(problem.to_string().contains("auth.roleId"), "{problem}");
        let problem = call(json!({"authMount": "other"}), &config).unwrap_err();
        assert_eq!(refused_fields(&problem), ["authMount"]);
        assert!(
            call(
                json!({"roleId": "platform-role", "authMount": "approle/"}),
                &config
            )
            .is_ok()
        );
        // Stored for another process (the crypto layer's own YAML): fine.
        assert!(validate_stored(&map(json!({"roleId": "crypto-role"})), &config, None).is_ok());
    }

    #[test]
    fn file_and_token_paths_never_come_from_access_data() {
        for config in [PluginConfig::default(), with_own_approle()] {
            for (field, extra) in [
                ("secretIdFile", json!({"roleId": "r"})),
                ("wrappedSecretIdFile", json!({"roleId": "r"})),
                (
                    "serviceAccountTokenPath",
                    json!({"authMethod": "kubernetes", "kubernetesRole": "k"}),
                ),
                ("tokenFile", json!({})),
                ("caCertFile", json!({})),
            ] {
                let mut values = map(extra);
                values.insert(field.into(), json!("/etc/shadow"));
                values.insert("address".into(), json!(BAO));
                for stage in [Stage::Stored, Stage::Call] {
                    let problem = resolve_access(&values, &config, None, stage).unwrap_err();
                    assert!(
                        refused_fields(&problem).contains(&field),
                        "{field}: {problem}"
                    );
                    let text = problem.to_string();
                    assert!(!text.contains("/etc/shadow"), "{text}");
                    assert!(text.contains(field), "{text}");
                }
            }
        }
    }

    #[test]
    fn kubernetes_auth_is_only_the_plugins_own() {
        let problem = call(
            json!({"address": BAO, "authMethod": "kubernetes", "kubernetesRole": "k"}),
            &PluginConfig::default(),
        )
        .unwrap_err();
        assert_eq!(refused_fields(&problem), ["authMethod"]);
        assert!(
            problem.to_string().contains("auth.kubernetesRole"),
            "{problem}"
        );
        let config =
            PluginConfig::from_yaml(&format!("address: {BAO}\nauth: {{kubernetesRole: cmk}}"))
                .unwrap();
        let target = call(json!({"authMethod": "kubernetes"}), &config).unwrap();
        assert_eq!(
            target.auth.describe(),
            "kubernetes at auth/kubernetes role cmk"
        );
        let problem = call(json!({"kubernetesRole": "other"}), &config).unwrap_err();
        assert_eq!(refused_fields(&problem), ["kubernetesRole"]);
    }

    #[test]
    fn a_requests_own_credential_may_go_to_any_https_address() {
        let config = with_own_approle();
        let own = json!({"address": "https://tenant.example:8200", "roleId": "tenant-role",
                         "secretId": "tenant-secret", "caCertPem": "TENANT CA"});
        let target = call(own, &config).unwrap();
        assert_eq!(target.owner, CredentialOwner::Request);
        assert_eq!(target.ca_pem.as_deref(), Some("TENANT CA"));
        assert!(
            matches!(&target.auth, AuthSpec::AppRole { secret: SecretIdSpec::Value(_), role_id, .. } if role_id == "tenant-role")
        );
        let problem = call(
            json!({"address": "http://tenant.example:8200", "roleId": "r", "secretId": "tenant-secret"}),
            &config,
        )
        .unwrap_err();
        assert_eq!(refused_fields(&problem), ["address"]);
        assert!(!problem.to_string().contains("tenant-secret"), "{problem}");
        let problem = call(
            json!({"address": BAO, "secretId": "s"}),
            &PluginConfig::default(),
        )
        .unwrap_err();
        assert_eq!(problem.missing, ["roleId"]);
    }

    #[test]
    fn approle_without_a_credential_reports_what_is_missing() {
        let config = PluginConfig {
            address: Some("https://bao:8200".into()),
            ..Default::default()
        };
        let problem = call(json!({"authMethod": "approle"}), &config).unwrap_err();
        assert_eq!(problem.missing, ["roleId", "secretId"]);
        assert!(problem.refused.is_empty());
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
        assert!(validate_stored(&values, &PluginConfig::default(), None).is_ok());
        assert!(
            validate_stored(
                &map(json!({"authMethod": "approle"})),
                &PluginConfig::default(),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn identities_differ_when_any_secret_differs() {
        let config = PluginConfig::default();
        let target = |key: &str| {
            call(
                json!({"address": "https://b:1", "clientCert": "C", "privateKey": key}),
                &config,
            )
            .unwrap()
        };
        assert_eq!(target("K1").identity_key(), target("K1").identity_key());
        assert_ne!(target("K1").identity_key(), target("K2").identity_key());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let config = with_own_approle();
        let target = call(
            json!({"address": BAO, "roleId": "r", "secretId": "s3cr3t-value"}),
            &config,
        )
        .unwrap();
        let cert = call(
            json!({"address": BAO, "authMethod": "cert", "clientCert": "CERT", "privateKey": "PRIVATE-KEY-PEM"}),
            &config,
        )
        .unwrap();
        for text in [
            format!("{target:?}"),
            format!("{:?}", target.auth),
            format!("{cert:?}"),
            format!("{:?}", target.login()),
            format!("{config:?}"),
        ] {
            assert!(
                !text.contains("s3cr3t-value") && !text.contains("PRIVATE-KEY-PEM"),
                "{text}"
            );
        }
        assert!(format!("{target:?}").contains("approle"));
    }

    #[test]
    fn structs_round_trip_through_json() {
        let json = map(json!({"a": "x", "b": true, "c": 2.0, "d": {"e": [1.0, null]}}));
        assert_eq!(struct_to_json(&json_to_struct(&json)), json);
    }
}
