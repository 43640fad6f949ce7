//! The value histogram: a mergeable distribution of signed floats.
//!
//! # Resolution
//!
//! A value `v` is quantized to an integer number of steps of [`STEP`] (0.001 of the unit it was
//! sent in, so 1 µs for a DogStatsD `ms` timer): `q = round(v / STEP)`. The magnitudes `|q|`
//! go into one of two HdrHistograms (values ≥ 0 and values < 0) with
//! [`SIGNIFICANT_DIGITS`] = 3. So a recorded value is known to within
//! `max(STEP / 2, |v| / 2048)`: exact to the step below 2.048 units, and a relative error under
//! 0.05 % above (HdrHistogram's bucket width at 3 digits is at most 1/1024 of the value, and
//! quantiles report the bucket's midpoint). Values with `|v| > MAX_ABS_VALUE` are refused.
//!
//! Beside the buckets, each histogram carries the exact count, sum and sum of squares (of the
//! quantized values, as integers, so merging is associative and commutative bit for bit),
//! min and max. Quantiles are clamped to `[min, max]`, so the 0 and 1 quantiles are exact.
//!
//! # Wire form
//!
//! ```text
//! HistogramWire { count: u64, sum_steps: i128, sum_sq_steps: u128,
//!                 min_steps: i64, max_steps: i64,
//!                 positive: bytes (HdrHistogram V2, uncompressed),
//!                 negative: bytes (V2, or empty when no negative value was seen) }
//! ```
//!
//! Decoding never hands bytes to the HdrHistogram deserializer before [`check_v2`] has bounded
//! the header (cookie, precision, lowest and highest trackable value, payload length) and
//! walked the payload's varints: the deserializer itself would allocate whatever a header
//! asks for.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// One quantization step, in the unit the value was sent in.
pub const STEP: f64 = 0.001;
/// Significant decimal digits kept by the buckets.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Largest magnitude accepted, in the value's unit (10^12: a 31-year duration in ms).
pub const MAX_ABS_VALUE: f64 = 1e12;
/// Largest highest-trackable value a decoded V2 header may declare (2^53 steps).
const MAX_TRACKABLE_STEPS: u64 = 1 << 53;
/// Uncompressed V2 cookie (hdrhistogram's `V2_COOKIE`).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_HEADER_BYTES: usize = 40;

/// Why a value could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The value is NaN or infinite; the caller counts it as malformed.
    #[error("value is not finite")]
    NonFinite,
    /// `|v|` exceeds [`MAX_ABS_VALUE`]; the caller counts it as malformed.
    #[error("value magnitude exceeds {MAX_ABS_VALUE}")]
    OutOfRange,
}

/// Why two histograms could not be merged. Only corrupt or hostile inputs cause it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// A running total would overflow its integer type.
    #[error("histogram totals overflow")]
    Overflow,
    /// The HdrHistogram refused the addition (its range could not grow).
    #[error("histogram buckets could not be added: {0}")]
    Buckets(String),
}

/// Why histogram bytes from the network or disk were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The V2 header is short, compressed, or declares sizes beyond Pitot's bounds.
    #[error("histogram header rejected: {0}")]
    Header(&'static str),
    /// The V2 payload is malformed.
    #[error("histogram payload rejected: {0}")]
    Payload(String),
    /// The summary fields contradict the buckets (count, min, max).
    #[error("histogram summary inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// A mergeable distribution of signed floats (see the module docs for its resolution).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HistogramWire", into = "HistogramWire")]
pub struct ValueHistogram {
    positive: Histogram<u64>,
    negative: Option<Box<Histogram<u64>>>,
    count: u64,
    sum_steps: i128,
    sum_sq_steps: u128,
    min_steps: i64,
    max_steps: i64,
}

impl Default for ValueHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn new_buckets() -> Histogram<u64> {
    // Invariant: 3 significant digits is within hdrhistogram's accepted 0..=5.
    #[allow(clippy::expect_used)]
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is a valid precision")
}

/// Quantizes `v` to steps, or says why it cannot be recorded.
pub fn quantize(v: f64) -> Result<i64, RecordError> {
    if !v.is_finite() {
        return Err(RecordError::NonFinite);
    }
    if v.abs() > MAX_ABS_VALUE {
        return Err(RecordError::OutOfRange);
    }
    // |v / STEP| <= 1e15 < 2^53, so the cast is exact and cannot saturate.
    Ok((v / STEP).round() as i64)
}

/// Steps per unit; dividing by it (rather than multiplying by [`STEP`]) gives the closest
/// decimal, so 1005 steps read back as exactly `1.005`.
const STEPS_PER_UNIT: f64 = 1000.0;

fn to_value(steps: i64) -> f64 {
    steps as f64 / STEPS_PER_UNIT
}

impl ValueHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        ValueHistogram {
            positive: new_buckets(),
            negative: None,
            count: 0,
            sum_steps: 0,
            sum_sq_steps: 0,
            min_steps: i64::MAX,
            max_steps: i64::MIN,
        }
    }

    /// Records `n` observations of `v`.
    pub fn record_n(&mut self, v: f64, n: u64) -> Result<(), RecordError> {
        let q = quantize(v)?;
        if n == 0 {
            return Ok(());
        }
        let magnitude = q.unsigned_abs();
        let buckets = if q < 0 {
            self.negative.get_or_insert_with(|| Box::new(new_buckets()))
        } else {
            &mut self.positive
        };
        // Magnitudes are at most 1e15 < 2^53, inside the auto-resizing range.
        buckets
            .record_n(magnitude, n)
            .map_err(|_| RecordError::OutOfRange)?;
        self.count = self.count.saturating_add(n);
        self.sum_steps = self.sum_steps.saturating_add(i128::from(q) * i128::from(n));
        let sq = u128::from(magnitude) * u128::from(magnitude);
        self.sum_sq_steps = self
            .sum_sq_steps
            .saturating_add(sq.saturating_mul(u128::from(n)));
        self.min_steps = self.min_steps.min(q);
        self.max_steps = self.max_steps.max(q);
        Ok(())
    }

    /// Records one observation of `v`.
    pub fn record(&mut self, v: f64) -> Result<(), RecordError> {
        self.record_n(v, 1)
    }

    /// Adds `other` into `self`. Counts add exactly; the result does not depend on the order
    /// of merges.
    pub fn merge(&mut self, other: &ValueHistogram) -> Result<(), MergeError> {
        if other.count == 0 {
            return Ok(());
        }
        let count = self
            .count
            .checked_add(other.count)
            .ok_or(MergeError::Overflow)?;
        let sum = self
            .sum_steps
            .checked_add(other.sum_steps)
            .ok_or(MergeError::Overflow)?;
        self.positive
            .add(&other.positive)
            .map_err(|e| MergeError::Buckets(format!("{e:?}")))?;
        if let Some(neg) = &other.negative {
            self.negative
                .get_or_insert_with(|| Box::new(new_buckets()))
                .add(neg.as_ref())
                .map_err(|e| MergeError::Buckets(format!("{e:?}")))?;
        }
        self.count = count;
        self.sum_steps = sum;
        self.sum_sq_steps = self.sum_sq_steps.saturating_add(other.sum_sq_steps);
        self.min_steps = self.min_steps.min(other.min_steps);
        self.max_steps = self.max_steps.max(other.max_steps);
        Ok(())
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of the (quantized) observations.
    pub fn sum(&self) -> f64 {
        self.sum_steps as f64 / STEPS_PER_UNIT
    }

    /// Sum of squares of the (quantized) observations.
    pub fn sum_of_squares(&self) -> f64 {
        self.sum_sq_steps as f64 / (STEPS_PER_UNIT * STEPS_PER_UNIT)
    }

    /// Smallest observation, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then(|| to_value(self.min_steps))
    }

    /// Largest observation, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then(|| to_value(self.max_steps))
    }

    /// Mean, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum() / self.count as f64)
    }

    /// Population standard deviation from the exact moments, `None` when empty.
    pub fn stddev(&self) -> Option<f64> {
        let mean = self.mean()?;
        let var = self.sum_of_squares() / self.count as f64 - mean * mean;
        Some(var.max(0.0).sqrt())
    }

    /// The value at quantile `q` (0..=1) by nearest rank: the smallest recorded value whose
    /// rank is at least `ceil(q * count)`, reported as the middle of its bucket and clamped to
    /// the exact `[min, max]`. `None` when empty or when `q` is outside 0..=1 or NaN.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let neg_count = self.negative.as_ref().map_or(0, |h| h.len());
        let steps = if rank <= neg_count {
            // Negative values sort by descending magnitude: rank r among them is magnitude
            // rank (neg_count - r + 1) in ascending order.
            let neg = self.negative.as_deref()?;
            -(magnitude_at_rank(neg, neg_count - rank + 1) as f64)
        } else {
            magnitude_at_rank(&self.positive, rank - neg_count) as f64
        };
        let clamped = steps.clamp(self.min_steps as f64, self.max_steps as f64);
        Some(clamped / STEPS_PER_UNIT)
    }

    /// The threshold a bucket-granular "at or below `v`" count really uses: the highest value
    /// of the last bucket that lies entirely at or below `v` (for `v ≥ 0`). Every histogram
    /// shares one bucket layout, so this depends on `v` alone. `None` for negative or
    /// non-finite `v`.
    pub fn bucket_edge_at_or_below(v: f64) -> Option<f64> {
        let q = quantize(v).ok()?;
        if q < 0 {
            return None;
        }
        let layout = new_buckets();
        let q = q.unsigned_abs();
        let edge = if layout.highest_equivalent(q) == q {
            q
        } else {
            layout.lowest_equivalent(q).saturating_sub(1)
        };
        Some(to_value(edge as i64))
    }

    /// How many observations are at or below `v`, counting whole buckets: a bucket counts
    /// when its highest equivalent value is at or below `v`, so the answer never overstates.
    pub fn count_at_or_below(&self, v: f64) -> u64 {
        let Ok(limit) = quantize(v) else {
            return if v > 0.0 { self.count } else { 0 };
        };
        let neg_total = self.negative.as_ref().map_or(0, |h| h.len());
        if limit < 0 {
            let Some(neg) = self.negative.as_deref() else {
                return 0;
            };
            // Negative values at or below `limit` have magnitude >= |limit|; a bucket counts
            // only when its lowest equivalent magnitude is >= |limit|.
            let m = limit.unsigned_abs();
            return neg
                .iter_recorded()
                .filter(|it| neg.lowest_equivalent(it.value_iterated_to()) >= m)
                .map(|it| it.count_at_value())
                .sum();
        }
        let m = limit.unsigned_abs();
        let pos: u64 = self
            .positive
            .iter_recorded()
            .filter(|it| it.value_iterated_to() <= m)
            .map(|it| it.count_at_value())
            .sum();
        neg_total + pos
    }

    /// The non-empty buckets in ascending value order, in quantization steps: every recorded
    /// value `q` of a bucket satisfies `lo <= q <= hi`. Two histograms share one bucket layout,
    /// so equal `(lo, hi)` pairs are the same bucket on both sides. Drift statistics use it.
    pub fn bucket_steps(&self) -> Vec<StepBucket> {
        let mut out = Vec::new();
        if let Some(neg) = self.negative.as_deref() {
            let mut rev: Vec<StepBucket> = neg
                .iter_recorded()
                .map(|it| {
                    let hi = it.value_iterated_to();
                    let lo = neg.lowest_equivalent(hi);
                    StepBucket {
                        lo: -(hi as i64),
                        hi: -(lo as i64),
                        count: it.count_at_value(),
                    }
                })
                .collect();
            rev.reverse();
            out.extend(rev);
        }
        for it in self.positive.iter_recorded() {
            let hi = it.value_iterated_to();
            let lo = self.positive.lowest_equivalent(hi);
            out.push(StepBucket {
                lo: lo as i64,
                hi: hi as i64,
                count: it.count_at_value(),
            });
        }
        out
    }

    /// Smallest and largest observation in steps, `None` when empty.
    pub fn range_steps(&self) -> Option<(i64, i64)> {
        (self.count > 0).then_some((self.min_steps, self.max_steps))
    }
}

/// One non-empty bucket in quantization steps (see [`ValueHistogram::bucket_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepBucket {
    /// Lowest value of the bucket, steps.
    pub lo: i64,
    /// Highest value of the bucket, steps.
    pub hi: i64,
    /// Observations in it.
    pub count: u64,
}

/// Converts steps to the value's unit.
pub fn steps_to_value(steps: f64) -> f64 {
    steps / STEPS_PER_UNIT
}

fn magnitude_at_rank(h: &Histogram<u64>, rank: u64) -> u64 {
    let mut seen = 0u64;
    let mut last = 0u64;
    for it in h.iter_recorded() {
        seen += it.count_at_value();
        last = it.value_iterated_to();
        if seen >= rank {
            return h.median_equivalent(last);
        }
    }
    h.median_equivalent(last)
}

/// The serialized form of a [`ValueHistogram`] (see the module docs).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistogramWire {
    count: u64,
    sum_steps: i128,
    sum_sq_steps: u128,
    min_steps: i64,
    max_steps: i64,
    positive: Vec<u8>,
    negative: Vec<u8>,
}

fn encode_v2(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail, and V2 serialization only fails on I/O errors.
    if V2Serializer::new().serialize(h, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Bounds-checks an uncompressed HdrHistogram V2 blob before it reaches the deserializer:
/// the cookie, 3 significant digits, lowest trackable 1, highest trackable at most 2^53, a
/// payload length equal to what follows, and every varint well formed (no `i64::MIN` run,
/// which the deserializer would negate).
pub fn check_v2(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.len() < V2_HEADER_BYTES {
        return Err(DecodeError::Header("shorter than the 40-byte header"));
    }
    let u32_at =
        |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_be_bytes(b)
    };
    if u32_at(0) != V2_COOKIE {
        return Err(DecodeError::Header("not an uncompressed V2 histogram"));
    }
    let payload_len = u32_at(4) as usize;
    if payload_len != bytes.len() - V2_HEADER_BYTES {
        return Err(DecodeError::Header(
            "payload length does not match the bytes",
        ));
    }
    if u32_at(8) != 0 {
        return Err(DecodeError::Header("normalizing offset is not supported"));
    }
    if u32_at(12) != u32::from(SIGNIFICANT_DIGITS) {
        return Err(DecodeError::Header("precision is not 3 significant digits"));
    }
    if u64_at(16) != 1 {
        return Err(DecodeError::Header("lowest trackable value is not 1"));
    }
    let high = u64_at(24);
    if !(2..=MAX_TRACKABLE_STEPS).contains(&high) {
        return Err(DecodeError::Header("highest trackable value out of bounds"));
    }
    let mut i = V2_HEADER_BYTES;
    while i < bytes.len() {
        let mut value: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&b) = bytes.get(i) else {
                return Err(DecodeError::Payload("truncated varint".into()));
            };
            i += 1;
            if shift == 56 {
                value |= u64::from(b) << 56;
                break;
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
        if decoded == i64::MIN {
            return Err(DecodeError::Payload("zero run out of range".into()));
        }
    }
    Ok(())
}

fn decode_v2(bytes: &[u8]) -> Result<Histogram<u64>, DecodeError> {
    check_v2(bytes)?;
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| DecodeError::Payload(format!("{e:?}")))?;
    h.auto(true);
    Ok(h)
}

impl From<ValueHistogram> for HistogramWire {
    fn from(h: ValueHistogram) -> Self {
        HistogramWire {
            count: h.count,
            sum_steps: h.sum_steps,
            sum_sq_steps: h.sum_sq_steps,
            min_steps: h.min_steps,
            max_steps: h.max_steps,
            positive: encode_v2(&h.positive),
            negative: h.negative.as_deref().map(encode_v2).unwrap_or_default(),
        }
    }
}

impl TryFrom<HistogramWire> for ValueHistogram {
    type Error = DecodeError;

    fn try_from(w: HistogramWire) -> Result<Self, Self::Error> {
        let positive = decode_v2(&w.positive)?;
        let negative = if w.negative.is_empty() {
            None
        } else {
            Some(Box::new(decode_v2(&w.negative)?))
        };
        let bucket_count = positive.len() + negative.as_ref().map_or(0, |h| h.len());
        if bucket_count != w.count {
            return Err(DecodeError::Inconsistent("count differs from the buckets"));
        }
        if w.count > 0 && w.min_steps > w.max_steps {
            return Err(DecodeError::Inconsistent("min above max"));
        }
        Ok(ValueHistogram {
            positive,
            negative,
            count: w.count,
            sum_steps: w.sum_steps,
            sum_sq_steps: w.sum_sq_steps,
            min_steps: w.min_steps,
            max_steps: w.max_steps,
        })
    }
}

#[cfg(test)]
mod tests;
