//! The accept loop: HTTP/1.1 connections with keep-alive over a TCP listener, a header-read
//! timeout (a client that does not finish its headers in time is disconnected without ever
//! taking a worker; it also bounds how long a keep-alive connection may sit idle), upgrades (the
//! queue service's WebSocket watch), a bound on open connections, and a graceful stop.
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

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::metrics::Metrics;

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

/// Serves `router` on `listener` until `stop` turns, then lets the connections serving a
/// request finish within the grace period `grace` gives at that moment (services come and
/// go while the server runs).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    grace: impl FnOnce() -> Duration + Send,
) {
    // Connections are tracked here rather than by hyper-util's `GracefulShutdown`, which cannot
    // watch a connection that may be upgraded (the queue service's WebSocket watch).
    let mut tasks = tokio::task::JoinSet::new();
    let table = Arc::new(Mutex::new(Table::default()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut backoff = AcceptBackoff::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
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
                let connection = Arc::new(Connection::default());
                let service = TowerToHyperService::new(Tracked {
                    inner: router.clone(),
                    connection: Arc::clone(&connection),
                });
                let serving = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
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
                let task = tasks.spawn(async move {
                    // Dropped however the task ends (aborted to make room, too).
                    let _entry = entry;
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

impl<S, R> tower::Service<R> for Tracked<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.connection.in_service.fetch_add(1, Ordering::AcqRel);
        TrackedFuture {
            inner: self.inner.call(request),
            _serving: InService(Arc::clone(&self.connection)),
        }
    }
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
            axum::Router::new(),
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
