//! The merge actor: the only writer of the store. It owns the unique [`SledStore`] writer (the
//! HTTP side has readers, which cannot write), so "one writer" is enforced by the compiler.
//! Connections send it decoded batches over a bounded channel; it merges them one by one, each
//! with what it adds to the SLO counters ([`slo::batch_deltas`]), then flushes once for
//! everything it merged in that round (group commit) and only then answers, so an
//! acknowledgement always means the merge is on disk. Between rounds it rolls finer buckets up
//! into coarser ones and prunes what is past retention, when a timer asks. It also keeps the
//! audit trail's chain ([`Chain`]): the first sighting of a version on a host is recorded with
//! the merge that brought it, and events from elsewhere ([`AuditSink`]) arrive as jobs.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pitot_shared::batch::Batch;
use pitot_shared::protocol::VerifiedBatch;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::audit::{Chain, Event};
use crate::export::Exports;
use crate::glue::now_ms;
use crate::slo::{self, InstalledSlo};
use crate::store::{MergeOutcome, SledStore, Store as _, StoreError};
use crate::telemetry::Stats;
use crate::timeline;

/// Requests waiting for the actor, at most. Each connection has at most one outstanding, so
/// this only bounds bursts from many agents.
pub const QUEUE: usize = 1024;
/// Most merges per flush.
const GROUP: usize = 256;

/// What the actor does.
#[derive(Debug)]
pub enum Job {
    /// Merge a batch.
    Merge(MergeRequest),
    /// Roll up the coarser buckets whose time has passed (sent by a timer).
    Rollup,
    /// Delete what is past retention (sent by a timer).
    Prune,
    /// Record an event in the audit trail (when it changes what the trail says).
    Audit(Event),
}

/// Sends audit events to the merge actor without ever waiting (a full queue drops the event
/// and counts it), at most one per key per minute where asked.
#[derive(Debug)]
pub struct AuditSink {
    jobs: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    /// Per key: when last sent (Unix ms) and how many were held back since.
    limited: Mutex<HashMap<String, (i64, u64)>>,
}

/// How often a rate-limited kind of event is recorded per key.
const AUDIT_EVERY_MS: i64 = 60_000;
/// Audit entries held while the store is not writable, at most (older ones are dropped and
/// counted in `audit_dropped`).
const MAX_PENDING_AUDIT: usize = 10_000;
/// Rate-limit keys kept, at most (the oldest are forgotten beyond).
const AUDIT_KEYS: usize = 4096;

impl AuditSink {
    /// A sink into `jobs`.
    pub fn new(jobs: mpsc::Sender<Job>, stats: Arc<Stats>) -> AuditSink {
        AuditSink {
            jobs,
            stats,
            limited: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `event`.
    pub fn send(&self, event: Event) {
        if self.jobs.try_send(Job::Audit(event)).is_err() {
            self.stats.audit_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends the event `make(held back since the last one)` unless one with `key` went less
    /// than `every_ms` ago.
    pub fn send_limited(&self, key: &str, every_ms: Option<i64>, make: impl FnOnce(u64) -> Event) {
        let now = now_ms();
        let every = every_ms.unwrap_or(AUDIT_EVERY_MS);
        let held = {
            let Ok(mut map) = self.limited.lock() else {
                return;
            };
            if map.len() >= AUDIT_KEYS
                && !map.contains_key(key)
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
            let entry = map.entry(key.to_owned()).or_insert((i64::MIN, 0));
            if entry.0 != i64::MIN && now - entry.0 < every {
                entry.1 += 1;
                return;
            }
            let held = entry.1;
            *entry = (now, 0);
            held
        };
        self.send(make(held));
    }
}

/// Merges one batch as the actor does: the SLO engine's deltas, the timeline's sightings,
/// then (when merged) an audit entry for each `(model, version, host)` seen for the first
/// time. An audit write that fails is logged and counted; it never fails the merge.
pub fn merge_one(
    store: &mut SledStore,
    slos: &[InstalledSlo],
    chain: &mut Chain,
    stats: &Stats,
    batch: &Batch,
    received_ms: i64,
) -> Result<MergeOutcome, StoreError> {
    let deltas = slo::batch_deltas(slos, batch);
    let seen = timeline::sightings(batch);
    let mut first = Vec::new();
    for s in &seen {
        if !store.sighting_known(&s.model, &s.version, &s.host)? {
            first.push(s);
        }
    }
    let outcome = store.merge_batch(batch, received_ms, &deltas, &seen)?;
    if matches!(outcome, MergeOutcome::Merged { .. }) && !first.is_empty() {
        let entries: Vec<(u64, Vec<u8>)> = first
            .into_iter()
            .flat_map(|s| {
                chain.record(
                    received_ms,
                    Event::FirstSeen {
                        model: s.model.clone(),
                        version: s.version.clone(),
                        host: s.host.clone(),
                        from_ms: s.from_ms,
                    },
                )
            })
            .collect();
        append_audit(store, chain, stats, &entries);
    }
    Ok(outcome)
}

/// Appends entries; on failure, logs, counts and re-reads the chain from the store.
fn append_audit(
    store: &mut SledStore,
    chain: &mut Chain,
    stats: &Stats,
    entries: &[(u64, Vec<u8>)],
) {
    if entries.is_empty() {
        return;
    }
    if let Err(error) = store.append_audit(entries) {
        stats
            .audit_dropped
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        error!(%error, "Writing the audit trail failed; these entries are lost.");
        match Chain::load(&*store) {
            Ok(c) => *chain = c,
            Err(error) => error!(%error, "Re-reading the audit trail failed."),
        }
    }
}

/// One batch to merge and where to send the outcome.
#[derive(Debug)]
pub struct MergeRequest {
    /// The batch, as the protocol session verified it (only it can build one).
    pub batch: VerifiedBatch,
    /// Receive time, Unix ms.
    pub received_ms: i64,
    /// The outcome, sent after the flush.
    pub reply: oneshot::Sender<Result<MergeOutcome, MergeError>>,
}

/// Why a batch was not merged (it is not acknowledged: the agent keeps it and sends it again).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The batch's transaction failed.
    #[error("merging the batch failed: {0}")]
    Merge(#[source] StoreError),
    /// The round's flush failed, so nothing in it is durable.
    #[error("flushing the store failed: {0}")]
    Flush(#[source] Arc<StoreError>),
    /// The store takes no writes now (a full disk, or reopening after a storage error); the
    /// agent keeps the batch spooled.
    #[error("store not writable: {0}")]
    NotWritable(String),
}

/// Whether the store takes writes, and what brings it back. Before every round of writes the
/// actor checks the free space under `store.dir` (below `store.min_free` it writes nothing, so
/// sled is not driven into a full disk) and, after a write failed, reopens the engine: sled
/// refuses every write after a storage error until it is reopened.
#[derive(Debug)]
pub struct Health {
    dir: std::path::PathBuf,
    min_free: u64,
    broken: Option<String>,
    last_reopen: Option<std::time::Instant>,
    gate: pitot_shared::loggate::LogGate,
}

/// The reserve file in `store.dir`: space held back so that sled, which writes while it opens a
/// store, can open it on a full disk (the aggregator then starts read-only).
pub const RESERVE_FILE: &str = "pitot-reserve";
/// The reserve's size at most (it is also at most `store.min_free`).
const RESERVE_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Deletes the reserve; true when there was one to free.
pub fn release_reserve(dir: &std::path::Path) -> bool {
    std::fs::remove_file(dir.join(RESERVE_FILE)).is_ok()
}

/// Allocates the reserve (`min(store.min_free, 16 MiB)`, with `fallocate`: blocks taken, nothing
/// written; zeros where the file system cannot) when it is missing and the disk has room for it
/// beyond `min_free`. Called at start and, after a release, once the store is writable again.
pub fn ensure_reserve(dir: &std::path::Path, min_free: u64) {
    use std::io::Write as _;
    let path = dir.join(RESERVE_FILE);
    let size = min_free.min(RESERVE_MAX_BYTES);
    if size == 0 || path.exists() || free_bytes(dir).is_some_and(|f| f < min_free + size) {
        return;
    }
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        let flags = nix::fcntl::FallocateFlags::empty();
        if nix::fcntl::fallocate(&f, flags, 0, size as i64).is_err() {
            let chunk = vec![0u8; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n])?;
                left -= n as u64;
            }
        }
        f.sync_all()
    })();
    if let Err(error) = written {
        let _gone = std::fs::remove_file(&path);
        warn!(%error, "Could not write the store's reserve file.");
    }
}

/// Free space a reopen needs at least (sled writes a snapshot while it recovers).
const REOPEN_FREE_BYTES: u64 = 1024 * 1024;

/// Free bytes for unprivileged writers on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

impl Health {
    /// Health of the store under `dir`, which must keep `min_free` bytes free.
    pub fn new(dir: &std::path::Path, min_free: u64) -> Self {
        Health {
            dir: dir.to_path_buf(),
            min_free,
            broken: None,
            last_reopen: None,
            gate: pitot_shared::loggate::LogGate::new(Duration::from_secs(60)),
        }
    }

    /// True when the file system under the store has `min_free` bytes free (or cannot tell).
    pub fn has_room(&self) -> bool {
        free_bytes(&self.dir).is_none_or(|free| free >= self.min_free)
    }

    /// `Ok` when writes may go ahead now; else why not (the store is left untouched).
    pub fn ready(&mut self, store: &mut SledStore, stats: &Stats) -> Result<(), String> {
        let now = std::time::Instant::now();
        if let Some(free) = free_bytes(&self.dir)
            && free < self.min_free
        {
            let why = format!(
                "{free} bytes free under {}, below store.min_free ({} bytes)",
                self.dir.display(),
                self.min_free
            );
            return Err(self.not_writable(stats, now, why));
        }
        if let Some(why) = self.broken.clone() {
            // The reopen right after the failure failed (reads answer 503 meanwhile): try
            // again once there is room for sled, which writes while it recovers.
            let too_soon = self
                .last_reopen
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(2));
            let no_room = free_bytes(&self.dir).is_some_and(|free| free < REOPEN_FREE_BYTES);
            if too_soon || no_room {
                return Err(why);
            }
            self.last_reopen = Some(now);
            if let Err(error) = store.reopen() {
                return Err(self.not_writable(stats, now, format!("reopening failed: {error}")));
            }
            self.broken = None;
        }
        ensure_reserve(&self.dir, self.min_free);
        if !stats.store_writable.swap(true, Ordering::Relaxed) {
            info!(store = %self.dir.display(), "The store is writable again; merging resumes.");
            self.gate.reset();
        }
        Ok(())
    }

    /// A write failed with `error`: a storage failure makes the store not writable until a
    /// reopen succeeds.
    pub fn failed(&mut self, error: &StoreError, stats: &Stats) {
        if error.is_storage() {
            let why = format!("a write failed: {error}");
            self.broken = Some(why.clone());
            self.not_writable(stats, std::time::Instant::now(), why);
        }
    }

    /// After a round in which a write failed (while readers are kept out): when sled holds
    /// writes it applied but could not flush, reopens the engine at once, so they are gone
    /// before anyone reads them. On a disk too full for sled to reopen, the reserve file is
    /// released for it; when the reopen fails all the same, reads answer
    /// [`StoreError::Closed`] (503) until a later reopen succeeds, rather than show what is
    /// not durable. When nothing was applied (sled refused the first write) the failed engine
    /// holds flushed data only and keeps serving reads until `ready` can reopen it.
    pub fn discard_unflushed(&mut self, store: &mut SledStore, stats: &Stats) {
        let Some(why) = self.broken.clone() else {
            return;
        };
        if !store.has_unflushed() {
            return;
        }
        if free_bytes(&self.dir).is_some_and(|free| free < REOPEN_FREE_BYTES)
            && release_reserve(&self.dir)
        {
            warn!(
                store = %self.dir.display(),
                "Released the store's reserve file so that sled can reopen on a full disk; it \
                 is taken again once the store is writable."
            );
        }
        let now = std::time::Instant::now();
        self.last_reopen = Some(now);
        match store.reopen() {
            // Writable again at the next round that finds room (see `ready`).
            Ok(()) => self.broken = None,
            Err(error) => {
                let why = format!(
                    "{why}; reopening failed: {error} (reports answer 503 until it succeeds)"
                );
                self.broken = Some(why.clone());
                self.not_writable(stats, now, why);
            }
        }
    }

    fn not_writable(&mut self, stats: &Stats, now: std::time::Instant, why: String) -> String {
        stats.store_writable.store(false, Ordering::Relaxed);
        if let Some(held) = self.gate.admit(now, "store") {
            error!(
                reason = %why,
                refusals_not_logged = held,
                "The store is not writable; batches are refused (agents keep them spooled) and \
                 reports show what is stored. Free space under store.dir; merging resumes by \
                 itself."
            );
        }
        why
    }
}

/// The running actor: where to send jobs, and its thread (which ends, after a last flush,
/// when every sender is gone).
#[derive(Debug)]
pub struct Actor {
    /// Jobs in.
    pub jobs: mpsc::Sender<Job>,
    /// The thread, to join at shutdown.
    pub thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts the actor on its own thread (sled calls block), owning the store's writer, the
/// installed SLOs and the audit chain (entries older than `audit_retention` are pruned); each
/// batch merged and flushed is added to `exports`.
pub fn spawn(
    mut store: SledStore,
    mut health: Health,
    slos: Vec<InstalledSlo>,
    mut chain: Chain,
    audit_retention: Duration,
    stats: Arc<Stats>,
    exports: Arc<Exports>,
) -> Actor {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    let slo_history = slo::longest_window(&slos);
    let spawned = std::thread::Builder::new()
        .name("pitot-merge".into())
        .spawn(move || {
            let mut pending_audit = Vec::new();
            while let Some(first) = rx.blocking_recv() {
                let mut round = Vec::new();
                let (mut rollup, mut prune) = (false, false);
                let mut audited = Vec::new();
                let mut next = Some(first);
                while let Some(job) = next.take() {
                    match job {
                        Job::Merge(r) => round.push(r),
                        Job::Rollup => rollup = true,
                        Job::Prune => prune = true,
                        Job::Audit(event) => audited.extend(chain.record(now_ms(), event)),
                    }
                    if round.len() < GROUP {
                        next = rx.try_recv().ok();
                    }
                }
                if let Err(why) = health.ready(&mut store, &stats) {
                    // Nothing is written: the merges are refused unacknowledged, the ticks
                    // wait for the next round, audit events for the next writable one.
                    pending_audit.extend(audited);
                    if pending_audit.len() > MAX_PENDING_AUDIT {
                        let over = pending_audit.len() - MAX_PENDING_AUDIT;
                        pending_audit.drain(..over);
                        stats
                            .audit_dropped
                            .fetch_add(over as u64, Ordering::Relaxed);
                    }
                    for request in round {
                        let _receiver_gone = request
                            .reply
                            .send(Err(MergeError::NotWritable(why.clone())));
                    }
                    continue;
                }
                let audited = {
                    let mut all = std::mem::take(&mut pending_audit);
                    all.extend(audited);
                    all
                };
                // Readers wait from the round's first write until it is flushed, or dropped
                // from memory when the flush fails: reads show durable data only.
                let gate = store.hold_reads();
                let closed = gate.close();
                if rollup {
                    match store.rollup(now_ms()) {
                        Ok(n) => {
                            stats.buckets_rolled_up.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(error) => {
                            error!(%error, "Rollup failed; it is retried at the next tick.");
                            health.failed(&error, &stats);
                        }
                    }
                }
                if prune {
                    match store.prune(now_ms(), slo_history) {
                        Ok(n) => {
                            stats.buckets_pruned.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(error) => {
                            warn!(%error, "Retention pass failed.");
                            health.failed(&error, &stats);
                        }
                    }
                    let cutoff = now_ms() - audit_retention.as_millis() as i64;
                    let pruned = crate::audit::first_kept(&store, cutoff)
                        .and_then(|seq| store.remove_audit_before(seq));
                    if let Err(error) = pruned {
                        warn!(%error, "Audit retention pass failed.");
                    }
                }
                if !audited.is_empty() {
                    append_audit(&mut store, &mut chain, &stats, &audited);
                    if round.is_empty()
                        && let Err(error) = store.flush()
                    {
                        error!(%error, "Flushing the audit trail failed.");
                        health.failed(&error, &stats);
                    }
                }
                if round.is_empty() {
                    health.discard_unflushed(&mut store, &stats);
                    drop(closed);
                    continue;
                }
                stats
                    .merge_queue_popped
                    .fetch_add(round.len() as u64, Ordering::Relaxed);
                let outcomes: Vec<Result<MergeOutcome, StoreError>> = round
                    .iter()
                    .map(|r| {
                        merge_one(
                            &mut store,
                            &slos,
                            &mut chain,
                            &stats,
                            r.batch.batch(),
                            r.received_ms,
                        )
                    })
                    .collect();
                for error in outcomes.iter().filter_map(|o| o.as_ref().err()) {
                    health.failed(error, &stats);
                }
                let flushed = store.flush().map_err(Arc::new);
                if let Err(error) = &flushed {
                    // Nothing of this round is durable: the reopen drops it from memory too,
                    // before any reader sees it, and the agents send it again.
                    health.failed(error, &stats);
                }
                health.discard_unflushed(&mut store, &stats);
                drop(closed);
                if flushed.is_ok() && !exports.is_empty() {
                    let now = now_ms();
                    for (r, o) in round.iter().zip(&outcomes) {
                        if matches!(o, Ok(MergeOutcome::Merged { .. })) {
                            exports.observe(r.batch.batch(), now);
                        }
                    }
                }
                for (request, outcome) in round.into_iter().zip(outcomes) {
                    let answer = match (&flushed, outcome) {
                        (Ok(()), Ok(o)) => Ok(o),
                        (Err(e), _) => Err(MergeError::Flush(Arc::clone(e))),
                        (_, Err(e)) => Err(MergeError::Merge(e)),
                    };
                    let _receiver_gone = request.reply.send(answer);
                }
            }
            if let Err(error) = store.flush() {
                error!(%error, "Flushing the store at shutdown failed.");
            }
        });
    let thread = match spawned {
        Ok(t) => Some(t),
        Err(error) => {
            error!(%error, "Cannot start the merge thread; no batch will be merged.");
            None
        }
    };
    Actor { jobs: tx, thread }
}
