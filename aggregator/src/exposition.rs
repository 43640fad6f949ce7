//! Prometheus expositions of `/metrics`: the text format (0.0.4) and the protobuf format
//! (length-delimited `io.prometheus.client.MetricFamily`), which is the only one that carries
//! native histograms. The messages are `metrics.proto`'s, declared with prost's derive (no
//! code generation step); only the fields Pitot writes are declared, with their tags.
//!
//! The aggregator's own counters, the SLO series and the gates are written as text by their
//! modules; for a protobuf scrape [`parse_own_text`] reads that text back into families (it
//! reads only what this crate writes: `# HELP`, `# TYPE`, and `name{labels} value` lines).

use std::fmt::Write as _;

/// `io.prometheus.client.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    /// Counter.
    Counter = 0,
    /// Gauge.
    Gauge = 1,
    /// Summary.
    Summary = 2,
    /// Untyped.
    Untyped = 3,
    /// Histogram (native here).
    Histogram = 4,
}

/// `LabelPair`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `Gauge`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
}

/// `Counter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Counter {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
}

/// `Untyped`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Untyped {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
}

/// `Quantile`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Quantile {
    /// φ.
    #[prost(double, tag = "1")]
    pub quantile: f64,
    /// Value.
    #[prost(double, tag = "2")]
    pub value: f64,
}

/// `Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// Observations.
    #[prost(uint64, tag = "1")]
    pub sample_count: u64,
    /// Their sum.
    #[prost(double, tag = "2")]
    pub sample_sum: f64,
    /// Quantiles.
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
}

/// `BucketSpan`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span (the first: the first bucket's index).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// `Histogram`, native fields only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NativeHistogram {
    /// Observations.
    #[prost(uint64, tag = "1")]
    pub sample_count: u64,
    /// Their sum.
    #[prost(double, tag = "2")]
    pub sample_sum: f64,
    /// Bucket factor `2^(2^-schema)`.
    #[prost(sint32, tag = "5")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "6")]
    pub zero_threshold: f64,
    /// Observations in it.
    #[prost(uint64, tag = "7")]
    pub zero_count: u64,
    /// Negative buckets.
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    /// Their counts, each as the difference from the previous bucket's.
    #[prost(sint64, repeated, tag = "10")]
    pub negative_delta: Vec<i64>,
    /// Positive buckets.
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    /// Their counts as differences.
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
}

/// `Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Labels.
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    /// Gauge value.
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Gauge>,
    /// Counter value.
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    /// Summary.
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    /// Untyped value.
    #[prost(message, optional, tag = "5")]
    pub untyped: Option<Untyped>,
    /// Native histogram.
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<NativeHistogram>,
}

/// `MetricFamily`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Family {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Help text.
    #[prost(string, tag = "2")]
    pub help: String,
    /// Type.
    #[prost(enumeration = "MetricType", tag = "3")]
    pub r#type: i32,
    /// Samples.
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

/// The protobuf exposition's content type.
pub const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
/// The text exposition's content type.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for the protobuf exposition (Prometheus sends it first
/// when native histograms are enabled).
pub fn wants_protobuf(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or_default();
        let params: Vec<&str> = params.collect();
        let q = params
            .iter()
            .find_map(|p| p.strip_prefix("q="))
            .map_or(1.0, |q| q.parse::<f64>().unwrap_or(0.0));
        media == "application/vnd.google.protobuf"
            && params.contains(&"proto=io.prometheus.client.MetricFamily")
            && params.contains(&"encoding=delimited")
            && q > 0.0
    })
}

/// Families, each length-prefixed.
pub fn encode(families: &[Family]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families {
        // Writing into a Vec cannot run out of room.
        let _infallible = prost::Message::encode_length_delimited(f, &mut out);
    }
    out
}

/// Escapes a label value for the text format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as the text format writes it.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

impl Family {
    /// An empty family.
    pub fn new(name: &str, help: &str, kind: MetricType) -> Family {
        Family {
            name: name.to_owned(),
            help: help.to_owned(),
            r#type: kind as i32,
            metric: Vec::new(),
        }
    }

    /// Appends the family in the text format (native histograms have no text form and are
    /// left out).
    pub fn write_text(&self, out: &mut String) {
        let name = &self.name;
        let kind = match MetricType::try_from(self.r#type) {
            Ok(MetricType::Counter) => "counter",
            Ok(MetricType::Gauge) => "gauge",
            Ok(MetricType::Summary) => "summary",
            Ok(MetricType::Histogram) => return,
            _ => "untyped",
        };
        let help = self.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _w = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in &self.metric {
            let labels = |extra: Option<(&str, String)>| {
                let mut parts: Vec<String> = m
                    .label
                    .iter()
                    .map(|l| format!("{}=\"{}\"", l.name, escape(&l.value)))
                    .collect();
                if let Some((k, v)) = extra {
                    parts.push(format!("{k}=\"{v}\""));
                }
                if parts.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", parts.join(","))
                }
            };
            if let Some(s) = &m.summary {
                for q in &s.quantile {
                    let l = labels(Some(("quantile", number(q.quantile))));
                    let _w = writeln!(out, "{name}{l} {}", number(q.value));
                }
                let l = labels(None);
                let _w = writeln!(out, "{name}_sum{l} {}", number(s.sample_sum));
                let _w = writeln!(out, "{name}_count{l} {}", s.sample_count);
                continue;
            }
            let v = m
                .counter
                .as_ref()
                .map(|c| c.value)
                .or(m.gauge.as_ref().map(|g| g.value))
                .or(m.untyped.as_ref().map(|u| u.value))
                .unwrap_or(f64::NAN);
            let _w = writeln!(out, "{name}{} {}", labels(None), number(v));
        }
    }
}

/// Reads the text this crate writes (counters and gauges) back into families.
pub fn parse_own_text(text: &str) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let help = help.replace("\\n", "\n").replace("\\\\", "\\");
            out.push(Family::new(name, &help, MetricType::Untyped));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = match kind {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                _ => MetricType::Untyped,
            };
            match out.last_mut() {
                Some(f) if f.name == name => f.r#type = kind as i32,
                _ => out.push(Family::new(name, "", kind)),
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        let value = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        if out.last().is_none_or(|f| f.name != name) {
            out.push(Family::new(name, "", MetricType::Untyped));
        }
        let Some(f) = out.last_mut() else { continue };
        let mut m = Metric {
            label: labels,
            ..Metric::default()
        };
        match MetricType::try_from(f.r#type) {
            Ok(MetricType::Counter) => m.counter = Some(Counter { value }),
            Ok(MetricType::Gauge) => m.gauge = Some(Gauge { value }),
            _ => m.untyped = Some(Untyped { value }),
        }
        f.metric.push(m);
    }
    out
}

/// `name{a="x",b="y"} value` → its parts (label values unescaped).
fn sample(line: &str) -> Option<(&str, Vec<LabelPair>, &str)> {
    let Some(open) = line.find('{') else {
        let (name, value) = line.split_once(' ')?;
        return Some((name, Vec::new(), value.trim()));
    };
    let name = &line[..open];
    let mut labels = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((name, labels, after.trim()));
        }
        let eq = rest.find("=\"")?;
        let key = &rest[..eq];
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break eq + 2 + i + 1,
                c => value.push(c),
            }
        };
        labels.push(LabelPair {
            name: key.to_owned(),
            value,
        });
        rest = &rest[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_text_round_trips() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n\
                    # HELP g A gauge\\nover lines.\n# TYPE g gauge\n\
                    g{slo=\"chat \\\"x\\\"\",window=\"5m\"} 0.25\ng{slo=\"é\\\\\"} NaN\n";
        let fams = parse_own_text(text);
        assert_eq!(fams.len(), 2);
        assert_eq!(fams[0].metric[0].counter.as_ref().unwrap().value, 3.0);
        assert_eq!(fams[1].help, "A gauge\nover lines.");
        assert_eq!(fams[1].metric[0].label[0].value, "chat \"x\"");
        assert_eq!(fams[1].metric[0].label[1].value, "5m");
        assert_eq!(fams[1].metric[1].label[0].value, "é\\");
        let mut again = String::new();
        for f in &fams {
            f.write_text(&mut again);
        }
        assert_eq!(again, text);
    }

    #[test]
    fn protobuf_decodes_as_written() {
        let mut f = Family::new("x", "h", MetricType::Histogram);
        f.metric.push(Metric {
            histogram: Some(NativeHistogram {
                sample_count: 3,
                sample_sum: 1.5,
                schema: 3,
                zero_threshold: 1e-39,
                zero_count: 1,
                positive_span: vec![BucketSpan {
                    offset: -2,
                    length: 2,
                }],
                positive_delta: vec![1, 0],
                ..NativeHistogram::default()
            }),
            ..Metric::default()
        });
        let bytes = encode(&[f.clone(), f.clone()]);
        let mut buf = &bytes[..];
        for _ in 0..2 {
            let back: Family = prost::Message::decode_length_delimited(&mut buf).unwrap();
            assert_eq!(back, f);
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn accept_headers() {
        // What Prometheus 2.42 sends with --enable-feature=native-histograms.
        assert!(wants_protobuf(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"
        ));
        assert!(!wants_protobuf(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!wants_protobuf("*/*"));
        assert!(!wants_protobuf(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0"
        ));
    }
}
