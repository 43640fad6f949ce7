//! Session tests with a quinn-style `Pair`: both ends in one thread, virtual time, and
//! connections cut at chosen points.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::series::AgentId;
use crate::wire::{Frame, decode_frame_body, encode_frame_body};

/// An encoded batch of `agent`, spool `epoch`, number `seq` (no series: the session checks
/// the header).
fn payload(agent: &str, epoch: u64, seq: u64) -> Vec<u8> {
    crate::wire::encode_batch(&crate::batch::Batch {
        agent_id: AgentId(agent.into()),
        epoch,
        seq,
        interval_start_ms: 0,
        interval_ms: 10_000,
        agent_version: "test".into(),
        spool_bytes: 0,
        series: Vec::new(),
    })
}

/// Both ends plus a model of the aggregator's store: the high-water mark per epoch and how
/// many times each batch was merged.
struct Pair {
    now: Instant,
    agent: AgentSession,
    server: Option<AggregatorSession>,
    high_water: BTreeMap<u64, u64>,
    merges: BTreeMap<u64, u32>,
    acked: Vec<SpoolId>,
}

impl Pair {
    fn new() -> Self {
        let mut agent = AgentSession::new(
            AgentId("a1".into()),
            42,
            "test".into(),
            AgentSessionConfig {
                max_in_flight: 4,
                ..AgentSessionConfig::default()
            },
        );
        for seq in 1..=20 {
            agent.enqueue(
                SpoolId(seq),
                Arc::from(payload("a1", 42, seq).into_boxed_slice()),
            );
        }
        Pair {
            // Only the base of virtual time; the sessions never read a clock.
            #[allow(clippy::disallowed_methods)]
            now: Instant::now(),
            agent,
            server: None,
            high_water: BTreeMap::new(),
            merges: BTreeMap::new(),
            acked: Vec::new(),
        }
    }

    fn connect(&mut self, certified: &str) {
        self.agent
            .handle_timeout(self.now + Duration::from_secs(3600));
        assert_eq!(self.agent.poll_event(), Some(SessionEvent::Connect));
        self.agent.connecting();
        self.agent.connected();
        self.server = Some(AggregatorSession::new(AgentId(certified.into())));
    }

    fn cut(&mut self) {
        self.drain_events();
        self.server = None;
        self.agent.disconnected(self.now, 0.5);
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.agent.poll_event() {
            if let SessionEvent::Acked(id) = ev {
                self.acked.push(id);
            }
        }
    }

    /// Moves frames both ways (through the real codec) until quiet or `budget` frames moved.
    fn drive(&mut self, mut budget: usize) -> Result<(), ProtocolError> {
        loop {
            let mut moved = false;
            let Some(server) = self.server.as_mut() else {
                return Ok(());
            };
            while let Some(frame) = self.agent.poll_transmit() {
                if budget == 0 {
                    return Ok(());
                }
                budget -= 1;
                moved = true;
                let frame = decode_frame_body(&encode_frame_body(&frame)).unwrap();
                server.handle_frame(frame)?;
                while let Some(ev) = server.poll_event() {
                    if let AggregatorEvent::Batch { seq, batch } = ev {
                        let hw = self.high_water.entry(batch.batch().epoch).or_insert(0);
                        let duplicate = seq <= *hw;
                        if !duplicate {
                            *hw = seq;
                            *self.merges.entry(seq).or_insert(0) += 1;
                        }
                        server.merged(seq, duplicate);
                    }
                }
            }
            while let Some(frame) = server.poll_transmit() {
                if budget == 0 {
                    return Ok(());
                }
                budget -= 1;
                moved = true;
                self.agent.handle_frame(frame)?;
            }
            self.drain_events();
            if !moved {
                return Ok(());
            }
        }
    }
}

#[test]
fn all_batches_are_acked_in_order() {
    let mut pair = Pair::new();
    pair.connect("a1");
    pair.drive(usize::MAX).unwrap();
    assert_eq!(pair.acked, (1..=20).map(SpoolId).collect::<Vec<_>>());
    assert!(pair.merges.values().all(|n| *n == 1));
    assert_eq!(pair.agent.queued(), 0);
}

#[test]
fn identity_mismatch_is_refused_with_goodbye() {
    let mut pair = Pair::new();
    pair.connect("someone-else");
    let err = pair.drive(usize::MAX).unwrap_err();
    assert!(matches!(err, ProtocolError::IdentityMismatch { .. }));
    assert!(pair.merges.is_empty());
    let server = pair.server.as_mut().unwrap();
    assert!(matches!(
        server.poll_transmit(),
        Some(Frame::Goodbye { .. })
    ));
}

#[test]
fn version_1_agents_are_welcomed_at_1_and_unknown_versions_refused() {
    // An 0.1 agent offers only version 1; the aggregator still speaks it.
    let mut server = AggregatorSession::new(AgentId("a1".into()));
    server
        .handle_frame(Frame::Hello {
            versions: vec![1],
            agent_id: AgentId("a1".into()),
            epoch: 1,
            agent_version: "0.1.0".into(),
        })
        .expect("version 1 accepted");
    assert_eq!(server.poll_transmit(), Some(Frame::Welcome { version: 1 }));
    // Offered both, the highest known wins.
    let mut server = AggregatorSession::new(AgentId("a1".into()));
    server
        .handle_frame(Frame::Hello {
            versions: vec![1, 2, 9],
            agent_id: AgentId("a1".into()),
            epoch: 1,
            agent_version: "x".into(),
        })
        .expect("accepted");
    assert_eq!(server.poll_transmit(), Some(Frame::Welcome { version: 2 }));
    let mut server = AggregatorSession::new(AgentId("a1".into()));
    let err = server
        .handle_frame(Frame::Hello {
            versions: vec![9],
            agent_id: AgentId("a1".into()),
            epoch: 1,
            agent_version: "x".into(),
        })
        .unwrap_err();
    assert!(matches!(err, ProtocolError::UnsupportedVersion));
}

#[test]
fn batch_before_hello_is_refused() {
    let mut server = AggregatorSession::new(AgentId("a1".into()));
    let err = server
        .handle_frame(Frame::Batch {
            seq: 1,
            payload: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, ProtocolError::Unexpected { .. }));
}

#[test]
fn backoff_grows_and_resets_on_welcome() {
    let mut pair = Pair::new();
    let t0 = pair.now;
    pair.agent.disconnected(t0, 0.0);
    let first = pair.agent.poll_timeout().unwrap() - t0;
    pair.agent.disconnected(t0, 0.0);
    let second = pair.agent.poll_timeout().unwrap() - t0;
    assert_eq!(second, first * 2);
    pair.agent.handle_timeout(t0);
    assert!(
        pair.agent.poll_event().is_none(),
        "deadline not reached yet"
    );
    pair.connect("a1");
    pair.drive(usize::MAX).unwrap();
    pair.agent.disconnected(t0, 0.0);
    assert_eq!(pair.agent.poll_timeout().unwrap() - t0, first);
}

#[test]
fn out_of_order_ack_is_a_protocol_error() {
    let mut pair = Pair::new();
    pair.connect("a1");
    pair.drive(3).unwrap();
    let err = pair.agent.handle_frame(Frame::Ack {
        seq: 99,
        duplicate: false,
    });
    assert!(matches!(err, Err(ProtocolError::AckOutOfOrder { .. })));
}

proptest! {
    /// Cutting the connection after any number of frames, any number of times, still merges
    /// every batch exactly once and acks every batch.
    #[test]
    fn cuts_never_lose_or_duplicate(cuts in prop::collection::vec(0usize..12, 0..8)) {
        let mut pair = Pair::new();
        for budget in cuts {
            pair.connect("a1");
            pair.drive(budget).unwrap();
            pair.cut();
            pair.now += Duration::from_secs(60);
        }
        pair.connect("a1");
        pair.drive(usize::MAX).unwrap();
        prop_assert_eq!(pair.merges.len(), 20);
        prop_assert!(pair.merges.values().all(|n| *n == 1));
        let mut acked = pair.acked.clone();
        acked.sort();
        acked.dedup();
        prop_assert_eq!(acked.len(), 20);
    }
}

fn session_at(version: u16) -> AggregatorSession {
    let mut server = AggregatorSession::new(AgentId("a1".into()));
    server
        .handle_frame(Frame::Hello {
            versions: vec![version],
            agent_id: AgentId("a1".into()),
            epoch: 7,
            agent_version: "test".into(),
        })
        .unwrap();
    server
}

fn send(server: &mut AggregatorSession, seq: u64, payload: Vec<u8>) -> AggregatorEvent {
    server.handle_frame(Frame::Batch { seq, payload }).unwrap();
    let mut out = None;
    while let Some(ev) = server.poll_event() {
        if !matches!(ev, AggregatorEvent::Established { .. }) {
            out = Some(ev);
        }
    }
    out.unwrap()
}

#[test]
fn only_batches_that_pass_the_checks_come_out_verified() {
    let mut server = session_at(crate::wire::PROTOCOL_VERSION);
    let ok = send(&mut server, 1, payload("a1", 7, 1));
    assert!(
        matches!(&ok, AggregatorEvent::Batch { seq: 1, batch } if batch.batch().epoch == 7),
        "{ok:?}"
    );
    // An earlier run's batch, under its own epoch, is the agent's to send from version 3.
    let earlier = send(&mut server, 2, payload("a1", 8, 2));
    assert!(
        matches!(&earlier, AggregatorEvent::Batch { seq: 2, batch } if batch.batch().epoch == 8),
        "{earlier:?}"
    );
    for (seq, bytes, why) in [
        (2, payload("a2", 7, 2), "claims agent a2"),
        (4, payload("a1", 7, 5), "sequence differs"),
        (5, vec![0xff; 9], ""),
    ] {
        match send(&mut server, seq, bytes) {
            AggregatorEvent::InvalidBatch { seq: s, reason } => {
                assert_eq!(s, seq);
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("batch {seq} came out {other:?}"),
        }
    }
}

#[test]
fn before_version_3_every_batch_carries_the_hello_epoch() {
    let mut server = session_at(2);
    assert!(matches!(
        send(&mut server, 1, payload("a1", 7, 1)),
        AggregatorEvent::Batch { seq: 1, .. }
    ));
    match send(&mut server, 2, payload("a1", 8, 2)) {
        AggregatorEvent::InvalidBatch { reason, .. } => {
            assert!(reason.contains("epoch differs"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn backoff_resets_at_the_first_answer_not_at_welcome() {
    let config = AgentSessionConfig {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(100),
        ..AgentSessionConfig::default()
    };
    let mut s = AgentSession::new(AgentId("a1".into()), 1, "t".into(), config);
    // A starting point for virtual time; the session never reads the clock.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let retry_after = |s: &mut AgentSession| {
        s.disconnected(t0, 1.0);
        match s.state() {
            AgentState::Disconnected { retry_at: Some(t) } => t - t0,
            other => panic!("{other:?}"),
        }
    };
    let welcome = |s: &mut AgentSession| {
        s.connecting();
        s.connected();
        s.handle_frame(Frame::Welcome {
            version: crate::wire::PROTOCOL_VERSION,
        })
        .unwrap();
    };
    welcome(&mut s);
    assert_eq!(retry_after(&mut s), Duration::from_millis(100));
    // Welcomed again, but nothing merged: an aggregator failing every merge.
    welcome(&mut s);
    assert_eq!(retry_after(&mut s), Duration::from_millis(200));
    welcome(&mut s);
    s.enqueue(SpoolId(1), payload("a1", 1, 1).into());
    while s.poll_transmit().is_some() {}
    s.handle_frame(Frame::Ack {
        seq: 1,
        duplicate: false,
    })
    .unwrap();
    assert_eq!(
        retry_after(&mut s),
        Duration::from_millis(100),
        "an ack resets it"
    );
}
