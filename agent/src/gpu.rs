//! GPU sampling through NVML, behind the small [`Gpus`] trait so the sampler can be tested on
//! machines without a GPU ([`FakeGpus`]). [`Nvml`] (nvml-wrapper, which loads
//! `libnvidia-ml.so` at run time) is the real implementation and the default; where the
//! library or a GPU is absent, [`open`] says why and the agent samples no GPU series.

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;

/// One device's readings; a reading the device does not support is `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuSample {
    /// NVML index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// Busy fraction of the last sample period, 0–1.
    pub utilization: Option<f64>,
    /// Memory in use, bytes.
    pub memory_used: Option<u64>,
    /// Memory in all, bytes.
    pub memory_total: Option<u64>,
    /// Board power, watts.
    pub power_watts: Option<f64>,
    /// Core temperature, °C.
    pub temperature_c: Option<f64>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<f64>,
}

/// GPU memory a process holds on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuProcess {
    /// Device index.
    pub device: u32,
    /// Process id.
    pub pid: u32,
    /// Bytes.
    pub memory_used: u64,
}

/// What the sampler needs from a GPU library.
pub trait Gpus: Send {
    /// Every device's readings.
    fn devices(&mut self) -> Vec<GpuSample>;
    /// Compute and graphics processes and their memory, on every device.
    fn processes(&mut self) -> Vec<GpuProcess>;
}

/// NVML.
pub struct Nvml(nvml_wrapper::Nvml);

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
        Ok(_) => Ok(Nvml(nvml)),
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
            for p in compute.into_iter().chain(graphics) {
                if let UsedGpuMemory::Used(bytes) = p.used_gpu_memory {
                    out.push(GpuProcess {
                        device,
                        pid: p.pid,
                        memory_used: bytes,
                    });
                }
            }
        }
        out
    }
}

/// Fixed readings, for tests and for machines without a GPU.
#[derive(Debug, Clone, Default)]
pub struct FakeGpus {
    /// What `devices` returns.
    pub devices: Vec<GpuSample>,
    /// What `processes` returns.
    pub processes: Vec<GpuProcess>,
}

impl Gpus for FakeGpus {
    fn devices(&mut self) -> Vec<GpuSample> {
        self.devices.clone()
    }

    fn processes(&mut self) -> Vec<GpuProcess> {
        self.processes.clone()
    }
}
