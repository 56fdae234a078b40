//! A server: services started from their specs, the [`Edge`]'s routes on a TCP socket, and a
//! graceful shutdown the caller triggers (the library installs no signal handlers).
//!
//! Specs whose `model_path` (or `processor_path`, or `storage[]`) is remote or an archive are
//! fetched through `eas-storage` into [`ServerBuilder::work_dir`] before their instances start.
//!
//! Connections are HTTP/1.1 with keep-alive. A client that does not finish sending its headers
//! within [`ServerBuilder::header_read_timeout`] is disconnected without ever taking a worker.
//! [`RunningServer::shutdown`] stops accepting, lets in-flight requests finish within the
//! longest `metadata.termination_grace_period` of the services, then stops the instances.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eas_core::spec::ServiceSpec;
use eas_core::storage::Progress;
use eas_storage::peer::PeerSecret;
use eas_storage::resolve::{ResolveOptions, resolve};
use eas_storage::{Credentials, MemoryCache};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::{
    BodyLimits, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BUFFERED_BODY_BYTES,
};
use crate::error::{Error, Result};
use crate::http::{ConnectionLimits, Edge, accept_loop};
use crate::metrics::Metrics;
use crate::queue::{MemoryQueues, QueueFactory};
use crate::registry::ProcessorRegistry;
use crate::service::{LocalPaths, Service};

/// The default time a client has to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the built-in processors, listening on `127.0.0.1:8080`.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Configures and starts a server.
#[must_use]
pub struct ServerBuilder {
    registry: ProcessorRegistry,
    services: Vec<(ServiceSpec, Option<LocalPaths>)>,
    addr: SocketAddr,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    max_buffered_body_bytes: usize,
    max_connections: Option<usize>,
    header_read_timeout: Duration,
    base_dir: PathBuf,
    work_dir: PathBuf,
    storage_progress: Option<Arc<dyn Progress>>,
    queues: Arc<dyn QueueFactory>,
    cache_peers: Vec<String>,
    cache_bytes: u64,
    cache_secret: Option<PeerSecret>,
    cache: Option<Arc<MemoryCache>>,
    credentials: Option<Credentials>,
    mounts: eas_storage::MountRegistry,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("registry", &self.registry)
            .field("services", &self.services.len())
            .field("addr", &self.addr)
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            registry: ProcessorRegistry::with_builtins(),
            services: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_buffered_body_bytes: DEFAULT_MAX_BUFFERED_BODY_BYTES,
            max_connections: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            base_dir: PathBuf::from("."),
            work_dir: std::env::temp_dir().join("eas"),
            storage_progress: None,
            queues: Arc::new(MemoryQueues),
            cache_peers: Vec::new(),
            cache_bytes: 0,
            cache_secret: None,
            cache: None,
            credentials: None,
            mounts: eas_storage::MountRegistry::with_builtins(),
        }
    }
}

impl ServerBuilder {
    /// The processors specs may name (default: the built-ins).
    pub fn registry(mut self, registry: ProcessorRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// Serves `spec`, with its local paths resolved against the base directory.
    pub fn service(mut self, spec: ServiceSpec) -> Self {
        self.services.push((spec, None));
        self
    }

    /// Serves `spec` with paths already resolved (say, a remote `model_path` fetched by
    /// `eas-storage`).
    pub fn service_with_paths(mut self, spec: ServiceSpec, paths: LocalPaths) -> Self {
        self.services.push((spec, Some(paths)));
        self
    }

    /// Where to listen (port 0: any free port; see [`RunningServer::local_addr`]).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The largest request body; past it, 413 (default 64 MiB).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// How long a client may take to send a request's body once its headers arrived; past
    /// it, 408 (default 60 s).
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// The most bytes of request bodies being read at once, all services together (default
    /// 256 MiB); a request whose body does not fit gets 503 and may be sent again.
    pub fn max_buffered_body_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered_body_bytes = bytes;
        self
    }

    /// The most client connections open at once (default: a little under the process's
    /// file-descriptor limit, [`ConnectionLimits::default_max_connections`]). Past it, a new
    /// connection closes the oldest idle one, or is closed itself when none is idle.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max.max(1));
        self
    }

    /// How long a client may take to send a request's headers, and may stay idle between
    /// two requests (default 10 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The directory relative local paths in specs are resolved against (default `.`).
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = dir.into();
        self
    }

    /// Where async services keep their input and sink queues (default: in memory,
    /// [`MemoryQueues`]; with the `redis` feature, `RedisQueues` shares them between servers).
    pub fn queues(mut self, queues: Arc<dyn QueueFactory>) -> Self {
        self.queues = queues;
        self
    }

    /// Where fetched models and mounts go, one directory per service (default: `eas` under the
    /// system temp directory). Kept across restarts, so valid files are reused.
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = dir.into();
        self
    }

    /// Receives the progress of model and mount transfers (bytes, rate, ETA).
    pub fn storage_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.storage_progress = Some(progress);
        self
    }

    /// Other servers of the same services (base URLs such as `http://10.0.0.2:8080`): a
    /// model or mount file missing from this server's memory cache is asked of them before
    /// the store. This server answers their asks at `eas_storage::peer::PATH`.
    pub fn cache_peers(mut self, peers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cache_peers = peers.into_iter().map(Into::into).collect();
        self
    }

    /// OSS/S3 credentials for remote models and mounts (default: from the environment,
    /// `OSS_ACCESS_KEY_ID`/`OSS_ACCESS_KEY_SECRET`, else `AWS_ACCESS_KEY_ID`/
    /// `AWS_SECRET_ACCESS_KEY`).
    pub fn storage_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The storage mounts of URI schemes that `model_path`, `processor_path` and
    /// `storage[].oss.path` may name (default: the built-in `oss`, `s3`, `http`, `https`).
    /// Start from `MountRegistry::with_builtins()` and register a scheme of your own
    /// (`mem://...`) to keep the built-ins. A spec naming a scheme without mount fails at
    /// [`start`](Self::start), naming the scheme and the registered ones.
    pub fn storage_mounts(mut self, mounts: eas_storage::MountRegistry) -> Self {
        self.mounts = mounts;
        self
    }

    /// Keeps fetched model and mount files in memory, up to `bytes`, and serves them to peers
    /// that hold the [`cache_secret`](Self::cache_secret).
    pub fn memory_cache(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// The secret every server of this deployment shares: this server sends it to its
    /// [`cache_peers`](Self::cache_peers) and serves its memory cache at
    /// `eas_storage::peer::PATH` only to requests that carry it (`401` otherwise). Without
    /// one, that endpoint answers every request `403` (no one can read the cache, which is
    /// logged at start) and peers refuse this server's asks.
    pub fn cache_secret(mut self, secret: PeerSecret) -> Self {
        self.cache_secret = Some(secret);
        self
    }

    /// The memory cache shared by every service of this server, when asked for
    /// ([`memory_cache`](Self::memory_cache)), when some spec asks for one (`storage[].cache`;
    /// capacity: their sum) or when peers are given (capacity: 1 GiB at least).
    fn shared_cache(&self) -> Option<Arc<MemoryCache>> {
        let asked: u64 = self
            .services
            .iter()
            .flat_map(|(spec, _)| &spec.storage)
            .filter_map(|m| m.cache.as_ref())
            .map(|c| c.capacity.bytes())
            .sum();
        let asked = asked.max(self.cache_bytes);
        let capacity = if self.cache_peers.is_empty() || self.cache_bytes > 0 {
            asked
        } else {
            asked.max(1 << 30)
        };
        (capacity > 0).then(|| {
            let cache = MemoryCache::new(capacity).with_peers(self.cache_peers.iter().cloned());
            Arc::new(match &self.cache_secret {
                Some(secret) => cache.with_peer_secret(secret.clone()),
                None => cache,
            })
        })
    }

    /// The local paths of `spec`: fetched through `eas-storage` when it names remote files,
    /// archives or mounts, else its local paths.
    async fn local_paths(&self, spec: &ServiceSpec) -> Result<LocalPaths> {
        let local = LocalPaths::local(spec, &self.base_dir);
        if !LocalPaths::needs_storage(spec) {
            return Ok(local);
        }
        let name = &spec.metadata.name;
        let mut options =
            ResolveOptions::new(self.work_dir.join(name)).with_mounts(self.mounts.clone());
        if let Some(progress) = &self.storage_progress {
            options = options.with_progress(Arc::clone(progress));
        }
        if let Some(cache) = &self.cache {
            options = options.with_cache(Arc::clone(cache));
        }
        if let Some(credentials) = &self.credentials {
            options = options.with_credentials(credentials.clone());
        }
        let resolved = resolve(spec, &options)
            .await
            .map_err(|source| Error::Storage {
                service: name.clone(),
                source,
            })?;
        let mut paths = LocalPaths::new();
        if let Some(dir) = resolved.model_dir {
            paths = paths.with_model_dir(dir);
        }
        if let Some(entry) = resolved.model_entry {
            paths = paths.with_model_entry(entry);
        }
        if let Some(warm_up) = local.warm_up {
            paths = paths.with_warm_up(warm_up);
        }
        Ok(paths)
    }

    /// Starts every service's instances and listens. Instances become ready in the
    /// background; see [`RunningServer::wait_ready`].
    pub async fn start(mut self) -> Result<RunningServer> {
        let metrics = Arc::new(Metrics::new());
        let mut grace = Duration::ZERO;
        self.cache = self.shared_cache();
        let mut resolved = Vec::with_capacity(self.services.len());
        for (spec, paths) in &self.services {
            resolved.push(match paths {
                Some(paths) => paths.clone(),
                None => self.local_paths(spec).await?,
            });
        }
        let specs = std::mem::take(&mut self.services);
        let mut services = Vec::with_capacity(specs.len());
        for ((spec, _), paths) in specs.into_iter().zip(resolved) {
            grace = grace.max(spec.metadata.termination_grace_period);
            services.push(Service::start_with_queues(
                spec,
                &self.registry,
                &paths,
                Arc::clone(&metrics),
                self.queues.as_ref(),
            )?);
        }
        let body = BodyLimits {
            max_bytes: self.max_body_bytes,
            read_timeout: self.body_read_timeout,
            max_buffered_bytes: self.max_buffered_body_bytes,
        };
        let mut edge = Edge::new(services, metrics, body)?;
        if let Some(cache) = &self.cache {
            if cache.peer_secret().is_none() {
                tracing::warn!(
                    "no cache secret: peers cannot read this server's memory cache (and cache \
                     peers refuse its asks)"
                );
            }
            edge = edge.with_peer_cache(Arc::clone(cache));
        }
        let edge = Arc::new(edge);
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: self.addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: self.addr,
            source,
        })?;
        edge.set_local_addr(local_addr);
        let (stop, stopped) = watch::channel(false);
        let limits = ConnectionLimits {
            max_connections: self
                .max_connections
                .unwrap_or_else(ConnectionLimits::default_max_connections),
            header_read_timeout: self.header_read_timeout,
        };
        let accept = tokio::spawn(accept_loop(
            listener,
            edge.router(),
            limits,
            Arc::clone(edge.metrics()),
            stopped,
            grace,
        ));
        Ok(RunningServer {
            cache: self.cache.clone(),
            local_addr,
            edge,
            stop,
            accept,
        })
    }
}

/// A server that is listening.
#[derive(Debug)]
pub struct RunningServer {
    cache: Option<Arc<MemoryCache>>,
    local_addr: SocketAddr,
    edge: Arc<Edge>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

/// What a shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Requests still unfinished when the grace period ran out.
    pub abandoned: usize,
}

impl RunningServer {
    /// The address it listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The memory cache model files went through, if the server has one.
    #[must_use]
    pub fn cache(&self) -> Option<&Arc<MemoryCache>> {
        self.cache.as_ref()
    }

    /// The routes and services.
    #[must_use]
    pub fn edge(&self) -> &Arc<Edge> {
        &self.edge
    }

    /// The services, by name.
    #[must_use]
    pub fn services(&self) -> &std::collections::BTreeMap<String, Arc<Service>> {
        self.edge.services()
    }

    /// Waits until every service has a ready instance (`true`), a service can no longer
    /// become ready (`false`), or `timeout` passes (`false`). A timeout too long to add to
    /// the clock (`Duration::MAX`) ends decades from now ([`crate::limit::deadline`]).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = crate::limit::deadline(timeout);
        loop {
            if self.edge.is_ready() {
                return true;
            }
            let dead = self.edge.services().values().any(|s| s.is_dead());
            if dead || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops accepting, finishes in-flight requests within the grace period, then stops
    /// every instance.
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        let mut abandoned = 0;
        for service in self.edge.services().values() {
            abandoned += service.shutdown().await;
        }
        ShutdownReport { abandoned }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Instant + Duration::MAX` panics: a timeout that long must mean "no deadline".
    #[tokio::test]
    async fn wait_ready_with_a_timeout_of_duration_max_should_not_panic() {
        let spec = ServiceSpec::from_json_str(
            r#"{"metadata": {"name": "svc", "instance": 1}, "processor": "echo",
                "model_path": "."}"#,
        )
        .expect("a valid spec");
        let server = Server::builder()
            .service(spec)
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .start()
            .await
            .expect("starts");
        let ready = tokio::time::timeout(Duration::from_secs(30), server.wait_ready(Duration::MAX));
        assert_eq!(ready.await, Ok(true));
        server.shutdown().await;
    }
}
