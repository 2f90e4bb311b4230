//! Thin tonic shells over [`Keystore`]: the keystore operations, the
//! plugin-sdk bootstrap and configuration, and the L1 crypto extension.

use std::sync::Arc;

use secrecy::ExposeSecret;
use tonic::{Request, Response, Status};

use crate::config::{self, PluginConfig};
use crate::goplugin::Shutdown;
use crate::keystore::Keystore;
use crate::proto::openbao::keystore::v1 as l1;
use crate::proto::plugin::keystore::operations::v1 as ops;
use crate::proto::service::common::config::v1 as cfg;
use crate::proto::service::init::v1 as init;

/// Full names of the services this plugin implements, as Init reports them.
pub const OPERATIONS_SERVICE: &str = "plugin.keystore.operations.v1.KeystoreInstanceKeyOperation";
pub const CONFIG_SERVICE: &str = "service.common.config.v1.Config";
pub const L1_CRYPTO_SERVICE: &str = "openbao.keystore.v1.L1KeyCrypto";

/// The plugin's build information as Configure returns it (a JSON object).
pub fn build_info() -> String {
    serde_json::json!({
        "name": "openbao-keystore",
        "version": env!("CARGO_PKG_VERSION"),
        "vendor": "openbao-operator",
    })
    .to_string()
}

/// Every gRPC service of the plugin, sharing one keystore.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub keystore: Arc<Keystore>,
    pub shutdown: Shutdown,
}

#[tonic::async_trait]
impl ops::keystore_instance_key_operation_server::KeystoreInstanceKeyOperation for Plugin {
    async fn get_key(
        &self,
        request: Request<ops::GetKeyRequest>,
    ) -> Result<Response<ops::GetKeyResponse>, Status> {
        self.keystore
            .get_key(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn create_key(
        &self,
        request: Request<ops::CreateKeyRequest>,
    ) -> Result<Response<ops::CreateKeyResponse>, Status> {
        self.keystore
            .create_key(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_key(
        &self,
        request: Request<ops::DeleteKeyRequest>,
    ) -> Result<Response<ops::DeleteKeyResponse>, Status> {
        self.keystore.delete_key(request.into_inner()).await?;
        Ok(Response::new(ops::DeleteKeyResponse {}))
    }

    async fn enable_key(
        &self,
        request: Request<ops::EnableKeyRequest>,
    ) -> Result<Response<ops::EnableKeyResponse>, Status> {
        self.keystore
            .enable_key(request.into_inner().parameters)
            .await?;
        Ok(Response::new(ops::EnableKeyResponse {}))
    }

    async fn disable_key(
        &self,
        request: Request<ops::DisableKeyRequest>,
    ) -> Result<Response<ops::DisableKeyResponse>, Status> {
        self.keystore
            .disable_key(request.into_inner().parameters)
            .await?;
        Ok(Response::new(ops::DisableKeyResponse {}))
    }

    async fn get_import_parameters(
        &self,
        request: Request<ops::GetImportParametersRequest>,
    ) -> Result<Response<ops::GetImportParametersResponse>, Status> {
        self.keystore
            .get_import_parameters(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn import_key_material(
        &self,
        request: Request<ops::ImportKeyMaterialRequest>,
    ) -> Result<Response<ops::ImportKeyMaterialResponse>, Status> {
        self.keystore
            .import_key_material(request.into_inner())
            .await?;
        Ok(Response::new(ops::ImportKeyMaterialResponse {}))
    }

    async fn validate_key(
        &self,
        request: Request<ops::ValidateKeyRequest>,
    ) -> Result<Response<ops::ValidateKeyResponse>, Status> {
        Ok(Response::new(self.keystore.validate_key(request.get_ref())))
    }

    async fn validate_key_access_data(
        &self,
        request: Request<ops::ValidateKeyAccessDataRequest>,
    ) -> Result<Response<ops::ValidateKeyAccessDataResponse>, Status> {
        Ok(Response::new(
            self.keystore.validate_key_access_data(request.get_ref()),
        ))
    }

    async fn transform_crypto_access_data(
        &self,
        request: Request<ops::TransformCryptoAccessDataRequest>,
    ) -> Result<Response<ops::TransformCryptoAccessDataResponse>, Status> {
        self.keystore
            .transform_crypto_access_data(request.get_ref())
            .map(Response::new)
    }

    async fn extract_key_region(
        &self,
        request: Request<ops::ExtractKeyRegionRequest>,
    ) -> Result<Response<ops::ExtractKeyRegionResponse>, Status> {
        self.keystore
            .extract_key_region(request.get_ref())
            .map(Response::new)
    }

    async fn get_key_versions(
        &self,
        request: Request<ops::GetKeyVersionsRequest>,
    ) -> Result<Response<ops::GetKeyVersionsResponse>, Status> {
        self.keystore
            .get_key_versions(request.into_inner())
            .await
            .map(Response::new)
    }
}

#[tonic::async_trait]
impl init::bootstrap_server::Bootstrap for Plugin {
    async fn init(
        &self,
        request: Request<init::InitRequest>,
    ) -> Result<Response<init::InitResponse>, Status> {
        let hosts = request.into_inner().host_service_names;
        tracing::info!(host_services = ?hosts, "initialised by the host");
        Ok(Response::new(init::InitResponse {
            plugin_service_names: vec![OPERATIONS_SERVICE.to_owned(), CONFIG_SERVICE.to_owned()],
        }))
    }

    async fn deinit(
        &self,
        _: Request<init::DeinitRequest>,
    ) -> Result<Response<init::DeinitResponse>, Status> {
        tracing::info!("deinitialised by the host; revoking cached OpenBao tokens");
        self.keystore.revoke_all().await;
        Ok(Response::new(init::DeinitResponse {}))
    }
}

#[tonic::async_trait]
impl cfg::config_server::Config for Plugin {
    async fn configure(
        &self,
        request: Request<cfg::ConfigureRequest>,
    ) -> Result<Response<cfg::ConfigureResponse>, Status> {
        let yaml = request.into_inner().yaml_configuration;
        let config = PluginConfig::from_yaml(&yaml).map_err(Status::invalid_argument)?;
        self.keystore
            .configure(config.clone())
            .map_err(Status::invalid_argument)?;
        tracing::info!(
            address = ?config.address,
            transit_mount = %config.transit_mount,
            key_name_prefix = %config.key_name_prefix,
            "configured"
        );
        Ok(Response::new(cfg::ConfigureResponse {
            build_info: Some(build_info()),
        }))
    }
}

fn l1_key(
    keystore: &Keystore,
    parameters: Option<l1::CryptoParameters>,
) -> Result<crate::keystore::L1Key, Status> {
    let parameters = parameters.ok_or_else(|| {
        Status::invalid_argument("the request has no parameters (config and key_id)")
    })?;
    let values = parameters
        .config
        .as_ref()
        .and_then(|c| c.values.as_ref())
        .map(config::struct_to_json)
        .unwrap_or_default();
    keystore.key(&values, &parameters.key_id)
}

fn version(v: u32) -> Option<u32> {
    (v != 0).then_some(v)
}

fn non_empty(bytes: &[u8]) -> Option<&[u8]> {
    (!bytes.is_empty()).then_some(bytes)
}

#[tonic::async_trait]
impl l1::l1_key_crypto_server::L1KeyCrypto for Plugin {
    async fn encrypt(
        &self,
        request: Request<l1::EncryptRequest>,
    ) -> Result<Response<l1::EncryptResponse>, Status> {
        let request = request.into_inner();
        let key = l1_key(&self.keystore, request.parameters)?;
        let wrapped = key
            .encrypt(
                &request.plaintext,
                version(request.key_version),
                non_empty(&request.associated_data),
            )
            .await?;
        Ok(Response::new(l1::EncryptResponse {
            ciphertext: wrapped.ciphertext,
            key_version: wrapped.key_version,
        }))
    }

    async fn decrypt(
        &self,
        request: Request<l1::DecryptRequest>,
    ) -> Result<Response<l1::DecryptResponse>, Status> {
        let request = request.into_inner();
        let key = l1_key(&self.keystore, request.parameters)?;
        let plaintext = key
            .decrypt(&request.ciphertext, non_empty(&request.associated_data))
            .await?;
        Ok(Response::new(l1::DecryptResponse {
            plaintext: plaintext.expose_secret().to_vec(),
            key_version: openbao_client::transit::ciphertext_version(&request.ciphertext)
                .unwrap_or(0),
        }))
    }

    async fn rewrap(
        &self,
        request: Request<l1::RewrapRequest>,
    ) -> Result<Response<l1::RewrapResponse>, Status> {
        let request = request.into_inner();
        let key = l1_key(&self.keystore, request.parameters)?;
        let wrapped = key
            .rewrap(&request.ciphertext, version(request.key_version))
            .await?;
        Ok(Response::new(l1::RewrapResponse {
            ciphertext: wrapped.ciphertext,
            key_version: wrapped.key_version,
        }))
    }

    async fn rotate_key(
        &self,
        request: Request<l1::RotateKeyRequest>,
    ) -> Result<Response<l1::RotateKeyResponse>, Status> {
        let key = l1_key(&self.keystore, request.into_inner().parameters)?;
        let latest_version = key.rotate().await?;
        tracing::info!(key_id = %key.native_id(), latest_version, "rotated key");
        Ok(Response::new(l1::RotateKeyResponse { latest_version }))
    }
}
