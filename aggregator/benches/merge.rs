//! Criterion bench for the aggregator's merge: one batch of 60 latency series (2 models × 30
//! metrics, as the agent ships them) merged into a sled store (the finest resolution; coarser
//! ones are rolled up later), without the flush (which the merge actor amortises over a group).
//! Each batch goes through `merge::merge_one`, the actor's own path: SLO deltas, sightings,
//! the audit trail's first-sighting check, the merge. `…_with_cost` adds the six cost counters
//! two watched model processes on a GPU host add to a batch.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pitot_aggregator::store::SledStore;
use pitot_aggregator::telemetry::Stats;
use pitot_aggregator::{audit, config, merge, slo};
use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::{AgentId, SeriesKey};

fn batch(seq: u64, cost: bool) -> Batch {
    let mut series = Vec::new();
    if cost {
        for model in ["llama3", "mistral"] {
            for name in [
                "process.gpu.allocated_time",
                "process.gpu.busy_time",
                "process.host.allocated_time",
            ] {
                series.push(SeriesSnapshot {
                    key: SeriesKey::new(
                        name,
                        vec![
                            ("host".into(), "h".into()),
                            ("model".into(), model.into()),
                            ("process".into(), format!("{model}-server")),
                            ("gpu".into(), "0".into()),
                        ],
                    )
                    .expect("key"),
                    data: SeriesData::Counter(5.0),
                });
            }
        }
    }
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

/// 100 latency SLOs, each matching one of the batch's 60 series.
fn slo_config() -> String {
    (0..100)
        .map(|i| {
            let model = if i % 2 == 0 { "llama3" } else { "mistral" };
            format!(
                "[[slo]]\nname = \"s{i}\"\nobjective = 0.99\n[slo.sli]\nkind = \"latency\"\n\
                 metric = \"request.latency.{}\"\nthreshold_ms = {}\ntags = [\"model:{model}\"]\n",
                i % 30,
                100 + i
            )
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let mut seq = 0;
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(60));
    // Without SLOs, then with 100: the cost of keeping SLO counters (cells at 3 resolutions,
    // a host running sum) at merge time.
    for (name, slos, cost) in [
        ("merge_batch_60_series", String::new(), false),
        ("merge_batch_60_series_with_cost", String::new(), true),
        ("merge_batch_60_series_100_slos", slo_config(), false),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        // The default resolutions and retention, as a config without them gives them.
        let config = config::parse(&slos, Path::new("bench")).expect("config");
        // Marks at the first batch: coarser buckets are rolled up later, as in service.
        let mut store =
            SledStore::open_at(dir.path(), config.store.resolutions, 1_700_000_000_000 - 1)
                .expect("store");
        let installed = slo::install(&mut store, &config.slos).expect("install");
        let mut chain = audit::Chain::load(&store).expect("chain");
        let stats = Stats::default();
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    seq += 1;
                    batch(seq, cost)
                },
                |batch| {
                    merge::merge_one(&mut store, &installed, &mut chain, &stats, &batch, 0)
                        .expect("merge")
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(merge, benches);
criterion_main!(merge);
