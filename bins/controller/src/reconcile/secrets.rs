//! Step 2: key material. Random keys and certificates are created once and
//! never overwritten; what exists is read, so a restarted controller uses
//! the same material.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use lifecycle_types::cluster::{TlsMode, UnsealType};
use lifecycle_types::conditions::reasons;
use lifecycle_types::{OpenBaoCluster, labels, names};
use sha2::{Digest, Sha256};

use super::ReconcileError;
use crate::context::Context;
use crate::render::config::{TLS_CA, TLS_CERT};
use crate::render::{self};
use crate::status::TlsView;

/// Key material the rest of the reconcile needs.
#[derive(Debug, Clone)]
pub struct Material {
    /// Id of the static seal key (`""` for other seals).
    pub static_key_id: String,
    /// CA bundle to trust when dialling the pods.
    pub ca_pem: Option<String>,
    /// Changes whenever the pods' TLS files change (rolls the pods).
    pub tls_hash: String,
    pub tls: TlsView,
    /// Unix time at which the server certificate expires.
    pub certificate_expiry: Option<i64>,
    pub root_token_stored: bool,
}

pub async fn ensure(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    paused: bool,
) -> Result<Material, ReconcileError> {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let static_key_id = if cluster.spec.unseal.type_ == UnsealType::Static {
        static_key(cluster, ctx, paused).await?
    } else {
        String::new()
    };
    let root_token_stored = ctx
        .applier
        .get::<Secret>(&namespace, &names::root_token_secret(&name))
        .await?
        .is_some();
    let tls = match cluster.spec.tls.mode {
        TlsMode::OperatorManaged => super::tls::operator_managed(cluster, ctx, paused).await?,
        TlsMode::External => external(cluster, ctx).await?,
        TlsMode::Acme => TlsState {
            ca_pem: None,
            hash: String::new(),
            view: TlsView {
                ready: true,
                reason: reasons::ACME_MANAGED,
                message: "OpenBao obtains and renews its certificate through ACME".into(),
            },
            expiry: None,
        },
    };
    Ok(Material {
        static_key_id,
        ca_pem: tls.ca_pem,
        tls_hash: tls.hash,
        tls: tls.view,
        certificate_expiry: tls.expiry,
        root_token_stored,
    })
}

/// TLS as found (and, when operator-managed, made).
#[derive(Debug, Clone)]
pub struct TlsState {
    pub ca_pem: Option<String>,
    pub hash: String,
    pub view: TlsView,
    pub expiry: Option<i64>,
}

/// The static seal key: generated once (32 random bytes), then only read.
async fn static_key(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    paused: bool,
) -> Result<String, ReconcileError> {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let secret_name = names::unseal_secret(&name);
    let existing = ctx.applier.get::<Secret>(&namespace, &secret_name).await?;
    let secret = match existing {
        Some(secret) => secret,
        None if paused => return Ok(String::new()),
        None => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| {
                ReconcileError::Other(format!(
                    "the system random source failed ({e}); the seal key was not created"
                ))
            })?;
            let id = render::secrets::seal_key_id(&name, 1);
            let secret = render::secrets::unseal_secret(cluster, &key, &id)?;
            ctx.applier.create_if_missing(&secret).await?
        }
    };
    secret
        .annotations()
        .get(labels::SEAL_KEY_ID)
        .cloned()
        .ok_or_else(|| {
            ReconcileError::Other(format!(
                "Secret {namespace}/{secret_name} has no {} annotation; restore the Secret from backup (it holds the only key to the cluster's data)",
                labels::SEAL_KEY_ID
            ))
        })
}

/// The user's Secret (for example from cert-manager): read and watched,
/// never written.
async fn external(cluster: &OpenBaoCluster, ctx: &Context) -> Result<TlsState, ReconcileError> {
    let namespace = cluster.namespace().unwrap_or_default();
    let secret_name = cluster
        .spec
        .tls
        .external_secret_name
        .clone()
        .unwrap_or_default();
    let missing = |reason: &'static str, message: String| TlsState {
        ca_pem: None,
        hash: String::new(),
        view: TlsView {
            ready: false,
            reason,
            message,
        },
        expiry: None,
    };
    let Some(secret) = ctx.applier.get::<Secret>(&namespace, &secret_name).await? else {
        return Ok(missing(
            reasons::TLS_SECRET_MISSING,
            format!(
                "spec.tls.externalSecretName: Secret {namespace}/{secret_name} does not exist; create it with tls.crt, tls.key and ca.crt (for example with cert-manager)"
            ),
        ));
    };
    let (Some(cert), Some(ca)) = (secret_text(&secret, TLS_CERT), secret_text(&secret, TLS_CA))
    else {
        return Ok(missing(
            reasons::TLS_SECRET_INVALID,
            format!(
                "Secret {namespace}/{secret_name} lacks {TLS_CERT} or {TLS_CA}; add the server certificate and the CA that signed it"
            ),
        ));
    };
    let expiry = crate::tls::inspect(&cert)
        .ok()
        .map(|info| info.not_after.as_second());
    Ok(TlsState {
        hash: tls_hash(&cert, &ca),
        ca_pem: Some(ca),
        view: TlsView {
            ready: true,
            reason: reasons::CERTIFICATE_VALID,
            message: format!("using the certificate in Secret {namespace}/{secret_name}"),
        },
        expiry,
    })
}

/// One field of a Secret as text.
pub fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// A digest of what the pods mount, so a new certificate rolls the pods.
pub fn tls_hash(cert_pem: &str, ca_pem: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(cert_pem.as_bytes());
    digest.update([0]);
    digest.update(ca_pem.as_bytes());
    hex::encode(digest.finalize())
}
