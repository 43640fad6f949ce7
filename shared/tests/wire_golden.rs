//! Wire golden tests: the encoded bytes of each protocol version are committed under
//! `tests/fixtures/`. Old fixtures must still decode to the same values, and today's encoder
//! must produce the committed bytes, so an accidental change to the wire format fails here.
//! After a deliberate change (a new protocol version), add a new fixture directory and run with
//! `PITOT_BLESS=1` once to write it.

use std::path::PathBuf;

use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::categorical::Categorical;
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::{AgentId, SeriesKey};
use pitot_shared::wire::{Frame, decode_batch, decode_frame_body, encode_batch, encode_frame_body};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1")
        .join(name)
}

fn sample_batch() -> Batch {
    let mut h = ValueHistogram::new();
    for v in [0.5, 1.0, 12.345, 250.0, -3.0, 1e6] {
        h.record(v).expect("finite");
    }
    let mut c = Categorical::new();
    c.record_n("en", 3, 64);
    c.record_n("40K - 60K €", 1, 64);
    let key = |name: &str| {
        SeriesKey::new(
            name,
            vec![
                ("host".into(), "gpu-1".into()),
                ("model".into(), "llama3".into()),
            ],
        )
        .expect("valid key")
    };
    Batch {
        agent_id: AgentId("gpu-1".into()),
        epoch: 0x0123_4567_89ab_cdef,
        seq: 42,
        interval_start_ms: 1_700_000_000_000,
        interval_ms: 10_000,
        agent_version: "0.1.0".into(),
        spool_bytes: 4096,
        series: vec![
            SeriesSnapshot {
                key: key("request.latency"),
                data: SeriesData::Histogram(h),
            },
            SeriesSnapshot {
                key: key("request.count"),
                data: SeriesData::Counter(17.5),
            },
            SeriesSnapshot {
                key: key("input.language"),
                data: SeriesData::Categorical(c),
            },
        ],
    }
}

fn sample_frames() -> Vec<(&'static str, Frame)> {
    vec![
        (
            "hello.bin",
            Frame::Hello {
                versions: vec![1],
                agent_id: AgentId("gpu-1".into()),
                epoch: 7,
                agent_version: "0.1.0".into(),
            },
        ),
        ("welcome.bin", Frame::Welcome { version: 1 }),
        (
            "ack.bin",
            Frame::Ack {
                seq: 42,
                duplicate: true,
            },
        ),
        (
            "reject.bin",
            Frame::Reject {
                seq: 43,
                reason: "not yours".into(),
            },
        ),
        (
            "goodbye.bin",
            Frame::Goodbye {
                reason: "bye".into(),
            },
        ),
    ]
}

fn check(name: &str, encoded: &[u8]) {
    let path = fixture(name);
    if std::env::var_os("PITOT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, encoded).expect("write fixture");
    }
    let committed = std::fs::read(&path).expect("fixture present (PITOT_BLESS=1 writes it)");
    assert_eq!(committed, encoded, "{name}: the wire encoding changed");
}

#[test]
fn batch_v1_bytes_are_stable_and_decode() {
    let batch = sample_batch();
    check("batch.bin", &encode_batch(&batch));
    let decoded = decode_batch(&std::fs::read(fixture("batch.bin")).expect("fixture"))
        .expect("v1 batch decodes");
    assert_eq!(decoded, batch);
}

#[test]
fn frames_v1_bytes_are_stable_and_decode() {
    for (name, frame) in sample_frames() {
        check(name, &encode_frame_body(&frame));
        let bytes = std::fs::read(fixture(name)).expect("fixture");
        assert_eq!(decode_frame_body(&bytes).expect("v1 frame decodes"), frame);
    }
}
