//! Authentication from the headers, before any body byte is read: the service token or the
//! EAS signature ([`crate::auth::Authenticator`]), refused with [`PredictError::Unauthorized`].
//! A signed request's `Content-MD5` can only be compared once the body has arrived: this
//! layer leaves a [`BodyCheck`] in the request's extensions and [`body`](super::body) runs it.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::auth::{Authenticator, BodyCheck};
use crate::outcome::PredictError;
use crate::outcome::future::Decided;

/// Adds [`Auth`] against one service's token.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// Checks requests with `auth`.
    #[must_use]
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth: Arc::new(auth),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

/// Refuses requests whose `Authorization` does not check out.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B, T> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = T, Error = PredictError>,
{
    type Response = T;
    type Error = PredictError;
    type Future = Decided<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let checked =
            self.auth
                .check_headers(request.method(), request.uri().path(), request.headers());
        match checked {
            Ok(rest) => {
                if rest.is_needed() {
                    request.extensions_mut().insert::<BodyCheck>(rest);
                }
                Decided::admitted(self.inner.call(request))
            }
            Err(why) => Decided::refused(PredictError::Unauthorized(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tower::{ServiceExt as _, service_fn};

    use super::*;

    #[tokio::test]
    async fn a_wrong_token_should_be_refused_before_the_inner_service_runs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let inner = service_fn(move |_: http::Request<()>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, PredictError>(()) }
        });
        let service = AuthLayer::new(Authenticator::new("secret")).layer(inner);
        let request = |token: &str| {
            http::Request::post("/api/predict/echo")
                .header("authorization", token)
                .body(())
                .expect("request")
        };
        let refused = service.clone().oneshot(request("wrong")).await;
        assert!(
            matches!(refused, Err(PredictError::Unauthorized(_))),
            "{refused:?}"
        );
        let missing = service
            .clone()
            .oneshot(http::Request::post("/x").body(()).expect("request"))
            .await;
        assert!(
            matches!(missing, Err(PredictError::Unauthorized(ref why)) if why.contains("missing"))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        service.oneshot(request("secret")).await.expect("admitted");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
