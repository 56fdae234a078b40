//! Readiness and routing: a request goes to the least-loaded ready instance of its service
//! (ties round-robin), or is refused with [`PredictError::NoReadyInstance`] when none is ready.
//! This is where service groups, versions and mirroring will choose among services.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use eas_core::processor::Request;
use tower::{Layer, Service};

use crate::outcome::PredictError;
use crate::outcome::future::Decided;
use crate::replica::admission::Routed;
use crate::replica::{Replica, describe_state};
use crate::service::Service as EasService;

/// Adds a [`Route`] over one service's instances.
#[derive(Debug, Clone)]
pub struct RouteLayer {
    service: Arc<EasService>,
    next: Arc<AtomicUsize>,
}

impl RouteLayer {
    /// Routes among the instances of `service`.
    #[must_use]
    pub fn new(service: Arc<EasService>) -> Self {
        Self {
            service,
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The least-loaded ready instance; ties go round-robin.
    fn choose(&self) -> Result<Replica, PredictError> {
        let instances = self.service.instances();
        let n = instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| &instances[(start + k) % n])
            .filter(|i| i.is_ready())
            .min_by_key(|i| i.load())
            .cloned()
            .ok_or_else(|| PredictError::NoReadyInstance {
                service: self.service.name().to_owned(),
                states: instances
                    .iter()
                    .map(|i| format!("instance {} is {}", i.index(), describe_state(&i.state())))
                    .collect::<Vec<_>>()
                    .join("; "),
            })
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Route {
            inner,
            layer: self.clone(),
        }
    }
}

/// Hands each request to the instance chosen for it.
#[derive(Debug, Clone)]
pub struct Route<S> {
    inner: S,
    layer: RouteLayer,
}

impl<S, T> Service<Request> for Route<S>
where
    S: Service<Routed, Response = T, Error = PredictError>,
{
    type Response = T;
    type Error = PredictError;
    type Future = Decided<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.layer.choose() {
            Ok(instance) => Decided::admitted(self.inner.call(Routed { request, instance })),
            Err(refused) => Decided::refused(refused),
        }
    }
}
