//! A failed connection says why, at warn, on both sides, with the fix: a wrong
//! `uplink.server_name` (both sides name it), and an agent certificate from another CA (the
//! aggregator names it; the agent only sees its connection dropped, with the peer's reason
//! when it arrives in time). `/api/v1/agents` shows each agent's link (connected or not,
//! since when, last error) and the connections refused before an agent session began.

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
    let refused = wait_for(
        "the refusal in /api/v1/agents",
        Duration::from_secs(10),
        || {
            let report = fleet.client().get("/api/v1/agents", &[]).ok()?;
            report["refused"]
                .as_array()?
                .iter()
                .find(|r| r["kind"] == "unknown-ca")
                .cloned()
        },
    );
    assert_eq!(refused["peer"], "127.0.0.1", "{refused:#}");
    assert!(refused["count"].as_u64().unwrap() >= 1, "{refused:#}");
    assert!(
        refused["fix"]
            .as_str()
            .unwrap()
            .contains("pitot certs init"),
        "{refused:#}"
    );
    assert!(
        refused["agent"].is_null(),
        "an unverified certificate names nobody"
    );
    // In the audit trail once a minute per peer and kind, however often the agent retries.
    let audited = wait_for(
        "the refusal in the audit trail",
        Duration::from_secs(10),
        || {
            let v = fleet
                .client()
                .get(
                    "/api/v1/audit",
                    &[("kind", "connection.refused".to_owned())],
                )
                .ok()?;
            let list = v["entries"].as_array()?.clone();
            (!list.is_empty()).then_some(list)
        },
    );
    assert_eq!(audited.len(), 1, "{audited:#?}");
    assert_eq!(audited[0]["subject"], "127.0.0.1");
    assert_eq!(audited[0]["detail"]["kind"], "unknown-ca");
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

#[test]
fn an_agent_id_that_is_not_its_certificates_is_refused_and_shown() {
    let mut fleet = Fleet::new(&["gpu-i"]);
    fleet.start_aggregator();
    fleet.agent_env = vec![("PITOT_AGENT__AGENT_ID".into(), "gpu-other".into())];
    fleet.start_agent("gpu-i");
    let refused = wait_for(
        "the refusal in /api/v1/agents",
        Duration::from_secs(30),
        || {
            let report = fleet.client().get("/api/v1/agents", &[]).ok()?;
            report["refused"]
                .as_array()?
                .iter()
                .find(|r| r["kind"] == "identity-mismatch")
                .cloned()
        },
    );
    assert_eq!(refused["agent"], "gpu-i", "{refused:#}");
    assert!(
        refused["reason"].as_str().unwrap().contains("gpu-other"),
        "{refused:#}"
    );
    let text = pitot::report::agents_table(
        &pitot::report::typed(&fleet.client().get("/api/v1/agents", &[]).unwrap()).unwrap(),
    );
    assert!(text.contains("Refused connections"), "{text}");
    assert!(text.contains("identity-mismatch"), "{text}");
    let line = wait_for("the agent's warning", Duration::from_secs(30), || {
        fleet.agents["gpu-i"]
            .log_text()
            .lines()
            .find(|l| l.contains("WARN") && l.contains("Uplink connection lost"))
            .map(str::to_owned)
    });
    assert!(line.contains("agent_id must be the name"), "{line}");
}

#[test]
fn a_working_link_shows_connected_then_disconnected() {
    let mut fleet = Fleet::new(&["gpu-l"]);
    fleet.start_aggregator();
    fleet.start_agent("gpu-l");
    let agent = wait_for("the agent connected", Duration::from_secs(30), || {
        let report = fleet.client().get("/api/v1/agents", &[]).ok()?;
        report["agents"]
            .as_array()?
            .iter()
            .find(|a| a["id"] == "gpu-l" && a["connection"]["state"] == "connected")
            .cloned()
    });
    assert!(agent["connection"]["since"].is_string(), "{agent:#}");
    assert!(
        agent["connection"]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{agent:#}"
    );
    let text = pitot::report::agents_table(
        &pitot::report::typed(&fleet.client().get("/api/v1/agents", &[]).unwrap()).unwrap(),
    );
    assert!(text.contains("up since"), "{text}");
    // A killed agent: its connection times out (30 s idle) or is reset; either way it ends.
    fleet.kill_agent("gpu-l");
    let agent = wait_for("the link down", Duration::from_secs(60), || {
        let report = fleet.client().get("/api/v1/agents", &[]).ok()?;
        report["agents"]
            .as_array()?
            .iter()
            .find(|a| a["id"] == "gpu-l" && a["connection"]["state"] == "disconnected")
            .cloned()
    });
    assert!(
        agent["connection"]["last_error"].is_string(),
        "a killed agent's link ends with an error: {agent:#}"
    );
}
