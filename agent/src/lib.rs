//! `pitot-agent`: the daemon beside the model servers on an inference host.
//!
//! It takes DogStatsD datagrams on UDP and a Unix socket ([`ingest`]), records them into
//! per-interval histograms, counters and categorical counts, closes each interval on a
//! wall-clock boundary into a batch ([`recorder`]), writes the batch durably to a spool of checksummed files
//! ([`spool`]), and streams spooled batches over QUIC with mutual TLS to the aggregator
//! ([`uplink`]), deleting each only once the aggregator has acknowledged a durable merge.
//!
//! [`run`] wires the pieces and is what both the binary and the end-to-end tests call.
//! Shutdown runs in phases: stop the receivers, close the open interval into the spool, let
//! the uplink drain for `shutdown_grace` (every spooled batch is already on disk).

pub mod config;
#[path = "../../shared/daemon/glue.rs"]
pub mod glue;
pub mod gpu;
pub mod ingest;
pub mod recorder;
pub mod sampler;
pub mod samples;
pub mod scrape;
pub mod spool;
pub mod telemetry;
pub mod uplink;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use pitot_shared::window::align_down;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error_span, info};

use config::AgentConfig;
use ingest::{IngestLimits, IngestShared, Shard, socket};
use recorder::{Recorder, now_ms};
use spool::Spool;
use telemetry::UplinkStats;
use uplink::{Uplink, UplinkConfig};

/// Runs the agent until `shutdown` fires, then shuts down in phases and returns.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let interval_ms = config.interval.as_millis() as u64;
    let spool = Spool::open(&config.spool_dir, config.spool_max_bytes)
        .with_context(|| format!("opening spool at {}", config.spool_dir.display()))?;
    // Fail early on unreadable certificates rather than at the first connect.
    uplink::client_config(&config.tls).context("loading the uplink TLS identity")?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        agent_id = %config.agent_id,
        interval = ?config.interval,
        aggregator = %config.aggregator,
        spool = %config.spool_dir.display(),
        spooled_batches = spool.len(),
        "Pitot agent starting."
    );
    let shared = IngestShared::new(IngestLimits {
        host: config.agent_id.clone(),
        max_series: config.max_series,
        max_tags: config.max_tags,
        max_tag_bytes: config.max_tag_length,
        interval_ms,
    });
    let open_start = align_down(now_ms(), interval_ms);
    let stop = Arc::new(AtomicBool::new(false));
    let mut shards = Vec::new();
    let mut threads = Vec::new();
    let mut activated =
        socket::activated(config.receive_buffer).context("taking sockets from systemd")?;
    let udp = match (activated.udp.take(), config.udp) {
        (Some((sock, granted)), _) => {
            let addr = sock
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map_or_else(|| "?".to_owned(), |a| a.to_string());
            info!(%addr, receive_buffer = granted, "DogStatsD listening on UDP (socket from systemd).");
            Some(sock)
        }
        (None, Some(addr)) => {
            let (sock, granted) = socket::bind_udp(addr, config.receive_buffer)
                .with_context(|| format!("binding DogStatsD UDP on {addr}"))?;
            info!(%addr, receive_buffer = granted, "DogStatsD listening on UDP.");
            Some(sock)
        }
        (None, None) => None,
    };
    let mut own_unix_path = None;
    let unix = match (activated.unix.take(), &config.unix) {
        (Some((sock, granted)), _) => {
            info!(
                receive_buffer = granted,
                "DogStatsD listening on Unix socket (socket from systemd)."
            );
            Some(sock)
        }
        (None, Some(path)) => {
            let (sock, granted) = socket::bind_unix(path, config.receive_buffer, config.unix_mode)
                .with_context(|| format!("binding DogStatsD Unix socket at {}", path.display()))?;
            info!(path = %path.display(), receive_buffer = granted, "DogStatsD listening on Unix socket.");
            own_unix_path = Some(path.clone());
            Some(sock)
        }
        (None, None) => None,
    };
    if let Some(sock) = udp {
        let shard = Arc::new(Shard::new(Arc::clone(&shared), open_start));
        threads.push(socket::spawn_receiver(
            "udp",
            sock,
            socket::Pacing::Poll,
            Arc::clone(&shard),
            config.max_datagram,
            Arc::clone(&stop),
        )?);
        shards.push(shard);
    }
    if let Some(sock) = unix {
        let shard = Arc::new(Shard::new(Arc::clone(&shared), open_start));
        threads.push(socket::spawn_receiver(
            "unix",
            sock,
            socket::Pacing::Gather,
            Arc::clone(&shard),
            config.max_datagram,
            Arc::clone(&stop),
        )?);
        shards.push(shard);
    }

    // Collectors: Prometheus scrapes (one thread per target).
    let samples = samples::Samples::new(Arc::clone(&shared));
    let mut collectors = Vec::new();
    for target in &config.scrapes {
        collectors.push(
            scrape::spawn(target.clone(), Arc::clone(&samples), Arc::clone(&stop))
                .context("starting a scrape thread")?,
        );
    }

    // Host, process and GPU sampling (one thread).
    if config.sample_host || !config.processes.is_empty() || config.sample_gpu {
        match sampler::Sampler::new(
            config.sample_host,
            config.processes.clone(),
            sampler::gpus(config.sample_gpu),
        ) {
            Ok(sampler) => collectors.push(
                sampler::spawn(
                    sampler,
                    config.sample_interval,
                    Arc::clone(&samples),
                    Arc::clone(&stop),
                )
                .context("starting the sampler thread")?,
            ),
            Err(why) => tracing::warn!(%why, "No host or process sampling."),
        }
    }

    let uplink_stats = Arc::new(UplinkStats::default());
    let spooled = Arc::new(Notify::new());
    let ingest_stopped = CancellationToken::new();
    let recorder_done = CancellationToken::new();
    let recorder = Recorder {
        agent_id: config.agent_id.clone(),
        interval_ms,
        shards,
        samples: Arc::clone(&samples),
        ingest: Arc::clone(&shared),
        spool: spool.clone(),
        uplink: Arc::clone(&uplink_stats),
        spooled: Arc::clone(&spooled),
    };
    let recorder_task = {
        let ingest_stopped = ingest_stopped.clone();
        let recorder_done = recorder_done.clone();
        tokio::spawn(
            async move {
                recorder.run(ingest_stopped).await;
                recorder_done.cancel();
            }
            .instrument(error_span!("recorder", agent_id = %config.agent_id)),
        )
    };
    let uplink = Uplink {
        config: UplinkConfig {
            agent_id: config.agent_id.clone(),
            aggregator: config.aggregator.clone(),
            server_name: config.server_name.clone(),
            tls: config.tls.clone(),
            backoff_max: config.backoff_max,
            shutdown_grace: config.shutdown_grace,
        },
        spool: spool.clone(),
        spooled,
        stats: uplink_stats,
        spool_log: std::sync::Mutex::new(pitot_shared::loggate::LogGate::new(
            std::time::Duration::from_secs(60),
        )),
    };
    let uplink_task = tokio::spawn(
        uplink
            .run(recorder_done.clone())
            .instrument(error_span!("uplink", agent_id = %config.agent_id)),
    );

    // systemd (Type=notify): ready now that the sockets are read and the uplink runs; the
    // watchdog is fed while the recorder, which closes every interval, is alive.
    let _not_under_systemd = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled().map(|period| {
        let alive = recorder_done.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            while !alive.is_cancelled() && !shutdown.is_cancelled() {
                let _not_under_systemd = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                tokio::time::sleep(period / 3).await;
            }
        })
    });

    shutdown.cancelled().await;
    let _not_under_systemd = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watchdog {
        w.abort();
    }
    info!("Shutdown: stopping DogStatsD receivers.");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _joined = t.join();
        }
        for t in collectors {
            let _joined = t.join();
        }
    })
    .await
    .context("joining receiver threads")?;
    info!("Shutdown: closing the open interval.");
    ingest_stopped.cancel();
    recorder_task.await.context("recorder task")?;
    info!("Shutdown: draining the uplink.");
    uplink_task.await.context("uplink task")??;
    if let Some(path) = &own_unix_path {
        let _removed = std::fs::remove_file(path);
    }
    info!(spooled_batches = spool.len(), "Pitot agent stopped.");
    Ok(())
}
