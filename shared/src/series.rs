//! Series identity: a metric name plus sorted `key:value` tags, and the kind of data it holds.
//!
//! The canonical byte form ([`SeriesKey::to_bytes`]) is used as a storage key by the
//! aggregator, so it is part of the on-disk format:
//!
//! ```text
//! name 0x00 key1 0x1f value1 0x00 key2 0x1f value2 ...   (tags sorted by key, then value)
//! ```
//!
//! Names, tag keys and tag values never contain `0x00` or `0x1f`: [`SeriesKey::new`]
//! rejects them, so the form is unambiguous and a scan by the prefix `name 0x00` finds
//! exactly the series of one metric.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted metric name, in bytes.
pub const MAX_NAME_BYTES: usize = 200;
/// Longest accepted tag (`key:value`), in bytes.
pub const MAX_TAG_BYTES: usize = 200;
/// Most tags one series may carry (including `host`).
pub const MAX_TAGS: usize = 64;

/// The identity of an agent: its `agent_id`, also the DNS name in its client certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AgentId(pub String);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a series holds; fixed for the life of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Kind {
    /// A distribution of signed floats (timers, histograms, distributions, gauges).
    Histogram,
    /// A delta count per interval.
    Counter,
    /// Exact counts per category value, bounded (DogStatsD sets).
    Categorical,
    /// A classic (Prometheus) histogram in its own bucket layout.
    Buckets,
}

impl Kind {
    /// The lowercase name used in JSON and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Histogram => "histogram",
            Kind::Counter => "counter",
            Kind::Categorical => "categorical",
            Kind::Buckets => "buckets",
        }
    }
}

/// Why a series key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The name is empty; the sender must name its metric.
    #[error("metric name is empty")]
    EmptyName,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("metric name is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong,
    /// A tag is longer than [`MAX_TAG_BYTES`].
    #[error("tag is longer than {MAX_TAG_BYTES} bytes")]
    TagTooLong,
    /// More than [`MAX_TAGS`] tags.
    #[error("more than {MAX_TAGS} tags")]
    TooManyTags,
    /// A name or tag holds a control character (`0x00`..`0x1f`).
    #[error("metric name or tag holds a control character")]
    ControlCharacter,
}

/// A series: metric name plus tags sorted by key then value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    name: String,
    tags: Vec<(String, String)>,
}

impl SeriesKey {
    /// Builds a key, sorting the tags and checking the limits. A tag key that appears twice
    /// keeps both values (DogStatsD allows it); the order is canonical either way.
    pub fn new(name: &str, tags: Vec<(String, String)>) -> Result<Self, KeyError> {
        if name.is_empty() {
            return Err(KeyError::EmptyName);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(KeyError::NameTooLong);
        }
        if tags.len() > MAX_TAGS {
            return Err(KeyError::TooManyTags);
        }
        if has_control(name) {
            return Err(KeyError::ControlCharacter);
        }
        for (k, v) in &tags {
            if k.len() + v.len() + 1 > MAX_TAG_BYTES {
                return Err(KeyError::TagTooLong);
            }
            if has_control(k) || has_control(v) {
                return Err(KeyError::ControlCharacter);
            }
        }
        let mut tags = tags;
        tags.sort();
        Ok(SeriesKey {
            name: name.to_owned(),
            tags,
        })
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tags, sorted.
    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    /// The first value of tag `key`, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Returns the key with tag `key` set to `value`, replacing any values it had.
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.retain(|(k, _)| k != key);
        self.tags.push((key.to_owned(), value.to_owned()));
        self.tags.sort();
        self
    }

    /// True when every `(key, value)` filter is among the tags.
    pub fn matches(&self, filters: &[(String, String)]) -> bool {
        filters
            .iter()
            .all(|(k, v)| self.tags.iter().any(|(tk, tv)| tk == k && tv == v))
    }

    /// The canonical byte form (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(self.name.as_bytes());
        for (k, v) in &self.tags {
            out.push(0);
            out.extend_from_slice(k.as_bytes());
            out.push(0x1f);
            out.extend_from_slice(v.as_bytes());
        }
        out
    }

    /// The prefix shared by every series of metric `name` in canonical byte form. A series
    /// with no tags is exactly `name`; others start with `name 0x00`.
    pub fn name_prefix(name: &str) -> Vec<u8> {
        name.as_bytes().to_vec()
    }

    /// Parses the canonical byte form back; `None` when it is not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split('\0');
        let name = parts.next()?;
        let mut tags = Vec::new();
        for part in parts {
            let (k, v) = part.split_once('\x1f')?;
            tags.push((k.to_owned(), v.to_owned()));
        }
        SeriesKey::new(name, tags).ok()
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.tags.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.tags.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}:{v}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

fn has_control(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20)
}

/// Parses `k:v` (or a bare `k`, whose value is empty) into a tag pair.
pub fn parse_tag(tag: &str) -> (String, String) {
    match tag.split_once(':') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (tag.to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tags_are_sorted_and_bytes_round_trip() {
        let key = SeriesKey::new("lat", tags(&[("model", "m"), ("host", "h")])).unwrap();
        assert_eq!(key.tags()[0].0, "host");
        let back = SeriesKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(back, key);
        assert_eq!(key.to_string(), "lat{host:h,model:m}");
    }

    #[test]
    fn limits_and_control_characters_are_refused() {
        assert_eq!(SeriesKey::new("", vec![]), Err(KeyError::EmptyName));
        assert_eq!(
            SeriesKey::new(&"x".repeat(201), vec![]),
            Err(KeyError::NameTooLong)
        );
        assert_eq!(
            SeriesKey::new("a\0b", vec![]),
            Err(KeyError::ControlCharacter)
        );
        let many = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(SeriesKey::new("a", many), Err(KeyError::TooManyTags));
    }

    #[test]
    fn with_tag_replaces_and_matches_filters() {
        let key = SeriesKey::new("lat", tags(&[("host", "evil")]))
            .unwrap()
            .with_tag("host", "good");
        assert_eq!(key.tag("host"), Some("good"));
        assert!(key.matches(&tags(&[("host", "good")])));
        assert!(!key.matches(&tags(&[("host", "evil")])));
    }
}
