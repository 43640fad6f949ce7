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

/// Good and total events over some range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Good events.
    pub good: u64,
    /// All events.
    pub total: u64,
    /// Events counted bad that may be good: they lie in a scraped bucket straddling a latency
    /// threshold that is not one of its layout's edges. The true good count is in
    /// `[good, good + uncertain]`; always 0 for ratio SLIs and HdrHistogram series.
    #[serde(default)]
    pub uncertain: u64,
}

impl Counts {
    /// Bad events (`total − good`, never negative).
    pub fn bad(&self) -> u64 {
        self.total.saturating_sub(self.good)
    }

    /// Adds `other` (saturating).
    pub fn add(&mut self, other: Counts) {
        self.good = self.good.saturating_add(other.good);
        self.total = self.total.saturating_add(other.total);
        self.uncertain = self.uncertain.saturating_add(other.uncertain);
    }
}

/// Evaluates an SLO from counts already summed: `in_window` over the SLO window, and one
/// [`Counts`] per [`BURN_WINDOWS`] label (a missing label counts as no traffic). `window` is
/// the SLO window's full length (a calendar month's whole length for `month`), which scales
/// the alert factors. `top_hosts` is left empty for the caller.
pub fn evaluate_counts(
    objective: f64,
    window: Duration,
    in_window: Counts,
    lookbacks: &BTreeMap<String, Counts>,
) -> SloEvaluation {
    let Counts { good, total, .. } = in_window;
    let bad = in_window.bad();
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
    for (label, _) in BURN_WINDOWS {
        let c = lookbacks.get(label).copied().unwrap_or_default();
        burn_rates.insert(label.to_owned(), burn_rate(c.bad(), c.total, objective));
    }
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
        top_hosts: Vec::new(),
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
        let mut c = Counts::default();
        for b in buckets
            .iter()
            .filter(|b| b.start_ms >= from_ms && b.start_ms < now_ms)
        {
            c.add(Counts {
                good: b.good,
                total: b.total,
                uncertain: 0,
            });
        }
        c
    };
    let window_ms = window.as_millis() as i64;
    let lookbacks: BTreeMap<String, Counts> = BURN_WINDOWS
        .iter()
        .map(|(label, d)| ((*label).to_owned(), sum(now_ms - d.as_millis() as i64)))
        .collect();
    let mut e = evaluate_counts(objective, window, sum(now_ms - window_ms), &lookbacks);
    let mut hosts: BTreeMap<&str, u64> = BTreeMap::new();
    for b in buckets
        .iter()
        .filter(|b| b.start_ms >= now_ms - window_ms && b.start_ms < now_ms)
    {
        for (h, n) in &b.bad_by_host {
            *hosts.entry(h.as_str()).or_default() += n;
        }
    }
    e.top_hosts = top_hosts(hosts.into_iter().map(|(h, n)| (h.to_owned(), n)), 10);
    e
}

/// The `limit` hosts with the most bad events, most first (ties by name); hosts with none
/// are left out.
pub fn top_hosts(
    hosts: impl IntoIterator<Item = (String, u64)>,
    limit: usize,
) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = hosts.into_iter().filter(|(_, n)| *n > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year and month (1–12) of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

/// Start of the UTC calendar month holding `t_ms` and start of the next one, Unix ms.
pub fn month_bounds(t_ms: i64) -> (i64, i64) {
    let (y, m) = civil_from_days(t_ms.div_euclid(DAY_MS));
    let start = days_from_civil(y, m, 1) * DAY_MS;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start, days_from_civil(ny, nm, 1) * DAY_MS)
}

#[cfg(test)]
mod tests;
