//! Admission: the tower layers a request passes before its processor sees it, built for each
//! service from its spec by one function ([`Admission::new`]), in this order:
//!
//! | layer | decides | refuses with | HTTP predict | queue protocol | queue consumer, batch job |
//! |---|---|---|---|---|---|
//! | [`auth`] | token or EAS signature, from the headers before the body is read | [`PredictError::Unauthorized`] | yes | yes | no |
//! | [`body`] | `Content-Length` and the body read: size limit, read timeout, the server's budget for bodies being read, signed `Content-MD5` | `BodyTooLarge`, `BodyTimeout`, `Busy`, `BadBody` | yes | yes | no |
//! | [`rate`] | `networking.gateway_policy.rate_limit` | `RateLimited` | yes | no | no |
//! | [`concurrency`] | `networking.gateway_policy.concurrency_limit` | `ConcurrencyLimited` | yes | no | no |
//! | [`route`] | readiness: the least-loaded ready instance | `NoReadyInstance` | yes | no | no (each consumer has its instance) |
//! | [`KeepaliveLayer`](crate::replica::admission::KeepaliveLayer) | `rpc.keepalive` | `Timeout` | yes | no | yes |
//! | [`Submit`](crate::replica::admission::Submit) | instance-level admission: readiness, `rpc.rate_limit`, `rpc.max_queue_size` ([`Replica::submit`](crate::replica::Replica::submit)) | `Replica(..)` | yes | no | yes |
//!
//! So "where is the 429 decided" has one answer per kind: [`rate`] (the service's rate),
//! [`concurrency`] (its concurrency), and the instance (its own `rpc.rate_limit`). Warm-up
//! requests run on the instance's processor before it is ready, so they pass no layer; they
//! are built with the same [`crate::request::build`] as every other request.
//!
//! The last two are the instance's own ([`crate::replica::admission`]), below the service,
//! so the queue consumer reaches them without coming back up here. Every layer speaks
//! [`PredictError`] ([`crate::outcome`]); only [`crate::http`] turns it into a status. The
//! stacks of a service are swapped atomically by [`Admission::update`] when its limits
//! change: a request takes both of its stacks at once ([`Admission::enter`]) and finishes on
//! them. Connection-level bounds (open connections, header read timeout) are the accept
//! loop's, in `crate::http`.

pub mod auth;
pub mod body;
pub mod concurrency;
pub mod rate;
pub mod route;

use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use eas_core::processor::Request;
use eas_core::spec::ServiceSpec;
use tower::{Layer, Service as _, ServiceExt as _};

pub use auth::AuthLayer;
pub use body::{BodyBudget, BodyLayer};
pub use concurrency::ConcurrencyLayer;
pub use rate::RateLimitLayer;
pub use route::RouteLayer;

use crate::auth::Authenticator;
use crate::outcome::{Answered, PredictError};
use crate::replica::admission as replica;
use crate::service::Service;

/// The default largest request body: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// The default time a client has to send a request's body once its headers arrived.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The default bound on the bytes of all request bodies being read at once: 256 MiB.
pub const DEFAULT_MAX_BUFFERED_BODY_BYTES: usize = 256 << 20;

/// What the server sets for every service's body layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BodyLimits {
    /// The largest body, in bytes.
    pub max_bytes: usize,
    /// How long the body may take to arrive.
    pub read_timeout: Duration,
    /// The most bytes of bodies being read at once, all services together ([`BodyBudget`]).
    pub max_buffered_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BODY_BYTES,
            read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BODY_BYTES,
        }
    }
}

/// The layers HTTP requests pass before their body is a processor request: [`auth`], then
/// [`body`].
pub type ReceiveStack = auth::Auth<body::ReadBody<Accept>>;

/// The layers a processor request passes on its way to an instance: [`rate`],
/// [`concurrency`], [`route`], then the instance's own ([`crate::replica::admission`]).
pub type PredictStack = rate::RateLimit<concurrency::Concurrency<route::Route<replica::Stack>>>;

/// Hands the request back once the layers above let it through.
#[derive(Debug, Clone, Copy, Default)]
pub struct Accept;

impl tower::Service<http::Request<Bytes>> for Accept {
    type Response = http::Request<Bytes>;
    type Error = PredictError;
    type Future = std::future::Ready<Result<Self::Response, PredictError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        std::future::ready(Ok(request))
    }
}

/// The stacks of one service, built together from one spec.
#[derive(Debug, Clone)]
struct Stacks {
    receive: ReceiveStack,
    predict: PredictStack,
}

/// One service's admission: its layers, swappable as a whole.
#[derive(Debug)]
pub struct Admission {
    service: Arc<Service>,
    body: BodyLayer,
    stacks: RwLock<Stacks>,
}

impl Admission {
    /// The layers of `service`, from its spec and the server's body limits; `budget` bounds the
    /// bodies being read across every service of the server.
    #[must_use]
    pub fn new(service: Arc<Service>, body: BodyLimits, budget: Arc<BodyBudget>) -> Self {
        let body = BodyLayer::new(body.max_bytes, body.read_timeout, budget);
        let stacks = build(&service, &service.spec(), &body);
        Self {
            service,
            body,
            stacks: RwLock::new(stacks),
        }
    }

    /// The service admitted to.
    #[must_use]
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Rebuilds the layers from `spec` and swaps them in at once; requests in flight finish
    /// on the old ones. What changes: `networking.gateway_policy` (rate and concurrency
    /// limits) and `rpc.keepalive`. The token and the replicas' own limits (`rpc.rate_limit`,
    /// `rpc.max_queue_size`) stay as the service started: changing them needs new replicas.
    pub fn update(&self, spec: &ServiceSpec) {
        let stacks = build(&self.service, spec, &self.body);
        *self.stacks.write().unwrap_or_else(|e| e.into_inner()) = stacks;
    }

    fn stacks(&self) -> std::sync::RwLockReadGuard<'_, Stacks> {
        self.stacks.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The layers one predict request passes, taken together under one lock, so that a swap
    /// in between cannot give it the old limits on the way in and the new ones after.
    #[must_use]
    pub fn enter(&self) -> Entered {
        let stacks = self.stacks();
        Entered {
            receive: stacks.receive.clone(),
            predict: stacks.predict.clone(),
        }
    }

    /// Authenticates an HTTP request and reads its body ([`auth`], [`body`]); what the queue
    /// protocol does before its own dispatch.
    pub async fn receive<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Request<Bytes>, PredictError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<tower::BoxError>,
    {
        self.enter().receive(request).await
    }

    /// Runs a request through the service's limits to an instance and waits for its answer
    /// ([`rate`] to the instance's admission): the entry for code that calls a service in
    /// process, already trusted (no token, no body to read). HTTP goes through
    /// [`enter`](Self::enter).
    pub async fn predict(&self, request: Request) -> Result<Answered, PredictError> {
        let predict = self.stacks().predict.clone();
        predict.oneshot(request).await
    }
}

/// One request's copy of its service's layers ([`Admission::enter`]).
#[derive(Debug)]
pub struct Entered {
    receive: ReceiveStack,
    predict: PredictStack,
}

impl Entered {
    /// Authenticates the request and reads its body ([`auth`], [`body`]); then
    /// [`predict`](Self::predict) with what came in.
    pub async fn receive<B>(
        &mut self,
        request: http::Request<B>,
    ) -> Result<http::Request<Bytes>, PredictError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<tower::BoxError>,
    {
        tower::ServiceExt::<http::Request<B>>::ready(&mut self.receive)
            .await?
            .call(request)
            .await
    }

    /// Runs the received request through the service's limits to an instance and waits for
    /// its answer ([`rate`] to the instance's admission).
    pub async fn predict(self, request: Request) -> Result<Answered, PredictError> {
        self.predict.oneshot(request).await
    }
}

/// The one function that builds a service's layers from its spec.
fn build(service: &Arc<Service>, spec: &ServiceSpec, body: &BodyLayer) -> Stacks {
    let name = service.name();
    let gateway = spec
        .networking
        .as_ref()
        .and_then(|n| n.gateway_policy.as_ref());
    let rate = gateway
        .and_then(|g| g.rate_limit.as_ref())
        .filter(|l| l.enable)
        .map(|l| l.limit);
    let concurrency = gateway
        .and_then(|g| g.concurrency_limit.as_ref())
        .filter(|l| l.enable)
        .map(|l| l.limit);
    let receive = AuthLayer::new(Authenticator::new(service.token())).layer(body.layer(Accept));
    let predict = tower::ServiceBuilder::new()
        .layer(RateLimitLayer::new(name, rate))
        .layer(ConcurrencyLayer::new(name, concurrency))
        .layer(RouteLayer::new(Arc::clone(service)))
        .service(replica::stack(spec.metadata.rpc.keepalive));
    Stacks { receive, predict }
}
