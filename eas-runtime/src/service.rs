//! One service: its spec, token, instances and sink. What a request passes on its way to an
//! instance (limits, routing, keepalive) is [`crate::admission`]'s.
//!
//! An async service (`metadata.type: "Async"`) also has an input queue and a sink queue
//! ([`crate::queue`]); its instances consume the input queue instead of taking requests
//! directly.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use eas_core::processor::{HeaderMap, HeaderValue, InitContext, Request};
use eas_core::resources::Resources;
use eas_core::spec::ServiceSpec;
use eas_core::spec::SinkerType;
use eas_scheduler::control::ReplicaController;
use eas_scheduler::placement::gpu::GpuDemand;
use eas_storage::location::Source;
use tokio::task::JoinHandle;

use crate::auth::generate_token;
use crate::error::{Error, Result};
use crate::gpu::GpuLease;
use crate::metrics::Metrics;
use crate::provider::{InProcess, InstanceProvider};
use crate::queue::consumer::AsyncQueues;
use crate::queue::{MemoryQueues, QueueFactory};
use crate::registry::ProcessorRegistry;
use crate::replica::{ProcessorMaker, Replica, ReplicaConfig, ReplicaParts, ReplicaState};
use crate::request_log::{JsonLinesLog, LogRecord, LogWriter};

/// Records a sink may hold before it drops them.
const SINK_BUFFER: usize = 4096;

/// Where a service's files are on this machine, once any remote `model_path` is fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalPaths {
    /// The model directory (or `None` when the spec has no `model_path`).
    pub model_dir: Option<PathBuf>,
    /// The model file the processor loads (`model_entry` inside the model directory).
    pub model_entry: Option<PathBuf>,
    /// The warm-up request file.
    pub warm_up: Option<PathBuf>,
}

impl LocalPaths {
    /// No paths; fill them in with the `with_*` methods.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The same with a model directory.
    #[must_use]
    pub fn with_model_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model_dir = Some(dir.into());
        self
    }

    /// The same with a model file.
    #[must_use]
    pub fn with_model_entry(mut self, entry: impl Into<PathBuf>) -> Self {
        self.model_entry = Some(entry.into());
        self
    }

    /// The same with a warm-up request file.
    #[must_use]
    pub fn with_warm_up(mut self, file: impl Into<PathBuf>) -> Self {
        self.warm_up = Some(file.into());
        self
    }

    /// Whether the spec's files must be fetched or unpacked (by `eas-storage`) before an
    /// instance starts: a `model_path` or `processor_path` that `eas-storage` does not read
    /// as a plain local path (a bucket, an HTTP or local archive; also one it cannot parse, so
    /// that resolving reports why), or any `storage[]` mount.
    #[must_use]
    pub fn needs_storage(spec: &ServiceSpec) -> bool {
        let fetched = |p: &Option<String>| {
            p.as_deref().is_some_and(|p| {
                !matches!(
                    Source::parse(p, spec.oss_endpoint.as_deref()),
                    Ok(Source::Local(_))
                )
            })
        };
        fetched(&spec.model_path) || fetched(&spec.processor_path) || !spec.storage.is_empty()
    }

    /// The paths of a spec whose `model_path` and `warm_up_data_path` are local, relative to
    /// `base` when not absolute. Remote paths (`oss://`, `s3://`, `http(s)://`) are left out:
    /// fetch them with `eas-storage` and fill these fields in.
    #[must_use]
    pub fn local(spec: &ServiceSpec, base: &Path) -> Self {
        let local = |p: &str| (!p.contains("://")).then(|| base.join(p));
        let model_path = spec.model_path.as_deref().and_then(local);
        let (model_dir, model_entry) = match (&model_path, spec.model_entry.as_deref()) {
            (Some(path), Some(entry)) => (Some(path.clone()), Some(path.join(entry))),
            (Some(path), None) if path.is_file() => {
                (path.parent().map(Path::to_path_buf), Some(path.clone()))
            }
            (Some(path), None) => (Some(path.clone()), None),
            (None, _) => (None, None),
        };
        Self {
            model_dir,
            model_entry,
            warm_up: spec.warm_up_data_path.as_deref().and_then(local),
        }
    }
}

/// A service being served.
///
/// Its replica set changes while requests flow: the controller adds replicas
/// ([`scale_up`](Self::scale_up)) and retires them ([`retire`](Self::retire)); a request takes
/// the set as it is when it is routed ([`instances`](Self::instances): one atomic load).
pub struct Service {
    name: String,
    /// The name as a response header value, made once ([`crate::http::SERVICE_HEADER`]).
    name_header: Option<http::HeaderValue>,
    token: String,
    replicas: ArcSwap<Vec<Replica>>,
    /// The version new replicas start from; older versions' replicas may still run during a
    /// rollout ([`crate::controller`]).
    template: ArcSwap<Template>,
    /// The version before the current one, while a rollout may still go back to it.
    previous: Mutex<Option<Arc<Template>>>,
    provider: Arc<dyn InstanceProvider>,
    next_index: AtomicU32,
    retiring: Mutex<Vec<JoinHandle<usize>>>,
    grace: Duration,
    sink: Option<LogWriter>,
    metrics: Arc<Metrics>,
    queues: Option<AsyncQueues>,
}

/// What every replica of one version of a service starts from.
pub struct Template {
    version: u32,
    spec: Arc<ServiceSpec>,
    config: ReplicaConfig,
    make_processor: ProcessorMaker,
    paths: LocalPaths,
    warm_up: Vec<Request>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("version", &self.version)
            .field("processor", &self.spec.processor)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// Version `version` of a service: `spec`'s processor from `registry`, with the files at
    /// `paths`. Fails when the processor is unknown or the warm-up file cannot be read.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn build(
        spec: Arc<ServiceSpec>,
        registry: &ProcessorRegistry,
        paths: &LocalPaths,
        version: u32,
    ) -> Result<Self> {
        let make_processor = processor_maker(&spec, registry)?;
        let warm_up = match &paths.warm_up {
            Some(path) => read_warm_up(path).map_err(|reason| Error::WarmUp {
                service: spec.metadata.name.clone(),
                path: path.clone(),
                reason,
            })?,
            None => Vec::new(),
        };
        let mut config = ReplicaConfig::from_spec(&spec);
        config.inline = spec
            .processor
            .as_deref()
            .is_some_and(|name| registry.is_inline(name));
        Ok(Self {
            version,
            spec,
            config,
            make_processor,
            paths: paths.clone(),
            warm_up,
        })
    }

    /// Its version number.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The spec it runs.
    #[must_use]
    pub fn spec(&self) -> &Arc<ServiceSpec> {
        &self.spec
    }
}

/// The replicas of a service at one moment ([`Service::instances`]); derefs to a slice.
pub struct Replicas(arc_swap::Guard<Arc<Vec<Replica>>>);

impl std::ops::Deref for Replicas {
    type Target = [Replica];

    fn deref(&self) -> &[Replica] {
        self.0.as_slice()
    }
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// How long a retired replica keeps taking requests after it left the routing set, so that a
/// request routed to it just before cannot be refused as "shutting down".
const RETIRE_DRAIN: Duration = Duration::from_millis(50);

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("instances", &self.instances())
            .field("provider", &self.provider.name())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// [`Service::start_with_queues`] with in-memory queues.
    pub fn start(
        spec: ServiceSpec,
        registry: &ProcessorRegistry,
        paths: &LocalPaths,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        Self::start_with_queues(spec, registry, paths, metrics, &MemoryQueues)
    }

    /// Starts the service with [`initial_replicas`] instances in process ([`InProcess`]).
    /// Must be called within a tokio runtime. Fails when the processor is unknown, the sinker
    /// cannot be opened or the warm-up file cannot be read. An async service's queues are
    /// opened by `queues` and one consumer per instance is started on them.
    pub fn start_with_queues(
        spec: ServiceSpec,
        registry: &ProcessorRegistry,
        paths: &LocalPaths,
        metrics: Arc<Metrics>,
        queues: &dyn QueueFactory,
    ) -> Result<Self> {
        let initial = initial_replicas(&spec);
        Self::launch(
            spec,
            registry,
            paths,
            metrics,
            queues,
            Arc::new(InProcess::new()),
            initial,
        )
    }

    /// Starts the service with `initial` instances from `provider` (0: none yet; the
    /// controller adds them). Must be called within a tokio runtime. Fails when the processor
    /// is unknown, the sinker cannot be opened or the warm-up file cannot be read.
    pub fn launch(
        spec: ServiceSpec,
        registry: &ProcessorRegistry,
        paths: &LocalPaths,
        metrics: Arc<Metrics>,
        queues: &dyn QueueFactory,
        provider: Arc<dyn InstanceProvider>,
        initial: u32,
    ) -> Result<Self> {
        Self::launch_version(spec, registry, paths, metrics, queues, provider, initial, 1)
    }

    /// [`launch`](Self::launch) at version `version` (a service restored at the version it
    /// had).
    ///
    /// # Errors
    ///
    /// As [`launch`](Self::launch).
    #[allow(clippy::too_many_arguments)]
    pub fn launch_version(
        spec: ServiceSpec,
        registry: &ProcessorRegistry,
        paths: &LocalPaths,
        metrics: Arc<Metrics>,
        queues: &dyn QueueFactory,
        provider: Arc<dyn InstanceProvider>,
        initial: u32,
        version: u32,
    ) -> Result<Self> {
        // Specs built in code skip the parser's checks: bounds (durations a clock can add),
        // a non-empty token and the rest apply to them too.
        spec.validate().map_err(|e| Error::Core(e.into()))?;
        let name = spec.metadata.name.clone();
        let spec = Arc::new(spec);
        let template = Template::build(Arc::clone(&spec), registry, paths, version)?;
        let sink = open_sink(&spec, &metrics)?;
        let token = match &spec.token {
            Some(token) => token.clone(),
            None => generate_token().map_err(|e| Error::Token(e.to_string()))?,
        };
        // Opened before any instance starts, so that a failure leaves nothing running. Both
        // queues hold `rpc.max_queue_size` items: one result per input, so the sink holds a
        // full input queue's worth; past that it would be a leak, not a buffer. A full sink
        // holds results back in the consumers, their inputs stay queued, and the backpressure
        // reaches clients as 450 on the input queue ([`crate::queue::consumer`]).
        let opened = if spec.metadata.is_async() {
            let bound = spec.metadata.rpc.max_queue_size as usize;
            Some((
                queues.open(&name, Some(bound))?,
                queues.open(&format!("{name}/sink"), Some(bound))?,
            ))
        } else {
            None
        };
        let queues = opened.map(|(input, sink)| AsyncQueues::start(&spec, &[], input, sink));
        let service = Self {
            grace: spec.metadata.termination_grace_period,
            token,
            name_header: http::HeaderValue::from_str(&name).ok(),
            name,
            template: ArcSwap::from_pointee(template),
            previous: Mutex::new(None),
            replicas: ArcSwap::from_pointee(Vec::new()),
            provider,
            next_index: AtomicU32::new(0),
            retiring: Mutex::new(Vec::new()),
            sink,
            metrics,
            queues,
        };
        service.scale_up(initial);
        Ok(service)
    }

    /// Starts `count` more replicas (they become ready in the background) and returns their
    /// indices. Indices are never reused within a service.
    pub fn scale_up(&self, count: u32) -> Vec<u32> {
        let template = self.template.load_full();
        let started: Vec<Replica> = (0..count)
            .map(|_| {
                let index = self.next_index.fetch_add(1, Ordering::Relaxed);
                let mut init = init_context(&template.spec, &template.paths, index);
                let mut make_processor = Arc::clone(&template.make_processor);
                let gpu = match self.lease_gpus(&template.spec, index) {
                    Ok(lease) => {
                        if let Some(lease) = &lease {
                            init = lease.apply(init);
                        }
                        lease
                    }
                    Err(why) => {
                        // The instance starts and fails at once, saying why, like one whose
                        // processor cannot load: the controller reports and replaces it.
                        make_processor = refuse(&template.spec, why);
                        None
                    }
                };
                let replica = self.provider.launch(ReplicaParts {
                    service: self.name.clone(),
                    index,
                    version: template.version,
                    config: template.config.clone(),
                    make_processor,
                    init,
                    warm_up: template.warm_up.clone(),
                    metrics: Arc::clone(&self.metrics),
                    spec: Arc::clone(&template.spec),
                    process_cpu: None,
                    process_memory: None,
                    gpu,
                });
                if let Some(queues) = &self.queues {
                    queues.add_consumer(&replica);
                }
                replica
            })
            .collect();
        let indices = started.iter().map(Replica::index).collect();
        if !started.is_empty() {
            self.replicas.rcu(|current| {
                let mut next = Vec::clone(current);
                next.extend(started.iter().cloned());
                next
            });
        }
        indices
    }

    /// The GPUs instance `index` asks for (`metadata.gpu`, or a slice: `gpu_memory`,
    /// `gpu_core_percentage`), leased from the provider's inventory; `Ok(None)` on the CPU.
    fn lease_gpus(
        &self,
        spec: &ServiceSpec,
        index: u32,
    ) -> std::result::Result<Option<GpuLease>, String> {
        let demand = GpuDemand::of(&Resources::per_instance(spec));
        self.provider
            .gpus()
            .lease(&format!("{}/{index}", self.name), &demand)
            .map_err(|why| format!("instance {index} of service `{}`: {why}", self.name))
    }

    /// Takes the replicas numbered `indices` out of routing, then stops each in the
    /// background after its in-flight work (up to `termination_grace_period`). Returns how
    /// many it found.
    pub fn retire(&self, indices: &[u32]) -> usize {
        let mut gone = Vec::new();
        self.replicas.rcu(|current| {
            gone.clear();
            let (out, kept): (Vec<Replica>, Vec<Replica>) = current
                .iter()
                .cloned()
                .partition(|r| indices.contains(&r.index()));
            gone = out;
            kept
        });
        let grace = self.grace;
        let mut retiring = self.retiring.lock().unwrap_or_else(|e| e.into_inner());
        retiring.retain(|task| !task.is_finished());
        for replica in &gone {
            let replica = replica.clone();
            // An async service's consumer of this replica stops taking items first and
            // finishes the ones it holds on the replica, which runs until then.
            let consumer = self
                .queues
                .as_ref()
                .and_then(|q| q.retire_consumer(replica.index()));
            retiring.push(tokio::spawn(async move {
                tokio::time::sleep(RETIRE_DRAIN).await;
                if let Some(consumer) = consumer {
                    let _ = tokio::time::timeout(grace, consumer).await;
                }
                let left = replica.shutdown(grace).await;
                replica.remove_metrics();
                left
            }));
        }
        gone.len()
    }

    /// Replaces the replicas numbered `indices` with fresh ones: the new ones start first,
    /// the old ones are retired ([`retire`](Self::retire)). Returns the new indices.
    pub fn restart(&self, indices: &[u32]) -> Vec<u32> {
        let known: Vec<u32> = self
            .instances()
            .iter()
            .map(Replica::index)
            .filter(|i| indices.contains(i))
            .collect();
        let fresh = self.scale_up(u32::try_from(known.len()).unwrap_or(u32::MAX));
        self.retire(&known);
        fresh
    }

    /// The provider its replicas run on.
    #[must_use]
    pub fn provider(&self) -> &Arc<dyn InstanceProvider> {
        &self.provider
    }

    /// The input and sink queues of an async service (`None` for a synchronous one).
    #[must_use]
    pub fn queues(&self) -> Option<&AsyncQueues> {
        self.queues.as_ref()
    }

    /// Sets `eas_queue_backlog` to the input queue's length (async services only).
    pub async fn publish_queue_backlog(&self) {
        let Some(queues) = &self.queues else {
            return;
        };
        let labels = Metrics::service(&self.name);
        if let Ok(backlog) = queues.backlog().await {
            self.metrics
                .queue_backlog
                .get_or_create(&labels)
                .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        }
        let held = i64::try_from(queues.held_results()).unwrap_or(i64::MAX);
        self.metrics.sink_held.get_or_create(&labels).set(held);
        let stalls = i64::try_from(queues.sink_stalls()).unwrap_or(i64::MAX);
        self.metrics.sink_stalls.get_or_create(&labels).set(stalls);
    }

    /// The service name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service name as a header value (`None` if it could not be one).
    pub(crate) fn name_header(&self) -> Option<&http::HeaderValue> {
        self.name_header.as_ref()
    }

    /// The spec of its current version (the one new replicas start from).
    #[must_use]
    pub fn spec(&self) -> Arc<ServiceSpec> {
        Arc::clone(&self.template.load().spec)
    }

    /// Its current version: the one new replicas start from.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.template.load().version
    }

    /// Makes `template` the current version: replicas started from now on run it; the
    /// controller rolls the others over ([`crate::controller`]), and goes back to the version
    /// it replaced (returned) if the new one fails ([`abort_rollout`](Self::abort_rollout)).
    pub fn set_template(&self, template: Template) -> u32 {
        let before = self.template.swap(Arc::new(template));
        let version = before.version;
        *self.previous.lock().unwrap_or_else(|e| e.into_inner()) = Some(before);
        version
    }

    /// Goes back to the version before the current one (a rollout failed); returns it, or
    /// `None` when there is none to go back to. Replicas of the failed version are the
    /// caller's to retire.
    pub fn abort_rollout(&self) -> Option<u32> {
        let before = self
            .previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let version = before.version;
        self.template.store(before);
        Some(version)
    }

    /// The token clients must present (the spec's, or the one generated at start).
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Its replicas now (the routing set; retired replicas finishing their work are not in
    /// it).
    #[must_use]
    pub fn instances(&self) -> Replicas {
        Replicas(self.replicas.load())
    }

    /// Whether at least one instance takes requests.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.instances().iter().any(Replica::is_ready)
    }

    /// Whether it has replicas and none can ever become ready again (all failed or
    /// crash-blocked). A service scaled to zero is not dead.
    #[must_use]
    pub fn is_dead(&self) -> bool {
        let instances = self.instances();
        !instances.is_empty()
            && instances.iter().all(|i| {
                matches!(
                    i.state(),
                    ReplicaState::Failed(_) | ReplicaState::CrashBlocked(_) | ReplicaState::Stopped
                )
            })
    }

    /// Hands a request/answer pair to the sink, if the spec has one.
    pub fn record(&self, request: &[u8], status: u16, response: &[u8], latency: Duration) {
        if let Some(sink) = &self.sink {
            sink.record(LogRecord::new(
                &self.name,
                request,
                status,
                response,
                latency.as_secs_f64() * 1e3,
            ));
        }
    }

    /// Refreshes the gauges read at scrape time (queue depth per instance).
    pub fn publish_gauges(&self) {
        for instance in self.instances().iter() {
            self.metrics
                .queue_depth
                .get_or_create(&Metrics::instance(&self.name, Some(instance.index())))
                .set(instance.queue_depth() as i64);
        }
    }

    /// Stops every instance after its in-flight work (up to the spec's
    /// `termination_grace_period`) and closes the sink. Returns the requests left unfinished.
    pub async fn shutdown(&self) -> usize {
        if let Some(queues) = &self.queues {
            queues.shutdown(self.grace).await;
        }
        let mut left = 0;
        let instances = self.replicas.swap(Arc::new(Vec::new()));
        for instance in instances.iter() {
            left += instance.shutdown(self.grace).await;
        }
        let retiring =
            std::mem::take(&mut *self.retiring.lock().unwrap_or_else(|e| e.into_inner()));
        for task in retiring {
            left += task.await.unwrap_or(0);
        }
        if let Some(sink) = self.sink.clone() {
            let _ = tokio::task::spawn_blocking(move || sink.close()).await;
        }
        left
    }
}

/// How many replicas a service starts with: the first desired count of the controller its
/// spec describes ([`ReplicaController::from_spec`]: `metadata.instance`, within the
/// autoscaler's `[min, max]`; 0 is allowed), or `metadata.instance` when its autoscaler block
/// cannot work (the controller then refuses the spec with the reason).
#[must_use]
pub fn initial_replicas(spec: &ServiceSpec) -> u32 {
    ReplicaController::from_spec(spec).map_or(spec.metadata.instance, |c| c.desired())
}

fn processor_maker(
    spec: &Arc<ServiceSpec>,
    registry: &ProcessorRegistry,
) -> Result<ProcessorMaker> {
    let service = &spec.metadata.name;
    let Some(name) = spec.processor.as_deref() else {
        let unsupported = if !spec.containers.is_empty() {
            Some(eas_core::spec::CONTAINERS_NOT_SUPPORTED)
        } else if spec.processor_type.is_some() {
            Some(eas_core::spec::CUSTOM_PROCESSORS_NOT_SUPPORTED)
        } else {
            None
        };
        if let Some(reason) = unsupported {
            return Err(Error::Core(eas_core::Error::Unsupported(format!(
                "service `{service}` has no `processor`: {reason}"
            ))));
        }
        return Err(Error::UnknownProcessor {
            service: service.clone(),
            processor: spec.processor_type.map_or_else(
                || "(none)".to_owned(),
                |t| format!("custom {t:?} processor"),
            ),
            known: registry.names(),
        });
    };
    let factory = registry.get(name).ok_or_else(|| Error::UnknownProcessor {
        service: service.clone(),
        processor: name.to_owned(),
        known: registry.names(),
    })?;
    let spec = Arc::clone(spec);
    Ok(Arc::new(move || factory(&spec)))
}

/// A processor maker that refuses to make one, saying `why` (an instance that cannot start).
fn refuse(spec: &ServiceSpec, why: String) -> ProcessorMaker {
    let processor = spec.processor.clone().unwrap_or_default();
    Arc::new(move || Err(eas_core::Error::processor_init(&processor, &why)))
}

/// The processor's context on the CPU; the GPUs an instance is granted are applied on top
/// ([`GpuLease::apply`]).
fn init_context(spec: &ServiceSpec, paths: &LocalPaths, index: u32) -> InitContext {
    let cpu = spec
        .metadata
        .cpu
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64));
    let mut ctx = InitContext::new(spec.metadata.name.clone())
        .with_instance_index(index)
        .with_threads((cpu.round() as usize).max(1));
    if let Some(dir) = &paths.model_dir {
        ctx = ctx.with_model_dir(dir.clone());
    }
    if let Some(entry) = &paths.model_entry {
        ctx = ctx.with_model_entry(entry.clone());
    }
    if let Some(config) = &spec.model_config {
        ctx = ctx.with_model_config(config.clone());
    }
    ctx
}

fn open_sink(spec: &ServiceSpec, metrics: &Arc<Metrics>) -> Result<Option<LogWriter>> {
    let Some(sinker) = &spec.sinker else {
        return Ok(None);
    };
    let service = &spec.metadata.name;
    let file = match (sinker.sink_type, &sinker.config.file) {
        (SinkerType::File, Some(file)) => file,
        (other, _) => {
            return Err(Error::Core(eas_core::Error::Unsupported(format!(
                "service `{service}`: sinker type `{}` needs its cloud service; this server writes \
                 `file` sinks only",
                other.as_str()
            ))));
        }
    };
    let opened = JsonLinesLog::create(&file.path).and_then(|sink| {
        LogWriter::spawn(
            service,
            Box::new(sink),
            SINK_BUFFER,
            Some(Arc::clone(metrics)),
        )
    });
    opened.map(Some).map_err(|e| Error::Sink {
        service: service.clone(),
        path: PathBuf::from(&file.path),
        source: e,
    })
}

/// Reads a warm-up file: JSON lines of `{"body": "text"}` or `{"body_base64": "..."}` (with
/// an optional `"content_type"`), or else the whole file as one request body.
fn read_warm_up(path: &Path) -> std::result::Result<Vec<Request>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&bytes).ok();
    let lines: Option<Vec<serde_json::Value>> = text.and_then(|t| {
        t.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .filter(|v| v.is_object())
            })
            .collect()
    });
    let Some(lines) = lines.filter(|l| !l.is_empty()) else {
        return Ok(vec![crate::request::build(
            bytes.into(),
            "",
            HeaderMap::new(),
        )]);
    };
    lines
        .iter()
        .enumerate()
        .map(|(n, line)| {
            let body = match (line.get("body"), line.get("body_base64")) {
                (Some(serde_json::Value::String(text)), None) => text.clone().into_bytes(),
                (None, Some(serde_json::Value::String(b64))) => BASE64
                    .decode(b64)
                    .map_err(|e| format!("line {}: body_base64: {e}", n + 1))?,
                _ => {
                    return Err(format!(
                        "line {}: needs exactly one of `body` (text) or `body_base64`",
                        n + 1
                    ));
                }
            };
            let mut headers = HeaderMap::new();
            if let Some(ct) = line.get("content_type").and_then(|c| c.as_str()) {
                // Visible ASCII only: what a processor can read back as text.
                let ct = HeaderValue::from_str(ct)
                    .ok()
                    .filter(|v| v.to_str().is_ok())
                    .ok_or_else(|| {
                        format!(
                            "line {}: content_type is not an HTTP header value of visible ASCII",
                            n + 1
                        )
                    })?;
                headers.insert(http::header::CONTENT_TYPE, ct);
            }
            Ok(crate::request::build(body.into(), "", headers))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_file_should_read_json_lines_or_one_raw_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines = dir.path().join("warm.jsonl");
        std::fs::write(
            &lines,
            "{\"body\": \"hi\"}\n\n{\"body_base64\": \"/wA=\", \"content_type\": \"application/x\"}\n",
        )
        .expect("write");
        let requests = read_warm_up(&lines).expect("read");
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].body.as_ref(), b"hi");
        assert_eq!(requests[1].body.as_ref(), &[0xff, 0x00]);
        assert_eq!(requests[1].content_type.as_deref(), Some("application/x"));

        let raw = dir.path().join("warm.bin");
        std::fs::write(&raw, [1u8, 2, 3]).expect("write");
        assert_eq!(
            read_warm_up(&raw).expect("read")[0].body.as_ref(),
            &[1, 2, 3]
        );

        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"nobody\": 1}\n").expect("write");
        let error = read_warm_up(&bad).expect_err("no body");
        assert!(error.contains("line 1"), "{error}");

        // A content type is sent as a header: one no header can carry is refused by line.
        std::fs::write(
            &bad,
            "{\"body\": \"a\"}\n{\"body\": \"b\", \"content_type\": \"a\\nb\"}\n",
        )
        .expect("write");
        let error = read_warm_up(&bad).expect_err("a newline in a header value");
        assert!(error.contains("line 2: content_type"), "{error}");
        std::fs::write(
            &bad,
            "{\"body\": \"a\", \"content_type\": \"text/plain; charset=\\u00fc\"}\n",
        )
        .expect("write");
        let error = read_warm_up(&bad).expect_err("not ASCII");
        assert!(error.contains("line 1: content_type"), "{error}");
    }

    #[test]
    fn a_container_service_should_be_refused_saying_containers_are_not_run() {
        let spec = ServiceSpec::from_json_str(
            r#"{"metadata": {"name": "c", "instance": 1},
                "containers": [{"image": "registry/model:1", "command": "python app.py"}]}"#,
        )
        .expect("spec");
        let error = processor_maker(&Arc::new(spec), &ProcessorRegistry::with_builtins())
            .err()
            .expect("refused");
        let text = error.to_string();
        assert!(
            text.contains("running container images is not in scope"),
            "{text}"
        );
        assert!(!text.contains("(none)"), "{text}");
    }

    #[test]
    fn local_paths_should_join_model_entry_to_model_path() {
        let spec = ServiceSpec::from_json_str(
            r#"{"metadata": {"name": "m", "instance": 1}, "processor": "onnx",
                "model_path": "models", "model_entry": "mlp.onnx"}"#,
        )
        .expect("spec");
        let paths = LocalPaths::local(&spec, Path::new("/srv"));
        assert_eq!(paths.model_dir, Some(PathBuf::from("/srv/models")));
        assert_eq!(
            paths.model_entry,
            Some(PathBuf::from("/srv/models/mlp.onnx"))
        );
    }
}
