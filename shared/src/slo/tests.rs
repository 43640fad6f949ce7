//! SLO math against an independent integer oracle, and the Workbook's alert table.

use super::*;

const MIN: i64 = 60_000;
const DAY: Duration = Duration::from_secs(86_400);

/// One bucket per minute over `minutes`, `bad_at(minute)` bad events out of 1000.
fn history(minutes: i64, bad_at: impl Fn(i64) -> u64) -> Vec<GoodTotal> {
    (0..minutes)
        .map(|m| {
            let bad = bad_at(m);
            GoodTotal {
                start_ms: m * MIN,
                good: 1000 - bad,
                total: 1000,
                bad_by_host: [("h1".to_owned(), bad)].into_iter().collect(),
            }
        })
        .collect()
}

#[test]
fn the_spec_example_budget() {
    let b = [GoodTotal {
        start_ms: 0,
        good: 118_000,
        total: 120_000,
        bad_by_host: BTreeMap::new(),
    }];
    let e = evaluate(0.99, 30 * DAY, &b, MIN);
    assert!((e.sli - 0.983_333).abs() < 1e-6);
    assert!((e.error_budget.allowed - 1200.0).abs() < 1e-9);
    assert_eq!(e.error_budget.consumed, 2000.0);
    assert!((e.error_budget.remaining + 0.666_666).abs() < 1e-5);
}

#[test]
fn burn_rates_match_integer_counting() {
    // 30 days of minutes; bad events vary by minute.
    let minutes = 30 * 24 * 60;
    let bad_at = |m: i64| ((m * 7) % 13) as u64;
    let h = history(minutes, bad_at);
    let now = minutes * MIN;
    let e = evaluate(0.999, 30 * DAY, &h, now);
    for (label, lookback) in BURN_WINDOWS {
        let n = lookback.as_secs() as i64 / 60;
        let bad: u64 = (minutes - n..minutes).map(bad_at).sum();
        let total = n as u64 * 1000;
        let want = (bad as f64 / total as f64) / 0.001;
        assert!((e.burn_rates[label] - want).abs() < 1e-9, "{label}");
    }
    let bad: u64 = (0..minutes).map(bad_at).sum();
    assert_eq!(e.total, minutes as u64 * 1000);
    assert_eq!(e.good, e.total - bad);
    assert_eq!(e.top_hosts, vec![("h1".to_owned(), bad)]);
}

#[test]
fn workbook_alert_table() {
    let minutes = 30 * 24 * 60;
    let now = minutes * MIN;
    let state = |bad_at: &dyn Fn(i64) -> u64| {
        evaluate(0.999, 30 * DAY, &history(minutes, bad_at), now).alert
    };
    // Quiet: no errors.
    assert_eq!(state(&|_| 0), Alert::Ok);
    // Fast burn: the last hour at 2 % errors (20×).
    assert_eq!(
        state(&|m| if m >= minutes - 60 { 20 } else { 0 }),
        Alert::Page
    );
    // A short spike 3 hours ago: 5 minutes at 100 % errors; the 5 min window is clean now.
    assert_eq!(
        state(&|m| if (minutes - 180..minutes - 175).contains(&m) {
            1000
        } else {
            0
        }),
        Alert::Ticket,
        "the 3 d / 6 h pair still sees it; the short windows no longer do"
    );
    // Slow burn: 3 days at 0.15 % errors (1.5×).
    assert_eq!(
        state(&|m| if m >= minutes - 3 * 24 * 60 {
            1 + u64::from(m % 2 == 0)
        } else {
            0
        }),
        Alert::Ticket
    );
    // Reset: the incident ended 4 days ago.
    assert_eq!(
        state(
            &|m| if (minutes - 4 * 1440 - 60..minutes - 4 * 1440).contains(&m) {
                500
            } else {
                0
            }
        ),
        Alert::Ok
    );
}

#[test]
fn factors_scale_with_the_window() {
    let burn: BTreeMap<String, f64> = [("1h", 4.0), ("5m", 4.0)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    // 4× is below 14.4 for 30 days, above 14.4·7/30 = 3.36 for 7 days.
    assert_eq!(alert_state(&burn, 30 * DAY), Alert::Ok);
    assert_eq!(alert_state(&burn, 7 * DAY), Alert::Page);
}

#[test]
fn no_traffic_is_not_an_outage() {
    let e = evaluate(0.99, 30 * DAY, &[], 0);
    assert_eq!(e.sli, 1.0);
    assert_eq!(e.error_budget.remaining, 1.0);
    assert_eq!(e.alert, Alert::Ok);
    assert!(e.burn_rates.values().all(|b| *b == 0.0));
}

#[test]
fn latency_thresholds_fall_to_a_bucket_edge() {
    // 500 ms is an edge of the layout (500 = 2^8 × 1.953125, and 0.953125 = 488/512), so a
    // request of exactly 500 ms is good and one a bucket above is not.
    use crate::histogram::ValueHistogram;
    assert_eq!(ValueHistogram::bucket_edge_at_or_below(500.0), Some(500.0));
    let mut h = ValueHistogram::new();
    h.record(500.0).unwrap();
    h.record(500.5).unwrap();
    assert_eq!(h.count_at_or_below(500.0), 1);
    // 499.9 is not an edge: the threshold used is the edge under it, and a value between
    // that edge and 499.9 is not counted (good counts are never optimistic).
    let edge = ValueHistogram::bucket_edge_at_or_below(499.9).unwrap();
    assert!(edge < 499.9 && edge > 499.9 * (1.0 - 1.0 / 512.0), "{edge}");
    let mut h = ValueHistogram::new();
    h.record(edge).unwrap();
    h.record(499.89).unwrap();
    assert_eq!(
        h.count_at_or_below(499.9),
        1,
        "good counts are never optimistic"
    );
    assert_eq!(ValueHistogram::bucket_edge_at_or_below(1.0), Some(1.0));
}

#[test]
fn calendar_months() {
    // 2026-11-26T12:00:00Z → November 2026 (30 days).
    let t = 1_795_694_400_000;
    let (start, end) = month_bounds(t);
    assert_eq!(start, 1_793_491_200_000, "2026-11-01T00:00:00Z");
    assert_eq!(end - start, 30 * 86_400_000);
    // February of a leap year, and a year boundary.
    let (s, e) = month_bounds(951_782_400_000); // 2000-02-29
    assert_eq!(s, 949_363_200_000, "2000-02-01");
    assert_eq!(e - s, 29 * 86_400_000);
    let (s, e) = month_bounds(1_767_225_599_999); // 2025-12-31T23:59:59.999Z
    assert_eq!(s, 1_764_547_200_000, "2025-12-01");
    assert_eq!(e, 1_767_225_600_000, "2026-01-01");
    // The first instant of a month belongs to it; before 1970 works too.
    assert_eq!(month_bounds(e).0, e);
    assert_eq!(month_bounds(-1).0, -31 * 86_400_000, "1969-12-01");
}
