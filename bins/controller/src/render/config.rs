//! The OpenBao server configuration (`config.hcl`) every pod loads, and the
//! ConfigMap that carries it. Rendered with the HCL library: user strings
//! become HCL string values (escaped, `${` included), never HCL syntax.
//!
//! What is deliberately absent:
//! - `disable_mlock`: removed from OpenBao; 2.7 only warns about it.
//! - `node_id`, `api_addr`, `cluster_addr`: per pod, so they come from the
//!   environment (`BAO_RAFT_NODE_ID`, `BAO_API_ADDR`, `BAO_CLUSTER_ADDR`)
//!   and one ConfigMap serves every pod.
//! - `initialize`: only the bootstrap pod may load it, so it lives in its
//!   own file ([`super::self_init`]).

use hcl::{Block, Body, BodyBuilder, Expression};
use k8s_openapi::api::core::v1::ConfigMap;
use lifecycle_types::cluster::{AuditDevice, AuditFormat, AuditType, TlsMode, UnsealType};
use lifecycle_types::{OpenBaoCluster, names};

use super::{API_PORT, Inputs, RenderError, name_and_namespace, owned_metadata};

/// File names inside [`super::Paths`] folders.
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const TLS_CA: &str = "ca.crt";
/// The static seal key file (the unseal Secret's key, mounted as a file).
pub const SEAL_KEY_FILE: &str = names::UNSEAL_KEY;
/// The Transit token file (the token Secret's `token` key).
pub const TRANSIT_TOKEN_FILE: &str = "token";
/// The GCP credentials file (the credentials Secret's `credentials.json` key).
pub const GCP_CREDENTIALS_FILE: &str = "credentials.json";

/// The rendered `config.hcl`.
pub fn render(cluster: &OpenBaoCluster, inputs: &Inputs) -> Result<String, RenderError> {
    hcl::to_string(&body(cluster, inputs)?).map_err(|source| RenderError::Hcl {
        what: "config.hcl",
        source,
    })
}

/// The configuration as an HCL body (tests inspect it structurally).
pub fn body(cluster: &OpenBaoCluster, inputs: &Inputs) -> Result<Body, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let spec = &cluster.spec;
    let paths = &inputs.paths;
    let configuration = &spec.configuration;

    let mut body = Body::builder()
        .add_attribute(("ui", configuration.ui))
        .add_attribute(("cluster_name", name))
        .add_attribute(("log_level", configuration.log_level.as_str()));

    // Listener: TLS from files the Secret volume provides, or OpenBao's own ACME client.
    let mut listener = Block::builder("listener")
        .add_label("tcp")
        .add_attribute(("address", inputs.listen.api.as_str()))
        .add_attribute(("cluster_address", inputs.listen.cluster.as_str()))
        .add_attribute(("tls_min_version", "tls12"));
    match (&spec.tls.mode, &spec.tls.acme) {
        (TlsMode::Acme, Some(acme)) => {
            listener = listener
                .add_attribute(("tls_acme_ca_directory", acme.directory_url.as_str()))
                .add_attribute(("tls_acme_domains", acme.domains.clone()))
                .add_attribute(("tls_acme_email", acme.email.as_str()));
        }
        (TlsMode::Acme, None) => {
            return Err(invalid(
                "spec.tls.acme",
                "is required when spec.tls.mode is ACME",
            ));
        }
        _ => {
            listener = listener
                .add_attribute(("tls_cert_file", format!("{}/{TLS_CERT}", paths.tls_dir)))
                .add_attribute(("tls_key_file", format!("{}/{TLS_KEY}", paths.tls_dir)));
        }
    }
    body = body.add_block(listener.build());

    // Raft with Kubernetes auto-join: go-discover lists this cluster's pods
    // by label and tries each by pod IP, which no certificate names, hence
    // the fixed server name every server certificate carries.
    let auto_join = format!(
        "provider=k8s namespace={namespace} label_selector=\"{}={name}\"",
        lifecycle_types::labels::CLUSTER
    );
    let mut join = Block::builder("retry_join")
        .add_attribute(("auto_join", auto_join))
        .add_attribute(("auto_join_scheme", "https"))
        .add_attribute(("auto_join_port", i64::from(API_PORT)));
    join = match (&spec.tls.mode, &spec.tls.acme) {
        (TlsMode::Acme, Some(acme)) => join.add_attribute((
            "leader_tls_servername",
            acme.domains.first().cloned().unwrap_or_default(),
        )),
        _ => join
            .add_attribute(("leader_ca_cert_file", format!("{}/{TLS_CA}", paths.tls_dir)))
            .add_attribute(("leader_tls_servername", names::tls_server_name(name))),
    };
    let mut storage = Block::builder("storage")
        .add_label("raft")
        .add_attribute(("path", paths.data_dir.as_str()));
    if let Some(multiplier) = configuration.raft.performance_multiplier {
        storage = storage.add_attribute(("performance_multiplier", i64::from(multiplier)));
    }
    body = body.add_block(storage.add_block(join.build()).build());

    body = with_seal(body, cluster, inputs)?;

    // Labels the pod with openbao-active/-sealed/-initialized, which the
    // client Service and the controller read.
    body = body.add_block(
        Block::builder("service_registration")
            .add_label("kubernetes")
            .build(),
    );
    body = body.add_block(
        Block::builder("telemetry")
            .add_attribute(("prometheus_retention_time", "30s"))
            .add_attribute(("disable_hostname", true))
            .build(),
    );
    for device in &configuration.audit {
        body = body.add_block(audit(device, inputs));
    }
    Ok(body.build())
}

/// The seal stanza, and the KMS plugin OpenBao needs for a cloud seal.
/// The throwaway node of a restore drill ([`super::drill`]) shares it.
pub(super) fn with_seal(
    body: BodyBuilder,
    cluster: &OpenBaoCluster,
    inputs: &Inputs,
) -> Result<BodyBuilder, RenderError> {
    let spec = &cluster.spec;
    let paths = &inputs.paths;
    let mut body = body.add_block(seal(cluster, inputs)?);
    if let Some(plugin) = &spec.unseal.kms_plugin {
        // OpenBao 2.7 ships cloud KMS seals as plugins it downloads from an
        // OCI image at start and verifies against the checksum.
        body = body
            .add_attribute(("plugin_directory", paths.plugin_dir.as_str()))
            .add_attribute(("plugin_auto_download", true))
            .add_block(
                Block::builder("plugin")
                    .add_label("kms")
                    .add_label(spec.unseal.type_.seal_name())
                    .add_attribute(("image", plugin.image.as_str()))
                    .add_attribute(("version", plugin.version.as_str()))
                    .add_attribute(("binary_name", plugin.binary_name.as_str()))
                    .add_attribute(("sha256sum", plugin.sha256sum.as_str()))
                    .build(),
            );
    }

    Ok(body)
}

fn invalid(field: &str, message: &str) -> RenderError {
    RenderError::InvalidSpec {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

fn seal(cluster: &OpenBaoCluster, inputs: &Inputs) -> Result<Block, RenderError> {
    let unseal = &cluster.spec.unseal;
    let paths = &inputs.paths;
    let block = Block::builder("seal").add_label(unseal.type_.seal_name());
    let block = match unseal.type_ {
        UnsealType::Static => {
            if inputs.static_key_id.is_empty() {
                return Err(invalid(
                    "static seal key id",
                    "is empty; read it from the unseal Secret before rendering",
                ));
            }
            // A file, not an env var: the raw 32 bytes have no encoding and
            // so no trailing newline that OpenBao would reject.
            block
                .add_attribute(("current_key_id", inputs.static_key_id.as_str()))
                .add_attribute((
                    "current_key",
                    format!("file://{}/{SEAL_KEY_FILE}", paths.seal_dir),
                ))
        }
        UnsealType::Transit => {
            let transit = unseal.transit.as_ref().ok_or_else(|| {
                invalid(
                    "spec.unseal.transit",
                    "is required when spec.unseal.type is transit",
                )
            })?;
            let mut block = block
                .add_attribute(("address", transit.address.as_str()))
                .add_attribute((
                    "token",
                    format!("file://{}/{TRANSIT_TOKEN_FILE}", paths.seal_dir),
                ))
                .add_attribute(("key_name", transit.key_name.as_str()))
                .add_attribute(("mount_path", transit.mount_path.as_str()));
            if transit.ca_secret_ref.is_some() {
                block =
                    block.add_attribute(("tls_ca_cert", format!("{}/{TLS_CA}", paths.seal_ca_dir)));
            }
            if let Some(server_name) = &transit.tls_server_name {
                block = block.add_attribute(("tls_server_name", server_name.as_str()));
            }
            block
        }
        UnsealType::Awskms => {
            let aws = unseal.awskms.as_ref().ok_or_else(|| {
                invalid(
                    "spec.unseal.awskms",
                    "is required when spec.unseal.type is awskms",
                )
            })?;
            // Credentials come from the environment (Secret) or the web
            // identity the EKS webhook injects; never from this file.
            let mut block = block
                .add_attribute(("region", aws.region.as_str()))
                .add_attribute(("kms_key_id", aws.kms_key_id.as_str()));
            if let Some(endpoint) = &aws.endpoint {
                block = block.add_attribute(("endpoint", endpoint.as_str()));
            }
            block
        }
        UnsealType::Gcpckms => {
            let gcp = unseal.gcpckms.as_ref().ok_or_else(|| {
                invalid(
                    "spec.unseal.gcpckms",
                    "is required when spec.unseal.type is gcpckms",
                )
            })?;
            let mut block = block
                .add_attribute(("project", gcp.project.as_str()))
                .add_attribute(("region", gcp.region.as_str()))
                .add_attribute(("key_ring", gcp.key_ring.as_str()))
                .add_attribute(("crypto_key", gcp.crypto_key.as_str()));
            if unseal.credentials_secret_ref.is_some() {
                block = block.add_attribute((
                    "credentials",
                    format!("{}/{GCP_CREDENTIALS_FILE}", paths.seal_credentials_dir),
                ));
            }
            block
        }
        UnsealType::Azurekeyvault => {
            let azure = unseal.azurekeyvault.as_ref().ok_or_else(|| {
                invalid(
                    "spec.unseal.azurekeyvault",
                    "is required when spec.unseal.type is azurekeyvault",
                )
            })?;
            let mut block = block
                .add_attribute(("tenant_id", azure.tenant_id.as_str()))
                .add_attribute(("vault_name", azure.vault_name.as_str()))
                .add_attribute(("key_name", azure.key_name.as_str()));
            if let Some(environment) = &azure.environment {
                block = block.add_attribute(("environment", environment.as_str()));
            }
            block
        }
    };
    Ok(block.build())
}

/// A declarative audit device. OpenBao refuses to create audit devices
/// through its API (so not through self-init either); the stanza is the way.
/// Option values are strings, as OpenBao's audit options are.
fn audit(device: &AuditDevice, inputs: &Inputs) -> Block {
    let mut options = Block::builder("options");
    let mut option = |key: &str, value: String| {
        options = std::mem::replace(&mut options, Block::builder("options"))
            .add_attribute((key.to_owned(), Expression::String(value)));
    };
    if let Some(format) = device.format {
        option(
            "format",
            match format {
                AuditFormat::Json => "json",
                AuditFormat::Jsonx => "jsonx",
            }
            .to_owned(),
        );
    }
    if let Some(raw) = device.log_raw {
        option("log_raw", raw.to_string());
    }
    if let Some(hmac) = device.hmac_accessor {
        option("hmac_accessor", hmac.to_string());
    }
    // `device.prefix` is never rendered: OpenBao refuses audit log
    // prefixing (the node would never become active), and the spec
    // validation refuses a spec that sets it.
    match device.type_ {
        AuditType::File => {
            let file = device
                .file
                .clone()
                .unwrap_or_else(|| lifecycle_types::cluster::FileAudit {
                    file_path: lifecycle_types::cluster::DEFAULT_AUDIT_FILE.to_owned(),
                    mode: None,
                });
            // The API only admits stdout, discard or a file under
            // /openbao/audit/, which maps to the audit folder input.
            let path = match file.file_path.strip_prefix("/openbao/audit/") {
                Some(rest) => format!("{}/{rest}", inputs.paths.audit_dir),
                None => file.file_path.clone(),
            };
            option("file_path", path);
            if let Some(mode) = file.mode {
                option("mode", mode);
            }
        }
        AuditType::Socket => {
            if let Some(socket) = &device.socket {
                option("address", socket.address.clone());
                option("socket_type", socket.socket_type.as_str().to_owned());
                if let Some(timeout) = &socket.write_timeout {
                    option("write_timeout", timeout.clone());
                }
            }
        }
        AuditType::Syslog => {
            if let Some(syslog) = &device.syslog {
                if let Some(facility) = &syslog.facility {
                    option("facility", facility.clone());
                }
                if let Some(tag) = &syslog.tag {
                    option("tag", tag.clone());
                }
            }
        }
    }
    let mut block = Block::builder("audit")
        .add_label(device.type_.as_str())
        .add_label(device.path.as_str());
    if let Some(description) = &device.description {
        block = block.add_attribute(("description", description.as_str()));
    }
    block.add_block(options.build()).build()
}

/// SHA-256 (hex) of a rendered file: a pod-template annotation, so a changed
/// configuration marks the pods the rollout gate must replace.
pub fn hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The ConfigMap with `config.hcl`.
pub fn config_map(cluster: &OpenBaoCluster, inputs: &Inputs) -> Result<ConfigMap, RenderError> {
    let (name, _) = name_and_namespace(cluster)?;
    Ok(ConfigMap {
        metadata: owned_metadata(cluster, names::config_map(name))?,
        data: Some([(names::CONFIG_KEY.to_owned(), render(cluster, inputs)?)].into()),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    fn attr<'a>(block: &'a hcl::Body, key: &str) -> Option<&'a Expression> {
        block
            .attributes()
            .find(|a| a.key() == key)
            .map(|a| a.expr())
    }

    fn blocks<'a>(body: &'a hcl::Body, ident: &str) -> Vec<&'a Block> {
        body.blocks().filter(|b| b.identifier() == ident).collect()
    }

    #[test]
    fn static_seal_reads_the_key_file_and_no_mlock_is_rendered() {
        let text = render(&fixtures::development(), &fixtures::inputs()).unwrap();
        insta::assert_snapshot!("config_development", text);
        assert!(!text.contains("disable_mlock"));
        assert!(
            !text.contains("initialize"),
            "self-init belongs in its own file"
        );
    }

    #[test]
    fn auto_join_selects_this_clusters_pods_and_verifies_the_join_name() {
        let body = body(&fixtures::development(), &fixtures::inputs()).unwrap();
        let storage = blocks(&body, "storage");
        let join = blocks(storage[0].body(), "retry_join");
        assert_eq!(
            attr(join[0].body(), "auto_join"),
            Some(&Expression::String(
                "provider=k8s namespace=team-a label_selector=\"openbao.org/cluster=dev\"".into()
            ))
        );
        assert_eq!(
            attr(join[0].body(), "leader_tls_servername"),
            Some(&Expression::String("openbao-cluster-dev.local".into()))
        );
        assert_eq!(blocks(&body, "service_registration").len(), 1);
    }

    #[test]
    fn every_seal_type_and_audit_device_renders() {
        let text = render(&fixtures::full(), &fixtures::inputs()).unwrap();
        insta::assert_snapshot!("config_full", text);
        let text = render(&fixtures::aws_kms(), &fixtures::inputs()).unwrap();
        insta::assert_snapshot!("config_awskms", text);
        let text = render(&fixtures::acme(), &fixtures::inputs()).unwrap();
        assert!(text.contains("tls_acme_domains"));
        assert!(
            !text.contains("tls_cert_file"),
            "ACME needs no certificate files"
        );
    }

    #[test]
    fn user_strings_cannot_inject_hcl() {
        let mut cluster = fixtures::development();
        let mut syslog = fixtures::file_audit("syslog");
        syslog.type_ = AuditType::Syslog;
        syslog.syslog = Some(lifecycle_types::cluster::SyslogAudit {
            facility: None,
            tag: Some("${env(\"X\")}\"\n}\nui = true".into()),
        });
        cluster.spec.configuration.audit = vec![syslog];
        let text = render(&cluster, &fixtures::inputs()).unwrap();
        let parsed: hcl::Body = hcl::from_str(&text).unwrap();
        let audit = blocks(&parsed, "audit");
        let options = blocks(audit[0].body(), "options");
        assert_eq!(
            attr(options[0].body(), "tag"),
            Some(&Expression::String("${env(\"X\")}\"\n}\nui = true".into())),
            "the tag must come back as the same string"
        );
        assert_eq!(parsed.attributes().filter(|a| a.key() == "ui").count(), 1);
    }

    #[test]
    fn an_audit_prefix_is_never_rendered() {
        // OpenBao refuses audit log prefixing; the validation refuses the
        // field, and the renderer never passes it on either.
        let mut cluster = fixtures::development();
        cluster.spec.configuration.audit = vec![fixtures::file_audit("file")];
        cluster.spec.configuration.audit[0].prefix = Some("bao:".into());
        let text = render(&cluster, &fixtures::inputs()).unwrap();
        let parsed: hcl::Body = hcl::from_str(&text).unwrap();
        let audit = blocks(&parsed, "audit");
        let options = blocks(audit[0].body(), "options");
        assert_eq!(attr(options[0].body(), "prefix"), None, "{text}");
        assert!(!text.contains("bao:"), "{text}");
    }

    #[test]
    fn a_static_seal_without_a_key_id_is_refused() {
        let mut inputs = fixtures::inputs();
        inputs.static_key_id.clear();
        let err = render(&fixtures::development(), &inputs).unwrap_err();
        assert!(err.to_string().contains("static seal key id"), "{err}");
    }
}
