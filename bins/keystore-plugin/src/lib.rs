//! OpenKCM keystore plugin keeping L1 keys in OpenBao Transit.
//!
//! - [`goplugin`]: the go-plugin gRPC server side (handshake, AutoMTLS,
//!   health, broker, controller, stdio), written here.
//! - [`keystore`]: every keystore operation over Transit, usable as a library
//!   ([`keystore::Keystore::key`] gives an [`keystore::L1Key`] that wraps,
//!   unwraps and re-wraps L2 key material without the L1 key leaving OpenBao).
//! - [`batch`]: concurrent L1 calls of one key share Transit `batch_input`
//!   requests.
//! - [`service`]: the tonic services (operations, bootstrap, config, and
//!   the `openbao.keystore.v1.L1KeyCrypto` extension).
//! - [`config`], [`mapping`]: pure parsing and mapping, unit-tested.
//! - [`hclog`]: logs as hclog JSON on stderr.

pub mod batch;
pub mod config;
pub mod goplugin;
pub mod hclog;
pub mod keystore;
pub mod mapping;
pub mod proto;
pub mod service;

/// The plugin type, which is also go-plugin's magic cookie.
pub const PLUGIN_TYPE: &str = "KeystoreInstanceKeyOperation";
