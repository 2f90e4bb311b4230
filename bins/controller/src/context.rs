//! What every reconcile shares: the API client, settings read at start,
//! the watch caches, per-cluster state, metrics and the event recorder.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use lifecycle_types::{OpenBaoRestore, OpenBaoTenant, labels};

use crate::api_client::ApiCounters;
use crate::apply::Applier;
use crate::clusters::Clusters;
use crate::metrics::Metrics;
use crate::openbao::Connector;
use crate::stores::{self, Cache, Scope, Trigger};
use crate::tenants::Tenancy;

/// The controller's ServiceAccount unless `--service-account` says otherwise.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "openbao-operator";

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
    /// The controller's own ServiceAccount (in `operator_namespace`): it
    /// mints a token of it for each cluster, with that cluster's audience
    /// (see [`crate::openbao`]).
    pub service_account: String,
    /// The legacy projected token (audience `openbao-internal`), used only
    /// to move a cluster bootstrapped by an earlier release to its
    /// per-cluster audience; re-read at every use.
    pub openbao_token_file: PathBuf,
    /// How often a converged cluster is looked at again (health, Raft).
    pub resync: Duration,
    /// How soon a cluster in transition is looked at again; also the first
    /// retry delay after an error.
    pub progress_interval: Duration,
    /// The longest retry delay after repeated errors.
    pub max_backoff: Duration,
    /// Namespaces whose objects, pods and Secrets are watched.
    pub scope: Scope,
    /// How long answering pods may go without an active node before
    /// status reports it.
    pub stuck_after: Duration,
    /// How long a started pod may take to open its port before a silent
    /// OpenBao counts as an error.
    pub unreachable_grace: Duration,
    /// The image of backup Jobs, unless `spec.backup.image` names another.
    pub backup_image: String,
    /// The image of restore-drill Jobs, unless `spec.backup.drill.image` names another.
    pub restore_image: String,
    /// The image of upgrade step Jobs.
    pub upgrade_image: String,
}

/// The restore image this release ships (it also runs restore drills).
pub const DEFAULT_RESTORE_IMAGE: &str = concat!(
    "ghcr.io/openbao-operator/restore:",
    env!("CARGO_PKG_VERSION")
);

/// The upgrade image this release ships.
pub const DEFAULT_UPGRADE_IMAGE: &str = concat!(
    "ghcr.io/openbao-operator/upgrade:",
    env!("CARGO_PKG_VERSION")
);

/// The backup image this release ships (images/README.md).
pub const DEFAULT_BACKUP_IMAGE: &str = concat!(
    "ghcr.io/openbao-operator/backup:",
    env!("CARGO_PKG_VERSION")
);

impl Settings {
    /// Settings with the defaults for everything but what must be given.
    pub fn new(
        operator_namespace: String,
        service_account_issuer: String,
        kube_ca_pem: String,
        openbao_token_file: PathBuf,
    ) -> Self {
        Self {
            operator_namespace,
            service_account: DEFAULT_SERVICE_ACCOUNT.to_owned(),
            service_account_issuer,
            jwks_url: None,
            kube_ca_pem,
            openbao_token_file,
            resync: Duration::from_secs(60),
            progress_interval: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            scope: Scope::All,
            stuck_after: Duration::from_secs(180),
            unreachable_grace: Duration::from_secs(30),
            backup_image: DEFAULT_BACKUP_IMAGE.to_owned(),
            restore_image: DEFAULT_RESTORE_IMAGE.to_owned(),
            upgrade_image: DEFAULT_UPGRADE_IMAGE.to_owned(),
        }
    }
}

/// The watch caches of every kind a reconcile reads.
#[derive(Debug, Clone, Default)]
pub struct Caches {
    pub statefulsets: Cache<StatefulSet>,
    pub pods: Cache<Pod>,
    pub secrets: Cache<PartialObjectMeta<Secret>>,
    pub services: Cache<PartialObjectMeta<Service>>,
    pub config_maps: Cache<PartialObjectMeta<ConfigMap>>,
    pub service_accounts: Cache<PartialObjectMeta<ServiceAccount>>,
    pub role_bindings: Cache<PartialObjectMeta<RoleBinding>>,
    pub pod_disruption_budgets: Cache<PartialObjectMeta<PodDisruptionBudget>>,
    pub network_policies: Cache<PartialObjectMeta<NetworkPolicy>>,
    pub ingresses: Cache<PartialObjectMeta<Ingress>>,
    /// Backup Jobs, with their pod templates stripped.
    pub jobs: Cache<Job>,
    /// Every OpenBaoRestore in scope.
    pub restores: Cache<OpenBaoRestore>,
}

/// The watch streams behind one scope's share of [`Caches`], one per kind,
/// handed to that scope's controller.
#[allow(missing_debug_implementations)]
pub struct ScopeTriggers {
    pub statefulsets: Trigger<StatefulSet>,
    pub pods: Trigger<Pod>,
    pub secrets: Trigger<PartialObjectMeta<Secret>>,
    pub services: Trigger<PartialObjectMeta<Service>>,
    pub config_maps: Trigger<PartialObjectMeta<ConfigMap>>,
    pub service_accounts: Trigger<PartialObjectMeta<ServiceAccount>>,
    pub role_bindings: Trigger<PartialObjectMeta<RoleBinding>>,
    pub pod_disruption_budgets: Trigger<PartialObjectMeta<PodDisruptionBudget>>,
    pub network_policies: Trigger<PartialObjectMeta<NetworkPolicy>>,
    pub ingresses: Trigger<PartialObjectMeta<Ingress>>,
    pub jobs: Trigger<Job>,
    pub restores: Trigger<OpenBaoRestore>,
    /// The multi-tenant install's tenants (see [`crate::tenants`]).
    pub tenants: Option<Trigger<OpenBaoTenant>>,
}

impl Caches {
    /// The caches of every scope and each scope's triggers, in the order of
    /// [`Scope::keys`]. Nothing is watched until the triggers are polled.
    fn new(client: &kube::Client, scope: &Scope) -> (Self, Vec<ScopeTriggers>) {
        // Streaming lists: the initial state arrives object by object, so
        // no page of hundreds of full objects is ever held before the
        // caches strip them.
        let managed = watcher::Config::default()
            .streaming_lists()
            .labels(&format!(
                "{}={}",
                labels::APP_MANAGED_BY,
                labels::MANAGED_BY_OPERATOR
            ));
        let pods = watcher::Config::default()
            .streaming_lists()
            .labels(labels::CLUSTER);
        // Every Secret: a cluster also reads the user's (an External
        // certificate, the Transit token), which carry no label of ours.
        let all = watcher::Config::default().streaming_lists();
        let mut caches = Self::default();
        let c = &mut caches;
        let triggers = scope
            .keys()
            .iter()
            .map(|key| {
                let ns = key.as_deref();
                ScopeTriggers {
                    statefulsets: stores::statefulsets(&c.statefulsets, client, ns, &managed),
                    pods: stores::pods(&c.pods, client, ns, &pods),
                    // The multi-tenant install watches Secrets only in
                    // onboarded namespaces (Context::new wires them).
                    secrets: if *scope == Scope::Tenants {
                        futures::stream::empty().boxed()
                    } else {
                        stores::metadata(&c.secrets, client, ns, &all)
                    },
                    services: stores::metadata(&c.services, client, ns, &managed),
                    config_maps: stores::metadata(&c.config_maps, client, ns, &managed),
                    service_accounts: stores::metadata(&c.service_accounts, client, ns, &managed),
                    role_bindings: stores::metadata(&c.role_bindings, client, ns, &managed),
                    pod_disruption_budgets: stores::metadata(
                        &c.pod_disruption_budgets,
                        client,
                        ns,
                        &managed,
                    ),
                    network_policies: stores::metadata(&c.network_policies, client, ns, &managed),
                    ingresses: stores::metadata(&c.ingresses, client, ns, &managed),
                    jobs: stores::jobs(&c.jobs, client, ns, &managed),
                    restores: stores::restores(&c.restores, client, ns),
                    tenants: None,
                }
            })
            .collect();
        (caches, triggers)
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub applier: Applier,
    pub settings: Arc<Settings>,
    pub connector: Connector,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub caches: Caches,
    pub clusters: Clusters,
    pub api_counters: Arc<ApiCounters>,
    /// Set in the multi-tenant install only.
    pub tenancy: Option<Tenancy>,
    triggers: Mutex<Option<Vec<ScopeTriggers>>>,
    /// What the startup check found missing of the admission guardrails
    /// ([`crate::admission`]); `None` when they are in place.
    admission_gap: Mutex<Option<String>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose client counts its requests; its caches fill once
    /// [`crate::run::run`] polls their watches.
    pub fn new(
        config: kube::Config,
        settings: Settings,
        connector: Connector,
        metrics: Arc<Metrics>,
    ) -> kube::Result<Self> {
        let api_counters = Arc::new(ApiCounters::default());
        let client = crate::api_client::counted(config, api_counters.clone())?;
        let reporter = Reporter {
            controller: crate::apply::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let (caches, mut triggers) = Caches::new(&client, &settings.scope);
        let tenancy = (settings.scope == Scope::Tenants).then(|| {
            let (tenancy, tenants, secrets) = Tenancy::new(&client, &caches.secrets);
            if let Some(scope) = triggers.first_mut() {
                scope.tenants = Some(tenants);
                scope.secrets = secrets;
            }
            tenancy
        });
        Ok(Self {
            recorder: Recorder::new(client.clone(), reporter),
            applier: Applier::new(client),
            settings: Arc::new(settings),
            connector,
            metrics,
            caches,
            clusters: Clusters::default(),
            api_counters,
            tenancy,
            triggers: Mutex::new(Some(triggers)),
            admission_gap: Mutex::new(None),
        })
    }

    /// The watch streams per scope, once (the controllers that run them
    /// own them).
    pub fn take_triggers(&self) -> Option<Vec<ScopeTriggers>> {
        crate::clusters::lock(&self.triggers).take()
    }

    /// Checks the admission guardrails once (at startup).
    pub async fn check_admission_policies(&self) {
        let gap = crate::admission::check(self.client()).await;
        if let Some(gap) = &gap {
            tracing::warn!(%gap, "admission guardrails missing");
        }
        *crate::clusters::lock(&self.admission_gap) = gap;
    }

    /// What the startup check found missing, if anything.
    pub fn admission_gap(&self) -> Option<String> {
        crate::clusters::lock(&self.admission_gap).clone()
    }

    pub fn client(&self) -> &kube::Client {
        self.applier.client()
    }
}
