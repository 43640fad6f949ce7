//! Fleet aggregates for Prometheus (`[[export]]`): the merge actor adds each merged batch's
//! matching series into one accumulator per group (exact histogram addition, as everywhere),
//! and `/metrics` renders them: in the text exposition a summary per group (quantiles over the
//! last `window`, `_count` and `_sum` since the aggregator started), in the protobuf
//! exposition a Prometheus native histogram per group (cumulative since the start, so
//! `rate()` and `histogram_quantile()` work on it; a restart is a counter reset).
//!
//! The accumulators live in memory: they are what a scraper sees from now on, not history
//! (the store and the JSON API keep that). Groups past `max_groups` are not created; the
//! values they would have held are counted (`pitot_aggregator_export_capped_total`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use pitot_shared::batch::{Batch, SeriesData};
use pitot_shared::histogram::ValueHistogram;

use crate::exposition::{
    BucketSpan, Counter, Family, LabelPair, Metric, MetricType, NativeHistogram, Quantile, Summary,
};
use crate::model::ExportDefinition;
use crate::slo::host_of;

/// Width of one slot of recent data (the text quantiles' window is counted in whole slots).
const SLOT_MS: i64 = 60_000;

/// Prometheus client_golang's default zero-bucket width: only exact zeros fall in it here.
const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// One group's accumulator.
#[derive(Debug, Clone)]
enum Acc {
    /// Histogram series: everything since start, and per-minute slots of recent intervals.
    Histogram {
        total: Box<ValueHistogram>,
        recent: VecDeque<(i64, ValueHistogram)>,
    },
    /// Counter series: the total since start.
    Counter(f64),
}

/// Group label values (in `group_by` order) → accumulator.
type Groups = BTreeMap<Vec<String>, Acc>;

/// Every export's groups, shared by the merge actor (writes) and `/metrics` (reads).
#[derive(Debug, Default)]
pub struct Exports {
    defs: Vec<ExportDefinition>,
    groups: Mutex<Vec<Groups>>,
    capped: AtomicU64,
}

impl Exports {
    /// Accumulators for `defs`, empty.
    pub fn new(defs: Vec<ExportDefinition>) -> Exports {
        let groups = Mutex::new(vec![Groups::new(); defs.len()]);
        Exports {
            defs,
            groups,
            capped: AtomicU64::new(0),
        }
    }

    /// Whether anything is exported.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// Values not exported because their export had `max_groups` groups already.
    pub fn capped(&self) -> u64 {
        self.capped.load(Ordering::Relaxed)
    }

    /// Adds a merged batch (the merge actor calls this once per batch it merged).
    pub fn observe(&self, batch: &Batch, now_ms: i64) {
        if self.defs.is_empty() {
            return;
        }
        let Ok(mut all) = self.groups.lock() else {
            return;
        };
        let slot = batch.interval_start_ms.div_euclid(SLOT_MS) * SLOT_MS;
        for (def, groups) in self.defs.iter().zip(all.iter_mut()) {
            let oldest = now_ms - def.window.as_millis() as i64 - SLOT_MS;
            for s in &batch.series {
                if s.key.name() != def.metric || !s.key.matches(&def.tags) {
                    continue;
                }
                let values: Vec<String> = def
                    .group_by
                    .iter()
                    .map(|g| match g.as_str() {
                        "host" => host_of(&s.key, &batch.agent_id.0).to_owned(),
                        other => s.key.tag(other).unwrap_or_default().to_owned(),
                    })
                    .collect();
                if !groups.contains_key(&values) && groups.len() >= def.max_groups {
                    self.capped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let fresh = || match &s.data {
                    SeriesData::Histogram(_) => Some(Acc::Histogram {
                        total: Box::new(ValueHistogram::new()),
                        recent: VecDeque::new(),
                    }),
                    SeriesData::Counter(_) => Some(Acc::Counter(0.0)),
                    _ => None,
                };
                let acc = match groups.get_mut(&values) {
                    Some(a) => a,
                    None => match fresh() {
                        Some(a) => groups.entry(values).or_insert(a),
                        None => continue,
                    },
                };
                match (acc, &s.data) {
                    (Acc::Histogram { total, recent }, SeriesData::Histogram(h)) => {
                        // Totals overflow only past 2^64 observations; such a value is skipped.
                        let _overflowed = total.merge(h);
                        if slot >= oldest {
                            let pos = recent.iter().position(|(t, _)| *t == slot);
                            match pos {
                                Some(i) => {
                                    let _overflowed = recent[i].1.merge(h);
                                }
                                None => {
                                    recent.push_back((slot, h.clone()));
                                    recent.make_contiguous().sort_by_key(|(t, _)| *t);
                                }
                            }
                        }
                        while recent.front().is_some_and(|(t, _)| *t < oldest) {
                            recent.pop_front();
                        }
                    }
                    (Acc::Counter(total), SeriesData::Counter(d)) => *total += d.max(0.0),
                    // Another kind under the same name (the store refuses it too).
                    _ => {}
                }
            }
        }
    }

    /// The text exposition: a summary family per histogram export, a counter per counter
    /// export.
    pub fn text(&self, now_ms: i64) -> String {
        let mut out = String::new();
        for f in self.families(now_ms, false) {
            f.write_text(&mut out);
        }
        out
    }

    /// The families, with native histograms (`native`, for the protobuf exposition) or
    /// summaries (for the text exposition).
    pub fn families(&self, now_ms: i64, native: bool) -> Vec<Family> {
        let Ok(all) = self.groups.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (def, groups) in self.defs.iter().zip(all.iter()) {
            let labels = |values: &[String]| -> Vec<LabelPair> {
                def.group_by
                    .iter()
                    .zip(values)
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| LabelPair {
                        name: k.clone(),
                        value: v.clone(),
                    })
                    .collect()
            };
            let counters = groups.values().any(|a| matches!(a, Acc::Counter(_)));
            if counters {
                let mut fam = Family::new(
                    &format!("{}_total", def.name),
                    &format!(
                        "Fleet total of the counter {} since the aggregator started (Pitot).",
                        def.metric
                    ),
                    MetricType::Counter,
                );
                for (values, acc) in groups {
                    if let Acc::Counter(v) = acc {
                        fam.metric.push(Metric {
                            label: labels(values),
                            counter: Some(Counter { value: *v }),
                            ..Metric::default()
                        });
                    }
                }
                out.push(fam);
            }
            if groups.values().all(|a| matches!(a, Acc::Counter(_))) && counters {
                continue;
            }
            let window = humantime::format_duration(def.window);
            let mut fam = if native {
                Family::new(
                    &def.name,
                    &format!(
                        "Fleet {} merged exactly (Pitot), as a native histogram since the \
                         aggregator started (schema {}).",
                        def.metric, def.schema
                    ),
                    MetricType::Histogram,
                )
            } else {
                Family::new(
                    &def.name,
                    &format!(
                        "Fleet {} merged exactly (Pitot): quantiles over the last {window}, \
                         count and sum since the aggregator started.",
                        def.metric
                    ),
                    MetricType::Summary,
                )
            };
            for (values, acc) in groups {
                let Acc::Histogram { total, recent } = acc else {
                    continue;
                };
                let mut m = Metric {
                    label: labels(values),
                    ..Metric::default()
                };
                if native {
                    m.histogram = Some(native_histogram(total, def.schema));
                } else {
                    let from = now_ms - def.window.as_millis() as i64;
                    let mut windowed = ValueHistogram::new();
                    for (t, h) in recent {
                        if t + SLOT_MS > from {
                            let _overflowed = windowed.merge(h);
                        }
                    }
                    m.summary = Some(Summary {
                        sample_count: total.count(),
                        sample_sum: total.sum(),
                        quantile: def
                            .quantiles
                            .iter()
                            .map(|q| Quantile {
                                quantile: *q,
                                value: windowed.quantile(*q).unwrap_or(f64::NAN),
                            })
                            .collect(),
                    });
                }
                fam.metric.push(m);
            }
            out.push(fam);
        }
        out
    }
}

/// The native bucket index of `v > 0` at `schema`: bucket `i` holds `(b^(i-1), b^i]` with
/// `b = 2^(2^-schema)`.
fn native_index(v: f64, schema: i32) -> i32 {
    (v.log2() * 2f64.powi(schema)).ceil() as i32
}

/// `h` as a Prometheus native histogram. Each of Pitot's buckets (about 0.1–0.2 % wide, edges
/// at powers of two shared with every schema) goes whole into the native bucket holding its
/// middle, so a native quantile is within one native bucket of Pitot's.
pub fn native_histogram(h: &ValueHistogram, schema: i32) -> NativeHistogram {
    let mut positive: BTreeMap<i32, u64> = BTreeMap::new();
    let mut negative: BTreeMap<i32, u64> = BTreeMap::new();
    let mut zero = 0;
    for b in h.buckets() {
        if b.key == 0 {
            zero += b.count;
        } else if b.key > 0 {
            *positive
                .entry(native_index((b.lo + b.hi) / 2.0, schema))
                .or_default() += b.count;
        } else {
            *negative
                .entry(native_index(-(b.lo + b.hi) / 2.0, schema))
                .or_default() += b.count;
        }
    }
    let (positive_span, positive_delta) = spans(&positive);
    let (negative_span, negative_delta) = spans(&negative);
    NativeHistogram {
        sample_count: h.count(),
        sample_sum: h.sum(),
        schema,
        zero_threshold: ZERO_THRESHOLD,
        zero_count: zero,
        negative_span,
        negative_delta,
        positive_span,
        positive_delta,
    }
}

/// Spans and count deltas of sparse buckets (a new span at each gap).
fn spans(buckets: &BTreeMap<i32, u64>) -> (Vec<BucketSpan>, Vec<i64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::new();
    let (mut next, mut last) = (None::<i32>, 0i64);
    for (&i, &c) in buckets {
        match next {
            Some(n) if n == i => {
                if let Some(s) = spans.last_mut() {
                    s.length += 1;
                }
            }
            Some(n) => spans.push(BucketSpan {
                offset: i - n,
                length: 1,
            }),
            None => spans.push(BucketSpan {
                offset: i,
                length: 1,
            }),
        }
        deltas.push(c as i64 - last);
        last = c as i64;
        next = Some(i + 1);
    }
    (spans, deltas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitot_shared::batch::SeriesSnapshot;
    use pitot_shared::series::{AgentId, SeriesKey};
    use std::time::Duration;

    fn def(group_by: &[&str], max_groups: usize) -> ExportDefinition {
        ExportDefinition {
            metric: "request.latency".into(),
            name: "pitot_fleet_request_latency".into(),
            tags: vec![],
            group_by: group_by.iter().map(|s| s.to_string()).collect(),
            quantiles: vec![0.5, 0.99],
            window: Duration::from_secs(300),
            schema: 5,
            max_groups,
        }
    }

    /// (name, tags, data) of one series.
    type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, SeriesData);

    fn batch(agent: &str, start: i64, series: Vec<Row<'_>>) -> Batch {
        Batch {
            agent_id: AgentId(agent.into()),
            epoch: 1,
            seq: 1,
            interval_start_ms: start,
            interval_ms: 10_000,
            agent_version: "t".into(),
            spool_bytes: 0,
            series: series
                .into_iter()
                .map(|(n, tags, data)| SeriesSnapshot {
                    key: SeriesKey::new(
                        n,
                        tags.into_iter()
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect(),
                    )
                    .unwrap(),
                    data,
                })
                .collect(),
        }
    }

    fn hist(values: impl IntoIterator<Item = f64>) -> ValueHistogram {
        let mut h = ValueHistogram::new();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn groups_merge_exactly_and_the_window_forgets() {
        let e = Exports::new(vec![def(&["model", "host"], 10)]);
        let now = 10 * 3_600_000;
        let a: Vec<f64> = (1..=1000).map(|i| i as f64 * 0.001).collect();
        let b: Vec<f64> = (1..=1000).map(|i| 1.0 + i as f64 * 0.001).collect();
        let tags = vec![("model", "llama3")];
        e.observe(
            &batch(
                "h1",
                now - 20_000,
                vec![(
                    "request.latency",
                    tags.clone(),
                    SeriesData::Histogram(hist(a.clone())),
                )],
            ),
            now,
        );
        e.observe(
            &batch(
                "h1",
                now - 10_000,
                vec![(
                    "request.latency",
                    tags.clone(),
                    SeriesData::Histogram(hist(b.clone())),
                )],
            ),
            now,
        );
        // Old data: in the totals, not in the window.
        e.observe(
            &batch(
                "h1",
                now - 3_600_000,
                vec![(
                    "request.latency",
                    tags,
                    SeriesData::Histogram(hist([500.0])),
                )],
            ),
            now,
        );
        let text = e.text(now);
        let mut all = hist(a.iter().chain(&b).copied());
        assert!(
            text.contains("# TYPE pitot_fleet_request_latency summary"),
            "{text}"
        );
        let p99 = all.quantile(0.99).unwrap();
        assert!(
            text.contains(&format!(
                "pitot_fleet_request_latency{{model=\"llama3\",host=\"h1\",quantile=\"0.99\"}} {p99}"
            )),
            "{text}"
        );
        all.record(500.0).unwrap();
        assert!(
            text.contains("pitot_fleet_request_latency_count{model=\"llama3\",host=\"h1\"} 2001"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "pitot_fleet_request_latency_sum{{model=\"llama3\",host=\"h1\"}} {}",
                all.sum()
            )),
            "{text}"
        );
    }

    #[test]
    fn the_cap_is_counted() {
        let e = Exports::new(vec![def(&["host"], 2)]);
        for h in ["a", "b", "c", "d"] {
            e.observe(
                &batch(
                    h,
                    0,
                    vec![(
                        "request.latency",
                        vec![],
                        SeriesData::Histogram(hist([1.0])),
                    )],
                ),
                0,
            );
        }
        assert_eq!(e.capped(), 2);
        assert_eq!(e.families(0, true)[0].metric.len(), 2);
    }

    #[test]
    fn counters_are_totals() {
        let mut d = def(&[], 10);
        d.metric = "request.count".into();
        d.name = "pitot_fleet_request_count".into();
        let e = Exports::new(vec![d]);
        for _ in 0..3 {
            e.observe(
                &batch(
                    "a",
                    0,
                    vec![("request.count", vec![], SeriesData::Counter(2.5))],
                ),
                0,
            );
        }
        let text = e.text(0);
        assert!(
            text.contains("# TYPE pitot_fleet_request_count_total counter"),
            "{text}"
        );
        assert!(
            text.contains("pitot_fleet_request_count_total 7.5"),
            "{text}"
        );
    }

    /// The native histogram's quantile (Prometheus' rule: the bucket's exponential
    /// interpolation) lands within one native bucket of Pitot's exact one.
    #[test]
    fn native_buckets_hold_what_pitot_holds() {
        let values: Vec<f64> = (0..20_000)
            .map(|i| 0.0005 * (1.0 + (i as f64 * 0.37).sin().abs() * 400.0))
            .collect();
        let h = hist(values.iter().copied().chain([0.0, -0.25, -3.0]));
        for schema in [0, 3, 5, 8] {
            let n = native_histogram(&h, schema);
            let total: i64 = {
                let mut sum = 0i64;
                let mut c = 0i64;
                for d in &n.positive_delta {
                    c += d;
                    sum += c;
                }
                c = 0;
                for d in &n.negative_delta {
                    c += d;
                    sum += c;
                }
                sum
            };
            assert_eq!(total as u64 + n.zero_count, h.count(), "schema {schema}");
            assert_eq!(n.zero_count, 1);
            // Walk the positive buckets to the 0.99 rank.
            let rank = (0.99 * h.count() as f64).ceil() as i64 - 1 - 2; // minus zero and negatives
            let (mut idx, mut c, mut seen) = (0i32, 0i64, 0i64);
            let mut found = None;
            let mut d = n.positive_delta.iter();
            'spans: for s in &n.positive_span {
                idx += s.offset;
                for _ in 0..s.length {
                    c += d.next().unwrap();
                    seen += c;
                    if seen > rank {
                        found = Some(idx);
                        break 'spans;
                    }
                    idx += 1;
                }
            }
            let i = found.unwrap();
            let base = 2f64.powf(2f64.powi(-schema));
            let (lo, hi) = (base.powi(i - 1), base.powi(i));
            let exact = h.quantile(0.99).unwrap();
            assert!(
                exact > lo / base && exact <= hi * base,
                "schema {schema}: {exact} vs ({lo}, {hi}]"
            );
        }
    }
}
