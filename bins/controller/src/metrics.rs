//! Prometheus metrics served on `/metrics`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a per-cluster series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub name: String,
}

/// Labels of a per-cluster error series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub namespace: String,
    pub name: String,
    /// The error's reason, as in the Event and the Degraded condition.
    pub reason: String,
}

/// Every metric the controller exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub ready_replicas: Family<ClusterLabels, Gauge>,
    pub sealed_nodes: Family<ClusterLabels, Gauge>,
    /// Seconds since the epoch at which the server certificate expires.
    pub certificate_expiry: Family<ClusterLabels, Gauge<f64, AtomicU64>>,
    pub api_writes: Counter,
    /// GET and LIST requests sent to the Kubernetes API (watches excluded).
    pub api_reads: Counter,
    /// When the last backup succeeded (Unix time).
    pub backup_last_success: Family<ClusterLabels, Gauge<f64, AtomicU64>>,
    /// How long the last successful backup Job ran.
    pub backup_duration: Family<ClusterLabels, Gauge<f64, AtomicU64>>,
    /// Size of the last successful backup.
    pub backup_size: Family<ClusterLabels, Gauge>,
    /// Failed backup attempts.
    pub backup_failures: Family<ClusterLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("openbao_operator");
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let ready_replicas = Family::<ClusterLabels, Gauge>::default();
        let sealed_nodes = Family::<ClusterLabels, Gauge>::default();
        let certificate_expiry = Family::<ClusterLabels, Gauge<f64, AtomicU64>>::default();
        let api_writes = Counter::default();
        let api_reads = Counter::default();
        let backup_last_success = Family::<ClusterLabels, Gauge<f64, AtomicU64>>::default();
        let backup_duration = Family::<ClusterLabels, Gauge<f64, AtomicU64>>::default();
        let backup_size = Family::<ClusterLabels, Gauge>::default();
        let backup_failures = Family::<ClusterLabels, Counter>::default();
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the last backup of the cluster succeeded (Unix time)",
            backup_last_success.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "How long the last successful backup Job ran",
            backup_duration.clone(),
        );
        registry.register(
            "backup_size_bytes",
            "Size of the last successful backup's snapshot",
            backup_size.clone(),
        );
        registry.register(
            "backup_failures",
            "Backup attempts that failed",
            backup_failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile of an OpenBaoCluster took",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error, by the error's reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "ready_replicas",
            "OpenBao pods that are initialized, unsealed and ready",
            ready_replicas.clone(),
        );
        registry.register(
            "sealed_nodes",
            "OpenBao pods that answer sealed",
            sealed_nodes.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the server certificate the pods use expires (Unix time)",
            certificate_expiry.clone(),
        );
        registry.register(
            "api_writes",
            "Writes the controller sent to the Kubernetes API",
            api_writes.clone(),
        );
        registry.register(
            "api_reads",
            "GET and LIST requests the controller sent to the Kubernetes API (watches excluded)",
            api_reads.clone(),
        );
        Self {
            registry,
            reconcile_duration,
            reconcile_errors,
            ready_replicas,
            sealed_nodes,
            certificate_expiry,
            api_writes,
            api_reads,
            backup_last_success,
            backup_duration,
            backup_size,
            backup_failures,
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn observe_reconcile(&self, took: Duration) {
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Drops a deleted cluster's series, with its error series of `reasons`.
    pub fn forget(&self, labels: &ClusterLabels, reasons: &[&str]) {
        for reason in reasons {
            self.reconcile_errors.remove(&ErrorLabels {
                namespace: labels.namespace.clone(),
                name: labels.name.clone(),
                reason: (*reason).to_owned(),
            });
        }
        self.ready_replicas.remove(labels);
        self.sealed_nodes.remove(labels);
        self.certificate_expiry.remove(labels);
        self.backup_last_success.remove(labels);
        self.backup_duration.remove(labels);
        self.backup_size.remove(labels);
        self.backup_failures.remove(labels);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
