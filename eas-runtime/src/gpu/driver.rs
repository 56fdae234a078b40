//! GPU discovery through the CUDA driver API ([`cudarc`'s driver bindings], loaded at run
//! time; feature `cuda`): how many GPUs this process sees (`CUDA_VISIBLE_DEVICES` applies),
//! and each one's name, memory and UUID.
//!
//! cudarc panics when it cannot load `libcuda`, and its own check for the library is an
//! `unsafe fn` (this crate forbids `unsafe`), so [`discover`] first looks for the library
//! where the dynamic loader would ([`find_driver_library`]: `LD_LIBRARY_PATH`, the loader
//! cache that `ldconfig -p` prints, the usual directories) and answers
//! [`GpuError::NoDriver`] when it is nowhere; a library that is there but cannot be loaded
//! is caught as the same error. The pinned bindings (`cuda-12080`) use driver calls that the
//! drivers of CUDA 12 and 13 both export; nvrtc and cuBLAS are not loaded.
//!
//! Memory is read through a primary context of each device, released at once (the same
//! primary context that ONNX Runtime and libtorch use in this process).
//!
//! [`cudarc`'s driver bindings]: https://docs.rs/cudarc
//!
//! ```no_run
//! let gpus = eas_runtime::gpu::driver::discover()?;
//! for gpu in &gpus {
//!     println!("GPU {}: {} ({} bytes, {})", gpu.ordinal, gpu.name, gpu.memory_bytes, gpu.uuid);
//! }
//! # Ok::<(), eas_runtime::gpu::GpuError>(())
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::GpuError;

/// One GPU as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GpuInfo {
    /// The CUDA device ordinal in this process.
    pub ordinal: u32,
    /// Its name (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// Its memory, in bytes.
    pub memory_bytes: u64,
    /// Its UUID as NVML and `nvidia-smi` print it (`GPU-8f2c...`), which maps CUDA ordinals
    /// to NVML devices whatever `CUDA_DEVICE_ORDER` and `CUDA_VISIBLE_DEVICES` say.
    pub uuid: String,
}

impl GpuInfo {
    /// GPU `ordinal` named `name` with `memory_bytes` of memory and UUID `uuid`.
    #[must_use]
    pub fn new(
        ordinal: u32,
        name: impl Into<String>,
        memory_bytes: u64,
        uuid: impl Into<String>,
    ) -> Self {
        Self {
            ordinal,
            name: name.into(),
            memory_bytes,
            uuid: uuid.into(),
        }
    }
}

/// The GPUs this process sees, in ordinal order.
///
/// # Errors
/// [`GpuError::NotBuilt`] without the `cuda` feature, [`GpuError::NoDriver`] when the CUDA
/// driver library is not installed, [`GpuError::Driver`] when a driver call fails.
pub fn discover() -> Result<Vec<GpuInfo>, GpuError> {
    #[cfg(feature = "cuda")]
    {
        find_driver_library().map_err(|searched| GpuError::NoDriver { searched })?;
        cuda::discover()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(GpuError::NotBuilt)
    }
}

/// The names the CUDA driver library goes by on Linux.
const DRIVER_NAMES: [&str; 2] = ["libcuda.so.1", "libcuda.so"];

/// Directories the loader reads besides `LD_LIBRARY_PATH` and its cache, and where driver
/// containers (the NVIDIA container toolkit, WSL) put the library.
const DRIVER_DIRS: [&str; 8] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/local/nvidia/lib64",
    "/usr/lib/wsl/lib",
];

/// Where the CUDA driver library (`libcuda.so.1`) is, looked for as the dynamic loader would:
/// in `LD_LIBRARY_PATH`, in the loader's cache (`ldconfig -p`), then in the usual
/// directories. `Err` says where it looked.
///
/// # Errors
/// Where it looked, in words, when the library is nowhere.
pub fn find_driver_library() -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    dirs.extend(DRIVER_DIRS.iter().map(PathBuf::from));
    if let Some(found) = find_in(&dirs) {
        return Ok(found);
    }
    if let Some(found) = ldconfig_lookup() {
        return Ok(found);
    }
    Err(format!(
        "LD_LIBRARY_PATH, the `ldconfig -p` cache, {}",
        DRIVER_DIRS.join(", ")
    ))
}

fn find_in(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .flat_map(|dir| DRIVER_NAMES.iter().map(move |name| dir.join(name)))
        .find(|p| p.exists())
}

/// The driver library's path from the loader cache (`ldconfig -p`), if it lists one.
fn ldconfig_lookup() -> Option<PathBuf> {
    let output = ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]
        .iter()
        .find_map(|program| std::process::Command::new(program).arg("-p").output().ok())?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().find_map(|line| {
        let (name, path) = line.trim().split_once(" => ")?;
        let name = name.split_whitespace().next()?;
        DRIVER_NAMES
            .contains(&name)
            .then(|| Path::new(path.trim()).to_path_buf())
            .filter(|p| p.exists())
    })
}

/// The driver calls (feature `cuda`).
#[cfg(feature = "cuda")]
mod cuda {
    use cudarc::driver::{CudaContext, DriverError, result};

    use super::{GpuError, GpuInfo};

    fn failed(call: &'static str) -> impl Fn(DriverError) -> GpuError {
        move |e| GpuError::Driver {
            call,
            reason: e.to_string(),
        }
    }

    /// The UUID as NVML prints it: `GPU-` and 8-4-4-4-12 hex digits.
    fn uuid_text(bytes: &[u8]) -> String {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let hex = hex.concat();
        let cut = |a: usize, b: usize| hex.get(a..b).unwrap_or("");
        format!(
            "GPU-{}-{}-{}-{}-{}",
            cut(0, 8),
            cut(8, 12),
            cut(12, 16),
            cut(16, 20),
            cut(20, 32)
        )
    }

    pub(super) fn discover() -> Result<Vec<GpuInfo>, GpuError> {
        // The library was found, but loading it may still fail (a wrong architecture, a
        // broken install): cudarc panics then, which is caught here and said in words.
        std::panic::catch_unwind(discover_loaded).unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "it could not be loaded".to_owned());
            Err(GpuError::NoDriver {
                searched: format!("found, but not loaded: {reason}"),
            })
        })
    }

    fn discover_loaded() -> Result<Vec<GpuInfo>, GpuError> {
        result::init().map_err(failed("cuInit"))?;
        let count = result::device::get_count().map_err(failed("cuDeviceGetCount"))?;
        let mut gpus = Vec::new();
        for ordinal in 0..count {
            let device = result::device::get(ordinal).map_err(failed("cuDeviceGet"))?;
            let name = result::device::get_name(device).map_err(failed("cuDeviceGetName"))?;
            let uuid = result::device::get_uuid(device).map_err(failed("cuDeviceGetUuid"))?;
            // `c_char`: `i8` or `u8` depending on the platform.
            let bytes: Vec<u8> = uuid.bytes.iter().flat_map(|b| b.to_ne_bytes()).collect();
            let index = usize::try_from(ordinal).unwrap_or(0);
            let context = CudaContext::new(index).map_err(failed("cuDevicePrimaryCtxRetain"))?;
            let memory = context.total_mem().map_err(failed("cuDeviceTotalMem"))?;
            drop(context);
            gpus.push(GpuInfo::new(
                u32::try_from(ordinal).unwrap_or(0),
                name,
                memory as u64,
                uuid_text(&bytes),
            ));
        }
        Ok(gpus)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn uuid_should_print_as_nvml_does() {
            let bytes: Vec<u8> = (0u8..16).collect();
            assert_eq!(
                uuid_text(&bytes),
                "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine has no NVIDIA driver: discovery must say so, not panic. With a driver
    /// (EAS_REQUIRE_GPU=1, scripts/gpu-check), it must find at least one GPU.
    #[test]
    fn discover_should_name_what_is_missing_without_a_driver() {
        match discover() {
            Ok(gpus) => assert!(
                !gpus.is_empty() || std::env::var("EAS_REQUIRE_GPU").as_deref() != Ok("1"),
                "EAS_REQUIRE_GPU=1 but no GPU"
            ),
            Err(e) => {
                assert!(
                    std::env::var("EAS_REQUIRE_GPU").as_deref() != Ok("1"),
                    "EAS_REQUIRE_GPU=1 but: {e}"
                );
                let text = e.to_string();
                assert!(
                    text.contains("libcuda.so.1") || text.contains("`cuda` feature"),
                    "{text}"
                );
            }
        }
    }
}
