//! The recorder: closes intervals on wall-clock boundaries, turns the shards' accumulators
//! into batches, and appends them to the spool.
//!
//! It owns no histograms itself (the shards do, see `ingest`); at each boundary it drains
//! every shard, merges the same series across shards, adds the `pitot.agent.*` self-metrics,
//! and writes one batch per interval start (the open interval, plus any late intervals that
//! `|T` timestamps reached). At shutdown it closes the open interval early, so no recorded
//! value is left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::loggate::LogGate;
use pitot_shared::series::{AgentId, SeriesKey};
use pitot_shared::window::next_boundary;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::ingest::{Drained, IngestShared, Shard};
use crate::samples::Samples;
use crate::spool::Spool;
use crate::telemetry::{SelfMetrics, UplinkStats, client_losses};

pub use crate::glue::now_ms;

/// Everything the recorder works with.
#[derive(Debug)]
pub struct Recorder {
    /// Agent id.
    pub agent_id: String,
    /// Interval length, ms.
    pub interval_ms: u64,
    /// The shards to drain.
    pub shards: Vec<Arc<Shard>>,
    /// Collector series (scrapes, sampling) to drain.
    pub samples: Arc<Samples>,
    /// Shared ingest state (limits, counters).
    pub ingest: Arc<IngestShared>,
    /// Where batches go.
    pub spool: Spool,
    /// Uplink counters for self-metrics.
    pub uplink: Arc<UplinkStats>,
    /// Wakes the uplink when a batch was spooled.
    pub spooled: Arc<Notify>,
}

impl Recorder {
    /// Closes intervals until `ingest_stopped` fires, then closes the open one and returns.
    pub async fn run(self, ingest_stopped: CancellationToken) {
        let mut metrics = SelfMetrics::default();
        // A full disk fails every interval: one line a minute, with the count held back.
        let mut gate = LogGate::new(Duration::from_secs(60));
        loop {
            let now = now_ms();
            let boundary = next_boundary(now, self.interval_ms);
            let wait = Duration::from_millis((boundary - now).max(0) as u64);
            tokio::select! {
                () = tokio::time::sleep(wait) => self.close(boundary, &mut metrics, &mut gate),
                () = ingest_stopped.cancelled() => {
                    self.close(next_boundary(now_ms(), self.interval_ms), &mut metrics, &mut gate);
                    info!("Recorder flushed the open interval.");
                    return;
                }
            }
        }
    }

    fn close(&self, next_start_ms: i64, metrics: &mut SelfMetrics, gate: &mut LogGate) {
        let mut drained = Drained::new();
        for shard in &self.shards {
            shard.drain(next_start_ms, &mut drained);
        }
        let closed_start = next_start_ms - self.interval_ms as i64;
        self.samples.drain(closed_start, &mut drained);
        let own = metrics.collect(
            &self.agent_id,
            &self.ingest,
            &self.spool,
            &self.uplink,
            now_ms(),
        );
        let own_entry = drained.entry(closed_start).or_default();
        for s in own {
            own_entry.insert(s.key, s.data);
        }
        // Batches lost to a failing disk are reported by the first batch that is written, so
        // the aggregator sees the loss.
        let unreported = self.spool.unreported_append_failures();
        if unreported > 0
            && let Ok(key) = SeriesKey::new(
                "pitot.agent.spool.append_failures",
                vec![("host".to_owned(), self.agent_id.clone())],
            )
        {
            own_entry.insert(key, SeriesData::Counter(unreported as f64));
        }
        for series in drained.values_mut() {
            let (losses, packets) = client_losses(&self.agent_id, series);
            if packets > 0 {
                warn!(
                    packets,
                    "DogStatsD clients report dropped packets (pitot.agent.client.packets_dropped)."
                );
            }
            for s in losses {
                series.insert(s.key, s.data);
            }
        }
        for (start, series) in drained {
            if series.is_empty() {
                continue;
            }
            let batch = Batch {
                agent_id: AgentId(self.agent_id.clone()),
                epoch: 0,
                seq: 0,
                interval_start_ms: start,
                interval_ms: self.interval_ms,
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                spool_bytes: 0,
                series: series
                    .into_iter()
                    .map(|(key, data)| SeriesSnapshot { key, data })
                    .collect(),
            };
            let series = batch.series.len();
            let carries = if start == closed_start { unreported } else { 0 };
            match self.spool.append(batch, carries) {
                Ok(id) => {
                    debug!(seq = id.0, start, series, "Batch spooled.");
                    if gate.is_holding() {
                        info!(
                            lost_batches = self.spool.append_failures(),
                            "The spool is writable again; batches are spooled."
                        );
                    }
                    gate.reset();
                }
                Err(error) => {
                    if let Some(held) = gate.admit(Instant::now(), "append") {
                        error!(
                            %error,
                            series,
                            lost_batches = self.spool.append_failures(),
                            failures_not_logged = held,
                            "Could not spool a batch; its interval is lost. Retrying at every \
                             interval."
                        );
                    }
                }
            }
        }
        self.spooled.notify_one();
    }
}
