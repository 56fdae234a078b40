//! The HTTP routes over a set of services, as an axum [`Router`] (test it with `oneshot`, no
//! socket; [`crate::server`] puts it on one).
//!
//! | route | what |
//! |---|---|
//! | `POST /api/predict/{service}[/{sub-path}]` | run the service's processor on the body |
//! | any method on `/api/predict/{service}[/sink]` of an async service | the queue service ([`crate::queue::http`]) |
//! | `GET /api/v1/servicediscovery/upstreams/{service}` | the service's ready endpoints, as the EAS SDK's direct mode reads them |
//! | `GET /api/services` | services and the state of each instance (JSON) |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /healthz` | liveness: 200 while the server runs |
//! | `GET /readyz` | readiness: 200 when every service has a ready instance, else 503 |
//!
//! Service names may contain dots and slashes: a predict path is matched against the longest
//! service name it starts with, and the rest is handed to the processor as the request path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use eas_core::processor::Request;
use serde_json::json;

use crate::api_error::ApiError;
use crate::instance::describe_state;
use crate::metrics::{Metrics, ServiceMetrics};
use crate::service::Service;

/// The default largest request body: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// Services by name, and what every route shares.
pub struct Gateway {
    services: BTreeMap<String, Arc<Service>>,
    service_metrics: BTreeMap<String, ServiceMetrics>,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
    local_addr: OnceLock<SocketAddr>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway over `services`; bodies over `max_body_bytes` are refused with 413.
    pub fn new(
        services: Vec<Service>,
        metrics: Arc<Metrics>,
        max_body_bytes: usize,
    ) -> crate::Result<Self> {
        let mut by_name = BTreeMap::new();
        for service in services {
            let name = service.name().to_owned();
            if by_name.insert(name.clone(), Arc::new(service)).is_some() {
                return Err(crate::Error::DuplicateService(name));
            }
        }
        Ok(Self {
            service_metrics: by_name
                .iter()
                .map(|(name, service): (&String, &Arc<Service>)| {
                    let instances = service.instances().len() as u32;
                    (name.clone(), ServiceMetrics::new(&metrics, name, instances))
                })
                .collect(),
            services: by_name,
            metrics,
            max_body_bytes,
            local_addr: OnceLock::new(),
        })
    }

    /// The routes, sharing this gateway.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/predict/{*path}", any(predict))
            .route(
                "/api/v1/servicediscovery/upstreams/{*service}",
                get(discovery),
            )
            .route("/api/services", get(status))
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readiness))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"code": 404, "error": "not_found",
                        "message": "no such route; predict with POST /api/predict/{service}"})),
                )
            })
            .with_state(Arc::clone(self))
    }

    /// Records the address the server listens on, for service discovery answers.
    pub fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.local_addr.set(addr);
    }

    /// The services, by name.
    #[must_use]
    pub fn services(&self) -> &BTreeMap<String, Arc<Service>> {
        &self.services
    }

    /// The largest request body accepted, in bytes.
    #[must_use]
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The metrics every route records into.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether every service has at least one ready instance.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.services.values().all(|s| s.is_ready())
    }

    /// The service a predict path names, and the rest of the path: the longest service name
    /// that is the path or a prefix of it followed by `/`.
    #[must_use]
    pub fn find<'a>(&'a self, path: &'a str) -> Option<(&'a Arc<Service>, &'a str)> {
        let path = path.trim_start_matches('/');
        let mut end = path.len();
        loop {
            let candidate = &path[..end];
            if let Some(service) = self.services.get(candidate) {
                return Some((service, path[end..].trim_start_matches('/')));
            }
            end = candidate.rfind('/')?;
        }
    }
}

/// Decrements the in-flight gauge however the handler ends.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn predict(
    State(gateway): State<Arc<Gateway>>,
    Path(path): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let Some((service, sub_path)) = gateway.find(&path) else {
        return ApiError::UnknownService(path).into_response();
    };
    let service = Arc::clone(service);
    let sub_path = sub_path.to_owned();
    if service.queues().is_some() {
        return crate::queue::http::serve(&gateway, service, &sub_path, request).await;
    }
    if request.method() != axum::http::Method::POST {
        return ApiError::MethodNotAllowed(format!(
            "predict with POST /api/predict/{}, not {}",
            service.name(),
            request.method()
        ))
        .into_response();
    }
    // Built beside the services in `Gateway::new`: every service has its entry.
    let Some(recorder) = gateway.service_metrics.get(service.name()) else {
        return ApiError::Internal(format!("no metrics for service `{}`", service.name()))
            .into_response();
    };
    let gauge = recorder.inflight().clone();
    gauge.inc();
    let _in_flight = InFlight(gauge);

    let (parts, body) = request.into_parts();
    let mut received = None;
    let outcome = match read_body(&parts.headers, body, gateway.max_body_bytes).await {
        Err(error) => Err((error, None)),
        Ok(body) => match service.authenticator().check(
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            &body,
        ) {
            Err(why) => Err((ApiError::Unauthorized(why), None)),
            Ok(()) => {
                received = Some(body.clone());
                service
                    .predict(to_request(body, &parts.headers, sub_path))
                    .await
            }
        },
    };

    let (status, instance, response) = match outcome {
        Ok((answer, instance)) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            if let Some(body) = &received {
                service.record(body, answer.status, &answer.body, started.elapsed());
            }
            let mut response = (status, answer.body).into_response();
            if let Some(ct) = answer
                .content_type
                .as_deref()
                .and_then(|ct| ct.parse().ok())
            {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            (answer.status, Some(instance), response)
        }
        Err((error, instance)) => {
            // What the processor said about a request is sunk too; refusals before it are not.
            if let (Some(body), ApiError::Processor(_) | ApiError::Panicked(_)) =
                (&received, &error)
            {
                let answer = error.body().to_string();
                service.record(body, error.status(), answer.as_bytes(), started.elapsed());
            }
            (error.status(), instance, error.into_response())
        }
    };
    recorder.answered(instance, status, started.elapsed().as_secs_f64());
    response
}

/// The body, refused with 413 past `limit` (by its Content-Length or as it streams in).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::BodyTooLarge(limit)
        } else {
            ApiError::BadBody(e.to_string())
        }
    })
}

fn to_request(body: bytes::Bytes, headers: &HeaderMap, path: String) -> Request {
    let mut request = Request::new(body).with_path(path);
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            request = request.with_header(name.as_str(), value);
        }
    }
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        request = request.with_content_type(ct);
    }
    request
}

async fn discovery(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(service) = gateway.services.get(name.trim_matches('/')) else {
        return ApiError::UnknownService(name).into_response();
    };
    let local = gateway.local_addr.get().copied();
    let ip = match local {
        Some(addr) if !addr.ip().is_unspecified() => addr.ip().to_string(),
        _ => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
            .unwrap_or_else(|| "127.0.0.1".to_owned()),
    };
    let port = local.map_or(0, |a| a.port());
    // Every instance runs in this process, behind this address.
    let items: Vec<_> = service
        .instances()
        .iter()
        .filter(|i| i.is_ready())
        .map(|_| json!({"ip": ip, "port": port, "weight": 100}))
        .collect();
    axum::Json(json!({"endpoints": {"items": items}})).into_response()
}

async fn status(State(gateway): State<Arc<Gateway>>) -> Response {
    let services: Vec<_> = gateway
        .services
        .values()
        .map(|service| {
            let instances: Vec<_> = service
                .instances()
                .iter()
                .map(|i| {
                    json!({
                        "index": i.index(),
                        "ready": i.is_ready(),
                        "state": describe_state(&i.state()),
                        "queue_depth": i.queue_depth(),
                        "load": i.load(),
                    })
                })
                .collect();
            let model = service
                .instances()
                .iter()
                .find_map(|i| i.metadata())
                .map(|m| {
                    json!({
                        "name": m.name, "platform": m.platform,
                        "inputs": m.inputs.iter().map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape})).collect::<Vec<_>>(),
                        "outputs": m.outputs.iter().map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape})).collect::<Vec<_>>(),
                    })
                });
            json!({
                "name": service.name(),
                "ready": service.is_ready(),
                "endpoint": format!("/api/predict/{}", service.name()),
                "processor": service.spec().processor,
                "model": model,
                "instances": instances,
            })
        })
        .collect();
    axum::Json(json!({"services": services})).into_response()
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    for service in gateway.services.values() {
        service.publish_gauges();
        service.publish_queue_backlog().await;
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gateway.metrics.encode(),
    )
        .into_response()
}

async fn readiness(State(gateway): State<Arc<Gateway>>) -> Response {
    let not_ready: Vec<&str> = gateway
        .services
        .values()
        .filter(|s| !s.is_ready())
        .map(|s| s.name())
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::Unavailable(format!("not ready: {}", not_ready.join(", "))).into_response()
    }
}
