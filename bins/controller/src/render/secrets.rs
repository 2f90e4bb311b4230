//! Secrets the operator writes. Content that must be random or comes from
//! a CA is an argument, so these stay pure: the caller draws the random
//! bytes and issues the certificates.
//!
//! The unseal key, the CA and a Development root token carry no owner
//! reference unless `deletionPolicy` is `DeleteAll`: deleting the
//! `OpenBaoCluster` must not take the only key to data that was kept.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lifecycle_types::cluster::{DeletionPolicy, TlsMode};
use lifecycle_types::{OpenBaoCluster, labels, names};

use super::config::{TLS_CA, TLS_CERT, TLS_KEY};
use super::{RenderError, common_labels, name_and_namespace, owned_metadata};

/// A static seal key: exactly 32 bytes (AES-256).
pub type SealKey = [u8; 32];

/// Metadata of a key Secret (seal key, CA, root token): owned, and so
/// garbage-collected with the cluster, only under `deletionPolicy: DeleteAll`.
fn key_metadata(cluster: &OpenBaoCluster, object: String) -> Result<ObjectMeta, RenderError> {
    if cluster.spec.deletion_policy == DeletionPolicy::DeleteAll {
        return owned_metadata(cluster, object);
    }
    let (name, namespace) = name_and_namespace(cluster)?;
    Ok(ObjectMeta {
        name: Some(object),
        namespace: Some(namespace.to_owned()),
        labels: Some(common_labels(name)),
        ..ObjectMeta::default()
    })
}

/// The static seal key Secret. The key is stored raw (no base64 or hex
/// text inside the Secret), so it cannot carry the trailing newline OpenBao
/// rejects; it is immutable, and its id travels with it as an annotation.
pub fn unseal_secret(
    cluster: &OpenBaoCluster,
    key: &SealKey,
    key_id: &str,
) -> Result<Secret, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    let mut metadata = key_metadata(cluster, names::unseal_secret(name))?;
    metadata.annotations = Some([(labels::SEAL_KEY_ID.to_owned(), key_id.to_owned())].into());
    Ok(Secret {
        metadata,
        immutable: Some(true),
        type_: Some("Opaque".to_owned()),
        data: Some([(names::UNSEAL_KEY.to_owned(), ByteString(key.to_vec()))].into()),
        ..Secret::default()
    })
}

/// The key id for a newly generated key of the cluster: `<cluster>-<n>`.
/// The Secret the pods' TLS files come from (certificate, key and
/// `ca.crt`): the user's for External TLS, the operator's otherwise; none
/// for ACME, whose certificates OpenBao obtains itself.
pub fn tls_files_secret(cluster: &OpenBaoCluster) -> Option<String> {
    let spec = &cluster.spec;
    match (&spec.tls.mode, &spec.tls.external_secret_name) {
        (TlsMode::Acme, _) => None,
        (TlsMode::External, Some(external)) => Some(external.clone()),
        _ => Some(names::tls_server_secret(cluster.metadata.name.as_deref()?)),
    }
}

pub fn seal_key_id(cluster_name: &str, generation: u32) -> String {
    format!("{cluster_name}-{generation}")
}

/// The server certificate the pods mount.
pub fn tls_server_secret(
    cluster: &OpenBaoCluster,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<Secret, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    Ok(Secret {
        metadata: owned_metadata(cluster, names::tls_server_secret(name))?,
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(
            [
                (
                    TLS_CERT.to_owned(),
                    ByteString(cert_pem.as_bytes().to_vec()),
                ),
                (TLS_KEY.to_owned(), ByteString(key_pem.as_bytes().to_vec())),
                (TLS_CA.to_owned(), ByteString(ca_pem.as_bytes().to_vec())),
            ]
            .into(),
        ),
        ..Secret::default()
    })
}

/// The operator-managed CA (certificate and private key).
pub fn tls_ca_secret(
    cluster: &OpenBaoCluster,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Secret, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    Ok(Secret {
        metadata: key_metadata(cluster, names::tls_ca_secret(name))?,
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(
            [
                (
                    TLS_CERT.to_owned(),
                    ByteString(cert_pem.as_bytes().to_vec()),
                ),
                (TLS_KEY.to_owned(), ByteString(key_pem.as_bytes().to_vec())),
            ]
            .into(),
        ),
        ..Secret::default()
    })
}

/// Names the server certificate must carry: every pod's DNS name (through
/// wildcards), the Services, the fixed join name, exposure host names and
/// the user's extra SANs, plus loopback for a CLI inside a pod.
pub fn server_sans(cluster: &OpenBaoCluster) -> Result<Vec<String>, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let headless = names::headless_service(name);
    let active = names::active_service(name);
    let mut sans = vec![
        names::tls_server_name(name),
        format!("*.{headless}.{namespace}.svc"),
        format!("*.{headless}.{namespace}.svc.cluster.local"),
        format!("{headless}.{namespace}.svc"),
        format!("{active}.{namespace}.svc"),
        format!("{active}.{namespace}.svc.cluster.local"),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    if let Some(ingress) = &cluster.spec.ingress
        && ingress.enabled
    {
        sans.push(ingress.host.clone());
    }
    if let Some(gateway) = &cluster.spec.gateway
        && gateway.enabled
    {
        sans.push(gateway.hostname.clone());
    }
    sans.extend(cluster.spec.tls.extra_sans.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|san| seen.insert(san.clone()));
    Ok(sans)
}

/// The root token of a Development cluster initialized through the
/// operator's `sys/init`. A `ProductionReady` gap and a warning Event
/// accompany it; Hardened clusters never have one.
pub fn root_token_secret(cluster: &OpenBaoCluster, token: &str) -> Result<Secret, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    Ok(Secret {
        metadata: key_metadata(cluster, names::root_token_secret(name))?,
        immutable: Some(true),
        type_: Some("Opaque".to_owned()),
        data: Some(
            [(
                names::ROOT_TOKEN.to_owned(),
                ByteString(token.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn the_unseal_secret_holds_exactly_the_raw_key_and_outlives_the_cluster() {
        let key: SealKey = std::array::from_fn(|i| i as u8);
        let secret = unseal_secret(&fixtures::development(), &key, &seal_key_id("dev", 1)).unwrap();
        insta::assert_yaml_snapshot!("unseal_secret", secret);
        assert_eq!(secret.data.as_ref().unwrap()["key"].0, key.to_vec());
        assert_eq!(secret.immutable, Some(true));
        assert!(secret.metadata.owner_references.is_none());
        assert_eq!(
            secret.metadata.annotations.unwrap()[labels::SEAL_KEY_ID],
            "dev-1"
        );
    }

    #[test]
    fn tls_secrets_carry_the_given_pems() {
        let cluster = fixtures::development();
        let server = tls_server_secret(&cluster, "CERT", "KEY", "CA").unwrap();
        insta::assert_yaml_snapshot!("tls_server_secret", server);
        assert!(server.metadata.owner_references.is_some());
        let ca = tls_ca_secret(&cluster, "CA", "CAKEY").unwrap();
        assert!(
            ca.metadata.owner_references.is_none(),
            "the CA must survive garbage collection"
        );
    }

    #[test]
    fn sans_cover_pods_services_join_name_and_exposure() {
        let sans = server_sans(&fixtures::full()).unwrap();
        for expected in [
            "openbao-cluster-full.local",
            "*.full.team-a.svc",
            "full-active.team-a.svc",
            "vault.example.com",
        ] {
            assert!(
                sans.iter().any(|s| s == expected),
                "{expected} missing from {sans:?}"
            );
        }
        assert_eq!(
            sans.iter().filter(|s| *s == "vault.example.com").count(),
            1,
            "deduplicated"
        );
    }
}
