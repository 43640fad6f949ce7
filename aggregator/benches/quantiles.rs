//! Criterion bench for the fleet question of issue 16: latency quantiles of one metric over 30
//! days of 1 000 hosts, grouped by host (`/api/v1/quantiles?group_by=host`), from a store
//! holding what rollups leave for that range: one hourly histogram per host and hour (720 000
//! histograms of about 100 latencies each), written straight to the store. A second bench
//! asks the same without grouping (the fleet line only), which reads the same histograms.
//!
//! `PITOT_BENCH_HOSTS` changes the number of hosts (default 1 000).

use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use pitot_aggregator::config;
use pitot_aggregator::reports::{self, MetricQuery};
use pitot_aggregator::store::SledStore;
use pitot_shared::batch::SeriesData;
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::SeriesKey;

const HOUR: i64 = 3_600_000;
const DAYS: i64 = 30;
/// 2026-10-01T00:00:00Z: the history starts here.
const T0: i64 = 1_790_812_800_000;

/// About 100 latencies around 30 ms (a deterministic log-spread), different per seed.
fn latencies(seed: usize) -> ValueHistogram {
    let mut h = ValueHistogram::new();
    for i in 0..100 {
        let u = ((i * 7919 + seed * 104_729) % 1000) as f64 / 1000.0;
        h.record(30.0 * (2.0 * u - 1.0).exp()).expect("finite");
    }
    h
}

fn benches(c: &mut Criterion) {
    let hosts: usize = std::env::var("PITOT_BENCH_HOSTS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(1_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config::parse("", Path::new("defaults")).expect("default config");
    let mut store = SledStore::open(dir.path(), cfg.store.resolutions.clone()).expect("store");
    let hourly = cfg
        .store
        .resolutions
        .iter()
        .find(|r| r.bucket_ms() == HOUR as u64)
        .copied()
        .expect("a 1 h resolution");
    let setup = Instant::now();
    let now = T0 + DAYS * 24 * HOUR;
    for h in 0..hosts {
        let key = SeriesKey::new(
            "request.latency",
            vec![
                ("host".to_owned(), format!("gpu-{h:04}")),
                ("model".to_owned(), "llama3".to_owned()),
            ],
        )
        .expect("key");
        for k in 0..(DAYS * 24) {
            let data = SeriesData::Histogram(latencies(h * 1000 + k as usize));
            store
                .import_bucket(&key, &hourly, T0 + k * HOUR, &data)
                .expect("import");
        }
    }
    eprintln!(
        "setup: {hosts} hosts x {} hourly histograms in {:.1} s",
        DAYS * 24,
        setup.elapsed().as_secs_f64()
    );
    let by_host = MetricQuery {
        metric: "request.latency".into(),
        filters: vec![],
        from_ms: T0,
        to_ms: now,
        group_by: vec!["host".into()],
    };
    let qs = [("p50".to_owned(), 0.5), ("p99".to_owned(), 0.99)];
    let r = reports::quantiles(&store, &by_host, &qs).expect("quantiles");
    assert_eq!(r.groups.len(), hosts, "a row per host");
    assert_eq!(r.fleet.count, hosts as u64 * 100 * DAYS as u64 * 24);
    let fleet = MetricQuery {
        group_by: vec![],
        ..by_host.clone()
    };
    let mut g = c.benchmark_group("quantiles");
    g.sample_size(10);
    g.bench_function(format!("30d_{hosts}_hosts_group_by_host"), |b| {
        b.iter(|| reports::quantiles(&store, &by_host, &qs).expect("quantiles"))
    });
    g.bench_function(format!("30d_{hosts}_hosts_fleet_only"), |b| {
        b.iter(|| reports::quantiles(&store, &fleet, &qs).expect("quantiles"))
    });
    g.finish();
}

criterion_group!(quantiles_bench, benches);
criterion_main!(quantiles_bench);
