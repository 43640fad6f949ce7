//! What each watched process rule holds, for cost: per sample, counters of seconds.
//!
//! | series | meaning |
//! |---|---|
//! | `process.gpu.allocated_time` | seconds a GPU was held by the rule's processes (`gpu`, `gpu_model` tags); a device held by several rules is split equally among them |
//! | `process.gpu.busy_time` | seconds of that GPU's compute the rule used: NVML's per-process SM use where the device reports it (`attribution:process`), else the device's utilisation split like the allocation (`attribution:device`) |
//! | `process.host.allocated_time` | seconds of the host, split equally among the rules with a live process at the sample |
//!
//! Each sample stands for one sampling period (the configured `sample_interval`), so a day of
//! samples adds up to a day however late a sample ran. A process matched by two rules counts
//! for both.

use std::collections::{BTreeMap, BTreeSet};

use pitot_shared::batch::SeriesData;
use pitot_shared::series::SeriesKey;

use crate::gpu::{GpuProcess, GpuSample};

/// One rule at one sample: its tags (with `process:<rule>`) and the pids it matched.
pub(super) struct RuleSample<'a> {
    /// Tags of the rule's series.
    pub(super) tags: &'a [(String, String)],
    /// Pids matched now.
    pub(super) pids: &'a BTreeSet<u32>,
}

fn counter(name: &str, tags: Vec<(String, String)>, v: f64) -> Option<(SeriesKey, SeriesData)> {
    let key = SeriesKey::new(name, tags).ok()?;
    Some((key, SeriesData::Counter(v)))
}

/// The cost counters of one sample of `period_s` seconds.
pub(super) fn attribute(
    period_s: f64,
    rules: &[RuleSample<'_>],
    processes: &[GpuProcess],
    devices: &[GpuSample],
) -> Vec<(SeriesKey, SeriesData)> {
    let mut out = Vec::new();
    let live: Vec<&RuleSample<'_>> = rules.iter().filter(|r| !r.pids.is_empty()).collect();
    for r in &live {
        out.extend(counter(
            "process.host.allocated_time",
            r.tags.to_vec(),
            period_s / live.len() as f64,
        ));
    }
    let mut per_device: BTreeMap<u32, Vec<&GpuProcess>> = BTreeMap::new();
    for p in processes {
        per_device.entry(p.device).or_default().push(p);
    }
    for (device, procs) in per_device {
        let info = devices.iter().find(|d| d.index == device);
        let holders: Vec<(&RuleSample<'_>, Vec<&GpuProcess>)> = rules
            .iter()
            .map(|r| {
                let mine: Vec<&GpuProcess> = procs
                    .iter()
                    .copied()
                    .filter(|p| r.pids.contains(&p.pid))
                    .collect();
                (r, mine)
            })
            .filter(|(_, mine)| !mine.is_empty())
            .collect();
        let share = 1.0 / holders.len().max(1) as f64;
        for (r, mine) in holders {
            let mut tags = r.tags.to_vec();
            tags.push(("gpu".to_owned(), device.to_string()));
            if let Some(d) = info {
                tags.push(("gpu_model".to_owned(), d.name.clone()));
            }
            out.extend(counter(
                "process.gpu.allocated_time",
                tags.clone(),
                period_s * share,
            ));
            let per_process: Option<f64> = mine.iter().map(|p| p.sm_utilization).sum();
            let (busy, how) = match per_process {
                Some(u) => (Some(period_s * u.clamp(0.0, 1.0)), "process"),
                None => (
                    info.and_then(|d| d.utilization)
                        .map(|u| period_s * u.clamp(0.0, 1.0) * share),
                    "device",
                ),
            };
            if let Some(b) = busy {
                tags.push(("attribution".to_owned(), how.to_owned()));
                out.extend(counter("process.gpu.busy_time", tags, b));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(rule: &str) -> Vec<(String, String)> {
        vec![
            ("model".to_owned(), rule.to_owned()),
            ("process".to_owned(), rule.to_owned()),
        ]
    }

    fn find(out: &[(SeriesKey, SeriesData)], name: &str, rule: &str, gpu: Option<&str>) -> f64 {
        out.iter()
            .filter(|(k, _)| {
                k.name() == name && k.tag("process") == Some(rule) && k.tag("gpu") == gpu
            })
            .map(|(_, d)| match d {
                SeriesData::Counter(c) => *c,
                other => panic!("{other:?}"),
            })
            .sum()
    }

    fn gpu(index: u32, utilization: f64) -> GpuSample {
        GpuSample {
            index,
            name: "Fake H100".into(),
            utilization: Some(utilization),
            ..GpuSample::default()
        }
    }

    fn held(device: u32, pid: u32, sm: Option<f64>) -> GpuProcess {
        GpuProcess {
            device,
            pid,
            memory_used: 1 << 30,
            sm_utilization: sm,
        }
    }

    #[test]
    fn a_shared_device_is_split_and_per_process_use_wins_where_reported() {
        let (a_tags, b_tags, idle_tags) = (tags("a"), tags("b"), tags("idle"));
        let (a_pids, b_pids, none) = (
            BTreeSet::from([10, 11]),
            BTreeSet::from([20]),
            BTreeSet::new(),
        );
        let rules = [
            RuleSample {
                tags: &a_tags,
                pids: &a_pids,
            },
            RuleSample {
                tags: &b_tags,
                pids: &b_pids,
            },
            RuleSample {
                tags: &idle_tags,
                pids: &none,
            },
        ];
        // GPU 0: a alone, two processes, per-process use reported (0.25 + 0.5).
        // GPU 1: a and b share it, no per-process use: device utilisation 0.8 split.
        let procs = [
            held(0, 10, Some(0.25)),
            held(0, 11, Some(0.5)),
            held(1, 10, None),
            held(1, 20, None),
        ];
        let out = attribute(2.0, &rules, &procs, &[gpu(0, 0.9), gpu(1, 0.8)]);
        assert_eq!(find(&out, "process.host.allocated_time", "a", None), 1.0);
        assert_eq!(find(&out, "process.host.allocated_time", "b", None), 1.0);
        assert_eq!(find(&out, "process.host.allocated_time", "idle", None), 0.0);
        assert_eq!(
            find(&out, "process.gpu.allocated_time", "a", Some("0")),
            2.0
        );
        assert_eq!(
            find(&out, "process.gpu.allocated_time", "a", Some("1")),
            1.0
        );
        assert_eq!(
            find(&out, "process.gpu.allocated_time", "b", Some("1")),
            1.0
        );
        assert_eq!(find(&out, "process.gpu.busy_time", "a", Some("0")), 1.5);
        assert_eq!(find(&out, "process.gpu.busy_time", "a", Some("1")), 0.8);
        assert_eq!(find(&out, "process.gpu.busy_time", "b", Some("1")), 0.8);
        let how = |rule: &str, gpu: &str| {
            out.iter()
                .find(|(k, _)| {
                    k.name() == "process.gpu.busy_time"
                        && k.tag("process") == Some(rule)
                        && k.tag("gpu") == Some(gpu)
                })
                .and_then(|(k, _)| k.tag("attribution").map(str::to_owned))
        };
        assert_eq!(how("a", "0").as_deref(), Some("process"));
        assert_eq!(how("b", "1").as_deref(), Some("device"));
        assert!(out.iter().all(|(k, _)| k.tag("process") != Some("idle")));
    }
}
