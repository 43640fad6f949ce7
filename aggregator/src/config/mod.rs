//! Aggregator configuration: [`raw::RawAggregatorConfig`] (the TOML file, every key
//! defaulted, in `raw.rs`) becomes a validated [`AggregatorConfig`], sectioned like the file
//! and parsed once (times of named drift references included), collecting every problem at
//! once.

pub mod raw;

pub use raw::*;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pitot_shared::config::{ConfigError, TlsPaths, parse_duration};
use pitot_shared::drift::DriftConfig;

use crate::model::{
    AlertKind, AlertTarget, CostMetrics, ExportDefinition, GateDefinition, ModelDefinition,
    OnDrift, Prices, RESOLUTIONS, Resolution, Sli, SloDefinition, SloWindow, TimeSpec,
};

fn validate_exports(e: &mut ConfigError, raw: &[RawExport]) -> Vec<ExportDefinition> {
    let mut out: Vec<ExportDefinition> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("export[{i}].{field}");
        if r.metric.is_empty() {
            e.push(&key("metric"), "name a series, e.g. \"request.latency\"");
        }
        let name = r
            .name
            .clone()
            .unwrap_or_else(|| format!("pitot_fleet_{}", prometheus_name(&r.metric)));
        if !valid_prometheus_name(&name) || name.contains(':') {
            e.push(
                &key("name"),
                "letters, digits and '_', not starting with a digit, e.g. \"pitot_fleet_latency\"",
            );
        } else if out.iter().any(|x| x.name == name) {
            e.push(
                &key("name"),
                format!("`{name}` is exported twice; give one a `name`"),
            );
        }
        for g in &r.group_by {
            if !valid_prometheus_name(g) || g == "quantile" || g.starts_with("__") {
                e.push(
                    &key("group_by"),
                    format!(
                        "`{g}` is not a usable label name: letters, digits and '_', e.g. \"model\""
                    ),
                );
            }
        }
        let tags = e.tags(&key("tags"), &r.tags);
        let quantiles = r
            .quantiles
            .clone()
            .unwrap_or_else(|| raw::DEFAULT_EXPORT_QUANTILES.to_vec());
        if quantiles.iter().any(|q| !(*q >= 0.0 && *q <= 1.0)) {
            e.push(
                &key("quantiles"),
                "quantiles between 0 and 1, e.g. [0.5, 0.99]",
            );
        }
        let window = e
            .duration(
                &key("window"),
                r.window.as_deref().unwrap_or(raw::DEFAULT_EXPORT_WINDOW),
            )
            .unwrap_or(Duration::ZERO);
        if window < Duration::from_secs(60) && r.window.is_some() {
            e.push(&key("window"), "at least \"1m\", e.g. \"5m\"");
        }
        let schema = r.schema.unwrap_or(raw::DEFAULT_EXPORT_SCHEMA);
        if !(-4..=8).contains(&schema) {
            e.push(
                &key("schema"),
                "from -4 to 8 (Prometheus' native schemas; 8 is the finest), e.g. 5",
            );
        }
        let max_groups = r.max_groups.unwrap_or(raw::DEFAULT_EXPORT_MAX_GROUPS);
        if max_groups == 0 {
            e.push(&key("max_groups"), "at least 1, e.g. 1000");
        }
        out.push(ExportDefinition {
            metric: r.metric.clone(),
            name,
            tags,
            group_by: r.group_by.clone(),
            quantiles,
            window,
            schema,
            max_groups,
        });
    }
    out
}

/// `metric` as a Prometheus name: characters outside `[A-Za-z0-9_]` become `_`.
pub fn prometheus_name(metric: &str) -> String {
    metric
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn valid_prometheus_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn validate_alerts(e: &mut ConfigError, raw: &[RawAlert]) -> Vec<AlertTarget> {
    let mut out: Vec<AlertTarget> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("alert[{i}].{field}");
        let kind = match r.kind.as_str() {
            "alertmanager" => AlertKind::Alertmanager,
            "webhook" => AlertKind::Webhook,
            other => {
                e.push(
                    &key("kind"),
                    format!("`{other}` is not \"alertmanager\" or \"webhook\""),
                );
                AlertKind::Webhook
            }
        };
        if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
            e.push(
                &key("url"),
                "an http:// or https:// URL, e.g. \"http://127.0.0.1:9093\"",
            );
        }
        let name = r.name.clone().unwrap_or_else(|| format!("{}-{i}", r.kind));
        if out.iter().any(|a| a.name == name) {
            e.push(&key("name"), format!("`{name}` names two targets"));
        }
        let resend = e
            .duration(
                &key("resend"),
                r.resend.as_deref().unwrap_or(raw::DEFAULT_ALERT_RESEND),
            )
            .unwrap_or(Duration::from_secs(60));
        if resend < Duration::from_secs(1) {
            e.push(&key("resend"), "at least \"1s\", e.g. \"1m\"");
        }
        out.push(AlertTarget {
            name,
            kind,
            url: r.url.trim_end_matches('/').to_owned(),
            headers: r.headers.clone().into_iter().collect(),
            resend,
            page_url: r
                .page_url
                .clone()
                .map(|u| u.trim_end_matches('/').to_owned()),
        });
    }
    out
}

fn validate_gates(e: &mut ConfigError, raw: &[RawGate]) -> Vec<GateDefinition> {
    use pitot_shared::gate::{ErrorRule, LatencyRule};
    let mut out: Vec<GateDefinition> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("gate[{i}].{field}");
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            e.push(
                &key("name"),
                "use letters, digits, '-', '_' and '.', e.g. \"llama3-canary\"",
            );
        } else if out
            .iter()
            .any(|g| g.name.as_deref() == Some(r.name.as_str()))
        {
            e.push(&key("name"), format!("`{}` is defined twice", r.name));
        }
        if r.model.is_empty() {
            e.push(&key("model"), "name the model, e.g. \"llama3\"");
        }
        let baseline = e.tags(&key("baseline"), &r.baseline);
        let candidate = e.tags(&key("candidate"), &r.candidate);
        if baseline.is_empty() || candidate.is_empty() || baseline == candidate {
            e.push(
                &key("candidate"),
                "baseline and candidate must select different series, e.g. [\"version:v1\"] and [\"version:v2\"]",
            );
        }
        let window = match parse_duration(&r.window) {
            Ok(d) if d >= Duration::from_secs(60) => d,
            Ok(_) => {
                e.push(&key("window"), "must be at least \"1m\", e.g. \"15m\"");
                Duration::ZERO
            }
            Err(m) => {
                e.push(&key("window"), m.to_string());
                Duration::ZERO
            }
        };
        let d = LatencyRule::default();
        let l = &r.latency;
        let latency = LatencyRule {
            quantiles: l.quantiles.clone().unwrap_or(d.quantiles),
            max_ratio: l.max_ratio.unwrap_or(d.max_ratio),
            confidence: l.confidence.unwrap_or(d.confidence),
            min_count: l.min_count.unwrap_or(d.min_count),
        };
        if latency.quantiles.is_empty() || latency.quantiles.iter().any(|q| !(*q > 0.0 && *q < 1.0))
        {
            e.push(
                &key("latency.quantiles"),
                "quantiles between 0 and 1, e.g. [0.5, 0.95, 0.99]",
            );
        }
        if !(latency.max_ratio.is_finite() && latency.max_ratio >= 1.0) {
            e.push(
                &key("latency.max_ratio"),
                "at least 1, e.g. 1.10 (10 % slower allowed)",
            );
        }
        if !(latency.confidence > 0.5 && latency.confidence < 1.0) {
            e.push(&key("latency.confidence"), "between 0.5 and 1, e.g. 0.90");
        }
        let de = ErrorRule::default();
        let error_rule = ErrorRule {
            max_ratio: r
                .errors
                .as_ref()
                .and_then(|x| x.max_ratio)
                .unwrap_or(de.max_ratio),
            max_increase: r
                .errors
                .as_ref()
                .and_then(|x| x.max_increase)
                .unwrap_or(de.max_increase),
            ..de
        };
        if !(error_rule.max_ratio >= 1.0 && error_rule.max_increase >= 0.0) {
            e.push(
                &key("errors"),
                "max_ratio at least 1 and max_increase at least 0",
            );
        }
        let max_burn = r.slo.max_burn.unwrap_or(1.0);
        if !(max_burn.is_finite() && max_burn > 0.0) {
            e.push(
                &key("slo.max_burn"),
                "a positive number, e.g. 1.0 (on budget)",
            );
        }
        let on_drift = match r.drift.on_drift.as_deref() {
            None | Some("fail") => OnDrift::Fail,
            Some("warn") => OnDrift::Warn,
            Some(other) => {
                e.push(
                    &key("drift.on_drift"),
                    format!("`{other}` is not \"fail\" or \"warn\""),
                );
                OnDrift::Fail
            }
        };
        out.push(GateDefinition {
            name: Some(r.name.clone()),
            model: r.model.clone(),
            baseline,
            candidate,
            window,
            latency_metric: r.latency.metric.clone(),
            latency,
            errors: r.errors.as_ref().map(|x| (x.good.clone(), x.total.clone())),
            error_rule,
            max_burn,
            on_drift,
            outputs: r.drift.outputs.clone(),
        });
    }
    out
}

fn validate_models(e: &mut ConfigError, raw: &[RawModel], slos: &[RawSlo]) -> Vec<ModelDefinition> {
    let mut out: Vec<ModelDefinition> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("model[{i}].{field}");
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            e.push(
                &key("name"),
                "use letters, digits, '-', '_' and '.', e.g. \"llama3-8b\"",
            );
        } else if out.iter().any(|m| m.name == r.name) {
            e.push(&key("name"), format!("`{}` is defined twice", r.name));
        }
        if r.owner.trim().is_empty() {
            e.push(
                &key("owner"),
                "name the team that owns the model, e.g. \"search-ranking\"",
            );
        }
        let tags = match &r.tags {
            Some(t) if t.is_empty() => {
                e.push(
                    &key("tags"),
                    "must select something, e.g. [\"model:llama3\"]; leave it out for model:<name>",
                );
                Vec::new()
            }
            Some(t) => e.tags(&key("tags"), t),
            None => vec![("model".to_owned(), r.name.clone())],
        };
        for s in &r.slos {
            if !slos.iter().any(|d| &d.name == s) {
                let known: Vec<&str> = slos.iter().map(|d| d.name.as_str()).collect();
                e.push(
                    &key("slos"),
                    format!(
                        "no [[slo]] named `{s}`; defined: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        let mut price = |field: &str, v: f64| {
            if !(v.is_finite() && v >= 0.0) {
                e.push(
                    &key(field),
                    format!("{v} must be a price of zero or more, e.g. 2.5"),
                );
            }
        };
        let p = &r.price;
        for (field, v) in [
            ("price.gpu_hour", p.gpu_hour),
            ("price.host_hour", p.host_hour),
        ] {
            if let Some(v) = v {
                price(field, v);
            }
        }
        for (class, v) in &p.gpu_class {
            price(&format!("price.gpu_class.{class}"), *v);
        }
        let prices = Prices {
            gpu_hour: p.gpu_class.clone(),
            gpu_hour_default: p.gpu_hour,
            host_hour: p.host_hour,
        };
        if r.tokens_metric.is_some() && (r.tokens_in.is_some() || r.tokens_out.is_some()) {
            e.push(
                &key("tokens_metric"),
                "give tokens_metric (all tokens) or tokens_in/tokens_out (apart), not both",
            );
        }
        for (field, m) in [
            ("latency_metric", &r.latency_metric),
            ("tokens_metric", &r.tokens_metric),
            ("tokens_in", &r.tokens_in),
            ("tokens_out", &r.tokens_out),
            ("requests", &r.requests),
        ] {
            if m.as_deref() == Some("") {
                e.push(
                    &key(field),
                    "name a metric, or leave the key out for the known names",
                );
            }
        }
        out.push(ModelDefinition {
            name: r.name.clone(),
            owner: r.owner.trim().to_owned(),
            contact: r.contact.clone(),
            tags,
            slos: r.slos.clone(),
            prices,
            metrics: CostMetrics {
                latency: r.latency_metric.clone(),
                tokens: r.tokens_metric.clone(),
                tokens_in: r.tokens_in.clone(),
                tokens_out: r.tokens_out.clone(),
                requests: r.requests.clone(),
            },
        });
    }
    out
}

fn validate_slos(e: &mut ConfigError, raw: &[RawSlo]) -> Vec<SloDefinition> {
    let mut out: Vec<SloDefinition> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("slo[{i}].{field}");
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            e.push(
                &key("name"),
                "use letters, digits, '-' and '_', e.g. \"chat-latency\"",
            );
        } else if out.iter().any(|s| s.name == r.name) {
            e.push(&key("name"), format!("`{}` is defined twice", r.name));
        }
        let service = r
            .service
            .clone()
            .unwrap_or_else(|| DEFAULT_SLO_SERVICE.into());
        if service.is_empty()
            || !service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            e.push(
                &key("service"),
                "use letters, digits, '-', '_' and '.', e.g. \"chat-api\"",
            );
        }
        if !(r.objective > 0.0 && r.objective < 1.0) {
            e.push(&key("objective"), "must be between 0 and 1, e.g. 0.99");
        }
        let window = if r.window == "month" {
            Some(SloWindow::Month)
        } else {
            match parse_duration(&r.window) {
                Ok(d) if d >= Duration::from_secs(3_600) => Some(SloWindow::Rolling(d)),
                Ok(_) => {
                    e.push(
                        &key("window"),
                        "must be at least \"1h\" (e.g. \"30d\") or \"month\"",
                    );
                    None
                }
                Err(m) => {
                    e.push(&key("window"), format!("{m}, or \"month\""));
                    None
                }
            }
        };
        let sli = match &r.sli {
            RawSli::Latency {
                metric,
                threshold_ms,
                tags,
            } => {
                if metric.is_empty() {
                    e.push(
                        &key("sli.metric"),
                        "name the latency histogram, e.g. \"request.latency\"",
                    );
                }
                if !(threshold_ms.is_finite() && *threshold_ms > 0.0) {
                    e.push(
                        &key("sli.threshold_ms"),
                        "must be a positive number, e.g. 500",
                    );
                }
                Sli::Latency {
                    metric: metric.clone(),
                    threshold: *threshold_ms,
                    tags: e.tags(&key("sli.tags"), tags),
                }
            }
            RawSli::Ratio { good, total, tags } => {
                if good.is_empty() || total.is_empty() || good == total {
                    e.push(&key("sli"), "name two different counters: good = \"request.ok\", total = \"request.count\"");
                }
                Sli::Ratio {
                    good: good.clone(),
                    total: total.clone(),
                    tags: e.tags(&key("sli.tags"), tags),
                }
            }
        };
        if let Some(window) = window {
            out.push(SloDefinition {
                name: r.name.clone(),
                objective: r.objective,
                window,
                service,
                sli,
            });
        }
    }
    out
}

/// Validated drift settings.
#[derive(Debug, Clone)]
pub struct DriftSettings {
    /// Floors and significance.
    pub config: DriftConfig,
    /// Prefix of input series.
    pub input_prefix: String,
    /// Named reference windows (from, to), parsed once, resolved at query time.
    pub references: BTreeMap<String, (TimeSpec, TimeSpec)>,
}

/// The validated configuration, sectioned like the file.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// `[quic]`.
    pub quic: QuicSettings,
    /// `[http]`.
    pub http: HttpSettings,
    /// `[store]` and `[retention]`.
    pub store: StoreSettings,
    /// `[drift]`.
    pub drift: DriftSettings,
    /// `[[slo]]`.
    pub slos: Vec<SloDefinition>,
    /// `[[model]]`.
    pub models: Vec<ModelDefinition>,
    /// `audit.retention`.
    pub audit_retention: Duration,
    /// `[[gate]]`.
    pub gates: Vec<GateDefinition>,
    /// `[[export]]`.
    pub exports: Vec<ExportDefinition>,
    /// `[[alert]]`.
    pub alerts: Vec<AlertTarget>,
}

/// Validated `[quic]`.
#[derive(Debug, Clone)]
pub struct QuicSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// TLS files.
    pub tls: TlsPaths,
}

/// Validated `[http]`.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Sloth-named SLO series on `/metrics`.
    pub sloth_metrics: bool,
    /// The tokens file, as configured (see `access::tokens_path` for the systemd credential).
    pub tokens_file: Option<PathBuf>,
    /// `/metrics` without a token.
    pub metrics_public: bool,
    /// HTTPS certificate chain and key.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Validated `[store]` with `[retention]`.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Data directory.
    pub dir: PathBuf,
    /// Resolutions kept, finest first, with their retention.
    pub resolutions: Vec<Resolution>,
    /// Free bytes to keep under `dir`: below it the store takes no writes (batches are
    /// refused, agents keep them spooled) so sled is never driven into a full disk.
    pub min_free: u64,
}

impl TryFrom<RawAggregatorConfig> for AggregatorConfig {
    type Error = ConfigError;

    fn try_from(raw: RawAggregatorConfig) -> Result<Self, ConfigError> {
        let mut e = ConfigError::default();
        let mut addr = |key: &str, text: &str, example: &str| match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                e.push(
                    key,
                    format!("`{text}` is not ip:port; write e.g. \"{example}\""),
                );
                None
            }
        };
        let quic_listen = addr("quic.listen", &raw.quic.listen, DEFAULT_QUIC_LISTEN);
        let http_listen = addr("http.listen", &raw.http.listen, DEFAULT_HTTP_LISTEN);
        for key in raw.retention.keys() {
            if !RESOLUTIONS.iter().any(|r| r.label == key) {
                e.push(
                    &format!("retention.{key}"),
                    "unknown resolution; the resolutions are \"10s\", \"1m\" and \"1h\"",
                );
            }
        }
        let mut resolutions = Vec::new();
        for spec in &RESOLUTIONS {
            let label = spec.label;
            let text = raw
                .retention
                .get(label)
                .map_or(spec.default_retention, String::as_str);
            match parse_duration(text) {
                Ok(retention) if retention.as_secs() >= spec.bucket_secs => {
                    resolutions.push(spec.with_retention(retention));
                }
                Ok(_) => e.push(
                    &format!("retention.{label}"),
                    format!("must be at least one bucket ({label})"),
                ),
                Err(msg) => e.push(&format!("retention.{label}"), msg.to_string()),
            }
        }
        if raw.store.dir.as_os_str().is_empty() {
            e.push(
                "store.dir",
                format!("must be a directory path, e.g. \"{DEFAULT_STORE_DIR}\""),
            );
        }
        let min_free = match pitot_shared::config::parse_bytes(&raw.store.min_free) {
            Ok(n) => n,
            Err(msg) => {
                e.push("store.min_free", format!("{msg}, e.g. \"64MiB\""));
                0
            }
        };
        let d = &raw.drift;
        for (key, value, lo, hi) in [
            ("drift.alpha", d.alpha, 0.0, 1.0),
            ("drift.ks_floor", d.ks_floor, 0.0, 1.0),
            ("drift.psi_floor", d.psi_floor, 0.0, f64::MAX),
            (
                "drift.wasserstein_norm_floor",
                d.wasserstein_norm_floor,
                0.0,
                f64::MAX,
            ),
            ("drift.js_floor", d.js_floor, 0.0, 1.0),
        ] {
            if !(value > lo && value <= hi) {
                e.push(key, format!("{value} must be above {lo} and at most {hi}"));
            }
        }
        let mut references = BTreeMap::new();
        for (name, r) in &d.reference {
            let key = format!("drift.reference.{name}");
            match (TimeSpec::parse(&r.from), TimeSpec::parse(&r.to)) {
                (Ok(f), Ok(t)) if f.at(0) < t.at(0) => {
                    references.insert(name.clone(), (f, t));
                }
                (Ok(_), Ok(_)) => e.push(&key, "`from` must be before `to`"),
                (Err(m), _) | (_, Err(m)) => e.push(&key, m),
            }
        }
        let drift = DriftSettings {
            config: DriftConfig {
                alpha: d.alpha,
                ks_floor: d.ks_floor,
                psi_floor: d.psi_floor,
                wasserstein_norm_floor: d.wasserstein_norm_floor,
                js_floor: d.js_floor,
            },
            input_prefix: d.input_prefix.clone(),
            references,
        };
        let http_tls = match (&raw.http.tls_cert, &raw.http.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            (Some(_), None) => {
                e.push(
                    "http.tls_key",
                    "set it with http.tls_cert (the key of that certificate)",
                );
                None
            }
            (None, Some(_)) => {
                e.push(
                    "http.tls_cert",
                    "set it with http.tls_key (the certificate chain, PEM)",
                );
                None
            }
        };
        let audit_retention = match parse_duration(&raw.audit.retention) {
            Ok(d) if d >= Duration::from_secs(86_400) => d,
            Ok(_) => {
                e.push("audit.retention", "must be at least \"1d\", e.g. \"400d\"");
                Duration::ZERO
            }
            Err(m) => {
                e.push("audit.retention", m.to_string());
                Duration::ZERO
            }
        };
        let slos = validate_slos(&mut e, &raw.slo);
        let models = validate_models(&mut e, &raw.model, &raw.slo);
        let gates = validate_gates(&mut e, &raw.gate);
        let exports = validate_exports(&mut e, &raw.export);
        let alerts = validate_alerts(&mut e, &raw.alert);
        let (Some(quic_listen), Some(http_listen)) = (quic_listen, http_listen) else {
            return Err(e);
        };
        e.finish(AggregatorConfig {
            quic: QuicSettings {
                listen: quic_listen,
                tls: TlsPaths {
                    ca: raw.quic.ca,
                    cert: raw.quic.cert,
                    key: raw.quic.key,
                },
            },
            http: HttpSettings {
                listen: http_listen,
                sloth_metrics: raw.http.sloth_metrics,
                tokens_file: raw.http.tokens_file,
                metrics_public: raw.http.metrics_public,
                tls: http_tls,
            },
            store: StoreSettings {
                dir: raw.store.dir,
                resolutions,
                min_free,
            },
            drift,
            slos,
            models,
            audit_retention,
            gates,
            exports,
            alerts,
        })
    }
}

impl AggregatorConfig {
    /// One line per model, SLO and drift setting, as the audit trail records and diffs them
    /// when a configuration is loaded.
    pub fn audit_lines(&self) -> Vec<String> {
        let tags = |t: &[(String, String)]| {
            t.iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut out = Vec::new();
        for m in &self.models {
            let mut prices: Vec<String> = m
                .prices
                .gpu_hour
                .iter()
                .map(|(c, p)| format!("{c}={p}"))
                .collect();
            if let Some(d) = m.prices.gpu_hour_default {
                prices.push(format!("default={d}"));
            }
            out.push(format!(
                "model {}: owner={} contact={} tags={} slos={} gpu_hour=[{}] host_hour={} \
                 latency_metric={} tokens_metric={} tokens_in={} tokens_out={} requests={}",
                m.name,
                m.owner,
                m.contact,
                tags(&m.tags),
                m.slos.join(","),
                prices.join(","),
                m.prices.host_hour.map_or("-".to_owned(), |p| p.to_string()),
                m.metrics.latency.as_deref().unwrap_or("-"),
                m.metrics.tokens.as_deref().unwrap_or("-"),
                m.metrics.tokens_in.as_deref().unwrap_or("-"),
                m.metrics.tokens_out.as_deref().unwrap_or("-"),
                m.metrics.requests.as_deref().unwrap_or("-"),
            ));
        }
        for s in &self.slos {
            let sli = match &s.sli {
                Sli::Latency {
                    metric,
                    threshold,
                    tags: t,
                } => format!("latency {metric} <= {threshold} [{}]", tags(t)),
                Sli::Ratio {
                    good,
                    total,
                    tags: t,
                } => format!("ratio {good} / {total} [{}]", tags(t)),
            };
            out.push(format!(
                "slo {}: objective={} window={} service={} sli={sli}",
                s.name,
                s.objective,
                s.window.label(),
                s.service
            ));
        }
        let d = &self.drift.config;
        out.push(format!(
            "drift: alpha={} ks_floor={} psi_floor={} wasserstein_norm_floor={} js_floor={} \
             input_prefix={}",
            d.alpha,
            d.ks_floor,
            d.psi_floor,
            d.wasserstein_norm_floor,
            d.js_floor,
            self.drift.input_prefix
        ));
        for (name, (from, to)) in &self.drift.references {
            out.push(format!("drift.reference {name}: from={from:?} to={to:?}"));
        }
        out
    }
}

pub use pitot_shared::config::LoadError;

/// Parses TOML text into a validated config.
pub fn parse(text: &str, path: &Path) -> Result<AggregatorConfig, LoadError> {
    parse_with_env(text, path, std::iter::empty())
}

/// Prefix of environment overrides: `PITOT_AGGREGATOR__STORE__DIR=/srv/pitot`.
pub const ENV_PREFIX: &str = "PITOT_AGGREGATOR";

/// Parses TOML text into a validated config, with environment overrides applied (see
/// [`pitot_shared::config::apply_env_overrides`]).
pub fn parse_with_env(
    text: &str,
    path: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<AggregatorConfig, LoadError> {
    let raw: RawAggregatorConfig =
        pitot_shared::config::parse_file_with_env(text, path, "aggregator", ENV_PREFIX, vars)?;
    AggregatorConfig::try_from(raw).map_err(|source| LoadError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// Reads and validates a config file, with `PITOT_AGGREGATOR__*` overrides from the
/// environment.
pub fn load(path: &Path) -> Result<AggregatorConfig, LoadError> {
    let text = crate::glue::read_config(path)?;
    parse_with_env(&text, path, std::env::vars())
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
        let c = parse("", Path::new("t.toml")).unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:7070".parse().unwrap());
        assert_eq!(c.store.resolutions.len(), 3);
        assert_eq!(
            c.store.resolutions[2].retention,
            Duration::from_secs(400 * 86_400)
        );
    }

    #[test]
    fn the_spec_slos_parse() {
        let text = r#"
[[slo]]
name = "chat-latency"
objective = 0.99
window = "30d"
[slo.sli]
kind = "latency"
metric = "request.latency"
threshold_ms = 500
tags = ["model:llama3"]

[[slo]]
name = "chat-availability"
objective = 0.999
window = "month"
[slo.sli]
kind = "ratio"
good = "request.ok"
total = "request.count"
tags = ["model:llama3"]
"#;
        let c = parse(text, Path::new("t.toml")).unwrap();
        assert_eq!(c.slos.len(), 2);
        assert_eq!(
            c.slos[0].window,
            SloWindow::Rolling(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(c.slos[1].window, SloWindow::Month);
        assert!(matches!(&c.slos[0].sli, Sli::Latency { threshold, .. } if *threshold == 500.0));
    }

    #[test]
    fn environment_overrides_apply_and_name_their_key() {
        let vars = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let c = parse_with_env(
            "[store]\ndir = \"/var/lib/pitot\"\n",
            Path::new("t"),
            vars(&[
                ("PITOT_AGGREGATOR__STORE__DIR", "/tmp/x"),
                ("PITOT_AGGREGATOR__HTTP__SLOTH_METRICS", "false"),
                ("PITOT_AGGREGATOR__RETENTION__10S", "1d"),
            ]),
        )
        .unwrap();
        assert_eq!(c.store.dir, PathBuf::from("/tmp/x"));
        assert!(!c.http.sloth_metrics);
        assert_eq!(
            c.store.resolutions[0].retention,
            Duration::from_secs(86_400)
        );
        let e = parse_with_env(
            "",
            Path::new("t"),
            vars(&[("PITOT_AGGREGATOR__HTTP__LISTEN", "nowhere")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("http.listen"), "{e}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/aggregator.toml");
        let c = load(&path).unwrap();
        assert_eq!(c.quic.listen, "0.0.0.0:7443".parse().unwrap());
        // The commented SLO examples are valid once uncommented.
        let text = std::fs::read_to_string(&path).unwrap();
        let examples = &text[text.find("# [[slo]]").unwrap()..];
        let uncommented: String = examples
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&uncommented, &path).unwrap();
        assert_eq!(c.slos.len(), 2);
        assert_eq!(c.slos[0].service, "chat");
        assert_eq!(c.models.len(), 1);
        assert_eq!(c.models[0].prices.gpu(Some("h100"), None), Some(4.10));
        assert_eq!(c.exports.len(), 2);
        assert_eq!(c.exports[1].name, "pitot_fleet_request_count");
        assert_eq!(c.alerts.len(), 2);
        assert_eq!(c.alerts[1].headers.len(), 1);
    }

    #[test]
    fn exports_and_alerts_name_the_key_and_the_fix() {
        let text = r#"
[[export]]
metric = "request.latency"
quantiles = [1.5]
schema = 12
max_groups = 0

[[alert]]
kind = "pagerduty"
url = "127.0.0.1:9093"
resend = "10ms"
"#;
        let e = parse(text, Path::new("t.toml")).unwrap_err().to_string();
        for key in [
            "export[0].quantiles",
            "export[0].schema",
            "export[0].max_groups",
            "alert[0].kind",
            "alert[0].url",
            "alert[0].resend",
        ] {
            assert!(e.contains(key), "{key} in {e}");
        }
        assert!(e.contains("\"alertmanager\" or \"webhook\""), "{e}");
        let ok = parse(
            "[[export]]\nmetric = \"request.latency\"\ngroup_by = [\"model\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(ok.exports[0].name, "pitot_fleet_request_latency");
        assert_eq!(ok.exports[0].quantiles, vec![0.5, 0.9, 0.99]);
        assert_eq!(ok.exports[0].schema, 5);
    }

    #[test]
    fn models_parse_with_their_defaults_and_bad_ones_name_the_key() {
        let text = r##"
[[slo]]
name = "chat-latency"
objective = 0.99
sli = { kind = "latency", metric = "gen_ai.server.request.duration", threshold_ms = 0.5 }

[[model]]
name = "llama3-8b"
owner = "search-ranking"
contact = "#search-oncall"
slos = ["chat-latency"]
latency_metric = "gen_ai.server.request.duration"
[model.price]
gpu_hour = 2.5
host_hour = 0.4
[model.price.gpu_class]
h100 = 4.0
"NVIDIA A100-SXM4-80GB" = 3.1

[[model]]
name = "embedder"
owner = "platform"
tags = ["service:embed", "tier:prod"]
requests = "embed.requests"
price = { gpu_hour = 1.25 }
"##;
        let c = parse(text, Path::new("t.toml")).unwrap();
        let llama = &c.models[0];
        assert_eq!(llama.tags, vec![("model".into(), "llama3-8b".into())]);
        // A class tag first, else a key found in the product name (the longest).
        assert_eq!(llama.prices.gpu(Some("h100"), None), Some(4.0));
        assert_eq!(
            llama.prices.gpu(None, Some("NVIDIA H100 80GB HBM3")),
            Some(4.0)
        );
        assert_eq!(
            llama.prices.gpu(None, Some("NVIDIA A100-SXM4-80GB")),
            Some(3.1)
        );
        assert_eq!(llama.prices.gpu(None, Some("NVIDIA A10G")), Some(2.5));
        assert_eq!(
            llama.metrics.latency.as_deref(),
            Some("gen_ai.server.request.duration")
        );
        assert_eq!(llama.prices.host_hour, Some(0.4));
        let embed = &c.models[1];
        assert_eq!(embed.tags.len(), 2);
        assert_eq!(embed.prices.gpu(Some("anything"), None), Some(1.25));
        assert_eq!(embed.metrics.requests.as_deref(), Some("embed.requests"));

        problem("[[model]]\nname = \"a b\"\nowner = \"x\"", "model[0].name");
        problem("[[model]]\nname = \"a\"\nowner = \" \"", "model[0].owner");
        problem(
            "[[model]]\nname = \"a\"\nowner = \"x\"\nslos = [\"nope\"]",
            "model[0].slos",
        );
        problem(
            "[[model]]\nname = \"a\"\nowner = \"x\"\nprice = { gpu_hour = -1.0 }",
            "model[0].price.gpu_hour",
        );
        problem(
            "[[model]]\nname = \"a\"\nowner = \"x\"\nprice.gpu_class = { H100 = -2.0 }",
            "model[0].price.gpu_class.H100",
        );
        problem(
            "[[model]]\nname = \"a\"\nowner = \"x\"\ntags = [\"nocolon\"]",
            "model[0].tags",
        );
        problem(
            "[[model]]\nname = \"a\"\nowner = \"x\"\n[[model]]\nname = \"a\"\nowner = \"y\"",
            "model[1].name",
        );
        problem(
            "[[model]]\nname = \"a\"\nowner = \"x\"\ncolour = \"red\"",
            "colour",
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        problem("[quic]\nlisten = \"7443\"", "quic.listen");
        problem("[retention]\n\"10s\" = \"forever\"", "retention.10s");
        problem("[retention]\n\"5s\" = \"1d\"", "retention.5s");
        problem("[retention]\n\"1h\" = \"1m\"", "retention.1h");
        problem("[htp]\nlisten = \"x\"", "htp");
        problem("[drift]\nalpha = 2.0", "drift.alpha");
        problem(
            "[drift.reference.lastweek]\nfrom = \"now-1d\"\nto = \"now-8d\"",
            "drift.reference.lastweek",
        );
        problem("[drift]\nalpah = 0.1", "alpah");
        let slo = |body: &str| format!("[[slo]]\n{body}");
        problem(
            &slo(
                "name = \"a\"\nobjective = 1.5\n[slo.sli]\nkind = \"ratio\"\ngood = \"g\"\ntotal = \"t\"",
            ),
            "slo[0].objective",
        );
        problem(
            &slo(
                "name = \"a\"\nobjective = 0.9\nwindow = \"soon\"\n[slo.sli]\nkind = \"ratio\"\ngood = \"g\"\ntotal = \"t\"",
            ),
            "slo[0].window",
        );
        problem(
            &slo(
                "name = \"a\"\nobjective = 0.9\n[slo.sli]\nkind = \"latency\"\nmetric = \"m\"\nthreshold_ms = -1",
            ),
            "slo[0].sli.threshold_ms",
        );
        problem(
            &slo(
                "name = \"a\"\nobjective = 0.9\n[slo.sli]\nkind = \"latency\"\nmetric = \"m\"\nthreshold_ms = 5\ntags = [\"nocolon\"]",
            ),
            "slo[0].sli.tags",
        );
        problem(
            &slo("name = \"a\"\nobjective = 0.9\n[slo.sli]\nkind = \"speed\""),
            "speed",
        );
    }
}
