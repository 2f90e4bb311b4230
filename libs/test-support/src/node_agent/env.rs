//! A container's environment, computed the way the kubelet does: the
//! `kubernetes` Service variables first, then `envFrom`, then `env` in order,
//! each value `$(VAR)`-expanded against the variables before it.
//!
//! Everything here is pure: the async shell fetches the ConfigMaps and
//! Secrets named by [`referenced_objects`] and passes them in as
//! [`EnvSources`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, EnvVar, ObjectFieldSelector, Pod};

use super::images::IMAGE_BIN_DIR;

/// ConfigMaps and Secrets of the pod's namespace, by name. A name missing
/// from the map did not exist when fetched.
#[derive(Debug, Default, Clone)]
pub struct EnvSources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// Facts about the running pod that `fieldRef` can read.
#[derive(Debug, Clone)]
pub struct PodFacts {
    pub pod_ip: String,
    pub host_ip: String,
    pub hostname: String,
    /// Host and port the pods reach the API server at
    /// (`KUBERNETES_SERVICE_HOST`/`PORT`).
    pub apiserver_host: String,
    pub apiserver_port: u16,
}

/// The PATH a container gets when neither the pod nor the (non-existent)
/// image sets one: the image's executable first, then the host's tools.
pub fn default_path() -> String {
    format!("{IMAGE_BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// Names of the ConfigMaps and Secrets that the pod's containers and
/// volumes read (for env and for volumes), so the shell can fetch them.
pub fn referenced_objects(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return (config_maps, secrets);
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for container in containers {
        for from in container.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
        for var in container.env.iter().flatten() {
            let Some(from) = &var.value_from else {
                continue;
            };
            if let Some(r) = &from.config_map_key_ref {
                config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            config_maps.insert(cm.name.clone());
        }
        if let Some(secret) = &volume.secret
            && let Some(name) = &secret.secret_name
        {
            secrets.insert(name.clone());
        }
        if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    config_maps.insert(cm.name.clone());
                }
                if let Some(secret) = &source.secret {
                    secrets.insert(secret.name.clone());
                }
            }
        }
    }
    (config_maps, secrets)
}

/// The environment of `container` as ordered `(name, value)` pairs. Later
/// entries override earlier ones with the same name.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    sources: &EnvSources,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = Env::default();
    let host = &facts.apiserver_host;
    let port = facts.apiserver_port;
    // What the kubelet injects for the `default/kubernetes` Service.
    for (name, value) in [
        ("KUBERNETES_SERVICE_HOST", host.clone()),
        ("KUBERNETES_SERVICE_PORT", port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", port.to_string()),
        ("KUBERNETES_PORT", format!("tcp://{host}:{port}")),
        (
            &format!("KUBERNETES_PORT_{port}_TCP"),
            format!("tcp://{host}:{port}"),
        ),
        (&format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into()),
        (
            &format!("KUBERNETES_PORT_{port}_TCP_PORT"),
            port.to_string(),
        ),
        (&format!("KUBERNETES_PORT_{port}_TCP_ADDR"), host.clone()),
        ("PATH", default_path()),
        ("HOME", "/root".into()),
        ("HOSTNAME", facts.hostname.clone()),
    ] {
        env.set(name, value);
    }

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        env.set(&format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => anyhow::bail!("configmap {:?} not found (envFrom)", r.name),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        env.set(
                            &format!("{prefix}{k}"),
                            String::from_utf8_lossy(v).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => anyhow::bail!("secret {:?} not found (envFrom)", r.name),
            }
        }
    }

    for var in container.env.iter().flatten() {
        if let Some(value) = env_var_value(pod, container, var, facts, sources, &env)? {
            env.set(&var.name, value);
        }
    }
    Ok(env.pairs)
}

/// Expands `$(VAR)` references in command or args against `env`.
pub fn expand_all(words: &[String], env: &[(String, String)]) -> Vec<String> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    words.iter().map(|w| expand(w, &lookup)).collect()
}

#[derive(Default)]
struct Env {
    pairs: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: &str, value: String) {
        self.pairs.retain(|(k, _)| k != name);
        self.pairs.push((name.to_owned(), value));
    }

    fn get(&self, name: &str) -> Option<String> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn env_var_value(
    pod: &Pod,
    container: &Container,
    var: &EnvVar,
    facts: &PodFacts,
    sources: &EnvSources,
    env: &Env,
) -> anyhow::Result<Option<String>> {
    let Some(from) = &var.value_from else {
        let value = var.value.clone().unwrap_or_default();
        return Ok(Some(expand(&value, &|name| env.get(name))));
    };
    if let Some(field) = &from.field_ref {
        return field_value(pod, field, facts).map(Some);
    }
    if let Some(r) = &from.config_map_key_ref {
        let value = sources.config_maps.get(&r.name).and_then(|d| d.get(&r.key));
        return match value {
            Some(v) => Ok(Some(v.clone())),
            None if r.optional == Some(true) => Ok(None),
            None => anyhow::bail!(
                "env {}: key {:?} of configmap {:?} not found",
                var.name,
                r.key,
                r.name
            ),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let value = sources.secrets.get(&r.name).and_then(|d| d.get(&r.key));
        return match value {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if r.optional == Some(true) => Ok(None),
            None => anyhow::bail!(
                "env {}: key {:?} of secret {:?} not found",
                var.name,
                r.key,
                r.name
            ),
        };
    }
    if let Some(r) = &from.resource_field_ref {
        // Only what a limit or request says literally; enough for tests,
        // which do not size anything by it.
        let resources = container.resources.as_ref();
        let (kind, resource) = r
            .resource
            .split_once('.')
            .unwrap_or(("limits", r.resource.as_str()));
        let quantities = match kind {
            "requests" => resources.and_then(|r| r.requests.as_ref()),
            _ => resources.and_then(|r| r.limits.as_ref()),
        };
        return Ok(Some(
            quantities
                .and_then(|q| q.get(resource))
                .map_or_else(|| "0".to_owned(), |q| q.0.clone()),
        ));
    }
    Ok(Some(String::new()))
}

/// The downward-API value of a `fieldRef` (also used by downwardAPI volumes).
pub fn field_value(
    pod: &Pod,
    field: &ObjectFieldSelector,
    facts: &PodFacts,
) -> anyhow::Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let keyed = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        Some(rest.strip_suffix("']")?.to_owned())
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" {
                &meta.labels
            } else {
                &meta.annotations
            };
            map.iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => {
            if let Some(key) = keyed("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = keyed("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else {
                anyhow::bail!("fieldRef {path:?} is not supported by the node agent")
            }
        }
    })
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an
/// undefined reference stays as written, and `$$` escapes a `$`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.chars().next() {
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(_) => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> PodFacts {
        PodFacts {
            pod_ip: "10.244.1.5".into(),
            host_ip: "10.244.1.1".into(),
            hostname: "bao-0".into(),
            apiserver_host: "kubernetes.default.svc".into(),
            apiserver_port: 443,
        }
    }

    fn pod(env: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "bao-0", "namespace": "ns1", "uid": "u-1",
                         "labels": {"app": "bao"}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "bao",
                     "containers": [{"name": "c", "env": env,
                                     "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}]}]},
        }))
        .unwrap()
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let lookup = |name: &str| (name == "A").then(|| "x".to_owned());
        assert_eq!(expand("$(A)-$(B)", &lookup), "x-$(B)");
        assert_eq!(expand("$$(A) $$ $ $(A", &lookup), "$(A) $ $ $(A");
        assert_eq!(expand("tail$", &lookup), "tail$");
    }

    #[test]
    fn env_resolves_field_refs_sources_and_earlier_variables() {
        let pod = pod(json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "ADDR", "value": "https://$(POD_IP):8200/$(LATER)"},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
            {"name": "LATER", "value": "z"},
        ]));
        let mut sources = EnvSources::default();
        sources
            .config_maps
            .insert("cm".into(), [("X".to_owned(), "1".to_owned())].into());
        sources
            .secrets
            .insert("s".into(), [("k".to_owned(), b"secret".to_vec())].into());
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        let env = container_env(&pod, &container, &facts(), &sources).unwrap();
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("POD_NAME"), Some("bao-0"));
        assert_eq!(get("NS"), Some("ns1"));
        assert_eq!(get("APP"), Some("bao"));
        assert_eq!(get("ADDR"), Some("https://10.244.1.5:8200/$(LATER)"));
        assert_eq!(get("KEY"), Some("secret"));
        assert_eq!(get("MAYBE"), None);
        assert_eq!(get("CM_X"), Some("1"));
        assert_eq!(
            get("KUBERNETES_SERVICE_HOST"),
            Some("kubernetes.default.svc")
        );
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
        let args = expand_all(&["-name=$(POD_NAME)".to_owned()], &env);
        assert_eq!(args, vec!["-name=bao-0".to_owned()]);
    }

    #[test]
    fn a_missing_required_reference_is_an_error_naming_it() {
        let pod = pod(json!([
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}},
        ]));
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        let mut sources = EnvSources::default();
        sources.config_maps.insert("cm".into(), BTreeMap::new());
        let err = container_env(&pod, &container, &facts(), &sources).unwrap_err();
        assert!(err.to_string().contains("\"absent\""), "{err}");
        let (cms, secrets) = referenced_objects(&pod);
        assert!(cms.contains("cm") && secrets.contains("absent"));
    }
}
