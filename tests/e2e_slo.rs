//! End to end SLOs: two real agents fed by the official `datadog` DogStatsD client, an
//! aggregator that is SIGKILLed mid-stream and an agent SIGKILLed with unsent batches in its
//! spool. An oracle that shares no code with the engine (plain integer counting over the
//! generated events) gives good, total, SLI, budget, every burn rate and the worst hosts; the
//! report must match it exactly. Counts are placed in the past with DogStatsD timestamps so
//! the 5 min window sees less than the longer ones.

// Helpers below sit outside `#[test]` functions; a failed setup step should panic like an assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Fleet, bin, latencies, python_sender, values_file};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const THRESHOLD: f64 = 100.0;
const SLOS: &str = r#"
[[slo]]
name = "chat-latency"
objective = 0.99
window = "30d"
[slo.sli]
kind = "latency"
metric = "request.latency"
threshold_ms = 100
tags = ["model:llama3"]

[[slo]]
name = "chat-availability"
objective = 0.999
window = "7d"
service = "chat"
[slo.sli]
kind = "ratio"
good = "request.ok"
total = "request.count"
tags = ["model:llama3"]
"#;

/// One request as the oracle counts it: Unix seconds, host, good?
#[derive(Clone, Copy)]
struct Event {
    t_s: i64,
    good: bool,
}

/// Good and total among events whose bucket (of `bucket_s` seconds) starts in
/// `[at − lookback, at)`; all in whole seconds and integers.
fn count(events: &[Event], at_s: i64, lookback_s: i64, bucket_s: i64) -> (u64, u64) {
    let (mut good, mut total) = (0u64, 0u64);
    for e in events {
        let start = e.t_s - e.t_s.rem_euclid(bucket_s);
        if start >= at_s - lookback_s && start < at_s {
            total += 1;
            good += u64::from(e.good);
        }
    }
    (good, total)
}

fn seconds(label: &str) -> i64 {
    let (n, unit) = label.split_at(label.len() - 1);
    let n: i64 = n.parse().unwrap();
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => panic!("unit {other}"),
    }
}

/// Checks one SLO report against the oracle's events per host.
fn check(report: &Value, objective: f64, window_s: i64, at_s: i64, hosts: &[(&str, &[Event])]) {
    let name = report["name"].as_str().unwrap();
    let all: Vec<Event> = hosts.iter().flat_map(|(_, e)| e.iter().copied()).collect();
    let window_bucket = seconds(report["resolution"].as_str().unwrap());
    let (good, total) = count(&all, at_s, window_s, window_bucket);
    assert!(total > 0, "{name}: the oracle saw no traffic");
    assert_eq!(report["good"].as_u64(), Some(good), "{name} good");
    assert_eq!(report["total"].as_u64(), Some(total), "{name} total");
    let sli = good as f64 / total as f64;
    assert!(
        (report["sli"].as_f64().unwrap() - sli).abs() < 1e-12,
        "{name} sli"
    );
    let bad = total - good;
    let allowed = (1.0 - objective) * total as f64;
    let budget = &report["error_budget"];
    assert!((budget["allowed"].as_f64().unwrap() - allowed).abs() < 1e-6);
    assert_eq!(budget["consumed"].as_f64(), Some(bad as f64));
    let remaining = 1.0 - bad as f64 / allowed;
    assert!((budget["remaining"].as_f64().unwrap() - remaining).abs() < 1e-9);
    for (label, got) in report["burn_rates"].as_object().unwrap() {
        let bucket = seconds(report["burn_resolutions"][label].as_str().unwrap());
        let (g, t) = count(&all, at_s, seconds(label), bucket);
        let want = if t == 0 {
            0.0
        } else {
            ((t - g) as f64 / t as f64) / (1.0 - objective)
        };
        let got = got.as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1.0),
            "{name} burn {label}: {got} vs oracle {want} ({g}/{t})"
        );
    }
    let mut want_hosts: Vec<(String, u64)> = hosts
        .iter()
        .map(|(h, e)| {
            let (g, t) = count(e, at_s, window_s, 3_600);
            ((*h).to_owned(), t - g)
        })
        .filter(|(_, b)| *b > 0)
        .collect();
    want_hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let got_hosts: Vec<(String, u64)> = report["top_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_owned(),
                h["bad"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got_hosts, want_hosts, "{name} top_hosts");
    eprintln!(
        "{name}: {good}/{total} good, burn rates {}, alert {}, oracle agrees",
        report["burn_rates"], report["alert"]
    );
}

#[test]
fn slo_reports_match_an_integer_oracle_across_restarts() {
    let mut fleet = Fleet::new(&["gpu-a", "gpu-b"]);
    fleet.aggregator_extra = SLOS.to_owned();
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    fleet.start_agent("gpu-b");
    let dir = fleet.dir.path().to_owned();
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    // Latencies: gpu-b is slower, so it spends most of the budget. Values in the threshold's
    // own bucket (which the engine must count as bad, conservatively) are left out, so the
    // oracle's plain `v <= 100` is exact.
    let keep = |v: &f64| (*v - THRESHOLD).abs() > 0.2;
    let lat_a: Vec<f64> = latencies(21, 6_000, 40.0)
        .into_iter()
        .filter(keep)
        .collect();
    let lat_b: Vec<f64> = latencies(22, 6_000, 60.0)
        .into_iter()
        .filter(keep)
        .collect();
    // Requests with DogStatsD timestamps up to 290 s in the past, 2 % failed on gpu-a and
    // 5 % on gpu-b; plus another model's requests, all failed, that the tag filter excludes.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut requests = |fail: f64| -> Vec<Event> {
        (0..3_000)
            .map(|_| Event {
                t_s: now_s - rng.random_range(0..290),
                good: rng.random::<f64>() >= fail,
            })
            .collect()
    };
    let req_a = requests(0.02);
    let req_b = requests(0.05);
    let lines = |events: &[Event], only_good: bool| -> String {
        let mut s = String::new();
        for e in events.iter().filter(|e| e.good || !only_good) {
            s.push_str(&format!("1@{}\n", e.t_s));
        }
        s
    };
    let mut senders = Vec::new();
    for (host, lat, req) in [("gpu-a", &lat_a, &req_a), ("gpu-b", &lat_b, &req_b)] {
        let addr = fleet.udp_addr(host).to_string();
        let lat_file = values_file(&dir, &format!("{host}-lat.txt"), lat);
        let ok_file = dir.join(format!("{host}-ok.txt"));
        let all_file = dir.join(format!("{host}-all.txt"));
        std::fs::write(&ok_file, lines(req, true)).unwrap();
        std::fs::write(&all_file, lines(req, false)).unwrap();
        let other_file = dir.join(format!("{host}-other.txt"));
        std::fs::write(&other_file, lines(&req[..100], false)).unwrap();
        let send = |metric: &str, kind: &str, tags: &str, file: &std::path::Path, rate: &str| {
            python_sender(&[
                "--client",
                "datadog",
                "--udp",
                &addr,
                "--metric",
                metric,
                "--kind",
                kind,
                "--tags",
                tags,
                "--values",
                file.to_str().unwrap(),
                "--rate",
                rate,
            ])
        };
        senders.push(send(
            "request.latency",
            "timing",
            "model:llama3",
            &lat_file,
            "1500",
        ));
        senders.push(send(
            "request.ok",
            "count_at",
            "model:llama3",
            &ok_file,
            "800",
        ));
        senders.push(send(
            "request.count",
            "count_at",
            "model:llama3",
            &all_file,
            "800",
        ));
        senders.push(send(
            "request.count",
            "count_at",
            "model:other",
            &other_file,
            "100",
        ));
    }
    // The aggregator dies mid-stream and comes back.
    std::thread::sleep(Duration::from_millis(1500));
    fleet.kill_aggregator();
    std::thread::sleep(Duration::from_millis(1000));
    fleet.start_aggregator();
    for s in &mut senders {
        assert!(s.wait().unwrap().success(), "sender failed");
    }
    // gpu-b is SIGKILLed with batches in its spool that the aggregator never saw.
    fleet.kill_aggregator();
    fleet.wait_spooled_past_now("gpu-b");
    fleet.kill_agent("gpu-b");
    fleet.start_aggregator();
    fleet.start_agent("gpu-b");

    let lat_events = |lat: &[f64], t_s: i64| -> Vec<Event> {
        lat.iter()
            .map(|v| Event {
                t_s,
                good: *v <= THRESHOLD,
            })
            .collect()
    };
    // Latencies arrive with the agent's clock; evaluate well after, at a fixed instant, and
    // give them a time inside every window (the oracle only needs their bucket). The instant is
    // at least 60 s after the first request, so the 5 min window misses the oldest requests
    // (stamped up to 289 s before it) however fast this machine ran the senders, and still
    // holds every latency (recorded after `now_s`).
    let at_s = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 5)
    .max(now_s + 60);
    let ev_a = lat_events(&lat_a, at_s - 30);
    let ev_b = lat_events(&lat_b, at_s - 30);
    let total_lat = (lat_a.len() + lat_b.len()) as u64;
    let total_req = (req_a.len() + req_b.len()) as u64;
    let client = fleet.client();
    let at = at_s.to_string();
    let mut last = Value::Null;
    let complete = common::poll_until(Duration::from_secs(60), || {
        let Ok(r) = client.get("/api/v1/slo", &[("at", at.clone())]) else {
            return false;
        };
        last = r;
        last["slos"][0]["total"].as_u64() == Some(total_lat)
            && last["slos"][1]["total"].as_u64() == Some(total_req)
    });
    if !complete {
        // Say what arrived and what the agents counted as lost, to tell loss from a bug.
        let counters = |metric: &str| {
            client.get(
                "/api/v1/counters",
                &[
                    ("metric", metric.to_owned()),
                    ("from", "now-1h".to_owned()),
                    ("group_by", "host,reason".to_owned()),
                ],
            )
        };
        let per_host = client.get(
            "/api/v1/quantiles",
            &[
                ("metric", "request.latency".to_owned()),
                ("from", "now-1h".to_owned()),
                ("group_by", "host".to_owned()),
            ],
        );
        let metrics = fleet.metrics_text().unwrap_or_default();
        let own: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("pitot_aggregator_") && !l.starts_with('#'))
            .collect();
        panic!(
            "SLO totals never reached latency {total_lat} / requests {total_req}: last report \
             {} / {}; stored latency per host {:?}; agents {:?}; aggregator {own:?}; \
             agent drops {:?}; kernel drops {:?}; logs:\n{}",
            last["slos"][0]["total"],
            last["slos"][1]["total"],
            per_host.map(|r| r["groups"].as_array().map(|g| g
                .iter()
                .map(|x| (x["tags"]["host"].clone(), x["count"].clone()))
                .collect::<Vec<_>>())),
            client.get("/api/v1/agents", &[]).map(|a| a.to_string()),
            counters("pitot.agent.dogstatsd.dropped").map(|c| c.to_string()),
            counters("pitot.agent.dogstatsd.kernel_drops").map(|c| c.to_string()),
            fleet.logs()
        );
    }
    let reports = last["slos"].as_array().unwrap().clone();
    check(
        &reports[0],
        0.99,
        30 * 86_400,
        at_s,
        &[("gpu-a", &ev_a), ("gpu-b", &ev_b)],
    );
    check(
        &reports[1],
        0.999,
        7 * 86_400,
        at_s,
        &[("gpu-a", &req_a), ("gpu-b", &req_b)],
    );
    // The timestamps spread the requests over 290 s: the 5 min window at `at` misses the
    // oldest, the 30 min window has them all.
    let burn = &reports[1]["burn_rates"];
    assert_ne!(burn["5m"], burn["30m"], "{burn}");
    assert_eq!(reports[0]["indicator"]["threshold"].as_f64(), Some(100.0));
    let used = reports[0]["indicator"]["threshold_used"].as_f64().unwrap();
    assert!(used <= 100.0 && used > 99.8, "{used}");
    assert_eq!(reports[1]["top_hosts"][0]["host"], "gpu-b");

    // One SLO by name, and a 404 naming the configured ones.
    let one = client
        .get("/api/v1/slo/chat-availability", &[("at", at.clone())])
        .unwrap();
    assert_eq!(one["total"], reports[1]["total"]);
    let missing = client.get("/api/v1/slo/nope", &[]).unwrap_err().to_string();
    assert!(
        missing.contains("404") && missing.contains("chat-latency"),
        "{missing}"
    );

    // The CLI table.
    let out = Command::new(bin("pitot"))
        .args(["report", "slo", "--url", &fleet.url(), "--at", &at])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("chat-availability") && table.contains("gpu-b ("),
        "{table}"
    );

    // Sloth-compatible series on /metrics, and nothing else promtool objects to.
    let metrics = fleet.metrics_text().expect("/metrics answers");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("slo:sli_error:ratio_rate30m{") && l.contains("chat-availability"))
        .unwrap_or_else(|| panic!("no Sloth series in\n{metrics}"));
    assert!(
        line.contains("sloth_id=\"chat-chat-availability\""),
        "{line}"
    );
    assert!(line.contains("sloth_service=\"chat\""), "{line}");
    let promtool = Command::new(common::tools::debian_tool("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut promtool = promtool.expect("promtool (apt package prometheus) must be installed");
    {
        use std::io::Write as _;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
    }
    let checked = promtool.wait_with_output().unwrap();
    let findings = String::from_utf8_lossy(&checked.stdout).to_string()
        + &String::from_utf8_lossy(&checked.stderr);
    let problems: Vec<&str> = findings
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.starts_with("slo:") && l.ends_with("metric names should not contain ':'")))
        .collect();
    assert!(problems.is_empty(), "promtool: {problems:?}");
}
