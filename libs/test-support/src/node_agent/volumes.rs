//! Pod volumes on the host, and where each container sees them.
//!
//! ConfigMap, Secret, downwardAPI and projected volumes are rendered to a
//! file set (pure) and written the way the kubelet's atomic writer does:
//! files live in a timestamped folder, `..data` points at it and each
//! top-level name is a relative symlink through `..data`, so an update is
//! one `rename` and a reader never sees half a token. emptyDir is a folder in
//! the pod's folder; a PersistentVolumeClaim is the folder of the
//! PersistentVolume the agent provisioned for it (see `node.rs`), which is
//! why its data outlives the pod.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};

use super::env::{EnvSources, PodFacts, expand, field_value};

/// Relative file path to (content, mode).
pub type FileSet = BTreeMap<String, (Vec<u8>, u32)>;

/// Default file mode of ConfigMap, Secret and projected volumes (0644).
const DEFAULT_MODE: i32 = 0o644;

/// A projected ServiceAccount token a pod needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenSpec {
    /// `None`: the API server's default audience (its issuer).
    pub audience: Option<String>,
    pub expiration_seconds: i64,
}

/// How a volume is backed on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    /// Rendered files (ConfigMap, Secret, downwardAPI, projected).
    Files,
    EmptyDir,
    /// A PersistentVolumeClaim, by claim name.
    Claim(String),
    HostPath(PathBuf),
}

/// Classifies a volume, or says which volume type is not supported.
pub fn volume_kind(volume: &Volume) -> anyhow::Result<VolumeKind> {
    if volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.projected.is_some()
        || volume.downward_api.is_some()
    {
        Ok(VolumeKind::Files)
    } else if volume.empty_dir.is_some() {
        Ok(VolumeKind::EmptyDir)
    } else if let Some(claim) = &volume.persistent_volume_claim {
        Ok(VolumeKind::Claim(claim.claim_name.clone()))
    } else if let Some(host) = &volume.host_path {
        Ok(VolumeKind::HostPath(PathBuf::from(&host.path)))
    } else {
        anyhow::bail!(
            "volume {:?} has a type the node agent does not support \
             (supported: configMap, secret, projected, downwardAPI, emptyDir, \
             persistentVolumeClaim, hostPath)",
            volume.name
        )
    }
}

/// Every projected ServiceAccount token the pod's volumes ask for.
pub fn token_specs(pod: &Pod) -> Vec<TokenSpec> {
    let mut specs: Vec<TokenSpec> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| TokenSpec {
            audience: t.audience.clone().filter(|a| !a.is_empty()),
            expiration_seconds: t.expiration_seconds.unwrap_or(3600),
        })
        .collect();
    specs.sort();
    specs.dedup();
    specs
}

/// The files of a ConfigMap, Secret, downwardAPI or projected volume.
/// `Ok(None)` for other volume types. `tokens` must hold every
/// [`token_specs`] entry.
pub fn render_files(
    volume: &Volume,
    pod: &Pod,
    facts: &PodFacts,
    sources: &EnvSources,
    tokens: &HashMap<TokenSpec, String>,
) -> anyhow::Result<Option<FileSet>> {
    let mut files = FileSet::new();
    if let Some(cm) = &volume.config_map {
        let data = sources.config_maps.get(&cm.name).map(as_bytes);
        add_keys(
            &mut files,
            data.as_ref(),
            cm.items.as_deref(),
            cm.default_mode.unwrap_or(DEFAULT_MODE),
            cm.optional == Some(true),
            &format!("configmap {:?}", cm.name),
        )?;
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        add_keys(
            &mut files,
            sources.secrets.get(&name),
            secret.items.as_deref(),
            secret.default_mode.unwrap_or(DEFAULT_MODE),
            secret.optional == Some(true),
            &format!("secret {name:?}"),
        )?;
    } else if let Some(downward) = &volume.downward_api {
        let mode = downward.default_mode.unwrap_or(DEFAULT_MODE);
        for item in downward.items.iter().flatten() {
            if let Some(field) = &item.field_ref {
                let value = field_value(pod, field, facts)?;
                insert(
                    &mut files,
                    &item.path,
                    value.into_bytes(),
                    item.mode.unwrap_or(mode),
                )?;
            }
        }
    } else if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.unwrap_or(DEFAULT_MODE);
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let data = sources.config_maps.get(&cm.name).map(as_bytes);
                add_keys(
                    &mut files,
                    data.as_ref(),
                    cm.items.as_deref(),
                    mode,
                    cm.optional == Some(true),
                    &format!("configmap {:?}", cm.name),
                )?;
            }
            if let Some(secret) = &source.secret {
                add_keys(
                    &mut files,
                    sources.secrets.get(&secret.name),
                    secret.items.as_deref(),
                    mode,
                    secret.optional == Some(true),
                    &format!("secret {:?}", secret.name),
                )?;
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    if let Some(field) = &item.field_ref {
                        let value = field_value(pod, field, facts)?;
                        insert(
                            &mut files,
                            &item.path,
                            value.into_bytes(),
                            item.mode.unwrap_or(mode),
                        )?;
                    }
                }
            }
            if let Some(token) = &source.service_account_token {
                let spec = TokenSpec {
                    audience: token.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: token.expiration_seconds.unwrap_or(3600),
                };
                let value = tokens
                    .get(&spec)
                    .ok_or_else(|| anyhow::anyhow!("no token minted for {spec:?}"))?;
                insert(&mut files, &token.path, value.clone().into_bytes(), mode)?;
            }
        }
    } else {
        return Ok(None);
    }
    Ok(Some(files))
}

fn as_bytes(data: &BTreeMap<String, String>) -> BTreeMap<String, Vec<u8>> {
    data.iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect()
}

fn add_keys(
    files: &mut FileSet,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    optional: bool,
    what: &str,
) -> anyhow::Result<()> {
    let Some(data) = data else {
        anyhow::ensure!(optional, "{what} not found");
        return Ok(());
    };
    match items {
        None => {
            for (key, value) in data {
                insert(files, key, value.clone(), mode)?;
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => {
                        insert(files, &item.path, value.clone(), item.mode.unwrap_or(mode))?
                    }
                    None if optional => {}
                    None => anyhow::bail!("{what} has no key {:?}", item.key),
                }
            }
        }
    }
    Ok(())
}

fn insert(files: &mut FileSet, path: &str, content: Vec<u8>, mode: i32) -> anyhow::Result<()> {
    anyhow::ensure!(
        is_safe_relative(Path::new(path)) && !path.starts_with(".."),
        "volume file path {path:?} must be relative without `..`"
    );
    files.insert(path.to_owned(), (content, mode as u32 & 0o7777));
    Ok(())
}

fn is_safe_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Writes `files` into `dir` as one atomic update (see the module docs).
/// With the pod's `fsGroup`, each file belongs to that group and the group
/// may read it, as the kubelet sets a volume's ownership.
pub fn write_atomic(dir: &Path, files: &FileSet, fs_group: Option<u32>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let new_dir = dir.join(&stamp);
    std::fs::create_dir(&new_dir)?;
    for (path, (content, mode)) in files {
        let target = new_dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
        let mode = match fs_group {
            Some(group) => {
                std::os::unix::fs::chown(&target, None, Some(group))?;
                mode | 0o440
            }
            None => *mode,
        };
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;

    let top: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_owned))
        .collect();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link)?;
        }
    }
    if let Some(old) = old
        && old != Path::new(&stamp)
    {
        std::fs::remove_dir_all(dir.join(old))?;
    }
    Ok(())
}

/// One bind mount in a container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    /// Absolute path the container sees.
    pub target: String,
    pub read_only: bool,
}

/// Folders every container sees from the host read-only (its "image"): the
/// tools for `sh -c` commands and exec probes. A mountPath inside one of
/// them would have to create its mount point on the host, so it is refused.
pub const HOST_SYSTEM_DIRS: [&str; 5] = ["/usr", "/bin", "/sbin", "/lib", "/lib64"];

/// Folders the container root provides that volumes may not replace.
const RESERVED_DIRS: [&str; 4] = ["/proc", "/dev", "/sys", "/.node-agent"];

/// The bind mounts of `container`'s volumeMounts, parents before children.
/// `volume_dirs` maps each pod volume to its host folder; `env` expands
/// `subPathExpr`.
pub fn container_mounts(
    container: &Container,
    volume_dirs: &BTreeMap<String, PathBuf>,
    env: &[(String, String)],
) -> anyhow::Result<Vec<Mount>> {
    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let target = vm.mount_path.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            target.starts_with('/') && !target.split('/').any(|c| c == ".."),
            "container {}: mountPath {:?} must be absolute without `..`",
            container.name,
            vm.mount_path
        );
        if let Some(dir) = HOST_SYSTEM_DIRS
            .iter()
            .chain(RESERVED_DIRS.iter())
            .find(|d| target == **d || target.starts_with(&format!("{d}/")))
        {
            anyhow::bail!(
                "container {}: mountPath {target:?} is under {dir}, which the node agent \
                 takes from the host; mount it elsewhere",
                container.name
            );
        }
        let source = volume_dirs.get(&vm.name).ok_or_else(|| {
            anyhow::anyhow!(
                "container {}: volumeMount {:?} names no volume of the pod",
                container.name,
                vm.name
            )
        })?;
        let sub_path = match (&vm.sub_path, &vm.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => p.clone(),
            (_, Some(expr)) if !expr.is_empty() => {
                let lookup = |name: &str| {
                    env.iter()
                        .rev()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                expand(expr, &lookup)
            }
            _ => String::new(),
        };
        let source = if sub_path.is_empty() {
            source.clone()
        } else {
            anyhow::ensure!(
                is_safe_relative(Path::new(&sub_path)),
                "container {}: subPath {sub_path:?} must be relative without `..`",
                container.name
            );
            source.join(sub_path)
        };
        mounts.push(Mount {
            source,
            target,
            read_only: vm.read_only == Some(true),
        });
    }
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(mounts)
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
            hostname: "p".into(),
            apiserver_host: "kubernetes.default.svc".into(),
            apiserver_port: 443,
        }
    }

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "volumes": volumes},
        }))
        .unwrap()
    }

    #[test]
    fn projected_volume_renders_token_ca_and_namespace() {
        let pod = pod(json!([{"name": "api", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "openbao-internal", "expirationSeconds": 600}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        ]}}]));
        let specs = token_specs(&pod);
        assert_eq!(
            specs,
            vec![TokenSpec {
                audience: Some("openbao-internal".into()),
                expiration_seconds: 600
            }]
        );
        let mut sources = EnvSources::default();
        sources.config_maps.insert(
            "kube-root-ca.crt".into(),
            [("ca.crt".to_owned(), "PEM".to_owned())].into(),
        );
        let tokens = HashMap::from([(specs[0].clone(), "jwt".to_owned())]);
        let volume = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        let files = render_files(volume, &pod, &facts(), &sources, &tokens)
            .unwrap()
            .unwrap();
        assert_eq!(files["token"].0, b"jwt");
        assert_eq!(files["ca.crt"], (b"PEM".to_vec(), 0o644));
        assert_eq!(files["namespace"].0, b"ns");
    }

    #[test]
    fn secret_items_modes_and_missing_secrets() {
        let pod = pod(json!([
            {"name": "s", "secret": {"secretName": "seal", "defaultMode": 0o400,
                                     "items": [{"key": "key", "path": "keys/unseal"}]}},
            {"name": "gone", "secret": {"secretName": "absent"}},
        ]));
        let mut sources = EnvSources::default();
        sources
            .secrets
            .insert("seal".into(), [("key".to_owned(), vec![1, 2])].into());
        let volumes = pod.spec.as_ref().unwrap().volumes.clone().unwrap();
        let files = render_files(&volumes[0], &pod, &facts(), &sources, &HashMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(files["keys/unseal"], (vec![1, 2], 0o400));
        let err = render_files(&volumes[1], &pod, &facts(), &sources, &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn atomic_writes_replace_content_and_drop_stale_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = FileSet::new();
        files.insert("a".into(), (b"1".to_vec(), 0o644));
        files.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        write_atomic(dir.path(), &files, None).unwrap();
        assert_eq!(std::fs::read(dir.path().join("sub/b")).unwrap(), b"2");
        assert!(
            std::fs::symlink_metadata(dir.path().join("a"))
                .unwrap()
                .is_symlink()
        );
        files.remove("sub/b");
        files.insert("a".into(), (b"3".to_vec(), 0o644));
        write_atomic(dir.path(), &files, None).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"3");
        assert!(!dir.path().join("sub").exists());
        let stamps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with("..") && name != "..data"
            })
            .count();
        assert_eq!(stamps, 1, "the previous version is removed");
    }

    #[test]
    fn mounts_resolve_sub_paths_and_refuse_host_dirs() {
        let container: Container = serde_json::from_value(json!({
            "name": "c",
            "volumeMounts": [
                {"name": "data", "mountPath": "/vault/data/"},
                {"name": "cfg", "mountPath": "/vault", "readOnly": true},
                {"name": "data", "mountPath": "/logs", "subPathExpr": "$(POD)/logs"},
            ],
        }))
        .unwrap();
        let dirs = BTreeMap::from([
            ("data".to_owned(), PathBuf::from("/pv/1")),
            ("cfg".to_owned(), PathBuf::from("/pod/cfg")),
        ]);
        let env = vec![("POD".to_owned(), "p-0".to_owned())];
        let mounts = container_mounts(&container, &dirs, &env).unwrap();
        let targets: Vec<&str> = mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/logs", "/vault", "/vault/data"]);
        assert_eq!(mounts[0].source, PathBuf::from("/pv/1/p-0/logs"));
        assert!(mounts[1].read_only);

        let bad: Container = serde_json::from_value(json!({
            "name": "c", "volumeMounts": [{"name": "cfg", "mountPath": "/usr/local/etc"}],
        }))
        .unwrap();
        let err = container_mounts(&bad, &dirs, &env).unwrap_err();
        assert!(err.to_string().contains("under /usr"), "{err}");
    }
}
