//! Reading the body: refused with [`PredictError::BodyTooLarge`] when its `Content-Length`
//! says it is over the limit (before a byte is read) or when it grows past it, with
//! [`PredictError::Busy`] when the server's [`BodyBudget`] for bodies being read is spent,
//! with [`PredictError::BodyTimeout`] when it does not arrive in time, and with
//! [`PredictError::Unauthorized`] when a signed request's `Content-MD5` does not match it
//! (the [`BodyCheck`] the [`auth`](super::auth) layer left).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf as _, Bytes, BytesMut};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tower::{BoxError, Layer, Service};

use crate::auth::BodyCheck;
use crate::outcome::PredictError;

/// The bytes of request bodies being read, bounded across the whole server: a flood of
/// uploads (authenticated, since [`auth`](super::auth) runs first) cannot hold more than its
/// capacity in memory at once. A request whose bytes do not fit is refused with
/// [`PredictError::Busy`] (its `Content-Length` is reserved before its first byte is read; a
/// chunked body reserves as its chunks arrive); the bytes are given back once the body is read.
#[derive(Debug)]
pub struct BodyBudget {
    capacity: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    /// A budget of `capacity` bytes.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            used: AtomicUsize::new(0),
        }
    }

    /// The bytes of bodies being read now.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Its capacity, in bytes.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Bytes taken from a [`BodyBudget`], given back when dropped.
struct Reservation<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl Reservation<'_> {
    fn take(&mut self, bytes: usize) -> Result<(), PredictError> {
        let before = self.budget.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.budget.capacity {
            self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(PredictError::Busy {
                buffered: before,
                capacity: self.budget.capacity,
            });
        }
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Adds [`ReadBody`].
#[derive(Debug, Clone)]
pub struct BodyLayer {
    limit: usize,
    timeout: Duration,
    budget: Arc<BodyBudget>,
}

impl BodyLayer {
    /// Bodies of at most `limit` bytes, arriving within `timeout`, within `budget`.
    #[must_use]
    pub fn new(limit: usize, timeout: Duration, budget: Arc<BodyBudget>) -> Self {
        Self {
            limit,
            timeout,
            budget,
        }
    }
}

impl<S> Layer<S> for BodyLayer {
    type Service = ReadBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadBody {
            inner,
            layer: self.clone(),
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
        let BodyLayer {
            limit,
            timeout,
            budget,
        } = self.layer.clone();
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
            let mut reservation = Reservation {
                budget: &budget,
                bytes: 0,
            };
            // At most `limit`, checked just above.
            let declared = declared.map(|n| n as usize);
            if let Some(n) = declared {
                reservation.take(n)?;
            }
            let bytes = {
                let mut read = std::pin::pin!(read(body, limit, declared, &mut reservation));
                // A small body usually came with the headers: read it without arming a timer.
                let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
                match first {
                    Poll::Ready(read) => read?,
                    Poll::Pending => tokio::time::timeout(timeout, read)
                        .await
                        .map_err(|_| PredictError::BodyTimeout(timeout))??,
                }
            };
            // Read: its bytes no longer count as being read.
            drop(reservation);
            if let Some(check) = parts.extensions.remove::<BodyCheck>() {
                check.verify(&bytes).map_err(PredictError::Unauthorized)?;
            }
            inner.call(http::Request::from_parts(parts, bytes)).await
        })
    }
}

/// The body's bytes, at most `limit`; a body without a `Content-Length` (`declared`) takes
/// its chunks from the budget as they arrive.
async fn read<B>(
    body: B,
    limit: usize,
    declared: Option<usize>,
    reservation: &mut Reservation<'_>,
) -> Result<Bytes, PredictError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut pieces = Pieces::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.is::<LengthLimitError>() {
                PredictError::BodyTooLarge { limit }
            } else {
                PredictError::BadBody(e.to_string())
            }
        })?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers
        };
        let chunk = data.copy_to_bytes(data.remaining());
        if declared.is_none() {
            reservation.take(chunk.len())?;
        }
        pieces.push(chunk);
    }
    Ok(pieces.join())
}

/// Where small chunks are copied together: pieces of this size.
const PIECE: usize = 64 << 10;

/// A body's chunks as they arrive, joined once at the end. The first is kept as it came: a
/// body in one chunk (most) is taken as it is, with no copy and no list allocated. After it, a
/// chunk of at least [`PIECE`] bytes is kept as it came too; smaller ones are copied together
/// into pieces of up to that size, so that a body sent in tiny chunks holds neither a handle
/// per chunk nor the connection's read buffers the chunks point into (a client's 1-byte chunks
/// would cost the server ~40 times the bytes the budget counts); the copies hold at most twice
/// their bytes while a piece grows.
#[derive(Debug, Default)]
struct Pieces {
    first: Option<Bytes>,
    kept: Vec<Bytes>,
    small: BytesMut,
}

impl Pieces {
    fn push(&mut self, chunk: Bytes) {
        if self.first.is_none() {
            self.first = Some(chunk);
        } else if chunk.len() >= PIECE {
            self.flush();
            self.kept.push(chunk);
        } else {
            self.small.extend_from_slice(&chunk);
            if self.small.len() >= PIECE {
                self.flush();
            }
        }
    }

    /// Ends the piece being copied into.
    fn flush(&mut self) {
        if !self.small.is_empty() {
            self.kept.push(self.small.split().freeze());
        }
    }

    /// The chunks held apart (a test's window on the bound).
    #[cfg(test)]
    fn held(&self) -> usize {
        usize::from(self.first.is_some()) + self.kept.len() + usize::from(!self.small.is_empty())
    }

    /// All the bytes, in order.
    fn join(mut self) -> Bytes {
        self.flush();
        match self.first {
            None => Bytes::new(),
            Some(one) if self.kept.is_empty() => one,
            Some(one) => {
                let size = one.len() + self.kept.iter().map(Bytes::len).sum::<usize>();
                let mut all = BytesMut::with_capacity(size);
                for chunk in std::iter::once(&one).chain(&self.kept) {
                    all.extend_from_slice(chunk);
                }
                all.freeze()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{Full, StreamBody};
    use tower::{ServiceExt as _, service_fn};

    use super::*;

    #[test]
    fn a_body_in_tiny_chunks_should_be_held_in_few_pieces_and_in_order() {
        let mut pieces = Pieces::default();
        let mut sent = Vec::new();
        for i in 0..200_000u32 {
            let byte = (i % 251) as u8;
            sent.push(byte);
            pieces.push(Bytes::copy_from_slice(&[byte]));
        }
        // The first chunk, then the rest in pieces of 64 KiB: not one handle per chunk.
        assert!(
            pieces.held() <= 1 + 200_000 / PIECE + 1,
            "{}",
            pieces.held()
        );
        // A large chunk between small ones is kept as it came, the order with it.
        let large = vec![7u8; PIECE];
        pieces.push(Bytes::from(large.clone()));
        pieces.push(Bytes::from_static(b"end"));
        sent.extend_from_slice(&large);
        sent.extend_from_slice(b"end");
        assert_eq!(pieces.join(), Bytes::from(sent));

        let mut one = Pieces::default();
        let chunk = Bytes::from_static(b"alone");
        one.push(chunk.clone());
        let joined = one.join();
        assert_eq!(
            joined.as_ptr(),
            chunk.as_ptr(),
            "a body in one chunk is not copied"
        );
        assert!(Pieces::default().join().is_empty());
    }

    fn budget(bytes: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget::new(bytes))
    }

    fn echo_len()
    -> impl Service<http::Request<Bytes>, Response = usize, Error = PredictError, Future: Send>
    + Clone
    + Send
    + 'static {
        service_fn(|r: http::Request<Bytes>| async move { Ok::<_, PredictError>(r.body().len()) })
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_over_the_limit_should_be_refused_declared_or_streamed() {
        let service = BodyLayer::new(8, Duration::from_secs(5), budget(1 << 20)).layer(echo_len());
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
        let service =
            BodyLayer::new(1024, Duration::from_secs(5), budget(1 << 20)).layer(echo_len());
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

    #[tokio::test(start_paused = true)]
    async fn bodies_being_read_should_share_one_budget_and_give_it_back() {
        let budget = budget(10);
        let service =
            BodyLayer::new(1024, Duration::from_secs(5), Arc::clone(&budget)).layer(echo_len());
        // A declared 8-byte body that stalls after 2 bytes holds its 8 bytes.
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"12"))))
            .await
            .expect("send");
        let stalled = http::Request::builder()
            .header("content-length", "8")
            .body(StreamBody::new(tokio_stream_from(rx)))
            .expect("request");
        let slow = tokio::spawn(service.clone().oneshot(stalled));
        tokio::task::yield_now().await;
        assert_eq!(budget.buffered(), 8);

        let declared = http::Request::builder()
            .header("content-length", "4")
            .body(Full::new(Bytes::from_static(b"abcd")))
            .expect("request");
        assert_eq!(
            service.clone().oneshot(declared).await,
            Err(PredictError::Busy {
                buffered: 8,
                capacity: 10
            })
        );
        // Without a Content-Length, chunks are counted as they come.
        let chunked = http::Request::new(Full::new(Bytes::from_static(b"abcd")));
        assert!(matches!(
            service.clone().oneshot(chunked).await,
            Err(PredictError::Busy { .. })
        ));
        let small = http::Request::new(Full::new(Bytes::from_static(b"ab")));
        assert_eq!(service.clone().oneshot(small).await, Ok(2));

        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"345678"))))
            .await
            .expect("send");
        drop(tx);
        assert_eq!(slow.await.expect("join"), Ok(8));
        assert_eq!(budget.buffered(), 0, "every byte is given back");
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
            .layer(BodyLayer::new(
                1024,
                Duration::from_secs(5),
                budget(1 << 20),
            ))
            .service(echo_len());
        assert_eq!(stack.clone().oneshot(request(b"hello")).await, Ok(5));
        let tampered = stack.oneshot(request(b"hellO")).await;
        assert!(
            matches!(tampered, Err(PredictError::Unauthorized(ref why)) if why.contains("Content-MD5")),
            "{tampered:?}"
        );
    }
}
