//! Bucket-counter memory of 10 000 latency series whose values span three decades (1 ms …
//! 1 s), 100 values each, as the agent holds them in one interval: today's histogram against
//! 0.1's. `cargo run --release -p pitot-shared --example series_memory`
#![allow(clippy::print_stdout)]

use pitot_shared::histogram::ValueHistogram;
use pitot_shared::histogram::v1::V1Histogram;
use rand::{Rng, SeedableRng};

fn main() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (mut now, mut old) = (0usize, 0usize);
    for _ in 0..10_000 {
        let mut h = ValueHistogram::new();
        let mut o = V1Histogram::new();
        for _ in 0..100 {
            let v = (10f64.powf(rng.random_range(0.0..3.0)) * 1000.0).round() / 1000.0;
            h.record(v).expect("in range");
            o.record(v).expect("in range");
        }
        now += h.heap_bytes() + std::mem::size_of::<ValueHistogram>();
        old += o.heap_bytes() + std::mem::size_of::<V1Histogram>();
    }
    println!(
        "10 000 series × 100 values over 1 ms … 1 s: today {:.1} KiB per series, 0.1 {:.1} KiB per series",
        now as f64 / 10_000.0 / 1024.0,
        old as f64 / 10_000.0 / 1024.0
    );
}
