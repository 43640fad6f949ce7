//! The agent's parse + record path on the tagged mix, for `valgrind --tool=callgrind`, whose
//! instruction counts do not drift with machine noise (issue 16).
//!
//! Builds 1 000 datagrams of `pitot loadgen --mix tagged` (32 lines each, seed 1), records
//! them once into a shard (creating the mix's 80 series), then `ROUNDS` more times (default
//! 5). Only the rounds after the first are what a steady agent does; count them with
//!
//! ```sh
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     --toggle-collect='pitot_agent::ingest::Shard::record_datagrams*' \
//!     target/release/examples/ingest_instructions 5
//! callgrind_annotate /tmp/cg.out | head -20   # total Ir over 6 x 32 000 lines
//! ```
//!
//! `bench/ingest-instructions.sh` runs that and prints instructions per line (the first round
//! included: series creation is 80 misses in 192 000 lines).

use std::io::Write as _;
use std::sync::Arc;

use pitot::loadgen::{self, LoadSpec, Mix};
use pitot_agent::ingest::{IngestLimits, IngestShared, Shard};

fn main() -> std::io::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let spec = LoadSpec {
        mix: Mix::Tagged,
        per_datagram: 32,
        seed: 1,
        ..LoadSpec::default()
    };
    let data = loadgen::datagrams(&spec, 1000);
    let lines: usize = data.iter().map(|d| d.split('\n').count()).sum();
    let shared = IngestShared::new(IngestLimits {
        host: "bench".into(),
        max_series: 10_000,
        max_tags: 32,
        max_tag_bytes: 200,
        interval_ms: 10_000,
    });
    let shard = Shard::new(Arc::clone(&shared), 0);
    for _ in 0..=rounds {
        shard.record_datagrams(data.iter().map(|d| d.as_bytes()));
    }
    let recorded = shared
        .stats
        .recorded
        .load(std::sync::atomic::Ordering::Relaxed);
    writeln!(
        std::io::stdout(),
        "lines={} recorded={recorded} series={}",
        lines * (rounds + 1),
        shared.series()
    )
}
