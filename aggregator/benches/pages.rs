//! Criterion bench for what people look at: the model report page for a model with 30 days
//! of history over 100 hosts (two versions, one latency histogram and one request counter per
//! host, in the buckets rollups leave: 1 h for 30 days, 1 min for a day, 10 s for an hour), at
//! every range of the picker; and `/metrics`
//! with 1 000 exported groups, in the text and the protobuf exposition.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use pitot_aggregator::config;
use pitot_aggregator::export::Exports;
use pitot_aggregator::exposition;
use pitot_aggregator::models;
use pitot_aggregator::pages::{self, View};
use pitot_aggregator::store::SledStore;
use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::{AgentId, SeriesKey};

const HOSTS: usize = 100;
const DAYS: i64 = 30;
const HOUR: i64 = 3_600_000;

/// About 300 latencies around `median` ms (a deterministic log-spread).
fn latencies(median: f64, seed: usize) -> ValueHistogram {
    let mut h = ValueHistogram::new();
    for i in 0..300 {
        let u = ((i * 7919 + seed * 104_729) % 1000) as f64 / 1000.0;
        h.record(median * (2.0 * u - 1.0).mul_add(1.2, 0.0).exp())
            .expect("finite");
    }
    h
}

fn model_page(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config::parse(
        "[[model]]\nname = \"llama3\"\nowner = \"team-chat\"\n",
        Path::new("bench.toml"),
    )
    .expect("config");
    let mut store = SledStore::open(dir.path(), cfg.store.resolutions.clone()).expect("store");
    let hourly = cfg
        .store
        .resolutions
        .iter()
        .find(|r| r.bucket_ms() == HOUR as u64)
        .copied()
        .expect("a 1 h resolution");
    let by_bucket = |ms: u64| {
        cfg.store
            .resolutions
            .iter()
            .find(|r| r.bucket_ms() == ms)
            .copied()
            .expect("the default resolutions")
    };
    let (minute, ten_s) = (by_bucket(60_000), by_bucket(10_000));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let first = (now - DAYS * 24 * HOUR).div_euclid(HOUR) * HOUR;
    for h in 0..HOSTS {
        let version = if h % 2 == 0 { "v1" } else { "v2" };
        let tags = vec![
            ("host".to_owned(), format!("gpu-{h:03}")),
            ("model".to_owned(), "llama3".to_owned()),
            ("version".to_owned(), version.to_owned()),
        ];
        let latency = SeriesKey::new("request.latency", tags.clone()).expect("key");
        let requests = SeriesKey::new("request.count", tags).expect("key");
        // As rollups leave a store: 1 h buckets for 30 days, 1 min for the last day, 10 s for
        // the last hour (what the 30 d, 24 h and 1 h pages read).
        for (res, span) in [(minute, 24 * HOUR), (ten_s, HOUR)] {
            let step = res.bucket_ms() as i64;
            let mut t = (now - span).div_euclid(step) * step;
            let median = if version == "v1" { 30.0 } else { 42.0 };
            while t < now - step {
                let data = SeriesData::Histogram(latencies(median, (t / step) as usize % 9973 + h));
                store
                    .import_bucket(&latency, &res, t, &data)
                    .expect("import");
                store
                    .import_bucket(&requests, &res, t, &SeriesData::Counter(5.0))
                    .expect("import");
                t += step;
            }
        }
        let mut t = first;
        let mut k = 0;
        while t < now {
            let median = if version == "v1" { 30.0 } else { 42.0 };
            store
                .import_bucket(
                    &latency,
                    &hourly,
                    t,
                    &SeriesData::Histogram(latencies(median, h * 1000 + k)),
                )
                .expect("import");
            store
                .import_bucket(&requests, &hourly, t, &SeriesData::Counter(300.0))
                .expect("import");
            t += HOUR;
            k += 1;
        }
    }
    // A last, live interval so the versions show as live.
    for h in 0..HOSTS {
        let version = if h % 2 == 0 { "v1" } else { "v2" };
        let batch = Batch {
            agent_id: AgentId(format!("gpu-{h:03}")),
            epoch: 1,
            seq: 1,
            interval_start_ms: now - 20_000,
            interval_ms: 10_000,
            agent_version: "bench".into(),
            spool_bytes: 0,
            series: vec![SeriesSnapshot {
                key: SeriesKey::new(
                    "request.latency",
                    vec![
                        ("model".into(), "llama3".into()),
                        ("version".into(), version.into()),
                    ],
                )
                .expect("key"),
                data: SeriesData::Histogram(latencies(30.0, h)),
            }],
        };
        store.merge_batch(&batch, now, &[], &[]).expect("merge");
    }
    let ctx = models::Context {
        models: &cfg.models,
        slos: &[],
        drift: &cfg.drift.config,
        input_prefix: &cfg.drift.input_prefix,
    };
    let mut g = c.benchmark_group("pages");
    g.sample_size(10);
    for range in ["1h", "24h", "7d", "30d"] {
        let view = pages::view(Some(format!("range={range}"))).expect("view");
        let html = pages::model_html(&store, ctx, &[], "llama3", &view, now).expect("page");
        assert!(html.contains("data-series=\"4\""), "two versions drawn");
        g.bench_function(format!("model_page_{range}_100_hosts"), |b| {
            b.iter(|| pages::model_html(&store, ctx, &[], "llama3", &view, now).expect("page"))
        });
    }
    let hosts = View {
        hosts: true,
        ..pages::view(Some("range=30d".into())).expect("view")
    };
    g.bench_function("model_page_30d_100_hosts_one_line_per_host", |b| {
        b.iter(|| pages::model_html(&store, ctx, &[], "llama3", &hosts, now).expect("page"))
    });
    g.finish();
}

fn metrics(c: &mut Criterion) {
    let cfg = config::parse(
        "[[export]]\nmetric = \"request.latency\"\ngroup_by = [\"host\", \"model\"]\nmax_groups = 1000\n",
        Path::new("bench.toml"),
    )
    .expect("config");
    let exports = Exports::new(cfg.exports.clone());
    let now = 1_764_547_200_000;
    for h in 0..250 {
        let series = (0..4)
            .map(|m| SeriesSnapshot {
                key: SeriesKey::new(
                    "request.latency",
                    vec![
                        ("host".into(), format!("gpu-{h:03}")),
                        ("model".into(), format!("model-{m}")),
                    ],
                )
                .expect("key"),
                data: SeriesData::Histogram(latencies(30.0 + m as f64, h * 4 + m)),
            })
            .collect();
        let batch = Batch {
            agent_id: AgentId(format!("gpu-{h:03}")),
            epoch: 1,
            seq: 1,
            interval_start_ms: now - 60_000,
            interval_ms: 10_000,
            agent_version: "bench".into(),
            spool_bytes: 0,
            series,
        };
        exports.observe(&batch, now);
    }
    assert_eq!(exports.families(now, true)[0].metric.len(), 1000);
    let mut g = c.benchmark_group("metrics");
    g.bench_function("text_1000_groups", |b| b.iter(|| exports.text(now)));
    g.bench_function("protobuf_1000_groups", |b| {
        b.iter(|| exposition::encode(&exports.families(now, true)))
    });
    g.finish();
}

criterion_group!(benches, model_page, metrics);
criterion_main!(benches);
