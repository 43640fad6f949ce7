//! The HTTP API (axum): parse the query, call `reports`, serialize JSON. No business logic.
//! Bad input gets a 4xx with `{"error": "..."}`, never a 500.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;

use crate::access::{Grant, Tokens};
use crate::audit;
use crate::merge::AuditSink;

use crate::config::DriftSettings;
use crate::drift::{self, DriftQuery, Mode};
use crate::export::Exports;
use crate::exposition;
use crate::gate;
use crate::glue::now_ms;
use crate::links::Links;
use crate::model::{GateDefinition, ModelDefinition, OnDrift, parse_time, rfc3339};
use crate::models;
use crate::reports::{self, MetricQuery, ReportError};
use crate::slo::{self, InstalledSlo};
use crate::store::Store;
use crate::telemetry::Stats;
use crate::timeline;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Agents' links and refused connections.
    pub links: Arc<Links>,
    /// Drift floors, input prefix and named references.
    pub drift: Arc<DriftSettings>,
    /// SLOs, with their store ids.
    pub slos: Arc<Vec<InstalledSlo>>,
    /// Declared models.
    pub models: Arc<Vec<ModelDefinition>>,
    /// Declared gates.
    pub gates: Arc<Vec<GateDefinition>>,
    /// Sloth-named SLO series on `/metrics`.
    pub sloth_metrics: bool,
    /// Fleet aggregates for `/metrics` (`[[export]]`).
    pub exports: Arc<Exports>,
    /// Alert delivery (`[[alert]]`), for its counters on `/metrics`.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// The report pages' hooks into authentication (`None`: no pages).
    pub pages: Option<PageHooks>,
    /// Bearer tokens (`None`: the API is open).
    pub tokens: Option<Arc<Tokens>>,
    /// With tokens, `/metrics` is served without one.
    pub metrics_public: bool,
    /// Into the audit trail (token use and refusals).
    pub audit: Arc<AuditSink>,
}

/// What the authentication middleware needs from the report pages (the pages sit above the
/// API, so they hand these down instead of being imported).
#[derive(Debug, Clone, Copy)]
pub struct PageHooks {
    /// Whether a path is a page (a refused request gets the login form, not JSON).
    pub is_page: fn(&str) -> bool,
    /// The login form, for `next`, with an error line.
    pub login_form: fn(&str, Option<&str>) -> Response,
}

/// The router: the API's routes, `extra` (the report pages), all behind the authentication.
pub fn router(state: AppState, extra: Router<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/series", get(series))
        .route("/api/v1/quantiles", get(quantiles))
        .route("/api/v1/counters", get(counters))
        .route("/api/v1/categories", get(categories))
        .route("/api/v1/drift", get(drift_report))
        .route("/api/v1/slo", get(slo_list))
        .route("/api/v1/slo/{name}", get(slo_one))
        .route("/api/v1/audit", get(audit_list))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/api/v1/gate", get(gate_adhoc))
        .route(
            "/api/v1/gate/{name}",
            get(gate_named).post(gate_named_status),
        )
        .route("/api/v1/models", get(model_list))
        .route("/api/v1/models/{name}", get(model_one))
        .route("/api/v1/models/{name}/timeline", get(model_timeline))
        .merge(extra)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Who is asking: with a tokens file, a valid `Authorization: Bearer` token (401 otherwise),
/// except `/healthz` and, when public, `/metrics`; without one, everyone may read everything.
/// The grant travels to the handlers, which check their scope.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let grant = match &state.tokens {
        None => Grant::open(),
        Some(_)
            if req.uri().path() == "/healthz"
                || req.uri().path() == "/login"
                || (req.uri().path() == "/metrics" && state.metrics_public) =>
        {
            Grant::open()
        }
        Some(tokens) => {
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .or_else(|| {
                    // The report pages' login form sets the same token as a cookie.
                    req.headers()
                        .get(header::COOKIE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(crate::access::cookie_token)
                });
            match presented.and_then(|t| tokens.authenticate(t)) {
                Some(entry) => {
                    // A token's use: into the audit trail once an hour per token.
                    state.audit.send_limited(
                        &format!("used {}", entry.name),
                        Some(3_600_000),
                        |_| audit::Event::TokenUsed {
                            token: entry.name.clone(),
                        },
                    );
                    Grant::of(entry)
                }
                None => {
                    state
                        .stats
                        .http_unauthorized
                        .fetch_add(1, Ordering::Relaxed);
                    let path = req.uri().path().to_owned();
                    state
                        .audit
                        .send_limited("denied - 401", None, |suppressed| {
                            audit::Event::TokenDenied {
                                token: "-".into(),
                                status: 401,
                                path,
                                suppressed,
                            }
                        });
                    let why = if presented.is_some() {
                        "this bearer token is not in the aggregator's tokens file"
                    } else {
                        "this API needs a bearer token: send `Authorization: Bearer <token>` \
                         (`pitot report --token`, or PITOT_TOKEN); `pitot tokens new` makes one"
                    };
                    tracing::info!(path = %req.uri().path(), known = false, "HTTP request without a valid token refused (401).");
                    if let Some(pages) = state.pages.filter(|p| (p.is_page)(req.uri().path())) {
                        let next = req
                            .uri()
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .to_owned();
                        let error = presented.is_some().then_some(why);
                        return (pages.login_form)(&next, error);
                    }
                    let mut resp = ApiError(StatusCode::UNAUTHORIZED, why.into()).into_response();
                    resp.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Bearer realm=\"pitot\""),
                    );
                    return resp;
                }
            }
        }
    };
    req.extensions_mut().insert(grant);
    next.run(req).await
}

impl AppState {
    /// What the models report reads besides the store.
    pub(crate) fn models_context(&self) -> models::Context<'_> {
        models::Context {
            models: &self.models,
            slos: &self.slos,
            drift: &self.drift.config,
            input_prefix: &self.drift.input_prefix,
        }
    }

    /// A 403 for `grant`, which lacks what `needs` says; counted and logged (the token's name,
    /// never the token).
    pub(crate) fn deny(&self, grant: &Grant, needs: &str) -> ApiError {
        self.stats.http_forbidden.fetch_add(1, Ordering::Relaxed);
        let token = grant.name.clone().unwrap_or_else(|| "-".into());
        self.audit
            .send_limited(&format!("denied {token} 403"), None, |suppressed| {
                audit::Event::TokenDenied {
                    token: token.clone(),
                    status: 403,
                    path: needs.to_owned(),
                    suppressed,
                }
            });
        tracing::info!(
            token = grant.name.as_deref().unwrap_or("-"),
            needs,
            "HTTP request outside the token's scopes refused (403)."
        );
        let has = if grant.models().is_empty() {
            String::new()
        } else {
            format!(
                "; this token reads the models {}",
                grant
                    .models()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        ApiError(StatusCode::FORBIDDEN, format!("this needs {needs}{has}"))
    }

    /// 403 unless `grant` reads everything.
    pub(crate) fn need_read_all(&self, grant: &Grant) -> Result<(), ApiError> {
        if grant.reads_all() {
            Ok(())
        } else {
            Err(self.deny(grant, "the `read` scope"))
        }
    }

    /// 403 unless `grant` reads the series these filters select.
    pub(crate) fn need_tags(
        &self,
        grant: &Grant,
        filters: &[(String, String)],
    ) -> Result<(), ApiError> {
        if grant.reads_tags(filters, &self.models) {
            Ok(())
        } else {
            let hint: Vec<String> = grant
                .models()
                .iter()
                .map(|m| {
                    crate::access::selector(m, &self.models)
                        .iter()
                        .map(|(k, v)| format!("tag={k}:{v}"))
                        .collect::<Vec<_>>()
                        .join("&")
                })
                .collect();
            Err(self.deny(
                grant,
                &if hint.is_empty() {
                    "the `read` scope".to_owned()
                } else {
                    format!(
                        "`read`, or a filter to one of this token's models ({})",
                        hint.join(" or ")
                    )
                },
            ))
        }
    }

    /// 403 unless `grant` reads model `name`.
    pub(crate) fn need_model(&self, grant: &Grant, name: &str) -> Result<(), ApiError> {
        if grant.reads_model(name) {
            Ok(())
        } else {
            Err(self.deny(grant, &format!("`read` or `read:model:{name}`")))
        }
    }

    /// Whether `grant` reads this SLO: everything, or the SLO belongs to one of its models
    /// (`[[model]] slos`, or the SLI's tags select that model).
    pub(crate) fn reads_slo(&self, grant: &Grant, slo: &InstalledSlo) -> bool {
        grant.reads_all()
            || self
                .models
                .iter()
                .any(|m| grant.reads_model(&m.name) && m.slos.contains(&slo.def.name))
            || grant.reads_tags(slo.def.sli.tags(), &self.models)
    }
}

/// An API error with its status.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::BadRequest(m) => ApiError(StatusCode::BAD_REQUEST, m),
            ReportError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            ReportError::Store(crate::store::StoreError::Closed) => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is closed: a write failed (a full disk?) and reopening it failed; \
                 reports answer again once there is free space under store.dir"
                    .into(),
            ),
            other => internal(&other),
        }
    }
}

/// A 500: the cause goes to the log with an id; the client gets the id and nothing internal.
fn internal(cause: &dyn std::fmt::Display) -> ApiError {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    tracing::error!(error_id = id, error = %cause, "API request failed.");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error {id}; the aggregator's log has the cause (error_id={id})"),
    )
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }

    /// A 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, message.into())
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such endpoint; see docs/CONTRACT.md".into(),
    )
}

/// The query parameters each endpoint takes (anything else is a 400 naming these).
const METRIC_PARAMS: &[&str] = &["metric", "tag", "from", "to", "group_by"];
const QUANTILE_PARAMS: &[&str] = &["metric", "tag", "from", "to", "group_by", "q"];
const SLO_PARAMS: &[&str] = &["at"];
const DRIFT_PARAMS: &[&str] = &[
    "mode",
    "metric",
    "tag",
    "from",
    "to",
    "ref_from",
    "ref_to",
    "reference",
    "a",
    "b",
];

struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<String>) -> Self {
        Params(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Parses and refuses any parameter not in `known`, naming them: a misspelt `form=` must
    /// not silently become the default window.
    fn parse_known(raw: Option<String>, known: &[&str]) -> Result<Self, ApiError> {
        let params = Self::parse(raw);
        if let Some((unknown, _)) = params.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown query parameter `{unknown}`; this endpoint takes {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        Ok(params)
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn tags(&self) -> Result<Vec<(String, String)>, ApiError> {
        self.0
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| {
                v.split_once(':')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| bad(format!("tag `{v}` must be key:value")))
            })
            .collect()
    }

    fn metric_query(&self) -> Result<MetricQuery, ApiError> {
        let now = now_ms();
        let metric = self
            .one("metric")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("`metric` is required, e.g. ?metric=request.latency"))?
            .to_owned();
        let from_ms = parse_time(self.one("from").unwrap_or("now-1h"), now).map_err(bad)?;
        let to_ms = parse_time(self.one("to").unwrap_or("now"), now).map_err(bad)?;
        if from_ms >= to_ms {
            return Err(bad("`from` must be before `to`"));
        }
        Ok(MetricQuery {
            metric,
            filters: self.tags()?,
            from_ms,
            to_ms,
            group_by: self
                .one("group_by")
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReportError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(&e))?
        .map_err(ApiError::from)
}

async fn healthz(State(state): State<AppState>) -> Response {
    if !state.stats.quic_up.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "quic listener down\n").into_response()
    } else if !state.stats.store_writable.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: store not writable (free space under store.dir; reports still answer)\n",
        )
            .into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(e) = state.need_read_all(&grant) {
        return e.into_response();
    }
    let protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(exposition::wants_protobuf);
    let mut body = state.stats.exposition();
    if !state.exports.is_empty() {
        body.push_str(&format!(
            "# HELP pitot_aggregator_export_capped_total Series values not exported because \
             their [[export]] had max_groups groups.\n# TYPE pitot_aggregator_export_capped_total \
             counter\npitot_aggregator_export_capped_total {}\n",
            state.exports.capped()
        ));
    }
    if !state.alerts.is_empty() {
        body.push_str(&state.alerts.exposition());
    }
    if !state.gates.is_empty() {
        let st = state.clone();
        let now = now_ms();
        let gates = blocking(move || {
            let mut out = Vec::new();
            for g in st.gates.iter() {
                let from = now - g.window.as_millis() as i64;
                out.push(gate::evaluate(
                    st.store.as_ref(),
                    st.models_context(),
                    g,
                    from,
                    now,
                    now,
                )?);
            }
            Ok(out)
        })
        .await;
        match gates {
            Ok(reports) => body.push_str(&gate::exposition(&reports)),
            Err(ApiError(status, message)) => return (status, message).into_response(),
        }
    }
    if !state.slos.is_empty() {
        let slos = Arc::clone(&state.slos);
        let store = Arc::clone(&state.store);
        let sloth = state.sloth_metrics;
        match blocking(move || Ok(slo::report_all(store.as_ref(), &slos, now_ms())?)).await {
            Ok(reports) => body.push_str(&slo::exposition(&reports, sloth)),
            Err(ApiError(status, message)) => return (status, message).into_response(),
        }
    }
    if protobuf {
        let mut families = exposition::parse_own_text(&body);
        families.extend(state.exports.families(now_ms(), true));
        return (
            [(header::CONTENT_TYPE, exposition::PROTOBUF)],
            exposition::encode(&families),
        )
            .into_response();
    }
    body.push_str(&state.exports.text(now_ms()));
    ([(header::CONTENT_TYPE, exposition::TEXT)], body).into_response()
}

/// `at=TIME` evaluates SLOs at another instant than now (an incident review).
fn slo_time(params: &Params) -> Result<i64, ApiError> {
    let now = now_ms();
    parse_time(params.one("at").unwrap_or("now"), now).map_err(bad)
}

async fn slo_list(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<slo::SloList>, ApiError> {
    let at = slo_time(&Params::parse_known(raw, SLO_PARAMS)?)?;
    let visible: Vec<InstalledSlo> = state
        .slos
        .iter()
        .filter(|s| state.reads_slo(&grant, s))
        .cloned()
        .collect();
    let reports =
        blocking(move || Ok(slo::report_all(state.store.as_ref(), &visible, at)?)).await?;
    Ok(Json(slo::SloList { slos: reports }))
}

async fn slo_one(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<slo::SloReport>, ApiError> {
    let at = slo_time(&Params::parse_known(raw, SLO_PARAMS)?)?;
    let Some(installed) = state.slos.iter().find(|s| s.def.name == name).cloned() else {
        let known: Vec<&str> = state.slos.iter().map(|s| s.def.name.as_str()).collect();
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no SLO named `{name}`; configured: {}",
                if known.is_empty() {
                    "none (add [[slo]] to the aggregator config)".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    if !state.reads_slo(&grant, &installed) {
        return Err(state.deny(
            &grant,
            &format!("`read`, or a scope for the model SLO `{name}` belongs to"),
        ));
    }
    let report = blocking(move || Ok(slo::report(state.store.as_ref(), &installed, at)?)).await?;
    Ok(Json(report))
}

async fn agents(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<reports::AgentsReport>, ApiError> {
    state.need_read_all(&grant)?;
    let params = Params::parse_known(raw, &["from"])?;
    let now = now_ms();
    let from_ms = parse_time(params.one("from").unwrap_or("now-1h"), now).map_err(bad)?;
    let links = Arc::clone(&state.links);
    let list =
        blocking(move || reports::agents(state.store.as_ref(), &links, from_ms, now)).await?;
    let refused = state.links.refusals(from_ms, rfc3339);
    Ok(Json(reports::AgentsReport {
        agents: list,
        refused,
    }))
}

async fn series(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<reports::SeriesList>, ApiError> {
    let params = Params::parse_known(raw, &["match", "tag"])?;
    let filters = params.tags()?;
    let name = params
        .one("match")
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    let models = Arc::clone(&state.models);
    let mut list =
        blocking(move || reports::series(state.store.as_ref(), name.as_deref(), &filters)).await?;
    // A scoped token sees only its models' series.
    list.retain(|s| {
        let tags: Vec<(String, String)> = s.tags.clone().into_iter().collect();
        grant.reads_tags(&tags, &models)
    });
    Ok(Json(reports::SeriesList { series: list }))
}

fn parse_quantiles(text: &str) -> Result<Vec<(String, f64)>, ApiError> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let s = s.trim();
            match s.parse::<f64>() {
                Ok(q) if (0.0..=1.0).contains(&q) => Ok((s.to_owned(), q)),
                _ => Err(bad(format!(
                    "quantile `{s}` must be a number between 0 and 1"
                ))),
            }
        })
        .collect()
}

async fn quantiles(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<reports::QuantileReport>, ApiError> {
    let params = Params::parse_known(raw, QUANTILE_PARAMS)?;
    let q = params.metric_query()?;
    state.need_tags(&grant, &q.filters)?;
    let qs = parse_quantiles(params.one("q").unwrap_or("0.5,0.9,0.99,0.999"))?;
    if qs.is_empty() {
        return Err(bad("`q` lists no quantile"));
    }
    let report = blocking(move || reports::quantiles(state.store.as_ref(), &q, &qs)).await?;
    Ok(Json(report))
}

async fn counters(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<reports::CounterReport>, ApiError> {
    let q = Params::parse_known(raw, METRIC_PARAMS)?.metric_query()?;
    state.need_tags(&grant, &q.filters)?;
    let report = blocking(move || reports::counters(state.store.as_ref(), &q)).await?;
    Ok(Json(report))
}

async fn categories(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<reports::CategoryReport>, ApiError> {
    let q = Params::parse_known(raw, METRIC_PARAMS)?.metric_query()?;
    state.need_tags(&grant, &q.filters)?;
    let report = blocking(move || reports::categories(state.store.as_ref(), &q)).await?;
    Ok(Json(report))
}

/// The query parameters of the gate endpoints (overrides of a named gate's settings).
const GATE_PARAMS: &[&str] = &[
    "model",
    "baseline",
    "candidate",
    "from",
    "to",
    "window",
    "latency_metric",
    "quantiles",
    "max_ratio",
    "on_drift",
];

fn tag_list(text: &str, key: &str) -> Result<Vec<(String, String)>, ApiError> {
    text.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            t.trim()
                .split_once(':')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| bad(format!("{key} `{t}` must be key:value, e.g. version:v1")))
        })
        .collect()
}

/// Applies the query's overrides to `g` and returns the window.
fn gate_overrides(
    params: &Params,
    g: &mut GateDefinition,
    now: i64,
) -> Result<(i64, i64), ApiError> {
    if let Some(m) = params.one("latency_metric").filter(|m| !m.is_empty()) {
        g.latency_metric = Some(m.to_owned());
    }
    if let Some(r) = params.one("max_ratio") {
        g.latency.max_ratio = r
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 1.0)
            .ok_or_else(|| bad("`max_ratio` must be a number of at least 1, e.g. 1.1"))?;
    }
    if let Some(q) = params.one("quantiles") {
        g.latency.quantiles = parse_quantiles(q)?.into_iter().map(|(_, q)| q).collect();
        if g.latency.quantiles.iter().any(|q| !(*q > 0.0 && *q < 1.0)) {
            return Err(bad("`quantiles` must lie between 0 and 1, e.g. 0.5,0.99"));
        }
    }
    match params.one("on_drift") {
        None => {}
        Some("fail") => g.on_drift = OnDrift::Fail,
        Some("warn") => g.on_drift = OnDrift::Warn,
        Some(o) => return Err(bad(format!("on_drift `{o}` is not fail or warn"))),
    }
    let to_ms = parse_time(params.one("to").unwrap_or("now"), now).map_err(bad)?;
    let from_ms = match (params.one("from"), params.one("window")) {
        (Some(_), Some(_)) => return Err(bad("give `from` or `window`, not both")),
        (Some(t), None) => parse_time(t, now).map_err(bad)?,
        (None, Some(w)) => {
            let d =
                pitot_shared::config::parse_duration(w).map_err(|e| bad(format!("window: {e}")))?;
            to_ms - d.as_millis() as i64
        }
        (None, None) => to_ms - g.window.as_millis() as i64,
    };
    if from_ms >= to_ms {
        return Err(bad("`from` must be before `to`"));
    }
    Ok((from_ms, to_ms))
}

/// Evaluates `g` for `grant`, records the decision in the audit trail.
async fn run_gate(
    state: AppState,
    grant: Grant,
    g: GateDefinition,
    from_ms: i64,
    to_ms: i64,
    now: i64,
) -> Result<Json<gate::GateReport>, ApiError> {
    state.need_model(&grant, &g.model)?;
    let st = state.clone();
    let report = blocking(move || {
        gate::evaluate(
            st.store.as_ref(),
            st.models_context(),
            &g,
            from_ms,
            to_ms,
            now,
        )
    })
    .await?;
    let name = report.gate.clone().unwrap_or_else(|| {
        format!(
            "{}:{}→{}",
            report.model,
            report.baseline.label(),
            report.candidate.label()
        )
    });
    let decision = report.decision.label().to_lowercase();
    let evidence = gate::evidence(&report);
    state
        .audit
        .send_limited(&format!("gate {name} {decision}"), None, |suppressed| {
            audit::Event::GateDecision {
                gate: name.clone(),
                decision: decision.clone(),
                evidence,
                suppressed,
            }
        });
    Ok(Json(report))
}

/// `GET /api/v1/gate/{name}`: a declared gate, with the query's overrides.
async fn gate_named(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<gate::GateReport>, ApiError> {
    let params = Params::parse_known(raw, GATE_PARAMS)?;
    let Some(mut g) = state
        .gates
        .iter()
        .find(|g| g.name.as_deref() == Some(name.as_str()))
        .cloned()
    else {
        let known: Vec<&str> = state
            .gates
            .iter()
            .filter_map(|g| g.name.as_deref())
            .collect();
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no gate named `{name}`; configured: {}",
                if known.is_empty() {
                    "none (add [[gate]] to the aggregator config, or ask /api/v1/gate?model=…&baseline=…&candidate=…)".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    if params.one("model").is_some()
        || params.one("baseline").is_some()
        || params.one("candidate").is_some()
    {
        return Err(bad(
            "a named gate's model, baseline and candidate are its own; use /api/v1/gate?model=… for another comparison",
        ));
    }
    let now = now_ms();
    let (from_ms, to_ms) = gate_overrides(&params, &mut g, now)?;
    run_gate(state, grant, g, from_ms, to_ms, now).await
}

/// `POST /api/v1/gate/{name}` (a Flagger webhook): the same report, with the decision in the
/// status: 200 pass, 409 fail, 503 inconclusive (any request body is ignored).
async fn gate_named_status(
    state: State<AppState>,
    grant: Extension<Grant>,
    name: Path<String>,
    raw: RawQuery,
) -> Response {
    match gate_named(state, grant, name, raw).await {
        Ok(Json(report)) => {
            let status = match report.decision {
                pitot_shared::gate::Verdict::Pass | pitot_shared::gate::Verdict::Warn => {
                    StatusCode::OK
                }
                pitot_shared::gate::Verdict::Fail => StatusCode::CONFLICT,
                pitot_shared::gate::Verdict::Inconclusive => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, Json(report)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/gate?model=M&baseline=version:v1&candidate=version:v2&from=now-15m`.
async fn gate_adhoc(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<gate::GateReport>, ApiError> {
    let params = Params::parse_known(raw, GATE_PARAMS)?;
    let need = |k: &str| {
        params.one(k).filter(|v| !v.is_empty()).ok_or_else(|| {
            bad(format!(
                "`{k}` is required: ?model=llama3&baseline=version:v1&candidate=version:v2"
            ))
        })
    };
    let model = need("model")?.to_owned();
    let baseline = tag_list(need("baseline")?, "baseline")?;
    let candidate = tag_list(need("candidate")?, "candidate")?;
    if baseline.is_empty() || candidate.is_empty() || baseline == candidate {
        return Err(bad("baseline and candidate must select different series"));
    }
    let mut g = GateDefinition::adhoc(model, baseline, candidate);
    let now = now_ms();
    let (from_ms, to_ms) = gate_overrides(&params, &mut g, now)?;
    run_gate(state, grant, g, from_ms, to_ms, now).await
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditList {
    /// Entries, oldest first.
    pub entries: Vec<audit::Entry>,
}

/// The most entries one `/api/v1/audit` answers (the newest in the range).
const AUDIT_LIMIT: usize = 10_000;

/// `GET /api/v1/audit?from&to&kind&limit` (the `audit` scope): entries in a range, of a kind
/// (a prefix: `agent.`), oldest first; default everything kept.
async fn audit_list(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AuditList>, ApiError> {
    if !grant.reads_audit() {
        return Err(state.deny(&grant, "the `audit` scope"));
    }
    let params = Params::parse_known(raw, &["from", "to", "kind", "limit"])?;
    let now = now_ms();
    let from_ms = match params.one("from") {
        Some(t) => parse_time(t, now).map_err(bad)?,
        None => i64::MIN,
    };
    let to_ms = match params.one("to") {
        Some(t) => parse_time(t, now).map_err(bad)?,
        None => i64::MAX,
    };
    let limit = match params.one("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=AUDIT_LIMIT).contains(n))
            .ok_or_else(|| bad(format!("`limit` must be 1 to {AUDIT_LIMIT}")))?,
        None => AUDIT_LIMIT,
    };
    let kind = params.one("kind").map(str::to_owned);
    let entries = blocking(move || {
        Ok(audit::list(
            state.store.as_ref(),
            from_ms,
            to_ms,
            kind.as_deref(),
            limit,
        )?)
    })
    .await?;
    Ok(Json(AuditList { entries }))
}

/// `GET /api/v1/audit/verify` (the `audit` scope): walks the chain.
async fn audit_verify(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<audit::Verification>, ApiError> {
    if !grant.reads_audit() {
        return Err(state.deny(&grant, "the `audit` scope"));
    }
    Params::parse_known(raw, &[])?;
    let v = blocking(move || Ok(audit::verify(&state.store.audit_entries(0, u64::MAX)?))).await?;
    Ok(Json(v))
}

/// The models report's window: `window=month` (the calendar month so far) or a duration
/// back from `to` (`window=7d`), else `from`/`to` (default the last 24 hours).
fn model_window(params: &Params, now: i64) -> Result<(i64, i64), ApiError> {
    let to_ms = parse_time(params.one("to").unwrap_or("now"), now).map_err(bad)?;
    let from_ms = match (params.one("window"), params.one("from")) {
        (Some(_), Some(_)) => return Err(bad("give `window` or `from`, not both")),
        (Some("month"), None) => pitot_shared::slo::month_bounds(to_ms - 1).0,
        (Some(d), None) => {
            let len = pitot_shared::config::parse_duration(d).map_err(|e| {
                bad(format!(
                    "window `{d}`: {e}; or window=month for the calendar month so far"
                ))
            })?;
            to_ms - len.as_millis() as i64
        }
        (None, Some(t)) => parse_time(t, now).map_err(bad)?,
        (None, None) => to_ms - 86_400_000,
    };
    if from_ms >= to_ms {
        return Err(bad("`from` must be before `to`"));
    }
    Ok((from_ms, to_ms))
}

const MODEL_PARAMS: &[&str] = &["from", "to", "window"];

/// `GET /api/v1/models`: every model's owner, live versions, traffic, SLOs, drift and cost.
async fn model_list(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<models::ModelList>, ApiError> {
    let now = now_ms();
    let (from_ms, to_ms) = model_window(&Params::parse_known(raw, MODEL_PARAMS)?, now)?;
    let list = blocking(move || {
        let ctx = state.models_context();
        let allowed = |name: &str| grant.reads_model(name);
        models::list(state.store.as_ref(), ctx, &allowed, from_ms, to_ms, now)
    })
    .await?;
    Ok(Json(list))
}

/// `GET /api/v1/models/{name}`.
async fn model_one(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<models::ModelReport>, ApiError> {
    state.need_model(&grant, &name)?;
    let now = now_ms();
    let (from_ms, to_ms) = model_window(&Params::parse_known(raw, MODEL_PARAMS)?, now)?;
    let report = blocking(move || {
        let ctx = state.models_context();
        let Some((def, configured)) = models::find(state.store.as_ref(), &state.models, &name)?
        else {
            let known: Vec<&str> = state.models.iter().map(|m| m.name.as_str()).collect();
            return Err(ReportError::NotFound(format!(
                "no model `{name}`: not in [[model]] ({}) and no series tagged model:{name} \
                 has arrived",
                if known.is_empty() {
                    "none declared".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        };
        models::report(
            state.store.as_ref(),
            ctx,
            &def,
            configured,
            from_ms,
            to_ms,
            now,
        )
    })
    .await?;
    Ok(Json(report))
}

/// `GET /api/v1/models/{name}/timeline?from=&to=`: which version served where, from when to
/// when (default: everything kept).
async fn model_timeline(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<timeline::Timeline>, ApiError> {
    state.need_model(&grant, &name)?;
    let params = Params::parse_known(raw, &["from", "to"])?;
    let now = now_ms();
    let from_ms = match params.one("from") {
        Some(t) => parse_time(t, now).map_err(bad)?,
        None => i64::MIN,
    };
    let to_ms = parse_time(params.one("to").unwrap_or("now"), now).map_err(bad)?;
    if from_ms >= to_ms {
        return Err(bad("`from` must be before `to`"));
    }
    let report =
        blocking(move || timeline::report(state.store.as_ref(), &name, from_ms, to_ms, now))
            .await?;
    Ok(Json(report))
}

/// The rolling reference when none is named: the 7 days before the current window.
pub(crate) const DEFAULT_REFERENCE_MS: i64 = 7 * 86_400_000;

async fn drift_report(
    State(state): State<AppState>,
    Extension(grant): Extension<Grant>,
    RawQuery(raw): RawQuery,
) -> Result<Json<drift::DriftReport>, ApiError> {
    let params = Params::parse_known(raw, DRIFT_PARAMS)?;
    let now = now_ms();
    let time = |key: &str, default: &str| parse_time(params.one(key).unwrap_or(default), now);
    let from_ms = time("from", "now-1h").map_err(bad)?;
    let to_ms = time("to", "now").map_err(bad)?;
    if from_ms >= to_ms {
        return Err(bad("`from` must be before `to`"));
    }
    let mode = match params.one("mode").unwrap_or("temporal") {
        "temporal" => {
            let (ref_from_ms, ref_to_ms) = match params.one("reference") {
                Some(name) => {
                    let (f, t) = state.drift.references.get(name).ok_or_else(|| {
                        bad(format!(
                            "no reference window named `{name}` in [drift.reference]"
                        ))
                    })?;
                    (f.at(now), t.at(now))
                }
                None => {
                    let rf = match params.one("ref_from") {
                        Some(t) => parse_time(t, now).map_err(bad)?,
                        None => from_ms - DEFAULT_REFERENCE_MS,
                    };
                    let rt = match params.one("ref_to") {
                        Some(t) => parse_time(t, now).map_err(bad)?,
                        None => from_ms,
                    };
                    (rf, rt)
                }
            };
            if ref_from_ms >= ref_to_ms {
                return Err(bad("the reference window must start before it ends"));
            }
            Mode::Temporal {
                ref_from_ms,
                ref_to_ms,
            }
        }
        "hosts" => {
            // Two hosts: each one's own history says which one moved (default: the 7 days
            // before `from`, as temporal's reference).
            let history_from_ms = match params.one("ref_from") {
                Some(t) => parse_time(t, now).map_err(bad)?,
                None => from_ms - DEFAULT_REFERENCE_MS,
            };
            let history_to_ms = match params.one("ref_to") {
                Some(t) => parse_time(t, now).map_err(bad)?,
                None => from_ms,
            };
            if history_from_ms >= history_to_ms {
                return Err(bad("the reference window must start before it ends"));
            }
            Mode::Hosts {
                history_from_ms,
                history_to_ms,
            }
        }
        "versions" => match (params.one("a"), params.one("b")) {
            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() && a != b => Mode::Versions {
                a: a.to_owned(),
                b: b.to_owned(),
            },
            _ => {
                return Err(bad(
                    "mode=versions needs two different versions: &a=v1&b=v2",
                ));
            }
        },
        other => {
            return Err(bad(format!(
                "mode `{other}` is not one of temporal, hosts, versions"
            )));
        }
    };
    let query = DriftQuery {
        mode,
        metric: params
            .one("metric")
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        filters: params.tags()?,
        from_ms,
        to_ms,
    };
    state.need_tags(&grant, &query.filters)?;
    let settings = Arc::clone(&state.drift);
    let report = blocking(move || {
        drift::report(
            state.store.as_ref(),
            &query,
            &settings.config,
            &settings.input_prefix,
        )
    })
    .await?;
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_500_carries_an_id_and_nothing_internal() {
        let store_failure = ReportError::Store(crate::store::StoreError::Corrupt(
            "slo host entry at /var/lib/pitot".into(),
        ));
        let ApiError(status, message) = ApiError::from(store_failure);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(message.starts_with("internal error "), "{message}");
        assert!(
            !message.contains("slo host") && !message.contains("/var/lib"),
            "{message}"
        );
        let ApiError(status, message) = ApiError::from(ReportError::NotFound("no `x`".into()));
        assert_eq!(
            (status, message.as_str()),
            (StatusCode::NOT_FOUND, "no `x`")
        );
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("now", 5_000_000), Ok(5_000_000));
        assert_eq!(parse_time("now-1h", 5_000_000), Ok(5_000_000 - 3_600_000));
        assert_eq!(parse_time("1700000000", 0), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", 0), Ok(1_700_000_000_000));
        assert!(parse_time("yesterday", 0).is_err());
    }

    #[test]
    fn quantile_lists() {
        assert_eq!(parse_quantiles("0.5,0.99").unwrap().len(), 2);
        assert!(parse_quantiles("1.5").is_err());
        assert!(parse_quantiles("x").is_err());
    }
}
