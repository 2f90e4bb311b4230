//! Termination messages, the way the kubelet reports them.
//!
//! Before each start the agent creates an empty file (mode 0666) in the
//! instance's folder and bind-mounts it into the container root at the
//! container's `terminationMessagePath` (default `/dev/termination-log`).
//! The container runs chrooted in that root (see `container.rs`), so the
//! path needs no rewriting and no variable: a process writes its message to
//! the very path of the spec. This project's Job binaries write their
//! result JSON there when given `--result-file=/dev/termination-log` (or
//! `BACKUP_RESULT_FILE` / `RESTORE_RESULT_FILE`), which the Job's pod spec
//! has to pass; the kubelet does not set any variable either.
//!
//! When the container exits, `state.terminated.message` is:
//!
//! - the last 4096 bytes of the file (`tail.ReadAtMost` in the kubelet);
//! - with `terminationMessagePolicy: FallbackToLogsOnError`, if the file is
//!   empty or missing and the exit code is not 0: the last 80 lines of the
//!   container's log, at most their last 2048 bytes;
//!
//! and each message of the pod's statuses is then cut to
//! 12 KiB / (containers + init containers), as the kubelet's status manager
//! does, so the pod's messages never exceed 12 KiB together.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use k8s_openapi::api::core::v1::Container;

use super::volumes::HOST_SYSTEM_DIRS;

/// `terminationMessagePath` when the spec leaves it empty (the API server
/// defaults it, so only hand-made specs get here).
pub const DEFAULT_PATH: &str = "/dev/termination-log";
/// Name of the host file in the container instance's folder.
pub const HOST_FILE_NAME: &str = "termination-log";
/// The kubelet's `MaxContainerTerminationMessageLength`.
pub const MAX_FILE_BYTES: usize = 4 * 1024;
/// The kubelet's `MaxPodTerminationMessageLogLength`.
pub const MAX_POD_BYTES: usize = 12 * 1024;
/// The kubelet's `MaxContainerTerminationMessageLogLength`.
pub const MAX_LOG_BYTES: usize = 2 * 1024;
/// The kubelet's `MaxContainerTerminationMessageLogLines`.
pub const MAX_LOG_LINES: usize = 80;

/// Folders where the file's mount point would have to be made on the host
/// (or in `/proc`, `/sys`, which take no files).
const REFUSED_DIRS: [&str; 3] = ["/proc", "/sys", "/.node-agent"];

/// The container's termination-message path, checked: absolute, no `..`,
/// and not in a folder the container shares with the host.
pub fn message_path(container: &Container) -> anyhow::Result<String> {
    let path = container
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    anyhow::ensure!(
        path.starts_with('/')
            && !path.ends_with('/')
            && !path.split('/').any(|c| c == ".." || c == "."),
        "container {}: terminationMessagePath {path:?} must be an absolute file path without `.` or `..`",
        container.name
    );
    if let Some(dir) = HOST_SYSTEM_DIRS
        .iter()
        .chain(REFUSED_DIRS.iter())
        .find(|d| path == **d || path.starts_with(&format!("{d}/")))
    {
        anyhow::bail!(
            "container {}: terminationMessagePath {path:?} is under {dir}, which the node agent \
             takes from the host; use a path elsewhere (default {DEFAULT_PATH})",
            container.name
        );
    }
    Ok(path)
}

/// Whether the container asked for `FallbackToLogsOnError`.
pub fn falls_back_to_logs(container: &Container) -> bool {
    container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
}

/// `reason` of a terminated container, as the kubelet sets it.
pub fn reason(exit_code: i32) -> &'static str {
    if exit_code == 0 { "Completed" } else { "Error" }
}

/// What the termination-message file held when the container exited.
#[derive(Debug)]
pub enum FileContent {
    /// Its last [`MAX_FILE_BYTES`] bytes (possibly empty).
    Read(Vec<u8>),
    Missing,
    /// It could not be read (the kubelet reports the error as the message).
    Unreadable(String),
}

/// The message, from the file and, when the policy says so, the log.
/// `log_tail` is called only when the log is needed and returns the log's
/// end (at least its last [`MAX_LOG_BYTES`] + 1 bytes, see
/// [`read_tail`]).
pub fn choose_message(
    file: FileContent,
    fallback_to_logs: bool,
    exit_code: i32,
    log_tail: impl FnOnce() -> std::io::Result<Vec<u8>>,
) -> String {
    let fallback = fallback_to_logs && exit_code != 0;
    match file {
        FileContent::Read(data) if !data.is_empty() => tail_text(&data, MAX_FILE_BYTES),
        FileContent::Unreadable(error) => format!("Error on reading termination log: {error}"),
        FileContent::Read(_) | FileContent::Missing if fallback => match log_tail() {
            Ok(log) => log_message(&log),
            Err(error) => format!("Error on reading termination message from logs: {error}"),
        },
        FileContent::Read(_) | FileContent::Missing => String::new(),
    }
}

/// The last [`MAX_LOG_LINES`] lines of `log`, at most their last
/// [`MAX_LOG_BYTES`] bytes. A final line without a newline counts.
pub fn log_message(log: &[u8]) -> String {
    // Skip the newline that ends the last line, then find the newline that
    // ends the line before the last MAX_LOG_LINES ones.
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(MAX_LOG_LINES - 1)
        .map_or(0, |(i, _)| i + 1);
    tail_text(&log[start..], MAX_LOG_BYTES)
}

/// The last `max` bytes of `data` as text: a character cut at the start is
/// dropped, other invalid UTF-8 becomes U+FFFD (as Go's JSON encoding of
/// the kubelet's string does).
pub fn tail_text(data: &[u8], max: usize) -> String {
    let mut start = data.len().saturating_sub(max);
    // At most 3 continuation bytes of a cut character.
    let limit = (start + 3).min(data.len());
    while start > 0 && start < limit && (data[start] & 0xC0) == 0x80 {
        start += 1;
    }
    String::from_utf8_lossy(&data[start..]).into_owned()
}

/// How many bytes each container's message may keep in the pod status:
/// [`MAX_POD_BYTES`] shared evenly by all containers (init included).
pub fn per_container_budget(containers: usize) -> usize {
    MAX_POD_BYTES / containers.max(1)
}

/// Cuts `message` to its first `max` bytes, on a character boundary.
pub fn truncate_start(message: &mut String, max: usize) {
    if message.len() > max {
        let mut end = max;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
}

/// The last `max` bytes of a file, without reading the rest.
pub fn read_tail(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let skip = len.saturating_sub(max as u64);
    file.seek(SeekFrom::Start(skip))?;
    let mut data = Vec::with_capacity(max.min(len as usize));
    file.take(max as u64).read_to_end(&mut data)?;
    Ok(data)
}

/// Reads the message of an exited container from its host files.
pub fn read_message(
    message_file: &Path,
    log_file: &Path,
    fallback_to_logs: bool,
    exit_code: i32,
) -> String {
    let file = match read_tail(message_file, MAX_FILE_BYTES) {
        Ok(data) => FileContent::Read(data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileContent::Missing,
        Err(e) => FileContent::Unreadable(format!("{}: {e}", message_file.display())),
    };
    // One byte more than kept, to know whether the first kept line is whole.
    choose_message(file, fallback_to_logs, exit_code, || {
        read_tail(log_file, MAX_LOG_BYTES + 1)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn container(path: Option<&str>, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            termination_message_path: path.map(Into::into),
            termination_message_policy: policy.map(Into::into),
            ..Container::default()
        }
    }

    fn no_log() -> std::io::Result<Vec<u8>> {
        panic!("the log must not be read")
    }

    #[test]
    fn paths_default_and_must_stay_out_of_host_folders() {
        assert_eq!(
            message_path(&container(None, None)).unwrap(),
            "/dev/termination-log"
        );
        assert_eq!(
            message_path(&container(Some(""), None)).unwrap(),
            "/dev/termination-log"
        );
        assert_eq!(
            message_path(&container(Some("/tmp/result.json"), None)).unwrap(),
            "/tmp/result.json"
        );
        for bad in [
            "relative",
            "/tmp/../etc/x",
            "/tmp/",
            "/usr/x",
            "/proc/1/x",
            "/lib",
        ] {
            assert!(
                message_path(&container(Some(bad), None)).is_err(),
                "{bad} refused"
            );
        }
        assert!(falls_back_to_logs(&container(
            None,
            Some("FallbackToLogsOnError")
        )));
        assert!(!falls_back_to_logs(&container(None, Some("File"))));
        assert_eq!(
            (reason(0), reason(1), reason(137)),
            ("Completed", "Error", "Error")
        );
    }

    #[test]
    fn the_file_wins_and_keeps_its_last_4096_bytes() {
        let msg = choose_message(FileContent::Read(b"done".to_vec()), true, 1, no_log);
        assert_eq!(msg, "done");
        let mut big = vec![b'a'; 100];
        big.extend(vec![b'b'; MAX_FILE_BYTES]);
        assert_eq!(tail_text(&big, MAX_FILE_BYTES), "b".repeat(MAX_FILE_BYTES));
        // A character cut by the limit is dropped, not garbled.
        let text = "é".repeat(3000); // 2 bytes each: an odd limit cuts one
        assert_eq!(tail_text(text.as_bytes(), 4095), "é".repeat(2047));
        assert_eq!(tail_text(text.as_bytes(), 4096), "é".repeat(2048));
        assert_eq!(tail_text(b"\xffok", 10), "\u{fffd}ok");
    }

    #[test]
    fn logs_are_used_only_on_failure_with_an_empty_file_and_the_fallback_policy() {
        let log = || Ok(b"boom\n".to_vec());
        assert_eq!(
            choose_message(FileContent::Read(Vec::new()), true, 2, log),
            "boom\n"
        );
        assert_eq!(choose_message(FileContent::Missing, true, 2, log), "boom\n");
        assert_eq!(
            choose_message(FileContent::Read(Vec::new()), true, 0, no_log),
            "",
            "success never reads the log"
        );
        assert_eq!(
            choose_message(FileContent::Read(Vec::new()), false, 2, no_log),
            "",
            "policy File never reads the log"
        );
        assert_eq!(
            choose_message(FileContent::Read(b" ".to_vec()), true, 2, no_log),
            " ",
            "a non-empty file wins"
        );
        let unreadable = choose_message(FileContent::Unreadable("denied".into()), true, 2, no_log);
        assert!(unreadable.contains("denied"), "{unreadable}");
        let failed = choose_message(FileContent::Missing, true, 2, || {
            Err(std::io::Error::other("gone"))
        });
        assert!(failed.contains("gone"), "{failed}");
    }

    #[test]
    fn log_fallback_keeps_80_lines_and_2048_bytes() {
        let lines: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let msg = log_message(lines.as_bytes());
        assert!(
            msg.starts_with("line 21\n") && msg.ends_with("line 100\n"),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 80);
        // Without a final newline the last partial line counts as a line.
        let msg = log_message(b"a\nb\nc");
        assert_eq!(msg, "a\nb\nc");
        let long: String = (0..10)
            .map(|i| format!("{i}{}\n", "x".repeat(400)))
            .collect();
        let msg = log_message(long.as_bytes());
        assert_eq!(msg.len(), MAX_LOG_BYTES);
        assert!(msg.ends_with(&format!("9{}\n", "x".repeat(400))));
        assert_eq!(log_message(b""), "");
    }

    #[test]
    fn pod_budget_splits_12_kib_evenly_on_char_boundaries() {
        assert_eq!(per_container_budget(0), MAX_POD_BYTES);
        assert_eq!(per_container_budget(1), MAX_POD_BYTES);
        assert_eq!(per_container_budget(3), 4096);
        assert_eq!(per_container_budget(5), 2457);
        let mut m = "abcdé".to_string(); // é is bytes 4..6
        truncate_start(&mut m, 5);
        assert_eq!(m, "abcd");
        let mut m = "short".to_string();
        truncate_start(&mut m, 100);
        assert_eq!(m, "short");
    }

    #[test]
    fn files_are_read_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_tail(&path, 4).unwrap(), b"6789");
        assert_eq!(read_tail(&path, 40).unwrap(), b"0123456789");
        let log = dir.path().join("log");
        std::fs::write(&log, "starting\nfatal: no bucket\n").unwrap();
        assert_eq!(
            read_message(&dir.path().join("missing"), &log, true, 1),
            "starting\nfatal: no bucket\n"
        );
        assert_eq!(read_message(&path, &log, true, 1), "0123456789");
        assert_eq!(
            read_message(&dir.path().join("missing"), &log, false, 1),
            ""
        );
    }
}
