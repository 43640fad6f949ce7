//! The batch: what an agent ships per closed interval, and the per-series data it carries.
//!
//! ```text
//! Batch { agent_id, epoch: u64, seq: u64, interval_start_ms: i64, interval_ms: u64,
//!         agent_version, spool_bytes: u64, series: [SeriesSnapshot] }
//! SeriesSnapshot { key: SeriesKey, data: SeriesData }
//! SeriesData = HistogramV1(histogram::v1)   variant 0: 0.1's histogram, read, never written
//!            | Counter(f64) | Categorical(Categorical)
//!            | Buckets(BucketHistogram)        (appended in 0.1: old batches still decode)
//!            | Histogram(ValueHistogram)       (appended in 0.2: every histogram written since)
//! ```
//!
//! In memory there is one histogram type; a 0.1 histogram becomes one when it is decoded
//! ([`crate::histogram::v1::V1Histogram::to_current`]).
//!
//! `epoch` is chosen at random when an agent's spool is created; `seq` counts up from 1
//! inside an epoch. Together with `agent_id` they name a batch uniquely, which is what lets
//! the aggregator merge each batch exactly once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::buckets::{BucketError, BucketHistogram};
use crate::categorical::{self, Categorical};
use crate::histogram::v1::V1Histogram;
use crate::histogram::{MergeError, ValueHistogram};
use crate::series::{AgentId, Kind, SeriesKey};

/// The data of one series for one interval.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SeriesData {
    /// A distribution.
    Histogram(ValueHistogram),
    /// A delta count (sample rates already applied).
    Counter(f64),
    /// Counts per category value.
    Categorical(Categorical),
    /// A classic histogram in its own bucket layout (Prometheus scrapes).
    Buckets(BucketHistogram),
}

/// How [`SeriesData`] is written: variant indexes are the wire's, so the 0.1 histogram keeps
/// index 0 and today's histogram is appended.
#[derive(Serialize)]
enum SeriesDataOut<'a> {
    #[allow(dead_code)]
    HistogramV1(&'a V1Histogram),
    Counter(f64),
    Categorical(&'a Categorical),
    Buckets(&'a BucketHistogram),
    Histogram(&'a ValueHistogram),
}

/// How [`SeriesData`] is read: every variant ever written.
#[derive(Deserialize)]
enum SeriesDataIn {
    HistogramV1(V1Histogram),
    Counter(f64),
    Categorical(Categorical),
    Buckets(BucketHistogram),
    Histogram(ValueHistogram),
}

impl Serialize for SeriesData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SeriesData::Histogram(h) => SeriesDataOut::Histogram(h),
            SeriesData::Counter(c) => SeriesDataOut::Counter(*c),
            SeriesData::Categorical(c) => SeriesDataOut::Categorical(c),
            SeriesData::Buckets(b) => SeriesDataOut::Buckets(b),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SeriesData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match SeriesDataIn::deserialize(d)? {
            SeriesDataIn::HistogramV1(h) => SeriesData::Histogram(h.to_current()),
            SeriesDataIn::Counter(c) => SeriesData::Counter(c),
            SeriesDataIn::Categorical(c) => SeriesData::Categorical(c),
            SeriesDataIn::Buckets(b) => SeriesData::Buckets(b),
            SeriesDataIn::Histogram(h) => SeriesData::Histogram(h),
        })
    }
}

impl SeriesData {
    /// The kind of series this data belongs to.
    pub fn kind(&self) -> Kind {
        match self {
            SeriesData::Histogram(_) => Kind::Histogram,
            SeriesData::Counter(_) => Kind::Counter,
            SeriesData::Categorical(_) => Kind::Categorical,
            SeriesData::Buckets(_) => Kind::Buckets,
        }
    }

    /// Adds `other` into `self`; `Err` when the kinds differ or totals overflow.
    pub fn merge(&mut self, other: &SeriesData) -> Result<(), DataMergeError> {
        match (self, other) {
            (SeriesData::Histogram(a), SeriesData::Histogram(b)) => Ok(a.merge(b)?),
            (SeriesData::Counter(a), SeriesData::Counter(b)) => {
                *a += *b;
                Ok(())
            }
            (SeriesData::Categorical(a), SeriesData::Categorical(b)) => {
                a.merge(b, categorical::DEFAULT_LIMIT);
                Ok(())
            }
            (SeriesData::Buckets(a), SeriesData::Buckets(b)) => Ok(a.merge(b)?),
            (a, b) => Err(DataMergeError::KindMismatch {
                existing: a.kind(),
                incoming: b.kind(),
            }),
        }
    }
}

/// Why two pieces of series data could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataMergeError {
    /// The same series was sent with two kinds; the incoming data is dropped and counted.
    #[error("series kind mismatch: stored {existing:?}, got {incoming:?}")]
    KindMismatch {
        /// The kind already held.
        existing: Kind,
        /// The kind that arrived.
        incoming: Kind,
    },
    /// Histogram totals overflowed.
    #[error(transparent)]
    Histogram(#[from] MergeError),
    /// Too many bucket layouts for one series.
    #[error(transparent)]
    Buckets(#[from] BucketError),
}

/// One series' data in a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesSnapshot {
    /// The series.
    pub key: SeriesKey,
    /// Its data for the interval.
    pub data: SeriesData,
}

/// One closed interval of one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The agent that recorded it.
    pub agent_id: AgentId,
    /// The agent's spool epoch (random per spool).
    pub epoch: u64,
    /// Sequence number inside the epoch, from 1.
    pub seq: u64,
    /// Start of the interval, Unix milliseconds.
    pub interval_start_ms: i64,
    /// Length of the interval, milliseconds (longer when the spool coarsened batches).
    pub interval_ms: u64,
    /// The agent's version string.
    pub agent_version: String,
    /// The agent's spool size when the batch was sent, bytes.
    pub spool_bytes: u64,
    /// The series data.
    pub series: Vec<SeriesSnapshot>,
}

impl Batch {
    /// Merges `later` into `self` (spool coarsening): series data adds, the interval widens to
    /// cover both. Series whose kinds conflict keep `self`'s data; the count of such series is
    /// returned so the caller can report it.
    pub fn absorb(&mut self, later: Batch) -> usize {
        let mut conflicts = 0;
        let mut by_key: BTreeMap<SeriesKey, SeriesData> =
            self.series.drain(..).map(|s| (s.key, s.data)).collect();
        for s in later.series {
            match by_key.get_mut(&s.key) {
                Some(existing) => {
                    if existing.merge(&s.data).is_err() {
                        conflicts += 1;
                    }
                }
                None => {
                    by_key.insert(s.key, s.data);
                }
            }
        }
        self.series = by_key
            .into_iter()
            .map(|(key, data)| SeriesSnapshot { key, data })
            .collect();
        let start = self.interval_start_ms.min(later.interval_start_ms);
        let end = (self.interval_start_ms + self.interval_ms as i64)
            .max(later.interval_start_ms + later.interval_ms as i64);
        self.interval_start_ms = start;
        self.interval_ms = (end - start).max(0) as u64;
        conflicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(start: i64, value: f64) -> Batch {
        let mut h = ValueHistogram::new();
        h.record(value).unwrap();
        Batch {
            agent_id: AgentId("a".into()),
            epoch: 1,
            seq: 1,
            interval_start_ms: start,
            interval_ms: 1000,
            agent_version: "t".into(),
            spool_bytes: 0,
            series: vec![
                SeriesSnapshot {
                    key: SeriesKey::new("lat", vec![]).unwrap(),
                    data: SeriesData::Histogram(h),
                },
                SeriesSnapshot {
                    key: SeriesKey::new("req", vec![]).unwrap(),
                    data: SeriesData::Counter(2.0),
                },
            ],
        }
    }

    #[test]
    fn absorb_adds_data_and_widens_the_interval() {
        let mut a = batch(0, 1.0);
        assert_eq!(a.absorb(batch(1000, 2.0)), 0);
        assert_eq!(a.interval_ms, 2000);
        let SeriesData::Histogram(h) = &a.series[0].data else {
            panic!("histogram expected")
        };
        assert_eq!(h.count(), 2);
        assert_eq!(a.series[1].data, SeriesData::Counter(4.0));
    }

    #[test]
    fn kind_conflicts_are_reported_not_merged() {
        let mut a = SeriesData::Counter(1.0);
        let err = a.merge(&SeriesData::Histogram(ValueHistogram::new()));
        assert!(matches!(err, Err(DataMergeError::KindMismatch { .. })));
        assert_eq!(a, SeriesData::Counter(1.0));
    }
}
