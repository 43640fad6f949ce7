//! A tolerant parser for the Prometheus text exposition format (0.0.4) and OpenMetrics text.
//!
//! Hand-written rather than a crate: the maintained parsers either stop at the first bad line
//! or drop it silently, and model servers' `/metrics` have quirks worth keeping (Triton's
//! histogram whose `# TYPE` names another family, bucket samples without `_bucket`, documentation
//! `...` lines). Here a bad line is counted with its reason and skipped; the rest of the scrape
//! is used. Every sample is then classified into a [`Family`] by its `# TYPE` (directly or
//! through the `_bucket`/`_count`/`_sum`/`_total`/`_created` suffixes), or, without one, as a
//! histogram when the name carries `le`-labelled samples and as a gauge otherwise.

use std::collections::{BTreeMap, HashMap};

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Cumulative counter.
    Counter,
    /// Point-in-time value.
    Gauge,
    /// Classic histogram (`_bucket{le}`, `_sum`, `_count`).
    Histogram,
    /// Summary (`{quantile}`, `_sum`, `_count`).
    Summary,
    /// No `# TYPE`: treated as a gauge.
    Untyped,
}

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LineError {
    /// The metric name is missing or has characters outside `[a-zA-Z0-9_:]`.
    BadName,
    /// Labels are not `name="value"` pairs closed by `}`.
    BadLabels,
    /// The value is missing or not a number.
    BadValue,
    /// A `le` or `quantile` label that is not a number.
    BadBound,
}

impl LineError {
    /// The reason as a tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            LineError::BadName => "bad_name",
            LineError::BadLabels => "bad_labels",
            LineError::BadValue => "bad_value",
            LineError::BadBound => "bad_bound",
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's own name (with any suffix).
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// The part of a family a sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The value of a counter, gauge or untyped series.
    Value,
    /// A histogram bucket (its `le` is in the labels).
    Bucket,
    /// `_sum` of a histogram or summary.
    Sum,
    /// `_count` of a histogram or summary.
    Count,
    /// A summary quantile (its `quantile` is in the labels).
    Quantile,
    /// `_created` (OpenMetrics): ignored.
    Created,
}

/// Samples grouped by family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Family name (without suffixes).
    pub name: String,
    /// Its type.
    pub kind: MetricType,
    /// Its samples with the part each is.
    pub samples: Vec<(Part, Sample)>,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Families by name.
    pub families: BTreeMap<String, Family>,
    /// Lines skipped, per reason.
    pub malformed: BTreeMap<LineError, u64>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        t => t.parse::<f64>().ok(),
    }
}

/// Parses `{k="v",…}` starting after `{`; returns the labels and the rest after `}`.
/// Labels as written.
type Labels = Vec<(String, String)>;

fn parse_labels(mut rest: &str) -> Result<(Labels, &str), LineError> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or(LineError::BadLabels)?;
        let key = rest[..eq].trim();
        if !valid_name(key) {
            return Err(LineError::BadLabels);
        }
        rest = rest[eq + 1..].trim_start();
        rest = rest.strip_prefix('"').ok_or(LineError::BadLabels)?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(LineError::BadLabels),
                },
                Some((_, c)) => value.push(c),
                None => return Err(LineError::BadLabels),
            }
        };
        labels.push((key.to_owned(), value));
        rest = rest[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(LineError::BadLabels);
        }
    }
}

/// Parses one sample line.
pub fn parse_sample(line: &str) -> Result<Sample, LineError> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(LineError::BadName);
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (l, r) = parse_labels(after)?;
        labels = l;
        rest = r;
    }
    // OpenMetrics exemplars follow " # ".
    let rest = rest.split(" # ").next().unwrap_or("");
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .and_then(parse_float)
        .ok_or(LineError::BadValue)?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

const SUFFIXES: [(&str, Part); 5] = [
    ("_bucket", Part::Bucket),
    ("_count", Part::Count),
    ("_sum", Part::Sum),
    ("_total", Part::Value),
    ("_created", Part::Created),
];

/// Parses an exposition text, counting and skipping bad lines.
pub fn parse(text: &str) -> Exposition {
    let mut types: HashMap<String, MetricType> = HashMap::new();
    let mut samples = Vec::new();
    let mut out = Exposition::default();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let kind = match kind {
                        "counter" => MetricType::Counter,
                        "gauge" => MetricType::Gauge,
                        "histogram" => MetricType::Histogram,
                        "summary" => MetricType::Summary,
                        _ => MetricType::Untyped,
                    };
                    types.insert(name.to_owned(), kind);
                }
                (Some("EOF"), _, _) => break,
                _ => {}
            }
            continue;
        }
        match parse_sample(line) {
            Ok(s) => samples.push(s),
            Err(why) => *out.malformed.entry(why).or_insert(0) += 1,
        }
    }
    // Names that carry `le` samples without a type of their own are histograms (Triton's
    // documentation writes buckets without `_bucket`, under another family's `# TYPE`).
    let mut le_bases: HashMap<String, ()> = HashMap::new();
    for s in &samples {
        if label(&s.labels, "le").is_some() && !types.contains_key(&s.name) {
            let base = s.name.strip_suffix("_bucket").unwrap_or(&s.name);
            le_bases.insert(base.to_owned(), ());
        }
    }
    for s in samples {
        let (family, kind, part) = classify(&s, &types, &le_bases);
        let bound = match part {
            Part::Bucket => Some("le"),
            Part::Quantile => Some("quantile"),
            _ => None,
        };
        if let Some(key) = bound
            && label(&s.labels, key).and_then(parse_float).is_none()
        {
            *out.malformed.entry(LineError::BadBound).or_insert(0) += 1;
            continue;
        }
        out.families
            .entry(family.clone())
            .or_insert_with(|| Family {
                name: family,
                kind,
                samples: Vec::new(),
            })
            .samples
            .push((part, s));
    }
    out
}

fn classify(
    s: &Sample,
    types: &HashMap<String, MetricType>,
    le_bases: &HashMap<String, ()>,
) -> (String, MetricType, Part) {
    let histogram_part = |suffix_part: Part| match suffix_part {
        Part::Value => Part::Value,
        p => p,
    };
    if let Some(kind) = types.get(&s.name) {
        let part = match kind {
            MetricType::Histogram if label(&s.labels, "le").is_some() => Part::Bucket,
            MetricType::Summary if label(&s.labels, "quantile").is_some() => Part::Quantile,
            _ => Part::Value,
        };
        return (s.name.clone(), *kind, part);
    }
    for (suffix, part) in SUFFIXES {
        if let Some(base) = s.name.strip_suffix(suffix) {
            if let Some(kind) = types.get(base) {
                return (base.to_owned(), *kind, histogram_part(part));
            }
            if le_bases.contains_key(base) && part != Part::Value {
                return (base.to_owned(), MetricType::Histogram, part);
            }
        }
    }
    if label(&s.labels, "le").is_some() {
        let base = s.name.strip_suffix("_bucket").unwrap_or(&s.name);
        return (base.to_owned(), MetricType::Histogram, Part::Bucket);
    }
    (s.name.clone(), MetricType::Untyped, Part::Value)
}

#[cfg(test)]
mod tests;
