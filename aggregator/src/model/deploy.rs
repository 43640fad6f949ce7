//! What the deployment timeline is made of: a model version seen on a host over an interval.

/// `(model, version)` seen on `host` over `[from_ms, to_ms)`: what one batch adds to the
/// timeline (computed by `timeline::sightings`, kept by the store as first/last per key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sighting {
    /// The `model` tag.
    pub model: String,
    /// The `version` tag (`""` when the series carry none).
    pub version: String,
    /// The `host` tag, else the agent that sent it.
    pub host: String,
    /// Start of the first interval it was seen in, Unix ms.
    pub from_ms: i64,
    /// End of the last interval it was seen in, Unix ms.
    pub to_ms: i64,
}
