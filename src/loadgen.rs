//! `pitot loadgen`: seeded DogStatsD traffic at a given rate, packed as clients pack it.
//!
//! Each line is `<metric>:<value>|ms|#model:<m>,version:<v>` (latencies, log-normal per
//! model) or, every `counter_every`-th line, `request.count:1|c|#model:<m>,version:<v>`.
//! Lines are packed into datagrams of `per_datagram` lines (about 30, like the Datadog
//! clients' buffering) and sent over UDP or a Unix datagram socket, paced in 1 ms slices.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Where to send.
#[derive(Debug, Clone)]
pub enum Target {
    /// UDP address.
    Udp(SocketAddr),
    /// Unix datagram socket path; `blocking: false` behaves like the DogStatsD clients'
    /// default (drops when the socket queue is full, counted as `send_errors`).
    Unix {
        /// Socket path.
        path: PathBuf,
        /// Wait for room in the queue instead of dropping.
        blocking: bool,
    },
}

/// Load shape.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Destination.
    pub target: Target,
    /// Lines per second; 0 = as fast as possible.
    pub rate: u64,
    /// Stop after this long (when set).
    pub duration: Option<Duration>,
    /// Stop after this many lines (when set).
    pub lines: Option<u64>,
    /// Lines per datagram.
    pub per_datagram: usize,
    /// RNG seed.
    pub seed: u64,
    /// Models to spread lines over (`model:version`).
    pub models: Vec<(String, String)>,
    /// Distinct latency metric names per model (`request.latency`, `request.latency.1`, …).
    pub metrics: usize,
    /// Every n-th line is a `request.count` counter (0 = never).
    pub counter_every: u64,
    /// Median latency in ms, per model index (cycled).
    pub median_ms: Vec<f64>,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            target: Target::Udp(([127, 0, 0, 1], 8125).into()),
            rate: 10_000,
            duration: Some(Duration::from_secs(10)),
            lines: None,
            per_datagram: 30,
            seed: 1,
            models: vec![("llama3".into(), "v1".into())],
            metrics: 1,
            counter_every: 0,
            median_ms: vec![40.0],
        }
    }
}

/// What was sent.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    /// Lines handed to the socket successfully.
    pub lines: u64,
    /// Timer lines among them.
    pub timer_lines: u64,
    /// Counter lines among them.
    pub counter_lines: u64,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Datagrams the socket refused (full queue on a non-blocking Unix socket, or errors).
    pub send_errors: u64,
    /// Lines in refused datagrams (not sent).
    pub dropped_lines: u64,
    /// Wall time.
    pub elapsed: Duration,
}

enum Sock {
    Udp(UdpSocket, SocketAddr),
    Unix(UnixDatagram),
}

impl Sock {
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Udp(s, addr) => s.send_to(buf, addr),
            Sock::Unix(s) => s.send(buf),
        }
    }
}

/// A standard-normal sample (Box–Muller), so no distribution crate is needed for one shape.
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Sends load as specified; `stop` is polled between slices.
pub fn run(spec: &LoadSpec, stop: &dyn Fn() -> bool) -> io::Result<LoadSummary> {
    let sock = match &spec.target {
        Target::Udp(addr) => {
            let bind: SocketAddr = if addr.is_ipv4() {
                ([127, 0, 0, 1], 0).into()
            } else {
                "[::1]:0".parse().map_err(io::Error::other)?
            };
            Sock::Udp(UdpSocket::bind(bind)?, *addr)
        }
        Target::Unix { path, blocking } => {
            let s = UnixDatagram::unbound()?;
            s.connect(path)?;
            s.set_nonblocking(!blocking)?;
            Sock::Unix(s)
        }
    };
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let models = if spec.models.is_empty() {
        vec![("model".to_owned(), "v1".to_owned())]
    } else {
        spec.models.clone()
    };
    let per = spec.per_datagram.max(1);
    let start = Instant::now();
    let mut summary = LoadSummary::default();
    let mut buf = String::with_capacity(per * 64);
    let mut line_no: u64 = 0;
    // Lines attempted (sent or refused): the pacing counter.
    let mut attempted: u64 = 0;
    loop {
        if stop()
            || spec.duration.is_some_and(|d| start.elapsed() >= d)
            || spec.lines.is_some_and(|n| attempted >= n)
        {
            break;
        }
        // How many lines are due by now.
        let due = if spec.rate == 0 {
            attempted + per as u64 * 64
        } else {
            (start.elapsed().as_secs_f64() * spec.rate as f64) as u64
        };
        let due = spec.lines.map_or(due, |n| due.min(n));
        if due <= attempted {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        while attempted < due {
            buf.clear();
            let in_this = (due - attempted).min(per as u64);
            attempted += in_this;
            let (mut timers, mut counters) = (0, 0);
            for _ in 0..in_this {
                line_no += 1;
                let m = (line_no as usize) % models.len();
                let (model, version) = &models[m];
                if spec.counter_every > 0 && line_no.is_multiple_of(spec.counter_every) {
                    buf.push_str(&format!(
                        "request.count:1|c|#model:{model},version:{version}\n"
                    ));
                    counters += 1;
                } else {
                    let median = spec.median_ms[m % spec.median_ms.len().max(1)];
                    let v = median * (0.5 * normal(&mut rng)).exp();
                    let metric = (line_no as usize / models.len()) % spec.metrics.max(1);
                    if metric == 0 {
                        buf.push_str(&format!(
                            "request.latency:{v:.3}|ms|#model:{model},version:{version}\n"
                        ));
                    } else {
                        buf.push_str(&format!(
                            "request.latency.{metric}:{v:.3}|ms|#model:{model},version:{version}\n"
                        ));
                    }
                    timers += 1;
                }
            }
            buf.pop();
            match sock.send(buf.as_bytes()) {
                Ok(_) => {
                    summary.datagrams += 1;
                    summary.lines += in_this;
                    summary.timer_lines += timers;
                    summary.counter_lines += counters;
                }
                Err(_) => {
                    summary.send_errors += 1;
                    summary.dropped_lines += in_this;
                }
            }
        }
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}
