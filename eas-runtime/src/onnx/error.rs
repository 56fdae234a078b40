//! [`OnnxError`]: why the `onnx` processor could not find ONNX Runtime or load a model.

use std::path::PathBuf;

/// The command that installs the ONNX Runtime library this build targets.
pub const INSTALL_HINT: &str = "install it with `pip install onnxruntime==1.31.1` and set \
ORT_DYLIB_PATH to the wheel's onnxruntime/capi/libonnxruntime.so.1.31.1 (or set EAS_PYTHON to \
the Python that has it)";

/// What installs the GPU build of ONNX Runtime this build targets.
pub const GPU_INSTALL_HINT: &str = "install it with `pip install onnxruntime-gpu==1.31.1` \
(with the CUDA and cuDNN libraries it was built for on the library path) and set ORT_DYLIB_PATH \
to that wheel's onnxruntime/capi/libonnxruntime.so.1.31.1";

/// What can go wrong before the `onnx` processor serves requests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// No ONNX Runtime shared library was found.
    #[error("ONNX Runtime library not found: {reason}; {INSTALL_HINT}")]
    LibraryNotFound {
        /// Where it was looked for and why that failed.
        reason: String,
    },

    /// The library was found but could not be loaded or initialized.
    #[error("cannot load ONNX Runtime from {}: {reason}; {INSTALL_HINT}", path.display())]
    LibraryLoad {
        /// The library file.
        path: PathBuf,
        /// Why it could not be loaded.
        reason: String,
    },

    /// No single model file could be chosen from the instance's model paths.
    #[error("no model to load: {reason}")]
    NoModel {
        /// What was given and what is missing.
        reason: String,
    },

    /// ONNX Runtime refused the model, or the model has inputs or outputs this processor cannot
    /// exchange.
    #[error("model {}: {reason}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The instance runs on a GPU, and the loaded ONNX Runtime cannot use it.
    #[error(
        "the onnx processor cannot run on the GPU with the ONNX Runtime library {library}: \
         {reason}; a GPU needs the GPU build of ONNX Runtime: {GPU_INSTALL_HINT}"
    )]
    NoCudaProvider {
        /// The library that was loaded, and from where.
        library: String,
        /// What is missing.
        reason: String,
    },

    /// The processor was asked for something it does not do.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl From<OnnxError> for eas_core::Error {
    fn from(err: OnnxError) -> Self {
        Self::processor_init("onnx", err.to_string())
    }
}
