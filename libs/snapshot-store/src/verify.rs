//! SHA-256 and size of a stream, computed as it passes.

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use sha2::{Digest, Sha256};

/// Running SHA-256 and byte count.
#[derive(Debug, Default, Clone)]
pub struct StreamDigest {
    sha: Sha256,
    size: u64,
}

impl StreamDigest {
    pub fn update(&mut self, chunk: &[u8]) {
        self.sha.update(chunk);
        self.size += chunk.len() as u64;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Size and lower-case hex digest.
    pub fn finish(self) -> (u64, String) {
        (self.size, hex::encode(self.sha.finalize()))
    }
}

/// Why a stream did not match its manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error(
        "the snapshot is larger than its manifest says ({expected} bytes); it was changed or corrupted"
    )]
    TooLong { expected: u64 },
    #[error(
        "the snapshot is {actual} bytes but its manifest says {expected}; it was truncated or changed"
    )]
    Size { expected: u64, actual: u64 },
    #[error(
        "the snapshot's SHA-256 {actual} does not match its manifest's {expected}; it was corrupted or changed"
    )]
    Digest { expected: String, actual: String },
}

/// Checks a finished digest against the manifest's size and SHA-256.
pub fn check(
    digest: StreamDigest,
    expected_size: u64,
    expected_sha256: &str,
) -> Result<(), Mismatch> {
    let (size, sha) = digest.finish();
    if size != expected_size {
        return Err(Mismatch::Size {
            expected: expected_size,
            actual: size,
        });
    }
    if !sha.eq_ignore_ascii_case(expected_sha256) {
        return Err(Mismatch::Digest {
            expected: expected_sha256.to_owned(),
            actual: sha,
        });
    }
    Ok(())
}

/// Passes `input` through unchanged while checking it against the expected
/// size and SHA-256. A stream that runs long fails at once; one whose end
/// does not match yields an error as its final item, so a consumer that
/// uploads the bytes (an HTTP body) aborts instead of completing.
pub fn verifying<S, E>(
    input: S,
    expected_size: u64,
    expected_sha256: String,
) -> impl Stream<Item = Result<Bytes, VerifyError<E>>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let state = (input, StreamDigest::default(), false);
    stream::unfold(state, move |(mut input, mut digest, done)| {
        let expected_sha256 = expected_sha256.clone();
        async move {
            if done {
                return None;
            }
            match input.next().await {
                Some(Ok(chunk)) => {
                    digest.update(&chunk);
                    if digest.size() > expected_size {
                        let error = VerifyError::Mismatch(Mismatch::TooLong {
                            expected: expected_size,
                        });
                        return Some((Err(error), (input, digest, true)));
                    }
                    Some((Ok(chunk), (input, digest, false)))
                }
                Some(Err(e)) => Some((Err(VerifyError::Source(e)), (input, digest, true))),
                None => match check(digest.clone(), expected_size, &expected_sha256) {
                    Ok(()) => None,
                    Err(mismatch) => {
                        Some((Err(VerifyError::Mismatch(mismatch)), (input, digest, true)))
                    }
                },
            }
        }
    })
}

/// An error from a [`verifying`] stream.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError<E> {
    #[error(transparent)]
    Mismatch(Mismatch),
    #[error("reading the snapshot failed: {0}")]
    Source(E),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(data: &[u8]) -> (u64, String) {
        let mut d = StreamDigest::default();
        d.update(data);
        d.finish()
    }

    async fn run(chunks: Vec<&'static [u8]>, size: u64, sha: String) -> Vec<Result<Bytes, String>> {
        let input = stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        verifying(input, size, sha)
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
            .await
    }

    #[test]
    fn digest_of_known_input() {
        let (size, sha) = digest_of(b"abc");
        assert_eq!(size, 3);
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn matching_streams_pass_through_unchanged() {
        let (size, sha) = digest_of(b"hello world");
        let out = run(vec![b"hello ", b"world"], size, sha).await;
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn truncated_corrupted_and_long_streams_end_in_an_error() {
        let (size, sha) = digest_of(b"hello world");
        let truncated = run(vec![b"hello "], size, sha.clone()).await;
        assert!(
            truncated
                .last()
                .unwrap()
                .as_ref()
                .unwrap_err()
                .contains("truncated")
        );
        let corrupted = run(vec![b"hello worle"], size, sha.clone()).await;
        assert!(
            corrupted
                .last()
                .unwrap()
                .as_ref()
                .unwrap_err()
                .contains("SHA-256")
        );
        let long = run(vec![b"hello world", b"!"], size, sha).await;
        assert!(
            long.last()
                .unwrap()
                .as_ref()
                .unwrap_err()
                .contains("larger")
        );
    }
}
