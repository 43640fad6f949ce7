//! Store tests on a temp dir: exactly-once merge, key ordering, retention, reopen.

use std::time::Duration;

use pitot_shared::batch::SeriesSnapshot;
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::AgentId;

use super::*;

fn resolutions() -> Vec<Resolution> {
    vec![
        Resolution {
            code: 0,
            bucket: Duration::from_secs(10),
            retention: Duration::from_secs(3600),
        },
        Resolution {
            code: 1,
            bucket: Duration::from_secs(60),
            retention: Duration::from_secs(86_400),
        },
    ]
}

fn key(host: &str) -> SeriesKey {
    SeriesKey::new("lat", vec![("host".into(), host.into())]).unwrap()
}

fn batch(agent: &str, epoch: u64, seq: u64, start: i64, values: &[f64]) -> Batch {
    let mut h = ValueHistogram::new();
    for v in values {
        h.record(*v).unwrap();
    }
    Batch {
        agent_id: AgentId(agent.into()),
        epoch,
        seq,
        interval_start_ms: start,
        interval_ms: 1000,
        agent_version: "t".into(),
        spool_bytes: 7,
        series: vec![SeriesSnapshot {
            key: key(agent),
            data: SeriesData::Histogram(h),
        }],
    }
}

fn count(store: &SledStore, res: usize, agent: &str, from: i64, to: i64) -> u64 {
    let r = store.resolutions()[res];
    match sum_buckets(store.read(&key(agent), &r, from, to).unwrap()) {
        Some(SeriesData::Histogram(h)) => h.count(),
        None => 0,
        other => panic!("{other:?}"),
    }
}

#[test]
fn batches_merge_exactly_once_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), resolutions()).unwrap();
    let b1 = batch("a", 1, 1, 1_000_000, &[1.0, 2.0]);
    assert!(matches!(
        store.merge_batch(&b1, 1_001_000).unwrap(),
        MergeOutcome::Merged { series: 1, .. }
    ));
    assert_eq!(
        store.merge_batch(&b1, 1_002_000).unwrap(),
        MergeOutcome::Duplicate
    );
    // A new epoch (a fresh spool) starts its sequence again and is merged.
    store
        .merge_batch(&batch("a", 2, 1, 1_001_000, &[3.0]), 1_003_000)
        .unwrap();
    assert_eq!(count(&store, 0, "a", 0, i64::MAX), 3);
    assert_eq!(count(&store, 1, "a", 0, i64::MAX), 3);
    let agents = store.agents().unwrap();
    assert_eq!(agents[0].batches, 2);
    assert_eq!(agents[0].duplicates, 1);
    assert_eq!(agents[0].spool_bytes, 7);
}

#[test]
fn reads_respect_time_ranges_including_negative_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), resolutions()).unwrap();
    for (seq, start) in [(1, -20_000), (2, 0), (3, 10_000), (4, 20_000)] {
        store
            .merge_batch(&batch("a", 1, seq, start, &[1.0]), 0)
            .unwrap();
    }
    assert_eq!(count(&store, 0, "a", -20_000, 10_000), 2);
    assert_eq!(count(&store, 0, "a", 0, 30_000), 3);
    assert_eq!(count(&store, 0, "a", i64::MIN, i64::MAX), 4);
}

#[test]
fn kind_conflicts_are_refused_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), resolutions()).unwrap();
    store.merge_batch(&batch("a", 1, 1, 0, &[1.0]), 0).unwrap();
    let mut counter = batch("a", 1, 2, 0, &[]);
    counter.series[0].data = SeriesData::Counter(5.0);
    assert_eq!(
        store.merge_batch(&counter, 0).unwrap(),
        MergeOutcome::Merged {
            series: 0,
            kind_conflicts: 1
        }
    );
    assert_eq!(count(&store, 0, "a", i64::MIN, i64::MAX), 1);
}

#[test]
fn prune_honours_retention_per_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), resolutions()).unwrap();
    store.merge_batch(&batch("a", 1, 1, 0, &[1.0]), 0).unwrap();
    // Two hours later the 10 s bucket (1 h retention) goes, the 1 min one (1 d) stays.
    assert_eq!(store.prune(7_200_000).unwrap(), 1);
    assert_eq!(count(&store, 0, "a", i64::MIN, i64::MAX), 0);
    assert_eq!(count(&store, 1, "a", i64::MIN, i64::MAX), 1);
}

#[test]
fn series_lookup_by_name_prefix_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), resolutions()).unwrap();
    store.merge_batch(&batch("a", 1, 1, 0, &[1.0]), 0).unwrap();
    store.merge_batch(&batch("b", 1, 1, 0, &[1.0]), 0).unwrap();
    assert_eq!(store.series(Some("lat"), &[]).unwrap().len(), 2);
    assert_eq!(store.series(Some("la"), &[]).unwrap().len(), 0);
    assert_eq!(store.series(Some("la*"), &[]).unwrap().len(), 2);
    let only_b = store
        .series(Some("lat"), &[("host".into(), "b".into())])
        .unwrap();
    assert_eq!(only_b.len(), 1);
    drop(store);
    let reopened = SledStore::open(dir.path(), resolutions()).unwrap();
    assert_eq!(reopened.series(None, &[]).unwrap().len(), 2);
}
