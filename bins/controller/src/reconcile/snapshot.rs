//! Types every reconcile step shares: the snapshot the dereference step
//! reads once, and what the steps hand on (key material, the applied
//! StatefulSet). Kept apart so the steps import this module, never each
//! other.

use std::sync::Arc;

use lifecycle_types::OpenBaoRestore;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use lifecycle_types::names;
use openbao_client::raft::{AutopilotConfig, Membership};

use crate::status::{PodView, TlsView};
use crate::stores::Known;

/// Everything one reconcile reads, taken once at its start.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: String,
    pub namespace: String,
    pub objects: KnownObjects,
    /// The StatefulSet as cached (pod template stripped).
    pub statefulset: Option<Arc<StatefulSet>>,
    /// The cluster's pods as cached (specs stripped), by name.
    pub pods: Vec<Arc<Pod>>,
    /// Pods of the cluster's Jobs (backups), as cached.
    pub job_pods: Vec<Arc<Pod>>,
    /// The Job named by `status.operation`, as cached (template stripped).
    pub operation_job: Option<Arc<Job>>,
    /// OpenBaoRestores that target this cluster, as cached.
    pub restores: Vec<Arc<OpenBaoRestore>>,
    pub secrets: Secrets,
    pub openbao: OpenBaoView,
}

/// Existence and version of every object the controller applies.
#[derive(Debug, Clone)]
pub struct KnownObjects {
    pub service_account: Known,
    pub role_binding: Known,
    pub config_map: Known,
    pub self_init_config_map: Known,
    pub headless_service: Known,
    pub active_service: Known,
    pub pod_disruption_budget: Known,
    pub network_policy: Known,
    pub ingress: Known,
    pub statefulset: Known,
    pub backup_service_account: Known,
    pub restore_service_account: Known,
    pub upgrade_service_account: Known,
    /// The Job named by `status.operation`.
    pub operation_job: Known,
}

/// The Secrets a reconcile reads.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The static seal key's Secret (metadata: its key id annotation).
    pub unseal: Option<Arc<PartialObjectMeta<Secret>>>,
    pub tls_ca: Option<Arc<Secret>>,
    pub tls_server: Option<Arc<Secret>>,
    /// The user's certificate Secret (External TLS).
    pub external_tls: Option<Arc<Secret>>,
    pub root_token_stored: bool,
}

/// What OpenBao said, through one connection per cluster.
#[derive(Debug, Clone, Default)]
pub struct OpenBaoView {
    /// One entry per ordinal up to `max(spec.replicas, StatefulSet replicas)`.
    pub pods: Vec<PodView>,
    pub membership: Option<Membership>,
    /// Why Raft state could not be read with the controller's login: the
    /// Degraded reason and message.
    pub membership_error: Option<(&'static str, String)>,
    pub autopilot: Option<AutopilotConfig>,
    /// Running pods that did not answer, and why (for the
    /// unreachable error).
    pub unanswered: Vec<(String, String)>,
}

/// Key material the rest of the reconcile needs.
#[derive(Debug, Clone)]
pub struct Material {
    /// Id of the static seal key (`""` for other seals).
    pub static_key_id: String,
    /// Changes whenever the pods' TLS files change (rolls the pods).
    pub tls_hash: String,
    pub tls: TlsView,
    /// Unix time at which the server certificate expires.
    pub certificate_expiry: Option<i64>,
}

/// The StatefulSet after the apply step.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Why the requested exposure could not be applied (Gateway API CRDs
    /// missing), for the Degraded condition.
    pub exposure_problem: Option<String>,
    /// `status.updateRevision`: the revision a pod must run to be current.
    pub update_revision: Option<String>,
    /// Pods the StatefulSet runs now; may exceed `spec.replicas` while
    /// scaled-away peers are still being removed from Raft.
    pub replicas: i32,
}

impl Snapshot {
    /// What became of the Job that holds `lock` (see [`super::backup::outcome`]).
    pub fn operation_outcome(
        &self,
        lock: &lifecycle_types::backup::OperationLock,
        now: k8s_openapi::jiff::Timestamp,
    ) -> super::backup::JobOutcome {
        super::backup::outcome(
            lock,
            self.operation_job.as_deref(),
            &self.objects.operation_job,
            &self.job_pods,
            now,
        )
    }

    /// The pod of that name, if cached.
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.name_any() == name)
            .map(|p| &**p)
    }

    /// The live StatefulSet's replicas (0 when it does not exist).
    pub fn live_replicas(&self) -> i32 {
        self.statefulset
            .as_ref()
            .and_then(|s| s.spec.replicas)
            .unwrap_or(0)
    }

    pub fn statefulset_name(&self) -> String {
        names::statefulset(&self.name)
    }
}

/// The pod was created from the StatefulSet revision `revision`.
pub fn runs_revision(pod: &Pod, revision: &str) -> bool {
    pod.labels()
        .get("controller-revision-hash")
        .map(String::as_str)
        == Some(revision)
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The OpenBao container's status.
pub fn container(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == names::CONTAINER))
}

pub fn restarts(pod: &Pod) -> i32 {
    container(pod).map(|c| c.restart_count).unwrap_or(0)
}

/// Why the OpenBao container last stopped, as the kubelet reported it.
pub fn last_termination(pod: &Pod) -> Option<String> {
    let terminated = container(pod)?.last_state.as_ref()?.terminated.as_ref()?;
    let mut text = format!("exit code {}", terminated.exit_code);
    if let Some(reason) = &terminated.reason {
        text.push_str(&format!(", {reason}"));
    }
    if let Some(message) = terminated.message.as_deref().filter(|m| !m.is_empty()) {
        let message: String = message.chars().take(300).collect();
        text.push_str(&format!(": {}", message.trim()));
    }
    Some(text)
}

/// Seconds the OpenBao container has been running (0 when unknown).
pub fn running_for(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> i64 {
    container(pod)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref())
        .map(|t| now.as_second() - t.0.as_second())
        .unwrap_or(0)
}
