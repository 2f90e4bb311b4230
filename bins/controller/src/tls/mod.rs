//! Operator-managed TLS: the cluster's CA, the server certificate every pod
//! presents, its renewal, and rotation of the CA itself without an outage.
//!
//! Everything here is pure except key generation inside the `issue_*`
//! functions: the clock is an argument (`now`), and [`plan`] decides from
//! what the controller read from two Secrets, nothing else.
//!
//! # The two Secrets
//!
//! | Secret | Field | Holds |
//! |---|---|---|
//! | `<cluster>-tls-ca` | `tls.crt`, `tls.key` | the CA that signs server certificates ("current") |
//! | | `next.crt`, `next.key` | the CA being rolled in, only during a rotation |
//! | `<cluster>-tls-server` | `tls.crt`, `tls.key` | the server certificate (every pod, Service and exposure name) |
//! | | `ca.crt` | the trust bundle: the CAs the pods (and the Jobs) trust |
//!
//! A controller cycle is: read both Secrets ([`StoredTls::from_secrets`]),
//! parse them ([`TlsState::read`], with `bundle_rolled_out` = every OpenBao
//! pod runs with the server Secret exactly as it is now), decide ([`plan`]),
//! then carry the decision out ([`perform`]) and write the Secrets it
//! returns, the CA Secret before the server Secret.
//!
//! # Why the new CA is trusted before it signs
//!
//! A pod trusts the CAs of the `ca.crt` it was started with, and the pods
//! talk to each other (Raft, request forwarding, joins) with TLS. Pods pick
//! up a changed Secret only when they restart, one at a time. If a new CA
//! signed the server certificate straight away, every restarted pod would
//! present a certificate that the pods not yet restarted do not trust: they
//! could no longer reach it, and with a second pod restarted the cluster
//! loses its quorum. So a rotation takes three rollouts:
//!
//! 1. the new CA joins the bundle while the old CA still signs: every pod,
//!    restarted or not, trusts the certificates every other pod presents;
//! 2. once every pod trusts both CAs, the new CA signs the server
//!    certificate: old and new certificates are both trusted everywhere;
//! 3. once every pod presents the new certificate, the old CA leaves the
//!    bundle.
//!
//! # Phases, derived from the Secrets alone
//!
//! Nothing about a rotation is stored besides the Secrets' contents; the
//! [`RotationPhase`] follows from which CAs the CA Secret and the bundle
//! hold and which CA signed the server certificate, so a controller killed
//! between any two writes resumes where it stopped. With `A` the old CA and
//! `B` the new one:
//!
//! | Phase | CA Secret | bundle | server signed by | next action |
//! |---|---|---|---|---|
//! | `Steady` | `A` | `A` | `A` | `Keep`; `StartCaRotation` once `A` is within its window |
//! | `Introducing` | `A`, next `B` | `A` (killed between the two writes) | `A` | `PublishTrustBundle` |
//! | `Introducing` | `A`, next `B` | `A B` | `A` | `AwaitRollout`, then `FinishCaRotation` |
//! | `Switching` | `B` (killed between the two writes) | `B A` | `A` | `IssueServer` (signed by `B`) |
//! | `Retiring` | `B` | `B A` | `B` | `AwaitRollout`, then `DropOldCa` |
//! | `Steady` | `B` | `B` | `B` | `Keep` |
//!
//! `StartCaRotation` writes the CA Secret (adding `next`) and then the
//! bundle; `FinishCaRotation` writes the CA Secret (`next` becomes current)
//! and then the server certificate it signed. Each second write is exactly
//! what [`plan`] asks for when only the first one happened, and writing the
//! CA Secret first means a generated key is stored before anything depends
//! on it.
//!
//! The same rules recover from a lost or replaced CA without an outage as
//! long as the old server certificate is still valid: the new CA is
//! published beside the old one, signs after the rollout, and the old one
//! is dropped after the next. When the CA or the server certificate has
//! already expired there is nothing left to keep working, and the operator
//! replaces it at once.
//!
//! # Lifetimes
//!
//! [`TlsPolicy::from_rotation_period`] turns `spec.tls.rotationPeriod`
//! (`p`, default `720h`) into: server certificates valid `3p`, renewed when
//! less than `p` remains; CAs valid `36p`, rotated when less than `2p`
//! remains. A server certificate never outlives the CA that signed it, and
//! the CA rotation starts early enough that its three rollouts have `p` to
//! spare before the last server certificate of the old CA would need
//! renewing.

mod error;
mod inspect;
mod issue;
mod plan;
mod secrets;

#[cfg(test)]
mod rotation_tests;

#[cfg(test)]
pub(crate) fn days(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n * 24 * 3600)
}

pub use error::TlsError;
pub use inspect::{CertInfo, inspect, inspect_bundle};
pub use issue::{CLOCK_SKEW, CaMaterial, ServerMaterial, issue_ca, issue_server};
pub use plan::{
    CaReason, Deferred, RotationPhase, ServerReason, TlsAction, TlsPolicy, TlsState, plan,
};
pub use secrets::{
    CaSecretData, NEXT_CERT, NEXT_KEY, ServerSecretData, StoredTls, Writes, perform,
};
