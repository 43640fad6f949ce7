//! Configuration pieces both binaries share: durations, byte sizes, TLS paths, and the error
//! collector that lets `validate` report every problem in a file at once.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One problem in a config file: the dotted key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the key, e.g. `uplink.ca`.
    pub key: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
#[non_exhaustive]
pub struct ConfigError {
    /// The problems, in the order found.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the configuration", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// Records a problem with `key`.
    pub fn push(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// `Ok(value)` when no problem was recorded.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Parses a duration like `10s`, `1m30s` or `500ms`, recording a problem on failure.
    pub fn duration(&mut self, key: &str, text: &str) -> Option<Duration> {
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(key, e);
                None
            }
        }
    }

    /// Parses a byte size like `256MiB` or `1GB`, recording a problem on failure.
    pub fn bytes(&mut self, key: &str, text: &str) -> Option<u64> {
        match parse_bytes(text) {
            Ok(b) => Some(b),
            Err(e) => {
                self.push(key, e);
                None
            }
        }
    }
}

/// Parses a positive duration (`10s`, `1m`, `500ms`, `2d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "`{text}` is not a duration ({e}); write a number and a unit, like \"10s\" or \"5m\""
        )
    })?;
    if d.is_zero() {
        return Err(format!(
            "`{text}` is zero; use a positive duration like \"10s\""
        ));
    }
    Ok(d)
}

/// Parses a byte size (`256MiB`, `1GB`, `4096`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{text}` is not a byte size ({e}); write e.g. \"256MiB\""))
}

/// Paths of a TLS identity and the CA that authenticates peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsPaths {
    /// PEM file of the CA that signs the peer's certificate.
    pub ca: PathBuf,
    /// PEM certificate chain of this end.
    pub cert: PathBuf,
    /// PEM private key of this end.
    pub key: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_duration(text: &str, want: Option<Duration>) {
        assert_eq!(parse_duration(text).ok(), want, "{text}");
    }

    #[test]
    fn durations() {
        check_duration("10s", Some(Duration::from_secs(10)));
        check_duration("1m", Some(Duration::from_secs(60)));
        check_duration("500ms", Some(Duration::from_millis(500)));
        check_duration("0s", None);
        check_duration("ten", None);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_bytes("1KB"), Ok(1000));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn errors_collect_and_name_keys() {
        let mut e = ConfigError::default();
        assert!(e.duration("interval", "soon").is_none());
        assert!(e.bytes("spool.max_bytes", "big").is_none());
        let text = e.clone().finish(()).unwrap_err().to_string();
        assert!(text.contains("`interval`"));
        assert!(text.contains("`spool.max_bytes`"));
    }
}
