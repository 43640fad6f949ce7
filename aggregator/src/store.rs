//! The aggregator's store: sled behind the [`Store`] trait (the only module that touches sled).
//!
//! Trees and keys:
//!
//! ```text
//! "series":  SeriesKey::to_bytes()               → id: u64 BE, kind: u8
//! "buckets": resolution: u8, id: u64 BE, start   → bincode(SeriesData)
//!            (start = Unix ms as i64, sign bit flipped, big-endian, so keys sort by time)
//! "dedupe":  agent_id, 0x00, epoch: u64 BE       → last merged seq: u64 BE
//! "agents":  agent_id                            → bincode(AgentRecord)
//! ```
//!
//! [`Store::merge_batch`] runs one sled transaction over all four trees: it checks the batch's
//! sequence number against the high-water mark of its `(agent, epoch)`, adds every series into
//! its bucket at every resolution (histograms add, counters add), and moves the mark. So a
//! batch is merged entirely or not at all, and exactly once; the caller flushes before it
//! acknowledges. Batches of one epoch arrive in sequence order (one QUIC stream, a FIFO spool),
//! which is what makes a single high-water mark per epoch enough.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pitot_shared::batch::{Batch, SeriesData};
use pitot_shared::series::{Kind, SeriesKey};
use pitot_shared::window::align_down;
use pitot_shared::wire::{decode_data, encode_data};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// A storage resolution: bucket length and how long buckets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// One-byte code in bucket keys.
    pub code: u8,
    /// Bucket length.
    pub bucket: Duration,
    /// Retention.
    pub retention: Duration,
}

impl Resolution {
    /// Bucket length in ms.
    pub fn bucket_ms(&self) -> u64 {
        self.bucket.as_millis() as u64
    }

    /// `10s`, `1m`, `1h`.
    pub fn label(&self) -> String {
        let secs = self.bucket.as_secs();
        if secs.is_multiple_of(3600) {
            format!("{}h", secs / 3600)
        } else if secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    }
}

/// What the aggregator knows about an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Agent id (from its certificate).
    pub agent_id: String,
    /// Build version it reported.
    pub version: String,
    /// First batch merged, Unix ms.
    pub first_seen_ms: i64,
    /// Last batch received, Unix ms.
    pub last_batch_ms: i64,
    /// End of the newest interval merged, Unix ms.
    pub last_interval_end_ms: i64,
    /// Receive time minus interval end of the last batch, ms.
    pub lag_ms: i64,
    /// Spool bytes it reported in its last batch.
    pub spool_bytes: u64,
    /// Batches merged.
    pub batches: u64,
    /// Replays acknowledged without merging.
    pub duplicates: u64,
}

/// How a merge went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Merged now.
    Merged {
        /// Series merged.
        series: usize,
        /// Series refused because their kind differs from the stored one.
        kind_conflicts: usize,
    },
    /// Merged before; nothing changed.
    Duplicate,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled failed (I/O, corruption).
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

/// The store's operations, so sled can be replaced.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Merges a batch exactly once (see the module docs). Not durable until [`Store::flush`].
    fn merge_batch(&self, batch: &Batch, received_ms: i64) -> Result<MergeOutcome, StoreError>;
    /// Makes every merge so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Series whose name is `name` (or starts with it, when it ends in `*`; all when `None`)
    /// and that carry every tag filter.
    fn series(
        &self,
        name: Option<&str>,
        filters: &[(String, String)],
    ) -> Result<Vec<(SeriesKey, Kind)>, StoreError>;
    /// The buckets of `series` at `resolution` whose start lies in `[from_ms, to_ms)`.
    fn read(
        &self,
        series: &SeriesKey,
        resolution: &Resolution,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, SeriesData)>, StoreError>;
    /// Every agent seen.
    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError>;
    /// Deletes buckets past their retention; returns how many.
    fn prune(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// The resolutions kept, finest first.
    fn resolutions(&self) -> &[Resolution];
}

/// The sled implementation.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    series: sled::Tree,
    buckets: sled::Tree,
    dedupe: sled::Tree,
    agents: sled::Tree,
    resolutions: Vec<Resolution>,
}

fn time_key(t_ms: i64) -> [u8; 8] {
    ((t_ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from_key(bytes: &[u8]) -> Option<i64> {
    let raw = u64::from_be_bytes(bytes.try_into().ok()?);
    Some((raw ^ (1 << 63)) as i64)
}

fn bucket_key(res: u8, id: u64, start_ms: i64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = res;
    k[1..9].copy_from_slice(&id.to_be_bytes());
    k[9..].copy_from_slice(&time_key(start_ms));
    k
}

fn kind_code(kind: Kind) -> u8 {
    match kind {
        Kind::Histogram => 1,
        Kind::Counter => 2,
        Kind::Categorical => 3,
        _ => 0,
    }
}

fn kind_from_code(code: u8) -> Option<Kind> {
    match code {
        1 => Some(Kind::Histogram),
        2 => Some(Kind::Counter),
        3 => Some(Kind::Categorical),
        _ => None,
    }
}

fn series_value(id: u64, kind: Kind) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[..8].copy_from_slice(&id.to_be_bytes());
    v[8] = kind_code(kind);
    v
}

fn parse_series_value(bytes: &[u8]) -> Option<(u64, Kind)> {
    if bytes.len() != 9 {
        return None;
    }
    let id = u64::from_be_bytes(bytes[..8].try_into().ok()?);
    Some((id, kind_from_code(bytes[8])?))
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1024 * 1024 }>()
}

impl SledStore {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path, resolutions: Vec<Resolution>) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .open()?;
        Ok(SledStore {
            series: db.open_tree("series")?,
            buckets: db.open_tree("buckets")?,
            dedupe: db.open_tree("dedupe")?,
            agents: db.open_tree("agents")?,
            db,
            resolutions,
        })
    }

    fn series_id(&self, key: &[u8], kind: Kind) -> Result<(u64, Kind), StoreError> {
        if let Some(v) = self.series.get(key)? {
            return parse_series_value(&v)
                .ok_or_else(|| StoreError::Corrupt("series index entry".into()));
        }
        let id = self.db.generate_id()?;
        // Only the merge actor writes, so nobody can insert this key between get and insert;
        // compare_and_swap keeps it correct even if that changes.
        match self.series.compare_and_swap(
            key,
            None as Option<&[u8]>,
            Some(&series_value(id, kind)[..]),
        )? {
            Ok(()) => Ok((id, kind)),
            Err(current) => current
                .current
                .as_deref()
                .and_then(parse_series_value)
                .ok_or_else(|| StoreError::Corrupt("series index entry".into())),
        }
    }
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

impl Store for SledStore {
    fn merge_batch(&self, batch: &Batch, received_ms: i64) -> Result<MergeOutcome, StoreError> {
        // Series ids are assigned outside the transaction; an id for a batch that later turns
        // out to be a duplicate is harmless (the series simply has no buckets yet).
        let mut targets = Vec::with_capacity(batch.series.len());
        let mut kind_conflicts = 0;
        for s in &batch.series {
            let kind = s.data.kind();
            let (id, stored_kind) = self.series_id(&s.key.to_bytes(), kind)?;
            if stored_kind == kind {
                targets.push((id, &s.data));
            } else {
                kind_conflicts += 1;
            }
        }
        let mut dedupe_key = batch.agent_id.0.as_bytes().to_vec();
        dedupe_key.push(0);
        dedupe_key.extend_from_slice(&batch.epoch.to_be_bytes());
        let agent_key = batch.agent_id.0.as_bytes();
        let interval_end = batch.interval_start_ms + batch.interval_ms as i64;
        let outcome = (&self.buckets, &self.dedupe, &self.agents).transaction(
            |(buckets, dedupe, agents)| {
                let mut record: AgentRecord = match agents.get(agent_key)? {
                    Some(v) => bincode::serde::decode_from_slice(&v, bincode_config())
                        .map(|(r, _)| r)
                        .map_err(|e| abort(StoreError::Corrupt(e.to_string())))?,
                    None => AgentRecord {
                        agent_id: batch.agent_id.0.clone(),
                        version: String::new(),
                        first_seen_ms: received_ms,
                        last_batch_ms: 0,
                        last_interval_end_ms: 0,
                        lag_ms: 0,
                        spool_bytes: 0,
                        batches: 0,
                        duplicates: 0,
                    },
                };
                record.last_batch_ms = received_ms;
                record.version = batch.agent_version.clone();
                record.spool_bytes = batch.spool_bytes;
                let high_water = dedupe
                    .get(&dedupe_key)?
                    .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
                    .unwrap_or(0);
                let outcome = if batch.seq <= high_water {
                    record.duplicates += 1;
                    MergeOutcome::Duplicate
                } else {
                    for (id, data) in &targets {
                        for res in &self.resolutions {
                            let start = align_down(batch.interval_start_ms, res.bucket_ms());
                            let key = bucket_key(res.code, *id, start);
                            let merged = match buckets.get(key)? {
                                Some(old) => {
                                    let mut old = decode_data(&old)
                                        .map_err(|e| abort(StoreError::Corrupt(e.to_string())))?;
                                    if old.merge(data).is_err() {
                                        continue;
                                    }
                                    old
                                }
                                None => (*data).clone(),
                            };
                            buckets.insert(&key, encode_data(&merged))?;
                        }
                    }
                    dedupe.insert(dedupe_key.as_slice(), &batch.seq.to_be_bytes())?;
                    record.batches += 1;
                    record.last_interval_end_ms = record.last_interval_end_ms.max(interval_end);
                    record.lag_ms = (received_ms - interval_end).max(0);
                    MergeOutcome::Merged {
                        series: targets.len(),
                        kind_conflicts,
                    }
                };
                let encoded = bincode::serde::encode_to_vec(&record, bincode_config())
                    .map_err(|e| abort(StoreError::Corrupt(e.to_string())))?;
                agents.insert(agent_key, encoded)?;
                Ok(outcome)
            },
        )?;
        Ok(outcome)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn series(
        &self,
        name: Option<&str>,
        filters: &[(String, String)],
    ) -> Result<Vec<(SeriesKey, Kind)>, StoreError> {
        let (prefix, exact) = match name {
            Some(n) => match n.strip_suffix('*') {
                Some(p) => (SeriesKey::name_prefix(p), None),
                None => (SeriesKey::name_prefix(n), Some(n)),
            },
            None => (Vec::new(), None),
        };
        let mut out = Vec::new();
        for entry in self.series.scan_prefix(&prefix) {
            let (k, v) = entry?;
            let (Some(key), Some((_, kind))) = (SeriesKey::from_bytes(&k), parse_series_value(&v))
            else {
                continue;
            };
            if exact.is_some_and(|n| key.name() != n) || !key.matches(filters) {
                continue;
            }
            out.push((key, kind));
        }
        Ok(out)
    }

    fn read(
        &self,
        series: &SeriesKey,
        resolution: &Resolution,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, SeriesData)>, StoreError> {
        let Some(v) = self.series.get(series.to_bytes())? else {
            return Ok(Vec::new());
        };
        let (id, _) =
            parse_series_value(&v).ok_or_else(|| StoreError::Corrupt("series index".into()))?;
        let lo = bucket_key(resolution.code, id, from_ms);
        let hi = bucket_key(resolution.code, id, to_ms);
        let mut out = Vec::new();
        for entry in self.buckets.range(lo..hi) {
            let (k, v) = entry?;
            let start = time_from_key(&k[9..]).unwrap_or(0);
            let data = decode_data(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((start, data));
        }
        Ok(out)
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.agents.iter() {
            let (_, v) = entry?;
            let (record, _) = bincode::serde::decode_from_slice(&v, bincode_config())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(record);
        }
        Ok(out)
    }

    fn prune(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut removed = 0;
        let ids: Vec<u64> = self
            .series
            .iter()
            .values()
            .filter_map(|v| {
                v.ok()
                    .and_then(|v| parse_series_value(&v))
                    .map(|(id, _)| id)
            })
            .collect();
        for res in &self.resolutions {
            let cutoff = now_ms - res.retention.as_millis() as i64;
            for id in &ids {
                let lo = bucket_key(res.code, *id, i64::MIN);
                let hi = bucket_key(res.code, *id, cutoff);
                let mut batch = sled::Batch::default();
                for key in self.buckets.range(lo..hi).keys() {
                    batch.remove(key?);
                    removed += 1;
                }
                self.buckets.apply_batch(batch)?;
            }
        }
        Ok(removed)
    }

    fn resolutions(&self) -> &[Resolution] {
        &self.resolutions
    }
}

/// Sums bucket data per series into one value (histograms add, counters add).
pub fn sum_buckets(buckets: Vec<(i64, SeriesData)>) -> Option<SeriesData> {
    let mut iter = buckets.into_iter().map(|(_, d)| d);
    let mut acc = iter.next()?;
    for d in iter {
        let _conflict = acc.merge(&d);
    }
    Some(acc)
}

/// Groups series by the values of the tags in `group_by` (a missing tag counts as `""`).
/// With no tags, everything is one group.
pub fn group_series(
    series: Vec<(SeriesKey, Kind)>,
    group_by: &[String],
) -> BTreeMap<Vec<String>, Vec<SeriesKey>> {
    let mut out: BTreeMap<Vec<String>, Vec<SeriesKey>> = BTreeMap::new();
    for (key, _) in series {
        let group = group_by
            .iter()
            .map(|g| key.tag(g).unwrap_or_default().to_owned())
            .collect();
        out.entry(group).or_default().push(key);
    }
    out
}

#[cfg(test)]
mod tests;
