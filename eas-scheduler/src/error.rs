//! The error type of `eas-scheduler`.

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a policy or while reading what it replays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A trace (prices, preemptions, arrivals) could not be read.
    #[error("{trace}, line {line}: {reason}")]
    Trace {
        /// The trace's name or path.
        trace: String,
        /// The line (from 1) where reading stopped; 0 for the trace as a whole.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A policy's configuration cannot work, such as an instance type without a price.
    #[error("invalid policy: {0}")]
    Policy(String),

    /// An error from a trait of `eas-core` (a pricing oracle, a spec).
    #[error(transparent)]
    Core(#[from] eas_core::Error),
}
