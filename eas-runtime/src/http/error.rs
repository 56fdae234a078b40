//! Why a request was refused or failed, and the one table that maps each reason to an HTTP
//! status and a JSON body.
//!
//! Every error answer of the server has the same shape:
//!
//! ```json
//! {"code": 429, "error": "rate_limited", "message": "service `echo` allows 100 requests per second"}
//! ```

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eas_core::processor::ProcessError;

/// The status EAS answers when an instance's queue is full (not a standard HTTP code).
pub const QUEUE_FULL_STATUS: u16 = 450;

/// Why a request did not get its processor's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No service of that name is served here.
    #[error("no service named `{0}` is served here")]
    UnknownService(String),

    /// The `Authorization` header is missing, malformed or wrong.
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    /// A rate limit (per instance or per service) refused the request.
    #[error("rate limited: {0}")]
    RateLimited(String),

    /// The service's concurrency limit is reached.
    #[error("too many concurrent requests: service `{service}` allows {limit} at a time")]
    ConcurrencyLimited {
        /// The service.
        service: String,
        /// Its limit.
        limit: u32,
    },

    /// The chosen instance already has `max_queue_size` requests waiting.
    #[error("queue full: instance {instance} of service `{service}` has {size} requests waiting")]
    QueueFull {
        /// The service.
        service: String,
        /// The instance index.
        instance: u32,
        /// Its `max_queue_size`.
        size: u32,
    },

    /// A queue of the queue service holds its `max_queue_size` items.
    #[error("queue full: queue `{queue}` holds its limit of {size} items")]
    QueueAtCapacity {
        /// The queue (`service` or `service/sink`).
        queue: String,
        /// Its bound.
        size: u64,
    },

    /// A query parameter is malformed or unknown; says which and why.
    #[error("bad query: {0}")]
    BadQuery(String),

    /// No such queue or item.
    #[error("not found: {0}")]
    NotFound(String),

    /// The route does not take this HTTP method.
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),

    /// Processing took longer than the service's `rpc.keepalive`.
    #[error("timed out: no answer within the service's keepalive of {} ms", .0.as_millis())]
    Timeout(Duration),

    /// The body is larger than the server accepts.
    #[error("request body too large: the limit is {0} bytes")]
    BodyTooLarge(usize),

    /// The body could not be read.
    #[error("bad request body: {0}")]
    BadBody(String),

    /// No instance of the service can take requests now.
    #[error("service unavailable: {0}")]
    Unavailable(String),

    /// The processor refused or failed this request.
    #[error("{}", .0.message)]
    Processor(ProcessError),

    /// The processor panicked while handling the batch this request was in.
    #[error("processor panicked: {0}")]
    Panicked(String),

    /// Something in the server itself went wrong.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error is answered with.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownService(_) => 404,
            Self::Unauthorized(_) => 401,
            Self::RateLimited(_) | Self::ConcurrencyLimited { .. } => 429,
            Self::QueueFull { .. } | Self::QueueAtCapacity { .. } => QUEUE_FULL_STATUS,
            Self::BadQuery(_) => 400,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Timeout(_) => 408,
            Self::BodyTooLarge(_) => 413,
            Self::BadBody(_) => 400,
            Self::Unavailable(_) => 503,
            Self::Processor(e) => e.status,
            Self::Panicked(_) | Self::Internal(_) => 500,
        }
    }

    /// A short machine-readable name of the reason, the `error` field of the JSON body.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownService(_) => "unknown_service",
            Self::Unauthorized(_) => "unauthorized",
            Self::RateLimited(_) => "rate_limited",
            Self::ConcurrencyLimited { .. } => "concurrency_limited",
            Self::QueueFull { .. } | Self::QueueAtCapacity { .. } => "queue_full",
            Self::BadQuery(_) => "bad_query",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Timeout(_) => "timeout",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::BadBody(_) => "bad_body",
            Self::Unavailable(_) => "unavailable",
            Self::Processor(_) => "processor_error",
            Self::Panicked(_) => "processor_panicked",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON body this error is answered with.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.status(),
            "error": self.kind(),
            "message": self.to_string(),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_should_map_to_its_documented_status() {
        let table = [
            (ApiError::UnknownService("x".into()), 404),
            (ApiError::Unauthorized("x".into()), 401),
            (ApiError::RateLimited("x".into()), 429),
            (
                ApiError::ConcurrencyLimited {
                    service: "s".into(),
                    limit: 1,
                },
                429,
            ),
            (
                ApiError::QueueFull {
                    service: "s".into(),
                    instance: 0,
                    size: 1,
                },
                450,
            ),
            (
                ApiError::QueueAtCapacity {
                    queue: "s".into(),
                    size: 1,
                },
                450,
            ),
            (ApiError::BadQuery("x".into()), 400),
            (ApiError::NotFound("x".into()), 404),
            (ApiError::MethodNotAllowed("x".into()), 405),
            (ApiError::Timeout(Duration::from_millis(5)), 408),
            (ApiError::BodyTooLarge(10), 413),
            (ApiError::BadBody("x".into()), 400),
            (ApiError::Unavailable("x".into()), 503),
            (
                ApiError::Processor(ProcessError::bad_request("bad input")),
                400,
            ),
            (ApiError::Panicked("boom".into()), 500),
        ];
        for (error, status) in table {
            assert_eq!(error.status(), status, "{error:?}");
            let response = error.clone().into_response();
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert_eq!(error.body()["code"], status);
            assert!(!error.body()["message"].as_str().unwrap_or("").is_empty());
        }
    }
}
