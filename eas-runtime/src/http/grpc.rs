//! The Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService` (KServe's
//! `grpc_predict_v2.proto`, in `eas-runtime/proto/`; NVIDIA Triton's `grpc_service.proto`, what
//! `tritonclient[grpc]` speaks, is a superset with the same six methods), on the HTTP port: a
//! request whose `Content-Type` is `application/grpc` (or `application/grpc+proto`) comes here,
//! any other goes to the HTTP routes (`routes.rs`). The listener speaks HTTP/1.1 and
//! HTTP/2 (cleartext, with prior knowledge: what gRPC clients send without TLS), told apart by
//! the HTTP/2 preface (`serve.rs`).
//!
//! | method | token | answer |
//! |---|---|---|
//! | `ServerLive` | no | `live: true` |
//! | `ServerReady` | no | `ready`: every service has a ready instance (as `/v2/health/ready`) |
//! | `ServerMetadata` | no | `name: "eas"`, `version`, `extensions` (as `GET /v2`) |
//! | `ModelReady` | yes | `ready`: the model has a ready instance |
//! | `ModelMetadata` | yes | `name`, `versions` (its service's running versions), `platform`, `inputs`, `outputs` |
//! | `ModelInfer` | yes | the inference, raw or typed tensor contents ([`tensors`]) |
//! | any other (Triton's repository, statistics, ...) | | `UNIMPLEMENTED` |
//!
//! A model is a service, by its name, whose spec sets `metadata.enable_grpc` (another service
//! is `NOT_FOUND` over gRPC, with the reason) and whose processor has tensor inputs, as for the
//! REST form ([`super::oip`], whose translation, model lookup, hand-off to the instances and
//! metrics this module shares). Its versions are its service's running versions (`""` means
//! whichever answers); answers carry `x-eas-service`, `x-eas-version` and `x-eas-instance`
//! metadata.
//!
//! # Admission
//! A model call names its model inside the message, so its admission runs in two steps:
//! 1. Before the body is read, its `authorization` metadata (the service token, as the HTTP
//!    header carries it) must open one of the services that take gRPC, else `UNAUTHENTICATED`;
//!    the body is read through that service's admission: the server's body limit
//!    (`RESOURCE_EXHAUSTED`), read timeout (`DEADLINE_EXCEEDED`) and budget for bodies being
//!    read (`UNAVAILABLE`). A client without a token cannot make the server hold a body.
//! 2. Decoded, the request passes the admission of the model it names as a REST request does:
//!    its token (a token that opens another service is `UNAUTHENTICATED`), then for
//!    `ModelInfer` the rate and concurrency limits, routing, keepalive and the instance's queue;
//!    it joins the same dynamic batches as EAS and OIP REST requests.
//!
//! The calls that need no token read at most 64 KiB of body (their messages are empty).
//!
//! # Errors
//! Every refusal is a gRPC status whose message is the reason and whose `eas-error` metadata
//! is the kind of the one table ([`ApiError::status_and_kind`]: `unauthorized`,
//! `rate_limited`, `queue_full`, ...); the code follows the table's HTTP status ([`code`]):
//!
//! | HTTP | gRPC |
//! |---|---|
//! | 400 (malformed, or does not fit the model), other 4xx | `INVALID_ARGUMENT` |
//! | 401 | `UNAUTHENTICATED` |
//! | 404 (no such model, version, or not served over gRPC) | `NOT_FOUND` |
//! | 408 | `DEADLINE_EXCEEDED` |
//! | 413, 429, 450 | `RESOURCE_EXHAUSTED` |
//! | 502, 503 | `UNAVAILABLE` |
//! | 500 (the processor or the server failed) | `INTERNAL` |

#[allow(
    missing_docs,
    dead_code,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::nursery
)]
mod inference;
mod tensors;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Method, Uri, header};
use http_body_util::Full;
use prost::Message as _;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tower::{Layer as _, ServiceExt as _};

use inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use inference::model_metadata_response::TensorMetadata;
use inference::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};

use super::error::QUEUE_FULL_STATUS;
use super::oip::{self, Observation};
use super::{ApiError, Edge};
use crate::admission::{Accept, BodyLayer, DEFAULT_BODY_READ_TIMEOUT, Entered};
use crate::auth::Authenticator;
use crate::directory::Entry;
use crate::outcome::PredictError;

/// The most body bytes a call without a token may send (its message is empty).
const OPEN_BODY_LIMIT: usize = 64 << 10;

/// The methods served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    ServerLive,
    ServerReady,
    ServerMetadata,
    ModelReady,
    ModelMetadata,
    ModelInfer,
}

impl Call {
    const ALL: [Self; 6] = [
        Self::ServerLive,
        Self::ServerReady,
        Self::ServerMetadata,
        Self::ModelReady,
        Self::ModelMetadata,
        Self::ModelInfer,
    ];

    const fn name(self) -> &'static str {
        match self {
            Self::ServerLive => "ServerLive",
            Self::ServerReady => "ServerReady",
            Self::ServerMetadata => "ServerMetadata",
            Self::ModelReady => "ModelReady",
            Self::ModelMetadata => "ModelMetadata",
            Self::ModelInfer => "ModelInfer",
        }
    }

    /// Its request path.
    const fn path(self) -> &'static str {
        match self {
            Self::ServerLive => "/inference.GRPCInferenceService/ServerLive",
            Self::ServerReady => "/inference.GRPCInferenceService/ServerReady",
            Self::ServerMetadata => "/inference.GRPCInferenceService/ServerMetadata",
            Self::ModelReady => "/inference.GRPCInferenceService/ModelReady",
            Self::ModelMetadata => "/inference.GRPCInferenceService/ModelMetadata",
            Self::ModelInfer => "/inference.GRPCInferenceService/ModelInfer",
        }
    }

    fn parse(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.path() == path)
    }

    /// Whether it names a model (and takes the model's token).
    const fn names_a_model(self) -> bool {
        matches!(
            self,
            Self::ModelReady | Self::ModelMetadata | Self::ModelInfer
        )
    }
}

/// Whether a request with these headers is a gRPC call (`application/grpc`, alone or with a
/// `+format` or parameters; not `application/grpc-web`, another protocol).
pub(super) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().strip_prefix(b"application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"+") || rest.starts_with(b";"))
}

/// Whether `entry`'s service takes gRPC calls.
fn serves_grpc(entry: &Entry) -> bool {
    entry.service().spec().metadata.enable_grpc
}

/// The gRPC status of `error`: the code its HTTP status maps to ([`code`]), the message its
/// reason, the `eas-error` metadata its kind.
fn status(error: &ApiError) -> Status {
    let (http, kind) = error.status_and_kind();
    let mut status = Status::new(code(http), error.to_string());
    if let Ok(kind) = kind.parse() {
        status.metadata_mut().insert("eas-error", kind);
    }
    status
}

/// The gRPC code of an HTTP status of the one table; a client's mistake is never `INTERNAL`.
const fn code(http: u16) -> Code {
    match http {
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 | 501 => Code::Unimplemented,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::Aborted,
        412 => Code::FailedPrecondition,
        413 | 429 | QUEUE_FULL_STATUS => Code::ResourceExhausted,
        499 => Code::Cancelled,
        400..=499 => Code::InvalidArgument,
        502 | 503 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// A version asked for: `None` when the message leaves it empty.
fn version(version: &str) -> Option<&str> {
    (!version.is_empty()).then_some(version)
}

/// A gRPC call's body as it was read, for the admission of the model it names.
#[derive(Debug, Clone)]
struct Received(Bytes);

/// Reads gRPC calls' bodies under admission, then lets tonic decode and dispatch them.
#[derive(Clone)]
pub(super) struct Grpc {
    edge: Arc<Edge>,
    server: GrpcInferenceServiceServer<Inference>,
}

impl Grpc {
    pub(super) fn new(edge: Arc<Edge>) -> Self {
        let inference = Inference {
            edge: Arc::clone(&edge),
        };
        // Bodies are read, and bounded, before tonic decodes them (`receive`).
        let server =
            GrpcInferenceServiceServer::new(inference).max_decoding_message_size(usize::MAX);
        Self { edge, server }
    }

    pub(super) async fn serve(self, request: Request) -> Result<Response, Infallible> {
        let Some(call) = Call::parse(request.uri().path()) else {
            let names = Call::ALL.map(Call::name).join(", ");
            let status = Status::unimplemented(format!(
                "{} is not a method of this server; inference.GRPCInferenceService implements \
                 {names}",
                request.uri().path()
            ));
            return Ok(status.into_http());
        };
        let received = match self.receive(call, request).await {
            Ok(received) => received,
            Err(error) => return Ok(status(&error).into_http()),
        };
        let (mut parts, body) = received.into_parts();
        parts.extensions.insert(Received(body.clone()));
        let request = http::Request::from_parts(parts, Full::new(body));
        let Ok(response) = self.server.oneshot(request).await;
        Ok(response.map(axum::body::Body::new))
    }

    /// Reads the body of `call`: through the admission of a service that takes gRPC and whose
    /// token the metadata carries, for a call that names a model; within [`OPEN_BODY_LIMIT`]
    /// otherwise.
    async fn receive(
        &self,
        call: Call,
        request: Request,
    ) -> Result<http::Request<Bytes>, ApiError> {
        let directory = self.edge.directory();
        if !call.names_a_model() {
            let budget = Arc::clone(directory.body_budget());
            let body = BodyLayer::new(OPEN_BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT, budget);
            return Ok(body.layer(Accept).oneshot(request).await?);
        }
        let entries = directory.entries();
        let mut refused = None;
        for entry in entries.values().filter(|e| serves_grpc(e)) {
            let auth = Authenticator::new(entry.service().token());
            match auth.check_headers(&Method::POST, call.path(), request.headers()) {
                Ok(_) => return Ok(entry.admission().enter().receive(request).await?),
                Err(why) => {
                    refused.get_or_insert(why);
                }
            }
        }
        Err(match refused {
            Some(why) => PredictError::Unauthorized(why).into(),
            None => ApiError::NotFound(
                "no service here takes gRPC calls: a service whose spec sets \
                 metadata.enable_grpc does"
                    .into(),
            ),
        })
    }
}

/// The `GRPCInferenceService` methods over the edge's services.
struct Inference {
    edge: Arc<Edge>,
}

impl Inference {
    /// The service a model call names, if it takes gRPC calls.
    fn model(&self, name: &str) -> Result<Arc<Entry>, ApiError> {
        if name.is_empty() {
            return Err(ApiError::BadInference("the request names no model".into()));
        }
        let entry = oip::lookup(&self.edge, name)?;
        if !serves_grpc(&entry) {
            return Err(ApiError::NotFound(format!(
                "service `{name}` does not take gRPC calls (its spec does not set \
                 metadata.enable_grpc); call it over HTTP: POST /v2/models/{name}/infer"
            )));
        }
        Ok(entry)
    }
}

/// Passes a `call` to `entry` through its admission (its token; the body, already read, is
/// handed over again): its layers for the rest of the way, the call's metadata as headers, and
/// the body.
async fn admit(
    entry: &Entry,
    call: Call,
    metadata: MetadataMap,
    extensions: &tonic::Extensions,
) -> Result<(Entered, HeaderMap, Bytes), ApiError> {
    let body = extensions
        .get::<Received>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let mut request = http::Request::new(Full::new(body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = Uri::from_static(call.path());
    *request.headers_mut() = metadata.into_headers();
    let mut layers = entry.admission().enter();
    let (parts, _) = layers.receive(request).await?.into_parts();
    Ok((layers, parts.headers, body))
}

/// `ModelInfer` once its model is found: admission, translation, the instances, the answer;
/// `received` gets the body once admitted.
async fn infer(
    entry: &Entry,
    metadata: MetadataMap,
    extensions: &tonic::Extensions,
    message: ModelInferRequest,
    received: &mut Option<Bytes>,
) -> Result<(oip::Served, ModelInferResponse), ApiError> {
    let (layers, headers, body) = admit(entry, Call::ModelInfer, metadata, extensions).await?;
    *received = Some(body);
    let model = oip::describe(entry, version(&message.model_version))?;
    let mut translated =
        tensors::decode(message, &model.outputs).map_err(ApiError::BadInference)?;
    let body = std::mem::take(&mut translated.body);
    let (served, answer) = oip::predict(layers, body, &headers).await?;
    let name = entry.service().name();
    let version = served.version.to_string();
    let response = tensors::encode(&answer, &translated, name, &version)
        .map_err(|why| oip::broken(served.instance, why))?;
    Ok((served, response))
}

fn tensor_metadata(info: eas_core::processor::TensorInfo) -> TensorMetadata {
    TensorMetadata {
        name: info.name,
        datatype: info.datatype,
        shape: info.shape,
    }
}

type Answer<T> = Result<tonic::Response<T>, Status>;

#[async_trait::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: tonic::Request<ServerLiveRequest>,
    ) -> Answer<ServerLiveResponse> {
        Ok(tonic::Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: tonic::Request<ServerReadyRequest>,
    ) -> Answer<ServerReadyResponse> {
        let ready = self.edge.is_ready();
        Ok(tonic::Response::new(ServerReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: tonic::Request<ServerMetadataRequest>,
    ) -> Answer<ServerMetadataResponse> {
        Ok(tonic::Response::new(ServerMetadataResponse {
            name: "eas".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: oip::EXTENSIONS.map(String::from).to_vec(),
        }))
    }

    async fn model_ready(
        &self,
        request: tonic::Request<ModelReadyRequest>,
    ) -> Answer<ModelReadyResponse> {
        let (metadata, extensions, message) = request.into_parts();
        let ready = async {
            let entry = self.model(&message.name)?;
            admit(&entry, Call::ModelReady, metadata, &extensions).await?;
            // As over REST, less the 503: a model that cannot answer yet is not ready.
            match oip::describe(&entry, version(&message.version)) {
                Ok(_) => Ok(entry.service().is_ready()),
                Err(ApiError::NotReady(_)) => Ok(false),
                Err(error) => Err(error),
            }
        };
        let ready = ready.await.map_err(|e| status(&e))?;
        Ok(tonic::Response::new(ModelReadyResponse { ready }))
    }

    async fn model_metadata(
        &self,
        request: tonic::Request<ModelMetadataRequest>,
    ) -> Answer<ModelMetadataResponse> {
        let (metadata, extensions, message) = request.into_parts();
        let described = async {
            let entry = self.model(&message.name)?;
            admit(&entry, Call::ModelMetadata, metadata, &extensions).await?;
            let model = oip::describe(&entry, version(&message.version))?;
            let versions = oip::versions(&entry);
            Ok::<_, ApiError>((entry.service().name().to_owned(), versions, model))
        };
        let (name, versions, model) = described.await.map_err(|e| status(&e))?;
        Ok(tonic::Response::new(ModelMetadataResponse {
            name,
            versions,
            platform: model.platform,
            inputs: model.inputs.into_iter().map(tensor_metadata).collect(),
            outputs: model.outputs.into_iter().map(tensor_metadata).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: tonic::Request<ModelInferRequest>,
    ) -> Answer<ModelInferResponse> {
        let (metadata, extensions, message) = request.into_parts();
        let entry = self.model(&message.model_name).map_err(|e| status(&e))?;
        let observation = Observation::start(&entry);
        let mut received = None;
        match infer(&entry, metadata, &extensions, message, &mut received).await {
            Ok((served, response)) => {
                // The request log holds the answer as sent; encoded only for a service with one.
                let logged = if entry.service().spec().sinker.is_some() {
                    response.encode_to_vec()
                } else {
                    Vec::new()
                };
                observation.finish(received.as_ref(), Ok(served.instance), &logged);
                let mut response = tonic::Response::new(response);
                served_by(response.metadata_mut(), entry.service().name(), served);
                Ok(response)
            }
            Err(error) => {
                let message = error.to_string();
                observation.finish(received.as_ref(), Err(&error), message.as_bytes());
                Err(status(&error))
            }
        }
    }
}

/// Names who answered in the response metadata, under the keys the HTTP answers use.
fn served_by(metadata: &mut MetadataMap, service: &str, served: oip::Served) {
    if let Ok(value) = service.parse() {
        metadata.insert(super::SERVICE_HEADER, value);
    }
    if let Ok(value) = served.version.to_string().parse() {
        metadata.insert(super::VERSION_HEADER, value);
    }
    if let Ok(value) = served.instance.to_string().parse() {
        metadata.insert(super::INSTANCE_HEADER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_content_types_should_go_to_grpc() {
        let table = [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc; charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpc-web+proto", false),
            ("application/json", false),
        ];
        for (content_type, want) in table {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, content_type.parse().expect("a value"));
            assert_eq!(is_grpc(&headers), want, "{content_type}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn every_status_of_the_table_should_have_a_code_and_client_mistakes_never_internal() {
        let table = [
            (400, Code::InvalidArgument),
            (401, Code::Unauthenticated),
            (404, Code::NotFound),
            (408, Code::DeadlineExceeded),
            (413, Code::ResourceExhausted),
            (422, Code::InvalidArgument),
            (429, Code::ResourceExhausted),
            (QUEUE_FULL_STATUS, Code::ResourceExhausted),
            (500, Code::Internal),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
        ];
        for (http, want) in table {
            assert_eq!(code(http), want, "{http}");
        }
        for http in 400..500 {
            assert_ne!(code(http), Code::Internal, "{http}");
        }
        let refused = status(&PredictError::Unauthorized("missing".into()).into());
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert_eq!(refused.message(), "unauthorized: missing");
        assert_eq!(
            refused
                .metadata()
                .get("eas-error")
                .and_then(|v| v.to_str().ok()),
            Some("unauthorized")
        );
    }

    #[test]
    fn calls_should_parse_from_their_paths() {
        for call in Call::ALL {
            assert_eq!(Call::parse(call.path()), Some(call));
            assert!(call.path().ends_with(call.name()));
        }
        assert_eq!(
            Call::parse("/inference.GRPCInferenceService/ModelConfig"),
            None
        );
    }
}
