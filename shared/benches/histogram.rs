//! Criterion benches for the value histogram: recording, merging (the aggregator's inner
//! loop), and the wire round trip.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pitot_shared::histogram::{HistogramWire, ValueHistogram};

/// Log-spread latencies from 0.1 ms to about 10 s, deterministic.
fn latencies(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.1 * 1.000_11f64.powi((i * 7919 % 100_000) as i32))
        .collect()
}

fn filled(n: usize) -> ValueHistogram {
    let mut h = ValueHistogram::new();
    for v in latencies(n) {
        h.record(v).expect("finite");
    }
    h
}

fn benches(c: &mut Criterion) {
    let values = latencies(10_000);
    let mut g = c.benchmark_group("histogram");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("record_10k", |b| {
        b.iter_batched_ref(
            ValueHistogram::new,
            |h| {
                for v in &values {
                    h.record(*v).expect("finite");
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let a = filled(100_000);
    let other = filled(50_000);
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(1));
    g.bench_function("merge_latency_histograms", |b| {
        b.iter_batched_ref(
            || a.clone(),
            |h| h.merge(&other).expect("merge"),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("wire_round_trip", |b| {
        b.iter(|| {
            let wire = HistogramWire::from(a.clone());
            ValueHistogram::try_from(wire).expect("decode")
        })
    });
    g.finish();
}

criterion_group!(histogram, benches);
criterion_main!(histogram);
