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
fn a_sequence_that_goes_backwards_is_told_from_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    for seq in 1..=3 {
        let b = batch("a", 5, seq, 1_000_000 + seq as i64 * 1000, &[1.0]);
        store.merge_batch(&b, 1_010_000, &[], &[]).unwrap();
    }
    // A true replay of batch 2: older than the mark's batch.
    let replay = batch("a", 5, 2, 1_002_000, &[1.0]);
    assert_eq!(
        store.merge_batch(&replay, 1_011_000, &[], &[]).unwrap(),
        MergeOutcome::Duplicate
    );
    // A restored spool numbering new data from 2 again.
    let rewound = batch("a", 5, 2, 1_009_000, &[1.0]);
    assert_eq!(
        store.merge_batch(&rewound, 1_012_000, &[], &[]).unwrap(),
        MergeOutcome::Rewound { high_water: 3 }
    );
    assert_eq!(count(&store, 0, "a", 0, i64::MAX), 3, "neither merged");
}

#[test]
fn batches_merge_exactly_once_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    let b1 = batch("a", 1, 1, 1_000_000, &[1.0, 2.0]);
    assert!(matches!(
        store.merge_batch(&b1, 1_001_000, &[], &[]).unwrap(),
        MergeOutcome::Merged { series: 1, .. }
    ));
    assert_eq!(
        store.merge_batch(&b1, 1_002_000, &[], &[]).unwrap(),
        MergeOutcome::Duplicate
    );
    // A new epoch (a fresh spool) starts its sequence again and is merged.
    store
        .merge_batch(&batch("a", 2, 1, 1_001_000, &[3.0]), 1_003_000, &[], &[])
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
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    for (seq, start) in [(1, -20_000), (2, 0), (3, 10_000), (4, 20_000)] {
        store
            .merge_batch(&batch("a", 1, seq, start, &[1.0]), 0, &[], &[])
            .unwrap();
    }
    assert_eq!(count(&store, 0, "a", -20_000, 10_000), 2);
    assert_eq!(count(&store, 0, "a", 0, 30_000), 3);
    assert_eq!(count(&store, 0, "a", i64::MIN, i64::MAX), 4);
}

#[test]
fn kind_conflicts_are_refused_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    store
        .merge_batch(&batch("a", 1, 1, 0, &[1.0]), 0, &[], &[])
        .unwrap();
    let mut counter = batch("a", 1, 2, 0, &[]);
    counter.series[0].data = SeriesData::Counter(5.0);
    assert_eq!(
        store.merge_batch(&counter, 0, &[], &[]).unwrap(),
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
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    store
        .merge_batch(&batch("a", 1, 1, 0, &[1.0]), 0, &[], &[])
        .unwrap();
    // Two hours later the 10 s bucket (1 h retention) goes, the 1 min one (1 d) stays.
    assert_eq!(
        store.prune(7_200_000, std::time::Duration::ZERO).unwrap(),
        1
    );
    assert_eq!(count(&store, 0, "a", i64::MIN, i64::MAX), 0);
    assert_eq!(count(&store, 1, "a", i64::MIN, i64::MAX), 1);
}

#[test]
fn series_lookup_by_name_prefix_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    store
        .merge_batch(&batch("a", 1, 1, 0, &[1.0]), 0, &[], &[])
        .unwrap();
    store
        .merge_batch(&batch("b", 1, 1, 0, &[1.0]), 0, &[], &[])
        .unwrap();
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

/// Three resolutions (10 s for 1 h here, 1 min for a day, 1 h for 30 days) for rollup tests.
fn three_resolutions() -> Vec<Resolution> {
    let mut r = resolutions();
    r.push(Resolution {
        code: 2,
        bucket: Duration::from_secs(3600),
        retention: Duration::from_secs(30 * 86_400),
    });
    r
}

fn stored_buckets(store: &SledStore, res: usize) -> usize {
    let r = store.resolutions()[res];
    store
        .trees()
        .unwrap()
        .buckets
        .scan_prefix([r.code])
        .filter(|e| e.as_ref().is_ok_and(|(k, _)| k.len() == 17))
        .count()
}

#[test]
fn coarse_buckets_are_rolled_up_once_and_reads_never_miss_data() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_800_000_000_000; // 2027-01-15T08:00:00Z, on an hour boundary
    // Opened a little before t0: the marks fall on the next boundaries (t0 for both).
    let mut store = SledStore::open_at(dir.path(), three_resolutions(), t0 - 1).unwrap();
    // Two hours of 10 s batches, two values each.
    let mut seq = 0;
    for i in 0..720 {
        seq += 1;
        store
            .merge_batch(
                &batch("a", 1, seq, t0 + i * 10_000, &[1.0, 2.0]),
                0,
                &[],
                &[],
            )
            .unwrap();
    }
    // Nothing coarse is written at merge time, but every resolution reads all 1 440 values.
    assert_eq!(stored_buckets(&store, 1), 0);
    assert_eq!(stored_buckets(&store, 2), 0);
    for res in 0..3 {
        assert_eq!(
            count(&store, res, "a", t0, t0 + 7_200_000),
            1_440,
            "resolution {res}"
        );
    }
    let hourly = store
        .read(&key("a"), &store.resolutions()[2], t0, t0 + 7_200_000)
        .unwrap();
    assert_eq!(
        hourly.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![t0, t0 + 3_600_000]
    );
    // Rolling up at t0 + 2 h + grace: 120 minutes, then the two hours (16 steps per call).
    let now = t0 + 7_200_000 + ROLLUP_GRACE_MS;
    let mut written = 0;
    for _ in 0..20 {
        written += store.rollup(now).unwrap();
    }
    assert_eq!(written, 120 + 2);
    assert_eq!(stored_buckets(&store, 1), 120);
    assert_eq!(stored_buckets(&store, 2), 2);
    assert_eq!(store.rollup(now).unwrap(), 0, "nothing is rolled up twice");
    for res in 0..3 {
        assert_eq!(
            count(&store, res, "a", t0, t0 + 7_200_000),
            1_440,
            "resolution {res}"
        );
    }
    // A late batch for a rolled-up minute and hour is merged into them directly.
    seq += 1;
    store
        .merge_batch(&batch("a", 1, seq, t0 + 30_000, &[3.0]), 0, &[], &[])
        .unwrap();
    for res in 0..3 {
        assert_eq!(
            count(&store, res, "a", t0, t0 + 7_200_000),
            1_441,
            "resolution {res}"
        );
    }
    // The marks survive a restart.
    drop(store);
    let mut store = SledStore::open_at(dir.path(), three_resolutions(), now + 86_400_000).unwrap();
    assert_eq!(store.rollup(now).unwrap(), 0);
    assert_eq!(count(&store, 2, "a", t0, t0 + 7_200_000), 1_441);
}

#[test]
fn pruning_keeps_finer_buckets_until_they_are_rolled_up() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_800_000_000_000; // on an hour boundary
    let mut store = SledStore::open_at(dir.path(), three_resolutions(), t0 - 1).unwrap();
    store
        .merge_batch(&batch("a", 1, 1, t0, &[1.0]), 0, &[], &[])
        .unwrap();
    // Two hours later the 10 s bucket is past its retention, but no rollup ran: it stays.
    store
        .prune(t0 + 7_200_000, std::time::Duration::ZERO)
        .unwrap();
    assert_eq!(count(&store, 0, "a", t0, t0 + 60_000), 1);
    assert_eq!(count(&store, 2, "a", t0, t0 + 3_600_000), 1);
    // After the rollups it may go, and the coarser buckets still hold the value.
    for _ in 0..10 {
        store.rollup(t0 + 7_200_000).unwrap();
    }
    store
        .prune(t0 + 7_200_000, std::time::Duration::ZERO)
        .unwrap();
    assert_eq!(count(&store, 0, "a", t0, t0 + 60_000), 0);
    assert_eq!(count(&store, 1, "a", t0, t0 + 60_000), 1);
    assert_eq!(count(&store, 2, "a", t0, t0 + 3_600_000), 1);
}

#[test]
fn slo_cells_read_both_encodings_and_refuse_others() {
    let c = Counts {
        good: 7,
        total: 9,
        uncertain: 2,
    };
    assert_eq!(parse_counts(&counts_value(c)), Some(c));
    // A store written before `uncertain` existed holds 16-byte cells.
    let old = &counts_value(c)[..16];
    assert_eq!(parse_counts(old), Some(Counts { uncertain: 0, ..c }));
    for len in [0, 8, 17, 23, 25, 32] {
        assert_eq!(parse_counts(&vec![0u8; len]), None, "{len} bytes");
    }
}

#[test]
fn a_reopened_store_keeps_what_was_flushed_and_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    let reader = store.reader();
    store
        .merge_batch(
            &batch("a", 1, 1, 1_000_000, &[1.0, 2.0]),
            1_001_000,
            &[],
            &[],
        )
        .unwrap();
    store.flush().unwrap();
    store.reopen().unwrap();
    // Readers handed out before the reopen read the new engine.
    let r = reader.resolutions()[0];
    assert_eq!(
        sum_buckets(reader.read(&key("a"), &r, 0, i64::MAX).unwrap()).map(|d| match d {
            SeriesData::Histogram(h) => h.count(),
            other => panic!("{other:?}"),
        }),
        Some(2)
    );
    // The exactly-once mark survived too.
    assert_eq!(
        store
            .merge_batch(
                &batch("a", 1, 1, 1_000_000, &[1.0, 2.0]),
                1_002_000,
                &[],
                &[]
            )
            .unwrap(),
        MergeOutcome::Duplicate
    );
    store
        .merge_batch(&batch("a", 1, 2, 1_001_000, &[3.0]), 1_003_000, &[], &[])
        .unwrap();
    store.flush().unwrap();
    assert_eq!(count(&store, 0, "a", 0, i64::MAX), 3);
}

#[test]
fn a_store_behind_its_state_file_reports_what_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
        for seq in 1..=3 {
            let b = batch("a", 1, seq, 1_000_000 + seq as i64 * 1000, &[1.0]);
            store.merge_batch(&b, 1_010_000, &[], &[]).unwrap();
            store.flush().unwrap();
        }
        assert!(store.damage().is_empty());
    }
    // What sled's silent truncation leaves: the store as of an earlier flush, while the state
    // file remembers the later ones (two more flushes, five more batches).
    let (generation, merged) = super::integrity::read_state_file(dir.path()).unwrap();
    assert_eq!(merged, 3);
    super::integrity::write_state_file(dir.path(), generation + 2, merged + 5).unwrap();
    let store = SledStore::open(dir.path(), resolutions()).unwrap();
    assert_eq!(
        store.damage(),
        &[Damage::LostFlushes {
            found: generation,
            expected: generation + 2,
            lost_batches: 5,
        }]
    );
    assert!(
        store.damage()[0]
            .describe()
            .contains("5 merged batches are gone")
    );
    assert_eq!(
        count(&store, 0, "a", 0, i64::MAX),
        3,
        "what is left still reads"
    );
}

#[test]
fn a_damaged_sled_conf_is_rebuilt_without_loss_and_check_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
        store
            .merge_batch(
                &batch("a", 1, 1, 1_000_000, &[1.0, 2.0]),
                1_010_000,
                &[],
                &[],
            )
            .unwrap();
        store.flush().unwrap();
    }
    let conf = dir.path().join("conf");
    let mut bytes = std::fs::read(&conf).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&conf, bytes).unwrap();
    assert!(
        SledStore::open_to_check(dir.path(), resolutions()).is_err(),
        "check changes nothing and says it cannot open"
    );
    let store = SledStore::open(dir.path(), resolutions()).unwrap();
    assert!(matches!(store.damage(), [Damage::ConfRebuilt { .. }]));
    assert!(!store.damage()[0].lost_data());
    assert_eq!(count(&store, 0, "a", 0, i64::MAX), 2);
    let checks = store.check().unwrap();
    assert!(checks.iter().all(|c| c.bad.is_empty()), "{checks:?}");
}

#[test]
fn batches_longer_than_a_bucket_are_kept_as_runs_per_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    let long = |agent: &str, seq: u64, start: i64, ms: u64| {
        let mut b = batch(agent, 1, seq, start, &[1.0]);
        b.interval_ms = ms;
        b
    };
    // Three contiguous coarsened batches, one later after a gap, one of another agent, and an
    // ordinary 1 s batch that is no run at all.
    for (i, start) in [0i64, 20_000, 40_000].iter().enumerate() {
        let b = long("a", i as u64 + 1, 1_000_000 + start, 20_000);
        store.merge_batch(&b, 1_100_000, &[], &[]).unwrap();
    }
    store
        .merge_batch(&long("a", 4, 2_000_000, 30_000), 2_100_000, &[], &[])
        .unwrap();
    store
        .merge_batch(&long("b", 1, 1_010_000, 60_000), 2_100_000, &[], &[])
        .unwrap();
    store
        .merge_batch(&batch("c", 1, 1, 1_000_000, &[1.0]), 2_100_000, &[], &[])
        .unwrap();
    let mut spans = store.coarse_spans(0, i64::MAX).unwrap();
    spans.sort();
    assert_eq!(
        spans,
        vec![
            ("a".to_owned(), 1_000_000, 1_060_000),
            ("a".to_owned(), 2_000_000, 2_030_000),
            ("b".to_owned(), 1_010_000, 1_070_000),
        ]
    );
    // Only the runs that overlap a range.
    let inside = store.coarse_spans(1_065_000, 1_500_000).unwrap();
    assert_eq!(inside, vec![("b".to_owned(), 1_010_000, 1_070_000)]);
}

#[test]
fn marks_of_epochs_older_than_every_retention_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    let longest = store.resolutions().last().unwrap().retention.as_millis() as i64;
    let old = batch("a", 1, 1, 0, &[1.0]);
    store.merge_batch(&old, 0, &[], &[]).unwrap();
    let now = longest + 3_600_000;
    let recent = batch("a", 2, 1, now - 60_000, &[1.0]);
    store.merge_batch(&recent, now, &[], &[]).unwrap();
    store.prune(now, std::time::Duration::ZERO).unwrap();
    let marks: Vec<_> = store.trees().unwrap().dedupe.iter().keys().collect();
    assert_eq!(marks.len(), 1, "only the recent epoch's mark is left");
    assert_eq!(
        store.merge_batch(&recent, now, &[], &[]).unwrap(),
        MergeOutcome::Duplicate,
        "the recent epoch still dedupes"
    );
}

#[test]
fn readers_wait_for_a_round_of_writes_to_be_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    let b = batch("a", 5, 1, 1_000_000, &[1.0]);
    store.merge_batch(&b, 1_010_000, &[], &[]).unwrap();
    store.flush().unwrap();

    let gate = store.hold_reads();
    let closed = gate.close();
    let b = batch("a", 5, 2, 1_001_000, &[2.0, 3.0]);
    store.merge_batch(&b, 1_010_000, &[], &[]).unwrap();
    // The writer reads its own writes; a reader waits for the round.
    assert_eq!(count(&store, 0, "a", 0, i64::MAX), 3);
    let reader = store.reader();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let r = reader.resolutions()[0];
        let read = reader.read(&key("a"), &r, 0, i64::MAX).unwrap();
        let n = match sum_buckets(read) {
            Some(SeriesData::Histogram(h)) => h.count(),
            _ => 0,
        };
        tx.send(n).unwrap();
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout),
        "a read went ahead of an unflushed round"
    );
    store.flush().unwrap();
    drop(closed);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 3);
    thread.join().unwrap();
}

#[test]
fn the_read_memo_answers_as_the_store_would() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStore::open(dir.path(), resolutions()).unwrap();
    for seq in 1..=30 {
        let values: Vec<f64> = (0..seq).map(|i| 0.001 * f64::from(i as u32 + 1)).collect();
        let b = batch("a", 5, seq, 1_000_000 + seq as i64 * 10_000, &values);
        store.merge_batch(&b, 1_400_000, &[], &[]).unwrap();
    }
    let reader = store.reader();
    let memo = ReadMemo::new(&reader);
    let r = reader.resolutions()[0];
    let (from, to) = (1_000_000, 1_400_000);
    let direct = |step| reader.read_binned(&key("a"), &r, from, to, step).unwrap();
    // Remembered at 30 s, then asked at 30 s, 60 s (a multiple), the whole range, and 40 s
    // (not a multiple: read again).
    let by_30 = memo.read_binned(&key("a"), &r, from, to, 30_000).unwrap();
    assert_eq!(by_30.len(), 11);
    assert_eq!(by_30, direct(30_000));
    for step in [30_000, 60_000, to - from, i64::MAX, 40_000] {
        let got = memo.read_binned(&key("a"), &r, from, to, step).unwrap();
        assert_eq!(got, direct(step), "step {step}");
    }
    let whole = memo.read_binned(&key("a"), &r, from, to, i64::MAX).unwrap();
    assert_eq!(whole.len(), 1);
    match &whole[0].1 {
        SeriesData::Histogram(h) => assert_eq!(h.count(), (1..=30).sum::<u64>()),
        other => panic!("{other:?}"),
    }
    // A different range is its own read.
    let later = memo
        .read_binned(&key("a"), &r, from + 100_000, to, 30_000)
        .unwrap();
    assert_eq!(
        later,
        reader
            .read_binned(&key("a"), &r, from + 100_000, to, 30_000)
            .unwrap()
    );
}

#[test]
fn binned_reads_add_stored_bytes_as_reads_and_bins_do() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_800_000_000_000; // on an hour boundary
    let mut store = SledStore::open_at(dir.path(), three_resolutions(), t0 - 1).unwrap();
    for seq in 0..720u64 {
        let start = t0 + seq as i64 * 10_000;
        let values: Vec<f64> = (0..=seq % 7)
            .map(|i| 1e-3 * (seq + i * 31) as f64)
            .collect();
        store
            .merge_batch(&batch("a", 1, seq + 1, start, &values), 0, &[], &[])
            .unwrap();
    }
    // One rollup call (16 steps): the minute mark moves part of the way, so reads of the
    // minutes and hours take their last part from the finer resolution.
    store.rollup(t0 + 7_200_000 + ROLLUP_GRACE_MS).unwrap();
    let trees = store.trees().unwrap();
    let minute = store.resolutions()[1];
    let (id, _) = trees.locate(&key("a"), &minute).unwrap().unwrap();
    // A counter under the histogram's key (a kind conflict, kept out of the bin either way),
    // and counters whose float sums depend on the order they are added in.
    trees
        .import_bucket(&key("a"), &minute, t0 + 120_000, &SeriesData::Counter(1.0))
        .unwrap();
    let requests = SeriesKey::new("req", vec![]).unwrap();
    for (i, t) in (0..40).map(|i| (i, t0 + i * 60_000)) {
        let c = SeriesData::Counter(0.1 * (i % 7) as f64 + 1e-3);
        trees.import_bucket(&requests, &minute, t, &c).unwrap();
    }
    let expected = |series: &SeriesKey, r: &Resolution, from, to, step| {
        let read = store.read(series, r, from, to).unwrap();
        bin_buckets(
            read.into_iter().map(|(t, d)| (t, Cow::Owned(d))),
            from,
            step,
        )
    };
    let mut compared = 0;
    for r in store.resolutions().to_vec() {
        for (from, to) in [(t0, t0 + 7_200_000), (t0 + 25_000, t0 + 3_000_000)] {
            for step in [10_000, 60_000, 420_000, 3_600_000, to - from, i64::MAX] {
                for series in [&key("a"), &requests] {
                    let got = store.read_binned(series, &r, from, to, step).unwrap();
                    assert_eq!(got, expected(series, &r, from, to, step), "{r:?} {step}");
                    compared += got.len();
                }
            }
        }
    }
    assert!(compared > 1_000, "{compared} bins compared");
    // A damaged stored value fails the read, as it fails `read`.
    trees
        .buckets
        .insert(bucket_key(minute.code, id, t0 + 180_000), vec![4, 1, 0xff])
        .unwrap();
    let range = (t0, t0 + 600_000);
    assert!(matches!(
        store.read_binned(&key("a"), &minute, range.0, range.1, 300_000),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.read(&key("a"), &minute, range.0, range.1),
        Err(StoreError::Corrupt(_))
    ));
}
