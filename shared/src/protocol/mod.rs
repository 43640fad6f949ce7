//! Sans-IO protocol sessions for both ends of the uplink, in quinn-proto's shape.
//!
//! The sessions own every rule of the conversation: the hello and version negotiation, batch
//! sequence numbers, acks in order, retransmission after a reconnect, back-off deadlines, and
//! refusing frames that do not belong. They never touch a socket or a clock: the driver
//! (`agent/src/uplink.rs`, `aggregator/src/server.rs`) feeds them frames and `now`, then
//! drains [`AgentSession::poll_transmit`] and the events.
//!
//! Delivery is at-least-once from the agent and exactly-once at the aggregator: the agent
//! re-sends every unacknowledged batch after a reconnect, and the aggregator acknowledges a
//! batch it already merged (`duplicate: true`) without merging it again.

mod agent;
mod aggregator;

/// ALPN protocol id of the Pitot uplink, offered by the agent and required by the aggregator
/// (one definition: if the two differed, every handshake would fail).
pub const ALPN: &[u8] = b"pitot/1";

pub use agent::{AgentSession, AgentSessionConfig, AgentState, SessionEvent, SpoolId};
pub use aggregator::{AggregatorEvent, AggregatorSession, VerifiedBatch};

/// A violation of the protocol by the peer. The driver closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The peer speaks no version we know; upgrade one side (see docs/PROTOCOL.md).
    #[error("peer doesn't implement any supported version")]
    UnsupportedVersion,
    /// The agent id in `Hello` is not the identity in the agent's certificate.
    #[error("agent id {claimed} does not match certificate identity {certified}")]
    IdentityMismatch {
        /// What the agent said.
        claimed: String,
        /// What its certificate says.
        certified: String,
    },
    /// A frame arrived that is not valid in the session's state.
    #[error("unexpected {frame} frame in state {state}")]
    Unexpected {
        /// The frame's name.
        frame: &'static str,
        /// The session state.
        state: &'static str,
    },
    /// An ack or reject named a batch that is not the oldest in flight.
    #[error("ack for batch {got} but {expected:?} is the oldest in flight")]
    AckOutOfOrder {
        /// Sequence number acknowledged.
        got: u64,
        /// The oldest sequence number in flight, if any.
        expected: Option<u64>,
    },
    /// The peer said goodbye.
    #[error("peer closed the session: {0}")]
    Goodbye(String),
}

#[cfg(test)]
mod tests;
