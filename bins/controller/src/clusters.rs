//! State the controller keeps per cluster between reconciles, dropped when
//! the cluster is deleted: its OpenBao connection and login, which objects
//! were last seen to hold the desired state, cached Secret data, the
//! failure count behind the back-off, and how long a pod has been stuck.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;

use crate::openbao::ClusterConnection;

/// Namespace and name of a cluster.
pub type ClusterKey = (String, String);

/// Everything kept for one cluster.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// The cluster's OpenBao connection (rebuilt when its CA changes).
    pub connection: Mutex<Option<Arc<ClusterConnection>>>,
    /// Per object (`Kind/name`): the resourceVersion at which it was last
    /// seen to hold the desired state, and a digest of that state.
    pub verified: Mutex<HashMap<String, (String, u64)>>,
    /// Secret data by name, with the resourceVersion it was read at.
    pub secrets: Mutex<HashMap<String, (String, Arc<Secret>)>>,
    /// Consecutive failed reconciles, for the back-off.
    pub failures: Mutex<u32>,
    /// Error reasons counted for this cluster (to drop their series).
    pub error_reasons: Mutex<BTreeSet<&'static str>>,
    /// Since when a running pod has answered without becoming active or
    /// standby, by pod name.
    pub stuck_since: Mutex<HashMap<String, Instant>>,
    /// Gateway routes of the kinds the spec does not ask for are known to
    /// be absent (checked once per process, then after each spec change).
    pub routes_clean_for_generation: Mutex<Option<i64>>,
    /// The first status (phase and observed generation) was written.
    pub first_status_written: Mutex<bool>,
}

/// Per-cluster state of every cluster this process reconciles.
#[derive(Debug, Default)]
pub struct Clusters {
    states: Mutex<HashMap<ClusterKey, Arc<ClusterState>>>,
}

impl Clusters {
    /// The state of `key`, created on first use.
    pub fn state(&self, key: &ClusterKey) -> Arc<ClusterState> {
        self.lock().entry(key.clone()).or_default().clone()
    }

    /// Drops one cluster's state; what it held is returned for cleanup.
    pub fn remove(&self, key: &ClusterKey) -> Option<Arc<ClusterState>> {
        self.lock().remove(key)
    }

    /// Keys of every cluster with state.
    pub fn keys(&self) -> Vec<ClusterKey> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClusterKey, Arc<ClusterState>>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Locks a per-cluster field; a panic elsewhere never poisons the loop.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The retry delay after `failures` consecutive failures: doubling from
/// `base`, capped at `cap`, with up to a fifth added as jitter so many
/// failing clusters do not retry in step.
pub fn backoff(failures: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let plain = base.saturating_mul(1u32 << exponent).min(cap);
    plain + plain.mul_f64(jitter.clamp(0.0, 1.0) / 5.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(300);
        let delays: Vec<u64> = (1..=10)
            .map(|n| backoff(n, base, cap, 0.0).as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(1, base, cap, 1.0), Duration::from_millis(2400));
        assert_eq!(backoff(u32::MAX, base, cap, 0.5), Duration::from_secs(330));
    }

    #[test]
    fn state_is_kept_until_removed() {
        let clusters = Clusters::default();
        let key = ("ns".to_owned(), "a".to_owned());
        *lock(&clusters.state(&key).failures) = 3;
        assert_eq!(*lock(&clusters.state(&key).failures), 3);
        assert!(clusters.remove(&key).is_some());
        assert_eq!(*lock(&clusters.state(&key).failures), 0);
    }
}
