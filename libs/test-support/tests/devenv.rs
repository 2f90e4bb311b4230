//! The README's run command installs the operator on the local control
//! plane (the controller as a pod of its image), which turns the Development sample into OpenBao pods; it backs the
//! cluster up to a local S3 server, says how to connect, prints no secret,
//! and removes everything when it is stopped.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// devenv's last line once everything is up; it then waits for Ctrl-C.
const WAITING: &str = "Press Ctrl-C to stop and remove everything.";

#[test]
fn devenv_runs_openbao_pods_that_form_a_raft_cluster_and_prints_how_to_connect() {
    let started = Instant::now();
    // Without --exit-when-ready, so that the backup files can be looked at
    // while devenv runs; SIGTERM then stops it as Ctrl-C would.
    let mut child = Command::new(env!("CARGO_BIN_EXE_devenv"))
        // The test checks that the files go away.
        .env_remove("KEEP_TEST_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let stdout_pipe = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    let stdout_reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout_pipe).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Everything up within the slow-timeout's budget, or stop it and fail.
    let deadline = started + Duration::from_secs(270);
    let mut stdout = String::new();
    let mut ready = false;
    while let Ok(line) = received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        stdout.push_str(&line);
        stdout.push('\n');
        if line == WAITING {
            ready = true;
            break;
        }
    }
    eprintln!("devenv came up in {:?}", started.elapsed());

    // The first backup, while devenv (and its S3 server) still runs: its
    // snapshot and manifest lie in the folder devenv printed.
    let backup = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Backup "))
        .find_map(|l| l.split_once(" is in "));
    let backup_files = backup.map(|(what, folder)| {
        let name = what.split_whitespace().next().unwrap_or_default();
        let folder = Path::new(folder);
        (
            folder.to_path_buf(),
            folder.join(format!("{name}.snap")),
            folder.join(format!("{name}.json")),
        )
    });
    let found = backup_files
        .as_ref()
        .map(|(_, snap, manifest)| (std::fs::metadata(snap).ok(), std::fs::read(manifest).ok()));

    // Stop it as Ctrl-C would (it may already have exited on an error).
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let status = child.wait().unwrap();
    stdout_reader.join().unwrap();
    for line in received.try_iter() {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let stderr = stderr_reader.join().unwrap();
    assert!(
        ready && status.success(),
        "devenv failed or was not ready within 270s ({status}):\n{stdout}\n{stderr}"
    );
    eprintln!("devenv came up and went down in {:?}", started.elapsed());
    // A newcomer reads what devenv says: no Rust Debug text and no client
    // errors from the API server's start.
    for noise in ["Some(", "None,", " ERROR "] {
        assert!(
            !stdout.contains(noise) && !stderr.contains(noise),
            "devenv printed {noise:?}:\n{stdout}\n{stderr}"
        );
    }
    assert!(
        stdout.contains("  phase Pending")
            || stdout.contains("  phase Initializing")
            || stdout.contains("  phase Running"),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l == "stopping..."), "{stdout}");
    // The operator was installed from the overlay, and its controller runs
    // as a pod of the controller image and leads.
    assert!(
        stdout.contains("applied manifests/overlays/development"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "the controller runs as pod openbao-operator-system/openbao-operator-controller-"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("the controller made ")
            && stdout.contains(
                " requests, all as system:serviceaccount:openbao-operator-system:openbao-operator\n"
            ),
        "{stdout}"
    );
    assert!(
        stdout.contains("Controller pod memory: peak RSS "),
        "{stdout}"
    );
    // The controller made the sample an Available cluster: three pods passed
    // their readiness probe (initialized and unsealed) and autopilot counts
    // each as a voter.
    assert!(
        stdout.contains("Pods ready: dev-0, dev-1, dev-2\n"),
        "{stdout}"
    );
    let voters = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Raft voters: "))
        .unwrap_or_else(|| panic!("no voters line:\n{stdout}"));
    let mut voters: Vec<&str> = voters.split(", ").collect();
    voters.sort();
    assert_eq!(voters, ["dev-0", "dev-1", "dev-2"], "{stdout}");
    let active = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Active: "))
        .unwrap_or_else(|| panic!("no active pod line:\n{stdout}"));
    assert!(
        active.starts_with("dev-") && active.contains("https://10.244."),
        "the active pod by name and by its address on the agent's bridge: {active}"
    );

    // The environment file and the agent's pod folders were real, and are
    // gone once devenv has exited.
    let env_file = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("source "))
        .unwrap_or_else(|| panic!("no `source` line:\n{stdout}"));
    assert!(env_file.ends_with("/env.sh"), "{env_file}");
    assert!(!Path::new(env_file).exists(), "{env_file} left behind");
    let pod_logs = stdout
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .last()
                .filter(|w| w.ends_with("/pods/*/logs/"))
        })
        .unwrap_or_else(|| panic!("no pod log hint:\n{stdout}"));
    let agent_dir = pod_logs.trim_end_matches("/pods/*/logs/");
    assert!(!Path::new(agent_dir).exists(), "{agent_dir} left behind");

    // Backups: the sample's trigger ran one right away, into the local S3
    // server; its files were there while devenv ran, and are gone with it.
    let (folder, snap, manifest_file) =
        backup_files.unwrap_or_else(|| panic!("no backup line:\n{stdout}"));
    let (snap_meta, manifest) = found.unwrap();
    assert!(
        snap_meta.is_some_and(|m| m.is_file() && m.len() > 0),
        "{} missing or empty:\n{stdout}",
        snap.display()
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &manifest.unwrap_or_else(|| panic!("{} missing:\n{stdout}", manifest_file.display())),
    )
    .unwrap();
    assert!(manifest["sha256"].is_string(), "{manifest}");
    assert!(
        folder.to_string_lossy().contains("/openbao-operator-s3-")
            && folder.ends_with("backups/openbao/default/dev"),
        "the sample's bucket and prefix, then namespace and cluster: {}",
        folder.display()
    );
    assert!(!folder.exists(), "{} left behind", folder.display());
    // The restore drill's outcome (or that it has none yet) is reported,
    // and so is where to look.
    assert!(
        stdout.lines().any(|l| l.starts_with("Restore drill ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("kubectl get openbaocluster -n default dev -o jsonpath='{.status.backup}'"),
        "{stdout}"
    );

    // The setup token stays in its 0600 file; it is never printed.
    let leaked: Vec<_> = stdout
        .split_whitespace()
        .chain(stderr.split_whitespace())
        .filter(|w| looks_like_token(w))
        .collect();
    assert!(
        leaked.is_empty(),
        "token-like words were printed: {leaked:?}"
    );
    // Nor is the S3 server's secret key (40 hex digits), which devenv put
    // in the credentials Secret.
    let leaked: Vec<_> = stdout
        .split(|c: char| !c.is_ascii_hexdigit())
        .chain(stderr.split(|c: char| !c.is_ascii_hexdigit()))
        .filter(|w| w.len() == 40)
        .collect();
    assert!(leaked.is_empty(), "key-like words were printed: {leaked:?}");
}

/// OpenBao service tokens look like `s.` followed by 24 alphanumerics.
fn looks_like_token(word: &str) -> bool {
    let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.');
    word.strip_prefix("s.")
        .or_else(|| word.strip_prefix("hvs."))
        .is_some_and(|rest| rest.len() >= 20 && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[test]
fn token_detector_sees_tokens_in_punctuation() {
    assert!(looks_like_token("\"s.AbCdEfGhIjKlMnOpQrStUvWx\","));
    assert!(looks_like_token("hvs.AbCdEfGhIjKlMnOpQrStUvWx"));
    assert!(!looks_like_token("openbao-0.openbao.default.svc"));
}
