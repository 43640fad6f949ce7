//! The agent's end of the uplink session.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::series::AgentId;
use crate::wire::{Frame, PROTOCOL_VERSION};

use super::ProtocolError;

/// Identifies a spooled batch; it is the batch's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpoolId(pub u64);

/// Tunables of the agent session.
#[derive(Debug, Clone)]
pub struct AgentSessionConfig {
    /// Batches sent but not yet acknowledged, at most. 32 keeps a 10 ms RTT link busy at
    /// thousands of batches per second while bounding what a reconnect must re-send.
    pub max_in_flight: usize,
    /// First reconnect delay; doubles per failed attempt.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for AgentSessionConfig {
    fn default() -> Self {
        AgentSessionConfig {
            max_in_flight: 32,
            // 200 ms: an aggregator restart is usually back within a second or two.
            backoff_initial: Duration::from_millis(200),
            // 30 s: a fleet of thousands must not hammer a recovering aggregator.
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The batch is durably merged: delete it from the spool.
    Acked(SpoolId),
    /// The aggregator will never merge this batch: delete it and count it as lost.
    Rejected {
        /// The batch.
        id: SpoolId,
        /// The aggregator's reason.
        reason: String,
    },
    /// Time to (re)connect: the back-off deadline has passed.
    Connect,
    /// The session is established; batches will flow.
    Established {
        /// The negotiated protocol version.
        version: u16,
    },
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// No connection; reconnect at the deadline (or now, when `None`).
    Disconnected {
        /// When to try again.
        retry_at: Option<Instant>,
    },
    /// Connecting; the driver reports the outcome.
    Connecting,
    /// Hello sent, waiting for Welcome.
    Handshaking,
    /// Batches flow.
    Ready,
}

impl AgentState {
    fn name(self) -> &'static str {
        match self {
            AgentState::Disconnected { .. } => "disconnected",
            AgentState::Connecting => "connecting",
            AgentState::Handshaking => "handshaking",
            AgentState::Ready => "ready",
        }
    }
}

/// The agent's session: queue, in-flight window, acks, back-off.
#[derive(Debug)]
pub struct AgentSession {
    agent_id: AgentId,
    epoch: u64,
    agent_version: String,
    config: AgentSessionConfig,
    state: AgentState,
    failures: u32,
    pending: VecDeque<(SpoolId, Arc<[u8]>)>,
    in_flight: VecDeque<(SpoolId, Arc<[u8]>)>,
    transmit: VecDeque<Frame>,
    events: VecDeque<SessionEvent>,
}

impl AgentSession {
    /// A new, disconnected session that wants to connect at once.
    pub fn new(
        agent_id: AgentId,
        epoch: u64,
        agent_version: String,
        config: AgentSessionConfig,
    ) -> Self {
        AgentSession {
            agent_id,
            epoch,
            agent_version,
            config,
            state: AgentState::Disconnected { retry_at: None },
            failures: 0,
            pending: VecDeque::new(),
            in_flight: VecDeque::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> AgentState {
        self.state
    }

    /// Batches queued or in flight. The driver hands over more only below the window.
    pub fn queued(&self) -> usize {
        self.pending.len() + self.in_flight.len()
    }

    /// True when the driver should hand over more spooled batches.
    pub fn wants_batches(&self) -> bool {
        self.queued() < self.config.max_in_flight * 2
    }

    /// The newest batch handed over, so the driver knows where to continue in the spool.
    pub fn last_enqueued(&self) -> Option<SpoolId> {
        self.pending
            .back()
            .or_else(|| self.in_flight.back())
            .map(|(id, _)| *id)
    }

    /// Hands over a spooled batch (`payload` = its encoded bytes). Ids must increase.
    pub fn enqueue(&mut self, id: SpoolId, payload: Arc<[u8]>) {
        self.pending.push_back((id, payload));
    }

    /// The driver started connecting (after a [`SessionEvent::Connect`]).
    pub fn connecting(&mut self) {
        self.state = AgentState::Connecting;
    }

    /// The transport is up: send Hello. In-flight batches will be re-sent after Welcome.
    pub fn connected(&mut self) {
        self.requeue_in_flight();
        self.transmit.clear();
        self.transmit.push_back(Frame::Hello {
            versions: vec![PROTOCOL_VERSION],
            agent_id: self.agent_id.clone(),
            epoch: self.epoch,
            agent_version: self.agent_version.clone(),
        });
        self.state = AgentState::Handshaking;
    }

    /// The transport failed or closed. `jitter` in `[0, 1)` comes from the driver's RNG; the
    /// delay is `min(max, initial · 2^failures) · (0.5 + jitter / 2)`.
    pub fn disconnected(&mut self, now: Instant, jitter: f64) {
        self.requeue_in_flight();
        self.transmit.clear();
        let exp = self.failures.min(20);
        let base = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << exp)
            .min(self.config.backoff_max);
        let delay = base.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0);
        self.failures = self.failures.saturating_add(1);
        self.state = AgentState::Disconnected {
            retry_at: Some(now + delay),
        };
    }

    fn requeue_in_flight(&mut self) {
        while let Some(entry) = self.in_flight.pop_back() {
            self.pending.push_front(entry);
        }
    }

    /// Feeds a frame from the aggregator.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<(), ProtocolError> {
        match (self.state, frame) {
            (AgentState::Handshaking, Frame::Welcome { version }) => {
                if version != PROTOCOL_VERSION {
                    return Err(ProtocolError::UnsupportedVersion);
                }
                // The back-off resets at the first answer to a batch, not here: an aggregator
                // that welcomes every agent but fails every merge must not get a handshake
                // storm.
                self.state = AgentState::Ready;
                self.events.push_back(SessionEvent::Established { version });
                Ok(())
            }
            (AgentState::Ready, Frame::Ack { seq, .. }) => {
                let id = self.pop_oldest(seq)?;
                self.failures = 0;
                self.events.push_back(SessionEvent::Acked(id));
                Ok(())
            }
            (AgentState::Ready, Frame::Reject { seq, reason }) => {
                let id = self.pop_oldest(seq)?;
                self.failures = 0;
                self.events.push_back(SessionEvent::Rejected { id, reason });
                Ok(())
            }
            (_, Frame::Goodbye { reason }) => Err(ProtocolError::Goodbye(reason)),
            (state, frame) => Err(ProtocolError::Unexpected {
                frame: frame_name(&frame),
                state: state.name(),
            }),
        }
    }

    fn pop_oldest(&mut self, seq: u64) -> Result<SpoolId, ProtocolError> {
        match self.in_flight.front() {
            Some((id, _)) if id.0 == seq => {
                let (id, _) = self
                    .in_flight
                    .pop_front()
                    .ok_or(ProtocolError::AckOutOfOrder {
                        got: seq,
                        expected: None,
                    })?;
                Ok(id)
            }
            front => Err(ProtocolError::AckOutOfOrder {
                got: seq,
                expected: front.map(|(id, _)| id.0),
            }),
        }
    }

    /// The next frame to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        if let Some(frame) = self.transmit.pop_front() {
            return Some(frame);
        }
        if self.state == AgentState::Ready && self.in_flight.len() < self.config.max_in_flight {
            let (id, payload) = self.pending.pop_front()?;
            self.in_flight.push_back((id, Arc::clone(&payload)));
            return Some(Frame::Batch {
                seq: id.0,
                payload: payload.to_vec(),
            });
        }
        None
    }

    /// When [`AgentSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            AgentState::Disconnected { retry_at } => retry_at,
            _ => None,
        }
    }

    /// Advances timers: a passed back-off deadline yields [`SessionEvent::Connect`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if let AgentState::Disconnected { retry_at } = self.state
            && retry_at.is_none_or(|t| now >= t)
        {
            self.state = AgentState::Connecting;
            self.events.push_back(SessionEvent::Connect);
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
}

pub(super) fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "hello",
        Frame::Welcome { .. } => "welcome",
        Frame::Batch { .. } => "batch",
        Frame::Ack { .. } => "ack",
        Frame::Reject { .. } => "reject",
        Frame::Goodbye { .. } => "goodbye",
    }
}
