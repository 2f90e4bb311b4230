//! `cargo xtask images`: one OCI image layout per binary, written directly
//! (no container daemon, no image tool). Each image is two gzip layers:
//!
//! - a base shared by all five (same bytes, same digest): the shared
//!   libraries the binaries load (found with `ldd`) and the dynamic loader,
//!   `/etc/passwd` and `/etc/group` naming the non-root user 65532, the
//!   host's CA bundle, and `/tmp`;
//! - the binary at `/usr/local/bin/<name>`, the image's entrypoint.
//!
//! There is no shell or any other program. Tar entries are sorted, owned by
//! root and dated 0, so the same binaries give the same digests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
pub use flate2::Compression;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, RootFsBuilder,
    Sha256Digest,
};
use sha2::{Digest as _, Sha256};

/// The project's binaries, one image each.
pub const BINARIES: [&str; 5] = [
    "controller",
    "backup",
    "restore",
    "upgrade",
    "keystore-plugin",
];
/// uid and gid the images run as (distroless' `nonroot`).
pub const NON_ROOT: u32 = 65532;
/// Where the binary lives in its image.
pub const BIN_DIR: &str = "usr/local/bin";
/// The CA bundle the binaries' TLS clients read (Debian's path).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What the images say about themselves (OCI annotations and labels).
#[derive(Debug, Clone)]
pub struct Provenance {
    pub version: String,
    pub revision: String,
    pub source: String,
}

impl Provenance {
    /// This checkout: the workspace version and the git commit.
    pub fn of_checkout(root: &Path) -> Self {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision: git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            // The clone's origin, or this folder when it has none.
            source: git(&["config", "--get", "remote.origin.url"])
                .unwrap_or_else(|| format!("file://{}", root.display())),
        }
    }

    fn annotations(&self, title: &str) -> HashMap<String, String> {
        HashMap::from([
            ("org.opencontainers.image.title".into(), title.to_owned()),
            (
                "org.opencontainers.image.version".into(),
                self.version.clone(),
            ),
            (
                "org.opencontainers.image.revision".into(),
                self.revision.clone(),
            ),
            (
                "org.opencontainers.image.source".into(),
                self.source.clone(),
            ),
        ])
    }
}

/// One file tree entry of a layer.
#[derive(Debug, Clone)]
enum Node {
    Dir { mode: u32 },
    File { content: Vec<u8>, mode: u32 },
}

/// A gzip layer: its blob and the digest of the uncompressed tar.
#[derive(Debug)]
pub struct Layer {
    gzip: Vec<u8>,
    diff_id: String,
    uncompressed: u64,
}

/// A written image layout.
#[derive(Debug)]
pub struct Built {
    pub name: String,
    pub layout: PathBuf,
    /// Config, manifest and layer blobs as a registry stores them.
    pub compressed: u64,
    pub uncompressed: u64,
}

/// The shared base layer for `binaries`: their libraries and loader, the
/// user database, the CA bundle and `/tmp`.
pub fn base_layer(binaries: &[PathBuf], compression: Compression) -> anyhow::Result<Layer> {
    let mut tree = BTreeMap::new();
    let mut libraries = BTreeSet::new();
    for binary in binaries {
        libraries.extend(shared_libraries(binary)?);
    }
    for library in libraries {
        let content =
            std::fs::read(&library).with_context(|| format!("read {}", library.display()))?;
        insert_file(&mut tree, &library.display().to_string(), content, 0o755);
    }
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NON_ROOT}:{NON_ROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nnonroot:x:{NON_ROOT}:\n");
    insert_file(&mut tree, "/etc/passwd", passwd.into_bytes(), 0o644);
    insert_file(&mut tree, "/etc/group", group.into_bytes(), 0o644);
    let bundle = std::fs::read(CA_BUNDLE)
        .with_context(|| format!("read {CA_BUNDLE}; install Debian's ca-certificates package"))?;
    insert_file(&mut tree, CA_BUNDLE, bundle, 0o644);
    tree.insert("tmp".into(), Node::Dir { mode: 0o1777 });
    tree.insert("home/nonroot".into(), Node::Dir { mode: 0o755 });
    add_parents(&mut tree);
    layer(&tree, compression)
}

/// Writes the image layout for `binary` at `out/<name>` (replacing it).
pub fn write_image(
    name: &str,
    binary: &Path,
    base: &Layer,
    provenance: &Provenance,
    compression: Compression,
    out: &Path,
) -> anyhow::Result<Built> {
    let mut tree = BTreeMap::new();
    let content = std::fs::read(binary).with_context(|| format!("read {}", binary.display()))?;
    insert_file(&mut tree, &format!("/{BIN_DIR}/{name}"), content, 0o755);
    add_parents(&mut tree);
    let app = layer(&tree, compression)?;

    let layout = out.join(name);
    if layout.exists() {
        std::fs::remove_dir_all(&layout)?;
    }
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    let mut compressed = 0;
    let mut layers = Vec::new();
    for part in [base, &app] {
        let descriptor = write_blob(&layout, MediaType::ImageLayerGzip, &part.gzip, None)?;
        compressed += descriptor.size();
        layers.push(descriptor);
    }
    let annotations = provenance.annotations(name);
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .user(format!("{NON_ROOT}:{NON_ROOT}"))
                .entrypoint(vec![format!("/{BIN_DIR}/{name}")])
                .env(vec![
                    format!("PATH=/{BIN_DIR}"),
                    format!("SSL_CERT_FILE={CA_BUNDLE}"),
                ])
                .working_dir("/")
                .labels(annotations.clone())
                .build()?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![base.diff_id.clone(), app.diff_id.clone()])
                .build()?,
        )
        .build()?;
    let config = write_blob(
        &layout,
        MediaType::ImageConfig,
        &canonical_json(&config)?,
        None,
    )?;
    compressed += config.size();
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .annotations(annotations.clone())
        .build()?;
    let mut named = annotations;
    named.insert(
        "org.opencontainers.image.ref.name".into(),
        provenance.version.clone(),
    );
    let manifest = write_blob(
        &layout,
        MediaType::ImageManifest,
        &canonical_json(&manifest)?,
        Some(named),
    )?;
    compressed += manifest.size();
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest])
        .build()?;
    std::fs::write(layout.join("index.json"), canonical_json(&index)?)?;
    OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()?
        .to_file(layout.join("oci-layout"))?;
    Ok(Built {
        name: name.to_owned(),
        layout,
        compressed,
        uncompressed: base.uncompressed + app.uncompressed,
    })
}

/// The files a binary loads (`ldd`), its dynamic loader included; none for
/// a static binary.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("run ldd (Debian's libc-bin)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&output.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), text.trim());
    }
    let mut libraries = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line.trim(),
        };
        let path = path.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        } else if line.contains("not found") {
            bail!("{}: {}", binary.display(), line.trim());
        }
    }
    Ok(libraries)
}

fn insert_file(tree: &mut BTreeMap<String, Node>, path: &str, content: Vec<u8>, mode: u32) {
    tree.insert(
        path.trim_start_matches('/').to_owned(),
        Node::File { content, mode },
    );
}

/// Every folder above an entry, so that each appears in the tar.
fn add_parents(tree: &mut BTreeMap<String, Node>) {
    let mut parents = BTreeSet::new();
    for path in tree.keys() {
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            parents.insert(dir.display().to_string());
            parent = dir.parent();
        }
    }
    for dir in parents {
        tree.entry(dir).or_insert(Node::Dir { mode: 0o755 });
    }
}

/// The tree as a sorted, root-owned, zero-dated tar, gzipped.
fn layer(tree: &BTreeMap<String, Node>, compression: Compression) -> anyhow::Result<Layer> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, node) in tree {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match node {
            Node::Dir { mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            Node::File { content, mode } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, path, content.as_slice())?;
            }
        }
    }
    let tar = builder.into_inner()?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), compression);
    gzip.write_all(&tar)?;
    Ok(Layer {
        gzip: gzip.finish()?,
        diff_id: format!("sha256:{}", hex::encode(Sha256::digest(&tar))),
        uncompressed: tar.len() as u64,
    })
}

/// JSON with sorted keys: oci-spec keeps annotations in a HashMap, whose
/// order would change the digests from run to run.
fn canonical_json(value: &impl serde::Serialize) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::to_value(value)?)?)
}

fn write_blob(
    layout: &Path,
    media_type: MediaType,
    bytes: &[u8],
    annotations: Option<HashMap<String, String>>,
) -> anyhow::Result<Descriptor> {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes)?;
    let digest: Sha256Digest = hex.parse()?;
    let mut descriptor = DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(bytes.len() as u64)
        .build()?;
    descriptor.set_annotations(annotations);
    Ok(descriptor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

    fn read_blob(layout: &Path, descriptor: &Descriptor) -> Vec<u8> {
        let hex = descriptor.as_digest_sha256().unwrap();
        let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), hex);
        assert_eq!(bytes.len() as u64, descriptor.size());
        bytes
    }

    /// Packs a small dynamic program (`true`) and reads the layout back as
    /// a registry or runtime would.
    #[test]
    fn a_layout_holds_a_non_root_image_of_the_binary_and_what_it_loads() {
        let binary = PathBuf::from("/bin/true");
        let out = tempfile::tempdir().unwrap();
        let provenance = Provenance {
            version: "1.2.3".into(),
            revision: "abc".into(),
            source: "https://example.test/repo".into(),
        };
        let base = base_layer(std::slice::from_ref(&binary), Compression::fast()).unwrap();
        let built = write_image(
            "true",
            &binary,
            &base,
            &provenance,
            Compression::fast(),
            out.path(),
        )
        .unwrap();
        let layout = built.layout;
        let index = ImageIndex::from_file(layout.join("index.json")).unwrap();
        let named = &index.manifests()[0];
        assert_eq!(
            named.annotations().as_ref().unwrap()["org.opencontainers.image.ref.name"],
            "1.2.3"
        );
        let manifest: ImageManifest = serde_json::from_slice(&read_blob(&layout, named)).unwrap();
        let config: ImageConfiguration =
            serde_json::from_slice(&read_blob(&layout, manifest.config())).unwrap();
        let settings = config.config().clone().unwrap();
        assert_eq!(settings.user().as_deref(), Some("65532:65532"));
        assert_eq!(
            settings.entrypoint().clone().unwrap(),
            ["/usr/local/bin/true"]
        );
        assert_eq!(
            settings.labels().clone().unwrap()["org.opencontainers.image.revision"],
            "abc"
        );
        let mut files = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(config.rootfs().diff_ids()) {
            let gzip = read_blob(&layout, layer);
            let mut tar = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(gzip.as_slice()),
                &mut tar,
            )
            .unwrap();
            assert_eq!(
                *diff_id,
                format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
            );
            for entry in tar::Archive::new(tar.as_slice()).entries().unwrap() {
                let entry = entry.unwrap();
                assert_eq!(entry.header().mtime().unwrap(), 0);
                files.push(entry.path().unwrap().display().to_string());
            }
        }
        for wanted in [
            "usr/local/bin/true",
            "etc/passwd",
            "lib64/ld-linux-x86-64.so.2",
        ] {
            assert!(
                files.iter().any(|f| f == wanted),
                "{wanted} missing: {files:?}"
            );
        }
        assert!(
            !files
                .iter()
                .any(|f| f.ends_with("bin/sh") || f.ends_with("bin/bash")),
            "a shell: {files:?}"
        );
        // Same input, same digests.
        let again = write_image(
            "true",
            &binary,
            &base,
            &provenance,
            Compression::fast(),
            &out.path().join("again"),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(layout.join("index.json")).unwrap(),
            std::fs::read(again.layout.join("index.json")).unwrap()
        );
    }
}
