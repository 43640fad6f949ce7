//! End to end authentication: only agents with a certificate from the configured CA get a
//! batch merged, and only under their own identity. A hand-driven QUIC client (quinn) plays
//! the intruders; a correct client is the control that shows the harness can succeed.

// Helpers below sit outside `#[test]` functions; a failed setup step should panic like an assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Fleet;
use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::{AgentId, SeriesKey};
use pitot_shared::wire::{
    Frame, PROTOCOL_VERSION, decode_frame_body, encode_batch, encode_frame, frame_length,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn crypto(ca: &Path, identity: Option<(&Path, &Path)>) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"pitot/1".to_vec()];
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ))
}

fn batch(agent: &str, metric: &str) -> Batch {
    let mut h = ValueHistogram::new();
    h.record(12.5).unwrap();
    Batch {
        agent_id: AgentId(agent.into()),
        epoch: 99,
        seq: 1,
        interval_start_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 5_000,
        interval_ms: 1000,
        agent_version: "intruder".into(),
        spool_bytes: 0,
        series: vec![SeriesSnapshot {
            key: SeriesKey::new(metric, vec![("host".into(), agent.into())]).unwrap(),
            data: SeriesData::Histogram(h),
        }],
    }
}

/// Connects, says Hello as `hello_id`, sends `batch`, and returns the first frame answered
/// (or why there was none).
async fn attempt(
    addr: SocketAddr,
    config: quinn::ClientConfig,
    hello_id: &str,
    batch: &Batch,
) -> Result<Frame, String> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    let run = async {
        let conn = endpoint
            .connect(addr, "pitot-aggregator")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let hello = Frame::Hello {
            versions: vec![PROTOCOL_VERSION],
            agent_id: AgentId(hello_id.into()),
            epoch: batch.epoch,
            agent_version: "intruder".into(),
        };
        send.write_all(&encode_frame(&hello))
            .await
            .map_err(|e| e.to_string())?;
        send.write_all(&encode_frame(&Frame::Batch {
            seq: batch.seq,
            payload: encode_batch(batch),
        }))
        .await
        .map_err(|e| e.to_string())?;
        let mut frames = Vec::new();
        // Read up to two frames (Welcome, then Ack/Reject), or the first Goodbye/error.
        for _ in 0..2 {
            let mut prefix = [0u8; 4];
            recv.read_exact(&mut prefix)
                .await
                .map_err(|e| e.to_string())?;
            let mut body = vec![0u8; frame_length(prefix).map_err(|e| e.to_string())?];
            recv.read_exact(&mut body)
                .await
                .map_err(|e| e.to_string())?;
            let frame = decode_frame_body(&body).map_err(|e| e.to_string())?;
            let done = !matches!(frame, Frame::Welcome { .. });
            frames.push(frame);
            if done {
                break;
            }
        }
        frames.pop().ok_or_else(|| "no frame".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

#[test]
fn only_certified_agents_under_their_own_identity_are_merged() {
    let mut fleet = Fleet::new(&["gpu-a"]);
    fleet.start_aggregator();
    let certs = fleet.path("certs");
    let other = fleet.path("other-ca");
    pitot::certs::init(&other, "pitot-aggregator", &["gpu-a".to_owned()]).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], fleet.quic_port).into();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ca = certs.join("ca.pem");
    let own = (certs.join("gpu-a.pem"), certs.join("gpu-a.key"));
    let foreign = (other.join("gpu-a.pem"), other.join("gpu-a.key"));

    // No client certificate.
    let r = runtime.block_on(attempt(
        addr,
        crypto(&ca, None),
        "gpu-a",
        &batch("gpu-a", "intruder.none"),
    ));
    assert!(r.is_err(), "no-certificate client got {r:?}");
    // A certificate from another CA, claiming the same name.
    let r = runtime.block_on(attempt(
        addr,
        crypto(&ca, Some((&foreign.0, &foreign.1))),
        "gpu-a",
        &batch("gpu-a", "intruder.foreign"),
    ));
    assert!(r.is_err(), "foreign-CA client got {r:?}");
    // A valid certificate, but Hello claims another agent.
    let r = runtime.block_on(attempt(
        addr,
        crypto(&ca, Some((&own.0, &own.1))),
        "gpu-b",
        &batch("gpu-b", "intruder.hello"),
    ));
    assert!(
        matches!(r, Ok(Frame::Goodbye { .. }) | Err(_)),
        "hello spoof got {r:?}"
    );
    // A valid certificate and Hello, but the batch claims another agent.
    let r = runtime.block_on(attempt(
        addr,
        crypto(&ca, Some((&own.0, &own.1))),
        "gpu-a",
        &batch("gpu-b", "intruder.batch"),
    ));
    assert!(
        matches!(r, Ok(Frame::Reject { .. })),
        "batch spoof got {r:?}"
    );
    // Control: the same client, honest, is acknowledged.
    let r = runtime.block_on(attempt(
        addr,
        crypto(&ca, Some((&own.0, &own.1))),
        "gpu-a",
        &batch("gpu-a", "honest.latency"),
    ));
    assert!(
        matches!(
            r,
            Ok(Frame::Ack {
                seq: 1,
                duplicate: false
            })
        ),
        "honest client got {r:?}"
    );

    let series = fleet.client().get("/api/v1/series", &[]).unwrap();
    let names: Vec<&str> = series["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"honest.latency"), "{names:?}");
    assert!(
        names.iter().all(|n| !n.starts_with("intruder.")),
        "an intruder's series was stored: {names:?}"
    );
    assert_eq!(fleet.count("honest.latency"), 1);
    let metrics = fleet.metrics_text().expect("/metrics answers");
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pitot_aggregator_connections_refused_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 2, "refused connections not counted:\n{metrics}");
}
