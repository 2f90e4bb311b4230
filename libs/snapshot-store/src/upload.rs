//! Writing one backup: the snapshot streamed into the store (hashed and
//! its Raft position read on the way, nothing staged on disk), then its
//! manifest. Shared by the backup Job and the upgrade Job's pre-upgrade
//! snapshot, so both write backups the restore accepts.

use futures_util::{Stream, StreamExt};
use jiff::Timestamp;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use tokio_util::sync::CancellationToken;

use crate::layout::{BackupName, manifest_path, snapshot_path};
use crate::manifest::{FORMAT_VERSION, Manifest};
use crate::meta::{HeadCollector, SnapshotMeta};
use crate::store::{Destination, StoreError};
use crate::verify::StreamDigest;

/// Upload part size; with two parts in flight memory stays bounded.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// Why a snapshot did not reach the store. No partial object is left
/// behind on purpose (an aborted multipart upload, or retention's debris
/// sweep when even the abort failed).
#[derive(Debug, thiserror::Error)]
pub enum UploadError<E: std::fmt::Display> {
    /// OpenBao's snapshot stream failed.
    #[error("{0}")]
    Source(E),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stop token fired.
    #[error("stopped before the snapshot was stored")]
    Interrupted,
}

/// A snapshot that is in the store, without its manifest yet.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub name: BackupName,
    pub snapshot: Path,
    pub size: u64,
    pub sha256: String,
    pub meta: Option<SnapshotMeta>,
    pub started_at: Timestamp,
}

/// Where a snapshot came from, for its manifest.
#[derive(Debug, Clone)]
pub struct Origin {
    pub cluster: String,
    pub namespace: String,
    /// OpenBao's own cluster id, when the node reported it.
    pub cluster_id: Option<String>,
    /// The `OpenBaoCluster`'s metadata.uid.
    pub kubernetes_uid: Option<String>,
    /// The version of the node that produced the snapshot.
    pub openbao_version: String,
}

/// Streams `snapshot` into `<folder>/<name>.snap` under a fresh name.
pub async fn upload_snapshot<S, B, E>(
    destination: &Destination,
    folder: &Path,
    snapshot: S,
    stop: &CancellationToken,
) -> Result<Uploaded, UploadError<E>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let started_at = Timestamp::now();
    let name = BackupName::new(started_at);
    let object = snapshot_path(folder, &name);
    let upload = destination
        .store
        .put_multipart(&object)
        .await
        .map_err(|e| StoreError::object("start upload", &object, e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let mut digest = StreamDigest::default();
    let mut head = HeadCollector::default();
    let mut snapshot = std::pin::pin!(snapshot);
    let failure = loop {
        let next = tokio::select! {
            next = snapshot.next() => next,
            _ = stop.cancelled() => break Some(UploadError::Interrupted),
        };
        match next {
            None => break None,
            Some(Err(e)) => break Some(UploadError::Source(e)),
            Some(Ok(chunk)) => {
                let chunk = chunk.as_ref();
                digest.update(chunk);
                head.observe(chunk);
                writer.write(chunk);
                if let Err(e) = writer.wait_for_capacity(2).await {
                    break Some(StoreError::object("upload", &object, e).into());
                }
            }
        }
    };
    if let Some(error) = failure {
        if let Err(abort) = writer.abort().await {
            tracing::warn!(error = %abort, %object, "could not abort the partial upload; retention removes it later");
        }
        return Err(error);
    }
    writer
        .finish()
        .await
        .map_err(|e| StoreError::object("complete upload", &object, e))?;
    let (size, sha256) = digest.finish();
    Ok(Uploaded {
        name,
        snapshot: object,
        size,
        sha256,
        meta: head.meta(),
        started_at,
    })
}

impl Uploaded {
    /// The manifest of this snapshot, finished now.
    pub fn manifest(&self, origin: Origin) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            cluster: origin.cluster,
            namespace: origin.namespace,
            cluster_id: origin.cluster_id,
            kubernetes_uid: origin.kubernetes_uid,
            openbao_version: origin.openbao_version,
            raft_index: self.meta.map(|m| m.index),
            raft_term: self.meta.map(|m| m.term),
            snapshot: self.snapshot.to_string(),
            size: self.size,
            sha256: self.sha256.clone(),
            started_at: self.started_at,
            finished_at: Timestamp::now(),
        }
    }

    /// Where its manifest goes.
    pub fn manifest_path(&self, folder: &Path) -> Path {
        manifest_path(folder, &self.name)
    }

    /// Writes the manifest: only now does the backup count.
    pub async fn write_manifest(
        &self,
        destination: &Destination,
        folder: &Path,
        manifest: &Manifest,
    ) -> Result<Path, StoreError> {
        let path = self.manifest_path(folder);
        destination
            .store
            .put(&path, PutPayload::from(manifest.to_json()))
            .await
            .map_err(|e| StoreError::object("write manifest", &path, e))?;
        Ok(path)
    }
}
