//! `POST /api/predict/{service}[/{sub-path}]`: the EAS predict protocol. The request passes
//! its service's admission ([`Admission::enter`](crate::admission::Admission::enter), then
//! [`Entered::receive`](crate::admission::Entered::receive) and
//! [`Entered::predict`](crate::admission::Entered::predict)); the answer, or the reason
//! there is none, goes back with its status, into the service's sink (answers and processor
//! failures; not refusals) and into the request metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, Edge};
use crate::directory::Resolved;
use crate::outcome::PredictError;
use crate::replica::Failure;
use crate::traffic::Mirror;

/// Decrements the in-flight gauge however the handler ends.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Where predict paths start; what follows names the service (and a sub-path).
pub(super) const PREFIX: &str = "/api/predict/";

/// Whether a request for `path` is a predict (or queue) request: [`PREFIX`] and a name.
pub(super) fn is_predict(path: &str) -> bool {
    path.strip_prefix(PREFIX)
        .is_some_and(|rest| !rest.is_empty())
}

/// Serves a request whose path [`is_predict`].
pub(super) async fn predict<B>(edge: Arc<Edge>, request: http::Request<B>) -> Response
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let started = Instant::now();
    // The URI shares its bytes with the request: a clone is a reference, no copy.
    let uri = request.uri().clone();
    let raw = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let Ok(path) = percent_encoding::percent_decode_str(raw).decode_utf8() else {
        return ApiError::BadPath(format!("`{raw}` is not UTF-8 once percent-decoded"))
            .into_response();
    };
    let (entry, sub_path) = match edge.directory().resolve(&path) {
        Resolved::Service(entry, rest) => (entry, rest),
        Resolved::EmptyGroup(group) => {
            return ApiError::NotReady(format!(
                "group `{group}` has no member that takes its traffic: release one with PUT \
                 /api/v2/services/{{cluster}}/{{member}}/release"
            ))
            .into_response();
        }
        Resolved::Unknown => return ApiError::UnknownService(path.into_owned()).into_response(),
    };
    let service = entry.admission().service();
    if let Some(queues) = service.queues() {
        let request = request.map(axum::body::Body::new);
        return super::queue::serve(&edge, entry.admission(), queues, sub_path, request).await;
    }
    if request.method() != Method::POST {
        return ApiError::MethodNotAllowed(format!(
            "predict with POST /api/predict/{}, not {}",
            service.name(),
            request.method()
        ))
        .into_response();
    }
    let recorder = entry.metrics();
    let gauge = recorder.inflight().clone();
    gauge.inc();
    let _in_flight = InFlight(gauge);

    let mut received = None;
    let mut layers = entry.admission().enter();
    let outcome = match layers.receive(request).await {
        Err(refused) => Err(refused),
        Ok(request) => {
            let (parts, body) = request.into_parts();
            received = Some(body.clone());
            let request = crate::request::build(body, sub_path, parts.headers);
            if let Some(mirror) = edge.directory().traffic().mirror(service.name())
                && mirror.sample()
            {
                copy(&edge, &mirror, &request);
            }
            layers.predict(request).await
        }
    };

    // One clock read for the sink and the metrics.
    let elapsed = started.elapsed();
    let (status, instance, response) = match outcome {
        Ok(answered) => {
            let answer = answered.response;
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            if let Some(body) = &received {
                service.record(body, answer.status, &answer.body, elapsed);
            }
            let mut response = Response::new(axum::body::Body::from(answer.body));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            // Room for the content type and the three served-by headers (hyper adds the length
            // and the date as it writes): the map is allocated once.
            headers.reserve(4);
            headers.insert(header::CONTENT_TYPE, content_type(answer.content_type));
            super::served_by(
                response.headers_mut(),
                service,
                answered.version,
                answered.instance,
            );
            (answer.status, Some(answered.instance), response)
        }
        Err(refused) => {
            let instance = refused.instance();
            // What the processor said about a request is sunk too; refusals before it are not.
            let sunk = matches!(
                refused,
                PredictError::Failed {
                    failure: Failure::Processor(_) | Failure::Panicked(_),
                    ..
                }
            );
            let error = ApiError::Predict(refused);
            if let (Some(body), true) = (&received, sunk) {
                let answer = error.body().to_string();
                service.record(body, error.status(), answer.as_bytes(), elapsed);
            }
            (error.status(), instance, error.into_response())
        }
    };
    recorder.answered(instance, status, elapsed.as_secs_f64());
    response
}

/// The `Content-Type` of an answer whose processor said `said`: that, when it is a header
/// value (taken without a copy), else what a body of bytes is.
fn content_type(said: Option<String>) -> HeaderValue {
    const BYTES: HeaderValue = HeaderValue::from_static("application/octet-stream");
    said.and_then(|ct| HeaderValue::try_from(ct).ok())
        .unwrap_or(BYTES)
}

/// Sends a copy of `request` to each target of `mirror`, without waiting: the answers are
/// counted and dropped; a target with [`MIRROR_IN_FLIGHT`](crate::traffic::MIRROR_IN_FLIGHT)
/// copies in flight, backing off after failures, or gone, sheds the copy (counted).
fn copy(edge: &Arc<Edge>, mirror: &Arc<Mirror>, request: &eas_core::processor::Request) {
    for (index, target) in mirror.targets().iter().enumerate() {
        target.copies.attempted.inc();
        let entry = target
            .open()
            .then(|| edge.directory().get(&target.service))
            .flatten();
        let permit = entry
            .as_ref()
            .and_then(|_| Arc::clone(&target.permits).try_acquire_owned().ok());
        let (Some(entry), Some(permit)) = (entry, permit) else {
            target.copies.shed.inc();
            continue;
        };
        let (mirror, request) = (Arc::clone(mirror), request.clone());
        tokio::spawn(async move {
            let ok = entry.admission().predict(request).await.is_ok();
            mirror.targets()[index].finished(ok);
            drop(permit);
        });
    }
}
