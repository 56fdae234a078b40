//! The one error type of `eas-core`, returned by the traits defined here.
//!
//! Implementations in other crates keep their own error enums and convert into this one at the
//! trait boundary, keeping the original error as the `source` so nothing is lost.

use std::path::PathBuf;

use crate::spec::SpecErrors;

/// A boxed error from an implementation, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong at the boundary of an `eas-core` trait.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `service.json` failed to parse or validate; every problem is listed.
    #[error("invalid service spec:\n{0}")]
    Spec(#[from] SpecErrors),

    /// A processor failed to initialize (bad model, missing file, unsupported device).
    #[error("processor `{processor}` failed to initialize: {reason}")]
    ProcessorInit {
        /// The processor's name, as registered or given in the spec.
        processor: String,
        /// What went wrong, for a person.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// A storage mount failed: the URI could not be resolved, fetched or written locally.
    #[error("storage `{uri}`: {reason}")]
    Storage {
        /// The remote URI or local path being mounted.
        uri: String,
        /// What went wrong, for a person.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A pricing oracle has no price for an instance type (or zone).
    #[error("no price for instance type `{instance_type}`{}", zone.as_deref().map(|z| format!(" in zone `{z}`")).unwrap_or_default())]
    NoPrice {
        /// The instance type asked about.
        instance_type: String,
        /// The zone asked about, for spot prices.
        zone: Option<String>,
    },

    /// A feature or input this build or implementation does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// A [`Error::Storage`] without an underlying error.
    pub fn storage(uri: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Storage {
            uri: uri.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// A [`Error::ProcessorInit`] without an underlying error.
    pub fn processor_init(processor: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::ProcessorInit {
            processor: processor.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
