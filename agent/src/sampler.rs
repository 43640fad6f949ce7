//! Host, process and GPU sampling (sysinfo, /proc, NVML) every `sample_interval`, recorded
//! into the interval's histograms (one value per sample) and counters.
//!
//! Series (OpenTelemetry system/process metric names where one exists):
//!
//! | series | kind | what |
//! |---|---|---|
//! | `system.cpu.utilization` | histogram | busy fraction of all cores, 0–1; on hosts with core classes also per `core_class` (`performance`, `efficiency`, `mid`: see `cores`) |
//! | `system.cpu.core.utilization` | histogram | every core's busy fraction (the spread across cores; `core_class` tag where known) |
//! | `system.memory.usage`, `system.memory.utilization` | histogram | bytes used, fraction |
//! | `system.paging.usage` | histogram | swap bytes used |
//! | `system.network.io` (`direction`) | counter | bytes received / transmitted |
//! | `system.disk.io` (`direction`) | counter | bytes read / written |
//! | `process.cpu.utilization` | histogram | per matched process, fraction of one core |
//! | `process.memory.usage` | histogram | per matched process, RSS bytes |
//! | `process.threads`, `process.open_file_descriptors` | histogram | per matched process |
//! | `process.count` | histogram | processes matched by the rule |
//! | `process.restarts` | counter | new pids for the rule after the first sample |
//! | `process.gpu.memory.usage` | histogram | per matched process and device, bytes |
//! | `process.gpu.allocated_time`, `process.gpu.busy_time`, `process.host.allocated_time` | counter | seconds per matched rule, for cost (`cost.rs`) |
//! | `gpu.utilization`, `gpu.memory.usage`, `gpu.memory.limit`, `gpu.power`, `gpu.temperature`, `gpu.clock.sm` | histogram | per device (`gpu` tag: index, `gpu_model`) |
//!
//! Process series carry `process:<rule name>` and the rule's tags. A rule that matches
//! nothing is logged once a minute, not at every sample.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pitot_shared::batch::SeriesData;
use pitot_shared::histogram::ValueHistogram;
use pitot_shared::series::SeriesKey;
use sysinfo::{Disks, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
use tracing::info;

use crate::config::ProcessRule;
use crate::gpu::Gpus;
use crate::samples::Samples;

/// How often an unmatched rule is logged.
const UNMATCHED_LOG_EVERY: Duration = Duration::from_secs(60);

/// What to sample.
pub struct Sampler {
    system: System,
    networks: Option<Networks>,
    disks: Option<Disks>,
    host: bool,
    rules: Vec<ProcessRule>,
    seen: Vec<Option<BTreeSet<u32>>>,
    unmatched_logged: Vec<Option<Instant>>,
    gpus: Option<Box<dyn Gpus>>,
    /// Where cgroup v2 is mounted (`/sys/fs/cgroup`).
    cgroup_root: std::path::PathBuf,
    /// Class of each CPU number (empty when all cores are alike).
    core_classes: BTreeMap<usize, &'static str>,
    /// The sampling period each sample stands for in the cost counters (`spawn` sets it).
    period: Duration,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("host", &self.host)
            .field("rules", &self.rules.len())
            .field("gpus", &self.gpus.is_some())
            .finish_non_exhaustive()
    }
}

/// A series' tags.
type Tags = Vec<(String, String)>;

fn value(name: &str, tags: &[(String, String)], v: f64) -> Option<(SeriesKey, SeriesData)> {
    let mut h = ValueHistogram::new();
    h.record(v).ok()?;
    let key = SeriesKey::new(name, tags.to_vec()).ok()?;
    Some((key, SeriesData::Histogram(h)))
}

fn counter(name: &str, tags: &[(String, String)], v: f64) -> Option<(SeriesKey, SeriesData)> {
    let key = SeriesKey::new(name, tags.to_vec()).ok()?;
    Some((key, SeriesData::Counter(v)))
}

fn direction(d: &str) -> Vec<(String, String)> {
    vec![("direction".to_owned(), d.to_owned())]
}

/// Pids listed in a cgroup (v2) directory, recursively.
fn cgroup_pids(dir: &Path, out: &mut BTreeSet<u32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                cgroup_pids(&e.path(), out);
            }
        }
    }
}

/// Refreshes what process rules read: memory, CPU, threads, and the command line once.
fn refresh_processes(system: &mut System) {
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing()
            .with_memory()
            .with_cpu()
            .with_tasks()
            .with_cmd(UpdateKind::OnlyIfNotSet),
    );
}

fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

impl Sampler {
    /// A sampler for the host (when `host`), the process `rules` and `gpus`; `Err` when the
    /// system cannot be read at all.
    pub fn new(
        host: bool,
        rules: Vec<ProcessRule>,
        gpus: Option<Box<dyn Gpus>>,
    ) -> Result<Self, String> {
        let n = rules.len();
        Ok(Sampler {
            system: System::new().map_err(|e| format!("cannot read the system: {e:?}"))?,
            networks: host
                .then(|| Networks::new_with_refreshed_list().ok())
                .flatten(),
            disks: host
                .then(|| Disks::new_with_refreshed_list().ok())
                .flatten(),
            host,
            rules,
            seen: vec![None; n],
            unmatched_logged: vec![None; n],
            gpus,
            cgroup_root: "/sys/fs/cgroup".into(),
            core_classes: if host {
                cores::core_classes(Path::new("/sys"))
            } else {
                BTreeMap::new()
            },
            period: Duration::from_secs(1),
        })
    }

    /// The pids a rule matches now.
    fn matches(&self, rule: &ProcessRule) -> BTreeSet<u32> {
        let mut pids = BTreeSet::new();
        let by_name_only = rule.cmdline.is_none()
            && rule.pid_file.is_none()
            && rule.systemd_unit.is_none()
            && rule.cgroup.is_none();
        if by_name_only || rule.cmdline.is_some() {
            for (pid, p) in self.system.processes() {
                // Threads are listed as processes by sysinfo on Linux; count processes only.
                if p.thread_kind().is_some() {
                    continue;
                }
                let hit = match &rule.cmdline {
                    Some(pattern) => {
                        let cmd: Vec<String> = p
                            .cmd()
                            .iter()
                            .map(|a| a.to_string_lossy().into_owned())
                            .collect();
                        cmd.join(" ").contains(pattern.as_str())
                    }
                    None => p.name().to_string_lossy() == rule.name.as_str(),
                };
                if hit {
                    pids.insert(pid.as_u32());
                }
            }
        }
        if let Some(file) = &rule.pid_file
            && let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse::<u32>()
            && self.system.process(Pid::from_u32(pid)).is_some()
        {
            pids.insert(pid);
        }
        if let Some(unit) = &rule.systemd_unit {
            for slice in ["system.slice", "user.slice"] {
                cgroup_pids(&self.cgroup_root.join(slice).join(unit), &mut pids);
            }
        }
        if let Some(cg) = &rule.cgroup {
            cgroup_pids(
                &self.cgroup_root.join(cg.trim_start_matches('/')),
                &mut pids,
            );
        }
        pids
    }

    /// Takes one sample of everything into `samples`.
    pub fn sample(&mut self, samples: &Samples) {
        let mut out: Vec<(SeriesKey, SeriesData)> = Vec::new();
        if self.host {
            self.system.refresh_cpu_usage();
            self.system.refresh_memory();
            out.extend(value(
                "system.cpu.utilization",
                &[],
                f64::from(self.system.global_cpu_usage()) / 100.0,
            ));
            let mut per_class: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
            for (i, cpu) in self.system.cpus().iter().enumerate() {
                let busy = f64::from(cpu.usage()) / 100.0;
                let class = self
                    .core_classes
                    .get(&cores::cpu_number(cpu.name()).unwrap_or(i))
                    .copied();
                let tags: Vec<(String, String)> = class
                    .map(|c| vec![("core_class".to_owned(), c.to_owned())])
                    .unwrap_or_default();
                out.extend(value("system.cpu.core.utilization", &tags, busy));
                if let Some(c) = class {
                    let e = per_class.entry(c).or_default();
                    e.0 += busy;
                    e.1 += 1;
                }
            }
            for (class, (sum, n)) in per_class {
                out.extend(value(
                    "system.cpu.utilization",
                    &[("core_class".to_owned(), class.to_owned())],
                    sum / f64::from(n.max(1)),
                ));
            }
            let used = self.system.used_memory() as f64;
            out.extend(value("system.memory.usage", &[], used));
            let total = self.system.total_memory() as f64;
            if total > 0.0 {
                out.extend(value("system.memory.utilization", &[], used / total));
            }
            out.extend(value(
                "system.paging.usage",
                &[],
                self.system.used_swap() as f64,
            ));
            if let Some(n) = &mut self.networks {
                n.refresh(true);
                let (rx, tx) = n
                    .iter()
                    .filter(|(name, _)| *name != "lo")
                    .fold((0u64, 0u64), |(r, t), (_, d)| {
                        (r + d.received(), t + d.transmitted())
                    });
                out.extend(counter(
                    "system.network.io",
                    &direction("receive"),
                    rx as f64,
                ));
                out.extend(counter(
                    "system.network.io",
                    &direction("transmit"),
                    tx as f64,
                ));
            }
            if let Some(d) = &mut self.disks {
                d.refresh(true);
                let (r, w) = d.iter().fold((0u64, 0u64), |(r, w), disk| {
                    let u = disk.usage();
                    (r + u.read_bytes, w + u.written_bytes)
                });
                out.extend(counter("system.disk.io", &direction("read"), r as f64));
                out.extend(counter("system.disk.io", &direction("write"), w as f64));
            }
        }
        let gpu_processes = self
            .gpus
            .as_mut()
            .map(|g| g.processes())
            .unwrap_or_default();
        let devices = self.gpus.as_mut().map(|g| g.devices()).unwrap_or_default();
        // Each rule's tags and pids at this sample, for the cost counters.
        let mut held: Vec<(Tags, BTreeSet<u32>)> = Vec::new();
        if !self.rules.is_empty() {
            refresh_processes(&mut self.system);
            for i in 0..self.rules.len() {
                let pids = self.matches(&self.rules[i]);
                let rule = &self.rules[i];
                let mut tags = rule.tags.clone();
                tags.retain(|(k, _)| k != "process");
                tags.push(("process".to_owned(), rule.name.clone()));
                if pids.is_empty() {
                    let due =
                        self.unmatched_logged[i].is_none_or(|t| t.elapsed() >= UNMATCHED_LOG_EVERY);
                    if due {
                        info!(rule = %rule.name, "No process matches this [[process]] rule (logged once a minute).");
                        self.unmatched_logged[i] = Some(Instant::now());
                    }
                }
                out.extend(value("process.count", &tags, pids.len() as f64));
                if let Some(before) = &self.seen[i] {
                    let new = pids.iter().filter(|p| !before.contains(p)).count();
                    if new > 0 {
                        out.extend(counter("process.restarts", &tags, new as f64));
                    }
                }
                for pid in &pids {
                    let Some(p) = self.system.process(Pid::from_u32(*pid)) else {
                        continue;
                    };
                    out.extend(value(
                        "process.cpu.utilization",
                        &tags,
                        f64::from(p.cpu_usage()) / 100.0,
                    ));
                    out.extend(value("process.memory.usage", &tags, p.memory() as f64));
                    if let Some(threads) = p.tasks() {
                        out.extend(value(
                            "process.threads",
                            &tags,
                            (threads.len().max(1)) as f64,
                        ));
                    }
                    if let Some(fds) = open_fds(*pid) {
                        out.extend(value("process.open_file_descriptors", &tags, fds as f64));
                    }
                    for g in gpu_processes.iter().filter(|g| g.pid == *pid) {
                        let mut t = tags.clone();
                        t.push(("gpu".to_owned(), g.device.to_string()));
                        out.extend(value("process.gpu.memory.usage", &t, g.memory_used as f64));
                    }
                }
                held.push((tags, pids.clone()));
                self.seen[i] = Some(pids);
            }
            let rules: Vec<cost::RuleSample<'_>> = held
                .iter()
                .map(|(tags, pids)| cost::RuleSample { tags, pids })
                .collect();
            out.extend(cost::attribute(
                self.period.as_secs_f64(),
                &rules,
                &gpu_processes,
                &devices,
            ));
        }
        {
            for d in devices {
                let tags = vec![
                    ("gpu".to_owned(), d.index.to_string()),
                    ("gpu_model".to_owned(), d.name.clone()),
                ];
                let readings = [
                    ("gpu.utilization", d.utilization),
                    ("gpu.memory.usage", d.memory_used.map(|b| b as f64)),
                    ("gpu.memory.limit", d.memory_total.map(|b| b as f64)),
                    ("gpu.power", d.power_watts),
                    ("gpu.temperature", d.temperature_c),
                    ("gpu.clock.sm", d.sm_clock_mhz),
                ];
                for (name, v) in readings {
                    if let Some(v) = v {
                        out.extend(value(name, &tags, v));
                    }
                }
            }
        }
        for (k, d) in out {
            samples.record(k, d);
        }
    }
}

/// Starts the sampling thread: every `period` until `stop` is set.
pub fn spawn(
    mut sampler: Sampler,
    period: Duration,
    samples: Arc<Samples>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pitot-sampler".into())
        .spawn(move || {
            sampler.period = period;
            // sysinfo's CPU usage is a difference between two refreshes: take a baseline.
            sampler.system.refresh_cpu_usage();
            refresh_processes(&mut sampler.system);
            let mut next = Instant::now() + period;
            loop {
                while !stop.load(Ordering::Relaxed) && Instant::now() < next {
                    std::thread::sleep(
                        next.saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(100)),
                    );
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                next += period;
                sampler.sample(&samples);
            }
        })
}

/// The GPU source for a config: NVML when wanted and present, else none (logged once).
pub fn gpus(wanted: bool) -> Option<Box<dyn Gpus>> {
    if !wanted {
        return None;
    }
    if let Some(path) = std::env::var_os("PITOT_FAKE_GPUS") {
        let path = std::path::PathBuf::from(path);
        match crate::gpu::FakeGpus::load(&path) {
            Ok(fake) => {
                tracing::warn!(file = %path.display(), "GPU readings come from PITOT_FAKE_GPUS, not NVML (tests only).");
                return Some(Box::new(fake));
            }
            Err(why) => {
                tracing::warn!(%why, "PITOT_FAKE_GPUS is set but unreadable; no GPU sampling.");
                return None;
            }
        }
    }
    match crate::gpu::open() {
        Ok(nvml) => {
            info!("GPU sampling through NVML.");
            Some(Box::new(nvml))
        }
        Err(why) => {
            info!(%why, "No GPU sampling.");
            None
        }
    }
}

mod cores;
mod cost;
#[cfg(test)]
mod tests;

/// Per-rule state and the cgroup mount, for tests.
#[cfg(test)]
impl Sampler {
    fn seen_pids(&self, rule: usize) -> Option<&BTreeSet<u32>> {
        self.seen.get(rule).and_then(Option::as_ref)
    }

    fn with_cgroup_root(mut self, root: &Path) -> Self {
        self.cgroup_root = root.to_owned();
        self
    }

    fn with_sys_root(mut self, root: &Path) -> Self {
        self.core_classes = cores::core_classes(root);
        self
    }
}
