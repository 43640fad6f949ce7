//! Wire golden tests: the encoded bytes of each protocol version are committed under
//! `tests/fixtures/`. Old fixtures must still decode to the same values (`v1`: what 0.1 wrote,
//! read forever, never written again), and today's encoder must produce the committed bytes
//! (`v2`, `v3`), so an accidental change to the wire format fails here. After a deliberate change (a
//! new protocol version), add a new fixture directory and run with `PITOT_BLESS=1` once to
//! write it.

use std::path::PathBuf;

use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::categorical::Categorical;
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::histogram::v1::V1Histogram;
use pitot_shared::series::{AgentId, SeriesKey};
use pitot_shared::wire::{Frame, decode_batch, decode_frame_body, encode_batch, encode_frame_body};

fn fixture(version: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
        .join(name)
}

const VALUES: [f64; 6] = [0.5, 1.0, 12.345, 250.0, -3.0, 1e6];

/// The batch the fixtures hold; `h` is its latency histogram.
fn sample_batch(h: ValueHistogram) -> Batch {
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

fn sample_frames(version: u16) -> Vec<(&'static str, Frame)> {
    vec![
        (
            "hello.bin",
            Frame::Hello {
                versions: vec![version],
                agent_id: AgentId("gpu-1".into()),
                epoch: 7,
                agent_version: "0.1.0".into(),
            },
        ),
        ("welcome.bin", Frame::Welcome { version }),
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

fn check(version: &str, name: &str, encoded: &[u8]) {
    let path = fixture(version, name);
    if std::env::var_os("PITOT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, encoded).expect("write fixture");
    }
    let committed = std::fs::read(&path).expect("fixture present (PITOT_BLESS=1 writes it)");
    assert_eq!(
        committed, encoded,
        "{version}/{name}: the wire encoding changed"
    );
}

#[test]
fn batch_v1_from_0_1_still_decodes() {
    // 0.1 recorded these values into its HdrHistogram over 0.001 steps; they read back as
    // today's histogram at that resolution.
    let mut old = V1Histogram::new();
    for v in VALUES {
        old.record(v).expect("finite");
    }
    let want = sample_batch(old.to_current());
    let decoded = decode_batch(&std::fs::read(fixture("v1", "batch.bin")).expect("fixture"))
        .expect("v1 batch decodes");
    assert_eq!(decoded, want);
    let SeriesData::Histogram(h) = &decoded.series[0].data else {
        panic!("histogram expected");
    };
    assert_eq!(h.count(), 6);
    assert_eq!((h.min(), h.max()), (Some(-3.0), Some(1e6)));
}

#[test]
fn batch_v2_bytes_are_stable_and_decode() {
    let mut h = ValueHistogram::new();
    for v in VALUES.iter().chain(&[0.00535, 1.3e-4, 0.0]) {
        h.record(*v).expect("finite");
    }
    let batch = sample_batch(h);
    check("v2", "batch.bin", &encode_batch(&batch));
    let decoded = decode_batch(&std::fs::read(fixture("v2", "batch.bin")).expect("fixture"))
        .expect("v2 batch decodes");
    assert_eq!(decoded, batch);
}

#[test]
fn frames_of_every_version_are_stable_and_decode() {
    for (version, dir) in [(1, "v1"), (2, "v2"), (3, "v3")] {
        for (name, frame) in sample_frames(version) {
            check(dir, name, &encode_frame_body(&frame));
            let bytes = std::fs::read(fixture(dir, name)).expect("fixture");
            assert_eq!(decode_frame_body(&bytes).expect("frame decodes"), frame);
        }
    }
}
