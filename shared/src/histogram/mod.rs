//! The value histogram: a mergeable distribution of signed floats with a relative-error
//! guarantee at every magnitude.
//!
//! # Resolution
//!
//! Zero is counted exactly. Any other value goes by its magnitude `m = |v|` into a bucket of a
//! fixed log-linear layout, the same for every series on every machine: each octave
//! `[2^e, 2^(e+1))` is cut into [`BUCKETS_PER_OCTAVE`] (512) equal parts, read straight off the
//! float's bits (exponent and the top 9 mantissa bits), for `e` from −40 to 39. Buckets are
//! closed above, `(lo, hi]` (like Prometheus' `le`), so a threshold that is an edge (500 ms,
//! 0.25 s, any power of two) counts values equal to it. A bucket's width is at most 2^-9 of
//! its lower edge, and a quantile is reported as the value `2·lo·hi/(lo+hi)`, which is within
//! `(hi − lo)/(hi + lo)` < 0.0977 % of any value in the bucket: 3 significant digits for every
//! magnitude from 2^-40 (9.1e-13) to [`MAX_ABS_VALUE`] (1e12), in any unit. Magnitudes at or
//! below 2^-40 share one bucket (their quantiles are clamped to the exact min and max);
//! magnitudes above 1e12 are refused. Negative values are kept the same way by magnitude.
//!
//! Beside the buckets each histogram carries the exact count, min and max, and the sum and
//! sum of squares as exact fixed-point numbers ([`fixed::Fixed`], binary point at 2^-128), so
//! merges are associative and commutative bit for bit and moments are exact after any merge.
//! Quantiles are clamped to `[min, max]`, so the 0 and 1 quantiles are exact.
//!
//! Memory follows the spread of a series' values, not the layout's range: counters cover only
//! the indexes between the lowest and highest bucket seen, one byte each until a bucket passes
//! 255 ([`dense`]). A latency series spanning three decades holds ~5 100 counters (5 KiB).
//!
//! # Wire form (`HistogramWire`, protocol version 2)
//!
//! ```text
//! HistogramWire { count: u64, zero: u64, sum: (u128, i128), sum_sq: (u128, i128),
//!                 min: f64, max: f64,
//!                 positive: [(index_delta: u32, count: u64)],   non-empty buckets, ascending
//!                 negative: [(index_delta: u32, count: u64)] }  index_delta: from the previous
//!                                                               bucket (the first: its index)
//! ```
//!
//! Decoding checks every index against the layout, that deltas ascend, that counts add up to
//! `count`, and that min and max are finite and ordered, before anything is allocated from it.
//! The 0.1 form (HdrHistogram over 0.001-unit steps) still decodes through [`v1`].

pub mod dense;
pub mod fixed;
pub mod v1;

use serde::{Deserialize, Serialize};

use dense::Dense;
use fixed::Fixed;

/// Buckets per octave: 2^9, from the top 9 mantissa bits.
pub const BUCKETS_PER_OCTAVE: u32 = 1 << SUB_BITS;
const SUB_BITS: u32 = 9;
const SHIFT: u32 = 52 - SUB_BITS;
/// Lowest octave with its own buckets: magnitudes above 2^-40.
const MIN_OCTAVE: i32 = -40;
/// The raw bit index of the first bucket above 2^-40.
const BASE: u64 = ((1023 + MIN_OCTAVE) as u64) << SUB_BITS;
/// Largest magnitude accepted, in the value's unit (10^12: a 31-year duration in ms).
pub const MAX_ABS_VALUE: f64 = 1e12;
/// Highest bucket index (that of 1e12); index 0 holds magnitudes at or below 2^-40.
pub const MAX_INDEX: u32 = 80 * BUCKETS_PER_OCTAVE;
/// The largest relative error of a reported quantile for magnitudes above 2^-40.
pub const MAX_RELATIVE_ERROR: f64 = 1.0 / (2.0 * BUCKETS_PER_OCTAVE as f64 + 1.0);

/// Why a value could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The value is NaN or infinite; the caller counts it as malformed.
    #[error("value is not finite")]
    NonFinite,
    /// `|v|` exceeds [`MAX_ABS_VALUE`], or the totals would overflow; the caller counts it as
    /// malformed.
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
    /// The buckets could not be added.
    #[error("histogram buckets could not be added: {0}")]
    Buckets(String),
}

/// Why histogram bytes from the network or disk were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A 0.1 V2 header is short, compressed, or declares sizes beyond Pitot's bounds.
    #[error("histogram header rejected: {0}")]
    Header(&'static str),
    /// The payload is malformed.
    #[error("histogram payload rejected: {0}")]
    Payload(String),
    /// The summary fields contradict the buckets (count, min, max).
    #[error("histogram summary inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// The bucket index of a magnitude `0 < m ≤ MAX_ABS_VALUE`.
#[inline]
fn index_of(m: f64) -> u32 {
    // For positive floats the bit pattern is monotone in the value; `- 1` makes buckets
    // closed above, so an edge belongs to the bucket below it.
    let raw = (m.to_bits() - 1) >> SHIFT;
    if raw < BASE {
        0
    } else {
        (raw - BASE + 1) as u32
    }
}

/// The magnitudes `(lo, hi]` bucket `index` holds.
fn bounds_of(index: u32) -> (f64, f64) {
    if index == 0 {
        return (0.0, f64::from_bits(BASE << SHIFT));
    }
    let raw = u64::from(index) - 1 + BASE;
    (
        f64::from_bits(raw << SHIFT),
        f64::from_bits((raw + 1) << SHIFT),
    )
}

/// A mergeable distribution of signed floats (see the module docs for its resolution).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "HistogramWire")]
pub struct ValueHistogram {
    positive: Dense,
    negative: Dense,
    zero: u64,
    count: u64,
    sum: Fixed,
    sum_sq: Fixed,
    min: f64,
    max: f64,
}

impl Default for ValueHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks that `v` can be recorded.
fn check(v: f64) -> Result<(), RecordError> {
    if !v.is_finite() {
        return Err(RecordError::NonFinite);
    }
    if v.abs() > MAX_ABS_VALUE {
        return Err(RecordError::OutOfRange);
    }
    Ok(())
}

impl ValueHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        ValueHistogram {
            positive: Dense::default(),
            negative: Dense::default(),
            zero: 0,
            count: 0,
            sum: Fixed::ZERO,
            sum_sq: Fixed::ZERO,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Records `n` observations of `v`.
    pub fn record_n(&mut self, v: f64, n: u64) -> Result<(), RecordError> {
        check(v)?;
        if n == 0 {
            return Ok(());
        }
        let out_of_range = RecordError::OutOfRange;
        let count = self.count.checked_add(n).ok_or(out_of_range)?;
        // |v| ≤ 1e12 and v² ≤ 1e24 convert exactly (fixed.rs).
        let (mut sum, mut sum_sq) = (self.sum, self.sum_sq);
        if n == 1 {
            if !sum.add_f64(v) || !sum_sq.add_f64(v * v) {
                return Err(out_of_range);
            }
        } else {
            let dv = Fixed::from_f64(v).and_then(|f| f.checked_mul(n));
            let dsq = Fixed::from_f64(v * v).and_then(|f| f.checked_mul(n));
            sum = dv.and_then(|d| sum.checked_add(d)).ok_or(out_of_range)?;
            sum_sq = dsq
                .and_then(|d| sum_sq.checked_add(d))
                .ok_or(out_of_range)?;
        }
        if v == 0.0 {
            self.zero += n;
        } else {
            let buckets = if v < 0.0 {
                &mut self.negative
            } else {
                &mut self.positive
            };
            if !buckets.add(index_of(v.abs()), n, MAX_INDEX) {
                return Err(out_of_range);
            }
        }
        self.count = count;
        self.sum = sum;
        self.sum_sq = sum_sq;
        // -0.0 is recorded as 0.
        let v = if v == 0.0 { 0.0 } else { v };
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        Ok(())
    }

    /// Records one observation of `v`.
    #[inline]
    pub fn record(&mut self, v: f64) -> Result<(), RecordError> {
        self.record_n(v, 1)
    }

    /// Adds `other` into `self`. Counts add exactly; the result does not depend on the order
    /// of merges. On error `self` is unchanged.
    pub fn merge(&mut self, other: &ValueHistogram) -> Result<(), MergeError> {
        if other.count == 0 {
            return Ok(());
        }
        let count = self
            .count
            .checked_add(other.count)
            .ok_or(MergeError::Overflow)?;
        let sum = self
            .sum
            .checked_add(other.sum)
            .ok_or(MergeError::Overflow)?;
        let sum_sq = self
            .sum_sq
            .checked_add(other.sum_sq)
            .ok_or(MergeError::Overflow)?;
        let mut positive = std::mem::take(&mut self.positive);
        let mut negative = std::mem::take(&mut self.negative);
        let ok = positive.merge(&other.positive, MAX_INDEX)
            && negative.merge(&other.negative, MAX_INDEX);
        self.positive = positive;
        self.negative = negative;
        if !ok {
            return Err(MergeError::Overflow);
        }
        self.zero += other.zero;
        self.count = count;
        self.sum = sum;
        self.sum_sq = sum_sq;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        Ok(())
    }

    /// Replaces the summary fields (used when reading 0.1 data, whose sums and extremes were
    /// kept apart from its buckets).
    pub(crate) fn set_summary(&mut self, count: u64, sum: f64, sum_sq: f64, min: f64, max: f64) {
        self.count = count;
        self.sum = Fixed::from_f64(sum).unwrap_or(self.sum);
        self.sum_sq = Fixed::from_f64(sum_sq).unwrap_or(self.sum_sq);
        self.min = min;
        self.max = max;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of the observations (exact, rounded once to `f64`).
    pub fn sum(&self) -> f64 {
        self.sum.to_f64()
    }

    /// Sum of squares of the observations (each square rounded to `f64`, summed exactly).
    pub fn sum_of_squares(&self) -> f64 {
        self.sum_sq.to_f64()
    }

    /// Smallest observation, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest observation, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
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

    /// Bytes of bucket counters held in memory.
    pub fn heap_bytes(&self) -> usize {
        self.positive.heap_bytes() + self.negative.heap_bytes()
    }

    /// The value at quantile `q` (0..=1) by nearest rank: the observation of rank
    /// `ceil(q * count)`, reported as its bucket's representative (within 0.0977 %) and clamped
    /// to the exact `[min, max]`. `None` when empty or when `q` is outside 0..=1 or NaN.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        self.value_at_rank((q * self.count as f64).ceil() as u64)
    }

    /// The observation of `rank` (1 = the smallest; clamped to `1..=count`), as
    /// [`ValueHistogram::quantile`] reports it. `None` when empty.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = rank.clamp(1, self.count);
        if rank == 1 {
            return Some(self.min);
        }
        if rank == self.count {
            return Some(self.max);
        }
        let neg_count = self.negative.total();
        if rank <= neg_count {
            // Negative values sort by descending magnitude.
            let mut seen = 0;
            for (i, c) in self.negative.iter().rev() {
                seen += c;
                if seen >= rank {
                    return Some(-self.representative(i, -self.max, -self.min));
                }
            }
        } else if rank <= neg_count + self.zero {
            return Some(0.0);
        } else {
            let rank = rank - neg_count - self.zero;
            let mut seen = 0;
            for (i, c) in self.positive.iter() {
                seen += c;
                if seen >= rank {
                    return Some(self.representative(i, self.min, self.max));
                }
            }
        }
        Some(self.max)
    }

    /// The magnitude bucket `index`'s observations are reported as, given the magnitudes
    /// `[lo_m, hi_m]` the series' exact min and max allow on that side: the harmonic mean of
    /// the bucket's edges clipped to them, within `MAX_RELATIVE_ERROR` of every value it can
    /// hold.
    fn representative(&self, index: u32, lo_m: f64, hi_m: f64) -> f64 {
        let (lo, hi) = bounds_of(index);
        let (a, b) = (lo.max(lo_m), hi.min(hi_m));
        if a >= b {
            return b.max(0.0);
        }
        if a <= 0.0 {
            return b;
        }
        2.0 * a * b / (a + b)
    }

    /// The threshold a bucket-granular "at or below `v`" count really uses: the highest bucket
    /// edge at or below `v` (`v` itself when it is an edge, as every power of two and 500 are).
    /// Every histogram shares one layout, so this depends on `v` alone. `None` for negative or
    /// non-finite `v`.
    pub fn bucket_edge_at_or_below(v: f64) -> Option<f64> {
        check(v).ok()?;
        if v < 0.0 {
            return None;
        }
        if v == 0.0 {
            return Some(0.0);
        }
        let (lo, hi) = bounds_of(index_of(v));
        Some(if hi == v { hi } else { lo })
    }

    /// How many observations are at or below `v`, counting whole buckets: a bucket counts
    /// when every value it can hold is at or below `v`, so the answer never overstates.
    pub fn count_at_or_below(&self, v: f64) -> u64 {
        if check(v).is_err() {
            return if v > 0.0 { self.count } else { 0 };
        }
        if v < 0.0 {
            // A negative bucket holds [-hi, -lo): all at or below v when lo ≥ |v|.
            let m = -v;
            return self
                .negative
                .iter()
                .filter(|(i, _)| bounds_of(*i).0 >= m)
                .map(|(_, c)| c)
                .sum();
        }
        // Buckets are closed above: every bucket under the one holding `v` is at or below it,
        // and that one too when `v` is its upper edge. Its counters below are summed as one
        // slice (an SLO's deltas ask this of every matching series in every batch).
        let below = if v == 0.0 {
            0
        } else {
            let holding = index_of(v);
            let end = if bounds_of(holding).1 <= v {
                holding + 1
            } else {
                holding
            };
            self.positive.sum_below(end)
        };
        self.negative.total() + self.zero + below
    }

    /// The non-empty buckets in ascending value order. Two histograms share one layout, so
    /// equal `key`s are the same bucket on both sides. Drift statistics use it.
    pub fn buckets(&self) -> Vec<ValueBucket> {
        let mut out = Vec::new();
        for (i, c) in self.negative.iter().rev() {
            let (lo, hi) = bounds_of(i);
            out.push(ValueBucket {
                key: -(i as i64) - 1,
                lo: -hi,
                hi: -lo,
                count: c,
            });
        }
        if self.zero > 0 {
            out.push(ValueBucket {
                key: 0,
                lo: 0.0,
                hi: 0.0,
                count: self.zero,
            });
        }
        self.positive.for_each_nonzero(|i, c| {
            let (lo, hi) = bounds_of(i);
            out.push(ValueBucket {
                key: i as i64 + 1,
                lo,
                hi,
                count: c,
            });
        });
        out
    }

    /// Smallest and largest observation, `None` when empty.
    pub fn range(&self) -> Option<(f64, f64)> {
        (self.count > 0).then_some((self.min, self.max))
    }
}

/// One non-empty bucket (see [`ValueHistogram::buckets`]): every value it holds lies in
/// `[lo, hi]` (open at one end; the zero bucket has `lo == hi == 0`, its one value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueBucket {
    /// Orders buckets by value and names the same bucket in every histogram.
    pub key: i64,
    /// Lowest value the bucket can hold (exclusive for positive buckets).
    pub lo: f64,
    /// Highest value the bucket can hold (exclusive for negative buckets).
    pub hi: f64,
    /// Observations in it.
    pub count: u64,
}

/// The serialized form of a [`ValueHistogram`] (see the module docs).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistogramWire {
    count: u64,
    zero: u64,
    sum: Fixed,
    sum_sq: Fixed,
    min: f64,
    max: f64,
    positive: Vec<(u32, u64)>,
    negative: Vec<(u32, u64)>,
}

fn encode_buckets(d: &Dense) -> Vec<(u32, u64)> {
    let mut prev = 0;
    let mut out = Vec::new();
    d.for_each_nonzero(|i, c| {
        out.push((i - prev, c));
        prev = i;
    });
    out
}

/// What checking one encoded bucket list found: its span, largest count and total.
#[derive(Clone, Copy)]
struct ListScan {
    first: u32,
    last: u32,
    largest: u64,
    total: u64,
}

/// Checks an encoded bucket list pair by pair, `(index_delta, count)`, as decoding does:
/// every index in the layout, ascending, no empty bucket, a total that fits. The wire module
/// runs it while it reads a stored list, so the bytes are walked once.
#[derive(Default)]
pub(crate) struct ListCheck {
    index: u32,
    started: bool,
    first: u32,
    largest: u64,
    total: u64,
}

/// A bucket list that passed [`ListCheck`]: only a check makes one.
#[derive(Clone, Copy)]
pub(crate) struct CheckedList(Option<ListScan>);

impl ListCheck {
    /// Checks the next pair.
    #[inline]
    pub(crate) fn push(&mut self, delta: u32, count: u64) -> Result<(), DecodeError> {
        if self.started && delta == 0 {
            return Err(list_error("bucket indexes do not ascend"));
        }
        self.index = match self.index.checked_add(delta) {
            Some(i) if i <= MAX_INDEX => i,
            _ => return Err(list_error("bucket index out of range")),
        };
        if count == 0 {
            return Err(list_error("empty bucket listed"));
        }
        if !self.started {
            self.started = true;
            self.first = self.index;
        }
        self.largest = self.largest.max(count);
        self.total = match self.total.checked_add(count) {
            Some(t) => t,
            None => return Err(DecodeError::Inconsistent("bucket counts overflow")),
        };
        Ok(())
    }

    /// What the pairs checked so far hold.
    pub(crate) fn finish(self) -> CheckedList {
        CheckedList(self.started.then_some(ListScan {
            first: self.first,
            last: self.index,
            largest: self.largest,
            total: self.total,
        }))
    }
}

#[cold]
fn list_error(what: &str) -> DecodeError {
    DecodeError::Payload(what.into())
}

/// Checks an encoded bucket list (see [`ListCheck`]). `None` for an empty list.
fn scan_buckets(pairs: impl Iterator<Item = (u32, u64)>) -> Result<Option<ListScan>, DecodeError> {
    let mut check = ListCheck::default();
    for (delta, count) in pairs {
        check.push(delta, count)?;
    }
    Ok(check.finish().0)
}

/// `(index, count)` from checked `(index_delta, count)` pairs.
fn absolute(pairs: impl Iterator<Item = (u32, u64)>) -> impl Iterator<Item = (u32, u64)> {
    let mut index: u32 = 0;
    pairs.map(move |(delta, count)| {
        index = index.wrapping_add(delta);
        (index, count)
    })
}

/// The counters of a checked bucket list (`scan` is what [`scan_buckets`] found in it), sized
/// once from its span.
fn decode_buckets(pairs: &[(u32, u64)], scan: Option<ListScan>) -> Dense {
    let Some(scan) = scan else {
        return Dense::default();
    };
    Dense::from_ascending(
        scan.first,
        scan.last,
        scan.largest,
        absolute(pairs.iter().copied()),
    )
}

/// Checks the summary against the buckets' totals: `(min, max)` as a histogram holds them.
fn check_summary(
    count: u64,
    zero: u64,
    lists: [Option<ListScan>; 2],
    min: f64,
    max: f64,
) -> Result<(f64, f64), DecodeError> {
    let total = lists
        .iter()
        .flatten()
        .try_fold(zero, |t, s| t.checked_add(s.total));
    if total != Some(count) {
        return Err(DecodeError::Inconsistent("count differs from the buckets"));
    }
    if count == 0 {
        return Ok((f64::INFINITY, f64::NEG_INFINITY));
    }
    if check(min).is_err() || check(max).is_err() {
        return Err(DecodeError::Inconsistent("min or max out of range"));
    }
    if min > max {
        return Err(DecodeError::Inconsistent("min above max"));
    }
    Ok((min, max))
}

/// A histogram's fields in [`HistogramWire`]'s order, with its two bucket lists as `L`: encoded
/// and already checked when read ([`EncodedParts`]), borrowed counters when written
/// ([`ValueHistogram::wire_view`]). The wire module reads and writes the bytes.
pub(crate) struct WireParts<L> {
    pub(crate) count: u64,
    pub(crate) zero: u64,
    pub(crate) sum: Fixed,
    pub(crate) sum_sq: Fixed,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) positive: L,
    pub(crate) negative: L,
}

/// A histogram as stored or sent, its bucket lists still encoded and already checked: what
/// [`ValueHistogram::merge_encoded`] adds into a sum without building the histogram. `P` walks
/// one list's `(index_delta, count)` pairs, the ones its [`CheckedList`] checked.
pub(crate) type EncodedParts<P> = WireParts<(P, CheckedList)>;

impl ValueHistogram {
    /// Adds an encoded histogram into `self` as decoding it and merging would, without
    /// building it: the summary's checks (outer error; the lists were checked as they were
    /// read), then the same merge (inner error, `self` unchanged). A report's reads sum
    /// thousands of stored histograms per series; building each was most of their time.
    pub(crate) fn merge_encoded<P>(
        &mut self,
        w: EncodedParts<P>,
    ) -> Result<Result<(), MergeError>, DecodeError>
    where
        P: Iterator<Item = (u32, u64)>,
    {
        let (positive, negative) = (w.positive.1.0, w.negative.1.0);
        let (min, max) = check_summary(w.count, w.zero, [positive, negative], w.min, w.max)?;
        if w.count == 0 {
            return Ok(Ok(()));
        }
        let (Some(count), Some(sum), Some(sum_sq)) = (
            self.count.checked_add(w.count),
            self.sum.checked_add(w.sum),
            self.sum_sq.checked_add(w.sum_sq),
        ) else {
            return Ok(Err(MergeError::Overflow));
        };
        // Each list's total is at most `w.count`, and the counts' sum fits: no counter can
        // overflow, so the adds below cannot fail part-way.
        for (dense, scan, pairs) in [
            (&mut self.positive, positive, w.positive.0),
            (&mut self.negative, negative, w.negative.0),
        ] {
            if let Some(s) = scan
                && !dense.add_pairs(s.first, s.last, s.total, absolute(pairs), MAX_INDEX)
            {
                return Ok(Err(MergeError::Overflow));
            }
        }
        self.zero += w.zero;
        self.count = count;
        self.sum = sum;
        self.sum_sq = sum_sq;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
        Ok(Ok(()))
    }
}

/// Written as [`HistogramWire`] is, field for field, from borrowed buckets: encoding used to
/// clone the histogram and build both pair lists first, most of the cost of storing a merged
/// bucket (perf, the many-agents bench). A test holds the bytes to `HistogramWire`'s.
impl Serialize for ValueHistogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = s.serialize_struct("HistogramWire", 8)?;
        st.serialize_field("count", &self.count)?;
        st.serialize_field("zero", &self.zero)?;
        st.serialize_field("sum", &self.sum)?;
        st.serialize_field("sum_sq", &self.sum_sq)?;
        st.serialize_field("min", &self.min)?;
        st.serialize_field("max", &self.max)?;
        st.serialize_field("positive", &PairList(&self.positive))?;
        st.serialize_field("negative", &PairList(&self.negative))?;
        st.end()
    }
}

/// One bucket list as `HistogramWire` holds it, `(index_delta, count)`, walked from the dense
/// counters.
struct PairList<'a>(&'a Dense);

impl Serialize for PairList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut seq = s.serialize_seq(Some(self.0.nonzero()))?;
        let (mut prev, mut written) = (0, Ok(()));
        self.0.for_each_nonzero(|i, c| {
            if written.is_ok() {
                written = seq.serialize_element(&(i - prev, c));
            }
            prev = i;
        });
        written?;
        seq.end()
    }
}

impl ValueHistogram {
    /// The fields as the wire form writes them, for `wire::encode_data`.
    pub(crate) fn wire_view(&self) -> WireParts<&Dense> {
        WireParts {
            count: self.count,
            zero: self.zero,
            sum: self.sum,
            sum_sq: self.sum_sq,
            min: self.min,
            max: self.max,
            positive: &self.positive,
            negative: &self.negative,
        }
    }
}

impl From<ValueHistogram> for HistogramWire {
    fn from(h: ValueHistogram) -> Self {
        HistogramWire {
            count: h.count,
            zero: h.zero,
            sum: h.sum,
            sum_sq: h.sum_sq,
            min: h.min,
            max: h.max,
            positive: encode_buckets(&h.positive),
            negative: encode_buckets(&h.negative),
        }
    }
}

impl TryFrom<HistogramWire> for ValueHistogram {
    type Error = DecodeError;

    fn try_from(w: HistogramWire) -> Result<Self, Self::Error> {
        let scans = [
            scan_buckets(w.positive.iter().copied())?,
            scan_buckets(w.negative.iter().copied())?,
        ];
        let (min, max) = check_summary(w.count, w.zero, scans, w.min, w.max)?;
        let positive = decode_buckets(&w.positive, scans[0]);
        let negative = decode_buckets(&w.negative, scans[1]);
        Ok(ValueHistogram {
            positive,
            negative,
            zero: w.zero,
            count: w.count,
            sum: w.sum,
            sum_sq: w.sum_sq,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests;
