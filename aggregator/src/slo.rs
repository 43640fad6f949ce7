//! The SLO engine: what each batch contributes to each `[[slo]]`, and the reports.
//!
//! The store keeps, per SLO, good/total counters per bucket at every resolution ("cells") and
//! each host's bad events per coarsest bucket as running sums; both are written in the same
//! transaction that merges the batch, so they are exactly-once like the buckets themselves.
//! A report reads at most [`MAX_CELLS`] cells per lookback plus two lookups per host, however
//! long the history: it never decodes a histogram. The math (budget, burn rates, alert table)
//! is `pitot_shared::slo`.
//!
//! Ranges follow the stored buckets: a lookback `L` at `now` counts the cells of one resolution
//! whose start lies in `[now − L, now)`, so it covers between `L − bucket` and `L` of history
//! plus the bucket in progress. The resolution is the finest that keeps `L` and needs at most
//! [`MAX_CELLS`] cells; the report names it per lookback.

use std::collections::BTreeMap;
use std::time::Duration;

use pitot_shared::batch::{Batch, SeriesData};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::SeriesKey;
use pitot_shared::slo::{
    self, Alert, BURN_WINDOWS, Counts, ErrorBudget, evaluate_counts, month_bounds,
};
use pitot_shared::window::align_down;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::model::{Resolution, rfc3339};
use crate::model::{Sli, SloDefinition, SloDelta, SloWindow};
use crate::store::{SledStore, Store, StoreError};

/// Most cells one lookback reads; longer lookbacks use a coarser resolution.
pub const MAX_CELLS: u64 = 1_440;
/// Hosts listed in `top_hosts`.
pub const TOP_HOSTS: usize = 10;

/// An SLO definition with the id its counters are stored under.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledSlo {
    /// Store id (see [`canonical`]).
    pub id: u64,
    /// The definition.
    pub def: SloDefinition,
}

/// The bytes that identify what an SLI counts: its kind, metrics, threshold and tag filters,
/// but not the SLO's name, objective or window (those only change how counts are read). The
/// store keys counters by them, so renaming an SLO keeps its history and changing a threshold
/// starts a new one (backfilled from the buckets still kept).
pub fn canonical(sli: &Sli) -> Vec<u8> {
    let mut out = Vec::new();
    let (kind, parts, tags): (&[u8], Vec<String>, &[(String, String)]) = match sli {
        Sli::Latency {
            metric,
            threshold,
            tags,
        } => (
            b"latency",
            vec![
                metric.clone(),
                format!("{:016x}", threshold.to_bits()),
                format!("{:?}", ValueHistogram::bucket_edge_at_or_below(*threshold)),
            ],
            tags,
        ),
        Sli::Ratio { good, total, tags } => (b"ratio", vec![good.clone(), total.clone()], tags),
    };
    out.extend_from_slice(kind);
    for p in parts {
        out.push(0);
        out.extend_from_slice(p.as_bytes());
    }
    let mut sorted: Vec<&(String, String)> = tags.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        out.push(0);
        out.extend_from_slice(k.as_bytes());
        out.push(b':');
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The metric names an SLI reads.
pub fn metrics(sli: &Sli) -> Vec<&str> {
    match sli {
        Sli::Latency { metric, .. } => vec![metric],
        Sli::Ratio { good, total, .. } => vec![good, total],
    }
}

/// What one series' data for one interval (or bucket) adds to an SLI; `None` when the series
/// is not part of it. Latency: good = events in buckets wholly at or under the threshold.
/// Ratio: the counter's value, rounded to whole events (negative deltas count as 0).
pub fn series_counts(sli: &Sli, key: &SeriesKey, data: &SeriesData) -> Option<Counts> {
    let events = |v: f64| {
        if v.is_finite() && v > 0.0 {
            v.round().min(u64::MAX as f64) as u64
        } else {
            0
        }
    };
    match (sli, data) {
        (
            Sli::Latency {
                metric,
                threshold,
                tags,
            },
            SeriesData::Histogram(h),
        ) if key.name() == metric && key.matches(tags) => Some(Counts {
            good: h.count_at_or_below(*threshold),
            total: h.count(),
            // The straddling HdrHistogram bucket is bad by `threshold_used`, a stated rule.
            uncertain: 0,
        }),
        (
            Sli::Latency {
                metric,
                threshold,
                tags,
            },
            SeriesData::Buckets(b),
        ) if key.name() == metric && key.matches(tags) => {
            // Buckets wholly at or under the threshold: never optimistic; the straddling
            // buckets say by how much that may understate.
            let (good, uncertain) = b.count_at_or_below(*threshold);
            Some(Counts {
                good,
                total: b.count(),
                uncertain,
            })
        }
        (Sli::Ratio { good, total, tags }, SeriesData::Counter(v)) if key.matches(tags) => {
            if key.name() == good {
                Some(Counts {
                    good: events(*v),
                    ..Counts::default()
                })
            } else if key.name() == total {
                Some(Counts {
                    total: events(*v),
                    ..Counts::default()
                })
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The host a series belongs to: its `host` tag, else the agent that sent it.
pub fn host_of<'a>(key: &'a SeriesKey, agent: &'a str) -> &'a str {
    key.tag("host").unwrap_or(agent)
}

/// The contribution of `batch` to every SLO it touches, for the store to write in the
/// batch's merge transaction.
pub fn batch_deltas(slos: &[InstalledSlo], batch: &Batch) -> Vec<SloDelta> {
    let mut out = Vec::new();
    for slo in slos {
        let mut delta = SloDelta {
            id: slo.id,
            ..SloDelta::default()
        };
        let mut touched = false;
        for s in &batch.series {
            if let Some(c) = series_counts(&slo.def.sli, &s.key, &s.data) {
                touched = true;
                delta.fleet.add(c);
                delta
                    .hosts
                    .entry(host_of(&s.key, &batch.agent_id.0).to_owned())
                    .or_default()
                    .add(c);
            }
        }
        if touched {
            out.push(delta);
        }
    }
    out
}

/// How long per-host SLO sums must be kept: the longest window (a month counts 31 days).
pub fn longest_window(slos: &[InstalledSlo]) -> Duration {
    slos.iter()
        .map(|s| match s.def.window {
            SloWindow::Rolling(d) => d,
            SloWindow::Month => Duration::from_secs(31 * 86_400),
        })
        .max()
        .unwrap_or_default()
}

/// Gives each SLO's SLI a store id, backfills the counters of SLIs the store has not seen
/// (or whose backfill was cut off) from the buckets kept, drops the counters of SLIs no
/// longer configured, and returns the SLOs whose counts later merges add
/// ([`batch_deltas`]). Run on the writer before merging.
pub fn install(
    store: &mut SledStore,
    defs: &[SloDefinition],
) -> Result<Vec<InstalledSlo>, StoreError> {
    let mut known: BTreeMap<Vec<u8>, (u64, bool)> = store
        .slo_ids()?
        .into_iter()
        .map(|(canon, id, ready)| (canon, (id, ready)))
        .collect();
    let mut installed = Vec::new();
    let mut keep = std::collections::BTreeSet::new();
    // Nothing is written when nothing changed, so an unchanged config starts on a full disk.
    let mut wrote = false;
    for def in defs {
        let canon = canonical(&def.sli);
        let id = match known.get(&canon).copied() {
            Some((id, true)) => id,
            Some((id, false)) => {
                // A backfill was cut off: start it over.
                store.clear_slo(id)?;
                backfill(store, id, def)?;
                store.slo_ready(&canon, id)?;
                wrote = true;
                id
            }
            None => {
                let id = store.new_slo(&canon)?;
                backfill(store, id, def)?;
                store.slo_ready(&canon, id)?;
                wrote = true;
                id
            }
        };
        known.insert(canon.clone(), (id, true));
        keep.insert(canon);
        installed.push(InstalledSlo {
            id,
            def: def.clone(),
        });
    }
    for (canon, (id, _)) in &known {
        if !keep.contains(canon) {
            store.drop_slo(canon, *id)?;
            wrote = true;
        }
    }
    if wrote {
        store.flush()?;
    }
    Ok(installed)
}

/// Fills an SLO's counters from the buckets kept (nothing merges meanwhile: the writer is
/// borrowed).
fn backfill(store: &mut SledStore, id: u64, def: &SloDefinition) -> Result<(), StoreError> {
    let mut series = Vec::new();
    for name in metrics(&def.sli) {
        series.extend(store.series(Some(name), &[])?);
    }
    let resolutions = store.resolutions().to_vec();
    let coarsest = resolutions.last().map(|r| r.code);
    let mut cells_written = 0usize;
    let mut hosts: BTreeMap<String, BTreeMap<i64, Counts>> = BTreeMap::new();
    for res in &resolutions {
        let mut cells: BTreeMap<i64, Counts> = BTreeMap::new();
        for (key, _) in &series {
            for (start, data) in store.read(key, res, i64::MIN, i64::MAX)? {
                if let Some(c) = series_counts(&def.sli, key, &data) {
                    cells.entry(start).or_default().add(c);
                    if Some(res.code) == coarsest {
                        let host = key.tag("host").unwrap_or_default().to_owned();
                        hosts
                            .entry(host)
                            .or_default()
                            .entry(start)
                            .or_default()
                            .add(c);
                    }
                }
            }
        }
        cells_written += cells.len();
        let cells: Vec<(i64, Counts)> = cells.into_iter().collect();
        store.import_slo_cells(id, res, &cells)?;
    }
    for (host, buckets) in &hosts {
        // Signed: a ratio SLI's good and total may land in different buckets.
        let deltas: Vec<(i64, i64)> = buckets
            .iter()
            .map(|(start, c)| {
                let bad = (c.total as i128 - c.good as i128)
                    .clamp(i64::MIN as i128, i64::MAX as i128) as i64;
                (*start, bad)
            })
            .filter(|(_, bad)| *bad != 0)
            .collect();
        store.add_slo_host(id, host, &deltas)?;
    }
    info!(
        slo = %def.name,
        series = series.len(),
        cells = cells_written,
        hosts = hosts.len(),
        "SLO counters backfilled from the stored buckets."
    );
    Ok(())
}

/// The resolution a lookback of `len` is read at: the finest that keeps it whole and needs at
/// most [`MAX_CELLS`] cells (the coarsest when none does).
pub fn pick_resolution(resolutions: &[Resolution], len: Duration) -> Option<Resolution> {
    resolutions
        .iter()
        .find(|r| {
            r.retention >= len + r.bucket
                && len.as_millis() as u64 / r.bucket_ms().max(1) <= MAX_CELLS
        })
        .or(resolutions.last())
        .copied()
}

/// What an SLI is, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Indicator {
    /// `latency` or `ratio`.
    pub kind: String,
    /// Latency: the histogram metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Latency: the configured threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Latency: the threshold actually applied, the bucket edge at or under `threshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_used: Option<f64>,
    /// Ratio: the good counter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub good: Option<String>,
    /// Ratio: the total counter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    /// Tag filters.
    pub tags: BTreeMap<String, String>,
    /// Latency over scraped classic histograms (`buckets` series): good counts take the buckets
    /// wholly at or under the threshold in each series' own layout, so they are exact only when
    /// the threshold is an edge of every layout, and never optimistic; `threshold_used` is then
    /// the HdrHistogram edge, which applies to histogram series only.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub bucket_layouts: bool,
}

/// `GET /api/v1/slo`: every SLO's report, in config order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloList {
    /// The reports.
    pub slos: Vec<SloReport>,
}

/// A host and its bad events in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostBad {
    /// Host.
    pub host: String,
    /// Bad events.
    pub bad: u64,
}

/// One SLO's report (`GET /api/v1/slo`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloReport {
    /// Name.
    pub name: String,
    /// Service (`sloth_service`).
    pub service: String,
    /// Objective.
    pub objective: f64,
    /// Window as configured (`30d`, `month`).
    pub window: String,
    /// What is counted.
    pub indicator: Indicator,
    /// Evaluation time (RFC 3339).
    pub at: String,
    /// First bucket counted in the window (RFC 3339).
    pub from: String,
    /// End of the window (RFC 3339): `at`.
    pub to: String,
    /// Resolution the window was read at.
    pub resolution: String,
    /// Good events in the window.
    pub good: u64,
    /// All events in the window.
    pub total: u64,
    /// SLIs over scraped bucket layouts only: events counted bad that lie in a bucket
    /// straddling the threshold, so the true good count is in `[good, good + uncertain]`.
    /// 0 means exact (the threshold is an edge of every layout that saw traffic near it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<u64>,
    /// good / total (1 without traffic).
    pub sli: f64,
    /// Allowed, consumed and remaining budget.
    pub error_budget: ErrorBudget,
    /// Burn rate per lookback.
    pub burn_rates: BTreeMap<String, f64>,
    /// Resolution each lookback was read at.
    pub burn_resolutions: BTreeMap<String, String>,
    /// `ok`, `ticket` or `page`.
    pub alert: Alert,
    /// Hosts by bad events in the window, most first.
    pub top_hosts: Vec<HostBad>,
    /// First bucket `top_hosts` counts (host counts are kept per coarsest bucket).
    pub top_hosts_from: String,
}

fn indicator(sli: &Sli) -> Indicator {
    let tags = |t: &[(String, String)]| t.iter().cloned().collect();
    match sli {
        Sli::Latency {
            metric,
            threshold,
            tags: t,
        } => Indicator {
            kind: "latency".into(),
            metric: Some(metric.clone()),
            threshold: Some(*threshold),
            threshold_used: ValueHistogram::bucket_edge_at_or_below(*threshold),
            good: None,
            total: None,
            tags: tags(t),
            bucket_layouts: false,
        },
        Sli::Ratio {
            good,
            total,
            tags: t,
        } => Indicator {
            kind: "ratio".into(),
            metric: None,
            threshold: None,
            threshold_used: None,
            good: Some(good.clone()),
            total: Some(total.clone()),
            tags: tags(t),
            bucket_layouts: false,
        },
    }
}

fn align_up(t: i64, len_ms: u64) -> i64 {
    let down = align_down(t, len_ms);
    if down == t { t } else { down + len_ms as i64 }
}

/// What one SLO report reads: the window and each burn lookback with the resolution it is read
/// at, and from where per-host bad events count. Pure: a function of the definition, the
/// resolutions kept and the time.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPlan {
    /// Start of the window (Unix ms).
    pub window_from: i64,
    /// The window's length for burn-rate scaling (a calendar month's whole length).
    pub scale_len: Duration,
    /// (label, from, resolution): the window first (label ""), then each burn lookback.
    pub spans: Vec<(String, i64, Resolution)>,
    /// Per resolution read, the earliest start any span needs.
    pub reads: BTreeMap<u8, (Resolution, i64)>,
    /// Per-host bad events count from here (aligned to the per-host buckets).
    pub hosts_from: i64,
}

/// What the store holds for one plan: the cells of each resolution read, whether the SLI's
/// series are scraped bucket layouts, and the per-host bad events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportInputs {
    /// Cells per resolution code, as read for [`ReportPlan::reads`].
    pub cells: BTreeMap<u8, Vec<(i64, Counts)>>,
    /// A latency SLI over classic (bucket) histograms.
    pub bucket_layouts: bool,
    /// Bad events per host since [`ReportPlan::hosts_from`].
    pub host_bad: Vec<(String, u64)>,
}

/// Plans the report of `def` at `now_ms` over `resolutions`.
pub fn plan(
    def: &SloDefinition,
    resolutions: &[Resolution],
    host_bucket_ms: u64,
    now_ms: i64,
) -> ReportPlan {
    let (window_from, scale_len) = match def.window {
        SloWindow::Rolling(d) => (now_ms - d.as_millis() as i64, d),
        SloWindow::Month => {
            let (start, end) = month_bounds(now_ms);
            (start, Duration::from_millis((end - start) as u64))
        }
    };
    let fallback = Resolution {
        code: 0,
        bucket: Duration::from_secs(10),
        retention: Duration::from_secs(86_400),
    };
    let mut spans: Vec<(String, i64, Resolution)> = Vec::new();
    let window_len = Duration::from_millis((now_ms - window_from).max(0) as u64);
    spans.push((
        String::new(),
        window_from,
        pick_resolution(resolutions, window_len).unwrap_or(fallback),
    ));
    for (label, len) in BURN_WINDOWS {
        spans.push((
            label.to_owned(),
            now_ms - len.as_millis() as i64,
            pick_resolution(resolutions, len).unwrap_or(fallback),
        ));
    }
    // Read each resolution once, from the earliest span that uses it.
    let mut reads: BTreeMap<u8, (Resolution, i64)> = BTreeMap::new();
    for (_, from, r) in &spans {
        let e = reads.entry(r.code).or_insert((*r, *from));
        e.1 = e.1.min(*from);
    }
    ReportPlan {
        window_from,
        scale_len,
        spans,
        reads,
        hosts_from: align_up(window_from, host_bucket_ms),
    }
}

/// Reads what `plan` needs from the store (the only I/O of a report).
pub fn load(
    store: &dyn Store,
    slo: &InstalledSlo,
    plan: &ReportPlan,
    now_ms: i64,
) -> Result<ReportInputs, StoreError> {
    let mut cells = BTreeMap::new();
    for (code, (r, from)) in &plan.reads {
        cells.insert(*code, store.slo_cells(slo.id, r, *from, now_ms)?);
    }
    let bucket_layouts = match &slo.def.sli {
        Sli::Latency { metric, tags, .. } => store
            .series(Some(metric), tags)?
            .iter()
            .any(|(_, kind)| *kind == pitot_shared::series::Kind::Buckets),
        Sli::Ratio { .. } => false,
    };
    Ok(ReportInputs {
        cells,
        bucket_layouts,
        host_bad: store.slo_host_bad(slo.id, plan.hosts_from, now_ms)?,
    })
}

/// The report of `def` at `now_ms` from what [`load`] read for `plan`. Pure.
pub fn evaluate(
    def: &SloDefinition,
    plan: &ReportPlan,
    inputs: &ReportInputs,
    now_ms: i64,
) -> SloReport {
    let sum = |code: u8, from: i64| {
        let mut c = Counts::default();
        for (start, counts) in inputs.cells.get(&code).map_or(&[][..], Vec::as_slice) {
            if *start >= from && *start < now_ms {
                c.add(*counts);
            }
        }
        c
    };
    let mut lookbacks = BTreeMap::new();
    let mut burn_resolutions = BTreeMap::new();
    let mut in_window = Counts::default();
    let mut window_res = plan.spans[0].2;
    for (label, from, r) in &plan.spans {
        let c = sum(r.code, *from);
        if label.is_empty() {
            in_window = c;
            window_res = *r;
        } else {
            lookbacks.insert(label.clone(), c);
            burn_resolutions.insert(label.clone(), r.label());
        }
    }
    let e = evaluate_counts(def.objective, plan.scale_len, in_window, &lookbacks);
    let mut indicator = indicator(&def.sli);
    indicator.bucket_layouts = inputs.bucket_layouts;
    let uncertain =
        (indicator.bucket_layouts || in_window.uncertain > 0).then_some(in_window.uncertain);
    let top = slo::top_hosts(inputs.host_bad.iter().cloned(), TOP_HOSTS);
    SloReport {
        name: def.name.clone(),
        service: def.service.clone(),
        objective: def.objective,
        window: def.window.label(),
        indicator,
        at: rfc3339(now_ms),
        from: rfc3339(align_up(plan.window_from, window_res.bucket_ms())),
        to: rfc3339(now_ms),
        resolution: window_res.label(),
        good: e.good,
        total: e.total,
        uncertain,
        sli: e.sli,
        error_budget: e.error_budget,
        burn_rates: e.burn_rates,
        burn_resolutions,
        alert: e.alert,
        top_hosts: top
            .into_iter()
            .map(|(host, bad)| HostBad { host, bad })
            .collect(),
        top_hosts_from: rfc3339(plan.hosts_from),
    }
}

/// The report of one SLO at `now_ms`: [`plan`], [`load`], [`evaluate`].
pub fn report(store: &dyn Store, slo: &InstalledSlo, now_ms: i64) -> Result<SloReport, StoreError> {
    let plan = plan(
        &slo.def,
        store.resolutions(),
        store.host_bucket_ms(),
        now_ms,
    );
    let inputs = load(store, slo, &plan, now_ms)?;
    Ok(evaluate(&slo.def, &plan, &inputs, now_ms))
}

/// Evaluates every SLO at `now_ms`, in configuration order.
pub fn report_all(
    store: &dyn Store,
    slos: &[InstalledSlo],
    now_ms: i64,
) -> Result<Vec<SloReport>, StoreError> {
    slos.iter().map(|s| report(store, s, now_ms)).collect()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus exposition of SLO reports: Pitot's own `pitot_slo_*` gauges, and (when `sloth`)
/// the series Sloth's recording rules produce, under Sloth's names and labels, so Sloth's
/// Grafana dashboards and alert rules work against Pitot unchanged.
pub fn exposition(reports: &[SloReport], sloth: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut family = |name: &str, help: &str, rows: &mut dyn Iterator<Item = (String, f64)>| {
        let _w = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in rows {
            let _w = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let base = |r: &SloReport| format!("slo=\"{}\"", escape(&r.name));
    family(
        "pitot_slo_sli_ratio",
        "Good events over all events in the SLO window (1 without traffic).",
        &mut reports.iter().map(|r| (base(r), r.sli)),
    );
    family(
        "pitot_slo_objective_ratio",
        "The SLO's objective.",
        &mut reports.iter().map(|r| (base(r), r.objective)),
    );
    family(
        "pitot_slo_error_budget_remaining_ratio",
        "1 - consumed / allowed bad events in the window (negative when overspent).",
        &mut reports.iter().map(|r| {
            let v = r.error_budget.remaining;
            (base(r), if v.is_finite() { v } else { -1e9 })
        }),
    );
    family(
        "pitot_slo_burn_rate",
        "Error ratio over a lookback divided by the error budget ratio.",
        &mut reports.iter().flat_map(|r| {
            r.burn_rates
                .iter()
                .map(move |(w, v)| (format!("{},window=\"{w}\"", base(r)), *v))
        }),
    );
    family(
        "pitot_slo_uncertain_events",
        "Bad events in scraped buckets straddling the latency threshold: the true good count \
         is at most this many more (latency SLOs over classic histograms only).",
        &mut reports
            .iter()
            .filter_map(|r| r.uncertain.map(|u| (base(r), u as f64))),
    );
    family(
        "pitot_slo_alert",
        "1 for the SLO's current multiwindow alert state.",
        &mut reports.iter().flat_map(|r| {
            ["ok", "ticket", "page"].into_iter().map(move |s| {
                let now = match r.alert {
                    Alert::Ok => "ok",
                    Alert::Ticket => "ticket",
                    Alert::Page => "page",
                };
                (
                    format!("{},state=\"{s}\"", base(r)),
                    f64::from(u8::from(now == s)),
                )
            })
        }),
    );
    if !sloth {
        return out;
    }
    let ids = |r: &SloReport| {
        format!(
            "sloth_id=\"{}-{}\",sloth_service=\"{}\",sloth_slo=\"{}\"",
            escape(&r.service),
            escape(&r.name),
            escape(&r.service),
            escape(&r.name)
        )
    };
    let budget = |r: &SloReport| 1.0 - r.objective;
    let period = |r: &SloReport| if r.total == 0 { 0.0 } else { 1.0 - r.sli };
    for (label, _) in BURN_WINDOWS {
        family(
            &format!("slo:sli_error:ratio_rate{label}"),
            &format!("Error ratio over the last {label} (Sloth-compatible)."),
            &mut reports.iter().map(|r| {
                let burn = r.burn_rates.get(label).copied().unwrap_or(0.0);
                (
                    format!("{},sloth_window=\"{label}\"", ids(r)),
                    burn * budget(r),
                )
            }),
        );
    }
    // Sloth names the period series after the window; `month` has no fixed length.
    let mut periods: BTreeMap<String, Vec<&SloReport>> = BTreeMap::new();
    for r in reports {
        periods.entry(r.window.clone()).or_default().push(r);
    }
    for (window, rs) in &periods {
        if BURN_WINDOWS.iter().any(|(l, _)| l == window) {
            continue; // already published above under the same name
        }
        family(
            &format!("slo:sli_error:ratio_rate{window}"),
            &format!("Error ratio over the SLO period {window} (Sloth-compatible)."),
            &mut rs
                .iter()
                .map(|r| (format!("{},sloth_window=\"{window}\"", ids(r)), period(r))),
        );
    }
    family(
        "slo:objective:ratio",
        "The SLO's objective (Sloth-compatible).",
        &mut reports.iter().map(|r| (ids(r), r.objective)),
    );
    family(
        "slo:error_budget:ratio",
        "1 - objective (Sloth-compatible).",
        &mut reports.iter().map(|r| (ids(r), budget(r))),
    );
    family(
        "slo:time_period:days",
        "The SLO period in days (Sloth-compatible).",
        &mut reports.iter().map(|r| {
            let days = r
                .window
                .strip_suffix('d')
                .and_then(|d| d.parse::<f64>().ok())
                .unwrap_or(30.0);
            (ids(r), days)
        }),
    );
    family(
        "slo:current_burn_rate:ratio",
        "Burn rate over the last 5m (Sloth-compatible).",
        &mut reports
            .iter()
            .map(|r| (ids(r), r.burn_rates.get("5m").copied().unwrap_or(0.0))),
    );
    family(
        "slo:period_burn_rate:ratio",
        "Burn rate over the SLO period (Sloth-compatible).",
        &mut reports.iter().map(|r| (ids(r), period(r) / budget(r))),
    );
    family(
        "slo:period_error_budget_remaining:ratio",
        "1 - period burn rate (Sloth-compatible).",
        &mut reports
            .iter()
            .map(|r| (ids(r), 1.0 - period(r) / budget(r))),
    );
    family(
        "sloth_slo_info",
        "SLO metadata (Sloth-compatible).",
        &mut reports.iter().map(|r| {
            (
                format!(
                    "{},sloth_mode=\"pitot\",sloth_objective=\"{}\",sloth_version=\"{}\"",
                    ids(r),
                    r.objective * 100.0,
                    env!("CARGO_PKG_VERSION")
                ),
                1.0,
            )
        }),
    );
    out
}

#[cfg(test)]
mod tests;
