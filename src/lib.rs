//! `pitot`: the command-line tool around the agent and aggregator (`demo`, `report`, `certs`,
//! `loadgen`). The binary in `main.rs` parses flags and calls these modules; the end-to-end
//! tests in `tests/` use them too (certificates, load).

pub mod certs;
pub mod demo;
pub mod loadgen;
pub mod report;
