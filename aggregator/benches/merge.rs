//! Criterion bench for the aggregator's merge: one batch of 60 latency series (2 models × 30
//! metrics, as the agent ships them) merged into a sled store at every resolution, without the
//! flush (which the merge actor amortises over a group).

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pitot_aggregator::config;
use pitot_aggregator::store::{SledStore, Store};
use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::{AgentId, SeriesKey};

fn batch(seq: u64) -> Batch {
    let mut series = Vec::new();
    for model in ["llama3", "mistral"] {
        for m in 0..30 {
            let mut h = ValueHistogram::new();
            for i in 0..500 {
                h.record(1.0 + ((i * 7919 + m * 13) % 10_000) as f64 / 37.0)
                    .expect("finite");
            }
            series.push(SeriesSnapshot {
                key: SeriesKey::new(
                    &format!("request.latency.{m}"),
                    vec![("host".into(), "h".into()), ("model".into(), model.into())],
                )
                .expect("key"),
                data: SeriesData::Histogram(h),
            });
        }
    }
    Batch {
        agent_id: AgentId("h".into()),
        epoch: 1,
        seq,
        interval_start_ms: 1_700_000_000_000 + seq as i64 * 10_000,
        interval_ms: 10_000,
        agent_version: "bench".into(),
        spool_bytes: 0,
        series,
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    // The default resolutions and retention, as an empty config file gives them.
    let defaults = config::parse("", Path::new("defaults")).expect("default config");
    let store = SledStore::open(dir.path(), defaults.resolutions).expect("store");
    let mut seq = 0;
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(60));
    g.bench_function("merge_batch_60_series", |b| {
        b.iter_batched(
            || {
                seq += 1;
                batch(seq)
            },
            |batch| store.merge_batch(&batch, 0).expect("merge"),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(merge, benches);
criterion_main!(merge);
