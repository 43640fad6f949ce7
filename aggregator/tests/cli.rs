//! The `pitot-aggregator` binary's command line: `validate` finds nothing wrong in the shipped
//! example but its missing certificates (exit 64 naming them), and exits 64 (EX_USAGE) naming
//! the bad key otherwise. (It also makes `cargo test --workspace` build
//! the binary that the root package's end-to-end tests start.)

use std::process::Command;

fn aggregator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pitot-aggregator"))
}

#[test]
fn validate_accepts_the_example_and_names_bad_keys() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/aggregator.toml");
    // The example's settings are all valid; what it lacks here is the TLS files it names
    // (/etc/pitot/tls/…), which validate loads as the daemon would, and says so alone.
    let ok = aggregator()
        .args(["validate", "--config", example])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&ok.stderr);
    assert_eq!(ok.status.code(), Some(64), "{said}");
    assert!(
        said.contains("quic.ca / quic.cert / quic.key") && said.contains("fix:"),
        "{said}"
    );
    let errors = said.lines().filter(|l| l.starts_with("error")).count();
    assert_eq!(errors, 1, "only the TLS files: {said}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[retention]\n\"10s\" = \"whenever\"\n").unwrap();
    let out = aggregator()
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retention.10s"), "{err}");
}
