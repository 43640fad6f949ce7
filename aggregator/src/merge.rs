//! The merge actor: the only writer of the store. It owns the unique [`SledStore`] writer (the
//! HTTP side has readers, which cannot write), so "one writer" is enforced by the compiler.
//! Connections send it decoded batches over a bounded channel; it merges them one by one, each
//! with what it adds to the SLO counters ([`slo::batch_deltas`]), then flushes once for
//! everything it merged in that round (group commit) and only then answers, so an
//! acknowledgement always means the merge is on disk. Between rounds it rolls finer buckets up
//! into coarser ones and prunes what is past retention, when a timer asks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pitot_shared::protocol::VerifiedBatch;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::glue::now_ms;
use crate::slo::{self, InstalledSlo};
use crate::store::{MergeOutcome, SledStore, StoreError};
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

/// Starts the actor on its own thread (sled calls block), owning the store's writer and the
/// installed SLOs.
pub fn spawn(mut store: SledStore, slos: Vec<InstalledSlo>, stats: Arc<Stats>) -> Actor {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    let slo_history = slo::longest_window(&slos);
    let spawned = std::thread::Builder::new()
        .name("pitot-merge".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut round = Vec::new();
                let (mut rollup, mut prune) = (false, false);
                let mut next = Some(first);
                while let Some(job) = next.take() {
                    match job {
                        Job::Merge(r) => round.push(r),
                        Job::Rollup => rollup = true,
                        Job::Prune => prune = true,
                    }
                    if round.len() < GROUP {
                        next = rx.try_recv().ok();
                    }
                }
                if rollup {
                    match store.rollup(now_ms()) {
                        Ok(n) => {
                            stats.buckets_rolled_up.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(error) => {
                            error!(%error, "Rollup failed; it is retried at the next tick.")
                        }
                    }
                }
                if prune {
                    match store.prune(now_ms(), slo_history) {
                        Ok(n) => {
                            stats.buckets_pruned.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(error) => warn!(%error, "Retention pass failed."),
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
                    .map(|r| {
                        let batch = r.batch.batch();
                        let deltas = slo::batch_deltas(&slos, batch);
                        let seen = timeline::sightings(batch);
                        store.merge_batch(batch, r.received_ms, &deltas, &seen)
                    })
                    .collect();
                let flushed = store.flush().map_err(Arc::new);
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
