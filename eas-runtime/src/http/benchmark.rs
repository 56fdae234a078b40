//! The benchmark-task API, EAS's names (`eas_runtime::stress::tasks` does the work):
//!
//! | operation | method and path |
//! |---|---|
//! | CreateBenchmarkTask | `POST /api/v2/benchmark-tasks` (create and start; the body is [`TaskRequest`]) |
//! | ListBenchmarkTask | `GET /api/v2/benchmark-tasks` |
//! | DescribeBenchmarkTask | `GET /api/v2/benchmark-tasks/{cluster}/{name}` |
//! | DescribeBenchmarkTaskReport | `GET /api/v2/benchmark-tasks/{cluster}/{name}/report` (JSON; `?Format=html` for the page) |
//! | StopBenchmarkTask | `PUT /api/v2/benchmark-tasks/{cluster}/{name}/stop` |
//! | DeleteBenchmarkTask | `DELETE /api/v2/benchmark-tasks/{cluster}/{name}` (stops it first) |
//!
//! Behind the admin token like the control API (`Authorization: T` or `Bearer T`, constant
//! time). Errors answer `{"Code", "Message"}`: 400 for a bad body, 401, 403 for a target that
//! is not this platform's and not allowed, 404, 409 when the name is taken or too many tasks
//! are kept or running.

use std::sync::{Arc, Weak};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, put};
use eas_core::control::{ErrorCode, ErrorResponse};
use serde::Deserialize;
use serde_json::json;

use super::Edge;
use super::error::control_status;
use super::gate::{AdminGate, Peer};
use crate::stress::BenchmarkTasks;
use crate::stress::tasks::{OwnService, TaskError, TaskRequest};

#[derive(Clone)]
struct Bench {
    tasks: Arc<BenchmarkTasks>,
    gate: Arc<AdminGate>,
    edge: Weak<Edge>,
}

/// The routes behind the admin `token`.
pub(super) fn router(tasks: Arc<BenchmarkTasks>, gate: Arc<AdminGate>, edge: Weak<Edge>) -> Router {
    let state = Bench { tasks, gate, edge };
    Router::new()
        .route("/api/v2/benchmark-tasks", get(list).post(create))
        .route(
            "/api/v2/benchmark-tasks/{cluster}/{name}",
            get(describe).delete(delete),
        )
        .route(
            "/api/v2/benchmark-tasks/{cluster}/{name}/report",
            get(report),
        )
        .route("/api/v2/benchmark-tasks/{cluster}/{name}/stop", put(stop))
        .with_state(state)
}

/// An error answer in EAS's shape.
struct Refusal(StatusCode, ErrorResponse);

impl Refusal {
    fn code(code: ErrorCode, message: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(control_status(code)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self(status, ErrorResponse::new(code, message))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

impl From<TaskError> for Refusal {
    fn from(error: TaskError) -> Self {
        match error {
            TaskError::Invalid(m) => Self::code(ErrorCode::InvalidParameter, m),
            TaskError::NotFound(m) => Self::code(ErrorCode::NotFound, m),
            TaskError::Conflict(m) => Self::code(ErrorCode::Conflict, m),
            TaskError::Forbidden(m) => Self(
                StatusCode::FORBIDDEN,
                ErrorResponse {
                    code: "Forbidden".to_owned(),
                    message: m,
                },
            ),
        }
    }
}

/// Proof that a request carries the admin token.
struct Admin;

impl FromRequestParts<Bench> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, bench: &Bench) -> Result<Self, Response> {
        let peer = parts.extensions.get::<Peer>().copied();
        bench
            .gate
            .check_headers(peer, &parts.headers)
            .refusal("the benchmark-task API")
            .map_or(Ok(Self), Err)
    }
}

type Answer = Result<Response, Refusal>;

async fn create(
    _: Admin,
    State(b): State<Bench>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Answer {
    let body = body.map_err(|e| {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::InvalidParameter
        };
        Refusal::code(code, e.body_text())
    })?;
    let request: TaskRequest = serde_json::from_slice(&body)
        .map_err(|e| Refusal::code(ErrorCode::InvalidParameter, format!("the body: {e}")))?;
    let edge = b.edge.upgrade();
    let own = |name: &str| -> Option<OwnService> {
        let edge = edge.as_ref()?;
        let entry = edge.directory.get(name)?;
        let addr = *edge.local_addr.get()?;
        let host = if addr.ip().is_unspecified() {
            std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        Some(OwnService {
            url: format!("http://{host}/api/predict/{name}"),
            token: entry.service().token().to_owned(),
        })
    };
    let name = b.tasks.create(request, &own)?;
    Ok(axum::Json(json!({
        "Name": name,
        "TaskName": name,
        "Message": format!("benchmark task `{name}` is running"),
    }))
    .into_response())
}

async fn list(_: Admin, State(b): State<Bench>) -> Answer {
    let tasks = b.tasks.list();
    Ok(axum::Json(json!({"TotalCount": tasks.len(), "Tasks": tasks})).into_response())
}

async fn describe(
    _: Admin,
    State(b): State<Bench>,
    Path((_, name)): Path<(String, String)>,
) -> Answer {
    Ok(axum::Json(b.tasks.describe(&name)?).into_response())
}

/// `?Format=html` asks for the report's page.
#[derive(Deserialize)]
struct ReportQuery {
    #[serde(default, alias = "format")]
    #[serde(rename = "Format")]
    format: Option<String>,
}

async fn report(
    _: Admin,
    State(b): State<Bench>,
    Path((_, name)): Path<(String, String)>,
    Query(query): Query<ReportQuery>,
) -> Answer {
    let report = b.tasks.report(&name)?;
    match query.format.as_deref() {
        Some(f) if f.eq_ignore_ascii_case("html") => Ok(Html(report.to_html()).into_response()),
        Some(f) if !f.eq_ignore_ascii_case("json") => Err(Refusal::code(
            ErrorCode::InvalidParameter,
            "Format: json (default) or html",
        )),
        _ => Ok(axum::Json(report).into_response()),
    }
}

async fn stop(_: Admin, State(b): State<Bench>, Path((_, name)): Path<(String, String)>) -> Answer {
    Ok(axum::Json(b.tasks.stop(&name)?).into_response())
}

async fn delete(
    _: Admin,
    State(b): State<Bench>,
    Path((_, name)): Path<(String, String)>,
) -> Answer {
    b.tasks.delete(&name)?;
    Ok(
        axum::Json(json!({"Message": format!("benchmark task `{name}` is deleted")}))
            .into_response(),
    )
}
