//! The aggregator's TOML file as written: every section and key, each default written once
//! (the constants below, which validation also uses in its examples). Validation
//! ([`super::AggregatorConfig`]) turns this into settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pitot_shared::drift::DriftConfig;
use serde::Deserialize;

/// Default `quic.listen`.
pub const DEFAULT_QUIC_LISTEN: &str = "0.0.0.0:7443";
/// Default `http.listen`.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7070";
/// Default `store.dir`.
pub const DEFAULT_STORE_DIR: &str = "/var/lib/pitot";
/// Default `slo.window`.
pub const DEFAULT_SLO_WINDOW: &str = "30d";
/// Default `slo.service`.
pub const DEFAULT_SLO_SERVICE: &str = "pitot";
/// Default `drift.input_prefix`.
pub const DEFAULT_INPUT_PREFIX: &str = "input.";

/// The aggregator's TOML file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAggregatorConfig {
    /// QUIC listener.
    pub quic: RawQuic,
    /// HTTP API.
    pub http: RawHttp,
    /// Store.
    pub store: RawStore,
    /// Retention per resolution: `"10s" = "2d"`, `"1m" = "30d"`, `"1h" = "400d"` by default.
    pub retention: BTreeMap<String, String>,
    /// SLO definitions (`[[slo]]`).
    pub slo: Vec<RawSlo>,
    /// Models: owner, series, SLOs, prices (`[[model]]`).
    pub model: Vec<RawModel>,
    /// Deployment gates (`[[gate]]`).
    pub gate: Vec<RawGate>,
    /// Drift settings.
    pub drift: RawDrift,
    /// Audit trail.
    pub audit: RawAudit,
    /// Fleet aggregates on `/metrics` (`[[export]]`).
    pub export: Vec<RawExport>,
    /// Where alert transitions are sent (`[[alert]]`).
    pub alert: Vec<RawAlert>,
}

/// Default `export.quantiles`.
pub const DEFAULT_EXPORT_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];
/// Default `export.window`.
pub const DEFAULT_EXPORT_WINDOW: &str = "5m";
/// Default `export.schema` (2^(1/32): buckets about 2.2 % wide).
pub const DEFAULT_EXPORT_SCHEMA: i32 = 5;
/// Default `export.max_groups`.
pub const DEFAULT_EXPORT_MAX_GROUPS: usize = 1000;
/// Default `alert.resend`.
pub const DEFAULT_ALERT_RESEND: &str = "1m";

/// One `[[export]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    /// The series name (`request.latency`): a histogram (timer, distribution) or a counter.
    pub metric: String,
    /// Prometheus family name. Default `pitot_fleet_<metric>` with `.` as `_`.
    #[serde(default)]
    pub name: Option<String>,
    /// `k:v` filters.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Tags that make the groups (`["model", "version"]`); `host` is the agent's id.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Quantiles in the text exposition. Default `[0.5, 0.9, 0.99]`.
    #[serde(default)]
    pub quantiles: Option<Vec<f64>>,
    /// How much recent time the text quantiles cover. Default `"5m"`.
    #[serde(default)]
    pub window: Option<String>,
    /// Native histogram schema, -4 … 8. Default 5.
    #[serde(default)]
    pub schema: Option<i32>,
    /// Most groups exported. Default 1000.
    #[serde(default)]
    pub max_groups: Option<usize>,
}

/// One `[[alert]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    /// `"alertmanager"` or `"webhook"`.
    pub kind: String,
    /// Alertmanager's base URL or the webhook's URL (`http://` or `https://`).
    pub url: String,
    /// Name in the delivery counters. Default `<kind>-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Alertmanager: resend a firing alert this often. Default `"1m"`.
    #[serde(default)]
    pub resend: Option<String>,
    /// This aggregator's address as people reach it, for links in alerts.
    #[serde(default)]
    pub page_url: Option<String>,
}

/// Default `audit.retention`.
pub const DEFAULT_AUDIT_RETENTION: &str = "400d";

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// How long audit entries are kept. Default `"400d"`.
    pub retention: String,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            retention: DEFAULT_AUDIT_RETENTION.into(),
        }
    }
}

/// One `[[slo]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    /// Unique name: letters, digits, `-`, `_`.
    pub name: String,
    /// Fraction of good events, in (0, 1), e.g. 0.99.
    pub objective: f64,
    /// Rolling window (`"30d"`, `"7d"`, `"28d"`) or `"month"` (the calendar month so far).
    #[serde(default = "default_slo_window")]
    pub window: String,
    /// The service it belongs to: the `sloth_service` label on `/metrics`. Default `"pitot"`.
    #[serde(default)]
    pub service: Option<String>,
    /// How good events are counted.
    pub sli: RawSli,
}

fn default_slo_window() -> String {
    DEFAULT_SLO_WINDOW.into()
}

/// `[slo.sli]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawSli {
    /// Good = events of a histogram series at or under a threshold.
    Latency {
        /// The histogram metric.
        metric: String,
        /// Threshold, in the metric's unit (milliseconds for DogStatsD timers).
        threshold_ms: f64,
        /// `k:v` filters.
        #[serde(default)]
        tags: Vec<String>,
    },
    /// Good / total from two counter metrics.
    Ratio {
        /// The good-events counter.
        good: String,
        /// The all-events counter.
        total: String,
        /// `k:v` filters.
        #[serde(default)]
        tags: Vec<String>,
    },
}

/// One `[[model]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Name: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Owning team.
    pub owner: String,
    /// How to reach the owner.
    #[serde(default)]
    pub contact: String,
    /// `k:v` tags selecting its series. Default `["model:<name>"]`.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Names of `[[slo]]`s that belong to it.
    #[serde(default)]
    pub slos: Vec<String>,
    /// Its latency histogram (the models report's latency, the gate and the page). Default:
    /// `gen_ai.server.request.duration` where it has series, else `request.latency`.
    #[serde(default)]
    pub latency_metric: Option<String>,
    /// A counter (or histogram sum) of its tokens, where not a known name; split into input
    /// and output by a `gen_ai.token.type` tag where its series carry one.
    #[serde(default)]
    pub tokens_metric: Option<String>,
    /// Input tokens only, where counted apart (instead of `tokens_metric`).
    #[serde(default)]
    pub tokens_in: Option<String>,
    /// Output tokens only, where counted apart.
    #[serde(default)]
    pub tokens_out: Option<String>,
    /// A counter (or histogram count) of requests, where not a known name.
    #[serde(default)]
    pub requests: Option<String>,
    /// `[model.price]`.
    #[serde(default)]
    pub price: RawPrice,
}

/// One `[[gate]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    /// Name: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The model.
    pub model: String,
    /// `k:v` tags of the baseline, e.g. `["version:v1"]`.
    pub baseline: Vec<String>,
    /// `k:v` tags of the candidate, e.g. `["version:v2"]`.
    pub candidate: Vec<String>,
    /// How far back the comparison looks. Default `"15m"`.
    #[serde(default = "default_gate_window")]
    pub window: String,
    /// `[gate.latency]`.
    #[serde(default)]
    pub latency: RawGateLatency,
    /// `[gate.errors]`.
    #[serde(default)]
    pub errors: Option<RawGateErrors>,
    /// `[gate.slo]`.
    #[serde(default)]
    pub slo: RawGateSlo,
    /// `[gate.drift]`.
    #[serde(default)]
    pub drift: RawGateDrift,
}

fn default_gate_window() -> String {
    "15m".into()
}

/// `[gate.latency]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateLatency {
    /// The histogram. Default: the model's `latency_metric`, else the known names.
    #[serde(default)]
    pub metric: Option<String>,
    /// Default `[0.5, 0.95, 0.99]`.
    #[serde(default)]
    pub quantiles: Option<Vec<f64>>,
    /// Default 1.10: the candidate may be 10 % slower.
    #[serde(default)]
    pub max_ratio: Option<f64>,
    /// Default 0.90 (each interval).
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Default 200 requests per side.
    #[serde(default)]
    pub min_count: Option<u64>,
}

/// `[gate.errors]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateErrors {
    /// Good-events counter.
    pub good: String,
    /// All-events counter.
    pub total: String,
    /// Default 0.001 (0.1 point).
    #[serde(default)]
    pub max_increase: Option<f64>,
    /// Default 1.5.
    #[serde(default)]
    pub max_ratio: Option<f64>,
}

/// `[gate.slo]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateSlo {
    /// Default 1.0: the candidate may burn each SLO's budget at most on schedule.
    #[serde(default)]
    pub max_burn: Option<f64>,
}

/// `[gate.drift]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateDrift {
    /// `"fail"` (default) or `"warn"`.
    #[serde(default)]
    pub on_drift: Option<String>,
    /// Output series compared like inputs.
    #[serde(default)]
    pub outputs: Vec<String>,
}

/// `[model.price]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// Per GPU-hour, for GPUs of a class not in `gpu_class`.
    #[serde(default)]
    pub gpu_hour: Option<f64>,
    /// Per host-hour.
    #[serde(default)]
    pub host_hour: Option<f64>,
    /// Per GPU-hour by class (`[model.price.gpu_class] a100 = 3.1`): a GPU's `gpu_class` tag,
    /// else a key found in its `gpu_model` (case-insensitive; the longest key wins).
    #[serde(default)]
    pub gpu_class: BTreeMap<String, f64>,
}

/// `[drift]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDrift {
    /// Significance before the Bonferroni correction. Default 0.001.
    pub alpha: f64,
    /// KS effect floor. Default 0.05.
    pub ks_floor: f64,
    /// PSI effect floor. Default 0.1.
    pub psi_floor: f64,
    /// Normalised Wasserstein effect floor. Default 0.1.
    pub wasserstein_norm_floor: f64,
    /// Jensen–Shannon effect floor (categorical). Default 0.1.
    pub js_floor: f64,
    /// Series whose name starts with this are model inputs, covered by default. `"input."`.
    pub input_prefix: String,
    /// Named reference windows: `[drift.reference.last-week] from = "now-8d", to = "now-1d"`.
    pub reference: BTreeMap<String, RawReference>,
}

impl Default for RawDrift {
    fn default() -> Self {
        let d = DriftConfig::default();
        RawDrift {
            alpha: d.alpha,
            ks_floor: d.ks_floor,
            psi_floor: d.psi_floor,
            wasserstein_norm_floor: d.wasserstein_norm_floor,
            js_floor: d.js_floor,
            input_prefix: DEFAULT_INPUT_PREFIX.into(),
            reference: BTreeMap::new(),
        }
    }
}

/// A named reference window; times are RFC 3339, Unix seconds or `now-<duration>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReference {
    /// Start.
    pub from: String,
    /// End.
    pub to: String,
}

/// `[quic]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQuic {
    /// Listen address. Default `"0.0.0.0:7443"`.
    pub listen: String,
    /// CA whose certificates agents must present (PEM). Default `/etc/pitot/tls/ca.pem`.
    pub ca: PathBuf,
    /// The aggregator's certificate (PEM). Default `/etc/pitot/tls/aggregator.pem`.
    pub cert: PathBuf,
    /// The aggregator's key (PEM). Default `/etc/pitot/tls/aggregator.key`.
    pub key: PathBuf,
}

impl Default for RawQuic {
    fn default() -> Self {
        RawQuic {
            listen: DEFAULT_QUIC_LISTEN.into(),
            ca: "/etc/pitot/tls/ca.pem".into(),
            cert: "/etc/pitot/tls/aggregator.pem".into(),
            key: "/etc/pitot/tls/aggregator.key".into(),
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    /// Listen address. Default `"127.0.0.1:7070"`.
    pub listen: String,
    /// Publish SLO series under Sloth's recording-rule names (`slo:sli_error:ratio_rate5m`…)
    /// on `/metrics`. Default true. `promtool check metrics` lints the `:` in those names.
    pub sloth_metrics: bool,
    /// Bearer tokens (their SHA-256 digests and scopes, `pitot tokens new` prints the lines).
    /// Unset: the systemd credential `pitot-tokens` when there is one, else the API is open.
    pub tokens_file: Option<PathBuf>,
    /// With tokens: serve `/metrics` without one (for a Prometheus without credentials).
    /// Default false.
    pub metrics_public: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The HTTPS key (PEM).
    pub tls_key: Option<PathBuf>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: DEFAULT_HTTP_LISTEN.into(),
            sloth_metrics: true,
            tokens_file: None,
            metrics_public: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    /// Data directory. Default `/var/lib/pitot`.
    pub dir: PathBuf,
    /// Free space to keep under `dir`; below it nothing is written. Default `"64MiB"`.
    pub min_free: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            dir: DEFAULT_STORE_DIR.into(),
            min_free: "64MiB".into(),
        }
    }
}
