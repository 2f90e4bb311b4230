//! Where the installer (`ci/install-test-env.sh`) put each server binary.
//! Versions come from `ci/versions.env`, the installer's own pin file.

use std::path::{Path, PathBuf};

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

pub fn helm() -> anyhow::Result<PathBuf> {
    installed(format!("helm-{}", pinned("HELM_VERSION")), "bin/helm")
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

pub fn fake_gcs_server() -> anyhow::Result<PathBuf> {
    installed(
        format!("fake-gcs-server-{}", pinned("FAKE_GCS_SERVER_VERSION")),
        "bin/fake-gcs-server",
    )
}

/// The folder holding Azurite and the Azure Storage SDK (`node_modules`).
pub fn azurite_dir() -> anyhow::Result<PathBuf> {
    let folder = format!(
        "azurite-{}-sdk-{}",
        pinned("AZURITE_VERSION"),
        pinned("AZURE_STORAGE_BLOB_VERSION")
    );
    installed(folder.clone(), "node_modules/.bin/azurite-blob")?;
    Ok(cache_dir().join(folder))
}

/// The OCI image layout of the workspace binary `name`, as
/// `cargo xtask images --profile dev` writes it beside the binaries, checked
/// to be no older than the binary it packs.
pub fn workspace_image(name: &str) -> anyhow::Result<PathBuf> {
    image_of(&workspace_binary(name)?)
}

/// The image layout of a workspace binary at `<target>/<profile dir>/<name>`:
/// `<target>/images/<profile>/<name>` (the `debug` folder is the `dev`
/// profile), refused when older than the binary.
pub fn image_of(binary: &Path) -> anyhow::Result<PathBuf> {
    let name = binary
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{} names no binary", binary.display()))?;
    let profile_dir = binary.parent();
    let target = profile_dir.and_then(Path::parent).ok_or_else(|| {
        anyhow::anyhow!("cannot locate the target folder from {}", binary.display())
    })?;
    let profile = match profile_dir
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let layout = target.join("images").join(profile).join(name);
    let fix = format!(
        "build the images with `cargo xtask images --profile {profile} --no-build` (ci/test.sh and ci/up.sh do)"
    );
    let written = std::fs::metadata(layout.join("index.json"))
        .and_then(|m| m.modified())
        .map_err(|_| anyhow::anyhow!("{} is not an image layout; {fix}", layout.display()))?;
    anyhow::ensure!(
        written >= std::fs::metadata(binary)?.modified()?,
        "the image {} is older than {}; {fix}",
        layout.display(),
        binary.display()
    );
    Ok(layout)
}

/// A binary of this workspace, built next to the running test
/// (`target/<profile>/<name>`). `cargo nextest run --workspace` and
/// `cargo build --workspace` build them all.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("cannot locate the target folder from {}", exe.display()))?;
    let path = profile_dir.join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing; build it with `cargo build -p {name}` (or run the tests with `cargo nextest run --workspace`)",
        path.display()
    );
    Ok(path)
}
