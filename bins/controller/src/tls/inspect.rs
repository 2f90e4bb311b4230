//! Reading certificates back: validity, names, CA flag, who signed them.

use std::net::IpAddr;

use jiff::Timestamp;
use sha2::Digest;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

use super::TlsError;

/// What the operator needs to know about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN, for example `CN=prod OpenBao CA`.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// DNS names (lower case, wildcards as written) and IP addresses
    /// (canonical text), in certificate order.
    pub sans: Vec<String>,
    /// Basic constraints `CA:TRUE`.
    pub is_ca: bool,
    /// Extended key usage `serverAuth`.
    pub server_auth: bool,
    /// Extended key usage `clientAuth`.
    pub client_auth: bool,
    /// SHA-256 of the DER, lower-case hex: the identity of a certificate.
    pub fingerprint_sha256: String,
    der: Vec<u8>,
}

impl CertInfo {
    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        pem_encode(&self.der)
    }

    /// Whether `issuer` signed this certificate: the issuer name matches and
    /// the signature verifies with the issuer's public key. Certificates are
    /// compared by signature, not by name: old and new CA of a rotation
    /// share their name.
    pub fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        let (Ok((_, cert)), Ok((_, ca))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        cert.issuer().as_raw() == ca.subject().as_raw()
            && cert.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// Whether `now` lies within the validity period.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// Parses the first certificate of a PEM text (a leaf followed by its
/// chain yields the leaf). Blocks of other types before it are skipped.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, TlsError> {
    for block in Pem::iter_from_buffer(cert_pem.as_bytes()) {
        let block = block.map_err(|error| TlsError::NotACertificate(error.to_string()))?;
        if block.label == "CERTIFICATE" {
            return parse_der(block.contents);
        }
    }
    Err(TlsError::NotACertificate(
        "no -----BEGIN CERTIFICATE----- block".to_owned(),
    ))
}

/// Parses every certificate of a PEM bundle (for example `ca.crt`), in
/// order. An empty text is an empty bundle; a block that is not a
/// certificate is an error, so a key pasted into a bundle is not ignored.
pub fn inspect_bundle(pem: &str) -> Result<Vec<CertInfo>, TlsError> {
    Pem::iter_from_buffer(pem.as_bytes())
        .map(|block| {
            let block = block.map_err(|error| TlsError::NotACertificate(error.to_string()))?;
            if block.label != "CERTIFICATE" {
                // The label only: the block may be a private key.
                return Err(TlsError::NotACertificate(format!(
                    "holds a {:?} block where only certificates belong",
                    block.label
                )));
            }
            parse_der(block.contents)
        })
        .collect()
}

fn parse_der(der: Vec<u8>) -> Result<CertInfo, TlsError> {
    let bad = |error: &dyn std::fmt::Display| TlsError::NotACertificate(error.to_string());
    let (rest, cert) = X509Certificate::from_der(&der).map_err(|e| bad(&e))?;
    if !rest.is_empty() {
        return Err(TlsError::NotACertificate(
            "trailing bytes after the certificate".to_owned(),
        ));
    }
    let timestamp = |seconds: i64| Timestamp::from_second(seconds).map_err(|e| bad(&e));
    let validity = cert.validity();
    let sans = match cert.subject_alternative_name().map_err(|e| bad(&e))? {
        None => Vec::new(),
        Some(extension) => extension
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(|ip| ip.to_string()),
                _ => None,
            })
            .collect(),
    };
    let (server_auth, client_auth) = match cert.extended_key_usage().map_err(|e| bad(&e))? {
        Some(eku) => (eku.value.server_auth, eku.value.client_auth),
        None => (false, false),
    };
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| bad(&e))?
        .is_some_and(|constraints| constraints.value.ca);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: timestamp(validity.not_before.timestamp())?,
        not_after: timestamp(validity.not_after.timestamp())?,
        sans,
        is_ca,
        server_auth,
        client_auth,
        fingerprint_sha256: hex::encode(sha2::Sha256::digest(&der)),
        der,
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Whether the raw public key of `cert` is the one of `key`.
pub(crate) fn key_matches(cert: &CertInfo, key: &rcgen::KeyPair) -> bool {
    use rcgen::PublicKeyData;
    X509Certificate::from_der(&cert.der)
        .is_ok_and(|(_, parsed)| parsed.public_key().subject_public_key.data == key.der_bytes())
}

/// PEM text of one DER certificate, 64 columns like every other tool.
pub(crate) fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        for garbage in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        ] {
            let error = inspect(garbage).unwrap_err();
            assert!(
                matches!(error, TlsError::NotACertificate(_)),
                "{garbage:?}: {error}"
            );
        }
    }

    #[test]
    fn an_empty_bundle_is_empty_and_a_key_in_a_bundle_is_refused_without_echoing_it() {
        assert!(inspect_bundle("").unwrap().is_empty());
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let error = inspect_bundle(&key).unwrap_err().to_string();
        assert!(error.contains("\"PRIVATE KEY\" block"), "{error}");
        assert!(!error.contains(&key[40..80]), "{error}");
    }

    #[test]
    fn pem_round_trips() {
        let ca = super::super::issue_ca("x", Timestamp::UNIX_EPOCH, crate::tls::days(30)).unwrap();
        let info = inspect(&ca.cert_pem).unwrap();
        assert_eq!(info.pem(), ca.cert_pem.replace("\r\n", "\n"));
        assert_eq!(inspect(&info.pem()).unwrap(), info);
    }
}
