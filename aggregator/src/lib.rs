//! `pitot-aggregator`: the fleet's center. It accepts agents over QUIC with mutual TLS
//! ([`server`]), merges each batch exactly once into a sled store at several resolutions
//! ([`merge`], [`store`]), and answers over HTTP ([`api`], [`reports`]).
//!
//! [`run`] wires the pieces and is what both the binary and the demo call.

pub mod api;
pub mod config;
pub mod drift;
pub mod links;
pub mod merge;
pub mod model;
pub mod reports;
pub mod server;
pub mod slo;
pub mod store;
pub mod telemetry;
pub mod units;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error_span, info, warn};

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
    let store: Arc<dyn Store> = Arc::new(
        SledStore::open(&config.store_dir, config.resolutions.clone())
            .with_context(|| format!("opening the store at {}", config.store_dir.display()))?,
    );
    let slos = {
        let store = Arc::clone(&store);
        let defs = config.slos.clone();
        tokio::task::spawn_blocking(move || store.install_slos(&defs))
            .await
            .context("SLO install task")?
            .context("installing the SLO counters")?
    };
    if !slos.is_empty() {
        info!(slos = slos.len(), "SLOs installed.");
    }
    let stats = Arc::new(Stats::default());
    let links = Arc::new(links::Links::default());
    let endpoint = server::bind(config.quic_listen, &config.tls)?;
    let quic = endpoint.local_addr().context("QUIC local address")?;
    stats.quic_up.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http_listen))?;
    let http = listener.local_addr().context("HTTP local address")?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        %quic,
        %http,
        store = %config.store_dir.display(),
        "Pitot aggregator listening."
    );
    if let Some(tx) = bound {
        let _receiver_gone = tx.send(Bound { quic, http });
    }

    let merges = merge::spawn(Arc::clone(&store), Arc::clone(&stats));
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
            merges,
            Arc::clone(&stats),
            Arc::clone(&links),
            shutdown.clone(),
        )
        .instrument(error_span!("quic")),
    );
    let prune_task = {
        let store = Arc::clone(&store);
        let stats = Arc::clone(&stats);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(PRUNE_EVERY) => {}
                    () = shutdown.cancelled() => return,
                }
                let store = Arc::clone(&store);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                match tokio::task::spawn_blocking(move || store.prune(now)).await {
                    Ok(Ok(n)) => {
                        stats.buckets_pruned.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(Err(error)) => warn!(%error, "Retention pass failed."),
                    Err(error) => warn!(%error, "Retention task failed."),
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
        sloth_metrics: config.sloth_metrics,
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
    store.flush().context("flushing the store")?;
    info!("Pitot aggregator stopped.");
    Ok(())
}
