//! The official Python `datadog` client over the Unix socket, buffering at its default 8 KiB
//! (counted in characters), with tag and set values in several scripts (€, ü, 日本語, Greek,
//! emoji): its packets are larger than 8 KiB in bytes, and every line must arrive. Then the
//! agent is stopped (SIGSTOP) under the client's feet: the client drops packets, says so in
//! its own telemetry, and the loss shows in `/api/v1/agents`, `pitot report agents` and the
//! `pitot.agent.client.*` series.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Fleet, wait_for};
use nix::sys::signal::{Signal, kill};
use serde_json::Value;

fn sent(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("sender's record")).expect("json")
}

fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

fn run_sender(fleet: &Fleet, args: &[&str]) -> std::process::Child {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/send_rows.py");
    std::process::Command::new(common::tools::python())
        .arg(script)
        .arg("--unix")
        .arg(fleet.unix_socket("gpu-u"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("sender starts")
}

#[test]
fn every_line_of_multibyte_rows_arrives_and_client_drops_are_shown() {
    let mut fleet = Fleet::new(&["gpu-u"]);
    fleet.start_aggregator();
    fleet.start_agent("gpu-u");
    let rows = 6_000;
    let record = fleet.path("rows.json");
    let status = run_sender(
        &fleet,
        &[
            "--rows",
            &rows.to_string(),
            "--out",
            record.to_str().unwrap(),
        ],
    )
    .wait()
    .unwrap();
    assert!(status.success(), "sender failed");
    let sent = sent(&record);
    let latency: Vec<f64> = sent["latency_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(latency.len(), rows);

    // Every row's three lines arrived: counts are exact, per non-ASCII tag value too.
    fleet.wait_for_count("input.income", rows as u64, Duration::from_secs(60));
    fleet.wait_for_count("request.latency_s", rows as u64, Duration::from_secs(60));
    let by_lang = fleet
        .quantiles("input.income", "0.5", "lang")
        .expect("income by language");
    let langs: BTreeMap<String, u64> = by_lang["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["tags"]["lang"].as_str().unwrap().to_owned(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(langs.get("日本語"), Some(&(rows as u64 / 4)), "{by_lang}");
    assert_eq!(langs.get("Ελληνικά"), Some(&(rows as u64 / 4)), "{by_lang}");

    // The set's values arrived whole, exactly counted.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for b in sent["bands"].as_array().unwrap() {
        *want.entry(b.as_str().unwrap().to_owned()).or_default() += 1;
    }
    let cats = wait_for("the set's values", Duration::from_secs(30), || {
        let v = fleet
            .client()
            .get(
                "/api/v1/categories",
                &[("metric", "input.salary_band".to_owned())],
            )
            .ok()?;
        (v["fleet"]["total"].as_u64()? == rows as u64).then_some(v)
    });
    let got: BTreeMap<String, u64> = cats["fleet"]["values"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(got, want);

    // Sub-millisecond latencies in seconds keep 3 significant digits.
    let q = fleet
        .quantiles("request.latency_s", "0.01,0.5,0.99", "")
        .expect("latency");
    for (label, p) in [("0.01", 0.01), ("0.5", 0.5), ("0.99", 0.99)] {
        let want = exact_quantile(&latency, p);
        let got = q["fleet"]["quantiles"][label].as_f64().unwrap();
        assert!(
            (got - want).abs() <= want * 0.001,
            "p{label}: {got} vs exact {want}"
        );
    }
    // Nothing was lost, by the agent's account or the client's.
    let agents = fleet.client().get("/api/v1/agents", &[]).expect("agents");
    let loss = &agents["agents"][0]["loss"];
    assert_eq!(loss["dropped_lines"], 0.0, "{agents}");
    assert_eq!(loss["client_dropped_packets"], 0.0, "{agents}");

    // Stop the agent under the client: its queue fills, the client drops and reports it.
    let pid = fleet.agents["gpu-u"].pid();
    kill(pid, Signal::SIGSTOP).unwrap();
    let record2 = fleet.path("rows2.json");
    let burst_done = fleet.path("burst.done");
    let mut sender = run_sender(
        &fleet,
        &[
            "--rows",
            "20000",
            "--linger",
            "4",
            "--seed",
            "8",
            "--out",
            record2.to_str().unwrap(),
            "--burst-done",
            burst_done.to_str().unwrap(),
        ],
    );
    // The whole burst meets the stopped agent; then it runs again while the client lingers.
    let burst = common::poll_until(Duration::from_secs(120), || burst_done.exists());
    kill(pid, Signal::SIGCONT).unwrap();
    assert!(burst, "the sender never finished its burst");
    assert!(sender.wait().unwrap().success(), "sender failed");
    let dropped = wait_for("the client's drops", Duration::from_secs(30), || {
        let v = fleet.client().get("/api/v1/agents", &[]).ok()?;
        let n = v["agents"][0]["loss"]["client_dropped_packets"].as_f64()?;
        (n > 0.0).then_some(n)
    });
    // The same figure as the client's own raw telemetry series.
    let raw = fleet
        .counters("datadog.dogstatsd.client.packets_dropped", "")
        .expect("raw client telemetry")["fleet"]["total"]
        .as_f64()
        .unwrap();
    assert_eq!(raw, dropped);
    let table = std::process::Command::new(common::bin("pitot"))
        .args(["report", "agents", "--url", &fleet.url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("client drops"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("gpu-u"))
        .expect("agent row");
    assert!(row.trim_end().ends_with(&format!("{dropped:.0}")), "{text}");
    assert!(fleet.stop_agent("gpu-u").success());
}
