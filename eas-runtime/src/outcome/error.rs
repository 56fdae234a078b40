//! Why a predict request was refused or failed: one variant per reason, each decided by one
//! layer (named on the variant). No HTTP here; [`crate::http::error`] maps each to a status.

use std::time::Duration;

use super::{Failure, ReplicaError};

/// Why a predict request got no answer from its processor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PredictError {
    /// The `Authorization` is missing, malformed or wrong ([`auth`](crate::admission::auth)).
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    /// The body is larger than the server accepts ([`body`](crate::admission::body)).
    #[error("request body too large: the limit is {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },

    /// The body could not be read ([`body`](crate::admission::body)).
    #[error("bad request body: {0}")]
    BadBody(String),

    /// The server's bound on the bytes of bodies being read at once is reached
    /// ([`body`](crate::admission::body)); the request may be sent again later.
    #[error(
        "server busy: request bodies being read hold {buffered} of the {capacity} bytes allowed; \
         retry later"
    )]
    Busy {
        /// The bytes held when this request asked for its own.
        buffered: usize,
        /// The bound.
        capacity: usize,
    },

    /// The client did not send its whole body in time ([`body`](crate::admission::body)).
    #[error("timed out: the request body did not arrive within {} ms", .0.as_millis())]
    BodyTimeout(Duration),

    /// The service's `networking.gateway_policy.rate_limit` refused it ([`rate`](crate::admission::rate)).
    #[error("rate limited: service `{service}` allows {rate} requests per second")]
    RateLimited {
        /// The service.
        service: String,
        /// Its limit.
        rate: f64,
    },

    /// The service's `networking.gateway_policy.concurrency_limit` is reached
    /// ([`concurrency`](crate::admission::concurrency)).
    #[error("too many concurrent requests: service `{service}` allows {limit} at a time")]
    ConcurrencyLimited {
        /// The service.
        service: String,
        /// Its limit.
        limit: u32,
    },

    /// No instance of the service takes requests now ([`route`](crate::admission::route)).
    #[error("service unavailable: service `{service}` has no ready instance: {states}")]
    NoReadyInstance {
        /// The service.
        service: String,
        /// Each instance's state, in words.
        states: String,
    },

    /// The instance chosen refused it ([`Replica::submit`](crate::replica::Replica::submit),
    /// through [`Submit`](crate::replica::admission::Submit)).
    #[error("{}", describe_instance_error(.0))]
    Replica(ReplicaError),

    /// No answer within the service's `rpc.keepalive` ([`keepalive`](crate::replica::admission::KeepaliveLayer)).
    #[error("timed out: no answer within the service's keepalive of {} ms", .keepalive.as_millis())]
    Timeout {
        /// The keepalive.
        keepalive: Duration,
        /// The instance the request was waiting at.
        instance: u32,
    },

    /// The processor refused or failed it ([`Submit`](crate::replica::admission::Submit)).
    #[error("{failure}")]
    Failed {
        /// The instance that ran it.
        instance: u32,
        /// What went wrong.
        failure: Failure,
    },
}

fn describe_instance_error(error: &ReplicaError) -> String {
    match error {
        ReplicaError::RateLimited { .. } => format!("rate limited: {error}"),
        ReplicaError::QueueFull { .. } => error.to_string(),
        _ => format!("service unavailable: {error}"),
    }
}

impl PredictError {
    /// The instance the request reached, if it reached one.
    #[must_use]
    pub fn instance(&self) -> Option<u32> {
        match self {
            Self::Replica(error) => Some(error.index()),
            Self::Timeout { instance, .. } | Self::Failed { instance, .. } => Some(*instance),
            _ => None,
        }
    }
}
