//! The operator's OpenBao identities: one policy and (for Kubernetes
//! workloads) one JWT role each. The files in `policies/` are the source of
//! truth; this module embeds and parses them so the controller, the
//! generated docs and the tests read the same data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who talks to OpenBao.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    Controller,
    Backup,
    Restore,
    /// Restore drills: reads the canary of a restored copy.
    Drill,
    Upgrade,
    /// The additions a blue/green cutover needs on top of [`Identity::Upgrade`].
    UpgradeBlueGreen,
    /// OpenKCM key management through the keystore plugin.
    KeystorePlugin,
    /// OpenKCM wrap/unwrap of L2 keys through the keystore plugin.
    KeystorePluginCrypto,
}

impl Identity {
    pub const ALL: [Identity; 8] = [
        Identity::Controller,
        Identity::Backup,
        Identity::Restore,
        Identity::Drill,
        Identity::Upgrade,
        Identity::UpgradeBlueGreen,
        Identity::KeystorePlugin,
        Identity::KeystorePluginCrypto,
    ];

    /// The name used in `jwt-roles.hcl` (`identity = "..."`).
    pub fn key(self) -> &'static str {
        match self {
            Identity::Controller => "controller",
            Identity::Backup => "backup",
            Identity::Restore => "restore",
            Identity::Drill => "drill",
            Identity::Upgrade => "upgrade",
            Identity::UpgradeBlueGreen => "upgrade-blue-green",
            Identity::KeystorePlugin => "keystore-plugin",
            Identity::KeystorePluginCrypto => "keystore-plugin-crypto",
        }
    }

    /// Name of the OpenBao ACL policy.
    pub fn policy_name(self) -> &'static str {
        match self {
            Identity::Controller => "openbao-operator",
            Identity::Backup => "openbao-operator-backup",
            Identity::Restore => "openbao-operator-restore",
            Identity::Drill => "openbao-operator-drill",
            Identity::Upgrade => "openbao-operator-upgrade",
            Identity::UpgradeBlueGreen => "openbao-operator-upgrade-blue-green",
            Identity::KeystorePlugin => "openbao-keystore-plugin",
            Identity::KeystorePluginCrypto => "openbao-keystore-plugin-crypto",
        }
    }

    /// File name under `policies/`.
    pub fn policy_file(self) -> &'static str {
        match self {
            Identity::Controller => "controller.hcl",
            Identity::Backup => "backup.hcl",
            Identity::Restore => "restore.hcl",
            Identity::Drill => "drill.hcl",
            Identity::Upgrade => "upgrade.hcl",
            Identity::UpgradeBlueGreen => "upgrade-blue-green.hcl",
            Identity::KeystorePlugin => "keystore-plugin.hcl",
            Identity::KeystorePluginCrypto => "keystore-plugin-crypto.hcl",
        }
    }

    /// The policy's HCL text, as checked in.
    pub fn policy_hcl(self) -> &'static str {
        match self {
            Identity::Controller => include_str!("../../../policies/controller.hcl"),
            Identity::Backup => include_str!("../../../policies/backup.hcl"),
            Identity::Restore => include_str!("../../../policies/restore.hcl"),
            Identity::Drill => include_str!("../../../policies/drill.hcl"),
            Identity::Upgrade => include_str!("../../../policies/upgrade.hcl"),
            Identity::UpgradeBlueGreen => include_str!("../../../policies/upgrade-blue-green.hcl"),
            Identity::KeystorePlugin => include_str!("../../../policies/keystore-plugin.hcl"),
            Identity::KeystorePluginCrypto => {
                include_str!("../../../policies/keystore-plugin-crypto.hcl")
            }
        }
    }

    /// The policy's rules, in file order.
    pub fn policy(self) -> Result<Vec<PathRule>, PolicyError> {
        parse_policy(self.policy_hcl()).map_err(|message| PolicyError {
            file: self.policy_file(),
            message,
        })
    }
}

/// The policy a restore drill's throwaway node installs under
/// [`Identity::Drill`]'s policy name (never on a cluster): restoring the
/// backup under test, nothing else.
pub const DRILL_THROWAWAY_POLICY_FILE: &str = "drill-throwaway.hcl";
pub const DRILL_THROWAWAY_POLICY_HCL: &str = include_str!("../../../policies/drill-throwaway.hcl");

/// Where the operator keeps the restore-drill canary: a KV (version 1)
/// mount it creates at bootstrap, and the one key in it, which holds the
/// cluster's uid (`cluster_uid`), not a secret.
pub const CANARY_MOUNT: &str = "openbao-operator";
pub const CANARY_PATH: &str = "openbao-operator/canary";
pub const CANARY_FIELD: &str = "cluster_uid";

/// A policy file that does not parse; names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: &'static str,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "policies/{}: {}", self.file, self.message)
    }
}

impl std::error::Error for PolicyError {}

/// One `path "..." { capabilities = [...] }` block and the comment above it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathRule {
    pub path: String,
    pub capabilities: Vec<String>,
    /// Parameters a request must carry (`required_parameters`).
    pub required_parameters: Vec<String>,
    /// The only parameters (and values, globs allowed; empty = any value)
    /// a request may carry (`allowed_parameters`); empty when unrestricted.
    pub allowed_parameters: BTreeMap<String, Vec<String>>,
    /// Parameter values that are refused (`denied_parameters`).
    pub denied_parameters: BTreeMap<String, Vec<String>>,
    /// The comment line(s) directly above the block: why the path is needed.
    pub why: String,
}

impl PathRule {
    pub fn allows(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

#[derive(Deserialize)]
struct PolicyFile {
    #[serde(default)]
    path: BTreeMap<String, PathBody>,
}

#[derive(Deserialize)]
struct PathBody {
    capabilities: Vec<String>,
    #[serde(default)]
    required_parameters: Vec<String>,
    #[serde(default)]
    allowed_parameters: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    denied_parameters: BTreeMap<String, Vec<String>>,
}

/// Parses an ACL policy with the HCL library; the `why` of each rule comes
/// from the `#` comment lines right above its `path` line.
pub fn parse_policy(hcl_text: &str) -> Result<Vec<PathRule>, String> {
    let parsed: PolicyFile = hcl::from_str(hcl_text).map_err(|e| e.to_string())?;
    let mut rules = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    for line in hcl_text.lines() {
        let line = line.trim();
        if let Some(text) = line.strip_prefix('#') {
            comment.push(text.trim());
            continue;
        }
        if let Some(rest) = line.strip_prefix("path ") {
            let path = rest
                .split('"')
                .nth(1)
                .ok_or_else(|| format!("cannot read the path in {line:?}"))?;
            let body = parsed
                .path
                .get(path)
                .ok_or_else(|| format!("path {path:?} has no capabilities block"))?;
            rules.push(PathRule {
                path: path.to_owned(),
                capabilities: body.capabilities.clone(),
                required_parameters: body.required_parameters.clone(),
                allowed_parameters: body.allowed_parameters.clone(),
                denied_parameters: body.denied_parameters.clone(),
                why: comment.join(" "),
            });
        }
        if line.is_empty() || !line.starts_with('#') {
            comment.clear();
        }
    }
    if rules.len() != parsed.path.len() {
        return Err("a path block is not on a line of its own starting with `path \"`".into());
    }
    Ok(rules)
}

/// Prefix of the controller's per-cluster token audience; the controller
/// policy lets it set its own role's audience only to values under it.
pub const CONTROLLER_AUDIENCE_PREFIX: &str = "openbao-operator.openbao.org/";

/// The audience of the tokens the controller mints for one cluster, and
/// the only audience that cluster's `openbao-operator` role accepts:
/// `openbao-operator.openbao.org/<namespace>/<name>/<uid>`.
///
/// Namespace and name say where a token was meant to go when one turns up
/// in a log; the uid keeps a token minted for a deleted cluster from
/// working at a new one of the same name. Namespaces and names are DNS
/// labels or subdomains and uids are UUIDs, so none holds `/` or `,` (a
/// comma would split the value into two audiences in OpenBao).
pub fn controller_audience(namespace: &str, cluster: &str, uid: &str) -> String {
    format!("{CONTROLLER_AUDIENCE_PREFIX}{namespace}/{cluster}/{uid}")
}

/// A JWT role as written in `policies/jwt-roles.hcl`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct JwtRole {
    #[serde(skip_deserializing)]
    pub name: String,
    pub identity: String,
    pub token_policies: Vec<String>,
    pub bound_audiences: Vec<String>,
    pub user_claim: String,
    /// With `{operator_namespace}`, `{namespace}` and `{cluster}` placeholders.
    pub bound_subject: String,
    pub token_ttl: String,
    pub token_max_ttl: String,
}

/// Values for the placeholders in [`JwtRole::bound_subject`]. Kubernetes
/// validates namespace and object names as DNS labels, so they cannot
/// smuggle `:` or `{` into a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVars<'a> {
    pub operator_namespace: &'a str,
    pub namespace: &'a str,
    pub cluster: &'a str,
}

impl JwtRole {
    /// The ServiceAccount subject this role accepts for the given cluster.
    pub fn subject(&self, vars: &SubjectVars<'_>) -> String {
        self.bound_subject
            .replace("{operator_namespace}", vars.operator_namespace)
            .replace("{namespace}", vars.namespace)
            .replace("{cluster}", vars.cluster)
    }

    /// The audiences the role accepts at one cluster: the controller's own
    /// per-cluster audience ([`controller_audience`]) for the controller's
    /// role, `jobs_audience` (`spec.selfInit.oidc.audience`, the audience
    /// of the Jobs' projected tokens) for every other role.
    pub fn audiences(&self, vars: &SubjectVars<'_>, uid: &str, jobs_audience: &str) -> Vec<String> {
        if self.identity == Identity::Controller.key() {
            vec![controller_audience(vars.namespace, vars.cluster, uid)]
        } else {
            vec![jobs_audience.to_owned()]
        }
    }

    /// The body to write to `auth/<mount>/role/<name>`, with the
    /// audiences as written in the file (see [`JwtRole::audiences`] for a
    /// cluster's).
    pub fn request_body(&self, vars: &SubjectVars<'_>) -> serde_json::Value {
        serde_json::json!({
            "role_type": "jwt",
            "user_claim": self.user_claim,
            "bound_audiences": self.bound_audiences,
            "bound_subject": self.subject(vars),
            "token_policies": self.token_policies,
            "token_ttl": self.token_ttl,
            "token_max_ttl": self.token_max_ttl,
        })
    }
}

/// Mount path of the JWT auth method self-init creates and every operator
/// identity logs in through (`auth/jwt/login`); the clients' default.
pub const JWT_AUTH_MOUNT: &str = "jwt";

/// The checked-in `policies/jwt-roles.hcl`.
pub const JWT_ROLES_HCL: &str = include_str!("../../../policies/jwt-roles.hcl");

#[derive(Deserialize)]
struct RolesFile {
    role: BTreeMap<String, JwtRole>,
}

/// Every JWT role, ordered by name.
pub fn jwt_roles() -> Result<Vec<JwtRole>, PolicyError> {
    let file: RolesFile = hcl::from_str(JWT_ROLES_HCL).map_err(|e| PolicyError {
        file: "jwt-roles.hcl",
        message: e.to_string(),
    })?;
    Ok(file
        .role
        .into_iter()
        .map(|(name, role)| JwtRole { name, ..role })
        .collect())
}

/// The JWT role for an identity, if it has one (the keystore plugin does not).
pub fn jwt_role(identity: Identity) -> Result<Option<JwtRole>, PolicyError> {
    Ok(jwt_roles()?
        .into_iter()
        .find(|r| r.identity == identity.key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_parses_and_every_rule_says_why() {
        for identity in Identity::ALL {
            let rules = identity.policy().unwrap();
            assert!(!rules.is_empty(), "{identity:?} has no rules");
            for rule in rules {
                assert!(
                    !rule.why.is_empty(),
                    "{}: {} has no comment",
                    identity.policy_file(),
                    rule.path
                );
            }
        }
    }

    #[test]
    fn comments_attach_to_the_next_path_only() {
        let rules = parse_policy(
            "# header\n\n# first\npath \"a\" {\n  capabilities = [\"read\"]\n}\n\npath \"b\" {\n  capabilities = [\"update\"]\n}\n",
        )
        .unwrap();
        assert_eq!(rules[0].why, "first");
        assert_eq!(rules[1].why, "");
        assert!(rules[1].allows("update") && !rules[1].allows("read"));
    }

    #[test]
    fn roles_render_subjects_for_a_cluster() {
        let vars = SubjectVars {
            operator_namespace: "openbao-system",
            namespace: "team-a",
            cluster: "vault",
        };
        let backup = jwt_role(Identity::Backup).unwrap().unwrap();
        assert_eq!(
            backup.subject(&vars),
            "system:serviceaccount:team-a:vault-backup"
        );
        let controller = jwt_role(Identity::Controller).unwrap().unwrap();
        assert_eq!(
            controller.request_body(&vars)["bound_subject"],
            "system:serviceaccount:openbao-system:openbao-operator"
        );
        assert!(jwt_role(Identity::KeystorePlugin).unwrap().is_none());
    }

    #[test]
    fn the_controller_audience_names_the_cluster_and_matches_the_roles_file() {
        assert_eq!(
            controller_audience("team-a", "vault", "6f1c2a4e-0000-4000-8000-000000000001"),
            "openbao-operator.openbao.org/team-a/vault/6f1c2a4e-0000-4000-8000-000000000001"
        );
        let controller = jwt_role(Identity::Controller).unwrap().unwrap();
        assert_eq!(
            controller.bound_audiences,
            [controller_audience("{namespace}", "{cluster}", "{uid}")],
            "policies/jwt-roles.hcl documents the audience controller_audience builds"
        );
        assert!(controller_audience("a", "b", "c").starts_with(CONTROLLER_AUDIENCE_PREFIX));
    }

    #[test]
    fn only_the_controller_role_gets_the_per_cluster_audience() {
        let vars = SubjectVars {
            operator_namespace: "openbao-system",
            namespace: "team-a",
            cluster: "vault",
        };
        for role in jwt_roles().unwrap() {
            let audiences = role.audiences(&vars, "uid-1", "bao-prod");
            if role.identity == Identity::Controller.key() {
                assert_eq!(
                    audiences,
                    ["openbao-operator.openbao.org/team-a/vault/uid-1"]
                );
            } else {
                assert_eq!(audiences, ["bao-prod"], "{}", role.name);
            }
        }
    }

    #[test]
    fn parameter_constraints_are_read() {
        let rules = parse_policy(
            "path \"a\" {\n  capabilities = [\"update\"]\n  required_parameters = [\"x\"]\n  allowed_parameters = {\n    \"x\" = [\"p/*\"]\n  }\n  denied_parameters = {\n    \"x\" = [\"*,*\"]\n  }\n}\n",
        )
        .unwrap();
        assert_eq!(rules[0].required_parameters, ["x"]);
        assert_eq!(rules[0].allowed_parameters["x"], ["p/*"]);
        assert_eq!(rules[0].denied_parameters["x"], ["*,*"]);
    }

    #[test]
    fn role_policies_name_existing_policies() {
        let names: Vec<_> = Identity::ALL.iter().map(|i| i.policy_name()).collect();
        for role in jwt_roles().unwrap() {
            for policy in &role.token_policies {
                assert!(
                    names.contains(&policy.as_str()),
                    "{}: unknown policy {policy}",
                    role.name
                );
            }
        }
    }
}
