//! GPU sampling through NVML, behind the small [`Gpus`] trait so the sampler can be tested on
//! machines without a GPU ([`FakeGpus`]). [`Nvml`] (nvml-wrapper, which loads
//! `libnvidia-ml.so` at run time) is the real implementation and the default; where the
//! library or a GPU is absent, [`open`] says why and the agent samples no GPU series.
//!
//! `PITOT_FAKE_GPUS=<file.toml>` makes the agent read fixed devices and processes from a file
//! instead ([`FakeGpus::load`]): the end-to-end cost test runs the real binary on a machine
//! without a GPU through it. The sampler and everything after it are the same code as on NVML.

use std::collections::BTreeMap;

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;

/// One device's readings; a reading the device does not support is `None`.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSample {
    /// NVML index.
    pub index: u32,
    /// Product name.
    #[serde(default)]
    pub name: String,
    /// Busy fraction of the last sample period, 0–1.
    #[serde(default)]
    pub utilization: Option<f64>,
    /// Memory in use, bytes.
    #[serde(default)]
    pub memory_used: Option<u64>,
    /// Memory in all, bytes.
    #[serde(default)]
    pub memory_total: Option<u64>,
    /// Board power, watts.
    #[serde(default)]
    pub power_watts: Option<f64>,
    /// Core temperature, °C.
    #[serde(default)]
    pub temperature_c: Option<f64>,
    /// SM clock, MHz.
    #[serde(default)]
    pub sm_clock_mhz: Option<f64>,
}

/// GPU memory a process holds on one device, and its share of the device's compute when
/// the driver reports per-process use.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuProcess {
    /// Device index.
    pub device: u32,
    /// Process id.
    pub pid: u32,
    /// Bytes.
    pub memory_used: u64,
    /// SM (compute) busy fraction of the device this process accounted for, 0–1: NVML's
    /// per-process utilisation samples; `None` where the device does not report them.
    #[serde(default)]
    pub sm_utilization: Option<f64>,
}

/// What the sampler needs from a GPU library.
pub trait Gpus: Send {
    /// Every device's readings.
    fn devices(&mut self) -> Vec<GpuSample>;
    /// Compute and graphics processes and their memory, on every device.
    fn processes(&mut self) -> Vec<GpuProcess>;
}

/// NVML, and the newest per-process utilisation timestamp seen per device (NVML returns the
/// samples taken since the one passed).
pub struct Nvml(nvml_wrapper::Nvml, BTreeMap<u32, u64>);

impl std::fmt::Debug for Nvml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nvml")
    }
}

/// Opens NVML: `Err` says why there will be no GPU series (no library, no driver, no device).
pub fn open() -> Result<Nvml, String> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML unavailable: {e}"))?;
    match nvml.device_count() {
        Ok(0) => Err("NVML found no GPU".into()),
        Ok(_) => Ok(Nvml(nvml, BTreeMap::new())),
        Err(e) => Err(format!("NVML cannot count devices: {e}")),
    }
}

impl Gpus for Nvml {
    fn devices(&mut self) -> Vec<GpuSample> {
        let count = self.0.device_count().unwrap_or(0);
        let mut out = Vec::new();
        for index in 0..count {
            let Ok(d) = self.0.device_by_index(index) else {
                continue;
            };
            let memory = d.memory_info().ok();
            out.push(GpuSample {
                index,
                name: d.name().unwrap_or_default(),
                utilization: d.utilization_rates().ok().map(|u| f64::from(u.gpu) / 100.0),
                memory_used: memory.as_ref().map(|m| m.used),
                memory_total: memory.as_ref().map(|m| m.total),
                power_watts: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                temperature_c: d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
                sm_clock_mhz: d.clock_info(Clock::SM).ok().map(f64::from),
            });
        }
        out
    }

    fn processes(&mut self) -> Vec<GpuProcess> {
        let count = self.0.device_count().unwrap_or(0);
        let mut out = Vec::new();
        for device in 0..count {
            let Ok(d) = self.0.device_by_index(device) else {
                continue;
            };
            let compute = d.running_compute_processes().unwrap_or_default();
            let graphics = d.running_graphics_processes().unwrap_or_default();
            // Per-process SM use since the last call (the newest sample per pid); a device
            // that does not support it (NotSupported, older boards, MIG) leaves it `None`.
            let since = self.1.get(&device).copied();
            let mut sm: Option<BTreeMap<u32, (u64, f64)>> = None;
            if let Ok(list) = d.process_utilization_stats(since) {
                let mut by_pid = BTreeMap::new();
                for s in list {
                    let newest = self.1.entry(device).or_insert(0);
                    *newest = (*newest).max(s.timestamp);
                    let e = by_pid.entry(s.pid).or_insert((0, 0.0));
                    if s.timestamp >= e.0 {
                        *e = (s.timestamp, f64::from(s.sm_util) / 100.0);
                    }
                }
                sm = Some(by_pid);
            }
            for p in compute.into_iter().chain(graphics) {
                if let UsedGpuMemory::Used(bytes) = p.used_gpu_memory {
                    out.push(GpuProcess {
                        device,
                        pid: p.pid,
                        memory_used: bytes,
                        // Supported but no sample for this pid since the last call: idle.
                        sm_utilization: sm.as_ref().map(|m| m.get(&p.pid).map_or(0.0, |(_, u)| *u)),
                    });
                }
            }
        }
        out
    }
}

/// Fixed readings, for tests and for machines without a GPU.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeGpus {
    /// What `devices` returns (`[[device]]` in the file).
    #[serde(default, rename = "device")]
    pub devices: Vec<GpuSample>,
    /// What `processes` returns (`[[process]]` in the file).
    #[serde(default, rename = "process")]
    pub processes: Vec<GpuProcess>,
}

impl FakeGpus {
    /// Reads fixed readings from a TOML file: `[[device]]` tables with `GpuSample`'s fields,
    /// `[[process]]` tables with `GpuProcess`'s.
    pub fn load(path: &std::path::Path) -> Result<FakeGpus, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Gpus for FakeGpus {
    fn devices(&mut self) -> Vec<GpuSample> {
        self.devices.clone()
    }

    fn processes(&mut self) -> Vec<GpuProcess> {
        self.processes.clone()
    }
}
