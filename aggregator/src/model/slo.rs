//! What an SLO is, once validated: its window, its SLI and its objective. The config builds
//! these; the store keys its counters by [`canonical`](crate::slo::canonical) bytes of the SLI;
//! the SLO engine evaluates them.

use std::collections::BTreeMap;
use std::time::Duration;

use pitot_shared::slo::Counts;

/// What one batch adds to one SLO's counters: the SLO engine computes it
/// (`slo::batch_deltas`), the store writes it in the batch's merge transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SloDelta {
    /// The SLO's store id.
    pub id: u64,
    /// Fleet-wide counts.
    pub fleet: Counts,
    /// Counts per host.
    pub hosts: BTreeMap<String, Counts>,
}

/// An SLO window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloWindow {
    /// The last `Duration`, rolling.
    Rolling(Duration),
    /// The calendar month so far (UTC).
    Month,
}

/// How an SLO counts good events.
#[derive(Debug, Clone, PartialEq)]
pub enum Sli {
    /// Histogram events at or under `threshold`.
    Latency {
        /// Metric.
        metric: String,
        /// Threshold in the metric's unit.
        threshold: f64,
        /// Tag filters.
        tags: Vec<(String, String)>,
    },
    /// Good / total counters.
    Ratio {
        /// Good counter.
        good: String,
        /// Total counter.
        total: String,
        /// Tag filters.
        tags: Vec<(String, String)>,
    },
}

impl Sli {
    /// Its tag filters.
    pub fn tags(&self) -> &[(String, String)] {
        match self {
            Sli::Latency { tags, .. } | Sli::Ratio { tags, .. } => tags,
        }
    }
}

/// A validated SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct SloDefinition {
    /// Name.
    pub name: String,
    /// Objective in (0, 1).
    pub objective: f64,
    /// Window.
    pub window: SloWindow,
    /// Service (`sloth_service`).
    pub service: String,
    /// SLI.
    pub sli: Sli,
}

impl SloWindow {
    /// As written in the config: `30d`, `month`.
    pub fn label(&self) -> String {
        match self {
            SloWindow::Month => "month".into(),
            SloWindow::Rolling(d) => {
                let s = d.as_secs();
                if s.is_multiple_of(86_400) {
                    format!("{}d", s / 86_400)
                } else if s.is_multiple_of(3_600) {
                    format!("{}h", s / 3_600)
                } else {
                    format!("{}m", s / 60)
                }
            }
        }
    }
}
