//! Connections to a cluster's OpenBao pods, and the controller's own login.
//!
//! Pods are dialled by their stable DNS names through the headless Service
//! and verified against the cluster's CA. The controller logs in with its
//! JWT role (its projected token, audience `openbao-internal`); the token
//! is cached per cluster and replaced before it expires or when OpenBao
//! refuses it. Health is asked without a token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifecycle_types::identities::{Identity, jwt_role};
use lifecycle_types::names;
use openbao_client::{Client, ClientConfig, Credential, Login, RetryPolicy};

use crate::render::API_PORT;

/// A login kept until a third of its lease is left.
struct CachedLogin {
    client: Client,
    refresh_at: Instant,
}

/// Builds clients for pods and keeps the controller's logins.
#[derive(Clone)]
pub struct Connector {
    token_file: PathBuf,
    resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    logins: Arc<Mutex<HashMap<String, CachedLogin>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// Where one cluster's pods are and how to trust them.
#[derive(Debug, Clone)]
pub struct ClusterAddress {
    pub name: String,
    pub namespace: String,
    /// `https` or `http` (never in practice: TLS is always on).
    pub scheme: &'static str,
    /// The CA bundle the pods' certificates chain to; `None` trusts the
    /// system roots (ACME).
    pub ca_pem: Option<String>,
}

impl ClusterAddress {
    /// `https://<pod>.<headless>.<namespace>.svc:8200`.
    pub fn pod_url(&self, pod: &str) -> String {
        format!(
            "{}://{pod}.{}.{}.svc:{API_PORT}",
            self.scheme,
            names::headless_service(&self.name),
            self.namespace
        )
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl Connector {
    pub fn new(token_file: PathBuf, resolver: Option<Arc<dyn reqwest::dns::Resolve>>) -> Self {
        Self {
            token_file,
            resolver,
            logins: Arc::default(),
            timeout: Duration::from_secs(5),
        }
    }

    /// An unauthenticated client for one pod (health, init).
    pub fn pod(&self, cluster: &ClusterAddress, pod: &str) -> openbao_client::Result<Client> {
        let mut config = ClientConfig::new(&cluster.pod_url(pod))?
            .with_timeout(self.timeout)
            // The reconcile loop is the retry: one attempt per call keeps a
            // reconcile short when a pod is down.
            .with_retry(RetryPolicy::none());
        config.connect_timeout = Duration::from_secs(2);
        if let Some(pem) = &cluster.ca_pem {
            config = config.with_ca_pem(pem.clone());
        }
        if let Some(resolver) = &self.resolver {
            config = config.with_dns_resolver(resolver.clone());
        }
        Client::new(config)
    }

    /// A client for `pod` carrying the controller's token, logging in with
    /// the controller's JWT role when no fresh login is cached.
    pub async fn logged_in(
        &self,
        cluster: &ClusterAddress,
        pod: &str,
    ) -> openbao_client::Result<Client> {
        let key = cluster.key();
        let cached = {
            let logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
            logins
                .get(&key)
                .filter(|l| Instant::now() < l.refresh_at)
                .and_then(|l| l.client.token().cloned())
        };
        let target = self.pod(cluster, pod)?;
        if let Some(token) = cached {
            return Ok(target.with_token(token));
        }
        let role = jwt_role(Identity::Controller)
            .ok()
            .flatten()
            .map(|r| r.name)
            .unwrap_or_else(|| "openbao-operator".to_owned());
        let auth = target
            .login(&Login::jwt(role, Credential::File(self.token_file.clone())))
            .await?;
        let client = target.with_token(auth.token.clone());
        let lease = auth.lease_duration.max(Duration::from_secs(30));
        self.logins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                CachedLogin {
                    client: client.clone(),
                    refresh_at: Instant::now() + lease * 2 / 3,
                },
            );
        Ok(client)
    }

    /// Drops the cached login (after a 403, or when the cluster is gone).
    pub fn forget(&self, cluster: &ClusterAddress) {
        self.logins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&cluster.key());
    }
}
