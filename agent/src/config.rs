//! Agent configuration: `RawAgentConfig` (the TOML file, every key defaulted) becomes a
//! validated [`AgentConfig`] through `TryFrom`, collecting every problem at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pitot_shared::config::{ConfigError, TlsPaths};
use pitot_shared::series::{MAX_TAG_BYTES, MAX_TAGS};
use serde::Deserialize;

/// The agent's TOML file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAgentConfig {
    /// The agent's identity, also the DNS name in its certificate. Default: the host name.
    pub agent_id: String,
    /// Histogram interval. Default `"10s"`.
    pub interval: String,
    /// Uplink to the aggregator.
    pub uplink: RawUplink,
    /// Local spool.
    pub spool: RawSpool,
    /// DogStatsD listeners.
    pub dogstatsd: RawDogStatsD,
    /// Ingestion limits.
    pub limits: RawLimits,
    /// How often host, process and GPU use is sampled. Default `"1s"`.
    pub sample_interval: String,
    /// Host (CPU, memory, swap, network, disk) sampling. Default true.
    pub sample_host: bool,
    /// GPU sampling through NVML when the library and a GPU are present. Default true.
    pub sample_gpu: bool,
    /// Prometheus scrape targets.
    pub scrape: Vec<RawScrape>,
    /// Watched model processes.
    pub process: Vec<RawProcess>,
}

/// One `[[scrape]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScrape {
    /// `http://host:port/metrics`.
    pub url: String,
    /// `k:v` tags added to every series (a label of the same name wins).
    #[serde(default)]
    pub tags: Vec<String>,
    /// How often. Default `"10s"`.
    #[serde(default = "default_scrape_interval")]
    pub interval: String,
    /// Per-request timeout. Default `"2s"`, or the interval when that is shorter.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Largest response read. Default `"4MiB"`.
    #[serde(default = "default_scrape_max_bytes")]
    #[serde(deserialize_with = "pitot_shared::config::byte_size_text")]
    pub max_bytes: String,
}

fn default_scrape_interval() -> String {
    "10s".into()
}

fn default_scrape_max_bytes() -> String {
    "4MiB".into()
}

/// One `[[process]]`: which processes, by one or more matchers (any match counts).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    /// Rule name: the `process` tag. Also matches the executable name unless a matcher is set.
    pub name: String,
    /// Substring of the command line.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// File holding the pid.
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// systemd unit whose cgroup holds the processes (`vllm.service`).
    #[serde(default)]
    pub systemd_unit: Option<String>,
    /// cgroup path (under /sys/fs/cgroup) holding the processes, e.g. a container's.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// `k:v` tags (`model:llama3`).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Default for RawAgentConfig {
    fn default() -> Self {
        RawAgentConfig {
            agent_id: String::new(),
            interval: "10s".into(),
            uplink: RawUplink::default(),
            spool: RawSpool::default(),
            dogstatsd: RawDogStatsD::default(),
            limits: RawLimits::default(),
            sample_interval: "1s".into(),
            sample_host: true,
            sample_gpu: true,
            scrape: Vec::new(),
            process: Vec::new(),
        }
    }
}

/// `[uplink]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUplink {
    /// `host:port` of the aggregator's QUIC listener. Default `"127.0.0.1:7443"`.
    pub aggregator: String,
    /// Name in the aggregator's certificate. Default `"pitot-aggregator"`.
    pub server_name: String,
    /// CA that signed the aggregator's certificate (PEM). Default `/etc/pitot/tls/ca.pem`.
    pub ca: PathBuf,
    /// This agent's certificate (PEM). Default `/etc/pitot/tls/agent.pem`.
    pub cert: PathBuf,
    /// This agent's private key (PEM). Default `/etc/pitot/tls/agent.key`.
    pub key: PathBuf,
    /// Longest reconnect back-off. Default `"30s"`.
    pub backoff_max: String,
    /// How long shutdown waits for the spool to drain. Default `"5s"`.
    pub shutdown_grace: String,
}

impl Default for RawUplink {
    fn default() -> Self {
        RawUplink {
            aggregator: "127.0.0.1:7443".into(),
            server_name: "pitot-aggregator".into(),
            ca: "/etc/pitot/tls/ca.pem".into(),
            cert: "/etc/pitot/tls/agent.pem".into(),
            key: "/etc/pitot/tls/agent.key".into(),
            backoff_max: "30s".into(),
            shutdown_grace: "5s".into(),
        }
    }
}

/// `[spool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpool {
    /// Spool directory. Default `/var/lib/pitot-agent`.
    pub dir: PathBuf,
    /// Bound on spooled bytes before batches are coarsened. Default `"256MiB"`.
    #[serde(deserialize_with = "pitot_shared::config::byte_size_text")]
    pub max_bytes: String,
}

impl Default for RawSpool {
    fn default() -> Self {
        RawSpool {
            dir: "/var/lib/pitot-agent".into(),
            max_bytes: "256MiB".into(),
        }
    }
}

/// `[dogstatsd]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDogStatsD {
    /// UDP listen address; `""` turns it off. Default `"127.0.0.1:8125"`.
    pub udp: String,
    /// Unix datagram socket path; `""` turns it off. Default `/run/pitot/dsd.sock`.
    pub unix: String,
    /// Octal permissions of the Unix socket file. Default `"0660"`.
    pub unix_mode: String,
    /// Receive buffer per socket. Default `"8MiB"` (forced past `rmem_max` when privileged).
    #[serde(deserialize_with = "pitot_shared::config::byte_size_text")]
    pub receive_buffer: String,
    /// Largest datagram read whole. Default `"64KiB"`: above any UDP datagram and any official
    /// client's Unix packet (the Python client counts its 8 KiB buffer in characters, so
    /// non-ASCII values make its packets larger in bytes). A longer datagram keeps its
    /// complete lines; the cut one is counted as `truncated`.
    #[serde(deserialize_with = "pitot_shared::config::byte_size_text")]
    pub max_datagram: String,
}

impl Default for RawDogStatsD {
    fn default() -> Self {
        RawDogStatsD {
            udp: "127.0.0.1:8125".into(),
            unix: "/run/pitot/dsd.sock".into(),
            unix_mode: "0660".into(),
            receive_buffer: "8MiB".into(),
            max_datagram: "64KiB".into(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Most series held at once. Default 10 000.
    pub max_series: usize,
    /// Most tags per line. Default 32.
    pub max_tags: usize,
    /// Longest tag in bytes. Default 200.
    pub max_tag_length: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_series: 10_000,
            max_tags: 32,
            max_tag_length: 200,
        }
    }
}

/// The validated configuration; code past startup sees only this.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Agent id.
    pub agent_id: String,
    /// Interval.
    pub interval: Duration,
    /// Aggregator address (resolved at connect time).
    pub aggregator: String,
    /// Server name expected in the aggregator's certificate.
    pub server_name: String,
    /// TLS files.
    pub tls: TlsPaths,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// Shutdown drain time.
    pub shutdown_grace: Duration,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Spool bound.
    pub spool_max_bytes: u64,
    /// UDP listener.
    pub udp: Option<SocketAddr>,
    /// Unix listener.
    pub unix: Option<PathBuf>,
    /// Unix socket mode.
    pub unix_mode: u32,
    /// Receive buffer bytes.
    pub receive_buffer: usize,
    /// Largest datagram.
    pub max_datagram: usize,
    /// Series limit.
    pub max_series: usize,
    /// Tags per line.
    pub max_tags: usize,
    /// Tag length.
    pub max_tag_length: usize,
    /// Sampling period for host, processes and GPUs.
    pub sample_interval: Duration,
    /// Sample the host.
    pub sample_host: bool,
    /// Sample GPUs.
    pub sample_gpu: bool,
    /// Prometheus scrape targets.
    pub scrapes: Vec<ScrapeTarget>,
    /// Process rules.
    pub processes: Vec<ProcessRule>,
}

/// A validated `[[scrape]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeTarget {
    /// URL.
    pub url: String,
    /// Tags added to every series.
    pub tags: Vec<(String, String)>,
    /// Period.
    pub interval: Duration,
    /// Request timeout.
    pub timeout: Duration,
    /// Largest response.
    pub max_bytes: u64,
}

/// A validated `[[process]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessRule {
    /// Name (the `process` tag).
    pub name: String,
    /// Command-line substring.
    pub cmdline: Option<String>,
    /// Pid file.
    pub pid_file: Option<PathBuf>,
    /// systemd unit.
    pub systemd_unit: Option<String>,
    /// cgroup path.
    pub cgroup: Option<String>,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

fn validate_scrapes(e: &mut ConfigError, raw: &[RawScrape]) -> Vec<ScrapeTarget> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |f: &str| format!("scrape[{i}].{f}");
        if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
            e.push(
                &key("url"),
                format!(
                    "`{}` must be an http(s) URL, e.g. \"http://127.0.0.1:8000/metrics\"",
                    r.url
                ),
            );
        }
        let interval = e.duration(&key("interval"), &r.interval);
        let timeout = match &r.timeout {
            Some(t) => e.duration(&key("timeout"), t),
            None => interval.map(|i| i.min(Duration::from_secs(2))),
        };
        let max_bytes = e.bytes(&key("max_bytes"), &r.max_bytes);
        let tags = e.tags(&key("tags"), &r.tags);
        if let (Some(interval), Some(timeout), Some(max_bytes)) = (interval, timeout, max_bytes) {
            if interval < Duration::from_millis(100) {
                e.push(&key("interval"), "must be at least \"100ms\"");
            }
            if timeout > interval {
                e.push(&key("timeout"), "must not be longer than the interval");
            }
            out.push(ScrapeTarget {
                url: r.url.clone(),
                tags,
                interval,
                timeout,
                max_bytes,
            });
        }
    }
    out
}

fn validate_processes(e: &mut ConfigError, raw: &[RawProcess]) -> Vec<ProcessRule> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |f: &str| format!("process[{i}].{f}");
        if r.name.is_empty() {
            e.push(
                &key("name"),
                "name the rule, e.g. \"vllm\" (it becomes the `process` tag)",
            );
        }
        if r.cmdline.as_deref() == Some("") {
            e.push(
                &key("cmdline"),
                "must not be empty; leave it out to match by name",
            );
        }
        out.push(ProcessRule {
            name: r.name.clone(),
            cmdline: r.cmdline.clone(),
            pid_file: r.pid_file.clone(),
            systemd_unit: r.systemd_unit.clone(),
            cgroup: r.cgroup.clone(),
            tags: e.tags(&key("tags"), &r.tags),
        });
    }
    out
}

fn default_agent_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

impl TryFrom<RawAgentConfig> for AgentConfig {
    type Error = ConfigError;

    fn try_from(raw: RawAgentConfig) -> Result<Self, ConfigError> {
        let mut e = ConfigError::default();
        let agent_id = if raw.agent_id.is_empty() {
            default_agent_id()
        } else {
            raw.agent_id.clone()
        };
        if agent_id.len() > 200
            || !agent_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            e.push(
                "agent_id",
                format!(
                    "`{agent_id}` must be 1-200 characters of letters, digits, '-', '.', '_' \
                     (it is a DNS name in the agent's certificate)"
                ),
            );
        }
        let interval = e.duration("interval", &raw.interval);
        if let Some(d) = interval
            && (d < Duration::from_millis(100) || d.as_millis() % 100 != 0)
        {
            e.push(
                "interval",
                "use a multiple of 100ms, at least \"100ms\" (tests use \"1s\")",
            );
        }
        if raw
            .uplink
            .aggregator
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            e.push(
                "uplink.aggregator",
                format!(
                    "`{}` is not host:port; write e.g. \"aggregator.example:7443\"",
                    raw.uplink.aggregator
                ),
            );
        }
        if raw.uplink.server_name.is_empty() {
            e.push(
                "uplink.server_name",
                "must name the aggregator's certificate, e.g. \"pitot-aggregator\"",
            );
        }
        let backoff_max = e.duration("uplink.backoff_max", &raw.uplink.backoff_max);
        let shutdown_grace = e.duration("uplink.shutdown_grace", &raw.uplink.shutdown_grace);
        let spool_max_bytes = e.bytes("spool.max_bytes", &raw.spool.max_bytes);
        if raw.spool.dir.as_os_str().is_empty() {
            e.push(
                "spool.dir",
                "must be a directory path, e.g. \"/var/lib/pitot-agent\"",
            );
        }
        let udp = if raw.dogstatsd.udp.is_empty() {
            None
        } else {
            match raw.dogstatsd.udp.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    e.push(
                        "dogstatsd.udp",
                        format!("`{}` is not ip:port; write e.g. \"127.0.0.1:8125\", or \"\" to turn UDP off", raw.dogstatsd.udp),
                    );
                    None
                }
            }
        };
        let unix = (!raw.dogstatsd.unix.is_empty()).then(|| PathBuf::from(&raw.dogstatsd.unix));
        let unix_mode =
            match u32::from_str_radix(raw.dogstatsd.unix_mode.trim_start_matches("0o"), 8) {
                Ok(m) if m <= 0o777 => m,
                _ => {
                    e.push(
                        "dogstatsd.unix_mode",
                        "write octal permissions such as \"0660\"",
                    );
                    0o660
                }
            };
        let receive_buffer = e.bytes("dogstatsd.receive_buffer", &raw.dogstatsd.receive_buffer);
        let max_datagram = e.bytes("dogstatsd.max_datagram", &raw.dogstatsd.max_datagram);
        if let Some(m) = max_datagram
            && !(512..=65_536).contains(&m)
        {
            e.push(
                "dogstatsd.max_datagram",
                "must be between \"512B\" and \"64KiB\"",
            );
        }
        if raw.limits.max_series == 0 {
            e.push("limits.max_series", "must be at least 1 (default 10000)");
        }
        if raw.limits.max_tags == 0 || raw.limits.max_tags >= MAX_TAGS {
            e.push(
                "limits.max_tags",
                format!("must be between 1 and {}", MAX_TAGS - 1),
            );
        }
        if raw.limits.max_tag_length == 0 || raw.limits.max_tag_length > MAX_TAG_BYTES {
            e.push(
                "limits.max_tag_length",
                format!("must be between 1 and {MAX_TAG_BYTES}"),
            );
        }
        let sample_interval = e.duration("sample_interval", &raw.sample_interval);
        if let Some(d) = sample_interval
            && d < Duration::from_millis(100)
        {
            e.push(
                "sample_interval",
                "must be at least \"100ms\" (default \"1s\")",
            );
        }
        let scrapes = validate_scrapes(&mut e, &raw.scrape);
        let processes = validate_processes(&mut e, &raw.process);
        let (
            Some(sample_interval),
            Some(interval),
            Some(backoff_max),
            Some(shutdown_grace),
            Some(spool_max_bytes),
            Some(receive_buffer),
            Some(max_datagram),
        ) = (
            sample_interval,
            interval,
            backoff_max,
            shutdown_grace,
            spool_max_bytes,
            receive_buffer,
            max_datagram,
        )
        else {
            return Err(e);
        };
        e.finish(AgentConfig {
            agent_id,
            interval,
            aggregator: raw.uplink.aggregator,
            server_name: raw.uplink.server_name,
            tls: TlsPaths {
                ca: raw.uplink.ca,
                cert: raw.uplink.cert,
                key: raw.uplink.key,
            },
            backoff_max,
            shutdown_grace,
            spool_dir: raw.spool.dir,
            spool_max_bytes,
            udp,
            unix,
            unix_mode,
            receive_buffer: receive_buffer as usize,
            max_datagram: max_datagram as usize,
            max_series: raw.limits.max_series,
            max_tags: raw.limits.max_tags,
            max_tag_length: raw.limits.max_tag_length,
            sample_interval,
            sample_host: raw.sample_host,
            sample_gpu: raw.sample_gpu,
            scrapes,
            processes,
        })
    }
}

pub use pitot_shared::config::LoadError;

/// Parses TOML text without validating values.
pub fn parse_raw(text: &str, path: &Path) -> Result<RawAgentConfig, LoadError> {
    toml::from_str(text).map_err(|e| LoadError::Parse {
        path: path.to_owned(),
        kind: "agent",
        message: e.to_string(),
    })
}

/// Validates a raw config read from `path`.
pub fn validate(raw: RawAgentConfig, path: &Path) -> Result<AgentConfig, LoadError> {
    AgentConfig::try_from(raw).map_err(|source| LoadError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// Parses TOML text into a validated config.
pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, LoadError> {
    validate(parse_raw(text, path)?, path)
}

/// Prefix of environment overrides: `PITOT_AGENT__UPLINK__AGGREGATOR=agg:7443`.
pub const ENV_PREFIX: &str = "PITOT_AGENT";

/// Parses TOML text with environment overrides applied (see
/// [`pitot_shared::config::apply_env_overrides`]).
pub fn parse_raw_with_env(
    text: &str,
    path: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<RawAgentConfig, LoadError> {
    pitot_shared::config::parse_file_with_env(text, path, "agent", ENV_PREFIX, vars)
}

/// Reads a config file without validating values, with `PITOT_AGENT__*` overrides from the
/// environment.
pub fn load_raw(path: &Path) -> Result<RawAgentConfig, LoadError> {
    let text = crate::glue::read_config(path)?;
    parse_raw_with_env(&text, path, std::env::vars())
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<AgentConfig, LoadError> {
    validate(load_raw(path)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn problem(text: &str, key: &str) {
        match parse(text, Path::new("t.toml")) {
            Err(LoadError::Invalid { source, .. }) => assert!(
                source.problems.iter().any(|p| p.key == key),
                "{key} not named in {source}"
            ),
            Err(LoadError::Parse { message, .. }) => {
                assert!(message.contains(key), "{key} not named in {message}")
            }
            other => panic!("expected a problem with {key}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse("agent_id = \"gpu-1\"", Path::new("t.toml")).unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.udp, Some("127.0.0.1:8125".parse().unwrap()));
        assert_eq!(c.spool_max_bytes, 256 * 1024 * 1024);
        assert_eq!(c.max_datagram, 64 * 1024);
    }

    #[test]
    fn byte_sizes_may_be_bare_integers() {
        let c = parse(
            "agent_id = \"gpu-1\"\n[dogstatsd]\nmax_datagram = 8192\nreceive_buffer = 1048576\n\
             [spool]\nmax_bytes = 1000000",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.max_datagram, 8192);
        assert_eq!(c.spool_max_bytes, 1_000_000);
        problem("[dogstatsd]\nmax_datagram = 100", "dogstatsd.max_datagram");
        // A negative number is a TOML type error, shown at its line.
        problem("[dogstatsd]\nmax_datagram = -1", "max_datagram");
    }

    #[test]
    fn bad_values_name_their_key() {
        problem("interval = \"often\"", "interval");
        problem("interval = \"150ms\"", "interval");
        problem("[uplink]\naggregator = \"nohost\"", "uplink.aggregator");
        problem("[spool]\nmax_bytes = \"huge\"", "spool.max_bytes");
        problem("[dogstatsd]\nudp = \"localhost\"", "dogstatsd.udp");
        problem("[limits]\nmax_series = 0", "limits.max_series");
        problem("agent_id = \"has space\"", "agent_id");
        problem("[dogstatsd]\nudpp = \"x\"", "udpp");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agent.toml");
        let c = load(&path).unwrap();
        assert_eq!(c.agent_id, "gpu-host-17");
        assert_eq!(c.max_series, 10_000);
    }

    #[test]
    fn the_kubernetes_sidecar_config_is_valid() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/kubernetes/vllm-sidecar.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap();
        let start = yaml.find("agent.toml: |").unwrap();
        let block: String = yaml[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
            .collect();
        let c = parse(&block, &path).unwrap();
        assert_eq!(c.agent_id, "vllm-llama3-0");
        assert_eq!(c.scrapes.len(), 1);
        assert_eq!(c.scrapes[0].url, "http://localhost:8000/metrics");
    }

    #[test]
    fn environment_overrides_reach_the_agent_config() {
        let vars = [
            ("PITOT_AGENT__AGENT_ID", "from-env"),
            ("PITOT_AGENT__DOGSTATSD__UDP", "127.0.0.1:9125"),
            ("PITOT_AGENT_CONFIG", "/not/an/override"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let raw = parse_raw_with_env("agent_id = \"file\"\n", Path::new("t"), vars).unwrap();
        let c = validate(raw, Path::new("t")).unwrap();
        assert_eq!(c.agent_id, "from-env");
        assert_eq!(c.udp, Some("127.0.0.1:9125".parse().unwrap()));
        let bad = [("PITOT_AGENT__UPLINK__NOPE".to_owned(), "1".to_owned())];
        let e = parse_raw_with_env("", Path::new("t"), bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn listeners_can_be_turned_off() {
        let c = parse("[dogstatsd]\nudp = \"\"\nunix = \"\"", Path::new("t.toml")).unwrap();
        assert!(c.udp.is_none() && c.unix.is_none());
    }
}
