//! What every reconcile shares: the API client, settings read at start,
//! OpenBao connections and cached logins, metrics and the event recorder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::apply::Applier;
use crate::metrics::Metrics;
use crate::openbao::Connector;

/// Settings of one controller process.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace the operator runs in; the subject of its JWT role.
    pub operator_namespace: String,
    /// Issuer of the API server's ServiceAccount tokens (OIDC discovery).
    pub service_account_issuer: String,
    /// The API server's JWKS address as the OpenBao pods reach it, when its
    /// issuer URL is not reachable from them (see `render::Inputs::jwks_url`).
    pub jwks_url: Option<String>,
    /// PEM of the API server's CA, given to OpenBao for OIDC discovery when
    /// the operator bootstraps a Development cluster over the API.
    pub kube_ca_pem: String,
    /// The projected token (audience `openbao-internal`) the controller
    /// logs in to OpenBao with; re-read at every login.
    pub openbao_token_file: PathBuf,
    /// How often a converged cluster is looked at again (health, Raft).
    pub resync: Duration,
    /// How soon a cluster in transition is looked at again.
    pub progress_interval: Duration,
}

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    pub applier: Applier,
    pub settings: Arc<Settings>,
    pub openbao: Connector,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: kube::Client,
        settings: Settings,
        openbao: Connector,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: crate::apply::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            applier: Applier::new(client),
            settings: Arc::new(settings),
            openbao,
            metrics,
        }
    }

    pub fn client(&self) -> &kube::Client {
        self.applier.client()
    }
}
