//! The deployment gate end to end: two agents (v1 traffic on one, v2 on the other), the
//! official DogStatsD client sending latencies, request counters and inputs, and the gate's
//! answers over HTTP and from `pitot gate` with its exit codes: an identical v2 passes, a v2 50
//! requests old is inconclusive, a v2 with a 30 % higher p99 fails on latency, one with three
//! times the error rate fails on errors, one whose inputs drift fails on drift (or warns when
//! asked to); every decision is in the audit trail and on `/metrics`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Fleet, bin, python_send, values_file, wait_for};
use serde_json::Value;

/// A seeded standard normal sequence (xorshift + Box–Muller), the same for the same seed.
fn normals(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed.max(1);
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (next().max(1e-12), next());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

/// Latencies in ms: median 250, σ 0.5, the tail widened by `tail` (0.1128 makes p99 1.3×).
fn latencies(seed: u64, n: usize, tail: f64) -> Vec<f64> {
    normals(seed, n)
        .into_iter()
        .map(|z| 250.0 * ((0.5 + tail) * z).exp())
        .collect()
}

fn send(
    fleet: &Fleet,
    host: &str,
    name: &str,
    metric: &str,
    kind: &str,
    tags: &str,
    values: &[f64],
) {
    let file = values_file(fleet.dir.path(), name, values);
    python_send(&[
        "--client",
        "datadog",
        "--udp",
        &fleet.udp_addr(host).to_string(),
        "--metric",
        metric,
        "--kind",
        kind,
        "--tags",
        tags,
        "--values",
        file.to_str().expect("utf-8 path"),
        "--rate",
        "20000",
    ]);
}

fn gate(fleet: &Fleet, path: &str, q: &[(&str, &str)]) -> Value {
    let q: Vec<(&str, String)> = q.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    fleet
        .client()
        .get(path, &q)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {report:#}"))
}

fn pitot_gate(fleet: &Fleet, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin("pitot"))
        .arg("gate")
        .args(args)
        .args(["--url", &fleet.url()])
        .output()
        .expect("pitot runs");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn canaries_pass_fail_or_wait_with_their_evidence() {
    let mut fleet = Fleet::new(&["h1", "h2"]);
    fleet.aggregator_extra = r#"
[[gate]]
name = "slow-canary"
model = "slow"
baseline = ["version:v1"]
candidate = ["version:v2"]

[[gate]]
name = "errs-canary"
model = "errs"
baseline = ["version:v1"]
candidate = ["version:v2"]
[gate.errors]
good = "request.ok"
total = "request.count"

[[gate]]
name = "drift-canary"
model = "drifty"
baseline = ["version:v1"]
candidate = ["version:v2"]
"#
    .to_owned();
    fleet.start_aggregator();
    fleet.start_agent("h1");
    fleet.start_agent("h2");

    // `same`: v2 (h2) serves exactly v1's (h1) latencies; v3 has served 50 requests.
    let same = latencies(11, 10_000, 0.0);
    send(
        &fleet,
        "h1",
        "same-v1",
        "request.latency",
        "distribution",
        "model:same,version:v1",
        &same,
    );
    send(
        &fleet,
        "h2",
        "same-v2",
        "request.latency",
        "distribution",
        "model:same,version:v2",
        &same,
    );
    send(
        &fleet,
        "h2",
        "same-v3",
        "request.latency",
        "distribution",
        "model:same,version:v3",
        &same[..50],
    );
    // `slow`: v2's tail is wider, its p99 30 % higher (median unchanged).
    send(
        &fleet,
        "h1",
        "slow-v1",
        "request.latency",
        "distribution",
        "model:slow,version:v1",
        &latencies(12, 10_000, 0.0),
    );
    send(
        &fleet,
        "h2",
        "slow-v2",
        "request.latency",
        "distribution",
        "model:slow,version:v2",
        &latencies(13, 10_000, 0.1128),
    );
    // `errs`: 1 % of v1's requests fail, 3 % of v2's (counters, as a server increments them).
    for (host, v, ok) in [("h1", "v1", 9_900.0), ("h2", "v2", 9_700.0)] {
        let tags = format!("model:errs,version:{v}");
        send(
            &fleet,
            host,
            &format!("errs-total-{v}"),
            "request.count",
            "increment",
            &tags,
            &[10_000.0],
        );
        send(
            &fleet,
            host,
            &format!("errs-ok-{v}"),
            "request.ok",
            "increment",
            &tags,
            &[ok],
        );
    }
    // `drifty`: v2's prompts are longer.
    let prompts = |seed, shift: f64| -> Vec<f64> {
        normals(seed, 3_000)
            .into_iter()
            .map(|z| (400.0 + 80.0 * (z + shift)).round())
            .collect()
    };
    send(
        &fleet,
        "h1",
        "drift-v1",
        "input.prompt_tokens",
        "histogram",
        "model:drifty,version:v1",
        &prompts(14, 0.0),
    );
    send(
        &fleet,
        "h2",
        "drift-v2",
        "input.prompt_tokens",
        "histogram",
        "model:drifty,version:v2",
        &prompts(15, 0.5),
    );

    fleet.wait_for_count("request.latency", 40_050, Duration::from_secs(60));
    fleet.wait_for_count("input.prompt_tokens", 6_000, Duration::from_secs(30));
    wait_for("the error counters", Duration::from_secs(20), || {
        fleet
            .counters("request.count", "")
            .filter(|c| c["fleet"]["total"] == 20_000.0)
    });

    let adhoc = |candidate: &str| {
        gate(
            &fleet,
            "/api/v1/gate",
            &[
                ("model", "same"),
                ("baseline", "version:v1"),
                ("candidate", candidate),
            ],
        )
    };
    let pass = adhoc("version:v2");
    assert_eq!(pass["decision"], "pass", "{pass:#}");
    assert_eq!(pass["candidate"]["requests"], 10_000);
    assert_eq!(
        check(&pass, "latency")["quantiles"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let early = adhoc("version:v3");
    assert_eq!(early["decision"], "inconclusive", "{early:#}");
    assert!(
        check(&early, "latency")["reason"]
            .as_str()
            .unwrap()
            .contains("too few")
    );

    let slow = gate(&fleet, "/api/v1/gate/slow-canary", &[]);
    assert_eq!(slow["decision"], "fail", "{slow:#}");
    let lat = check(&slow, "latency");
    let p99 = lat["quantiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["q"] == 0.99)
        .expect("p99");
    assert_eq!(p99["verdict"], "fail", "{p99:#}");
    let ratio = p99["ratio"].as_f64().unwrap();
    assert!((1.2..1.4).contains(&ratio), "p99 ratio {ratio}");
    let median = &lat["quantiles"][0];
    assert_ne!(
        median["verdict"], "fail",
        "the median did not move: {median:#}"
    );

    // As a Flagger webhook: the decision in the status.
    let post = |name: &str| {
        ureq::post(&format!("{}/api/v1/gate/{name}", fleet.url()))
            .config()
            .http_status_as_error(false)
            .build()
            .send("{}")
            .expect("POST")
            .status()
            .as_u16()
    };
    assert_eq!(post("slow-canary"), 409);

    let errs = gate(&fleet, "/api/v1/gate/errs-canary", &[]);
    assert_eq!(errs["decision"], "fail", "{errs:#}");
    let e = check(&errs, "errors");
    assert_eq!(e["verdict"], "fail");
    assert_eq!(e["candidate"]["events"], 300);
    assert_eq!(e["baseline"]["events"], 100);

    let drifted = gate(&fleet, "/api/v1/gate/drift-canary", &[]);
    assert_eq!(drifted["decision"], "fail", "{drifted:#}");
    assert!(
        check(&drifted, "drift")["reason"]
            .as_str()
            .unwrap()
            .contains("input.prompt_tokens")
    );
    let warned = gate(&fleet, "/api/v1/gate/drift-canary", &[("on_drift", "warn")]);
    assert_eq!(check(&warned, "drift")["verdict"], "warn");
    assert_ne!(warned["decision"], "fail", "{warned:#}");

    // The CLI's exit codes: 0 pass, 1 fail, 2 inconclusive (also after --wait), 64 usage.
    let adhoc_args = |c: &'static str| {
        [
            "--model",
            "same",
            "--baseline",
            "version:v1",
            "--candidate",
            c,
        ]
    };
    let (code, text) = pitot_gate(&fleet, &adhoc_args("version:v2"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("PASS") && text.contains("latency p99"),
        "{text}"
    );
    let (code, text) = pitot_gate(&fleet, &["slow-canary"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("slow-canary: FAIL"), "{text}");
    eprintln!("--- pitot gate slow-canary ---\n{text}");
    let mut waited = adhoc_args("version:v3").to_vec();
    waited.extend(["--wait", "1s"]);
    let (code, text) = pitot_gate(&fleet, &waited);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("asking again"), "{text}");
    let (code, text) = pitot_gate(&fleet, &["--model", "same"]);
    assert_eq!(code, Some(64), "{text}");
    // An aggregator that does not answer: asked again while --wait lasts, then 64, never 0.
    let out = Command::new(bin("pitot"))
        .args([
            "gate",
            "slow-canary",
            "--wait",
            "1s",
            "--url",
            "http://127.0.0.1:9",
        ])
        .output()
        .expect("pitot runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("asking again") && err.contains("cannot reach"),
        "{err}"
    );
    let (code, json) = pitot_gate(&fleet, &["errs-canary", "--json"]);
    assert_eq!(code, Some(1));
    let parsed: Value = serde_json::from_str(&json).expect("--json is JSON");
    assert_eq!(parsed["decision"], "fail");

    // Each decision is in the audit trail with its evidence, and on /metrics.
    let trail = wait_for(
        "the decisions in the audit trail",
        Duration::from_secs(10),
        || {
            let v = fleet
                .client()
                .get("/api/v1/audit", &[("kind", "gate.".to_owned())])
                .ok()?;
            let list = v["entries"].as_array()?.clone();
            let has = |kind: &str, subject: &str| {
                list.iter()
                    .any(|e| e["kind"] == kind && e["subject"] == subject)
            };
            (has("gate.fail", "slow-canary")
                && has("gate.fail", "errs-canary")
                && has("gate.pass", "same:version:v1→version:v2")
                && has("gate.inconclusive", "same:version:v1→version:v3"))
            .then_some(list)
        },
    );
    let slow_entry = trail
        .iter()
        .find(|e| e["subject"] == "slow-canary")
        .unwrap();
    assert!(
        slow_entry["detail"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "latency" && c["verdict"] == "fail")
    );
    let metrics = fleet.metrics_text().expect("metrics");
    assert!(
        metrics.contains(
            "pitot_gate_decision{gate=\"slow-canary\",model=\"slow\",decision=\"fail\"} 1"
        ),
        "{metrics}"
    );
}
