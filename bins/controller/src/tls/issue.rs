//! Issuing the CA and server certificates (ECDSA P-256). The only impure
//! part of the module: each call generates a fresh key.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use x509_parser::time::ASN1Time;

use super::TlsError;
use super::error::issue_error;
use super::inspect::{inspect, key_matches};

/// How far `notBefore` lies before `now`, so a peer whose clock is a few
/// minutes behind accepts a certificate issued this instant.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// RFC 5280's upper bound for a common name.
const MAX_COMMON_NAME: usize = 64;

/// A CA certificate and its private key, both PEM. `Debug` never shows the
/// key.
#[derive(Clone, PartialEq, Eq)]
pub struct CaMaterial {
    /// The CA certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// A server certificate and its private key, both PEM. `Debug` never shows
/// the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerMaterial {
    /// The server certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

fn redacted(f: &mut fmt::Formatter<'_>, name: &str, cert_pem: &str, key_pem: &str) -> fmt::Result {
    let fingerprint = inspect(cert_pem)
        .map(|info| info.fingerprint_sha256)
        .unwrap_or_else(|_| "not a certificate".to_owned());
    f.debug_struct(name)
        .field("cert_sha256", &fingerprint)
        .field(
            "key_pem",
            &format_args!("<redacted, {} bytes>", key_pem.len()),
        )
        .finish()
}

impl fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(f, "CaMaterial", &self.cert_pem, &self.key_pem)
    }
}

impl fmt::Debug for ServerMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(f, "ServerMaterial", &self.cert_pem, &self.key_pem)
    }
}

/// Issues a self-signed CA for `cluster_name`: ECDSA P-256, `CA:TRUE`
/// with path length 0 (it signs server certificates only), key usages
/// `keyCertSign` and `cRLSign`, CN `<cluster> OpenBao CA`, valid from
/// [`CLOCK_SKEW`] before `now` until `now + validity`.
pub fn issue_ca(
    cluster_name: &str,
    now: Timestamp,
    validity: Duration,
) -> Result<CaMaterial, TlsError> {
    const SUFFIX: &str = " OpenBao CA";
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(issue_error("generate the CA key"))?;
    let mut params = CertificateParams::default();
    let cluster: String = cluster_name
        .chars()
        .take(MAX_COMMON_NAME - SUFFIX.len())
        .collect();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{cluster}{SUFFIX}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = asn1_time(backdated(now)?, now, validity)?.to_datetime();
    params.not_after = asn1_time(after(now, validity)?, now, validity)?.to_datetime();
    let cert = params
        .self_signed(&key)
        .map_err(issue_error("sign the CA certificate"))?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a server certificate signed by `ca` for `sans`: names that parse
/// as IP addresses become IP SANs, the others DNS SANs (`*.` wildcards
/// allowed); extended key usages `serverAuth` and `clientAuth` (OpenBao's
/// cluster port presents it as a client too); `CA:FALSE`. Valid from
/// [`CLOCK_SKEW`] before `now` until `now + validity`, but never beyond the
/// CA's own end.
pub fn issue_server(
    ca: &CaMaterial,
    sans: &[String],
    now: Timestamp,
    validity: Duration,
) -> Result<ServerMaterial, TlsError> {
    let sans = parse_sans(sans)?;
    let ca_info = inspect(&ca.cert_pem)?;
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|_| TlsError::NotAKey)?;
    if !ca_info.is_ca || !key_matches(&ca_info, &ca_key) {
        return Err(TlsError::Precondition {
            action: "issue a server certificate",
            problem: "the CA material is not a CA certificate with its own key",
        });
    }
    if now >= ca_info.not_after {
        return Err(TlsError::CaExpired {
            subject: ca_info.subject,
            not_after: ca_info.not_after,
        });
    }
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key)
        .map_err(issue_error("read the CA certificate"))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(issue_error("generate the server key"))?;

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(SanType::DnsName(first)) = sans.first()
        && first.as_str().len() <= MAX_COMMON_NAME
    {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // Old and new CA of a rotation share their name; the key identifier
    // lets peers pick the right one without trying both.
    params.use_authority_key_identifier_extension = true;
    params.not_before = asn1_time(backdated(now)?, now, validity)?.to_datetime();
    params.not_after =
        asn1_time(after(now, validity)?.min(ca_info.not_after), now, validity)?.to_datetime();
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(issue_error("sign the server certificate"))?;
    Ok(ServerMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The canonical text of a desired SAN: IP addresses in their canonical
/// form, DNS names lower case. `None` for a name no certificate can carry.
pub(crate) fn canonical_san(san: &str) -> Option<String> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let dns = san.to_ascii_lowercase();
    is_dns_name(&dns).then_some(dns)
}

/// Canonical, deduplicated SANs, in the order given.
pub(crate) fn canonical_sans(sans: &[String]) -> Result<Vec<String>, TlsError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for san in sans {
        let canonical =
            canonical_san(san).ok_or_else(|| TlsError::InvalidSan { san: san.clone() })?;
        if seen.insert(canonical.clone()) {
            out.push(canonical);
        }
    }
    if out.is_empty() {
        return Err(TlsError::NoSans);
    }
    Ok(out)
}

fn parse_sans(sans: &[String]) -> Result<Vec<SanType>, TlsError> {
    canonical_sans(sans)?
        .into_iter()
        .map(|san| match san.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => san
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| TlsError::InvalidSan { san }),
        })
        .collect()
}

/// RFC 1123 host names, with an optional `*` as the whole first label.
fn is_dns_name(name: &str) -> bool {
    let body = name.strip_prefix("*.").unwrap_or(name);
    !body.is_empty()
        && name.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn backdated(now: Timestamp) -> Result<Timestamp, TlsError> {
    now.checked_sub(CLOCK_SKEW).map_err(|_| TlsError::Validity {
        validity: CLOCK_SKEW,
        now,
    })
}

pub(crate) fn after(now: Timestamp, validity: Duration) -> Result<Timestamp, TlsError> {
    now.checked_add(validity)
        .map_err(|_| TlsError::Validity { validity, now })
}

/// rcgen takes `time`'s date type; x509-parser's `ASN1Time` converts to it,
/// which saves a direct dependency on `time`.
fn asn1_time(at: Timestamp, now: Timestamp, validity: Duration) -> Result<ASN1Time, TlsError> {
    ASN1Time::from_timestamp(at.as_second()).map_err(|_| TlsError::Validity { validity, now })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::days;

    #[test]
    fn canonical_sans_accept_ips_wildcards_and_reject_junk() {
        let sans = canonical_sans(&[
            "Vault.Example.com".to_owned(),
            "*.prod.ns.svc".to_owned(),
            "::1".to_owned(),
            "0:0::1".to_owned(),
            "10.0.0.1".to_owned(),
            "vault.example.com".to_owned(),
        ])
        .unwrap();
        assert_eq!(
            sans,
            ["vault.example.com", "*.prod.ns.svc", "::1", "10.0.0.1"]
        );
        for bad in [
            "",
            "a b",
            "*.",
            "foo.*.bar",
            "-a.b",
            "a..b",
            "é.com",
            "a.b.",
        ] {
            assert!(
                matches!(
                    canonical_sans(&[bad.to_owned()]),
                    Err(TlsError::InvalidSan { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(canonical_sans(&[]), Err(TlsError::NoSans)));
    }

    #[test]
    fn a_server_certificate_never_outlives_its_ca() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let ca = issue_ca("short", now, days(10)).unwrap();
        let server = issue_server(&ca, &["a.b".to_owned()], now, days(90)).unwrap();
        assert_eq!(
            inspect(&server.cert_pem).unwrap().not_after,
            inspect(&ca.cert_pem).unwrap().not_after
        );
        let later = now.checked_add(days(11)).unwrap();
        assert!(matches!(
            issue_server(&ca, &["a.b".to_owned()], later, days(90)),
            Err(TlsError::CaExpired { .. })
        ));
    }

    #[test]
    fn the_ca_common_name_fits_rfc_5280() {
        let long = "c".repeat(63);
        let ca = issue_ca(&long, Timestamp::UNIX_EPOCH, days(1)).unwrap();
        let subject = inspect(&ca.cert_pem).unwrap().subject;
        assert!(subject.ends_with(" OpenBao CA"), "{subject}");
        assert!(subject.len() <= "CN=".len() + MAX_COMMON_NAME, "{subject}");
    }
}
