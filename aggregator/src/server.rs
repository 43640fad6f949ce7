//! The QUIC listener: mutual TLS with agents' certificates checked against the configured CA
//! (rustls `WebPkiClientVerifier`, TLS 1.3 only, no 0-RTT), one task per connection driving
//! `pitot_shared::protocol::AggregatorSession`, batches handed to the merge actor in arrival
//! order, and an acknowledgement written only after the merge is durable.
//!
//! The agent's identity is the first DNS name in its certificate's subject alternative names
//! (or its common name when there is none). A `Hello` or a batch that claims another id is
//! refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use pitot_shared::config::TlsPaths;
use pitot_shared::loggate::LogGate;
use pitot_shared::protocol::{ALPN, AggregatorEvent, AggregatorSession, ProtocolError};
use pitot_shared::series::AgentId;
use pitot_shared::wire::{decode_frame_body, encode_frame, frame_length};
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error_span, info, warn};

use crate::audit::Event;
use crate::glue::{load_certs, load_key, now_ms};
use crate::links::Links;
use crate::merge::{AuditSink, Job, MergeRequest};
use crate::store::MergeOutcome;
use crate::telemetry::Stats;

/// How long a new connection may take to open its stream and say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reason sent in a CONNECTION_CLOSE frame (it must fit one packet).
const MAX_CLOSE_REASON: usize = 400;

/// Builds the QUIC server config that requires a client certificate from `tls.ca`.
pub fn server_config(tls: &TlsPaths) -> anyhow::Result<quinn::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&tls.ca)? {
        roots.add(cert).context("adding the CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .context("building the client certificate verifier")?;
    let chain = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 setup")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the aggregator certificate and key do not match")?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    // No 0-RTT: replayable early data has no place in an exactly-once protocol.
    crypto.max_early_data_size = 0;
    let quic =
        quinn::crypto::rustls::QuicServerConfig::try_from(crypto).context("QUIC TLS setup")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(30)).context("idle timeout")?,
    ));
    transport.max_concurrent_uni_streams(0u32.into());
    transport.max_concurrent_bidi_streams(1u32.into());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The identity in an agent certificate: the first DNS subject alternative name, else the CN.
pub fn identity(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                return Some((*dns).to_owned());
            }
        }
    }
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// Binds the QUIC endpoint.
pub fn bind(addr: SocketAddr, tls: &TlsPaths) -> anyhow::Result<quinn::Endpoint> {
    let config = server_config(tls)?;
    let socket =
        std::net::UdpSocket::bind(addr).with_context(|| format!("binding QUIC on {addr}"))?;
    let runtime = quinn::default_runtime().context("no async runtime for QUIC")?;
    quinn::Endpoint::new(endpoint_config(tls)?, Some(config), socket, runtime)
        .with_context(|| format!("binding QUIC on {addr}"))
}

/// The endpoint's stateless-reset key, derived from the aggregator's private key rather than
/// random per start: after a restart the aggregator answers an agent's packets for the old
/// connection with a stateless reset the agent accepts, so the agent reconnects at its next
/// packet (a keep-alive comes every 5 s) instead of waiting for its idle timeout. The secret is
/// a hash of the key file, so it changes when the key does.
fn endpoint_config(tls: &TlsPaths) -> anyhow::Result<quinn::EndpointConfig> {
    let key = std::fs::read(&tls.key)
        .with_context(|| format!("reading quic.key {}", tls.key.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"pitot stateless reset key v1\0");
    ctx.update(&key);
    let secret = ctx.finish();
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_ref());
    let mut config = quinn::EndpointConfig::new(Arc::new(hmac));
    // Connection ids carry a keyed check: the same key lets the restarted endpoint recognise
    // the old connection's ids as its own and answer them with a reset.
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&secret.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    Ok(config)
}

/// Accepts connections until `shutdown` fires.
pub async fn serve(
    endpoint: quinn::Endpoint,
    merges: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    links: Arc<Links>,
    audit: Arc<AuditSink>,
    shutdown: CancellationToken,
) {
    let refusals = Arc::new(std::sync::Mutex::new(LogGate::new(Duration::from_secs(60))));
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shutdown.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let merges = merges.clone();
        let stats = Arc::clone(&stats);
        let remote = incoming.remote_address();
        let refusals = Arc::clone(&refusals);
        let links = Arc::clone(&links);
        let audit = Arc::clone(&audit);
        tokio::spawn(
            async move {
                match incoming.await {
                    Ok(connection) => handle(connection, merges, stats, &links, &audit).await,
                    Err(error) => {
                        stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                        let reason = error.to_string();
                        let (kind, fix) = refusal(&reason);
                        links.refused(remote.ip(), kind, &reason, fix, None, now_ms());
                        audit_refusal(&audit, remote.ip(), kind, &reason);
                        let admitted = refusals
                            .lock()
                            .map(|mut g| g.admit(std::time::Instant::now(), kind))
                            .unwrap_or(Some(0));
                        match admitted {
                            Some(held) => warn!(
                                error = %reason,
                                fix,
                                refusals_not_logged = held,
                                "Refused an agent's connection: TLS handshake failed."
                            ),
                            None => debug!(%error, "Handshake failed."),
                        }
                    }
                }
            }
            .instrument(error_span!("conn", peer = %remote)),
        );
    }
    endpoint.close(0u32.into(), b"shutdown");
}

/// A refused connection into the audit trail: one entry per peer and kind a minute.
fn audit_refusal(audit: &AuditSink, peer: std::net::IpAddr, kind: &str, reason: &str) {
    audit.send_limited(&format!("refused {peer} {kind}"), None, |suppressed| {
        Event::Refused {
            peer: peer.to_string(),
            kind: kind.to_owned(),
            error: reason.to_owned(),
            suppressed,
        }
    });
}

async fn handle(
    connection: quinn::Connection,
    merges: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    links: &Links,
    audit: &AuditSink,
) {
    let remote = connection.remote_address();
    let leaf = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().cloned());
    let fingerprint = leaf.as_ref().map(|c| {
        crate::access::hex(ring::digest::digest(&ring::digest::SHA256, c.as_ref()).as_ref())
    });
    let certified = leaf.as_ref().and_then(identity);
    let Some(certified) = certified else {
        stats.connections_refused.fetch_add(1, Ordering::Relaxed);
        warn!("Agent certificate carries no usable identity; closing.");
        let reason = "the certificate has no DNS subject alternative name or common name";
        links.refused(
            remote.ip(),
            "no-identity",
            reason,
            "issue the agent's certificate with pitot certs init --agents <id>",
            None,
            now_ms(),
        );
        audit_refusal(audit, remote.ip(), "no-identity", reason);
        connection.close(2u32.into(), b"no identity");
        return;
    };
    stats.connections.fetch_add(1, Ordering::Relaxed);
    let span = error_span!("agent", agent_id = %certified);
    let mut established = false;
    let result = drive(
        &connection,
        AgentId(certified.clone()),
        merges,
        &stats,
        links,
        &mut established,
        &|| {
            // Enrolment (the first certificate for this id) and certificate changes; the
            // actor records only what changes the trail.
            if let Some(fingerprint) = &fingerprint {
                audit.send(Event::AgentSeen {
                    agent: certified.clone(),
                    fingerprint: fingerprint.clone(),
                    peer: remote.ip().to_string(),
                });
            }
        },
    )
    .instrument(span.clone())
    .await;

    let _entered = span.enter();
    let error = match result {
        Ok(()) => None,
        Err(error) if clean_close(&error) => {
            debug!("Agent connection closed.");
            None
        }
        Err(error) => {
            debug!(error = format!("{error:#}"), "Agent connection ended.");
            Some(error)
        }
    };
    if established {
        links.disconnected(&certified, error.map(|e| format!("{e:#}")), now_ms());
    } else if let Some(error) = error {
        let (kind, fix) = session_refusal(&error);
        let reason = format!("{error:#}");
        links.refused(remote.ip(), kind, &reason, fix, Some(&certified), now_ms());
        audit_refusal(audit, remote.ip(), kind, &reason);
        // The reason travels in the CONNECTION_CLOSE frame, so the agent can log it even
        // when the closing stream frames are lost with the connection.
        let mut text = format!("refused: {reason}");
        text.truncate(text.floor_char_boundary(MAX_CLOSE_REASON));
        connection.close(3u32.into(), text.as_bytes());
        return;
    }
    drop(_entered);
    connection.close(0u32.into(), b"bye");
}

/// True when the agent closed the connection itself on shutdown (application code 0).
fn clean_close(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        let lost = e
            .downcast_ref::<quinn::ReadExactError>()
            .and_then(|r| match r {
                quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => Some(c),
                _ => None,
            })
            .or_else(|| e.downcast_ref::<quinn::ConnectionError>());
        matches!(lost, Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == 0u32.into())
    })
}

/// The kind of a session refused before `Hello` was accepted, and what fixes it.
fn session_refusal(error: &anyhow::Error) -> (&'static str, &'static str) {
    match error.downcast_ref::<ProtocolError>() {
        Some(ProtocolError::IdentityMismatch { .. }) => (
            "identity-mismatch",
            "the agent's agent_id must be the identity in its certificate: set agent_id to it, \
             or issue a certificate for the agent's id (pitot certs init --agents <id>)",
        ),
        Some(ProtocolError::UnsupportedVersion) => (
            "version",
            "the agent and aggregator share no protocol version: upgrade the older one \
             (docs/PROTOCOL.md)",
        ),
        _ => ("other", "see the error"),
    }
}

async fn drive(
    connection: &quinn::Connection,
    agent: AgentId,
    merges: mpsc::Sender<Job>,
    stats: &Stats,
    links: &Links,
    established: &mut bool,
    on_established: &(dyn Fn() + Sync),
) -> anyhow::Result<()> {
    let (mut send, mut recv) = tokio::time::timeout(HELLO_TIMEOUT, connection.accept_bi())
        .await
        .context("no stream opened in time")??;
    let mut session = AggregatorSession::new(agent.clone());
    let mut rewind_logged = false;
    loop {
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix)
            .await
            .context("reading a frame")?;
        let len = frame_length(prefix)?;
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body)
            .await
            .context("reading a frame")?;
        let handled = decode_frame_body(&body)
            .map_err(anyhow::Error::from)
            .and_then(|frame| session.handle_frame(frame).map_err(anyhow::Error::from));
        if let Err(error) = handled {
            stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %error, "Protocol error; closing.");
            while let Some(frame) = session.poll_transmit() {
                send.write_all(&encode_frame(&frame)).await?;
            }
            let _finished = send.finish();
            return Err(error);
        }
        while let Some(event) = session.poll_event() {
            match event {
                AggregatorEvent::Established {
                    agent_version,
                    epoch,
                } => {
                    info!(version = %agent_version, epoch, "Agent connected.");
                    links.connected(
                        &agent.0,
                        &agent_version,
                        connection.remote_address(),
                        now_ms(),
                    );
                    *established = true;
                    on_established();
                }
                AggregatorEvent::InvalidBatch { seq, reason } => {
                    stats.batches_rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(seq, %reason, "Batch rejected.");
                    session.rejected(seq, reason);
                }
                AggregatorEvent::Batch { seq, batch } => {
                    let batch_epoch = batch.batch().epoch;
                    let (reply, answer) = oneshot::channel();
                    stats.merge_queue_pushed.fetch_add(1, Ordering::Relaxed);
                    merges
                        .send(Job::Merge(MergeRequest {
                            batch: *batch,
                            received_ms: now_ms(),
                            reply,
                        }))
                        .await
                        .context("merge actor gone")?;
                    match answer.await.context("merge actor gone")? {
                        Ok(MergeOutcome::Merged { kind_conflicts, .. }) => {
                            stats.batches_merged.fetch_add(1, Ordering::Relaxed);
                            stats
                                .kind_conflicts
                                .fetch_add(kind_conflicts as u64, Ordering::Relaxed);
                            session.merged(seq, false);
                        }
                        Ok(MergeOutcome::Duplicate) => {
                            stats.batches_duplicate.fetch_add(1, Ordering::Relaxed);
                            session.merged(seq, true);
                        }
                        Ok(MergeOutcome::Rewound { high_water }) => {
                            stats.batches_duplicate.fetch_add(1, Ordering::Relaxed);
                            let rewinds = stats.sequence_rewinds.fetch_add(1, Ordering::Relaxed);
                            // One line per connection and then one per thousand: a rolled-back
                            // 0.2 agent sends many.
                            if rewinds.is_multiple_of(1000) || !rewind_logged {
                                rewind_logged = true;
                                warn!(
                                    seq,
                                    high_water,
                                    epoch = batch_epoch,
                                    rewinds = rewinds + 1,
                                    "Agent's sequence went backwards (its spool was restored or \
                                     damaged): newer data under already merged sequence numbers \
                                     is discarded. Upgrade the agent to 0.3, which starts a new \
                                     epoch at every start."
                                );
                            }
                            session.merged(seq, true);
                        }
                        // Not acknowledged: the agent keeps the batch and re-sends it
                        // on its next connection.
                        Err(reason) => {
                            let admitted = MERGE_FAILURES
                                .lock()
                                .map(|mut g| g.admit(std::time::Instant::now(), "merge"))
                                .unwrap_or(Some(0));
                            if let Some(held) = admitted {
                                warn!(
                                    %reason,
                                    failures_not_logged = held,
                                    "A merge failed; the batch is not acknowledged and the agent \
                                     sends it again after backing off."
                                );
                            }
                            anyhow::bail!("merge failed: {reason}")
                        }
                    }
                }
                _ => {}
            }
        }
        while let Some(frame) = session.poll_transmit() {
            send.write_all(&encode_frame(&frame)).await?;
        }
    }
}

/// Failed merges, logged at warn once a minute across every connection (a full disk fails
/// them all).
static MERGE_FAILURES: std::sync::LazyLock<std::sync::Mutex<LogGate>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(LogGate::new(Duration::from_secs(60))));

/// The kind of a refused handshake, from its error text, and what fixes it.
fn refusal(reason: &str) -> (&'static str, &'static str) {
    let r = reason.to_ascii_lowercase();
    if r.contains("nocertificatespresented") || r.contains("no certificate") {
        (
            "no-certificate",
            "the agent sent no certificate: set uplink.cert and uplink.key in its config",
        )
    } else if r.contains("unknownissuer") || r.contains("badsignature") || r.contains("unknown ca")
    {
        (
            "unknown-ca",
            "the agent's certificate is not issued by quic.ca: issue it with the fleet's CA \
             (pitot certs init --dir <the aggregator's tls dir> --agents <id>)",
        )
    } else if r.contains("alert") || r.contains("error 4") {
        (
            "agent-refused",
            "the agent refused this aggregator's certificate: its uplink.ca or uplink.server_name \
             does not match quic.cert (see the agent's log)",
        )
    } else {
        ("other", "see the error")
    }
}
