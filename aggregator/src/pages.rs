//! The report pages: `GET /` (models, SLOs, agents at a glance), `/models/{name}`,
//! `/slo/{name}`, `/drift` and `/agents`. Server-rendered HTML with inline SVG charts and
//! inline CSS (dark and light from `prefers-color-scheme`), no external assets and no script
//! but a small optional auto-refresh; every figure comes from the same report functions as the
//! JSON API, so the page and `/api/v1/…` agree. Charts mark their parts for tools and tests:
//! each drawn series is a `<g class="series" data-name=… data-points=N>`, each point a circle
//! with a `<title>` that shows its value on hover.
//!
//! With a tokens file the pages take the same bearer tokens as the API, from the
//! `Authorization` header or from the `pitot_token` cookie that the login form (`POST
//! /login`) sets; a page asked for without one answers the login form.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Router};
use pitot_shared::histogram::ValueHistogram;
use serde::Serialize;

use crate::access::Grant;
use crate::api::{ApiError, AppState, blocking};
use crate::drift::{self, DriftQuery, LoadedFeature, Mode, Side, Sides};
use crate::glue::now_ms;
use crate::model::GateDefinition;
use crate::model::rfc3339;
use crate::models;
use crate::reports::{self, MetricQuery, QuantileLine, ReportError};
use crate::slo;
use crate::store::Store;

use crate::access::COOKIE;

/// What the API's authentication needs from the pages.
pub const HOOKS: crate::api::PageHooks = crate::api::PageHooks {
    is_page,
    login_form,
};

/// Steps on a chart's time axis.
const STEPS: usize = 60;

/// Points on an SLO's burn-down chart.
const BURN_POINTS: usize = 30;

/// The ranges the picker offers: label, milliseconds.
const RANGES: [(&str, i64); 4] = [
    ("1h", 3_600_000),
    ("24h", 86_400_000),
    ("7d", 7 * 86_400_000),
    ("30d", 30 * 86_400_000),
];

/// The page routes (added to the API's router, behind the same authentication).
pub fn routes() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/", get(overview))
        .route("/models/{name}", get(model_page))
        .route("/slo/{name}", get(slo_page))
        .route("/drift", get(drift_page))
        .route("/agents", get(agents_page))
        .route("/login", post(login))
}

/// Whether `path` is one of the pages (a refused request gets the login form, not JSON).
pub fn is_page(path: &str) -> bool {
    path == "/"
        || path == "/drift"
        || path == "/agents"
        || path.starts_with("/models/")
        || path.starts_with("/slo/")
}

/// HTML-escapes `s`.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment.
fn seg(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A figure with the digits it needs (3 significant, no exponent for everyday sizes).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.3e}", v)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 1e-4 {
        let digits = (-a.log10()).floor() as usize + 3;
        format!("{v:.digits$}")
    } else {
        format!("{v:.2e}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), num)
}

/// A serde enum's wire name (`ok`, `page`, `drift`…).
fn label<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The page's range (`?range=1h|24h|7d|30d`, default 24h) and whether host lines are on.
#[derive(Debug, Clone)]
pub struct View {
    /// The picker's label (`24h`).
    pub range: &'static str,
    /// Its length.
    pub range_ms: i64,
    /// One line per host on the latency chart.
    pub hosts: bool,
    /// Drift page: version `b` against version `a` instead of the range against the week before.
    pub versions: Option<(String, String)>,
    /// Drift page: only this model's inputs.
    pub model: Option<String>,
}

/// The view `?range=…&hosts=…` asks for.
pub fn view(raw: Option<String>) -> Result<View, ApiError> {
    let mut v = View {
        range: "24h",
        range_ms: 86_400_000,
        hosts: false,
        versions: None,
        model: None,
    };
    let (mut a, mut b) = (None, None);
    for (k, val) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "range" => {
                let Some((l, ms)) = RANGES.iter().find(|(l, _)| *l == val) else {
                    return Err(ApiError::bad(format!(
                        "range `{val}`: use one of 1h, 24h, 7d, 30d"
                    )));
                };
                v.range = l;
                v.range_ms = *ms;
            }
            "hosts" => v.hosts = val == "1" || val == "on",
            "a" => a = Some(val.into_owned()),
            "b" => b = Some(val.into_owned()),
            "model" if !val.is_empty() => v.model = Some(val.into_owned()),
            other => {
                return Err(ApiError::bad(format!(
                    "unknown query parameter `{other}`; the pages take `range` and `hosts` \
                     (and on /drift `model`, `a` and `b`)"
                )));
            }
        }
    }
    match (a, b) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() && a != b => v.versions = Some((a, b)),
        (None, None) => {}
        _ => {
            return Err(ApiError::bad(
                "versions: give two different ones, `a=v1&b=v2`",
            ));
        }
    }
    Ok(v)
}

const STYLE: &str = r#"
:root{--bg:#fff;--fg:#1b1f24;--muted:#5b6570;--line:#d5dae0;--card:#f6f8fa;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;
--c0:#0969da;--c1:#bf3989;--c2:#1a7f37;--c3:#bc4c00;--c4:#8250df;--c5:#0a7e8c;--c6:#6e7781;--c7:#953800;--ref:#8c959f}
@media (prefers-color-scheme: dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#30363d;--card:#161b22;--ok:#3fb950;--warn:#d29922;--bad:#f85149;
--c0:#58a6ff;--c1:#f778ba;--c2:#56d364;--c3:#ffa657;--c4:#bc8cff;--c5:#39c5cf;--c6:#b1bac4;--c7:#ff7b72;--ref:#6e7681}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
header{display:flex;flex-wrap:wrap;gap:.6em 1.4em;align-items:center;padding:.7em 1em;border-bottom:1px solid var(--line);background:var(--card)}
header b{font-size:1.1em}nav a,.ranges a{margin-right:.8em}a{color:var(--c0)}
.ranges a.on{font-weight:700;text-decoration:none;color:var(--fg)}
main{max-width:1150px;margin:0 auto;padding:1em}h1{font-size:1.4em;margin:.3em 0}h2{font-size:1.15em;margin:1.4em 0 .4em}
.muted{color:var(--muted)}.wrap{overflow-x:auto}table{border-collapse:collapse;min-width:100%}
th,td{padding:.3em .6em;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.st{font-weight:600}.st-ok,.st-pass{color:var(--ok)}.st-ticket,.st-warn,.st-differ,.st-inconclusive{color:var(--warn)}.st-page,.st-drift,.st-fail{color:var(--bad)}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.5em .8em;min-width:9em}
.card .v{font-size:1.3em;font-weight:600}svg.chart{width:100%;height:auto;display:block;background:var(--card);border:1px solid var(--line);border-radius:6px}
svg text{fill:var(--muted);font-size:11px}svg .grid{stroke:var(--line)}svg .series path{fill:none;stroke-width:1.8}
svg .band{opacity:.18;stroke:none}svg circle{stroke:none}svg .series:hover path{stroke-width:3}
.legend span{margin-right:1em;white-space:nowrap}.legend i{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.3em;vertical-align:-.1em}
form.login{max-width:24em;margin:3em auto;background:var(--card);padding:1.2em;border:1px solid var(--line);border-radius:6px}
form.login input{width:100%;padding:.4em;margin:.4em 0 .8em;font:inherit}
"#;

/// The frame around a page's body.
fn layout(title: &str, path: &str, view: Option<&View>, body: &str) -> String {
    let mut ranges = String::new();
    if let Some(v) = view {
        ranges.push_str("<span class=\"ranges\">Range: ");
        for (l, _) in RANGES {
            let hosts = if v.hosts { "&amp;hosts=1" } else { "" };
            let _w = write!(
                ranges,
                "<a href=\"{path}?range={l}{hosts}\"{}>{l}</a>",
                if l == v.range { " class=\"on\"" } else { "" }
            );
        }
        ranges.push_str("</span>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{title} · Pitot</title><style>{STYLE}</style></head><body>\
         <header><b>Pitot</b><nav><a href=\"/\">Fleet</a><a href=\"/drift\">Drift</a>\
         <a href=\"/agents\">Agents</a></nav>{ranges}\
         <label class=\"muted\"><input type=\"checkbox\" id=\"refresh\"> refresh every 30 s</label>\
         </header><main>{body}<p class=\"muted\">Generated {now} by the aggregator; the same \
         figures are in the JSON API (<code>/api/v1/…</code>).</p></main>\
         <script>(function(){{var c=document.getElementById('refresh');\
         c.checked=localStorage.getItem('pitot-refresh')==='1';var t;function s(){{clearTimeout(t);\
         if(c.checked)t=setTimeout(function(){{location.reload()}},30000)}}\
         c.onchange=function(){{localStorage.setItem('pitot-refresh',c.checked?'1':'0');s()}};s()}})();\
         </script></body></html>",
        title = esc(title),
        now = rfc3339(now_ms()),
    )
}

fn status(s: &str) -> String {
    format!("<span class=\"st st-{0}\">{0}</span>", esc(s))
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend and hover name.
    pub name: String,
    /// Colour index.
    pub color: usize,
    /// (Unix ms, value).
    pub points: Vec<(i64, f64)>,
    /// Dashed (a second quantile of the same group).
    pub dashed: bool,
}

#[derive(Debug, Clone)]
/// A shaded band between two lines of the same times (p50 to p99).
pub struct Band {
    /// Colour index.
    pub color: usize,
    /// (Unix ms, low, high).
    pub points: Vec<(i64, f64, f64)>,
}

/// A time chart as inline SVG.
pub fn chart(
    id: &str,
    unit: &str,
    from_ms: i64,
    to_ms: i64,
    bands: &[Band],
    lines: &[Line],
) -> String {
    let (w, h, l, r, t, b) = (760.0, 250.0, 62.0, 12.0, 10.0, 26.0);
    let ymax = lines
        .iter()
        .flat_map(|x| x.points.iter().map(|p| p.1))
        .chain(bands.iter().flat_map(|x| x.points.iter().map(|p| p.2)))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
    let span = (to_ms - from_ms).max(1) as f64;
    let x = |ms: i64| l + (ms - from_ms) as f64 / span * (w - l - r);
    let y = |v: f64| t + (1.0 - v / ymax) * (h - t - b);
    let mut s = format!(
        "<svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         data-series=\"{}\" data-from=\"{from_ms}\" data-to=\"{to_ms}\" aria-label=\"{} lines\">",
        lines.len(),
        lines.len()
    );
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let _w = write!(
            s,
            "<line class=\"grid\" x1=\"{l}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - r,
            l - 4.0,
            y(v) + 4.0,
            num(v),
            y = y(v)
        );
    }
    let _w = write!(s, "<text x=\"4\" y=\"12\">{}</text>", esc(unit));
    let day = to_ms - from_ms > 2 * 86_400_000;
    for i in 0..=4 {
        let ms = from_ms + (to_ms - from_ms) * i / 4;
        let stamp = rfc3339(ms);
        let text = if day { &stamp[5..10] } else { &stamp[11..16] };
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _w = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{text}</text>",
            x(ms),
            h - 8.0
        );
    }
    for band in bands {
        if band.points.is_empty() {
            continue;
        }
        let mut d = String::new();
        for (i, (ms, _, hi)) in band.points.iter().enumerate() {
            let _w = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                x(*ms),
                y(*hi)
            );
        }
        for (ms, lo, _) in band.points.iter().rev() {
            let _w = write!(d, "L{:.1},{:.1}", x(*ms), y(*lo));
        }
        let _w = write!(
            s,
            "<path class=\"band\" style=\"fill:var(--c{})\" d=\"{d}Z\"/>",
            band.color % 8
        );
    }
    for line in lines {
        let color = format!("var(--c{})", line.color % 8);
        let _w = write!(
            s,
            "<g class=\"series\" data-name=\"{}\" data-points=\"{}\"><path style=\"stroke:{color}\"{} d=\"",
            esc(&line.name),
            line.points.len(),
            if line.dashed {
                " stroke-dasharray=\"5 3\""
            } else {
                ""
            }
        );
        for (i, (ms, v)) in line.points.iter().enumerate() {
            let _w = write!(
                s,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                x(*ms),
                y(*v)
            );
        }
        s.push_str("\"/>");
        for (ms, v) in &line.points {
            let _w = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.2\" style=\"fill:{color}\" data-t=\"{ms}\" \
                 data-v=\"{v}\"><title>{} {}: {}</title></circle>",
                x(*ms),
                y(*v),
                esc(&line.name),
                &rfc3339(*ms)[..16],
                num(*v)
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg><div class=\"legend\">");
    for line in lines {
        let _w = write!(
            s,
            "<span><i style=\"background:var(--c{})\"></i>{}</span>",
            line.color % 8,
            esc(&line.name)
        );
    }
    s.push_str("</div>");
    s
}

/// A group's tags as `k=v, …` (or `fleet`).
fn tags_label(tags: &BTreeMap<String, String>) -> String {
    if tags.is_empty() {
        return "fleet".into();
    }
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The latency chart of quantile lines: per group a p50–p99 band and both lines.
fn latency_chart(
    id: &str,
    unit: &str,
    from: i64,
    to: i64,
    groups: &[QuantileLine],
    hosts: &[QuantileLine],
) -> String {
    let mut bands = Vec::new();
    let mut lines = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let name = tags_label(&g.tags);
        let both: Vec<(i64, f64, f64)> = g
            .points
            .iter()
            .filter_map(|(t, _, q)| Some((*t, q.first().copied()??, q.get(1).copied()??)))
            .collect();
        bands.push(Band {
            color: i,
            points: both.clone(),
        });
        lines.push(Line {
            name: format!("{name} p50"),
            color: i,
            points: both.iter().map(|(t, p50, _)| (*t, *p50)).collect(),
            dashed: true,
        });
        lines.push(Line {
            name: format!("{name} p99"),
            color: i,
            points: both.iter().map(|(t, _, p99)| (*t, *p99)).collect(),
            dashed: false,
        });
    }
    for (i, g) in hosts.iter().enumerate() {
        lines.push(Line {
            name: format!("{} p99", tags_label(&g.tags)),
            color: groups.len() + i,
            points: g
                .points
                .iter()
                .filter_map(|(t, _, q)| Some((*t, q.get(1).copied()??)))
                .collect(),
            dashed: false,
        });
    }
    chart(id, unit, from, to, &bands, &lines)
}

fn page(html: String) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// `GET /`: models, SLOs and agents at a glance.
async fn overview(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let v = view(raw)?;
    let now = now_ms();
    let from = now - v.range_ms;
    let st = state.clone();
    let g = grant.clone();
    let (list, slos, agents) = blocking(move || {
        let ctx = st.models_context();
        let allowed = |name: &str| g.reads_model(name);
        let list = models::list(st.store.as_ref(), ctx, &allowed, from, now, now)?;
        let visible: Vec<slo::InstalledSlo> = st
            .slos
            .iter()
            .filter(|s| st.reads_slo(&g, s))
            .cloned()
            .collect();
        let slos = slo::report_all(st.store.as_ref(), &visible, now)?;
        let agents = if g.reads_all() {
            Some(reports::agents(st.store.as_ref(), &st.links, from, now)?)
        } else {
            None
        };
        Ok((list, slos, agents))
    })
    .await?;
    let mut b = String::from("<h1>Fleet</h1>");
    if let Some(agents) = &agents {
        let connected = agents
            .iter()
            .filter(|a| a.connection.state == "connected")
            .count();
        let lossy = agents.iter().filter(|a| a.loss.any).count();
        let worst_lag = agents.iter().map(|a| a.lag_seconds).fold(0.0, f64::max);
        let _w = write!(
            b,
            "<div class=\"cards\"><div class=\"card\"><div class=\"muted\">agents connected</div>\
             <div class=\"v\" id=\"agents-connected\">{connected} / {}</div></div>\
             <div class=\"card\"><div class=\"muted\">agents reporting loss</div><div class=\"v\">{lossy}</div></div>\
             <div class=\"card\"><div class=\"muted\">worst lag</div><div class=\"v\">{} s</div></div>\
             <div class=\"card\"><div class=\"muted\">models</div><div class=\"v\">{}</div></div>\
             <div class=\"card\"><div class=\"muted\">SLOs paging</div><div class=\"v\">{}</div></div></div>",
            agents.len(),
            num(worst_lag),
            list.models.len(),
            slos.iter().filter(|s| label(&s.alert) == "page").count()
        );
    }
    b.push_str(&models_table(&list.models, v.range));
    b.push_str("<h2>SLOs</h2>");
    if slos.is_empty() {
        b.push_str("<p class=\"muted\">No SLOs configured (<code>[[slo]]</code>).</p>");
    } else {
        b.push_str(
            "<div class=\"wrap\"><table id=\"slos\"><tr><th>SLO</th><th>window</th><th class=\"n\">objective</th>\
             <th class=\"n\">SLI</th><th class=\"n\">budget left</th><th>alert</th></tr>",
        );
        for s in &slos {
            let _w = write!(
                b,
                "<tr><td><a href=\"/slo/{}\">{}</a></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{} %</td><td>{}</td></tr>",
                seg(&s.name),
                esc(&s.name),
                esc(&s.window),
                num(s.objective),
                num(s.sli),
                num(s.error_budget.remaining * 100.0),
                status(&label(&s.alert))
            );
        }
        b.push_str("</table></div>");
    }
    Ok(page(layout("Fleet", "/", Some(&v), &b)))
}

fn models_table(models: &[models::ModelReport], range: &str) -> String {
    let mut b = String::from("<h2>Models</h2>");
    if models.is_empty() {
        b.push_str("<p class=\"muted\">No model seen yet: series tagged <code>model:…</code> appear here.</p>");
        return b;
    }
    b.push_str(
        "<div class=\"wrap\"><table id=\"models\"><tr><th>model</th><th>owner</th><th>live</th>\
         <th class=\"n\">req/s</th><th class=\"n\">p50</th><th class=\"n\">p99</th>\
         <th class=\"n\">cost</th><th>SLOs</th><th>drift</th></tr>",
    );
    for m in models {
        let live = m
            .live
            .iter()
            .map(|l| {
                format!(
                    "{} ({})",
                    if l.version.is_empty() {
                        "-"
                    } else {
                        &l.version
                    },
                    l.hosts
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let slos = m
            .slos
            .iter()
            .map(|s| format!("{} {}", esc(&s.name), status(&label(&s.alert))))
            .collect::<Vec<_>>()
            .join("<br>");
        let _w = write!(
            b,
            "<tr data-model=\"{name}\"><td><a href=\"/models/{href}?range={range}\">{name}</a></td><td>{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{slos}</td><td>{}</td></tr>",
            esc(m.owner.as_deref().unwrap_or("— nobody declared it")),
            esc(&live),
            opt(m.requests.as_ref().map(|r| r.per_second)),
            opt(m.latency.as_ref().and_then(|l| l.p50)),
            opt(m.latency.as_ref().and_then(|l| l.p99)),
            opt(m.cost.allocation_cost),
            m.drift
                .as_ref()
                .map_or_else(|| "–".into(), |d| status(&label(&d.status))),
            name = esc(&m.name),
            href = seg(&m.name),
        );
    }
    b.push_str("</table></div>");
    b
}

/// `GET /models/{name}`.
async fn model_page(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    state.need_model(&grant, &name)?;
    let v = view(raw)?;
    let st = state.clone();
    let html = blocking(move || {
        model_html(
            st.store.as_ref(),
            st.models_context(),
            &st.gates,
            &name,
            &v,
            now_ms(),
        )
    })
    .await?;
    Ok(page(html))
}

/// The model page of `name` over `v` as of `now_ms` (the handler's work, for benches too).
pub fn model_html(
    store: &dyn Store,
    ctx: models::Context<'_>,
    gates: &[GateDefinition],
    name: &str,
    v: &View,
    now: i64,
) -> Result<String, ReportError> {
    let from = now - v.range_ms;
    let hosts = v.hosts;
    // The summary, the versions table and the chart read the same latency series over the
    // same range: through the memo each is read and decoded once. The chart goes first, as
    // its per-step sums also give the whole-range ones (when the resolutions agree, as they
    // do from 24 h up).
    let memo = crate::store::ReadMemo::new(store);
    let store: &dyn Store = &memo;
    let (report, versions, lines, host_lines) = {
        let Some((def, configured)) = models::find(store, ctx.models, name)? else {
            return Err(ReportError::NotFound(format!(
                "no model `{name}`: not in [[model]] and no series tagged model:{name} has arrived"
            )));
        };
        let chart = |metric: &str| {
            let q = MetricQuery {
                metric: metric.to_owned(),
                filters: def.tags.clone(),
                from_ms: from,
                to_ms: now,
                group_by: vec!["version".into()],
            };
            reports::quantile_series(store, &q, &[0.5, 0.99], STEPS)
        };
        let mut charted = None;
        for metric in models::latency_candidates(&def) {
            let lines = chart(metric)?;
            if !lines.is_empty() {
                charted = Some((metric.to_owned(), lines));
                break;
            }
        }
        let report = models::report(store, ctx, &def, configured, from, now, now)?;
        match report.latency.as_ref().map(|l| l.metric.clone()) {
            None => (report, None, Vec::new(), Vec::new()),
            Some(metric) => {
                let q = MetricQuery {
                    metric,
                    filters: report.tags.clone().into_iter().collect(),
                    from_ms: from,
                    to_ms: now,
                    group_by: vec!["version".into()],
                };
                let qs = [("0.5".to_owned(), 0.5), ("0.99".to_owned(), 0.99)];
                let versions = reports::quantiles(store, &q, &qs).ok();
                let lines = match charted {
                    Some((m, lines)) if m == q.metric => lines,
                    _ => chart(&q.metric)?,
                };
                let host_lines = if hosts {
                    let q = MetricQuery {
                        group_by: vec!["version".into(), "host".into()],
                        ..q
                    };
                    reports::quantile_series(store, &q, &[0.5, 0.99], STEPS)?
                } else {
                    Vec::new()
                };
                (report, versions, lines, host_lines)
            }
        }
    };
    let path = format!("/models/{}", seg(name));
    let mut b = format!("<h1>Model {}</h1>", esc(&report.name));
    let _w = write!(
        b,
        "<p>Owner <b id=\"owner\">{}</b>{} · selected by {} · {} to {}</p>",
        esc(report.owner.as_deref().unwrap_or("nobody declared it")),
        if report.contact.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(&report.contact))
        },
        esc(&tags_label(&report.tags)),
        esc(&report.from),
        esc(&report.to)
    );
    b.push_str("<div class=\"cards\">");
    let card = |b: &mut String, id: &str, what: &str, value: String| {
        let _w = write!(
            b,
            "<div class=\"card\"><div class=\"muted\">{what}</div><div class=\"v\" id=\"{id}\">{value}</div></div>"
        );
    };
    card(
        &mut b,
        "requests",
        "requests/s",
        opt(report.requests.as_ref().map(|r| r.per_second)),
    );
    let unit = report
        .latency
        .as_ref()
        .and_then(|l| l.unit.clone())
        .unwrap_or_default();
    card(
        &mut b,
        "p50",
        "p50",
        opt(report.latency.as_ref().and_then(|l| l.p50)),
    );
    card(
        &mut b,
        "p99",
        "p99",
        opt(report.latency.as_ref().and_then(|l| l.p99)),
    );
    card(
        &mut b,
        "cost",
        "cost (allocation)",
        opt(report.cost.allocation_cost),
    );
    card(&mut b, "gpu-hours", "GPU hours", num(report.cost.gpu_hours));
    b.push_str("</div>");
    if let Some(latency) = &report.latency {
        let _w = write!(
            b,
            "<h2>Latency: {} ({})</h2><p class=\"muted\">p50–p99 band per version, merged exactly \
             over the fleet per step; <a href=\"{path}?range={}{}\">{}</a></p>",
            esc(&latency.metric),
            esc(if unit.is_empty() {
                "values as sent"
            } else {
                &unit
            }),
            v.range,
            if v.hosts { "" } else { "&amp;hosts=1" },
            if v.hosts {
                "hide hosts"
            } else {
                "one line per host"
            }
        );
        let step = lines.first().map_or(0, |l| l.step_ms);
        let _w = write!(
            b,
            "<div id=\"latency-chart\" data-step=\"{step}\">{}</div>",
            latency_chart("latency", &unit, from, now, &lines, &host_lines)
        );
    } else {
        b.push_str("<p class=\"muted\">No latency series for this model.</p>");
    }
    if let Some(versions) = &versions {
        b.push_str(
            "<div class=\"wrap\"><table id=\"versions\"><tr><th>version</th><th class=\"n\">count</th>\
             <th class=\"n\">p50</th><th class=\"n\">p99</th><th class=\"n\">max</th></tr>",
        );
        for g in &versions.groups {
            let version = g.tags.get("version").cloned().unwrap_or_default();
            let q = |k: &str| g.quantiles.get(k).copied().flatten();
            let _w = write!(
                b,
                "<tr data-version=\"{0}\"><td>{0}</td><td class=\"n\">{1}</td><td class=\"n\" data-v=\"{2}\">{3}</td>\
                 <td class=\"n\" data-v=\"{4}\">{5}</td><td class=\"n\">{6}</td></tr>",
                esc(if version.is_empty() { "-" } else { &version }),
                g.count,
                q("0.5").unwrap_or(f64::NAN),
                opt(q("0.5")),
                q("0.99").unwrap_or(f64::NAN),
                opt(q("0.99")),
                opt(g.max)
            );
        }
        b.push_str("</table></div>");
    }
    b.push_str("<h2>Live versions</h2>");
    if report.live.is_empty() {
        b.push_str("<p class=\"muted\">None live now.</p>");
    } else {
        b.push_str("<ul>");
        for l in &report.live {
            let _w = write!(b, "<li>{} on {} host(s)</li>", esc(&l.version), l.hosts);
        }
        b.push_str("</ul>");
    }
    let _w = write!(
        b,
        "<p><a href=\"/api/v1/models/{0}/timeline\">deployment timeline (JSON)</a></p>",
        seg(&report.name)
    );
    if !report.slos.is_empty() {
        b.push_str(
            "<h2>SLOs</h2><div class=\"wrap\"><table><tr><th>SLO</th><th class=\"n\">SLI</th>\
             <th class=\"n\">budget left</th><th>alert</th></tr>",
        );
        for s in &report.slos {
            let _w = write!(
                b,
                "<tr><td><a href=\"/slo/{}\">{}</a></td><td class=\"n\">{}</td><td class=\"n\">{} %</td><td>{}</td></tr>",
                seg(&s.name),
                esc(&s.name),
                num(s.sli),
                num(s.budget_remaining * 100.0),
                status(&label(&s.alert))
            );
        }
        b.push_str("</table></div>");
    }
    if let Some(d) = &report.drift {
        let _w = write!(
            b,
            "<h2>Inputs</h2><p>{} inputs, drift {}{}. <a href=\"/drift?range={}&amp;model={}\">Drift page</a>{}</p>",
            d.inputs,
            status(&label(&d.status)),
            if d.drifting.is_empty() {
                String::new()
            } else {
                format!(": {}", esc(&d.drifting.join(", ")))
            },
            v.range,
            seg(&report.name),
            match report.live.as_slice() {
                [a, b, ..] => format!(
                    " · <a id=\"versions-drift\" href=\"/drift?range={}&amp;model={}&amp;a={}&amp;b={}\">{} against {}</a>",
                    v.range,
                    seg(&report.name),
                    seg(&a.version),
                    seg(&b.version),
                    esc(&b.version),
                    esc(&a.version)
                ),
                _ => String::new(),
            }
        );
    }
    let mine: Vec<&GateDefinition> = gates.iter().filter(|g| g.model == report.name).collect();
    if !mine.is_empty() {
        b.push_str(
            "<h2>Deployment gates</h2><p class=\"muted\">Each gate's decision now, over its window.</p>\
             <div class=\"wrap\"><table id=\"gates\"><tr><th>gate</th><th>candidate against baseline</th>\
             <th>decision</th><th>checks</th></tr>",
        );
        for g in mine {
            let name = g.name.as_deref().unwrap_or("-");
            let from = now - g.window.as_millis() as i64;
            match crate::gate::evaluate(store, ctx, g, from, now, now) {
                Ok(r) => {
                    let checks = r
                        .checks
                        .iter()
                        .map(|c| format!("{} {}", esc(&c.name), status(&label(&c.verdict))))
                        .collect::<Vec<_>>()
                        .join(" · ");
                    let _w = write!(
                        b,
                        "<tr data-gate=\"{0}\"><td><a href=\"/api/v1/gate/{1}\">{0}</a></td><td>{2} against {3}</td>\
                         <td>{4}</td><td>{checks}</td></tr>",
                        esc(name),
                        seg(name),
                        esc(&r.candidate.label()),
                        esc(&r.baseline.label()),
                        status(&label(&r.decision))
                    );
                }
                Err(e) => {
                    let _w = write!(
                        b,
                        "<tr data-gate=\"{0}\"><td>{0}</td><td colspan=\"3\" class=\"muted\">{1}</td></tr>",
                        esc(name),
                        esc(&e.to_string())
                    );
                }
            }
        }
        b.push_str("</table></div>");
    }
    let c = &report.cost;
    let _w = write!(
        b,
        "<h2>Cost</h2><div class=\"wrap\"><table id=\"cost\"><tr><th>GPU hours</th><td class=\"n\">{}</td></tr>\
         <tr><th>GPU busy hours</th><td class=\"n\">{}</td></tr><tr><th>host hours</th><td class=\"n\">{}</td></tr>\
         <tr><th>allocation cost</th><td class=\"n\">{}</td></tr><tr><th>utilisation cost</th><td class=\"n\">{}</td></tr>\
         <tr><th>per 1k requests</th><td class=\"n\">{}</td></tr></table></div>",
        num(c.gpu_hours),
        num(c.gpu_busy_hours),
        num(c.host_hours),
        opt(c.allocation_cost),
        opt(c.utilisation_cost),
        opt(c.per_1k_requests.as_ref().map(|u| u.allocation))
    );
    Ok(layout(&format!("Model {name}"), &path, Some(v), &b))
}

/// `GET /slo/{name}`: the report, the burn-rate table, and the budget's burn-down over the
/// window.
async fn slo_page(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let v = view(raw)?;
    let Some(installed) = state.slos.iter().find(|s| s.def.name == name).cloned() else {
        return Err(ApiError::not_found(format!("no SLO named `{name}`")));
    };
    if !state.reads_slo(&grant, &installed) {
        return Err(state.deny(
            &grant,
            &format!("`read`, or a scope for the model SLO `{name}` belongs to"),
        ));
    }
    let now = now_ms();
    let st = state.clone();
    let (report, burn) = blocking(move || {
        let report = slo::report(st.store.as_ref(), &installed, now)?;
        let window = match installed.def.window {
            crate::model::SloWindow::Rolling(d) => d.as_millis() as i64,
            crate::model::SloWindow::Month => now - pitot_shared::slo::month_bounds(now).0,
        }
        .max(1);
        let mut burn = Vec::with_capacity(BURN_POINTS + 1);
        for i in 0..=BURN_POINTS {
            let at = now - window + window * i as i64 / BURN_POINTS as i64;
            let r = slo::report(st.store.as_ref(), &installed, at)?;
            if r.total > 0 {
                burn.push((at, r.error_budget.remaining * 100.0));
            }
        }
        Ok((report, burn))
    })
    .await?;
    let path = format!("/slo/{}", seg(&name));
    let mut b = format!("<h1>SLO {}</h1>", esc(&report.name));
    let _w = write!(
        b,
        "<p>Service {} · objective {} over {} · alert <span id=\"alert\">{}</span></p>\
         <div class=\"cards\"><div class=\"card\"><div class=\"muted\">SLI</div><div class=\"v\" id=\"sli\">{}</div></div>\
         <div class=\"card\"><div class=\"muted\">good / total</div><div class=\"v\">{} / {}</div></div>\
         <div class=\"card\"><div class=\"muted\">budget left</div><div class=\"v\" id=\"budget\">{} %</div></div>\
         <div class=\"card\"><div class=\"muted\">bad events allowed / used</div><div class=\"v\">{} / {}</div></div></div>",
        esc(&report.service),
        num(report.objective),
        esc(&report.window),
        status(&label(&report.alert)),
        num(report.sli),
        report.good,
        report.total,
        num(report.error_budget.remaining * 100.0),
        num(report.error_budget.allowed),
        num(report.error_budget.consumed)
    );
    let first = burn.first().map_or(now, |p| p.0).min(now - 3_600_000);
    b.push_str("<h2>Error budget over the window</h2><p class=\"muted\">Budget left (%) as evaluated at each point of the SLO's window.</p>");
    b.push_str(&chart(
        "burn-down",
        "% left",
        first,
        now,
        &[],
        &[Line {
            name: "budget left".into(),
            color: 0,
            points: burn,
            dashed: false,
        }],
    ));
    b.push_str(
        "<h2>Burn rates</h2><div class=\"wrap\"><table id=\"burn-rates\"><tr><th>lookback</th>\
         <th class=\"n\">burn rate</th><th>read at</th></tr>",
    );
    for (lookback, rate) in &report.burn_rates {
        let _w = write!(
            b,
            "<tr data-lookback=\"{0}\"><td>{0}</td><td class=\"n\" data-v=\"{rate}\">{1}</td><td>{2}</td></tr>",
            esc(lookback),
            num(*rate),
            esc(report
                .burn_resolutions
                .get(lookback)
                .map_or("", String::as_str))
        );
    }
    b.push_str("</table></div>");
    if !report.top_hosts.is_empty() {
        b.push_str("<h2>Hosts with the most bad events</h2><div class=\"wrap\"><table><tr><th>host</th><th class=\"n\">bad</th></tr>");
        for h in &report.top_hosts {
            let _w = write!(
                b,
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&h.host),
                h.bad
            );
        }
        b.push_str("</table></div>");
    }
    Ok(page(layout(&format!("SLO {name}"), &path, Some(&v), &b)))
}

/// Two distributions over shared bins: numeric sides as the share of observations per bin
/// (40 bins between the 1st and 99th percentile of both), categorical sides per category.
fn overlay(id: &str, reference: &Side, current: &Side) -> String {
    match (reference, current) {
        (Side::Numeric(r), Side::Numeric(c)) => numeric_overlay(id, r, c),
        (Side::Categorical(r), Side::Categorical(c)) => {
            let (rc, cc) = (r.counts(), c.counts());
            let (rt, ct) = (r.total().max(1) as f64, c.total().max(1) as f64);
            let mut cats: Vec<&String> = rc.keys().chain(cc.keys()).collect();
            cats.sort();
            cats.dedup();
            let mut s = format!(
                "<div class=\"wrap\"><table id=\"{id}\"><tr><th>value</th><th class=\"n\">reference</th><th class=\"n\">current</th></tr>"
            );
            for k in cats {
                let _w = write!(
                    s,
                    "<tr><td>{}</td><td class=\"n\">{} %</td><td class=\"n\">{} %</td></tr>",
                    esc(k),
                    num(rc.get(k).copied().unwrap_or(0) as f64 / rt * 100.0),
                    num(cc.get(k).copied().unwrap_or(0) as f64 / ct * 100.0)
                );
            }
            s.push_str("</table></div>");
            s
        }
        _ => String::new(),
    }
}

fn numeric_overlay(id: &str, r: &ValueHistogram, c: &ValueHistogram) -> String {
    let lo = [r.quantile(0.01), c.quantile(0.01)]
        .into_iter()
        .flatten()
        .fold(f64::INFINITY, f64::min);
    let hi = [r.quantile(0.99), c.quantile(0.99)]
        .into_iter()
        .flatten()
        .fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return "<p class=\"muted\">Not enough data on one side to draw.</p>".into();
    }
    const BINS: usize = 40;
    let width = (hi - lo) / BINS as f64;
    let shares = |h: &ValueHistogram| -> Vec<f64> {
        let mut bins = vec![0.0; BINS];
        let total = h.count().max(1) as f64;
        for b in h.buckets() {
            let mid = (b.lo + b.hi) / 2.0;
            let i = ((mid - lo) / width).floor();
            if i >= 0.0 && (i as usize) < BINS {
                bins[i as usize] += b.count as f64 / total * 100.0;
            }
        }
        bins
    };
    // The x axis is the value axis here: bins are laid out as "times" 0..BINS.
    let to_points = |v: Vec<f64>| -> Vec<(i64, f64)> {
        v.into_iter()
            .enumerate()
            .map(|(i, s)| (i as i64, s))
            .collect()
    };
    let svg = chart(
        id,
        "% of observations",
        0,
        BINS as i64 - 1,
        &[],
        &[
            Line {
                name: "reference".into(),
                color: 6,
                points: to_points(shares(r)),
                dashed: true,
            },
            Line {
                name: "current".into(),
                color: 0,
                points: to_points(shares(c)),
                dashed: false,
            },
        ],
    );
    format!(
        "{svg}<p class=\"muted\">Values from {} to {} in {BINS} bins of {}.</p>",
        num(lo),
        num(hi),
        num(width)
    )
}

/// `GET /drift`: every input's temporal drift (the range against the 7 days before it).
async fn drift_page(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    state.need_read_all(&grant)?;
    let v = view(raw)?;
    let now = now_ms();
    let from = now - v.range_ms;
    let st = Arc::clone(&state.drift);
    let store = Arc::clone(&state.store);
    let mode = match &v.versions {
        Some((a, b)) => Mode::Versions {
            a: a.clone(),
            b: b.clone(),
        },
        None => Mode::Temporal {
            ref_from_ms: from - crate::api::DEFAULT_REFERENCE_MS,
            ref_to_ms: from,
        },
    };
    let filters: Vec<(String, String)> = v
        .model
        .iter()
        .map(|m| ("model".to_owned(), m.clone()))
        .collect();
    let loaded = blocking(move || {
        let q = DriftQuery {
            mode,
            metric: None,
            filters,
            from_ms: from,
            to_ms: now,
        };
        let features = match drift::load_features(store.as_ref(), &q, &st.input_prefix) {
            Ok(f) => f,
            Err(ReportError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let report = drift::compare(features.clone(), &q, &st.config);
        Ok((features, report))
    })
    .await?;
    let (features, report) = loaded;
    let against = match &v.versions {
        Some((a, b)) => format!("version {} against version {}", esc(b), esc(a)),
        None => format!(
            "against {} to {}",
            esc(report.reference.as_ref().map_or("", |r| r.from.as_str())),
            esc(report.reference.as_ref().map_or("", |r| r.to.as_str()))
        ),
    };
    let mut b = format!(
        "<h1>Drift</h1><p class=\"muted\">Inputs (<code>{}*</code>){} over {} to {}, {against}.</p>",
        esc(&state.drift.input_prefix),
        v.model
            .as_ref()
            .map_or_else(String::new, |m| format!(" of model {}", esc(m))),
        esc(&report.current.from),
        esc(&report.current.to),
    );
    if report.results.is_empty() {
        b.push_str("<p class=\"muted\">No input series in this range.</p>");
    }
    let find = |metric: &str, tags: &BTreeMap<String, String>| -> Option<&LoadedFeature> {
        features
            .iter()
            .find(|f| f.metric == metric && &f.tags == tags)
    };
    b.push_str(
        "<div class=\"wrap\"><table id=\"drift\"><tr><th>input</th><th>tags</th><th>status</th><th>figures</th><th>why</th></tr>",
    );
    for r in &report.results {
        let figures = r
            .figures
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        format!(
                            "{k} <span data-figure=\"{k}\" data-v=\"{}\">{}</span>",
                            esc(&v.to_string()),
                            v.as_f64().map_or_else(|| esc(&v.to_string()), num)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" · ")
            })
            .unwrap_or_default();
        let _w = write!(
            b,
            "<tr data-input=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{figures}</td><td>{3}</td></tr>",
            esc(&r.metric),
            esc(&tags_label(&r.tags)),
            status(&label(&r.status)),
            esc(&r.reason)
        );
    }
    b.push_str("</table></div>");
    for (i, r) in report.results.iter().enumerate() {
        let Some(f) = find(&r.metric, &r.tags) else {
            continue;
        };
        if let Sides::Pair { reference, current } = &f.sides {
            let _w = write!(
                b,
                "<h2>{} <span class=\"muted\">{}</span> {}</h2>",
                esc(&r.metric),
                esc(&tags_label(&r.tags)),
                status(&label(&r.status))
            );
            b.push_str(&overlay(&format!("overlay-{i}"), reference, current));
        }
    }
    Ok(page(layout("Drift", "/drift", Some(&v), &b)))
}

/// `GET /agents`: every agent's link, lag, spool and loss.
async fn agents_page(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    state.need_read_all(&grant)?;
    let v = view(raw)?;
    let now = now_ms();
    let from = now - v.range_ms;
    let st = state.clone();
    let agents = blocking(move || reports::agents(st.store.as_ref(), &st.links, from, now)).await?;
    let refused = state.links.refusals(from, rfc3339);
    let mut b = String::from(
        "<h1>Agents</h1><div class=\"wrap\"><table id=\"agents\"><tr><th>agent</th><th>version</th>\
         <th>link</th><th class=\"n\">last batch (s ago)</th><th class=\"n\">lag (s)</th>\
         <th class=\"n\">spool (bytes)</th><th class=\"n\">batches</th><th class=\"n\">duplicates</th>\
         <th>lost or refused</th></tr>",
    );
    for a in &agents {
        let l = &a.loss;
        let loss = if l.any {
            let parts: Vec<String> = [
                ("malformed lines", l.malformed_lines),
                ("dropped lines", l.dropped_lines),
                ("kernel-dropped datagrams", l.kernel_dropped_datagrams),
                ("unspooled batches", l.unspooled_batches),
                ("damaged spooled batches", l.damaged_batches),
                ("client-dropped packets", l.client_dropped_packets),
            ]
            .iter()
            .filter(|(_, n)| *n > 0.0)
            .map(|(what, n)| format!("{} {what}", num(*n)))
            .collect();
            format!(
                "<span class=\"st st-warn\">{}</span>",
                esc(&parts.join(", "))
            )
        } else {
            "<span class=\"st st-ok\">none</span>".into()
        };
        let _w = write!(
            b,
            "<tr data-agent=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}{3}</td><td class=\"n\">{4}</td>\
             <td class=\"n\" data-v=\"{5}\">{6}</td><td class=\"n\">{7}</td><td class=\"n\">{8}</td><td class=\"n\">{9}</td><td>{loss}</td></tr>",
            esc(&a.id),
            esc(&a.version),
            esc(&a.connection.state),
            a.connection
                .last_error
                .as_ref()
                .map(|e| format!("<br><span class=\"muted\">{}</span>", esc(e)))
                .unwrap_or_default(),
            opt(a.last_batch_age_seconds),
            a.lag_seconds,
            num(a.lag_seconds),
            a.spool_bytes,
            a.batches,
            a.duplicates
        );
    }
    b.push_str("</table></div>");
    if !refused.is_empty() {
        b.push_str("<h2>Refused connections</h2><div class=\"wrap\"><table><tr><th>peer</th><th>details</th></tr>");
        for r in &refused {
            let row = serde_json::to_value(r).unwrap_or_default();
            let _w = write!(
                b,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&r.peer),
                esc(&row.to_string())
            );
        }
        b.push_str("</table></div>");
    }
    Ok(page(layout("Agents", "/agents", Some(&v), &b)))
}

/// The login form (answered with 401 to a page asked for without a valid token).
pub fn login_form(next: &str, error: Option<&str>) -> Response {
    let body = format!(
        "<form class=\"login\" method=\"post\" action=\"/login\"><h1>Sign in</h1>\
         <p class=\"muted\">This aggregator needs an access token (<code>pitot tokens new</code> makes one).</p>\
         {}<label>Token<input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label>\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><button type=\"submit\">Sign in</button></form>",
        error.map_or_else(String::new, |e| format!(
            "<p class=\"st st-page\">{}</p>",
            esc(e)
        )),
        esc(next)
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::CACHE_CONTROL, "no-store")],
        Html(layout("Sign in", "/", None, &body)),
    )
        .into_response()
}

/// `POST /login` (form `token`, `next`): a known token is set as an HTTP-only cookie and the
/// browser sent on to `next`; an unknown one gets the form again.
async fn login(State(state): State<AppState>, body: Bytes) -> Response {
    let mut token = String::new();
    let mut next = "/".to_owned();
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "token" => token = v.trim().to_owned(),
            "next" if v.starts_with('/') && !v.starts_with("//") => next = v.into_owned(),
            _ => {}
        }
    }
    let Some(tokens) = &state.tokens else {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
    };
    if tokens.authenticate(&token).is_none() || token.contains(';') {
        return login_form(
            &next,
            Some("That token is not in the aggregator's tokens file."),
        );
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, next),
            (
                header::SET_COOKIE,
                format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000"),
            ),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert!(is_page("/") && is_page("/models/llama3") && !is_page("/api/v1/models"));
    }

    #[test]
    fn numbers_keep_their_digits() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(31.25), "31.2");
        assert_eq!(num(0.000_123_4), "0.000123");
        assert_eq!(num(0.0312), "0.0312");
        assert_eq!(num(f64::NAN), "–");
    }

    #[test]
    fn a_chart_marks_each_series_and_point() {
        let lines = [
            Line {
                name: "v1 p99".into(),
                color: 0,
                points: vec![(0, 1.0), (10, 2.0), (20, 3.0)],
                dashed: false,
            },
            Line {
                name: "v2 <p99>".into(),
                color: 1,
                points: vec![(5, 1.5)],
                dashed: true,
            },
        ];
        let svg = chart("c", "ms", 0, 20, &[], &lines);
        assert!(svg.contains("data-series=\"2\""));
        assert!(svg.contains("data-name=\"v1 p99\" data-points=\"3\""));
        assert!(svg.contains("data-name=\"v2 &lt;p99&gt;\" data-points=\"1\""));
        assert_eq!(svg.matches("<circle").count(), 4);
    }
}
