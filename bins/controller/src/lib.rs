//! The controller: pure renderers and decisions, and the thin async shell
//! that watches `OpenBaoCluster` objects, applies what the renderers say,
//! talks to OpenBao and writes status.

pub mod admission;
pub mod api_client;
pub mod apply;
pub mod clusters;
pub mod context;
pub mod dns;
pub mod metrics;
pub mod openbao;
pub mod reconcile;
pub mod render;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod status;
pub mod stores;
pub mod tenants;
pub mod tls;
