//! The HTTP edge: the only module that serves HTTP and knows status codes. Its routes are an
//! axum [`Router`] (test it with `oneshot`, no socket; the server puts it on one).
//!
//! | route | what |
//! |---|---|
//! | `POST /api/predict/{service}[/{sub-path}]` | run the service's processor on the body (`predict.rs`) |
//! | any method on `/api/predict/{service}[/sink]` of an async service | the queue service ([`queue`]) |
//! | `GET /v2/health/{live,ready}`, `GET /v2`, `GET /v2/models/{service}[/versions/1][/ready]`, `POST /v2/models/{service}[/versions/1]/infer` | the Open Inference Protocol v2 (KServe v2, Triton) with binary tensors, for services with tensor inputs; model routes behind the service's token and admission (`oip.rs`) |
//! | `GET /api/v1/servicediscovery/upstreams/{service}` | the service's ready endpoints, as the EAS SDK's direct mode reads them |
//! | `GET /api/services` | services and the state of each instance (JSON) |
//! | `GET /metrics` | Prometheus metrics |
//! | `/api/v2/services...` | the control API, behind the admin token ([`Edge::with_control`]; `control.rs`) |
//! | `/console...` | the web console, behind the admin token (with the control API; `console.rs`) |
//! | `/api/v2/benchmark-tasks...` | stress tests of this platform's services, behind the admin token ([`Edge::with_benchmarks`]; `benchmark.rs`) |
//! | `GET /healthz` | liveness: 200 while the server runs |
//! | `GET /readyz` | readiness: 200 when every service has a ready instance, else 503 |
//! | `GET /_eas/cache/v1/object?key=URI` | the memory cache, to peers holding the cache secret (`eas_storage::peer`; with [`Edge::with_peer_cache`]) |
//! | any request with `Content-Type: application/grpc` | the Open Inference Protocol's `inference.GRPCInferenceService` (tonic), for services with `metadata.enable_grpc`; behind the service's token and admission (`grpc.rs`) |
//!
//! gRPC shares the port: the listener speaks HTTP/1.1 and HTTP/2, and a request goes to the
//! gRPC service or the routes by its content type.
//!
//! Service names may contain dots and slashes: a predict path is matched against the longest
//! service name it starts with, and the rest is handed to the processor as the request path.
//! Each predict or queue request passes its service's [`Admission`] layers; every reason it
//! can be refused for maps to a status in one table, [`error`].

mod admin;
mod benchmark;
mod console;
mod control;
pub mod error;
mod gate;
mod grpc;
mod oip;
mod predict;
pub mod queue;
mod routes;
mod serve;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::routing::{any, get};

pub use error::ApiError;
pub use serve::ConnectionLimits;
pub(crate) use serve::accept_loop;

use eas_storage::MemoryCache;

use crate::admission::{Admission, BodyBudget, BodyLimits};
use crate::control::ControlPlane;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::service::Service;

/// The response header naming the service that answered.
pub const SERVICE_HEADER: &str = "x-eas-service";
/// The response header naming the version of the service that answered.
pub const VERSION_HEADER: &str = "x-eas-version";
/// The response header naming the instance (its index) that answered.
pub const INSTANCE_HEADER: &str = "x-eas-instance";

/// Names who answered a predict request in its response headers: the service, its version and
/// the instance ([`SERVICE_HEADER`], [`VERSION_HEADER`], [`INSTANCE_HEADER`]). On every answer,
/// so nothing is parsed or formatted here that can be made once.
pub(crate) fn served_by(
    headers: &mut axum::http::HeaderMap,
    service: &Service,
    version: u32,
    instance: u32,
) {
    const SERVICE: HeaderName = HeaderName::from_static(SERVICE_HEADER);
    const VERSION: HeaderName = HeaderName::from_static(VERSION_HEADER);
    const INSTANCE: HeaderName = HeaderName::from_static(INSTANCE_HEADER);
    if let Some(value) = service.name_header() {
        headers.insert(SERVICE, value.clone());
    }
    headers.insert(VERSION, small_number(version));
    headers.insert(INSTANCE, small_number(instance));
}

/// `n` as a header value, without formatting it for the numbers most answers carry.
fn small_number(n: u32) -> HeaderValue {
    const SMALL: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| SMALL.get(i))
        .map_or_else(|| HeaderValue::from(n), |s| HeaderValue::from_static(s))
}

/// Services by name, and what every route shares.
pub struct Edge {
    directory: Arc<Directory>,
    local_addr: OnceLock<SocketAddr>,
    peer_cache: Option<Arc<MemoryCache>>,
    control: Option<(Arc<ControlPlane>, String)>,
    benchmarks: Option<Arc<crate::stress::BenchmarkTasks>>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field(
                "services",
                &self.directory.entries().keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// An edge over `services`, each behind admission layers built from its spec and `body`.
    pub fn new(
        services: Vec<Service>,
        metrics: Arc<Metrics>,
        body: BodyLimits,
    ) -> crate::Result<Self> {
        let directory = Directory::new(metrics, body);
        for service in services {
            directory.insert(service)?;
        }
        Ok(Self::over(Arc::new(directory)))
    }

    /// An edge over the services of `directory`, which may change while it serves.
    #[must_use]
    pub fn over(directory: Arc<Directory>) -> Self {
        Self {
            directory,
            local_addr: OnceLock::new(),
            peer_cache: None,
            control: None,
            benchmarks: None,
        }
    }

    /// Serves the control API of `plane` behind the admin `token`.
    #[must_use]
    pub fn with_control(mut self, plane: Arc<ControlPlane>, token: String) -> Self {
        self.control = Some((plane, token));
        self
    }

    /// Serves the benchmark-task API over `tasks`, behind the control API's admin token (so
    /// only with [`with_control`](Self::with_control)).
    #[must_use]
    pub fn with_benchmarks(mut self, tasks: Arc<crate::stress::BenchmarkTasks>) -> Self {
        self.benchmarks = Some(tasks);
        self
    }

    /// The benchmark tasks, when the edge serves their API.
    #[must_use]
    pub fn benchmarks(&self) -> Option<&Arc<crate::stress::BenchmarkTasks>> {
        self.benchmarks.as_ref()
    }

    /// Serves `cache` to the peers of this deployment (those holding its secret) at
    /// `eas_storage::peer::PATH`.
    #[must_use]
    pub fn with_peer_cache(mut self, cache: Arc<MemoryCache>) -> Self {
        self.peer_cache = Some(cache);
        self
    }

    /// The routes, sharing this edge; gRPC calls (by their content type) go to the Open
    /// Inference Protocol's gRPC service.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback_service(self.routes())
    }

    /// The same as one service, which the server's connections call without a router around
    /// it (one route lookup and one boxed clone fewer per request).
    pub(crate) fn routes(self: &Arc<Self>) -> routes::Routes {
        // `/api/predict/...` is dispatched by `Routes` itself, before this router.
        let router = Router::new()
            .route(
                "/api/v1/servicediscovery/upstreams/{*service}",
                get(admin::discovery),
            )
            .route("/v2", get(oip::server_metadata))
            .route("/v2/health/live", get(oip::live))
            .route("/v2/health/ready", get(oip::ready))
            .route("/v2/models/{*rest}", any(oip::model))
            .route("/api/services", get(admin::status))
            .route("/metrics", get(admin::metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(admin::readiness))
            .fallback(|| async {
                ApiError::NotFound("no such route; predict with POST /api/predict/{service}".into())
            })
            .with_state(Arc::clone(self));
        // One gate for every route behind the admin token: failed attempts count together.
        let gate = self
            .control
            .as_ref()
            .map(|(_, token)| Arc::new(gate::AdminGate::new(token.clone())));
        let router = match (&self.control, &gate) {
            (Some((plane, _)), Some(gate)) => router
                .merge(control::router(Arc::clone(plane), Arc::clone(gate)))
                .merge(console::router(
                    Arc::clone(plane),
                    Arc::clone(gate),
                    Arc::downgrade(self),
                )),
            _ => router,
        };
        let router = match (&self.benchmarks, &gate) {
            (Some(tasks), Some(gate)) => router.merge(benchmark::router(
                Arc::clone(tasks),
                Arc::clone(gate),
                Arc::downgrade(self),
            )),
            _ => router,
        };
        let router = match &self.peer_cache {
            Some(cache) => router.merge(eas_storage::peer::router(Arc::clone(cache))),
            None => router,
        };
        routes::Routes::new(router, Arc::clone(self))
    }

    /// Records the address the server listens on, for service discovery answers.
    pub fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.local_addr.set(addr);
    }

    /// The services now, by name.
    #[must_use]
    pub fn services(&self) -> BTreeMap<String, Arc<Service>> {
        self.directory.services()
    }

    /// The table of services the edge serves.
    #[must_use]
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// The admission layers of the service called `name`.
    #[must_use]
    pub fn admission(&self, name: &str) -> Option<Arc<Admission>> {
        self.directory.get(name).map(|e| Arc::clone(e.admission()))
    }

    /// The bytes of request bodies being read now, and their bound.
    #[must_use]
    pub fn body_budget(&self) -> &BodyBudget {
        self.directory.body_budget()
    }

    /// The metrics every route records into.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.directory.metrics()
    }

    /// Whether every service has at least one ready instance (a service scaled to zero
    /// on purpose counts as ready: it is where it was asked to be).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.directory
            .entries()
            .values()
            .all(|e| e.service().is_ready() || e.service().instances().is_empty())
    }
}
