//! The `pitot-aggregator` binary's command line: `validate` exits 0 on the shipped example and
//! 64 (EX_USAGE) naming the bad key otherwise. (It also makes `cargo test --workspace` build
//! the binary that the root package's end-to-end tests start.)

use std::process::Command;

fn aggregator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pitot-aggregator"))
}

#[test]
fn validate_accepts_the_example_and_names_bad_keys() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/aggregator.toml");
    let ok = aggregator()
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
