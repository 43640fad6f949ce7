//! The mistakes of a newcomer's first hour get an answer that names the fix: a demo whose port
//! is taken, `certs init` run again to add agents, a `--url` without a scheme.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::bin;

#[test]
fn a_taken_demo_port_is_named_with_the_flag_that_moves_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(bin("pitot"))
        .args(["demo", "--duration", "5s", "--http", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("--http"), "{err}");
}

#[test]
fn certs_init_again_keeps_the_fleet_and_refuses_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(bin("pitot"))
            .args(["certs", "init", "--dir", d])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["--agents", "a1"]).status.success());
    let before = std::fs::read(dir.path().join("aggregator.pem")).unwrap();
    let again = run(&["--agents", "a1,a2"]);
    assert!(again.status.success());
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(said.contains("kept") && said.contains("a2.pem"), "{said}");
    assert_eq!(
        std::fs::read(dir.path().join("aggregator.pem")).unwrap(),
        before
    );
    let renamed = run(&["--aggregator-name", "other", "--agents", "a3"]);
    assert!(!renamed.status.success());
    let err = String::from_utf8_lossy(&renamed.stderr);
    assert!(err.contains("--reissue aggregator"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("aggregator.pem")).unwrap(),
        before
    );
}

#[test]
fn a_url_without_a_scheme_is_plain_http() {
    let mut fleet = common::Fleet::new(&[]);
    fleet.start_aggregator();
    let url = fleet.url().trim_start_matches("http://").to_owned();
    let out = Command::new(bin("pitot"))
        .args(["report", "agents", "--url", &url, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["agents"].is_array(), "{v}");
}

#[test]
fn a_demo_stopped_early_reports_only_what_happened() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let http = format!("127.0.0.1:{}", common::free_tcp_port());
    let child = Command::new(bin("pitot"))
        .args(["demo", "--http", &http, "--every", "1s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Ctrl-C a few seconds in: before the slowdown (+20 s) and the drift (+30 s).
    std::thread::sleep(std::time::Duration::from_secs(6));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("(exact)"), "{text}");
    assert!(
        text.contains("stopped before gpu-host-2's scripted slowdown"),
        "{text}"
    );
    assert!(text.contains("no drift to report"), "{text}");
    assert!(
        !text.contains("got 5x slower") && !text.contains("unavailable"),
        "{text}"
    );
}

#[test]
fn validate_refuses_certificates_run_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pitot::certs::init(d, "pitot-aggregator", &["a1".to_owned(), "a2".to_owned()]).unwrap();
    let agent = |cert: &str, key: &str| {
        let path = d.join("agent.toml");
        std::fs::write(
            &path,
            format!(
                "agent_id = \"a1\"\n[uplink]\naggregator = \"127.0.0.1:7443\"\n\
                 ca = \"{0}/ca.pem\"\ncert = \"{0}/{cert}\"\nkey = \"{0}/{key}\"\n\
                 [spool]\ndir = \"{0}/spool\"\n",
                d.display()
            ),
        )
        .unwrap();
        Command::new(bin("pitot-agent"))
            .args(["validate", "--config", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let ok = agent("a1.pem", "a1.key");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for (cert, key, why) in [
        ("missing.pem", "a1.key", "missing certificate"),
        ("a1.key", "a1.key", "a key where the certificate should be"),
        ("a1.pem", "a2.key", "another certificate's key"),
    ] {
        let out = agent(cert, key);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{why}: {err}");
        assert!(
            err.contains("uplink.cert") && err.contains("fix:"),
            "{why}: {err}"
        );
    }
    // The aggregator's side: a missing key.
    let path = d.join("aggregator.toml");
    std::fs::write(
        &path,
        format!(
            "[quic]\nca = \"{0}/ca.pem\"\ncert = \"{0}/aggregator.pem\"\nkey = \"{0}/nope.key\"\n\
             [store]\ndir = \"{0}/store\"\n",
            d.display()
        ),
    )
    .unwrap();
    let out = Command::new(bin("pitot-aggregator"))
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("quic.key"), "{err}");
}
