//! A failed connection says why, at warn, on both sides, with the fix: a wrong
//! `uplink.server_name` (both sides name it), and an agent certificate from another CA (the
//! aggregator names it; the agent only sees its connection dropped, with the peer's reason
//! when it arrives in time).

mod common;

use std::time::Duration;

use common::{Fleet, wait_for};

fn aggregator_log(fleet: &Fleet) -> String {
    fleet
        .aggregator
        .as_ref()
        .map(|p| p.log_text())
        .unwrap_or_default()
}

#[test]
fn a_wrong_server_name_is_named_on_both_sides() {
    let mut fleet = Fleet::new(&["gpu-n"]);
    fleet.start_aggregator();
    fleet.agent_env = vec![(
        "PITOT_AGENT__UPLINK__SERVER_NAME".into(),
        "not-the-aggregator".into(),
    )];
    fleet.start_agent("gpu-n");
    let line = wait_for("the agent's warning", Duration::from_secs(30), || {
        let log = fleet.agents["gpu-n"].log_text();
        log.lines()
            .find(|l| l.contains("WARN") && l.contains("Cannot connect to the aggregator"))
            .map(str::to_owned)
    });
    assert!(line.contains("not valid for name"), "{line}");
    assert!(
        line.contains("uplink.server_name is not the name"),
        "{line}"
    );
    assert!(line.contains("spooled_batches="), "{line}");
    wait_for("the aggregator's warning", Duration::from_secs(30), || {
        aggregator_log(&fleet)
            .lines()
            .any(|l| l.contains("WARN") && l.contains("Refused an agent's connection"))
            .then_some(())
    });
    // Rate-limited: one line a minute per kind while it goes on.
    std::thread::sleep(Duration::from_secs(4));
    let warnings = fleet.agents["gpu-n"]
        .log_text()
        .lines()
        .filter(|l| l.contains("Cannot connect to the aggregator"))
        .count();
    assert_eq!(warnings, 1, "{}", fleet.agents["gpu-n"].log_text());
}

#[test]
fn a_certificate_from_another_ca_is_named_on_both_sides() {
    let mut fleet = Fleet::new(&["gpu-c"]);
    let other = fleet.path("other-ca");
    pitot::certs::init(&other, "pitot-aggregator", &["gpu-c".to_owned()]).unwrap();
    fleet.start_aggregator();
    let pem = other.join("gpu-c.pem").display().to_string();
    let key = other.join("gpu-c.key").display().to_string();
    fleet.agent_env = vec![
        ("PITOT_AGENT__UPLINK__CERT".into(), pem),
        ("PITOT_AGENT__UPLINK__KEY".into(), key),
    ];
    fleet.start_agent("gpu-c");
    let line = wait_for("the aggregator's warning", Duration::from_secs(30), || {
        aggregator_log(&fleet)
            .lines()
            .find(|l| l.contains("WARN") && l.contains("Refused an agent's connection"))
            .map(str::to_owned)
    });
    assert!(line.contains("not issued by quic.ca"), "{line}");
    // The agent sees the refusal after its handshake completed (TLS 1.3 checks the client's
    // certificate last): a lost connection at warn, with the peer's reason when quinn has it.
    wait_for("the agent's warning", Duration::from_secs(30), || {
        fleet.agents["gpu-c"]
            .log_text()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("Uplink connection lost"))
            .then_some(())
    });
}
