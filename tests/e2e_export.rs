//! Fleet series for Prometheus, end to end: two real agents fed by the official `datadog`
//! client (distributions in seconds, counters), an aggregator with `[[export]]`s, and a real
//! Prometheus (Debian `prometheus`, native histograms on) scraping its `/metrics`. Prometheus's
//! own `histogram_quantile` over the native histograms must agree with Pitot's exact
//! quantiles within one bucket of the native schema; the text exposition carries the
//! quantiles, counts and sums, the cap on groups is counted when it bites, and `promtool check
//! metrics` finds nothing but the documented Sloth names. The Grafana dashboard that ships in
//! `packaging/grafana/` is checked against the families this produces.

// Helpers below sit outside `#[test]` functions; a failed setup step should panic like an assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Fleet, Proc, exact_quantile, latencies, python_send, wait_for};
use serde_json::Value;

const EXPORTS: &str = r#"
[[export]]
metric = "request.duration_seconds"
group_by = ["model", "version"]
quantiles = [0.5, 0.9, 0.99]

[[export]]
metric = "request.count"
group_by = ["model"]

[[export]]
metric = "request.duration_seconds"
name = "pitot_fleet_duration_by_host_seconds"
group_by = ["host"]
max_groups = 1
"#;

/// Schema 5: one native bucket spans a factor 2^(1/32).
const SCHEMA: i32 = 5;

fn write_values(dir: &Path, name: &str, values: &[f64]) -> String {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    for v in values {
        // Seconds with microsecond digits, as a client's `time.perf_counter()` differences.
        writeln!(f, "{v:.6}").unwrap();
    }
    path.to_str().unwrap().to_owned()
}

/// Prometheus's answer to an instant query: the vector's samples as (labels, value).
fn prom_query(prom: &pitot::report::Client, query: &str) -> Vec<(Value, f64)> {
    let Ok(v) = prom.get("/api/v1/query", &[("query", query.to_owned())]) else {
        return Vec::new();
    };
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| {
                    let value = s["value"][1].as_str()?.parse().ok()?;
                    Some((s["metric"].clone(), value))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn start_prometheus(fleet: &Fleet) -> (Proc, pitot::report::Client) {
    let port = common::free_tcp_port();
    let config = fleet.path("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: pitot\n    static_configs:\n      \
             - targets: [\"127.0.0.1:{}\"]\n",
            fleet.http_port
        ),
    )
    .unwrap();
    let log = fleet.path("prometheus.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(common::tools::debian_tool("prometheus", "prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            fleet.path("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--enable-feature=native-histograms")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("prometheus starts");
    let proc = Proc { child, log };
    let client =
        pitot::report::Client::with_access(&format!("http://127.0.0.1:{port}"), None, None)
            .unwrap();
    (proc, client)
}

#[test]
fn prometheus_scrapes_native_histograms_that_match_pitot() {
    let mut fleet = Fleet::new(&["gpu-a", "gpu-b"]);
    fleet.aggregator_extra = EXPORTS.to_owned();
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    fleet.start_agent("gpu-b");

    // Seconds, as Prometheus-minded clients report them: v1 on both hosts, v2 on gpu-b.
    let v1_a: Vec<f64> = latencies(1, 3000, 30.0).iter().map(|v| v / 1e3).collect();
    let v1_b: Vec<f64> = latencies(2, 2000, 36.0).iter().map(|v| v / 1e3).collect();
    let v2_b: Vec<f64> = latencies(3, 2500, 55.0).iter().map(|v| v / 1e3).collect();
    let dir = fleet.dir.path().to_path_buf();
    let send = |agent: &str, file: &str, values: &[f64], tags: &str| {
        let path = write_values(&dir, file, values);
        let udp = fleet.udp_addr(agent).to_string();
        python_send(&[
            "--client",
            "datadog",
            "--udp",
            &udp,
            "--metric",
            "request.duration_seconds",
            "--kind",
            "distribution",
            "--tags",
            tags,
            "--values",
            &path,
            "--rate",
            "20000",
        ]);
    };
    send("gpu-a", "v1a.txt", &v1_a, "model:llama3,version:v1");
    send("gpu-b", "v1b.txt", &v1_b, "model:llama3,version:v1");
    send("gpu-b", "v2b.txt", &v2_b, "model:llama3,version:v2");
    let ones = vec![1.0; 700];
    let ones_path = common::values_file(&dir, "ones.txt", &ones);
    python_send(&[
        "--client",
        "datadog",
        "--udp",
        &fleet.udp_addr("gpu-a").to_string(),
        "--metric",
        "request.count",
        "--kind",
        "increment",
        "--tags",
        "model:llama3,status:200",
        "--values",
        ones_path.to_str().unwrap(),
    ]);
    let total = (v1_a.len() + v1_b.len() + v2_b.len()) as u64;
    fleet.wait_for_count("request.duration_seconds", total, Duration::from_secs(60));

    // Pitot's own answer, per version.
    let pitot_q = |version: &str| -> Value {
        fleet
            .client()
            .get(
                "/api/v1/quantiles",
                &[
                    ("metric", "request.duration_seconds".to_owned()),
                    ("q", "0.5,0.9,0.99".to_owned()),
                    ("tag", "model:llama3".to_owned()),
                    ("tag", format!("version:{version}")),
                ],
            )
            .unwrap()["fleet"]
            .clone()
    };
    let mut v1 = v1_a.clone();
    v1.extend(&v1_b);
    let expected = [
        ("v1", v1, pitot_q("v1")),
        ("v2", v2_b.clone(), pitot_q("v2")),
    ];

    // The text exposition: quantiles, exact count and sum per group, and a counted cap.
    let text = wait_for(
        "exported series in /metrics",
        Duration::from_secs(20),
        || {
            fleet.metrics_text().filter(|t| {
            t.contains("pitot_fleet_request_count_total{model=\"llama3\"} 700")
                && t.contains("pitot_fleet_request_duration_seconds_count{model=\"llama3\",version=\"v2\"}")
        })
        },
    );
    assert!(
        text.contains("# TYPE pitot_fleet_request_duration_seconds summary"),
        "{text}"
    );
    for (version, values, pitot) in &expected {
        let count_line = format!(
            "pitot_fleet_request_duration_seconds_count{{model=\"llama3\",version=\"{version}\"}} {}",
            values.len()
        );
        assert!(text.contains(&count_line), "{count_line} in\n{text}");
        for q in ["0.5", "0.9", "0.99"] {
            let prefix = format!(
                "pitot_fleet_request_duration_seconds{{model=\"llama3\",version=\"{version}\",quantile=\"{q}\"}} "
            );
            let line = text
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
            let got: f64 = line[prefix.len()..].parse().unwrap();
            let want = pitot["quantiles"][q].as_f64().unwrap();
            assert_eq!(got, want, "text quantile {q} of {version} is Pitot's own");
            let exact = exact_quantile(values, q.parse().unwrap());
            assert!(
                (got - exact).abs() <= 0.01 * exact,
                "{version} p{q}: {got} vs exact {exact}"
            );
        }
    }
    let capped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("pitot_aggregator_export_capped_total "))
        .unwrap_or_else(|| panic!("no cap counter in\n{text}"))
        .parse()
        .unwrap();
    assert!(capped > 0, "one host of two is past max_groups = 1");
    let by_host = text
        .lines()
        .filter(|l| l.starts_with("pitot_fleet_duration_by_host_seconds_count{"))
        .count();
    assert_eq!(by_host, 1, "max_groups = 1 keeps one group:\n{text}");

    // promtool: nothing but the documented Sloth names (none here: no SLOs).
    let mut promtool = Command::new(common::tools::debian_tool("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let findings = String::from_utf8_lossy(&checked.stdout).to_string()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(
        findings.trim().is_empty() && checked.status.success(),
        "promtool: {findings}"
    );

    // A real Prometheus scrapes the protobuf exposition and sees native histograms.
    let (mut prom_proc, prom) = start_prometheus(&fleet);
    let width = 2f64.powf(2f64.powi(-SCHEMA));
    for (version, values, pitot) in &expected {
        for q in ["0.5", "0.9", "0.99"] {
            let query = format!(
                "histogram_quantile({q}, pitot_fleet_request_duration_seconds{{version=\"{version}\"}})"
            );
            let got = wait_for(&query, Duration::from_secs(60), || {
                assert!(
                    prom_proc.alive(),
                    "prometheus exited:\n{}",
                    prom_proc.log_text()
                );
                prom_query(&prom, &query).first().map(|(_, v)| *v)
            });
            let want = pitot["quantiles"][q].as_f64().unwrap();
            // Pitot's buckets go whole into the native bucket of their middle: Prometheus's
            // interpolation stays within one native bucket of Pitot's value.
            let ratio = got / want;
            eprintln!("{version} p{q}: Prometheus {got}, Pitot {want}");
            assert!(
                ratio <= width * 1.002 && ratio >= 1.0 / (width * 1.002),
                "{version} p{q}: Prometheus {got}, Pitot {want} (ratio {ratio}, bucket {width})"
            );
            let exact = exact_quantile(values, q.parse().unwrap());
            assert!(
                (got / exact - 1.0).abs() < width - 1.0 + 0.01,
                "{version} p{q}: Prometheus {got}, exact {exact}"
            );
        }
        // Count and sum of the native histogram are exact.
        let count = prom_query(
            &prom,
            &format!(
                "histogram_count(pitot_fleet_request_duration_seconds{{version=\"{version}\"}})"
            ),
        );
        assert_eq!(count.first().map(|(_, v)| *v), Some(values.len() as f64));
    }
    let counter = prom_query(&prom, "pitot_fleet_request_count_total");
    assert_eq!(counter.len(), 1, "{counter:?}");
    assert_eq!(counter[0].1, 700.0);
    assert_eq!(counter[0].0["model"], "llama3");

    // The shipped Grafana dashboard queries families that exist and nothing else.
    check_dashboard(&prom, "pitot_fleet_request_duration_seconds");
}

/// `packaging/grafana/pitot-fleet.json`: valid JSON, a Prometheus datasource variable, and
/// every panel's queries naming Pitot families that Prometheus has now once `$histogram`
/// names `histogram` (the dashboard's default is the example config's family).
fn check_dashboard(prom: &pitot::report::Client, histogram: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/grafana/pitot-fleet.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard JSON");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let default = |name: &str| -> String {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name}"))
            .to_owned()
    };
    assert_eq!(default("datasource"), "prometheus");
    assert_eq!(default("histogram"), "pitot_fleet_request_latency");
    assert_eq!(default("counter"), "pitot_fleet_request_count_total");
    let names: Vec<String> = prom.get("/api/v1/label/__name__/values", &[]).unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 4, "dashboard has its panels");
    let mut exprs = 0;
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            exprs += 1;
            let expr = expr
                .replace("$histogram", histogram)
                .replace("$counter", "pitot_fleet_request_count_total");
            let families: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .filter(|w| w.starts_with("pitot_"))
                .collect();
            assert!(
                !families.is_empty(),
                "panel {title}: {expr} names no Pitot family"
            );
            for f in families {
                // A native histogram is one family; a summary's parts are suffixed.
                assert!(
                    names.iter().any(|n| n == f),
                    "panel {title}: {f} is not a series Prometheus scraped ({names:?})"
                );
            }
            // The query must run against the real Prometheus (with the variables filled in).
            let runnable = expr
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$model", ".*")
                .replace("$version", ".*");
            let v = prom.get("/api/v1/query", &[("query", runnable.clone())]);
            assert!(
                v.as_ref().is_ok_and(|v| v["status"] == "success"),
                "panel {title}: {runnable}: {v:?}"
            );
        }
    }
    assert!(exprs >= 4, "{exprs} queries");
}
