//! Prometheus scraping: each `[[scrape]]` target is fetched on its own thread every
//! `interval` (with a timeout and a size limit), parsed ([`parse`]), and turned into the
//! interval's series ([`Deltas`]):
//!
//! - **counters** become per-interval deltas; a value below the last one is a reset and counts
//!   from zero; the first sight of a series only sets its baseline (what happened before the
//!   agent looked is not attributed to any interval);
//! - **gauges** (and untyped samples) are recorded as values into a histogram;
//! - **classic histograms** become [`BucketHistogram`] deltas in the server's own bucket
//!   layout (a changed layout or a decrease is a reset);
//! - **summaries**: each quantile is kept as a gauge (`quantile` tag), `_sum`/`_count` as
//!   counters.
//!
//! Labels become tags (`model_name` → `model`, see [`known`]); a `[[scrape]]`'s own tags fill
//! in what the labels do not say. Known servers' series are recorded a second time under
//! their OpenTelemetry GenAI name ([`known::alias_of`]).

pub mod known;
pub mod parse;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pitot_shared::batch::SeriesData;
use pitot_shared::buckets::{BucketHistogram, Layout};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::SeriesKey;
use tracing::{info, warn};

use crate::config::ScrapeTarget;
use crate::samples::Samples;
use parse::{Exposition, MetricType, Part, Sample};

/// What one scrape observed for one series, before it becomes series data.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A counter's increase since the last scrape.
    Delta(f64),
    /// A gauge's value.
    Value(f64),
    /// A histogram's increase since the last scrape, in its layout.
    Buckets(Layout),
}

/// Tags as `(key, value)` pairs.
pub type Tags = Vec<(String, String)>;
/// One observation of a scrape: series name, tags, what was observed.
pub type Observed = (String, Tags, Observation);
/// The last cumulative histogram seen: bounds, cumulative counts, sum, count.
type HistogramState = (Vec<f64>, Vec<f64>, f64, f64);

/// Cumulative state of one target, to turn scrapes into per-interval increases.
#[derive(Debug, Default)]
pub struct Deltas {
    counters: HashMap<(String, Tags), f64>,
    histograms: HashMap<(String, Tags), HistogramState>,
}

fn tags_of(
    labels: &[(String, String)],
    skip: &str,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = labels
        .iter()
        .filter(|(k, _)| k != skip)
        .map(|(k, v)| (known::tag_name(k).to_owned(), v.clone()))
        .collect();
    for (k, v) in extra {
        if !tags.iter().any(|(t, _)| t == k) {
            tags.push((k.clone(), v.clone()));
        }
    }
    tags.sort();
    tags
}

fn bound(labels: &[(String, String)], key: &str) -> Option<f64> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| match v.as_str() {
            "+Inf" | "Inf" => Some(f64::INFINITY),
            v => v.parse().ok(),
        })
}

impl Deltas {
    fn counter(&mut self, name: &str, tags: Vec<(String, String)>, value: f64) -> Option<f64> {
        if !value.is_finite() {
            return None;
        }
        let last = self.counters.insert((name.to_owned(), tags), value)?;
        Some(if value >= last { value - last } else { value })
    }

    /// The observations of one scrape: `(name, tags, observation)`.
    pub fn update(&mut self, e: &Exposition, extra: &[(String, String)]) -> Vec<Observed> {
        let mut out = Vec::new();
        for f in e.families.values() {
            match f.kind {
                MetricType::Counter => {
                    for (part, s) in &f.samples {
                        if *part == Part::Value {
                            let tags = tags_of(&s.labels, "", extra);
                            if let Some(d) = self.counter(&s.name, tags.clone(), s.value) {
                                out.push((s.name.clone(), tags, Observation::Delta(d)));
                            }
                        }
                    }
                }
                MetricType::Gauge | MetricType::Untyped => {
                    for (_, s) in &f.samples {
                        if s.value.is_finite() {
                            out.push((
                                s.name.clone(),
                                tags_of(&s.labels, "", extra),
                                Observation::Value(s.value),
                            ));
                        }
                    }
                }
                MetricType::Summary => {
                    for (part, s) in &f.samples {
                        match part {
                            Part::Quantile if s.value.is_finite() => out.push((
                                f.name.clone(),
                                tags_of(&s.labels, "", extra),
                                Observation::Value(s.value),
                            )),
                            Part::Sum | Part::Count => {
                                let tags = tags_of(&s.labels, "", extra);
                                if let Some(d) = self.counter(&s.name, tags.clone(), s.value) {
                                    out.push((s.name.clone(), tags, Observation::Delta(d)));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                MetricType::Histogram => self.histogram(&f.name, &f.samples, extra, &mut out),
            }
        }
        out
    }

    fn histogram(
        &mut self,
        name: &str,
        samples: &[(Part, Sample)],
        extra: &[(String, String)],
        out: &mut Vec<Observed>,
    ) {
        // Group by labels without `le`: (bucket (le, cumulative)), sum, count.
        type Group = (Vec<(f64, f64)>, Option<f64>, Option<f64>);
        let mut groups: HashMap<Vec<(String, String)>, Group> = HashMap::new();
        for (part, s) in samples {
            let tags = tags_of(&s.labels, "le", extra);
            let g = groups.entry(tags).or_default();
            match part {
                Part::Bucket => {
                    if let Some(le) = bound(&s.labels, "le") {
                        g.0.push((le, s.value));
                    }
                }
                Part::Sum => g.1 = Some(s.value),
                Part::Count => g.2 = Some(s.value),
                _ => {}
            }
        }
        for (tags, (mut buckets, sum, count)) in groups {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            buckets.dedup_by(|a, b| a.0 == b.0);
            if buckets.is_empty() || buckets.iter().any(|(_, c)| !c.is_finite() || *c < 0.0) {
                continue;
            }
            let bounds: Vec<f64> = buckets.iter().map(|(le, _)| *le).collect();
            let cum: Vec<f64> = buckets.iter().map(|(_, c)| *c).collect();
            let top = cum.last().copied().unwrap_or(0.0);
            let count = count.filter(|c| c.is_finite()).unwrap_or(top).max(top);
            let sum = sum.filter(|s| s.is_finite()).unwrap_or(0.0);
            let key = (name.to_owned(), tags.clone());
            let previous = self
                .histograms
                .insert(key, (bounds.clone(), cum.clone(), sum, count));
            let Some((old_bounds, old_cum, old_sum, old_count)) = previous else {
                continue; // baseline
            };
            let same_layout = old_bounds.len() == bounds.len()
                && old_bounds
                    .iter()
                    .zip(&bounds)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
            let reset =
                !same_layout || count < old_count || cum.iter().zip(&old_cum).any(|(n, o)| n < o);
            let (base_cum, base_sum, base_count) = if reset {
                (vec![0.0; cum.len()], 0.0, 0.0)
            } else {
                (old_cum, old_sum, old_count)
            };
            let mut counts = Vec::with_capacity(cum.len());
            let mut below = 0.0;
            for (n, o) in cum.iter().zip(&base_cum) {
                let d = n - o;
                counts.push((d - below).max(0.0).round() as u64);
                below = d;
            }
            let count = (count - base_count).max(0.0).round() as u64;
            if count == 0 {
                continue;
            }
            out.push((
                name.to_owned(),
                tags,
                Observation::Buckets(Layout {
                    bounds,
                    counts,
                    sum: sum - base_sum,
                    count,
                }),
            ));
        }
    }
}

/// Series data for an observation, scaled by `scale` (1 for the original series).
pub fn series_data(o: &Observation, scale: f64) -> Option<SeriesData> {
    match o {
        Observation::Delta(d) => Some(SeriesData::Counter(d * scale)),
        Observation::Value(v) => {
            let mut h = ValueHistogram::new();
            h.record(v * scale).ok()?;
            Some(SeriesData::Histogram(h))
        }
        Observation::Buckets(l) => {
            let scaled = Layout {
                bounds: l.bounds.iter().map(|b| b * scale).collect(),
                counts: l.counts.clone(),
                sum: l.sum * scale,
                count: l.count,
            };
            BucketHistogram::new(scaled).ok().map(SeriesData::Buckets)
        }
    }
}

/// Records one scrape's observations (and their known-server aliases) into `samples`;
/// returns how many series could not be named (over the key limits).
pub fn record(samples: &Samples, observations: Vec<Observed>) -> u64 {
    let mut refused = 0;
    for (name, tags, o) in observations {
        if let Some(a) = known::alias_of(&name) {
            let mut alias_tags = tags.clone();
            alias_tags.push(("server".into(), a.server.into()));
            match (SeriesKey::new(a.name, alias_tags), series_data(&o, a.scale)) {
                (Ok(key), Some(data)) => samples.record(key, data),
                _ => refused += 1,
            }
        }
        match (SeriesKey::new(&name, tags), series_data(&o, 1.0)) {
            (Ok(key), Some(data)) => samples.record(key, data),
            _ => refused += 1,
        }
    }
    refused
}

fn counter(
    name: &str,
    target: &str,
    extra: Option<(&str, &str)>,
    v: f64,
) -> Option<(SeriesKey, SeriesData)> {
    let mut tags = vec![("target".to_owned(), target.to_owned())];
    if let Some((k, val)) = extra {
        tags.push((k.to_owned(), val.to_owned()));
    }
    SeriesKey::new(name, tags)
        .ok()
        .map(|k| (k, SeriesData::Counter(v)))
}

/// Fetches one target's exposition text, at most `max_bytes`.
fn fetch(agent: &ureq::Agent, target: &ScrapeTarget) -> Result<String, String> {
    let mut response = agent
        .get(&target.url)
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.6",
        )
        .call()
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    response
        .body_mut()
        .with_config()
        .limit(target.max_bytes)
        .read_to_string()
        .map_err(|e| e.to_string())
}

/// Starts the scraping thread for `target`; it stops when `stop` is set.
pub fn spawn(
    target: ScrapeTarget,
    samples: Arc<Samples>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pitot-scrape".into())
        .spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(target.timeout))
                .http_status_as_error(false)
                .build()
                .into();
            let mut deltas = Deltas::default();
            let mut failing = false;
            info!(url = %target.url, interval = ?target.interval, "Scraping.");
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let mut own = Vec::new();
                match fetch(&agent, &target) {
                    Ok(text) => {
                        if failing {
                            info!(url = %target.url, "Scrape target answers again.");
                            failing = false;
                        }
                        let e = parse::parse(&text);
                        for (why, n) in &e.malformed {
                            own.extend(counter(
                                "pitot.agent.scrape.malformed",
                                &target.url,
                                Some(("reason", why.as_str())),
                                *n as f64,
                            ));
                        }
                        let refused = record(&samples, deltas.update(&e, &target.tags));
                        own.extend(counter("pitot.agent.scrape.scrapes", &target.url, None, 1.0));
                        if refused > 0 {
                            own.extend(counter(
                                "pitot.agent.scrape.refused_series",
                                &target.url,
                                None,
                                refused as f64,
                            ));
                        }
                    }
                    Err(error) => {
                        if !failing {
                            warn!(url = %target.url, %error, "Scrape failed; retrying every interval (logged once until it answers).");
                            failing = true;
                        }
                        own.extend(counter("pitot.agent.scrape.failures", &target.url, None, 1.0));
                    }
                }
                for (k, d) in own {
                    samples.record(k, d);
                }
                // Sleep to the next tick in short steps, to notice `stop`.
                let next = started + target.interval;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now >= next {
                        break;
                    }
                    std::thread::sleep((next - now).min(Duration::from_millis(100)));
                }
            }
        })
}

#[cfg(test)]
mod tests;
