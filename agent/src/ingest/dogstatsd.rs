//! The DogStatsD 1.x line parser: pure, allocation-free, one line at a time.
//!
//! ```text
//! line    = name ":" value *( ":" value ) "|" type *( "|" section )
//! type    = "c" | "g" | "ms" | "h" | "d" | "s"
//! section = "@" rate | "#" tag *( "," tag ) | "T" unix-seconds | other (ignored: "c:", "e:", …)
//! ```
//!
//! Events (`_e{…}`) and service checks (`_sc|…`) are recognised and reported as such so the
//! caller can count and skip them. A set's value is taken whole (it may hold `:` or spaces);
//! every other type may carry several `:`-separated values.

/// The metric type of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// `c`: a count, scaled by the sample rate.
    Counter,
    /// `g`: a gauge, sampled into a histogram.
    Gauge,
    /// `ms`: a timer in milliseconds.
    Timer,
    /// `h`: a histogram.
    Histogram,
    /// `d`: a distribution.
    Distribution,
    /// `s`: a set, recorded as a categorical observation.
    Set,
}

impl MetricType {
    /// One byte naming the type, used in the raw series cache key.
    pub fn code(self) -> u8 {
        match self {
            MetricType::Counter => b'c',
            MetricType::Gauge => b'g',
            MetricType::Timer => b'm',
            MetricType::Histogram => b'h',
            MetricType::Distribution => b'd',
            MetricType::Set => b's',
        }
    }
}

/// A parsed metric line, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricLine<'a> {
    /// Metric name.
    pub name: &'a str,
    /// The raw value part: one value, or several separated by `:` (sets: one value, whole).
    pub values: &'a str,
    /// The metric type.
    pub kind: MetricType,
    /// Sample rate in (0, 1]; 1 when absent.
    pub rate: f64,
    /// The raw tag list without `#` (comma-separated), empty when absent.
    pub tags: &'a str,
    /// `|T` timestamp in Unix seconds.
    pub timestamp: Option<i64>,
}

/// What a line is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parsed<'a> {
    /// A metric sample.
    Metric(MetricLine<'a>),
    /// An event (`_e{`): counted and ignored.
    Event,
    /// A service check (`_sc|`): counted and ignored.
    ServiceCheck,
}

/// Why a line was refused. Each reason is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// The line is not UTF-8.
    InvalidUtf8,
    /// No `|type` section.
    MissingType,
    /// The type is not one of `c g ms h d s`.
    UnknownType,
    /// No `:` between name and value, or an empty name.
    MissingValue,
    /// A value is not a number.
    InvalidValue,
    /// A value is NaN or infinite.
    NonFinite,
    /// A value's magnitude is beyond the histogram's range.
    ValueOutOfRange,
    /// The sample rate is not a number in (0, 1].
    InvalidSampleRate,
    /// The `|T` timestamp is not an integer.
    InvalidTimestamp,
    /// Name or tag too long, too many tags, or control characters.
    InvalidSeries,
}

impl Malformed {
    /// Every reason, for counters and reports.
    pub const ALL: [Malformed; 10] = [
        Malformed::InvalidUtf8,
        Malformed::MissingType,
        Malformed::UnknownType,
        Malformed::MissingValue,
        Malformed::InvalidValue,
        Malformed::NonFinite,
        Malformed::ValueOutOfRange,
        Malformed::InvalidSampleRate,
        Malformed::InvalidTimestamp,
        Malformed::InvalidSeries,
    ];

    /// Stable snake_case name, used as the `reason` tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::InvalidUtf8 => "invalid_utf8",
            Malformed::MissingType => "missing_type",
            Malformed::UnknownType => "unknown_type",
            Malformed::MissingValue => "missing_value",
            Malformed::InvalidValue => "invalid_value",
            Malformed::NonFinite => "non_finite",
            Malformed::ValueOutOfRange => "value_out_of_range",
            Malformed::InvalidSampleRate => "invalid_sample_rate",
            Malformed::InvalidTimestamp => "invalid_timestamp",
            Malformed::InvalidSeries => "invalid_series",
        }
    }
}

/// The first `byte` in `line` at or after `from` (SIMD search: `memchr`). The generic
/// `str::split_once` searches cost more than the rest of a line's parse (callgrind, issue 16).
#[inline]
fn find(line: &[u8], from: usize, byte: u8) -> Option<usize> {
    memchr::memchr(byte, line.get(from..)?).map(|p| p + from)
}

/// Parses one line (without its newline). The separators are ASCII, so every cut below falls
/// on a character boundary.
pub fn parse_line(line: &str) -> Result<Parsed<'_>, Malformed> {
    let bytes = line.as_bytes();
    if bytes.starts_with(b"_e{") {
        return Ok(Parsed::Event);
    }
    if bytes.starts_with(b"_sc|") {
        return Ok(Parsed::ServiceCheck);
    }
    // The name ends at the first `:` before the first `|`: one scan finds whichever comes first.
    let colon = match memchr::memchr2(b':', b'|', bytes) {
        Some(i) if bytes[i] == b':' => i,
        Some(_) => return Err(Malformed::MissingValue),
        None => return Err(Malformed::MissingType),
    };
    let bar = find(bytes, colon + 1, b'|').ok_or(Malformed::MissingType)?;
    if colon == 0 {
        return Err(Malformed::MissingValue);
    }
    let (name, values) = (&line[..colon], &line[colon + 1..bar]);
    let type_end = find(bytes, bar + 1, b'|').unwrap_or(bytes.len());
    let kind = match &bytes[bar + 1..type_end] {
        b"c" => MetricType::Counter,
        b"g" => MetricType::Gauge,
        b"ms" => MetricType::Timer,
        b"h" => MetricType::Histogram,
        b"d" => MetricType::Distribution,
        b"s" => MetricType::Set,
        b"" => return Err(Malformed::MissingType),
        _ => return Err(Malformed::UnknownType),
    };
    let mut parsed = MetricLine {
        name,
        values,
        kind,
        rate: 1.0,
        tags: "",
        timestamp: None,
    };
    let mut at = type_end + 1;
    while at < bytes.len() {
        let end = find(bytes, at, b'|').unwrap_or(bytes.len());
        let section = &line[at..end];
        at = end + 1;
        match section.as_bytes().first() {
            Some(b'@') => {
                let rate: f64 = section[1..]
                    .parse()
                    .map_err(|_| Malformed::InvalidSampleRate)?;
                if !(rate > 0.0 && rate <= 1.0) {
                    return Err(Malformed::InvalidSampleRate);
                }
                parsed.rate = rate;
            }
            Some(b'#') => parsed.tags = &section[1..],
            Some(b'T') => {
                let ts: i64 = section[1..]
                    .parse()
                    .map_err(|_| Malformed::InvalidTimestamp)?;
                parsed.timestamp = Some(ts);
            }
            // Container ids (`c:`), external data (`e:`) and future sections are ignored,
            // as the Datadog agent does.
            _ => {}
        }
    }
    Ok(Parsed::Metric(parsed))
}

/// Parses one numeric value; an empty one is missing.
pub fn parse_value(text: &str) -> Result<f64, Malformed> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Malformed::MissingValue);
    }
    let v: f64 = text.parse().map_err(|_| Malformed::InvalidValue)?;
    if !v.is_finite() {
        return Err(Malformed::NonFinite);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn metric(line: &str) -> MetricLine<'_> {
        match parse_line(line) {
            Ok(Parsed::Metric(m)) => m,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[track_caller]
    fn refused(line: &str, why: Malformed) {
        assert_eq!(parse_line(line), Err(why), "{line}");
    }

    #[test]
    fn full_line() {
        let m = metric("request.latency:12.5:13|ms|@0.5|#model:llama3,version:v2|T1700000000");
        assert_eq!(m.name, "request.latency");
        assert_eq!(m.values, "12.5:13");
        assert_eq!(m.kind, MetricType::Timer);
        assert_eq!(m.rate, 0.5);
        assert_eq!(m.tags, "model:llama3,version:v2");
        assert_eq!(m.timestamp, Some(1_700_000_000));
    }

    #[test]
    fn each_type() {
        assert_eq!(metric("a:1|c").kind, MetricType::Counter);
        assert_eq!(metric("a:1|g").kind, MetricType::Gauge);
        assert_eq!(metric("a:1|h").kind, MetricType::Histogram);
        assert_eq!(metric("a:1|d").kind, MetricType::Distribution);
        let set = metric("input.income:40K - 60K €|s|#model:m");
        assert_eq!(set.kind, MetricType::Set);
        assert_eq!(set.values, "40K - 60K €");
    }

    #[test]
    fn unknown_sections_are_ignored() {
        let m = metric("a:1|c|#t:1|c:abc123|e:it-false");
        assert_eq!(m.tags, "t:1");
    }

    #[test]
    fn events_and_service_checks() {
        assert_eq!(parse_line("_e{5,4}:title|text"), Ok(Parsed::Event));
        assert_eq!(parse_line("_sc|check|0"), Ok(Parsed::ServiceCheck));
    }

    #[test]
    fn malformed_lines() {
        refused("a:1", Malformed::MissingType);
        refused("a:1|", Malformed::MissingType);
        refused("a:1|x", Malformed::UnknownType);
        refused("a|c", Malformed::MissingValue);
        refused(":1|c", Malformed::MissingValue);
        refused("a:1|c|@0", Malformed::InvalidSampleRate);
        refused("a:1|c|@1.5", Malformed::InvalidSampleRate);
        refused("a:1|c|@x", Malformed::InvalidSampleRate);
        refused("a:1|c|Tsoon", Malformed::InvalidTimestamp);
        assert_eq!(parse_value("NaN"), Err(Malformed::NonFinite));
        assert_eq!(parse_value("inf"), Err(Malformed::NonFinite));
        assert_eq!(parse_value("12x"), Err(Malformed::InvalidValue));
        assert_eq!(parse_value("-3.5"), Ok(-3.5));
        assert_eq!(parse_value(""), Err(Malformed::MissingValue));
        // An empty value is a metric line whose value is missing (counted per series).
        assert!(matches!(parse_line("input.x:|h"), Ok(Parsed::Metric(_))));
    }

    /// The parser before the byte scanner (issue 16): `str::split_once` at each separator.
    /// The scanner must agree with it on every line.
    fn reference_parse_line(line: &str) -> Result<Parsed<'_>, Malformed> {
        if line.starts_with("_e{") {
            return Ok(Parsed::Event);
        }
        if line.starts_with("_sc|") {
            return Ok(Parsed::ServiceCheck);
        }
        let (head, rest) = line.split_once('|').ok_or(Malformed::MissingType)?;
        let (name, values) = head.split_once(':').ok_or(Malformed::MissingValue)?;
        if name.is_empty() {
            return Err(Malformed::MissingValue);
        }
        let (type_str, mut sections) = match rest.split_once('|') {
            Some((t, s)) => (t, s),
            None => (rest, ""),
        };
        let kind = match type_str {
            "c" => MetricType::Counter,
            "g" => MetricType::Gauge,
            "ms" => MetricType::Timer,
            "h" => MetricType::Histogram,
            "d" => MetricType::Distribution,
            "s" => MetricType::Set,
            "" => return Err(Malformed::MissingType),
            _ => return Err(Malformed::UnknownType),
        };
        let mut parsed = MetricLine {
            name,
            values,
            kind,
            rate: 1.0,
            tags: "",
            timestamp: None,
        };
        while !sections.is_empty() {
            let (section, more) = match sections.split_once('|') {
                Some((s, m)) => (s, m),
                None => (sections, ""),
            };
            sections = more;
            match section.as_bytes().first() {
                Some(b'@') => {
                    let rate: f64 = section[1..]
                        .parse()
                        .map_err(|_| Malformed::InvalidSampleRate)?;
                    if !(rate > 0.0 && rate <= 1.0) {
                        return Err(Malformed::InvalidSampleRate);
                    }
                    parsed.rate = rate;
                }
                Some(b'#') => parsed.tags = &section[1..],
                Some(b'T') => {
                    let ts: i64 = section[1..]
                        .parse()
                        .map_err(|_| Malformed::InvalidTimestamp)?;
                    parsed.timestamp = Some(ts);
                }
                // Container ids (`c:`), external data (`e:`) and future sections are ignored,
                // as the Datadog agent does.
                _ => {}
            }
        }
        Ok(Parsed::Metric(parsed))
    }

    proptest::proptest! {
        #[test]
        fn the_scanner_parses_as_split_once_did(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "a", "req.latency", ":", "|", "#", "@", "T", "12.5", "0.5", "c", "ms", "s",
                    "d", "h", "g", "x", ",", "model:llama", "é", "_e{", "_sc", "1700000000", "",
                ]),
                0..12,
            )
        ) {
            let line: String = parts.concat();
            proptest::prop_assert_eq!(parse_line(&line), reference_parse_line(&line), "{:?}", line);
        }
    }
}
