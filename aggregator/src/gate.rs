//! The deployment gate: is a candidate (e.g. `version:v2`) of a model worse than its baseline
//! (`version:v1`) over a window? Loads each side's merged histograms and counters (the only
//! I/O) and decides with `pitot_shared::gate` (latency quantiles, error rate, SLO burn) and the
//! drift engine (inputs and named outputs, versions mode): `pass`, `fail` or `inconclusive`,
//! with every check's figures and reason (`GET /api/v1/gate`).

use std::collections::BTreeMap;

use pitot_shared::batch::SeriesData;
use pitot_shared::buckets::BucketHistogram;
use pitot_shared::drift::Status;
use pitot_shared::gate::{self, Verdict};
use pitot_shared::histogram::ValueHistogram;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::drift::{self, DriftQuery, Mode};
use crate::model::{GateDefinition, ModelDefinition, OnDrift, Sli, rfc3339};
use crate::reports::{ReportError, WindowReader};
use crate::slo::{self, InstalledSlo};
use crate::store::Store;

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideInfo {
    /// Its selecting tags (the model's and the side's).
    pub tags: BTreeMap<String, String>,
    /// Latency observations (requests) in the window.
    pub requests: u64,
}

impl SideInfo {
    /// Its tags without the model's `model` tag, `k:v,k:v` (how a side is named).
    pub fn label(&self) -> String {
        self.tags
            .iter()
            .filter(|(k, _)| k.as_str() != "model")
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `latency`, `errors`, `slo` or `drift`.
    pub name: String,
    /// Its answer.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// Its figures.
    #[serde(flatten)]
    pub figures: Value,
}

/// `GET /api/v1/gate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// The gate's name (`null` for an ad-hoc query).
    pub gate: Option<String>,
    /// The model.
    pub model: String,
    /// Fail if any check fails, else inconclusive if any is, else pass.
    pub decision: Verdict,
    /// Window start (RFC 3339).
    pub from: String,
    /// Window end (RFC 3339).
    pub to: String,
    /// Baseline.
    pub baseline: SideInfo,
    /// Candidate.
    pub candidate: SideInfo,
    /// The checks.
    pub checks: Vec<Check>,
    /// Checks not run, and why.
    pub skipped: Vec<String>,
}

/// The window's series, as both checks read them.
struct Reader<'a>(WindowReader<'a>);

impl Reader<'_> {
    fn each(
        &self,
        metric: &str,
        filters: &[(String, String)],
    ) -> Result<Vec<(pitot_shared::series::SeriesKey, SeriesData)>, ReportError> {
        self.0.each(metric, filters)
    }

    /// The merged histogram of `metric` under `filters` (`None`: no histogram series).
    /// The merged histogram (value or classic buckets) of `metric` under `filters` (`None`:
    /// no histogram series).
    fn histogram(
        &self,
        metric: &str,
        filters: &[(String, String)],
    ) -> Result<Option<SeriesData>, ReportError> {
        let mut acc: Option<SeriesData> = None;
        for (_, d) in self.each(metric, filters)? {
            if !matches!(d, SeriesData::Histogram(_) | SeriesData::Buckets(_)) {
                continue;
            }
            match &mut acc {
                Some(a) => a
                    .merge(&d)
                    .map_err(|e| ReportError::BadRequest(e.to_string()))?,
                None => acc = Some(d),
            }
        }
        Ok(acc)
    }

    fn counter(&self, metric: &str, filters: &[(String, String)]) -> Result<f64, ReportError> {
        Ok(self
            .each(metric, filters)?
            .iter()
            .map(|(_, d)| match d {
                SeriesData::Counter(c) => *c,
                _ => 0.0,
            })
            .sum())
    }
}

fn with(a: &[(String, String)], b: &[(String, String)]) -> Vec<(String, String)> {
    let mut v = a.to_vec();
    v.extend(b.iter().cloned());
    v
}

/// What a gate reads besides the store: what the models report reads.
pub use crate::models::Context;

fn latency_check(
    r: &Reader<'_>,
    g: &GateDefinition,
    model: Option<&ModelDefinition>,
    base: &[(String, String)],
    cand: &[(String, String)],
) -> Result<(Option<Check>, u64, u64, Option<String>), ReportError> {
    let configured = g
        .latency_metric
        .clone()
        .or_else(|| model.and_then(|m| m.metrics.latency.clone()));
    let candidates: Vec<String> = match configured {
        Some(m) => vec![m],
        None => vec![
            "gen_ai.server.request.duration".to_owned(),
            "request.latency".to_owned(),
        ],
    };
    for metric in candidates {
        let (b, c) = (r.histogram(&metric, base)?, r.histogram(&metric, cand)?);
        if b.is_none() && c.is_none() {
            continue;
        }
        let buckets =
            matches!(b, Some(SeriesData::Buckets(_))) || matches!(c, Some(SeriesData::Buckets(_)));
        // A side without data is an empty histogram of the other side's kind.
        let empty = if buckets {
            SeriesData::Buckets(BucketHistogram::default())
        } else {
            SeriesData::Histogram(ValueHistogram::new())
        };
        let empty = &empty;
        let (b, c) = (b.as_ref().unwrap_or(empty), c.as_ref().unwrap_or(empty));
        let (Some(rb), Some(rc)) = (ranked(b), ranked(c)) else {
            continue;
        };
        let (n_b, n_c) = (rb.observations(), rc.observations());
        let per_q: Vec<gate::QuantileCheck> = g
            .latency
            .quantiles
            .iter()
            .map(|q| gate::latency(rb, rc, *q, &g.latency))
            .collect();
        let verdict = Verdict::overall(per_q.iter().map(|x| x.verdict));
        let reason = per_q
            .iter()
            .filter(|x| x.verdict == verdict)
            .map(|x| x.reason.clone())
            .next()
            .unwrap_or_default();
        let check = Check {
            name: "latency".into(),
            verdict,
            reason,
            figures: json!({
                "metric": metric,
                "max_ratio": g.latency.max_ratio,
                "confidence": g.latency.confidence,
                // Classic (scraped) histograms: the intervals are bucket edges, wider.
                "bucket_bounded": buckets,
                "quantiles": per_q,
            }),
        };
        return Ok((Some(check), n_b, n_c, None));
    }
    Ok((
        None,
        0,
        0,
        Some("latency: no latency histogram for either side (set latency_metric)".into()),
    ))
}

/// A histogram's ranks, for the quantile intervals (`None` for other kinds).
fn ranked(d: &SeriesData) -> Option<&dyn gate::Ranked> {
    match d {
        SeriesData::Histogram(h) => Some(h),
        SeriesData::Buckets(h) => Some(h),
        _ => None,
    }
}

/// The error check's good and total counters, and the tags they are read under.
type ErrorMetrics = (String, String, Vec<(String, String)>);

/// Good and total counters, with their tags, for the error check.
fn error_metrics(
    g: &GateDefinition,
    model: Option<&ModelDefinition>,
    slos: &[InstalledSlo],
) -> Option<ErrorMetrics> {
    if let Some((good, total)) = &g.errors {
        return Some((good.clone(), total.clone(), Vec::new()));
    }
    let names = model.map(|m| m.slos.clone()).unwrap_or_default();
    slos.iter()
        .filter(|s| names.contains(&s.def.name))
        .find_map(|s| match &s.def.sli {
            Sli::Ratio { good, total, tags } => Some((good.clone(), total.clone(), tags.clone())),
            Sli::Latency { .. } => None,
        })
}

fn errors_check(
    r: &Reader<'_>,
    g: &GateDefinition,
    model: Option<&ModelDefinition>,
    slos: &[InstalledSlo],
    base: &[(String, String)],
    cand: &[(String, String)],
) -> Result<Option<Check>, ReportError> {
    let Some((good, total, tags)) = error_metrics(g, model, slos) else {
        return Ok(None);
    };
    let side = |f: &[(String, String)]| -> Result<(u64, u64), ReportError> {
        let f = with(f, &tags);
        let (ok, all) = (r.counter(&good, &f)?, r.counter(&total, &f)?);
        let all = all.max(0.0).round() as u64;
        let bad = (all as f64 - ok.max(0.0)).max(0.0).round() as u64;
        Ok((bad.min(all), all))
    };
    let c = gate::errors(side(base)?, side(cand)?, &g.error_rule);
    Ok(Some(Check {
        name: "errors".into(),
        verdict: c.verdict,
        reason: c.reason.clone(),
        figures: json!({
            "good": good, "total": total,
            "max_ratio": g.error_rule.max_ratio, "max_increase": g.error_rule.max_increase,
            "baseline": c.baseline, "candidate": c.candidate,
        }),
    }))
}

fn slo_checks(
    r: &Reader<'_>,
    g: &GateDefinition,
    model: Option<&ModelDefinition>,
    slos: &[InstalledSlo],
    cand: &[(String, String)],
) -> Result<Vec<Check>, ReportError> {
    let names = model.map(|m| m.slos.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for s in slos.iter().filter(|s| names.contains(&s.def.name)) {
        let filters = with(cand, s.def.sli.tags());
        let (mut good, mut total) = (0u64, 0u64);
        for metric in slo::metrics(&s.def.sli) {
            for (key, data) in r.each(metric, &filters)? {
                if let Some(c) = slo::series_counts(&s.def.sli, &key, &data) {
                    good += c.good;
                    total += c.total;
                }
            }
        }
        let b = gate::burn(
            total.saturating_sub(good),
            total,
            s.def.objective,
            g.max_burn,
            g.error_rule.confidence,
            g.error_rule.min_total,
        );
        out.push(Check {
            name: "slo".into(),
            verdict: b.verdict,
            reason: format!("{}: {}", s.def.name, b.reason),
            figures: json!({
                "slo": s.def.name, "objective": s.def.objective, "max_burn": g.max_burn,
                "bad": b.bad, "burn": b.burn, "burn_lower": b.burn_lower,
                "burn_upper": b.burn_upper,
            }),
        });
    }
    Ok(out)
}

fn drift_check(
    store: &dyn Store,
    ctx: Context<'_>,
    g: &GateDefinition,
    model_tags: &[(String, String)],
    from_ms: i64,
    to_ms: i64,
) -> Result<Result<Check, String>, ReportError> {
    // Versions mode: one `version` tag each side; any other tags must be the same on both
    // sides (e.g. one host serving both), and filter the comparison.
    let split = |t: &[(String, String)]| {
        let version: Vec<String> = t
            .iter()
            .filter(|(k, _)| k == "version")
            .map(|(_, v)| v.clone())
            .collect();
        let mut rest: Vec<(String, String)> =
            t.iter().filter(|(k, _)| k != "version").cloned().collect();
        rest.sort();
        (version, rest)
    };
    let ((va, ra), (vb, rb)) = (split(&g.baseline), split(&g.candidate));
    let (Some(a), Some(b)) = (
        (va.len() == 1).then(|| va[0].clone()),
        (vb.len() == 1).then(|| vb[0].clone()),
    ) else {
        return Ok(Err(
            "drift: compares versions; baseline and candidate must each have one version:<v> tag"
                .into(),
        ));
    };
    if ra != rb {
        return Ok(Err(
            "drift: compares versions; the other tags of baseline and candidate must be the same"
                .into(),
        ));
    }
    let model_tags = with(model_tags, &ra);
    let model_tags = model_tags.as_slice();
    let mut results = Vec::new();
    let metrics: Vec<Option<String>> = std::iter::once(None)
        .chain(g.outputs.iter().cloned().map(Some))
        .collect();
    for metric in metrics {
        let q = DriftQuery {
            mode: Mode::Versions {
                a: a.clone(),
                b: b.clone(),
            },
            metric,
            filters: model_tags.to_vec(),
            from_ms,
            to_ms,
        };
        match drift::report(store, &q, ctx.drift, ctx.input_prefix) {
            Ok(rep) => results.extend(rep.results),
            Err(ReportError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if results.is_empty() {
        return Ok(Err(
            "drift: no input or output series for either version".into()
        ));
    }
    let drifting: Vec<String> = results
        .iter()
        .filter(|x| x.status == Status::Drift)
        .map(|x| x.metric.clone())
        .collect();
    let all_empty = results.iter().all(|x| x.status == Status::NoData);
    let (verdict, reason) = if !drifting.is_empty() {
        (
            match g.on_drift {
                OnDrift::Fail => Verdict::Fail,
                OnDrift::Warn => Verdict::Warn,
            },
            format!(
                "the candidate's {} drifted from the baseline's",
                drifting.join(", ")
            ),
        )
    } else if all_empty {
        (
            Verdict::Inconclusive,
            "no data on one side for every input".to_owned(),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "{} inputs and outputs compared, none drifted",
                results.len()
            ),
        )
    };
    let rows: Vec<Value> = results
        .iter()
        .map(
            |x| json!({"metric": x.metric, "tags": x.tags, "status": x.status, "reason": x.reason}),
        )
        .collect();
    Ok(Ok(Check {
        name: "drift".into(),
        verdict,
        reason,
        figures: json!({
            "on_drift": match g.on_drift { OnDrift::Fail => "fail", OnDrift::Warn => "warn" },
            "results": rows,
        }),
    }))
}

/// Evaluates a gate over `[from_ms, to_ms)` at `now_ms`.
pub fn evaluate(
    store: &dyn Store,
    ctx: Context<'_>,
    g: &GateDefinition,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<GateReport, ReportError> {
    let model = ctx.models.iter().find(|m| m.name == g.model);
    let model_tags = model.map_or_else(
        || vec![("model".to_owned(), g.model.clone())],
        |m| m.tags.clone(),
    );
    let (base, cand) = (
        with(&model_tags, &g.baseline),
        with(&model_tags, &g.candidate),
    );
    let r = Reader(WindowReader::new(store, from_ms, to_ms, now_ms));
    let mut checks = Vec::new();
    let mut skipped = Vec::new();
    let (latency, n_b, n_c, why) = latency_check(&r, g, model, &base, &cand)?;
    checks.extend(latency);
    skipped.extend(why);
    match errors_check(&r, g, model, ctx.slos, &base, &cand)? {
        Some(c) => checks.push(c),
        None => skipped
            .push("errors: no [gate.errors] counters and no ratio SLO of the model".to_owned()),
    }
    checks.extend(slo_checks(&r, g, model, ctx.slos, &cand)?);
    match drift_check(store, ctx, g, &model_tags, from_ms, to_ms)? {
        Ok(c) => checks.push(c),
        Err(why) => skipped.push(why),
    }
    let decision = if checks.is_empty() {
        Verdict::Inconclusive
    } else {
        Verdict::overall(checks.iter().map(|c| c.verdict))
    };
    Ok(GateReport {
        gate: g.name.clone(),
        model: g.model.clone(),
        decision,
        from: rfc3339(from_ms),
        to: rfc3339(to_ms),
        baseline: SideInfo {
            tags: base.into_iter().collect(),
            requests: n_b,
        },
        candidate: SideInfo {
            tags: cand.into_iter().collect(),
            requests: n_c,
        },
        checks,
        skipped,
    })
}

/// The audit trail's summary of a decision: each check's verdict and reason.
pub fn evidence(report: &GateReport) -> Value {
    json!({
        "model": report.model,
        "decision": report.decision,
        "from": report.from,
        "to": report.to,
        "baseline": report.baseline,
        "candidate": report.candidate,
        "checks": report.checks.iter().map(|c| json!({"name": c.name, "verdict": c.verdict, "reason": c.reason})).collect::<Vec<_>>(),
    })
}

/// `/metrics` lines for evaluated gates: `pitot_gate_decision{gate, model, decision}` 1 for
/// the decision, 0 for the others.
pub fn exposition(reports: &[GateReport]) -> String {
    let mut out = String::from(
        "# HELP pitot_gate_decision The gate's decision now (1 for the current one).\n# TYPE pitot_gate_decision gauge\n",
    );
    for r in reports {
        for d in [Verdict::Pass, Verdict::Fail, Verdict::Inconclusive] {
            out.push_str(&format!(
                "pitot_gate_decision{{gate=\"{}\",model=\"{}\",decision=\"{}\"}} {}\n",
                r.gate.as_deref().unwrap_or(""),
                r.model,
                d.label().to_lowercase(),
                u8::from(r.decision == d)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use pitot_shared::batch::{Batch, SeriesSnapshot};
    use pitot_shared::buckets::Layout;
    use pitot_shared::drift::DriftConfig;
    use pitot_shared::series::{AgentId, SeriesKey};

    use super::*;
    use crate::model::RESOLUTIONS;
    use crate::store::SledStore;

    /// A scraped vLLM-style request-duration histogram for one version, as a bucket layout.
    fn scraped(version: &str, counts: Vec<u64>) -> SeriesSnapshot {
        SeriesSnapshot {
            key: SeriesKey::new(
                "gen_ai.server.request.duration",
                vec![
                    ("model".into(), "vllm-model".into()),
                    ("version".into(), version.into()),
                ],
            )
            .expect("key"),
            data: SeriesData::Buckets(
                BucketHistogram::new(Layout {
                    bounds: vec![0.1, 0.25, 0.5, 1.0, 2.5, f64::INFINITY],
                    count: counts.iter().sum(),
                    sum: 0.0,
                    counts,
                })
                .expect("layout"),
            ),
        }
    }

    #[test]
    fn scraped_bucket_histograms_are_gated_on_their_edges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = 1_800_000_000_000;
        let resolutions = RESOLUTIONS
            .iter()
            .map(|r| r.with_retention(std::time::Duration::from_secs(86_400)))
            .collect();
        let mut store = SledStore::open_at(dir.path(), resolutions, now - 120_000).expect("store");
        let batch = Batch {
            agent_id: AgentId("h1".into()),
            epoch: 1,
            seq: 1,
            interval_start_ms: now - 60_000,
            interval_ms: 10_000,
            agent_version: "t".into(),
            spool_bytes: 0,
            series: vec![
                scraped("v1", vec![2_000, 5_000, 2_000, 800, 190, 10]),
                // Two buckets slower.
                scraped("v2", vec![0, 0, 2_000, 5_000, 2_990, 10]),
            ],
        };
        store.merge_batch(&batch, now, &[], &[]).expect("merge");
        let g = GateDefinition::adhoc(
            "vllm-model".into(),
            vec![("version".into(), "v1".into())],
            vec![("version".into(), "v2".into())],
        );
        let ctx = Context {
            models: &[],
            slos: &[],
            drift: &DriftConfig::default(),
            input_prefix: "input.",
        };
        let r = evaluate(&store, ctx, &g, now - 900_000, now, now).expect("gate");
        assert_eq!(r.decision, Verdict::Fail, "{r:#?}");
        let lat = &r.checks[0];
        assert_eq!(lat.figures["bucket_bounded"], true);
        assert_eq!(r.candidate.requests, 10_000);
        // The median's interval is its bucket: (0.1, 0.25] for v1.
        let median = &lat.figures["quantiles"][0]["baseline"];
        assert_eq!(
            (median["lower"].as_f64(), median["upper"].as_f64()),
            (Some(0.1), Some(0.25))
        );
    }
}
