//! Criterion benches for the value histogram against 0.1's (HdrHistogram over 0.001 steps),
//! measured in the same run on the same values: recording, merging (the aggregator's inner
//! loop) and the wire round trip, for three series: a latency in ms, the same latency in
//! seconds, and values spanning 1e-6 … 1e3. Before the timings it prints, per series, the
//! wire size and the memory of bucket counters for both histograms, and the p1/p50/p99 error
//! of each against the exact quantiles.

// A bench reports its figures on stdout.
#![allow(clippy::print_stdout)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pitot_shared::histogram::v1::V1Histogram;
use pitot_shared::histogram::{HistogramWire, ValueHistogram};

/// Log-normal-ish latencies from about 1 ms to 1 s (3 decades), deterministic.
fn latency_ms(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 10f64.powf(3.0 * ((i * 7919) % n) as f64 / n as f64))
        .map(|v| (v * 1000.0).round() / 1000.0)
        .collect()
}

/// The same in seconds, as Prometheus, OpenTelemetry and vLLM report latency.
fn latency_s(n: usize) -> Vec<f64> {
    latency_ms(n).iter().map(|v| v / 1000.0).collect()
}

/// Values spanning 1e-6 … 1e3 (embedding distances to token counts).
fn wide(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 10f64.powf(-6.0 + 9.0 * ((i * 7919) % n) as f64 / n as f64))
        .collect()
}

fn exact(values: &[f64], q: f64) -> f64 {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

fn v1_of(values: &[f64]) -> V1Histogram {
    let mut h = V1Histogram::new();
    for v in values {
        h.record(*v).expect("in range");
    }
    h
}

fn v2_of(values: &[f64]) -> ValueHistogram {
    let mut h = ValueHistogram::new();
    for v in values {
        h.record(*v).expect("in range");
    }
    h
}

fn v1_wire_bytes(h: &V1Histogram) -> usize {
    bincode::serde::encode_to_vec(h, bincode::config::standard())
        .expect("encode")
        .len()
}

fn v2_wire_bytes(h: &ValueHistogram) -> usize {
    bincode::serde::encode_to_vec(h, bincode::config::standard())
        .expect("encode")
        .len()
}

fn report(name: &str, values: &[f64]) {
    let (a, b) = (v1_of(values), v2_of(values));
    let err =
        |got: Option<f64>, want: f64| got.map_or(f64::NAN, |g| 100.0 * ((g - want) / want).abs());
    let (p1, p50, p99) = (exact(values, 0.01), exact(values, 0.5), exact(values, 0.99));
    println!(
        "{name}: {n} values | wire bytes 0.1 {} / now {} | counter memory 0.1 {} B / now {} B | \
         error % at p1, p50, p99: 0.1 {:.3} {:.3} {:.3} / now {:.3} {:.3} {:.3}",
        v1_wire_bytes(&a),
        v2_wire_bytes(&b),
        a.heap_bytes(),
        b.heap_bytes(),
        err(a.quantile(0.01), p1),
        err(a.quantile(0.5), p50),
        err(a.quantile(0.99), p99),
        err(b.quantile(0.01), p1),
        err(b.quantile(0.5), p50),
        err(b.quantile(0.99), p99),
        n = values.len(),
    );
}

/// Makes `n` values of one series.
type Maker = fn(usize) -> Vec<f64>;

fn benches(c: &mut Criterion) {
    let series: [(&str, Maker); 3] = [
        ("latency_ms", latency_ms),
        ("latency_s", latency_s),
        ("wide_1e-6_1e3", wide),
    ];
    for (name, make) in series {
        report(name, &make(10_000));
    }
    for (name, make) in series {
        let values = make(10_000);
        let mut g = c.benchmark_group(format!("record/{name}"));
        g.throughput(Throughput::Elements(values.len() as u64));
        g.bench_function("0.1", |b| {
            b.iter_batched_ref(
                V1Histogram::new,
                |h| {
                    for v in &values {
                        h.record(*v).expect("in range");
                    }
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function("now", |b| {
            b.iter_batched_ref(
                ValueHistogram::new,
                |h| {
                    for v in &values {
                        h.record(*v).expect("in range");
                    }
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();

        let (a1, o1) = (v1_of(&make(100_000)), v1_of(&make(50_000)));
        let (a2, o2) = (v2_of(&make(100_000)), v2_of(&make(50_000)));
        let mut g = c.benchmark_group(format!("merge/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("0.1", |b| {
            b.iter_batched_ref(
                || a1.clone(),
                |h| h.merge(&o1).expect("merge"),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("now", |b| {
            b.iter_batched_ref(
                || a2.clone(),
                |h| h.merge(&o2).expect("merge"),
                BatchSize::SmallInput,
            )
        });
        g.finish();

        let mut g = c.benchmark_group(format!("wire_round_trip/{name}"));
        g.bench_function("0.1", |b| {
            b.iter(|| {
                let wire = pitot_shared::histogram::v1::HistogramWire::from(a1.clone());
                V1Histogram::try_from(wire).expect("decode")
            })
        });
        g.bench_function("now", |b| {
            b.iter(|| {
                let wire = HistogramWire::from(a2.clone());
                ValueHistogram::try_from(wire).expect("decode")
            })
        });
        g.finish();
    }
}

criterion_group!(histogram, benches);
criterion_main!(histogram);
