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
use serde::Serialize;
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

/// One result row.
#[derive(Debug, Clone, Serialize)]
pub struct DriftResult {
    /// Metric.
    pub metric: String,
    /// The feature's tags (without host, and without version in versions mode).
    pub tags: BTreeMap<String, String>,
    /// `histogram` or `categorical`.
    pub kind: &'static str,
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

/// Summed data of one side of a comparison.
#[derive(Debug, Clone)]
enum Side {
    Numeric(ValueHistogram),
    Categorical(Categorical),
}

impl Side {
    fn empty(kind: Kind) -> Side {
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

    fn add(&mut self, data: &SeriesData) {
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
    Ok(sum_buckets(store.read(series, &res, from, to_ms)?))
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
}

/// Builds the drift report.
pub fn report(
    store: &dyn Store,
    q: &DriftQuery,
    config: &DriftConfig,
    input_prefix: &str,
) -> Result<Value, ReportError> {
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
    let mut pending = Vec::new();
    let mut host_features = Vec::new();
    let mut pairs = 0usize;
    for ((metric, tags), members) in features {
        let kind = members[0].1;
        let members: Vec<SeriesKey> = members
            .into_iter()
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
                pending.push(Pending {
                    metric,
                    tags,
                    kind,
                    host: None,
                    reference: refr,
                    current: cur,
                    history: None,
                });
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
                if per_host.len() == 2 {
                    let pair = pairs;
                    pairs += 1;
                    let sides: Vec<(&String, &Side)> = per_host.iter().collect();
                    for (i, (host, side)) in sides.iter().enumerate() {
                        let mut history = Side::empty(kind);
                        for s in members
                            .iter()
                            .filter(|s| s.tag("host") == Some(host.as_str()))
                        {
                            if let Some(d) = load(store, s, *history_from_ms, *history_to_ms)? {
                                history.add(&d);
                            }
                        }
                        pending.push(Pending {
                            metric: metric.clone(),
                            tags: tags.clone(),
                            kind,
                            host: Some((*host).clone()),
                            reference: sides[1 - i].1.clone(),
                            current: (*side).clone(),
                            history: Some((history, pair)),
                        });
                    }
                } else if per_host.len() > 2 {
                    host_features.push((metric, tags, kind, per_host));
                }
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
                pending.push(Pending {
                    metric,
                    tags,
                    kind,
                    host: None,
                    reference: sa,
                    current: sb,
                    history: None,
                });
            }
        }
    }
    // Hosts: each host against the rest, leaving hosts already found drifting out of the rest
    // (most significant first), so one outlier does not make every other host look drifted.
    let host_tests: usize = host_features.iter().map(|f| f.3.len()).sum();
    for (metric, tags, kind, per_host) in host_features {
        let mut flagged: Vec<String> = Vec::new();
        loop {
            let clean: Vec<&String> = per_host.keys().filter(|h| !flagged.contains(h)).collect();
            if clean.len() < 2 {
                break;
            }
            let mut worst: Option<(String, f64)> = None;
            let sides: Vec<&Side> = clean.iter().map(|h| &per_host[*h]).collect();
            for (host, rest) in clean.iter().zip(rests(kind, &sides)) {
                let (status, p) = judge(&rest, &per_host[*host], config, host_tests);
                if status == Status::Drift && worst.as_ref().is_none_or(|(_, wp)| p < *wp) {
                    worst = Some(((*host).clone(), p));
                }
            }
            match worst {
                Some((host, _)) => flagged.push(host),
                None => break,
            }
        }
        let clean: Vec<&String> = per_host.keys().filter(|h| !flagged.contains(h)).collect();
        let clean_sides: Vec<&Side> = clean.iter().map(|h| &per_host[*h]).collect();
        let mut clean_rests: BTreeMap<&String, Side> = clean
            .iter()
            .copied()
            .zip(rests(kind, &clean_sides))
            .collect();
        let all_clean = sum_sides(kind, clean_sides.iter().copied());
        for (host, side) in &per_host {
            // A clean host against the other clean hosts; a flagged one against all of them.
            let rest = clean_rests
                .remove(host)
                .unwrap_or_else(|| all_clean.clone());
            pending.push(Pending {
                metric: metric.clone(),
                tags: tags.clone(),
                kind,
                host: Some(host.clone()),
                reference: rest,
                current: side.clone(),
                history: None,
            });
        }
    }
    // Figures first, so the Bonferroni correction knows how many tests the report makes.
    let figures: Vec<(Pending, Option<Figures>)> = pending
        .into_iter()
        .map(|p| {
            let f = match (&p.reference, &p.current) {
                (Side::Numeric(r), Side::Numeric(c)) => drift::numeric(r, c).map(Figures::Numeric),
                (Side::Categorical(r), Side::Categorical(c)) => {
                    drift::categorical(r, c).map(Figures::Categorical)
                }
                _ => None,
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
                kind: p.kind.as_str(),
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
    let mut out = json!({
        "mode": match q.mode { Mode::Temporal { .. } => "temporal", Mode::Hosts { .. } => "hosts", Mode::Versions { .. } => "versions" },
        "current": {"from": rfc3339(q.from_ms), "to": rfc3339(q.to_ms)},
        "tests": tests,
        "results": results,
    });
    if let Mode::Temporal {
        ref_from_ms,
        ref_to_ms,
    } = q.mode
    {
        out["reference"] = json!({"from": rfc3339(ref_from_ms), "to": rfc3339(ref_to_ms)});
    }
    Ok(out)
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

/// The verdict and p-value of one comparison in a report of `tests` comparisons.
fn judge(reference: &Side, current: &Side, config: &DriftConfig, tests: usize) -> (Status, f64) {
    let (status, _, p) = judge_with_reason(reference, current, config, tests);
    (status, p)
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
    let none = || (Status::NoData, "no data on one side".to_owned(), 1.0);
    match (reference, current) {
        (Side::Numeric(r), Side::Numeric(c)) => drift::numeric(r, c).map_or_else(none, |d| {
            let (s, why) = drift::numeric_status(&d, config, tests);
            (s, why, d.ks_p_value)
        }),
        (Side::Categorical(r), Side::Categorical(c)) => {
            drift::categorical(r, c).map_or_else(none, |d| {
                let (s, why) = drift::categorical_status(&d, config, tests);
                (s, why, d.p_value)
            })
        }
        _ => none(),
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
