//! The deployment timeline: which version of a model served on which host, from when to when,
//! read from the batches themselves (no extra instrumentation). Each merged batch adds a
//! [`Sighting`] per `(model, version, host)` among its series' tags ([`sightings`]); the store
//! keeps the first and last time of each, so the timeline survives restarts.

use std::collections::BTreeSet;

use pitot_shared::batch::Batch;
use serde::{Deserialize, Serialize};

use crate::model::{Sighting, rfc3339};
use crate::reports::ReportError;
use crate::store::Store;

/// A sighting whose last interval ended less than this before now counts as live.
pub const LIVE_WITHIN_MS: i64 = 60_000;

/// What `batch` adds to the timeline: one sighting per `(model, version, host)` of its series
/// (series without a `model` tag add nothing; without `version` the version is `""`).
pub fn sightings(batch: &Batch) -> Vec<Sighting> {
    let from_ms = batch.interval_start_ms;
    let to_ms = from_ms + batch.interval_ms as i64;
    let mut seen: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for s in &batch.series {
        if let Some(model) = s.key.tag("model") {
            let version = s.key.tag("version").unwrap_or("");
            let host = s.key.tag("host").unwrap_or(&batch.agent_id.0);
            seen.insert((model, version, host));
        }
    }
    seen.into_iter()
        .map(|(model, version, host)| Sighting {
            model: model.to_owned(),
            version: version.to_owned(),
            host: host.to_owned(),
            from_ms,
            to_ms,
        })
        .collect()
}

/// One version on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The version (`""` when its series carry no `version` tag).
    pub version: String,
    /// The host.
    pub host: String,
    /// Start of the first interval it was seen in (RFC 3339).
    pub first_seen: String,
    /// End of the last interval it was seen in (RFC 3339).
    pub last_seen: String,
    /// Its last interval ended less than a minute ago.
    pub live: bool,
}

/// `GET /api/v1/models/{name}/timeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The model.
    pub model: String,
    /// Entries that overlap `[from, to)`, by first sighting, then version and host.
    pub entries: Vec<TimelineEntry>,
    /// Versions live now, with how many hosts serve each.
    pub live: Vec<(String, usize)>,
}

/// The timeline of `model` over `[from_ms, to_ms)` at `now_ms`.
pub fn report(
    store: &dyn Store,
    model: &str,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<Timeline, ReportError> {
    let mut seen = store.sightings(Some(model))?;
    if seen.is_empty() {
        return Err(ReportError::NotFound(format!(
            "no series tagged model:{model} has arrived; the timeline is built from the model \
             and version tags of what agents send"
        )));
    }
    seen.retain(|s| s.to_ms > from_ms && s.from_ms < to_ms);
    seen.sort_by(|a, b| (a.from_ms, &a.version, &a.host).cmp(&(b.from_ms, &b.version, &b.host)));
    let is_live = |s: &Sighting| now_ms - s.to_ms < LIVE_WITHIN_MS;
    let mut live: Vec<(String, usize)> = Vec::new();
    for s in seen.iter().filter(|s| is_live(s)) {
        match live.iter_mut().find(|(v, _)| *v == s.version) {
            Some((_, n)) => *n += 1,
            None => live.push((s.version.clone(), 1)),
        }
    }
    Ok(Timeline {
        model: model.to_owned(),
        entries: seen
            .iter()
            .map(|s| TimelineEntry {
                version: s.version.clone(),
                host: s.host.clone(),
                first_seen: rfc3339(s.from_ms),
                last_seen: rfc3339(s.to_ms),
                live: is_live(s),
            })
            .collect(),
        live,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitot_shared::batch::{SeriesData, SeriesSnapshot};
    use pitot_shared::series::{AgentId, SeriesKey};

    #[test]
    fn a_batch_adds_one_sighting_per_model_version_and_host() {
        let series = |name: &str, tags: &[(&str, &str)]| SeriesSnapshot {
            key: SeriesKey::new(
                name,
                tags.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
            .expect("key"),
            data: SeriesData::Counter(1.0),
        };
        let batch = Batch {
            agent_id: AgentId("gpu-1".into()),
            epoch: 1,
            seq: 1,
            interval_start_ms: 10_000,
            interval_ms: 10_000,
            agent_version: "t".into(),
            spool_bytes: 0,
            series: vec![
                series("a", &[("model", "llama3"), ("version", "v2")]),
                series("b", &[("model", "llama3"), ("version", "v2")]),
                series(
                    "c",
                    &[("model", "llama3"), ("version", "v1"), ("host", "gpu-9")],
                ),
                series("d", &[("model", "mistral")]),
                series("pitot.agent.series", &[("host", "gpu-1")]),
            ],
        };
        let got = sightings(&batch);
        let keys: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|s| (s.model.as_str(), s.version.as_str(), s.host.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("llama3", "v1", "gpu-9"),
                ("llama3", "v2", "gpu-1"),
                ("mistral", "", "gpu-1")
            ]
        );
        assert!(got.iter().all(|s| (s.from_ms, s.to_ms) == (10_000, 20_000)));
    }
}
