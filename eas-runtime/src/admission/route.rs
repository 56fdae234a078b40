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
    shared: Arc<Shared>,
}

/// One allocation for what every clone shares, so a request clones one `Arc`.
#[derive(Debug)]
struct Shared {
    service: Arc<EasService>,
    next: AtomicUsize,
}

impl RouteLayer {
    /// Routes among the instances of `service`.
    #[must_use]
    pub fn new(service: Arc<EasService>) -> Self {
        Self {
            shared: Arc::new(Shared {
                service,
                next: AtomicUsize::new(0),
            }),
        }
    }

    /// The least-loaded ready instance; ties go round-robin.
    fn choose(&self) -> Result<Replica, PredictError> {
        let service = &self.shared.service;
        let instances = service.instances();
        let n = instances.len();
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| &instances[(start + k) % n])
            .filter(|i| i.is_ready())
            .min_by_key(|i| i.load())
            .cloned()
            .ok_or_else(|| PredictError::NoReadyInstance {
                service: service.name().to_owned(),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use eas_core::spec::ServiceSpec;
    use eas_core::testing::FailingProcessor;
    use tower::{ServiceExt as _, service_fn};

    use super::*;
    use crate::metrics::Metrics;
    use crate::registry::ProcessorRegistry;
    use crate::service::LocalPaths;

    fn service(processor: &str, instances: u32) -> Arc<EasService> {
        let spec = ServiceSpec::from_json_value(serde_json::json!({
            "metadata": {"name": "svc", "instance": instances},
            "processor": processor, "model_path": "."
        }))
        .expect("spec");
        let mut registry = ProcessorRegistry::with_builtins();
        registry.register("broken", |_| {
            Ok(Box::new(FailingProcessor::failing_to_initialize()))
        });
        let service = EasService::start(
            spec,
            &registry,
            &LocalPaths::new(),
            Arc::new(Metrics::new()),
        )
        .expect("starts");
        Arc::new(service)
    }

    async fn settle(service: &EasService) {
        for _ in 0..500 {
            if service.instances().iter().all(Replica::is_ready) || service.is_dead() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn no_ready_replica_should_be_refused_saying_why_each_is_down() {
        let service = service("broken", 2);
        settle(&service).await;
        let inner = service_fn(|_: Routed| async { Ok::<_, PredictError>(()) });
        let refused = RouteLayer::new(Arc::clone(&service))
            .layer(inner)
            .oneshot(Request::new("x"))
            .await
            .expect_err("none ready");
        let PredictError::NoReadyInstance {
            service: name,
            states,
        } = refused
        else {
            panic!("{refused:?}");
        };
        assert_eq!(name, "svc");
        assert!(states.contains("instance 0 is failed to start"), "{states}");
        assert!(states.contains("instance 1 is failed to start"), "{states}");
    }

    #[tokio::test]
    async fn requests_should_spread_over_ready_replicas() {
        let service = service("echo", 3);
        settle(&service).await;
        let inner =
            service_fn(
                |routed: Routed| async move { Ok::<_, PredictError>(routed.instance.index()) },
            );
        let route = RouteLayer::new(Arc::clone(&service)).layer(inner);
        let mut chosen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            chosen.insert(
                route
                    .clone()
                    .oneshot(Request::new("x"))
                    .await
                    .expect("routed"),
            );
        }
        assert_eq!(
            chosen.into_iter().collect::<Vec<_>>(),
            vec![0, 1, 2],
            "idle replicas take turns"
        );
    }
}
