//! Alerts that reach someone (`[[alert]]`): the SLO alert states and input drift statuses the
//! watch evaluates (every 30 s, drift every 5 min; the same evaluations that put transitions in
//! the audit trail) become notices on each transition, delivered to Prometheus Alertmanager
//! (`POST {url}/api/v2/alerts`) and to generic webhooks (a JSON body with a Slack-compatible
//! `text`).
//!
//! - An SLO fires while its alert is `ticket` or `page` (label `severity`); `page → ticket`
//!   resolves the page alert and fires the ticket one. An input fires while its status is
//!   `drift` (severity `ticket`).
//! - Alertmanager gets every firing alert again each `resend` (its `endsAt` four resends ahead,
//!   so a stopped aggregator's alerts resolve by themselves) and a resolved alert once, with
//!   `endsAt` = now. Webhooks get each transition once.
//! - Each target has its own bounded queue (`QUEUE` notices) and worker: a delivery is tried
//!   up to `ATTEMPTS` times with exponential backoff (1 s, 2 s, 4 s …, at most 30 s); a full
//!   queue drops the new notice. Sent, failed (after every attempt) and dropped notices are
//!   counted per target on `/metrics`.
//! - State lives in memory: after a restart the first evaluation sends what is firing again
//!   (Alertmanager deduplicates by labels; a webhook sees it once more).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::audit::Event;
use crate::model::{AlertKind, AlertTarget, rfc3339};
use crate::slo::InstalledSlo;

/// Notices waiting per target.
pub const QUEUE: usize = 256;
/// Tries per delivery.
pub const ATTEMPTS: u32 = 5;
/// Longest wait between tries.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// One request's time limit.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One alert going out: a transition, or (Alertmanager) a firing alert sent again.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `slo` or `drift`.
    pub kind: &'static str,
    /// The SLO or the input (`metric{tags}`).
    pub subject: String,
    /// Firing (true) or resolved.
    pub firing: bool,
    /// The state now (`page`, `ticket`, `ok`, `drift`…) and before.
    pub state: String,
    /// The state before (`None`: first evaluation since start).
    pub previous: Option<String>,
    /// Alertmanager labels: alertname, severity, slo or feature, model, version, service.
    pub labels: BTreeMap<String, String>,
    /// Summary and description.
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (Unix ms).
    pub starts_ms: i64,
    /// Now (Unix ms).
    pub at_ms: i64,
    /// Only Alertmanager (a firing alert sent again).
    pub resend: bool,
}

/// Delivery counters of one target.
#[derive(Debug, Default)]
pub struct Counters {
    /// Notices delivered.
    pub sent: AtomicU64,
    /// Notices given up on after every attempt.
    pub failed: AtomicU64,
    /// Notices dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Attempts that failed (retried or not).
    pub errors: AtomicU64,
}

/// What one subject is doing now.
#[derive(Debug, Clone)]
struct Active {
    state: String,
    firing: bool,
    since_ms: i64,
    last_sent_ms: i64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// The alert targets, their queues and counters, and the state of every subject.
#[derive(Debug)]
pub struct Alerts {
    targets: Vec<(AlertTarget, mpsc::Sender<Notice>, std::sync::Arc<Counters>)>,
    state: Mutex<BTreeMap<(&'static str, String), Active>>,
    slos: Vec<InstalledSlo>,
}

impl Alerts {
    /// Starts one delivery worker per target (on the current tokio runtime).
    pub fn start(targets: Vec<AlertTarget>, slos: Vec<InstalledSlo>) -> Alerts {
        let targets = targets
            .into_iter()
            .map(|t| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let counters = std::sync::Arc::new(Counters::default());
                tokio::spawn(deliver(t.clone(), rx, std::sync::Arc::clone(&counters)));
                (t, tx, counters)
            })
            .collect();
        Alerts {
            targets,
            state: Mutex::new(BTreeMap::new()),
            slos,
        }
    }

    /// Whether any target is configured.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Takes one watch's evaluations: transitions become notices for every target, and
    /// firing alerts due again go to Alertmanager targets.
    pub fn observe(&self, events: &[Event], now_ms: i64) {
        if self.targets.is_empty() {
            return;
        }
        let notices = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let mut out = Vec::new();
            for e in events {
                if let Some((kind, subject, now_state, firing, labels, annotations)) =
                    self.describe(e)
                {
                    out.extend(transition(
                        &mut state,
                        (kind, subject),
                        now_state,
                        firing,
                        labels,
                        annotations,
                        now_ms,
                    ));
                }
            }
            out
        };
        for n in &notices {
            self.enqueue(n);
        }
        // Firing alerts due again (Alertmanager only).
        for (t, tx, counters) in &self.targets {
            if t.kind != AlertKind::Alertmanager {
                continue;
            }
            let due: Vec<Notice> = {
                let Ok(mut state) = self.state.lock() else {
                    return;
                };
                state
                    .iter_mut()
                    .filter(|(_, a)| {
                        a.firing && now_ms - a.last_sent_ms >= t.resend.as_millis() as i64
                    })
                    .map(|((kind, subject), a)| {
                        a.last_sent_ms = now_ms;
                        Notice {
                            kind,
                            subject: subject.clone(),
                            firing: true,
                            state: a.state.clone(),
                            previous: Some(a.state.clone()),
                            labels: a.labels.clone(),
                            annotations: a.annotations.clone(),
                            starts_ms: a.since_ms,
                            at_ms: now_ms,
                            resend: true,
                        }
                    })
                    .collect()
            };
            for n in due {
                if tx.try_send(n).is_err() {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn enqueue(&self, n: &Notice) {
        for (t, tx, counters) in &self.targets {
            if tx.try_send(n.clone()).is_err() {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target = %t.name, subject = %n.subject, "Alert queue full: notice dropped (counted in pitot_aggregator_alerts_dropped_total).");
            }
        }
    }

    /// (kind, subject, state, firing, labels, annotations) of an evaluation.
    #[allow(clippy::type_complexity)]
    fn describe(
        &self,
        e: &Event,
    ) -> Option<(
        &'static str,
        String,
        String,
        bool,
        BTreeMap<String, String>,
        BTreeMap<String, String>,
    )> {
        match e {
            Event::SloAlert {
                slo,
                alert,
                budget_remaining,
            } => {
                let mut labels = BTreeMap::from([
                    ("alertname".to_owned(), "PitotSLOBurnRate".to_owned()),
                    ("slo".to_owned(), slo.clone()),
                    ("source".to_owned(), "pitot".to_owned()),
                ]);
                if let Some(def) = self.slos.iter().find(|s| &s.def.name == slo) {
                    if !def.def.service.is_empty() {
                        labels.insert("service".into(), def.def.service.clone());
                    }
                    for (k, v) in def.def.sli.tags() {
                        if k == "model" || k == "version" {
                            labels.insert(k.clone(), v.clone());
                        }
                    }
                }
                let firing = alert == "ticket" || alert == "page";
                let budget = budget_remaining * 100.0;
                let annotations = BTreeMap::from([
                    (
                        "summary".to_owned(),
                        format!("SLO {slo}: {alert} (error budget left {budget:.1} %)"),
                    ),
                    (
                        "description".to_owned(),
                        format!(
                            "Pitot's multi-window burn-rate alert for the SLO {slo} is {alert}; \
                             {budget:.1} % of its error budget is left."
                        ),
                    ),
                ]);
                Some((
                    "slo",
                    slo.clone(),
                    alert.clone(),
                    firing,
                    labels,
                    annotations,
                ))
            }
            Event::DriftStatus {
                feature,
                status,
                reason,
            } => {
                let mut labels = BTreeMap::from([
                    ("alertname".to_owned(), "PitotInputDrift".to_owned()),
                    ("feature".to_owned(), feature.clone()),
                    ("source".to_owned(), "pitot".to_owned()),
                ]);
                if let Some(tags) = feature
                    .split_once('{')
                    .and_then(|(_, t)| t.strip_suffix('}'))
                {
                    for (k, v) in tags.split(',').filter_map(|t| t.split_once(':')) {
                        if k == "model" || k == "version" {
                            labels.insert(k.to_owned(), v.to_owned());
                        }
                    }
                }
                let annotations = BTreeMap::from([
                    ("summary".to_owned(), format!("Input {feature}: {status}")),
                    ("description".to_owned(), reason.clone()),
                ]);
                Some((
                    "drift",
                    feature.clone(),
                    status.clone(),
                    status == "drift",
                    labels,
                    annotations,
                ))
            }
            _ => None,
        }
    }

    /// `/metrics` lines: per target, notices sent, failed, dropped and failed attempts.
    pub fn exposition(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let families = [
            (
                "pitot_aggregator_alerts_sent_total",
                "Alert notices delivered, per target.",
                0,
            ),
            (
                "pitot_aggregator_alerts_failed_total",
                "Alert notices given up on after every attempt, per target.",
                1,
            ),
            (
                "pitot_aggregator_alerts_dropped_total",
                "Alert notices dropped because the target's queue was full.",
                2,
            ),
            (
                "pitot_aggregator_alert_attempt_errors_total",
                "Delivery attempts that failed (each retry counts), per target.",
                3,
            ),
        ];
        for (name, help, which) in families {
            let _w = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (t, _, c) in &self.targets {
                let v = match which {
                    0 => &c.sent,
                    1 => &c.failed,
                    2 => &c.dropped,
                    _ => &c.errors,
                };
                let _w = writeln!(
                    out,
                    "{name}{{target=\"{}\"}} {}",
                    crate::exposition::escape(&t.name),
                    v.load(Ordering::Relaxed)
                );
            }
        }
        out
    }
}

/// The notices one evaluation makes: none while nothing changes; on a change, the previous
/// severity resolved (when it fired) and the new one fired (when it fires).
fn transition(
    state: &mut BTreeMap<(&'static str, String), Active>,
    key: (&'static str, String),
    now_state: String,
    firing: bool,
    mut labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    now_ms: i64,
) -> Vec<Notice> {
    let severity = |s: &str| if s == "page" { "page" } else { "ticket" }.to_owned();
    let previous = state.get(&key).cloned();
    if previous.as_ref().is_some_and(|p| p.state == now_state) {
        if let Some(a) = state.get_mut(&key) {
            a.annotations = annotations;
        }
        return Vec::new();
    }
    let mut out = Vec::new();
    let notice = |firing: bool,
                  labels: BTreeMap<String, String>,
                  annotations: BTreeMap<String, String>,
                  starts: i64| Notice {
        kind: key.0,
        subject: key.1.clone(),
        firing,
        state: now_state.clone(),
        previous: previous.as_ref().map(|p| p.state.clone()),
        labels,
        annotations,
        starts_ms: starts,
        at_ms: now_ms,
        resend: false,
    };
    if let Some(p) = previous.as_ref().filter(|p| p.firing) {
        out.push(notice(
            false,
            p.labels.clone(),
            annotations.clone(),
            p.since_ms,
        ));
    }
    labels.insert("severity".into(), severity(&now_state));
    if firing {
        out.push(notice(true, labels.clone(), annotations.clone(), now_ms));
    }
    state.insert(
        key.clone(),
        Active {
            state: now_state.clone(),
            firing,
            since_ms: now_ms,
            last_sent_ms: now_ms,
            labels,
            annotations,
        },
    );
    out
}

/// The Alertmanager API v2 body of a notice.
pub fn alertmanager_body(n: &Notice, t: &AlertTarget) -> Value {
    let ends = if n.firing {
        n.at_ms + 4 * t.resend.as_millis() as i64
    } else {
        n.at_ms
    };
    let mut alert = json!({
        "labels": n.labels,
        "annotations": n.annotations,
        "startsAt": rfc3339(n.starts_ms),
        "endsAt": rfc3339(ends),
    });
    if let Some(url) = &t.page_url {
        alert["generatorURL"] = json!(page_link(url, n));
    }
    json!([alert])
}

fn page_link(base: &str, n: &Notice) -> String {
    match n.kind {
        "slo" => format!(
            "{base}/slo/{}",
            form_urlencoded::byte_serialize(n.subject.as_bytes()).collect::<String>()
        ),
        _ => format!("{base}/drift"),
    }
}

/// The webhook body of a notice (docs/CONTRACT.md): Slack-compatible `text`, and the figures.
pub fn webhook_body(n: &Notice, t: &AlertTarget) -> Value {
    let arrow = match &n.previous {
        Some(p) => format!("{p} → {}", n.state),
        None => n.state.clone(),
    };
    let what = match n.kind {
        "slo" => "SLO",
        _ => "input",
    };
    let summary = n.annotations.get("summary").cloned().unwrap_or_default();
    let mut text = format!(
        "[Pitot] {} {what} {}: {arrow}. {summary}",
        if n.firing { "FIRING" } else { "RESOLVED" },
        n.subject
    );
    let url = t.page_url.as_ref().map(|u| page_link(u, n));
    if let Some(u) = &url {
        text.push_str(&format!(" {u}"));
    }
    json!({
        "source": "pitot",
        "kind": n.kind,
        "status": if n.firing { "firing" } else { "resolved" },
        "subject": n.subject,
        "state": n.state,
        "previous": n.previous,
        "labels": n.labels,
        "annotations": n.annotations,
        "starts_at": rfc3339(n.starts_ms),
        "at": rfc3339(n.at_ms),
        "url": url,
        "text": text,
    })
}

/// One target's worker: each notice tried up to `ATTEMPTS` times with backoff.
async fn deliver(
    t: AlertTarget,
    mut rx: mpsc::Receiver<Notice>,
    counters: std::sync::Arc<Counters>,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    while let Some(n) = rx.recv().await {
        let (url, body) = match t.kind {
            AlertKind::Alertmanager => (
                format!("{}/api/v2/alerts", t.url),
                alertmanager_body(&n, &t),
            ),
            AlertKind::Webhook => (t.url.clone(), webhook_body(&n, &t)),
        };
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=ATTEMPTS {
            let (agent, url, body, headers) =
                (agent.clone(), url.clone(), body.clone(), t.headers.clone());
            let result = tokio::task::spawn_blocking(move || {
                let mut req = agent.post(&url);
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                match req.send_json(&body) {
                    Ok(resp) if resp.status().is_success() => Ok(()),
                    Ok(resp) => Err(format!("HTTP {}", resp.status())),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match result {
                Ok(()) => {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target = %t.name, subject = %n.subject, state = %n.state, firing = n.firing, resend = n.resend, "Alert delivered.");
                    break;
                }
                Err(error) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    if attempt == ATTEMPTS {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(target = %t.name, subject = %n.subject, %error, attempts = ATTEMPTS, "Alert not delivered: gave up (counted in pitot_aggregator_alerts_failed_total).");
                    } else {
                        tracing::warn!(target = %t.name, subject = %n.subject, %error, attempt, retry_in = ?delay, "Alert delivery failed; retrying.");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo(alert: &str) -> Event {
        Event::SloAlert {
            slo: "chat-latency".into(),
            alert: alert.into(),
            budget_remaining: 0.5,
        }
    }

    fn target(kind: AlertKind) -> AlertTarget {
        AlertTarget {
            name: "t".into(),
            kind,
            url: "http://127.0.0.1:1".into(),
            headers: Vec::new(),
            resend: Duration::from_secs(60),
            page_url: Some("http://pitot:7070".into()),
        }
    }

    fn run(states: &[&str]) -> Vec<Vec<(bool, String)>> {
        let alerts = Alerts {
            targets: Vec::new(),
            state: Mutex::new(BTreeMap::new()),
            slos: Vec::new(),
        };
        states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let Some((kind, subject, st, firing, labels, ann)) = alerts.describe(&slo(s))
                else {
                    return Vec::new();
                };
                let mut state = alerts.state.lock().expect("lock");
                transition(
                    &mut state,
                    (kind, subject),
                    st,
                    firing,
                    labels,
                    ann,
                    i as i64 * 1000,
                )
                .into_iter()
                .map(|n| (n.firing, n.labels["severity"].clone()))
                .collect()
            })
            .collect()
    }

    #[test]
    fn transitions_fire_and_resolve_each_severity() {
        let got = run(&["ok", "ok", "ticket", "ticket", "page", "ok", "ok"]);
        assert_eq!(got[0], vec![], "ok at start says nothing");
        assert_eq!(got[1], vec![]);
        assert_eq!(got[2], vec![(true, "ticket".into())]);
        assert_eq!(got[3], vec![], "no change, no notice");
        assert_eq!(
            got[4],
            vec![(false, "ticket".into()), (true, "page".into())],
            "ticket resolved, page fired"
        );
        assert_eq!(got[5], vec![(false, "page".into())]);
        assert_eq!(got[6], vec![]);
        // Firing at start is sent.
        assert_eq!(run(&["page"])[0], vec![(true, "page".into())]);
    }

    #[test]
    fn bodies_carry_labels_times_and_text() {
        let n = Notice {
            kind: "slo",
            subject: "chat-latency".into(),
            firing: true,
            state: "page".into(),
            previous: Some("ok".into()),
            labels: BTreeMap::from([("severity".into(), "page".into())]),
            annotations: BTreeMap::from([("summary".into(), "SLO chat-latency: page".into())]),
            starts_ms: 1_764_547_200_000,
            at_ms: 1_764_547_260_000,
            resend: false,
        };
        let am = alertmanager_body(&n, &target(AlertKind::Alertmanager));
        assert_eq!(am[0]["labels"]["severity"], "page");
        assert_eq!(am[0]["startsAt"], "2025-12-01T00:00:00.000Z");
        assert_eq!(
            am[0]["endsAt"], "2025-12-01T00:05:00.000Z",
            "four resends ahead"
        );
        assert_eq!(am[0]["generatorURL"], "http://pitot:7070/slo/chat-latency");
        let resolved = Notice {
            firing: false,
            ..n.clone()
        };
        let am = alertmanager_body(&resolved, &target(AlertKind::Alertmanager));
        assert_eq!(
            am[0]["endsAt"], "2025-12-01T00:01:00.000Z",
            "resolved: ends now"
        );
        let hook = webhook_body(&n, &target(AlertKind::Webhook));
        assert_eq!(hook["status"], "firing");
        assert_eq!(
            hook["text"],
            "[Pitot] FIRING SLO chat-latency: ok → page. SLO chat-latency: page \
             http://pitot:7070/slo/chat-latency"
        );
    }
}
