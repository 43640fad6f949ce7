//! SLO engine tests on a real sled store: counters written at merge against plain integer
//! counting, exactly-once, backfill equal to live counting, per-host running sums with late
//! data and pruning, and the Workbook's alert table over a 30-day history with incidents.

use std::collections::BTreeMap;
use std::path::Path;

use pitot_shared::batch::SeriesSnapshot;
use pitot_shared::series::AgentId;
use rand::{Rng, SeedableRng};

use super::*;
use crate::config;
use crate::model::SloDefinition;
use crate::store::{MergeOutcome, SledStore, StoreReader};

/// The writer with the SLOs it counts, as the merge actor holds them (behind a mutex, so the
/// tests read like a sequence of the actor's jobs).
#[derive(Debug)]
struct TestStore {
    writer: std::sync::Mutex<SledStore>,
    slos: std::sync::Mutex<Vec<InstalledSlo>>,
    reader: StoreReader,
}

impl TestStore {
    fn open(dir: &Path, resolutions: Vec<Resolution>) -> Result<Self, StoreError> {
        let writer = SledStore::open(dir, resolutions)?;
        Ok(TestStore {
            reader: writer.reader(),
            writer: std::sync::Mutex::new(writer),
            slos: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn install_slos(&self, defs: &[SloDefinition]) -> Result<Vec<InstalledSlo>, StoreError> {
        let installed = install(&mut self.writer.lock().expect("writer"), defs)?;
        *self.slos.lock().expect("slos") = installed.clone();
        Ok(installed)
    }

    fn merge_batch(&self, b: &Batch, received_ms: i64) -> Result<MergeOutcome, StoreError> {
        let deltas = batch_deltas(&self.slos.lock().expect("slos"), b);
        self.writer
            .lock()
            .expect("writer")
            .merge_batch(b, received_ms, &deltas, &[])
    }

    fn prune(&self, now_ms: i64) -> Result<u64, StoreError> {
        let history = longest_window(&self.slos.lock().expect("slos"));
        self.writer.lock().expect("writer").prune(now_ms, history)
    }
}

crate::store::delegate_store_reads!(TestStore, s => s.reader);

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2026-11-01T00:00:00Z.
const T0: i64 = 1_793_491_200_000;

fn default_resolutions() -> Vec<Resolution> {
    config::parse("", Path::new("defaults"))
        .expect("default config")
        .store
        .resolutions
}

fn slo_config(text: &str) -> Vec<SloDefinition> {
    config::parse(text, Path::new("test.toml"))
        .expect("valid SLO config")
        .slos
}

const RATIO: &str = r#"
[[slo]]
name = "avail"
objective = 0.999
window = "30d"
[slo.sli]
kind = "ratio"
good = "req.ok"
total = "req.count"
tags = ["model:m"]
"#;

const LATENCY: &str = r#"
[[slo]]
name = "lat"
objective = 0.99
window = "7d"
[slo.sli]
kind = "latency"
metric = "req.latency"
threshold_ms = 500
tags = ["model:m"]
"#;

fn key(name: &str, host: &str, model: &str) -> SeriesKey {
    SeriesKey::new(
        name,
        vec![("host".into(), host.into()), ("model".into(), model.into())],
    )
    .expect("key")
}

/// A batch from `host` for the interval at `start` with `good` of `total` requests and
/// latencies: `total − good` at 900 ms, `good` at 100 ms.
fn batch(host: &str, seq: u64, start: i64, len: i64, good: u64, total: u64) -> Batch {
    let mut h = ValueHistogram::new();
    h.record_n(100.0, good).expect("record");
    h.record_n(900.0, total - good).expect("record");
    let mut series = vec![
        SeriesSnapshot {
            key: key("req.ok", host, "m"),
            data: SeriesData::Counter(good as f64),
        },
        SeriesSnapshot {
            key: key("req.count", host, "m"),
            data: SeriesData::Counter(total as f64),
        },
        SeriesSnapshot {
            key: key("req.latency", host, "m"),
            data: SeriesData::Histogram(h.clone()),
        },
    ];
    // Another model's traffic, all bad: the tag filter must keep it out.
    series.push(SeriesSnapshot {
        key: key("req.count", host, "other"),
        data: SeriesData::Counter(1_000.0),
    });
    Batch {
        agent_id: AgentId(host.into()),
        epoch: 7,
        seq,
        interval_start_ms: start,
        interval_ms: len as u64,
        agent_version: "t".into(),
        spool_bytes: 0,
        series,
    }
}

/// Events as the oracle sees them: (time, host, good, total).
type Events = Vec<(i64, String, u64, u64)>;

/// Plain counting over `[from, to)`.
fn oracle(events: &Events, from: i64, to: i64) -> (u64, u64) {
    let mut good = 0;
    let mut total = 0;
    for (t, _, g, n) in events {
        if *t >= from && *t < to {
            good += g;
            total += n;
        }
    }
    (good, total)
}

fn oracle_hosts(events: &Events, from: i64, to: i64) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (t, h, g, n) in events {
        if *t >= from && *t < to && n > g {
            *out.entry(h.clone()).or_insert(0) += n - g;
        }
    }
    out
}

fn store(dir: &Path, slos: &str) -> (TestStore, Vec<InstalledSlo>) {
    let store = TestStore::open(dir, default_resolutions()).expect("open");
    let installed = store.install_slos(&slo_config(slos)).expect("install");
    (store, installed)
}

#[test]
fn reports_match_integer_counting_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, slos) = store(dir.path(), &format!("{RATIO}{LATENCY}"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut events: Events = Vec::new();
    let now = T0 + 10 * DAY;
    // Ten days of 10 s intervals would be slow in a unit test: one batch per 10 minutes for
    // ten days, then every 10 s for the last hour, from three hosts.
    let mut seq: BTreeMap<&str, u64> = BTreeMap::new();
    let mut starts: Vec<(i64, i64)> = (0..10 * 144 - 6)
        .map(|i| (T0 + i * 600_000, 600_000))
        .collect();
    starts.extend((0..360).map(|i| (now - HOUR + i * 10_000, 10_000)));
    for (start, len) in starts {
        for host in ["h1", "h2", "h3"] {
            let total = rng.random_range(0..50u64);
            let bad = if host == "h3" {
                total / 5
            } else {
                rng.random_range(0..=total / 20)
            };
            let s = seq.entry(host).or_insert(0);
            *s += 1;
            let b = batch(host, *s, start, len, total - bad, total);
            store.merge_batch(&b, now).expect("merge");
            // Every fifth batch is replayed, as after a lost acknowledgement.
            if s.is_multiple_of(5) {
                assert_eq!(
                    store.merge_batch(&b, now).expect("merge"),
                    crate::store::MergeOutcome::Duplicate
                );
            }
            events.push((start, host.to_owned(), total - bad, total));
        }
    }
    for slo in &slos {
        let r = report(&store, slo, now).expect("report");
        let window = match slo.def.window {
            SloWindow::Rolling(d) => d.as_millis() as i64,
            SloWindow::Month => unreachable!(),
        };
        // `now` is hour-aligned and every batch starts on a bucket boundary of the
        // resolution it is read at, so each range is exact.
        let (good, total) = oracle(&events, now - window, now);
        assert_eq!((r.good, r.total), (good, total), "{}", r.name);
        let objective = slo.def.objective;
        for (label, len) in BURN_WINDOWS {
            let (g, t) = oracle(&events, now - len.as_millis() as i64, now);
            let want = if t == 0 {
                0.0
            } else {
                ((t - g) as f64 / t as f64) / (1.0 - objective)
            };
            let got = r.burn_rates[label];
            assert!(
                (got - want).abs() <= 1e-12 * want.max(1.0),
                "{} {label}: {got} vs {want}",
                r.name
            );
        }
        let want_sli = good as f64 / total as f64;
        assert!((r.sli - want_sli).abs() < 1e-15);
        let allowed = (1.0 - objective) * total as f64;
        assert!((r.error_budget.allowed - allowed).abs() < 1e-6);
        assert_eq!(r.error_budget.consumed, (total - good) as f64);
        let hosts = oracle_hosts(&events, now - window, now);
        let mut want_top: Vec<(String, u64)> = hosts.into_iter().collect();
        want_top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let got_top: Vec<(String, u64)> = r
            .top_hosts
            .iter()
            .map(|h| (h.host.clone(), h.bad))
            .collect();
        assert_eq!(got_top, want_top, "{}", r.name);
        assert_eq!(got_top[0].0, "h3");
    }
    let lat = report(&store, &slos[1], now).expect("report");
    assert_eq!(
        lat.indicator.threshold_used,
        ValueHistogram::bucket_edge_at_or_below(500.0)
    );
    assert_eq!(lat.resolution, "1h", "7 days are read from hourly cells");
    assert_eq!(lat.burn_resolutions["5m"], "10s");
    assert_eq!(lat.burn_resolutions["1d"], "1m");
    assert_eq!(lat.burn_resolutions["3d"], "1h");
}

#[test]
fn latency_good_counts_are_never_optimistic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, slos) = store(dir.path(), LATENCY);
    // 500 ms is an edge of the layout: a request of exactly 500 ms is good, one of 500.2 ms
    // (the bucket above) is not, and nothing above the threshold is ever counted good.
    let edge = ValueHistogram::bucket_edge_at_or_below(500.0).expect("edge");
    assert_eq!(edge, 500.0);
    let mut h = ValueHistogram::new();
    for v in [100.0, 499.0, 500.0, 500.2, 900.0] {
        h.record(v).expect("record");
    }
    let b = Batch {
        series: vec![SeriesSnapshot {
            key: key("req.latency", "h1", "m"),
            data: SeriesData::Histogram(h),
        }],
        ..batch("h1", 1, T0, 10_000, 0, 0)
    };
    store.merge_batch(&b, T0).expect("merge");
    let r = report(&store, &slos[0], T0 + MIN).expect("report");
    assert_eq!((r.good, r.total), (3, 5));
    assert_eq!(r.indicator.threshold_used, Some(edge));
    assert!(!r.indicator.bucket_layouts, "HdrHistogram series only");
    assert_eq!(
        r.top_hosts,
        vec![HostBad {
            host: "h1".into(),
            bad: 2
        }]
    );
}

#[test]
fn backfill_equals_counting_at_merge() {
    let live_dir = tempfile::tempdir().expect("tempdir");
    let late_dir = tempfile::tempdir().expect("tempdir");
    let slos_text = format!("{RATIO}{LATENCY}");
    let (live, live_slos) = store(live_dir.path(), &slos_text);
    // The second store learns about the SLOs only after the data arrived.
    let late = TestStore::open(late_dir.path(), default_resolutions()).expect("open");
    let now = T0 + 3 * DAY;
    let mut seq = 0;
    for i in 0..(3 * 24 * 6) {
        seq += 1;
        for (n, host) in ["h1", "h2"].iter().enumerate() {
            let total = 20 + (i % 7) as u64;
            let bad = ((i + n as i64) % 4) as u64;
            let b = batch(host, seq, T0 + i * 600_000, 600_000, total - bad, total);
            live.merge_batch(&b, now).expect("merge");
            late.merge_batch(&b, now).expect("merge");
        }
    }
    let late_slos = late.install_slos(&slo_config(&slos_text)).expect("install");
    for (a, b) in live_slos.iter().zip(&late_slos) {
        let ra = report(&live, a, now).expect("report");
        let rb = report(&late, b, now).expect("report");
        assert_eq!((ra.good, ra.total), (rb.good, rb.total));
        assert_eq!(ra.burn_rates, rb.burn_rates);
        assert_eq!(ra.top_hosts, rb.top_hosts);
        assert!(ra.total > 0);
    }
    // Installing again is a no-op, and merges after the backfill keep counting.
    let again = late.install_slos(&slo_config(&slos_text)).expect("install");
    assert_eq!(again, late_slos);
    late.merge_batch(&batch("h1", seq + 1, now - MIN, 10_000, 5, 10), now)
        .expect("merge");
    let r = report(&late, &late_slos[0], now).expect("report");
    let before = report(&live, &live_slos[0], now).expect("report");
    assert_eq!(r.total, before.total + 10);
}

#[test]
fn changing_a_threshold_starts_new_counters_and_drops_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, first) = store(dir.path(), LATENCY);
    store
        .merge_batch(&batch("h1", 1, T0, 10_000, 8, 10), T0)
        .expect("merge");
    let changed = LATENCY.replace("threshold_ms = 500", "threshold_ms = 1000");
    let second = store.install_slos(&slo_config(&changed)).expect("install");
    assert_ne!(first[0].id, second[0].id);
    let r = report(&store, &second[0], T0 + MIN).expect("report");
    assert_eq!(
        (r.good, r.total),
        (10, 10),
        "backfilled with the new threshold"
    );
    let res = default_resolutions();
    assert!(
        store
            .slo_cells(first[0].id, &res[0], i64::MIN, i64::MAX)
            .expect("cells")
            .is_empty()
    );
}

#[test]
fn host_running_sums_survive_late_data_and_pruning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, slos) = store(dir.path(), RATIO);
    let id = slos[0].id;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut events: Events = Vec::new();
    // Hours arrive out of order (late batches, replays from two agents' spools).
    let mut hours: Vec<i64> = (0..48).collect();
    for i in (1..hours.len()).rev() {
        let j = rng.random_range(0..=i);
        hours.swap(i, j);
    }
    let mut seq = 0;
    for h in hours {
        for host in ["a", "b", "c"] {
            seq += 1;
            let bad = rng.random_range(0..3u64);
            let start = T0 + h * HOUR + rng.random_range(0..360) * 10_000;
            store
                .merge_batch(&batch(host, seq, start, 10_000, 10 - bad, 10), T0)
                .expect("merge");
            events.push((start, host.to_owned(), 10 - bad, 10));
        }
    }
    let check = |store: &TestStore, events: &Events| {
        for (from_h, to_h) in [(0, 48), (5, 6), (10, 30), (47, 48), (0, 1)] {
            let (from, to) = (T0 + from_h * HOUR, T0 + to_h * HOUR);
            let got: BTreeMap<String, u64> = store
                .slo_host_bad(id, from, to)
                .expect("hosts")
                .into_iter()
                .collect();
            let want: BTreeMap<String, u64> = oracle_hosts(events, from, to)
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect();
            assert_eq!(got, want, "hours {from_h}..{to_h}");
        }
    };
    check(&store, &events);
    // Host entries are kept for the longest SLO window (30 d) and one hour: pruning then
    // drops everything before hour 20 except what the running sums need, and counts from
    // hour 20 on stay exact.
    let removed = store
        .prune(T0 + 20 * HOUR + 30 * DAY + HOUR)
        .expect("prune");
    assert!(removed > 0, "entries before hour 20 went");
    let later: Events = events
        .iter()
        .filter(|e| e.0 >= T0 + 20 * HOUR)
        .cloned()
        .collect();
    for (from_h, to_h) in [(20, 48), (25, 26), (47, 48)] {
        let (from, to) = (T0 + from_h * HOUR, T0 + to_h * HOUR);
        let got: BTreeMap<String, u64> = store
            .slo_host_bad(id, from, to)
            .expect("hosts")
            .into_iter()
            .collect();
        assert_eq!(
            got,
            oracle_hosts(&later, from, to),
            "after pruning, hours {from_h}..{to_h}"
        );
    }
}

/// Builds a 30-day history ending at `now`: hourly batches until the last day, then one batch a
/// minute; `bad_per_mille(minute index from the start)` sets the error rate of each minute.
fn history(store: &TestStore, now: i64, bad_per_mille: &dyn Fn(i64) -> u64) -> Events {
    let start = now - 30 * DAY;
    let mut events = Vec::new();
    let mut seq = 0;
    let mut t = start;
    while t < now {
        let len = if t < now - DAY { HOUR } else { MIN };
        let (mut good, mut total) = (0, 0);
        let mut m = t;
        while m < t + len {
            let bad = bad_per_mille((m - start) / MIN);
            good += 1000 - bad;
            total += 1000;
            m += MIN;
        }
        seq += 1;
        store
            .merge_batch(&batch("h1", seq, t, len, good, total), now)
            .expect("merge");
        events.push((t, "h1".to_owned(), good, total));
        t += len;
    }
    events
}

/// A scenario: name, error rate per minute, and (offset from the end, expected state).
type Case = (&'static str, Box<dyn Fn(i64) -> u64>, Vec<(i64, Alert)>);

#[test]
fn workbook_alert_table_over_thirty_days_with_reset() {
    let now = T0 + 30 * DAY;
    let end = 30 * 1440; // minutes in the history
    let cases: Vec<Case> = vec![
        ("quiet", Box::new(|_| 0), vec![(0, Alert::Ok)]),
        // Fast burn: the last hour at 2 % errors (20× a 0.1 % budget).
        (
            "fast burn",
            Box::new(move |m| if m >= end - 60 { 20 } else { 0 }),
            vec![(0, Alert::Page)],
        ),
        // Slow burn: the last 3 days at 0.15 % (1.5×): ticket, never page.
        (
            "slow burn",
            Box::new(move |m| {
                if m >= end - 3 * 1440 {
                    1 + u64::from(m % 2 == 0)
                } else {
                    0
                }
            }),
            vec![(0, Alert::Ticket)],
        ),
        // A 5-minute outage that ended 10 minutes before the end: page while the 1 h and 5 min
        // windows see it (evaluated 5 min after it ended), a ticket once the short windows are
        // clean, and back to ok when the 6 h window has passed it (evaluated hours later,
        // with no traffic after the end of the history).
        (
            "short spike",
            Box::new(move |m| {
                if (end - 15..end - 10).contains(&m) {
                    1000
                } else {
                    0
                }
            }),
            vec![
                (-5 * MIN, Alert::Page),
                (2 * HOUR, Alert::Ticket),
                (7 * HOUR, Alert::Ok),
            ],
        ),
    ];
    for (name, bad, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, slos) = store(dir.path(), RATIO);
        let events = history(&store, now, bad.as_ref());
        for (offset, alert) in expected {
            let at = now + offset;
            let r = report(&store, &slos[0], at).expect("report");
            assert_eq!(
                r.alert, alert,
                "{name} at now{offset:+}ms: {:?}",
                r.burn_rates
            );
            let (good, total) = oracle(&events, at - 30 * DAY, at);
            if offset == 0 {
                assert_eq!((r.good, r.total), (good, total), "{name}");
            }
        }
    }
}

#[test]
fn month_windows_start_at_the_first_of_the_month() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = RATIO.replace("window = \"30d\"", "window = \"month\"");
    let (store, slos) = store(dir.path(), &text);
    // Traffic on 31 October and on 1 and 20 November.
    for (seq, t) in [(1, T0 - HOUR), (2, T0), (3, T0 + 19 * DAY)] {
        store
            .merge_batch(&batch("h1", seq, t, 10_000, 9, 10), t)
            .expect("merge");
    }
    let r = report(&store, &slos[0], T0 + 25 * DAY).expect("report");
    assert_eq!(r.total, 20, "October is not part of November's budget");
    assert_eq!(r.window, "month");
    assert_eq!(r.from, "2026-11-01T00:00:00.000Z");
}

#[test]
fn sloth_exposition_names_and_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, slos) = store(dir.path(), RATIO);
    store
        .merge_batch(&batch("h1", 1, T0, 10_000, 990, 1000), T0)
        .expect("merge");
    let reports = report_all(&store, &slos, T0 + MIN).expect("report");
    let text = exposition(&reports, true);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_owned()
    };
    let err5m = line("slo:sli_error:ratio_rate5m{");
    assert!(err5m.contains("sloth_id=\"pitot-avail\""), "{err5m}");
    assert!(err5m.contains("sloth_window=\"5m\""), "{err5m}");
    let v: f64 = err5m
        .rsplit(' ')
        .next()
        .expect("value")
        .parse()
        .expect("number");
    assert!((v - 0.01).abs() < 1e-12, "{v}");
    assert!(line("slo:sli_error:ratio_rate30d{").contains("sloth_window=\"30d\""));
    assert!(line("slo:objective:ratio{").ends_with(" 0.999"));
    assert!(line("slo:time_period:days{").ends_with(" 30"));
    assert!(line("pitot_slo_alert{slo=\"avail\",state=\"page\"}").ends_with(" 1"));
    assert!(!exposition(&reports, false).contains("slo:"));
    assert!(
        !text.contains("pitot_slo_uncertain_events{"),
        "a ratio SLO has no uncertainty"
    );
}

#[test]
fn ratio_counters_split_over_batches_count_once_per_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, slos) = store(dir.path(), RATIO);
    let only = |name: &str, seq: u64, start: i64, v: f64| Batch {
        series: vec![SeriesSnapshot {
            key: key(name, "h1", "m"),
            data: SeriesData::Counter(v),
        }],
        ..batch("h1", seq, start, 1_000, 0, 0)
    };
    // Good counts for two seconds arrive first, the totals later (DogStatsD timestamps).
    store
        .merge_batch(&only("req.ok", 1, T0, 95.0), T0)
        .expect("merge");
    store
        .merge_batch(&only("req.ok", 2, T0 + 1_000, 90.0), T0)
        .expect("merge");
    store
        .merge_batch(&only("req.count", 3, T0, 100.0), T0)
        .expect("merge");
    store
        .merge_batch(&only("req.count", 4, T0 + 1_000, 100.0), T0)
        .expect("merge");
    let r = report(&store, &slos[0], T0 + MIN).expect("report");
    assert_eq!((r.good, r.total), (185, 200));
    assert_eq!(
        r.top_hosts,
        vec![HostBad {
            host: "h1".into(),
            bad: 15
        }]
    );
}

#[test]
fn interleaved_good_and_total_batches_give_each_host_its_net_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, slos) = store(dir.path(), &format!("{RATIO}{LATENCY}"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut net: BTreeMap<String, i64> = BTreeMap::new();
    for seq in 1..=2_000 {
        let host = ["a", "b", "c"][rng.random_range(0..3)];
        // Spread over two hours, in any order: late batches land before later entries.
        let start = T0 + rng.random_range(0..7_200) * 1_000;
        let n = rng.random_range(1..5u64);
        let good = rng.random::<bool>();
        let name = if good { "req.ok" } else { "req.count" };
        // Host c sends more good than total: its net is negative and it is not an offender.
        let n = if host == "c" && good { n + 3 } else { n };
        *net.entry(host.to_owned()).or_default() += if good { -(n as i64) } else { n as i64 };
        let b = Batch {
            series: vec![SeriesSnapshot {
                key: key(name, host, "m"),
                data: SeriesData::Counter(n as f64),
            }],
            ..batch(host, seq, start, 1_000, 0, 0)
        };
        store.merge_batch(&b, T0).expect("merge");
    }
    let got: BTreeMap<String, u64> = store
        .slo_host_bad(slos[0].id, T0, T0 + 2 * HOUR)
        .expect("hosts")
        .into_iter()
        .collect();
    let want: BTreeMap<String, u64> = net
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(h, n)| (h, n as u64))
        .collect();
    assert_eq!(got, want);
    assert!(!got.contains_key("c"));
}

#[test]
fn latency_slos_over_scraped_buckets_count_whole_buckets_and_say_so() {
    use pitot_shared::buckets::{BucketHistogram, Layout};
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, slos) = store(dir.path(), LATENCY);
    // One interval of host `host` with one layout (ms): `bounds` then +Inf.
    let merge = |host: &str, bounds: [f64; 2], counts: Vec<u64>| {
        let count = counts.iter().sum();
        let layout = Layout {
            bounds: vec![bounds[0], bounds[1], f64::INFINITY],
            counts,
            sum: 4000.0,
            count,
        };
        let b = Batch {
            series: vec![SeriesSnapshot {
                key: key("req.latency", host, "m"),
                data: SeriesData::Buckets(BucketHistogram::new(layout).expect("layout")),
            }],
            ..batch(host, 1, T0, 10_000, 0, 0)
        };
        store.merge_batch(&b, T0).expect("merge");
        report(&store, &slos[0], T0 + MIN).expect("report")
    };
    // vLLM-style layout: 4 under 250, 3 in (250, 1000] (straddling 500), 1 above. Only the
    // bucket wholly under 500 ms is good: never optimistic; the 3 in the straddling bucket are
    // the report's uncertainty.
    let r = merge("h1", [250.0, 1000.0], vec![4, 3, 1]);
    assert_eq!((r.good, r.total, r.uncertain), (4, 8, Some(3)));
    assert!(r.indicator.bucket_layouts);
    assert_eq!(
        r.top_hosts,
        vec![HostBad {
            host: "h1".into(),
            bad: 4
        }]
    );
    // A host whose layout has 500 as an edge adds exact counts: no more uncertainty.
    let r = merge("h2", [500.0, 1000.0], vec![2, 5, 0]);
    assert_eq!((r.good, r.total, r.uncertain), (6, 15, Some(3)));
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["uncertain"], 3);
    let text = exposition(&[r], false);
    assert!(
        text.lines()
            .any(|l| l.starts_with("pitot_slo_uncertain_events{") && l.ends_with(" 3")),
        "{text}"
    );
}

/// The engine without a store: planned spans, hand-made cells, the report and its exposition.
#[test]
fn evaluation_is_a_function_of_its_inputs() {
    let def = &slo_config(RATIO)[0];
    let resolutions = default_resolutions();
    let now = T0 + 2 * DAY;
    let host_bucket = resolutions.last().expect("resolutions").bucket_ms();
    let plan = plan(def, &resolutions, host_bucket, now);
    // The window (30 d) is read at the coarsest resolution, the 5-minute lookback at the finest.
    assert_eq!(plan.spans[0].0, "");
    assert_eq!(plan.spans[0].2.label(), "1h");
    let five = plan.spans.iter().find(|s| s.0 == "5m").expect("5m");
    assert_eq!(five.2.label(), "10s");
    // 1 000 events an hour for two days, 10 bad each hour; the last 10 minutes 50 % bad.
    let mut inputs = ReportInputs::default();
    let hourly: Vec<(i64, Counts)> = (0..48)
        .map(|h| {
            (
                T0 + h * HOUR,
                Counts {
                    good: 990,
                    total: 1000,
                    uncertain: 0,
                },
            )
        })
        .collect();
    inputs.cells.insert(plan.spans[0].2.code, hourly);
    let recent: Vec<(i64, Counts)> = (0..60)
        .map(|i| {
            (
                now - 600_000 + i * 10_000,
                Counts {
                    good: 5,
                    total: 10,
                    uncertain: 0,
                },
            )
        })
        .collect();
    inputs.cells.insert(five.2.code, recent);
    inputs.host_bad = vec![("h2".into(), 300), ("h1".into(), 180)];
    let r = evaluate(def, &plan, &inputs, now);
    assert_eq!((r.good, r.total), (47_520, 48_000));
    assert_eq!(r.top_hosts[0].host, "h2");
    // 5 m lookback: 30 cells of 5 bad in 10 → burn 0.5 / 0.001 = 500.
    assert!(
        (r.burn_rates["5m"] - 500.0).abs() < 1e-9,
        "{:?}",
        r.burn_rates
    );
    assert_eq!(r.alert, pitot_shared::slo::Alert::Page);
    let text = exposition(std::slice::from_ref(&r), true);
    assert!(text.contains("slo:sli_error:ratio_rate5m{"), "{text}");
}
