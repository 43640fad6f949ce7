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

use crate::batch::{Batch, SeriesData};
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

/// Encodes one series' data for storage (the aggregator's buckets).
pub fn encode_data(data: &SeriesData) -> Vec<u8> {
    encode(data)
}

/// Decodes stored series data, with the same limits and histogram checks as the network.
pub fn decode_data(bytes: &[u8]) -> Result<SeriesData, WireError> {
    decode(bytes, "series data")
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
}
