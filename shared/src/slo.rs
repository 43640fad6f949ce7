//! SLO evaluation: error budgets, multiwindow burn rates and the alert state, as pure
//! functions over per-bucket good/total counts (no clock, no store: `now` is an argument).
//!
//! - SLI = good / total over the SLO window. With no traffic the SLI is 1 (nothing failed).
//! - Error budget: `allowed = (1 − objective) · total` bad events; `consumed` = bad events;
//!   `remaining = 1 − consumed / allowed` (negative once the budget is overspent; 1 when
//!   nothing is allowed yet because there was no traffic).
//! - Burn rate over a lookback `w`: `(bad_w / total_w) / (1 − objective)`; 0 without traffic.
//! - Alert state (SRE Workbook, multiwindow multi-burn-rate, for a 30-day window): `page` when
//!   the 1 h and 5 min burn rates are both ≥ 14.4, or the 6 h and 30 min both ≥ 6; `ticket`
//!   when the 1 d and 2 h are both ≥ 3, or the 3 d and 6 h both ≥ 1; `ok` otherwise. The
//!   factors are shares of the budget (14.4 for an hour is 2 % of a 30-day budget), so for a
//!   window of length W they scale by W / 30 d.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The lookbacks a report gives burn rates for, with their labels.
pub const BURN_WINDOWS: [(&str, Duration); 7] = [
    ("5m", Duration::from_secs(300)),
    ("30m", Duration::from_secs(1_800)),
    ("1h", Duration::from_secs(3_600)),
    ("2h", Duration::from_secs(7_200)),
    ("6h", Duration::from_secs(21_600)),
    ("1d", Duration::from_secs(86_400)),
    ("3d", Duration::from_secs(259_200)),
];

/// The window the Workbook's factors are stated for.
const WORKBOOK_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// Good and total events in one time bucket (and bad events per host, for offenders).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoodTotal {
    /// Bucket start, Unix ms.
    pub start_ms: i64,
    /// Good events.
    pub good: u64,
    /// All events.
    pub total: u64,
    /// Bad events per host.
    pub bad_by_host: BTreeMap<String, u64>,
}

/// The alert state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Alert {
    /// Within budget.
    Ok,
    /// Slow burn: someone should look within a day.
    Ticket,
    /// Fast burn: wake someone.
    Page,
}

/// The error budget of an SLO window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBudget {
    /// Bad events the objective allows over the window's traffic.
    pub allowed: f64,
    /// Bad events so far.
    pub consumed: f64,
    /// 1 − consumed / allowed.
    pub remaining: f64,
}

/// One SLO's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloEvaluation {
    /// Good events in the window.
    pub good: u64,
    /// All events in the window.
    pub total: u64,
    /// good / total (1 without traffic).
    pub sli: f64,
    /// The budget.
    pub error_budget: ErrorBudget,
    /// Burn rate per lookback label.
    pub burn_rates: BTreeMap<String, f64>,
    /// Alert state.
    pub alert: Alert,
    /// Hosts by bad events, most first.
    pub top_hosts: Vec<(String, u64)>,
}

/// Burn rate of `bad` out of `total` against `objective`.
pub fn burn_rate(bad: u64, total: u64, objective: f64) -> f64 {
    if total == 0 || objective >= 1.0 {
        return 0.0;
    }
    (bad as f64 / total as f64) / (1.0 - objective)
}

/// The alert state for burn rates (by label) of an SLO with window `window`.
pub fn alert_state(burn: &BTreeMap<String, f64>, window: Duration) -> Alert {
    let scale = window.as_secs_f64() / WORKBOOK_WINDOW.as_secs_f64();
    let at = |label: &str| burn.get(label).copied().unwrap_or(0.0);
    let both = |a: &str, b: &str, factor: f64| {
        let f = factor * scale;
        at(a) >= f && at(b) >= f
    };
    if both("1h", "5m", 14.4) || both("6h", "30m", 6.0) {
        Alert::Page
    } else if both("1d", "2h", 3.0) || both("3d", "6h", 1.0) {
        Alert::Ticket
    } else {
        Alert::Ok
    }
}

/// Evaluates an SLO at `now_ms` over `[now − window, now)` from per-bucket counts. Buckets
/// are counted when their start lies inside a range; a lookback shorter than a bucket reads
/// the bucket it falls in.
pub fn evaluate(
    objective: f64,
    window: Duration,
    buckets: &[GoodTotal],
    now_ms: i64,
) -> SloEvaluation {
    let sum = |from_ms: i64| {
        let (mut good, mut total) = (0u64, 0u64);
        for b in buckets
            .iter()
            .filter(|b| b.start_ms >= from_ms && b.start_ms < now_ms)
        {
            good += b.good;
            total += b.total;
        }
        (good, total)
    };
    let window_ms = window.as_millis() as i64;
    let (good, total) = sum(now_ms - window_ms);
    let bad = total.saturating_sub(good);
    let sli = if total == 0 {
        1.0
    } else {
        good as f64 / total as f64
    };
    let allowed = (1.0 - objective) * total as f64;
    let remaining = if allowed > 0.0 {
        1.0 - bad as f64 / allowed
    } else if bad == 0 {
        1.0
    } else {
        f64::NEG_INFINITY
    };
    let mut burn_rates = BTreeMap::new();
    for (label, lookback) in BURN_WINDOWS {
        let (g, t) = sum(now_ms - lookback.as_millis() as i64);
        burn_rates.insert(
            label.to_owned(),
            burn_rate(t.saturating_sub(g), t, objective),
        );
    }
    let mut hosts: BTreeMap<&str, u64> = BTreeMap::new();
    for b in buckets
        .iter()
        .filter(|b| b.start_ms >= now_ms - window_ms && b.start_ms < now_ms)
    {
        for (h, n) in &b.bad_by_host {
            *hosts.entry(h.as_str()).or_default() += n;
        }
    }
    let mut top_hosts: Vec<(String, u64)> = hosts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(h, n)| (h.to_owned(), n))
        .collect();
    top_hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top_hosts.truncate(10);
    let alert = alert_state(&burn_rates, window);
    SloEvaluation {
        good,
        total,
        sli,
        error_budget: ErrorBudget {
            allowed,
            consumed: bad as f64,
            remaining,
        },
        burn_rates,
        alert,
        top_hosts,
    }
}

#[cfg(test)]
mod tests;
