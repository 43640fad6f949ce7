//! Measures the aggregator's disk use per host per day: merges one simulated host's day of
//! 10 s batches (`SERIES` latency histograms of ~`VALUES` requests each per interval, plus as
//! many counters) into a fresh store with the default resolutions, then reports the store's
//! size on disk and the bytes each resolution's buckets take (keys + values), from which
//! docs/OPERATIONS.md sizes an aggregator.
//!
//! `cargo run --release -p pitot-aggregator --example store_size -- [SERIES] [VALUES] [HOURS]`

use std::path::Path;
use std::time::Instant;

use pitot_aggregator::config;
use pitot_aggregator::store::{SledStore, Store};
use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::{AgentId, SeriesKey};

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            // Blocks really allocated (sled punches holes in freed segments), like `du`.
            total += if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                std::os::unix::fs::MetadataExt::blocks(&meta) * 512
            };
        }
    }
    total
}

fn main() {
    use std::io::Write as _;
    let mut out = std::io::stdout();
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let series = args.first().copied().unwrap_or(20);
    let values = args.get(1).copied().unwrap_or(100);
    let hours = args.get(2).copied().unwrap_or(24);
    let dir = tempfile::tempdir().expect("tempdir");
    let defaults = config::parse("", Path::new("defaults")).expect("defaults");
    let mut resolutions = defaults.store.resolutions.clone();
    if let Some(n) = std::env::var("STORE_SIZE_RESOLUTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        resolutions.truncate(n);
    }
    let t0 = 1_790_812_800_000i64;
    // Marks at t0 (as for a store created just before the simulated day), rollups every 10
    // simulated seconds as the aggregator's timer asks for them.
    let mut store = SledStore::open_at(dir.path(), resolutions, t0 - 1).expect("store");
    let intervals = hours * 360;
    let started = Instant::now();
    let mut x = 12_345u64;
    for i in 0..intervals {
        let mut snapshot = Vec::new();
        for s in 0..series {
            let mut h = ValueHistogram::new();
            for _ in 0..values {
                // A cheap xorshift for a spread of latencies, 5 ms to ~2 s.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                h.record(5.0 + (x % 2_000_000) as f64 / 1000.0 * ((x >> 40) % 4) as f64 / 3.0)
                    .expect("finite");
            }
            let key = |name: &str| {
                SeriesKey::new(
                    &format!("{name}.{s}"),
                    vec![
                        ("host".into(), "gpu-host-17".into()),
                        ("model".into(), "llama3".into()),
                    ],
                )
                .expect("key")
            };
            snapshot.push(SeriesSnapshot {
                key: key("request.latency"),
                data: SeriesData::Histogram(h),
            });
            snapshot.push(SeriesSnapshot {
                key: key("request.count"),
                data: SeriesData::Counter(values as f64),
            });
        }
        let batch = Batch {
            agent_id: AgentId("gpu-host-17".into()),
            epoch: 1,
            seq: i + 1,
            interval_start_ms: t0 + i as i64 * 10_000,
            interval_ms: 10_000,
            agent_version: "size".into(),
            spool_bytes: 0,
            series: snapshot,
        };
        store.merge_batch(&batch, 0, &[], &[]).expect("merge");
        store.rollup(t0 + (i as i64 + 1) * 10_000).expect("rollup");
        if i % 360 == 359 {
            store.flush().expect("flush");
        }
    }
    for _ in 0..100 {
        store
            .rollup(t0 + intervals as i64 * 10_000 + 3_600_000)
            .expect("rollup");
    }
    store.flush().expect("flush");
    let merged = started.elapsed();
    writeln!(
        out,
        "{hours} h of one host: {} histogram + {} counter series, ~{values} values per histogram per 10 s",
        series, series
    )
    .expect("stdout");
    let end = t0 + intervals as i64 * 10_000;
    for res in store.resolutions() {
        let mut bytes = 0u64;
        let mut buckets = 0u64;
        for (key, _) in store.series(None, &[]).expect("series") {
            for (_, data) in store.read(&key, res, t0, end).expect("read") {
                bytes += 17 + pitot_shared::wire::encode_data(&data).len() as u64;
                buckets += 1;
            }
        }
        let per_day = bytes as f64 * 24.0 / hours as f64;
        writeln!(
        out,
            "  {:>3} buckets: {buckets:>8} ({:.1} per series per day), {:.2} MiB of keys+values per host per day",
            res.label(),
            buckets as f64 * 24.0 / hours as f64 / (2 * series) as f64,
            per_day / 1_048_576.0
        )
    .expect("stdout");
    }
    drop(store);
    let on_disk = dir_bytes(dir.path());
    writeln!(
        out,
        "  on disk (sled, all resolutions): {:.2} MiB for {hours} h = {:.2} MiB per host per day; merged in {:.1} s",
        on_disk as f64 / 1_048_576.0,
        on_disk as f64 * 24.0 / hours as f64 / 1_048_576.0,
        merged.as_secs_f64()
    )
    .expect("stdout");
}
