//! Errors of the TLS module. Each says what to do about it, and none ever
//! carries key material: a key that does not parse is reported by the
//! field it came from, never by its content.

/// Why a certificate could not be issued, read or planned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM text holds no parsable certificate (no Secret context yet;
    /// [`TlsState::read`](super::TlsState::read) adds it).
    #[error("is not a PEM certificate: {0}")]
    NotACertificate(String),

    /// A PEM text holds no private key this operator can use.
    #[error("is not a PEM private key (PKCS#8 ECDSA P-256 or Ed25519)")]
    NotAKey,

    /// A field of one of the TLS Secrets is unusable.
    #[error("the Secret {secret} field {field} {problem}; {remedy}")]
    Secret {
        /// Secret name.
        secret: String,
        /// Data key, for example `tls.crt`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
        /// What the user can do.
        remedy: &'static str,
    },

    /// `spec.tls.rotationPeriod` cannot be used.
    #[error("spec.tls.rotationPeriod {value:?} {problem}")]
    RotationPeriod {
        /// The field's value.
        value: String,
        /// What is wrong and what to write instead.
        problem: String,
    },

    /// A desired subject alternative name is neither an IP address nor a
    /// DNS name.
    #[error(
        "{san:?} is neither an IP address nor a DNS name (letters, digits, '-' and '.', \
         optionally starting with '*.'); fix it in spec.tls.extraSANs, spec.ingress.host \
         or spec.gateway.hostname"
    )]
    InvalidSan {
        /// The offending name.
        san: String,
    },

    /// No subject alternative names were given.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoSans,

    /// The CA cannot sign anything valid any more.
    #[error(
        "the CA {subject:?} expired at {not_after}; it cannot sign a server certificate \
         (the operator issues a new CA when it finds the old one expired)"
    )]
    CaExpired {
        /// CA subject.
        subject: String,
        /// When it expired.
        not_after: jiff::Timestamp,
    },

    /// A validity period does not fit a certificate.
    #[error(
        "a validity of {validity:?} from {now} is out of range; use a shorter \
         spec.tls.rotationPeriod"
    )]
    Validity {
        /// The requested validity.
        validity: std::time::Duration,
        /// Its start.
        now: jiff::Timestamp,
    },

    /// rcgen refused to build or sign a certificate.
    #[error("could not {what}: {detail}")]
    Issue {
        /// What was being done.
        what: &'static str,
        /// rcgen's reason (never key material).
        detail: String,
    },

    /// [`perform`](super::perform) was given an action its input cannot
    /// carry out: the action was not planned from these Secrets.
    #[error(
        "cannot {action}: {problem}; plan again from the Secrets as they are now \
         (this is a bug in the operator if it repeats)"
    )]
    Precondition {
        /// The action.
        action: &'static str,
        /// The missing piece.
        problem: &'static str,
    },
}

impl TlsError {
    /// Names the Secret and field this error was found in.
    pub(crate) fn in_secret(self, secret: &str, field: &'static str, remedy: &'static str) -> Self {
        TlsError::Secret {
            secret: secret.to_owned(),
            field,
            problem: self.to_string(),
            remedy,
        }
    }
}

pub(crate) fn issue_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |error| TlsError::Issue {
        what,
        detail: error.to_string(),
    }
}
