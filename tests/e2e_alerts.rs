//! Alerts that reach someone, end to end: a real agent and aggregator with an SLO and two
//! `[[alert]]` targets — a real Prometheus Alertmanager (Debian `prometheus-alertmanager`)
//! that routes by severity to webhook receivers in this test, and a webhook straight from
//! Pitot (Slack-compatible `text`, a custom header) whose receiver fails its first request so
//! the retry shows. Bad latencies make the SLO page; a flood of good ones brings it back to
//! ok. Both paths must see it fire and resolve, the delivery counters on `/metrics` must say so,
//! and the transitions must be in the audit trail.

// Helpers below sit outside `#[test]` functions; a failed setup step should panic like an assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fleet, Proc, wait_for};
use serde_json::Value;

/// A request a receiver got: path, headers (lower-case names), JSON body.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

/// An HTTP receiver on loopback recording every POST; the first `fail_first` requests get a 500.
fn receiver(fail_first: usize) -> (u16, Arc<Mutex<Vec<Got>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&got);
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut headers = Vec::new();
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    if k == "content-length" {
                        length = v.parse().unwrap_or(0);
                    }
                    headers.push((k, v));
                }
            }
            let mut body = vec![0; length];
            let _read = reader.read_exact(&mut body);
            n += 1;
            let status = if n <= fail_first {
                "500 Internal Server Error"
            } else {
                seen.lock().unwrap().push(Got {
                    path,
                    headers,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                "200 OK"
            };
            let _sent = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (port, got)
}

fn start_alertmanager(fleet: &Fleet, hooks: u16) -> (Proc, u16) {
    let port = common::free_tcp_port();
    let config = fleet.path("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: tickets\n  group_by: ['alertname', 'slo']\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\n  routes:\n    \
             - matchers: ['severity=\"page\"']\n      receiver: pager\n\
             receivers:\n  - name: tickets\n    webhook_configs:\n      \
             - url: 'http://127.0.0.1:{hooks}/am/tickets'\n        send_resolved: true\n  \
             - name: pager\n    webhook_configs:\n      \
             - url: 'http://127.0.0.1:{hooks}/am/pager'\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let log = fleet.path("alertmanager.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(common::tools::debian_tool(
        "prometheus-alertmanager",
        "prometheus-alertmanager",
    ))
    .arg(format!("--config.file={}", config.display()))
    .arg(format!(
        "--storage.path={}",
        fleet.path("alertmanager-data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .arg("--cluster.listen-address=")
    .stdin(Stdio::null())
    .stdout(file.try_clone().unwrap())
    .stderr(file)
    .spawn()
    .expect("alertmanager starts");
    let proc = Proc { child, log };
    wait_for("alertmanager ready", Duration::from_secs(30), || {
        ureq::get(&format!("http://127.0.0.1:{port}/-/ready"))
            .call()
            .ok()
            .map(|_| ())
    });
    (proc, port)
}

fn counter(metrics: &str, name: &str, target: &str) -> u64 {
    let prefix = format!("{name}{{target=\"{target}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
        .parse()
        .unwrap()
}

fn send(udp: &UdpSocket, fleet: &Fleet, value: f64, n: usize) {
    let line = format!("request.latency:{value}|ms|#model:llama3,version:v2");
    let lines = vec![line; 30].join("\n");
    for _ in 0..n / 30 {
        udp.send_to(lines.as_bytes(), fleet.udp_addr("gpu-a"))
            .unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn slo_alerts_reach_alertmanager_and_a_webhook_and_resolve() {
    let (hooks, got) = receiver(0);
    let (direct, direct_got) = receiver(1);
    let mut fleet = Fleet::new(&["gpu-a"]);
    let (mut am, am_port) = start_alertmanager(&fleet, hooks);
    fleet.aggregator_env = vec![("PITOT_AGGREGATOR_WATCH_EVERY".into(), "1s".into())];
    fleet.aggregator_extra = format!(
        r#"
[[slo]]
name = "chat-latency"
objective = 0.99
window = "30d"
service = "chat"
[slo.sli]
kind = "latency"
metric = "request.latency"
threshold_ms = 100
tags = ["model:llama3"]

[[alert]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:{am_port}"
resend = "2s"
page_url = "http://pitot.example:7070"

[[alert]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{direct}/hook"
headers = {{ Authorization = "Bearer s3cret" }}
"#
    );
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");

    // 120 requests of 500 ms against a 100 ms threshold: every burn rate is 100, the SLO pages.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    send(&udp, &fleet, 500.0, 120);
    fleet.wait_for_count("request.latency", 120, Duration::from_secs(30));

    // Alertmanager routes severity=page to the pager receiver.
    let paged = wait_for("Alertmanager pages", Duration::from_secs(60), || {
        assert!(am.alive(), "alertmanager exited:\n{}", am.log_text());
        got.lock()
            .unwrap()
            .iter()
            .find(|g| g.path == "/am/pager" && g.body["status"] == "firing")
            .cloned()
    });
    let alert = &paged.body["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "PitotSLOBurnRate");
    assert_eq!(alert["labels"]["slo"], "chat-latency");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["model"], "llama3");
    assert_eq!(alert["labels"]["service"], "chat");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("SLO chat-latency: page"),
        "{alert}"
    );
    assert_eq!(
        alert["generatorURL"],
        "http://pitot.example:7070/slo/chat-latency"
    );

    // The direct webhook: its first request failed (500), the retry delivered it.
    let hooked = wait_for("the webhook fires", Duration::from_secs(30), || {
        direct_got.lock().unwrap().first().cloned()
    });
    assert_eq!(hooked.path, "/hook");
    assert!(
        hooked
            .headers
            .contains(&("authorization".into(), "Bearer s3cret".into())),
        "{:?}",
        hooked.headers
    );
    assert_eq!(hooked.body["status"], "firing");
    assert_eq!(hooked.body["state"], "page");
    let text = hooked.body["text"].as_str().unwrap();
    // `ok → page`, or just `page` when the first evaluation already saw the bad requests.
    assert!(
        text.starts_with("[Pitot] FIRING SLO chat-latency: ")
            && text.contains("page. SLO chat-latency: page (error budget left"),
        "{text}"
    );

    // Resent while firing: Alertmanager keeps it active (endsAt in the future).
    std::thread::sleep(Duration::from_secs(3));
    let mut r = ureq::get(&format!("http://127.0.0.1:{am_port}/api/v2/alerts"))
        .call()
        .unwrap();
    let active: Value = r.body_mut().read_json().unwrap();
    assert_eq!(active.as_array().map(Vec::len), Some(1), "{active}");
    assert_eq!(active[0]["status"]["state"], "active", "{active}");

    // 30 000 good requests: the bad fraction falls to 0.4 % (every burn rate 0.4, under the
    // ticket's 1), the SLO is ok again.
    send(&udp, &fleet, 20.0, 30_000);
    let ok = common::poll_until(Duration::from_secs(60), || {
        fleet
            .client()
            .get("/api/v1/slo/chat-latency", &[])
            .is_ok_and(|r| r["alert"] == "ok")
    });
    assert!(
        ok,
        "the SLO is ok again: {:?}\nwebhook: {:?}",
        fleet.client().get("/api/v1/slo/chat-latency", &[]),
        direct_got
            .lock()
            .unwrap()
            .iter()
            .map(|g| g.body["text"].clone())
            .collect::<Vec<_>>()
    );
    let resolved = wait_for("the webhook resolves", Duration::from_secs(30), || {
        direct_got
            .lock()
            .unwrap()
            .iter()
            .find(|g| g.body["status"] == "resolved" && g.body["state"] == "ok")
            .cloned()
    });
    assert!(
        resolved.body["text"]
            .as_str()
            .unwrap()
            .starts_with("[Pitot] RESOLVED SLO chat-latency:"),
        "{}",
        resolved.body
    );
    wait_for("Alertmanager resolves", Duration::from_secs(60), || {
        got.lock()
            .unwrap()
            .iter()
            .find(|g| g.path == "/am/pager" && g.body["status"] == "resolved")
            .map(|_| ())
    });

    // Counted: both targets delivered, the webhook's failed attempt shows, nothing dropped.
    let metrics = fleet.metrics_text().unwrap();
    assert!(counter(&metrics, "pitot_aggregator_alerts_sent_total", "am") >= 3);
    assert!(counter(&metrics, "pitot_aggregator_alerts_sent_total", "hook") >= 2);
    assert_eq!(
        counter(
            &metrics,
            "pitot_aggregator_alert_attempt_errors_total",
            "hook"
        ),
        1
    );
    assert_eq!(
        counter(&metrics, "pitot_aggregator_alerts_failed_total", "hook"),
        0
    );
    assert_eq!(
        counter(&metrics, "pitot_aggregator_alerts_dropped_total", "am"),
        0
    );

    // And the audit trail has the transitions.
    let audit = fleet
        .client()
        .get("/api/v1/audit", &[("kind", "slo.alert".to_owned())])
        .unwrap();
    let states: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"]["to"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert!(states.contains(&"page".to_owned()), "{audit}");
    assert_eq!(states.last().map(String::as_str), Some("ok"), "{audit}");
}
