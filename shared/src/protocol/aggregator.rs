//! The aggregator's end of the uplink session.

use std::collections::VecDeque;

use crate::series::AgentId;
use crate::wire::{ACCEPTED_VERSIONS, Frame};

use super::ProtocolError;
use super::agent::frame_name;

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AggregatorEvent {
    /// A batch to merge; answer with [`AggregatorSession::merged`] or
    /// [`AggregatorSession::rejected`], in arrival order.
    Batch {
        /// The agent's spool epoch (from Hello).
        epoch: u64,
        /// The batch's sequence number.
        seq: u64,
        /// `bincode(Batch)`; decode with `wire::decode_batch`.
        payload: Vec<u8>,
    },
    /// Hello accepted.
    Established {
        /// The agent's build version.
        agent_version: String,
        /// The agent's spool epoch.
        epoch: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHello,
    Ready { epoch: u64 },
    Closed,
}

/// One agent connection, after TLS has established `certified` as the peer's identity.
#[derive(Debug)]
pub struct AggregatorSession {
    certified: AgentId,
    state: State,
    transmit: VecDeque<Frame>,
    events: VecDeque<AggregatorEvent>,
}

impl AggregatorSession {
    /// A session for a peer whose certificate names `certified`.
    pub fn new(certified: AgentId) -> Self {
        AggregatorSession {
            certified,
            state: State::AwaitingHello,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The peer's certified identity.
    pub fn agent_id(&self) -> &AgentId {
        &self.certified
    }

    /// Feeds a frame from the agent. On `Err` the driver sends what `poll_transmit` still
    /// yields (a Goodbye) and closes.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<(), ProtocolError> {
        match (self.state, frame) {
            (
                State::AwaitingHello,
                Frame::Hello {
                    versions,
                    agent_id,
                    epoch,
                    agent_version,
                },
            ) => {
                let Some(version) = versions
                    .iter()
                    .copied()
                    .filter(|v| ACCEPTED_VERSIONS.contains(v))
                    .max()
                else {
                    return Err(self.close(ProtocolError::UnsupportedVersion));
                };
                if agent_id != self.certified {
                    return Err(self.close(ProtocolError::IdentityMismatch {
                        claimed: agent_id.0,
                        certified: self.certified.0.clone(),
                    }));
                }
                self.state = State::Ready { epoch };
                self.transmit.push_back(Frame::Welcome { version });
                self.events.push_back(AggregatorEvent::Established {
                    agent_version,
                    epoch,
                });
                Ok(())
            }
            (State::Ready { epoch }, Frame::Batch { seq, payload }) => {
                self.events.push_back(AggregatorEvent::Batch {
                    epoch,
                    seq,
                    payload,
                });
                Ok(())
            }
            (_, Frame::Goodbye { reason }) => {
                self.state = State::Closed;
                Err(ProtocolError::Goodbye(reason))
            }
            (state, frame) => {
                let name = frame_name(&frame);
                Err(self.close(ProtocolError::Unexpected {
                    frame: name,
                    state: match state {
                        State::AwaitingHello => "awaiting-hello",
                        State::Ready { .. } => "ready",
                        State::Closed => "closed",
                    },
                }))
            }
        }
    }

    fn close(&mut self, error: ProtocolError) -> ProtocolError {
        self.state = State::Closed;
        self.transmit.push_back(Frame::Goodbye {
            reason: error.to_string(),
        });
        error
    }

    /// The batch `seq` is durably merged (or was already: `duplicate`).
    pub fn merged(&mut self, seq: u64, duplicate: bool) {
        self.transmit.push_back(Frame::Ack { seq, duplicate });
    }

    /// The batch `seq` can never be merged.
    pub fn rejected(&mut self, seq: u64, reason: String) {
        self.transmit.push_back(Frame::Reject { seq, reason });
    }

    /// The next frame to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmit.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<AggregatorEvent> {
        self.events.pop_front()
    }
}
