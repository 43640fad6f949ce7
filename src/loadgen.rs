//! `pitot loadgen`: seeded DogStatsD traffic at a given rate, packed as clients pack it.
//!
//! Each line is `<metric>:<value>|ms|#model:<m>,version:<v>` (latencies, log-normal per
//! model) or, every `counter_every`-th line, `request.count:1|c|#model:<m>,version:<v>`.
//! Lines are packed into datagrams of `per_datagram` lines (about 30, like the Datadog
//! clients' buffering) and sent over UDP or a Unix datagram socket, paced in 1 ms slices.
//!
//! [`Mix::Tagged`] is the realistic mix of issue 16 instead: 35 % `ms` timers (log-normal,
//! median 30 ms, at µs resolution), 35 % `c`
//! counters with a status tag, 20 % `d` distributions of integer token counts, 10 % `s` sets
//! of a language code; each line tagged with a model (4 values) and a version (2), per-call
//! tags before the client's constant tags, as the Datadog clients order them.

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
    /// Pre-generate this many datagrams and send them in a cycle, so the generator's own
    /// formatting does not limit the rate (benchmarks). `None` formats every line.
    pub replay: Option<usize>,
    /// Put the model in the metric name instead of tags (`request.latency.llama3.v1`), for
    /// plain StatsD receivers that do not take DogStatsD tags.
    pub plain: bool,
    /// Every n-th line is a model input instead (`input.prompt_tokens` histogram and
    /// `input.language` set, alternating); 0 = never.
    pub inputs_every: u64,
    /// From this long after the start, inputs drift: prompts about 1.6× longer and a new
    /// language (`pt`) in a fifth of requests.
    pub drift_after: Option<Duration>,
    /// From this long after the start, latencies are `slow_factor` times longer (a latency
    /// regression, for SLO burn).
    pub slow_after: Option<Duration>,
    /// How much slower after `slow_after`.
    pub slow_factor: f64,
    /// Which lines: the latency shape above, or the tagged mix.
    pub mix: Mix,
}

/// The shape of the generated lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mix {
    /// Latency timers (and optional counters and inputs) as configured by the other fields.
    #[default]
    Latency,
    /// The realistic tagged mix (module docs); `models`, `metrics`, `counter_every` and
    /// `inputs_every` do not apply.
    Tagged,
}

/// The tagged mix's models, versions, statuses (weights in ‰) and languages (weights in ‰).
const MIX_MODELS: [&str; 4] = ["llama", "qwen", "mistral", "phi"];
const MIX_VERSIONS: [&str; 2] = ["v1", "v2"];
const MIX_STATUSES: [(&str, u32); 7] = [
    ("200", 930),
    ("400", 15),
    ("401", 5),
    ("429", 25),
    ("500", 10),
    ("503", 10),
    ("504", 5),
];
const MIX_LANGUAGES: [(&str, u32); 12] = [
    ("en", 520),
    ("zh", 90),
    ("es", 80),
    ("de", 60),
    ("fr", 55),
    ("ja", 45),
    ("pt", 40),
    ("ru", 35),
    ("ko", 25),
    ("it", 20),
    ("ar", 15),
    ("hi", 15),
];

/// A value drawn by weight (‰) from `table`.
fn weighted<'a>(rng: &mut StdRng, table: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total.max(1));
    for (v, w) in table {
        if pick < *w {
            return v;
        }
        pick -= w;
    }
    table.last().map_or("", |(v, _)| v)
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
            replay: None,
            plain: false,
            inputs_every: 0,
            drift_after: None,
            slow_after: None,
            slow_factor: 1.0,
            mix: Mix::Latency,
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

/// What a generated line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Timer,
    Counter,
    Input,
}

/// Formats lines on demand.
struct Lines<'a> {
    spec: &'a LoadSpec,
    models: Vec<(String, String)>,
    rng: StdRng,
    line_no: u64,
    drifted: bool,
    slowed: bool,
}

impl<'a> Lines<'a> {
    /// The line source of `spec`, from its seed.
    fn new(spec: &'a LoadSpec) -> Self {
        let models = if spec.models.is_empty() {
            vec![("model".to_owned(), "v1".to_owned())]
        } else {
            spec.models.clone()
        };
        Lines {
            spec,
            models,
            rng: StdRng::seed_from_u64(spec.seed),
            line_no: 0,
            drifted: false,
            slowed: false,
        }
    }

    /// Appends one line of the tagged mix (module docs). `plain` writes the tags into the name
    /// instead and distributions as `h`, for plain StatsD receivers (collectd has no `d`).
    fn push_tagged(&mut self, buf: &mut String) -> LineKind {
        use std::fmt::Write as _;
        let rng = &mut self.rng;
        let model = MIX_MODELS[rng.random_range(0..MIX_MODELS.len())];
        let version = MIX_VERSIONS[rng.random_range(0..MIX_VERSIONS.len())];
        let plain = self.spec.plain;
        let pick: u32 = rng.random_range(0..100);
        let (name, value, kind, call_tag, line_kind) = if pick < 35 {
            // Milliseconds at microsecond resolution, as a client that formats timers writes
            // them (a full-precision f64 makes a datagram ~30 % longer than the issue's).
            let v = 30.0 * (0.6 * normal(rng)).exp();
            (
                "req.latency",
                format!("{v:.3}"),
                "ms",
                None,
                LineKind::Timer,
            )
        } else if pick < 70 {
            let status = weighted(rng, &MIX_STATUSES);
            (
                "req.count",
                "1".to_owned(),
                "c",
                Some(("status", status)),
                LineKind::Counter,
            )
        } else if pick < 90 {
            let tokens = (200.0 * (0.8 * normal(rng)).exp()).round().max(1.0);
            let kind = if plain { "h" } else { "d" };
            ("tokens", format!("{tokens}"), kind, None, LineKind::Input)
        } else {
            let language = weighted(rng, &MIX_LANGUAGES);
            ("lang", language.to_owned(), "s", None, LineKind::Input)
        };
        let _infallible = if plain {
            let call = call_tag.map_or(String::new(), |(_, v)| format!(".{v}"));
            write!(buf, "{name}.{model}.{version}{call}:{value}|{kind}")
        } else {
            let call = call_tag.map_or(String::new(), |(k, v)| format!("{k}:{v},"));
            write!(
                buf,
                "{name}:{value}|{kind}|#{call}model:{model},version:{version}"
            )
        };
        line_kind
    }

    /// Appends one line (without newline) and says what it was.
    fn push(&mut self, buf: &mut String) -> LineKind {
        use std::fmt::Write as _;
        self.line_no += 1;
        if self.spec.mix == Mix::Tagged {
            return self.push_tagged(buf);
        }
        let m = (self.line_no as usize) % self.models.len();
        let (model, version) = &self.models[m];
        let spec = self.spec;
        let (name_suffix, tags) = if spec.plain {
            (format!(".{model}.{version}"), String::new())
        } else {
            (String::new(), format!("|#model:{model},version:{version}"))
        };
        if spec.counter_every > 0 && self.line_no.is_multiple_of(spec.counter_every) {
            let _infallible = write!(buf, "request.count{name_suffix}:1|c{tags}");
            return LineKind::Counter;
        }
        if spec.inputs_every > 0 && self.line_no.is_multiple_of(spec.inputs_every) {
            let scale = if self.drifted { 1.6 } else { 1.0 };
            if (self.line_no / spec.inputs_every).is_multiple_of(2) {
                let tokens = (300.0 * scale * (0.6 * normal(&mut self.rng)).exp()).round();
                let _infallible = write!(buf, "input.prompt_tokens{name_suffix}:{tokens}|h{tags}");
            } else {
                let u: f64 = self.rng.random();
                let language = match (self.drifted, u) {
                    (true, u) if u < 0.2 => "pt",
                    (_, u) if u < 0.6 => "en",
                    (_, u) if u < 0.8 => "fr",
                    _ => "de",
                };
                let _infallible = write!(buf, "input.language{name_suffix}:{language}|s{tags}");
            }
            return LineKind::Input;
        }
        let median = spec.median_ms[m % spec.median_ms.len().max(1)]
            * if self.slowed { spec.slow_factor } else { 1.0 };
        let v = median * (0.5 * normal(&mut self.rng)).exp();
        let metric = (self.line_no as usize / self.models.len()) % spec.metrics.max(1);
        let _infallible = if metric == 0 {
            write!(buf, "request.latency{name_suffix}:{v:.3}|ms{tags}")
        } else {
            write!(buf, "request.latency.{metric}{name_suffix}:{v:.3}|ms{tags}")
        };
        LineKind::Timer
    }

    /// A datagram of `n` lines: (text, timer lines, counter lines).
    fn datagram(&mut self, n: u64) -> (String, u64, u64) {
        let mut buf = String::with_capacity(n as usize * 64);
        let (mut timers, mut counters) = (0, 0);
        for i in 0..n {
            if i > 0 {
                buf.push('\n');
            }
            match self.push(&mut buf) {
                LineKind::Counter => counters += 1,
                LineKind::Timer => timers += 1,
                LineKind::Input => {}
            }
        }
        (buf, timers, counters)
    }
}

/// `count` datagrams of `per_datagram` lines as `spec` shapes them (its target, rate and
/// duration aside): what [`run`] would send, for benchmarks that feed a receiver directly.
pub fn datagrams(spec: &LoadSpec, count: usize) -> Vec<String> {
    let mut lines = Lines::new(spec);
    let per = spec.per_datagram.max(1) as u64;
    (0..count).map(|_| lines.datagram(per).0).collect()
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
    let mut lines = Lines::new(spec);
    let per = spec.per_datagram.max(1) as u64;
    let pool: Vec<(String, u64, u64)> = match spec.replay {
        Some(n) => (0..n.max(1)).map(|_| lines.datagram(per)).collect(),
        None => Vec::new(),
    };
    let start = Instant::now();
    let mut summary = LoadSummary::default();
    // Lines attempted (sent or refused): the pacing counter.
    let mut attempted: u64 = 0;
    let mut next = 0usize;
    loop {
        if stop()
            || spec.duration.is_some_and(|d| start.elapsed() >= d)
            || spec.lines.is_some_and(|n| attempted >= n)
        {
            break;
        }
        // How many lines are due by now.
        let due = if spec.rate == 0 {
            attempted + per * 64
        } else {
            // Whole datagrams only, as a buffering client sends them.
            let d = (start.elapsed().as_secs_f64() * spec.rate as f64) as u64;
            d - d % per
        };
        let due = spec.lines.map_or(due, |n| due.min(n));
        if due <= attempted {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        lines.drifted = spec.drift_after.is_some_and(|d| start.elapsed() >= d);
        lines.slowed = spec.slow_after.is_some_and(|d| start.elapsed() >= d);
        while attempted < due {
            let want = (due - attempted).min(per);
            let generated;
            let (text, timers, counters) = if !pool.is_empty() && want == per {
                next = (next + 1) % pool.len();
                let (t, a, b) = &pool[next];
                (t.as_str(), *a, *b)
            } else {
                generated = lines.datagram(want);
                (generated.0.as_str(), generated.1, generated.2)
            };
            attempted += want;
            match sock.send(text.as_bytes()) {
                Ok(_) => {
                    summary.datagrams += 1;
                    summary.lines += want;
                    summary.timer_lines += timers;
                    summary.counter_lines += counters;
                }
                Err(_) => {
                    summary.send_errors += 1;
                    summary.dropped_lines += want;
                }
            }
        }
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitot_agent::ingest::dogstatsd::{MetricType, Parsed, parse_line};

    /// The tagged mix is what the issue asks for: its shares of each type, 2-3 tags a line, 32
    /// lines a datagram, every line one the agent parses; `--plain` carries no tags.
    #[test]
    fn the_tagged_mix_has_the_shares_and_tags_it_promises() {
        let spec = LoadSpec {
            mix: Mix::Tagged,
            per_datagram: 32,
            ..LoadSpec::default()
        };
        let datagrams = datagrams(&spec, 500);
        let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
        let mut lines = 0;
        for d in &datagrams {
            assert_eq!(d.split('\n').count(), 32);
            for line in d.split('\n') {
                lines += 1;
                let Ok(Parsed::Metric(m)) = parse_line(line) else {
                    panic!("{line}")
                };
                let tags = m.tags.split(',').count();
                let kind = match m.kind {
                    MetricType::Timer => "ms",
                    MetricType::Counter => "c",
                    MetricType::Distribution => "d",
                    MetricType::Set => "s",
                    other => panic!("{other:?} in {line}"),
                };
                assert_eq!(tags, if kind == "c" { 3 } else { 2 }, "{line}");
                assert!(m.tags.contains("model:") && m.tags.contains("version:"));
                *kinds.entry(kind).or_default() += 1;
            }
        }
        let share = |k: &str| kinds[k] as f64 / lines as f64;
        for (k, want) in [("ms", 0.35), ("c", 0.35), ("d", 0.20), ("s", 0.10)] {
            assert!((share(k) - want).abs() < 0.02, "{k}: {}", share(k));
        }
        let bytes = datagrams.iter().map(String::len).sum::<usize>() / datagrams.len();
        assert!((1200..1500).contains(&bytes), "{bytes} bytes a datagram");
        let plain = super::datagrams(
            &LoadSpec {
                plain: true,
                ..spec
            },
            10,
        );
        assert!(plain.iter().all(|d| !d.contains('#') && !d.contains("|d")));
    }
}
