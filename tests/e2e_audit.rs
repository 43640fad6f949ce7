//! The audit trail with the real binaries: configuration loads (with a diff), an agent's
//! enrolment and a certificate change, first sightings of a version, refused tokens; the chain
//! verifies with `pitot audit verify`; then a byte of one entry is flipped in the stopped
//! aggregator's store (as an intruder with the disk would) and verify names that entry.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{Fleet, bin, wait_for};
use serde_json::Value;

fn entries(fleet: &Fleet, kind: &str) -> Vec<Value> {
    fleet
        .client()
        .get("/api/v1/audit", &[("kind", kind.to_owned())])
        .map(|v| v["entries"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

fn verify(fleet: &Fleet) -> std::process::Output {
    Command::new(bin("pitot"))
        .args(["audit", "verify", "--url", &fleet.url()])
        .output()
        .expect("pitot runs")
}

#[test]
fn the_audit_chain_records_verifies_and_names_a_tampered_entry() {
    let mut fleet = Fleet::new(&["h1"]);
    fleet.aggregator_extra = "[[model]]\nname = \"llama3\"\nowner = \"search\"\n".into();
    fleet.start_aggregator();
    fleet.start_agent("h1");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        b"request.latency:7|ms|#model:llama3,version:v1",
        fleet.udp_addr("h1"),
    )
    .unwrap();
    fleet.wait_for_count("request.latency", 1, Duration::from_secs(30));
    let first = wait_for("a first sighting", Duration::from_secs(10), || {
        entries(&fleet, "version.first_seen").into_iter().next()
    });
    assert_eq!(first["subject"], "llama3/v1@h1");
    let enrolled = wait_for("an enrolment", Duration::from_secs(10), || {
        entries(&fleet, "agent.enrolled").into_iter().next()
    });
    assert_eq!(enrolled["subject"], "h1");
    assert_eq!(
        enrolled["detail"]["fingerprint"].as_str().map(str::len),
        Some(64)
    );

    // A new certificate for h1: a change, not a second enrolment.
    fleet.kill_agent("h1");
    pitot::certs::init_with(
        &fleet.path("certs"),
        "pitot-aggregator",
        &["h1".to_owned()],
        &["h1".to_owned()],
    )
    .unwrap();
    fleet.start_agent("h1");
    let changed = wait_for("a certificate change", Duration::from_secs(20), || {
        entries(&fleet, "agent.certificate_changed")
            .into_iter()
            .next()
    });
    assert_eq!(
        changed["detail"]["previous"],
        enrolled["detail"]["fingerprint"]
    );
    assert_eq!(entries(&fleet, "agent.enrolled").len(), 1);

    // A restart with another configuration: loaded again, with the diff.
    fleet.kill_agent("h1");
    fleet.kill_aggregator();
    fleet.aggregator_extra = "[[model]]\nname = \"llama3\"\nowner = \"search-ranking\"\n".into();
    fleet.start_aggregator();
    let loads = entries(&fleet, "config.loaded");
    assert_eq!(loads.len(), 2, "{loads:#?}");
    let diff = &loads[1]["detail"];
    assert_eq!(diff["changed"], true);
    assert!(
        diff["added"][0]
            .as_str()
            .unwrap()
            .contains("owner=search-ranking"),
        "{diff}"
    );
    assert!(
        diff["removed"][0]
            .as_str()
            .unwrap()
            .contains("owner=search "),
        "{diff}"
    );

    let ok = verify(&fleet);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("Audit trail intact"), "{text}");
    let list = Command::new(bin("pitot"))
        .args(["audit", "list", "--url", &fleet.url(), "--jsonl"])
        .output()
        .unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() >= 5, "{lines:#?}");
    let victim = lines
        .iter()
        .find(|e| e["kind"] == "agent.enrolled")
        .expect("the enrolment")["seq"]
        .as_u64()
        .unwrap();

    // The intruder: one byte of the enrolment entry, with the aggregator stopped.
    fleet.kill_aggregator();
    {
        let db = sled::open(fleet.path("store")).expect("the store opens");
        let tree = db.open_tree("audit").unwrap();
        let key = victim.to_be_bytes();
        let mut bytes = tree.get(key).unwrap().expect("the entry").to_vec();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        tree.insert(key, bytes).unwrap();
        db.flush().unwrap();
    }
    fleet.start_aggregator();
    let broken = verify(&fleet);
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success());
    assert!(err.contains(&format!("broken at entry {victim}:")), "{err}");
    // A clean stop still works with the audit sink in place (it holds a merge-queue sender).
    let aggregator = fleet.aggregator.take().expect("running");
    assert!(aggregator.terminate().success());
}
