//! `pitot-aggregator`: the fleet's center. It accepts agents over QUIC with mutual TLS
//! ([`server`]), merges each batch exactly once into a sled store at several resolutions
//! ([`merge`], [`store`]), and answers over HTTP ([`api`], [`reports`]).
//!
//! [`run`] wires the pieces and is what both the binary and the demo call.

pub mod api;
pub mod config;
pub mod drift;
#[path = "../../shared/daemon/glue.rs"]
pub mod glue;
pub mod links;
pub mod merge;
pub mod model;
pub mod models;
pub mod reports;
pub mod server;
pub mod slo;
pub mod store;
pub mod telemetry;
pub mod timeline;
pub mod units;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error_span, info};

use config::AggregatorConfig;
use store::{SledStore, Store};
use telemetry::Stats;

/// How often the merge actor is asked to roll finer buckets up into coarser ones.
const ROLLUP_EVERY: Duration = Duration::from_secs(10);
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Where the aggregator ended up listening (useful with port 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// QUIC address.
    pub quic: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
}

/// Runs the aggregator until `shutdown` fires. `bound` (if given) receives the listening
/// addresses once both listeners are up.
pub async fn run(
    config: AggregatorConfig,
    shutdown: CancellationToken,
    bound: Option<oneshot::Sender<Bound>>,
) -> anyhow::Result<()> {
    let mut writer = SledStore::open(&config.store.dir, config.store.resolutions.clone())
        .with_context(|| format!("opening the store at {}", config.store.dir.display()))?;
    let (writer, slos) = {
        let defs = config.slos.clone();
        tokio::task::spawn_blocking(move || {
            let installed = slo::install(&mut writer, &defs);
            (writer, installed)
        })
        .await
        .context("SLO install task")?
    };
    let slos = slos.context("installing the SLO counters")?;
    // The HTTP side reads; only the merge actor, which owns `writer`, writes.
    let store: Arc<dyn Store> = Arc::new(writer.reader());
    if !slos.is_empty() {
        info!(slos = slos.len(), "SLOs installed.");
    }
    let stats = Arc::new(Stats::default());
    let links = Arc::new(links::Links::default());
    let endpoint = server::bind(config.quic.listen, &config.quic.tls)?;
    let quic = endpoint.local_addr().context("QUIC local address")?;
    stats.quic_up.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http.listen))?;
    let http = listener.local_addr().context("HTTP local address")?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        %quic,
        %http,
        store = %config.store.dir.display(),
        "Pitot aggregator listening."
    );
    if let Some(tx) = bound {
        let _receiver_gone = tx.send(Bound { quic, http });
    }

    let merge::Actor {
        jobs: merges,
        thread: merge_thread,
    } = merge::spawn(writer, slos.clone(), Arc::clone(&stats));
    // Rollups run on the merge actor (the store's only writer), asked by this timer.
    let rollup_task = {
        let merges = merges.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(ROLLUP_EVERY) => {}
                    () = shutdown.cancelled() => return,
                }
                if merges.send(merge::Job::Rollup).await.is_err() {
                    return;
                }
            }
        })
    };
    // systemd (Type=notify): ready once both listeners and the merge actor are up; the
    // watchdog is fed while the merge actor (the store's only writer) is alive.
    let _not_under_systemd = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled().map(|period| {
        let merges = merges.clone();
        tokio::spawn(async move {
            while !merges.is_closed() {
                let _not_under_systemd = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                tokio::time::sleep(period / 3).await;
            }
        })
    });
    let quic_task = tokio::spawn(
        server::serve(
            endpoint,
            merges.clone(),
            Arc::clone(&stats),
            Arc::clone(&links),
            shutdown.clone(),
        )
        .instrument(error_span!("quic")),
    );
    // Retention also runs on the merge actor, asked by this timer.
    let prune_task = {
        let merges = merges.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(PRUNE_EVERY) => {}
                    () = shutdown.cancelled() => return,
                }
                if merges.send(merge::Job::Prune).await.is_err() {
                    return;
                }
            }
        })
    };
    let app = api::router(api::AppState {
        store: Arc::clone(&store),
        stats: Arc::clone(&stats),
        links,
        drift: Arc::new(config.drift.clone()),
        slos: Arc::new(slos),
        models: Arc::new(config.models.clone()),
        sloth_metrics: config.http.sloth_metrics,
    });
    let http_shutdown = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
        .await
        .context("HTTP server")?;
    let _not_under_systemd = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watchdog {
        w.abort();
    }
    info!("Shutdown: HTTP closed; closing QUIC.");
    quic_task.await.context("QUIC task")?;
    prune_task.await.context("prune task")?;
    rollup_task.await.context("rollup task")?;
    // Every sender is gone now: the merge actor drains, flushes and ends.
    drop(merges);
    if let Some(thread) = merge_thread {
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("merge thread")?
            .map_err(|_| anyhow::anyhow!("the merge thread panicked"))?;
    }
    info!("Pitot aggregator stopped.");
    Ok(())
}
