//! Server-side apply that writes only when something differs.
//!
//! Every object the controller owns is applied with one field manager. A
//! reconcile first reads the object and skips the apply when the live
//! object already holds every field the controller wants, so a converged
//! cluster costs reads only: zero writes in steady state, and a drifted
//! field (or a deleted object) is written back on the next reconcile.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::clusters::lock;
use crate::stores::Known;

/// The field manager of every server-side apply by the controller.
pub const FIELD_MANAGER: &str = "openbao-operator";

/// A failed API call, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{verb} {kind} {namespace}/{name} failed: {}", api_message(source))]
    Api {
        verb: &'static str,
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the rendered {kind} has no name or namespace (a renderer bug)")]
    Unnamed { kind: String },
    #[error("the rendered {kind} cannot be serialized: {source}")]
    Serialize {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Applies objects and counts the writes it makes.
#[derive(Clone)]
pub struct Applier {
    client: kube::Client,
    writes: Arc<AtomicU64>,
}

impl Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("writes", &self.writes())
            .finish_non_exhaustive()
    }
}

impl Applier {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            writes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Writes made so far (applies, creates, deletes, status patches).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub(crate) fn count_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The live object, or `None`.
    pub async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        get_from(&self.api::<K>(namespace), &K::kind(&()), namespace, name).await
    }

    /// Applies `desired` unless the live object already contains it;
    /// returns the live object afterwards.
    pub async fn apply<K>(&self, desired: &K) -> Result<K, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let (namespace, name) = identity(desired)?;
        let want = typed_json(desired)?;
        self.apply_json(
            &self.api::<K>(&namespace),
            &K::kind(&()),
            &namespace,
            &name,
            &want,
        )
        .await
    }

    /// [`Self::apply`] for an object of a kind known only at run time (a
    /// CRD that may not be installed), through `api`.
    pub async fn apply_dynamic(
        &self,
        api: &Api<DynamicObject>,
        desired: &DynamicObject,
    ) -> Result<DynamicObject, ApplyError> {
        let kind = desired
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        let (Some(namespace), Some(name)) = (
            desired.metadata.namespace.clone(),
            desired.metadata.name.clone(),
        ) else {
            return Err(ApplyError::Unnamed { kind });
        };
        let want = serde_json::to_value(desired).map_err(|source| ApplyError::Serialize {
            kind: kind.clone(),
            source,
        })?;
        self.apply_json(api, &kind, &namespace, &name, &want).await
    }

    /// The shared apply: read, compare, and patch only when something differs.
    async fn apply_json<K>(
        &self,
        api: &Api<K>,
        kind: &str,
        namespace: &str,
        name: &str,
        want: &Value,
    ) -> Result<K, ApplyError>
    where
        K: Clone + Serialize + DeserializeOwned + Debug,
    {
        if let Some(live) = get_from(api, kind, namespace, name).await? {
            let have = serde_json::to_value(&live).map_err(|source| ApplyError::Serialize {
                kind: kind.to_owned(),
                source,
            })?;
            if contains(&have, want) {
                return Ok(live);
            }
        }
        self.patch(api, kind, namespace, name, want).await
    }

    /// One server-side apply of `want`, counted.
    async fn patch<K>(
        &self,
        api: &Api<K>,
        kind: &str,
        namespace: &str,
        name: &str,
        want: &Value,
    ) -> Result<K, ApplyError>
    where
        K: Clone + Serialize + DeserializeOwned + Debug,
    {
        self.count_write();
        tracing::debug!(%kind, %namespace, %name, "applying (it differs or is missing)");
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(want),
        )
        .await
        .map_err(|source| api_error_for(kind, "apply", namespace, name, source))
    }

    /// [`Self::apply`] with what the watch cache knows: an object cached
    /// at the resourceVersion where it was last seen to hold exactly
    /// `desired` is neither read nor written; an object the cache knows to
    /// be absent is written without a read. Returns the live object when
    /// it was read or written, `None` when nothing was sent.
    pub async fn apply_known<K>(
        &self,
        desired: &K,
        known: &Known,
        verified: &Mutex<HashMap<String, (String, u64)>>,
    ) -> Result<Option<K>, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let (namespace, name) = identity(desired)?;
        let want = typed_json(desired)?;
        let digest = digest(&want);
        let key = format!("{}/{name}", K::kind(&()));
        if let Known::At(version) = known {
            let seen = lock(verified).get(&key).cloned();
            if seen == Some((version.clone(), digest)) {
                return Ok(None);
            }
        }
        let api = self.api::<K>(&namespace);
        let kind = K::kind(&());
        let live = if *known == Known::Absent {
            self.patch(&api, &kind, &namespace, &name, &want).await?
        } else {
            self.apply_json(&api, &kind, &namespace, &name, &want)
                .await?
        };
        if let Some(version) = live.meta().resource_version.clone() {
            lock(verified).insert(key, (version, digest));
        }
        Ok(Some(live))
    }

    /// Deletes an object the watch cache does not know to be absent; true
    /// when a delete was sent and found the object.
    pub async fn delete_known<K>(
        &self,
        namespace: &str,
        name: &str,
        known: &Known,
    ) -> Result<bool, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        if *known == Known::Absent {
            return Ok(false);
        }
        self.send_delete(&self.api::<K>(namespace), &K::kind(&()), namespace, name)
            .await
    }

    /// Creates `object` unless one of that name exists (random material:
    /// keys and certificates are drawn once and never overwritten).
    pub async fn create_if_missing<K>(&self, object: &K) -> Result<K, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let (namespace, name) = identity(object)?;
        if let Some(live) = self.get::<K>(&namespace, &name).await? {
            return Ok(live);
        }
        self.count_write();
        tracing::debug!(kind = %K::kind(&()), %namespace, %name, "creating");
        match self
            .api::<K>(&namespace)
            .create(&PostParams::default(), object)
            .await
        {
            Ok(created) => Ok(created),
            // Another writer won the race; theirs is the one to keep.
            Err(kube::Error::Api(status)) if status.code == 409 => self
                .get::<K>(&namespace, &name)
                .await?
                .ok_or_else(|| ApplyError::Unnamed {
                    kind: K::kind(&()).into_owned(),
                }),
            Err(source) => Err(api_error::<K>("create", &namespace, &name, source)),
        }
    }

    /// Deletes the object if it exists; true when a delete was sent.
    pub async fn delete<K>(&self, namespace: &str, name: &str) -> Result<bool, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.delete_from(&self.api::<K>(namespace), &K::kind(&()), namespace, name)
            .await
    }

    /// [`Self::delete`] through `api` (any kind, also one whose CRD is missing).
    pub async fn delete_from<K>(
        &self,
        api: &Api<K>,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ApplyError>
    where
        K: Clone + DeserializeOwned + Debug,
    {
        if get_from(api, kind, namespace, name).await?.is_none() {
            return Ok(false);
        }
        self.send_delete(api, kind, namespace, name).await
    }

    /// One delete, counted; true when it found the object.
    async fn send_delete<K>(
        &self,
        api: &Api<K>,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ApplyError>
    where
        K: Clone + DeserializeOwned + Debug,
    {
        self.count_write();
        tracing::debug!(%kind, %namespace, %name, "deleting");
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(source) => Err(api_error_for(kind, "delete", namespace, name, source)),
        }
    }
}

/// The live object, or `None` when it or its whole API is missing (an
/// uninstalled CRD answers a bare 404 page, not a NotFound status).
async fn get_from<K>(
    api: &Api<K>,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, ApplyError>
where
    K: Clone + DeserializeOwned + Debug,
{
    match api.get(name).await {
        Ok(live) => Ok(Some(live)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(source) => Err(api_error_for(kind, "get", namespace, name, source)),
    }
}

fn identity<K: Resource<DynamicType = ()>>(object: &K) -> Result<(String, String), ApplyError> {
    match (object.meta().namespace.clone(), object.meta().name.clone()) {
        (Some(namespace), Some(name)) => Ok((namespace, name)),
        _ => Err(ApplyError::Unnamed {
            kind: K::kind(&()).into_owned(),
        }),
    }
}

/// The object as JSON with its apiVersion and kind (required by apply).
fn typed_json<K: Resource<DynamicType = ()> + Serialize>(object: &K) -> Result<Value, ApplyError> {
    let mut value = serde_json::to_value(object).map_err(|source| ApplyError::Serialize {
        kind: K::kind(&()).into_owned(),
        source,
    })?;
    value["apiVersion"] = Value::String(K::api_version(&()).into_owned());
    value["kind"] = Value::String(K::kind(&()).into_owned());
    Ok(value)
}

pub(crate) fn api_error<K: Resource<DynamicType = ()>>(
    verb: &'static str,
    namespace: &str,
    name: &str,
    source: kube::Error,
) -> ApplyError {
    api_error_for(&K::kind(&()), verb, namespace, name, source)
}

fn api_error_for(
    kind: &str,
    verb: &'static str,
    namespace: &str,
    name: &str,
    source: kube::Error,
) -> ApplyError {
    ApplyError::Api {
        verb,
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    }
}

impl ApplyError {
    /// The API server refused the request itself (RBAC, an admission
    /// policy or webhook, an invalid object), as opposed to failing.
    pub fn is_refused(&self) -> bool {
        matches!(self, ApplyError::Api { source, .. } if matches!(**source, kube::Error::Api(ref s) if matches!(s.code, 400 | 403 | 422)))
    }

    /// The API server answered 404: for an apply, the resource type itself
    /// is not served (a missing CRD).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApplyError::Api { source, .. } if matches!(**source, kube::Error::Api(ref s) if s.code == 404))
    }
}

/// Whether `have` holds every field of `want` with the same value. Lists
/// must match element by element (their order is meaningful); fields the
/// API server added (defaults, status, other managers' fields) are ignored.
/// An empty map or list in `want` matches an absent field.
pub fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (_, Value::Null) => true,
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(key, w)| match h.get(key) {
            Some(h) => contains(h, w),
            None => is_empty(w),
        }),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(h, w)| contains(h, w))
        }
        (Value::Null, w) => is_empty(w),
        (h, w) => h == w,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(is_empty),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

/// What the API server said, without the debug dump of its Status.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    }
}

/// A digest of a desired object, to tell whether it changed since it was
/// last verified (kept in memory only, so a process-local hash is enough).
fn digest(want: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    want.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Name of an object for messages.
pub fn describe<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_added_by_the_server_do_not_count_as_drift() {
        let want = json!({"spec": {"replicas": 3, "template": {"containers": [{"name": "a"}]}}});
        let have = json!({"spec": {"replicas": 3, "revisionHistoryLimit": 10,
            "template": {"containers": [{"name": "a", "imagePullPolicy": "IfNotPresent"}]}},
            "status": {"replicas": 3}});
        assert!(contains(&have, &want));
    }

    #[test]
    fn a_changed_value_or_a_missing_list_item_is_drift() {
        let want = json!({"spec": {"replicas": 3, "ports": [{"port": 1}, {"port": 2}]}});
        assert!(!contains(
            &json!({"spec": {"replicas": 4, "ports": [{"port": 1}, {"port": 2}]}}),
            &want
        ));
        assert!(!contains(
            &json!({"spec": {"replicas": 3, "ports": [{"port": 1}]}}),
            &want
        ));
        assert!(!contains(&json!({}), &want));
    }

    #[test]
    fn empty_wanted_maps_match_absent_fields() {
        assert!(contains(
            &json!({"metadata": {"name": "x"}}),
            &json!({"metadata": {"name": "x", "annotations": {}}})
        ));
        assert!(!contains(
            &json!({"metadata": {"name": "x"}}),
            &json!({"metadata": {"annotations": {"a": "b"}}})
        ));
    }
}
