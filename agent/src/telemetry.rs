//! The agent's own observability in one place: the catalogue of
//! `pitot.agent.*` self-metric series it ships in every batch.
//!
//! | series | kind | meaning |
//! |---|---|---|
//! | `pitot.agent.dogstatsd.datagrams` | counter | datagrams read |
//! | `pitot.agent.dogstatsd.lines` | counter | metric lines seen |
//! | `pitot.agent.dogstatsd.recorded` | counter | values recorded |
//! | `pitot.agent.dogstatsd.malformed` (`reason`) | counter | lines refused, per reason |
//! | `pitot.agent.dogstatsd.dropped` (`reason`) | counter | lines dropped by a limit, per reason |
//! | `pitot.agent.dogstatsd.kernel_drops` | counter | datagrams the kernel dropped (UDP, `SO_RXQ_OVFL`) |
//! | `pitot.agent.dogstatsd.events`, `…service_checks` | counter | skipped events and checks |
//! | `pitot.agent.series` | histogram | series held (sampled once per interval) |
//! | `pitot.agent.spool.bytes` | histogram | spool size (sampled once per interval) |
//! | `pitot.agent.spool.coarsened` | counter | batches merged to respect the spool bound |
//! | `pitot.agent.spool.append_failures` | counter | batches that could not be spooled (disk full or failing): lost; carried by the recorder in the next batch that is written |
//! | `pitot.agent.spool.damaged` | counter | spooled batches that failed their checksum (or a 0.2 spool that could not be read): lost |
//! | `pitot.agent.uplink.acked`, `…rejected`, `…reconnects` | counter | uplink outcomes |
//! | `pitot.agent.uplink.lag_seconds` | histogram | delivery lag: interval end to acknowledgement (see below) |
//! | `pitot.agent.client.packets_dropped` (`reason`, `client`, `transport`) | counter | packets the DogStatsD clients say they dropped (`queue`: their sender queue was full; `writer`: the socket refused them) |
//! | `pitot.agent.client.bytes_dropped` (`reason`, `client`, `transport`) | counter | the bytes of those packets |
//!
//! The official clients report their own losses as telemetry series
//! (`datadog.dogstatsd.client.packets_dropped_queue`, `…_writer`, `bytes_dropped_…`); they
//! are kept as sent, and [`client_losses`] also folds them into the `pitot.agent.client.*`
//! series above, so one family answers "did anything get lost?" on both sides of the socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use pitot_shared::batch::{SeriesData, SeriesSnapshot};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::SeriesKey;

use crate::ingest::IngestShared;
use crate::spool::Spool;

/// Uplink outcome counters, written by the uplink task.
#[derive(Debug)]
pub struct UplinkStats {
    /// Batches acknowledged.
    pub acked: AtomicU64,
    /// Batches rejected by the aggregator (lost).
    pub rejected: AtomicU64,
    /// Connections established.
    pub reconnects: AtomicU64,
    /// The longest delivery lag (interval end to acknowledgement, ms) of a batch acknowledged
    /// since telemetry last read it; -1 when none was.
    pub max_delivery_lag_ms: AtomicI64,
}

impl Default for UplinkStats {
    fn default() -> Self {
        UplinkStats {
            acked: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            max_delivery_lag_ms: AtomicI64::new(-1),
        }
    }
}

impl UplinkStats {
    /// Notes that a batch whose interval ended at `end_ms` was acknowledged at `now_ms`.
    pub fn delivered(&self, end_ms: i64, now_ms: i64) {
        self.max_delivery_lag_ms
            .fetch_max((now_ms - end_ms).max(0), Ordering::Relaxed);
    }
}

/// The delivery lag for one telemetry interval, seconds: the longest interval-end-to-
/// acknowledgement time of the batches acknowledged in it, or, when an older batch is still
/// unsent, how long that one has waited so far (so a dead link shows a growing lag). `None`
/// before anything was ever spooled and acknowledged.
pub fn delivery_lag(
    acked_max_ms: i64,
    oldest_unsent_end_ms: Option<i64>,
    now_ms: i64,
) -> Option<f64> {
    let waiting = oldest_unsent_end_ms.map(|end| (now_ms - end).max(0));
    let ms = match (acked_max_ms >= 0, waiting) {
        (true, Some(w)) => acked_max_ms.max(w),
        (true, None) => acked_max_ms,
        (false, Some(w)) => w,
        (false, None) => return None,
    };
    Some(ms as f64 / 1000.0)
}

/// The `pitot.agent.client.*` series for one interval's series: the DogStatsD clients' own
/// drop telemetry, summed per reason, client and transport. Also returns the packets dropped.
pub fn client_losses(
    host: &str,
    series: &std::collections::BTreeMap<SeriesKey, SeriesData>,
) -> (Vec<SeriesSnapshot>, u64) {
    const PREFIX: &str = "datadog.dogstatsd.client.";
    let mut sums: std::collections::BTreeMap<(&'static str, &'static str, String, String), f64> =
        std::collections::BTreeMap::new();
    let mut packets = 0.0;
    for (key, data) in series {
        let Some(what) = key.name().strip_prefix(PREFIX) else {
            continue;
        };
        let (name, reason) = match what {
            "packets_dropped_queue" => ("pitot.agent.client.packets_dropped", "queue"),
            "packets_dropped_writer" => ("pitot.agent.client.packets_dropped", "writer"),
            "bytes_dropped_queue" => ("pitot.agent.client.bytes_dropped", "queue"),
            "bytes_dropped_writer" => ("pitot.agent.client.bytes_dropped", "writer"),
            _ => continue,
        };
        let SeriesData::Counter(n) = data else {
            continue;
        };
        if *n <= 0.0 {
            continue;
        }
        if name.ends_with("packets_dropped") {
            packets += n;
        }
        let tag = |k: &str| key.tag(k).unwrap_or("unknown").to_owned();
        *sums
            .entry((name, reason, tag("client"), tag("client_transport")))
            .or_default() += n;
    }
    let out = sums
        .into_iter()
        .filter_map(|((name, reason, client, transport), n)| {
            let tags = vec![
                ("client".to_owned(), client),
                ("host".to_owned(), host.to_owned()),
                ("reason".to_owned(), reason.to_owned()),
                ("transport".to_owned(), transport),
            ];
            SeriesKey::new(name, tags).ok().map(|key| SeriesSnapshot {
                key,
                data: SeriesData::Counter(n),
            })
        })
        .collect();
    (out, packets as u64)
}

/// Turns monotonic counters into per-interval deltas for the self-metric series.
#[derive(Debug, Default)]
pub struct SelfMetrics {
    last: HashMap<(&'static str, &'static str), u64>,
}

impl SelfMetrics {
    fn delta(&mut self, name: &'static str, reason: &'static str, now: u64) -> u64 {
        let last = self.last.insert((name, reason), now).unwrap_or(0);
        now.saturating_sub(last)
    }

    /// The self-metric series for the interval that just closed.
    pub fn collect(
        &mut self,
        host: &str,
        ingest: &IngestShared,
        spool: &Spool,
        uplink: &UplinkStats,
        now_ms: i64,
    ) -> Vec<SeriesSnapshot> {
        let stats = &ingest.stats;
        let mut counters: Vec<(&'static str, &'static str, u64)> = vec![
            (
                "pitot.agent.dogstatsd.datagrams",
                "",
                stats.datagrams.load(Ordering::Relaxed),
            ),
            (
                "pitot.agent.dogstatsd.lines",
                "",
                stats.lines.load(Ordering::Relaxed),
            ),
            (
                "pitot.agent.dogstatsd.recorded",
                "",
                stats.recorded.load(Ordering::Relaxed),
            ),
            (
                "pitot.agent.dogstatsd.kernel_drops",
                "",
                stats.kernel_drops.load(Ordering::Relaxed),
            ),
            (
                "pitot.agent.dogstatsd.events",
                "",
                stats.events.load(Ordering::Relaxed),
            ),
            (
                "pitot.agent.dogstatsd.service_checks",
                "",
                stats.service_checks.load(Ordering::Relaxed),
            ),
            ("pitot.agent.spool.coarsened", "", spool.coarsened()),
            ("pitot.agent.spool.damaged", "", spool.damaged()),
            (
                "pitot.agent.uplink.acked",
                "",
                uplink.acked.load(Ordering::Relaxed),
            ),
            (
                "pitot.agent.uplink.rejected",
                "",
                uplink.rejected.load(Ordering::Relaxed),
            ),
            (
                "pitot.agent.uplink.reconnects",
                "",
                uplink.reconnects.load(Ordering::Relaxed),
            ),
        ];
        for (why, n) in stats.malformed_counts() {
            counters.push(("pitot.agent.dogstatsd.malformed", why.as_str(), n));
        }
        for (why, n) in stats.dropped_counts() {
            counters.push(("pitot.agent.dogstatsd.dropped", why.as_str(), n));
        }
        let mut out = Vec::new();
        for (name, reason, total) in counters {
            let delta = self.delta(name, reason, total);
            if delta == 0 {
                continue;
            }
            let mut tags = vec![("host".to_owned(), host.to_owned())];
            if !reason.is_empty() {
                tags.push(("reason".to_owned(), reason.to_owned()));
            }
            if let Ok(key) = SeriesKey::new(name, tags) {
                out.push(SeriesSnapshot {
                    key,
                    data: SeriesData::Counter(delta as f64),
                });
            }
        }
        let acked_max = uplink.max_delivery_lag_ms.swap(-1, Ordering::Relaxed);
        let oldest_unsent = spool
            .oldest_header()
            .map(|h| h.interval_start_ms + h.interval_ms as i64);
        let mut gauges = vec![
            ("pitot.agent.series", ingest.series() as f64),
            ("pitot.agent.spool.bytes", spool.bytes() as f64),
        ];
        if let Some(lag) = delivery_lag(acked_max, oldest_unsent, now_ms) {
            gauges.push(("pitot.agent.uplink.lag_seconds", lag));
        }
        for (name, value) in gauges {
            let mut h = ValueHistogram::new();
            if h.record(value).is_err() {
                continue;
            }
            if let Ok(key) = SeriesKey::new(name, vec![("host".to_owned(), host.to_owned())]) {
                out.push(SeriesSnapshot {
                    key,
                    data: SeriesData::Histogram(h),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_lag_is_interval_end_to_ack_and_grows_while_unsent() {
        let stats = UplinkStats::default();
        // Nothing acknowledged, nothing waiting: no sample.
        assert_eq!(
            delivery_lag(stats.max_delivery_lag_ms.load(Ordering::Relaxed), None, 0),
            None
        );
        // Two acks, 12 ms and 40 ms after their intervals ended: the longer one counts.
        stats.delivered(10_000, 10_012);
        stats.delivered(20_000, 20_040);
        let acked = stats.max_delivery_lag_ms.swap(-1, Ordering::Relaxed);
        assert_eq!(delivery_lag(acked, None, 20_050), Some(0.040));
        // Link down: the oldest unsent batch ended 35 s ago.
        assert_eq!(delivery_lag(-1, Some(30_000), 65_000), Some(35.0));
        // Both: the larger.
        assert_eq!(delivery_lag(40, Some(64_000), 65_000), Some(1.0));
        // A clock step backwards is not a negative lag.
        stats.delivered(70_000, 69_000);
        assert_eq!(stats.max_delivery_lag_ms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn client_drop_telemetry_becomes_agent_series() {
        let key = |name: &str, transport: &str| {
            SeriesKey::new(
                name,
                vec![
                    ("client".to_owned(), "py".to_owned()),
                    ("client_transport".to_owned(), transport.to_owned()),
                    ("host".to_owned(), "h".to_owned()),
                ],
            )
            .expect("key")
        };
        let mut series = std::collections::BTreeMap::new();
        let c = SeriesData::Counter;
        series.insert(
            key("datadog.dogstatsd.client.packets_dropped_writer", "uds"),
            c(3.0),
        );
        series.insert(
            key("datadog.dogstatsd.client.packets_dropped_queue", "uds"),
            c(0.0),
        );
        series.insert(
            key("datadog.dogstatsd.client.packets_dropped_writer", "udp"),
            c(2.0),
        );
        series.insert(
            key("datadog.dogstatsd.client.bytes_dropped_writer", "uds"),
            c(900.0),
        );
        series.insert(key("datadog.dogstatsd.client.packets_sent", "uds"), c(50.0));
        let (out, packets) = client_losses("h", &series);
        assert_eq!(packets, 5);
        let got: Vec<(String, Option<&str>, Option<&str>, f64)> = out
            .iter()
            .map(|s| {
                let SeriesData::Counter(n) = s.data else {
                    panic!("counter expected")
                };
                (
                    s.key.name().to_owned(),
                    s.key.tag("reason"),
                    s.key.tag("transport"),
                    n,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "pitot.agent.client.bytes_dropped".into(),
                    Some("writer"),
                    Some("uds"),
                    900.0
                ),
                (
                    "pitot.agent.client.packets_dropped".into(),
                    Some("writer"),
                    Some("udp"),
                    2.0
                ),
                (
                    "pitot.agent.client.packets_dropped".into(),
                    Some("writer"),
                    Some("uds"),
                    3.0
                ),
            ]
        );
    }
}
