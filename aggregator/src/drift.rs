//! Drift reports: loads the two sides of each comparison from the store and calls
//! `pitot_shared::drift`; no math of its own.
//!
//! Series are grouped into *features*: a metric and its tags without `host` (and, in
//! `versions` mode, without `version`). Each feature gives one result per comparison:
//! - `temporal`: the whole fleet in the current window against the reference window;
//! - `hosts`: each host against the rest of the fleet (the others summed) in the current window.
//!   Hosts found drifting are left out of the rest, one at a time and most significant first,
//!   until no other host drifts against what remains: one outlier host must not make every
//!   other host look drifted (with three hosts, the rest of a healthy host is half outlier).
//!   With two hosts "against the rest" is symmetric and cannot say which one moved: the pair
//!   is compared, and when it differs each host is compared with its own history (the
//!   reference window); the one that moved against its history drifts, the other is OK, and
//!   when the history does not tell (none, both or neither moved) both rows say `differ`;
//! - `versions`: the series tagged `version:b` against those tagged `version:a`.
//!
//! Results are sorted by severity (drift, warn, ok), then by p-value. The Bonferroni
//! correction divides `alpha` by the number of results that have figures.

use std::collections::BTreeMap;

use pitot_shared::batch::SeriesData;
use pitot_shared::categorical::Categorical;
use pitot_shared::drift::{self, DriftConfig, Status};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::{Kind, SeriesKey};
use pitot_shared::window::align_down;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::rfc3339;
use crate::reports::{ReportError, choose_resolution};
use crate::store::{Store, sum_buckets};

/// Which comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Current window against a reference window, fleet-wide.
    Temporal {
        /// Reference start, Unix ms.
        ref_from_ms: i64,
        /// Reference end, Unix ms.
        ref_to_ms: i64,
    },
    /// Each host against the rest. With exactly two hosts the pair is compared, and each
    /// host's own history (`[history_from_ms, history_to_ms)`) says which one moved.
    Hosts {
        /// History start, Unix ms.
        history_from_ms: i64,
        /// History end, Unix ms.
        history_to_ms: i64,
    },
    /// `version:b` against `version:a`.
    Versions {
        /// The baseline version.
        a: String,
        /// The candidate version.
        b: String,
    },
}

/// A drift query.
#[derive(Debug, Clone)]
pub struct DriftQuery {
    /// The comparison.
    pub mode: Mode,
    /// One metric, or `None` for every series under the input prefix.
    pub metric: Option<String>,
    /// Tag filters.
    pub filters: Vec<(String, String)>,
    /// Current window start, Unix ms.
    pub from_ms: i64,
    /// Current window end, Unix ms.
    pub to_ms: i64,
}

/// `GET /api/v1/drift`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftReport {
    /// `temporal`, `hosts` or `versions`.
    pub mode: String,
    /// The current window.
    pub current: Window,
    /// Temporal mode: the reference window.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reference: Option<Window>,
    /// Comparisons with figures (the Bonferroni divisor).
    pub tests: usize,
    /// Most severe first.
    pub results: Vec<DriftResult>,
}

/// A time window (RFC 3339).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    /// Start.
    pub from: String,
    /// End.
    pub to: String,
}

/// One result row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftResult {
    /// Metric.
    pub metric: String,
    /// The feature's tags (without host, and without version in versions mode).
    pub tags: BTreeMap<String, String>,
    /// `histogram` or `categorical`.
    pub kind: String,
    /// In hosts mode, the host compared with the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// In hosts mode with two hosts, the other host (the "rest").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<String>,
    /// In versions mode, the baseline version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<String>,
    /// In versions mode, the candidate version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<String>,
    /// The figures (numeric or categorical), flattened into the row.
    #[serde(flatten)]
    pub figures: Value,
    /// `no_data`, `ok`, `warn`, `differ` or `drift`.
    pub status: Status,
    /// Why.
    pub reason: String,
    /// Hosts mode with two hosts: this host's current window against its own history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Value>,
    #[serde(skip)]
    p: f64,
}

impl DriftResult {
    /// A figure by name (`ks`, `psi`, `p_value`, …), when the row has it.
    pub fn figure(&self, name: &str) -> Option<f64> {
        self.figures.get(name).and_then(Value::as_f64)
    }

    /// An observation count (`reference_count`, `current_count`).
    pub fn count(&self, name: &str) -> Option<u64> {
        self.figures.get(name).and_then(Value::as_u64)
    }
}

/// Summed data of one side of a comparison.
#[derive(Debug, Clone)]
pub enum Side {
    /// A numeric input's histogram.
    Numeric(ValueHistogram),
    /// A categorical input's counts.
    Categorical(Categorical),
}

impl Side {
    /// An empty side of `kind`.
    pub fn empty(kind: Kind) -> Side {
        match kind {
            Kind::Categorical => Side::Categorical(Categorical::new()),
            _ => Side::Numeric(ValueHistogram::new()),
        }
    }

    fn add_side(&mut self, other: &Side) {
        match (self, other) {
            (Side::Numeric(h), Side::Numeric(x)) => {
                let _overflow = h.merge(x);
            }
            (Side::Categorical(c), Side::Categorical(x)) => c.merge(x, 64),
            _ => {}
        }
    }

    /// Adds one series' data.
    pub fn add(&mut self, data: &SeriesData) {
        match (self, data) {
            (Side::Numeric(h), SeriesData::Histogram(x)) => {
                let _overflow = h.merge(x);
            }
            (Side::Categorical(c), SeriesData::Categorical(x)) => c.merge(x, 64),
            _ => {}
        }
    }
}

/// A feature: a metric and its tags without `host` (and without `version` in versions mode).
type Feature = (String, BTreeMap<String, String>);

fn feature_of(key: &SeriesKey, drop_version: bool) -> Feature {
    let tags = key
        .tags()
        .iter()
        .filter(|(k, _)| k != "host" && !(drop_version && k == "version"))
        .cloned()
        .collect();
    (key.name().to_owned(), tags)
}

/// Loads the summed data of `series` over `[from, to)`.
fn load(
    store: &dyn Store,
    series: &SeriesKey,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<SeriesData>, ReportError> {
    let res = choose_resolution(store.resolutions(), from_ms, to_ms);
    let from = align_down(from_ms, res.bucket_ms());
    // One bin for the whole range: the stored histograms add from their bytes.
    let span = to_ms - from;
    Ok(sum_buckets(
        store.read_binned(series, &res, from, to_ms, span)?,
    ))
}

struct Pending {
    metric: String,
    tags: BTreeMap<String, String>,
    kind: Kind,
    host: Option<String>,
    reference: Side,
    current: Side,
    /// Two-host features: this host over the history window, and the pair's index.
    history: Option<(Side, usize)>,
    /// The comparison's figures when already computed (hosts mode's outlier passes).
    figures: Option<Option<Figures>>,
}

/// Builds the drift report.
pub fn report(
    store: &dyn Store,
    q: &DriftQuery,
    config: &DriftConfig,
    input_prefix: &str,
) -> Result<DriftReport, ReportError> {
    let features = load_features(store, q, input_prefix)?;
    Ok(compare(features, q, config))
}

/// One feature's data as loaded for a query's mode.
#[derive(Debug, Clone)]
pub struct LoadedFeature {
    /// Metric.
    pub metric: String,
    /// The feature's tags.
    pub tags: BTreeMap<String, String>,
    /// The series' kind.
    pub kind: Kind,
    /// Its sides.
    pub sides: Sides,
}

/// The data a comparison needs.
#[derive(Debug, Clone)]
pub enum Sides {
    /// Temporal (the reference window, the current one) or versions (`a`, `b`).
    Pair {
        /// Reference (or version `a`).
        reference: Box<Side>,
        /// Current (or version `b`).
        current: Box<Side>,
    },
    /// Hosts mode: each host's current window, and with exactly two hosts each one's history.
    Hosts {
        /// Per host, the current window.
        current: BTreeMap<String, Side>,
        /// Per host, the history window (two hosts only; empty otherwise).
        history: BTreeMap<String, Side>,
    },
}

/// Loads every feature of `q` (the only I/O of a drift report).
pub fn load_features(
    store: &dyn Store,
    q: &DriftQuery,
    input_prefix: &str,
) -> Result<Vec<LoadedFeature>, ReportError> {
    let pattern = match &q.metric {
        Some(m) => m.clone(),
        None => format!("{input_prefix}*"),
    };
    let series: Vec<(SeriesKey, Kind)> = store
        .series(Some(&pattern), &q.filters)?
        .into_iter()
        .filter(|(_, k)| matches!(k, Kind::Histogram | Kind::Categorical))
        .collect();
    if series.is_empty() {
        return Err(ReportError::NotFound(format!(
            "no histogram or categorical series matches `{pattern}` and the tag filters"
        )));
    }
    let versions = matches!(q.mode, Mode::Versions { .. });
    let mut features: BTreeMap<Feature, Vec<(SeriesKey, Kind)>> = BTreeMap::new();
    for (key, kind) in series {
        features
            .entry(feature_of(&key, versions))
            .or_default()
            .push((key, kind));
    }
    // Features load independently: they are split over threads, kept in order.
    let features: Vec<(Feature, Vec<(SeriesKey, Kind)>)> = features.into_iter().collect();
    let parts = crate::reports::on_threads(&features, LOAD_THREADS, |share| {
        share
            .iter()
            .map(|((metric, tags), members)| load_feature(store, q, metric, tags, members))
            .collect::<Vec<_>>()
    });
    let mut out = Vec::new();
    for loaded in parts.into_iter().flatten() {
        out.extend(loaded?);
    }
    Ok(out)
}

/// Threads that load a drift report's features at most.
const LOAD_THREADS: usize = 4;

/// One feature's sides for `q`'s mode; `None` when hosts mode finds fewer than two hosts.
fn load_feature(
    store: &dyn Store,
    q: &DriftQuery,
    metric: &str,
    tags: &BTreeMap<String, String>,
    members: &[(SeriesKey, Kind)],
) -> Result<Option<LoadedFeature>, ReportError> {
    let (metric, tags) = (metric.to_owned(), tags.clone());
    let kind = members[0].1;
    let members: Vec<&SeriesKey> = members
        .iter()
        .filter(|(_, k)| *k == kind)
        .map(|(s, _)| s)
        .collect();
    match &q.mode {
        Mode::Temporal {
            ref_from_ms,
            ref_to_ms,
        } => {
            let (mut cur, mut refr) = (Side::empty(kind), Side::empty(kind));
            for s in &members {
                if let Some(d) = load(store, s, q.from_ms, q.to_ms)? {
                    cur.add(&d);
                }
                if let Some(d) = load(store, s, *ref_from_ms, *ref_to_ms)? {
                    refr.add(&d);
                }
            }
            Ok(Some(LoadedFeature {
                metric,
                tags,
                kind,
                sides: Sides::Pair {
                    reference: Box::new(refr),
                    current: Box::new(cur),
                },
            }))
        }
        Mode::Hosts {
            history_from_ms,
            history_to_ms,
        } => {
            let mut per_host: BTreeMap<String, Side> = BTreeMap::new();
            for s in &members {
                let host = s.tag("host").unwrap_or_default().to_owned();
                if let Some(d) = load(store, s, q.from_ms, q.to_ms)? {
                    per_host
                        .entry(host)
                        .or_insert_with(|| Side::empty(kind))
                        .add(&d);
                }
            }
            let mut history: BTreeMap<String, Side> = BTreeMap::new();
            if per_host.len() == 2 {
                for host in per_host.keys() {
                    let mut h = Side::empty(kind);
                    for s in members
                        .iter()
                        .filter(|s| s.tag("host") == Some(host.as_str()))
                    {
                        if let Some(d) = load(store, s, *history_from_ms, *history_to_ms)? {
                            h.add(&d);
                        }
                    }
                    history.insert(host.clone(), h);
                }
            }
            Ok((per_host.len() >= 2).then_some(LoadedFeature {
                metric,
                tags,
                kind,
                sides: Sides::Hosts {
                    current: per_host,
                    history,
                },
            }))
        }
        Mode::Versions { a, b } => {
            let (mut sa, mut sb) = (Side::empty(kind), Side::empty(kind));
            for s in &members {
                let side = match s.tag("version") {
                    Some(v) if v == a => &mut sa,
                    Some(v) if v == b => &mut sb,
                    _ => continue,
                };
                if let Some(d) = load(store, s, q.from_ms, q.to_ms)? {
                    side.add(&d);
                }
            }
            Ok(Some(LoadedFeature {
                metric,
                tags,
                kind,
                sides: Sides::Pair {
                    reference: Box::new(sa),
                    current: Box::new(sb),
                },
            }))
        }
    }
}

/// The drift report from loaded features (pure): the comparisons of `q`'s mode, the
/// Bonferroni correction over all of them, two-host attribution, severity order.
pub fn compare(features: Vec<LoadedFeature>, q: &DriftQuery, config: &DriftConfig) -> DriftReport {
    let mut pending = Vec::new();
    let mut host_features = Vec::new();
    let mut pairs = 0usize;
    for f in features {
        let LoadedFeature {
            metric,
            tags,
            kind,
            sides,
        } = f;
        match sides {
            Sides::Pair { reference, current } => pending.push(Pending {
                metric,
                tags,
                kind,
                host: None,
                reference: *reference,
                current: *current,
                history: None,
                figures: None,
            }),
            Sides::Hosts {
                current: per_host,
                mut history,
            } if per_host.len() == 2 => {
                let pair = pairs;
                pairs += 1;
                let sides: Vec<(&String, &Side)> = per_host.iter().collect();
                for (i, (host, side)) in sides.iter().enumerate() {
                    let h = history.remove(*host).unwrap_or_else(|| Side::empty(kind));
                    pending.push(Pending {
                        metric: metric.clone(),
                        tags: tags.clone(),
                        kind,
                        host: Some((*host).clone()),
                        reference: sides[1 - i].1.clone(),
                        current: (*side).clone(),
                        history: Some((h, pair)),
                        figures: None,
                    });
                }
            }
            Sides::Hosts {
                current: per_host, ..
            } => host_features.push((metric, tags, kind, per_host)),
        }
    }
    // Hosts: each host against the rest of the clean hosts (`host_rows`).
    let host_tests: usize = host_features.iter().map(|f| f.3.len()).sum();
    // Features compare independently: they are split over threads, their rows kept in order.
    let parts = crate::reports::on_threads(&host_features, COMPARE_THREADS, |share| {
        share
            .iter()
            .flat_map(|feature| host_rows(feature, config, host_tests))
            .collect::<Vec<_>>()
    });
    pending.extend(parts.into_iter().flatten());
    // Figures first, so the Bonferroni correction knows how many tests the report makes.
    let figures: Vec<(Pending, Option<Figures>)> = pending
        .into_iter()
        .map(|mut p| {
            let f = match p.figures.take() {
                Some(known) => known,
                None => figures_of(&p.reference, &p.current),
            };
            (p, f)
        })
        .collect();
    // Two-host features add one history comparison per host.
    let tests = figures.iter().filter(|(_, f)| f.is_some()).count()
        + figures.iter().filter(|(p, _)| p.history.is_some()).count();
    let (a, b) = match &q.mode {
        Mode::Versions { a, b } => (Some(a.clone()), Some(b.clone())),
        _ => (None, None),
    };
    let rows: Vec<(DriftResult, Option<HistoryVerdict>)> = figures
        .into_iter()
        .map(|(p, f)| {
            let (status, reason, p_value, figures) = match f {
                Some(Figures::Numeric(d)) => {
                    let (status, reason) = drift::numeric_status(&d, config, tests);
                    let p_value = d.ks_p_value;
                    (
                        status,
                        reason,
                        p_value,
                        serde_json::to_value(d).unwrap_or(Value::Null),
                    )
                }
                Some(Figures::Categorical(d)) => {
                    let (status, reason) = drift::categorical_status(&d, config, tests);
                    let p_value = d.p_value;
                    (
                        status,
                        reason,
                        p_value,
                        serde_json::to_value(d).unwrap_or(Value::Null),
                    )
                }
                None => (
                    Status::NoData,
                    match (side_count(&p.reference), side_count(&p.current)) {
                        (0, 0) => "no data on either side".to_owned(),
                        (0, _) => "no data in the reference".to_owned(),
                        _ => "no data in the current window".to_owned(),
                    },
                    1.0,
                    json!({
                        "reference_count": side_count(&p.reference),
                        "current_count": side_count(&p.current),
                    }),
                ),
            };
            let history = p.history.as_ref().map(|(h, pair)| {
                let (status, reason, hp) = judge_with_reason(h, &p.current, config, tests);
                (*pair, status, reason, hp, side_count(h))
            });
            let row = DriftResult {
                metric: p.metric,
                tags: p.tags,
                kind: p.kind.as_str().to_owned(),
                host: p.host,
                a: a.clone(),
                b: b.clone(),
                figures,
                status,
                reason,
                history: None,
                against: None,
                p: p_value,
            };
            (row, history)
        })
        .collect();
    let mut results = attribute_pairs(rows, &q.mode);
    results.sort_by(|x, y| {
        y.status
            .cmp(&x.status)
            .then(x.p.total_cmp(&y.p))
            .then(x.metric.cmp(&y.metric))
    });
    let window = |from: i64, to: i64| Window {
        from: rfc3339(from),
        to: rfc3339(to),
    };
    DriftReport {
        mode: match q.mode {
            Mode::Temporal { .. } => "temporal",
            Mode::Hosts { .. } => "hosts",
            Mode::Versions { .. } => "versions",
        }
        .to_owned(),
        current: window(q.from_ms, q.to_ms),
        reference: match q.mode {
            Mode::Temporal {
                ref_from_ms,
                ref_to_ms,
            } => Some(window(ref_from_ms, ref_to_ms)),
            _ => None,
        },
        tests,
        results,
    }
}

/// Threads that compare a hosts report's features at most.
const COMPARE_THREADS: usize = 4;

/// A hosts-mode feature over three or more hosts: its metric, tags, kind and each host's side.
type HostFeature = (
    String,
    BTreeMap<String, String>,
    Kind,
    BTreeMap<String, Side>,
);

/// One hosts-mode feature's rows: each host against the rest, leaving hosts already found
/// drifting out of the rest (most significant first), so one outlier does not make every
/// other host look drifted.
fn host_rows(feature: &HostFeature, config: &DriftConfig, host_tests: usize) -> Vec<Pending> {
    let (metric, tags, kind, per_host) = feature;
    let kind = *kind;
    let mut pending = Vec::with_capacity(per_host.len());
    let mut flagged: Vec<String> = Vec::new();
    // The last pass's comparisons (rest, figures) per clean host, while no host has been
    // flagged since: the report's rows for clean hosts are exactly these.
    let mut last_pass: Option<BTreeMap<String, (Side, Option<Figures>)>> = None;
    loop {
        let clean: Vec<&String> = per_host.keys().filter(|h| !flagged.contains(h)).collect();
        if clean.len() < 2 {
            break;
        }
        let mut worst: Option<(String, f64)> = None;
        let sides: Vec<&Side> = clean.iter().map(|h| &per_host[*h]).collect();
        let mut pass = BTreeMap::new();
        for (host, rest) in clean.iter().zip(rests(kind, &sides)) {
            let figures = figures_of(&rest, &per_host[*host]);
            let (drifts, p) = judge_figures(figures.as_ref(), config, host_tests);
            if drifts && worst.as_ref().is_none_or(|(_, wp)| p < *wp) {
                worst = Some(((*host).clone(), p));
            }
            pass.insert((*host).clone(), (rest, figures));
        }
        match worst {
            Some((host, _)) => {
                flagged.push(host);
                last_pass = None;
            }
            None => {
                last_pass = Some(pass);
                break;
            }
        }
    }
    let mut last_pass = last_pass.unwrap_or_default();
    let clean: Vec<&String> = per_host.keys().filter(|h| !flagged.contains(h)).collect();
    let clean_sides: Vec<&Side> = clean.iter().map(|h| &per_host[*h]).collect();
    let mut clean_rests: BTreeMap<&String, Side> = if last_pass.is_empty() {
        clean
            .iter()
            .copied()
            .zip(rests(kind, &clean_sides))
            .collect()
    } else {
        BTreeMap::new()
    };
    // What flagged hosts are compared against; with none flagged it is not needed.
    let all_clean = (!flagged.is_empty()).then(|| sum_sides(kind, clean_sides.iter().copied()));
    for (host, side) in per_host {
        // A clean host against the other clean hosts; a flagged one against all of them.
        let (rest, figures) = match last_pass.remove(host) {
            Some((rest, figures)) => (rest, Some(figures)),
            None => (
                clean_rests
                    .remove(host)
                    .or_else(|| all_clean.clone())
                    .unwrap_or_else(|| Side::empty(kind)),
                None,
            ),
        };
        pending.push(Pending {
            metric: metric.clone(),
            tags: tags.clone(),
            kind,
            host: Some(host.clone()),
            reference: rest,
            current: side.clone(),
            history: None,
            figures,
        });
    }
    pending
}

/// Sums sides of one kind.
fn sum_sides<'a>(kind: Kind, sides: impl Iterator<Item = &'a Side>) -> Side {
    let mut out = Side::empty(kind);
    for side in sides {
        out.add_side(side);
    }
    out
}

/// For each side, the sum of all the others: prefix and suffix sums, so n sides cost about 3n
/// merges instead of n².
fn rests(kind: Kind, sides: &[&Side]) -> Vec<Side> {
    let n = sides.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(Side::empty(kind));
    for side in sides {
        let mut next = prefix[prefix.len() - 1].clone();
        next.add_side(side);
        prefix.push(next);
    }
    let mut out = vec![Side::empty(kind); n];
    let mut suffix = Side::empty(kind);
    for i in (0..n).rev() {
        let mut rest = prefix[i].clone();
        rest.add_side(&suffix);
        out[i] = rest;
        suffix.add_side(sides[i]);
    }
    out
}

/// The figures of one comparison; `None` when a side is empty or the kinds differ.
fn figures_of(reference: &Side, current: &Side) -> Option<Figures> {
    match (reference, current) {
        (Side::Numeric(r), Side::Numeric(c)) => drift::numeric(r, c).map(Figures::Numeric),
        (Side::Categorical(r), Side::Categorical(c)) => {
            drift::categorical(r, c).map(Figures::Categorical)
        }
        _ => None,
    }
}

/// Whether one comparison's figures drift in a report of `tests` comparisons, and its p-value
/// (1 without figures).
fn judge_figures(figures: Option<&Figures>, config: &DriftConfig, tests: usize) -> (bool, f64) {
    match figures {
        Some(Figures::Numeric(d)) => (drift::numeric_drifts(d, config, tests), d.ks_p_value),
        Some(Figures::Categorical(d)) => (drift::categorical_drifts(d, config, tests), d.p_value),
        None => (false, 1.0),
    }
}

/// One host's current window against its own history (two-host features): the pair it belongs
/// to, the verdict, why, the p-value and the history's observation count.
type HistoryVerdict = (usize, Status, String, f64, u64);

/// Two-host features: both rows carry the pair's comparison; when it differs, the host that
/// moved against its own history drifts and the other is OK; when history does not tell,
/// both say `differ`. Other rows pass through.
fn attribute_pairs(
    rows: Vec<(DriftResult, Option<HistoryVerdict>)>,
    mode: &Mode,
) -> Vec<DriftResult> {
    let (history_from, history_to) = match mode {
        Mode::Hosts {
            history_from_ms,
            history_to_ms,
        } => (rfc3339(*history_from_ms), rfc3339(*history_to_ms)),
        _ => (String::new(), String::new()),
    };
    // The pair's verdict: the more severe of its two rows; which hosts moved.
    let mut pairs: BTreeMap<usize, (Status, Vec<(String, Status)>)> = BTreeMap::new();
    for (row, history) in &rows {
        if let Some((pair, hstatus, ..)) = history {
            let entry = pairs.entry(*pair).or_insert((Status::NoData, Vec::new()));
            entry.0 = entry.0.max(row.status);
            entry
                .1
                .push((row.host.clone().unwrap_or_default(), *hstatus));
        }
    }
    rows.into_iter()
        .map(|(mut row, history)| {
            let Some((pair, hstatus, hreason, hp, hcount)) = history else {
                return row;
            };
            let (pair_status, members) = &pairs[&pair];
            let me = row.host.clone().unwrap_or_default();
            let other = members
                .iter()
                .find(|(h, _)| *h != me)
                .map(|(h, _)| h.clone())
                .unwrap_or_default();
            let moved: Vec<&String> = members
                .iter()
                .filter(|(_, s)| *s == Status::Drift)
                .map(|(h, _)| h)
                .collect();
            row.against = Some(other.clone());
            row.history = Some(json!({
                "from": history_from,
                "to": history_to,
                "status": hstatus,
                "reason": hreason,
                "reference_count": hcount,
                "p_value": hp,
            }));
            if *pair_status == Status::Drift {
                let pair = format!("{me} vs {other}: {}", row.reason);
                (row.status, row.reason) = match moved.as_slice() {
                    [one] if **one == me => (
                        Status::Drift,
                        format!("{me} moved against its own history, {other} did not: {pair}"),
                    ),
                    [_] => (
                        Status::Ok,
                        format!("{other} moved against its own history, {me} did not: {pair}"),
                    ),
                    _ => (
                        Status::Differ,
                        format!(
                            "{me} and {other} differ; their history does not say which moved \
                             ({}): {pair}",
                            if members.iter().all(|(_, s)| *s == Status::NoData) {
                                "no history"
                            } else if moved.is_empty() {
                                "neither moved against its own"
                            } else {
                                "both moved against their own"
                            }
                        ),
                    ),
                };
                row.p = row.p.min(hp);
            }
            row
        })
        .collect()
}

/// The verdict, reason and p-value of one comparison in a report of `tests` comparisons.
fn judge_with_reason(
    reference: &Side,
    current: &Side,
    config: &DriftConfig,
    tests: usize,
) -> (Status, String, f64) {
    match figures_of(reference, current) {
        Some(Figures::Numeric(d)) => {
            let (s, why) = drift::numeric_status(&d, config, tests);
            (s, why, d.ks_p_value)
        }
        Some(Figures::Categorical(d)) => {
            let (s, why) = drift::categorical_status(&d, config, tests);
            (s, why, d.p_value)
        }
        None => (Status::NoData, "no data on one side".to_owned(), 1.0),
    }
}

/// Figures of one comparison.
enum Figures {
    Numeric(drift::NumericDrift),
    Categorical(drift::CategoricalDrift),
}

fn side_count(side: &Side) -> u64 {
    match side {
        Side::Numeric(h) => h.count(),
        Side::Categorical(c) => c.total(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic sample around `median` (a spread of ±50 %), as a histogram side.
    fn side(n: usize, median: f64) -> Side {
        let mut h = ValueHistogram::new();
        for i in 0..n {
            let u = (i as f64 + 0.5) / n as f64;
            h.record(median * (0.5 + u)).expect("record");
        }
        Side::Numeric(h)
    }

    fn query(mode: Mode) -> DriftQuery {
        DriftQuery {
            mode,
            metric: None,
            filters: Vec::new(),
            from_ms: 1_000_000,
            to_ms: 2_000_000,
        }
    }

    fn feature(sides: Sides) -> LoadedFeature {
        LoadedFeature {
            metric: "input.prompt_tokens".into(),
            tags: BTreeMap::new(),
            kind: Kind::Histogram,
            sides,
        }
    }

    /// The comparisons without a store: loaded sides in, verdicts out.
    #[test]
    fn comparisons_are_a_function_of_the_loaded_sides() {
        let config = DriftConfig::default();
        let hosts = Mode::Hosts {
            history_from_ms: 0,
            history_to_ms: 1_000_000,
        };
        // Two hosts, b moved against its own history, a did not.
        let two = feature(Sides::Hosts {
            current: [
                ("a".into(), side(4000, 400.0)),
                ("b".into(), side(4000, 600.0)),
            ]
            .into(),
            history: [
                ("a".into(), side(4000, 400.0)),
                ("b".into(), side(4000, 400.0)),
            ]
            .into(),
        });
        let r = compare(vec![two], &query(hosts.clone()), &config);
        let status = |h: &str| {
            r.results
                .iter()
                .find(|x| x.host.as_deref() == Some(h))
                .map(|x| x.status)
        };
        assert_eq!(
            (status("a"), status("b")),
            (Some(Status::Ok), Some(Status::Drift))
        );
        assert_eq!(r.results[0].against.as_deref(), Some("a"));
        // Three hosts, one outlier: only it drifts (the others are compared without it).
        let three = feature(Sides::Hosts {
            current: [
                ("a".into(), side(4000, 400.0)),
                ("b".into(), side(4000, 400.0)),
                ("c".into(), side(4000, 700.0)),
            ]
            .into(),
            history: BTreeMap::new(),
        });
        let r = compare(vec![three], &query(hosts), &config);
        let drifted: Vec<&str> = r
            .results
            .iter()
            .filter(|x| x.status == Status::Drift)
            .filter_map(|x| x.host.as_deref())
            .collect();
        assert_eq!(drifted, ["c"]);
        // An empty reference: no data, and the report says which side.
        let temporal = Mode::Temporal {
            ref_from_ms: 0,
            ref_to_ms: 1_000_000,
        };
        let empty = feature(Sides::Pair {
            reference: Box::new(Side::empty(Kind::Histogram)),
            current: Box::new(side(100, 400.0)),
        });
        let r = compare(vec![empty], &query(temporal), &config);
        assert_eq!(r.results[0].status, Status::NoData);
        assert_eq!(r.results[0].reason, "no data in the reference");
        assert_eq!(r.tests, 0);
        assert!(r.reference.is_some());
    }

    /// Hosts mode's rows, whether reused from the last outlier pass or computed after it, are
    /// each host against the sum of the hosts left clean (itself excluded): checked over many
    /// features on threads, with outliers and without.
    #[test]
    fn every_hosts_row_compares_against_the_clean_rest() {
        let config = DriftConfig::default();
        let medians = |f: usize| -> Vec<(String, f64)> {
            (0..6)
                .map(|h| {
                    let outlier = h < f % 3; // 0, 1 or 2 outliers
                    (
                        format!("h{h}"),
                        if outlier { 900.0 } else { 400.0 + h as f64 },
                    )
                })
                .collect()
        };
        let features: Vec<LoadedFeature> = (0..9)
            .map(|f| LoadedFeature {
                metric: format!("input.f{f}"),
                ..feature(Sides::Hosts {
                    current: medians(f)
                        .into_iter()
                        .map(|(h, m)| (h, side(3000, m)))
                        .collect(),
                    history: BTreeMap::new(),
                })
            })
            .collect();
        let hosts = Mode::Hosts {
            history_from_ms: 0,
            history_to_ms: 1_000_000,
        };
        let r = compare(features.clone(), &query(hosts), &config);
        assert_eq!(r.results.len(), 9 * 6);
        for f in &features {
            let Sides::Hosts { current, .. } = &f.sides else {
                unreachable!()
            };
            let rows: Vec<&DriftResult> =
                r.results.iter().filter(|x| x.metric == f.metric).collect();
            let clean: Vec<&String> = rows
                .iter()
                .filter(|x| x.status != Status::Drift)
                .filter_map(|x| x.host.as_ref())
                .collect();
            let drifted = rows.len() - clean.len();
            let f_no: usize = f.metric[7..].parse().expect("feature number");
            assert_eq!(drifted, f_no % 3, "{}: the outliers drift", f.metric);
            for row in rows {
                let host = row.host.as_ref().expect("host");
                let rest = sum_sides(
                    Kind::Histogram,
                    clean.iter().filter(|h| **h != host).map(|h| &current[*h]),
                );
                let Some(Figures::Numeric(want)) = figures_of(&rest, &current[host]) else {
                    panic!("numeric figures")
                };
                assert_eq!(
                    row.figures,
                    serde_json::to_value(want).expect("json"),
                    "{host}"
                );
            }
        }
    }
}
