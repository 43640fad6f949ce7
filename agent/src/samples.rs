//! Series data from the agent's own collectors (Prometheus scrapes, host, process and GPU
//! sampling), held for the open interval until the recorder closes it.
//!
//! DogStatsD goes through the per-socket shards (`ingest`), tuned for millions of lines a
//! second; collectors produce a few hundred values a second, so one map behind a mutex is
//! enough. The series limit is shared with DogStatsD: past `limits.max_series` held series a
//! new collector series is dropped and counted like a DogStatsD one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pitot_shared::batch::SeriesData;
use pitot_shared::series::SeriesKey;

use crate::ingest::{Drained, Dropped, IngestShared};

/// The open interval's collector series.
#[derive(Debug)]
pub struct Samples {
    shared: Arc<IngestShared>,
    open: Mutex<BTreeMap<SeriesKey, SeriesData>>,
}

impl Samples {
    /// An empty set, counting against `shared`'s limits.
    pub fn new(shared: Arc<IngestShared>) -> Arc<Self> {
        Arc::new(Samples {
            shared,
            open: Mutex::new(BTreeMap::new()),
        })
    }

    /// Adds `data` to the open interval's `key` (histograms add, counters add).
    pub fn record(&self, key: SeriesKey, data: SeriesData) {
        // Like DogStatsD series, every collector series carries the certified host.
        let key = key.with_tag("host", &self.shared.limits.host);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = open.get_mut(&key) {
            // A kind conflict (a server changed a metric's type) keeps the first kind.
            let _conflict = existing.merge(&data);
            return;
        }
        if self.shared.series() + open.len() >= self.shared.limits.max_series {
            self.shared.stats.dropped(Dropped::SeriesLimit);
            return;
        }
        open.insert(key, data);
    }

    /// Moves everything recorded into `out` under the closed interval's start.
    pub fn drain(&self, closed_start_ms: i64, out: &mut Drained) {
        let taken = std::mem::take(&mut *self.open.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return;
        }
        let entry = out.entry(closed_start_ms).or_default();
        for (key, data) in taken {
            match entry.get_mut(&key) {
                Some(existing) => {
                    let _conflict = existing.merge(&data);
                }
                None => {
                    entry.insert(key, data);
                }
            }
        }
    }
}
