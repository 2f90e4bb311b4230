//! Where OpenBao backups live and what makes one trustworthy.
//!
//! A backup is two objects under
//! `<prefix>/<namespace>/<cluster>/`: the snapshot
//! `<UTC timestamp>-<id>.snap` and, written only after the snapshot upload
//! completed, its manifest `<UTC timestamp>-<id>.json` (size, SHA-256,
//! versions, Raft position). A snapshot without a manifest never counts as
//! a backup: restore refuses it and retention treats it as debris.

pub mod layout;
pub mod manifest;
pub mod meta;
pub mod retention;
pub mod store;
pub mod upload;
pub mod verify;

pub use layout::BackupName;
pub use manifest::Manifest;
pub use store::{Destination, StoreError};
