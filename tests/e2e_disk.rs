//! End to end under disk faults on the agent: a spool restored from an older copy, a damaged
//! spool file, and a spool file system that fills up and frees again (a 4 MiB tmpfs; needs
//! root, as CI runs). What the contract promises stays exact; what is lost is counted and
//! logged; nothing stays stuck.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Fleet, latencies, python_send, values_file, wait_for};

fn send(fleet: &Fleet, name: &str, values: &[f64]) {
    send_as(fleet, "request.latency", name, values);
}

fn send_as(fleet: &Fleet, metric: &str, name: &str, values: &[f64]) {
    let file = values_file(fleet.dir.path(), name, values);
    python_send(&[
        "--client",
        "datadog",
        "--udp",
        &fleet.udp_addr("gpu-a").to_string(),
        "--metric",
        metric,
        "--values",
        file.to_str().unwrap(),
        "--rate",
        "2000",
    ]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn batch_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "batch"))
        .collect();
    files.sort();
    files
}

/// `request.latency` values in a spooled batch file (20-byte header, then the batch).
fn latency_count(file: &Path) -> u64 {
    let bytes = std::fs::read(file).unwrap();
    let batch = pitot_shared::wire::decode_batch(&bytes[20..]).expect("a spooled batch");
    batch
        .series
        .iter()
        .filter(|s| s.key.name() == "request.latency")
        .map(|s| match &s.data {
            pitot_shared::batch::SeriesData::Histogram(h) => h.count(),
            _ => 0,
        })
        .sum()
}

fn counter_total(fleet: &Fleet, metric: &str) -> f64 {
    fleet
        .counters(metric, "")
        .and_then(|v| v["fleet"]["total"].as_f64())
        .unwrap_or(0.0)
}

#[test]
fn a_restored_or_damaged_spool_never_hides_new_data() {
    let mut fleet = Fleet::new(&["gpu-a"]);
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    let spool = fleet.path("spool-gpu-a");
    let snapshot = fleet.path("spool-snapshot");

    send(&fleet, "a.txt", &latencies(1, 1000, 30.0));
    fleet.wait_for_count("request.latency", 1000, Duration::from_secs(30));
    // What a VM snapshot or a backup keeps: the spool as it was.
    copy_dir(&spool, &snapshot);
    send(&fleet, "b.txt", &latencies(2, 1000, 30.0));
    fleet.wait_for_count("request.latency", 2000, Duration::from_secs(30));
    assert!(fleet.stop_agent("gpu-a").success(), "SIGTERM exits 0");

    // Restore the older copy; the aggregator has merged sequence numbers past it.
    std::fs::remove_dir_all(&spool).unwrap();
    copy_dir(&snapshot, &spool);
    fleet.start_agent("gpu-a");
    send(&fleet, "c.txt", &latencies(3, 1000, 30.0));
    fleet.wait_for_count("request.latency", 3000, Duration::from_secs(30));

    // Now a damaged file: batches the aggregator never saw, one of them with a flipped bit.
    fleet.kill_aggregator();
    send(&fleet, "d.txt", &latencies(4, 1000, 30.0));
    fleet.wait_spooled_past_now("gpu-a");
    assert!(fleet.stop_agent("gpu-a").success(), "SIGTERM exits 0");
    let files = batch_files(&spool);
    let victim = files
        .iter()
        .find(|f| latency_count(f) > 0)
        .expect("a spooled batch with latencies");
    let lost = latency_count(victim);
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(victim, bytes).unwrap();

    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    fleet.wait_for_count("request.latency", 4000 - lost, Duration::from_secs(30));
    let log = fleet.agents["gpu-a"].log_text();
    assert!(
        log.contains("Spooled batch is damaged; its data is lost"),
        "the loss is logged:\n{log}"
    );
    wait_for(
        "the damage counted at the aggregator",
        Duration::from_secs(20),
        || (counter_total(&fleet, "pitot.agent.spool.damaged") == 1.0).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fleet.count("request.latency"), 4000 - lost, "still exact");
}

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// A 4 MiB tmpfs at `dir`, or `None` when this user may not mount (not root).
    fn mount(dir: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    /// Fills the file system to the last byte, and again once the batches in flight were
    /// acknowledged and their files removed.
    fn fill(&self) {
        for part in 0..2 {
            let status = Command::new("dd")
                .args(["if=/dev/zero", "bs=64k"])
                .arg(format!(
                    "of={}",
                    self.0.join(format!("filler{part}")).display()
                ))
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(!status.success(), "dd stops at a full disk");
            std::thread::sleep(Duration::from_millis(1500));
        }
    }

    fn free(&self) {
        for part in 0..2 {
            std::fs::remove_file(self.0.join(format!("filler{part}"))).unwrap();
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _unmounted = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_spool_disk_loses_only_what_it_must_and_recovers() {
    let mut fleet = Fleet::new(&["gpu-a"]);
    let Some(disk) = Tmpfs::mount(&fleet.path("spool-gpu-a")) else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    send(&fleet, "a.txt", &latencies(1, 1000, 30.0));
    fleet.wait_for_count("request.latency", 1000, Duration::from_secs(30));

    disk.fill();
    // Intervals closed while the disk is full cannot be spooled: lost, and counted. (Their
    // values go to a metric of their own: how many of them were lost depends on timing.)
    send_as(
        &fleet,
        "request.while_full",
        "full.txt",
        &latencies(2, 1000, 30.0),
    );
    std::thread::sleep(Duration::from_secs(4));
    disk.free();

    // The running agent resumes by itself.
    send(&fleet, "b.txt", &latencies(3, 1000, 30.0));
    fleet.wait_for_count("request.latency", 2000, Duration::from_secs(30));
    wait_for(
        "the loss counted at the aggregator",
        Duration::from_secs(20),
        || (counter_total(&fleet, "pitot.agent.spool.append_failures") >= 3.0).then_some(()),
    );
    let log = fleet.agents["gpu-a"].log_text();
    let complaints = log.matches("Could not spool a batch").count();
    // One line a minute, not one per interval (a batch acknowledged and removed while the
    // disk fills can free room for one more, which ends the first episode).
    assert!(
        (1..=2).contains(&complaints),
        "{complaints} complaints:\n{log}"
    );
    assert!(
        fleet.count("request.while_full") < 1000,
        "the full disk lost something"
    );
    assert!(log.contains("The spool is writable again"), "{log}");

    // Stopped while the disk is full: the last interval is lost, the exit is clean.
    disk.fill();
    assert!(
        fleet.stop_agent("gpu-a").success(),
        "SIGTERM exits 0 on a full disk"
    );
    assert_eq!(
        fleet.count("request.latency"),
        2000,
        "nothing counted twice"
    );
}

fn healthz(fleet: &Fleet) -> (u16, String) {
    fleet
        .client()
        .get_raw("/healthz")
        .unwrap_or((0, String::new()))
}

#[test]
fn an_aggregator_on_a_full_disk_refuses_batches_and_resumes_by_itself() {
    aggregator_full_disk("1MiB", true);
}

/// Without a reserve sled itself runs into the full disk: after its write error it refuses
/// every write until reopened, which the aggregator does once space returns.
#[test]
fn an_aggregator_whose_store_hit_enospc_reopens_it() {
    aggregator_full_disk("0B", false);
}

/// `reserve`: `min_free` is large enough for a reserve sled can open with (one of its 512 KiB
/// segments and more) and small enough to fit beside the store on the 4 MiB disk.
fn aggregator_full_disk(min_free: &str, reserve: bool) {
    let mut fleet = Fleet::new(&["gpu-a"]);
    let Some(disk) = Tmpfs::mount(&fleet.path("store")) else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    // Lands in [store]: a reserve that fits the 4 MiB file system.
    fleet.aggregator_extra = format!("min_free = \"{min_free}\"\n");
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    send(&fleet, "a.txt", &latencies(1, 1000, 30.0));
    fleet.wait_for_count("request.latency", 1000, Duration::from_secs(30));
    assert_eq!(healthz(&fleet).0, 200);

    // Reads show durable data only: while the disk is full, a reader polling all along never
    // sees the lines whose merge or flush failed (sled shows applied writes before they are
    // flushed; the aggregator keeps readers out of a round until its flush, and drops a
    // failed round from memory by reopening before they come back).
    let watcher = Watcher::start(&fleet);
    disk.fill();
    send(&fleet, "b.txt", &latencies(2, 1000, 30.0));
    let (status, body) = wait_for("not ready while full", Duration::from_secs(20), || {
        let h = healthz(&fleet);
        (h.0 == 503).then_some(h)
    });
    assert!(body.contains("store not writable"), "{status} {body}");
    let metrics = fleet.metrics_text().expect("/metrics answers");
    assert!(
        metrics.contains("pitot_aggregator_store_writable 0"),
        "{metrics}"
    );
    // Let the agent retry a few times against the full disk.
    std::thread::sleep(Duration::from_secs(3));
    let seen = watcher.stop();
    assert!(seen.answers > 0 && seen.other.is_empty(), "{seen:?}");
    assert_eq!(
        seen.max_count, 1000,
        "only durable lines are shown: {seen:?}"
    );
    if reserve {
        // sled never hit the full disk (min_free held it back): reports answer throughout.
        assert_eq!(seen.closed, 0, "{seen:?}");
        assert_eq!(fleet.count("request.latency"), 1000, "reports still answer");
    } else {
        // sled hit ENOSPC, and with no reserve it cannot reopen on the full disk: reports
        // answer 503 saying why, rather than show what was not flushed.
        let (status, body) = fleet
            .client()
            .get_raw("/api/v1/quantiles?metric=request.latency&q=0.5")
            .unwrap();
        assert!(
            (status == 200 && body.contains("\"count\":1000"))
                || (status == 503 && body.contains("store is closed")),
            "{status} {body}"
        );
    }

    // Killed while full: sled writes while it opens a store. With a reserve file (min(min_free,
    // 16 MiB), written while there was room) the aggregator frees it and starts read-only;
    // without one it waits (no crash loop).
    // Either way /healthz says why.
    fleet.kill_aggregator();
    fleet.start_aggregator();
    let (status, body) = healthz(&fleet);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not ready: store not writable"), "{body}");
    assert!(fleet.aggregator.as_mut().unwrap().alive(), "still running");
    if reserve {
        assert_eq!(
            fleet.count("request.latency"),
            1000,
            "reports answer read-only"
        );
    }

    disk.free();
    // Nothing was acknowledged unstored: the agent delivers it all once space returns.
    fleet.wait_for_count("request.latency", 2000, Duration::from_secs(60));
    wait_for("ready again", Duration::from_secs(20), || {
        (healthz(&fleet).0 == 200).then_some(())
    });
    send(&fleet, "c.txt", &latencies(3, 1000, 30.0));
    fleet.wait_for_count("request.latency", 3000, Duration::from_secs(30));
}

/// What a reader polling the fleet count saw.
#[derive(Debug, Default)]
struct Seen {
    answers: u64,
    max_count: u64,
    /// 503s: the store closed after a failed write.
    closed: u64,
    other: Vec<String>,
}

/// Polls `/api/v1/quantiles` for `request.latency` every 10 ms on its own thread.
struct Watcher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Seen>,
}

impl Watcher {
    fn start(fleet: &Fleet) -> Watcher {
        use std::sync::atomic::Ordering;
        let client = fleet.client();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            while !flag.load(Ordering::Relaxed) {
                match client.get_raw("/api/v1/quantiles?metric=request.latency&q=0.5") {
                    Ok((200, body)) => {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        seen.answers += 1;
                        let count = v["fleet"]["count"].as_u64().unwrap_or(0);
                        seen.max_count = seen.max_count.max(count);
                    }
                    Ok((503, _)) => seen.closed += 1,
                    other => seen.other.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        });
        Watcher { stop, thread }
    }

    fn stop(self) -> Seen {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn aggregator_cmd(fleet: &Fleet, verb: &str) -> (bool, String) {
    let out = Command::new(common::bin("pitot-aggregator"))
        .args([verb, "--config"])
        .arg(fleet.path("aggregator.toml"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn stop_aggregator(fleet: &mut Fleet) {
    let status = fleet.aggregator.take().unwrap().terminate();
    assert!(status.success(), "aggregator exits 0 on SIGTERM");
}

fn audit_kinds(fleet: &Fleet) -> Vec<String> {
    let audit = fleet.client().get("/api/v1/audit", &[]).unwrap();
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_damaged_store_says_what_it_lost_and_keeps_the_fleet_running() {
    let mut fleet = Fleet::new(&["gpu-a"]);
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    send(&fleet, "a.txt", &latencies(1, 3000, 30.0));
    fleet.wait_for_count("request.latency", 3000, Duration::from_secs(30));
    assert!(fleet.stop_agent("gpu-a").success());
    stop_aggregator(&mut fleet);
    let store = fleet.path("store");

    // Two zeroed 4 KiB pages in the data file: sled recovers its log up to the first and drops
    // the rest without a word (or, when they hit what it needs to start, cannot open it).
    let db = store.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    for at in [len / 3 / 4096 * 4096, 2 * len / 3 / 4096 * 4096] {
        bytes[at..(at + 4096).min(len)].fill(0);
    }
    std::fs::write(&db, bytes).unwrap();
    let (clean, report) = aggregator_cmd(&fleet, "check");
    assert!(!clean, "check fails on a damaged store:\n{report}");
    assert!(
        report.contains("damaged") || report.contains("lost flushed data"),
        "{report}"
    );

    fleet.start_aggregator();
    let log = fleet.aggregator.as_ref().unwrap().log_text();
    assert!(log.contains("Store damaged"), "logged at error:\n{log}");
    let metrics = fleet.metrics_text().unwrap();
    assert!(
        metrics.contains("pitot_aggregator_store_damage_total 1"),
        "{metrics}"
    );
    assert!(audit_kinds(&fleet).contains(&"store.damaged".to_owned()));
    assert_eq!(healthz(&fleet).0, 200, "the fleet keeps running");
    let left = fleet.count("request.latency");
    assert!(left < 3000, "the damage cost data ({left})");

    // New data is counted on top of what is left.
    fleet.start_agent("gpu-a");
    send(&fleet, "b.txt", &latencies(2, 1000, 30.0));
    fleet.wait_for_count("request.latency", left + 1000, Duration::from_secs(30));
    assert!(fleet.stop_agent("gpu-a").success());
    stop_aggregator(&mut fleet);
    // The damage was said once: the next start is clean, and so is check.
    let (clean, report) = aggregator_cmd(&fleet, "check");
    assert!(clean, "{report}");

    // One flipped bit in sled's small conf file: rebuilt, nothing lost.
    let conf = store.join("conf");
    let mut bytes = std::fs::read(&conf).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&conf, bytes).unwrap();
    let (clean, report) = aggregator_cmd(&fleet, "check");
    assert!(!clean, "check names a damaged conf:\n{report}");
    fleet.start_aggregator();
    assert_eq!(
        fleet.count("request.latency"),
        left + 1000,
        "a damaged conf costs nothing"
    );
    assert!(audit_kinds(&fleet).contains(&"store.repaired".to_owned()));
    assert_eq!(healthz(&fleet).0, 200);
}

#[test]
fn the_spool_bound_is_what_it_takes_on_disk() {
    use std::os::unix::fs::MetadataExt as _;
    let mut fleet = Fleet::new(&["gpu-a"]);
    fleet.agent_env = vec![("PITOT_AGENT__SPOOL__MAX_BYTES".into(), "96KiB".into())];
    // No aggregator: everything stays in the spool.
    fleet.start_agent("gpu-a");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = fleet.udp_addr("gpu-a");
    // 100 timer series with a model tag, ~10 000 lines a second, for 15 s.
    for i in 0..5_000u64 {
        let mut datagram = String::new();
        for k in 0..30 {
            let s = (i * 30 + k) % 100;
            let v = (i % 97) as f64 * 1.37;
            datagram.push_str(&format!("lat.s{s}:{v}|ms|#model:m{}\n", s % 7));
        }
        sock.send_to(datagram.as_bytes(), addr).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    std::thread::sleep(Duration::from_secs(2));
    let spool = fleet.path("spool-gpu-a");
    let on_disk: u64 = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum();
    let log = fleet.agents["gpu-a"].log_text();
    assert!(log.contains("Batch spooled."), "{log}");
    assert!(
        on_disk <= 96 * 1024,
        "the spool takes {on_disk} bytes on disk, over its 96 KiB bound"
    );
    assert!(!log.contains("nothing left to coarsen"), "{log}");
    // The bound bit: far fewer files than intervals spooled (coarsened, nothing dropped).
    let spooled = log.matches("Batch spooled.").count();
    let files = batch_files(&spool).len();
    assert!(files * 3 < spooled, "{files} files for {spooled} intervals");

    // Delivered, coarsened batches stay exact over a range and the answer says they are there.
    fleet.start_aggregator();
    fleet.wait_for_count("lat.s1", 1500, Duration::from_secs(30));
    let report = fleet.quantiles("lat.s1", "0.5", "").unwrap();
    let spans = report["coarsened"]
        .as_array()
        .expect("coarsened spans listed");
    assert!(spans.iter().any(|s| s["agent"] == "gpu-a"), "{report}");
}
