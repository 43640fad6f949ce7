//! `pitot report`: reads the aggregator's HTTP API and prints tables for people or the JSON
//! as-is for scripts.

use std::time::Duration;

use std::collections::BTreeMap;

use anyhow::Context as _;
use pitot_aggregator::drift::DriftReport;
use pitot_aggregator::models::{ModelList, ModelReport};
use pitot_aggregator::reports::{
    AgentsReport, CounterReport, CounterSummary, HistogramSummary, QuantileReport, SeriesList,
};
use pitot_aggregator::slo::{SloList, SloReport};
use pitot_aggregator::timeline::Timeline;
use pitot_shared::slo::Alert;
use serde_json::Value;

/// A small blocking client for the aggregator API.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:7070`), without a token.
    pub fn new(base: &str) -> Self {
        Self::build(base, None, ureq::tls::RootCerts::WebPki)
    }

    /// A client that sends `token` as a bearer token and, for `https://`, trusts `ca` (a PEM
    /// file: the private CA that signed the API's certificate) instead of the public roots.
    pub fn with_access(
        base: &str,
        token: Option<String>,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let roots = match ca {
            None => ureq::tls::RootCerts::WebPki,
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading the CA {}", path.display()))?;
                let cert = ureq::tls::Certificate::from_pem(&pem)
                    .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
                ureq::tls::RootCerts::new_with_certs(&[cert])
            }
        };
        Ok(Self::build(base, token.filter(|t| !t.is_empty()), roots))
    }

    fn build(base: &str, token: Option<String>, roots: ureq::tls::RootCerts) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        // `127.0.0.1:7070` means plain HTTP, as the aggregator serves by default.
        let base = base.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        Client { base, agent, token }
    }

    /// GETs `path` and returns the status and the body as text, whatever the status (for
    /// `/healthz`, `/metrics`).
    pub fn get_raw(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req
            .call()
            .with_context(|| format!("cannot reach the aggregator at {url}"))?;
        let body = resp.body_mut().read_to_string()?;
        Ok((resp.status().as_u16(), body))
    }

    /// GETs `path` with `query` pairs; a 4xx/5xx becomes an error carrying the API's message.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        for (k, v) in query {
            req = req.query(*k, v);
        }
        let mut resp = req
            .call()
            .with_context(|| format!("cannot reach the aggregator at {url}"))?;
        let status = resp.status();
        let body: Value = resp
            .body_mut()
            .read_json()
            .with_context(|| format!("{url} did not answer JSON (status {status})"))?;
        if !status.is_success() {
            let msg = body["error"].as_str().unwrap_or("unknown error").to_owned();
            anyhow::bail!("{url}: {status}: {msg}");
        }
        Ok(body)
    }
}

/// Formats rows under headers with aligned columns (numbers right-aligned).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let numeric = |s: &str| s.parse::<f64>().is_ok() || s == "-";
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let w = widths.get(i).copied().unwrap_or(0);
                if numeric(c) && i > 0 {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect(), &mut out);
    line(widths.iter().map(|w| "-".repeat(*w)).collect(), &mut out);
    for row in rows {
        line(row.clone(), &mut out);
    }
    out
}

/// The quantiles a latency table shows.
pub const LATENCY_QUANTILES: &str = "0.5,0.9,0.99,0.999";

/// GETs one metric's report from `path`, grouped by `group_by` tags, with `extra` parameters.
fn metric_report(
    client: &Client,
    path: &str,
    (metric, group_by, from): (&str, &str, &str),
    tags: &[String],
    extra: &[(&'static str, String)],
) -> anyhow::Result<Value> {
    let mut q = vec![
        ("metric", metric.to_owned()),
        ("group_by", group_by.to_owned()),
        ("from", from.to_owned()),
    ];
    q.extend(extra.iter().cloned());
    q.extend(tags.iter().map(|t| ("tag", t.clone())));
    client.get(path, &q)
}

/// Fetches the latency report, grouped by `group_by` tags.
pub fn latency(
    client: &Client,
    metric: &str,
    group_by: &str,
    from: &str,
    tags: &[String],
) -> anyhow::Result<Value> {
    let q = [("q", LATENCY_QUANTILES.to_owned())];
    metric_report(
        client,
        "/api/v1/quantiles",
        (metric, group_by, from),
        tags,
        &q,
    )
}

/// Fetches the counter report, grouped by `group_by` tags.
pub fn counters(
    client: &Client,
    metric: &str,
    group_by: &str,
    from: &str,
    tags: &[String],
) -> anyhow::Result<Value> {
    metric_report(
        client,
        "/api/v1/counters",
        (metric, group_by, from),
        tags,
        &[],
    )
}

/// An API answer as the aggregator's own response type (defined once, in
/// `pitot_aggregator::reports`): a field renamed there fails to build here, and an aggregator
/// of another version that answers another shape is an error, not a blank cell.
pub fn typed<T: serde::de::DeserializeOwned>(answer: &Value) -> anyhow::Result<T> {
    T::deserialize(answer).context(
        "the aggregator's answer does not have the shape this pitot expects (are both the \
         same version?)",
    )
}

/// The tags a report groups by when none are asked for: `host` and `model`, those of them that
/// some series of `metric` has (the API refuses to group by a tag no series has).
pub fn default_group_by(client: &Client, metric: &str, tags: &[String]) -> anyhow::Result<String> {
    let mut q = vec![("match", metric.to_owned())];
    q.extend(tags.iter().map(|t| ("tag", t.clone())));
    let series: SeriesList = typed(&client.get("/api/v1/series", &q)?)?;
    let has = |tag: &str| series.series.iter().any(|s| s.tags.contains_key(tag));
    Ok(["host", "model"]
        .into_iter()
        .filter(|t| has(t))
        .collect::<Vec<_>>()
        .join(","))
}

/// The first line of a metric table: what, over when, at which resolution, in which unit.
fn caption(
    (metric, from, to, resolution): (&str, &str, &str, &str),
    unit: Option<&str>,
    no_unit: &str,
) -> String {
    let unit = match unit {
        Some(u) => format!("values in {u}"),
        None => no_unit.to_owned(),
    };
    format!("{metric} over {from} … {to} ({resolution} buckets); {unit}\n")
}

fn f(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), f)
}

/// The group's values of the `group_by` tags, in order.
fn group_names(tags: &[&str], group: &BTreeMap<String, String>) -> Vec<String> {
    tags.iter()
        .map(|t| group.get(*t).cloned().unwrap_or_default())
        .collect()
}

/// `FLEET` under the first tag column.
fn fleet_names(tags: &[&str]) -> Vec<String> {
    let mut names = vec!["FLEET".to_owned()];
    names.resize(tags.len().max(1), String::new());
    names
}

/// Renders a counter report as a table (total and per second), with a fleet row last.
pub fn counters_table(report: &CounterReport, group_by: &str) -> String {
    let tags: Vec<&str> = group_by.split(',').filter(|t| !t.is_empty()).collect();
    let unit = report.unit.as_deref();
    let total = unit.map_or_else(|| "total".to_owned(), |u| format!("total ({u})"));
    let rate = unit.map_or_else(|| "per second".to_owned(), |u| format!("{u} per second"));
    let mut headers: Vec<&str> = if tags.is_empty() {
        vec![""]
    } else {
        tags.clone()
    };
    headers.extend([total.as_str(), rate.as_str()]);
    let row = |g: &CounterSummary, mut names: Vec<String>| {
        names.push(if g.total.fract() == 0.0 {
            format!("{:.0}", g.total)
        } else {
            f(g.total)
        });
        names.push(f(g.per_second));
        names
    };
    let mut rows: Vec<Vec<String>> = report
        .groups
        .iter()
        .map(|g| row(g, group_names(&tags, &g.tags)))
        .collect();
    rows.push(row(&report.fleet, fleet_names(&tags)));
    caption(
        (&report.metric, &report.from, &report.to, &report.resolution),
        unit,
        "counted as sent (the name carries no unit)",
    ) + &table(&headers, &rows)
}

/// Renders a latency report as a table, with a fleet row last. Column headers carry the unit
/// when the metric's name gives one.
pub fn latency_table(report: &QuantileReport, group_by: &str) -> String {
    let tags: Vec<&str> = group_by.split(',').filter(|t| !t.is_empty()).collect();
    let with_unit = |h: &str| match &report.unit {
        Some(u) => format!("{h} ({u})"),
        None => h.to_owned(),
    };
    let value_headers: Vec<String> = ["p50", "p90", "p99", "p99.9", "max"]
        .into_iter()
        .map(with_unit)
        .collect();
    let mut headers: Vec<&str> = tags.clone();
    headers.push("count");
    headers.extend(value_headers.iter().map(String::as_str));
    let row = |g: &HistogramSummary, mut r: Vec<String>| {
        r.push(g.count.to_string());
        for q in ["0.5", "0.9", "0.99", "0.999"] {
            r.push(opt(g.quantiles.get(q).copied().flatten()));
        }
        r.push(opt(g.max));
        r
    };
    let mut rows: Vec<Vec<String>> = report
        .groups
        .iter()
        .map(|g| row(g, group_names(&tags, &g.tags)))
        .collect();
    if tags.is_empty() {
        headers.insert(0, "");
    }
    rows.push(row(&report.fleet, fleet_names(&tags)));
    let no_unit = "values as sent (the name carries no unit; a DogStatsD `ms` timer is in \
                   milliseconds)";
    caption(
        (&report.metric, &report.from, &report.to, &report.resolution),
        report.unit.as_deref(),
        no_unit,
    ) + &table(&headers, &rows)
}

/// The clock time of an RFC 3339 timestamp (`2026-12-02T10:11:12.345Z` → `10:11:12`).
fn clock(t: Option<&str>) -> &str {
    t.and_then(|t| t.get(11..19)).unwrap_or("-")
}

/// Renders `/api/v1/agents` as a table. `link` is the agent's connection now and since when
/// (UTC); the last three columns say what was lost over the report's window (the last hour
/// by default): lines the agent refused or dropped, UDP datagrams the kernel dropped, and
/// packets the DogStatsD clients say they dropped. Below the table: each agent's last
/// connection error, and connections the aggregator refused before knowing the agent.
pub fn agents_table(report: &AgentsReport) -> String {
    let rows: Vec<Vec<String>> = report
        .agents
        .iter()
        .map(|a| {
            let c = &a.connection;
            vec![
                a.id.clone(),
                a.version.clone(),
                match c.state.as_str() {
                    "connected" => format!("up since {}", clock(c.since.as_deref())),
                    "disconnected" => format!("down since {}", clock(c.since.as_deref())),
                    _ => "not seen".to_owned(),
                },
                a.last_batch_age_seconds
                    .map_or_else(|| "none yet".to_owned(), |s| format!("{s:.1}")),
                format!("{:.2}", a.lag_seconds),
                a.spool_bytes.to_string(),
                a.batches.to_string(),
                a.duplicates.to_string(),
                format!("{:.0}", a.loss.malformed_lines + a.loss.dropped_lines),
                format!("{:.0}", a.loss.kernel_dropped_datagrams),
                format!("{:.0}", a.loss.client_dropped_packets),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "agent",
            "version",
            "link (UTC)",
            "last batch (s ago)",
            "lag (s)",
            "spool bytes",
            "batches",
            "replays",
            "lines refused",
            "kernel drops",
            "client drops",
        ],
        &rows,
    );
    if rows.is_empty() {
        out.push_str(
            "(no agent has connected to this aggregator yet; an agent that cannot connect says \
             why in its own log: journalctl -u pitot-agent)\n",
        );
    }
    for a in &report.agents {
        if let Some(error) = &a.connection.last_error {
            out.push_str(&format!(
                "{}: last connection error at {}: {error}\n",
                a.id,
                clock(a.connection.last_error_at.as_deref()),
            ));
        }
    }
    if !report.refused.is_empty() {
        out.push_str("\nRefused connections (before any agent session):\n");
        let rows: Vec<Vec<String>> = report
            .refused
            .iter()
            .map(|r| {
                vec![
                    r.peer.clone(),
                    r.agent.clone().unwrap_or_else(|| "-".into()),
                    r.kind.clone(),
                    r.count.to_string(),
                    clock(Some(&r.last)).to_owned(),
                    r.fix.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["peer", "certificate", "kind", "times", "last (UTC)", "fix"],
            &rows,
        ));
    }
    out
}

/// Renders `/api/v1/drift` as a table, most severe first (the API's order).
pub fn drift_table(report: &DriftReport) -> String {
    let f = |v: Option<f64>| match v {
        Some(x) if x != 0.0 && x.abs() < 1e-3 => format!("{x:.1e}"),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    };
    let rows: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| {
            let tags = r
                .tags
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(",");
            let scope = match (&r.host, &r.a, &r.b) {
                (Some(h), _, _) => format!("{h} vs {}", r.against.as_deref().unwrap_or("rest")),
                (_, Some(a), Some(b)) => format!("{b} vs {a}"),
                _ => "fleet".into(),
            };
            let p = if r.kind == "categorical" {
                r.figure("p_value")
            } else {
                r.figure("ks_p_value")
            };
            vec![
                r.status.label().to_owned(),
                r.metric.clone(),
                tags,
                scope,
                r.count("reference_count")
                    .map_or("-".into(), |n| n.to_string()),
                r.count("current_count")
                    .map_or("-".into(), |n| n.to_string()),
                f(r.figure("ks")),
                f(r.figure("psi")),
                f(r.figure("js")),
                f(r.figure("wasserstein_norm")),
                // A p-value that underflowed prints as the bound it is under.
                if p == Some(0.0) {
                    "<1e-300".to_owned()
                } else {
                    f(p)
                },
                // The reason's summary (its figures are the columns before).
                r.reason.split(": ").next().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    let mut head = format!(
        "drift ({}) over {} … {}",
        report.mode, report.current.from, report.current.to
    );
    if let Some(r) = &report.reference {
        head.push_str(&format!(", reference {} … {}", r.from, r.to));
    }
    head.push('\n');
    head + &table(
        &[
            "status", "metric", "tags", "compared", "n ref", "n cur", "ks", "psi", "js", "W/σ",
            "p", "why",
        ],
        &rows,
    )
}

/// Renders a model's deployment timeline: each version on each host, first and last seen (UTC),
/// and whether it is live.
pub fn timeline_table(t: &Timeline) -> String {
    let rows: Vec<Vec<String>> = t
        .entries
        .iter()
        .map(|e| {
            vec![
                if e.version.is_empty() {
                    "-".to_owned()
                } else {
                    e.version.clone()
                },
                e.host.clone(),
                e.first_seen.clone(),
                e.last_seen.clone(),
                if e.live { "live" } else { "" }.to_owned(),
            ]
        })
        .collect();
    let live: Vec<String> = t
        .live
        .iter()
        .map(|(v, n)| {
            format!(
                "{} on {n} host{}",
                if v.is_empty() { "-" } else { v },
                if *n == 1 { "" } else { "s" }
            )
        })
        .collect();
    format!(
        "{}: live now: {}\n",
        t.model,
        if live.is_empty() {
            "nothing".to_owned()
        } else {
            live.join(", ")
        }
    ) + &table(&["version", "host", "first seen", "last seen", ""], &rows)
}

/// Renders a gate's decision: a headline, then one row per check (per quantile for latency).
pub fn gate_table(r: &pitot_aggregator::gate::GateReport) -> String {
    let side = pitot_aggregator::gate::SideInfo::label;
    let mut out = format!(
        "{}: {} {} against {} ({} … {}; {} baseline, {} candidate requests)\n",
        r.gate.as_deref().unwrap_or("gate"),
        r.decision.label(),
        side(&r.candidate),
        side(&r.baseline),
        r.from,
        r.to,
        r.baseline.requests,
        r.candidate.requests,
    );
    let num = |v: &Value| v.as_f64().map_or_else(|| "-".to_owned(), amount);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for c in &r.checks {
        match c.name.as_str() {
            "latency" => {
                for q in c.figures["quantiles"].as_array().into_iter().flatten() {
                    let qv = q["q"].as_f64().unwrap_or(0.0);
                    let est = |side: &str| {
                        format!(
                            "{} [{} … {}]",
                            num(&q[side]["value"]),
                            num(&q[side]["lower"]),
                            num(&q[side]["upper"])
                        )
                    };
                    rows.push(vec![
                        q["verdict"].as_str().unwrap_or("-").to_uppercase(),
                        format!("latency p{}", qv * 100.0),
                        est("baseline"),
                        est("candidate"),
                        q["reason"].as_str().unwrap_or("").to_owned(),
                    ]);
                }
            }
            "errors" => {
                let p = |side: &str| {
                    let f = &c.figures[side];
                    format!("{}/{} ({})", f["events"], f["total"], num(&f["rate"]))
                };
                rows.push(vec![
                    c.verdict.label().to_owned(),
                    "errors".into(),
                    p("baseline"),
                    p("candidate"),
                    c.reason.clone(),
                ]);
            }
            "slo" => rows.push(vec![
                c.verdict.label().to_owned(),
                format!("slo {}", c.figures["slo"].as_str().unwrap_or("")),
                "-".into(),
                format!("burn {}×", num(&c.figures["burn"])),
                c.reason.clone(),
            ]),
            _ => rows.push(vec![
                c.verdict.label().to_owned(),
                c.name.clone(),
                "-".into(),
                "-".into(),
                c.reason.clone(),
            ]),
        }
    }
    out.push_str(&table(
        &["verdict", "check", "baseline", "candidate", "why"],
        &rows,
    ));
    for s in &r.skipped {
        out.push_str(&format!("not checked: {s}\n"));
    }
    out
}

/// Renders audit entries: sequence, time, kind, subject, particulars.
pub fn audit_table(entries: &[pitot_aggregator::audit::Entry]) -> String {
    if entries.is_empty() {
        return "No audit entries in this range.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let mut detail = e.detail.clone();
            // A configuration is long: the table counts what changed (`--jsonl` has the lines).
            if e.kind == "config.loaded" {
                let n = |k: &str| detail[k].as_array().map_or(0, Vec::len);
                detail = Value::String(format!(
                    "digest {}, {} lines added, {} removed",
                    detail["digest"].as_str().unwrap_or("-"),
                    n("added"),
                    n("removed")
                ));
            }
            vec![
                e.seq.to_string(),
                e.at.clone(),
                e.kind.clone(),
                e.subject.clone(),
                detail.to_string(),
            ]
        })
        .collect();
    table(&["seq", "time (UTC)", "kind", "subject", "detail"], &rows)
}

/// An amount with the digits it needs: 1234, 12.34, 0.1234, 2.4e-6.
fn amount(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.001 {
        format!("{v:.4}")
    } else {
        format!("{v:.2e}")
    }
}

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), amount)
}

fn model_details(m: &ModelReport) -> String {
    let c = &m.cost;
    let mut out = format!(
        "{} ({}{}):\n",
        m.name,
        m.owner.as_deref().unwrap_or("no owner: not in [[model]]"),
        if m.contact.is_empty() {
            String::new()
        } else {
            format!(", {}", m.contact)
        }
    );
    for g in &c.gpus {
        out.push_str(&format!(
            "  GPU {}: {} h held, {} h busy, {}\n",
            if g.gpu_class.is_empty() {
                "-"
            } else {
                &g.gpu_class
            },
            amount(g.hours),
            amount(g.busy_hours),
            g.price_per_hour
                .map_or_else(|| "no price".to_owned(), |p| format!("{}/h", amount(p)))
        ));
    }
    if !c.attribution.is_empty() {
        out.push_str(&format!(
            "  compute use attributed per {}\n",
            c.attribution.join(" and per ")
        ));
    }
    out.push_str(&format!(
        "  host {:.3} h ({}); cost: allocation {}, utilisation {}",
        c.host_hours,
        c.host_cost.map_or_else(
            || "no host price".to_owned(),
            |v| format!("costs {}", amount(v))
        ),
        money(c.allocation_cost),
        money(c.utilisation_cost),
    ));
    if c.unpriced_gpu_hours > 0.0 {
        out.push_str(&format!(
            " ({:.3} GPU-h without a price left out)",
            c.unpriced_gpu_hours
        ));
    }
    out.push('\n');
    if let Some(t) = &c.tokens {
        let part = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        out.push_str(&format!(
            "  tokens: {:.0} ({} in, {} out; {}); per 1k tokens: {}\n",
            t.total,
            part(t.input),
            part(t.output),
            t.source.join(", "),
            c.per_1k_tokens.as_ref().map_or_else(
                || "-".to_owned(),
                |u| format!(
                    "{} allocation, {} utilisation",
                    amount(u.allocation),
                    amount(u.utilisation)
                )
            )
        ));
    }
    if let Some(u) = &c.per_1k_requests {
        out.push_str(&format!(
            "  per 1k requests: {} allocation, {} utilisation\n",
            amount(u.allocation),
            amount(u.utilisation)
        ));
    }
    if let Some(l) = &m.latency {
        out.push_str(&format!(
            "  latency ({}{}): p50 {}, p99 {} over {} requests\n",
            l.metric,
            l.unit.as_ref().map_or(String::new(), |u| format!(", {u}")),
            l.p50.map_or_else(|| "-".to_owned(), amount),
            l.p99.map_or_else(|| "-".to_owned(), amount),
            l.count
        ));
    }
    for s in &m.slos {
        out.push_str(&format!(
            "  SLO {} ({}, {} over {}): SLI {:.4}, budget left {:.1} %, {}\n",
            s.name,
            s.kind,
            s.objective,
            s.window,
            s.sli,
            s.budget_remaining * 100.0,
            alert_label(s.alert)
        ));
    }
    if let Some(d) = &m.drift
        && !d.drifting.is_empty()
    {
        out.push_str(&format!("  drifting inputs: {}\n", d.drifting.join(", ")));
    }
    out
}

/// Renders the models report: one row per model, then each model's cost details.
pub fn models_table(list: &ModelList) -> String {
    let rows: Vec<Vec<String>> = list
        .models
        .iter()
        .map(|m| {
            let live: Vec<String> = m
                .live
                .iter()
                .map(|v| {
                    format!(
                        "{}×{}",
                        if v.version.is_empty() {
                            "-"
                        } else {
                            &v.version
                        },
                        v.hosts
                    )
                })
                .collect();
            let worst = m.slos.iter().map(|s| s.alert).max();
            let budget = m
                .slos
                .iter()
                .map(|s| s.budget_remaining)
                .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.min(b))));
            vec![
                m.name.clone(),
                m.owner.clone().unwrap_or_else(|| "(none)".to_owned()),
                if live.is_empty() {
                    "-".to_owned()
                } else {
                    live.join(" ")
                },
                m.requests
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |r| amount(r.per_second)),
                match (worst, budget) {
                    (Some(a), Some(b)) => format!("{} {:.0} %", alert_label(a), b * 100.0),
                    _ => "-".to_owned(),
                },
                m.drift
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |d| d.status.label().to_owned()),
                format!("{:.3}", m.cost.gpu_hours),
                money(m.cost.allocation_cost),
                m.cost
                    .per_1k_tokens
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |u| amount(u.allocation)),
            ]
        })
        .collect();
    let mut out = format!("Models, {} … {}\n", list.from, list.to);
    if list.models.is_empty() {
        out.push_str(
            "No models: declare them with [[model]] in the aggregator config, or send series \
             tagged model:<name>.\n",
        );
        return out;
    }
    out.push_str(&table(
        &[
            "model",
            "owner",
            "live",
            "req/s",
            "SLO (worst, budget left)",
            "drift",
            "GPU-h",
            "cost",
            "per 1k tok",
        ],
        &rows,
    ));
    for m in &list.models {
        out.push('\n');
        out.push_str(&model_details(m));
    }
    out
}

/// An alert state as tables print it.
pub fn alert_label(alert: Alert) -> &'static str {
    match alert {
        Alert::Ok => "OK",
        Alert::Ticket => "TICKET",
        Alert::Page => "PAGE",
    }
}

/// Renders `/api/v1/slo` as a table: one row per SLO, alerting ones first.
pub fn slo_table(report: &SloList) -> String {
    let pct = |x: f64, digits: usize| {
        if x.is_finite() {
            format!("{:.digits$}", x * 100.0)
        } else {
            "-inf".into()
        }
    };
    let mut slos: Vec<&SloReport> = report.slos.iter().collect();
    let rank = |s: &SloReport| match s.alert {
        Alert::Page => 0,
        Alert::Ticket => 1,
        _ => 2,
    };
    slos.sort_by_key(|s| rank(s));
    let windows = ["5m", "1h", "6h", "1d", "3d"];
    let opt = |v: Option<f64>| v.map_or("-".into(), |t| format!("{t}"));
    let rows: Vec<Vec<String>> = slos
        .iter()
        .map(|s| {
            let ind = &s.indicator;
            let metric = ind.metric.as_deref().unwrap_or("");
            let what = match ind.kind.as_str() {
                // Scraped layouts: whole buckets under the configured threshold.
                "latency" if ind.bucket_layouts => {
                    format!("{metric} <= {} (buckets)", opt(ind.threshold))
                }
                "latency" => format!("{metric} <= {}", opt(ind.threshold_used)),
                _ => format!(
                    "{} / {}",
                    ind.good.as_deref().unwrap_or(""),
                    ind.total.as_deref().unwrap_or("")
                ),
            };
            let worst = s
                .top_hosts
                .first()
                .map_or("-".into(), |h| format!("{} ({})", h.host, h.bad));
            let mut row = vec![
                alert_label(s.alert).to_owned(),
                s.name.clone(),
                what,
                format!("{}% / {}", pct(s.objective, 2), s.window),
                pct(s.sli, 3),
                match s.uncertain {
                    // Up to that many bad events may be good (buckets straddle the threshold).
                    Some(u) if u > 0 => format!("{}(+{u}?)/{}", s.good, s.total),
                    _ => format!("{}/{}", s.good, s.total),
                },
                pct(s.error_budget.remaining, 1),
            ];
            row.extend(windows.iter().map(|w| {
                s.burn_rates
                    .get(*w)
                    .map_or("-".into(), |x| format!("{x:.2}"))
            }));
            row.push(worst);
            row
        })
        .collect();
    let at = slos.first().map_or("now", |s| s.at.as_str()).to_owned();
    let mut headers = vec![
        "state",
        "slo",
        "sli",
        "objective",
        "sli %",
        "good/total",
        "budget left %",
    ];
    let burn_headers: Vec<String> = windows.iter().map(|w| format!("burn {w}")).collect();
    headers.extend(burn_headers.iter().map(String::as_str));
    headers.push("worst host (bad)");
    if rows.is_empty() {
        return "no SLOs configured (add [[slo]] to the aggregator config)\n".to_owned();
    }
    format!("SLOs at {at}\n") + &table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_the_digits_they_need() {
        assert_eq!(amount(0.0), "0");
        assert_eq!(amount(1234.4), "1234");
        assert_eq!(amount(12.345), "12.35");
        assert_eq!(amount(0.12344), "0.1234");
        assert_eq!(amount(0.0000024), "2.40e-6");
    }

    /// The example in docs/CONTRACT.md is a model report the CLI reads and prints.
    #[test]
    fn the_contracts_model_report_reads_and_prints() {
        let contract = include_str!("../docs/CONTRACT.md");
        let start = contract
            .find("GET /api/v1/models/llama3\n")
            .expect("the example")
            + "GET /api/v1/models/llama3\n".len();
        let end = start + contract[start..].find("\n```").expect("its end");
        let one: Value = serde_json::from_str(&contract[start..end]).expect("JSON");
        let list = serde_json::json!({"from": "a", "to": "b", "models": [one]});
        let text = models_table(&typed(&list).unwrap());
        for want in [
            "llama3  search-ranking  v2×1",
            "GPU NVIDIA H100 80GB HBM3: ",
            " h held, ",
            "compute use attributed per process",
            "per 1k tokens: ",
            "SLO llama3-latency (latency, 0.99 over 30d)",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
    }

    #[test]
    fn tables_align_and_include_the_fleet_row() {
        let report = serde_json::json!({
            "metric": "lat", "from": "a", "to": "b", "resolution": "10s", "unit": null,
            "series": 1,
            "fleet": {"count": 3, "sum": 12.5, "min": 1.0, "max": 9.0, "mean": 4.2,
                      "quantiles": {"0.5": 1.5, "0.9": 2.0, "0.99": 9.0, "0.999": 9.0}},
            "groups": [{"tags": {"host": "h1"}, "count": 3, "sum": 12.5, "min": 1.0, "max": 9.0,
                        "mean": 4.2,
                        "quantiles": {"0.5": 1.5, "0.9": 2.0, "0.99": 9.0, "0.999": 9.0}}]
        });
        let text = latency_table(&typed(&report).unwrap(), "host");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("host"));
        assert!(lines[3].starts_with("h1"));
        assert!(lines[4].starts_with("FLEET"));
        assert!(lines[4].contains("1.500"));
    }

    #[test]
    fn agent_tables_explain_an_empty_fleet_and_show_links() {
        let empty =
            agents_table(&typed(&serde_json::json!({"agents": [], "refused": []})).unwrap());
        assert!(empty.contains("no agent has connected"), "{empty}");
        let report = serde_json::json!({
            "agents": [{"id": "gpu-1", "host": "gpu-1", "version": "0.2.0",
                        "first_seen": "2026-12-02T10:00:00.000Z", "last_batch_time": null,
                        "last_batch_age_seconds": null,
                        "lag_seconds": 0.0, "spool_bytes": 0, "batches": 0, "duplicates": 0,
                        "loss": {"from": "2026-12-02T09:00:00.000Z", "malformed_lines": 0.0,
                                 "dropped_lines": 0.0, "kernel_dropped_datagrams": 0.0,
                                 "unspooled_batches": 0.0, "client_dropped_packets": 0.0,
                                 "client_dropped_bytes": 0.0, "any": false},
                        "connection": {"state": "disconnected", "peer": "10.0.0.1:4000",
                                       "since": "2026-12-02T10:11:12.000Z",
                                       "last_error": "timed out",
                                       "last_error_at": "2026-12-02T10:11:12.000Z"}}],
            "refused": [{"peer": "10.0.0.9", "agent": null, "kind": "unknown-ca", "count": 3,
                         "reason": "UnknownIssuer", "first": "2026-12-02T10:11:00.000Z",
                         "last": "2026-12-02T10:12:00.000Z", "fix": "issue it with the CA"}]
        });
        let text = agents_table(&typed(&report).unwrap());
        // An answer of another shape is an error, not a table of blanks.
        let mut renamed = report.clone();
        renamed["agents"][0]["connection"]["status"] =
            renamed["agents"][0]["connection"]["state"].take();
        renamed["agents"][0]["connection"]
            .as_object_mut()
            .unwrap()
            .remove("state");
        let err = typed::<AgentsReport>(&renamed).unwrap_err();
        assert!(format!("{err:#}").contains("same version"), "{err:#}");
        assert!(text.contains("down since 10:11:12"), "{text}");
        assert!(text.contains("none yet"), "{text}");
        assert!(
            text.contains("gpu-1: last connection error at 10:11:12: timed out"),
            "{text}"
        );
        let refused = text.lines().last().unwrap();
        assert!(
            refused.starts_with("10.0.0.9") && refused.contains("unknown-ca"),
            "{text}"
        );
        assert!(refused.ends_with("issue it with the CA"), "{text}");
    }

    #[test]
    fn slo_tables_put_pages_first() {
        // Every field of a report, then each SLO's own.
        let slo = |own: serde_json::Value| {
            let mut v = serde_json::json!({
                "service": "pitot", "at": "T", "from": "F", "to": "T", "resolution": "1h",
                "burn_resolutions": {}, "top_hosts": [], "top_hosts_from": "F",
                "error_budget": {"allowed": 1.0, "consumed": 0.0, "remaining": 1.0},
            });
            for (k, x) in own.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let report = serde_json::json!({"slos": [
            slo(serde_json::json!({"name": "calm", "alert": "ok", "objective": 0.99, "window": "30d", "sli": 1.0,
             "good": 5, "total": 5,
             "indicator": {"kind": "ratio", "good": "ok", "total": "all", "tags": {}},
             "burn_rates": {"5m": 0.0}})),
            slo(serde_json::json!({"name": "hot", "alert": "page", "objective": 0.99, "window": "30d", "sli": 0.5,
             "good": 5, "total": 10,
             "error_budget": {"allowed": 0.1, "consumed": 5.0, "remaining": -49.0},
             "indicator": {"kind": "latency", "metric": "lat", "threshold_used": 499.7, "tags": {}},
             "burn_rates": {"5m": 50.0}, "top_hosts": [{"host": "h9", "bad": 5}]})),
            slo(serde_json::json!({"name": "scraped", "alert": "ok", "objective": 0.9, "window": "30d", "sli": 0.9,
             "good": 9, "total": 10, "uncertain": 1,
             "error_budget": {"allowed": 1.0, "consumed": 1.0, "remaining": 0.0},
             "indicator": {"kind": "latency", "metric": "ttft", "threshold": 0.25,
                           "threshold_used": 0.2499, "bucket_layouts": true, "tags": {}},
             "burn_rates": {"5m": 1.0}}))
        ]});
        let text = slo_table(&typed(&report).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[3].starts_with("PAGE"), "{text}");
        assert!(
            lines[3].contains("lat <= 499.7") && lines[3].contains("h9 (5)"),
            "{text}"
        );
        assert!(lines[3].contains("-4900.0"), "{text}");
        assert!(lines[4].starts_with("OK"), "{text}");
        let scraped = lines.iter().find(|l| l.contains("scraped")).expect("row");
        assert!(
            scraped.contains("ttft <= 0.25 (buckets)") && scraped.contains("9(+1?)/10"),
            "{text}"
        );
    }
}
