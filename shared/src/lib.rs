//! `pitot-shared`: the pure core of Pitot, shared by the agent, the aggregator and the CLI.
//!
//! What lives here: series identity ([`series`]), the signed value histogram and the
//! categorical summary ([`histogram`], [`categorical`]), classic Prometheus histograms in their
//! own bucket layout ([`buckets`]), the per-interval batch an agent
//! ships ([`batch`]), the wire frames and their codec ([`wire`]), the sans-IO protocol
//! sessions for both ends ([`protocol`]), wall-clock window alignment ([`window`]) and the
//! configuration pieces both binaries parse ([`config`]).
//!
//! **Invariant:** this crate performs no I/O and reads no clock. It depends on no tokio,
//! quinn, sled or sysinfo (CI checks `cargo tree`), and `clippy.toml` bans
//! `Instant::now`/`SystemTime::now` here. Time is always an argument.
#![warn(missing_docs)]

pub mod batch;
pub mod buckets;
pub mod categorical;
pub mod config;
pub mod drift;
pub mod gate;
pub mod histogram;
pub mod loggate;
pub mod protocol;
pub mod series;
pub mod slo;
pub mod window;
pub mod wire;
