//! The controller running in the test process against a real API server.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use controller::context::{Context, Settings};
use controller::metrics::Metrics;
use controller::openbao::{Connector, Credentials};
use kube::Api;
use kube::api::{Patch, PatchParams};
use lifecycle_types::OpenBaoCluster;
use serde_json::{Value, json};
use test_support::ControlPlane;
use tokio::task::JoinHandle;

/// Namespace the operator "runs" in (its ServiceAccount lives there).
pub const OPERATOR_NAMESPACE: &str = "openbao-operator-system";
pub const OPERATOR_ACCOUNT: &str = "openbao-operator";

/// Resolves nothing: without pods, no name may reach any DNS server.
#[derive(Debug)]
pub struct NoNames;

impl reqwest::dns::Resolve for NoNames {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move { Err(format!("{name}: no DNS in this test (no pods run)").into()) })
    }
}

/// A running in-process controller; stops on drop.
pub struct Running {
    pub ctx: Arc<Context>,
    task: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    _token_dir: tempfile::TempDir,
    pub token_file: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

impl Running {
    /// Starts the controller with `resolver` for OpenBao pod names.
    pub async fn start(plane: &ControlPlane, resolver: Arc<dyn reqwest::dns::Resolve>) -> Running {
        Self::start_with(plane, resolver, |_| {}).await
    }

    /// [`Self::start`] with settings changed by `tune`.
    pub async fn start_with(
        plane: &ControlPlane,
        resolver: Arc<dyn reqwest::dns::Resolve>,
        tune: impl FnOnce(&mut Settings),
    ) -> Running {
        test_support::install_crypto_provider();
        test_support::init_tracing();
        plane.allow_anonymous_issuer_discovery().await.unwrap();
        let token_dir = tempfile::tempdir().unwrap();
        let token_file = legacy_token_file(plane, token_dir.path()).await;
        let mut settings = Settings::new(
            OPERATOR_NAMESPACE.into(),
            plane.issuer().into(),
            plane.ca_pem.clone(),
            token_file.clone(),
        );
        // The API server's issuer is a loopback URL the pods cannot
        // reach; its keys are served to them through the node agent's
        // proxy under the in-cluster name.
        settings.jwks_url = Some("https://kubernetes.default.svc/openid/v1/jwks".into());
        // Short, so the tests see converged reconciles repeat quickly.
        settings.resync = Duration::from_secs(3);
        tune(&mut settings);
        // The controller acts as its ServiceAccount with the shipped RBAC
        // (the admin impersonates it), so every test proves the install's
        // least-privilege role is enough.
        if settings.scope == controller::stores::Scope::Tenants {
            plane.install_operator_rbac_multi_tenant().await.unwrap();
        } else {
            plane.install_operator_rbac().await.unwrap();
        }
        let mut config = plane.config().await.unwrap();
        config.auth_info.impersonate = Some(format!(
            "system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
        ));
        config.auth_info.impersonate_groups = Some(vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{OPERATOR_NAMESPACE}"),
            "system:authenticated".into(),
        ]);
        let ctx = Arc::new(
            Context::new(
                config,
                settings,
                Connector::new(
                    Credentials::new(
                        plane.client().await.unwrap(),
                        OPERATOR_NAMESPACE,
                        OPERATOR_ACCOUNT,
                        token_file.clone(),
                    ),
                    Some(resolver),
                ),
                Metrics::new(),
            )
            .unwrap(),
        );
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(controller::run::run(ctx.clone(), async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Running {
            ctx,
            task,
            stop,
            _token_dir: token_dir,
            token_file,
        }
    }
}

/// The operator's projected token as its Deployment mounts it (audience
/// `openbao-internal`, used only to migrate older clusters), written to
/// `dir/token`.
pub async fn legacy_token_file(plane: &ControlPlane, dir: &std::path::Path) -> PathBuf {
    let token = plane
        .service_account_token(
            OPERATOR_NAMESPACE,
            OPERATOR_ACCOUNT,
            "openbao-internal",
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let file = dir.join("token");
    std::fs::write(&file, token).unwrap();
    file
}

/// Creates (or updates) an OpenBaoCluster from a JSON spec.
pub async fn apply_cluster(client: &kube::Client, namespace: &str, name: &str, spec: Value) {
    let api: Api<OpenBaoCluster> = Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(json!({
            "apiVersion": "openbao.org/v1alpha1",
            "kind": "OpenBaoCluster",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        })),
    )
    .await
    .unwrap();
}

/// Creates a namespace (idempotent).
pub async fn namespace(client: &kube::Client, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::apply("test"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})),
    )
    .await
    .unwrap();
}

/// The cluster's condition of `type_` as (status, reason).
pub fn condition(cluster: &OpenBaoCluster, type_: &str) -> Option<(String, String)> {
    let status = cluster.status.as_ref()?;
    lifecycle_types::conditions::find(&status.conditions, type_)
        .map(|c| (format!("{:?}", c.status), c.reason.clone()))
}

/// Reconciles counted in a `/metrics` text.
pub fn reconciles_in(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with("openbao_operator_reconcile_duration_seconds_count "))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}
