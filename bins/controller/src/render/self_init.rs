//! The self-init configuration (`self-init.hcl`): OpenBao's `initialize`
//! blocks, in their own file and ConfigMap because only the bootstrap pod
//! may load them, and only on its first start. Any server that starts with
//! empty storage and an `initialize` block bootstraps a cluster of its own
//! (even with `retry_join`), and a failed self-init poisons its storage for
//! good; so the StatefulSet mounts this file only in its bootstrap
//! template (see [`super::statefulset`]).
//!
//! Order: the operator's JWT auth method (trusting the service-account
//! issuer through its discovery document, so a signing-key rotation keeps
//! working), one policy per identity from `policies/`, the JWT roles from
//! `policies/jwt-roles.hcl`, recovery keys for a static seal, then the
//! user's requests. OpenBao revokes the root token after the last one.
//!
//! Secrets never appear here: a request field from a Secret becomes an
//! `eval_source` reference to an environment variable or a file of the
//! bootstrap pod.

use hcl::{Block, Body, Expression};
use k8s_openapi::api::core::v1::ConfigMap;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::cluster::{SecretField, SecretSource, SelfInitRequest, UnsealType};
use lifecycle_types::identities::{
    CANARY_FIELD, CANARY_MOUNT, CANARY_PATH, DRILL_THROWAWAY_POLICY_HCL, Identity, JWT_AUTH_MOUNT,
    JwtRole, SubjectVars, jwt_role, jwt_roles,
};
use lifecycle_types::names;
use serde_json::{Value, json};

use super::{Inputs, RenderError, name_and_namespace, owned_metadata};

/// `initialize` block names; a user's `eval_source = "request"` or
/// `"response"` reference names [`USER_BLOCK`] as its `initialize_name`.
pub const OPERATOR_AUTH_BLOCK: &str = "operator-auth";
pub const OPERATOR_POLICIES_BLOCK: &str = "operator-policies";
pub const OPERATOR_ROLES_BLOCK: &str = "operator-roles";
pub const OPERATOR_CANARY_BLOCK: &str = "operator-canary";
pub const RECOVERY_KEYS_BLOCK: &str = "recovery-keys";
pub const USER_BLOCK: &str = "requests";

/// The rendered `self-init.hcl`, or `None` when self-init is disabled.
pub fn render(cluster: &OpenBaoCluster, inputs: &Inputs) -> Result<Option<String>, RenderError> {
    let Some(body) = body(cluster, inputs)? else {
        return Ok(None);
    };
    hcl::to_string(&body)
        .map(Some)
        .map_err(|source| RenderError::Hcl {
            what: "self-init.hcl",
            source,
        })
}

/// The `initialize` blocks as an HCL body; `None` when self-init is disabled.
pub fn body(cluster: &OpenBaoCluster, inputs: &Inputs) -> Result<Option<Body>, RenderError> {
    let spec = &cluster.spec;
    if !spec.self_init.enabled {
        return Ok(None);
    }
    let mut body = Body::builder();

    if spec.self_init.oidc.enabled {
        let ca = KubeCa::File(inputs.paths.kube_ca_file.clone());
        for (block, requests) in operator_requests(cluster, inputs, &ca)? {
            let mut built = Vec::new();
            for r in requests {
                built.push(request(&r.name, "update", &r.path, r.data, false)?);
            }
            body = body.add_block(initialize(block, built));
        }
    }

    if spec.unseal.type_ == UnsealType::Static {
        // Self-init creates no recovery keys, and without them a static
        // key can never be rotated (OpenBao cannot re-wrap the stored keys).
        // One throwaway share is enough to make rotation possible.
        body = body.add_block(initialize(
            RECOVERY_KEYS_BLOCK,
            vec![request(
                "rotate-recovery",
                "update",
                "sys/rotate/recovery/init",
                json!({"secret_shares": 1, "secret_threshold": 1}),
                false,
            )?],
        ));
    }

    if !spec.self_init.requests.is_empty() {
        let mut requests = Vec::new();
        for user in &spec.self_init.requests {
            requests.push(user_request(user, inputs)?);
        }
        body = body.add_block(initialize(USER_BLOCK, requests));
    }
    Ok(Some(body.build()))
}

/// How OpenBao gets the Kubernetes API server's CA for OIDC discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeCa {
    /// Read by the bootstrap pod from this file (self-init).
    File(String),
    /// Sent inline (the operator's own bootstrap over the API).
    Pem(String),
}

/// One write of the operator's bootstrap.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorRequest {
    pub name: String,
    pub path: String,
    pub data: Value,
}

/// The operator's own bootstrap, in order and grouped by `initialize`
/// block: the JWT auth method, one policy per identity, the JWT roles (the
/// controller's bound to its per-cluster audience, see
/// [`lifecycle_types::identities::controller_audience`]).
/// Self-init renders it as HCL; a Development cluster initialized through
/// `sys/init` gets the same writes over the API, so the controller uses its
/// JWT role either way and never the root token after bootstrap.
pub fn operator_requests(
    cluster: &OpenBaoCluster,
    inputs: &Inputs,
    ca: &KubeCa,
) -> Result<Vec<(&'static str, Vec<OperatorRequest>)>, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let uid = super::cluster_uid(cluster)?;
    let oidc = &cluster.spec.self_init.oidc;
    let auth = auth_requests(cluster, inputs, ca);
    let policies = Identity::ALL
        .iter()
        .map(|identity| {
            write(
                identity.policy_name(),
                format!("sys/policies/acl/{}", identity.policy_name()),
                json!({"policy": identity.policy_hcl()}),
            )
        })
        .collect();

    let vars = SubjectVars {
        operator_namespace: &inputs.operator_namespace,
        namespace,
        cluster: name,
    };
    let roles = jwt_roles()
        .map_err(|source| RenderError::Identities {
            what: "JWT role",
            source,
        })?
        .iter()
        .map(|role| role_request(role, &vars, uid, &oidc.audience))
        .collect();
    // What a restore drill reads back from a restored copy: the cluster's
    // uid (not a secret) in a KV mount of the operator's own.
    let canary = vec![
        write(
            "enable-canary",
            format!("sys/mounts/{CANARY_MOUNT}"),
            json!({"type": "kv", "options": {"version": "1"}, "description": "openbao-operator restore-drill canary"}),
        ),
        write("canary", CANARY_PATH.to_owned(), json!({CANARY_FIELD: uid})),
    ];
    Ok(vec![
        (OPERATOR_AUTH_BLOCK, auth),
        (OPERATOR_POLICIES_BLOCK, policies),
        (OPERATOR_ROLES_BLOCK, roles),
        (OPERATOR_CANARY_BLOCK, canary),
    ])
}

/// The JWT auth method trusting the service-account issuer.
fn auth_requests(cluster: &OpenBaoCluster, inputs: &Inputs, ca: &KubeCa) -> Vec<OperatorRequest> {
    let oidc = &cluster.spec.self_init.oidc;
    // Discovery, not pinned keys: OpenBao fetches the issuer's JWKS and
    // refreshes it, so rotating the service-account signing key does not
    // break logins. The Kubernetes API server's issuer is verified with
    // its own CA.
    let issuer = oidc
        .issuer
        .clone()
        .unwrap_or_else(|| inputs.service_account_issuer.clone());
    let ca_value = match ca {
        KubeCa::File(path) => json!({
            "eval_type": "string",
            "eval_source": "file",
            "path": path,
        }),
        KubeCa::Pem(pem) => json!(pem),
    };
    let config = match (&oidc.issuer, &inputs.jwks_url) {
        // The API server's keys at an address the pods reach, checked
        // against the issuer the tokens carry.
        (None, Some(jwks_url)) => json!({
            "jwks_url": jwks_url,
            "jwks_ca_pem": ca_value,
            "bound_issuer": issuer,
        }),
        (None, None) => json!({
            "oidc_discovery_url": issuer,
            "oidc_discovery_ca_pem": ca_value,
            "bound_issuer": issuer,
        }),
        (Some(_), _) => json!({
            "oidc_discovery_url": issuer,
            "bound_issuer": issuer,
        }),
    };
    vec![
        write(
            "enable-jwt",
            format!("sys/auth/{JWT_AUTH_MOUNT}"),
            json!({"type": "jwt", "description": "openbao-operator identities (projected ServiceAccount tokens)"}),
        ),
        write(
            "jwt-config",
            format!("auth/{JWT_AUTH_MOUNT}/config"),
            config,
        ),
    ]
}

/// The write that creates one JWT role for one cluster.
fn role_request(
    role: &JwtRole,
    vars: &SubjectVars<'_>,
    uid: &str,
    audience: &str,
) -> OperatorRequest {
    let mut data = role.request_body(vars);
    // The controller's role accepts only the tokens the controller mints
    // for this cluster (namespace, name and uid), so a token seen by
    // another cluster cannot be replayed here. Every other identity's role
    // accepts the Jobs' projected tokens, minted with
    // spec.selfInit.oidc.audience.
    data["bound_audiences"] = json!(role.audiences(vars, uid, audience));
    write(
        &role.name,
        format!("auth/{JWT_AUTH_MOUNT}/role/{}", role.name),
        data,
    )
}

/// The `initialize` blocks of a restore drill's throwaway node: the
/// cluster's JWT auth method, the drill identity's role, and under its
/// policy name the throwaway policy (restore into this node, nothing else).
/// The restore then replaces all of it with the backup's own.
pub fn drill_initialize(
    cluster: &OpenBaoCluster,
    inputs: &Inputs,
) -> Result<Vec<Block>, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let uid = super::cluster_uid(cluster)?;
    let vars = SubjectVars {
        operator_namespace: &inputs.operator_namespace,
        namespace,
        cluster: name,
    };
    let identities = |source| RenderError::Identities {
        what: "JWT role",
        source,
    };
    let role = jwt_role(Identity::Drill)
        .map_err(identities)?
        .ok_or_else(|| RenderError::InvalidSpec {
            field: "policies/jwt-roles.hcl".into(),
            message: "has no role for the drill identity; restore it from the repository".into(),
        })?;
    let ca = KubeCa::File(inputs.paths.kube_ca_file.clone());
    let mut requests = auth_requests(cluster, inputs, &ca);
    requests.push(write(
        "drill-policy",
        format!("sys/policies/acl/{}", Identity::Drill.policy_name()),
        json!({"policy": DRILL_THROWAWAY_POLICY_HCL}),
    ));
    requests.push(role_request(
        &role,
        &vars,
        uid,
        &cluster.spec.self_init.oidc.audience,
    ));
    let mut built = Vec::new();
    for r in requests {
        built.push(request(&r.name, "update", &r.path, r.data, false)?);
    }
    Ok(vec![initialize(OPERATOR_AUTH_BLOCK, built)])
}

fn write(name: &str, path: String, data: Value) -> OperatorRequest {
    OperatorRequest {
        name: name.to_owned(),
        path,
        data,
    }
}

/// Environment variable of the bootstrap pod that carries a Secret-backed
/// request field (`source: Env`).
pub fn secret_env_var(request: &str, field: &str) -> String {
    format!("BAO_SELF_INIT_{request}_{field}")
        .to_ascii_uppercase()
        .replace('-', "_")
}

/// File of the bootstrap pod that carries a Secret-backed request field
/// (`source: File`): each referenced Secret is mounted in its own folder.
pub fn secret_file(inputs: &Inputs, field: &SecretField) -> String {
    format!(
        "{}/{}/{}",
        inputs.paths.self_init_secrets_dir, field.secret_key_ref.name, field.secret_key_ref.key
    )
}

fn user_request(user: &SelfInitRequest, inputs: &Inputs) -> Result<Block, RenderError> {
    let mut data = Value::Object(user.data.clone().unwrap_or_default());
    for field in &user.data_from {
        data[&field.field] = match field.source {
            SecretSource::Env => json!({
                "eval_type": "string",
                "eval_source": "env",
                "env_var": secret_env_var(&user.name, &field.field),
                "require_present": true,
            }),
            SecretSource::File => json!({
                "eval_type": "string",
                "eval_source": "file",
                "path": secret_file(inputs, field),
            }),
        };
    }
    request(
        &user.name,
        user.operation.as_str(),
        &user.path,
        data,
        user.allow_failure,
    )
}

fn initialize(name: &str, requests: Vec<Block>) -> Block {
    let mut block = Block::builder("initialize").add_label(name);
    for request in requests {
        block = block.add_block(request);
    }
    block.build()
}

fn request(
    name: &str,
    operation: &str,
    path: &str,
    data: Value,
    allow_failure: bool,
) -> Result<Block, RenderError> {
    let data: Expression = hcl::to_expression(&data).map_err(|source| RenderError::Hcl {
        what: "a self-init request body",
        source,
    })?;
    let mut block = Block::builder("request")
        .add_label(name)
        .add_attribute(("operation", operation))
        .add_attribute(("path", path))
        .add_attribute(("data", data));
    if allow_failure {
        block = block.add_attribute(("allow_failure", true));
    }
    Ok(block.build())
}

/// The ConfigMap with `self-init.hcl`, or `None` when self-init is disabled
/// or the cluster is initialized (the controller then deletes it).
pub fn config_map(
    cluster: &OpenBaoCluster,
    inputs: &Inputs,
) -> Result<Option<ConfigMap>, RenderError> {
    if inputs.initialized {
        return Ok(None);
    }
    let Some(text) = render(cluster, inputs)? else {
        return Ok(None);
    };
    let (name, _) = name_and_namespace(cluster)?;
    Ok(Some(ConfigMap {
        metadata: owned_metadata(cluster, names::self_init_config_map(name))?,
        data: Some([(names::SELF_INIT_KEY.to_owned(), text)].into()),
        ..ConfigMap::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    fn initialize_names(body: &Body) -> Vec<String> {
        body.blocks()
            .map(|b| b.labels()[0].as_str().to_owned())
            .collect()
    }

    #[test]
    fn disabled_self_init_renders_nothing() {
        let cluster = fixtures::development();
        assert!(render(&cluster, &fixtures::inputs()).unwrap().is_none());
        assert!(config_map(&cluster, &fixtures::inputs()).unwrap().is_none());
    }

    #[test]
    fn operator_identities_then_recovery_keys_then_user_requests() {
        // The recovery-key request exists for the static seal only.
        let mut cluster = fixtures::hardened();
        cluster.spec.unseal = Default::default();
        let body = body(&cluster, &fixtures::inputs()).unwrap().unwrap();
        assert_eq!(
            initialize_names(&body),
            [
                OPERATOR_AUTH_BLOCK,
                OPERATOR_POLICIES_BLOCK,
                OPERATOR_ROLES_BLOCK,
                OPERATOR_CANARY_BLOCK,
                RECOVERY_KEYS_BLOCK,
                USER_BLOCK
            ]
        );
        let text = render(&cluster, &fixtures::inputs()).unwrap().unwrap();
        insta::assert_snapshot!("self_init_hardened", text);
        assert!(text.contains("oidc_discovery_url"));
        assert!(
            !text.contains("jwt_validation_pubkeys"),
            "keys must not be frozen into config"
        );
    }

    #[test]
    fn secrets_become_references_never_values() {
        let cluster = fixtures::hardened();
        let text = render(&cluster, &fixtures::inputs()).unwrap().unwrap();
        assert!(text.contains("BAO_SELF_INIT_ADMIN_USER_PASSWORD"), "{text}");
        assert!(text.contains("\"env\""), "{text}");
        assert_eq!(
            secret_env_var("admin-user", "password"),
            "BAO_SELF_INIT_ADMIN_USER_PASSWORD"
        );
    }

    #[test]
    fn transit_sealed_clusters_get_no_recovery_key_request() {
        let cluster = fixtures::full();
        let body = body(&cluster, &fixtures::inputs()).unwrap().unwrap();
        assert!(!initialize_names(&body).contains(&RECOVERY_KEYS_BLOCK.to_owned()));
    }

    /// The bound_audiences of each role written by `operator_requests`.
    fn role_audiences(cluster: &OpenBaoCluster) -> Vec<(String, Value)> {
        let ca = KubeCa::Pem("pem".into());
        operator_requests(cluster, &fixtures::inputs(), &ca)
            .unwrap()
            .into_iter()
            .find(|(block, _)| *block == OPERATOR_ROLES_BLOCK)
            .unwrap()
            .1
            .into_iter()
            .map(|r| (r.name, r.data["bound_audiences"].clone()))
            .collect()
    }

    #[test]
    fn job_roles_accept_the_clusters_audience_and_the_controller_only_its_own() {
        let mut cluster = fixtures::hardened();
        cluster.spec.self_init.oidc.audience = "bao-prod".into();
        let own = format!(
            "openbao-operator.openbao.org/{}/{}/{}",
            cluster.metadata.namespace.as_deref().unwrap(),
            cluster.metadata.name.as_deref().unwrap(),
            cluster.metadata.uid.as_deref().unwrap()
        );
        let roles = role_audiences(&cluster);
        assert_eq!(roles.len(), 6);
        for (name, audiences) in &roles {
            if name == "openbao-operator" {
                assert_eq!(*audiences, json!([own]), "{name}");
            } else {
                assert_eq!(*audiences, json!(["bao-prod"]), "{name}");
            }
        }
        let text = render(&cluster, &fixtures::inputs()).unwrap().unwrap();
        assert!(text.contains("\"bao-prod\""));
        assert!(text.contains(&own), "{text}");
        // No role accepts the shared default audience (the controller
        // policy's comment still names it).
        assert!(!text.contains("\"openbao-internal\""), "{text}");
    }

    #[test]
    fn the_controller_audience_differs_for_every_cluster_and_uid() {
        let a = fixtures::hardened();
        let mut renamed = a.clone();
        renamed.metadata.name = Some("other".into());
        let mut recreated = a.clone();
        recreated.metadata.uid = Some("6f1c2a4e-0000-4000-8000-000000000002".into());
        let controller = |c: &OpenBaoCluster| {
            role_audiences(c)
                .into_iter()
                .find(|(n, _)| n == "openbao-operator")
                .unwrap()
                .1
        };
        assert_ne!(controller(&a), controller(&renamed));
        assert_ne!(controller(&a), controller(&recreated));
        // A cluster without a uid cannot be given a role: no audience to bind.
        let mut no_uid = a.clone();
        no_uid.metadata.uid = None;
        assert!(
            operator_requests(&no_uid, &fixtures::inputs(), &KubeCa::Pem("pem".into())).is_err()
        );
    }

    #[test]
    fn an_initialized_cluster_has_no_self_init_config_map() {
        let mut inputs = fixtures::inputs();
        assert!(
            config_map(&fixtures::hardened(), &inputs)
                .unwrap()
                .is_some()
        );
        inputs.initialized = true;
        assert!(
            config_map(&fixtures::hardened(), &inputs)
                .unwrap()
                .is_none()
        );
    }
}
