//! Sampling a child process this test starts (known memory, a busy core), matched by command
//! line and by pid file; restarts; the host; GPUs through the fake.

use std::collections::BTreeMap;
use std::process::{Child, Command};

use super::*;
use crate::gpu::{FakeGpus, GpuProcess, GpuSample};
use crate::ingest::{Drained, IngestLimits, IngestShared};

/// A child process killed when dropped (also when an assertion fails).
struct Burner(Child);

impl Drop for Burner {
    fn drop(&mut self) {
        let _gone = self.0.kill();
        let _reaped = self.0.wait();
    }
}

/// A Python child holding ~64 MiB and spinning one core, with `marker` in its command line.
fn burner(marker: &str) -> Burner {
    Burner(Command::new("python3")
        .args([
            "-c",
            "import sys, time\nblob = bytearray(64 * 1024 * 1024)\nfor i in range(0, len(blob), 4096): blob[i] = 1\nwhile True: pass",
            marker,
        ])
        .spawn()
        .expect("python3"))
}

fn samples() -> Arc<Samples> {
    Samples::new(IngestShared::new(IngestLimits {
        host: "test-host".into(),
        max_series: 1_000,
        max_tags: 16,
        max_tag_bytes: 200,
        interval_ms: 10_000,
    }))
}

/// Everything recorded, by series name and then tags.
fn taken(s: &Samples) -> BTreeMap<String, Vec<(SeriesKey, SeriesData)>> {
    let mut out = Drained::new();
    s.drain(0, &mut out);
    let mut by_name: BTreeMap<String, Vec<(SeriesKey, SeriesData)>> = BTreeMap::new();
    for (k, d) in out.remove(&0).unwrap_or_default() {
        by_name.entry(k.name().to_owned()).or_default().push((k, d));
    }
    by_name
}

fn histogram<'a>(
    m: &'a BTreeMap<String, Vec<(SeriesKey, SeriesData)>>,
    name: &str,
    process: &str,
) -> &'a ValueHistogram {
    let list = m
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", m.keys()));
    match list
        .iter()
        .find(|(k, _)| k.tag("process") == Some(process))
        .map(|(_, d)| d)
    {
        Some(SeriesData::Histogram(h)) => h,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn a_child_process_is_measured_by_command_line_and_pid_file() {
    let marker = format!("pitot-sampler-test-{}", std::process::id());
    let child = burner(&marker);
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("child.pid");
    std::fs::write(&pid_file, child.0.id().to_string()).expect("pid file");
    let rules = vec![
        ProcessRule {
            name: "by-cmdline".into(),
            cmdline: Some(marker.clone()),
            tags: vec![("model".into(), "llama3".into())],
            ..ProcessRule::default()
        },
        ProcessRule {
            name: "by-pidfile".into(),
            pid_file: Some(pid_file.clone()),
            ..ProcessRule::default()
        },
        ProcessRule {
            name: "nothing".into(),
            cmdline: Some("no process has this in its command line 7f3a".into()),
            ..ProcessRule::default()
        },
    ];
    let gpus = FakeGpus {
        devices: vec![GpuSample {
            index: 0,
            name: "Fake H100".into(),
            utilization: Some(0.75),
            memory_used: Some(10 << 30),
            memory_total: Some(80 << 30),
            power_watts: Some(350.5),
            temperature_c: Some(61.0),
            sm_clock_mhz: Some(1980.0),
        }],
        processes: vec![GpuProcess {
            device: 0,
            pid: child.0.id(),
            memory_used: 4 << 30,
            sm_utilization: None,
        }],
    };
    let mut sampler = Sampler::new(true, rules, Some(Box::new(gpus))).expect("sampler");
    let s = samples();
    // Let the child allocate and spin, then sample twice a second apart (CPU is a difference).
    std::thread::sleep(Duration::from_millis(1500));
    sampler.system.refresh_cpu_usage();
    sampler.sample(&s);
    std::thread::sleep(Duration::from_secs(1));
    let _first = taken(&s);
    sampler.sample(&s);
    let m = taken(&s);

    for rule in ["by-cmdline", "by-pidfile"] {
        let rss = histogram(&m, "process.memory.usage", rule);
        assert!(
            rss.max().unwrap_or(0.0) >= 60.0 * 1024.0 * 1024.0,
            "{rule}: {rss:?}"
        );
        let cpu = histogram(&m, "process.cpu.utilization", rule);
        assert!(
            cpu.max().unwrap_or(0.0) > 0.5,
            "{rule}: a spinning child, {cpu:?}"
        );
        assert_eq!(histogram(&m, "process.count", rule).max(), Some(1.0));
        assert!(histogram(&m, "process.threads", rule).max().unwrap_or(0.0) >= 1.0);
        assert!(
            histogram(&m, "process.open_file_descriptors", rule)
                .max()
                .unwrap_or(0.0)
                >= 3.0
        );
        let gpu = histogram(&m, "process.gpu.memory.usage", rule);
        assert_eq!(gpu.max(), Some((4u64 << 30) as f64));
        // Both rules hold the device: each is charged half of the one-second sample.
        let held = m["process.gpu.allocated_time"]
            .iter()
            .find(|(k, _)| k.tag("process") == Some(rule))
            .map(|(k, d)| (k.tag("gpu_model").map(str::to_owned), d.clone()));
        assert_eq!(
            held,
            Some((Some("Fake H100".to_owned()), SeriesData::Counter(0.5))),
            "{rule}"
        );
    }
    let tagged = &m["process.memory.usage"]
        .iter()
        .find(|(k, _)| k.tag("process") == Some("by-cmdline"))
        .expect("series")
        .0;
    assert_eq!(tagged.tag("model"), Some("llama3"));
    assert_eq!(tagged.tag("host"), Some("test-host"));
    assert_eq!(histogram(&m, "process.count", "nothing").max(), Some(0.0));

    // Host series and the fake GPU's.
    assert!(m.contains_key("system.cpu.utilization"));
    assert!(m.contains_key("system.cpu.core.utilization"));
    assert!(m.contains_key("system.memory.usage"));
    let power = match &m["gpu.power"][0] {
        (k, SeriesData::Histogram(h)) => {
            assert_eq!(k.tag("gpu"), Some("0"));
            assert_eq!(k.tag("gpu_model"), Some("Fake H100"));
            h.max()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(power, Some(350.5));

    // A restart: the child dies and a new one takes its place.
    let old = child.0.id();
    drop(child);
    let replacement = burner(&marker);
    std::fs::write(&pid_file, replacement.0.id().to_string()).expect("pid file");
    std::thread::sleep(Duration::from_millis(300));
    sampler.sample(&s);
    let m = taken(&s);
    for rule in ["by-cmdline", "by-pidfile"] {
        let restarts = m["process.restarts"]
            .iter()
            .find(|(k, _)| k.tag("process") == Some(rule))
            .map(|(_, d)| d.clone());
        assert_eq!(restarts, Some(SeriesData::Counter(1.0)), "{rule}");
    }
    assert_eq!(sampler.seen_pids(0).map(|p| p.contains(&old)), Some(false));
    drop(replacement);
}

#[test]
fn systemd_units_and_cgroups_match_through_cgroup_procs() {
    let child = burner(&format!("pitot-cgroup-test-{}", std::process::id()));
    let pid = child.0.id();
    // A cgroup v2 tree as systemd and a container runtime lay it out, holding the child.
    let root = tempfile::tempdir().expect("tempdir");
    let unit = root.path().join("system.slice/vllm.service");
    let pod = root.path().join("kubepods.slice/pod-1/ctr-a");
    for dir in [&unit, &pod] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(unit.join("cgroup.procs"), format!("{pid}\n")).expect("write");
    std::fs::write(root.path().join("kubepods.slice/pod-1/cgroup.procs"), "").expect("write");
    std::fs::write(pod.join("cgroup.procs"), format!("{pid}\n")).expect("write");
    let rules = vec![
        ProcessRule {
            name: "by-unit".into(),
            systemd_unit: Some("vllm.service".into()),
            ..ProcessRule::default()
        },
        ProcessRule {
            name: "by-cgroup".into(),
            // The pod's cgroup: its containers' processes are found below it.
            cgroup: Some("/kubepods.slice/pod-1".into()),
            ..ProcessRule::default()
        },
        ProcessRule {
            name: "other-unit".into(),
            systemd_unit: Some("tgi.service".into()),
            ..ProcessRule::default()
        },
    ];
    let mut sampler = Sampler::new(false, rules, None)
        .expect("sampler")
        .with_cgroup_root(root.path());
    let s = samples();
    sampler.sample(&s);
    let m = taken(&s);
    assert_eq!(histogram(&m, "process.count", "by-unit").max(), Some(1.0));
    assert_eq!(histogram(&m, "process.count", "by-cgroup").max(), Some(1.0));
    assert_eq!(
        histogram(&m, "process.count", "other-unit").max(),
        Some(0.0)
    );
    assert!(
        histogram(&m, "process.memory.usage", "by-unit")
            .max()
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(
        !m.contains_key("system.cpu.utilization"),
        "host sampling was off"
    );
}

#[test]
fn hybrid_hosts_get_cpu_utilization_per_core_class() {
    // This machine's real CPUs, classed by a sysfs tree in the Intel-hybrid shape: cpu0 a
    // performance core, every other one an efficiency core.
    let sys = tempfile::tempdir().expect("tempdir");
    let n = System::new()
        .map(|mut s| {
            s.refresh_cpu_usage();
            s.cpus().len()
        })
        .expect("system");
    assert!(n >= 1);
    for (pmu, list) in [
        ("cpu_core", "0".to_owned()),
        (
            "cpu_atom",
            if n > 1 {
                format!("1-{}", n - 1)
            } else {
                String::new()
            },
        ),
    ] {
        let d = sys.path().join("devices").join(pmu);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("cpus"), format!("{list}\n")).expect("write");
    }
    let mut sampler = Sampler::new(true, vec![], None)
        .expect("sampler")
        .with_sys_root(sys.path());
    let s = samples();
    sampler.system.refresh_cpu_usage();
    std::thread::sleep(Duration::from_millis(300));
    sampler.sample(&s);
    let m = taken(&s);
    let class = |name: &str, c: &str| {
        m[name]
            .iter()
            .filter(|(k, _)| k.tag("core_class") == Some(c))
            .map(|(_, d)| match d {
                SeriesData::Histogram(h) => h.count(),
                other => panic!("{other:?}"),
            })
            .sum::<u64>()
    };
    assert_eq!(class("system.cpu.utilization", "performance"), 1);
    assert_eq!(class("system.cpu.core.utilization", "performance"), 1);
    if n > 1 {
        assert_eq!(class("system.cpu.utilization", "efficiency"), 1);
        assert_eq!(
            class("system.cpu.core.utilization", "efficiency"),
            n as u64 - 1
        );
    }
    // The untagged total is still there, once.
    let total: Vec<_> = m["system.cpu.utilization"]
        .iter()
        .filter(|(k, _)| k.tag("core_class").is_none())
        .collect();
    assert_eq!(total.len(), 1);
}
