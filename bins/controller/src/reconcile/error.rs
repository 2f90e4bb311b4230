//! Why a reconcile stopped early. Every kind has a stable `reason()` for
//! the Warning Event, the `Degraded` condition and the error metric, and a
//! message that says what to do.

use lifecycle_types::conditions::reasons;

use crate::apply::ApplyError;
use crate::render::RenderError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A Kubernetes API call failed.
    #[error("{source}{}", api_hint(source))]
    Api {
        #[from]
        source: ApplyError,
    },
    #[error(
        "rendering failed: {0}; this is a bug in the operator, please report it with the cluster's spec"
    )]
    Render(#[from] RenderError),
    #[error(
        "operator-managed TLS: {0}; check the CA and server Secrets, or delete them to have new ones issued"
    )]
    Tls(String),
    /// OpenBao refused or failed a call of the controller's.
    #[error(
        "OpenBao at {pod}: {source}; read the pod's log and the controller's policy (policies/controller.hcl)"
    )]
    OpenBao {
        pod: String,
        #[source]
        source: openbao_client::Error,
    },
    /// Running pods do not answer at all.
    #[error(
        "no running OpenBao pod answers ({pods}): {detail}; check that the pods listen on port 8200, that a NetworkPolicy lets the operator in, and that cluster DNS resolves the headless Service"
    )]
    Unreachable { pods: String, detail: String },
    #[error("{0}")]
    SealKey(String),
    #[error(
        "the system random source failed ({0}); nothing was written; check the node's entropy source"
    )]
    Random(String),
}

impl ReconcileError {
    /// The PascalCase reason for Events, conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Api { source } if source.is_refused() => reasons::KUBERNETES_WRITE_REFUSED,
            Self::Api { .. } => reasons::KUBERNETES_API_ERROR,
            Self::Render(_) => reasons::RENDER_FAILED,
            Self::Tls(_) => reasons::TLS_FAILED,
            Self::OpenBao { .. } => reasons::OPENBAO_REQUEST_FAILED,
            Self::Unreachable { .. } => reasons::OPENBAO_UNREACHABLE,
            Self::SealKey(_) => reasons::SEAL_KEY_INVALID,
            Self::Random(_) => reasons::RANDOM_SOURCE_FAILED,
        }
    }
}

/// What to do about a failed API call, by its kind.
fn api_hint(error: &ApplyError) -> &'static str {
    if error.is_refused() {
        "; the API server refused the write: check the operator's RBAC (manifests/base) and any admission policy or webhook that matches this object, then fix the spec or the policy"
    } else {
        "; the controller retries with back-off; check the API server's health if this persists"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> ReconcileError {
        let status = kube::core::Status::failure("denied by policy x", "Forbidden").with_code(code);
        ReconcileError::from(ApplyError::Api {
            verb: "apply",
            kind: "StatefulSet".into(),
            namespace: "ns".into(),
            name: "dev".into(),
            source: Box::new(kube::Error::Api(Box::new(status))),
        })
    }

    #[test]
    fn refused_writes_and_other_api_errors_have_their_own_reasons() {
        let refused = api_error(403);
        assert_eq!(refused.reason(), reasons::KUBERNETES_WRITE_REFUSED);
        let message = refused.to_string();
        assert!(message.contains("denied by policy x"), "{message}");
        assert!(message.contains("admission policy"), "{message}");
        assert_eq!(api_error(422).reason(), reasons::KUBERNETES_WRITE_REFUSED);
        assert_eq!(api_error(500).reason(), reasons::KUBERNETES_API_ERROR);
    }
}
