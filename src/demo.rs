//! `pitot demo`: an aggregator, three agents and a synthetic inference load on loopback, with
//! certificates generated in a temp dir, and a live fleet latency table.
//!
//! Everything runs in this process through the same `run` functions the daemons use; the
//! load goes through real Unix datagram sockets, the uplinks through real QUIC with mutual
//! TLS, and the tables through the real HTTP API.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pitot_aggregator::reports::{AgentsReport, CounterReport, QuantileReport};
use pitot_aggregator::slo::SloList;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::loadgen::{self, LoadSpec, LoadSummary, Target};
use crate::report::{self, Client};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop by itself after this long (else at Ctrl-C).
    pub duration: Option<Duration>,
    /// Lines per second per agent.
    pub rate: u64,
    /// HTTP listen address for the report API.
    pub http: String,
    /// Seconds between live tables.
    pub every: Duration,
    /// With a token, the demo's API takes only it (scope `admin`); without, it is open on
    /// loopback.
    pub token: Option<String>,
}

/// The demo's models: owners, SLOs and prices. Its hosts have no GPU, so what they cost is
/// host time (each host's time split between the models its process serves); tokens are the
/// prompt tokens of the requests (`input.prompt_tokens`), requests the latency timings.
const DEMO_MODELS: &str = r##"
[[model]]
name = "llama3"
owner = "search-ranking"
contact = "#search-oncall"
slos = ["llama3-latency"]
latency_metric = "request.latency"
tokens_in = "input.prompt_tokens"
requests = "request.latency"
[model.price]
gpu_hour = 2.5
host_hour = 1.2

[[model]]
name = "mistral"
owner = "support-bots"
contact = "support-ml@example.com"
slos = ["mistral-latency"]
latency_metric = "request.latency"
tokens_in = "input.prompt_tokens"
requests = "request.latency"
[model.price]
gpu_hour = 2.5
host_hour = 1.2
"##;

/// When the injected input drift starts without `--duration`.
const DRIFT_AFTER: Duration = Duration::from_secs(30);
/// When gpu-host-2's llama3 latency regression starts without `--duration`.
const SLOW_AFTER: Duration = Duration::from_secs(20);
/// How much slower it gets.
const SLOW_FACTOR: f64 = 5.0;
/// When llama3 v2 starts on gpu-host-1 (a canary) without `--duration`.
const CANARY_AFTER: Duration = Duration::from_secs(30);
/// How much slower v2 is than v1 (a regression the gate must catch).
const CANARY_FACTOR: f64 = 1.4;

/// The demo's SLOs: llama3 requests under 300 ms, 99.9 % of the time.
const DEMO_SLOS: &str = r#"
[[slo]]
name = "llama3-latency"
objective = 0.999
window = "30d"
service = "chat"
[slo.sli]
kind = "latency"
metric = "request.latency"
threshold_ms = 300
tags = ["model:llama3"]

[[slo]]
name = "mistral-latency"
objective = 0.99
window = "7d"
service = "chat"
[slo.sli]
kind = "latency"
metric = "request.latency"
threshold_ms = 100
tags = ["model:mistral"]
"#;

/// A model served on a demo host: name, version, median latency in ms.
struct DemoModel(&'static str, &'static str, f64);

/// The three demo hosts and what they serve.
const HOSTS: [(&str, &[DemoModel]); 3] = [
    (
        "gpu-host-1",
        &[
            DemoModel("llama3", "v1", 42.0),
            DemoModel("mistral", "v1", 18.0),
        ],
    ),
    (
        "gpu-host-2",
        &[
            DemoModel("llama3", "v1", 45.0),
            DemoModel("mistral", "v1", 20.0),
        ],
    ),
    ("gpu-host-3", &[DemoModel("llama3", "v1", 60.0)]),
];

fn agent_toml(dir: &Path, host: &str, models: &[DemoModel], aggregator: &str) -> String {
    let d = dir.display();
    // The demo process stands in for each host's model server: one rule per model it serves.
    let rules: String = models
        .iter()
        .map(|m| {
            format!(
                "[[process]]\nname = \"{0}-server\"\npid_file = \"{d}/demo.pid\"\n\
                 tags = [\"model:{0}\", \"version:{1}\"]\n",
                m.0, m.1
            )
        })
        .collect();
    format!(
        r#"agent_id = "{host}"
interval = "1s"
[uplink]
aggregator = "{aggregator}"
server_name = "pitot-aggregator"
ca = "{d}/certs/ca.pem"
cert = "{d}/certs/{host}.pem"
key = "{d}/certs/{host}.key"
backoff_max = "2s"
[spool]
dir = "{d}/spool-{host}"
[dogstatsd]
udp = ""
unix = "{d}/{host}.sock"
{rules}"#
    )
}

/// Runs the demo, writing tables to `out`, until the duration passes or `stop` fires.
pub async fn run(
    options: DemoOptions,
    stop: CancellationToken,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    // Say which port is taken and how to move it, before anything starts.
    if let Err(e) = std::net::TcpListener::bind(&options.http) {
        anyhow::bail!(
            "the demo's HTTP API cannot listen on {}: {e}. Another process (a running demo or \
             aggregator?) holds it; stop that, or move the demo with --http 127.0.0.1:<free port>",
            options.http
        );
    }
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let agents: Vec<String> = HOSTS.iter().map(|(h, _)| (*h).to_owned()).collect();
    crate::certs::init(&dir.path().join("certs"), "pitot-aggregator", &agents)?;
    writeln!(
        out,
        "Pitot demo: aggregator + {} agents on loopback, files in {}",
        agents.len(),
        dir.path().display()
    )?;

    let d = dir.path().display();
    std::fs::write(dir.path().join("demo.pid"), std::process::id().to_string())?;
    let tokens = match &options.token {
        Some(token) => {
            let line = pitot_aggregator::access::file_line(
                "demo",
                token,
                &[pitot_aggregator::access::Scope::Admin],
            );
            std::fs::write(dir.path().join("tokens"), format!("{line}\n"))?;
            format!("tokens_file = \"{d}/tokens\"\n")
        }
        None => String::new(),
    };
    let aggregator_toml = format!(
        "[quic]\nlisten = \"127.0.0.1:0\"\nca = \"{d}/certs/ca.pem\"\ncert = \"{d}/certs/aggregator.pem\"\nkey = \"{d}/certs/aggregator.key\"\n[http]\nlisten = \"{}\"\n{tokens}[store]\ndir = \"{d}/store\"\n{DEMO_SLOS}{DEMO_MODELS}",
        options.http
    );
    let aggregator_config = pitot_aggregator::config::parse(&aggregator_toml, Path::new("demo"))?;
    let aggregator_stop = CancellationToken::new();
    let (bound_tx, bound_rx) = oneshot::channel();
    let aggregator = tokio::spawn(pitot_aggregator::run(
        aggregator_config,
        aggregator_stop.clone(),
        Some(bound_tx),
    ));
    let bound = match bound_rx.await {
        Ok(b) => b,
        // The aggregator ended before it listened: say why.
        Err(_) => match aggregator.await {
            Ok(Err(e)) => return Err(e.context("the demo's aggregator did not start")),
            other => anyhow::bail!("the demo's aggregator did not start ({other:?})"),
        },
    };
    let url = format!("http://{}", bound.http);
    writeln!(
        out,
        "Aggregator: QUIC {} (mutual TLS), HTTP API {url}",
        bound.quic
    )?;

    let agents_stop = CancellationToken::new();
    let mut agent_tasks = Vec::new();
    for (host, models) in HOSTS {
        let cfg = pitot_agent::config::parse(
            &agent_toml(dir.path(), host, models, &bound.quic.to_string()),
            Path::new("demo"),
        )?;
        agent_tasks.push(tokio::spawn(pitot_agent::run(cfg, agents_stop.clone())));
    }
    // The agents bind their sockets first thing; wait until they exist.
    for host in &agents {
        let sock = dir.path().join(format!("{host}.sock"));
        let t0 = Instant::now();
        while !sock.exists() {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "agent {host} did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let load_stop = Arc::new(AtomicBool::new(false));
    let mut load_threads = Vec::new();
    for (i, (host, models)) in HOSTS.iter().enumerate() {
        let spec = LoadSpec {
            target: Target::Unix {
                path: dir.path().join(format!("{host}.sock")),
                blocking: true,
            },
            rate: options.rate,
            duration: None,
            lines: None,
            per_datagram: 30,
            seed: 42 + i as u64,
            models: models
                .iter()
                .map(|m| (m.0.to_owned(), m.1.to_owned()))
                .collect(),
            metrics: 1,
            counter_every: 10,
            median_ms: models.iter().map(|m| m.2).collect(),
            replay: None,
            plain: false,
            inputs_every: 4,
            // gpu-host-3 starts receiving longer prompts and a new language half-way.
            drift_after: (*host == "gpu-host-3")
                .then(|| options.duration.map_or(DRIFT_AFTER, |d| d / 2)),
            // gpu-host-2 gets 5× slower a third of the way in: the llama3 SLO starts burning.
            slow_after: (*host == "gpu-host-2")
                .then(|| options.duration.map_or(SLOW_AFTER, |d| d / 3)),
            slow_factor: SLOW_FACTOR,
            mix: loadgen::Mix::Latency,
        };
        let flag = Arc::clone(&load_stop);
        load_threads.push(std::thread::spawn(move || {
            loadgen::run(&spec, &|| flag.load(Ordering::Relaxed))
        }));
    }
    // Half-way, llama3 v2 starts beside v1 on gpu-host-1 (a canary with a quarter of the
    // host's traffic), 1.4× slower: the gate at the end must say fail.
    let canary_after = options.duration.map_or(CANARY_AFTER, |d| d / 2);
    {
        let spec = LoadSpec {
            target: Target::Unix {
                path: dir.path().join("gpu-host-1.sock"),
                blocking: true,
            },
            rate: (options.rate / 4).max(1),
            duration: None,
            lines: None,
            per_datagram: 30,
            seed: 99,
            models: vec![("llama3".to_owned(), "v2".to_owned())],
            metrics: 1,
            counter_every: 10,
            median_ms: vec![HOSTS[0].1[0].2 * CANARY_FACTOR],
            replay: None,
            plain: false,
            inputs_every: 4,
            drift_after: None,
            slow_after: None,
            slow_factor: 1.0,
            mix: loadgen::Mix::Latency,
        };
        let flag = Arc::clone(&load_stop);
        load_threads.push(std::thread::spawn(move || {
            let t0 = Instant::now();
            while t0.elapsed() < canary_after {
                if flag.load(Ordering::Relaxed) {
                    return Ok(LoadSummary::default());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            loadgen::run(&spec, &|| flag.load(Ordering::Relaxed))
        }));
    }
    writeln!(
        out,
        "Load: {} lines/s per agent over Unix DogStatsD sockets ({}).\n",
        options.rate,
        match options.duration {
            Some(d) => format!("stopping after {}", humantime::format_duration(d)),
            None => "Ctrl-C to stop".to_owned(),
        }
    )?;

    let client = Client::with_access(&url, options.token.clone(), None)?;
    if options.token.is_some() {
        writeln!(
            out,
            "The API takes only your token: pitot report models --url {url} --token …"
        )?;
    }
    let started = Instant::now();
    let started_ms = pitot_aggregator::glue::now_ms();
    let mut last_state: std::collections::BTreeMap<String, String> = Default::default();
    loop {
        let wait = tokio::time::sleep(options.every);
        tokio::select! {
            () = wait => {}
            () = stop.cancelled() => break,
        }
        let c = client.clone();
        let report = tokio::task::spawn_blocking(move || {
            report::latency(&c, "request.latency", "host,model", "now-1h", &[])
                .and_then(|v| report::typed(&v))
        })
        .await?;
        match report {
            Ok(r) => writeln!(
                out,
                "[{:>4.0}s] {}",
                started.elapsed().as_secs_f64(),
                report::latency_table(&r, "host,model")
            )?,
            Err(e) => writeln!(out, "(waiting for the first intervals: {e:#})")?,
        }
        let c = client.clone();
        let slos = tokio::task::spawn_blocking(move || {
            c.get("/api/v1/slo", &[])
                .and_then(|v| report::typed::<SloList>(&v))
        })
        .await?;
        if let Ok(slos) = slos {
            writeln!(out, "{}", report::slo_table(&slos))?;
            for s in &slos.slos {
                let state = report::alert_label(s.alert);
                let before = last_state.insert(s.name.clone(), state.to_owned());
                if let Some(before) = before.filter(|b| b != state) {
                    writeln!(
                        out,
                        ">>> SLO {}: {before} -> {state} (budget left {:.1} %, burn 5m {:.1}x)\n",
                        s.name,
                        s.error_budget.remaining * 100.0,
                        s.burn_rates.get("5m").copied().unwrap_or(f64::NAN),
                    )?;
                }
            }
        }
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }

    load_stop.store(true, Ordering::Relaxed);
    let mut sent = LoadSummary::default();
    for t in load_threads {
        let s = t
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        sent.timer_lines += s.timer_lines;
        sent.counter_lines += s.counter_lines;
        sent.lines += s.lines;
    }
    writeln!(
        out,
        "Stopping agents (they flush their open interval and drain their spools)…"
    )?;
    agents_stop.cancel();
    for t in agent_tasks {
        t.await??;
    }
    let c = client.clone();
    let (latency, counts, agents_report) = tokio::task::spawn_blocking(move || {
        (
            report::latency(&c, "request.latency", "host,model", "now-1h", &[])
                .and_then(|v| report::typed::<QuantileReport>(&v)),
            report::counters(&c, "request.count", "", "now-1h", &[])
                .and_then(|v| report::typed::<CounterReport>(&v)),
            c.get("/api/v1/agents", &[])
                .and_then(|v| report::typed::<AgentsReport>(&v)),
        )
    })
    .await?;
    let latency = latency?;
    writeln!(
        out,
        "\nFinal fleet latency (ms):\n{}",
        report::latency_table(&latency, "host,model")
    )?;
    writeln!(out, "Agents:\n{}", report::agents_table(&agents_report?))?;
    let fleet = &latency.fleet;
    let counted = fleet.count;
    let q = |k: &str| {
        fleet
            .quantiles
            .get(k)
            .copied()
            .flatten()
            .unwrap_or(f64::NAN)
    };
    writeln!(
        out,
        "Fleet: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms over {} timings.",
        q("0.5"),
        q("0.99"),
        q("0.999"),
        counted
    )?;
    let requests = counts?.fleet.total;
    writeln!(
        out,
        "Sent {} timings and {} request counts; the aggregator counted {} and {} ({}).",
        sent.timer_lines,
        sent.counter_lines,
        counted,
        requests,
        if counted == sent.timer_lines && requests as u64 == sent.counter_lines {
            "exact"
        } else {
            "MISMATCH"
        }
    )?;
    // The input drift injected on gpu-host-3: each host against the rest since the drift
    // started, and the fleet before against after. A demo stopped early (Ctrl-C) says only
    // what happened.
    let drift_from =
        started_ms + options.duration.map_or(DRIFT_AFTER, |d| d / 2).as_millis() as i64;
    let slow_from = started_ms + options.duration.map_or(SLOW_AFTER, |d| d / 3).as_millis() as i64;
    let ended_ms = pitot_aggregator::glue::now_ms();
    let slowed = ended_ms > slow_from;
    let drifted = ended_ms > drift_from;
    let c = client.clone();
    let (by_host, over_time) = tokio::task::spawn_blocking(move || {
        let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
        (
            c.get(
                "/api/v1/drift",
                &[("mode", "hosts".to_owned()), ("from", secs(drift_from))],
            ),
            c.get(
                "/api/v1/drift",
                &[
                    ("mode", "temporal".to_owned()),
                    ("from", secs(drift_from)),
                    ("ref_from", secs(started_ms - 10_000)),
                    ("ref_to", secs(drift_from)),
                ],
            ),
        )
    })
    .await?;
    let c = client.clone();
    let slos = tokio::task::spawn_blocking(move || {
        c.get("/api/v1/slo", &[])
            .and_then(|v| report::typed::<SloList>(&v))
    })
    .await?;
    if let Ok(slos) = slos {
        let title = if slowed {
            format!("gpu-host-2 got {SLOW_FACTOR}x slower a third of the way in")
        } else {
            "stopped before gpu-host-2's scripted slowdown".to_owned()
        };
        write!(out, "\nSLOs ({title}):\n{}", report::slo_table(&slos))?;
    }
    match (by_host, over_time) {
        _ if !drifted => writeln!(
            out,
            "\n(Stopped before gpu-host-3's scripted input drift at +{} s: no drift to report.)",
            (drift_from - started_ms) / 1000
        )?,
        (Ok(h), Ok(t)) => writeln!(
            out,
            "\nInput drift (gpu-host-3 got longer prompts and a new language half-way):\n{}\n{}",
            report::drift_table(&report::typed(&h)?),
            report::drift_table(&report::typed(&t)?)
        )?,
        (Err(e), _) | (_, Err(e)) => writeln!(out, "\n(drift report unavailable: {e:#})")?,
    }
    let c = client.clone();
    let from = format!("{:.3}", started_ms as f64 / 1000.0);
    let models = tokio::task::spawn_blocking(move || {
        c.get("/api/v1/models", &[("from", from)])
            .and_then(|v| report::typed(&v))
    })
    .await?;
    match models {
        Ok(m) => write!(
            out,
            "\nWho owns what and what it cost (host time only: no GPU here):\n{}",
            report::models_table(&m)
        )?,
        Err(e) => writeln!(out, "\n(models report unavailable: {e:#})")?,
    }
    // The canary: v2 against v1 on the host that serves both, since v2 started.
    let c = client.clone();
    let since = format!(
        "{:.3}",
        (started_ms + canary_after.as_millis() as i64) as f64 / 1000.0
    );
    let verdict = tokio::task::spawn_blocking(move || {
        c.get(
            "/api/v1/gate",
            &[
                ("model", "llama3".to_owned()),
                ("baseline", "version:v1,host:gpu-host-1".to_owned()),
                ("candidate", "version:v2,host:gpu-host-1".to_owned()),
                ("from", since),
            ],
        )
        .and_then(|v| report::typed(&v))
    })
    .await?;
    match verdict {
        _ if ended_ms < started_ms + canary_after.as_millis() as i64 => writeln!(
            out,
            "\n(Stopped before llama3 v2's canary started: no gate to ask.)"
        )?,
        Ok(g) => write!(
            out,
            "\nDeployment gate (llama3 v2 started half-way on gpu-host-1, {CANARY_FACTOR}x slower):\n{}",
            report::gate_table(&g)
        )?,
        Err(e) => writeln!(out, "\n(gate unavailable: {e:#})")?,
    }
    aggregator_stop.cancel();
    aggregator.await??;
    Ok(())
}
