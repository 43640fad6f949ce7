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
                self.push(key, e.to_string());
                None
            }
        }
    }

    /// Parses `k:v` tags (`["model:llama3"]`), recording a problem for each that is not one.
    pub fn tags(&mut self, key: &str, tags: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for t in tags {
            match t.split_once(':') {
                Some((k, v)) if !k.is_empty() => out.push((k.to_owned(), v.to_owned())),
                _ => self.push(
                    key,
                    format!("tag `{t}` must be key:value, e.g. \"model:llama3\""),
                ),
            }
        }
        out
    }

    /// Parses a byte size like `256MiB` or `1GB`, recording a problem on failure.
    pub fn bytes(&mut self, key: &str, text: &str) -> Option<u64> {
        match parse_bytes(text) {
            Ok(b) => Some(b),
            Err(e) => {
                self.push(key, e.to_string());
                None
            }
        }
    }
}

/// A config value that is not what its key takes; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Not a duration.
    #[error(
        "`{text}` is not a duration ({reason}); write a number and a unit, like \"10s\" or \"5m\""
    )]
    NotADuration {
        /// As written.
        text: String,
        /// The parser's reason.
        reason: String,
    },
    /// A duration of zero where a positive one is needed.
    #[error("`{text}` is zero; use a positive duration like \"10s\"")]
    ZeroDuration {
        /// As written.
        text: String,
    },
    /// Not a byte size.
    #[error("`{text}` is not a byte size ({reason}); write e.g. \"256MiB\"")]
    NotAByteSize {
        /// As written.
        text: String,
        /// The parser's reason.
        reason: String,
    },
}

/// Parses a positive duration (`10s`, `1m`, `500ms`, `2d`).
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| ValueError::NotADuration {
        text: text.to_owned(),
        reason: e.to_string(),
    })?;
    if d.is_zero() {
        return Err(ValueError::ZeroDuration {
            text: text.to_owned(),
        });
    }
    Ok(d)
}

/// Parses a byte size (`256MiB`, `1GB`, `4096`).
pub fn parse_bytes(text: &str) -> Result<u64, ValueError> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| ValueError::NotAByteSize {
            text: text.to_owned(),
            reason: e.to_string(),
        })
}

/// Deserializes a byte size written either as text (`"64KiB"`) or as a bare integer of bytes
/// (`8192`), into the text [`parse_bytes`] reads. For `#[serde(deserialize_with = …)]`.
pub fn byte_size_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Bytes(u64),
        Text(String),
    }
    Ok(match Text::deserialize(d)? {
        Text::Bytes(n) => format!("{n}B"),
        Text::Text(t) => t,
    })
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

/// Why a config text with environment overrides could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OverrideError {
    /// The TOML (or the document after overrides) does not parse into the config type.
    #[error("{0}")]
    Parse(String),
    /// An override names an impossible key.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Deserializes a config file's text after applying the `PREFIX__…` overrides among `vars`
/// ([`apply_env_overrides`]). Without any override the text is parsed directly, so errors keep
/// their line and column.
pub fn parse_toml_with_env<T: serde::de::DeserializeOwned>(
    text: &str,
    prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, OverrideError> {
    let head = format!("{prefix}__");
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(&head))
        .collect();
    if vars.is_empty() {
        return toml::from_str(text).map_err(|e| OverrideError::Parse(e.to_string()));
    }
    let mut doc: toml::Table =
        toml::from_str(text).map_err(|e| OverrideError::Parse(e.to_string()))?;
    apply_env_overrides(&mut doc, prefix, vars)?;
    toml::Value::Table(doc)
        .try_into()
        .map_err(|e: toml::de::Error| {
            OverrideError::Parse(format!("{e} (after {prefix}__* environment overrides)"))
        })
}

/// Why a daemon's config file could not be loaded (both daemons report it the same way).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, or unknown keys.
    #[error("{path} is not a valid {kind} config: {message}")]
    Parse {
        /// The path.
        path: std::path::PathBuf,
        /// Whose config (`agent`, `aggregator`).
        kind: &'static str,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// Values are invalid.
    #[error("{path}: {source}")]
    Invalid {
        /// The path.
        path: std::path::PathBuf,
        /// Every problem.
        source: ConfigError,
    },
}

/// [`parse_toml_with_env`] for the file at `path` (the `kind` of config), its errors as
/// [`LoadError`]s.
pub fn parse_file_with_env<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &std::path::Path,
    kind: &'static str,
    prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, LoadError> {
    parse_toml_with_env(text, prefix, vars).map_err(|e| match e {
        OverrideError::Invalid(source) => LoadError::Invalid {
            path: path.to_owned(),
            source,
        },
        other => LoadError::Parse {
            path: path.to_owned(),
            kind,
            message: other.to_string(),
        },
    })
}

/// Sets `path` (table names, then the key) in `table` to `value`, creating tables on the way;
/// `Err(segment)` when a segment names a value that is not a table.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Ok(()),
        [key] => {
            table.insert(key.clone(), value);
            Ok(())
        }
        [head, rest @ ..] => match table
            .entry(head.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(inner) => set_path(inner, rest, value),
            _ => Err(head.clone()),
        },
    }
}

/// Applies environment overrides to a parsed config file. A variable
/// `PREFIX__SECTION__KEY=value` (e.g. `PITOT_AGENT__UPLINK__AGGREGATOR=agg:7443`) sets
/// `[section] key`; `PREFIX__KEY` sets a top-level key. Names are lower-cased. The value is read
/// as a TOML value when it is one (`true`, `8`, `["a:b"]`) and as a string otherwise
/// (`/run/credentials/x.pem`, `10s`). Other variables are ignored. Returns the dotted keys
/// set, for the startup log; a variable naming a key inside a non-table value is an error.
pub fn apply_env_overrides(
    doc: &mut toml::Table,
    prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut errors = ConfigError::default();
    let mut applied = Vec::new();
    let head = format!("{prefix}__");
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(&head) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        let key = path.join(".");
        if path.iter().any(String::is_empty) {
            errors.push(&key, format!("`{name}`: empty key segment"));
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        match set_path(doc, &path, value) {
            Ok(()) => applied.push(key),
            Err(segment) => errors.push(&key, format!("`{name}`: `{segment}` is not a table")),
        }
    }
    errors.finish(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_set_keys_with_typed_values() {
        let mut doc: toml::Table =
            toml::from_str("interval = \"10s\"\n[uplink]\nca = \"/etc/ca.pem\"\n").expect("toml");
        let vars = [
            (
                "PITOT_AGENT__UPLINK__CA",
                "/run/credentials/pitot-agent.service/ca.pem",
            ),
            ("PITOT_AGENT__INTERVAL", "1s"),
            ("PITOT_AGENT__LIMITS__MAX_SERIES", "500"),
            ("PITOT_AGENT__DOGSTATSD__UDP", "\"\""),
            ("PITOT_AGENT_CONFIG", "/etc/pitot/agent.toml"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let applied = apply_env_overrides(&mut doc, "PITOT_AGENT", vars).expect("applied");
        assert_eq!(applied.len(), 4);
        assert_eq!(
            doc["uplink"]["ca"].as_str(),
            Some("/run/credentials/pitot-agent.service/ca.pem")
        );
        assert_eq!(doc["interval"].as_str(), Some("1s"));
        assert_eq!(doc["limits"]["max_series"].as_integer(), Some(500));
        assert_eq!(doc["dogstatsd"]["udp"].as_str(), Some(""));
        let bad = apply_env_overrides(
            &mut doc,
            "PITOT_AGENT",
            [("PITOT_AGENT__INTERVAL__X".to_owned(), "1".to_owned())],
        )
        .unwrap_err();
        assert_eq!(bad.problems[0].key, "interval.x");
    }

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
