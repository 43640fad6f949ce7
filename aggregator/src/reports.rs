//! Reports: load buckets from the store, merge them per group, and compute what the API
//! returns. The math (quantiles, merge) lives in `pitot_shared`; this module only chooses the
//! resolution, groups series, and shapes the answers.
//!
//! Ranges are widened to whole buckets: a query over `[from, to)` reads every bucket of the
//! chosen resolution whose start lies in `[align_down(from), to)`. The resolution is the finest
//! whose retention still covers `from`.

use std::collections::BTreeMap;

use pitot_shared::batch::SeriesData;
use pitot_shared::buckets::BucketHistogram;
use pitot_shared::categorical::{self, Categorical};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::Kind;
use pitot_shared::window::align_down;
use serde::{Deserialize, Serialize};

use crate::links::{LinkState, Links, RefusedGroup};

use crate::model::{Resolution, rfc3339};
use crate::store::{Store, StoreError, group_series, sum_buckets};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The query is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// Nothing matches (404).
    #[error("{0}")]
    NotFound(String),
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A parsed query over one metric.
#[derive(Debug, Clone)]
pub struct MetricQuery {
    /// Metric name.
    pub metric: String,
    /// `tag=k:v` filters.
    pub filters: Vec<(String, String)>,
    /// Range start, Unix ms.
    pub from_ms: i64,
    /// Range end (exclusive), Unix ms.
    pub to_ms: i64,
    /// Tags to group by (`group_by=host,model`); empty for fleet only.
    pub group_by: Vec<String>,
}

/// Summary of a merged histogram (one group, or the fleet).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistogramSummary {
    /// Tags that define the group (absent for the fleet).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub tags: BTreeMap<String, String>,
    /// Observations.
    pub count: u64,
    /// Sum.
    pub sum: f64,
    /// Minimum (null when empty).
    pub min: Option<f64>,
    /// Maximum (null when empty).
    pub max: Option<f64>,
    /// Mean (null when empty).
    pub mean: Option<f64>,
    /// Quantile → value, keys as asked.
    pub quantiles: BTreeMap<String, Option<f64>>,
    /// Classic (scraped) histograms only: the quantiles are estimates inside the bucket that
    /// must hold them, given here as `[lo, hi]` per quantile.
    /// (Not read back by clients: `+Inf` is `null` in JSON.)
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub quantile_bounds: Option<BTreeMap<String, Option<(f64, f64)>>>,
    /// Classic histograms only: their bucket layouts and counts, as scraped and merged.
    /// (Not read back by clients: `+Inf` is `null` in JSON.)
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub buckets: Option<Vec<pitot_shared::buckets::Layout>>,
    /// True when the quantiles are bucket-bounded estimates (classic histograms).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub approximate: bool,
}

/// `GET /api/v1/quantiles`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuantileReport {
    /// Metric.
    pub metric: String,
    /// Range start (RFC 3339).
    pub from: String,
    /// Range end (RFC 3339).
    pub to: String,
    /// Resolution used.
    pub resolution: String,
    /// The values' unit when the metric's name says it (`null`: as the clients sent them).
    pub unit: Option<String>,
    /// Series merged.
    pub series: usize,
    /// The whole fleet.
    pub fleet: HistogramSummary,
    /// Per `group_by` value.
    pub groups: Vec<HistogramSummary>,
    /// Coarsened batches overlapping the range (absent when none; see [`CoarseSpan`]).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub coarsened: Vec<CoarseSpan>,
}

/// A batch longer than a finest bucket (its agent's spool coarsened it during an outage, or the
/// agent's interval is long) that overlaps a range. It was filed whole in the bucket of its
/// start: a range that cuts through it counts all of it or none of it, and per-bucket series
/// show its values in its first bucket only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CoarseSpan {
    /// The agent that sent it.
    pub agent: String,
    /// Its start (RFC 3339), where its values are filed.
    pub from: String,
    /// Its end (RFC 3339).
    pub to: String,
}

fn coarse_spans(
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<CoarseSpan>, ReportError> {
    Ok(store
        .coarse_spans(from_ms, to_ms)?
        .into_iter()
        .map(|(agent, start, end)| CoarseSpan {
            agent,
            from: rfc3339(start),
            to: rfc3339(end),
        })
        .collect())
}

/// Totals of a counter (one group, or the fleet).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CounterSummary {
    /// Tags that define the group (absent for the fleet).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub tags: BTreeMap<String, String>,
    /// Total over the range.
    pub total: f64,
    /// Total divided by the range's length in seconds.
    pub per_second: f64,
}

/// `GET /api/v1/counters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CounterReport {
    /// Metric.
    pub metric: String,
    /// Range start (RFC 3339).
    pub from: String,
    /// Range end (RFC 3339).
    pub to: String,
    /// Resolution used.
    pub resolution: String,
    /// The unit of what is counted when the metric's name says it (`null`: as sent).
    pub unit: Option<String>,
    /// Series summed.
    pub series: usize,
    /// The whole fleet.
    pub fleet: CounterSummary,
    /// Per `group_by` value.
    pub groups: Vec<CounterSummary>,
    /// Coarsened batches overlapping the range (absent when none; see [`CoarseSpan`]).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub coarsened: Vec<CoarseSpan>,
}

/// One group's category counts (`GET /api/v1/categories`).
#[derive(Debug, Clone, Serialize)]
pub struct CategorySummary {
    /// The group's tags (empty for the fleet).
    pub tags: BTreeMap<String, String>,
    /// Observations, exact.
    pub total: u64,
    /// Count per value kept (the top values per series, exact).
    pub values: BTreeMap<String, u64>,
    /// Observations of values beyond the per-series limit (`__other__`).
    pub other: u64,
}

/// `GET /api/v1/categories`.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryReport {
    /// Metric.
    pub metric: String,
    /// Range start (RFC 3339).
    pub from: String,
    /// Range end (RFC 3339).
    pub to: String,
    /// Resolution used.
    pub resolution: String,
    /// Series summed.
    pub series: usize,
    /// The whole fleet.
    pub fleet: CategorySummary,
    /// Per `group_by` value.
    pub groups: Vec<CategorySummary>,
}

/// Series of a window at one resolution (the finest that covers it), each summed over the
/// window's buckets: what the models report and the gate read.
#[derive(Debug)]
pub struct WindowReader<'a> {
    store: &'a dyn Store,
    res: Resolution,
    from_ms: i64,
    to_ms: i64,
}

impl<'a> WindowReader<'a> {
    /// A reader of `[from_ms, to_ms)` as of `now_ms`.
    pub fn new(store: &'a dyn Store, from_ms: i64, to_ms: i64, now_ms: i64) -> Self {
        WindowReader {
            store,
            res: choose_resolution(store.resolutions(), from_ms, now_ms),
            from_ms,
            to_ms,
        }
    }

    /// Every series of `metric` under `filters` with its data summed over the window (series
    /// without data in it are left out).
    pub fn each(
        &self,
        metric: &str,
        filters: &[(String, String)],
    ) -> Result<Vec<(pitot_shared::series::SeriesKey, SeriesData)>, ReportError> {
        let mut out = Vec::new();
        let from = align_down(self.from_ms, self.res.bucket_ms());
        let (to, span) = (self.to_ms, self.to_ms - from);
        for (key, _) in self.store.series(Some(metric), filters)? {
            if let Some(d) = sum_buckets(self.store.read_binned(&key, &self.res, from, to, span)?) {
                out.push((key, d));
            }
        }
        Ok(out)
    }
}

/// Most buckets per series a range is read in: a longer range reads the next coarser
/// resolution (30 days at 1 h, not 43 200 one-minute buckets per series). Sums stay exact; the
/// range's start is then aligned down to the coarser bucket (the report's `resolution` says
/// which), as the SLO engine's lookbacks do.
pub const MAX_BUCKETS: i64 = 3_000;

/// The finest resolution whose retention covers `from_ms` and that reads at most
/// `MAX_BUCKETS` buckets per series up to `now_ms` (else the coarsest that covers; the coarsest
/// when none does).
pub fn choose_resolution(resolutions: &[Resolution], from_ms: i64, now_ms: i64) -> Resolution {
    let span = (now_ms - from_ms).max(0);
    let covering: Vec<&Resolution> = resolutions
        .iter()
        .filter(|r| now_ms - (r.retention.as_millis() as i64) <= from_ms)
        .collect();
    covering
        .iter()
        .find(|r| span / (r.bucket_ms() as i64).max(1) <= MAX_BUCKETS)
        .or(covering.last())
        .copied()
        .or(resolutions.last())
        .copied()
        .unwrap_or(Resolution {
            code: 0,
            bucket: std::time::Duration::from_secs(10),
            retention: std::time::Duration::from_secs(86_400),
        })
}

fn group_tags(group_by: &[String], values: &[String]) -> BTreeMap<String, String> {
    group_by
        .iter()
        .cloned()
        .zip(values.iter().cloned())
        .collect()
}

/// Series data of one query, loaded and summed per series, grouped by `group_by` values.
struct Loaded {
    /// The kind every matched series has.
    kind: Kind,
    resolution: Resolution,
    groups: BTreeMap<Vec<String>, Vec<SeriesData>>,
    series: usize,
}

/// Why a query matched no series: the name is unknown (new data shows up only when an
/// agent's interval closes), or the name is known and the filters exclude it.
fn not_found(store: &dyn Store, q: &MetricQuery) -> Result<String, ReportError> {
    if q.filters.is_empty() || store.series(Some(&q.metric), &[])?.is_empty() {
        return Ok(format!(
            "no series named `{}` yet. Agents send what they received when each interval \
             closes (`interval`, 10 s by default) and the batch arrives a moment later, so data \
             sent just now appears within about one interval; check the name with \
             /api/v1/series?match={} or `pitot report agents`",
            q.metric, q.metric
        ));
    }
    let filters: Vec<String> = q.filters.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    Ok(format!(
        "series named `{}` exist, but none has the tags {}; see /api/v1/series?match={}",
        q.metric,
        filters.join(", "),
        q.metric
    ))
}

/// Loads the series of `q`, which must all have one kind among `want`.
fn load_kind(store: &dyn Store, q: &MetricQuery, want: &[Kind]) -> Result<Loaded, ReportError> {
    let series = store.series(Some(&q.metric), &q.filters)?;
    if series.is_empty() {
        return Err(ReportError::NotFound(not_found(store, q)?));
    }
    if let Some(missing) = q
        .group_by
        .iter()
        .find(|g| !series.iter().any(|(key, _)| key.tag(g).is_some()))
    {
        let mut tags: Vec<&str> = series
            .iter()
            .flat_map(|(key, _)| key.tags().iter().map(|(k, _)| k.as_str()))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        return Err(ReportError::BadRequest(format!(
            "group_by `{missing}`: no `{}` series has that tag; its tags are {}",
            q.metric,
            tags.join(", ")
        )));
    }
    let first = series[0].1;
    if let Some((_, kind)) = series
        .iter()
        .find(|(_, k)| *k != first || !want.contains(k))
    {
        return Err(ReportError::BadRequest(format!(
            "`{}` is a {} series; use the {} endpoint",
            q.metric,
            kind.as_str(),
            match kind {
                Kind::Counter => "counters",
                Kind::Categorical => "categories",
                _ => "quantiles (histogram and buckets series)",
            }
        )));
    }
    let count = series.len();
    let res = choose_resolution(store.resolutions(), q.from_ms, q.to_ms);
    let from = align_down(q.from_ms, res.bucket_ms());
    let mut groups: BTreeMap<Vec<String>, Vec<SeriesData>> = BTreeMap::new();
    for (group, keys) in group_series(series, &q.group_by) {
        for key in keys {
            let span = q.to_ms - from;
            if let Some(data) = sum_buckets(store.read_binned(&key, &res, from, q.to_ms, span)?) {
                groups.entry(group.clone()).or_default().push(data);
            }
        }
    }
    Ok(Loaded {
        kind: first,
        resolution: res,
        groups,
        series: count,
    })
}

fn summarize(
    h: &ValueHistogram,
    qs: &[(String, f64)],
    tags: BTreeMap<String, String>,
) -> HistogramSummary {
    HistogramSummary {
        tags,
        count: h.count(),
        sum: h.sum(),
        min: h.min(),
        max: h.max(),
        mean: h.mean(),
        quantiles: qs
            .iter()
            .map(|(label, q)| (label.clone(), h.quantile(*q)))
            .collect(),
        quantile_bounds: None,
        buckets: None,
        approximate: false,
    }
}

fn summarize_buckets(
    h: &BucketHistogram,
    qs: &[(String, f64)],
    tags: BTreeMap<String, String>,
) -> HistogramSummary {
    let count = h.count();
    type Answer = Option<(f64, f64, f64)>;
    let answers: Vec<(String, Answer)> = qs
        .iter()
        .map(|(label, q)| (label.clone(), h.quantile(*q)))
        .collect();
    HistogramSummary {
        tags,
        count,
        sum: h.sum(),
        min: None,
        max: None,
        mean: (count > 0).then(|| h.sum() / count as f64),
        quantiles: answers
            .iter()
            .map(|(l, a)| (l.clone(), a.map(|(e, _, _)| e)))
            .collect(),
        quantile_bounds: Some(
            answers
                .iter()
                .map(|(l, a)| (l.clone(), a.map(|(_, lo, hi)| (lo, hi))))
                .collect(),
        ),
        buckets: Some(h.layouts().to_vec()),
        approximate: true,
    }
}

/// Adds `d` into `acc` (histograms, or bucket layouts, add).
fn add(acc: &mut Option<SeriesData>, d: SeriesData) -> Result<(), ReportError> {
    match acc {
        Some(a) => a
            .merge(&d)
            .map_err(|e| ReportError::BadRequest(e.to_string())),
        None => {
            *acc = Some(d);
            Ok(())
        }
    }
}

/// Merged quantiles per group and fleet-wide: exact for histogram series, bucket-bounded
/// estimates for classic (scraped) histograms.
pub fn quantiles(
    store: &dyn Store,
    q: &MetricQuery,
    qs: &[(String, f64)],
) -> Result<QuantileReport, ReportError> {
    let Loaded {
        kind,
        resolution: res,
        groups,
        series,
    } = load_kind(store, q, &[Kind::Histogram, Kind::Buckets])?;
    let summary = |d: Option<&SeriesData>, tags: BTreeMap<String, String>| match d {
        Some(SeriesData::Buckets(b)) => summarize_buckets(b, qs, tags),
        Some(SeriesData::Histogram(h)) => summarize(h, qs, tags),
        _ if kind == Kind::Buckets => summarize_buckets(&BucketHistogram::default(), qs, tags),
        _ => summarize(&ValueHistogram::new(), qs, tags),
    };
    let mut fleet = None;
    let mut out = Vec::new();
    for (group, datas) in groups {
        let mut acc = None;
        for d in datas {
            add(&mut acc, d)?;
        }
        if let Some(a) = &acc {
            add(&mut fleet, a.clone())?;
        }
        if !q.group_by.is_empty() {
            out.push(summary(acc.as_ref(), group_tags(&q.group_by, &group)));
        }
    }
    Ok(QuantileReport {
        metric: q.metric.clone(),
        from: rfc3339(q.from_ms),
        to: rfc3339(q.to_ms),
        resolution: res.label(),
        unit: crate::units::unit(&q.metric).map(str::to_owned),
        series,
        fleet: summary(fleet.as_ref(), BTreeMap::new()),
        groups: out,
        coarsened: coarse_spans(store, q.from_ms, q.to_ms)?,
    })
}

/// One group's quantiles over time (`quantile_series`).
#[derive(Debug, Clone, Serialize)]
pub struct QuantileLine {
    /// The group's tags.
    pub tags: BTreeMap<String, String>,
    /// Width of a step.
    pub step_ms: i64,
    /// Per step with data: its start (Unix ms), count and quantiles (in the order asked).
    pub points: Vec<(i64, u64, Vec<Option<f64>>)>,
}

/// Quantiles of `q`'s histogram series per group over `steps` equal steps of its range:
/// each series read once at the range's resolution, its buckets merged exactly into the
/// step they start in (what the report page draws). Steps without data are left out.
pub fn quantile_series(
    store: &dyn Store,
    q: &MetricQuery,
    qs: &[f64],
    steps: usize,
) -> Result<Vec<QuantileLine>, ReportError> {
    let series = store.series(Some(&q.metric), &q.filters)?;
    let steps = steps.max(1) as i64;
    // The coarsest resolution that covers the range and fits a step (fewest buckets read).
    let res = store
        .resolutions()
        .iter()
        .rev()
        .find(|r| {
            q.to_ms - (r.retention.as_millis() as i64) <= q.from_ms
                && r.bucket_ms() as i64 <= (q.to_ms - q.from_ms) / steps
        })
        .copied()
        .unwrap_or_else(|| choose_resolution(store.resolutions(), q.from_ms, q.to_ms));
    let from = align_down(q.from_ms, res.bucket_ms());
    let span = (q.to_ms - from).max(1);
    // Whole buckets per step: each bucket falls in exactly one step, and a step is a range
    // the quantiles endpoint can be asked for.
    let bucket = (res.bucket_ms() as i64).max(1);
    let per_step = (span + steps - 1) / steps;
    let step_ms = (per_step + bucket - 1) / bucket * bucket;
    let mut out = Vec::new();
    for (group, keys) in group_series(series, &q.group_by) {
        let bins = histogram_bins(store, &keys, &res, (from, q.to_ms), step_ms)?;
        if bins.is_empty() {
            continue;
        }
        out.push(QuantileLine {
            tags: group_tags(&q.group_by, &group),
            step_ms,
            points: bins
                .into_iter()
                .map(|(t, h)| (t, h.count(), qs.iter().map(|x| h.quantile(*x)).collect()))
                .collect(),
        });
    }
    Ok(out)
}

/// Threads that read one group's series at most; fewer than [`PARALLEL_SERIES`] series are
/// read on the calling thread.
const READ_THREADS: usize = 4;
const PARALLEL_SERIES: usize = 16;

/// `work` applied to `items` split into up to `threads` contiguous shares (fewer when the
/// machine has fewer cores), each on its own scoped thread; the results in the items' order.
/// A panic in a share is resumed on the caller.
pub(crate) fn on_threads<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(threads)
        .max(1);
    if threads < 2 || items.len() < 2 {
        return vec![work(items)];
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|share| scope.spawn(move || work(share)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The histograms of `keys` summed per bin of `step_ms` over `range`. A group of many series
/// (a fleet's hosts) is split over up to [`READ_THREADS`] threads, each summing its share:
/// histograms add exactly and in any order, so the split changes no count. Only counts past
/// 2^64 make a merge fail; that series' part of the bin is then skipped.
fn histogram_bins(
    store: &dyn Store,
    keys: &[pitot_shared::series::SeriesKey],
    res: &Resolution,
    (from, to): (i64, i64),
    step_ms: i64,
) -> Result<BTreeMap<i64, ValueHistogram>, StoreError> {
    let sum = |keys: &[pitot_shared::series::SeriesKey]| -> Result<BTreeMap<i64, ValueHistogram>, StoreError> {
        let mut bins: BTreeMap<i64, ValueHistogram> = BTreeMap::new();
        for key in keys {
            for (bin, data) in store.read_binned(key, res, from, to, step_ms)? {
                if let SeriesData::Histogram(h) = data {
                    let _overflow = bins.entry(bin).or_default().merge(&h);
                }
            }
        }
        Ok(bins)
    };
    if keys.len() < PARALLEL_SERIES {
        return sum(keys);
    }
    let parts = on_threads(keys, READ_THREADS, sum);
    let mut total: BTreeMap<i64, ValueHistogram> = BTreeMap::new();
    for part in parts {
        for (bin, h) in part? {
            let _overflow = total.entry(bin).or_default().merge(&h);
        }
    }
    Ok(total)
}

/// Counter totals and rates per group and fleet-wide.
pub fn counters(store: &dyn Store, q: &MetricQuery) -> Result<CounterReport, ReportError> {
    let Loaded {
        resolution: res,
        groups,
        series,
        ..
    } = load_kind(store, q, &[Kind::Counter])?;
    let seconds = ((q.to_ms - q.from_ms) as f64 / 1000.0).max(0.001);
    let mut fleet_total = 0.0;
    let mut out = Vec::new();
    for (group, datas) in groups {
        let total: f64 = datas
            .iter()
            .map(|d| match d {
                SeriesData::Counter(c) => *c,
                _ => 0.0,
            })
            .sum();
        fleet_total += total;
        if !q.group_by.is_empty() {
            out.push(CounterSummary {
                tags: group_tags(&q.group_by, &group),
                total,
                per_second: total / seconds,
            });
        }
    }
    Ok(CounterReport {
        metric: q.metric.clone(),
        from: rfc3339(q.from_ms),
        to: rfc3339(q.to_ms),
        resolution: res.label(),
        unit: crate::units::unit(&q.metric).map(str::to_owned),
        series,
        fleet: CounterSummary {
            tags: BTreeMap::new(),
            total: fleet_total,
            per_second: fleet_total / seconds,
        },
        groups: out,
        coarsened: coarse_spans(store, q.from_ms, q.to_ms)?,
    })
}

/// Category counts of a categorical series (DogStatsD sets), per group and fleet-wide.
pub fn categories(store: &dyn Store, q: &MetricQuery) -> Result<CategoryReport, ReportError> {
    let Loaded {
        resolution: res,
        groups,
        series,
        ..
    } = load_kind(store, q, &[Kind::Categorical])?;
    let summary = |c: &Categorical, tags| CategorySummary {
        tags,
        total: c.total(),
        values: c.counts().clone(),
        other: c.other(),
    };
    let mut fleet = Categorical::new();
    let mut out = Vec::new();
    for (group, datas) in groups {
        let mut acc = Categorical::new();
        for d in &datas {
            if let SeriesData::Categorical(c) = d {
                acc.merge(c, categorical::DEFAULT_LIMIT);
            }
        }
        fleet.merge(&acc, categorical::DEFAULT_LIMIT);
        if !q.group_by.is_empty() {
            out.push(summary(&acc, group_tags(&q.group_by, &group)));
        }
    }
    Ok(CategoryReport {
        metric: q.metric.clone(),
        from: rfc3339(q.from_ms),
        to: rfc3339(q.to_ms),
        resolution: res.label(),
        series,
        fleet: summary(&fleet, BTreeMap::new()),
        groups: out,
    })
}

/// `GET /api/v1/series`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesList {
    /// The series that match.
    pub series: Vec<SeriesInfo>,
}

/// One known series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesInfo {
    /// Metric name.
    pub metric: String,
    /// `histogram`, `counter` or `categorical`.
    pub kind: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// Series matching a name (or `prefix*`) and tag filters.
pub fn series(
    store: &dyn Store,
    name: Option<&str>,
    filters: &[(String, String)],
) -> Result<Vec<SeriesInfo>, ReportError> {
    Ok(store
        .series(name, filters)?
        .into_iter()
        .map(|(key, kind)| SeriesInfo {
            metric: key.name().to_owned(),
            kind: kind.as_str().to_owned(),
            tags: key.tags().iter().cloned().collect(),
        })
        .collect())
}

/// `GET /api/v1/agents`: the agents and the connections refused before an agent session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentsReport {
    /// Every agent seen, by id.
    pub agents: Vec<AgentInfo>,
    /// Refused connections, newest first.
    pub refused: Vec<RefusedGroup>,
}

/// One agent, as `/api/v1/agents` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent id (from its certificate).
    pub id: String,
    /// The host it runs on (its id; the `host` tag of its series).
    pub host: String,
    /// Build version.
    pub version: String,
    /// First batch, RFC 3339.
    pub first_seen: String,
    /// Last batch received, RFC 3339; `null` when it has delivered none yet.
    pub last_batch_time: Option<String>,
    /// Seconds since the last batch arrived; `null` when none has.
    pub last_batch_age_seconds: Option<f64>,
    /// Delivery lag of the last batch: from its interval's end to its arrival here, seconds
    /// (the agent's `pitot.agent.uplink.lag_seconds` measures the same to the acknowledgement).
    pub lag_seconds: f64,
    /// Spool bytes reported in the last batch.
    pub spool_bytes: u64,
    /// Batches merged.
    pub batches: u64,
    /// Replays acknowledged without merging.
    pub duplicates: u64,
    /// What was lost on the way to this agent over the report's window.
    pub loss: AgentLoss,
    /// Its link to this aggregator now.
    pub connection: LinkState,
}

/// Everything the agent and its DogStatsD clients counted as lost or refused over a window,
/// read from the `pitot.agent.*` series, so "did anything get lost?" has one answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentLoss {
    /// Window start (RFC 3339).
    pub from: String,
    /// Lines the agent refused as malformed (`pitot.agent.dogstatsd.malformed`).
    pub malformed_lines: f64,
    /// Lines dropped by a limit or cut from an over-long datagram
    /// (`pitot.agent.dogstatsd.dropped`).
    pub dropped_lines: f64,
    /// UDP datagrams the kernel dropped before the agent read them
    /// (`pitot.agent.dogstatsd.kernel_drops`).
    pub kernel_dropped_datagrams: f64,
    /// Batches that could not be spooled (`pitot.agent.spool.append_failures`).
    pub unspooled_batches: f64,
    /// Spooled batches found damaged and set aside (`pitot.agent.spool.damaged`).
    #[serde(default)]
    pub damaged_batches: f64,
    /// Packets the DogStatsD clients report they dropped (`pitot.agent.client.packets_dropped`,
    /// from the clients' own telemetry).
    pub client_dropped_packets: f64,
    /// Their bytes (`pitot.agent.client.bytes_dropped`).
    pub client_dropped_bytes: f64,
    /// True when any of the above is not zero.
    pub any: bool,
}

/// Totals of counter `metric` per host over `[from, to)`, in one query (empty when the
/// metric has no series).
fn totals_by_host(
    store: &dyn Store,
    metric: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<String, f64>, ReportError> {
    let q = MetricQuery {
        metric: metric.to_owned(),
        filters: Vec::new(),
        from_ms,
        to_ms,
        group_by: vec!["host".to_owned()],
    };
    match counters(store, &q) {
        Ok(r) => Ok(r
            .groups
            .into_iter()
            .filter_map(|g| Some((g.tags.get("host")?.clone(), g.total)))
            .collect()),
        Err(ReportError::NotFound(_)) => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// Every agent's losses over `[from, to)`: one query per kind of loss, not per agent.
fn losses(
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<impl Fn(&str) -> AgentLoss, ReportError> {
    let kinds = [
        "pitot.agent.dogstatsd.malformed",
        "pitot.agent.dogstatsd.dropped",
        "pitot.agent.dogstatsd.kernel_drops",
        "pitot.agent.spool.append_failures",
        "pitot.agent.client.packets_dropped",
        "pitot.agent.client.bytes_dropped",
        "pitot.agent.spool.damaged",
    ];
    let mut totals = Vec::with_capacity(kinds.len());
    for metric in kinds {
        totals.push(totals_by_host(store, metric, from_ms, to_ms)?);
    }
    let from = rfc3339(from_ms);
    Ok(move |host: &str| {
        let t: Vec<f64> = totals
            .iter()
            .map(|m| m.get(host).copied().unwrap_or(0.0))
            .collect();
        AgentLoss {
            from: from.clone(),
            malformed_lines: t[0],
            dropped_lines: t[1],
            kernel_dropped_datagrams: t[2],
            unspooled_batches: t[3],
            client_dropped_packets: t[4],
            client_dropped_bytes: t[5],
            damaged_batches: t[6],
            any: t.iter().any(|v| *v > 0.0),
        }
    })
}

/// Every agent seen, with what it and its clients lost over `[from_ms, now_ms)` and its link.
/// An agent connected but with nothing delivered yet is listed with zero batches and its
/// connection time as `first_seen`.
pub fn agents(
    store: &dyn Store,
    links: &Links,
    from_ms: i64,
    now_ms: i64,
) -> Result<Vec<AgentInfo>, ReportError> {
    let loss = losses(store, from_ms, now_ms)?;
    let known = store.agents()?;
    let mut out: Vec<AgentInfo> = known
        .into_iter()
        .map(|a| AgentInfo {
            connection: links.state(&a.agent_id, rfc3339),
            loss: loss(&a.agent_id),
            host: a.agent_id.clone(),
            id: a.agent_id,
            version: a.version,
            first_seen: rfc3339(a.first_seen_ms),
            last_batch_time: Some(rfc3339(a.last_batch_ms)),
            last_batch_age_seconds: Some((now_ms - a.last_batch_ms).max(0) as f64 / 1000.0),
            lag_seconds: a.lag_ms as f64 / 1000.0,
            spool_bytes: a.spool_bytes,
            batches: a.batches,
            duplicates: a.duplicates,
        })
        .collect();
    for (id, version) in links.agents() {
        if out.iter().any(|a| a.id == id) {
            continue;
        }
        let connection = links.state(&id, rfc3339);
        out.push(AgentInfo {
            loss: loss(&id),
            host: id.clone(),
            first_seen: connection.since.clone().unwrap_or_default(),
            connection,
            id,
            version,
            last_batch_time: None,
            last_batch_age_seconds: None,
            lag_seconds: 0.0,
            spool_bytes: 0,
            batches: 0,
            duplicates: 0,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;
    use pitot_shared::series::SeriesKey;

    #[test]
    fn a_group_read_on_threads_sums_as_one_thread_would() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::parse("", std::path::Path::new("t.toml")).unwrap();
        let mut store = SledStore::open(dir.path(), cfg.store.resolutions.clone()).unwrap();
        let res = store.resolutions()[0];
        let step = res.bucket_ms() as i64;
        let t0 = 1_800_000_000_000 / step * step;
        let keys: Vec<SeriesKey> = (0..PARALLEL_SERIES + 5)
            .map(|h| SeriesKey::new("lat", vec![("host".into(), format!("h{h}"))]).unwrap())
            .collect();
        for (h, key) in keys.iter().enumerate() {
            for b in 0..12 {
                let mut hist = ValueHistogram::new();
                for i in 0..=(h + b) {
                    hist.record(1e-3 * (1 + i * 7 + h) as f64).unwrap();
                }
                let data = SeriesData::Histogram(hist);
                store
                    .import_bucket(key, &res, t0 + b as i64 * step, &data)
                    .unwrap();
            }
        }
        let range = (t0, t0 + 12 * step);
        let got = histogram_bins(&store, &keys, &res, range, 4 * step).unwrap();
        let mut want: BTreeMap<i64, ValueHistogram> = BTreeMap::new();
        for key in &keys {
            for (bin, data) in store
                .read_binned(key, &res, range.0, range.1, 4 * step)
                .unwrap()
            {
                if let SeriesData::Histogram(h) = data {
                    want.entry(bin).or_default().merge(&h).unwrap();
                }
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got, want);
        let all: u64 = got.values().map(ValueHistogram::count).sum();
        let expected: usize = (0..keys.len())
            .map(|h| (0..12).map(|b| h + b + 1).sum::<usize>())
            .sum();
        assert_eq!(all, expected as u64);
    }
}
