//! The durable FIFO of encoded batches: one checksummed file per batch in the spool directory
//! (the only module that writes it; `legacy` reads the sled spools of 0.2 and earlier).
//!
//! ```text
//! <spool.dir>/LOCK                    held with an exclusive lock while the agent runs
//! <spool.dir>/<seq:020>.batch         one batch: header ++ bincode(Batch)
//! <spool.dir>/<seq:020>.tmp           a batch being written (removed at open)
//! <spool.dir>/<seq:020>.damaged       a batch that failed its checksum, set aside
//! header = "PSB1" | covers_to: u64 LE | len: u32 LE | crc32(covers_to ++ len ++ payload): u32 LE
//! ```
//!
//! `append` writes a temporary file, syncs it, renames it into place and syncs the directory
//! before returning: a batch the recorder handed over survives a crash, and a batch that could
//! not be written (a full or failing disk) leaves nothing behind and is counted. Nothing is
//! kept open between operations, so a failed write leaves no state to recover: the next append
//! simply tries again, and writing resumes as soon as space returns. `ack` unlinks without a
//! directory sync; an unlink lost to a crash only means one re-send, which the aggregator
//! recognises as a duplicate. An unlink that fails is retried later and the batch is not sent
//! again meanwhile.
//!
//! Epochs: every open starts a new random epoch, because the directory cannot prove it was not
//! restored from an older copy (a VM snapshot, a backup) or lost files; sequence numbers only
//! need to be unique within an epoch. Batches left by earlier runs keep the epoch and sequence
//! number inside their payload, so the aggregator recognises the ones it merged before.
//!
//! Bound: `max_bytes` bounds the batch files' space on disk (allocated blocks). When the spool
//! exceeds it, the two oldest batches never handed to the uplink are merged into one
//! (histograms add, the interval widens) until it fits. The merged file replaces the first and
//! records in `covers_to` the last sequence number it absorbed, so a crash before the second
//! file's unlink cannot count it twice: at open, a file covered by an earlier one is removed.
//! A batch that may have reached the aggregator (handed out in this run, or left by an earlier
//! one) is never rewritten. If only such batches remain, the spool stays over its bound and
//! says so.

mod legacy;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pitot_shared::batch::Batch;
use pitot_shared::protocol::SpoolId;
use pitot_shared::wire::{
    BatchHeader, MAX_BATCH_BYTES, decode_batch, decode_batch_header, encode_batch,
};
use tracing::{error, warn};

const MAGIC: [u8; 4] = *b"PSB1";
const HEADER_BYTES: usize = 4 + 8 + 4 + 4;
/// Largest batch file read back (a batch plus its header); anything larger is damage.
const MAX_FILE_BYTES: u64 = (MAX_BATCH_BYTES + HEADER_BYTES) as u64;

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file operation failed (disk full, I/O error, permissions).
    #[error("spool {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Another process (another agent) holds the spool's lock.
    #[error(
        "another process holds the spool in {0} (is a second pitot-agent running with the same \
         spool.dir?); stop it, or give this agent its own spool.dir"
    )]
    Locked(PathBuf),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
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
    dir: PathBuf,
    /// Holds the directory's lock for as long as the spool is open.
    _lock: File,
    epoch: u64,
    max_bytes: u64,
    state: Mutex<State>,
    coarsened: AtomicU64,
    append_failures: AtomicU64,
    /// `append_failures` already carried in a written batch.
    failures_reported: AtomicU64,
    damaged: AtomicU64,
}

#[derive(Debug)]
struct State {
    entries: BTreeMap<u64, Entry>,
    next_seq: u64,
    /// Blocks the batch files take on disk, bytes.
    disk_bytes: u64,
    /// Sequence numbers up to this one may have been handed to the uplink.
    handed_out: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    disk_bytes: u64,
    covers_to: u64,
    header: Option<BatchHeader>,
    /// Acknowledged, but the unlink failed: never handed out again, unlinked later.
    acked: bool,
}

/// What a batch file holds, or why it cannot be used.
enum ReadOutcome {
    Ok { covers_to: u64, payload: Vec<u8> },
    Damaged(String),
}

fn batch_path(dir: &Path, seq: u64, ext: &str) -> PathBuf {
    dir.join(format!("{seq:020}.{ext}"))
}

fn checksum(covers_to: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&covers_to.to_le_bytes());
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `payload` as batch `seq` (temporary file, sync, rename, directory sync) and returns
/// the blocks it takes on disk. On failure nothing is left behind.
fn write_batch_file(
    dir: &Path,
    seq: u64,
    covers_to: u64,
    payload: &[u8],
) -> Result<u64, SpoolError> {
    let tmp = batch_path(dir, seq, "tmp");
    let path = batch_path(dir, seq, "batch");
    let written = (|| -> io::Result<u64> {
        let mut f = File::create(&tmp)?;
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&covers_to.to_le_bytes());
        header.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        header.extend_from_slice(&checksum(covers_to, payload).to_le_bytes());
        f.write_all(&header)?;
        f.write_all(payload)?;
        f.sync_all()?;
        Ok(f.metadata()?.blocks() * 512)
    })();
    let disk = match written {
        Ok(disk) => disk,
        Err(e) => {
            let _gone = fs::remove_file(&tmp);
            return Err(io_err("writing", &tmp)(e));
        }
    };
    let placed = fs::rename(&tmp, &path).and_then(|()| sync_dir(dir));
    if let Err(e) = placed {
        // Not durably in place: take it back so a batch counted as lost is never sent.
        let _gone = fs::remove_file(&tmp);
        let _gone = fs::remove_file(&path);
        return Err(io_err("placing", &path)(e));
    }
    Ok(disk)
}

fn read_batch_file(path: &Path) -> io::Result<ReadOutcome> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len > MAX_FILE_BYTES {
        return Ok(ReadOutcome::Damaged(format!(
            "{len} bytes, over the batch limit"
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.read_to_end(&mut bytes)?;
    if bytes.len() < HEADER_BYTES || bytes[..4] != MAGIC {
        return Ok(ReadOutcome::Damaged("no batch header".into()));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut covers = [0u8; 8];
    covers.copy_from_slice(&bytes[4..12]);
    let covers_to = u64::from_le_bytes(covers);
    let payload_len = word(12) as usize;
    let crc = word(16);
    let payload = bytes.split_off(HEADER_BYTES);
    if payload.len() != payload_len {
        return Ok(ReadOutcome::Damaged(format!(
            "length {} where the header says {payload_len}",
            payload.len()
        )));
    }
    if checksum(covers_to, &payload) != crc {
        return Ok(ReadOutcome::Damaged("checksum mismatch".into()));
    }
    Ok(ReadOutcome::Ok { covers_to, payload })
}

impl Spool {
    /// Opens (or creates) the spool under `dir`: takes its lock, converts a 0.2 sled spool,
    /// removes unfinished writes and sets damaged batches aside (counted, logged at error).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("opening", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("locking", &lock_path)(e)),
        }
        let mut damaged = 0u64;
        if legacy::present(dir) {
            damaged += legacy::migrate(dir)?;
        }
        let mut found = Vec::new();
        let mut max_seen = 0u64;
        for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let entry = entry.map_err(io_err("listing", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((stem, ext)) = name.split_once('.') else {
                continue;
            };
            let Ok(seq) = stem.parse::<u64>() else {
                continue;
            };
            // Never reuse a number a file carried: a coarsened batch may cover it.
            max_seen = max_seen.max(seq);
            match ext {
                "tmp" => {
                    // A write a crash interrupted: never acknowledged to the recorder.
                    let _gone = fs::remove_file(entry.path());
                }
                "batch" => found.push(seq),
                _ => {}
            }
        }
        found.sort_unstable();
        let mut entries = BTreeMap::new();
        let mut disk_bytes = 0u64;
        let mut covered = 0u64;
        for seq in found {
            let path = batch_path(dir, seq, "batch");
            if seq <= covered {
                // Absorbed by a coarsened batch before a crash interrupted its cleanup.
                let _gone = fs::remove_file(&path);
                continue;
            }
            match read_batch_file(&path).map_err(io_err("reading", &path))? {
                ReadOutcome::Ok { covers_to, payload } => {
                    covered = covered.max(covers_to);
                    max_seen = max_seen.max(covers_to);
                    let disk = fs::metadata(&path).map(|m| m.blocks() * 512).unwrap_or(0);
                    disk_bytes += disk;
                    entries.insert(
                        seq,
                        Entry {
                            disk_bytes: disk,
                            covers_to,
                            header: decode_batch_header(&payload).ok(),
                            acked: false,
                        },
                    );
                }
                ReadOutcome::Damaged(why) => {
                    damaged += 1;
                    set_aside(dir, seq, &why);
                }
            }
        }
        let last = entries.keys().next_back().copied().unwrap_or(0);
        Ok(Spool {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                _lock: lock,
                epoch: rand::random::<u64>().max(1),
                max_bytes,
                state: Mutex::new(State {
                    entries,
                    next_seq: max_seen + 1,
                    disk_bytes,
                    // A previous run may have sent any batch it left behind (its acks are not
                    // synced): none of them may be coarsened, or an already merged batch would
                    // carry new data under a sequence number the aggregator calls a duplicate.
                    handed_out: last,
                }),
                coarsened: AtomicU64::new(0),
                append_failures: AtomicU64::new(0),
                failures_reported: AtomicU64::new(0),
                damaged: AtomicU64::new(damaged),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This run's epoch (random per open).
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// Space the batch files take on disk, bytes.
    pub fn bytes(&self) -> u64 {
        self.state().disk_bytes
    }

    /// Batches held (not yet acknowledged).
    pub fn len(&self) -> usize {
        self.state().entries.values().filter(|e| !e.acked).count()
    }

    /// True when no batch is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batches merged into others to respect the bound, since start.
    pub fn coarsened(&self) -> u64 {
        self.inner.coarsened.load(Ordering::Relaxed)
    }

    /// Batches that could not be stored (a full or failing disk), since start: lost.
    pub fn append_failures(&self) -> u64 {
        self.inner.append_failures.load(Ordering::Relaxed)
    }

    /// Failed appends not yet carried in a written batch; [`Spool::append`] marks the figure
    /// it was given as carried once its batch is written.
    pub fn unreported_append_failures(&self) -> u64 {
        self.append_failures()
            .saturating_sub(self.inner.failures_reported.load(Ordering::Relaxed))
    }

    /// Batches found damaged (checksum, framing) and set aside since start: lost.
    pub fn damaged(&self) -> u64 {
        self.inner.damaged.load(Ordering::Relaxed)
    }

    /// Assigns the next sequence number to `batch`, stores it durably, and returns its id. A
    /// failure is counted ([`Spool::append_failures`]). `reports_failures` is the figure of
    /// [`Spool::unreported_append_failures`] the batch carries, marked carried on success.
    pub fn append(&self, mut batch: Batch, reports_failures: u64) -> Result<SpoolId, SpoolError> {
        let inner = &*self.inner;
        let mut st = self.state();
        self.retry_unlinks(&mut st);
        let seq = st.next_seq;
        batch.seq = seq;
        batch.epoch = inner.epoch;
        batch.spool_bytes = st.disk_bytes;
        let encoded = encode_batch(&batch);
        let header = BatchHeader {
            agent_id: batch.agent_id,
            epoch: batch.epoch,
            seq,
            interval_start_ms: batch.interval_start_ms,
            interval_ms: batch.interval_ms,
        };
        let disk = match write_batch_file(&inner.dir, seq, seq, &encoded) {
            Ok(disk) => disk,
            Err(e) => {
                inner.append_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        inner
            .failures_reported
            .fetch_add(reports_failures, Ordering::Relaxed);
        st.next_seq = seq + 1;
        st.disk_bytes += disk;
        st.entries.insert(
            seq,
            Entry {
                disk_bytes: disk,
                covers_to: seq,
                header: Some(header),
                acked: false,
            },
        );
        if st.disk_bytes > inner.max_bytes {
            self.coarsen(&mut st);
        }
        Ok(SpoolId(seq))
    }

    /// Up to `limit` batches after `after` (all from the oldest when `None`), marking them as
    /// handed out. A batch that fails its checksum is set aside, counted and skipped.
    pub fn peek_after(
        &self,
        after: Option<SpoolId>,
        limit: usize,
    ) -> Result<Vec<Spooled>, SpoolError> {
        let mut st = self.state();
        let start = after.map_or(0, |id| id.0.saturating_add(1));
        let ids: Vec<u64> = st
            .entries
            .range(start..)
            .filter(|(_, e)| !e.acked)
            .map(|(k, _)| *k)
            .take(limit)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for seq in ids {
            let path = batch_path(&self.inner.dir, seq, "batch");
            match read_batch_file(&path).map_err(io_err("reading", &path))? {
                ReadOutcome::Ok { payload, .. } => {
                    st.handed_out = st.handed_out.max(seq);
                    out.push(Spooled {
                        id: SpoolId(seq),
                        payload: Arc::from(payload),
                    });
                }
                ReadOutcome::Damaged(why) => {
                    self.inner.damaged.fetch_add(1, Ordering::Relaxed);
                    set_aside(&self.inner.dir, seq, &why);
                    if let Some(e) = st.entries.remove(&seq) {
                        st.disk_bytes = st.disk_bytes.saturating_sub(e.disk_bytes);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The header of the oldest batch still held (not yet acknowledged), without handing it out.
    pub fn oldest_header(&self) -> Option<BatchHeader> {
        self.state()
            .entries
            .values()
            .find(|e| !e.acked)
            .and_then(|e| e.header.clone())
    }

    /// Removes an acknowledged (or rejected) batch, returning its header when it was held. An
    /// unlink that fails is retried at the next append; the batch is not handed out again.
    pub fn ack(&self, id: SpoolId) -> Result<Option<BatchHeader>, SpoolError> {
        let mut st = self.state();
        let Some(entry) = st.entries.get_mut(&id.0) else {
            return Ok(None);
        };
        if entry.acked {
            return Ok(None);
        }
        entry.acked = true;
        let header = entry.header.clone();
        let path = batch_path(&self.inner.dir, id.0, "batch");
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &path)(e)),
            _ => {
                if let Some(e) = st.entries.remove(&id.0) {
                    st.disk_bytes = st.disk_bytes.saturating_sub(e.disk_bytes);
                }
                Ok(header)
            }
        }
    }

    fn retry_unlinks(&self, st: &mut State) {
        let pending: Vec<u64> = st
            .entries
            .iter()
            .filter(|(_, e)| e.acked)
            .map(|(k, _)| *k)
            .collect();
        for seq in pending {
            let gone = match fs::remove_file(batch_path(&self.inner.dir, seq, "batch")) {
                Ok(()) => true,
                Err(e) => e.kind() == io::ErrorKind::NotFound,
            };
            if gone && let Some(e) = st.entries.remove(&seq) {
                st.disk_bytes = st.disk_bytes.saturating_sub(e.disk_bytes);
            }
        }
    }

    /// Merges pairs of never-handed-out batches until the spool fits its bound.
    fn coarsen(&self, st: &mut State) {
        let inner = &*self.inner;
        while st.disk_bytes > inner.max_bytes {
            let floor = st.handed_out.saturating_add(1);
            let mut candidates = st.entries.range(floor..).filter(|(_, e)| !e.acked);
            let (Some((&k1, e1)), Some((&k2, e2))) = (candidates.next(), candidates.next()) else {
                warn!(
                    spool_bytes = st.disk_bytes,
                    max_bytes = inner.max_bytes,
                    "Spool over its bound and nothing left to coarsen."
                );
                return;
            };
            let covers_to = e1.covers_to.max(e2.covers_to);
            let (p1, p2) = (
                batch_path(&inner.dir, k1, "batch"),
                batch_path(&inner.dir, k2, "batch"),
            );
            let read = |p: &Path| match read_batch_file(p) {
                Ok(ReadOutcome::Ok { payload, .. }) => decode_batch(&payload).ok(),
                _ => None,
            };
            let (Some(mut a), Some(b)) = (read(&p1), read(&p2)) else {
                warn!("Spool holds an unreadable batch; not coarsening past it.");
                return;
            };
            a.absorb(b);
            let merged = encode_batch(&a);
            let disk = match write_batch_file(&inner.dir, k1, covers_to, &merged) {
                Ok(disk) => disk,
                Err(error) => {
                    warn!(%error, "Could not coarsen the spool.");
                    return;
                }
            };
            // The merged file covers k2 from here on: open removes k2 if this unlink is lost.
            let _gone = fs::remove_file(&p2);
            let old = st.entries.remove(&k2).map_or(0, |e| e.disk_bytes)
                + st.entries.get(&k1).map_or(0, |e| e.disk_bytes);
            st.entries.insert(
                k1,
                Entry {
                    disk_bytes: disk,
                    covers_to,
                    header: decode_batch_header(&merged).ok(),
                    acked: false,
                },
            );
            st.disk_bytes = st.disk_bytes.saturating_sub(old) + disk;
            inner.coarsened.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Renames a damaged batch file out of the queue (kept for inspection) and logs the loss.
fn set_aside(dir: &Path, seq: u64, why: &str) {
    let from = batch_path(dir, seq, "batch");
    let to = batch_path(dir, seq, "damaged");
    error!(
        seq,
        file = %from.display(),
        reason = why,
        "Spooled batch is damaged; its data is lost (kept as {}).",
        to.display()
    );
    if fs::rename(&from, &to).is_err() {
        let _gone = fs::remove_file(&from);
    }
}

#[cfg(test)]
mod tests;
