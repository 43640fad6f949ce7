//! The accountability report: for each model, who owns it, what serves it now, how it is
//! doing against its SLOs and inputs, and what it costs (`GET /api/v1/models`).
//!
//! Cost comes from the agents' per-rule counters (`process.gpu.allocated_time`,
//! `process.gpu.busy_time`, `process.host.allocated_time`: seconds, see the agent's
//! `sampler/cost.rs`) selected by the model's tags, priced by `[[model]]`:
//!
//! - **allocation cost**: GPU-hours held × the GPU class's price + host-hours × `host_hour`
//!   (what the hardware costs while the model holds it);
//! - **utilisation cost**: GPU-hours of compute used × the price + the same host part (what
//!   the model's work would cost on perfectly shared GPUs).
//!
//! Tokens come from the first of these that has series for the model: the configured
//! `tokens_metric` (split by `gen_ai.token.type` where tagged) or `tokens_in`/`tokens_out`;
//! the `gen_ai.server.usage.{input,output}_tokens` counters (vLLM);
//! the sums of the `gen_ai.server.request.{input,output}_tokens` histograms (TGI, vLLM); the
//! sum of OpenTelemetry's `gen_ai.client.token.usage` by `gen_ai.token.type`. Requests: the
//! configured `requests`, else the count of `gen_ai.server.request.duration`, else
//! `gen_ai.server.requests.{succeeded,failed}` (Triton).

use std::collections::{BTreeMap, BTreeSet};

use pitot_shared::batch::SeriesData;
use pitot_shared::drift::{DriftConfig, Status};
use pitot_shared::slo::Alert;
use serde::{Deserialize, Serialize};

use crate::drift::{self, DriftQuery, Mode};
use crate::model::{ModelDefinition, rfc3339};
use crate::reports::{ReportError, WindowReader};
use crate::slo::{self, InstalledSlo};
use crate::store::Store;
use crate::timeline;

/// The drift reference of the models report: the 7 days before its window, as
/// `/api/v1/drift` by default.
const DRIFT_REFERENCE_MS: i64 = 7 * 86_400_000;

/// One version live now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveVersion {
    /// Version (`""` when its series carry no `version` tag).
    pub version: String,
    /// Hosts serving it.
    pub hosts: usize,
}

/// Requests in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    /// The metric they were counted from.
    pub metric: String,
    /// Requests in the window.
    pub total: f64,
    /// Per second of the window.
    pub per_second: f64,
}

/// One of the model's SLOs, now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSlo {
    /// SLO name.
    pub name: String,
    /// `latency` or `ratio`.
    pub kind: String,
    /// Objective.
    pub objective: f64,
    /// Its window as configured.
    pub window: String,
    /// Good / total over its window.
    pub sli: f64,
    /// Error budget left, 1 = untouched, below 0 = overspent.
    pub budget_remaining: f64,
    /// `ok`, `ticket` or `page`.
    pub alert: Alert,
}

/// The drift of the model's inputs over the window against the 7 days before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDrift {
    /// The most severe status of any input.
    pub status: Status,
    /// Inputs compared.
    pub inputs: usize,
    /// Inputs whose status is `drift`.
    pub drifting: Vec<String>,
}

/// GPU time of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuClassCost {
    /// The `gpu_class` tag, else `gpu_model`, else `""`.
    pub gpu_class: String,
    /// GPU-hours held.
    pub hours: f64,
    /// GPU-hours of compute used.
    pub busy_hours: f64,
    /// Price per GPU-hour (`null`: not priced).
    pub price_per_hour: Option<f64>,
}

/// Tokens in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    /// Input (prompt) tokens (`null`: not counted apart).
    pub input: Option<f64>,
    /// Output (generated) tokens (`null`: not counted apart).
    pub output: Option<f64>,
    /// All tokens.
    pub total: f64,
    /// The metrics they were counted from.
    pub source: Vec<String>,
}

/// The model's latency over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// The histogram metric.
    pub metric: String,
    /// The values' unit when the name says it.
    pub unit: Option<String>,
    /// Observations.
    pub count: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// A cost per unit, both ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitCost {
    /// From the allocation cost.
    pub allocation: f64,
    /// From the utilisation cost.
    pub utilisation: f64,
}

/// What the model cost in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Cost {
    /// GPU-hours held by its processes.
    pub gpu_hours: f64,
    /// GPU-hours of compute its processes used.
    pub gpu_busy_hours: f64,
    /// How compute use was attributed: `process` (the driver's per-process use), `device`
    /// (the device's use shared by the processes on it), or both.
    pub attribution: Vec<String>,
    /// Per GPU class.
    pub gpus: Vec<GpuClassCost>,
    /// Host-hours (each host's time split among the rules live on it).
    pub host_hours: f64,
    /// GPU-hours of classes with no price (not in the costs).
    pub unpriced_gpu_hours: f64,
    /// GPUs held × price (`null`: nothing priced).
    pub gpu_allocation_cost: Option<f64>,
    /// GPU compute used × price.
    pub gpu_utilisation_cost: Option<f64>,
    /// Host-hours × `host_hour`.
    pub host_cost: Option<f64>,
    /// GPU allocation + host.
    pub allocation_cost: Option<f64>,
    /// GPU utilisation + host.
    pub utilisation_cost: Option<f64>,
    /// Tokens (`null`: no token series for the model).
    pub tokens: Option<Tokens>,
    /// Cost per 1 000 tokens in and out.
    pub per_1k_tokens: Option<UnitCost>,
    /// Cost per 1 000 requests.
    pub per_1k_requests: Option<UnitCost>,
}

/// One model's report (`GET /api/v1/models/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// Name.
    pub name: String,
    /// Declared in `[[model]]`; `false` for a model seen in the traffic that nobody declared.
    pub configured: bool,
    /// Owning team (`null`: nobody declared it).
    pub owner: Option<String>,
    /// How to reach the owner.
    pub contact: String,
    /// Tags selecting its series.
    pub tags: BTreeMap<String, String>,
    /// Window start (RFC 3339).
    pub from: String,
    /// Window end (RFC 3339).
    pub to: String,
    /// Versions live now.
    pub live: Vec<LiveVersion>,
    /// Requests (`null`: no request series for the model).
    pub requests: Option<Requests>,
    /// Latency (`null`: no latency series for the model).
    pub latency: Option<Latency>,
    /// Its SLOs now.
    pub slos: Vec<ModelSlo>,
    /// Its inputs' drift (`null`: no input series).
    pub drift: Option<ModelDrift>,
    /// Cost.
    pub cost: Cost,
}

/// `GET /api/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Window start (RFC 3339).
    pub from: String,
    /// Window end (RFC 3339).
    pub to: String,
    /// Declared models in config order, then undeclared ones seen in the traffic.
    pub models: Vec<ModelReport>,
}

/// What a models report reads besides the store.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Declared models.
    pub models: &'a [ModelDefinition],
    /// SLOs with their ids.
    pub slos: &'a [InstalledSlo],
    /// Drift settings.
    pub drift: &'a DriftConfig,
    /// Input prefix.
    pub input_prefix: &'a str,
}

/// A series' tags by key.
type Tags = BTreeMap<String, String>;

/// The window's series, with their tags by key.
struct Reader<'a>(WindowReader<'a>);

impl Reader<'_> {
    /// Every series of `metric` under `filters`, summed over the window, with its tags.
    fn each(
        &self,
        metric: &str,
        filters: &[(String, String)],
    ) -> Result<Vec<(Tags, SeriesData)>, ReportError> {
        Ok(self
            .0
            .each(metric, filters)?
            .into_iter()
            .map(|(key, d)| (key.tags().iter().cloned().collect(), d))
            .collect())
    }

    /// Counter total, histogram sum or histogram count of a metric (`None`: no series).
    fn total(
        &self,
        metric: &str,
        filters: &[(String, String)],
        histogram_count: bool,
    ) -> Result<Option<f64>, ReportError> {
        let list = self.each(metric, filters)?;
        if list.is_empty() {
            return Ok(None);
        }
        let mut total = 0.0;
        for (_, d) in list {
            total += match d {
                SeriesData::Counter(c) => c,
                SeriesData::Histogram(h) if histogram_count => h.count() as f64,
                SeriesData::Histogram(h) => h.sum(),
                SeriesData::Buckets(b) if histogram_count => b.count() as f64,
                SeriesData::Buckets(b) => b.sum(),
                _ => 0.0,
            };
        }
        Ok(Some(total))
    }
}

/// Input, output and all tokens of `metric`'s series, split by their `gen_ai.token.type` tag
/// (`None`: no series).
fn typed_tokens(
    r: &Reader<'_>,
    metric: &str,
    filters: &[(String, String)],
) -> Result<Option<Tokens>, ReportError> {
    let list = r.each(metric, filters)?;
    if list.is_empty() {
        return Ok(None);
    }
    let mut t = Tokens {
        input: None,
        output: None,
        total: 0.0,
        source: vec![metric.to_owned()],
    };
    for (tags, d) in list {
        let n = match d {
            SeriesData::Counter(c) => c,
            SeriesData::Histogram(h) => h.sum(),
            SeriesData::Buckets(b) => b.sum(),
            _ => 0.0,
        };
        t.total += n;
        match tags.get("gen_ai.token.type").map(String::as_str) {
            Some("input") => *t.input.get_or_insert(0.0) += n,
            Some("output") => *t.output.get_or_insert(0.0) += n,
            _ => {}
        }
    }
    Ok(Some(t))
}

fn tokens(
    r: &Reader<'_>,
    def: &ModelDefinition,
    filters: &[(String, String)],
) -> Result<Option<Tokens>, ReportError> {
    if let Some(m) = &def.metrics.tokens {
        return typed_tokens(r, m, filters);
    }
    let pairs: Vec<(String, String)> = match (&def.metrics.tokens_in, &def.metrics.tokens_out) {
        (None, None) => vec![
            (
                "gen_ai.server.usage.input_tokens".into(),
                "gen_ai.server.usage.output_tokens".into(),
            ),
            (
                "gen_ai.server.request.input_tokens".into(),
                "gen_ai.server.request.output_tokens".into(),
            ),
        ],
        (i, o) => vec![(i.clone().unwrap_or_default(), o.clone().unwrap_or_default())],
    };
    for (i, o) in pairs {
        let total = |m: &str| -> Result<Option<f64>, ReportError> {
            if m.is_empty() {
                Ok(None)
            } else {
                r.total(m, filters, false)
            }
        };
        let (input, output) = (total(&i)?, total(&o)?);
        if input.is_some() || output.is_some() {
            return Ok(Some(Tokens {
                input,
                output,
                total: input.unwrap_or(0.0) + output.unwrap_or(0.0),
                source: [i, o].into_iter().filter(|m| !m.is_empty()).collect(),
            }));
        }
    }
    if def.metrics.tokens_in.is_some() || def.metrics.tokens_out.is_some() {
        return Ok(None);
    }
    typed_tokens(r, "gen_ai.client.token.usage", filters)
}

fn requests(
    r: &Reader<'_>,
    def: &ModelDefinition,
    filters: &[(String, String)],
    seconds: f64,
) -> Result<Option<Requests>, ReportError> {
    let found = |metric: &str, total: f64| Requests {
        metric: metric.to_owned(),
        total,
        per_second: total / seconds,
    };
    if let Some(m) = &def.metrics.requests {
        return Ok(Some(found(m, r.total(m, filters, true)?.unwrap_or(0.0))));
    }
    let duration = "gen_ai.server.request.duration";
    if let Some(n) = r.total(duration, filters, true)? {
        return Ok(Some(found(duration, n)));
    }
    let ok = r.total("gen_ai.server.requests.succeeded", filters, false)?;
    let failed = r.total("gen_ai.server.requests.failed", filters, false)?;
    Ok((ok.is_some() || failed.is_some()).then(|| {
        found(
            "gen_ai.server.requests.succeeded+failed",
            ok.unwrap_or(0.0) + failed.unwrap_or(0.0),
        )
    }))
}

fn cost(
    r: &Reader<'_>,
    def: &ModelDefinition,
    filters: &[(String, String)],
) -> Result<Cost, ReportError> {
    // GPUs are grouped by their `gpu_class` tag and `gpu_model`, which price them.
    type Class = (Option<String>, Option<String>);
    let class = |tags: &BTreeMap<String, String>| -> Class {
        (
            tags.get("gpu_class").cloned(),
            tags.get("gpu_model").cloned(),
        )
    };
    let seconds = |d: &SeriesData| match d {
        SeriesData::Counter(c) => *c,
        _ => 0.0,
    };
    let mut classes: BTreeMap<Class, (f64, f64)> = BTreeMap::new();
    for (tags, d) in r.each("process.gpu.allocated_time", filters)? {
        classes.entry(class(&tags)).or_default().0 += seconds(&d) / 3600.0;
    }
    let mut attribution = BTreeSet::new();
    for (tags, d) in r.each("process.gpu.busy_time", filters)? {
        classes.entry(class(&tags)).or_default().1 += seconds(&d) / 3600.0;
        if let Some(a) = tags.get("attribution") {
            attribution.insert(a.clone());
        }
    }
    let host_hours = r
        .each("process.host.allocated_time", filters)?
        .iter()
        .map(|(_, d)| seconds(d) / 3600.0)
        .sum::<f64>();
    let mut c = Cost {
        host_hours,
        attribution: attribution.into_iter().collect(),
        host_cost: def.prices.host_hour.map(|p| p * host_hours),
        ..Cost::default()
    };
    for ((gpu_class, gpu_model), (hours, busy_hours)) in classes {
        let price = def.prices.gpu(gpu_class.as_deref(), gpu_model.as_deref());
        c.gpu_hours += hours;
        c.gpu_busy_hours += busy_hours;
        match price {
            Some(p) => {
                *c.gpu_allocation_cost.get_or_insert(0.0) += hours * p;
                *c.gpu_utilisation_cost.get_or_insert(0.0) += busy_hours * p;
            }
            None => c.unpriced_gpu_hours += hours,
        }
        c.gpus.push(GpuClassCost {
            gpu_class: gpu_class.or(gpu_model).unwrap_or_default(),
            hours,
            busy_hours,
            price_per_hour: price,
        });
    }
    let plus = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    c.allocation_cost = plus(c.gpu_allocation_cost, c.host_cost);
    c.utilisation_cost = plus(c.gpu_utilisation_cost, c.host_cost);
    c.tokens = tokens(r, def, filters)?;
    Ok(c)
}

/// The metrics a model's latency is read from, in order: the configured one, else the
/// OpenTelemetry name, then Pitot's.
pub fn latency_candidates(def: &ModelDefinition) -> Vec<&str> {
    match &def.metrics.latency {
        Some(m) => vec![m.as_str()],
        None => vec!["gen_ai.server.request.duration", "request.latency"],
    }
}

/// The model's latency: its `latency_metric`, else `gen_ai.server.request.duration`, else
/// `request.latency`, whichever has series for it first.
fn latency(
    store: &dyn Store,
    def: &ModelDefinition,
    filters: &[(String, String)],
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<Latency>, ReportError> {
    for metric in latency_candidates(def) {
        let q = crate::reports::MetricQuery {
            metric: metric.to_owned(),
            filters: filters.to_vec(),
            from_ms,
            to_ms,
            group_by: Vec::new(),
        };
        let qs = [("0.5".to_owned(), 0.5), ("0.99".to_owned(), 0.99)];
        match crate::reports::quantiles(store, &q, &qs) {
            Ok(rep) => {
                return Ok(Some(Latency {
                    metric: metric.to_owned(),
                    unit: rep.unit,
                    count: rep.fleet.count,
                    p50: rep.fleet.quantiles.get("0.5").copied().flatten(),
                    p99: rep.fleet.quantiles.get("0.99").copied().flatten(),
                }));
            }
            Err(ReportError::NotFound(_) | ReportError::BadRequest(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Cost per 1 000 of `units`, both ways (`None` without a cost or without units).
fn per_1k(c: &Cost, units: f64) -> Option<UnitCost> {
    if units <= 0.0 {
        return None;
    }
    Some(UnitCost {
        allocation: c.allocation_cost? / units * 1000.0,
        utilisation: c.utilisation_cost? / units * 1000.0,
    })
}

/// The `model` tag a model's sightings are kept under: its `model:` selector, else its name.
fn model_tag(def: &ModelDefinition) -> &str {
    def.tags
        .iter()
        .find(|(k, _)| k == "model")
        .map_or(def.name.as_str(), |(_, v)| v.as_str())
}

/// One model's report over `[from_ms, to_ms)`, evaluated at `now_ms`.
pub fn report(
    store: &dyn Store,
    ctx: Context<'_>,
    def: &ModelDefinition,
    configured: bool,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<ModelReport, ReportError> {
    let r = Reader(WindowReader::new(store, from_ms, to_ms, now_ms));
    let filters = &def.tags;
    let seconds = ((to_ms - from_ms) as f64 / 1000.0).max(0.001);
    let live = match timeline::report(store, model_tag(def), i64::MIN, now_ms, now_ms) {
        Ok(t) => t
            .live
            .into_iter()
            .map(|(version, hosts)| LiveVersion { version, hosts })
            .collect(),
        Err(ReportError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let requests = requests(&r, def, filters, seconds)?;
    let latency = latency(store, def, filters, from_ms, to_ms)?;
    let mut slos = Vec::new();
    for name in &def.slos {
        let Some(installed) = ctx.slos.iter().find(|s| &s.def.name == name) else {
            continue;
        };
        let s = slo::report(store, installed, now_ms)?;
        slos.push(ModelSlo {
            name: s.name,
            kind: s.indicator.kind,
            objective: s.objective,
            window: s.window,
            sli: s.sli,
            budget_remaining: s.error_budget.remaining,
            alert: s.alert,
        });
    }
    let drift_query = DriftQuery {
        mode: Mode::Temporal {
            ref_from_ms: from_ms - DRIFT_REFERENCE_MS,
            ref_to_ms: from_ms,
        },
        metric: None,
        filters: filters.clone(),
        from_ms,
        to_ms,
    };
    let drift = match drift::report(store, &drift_query, ctx.drift, ctx.input_prefix) {
        Ok(d) if !d.results.is_empty() => Some(ModelDrift {
            status: d
                .results
                .iter()
                .map(|x| x.status)
                .max()
                .unwrap_or(Status::NoData),
            inputs: d.results.len(),
            drifting: d
                .results
                .iter()
                .filter(|x| x.status == Status::Drift)
                .map(|x| x.metric.clone())
                .collect(),
        }),
        Ok(_) | Err(ReportError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let mut cost = cost(&r, def, filters)?;
    let tokens = cost.tokens.as_ref().map_or(0.0, |t| t.total);
    cost.per_1k_tokens = per_1k(&cost, tokens);
    cost.per_1k_requests = per_1k(&cost, requests.as_ref().map_or(0.0, |q| q.total));
    Ok(ModelReport {
        name: def.name.clone(),
        configured,
        owner: configured.then(|| def.owner.clone()),
        contact: def.contact.clone(),
        tags: def.tags.iter().cloned().collect(),
        from: rfc3339(from_ms),
        to: rfc3339(to_ms),
        live,
        requests,
        latency,
        slos,
        drift,
        cost,
    })
}

/// An undeclared model seen in the traffic, reported with no owner and no prices.
fn undeclared(name: &str) -> ModelDefinition {
    ModelDefinition {
        name: name.to_owned(),
        owner: String::new(),
        contact: String::new(),
        tags: vec![("model".to_owned(), name.to_owned())],
        slos: Vec::new(),
        prices: Default::default(),
        metrics: Default::default(),
    }
}

/// The definition of `name`: declared, else seen in the traffic (`None`: neither).
pub fn find(
    store: &dyn Store,
    models: &[ModelDefinition],
    name: &str,
) -> Result<Option<(ModelDefinition, bool)>, ReportError> {
    if let Some(d) = models.iter().find(|m| m.name == name) {
        return Ok(Some((d.clone(), true)));
    }
    Ok((!store.sightings(Some(name))?.is_empty()).then(|| (undeclared(name), false)))
}

/// Every model: declared ones in config order, then undeclared ones seen in the traffic, by
/// name; `allowed` filters them (a token scoped to some models).
pub fn list(
    store: &dyn Store,
    ctx: Context<'_>,
    allowed: &dyn Fn(&str) -> bool,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<ModelList, ReportError> {
    let mut out = Vec::new();
    for def in ctx.models.iter().filter(|d| allowed(&d.name)) {
        out.push(report(store, ctx, def, true, from_ms, to_ms, now_ms)?);
    }
    let declared: BTreeSet<&str> = ctx.models.iter().map(model_tag).collect();
    let seen: BTreeSet<String> = store
        .sightings(None)?
        .into_iter()
        .map(|s| s.model)
        .filter(|m| !declared.contains(m.as_str()) && allowed(m))
        .collect();
    for name in seen {
        out.push(report(
            store,
            ctx,
            &undeclared(&name),
            false,
            from_ms,
            to_ms,
            now_ms,
        )?);
    }
    Ok(ModelList {
        from: rfc3339(from_ms),
        to: rfc3339(to_ms),
        models: out,
    })
}
