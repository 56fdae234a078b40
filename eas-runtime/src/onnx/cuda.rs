//! The `onnx` processor on a GPU: ONNX Runtime's CUDA execution provider.
//!
//! When an instance is granted a GPU (`InitContext::device` is `Device::Cuda`), every session
//! of its model registers the CUDA execution provider on that device, with the slice's memory
//! limit (`InitContext::gpu_memory_limit`) as the provider's `gpu_mem_limit` (the most its
//! memory arena grows to). Registration failures are fatal ([`error_on_failure`]): a model
//! that was asked to run on a GPU never runs on the CPU instead. [`check`] says what is
//! missing before a model loads: the CPU-only build of ONNX Runtime (PyPI `onnxruntime`)
//! has no CUDA provider at all, and the GPU build (PyPI `onnxruntime-gpu`) also needs the
//! CUDA and cuDNN libraries it was built for on the library path.
//!
//! The provider's API comes with `ort`'s `cuda` feature, which eas's `cuda` feature turns on;
//! with `load-dynamic` it downloads and links nothing at build time. Without the feature, a
//! GPU instance fails to initialize saying so.
//!
//! [`error_on_failure`]: ort::ep::ExecutionProviderDispatch::error_on_failure

#[cfg(feature = "cuda")]
use ort::ep::{CUDA, ExecutionProvider, ExecutionProviderDispatch};
#[cfg(feature = "cuda")]
use ort::session::Session;

use super::error::OnnxError;
use super::library::OrtRuntime;

/// Where and how an instance's sessions run on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CudaDevice {
    /// The CUDA device ordinal.
    pub ordinal: u32,
    /// The most GPU memory the provider's arena may take, in bytes.
    pub memory_limit: Option<u64>,
}

#[cfg(feature = "cuda")]
impl CudaDevice {
    /// The execution provider to register: this device, this limit, fatal on failure.
    pub fn provider(&self) -> ExecutionProviderDispatch {
        let mut cuda = CUDA::default().with_device_id(i32::try_from(self.ordinal).unwrap_or(0));
        if let Some(limit) = self.memory_limit {
            cuda = cuda.with_memory_limit(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        cuda.build().error_on_failure()
    }
}

/// Whether `runtime` can run sessions on `device`: its library has the CUDA execution provider
/// and the provider registers (its CUDA libraries load, the device exists).
///
/// # Errors
/// [`OnnxError::NoCudaProvider`] saying what is missing.
#[cfg(feature = "cuda")]
pub(crate) fn check(runtime: &OrtRuntime, device: &CudaDevice) -> Result<(), OnnxError> {
    let library = runtime.library().to_string();
    let missing = |reason: String| OnnxError::NoCudaProvider {
        library: library.clone(),
        reason,
    };
    let available = CUDA::is_available().map_err(|e| missing(e.to_string()))?;
    if !available {
        return Err(missing(
            "this build of ONNX Runtime has no CUDAExecutionProvider (it is the CPU-only \
             build, PyPI `onnxruntime`)"
                .to_owned(),
        ));
    }
    Session::builder(runtime.environment())
        .and_then(|builder| {
            builder
                .with_execution_providers([device.provider()])
                .map_err(Into::into)
        })
        .map(drop)
        .map_err(|e| {
            missing(format!(
                "registering CUDAExecutionProvider on device {} failed: {e}",
                device.ordinal
            ))
        })
}

/// Without the `cuda` feature no session can use a GPU.
///
/// # Errors
/// Always: [`OnnxError::Unsupported`] naming the feature.
#[cfg(not(feature = "cuda"))]
pub(crate) fn check(_runtime: &OrtRuntime, device: &CudaDevice) -> Result<(), OnnxError> {
    Err(OnnxError::Unsupported(format!(
        "the onnx processor cannot run on GPU {}: this eas was built without the `cuda` \
         feature, which brings ONNX Runtime's CUDA execution provider",
        device.ordinal
    )))
}
