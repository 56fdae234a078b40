//! The one table that maps every reason a request was refused or failed (the edge's own,
//! admission's [`PredictError`], the queues' [`QueueError`]) to an HTTP status and a JSON
//! body.
//!
//! Every error answer of the server has the same shape:
//!
//! ```json
//! {"code": 429, "error": "rate_limited", "message": "service `echo` allows 100 requests per second"}
//! ```
//!
//! The Open Inference Protocol routes answer the same statuses in that protocol's form,
//! `{"error": "<message>"}` ([`ApiError::oip_body`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::outcome::PredictError;
use crate::queue::QueueError;
use crate::replica::{Failure, ReplicaError};

/// The status EAS answers when an instance's queue is full (not a standard HTTP code).
pub const QUEUE_FULL_STATUS: u16 = 450;

/// Why a request was refused or failed, as the edge answers it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No service of that name is served here.
    #[error("no service named `{0}` is served here")]
    UnknownService(String),

    /// A query parameter is malformed or unknown; says which and why.
    #[error("bad query: {0}")]
    BadQuery(String),

    /// No such queue or item.
    #[error("not found: {0}")]
    NotFound(String),

    /// The request's path cannot be read (not UTF-8 once percent-decoded); says which.
    #[error("bad path: {0}")]
    BadPath(String),

    /// The route does not take this HTTP method.
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),

    /// Not every service is ready (the readiness probe).
    #[error("service unavailable: {0}")]
    NotReady(String),

    /// Admission refused the request, or its processor failed it.
    #[error(transparent)]
    Predict(#[from] PredictError),

    /// A queue call failed.
    #[error(transparent)]
    Queue(#[from] QueueError),

    /// An Open Inference Protocol inference request is malformed or does not fit its model's
    /// outputs; says what and where.
    #[error("bad inference request: {0}")]
    BadInference(String),
}

/// The HTTP status of each control API error code (the control API answers in EAS's shape,
/// `{"Code", "Message"}`, with these statuses).
#[must_use]
pub const fn control_status(code: eas_core::control::ErrorCode) -> u16 {
    use eas_core::control::ErrorCode;
    match code {
        ErrorCode::Unauthorized => 401,
        ErrorCode::NotFound => 404,
        ErrorCode::Conflict => 409,
        ErrorCode::InvalidParameter | ErrorCode::Unsupported => 400,
        ErrorCode::PayloadTooLarge => 413,
        ErrorCode::TooManyRequests => 429,
        _ => 500,
    }
}

impl ApiError {
    /// The HTTP status this error is answered with, and the short machine-readable name of the
    /// reason (the `error` field of the JSON body): the one table of the server.
    #[must_use]
    pub fn status_and_kind(&self) -> (u16, &'static str) {
        match self {
            Self::UnknownService(_) => (404, "unknown_service"),
            Self::BadQuery(_) => (400, "bad_query"),
            Self::NotFound(_) => (404, "not_found"),
            Self::BadPath(_) => (400, "bad_path"),
            Self::MethodNotAllowed(_) => (405, "method_not_allowed"),
            Self::NotReady(_) => (503, "unavailable"),
            Self::BadInference(_) => (400, "bad_inference_request"),
            Self::Predict(error) => match error {
                PredictError::Unauthorized(_) => (401, "unauthorized"),
                PredictError::BodyTooLarge { .. } => (413, "body_too_large"),
                PredictError::BadBody(_) => (400, "bad_body"),
                PredictError::BodyTimeout(_) | PredictError::Timeout { .. } => (408, "timeout"),
                PredictError::RateLimited { .. }
                | PredictError::Replica(ReplicaError::RateLimited { .. }) => (429, "rate_limited"),
                PredictError::ConcurrencyLimited { .. } => (429, "concurrency_limited"),
                PredictError::Replica(ReplicaError::QueueFull { .. }) => {
                    (QUEUE_FULL_STATUS, "queue_full")
                }
                PredictError::Busy { .. } => (503, "busy"),
                PredictError::NoReadyInstance { .. }
                | PredictError::Replica(_)
                | PredictError::Failed {
                    failure: Failure::Dropped(_),
                    ..
                } => (503, "unavailable"),
                PredictError::Failed { failure, .. } => match failure {
                    Failure::Processor(e) => (e.status, "processor_error"),
                    Failure::Panicked(_) => (500, "processor_panicked"),
                    Failure::Died(_) => (502, "instance_died"),
                    _ => (500, "internal"),
                },
            },
            Self::Queue(error) => match error {
                QueueError::Full { .. } => (QUEUE_FULL_STATUS, "queue_full"),
                QueueError::Invalid(_) => (400, "bad_query"),
                QueueError::Unavailable(_) => (503, "unavailable"),
                _ => (500, "internal"),
            },
        }
    }

    /// The HTTP status this error is answered with.
    #[must_use]
    pub fn status(&self) -> u16 {
        self.status_and_kind().0
    }

    /// The `error` field of the JSON body.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.status_and_kind().1
    }

    /// The JSON body this error is answered with.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        let (code, kind) = self.status_and_kind();
        serde_json::json!({
            "code": code,
            "error": kind,
            "message": self.to_string(),
        })
    }

    /// The JSON body in the Open Inference Protocol's error form, `{"error": "<message>"}`
    /// (answered with the same [`status`](Self::status)).
    #[must_use]
    pub fn oip_body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.to_string() })
    }

    /// This error as the Open Inference Protocol routes answer it: its
    /// [`status`](Self::status) and [`oip_body`](Self::oip_body).
    #[must_use]
    pub fn into_oip_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.oip_body())).into_response()
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
    use std::time::Duration;

    use eas_core::processor::ProcessError;

    use super::*;

    #[test]
    fn every_reason_should_map_to_its_documented_status() {
        let instance = |kind: &str| {
            let (service, index) = ("s".to_owned(), 0);
            ApiError::Predict(PredictError::Replica(match kind {
                "rate" => ReplicaError::RateLimited {
                    service,
                    index,
                    rate: 1.0,
                },
                "full" => ReplicaError::QueueFull {
                    service,
                    index,
                    size: 1,
                },
                "down" => ReplicaError::ShuttingDown { service, index },
                _ => ReplicaError::NotReady {
                    service,
                    index,
                    state: "starting".into(),
                },
            }))
        };
        let failed = |failure| {
            ApiError::Predict(PredictError::Failed {
                instance: 0,
                failure,
            })
        };
        let table = [
            (ApiError::UnknownService("x".into()), 404),
            (PredictError::Unauthorized("x".into()).into(), 401),
            (PredictError::BodyTooLarge { limit: 10 }.into(), 413),
            (PredictError::BadBody("x".into()).into(), 400),
            (
                PredictError::BodyTimeout(Duration::from_secs(1)).into(),
                408,
            ),
            (
                PredictError::Busy {
                    buffered: 1,
                    capacity: 1,
                }
                .into(),
                503,
            ),
            (
                PredictError::RateLimited {
                    service: "s".into(),
                    rate: 1.0,
                }
                .into(),
                429,
            ),
            (
                PredictError::ConcurrencyLimited {
                    service: "s".into(),
                    limit: 1,
                }
                .into(),
                429,
            ),
            (
                PredictError::NoReadyInstance {
                    service: "s".into(),
                    states: "x".into(),
                }
                .into(),
                503,
            ),
            (instance("rate"), 429),
            (instance("full"), 450),
            (instance("down"), 503),
            (instance("starting"), 503),
            (
                PredictError::Timeout {
                    keepalive: Duration::from_millis(5),
                    instance: 0,
                }
                .into(),
                408,
            ),
            (
                failed(Failure::Processor(ProcessError::bad_request("bad input"))),
                400,
            ),
            (failed(Failure::Panicked("boom".into())), 500),
            (failed(Failure::Dropped("gone".into())), 503),
            (failed(Failure::Died("killed".into())), 502),
            (
                QueueError::Full {
                    queue: "s".into(),
                    size: 1,
                }
                .into(),
                450,
            ),
            (QueueError::Invalid("x".into()).into(), 400),
            (QueueError::Unavailable("x".into()).into(), 503),
            (ApiError::BadQuery("x".into()), 400),
            (ApiError::NotFound("x".into()), 404),
            (ApiError::BadPath("x".into()), 400),
            (ApiError::MethodNotAllowed("x".into()), 405),
            (ApiError::BadInference("x".into()), 400),
        ];
        for (error, status) in table {
            assert_eq!(error.status(), status, "{error:?}");
            let response = error.clone().into_response();
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert_eq!(error.body()["code"], status);
            assert!(!error.body()["message"].as_str().unwrap_or("").is_empty());
            assert_eq!(error.oip_body()["error"], error.to_string());
            assert_eq!(error.clone().into_oip_response().status().as_u16(), status);
        }
    }
}
