//! A deployment gate as the operator declares it (`[[gate]]`), or as a query asks for one: a
//! candidate against a baseline of one model over a window, and each check's thresholds.

use std::time::Duration;

use pitot_shared::gate::{ErrorRule, LatencyRule};

/// What to do when the candidate's inputs (or named outputs) drift from the baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrift {
    /// The check fails the gate.
    Fail,
    /// The check warns; the gate can still pass.
    Warn,
}

/// One validated `[[gate]]` (or an ad-hoc query's).
#[derive(Debug, Clone, PartialEq)]
pub struct GateDefinition {
    /// Name (`None` for an ad-hoc query).
    pub name: Option<String>,
    /// The model (a `[[model]]` name, or a `model` tag value).
    pub model: String,
    /// Tags that select the baseline (`version:v1`).
    pub baseline: Vec<(String, String)>,
    /// Tags that select the candidate (`version:v2`).
    pub candidate: Vec<(String, String)>,
    /// How far back from now the comparison looks.
    pub window: Duration,
    /// The latency histogram (`None`: the model's `latency_metric`, else the known names).
    pub latency_metric: Option<String>,
    /// Latency thresholds.
    pub latency: LatencyRule,
    /// Good and total counters for the error check (`None`: the model's ratio SLO, if any).
    pub errors: Option<(String, String)>,
    /// Error thresholds.
    pub error_rule: ErrorRule,
    /// The candidate may burn each of the model's SLOs at most this fast (1 = on budget).
    pub max_burn: f64,
    /// Drift of inputs and outputs.
    pub on_drift: OnDrift,
    /// Output series compared like inputs (e.g. `gen_ai.server.request.output_tokens`).
    pub outputs: Vec<String>,
}

/// An ad-hoc gate's window when the query gives none.
pub const ADHOC_WINDOW: Duration = Duration::from_secs(900);

impl GateDefinition {
    /// An unnamed gate of `model`, candidate against baseline, at the default settings.
    pub fn adhoc(
        model: String,
        baseline: Vec<(String, String)>,
        candidate: Vec<(String, String)>,
    ) -> GateDefinition {
        GateDefinition {
            name: None,
            model,
            baseline,
            candidate,
            window: ADHOC_WINDOW,
            latency_metric: None,
            latency: LatencyRule::default(),
            errors: None,
            error_rule: ErrorRule::default(),
            max_burn: 1.0,
            on_drift: OnDrift::Fail,
            outputs: Vec::new(),
        }
    }
}
