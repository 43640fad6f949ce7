//! The `pitot-agent` binary's command line: `validate` exits 0 on the shipped example and 64
//! (EX_USAGE) with every problem named by key on a bad file; `--help` explains the commands.
//! (Having an integration test here also makes `cargo test --workspace` build the binary that
//! the root package's end-to-end tests start.)

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pitot-agent"))
}

#[test]
fn validate_accepts_the_example_and_names_bad_keys() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/agent.toml");
    let ok = agent()
        .args(["validate", "--config", example])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "interval = \"often\"\n[spool]\nmax_bytes = \"lots\"\n",
    )
    .unwrap();
    let out = agent()
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`interval`") && err.contains("`spool.max_bytes`"),
        "{err}"
    );

    let missing = agent()
        .args(["run", "--config", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
}

#[test]
fn help_lists_the_commands() {
    let out = agent().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("run") && text.contains("validate"), "{text}");
}
