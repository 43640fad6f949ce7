//! The aggregator's shared vocabulary, at the bottom of its layers: storage resolutions with
//! their fixed key codes ([`resolution`]), time specifications ([`time`]), SLO definitions
//! ([`slo`]), deployment sightings ([`deploy`]), declared models ([`owned`]), gates
//! ([`gate`]), exports and alert targets ([`export`]). No I/O and no imports from the rest of
//! the crate (`tests/tidy.rs` checks), so the store, the engines, the config and the API can
//! all speak it without importing each other.

pub mod deploy;
pub mod export;
pub mod gate;
pub mod owned;
pub mod resolution;
pub mod slo;
pub mod time;

pub use deploy::Sighting;
pub use export::{AlertKind, AlertTarget, ExportDefinition};
pub use gate::{GateDefinition, OnDrift};
pub use owned::{CostMetrics, ModelDefinition, Prices};
pub use resolution::{RESOLUTIONS, Resolution, ResolutionSpec};
pub use slo::{Sli, SloDefinition, SloDelta, SloWindow};
pub use time::{TimeSpec, parse_time, rfc3339};
