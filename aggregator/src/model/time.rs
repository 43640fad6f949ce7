//! Times as the API and the config write them.

/// A time as queries and the config write it (`now`, `now-1h`, RFC 3339, Unix seconds), parsed
/// once and resolved against "now" when it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// So many ms before now (`now` is 0).
    Ago(i64),
    /// A fixed instant, Unix ms.
    At(i64),
}

impl TimeSpec {
    /// Parses `now`, `now-1h`, RFC 3339, or Unix seconds.
    pub fn parse(text: &str) -> Result<TimeSpec, String> {
        let t = text.trim();
        if t == "now" {
            return Ok(TimeSpec::Ago(0));
        }
        if let Some(rel) = t.strip_prefix("now-") {
            let d = humantime::parse_duration(rel).map_err(|e| format!("`{text}`: {e}"))?;
            return Ok(TimeSpec::Ago(d.as_millis() as i64));
        }
        if let Ok(secs) = t.parse::<f64>()
            && secs.is_finite()
        {
            // Past the year 5000: Unix milliseconds (or nanoseconds) given where seconds go.
            if secs.abs() >= 1e11 {
                return Err(format!(
                    "`{text}` is too far from now for Unix seconds (it looks like milliseconds: \
                     give seconds, e.g. {}, or RFC 3339)",
                    (secs / 1000.0).trunc()
                ));
            }
            return Ok(TimeSpec::At((secs * 1000.0) as i64));
        }
        humantime::parse_rfc3339_weak(t)
            .map_err(|e| {
                format!("`{text}` is not a time ({e}); use RFC 3339, Unix seconds or now-1h")
            })
            .and_then(|st| {
                st.duration_since(std::time::UNIX_EPOCH)
                    .map(|d| TimeSpec::At(d.as_millis() as i64))
                    .map_err(|_| format!("`{text}` is before 1970"))
            })
    }

    /// Unix ms, with "now" at `now_ms`.
    pub fn at(self, now_ms: i64) -> i64 {
        match self {
            TimeSpec::Ago(ms) => now_ms - ms,
            TimeSpec::At(ms) => ms,
        }
    }
}

/// Parses `now`, `now-1h`, RFC 3339, or Unix seconds into Unix ms.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    Ok(TimeSpec::parse(text)?.at(now_ms))
}

/// Formats Unix ms as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_spec_is_parsed_once_and_resolved_at_each_use() {
        let week = TimeSpec::parse("now-7d").expect("relative");
        assert_eq!(week, TimeSpec::Ago(7 * 86_400_000));
        assert_eq!(week.at(10 * 86_400_000), 3 * 86_400_000);
        assert_eq!(week.at(11 * 86_400_000), 4 * 86_400_000);
        assert_eq!(TimeSpec::parse("now"), Ok(TimeSpec::Ago(0)));
        let fixed = TimeSpec::parse("2026-12-01T00:00:00Z").expect("rfc3339");
        assert_eq!(fixed.at(0), fixed.at(1 << 40));
        assert_eq!(
            TimeSpec::parse("1764547200"),
            Ok(TimeSpec::At(1_764_547_200_000))
        );
        assert!(TimeSpec::parse("yesterday").is_err());
        let ms = TimeSpec::parse("1764547200000").expect_err("ms are not seconds");
        assert!(ms.contains("give seconds, e.g. 1764547200"), "{ms}");
    }
}
