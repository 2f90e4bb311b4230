//! OCI image layouts (as `cargo xtask images` writes them), unpacked for the
//! node agent: the first manifest of `index.json`, every blob checked
//! against its digest, the gzip layers extracted in order into one folder.
//! Whiteouts are refused: this project's images never delete a file.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};

/// An image's file tree and what its config says to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedImage {
    /// The extracted layers.
    pub root: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` pairs, split.
    pub env: Vec<(String, String)>,
    /// The config's `User` (`uid[:gid]`), when set.
    pub user: Option<String>,
}

/// Unpacks the image in `layout` once, into `layout/unpacked/<manifest
/// digest>`; a later call for the same digest only reads the config.
pub fn unpack(layout: &Path) -> anyhow::Result<UnpackedImage> {
    let index = ImageIndex::from_file(layout.join("index.json"))
        .with_context(|| format!("{} is not an OCI image layout", layout.display()))?;
    let Some(manifest) = index.manifests().first() else {
        bail!("{}/index.json lists no image", layout.display());
    };
    let root = layout.join("unpacked").join(hex_digest(manifest)?);
    let manifest: ImageManifest = serde_json::from_slice(&blob(layout, manifest)?)?;
    let config: ImageConfiguration = serde_json::from_slice(&blob(layout, manifest.config())?)?;
    if !root.is_dir() {
        // Extract beside it and rename: concurrent tests never see half a tree.
        std::fs::create_dir_all(layout.join("unpacked"))?;
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(layout.join("unpacked"))?;
        for layer in manifest.layers() {
            if *layer.media_type() != MediaType::ImageLayerGzip {
                bail!("layer media type {} is not gzip", layer.media_type());
            }
            let bytes = blob(layout, layer)?;
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
            archive.set_preserve_permissions(true);
            for entry in archive.entries()? {
                let mut entry = entry?;
                let path = entry.path()?.into_owned();
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".wh."))
                {
                    bail!("{}: whiteouts are not supported", path.display());
                }
                entry.unpack_in(staging.path())?;
            }
        }
        let staged = staging.keep();
        if std::fs::rename(&staged, &root).is_err() {
            // Another process unpacked it first.
            std::fs::remove_dir_all(&staged)?;
        }
    }
    let settings = config.config().clone().unwrap_or_default();
    Ok(UnpackedImage {
        root,
        entrypoint: settings.entrypoint().clone().unwrap_or_default(),
        cmd: settings.cmd().clone().unwrap_or_default(),
        env: settings
            .env()
            .iter()
            .flatten()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        user: settings.user().clone().filter(|u| !u.is_empty()),
    })
}

/// The regular files and symlinks of `root`, as absolute paths inside the
/// image, sorted.
pub fn image_files(root: &Path) -> anyhow::Result<Vec<(PathBuf, String, bool)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            let inside = format!("/{}", path.strip_prefix(root)?.display());
            if kind.is_dir() {
                stack.push(path);
            } else {
                out.push((path, inside, kind.is_symlink()));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn hex_digest(descriptor: &Descriptor) -> anyhow::Result<String> {
    descriptor
        .as_digest_sha256()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{} is not a sha256 digest", descriptor.digest()))
}

/// A blob, checked against its descriptor's size and digest.
fn blob(layout: &Path, descriptor: &Descriptor) -> anyhow::Result<Vec<u8>> {
    let hex = hex_digest(descriptor)?;
    let path = layout.join("blobs/sha256").join(&hex);
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .with_context(|| format!("open {}", path.display()))?
        .read_to_end(&mut bytes)?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != descriptor.size() || actual != hex {
        bail!(
            "{} does not match its descriptor ({} bytes, sha256 {actual}); rebuild the image",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes)
}
