//! Who may read what on the HTTP API: bearer tokens, kept as SHA-256 digests in a file, each
//! with scopes.
//!
//! The tokens file holds one token per line, `SHA256-HEX SCOPE[,SCOPE…] LABEL`, `#` comments
//! (the label names the holder in logs and the audit trail; it may hold spaces):
//!
//! ```text
//! # pitot tokens new --name grafana --scope read
//! 6e0d2c…(64 hex)  read                                    grafana
//! 9f86d0…          read:model:llama3,read:model:embedder   llama team
//! 2c26b4…          audit                                   auditor
//! ```
//!
//! Scopes: `read` (every report), `read:model:<name>` (only that model's series, reports, SLOs,
//! drift and costs), `audit` (`/api/v1/audit`), `admin` (all of them). The file never holds a
//! token, only its digest; a presented token is hashed and compared with every digest in
//! constant time (`subtle`), so neither timing nor logs give one away.

use std::collections::BTreeSet;
use std::path::Path;

use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

use crate::model::ModelDefinition;

/// The largest tokens file read (a line per token; far more than any fleet needs).
pub const MAX_TOKENS_FILE_BYTES: u64 = 1 << 20;

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Every report.
    Read,
    /// One model's series and reports.
    ReadModel(String),
    /// The audit trail.
    Audit,
    /// Everything.
    Admin,
}

impl Scope {
    /// Parses `read`, `read:model:<name>`, `audit`, `admin`.
    pub fn parse(text: &str) -> Result<Scope, String> {
        match text {
            "read" => Ok(Scope::Read),
            "audit" => Ok(Scope::Audit),
            "admin" => Ok(Scope::Admin),
            other => match other.strip_prefix("read:model:") {
                Some(m) if !m.is_empty() && !m.contains(',') => Ok(Scope::ReadModel(m.to_owned())),
                _ => Err(format!(
                    "scope `{other}` is not one of read, read:model:<name>, audit, admin"
                )),
            },
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Read => f.write_str("read"),
            Scope::ReadModel(m) => write!(f, "read:model:{m}"),
            Scope::Audit => f.write_str("audit"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

/// One line of the tokens file.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    /// Name (who holds it), for logs and the audit trail.
    pub name: String,
    digest: [u8; 32],
    /// Scopes.
    pub scopes: Vec<Scope>,
}

/// The tokens file, parsed.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

/// SHA-256 of a token.
pub fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// A new token: `pitot_` and 32 random bytes from the operating system (ring's
/// `SystemRandom`), in hex.
pub fn new_token() -> Result<String, String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the operating system gave no random bytes".to_owned())?;
    Ok(format!("pitot_{}", hex(&bytes)))
}

/// The tokens-file line of a token.
pub fn file_line(name: &str, token: &str, scopes: &[Scope]) -> String {
    let scopes: Vec<String> = scopes.iter().map(Scope::to_string).collect();
    format!("{} {} {name}", hex(&token_digest(token)), scopes.join(","))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Parses the file's text; every bad line is named with its fix.
    pub fn parse(text: &str) -> Result<Tokens, Vec<String>> {
        let mut entries: Vec<TokenEntry> = Vec::new();
        let mut problems = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(hexdigest), Some(scopes)) = (fields.next(), fields.next()) else {
                problems.push(format!(
                    "line {n}: write SHA256-HEX SCOPES LABEL (as `pitot tokens new` prints it)"
                ));
                continue;
            };
            let label: Vec<&str> = fields.collect();
            let name = if label.is_empty() {
                hexdigest.get(..12).unwrap_or(hexdigest).to_owned()
            } else {
                label.join(" ")
            };
            let Some(digest) = unhex(hexdigest) else {
                problems.push(format!(
                    "line {n}: the digest must be 64 hex digits (SHA-256 of the token, never \
                     the token itself)"
                ));
                continue;
            };
            let mut parsed = Vec::new();
            for s in scopes.split(',') {
                match Scope::parse(s) {
                    Ok(s) => parsed.push(s),
                    Err(m) => problems.push(format!("line {n}: {m}")),
                }
            }
            if entries.iter().any(|e| e.name == name) {
                problems.push(format!("line {n}: the label `{name}` is used twice"));
            }
            entries.push(TokenEntry {
                name,
                digest,
                scopes: parsed,
            });
        }
        if problems.is_empty() {
            Ok(Tokens { entries })
        } else {
            Err(problems)
        }
    }

    /// Reads and parses a tokens file (at most [`MAX_TOKENS_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let len = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        if len > MAX_TOKENS_FILE_BYTES {
            return Err(format!(
                "{} is {len} bytes, more than the {MAX_TOKENS_FILE_BYTES} a tokens file may be",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|p| format!("{}: {}", path.display(), p.join("; ")))
    }

    /// How many tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No tokens.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose digest is the presented token's. Every digest is compared, in constant
    /// time, whichever matches.
    pub fn authenticate(&self, presented: &str) -> Option<&TokenEntry> {
        let d = token_digest(presented);
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&d)) {
                found = Some(e);
            }
        }
        found
    }
}

/// What the caller of one request may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's name (`None`: the API is open, no tokens file).
    pub name: Option<String>,
    read_all: bool,
    models: BTreeSet<String>,
    audit: bool,
}

/// The tags that select a model's series: its `[[model]]` tags, else `model:<name>`.
pub fn selector(name: &str, models: &[ModelDefinition]) -> Vec<(String, String)> {
    models.iter().find(|m| m.name == name).map_or_else(
        || vec![("model".to_owned(), name.to_owned())],
        |m| m.tags.clone(),
    )
}

impl Grant {
    /// Everything: the API without a tokens file.
    pub fn open() -> Grant {
        Grant {
            name: None,
            read_all: true,
            models: BTreeSet::new(),
            audit: true,
        }
    }

    /// What a token's scopes allow.
    pub fn of(entry: &TokenEntry) -> Grant {
        let mut g = Grant {
            name: Some(entry.name.clone()),
            read_all: false,
            models: BTreeSet::new(),
            audit: false,
        };
        for s in &entry.scopes {
            match s {
                Scope::Read => g.read_all = true,
                Scope::ReadModel(m) => {
                    g.models.insert(m.clone());
                }
                Scope::Audit => g.audit = true,
                Scope::Admin => {
                    g.read_all = true;
                    g.audit = true;
                }
            }
        }
        g
    }

    /// May read everything.
    pub fn reads_all(&self) -> bool {
        self.read_all
    }

    /// May read the audit trail.
    pub fn reads_audit(&self) -> bool {
        self.audit
    }

    /// May read this model.
    pub fn reads_model(&self, name: &str) -> bool {
        self.read_all || self.models.contains(name)
    }

    /// The models a scoped token reads (empty for `read`).
    pub fn models(&self) -> &BTreeSet<String> {
        &self.models
    }

    /// May read series carrying `tags`: everything, or one of its models' selectors is among
    /// them.
    pub fn reads_tags(&self, tags: &[(String, String)], models: &[ModelDefinition]) -> bool {
        self.read_all
            || self.models.iter().any(|m| {
                selector(m, models)
                    .iter()
                    .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
            })
    }
}

/// The cookie the report pages' login form sets; every endpoint takes it as a bearer token.
pub const COOKIE: &str = "pitot_token";

/// The token in a `Cookie` header's `pitot_token`.
pub fn cookie_token(cookie: &str) -> Option<&str> {
    cookie
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_carries_the_token() {
        assert_eq!(cookie_token("a=1; pitot_token=abc ; b=2"), Some("abc"));
        assert_eq!(cookie_token("pitot_token="), None);
        assert_eq!(cookie_token("other=1"), None);
    }

    fn line(name: &str, token: &str, scopes: &str) -> String {
        format!("{} {scopes} {name}\n", hex(&token_digest(token)))
    }

    #[test]
    fn tokens_authenticate_by_digest_and_scopes_grant() {
        let text = format!(
            "# comment\n{}{}{}\n",
            line("grafana", "pitot_aaa", "read"),
            line("llama", "pitot_bbb", "read:model:llama3"),
            line("root", "pitot_ccc", "admin")
        );
        let tokens = Tokens::parse(&text).unwrap();
        assert_eq!(tokens.len(), 3);
        assert!(tokens.authenticate("pitot_zzz").is_none());
        assert!(tokens.authenticate("").is_none());
        let llama = Grant::of(tokens.authenticate("pitot_bbb").unwrap());
        assert_eq!(llama.name.as_deref(), Some("llama"));
        assert!(llama.reads_model("llama3") && !llama.reads_model("embedder"));
        assert!(!llama.reads_all() && !llama.reads_audit());
        let mine = vec![
            ("model".to_owned(), "llama3".to_owned()),
            ("host".into(), "h1".into()),
        ];
        let theirs = vec![("model".to_owned(), "embedder".to_owned())];
        assert!(llama.reads_tags(&mine, &[]));
        assert!(!llama.reads_tags(&theirs, &[]));
        assert!(!llama.reads_tags(&[], &[]));
        let root = Grant::of(tokens.authenticate("pitot_ccc").unwrap());
        assert!(root.reads_all() && root.reads_audit());
        assert!(Grant::of(tokens.authenticate("pitot_aaa").unwrap()).reads_all());
    }

    #[test]
    fn a_new_token_and_its_line_read_back() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 6 + 64);
        assert_ne!(token, new_token().unwrap());
        let line = file_line(
            "ci",
            &token,
            &[Scope::ReadModel("llama3".into()), Scope::Audit],
        );
        assert!(
            !line.contains(&token),
            "the line holds the digest, not the token"
        );
        let tokens = Tokens::parse(&line).unwrap();
        let g = Grant::of(tokens.authenticate(&token).unwrap());
        assert!(g.reads_model("llama3") && g.reads_audit() && !g.reads_all());
    }

    #[test]
    fn bad_lines_are_named_and_a_token_in_place_of_a_digest_is_refused() {
        let problems = Tokens::parse(
            "pitot_plaintexttoken read a\n00 read b\nc\n0000000000000000000000000000000000000000000000000000000000000000 write d\n",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("line 1") && problems[0].contains("never the token"));
        assert!(problems[2].contains("SHA256-HEX SCOPES LABEL"));
        assert!(problems[3].contains("`write`"));
    }
}
