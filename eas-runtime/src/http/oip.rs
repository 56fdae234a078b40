//! The Open Inference Protocol v2 over REST (KServe v2, NVIDIA Triton's HTTP protocol, with
//! the binary tensor data extension), for every service whose processor describes tensor
//! inputs ([`Processor::metadata`](eas_core::Processor::metadata); `onnx` does):
//!
//! | route | token | answer |
//! |---|---|---|
//! | `GET /v2/health/live` | no | `{"live": true}` |
//! | `GET /v2/health/ready` | no | `{"ready": true}`; 503 while a service has no ready instance |
//! | `GET /v2` | no | `{"name": "eas", "version", "extensions": ["binary_tensor_data"]}` |
//! | `GET /v2/models/{name}[/versions/{v}]` | yes | `{"name", "versions", "platform", "inputs", "outputs"}` |
//! | `GET /v2/models/{name}[/versions/{v}]/ready` | yes | `{"name", "ready": true}`; 503 while no instance is ready |
//! | `POST /v2/models/{name}[/versions/{v}]/infer` | yes | the inference ([`request`], [`answer`]) |
//!
//! A model is a service, by its name (or a service group, whose weights pick the member). Its
//! versions are its service's versions that replicas run now (two during a rolling update);
//! the answer's `model_version` is the one that answered, and another version is a 404. Answers
//! name who served them (`x-eas-service`, `x-eas-version`, `x-eas-instance`). Model routes take the service's token as the EAS predict route
//! does and pass the same [`Admission`](crate::admission::Admission): the token is checked
//! from the headers before the body is read, then the body limit and timeout, and for an
//! inference the rate and concurrency limits, routing, keepalive and the instance's queue.
//! An inference is handed to the processor in the EAS tensor form (a `DataProto`, what the
//! EAS SDK's `OnnxRequest` sends), so OIP and EAS requests share the instances' dynamic
//! batches; the processor's answer is translated back ([`answer`]).
//!
//! The gRPC form of the protocol ([`super::grpc`]) shares this module's translation
//! ([`request`], [`answer`], [`datatype`]), model lookup ([`describe`]), hand-off to the
//! instances ([`predict`]) and request metrics and log ([`Observation`]).
//!
//! A service whose processor describes no tensors (`echo`), or an asynchronous one, is no
//! OIP model: 404. Errors have OIP's form, `{"error": "<message>"}`, with the statuses of the
//! one table ([`ApiError::oip_body`]): 400 for a request that is malformed or does not fit
//! the model (the processor's own checks: input names, types, shapes), 401, 404, 408, 413,
//! 429, 450, 503 as for the EAS protocol; a 500 only when the processor or the server fails.

pub(super) mod answer;
pub(super) mod datatype;
pub(super) mod request;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use eas_core::processor::{ModelMetadata, ProcessError};
use serde_json::json;

use super::{ApiError, Edge};
use crate::admission::Entered;
use crate::directory::Entry;
use crate::outcome::{Failure, PredictError};
use crate::replica::Replica;

/// The protocol extensions the server metadata names (REST and gRPC alike).
pub(super) const EXTENSIONS: [&str; 1] = ["binary_tensor_data"];

/// The `Content-Type` of the `DataProto` bodies handed to processors.
const PROTO_CONTENT_TYPE: &str = "application/octet-stream";

/// `GET /v2/health/live`: the server runs.
pub(super) async fn live() -> Response {
    Json(json!({"live": true})).into_response()
}

/// `GET /v2/health/ready`: every service has a ready instance (as `/readyz`).
pub(super) async fn ready(State(edge): State<Arc<Edge>>) -> Response {
    if edge.is_ready() {
        return Json(json!({"ready": true})).into_response();
    }
    let waiting: Vec<String> = edge
        .directory()
        .entries()
        .values()
        .map(|e| e.service())
        .filter(|s| !s.is_ready() && !s.instances().is_empty())
        .map(|s| format!("`{}`", s.name()))
        .collect();
    ApiError::NotReady(format!(
        "no ready instance yet for the services {}",
        waiting.join(", ")
    ))
    .into_oip_response()
}

/// `GET /v2`: the server's metadata.
pub(super) async fn server_metadata() -> Response {
    Json(json!({
        "name": "eas",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
    .into_response()
}

/// What a model route asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Metadata,
    Ready,
    Infer,
}

/// A model route: `{name}[/versions/{v}][/ready|/infer]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target<'a> {
    model: &'a str,
    version: Option<&'a str>,
    action: Action,
}

impl<'a> Target<'a> {
    /// The route's parts; the last `/ready` or `/infer`, then the last `/versions/{v}`, are
    /// the route's, the rest is the model's name (service names may hold slashes).
    fn parse(rest: &'a str) -> Self {
        let (head, action) = if let Some(head) = rest.strip_suffix("/ready") {
            (head, Action::Ready)
        } else if let Some(head) = rest.strip_suffix("/infer") {
            (head, Action::Infer)
        } else {
            (rest, Action::Metadata)
        };
        let (model, version) = match head.rsplit_once("/versions/") {
            Some((model, version)) if !model.is_empty() && !version.contains('/') => {
                (model, Some(version))
            }
            _ => (head, None),
        };
        Self {
            model,
            version,
            action,
        }
    }

    const fn method(self) -> Method {
        match self.action {
            Action::Infer => Method::POST,
            Action::Metadata | Action::Ready => Method::GET,
        }
    }
}

/// Any method on `/v2/models/{rest}`: model metadata, readiness and inference.
pub(super) async fn model(
    State(edge): State<Arc<Edge>>,
    Path(rest): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let target = Target::parse(&rest);
    let entry = match lookup(&edge, target.model) {
        Ok(entry) => entry,
        Err(error) => return error.into_oip_response(),
    };
    if request.method() != target.method() {
        return ApiError::MethodNotAllowed(format!(
            "use {} /v2/models/{rest}, not {}",
            target.method(),
            request.method()
        ))
        .into_oip_response();
    }
    if target.action == Action::Infer {
        return infer(&entry, target, request).await;
    }
    let mut layers = entry.admission().enter();
    if let Err(refused) = layers.receive(request).await {
        return ApiError::Predict(refused).into_oip_response();
    }
    let model = match describe(&entry, target.version) {
        Ok(model) => model,
        Err(error) => return error.into_oip_response(),
    };
    let service = entry.service();
    match target.action {
        Action::Ready if !service.is_ready() => {
            ApiError::NotReady(format!("model `{}` has no ready instance", service.name()))
                .into_oip_response()
        }
        Action::Ready => Json(json!({"name": service.name(), "ready": true})).into_response(),
        Action::Metadata | Action::Infer => Json(json!({
            "name": service.name(),
            "versions": versions(&entry),
            "platform": model.platform,
            "inputs": model.inputs,
            "outputs": model.outputs,
        }))
        .into_response(),
    }
}

/// The model a request names (at `version`, if it names one), or why the service is not one:
/// another version (404), an asynchronous service (404), a processor without tensors (404), no
/// instance yet to ask (503).
pub(super) fn describe(entry: &Entry, version: Option<&str>) -> Result<ModelMetadata, ApiError> {
    let service = entry.service();
    let name = service.name();
    if let Some(version) = version {
        let known = versions(entry);
        if !known.iter().any(|v| v == version) {
            return Err(ApiError::NotFound(format!(
                "model `{name}` has no version `{version}` running; it runs {}",
                known.join(" and ")
            )));
        }
    }
    if service.queues().is_some() {
        return Err(ApiError::NotFound(format!(
            "service `{name}` is asynchronous, not an OIP model: put requests into its queue \
             with POST /api/predict/{name}"
        )));
    }
    if let Some(model) = service.instances().iter().find_map(Replica::metadata) {
        return Ok(model);
    }
    if service.is_ready() {
        return Err(ApiError::NotFound(format!(
            "service `{name}` is not an OIP model: its processor describes no tensor inputs; \
             call it with POST /api/predict/{name}"
        )));
    }
    Err(ApiError::NotReady(format!(
        "model `{name}` has no ready instance to describe it yet"
    )))
}

/// Decrements the in-flight gauge however the handler ends.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One inference's metrics (in flight, then answered with its status and latency) and its
/// request-log line, whichever protocol it came by.
pub(super) struct Observation<'a> {
    entry: &'a Entry,
    started: Instant,
    _in_flight: InFlight,
}

impl<'a> Observation<'a> {
    /// Counts an inference of `entry` as in flight from now.
    pub(super) fn start(entry: &'a Entry) -> Self {
        let gauge = entry.metrics().inflight().clone();
        gauge.inc();
        Self {
            entry,
            started: Instant::now(),
            _in_flight: InFlight(gauge),
        }
    }

    /// Records how the inference ended: `received`, its body once read; `outcome`, the
    /// instance that answered or the error; `answer`, the body sent back.
    pub(super) fn finish(
        self,
        received: Option<&Bytes>,
        outcome: Result<u32, &ApiError>,
        answer: &[u8],
    ) {
        // What the processor said about a request is sunk (as on the predict route, and an
        // answer that is not the tensor form it was asked for); refusals before it are not.
        let sunk = matches!(
            outcome,
            Ok(_)
                | Err(ApiError::Predict(PredictError::Failed {
                    failure: Failure::Processor(_) | Failure::Panicked(_) | Failure::Internal(_),
                    ..
                }))
        );
        let (status, instance) = match outcome {
            Ok(instance) => (200, Some(instance)),
            Err(error) => (
                error.status(),
                match error {
                    ApiError::Predict(refused) => refused.instance(),
                    _ => None,
                },
            ),
        };
        let elapsed = self.started.elapsed();
        if let (Some(request), true) = (received, sunk) {
            self.entry
                .service()
                .record(request, status, answer, elapsed);
        }
        self.entry
            .metrics()
            .answered(instance, status, elapsed.as_secs_f64());
    }
}

/// Hands a translated inference (`body`, a `DataProto`) with the client's `headers` to an
/// instance through `layers` (the service's limits, routing, keepalive and batching: the
/// request joins the same batches as EAS requests), and gives back the processor's answer
/// (a `DataProto`) and the instance that ran it. An answer other than 2xx is the processor's
/// Who answered an inference: the instance and the version of the service it runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Served {
    /// The instance (its index).
    pub(super) instance: u32,
    /// The version of the service it runs.
    pub(super) version: u32,
}

/// The versions of a model: those its service's replicas run now (two during a rollout),
/// else its current version.
pub(super) fn versions(entry: &Entry) -> Vec<String> {
    let service = entry.service();
    let mut versions: Vec<u32> = service.instances().iter().map(Replica::version).collect();
    if versions.is_empty() {
        versions.push(service.version());
    }
    versions.sort_unstable();
    versions.dedup();
    versions.iter().map(u32::to_string).collect()
}

/// The entry a model name names: a service, or a group whose weights pick the member (the
/// weights apply to OIP requests as to EAS ones).
pub(super) fn lookup(edge: &Edge, name: &str) -> Result<Arc<Entry>, ApiError> {
    match edge.directory().resolve(name) {
        crate::directory::Resolved::Service(entry, "") => Ok(entry),
        crate::directory::Resolved::EmptyGroup(group) => Err(ApiError::NotReady(format!(
            "group `{group}` has no member that takes its traffic"
        ))),
        _ => Err(ApiError::UnknownService(name.to_owned())),
    }
}

/// refusal, with its status.
pub(super) async fn predict(
    layers: Entered,
    body: Vec<u8>,
    headers: &http::HeaderMap,
) -> Result<(Served, Bytes), ApiError> {
    // The processor gets the client's headers, but the body is now a DataProto.
    let mut headers = headers.clone();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(request::HEADER_LENGTH);
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(PROTO_CONTENT_TYPE),
    );
    let request = crate::request::build(body.into(), "", headers);
    let answered = layers.predict(request).await?;
    let served = Served {
        instance: answered.instance,
        version: answered.version,
    };
    let (instance, answer) = (answered.instance, answered.response);
    if !(200..300).contains(&answer.status) {
        let message = String::from_utf8_lossy(&answer.body).into_owned();
        return Err(ApiError::Predict(PredictError::Failed {
            instance,
            failure: Failure::Processor(ProcessError::new(answer.status, message)),
        }));
    }
    Ok((served, answer.body))
}

/// An answer of `instance` that breaks the processor's side of the protocol (`why`): the
/// server's fault, a 500.
pub(super) fn broken(instance: u32, why: String) -> ApiError {
    ApiError::Predict(PredictError::Failed {
        instance,
        failure: Failure::Internal(why),
    })
}

/// `POST .../infer`: metrics, the request log and the answer around [`run`].
async fn infer(entry: &Entry, target: Target<'_>, request: axum::extract::Request) -> Response {
    let observation = Observation::start(entry);
    let mut received = None;
    match run(entry, target, request, &mut received).await {
        Ok((served, encoded)) => {
            let body = Bytes::from(encoded.body);
            observation.finish(received.as_ref(), Ok(served.instance), &body);
            let mut response = (StatusCode::OK, body).into_response();
            let headers = response.headers_mut();
            super::served_by(headers, entry.service(), served.version, served.instance);
            match encoded.header_length {
                Some(length) => {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(PROTO_CONTENT_TYPE),
                    );
                    headers.insert(request::HEADER_LENGTH, HeaderValue::from(length));
                }
                None => {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
            }
            response
        }
        Err(error) => {
            let body = error.oip_body().to_string();
            observation.finish(received.as_ref(), Err(&error), body.as_bytes());
            error.into_oip_response()
        }
    }
}

/// Admits the request (token, body), translates it, runs it through the service's limits to
/// an instance and translates the answer; `received` gets the body once read.
async fn run(
    entry: &Entry,
    target: Target<'_>,
    request: axum::extract::Request,
    received: &mut Option<Bytes>,
) -> Result<(Served, answer::Encoded), ApiError> {
    let mut layers = entry.admission().enter();
    let (parts, body) = layers.receive(request).await?.into_parts();
    *received = Some(body.clone());
    let model = describe(entry, target.version)?;
    if let Some(encoding) = parts.headers.get(header::CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(ApiError::BadInference(format!(
            "Content-Encoding {encoding:?} is not supported: send the body uncompressed"
        )));
    }
    let length = parts
        .headers
        .get(request::HEADER_LENGTH)
        .map(HeaderValue::as_bytes);
    let mut translated =
        request::decode(length, &body, &model.outputs).map_err(ApiError::BadInference)?;
    let body = std::mem::take(&mut translated.body);
    let (served, answer) = predict(layers, body, &parts.headers).await?;
    let service = entry.service();
    let version = served.version.to_string();
    let encoded = answer::encode(&answer, &translated, service.name(), &version)
        .map_err(|why| broken(served.instance, why))?;
    Ok((served, encoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_should_split_into_model_version_and_action() {
        let t = |model, version, action| Target {
            model,
            version,
            action,
        };
        let table = [
            ("mlp", t("mlp", None, Action::Metadata)),
            ("mlp/ready", t("mlp", None, Action::Ready)),
            ("mlp/infer", t("mlp", None, Action::Infer)),
            ("mlp/versions/1", t("mlp", Some("1"), Action::Metadata)),
            ("mlp/versions/2/infer", t("mlp", Some("2"), Action::Infer)),
            ("a/b/versions/1/ready", t("a/b", Some("1"), Action::Ready)),
            ("ready", t("ready", None, Action::Metadata)),
            (
                "mlp/versions/1/x",
                t("mlp/versions/1/x", None, Action::Metadata),
            ),
        ];
        for (path, want) in table {
            assert_eq!(Target::parse(path), want, "{path}");
        }
    }
}
