//! Raft snapshots as byte streams: never held in memory whole.

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use reqwest::Method;

use crate::client::{Client, Replay};
use crate::error::{Error, Result};

const SNAPSHOT: &str = "sys/storage/raft/snapshot";
const SNAPSHOT_FORCE: &str = "sys/storage/raft/snapshot-force";

impl Client {
    /// Starts streaming a snapshot (a gzip'd tar) from this node. Errors such
    /// as permission denied surface here, before any byte is yielded; errors
    /// mid-stream surface as stream items. Not retried once bytes flow.
    pub async fn snapshot(&self) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'static> {
        let response = self
            .send(SNAPSHOT, Replay::Idempotent, || {
                self.request(Method::GET, SNAPSHOT)
            })
            .await?;
        Ok(response.bytes_stream().map_err(|source| Error::Transport {
            path: SNAPSHOT.to_owned(),
            source: source.without_url(),
        }))
    }

    /// Restores a snapshot with `snapshot-force`, streaming `body` as it is
    /// produced. Replaces all data, keys and policies of the cluster; the
    /// restored data becomes visible seconds after this returns. Never
    /// retried (the body is consumed).
    pub async fn snapshot_force<S, E>(&self, body: S) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.restore(SNAPSHOT_FORCE, body).await
    }

    /// Restores a snapshot with the seal-checking `sys/storage/raft/snapshot`
    /// endpoint: OpenBao refuses a snapshot sealed by other keys (400, "could
    /// not verify hash file"). Otherwise as [`Client::snapshot_force`].
    pub async fn snapshot_restore<S, E>(&self, body: S) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.restore(SNAPSHOT, body).await
    }

    async fn restore<S, E>(&self, path: &'static str, body: S) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request = self
            .request(Method::POST, path)?
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        let mut once = Some(request);
        self.send(path, Replay::Never, || {
            once.take()
                .ok_or_else(|| Error::Config(format!("{path} body already sent")))
        })
        .await
        .map(drop)
    }
}
