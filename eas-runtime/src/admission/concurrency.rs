//! The service's concurrency limit (`networking.gateway_policy.concurrency_limit`): tower's
//! `ConcurrencyLimit` under tower's `LoadShed`, so a request over the limit is refused at once
//! with [`PredictError::ConcurrencyLimited`] instead of waiting for a permit.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::{Layer, Service};

use crate::outcome::PredictError;
use crate::outcome::future::{Refined, refine};

/// Adds a [`Concurrency`] limit (no limit when built with `None`).
#[derive(Debug, Clone)]
pub struct ConcurrencyLayer {
    /// The permits and the refusal past them; `None`: no limit.
    limit: Option<(Arc<Semaphore>, Arc<PredictError>)>,
}

impl ConcurrencyLayer {
    /// At most `limit` requests of `service` at a time, or no limit.
    #[must_use]
    pub fn new(service: &str, limit: Option<u32>) -> Self {
        Self {
            limit: limit.map(|l| {
                let refusal = PredictError::ConcurrencyLimited {
                    service: service.to_owned(),
                    limit: l,
                };
                (Arc::new(Semaphore::new(l as usize)), Arc::new(refusal))
            }),
        }
    }
}

impl<S> Layer<S> for ConcurrencyLayer {
    type Service = Concurrency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = match &self.limit {
            Some((semaphore, refusal)) => Limited::Yes(
                LoadShed::new(ConcurrencyLimit::with_semaphore(
                    inner,
                    Arc::clone(semaphore),
                )),
                Arc::clone(refusal),
            ),
            None => Limited::No(inner),
        };
        Concurrency { inner }
    }
}

/// Refuses requests past the limit; passes the others on, holding a permit until their
/// answer.
#[derive(Debug, Clone)]
pub struct Concurrency<S> {
    inner: Limited<S>,
}

#[derive(Debug, Clone)]
enum Limited<S> {
    Yes(LoadShed<ConcurrencyLimit<S>>, Arc<PredictError>),
    No(S),
}

pin_project_lite::pin_project! {
    /// The answer of a [`Concurrency`]-limited service.
    pub struct ConcurrencyFuture<L, F> {
        #[pin]
        limited: Option<Refined<L>>,
        #[pin]
        unlimited: Option<F>,
    }
}

impl<L, F, T> std::future::Future for ConcurrencyFuture<L, F>
where
    L: std::future::Future<Output = Result<T, tower::BoxError>>,
    F: std::future::Future<Output = Result<T, PredictError>>,
{
    type Output = Result<T, PredictError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(limited) = this.limited.as_pin_mut() {
            return limited.poll(cx);
        }
        this.unlimited
            .as_pin_mut()
            .expect("a ConcurrencyFuture holds one of its futures")
            .poll(cx)
    }
}

impl<S, R, T> Service<R> for Concurrency<S>
where
    S: Service<R, Response = T, Error = PredictError>,
{
    type Response = T;
    type Error = PredictError;
    type Future =
        ConcurrencyFuture<<LoadShed<ConcurrencyLimit<S>> as Service<R>>::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.inner {
            Limited::Yes(inner, refusal) => inner.poll_ready(cx).map_err(|e| refine(e, refusal)),
            Limited::No(inner) => inner.poll_ready(cx),
        }
    }

    fn call(&mut self, request: R) -> Self::Future {
        match &mut self.inner {
            Limited::Yes(inner, refusal) => ConcurrencyFuture {
                limited: Some(Refined::new(inner.call(request), Arc::clone(refusal))),
                unlimited: None,
            },
            Limited::No(inner) => ConcurrencyFuture {
                limited: None,
                unlimited: Some(inner.call(request)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{ServiceExt as _, service_fn};

    use super::*;

    fn slow() -> impl Service<u32, Response = u32, Error = PredictError, Future: Send> + Clone + Send
    {
        service_fn(|n: u32| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, PredictError>(n)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_limit_should_be_refused_at_once_and_admitted_after() {
        let stack = ConcurrencyLayer::new("echo", Some(2)).layer(slow());
        let first = tokio::spawn(stack.clone().oneshot(1));
        let second = tokio::spawn(stack.clone().oneshot(2));
        tokio::task::yield_now().await;
        let refused = stack.clone().oneshot(3).await.expect_err("over the limit");
        assert_eq!(
            refused,
            PredictError::ConcurrencyLimited {
                service: "echo".into(),
                limit: 2
            }
        );
        assert_eq!(first.await.expect("join"), Ok(1));
        assert_eq!(second.await.expect("join"), Ok(2));
        assert_eq!(stack.oneshot(4).await, Ok(4), "permits come back");
    }

    #[tokio::test(start_paused = true)]
    async fn inner_errors_should_pass_through_unchanged() {
        let failing =
            service_fn(|_: u32| async { Err::<u32, _>(PredictError::BadBody("x".into())) });
        let stack = ConcurrencyLayer::new("echo", Some(1)).layer(failing);
        assert_eq!(
            stack.oneshot(1).await,
            Err(PredictError::BadBody("x".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_should_admit_everything_at_once() {
        let stack = ConcurrencyLayer::new("echo", None).layer(slow());
        let all: Vec<_> = (0..100)
            .map(|n| tokio::spawn(stack.clone().oneshot(n)))
            .collect();
        for (n, task) in all.into_iter().enumerate() {
            assert_eq!(task.await.expect("join"), Ok(n as u32));
        }
    }
}
