//! The controller running in the test process against a real API server.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use controller::context::{Context, Settings};
use controller::metrics::Metrics;
use controller::openbao::Connector;
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
        test_support::install_crypto_provider();
        test_support::init_tracing();
        plane.allow_anonymous_issuer_discovery().await.unwrap();
        let client = plane.client().await.unwrap();
        let token_dir = tempfile::tempdir().unwrap();
        let token_file = token_dir.path().join("token");
        let token = plane
            .service_account_token(
                OPERATOR_NAMESPACE,
                OPERATOR_ACCOUNT,
                "openbao-internal",
                Duration::from_secs(3600),
            )
            .await
            .unwrap();
        std::fs::write(&token_file, token).unwrap();
        let settings = Settings {
            operator_namespace: OPERATOR_NAMESPACE.into(),
            service_account_issuer: plane.issuer().into(),
            kube_ca_pem: plane.ca_pem.clone(),
            // The API server's issuer is a loopback URL the pods cannot
            // reach; its keys are served to them through the node agent's
            // proxy under the in-cluster name.
            jwks_url: Some("https://kubernetes.default.svc/openid/v1/jwks".into()),
            openbao_token_file: token_file.clone(),
            // Short, so the tests see converged reconciles repeat quickly.
            resync: Duration::from_secs(3),
            progress_interval: Duration::from_secs(2),
        };
        let ctx = Arc::new(Context::new(
            client,
            settings,
            Connector::new(token_file.clone(), Some(resolver)),
            Metrics::new(),
        ));
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
