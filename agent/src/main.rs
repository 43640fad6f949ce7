//! `pitot-agent`: parse flags, set up tracing, load and validate the config (exit 64 on a bad
//! one), run until SIGTERM or SIGINT, exit 0 (or 1 on a runtime failure).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pitot_agent::glue::{self, EX_USAGE};
use pitot_agent::{config, run};
use tracing::info;

/// Pitot agent: runs beside model servers, takes in their DogStatsD metrics, folds them into
/// histograms per interval, and streams them over QUIC with mutual TLS to the aggregator.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or SIGINT.
    Run {
        /// The agent's TOML config (see packaging/agent.toml for every key).
        #[arg(
            long,
            short,
            default_value = "/etc/pitot/agent.toml",
            env = "PITOT_AGENT_CONFIG"
        )]
        config: PathBuf,
        /// Override `agent_id` from the file.
        #[arg(long)]
        agent_id: Option<String>,
    },
    /// Check a config file and exit: 0 when valid, 64 with every problem listed otherwise.
    Validate {
        /// The config to check.
        #[arg(long, short, default_value = "/etc/pitot/agent.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    glue::init_tracing();
    match cli.command {
        Command::Validate { config } => match config::load(&config) {
            Ok(c) => {
                // What `run` would refuse when it starts: the TLS identity.
                if let Err(e) = pitot_agent::uplink::client_config(&c.tls) {
                    eprintln!(
                        "error: {}: uplink.ca / uplink.cert / uplink.key: {e:#}\n  fix: point \
                         them at readable PEM files: the fleet CA, this agent's certificate and \
                         its own key (`pitot certs init` writes all three)",
                        config.display()
                    );
                    return ExitCode::from(EX_USAGE);
                }
                if std::net::ToSocketAddrs::to_socket_addrs(c.aggregator.as_str()).is_err() {
                    eprintln!(
                        "warning: uplink.aggregator `{}` does not resolve from here; the agent \
                         would keep spooling and retrying until it does",
                        c.aggregator
                    );
                }
                eprintln!(
                    "{}: valid (agent_id {}, interval {:?})",
                    config.display(),
                    c.agent_id,
                    c.interval
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Run { config, agent_id } => {
            let loaded = config::load_raw(&config).and_then(|mut raw| {
                if let Some(id) = agent_id {
                    raw.agent_id = id;
                }
                config::validate(raw, &config)
            });
            let cfg = match loaded {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            info!(config = %config.display(), "Configuration loaded.");
            glue::run_until_signal("Agent", Some(2), |shutdown| run(cfg, shutdown))
        }
    }
}
