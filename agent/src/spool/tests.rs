//! Spool tests: unit cases for damage, coarsening, conversion of 0.2 spools and failed
//! writes, and a model-based test of random operations, crashes and damage.

use std::collections::BTreeMap;

use pitot_shared::batch::{SeriesData, SeriesSnapshot};
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::{AgentId, SeriesKey};
use proptest::prelude::*;

use super::*;

fn batch(start: i64, values: &[f64]) -> Batch {
    let mut h = ValueHistogram::new();
    for v in values {
        h.record(*v).unwrap();
    }
    Batch {
        agent_id: AgentId("a".into()),
        epoch: 0,
        seq: 0,
        interval_start_ms: start,
        interval_ms: 1000,
        agent_version: "t".into(),
        spool_bytes: 0,
        series: vec![SeriesSnapshot {
            key: SeriesKey::new("lat", vec![]).unwrap(),
            data: SeriesData::Histogram(h),
        }],
    }
}

fn count(bytes: &[u8]) -> u64 {
    let b = decode_batch(bytes).unwrap();
    match &b.series[0].data {
        SeriesData::Histogram(h) => h.count(),
        other => panic!("{other:?}"),
    }
}

fn held_total(spool: &Spool) -> u64 {
    spool
        .peek_after(None, usize::MAX)
        .unwrap()
        .iter()
        .map(|s| count(&s.payload))
        .sum()
}

/// What the spool holds, read without handing anything out.
fn unmarked(spool: &Spool) -> Vec<Spooled> {
    let st = spool.state();
    st.entries
        .iter()
        .filter(|(_, e)| !e.acked)
        .map(|(seq, _)| {
            match read_batch_file(&batch_path(&spool.inner.dir, *seq, "batch")).unwrap() {
                ReadOutcome::Ok { payload, .. } => Spooled {
                    id: SpoolId(*seq),
                    payload: Arc::from(payload),
                },
                ReadOutcome::Damaged(why) => panic!("batch {seq}: {why}"),
            }
        })
        .collect()
}

/// Disk space of one small batch file (one block on every file system here).
fn one_file(dir: &Path) -> u64 {
    let spool = Spool::open(&dir.join("probe"), u64::MAX).unwrap();
    spool.append(batch(0, &[1.0]), 0).unwrap();
    spool.bytes()
}

#[test]
fn a_second_open_names_the_lock_holder() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), u64::MAX).unwrap();
    match Spool::open(dir.path(), u64::MAX) {
        Err(SpoolError::Locked(p)) => assert_eq!(p, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn survives_reopen_with_a_new_epoch_and_the_old_batches_own() {
    let dir = tempfile::tempdir().unwrap();
    let first_epoch = {
        let spool = Spool::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(spool.append(batch(0, &[1.0]), 0).unwrap(), SpoolId(1));
        assert_eq!(spool.append(batch(1000, &[2.0]), 0).unwrap(), SpoolId(2));
        spool.ack(SpoolId(1)).unwrap();
        spool.epoch()
    };
    let spool = Spool::open(dir.path(), u64::MAX).unwrap();
    assert_ne!(
        spool.epoch(),
        first_epoch,
        "a restart may be a restore: new epoch"
    );
    let held = spool.peek_after(None, 10).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, SpoolId(2));
    let left = decode_batch(&held[0].payload).unwrap();
    assert_eq!(
        (left.epoch, left.seq),
        (first_epoch, 2),
        "keeps its own epoch"
    );
    assert_eq!(spool.append(batch(2000, &[3.0]), 0).unwrap(), SpoolId(3));
    let new = spool.peek_after(Some(SpoolId(2)), 10).unwrap();
    assert_eq!(decode_batch(&new[0].payload).unwrap().epoch, spool.epoch());
    assert!(spool.bytes() > 0);
}

#[test]
fn a_damaged_batch_is_set_aside_counted_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), u64::MAX).unwrap();
        for i in 0..3 {
            spool.append(batch(i * 1000, &[1.0, 2.0]), 0).unwrap();
        }
    }
    let victim = batch_path(dir.path(), 2, "batch");
    let mut bytes = fs::read(&victim).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x10;
    fs::write(&victim, bytes).unwrap();
    fs::write(batch_path(dir.path(), 9, "tmp"), b"half a write").unwrap();
    let spool = Spool::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(spool.damaged(), 1);
    assert!(batch_path(dir.path(), 2, "damaged").exists());
    assert!(!batch_path(dir.path(), 9, "tmp").exists());
    let ids: Vec<u64> = spool
        .peek_after(None, 10)
        .unwrap()
        .iter()
        .map(|s| s.id.0)
        .collect();
    assert_eq!(ids, vec![1, 3]);
    // Damage found while running is handled the same way.
    let mut bytes = fs::read(batch_path(dir.path(), 3, "batch")).unwrap();
    bytes[HEADER_BYTES + 1] ^= 1;
    fs::write(batch_path(dir.path(), 3, "batch"), bytes).unwrap();
    let ids: Vec<u64> = spool
        .peek_after(None, 10)
        .unwrap()
        .iter()
        .map(|s| s.id.0)
        .collect();
    assert_eq!(ids, vec![1]);
    assert_eq!(spool.damaged(), 2);
}

#[test]
fn a_file_a_coarsened_batch_covers_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), u64::MAX).unwrap();
        spool.append(batch(0, &[1.0]), 0).unwrap();
        spool.append(batch(1000, &[1.0]), 0).unwrap();
    }
    // A crash between writing the merged file (covering 1..=2) and unlinking batch 2.
    let mut merged = batch(0, &[1.0]);
    merged.absorb(batch(1000, &[1.0]));
    write_batch_file(dir.path(), 1, 2, &encode_batch(&merged)).unwrap();
    let spool = Spool::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(spool.len(), 1);
    assert_eq!(held_total(&spool), 2, "batch 2 counted once");
}

#[test]
fn bound_is_disk_space_and_coarsening_keeps_every_count() {
    let dir = tempfile::tempdir().unwrap();
    let one = one_file(dir.path());
    let spool_dir = dir.path().join("s");
    let spool = Spool::open(&spool_dir, one * 3).unwrap();
    spool.append(batch(0, &[1.0]), 0).unwrap();
    // Batch 1 is handed out: it must never be rewritten.
    assert_eq!(spool.peek_after(None, 1).unwrap().len(), 1);
    for i in 1..10 {
        spool.append(batch(i * 1000, &[1.0, 2.0]), 0).unwrap();
    }
    assert!(spool.coarsened() > 0);
    assert!(spool.bytes() <= one * 3, "{} > {}", spool.bytes(), one * 3);
    let on_disk: u64 = fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".batch"))
        .map(|e| e.metadata().unwrap().blocks() * 512)
        .sum();
    assert_eq!(on_disk, spool.bytes(), "the figure is what the files take");
    let held = spool.peek_after(None, 100).unwrap();
    assert_eq!(held[0].id, SpoolId(1));
    assert_eq!(count(&held[0].payload), 1, "handed-out batch untouched");
    let total: u64 = held.iter().map(|s| count(&s.payload)).sum();
    assert_eq!(total, 1 + 9 * 2, "coarsening loses nothing");
    assert!(held.len() < 10);
}

#[test]
fn batches_left_by_an_earlier_run_are_never_coarsened() {
    let dir = tempfile::tempdir().unwrap();
    let one = one_file(dir.path());
    let spool_dir = dir.path().join("s");
    {
        let spool = Spool::open(&spool_dir, u64::MAX).unwrap();
        for i in 0..4 {
            // The earlier run sent these; their acks never reached the disk.
            spool.append(batch(i * 1000, &[1.0]), 0).unwrap();
        }
        assert_eq!(spool.peek_after(None, 10).unwrap().len(), 4);
    }
    let spool = Spool::open(&spool_dir, one * 6).unwrap();
    for i in 4..10 {
        spool.append(batch(i * 1000, &[2.0, 3.0]), 0).unwrap();
    }
    assert!(spool.coarsened() > 0);
    let held = spool.peek_after(None, 100).unwrap();
    let ids: Vec<u64> = held.iter().map(|s| s.id.0).collect();
    assert_eq!(&ids[..4], &[1, 2, 3, 4], "{ids:?}");
    for s in &held[..4] {
        assert_eq!(count(&s.payload), 1, "batch {} rewritten", s.id.0);
    }
    let total: u64 = held.iter().map(|s| count(&s.payload)).sum();
    assert_eq!(total, 4 + 6 * 2);
}

#[test]
fn failures_are_carried_once_a_batch_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("s");
    let spool = Spool::open(&spool_dir, u64::MAX).unwrap();
    // The directory vanishes (what a full or failing disk looks like to a write).
    fs::remove_dir_all(&spool_dir).unwrap();
    assert!(spool.append(batch(0, &[1.0]), 0).is_err());
    assert!(spool.append(batch(1000, &[1.0]), 0).is_err());
    assert_eq!(spool.append_failures(), 2);
    assert_eq!(spool.unreported_append_failures(), 2);
    fs::create_dir_all(&spool_dir).unwrap();
    let carried = spool.unreported_append_failures();
    assert_eq!(
        spool.append(batch(2000, &[1.0]), carried).unwrap(),
        SpoolId(1)
    );
    assert_eq!(spool.unreported_append_failures(), 0);
    assert_eq!(spool.len(), 1, "writing resumed by itself");
}

#[test]
fn a_0_2_sled_spool_is_converted_with_its_epochs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let t = db.open_tree("batches").unwrap();
        for seq in [4u64, 5] {
            let mut b = batch(seq as i64 * 1000, &[1.0, 2.0, 3.0]);
            b.epoch = 77;
            b.seq = seq;
            t.insert(seq.to_be_bytes(), encode_batch(&b)).unwrap();
        }
        db.flush().unwrap();
    }
    let spool = Spool::open(dir.path(), u64::MAX).unwrap();
    assert!(!dir.path().join("conf").exists(), "sled files removed");
    let held = spool.peek_after(None, 10).unwrap();
    let kept: Vec<(u64, u64, u64)> = held
        .iter()
        .map(|s| {
            let b = decode_batch(&s.payload).unwrap();
            (b.epoch, b.seq, count(&s.payload))
        })
        .collect();
    assert_eq!(kept, vec![(77, 4, 3), (77, 5, 3)]);
    assert_eq!(spool.append(batch(9000, &[1.0]), 0).unwrap(), SpoolId(6));
}

#[test]
fn an_unreadable_sled_spool_is_moved_aside_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("conf"), b"\xff\x00 not a sled config").unwrap();
    fs::write(dir.path().join("db"), vec![0xA5u8; 4096]).unwrap();
    let spool = Spool::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(spool.damaged(), 1);
    assert!(spool.is_empty());
    let aside: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sled.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside for inspection");
    spool.append(batch(0, &[1.0]), 0).unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Peek,
    AckOldest,
    AckNewestSent,
    Crash,
    Damage(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..6).prop_map(Op::Append),
        2 => Just(Op::Peek),
        2 => Just(Op::AckOldest),
        1 => Just(Op::AckNewestSent),
        1 => Just(Op::Crash),
        1 => any::<u8>().prop_map(Op::Damage),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The spool against a model: the values held are exactly those appended, less those
    /// acknowledged and those in batches found damaged; ids stay unique and ordered; crashes
    /// (drop and reopen) change nothing but the epoch; the bound holds whenever there is
    /// something it may coarsen.
    #[test]
    fn spool_matches_a_model(ops in proptest::collection::vec(op(), 1..60), tight in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let one = one_file(dir.path());
        let spool_dir = dir.path().join("s");
        let bound = if tight { one * 4 } else { u64::MAX };
        let mut spool = Spool::open(&spool_dir, bound).unwrap();
        // Model: id → values held under it (coarsening moves values to the lower id).
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let mut sent: Vec<u64> = Vec::new();
        let mut t = 0i64;
        for op in ops {
            match op {
                Op::Append(n) => {
                    t += 1000;
                    let values: Vec<f64> = (0..n).map(f64::from).collect();
                    let id = spool.append(batch(t, &values), 0).unwrap();
                    prop_assert!(model.keys().all(|k| *k < id.0), "ids grow");
                    model.insert(id.0, u64::from(n));
                }
                Op::Peek => {
                    let held = spool.peek_after(None, usize::MAX).unwrap();
                    sent = held.iter().map(|s| s.id.0).collect();
                }
                Op::AckOldest => {
                    if let Some(&id) = sent.first() {
                        spool.ack(SpoolId(id)).unwrap();
                        model.remove(&id);
                        sent.remove(0);
                    }
                }
                Op::AckNewestSent => {
                    if let Some(id) = sent.pop() {
                        spool.ack(SpoolId(id)).unwrap();
                        model.remove(&id);
                    }
                }
                Op::Crash => {
                    let before = spool.epoch();
                    drop(spool);
                    spool = Spool::open(&spool_dir, bound).unwrap();
                    prop_assert_ne!(spool.epoch(), before);
                    sent.clear();
                }
                Op::Damage(pick) => {
                    if model.is_empty() {
                        continue;
                    }
                    let ids: Vec<u64> = model.keys().copied().collect();
                    let id = ids[usize::from(pick) % ids.len()];
                    let path = batch_path(&spool_dir, id, "batch");
                    let mut bytes = fs::read(&path).unwrap();
                    let at = usize::from(pick) % bytes.len();
                    bytes[at] ^= 0x40;
                    fs::write(&path, bytes).unwrap();
                    drop(spool);
                    spool = Spool::open(&spool_dir, bound).unwrap();
                    model.remove(&id);
                    sent.clear();
                    prop_assert_eq!(spool.damaged(), 1, "the damaged batch is counted");
                }
            }
            // Coarsening merges a batch into the one before it: fold the model the same way.
            let held = unmarked(&spool);
            let mut ids: Vec<u64> = held.iter().map(|s| s.id.0).collect();
            let mut folded: BTreeMap<u64, u64> = BTreeMap::new();
            for (id, n) in &model {
                let owner = ids.iter().rev().find(|h| *h <= id).copied().unwrap_or(*id);
                *folded.entry(owner).or_default() += n;
            }
            let got: BTreeMap<u64, u64> = held.iter().map(|s| (s.id.0, count(&s.payload))).collect();
            prop_assert_eq!(&got, &folded);
            model = folded;
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), held.len());
            let st = spool.state();
            let free = st.entries.range(st.handed_out + 1..).filter(|(_, e)| !e.acked).count();
            prop_assert!(st.disk_bytes <= bound || free <= 1, "{} over {bound}", st.disk_bytes);
        }
    }
}
