//! [`TorchError`]: why the `torch` processor could not start.

use std::path::PathBuf;

/// What can go wrong before the `torch` processor serves requests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TorchError {
    /// No single model file could be chosen from the instance's model paths.
    #[error("no model to load: {reason}")]
    NoModel {
        /// What was given and what is missing.
        reason: String,
    },

    /// libtorch refused the model (not a `torch.jit.save` file, or saved by a newer torch).
    #[error("model {}: {reason}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What libtorch said.
        reason: String,
    },

    /// The spec asks for a device this process cannot use.
    #[error("device: {0}")]
    Device(String),
}

impl From<TorchError> for eas_core::Error {
    fn from(err: TorchError) -> Self {
        Self::processor_init("torch", err.to_string())
    }
}
