//! The HTTP edge: the only module that serves HTTP and knows status codes. Its routes are an
//! axum [`Router`] (test it with `oneshot`, no socket; the server puts it on one).
//!
//! | route | what |
//! |---|---|
//! | `POST /api/predict/{service}[/{sub-path}]` | run the service's processor on the body (`predict.rs`) |
//! | any method on `/api/predict/{service}[/sink]` of an async service | the queue service ([`queue`]) |
//! | `GET /api/v1/servicediscovery/upstreams/{service}` | the service's ready endpoints, as the EAS SDK's direct mode reads them |
//! | `GET /api/services` | services and the state of each instance (JSON) |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /healthz` | liveness: 200 while the server runs |
//! | `GET /readyz` | readiness: 200 when every service has a ready instance, else 503 |
//! | `GET /_eas/cache/v1/object?key=URI` | the memory cache, to peers holding the cache secret (`eas_storage::peer`; with [`Edge::with_peer_cache`]) |
//!
//! Service names may contain dots and slashes: a predict path is matched against the longest
//! service name it starts with, and the rest is handed to the processor as the request path.
//! Each predict or queue request passes its service's [`Admission`] layers; every reason it
//! can be refused for maps to a status in one table, [`error`].

mod admin;
pub mod error;
mod predict;
pub mod queue;
mod serve;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::{any, get};

pub use error::ApiError;
pub use serve::ConnectionLimits;
pub(crate) use serve::accept_loop;

use eas_storage::MemoryCache;

use crate::admission::{Admission, BodyBudget, BodyLimits};
use crate::metrics::{Metrics, ServiceMetrics};
use crate::service::Service;

/// One service as the edge serves it: its admission layers and its request metrics.
#[derive(Debug)]
struct Entry {
    admission: Admission,
    metrics: ServiceMetrics,
}

/// Services by name, and what every route shares.
pub struct Edge {
    entries: BTreeMap<String, Entry>,
    services: BTreeMap<String, Arc<Service>>,
    metrics: Arc<Metrics>,
    body_budget: Arc<BodyBudget>,
    local_addr: OnceLock<SocketAddr>,
    peer_cache: Option<Arc<MemoryCache>>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("services", &self.services.keys().collect::<Vec<_>>())
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
        let mut by_name = BTreeMap::new();
        for service in services {
            let name = service.name().to_owned();
            if by_name.insert(name.clone(), Arc::new(service)).is_some() {
                return Err(crate::Error::DuplicateService(name));
            }
        }
        let body_budget = Arc::new(BodyBudget::new(body.max_buffered_bytes));
        let entries = by_name
            .iter()
            .map(|(name, service)| {
                let instances = service.instances().len() as u32;
                let entry = Entry {
                    admission: Admission::new(Arc::clone(service), body, Arc::clone(&body_budget)),
                    metrics: ServiceMetrics::new(&metrics, name, instances),
                };
                (name.clone(), entry)
            })
            .collect();
        Ok(Self {
            entries,
            services: by_name,
            metrics,
            body_budget,
            local_addr: OnceLock::new(),
            peer_cache: None,
        })
    }

    /// Serves `cache` to the peers of this deployment (those holding its secret) at
    /// `eas_storage::peer::PATH`.
    #[must_use]
    pub fn with_peer_cache(mut self, cache: Arc<MemoryCache>) -> Self {
        self.peer_cache = Some(cache);
        self
    }

    /// The routes, sharing this edge.
    pub fn router(self: &Arc<Self>) -> Router {
        let router = Router::new()
            .route("/api/predict/{*path}", any(predict::predict))
            .route(
                "/api/v1/servicediscovery/upstreams/{*service}",
                get(admin::discovery),
            )
            .route("/api/services", get(admin::status))
            .route("/metrics", get(admin::metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(admin::readiness))
            .fallback(|| async {
                ApiError::NotFound("no such route; predict with POST /api/predict/{service}".into())
            })
            .with_state(Arc::clone(self));
        match &self.peer_cache {
            Some(cache) => router.merge(eas_storage::peer::router(Arc::clone(cache))),
            None => router,
        }
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

    /// The admission layers of the service called `name`.
    #[must_use]
    pub fn admission(&self, name: &str) -> Option<&Admission> {
        self.entries.get(name).map(|e| &e.admission)
    }

    /// The bytes of request bodies being read now, and their bound.
    #[must_use]
    pub fn body_budget(&self) -> &BodyBudget {
        &self.body_budget
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

    /// The entry a predict path names, and the rest of the path: the longest service name
    /// that is the path or a prefix of it followed by `/`.
    fn find<'a>(&'a self, path: &'a str) -> Option<(&'a Entry, &'a str)> {
        let path = path.trim_start_matches('/');
        let mut end = path.len();
        loop {
            let candidate = &path[..end];
            if let Some(entry) = self.entries.get(candidate) {
                return Some((entry, path[end..].trim_start_matches('/')));
            }
            end = candidate.rfind('/')?;
        }
    }
}
