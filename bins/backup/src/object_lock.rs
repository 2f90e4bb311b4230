//! S3 Object Lock retention on a finished backup, so that neither a
//! compromised cluster nor a stolen storage key can delete it early.
//! object_store cannot set retention, so this uses the AWS SDK, with the
//! same standard credential chain and ring-based TLS.

use std::time::Duration;

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
use aws_smithy_http_client::tls;

/// Which Object Lock mode to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LockMode {
    /// Users with s3:BypassGovernanceRetention can still delete early.
    Governance,
    /// Nobody can delete or shorten it until the date passes.
    Compliance,
}

/// Applies retention to objects in one S3 bucket.
#[derive(Debug)]
pub struct ObjectLock {
    client: aws_sdk_s3::Client,
    bucket: String,
    mode: LockMode,
    period: Duration,
}

impl ObjectLock {
    /// `ca_pem`: the CA certificates of a private endpoint, trusted
    /// besides the platform's roots.
    pub async fn new(
        bucket: &str,
        endpoint: Option<&str>,
        ca_pem: Option<Vec<u8>>,
        mode: LockMode,
        period: Duration,
    ) -> Result<Self, String> {
        let mut trust = tls::TrustStore::default();
        if let Some(pem) = ca_pem {
            trust = trust.with_pem_certificate(pem);
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(
                tls::TlsContext::builder()
                    .with_trust_store(trust)
                    .build()
                    .map_err(|e| format!("cannot set up TLS for Object Lock: {e}"))?,
            )
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .load()
            .await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            mode,
            period,
        })
    }

    /// Sets the retention of `key` to now + the period.
    pub async fn retain(&self, key: &str) -> Result<(), String> {
        let until = std::time::SystemTime::now() + self.period;
        let mode = match self.mode {
            LockMode::Governance => ObjectLockRetentionMode::Governance,
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        };
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(DateTime::from(until))
                    .build(),
            )
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                format!("cannot set Object Lock retention on {key}: {detail}; the bucket must have Object Lock enabled")
            })
    }
}
