//! The Transit secrets engine: named keys with versions, encryption,
//! decryption and re-wrapping that never export the key, soft-delete
//! (OpenBao ≥ 2.0), and BYOK import through the engine's wrapping key.
//!
//! ```no_run
//! # async fn demo(client: openbao_client::Client) -> openbao_client::Result<()> {
//! use openbao_client::transit::{CreateKey, EncryptOptions, KeyType};
//! let transit = client.transit("transit")?;
//! transit.create_key("openkcm-1", &CreateKey::new(KeyType::Aes256Gcm96)).await?;
//! let wrapped = transit.encrypt("openkcm-1", b"L2 key", &EncryptOptions::default()).await?;
//! assert!(wrapped.ciphertext.starts_with("vault:v1:"));
//! # Ok(()) }
//! ```
//!
//! Plaintexts are returned as [`SecretSlice`] so they do not show in `Debug`
//! output; errors never carry plaintexts or ciphertexts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::sys::required;

/// Transit key types. Unknown types read back as [`KeyType::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyType {
    Aes128Gcm96,
    Aes256Gcm96,
    ChaCha20Poly1305,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Other(String),
}

impl KeyType {
    pub fn as_str(&self) -> &str {
        match self {
            KeyType::Aes128Gcm96 => "aes128-gcm96",
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::Other(other) => other,
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "aes128-gcm96" => KeyType::Aes128Gcm96,
            "aes256-gcm96" => KeyType::Aes256Gcm96,
            "chacha20-poly1305" => KeyType::ChaCha20Poly1305,
            "rsa-2048" => KeyType::Rsa2048,
            "rsa-3072" => KeyType::Rsa3072,
            "rsa-4096" => KeyType::Rsa4096,
            other => KeyType::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of `POST <mount>/keys/<name>`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateKey {
    #[serde(rename = "type")]
    pub key_type: String,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    pub derived: bool,
    /// For example `"720h"`; `None` or `"0"` disables automatic rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_rotate_period: Option<String>,
}

impl CreateKey {
    /// A non-exportable key without plaintext backup.
    pub fn new(key_type: KeyType) -> Self {
        Self {
            key_type: key_type.as_str().to_owned(),
            exportable: false,
            allow_plaintext_backup: false,
            derived: false,
            auto_rotate_period: None,
        }
    }
}

/// Body of `POST <mount>/keys/<name>/config`; `None` fields are left as they are.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_decryption_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_encryption_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_allowed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_plaintext_backup: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_rotate_period: Option<String>,
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionInfo {
    pub created: SystemTime,
    /// PEM public key (asymmetric keys only).
    pub public_key: Option<String>,
}

/// `GET <mount>/keys/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub name: String,
    pub key_type: KeyType,
    pub latest_version: u32,
    pub min_available_version: u32,
    pub min_decryption_version: u32,
    pub min_encryption_version: u32,
    pub deletion_allowed: bool,
    /// Soft-deleted keys refuse every cryptographic operation.
    pub soft_deleted: bool,
    pub imported_key: bool,
    pub exportable: bool,
    pub supports_encryption: bool,
    pub supports_decryption: bool,
    pub auto_rotate_period: Duration,
    /// Versions still usable for decryption (≥ `min_decryption_version`),
    /// by version number.
    pub versions: BTreeMap<u32, KeyVersionInfo>,
}

impl KeyInfo {
    /// Parses the `data` object of a key read.
    pub fn from_data(data: &Value) -> std::result::Result<Self, String> {
        let u32_field = |name: &str| -> u32 {
            data[name]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)
        };
        let bool_field = |name: &str| data[name].as_bool().unwrap_or(false);
        let key_type = data["type"]
            .as_str()
            .ok_or("the key has no type")
            .map(KeyType::parse)?;
        let mut versions = BTreeMap::new();
        if let Some(keys) = data["keys"].as_object() {
            for (number, entry) in keys {
                let number: u32 = number
                    .parse()
                    .map_err(|_| format!("key version {number:?} is not a number"))?;
                let info = match entry {
                    Value::Number(secs) => KeyVersionInfo {
                        created: UNIX_EPOCH
                            + Duration::from_secs(secs.as_u64().unwrap_or_default()),
                        public_key: None,
                    },
                    Value::Object(fields) => KeyVersionInfo {
                        created: fields
                            .get("creation_time")
                            .and_then(Value::as_str)
                            .and_then(parse_rfc3339)
                            .unwrap_or(UNIX_EPOCH),
                        public_key: fields
                            .get("public_key")
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    },
                    other => return Err(format!("key version {number} is {other}")),
                };
                versions.insert(number, info);
            }
        }
        Ok(KeyInfo {
            name: data["name"].as_str().unwrap_or_default().to_owned(),
            key_type,
            latest_version: u32_field("latest_version"),
            min_available_version: u32_field("min_available_version"),
            min_decryption_version: u32_field("min_decryption_version"),
            min_encryption_version: u32_field("min_encryption_version"),
            deletion_allowed: bool_field("deletion_allowed"),
            soft_deleted: bool_field("soft_deleted"),
            imported_key: bool_field("imported_key"),
            exportable: bool_field("exportable"),
            supports_encryption: bool_field("supports_encryption"),
            supports_decryption: bool_field("supports_decryption"),
            auto_rotate_period: Duration::from_secs(
                data["auto_rotate_period"].as_u64().unwrap_or(0),
            ),
            versions,
        })
    }

    /// Creation time of the latest version, if it is listed.
    pub fn latest_created(&self) -> Option<SystemTime> {
        self.versions.get(&self.latest_version).map(|v| v.created)
    }
}

/// Options of an encryption.
#[derive(Debug, Clone, Default)]
pub struct EncryptOptions {
    /// Encrypt with this version rather than the latest.
    pub key_version: Option<u32>,
    /// Authenticated but unencrypted data (AEAD key types only).
    pub associated_data: Option<Vec<u8>>,
}

/// A Transit ciphertext, `vault:v<n>:<base64>`, and the version that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    pub ciphertext: String,
    pub key_version: u32,
}

/// The key version of a `vault:v<n>:...` ciphertext.
pub fn ciphertext_version(ciphertext: &str) -> Option<u32> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (number, payload) = rest.split_once(':')?;
    if payload.is_empty() {
        return None;
    }
    number.parse().ok().filter(|n| *n > 0)
}

/// Body of `POST <mount>/keys/<name>/import`.
#[derive(Clone, Serialize)]
pub struct ImportKey {
    /// base64 of RSA-OAEP(ephemeral AES key) ‖ AES-KWP(ephemeral, key).
    pub ciphertext: String,
    /// Hash of the RSA-OAEP step, e.g. `SHA256`.
    pub hash_function: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    /// Let OpenBao rotate the imported key (later versions are generated).
    pub allow_rotation: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_rotate_period: Option<String>,
}

impl fmt::Debug for ImportKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportKey")
            .field("hash_function", &self.hash_function)
            .field("key_type", &self.key_type)
            .field("allow_rotation", &self.allow_rotation)
            .finish_non_exhaustive()
    }
}

/// One item of a batch answer: the result, or OpenBao's error for that item
/// as the same call alone would have returned it.
pub type BatchItem<T> = std::result::Result<T, Error>;

/// A Transit mount reached through one client (and its token).
#[derive(Debug, Clone)]
pub struct Transit {
    client: Client,
    mount: String,
}

impl Client {
    /// The Transit engine mounted at `mount` (e.g. `transit`, or a nested
    /// `tenants/a/transit`).
    pub fn transit(&self, mount: &str) -> Result<Transit> {
        let mount = mount.trim_matches('/');
        if mount.is_empty() || !mount.split('/').all(valid_segment) {
            return Err(Error::Config(format!(
                "transit mount {mount:?} is invalid; use path segments of letters, digits, '_', '-' and '.'"
            )));
        }
        Ok(Transit {
            client: self.clone(),
            mount: mount.to_owned(),
        })
    }
}

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether `name` can be a Transit key name (letters, digits, `_`, `-`, `.`).
pub fn valid_key_name(name: &str) -> bool {
    valid_segment(name)
}

impl Transit {
    pub fn mount(&self) -> &str {
        &self.mount
    }

    fn path(&self, what: &str, name: &str) -> Result<String> {
        if !valid_key_name(name) {
            return Err(Error::Config(format!(
                "transit key name {name:?} is invalid; use letters, digits, '_', '-' and '.'"
            )));
        }
        Ok(format!("{}/{what}/{name}", self.mount))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Option<Value>> {
        self.client.call_json(Method::POST, path, Some(body)).await
    }

    /// Posts a batch; the answer's status and body. OpenBao answers 400 when
    /// an item has a user error and 500 when one has an internal error, with
    /// every item's result (plaintexts included) in the body: that answer is
    /// parsed here per item and never turned into an error message.
    async fn post_batch(&self, path: &str, body: &Value) -> Result<(reqwest::StatusCode, Value)> {
        let transport = |source: reqwest::Error| Error::Transport {
            path: path.to_owned(),
            source: source.without_url(),
        };
        let response = self
            .client
            .request(Method::POST, path)?
            .timeout(self.client.timeout())
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        let answer: Option<Value> = serde_json::from_slice(&bytes).ok();
        let has_results = answer
            .as_ref()
            .is_some_and(|a| a["data"]["batch_results"].is_array());
        let per_item = matches!(
            status,
            reqwest::StatusCode::BAD_REQUEST | reqwest::StatusCode::INTERNAL_SERVER_ERROR
        );
        if status.is_success() || (per_item && has_results) {
            let answer = answer.ok_or_else(|| Error::Decode {
                path: path.to_owned(),
                message: "the batch answer is not JSON".into(),
            })?;
            return Ok((status, answer));
        }
        Err(Error::from_response(path, status, &bytes))
    }

    /// Creates a key. OpenBao answers 200 and changes nothing when the key
    /// already exists, so read first when that matters.
    pub async fn create_key(&self, name: &str, options: &CreateKey) -> Result<()> {
        let path = self.path("keys", name)?;
        self.post(&path, &to_json(options)).await.map(drop)
    }

    /// Reads a key; `None` when there is no such key.
    pub async fn read_key(&self, name: &str) -> Result<Option<KeyInfo>> {
        let path = self.path("keys", name)?;
        match self
            .client
            .call_json::<Value>(Method::GET, &path, None)
            .await
        {
            Ok(Some(answer)) => KeyInfo::from_data(&answer["data"])
                .map(Some)
                .map_err(|message| Error::Decode { path, message }),
            Ok(None) | Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds a new version and makes it the one new encryptions use.
    pub async fn rotate_key(&self, name: &str) -> Result<()> {
        let path = format!("{}/rotate", self.path("keys", name)?);
        self.post(&path, &json!({})).await.map(drop)
    }

    pub async fn configure_key(&self, name: &str, config: &KeyConfig) -> Result<()> {
        let path = format!("{}/config", self.path("keys", name)?);
        self.post(&path, &to_json(config)).await.map(drop)
    }

    /// Destroys versions below `min_available_version` for good.
    pub async fn trim_key(&self, name: &str, min_available_version: u32) -> Result<()> {
        let path = format!("{}/trim", self.path("keys", name)?);
        self.post(
            &path,
            &json!({ "min_available_version": min_available_version }),
        )
        .await
        .map(drop)
    }

    /// Deletes a key for good; needs `deletion_allowed`. OpenBao answers 400
    /// (not 404) for a missing key.
    pub async fn delete_key(&self, name: &str) -> Result<()> {
        self.client.delete(&self.path("keys", name)?).await
    }

    /// Soft-deletes a key: it stays readable but refuses every cryptographic
    /// operation until restored. A missing key is a silent no-op.
    pub async fn soft_delete_key(&self, name: &str) -> Result<()> {
        let path = format!("{}/soft-delete", self.path("keys", name)?);
        self.client.delete(&path).await
    }

    /// Undoes [`Transit::soft_delete_key`].
    pub async fn restore_key(&self, name: &str) -> Result<()> {
        let path = format!("{}/soft-delete-restore", self.path("keys", name)?);
        self.post(&path, &json!({})).await.map(drop)
    }

    /// Sets `disable_upsert` for the whole mount, so that encrypting with a
    /// missing key fails instead of creating it.
    pub async fn set_disable_upsert(&self, disable: bool) -> Result<()> {
        let path = format!("{}/config/keys", self.mount);
        self.post(&path, &json!({ "disable_upsert": disable }))
            .await
            .map(drop)
    }

    pub async fn encrypt(
        &self,
        name: &str,
        plaintext: &[u8],
        options: &EncryptOptions,
    ) -> Result<Encrypted> {
        let path = self.path("encrypt", name)?;
        let body = encrypt_item(plaintext, options);
        let answer = required(self.post(&path, &body).await?, &path)?;
        encrypted(&path, &answer["data"])
    }

    pub async fn decrypt(
        &self,
        name: &str,
        ciphertext: &str,
        associated_data: Option<&[u8]>,
    ) -> Result<SecretSlice<u8>> {
        let path = self.path("decrypt", name)?;
        let body = decrypt_item(ciphertext, associated_data);
        let answer = required(self.post(&path, &body).await?, &path)?;
        plaintext(&path, &answer["data"])
    }

    /// Re-encrypts `ciphertext` with `key_version` (the latest when `None`)
    /// inside OpenBao; the plaintext is never returned.
    pub async fn rewrap(
        &self,
        name: &str,
        ciphertext: &str,
        key_version: Option<u32>,
    ) -> Result<Encrypted> {
        let path = self.path("rewrap", name)?;
        let body = rewrap_item(ciphertext, key_version);
        let answer = required(self.post(&path, &body).await?, &path)?;
        encrypted(&path, &answer["data"])
    }

    /// Encrypts many plaintexts in one request (`batch_input`).
    pub async fn encrypt_batch(
        &self,
        name: &str,
        plaintexts: &[&[u8]],
        options: &EncryptOptions,
    ) -> Result<Vec<BatchItem<Encrypted>>> {
        let items: Vec<(&[u8], &EncryptOptions)> =
            plaintexts.iter().map(|p| (*p, options)).collect();
        self.encrypt_each(name, &items).await
    }

    /// Encrypts many plaintexts, each with its own options, in one request.
    pub async fn encrypt_each(
        &self,
        name: &str,
        items: &[(&[u8], &EncryptOptions)],
    ) -> Result<Vec<BatchItem<Encrypted>>> {
        let path = self.path("encrypt", name)?;
        let items = items.iter().map(|(p, o)| encrypt_item(p, o)).collect();
        self.run_batch(&path, items, |item| encrypted(&path, item))
            .await
    }

    /// Sends `items` as one `batch_input` request to `path` and decodes each
    /// answer item with `decode`.
    async fn run_batch<T>(
        &self,
        path: &str,
        items: Vec<Value>,
        decode: impl Fn(&Value) -> Result<T>,
    ) -> Result<Vec<BatchItem<T>>> {
        let count = items.len();
        let (status, answer) = self
            .post_batch(path, &json!({ "batch_input": items }))
            .await?;
        batch(path, status, &answer, count, decode)
    }

    /// Decrypts many ciphertexts in one request (`batch_input`).
    pub async fn decrypt_batch(
        &self,
        name: &str,
        ciphertexts: &[&str],
    ) -> Result<Vec<BatchItem<SecretSlice<u8>>>> {
        let items: Vec<(&str, Option<&[u8]>)> = ciphertexts.iter().map(|c| (*c, None)).collect();
        self.decrypt_each(name, &items).await
    }

    /// Decrypts many ciphertexts, each with its own associated data, in one
    /// request.
    pub async fn decrypt_each(
        &self,
        name: &str,
        items: &[(&str, Option<&[u8]>)],
    ) -> Result<Vec<BatchItem<SecretSlice<u8>>>> {
        let path = self.path("decrypt", name)?;
        let items = items.iter().map(|(c, ad)| decrypt_item(c, *ad)).collect();
        self.run_batch(&path, items, |item| plaintext(&path, item))
            .await
    }

    /// Re-wraps many ciphertexts to the latest version in one request.
    pub async fn rewrap_batch(
        &self,
        name: &str,
        ciphertexts: &[&str],
    ) -> Result<Vec<BatchItem<Encrypted>>> {
        let items: Vec<(&str, Option<u32>)> = ciphertexts.iter().map(|c| (*c, None)).collect();
        self.rewrap_each(name, &items).await
    }

    /// Re-wraps many ciphertexts, each to its own version (the latest when
    /// `None`), in one request.
    pub async fn rewrap_each(
        &self,
        name: &str,
        items: &[(&str, Option<u32>)],
    ) -> Result<Vec<BatchItem<Encrypted>>> {
        let path = self.path("rewrap", name)?;
        let items = items.iter().map(|(c, v)| rewrap_item(c, *v)).collect();
        self.run_batch(&path, items, |item| encrypted(&path, item))
            .await
    }

    /// The engine's RSA-4096 public wrapping key (PEM), for BYOK imports.
    pub async fn wrapping_key(&self) -> Result<String> {
        let path = format!("{}/wrapping_key", self.mount);
        let answer = required(
            self.client
                .call_json::<Value>(Method::GET, &path, None)
                .await?,
            &path,
        )?;
        answer["data"]["public_key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Decode {
                path,
                message: "no public_key in the answer".into(),
            })
    }

    /// Imports wrapped key material as a new key.
    pub async fn import_key(&self, name: &str, import: &ImportKey) -> Result<()> {
        let path = format!("{}/import", self.path("keys", name)?);
        self.post(&path, &to_json(import)).await.map(drop)
    }

    /// Imports wrapped key material as a new version of an imported key.
    pub async fn import_key_version(
        &self,
        name: &str,
        ciphertext: &str,
        hash_function: &str,
    ) -> Result<()> {
        let path = format!("{}/import_version", self.path("keys", name)?);
        self.post(
            &path,
            &json!({ "ciphertext": ciphertext, "hash_function": hash_function }),
        )
        .await
        .map(drop)
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The body of one encryption, alone or as a batch item.
fn encrypt_item(plaintext: &[u8], options: &EncryptOptions) -> Value {
    let mut body = json!({ "plaintext": base64_encode(plaintext) });
    if let Some(version) = options.key_version {
        body["key_version"] = json!(version);
    }
    if let Some(ad) = &options.associated_data {
        body["associated_data"] = Value::String(base64_encode(ad));
    }
    body
}

/// The body of one decryption, alone or as a batch item.
fn decrypt_item(ciphertext: &str, associated_data: Option<&[u8]>) -> Value {
    let mut body = json!({ "ciphertext": ciphertext });
    if let Some(ad) = associated_data {
        body["associated_data"] = Value::String(base64_encode(ad));
    }
    body
}

/// The body of one re-wrap, alone or as a batch item.
fn rewrap_item(ciphertext: &str, key_version: Option<u32>) -> Value {
    let mut body = json!({ "ciphertext": ciphertext });
    if let Some(version) = key_version {
        body["key_version"] = json!(version);
    }
    body
}

fn encrypted(path: &str, data: &Value) -> Result<Encrypted> {
    let ciphertext = data["ciphertext"].as_str().ok_or_else(|| Error::Decode {
        path: path.to_owned(),
        message: "no ciphertext in the answer".into(),
    })?;
    let key_version = data["key_version"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .or_else(|| ciphertext_version(ciphertext))
        .unwrap_or(0);
    Ok(Encrypted {
        ciphertext: ciphertext.to_owned(),
        key_version,
    })
}

fn plaintext(path: &str, data: &Value) -> Result<SecretSlice<u8>> {
    let encoded = data["plaintext"].as_str().ok_or_else(|| Error::Decode {
        path: path.to_owned(),
        message: "no plaintext in the answer".into(),
    })?;
    base64_decode(encoded)
        .map(SecretSlice::from)
        .ok_or_else(|| Error::Decode {
            path: path.to_owned(),
            message: "the plaintext is not base64".into(),
        })
}

/// Splits a batch answer into per-item results. An item's error is built
/// as OpenBao answers that item alone: with the batch's status when it is
/// an error status, else 400 (a rewrap batch, or a non-AEAD
/// `associated_data` item, answers 200 with per-item errors).
fn batch<T>(
    path: &str,
    status: reqwest::StatusCode,
    answer: &Value,
    expected: usize,
    item: impl Fn(&Value) -> Result<T>,
) -> Result<Vec<BatchItem<T>>> {
    let results = answer["data"]["batch_results"]
        .as_array()
        .ok_or_else(|| Error::Decode {
            path: path.to_owned(),
            message: "no batch_results in the answer".into(),
        })?;
    if results.len() != expected {
        return Err(Error::Decode {
            path: path.to_owned(),
            message: format!("{} batch results for {expected} items", results.len()),
        });
    }
    let item_status = if status.is_success() {
        reqwest::StatusCode::BAD_REQUEST
    } else {
        status
    };
    Ok(results
        .iter()
        .map(|result| match result["error"].as_str() {
            Some(error) if !error.is_empty() => {
                // The same body an unbatched call gets, so the message is
                // cleaned exactly as it would be then.
                let body = json!({ "errors": [error] }).to_string();
                Err(Error::from_response(path, item_status, body.as_bytes()))
            }
            _ => item(result),
        })
        .collect())
}

/// Keeps `SecretSlice` usable by callers without importing `secrecy`.
pub fn expose(plaintext: &SecretSlice<u8>) -> &[u8] {
    plaintext.expose_secret()
}

/// Standard base64 with padding (what Transit expects for plaintexts).
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64 (padding optional); `None` when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// Parses an RFC 3339 time such as `2026-11-23T19:57:38.26Z`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let timestamp: jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::from(timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let text = base64_encode(&data);
            assert_eq!(text.len() % 4, 0);
            assert_eq!(base64_decode(&text).unwrap(), data, "{text}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8"), Some(b"fo".to_vec()));
        assert_eq!(base64_decode("Zm9*"), None);
        assert_eq!(base64_decode("Zn"), None, "non-zero padding bits");
    }

    #[test]
    fn ciphertext_versions() {
        assert_eq!(ciphertext_version("vault:v1:abc"), Some(1));
        assert_eq!(ciphertext_version("vault:v12:abc=="), Some(12));
        assert_eq!(ciphertext_version("vault:v0:abc"), None);
        assert_eq!(ciphertext_version("vault:vx:abc"), None);
        assert_eq!(ciphertext_version("vault:v1:"), None);
        assert_eq!(ciphertext_version("v1:abc"), None);
    }

    #[test]
    fn rfc3339_times() {
        let t = parse_rfc3339("2026-11-23T19:57:38.26Z").unwrap();
        let since = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(since.as_secs(), 1_795_463_858);
        assert_eq!(since.subsec_millis(), 260);
        let offset = parse_rfc3339("2026-11-23T21:57:38.26+02:00").unwrap();
        assert_eq!(offset, t);
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00Z"),
            Some(UNIX_EPOCH),
            "epoch"
        );
        assert_eq!(parse_rfc3339("2024-02-30"), None);
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn key_info_parses_aes_and_rsa_reads() {
        let aes = json!({
            "name": "k", "type": "aes256-gcm96", "latest_version": 2,
            "min_available_version": 0, "min_decryption_version": 1,
            "min_encryption_version": 0, "deletion_allowed": false,
            "soft_deleted": true, "supports_encryption": true,
            "supports_decryption": true, "auto_rotate_period": 0,
            "keys": {"1": 1_795_463_858u64, "2": 1_795_463_900u64}
        });
        let info = KeyInfo::from_data(&aes).unwrap();
        assert_eq!(info.key_type, KeyType::Aes256Gcm96);
        assert_eq!(info.latest_version, 2);
        assert!(info.soft_deleted && !info.deletion_allowed);
        assert_eq!(
            info.latest_created(),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_463_900))
        );
        let rsa = json!({
            "name": "r", "type": "rsa-3072", "latest_version": 1,
            "keys": {"1": {"creation_time": "2026-11-23T19:57:38.26Z", "name": "rsa-3072",
                           "public_key": "-----BEGIN PUBLIC KEY-----\n"}}
        });
        let info = KeyInfo::from_data(&rsa).unwrap();
        assert_eq!(info.key_type, KeyType::Rsa3072);
        assert!(info.versions[&1].public_key.is_some());
        assert_eq!(
            info.latest_created()
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_795_463_858
        );
        assert!(KeyInfo::from_data(&json!({"keys": {}})).is_err());
        assert_eq!(
            KeyInfo::from_data(&json!({"type": "ed25519"}))
                .unwrap()
                .key_type,
            KeyType::Other("ed25519".into())
        );
    }

    #[test]
    fn names_and_mounts_cannot_escape_the_mount() {
        let client = Client::new(crate::ClientConfig::new("http://127.0.0.1:1").unwrap()).unwrap();
        assert!(client.transit("../sys").is_err());
        assert!(client.transit("").is_err());
        let transit = client.transit("/tenants/a/transit/").unwrap();
        assert_eq!(transit.mount(), "tenants/a/transit");
        assert_eq!(
            transit.path("keys", "openkcm-1").unwrap(),
            "tenants/a/transit/keys/openkcm-1"
        );
        let err = transit.path("keys", "a/b").unwrap_err().to_string();
        assert!(err.contains("invalid"), "{err}");
        assert!(transit.path("encrypt", "..").is_err());
    }

    #[test]
    fn batch_results_keep_per_item_errors() {
        let answer = json!({"data": {"batch_results": [
            {"ciphertext": "vault:v1:AAAA", "key_version": 1},
            {"error": "refusing to use soft-deleted key"}
        ]}});
        let ok = reqwest::StatusCode::OK;
        let items = batch("p", ok, &answer, 2, |item| encrypted("p", item)).unwrap();
        assert_eq!(items[0].as_ref().unwrap().key_version, 1);
        let error = items[1].as_ref().unwrap_err();
        assert!(
            matches!(error, Error::BadRequest { message, .. } if message == "refusing to use soft-deleted key"),
            "{error:?}"
        );
        let internal = reqwest::StatusCode::INTERNAL_SERVER_ERROR;
        let items = batch("p", internal, &answer, 2, |item| encrypted("p", item)).unwrap();
        assert!(
            matches!(&items[1], Err(Error::Server { status, .. }) if *status == internal),
            "{:?}",
            items[1]
        );
        assert!(batch("p", ok, &answer, 3, |_| Ok(())).is_err());
    }
}
