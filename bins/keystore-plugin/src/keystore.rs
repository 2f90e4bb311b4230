//! The keystore itself: plugin configuration, one cached OpenBao session
//! per identity, and every operation as an async method returning the
//! gRPC status CMK expects. The tonic services in [`crate::service`] are
//! thin shells over this; hosts can also use it directly as a library
//! ([`Keystore::key`] gives an [`L1Key`] to wrap and unwrap L2 keys).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openbao_client::transit::{
    CreateKey, EncryptOptions, Encrypted, ImportKey, KeyConfig, KeyInfo, Transit,
};
use openbao_client::{Client, ClientConfig, Error as BaoError, RetryPolicy, TokenKeeper};
use secrecy::{SecretSlice, SecretString};
use serde_json::{Map, Value, json};
use tonic::Status;

use crate::batch::{self, BatchStats, Batches};
use crate::config::{self, PluginConfig, Stage, Target};
use crate::mapping::{self, KeyRef, Rpc};
use crate::proto::plugin::keystore::operations::v1 as ops;

/// One OpenBao session: a client for one address and identity, and the
/// token keeper that logs in, renews and re-logs in for it.
///
/// Dropping the last handle revokes its token (revoke-self), so a session
/// evicted from the cache leaves no live token behind, but only once calls
/// still using it are done.
#[derive(Debug)]
pub struct Session {
    keeper: Arc<TokenKeeper>,
    description: String,
    batches: Batches,
}

impl Drop for Session {
    fn drop(&mut self) {
        let keeper = self.keeper.clone();
        let login = std::mem::take(&mut self.description);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    match keeper.revoke().await {
                        Ok(()) => tracing::debug!(%login, "revoked the token of a dropped session"),
                        Err(error) => {
                            tracing::debug!(%login, %error, "could not revoke the token of a dropped session; it expires with its TTL");
                        }
                    }
                });
            }
            Err(_) => tracing::debug!(
                %login,
                "a session was dropped outside an async runtime; its token, if any, expires with its TTL"
            ),
        }
    }
}

impl Session {
    /// Runs `call` against the Transit mount with a valid token (one
    /// re-login on 403, see [`TokenKeeper::call`]).
    pub async fn transit<T, F, Fut>(&self, mount: &str, call: F) -> Result<T, BaoError>
    where
        F: Fn(Transit) -> Fut,
        Fut: Future<Output = Result<T, BaoError>>,
    {
        self.keeper
            .call(|client| {
                let future = client.transit(mount).map(&call);
                async move { future?.await }
            })
            .await
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// The session's L1 crypto queues (see [`crate::batch`]).
    pub fn batches(&self) -> &Batches {
        &self.batches
    }
}

/// The keystore: configuration plus sessions.
#[derive(Debug, Default)]
pub struct Keystore {
    config: RwLock<Arc<Loaded>>,
    sessions: Mutex<HashMap<[u8; 32], Arc<Session>>>,
}

/// The configuration with its CA file read.
#[derive(Debug, Default)]
struct Loaded {
    config: PluginConfig,
    ca_pem: Option<String>,
}

impl Keystore {
    pub fn new(config: PluginConfig) -> Result<Self, String> {
        let keystore = Self::default();
        keystore.configure(config)?;
        Ok(keystore)
    }

    /// Replaces the configuration (Configure may run again at runtime).
    pub fn configure(&self, config: PluginConfig) -> Result<(), String> {
        let ca_pem = match &config.tls.ca_cert_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read tls.caCertFile {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let loaded = Arc::new(Loaded { config, ca_pem });
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn config(&self) -> PluginConfig {
        self.loaded().config.clone()
    }

    /// Resolves access data to a target.
    fn target(&self, values: &Map<String, Value>) -> Result<Target, Status> {
        let loaded = self.loaded();
        config::resolve_target(
            values,
            &loaded.config,
            loaded.ca_pem.as_deref(),
            Stage::Call,
        )
        .map_err(|p| mapping::invalid_access_data(&p))
    }

    /// The cached session of `target`'s identity, created on first use.
    fn session(&self, target: &Target) -> Result<Arc<Session>, Status> {
        let key = target.identity_key();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = sessions.get(&key) {
            return Ok(session.clone());
        }
        let timeout = Duration::from_secs(self.loaded().config.request_timeout_seconds.max(1));
        let mut client_config = ClientConfig::new(&target.address)
            .map_err(|e| mapping::status_from_bao(&e, Rpc::Other))?
            .with_timeout(timeout)
            // Keystore calls are answered quickly or reported; CMK retries.
            .with_retry(RetryPolicy {
                attempts: 2,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(100),
            });
        client_config.connect_timeout = timeout.min(Duration::from_secs(5));
        if let Some(ca) = &target.ca_pem {
            client_config = client_config.with_ca_pem(ca.clone());
        }
        if let Some(name) = &target.tls_server_name {
            client_config = client_config.with_tls_server_name(name.clone());
        }
        if let config::AuthSpec::Cert { identity_pem, .. } = &target.auth {
            client_config =
                client_config.with_client_identity_pem(SecretString::from(identity_pem.clone()));
        }
        let client = Client::new(client_config).map_err(|e| {
            mapping::invalid_access_data(&config::AccessDataProblem {
                invalid: vec![e.to_string()],
                ..Default::default()
            })
        })?;
        let limit = self.loaded().config.max_cached_sessions.max(1);
        if sessions.len() >= limit {
            // Evicted sessions revoke their tokens when their last user is
            // done (see `Session`'s Drop).
            tracing::debug!(
                evicted = sessions.len(),
                "session cache full; evicting every cached session"
            );
            sessions.clear();
        }
        let session = Arc::new(Session {
            keeper: Arc::new(TokenKeeper::new(client, target.login())),
            description: target.auth.describe(),
            batches: Batches::default(),
        });
        tracing::debug!(login = %session.description, address = %target.address, owner = ?target.owner, "new OpenBao session");
        sessions.insert(key, session.clone());
        Ok(session)
    }

    /// Session and key for a request's access data and key id.
    fn resolve(
        &self,
        config: Option<&crate::proto::plugin::keystore::common::v1::KeystoreInstanceConfig>,
        key_id: &str,
    ) -> Result<(Arc<Session>, KeyRef), Status> {
        let values = config
            .and_then(|c| c.values.as_ref())
            .map(config::struct_to_json)
            .unwrap_or_default();
        let target = self.target(&values)?;
        let loaded = self.loaded();
        let key = mapping::parse_key_id(
            key_id,
            &target.transit_mount,
            &loaded.config.key_name_prefix,
        )
        .map_err(Status::invalid_argument)?;
        Ok((self.session(&target)?, key))
    }

    /// Revokes every cached token (on Deinit) and forgets the sessions.
    pub async fn revoke_all(&self) {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for session in sessions {
            if let Err(error) = session.keeper.revoke().await {
                tracing::debug!(login = %session.description, %error, "could not revoke a token");
            }
        }
    }

    async fn read(session: &Session, key: &KeyRef, rpc: Rpc) -> Result<Option<KeyInfo>, Status> {
        let name = key.name.as_str();
        session
            .transit(&key.mount, |t| async move { t.read_key(name).await })
            .await
            .map_err(|e| mapping::status_from_bao(&e, rpc))
    }

    async fn read_existing(session: &Session, key: &KeyRef, rpc: Rpc) -> Result<KeyInfo, Status> {
        Self::read(session, key, rpc)
            .await?
            .ok_or_else(|| mapping::not_found(&key.native_id()))
    }

    pub async fn get_key(
        &self,
        request: ops::GetKeyRequest,
    ) -> Result<ops::GetKeyResponse, Status> {
        let params = parameters(request.parameters)?;
        let (session, key) = self.resolve(params.config.as_ref(), &params.key_id)?;
        let info = Self::read_existing(&session, &key, Rpc::GetKey).await?;
        Ok(ops::GetKeyResponse {
            key_id: key.native_id(),
            algorithm: mapping::algorithm(&info.key_type).into(),
            status: mapping::key_status(&info).to_owned(),
            usage: mapping::key_usage(&info).to_owned(),
            latest_key_version_id: info.latest_version.to_string(),
            latest_rotation_time: info.latest_created().map(mapping::timestamp),
        })
    }

    pub async fn get_key_versions(
        &self,
        request: ops::GetKeyVersionsRequest,
    ) -> Result<ops::GetKeyVersionsResponse, Status> {
        let params = parameters(request.parameters)?;
        let (session, key) = self.resolve(params.config.as_ref(), &params.key_id)?;
        let info = Self::read_existing(&session, &key, Rpc::GetKey).await?;
        Ok(ops::GetKeyVersionsResponse {
            versions: mapping::key_versions(&info),
        })
    }

    pub async fn create_key(
        &self,
        request: ops::CreateKeyRequest,
    ) -> Result<ops::CreateKeyResponse, Status> {
        let loaded = self.loaded();
        let key_type =
            ops::KeyType::try_from(request.key_type).unwrap_or(ops::KeyType::Unspecified);
        let algorithm = ops::KeyAlgorithm::try_from(request.algorithm)
            .unwrap_or(ops::KeyAlgorithm::Unspecified);
        match key_type {
            ops::KeyType::SystemManaged | ops::KeyType::Byok => {}
            ops::KeyType::Hyok => {
                return Err(Status::invalid_argument(
                    "HYOK keys are created by their owner in OpenBao and registered in CMK, not created by the plugin",
                ));
            }
            ops::KeyType::Unspecified => {
                return Err(Status::invalid_argument(
                    "key_type is unspecified; use SYSTEM_MANAGED or BYOK",
                ));
            }
        }
        let transit_type = mapping::transit_type(algorithm).ok_or_else(|| {
            Status::invalid_argument("algorithm is unspecified; use AES256, RSA3072 or RSA4096")
        })?;
        if algorithm != ops::KeyAlgorithm::Aes256 && !loaded.config.allow_rsa {
            return Err(Status::invalid_argument(
                "RSA keys are disabled in this plugin's configuration (allowRsa: false)",
            ));
        }
        let id = request
            .id
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let values = request
            .config
            .as_ref()
            .and_then(|c| c.values.as_ref())
            .map(config::struct_to_json)
            .unwrap_or_default();
        let target = self.target(&values)?;
        let name = mapping::key_name(&loaded.config.key_name_prefix, id.trim());
        // `name` has the prefix already; the mount is the access data's.
        let key = mapping::parse_key_id(&name, &target.transit_mount, "")
            .map_err(Status::invalid_argument)?;
        let session = self.session(&target)?;
        if Self::read(&session, &key, Rpc::Other).await?.is_some() {
            return Err(Status::already_exists(format!(
                "key {} already exists in OpenBao",
                key.native_id()
            )));
        }
        if key_type == ops::KeyType::Byok {
            // Transit cannot hold a key without material: the key appears
            // with ImportKeyMaterial.
            return Ok(ops::CreateKeyResponse {
                key_id: key.native_id(),
                status: mapping::PENDING_IMPORT.to_owned(),
            });
        }
        let mut options = CreateKey::new(transit_type);
        options.auto_rotate_period = loaded.config.auto_rotate_period.clone();
        let options = &options;
        let name = key.name.as_str();
        session
            .transit(
                &key.mount,
                |t| async move { t.create_key(name, options).await },
            )
            .await
            .map_err(|e| mapping::status_from_bao(&e, Rpc::Other))?;
        tracing::info!(key_id = %key.native_id(), key_type = %options.key_type, "created key");
        Ok(ops::CreateKeyResponse {
            key_id: key.native_id(),
            status: mapping::ENABLED.to_owned(),
        })
    }

    pub async fn disable_key(&self, params: Option<ops::RequestParameters>) -> Result<(), Status> {
        let params = parameters(params)?;
        let (session, key) = self.resolve(params.config.as_ref(), &params.key_id)?;
        let info = Self::read_existing(&session, &key, Rpc::Other).await?;
        match mapping::key_status(&info) {
            mapping::DISABLED => return Ok(()),
            mapping::PENDING_DELETION => {
                return Err(Status::failed_precondition(
                    "the key is pending deletion; EnableKey cancels the deletion",
                ));
            }
            _ => {}
        }
        let name = key.name.as_str();
        session
            .transit(&key.mount, |t| async move { t.soft_delete_key(name).await })
            .await
            .map_err(|e| mapping::status_from_bao(&e, Rpc::Other))?;
        tracing::info!(key_id = %key.native_id(), "disabled key");
        Ok(())
    }

    pub async fn enable_key(&self, params: Option<ops::RequestParameters>) -> Result<(), Status> {
        let params = parameters(params)?;
        let (session, key) = self.resolve(params.config.as_ref(), &params.key_id)?;
        let info = Self::read_existing(&session, &key, Rpc::Other).await?;
        let name = key.name.as_str();
        if info.soft_deleted {
            session
                .transit(&key.mount, |t| async move { t.restore_key(name).await })
                .await
                .map_err(|e| mapping::status_from_bao(&e, Rpc::Other))?;
        }
        if info.deletion_allowed {
            let config = &KeyConfig {
                deletion_allowed: Some(false),
                ..Default::default()
            };
            session
                .transit(&key.mount, |t| async move {
                    t.configure_key(name, config).await
                })
                .await
                .map_err(|e| mapping::status_from_bao(&e, Rpc::Other))?;
        }
        tracing::info!(key_id = %key.native_id(), "enabled key");
        Ok(())
    }

    /// Soft-deletes the key with deletion allowed (PENDING_DELETION), or
    /// purges it when the window is 0 or `deletion.purgeImmediately` is set.
    /// A missing key is already deleted.
    pub async fn delete_key(&self, request: ops::DeleteKeyRequest) -> Result<(), Status> {
        let params = parameters(request.parameters)?;
        let (session, key) = self.resolve(params.config.as_ref(), &params.key_id)?;
        if Self::read(&session, &key, Rpc::Other).await?.is_none() {
            return Ok(());
        }
        let name = key.name.as_str();
        let config = &KeyConfig {
            deletion_allowed: Some(true),
            ..Default::default()
        };
        let map = |e: BaoError| mapping::status_from_bao(&e, Rpc::Other);
        session
            .transit(&key.mount, |t| async move {
                t.configure_key(name, config).await
            })
            .await
            .map_err(map)?;
        let purge = request.window == Some(0) || self.loaded().config.deletion.purge_immediately;
        if purge {
            session
                .transit(&key.mount, |t| async move { t.delete_key(name).await })
                .await
                .map_err(map)?;
        } else {
            session
                .transit(&key.mount, |t| async move { t.soft_delete_key(name).await })
                .await
                .map_err(map)?;
        }
        tracing::info!(key_id = %key.native_id(), purged = purge, window_days = ?request.window, "deleted key");
        Ok(())
    }

    pub async fn get_import_parameters(
        &self,
        request: ops::GetImportParametersRequest,
    ) -> Result<ops::GetImportParametersResponse, Status> {
        let params = parameters(request.parameters)?;
        let (session, key) = self.resolve(params.config.as_ref(), &params.key_id)?;
        let algorithm = ops::KeyAlgorithm::try_from(request.algorithm)
            .unwrap_or(ops::KeyAlgorithm::Unspecified);
        let algorithm = if algorithm == ops::KeyAlgorithm::Unspecified {
            ops::KeyAlgorithm::Aes256
        } else {
            algorithm
        };
        let key_type = mapping::transit_type(algorithm)
            .ok_or_else(|| Status::invalid_argument("unsupported algorithm"))?;
        if let Some(info) = Self::read(&session, &key, Rpc::Other).await?
            && !info.imported_key
        {
            return Err(Status::failed_precondition(format!(
                "key {} holds material generated by OpenBao; import into a new BYOK key",
                key.native_id()
            )));
        }
        let public_key = session
            .transit(&key.mount, |t| async move { t.wrapping_key().await })
            .await
            .map_err(|e| mapping::status_from_bao(&e, Rpc::Other))?;
        let provider_params = json!({
            "mount": key.mount, "name": key.name, "type": key_type.as_str()
        })
        .to_string();
        let mut parameters = Map::new();
        parameters.insert("publicKey".into(), public_key.into());
        parameters.insert("wrappingAlgorithm".into(), "CKM_RSA_AES_KEY_WRAP".into());
        parameters.insert("hashFunction".into(), "SHA256".into());
        parameters.insert("providerParams".into(), provider_params.into());
        parameters.insert("algorithm".into(), key_type.as_str().into());
        Ok(ops::GetImportParametersResponse {
            key_id: key.native_id(),
            import_parameters: Some(config::json_to_struct(&parameters)),
        })
    }

    pub async fn import_key_material(
        &self,
        request: ops::ImportKeyMaterialRequest,
    ) -> Result<(), Status> {
        let params = parameters(request.parameters)?;
        let (session, key) = self.resolve(params.config.as_ref(), &params.key_id)?;
        let import = request
            .import_parameters
            .as_ref()
            .map(config::struct_to_json)
            .unwrap_or_default();
        let provider: Value = import
            .get("providerParams")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| {
                Status::invalid_argument(
                    "import_parameters.providerParams is missing or not JSON; pass what GetImportParameters returned",
                )
            })?;
        if provider["name"].as_str() != Some(key.name.as_str())
            || provider["mount"].as_str() != Some(key.mount.as_str())
        {
            return Err(Status::invalid_argument(format!(
                "the import parameters were made for another key than {}",
                key.native_id()
            )));
        }
        let key_type = provider["type"]
            .as_str()
            .unwrap_or("aes256-gcm96")
            .to_owned();
        let material = request.encrypted_key_material.trim().to_owned();
        if material.is_empty() || openbao_client::transit::base64_decode(&material).is_none() {
            return Err(Status::invalid_argument(
                "encrypted_key_material must be base64 of RSA-OAEP-SHA256(AES key) || AES-KWP(key material)",
            ));
        }
        let existing = Self::read(&session, &key, Rpc::Other).await?;
        let name = key.name.as_str();
        let material = material.as_str();
        let result = match existing {
            Some(info) if info.imported_key => {
                session
                    .transit(&key.mount, |t| async move {
                        t.import_key_version(name, material, "SHA256").await
                    })
                    .await
            }
            Some(_) => {
                return Err(Status::failed_precondition(format!(
                    "key {} holds material generated by OpenBao; it cannot take imported material",
                    key.native_id()
                )));
            }
            None => {
                let import = &ImportKey {
                    ciphertext: material.to_owned(),
                    hash_function: "SHA256".into(),
                    key_type,
                    exportable: false,
                    allow_plaintext_backup: false,
                    allow_rotation: self.loaded().config.allow_imported_key_rotation,
                    auto_rotate_period: None,
                };
                session
                    .transit(
                        &key.mount,
                        |t| async move { t.import_key(name, import).await },
                    )
                    .await
            }
        };
        result.map_err(|e| match &e {
            BaoError::Server { message, .. } | BaoError::BadRequest { message, .. }
                if message.contains("decryption error") || message.contains("unwrap") =>
            {
                Status::invalid_argument(format!(
                    "OpenBao could not unwrap the key material ({message}); wrap it with the publicKey from GetImportParameters using RSA-OAEP-SHA256 and AES-KWP"
                ))
            }
            _ => mapping::status_from_bao(&e, Rpc::Other),
        })?;
        tracing::info!(key_id = %key.native_id(), "imported key material");
        Ok(())
    }

    pub fn validate_key(&self, request: &ops::ValidateKeyRequest) -> ops::ValidateKeyResponse {
        let loaded = self.loaded();
        let verdict = validate_key(&loaded.config, request);
        ops::ValidateKeyResponse {
            is_valid: verdict.is_ok(),
            message: verdict.err().unwrap_or_default(),
        }
    }

    pub fn validate_key_access_data(
        &self,
        request: &ops::ValidateKeyAccessDataRequest,
    ) -> ops::ValidateKeyAccessDataResponse {
        let loaded = self.loaded();
        let mut problems = Vec::new();
        match &request.management {
            Some(management) => {
                if let Err(p) = config::validate_stored(
                    &config::struct_to_json(management),
                    &loaded.config,
                    loaded.ca_pem.as_deref(),
                ) {
                    problems.push(format!("management: {p}"));
                }
            }
            None => problems.push("management access data is missing".to_owned()),
        }
        if let Some(crypto) = &request.crypto {
            for (instance, values) in config::struct_to_json(crypto) {
                match values {
                    Value::Object(values) => {
                        if let Err(p) = config::validate_stored(
                            &values,
                            &loaded.config,
                            loaded.ca_pem.as_deref(),
                        ) {
                            problems.push(format!("crypto instance {instance}: {p}"));
                        }
                    }
                    _ => problems.push(format!("crypto instance {instance} is not an object")),
                }
            }
        }
        ops::ValidateKeyAccessDataResponse {
            is_valid: problems.is_empty(),
            message: problems.join("; "),
        }
    }

    pub fn transform_crypto_access_data(
        &self,
        request: &ops::TransformCryptoAccessDataRequest,
    ) -> Result<ops::TransformCryptoAccessDataResponse, Status> {
        let loaded = self.loaded();
        let transformed = transform_crypto_access_data(
            &loaded.config,
            loaded.ca_pem.as_deref(),
            &request.native_key_id,
            &request.access_data,
        )
        .map_err(|problem| mapping::invalid_access_data(&problem))?;
        Ok(ops::TransformCryptoAccessDataResponse {
            transformed_access_data: transformed,
        })
    }

    pub fn extract_key_region(
        &self,
        request: &ops::ExtractKeyRegionRequest,
    ) -> Result<ops::ExtractKeyRegionResponse, Status> {
        let loaded = self.loaded();
        let from_access_data = request
            .management_access_data
            .as_ref()
            .map(config::struct_to_json)
            .and_then(|m| m.get("region").and_then(Value::as_str).map(str::to_owned))
            .filter(|r| !r.trim().is_empty());
        from_access_data
            .or_else(|| loaded.config.region.clone())
            .map(|region| ops::ExtractKeyRegionResponse { region })
            .ok_or_else(|| {
                mapping::invalid_access_data(&config::AccessDataProblem {
                    missing: vec!["region".into()],
                    ..Default::default()
                })
            })
    }

    /// A handle to wrap and unwrap L2 key material with one L1 key.
    pub fn key(&self, values: &Map<String, Value>, key_id: &str) -> Result<L1Key, Status> {
        let target = self.target(values)?;
        let key = mapping::parse_key_id(
            key_id,
            &target.transit_mount,
            &self.loaded().config.key_name_prefix,
        )
        .map_err(Status::invalid_argument)?;
        Ok(L1Key {
            session: self.session(&target)?,
            key,
        })
    }
}

/// An L1 key in OpenBao Transit, for wrapping L2 key material. The key never
/// leaves OpenBao; ciphertexts are `vault:v<n>:<base64>`.
#[derive(Debug, Clone)]
pub struct L1Key {
    session: Arc<Session>,
    key: KeyRef,
}

impl L1Key {
    pub fn native_id(&self) -> String {
        self.key.native_id()
    }

    fn map(e: BaoError) -> Status {
        mapping::status_from_bao(&e, Rpc::Other)
    }

    /// Wraps `plaintext` with the latest version (or `key_version`).
    /// Concurrent calls for this key share Transit requests ([`crate::batch`]).
    pub async fn encrypt(
        &self,
        plaintext: &[u8],
        key_version: Option<u32>,
        associated_data: Option<&[u8]>,
    ) -> Result<Encrypted, Status> {
        let options = EncryptOptions {
            key_version,
            associated_data: associated_data.map(<[u8]>::to_vec),
        };
        let item = (SecretSlice::from(plaintext.to_vec()), options);
        batch::submit::<batch::Encrypt>(&self.session, &self.key, item).await
    }

    /// Unwraps a `vault:v<n>:` ciphertext.
    pub async fn decrypt(
        &self,
        ciphertext: &str,
        associated_data: Option<&[u8]>,
    ) -> Result<SecretSlice<u8>, Status> {
        check_format(ciphertext)?;
        let item = (ciphertext.to_owned(), associated_data.map(<[u8]>::to_vec));
        batch::submit::<batch::Decrypt>(&self.session, &self.key, item).await
    }

    /// Re-wraps a ciphertext to the latest version (or `key_version`)
    /// inside OpenBao; the plaintext never leaves it.
    pub async fn rewrap(
        &self,
        ciphertext: &str,
        key_version: Option<u32>,
    ) -> Result<Encrypted, Status> {
        check_format(ciphertext)?;
        let item = (ciphertext.to_owned(), key_version);
        batch::submit::<batch::Rewrap>(&self.session, &self.key, item).await
    }

    /// Batch requests and the calls they carried so far, for this key's
    /// session (every key of the same identity counts).
    pub fn batch_stats(&self) -> BatchStats {
        self.session.batches().stats()
    }

    /// Adds a key version (needs the management policy); returns the new
    /// latest version.
    pub async fn rotate(&self) -> Result<u32, Status> {
        let name = self.key.name.as_str();
        self.session
            .transit(&self.key.mount, |t| async move { t.rotate_key(name).await })
            .await
            .map_err(Self::map)?;
        self.latest_version().await
    }

    pub async fn latest_version(&self) -> Result<u32, Status> {
        let info = Keystore::read_existing(&self.session, &self.key, Rpc::Other).await?;
        Ok(info.latest_version)
    }
}

/// Refuses what cannot be a Transit ciphertext before calling OpenBao.
fn check_format(ciphertext: &str) -> Result<(), Status> {
    match openbao_client::transit::ciphertext_version(ciphertext) {
        Some(_) => Ok(()),
        None => Err(Status::invalid_argument(
            "the ciphertext is not in Transit's vault:v<n>:<base64> format",
        )),
    }
}

fn parameters(params: Option<ops::RequestParameters>) -> Result<ops::RequestParameters, Status> {
    params.ok_or_else(|| {
        Status::invalid_argument("the request has no parameters (config and key_id)")
    })
}

/// ValidateKey without I/O: `Err(message)` when invalid.
pub fn validate_key(
    config: &PluginConfig,
    request: &ops::ValidateKeyRequest,
) -> Result<(), String> {
    let key_type = ops::KeyType::try_from(request.key_type).unwrap_or(ops::KeyType::Unspecified);
    let algorithm =
        ops::KeyAlgorithm::try_from(request.algorithm).unwrap_or(ops::KeyAlgorithm::Unspecified);
    if key_type == ops::KeyType::Unspecified {
        return Err("key type is unspecified".into());
    }
    if algorithm == ops::KeyAlgorithm::Unspecified {
        return Err("key algorithm is unspecified".into());
    }
    match (key_type, algorithm) {
        (_, ops::KeyAlgorithm::Aes256) => {}
        (ops::KeyType::Hyok, _) => return Err("HYOK keys must be AES256".into()),
        (_, _) if !config.allow_rsa => {
            return Err("RSA keys are disabled in this plugin's configuration".into());
        }
        _ => {}
    }
    let region = request.region.trim();
    if region.is_empty() {
        return Err("region is empty".into());
    }
    if !config.regions.is_empty() && !config.regions.iter().any(|r| r == region) {
        return Err(format!(
            "region {region:?} is not served by this OpenBao; allowed: {}",
            config.regions.join(", ")
        ));
    }
    if key_type == ops::KeyType::Hyok {
        // Shape only: the mount is checked against the access data when
        // the key is used.
        mapping::split_key_id(&request.native_key_id)?;
    }
    Ok(())
}

/// TransformCryptoAccessData without I/O: one `OpenBaoKeyAccessData` per
/// instance of the JSON `{instance: {...}}`. Each instance is resolved by
/// the same rules as a call's access data ([`config::resolve_access`]), so
/// a refused field is refused here too, and the key id must lie in the
/// instance's Transit mount.
pub fn transform_crypto_access_data(
    config: &PluginConfig,
    config_ca_pem: Option<&str>,
    native_key_id: &str,
    access_data: &[u8],
) -> Result<std::collections::HashMap<String, Vec<u8>>, config::AccessDataProblem> {
    use prost::Message;
    let cannot_parse = |message: String| config::AccessDataProblem {
        invalid: vec![message],
        ..Default::default()
    };
    let instances: Map<String, Value> = serde_json::from_slice(access_data).map_err(|e| {
        cannot_parse(format!(
            "access data is not a JSON object of instances: {e}"
        ))
    })?;
    let mut out = std::collections::HashMap::new();
    for (instance, values) in instances {
        let Value::Object(values) = values else {
            return Err(cannot_parse(format!(
                "instance {instance} is not an object"
            )));
        };
        let access = config::resolve_access(&values, config, config_ca_pem, Stage::Stored)?;
        let key = mapping::parse_key_id(
            native_key_id,
            &access.transit_mount,
            &config.key_name_prefix,
        )
        .map_err(|why| cannot_parse(format!("instance {instance}: {why}")))?;
        let key_version = values
            .get("versionIdentifier")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let message = crate::proto::openbao::keystore::v1::OpenBaoKeyAccessData {
            address: access.address.unwrap_or_default(),
            namespace: String::new(),
            transit_mount: key.mount.clone(),
            key_name: key.name.clone(),
            key_version,
            auth_method: access.method,
            auth_mount: access.auth_mount,
            auth_role: access.role.unwrap_or_default(),
            ca_cert_pem: access.ca_pem.unwrap_or_default(),
        };
        out.insert(instance, message.encode_to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::openbao::keystore::v1::OpenBaoKeyAccessData;
    use prost::Message;

    fn validate(
        key_type: ops::KeyType,
        algorithm: ops::KeyAlgorithm,
        region: &str,
        id: &str,
    ) -> Result<(), String> {
        let config = PluginConfig {
            regions: vec!["eu-1".into()],
            ..Default::default()
        };
        validate_key(
            &config,
            &ops::ValidateKeyRequest {
                key_type: key_type.into(),
                algorithm: algorithm.into(),
                region: region.into(),
                native_key_id: id.into(),
            },
        )
    }

    #[test]
    fn validate_key_rules() {
        use ops::KeyAlgorithm::*;
        use ops::KeyType::*;
        assert!(validate(SystemManaged, Aes256, "eu-1", "").is_ok());
        assert!(validate(SystemManaged, Rsa4096, "eu-1", "").is_ok());
        assert!(validate(Hyok, Aes256, "eu-1", "transit/openkcm-a").is_ok());
        assert!(
            validate(Hyok, Rsa3072, "eu-1", "transit/openkcm-a")
                .unwrap_err()
                .contains("AES256")
        );
        assert!(validate(Hyok, Aes256, "eu-1", "").is_err());
        assert!(
            validate(SystemManaged, Aes256, "us-1", "")
                .unwrap_err()
                .contains("eu-1")
        );
        assert!(validate(ops::KeyType::Unspecified, Aes256, "eu-1", "").is_err());
        assert!(validate(Byok, ops::KeyAlgorithm::Unspecified, "eu-1", "").is_err());
    }

    #[test]
    fn transform_makes_one_message_per_instance() {
        let config = PluginConfig {
            address: Some("https://bao:8200".into()),
            ..Default::default()
        };
        let data = br#"{"eu": {"certificateSubject": "CN=x", "isEditable": true, "versionIdentifier": "3", "certRole": "tenant"},
                        "us": {"authMethod": "approle", "roleId": "r1", "transitMount": "transit"}}"#;
        let out =
            transform_crypto_access_data(&config, Some("CA"), "transit/openkcm-k", data).unwrap();
        let eu = OpenBaoKeyAccessData::decode(out["eu"].as_slice()).unwrap();
        assert_eq!(eu.key_name, "openkcm-k");
        assert_eq!(eu.transit_mount, "transit");
        assert_eq!(eu.key_version, "3");
        assert_eq!(eu.auth_method, "cert");
        assert_eq!(eu.auth_role, "tenant");
        assert_eq!(eu.ca_cert_pem, "CA");
        assert_eq!(eu.address, "https://bao:8200");
        let us = OpenBaoKeyAccessData::decode(out["us"].as_slice()).unwrap();
        assert_eq!(
            (
                us.auth_method.as_str(),
                us.auth_role.as_str(),
                us.auth_mount.as_str()
            ),
            ("approle", "r1", "approle")
        );
        assert!(transform_crypto_access_data(&config, None, "transit/k", b"[1]").is_err());
        assert!(
            transform_crypto_access_data(
                &config,
                None,
                "transit/k",
                br#"{"a": {"authMethod": "approle"}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn transform_takes_the_mount_from_the_access_data_and_refuses_file_paths() {
        let config = PluginConfig {
            address: Some("https://bao:8200".into()),
            ..Default::default()
        };
        let other_mount = br#"{"eu": {"certRole": "t", "transitMount": "tenant-a"}}"#;
        let problem =
            transform_crypto_access_data(&config, None, "tenant-b/openkcm-k", other_mount)
                .unwrap_err();
        assert!(problem.to_string().contains("transitMount"), "{problem}");
        let bare = OpenBaoKeyAccessData::decode(
            transform_crypto_access_data(&config, None, "openkcm-k", other_mount).unwrap()["eu"]
                .as_slice(),
        )
        .unwrap();
        assert_eq!(bare.transit_mount, "tenant-a");
        let file =
            br#"{"eu": {"authMethod": "approle", "roleId": "r", "secretIdFile": "/etc/shadow"}}"#;
        let problem =
            transform_crypto_access_data(&config, None, "transit/openkcm-k", file).unwrap_err();
        assert_eq!(problem.refused[0].field, "secretIdFile");
        assert!(!problem.to_string().contains("/etc/shadow"), "{problem}");
    }
}
