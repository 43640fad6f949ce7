//! The durable FIFO of encoded batches, over sled (the only module that touches sled).
//!
//! ```text
//! tree "batches": seq (u64 big-endian) → bincode(Batch)       oldest first
//! tree "meta":    "epoch" → u64 BE (random, fixed when the spool is created)
//!                 "next_seq" → u64 BE (the next sequence number to assign)
//! ```
//!
//! `append` assigns the sequence number, writes batch and counter in one transaction and
//! flushes (fsync) before returning: a batch the recorder handed over survives a crash. `ack`
//! removes without flushing; a removal lost to a crash only means one re-send, which the
//! aggregator recognises as a duplicate.
//!
//! Bound: when the spool exceeds `max_bytes`, the two oldest batches that were never handed to
//! the uplink are merged into one (histograms add, the interval widens) until it fits. A batch
//! that may have reached the aggregator (handed out in this run, or left by an earlier one) is
//! never rewritten: merging it could count its data twice, or hide new data behind a sequence
//! number already merged. If only such batches remain, the spool stays over its bound and says so.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pitot_shared::batch::Batch;
use pitot_shared::protocol::SpoolId;
use pitot_shared::wire::{BatchHeader, decode_batch, decode_batch_header, encode_batch};
use sled::Transactional;
use tracing::warn;

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The store failed (disk full, I/O error, corruption).
    #[error("spool storage: {0}")]
    Storage(#[from] sled::Error),
    /// A transaction was aborted (the closures here never abort, so this is unexpected).
    #[error("spool transaction aborted")]
    Aborted,
    /// Another process (another agent) holds the spool's lock.
    #[error(
        "another process holds the spool in {0} (is a second pitot-agent running with the same \
         spool.dir?); stop it, or give this agent its own spool.dir"
    )]
    Locked(std::path::PathBuf),
}

impl SpoolError {
    /// A failed sled transaction: its storage error, or an abort.
    fn from_transaction(e: sled::transaction::TransactionError<()>) -> Self {
        match e {
            sled::transaction::TransactionError::Storage(e) => SpoolError::Storage(e),
            sled::transaction::TransactionError::Abort(()) => SpoolError::Aborted,
        }
    }
}

/// A batch read from the spool: its id and encoded bytes.
#[derive(Debug, Clone)]
pub struct Spooled {
    /// The batch's id (its sequence number).
    pub id: SpoolId,
    /// `bincode(Batch)`.
    pub payload: Arc<[u8]>,
}

/// The durable batch queue (see the module docs).
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    batches: sled::Tree,
    meta: sled::Tree,
    epoch: u64,
    max_bytes: u64,
    bytes: AtomicU64,
    /// Sequence numbers up to this one may have been handed to the uplink.
    handed_out: AtomicU64,
    /// Serialises coarsening against `peek_after`, so a batch is never rewritten after it was
    /// handed out.
    lock: Mutex<()>,
    coarsened: AtomicU64,
    append_failures: AtomicU64,
}

fn be(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl Spool {
    /// Opens (or creates) the spool under `dir`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(8 * 1024 * 1024)
            .open()
            .map_err(|e| match &e {
                // sled takes an exclusive file lock on its directory.
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    SpoolError::Locked(dir.to_path_buf())
                }
                _ => SpoolError::Storage(e),
            })?;
        let batches = db.open_tree("batches")?;
        let meta = db.open_tree("meta")?;
        let epoch = match meta.get("epoch")?.as_deref().and_then(be) {
            Some(e) => e,
            None => {
                let e = rand::random::<u64>().max(1);
                meta.insert("epoch", &e.to_be_bytes())?;
                db.flush()?;
                e
            }
        };
        let mut bytes = 0u64;
        let mut last_seq = 0u64;
        for entry in batches.iter() {
            let (k, v) = entry?;
            bytes += v.len() as u64;
            last_seq = last_seq.max(be(&k).unwrap_or(0));
        }
        Ok(Spool {
            inner: Arc::new(Inner {
                db,
                batches,
                meta,
                epoch,
                max_bytes,
                bytes: AtomicU64::new(bytes),
                // A previous run may have sent any batch it left behind (its acks are not
                // flushed): none of them may be coarsened, or an already merged batch would
                // carry new data under a sequence number the aggregator calls a duplicate.
                handed_out: AtomicU64::new(last_seq),
                lock: Mutex::new(()),
                coarsened: AtomicU64::new(0),
                append_failures: AtomicU64::new(0),
            }),
        })
    }

    /// The spool's epoch (random per spool).
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// Bytes of batches held.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// Batches held.
    pub fn len(&self) -> usize {
        self.inner.batches.len()
    }

    /// True when no batch is held.
    pub fn is_empty(&self) -> bool {
        self.inner.batches.is_empty()
    }

    /// Batches merged into others to respect the bound, since start.
    pub fn coarsened(&self) -> u64 {
        self.inner.coarsened.load(Ordering::Relaxed)
    }

    /// Batches that could not be stored (a full or failing disk), since start.
    pub fn append_failures(&self) -> u64 {
        self.inner.append_failures.load(Ordering::Relaxed)
    }

    /// Assigns the next sequence number to `batch`, stores it durably, and returns its id. A
    /// failure is counted ([`Spool::append_failures`]).
    pub fn append(&self, batch: Batch) -> Result<SpoolId, SpoolError> {
        let result = self.append_inner(batch);
        if result.is_err() {
            self.inner.append_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn append_inner(&self, mut batch: Batch) -> Result<SpoolId, SpoolError> {
        let inner = &*self.inner;
        let _guard = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        let seq = inner
            .meta
            .get("next_seq")?
            .as_deref()
            .and_then(be)
            .unwrap_or(1);
        batch.seq = seq;
        batch.epoch = inner.epoch;
        batch.spool_bytes = self.bytes();
        let encoded = encode_batch(&batch);
        let len = encoded.len() as u64;
        (&inner.batches, &inner.meta)
            .transaction(|(b, m)| {
                b.insert(&seq.to_be_bytes(), encoded.as_slice())?;
                m.insert("next_seq", &(seq + 1).to_be_bytes())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(SpoolError::from_transaction)?;
        inner.db.flush()?;
        inner.bytes.fetch_add(len, Ordering::Relaxed);
        if self.bytes() > inner.max_bytes {
            self.coarsen()?;
        }
        Ok(SpoolId(seq))
    }

    /// Up to `limit` batches after `after` (all from the oldest when `None`), marking them as
    /// handed out.
    pub fn peek_after(
        &self,
        after: Option<SpoolId>,
        limit: usize,
    ) -> Result<Vec<Spooled>, SpoolError> {
        let inner = &*self.inner;
        let _guard = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        let start = after.map_or(0, |id| id.0.saturating_add(1));
        let mut out = Vec::new();
        for entry in inner.batches.range(start.to_be_bytes()..).take(limit) {
            let (k, v) = entry?;
            if let Some(seq) = be(&k) {
                inner.handed_out.fetch_max(seq, Ordering::Relaxed);
                out.push(Spooled {
                    id: SpoolId(seq),
                    payload: Arc::from(v.as_ref()),
                });
            }
        }
        Ok(out)
    }

    /// The header of the oldest batch still held (not yet acknowledged), without handing it out.
    pub fn oldest_header(&self) -> Result<Option<BatchHeader>, SpoolError> {
        Ok(match self.inner.batches.first()? {
            Some((_, v)) => decode_batch_header(&v).ok(),
            None => None,
        })
    }

    /// Removes an acknowledged (or rejected) batch, returning its header when it was held.
    pub fn ack(&self, id: SpoolId) -> Result<Option<BatchHeader>, SpoolError> {
        let Some(old) = self.inner.batches.remove(id.0.to_be_bytes())? else {
            return Ok(None);
        };
        self.inner
            .bytes
            .fetch_sub(old.len() as u64, Ordering::Relaxed);
        Ok(decode_batch_header(&old).ok())
    }

    /// Flushes to disk (at shutdown).
    pub fn flush(&self) -> Result<(), SpoolError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Merges pairs of never-handed-out batches until the spool fits its bound (caller holds
    /// the lock).
    fn coarsen(&self) -> Result<(), SpoolError> {
        let inner = &*self.inner;
        while self.bytes() > inner.max_bytes {
            let floor = inner.handed_out.load(Ordering::Relaxed).saturating_add(1);
            let mut candidates = inner.batches.range(floor.to_be_bytes()..);
            let (Some(first), Some(second)) = (candidates.next(), candidates.next()) else {
                warn!(
                    spool_bytes = self.bytes(),
                    max_bytes = inner.max_bytes,
                    "Spool over its bound and nothing left to coarsen."
                );
                return Ok(());
            };
            let (k1, v1) = first?;
            let (k2, v2) = second?;
            let (Ok(mut a), Ok(b)) = (decode_batch(&v1), decode_batch(&v2)) else {
                warn!("Spool holds an undecodable batch; leaving it for the aggregator to reject.");
                return Ok(());
            };
            a.absorb(b);
            let merged = encode_batch(&a);
            let new_len = merged.len() as u64;
            (&inner.batches,)
                .transaction(|(t,)| {
                    t.insert(&k1, merged.as_slice())?;
                    t.remove(&k2)?;
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(SpoolError::from_transaction)?;
            let old_len = (v1.len() + v2.len()) as u64;
            inner.bytes.fetch_sub(old_len, Ordering::Relaxed);
            inner.bytes.fetch_add(new_len, Ordering::Relaxed);
            inner.coarsened.fetch_add(1, Ordering::Relaxed);
        }
        inner.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use pitot_shared::batch::{SeriesData, SeriesSnapshot};
    use pitot_shared::histogram::ValueHistogram;
    use pitot_shared::series::{AgentId, SeriesKey};

    use super::*;

    fn batch(start: i64, values: &[f64]) -> Batch {
        let mut h = ValueHistogram::new();
        for v in values {
            h.record(*v).unwrap();
        }
        Batch {
            agent_id: AgentId("a".into()),
            epoch: 0,
            seq: 0,
            interval_start_ms: start,
            interval_ms: 1000,
            agent_version: "t".into(),
            spool_bytes: 0,
            series: vec![SeriesSnapshot {
                key: SeriesKey::new("lat", vec![]).unwrap(),
                data: SeriesData::Histogram(h),
            }],
        }
    }

    fn count(bytes: &[u8]) -> u64 {
        let b = decode_batch(bytes).unwrap();
        match &b.series[0].data {
            SeriesData::Histogram(h) => h.count(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_second_open_names_the_lock_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path(), u64::MAX).unwrap();
        match Spool::open(dir.path(), u64::MAX) {
            Err(SpoolError::Locked(p)) => assert_eq!(p, dir.path()),
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn survives_reopen_with_epoch_and_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = {
            let spool = Spool::open(dir.path(), u64::MAX).unwrap();
            assert_eq!(spool.append(batch(0, &[1.0])).unwrap(), SpoolId(1));
            assert_eq!(spool.append(batch(1000, &[2.0])).unwrap(), SpoolId(2));
            spool.ack(SpoolId(1)).unwrap();
            spool.flush().unwrap();
            spool.epoch()
        };
        let spool = Spool::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(spool.epoch(), epoch);
        let held = spool.peek_after(None, 10).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].id, SpoolId(2));
        assert_eq!(spool.append(batch(2000, &[3.0])).unwrap(), SpoolId(3));
        assert!(spool.bytes() > 0);
    }

    #[test]
    fn bound_coarsens_unsent_batches_and_keeps_every_count() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode_batch(&batch(0, &[1.0])).len() as u64;
        let spool = Spool::open(dir.path(), one * 3).unwrap();
        spool.append(batch(0, &[1.0])).unwrap();
        // Batch 1 is handed out: it must never be rewritten.
        assert_eq!(spool.peek_after(None, 1).unwrap().len(), 1);
        for i in 1..10 {
            spool.append(batch(i * 1000, &[1.0, 2.0])).unwrap();
        }
        assert!(spool.coarsened() > 0);
        let held = spool.peek_after(None, 100).unwrap();
        assert_eq!(held[0].id, SpoolId(1));
        assert_eq!(count(&held[0].payload), 1, "handed-out batch untouched");
        let total: u64 = held.iter().map(|s| count(&s.payload)).sum();
        assert_eq!(total, 1 + 9 * 2, "coarsening loses nothing");
        assert!(held.len() < 10);
    }

    #[test]
    fn batches_left_by_an_earlier_run_are_never_coarsened() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode_batch(&batch(0, &[1.0])).len() as u64;
        {
            let spool = Spool::open(dir.path(), u64::MAX).unwrap();
            for i in 0..4 {
                // The earlier run sent these; their acks never reached the disk.
                spool.append(batch(i * 1000, &[1.0])).unwrap();
            }
            assert_eq!(spool.peek_after(None, 10).unwrap().len(), 4);
        }
        let spool = Spool::open(dir.path(), one * 3).unwrap();
        for i in 4..10 {
            spool.append(batch(i * 1000, &[2.0, 3.0])).unwrap();
        }
        assert!(spool.coarsened() > 0);
        let held = spool.peek_after(None, 100).unwrap();
        let ids: Vec<u64> = held.iter().map(|s| s.id.0).collect();
        assert_eq!(&ids[..4], &[1, 2, 3, 4], "{ids:?}");
        for s in &held[..4] {
            assert_eq!(count(&s.payload), 1, "batch {} rewritten", s.id.0);
        }
        let total: u64 = held.iter().map(|s| count(&s.payload)).sum();
        assert_eq!(total, 4 + 6 * 2);
    }
}
