//! The README's run command brings up the controller on the local control
//! plane, which turns the Development sample into OpenBao pods; it says how
//! to connect, prints no secret, and removes everything when it exits.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[test]
fn devenv_runs_openbao_pods_that_form_a_raft_cluster_and_prints_how_to_connect() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_devenv"))
        .arg("--exit-when-ready")
        // The test checks that the files go away.
        .env_remove("KEEP_TEST_ENV")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "devenv failed:\n{stdout}\n{stderr}"
    );
    eprintln!("devenv came up and went down in {:?}", started.elapsed());
    assert!(
        stdout.contains("installed CRD openbaoclusters.openbao.org"),
        "{stdout}"
    );
    // The controller made the sample an Available cluster: three pods passed
    // their readiness probe (initialized and unsealed) and autopilot counts
    // each as a voter.
    assert!(stdout.contains("started the controller"), "{stdout}");
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
