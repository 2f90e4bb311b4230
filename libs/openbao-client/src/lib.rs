//! A typed async client for the OpenBao HTTP API, used by every binary of
//! the operator. It knows nothing of Kubernetes.
//!
//! - [`Client`]: one address, TLS settings, optional token; retries
//!   idempotent calls on transient failures. It never follows a redirect
//!   (the token would go to whatever host the `Location` names): a
//!   standby's 307 is an [`Error::Standby`], and a call it redirected, which
//!   the server did not act on, is tried again. A client made for an
//!   `https://` address never moves to an `http://` one, including the
//!   leader address `sys/leader` reports ([`Leader::leader_url`]).
//! - Node status and operations: [`Client::health`], [`Client::seal_status`],
//!   [`Client::leader`], [`Client::init`], [`Client::step_down`].
//! - Raft: configuration, join, remove-peer, promote, demote, autopilot, and
//!   [`raft::Membership`], the view to judge membership by.
//! - Snapshots as streams: [`Client::snapshot`], [`Client::snapshot_force`].
//! - Auth: [`auth::Login`] (JWT, AppRole, Kubernetes, certificate) and
//!   [`TokenKeeper`], which renews and logs in again as needed.
//!
//! Tokens and credentials never appear in `Debug` output, logs or errors.

pub mod auth;
pub mod client;
pub mod error;
pub mod raft;
pub mod snapshot;
pub mod sys;
pub mod token_keeper;
pub mod transit;

pub use auth::{AuthInfo, Credential, Login, SecretIdSource, TokenInfo};
pub use client::{Client, ClientConfig, RetryPolicy, Token};
pub use error::{Error, Result};
pub use sys::{Health, HealthState, InitRequest, Leader, SealStatus};
pub use token_keeper::TokenKeeper;

/// Audience of the projected ServiceAccount tokens every operator identity
/// presents to OpenBao.
pub const DEFAULT_JWT_AUDIENCE: &str = "openbao-internal";
