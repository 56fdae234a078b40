//! Why an instance refused a request, and why an admitted request got no answer from the
//! processor. No HTTP here: the edge maps each reason to a status.

use eas_core::processor::ProcessError;

/// Why [`Replica::submit`](crate::replica::Replica::submit) refused a request (instance-level
/// admission).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The instance is not taking requests now (starting, restarting, failed, stopped).
    #[error("instance {index} of service `{service}` is {state}")]
    NotReady {
        /// The service.
        service: String,
        /// The instance index.
        index: u32,
        /// Its state, in words.
        state: String,
    },

    /// The instance's own `rpc.rate_limit` refused it.
    #[error("instance {index} of service `{service}` allows {rate} requests per second")]
    RateLimited {
        /// The service.
        service: String,
        /// The instance index.
        index: u32,
        /// Its limit.
        rate: f64,
    },

    /// The instance already has `rpc.max_queue_size` requests waiting.
    #[error("queue full: instance {index} of service `{service}` has {size} requests waiting")]
    QueueFull {
        /// The service.
        service: String,
        /// The instance index.
        index: u32,
        /// Its `max_queue_size`.
        size: u32,
    },

    /// The instance is shutting down and takes nothing more.
    #[error("instance {index} of service `{service}` is shutting down")]
    ShuttingDown {
        /// The service.
        service: String,
        /// The instance index.
        index: u32,
    },
}

impl ReplicaError {
    /// The instance that refused.
    #[must_use]
    pub fn index(&self) -> u32 {
        match self {
            Self::NotReady { index, .. }
            | Self::RateLimited { index, .. }
            | Self::QueueFull { index, .. }
            | Self::ShuttingDown { index, .. } => *index,
        }
    }

    /// Whether the same request may be admitted later (a full queue, a limit, a restart),
    /// as opposed to an instance that is gone.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::ShuttingDown { .. })
    }
}

/// Why an admitted request got no answer from its processor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The processor refused or failed this request.
    #[error("{}", .0.message)]
    Processor(ProcessError),

    /// The processor panicked while handling the batch this request was in.
    #[error("processor panicked: {0}")]
    Panicked(String),

    /// The processor broke its contract (say, fewer results than requests).
    #[error("internal error: {0}")]
    Internal(String),

    /// The instance stopped or lost its processor before it ran the request.
    #[error("{0}")]
    Dropped(String),

    /// The process running the instance's processor died while it had the request (a worker
    /// process of the child-process provider: killed, crashed, out of memory); says how. The
    /// request may or may not have been processed.
    #[error("{0}")]
    Died(String),
}
