//! The `pitot-agent` binary's command line: `validate` finds nothing wrong in the shipped
//! example but its missing certificates (exit 64 naming them), and exits 64 (EX_USAGE) with
//! every problem named by key on a bad file; `--help` explains the commands.
//! (Having an integration test here also makes `cargo test --workspace` build the binary that
//! the root package's end-to-end tests start.)

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pitot-agent"))
}

#[test]
fn validate_accepts_the_example_and_names_bad_keys() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/agent.toml");
    // The example's settings are all valid; what it lacks here is the TLS files it names
    // (/etc/pitot/tls/…), which validate loads as the daemon would, and says so alone.
    let ok = agent()
        .args(["validate", "--config", example])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&ok.stderr);
    assert_eq!(ok.status.code(), Some(64), "{said}");
    assert!(
        said.contains("uplink.ca / uplink.cert / uplink.key") && said.contains("fix:"),
        "{said}"
    );
    let errors = said.lines().filter(|l| l.starts_with("error")).count();
    assert_eq!(errors, 1, "only the TLS files: {said}");

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
