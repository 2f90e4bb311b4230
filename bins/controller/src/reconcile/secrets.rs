//! Step 2: key material. Random keys and certificates are created once and
//! never overwritten; what exists is read, so a restarted controller uses
//! the same material.

use kube::ResourceExt;
use lifecycle_types::cluster::{TlsMode, UnsealType};
use lifecycle_types::conditions::reasons;
use lifecycle_types::{OpenBaoCluster, labels, names};
use sha2::{Digest, Sha256};

use super::ReconcileError;
use super::dereference::secret_text;
use super::snapshot::{Material, Snapshot};
use crate::context::Context;
use crate::render::config::{TLS_CA, TLS_CERT};
use crate::render::{self};
use crate::status::TlsView;

pub async fn ensure(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    snapshot: &Snapshot,
    paused: bool,
) -> Result<Material, ReconcileError> {
    let static_key_id = if cluster.spec.unseal.type_ == UnsealType::Static {
        static_key(cluster, ctx, snapshot, paused).await?
    } else {
        String::new()
    };
    let tls = match cluster.spec.tls.mode {
        TlsMode::OperatorManaged => {
            super::tls::operator_managed(cluster, ctx, snapshot, paused).await?
        }
        TlsMode::External => external(cluster, snapshot),
        TlsMode::Acme => TlsState {
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
        tls_hash: tls.hash,
        tls: tls.view,
        certificate_expiry: tls.expiry,
    })
}

/// TLS as found (and, when operator-managed, made).
#[derive(Debug, Clone)]
pub struct TlsState {
    pub hash: String,
    pub view: TlsView,
    pub expiry: Option<i64>,
}

/// The static seal key: generated once (32 random bytes), then only read.
async fn static_key(
    cluster: &OpenBaoCluster,
    ctx: &Context,
    snapshot: &Snapshot,
    paused: bool,
) -> Result<String, ReconcileError> {
    let namespace = &snapshot.namespace;
    let secret_name = names::unseal_secret(&snapshot.name);
    let annotations = match &snapshot.secrets.unseal {
        Some(meta) => meta.annotations().clone(),
        None if paused => return Ok(String::new()),
        None => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| ReconcileError::Random(e.to_string()))?;
            let id = render::secrets::seal_key_id(&snapshot.name, 1);
            let secret = render::secrets::unseal_secret(cluster, &key, &id)?;
            // The cache may lag a Secret created a moment ago: creation
            // never overwrites, and a conflict reads the one that exists.
            ctx.applier
                .create_if_missing(&secret)
                .await?
                .annotations()
                .clone()
        }
    };
    annotations.get(labels::SEAL_KEY_ID).cloned().ok_or_else(|| {
        ReconcileError::SealKey(format!(
            "Secret {namespace}/{secret_name} has no {} annotation; restore the Secret from backup (it holds the only key to the cluster's data)",
            labels::SEAL_KEY_ID
        ))
    })
}

/// The user's Secret (for example from cert-manager): read and watched,
/// never written.
fn external(cluster: &OpenBaoCluster, snapshot: &Snapshot) -> TlsState {
    let namespace = &snapshot.namespace;
    let secret_name = cluster
        .spec
        .tls
        .external_secret_name
        .clone()
        .unwrap_or_default();
    let missing = |reason: &'static str, message: String| TlsState {
        hash: String::new(),
        view: TlsView {
            ready: false,
            reason,
            message,
        },
        expiry: None,
    };
    let Some(secret) = &snapshot.secrets.external_tls else {
        return missing(
            reasons::TLS_SECRET_MISSING,
            format!(
                "spec.tls.externalSecretName: Secret {namespace}/{secret_name} does not exist; create it with tls.crt, tls.key and ca.crt (for example with cert-manager)"
            ),
        );
    };
    let (Some(cert), Some(ca)) = (secret_text(secret, TLS_CERT), secret_text(secret, TLS_CA))
    else {
        return missing(
            reasons::TLS_SECRET_INVALID,
            format!(
                "Secret {namespace}/{secret_name} lacks {TLS_CERT} or {TLS_CA}; add the server certificate and the CA that signed it"
            ),
        );
    };
    let expiry = crate::tls::inspect(&cert)
        .ok()
        .map(|info| info.not_after.as_second());
    TlsState {
        hash: tls_hash(&cert, &ca),
        view: TlsView {
            ready: true,
            reason: reasons::CERTIFICATE_VALID,
            message: format!("using the certificate in Secret {namespace}/{secret_name}"),
        },
        expiry,
    }
}

/// A digest of what the pods mount, so a new certificate rolls the pods.
pub fn tls_hash(cert_pem: &str, ca_pem: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(cert_pem.as_bytes());
    digest.update([0]);
    digest.update(ca_pem.as_bytes());
    hex::encode(digest.finalize())
}
