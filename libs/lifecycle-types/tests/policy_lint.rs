//! The policies hold exactly what the authorization seeds list, and nothing
//! that widens an identity: no wildcards, no stray `sudo`, and restore
//! powers only in the restore policy.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use lifecycle_types::identities::{Identity, PathRule};

/// The seeds' capability lists (operator-authorization-surfaces), plus the
/// snapshot read the seeds' upgrade row names for the rolling upgrade, and
/// the keystore plugin's minimum policies from the OpenKCM notes.
fn expected(identity: Identity) -> Vec<(&'static str, Vec<&'static str>)> {
    match identity {
        Identity::Controller => vec![
            ("sys/health", vec!["read"]),
            ("sys/step-down", vec!["sudo", "update"]),
            ("sys/storage/raft/configuration", vec!["read"]),
            ("sys/storage/raft/remove-peer", vec!["update"]),
            (
                "sys/storage/raft/autopilot/configuration",
                vec!["read", "update"],
            ),
            ("sys/storage/raft/autopilot/state", vec!["read"]),
            // Its own role's audience only; see
            // the_controller_may_only_move_its_own_role_to_a_per_cluster_audience.
            ("auth/jwt/role/openbao-operator", vec!["update"]),
        ],
        Identity::Backup => vec![("sys/storage/raft/snapshot", vec!["read"])],
        Identity::Restore => vec![
            ("sys/storage/raft/snapshot-force", vec!["update"]),
            ("sys/storage/raft/snapshot", vec!["update"]),
        ],
        Identity::Drill => vec![("openbao-operator/canary", vec!["read"])],
        Identity::Upgrade => vec![
            ("sys/health", vec!["read"]),
            ("sys/step-down", vec!["sudo", "update"]),
            ("sys/storage/raft/autopilot/state", vec!["read"]),
            ("sys/storage/raft/snapshot", vec!["read"]),
        ],
        Identity::UpgradeBlueGreen => vec![
            ("sys/storage/raft/join", vec!["update"]),
            ("sys/storage/raft/configuration", vec!["read", "update"]),
            ("sys/storage/raft/remove-peer", vec!["update"]),
            ("sys/storage/raft/promote", vec!["update"]),
            ("sys/storage/raft/demote", vec!["update"]),
        ],
        Identity::KeystorePlugin => vec![
            ("transit/keys/openkcm-*", vec!["read", "update", "delete"]),
            ("transit/wrapping_key", vec!["read"]),
        ],
        Identity::KeystorePluginCrypto => vec![
            ("transit/encrypt/openkcm-*", vec!["update"]),
            ("transit/decrypt/openkcm-*", vec!["update"]),
            ("transit/rewrap/openkcm-*", vec!["update"]),
            ("transit/keys/openkcm-*", vec!["read"]),
        ],
    }
}

fn rules(identity: Identity) -> Vec<PathRule> {
    identity.policy().unwrap()
}

#[test]
fn policies_hold_exactly_the_listed_capabilities() {
    for identity in Identity::ALL {
        let actual: Vec<(String, Vec<String>)> = rules(identity)
            .into_iter()
            .map(|r| {
                let mut caps = r.capabilities;
                caps.sort();
                (r.path, caps)
            })
            .collect();
        let expected: Vec<(String, Vec<String>)> = expected(identity)
            .into_iter()
            .map(|(p, caps)| {
                let mut caps: Vec<String> = caps.into_iter().map(str::to_owned).collect();
                caps.sort();
                (p.to_owned(), caps)
            })
            .collect();
        assert_eq!(
            actual,
            expected,
            "policies/{} drifted from the seeds",
            identity.policy_file()
        );
    }
}

/// Lifecycle identities name exact paths. The keystore plugin may use one
/// trailing glob after a fixed `openkcm-` key-name prefix, because tenants'
/// key names are not known in advance; no other glob is allowed anywhere.
#[test]
fn no_wildcard_paths() {
    for identity in Identity::ALL {
        for rule in rules(identity) {
            let keystore = matches!(
                identity,
                Identity::KeystorePlugin | Identity::KeystorePluginCrypto
            );
            let allowed_glob = keystore
                && rule.path.ends_with("/openkcm-*")
                && rule.path.matches('*').count() == 1;
            let has_wildcard = rule.path.contains('*') || rule.path.contains('+');
            assert!(
                !has_wildcard || allowed_glob,
                "policies/{}: wildcard path {:?}",
                identity.policy_file(),
                rule.path
            );
        }
    }
}

#[test]
fn sudo_only_where_openbao_requires_it() {
    // Verified on 2.6.2 and 2.7.2: of these paths only step-down needs sudo.
    for identity in Identity::ALL {
        for rule in rules(identity) {
            if rule.allows("sudo") {
                assert_eq!(
                    rule.path,
                    "sys/step-down",
                    "policies/{}: sudo on {}",
                    identity.policy_file(),
                    rule.path
                );
            }
        }
    }
}

#[test]
fn only_the_restore_policy_touches_snapshot_force() {
    for identity in Identity::ALL {
        for rule in rules(identity) {
            if rule.path.starts_with("sys/storage/raft/snapshot-force") {
                assert_eq!(
                    identity,
                    Identity::Restore,
                    "policies/{} grants {:?} on snapshot-force",
                    identity.policy_file(),
                    rule.capabilities
                );
            }
            // `update` on the snapshot path is a (non-force) restore.
            if rule.path == "sys/storage/raft/snapshot" && identity != Identity::Restore {
                assert_eq!(
                    rule.capabilities,
                    ["read"],
                    "policies/{} can restore through sys/storage/raft/snapshot",
                    identity.policy_file()
                );
            }
        }
    }
}

/// The one write the controller may make to OpenBao's auth configuration:
/// `bound_audiences` of its own role, to a single per-cluster audience.
/// Anything else (token_policies, bound_subject, a comma-separated list
/// that would re-admit openbao-internal, creating a deleted role) stays
/// denied. Proven against a real OpenBao in
/// bins/controller/tests/per_cluster_tokens.rs.
#[test]
fn the_controller_may_only_move_its_own_role_to_a_per_cluster_audience() {
    let auth_rules: Vec<(Identity, PathRule)> = Identity::ALL
        .iter()
        .flat_map(|i| rules(*i).into_iter().map(move |r| (*i, r)))
        .filter(|(_, r)| r.path.starts_with("auth/") || r.path.starts_with("sys/auth"))
        .collect();
    assert_eq!(auth_rules.len(), 1, "{auth_rules:?}");
    let (identity, rule) = &auth_rules[0];
    assert_eq!(*identity, Identity::Controller);
    assert_eq!(rule.capabilities, ["update"], "update only: no create");
    assert_eq!(rule.required_parameters, ["bound_audiences"]);
    assert_eq!(
        rule.allowed_parameters.keys().collect::<Vec<_>>(),
        ["bound_audiences", "role_type"]
    );
    assert_eq!(rule.allowed_parameters["role_type"], ["jwt"]);
    assert_eq!(
        rule.allowed_parameters["bound_audiences"],
        [format!(
            "{}*",
            lifecycle_types::identities::CONTROLLER_AUDIENCE_PREFIX
        )]
    );
    assert_eq!(rule.denied_parameters["bound_audiences"], ["*,*"]);
    // No other rule anywhere restricts or widens parameters.
    for identity in Identity::ALL {
        for other in rules(identity) {
            if other.path != rule.path {
                assert!(
                    other.allowed_parameters.is_empty()
                        && other.denied_parameters.is_empty()
                        && other.required_parameters.is_empty(),
                    "policies/{}: {}",
                    identity.policy_file(),
                    other.path
                );
            }
        }
    }
}

#[test]
fn jwt_roles_bind_audience_and_subject() {
    let roles = lifecycle_types::identities::jwt_roles().unwrap();
    assert_eq!(roles.len(), 6);
    for role in roles {
        let expected_audience = if role.identity == Identity::Controller.key() {
            lifecycle_types::identities::controller_audience("{namespace}", "{cluster}", "{uid}")
        } else {
            "openbao-internal".to_owned()
        };
        assert_eq!(role.bound_audiences, [expected_audience], "{}", role.name);
        assert_eq!(role.user_claim, "sub", "{}", role.name);
        assert!(
            role.bound_subject.starts_with("system:serviceaccount:"),
            "{}",
            role.name
        );
        assert_eq!(
            role.token_max_ttl, "1h",
            "{}: Jobs get at most an hour",
            role.name
        );
    }
}

/// The throwaway node's drill policy may restore into that node and do
/// nothing else; it is never installed on a cluster (not an [`Identity`]).
#[test]
fn the_drill_throwaway_policy_only_restores() {
    let rules = lifecycle_types::identities::parse_policy(
        lifecycle_types::identities::DRILL_THROWAWAY_POLICY_HCL,
    )
    .unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].path, "sys/storage/raft/snapshot-force");
    assert_eq!(rules[0].capabilities, ["update"]);
    assert!(!rules[0].why.is_empty());
}
