//! The error type of `eas-runtime`.

use std::net::SocketAddr;

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
    #[error("service `{service}`: unknown processor `{processor}`")]
    UnknownProcessor {
        /// The service.
        service: String,
        /// The processor it names.
        processor: String,
    },

    /// An error from `eas-core`: an invalid spec, a processor or a mount that failed.
    #[error(transparent)]
    Core(#[from] eas_core::Error),
}
