//! The routes around predicting: service discovery (as the EAS SDK's direct mode reads it),
//! the status page, Prometheus metrics and the readiness probe.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, Edge};
use crate::replica::describe_state;

pub(super) async fn discovery(
    State(edge): State<Arc<Edge>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(entry) = edge.directory().get(name.trim_matches('/')) else {
        return ApiError::UnknownService(name).into_response();
    };
    let local = edge.local_addr.get().copied();
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
    let items: Vec<_> = entry
        .service()
        .instances()
        .iter()
        .filter(|i| i.is_ready())
        .map(|_| json!({"ip": ip, "port": port, "weight": 100}))
        .collect();
    axum::Json(json!({"endpoints": {"items": items}})).into_response()
}

pub(super) async fn status(State(edge): State<Arc<Edge>>) -> Response {
    let services: Vec<_> = edge
        .services()
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

pub(super) async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    for service in edge.services().values() {
        service.publish_gauges();
        service.publish_queue_backlog().await;
    }
    let buffered = edge.body_budget().buffered();
    edge.metrics()
        .body_bytes_buffered
        .set(i64::try_from(buffered).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        edge.metrics().encode(),
    )
        .into_response()
}

pub(super) async fn readiness(State(edge): State<Arc<Edge>>) -> Response {
    let services = edge.services();
    let not_ready: Vec<&str> = services
        .values()
        .filter(|s| !s.is_ready() && !s.instances().is_empty())
        .map(|s| s.name())
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::NotReady(format!("not ready: {}", not_ready.join(", "))).into_response()
    }
}
