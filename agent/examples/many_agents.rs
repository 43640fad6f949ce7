//! Many agents from one process, for the aggregator's whole-process bench (issue 16,
//! `bench/many-agents.sh`): each agent opens its own QUIC connection with its own certificate
//! (mutual TLS, as `pitot certs init` issues them), speaks the real session
//! (`pitot_shared::protocol::AgentSession`: Hello, Welcome, batches, acks in order, at most 32
//! in flight) and sends one batch of `SERIES` latency histograms every `INTERVAL_MS`, each
//! for the next 10 s interval. An ack comes only after the aggregator merged the batch durably.
//!
//! ```text
//! many_agents AGGREGATOR SERVER_NAME CERT_DIR AGENTS INTERVAL_MS SECONDS [SERIES [INTERVALS]]
//! ```
//!
//! `INTERVALS` says where the batches' intervals lie:
//! - `late` (the default): the last ends now, so every batch is older than the aggregator's
//!   rollup marks and is merged into its 1 min and 1 h buckets as well as a new 10 s one, as a
//!   spool drained after an outage is.
//! - `live`: from the current interval on, as live agents send them: each batch fills one new
//!   10 s bucket per series, and the coarser buckets are left to the aggregator's rollup timer
//!   (whose cost this load does not include: it comes later, once a minute and an hour). At a
//!   short INTERVAL_MS the intervals run ahead of the clock (600 batches are 100 minutes); what
//!   makes them live to the aggregator is that they lie past its rollup marks.
//!
//! Agents are named `load-0` … `load-{AGENTS-1}`; their certificates must be in `CERT_DIR`
//! (`pitot certs init --dir CERT_DIR --agents load-0,load-1,…`). Connections open over the
//! first third of the run at most, spread out. At the end it prints one line:
//! `agents=N connected=N sent=N acked=N rejected=N acked_per_s=X ack_ms_p50=X ack_ms_p99=X
//! errors=N`: `acked_per_s` over the time after every agent connected (or after the ramp),
//! the ack latencies of the batches sent in that time (acked before the end).

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use pitot_agent::uplink::client_config;
use pitot_shared::batch::{Batch, SeriesData, SeriesSnapshot};
use pitot_shared::config::TlsPaths;
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::protocol::{AgentSession, AgentSessionConfig, SessionEvent, SpoolId};
use pitot_shared::series::{AgentId, SeriesKey};
use pitot_shared::wire::{decode_frame_body, encode_batch, encode_frame, frame_length};
use tokio::sync::mpsc;

#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
    /// Ack latencies in µs, measured once every agent is connected.
    latencies: Mutex<Vec<u64>>,
    /// Counting starts when every agent is connected (µs since start; 0 = not yet).
    counting_since_us: AtomicU64,
}

#[derive(Debug, Clone)]
struct Args {
    aggregator: SocketAddr,
    server_name: String,
    certs: PathBuf,
    agents: usize,
    interval: Duration,
    seconds: u64,
    series: usize,
    /// Intervals from the current one on (`live`), not ending now (`late`).
    live: bool,
}

fn args() -> anyhow::Result<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() >= 6,
        "usage: many_agents AGGREGATOR SERVER_NAME CERT_DIR AGENTS INTERVAL_MS SECONDS [SERIES \
         [late|live]]"
    );
    let live = match a.get(7).map(String::as_str) {
        None | Some("late") => false,
        Some("live") => true,
        Some(other) => anyhow::bail!("INTERVALS is late or live, not {other:?}"),
    };
    Ok(Args {
        aggregator: a[0].parse().context("AGGREGATOR is ip:port")?,
        server_name: a[1].clone(),
        certs: a[2].clone().into(),
        agents: a[3].parse().context("AGENTS is a number")?,
        interval: Duration::from_millis(a[4].parse().context("INTERVAL_MS is a number")?),
        seconds: a[5].parse().context("SECONDS is a number")?,
        series: a.get(6).map_or(Ok(60), |s| s.parse()).context("SERIES")?,
        live,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One agent's 60 series: `request.latency` per model and route, about 100 latencies each,
/// tagged with the agent's host as the agent's DogStatsD path tags them.
fn series(agent: usize, n: usize) -> Vec<SeriesSnapshot> {
    (0..n)
        .map(|s| {
            let mut h = ValueHistogram::new();
            for i in 0..100u64 {
                let u = ((i * 7919 + (agent * 31 + s) as u64 * 104_729) % 1000) as f64 / 1000.0;
                let _finite = h.record(30.0 * (2.0 * u - 1.0).exp());
            }
            SeriesSnapshot {
                key: SeriesKey::new(
                    "request.latency",
                    vec![
                        ("host".into(), format!("load-{agent}")),
                        ("model".into(), format!("m{}", s % 10)),
                        ("route".into(), format!("r{}", s / 10)),
                    ],
                )
                .expect("static key"),
                data: SeriesData::Histogram(h),
            }
        })
        .collect()
}

async fn read_frames(
    mut recv: quinn::RecvStream,
    out: mpsc::Sender<anyhow::Result<pitot_shared::wire::Frame>>,
) {
    loop {
        let mut prefix = [0u8; 4];
        let frame = async {
            recv.read_exact(&mut prefix).await?;
            let mut body = vec![0u8; frame_length(prefix)?];
            recv.read_exact(&mut body).await?;
            anyhow::Ok(decode_frame_body(&body)?)
        }
        .await;
        let failed = frame.is_err();
        if out.send(frame).await.is_err() || failed {
            return;
        }
    }
}

async fn agent(
    i: usize,
    args: Args,
    endpoint: quinn::Endpoint,
    counters: Arc<Counters>,
    start: Instant,
    stop: Instant,
) -> anyhow::Result<()> {
    let name = format!("load-{i}");
    let tls = TlsPaths {
        ca: args.certs.join("ca.pem"),
        cert: args.certs.join(format!("{name}.pem")),
        key: args.certs.join(format!("{name}.key")),
    };
    let client = client_config(&tls)?;
    let connection = endpoint
        .connect_with(client, args.aggregator, &args.server_name)?
        .await
        .with_context(|| format!("{name}: handshake"))?;
    let (mut send, recv) = connection.open_bi().await?;
    let (tx, mut frames) = mpsc::channel(64);
    tokio::spawn(read_frames(recv, tx));
    let mut session = AgentSession::new(
        AgentId(name.clone()),
        1,
        "many-agents".into(),
        AgentSessionConfig::default(),
    );
    session.connecting();
    session.connected();
    let snapshot = series(i, args.series);
    let mut sent_at: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut seq = 0u64;
    let mut established = false;
    // Each batch is the next 10 s interval, one batch per interval as an agent sends them. Every
    // batch fills a new 10 s bucket, so the load is the merge, not re-merging one bucket.
    // `late`: the last ones end now (a spool drained after an outage, at a short INTERVAL_MS);
    // `live`: from the current interval on.
    let batches = (args.seconds * 1000 / args.interval.as_millis().max(1) as u64) as i64 + 2;
    let now = now_ms();
    let base_ms = now - now.rem_euclid(10_000) - if args.live { 10_000 } else { batches * 10_000 };
    // Spread the agents' ticks over one interval, as real agents' clocks are.
    let phase = args.interval.mul_f64((i as f64 * 0.618_034) % 1.0);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while let Some(frame) = session.poll_transmit() {
            send.write_all(&encode_frame(&frame)).await?;
        }
        if Instant::now() >= stop {
            connection.close(0u32.into(), b"done");
            return Ok(());
        }
        tokio::select! {
            _ = tick.tick(), if established => {
                if session.wants_batches() {
                    seq += 1;
                    let batch = Batch {
                        agent_id: AgentId(name.clone()),
                        epoch: 1,
                        seq,
                        interval_start_ms: base_ms + seq as i64 * 10_000,
                        interval_ms: 10_000,
                        agent_version: "many-agents".into(),
                        spool_bytes: 0,
                        series: snapshot.clone(),
                    };
                    session.enqueue(SpoolId(seq), encode_batch(&batch).into());
                    sent_at.push_back((seq, Instant::now()));
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            frame = frames.recv() => {
                let frame = frame.context("the stream closed")??;
                session.handle_frame(frame)?;
                while let Some(event) = session.poll_event() {
                    match event {
                        SessionEvent::Established { .. } => {
                            established = true;
                            counters.connected.fetch_add(1, Ordering::Relaxed);
                        }
                        SessionEvent::Acked(id) | SessionEvent::Rejected { id, .. } => {
                            let rejected = !matches!(event, SessionEvent::Acked(_));
                            let counter = if rejected { &counters.rejected } else { &counters.acked };
                            counter.fetch_add(1, Ordering::Relaxed);
                            while let Some((s, at)) = sent_at.front().copied() {
                                if s > id.0 {
                                    break;
                                }
                                sent_at.pop_front();
                                let since = counters.counting_since_us.load(Ordering::Relaxed);
                                if s == id.0
                                    && since > 0
                                    && at.duration_since(start).as_micros() as u64 >= since
                                    && let Ok(mut l) = counters.latencies.lock()
                                {
                                    l.push(at.elapsed().as_micros() as u64);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(stop)) => {}
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        let counters = Arc::new(Counters::default());
        let start = Instant::now();
        let stop = start + Duration::from_secs(args.seconds);
        // Connections open over the first third of the run, at most 2 s or one every 4 ms
        // (a mutual-TLS handshake costs the aggregator's one core about 1 ms; 10 000 in 2 s
        // timed out by the thousands).
        let ramp = Duration::from_secs(args.seconds)
            .div_f64(3.0)
            .min(Duration::from_secs(2).max(Duration::from_millis(4) * args.agents as u32));
        for i in 0..args.agents {
            let (args, endpoint, counters) = (args.clone(), endpoint.clone(), Arc::clone(&counters));
            let delay = ramp.mul_f64(i as f64 / args.agents.max(1) as f64);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Err(e) = agent(i, args, endpoint, Arc::clone(&counters), start, stop).await {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing_free_log(&format!("load-{i}: {e:#}"));
                }
            });
        }
        // Count from when every agent is connected (or from the ramp's end, if some never are).
        while counters.connected.load(Ordering::Relaxed) < args.agents as u64
            && start.elapsed() < ramp + Duration::from_secs(3)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let since = start.elapsed();
        counters
            .counting_since_us
            .store(since.as_micros().max(1) as u64, Ordering::Relaxed);
        let acked_before = counters.acked.load(Ordering::Relaxed);
        tokio::time::sleep_until(tokio::time::Instant::from_std(stop)).await;
        let acked_in_window = counters.acked.load(Ordering::Relaxed) - acked_before;
        let counted_s = (stop - start - since).as_secs_f64().max(1e-3);
        // Let the last acks arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut lat = counters.latencies.lock().map(|l| l.clone()).unwrap_or_default();
        lat.sort_unstable();
        let q = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p) as usize)
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        writeln!(
            std::io::stdout(),
            "agents={} connected={} sent={} acked={} rejected={} acked_per_s={:.0} ack_ms_p50={:.1} ack_ms_p99={:.1} errors={}",
            args.agents,
            counters.connected.load(Ordering::Relaxed),
            counters.sent.load(Ordering::Relaxed),
            counters.acked.load(Ordering::Relaxed),
            counters.rejected.load(Ordering::Relaxed),
            acked_in_window as f64 / counted_s,
            q(0.5),
            q(0.99),
            counters.errors.load(Ordering::Relaxed),
        )?;
        anyhow::Ok(())
    })
}

/// One line on stderr (the example has no tracing subscriber).
fn tracing_free_log(line: &str) {
    let _best_effort = writeln!(std::io::stderr(), "{line}");
}
