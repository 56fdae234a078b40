//! GPUs on this machine: which there are, which instance holds what, and how busy they are.
//!
//! | part | concern |
//! |---|---|
//! | [`driver`](crate::gpu::driver) | discovery through the CUDA driver API (`cudarc`, feature `cuda`): count, name, memory, UUID |
//! | [`inventory`](crate::gpu::inventory) | the live ledger: an instance's GPUs granted at start through [`eas_scheduler::placement::gpu`], given back when it stops |
//! | [`mps`](crate::gpu::mps) | the CUDA MPS core share of child-process instances, when an MPS daemon already runs |
//! | [`monitor`](crate::gpu::monitor) | utilisation and memory per device and per process through NVML (feature `cuda`), sampled once a second off the request path |
//!
//! Everything is loaded at run time: a build needs no CUDA toolkit and no driver, and a
//! machine without a driver gets a [`GpuError`](crate::gpu::GpuError) that says what is missing (the driver
//! library, NVML or the `cuda` feature), never a panic. Nothing here starts or stops MPS or
//! changes a GPU's settings.
//!
//! ```no_run
//! use eas_runtime::gpu::{GpuInventory, driver};
//!
//! match driver::discover() {
//!     Ok(gpus) => println!("{} GPUs: {gpus:?}", gpus.len()),
//!     Err(e) => println!("no GPU: {e}"),
//! }
//! println!("{:?}", GpuInventory::shared().devices());
//! ```

pub mod driver;
pub mod inventory;
pub mod monitor;
pub mod mps;

pub use driver::GpuInfo;
pub use inventory::{GpuInventory, GpuLease};
pub use monitor::{DeviceStats, GpuMonitor};

/// Why GPUs cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// This build has no GPU support.
    #[error(
        "this eas was built without the `cuda` feature, so it cannot use GPUs (rebuild with \
         `--features cuda`)"
    )]
    NotBuilt,
    /// The CUDA driver library is not installed (or not where the loader looks).
    #[error(
        "no NVIDIA driver was found: the CUDA driver library (libcuda.so.1) is not on this \
         machine's library path ({searched})"
    )]
    NoDriver {
        /// Where it was looked for.
        searched: String,
    },
    /// The driver is there but a call failed.
    #[error("the NVIDIA driver failed: {call}: {reason}")]
    Driver {
        /// The call that failed.
        call: &'static str,
        /// What the driver said.
        reason: String,
    },
    /// NVML (libnvidia-ml.so.1) cannot be used: no GPU metrics.
    #[error("NVML (libnvidia-ml.so.1) is not available, so there are no GPU metrics: {reason}")]
    NoNvml {
        /// Why.
        reason: String,
    },
}
