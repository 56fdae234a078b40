//! GPU utilisation and memory through NVML (`libnvidia-ml.so.1`, loaded at run time by
//! `nvml-wrapper`; feature `cuda`): per device, the share of the last sample period a kernel
//! ran, the memory used and total; per process, the GPU memory it holds.
//!
//! [`GpuMonitor::sample`] reads them; the series sampler ([`crate::series`]) calls it once a
//! second, off the request path, and publishes them in `/metrics`
//! (`eas_gpu_utilization_ratio`, `eas_gpu_memory_used_bytes`, `eas_gpu_memory_total_bytes`,
//! `eas_gpu_process_memory_bytes`). The controller reads the latest sample
//! ([`GpuMonitor::utilization_percent`]) for the instances it observes: an instance's
//! `gpu_util` is the utilisation of the GPUs it was granted (a GPU's, shared by the slices on
//! it: NVML does not split a device's utilisation by process without accounting mode).
//!
//! NVML devices are matched to CUDA ordinals by UUID, so `CUDA_VISIBLE_DEVICES` and
//! `CUDA_DEVICE_ORDER` do not mix them up. Without NVML (or without the feature) there are
//! no GPU series and [`GpuMonitor::unavailable`] says why.
//!
//! ```no_run
//! use eas_runtime::gpu::GpuMonitor;
//!
//! let monitor = GpuMonitor::shared();
//! match monitor.sample() {
//!     Ok(devices) => println!("{devices:?}"),
//!     Err(why) => println!("no GPU metrics: {why}"),
//! }
//! ```

use std::sync::{Mutex, OnceLock};

use serde::Serialize;

use super::{GpuError, GpuInfo, GpuInventory};

/// One GPU's sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeviceStats {
    /// The CUDA ordinal of the device in this process.
    pub ordinal: u32,
    /// Share of the last sample period during which a kernel ran, 0 to 1.
    pub utilization: f64,
    /// Memory in use, in bytes (all processes).
    pub memory_used_bytes: u64,
    /// Memory installed, in bytes.
    pub memory_total_bytes: u64,
    /// `(pid, bytes)`: the GPU memory each compute process holds on it.
    pub processes: Vec<(u32, u64)>,
}

/// Reads GPU metrics through NVML and keeps the latest sample.
pub struct GpuMonitor {
    devices: Vec<GpuInfo>,
    #[cfg(feature = "cuda")]
    nvml: Option<nvml_wrapper::Nvml>,
    unavailable: Option<GpuError>,
    latest: Mutex<Vec<DeviceStats>>,
}

impl std::fmt::Debug for GpuMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuMonitor")
            .field("devices", &self.devices)
            .field("unavailable", &self.unavailable)
            .finish_non_exhaustive()
    }
}

impl GpuMonitor {
    /// A monitor of `inventory`'s devices: NVML is opened now; without it (or without GPUs)
    /// every sample is the reason why not.
    #[must_use]
    pub fn new(inventory: &GpuInventory) -> Self {
        let devices = match inventory.devices() {
            Ok(devices) => devices.to_vec(),
            Err(e) => return Self::without(e.clone()),
        };
        #[cfg(feature = "cuda")]
        {
            match nvml_wrapper::Nvml::init() {
                Ok(nvml) => Self {
                    devices,
                    nvml: Some(nvml),
                    unavailable: None,
                    latest: Mutex::new(Vec::new()),
                },
                Err(e) => Self::without(GpuError::NoNvml {
                    reason: e.to_string(),
                }),
            }
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = devices;
            Self::without(GpuError::NotBuilt)
        }
    }

    fn without(error: GpuError) -> Self {
        Self {
            devices: Vec::new(),
            #[cfg(feature = "cuda")]
            nvml: None,
            unavailable: Some(error),
            latest: Mutex::new(Vec::new()),
        }
    }

    /// The monitor of [`GpuInventory::shared`], opened once on first use.
    #[must_use]
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<GpuMonitor> = OnceLock::new();
        SHARED.get_or_init(|| Self::new(GpuInventory::shared()))
    }

    /// Why there are no GPU metrics, if there are none.
    #[must_use]
    pub const fn unavailable(&self) -> Option<&GpuError> {
        self.unavailable.as_ref()
    }

    /// Reads every device now and keeps the result as the latest sample.
    ///
    /// # Errors
    /// Why there are no GPU metrics ([`unavailable`](Self::unavailable)), or the NVML call
    /// that failed.
    pub fn sample(&self) -> Result<Vec<DeviceStats>, GpuError> {
        if let Some(e) = &self.unavailable {
            return Err(e.clone());
        }
        let stats = self.read()?;
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = stats.clone();
        Ok(stats)
    }

    #[cfg(feature = "cuda")]
    fn read(&self) -> Result<Vec<DeviceStats>, GpuError> {
        use nvml_wrapper::enums::device::UsedGpuMemory;

        let Some(nvml) = &self.nvml else {
            return Ok(Vec::new());
        };
        let failed = |call: &'static str| {
            move |e: nvml_wrapper::error::NvmlError| GpuError::Driver {
                call,
                reason: e.to_string(),
            }
        };
        let mut out = Vec::with_capacity(self.devices.len());
        for gpu in &self.devices {
            let device = nvml
                .device_by_uuid(gpu.uuid.as_str())
                .map_err(failed("nvmlDeviceGetHandleByUUID"))?;
            let rates = device
                .utilization_rates()
                .map_err(failed("nvmlDeviceGetUtilizationRates"))?;
            let memory = device
                .memory_info()
                .map_err(failed("nvmlDeviceGetMemoryInfo"))?;
            // Per-process memory is best effort: some drivers (or containers without the
            // host's PID namespace) refuse it.
            let processes = device
                .running_compute_processes()
                .map(|list| {
                    list.into_iter()
                        .filter_map(|p| match p.used_gpu_memory {
                            UsedGpuMemory::Used(bytes) => Some((p.pid, bytes)),
                            UsedGpuMemory::Unavailable => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(DeviceStats {
                ordinal: gpu.ordinal,
                utilization: f64::from(rates.gpu.min(100)) / 100.0,
                memory_used_bytes: memory.used,
                memory_total_bytes: memory.total,
                processes,
            });
        }
        Ok(out)
    }

    #[cfg(not(feature = "cuda"))]
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)]
    fn read(&self) -> Result<Vec<DeviceStats>, GpuError> {
        Ok(Vec::new())
    }

    /// The latest sample (empty before the first, or without NVML).
    #[must_use]
    pub fn latest(&self) -> Vec<DeviceStats> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The mean utilisation of the devices `ordinals`, in percent, from the latest sample;
    /// `None` when there is no sample of any of them.
    #[must_use]
    pub fn utilization_percent(&self, ordinals: &[u32]) -> Option<f64> {
        utilization_percent(
            &self.latest.lock().unwrap_or_else(|e| e.into_inner()),
            ordinals,
        )
    }
}

/// The mean utilisation of `ordinals` in `stats`, in percent.
#[allow(clippy::cast_precision_loss)]
fn utilization_percent(stats: &[DeviceStats], ordinals: &[u32]) -> Option<f64> {
    let values: Vec<f64> = stats
        .iter()
        .filter(|s| ordinals.contains(&s.ordinal))
        .map(|s| s.utilization * 100.0)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(ordinal: u32, utilization: f64) -> DeviceStats {
        DeviceStats {
            ordinal,
            utilization,
            memory_used_bytes: 0,
            memory_total_bytes: 0,
            processes: Vec::new(),
        }
    }

    #[test]
    fn utilization_should_average_the_granted_devices() {
        let all = [stats(0, 0.5), stats(1, 1.0)];
        assert_eq!(utilization_percent(&all, &[0]), Some(50.0));
        assert_eq!(utilization_percent(&all, &[0, 1]), Some(75.0));
        assert_eq!(utilization_percent(&all, &[2]), None);
    }

    #[test]
    fn a_monitor_without_gpus_should_say_why() {
        let monitor = GpuMonitor::new(&GpuInventory::unavailable(GpuError::NotBuilt));
        let why = monitor.sample().expect_err("no GPU");
        assert!(why.to_string().contains("`cuda` feature"), "{why}");
        assert_eq!(monitor.utilization_percent(&[0]), None);
    }
}
