//! Criterion bench for the agent's hot path: parsing DogStatsD datagrams (30 lines each, as
//! clients pack them) and recording them into a shard. Throughput is in lines.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pitot_agent::ingest::{IngestLimits, IngestShared, Shard};

fn datagrams(n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut line = 0usize;
    for _ in 0..n {
        let mut d = String::new();
        for _ in 0..30 {
            line += 1;
            let model = if line.is_multiple_of(2) {
                "llama3"
            } else {
                "mistral"
            };
            let metric = line % 30;
            let v = 1.0 + (line * 7919 % 100_000) as f64 / 97.0;
            d.push_str(&format!(
                "request.latency.{metric}:{v:.3}|ms|#model:{model},version:v1\n"
            ));
        }
        d.pop();
        out.push(d.into_bytes());
    }
    out
}

fn benches(c: &mut Criterion) {
    let data = datagrams(1000);
    let shared = IngestShared::new(IngestLimits {
        host: "bench".into(),
        max_series: 10_000,
        max_tags: 32,
        max_tag_bytes: 200,
        interval_ms: 10_000,
    });
    let shard = Shard::new(Arc::clone(&shared), 0);
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(30 * data.len() as u64));
    g.bench_function("parse_and_record_30k_lines", |b| {
        b.iter(|| shard.record_datagrams(data.iter().map(Vec::as_slice)))
    });
    g.finish();
}

criterion_group!(ingest, benches);
criterion_main!(ingest);
