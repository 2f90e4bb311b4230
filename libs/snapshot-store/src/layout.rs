//! Object names of backups. Names sort by time, so listing is ordering.

use jiff::Timestamp;
use object_store::path::Path;

/// Extension of snapshot objects.
pub const SNAPSHOT_EXT: &str = "snap";
/// Extension of manifest objects.
pub const MANIFEST_EXT: &str = "json";

/// One backup's name: `<UTC timestamp>-<id>` under a cluster's folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupName {
    /// `YYYYMMDDTHHMMSSZ`, so that names sort chronologically.
    pub stamp: String,
    pub id: String,
}

impl BackupName {
    /// A fresh name for a backup starting at `at`.
    pub fn new(at: Timestamp) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            stamp: at.strftime("%Y%m%dT%H%M%SZ").to_string(),
            id: id[..12].to_owned(),
        }
    }

    /// Parses the file name of a snapshot or manifest (`<stamp>-<id>.<ext>`).
    pub fn parse(file_name: &str) -> Option<(Self, &str)> {
        let (stem, ext) = file_name.rsplit_once('.')?;
        let (stamp, id) = stem.split_once('-')?;
        let valid_stamp = stamp.len() == 16
            && stamp.as_bytes()[8] == b'T'
            && stamp.ends_with('Z')
            && stamp.bytes().filter(|b| b.is_ascii_digit()).count() == 14;
        let valid_id = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
        (valid_stamp && valid_id).then(|| {
            (
                Self {
                    stamp: stamp.to_owned(),
                    id: id.to_owned(),
                },
                ext,
            )
        })
    }

    fn file(&self, ext: &str) -> String {
        format!("{}-{}.{ext}", self.stamp, self.id)
    }
}

/// The folder of one cluster's backups: `<prefix>/<namespace>/<cluster>`.
pub fn cluster_folder(prefix: &Path, namespace: &str, cluster: &str) -> Path {
    let mut path = prefix.clone();
    for part in [namespace, cluster] {
        path = path.join(part);
    }
    path
}

pub fn snapshot_path(folder: &Path, name: &BackupName) -> Path {
    folder.clone().join(name.file(SNAPSHOT_EXT).as_str())
}

pub fn manifest_path(folder: &Path, name: &BackupName) -> Path {
    folder.clone().join(name.file(MANIFEST_EXT).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_parse_back() {
        let early = BackupName::new("2026-01-02T03:04:05Z".parse().unwrap());
        let late = BackupName::new("2026-11-25T21:00:00Z".parse().unwrap());
        assert_eq!(early.stamp, "20260102T030405Z");
        assert!(early < late);
        let file = early.file(SNAPSHOT_EXT);
        let (parsed, ext) = BackupName::parse(&file).unwrap();
        assert_eq!((parsed, ext), (early, "snap"));
    }

    #[test]
    fn paths_follow_the_documented_layout() {
        let folder = cluster_folder(&Path::from("backups/prod"), "team-a", "vault");
        let name = BackupName {
            stamp: "20261125T210000Z".into(),
            id: "abc123".into(),
        };
        assert_eq!(
            snapshot_path(&folder, &name).as_ref(),
            "backups/prod/team-a/vault/20261125T210000Z-abc123.snap"
        );
        assert_eq!(
            manifest_path(&folder, &name).as_ref(),
            "backups/prod/team-a/vault/20261125T210000Z-abc123.json"
        );
    }

    #[test]
    fn foreign_files_are_not_backups() {
        for name in [
            "notes.txt",
            "2026-abc.snap",
            "20261125T210000Z-.snap",
            "20261125T210000Z-a/b.json",
            "x",
        ] {
            assert!(BackupName::parse(name).is_none(), "{name}");
        }
    }
}
