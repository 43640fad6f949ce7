//! `pitot-aggregator`: parse flags, set up tracing, load and validate the config (exit 64 on a
//! bad one), serve until SIGTERM or SIGINT, exit 0 (or 1 on a runtime failure).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pitot_aggregator::glue::{self, EX_USAGE};
use pitot_aggregator::{config, run};
use tracing::info;

/// Pitot aggregator: accepts agents over QUIC with mutual TLS, merges their histograms exactly
/// into an embedded store, and answers fleet questions over HTTP.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve until SIGTERM or SIGINT.
    Serve {
        /// The aggregator's TOML config (see packaging/aggregator.toml for every key).
        #[arg(
            long,
            short,
            default_value = "/etc/pitot/aggregator.toml",
            env = "PITOT_AGGREGATOR_CONFIG"
        )]
        config: PathBuf,
    },
    /// Check a config file and exit: 0 when valid, 64 with every problem listed otherwise.
    Validate {
        /// The config to check.
        #[arg(long, short, default_value = "/etc/pitot/aggregator.toml")]
        config: PathBuf,
    },
    /// Check the store (stop the aggregator first): open it as `serve` would (rebuilding a
    /// damaged sled conf, noticing lost flushes), decode every stored value, print what is
    /// wrong. Exit 0 when clean, 1 when damage was found (see docs/OPERATIONS.md, "Disk faults").
    Check {
        /// The aggregator's config (for store.dir).
        #[arg(long, short, default_value = "/etc/pitot/aggregator.toml")]
        config: PathBuf,
    },
    /// Repair the store (stop the aggregator first): what `check` does, then remove every
    /// value that does not decode and accept the state found, so the next start is clean.
    Repair {
        /// The aggregator's config (for store.dir).
        #[arg(long, short, default_value = "/etc/pitot/aggregator.toml")]
        config: PathBuf,
    },
}

/// Writes a line to stdout (the report `check` and `repair` print).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _written = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `check` and `repair`: exit 0 clean (or repaired), 1 damaged, 64 bad config.
fn check_store(path: &std::path::Path, repair: bool) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let dir = &cfg.store.dir;
    let opened = if repair {
        pitot_aggregator::store::SledStore::open(dir, cfg.store.resolutions)
    } else {
        pitot_aggregator::store::SledStore::open_to_check(dir, cfg.store.resolutions)
    };
    let mut store = match opened {
        Ok(s) => s,
        Err(e) => {
            say!(
                "{}: damaged: sled cannot open the store: {e}\n  fix: stop the aggregator if it \
                 runs, free space if the disk is full; otherwise `pitot-aggregator repair` (or \
                 `serve`) rebuilds a damaged conf or moves the store aside into \
                 store.dir/damaged-<secs>/ and starts a fresh one",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let mut damaged = false;
    for d in store.damage() {
        damaged |= d.lost_data();
        say!("{}: {}", dir.display(), d.describe());
    }
    let checks = match store.check() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: reading the store: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    for c in &checks {
        say!(
            "{:<10} {:>10} entries  {:>6} undecodable",
            c.tree,
            c.entries,
            c.bad.len()
        );
        damaged |= !c.bad.is_empty();
    }
    if repair {
        match store.repair() {
            Ok(n) => {
                say!("repaired: removed {n} undecodable values; the store opens clean now");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}: repairing: {e}", dir.display());
                ExitCode::FAILURE
            }
        }
    } else if damaged {
        say!(
            "damaged: see above. `pitot-aggregator repair` removes what does not decode; what \
             was lost cannot come back from the store (docs/OPERATIONS.md, \"Disk faults\")"
        );
        ExitCode::FAILURE
    } else {
        say!("clean");
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    glue::init_tracing();
    match cli.command {
        Command::Check { config } => check_store(&config, false),
        Command::Repair { config } => check_store(&config, true),
        Command::Validate { config } => match config::load(&config) {
            Ok(c) => {
                // What `serve` would refuse when it starts: the TLS identity and the CA.
                if let Err(e) = pitot_aggregator::server::server_config(&c.quic.tls) {
                    eprintln!(
                        "error: {}: quic.ca / quic.cert / quic.key: {e:#}\n  fix: point them \
                         at readable PEM files: the fleet CA, the aggregator's certificate and \
                         its own key (`pitot certs init` writes all three)",
                        config.display()
                    );
                    return ExitCode::from(EX_USAGE);
                }
                let tokens = match pitot_aggregator::load_tokens(&c.http) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!(
                            "error: {}: {e:#}\n  fix: each line is SHA256-HEX SCOPES LABEL, as \
                             `pitot tokens new` prints it",
                            config.display()
                        );
                        return ExitCode::from(EX_USAGE);
                    }
                };
                if let Some((cert, key)) = &c.http.tls
                    && let Err(e) = pitot_aggregator::https_config(cert, key)
                {
                    eprintln!(
                        "error: {}: http.tls_cert / http.tls_key: {e:#}\n  fix: point them at \
                         the API's certificate chain and its key (PEM)",
                        config.display()
                    );
                    return ExitCode::from(EX_USAGE);
                }
                eprintln!(
                    "{}: valid (QUIC {}, HTTP{} {}, {})",
                    config.display(),
                    c.quic.listen,
                    if c.http.tls.is_some() { "S" } else { "" },
                    c.http.listen,
                    match tokens {
                        Some(t) => format!("{} API tokens", t.len()),
                        None => "API open: no tokens file".to_owned(),
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Serve { config } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            info!(config = %config.display(), "Configuration loaded.");
            glue::run_until_signal("Aggregator", None, |shutdown| run(cfg, shutdown, None))
        }
    }
}
