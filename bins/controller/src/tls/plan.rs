//! The decision: what to do with the TLS Secrets now. A pure function of
//! their parsed contents, whether the pods run the current server Secret,
//! the desired names, the policy and `now`.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use lifecycle_types::validation::parse_duration;

use super::TlsError;
use super::inspect::CertInfo;
use super::issue::{after, canonical_san};

/// Lifetimes and renewal windows of the operator's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Validity of a new CA.
    pub ca_validity: Duration,
    /// A CA rotation starts when less than this remains of the CA.
    pub ca_renew_before: Duration,
    /// Validity of a new server certificate (cut to its CA's end).
    pub server_validity: Duration,
    /// A server certificate is renewed when less than this remains.
    pub server_renew_before: Duration,
}

impl TlsPolicy {
    /// The shortest `spec.tls.rotationPeriod` accepted.
    pub const MIN_ROTATION_PERIOD: Duration = Duration::from_secs(3600);
    /// The longest `spec.tls.rotationPeriod` accepted (CAs then live 36
    /// years).
    pub const MAX_ROTATION_PERIOD: Duration = Duration::from_secs(8760 * 3600);

    /// The policy for `spec.tls.rotationPeriod` `p` (a Go duration such as
    /// `720h`, parsed like the spec validation does): server certificates
    /// valid `3p` and renewed with `p` left; CAs valid `36p` and rotated
    /// with `2p` left, so a rotation's three rollouts have `p` to spare.
    pub fn from_rotation_period(text: &str) -> Result<Self, TlsError> {
        let problem = |problem: String| TlsError::RotationPeriod {
            value: text.to_owned(),
            problem,
        };
        let period = parse_duration(text)
            .ok_or_else(|| problem("is not a duration; write it like \"720h\"".to_owned()))?;
        if period < Self::MIN_ROTATION_PERIOD {
            return Err(problem(
                "is shorter than 1h; certificates would be renewed faster than pods restart"
                    .to_owned(),
            ));
        }
        if period > Self::MAX_ROTATION_PERIOD {
            return Err(problem("is longer than 8760h (one year)".to_owned()));
        }
        Ok(Self {
            ca_validity: period * 36,
            ca_renew_before: period * 2,
            server_validity: period * 3,
            server_renew_before: period,
        })
    }
}

impl Default for TlsPolicy {
    /// The policy of the default rotation period, `720h`.
    fn default() -> Self {
        let period = Duration::from_secs(720 * 3600);
        Self {
            ca_validity: period * 36,
            ca_renew_before: period * 2,
            server_validity: period * 3,
            server_renew_before: period,
        }
    }
}

/// What the controller read from the two TLS Secrets, parsed, plus whether
/// the pods run the server Secret as it is. Build it with
/// [`TlsState::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsState {
    /// The CA Secret's `tls.crt`: the CA that signs.
    pub ca: Option<CertInfo>,
    /// The CA Secret's `next.crt`: the CA being rolled in.
    pub next_ca: Option<CertInfo>,
    /// The server Secret's `tls.crt` (`None` when it or `tls.key` is
    /// missing).
    pub server: Option<CertInfo>,
    /// The server Secret's `ca.crt`: what the pods trust.
    pub bundle: Vec<CertInfo>,
    /// Every OpenBao pod was started with the server Secret exactly as it is
    /// now (its TLS hash annotation matches and the StatefulSet rollout is
    /// complete). Vacuously true without pods.
    pub bundle_rolled_out: bool,
}

/// Where a CA rotation stands, derived from the Secrets' contents alone
/// (see the module documentation for the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationPhase {
    /// No CA: one is issued.
    NoCa,
    /// A next CA exists: it joins the bundle, then waits for every pod to
    /// trust it.
    Introducing,
    /// The server certificate is signed by a CA other than the current one
    /// (the previous CA, or a lost one).
    Switching,
    /// The current CA signs the server certificate; the bundle still trusts
    /// other CAs until every pod presents the new certificate.
    Retiring,
    /// Nothing pending: the current CA signs and is the only one trusted.
    Steady,
}

impl TlsState {
    /// The rotation phase these contents are in.
    pub fn phase(&self) -> RotationPhase {
        let Some(ca) = &self.ca else {
            return RotationPhase::NoCa;
        };
        if self.next_ca.is_some() {
            RotationPhase::Introducing
        } else if self
            .server
            .as_ref()
            .is_some_and(|server| !server.is_signed_by(ca))
        {
            RotationPhase::Switching
        } else if self.bundle.iter().any(|cert| !same(cert, ca)) {
            RotationPhase::Retiring
        } else {
            RotationPhase::Steady
        }
    }

    fn bundle_has(&self, cert: &CertInfo) -> bool {
        self.bundle.iter().any(|trusted| same(trusted, cert))
    }
}

fn same(a: &CertInfo, b: &CertInfo) -> bool {
    a.fingerprint_sha256 == b.fingerprint_sha256
}

/// Why a CA is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaReason {
    /// The CA Secret holds no CA.
    Missing,
    /// The CA expired: nothing it signed works any more, so it is replaced
    /// at once.
    Expired {
        /// When.
        not_after: Timestamp,
    },
    /// The CA is within its renewal window: a rotation starts.
    ExpiresSoon {
        /// When it expires.
        not_after: Timestamp,
    },
    /// The next CA of an interrupted rotation expired before it signed
    /// anything: the rotation starts over.
    NextExpired {
        /// When it expired.
        not_after: Timestamp,
    },
}

/// Why a server certificate is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerReason {
    /// The server Secret holds no certificate and key.
    Missing,
    /// The certificate expired.
    Expired {
        /// When.
        not_after: Timestamp,
    },
    /// The current CA did not sign it.
    NotSignedByCurrentCa,
    /// It is a CA, or lacks `serverAuth` or `clientAuth`.
    WrongKind,
    /// Its names differ from the desired ones.
    SansChanged {
        /// Desired names it lacks.
        missing: Vec<String>,
        /// Names it has that are no longer desired.
        extra: Vec<String>,
    },
    /// It is within its renewal window.
    ExpiresSoon {
        /// When it expires.
        not_after: Timestamp,
    },
}

/// What an [`TlsAction::AwaitRollout`] waits to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferred {
    /// Issue a server certificate signed by a CA the pods do not all trust
    /// yet.
    IssueServer(ServerReason),
    /// Let the next CA sign, once every pod trusts it.
    FinishCaRotation,
    /// Drop the old CAs, once every pod presents a certificate of the new
    /// one.
    DropOldCa,
}

/// What to do with the TLS Secrets; [`perform`](super::perform) carries it
/// out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsAction {
    /// Nothing to do.
    Keep,
    /// Issue a new CA into the CA Secret (which drops a next CA).
    IssueCa {
        /// Why.
        reason: CaReason,
    },
    /// Issue a server certificate signed by the current CA; the bundle keeps
    /// what it trusts and gains the current (and next) CA.
    IssueServer {
        /// Why.
        reason: ServerReason,
    },
    /// Add CAs to the bundle without touching the server certificate.
    PublishTrustBundle {
        /// Fingerprints of the CAs added.
        adding: Vec<String>,
    },
    /// Issue the next CA into the CA Secret, then add it to the bundle; the
    /// current CA keeps signing.
    StartCaRotation {
        /// Why.
        reason: CaReason,
    },
    /// Every pod trusts the next CA: it becomes the current CA and signs a
    /// new server certificate; the bundle still trusts the old CA.
    FinishCaRotation,
    /// Every pod presents a certificate of the current CA: the bundle drops
    /// the others.
    DropOldCa {
        /// Fingerprints of the CAs removed.
        removing: Vec<String>,
    },
    /// Wait until every pod runs the server Secret as it is, then do this.
    AwaitRollout {
        /// What comes after the rollout.
        then: Deferred,
    },
}

impl TlsAction {
    /// The variant's name, for logs, events and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            TlsAction::Keep => "Keep",
            TlsAction::IssueCa { .. } => "IssueCa",
            TlsAction::IssueServer { .. } => "IssueServer",
            TlsAction::PublishTrustBundle { .. } => "PublishTrustBundle",
            TlsAction::StartCaRotation { .. } => "StartCaRotation",
            TlsAction::FinishCaRotation => "FinishCaRotation",
            TlsAction::DropOldCa { .. } => "DropOldCa",
            TlsAction::AwaitRollout { .. } => "AwaitRollout",
        }
    }
}

impl fmt::Display for CaReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaReason::Missing => write!(f, "the CA Secret holds no CA"),
            CaReason::Expired { not_after } => write!(f, "the CA expired at {not_after}"),
            CaReason::ExpiresSoon { not_after } => write!(f, "the CA expires at {not_after}"),
            CaReason::NextExpired { not_after } => {
                write!(f, "the next CA expired at {not_after} before it signed")
            }
        }
    }
}

impl fmt::Display for ServerReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerReason::Missing => write!(f, "the server Secret holds no certificate"),
            ServerReason::Expired { not_after } => {
                write!(f, "the server certificate expired at {not_after}")
            }
            ServerReason::NotSignedByCurrentCa => {
                write!(f, "the server certificate is not signed by the current CA")
            }
            ServerReason::WrongKind => write!(
                f,
                "the server certificate is a CA or lacks serverAuth or clientAuth"
            ),
            ServerReason::SansChanged { missing, extra } => write!(
                f,
                "the server certificate lacks {missing:?} and has {extra:?} beyond the desired names"
            ),
            ServerReason::ExpiresSoon { not_after } => {
                write!(f, "the server certificate expires at {not_after}")
            }
        }
    }
}

impl fmt::Display for TlsAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsAction::Keep => write!(f, "keep the certificates"),
            TlsAction::IssueCa { reason } => write!(f, "issue a CA: {reason}"),
            TlsAction::IssueServer { reason } => {
                write!(f, "issue a server certificate: {reason}")
            }
            TlsAction::PublishTrustBundle { adding } => {
                write!(f, "add CAs {adding:?} to the trust bundle")
            }
            TlsAction::StartCaRotation { reason } => write!(f, "start a CA rotation: {reason}"),
            TlsAction::FinishCaRotation => {
                write!(f, "let the next CA sign: every pod trusts it")
            }
            TlsAction::DropOldCa { removing } => {
                write!(f, "drop CAs {removing:?} from the trust bundle")
            }
            TlsAction::AwaitRollout { then } => {
                let then = match then {
                    Deferred::IssueServer(reason) => {
                        format!("issue a server certificate ({reason})")
                    }
                    Deferred::FinishCaRotation => "let the next CA sign".to_owned(),
                    Deferred::DropOldCa => "drop the old CAs".to_owned(),
                };
                write!(
                    f,
                    "wait for every pod to restart with the TLS Secret, then {then}"
                )
            }
        }
    }
}

/// Decides what to do with the TLS Secrets. Rules, first match wins:
///
/// 1. no CA, or it expired: `IssueCa`;
/// 2. the next CA expired before it signed: `StartCaRotation` again;
/// 3. the server certificate is missing, expired, not from the current CA,
///    of the wrong kind, has other names than `desired_sans`, or is within
///    its window and a new one would last longer: `IssueServer` when every
///    pod trusts the current CA or the old certificate is unusable anyway;
///    otherwise `PublishTrustBundle` (the current CA is not in the bundle)
///    or `AwaitRollout`;
/// 4. the bundle lacks the current or next CA: `PublishTrustBundle`;
/// 5. a next CA exists: `FinishCaRotation` once rolled out;
/// 6. the bundle trusts other CAs: `DropOldCa` once rolled out;
/// 7. the CA is within its window: `StartCaRotation`;
/// 8. `Keep`.
pub fn plan(
    state: &TlsState,
    desired_sans: &[String],
    now: Timestamp,
    policy: &TlsPolicy,
) -> TlsAction {
    let Some(ca) = &state.ca else {
        return TlsAction::IssueCa {
            reason: CaReason::Missing,
        };
    };
    if now >= ca.not_after {
        return TlsAction::IssueCa {
            reason: CaReason::Expired {
                not_after: ca.not_after,
            },
        };
    }
    if let Some(next) = &state.next_ca
        && now >= next.not_after
    {
        return TlsAction::StartCaRotation {
            reason: CaReason::NextExpired {
                not_after: next.not_after,
            },
        };
    }

    let trusted_everywhere = state.bundle_has(ca) && state.bundle_rolled_out;
    if let Some(reason) = server_problem(state, ca, desired_sans, now, policy) {
        let usable = state.server.as_ref().is_some_and(|server| {
            now < server.not_after
                && state
                    .bundle
                    .iter()
                    .any(|trusted| server.is_signed_by(trusted))
        });
        return if trusted_everywhere || !usable {
            TlsAction::IssueServer { reason }
        } else if !state.bundle_has(ca) {
            TlsAction::PublishTrustBundle {
                adding: missing_from_bundle(state),
            }
        } else {
            TlsAction::AwaitRollout {
                then: Deferred::IssueServer(reason),
            }
        };
    }

    let adding = missing_from_bundle(state);
    if !adding.is_empty() {
        return TlsAction::PublishTrustBundle { adding };
    }
    if state.next_ca.is_some() {
        return if state.bundle_rolled_out {
            TlsAction::FinishCaRotation
        } else {
            TlsAction::AwaitRollout {
                then: Deferred::FinishCaRotation,
            }
        };
    }
    let removing: Vec<String> = state
        .bundle
        .iter()
        .filter(|cert| !same(cert, ca))
        .map(|cert| cert.fingerprint_sha256.clone())
        .collect();
    if !removing.is_empty() {
        return if state.bundle_rolled_out {
            TlsAction::DropOldCa { removing }
        } else {
            TlsAction::AwaitRollout {
                then: Deferred::DropOldCa,
            }
        };
    }
    if within_window(now, ca.not_after, policy.ca_renew_before) {
        return TlsAction::StartCaRotation {
            reason: CaReason::ExpiresSoon {
                not_after: ca.not_after,
            },
        };
    }
    TlsAction::Keep
}

fn server_problem(
    state: &TlsState,
    ca: &CertInfo,
    desired_sans: &[String],
    now: Timestamp,
    policy: &TlsPolicy,
) -> Option<ServerReason> {
    let Some(server) = &state.server else {
        return Some(ServerReason::Missing);
    };
    if now >= server.not_after {
        return Some(ServerReason::Expired {
            not_after: server.not_after,
        });
    }
    if !server.is_signed_by(ca) {
        return Some(ServerReason::NotSignedByCurrentCa);
    }
    if server.is_ca || !server.server_auth || !server.client_auth {
        return Some(ServerReason::WrongKind);
    }
    let (missing, extra) = san_difference(&server.sans, desired_sans);
    if !missing.is_empty() || !extra.is_empty() {
        return Some(ServerReason::SansChanged { missing, extra });
    }
    if within_window(now, server.not_after, policy.server_renew_before) {
        // A new certificate ends at the CA's end at the latest: renewing one
        // that already does would only repeat itself; the CA rotation
        // replaces it.
        let renewed_until = after(now, policy.server_validity)
            .unwrap_or(ca.not_after)
            .min(ca.not_after);
        if renewed_until > server.not_after {
            return Some(ServerReason::ExpiresSoon {
                not_after: server.not_after,
            });
        }
    }
    None
}

/// Desired names the certificate lacks, and names it has beyond them,
/// compared in canonical form (DNS lower case, IPs canonical). A desired
/// name that is no valid SAN stays "missing", and issuing then reports it.
fn san_difference(have: &[String], desired: &[String]) -> (Vec<String>, Vec<String>) {
    let have_set: BTreeSet<&str> = have.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    let desired: Vec<String> = desired
        .iter()
        .map(|san| canonical_san(san).unwrap_or_else(|| san.clone()))
        .filter(|san| seen.insert(san.clone()))
        .collect();
    let missing = desired
        .iter()
        .filter(|san| !have_set.contains(san.as_str()))
        .cloned()
        .collect();
    let extra = have
        .iter()
        .filter(|san| !seen.contains(*san))
        .cloned()
        .collect();
    (missing, extra)
}

fn missing_from_bundle(state: &TlsState) -> Vec<String> {
    state
        .ca
        .iter()
        .chain(&state.next_ca)
        .filter(|ca| !state.bundle_has(ca))
        .map(|ca| ca.fingerprint_sha256.clone())
        .collect()
}

/// Whether less than `window` remains before `not_after`.
fn within_window(now: Timestamp, not_after: Timestamp, window: Duration) -> bool {
    not_after
        .checked_sub(window)
        .map_or(true, |renew_at| now >= renew_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{days, inspect, issue_ca, issue_server};

    fn t(day: u64) -> Timestamp {
        Timestamp::from_second(1_800_000_000)
            .unwrap()
            .checked_add(days(day))
            .unwrap()
    }

    fn sans() -> Vec<String> {
        vec![
            "openbao-cluster-prod.local".to_owned(),
            "*.prod.ns.svc".to_owned(),
            "127.0.0.1".to_owned(),
        ]
    }

    /// A steady state issued on day 0 with the default policy.
    fn steady() -> (TlsState, crate::tls::CaMaterial) {
        let policy = TlsPolicy::default();
        let ca = issue_ca("prod", t(0), policy.ca_validity).unwrap();
        let server = issue_server(&ca, &sans(), t(0), policy.server_validity).unwrap();
        let ca_info = inspect(&ca.cert_pem).unwrap();
        let state = TlsState {
            ca: Some(ca_info.clone()),
            next_ca: None,
            server: Some(inspect(&server.cert_pem).unwrap()),
            bundle: vec![ca_info],
            bundle_rolled_out: true,
        };
        (state, ca)
    }

    #[test]
    fn rotation_period_parses_into_windows() {
        let policy = TlsPolicy::from_rotation_period("720h").unwrap();
        assert_eq!(policy, TlsPolicy::default());
        assert_eq!(policy.server_renew_before, days(30));
        assert_eq!(policy.server_validity, days(90));
        assert_eq!(policy.ca_renew_before, days(60));
        assert_eq!(policy.ca_validity, days(1080));
        assert_eq!(
            TlsPolicy::from_rotation_period("1h30m")
                .unwrap()
                .server_renew_before,
            Duration::from_secs(5400)
        );
        for (bad, says) in [
            ("banana", "is not a duration; write it like \"720h\""),
            ("30m", "shorter than 1h"),
            ("8761h", "longer than 8760h"),
        ] {
            let error = TlsPolicy::from_rotation_period(bad)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("spec.tls.rotationPeriod"), "{error}");
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn no_ca_or_an_expired_ca_issues_a_ca() {
        let policy = TlsPolicy::default();
        assert_eq!(
            plan(&TlsState::default(), &sans(), t(0), &policy),
            TlsAction::IssueCa {
                reason: CaReason::Missing
            }
        );
        let (state, _) = steady();
        let action = plan(&state, &sans(), t(1081), &policy);
        assert!(
            matches!(
                action,
                TlsAction::IssueCa {
                    reason: CaReason::Expired { .. }
                }
            ),
            "{action:?}"
        );
    }

    #[test]
    fn a_fresh_ca_gets_a_server_certificate_and_then_nothing_happens() {
        let policy = TlsPolicy::default();
        let (mut state, _) = steady();
        let server = state.server.take();
        state.bundle.clear();
        assert_eq!(
            plan(&state, &sans(), t(0), &policy),
            TlsAction::IssueServer {
                reason: ServerReason::Missing
            }
        );
        state.server = server;
        state.bundle = vec![state.ca.clone().unwrap()];
        assert_eq!(plan(&state, &sans(), t(0), &policy), TlsAction::Keep);
        assert_eq!(state.phase(), RotationPhase::Steady);
        // Until the window, whether or not the pods restarted.
        state.bundle_rolled_out = false;
        assert_eq!(plan(&state, &sans(), t(59), &policy), TlsAction::Keep);
    }

    #[test]
    fn the_server_certificate_is_renewed_inside_its_window_and_when_expired() {
        let policy = TlsPolicy::default();
        let (mut state, _) = steady();
        let action = plan(&state, &sans(), t(61), &policy);
        assert!(
            matches!(
                action,
                TlsAction::IssueServer {
                    reason: ServerReason::ExpiresSoon { .. }
                }
            ),
            "{action:?}"
        );
        // A renewal can wait for a rollout to finish; an expired
        // certificate cannot.
        state.bundle_rolled_out = false;
        assert_eq!(
            plan(&state, &sans(), t(61), &policy),
            TlsAction::AwaitRollout {
                then: Deferred::IssueServer(ServerReason::ExpiresSoon {
                    not_after: state.server.as_ref().unwrap().not_after
                })
            }
        );
        let action = plan(&state, &sans(), t(91), &policy);
        assert!(
            matches!(
                action,
                TlsAction::IssueServer {
                    reason: ServerReason::Expired { .. }
                }
            ),
            "{action:?}"
        );
    }

    #[test]
    fn changed_sans_reissue_and_name_the_difference() {
        let policy = TlsPolicy::default();
        let (state, _) = steady();
        let mut more = sans();
        more.push("vault.example.com".to_owned());
        more.push("10.1.2.3".to_owned());
        assert_eq!(
            plan(&state, &more, t(1), &policy),
            TlsAction::IssueServer {
                reason: ServerReason::SansChanged {
                    missing: vec!["vault.example.com".to_owned(), "10.1.2.3".to_owned()],
                    extra: vec![],
                }
            }
        );
        assert_eq!(
            plan(&state, &sans()[..2], t(1), &policy),
            TlsAction::IssueServer {
                reason: ServerReason::SansChanged {
                    missing: vec![],
                    extra: vec!["127.0.0.1".to_owned()],
                }
            }
        );
        // Case, order and duplicates do not count as changes.
        let mut shuffled: Vec<String> = sans().iter().rev().map(|s| s.to_uppercase()).collect();
        shuffled.push("127.0.0.1".to_owned());
        assert_eq!(plan(&state, &shuffled, t(1), &policy), TlsAction::Keep);
    }

    #[test]
    fn a_server_certificate_already_ending_with_its_ca_is_not_renewed_in_a_loop() {
        // Server window wider than what the CA has left: a renewal cannot
        // extend the certificate, so only the CA rotation helps.
        let policy = TlsPolicy {
            ca_validity: days(100),
            ca_renew_before: days(10),
            server_validity: days(90),
            server_renew_before: days(30),
        };
        let ca = issue_ca("prod", t(0), policy.ca_validity).unwrap();
        let server = issue_server(&ca, &sans(), t(80), policy.server_validity).unwrap();
        let ca_info = inspect(&ca.cert_pem).unwrap();
        let server_info = inspect(&server.cert_pem).unwrap();
        assert_eq!(server_info.not_after, ca_info.not_after, "cut to the CA");
        let state = TlsState {
            ca: Some(ca_info.clone()),
            next_ca: None,
            server: Some(server_info),
            bundle: vec![ca_info],
            bundle_rolled_out: true,
        };
        assert_eq!(plan(&state, &sans(), t(85), &policy), TlsAction::Keep);
        assert!(matches!(
            plan(&state, &sans(), t(91), &policy),
            TlsAction::StartCaRotation { .. }
        ));
    }

    #[test]
    fn a_server_certificate_of_another_ca_is_replaced_only_once_its_ca_is_trusted() {
        let policy = TlsPolicy::default();
        let (mut state, _) = steady();
        let other = issue_ca("prod", t(0), policy.ca_validity).unwrap();
        let other_info = inspect(&other.cert_pem).unwrap();
        state.ca = Some(other_info.clone());
        assert_eq!(state.phase(), RotationPhase::Switching);
        assert_eq!(
            plan(&state, &sans(), t(1), &policy),
            TlsAction::PublishTrustBundle {
                adding: vec![other_info.fingerprint_sha256.clone()]
            }
        );
        state.bundle.push(other_info);
        state.bundle_rolled_out = false;
        assert_eq!(
            plan(&state, &sans(), t(1), &policy),
            TlsAction::AwaitRollout {
                then: Deferred::IssueServer(ServerReason::NotSignedByCurrentCa)
            }
        );
        state.bundle_rolled_out = true;
        assert_eq!(
            plan(&state, &sans(), t(1), &policy),
            TlsAction::IssueServer {
                reason: ServerReason::NotSignedByCurrentCa
            }
        );
    }

    #[test]
    fn a_certificate_that_is_no_server_certificate_is_replaced() {
        let policy = TlsPolicy::default();
        let (mut state, ca) = steady();
        // The CA's own certificate in tls.crt: signed by the current CA
        // (itself), but a CA without serverAuth.
        state.server = Some(inspect(&ca.cert_pem).unwrap());
        assert_eq!(
            plan(&state, &sans(), t(1), &policy),
            TlsAction::IssueServer {
                reason: ServerReason::WrongKind
            }
        );
    }

    #[test]
    fn actions_describe_themselves() {
        let action = TlsAction::AwaitRollout {
            then: Deferred::FinishCaRotation,
        };
        assert_eq!(action.kind(), "AwaitRollout");
        assert_eq!(
            action.to_string(),
            "wait for every pod to restart with the TLS Secret, then let the next CA sign"
        );
    }
}
