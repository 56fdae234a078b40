//! The error type of `eas-runtime`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while starting or running services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why not.
        #[source]
        source: std::io::Error,
    },

    /// A spec names a processor nobody registered.
    #[error("service `{service}`: unknown processor `{processor}` (known: {})", known.join(", "))]
    UnknownProcessor {
        /// The service.
        service: String,
        /// The processor it names.
        processor: String,
        /// The processors that are registered.
        known: Vec<String>,
    },

    /// The warm-up request file could not be read.
    #[error("service `{service}`: warm-up file {}: {reason}", path.display())]
    WarmUp {
        /// The service.
        service: String,
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// The sinker's destination could not be opened.
    #[error("service `{service}`: cannot open sink {}: {source}", path.display())]
    Sink {
        /// The service.
        service: String,
        /// The file.
        path: PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },

    /// No token could be generated for a spec without one.
    #[error("cannot generate a service token: {0}")]
    Token(String),

    /// A remote `model_path`, `processor_path` or `storage[]` mount could not be made local.
    #[error("service `{service}`: {source}")]
    Storage {
        /// The service.
        service: String,
        /// What went wrong, naming the path.
        #[source]
        source: eas_storage::Error,
    },

    /// A queue backend could not be set up.
    #[error("queue backend {backend}: {reason}")]
    QueueBackend {
        /// Which backend (and where).
        backend: String,
        /// Why not.
        reason: String,
    },

    /// A batch job (`elasticjob`) could not read its inputs or write its results.
    #[error("elastic job {}: {reason}", path.display())]
    Job {
        /// The input or output path.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// Two specs have the same name.
    #[error("two services are named `{0}`")]
    DuplicateService(String),

    /// The desired-state store could not be opened or read.
    #[error("state store: {0}")]
    Store(String),

    /// An error from `eas-core`: an invalid spec, a processor or a mount that failed.
    #[error(transparent)]
    Core(#[from] eas_core::Error),
}
