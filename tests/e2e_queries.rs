//! Queries that cannot be answered say why: a metric with no data yet names the interval it is
//! waiting for, a misspelt parameter or a `group_by` tag no series has is a 400 that lists what
//! would work, filters that exclude every series say so. `pitot report counters` exists, and
//! tables carry their values' unit.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{Fleet, bin, wait_for};

fn error_of(fleet: &Fleet, path: &str, query: &[(&str, &str)]) -> String {
    let q: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    match fleet.client().get(path, &q) {
        Ok(v) => panic!("{path} {query:?} answered {v}"),
        Err(e) => e.to_string(),
    }
}

fn pitot(fleet: &Fleet, args: &[&str]) -> String {
    let out = Command::new(bin("pitot"))
        .args(args)
        .args(["--url", &fleet.url()])
        .output()
        .expect("pitot runs");
    assert!(
        out.status.success(),
        "pitot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn unanswerable_queries_say_why_and_reports_show_units() {
    let mut fleet = Fleet::new(&["gpu-q"]);
    fleet.start_aggregator();
    fleet.start_agent("gpu-q");

    // Before anything arrived: not found, and the message says when data shows up.
    let e = error_of(
        &fleet,
        "/api/v1/quantiles",
        &[("metric", "request.latency")],
    );
    assert!(e.contains("404"), "{e}");
    assert!(e.contains("interval"), "{e}");

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = fleet.udp_addr("gpu-q");
    for i in 0..40 {
        let line = format!(
            "request.count:1|c|#model:llama3\nrequest.latency:{}|ms|#model:llama3",
            10 + i
        );
        udp.send_to(line.as_bytes(), addr).unwrap();
    }
    fleet.wait_for_count("request.latency", 40, Duration::from_secs(30));

    let e = error_of(
        &fleet,
        "/api/v1/counters",
        &[("metric", "request.count"), ("form", "now-2h")],
    );
    assert!(e.contains("400"), "{e}");
    assert!(e.contains("unknown query parameter `form`"), "{e}");
    assert!(e.contains("`from`"), "lists the known ones: {e}");

    let e = error_of(
        &fleet,
        "/api/v1/quantiles",
        &[("metric", "request.latency"), ("group_by", "region")],
    );
    assert!(e.contains("400"), "{e}");
    assert!(e.contains("group_by `region`"), "{e}");
    assert!(e.contains("host, model"), "names the tags there are: {e}");

    let e = error_of(
        &fleet,
        "/api/v1/quantiles",
        &[("metric", "request.latency"), ("tag", "model:gpt-9")],
    );
    assert!(
        e.contains("exist, but none has the tags model:gpt-9"),
        "{e}"
    );

    // `pitot report counters`: the exact total, per host and model, and the fleet.
    let text = pitot(&fleet, &["report", "counters"]);
    assert!(text.contains("request.count over"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("gpu-q"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("llama3"), "{text}");
    let total: f64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(total, 40.0, "{text}");
    assert!(text.lines().any(|l| l.starts_with("FLEET")), "{text}");

    // A metric without a unit in its name says its values are as sent …
    let text = pitot(&fleet, &["report", "latency"]);
    assert!(text.contains("values as sent"), "{text}");
    // … and one whose name has it carries it in every value column. The agent's own lag series
    // has no `model` tag: the default grouping keeps only `host`, not a 400.
    let lag = "pitot.agent.uplink.lag_seconds";
    wait_for("the agent's lag series", Duration::from_secs(30), || {
        (fleet.count(lag) > 0).then_some(())
    });
    let text = pitot(&fleet, &["report", "latency", "--metric", lag]);
    assert!(text.contains("values in s"), "{text}");
    assert!(text.contains("p50 (s)"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("gpu-q")), "{text}");
    // Delivery lag is measured to the acknowledgement, not to the next telemetry sample (which
    // made every sample at least one interval, 1 s here): on loopback it is typically far less.
    let q = fleet.quantiles(lag, "0.5", "").unwrap();
    let median = q["fleet"]["quantiles"]["0.5"].as_f64().unwrap();
    assert!(
        median < 1.0,
        "median delivery lag {median} s on loopback: {q:#}"
    );
}
