//! What `/metrics` publishes of the fleet (`[[export]]`) and where alert transitions go
//! (`[[alert]]`), as the operator declares them.

use std::time::Duration;

/// One validated `[[export]]`: a metric's fleet aggregate per group.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportDefinition {
    /// The Pitot series name (`request.latency`).
    pub metric: String,
    /// The Prometheus family name (default `pitot_fleet_` + the metric, sanitised).
    pub name: String,
    /// Only series with all these tags.
    pub tags: Vec<(String, String)>,
    /// One group per value combination of these tags (`host` is the agent's id).
    pub group_by: Vec<String>,
    /// Quantiles in the text exposition.
    pub quantiles: Vec<f64>,
    /// The text exposition's quantiles cover this much recent time.
    pub window: Duration,
    /// The native histogram's schema (bucket factor `2^(2^-schema)`), -4 … 8.
    pub schema: i32,
    /// Groups kept at most; a new group past it is not exported and is counted.
    pub max_groups: usize,
}

/// Where an alert target delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertKind {
    /// Prometheus Alertmanager, API v2 (`POST {url}/api/v2/alerts`).
    Alertmanager,
    /// A JSON `POST` to `url` (Slack-compatible: the body has a `text` field).
    Webhook,
}

/// One validated `[[alert]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTarget {
    /// Name in the counters (default `kind-index`).
    pub name: String,
    /// What speaks at `url`.
    pub kind: AlertKind,
    /// Alertmanager's base URL (`http://127.0.0.1:9093`) or the webhook's URL.
    pub url: String,
    /// Extra request headers (`Authorization` for a webhook).
    pub headers: Vec<(String, String)>,
    /// Alertmanager: how often a firing alert is sent again.
    pub resend: Duration,
    /// Link in each alert to this aggregator's page (`http://pitot.example:7070`).
    pub page_url: Option<String>,
}
