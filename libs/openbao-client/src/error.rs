//! Errors that keep OpenBao's own words and never carry a credential.

use reqwest::StatusCode;

/// Everything a call can fail with. Variants keep the request path and the
/// server's error text, so a user can act on them; none ever holds a token,
/// secret_id, key or request body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 403, which is also what an expired or revoked token looks like: OpenBao does
    /// not tell them apart, so callers re-login once before giving up.
    #[error(
        "permission denied on {path}: {message}; check that this identity's policy grants the path, or log in again if the token may have expired"
    )]
    PermissionDenied { path: String, message: String },

    /// 503 with "Vault is sealed" (or a sealed health answer).
    #[error("OpenBao is sealed (calling {path}); unseal it or wait for auto-unseal")]
    Sealed { path: String },

    /// The node is a standby and the call needs the active node.
    #[error("{path} needs the active node but this node is a standby: {message}")]
    Standby { path: String, message: String },

    /// 404.
    #[error("{path} not found: {message}")]
    NotFound { path: String, message: String },

    /// 400: OpenBao rejected the request (bad parameters, invalid JWT, ...).
    #[error("OpenBao rejected {path}: {message}")]
    BadRequest { path: String, message: String },

    /// 405 and friends: the server does not support this operation.
    #[error("{path} is not supported by this OpenBao server: {message}")]
    Unsupported { path: String, message: String },

    /// Any other non-success status (5xx included).
    #[error("OpenBao answered {status} for {path}: {message}")]
    Server {
        path: String,
        status: StatusCode,
        message: String,
    },

    /// The request never got an HTTP answer (connect, TLS, timeout, reset).
    #[error(
        "could not reach OpenBao for {path}: {source}; check the address, the CA bundle and that the server is running"
    )]
    Transport {
        path: String,
        #[source]
        source: reqwest::Error,
    },

    /// The answer was not what the API documents.
    #[error("unexpected answer from {path}: {message}")]
    Decode { path: String, message: String },

    /// The client was configured wrongly.
    #[error("invalid OpenBao client configuration: {0}")]
    Config(String),

    /// A credential could not be obtained from its issuer (for example a
    /// Kubernetes TokenRequest that was refused); `message` says what to fix.
    #[error("cannot obtain {what}: {message}")]
    CredentialUnavailable { what: String, message: String },

    /// A credential file could not be read.
    #[error("cannot read {what} from {path}: {source}")]
    CredentialFile {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A stable PascalCase name, for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::PermissionDenied { .. } => "PermissionDenied",
            Error::Sealed { .. } => "Sealed",
            Error::Standby { .. } => "Standby",
            Error::NotFound { .. } => "NotFound",
            Error::BadRequest { .. } => "BadRequest",
            Error::Unsupported { .. } => "Unsupported",
            Error::Server { .. } => "ServerError",
            Error::Transport { .. } => "Unreachable",
            Error::Decode { .. } => "UnexpectedResponse",
            Error::Config(_) => "InvalidConfiguration",
            Error::CredentialFile { .. } => "CredentialUnreadable",
            Error::CredentialUnavailable { .. } => "CredentialUnavailable",
        }
    }

    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::PermissionDenied { .. })
    }

    /// Worth retrying an idempotent call: transport failures, 5xx, and the
    /// brief "no active node" window during a leader election.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Standby { .. } => true,
            Error::Server { status, .. } => {
                status.is_server_error() || *status == StatusCode::TEMPORARY_REDIRECT
            }
            _ => false,
        }
    }

    /// Builds the error for a non-success answer from the body's `errors`.
    pub(crate) fn from_response(path: &str, status: StatusCode, body: &[u8]) -> Self {
        let message = error_text(body);
        let path = path.to_owned();
        match status {
            StatusCode::FORBIDDEN => Error::PermissionDenied { path, message },
            StatusCode::NOT_FOUND => Error::NotFound { path, message },
            StatusCode::BAD_REQUEST => Error::BadRequest { path, message },
            StatusCode::METHOD_NOT_ALLOWED => Error::Unsupported { path, message },
            StatusCode::SERVICE_UNAVAILABLE if message.contains("sealed") => Error::Sealed { path },
            StatusCode::INTERNAL_SERVER_ERROR if message.contains("local node not active") => {
                Error::Standby { path, message }
            }
            _ => Error::Server {
                path,
                status,
                message,
            },
        }
    }
}

/// OpenBao's `{"errors": [...]}` joined on one line, with its
/// "1 error occurred:\n\t* ..." wrapping removed.
pub(crate) fn error_text(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => match serde_json::from_value::<Vec<String>>(
            json.get("errors").cloned().unwrap_or_default(),
        ) {
            Ok(errors) if !errors.is_empty() => errors.join("; "),
            // A JSON answer without `errors` may carry data (a batch decrypt
            // answers 400 with the other items' plaintexts): never echo it.
            _ => return "no error message".to_owned(),
        },
        // Not JSON: an HTML or text page from something in between.
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
    };
    let cleaned: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches("* ").trim())
        .filter(|l| {
            !l.is_empty() && !l.ends_with("error occurred:") && !l.ends_with("errors occurred:")
        })
        .collect();
    if cleaned.is_empty() {
        text
    } else {
        cleaned.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_multierror_text_is_flattened() {
        let body = br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#;
        assert_eq!(error_text(body), "permission denied");
    }

    #[test]
    fn statuses_map_to_variants() {
        let denied = Error::from_response(
            "sys/step-down",
            StatusCode::FORBIDDEN,
            br#"{"errors":["permission denied"]}"#,
        );
        assert!(denied.is_permission_denied());
        assert_eq!(denied.reason(), "PermissionDenied");
        let sealed = Error::from_response(
            "sys/leader",
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"errors":["Vault is sealed"]}"#,
        );
        assert!(matches!(sealed, Error::Sealed { .. }));
        let election = Error::from_response(
            "sys/storage/raft/autopilot/state",
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"errors":["local node not active but active cluster node not found"]}"#,
        );
        assert!(matches!(election, Error::Standby { .. }) && election.is_transient());
        let jwt = Error::from_response(
            "auth/jwt/login",
            StatusCode::BAD_REQUEST,
            br#"{"errors":["error validating token: invalid audience (aud) claim: audience claim does not match any expected audience"]}"#,
        );
        assert!(jwt.to_string().contains("invalid audience"));
        assert!(!jwt.is_transient());
    }

    #[test]
    fn json_bodies_without_errors_are_never_echoed() {
        let body = br#"{"data":{"batch_results":[{"plaintext":"c2VjcmV0"},{"error":"bad"}]}}"#;
        let text = error_text(body);
        assert_eq!(text, "no error message");
        assert!(!text.contains("c2VjcmV0"));
    }

    #[test]
    fn non_json_bodies_are_kept_short() {
        let body = vec![b'x'; 4096];
        assert_eq!(error_text(&body).len(), 512);
    }
}
