//! Times as the API and the config write them.

/// Parses `now`, `now-1h`, RFC 3339, or Unix seconds into Unix ms.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(now_ms);
    }
    if let Some(rel) = t.strip_prefix("now-") {
        let d = humantime::parse_duration(rel).map_err(|e| format!("`{text}`: {e}"))?;
        return Ok(now_ms - d.as_millis() as i64);
    }
    if let Ok(secs) = t.parse::<f64>()
        && secs.is_finite()
        && secs.abs() < 1e13
    {
        return Ok((secs * 1000.0) as i64);
    }
    humantime::parse_rfc3339_weak(t)
        .map_err(|e| format!("`{text}` is not a time ({e}); use RFC 3339, Unix seconds or now-1h"))
        .and_then(|st| {
            st.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .map_err(|_| format!("`{text}` is before 1970"))
        })
}

/// Formats Unix ms as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
