//! A version rollout across three agents, read back as the deployment timeline: which version
//! served on which host, from when to when, built from the batches' own `model`/`version`
//! tags and kept across an aggregator restart.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{Fleet, bin, wait_for};
use serde_json::Value;

fn timeline(fleet: &Fleet) -> Option<Value> {
    fleet
        .client()
        .get("/api/v1/models/llama3/timeline", &[])
        .ok()
}

fn entry<'a>(t: &'a Value, version: &str, host: &str) -> &'a Value {
    t["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["version"] == version && e["host"] == host)
        .unwrap_or_else(|| panic!("no {version} on {host}: {t:#}"))
}

#[test]
fn a_rollout_across_three_agents_is_the_timeline() {
    let hosts = ["h1", "h2", "h3"];
    let mut fleet = Fleet::new(&hosts);
    fleet.start_aggregator();
    for h in hosts {
        fleet.start_agent(h);
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Two minutes ago every host served v1; now h1 and h2 serve v2 and h3 still v1.
    let then = now_s - 120;
    for h in hosts {
        let line = format!("request.latency:5|ms|#model:llama3,version:v1|T{then}");
        udp.send_to(line.as_bytes(), fleet.udp_addr(h)).unwrap();
    }
    for (h, v) in [("h1", "v2"), ("h2", "v2"), ("h3", "v1")] {
        let line = format!("request.latency:6|ms|#model:llama3,version:{v}");
        udp.send_to(line.as_bytes(), fleet.udp_addr(h)).unwrap();
    }
    fleet.wait_for_count("request.latency", 6, Duration::from_secs(30));
    let t = wait_for("five timeline entries", Duration::from_secs(10), || {
        timeline(&fleet).filter(|t| t["entries"].as_array().map(Vec::len) == Some(5))
    });
    let ms = |s: &Value| {
        humantime::parse_rfc3339(s.as_str().unwrap())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let then_ms = then as i64 * 1000;
    for h in hosts {
        let v1 = entry(&t, "v1", h);
        assert_eq!(ms(&v1["first_seen"]), then_ms, "{v1:#}");
    }
    // h1 and h2 moved on: their v1 ended with its one interval, and is not live.
    for h in ["h1", "h2"] {
        let v1 = entry(&t, "v1", h);
        assert_eq!(ms(&v1["last_seen"]), then_ms + 1000, "{v1:#}");
        assert_eq!(v1["live"], false);
        let v2 = entry(&t, "v2", h);
        let first = ms(&v2["first_seen"]);
        assert!(
            (first - now_s as i64 * 1000).abs() <= 2_000,
            "{v2:#} vs {now_s}"
        );
        assert_eq!(v2["live"], true);
    }
    assert_eq!(entry(&t, "v1", "h3")["live"], true);
    assert!(
        t["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !(e["version"] == "v2" && e["host"] == "h3")),
        "h3 never served v2: {t:#}"
    );
    assert_eq!(
        t["live"],
        serde_json::json!([["v1", 1], ["v2", 2]]),
        "{t:#}"
    );

    // Stored: the same after a restart.
    fleet.kill_aggregator();
    fleet.start_aggregator();
    let again = timeline(&fleet).expect("timeline after restart");
    assert_eq!(again["entries"], t["entries"]);

    let out = Command::new(bin("pitot"))
        .args([
            "report",
            "timeline",
            "--model",
            "llama3",
            "--url",
            &fleet.url(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("v2 on 2 hosts"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("v1 ")).count(),
        3,
        "{text}"
    );

    // A model nothing was seen for is a 404 that says where the timeline comes from.
    let err = fleet
        .client()
        .get("/api/v1/models/gpt-9/timeline", &[])
        .unwrap_err();
    assert!(err.to_string().contains("model:gpt-9"), "{err}");
}
