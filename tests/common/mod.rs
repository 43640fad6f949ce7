//! Shared harness for the end-to-end tests: real `pitot-aggregator` and `pitot-agent`
//! processes on loopback, with certificates, configs, logs and stores in a temp dir.
//!
//! Synchronisation is by polling the real HTTP API (or a process log) against a deadline,
//! never by a fixed sleep; the only sleeps pace traffic in time ("mid-stream").
// Test support code: a failed setup step should panic the test, like an assertion.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::let_underscore_must_use
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod tools;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// A binary built by this workspace (`cargo test --workspace` builds them all).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so every binary is built",
        path.display()
    );
    path
}

/// A free loopback UDP port (released before use; the window for a clash is tiny).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free loopback TCP port.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` until it returns true (then true) or `timeout` passes (then false), so the
/// caller can report what it last saw.
pub fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An aggregator and agents, as real processes.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub quic_port: u16,
    pub http_port: u16,
    pub aggregator: Option<Proc>,
    pub agents: BTreeMap<String, Proc>,
    pub udp_ports: BTreeMap<String, u16>,
    /// Appended to the aggregator's config (`[[slo]]`, `[drift]`…).
    pub aggregator_extra: String,
    /// Added to the aggregator's `[http]` section (`tokens_file`, `tls_cert`…).
    pub http_extra: String,
    /// With HTTPS: the CA that signed the API's certificate (for `localhost`); the fleet's
    /// URL becomes `https://localhost:<port>`.
    pub https_ca: Option<PathBuf>,
    /// The bearer token `client()` sends.
    pub token: Option<String>,
    /// Appended to every agent's config (`[[scrape]]`, `[[process]]`…).
    pub agent_extra: String,
    /// Environment of every agent started from now on (`PITOT_AGENT__…` overrides).
    pub agent_env: Vec<(String, String)>,
    /// Environment of the aggregator (test hooks such as `PITOT_AGGREGATOR_WATCH_EVERY`).
    pub aggregator_env: Vec<(String, String)>,
    starts: usize,
}

impl Fleet {
    pub fn new(agents: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = agents.iter().map(|a| (*a).to_owned()).collect();
        pitot::certs::init(&dir.path().join("certs"), "pitot-aggregator", &names).unwrap();
        Fleet {
            quic_port: free_udp_port(),
            http_port: free_tcp_port(),
            udp_ports: agents
                .iter()
                .map(|a| ((*a).to_owned(), free_udp_port()))
                .collect(),
            dir,
            aggregator: None,
            agents: BTreeMap::new(),
            aggregator_extra: String::new(),
            http_extra: String::new(),
            https_ca: None,
            token: None,
            agent_extra: String::new(),
            agent_env: Vec::new(),
            aggregator_env: Vec::new(),
            starts: 0,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn url(&self) -> String {
        match self.https_ca {
            Some(_) => format!("https://localhost:{}", self.http_port),
            None => format!("http://127.0.0.1:{}", self.http_port),
        }
    }

    /// The aggregator's `/metrics` page (`None` when it does not answer).
    pub fn metrics_text(&self) -> Option<String> {
        self.client()
            .get_raw("/metrics")
            .ok()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    }

    pub fn client(&self) -> pitot::report::Client {
        pitot::report::Client::with_access(
            &self.url(),
            self.token.clone(),
            self.https_ca.as_deref(),
        )
        .expect("client")
    }

    fn spawn(&mut self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        self.starts += 1;
        let log = self.path(&format!("{name}.{}.log", self.starts));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin(name.split('@').next().unwrap()));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    pub fn start_aggregator(&mut self) {
        let d = self.dir.path().display().to_string();
        let config = self.path("aggregator.toml");
        std::fs::write(
            &config,
            format!(
                "[quic]\nlisten = \"127.0.0.1:{}\"\nca = \"{d}/certs/ca.pem\"\n\
                 cert = \"{d}/certs/aggregator.pem\"\nkey = \"{d}/certs/aggregator.key\"\n\
                 [http]\nlisten = \"127.0.0.1:{}\"\n{}\n[store]\ndir = \"{d}/store\"\n{}",
                self.quic_port, self.http_port, self.http_extra, self.aggregator_extra
            ),
        )
        .unwrap();
        let env = self.aggregator_env.clone();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let proc = self.spawn(
            "pitot-aggregator",
            &["serve", "--config", config.to_str().unwrap()],
            &env,
        );
        self.aggregator = Some(proc);
        let client = self.client();
        // /healthz answers text: any HTTP answer means it is up.
        wait_for("aggregator /healthz", Duration::from_secs(20), || {
            client.get_raw("/healthz").ok()
        });
    }

    pub fn kill_aggregator(&mut self) {
        if let Some(p) = self.aggregator.take() {
            p.sigkill();
        }
    }

    pub fn agent_config(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.toml"))
    }

    pub fn unix_socket(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.sock"))
    }

    pub fn udp_addr(&self, name: &str) -> SocketAddr {
        ([127, 0, 0, 1], self.udp_ports[name]).into()
    }

    pub fn start_agent(&mut self, name: &str) {
        let d = self.dir.path().display().to_string();
        let config = self.agent_config(name);
        std::fs::write(
            &config,
            format!(
                "agent_id = \"{name}\"\ninterval = \"1s\"\n[uplink]\n\
                 aggregator = \"127.0.0.1:{}\"\nserver_name = \"pitot-aggregator\"\n\
                 ca = \"{d}/certs/ca.pem\"\ncert = \"{d}/certs/{name}.pem\"\n\
                 key = \"{d}/certs/{name}.key\"\nbackoff_max = \"1s\"\n\
                 [spool]\ndir = \"{d}/spool-{name}\"\n\
                 [dogstatsd]\nudp = \"127.0.0.1:{}\"\nunix = \"{d}/{name}.sock\"\n{}",
                self.quic_port, self.udp_ports[name], self.agent_extra
            ),
        )
        .unwrap();
        let env = self.agent_env.clone();
        let mut vars: Vec<(&str, &str)> = vec![("RUST_LOG", "info,pitot_agent::recorder=debug")];
        vars.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let proc = self.spawn(
            "pitot-agent",
            &["run", "--config", config.to_str().unwrap()],
            &vars,
        );
        self.agents.insert(name.to_owned(), proc);
        let sock = self.unix_socket(name);
        wait_for(
            &format!("agent {name} socket"),
            Duration::from_secs(20),
            || sock.exists().then_some(()),
        );
    }

    pub fn kill_agent(&mut self, name: &str) {
        if let Some(p) = self.agents.remove(name) {
            p.sigkill();
        }
    }

    pub fn stop_agent(&mut self, name: &str) -> std::process::ExitStatus {
        self.agents.remove(name).expect("agent running").terminate()
    }

    /// The latest interval start (Unix ms) among the `Batch spooled.` lines in every log of
    /// agent `name` so far.
    pub fn last_spooled_start(&self, name: &str) -> Option<i64> {
        let tag = format!("agent_id={name}");
        let mut last = None;
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if file.starts_with("pitot-agent.") && file.ends_with(".log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for line in text
                    .lines()
                    .filter(|l| l.contains("Batch spooled.") && l.contains(&tag))
                {
                    let start = line
                        .split(" start=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|n| n.parse::<i64>().ok());
                    last = last.max(start);
                }
            }
        }
        last
    }

    /// Waits until agent `name` has spooled an interval that starts a full interval (1 s)
    /// after now: then every interval holding a value sent before now is in its spool, however
    /// its log lines were timed. Counting "Batch spooled." lines is not enough: one close can
    /// spool several batches (late `|T` intervals), and the interval holding the last values
    /// may still be open.
    pub fn wait_spooled_past_now(&self, name: &str) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        wait_for(
            &format!("{name} to spool the intervals up to now"),
            Duration::from_secs(20),
            || {
                self.last_spooled_start(name)
                    .filter(|s| *s >= now_ms + 1_000)
            },
        );
    }

    /// `/api/v1/quantiles` for `metric`, or `None` on error.
    pub fn quantiles(&self, metric: &str, qs: &str, group_by: &str) -> Option<Value> {
        self.client()
            .get(
                "/api/v1/quantiles",
                &[
                    ("metric", metric.to_owned()),
                    ("q", qs.to_owned()),
                    ("group_by", group_by.to_owned()),
                ],
            )
            .ok()
    }

    /// `/api/v1/counters` for `metric`.
    pub fn counters(&self, metric: &str, group_by: &str) -> Option<Value> {
        self.client()
            .get(
                "/api/v1/counters",
                &[
                    ("metric", metric.to_owned()),
                    ("group_by", group_by.to_owned()),
                ],
            )
            .ok()
    }

    /// Fleet count of a histogram metric (0 when unknown).
    pub fn count(&self, metric: &str) -> u64 {
        self.quantiles(metric, "0.5", "")
            .and_then(|v| v["fleet"]["count"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until the fleet count of `metric` is `expected`; panics if it overshoots.
    pub fn wait_for_count(&self, metric: &str, expected: u64, timeout: Duration) {
        let mut last = 0;
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.count(metric);
            assert!(
                n <= expected,
                "{metric}: counted {n}, more than the {expected} sent"
            );
            if n == expected {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{metric}: counted {n} (last seen {last}) of {expected} sent\n--- logs ---\n{}",
                    self.logs()
                );
            }
            last = n;
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Tails of every process log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                // The last lines that are not per-batch debug chatter.
                let tail: Vec<&str> = text
                    .lines()
                    .rev()
                    .filter(|l| !l.contains("Batch spooled."))
                    .take(15)
                    .collect();
                out.push_str(&format!("== {}\n", path.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Writes values (3 decimals, as clients send them) to a file for the Python sender.
pub fn values_file(dir: &Path, name: &str, values: &[f64]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    for v in values {
        writeln!(f, "{v:.3}").unwrap();
    }
    path
}

/// Starts `tests/clients/send.py` with an official client.
pub fn python_sender(args: &[&str]) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/send.py");
    Command::new(tools::python())
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("the test virtualenv's python starts")
}

/// Runs the sender to completion and checks it succeeded.
pub fn python_send(args: &[&str]) {
    let status = python_sender(args).wait().unwrap();
    assert!(
        status.success(),
        "send.py {args:?} failed (the clients come from tests/clients/requirements.txt)"
    );
}

/// Log-normal latencies in ms, 3 decimals, seeded.
pub fn latencies(seed: u64, n: usize, median: f64) -> Vec<f64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            ((median * (0.6 * z).exp()) * 1000.0).round() / 1000.0
        })
        .collect()
}

/// Nearest-rank quantile of raw values.
pub fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Asserts a reported quantile group is within 1% of the exact quantiles of `values`.
#[track_caller]
pub fn check_quantiles(label: &str, group: &Value, values: &[f64]) {
    assert_eq!(
        group["count"].as_u64(),
        Some(values.len() as u64),
        "{label}: count"
    );
    for q in ["0.5", "0.9", "0.99", "0.999"] {
        let want = exact_quantile(values, q.parse().unwrap());
        let got = group["quantiles"][q].as_f64().expect("quantile present");
        assert!(
            (got - want).abs() <= 0.01 * want.abs(),
            "{label} p{q}: got {got}, exact {want}"
        );
    }
}

/// `pitot tokens new`: (token, file line).
pub fn new_token(name: &str, scope: &str) -> (String, String) {
    let out = Command::new(bin("pitot"))
        .args(["tokens", "new", "--name", name, "--scope", scope])
        .output()
        .expect("pitot runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let token = lines
        .iter()
        .find(|l| l.starts_with("pitot_"))
        .unwrap_or_else(|| panic!("no token in {text}"));
    let line = lines
        .iter()
        .find(|l| l.ends_with(&format!(" {name}")) && l.len() > 64)
        .unwrap_or_else(|| panic!("no file line in {text}"));
    ((*token).to_owned(), (*line).to_owned())
}
