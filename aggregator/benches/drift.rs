//! Criterion bench for drift reports: 50 input features × 100 hosts, written straight to a
//! sled store, then the `hosts` report (each host against the rest, with outlier exclusion)
//! and the `temporal` report over them. Time per comparison = report time / 5 000.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use pitot_aggregator::config;
use pitot_aggregator::drift::{self, DriftQuery, Mode};
use pitot_aggregator::store::SledStore;
use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::drift::DriftConfig;
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::{AgentId, SeriesKey};

const HOSTS: usize = 100;
const FEATURES: usize = 50;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    // The default resolutions and retention, as an empty config file gives them.
    let defaults = config::parse("", Path::new("defaults")).expect("default config");
    let mut store = SledStore::open(dir.path(), defaults.store.resolutions).expect("store");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for h in 0..HOSTS {
        let host = format!("host-{h}");
        let series = (0..FEATURES)
            .map(|f| {
                let mut hist = ValueHistogram::new();
                for i in 0..500 {
                    let v = 100.0 + f as f64 + ((i * 7919 + h * 31) % 1000) as f64 / 10.0;
                    hist.record(v).expect("finite");
                }
                SeriesSnapshot {
                    key: SeriesKey::new(
                        &format!("input.feature_{f}"),
                        vec![("host".into(), host.clone()), ("model".into(), "m".into())],
                    )
                    .expect("key"),
                    data: SeriesData::Histogram(hist),
                }
            })
            .collect();
        let batch = Batch {
            agent_id: AgentId(host),
            epoch: 1,
            seq: 1,
            interval_start_ms: now - 60_000,
            interval_ms: 10_000,
            agent_version: "bench".into(),
            spool_bytes: 0,
            series,
        };
        store.merge_batch(&batch, now, &[], &[]).expect("merge");
    }
    let config = DriftConfig::default();
    let hosts = DriftQuery {
        mode: Mode::Hosts {
            history_from_ms: now - 7_200_000,
            history_to_ms: now - 3_600_000,
        },
        metric: None,
        filters: vec![],
        from_ms: now - 3_600_000,
        to_ms: now,
    };
    let mut g = c.benchmark_group("drift");
    g.sample_size(10);
    g.bench_function("hosts_report_50_features_x_100_hosts", |b| {
        b.iter(|| drift::report(&store, &hosts, &config, "input.").expect("report"))
    });
    // The report's two halves, to say what bounds it: reading the 5 000 stored series, and
    // the comparisons over what was read.
    g.bench_function("hosts_load_only", |b| {
        b.iter(|| drift::load_features(&store, &hosts, "input.").expect("load"))
    });
    let loaded = drift::load_features(&store, &hosts, "input.").expect("load");
    g.bench_function("hosts_compare_only", |b| {
        b.iter(|| drift::compare(loaded.clone(), &hosts, &config))
    });
    let temporal = DriftQuery {
        mode: Mode::Temporal {
            ref_from_ms: now - 7_200_000,
            ref_to_ms: now - 3_600_000,
        },
        ..hosts.clone()
    };
    g.bench_function("temporal_report_50_features_x_100_hosts", |b| {
        b.iter(|| drift::report(&store, &temporal, &config, "input.").expect("report"))
    });
    g.finish();
}

criterion_group!(drift_bench, benches);
criterion_main!(drift_bench);
