//! The accept loop: HTTP/1.1 connections with keep-alive over a TCP listener, a header-read
//! timeout (a client that does not finish its headers in time is disconnected without ever
//! taking a worker), upgrades (the queue service's WebSocket watch), and a graceful stop.

use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `router` on `listener` until `stop` turns, then lets open connections finish
/// within `grace`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    // Connections are tracked here rather than by hyper-util's `GracefulShutdown`, which cannot
    // watch a connection that may be upgraded (the queue service's WebSocket watch).
    let mut connections = tokio::task::JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors and the like: wait a little, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                let mut stopping = stop.clone();
                connections.spawn(async move {
                    tokio::pin!(connection);
                    let ended = tokio::select! {
                        ended = connection.as_mut() => ended,
                        _ = stopping.changed() => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!("connection ended: {e}");
                    }
                });
                while connections.try_join_next().is_some() {}
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            "connections still open after the grace period of {} s",
            grace.as_secs()
        );
    }
}
