//! Criterion bench for SLO reports: 100 SLOs over 30 days of 1 000 hosts' data (synthetic,
//! written straight to the store), against a baseline measured in the same run that answers
//! ONE latency SLO the way a histogram store without SLO counters would: reading and decoding
//! every host's hourly histograms of the 30 days and counting under the threshold.
//!
//! `PITOT_BENCH_HOSTS` changes the number of hosts (default 1 000).

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use pitot_aggregator::config;
use pitot_aggregator::model::{Sli, SloDefinition, SloWindow};
use pitot_aggregator::slo::{self, report_all, series_counts};
use pitot_aggregator::store::{SledStore, Store};
use pitot_shared::batch::SeriesData;
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::SeriesKey;
use pitot_shared::slo::Counts;

const SLOS: usize = 100;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2026-10-01T00:00:00Z: the history starts here and lasts 30 days.
const T0: i64 = 1_790_812_800_000;

fn definitions() -> Vec<SloDefinition> {
    (0..SLOS)
        .map(|i| {
            let tags = vec![("model".to_owned(), format!("m{}", i % 10))];
            SloDefinition {
                name: format!("slo-{i}"),
                objective: 0.99,
                window: SloWindow::Rolling(Duration::from_secs(30 * 86_400)),
                service: "bench".into(),
                sli: if i % 2 == 0 {
                    Sli::Latency {
                        metric: "request.latency".into(),
                        threshold: 100.0 + i as f64,
                        tags,
                    }
                } else {
                    Sli::Ratio {
                        good: "request.ok".into(),
                        total: "request.count".into(),
                        tags,
                    }
                },
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let hosts: usize = std::env::var("PITOT_BENCH_HOSTS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(1_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let defaults = config::parse("", Path::new("defaults")).expect("default config");
    let mut store = SledStore::open(dir.path(), defaults.store.resolutions.clone()).expect("store");
    let installed = slo::install(&mut store, &definitions()).expect("install");
    let now = T0 + 30 * DAY;
    let setup = Instant::now();
    let (mut cells, mut host_entries) = (0usize, 0usize);
    for slo in &installed {
        for res in &defaults.store.resolutions {
            // Every bucket the resolution's retention keeps, up to 30 days.
            let span = res.retention.as_millis().min(30 * DAY as u128) as i64;
            let step = res.bucket_ms() as i64;
            let per_bucket = (hosts as u64 * step as u64 / 1_000).max(1);
            let list: Vec<(i64, Counts)> = (0..span / step)
                .map(|k| {
                    let start = now - span + k * step;
                    let bad = per_bucket / 100 + (k as u64 % 7);
                    (
                        start,
                        Counts {
                            good: per_bucket - bad.min(per_bucket),
                            total: per_bucket,
                            uncertain: 0,
                        },
                    )
                })
                .collect();
            cells += list.len();
            store
                .import_slo_cells(slo.id, res, &list)
                .expect("import cells");
        }
        // Every host spent some budget on every one of the 30 days.
        for h in 0..hosts {
            let days: Vec<(i64, u64)> = (0..30)
                .map(|d| {
                    (
                        T0 + d * DAY + (h as i64 % 24) * HOUR,
                        1 + (h as u64 * 7 + d as u64) % 50,
                    )
                })
                .collect();
            host_entries += days.len();
            store
                .import_slo_host(slo.id, &format!("gpu-host-{h:04}"), &days)
                .expect("import hosts");
        }
    }
    // The baseline's data: one latency histogram per host per hour for 30 days.
    let hourly = defaults
        .store
        .resolutions
        .last()
        .copied()
        .expect("coarsest");
    let mut h = ValueHistogram::new();
    for i in 0..200 {
        h.record(5.0 + (i * 37 % 400) as f64).expect("finite");
    }
    let data = SeriesData::Histogram(h);
    let keys: Vec<SeriesKey> = (0..hosts)
        .map(|i| {
            SeriesKey::new(
                "request.latency",
                vec![
                    ("host".into(), format!("gpu-host-{i:04}")),
                    ("model".into(), "m0".into()),
                ],
            )
            .expect("key")
        })
        .collect();
    for key in &keys {
        for hour in 0..(30 * 24) {
            store
                .import_bucket(key, &hourly, T0 + hour * HOUR, &data)
                .expect("import bucket");
        }
    }
    store.flush().expect("flush");
    eprintln!(
        "setup: {SLOS} SLOs, {hosts} hosts, {cells} SLO cells, {host_entries} host entries, {} hourly histograms, in {:.1} s",
        hosts * 720,
        setup.elapsed().as_secs_f64()
    );
    let reports = report_all(&store, &installed, now).expect("report");
    assert_eq!(reports.len(), SLOS);
    assert_eq!(reports[0].top_hosts.len(), 10);
    assert!(reports[0].total > 0);

    let latency = installed[0].def.sli.clone();
    let mut g = c.benchmark_group("slo");
    g.sample_size(10);
    g.bench_function(format!("report_{SLOS}_slos_30d_{hosts}_hosts"), |b| {
        b.iter(|| report_all(&store, &installed, now).expect("report"))
    });
    g.bench_function(
        format!("baseline_1_slo_from_30d_hourly_histograms_{hosts}_hosts"),
        |b| {
            b.iter(|| {
                let mut sum = Counts::default();
                for key in &keys {
                    for (_, d) in store.read(key, &hourly, now - 30 * DAY, now).expect("read") {
                        if let Some(c) = series_counts(&latency, key, &d) {
                            sum.add(c);
                        }
                    }
                }
                sum
            })
        },
    );
    g.finish();
}

criterion_group!(slo, benches);
criterion_main!(slo);
