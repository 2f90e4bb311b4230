//! Watch caches of everything a reconcile reads from the API, so a steady
//! reconcile reads nothing: owned objects and Secrets as metadata only
//! (existence and resourceVersion), StatefulSets and pods with their large
//! specs stripped (a reconcile needs their status and labels, never their
//! pod templates). Managed fields are dropped from every cached object.
//!
//! With `--watch-namespaces`, each namespace has its own watch and cache: a
//! reflector store holds the result of one list, so one store cannot serve
//! two watches.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use lifecycle_types::OpenBaoRestore;
use serde::de::DeserializeOwned;

/// Which namespaces the controller watches: every one, a list, or (the
/// multi-tenant install) every one for its own kinds and only onboarded
/// namespaces (see [`crate::tenants`]) for Secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Namespaces(Vec<String>),
    Tenants,
}

impl Scope {
    /// `[]` means every namespace.
    pub fn from_list(namespaces: &[String]) -> Self {
        let list: Vec<String> = namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if list.is_empty() {
            Self::All
        } else {
            Self::Namespaces(list)
        }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Self::All | Self::Tenants => true,
            Self::Namespaces(list) => list.iter().any(|n| n == namespace),
        }
    }

    /// One key per watch: `None` for every namespace.
    pub fn keys(&self) -> Vec<Option<String>> {
        match self {
            Self::All | Self::Tenants => vec![None],
            Self::Namespaces(list) => list.iter().cloned().map(Some).collect(),
        }
    }
}

/// One cached kind, one store per watched namespace (or one for all).
/// Clones share their stores: a namespace's watch may start (an onboarded
/// tenant) or stop while the controller runs.
#[derive(Debug, Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    stores: Arc<RwLock<BTreeMap<Option<String>, Store<K>>>>,
}

/// What a cache knows of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// The cache has listed its namespace and the object is not there.
    Absent,
    /// The object exists at this resourceVersion.
    At(String),
    /// The namespace is not cached (yet): ask the API.
    Unknown,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Default for Cache<K> {
    fn default() -> Self {
        Self {
            stores: Arc::default(),
        }
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// Caches `events` as the scope `namespace`; the returned stream fills
    /// the cache as it is polled and yields what changed.
    fn watch<S>(&self, namespace: Option<&str>, events: S) -> Trigger<K>
    where
        K: Debug + Send + Sync,
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    {
        let (reader, writer) = reflector::store();
        self.write().insert(namespace.map(str::to_owned), reader);
        events.reflect(writer).touched_objects().boxed()
    }

    /// Drops a namespace's store (its watch has stopped): lookups there
    /// answer [`Known::Unknown`] again.
    pub fn forget(&self, namespace: &str) {
        self.write().remove(&Some(namespace.to_owned()));
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Option<String>, Store<K>>> {
        self.stores
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Option<String>, Store<K>>> {
        self.stores
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store(&self, namespace: &str) -> Option<Store<K>> {
        let stores = self.read();
        stores
            .get(&Some(namespace.to_owned()))
            .or_else(|| stores.get(&None))
            .cloned()
    }

    /// The cached object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<K>> {
        self.store(namespace)?
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// Existence and resourceVersion, as far as the cache knows.
    pub fn known(&self, namespace: &str, name: &str) -> Known {
        let Some(store) = self.store(namespace) else {
            return Known::Unknown;
        };
        match store.get(&ObjectRef::new(name).within(namespace)) {
            Some(object) => match object.meta().resource_version.clone() {
                Some(version) => Known::At(version),
                None => Known::Unknown,
            },
            // Before the first list completes an empty store proves nothing.
            None if is_ready(&store) => Known::Absent,
            None => Known::Unknown,
        }
    }

    /// Cached objects in `namespace` that carry `label=value`.
    pub fn labelled(&self, namespace: &str, label: &str, value: &str) -> Vec<std::sync::Arc<K>> {
        let Some(store) = self.store(namespace) else {
            return Vec::new();
        };
        store
            .state()
            .into_iter()
            .filter(|o| {
                o.meta().namespace.as_deref() == Some(namespace)
                    && o.labels().get(label).map(String::as_str) == Some(value)
            })
            .collect()
    }

    /// Cached objects in `namespace` for which `keep` holds.
    pub fn filtered(&self, namespace: &str, keep: impl Fn(&K) -> bool) -> Vec<std::sync::Arc<K>> {
        let Some(store) = self.store(namespace) else {
            return Vec::new();
        };
        store
            .state()
            .into_iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(namespace) && keep(o))
            .collect()
    }

    /// Waits until every store has listed once.
    pub async fn ready(&self) {
        let stores: Vec<Store<K>> = self.read().values().cloned().collect();
        for store in stores {
            let _ = store.wait_until_ready().await;
        }
    }
}

/// The store has completed its first list.
pub(crate) fn is_ready<K: Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) -> bool {
    use futures::FutureExt;
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

/// A trigger stream of one watched kind, to hand to the controller.
pub type Trigger<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// Watches `K` as metadata in one scope (`None`: every namespace) into
/// `cache`; returns the watch as a trigger.
pub fn metadata<K>(
    cache: &Cache<PartialObjectMeta<K>>,
    client: &kube::Client,
    namespace: Option<&str>,
    config: &watcher::Config,
) -> Trigger<PartialObjectMeta<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let events = watcher(
        api::<PartialObjectMeta<K>>(client, namespace),
        config.clone(),
    )
    .default_backoff()
    .modify(|object: &mut PartialObjectMeta<K>| strip_metadata(&mut object.metadata));
    cache.watch(namespace, events)
}

/// What a reconcile reads of a cached object's metadata: name, namespace,
/// version, deletion, the controlling owner (the trigger's way back to its
/// cluster) and, of annotations, only the seal key's id. Everything else
/// goes: labels, uids and timestamps are most of a cached object's size,
/// and on a user's Secret a client's last-applied annotation can hold the
/// whole Secret, which the controller has no reason to keep.
pub fn strip_metadata(metadata: &mut ObjectMeta) {
    keep_labels(metadata, &[]);
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.retain(|key, _| key == lifecycle_types::labels::SEAL_KEY_ID);
    }
}

/// [`strip_metadata`], keeping the labels named in `labels`.
fn keep_labels(metadata: &mut ObjectMeta, labels: &[&str]) {
    metadata.managed_fields = None;
    metadata.uid = None;
    metadata.creation_timestamp = None;
    metadata.generate_name = None;
    metadata.self_link = None;
    if let Some(owners) = metadata.owner_references.as_mut() {
        owners.retain(|o| o.controller == Some(true));
    }
    match metadata.labels.as_mut() {
        Some(kept) if !labels.is_empty() => kept.retain(|key, _| labels.contains(&key.as_str())),
        _ => metadata.labels = None,
    }
}

/// Watches StatefulSets in one scope, without their pod templates' specs.
pub fn statefulsets(
    cache: &Cache<StatefulSet>,
    client: &kube::Client,
    namespace: Option<&str>,
    config: &watcher::Config,
) -> Trigger<StatefulSet> {
    let events = watcher(api::<StatefulSet>(client, namespace), config.clone())
        .default_backoff()
        .modify(strip_statefulset);
    cache.watch(namespace, events)
}

/// Watches pods in one scope, without their specs.
pub fn pods(
    cache: &Cache<Pod>,
    client: &kube::Client,
    namespace: Option<&str>,
    config: &watcher::Config,
) -> Trigger<Pod> {
    let events = watcher(api::<Pod>(client, namespace), config.clone())
        .default_backoff()
        .modify(strip_pod);
    cache.watch(namespace, events)
}

/// Watches OpenBaoRestores in one scope (small, user-written objects:
/// only managed fields and annotations are dropped).
pub fn restores(
    cache: &Cache<OpenBaoRestore>,
    client: &kube::Client,
    namespace: Option<&str>,
) -> Trigger<OpenBaoRestore> {
    let events = watcher(
        api::<OpenBaoRestore>(client, namespace),
        watcher::Config::default().streaming_lists(),
    )
    .default_backoff()
    .modify(|restore: &mut OpenBaoRestore| {
        restore.metadata.managed_fields = None;
        restore.metadata.annotations = None;
    });
    cache.watch(namespace, events)
}

/// What the reconcile reads of a StatefulSet: replicas, the template's
/// annotations (the TLS hash) and status.
pub fn strip_statefulset(set: &mut StatefulSet) {
    keep_labels(&mut set.metadata, &[]);
    set.metadata.annotations = None;
    set.spec.selector = Default::default();
    set.spec.template.spec = None;
    if let Some(template) = set.spec.template.metadata.as_mut() {
        template.labels = None;
    }
    set.spec.volume_claim_templates = None;
    if let Some(status) = set.status.as_mut() {
        status.conditions = None;
    }
}

/// The pod labels a reconcile reads: which cluster, which revision, and
/// for a Job's pod which Job.
const POD_LABELS: [&str; 3] = [
    lifecycle_types::labels::CLUSTER,
    "controller-revision-hash",
    JOB_NAME_LABEL,
];

/// The label the Job controller puts on every pod of a Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Watches the operator's Jobs in one scope, without their pod templates.
pub fn jobs(
    cache: &Cache<Job>,
    client: &kube::Client,
    namespace: Option<&str>,
    config: &watcher::Config,
) -> Trigger<Job> {
    let events = watcher(api::<Job>(client, namespace), config.clone())
        .default_backoff()
        .modify(|job: &mut Job| {
            keep_labels(&mut job.metadata, &[]);
            job.metadata.annotations = None;
            job.spec = None;
        });
    cache.watch(namespace, events)
}

/// What the reconcile reads of a pod: those labels, deletion, phase,
/// conditions, address and container states.
pub fn strip_pod(pod: &mut Pod) {
    keep_labels(&mut pod.metadata, &POD_LABELS);
    pod.metadata.annotations = None;
    pod.spec = None;
    if let Some(status) = pod.status.as_mut() {
        status.host_ip = None;
        status.host_ips = None;
        status.pod_ips = None;
        status.qos_class = None;
        status.init_container_statuses = None;
        for container in status.container_statuses.iter_mut().flatten() {
            container.image_id = String::new();
            container.container_id = None;
            container.volume_mounts = None;
            container.allocated_resources = None;
            container.resources = None;
        }
    }
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_means_every_namespace() {
        assert_eq!(Scope::from_list(&[]), Scope::All);
        assert_eq!(Scope::from_list(&[" ".into()]), Scope::All);
        let two = Scope::from_list(&["a".into(), " b ".into()]);
        assert!(two.contains("b") && !two.contains("c"));
    }

    #[test]
    fn stripped_objects_keep_what_the_reconcile_reads() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"a": "b", "openbao.org/cluster": "dev"}, "managedFields": [{"manager": "x"}], "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        strip_pod(&mut pod);
        assert!(pod.spec.is_none() && pod.metadata.managed_fields.is_none());
        assert_eq!(pod.labels()[lifecycle_types::labels::CLUSTER], "dev");
        assert!(!pod.labels().contains_key("a") && pod.metadata.uid.is_none());
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"));
    }
}
