//! The aggregator's store: sled behind the [`Store`] trait (with `integrity`, the only
//! aggregator code that touches sled).
//!
//! Trees and keys:
//!
//! ```text
//! "series":  SeriesKey::to_bytes()               → id: u64 BE, kind: u8
//! "buckets": resolution: u8, id: u64 BE, start   → bincode(SeriesData)
//!            (start = Unix ms as i64, sign bit flipped, big-endian, so keys sort by time)
//!            0xFF, "rollup", resolution: u8       → rollup mark: start as a time key
//! "dedupe":  agent_id, 0x00, epoch: u64 BE       → last merged seq: u64 BE
//!                                                    [, its interval_start_ms: i64 BE]
//!            (pruned once that start is older than the coarsest retention)
//! "agents":  agent_id                            → bincode(AgentRecord)
//! "meta":    "generation" | "merged"             → u64 BE (flushes, batches merged: integrity)
//! "coarse":  agent_id, 0x00, start (time key)    → end (time key): runs of batches longer than
//!                                                  a finest bucket (a batch that starts where
//!                                                  the agent's last run ends extends it)
//! "sightings": model, 0x00, version, 0x00, host   → first: i64 BE, last: i64 BE (Unix ms:
//!                                                  start of the first interval seen, end of
//!                                                  the last)
//! "audit":   seq: u64 BE                        → an audit entry as the audit engine encodes
//!                                                  it (canonical bytes ‖ SHA-256), opaque here
//! "slo_defs":  canonical SLI bytes               → slo id: u64 BE, ready: u8
//! "slo_cells": slo id, resolution: u8, start     → good: u64 BE, total: u64 BE,
//!                                                  uncertain: u64 BE (absent in stores
//!                                                  written before it: read as 0)
//! "slo_hosts": slo id, len: u16 BE, host, start  → that host's total − good in every coarsest
//!                                                  bucket up to and including `start`: i64 BE
//! ```
//!
//! The SLO trees are what the SLO engine reads: per-SLO good/total counters per bucket, and per
//! host a running sum of `total − good` with an entry for each coarsest bucket where it moved,
//! so a host's bad events over a range are two lookups. The sum is signed because a ratio
//! SLI's good and total counters may reach the aggregator in different batches (DogStatsD
//! timestamps put late counts into an interval already shipped); per-batch differences would
//! overcount. They are written in the merge transaction and kept for the longest SLO window.
//! The store only keys and stores them: which series count, how long hosts' sums are kept and
//! the backfill of a new SLI are the SLO engine's (`slo::install`, `slo::batch_deltas`), which
//! hands each merge its [`SloDelta`]s.
//!
//! [`SledStore::merge_batch`] runs one sled transaction: it checks the batch's sequence number
//! against the high-water mark of its `(agent, epoch)`, adds every series into its bucket of
//! the finest resolution (histograms add, counters add), and moves the mark. So a batch is
//! merged entirely or not at all, and exactly once; the caller flushes before it acknowledges.
//!
//! **Rollups.** Coarser buckets are not rewritten at every merge (rewriting an hourly bucket
//! 360 times an hour left sled gigabytes of garbage per host per day, see docs/OPERATIONS.md).
//! Each coarser resolution has a *rollup mark*: its buckets that start before the mark are
//! written, and [`SledStore::rollup`] writes the next one, once its time has passed, as the sum of
//! the finer resolution's buckets, moving the mark in the same atomic batch. A late batch for
//! a bucket already rolled up is merged into it directly. Reads past the mark are answered
//! from the finer resolution, so nothing merged is ever invisible; pruning keeps finer buckets
//! until they are rolled up. Batches of one epoch arrive in sequence order (one QUIC stream, a FIFO spool),
//! which is what makes a single high-water mark per epoch enough.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pitot_shared::batch::{Batch, SeriesData};
use pitot_shared::series::{Kind, SeriesKey};
use pitot_shared::slo::Counts;
use pitot_shared::window::align_down;
use pitot_shared::wire::{WireError, decode_data, encode_data, merge_data_into, start_sum};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::model::{Resolution, Sighting, SloDelta};

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
    /// At or below the epoch's high-water mark, yet newer than the batch that set it: the
    /// agent's sequence went backwards (a spool restored from an older copy, by a 0.2 agent,
    /// which keeps its epoch across restarts). Not merged (a clock step could make a true
    /// replay look like this, and merging it twice is worse); the caller warns.
    Rewound {
        /// The epoch's high-water mark.
        high_water: u64,
    },
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
    /// The store is being reopened after a storage error and could not be opened yet.
    #[error("store closed: it is being reopened after a storage error")]
    Closed,
}

impl StoreError {
    /// True when the disk under the store is full (ENOSPC, EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(e))
            if matches!(e.raw_os_error(), Some(28) | Some(122)))
    }

    /// True for a failure of the disk under the store (full, I/O), after which sled refuses
    /// every write until reopened; false for a bad stored value.
    pub fn is_storage(&self) -> bool {
        matches!(self, StoreError::Sled(_) | StoreError::Closed)
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

/// What can be read from the store, so sled can be replaced. Readers ([`StoreReader`]) have
/// only these; writing takes the unique [`SledStore`].
pub trait Store: Send + Sync + std::fmt::Debug {
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
    /// The buckets of `series` at `resolution` whose start lies in `[from_ms, to_ms)`, summed
    /// per bin of `step_ms` counted from `from_ms` (a bucket starting at `t` lands in the bin
    /// starting at `from_ms + ⌊(t − from_ms) / step_ms⌋ · step_ms`); a step as long as the
    /// range gives one bin. In time order. What reports read: [`ReadMemo`] shares it between
    /// the parts of a page.
    fn read_binned(
        &self,
        series: &SeriesKey,
        resolution: &Resolution,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(i64, SeriesData)>, StoreError> {
        let buckets = self.read(series, resolution, from_ms, to_ms)?;
        Ok(bin_buckets(
            buckets.into_iter().map(|(t, d)| (t, Cow::Owned(d))),
            from_ms,
            step_ms,
        ))
    }
    /// Every agent seen.
    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError>;
    /// The resolutions kept, finest first.
    fn resolutions(&self) -> &[Resolution];
    /// An SLO's good/total cells at `resolution` whose start lies in `[from_ms, to_ms)`.
    fn slo_cells(
        &self,
        id: u64,
        resolution: &Resolution,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Counts)>, StoreError>;
    /// Bad events per host (hosts with any) in the coarsest buckets whose start lies in
    /// `[from_ms, to_ms)`.
    fn slo_host_bad(
        &self,
        id: u64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, u64)>, StoreError>;
    /// Length of the buckets per-host SLO counts are kept in (the coarsest resolution's).
    fn host_bucket_ms(&self) -> u64;
    /// Every sighting of `model` (of every model when `None`): first and last per version
    /// and host.
    fn sightings(&self, model: Option<&str>) -> Result<Vec<Sighting>, StoreError>;
    /// Whether `(model, version, host)` has been seen.
    fn sighting_known(&self, model: &str, version: &str, host: &str) -> Result<bool, StoreError>;
    /// Batches longer than a finest bucket (coarsened by their agent's spool, or from an agent
    /// with a long interval) that overlap `[from_ms, to_ms)`: `(agent, start, end)`. Each was
    /// filed whole in the bucket of its start.
    fn coarse_spans(&self, from_ms: i64, to_ms: i64)
    -> Result<Vec<(String, i64, i64)>, StoreError>;
    /// Audit entries with sequence numbers in `[from, to]`, in order, as stored.
    fn audit_entries(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
}

/// The trees, shared by the writer and its readers.
#[derive(Debug)]
struct Trees {
    db: sled::Db,
    series: sled::Tree,
    buckets: sled::Tree,
    dedupe: sled::Tree,
    agents: sled::Tree,
    sightings: sled::Tree,
    audit: sled::Tree,
    slo_defs: sled::Tree,
    slo_cells: sled::Tree,
    slo_hosts: sled::Tree,
    /// "generation", "merged": u64 BE (see `integrity`).
    meta: sled::Tree,
    /// start_ms: i64 BE, agent_id → end_ms: i64 BE, for batches longer than a finest bucket.
    coarse: sled::Tree,
    resolutions: Vec<Resolution>,
    /// Rollup mark per resolution (index as in `resolutions`; the finest is always written).
    /// Written by the writer's rollups, read by every read.
    marks: RwLock<Vec<i64>>,
}

/// The open engine, which the writer can close and open again: after a storage error (a full
/// disk) sled refuses every write until it is reopened.
///
/// sled shows a write to readers as soon as it is applied, before it is flushed. So that reads
/// show durable data only, the writer closes `window` for a whole round of writes and its
/// flush ([`SledStore::hold_reads`]); when the flush fails it reopens the engine, which drops
/// the unflushed writes, before it lets readers back in. A read takes the window for one call.
#[derive(Debug)]
struct Live {
    dir: PathBuf,
    resolutions: Vec<Resolution>,
    /// `None` only while a reopen failed; reads then answer [`StoreError::Closed`].
    current: RwLock<Option<Arc<Trees>>>,
    /// Shared by each read call, exclusive to the writer from a round's first write to its
    /// flush.
    window: RwLock<()>,
}

/// The engine as one read call sees it: while it is held, no round of writes is in flight.
struct Gated<'a> {
    _window: std::sync::RwLockReadGuard<'a, ()>,
    trees: Arc<Trees>,
}

impl std::ops::Deref for Gated<'_> {
    type Target = Trees;

    fn deref(&self) -> &Trees {
        &self.trees
    }
}

/// What [`SledStore::hold_reads`] returns: hold it with [`ReadGate::close`] around a round of
/// writes and its flush.
#[derive(Debug)]
pub struct ReadGate(Arc<Live>);

impl ReadGate {
    /// Keeps every reader out until the guard is dropped (waits for the read calls in flight).
    pub fn close(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.0.window.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Live {
    fn resolutions(&self) -> &[Resolution] {
        &self.resolutions
    }

    fn host_bucket_ms(&self) -> u64 {
        coarsest_bucket_ms(&self.resolutions)
    }

    /// The engine for one read call (waits while a round of writes is in flight).
    fn get(&self) -> Result<Gated<'_>, StoreError> {
        let window = self.window.read().unwrap_or_else(|e| e.into_inner());
        Ok(Gated {
            _window: window,
            trees: self.writers_view()?,
        })
    }

    /// The engine as the writer sees it: its own writes included, flushed or not.
    fn writers_view(&self) -> Result<Arc<Trees>, StoreError> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed)
    }
}

/// A read handle: cheap to clone, and all the HTTP side and the reports get. It has no write
/// methods, so the single-writer rule is the compiler's.
#[derive(Debug, Clone)]
pub struct StoreReader {
    live: Arc<Live>,
}

/// The store's unique writer: opening the store yields one, it is not `Clone`, and every write
/// takes `&mut self`. The merge actor owns it; merges, rollups, pruning and SLO installation
/// all run there. It reads like a [`StoreReader`] (it dereferences to one).
#[derive(Debug)]
pub struct SledStore {
    reader: StoreReader,
    /// What was wrong with the files when the store was (last) opened.
    damage: Vec<Damage>,
    /// Flushes so far (see `integrity`), and batches merged in total.
    generation: u64,
    merged: u64,
    /// A merge, audit, rollup or prune write since the last successful flush (or open): what
    /// a failed flush leaves in memory (see [`SledStore::has_unflushed`]).
    unflushed: bool,
}

impl std::ops::Deref for SledStore {
    type Target = StoreReader;

    fn deref(&self) -> &StoreReader {
        &self.reader
    }
}

/// Length of the coarsest resolution's buckets (where per-host SLO counts are kept).
fn coarsest_bucket_ms(resolutions: &[Resolution]) -> u64 {
    resolutions.last().map_or(3_600_000, Resolution::bucket_ms)
}

/// How long after a coarse bucket ends before it is rolled up: batches usually arrive within
/// an interval or two; later ones are merged into the rolled-up bucket directly.
pub const ROLLUP_GRACE_MS: i64 = 60_000;
/// Coarse buckets rolled up per [`SledStore::rollup`] call at most, so catching up after downtime
/// does not stall merges.
const ROLLUP_STEPS: usize = 16;

fn mark_key(res: u8) -> [u8; 8] {
    [0xFF, b'r', b'o', b'l', b'l', b'u', b'p', res]
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
        Kind::Buckets => 4,
        _ => 0,
    }
}

fn kind_from_code(code: u8) -> Option<Kind> {
    match code {
        1 => Some(Kind::Histogram),
        2 => Some(Kind::Counter),
        3 => Some(Kind::Categorical),
        4 => Some(Kind::Buckets),
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

fn cell_key(id: u64, res: u8, start_ms: i64) -> [u8; 17] {
    // Same layout as a bucket key, with the SLO id in place of the series id.
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8] = res;
    k[9..].copy_from_slice(&time_key(start_ms));
    k
}

fn counts_value(c: Counts) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&c.good.to_be_bytes());
    v[8..16].copy_from_slice(&c.total.to_be_bytes());
    v[16..].copy_from_slice(&c.uncertain.to_be_bytes());
    v
}

/// A cell: 24 bytes, or 16 from a store written before `uncertain` existed.
fn parse_counts(bytes: &[u8]) -> Option<Counts> {
    if bytes.len() != 16 && bytes.len() != 24 {
        return None;
    }
    Some(Counts {
        good: u64::from_be_bytes(bytes[..8].try_into().ok()?),
        total: u64::from_be_bytes(bytes[8..16].try_into().ok()?),
        uncertain: match bytes.get(16..) {
            Some(rest) if !rest.is_empty() => u64::from_be_bytes(rest.try_into().ok()?),
            _ => 0,
        },
    })
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn parse_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

/// `total − good`, signed (see the module docs).
fn signed_bad(c: Counts) -> i64 {
    (c.total as i128 - c.good as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// `id, len, host`: every entry of one host of one SLO starts with it.
fn host_prefix(id: u64, host: &str) -> Vec<u8> {
    let host = &host.as_bytes()[..host.len().min(u16::MAX as usize)];
    let mut k = Vec::with_capacity(18 + host.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&(host.len() as u16).to_be_bytes());
    k.extend_from_slice(host);
    k
}

fn with_time(prefix: &[u8], start_ms: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&time_key(start_ms));
    k
}

/// What a merge does to one host's running bad-event sums, planned before the transaction
/// from the committed tree (the merge actor is the only writer, so it cannot change between).
#[derive(Debug)]
struct HostPlan {
    /// Entries at or after the batch's bucket: each gets `delta` added.
    bump: Vec<Vec<u8>>,
    /// When the bucket has no entry yet: its key and the running sum before it.
    insert: Option<(Vec<u8>, i64)>,
    delta: i64,
}

/// An SLO's counts for one batch, planned.
#[derive(Debug)]
struct SloPlan {
    id: u64,
    fleet: Counts,
    hosts: Vec<HostPlan>,
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1024 * 1024 }>()
}

impl SledStore {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path, resolutions: Vec<Resolution>) -> Result<Self, StoreError> {
        Self::open_at(dir, resolutions, crate::glue::now_ms())
    }

    /// Opens the store as if the time were `now_ms`: a coarser resolution without a rollup
    /// mark yet (a new store, or one written before rollups existed) gets one at the first
    /// bucket boundary after `now_ms`, so a bucket that may already hold direct merges is
    /// never rolled up over them.
    pub fn open_at(
        dir: &Path,
        resolutions: Vec<Resolution>,
        now_ms: i64,
    ) -> Result<Self, StoreError> {
        Self::open_with(dir, resolutions, now_ms, true)
    }

    /// Opens the store for `pitot-aggregator check`: damage that `open` would fix (a damaged
    /// sled conf, a store sled cannot open) is an error here, and nothing is moved.
    pub fn open_to_check(dir: &Path, resolutions: Vec<Resolution>) -> Result<Self, StoreError> {
        Self::open_with(dir, resolutions, crate::glue::now_ms(), false)
    }

    fn open_with(
        dir: &Path,
        resolutions: Vec<Resolution>,
        now_ms: i64,
        fix: bool,
    ) -> Result<Self, StoreError> {
        let (trees, damage) = integrity::open_checked(dir, &resolutions, now_ms, fix)?;
        let (generation, merged) = integrity::stored_state(&trees)?;
        Ok(SledStore {
            reader: StoreReader {
                live: Arc::new(Live {
                    dir: dir.to_path_buf(),
                    resolutions,
                    current: RwLock::new(Some(Arc::new(trees))),
                    window: RwLock::new(()),
                }),
            },
            damage,
            generation,
            merged,
            unflushed: false,
        })
    }

    /// Closes the engine and opens it again (after a storage error, once space returned).
    /// Reads wait meanwhile; a reader in flight holds the old engine for one call at most, so
    /// this waits up to 5 s for it to let go. When the open fails, reads answer
    /// [`StoreError::Closed`] until a later reopen succeeds.
    pub fn reopen(&mut self) -> Result<(), StoreError> {
        let live = &self.reader.live;
        let mut slot = live.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.take() {
            let gone = Arc::downgrade(&old);
            drop(old);
            for _ in 0..500 {
                if gone.strong_count() == 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let (trees, damage) =
            integrity::open_checked(&live.dir, &live.resolutions, crate::glue::now_ms(), true)?;
        // Writes that were not flushed are gone with the old engine.
        (self.generation, self.merged) = integrity::stored_state(&trees)?;
        self.unflushed = false;
        self.damage.extend(damage);
        *slot = Some(Arc::new(trees));
        Ok(())
    }

    /// True when the engine holds merge, audit, rollup or prune writes that no flush made
    /// durable: after a failed flush, what readers must not see.
    pub fn has_unflushed(&self) -> bool {
        self.unflushed
    }

    /// A read handle for the API and the reports.
    pub fn reader(&self) -> StoreReader {
        self.reader.clone()
    }

    fn trees(&self) -> Result<Arc<Trees>, StoreError> {
        self.reader.live.writers_view()
    }

    /// The gate that keeps readers out of a round of writes until it is flushed (see `Live`).
    /// The writer's own reads (through this `SledStore`) do not wait for it.
    pub fn hold_reads(&self) -> ReadGate {
        ReadGate(Arc::clone(&self.reader.live))
    }
}

/// sled's page cache. Reports read a series' whole range; past the cache, every page view
/// reads and decodes sled's nodes from disk again (at 64 MiB, a model page over 30 days of
/// 100 hosts spent a fifth of its time paging; docs/PERFORMANCE.md).
const CACHE_BYTES: u64 = 256 * 1024 * 1024;

fn open_trees(dir: &Path, resolutions: Vec<Resolution>, now_ms: i64) -> Result<Trees, StoreError> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .open()?;
    let trees = Trees {
        series: db.open_tree("series")?,
        buckets: db.open_tree("buckets")?,
        dedupe: db.open_tree("dedupe")?,
        agents: db.open_tree("agents")?,
        sightings: db.open_tree("sightings")?,
        audit: db.open_tree("audit")?,
        slo_defs: db.open_tree("slo_defs")?,
        slo_cells: db.open_tree("slo_cells")?,
        slo_hosts: db.open_tree("slo_hosts")?,
        meta: db.open_tree("meta")?,
        coarse: db.open_tree("coarse")?,
        db,
        marks: RwLock::new(Vec::new()),
        resolutions,
    };
    trees.load_marks(now_ms)?;
    Ok(trees)
}

impl Trees {
    /// Every series id (unreadable index entries are skipped).
    fn series_ids(&self) -> Vec<u64> {
        self.series
            .iter()
            .values()
            .filter_map(|v| {
                v.ok()
                    .and_then(|v| parse_series_value(&v))
                    .map(|(id, _)| id)
            })
            .collect()
    }

    /// Loads the rollup marks, creating the missing ones at the next bucket boundary.
    fn load_marks(&self, now_ms: i64) -> Result<(), StoreError> {
        let mut marks = Vec::with_capacity(self.resolutions.len());
        for (i, res) in self.resolutions.iter().enumerate() {
            if i == 0 {
                marks.push(i64::MAX);
                continue;
            }
            let key = mark_key(res.code);
            let mark = match self.buckets.get(key)? {
                Some(v) => {
                    time_from_key(&v).ok_or_else(|| StoreError::Corrupt("rollup mark".into()))?
                }
                None => {
                    let mark = align_down(now_ms, res.bucket_ms()) + res.bucket_ms() as i64;
                    self.buckets.insert(key, &time_key(mark)[..])?;
                    mark
                }
            };
            marks.push(mark);
        }
        *self.marks.write().unwrap_or_else(|e| e.into_inner()) = marks;
        self.buckets.flush()?;
        Ok(())
    }

    fn marks(&self) -> Vec<i64> {
        self.marks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A series' id and the index of `resolution` among those kept; `None` when either is
    /// unknown.
    fn locate(
        &self,
        series: &SeriesKey,
        resolution: &Resolution,
    ) -> Result<Option<(u64, usize)>, StoreError> {
        let Some(v) = self.series.get(series.to_bytes())? else {
            return Ok(None);
        };
        let (id, _) =
            parse_series_value(&v).ok_or_else(|| StoreError::Corrupt("series index".into()))?;
        Ok(self
            .resolutions
            .iter()
            .position(|r| r.code == resolution.code)
            .map(|i| (id, i)))
    }

    /// Reads `[from_ms, to_ms)` of one resolution as stored (no supplement).
    fn read_stored(
        &self,
        id: u64,
        res: &Resolution,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, SeriesData)>, StoreError> {
        let mut out = Vec::new();
        if from_ms >= to_ms {
            return Ok(out);
        }
        let lo = bucket_key(res.code, id, from_ms);
        let hi = bucket_key(res.code, id, to_ms);
        for entry in self.buckets.range(lo..hi) {
            let (k, v) = entry?;
            let start = time_from_key(&k[9..]).unwrap_or(0);
            let data = decode_data(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((start, data));
        }
        Ok(out)
    }

    /// Reads resolution index `i` over `[from_ms, to_ms)`: stored buckets before its rollup
    /// mark, and past it the finer resolution's buckets, summed per bucket of this one.
    fn read_level(
        &self,
        id: u64,
        i: usize,
        marks: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, SeriesData)>, StoreError> {
        let Some(res) = self.resolutions.get(i) else {
            return Ok(Vec::new());
        };
        let mark = marks.get(i).copied().unwrap_or(i64::MAX);
        let mut out = self.read_stored(id, res, from_ms, to_ms.min(mark))?;
        if i > 0 && to_ms > mark {
            let finer = self.read_level(id, i - 1, marks, from_ms.max(mark), to_ms)?;
            for (start, data) in finer {
                let start = align_down(start, res.bucket_ms());
                match out.last_mut() {
                    Some((last, acc)) if *last == start => {
                        let _conflict = acc.merge(&data);
                    }
                    _ => out.push((start, data)),
                }
            }
        }
        Ok(out)
    }

    fn plan_host(
        &self,
        id: u64,
        host: &str,
        start: i64,
        delta: i64,
    ) -> Result<HostPlan, StoreError> {
        let prefix = host_prefix(id, host);
        let at = with_time(&prefix, start);
        let mut bump = Vec::new();
        for entry in self.slo_hosts.range(at.clone()..) {
            let (k, _) = entry?;
            if !k.starts_with(&prefix) || k.len() != prefix.len() + 8 {
                break;
            }
            bump.push(k.to_vec());
        }
        let insert = if bump.first().is_some_and(|k| *k == at) {
            None
        } else {
            let base = match self.slo_hosts.range(prefix.clone()..at.clone()).next_back() {
                Some(entry) => parse_i64(&entry?.1)
                    .ok_or_else(|| StoreError::Corrupt("slo host entry".into()))?,
                None => 0,
            };
            Some((at, base))
        };
        Ok(HostPlan {
            bump,
            insert,
            delta,
        })
    }

    fn plan_slos(&self, batch: &Batch, deltas: &[SloDelta]) -> Result<Vec<SloPlan>, StoreError> {
        let host_start = align_down(batch.interval_start_ms, self.host_bucket_ms());
        let mut plans = Vec::new();
        for SloDelta {
            id,
            fleet,
            hosts: delta_hosts,
        } in deltas
        {
            let mut hosts = Vec::new();
            for (host, c) in delta_hosts {
                let delta = signed_bad(*c);
                if delta != 0 {
                    hosts.push(self.plan_host(*id, host, host_start, delta)?);
                }
            }
            plans.push(SloPlan {
                id: *id,
                fleet: *fleet,
                hosts,
            });
        }
        Ok(plans)
    }

    /// SLO cells past their resolution's retention, and host entries older than `longest`
    /// (the longest SLO window, given by the SLO engine; or the coarsest retention, if
    /// shorter), keeping each host's last entry before the cutoff: it carries the running sum.
    fn prune_slos(&self, now_ms: i64, longest: Duration) -> Result<u64, StoreError> {
        let ids: Vec<u64> = self.slo_ids()?.into_iter().map(|(_, id, _)| id).collect();
        let mut removed = 0;
        for id in ids {
            let mut batch = sled::Batch::default();
            for res in &self.resolutions {
                let cutoff = now_ms - res.retention.as_millis() as i64;
                let lo = cell_key(id, res.code, i64::MIN);
                let hi = cell_key(id, res.code, cutoff);
                for key in self.slo_cells.range(lo..hi).keys() {
                    batch.remove(key?);
                    removed += 1;
                }
            }
            self.slo_cells.apply_batch(batch)?;
            let Some(coarsest) = self.resolutions.last() else {
                continue;
            };
            let keep = coarsest.retention.min(longest + coarsest.bucket);
            let cutoff = now_ms - keep.as_millis() as i64;
            let mut batch = sled::Batch::default();
            let mut previous: Option<(Vec<u8>, sled::IVec)> = None;
            for key in self.slo_hosts.scan_prefix(id.to_be_bytes()).keys() {
                let key = key?;
                let Some(split) = key.len().checked_sub(8) else {
                    continue;
                };
                let start = time_from_key(&key[split..]).unwrap_or(i64::MAX);
                if let Some((prefix, old)) = previous.take()
                    && prefix == key[..split]
                    && start < cutoff
                {
                    // An older entry of the same host, with a newer one also before the cutoff.
                    batch.remove(old);
                    removed += 1;
                }
                if start < cutoff {
                    previous = Some((key[..split].to_vec(), key));
                }
            }
            self.slo_hosts.apply_batch(batch)?;
        }
        Ok(removed)
    }

    /// Writes SLO cells, replacing what is there. `cells` are (bucket start, counts) at `res`.
    fn import_slo_cells(
        &self,
        id: u64,
        res: &Resolution,
        cells: &[(i64, Counts)],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (start, c) in cells {
            batch.insert(&cell_key(id, res.code, *start)[..], &counts_value(*c)[..]);
        }
        self.slo_cells.apply_batch(batch)?;
        Ok(())
    }

    /// Adds one host's bad events (signed: total − good) per coarsest bucket to its running
    /// sums, replacing that host's entries at those buckets. `buckets` must be in time order
    /// and start after anything already stored for the host.
    fn add_slo_host(&self, id: u64, host: &str, buckets: &[(i64, i64)]) -> Result<(), StoreError> {
        let prefix = host_prefix(id, host);
        let mut running = match self.slo_hosts.scan_prefix(&prefix).next_back() {
            Some(entry) => {
                parse_i64(&entry?.1).ok_or_else(|| StoreError::Corrupt("slo host entry".into()))?
            }
            None => 0,
        };
        let mut batch = sled::Batch::default();
        for (start, bad) in buckets {
            running = running.saturating_add(*bad);
            batch.insert(with_time(&prefix, *start), &running.to_be_bytes()[..]);
        }
        self.slo_hosts.apply_batch(batch)?;
        Ok(())
    }

    /// Writes one bucket of series data, replacing what is there.
    fn import_bucket(
        &self,
        key: &SeriesKey,
        res: &Resolution,
        start_ms: i64,
        data: &SeriesData,
    ) -> Result<(), StoreError> {
        let (id, _) = self.series_id(&key.to_bytes(), data.kind())?;
        self.buckets
            .insert(bucket_key(res.code, id, start_ms), encode_data(data))?;
        Ok(())
    }

    /// Removes every counter of an SLO id.
    fn clear_slo(&self, id: u64) -> Result<(), StoreError> {
        for tree in [&self.slo_cells, &self.slo_hosts] {
            let mut batch = sled::Batch::default();
            for key in tree.scan_prefix(id.to_be_bytes()).keys() {
                batch.remove(key?);
            }
            tree.apply_batch(batch)?;
        }
        Ok(())
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

fn sighting_key(model: &str, version: &str, host: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(model.len() + version.len() + host.len() + 2);
    k.extend_from_slice(model.as_bytes());
    k.push(0);
    k.extend_from_slice(version.as_bytes());
    k.push(0);
    k.extend_from_slice(host.as_bytes());
    k
}

fn span_value(first: i64, last: i64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&first.to_be_bytes());
    v[8..].copy_from_slice(&last.to_be_bytes());
    v
}

fn parse_span(bytes: &[u8]) -> Option<(i64, i64)> {
    Some((parse_i64(bytes.get(..8)?)?, parse_i64(bytes.get(8..16)?)?))
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

impl Trees {
    fn apply_slo_plan(
        &self,
        cells: &TransactionalTree,
        hosts: &TransactionalTree,
        plan: &SloPlan,
        interval_start_ms: i64,
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        let corrupt = |what: &str| abort(StoreError::Corrupt(what.into()));
        if plan.fleet != Counts::default() {
            for res in &self.resolutions {
                let key = cell_key(
                    plan.id,
                    res.code,
                    align_down(interval_start_ms, res.bucket_ms()),
                );
                let mut c = match cells.get(key)? {
                    Some(v) => parse_counts(&v).ok_or_else(|| corrupt("slo cell"))?,
                    None => Counts::default(),
                };
                c.add(plan.fleet);
                cells.insert(&key[..], &counts_value(c)[..])?;
            }
        }
        for h in &plan.hosts {
            for key in &h.bump {
                // A key gone since planning was pruned meanwhile: nothing to add to.
                if let Some(v) = hosts.get(key)? {
                    let v = parse_i64(&v).ok_or_else(|| corrupt("slo host entry"))?;
                    hosts.insert(key.as_slice(), &v.saturating_add(h.delta).to_be_bytes()[..])?;
                }
            }
            if let Some((key, base)) = &h.insert {
                hosts.insert(
                    key.as_slice(),
                    &base.saturating_add(h.delta).to_be_bytes()[..],
                )?;
            }
        }
        Ok(())
    }
}

/// A dedupe mark: the high-water sequence number and (since 0.3) its batch's interval start.
fn parse_mark(v: &[u8]) -> (u64, Option<i64>) {
    let word = |at: usize| -> Option<[u8; 8]> { v.get(at..at + 8)?.try_into().ok() };
    let seq = word(0).map_or(0, u64::from_be_bytes);
    (seq, word(8).map(i64::from_be_bytes))
}

fn mark_value(seq: u64, interval_start_ms: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&seq.to_be_bytes());
    out[8..].copy_from_slice(&interval_start_ms.to_be_bytes());
    out
}

impl Trees {
    fn merge_batch(
        &self,
        batch: &Batch,
        received_ms: i64,
        slo_deltas: &[SloDelta],
        sightings: &[Sighting],
    ) -> Result<MergeOutcome, StoreError> {
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
        let slo_plans = self.plan_slos(batch, slo_deltas)?;
        let marks = self.marks();
        let trees = (
            &self.buckets,
            &self.dedupe,
            &self.agents,
            &self.slo_cells,
            &self.slo_hosts,
            &self.sightings,
            &self.coarse,
        );
        let finest_ms = self
            .resolutions
            .first()
            .map_or(10_000, Resolution::bucket_ms);
        // One entry per run: an agent with a long interval, or a spool coarsened through an
        // outage, extends its last run instead of adding a key per batch. The merge actor is
        // the only writer, so reading the last run outside the transaction is safe.
        let coarse_key = if batch.interval_ms > finest_ms {
            let mut prefix = batch.agent_id.0.as_bytes().to_vec();
            prefix.push(0);
            let last = self.coarse.scan_prefix(&prefix).next_back().transpose()?;
            Some(match last {
                Some((k, end))
                    if time_from_key(&end)
                        .is_some_and(|e| e >= batch.interval_start_ms && e <= interval_end) =>
                {
                    k.to_vec()
                }
                _ => {
                    prefix.extend_from_slice(&time_key(batch.interval_start_ms));
                    prefix
                }
            })
        } else {
            None
        };
        let outcome = trees.transaction(
            |(buckets, dedupe, agents, slo_cells, slo_hosts, seen, coarse)| {
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
                let (high_water, mark_start) = dedupe
                    .get(&dedupe_key)?
                    .map_or((0, None), |v| parse_mark(&v));
                let outcome = if batch.seq <= high_water {
                    record.duplicates += 1;
                    // Sequence numbers follow interval starts, so a replay is never newer
                    // than the batch that set the mark.
                    if mark_start.is_some_and(|start| batch.interval_start_ms > start) {
                        MergeOutcome::Rewound { high_water }
                    } else {
                        MergeOutcome::Duplicate
                    }
                } else {
                    for (id, data) in &targets {
                        // A new bucket stores the batch's data as it is, encoded once.
                        let mut fresh: Option<sled::IVec> = None;
                        for (res, mark) in self.resolutions.iter().zip(&marks) {
                            let start = align_down(batch.interval_start_ms, res.bucket_ms());
                            if start >= *mark {
                                continue; // rolled up from the finer buckets later
                            }
                            let key = bucket_key(res.code, *id, start);
                            let value = match buckets.get(key)? {
                                Some(old) => {
                                    // Read as decoding would, without serde's intermediate.
                                    let mut old = start_sum(&old)
                                        .map_err(|e| abort(StoreError::Corrupt(e.to_string())))?;
                                    if old.merge(data).is_err() {
                                        continue;
                                    }
                                    sled::IVec::from(encode_data(&old))
                                }
                                None => fresh
                                    .get_or_insert_with(|| encode_data(data).into())
                                    .clone(),
                            };
                            buckets.insert(&key, value)?;
                        }
                    }
                    for plan in &slo_plans {
                        self.apply_slo_plan(slo_cells, slo_hosts, plan, batch.interval_start_ms)?;
                    }
                    for s in sightings {
                        let key = sighting_key(&s.model, &s.version, &s.host);
                        let (first, last) = match seen.get(&key)? {
                            Some(v) => parse_span(&v)
                                .ok_or_else(|| abort(StoreError::Corrupt("sighting".into())))?,
                            None => (s.from_ms, s.to_ms),
                        };
                        seen.insert(
                            key,
                            &span_value(first.min(s.from_ms), last.max(s.to_ms))[..],
                        )?;
                    }
                    dedupe.insert(
                        dedupe_key.as_slice(),
                        &mark_value(batch.seq, batch.interval_start_ms)[..],
                    )?;
                    if let Some(k) = &coarse_key {
                        coarse.insert(k.as_slice(), &time_key(interval_end)[..])?;
                    }
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
        let Some((id, i)) = self.locate(series, resolution)? else {
            return Ok(Vec::new());
        };
        self.read_level(id, i, &self.marks(), from_ms, to_ms)
    }

    /// As the default (`read`, then bins), without building the stored histograms: each adds
    /// into its bin from its bytes (`wire::merge_data_into`). The stored buckets come first,
    /// in time order, then those past the rollup mark, summed from the finer resolution as
    /// `read` sums them; each bin adds its buckets in the same order as the default.
    fn read_binned(
        &self,
        series: &SeriesKey,
        resolution: &Resolution,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(i64, SeriesData)>, StoreError> {
        let Some((id, i)) = self.locate(series, resolution)? else {
            return Ok(Vec::new());
        };
        let marks = self.marks();
        let mark = marks.get(i).copied().unwrap_or(i64::MAX);
        let corrupt = |e: WireError| StoreError::Corrupt(e.to_string());
        let mut bins: Vec<(i64, SeriesData)> = Vec::new();
        let stored_to = to_ms.min(mark);
        if from_ms < stored_to {
            let lo = bucket_key(resolution.code, id, from_ms);
            let hi = bucket_key(resolution.code, id, stored_to);
            for entry in self.buckets.range(lo..hi) {
                let (k, v) = entry?;
                let bin = bin_of(time_from_key(&k[9..]).unwrap_or(0), from_ms, step_ms);
                match bins.last_mut() {
                    Some((last, acc)) if *last == bin => {
                        // Different kinds under one key, or counts past 2^64: the bin keeps
                        // what it has.
                        let _conflict = merge_data_into(acc, &v).map_err(corrupt)?;
                    }
                    _ => bins.push((bin, start_sum(&v).map_err(corrupt)?)),
                }
            }
        }
        if to_ms > mark {
            for (t, data) in self.read_level(id, i, &marks, from_ms.max(mark), to_ms)? {
                let bin = bin_of(t, from_ms, step_ms);
                match bins.last_mut() {
                    Some((last, acc)) if *last == bin => {
                        let _conflict = acc.merge(&data);
                    }
                    _ => bins.push((bin, data)),
                }
            }
        }
        Ok(bins)
    }

    fn rollup(&self, now_ms: i64) -> Result<u64, StoreError> {
        let ids = self.series_ids();
        let mut written = 0;
        let mut steps = 0;
        for i in 1..self.resolutions.len() {
            let (res, src) = (self.resolutions[i], self.resolutions[i - 1]);
            while steps < ROLLUP_STEPS {
                let marks = self.marks();
                let start = marks[i];
                let end = start + res.bucket_ms() as i64;
                // Its time has passed, and the finer resolution is itself written that far.
                if end + ROLLUP_GRACE_MS > now_ms || (i > 1 && marks[i - 1] < end) {
                    break;
                }
                let mut batch = sled::Batch::default();
                for id in &ids {
                    let mut sum: Option<SeriesData> = None;
                    for (_, data) in self.read_stored(*id, &src, start, end)? {
                        match &mut sum {
                            Some(acc) => {
                                let _conflict = acc.merge(&data);
                            }
                            None => sum = Some(data),
                        }
                    }
                    let Some(mut sum) = sum else { continue };
                    let key = bucket_key(res.code, *id, start);
                    if let Some(old) = self.buckets.get(key)? {
                        let old =
                            decode_data(&old).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        let _conflict = sum.merge(&old);
                    }
                    batch.insert(&key[..], encode_data(&sum));
                    written += 1;
                }
                batch.insert(&mark_key(res.code)[..], &time_key(end)[..]);
                self.buckets.apply_batch(batch)?;
                self.marks.write().unwrap_or_else(|e| e.into_inner())[i] = end;
                steps += 1;
            }
        }
        Ok(written)
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

    fn prune(&self, now_ms: i64, slo_history: Duration) -> Result<u64, StoreError> {
        let mut removed = 0;
        let ids = self.series_ids();
        let marks = self.marks();
        for (i, res) in self.resolutions.iter().enumerate() {
            // A finer bucket stays until the next resolution has rolled it up.
            let rolled = marks.get(i + 1).copied().unwrap_or(i64::MAX);
            let cutoff = (now_ms - res.retention.as_millis() as i64).min(rolled);
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
        removed += self.prune_slos(now_ms, slo_history)?;
        // Coarse spans live as long as the coarsest buckets they describe.
        if let Some(longest) = self.resolutions.last() {
            let cutoff = now_ms - longest.retention.as_millis() as i64;
            let mut batch = sled::Batch::default();
            for entry in self.coarse.iter() {
                let (k, end) = entry?;
                if time_from_key(&end).is_none_or(|e| e < cutoff) {
                    batch.remove(k);
                }
            }
            self.coarse.apply_batch(batch)?;
            // Every agent start is a new epoch, so marks pile up: a mark whose last batch is
            // older than every retention guards nothing (its data is pruned). Marks written
            // before 0.3 carry no interval start and are kept.
            let mut batch = sled::Batch::default();
            for entry in self.dedupe.iter() {
                let (k, v) = entry?;
                if parse_mark(&v).1.is_some_and(|start| start < cutoff) {
                    batch.remove(k);
                }
            }
            self.dedupe.apply_batch(batch)?;
        }
        Ok(removed)
    }

    /// Every SLO counter set: its SLI's canonical bytes, id, and whether its backfill
    /// finished.
    fn slo_ids(&self) -> Result<Vec<(Vec<u8>, u64, bool)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.slo_defs.iter() {
            let (canon, v) = entry?;
            if v.len() != 9 {
                return Err(StoreError::Corrupt("slo def".into()));
            }
            let id = parse_u64(&v[..8]).ok_or_else(|| StoreError::Corrupt("slo def".into()))?;
            out.push((canon.to_vec(), id, v[8] == 1));
        }
        Ok(out)
    }

    fn coarse_spans(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        // Runs are few (one per agent and outage), so they are all read.
        let mut out = Vec::new();
        for entry in self.coarse.iter() {
            let (k, v) = entry?;
            let Some(split) = k.len().checked_sub(9).filter(|at| k[*at] == 0) else {
                continue;
            };
            let (Some(start), Some(end)) = (time_from_key(&k[split + 1..]), time_from_key(&v))
            else {
                continue;
            };
            if end > from_ms && start < to_ms {
                out.push((
                    String::from_utf8_lossy(&k[..split]).into_owned(),
                    start,
                    end,
                ));
            }
        }
        Ok(out)
    }

    fn sighting_known(&self, model: &str, version: &str, host: &str) -> Result<bool, StoreError> {
        Ok(self
            .sightings
            .contains_key(sighting_key(model, version, host))?)
    }

    fn audit_entries(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.audit.range(from.to_be_bytes()..=to.to_be_bytes()) {
            let (k, v) = entry?;
            let seq = k
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("audit key".into()))?;
            out.push((seq, v.to_vec()));
        }
        Ok(out)
    }

    fn sightings(&self, model: Option<&str>) -> Result<Vec<Sighting>, StoreError> {
        let prefix = model.map_or_else(Vec::new, |m| {
            let mut p = m.as_bytes().to_vec();
            p.push(0);
            p
        });
        let mut out = Vec::new();
        for entry in self.sightings.scan_prefix(&prefix) {
            let (k, v) = entry?;
            let mut parts = k.splitn(3, |b| *b == 0);
            let (Some(m), Some(ver), Some(host), Some((first, last))) =
                (parts.next(), parts.next(), parts.next(), parse_span(&v))
            else {
                return Err(StoreError::Corrupt("sighting".into()));
            };
            out.push(Sighting {
                model: String::from_utf8_lossy(m).into_owned(),
                version: String::from_utf8_lossy(ver).into_owned(),
                host: String::from_utf8_lossy(host).into_owned(),
                from_ms: first,
                to_ms: last,
            });
        }
        Ok(out)
    }

    fn set_slo(&self, canon: &[u8], id: u64, ready: bool) -> Result<(), StoreError> {
        let mut v = id.to_be_bytes().to_vec();
        v.push(u8::from(ready));
        self.slo_defs.insert(canon, v)?;
        Ok(())
    }

    fn slo_cells(
        &self,
        id: u64,
        resolution: &Resolution,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Counts)>, StoreError> {
        let lo = cell_key(id, resolution.code, from_ms);
        let hi = cell_key(id, resolution.code, to_ms);
        let mut out = Vec::new();
        for entry in self.slo_cells.range(lo..hi) {
            let (k, v) = entry?;
            let start = time_from_key(&k[9..]).unwrap_or(0);
            let c = parse_counts(&v).ok_or_else(|| StoreError::Corrupt("slo cell".into()))?;
            out.push((start, c));
        }
        Ok(out)
    }

    fn slo_host_bad(
        &self,
        id: u64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let id_bytes = id.to_be_bytes();
        let running_before = |prefix: &[u8], t: i64| -> Result<i64, StoreError> {
            match self
                .slo_hosts
                .range(prefix.to_vec()..with_time(prefix, t))
                .next_back()
            {
                Some(entry) => {
                    parse_i64(&entry?.1).ok_or_else(|| StoreError::Corrupt("slo host entry".into()))
                }
                None => Ok(0),
            }
        };
        let mut out = Vec::new();
        let mut cursor: Bound<Vec<u8>> = Bound::Included(id_bytes.to_vec());
        while let Some(entry) = self
            .slo_hosts
            .range((cursor.clone(), Bound::Unbounded))
            .next()
        {
            let (k, _) = entry?;
            if !k.starts_with(&id_bytes) || k.len() < 18 {
                break;
            }
            let len = u16::from_be_bytes([k[8], k[9]]) as usize;
            let Some(prefix) = k.get(..10 + len) else {
                return Err(StoreError::Corrupt("slo host key".into()));
            };
            let bad =
                running_before(prefix, to_ms)?.saturating_sub(running_before(prefix, from_ms)?);
            if bad > 0 {
                out.push((
                    String::from_utf8_lossy(&prefix[10..]).into_owned(),
                    bad.unsigned_abs(),
                ));
            }
            let mut next = prefix.to_vec();
            next.extend_from_slice(&[0xff; 8]);
            cursor = Bound::Excluded(next);
        }
        Ok(out)
    }

    fn host_bucket_ms(&self) -> u64 {
        coarsest_bucket_ms(&self.resolutions)
    }
}

/// Implements [`Store`] for a type by delegating every read to `$e` (an expression over
/// `$s`, the `&self`): readers, the writer and test wrappers read alike.
macro_rules! delegate_store_reads {
    ($t:ty, $s:ident => $e:expr) => {
        $crate::store::delegate_store_reads!($t, $s => $e; $e);
    };
    // `$p` serves the two reads that cannot fail (resolutions, host bucket length); the
    // items in braces go into the impl as they are (a method that is not delegated). Without
    // braces `read_binned` is delegated too; with them it is the trait's default (reads
    // binned) unless the braces override it.
    ($t:ty, $s:ident => $e:expr; $p:expr) => {
        $crate::store::delegate_store_reads!($t, $s => $e; $p; {
            fn read_binned(
                &self,
                series: &pitot_shared::series::SeriesKey,
                resolution: &$crate::model::Resolution,
                from_ms: i64,
                to_ms: i64,
                step_ms: i64,
            ) -> Result<Vec<(i64, pitot_shared::batch::SeriesData)>, $crate::store::StoreError>
            {
                let $s = self;
                $e.read_binned(series, resolution, from_ms, to_ms, step_ms)
            }
        });
    };
    ($t:ty, $s:ident => $e:expr; $p:expr; { $($extra:item)* }) => {
        impl $crate::store::Store for $t {
            $($extra)*

            fn series(
                &self,
                name: Option<&str>,
                filters: &[(String, String)],
            ) -> Result<
                Vec<(pitot_shared::series::SeriesKey, pitot_shared::series::Kind)>,
                $crate::store::StoreError,
            > {
                let $s = self;
                $e.series(name, filters)
            }

            fn read(
                &self,
                series: &pitot_shared::series::SeriesKey,
                resolution: &$crate::model::Resolution,
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<(i64, pitot_shared::batch::SeriesData)>, $crate::store::StoreError>
            {
                let $s = self;
                $e.read(series, resolution, from_ms, to_ms)
            }

            fn agents(&self) -> Result<Vec<$crate::store::AgentRecord>, $crate::store::StoreError> {
                let $s = self;
                $e.agents()
            }

            fn resolutions(&self) -> &[$crate::model::Resolution] {
                let $s = self;
                $p.resolutions()
            }

            fn slo_cells(
                &self,
                id: u64,
                resolution: &$crate::model::Resolution,
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<(i64, pitot_shared::slo::Counts)>, $crate::store::StoreError> {
                let $s = self;
                $e.slo_cells(id, resolution, from_ms, to_ms)
            }

            fn slo_host_bad(
                &self,
                id: u64,
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<(String, u64)>, $crate::store::StoreError> {
                let $s = self;
                $e.slo_host_bad(id, from_ms, to_ms)
            }

            fn host_bucket_ms(&self) -> u64 {
                let $s = self;
                $p.host_bucket_ms()
            }

            fn sightings(
                &self,
                model: Option<&str>,
            ) -> Result<Vec<$crate::model::Sighting>, $crate::store::StoreError> {
                let $s = self;
                $e.sightings(model)
            }

            fn sighting_known(
                &self,
                model: &str,
                version: &str,
                host: &str,
            ) -> Result<bool, $crate::store::StoreError> {
                let $s = self;
                $e.sighting_known(model, version, host)
            }

            fn coarse_spans(
                &self,
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<(String, i64, i64)>, $crate::store::StoreError> {
                let $s = self;
                $e.coarse_spans(from_ms, to_ms)
            }

            fn audit_entries(
                &self,
                from: u64,
                to: u64,
            ) -> Result<Vec<(u64, Vec<u8>)>, $crate::store::StoreError> {
                let $s = self;
                $e.audit_entries(from, to)
            }
        }
    };
}
pub(crate) use delegate_store_reads;

delegate_store_reads!(StoreReader, s => s.live.get()?; s.live);
delegate_store_reads!(SledStore, s => s.trees()?; s.reader.live);

/// The writes, all `&mut self`: only the owner of the unique writer can make them.
impl SledStore {
    /// Merges a batch exactly once (see the module docs), with what it adds to each SLO's
    /// counters (`slo_deltas`, from `slo::batch_deltas`) and to the deployment timeline
    /// (`sightings`, from `timeline::sightings`) in the same transaction. Not durable until
    /// [`SledStore::flush`].
    pub fn merge_batch(
        &mut self,
        batch: &Batch,
        received_ms: i64,
        slo_deltas: &[SloDelta],
        sightings: &[Sighting],
    ) -> Result<MergeOutcome, StoreError> {
        let outcome = self
            .trees()?
            .merge_batch(batch, received_ms, slo_deltas, sightings)?;
        if matches!(outcome, MergeOutcome::Merged { .. }) {
            self.merged += 1;
        }
        self.unflushed = true;
        Ok(outcome)
    }

    /// Appends audit entries (sequence number, encoded entry); durable at the next flush.
    pub fn append_audit(&mut self, entries: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (seq, bytes) in entries {
            batch.insert(&seq.to_be_bytes(), bytes.as_slice());
        }
        self.trees()?.audit.apply_batch(batch)?;
        self.unflushed = true;
        Ok(())
    }

    /// Deletes the audit entries before `seq` (retention); returns how many.
    pub fn remove_audit_before(&mut self, seq: u64) -> Result<u64, StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in self.trees()?.audit.range(..seq.to_be_bytes()).keys() {
            batch.remove(key?);
            n += 1;
        }
        self.trees()?.audit.apply_batch(batch)?;
        self.unflushed |= n > 0;
        Ok(n)
    }

    /// Makes every write so far durable, with the next generation (see `integrity`).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let t = self.trees()?;
        let generation = self.generation + 1;
        t.meta.insert("generation", &generation.to_be_bytes())?;
        t.meta.insert("merged", &self.merged.to_be_bytes())?;
        t.flush()?;
        self.generation = generation;
        self.unflushed = false;
        if let Err(error) =
            integrity::write_state_file(&self.reader.live.dir, generation, self.merged)
        {
            // Behind is safe (never taken for damage); it only blunts the check.
            tracing::debug!(%error, "Could not write the store's state file.");
        }
        Ok(())
    }

    /// Writes the coarser buckets whose time has passed from the finer ones (see the module
    /// docs); returns how many.
    pub fn rollup(&mut self, now_ms: i64) -> Result<u64, StoreError> {
        let n = self.trees()?.rollup(now_ms)?;
        self.unflushed |= n > 0;
        Ok(n)
    }

    /// Deletes buckets past their retention, and SLO host sums older than `slo_history` (the
    /// longest SLO window); returns how many.
    pub fn prune(&mut self, now_ms: i64, slo_history: Duration) -> Result<u64, StoreError> {
        let n = self.trees()?.prune(now_ms, slo_history)?;
        self.unflushed |= n > 0;
        Ok(n)
    }

    /// Every SLO counter set: canonical SLI bytes, id, and whether its backfill finished.
    pub fn slo_ids(&self) -> Result<Vec<(Vec<u8>, u64, bool)>, StoreError> {
        self.trees()?.slo_ids()
    }

    /// A new SLO counter set for `canon`, not ready (its backfill has not finished); durable
    /// before it returns, so a cut-off backfill is found and redone at the next start.
    pub fn new_slo(&mut self, canon: &[u8]) -> Result<u64, StoreError> {
        let t = self.trees()?;
        let id = t.db.generate_id()?;
        t.set_slo(canon, id, false)?;
        t.slo_defs.flush()?;
        Ok(id)
    }

    /// Marks the counter set of `canon` as backfilled.
    pub fn slo_ready(&mut self, canon: &[u8], id: u64) -> Result<(), StoreError> {
        self.trees()?.set_slo(canon, id, true)
    }

    /// Removes every counter of SLO `id` (before a backfill starts over).
    pub fn clear_slo(&mut self, id: u64) -> Result<(), StoreError> {
        self.trees()?.clear_slo(id)
    }

    /// Forgets the counter set of `canon` and its counters (an SLI no longer configured).
    pub fn drop_slo(&mut self, canon: &[u8], id: u64) -> Result<(), StoreError> {
        let t = self.trees()?;
        t.clear_slo(id)?;
        t.slo_defs.remove(canon)?;
        Ok(())
    }

    /// Writes SLO cells, replacing what is there (backfills, bulk loads and benchmarks:
    /// normally merges write them). `cells` are (bucket start, counts) at `res`.
    pub fn import_slo_cells(
        &mut self,
        id: u64,
        res: &Resolution,
        cells: &[(i64, Counts)],
    ) -> Result<(), StoreError> {
        self.trees()?.import_slo_cells(id, res, cells)
    }

    /// Adds one host's signed bad events (total − good) per coarsest bucket to its running
    /// sums (backfills). `buckets` in time order, after anything already stored for the host.
    pub fn add_slo_host(
        &mut self,
        id: u64,
        host: &str,
        buckets: &[(i64, i64)],
    ) -> Result<(), StoreError> {
        self.trees()?.add_slo_host(id, host, buckets)
    }

    /// Writes one host's bad events per coarsest bucket as running sums (bulk loads and
    /// benchmarks), in time order and after anything already stored for the host.
    pub fn import_slo_host(
        &mut self,
        id: u64,
        host: &str,
        buckets: &[(i64, u64)],
    ) -> Result<(), StoreError> {
        let signed: Vec<(i64, i64)> = buckets
            .iter()
            .map(|(t, b)| (*t, i64::try_from(*b).unwrap_or(i64::MAX)))
            .collect();
        self.trees()?.add_slo_host(id, host, &signed)
    }

    /// Writes one bucket of series data straight into the store, replacing what is there
    /// (bulk loads and benchmarks).
    pub fn import_bucket(
        &mut self,
        key: &SeriesKey,
        res: &Resolution,
        start_ms: i64,
        data: &SeriesData,
    ) -> Result<(), StoreError> {
        self.trees()?.import_bucket(key, res, start_ms, data)
    }
}

/// The bin of `step_ms` counted from `from_ms` that holds `t_ms`.
fn bin_of(t_ms: i64, from_ms: i64, step_ms: i64) -> i64 {
    let step = step_ms.max(1);
    from_ms.saturating_add(
        t_ms.saturating_sub(from_ms)
            .div_euclid(step)
            .saturating_mul(step),
    )
}

/// Sums `(start, data)` buckets per bin (see [`Store::read_binned`]); in time order. Borrowed
/// data is copied only where it starts a bin.
fn bin_buckets<'d>(
    buckets: impl IntoIterator<Item = (i64, Cow<'d, SeriesData>)>,
    from_ms: i64,
    step_ms: i64,
) -> Vec<(i64, SeriesData)> {
    let mut bins: BTreeMap<i64, SeriesData> = BTreeMap::new();
    for (t, d) in buckets {
        match bins.entry(bin_of(t, from_ms, step_ms)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(d.into_owned());
            }
            // Different kinds under one key, or counts past 2^64: the bin keeps what it has.
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let _conflict = e.get_mut().merge(&d);
            }
        }
    }
    bins.into_iter().collect()
}

/// A [`Store`] that remembers what [`Store::read_binned`] returned, for the parts of one
/// report page that read the same series over the same range (the model page's summary,
/// versions table and chart): each series is read and decoded once. A later read of the same
/// series, resolution and range is answered from memory when its step is a multiple of the
/// remembered one, or spans the range (one bin): those bins are unions of remembered bins, so
/// the sums are exactly what a read would give. Lives for one page: it does not see writes.
#[derive(Debug)]
pub struct ReadMemo<'a> {
    inner: &'a dyn Store,
    reads: std::sync::Mutex<std::collections::HashMap<MemoKey, Remembered>>,
}

/// Series key bytes, resolution code, range.
type MemoKey = (Vec<u8>, u8, i64, i64);
/// The step read at, and its bins.
type Remembered = (i64, Vec<(i64, SeriesData)>);

impl<'a> ReadMemo<'a> {
    /// Remembers reads of `inner`.
    pub fn new(inner: &'a dyn Store) -> Self {
        ReadMemo {
            inner,
            reads: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

delegate_store_reads!(ReadMemo<'_>, s => s.inner; s.inner; {
    fn read_binned(
        &self,
        series: &SeriesKey,
        resolution: &Resolution,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(i64, SeriesData)>, StoreError> {
        let key = (series.to_bytes(), resolution.code, from_ms, to_ms);
        {
            let reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((step, bins)) = reads.get(&key) {
                if *step == step_ms {
                    return Ok(bins.clone());
                }
                if (*step > 0 && step_ms % *step == 0) || step_ms >= to_ms - from_ms {
                    // Merged by reference: one copy per new bin, not per remembered one.
                    let remembered = bins.iter().map(|(t, d)| (*t, Cow::Borrowed(d)));
                    return Ok(bin_buckets(remembered, from_ms, step_ms));
                }
            }
        }
        let bins = self
            .inner
            .read_binned(series, resolution, from_ms, to_ms, step_ms)?;
        self.reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(|| (step_ms, bins.clone()));
        Ok(bins)
    }
});

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

mod integrity;
pub use integrity::{Damage, TreeCheck};

#[cfg(test)]
mod tests;
