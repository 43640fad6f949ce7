//! `pitot`: the CLI. Parses flags and dispatches to the library's modules.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use pitot::loadgen::{LoadSpec, Target};
use pitot::{certs, demo, loadgen, report};
use tokio_util::sync::CancellationToken;

/// Pitot: fleet monitoring for AI model servers. Exact fleet latency quantiles from agents that
/// fold DogStatsD metrics into histograms and stream them over QUIC with mutual TLS.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an aggregator, three agents and a synthetic load on loopback, with live tables.
    Demo {
        /// Stop by itself after this long (e.g. "30s"); without it, Ctrl-C stops the demo.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// DogStatsD lines per second per agent.
        #[arg(long, default_value_t = 3000)]
        rate: u64,
        /// Where the HTTP API listens.
        #[arg(long, default_value = "127.0.0.1:7070")]
        http: String,
        /// How often to print the live table (e.g. "2s").
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        every: Duration,
        /// Make the demo's API take only this bearer token (as with a tokens file); without
        /// it, the API is open on loopback.
        #[arg(long, env = "PITOT_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Print reports from a running aggregator.
    Report {
        /// What to report.
        #[arg(value_enum)]
        what: ReportKind,
        #[command(flatten)]
        api: Api,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Metric: for `latency` (default request.latency), for `counters` (default
        /// request.count); for `drift` one series name (default: every input.* series).
        #[arg(long)]
        metric: Option<String>,
        /// Tags to group `latency` and `counters` by, comma-separated (default: those of
        /// host and model that the metric's series have).
        #[arg(long)]
        group_by: Option<String>,
        /// Start of the range (RFC 3339, Unix seconds, or now-1h; default now-1h, and for
        /// `timeline` everything kept).
        #[arg(long)]
        from: Option<String>,
        /// Tag filter `key:value`; repeat for several.
        #[arg(long)]
        tag: Vec<String>,
        /// Drift comparison: temporal, hosts or versions.
        #[arg(long, default_value = "temporal")]
        mode: String,
        /// Drift reference window start (temporal), e.g. now-8d.
        #[arg(long)]
        ref_from: Option<String>,
        /// Drift reference window end (temporal), e.g. now-1d.
        #[arg(long)]
        ref_to: Option<String>,
        /// A named reference window from the aggregator's [drift.reference].
        #[arg(long)]
        reference: Option<String>,
        /// Versions mode: the baseline version.
        #[arg(long)]
        a: Option<String>,
        /// SLO report: evaluate at this time instead of now (RFC 3339, Unix seconds, now-2h).
        #[arg(long)]
        at: Option<String>,
        /// SLO report: only the SLO with this name.
        #[arg(long)]
        slo: Option<String>,
        /// Versions mode: the candidate version.
        #[arg(long)]
        b: Option<String>,
        /// Timeline: the model (its `model` tag value); models: only this model.
        #[arg(long)]
        model: Option<String>,
        /// Models: the window, `month` (the calendar month so far) or a duration back from
        /// now (`7d`); default the last 24 hours (or --from).
        #[arg(long)]
        window: Option<String>,
    },
    /// Deployment gate: is a candidate version worse than its baseline? Prints the decision
    /// and each check's evidence; exits 0 pass, 1 fail, 2 inconclusive (64 on a usage error).
    Gate {
        /// A gate declared in the aggregator's config (`[[gate]]`); or give --model,
        /// --baseline and --candidate.
        name: Option<String>,
        #[command(flatten)]
        api: Api,
        /// The model (ad hoc).
        #[arg(long)]
        model: Option<String>,
        /// The baseline's tags, comma-separated (ad hoc), e.g. version:v1.
        #[arg(long)]
        baseline: Option<String>,
        /// The candidate's tags, comma-separated (ad hoc), e.g. version:v2.
        #[arg(long)]
        candidate: Option<String>,
        /// Window start (default: the gate's window back from now; ad hoc 15 minutes).
        #[arg(long)]
        from: Option<String>,
        /// The window as a duration back from now, e.g. 30m.
        #[arg(long)]
        window: Option<String>,
        /// The latency histogram (default: the gate's, the model's, or the known names).
        #[arg(long)]
        latency_metric: Option<String>,
        /// Allowed latency ratio, e.g. 1.1.
        #[arg(long)]
        max_ratio: Option<String>,
        /// Ask again every 10 s until the decision is pass or fail, for at most this long
        /// (then inconclusive), e.g. 10m; an aggregator that does not answer meanwhile is
        /// asked again too.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read and check the aggregator's tamper-evident audit trail (needs the `audit` scope).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Make API bearer tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Make certificates for a fleet.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Send DogStatsD traffic at a given rate (for tests, benchmarks and trying things out).
    Loadgen {
        /// UDP destination (ip:port).
        #[arg(long, conflicts_with = "unix")]
        udp: Option<SocketAddr>,
        /// Unix datagram socket destination.
        #[arg(long)]
        unix: Option<PathBuf>,
        /// On a Unix socket, drop (and count) when the queue is full, like DogStatsD clients.
        #[arg(long)]
        nonblocking: bool,
        /// Lines per second; 0 sends as fast as possible.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// How long to send.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Stop after this many lines instead.
        #[arg(long)]
        lines: Option<u64>,
        /// Lines per datagram.
        #[arg(long, default_value_t = 30)]
        per_datagram: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Models as model:version; repeat for several.
        #[arg(long, default_value = "llama3:v1")]
        model: Vec<String>,
        /// Distinct latency metric names per model.
        #[arg(long, default_value_t = 1)]
        metrics: usize,
        /// Every n-th line is a request.count counter (0 = never).
        #[arg(long, default_value_t = 0)]
        counter_every: u64,
        /// Pre-generate this many datagrams and cycle through them (for benchmarks).
        #[arg(long)]
        replay: Option<usize>,
        /// Plain StatsD: the model goes in the metric name, no DogStatsD tags.
        #[arg(long)]
        plain: bool,
        /// Every n-th line is a model input (input.prompt_tokens, input.language); 0 = none.
        #[arg(long, default_value_t = 0)]
        inputs_every: u64,
        /// Inject input drift after this long (longer prompts, a new language), e.g. "30s".
        #[arg(long, value_parser = humantime::parse_duration)]
        drift_after: Option<Duration>,
        /// Which lines: `latency` (timers, shaped by the flags above) or `tagged`, a realistic
        /// mix of timers, counters with a status, token distributions and language sets, each
        /// tagged with one of 4 models and 2 versions (`--plain` puts the tags in the name).
        #[arg(long, value_enum, default_value_t = MixArg::Latency)]
        mix: MixArg,
    },
}

/// `pitot loadgen --mix`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum MixArg {
    /// Latency timers (and counters and inputs as the flags say).
    Latency,
    /// 35 % timers, 35 % counters, 20 % distributions, 10 % sets, 2-3 tags each.
    Tagged,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportKind {
    /// Latency quantiles per group and fleet-wide.
    Latency,
    /// Counter totals and rates per group and fleet-wide (requests, tokens, errors).
    Counters,
    /// Agents seen, their lag and spool.
    Agents,
    /// Input drift: temporal, host against the rest, or version against version.
    Drift,
    /// SLOs: SLI, error budget left, burn rates, alert state, worst hosts.
    Slo,
    /// Deployment timeline of a model (--model): which version served on which host, when.
    Timeline,
    /// Models: owner, live versions, traffic, SLOs, drift, GPU-hours and cost (default 24 h).
    Models,
}

/// How to reach the aggregator's API.
#[derive(Debug, clap::Args)]
struct Api {
    /// The aggregator's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    url: String,
    /// Bearer token for an API with a tokens file (`pitot tokens new` makes one).
    #[arg(long, env = "PITOT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// For an https:// URL signed by a private CA: that CA's certificate (PEM).
    #[arg(long, env = "PITOT_CA")]
    ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List entries, oldest first.
    List {
        #[command(flatten)]
        api: Api,
        /// Start (RFC 3339, Unix seconds, now-1d); default everything kept.
        #[arg(long)]
        from: Option<String>,
        /// Only this kind, or kinds under a prefix (`agent.`, `token.denied`).
        #[arg(long)]
        kind: Option<String>,
        /// One JSON object per line (an export), instead of a table.
        #[arg(long)]
        jsonl: bool,
    },
    /// Walk the hash chain; exit 1 and name the first broken entry if it does not hold.
    Verify {
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Print a new token once, and the line to add to the aggregator's tokens file (which
    /// holds only its SHA-256 digest).
    New {
        /// Who holds it (in the aggregator's log and audit trail).
        #[arg(long)]
        name: String,
        /// `read` (every report), `read:model:<name>` (one model), `audit`, `admin`; repeat
        /// or comma-separate for several.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Write a CA (or reuse the one in --dir), the aggregator's certificate and one per agent.
    Init {
        /// Output directory.
        #[arg(long)]
        dir: PathBuf,
        /// DNS name in the aggregator's certificate (agents' `uplink.server_name`).
        #[arg(long, default_value = "pitot-aggregator")]
        aggregator_name: String,
        /// Agent ids, comma-separated (each becomes `<id>.pem` / `<id>.key`). Existing
        /// certificates are kept: run it again with new names to add agents.
        #[arg(long, value_delimiter = ',')]
        agents: Vec<String>,
        /// Replace these existing certificates (`aggregator` and/or agent ids, comma-separated);
        /// what is replaced is listed. Without it nothing that exists is touched.
        #[arg(long, value_delimiter = ',')]
        reissue: Vec<String>,
    },
}

/// Exit code of a usage error (sysexits' EX_USAGE), as the daemons use: `pitot gate` gives
/// 2 its own meaning (inconclusive).
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let usage = e.use_stderr();
            let _printed = e.print();
            return if usage {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Command::Gate { .. } = &cli.command {
        return match gate(cli.command) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EX_USAGE)
            }
        };
    }
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `pitot gate`: the decision's exit code (0 pass, 1 fail, 2 inconclusive); an `Err` is a
/// usage or connection problem (exit 64).
fn gate(command: Command) -> anyhow::Result<u8> {
    let Command::Gate {
        name,
        api,
        model,
        baseline,
        candidate,
        from,
        window,
        latency_metric,
        max_ratio,
        wait,
        json,
    } = command
    else {
        anyhow::bail!("not a gate command");
    };
    let client = report::Client::with_access(&api.url, api.token, api.ca.as_deref())?;
    let mut q: Vec<(&str, String)> = Vec::new();
    let path = match (&name, &model, &baseline, &candidate) {
        (Some(n), None, None, None) => format!("/api/v1/gate/{n}"),
        (None, Some(m), Some(b), Some(c)) => {
            q.extend([
                ("model", m.clone()),
                ("baseline", b.clone()),
                ("candidate", c.clone()),
            ]);
            "/api/v1/gate".to_owned()
        }
        _ => anyhow::bail!(
            "give a gate's NAME, or --model, --baseline and --candidate (e.g. pitot gate \
             --model llama3 --baseline version:v1 --candidate version:v2)"
        ),
    };
    for (k, v) in [
        ("from", &from),
        ("window", &window),
        ("latency_metric", &latency_metric),
        ("max_ratio", &max_ratio),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    let deadline = wait.map(|w| std::time::Instant::now() + w);
    let stderr = std::io::stderr();
    let report: pitot_aggregator::gate::GateReport = loop {
        let asked = client
            .get(&path, &q)
            .and_then(|v| report::typed::<pitot_aggregator::gate::GateReport>(&v));
        let r = match (asked, deadline) {
            (Ok(r), _) => r,
            // While waiting, an aggregator that does not answer (a restart) is asked again.
            (Err(e), Some(d)) if std::time::Instant::now() < d => {
                writeln!(stderr.lock(), "{e:#}; asking again in 10 s")?;
                std::thread::sleep(Duration::from_secs(10).min(d - std::time::Instant::now()));
                continue;
            }
            (Err(e), _) => return Err(e),
        };
        let settled = r.decision != pitot_shared::gate::Verdict::Inconclusive;
        match deadline {
            Some(d) if !settled && std::time::Instant::now() < d => {
                writeln!(
                    stderr.lock(),
                    "inconclusive ({} baseline, {} candidate requests); asking again in 10 s",
                    r.baseline.requests,
                    r.candidate.requests
                )?;
                std::thread::sleep(Duration::from_secs(10).min(d - std::time::Instant::now()));
            }
            _ => break r,
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report::gate_table(&report))?;
    }
    Ok(match report.decision {
        pitot_shared::gate::Verdict::Pass | pitot_shared::gate::Verdict::Warn => 0,
        pitot_shared::gate::Verdict::Fail => 1,
        pitot_shared::gate::Verdict::Inconclusive => 2,
    })
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Demo {
            duration,
            rate,
            http,
            every,
            token,
        } => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
            let _already = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
            drop(out);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let stop = CancellationToken::new();
                let ctrl_c = stop.clone();
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        ctrl_c.cancel();
                    }
                });
                let mut out = std::io::stdout();
                demo::run(
                    demo::DemoOptions {
                        duration,
                        rate,
                        http,
                        every,
                        token,
                    },
                    stop,
                    &mut out,
                )
                .await
            })
        }
        Command::Report {
            what,
            api,
            json,
            metric,
            group_by,
            from,
            tag,
            mode,
            ref_from,
            ref_to,
            reference,
            a,
            b,
            at,
            slo,
            model,
            window,
        } => {
            let client = report::Client::with_access(&api.url, api.token, api.ca.as_deref())?;
            let window_from = from.clone().unwrap_or_else(|| "now-1h".to_owned());
            let group_by = match (&group_by, what) {
                (Some(g), _) => g.clone(),
                (None, ReportKind::Latency | ReportKind::Counters) => {
                    let metric = metric.as_deref().unwrap_or(match what {
                        ReportKind::Counters => "request.count",
                        _ => "request.latency",
                    });
                    report::default_group_by(&client, metric, &tag)?
                }
                (None, _) => String::new(),
            };
            let value = match what {
                ReportKind::Latency => {
                    let metric = metric.as_deref().unwrap_or("request.latency");
                    report::latency(&client, metric, &group_by, &window_from, &tag)?
                }
                ReportKind::Counters => {
                    let metric = metric.as_deref().unwrap_or("request.count");
                    report::counters(&client, metric, &group_by, &window_from, &tag)?
                }
                ReportKind::Agents => client.get("/api/v1/agents", &[])?,
                ReportKind::Drift => {
                    let mut q = vec![("mode", mode.clone()), ("from", window_from.clone())];
                    let optional = [
                        ("metric", &metric),
                        ("ref_from", &ref_from),
                        ("ref_to", &ref_to),
                        ("reference", &reference),
                        ("a", &a),
                        ("b", &b),
                    ];
                    for (k, v) in optional {
                        if let Some(v) = v {
                            q.push((k, v.clone()));
                        }
                    }
                    q.extend(tag.iter().map(|t| ("tag", t.clone())));
                    client.get("/api/v1/drift", &q)?
                }
                ReportKind::Timeline => {
                    let Some(model) = &model else {
                        anyhow::bail!("`report timeline` needs --model NAME (its model tag)");
                    };
                    let q: Vec<(&str, String)> = from.iter().map(|f| ("from", f.clone())).collect();
                    client.get(&format!("/api/v1/models/{model}/timeline"), &q)?
                }
                ReportKind::Models => {
                    let mut q: Vec<(&str, String)> =
                        from.iter().map(|f| ("from", f.clone())).collect();
                    q.extend(window.iter().map(|w| ("window", w.clone())));
                    match &model {
                        Some(name) => {
                            let one = client.get(&format!("/api/v1/models/{name}"), &q)?;
                            let (from, to) = (one["from"].clone(), one["to"].clone());
                            serde_json::json!({ "from": from, "to": to, "models": [one] })
                        }
                        None => client.get("/api/v1/models", &q)?,
                    }
                }
                ReportKind::Slo => {
                    let q: Vec<(&str, String)> = at.iter().map(|t| ("at", t.clone())).collect();
                    match &slo {
                        Some(name) => {
                            let one = client.get(&format!("/api/v1/slo/{name}"), &q)?;
                            serde_json::json!({ "slos": [one] })
                        }
                        None => client.get("/api/v1/slo", &q)?,
                    }
                }
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                let text = match what {
                    ReportKind::Latency => {
                        report::latency_table(&report::typed(&value)?, &group_by)
                    }
                    ReportKind::Counters => {
                        report::counters_table(&report::typed(&value)?, &group_by)
                    }
                    ReportKind::Agents => report::agents_table(&report::typed(&value)?),
                    ReportKind::Drift => report::drift_table(&report::typed(&value)?),
                    ReportKind::Slo => report::slo_table(&report::typed(&value)?),
                    ReportKind::Timeline => report::timeline_table(&report::typed(&value)?),
                    ReportKind::Models => report::models_table(&report::typed(&value)?),
                };
                write!(out, "{text}")?;
            }
            Ok(())
        }
        Command::Gate { .. } => anyhow::bail!("pitot gate runs from main"),
        Command::Audit {
            command:
                AuditCommand::List {
                    api,
                    from,
                    kind,
                    jsonl,
                },
        } => {
            let client = report::Client::with_access(&api.url, api.token, api.ca.as_deref())?;
            let mut q: Vec<(&str, String)> = from.iter().map(|f| ("from", f.clone())).collect();
            q.extend(kind.iter().map(|k| ("kind", k.clone())));
            let list: pitot_aggregator::api::AuditList =
                report::typed(&client.get("/api/v1/audit", &q)?)?;
            if jsonl {
                for e in &list.entries {
                    writeln!(out, "{}", serde_json::to_string(e)?)?;
                }
            } else {
                write!(out, "{}", report::audit_table(&list.entries))?;
            }
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Verify { api },
        } => {
            let client = report::Client::with_access(&api.url, api.token, api.ca.as_deref())?;
            let v: pitot_aggregator::audit::Verification =
                report::typed(&client.get("/api/v1/audit/verify", &[])?)?;
            match &v.broken {
                None => {
                    writeln!(
                        out,
                        "Audit trail intact: {} entries ({} … {}), head {}",
                        v.entries,
                        v.first_seq.map_or("-".into(), |s| s.to_string()),
                        v.last_seq.map_or("-".into(), |s| s.to_string()),
                        v.head.as_deref().unwrap_or("-")
                    )?;
                    if v.first_seq.is_some_and(|s| s > 1) {
                        writeln!(
                            out,
                            "(entries before {} were removed by audit.retention)",
                            v.first_seq.unwrap_or(1)
                        )?;
                    }
                    Ok(())
                }
                Some(b) => anyhow::bail!(
                    "the audit trail is broken at entry {}: {} ({} entries walked)",
                    b.seq,
                    b.reason,
                    v.entries
                ),
            }
        }
        Command::Tokens {
            command: TokensCommand::New { name, scope },
        } => {
            anyhow::ensure!(
                !name.trim().is_empty() && !name.contains('#') && !name.contains('\n'),
                "--name must be a label without '#', e.g. grafana"
            );
            let scopes = scope
                .iter()
                .map(|s| pitot_aggregator::access::Scope::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let token = pitot_aggregator::access::new_token().map_err(|e| anyhow::anyhow!(e))?;
            writeln!(
                out,
                "Token for {name} (shown once; hand it to the client, e.g. PITOT_TOKEN):\n  \
                 {token}\nAdd this line to the aggregator's tokens file (http.tokens_file) and \
                 restart it:\n  {}",
                pitot_aggregator::access::file_line(&name, &token, &scopes)
            )?;
            Ok(())
        }
        Command::Certs {
            command:
                CertsCommand::Init {
                    dir,
                    aggregator_name,
                    agents,
                    reissue,
                },
        } => {
            let written = certs::init_with(&dir, &aggregator_name, &agents, &reissue)?;
            if written.reused_ca {
                writeln!(out, "Reused the CA in {}.", dir.display())?;
            }
            for f in &written.kept {
                writeln!(out, "kept {} (exists; --reissue replaces it)", f.display())?;
            }
            for r in &written.replaced {
                writeln!(out, "replaced {r}")?;
            }
            for f in &written.files {
                writeln!(out, "wrote {}", f.display())?;
            }
            Ok(())
        }
        Command::Loadgen {
            udp,
            unix,
            nonblocking,
            rate,
            duration,
            lines,
            per_datagram,
            seed,
            model,
            metrics,
            counter_every,
            replay,
            plain,
            inputs_every,
            drift_after,
            mix,
        } => {
            let target = match (udp, unix) {
                (_, Some(path)) => Target::Unix {
                    path,
                    blocking: !nonblocking,
                },
                (Some(addr), None) => Target::Udp(addr),
                (None, None) => Target::Udp(([127, 0, 0, 1], 8125).into()),
            };
            let models = model
                .iter()
                .map(|m| match m.split_once(':') {
                    Some((a, b)) => (a.to_owned(), b.to_owned()),
                    None => (m.clone(), "v1".to_owned()),
                })
                .collect();
            let spec = LoadSpec {
                target,
                rate,
                duration: if lines.is_some() {
                    None
                } else {
                    Some(duration)
                },
                lines,
                per_datagram,
                seed,
                models,
                metrics,
                counter_every,
                replay,
                plain,
                inputs_every,
                drift_after,
                mix: match mix {
                    MixArg::Latency => loadgen::Mix::Latency,
                    MixArg::Tagged => loadgen::Mix::Tagged,
                },
                ..LoadSpec::default()
            };
            let s = loadgen::run(&spec, &|| false)?;
            writeln!(
                out,
                "sent {} lines in {} datagrams over {:.2}s ({:.0} lines/s); {} datagrams ({} lines) refused",
                s.lines,
                s.datagrams,
                s.elapsed.as_secs_f64(),
                s.lines as f64 / s.elapsed.as_secs_f64().max(1e-9),
                s.send_errors,
                s.dropped_lines
            )?;
            Ok(())
        }
    }
}
