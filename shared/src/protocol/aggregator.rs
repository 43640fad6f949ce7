//! The aggregator's end of the uplink session.

use std::collections::VecDeque;

use crate::batch::Batch;
use crate::series::AgentId;
use crate::wire::{ACCEPTED_VERSIONS, EPOCH_PER_START_VERSION, Frame, decode_batch};

use super::ProtocolError;
use super::agent::frame_name;

/// A batch this session decoded (with the wire's size limit) and checked: its agent id is
/// the certificate's, its sequence number its frame's, and (before protocol version 3) its
/// epoch the `Hello`'s. Only the
/// session can build one, so whatever the server hands to the merge actor was verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBatch(Batch);

impl VerifiedBatch {
    /// The batch.
    pub fn batch(&self) -> &Batch {
        &self.0
    }

    /// The batch, owned.
    pub fn into_batch(self) -> Batch {
        self.0
    }
}

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AggregatorEvent {
    /// A verified batch to merge; answer with [`AggregatorSession::merged`] (or
    /// [`AggregatorSession::rejected`] if it can never be merged), in arrival order.
    Batch {
        /// The batch's sequence number.
        seq: u64,
        /// The batch.
        batch: Box<VerifiedBatch>,
    },
    /// A batch that failed decoding or the checks; answer with
    /// [`AggregatorSession::rejected`] with `reason`, in arrival order.
    InvalidBatch {
        /// Its frame's sequence number.
        seq: u64,
        /// Why.
        reason: String,
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
    Ready { epoch: u64, version: u16 },
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
                self.state = State::Ready { epoch, version };
                self.transmit.push_back(Frame::Welcome { version });
                self.events.push_back(AggregatorEvent::Established {
                    agent_version,
                    epoch,
                });
                Ok(())
            }
            (State::Ready { epoch, version }, Frame::Batch { seq, payload }) => {
                // From version 3 an agent also sends what earlier runs left in its spool,
                // each batch under its own epoch.
                let epoch = (version < EPOCH_PER_START_VERSION).then_some(epoch);
                let event = match self.verify(epoch, seq, &payload) {
                    Ok(batch) => AggregatorEvent::Batch {
                        seq,
                        batch: Box::new(batch),
                    },
                    Err(reason) => AggregatorEvent::InvalidBatch { seq, reason },
                };
                self.events.push_back(event);
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

    fn verify(
        &self,
        epoch: Option<u64>,
        seq: u64,
        payload: &[u8],
    ) -> Result<VerifiedBatch, String> {
        let batch = decode_batch(payload).map_err(|e| e.to_string())?;
        if batch.agent_id != self.certified {
            return Err(format!(
                "batch claims agent {} but the certificate says {}",
                batch.agent_id, self.certified
            ));
        }
        if batch.seq != seq {
            return Err("batch sequence differs from its frame".to_owned());
        }
        if epoch.is_some_and(|e| e != batch.epoch) {
            return Err("batch epoch differs from the session's".to_owned());
        }
        Ok(VerifiedBatch(batch))
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
