//! The QUIC uplink: the only code that touches quinn. It drives
//! `pitot_shared::protocol::AgentSession` over one bidirectional stream per connection, feeds
//! it batches from the spool, and deletes a batch from the spool only when the session reports
//! that the aggregator acknowledged it.
//!
//! Shape: a reader task turns the receive stream into frames on a channel (so reads need not
//! be cancel-safe); the main loop `select!`s over incoming frames, the spool's notification,
//! the back-off deadline (`poll_timeout`) and shutdown, and after each step writes what
//! `poll_transmit` yields.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pitot_shared::config::TlsPaths;
use pitot_shared::loggate::LogGate;
use pitot_shared::protocol::{ALPN, AgentSession, AgentSessionConfig, SessionEvent};
use pitot_shared::series::AgentId;
use pitot_shared::wire::{Frame, WireError, decode_frame_body, encode_frame, frame_length};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::glue::{load_certs, load_key};
use crate::recorder::now_ms;
use crate::spool::Spool;
use crate::telemetry::UplinkStats;

/// QUIC keep-alive: two per idle timeout, so one lost packet does not end the connection (QUIC
/// probes a lost one again within its PTO), and a restarted aggregator's stateless reset
/// reaches the agent within 5 s. Every keep-alive costs the aggregator a packet in and an ACK
/// out: at 2 s, 10 000 idle agents were 10 000 packets a second, most of its core
/// (docs/PERFORMANCE.md, memory with many agents).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// QUIC idle timeout: a silent peer is considered gone after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a QUIC handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the uplink needs.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// Agent id.
    pub agent_id: String,
    /// `host:port` of the aggregator.
    pub aggregator: String,
    /// Name in the aggregator's certificate.
    pub server_name: String,
    /// TLS files.
    pub tls: TlsPaths,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// How long to keep draining after the recorder's last batch at shutdown.
    pub shutdown_grace: Duration,
}

/// Builds the QUIC client config: TLS 1.3, the configured CA as the only root, and this
/// agent's certificate for client authentication.
pub fn client_config(tls: &TlsPaths) -> anyhow::Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&tls.ca)? {
        roots.add(cert).context("adding the CA certificate")?;
    }
    let chain = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 setup")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("the agent certificate and key do not form a valid client identity")?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic =
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).context("QUIC TLS setup")?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).context("idle timeout")?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The uplink task.
#[derive(Debug)]
pub struct Uplink {
    /// Settings.
    pub config: UplinkConfig,
    /// The spool to drain.
    pub spool: Spool,
    /// Signalled when the recorder spooled a batch.
    pub spooled: Arc<Notify>,
    /// Counters.
    pub stats: Arc<UplinkStats>,
    /// Rate-limits the log of spool failures (a full or failing disk).
    pub spool_log: std::sync::Mutex<LogGate>,
}

enum Outcome {
    /// The connection ended; reconnect after back-off.
    Lost(LinkError),
    /// Shutdown: everything drained or the grace period ran out.
    Done,
}

impl Uplink {
    /// Runs until `recorder_done` fires and the spool is drained (or the grace period ends).
    pub async fn run(self, recorder_done: CancellationToken) -> anyhow::Result<()> {
        let client = client_config(&self.config.tls)?;
        let mut session = AgentSession::new(
            AgentId(self.config.agent_id.clone()),
            self.spool.epoch(),
            env!("CARGO_PKG_VERSION").to_owned(),
            AgentSessionConfig {
                backoff_max: self.config.backoff_max,
                ..AgentSessionConfig::default()
            },
        );
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut failures = LogGate::new(Duration::from_secs(60));
        loop {
            if deadline.is_none() && recorder_done.is_cancelled() {
                deadline = Some(tokio::time::Instant::now() + self.config.shutdown_grace);
            }
            if deadline.is_some() && self.spool.is_empty() {
                return Ok(());
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                warn!(
                    spooled = self.spool.len(),
                    "Shutdown grace period over; unsent batches stay in the spool for next start."
                );
                return Ok(());
            }
            session.handle_timeout(Instant::now());
            let mut connect = false;
            while let Some(event) = session.poll_event() {
                if event == SessionEvent::Connect {
                    connect = true;
                }
            }
            if connect {
                session.connecting();
                match self.connect(&client).await {
                    Ok(connection) => {
                        failures.reset();
                        match self
                            .serve(&connection, &mut session, &recorder_done, &mut deadline)
                            .await
                        {
                            Outcome::Done => {
                                connection.close(0u32.into(), b"shutdown");
                                return Ok(());
                            }
                            Outcome::Lost(why) => {
                                let why = why.to_string();
                                let (kind, fix) = connect_failure(&why);
                                if let Some(held) = failures.admit(Instant::now(), kind) {
                                    warn!(
                                        reason = %why,
                                        fix,
                                        spooled_batches = self.spool.len(),
                                        failures_not_logged = held,
                                        "Uplink connection lost; reconnecting."
                                    );
                                }
                                connection.close(1u32.into(), b"error");
                            }
                        }
                    }
                    Err(error) => {
                        let reason = format!("{error:#}");
                        let (kind, fix) = connect_failure(&reason);
                        if let Some(held) = failures.admit(Instant::now(), kind) {
                            warn!(
                                aggregator = %self.config.aggregator,
                                server_name = %self.config.server_name,
                                spooled_batches = self.spool.len(),
                                failures_not_logged = held,
                                error = %reason,
                                fix,
                                "Cannot connect to the aggregator; batches stay in the spool."
                            );
                        } else {
                            debug!(error = %reason, "Uplink connect failed.");
                        }
                    }
                }
                session.disconnected(Instant::now(), rand::random::<f64>());
                continue;
            }
            let wake = session
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1));
            let wake = deadline.map_or(wake, |d| wake.min(d));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = recorder_done.cancelled(), if deadline.is_none() => {}
            }
        }
    }

    async fn connect(&self, client: &quinn::ClientConfig) -> anyhow::Result<quinn::Connection> {
        let addr: SocketAddr = tokio::net::lookup_host(&self.config.aggregator)
            .await
            .with_context(|| format!("resolving {}", self.config.aggregator))?
            .next()
            .with_context(|| format!("{} resolved to no address", self.config.aggregator))?;
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let mut endpoint = quinn::Endpoint::client(bind).context("opening a UDP socket")?;
        endpoint.set_default_client_config(client.clone());
        let connecting = endpoint.connect(addr, &self.config.server_name)?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .context("handshake timed out")??;
        Ok(connection)
    }

    async fn serve(
        &self,
        connection: &quinn::Connection,
        session: &mut AgentSession,
        recorder_done: &CancellationToken,
        deadline: &mut Option<tokio::time::Instant>,
    ) -> Outcome {
        let (mut send, recv) = match connection.open_bi().await {
            Ok(s) => s,
            Err(e) => return Outcome::Lost(LinkError::Open(e)),
        };
        let (frames_tx, mut frames) = mpsc::channel(64);
        let reader = tokio::spawn(read_frames(recv, frames_tx));
        session.connected();
        let outcome = loop {
            if let Err(e) = self.feed(session) {
                self.spool_failure(&e, "Reading the spool failed; retrying.");
            }
            if let Err(e) = flush(session, &mut send).await {
                break Outcome::Lost(LinkError::Write(e));
            }
            if deadline.is_some() && self.spool.is_empty() && session.queued() == 0 {
                break Outcome::Done;
            }
            let grace =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(Ok(frame)) => {
                        if let Err(e) = session.handle_frame(frame) {
                            break Outcome::Lost(LinkError::Protocol(e));
                        }
                        self.handle_events(session);
                    }
                    Some(Err(e)) => break Outcome::Lost(e),
                    None => break Outcome::Lost(LinkError::Closed),
                },
                () = self.spooled.notified() => {}
                () = recorder_done.cancelled(), if deadline.is_none() => {
                    *deadline = Some(tokio::time::Instant::now() + self.config.shutdown_grace);
                }
                () = tokio::time::sleep_until(grace), if deadline.is_some() => {
                    warn!(spooled = self.spool.len(), "Shutdown grace period over; unsent batches stay in the spool.");
                    break Outcome::Done;
                }
            }
        };
        reader.abort();
        outcome
    }

    /// Logs a spool failure, at most one line a minute with the count held back.
    fn spool_failure(&self, error: &crate::spool::SpoolError, what: &'static str) {
        let mut gate = self.spool_log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = gate.admit(Instant::now(), "spool") {
            error!(%error, failures_not_logged = held, "{what}");
        }
    }

    fn feed(&self, session: &mut AgentSession) -> Result<(), crate::spool::SpoolError> {
        while session.wants_batches() {
            let room = 64usize.saturating_sub(session.queued()).max(1);
            let entries = self.spool.peek_after(session.last_enqueued(), room)?;
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                session.enqueue(entry.id, entry.payload);
            }
        }
        Ok(())
    }

    fn handle_events(&self, session: &mut AgentSession) {
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::Acked(id) => {
                    match self.spool.ack(id) {
                        Ok(Some(header)) => {
                            let end = header.interval_start_ms + header.interval_ms as i64;
                            self.stats.delivered(end, now_ms());
                        }
                        Ok(None) => {}
                        Err(error) => self.spool_failure(
                            &error,
                            "Could not remove an acknowledged batch; it is not sent again and \
                             its removal is retried.",
                        ),
                    }
                    self.stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                SessionEvent::Rejected { id, reason } => {
                    error!(seq = id.0, %reason, "Aggregator rejected a batch; its data is lost.");
                    if let Err(error) = self.spool.ack(id) {
                        self.spool_failure(&error, "Could not remove a rejected batch.");
                    }
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
                SessionEvent::Established { version } => {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    info!(version, aggregator = %self.config.aggregator, "Uplink connected.");
                }
                _ => {}
            }
        }
    }
}

/// Writes every frame the session has to send.
async fn flush(
    session: &mut AgentSession,
    send: &mut quinn::SendStream,
) -> Result<(), quinn::WriteError> {
    while let Some(frame) = session.poll_transmit() {
        send.write_all(&encode_frame(&frame)).await?;
    }
    Ok(())
}

/// An error with its causes ("connection lost: closed by peer: …"), so the reason the
/// aggregator gave when it closed the connection reaches the log.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why an established uplink connection ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    /// Opening the stream failed.
    #[error("opening the stream: {}", with_causes(.0))]
    Open(quinn::ConnectionError),
    /// Writing a frame failed.
    #[error("writing a frame: {}", with_causes(.0))]
    Write(quinn::WriteError),
    /// Reading a frame failed (the cause chain carries the aggregator's close reason).
    #[error("{}", with_causes(.0))]
    Read(quinn::ReadExactError),
    /// A frame from the aggregator did not decode (or was over the size limit).
    #[error("an invalid frame from the aggregator: {0}")]
    Decode(WireError),
    /// The session refused a frame.
    #[error("{0}")]
    Protocol(pitot_shared::protocol::ProtocolError),
    /// The aggregator closed the stream.
    #[error("stream closed")]
    Closed,
}

/// Reads length-prefixed frames until the stream ends, forwarding each (or the error).
async fn read_frames(mut recv: quinn::RecvStream, out: mpsc::Sender<Result<Frame, LinkError>>) {
    loop {
        let mut prefix = [0u8; 4];
        if let Err(e) = recv.read_exact(&mut prefix).await {
            let _closed = out.send(Err(LinkError::Read(e))).await;
            return;
        }
        let result = match frame_length(prefix) {
            Ok(len) => {
                let mut body = vec![0u8; len];
                match recv.read_exact(&mut body).await {
                    Ok(()) => decode_frame_body(&body).map_err(LinkError::Decode),
                    Err(e) => Err(LinkError::Read(e)),
                }
            }
            Err(e) => Err(LinkError::Decode(e)),
        };
        let failed = result.is_err();
        if out.send(result).await.is_err() || failed {
            return;
        }
    }
}

/// The kind of a failed connect, from its error text, and what fixes it.
fn connect_failure(reason: &str) -> (&'static str, &'static str) {
    let r = reason.to_ascii_lowercase();
    if r.contains("aborted by peer") && r.contains("invalid peer certificate") {
        (
            "refused",
            "the aggregator refused this agent's certificate: uplink.cert must be issued by the \
             CA in the aggregator's quic.ca",
        )
    } else if r.contains("identity") || r.contains("claims") {
        (
            "identity",
            "agent_id must be the name in this agent's certificate (uplink.cert)",
        )
    } else if r.contains("supported version") {
        (
            "version",
            "the aggregator and this agent share no protocol version: upgrade the aggregator \
             first (docs/OPERATIONS.md, Upgrading)",
        )
    } else if r.contains("resolv") {
        (
            "resolve",
            "uplink.aggregator does not resolve: check the host name (host:port)",
        )
    } else if r.contains("timed out") {
        (
            "timeout",
            "no QUIC answer from uplink.aggregator: is the aggregator running, is this its \
             [quic] listen port (default 7443), does the network pass UDP to it?",
        )
    } else if r.contains("notvalidforname") || r.contains("not valid for name") {
        (
            "server-name",
            "uplink.server_name is not the name in the aggregator's certificate (pitot certs \
             init --aggregator-name; default pitot-aggregator)",
        )
    } else if r.contains("unknownissuer")
        || r.contains("unknown issuer")
        || r.contains("badsignature")
    {
        (
            "unknown-ca",
            "the aggregator's certificate is not signed by uplink.ca: use the fleet's ca.pem",
        )
    } else if r.contains("alert") || r.contains("error 4") {
        (
            "refused",
            "the aggregator refused this agent's certificate: uplink.cert must be issued by the \
             CA in the aggregator's quic.ca",
        )
    } else if r.contains("connection lost") {
        (
            "lost",
            "the aggregator went away; reconnecting with back-off",
        )
    } else {
        ("other", "see the error")
    }
}
