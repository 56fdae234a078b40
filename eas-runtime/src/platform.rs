//! The platform: the one object an application builds to embed eas. It composes the
//! processor registry, storage (fetches, mounts, the peer-shared memory cache), async queues,
//! the control plane (one controller per service, deciding through eas-scheduler's policies
//! with time from a [`Clock`], acting through an [`InstanceProvider`]), the desired-state
//! store, the control API and the data plane (the [`Edge`]'s routes on a TCP socket), and a
//! graceful shutdown the caller triggers (the library installs no signal handlers).
//!
//! Services come from [`PlatformBuilder::service`] (started with the platform; the start fails
//! if one cannot start), from the store of an earlier run ([`PlatformBuilder::state_dir`]:
//! started as they were left, stopped or not; one that cannot start is logged and skipped) and
//! from the control API while it runs. A service given to the builder replaces a stored one of
//! the same name.
//!
//! Specs whose `model_path` (or `processor_path`, or `storage[]`) is remote or an archive are
//! fetched through `eas-storage` into [`PlatformBuilder::work_dir`] before their instances start.
//!
//! Connections are HTTP/1.1 with keep-alive. A client that does not finish sending its headers
//! within [`PlatformBuilder::header_read_timeout`] is disconnected without ever taking a worker.
//! [`RunningPlatform::shutdown`] stops accepting, lets in-flight requests finish within the
//! longest `metadata.termination_grace_period` of the services, then stops the instances.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eas_core::Clock;
use eas_core::clock::SystemClock;
use eas_core::spec::ServiceSpec;
use eas_core::storage::Progress;
use eas_storage::peer::PeerSecret;
use eas_storage::{Credentials, MemoryCache};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::{
    BodyLimits, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BUFFERED_BODY_BYTES,
};
use crate::control::{
    AutoscalerFactory, ControlPlane, DEFAULT_CONTROL_PERIOD, PlaneError, PlaneParts,
};
use crate::directory::Directory;
use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::http::{ConnectionLimits, Edge, accept_loop};
use crate::metrics::Metrics;
use crate::provider::{InProcess, InstanceProvider};
use crate::queue::{MemoryQueues, QueueFactory};
use crate::registry::ProcessorRegistry;
use crate::service::{LocalPaths, Service};
use crate::store::StateStore;

/// The default time a client has to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Entry point: `Platform::builder()`.
#[derive(Debug)]
pub struct Platform;

impl Platform {
    /// A builder with the built-in processors, listening on `127.0.0.1:8080`, instances in
    /// process, no store and no control API.
    pub fn builder() -> PlatformBuilder {
        PlatformBuilder::default()
    }
}

/// Configures and starts a platform.
#[must_use]
pub struct PlatformBuilder {
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
    provider: Arc<dyn InstanceProvider>,
    clock: Arc<dyn Clock>,
    autoscalers: Option<AutoscalerFactory>,
    control_period: Duration,
    state_dir: Option<PathBuf>,
    admin_token: Option<String>,
    benchmarks: crate::stress::TaskConfig,
    cluster: String,
    price_traces: Option<Arc<eas_scheduler::pricing::TraceOracle>>,
}

impl std::fmt::Debug for PlatformBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformBuilder")
            .field("registry", &self.registry)
            .field("services", &self.services.len())
            .field("addr", &self.addr)
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

impl Default for PlatformBuilder {
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
            provider: Arc::new(InProcess::new()),
            clock: Arc::new(SystemClock::new()),
            autoscalers: None,
            control_period: DEFAULT_CONTROL_PERIOD,
            state_dir: None,
            admin_token: None,
            benchmarks: crate::stress::TaskConfig::default(),
            cluster: "local".to_owned(),
            price_traces: None,
        }
    }
}

impl PlatformBuilder {
    /// The processors specs may name (default: the built-ins).
    pub fn registry(mut self, registry: ProcessorRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// Where instances run (default: [`InProcess`], replicas in this process).
    pub fn provider(mut self, provider: Arc<dyn InstanceProvider>) -> Self {
        self.provider = provider;
        self
    }

    /// Where controllers read the time (default: the system clock). A `ManualClock` moves
    /// cron schedules and stabilisation windows in tests; rates still use real time.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Makes services' autoscalers: where it answers `Some`, that autoscaler decides
    /// instead of the one the spec's `autoscaler` block selects.
    pub fn autoscalers(mut self, factory: AutoscalerFactory) -> Self {
        self.autoscalers = Some(factory);
        self
    }

    /// The time between two control rounds (default 1 s).
    pub fn control_period(mut self, period: Duration) -> Self {
        self.control_period = period;
        self
    }

    /// Keeps the desired state (services, specs, stopped flags) in `dir` and starts what it
    /// holds (default: none; desired state lives in memory only). See [`StateStore`].
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Turns the control API on (`/api/v2/services...`), behind `token` (sent as
    /// `Authorization: T` or `Authorization: Bearer T`). Without one the control API is off.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// The name of this deployment in the control API's paths (default `local`).
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = name.into();
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

    /// Where to listen (port 0: any free port; see [`RunningPlatform::local_addr`]).
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

    /// The spot price traces of the markets the platform may use (read them with
    /// `eas_scheduler::pricing::aws::load`): the console draws their last 48 hours per
    /// instance type and zone, with the bid the oracle recommends.
    pub fn price_traces(mut self, oracle: eas_scheduler::pricing::TraceOracle) -> Self {
        self.price_traces = Some(Arc::new(oracle));
        self
    }

    /// The bounds of the benchmark-task API (served with the control API, behind the admin
    /// token), and the targets other than this platform's own services that it may aim at
    /// (none by default).
    pub fn benchmarks(mut self, config: crate::stress::TaskConfig) -> Self {
        self.benchmarks = config;
        self
    }

    /// Starts every service's instances, the control loop and the listener. Instances
    /// become ready in the background; see [`RunningPlatform::wait_ready`].
    pub async fn start(mut self) -> Result<RunningPlatform> {
        if self
            .admin_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(Error::Core(eas_core::Error::Unsupported(
                "the admin token is blank: give a real one, or none to turn the control API off"
                    .to_owned(),
            )));
        }
        let metrics = Arc::new(Metrics::new());
        self.cache = self.shared_cache();
        let fetcher = Fetcher {
            base_dir: self.base_dir.clone(),
            work_dir: self.work_dir.clone(),
            mounts: self.mounts.clone(),
            progress: self.storage_progress.clone(),
            cache: self.cache.clone(),
            credentials: self.credentials.clone(),
        };
        let body = BodyLimits {
            max_bytes: self.max_body_bytes,
            read_timeout: self.body_read_timeout,
            max_buffered_bytes: self.max_buffered_body_bytes,
        };
        let directory = Arc::new(Directory::new(metrics, body));
        let store = match &self.state_dir {
            Some(dir) => Some(StateStore::open(dir).map_err(|e| Error::Store(e.to_string()))?),
            None => None,
        };
        let plane = Arc::new(ControlPlane::new(PlaneParts {
            cluster: self.cluster.clone(),
            directory: Arc::clone(&directory),
            registry: self.registry.clone(),
            queues: Arc::clone(&self.queues),
            provider: Arc::clone(&self.provider),
            fetcher,
            clock: Arc::clone(&self.clock),
            autoscalers: self.autoscalers.clone(),
            store,
        }));
        if let Some(oracle) = self.price_traces.take() {
            plane.set_price_traces(oracle);
        }
        let specs = std::mem::take(&mut self.services);
        let given: Vec<&str> = specs
            .iter()
            .map(|(s, _)| s.metadata.name.as_str())
            .collect();
        let stored = plane.stored().map_err(|e| Error::Store(e.to_string()))?;
        for (name, record) in stored {
            if given.contains(&name.as_str()) {
                continue;
            }
            if let Err(error) = plane.restore(record).await {
                tracing::error!(service = %name, "a stored service could not start: {error}");
            }
        }
        for (spec, paths) in specs {
            let json = serde_json::to_value(&spec)
                .map_err(|e| Error::Core(eas_core::Error::Unsupported(e.to_string())))?;
            plane.create_from(json, paths).await.map_err(|e| match e {
                PlaneError::Start(e) => e,
                PlaneError::Exists(name) => Error::DuplicateService(name),
                other => Error::Core(eas_core::Error::Unsupported(other.to_string())),
            })?;
        }
        let mut edge = Edge::over(Arc::clone(&directory));
        if let Some(token) = &self.admin_token {
            edge = edge.with_control(Arc::clone(&plane), token.clone());
        }
        if self.admin_token.is_some() {
            let tasks = crate::stress::BenchmarkTasks::new(self.benchmarks.clone());
            edge = edge.with_benchmarks(Arc::new(tasks));
        }
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
        let control = tokio::spawn(Arc::clone(&plane).run(self.control_period, stopped.clone()));
        // Ends with the stop signal; it holds no request or instance.
        let sampler =
            crate::series::Sampler::new(Arc::clone(plane.series()), Arc::clone(&directory));
        tokio::spawn(sampler.run(stopped.clone()));
        // The longest grace period of the services there are when the platform stops.
        let grace = move || {
            directory
                .services()
                .values()
                .map(|s| s.spec().metadata.termination_grace_period)
                .max()
                .unwrap_or(Duration::ZERO)
        };
        let accept = tokio::spawn(accept_loop(
            listener,
            edge.routes(),
            limits,
            Arc::clone(edge.metrics()),
            stopped,
            grace,
        ));
        Ok(RunningPlatform {
            cache: self.cache.clone(),
            local_addr,
            edge,
            plane,
            admin_token: self.admin_token.clone(),
            stop,
            accept,
            control,
        })
    }
}

/// A platform that is running.
#[derive(Debug)]
pub struct RunningPlatform {
    cache: Option<Arc<MemoryCache>>,
    local_addr: SocketAddr,
    edge: Arc<Edge>,
    plane: Arc<ControlPlane>,
    admin_token: Option<String>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    control: JoinHandle<()>,
}

/// What a shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Requests still unfinished when the grace period ran out.
    pub abandoned: usize,
}

impl RunningPlatform {
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

    /// The control plane: create, update, stop, delete services from code.
    #[must_use]
    pub fn control(&self) -> &Arc<ControlPlane> {
        &self.plane
    }

    /// The control API's admin token, when the control API is on.
    #[must_use]
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// The services, by name.
    #[must_use]
    pub fn services(&self) -> std::collections::BTreeMap<String, Arc<Service>> {
        self.edge.services()
    }

    /// Waits until every service has a ready instance (`true`), a service can no longer
    /// become ready (`false`: all its instances failed, or the placement refused every one it
    /// wants, as [`ServiceView::refused`](crate::control::ServiceView::refused) says; the node
    /// would have to free room first), or `timeout` passes (`false`). A timeout too long to
    /// add to the clock (`Duration::MAX`) ends decades from now ([`crate::limit::deadline`]).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = crate::limit::deadline(timeout);
        loop {
            let unplaced =
                self.plane.list().iter().any(|view| {
                    view.desired > 0 && view.replicas.is_empty() && view.refused.is_some()
                });
            if self.edge.is_ready() && !unplaced {
                return true;
            }
            let dead = self.edge.services().values().any(|s| s.is_dead());
            if dead || unplaced || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops accepting, finishes in-flight requests within the grace period, then stops
    /// every instance.
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        if let Some(tasks) = self.edge.benchmarks() {
            tasks.stop_all();
        }
        let _ = self.control.await;
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
        let server = Platform::builder()
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
