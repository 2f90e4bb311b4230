//! The two TLS Secrets: reading them, and the writes that carry out a
//! [`TlsAction`].

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use lifecycle_types::names;

use super::TlsError;
use super::inspect::{CertInfo, inspect, inspect_bundle, key_matches};
use super::issue::{CaMaterial, ServerMaterial, issue_ca, issue_server};
use super::plan::{TlsAction, TlsPolicy, TlsState};
use crate::render::config::{TLS_CA, TLS_CERT, TLS_KEY};

/// The CA Secret's field for the certificate of the CA being rolled in.
pub const NEXT_CERT: &str = "next.crt";
/// The CA Secret's field for the key of the CA being rolled in.
pub const NEXT_KEY: &str = "next.key";

const CA_REMEDY: &str = "restore it from a backup, or delete the Secret to let the operator issue \
                         a new CA (every pod then restarts to trust it)";
const NEXT_REMEDY: &str = "remove next.crt and next.key from the Secret to let the operator start \
                           the CA rotation again";
const SERVER_REMEDY: &str = "delete the Secret to let the operator issue a new one";

/// What the two TLS Secrets hold, unparsed. `Debug` never shows a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredTls {
    /// The `OpenBaoCluster`'s name (the Secrets are named after it).
    pub cluster: String,
    /// The CA Secret's `tls.crt` and `tls.key`.
    pub ca: Option<CaMaterial>,
    /// The CA Secret's `next.crt` and `next.key`, during a rotation.
    pub next_ca: Option<CaMaterial>,
    /// The server Secret's `tls.crt` and `tls.key`.
    pub server: Option<ServerMaterial>,
    /// The server Secret's `ca.crt` (empty when absent).
    pub bundle_pem: String,
}

impl StoredTls {
    /// Reads the CA Secret (`<cluster>-tls-ca`) and the server Secret
    /// (`<cluster>-tls-server`); `None` for one that does not exist.
    ///
    /// A CA certificate without its key (or the reverse) is an error: the
    /// current CA signed what the pods present, so only the user can decide
    /// to replace it. A half next CA is dropped (it signed nothing yet),
    /// and a server certificate without its key is treated as missing.
    pub fn from_secrets(
        cluster: &str,
        ca_secret: Option<&Secret>,
        server_secret: Option<&Secret>,
    ) -> Result<Self, TlsError> {
        let ca_name = names::tls_ca_secret(cluster);
        let server_name = names::tls_server_secret(cluster);
        let ca_field = |field| text_field(ca_secret, &ca_name, field, CA_REMEDY);
        let ca = match (ca_field(TLS_CERT)?, ca_field(TLS_KEY)?) {
            (Some(cert_pem), Some(key_pem)) => Some(CaMaterial { cert_pem, key_pem }),
            (None, None) => None,
            (cert, _) => {
                let (field, other) = match cert {
                    Some(_) => (TLS_KEY, TLS_CERT),
                    None => (TLS_CERT, TLS_KEY),
                };
                return Err(TlsError::Secret {
                    secret: ca_name,
                    field,
                    problem: format!("is missing while {other} is set"),
                    remedy: CA_REMEDY,
                });
            }
        };
        let next_field = |field| text_field(ca_secret, &ca_name, field, NEXT_REMEDY);
        let next_ca = match (next_field(NEXT_CERT)?, next_field(NEXT_KEY)?) {
            (Some(cert_pem), Some(key_pem)) => Some(CaMaterial { cert_pem, key_pem }),
            _ => None,
        };
        let server_field = |field| text_field(server_secret, &server_name, field, SERVER_REMEDY);
        let server = match (server_field(TLS_CERT)?, server_field(TLS_KEY)?) {
            (Some(cert_pem), Some(key_pem)) => Some(ServerMaterial { cert_pem, key_pem }),
            _ => None,
        };
        Ok(Self {
            cluster: cluster.to_owned(),
            ca,
            next_ca,
            server,
            bundle_pem: server_field(TLS_CA)?.unwrap_or_default(),
        })
    }

    /// The CA Secret's name.
    pub fn ca_secret_name(&self) -> String {
        names::tls_ca_secret(&self.cluster)
    }

    /// The server Secret's name.
    pub fn server_secret_name(&self) -> String {
        names::tls_server_secret(&self.cluster)
    }

    /// What the Secrets hold once `writes` are applied.
    pub fn apply(&mut self, writes: &Writes) {
        if let Some(ca) = &writes.ca_secret {
            self.ca = Some(ca.current.clone());
            self.next_ca = ca.next.clone();
        }
        if let Some(server) = &writes.server_secret {
            self.server = Some(server.server.clone());
            self.bundle_pem = server.ca_bundle_pem.clone();
        }
    }
}

fn text_field(
    secret: Option<&Secret>,
    name: &str,
    field: &'static str,
    remedy: &'static str,
) -> Result<Option<String>, TlsError> {
    let Some(bytes) = secret
        .and_then(|secret| secret.data.as_ref())
        .and_then(|data| data.get(field))
    else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes.0.clone()).map_err(|_| TlsError::Secret {
        secret: name.to_owned(),
        field,
        problem: "is not UTF-8 text (PEM expected)".to_owned(),
        remedy,
    })?;
    Ok((!text.trim().is_empty()).then_some(text))
}

impl TlsState {
    /// Parses what [`StoredTls`] holds and checks that every key belongs to
    /// its certificate and the CAs are CAs. `bundle_rolled_out`: every
    /// OpenBao pod was started with the server Secret as it is now.
    pub fn read(stored: &StoredTls, bundle_rolled_out: bool) -> Result<TlsState, TlsError> {
        let ca_name = stored.ca_secret_name();
        let server_name = stored.server_secret_name();
        let ca = stored
            .ca
            .as_ref()
            .map(|ca| {
                read_ca(
                    &ca.cert_pem,
                    &ca.key_pem,
                    &ca_name,
                    (TLS_CERT, TLS_KEY),
                    CA_REMEDY,
                )
            })
            .transpose()?;
        let next_ca = stored
            .next_ca
            .as_ref()
            .map(|next| {
                read_ca(
                    &next.cert_pem,
                    &next.key_pem,
                    &ca_name,
                    (NEXT_CERT, NEXT_KEY),
                    NEXT_REMEDY,
                )
            })
            .transpose()?;
        let server = stored
            .server
            .as_ref()
            .map(|server| {
                read_pair(
                    &server.cert_pem,
                    &server.key_pem,
                    &server_name,
                    (TLS_CERT, TLS_KEY),
                    SERVER_REMEDY,
                )
            })
            .transpose()?;
        let bundle = inspect_bundle(&stored.bundle_pem)
            .map_err(|error| error.in_secret(&server_name, TLS_CA, SERVER_REMEDY))?;
        Ok(TlsState {
            ca,
            next_ca,
            server,
            bundle,
            bundle_rolled_out,
        })
    }
}

fn read_pair(
    cert_pem: &str,
    key_pem: &str,
    secret: &str,
    (cert_field, key_field): (&'static str, &'static str),
    remedy: &'static str,
) -> Result<CertInfo, TlsError> {
    let info = inspect(cert_pem).map_err(|error| error.in_secret(secret, cert_field, remedy))?;
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|_| TlsError::NotAKey.in_secret(secret, key_field, remedy))?;
    if !key_matches(&info, &key) {
        return Err(TlsError::Secret {
            secret: secret.to_owned(),
            field: key_field,
            problem: format!("is not the key of the certificate in {cert_field}"),
            remedy,
        });
    }
    Ok(info)
}

fn read_ca(
    cert_pem: &str,
    key_pem: &str,
    secret: &str,
    fields: (&'static str, &'static str),
    remedy: &'static str,
) -> Result<CertInfo, TlsError> {
    let info = read_pair(cert_pem, key_pem, secret, fields, remedy)?;
    if !info.is_ca {
        return Err(TlsError::Secret {
            secret: secret.to_owned(),
            field: fields.0,
            problem: format!("holds {:?}, which is not a CA certificate", info.subject),
            remedy,
        });
    }
    Ok(info)
}

/// The CA Secret's new content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSecretData {
    /// `tls.crt` and `tls.key`.
    pub current: CaMaterial,
    /// `next.crt` and `next.key`.
    pub next: Option<CaMaterial>,
}

impl CaSecretData {
    /// The Secret's `data` (holds keys: never log it).
    pub fn data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        let mut put = |field: &str, text: &str| {
            data.insert(field.to_owned(), ByteString(text.as_bytes().to_vec()));
        };
        put(TLS_CERT, &self.current.cert_pem);
        put(TLS_KEY, &self.current.key_pem);
        if let Some(next) = &self.next {
            put(NEXT_CERT, &next.cert_pem);
            put(NEXT_KEY, &next.key_pem);
        }
        data
    }
}

/// The server Secret's new content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSecretData {
    /// `tls.crt` and `tls.key`.
    pub server: ServerMaterial,
    /// `ca.crt`: the current CA first, then the next, then the others.
    pub ca_bundle_pem: String,
}

impl ServerSecretData {
    /// The Secret's `data` (holds a key: never log it).
    pub fn data(&self) -> BTreeMap<String, ByteString> {
        [
            (TLS_CERT, &self.server.cert_pem),
            (TLS_KEY, &self.server.key_pem),
            (TLS_CA, &self.ca_bundle_pem),
        ]
        .into_iter()
        .map(|(field, text)| (field.to_owned(), ByteString(text.as_bytes().to_vec())))
        .collect()
    }
}

/// The Secrets to write for an action. Write `ca_secret` first and
/// `server_secret` only after it succeeded: a controller stopped between
/// the two finds the second write planned again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Writes {
    /// The CA Secret's new content.
    pub ca_secret: Option<CaSecretData>,
    /// The server Secret's new content.
    pub server_secret: Option<ServerSecretData>,
}

impl Writes {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ca_secret.is_none() && self.server_secret.is_none()
    }
}

/// Carries out `action` (planned from `stored`): issues what it needs and
/// returns the Secrets' new content. Key generation is the only side
/// effect; nothing is written.
pub fn perform(
    action: &TlsAction,
    stored: &StoredTls,
    desired_sans: &[String],
    now: Timestamp,
    policy: &TlsPolicy,
) -> Result<Writes, TlsError> {
    let name = action.kind();
    let need_ca = || {
        stored.ca.as_ref().ok_or(TlsError::Precondition {
            action: name,
            problem: "the CA Secret holds no CA",
        })
    };
    let need_server = || {
        stored.server.clone().ok_or(TlsError::Precondition {
            action: name,
            problem: "the server Secret holds no certificate",
        })
    };
    let existing = || {
        inspect_bundle(&stored.bundle_pem)
            .map_err(|error| error.in_secret(&stored.server_secret_name(), TLS_CA, SERVER_REMEDY))
    };
    let writes = match action {
        TlsAction::Keep | TlsAction::AwaitRollout { .. } => Writes::default(),
        TlsAction::IssueCa { .. } => Writes {
            ca_secret: Some(CaSecretData {
                current: issue_ca(&stored.cluster, now, policy.ca_validity)?,
                next: None,
            }),
            server_secret: None,
        },
        TlsAction::IssueServer { .. } => {
            let ca = need_ca()?;
            Writes {
                ca_secret: None,
                server_secret: Some(ServerSecretData {
                    server: issue_server(ca, desired_sans, now, policy.server_validity)?,
                    ca_bundle_pem: bundle(ca, stored.next_ca.as_ref(), &existing()?)?,
                }),
            }
        }
        TlsAction::PublishTrustBundle { .. } => {
            let ca = need_ca()?;
            Writes {
                ca_secret: None,
                server_secret: Some(ServerSecretData {
                    server: need_server()?,
                    ca_bundle_pem: bundle(ca, stored.next_ca.as_ref(), &existing()?)?,
                }),
            }
        }
        TlsAction::StartCaRotation { .. } => {
            let ca = need_ca()?;
            let next = issue_ca(&stored.cluster, now, policy.ca_validity)?;
            let server_secret = match &stored.server {
                Some(server) => Some(ServerSecretData {
                    server: server.clone(),
                    ca_bundle_pem: bundle(ca, Some(&next), &existing()?)?,
                }),
                // The next plan issues one, with both CAs in the bundle.
                None => None,
            };
            Writes {
                ca_secret: Some(CaSecretData {
                    current: ca.clone(),
                    next: Some(next),
                }),
                server_secret,
            }
        }
        TlsAction::FinishCaRotation => {
            let next = stored.next_ca.as_ref().ok_or(TlsError::Precondition {
                action: name,
                problem: "the CA Secret holds no next CA",
            })?;
            Writes {
                ca_secret: Some(CaSecretData {
                    current: next.clone(),
                    next: None,
                }),
                server_secret: Some(ServerSecretData {
                    server: issue_server(next, desired_sans, now, policy.server_validity)?,
                    ca_bundle_pem: bundle(next, None, &existing()?)?,
                }),
            }
        }
        TlsAction::DropOldCa { .. } => {
            let ca = need_ca()?;
            Writes {
                ca_secret: None,
                server_secret: Some(ServerSecretData {
                    server: need_server()?,
                    ca_bundle_pem: bundle(ca, stored.next_ca.as_ref(), &[])?,
                }),
            }
        }
    };
    Ok(writes)
}

/// `current`, then `next`, then the other certificates of `keep`, each once.
fn bundle(
    current: &CaMaterial,
    next: Option<&CaMaterial>,
    keep: &[CertInfo],
) -> Result<String, TlsError> {
    let mut certs = vec![inspect(&current.cert_pem)?];
    if let Some(next) = next {
        certs.push(inspect(&next.cert_pem)?);
    }
    certs.extend(keep.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    Ok(certs
        .iter()
        .filter(|cert| seen.insert(cert.fingerprint_sha256.clone()))
        .map(CertInfo::pem)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{days, issue_ca, issue_server};

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn material() -> (CaMaterial, ServerMaterial) {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let ca = issue_ca("prod", now, days(100)).unwrap();
        let server = issue_server(&ca, &["a.b".to_owned()], now, days(10)).unwrap();
        (ca, server)
    }

    #[test]
    fn secrets_round_trip_through_writes() {
        let (ca, server) = material();
        let writes = Writes {
            ca_secret: Some(CaSecretData {
                current: ca.clone(),
                next: None,
            }),
            server_secret: Some(ServerSecretData {
                server: server.clone(),
                ca_bundle_pem: ca.cert_pem.clone(),
            }),
        };
        let ca_secret = Secret {
            data: Some(writes.ca_secret.as_ref().unwrap().data()),
            ..Secret::default()
        };
        let server_secret = Secret {
            data: Some(writes.server_secret.as_ref().unwrap().data()),
            ..Secret::default()
        };
        let stored =
            StoredTls::from_secrets("prod", Some(&ca_secret), Some(&server_secret)).unwrap();
        let mut applied = StoredTls {
            cluster: "prod".to_owned(),
            ..StoredTls::default()
        };
        applied.apply(&writes);
        assert_eq!(stored, applied);
        let state = TlsState::read(&stored, true).unwrap();
        assert!(
            state
                .server
                .unwrap()
                .is_signed_by(state.ca.as_ref().unwrap())
        );
        assert_eq!(state.bundle.len(), 1);
    }

    #[test]
    fn no_secrets_read_as_nothing() {
        let stored = StoredTls::from_secrets("prod", None, None).unwrap();
        assert_eq!(
            TlsState::read(&stored, true).unwrap(),
            TlsState {
                bundle_rolled_out: true,
                ..TlsState::default()
            }
        );
    }

    #[test]
    fn garbage_in_a_secret_names_the_secret_the_field_and_the_fix() {
        let (ca, server) = material();
        let ca_secret = secret(&[(TLS_CERT, "garbage"), (TLS_KEY, &ca.key_pem)]);
        let stored = StoredTls::from_secrets("prod", Some(&ca_secret), None).unwrap();
        let error = TlsState::read(&stored, true).unwrap_err().to_string();
        assert!(
            error.starts_with("the Secret prod-tls-ca field tls.crt is not a PEM certificate"),
            "{error}"
        );
        assert!(error.contains("delete the Secret"), "{error}");

        let server_secret = secret(&[
            (TLS_CERT, &server.cert_pem),
            (TLS_KEY, &server.key_pem),
            (
                TLS_CA,
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
        ]);
        let stored = StoredTls::from_secrets("prod", None, Some(&server_secret)).unwrap();
        let error = TlsState::read(&stored, true).unwrap_err().to_string();
        assert!(
            error.starts_with("the Secret prod-tls-server field ca.crt is not a PEM certificate"),
            "{error}"
        );
        assert!(
            error.ends_with("delete the Secret to let the operator issue a new one"),
            "{error}"
        );

        let not_utf8 = Secret {
            data: Some([(TLS_CERT.to_owned(), ByteString(vec![0xff, 0xfe]))].into()),
            ..Secret::default()
        };
        let error = StoredTls::from_secrets("prod", None, Some(&not_utf8))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("the Secret prod-tls-server field tls.crt is not UTF-8"),
            "{error}"
        );
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_without_showing_it() {
        let (ca, server) = material();
        let swapped = secret(&[(TLS_CERT, &ca.cert_pem), (TLS_KEY, &server.key_pem)]);
        let stored = StoredTls::from_secrets("prod", Some(&swapped), None).unwrap();
        let error = TlsState::read(&stored, true).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "the Secret prod-tls-ca field tls.key is not the key of the certificate in tls.crt"
            ),
            "{error}"
        );
        let garbage_key = secret(&[(TLS_CERT, &ca.cert_pem), (TLS_KEY, "PRIVATE KEY hunter2")]);
        let stored = StoredTls::from_secrets("prod", Some(&garbage_key), None).unwrap();
        let error = TlsState::read(&stored, true).unwrap_err().to_string();
        assert!(
            error.contains("field tls.key is not a PEM private key"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_ca_without_its_key_is_the_users_call_a_half_next_ca_is_dropped() {
        let (ca, server) = material();
        let error =
            StoredTls::from_secrets("prod", Some(&secret(&[(TLS_CERT, &ca.cert_pem)])), None)
                .unwrap_err()
                .to_string();
        assert!(
            error.starts_with(
                "the Secret prod-tls-ca field tls.key is missing while tls.crt is set"
            ),
            "{error}"
        );
        assert!(error.contains("restore it from a backup"), "{error}");
        let half_next = secret(&[
            (TLS_CERT, &ca.cert_pem),
            (TLS_KEY, &ca.key_pem),
            (NEXT_CERT, &ca.cert_pem),
        ]);
        let stored = StoredTls::from_secrets("prod", Some(&half_next), None).unwrap();
        assert!(stored.ca.is_some() && stored.next_ca.is_none());
        // A server certificate is not a CA.
        let not_ca = secret(&[(TLS_CERT, &server.cert_pem), (TLS_KEY, &server.key_pem)]);
        let stored = StoredTls::from_secrets("prod", Some(&not_ca), None).unwrap();
        let error = TlsState::read(&stored, true).unwrap_err().to_string();
        assert!(error.contains("which is not a CA certificate"), "{error}");
    }

    #[test]
    fn perform_refuses_an_action_its_secrets_cannot_carry_out() {
        let stored = StoredTls {
            cluster: "prod".to_owned(),
            ..StoredTls::default()
        };
        let error = perform(
            &TlsAction::FinishCaRotation,
            &stored,
            &["a.b".to_owned()],
            Timestamp::UNIX_EPOCH,
            &TlsPolicy::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("cannot FinishCaRotation: the CA Secret holds no next CA"),
            "{error}"
        );
    }
}
