//! End to end Prometheus scraping: a Python process serves vLLM-named metrics through
//! `prometheus_client` (the library vLLM uses) with vLLM's bucket layouts, and a
//! `prometheus-node-exporter` runs beside it; a real agent scrapes both every second and ships
//! to a real aggregator. After the agent's first scrape (its baseline) the Python side makes
//! known observations; the aggregator must report the exact counter deltas, the exact count in
//! every bucket, and quantiles whose bounds hold the true value; the OpenTelemetry GenAI
//! aliases must carry the same data.

// Helpers below sit outside `#[test]` functions; a failed setup step should panic like an assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Fleet, free_tcp_port, poll_until, wait_for};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _gone = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn get(fleet: &Fleet, path: &str, query: &[(&str, &str)]) -> Option<Value> {
    let q: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    fleet.client().get(path, &q).ok()
}

#[test]
fn vllm_and_node_exporter_scrapes_arrive_exactly() {
    let vllm_port = free_tcp_port();
    let node_port = free_tcp_port();
    let mut fleet = Fleet::new(&["gpu-a"]);
    fleet.agent_extra = format!(
        "[[scrape]]\nurl = \"http://127.0.0.1:{vllm_port}/metrics\"\ninterval = \"1s\"\n\
         tags = [\"version:v2\"]\n\
         [[scrape]]\nurl = \"http://127.0.0.1:{node_port}/metrics\"\ninterval = \"1s\"\n"
    );
    // Two latency SLOs over the scraped TTFT alias (seconds): one threshold is an edge of
    // vLLM's layout, the other falls inside its (0.25, 0.5] bucket.
    fleet.aggregator_extra = "[[slo]]\nname = \"ttft-edge\"\nobjective = 0.9\nwindow = \"30d\"\n\
         [slo.sli]\nkind = \"latency\"\nmetric = \"gen_ai.server.time_to_first_token\"\n\
         threshold_ms = 0.25\n\
         [[slo]]\nname = \"ttft-between\"\nobjective = 0.9\nwindow = \"30d\"\n\
         [slo.sli]\nkind = \"latency\"\nmetric = \"gen_ai.server.time_to_first_token\"\n\
         threshold_ms = 0.3\n"
        .to_owned();
    let dir = fleet.dir.path().to_owned();

    // Known observations, drawn once.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let ttft: Vec<f64> = (0..500)
        .map(|_| (0.2f64 * (rng.random::<f64>() * 3.0 - 2.0).exp()).min(9.0))
        .collect();
    let e2e: Vec<f64> = (0..300).map(|_| 0.3 + rng.random::<f64>() * 4.0).collect();
    let prompt_tokens: Vec<u64> = (0..200).map(|_| rng.random_range(1..400)).collect();
    let obs = dir.join("observations.json");
    std::fs::write(
        &obs,
        serde_json::json!({"ttft": ttft, "e2e": e2e, "prompt_tokens": prompt_tokens}).to_string(),
    )
    .unwrap();
    let go = dir.join("go");

    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/serve_vllm.py");
    let mut vllm = Child(
        Command::new(common::tools::python())
            .arg(script)
            .args([
                "--port",
                &vllm_port.to_string(),
                "--go",
                go.to_str().unwrap(),
            ])
            .args(["--observations", obs.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with prometheus_client (tests/clients/requirements.txt)"),
    );
    let mut lines = BufReader::new(vllm.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let _node = Child(
        Command::new(common::tools::debian_tool(
            "prometheus-node-exporter",
            "prometheus-node-exporter",
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
        .args([
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.meminfo",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-node-exporter (Debian package) must be installed"),
    );

    fleet.start_aggregator();
    fleet.start_agent("gpu-a");

    // The agent's first scrapes set the counters' and histograms' baselines; the gauge shows
    // they happened.
    wait_for(
        "a scrape of the vLLM gauge",
        Duration::from_secs(30),
        || {
            get(
                &fleet,
                "/api/v1/quantiles",
                &[("metric", "vllm:num_requests_running")],
            )
            .filter(|r| r["fleet"]["count"].as_u64() >= Some(2))
        },
    );
    std::fs::write(&go, "").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "observed");

    // Counter: the exact sum of increments, under its name and its GenAI alias.
    let want_tokens: u64 = prompt_tokens.iter().sum();
    for metric in [
        "vllm:prompt_tokens_total",
        "gen_ai.server.usage.input_tokens",
    ] {
        let ok = poll_until(Duration::from_secs(30), || {
            get(
                &fleet,
                "/api/v1/counters",
                &[("metric", metric), ("from", "now-10m")],
            )
            .is_some_and(|r| r["fleet"]["total"].as_f64() == Some(want_tokens as f64))
        });
        let last = get(
            &fleet,
            "/api/v1/counters",
            &[("metric", metric), ("from", "now-10m")],
        );
        assert!(ok, "{metric}: want {want_tokens}, got {last:?}");
    }
    let by_model = get(
        &fleet,
        "/api/v1/counters",
        &[
            ("metric", "vllm:prompt_tokens_total"),
            ("from", "now-10m"),
            ("group_by", "model,version"),
        ],
    )
    .unwrap();
    assert_eq!(
        by_model["groups"][0]["tags"]["model"], MODEL,
        "model_name became model"
    );
    assert_eq!(
        by_model["groups"][0]["tags"]["version"], "v2",
        "the scrape's own tag"
    );

    // Histogram: every bucket's count, in vLLM's layout.
    let q = |metric: &str| {
        get(
            &fleet,
            "/api/v1/quantiles",
            &[
                ("metric", metric),
                ("q", "0.5,0.9,0.99"),
                ("from", "now-10m"),
            ],
        )
    };
    let ok = poll_until(Duration::from_secs(30), || {
        q("vllm:time_to_first_token_seconds")
            .is_some_and(|r| r["fleet"]["count"].as_u64() == Some(ttft.len() as u64))
    });
    let report = q("vllm:time_to_first_token_seconds").unwrap();
    assert!(ok, "{report}");
    let fleet_q = &report["fleet"];
    assert_eq!(fleet_q["approximate"], true);
    let layout = &fleet_q["buckets"][0];
    let bounds: Vec<Option<f64>> = layout["bounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::as_f64)
        .collect();
    assert_eq!(
        bounds.len(),
        TTFT_BUCKETS.len() + 1,
        "vLLM's 16 bounds and +Inf"
    );
    for (i, b) in TTFT_BUCKETS.iter().enumerate() {
        let lo = if i == 0 {
            f64::NEG_INFINITY
        } else {
            TTFT_BUCKETS[i - 1]
        };
        let want = ttft.iter().filter(|v| **v > lo && **v <= *b).count() as u64;
        assert_eq!(layout["counts"][i].as_u64(), Some(want), "bucket le={b}");
        assert_eq!(bounds[i], Some(*b));
    }
    let mut sorted = ttft.clone();
    sorted.sort_by(f64::total_cmp);
    for (label, qv) in [("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99)] {
        let rank = ((qv * sorted.len() as f64).ceil() as usize).max(1);
        let truth = sorted[rank - 1];
        let b = &fleet_q["quantile_bounds"][label];
        let (lo, hi) = (
            b[0].as_f64().unwrap(),
            b[1].as_f64().unwrap_or(f64::INFINITY),
        );
        assert!(
            lo <= truth && truth <= hi,
            "q{label}: true {truth} outside [{lo}, {hi}]"
        );
        let est = fleet_q["quantiles"][label].as_f64().unwrap();
        assert!(lo <= est && est <= hi);
    }
    let sum: f64 = ttft.iter().sum();
    assert!((fleet_q["sum"].as_f64().unwrap() - sum).abs() < 1e-6 * sum.max(1.0));
    // The alias carries the same counts.
    let alias = q("gen_ai.server.time_to_first_token").unwrap();
    assert_eq!(alias["fleet"]["count"].as_u64(), Some(ttft.len() as u64));
    assert_eq!(alias["fleet"]["buckets"][0]["counts"], layout["counts"]);
    // SLOs over the scraped buckets: whole buckets under the threshold are good; the report
    // says how many bad ones may be good, and the truth lies in between.
    let slo = |name: &str| get(&fleet, &format!("/api/v1/slo/{name}"), &[]).unwrap();
    let at_or_below = |t: f64| ttft.iter().filter(|v| **v <= t).count() as u64;
    let edge = slo("ttft-edge");
    assert_eq!(edge["indicator"]["bucket_layouts"], true, "{edge}");
    assert_eq!(edge["total"].as_u64(), Some(ttft.len() as u64), "{edge}");
    assert_eq!(edge["good"].as_u64(), Some(at_or_below(0.25)), "{edge}");
    assert_eq!(edge["uncertain"].as_u64(), Some(0), "{edge}");
    let between = slo("ttft-between");
    let straddling = ttft.iter().filter(|v| **v > 0.25 && **v <= 0.5).count() as u64;
    assert!(straddling > 0, "the seed puts observations in (0.25, 0.5]");
    assert_eq!(
        between["good"].as_u64(),
        Some(at_or_below(0.25)),
        "{between}"
    );
    assert_eq!(between["uncertain"].as_u64(), Some(straddling), "{between}");
    let truth = at_or_below(0.3);
    assert!(
        at_or_below(0.25) <= truth && truth <= at_or_below(0.25) + straddling,
        "{between}"
    );
    let metrics = fleet.metrics_text().expect("/metrics answers");
    let want = format!("pitot_slo_uncertain_events{{slo=\"ttft-between\"}} {straddling}");
    assert!(
        metrics.lines().any(|l| l == want),
        "no `{want}` in\n{metrics}"
    );
    let e2e_report = q("gen_ai.server.request.duration").unwrap();
    assert_eq!(
        e2e_report["fleet"]["count"].as_u64(),
        Some(e2e.len() as u64)
    );

    // node_exporter: a gauge sampled and a counter's deltas.
    wait_for("node_exporter series", Duration::from_secs(30), || {
        let mem = get(
            &fleet,
            "/api/v1/quantiles",
            &[
                ("metric", "node_memory_MemTotal_bytes"),
                ("from", "now-10m"),
            ],
        )?;
        let cpu = get(
            &fleet,
            "/api/v1/counters",
            &[("metric", "node_cpu_seconds_total"), ("from", "now-10m")],
        )?;
        (mem["fleet"]["max"].as_f64()? > 1e6 && cpu["fleet"]["total"].as_f64()? > 0.0).then_some(())
    });
    // The agent counted its scrapes per target and found nothing malformed.
    let scrapes = get(
        &fleet,
        "/api/v1/counters",
        &[
            ("metric", "pitot.agent.scrape.scrapes"),
            ("from", "now-10m"),
            ("group_by", "target"),
        ],
    )
    .unwrap();
    assert_eq!(scrapes["groups"].as_array().unwrap().len(), 2, "{scrapes}");
}
