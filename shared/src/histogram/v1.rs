//! The 0.1 value histogram ("v1"), kept to read what 0.1 wrote and to measure against.
//!
//! Pitot 0.1 quantized a value `v` to integer steps of 0.001 of its unit (`q = round(v /
//! 0.001)`) and kept the magnitudes in two HdrHistograms (values ≥ 0 and < 0) at 3 significant
//! digits, with exact count, sum and sum of squares in steps, min and max. So sub-unit values
//! lost their precision (0.00535 s read back as 0.005 s; 1e-4 as 0). Spools and stores written
//! by 0.1 hold this form (`SeriesData` variant 0); [`V1Histogram::to_current`] turns it into
//! today's [`super::ValueHistogram`] at the resolution it was recorded with.
//!
//! Wire form (`HistogramWire`):
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

use super::{DecodeError, MergeError, RecordError};

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

/// The 0.1 histogram (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HistogramWire", into = "HistogramWire")]
pub struct V1Histogram {
    positive: Histogram<u64>,
    negative: Option<Box<Histogram<u64>>>,
    count: u64,
    sum_steps: i128,
    sum_sq_steps: u128,
    min_steps: i64,
    max_steps: i64,
}

impl Default for V1Histogram {
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

impl V1Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        V1Histogram {
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
    pub fn merge(&mut self, other: &V1Histogram) -> Result<(), MergeError> {
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

    /// The value at quantile `q` (0..=1) by nearest rank, the middle of its bucket clamped to
    /// `[min, max]`, as 0.1 answered it. `None` when empty or `q` is outside 0..=1.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let neg_count = self.negative.as_ref().map_or(0, |h| h.len());
        let steps = if rank <= neg_count {
            let neg = self.negative.as_deref()?;
            -(magnitude_at_rank(neg, neg_count - rank + 1) as f64)
        } else {
            magnitude_at_rank(&self.positive, rank - neg_count) as f64
        };
        let clamped = steps.clamp(self.min_steps as f64, self.max_steps as f64);
        Some(clamped / STEPS_PER_UNIT)
    }

    /// Bytes of bucket counters held in memory (HdrHistogram keeps one `u64` per slot from 0
    /// to the largest value seen).
    pub fn heap_bytes(&self) -> usize {
        let slots = self.positive.distinct_values()
            + self.negative.as_ref().map_or(0, |h| h.distinct_values());
        slots * std::mem::size_of::<u64>()
    }

    /// Today's histogram holding the same observations: each 0.1 bucket's count at the value
    /// 0.1 would have reported for it (its middle), with the exact count, min and max, and the
    /// sums as 0.1 kept them. Precision stays what 0.1 recorded.
    pub fn to_current(&self) -> super::ValueHistogram {
        let mut out = super::ValueHistogram::new();
        if self.count == 0 {
            return out;
        }
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        if let Some(neg) = self.negative.as_deref() {
            for it in neg.iter_recorded() {
                let m = neg.median_equivalent(it.value_iterated_to());
                buckets.push((-(m as f64) / STEPS_PER_UNIT, it.count_at_value()));
            }
        }
        for it in self.positive.iter_recorded() {
            let m = self.positive.median_equivalent(it.value_iterated_to());
            buckets.push((m as f64 / STEPS_PER_UNIT, it.count_at_value()));
        }
        let (min, max) = (to_value(self.min_steps), to_value(self.max_steps));
        for (v, n) in buckets {
            // Magnitudes were bounded by 0.1's own limit, inside today's range.
            let _in_range = out.record_n(v.clamp(min, max), n).is_ok();
        }
        out.set_summary(
            self.count,
            self.sum_steps as f64 / STEPS_PER_UNIT,
            self.sum_sq_steps as f64 / (STEPS_PER_UNIT * STEPS_PER_UNIT),
            min,
            max,
        );
        out
    }
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

/// The serialized form of a [`V1Histogram`] (see the module docs).
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

impl HistogramWire {
    /// The positive side's HdrHistogram V2 bytes.
    pub fn positive(&self) -> &[u8] {
        &self.positive
    }
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

impl From<V1Histogram> for HistogramWire {
    fn from(h: V1Histogram) -> Self {
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

impl TryFrom<HistogramWire> for V1Histogram {
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
        Ok(V1Histogram {
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
