//! Why a queue call failed, in the queue's own terms (the HTTP edge maps each reason to a
//! status: full -> 450, invalid -> 400, unavailable -> 503, internal -> 500).

/// What can go wrong in a [`QueueBackend`](super::QueueBackend) call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue holds its bound of items; nothing was put.
    #[error("queue full: queue `{queue}` holds its limit of {size} items")]
    Full {
        /// The queue (`service` or `service/sink`).
        queue: String,
        /// Its bound.
        size: u64,
    },

    /// The backend cannot do what was asked with these arguments; says which and why.
    #[error("{0}")]
    Invalid(String),

    /// The backend cannot be reached now (a Redis connection failed); the call may work later.
    #[error("{0}")]
    Unavailable(String),

    /// Something in the backend itself went wrong.
    #[error("internal error: {0}")]
    Internal(String),
}
