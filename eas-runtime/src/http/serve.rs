//! The accept loop: HTTP/1.1 connections with keep-alive over a TCP listener, a header-read
//! timeout (a client that does not finish its headers in time is disconnected without ever
//! taking a worker; it also bounds how long a keep-alive connection may sit idle), upgrades (the
//! queue service's WebSocket watch), a bound on open connections, and a graceful stop.
//!
//! The same listener speaks HTTP/2 (cleartext, with prior knowledge: how gRPC clients connect
//! without TLS; the edge sends gRPC calls to the gRPC service by their content type). A
//! connection is HTTP/2 when its first bytes are the HTTP/2 preface, which must arrive within
//! the header-read timeout like an HTTP/1.1 request's headers. An HTTP/2 connection serves at
//! most [`MAX_CONCURRENT_STREAMS`] requests at once and pings an idle peer every
//! [`KEEP_ALIVE_INTERVAL`] (closed when it does not answer within the same time); between
//! requests it may stay open, and counts as idle for the bound on open connections.
//!
//! At most [`ConnectionLimits::max_connections`] connections are open at once (by default a
//! little under the process's file-descriptor limit, so a flood of connections cannot take the
//! descriptors the server needs). A new connection past the bound closes the oldest connection
//! that has no request in service (one idle between requests, or still sending its headers);
//! when every open connection is busy, the new one is closed at once. Failed accepts (out of
//! descriptors) back off up to a second and are logged at most once a second.
//!
//! On stop, a connection with no request in service is closed at once; the others finish the
//! request they are serving (hyper's graceful shutdown) within the grace period.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::gate::Peer;
use super::routes::Routes;
use crate::metrics::Metrics;

/// The most requests an HTTP/2 connection has in service at once.
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 200;

/// How often an HTTP/2 connection pings its peer, and how long it waits for the answer.
pub(crate) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// What an HTTP/2 connection with prior knowledge starts with (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How many connections the server keeps open, and how long headers may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// The most connections open at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (and may stay idle between
    /// requests).
    pub header_read_timeout: Duration,
}

impl ConnectionLimits {
    /// The default bound on open connections: the process's soft file-descriptor limit less a
    /// quarter of it (at most 256) for model files, stores and peers; 1,024 where the limit
    /// cannot be read, 65,536 at most.
    #[must_use]
    pub fn default_max_connections() -> usize {
        let soft = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("Max open files"))?;
                let soft = line.split_whitespace().nth(3)?;
                Some(soft.parse::<usize>().unwrap_or(usize::MAX))
            });
        match soft {
            Some(soft) => soft.saturating_sub((soft / 4).min(256)).clamp(8, 65_536),
            None => 1_024,
        }
    }
}

/// One open connection, as the accept loop sees it.
#[derive(Debug, Default)]
struct Connection {
    /// Requests of this connection being served now.
    in_service: AtomicUsize,
    /// The client's address, given to each request as a [`Peer`] extension.
    peer: Option<Peer>,
}

/// The open connections, oldest first, with what closes each one at once.
#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, (Arc<Connection>, AbortHandle)>,
}

impl Table {
    /// Room for one more connection: when full, takes the oldest idle one out and hands back
    /// its task to close (after the lock is let go: its end takes the lock). `None` when full
    /// and none is idle.
    fn make_room(&mut self, max: usize, metrics: &Metrics) -> Option<Option<AbortHandle>> {
        if self.open.len() < max {
            return Some(None);
        }
        let idle = self
            .open
            .iter()
            .find(|(_, (c, _))| c.in_service.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some((_, task)) => {
                metrics.connections_evicted.inc();
                Some(Some(task))
            }
            None => {
                metrics.connections_refused.inc();
                None
            }
        }
    }
}

/// Logs failed accepts at most once a second and says how long to wait before the next.
#[derive(Debug)]
struct AcceptBackoff {
    delay: Duration,
    last_log: Option<tokio::time::Instant>,
    quiet: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            delay: Self::FIRST,
            last_log: None,
            quiet: 0,
        }
    }

    fn failed(&mut self, error: &std::io::Error) -> Duration {
        let now = tokio::time::Instant::now();
        if self
            .last_log
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            tracing::warn!(
                "accept failed: {error} ({} more failures since the last report; next try in {} ms)",
                self.quiet,
                self.delay.as_millis()
            );
            self.last_log = Some(now);
            self.quiet = 0;
        } else {
            self.quiet += 1;
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        wait
    }

    fn succeeded(&mut self) {
        self.delay = Self::FIRST;
    }
}

/// Serves `routes` on `listener` until `stop` turns, then lets the connections serving a
/// request finish within the grace period `grace` gives at that moment (services come and
/// go while the server runs).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    routes: Routes,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    grace: impl FnOnce() -> Duration + Send,
) {
    // Connections are tracked here rather than by hyper-util's `GracefulShutdown`, which cannot
    // watch a connection that may be upgraded (the queue service's WebSocket watch).
    let mut tasks = tokio::task::JoinSet::new();
    let table = Arc::new(Mutex::new(Table::default()));
    let builders = Arc::new(Builders::new(limits.header_read_timeout));
    let mut backoff = AcceptBackoff::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok((stream, peer)) => (stream, peer),
                    Err(e) => {
                        // Out of descriptors and the like: wait, keep serving.
                        let wait = backoff.failed(&e);
                        tokio::select! {
                            () = tokio::time::sleep(wait) => continue,
                            _ = stop.changed() => break,
                        }
                    }
                };
                backoff.succeeded();
                let _ = stream.set_nodelay(true);
                let connection = Arc::new(Connection {
                    peer: Some(Peer(peer.ip())),
                    ..Connection::default()
                });
                let service = TowerToHyperService::new(Tracked {
                    inner: routes.clone(),
                    connection: Arc::clone(&connection),
                });
                // One critical section from making room to recording the task, so that a task
                // ending at once (its drop takes the lock) finds its entry to remove.
                let mut open = table.lock().unwrap_or_else(|e| e.into_inner());
                let Some(evicted) = open.make_room(limits.max_connections, &metrics) else {
                    continue; // drops the connection unserved
                };
                let id = open.next;
                open.next += 1;
                metrics.connections.inc();
                let entry = OpenConnection {
                    id,
                    table: Arc::clone(&table),
                    metrics: Arc::clone(&metrics),
                };
                let mut stopping = stop.clone();
                let in_service = Arc::clone(&connection);
                let builders = Arc::clone(&builders);
                let task = tasks.spawn(async move {
                    // Dropped however the task ends (aborted to make room, too).
                    let _entry = entry;
                    let detected = tokio::select! {
                        detected = Protocol::detect(stream, limits.header_read_timeout) => detected,
                        _ = stopping.changed() => return,
                    };
                    let (protocol, io) = match detected {
                        Ok(detected) => detected,
                        Err(e) => {
                            tracing::debug!("connection ended before its first request: {e}");
                            return;
                        }
                    };
                    let serving = builders.serve(protocol, io, service);
                    tokio::pin!(serving);
                    let ended = tokio::select! {
                        ended = serving.as_mut() => ended,
                        _ = stopping.changed() => {
                            if in_service.in_service.load(Ordering::Acquire) == 0 {
                                Ok(())
                            } else {
                                serving.as_mut().graceful_shutdown();
                                serving.await
                            }
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!("connection ended: {e}");
                    }
                });
                open.open.insert(id, (connection, task));
                drop(open);
                if let Some(evicted) = evicted {
                    evicted.abort();
                }
                while tasks.try_join_next().is_some() {}
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let grace = grace();
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            "connections still open after the grace period of {} s",
            grace.as_secs()
        );
    }
}

/// The service each connection serves: the edge's routes, counting the connection's requests.
type Served = TowerToHyperService<Tracked<Routes>>;

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    /// Reads the first bytes of `stream`, within `timeout`, until they are the HTTP/2 preface
    /// or cannot be; the stream is handed back with those bytes still to be read.
    async fn detect(mut stream: TcpStream, timeout: Duration) -> std::io::Result<(Self, Prefixed)> {
        let mut first = Vec::with_capacity(PREFACE.len());
        let read = async {
            while first.len() < PREFACE.len() && PREFACE.starts_with(&first) {
                let mut byte = [0_u8; PREFACE.len()];
                let wanted = PREFACE.len() - first.len();
                let n = stream.read(&mut byte[..wanted]).await?;
                if n == 0 {
                    break; // closed: HTTP/1.1 says what it has to say about that
                }
                first.extend_from_slice(&byte[..n]);
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(timeout, read).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no request within {} ms", timeout.as_millis()),
            )
        })??;
        let protocol = if first.as_slice() == PREFACE {
            Self::Http2
        } else {
            Self::Http1
        };
        Ok((
            protocol,
            Prefixed {
                prefix: Bytes::from(first),
                stream,
            },
        ))
    }
}

/// The connection builders, one per HTTP version, configured once.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(header_read_timeout: Duration) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_INTERVAL);
        Self { http1, http2 }
    }

    fn serve(&self, protocol: Protocol, io: Prefixed, service: Served) -> Serving {
        let io = TokioIo::new(io);
        match protocol {
            Protocol::Http1 => Serving::Http1 {
                connection: self.http1.serve_connection(io, service).with_upgrades(),
            },
            Protocol::Http2 => Serving::Http2 {
                connection: self.http2.serve_connection(io, service),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// One connection being served, in its HTTP version.
    #[project = ServingProj]
    enum Serving {
        Http1 { #[pin] connection: http1::UpgradeableConnection<TokioIo<Prefixed>, Served> },
        Http2 { #[pin] connection: http2::Connection<TokioIo<Prefixed>, Served, TokioExecutor> },
    }
}

impl Serving {
    /// Serves the requests in service to their end and closes the connection.
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ServingProj::Http1 { connection } => connection.graceful_shutdown(),
            ServingProj::Http2 { connection } => connection.graceful_shutdown(),
        }
    }
}

impl Future for Serving {
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ServingProj::Http1 { connection } => connection.poll(cx),
            ServingProj::Http2 { connection } => connection.poll(cx),
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream whose first bytes, read to tell the protocol, are read again first.
    struct Prefixed {
        prefix: Bytes,
        #[pin]
        stream: TcpStream,
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if this.prefix.is_empty() {
            return this.stream.poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().stream.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().stream.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().stream.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().stream.poll_shutdown(cx)
    }
}

/// Takes a connection out of the table and the gauge when its task ends.
struct OpenConnection {
    id: u64,
    table: Arc<Mutex<Table>>,
    metrics: Arc<Metrics>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.open.remove(&self.id);
        self.metrics.connections.dec();
    }
}

/// The router, counting the requests of one connection that are being served.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    connection: Arc<Connection>,
}

impl<S, B> tower::Service<http::Request<B>> for Tracked<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        self.connection.in_service.fetch_add(1, Ordering::AcqRel);
        // The admin gate throttles by the client's address; the data-plane routes never ask
        // for it, and an extension costs them an allocation per request.
        if let Some(peer) = self.connection.peer
            && !is_data_plane(request.uri().path())
        {
            request.extensions_mut().insert(peer);
        }
        TrackedFuture {
            inner: self.inner.call(request),
            _serving: InService(Arc::clone(&self.connection)),
        }
    }
}

/// Whether `path` is a predict or Open Inference Protocol route (the hot paths, behind
/// service tokens, not the admin gate).
fn is_data_plane(path: &str) -> bool {
    path.starts_with(super::predict::PREFIX) || path.starts_with("/v2/")
}

/// Counts one request as being served until dropped.
struct InService(Arc<Connection>);

impl Drop for InService {
    fn drop(&mut self) {
        self.0.in_service.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A request's answer; the request counts as being served until it is ready or dropped.
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        _serving: InService,
    }
}

impl<F: Future> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a connection that sends `parts` (with a pause between them) is detected as, and
    /// the bytes then read from it: all it sent.
    async fn detected(parts: &[&[u8]]) -> std::io::Result<(Protocol, Vec<u8>)> {
        use tokio::io::AsyncWriteExt as _;

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let sent = parts.iter().map(|p| p.len()).sum();
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connects");
            for part in parts {
                stream.write_all(&part).await.expect("writes");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        });
        let (stream, _) = listener.accept().await.expect("accepts");
        let (protocol, mut io) = Protocol::detect(stream, Duration::from_millis(200)).await?;
        let mut seen = vec![0_u8; sent];
        io.read_exact(&mut seen).await.expect("reads");
        client.abort();
        Ok((protocol, seen))
    }

    #[tokio::test]
    async fn the_http2_preface_should_be_told_from_http1_and_left_to_read() {
        let request: &[u8] = b"GET /healthz HTTP/1.1\r\n\r\n";
        let (protocol, seen) = detected(&[request]).await.expect("HTTP/1.1");
        assert_eq!((protocol, &seen[..]), (Protocol::Http1, request));
        // The preface in two writes, then a frame header.
        let (protocol, seen) = detected(&[&PREFACE[..10], &PREFACE[10..], b"\0\0\0"])
            .await
            .expect("HTTP/2");
        assert_eq!(protocol, Protocol::Http2);
        assert_eq!(&seen[..], &[&PREFACE[..], b"\0\0\0"].concat()[..]);
        // A client that says nothing, or only part of the preface, is cut off in time.
        for parts in [&[][..], &[&PREFACE[..5]][..]] {
            let silent = detected(parts).await.map(|(p, _)| p);
            assert!(
                silent
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut),
                "{silent:?}"
            );
        }
    }

    /// `eas serve` panicked on SIGTERM with a `u64::MAX` grace period (`now + grace`
    /// overflowed). Draining connections with a grace of `Duration::MAX` must end when they
    /// do, not panic.
    #[tokio::test]
    async fn draining_with_a_grace_of_duration_max_should_not_panic() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let (stop, stopped) = watch::channel(false);
        let limits = ConnectionLimits {
            max_connections: 16,
            header_read_timeout: Duration::from_secs(5),
        };
        let serving = tokio::spawn(accept_loop(
            listener,
            Arc::new(
                crate::http::Edge::new(
                    Vec::new(),
                    Arc::new(Metrics::new()),
                    crate::admission::BodyLimits::default(),
                )
                .expect("an empty edge"),
            )
            .routes(),
            limits,
            Arc::new(Metrics::new()),
            stopped,
            || Duration::MAX,
        ));
        let open = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send_replace(true);
        let ended = tokio::time::timeout(Duration::from_secs(10), serving).await;
        assert!(
            matches!(ended, Ok(Ok(()))),
            "the accept loop should end without panicking: {ended:?}"
        );
        drop(open);
    }
}
