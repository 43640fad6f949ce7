//! Damage to the store's files: found, said, and survived.
//!
//! sled checks a CRC on every log record, but when it recovers a log with a damaged record it
//! keeps the prefix before it and drops the rest without a word (two zeroed 4 KiB pages in a
//! 60 KB store cost every value in it). So every flush also writes a **generation** (flush
//! count) and the total of batches merged, both into the store (tree `meta`) and, after the
//! flush succeeded, into a small file beside sled's (`pitot-store.state`). The file is never
//! ahead of what sled made durable; at open, a store whose generation is behind its file lost
//! flushed data, and the difference of the totals says how many merged batches went with it.
//!
//! sled refuses to open when its `conf` file is damaged (one flipped bit); the file only holds
//! sled's format settings, which are ours and fixed, so it is moved aside (`conf.damaged-<secs>`)
//! and sled writes a new one. A store sled still cannot open is moved aside whole, into
//! `damaged-<secs>/` inside `store.dir`, and a fresh one starts: the fleet keeps running, and
//! what the old store held stays on disk for inspection.
//!
//! `pitot-aggregator check` runs the same open and also decodes every stored value;
//! `pitot-aggregator repair` removes the values that do not decode and accepts the generation
//! found.

use std::path::{Path, PathBuf};

use tracing::{error, warn};

use super::{Resolution, SledStore, StoreError, Trees, parse_series_value, parse_span};

/// The state file beside sled's, in `store.dir`.
pub(super) const STATE_FILE: &str = "pitot-store.state";
const STATE_MAGIC: &[u8; 4] = b"PSS1";

/// What was found wrong with the store when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// sled's `conf` file was damaged and rebuilt; no data was lost.
    ConfRebuilt {
        /// Where the damaged file went.
        moved_to: PathBuf,
    },
    /// The store lost flushed data: its generation is behind the state file's.
    LostFlushes {
        /// Generation in the store.
        found: u64,
        /// Generation the state file recorded.
        expected: u64,
        /// Merged batches lost (the difference of the recorded totals).
        lost_batches: u64,
    },
    /// sled could not open the store at all: it was moved aside and a fresh one started.
    MovedAside {
        /// Where it went.
        moved_to: PathBuf,
        /// sled's error.
        error: String,
    },
}

impl Damage {
    /// One line for the log and the audit trail.
    pub fn describe(&self) -> String {
        match self {
            Damage::ConfRebuilt { moved_to } => format!(
                "sled's conf file was damaged; moved to {} and rebuilt (no data lost)",
                moved_to.display()
            ),
            Damage::LostFlushes {
                found,
                expected,
                lost_batches,
            } => format!(
                "the store lost flushed data: generation {found} where {expected} was written; \
                 {lost_batches} merged batches are gone (agents kept only what was not yet \
                 acknowledged)"
            ),
            Damage::MovedAside { moved_to, error } => format!(
                "the store could not be opened ({error}); moved to {} and a fresh store \
                 started: everything it held is out of service",
                moved_to.display()
            ),
        }
    }

    /// True when data was lost (not only rebuilt).
    pub fn lost_data(&self) -> bool {
        !matches!(self, Damage::ConfRebuilt { .. })
    }
}

fn secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The generation and merged total as stored: `(generation, merged)`.
pub(super) fn stored_state(t: &Trees) -> Result<(u64, u64), StoreError> {
    let word = |k: &str| -> Result<u64, StoreError> {
        Ok(t.meta
            .get(k)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    };
    Ok((word("generation")?, word("merged")?))
}

/// Reads the state file: `None` when missing, short or damaged (then nothing is checked).
pub(super) fn read_state_file(dir: &Path) -> Option<(u64, u64)> {
    let bytes = std::fs::read(dir.join(STATE_FILE)).ok()?;
    if bytes.len() != 24 || &bytes[..4] != STATE_MAGIC {
        return None;
    }
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let (g, m) = (word(4)?, word(12)?);
    let crc = u32::from_le_bytes(bytes.get(20..24)?.try_into().ok()?);
    (crc32fast::hash(&bytes[..20]) == crc).then_some((g, m))
}

/// Writes the state file (after a flush succeeded). Not synced: a state file lost to a crash
/// is behind the store, which is never taken for damage.
pub(super) fn write_state_file(dir: &Path, generation: u64, merged: u64) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(STATE_MAGIC);
    bytes.extend_from_slice(&generation.to_le_bytes());
    bytes.extend_from_slice(&merged.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))
}

/// Opens the trees and says what was wrong. With `fix`, a damaged `conf` is rebuilt and a store
/// sled cannot open is moved aside for a fresh one; without (`check`), that is an error.
pub(super) fn open_checked(
    dir: &Path,
    resolutions: &[Resolution],
    now_ms: i64,
    fix: bool,
) -> Result<(Trees, Vec<Damage>), StoreError> {
    let mut damage = Vec::new();
    let first = super::open_trees(dir, resolutions.to_vec(), now_ms);
    let trees = match first {
        Err(e) if !fix => return Err(e),
        Err(StoreError::Sled(sled::Error::Corruption { .. })) if dir.join("conf").exists() => {
            let moved_to = dir.join(format!("conf.damaged-{}", secs()));
            std::fs::rename(dir.join("conf"), &moved_to).map_err(sled::Error::Io)?;
            match super::open_trees(dir, resolutions.to_vec(), now_ms) {
                Ok(t) => {
                    damage.push(Damage::ConfRebuilt { moved_to });
                    t
                }
                Err(e) if !e.is_disk_full() => {
                    // Not the conf: put it back with the rest, and move the store aside.
                    let _back = std::fs::rename(&moved_to, dir.join("conf"));
                    let (t, d) = move_aside_and_open(dir, resolutions, now_ms, &e)?;
                    damage.push(d);
                    t
                }
                Err(e) => return Err(e),
            }
        }
        Err(e @ StoreError::Sled(sled::Error::Corruption { .. })) => {
            let (t, d) = move_aside_and_open(dir, resolutions, now_ms, &e)?;
            damage.push(d);
            t
        }
        other => other?,
    };
    if let Some((expected, merged_then)) = read_state_file(dir) {
        let (found, merged_now) = stored_state(&trees)?;
        if found < expected {
            damage.push(Damage::LostFlushes {
                found,
                expected,
                lost_batches: merged_then.saturating_sub(merged_now),
            });
        }
    }
    for d in &damage {
        if d.lost_data() {
            error!(store = %dir.display(), "Store damaged: {}.", d.describe());
        } else {
            warn!(store = %dir.display(), "Store repaired: {}.", d.describe());
        }
    }
    Ok((trees, damage))
}

fn move_aside_and_open(
    dir: &Path,
    resolutions: &[Resolution],
    now_ms: i64,
    why: &StoreError,
) -> Result<(Trees, Damage), StoreError> {
    // Inside store.dir, which may be a mount point that cannot itself be renamed.
    let moved_to = dir.join(format!("damaged-{}", secs()));
    std::fs::create_dir_all(&moved_to).map_err(sled::Error::Io)?;
    for entry in std::fs::read_dir(dir).map_err(sled::Error::Io)? {
        let entry = entry.map_err(sled::Error::Io)?;
        let name = entry.file_name();
        let keep = name.to_string_lossy().starts_with("damaged-");
        if !keep {
            std::fs::rename(entry.path(), moved_to.join(&name)).map_err(sled::Error::Io)?;
        }
    }
    let trees = super::open_trees(dir, resolutions.to_vec(), now_ms)?;
    Ok((
        trees,
        Damage::MovedAside {
            moved_to,
            error: why.to_string(),
        },
    ))
}

/// What `check` found in one tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeCheck {
    /// Tree name.
    pub tree: &'static str,
    /// Entries read.
    pub entries: u64,
    /// Keys whose value does not decode (or could not be read).
    pub bad: Vec<Vec<u8>>,
}

/// Decodes every value the store holds: each tree's findings, with the tree.
fn check_trees(t: &Trees) -> Vec<(TreeCheck, &sled::Tree)> {
    type Valid = fn(&[u8], &[u8]) -> bool;
    let trees: [(&'static str, &sled::Tree, Valid); 5] = [
        ("series", &t.series, |_, v| parse_series_value(v).is_some()),
        ("buckets", &t.buckets, |k, v| {
            k.len() != 17 || pitot_shared::wire::decode_data(v).is_ok()
        }),
        ("agents", &t.agents, |_, v| {
            bincode::serde::decode_from_slice::<super::AgentRecord, _>(v, super::bincode_config())
                .is_ok()
        }),
        ("dedupe", &t.dedupe, |_, v| v.len() == 8 || v.len() == 16),
        ("sightings", &t.sightings, |_, v| parse_span(v).is_some()),
    ];
    let mut out = Vec::new();
    for (tree, handle, valid) in trees {
        let mut check = TreeCheck {
            tree,
            entries: 0,
            bad: Vec::new(),
        };
        for entry in handle.iter() {
            check.entries += 1;
            match entry {
                Ok((k, v)) if valid(&k, &v) => {}
                Ok((k, _)) => check.bad.push(k.to_vec()),
                // An unreadable entry has no key to name.
                Err(_) => check.bad.push(Vec::new()),
            }
        }
        out.push((check, handle));
    }
    out
}

impl SledStore {
    /// What was found wrong when this store was opened (see the module docs).
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// Decodes every stored value (`pitot-aggregator check`).
    pub fn check(&self) -> Result<Vec<TreeCheck>, StoreError> {
        let t = self.trees()?;
        Ok(check_trees(&t)
            .into_iter()
            .map(|(check, _)| check)
            .collect())
    }

    /// Removes the values `check` calls bad and accepts the generation found, so the next
    /// open is clean (`pitot-aggregator repair`); returns how many values were removed.
    pub fn repair(&mut self) -> Result<u64, StoreError> {
        let t = self.trees()?;
        let mut removed = 0;
        for (check, handle) in check_trees(&t) {
            for key in check.bad.iter().filter(|k| !k.is_empty()) {
                handle.remove(key.as_slice())?;
                removed += 1;
            }
        }
        drop(t);
        self.flush()?;
        Ok(removed)
    }
}
