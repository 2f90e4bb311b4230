//! Reads a snapshot's own `meta.json` from its first bytes, without holding
//! the snapshot: an OpenBao snapshot is a gzip'd tar whose first entry is
//! `meta.json` (`{"Index":..,"Term":..,...}`).

use std::io::Read;

use serde::Deserialize;

/// How much of the head of the stream is kept to find `meta.json`.
pub const HEAD_BYTES: usize = 64 * 1024;

/// Raft position recorded in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct SnapshotMeta {
    #[serde(rename = "Index")]
    pub index: u64,
    #[serde(rename = "Term")]
    pub term: u64,
}

/// Parses `meta.json` from the head of a snapshot; `None` when the head is
/// not a gzip'd tar that starts with it.
pub fn parse_head(head: &[u8]) -> Option<SnapshotMeta> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(head));
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    let is_meta = entry.path().ok()?.to_str()? == "meta.json";
    if !is_meta || entry.size() > HEAD_BYTES as u64 {
        return None;
    }
    let mut text = Vec::new();
    entry.read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Collects the head of a stream as it passes.
#[derive(Debug, Default)]
pub struct HeadCollector {
    head: Vec<u8>,
}

impl HeadCollector {
    pub fn observe(&mut self, chunk: &[u8]) {
        let room = HEAD_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub fn meta(&self) -> Option<SnapshotMeta> {
        parse_head(&self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn snapshot_like(meta: &[u8], rest: usize) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, data) in [("meta.json", meta.to_vec()), ("state.bin", vec![7u8; rest])] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder
                .append_data(&mut header, name, data.as_slice())
                .unwrap();
        }
        let mut gz = builder.into_inner().unwrap();
        gz.flush().unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn meta_is_read_from_a_truncated_head() {
        let bytes = snapshot_like(
            br#"{"Version":1,"ID":"bolt-snapshot","Index":10081,"Term":9,"Size":5}"#,
            500_000,
        );
        let mut head = HeadCollector::default();
        for chunk in bytes.chunks(1000) {
            head.observe(chunk);
        }
        assert_eq!(
            head.meta(),
            Some(SnapshotMeta {
                index: 10081,
                term: 9
            })
        );
    }

    #[test]
    fn other_content_yields_none() {
        assert_eq!(parse_head(b"not gzip at all"), None);
        let wrong_first = snapshot_like(b"{}", 10);
        assert_eq!(
            parse_head(&wrong_first),
            None,
            "meta.json without Index/Term"
        );
    }
}
