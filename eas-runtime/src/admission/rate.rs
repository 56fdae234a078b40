//! The service's request rate (`networking.gateway_policy.rate_limit`): a token bucket that
//! refuses at once with [`PredictError::RateLimited`] instead of delaying the request (tower's
//! `RateLimit` delays, and its state is per clone; EAS answers 429 with a reason).

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::limit::RateLimiter;
use crate::outcome::PredictError;
use crate::outcome::future::Decided;

/// Adds a [`RateLimit`] (no limit when built with `None`).
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    /// `None`: no limit (and nothing shared to count per request).
    limit: Option<Arc<Limit>>,
}

#[derive(Debug)]
struct Limit {
    service: String,
    limiter: RateLimiter,
}

impl RateLimitLayer {
    /// At most `rate` requests per second for `service`, or no limit.
    #[must_use]
    pub fn new(service: &str, rate: Option<u32>) -> Self {
        Self {
            limit: rate.map(|r| {
                Arc::new(Limit {
                    service: service.to_owned(),
                    limiter: RateLimiter::per_second(r),
                })
            }),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// Refuses requests over the rate; passes the others on.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S, R, T> Service<R> for RateLimit<S>
where
    S: Service<R, Response = T, Error = PredictError>,
{
    type Response = T;
    type Error = PredictError;
    type Future = Decided<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match &self.layer.limit {
            Some(limit) if !limit.limiter.try_acquire() => {
                Decided::refused(PredictError::RateLimited {
                    service: limit.service.clone(),
                    rate: limit.limiter.rate(),
                })
            }
            _ => Decided::admitted(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{ServiceExt as _, service_fn};

    use super::*;

    async fn admitted(
        service: &mut RateLimit<impl Service<u32, Response = u32, Error = PredictError>>,
        n: u32,
    ) -> usize {
        let mut count = 0;
        for i in 0..n {
            if service.ready().await.expect("ready").call(i).await.is_ok() {
                count += 1;
            }
        }
        count
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_should_refuse_past_the_rate_and_refill_with_time() {
        let inner = service_fn(|n: u32| async move { Ok::<_, PredictError>(n) });
        let mut service = RateLimitLayer::new("echo", Some(10)).layer(inner);
        assert_eq!(admitted(&mut service, 25).await, 10);
        let refused = service.call(0).await.expect_err("over the rate");
        assert_eq!(
            refused,
            PredictError::RateLimited {
                service: "echo".into(),
                rate: 10.0
            }
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(admitted(&mut service, 25).await, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_should_share_one_bucket() {
        let inner = service_fn(|n: u32| async move { Ok::<_, PredictError>(n) });
        let mut a = RateLimitLayer::new("echo", Some(4)).layer(inner);
        let mut b = a.clone();
        assert_eq!(admitted(&mut a, 3).await, 3);
        assert_eq!(admitted(&mut b, 3).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_should_admit_everything() {
        let inner = service_fn(|n: u32| async move { Ok::<_, PredictError>(n) });
        let mut service = RateLimitLayer::new("echo", None).layer(inner);
        assert_eq!(admitted(&mut service, 1000).await, 1000);
    }
}
