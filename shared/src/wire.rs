//! Wire frames and their codec: a length prefix plus bincode, with a size limit.
//!
//! One QUIC bidirectional stream per connection carries frames both ways:
//!
//! ```text
//! frame   = length: u32 big-endian (1..=MAX_FRAME_BYTES) , body: bincode(Frame)
//! bincode = standard config (little-endian, varint integers), limit MAX_FRAME_BYTES
//! Frame   = Hello   { versions: [u16], agent_id, epoch: u64, agent_version }   agent → aggregator
//!         | Welcome { version: u16 }                                           aggregator → agent
//!         | Batch   { seq: u64, payload: bytes (bincode(Batch), see batch.rs) } agent → aggregator
//!         | Ack     { seq: u64, duplicate: bool }                              aggregator → agent
//!         | Reject  { seq: u64, reason }                                       aggregator → agent
//!         | Goodbye { reason }                                                 either way
//! ```
//!
//! Versioning: enum variants are encoded by index, so new variants are only ever appended,
//! and fields are never reordered. `Hello.versions` lists what the agent speaks; the aggregator
//! answers with the highest version both know, or `Goodbye`. `shared/tests/fixtures/` keeps
//! the encoded bytes of each version so a change to the format fails a test.

use serde::{Deserialize, Serialize};

use crate::batch::{Batch, DataMergeError, SeriesData};
use crate::histogram::fixed::Fixed;
use crate::histogram::{CheckedList, EncodedParts, ListCheck};
use crate::series::AgentId;

/// The protocol version this build's agent speaks: 3. Its frames encode as version 2's; what
/// changed is the epoch rule. A version 3 agent starts a new epoch at every start (its spool
/// cannot prove it was not restored from an older copy) and still sends the batches earlier
/// runs left behind, each under the epoch inside its payload; in versions 1 and 2 every batch
/// carried the `Hello`'s epoch, which lived in the spool. Version 2 batches carry today's
/// histogram (`SeriesData` variant 4); version 1 (0.1) carried the 0.1 histogram (variant 0).
pub const PROTOCOL_VERSION: u16 = 3;
/// The versions this build's aggregator accepts: 0.1 (1) and 0.2 (2) agents keep working.
pub const ACCEPTED_VERSIONS: [u16; 3] = [1, 2, 3];
/// The first version whose batches may carry an epoch other than the `Hello`'s.
pub const EPOCH_PER_START_VERSION: u16 = 3;
/// Largest frame body accepted, bytes.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Largest encoded batch accepted, bytes (it travels inside a frame).
pub const MAX_BATCH_BYTES: usize = MAX_FRAME_BYTES - 1024;

/// A protocol message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Frame {
    /// First frame of a connection, from the agent.
    Hello {
        /// Protocol versions the agent speaks.
        versions: Vec<u16>,
        /// The agent's id; must equal the identity in its certificate.
        agent_id: AgentId,
        /// The agent's epoch: in version 3, new at every start; before, the spool's.
        epoch: u64,
        /// The agent's build version.
        agent_version: String,
    },
    /// The aggregator accepts the session at `version`.
    Welcome {
        /// The negotiated version.
        version: u16,
    },
    /// One spooled batch.
    Batch {
        /// The batch's sequence number (also inside the payload).
        seq: u64,
        /// `bincode(Batch)`.
        payload: Vec<u8>,
    },
    /// The batch `seq` is durably merged (or was already: `duplicate`).
    Ack {
        /// Sequence number acknowledged.
        seq: u64,
        /// True when the batch had been merged before and was not merged again.
        duplicate: bool,
    },
    /// The batch `seq` can never be merged (corrupt, or not this agent's); the agent drops it.
    Reject {
        /// Sequence number rejected.
        seq: u64,
        /// Why, for the agent's log.
        reason: String,
    },
    /// The sender closes the session.
    Goodbye {
        /// Why, for the peer's log.
        reason: String,
    },
}

/// Why bytes could not be decoded as a frame or batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix is zero or above the limit; the connection must be closed.
    #[error("frame length {0} outside 1..={MAX_FRAME_BYTES}")]
    FrameLength(usize),
    /// The body is not a valid encoding; the connection (or the batch) must be dropped.
    #[error("undecodable {what}: {detail}")]
    Decode {
        /// `frame` or `batch`.
        what: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// Bytes followed a complete body.
    #[error("trailing bytes after {0}")]
    Trailing(&'static str),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding our own in-memory types into a Vec only fails past the size limit, which the
    // callers bound (batches are checked before they are framed).
    bincode::serde::encode_to_vec(value, config()).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, WireError> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| WireError::Decode {
            what,
            detail: e.to_string(),
        })?;
    if used != bytes.len() {
        return Err(WireError::Trailing(what));
    }
    Ok(value)
}

/// Encodes a batch for the spool and for `Frame::Batch.payload`.
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    encode(batch)
}

/// Decodes a batch, refusing more than [`MAX_BATCH_BYTES`] and any inconsistent histogram.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, WireError> {
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(WireError::FrameLength(bytes.len()));
    }
    decode(bytes, "batch")
}

/// The leading fields of an encoded [`Batch`], readable without decoding its series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    /// The agent that recorded it.
    pub agent_id: AgentId,
    /// The agent's spool epoch.
    pub epoch: u64,
    /// Sequence number.
    pub seq: u64,
    /// Start of the interval, Unix ms.
    pub interval_start_ms: i64,
    /// Length of the interval, ms.
    pub interval_ms: u64,
}

/// Decodes only the header fields of an encoded batch (they come first on the wire).
pub fn decode_batch_header(bytes: &[u8]) -> Result<BatchHeader, WireError> {
    let (header, _) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| WireError::Decode {
            what: "batch header",
            detail: e.to_string(),
        })?;
    Ok(header)
}

/// Encodes one series' data for storage (the aggregator's buckets). A histogram is written
/// straight from its counters, byte for byte what serde and bincode write (a test holds the
/// two together): storing merged buckets spent most of its time in the generic encoder.
pub fn encode_data(data: &SeriesData) -> Vec<u8> {
    match data {
        SeriesData::Histogram(h) => encode_histogram_data(h),
        _ => encode(data),
    }
}

/// `bincode(SeriesData::Histogram(h))` in the standard configuration, without serde.
fn encode_histogram_data(h: &crate::histogram::ValueHistogram) -> Vec<u8> {
    let v = h.wire_view();
    // Variant, counts, two fixed-point sums, min and max take at most 1 + 18 + 68 + 16 bytes;
    // most pairs take 2 or 3, and there are at most as many as counters or observations.
    let spans = v.positive.len() + v.negative.len();
    let pairs = spans.min(usize::try_from(v.count).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(128 + 3 * pairs);
    varint(&mut out, u128::from(HISTOGRAM_VARIANT));
    varint(&mut out, u128::from(v.count));
    varint(&mut out, u128::from(v.zero));
    for fixed in [v.sum, v.sum_sq] {
        let (lo, hi): (u128, i128) = fixed.into();
        varint(&mut out, lo);
        varint(&mut out, ((hi << 1) ^ (hi >> 127)) as u128);
    }
    out.extend_from_slice(&v.min.to_le_bytes());
    out.extend_from_slice(&v.max.to_le_bytes());
    for dense in [v.positive, v.negative] {
        // One walk: the pairs go after a one-byte length, widened once the count is known
        // when it is over 250 (a rare long list moves once).
        let at = out.len();
        out.push(0);
        let (mut prev, mut n) = (0, 0u64);
        dense.for_each_nonzero(|i, c| {
            varint(&mut out, u128::from(i - prev));
            varint(&mut out, u128::from(c));
            prev = i;
            n += 1;
        });
        if n <= 250 {
            out[at] = n as u8;
        } else {
            let mut len = Vec::with_capacity(9);
            varint(&mut len, u128::from(n));
            out.splice(at..=at, len);
        }
    }
    if out.len() > MAX_FRAME_BYTES {
        // What the generic encoder answers past its limit (no histogram comes near it).
        return Vec::new();
    }
    out
}

/// Appends `v` as bincode's standard configuration writes an unsigned integer: up to 250 in
/// one byte, else a tag (251..=254) and 2, 4, 8 or 16 little-endian bytes.
#[inline]
fn varint(out: &mut Vec<u8>, v: u128) {
    if v <= 250 {
        out.push(v as u8);
    } else if v <= u128::from(u16::MAX) {
        out.push(251);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u128::from(u32::MAX) {
        out.push(252);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else if v <= u128::from(u64::MAX) {
        out.push(253);
        out.extend_from_slice(&(v as u64).to_le_bytes());
    } else {
        out.push(254);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Decodes stored series data, with the same limits and histogram checks as the network.
pub fn decode_data(bytes: &[u8]) -> Result<SeriesData, WireError> {
    decode(bytes, "series data")
}

/// Adds stored series data into `acc`, a sum being built (a report's bin), as
/// `acc.merge(&decode_data(bytes)?)` would: the outer error is the decoder's, the inner one the
/// merge's (`acc` then unchanged). When both are histograms the stored one is added straight
/// from its bytes, without being built ([`crate::histogram::ValueHistogram`]'s checks all run
/// first); anything else, or anything that reading doubts, goes through the full decoder,
/// which decides.
pub fn merge_data_into(
    acc: &mut SeriesData,
    bytes: &[u8],
) -> Result<Result<(), DataMergeError>, WireError> {
    if let SeriesData::Histogram(h) = acc
        && let Some(Ok(merged)) = encoded_histogram(bytes).map(|parts| h.merge_encoded(parts))
    {
        return Ok(merged.map_err(DataMergeError::from));
    }
    let data = decode_data(bytes)?;
    Ok(acc.merge(&data))
}

/// Decodes stored series data that starts a sum: as [`decode_data`], with a histogram read
/// into an empty one the way [`merge_data_into`] reads it (equal to decoding it; its counters
/// may be wider, sized for the sum to come).
pub fn start_sum(bytes: &[u8]) -> Result<SeriesData, WireError> {
    let mut h = crate::histogram::ValueHistogram::new();
    if let Some(parts) = encoded_histogram(bytes)
        && let Ok(Ok(())) = h.merge_encoded(parts)
    {
        return Ok(SeriesData::Histogram(h));
    }
    decode_data(bytes)
}

/// The variant index `SeriesData::Histogram` is stored under (after 0.1's histogram, the
/// counter, the categorical and the classic buckets; batch.rs). A test pins it.
const HISTOGRAM_VARIANT: u32 = 4;

/// Reads stored `SeriesData::Histogram` bytes as bincode's standard configuration wrote them
/// (see the histogram module's wire form), leaving the bucket lists encoded; `None` for any
/// other variant and for anything malformed, which the full decoder then reports.
fn encoded_histogram(bytes: &[u8]) -> Option<EncodedParts<Pairs<'_>>> {
    if bytes.len() > MAX_FRAME_BYTES {
        return None;
    }
    let mut r = VarintReader(bytes);
    if r.unsigned(U32_TAG)? != u128::from(HISTOGRAM_VARIANT) {
        return None;
    }
    let count = r.u64()?;
    let zero = r.u64()?;
    let sum = r.fixed()?;
    let sum_sq = r.fixed()?;
    let min = r.f64()?;
    let max = r.f64()?;
    let positive = r.pairs()?;
    let negative = r.pairs()?;
    if !r.0.is_empty() {
        return None;
    }
    Some(EncodedParts {
        count,
        zero,
        sum,
        sum_sq,
        min,
        max,
        positive,
        negative,
    })
}

/// bincode's varint tags: a first byte up to 250 is the value; 251, 252, 253 and 254 announce
/// 2, 4, 8 and 16 little-endian bytes. A type accepts tags up to its own width.
const U32_TAG: u8 = 252;
const U64_TAG: u8 = 253;
const U128_TAG: u8 = 254;

/// Reads bincode's standard-configuration integers and floats off a slice.
struct VarintReader<'a>(&'a [u8]);

impl<'b> VarintReader<'b> {
    /// An unsigned varint whose tag is at most `max_tag`.
    #[inline]
    fn unsigned(&mut self, max_tag: u8) -> Option<u128> {
        let (&first, rest) = self.0.split_first()?;
        if first <= 250 {
            self.0 = rest;
            return Some(u128::from(first));
        }
        if first > max_tag {
            return None;
        }
        let n = 2usize << (first - 251);
        let (value, rest) = rest.split_at_checked(n)?;
        let mut le = [0u8; 16];
        le[..n].copy_from_slice(value);
        self.0 = rest;
        Some(u128::from_le_bytes(le))
    }

    fn u64(&mut self) -> Option<u64> {
        self.small(U64_TAG)
    }

    /// A `Fixed` as serde writes it: `(u128, i128)`, the signed half zigzag-encoded.
    fn fixed(&mut self) -> Option<Fixed> {
        let lo = self.unsigned(U128_TAG)?;
        let z = self.unsigned(U128_TAG)?;
        let hi = if z % 2 == 0 {
            (z / 2) as i128
        } else {
            !((z / 2) as i128)
        };
        Some(Fixed::from((lo, hi)))
    }

    fn f64(&mut self) -> Option<f64> {
        let (value, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(f64::from_le_bytes(*value))
    }

    /// A `Vec<(u32, u64)>` of bucket pairs: its length, then the pairs, read once here and
    /// checked (format and [`ListCheck`]); the pairs are returned unread, with the check.
    fn pairs(&mut self) -> Option<(Pairs<'b>, CheckedList)> {
        let len = self.u64()?;
        // Each pair takes at least two bytes.
        if len > (self.0.len() / 2) as u64 {
            return None;
        }
        let start = self.0;
        let mut check = ListCheck::default();
        for _ in 0..len {
            let delta = self.small(U32_TAG)?;
            let count = self.small(U64_TAG)?;
            check.push(u32::try_from(delta).ok()?, count).ok()?;
        }
        let used = start.len() - self.0.len();
        let pairs = Pairs {
            bytes: &start[..used],
            left: len,
        };
        Some((pairs, check.finish()))
    }

    /// An unsigned varint of at most 64 bits (`max_tag` at most [`U64_TAG`]), the one-byte
    /// form read inline.
    #[inline]
    fn small(&mut self, max_tag: u8) -> Option<u64> {
        match self.0.split_first() {
            Some((&b, rest)) if b <= 250 => {
                self.0 = rest;
                Some(u64::from(b))
            }
            _ => self.wide(max_tag),
        }
    }

    #[inline(never)]
    fn wide(&mut self, max_tag: u8) -> Option<u64> {
        self.unsigned(max_tag).map(|v| v as u64)
    }
}

/// An encoded list's `(index_delta, count)` pairs, already checked to read.
#[derive(Clone)]
pub(crate) struct Pairs<'a> {
    bytes: &'a [u8],
    left: u64,
}

impl Iterator for Pairs<'_> {
    type Item = (u32, u64);

    #[inline]
    fn next(&mut self) -> Option<(u32, u64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut r = VarintReader(self.bytes);
        let delta = r.small(U32_TAG)? as u32;
        let count = r.small(U64_TAG)?;
        self.bytes = r.0;
        Some((delta, count))
    }
}

/// Encodes a frame body (without its length prefix).
pub fn encode_frame_body(frame: &Frame) -> Vec<u8> {
    encode(frame)
}

/// Encodes a frame with its 4-byte length prefix.
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    let body = encode(frame);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Checks a length prefix; the caller then reads exactly that many body bytes.
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err(WireError::FrameLength(len));
    }
    Ok(len)
}

/// Decodes a frame body (without its length prefix).
pub fn decode_frame_body(body: &[u8]) -> Result<Frame, WireError> {
    if body.is_empty() || body.len() > MAX_FRAME_BYTES {
        return Err(WireError::FrameLength(body.len()));
    }
    decode(body, "frame")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_prefix() {
        let frame = Frame::Ack {
            seq: 7,
            duplicate: true,
        };
        let bytes = encode_frame(&frame);
        let len = frame_length([bytes[0], bytes[1], bytes[2], bytes[3]]).unwrap();
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(decode_frame_body(&bytes[4..]).unwrap(), frame);
    }

    #[test]
    fn bad_lengths_and_garbage_are_errors() {
        assert!(frame_length([0, 0, 0, 0]).is_err());
        assert!(frame_length(u32::MAX.to_be_bytes()).is_err());
        assert!(decode_frame_body(&[0xff, 0xff, 0xff]).is_err());
        // A Batch frame whose payload length claims far more than the limit.
        let mut evil = vec![2u8];
        evil.extend_from_slice(&[1]);
        evil.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode_frame_body(&evil).is_err());
        let body = encode_frame_body(&Frame::Welcome { version: 1 });
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(
            decode_frame_body(&trailing),
            Err(WireError::Trailing("frame"))
        );
    }

    use crate::histogram::ValueHistogram;
    use proptest::prelude::*;

    fn histogram(values: &[f64], heavy: &[(f64, u64)]) -> ValueHistogram {
        let mut h = ValueHistogram::new();
        for v in values {
            h.record(*v).unwrap();
        }
        for (v, n) in heavy {
            h.record_n(*v, *n).unwrap();
        }
        h
    }

    /// What the full decoder and a merge give: the reference for [`merge_data_into`].
    fn reference(
        acc: &SeriesData,
        bytes: &[u8],
    ) -> Result<(SeriesData, Result<(), DataMergeError>), WireError> {
        let data = decode_data(bytes)?;
        let mut acc = acc.clone();
        let merged = acc.merge(&data);
        Ok((acc, merged))
    }

    /// `merge_data_into` against the reference; whether the bytes took the fast path.
    fn check_against_reference(acc: &SeriesData, bytes: &[u8]) -> bool {
        let mut fast = acc.clone();
        let got = merge_data_into(&mut fast, bytes);
        match reference(acc, bytes) {
            Ok((want, merged)) => {
                assert_eq!(got, Ok(merged));
                assert_eq!(fast, want);
            }
            Err(e) => {
                assert_eq!(got, Err(e));
                assert_eq!(&fast, acc, "a refused value leaves the sum unchanged");
            }
        }
        // The fast path takes exactly the histograms the full decoder takes.
        let taken = match (acc, encoded_histogram(bytes)) {
            (SeriesData::Histogram(h), Some(parts)) => h.clone().merge_encoded(parts).is_ok(),
            _ => false,
        };
        let decodes_to_histogram = matches!(decode_data(bytes), Ok(SeriesData::Histogram(_)));
        if matches!(acc, SeriesData::Histogram(_)) {
            assert_eq!(taken, decodes_to_histogram, "{bytes:?}");
        }
        taken
    }

    /// `start_sum` against `decode_data`.
    fn check_start(bytes: &[u8]) {
        assert_eq!(start_sum(bytes), decode_data(bytes), "{bytes:?}");
    }

    #[test]
    fn the_histogram_variant_is_pinned() {
        let bytes = encode_data(&SeriesData::Histogram(ValueHistogram::new()));
        assert_eq!(u32::from(bytes[0]), HISTOGRAM_VARIANT);
        assert!(encoded_histogram(&bytes).is_some());
        assert!(encoded_histogram(&encode_data(&SeriesData::Counter(1.0))).is_none());
    }

    #[test]
    fn stored_data_adds_into_sums_as_decoding_would() {
        let acc = SeriesData::Histogram(histogram(&[0.25, -3.0, 0.0, 1e-9], &[]));
        let cases = [
            histogram(&[0.030, 0.031, 2.5, -0.5, 0.0], &[]),
            // Counts that need 2-, 4- and 8-byte varints; a negative sum (odd zigzag).
            histogram(&[], &[(0.2, 70_000), (-40.0, 5_000_000_000), (7.0, 300)]),
            ValueHistogram::new(),
        ];
        for h in cases {
            let bytes = encode_data(&SeriesData::Histogram(h));
            assert!(check_against_reference(&acc, &bytes));
            check_start(&bytes);
            // A non-histogram sum, and a histogram into a counter: the full decoder's way.
            assert!(!check_against_reference(&SeriesData::Counter(2.0), &bytes));
        }
        // Non-histogram data into a histogram sum: a kind mismatch, the sum unchanged.
        let counter = encode_data(&SeriesData::Counter(5.0));
        assert!(!check_against_reference(&acc, &counter));
        check_start(&counter);
        let mut fast = acc.clone();
        assert!(matches!(
            merge_data_into(&mut fast, &counter),
            Ok(Err(DataMergeError::KindMismatch { .. }))
        ));
        // A count written with a wider varint than it needs still reads, as bincode reads it.
        let one = encode_data(&SeriesData::Histogram(histogram(&[1.0], &[])));
        assert_eq!(one[1], 1, "count 1, one byte");
        let mut wide = vec![one[0], 251, 1, 0];
        wide.extend_from_slice(&one[2..]);
        assert!(check_against_reference(&acc, &wide));
        // Trailing bytes, a truncation, an oversized count: refused by both.
        let mut trailing = one.clone();
        trailing.push(0);
        assert!(!check_against_reference(&acc, &trailing));
        assert!(!check_against_reference(&acc, &one[..one.len() - 1]));
        // Counts past u64::MAX together: the merge refuses, the sum unchanged.
        let big = SeriesData::Histogram(histogram(&[], &[(1.0, u64::MAX - 1)]));
        assert!(check_against_reference(&big, &encode_data(&big)));
    }

    /// The bytes of a histogram through the generic encoder and through `HistogramWire` (what
    /// every earlier build wrote): the direct encoder must match both.
    fn check_encodings_agree(h: &ValueHistogram) {
        let direct = encode_data(&SeriesData::Histogram(h.clone()));
        let serde = encode(&SeriesData::Histogram(h.clone()));
        let mut wire = encode(&HISTOGRAM_VARIANT);
        wire.extend(encode(&crate::histogram::HistogramWire::from(h.clone())));
        assert_eq!(direct, serde);
        assert_eq!(direct, wire);
        assert_eq!(decode_data(&direct), Ok(SeriesData::Histogram(h.clone())));
    }

    #[test]
    fn the_direct_encoder_writes_what_serde_writes() {
        check_encodings_agree(&ValueHistogram::new());
        check_encodings_agree(&histogram(&[0.030, -2.5, 0.0, 1e-12, 3e11], &[]));
        // Every varint width: counts of 1, 2, 4, 8 bytes, sums past u64, negative sums.
        check_encodings_agree(&histogram(
            &[-1e12, 1e12],
            &[
                (0.2, 250),
                (0.3, 251),
                (0.4, 70_000),
                (-40.0, 5_000_000_000),
                (9e11, 1_000),
                (0.5, u64::MAX / 4),
            ],
        ));
        // Lists longer than 250 pairs (a wider length, written after the pairs), both signs.
        let wide: Vec<f64> = (1..900)
            .map(|i| f64::from(i) * 1.37 * f64::from(1 - 2 * (i % 2)))
            .collect();
        check_encodings_agree(&histogram(&wide, &[]));
    }

    proptest! {
        #[test]
        fn any_histogram_encodes_directly_as_serde_does(
            a in prop::collection::vec(prop_oneof![-1e12..1e12f64, -1e-3..1e-3f64, Just(0.0)], 0..200),
            heavy in prop::collection::vec((-1e6..1e6f64, 1..u64::MAX / 1024), 0..3),
        ) {
            check_encodings_agree(&histogram(&a, &heavy));
        }

        #[test]
        fn any_stored_histogram_adds_as_decoding_would(
            a in prop::collection::vec(-1e6..1e6f64, 0..60),
            b in prop::collection::vec(prop_oneof![-1e3..1e3f64, 1e-9..1e-6f64, Just(0.0)], 0..120),
            heavy in prop::collection::vec((0.001..100.0f64, 1..u64::MAX / 1024), 0..3),
        ) {
            let acc = SeriesData::Histogram(histogram(&a, &[]));
            let bytes = encode_data(&SeriesData::Histogram(histogram(&b, &heavy)));
            prop_assert!(check_against_reference(&acc, &bytes));
            check_start(&bytes);
        }

        #[test]
        fn damaged_bytes_are_refused_or_added_as_decoding_would(
            b in prop::collection::vec(prop_oneof![-1e3..1e3f64, Just(0.0)], 1..60),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
        ) {
            let acc = SeriesData::Histogram(histogram(&[0.5, 2.0], &[]));
            let mut bytes = encode_data(&SeriesData::Histogram(histogram(&b, &[])));
            for (at, byte, how) in edits {
                let i = at.index(bytes.len());
                match how {
                    0 => bytes[i] = byte,
                    1 => bytes.truncate(i),
                    _ => bytes.insert(i, byte),
                }
                if bytes.is_empty() {
                    bytes.push(byte);
                }
            }
            check_against_reference(&acc, &bytes);
            check_start(&bytes);
        }
    }
}
