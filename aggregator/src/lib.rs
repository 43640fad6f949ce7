//! `pitot-aggregator`: the fleet's center. It accepts agents over QUIC with mutual TLS
//! ([`server`]), merges each batch exactly once into a sled store at several resolutions
//! ([`merge`], [`store`]), and answers over HTTP ([`api`], [`reports`]).
//!
//! [`run`] wires the pieces and is what both the binary and the demo call.

pub mod access;
pub mod alerts;
pub mod api;
pub mod audit;
pub mod config;
pub mod drift;
pub mod export;
pub mod exposition;
pub mod gate;
#[path = "../../shared/daemon/glue.rs"]
pub mod glue;
pub mod links;
pub mod merge;
pub mod model;
pub mod models;
pub mod pages;
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
use tracing::{Instrument as _, error, error_span, info};

use config::AggregatorConfig;
use store::{SledStore, Store};
use telemetry::Stats;

/// How often the merge actor is asked to roll finer buckets up into coarser ones.
const ROLLUP_EVERY: Duration = Duration::from_secs(10);
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often SLO alert states are checked for the audit trail (drift: every tenth time).
const AUDIT_WATCH_EVERY: Duration = Duration::from_secs(30);

/// The watch's period: `AUDIT_WATCH_EVERY`, or `PITOT_AGGREGATOR_WATCH_EVERY` (a test hook,
/// e.g. `1s`, so alert tests need not wait 30 s per evaluation).
fn watch_every() -> Duration {
    std::env::var("PITOT_AGGREGATOR_WATCH_EVERY")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .filter(|d| *d >= Duration::from_millis(100))
        .unwrap_or(AUDIT_WATCH_EVERY)
}

/// The tokens file: `http.tokens_file`, else the systemd credential `pitot-tokens`
/// (`LoadCredential=pitot-tokens:/etc/pitot/tokens`), else none (the API is open).
pub fn tokens_path(http: &config::HttpSettings) -> Option<std::path::PathBuf> {
    if let Some(p) = &http.tokens_file {
        return Some(p.clone());
    }
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let p = std::path::Path::new(&dir).join("pitot-tokens");
    p.exists().then_some(p)
}

/// The tokens the API takes (`None`: open), read once at start.
pub fn load_tokens(http: &config::HttpSettings) -> anyhow::Result<Option<access::Tokens>> {
    let Some(path) = tokens_path(http) else {
        return Ok(None);
    };
    access::Tokens::load(&path)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("http.tokens_file: {e}"))
}

/// The HTTPS server's TLS (HTTP/1.1, ring, the configured chain and key).
pub fn https_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_no_client_auth()
        .with_single_cert(glue::load_certs(cert)?, glue::load_key(key)?)
        .context("http.tls_cert and http.tls_key do not match")?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Where the aggregator ended up listening (useful with port 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// QUIC address.
    pub quic: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
}

/// Opens the store. sled writes while it opens a store, so on a full disk it cannot: then the
/// reserve file (space held back in `store.dir`) is released and the store opens read-only
/// (nothing is written below `store.min_free`). Without a reserve the aggregator waits instead
/// of exiting (no crash loop under systemd), answers every HTTP request with 503 "not ready:
/// store not writable", logs once a minute, and opens the store as soon as space returns.
/// Agents cannot connect meanwhile and keep spooling. `None` when shutdown came first.
async fn open_store(
    config: &AggregatorConfig,
    listener: &tokio::net::TcpListener,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<SledStore>> {
    let dir = &config.store.dir;
    let mut gate = pitot_shared::loggate::LogGate::new(Duration::from_secs(60));
    loop {
        let (d, res) = (dir.clone(), config.store.resolutions.clone());
        let opened = tokio::task::spawn_blocking(move || SledStore::open(&d, res))
            .await
            .context("store open task")?;
        match opened {
            Ok(store) => return Ok(Some(store)),
            Err(error) if error.is_disk_full() && merge::release_reserve(dir) => {
                tracing::warn!(
                    store = %dir.display(),
                    "The store's disk is full: released its reserve ({}) so sled can open it; \
                     the aggregator starts read-only until space returns.",
                    merge::RESERVE_FILE
                );
                continue;
            }
            Err(error) if error.is_disk_full() => {
                if let Some(held) = gate.admit(std::time::Instant::now(), "open") {
                    error!(
                        %error,
                        store = %dir.display(),
                        attempts_not_logged = held,
                        "Cannot open the store: its disk is full. Waiting for space (HTTP answers \
                         503, agents keep spooling); free space under store.dir."
                    );
                }
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("opening the store at {}", dir.display()));
            }
        }
        let retry = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                () = shutdown.cancelled() => return Ok(None),
                accepted = listener.accept() => {
                    if let (Ok((mut conn, _)), None) = (accepted, &config.http.tls) {
                        tokio::spawn(async move {
                            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                            // Read the request (or what arrives in a second) before answering.
                            let mut request = [0u8; 8192];
                            let _read = tokio::time::timeout(
                                Duration::from_secs(1),
                                conn.read(&mut request),
                            )
                            .await;
                            let body = "not ready: store not writable (its disk is full; free \
                                        space under store.dir)\n";
                            let reply = format!(
                                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
                                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _sent = conn.write_all(reply.as_bytes()).await;
                            let _closed = conn.shutdown().await;
                        });
                    }
                }
            }
        }
    }
}

/// Runs the aggregator until `shutdown` fires. `bound` (if given) receives the listening
/// addresses once both listeners are up.
pub async fn run(
    config: AggregatorConfig,
    shutdown: CancellationToken,
    bound: Option<oneshot::Sender<Bound>>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http.listen))?;
    let Some(mut writer) = open_store(&config, &listener, &shutdown).await? else {
        return Ok(());
    };
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
    let tokens = load_tokens(&config.http)?.map(Arc::new);
    let https = match &config.http.tls {
        Some((cert, key)) => Some(https_config(cert, key)?),
        None => None,
    };
    let stats = Arc::new(Stats::default());
    let links = Arc::new(links::Links::default());
    let endpoint = server::bind(config.quic.listen, &config.quic.tls)?;
    let quic = endpoint.local_addr().context("QUIC local address")?;
    stats.quic_up.store(true, Ordering::Relaxed);
    let http = listener.local_addr().context("HTTP local address")?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        %quic,
        %http,
        store = %config.store.dir.display(),
        "Pitot aggregator listening."
    );
    match &tokens {
        Some(t) => info!(
            tokens = t.len(),
            metrics_public = config.http.metrics_public,
            https = https.is_some(),
            "The HTTP API needs a bearer token (except /healthz)."
        ),
        None if http.ip().is_loopback() => {
            info!("The HTTP API is open to anyone on this host: no tokens file (http.tokens_file).")
        }
        None => tracing::warn!(
            %http,
            "The HTTP API is open to anyone who reaches {http}: no tokens file. Set \
             http.tokens_file (pitot tokens new) or listen on 127.0.0.1."
        ),
    }
    if tokens.is_some() && https.is_none() && !http.ip().is_loopback() {
        tracing::warn!(
            "Bearer tokens cross the network in clear: set http.tls_cert and http.tls_key."
        );
    }
    if let Some(tx) = bound {
        let _receiver_gone = tx.send(Bound { quic, http });
    }

    // The reserve is taken at start, before any agent connects, not in the first merge round.
    merge::ensure_reserve(&config.store.dir, config.store.min_free);
    // The audit trail: replayed into its chain, then this configuration recorded (with a
    // diff against the last one) before anything else can write.
    let mut health = merge::Health::new(&config.store.dir, config.store.min_free);
    stats
        .store_writable
        .store(health.has_room(), Ordering::Relaxed);
    let (writer, chain, health) = {
        let lines = config.audit_lines();
        let mut writer = writer;
        let stats = Arc::clone(&stats);
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut chain = audit::Chain::load(&writer).context("reading the audit trail")?;
            let mut entries = chain.record(glue::now_ms(), audit::Event::ConfigLoaded { lines });
            for damage in writer.damage() {
                stats.store_damage.fetch_add(1, Ordering::Relaxed);
                entries.extend(chain.record(
                    glue::now_ms(),
                    audit::Event::StoreDamaged {
                        what: damage.describe(),
                        lost_data: damage.lost_data(),
                    },
                ));
            }
            // On a full disk the aggregator still starts, read-only: the entry is lost,
            // counted and logged, and merging waits for space.
            let written = if health.has_room() {
                writer.append_audit(&entries).and_then(|()| writer.flush())
            } else {
                Err(store::StoreError::Closed)
            };
            if let Err(error) = written {
                stats
                    .audit_dropped
                    .fetch_add(entries.len() as u64, Ordering::Relaxed);
                error!(%error, "Could not record this configuration in the audit trail.");
                health.failed(&error, &stats);
                health.discard_unflushed(&mut writer, &stats);
            }
            Ok((writer, chain, health))
        })
        .await
        .context("audit task")??
    };
    let exports = Arc::new(export::Exports::new(config.exports.clone()));
    let merge::Actor {
        jobs: merges,
        thread: merge_thread,
    } = merge::spawn(
        writer,
        health,
        slos.clone(),
        chain,
        config.audit_retention,
        Arc::clone(&stats),
        Arc::clone(&exports),
    );
    let audit_sink = Arc::new(merge::AuditSink::new(merges.clone(), Arc::clone(&stats)));
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
            Arc::clone(&audit_sink),
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
    // SLO alert and input drift transitions into the audit trail.
    let alerts = Arc::new(alerts::Alerts::start(config.alerts.clone(), slos.clone()));
    let watch_every = watch_every();
    let watch_task = {
        let alerts = Arc::clone(&alerts);
        let store = Arc::clone(&store);
        let slos = slos.clone();
        let sink = Arc::clone(&audit_sink);
        let drift = config.drift.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            for tick in 0u64.. {
                tokio::select! {
                    () = tokio::time::sleep(watch_every) => {}
                    () = shutdown.cancelled() => return,
                }
                let (store, slos, drift, sink, alerts) = (
                    Arc::clone(&store),
                    slos.clone(),
                    drift.clone(),
                    Arc::clone(&sink),
                    Arc::clone(&alerts),
                );
                let watched = tokio::task::spawn_blocking(move || {
                    let drift =
                        (tick % 10 == 0).then_some((&drift.config, drift.input_prefix.as_str()));
                    let now = glue::now_ms();
                    let events = audit::watch(store.as_ref(), &slos, drift, now);
                    alerts.observe(&events, now);
                    for event in events {
                        sink.send(event);
                    }
                })
                .await;
                if let Err(error) = watched {
                    tracing::warn!(%error, "Audit watch failed.");
                }
            }
        })
    };
    let app = api::router(
        api::AppState {
            store: Arc::clone(&store),
            stats: Arc::clone(&stats),
            links,
            drift: Arc::new(config.drift.clone()),
            slos: Arc::new(slos),
            models: Arc::new(config.models.clone()),
            gates: Arc::new(config.gates.clone()),
            sloth_metrics: config.http.sloth_metrics,
            tokens,
            metrics_public: config.http.metrics_public,
            audit: Arc::clone(&audit_sink),
            exports,
            alerts,
            pages: Some(pages::HOOKS),
        },
        pages::routes(),
    );
    let http_shutdown = shutdown.clone();
    match https {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
            .context("HTTP server")?,
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                http_shutdown.cancelled().await;
                stopper.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
            axum_server::from_tcp_rustls(listener.into_std().context("HTTPS listener")?, config)
                .context("HTTPS listener")?
                .handle(handle)
                .serve(app.into_make_service())
                .await
                .context("HTTPS server")?;
        }
    }
    let _not_under_systemd = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watchdog {
        w.abort();
    }
    info!("Shutdown: HTTP closed; closing QUIC.");
    quic_task.await.context("QUIC task")?;
    prune_task.await.context("prune task")?;
    watch_task.await.context("audit watch task")?;
    rollup_task.await.context("rollup task")?;
    // Every sender is gone now (the audit sink holds one too): the merge actor drains,
    // flushes and ends.
    drop(audit_sink);
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
