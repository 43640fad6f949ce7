//! The merge actor: the only writer of the store. Connections send it decoded batches over a
//! bounded channel; it merges them one by one, then flushes once for everything it merged in
//! that round (group commit) and only then answers, so an acknowledgement always means the
//! merge is on disk. Between rounds it rolls finer buckets up into coarser ones
//! ([`Store::rollup`]) when a tick asks, so the store keeps a single writer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pitot_shared::batch::Batch;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use crate::store::{MergeOutcome, Store, StoreError};
use crate::telemetry::Stats;

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
}

/// One batch to merge and where to send the outcome.
#[derive(Debug)]
pub struct MergeRequest {
    /// The decoded batch.
    pub batch: Batch,
    /// Receive time, Unix ms.
    pub received_ms: i64,
    /// The outcome, sent after the flush.
    pub reply: oneshot::Sender<Result<MergeOutcome, String>>,
}

/// Starts the actor on its own thread (sled calls block); it ends when every sender is gone.
pub fn spawn(store: Arc<dyn Store>, stats: Arc<Stats>) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("pitot-merge".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut round = Vec::new();
                let mut rollup = false;
                let mut next = Some(first);
                while let Some(job) = next.take() {
                    match job {
                        Job::Merge(r) => round.push(r),
                        Job::Rollup => rollup = true,
                    }
                    if round.len() < GROUP {
                        next = rx.try_recv().ok();
                    }
                }
                if rollup {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    match store.rollup(now) {
                        Ok(n) => {
                            stats.buckets_rolled_up.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(error) => {
                            error!(%error, "Rollup failed; it is retried at the next tick.")
                        }
                    }
                }
                if round.is_empty() {
                    continue;
                }
                stats
                    .merge_queue_popped
                    .fetch_add(round.len() as u64, Ordering::Relaxed);
                let outcomes: Vec<Result<MergeOutcome, StoreError>> = round
                    .iter()
                    .map(|r| store.merge_batch(&r.batch, r.received_ms))
                    .collect();
                let flushed = store.flush();
                for (request, outcome) in round.into_iter().zip(outcomes) {
                    let answer = match (&flushed, outcome) {
                        (Ok(()), Ok(o)) => Ok(o),
                        (Err(e), _) => Err(format!("store flush failed: {e}")),
                        (_, Err(e)) => Err(e.to_string()),
                    };
                    let _receiver_gone = request.reply.send(answer);
                }
            }
        });
    if let Err(error) = spawned {
        error!(%error, "Cannot start the merge thread; no batch will be merged.");
    }
    tx
}
