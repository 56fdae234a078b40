//! Replica-level admission, where every request ends up and where the queue consumer and
//! the batch job enter (they are already authenticated and admitted): the service's
//! `rpc.keepalive` ([`KeepaliveLayer`]: [`PredictError::Timeout`] naming the instance), then
//! [`Submit`], which hands the request to its instance ([`Replica::submit`], which may refuse:
//! not ready, `rpc.rate_limit`, `rpc.max_queue_size`) and waits for the processor's answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use eas_core::processor::Request;
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use super::{Admitted, Failure, Replica, Reply};
use crate::outcome::{Answered, PredictError};

/// A request and the instance that takes it.
#[derive(Debug)]
pub struct Routed {
    /// The request.
    pub request: Request,
    /// The instance that takes it.
    pub instance: Replica,
}

/// The instance-level stack: [`KeepaliveLayer`] over [`Submit`].
pub type Stack = Keepalive<Submit>;

/// The instance-level stack with answers due within `keepalive` (call it with a [`Routed`]).
#[must_use]
pub fn stack(keepalive: Duration) -> Stack {
    KeepaliveLayer::new(keepalive).layer(Submit)
}

/// Adds a [`Keepalive`] timeout.
#[derive(Debug, Clone, Copy)]
pub struct KeepaliveLayer {
    keepalive: Duration,
}

impl KeepaliveLayer {
    /// Answers must come within `keepalive`.
    #[must_use]
    pub fn new(keepalive: Duration) -> Self {
        Self { keepalive }
    }
}

impl<S> Layer<S> for KeepaliveLayer {
    type Service = Keepalive<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Keepalive {
            inner,
            keepalive: self.keepalive,
        }
    }
}

/// Bounds the time a request waits for its answer.
#[derive(Debug, Clone)]
pub struct Keepalive<S> {
    inner: S,
    keepalive: Duration,
}

impl<S, T> Service<Routed> for Keepalive<S>
where
    S: Service<Routed, Response = T, Error = PredictError>,
{
    type Response = T;
    type Error = PredictError;
    type Future = KeepaliveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, routed: Routed) -> Self::Future {
        let instance = routed.instance.index();
        KeepaliveFuture {
            keepalive: self.keepalive,
            instance,
            inner: self.inner.call(routed),
            timer: None,
        }
    }
}

pin_project! {
    /// The answer of [`Keepalive`], or [`PredictError::Timeout`] at its deadline. The timer is
    /// armed (from the first poll, which follows the call at once) only when the answer is not
    /// there then: an instance that answers at once (an inline processor) costs no timer and
    /// no clock read.
    pub struct KeepaliveFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        timer: Option<Sleep>,
        keepalive: Duration,
        instance: u32,
    }
}

impl<F, T> Future for KeepaliveFuture<F>
where
    F: Future<Output = Result<T, PredictError>>,
{
    type Output = Result<T, PredictError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(answer) = this.inner.poll(cx) {
            return Poll::Ready(answer);
        }
        // Past the clock's range (a keepalive of centuries): no deadline.
        if this.timer.is_none()
            && let Some(deadline) = Instant::now().checked_add(*this.keepalive)
        {
            this.timer.set(Some(tokio::time::sleep_until(deadline)));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(PredictError::Timeout {
                keepalive: *this.keepalive,
                instance: *this.instance,
            })),
            _ => Poll::Pending,
        }
    }
}

/// Submits each request to its instance; a `tower::Service`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Submit;

impl Service<Routed> for Submit {
    type Response = Answered;
    type Error = PredictError;
    type Future = SubmitFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, routed: Routed) -> Self::Future {
        let instance = routed.instance.index();
        let version = routed.instance.version();
        match routed.instance.admit(routed.request) {
            Ok(Admitted::Queued(answer)) => SubmitFuture::Waiting {
                answer,
                instance,
                version,
            },
            Ok(Admitted::Answered(reply)) => {
                SubmitFuture::Done(Some(answered(reply, instance, version)))
            }
            Err(refused) => SubmitFuture::Done(Some(Err(PredictError::Replica(refused)))),
        }
    }
}

/// The answer of [`Submit`].
#[derive(Debug)]
pub enum SubmitFuture {
    /// The instance refused the request, or an inline processor already answered it.
    Done(Option<Result<Answered, PredictError>>),
    /// Waiting for the processor.
    Waiting {
        /// Where the answer comes.
        answer: oneshot::Receiver<Reply>,
        /// The instance.
        instance: u32,
        /// The version of the service it runs.
        version: u32,
    },
}

impl Future for SubmitFuture {
    type Output = Result<Answered, PredictError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are Unpin (a oneshot receiver, an outcome).
        match self.get_mut() {
            Self::Done(outcome) => Poll::Ready(
                outcome
                    .take()
                    .expect("a SubmitFuture polled after it completed"),
            ),
            Self::Waiting {
                answer,
                instance,
                version,
            } => {
                let (instance, version) = (*instance, *version);
                Pin::new(answer).poll(cx).map(|reply| match reply {
                    Ok(reply) => answered(reply, instance, version),
                    Err(_) => Err(PredictError::Failed {
                        instance,
                        failure: Failure::Dropped(format!(
                            "instance {instance} dropped the request"
                        )),
                    }),
                })
            }
        }
    }
}

/// The outcome of a request `instance` (running `version`) answered with `reply`.
fn answered(reply: Reply, instance: u32, version: u32) -> Result<Answered, PredictError> {
    match reply {
        Ok(response) => Ok(Answered {
            response,
            instance,
            version,
        }),
        Err(failure) => Err(PredictError::Failed { instance, failure }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use eas_core::processor::InitContext;
    use eas_core::spec::ServiceSpec;
    use eas_core::testing::CountingEcho;
    use tower::{ServiceExt as _, service_fn};

    use super::*;
    use crate::metrics::Metrics;
    use crate::replica::{ReplicaConfig, ReplicaError, ReplicaParts};

    fn replica(index: u32) -> Replica {
        replica_made_by(index, Arc::new(|| Ok(Box::new(CountingEcho::new()))))
    }

    fn replica_made_by(index: u32, make_processor: crate::replica::ProcessorMaker) -> Replica {
        let spec = ServiceSpec::from_json_str(
            r#"{"metadata": {"name": "svc", "instance": 1}, "processor": "echo", "model_path": "."}"#,
        )
        .expect("spec");
        Replica::start(ReplicaParts {
            service: "svc".into(),
            index,
            version: 1,
            config: ReplicaConfig::from_spec(&spec),
            make_processor,
            spec: Arc::new(spec.clone()),
            init: InitContext::new("svc"),
            warm_up: Vec::new(),
            metrics: Arc::new(Metrics::new()),
            process_cpu: None,
            process_memory: None,
            gpu: None,
        })
    }

    fn routed(index: u32) -> Routed {
        Routed {
            request: Request::new("x"),
            instance: replica(index),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_should_refuse_a_late_answer_naming_the_replica() {
        let never =
            service_fn(|_: Routed| std::future::pending::<Result<Answered, PredictError>>());
        let stack = KeepaliveLayer::new(Duration::from_millis(100)).layer(never);
        let started = tokio::time::Instant::now();
        let refused = stack.oneshot(routed(3)).await.expect_err("too late");
        assert_eq!(
            refused,
            PredictError::Timeout {
                keepalive: Duration::from_millis(100),
                instance: 3
            }
        );
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    /// A service that answers each request with its body after `delay`.
    fn answering_after(
        delay: Duration,
    ) -> impl Service<Routed, Response = Answered, Error = PredictError> + Clone {
        service_fn(move |routed: Routed| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, PredictError>(Answered {
                response: eas_core::processor::Response::ok(routed.request.body),
                instance: routed.instance.index(),
                version: routed.instance.version(),
            })
        })
    }

    /// A keepalive past the clock's range (a hostile or careless spec) is no deadline, not a
    /// panic on the request path.
    #[tokio::test(start_paused = true)]
    async fn keepalive_past_the_clock_should_mean_no_deadline() {
        let stack =
            KeepaliveLayer::new(Duration::MAX).layer(answering_after(Duration::from_secs(3600)));
        let answered = stack.oneshot(routed(1)).await.expect("answered late");
        assert_eq!(answered.instance, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_should_pass_answers_in_time_and_inner_errors_unchanged() {
        let slow = answering_after(Duration::from_millis(99));
        let stack = KeepaliveLayer::new(Duration::from_millis(100)).layer(slow);
        let answered = stack.oneshot(routed(1)).await.expect("in time");
        assert_eq!(answered.instance, 1);

        let failing =
            service_fn(|_: Routed| async { Err::<Answered, _>(PredictError::BadBody("x".into())) });
        let stack = KeepaliveLayer::new(Duration::from_millis(100)).layer(failing);
        assert_eq!(
            stack.oneshot(routed(1)).await.expect_err("inner"),
            PredictError::BadBody("x".into())
        );
    }

    /// `eas serve` panicked on SIGTERM with a grace of `Duration::MAX` (`now + grace`).
    #[tokio::test]
    async fn a_replica_should_shut_down_with_a_grace_of_duration_max() {
        let replica = replica(0);
        let left = tokio::time::timeout(Duration::from_secs(10), replica.shutdown(Duration::MAX))
            .await
            .expect("ends at once: nothing in flight");
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn submit_should_refuse_with_the_replicas_own_reason() {
        // Just started, its processor still being made: not ready yet.
        let slow: crate::replica::ProcessorMaker = Arc::new(|| {
            std::thread::sleep(Duration::from_secs(2));
            Ok(Box::new(CountingEcho::new()))
        });
        let routed = Routed {
            request: Request::new("x"),
            instance: replica_made_by(2, slow),
        };
        let refused = Submit.oneshot(routed).await.expect_err("not ready");
        assert!(
            matches!(
                refused,
                PredictError::Replica(ReplicaError::NotReady { index: 2, .. })
            ),
            "{refused:?}"
        );
    }
}
