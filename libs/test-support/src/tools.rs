//! Where the installer (`ci/install-test-env.sh`) put each server binary.
//! Versions come from `ci/versions.env`, the installer's own pin file.

use std::path::PathBuf;

const VERSIONS_ENV: &str = include_str!("../../../ci/versions.env");

fn pinned(key: &str) -> &'static str {
    VERSIONS_ENV
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
        .unwrap_or_else(|| panic!("ci/versions.env has no {key}"))
}

/// OpenBao versions the installer provides, oldest first.
pub fn openbao_versions() -> Vec<&'static str> {
    pinned("OPENBAO_VERSIONS").split_whitespace().collect()
}

/// The newest installed OpenBao version.
pub fn latest_openbao() -> &'static str {
    openbao_versions()
        .last()
        .copied()
        .expect("at least one OpenBao version is pinned")
}

/// The cache folder (`OPENBAO_OPERATOR_CACHE`, default `~/.cache/openbao-operator`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("OPENBAO_OPERATOR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/openbao-operator")
        })
}

fn installed(folder: String, binary: &str) -> anyhow::Result<PathBuf> {
    let path = cache_dir().join(&folder).join(binary);
    if path.is_file() {
        Ok(path)
    } else {
        anyhow::bail!(
            "{} is missing; run ci/install-test-env.sh (it installs the test servers into {})",
            path.display(),
            cache_dir().display()
        )
    }
}

pub fn bao(version: &str) -> anyhow::Result<PathBuf> {
    installed(format!("openbao-{version}"), "bao")
}

pub fn kubernetes(binary: &str) -> anyhow::Result<PathBuf> {
    installed(
        format!("kubernetes-{}", pinned("KUBERNETES_VERSION")),
        &format!("bin/{binary}"),
    )
}

pub fn etcd() -> anyhow::Result<PathBuf> {
    installed(format!("etcd-{}", pinned("ETCD_VERSION")), "bin/etcd")
}

pub fn versitygw() -> anyhow::Result<PathBuf> {
    installed(
        format!("versitygw-{}", pinned("VERSITYGW_VERSION")),
        "bin/versitygw",
    )
}
