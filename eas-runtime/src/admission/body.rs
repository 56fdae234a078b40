//! Reading the body: refused with [`PredictError::BodyTooLarge`] when its `Content-Length`
//! says it is over the limit (before a byte is read) or when it grows past it, with
//! [`PredictError::BodyTimeout`] when it does not arrive in time, and with
//! [`PredictError::Unauthorized`] when a signed request's `Content-MD5` does not match it
//! (the [`BodyCheck`] the [`auth`](super::auth) layer left).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tower::{BoxError, Layer, Service};

use crate::auth::BodyCheck;
use crate::outcome::PredictError;

/// Adds [`ReadBody`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLayer {
    limit: usize,
    timeout: Duration,
}

impl BodyLayer {
    /// Bodies of at most `limit` bytes, arriving within `timeout`.
    #[must_use]
    pub fn new(limit: usize, timeout: Duration) -> Self {
        Self { limit, timeout }
    }
}

impl<S> Layer<S> for BodyLayer {
    type Service = ReadBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadBody {
            inner,
            layer: *self,
        }
    }
}

/// Reads the whole body, then hands the request on with its bytes.
#[derive(Debug, Clone)]
pub struct ReadBody<S> {
    inner: S,
    layer: BodyLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, PredictError>> + Send>>;

impl<S, B, T> Service<http::Request<B>> for ReadBody<S>
where
    S: Service<http::Request<Bytes>, Response = T, Error = PredictError> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = T;
    type Error = PredictError;
    type Future = BoxFuture<T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The service that was made ready goes with this request; its clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let BodyLayer { limit, timeout } = self.layer;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(PredictError::BodyTooLarge { limit });
            }
            let mut read = std::pin::pin!(Limited::new(body, limit).collect());
            // A small body usually came with the headers: read it without arming a timer.
            let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
            let collected = match first {
                Poll::Ready(collected) => collected,
                Poll::Pending => tokio::time::timeout(timeout, read)
                    .await
                    .map_err(|_| PredictError::BodyTimeout(timeout))?,
            };
            let bytes = match collected {
                Err(e) if e.is::<LengthLimitError>() => {
                    return Err(PredictError::BodyTooLarge { limit });
                }
                Err(e) => return Err(PredictError::BadBody(e.to_string())),
                Ok(collected) => collected.to_bytes(),
            };
            if let Some(check) = parts.extensions.remove::<BodyCheck>() {
                check.verify(&bytes).map_err(PredictError::Unauthorized)?;
            }
            inner.call(http::Request::from_parts(parts, bytes)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{Full, StreamBody};
    use tower::{ServiceExt as _, service_fn};

    use super::*;

    fn echo_len()
    -> impl Service<http::Request<Bytes>, Response = usize, Error = PredictError, Future: Send>
    + Clone
    + Send
    + 'static {
        service_fn(|r: http::Request<Bytes>| async move { Ok::<_, PredictError>(r.body().len()) })
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_over_the_limit_should_be_refused_declared_or_streamed() {
        let service = BodyLayer::new(8, Duration::from_secs(5)).layer(echo_len());
        let ok = http::Request::new(Full::new(Bytes::from_static(b"12345678")));
        assert_eq!(service.clone().oneshot(ok).await, Ok(8));
        let declared = http::Request::builder()
            .header("content-length", "9000")
            .body(Full::new(Bytes::new()))
            .expect("request");
        assert_eq!(
            service.clone().oneshot(declared).await,
            Err(PredictError::BodyTooLarge { limit: 8 })
        );
        let streamed = http::Request::new(Full::new(Bytes::from_static(b"123456789")));
        assert_eq!(
            service.oneshot(streamed).await,
            Err(PredictError::BodyTooLarge { limit: 8 })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_should_be_refused() {
        let service = BodyLayer::new(1024, Duration::from_secs(5)).layer(echo_len());
        // One frame, then nothing: a client that stalls mid-body.
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"part"))))
            .await
            .expect("send");
        let stream = tokio_stream_from(rx);
        let request = http::Request::new(StreamBody::new(stream));
        let refused = service.oneshot(request).await;
        assert_eq!(
            refused,
            Err(PredictError::BodyTimeout(Duration::from_secs(5)))
        );
        drop(tx);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Send {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[tokio::test]
    async fn a_signed_body_that_does_not_match_its_md5_should_be_refused() {
        let auth = crate::auth::Authenticator::new("t");
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let md5 = crate::auth::content_md5(b"hello");
        let sig = crate::auth::sign("t", "POST", &md5, "text/plain", &date, "/p");
        let request = |body: &'static [u8]| {
            http::Request::post("/p")
                .header("authorization", format!("EAS {sig}"))
                .header("content-md5", &md5)
                .header("content-type", "text/plain")
                .header("date", &date)
                .body(Full::new(Bytes::from_static(body)))
                .expect("request")
        };
        let stack = tower::ServiceBuilder::new()
            .layer(super::super::AuthLayer::new(auth))
            .layer(BodyLayer::new(1024, Duration::from_secs(5)))
            .service(echo_len());
        assert_eq!(stack.clone().oneshot(request(b"hello")).await, Ok(5));
        let tampered = stack.oneshot(request(b"hellO")).await;
        assert!(
            matches!(tampered, Err(PredictError::Unauthorized(ref why)) if why.contains("Content-MD5")),
            "{tampered:?}"
        );
    }
}
