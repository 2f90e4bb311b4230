//! The README's run command comes up and leaves a working environment file.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn devenv_comes_up_and_prints_how_to_connect() {
    let output = Command::new(env!("CARGO_BIN_EXE_devenv"))
        .args(["--exit-when-ready", "--nodes", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "devenv failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("installed CRD openbaoclusters.openbao.org"),
        "{stdout}"
    );
    assert!(stdout.contains("Raft voters: node-0"), "{stdout}");
    assert!(stdout.contains("source "), "{stdout}");
    // The setup token stays in its 0600 file; it is never printed.
    let leaked: Vec<_> = stdout
        .split_whitespace()
        .filter(|w| looks_like_token(w))
        .collect();
    assert!(
        leaked.is_empty(),
        "token-like words were printed: {leaked:?}"
    );
}

/// OpenBao service tokens look like `s.` followed by 24 alphanumerics.
fn looks_like_token(word: &str) -> bool {
    word.strip_prefix("s.")
        .or_else(|| word.strip_prefix("hvs."))
        .is_some_and(|rest| rest.len() >= 20 && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}
