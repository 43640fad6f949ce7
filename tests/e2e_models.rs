//! The accountability report with the real binaries: two agents watch two models' processes
//! on fake GPUs (the same sampler and NVML-shaped readings; `PITOT_FAKE_GPUS`), the official
//! DogStatsD client sends token usage and request durations, and `GET /api/v1/models` must
//! give GPU-hours, costs and cost per 1 000 tokens equal to an independent count: the number
//! of samples each agent took (the sum of its `process.count` series) × the shares the fake
//! GPUs imply × the configured prices, and the tokens the test sent.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::{Fleet, bin, python_send, values_file, wait_for};
use serde_json::Value;

/// A child that sleeps until killed (also when an assertion fails).
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _gone = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn sleeper() -> Sleeper {
    Sleeper(Command::new("sleep").arg("600").spawn().expect("sleep"))
}

/// Samples `host`'s agent took with the rule `process` live: the sum of `process.count`
/// (`None` before its first batch).
fn samples(fleet: &Fleet, process: &str, host: &str) -> Option<f64> {
    let q = fleet
        .client()
        .get(
            "/api/v1/quantiles",
            &[
                ("metric", "process.count".to_owned()),
                ("tag", format!("process:{process}")),
                ("tag", format!("host:{host}")),
                ("from", "now-1h".to_owned()),
            ],
        )
        .ok()?;
    q["fleet"]["sum"].as_f64()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        "{what}: reported {a}, counted {b}"
    );
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

const H100: &str = "NVIDIA H100 80GB HBM3";

#[test]
fn costs_and_tokens_per_model_match_an_independent_count() {
    let hosts = ["h1", "h2"];
    let mut fleet = Fleet::new(&hosts);
    fleet.aggregator_extra = r#"
[[slo]]
name = "llama3-latency"
objective = 0.9
window = "1d"
sli = { kind = "latency", metric = "gen_ai.server.request.duration", threshold_ms = 0.5, tags = ["model:llama3"] }

[[model]]
name = "llama3"
owner = "search-ranking"
contact = "search-oncall@example.com"
slos = ["llama3-latency"]
[model.price]
gpu_hour = 1.0
host_hour = 0.5
[model.price.gpu_class]
h100 = 4.0

[[model]]
name = "embedder"
owner = "platform"
price = { gpu_hour = 2.0 }
"#
    .to_owned();
    fleet.start_aggregator();

    // h1: llama3 alone on GPU 0 with per-process use (0.4); the embedder alone on GPU 1,
    // whose driver gives no per-process use (device 0.5). h2: both share GPU 0 (device 0.6).
    let procs: Vec<(Sleeper, Sleeper)> = hosts.iter().map(|_| (sleeper(), sleeper())).collect();
    for (i, h) in hosts.iter().enumerate() {
        let (llama, embed) = (procs[i].0.0.id(), procs[i].1.0.id());
        let llama_pid = fleet.path(&format!("{h}-llama.pid"));
        let embed_pid = fleet.path(&format!("{h}-embed.pid"));
        std::fs::write(&llama_pid, llama.to_string()).unwrap();
        std::fs::write(&embed_pid, embed.to_string()).unwrap();
        let gpus = if *h == "h1" {
            format!(
                "[[device]]\nindex = 0\nname = \"{H100}\"\nutilization = 0.9\n\
                 [[device]]\nindex = 1\nname = \"NVIDIA A10G\"\nutilization = 0.5\n\
                 [[process]]\ndevice = 0\npid = {llama}\nmemory_used = 1000\nsm_utilization = 0.4\n\
                 [[process]]\ndevice = 1\npid = {embed}\nmemory_used = 1000\n"
            )
        } else {
            format!(
                "[[device]]\nindex = 0\nname = \"{H100}\"\nutilization = 0.6\n\
                 [[process]]\ndevice = 0\npid = {llama}\nmemory_used = 1000\n\
                 [[process]]\ndevice = 0\npid = {embed}\nmemory_used = 1000\n"
            )
        };
        let gpu_file = fleet.path(&format!("{h}-gpus.toml"));
        std::fs::write(&gpu_file, gpus).unwrap();
        fleet.agent_env = vec![("PITOT_FAKE_GPUS".into(), gpu_file.display().to_string())];
        fleet.agent_extra = format!(
            "[[process]]\nname = \"llama\"\npid_file = \"{}\"\ntags = [\"model:llama3\", \"version:v2\"]\n\
             [[process]]\nname = \"embed\"\npid_file = \"{}\"\ntags = [\"model:embedder\"]\n",
            llama_pid.display(),
            embed_pid.display()
        );
        fleet.start_agent(h);
    }

    // Traffic through the official client: token usage (OpenTelemetry's name and type
    // attribute) and request durations in seconds, on h1.
    let input: Vec<f64> = (0..60).map(|i| f64::from(100 + 7 * i)).collect();
    let output: Vec<f64> = (0..60).map(|i| f64::from(20 + (i % 13))).collect();
    let durations: Vec<f64> = (0..60).map(|i| 0.05 + 0.01 * f64::from(i)).collect();
    let dir = fleet.dir.path().to_owned();
    let udp = fleet.udp_addr("h1").to_string();
    for (name, values, metric, tags) in [
        (
            "in.txt",
            &input,
            "gen_ai.client.token.usage",
            "model:llama3,version:v2,gen_ai.token.type:input",
        ),
        (
            "out.txt",
            &output,
            "gen_ai.client.token.usage",
            "model:llama3,version:v2,gen_ai.token.type:output",
        ),
        (
            "dur.txt",
            &durations,
            "gen_ai.server.request.duration",
            "model:llama3,version:v2",
        ),
    ] {
        let file = values_file(&dir, name, values);
        python_send(&[
            "--client",
            "datadog",
            "--udp",
            &udp,
            "--metric",
            metric,
            "--kind",
            "distribution",
            "--tags",
            tags,
            "--values",
            file.to_str().unwrap(),
        ]);
    }
    // A model nobody declared.
    let mystery = values_file(&dir, "mystery.txt", &[5.0]);
    python_send(&[
        "--client",
        "datadog",
        "--udp",
        &udp,
        "--metric",
        "request.latency",
        "--kind",
        "timing",
        "--tags",
        "model:mystery",
        "--values",
        mystery.to_str().unwrap(),
    ]);
    fleet.wait_for_count(
        "gen_ai.server.request.duration",
        60,
        Duration::from_secs(30),
    );
    fleet.wait_for_count("gen_ai.client.token.usage", 120, Duration::from_secs(30));
    wait_for("five samples on each host", Duration::from_secs(30), || {
        hosts
            .iter()
            .all(|h| {
                samples(&fleet, "llama", h) >= Some(5.0) && samples(&fleet, "embed", h) >= Some(5.0)
            })
            .then_some(())
    });
    // Stop the agents (they deliver what they hold), so the counts stand still.
    for h in hosts {
        assert!(fleet.stop_agent(h).success());
    }
    let n = |rule: &str, h: &str| samples(&fleet, rule, h).expect("samples");
    let (l1, l2, e1, e2) = (
        n("llama", "h1"),
        n("llama", "h2"),
        n("embed", "h1"),
        n("embed", "h2"),
    );

    let list = fleet.client().get("/api/v1/models", &[]).expect("models");
    let model = |name: &str| -> Value {
        list["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {list:#}"))
            .clone()
    };
    let llama = model("llama3");
    assert_eq!(llama["owner"], "search-ranking");
    assert_eq!(llama["configured"], true);
    // 1-second samples: llama3 holds H100s (all of h1's GPU 0, half of h2's).
    let c = &llama["cost"];
    let gpu_h = (l1 * 1.0 + l2 * 0.5) / 3600.0;
    let busy_h = (l1 * 0.4 + l2 * 0.6 / 2.0) / 3600.0;
    // Each host's time is split between its two live rules.
    let host_h = (l1 + l2) * 0.5 / 3600.0;
    close(f(&c["gpu_hours"]), gpu_h, "llama3 GPU-hours");
    close(f(&c["gpu_busy_hours"]), busy_h, "llama3 busy GPU-hours");
    close(f(&c["host_hours"]), host_h, "llama3 host-hours");
    assert_eq!(
        c["attribution"],
        serde_json::json!(["device", "process"]),
        "{c:#}"
    );
    let allocation = gpu_h * 4.0 + host_h * 0.5;
    let utilisation = busy_h * 4.0 + host_h * 0.5;
    close(
        f(&c["allocation_cost"]),
        allocation,
        "llama3 allocation cost",
    );
    close(
        f(&c["utilisation_cost"]),
        utilisation,
        "llama3 utilisation cost",
    );
    let tokens: f64 = input.iter().chain(&output).sum();
    assert_eq!(
        c["gpus"][0]["price_per_hour"], 4.0,
        "h100 is in the product name: {c:#}"
    );
    assert_eq!(f(&c["tokens"]["input"]), input.iter().sum::<f64>());
    assert_eq!(f(&c["tokens"]["output"]), output.iter().sum::<f64>());
    assert_eq!(f(&c["tokens"]["total"]), tokens);
    close(
        f(&c["per_1k_tokens"]["allocation"]),
        allocation / tokens * 1000.0,
        "llama3 allocation cost per 1k tokens",
    );
    close(
        f(&c["per_1k_tokens"]["utilisation"]),
        utilisation / tokens * 1000.0,
        "llama3 utilisation cost per 1k tokens",
    );
    assert_eq!(f(&llama["requests"]["total"]), 60.0);
    close(
        f(&c["per_1k_requests"]["allocation"]),
        allocation / 60.0 * 1000.0,
        "llama3 cost per 1k requests",
    );
    // The SLO: durations 0.05 … 0.64 s, 46 of 60 at or under 0.5 s.
    let slo = &llama["slos"][0];
    assert_eq!(slo["name"], "llama3-latency");
    close(f(&slo["sli"]), 46.0 / 60.0, "llama3 SLI");
    assert_eq!(
        llama["live"],
        serde_json::json!([{ "version": "v2", "hosts": 2 }])
    );
    assert_eq!(llama["drift"], Value::Null, "no input series: {llama:#}");
    assert_eq!(llama["latency"]["metric"], "gen_ai.server.request.duration");
    assert_eq!(llama["latency"]["count"], 60);

    // The embedder: a flat price, the A10G alone on h1 (device use), half of h2's H100.
    let e = &model("embedder")["cost"];
    let e_gpu = (e1 + e2 * 0.5) / 3600.0;
    close(f(&e["gpu_hours"]), e_gpu, "embedder GPU-hours");
    close(
        f(&e["gpu_busy_hours"]),
        (e1 * 0.5 + e2 * 0.3) / 3600.0,
        "embedder busy GPU-hours",
    );
    close(
        f(&e["allocation_cost"]),
        e_gpu * 2.0,
        "embedder allocation cost",
    );
    assert_eq!(e["host_cost"], Value::Null, "no host price");
    assert_eq!(e["tokens"], Value::Null);
    assert_eq!(e["attribution"], serde_json::json!(["device"]));

    // Nobody declared `mystery`: listed, with no owner.
    let m = model("mystery");
    assert_eq!(m["configured"], false);
    assert_eq!(m["owner"], Value::Null);

    // One model, and the calendar month so far.
    let one = fleet
        .client()
        .get("/api/v1/models/llama3", &[("window", "month".to_owned())])
        .expect("one model");
    assert!(
        one["from"].as_str().unwrap().ends_with("-01T00:00:00.000Z"),
        "{}",
        one["from"]
    );
    close(
        f(&one["cost"]["gpu_hours"]),
        gpu_h,
        "llama3 GPU-hours this month",
    );
    let err = fleet.client().get("/api/v1/models/gpt-9", &[]).unwrap_err();
    assert!(err.to_string().contains("llama3, embedder"), "{err}");

    let out = Command::new(bin("pitot"))
        .args(["report", "models", "--url", &fleet.url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "search-ranking",
        "v2×2",
        "(none)",
        "compute use attributed per device and per process",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}
