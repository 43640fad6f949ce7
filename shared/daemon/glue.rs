//! What both daemons do the same way and that does I/O: tracing to stderr, running until
//! SIGTERM/SIGINT on a tokio runtime with the exit codes of the contract, and reading PEM
//! files. Written once, here, and compiled into `pitot-agent` and `pitot-aggregator` with
//! `#[path]`: it is not a module of `pitot-shared`, which stays free of runtimes and I/O (the
//! purity check in `.ci/run`), and the SPEC keeps three crates, so there is no fourth for it.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Now, Unix ms (0 if the clock is before 1970): the one clock reading of each daemon
/// (`pitot-shared` takes `now` as an argument).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Exit code for a bad config or bad flags (BSD `EX_USAGE`).
pub const EX_USAGE: u8 = 64;

/// Sets up the tracing subscriber: `RUST_LOG` or `info`, to stderr.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs `run` on a multi-threaded runtime (`worker_threads`, or one per core) until it ends;
/// SIGTERM or SIGINT cancels the token it gets. Exit 0, or 1 after logging why `daemon`
/// failed.
pub fn run_until_signal<F, Fut>(daemon: &str, worker_threads: Option<usize>, run: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "Cannot start the async runtime.");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone(), daemon.to_owned()));
        run(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "{daemon} failed.");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken, daemon: String) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("Cannot install signal handlers; stop the {daemon} with SIGKILL.");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received."),
        _ = int.recv() => info!("SIGINT received."),
    }
    shutdown.cancel();
}

/// The text of a config file, or why it cannot be read.
pub fn read_config(path: &Path) -> Result<String, pitot_shared::config::LoadError> {
    std::fs::read_to_string(path).map_err(|source| pitot_shared::config::LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The certificates in a PEM file (at least one).
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("reading the private key {}", path.display()))
}
