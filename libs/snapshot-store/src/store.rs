//! Object stores from a destination URL, with credentials from each
//! provider's standard chain (environment, web/workload identity, instance
//! metadata) and never from the URL or the command line.

use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{Certificate, ClientOptions, ObjectStore, ObjectStoreExt};

use crate::layout::{BackupName, MANIFEST_EXT, SNAPSHOT_EXT, manifest_path};
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::retention::Listed;

/// Failures of the storage side.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("destination {url:?} is not usable: {reason}")]
    Destination { url: String, reason: String },
    #[error(
        "storage CA file {path} is not usable: {reason}; give the PEM CA certificates in the caSecretRef Secret's ca.crt"
    )]
    CaFile { path: String, reason: String },
    #[error("object storage failed ({op} {path}): {detail}")]
    Object {
        op: &'static str,
        path: String,
        #[source]
        source: Box<object_store::Error>,
        /// The error and its causes: object_store's own text stops at
        /// "error sending request", the cause (an untrusted certificate,
        /// a refused connection) comes after.
        detail: String,
    },
    #[error(
        "manifest {path} is not valid JSON of the expected shape: {reason}; it was not written by this tool or is damaged"
    )]
    BadManifest { path: String, reason: String },
    #[error(
        "manifest {path} is larger than {limit} bytes, far more than a manifest this tool writes; it was not written by this tool or is damaged, so it is not read"
    )]
    ManifestTooLarge { path: String, limit: u64 },
}

impl StoreError {
    pub fn object(op: &'static str, path: &Path, source: object_store::Error) -> Self {
        StoreError::Object {
            op,
            path: path.to_string(),
            detail: with_causes(&source),
            source: Box::new(source),
        }
    }

    /// The manifest exists but cannot be trusted (not ours, damaged or oversized).
    pub fn is_bad_manifest(&self) -> bool {
        matches!(
            self,
            StoreError::BadManifest { .. } | StoreError::ManifestTooLarge { .. }
        )
    }

    /// The object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::Object { source, .. }
                if matches!(**source, object_store::Error::NotFound { .. })
        )
    }
}

/// `error`'s text followed by each cause's that it does not already contain.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let more = next.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = next.source();
    }
    text
}

/// A snapshot object without a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub path: Path,
    pub modified: jiff::Timestamp,
}

/// Endpoint overrides, for S3-compatible servers and emulators.
#[derive(Debug, Clone, Default)]
pub struct DestinationOptions {
    /// S3-compatible endpoint (e.g. a MinIO or versitygw URL).
    pub s3_endpoint: Option<String>,
    /// GCS endpoint (e.g. an emulator URL).
    pub gcs_endpoint: Option<String>,
    /// Talk to a local emulator: send unsigned requests and look up no
    /// credentials at all (in particular, never ask an instance metadata
    /// server, which only exists in a cloud).
    pub emulator: bool,
    /// PEM file of the CA certificates that sign the endpoint's certificate
    /// (a private CA), trusted besides the usual roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The HTTP client's options: the private CA's certificates, if any.
fn client_options(options: &DestinationOptions) -> Result<ClientOptions, StoreError> {
    let mut client = ClientOptions::new();
    let Some(file) = &options.ca_file else {
        return Ok(client);
    };
    let bad = |reason: String| StoreError::CaFile {
        path: file.display().to_string(),
        reason,
    };
    let pem = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
    let certificates = Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certificates.is_empty() {
        return Err(bad("it holds no PEM certificate".into()));
    }
    for certificate in certificates {
        client = client.with_root_certificate(certificate);
    }
    Ok(client)
}

/// What a builder's `from_env` does (every `{prefix}*` variable that names
/// a setting), for a builder that already has its client options: `from_env`
/// would start from defaults and `with_client_options` would then drop
/// the environment's client settings.
fn with_env<B, K: std::str::FromStr>(
    mut builder: B,
    prefix: &str,
    set: impl Fn(B, K, String) -> B,
) -> B {
    for (key, value) in std::env::vars_os() {
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str())
            && key.starts_with(prefix)
            && let Ok(config_key) = key.to_ascii_lowercase().parse()
        {
            builder = set(builder, config_key, value.to_owned());
        }
    }
    builder
}

/// An opened destination: the store and the prefix inside it.
#[derive(Debug, Clone)]
pub struct Destination {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The URL it was opened from (holds no credentials).
    pub url: String,
}

impl Destination {
    /// Opens `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` or `file:///dir/prefix`.
    pub fn open(url: &str, options: &DestinationOptions) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::Destination {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| {
            bad(format!("{e}; use s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir"))
        })?;
        let prefix = Path::from(parsed.path().trim_matches('/'));
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" => {
                let builder = AmazonS3Builder::new().with_client_options(client_options(options)?);
                let mut builder =
                    with_env(builder, "AWS_", AmazonS3Builder::with_config).with_url(url);
                if let Some(endpoint) = &options.s3_endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if options.emulator {
                    builder = builder.with_skip_signature(true);
                }
                Arc::new(builder.build().map_err(|e| bad(e.to_string()))?)
            }
            "gs" => {
                let plain = options
                    .gcs_endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://"));
                let client = client_options(options)?.with_allow_http(plain);
                let mut builder = GoogleCloudStorageBuilder::new().with_client_options(client);
                // What GoogleCloudStorageBuilder::from_env reads, on top of the client options.
                if let Ok(path) = std::env::var("SERVICE_ACCOUNT") {
                    builder = builder.with_service_account_path(path);
                }
                let mut builder =
                    with_env(builder, "GOOGLE_", GoogleCloudStorageBuilder::with_config)
                        .with_url(url);
                if let Some(endpoint) = &options.gcs_endpoint {
                    builder = builder.with_base_url(endpoint);
                }
                if options.emulator {
                    // A static placeholder credential: without one the client
                    // would fall back to the instance metadata server.
                    builder = builder
                        .with_skip_signature(true)
                        .with_bearer_token("emulator");
                }
                Arc::new(builder.build().map_err(|e| bad(e.to_string()))?)
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let builder = MicrosoftAzureBuilder::from_env().with_url(url);
                Arc::new(builder.build().map_err(|e| bad(e.to_string()))?)
            }
            "file" => {
                let root = parsed
                    .to_file_path()
                    .map_err(|()| bad("not an absolute local path".into()))?;
                std::fs::create_dir_all(&root)
                    .map_err(|e| bad(format!("cannot create {}: {e}", root.display())))?;
                let store =
                    LocalFileSystem::new_with_prefix(&root).map_err(|e| bad(e.to_string()))?;
                return Ok(Self {
                    store: Arc::new(store),
                    prefix: Path::default(),
                    url: url.to_owned(),
                });
            }
            other => {
                return Err(bad(format!(
                    "scheme {other:?} is not supported; use s3, gs, az or file"
                )));
            }
        };
        Ok(Self {
            store,
            prefix,
            url: url.to_owned(),
        })
    }

    /// Reads and parses a manifest. One larger than [`MAX_MANIFEST_BYTES`]
    /// is refused before it is parsed (or read whole): whoever can write to
    /// the bucket must not make the restore hold or parse an object of any size.
    pub async fn read_manifest(&self, path: &Path) -> Result<Manifest, StoreError> {
        let too_large = || StoreError::ManifestTooLarge {
            path: path.to_string(),
            limit: MAX_MANIFEST_BYTES,
        };
        let result = self
            .store
            .get(path)
            .await
            .map_err(|e| StoreError::object("get", path, e))?;
        if result.meta.size > MAX_MANIFEST_BYTES {
            return Err(too_large());
        }
        // The listed size is the store's word; count the bytes as they come too.
        let mut bytes = Vec::with_capacity(usize::try_from(result.meta.size).unwrap_or(0));
        let mut stream = result.into_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| StoreError::object("read", path, e))?
        {
            if (bytes.len() + chunk.len()) as u64 > MAX_MANIFEST_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Manifest::from_json(&bytes).map_err(|e| StoreError::BadManifest {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// Every good backup in `folder` (those with a manifest), oldest first,
    /// and the snapshot objects that have no manifest (debris of failed or
    /// interrupted backups) with their modification time.
    pub async fn list_backups(
        &self,
        folder: &Path,
    ) -> Result<(Vec<Listed>, Vec<Orphan>), StoreError> {
        let objects: Vec<_> = self
            .store
            .list(Some(folder))
            .try_collect()
            .await
            .map_err(|e| StoreError::object("list", folder, e))?;
        let mut manifests = Vec::new();
        let mut snapshots = Vec::new();
        for object in &objects {
            let Some(file) = object.location.filename() else {
                continue;
            };
            match BackupName::parse(file) {
                Some((name, MANIFEST_EXT)) => manifests.push(name),
                Some((name, SNAPSHOT_EXT)) => {
                    snapshots.push((name, object.location.clone(), object.last_modified))
                }
                _ => {}
            }
        }
        let mut good = Vec::new();
        for name in &manifests {
            let manifest = self.read_manifest(&manifest_path(folder, name)).await?;
            good.push(Listed {
                name: name.clone(),
                finished_at: manifest.finished_at,
            });
        }
        good.sort_by(|a, b| a.name.cmp(&b.name));
        let orphans = snapshots
            .into_iter()
            .filter(|(name, _, _)| !manifests.contains(name))
            .filter_map(|(_, path, modified)| {
                let modified = jiff::Timestamp::from_second(modified.timestamp()).ok()?;
                Some(Orphan { path, modified })
            })
            .collect();
        Ok((good, orphans))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;

    async fn local() -> (tempfile::TempDir, Destination) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let destination = Destination::open(&url, &DestinationOptions::default()).unwrap();
        (dir, destination)
    }

    #[test]
    fn a_storage_ca_file_without_certificates_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.crt");
        std::fs::write(&file, "not a certificate").unwrap();
        let options = DestinationOptions {
            s3_endpoint: Some("https://s3.internal:9000".into()),
            ca_file: Some(file),
            ..DestinationOptions::default()
        };
        let error = Destination::open("s3://b/p", &options)
            .unwrap_err()
            .to_string();
        assert!(error.contains("ca.crt"), "{error}");
        assert!(error.contains("caSecretRef"), "{error}");
    }

    #[tokio::test]
    async fn an_oversized_manifest_is_refused_before_it_is_parsed() {
        let (_dir, destination) = local().await;
        let path = Path::from("ns/c/20261125T210000Z-x.json");
        // Valid JSON of the right shape, padded past the limit with spaces:
        // only the size can make it fail.
        let mut json = crate::manifest::tests::sample().to_json();
        json.resize(MAX_MANIFEST_BYTES as usize + 1, b' ');
        destination
            .store
            .put(&path, PutPayload::from(json.clone()))
            .await
            .unwrap();
        let err = destination.read_manifest(&path).await.unwrap_err();
        assert!(
            matches!(err, StoreError::ManifestTooLarge { .. }) && err.is_bad_manifest(),
            "{err}"
        );
        assert!(err.to_string().contains("65536"), "{err}");
        // At the limit it is read.
        json.truncate(MAX_MANIFEST_BYTES as usize);
        destination
            .store
            .put(&path, PutPayload::from(json))
            .await
            .unwrap();
        assert_eq!(
            destination.read_manifest(&path).await.unwrap(),
            crate::manifest::tests::sample()
        );
    }
}
