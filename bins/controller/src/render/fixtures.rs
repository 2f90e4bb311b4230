//! Clusters the golden files are rendered from. `full` is the sample
//! `manifests/samples/openbaocluster-full.yaml`, so the snapshots show what
//! that sample deploys.

use lifecycle_types::OpenBaoCluster;
use lifecycle_types::cluster::{
    AcmeSpec, AuditDevice, AuditType, AwsKmsUnseal, KmsPlugin, TlsMode, UnsealType,
};

use super::Inputs;

fn with_identity(mut cluster: OpenBaoCluster, namespace: &str) -> OpenBaoCluster {
    cluster.metadata.namespace = Some(namespace.into());
    cluster.metadata.uid = Some("6f1c2a4e-0000-4000-8000-000000000001".into());
    cluster
}

fn sample(text: &str) -> OpenBaoCluster {
    serde_yaml_ng::from_str(text).expect("the sample parses")
}

/// The development sample, in namespace `team-a`.
pub fn development() -> OpenBaoCluster {
    with_identity(
        sample(include_str!(
            "../../../../manifests/samples/openbaocluster-development.yaml"
        )),
        "team-a",
    )
}

/// The development sample backing up to a local S3 endpoint.
pub fn backed_up() -> OpenBaoCluster {
    let mut cluster = development();
    cluster.spec.backup = Some(
        serde_json::from_value(serde_json::json!({
            "schedule": "0 * * * *",
            "destination": {"url": "s3://backups/openbao", "endpoint": "http://127.0.0.1:9000"},
            "credentials": {"secretRef": "s3-credentials"},
        }))
        .expect("a valid backup spec"),
    );
    cluster
}

/// The hardened sample (self-init with a human login).
pub fn hardened() -> OpenBaoCluster {
    with_identity(
        sample(include_str!(
            "../../../../manifests/samples/openbaocluster-hardened.yaml"
        )),
        "team-a",
    )
}

/// The sample that uses every section of the API.
pub fn full() -> OpenBaoCluster {
    with_identity(
        sample(include_str!(
            "../../../../manifests/samples/openbaocluster-full.yaml"
        )),
        "team-a",
    )
}

pub fn aws_kms() -> OpenBaoCluster {
    let mut cluster = development();
    cluster.spec.unseal.type_ = UnsealType::Awskms;
    cluster.spec.unseal.awskms = Some(AwsKmsUnseal {
        region: "eu-west-1".into(),
        kms_key_id: "alias/openbao-dev".into(),
        endpoint: None,
    });
    cluster.spec.unseal.credentials_secret_ref = Some("aws-credentials".into());
    cluster.spec.unseal.kms_plugin = Some(KmsPlugin {
        image: "ghcr.io/openbao/openbao-plugin-kms-aws".into(),
        version: "v0.1.0".into(),
        binary_name: "openbao-plugin-kms-aws".into(),
        sha256sum: "ab".repeat(32),
    });
    cluster
}

pub fn acme() -> OpenBaoCluster {
    let mut cluster = development();
    cluster.spec.tls.mode = TlsMode::Acme;
    cluster.spec.tls.acme = Some(AcmeSpec {
        directory_url: "https://acme.example/directory".into(),
        domains: vec!["bao.example.com".into()],
        email: "ops@example.com".into(),
    });
    cluster
}

pub fn file_audit(path: &str) -> AuditDevice {
    AuditDevice {
        type_: AuditType::File,
        path: path.into(),
        description: None,
        format: None,
        log_raw: None,
        hmac_accessor: None,
        prefix: None,
        file: None,
        socket: None,
        syslog: None,
    }
}

/// Inputs of a pod in a real cluster, with fixed hashes and key id.
pub fn inputs() -> Inputs {
    Inputs {
        static_key_id: "dev-1".into(),
        jwks_url: None,
        config_hash: "c0ffee".into(),
        tls_hash: "7e57".into(),
        ..Inputs::in_pod(
            "openbao-system",
            "https://kubernetes.default.svc.cluster.local",
        )
    }
}

/// The value of environment variable `name` of a rendered container (JSON).
pub fn env_value(container: &serde_json::Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(str::to_owned)
}
