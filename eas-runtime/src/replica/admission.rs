//! Replica-level admission, where every request ends up and where the queue consumer and
//! the batch job enter (they are already authenticated and admitted): the service's
//! `rpc.keepalive` ([`KeepaliveLayer`], tower's `Timeout`: [`PredictError::Timeout`] naming
//! the instance), then [`Submit`], which hands the request to its instance
//! ([`Replica::submit`], which may refuse: not ready, `rpc.rate_limit`,
//! `rpc.max_queue_size`) and waits for the processor's answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use eas_core::processor::Request;
use tokio::sync::oneshot;
use tower::timeout::Timeout;
use tower::{Layer, Service};

use super::{Failure, Replica, Reply};
use crate::outcome::future::{Refined, Refusal, refine};
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
            inner: Timeout::new(inner, self.keepalive),
            keepalive: self.keepalive,
        }
    }
}

/// Bounds the time a request waits for its answer.
#[derive(Debug, Clone)]
pub struct Keepalive<S> {
    inner: Timeout<S>,
    keepalive: Duration,
}

impl<S, T> Service<Routed> for Keepalive<S>
where
    S: Service<Routed, Response = T, Error = PredictError>,
{
    type Response = T;
    type Error = PredictError;
    type Future = Refined<<Timeout<S> as Service<Routed>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let keepalive = self.keepalive;
        self.inner.poll_ready(cx).map_err(|e| {
            refine(
                e,
                &PredictError::Timeout {
                    keepalive,
                    instance: 0,
                },
            )
        })
    }

    fn call(&mut self, routed: Routed) -> Self::Future {
        let refusal = Refusal::Own(PredictError::Timeout {
            keepalive: self.keepalive,
            instance: routed.instance.index(),
        });
        Refined::new(self.inner.call(routed), refusal)
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
        match routed.instance.submit(routed.request) {
            Ok(answer) => SubmitFuture::Waiting { answer, instance },
            Err(refused) => SubmitFuture::Refused(Some(PredictError::Replica(refused))),
        }
    }
}

/// The answer of [`Submit`].
#[derive(Debug)]
pub enum SubmitFuture {
    /// The instance refused.
    Refused(Option<PredictError>),
    /// Waiting for the processor.
    Waiting {
        /// Where the answer comes.
        answer: oneshot::Receiver<Reply>,
        /// The instance.
        instance: u32,
    },
}

impl Future for SubmitFuture {
    type Output = Result<Answered, PredictError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are Unpin (a oneshot receiver, an error).
        match self.get_mut() {
            Self::Refused(error) => Poll::Ready(Err(error
                .take()
                .expect("a SubmitFuture polled after it completed"))),
            Self::Waiting { answer, instance } => {
                let instance = *instance;
                Pin::new(answer).poll(cx).map(|reply| match reply {
                    Ok(Ok(response)) => Ok(Answered { response, instance }),
                    Ok(Err(failure)) => Err(PredictError::Failed { instance, failure }),
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
