//! CPU core classes from sysfs, for `system.cpu.utilization{core_class}` on hosts that mix
//! core types. sysinfo does not tell them apart; the kernel does:
//!
//! - Intel hybrid parts (Alder Lake and later) register two PMUs, `/sys/devices/cpu_core` and
//!   `/sys/devices/cpu_atom`, each with a `cpus` list: `performance` and `efficiency`.
//! - Arm big.LITTLE / DynamIQ parts give each core a `cpu_capacity` (the biggest is 1024):
//!   the highest capacity is `performance`, the lowest `efficiency`, any in between `mid`.
//!
//! On every other host all cores are alike and there are no classes (the untagged
//! `system.cpu.utilization` is the one class).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Highest CPU number accepted from a list (the kernel's own limit is 8192).
const MAX_CPU: usize = 8_192;
/// Longest sysfs file read here.
const MAX_FILE: u64 = 64 * 1024;

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// A kernel CPU list (`0-3,8,10-11`); `None` when malformed or past [`MAX_CPU`].
pub(super) fn parse_cpulist(text: &str) -> Option<BTreeSet<usize>> {
    let mut out = BTreeSet::new();
    let text = text.trim();
    if text.is_empty() {
        return Some(out);
    }
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let v = part.trim().parse::<usize>().ok()?;
                (v, v)
            }
        };
        if lo > hi || hi > MAX_CPU {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

/// The class of each CPU number under the sysfs root `sys` (normally `/sys`); empty when the
/// host's cores are all alike or the files are absent.
pub(super) fn core_classes(sys: &Path) -> BTreeMap<usize, &'static str> {
    let list = |pmu: &str| {
        read_small(&sys.join("devices").join(pmu).join("cpus")).and_then(|t| parse_cpulist(&t))
    };
    if let (Some(p), Some(e)) = (list("cpu_core"), list("cpu_atom")) {
        let mut out = BTreeMap::new();
        out.extend(p.into_iter().map(|c| (c, "performance")));
        out.extend(e.into_iter().map(|c| (c, "efficiency")));
        return out;
    }
    let mut capacity = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(sys.join("devices/system/cpu")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_prefix("cpu")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n <= MAX_CPU)
            else {
                continue;
            };
            if let Some(c) = read_small(&e.path().join("cpu_capacity"))
                .and_then(|t| t.trim().parse::<u64>().ok())
            {
                capacity.insert(n, c);
            }
        }
    }
    let distinct: BTreeSet<u64> = capacity.values().copied().collect();
    let (Some(low), Some(high)) = (distinct.first().copied(), distinct.last().copied()) else {
        return BTreeMap::new();
    };
    if low == high {
        return BTreeMap::new();
    }
    capacity
        .into_iter()
        .map(|(n, c)| {
            let class = if c == high {
                "performance"
            } else if c == low {
                "efficiency"
            } else {
                "mid"
            };
            (n, class)
        })
        .collect()
}

/// The CPU number in a sysinfo CPU name (`cpu12` → 12).
pub(super) fn cpu_number(name: &str) -> Option<usize> {
    name.strip_prefix("cpu")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn cpu_lists_parse_and_refuse_garbage() {
        let set = |v: &[usize]| v.iter().copied().collect::<BTreeSet<usize>>();
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n"),
            Some(set(&[0, 1, 2, 3, 8, 10, 11]))
        );
        assert_eq!(parse_cpulist(""), Some(set(&[])));
        for bad in ["3-1", "a", "0-", "1,,2", "0-99999999999", "0-9000"] {
            assert_eq!(parse_cpulist(bad), None, "{bad}");
        }
    }

    #[test]
    fn intel_hybrid_pmus_name_the_classes() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "devices/cpu_core/cpus", "0-3\n");
        write(dir.path(), "devices/cpu_atom/cpus", "4-7\n");
        let c = core_classes(dir.path());
        assert_eq!(c.len(), 8);
        assert_eq!(c[&0], "performance");
        assert_eq!(c[&7], "efficiency");
    }

    #[test]
    fn arm_capacities_name_the_classes_and_equal_ones_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (n, cap) in [(0, 1024), (1, 1024), (2, 512), (3, 160)] {
            write(
                dir.path(),
                &format!("devices/system/cpu/cpu{n}/cpu_capacity"),
                &format!("{cap}\n"),
            );
        }
        // Not a core: ignored.
        write(dir.path(), "devices/system/cpu/cpufreq/cpu_capacity", "9\n");
        let c = core_classes(dir.path());
        assert_eq!(
            c.into_iter().collect::<Vec<_>>(),
            vec![
                (0, "performance"),
                (1, "performance"),
                (2, "mid"),
                (3, "efficiency")
            ]
        );
        let same = tempfile::tempdir().expect("tempdir");
        for n in 0..4 {
            write(
                same.path(),
                &format!("devices/system/cpu/cpu{n}/cpu_capacity"),
                "1024\n",
            );
        }
        assert!(core_classes(same.path()).is_empty());
        assert!(core_classes(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn sysinfo_names_carry_the_cpu_number() {
        assert_eq!(cpu_number("cpu12"), Some(12));
        assert_eq!(cpu_number("12"), None);
    }
}
