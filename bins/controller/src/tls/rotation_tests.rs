//! Whole-module tests: issued certificates checked by rustls the way TLS
//! peers check them, and the rotation state machine driven step by step
//! with a simulated clock and simulated pods, asserting at every step that
//! every pod still trusts every other pod's certificate.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn sans() -> Vec<String> {
    vec![
        "openbao-cluster-prod.local".to_owned(),
        "*.prod-internal.team-a.svc".to_owned(),
        "prod-active.team-a.svc".to_owned(),
        "vault.example.com".to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ]
}

fn unix(now: Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(now.as_second().try_into().unwrap()))
}

fn roots(ca_pem: &str) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            inspect(ca_pem).unwrap().der().to_vec(),
        ))
        .unwrap();
    Arc::new(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a rustls client checks: chain to `ca_pem`, validity at `now`,
/// `serverAuth`, and `name` among the SANs.
fn verify_as_server(
    ca_pem: &str,
    cert_pem: &str,
    name: &str,
    now: Timestamp,
) -> Result<(), rustls::Error> {
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca_pem), provider())
            .build()
            .unwrap();
    let cert = CertificateDer::from(inspect(cert_pem).unwrap().der().to_vec());
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&cert, &[], &name, &[], unix(now))
        .map(|_| ())
}

/// What a rustls server checks of a client: chain, validity, `clientAuth`.
fn verify_as_client(ca_pem: &str, cert_pem: &str, now: Timestamp) -> Result<(), rustls::Error> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem), provider())
            .build()
            .unwrap();
    let cert = CertificateDer::from(inspect(cert_pem).unwrap().der().to_vec());
    verifier
        .verify_client_cert(&cert, &[], unix(now))
        .map(|_| ())
}

#[test]
fn the_server_certificate_chains_to_the_ca_for_every_name_and_both_usages() {
    let ca = issue_ca("prod", t0(), days(1080)).unwrap();
    let server = issue_server(&ca, &sans(), t0(), days(90)).unwrap();
    let now = t0().checked_add(days(1)).unwrap();
    for name in [
        "openbao-cluster-prod.local",
        "prod-2.prod-internal.team-a.svc",
        "prod-active.team-a.svc",
        "vault.example.com",
        "localhost",
        "127.0.0.1",
        "::1",
    ] {
        verify_as_server(&ca.cert_pem, &server.cert_pem, name, now)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    verify_as_client(&ca.cert_pem, &server.cert_pem, now).unwrap();

    // And nothing else: other names, other CAs, before or after validity.
    assert!(verify_as_server(&ca.cert_pem, &server.cert_pem, "evil.example.com", now).is_err());
    assert!(
        verify_as_server(
            &ca.cert_pem,
            &server.cert_pem,
            "a.b.prod-internal.team-a.svc",
            now
        )
        .is_err(),
        "a wildcard covers one label"
    );
    let other = issue_ca("prod", t0(), days(1080)).unwrap();
    assert!(verify_as_server(&other.cert_pem, &server.cert_pem, "localhost", now).is_err());
    assert!(verify_as_client(&other.cert_pem, &server.cert_pem, now).is_err());
    let expired = t0().checked_add(days(91)).unwrap();
    assert!(verify_as_server(&ca.cert_pem, &server.cert_pem, "localhost", expired).is_err());
    // Backdated for clock skew: a peer a minute behind accepts it.
    let behind = t0().checked_sub(Duration::from_secs(60)).unwrap();
    verify_as_server(&ca.cert_pem, &server.cert_pem, "localhost", behind).unwrap();

    let server_info = inspect(&server.cert_pem).unwrap();
    let ca_info = inspect(&ca.cert_pem).unwrap();
    assert!(server_info.is_signed_by(&ca_info));
    assert!(!server_info.is_signed_by(&inspect(&other.cert_pem).unwrap()));
}

#[test]
fn the_ca_is_a_p256_ca_for_server_certificates_only() {
    let ca = issue_ca("prod", t0(), days(1080)).unwrap();
    let info = inspect(&ca.cert_pem).unwrap();
    assert_eq!(info.subject, "CN=prod OpenBao CA");
    assert_eq!(info.issuer, info.subject);
    assert!(info.is_ca && info.is_signed_by(&info));
    assert_eq!(
        info.not_before,
        t0().checked_sub(issue::CLOCK_SKEW).unwrap()
    );
    assert_eq!(info.not_after, t0().checked_add(days(1080)).unwrap());
    assert!(info.sans.is_empty());
    let (_, cert) = X509Certificate::from_der(info.der()).unwrap();
    let constraints = cert.basic_constraints().unwrap().unwrap();
    assert!(constraints.critical);
    assert_eq!(constraints.value.path_len_constraint, Some(0));
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign() && !usage.digital_signature());
    assert_eq!(
        cert.public_key()
            .algorithm
            .parameters
            .as_ref()
            .map(|p| p.as_oid().unwrap().to_id_string()),
        Some("1.2.840.10045.3.1.7".to_owned()),
        "P-256"
    );
    assert!(ca.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn the_server_certificate_has_every_san_both_usages_and_is_no_ca() {
    let ca = issue_ca("prod", t0(), days(1080)).unwrap();
    let server = issue_server(&ca, &sans(), t0(), days(90)).unwrap();
    let info = inspect(&server.cert_pem).unwrap();
    assert_eq!(info.sans, sans());
    assert!(info.server_auth && info.client_auth);
    assert!(!info.is_ca);
    assert_eq!(info.issuer, "CN=prod OpenBao CA");
    assert_eq!(info.subject, "CN=openbao-cluster-prod.local");
    assert_eq!(info.not_after, t0().checked_add(days(90)).unwrap());
    let (_, cert) = X509Certificate::from_der(info.der()).unwrap();
    let ca_info = inspect(&ca.cert_pem).unwrap();
    let (_, ca_cert) = X509Certificate::from_der(ca_info.der()).unwrap();
    let constraints = cert.basic_constraints().unwrap().unwrap().value;
    assert!(!constraints.ca);
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.digital_signature() && !usage.key_cert_sign());
    // The authority key identifier names the CA's key: old and new CA of a
    // rotation share their name.
    let aki = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        });
    let ski = ca_cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(id.0.to_vec())
            }
            _ => None,
        });
    assert!(aki.is_some());
    assert_eq!(aki, ski);
}

#[test]
fn debug_output_never_shows_a_private_key() {
    let ca = issue_ca("prod", t0(), days(1080)).unwrap();
    let server = issue_server(&ca, &sans(), t0(), days(90)).unwrap();
    let stored = StoredTls {
        cluster: "prod".to_owned(),
        ca: Some(ca.clone()),
        next_ca: Some(ca.clone()),
        server: Some(server.clone()),
        bundle_pem: ca.cert_pem.clone(),
    };
    let writes = Writes {
        ca_secret: Some(CaSecretData {
            current: ca.clone(),
            next: Some(ca.clone()),
        }),
        server_secret: Some(ServerSecretData {
            server: server.clone(),
            ca_bundle_pem: ca.cert_pem.clone(),
        }),
    };
    let key_body = |pem: &str| pem.lines().nth(1).unwrap().to_owned();
    for debug in [
        format!("{ca:?}"),
        format!("{server:?}"),
        format!("{stored:?}"),
        format!("{stored:#?}"),
        format!("{writes:?}"),
    ] {
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(!debug.contains(&key_body(&ca.key_pem)), "{debug}");
        assert!(!debug.contains(&key_body(&server.key_pem)), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }
}

/// The cluster as the controller sees it, with pods that restart when the
/// server Secret changes.
struct Sim {
    stored: StoredTls,
    policy: TlsPolicy,
    sans: Vec<String>,
    now: Timestamp,
    /// Server Secret contents (certificate, bundle) the pods run: one when
    /// rolled out, several while pods restart.
    running: Vec<(String, String)>,
    /// Check after every change that every pod trusts every other pod.
    check_trust: bool,
}

impl Sim {
    fn new() -> Self {
        Self {
            stored: StoredTls {
                cluster: "prod".to_owned(),
                ..StoredTls::default()
            },
            policy: TlsPolicy::default(),
            sans: sans(),
            now: t0(),
            running: Vec::new(),
            check_trust: true,
        }
    }

    fn current(&self) -> Option<(String, String)> {
        let server = self.stored.server.as_ref()?;
        Some((server.cert_pem.clone(), self.stored.bundle_pem.clone()))
    }

    fn rolled_out(&self) -> bool {
        self.running
            .iter()
            .all(|content| Some(content) == self.current().as_ref())
    }

    fn state(&self) -> TlsState {
        TlsState::read(&self.stored, self.rolled_out()).unwrap()
    }

    fn plan(&self) -> TlsAction {
        plan(&self.state(), &self.sans, self.now, &self.policy)
    }

    /// Plans, performs and writes; returns the action.
    fn step(&mut self) -> TlsAction {
        let action = self.plan();
        let writes = perform(&action, &self.stored, &self.sans, self.now, &self.policy).unwrap();
        self.write(&writes);
        action
    }

    /// Plans and performs, but the controller dies after the first write.
    fn step_and_crash(&mut self) -> TlsAction {
        let action = self.plan();
        let writes = perform(&action, &self.stored, &self.sans, self.now, &self.policy).unwrap();
        assert!(
            writes.ca_secret.is_some() && writes.server_secret.is_some(),
            "{action:?} has a single write"
        );
        self.write(&Writes {
            ca_secret: writes.ca_secret,
            server_secret: None,
        });
        action
    }

    fn write(&mut self, writes: &Writes) {
        self.stored.apply(writes);
        if writes.server_secret.is_some() {
            // Pods start restarting: old and new content side by side.
            self.running.extend(self.current());
        }
        self.check();
    }

    /// Every pod has restarted with the current server Secret.
    fn roll_out(&mut self) {
        self.running = self.current().into_iter().collect();
        self.check();
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now.checked_add(by).unwrap();
        self.check();
    }

    /// Pairs of running contents where the first's certificate is not
    /// trusted by the second's bundle.
    fn distrust(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (cert, _) in &self.running {
            let cert = inspect(cert).unwrap();
            for (_, bundle) in &self.running {
                let trusted = inspect_bundle(bundle)
                    .unwrap()
                    .iter()
                    .any(|ca| cert.is_signed_by(ca) && ca.is_valid_at(self.now));
                if !trusted || !cert.is_valid_at(self.now) {
                    problems.push(format!(
                        "{} (until {}) not trusted by a pod at {}",
                        cert.fingerprint_sha256, cert.not_after, self.now
                    ));
                }
            }
        }
        problems
    }

    fn check(&self) {
        if self.check_trust {
            let problems = self.distrust();
            assert!(problems.is_empty(), "outage: {problems:#?}");
        }
    }

    /// Steps (rolling out after each write) until `Keep`; returns the
    /// action kinds taken.
    fn settle(&mut self) -> Vec<&'static str> {
        let mut taken = Vec::new();
        for _ in 0..20 {
            let action = self.step();
            if action == TlsAction::Keep {
                return taken;
            }
            taken.push(action.kind());
            self.roll_out();
        }
        panic!("no steady state after {taken:?}");
    }

    fn ca_fingerprint(&self) -> String {
        self.state().ca.unwrap().fingerprint_sha256
    }

    fn bundle_fingerprints(&self) -> Vec<String> {
        self.state()
            .bundle
            .into_iter()
            .map(|ca| ca.fingerprint_sha256)
            .collect()
    }
}

fn assert_kind(action: &TlsAction, kind: &str) {
    assert_eq!(action.kind(), kind, "{action:?}");
}

#[test]
fn a_new_cluster_gets_a_ca_then_a_server_certificate_then_keeps_them() {
    let mut sim = Sim::new();
    assert_eq!(sim.settle(), ["IssueCa", "IssueServer"]);
    let state = sim.state();
    assert_eq!(state.phase(), RotationPhase::Steady);
    assert_eq!(state.bundle, vec![state.ca.clone().unwrap()]);
}

#[test]
fn the_full_lifecycle_renews_and_rotates_the_ca_without_an_outage() {
    let mut sim = Sim::new();
    assert_eq!(sim.settle(), ["IssueCa", "IssueServer"]);
    let old_ca = sim.ca_fingerprint();
    let ca_end = sim.state().ca.unwrap().not_after;

    // Inside the server window (30 of 90 days left): renewed by the same CA.
    sim.advance(days(59));
    assert_eq!(sim.plan(), TlsAction::Keep);
    sim.advance(days(2));
    let action = sim.step();
    assert!(
        matches!(
            action,
            TlsAction::IssueServer {
                reason: ServerReason::ExpiresSoon { .. }
            }
        ),
        "{action:?}"
    );
    assert_eq!(sim.plan(), TlsAction::Keep, "renewed; pods restarting");
    sim.roll_out();
    assert_eq!(sim.ca_fingerprint(), old_ca);

    // Every ten days until the CA enters its window (60 days left), the
    // server certificate renewed along the way.
    let start = loop {
        let action = sim.plan();
        match action {
            TlsAction::StartCaRotation { .. } => break action,
            TlsAction::Keep => sim.advance(days(10)),
            _ => {
                assert_kind(&sim.step(), "IssueServer");
                sim.roll_out();
            }
        }
    };
    assert_eq!(
        start,
        TlsAction::StartCaRotation {
            reason: CaReason::ExpiresSoon { not_after: ca_end }
        }
    );
    let left = ca_end.duration_since(sim.now);
    assert!(left <= jiff::SignedDuration::from_hours(60 * 24), "{left}");
    assert!(left > jiff::SignedDuration::from_hours(50 * 24), "{left}");

    // 1. The next CA joins the bundle; the old CA still signs.
    let server_before = sim.state().server.unwrap();
    assert_kind(&sim.step(), "StartCaRotation");
    let state = sim.state();
    assert_eq!(state.phase(), RotationPhase::Introducing);
    let new_ca = state.next_ca.clone().unwrap().fingerprint_sha256;
    assert_eq!(
        state.server.as_ref(),
        Some(&server_before),
        "old CA still signs"
    );
    assert_eq!(sim.bundle_fingerprints(), [old_ca.clone(), new_ca.clone()]);

    // 2. The new CA signs only once every pod trusts it.
    assert_eq!(
        sim.step(),
        TlsAction::AwaitRollout {
            then: Deferred::FinishCaRotation
        }
    );
    sim.roll_out();
    assert_eq!(sim.step(), TlsAction::FinishCaRotation);
    let state = sim.state();
    assert_eq!(state.phase(), RotationPhase::Retiring);
    assert_eq!(sim.ca_fingerprint(), new_ca);
    assert!(state.next_ca.is_none());
    let server = state.server.unwrap();
    assert!(server.is_signed_by(state.ca.as_ref().unwrap()));
    assert_eq!(
        server.not_after,
        sim.now.checked_add(days(90)).unwrap(),
        "full lifetime"
    );
    assert_eq!(sim.bundle_fingerprints(), [new_ca.clone(), old_ca.clone()]);

    // 3. The old CA leaves the bundle once every pod presents the new
    //    certificate.
    assert_eq!(
        sim.step(),
        TlsAction::AwaitRollout {
            then: Deferred::DropOldCa
        }
    );
    sim.roll_out();
    assert_eq!(
        sim.step(),
        TlsAction::DropOldCa {
            removing: vec![old_ca]
        }
    );
    assert_eq!(sim.plan(), TlsAction::Keep);
    sim.roll_out();
    assert_eq!(sim.plan(), TlsAction::Keep);
    assert_eq!(sim.state().phase(), RotationPhase::Steady);
    assert_eq!(sim.bundle_fingerprints(), [new_ca.as_str()]);

    // Past the old CA's end, life goes on with the new one.
    sim.advance(days(70));
    assert_eq!(sim.settle(), ["IssueServer"]);
    assert_eq!(sim.ca_fingerprint(), new_ca);
}

#[test]
fn the_trust_check_catches_a_naive_rotation() {
    // Guard for the test above: switching CA in one step would break the
    // pods not restarted yet.
    let mut sim = Sim::new();
    sim.settle();
    sim.check_trust = false;
    let ca = issue_ca("prod", sim.now, sim.policy.ca_validity).unwrap();
    let server = issue_server(&ca, &sim.sans, sim.now, sim.policy.server_validity).unwrap();
    sim.write(&Writes {
        ca_secret: Some(CaSecretData {
            current: ca.clone(),
            next: None,
        }),
        server_secret: Some(ServerSecretData {
            server,
            ca_bundle_pem: ca.cert_pem.clone(),
        }),
    });
    assert!(!sim.distrust().is_empty());
}

#[test]
fn a_controller_killed_between_the_two_writes_of_a_rotation_step_resumes() {
    let mut sim = Sim::new();
    sim.settle();
    // Straight to the CA window; the server certificate expired meanwhile.
    sim.check_trust = false;
    sim.advance(days(1080 - 59));
    while !matches!(sim.plan(), TlsAction::StartCaRotation { .. }) {
        sim.step();
        sim.roll_out();
    }
    sim.check_trust = true;

    // Killed after storing the next CA, before publishing it.
    assert_kind(&sim.step_and_crash(), "StartCaRotation");
    let state = sim.state();
    assert_eq!(state.phase(), RotationPhase::Introducing);
    let next = state.next_ca.unwrap().fingerprint_sha256;
    assert_eq!(
        sim.step(),
        TlsAction::PublishTrustBundle {
            adding: vec![next.clone()]
        }
    );
    assert_eq!(
        sim.step(),
        TlsAction::AwaitRollout {
            then: Deferred::FinishCaRotation
        }
    );
    sim.roll_out();

    // Killed after promoting the next CA, before it signed the server
    // certificate.
    assert_kind(&sim.step_and_crash(), "FinishCaRotation");
    assert_eq!(sim.state().phase(), RotationPhase::Switching);
    assert_eq!(
        sim.step(),
        TlsAction::IssueServer {
            reason: ServerReason::NotSignedByCurrentCa
        }
    );
    sim.roll_out();
    assert_eq!(sim.settle(), ["DropOldCa"]);
    assert_eq!(sim.bundle_fingerprints(), [next]);
}

#[test]
fn a_lost_ca_is_replaced_without_an_outage_while_the_server_certificate_lasts() {
    let mut sim = Sim::new();
    sim.settle();
    let old_ca = sim.ca_fingerprint();
    sim.advance(days(10));
    sim.stored.ca = None; // Someone deleted the CA Secret.
    assert_eq!(sim.state().phase(), RotationPhase::NoCa);
    assert_kind(&sim.step(), "IssueCa");
    let new_ca = sim.ca_fingerprint();
    assert_eq!(sim.state().phase(), RotationPhase::Switching);
    assert_eq!(
        sim.step(),
        TlsAction::PublishTrustBundle {
            adding: vec![new_ca.clone()]
        }
    );
    assert_eq!(sim.bundle_fingerprints(), [new_ca.clone(), old_ca]);
    assert_eq!(
        sim.step(),
        TlsAction::AwaitRollout {
            then: Deferred::IssueServer(ServerReason::NotSignedByCurrentCa)
        }
    );
    sim.roll_out();
    assert_eq!(sim.settle(), ["IssueServer", "DropOldCa"]);
    assert_eq!(sim.bundle_fingerprints(), [new_ca]);
}

#[test]
fn an_expired_ca_is_replaced_at_once() {
    // The controller was away for longer than the CA lived: nothing left
    // to keep working, so no waiting for rollouts.
    let mut sim = Sim::new();
    sim.settle();
    sim.check_trust = false;
    sim.advance(days(1081));
    let taken = sim.settle();
    assert_eq!(taken, ["IssueCa", "IssueServer", "DropOldCa"]);
    sim.check_trust = true;
    sim.check();
}

#[test]
fn sans_added_to_the_spec_reissue_the_server_certificate() {
    let mut sim = Sim::new();
    sim.settle();
    sim.sans.push("bao.example.org".to_owned());
    sim.sans.push("10.0.0.7".to_owned());
    let action = sim.step();
    assert_eq!(
        action,
        TlsAction::IssueServer {
            reason: ServerReason::SansChanged {
                missing: vec!["bao.example.org".to_owned(), "10.0.0.7".to_owned()],
                extra: vec![],
            }
        }
    );
    let server = sim.state().server.unwrap();
    assert!(server.sans.contains(&"10.0.0.7".to_owned()));
    verify_as_server(
        &sim.stored.ca.as_ref().unwrap().cert_pem,
        &sim.stored.server.as_ref().unwrap().cert_pem,
        "bao.example.org",
        sim.now,
    )
    .unwrap();
    assert_eq!(sim.plan(), TlsAction::Keep);
}

#[test]
fn an_invalid_desired_san_fails_the_issue_with_the_fix() {
    let mut sim = Sim::new();
    sim.settle();
    sim.sans.push("not a name".to_owned());
    let action = sim.plan();
    assert_kind(&action, "IssueServer");
    let error = perform(&action, &sim.stored, &sim.sans, sim.now, &sim.policy)
        .unwrap_err()
        .to_string();
    assert!(error.contains("\"not a name\""), "{error}");
    assert!(error.contains("spec.tls.extraSANs"), "{error}");
}
