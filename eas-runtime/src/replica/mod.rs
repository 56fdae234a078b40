//! One replica of a service (what EAS calls an instance, and what eas-core's `Instance`
//! record stands for once it runs here): its processor, its queue, its batcher and its workers.
//!
//! ```text
//! submit() --queue--> batcher task --batches--> worker threads --> Processor::process
//!    ^                 (up to max_batch_size,     (worker_threads,        |
//!    |                  or max_batch_timeout)      off the async threads) |
//!    +------------------------ oneshot reply per request <----------------+
//! ```
//!
//! Instance-level admission is decided in [`Replica::submit`], which refuses with a
//! [`ReplicaError`]: not ready, over `rpc.rate_limit`, `rpc.max_queue_size` requests already
//! waiting, shutting down. A request whose client gave up (the keepalive expired) is dropped
//! before it reaches the processor. An inline processor (`register_inline`) has no queue,
//! batcher or workers: it answers on the thread that admits the request, and the admission
//! layers get the answer without a channel.
//!
//! A processor that panics fails only the requests that make it panic: a batch that panics is
//! run again one request at a time. Then the instance rebuilds its processor (a restart),
//! unless `runtime.enable_crash_block` is set: then it stays down and says why.
//!
//! [`Replica::usage`] is what the controller samples each tick for the autoscaler: requests
//! answered, CPU time of the threads that ran the processor, requests in flight, and the
//! custom metrics the processor reported through the [`MetricReporter`] of its `InitContext`
//! (each instance has its own). Counting costs two relaxed atomic additions and one read of
//! the thread's CPU clock per batch (for an inline processor, the wall time of its call, two
//! reads of the monotonic clock), no lock and no allocation.

pub mod admission;
mod batcher;
mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use eas_core::processor::{
    DynProcessor, InitContext, MetricReporter, Processor, Request, Response,
};
use eas_core::spec::ServiceSpec;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot};

pub use crate::outcome::{Failure, ReplicaError};

use crate::gpu::GpuLease;
use crate::limit::RateLimiter;
use crate::metrics::{InstanceLabels, Metrics};

/// Makes a fresh, uninitialized processor for this instance.
pub type ProcessorMaker = Arc<dyn Fn() -> eas_core::Result<DynProcessor> + Send + Sync>;

/// CPU time spent for an instance outside the threads of this process (its worker process's,
/// with the child-process provider), read each time [`Replica::usage`] is sampled. Never
/// decreases.
pub type CpuClock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// The resident memory, in bytes, of the process an instance runs in when that is a process
/// of its own (its worker process, with the child-process provider); `None` while it has
/// none. Read once a second by the series sampler and on each control tick.
pub type MemoryProbe = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// The panic payload a processor unwinds with when the process that ran the batch died (a
/// worker process of the child-process provider): the instance restarts its processor, and
/// the requests get [`Failure::Died`] instead of [`Failure::Panicked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessDied {
    /// What happened, in words (the exit status or signal, and what it likely means).
    pub why: String,
    /// Whether the batch may have reached the dead process. `false`: it was known dead before
    /// the batch was sent, so running the batch again elsewhere cannot run it twice.
    pub delivered: bool,
}

pub(crate) use worker::panic_message;

/// What an instance answers for one request.
pub type Reply = Result<Response, Failure>;

/// What an instance did with a request it admitted ([`Replica::admit`]).
#[derive(Debug)]
pub(crate) enum Admitted {
    /// An inline processor ran it at once: its answer.
    Answered(Reply),
    /// It is queued; the answer comes on this channel.
    Queued(oneshot::Receiver<Reply>),
}

/// How an instance batches, queues and limits, from the spec's `metadata.rpc` and `runtime`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// The most requests per processor call (1 without batching).
    pub max_batch_size: usize,
    /// The longest a batch waits for more requests after its first.
    pub max_batch_timeout: Duration,
    /// The most requests waiting at the instance; past it, 450.
    pub max_queue_size: usize,
    /// Threads that run the processor.
    pub worker_threads: usize,
    /// Requests per second the instance accepts (`None`: unlimited); past it, 429.
    pub rate_limit: Option<u32>,
    /// Stay down after a crash instead of restarting.
    pub crash_block: bool,
    /// Run the processor on the calling (I/O) thread, one request at a time, instead of on the
    /// worker threads; see `ProcessorRegistry::register_inline`.
    pub inline: bool,
}

impl ReplicaConfig {
    /// The configuration a spec asks for.
    #[must_use]
    pub fn from_spec(spec: &ServiceSpec) -> Self {
        let rpc = &spec.metadata.rpc;
        let batching = rpc.batching && rpc.max_batch_size > 1;
        Self {
            max_batch_size: if batching {
                rpc.max_batch_size as usize
            } else {
                1
            },
            max_batch_timeout: if batching {
                rpc.max_batch_timeout
            } else {
                Duration::ZERO
            },
            max_queue_size: (rpc.max_queue_size as usize).max(1),
            worker_threads: (rpc.worker_threads as usize).max(1),
            rate_limit: (rpc.rate_limit > 0).then_some(rpc.rate_limit),
            crash_block: spec.runtime.as_ref().is_some_and(|r| r.enable_crash_block),
            inline: false,
        }
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaState {
    /// Building and initializing its processor, or warming up.
    Starting,
    /// Taking requests.
    Ready,
    /// Rebuilding its processor after a crash.
    Restarting,
    /// Down after a crash because `runtime.enable_crash_block` is set; says why.
    CrashBlocked(String),
    /// Its processor could not be built or initialized; says why.
    Failed(String),
    /// Shut down.
    Stopped,
}

/// What an instance has done since it started, for the autoscaler: sample it periodically and
/// take differences of the monotonic counters (`completed`, `cpu_time`) to get rates.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplicaUsage {
    /// Requests the processor answered since the instance started, successes and failures
    /// (warm-up requests excluded). Never decreases.
    pub completed: u64,
    /// CPU time of the threads that ran the processor: the worker threads' whole CPU time (a
    /// restart's rebuild included), or for an inline processor the wall time of its calls
    /// (inline processors do not block). Threads
    /// the processor starts itself (an inference library's pool) are not counted. Never
    /// decreases.
    pub cpu_time: Duration,
    /// Requests admitted and not yet finished: waiting plus running (as [`Replica::load`]).
    pub in_flight: usize,
    /// The latest value of each custom metric the processor reported.
    pub custom: BTreeMap<String, f64>,
    /// Custom metric reports ignored so far (a bad name or value, or too many names).
    pub custom_rejected: u64,
    /// Times its processor crashed and was rebuilt since the instance started (as
    /// `eas_instance_restarts_total`; a crash-blocked instance is not restarted).
    pub restarts: u64,
    /// When the instance was created.
    pub started_at: SystemTime,
}

/// A request waiting at an instance.
struct Job {
    request: Request,
    enqueued_at: std::time::Instant,
    reply: oneshot::Sender<Reply>,
}

/// Where admitted requests go.
enum Intake {
    /// To the batcher task, which gathers batches.
    Batcher(mpsc::UnboundedSender<Job>),
    /// Straight to the workers, one request per batch (batching off).
    Direct(async_channel::Sender<Vec<Job>>),
}

impl Intake {
    /// Hands a job over; `false` when the instance is shutting down.
    fn send(&self, job: Job) -> bool {
        match self {
            Self::Batcher(queue) => queue.send(job).is_ok(),
            Self::Direct(workers) => workers.try_send(vec![job]).is_ok(),
        }
    }
}

/// A running instance. Cheap to clone: clones share the instance.
#[derive(Clone)]
pub struct Replica {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("service", &self.shared.service)
            .field("index", &self.shared.index)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// What the handle, the batcher and the workers share.
struct Shared {
    service: String,
    index: u32,
    version: u32,
    config: ReplicaConfig,
    state: Mutex<ReplicaState>,
    ready: AtomicBool,
    /// Requests admitted and not yet taken by a worker.
    waiting: AtomicUsize,
    /// Requests a worker is running now.
    running: AtomicUsize,
    limiter: Option<RateLimiter>,
    queue: Mutex<Option<Intake>>,
    processor: RwLock<Option<Arc<dyn Processor>>>,
    make_processor: ProcessorMaker,
    init: InitContext,
    warm_up: Vec<Request>,
    metrics: Arc<Metrics>,
    /// This instance's histograms, looked up once.
    histograms: ReplicaHistograms,
    labels: InstanceLabels,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Requests the processor answered.
    completed: AtomicU64,
    /// CPU time of the threads that ran the processor, in nanoseconds.
    cpu_nanos: AtomicU64,
    /// Crashes after which the processor was rebuilt.
    restarts: AtomicU64,
    started_at: SystemTime,
    /// Where the processor reports custom metrics (the one in `init`).
    reporter: MetricReporter,
    /// CPU time spent for it elsewhere (a worker process).
    process_cpu: Option<CpuClock>,
    /// The resident memory of its own process, if it has one.
    process_memory: Option<MemoryProbe>,
    /// Its GPUs, taken (given back) when it stops.
    gpu: Mutex<Option<GpuLease>>,
    /// Whether usage() has warned about rejected custom metrics yet.
    warned_rejected: AtomicBool,
    /// Set once the instance's series were removed: publish none again.
    metrics_removed: AtomicBool,
}

/// The per-request histograms of one instance.
struct ReplicaHistograms {
    queue_wait: Histogram,
    batch_size: Histogram,
    process_duration: Histogram,
}

/// How to start an instance.
pub struct ReplicaParts {
    /// The service it belongs to.
    pub service: String,
    /// Its index within the service.
    pub index: u32,
    /// The version of the service it runs.
    pub version: u32,
    /// Batching, queueing and limits.
    pub config: ReplicaConfig,
    /// Makes its processor.
    pub make_processor: ProcessorMaker,
    /// What the processor is initialized with. Its metric reporter is replaced by one of the
    /// instance's own, which [`Replica::usage`] reads.
    pub init: InitContext,
    /// Requests replayed through the processor before the instance is marked ready.
    pub warm_up: Vec<Request>,
    /// Where it records metrics.
    pub metrics: Arc<Metrics>,
    /// The spec of the service it runs (a provider that starts processes sends it along).
    pub spec: Arc<ServiceSpec>,
    /// CPU time spent for it outside this process's threads, added to [`ReplicaUsage::cpu_time`].
    pub process_cpu: Option<CpuClock>,
    /// The resident memory of a process of its own ([`Replica::resident_memory`]); `None`
    /// for an instance that shares the server's process.
    pub process_memory: Option<MemoryProbe>,
    /// The GPUs granted to it (already applied to `init`), given back when it stops.
    pub gpu: Option<GpuLease>,
}

impl Replica {
    /// Starts an instance: its batcher on the current tokio runtime, then, on a thread of its
    /// own, builds and initializes the processor, replays the warm-up requests, starts the
    /// workers and marks itself ready. Must be called within a tokio runtime.
    #[must_use]
    pub fn start(parts: ReplicaParts) -> Self {
        let batching = parts.config.max_batch_size > 1;
        // With batching, the batcher holds one formed batch while every worker is busy, so
        // requests pile up and the next batch fills at once. Without it, requests go straight
        // to the workers: no batcher task, one thread hop less per request.
        let (batch_tx, batch_rx) = if batching {
            async_channel::bounded(1)
        } else {
            async_channel::unbounded()
        };
        let (intake, batcher_queue) = if batching {
            let (queue_tx, queue_rx) = mpsc::unbounded_channel();
            (Intake::Batcher(queue_tx), Some(queue_rx))
        } else {
            (Intake::Direct(batch_tx.clone()), None)
        };
        let labels = Metrics::instance(&parts.service, Some(parts.index));
        let histograms = ReplicaHistograms {
            queue_wait: parts.metrics.queue_wait.get_or_create(&labels).clone(),
            batch_size: parts.metrics.batch_size.get_or_create(&labels).clone(),
            process_duration: parts
                .metrics
                .process_duration
                .get_or_create(&labels)
                .clone(),
        };
        let reporter = MetricReporter::new();
        let init = parts.init.with_metrics(reporter.clone());
        let shared = Arc::new(Shared {
            limiter: parts.config.rate_limit.map(RateLimiter::per_second),
            service: parts.service,
            index: parts.index,
            version: parts.version,
            config: parts.config,
            state: Mutex::new(ReplicaState::Starting),
            ready: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            queue: Mutex::new(Some(intake)),
            processor: RwLock::new(None),
            make_processor: parts.make_processor,
            init,
            warm_up: parts.warm_up,
            histograms,
            metrics: parts.metrics,
            labels,
            workers: Mutex::new(Vec::new()),
            completed: AtomicU64::new(0),
            cpu_nanos: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            started_at: SystemTime::now(),
            reporter,
            process_cpu: parts.process_cpu,
            process_memory: parts.process_memory,
            gpu: Mutex::new(parts.gpu),
            warned_rejected: AtomicBool::new(false),
            metrics_removed: AtomicBool::new(false),
        });
        shared.publish_readiness();
        if let Some(queue_rx) = batcher_queue {
            tokio::spawn(batcher::run(
                queue_rx,
                batch_tx,
                shared.config.max_batch_size,
                shared.config.max_batch_timeout,
                Arc::clone(&shared),
            ));
        } else {
            drop(batch_tx);
        }
        let starter = Arc::clone(&shared);
        let name = format!("eas-{}-{}-start", shared.service, shared.index);
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || worker::start(&starter, batch_rx));
        if let Err(e) = spawned {
            shared.set_state(ReplicaState::Failed(format!("cannot start a thread: {e}")));
        }
        Self { shared }
    }

    /// The service this instance belongs to.
    #[must_use]
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// Its index within the service.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.shared.index
    }

    /// The version of the service it runs.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.shared.version
    }

    /// The resident memory of the process it runs in, in bytes, when that process is its own
    /// (a worker process); `None` for an instance in the server's process, which shares the
    /// server's memory.
    #[must_use]
    pub fn resident_memory(&self) -> Option<u64> {
        self.shared
            .process_memory
            .as_ref()
            .and_then(|probe| probe())
    }

    /// The ordinals of the GPUs it holds (empty on the CPU, and once it stopped).
    #[must_use]
    pub fn gpu_ordinals(&self) -> Vec<u32> {
        self.shared
            .gpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|lease| lease.ordinals().to_vec())
            .unwrap_or_default()
    }

    /// Where it is in its life.
    #[must_use]
    pub fn state(&self) -> ReplicaState {
        self.shared.state()
    }

    /// Whether it takes requests now.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// Requests admitted and not yet finished: waiting plus running.
    #[must_use]
    pub fn load(&self) -> usize {
        self.shared.waiting.load(Ordering::Acquire) + self.shared.running.load(Ordering::Acquire)
    }

    /// Requests waiting for a worker.
    #[must_use]
    pub fn queue_depth(&self) -> usize {
        self.shared.waiting.load(Ordering::Acquire)
    }

    /// What it has done since it started: requests answered, CPU time, requests in flight,
    /// the processor's custom metrics. Cheap enough to call every second (it copies the custom
    /// metrics, at most `MetricReporter::MAX_NAMES` of them).
    #[must_use]
    pub fn usage(&self) -> ReplicaUsage {
        let shared = &self.shared;
        let custom_rejected = shared.reporter.rejected();
        if custom_rejected > 0 && !shared.warned_rejected.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                service = %shared.service,
                instance = shared.index,
                "the processor reported custom metrics that were ignored: a name must be 1 to \
                 {} characters of [a-zA-Z0-9_:], at most {} names, values finite",
                MetricReporter::MAX_NAME_LEN,
                MetricReporter::MAX_NAMES,
            );
        }
        ReplicaUsage {
            completed: shared.completed.load(Ordering::Relaxed),
            cpu_time: Duration::from_nanos(shared.cpu_nanos.load(Ordering::Relaxed))
                + shared
                    .process_cpu
                    .as_ref()
                    .map_or(Duration::ZERO, |clock| clock()),
            in_flight: self.load(),
            custom: shared.reporter.values(),
            custom_rejected,
            restarts: shared.restarts.load(Ordering::Relaxed),
            started_at: shared.started_at,
        }
    }

    /// Drops this instance's metric series (see [`Metrics::remove_instance`]) and publishes
    /// none again. Call it once the instance is gone for good, after [`shutdown`](Self::shutdown).
    pub fn remove_metrics(&self) {
        let shared = &self.shared;
        shared.metrics_removed.store(true, Ordering::Release);
        shared
            .metrics
            .remove_instance(&shared.service, shared.index);
    }

    /// The processor's description of its model, once initialized (`None` if it gives none).
    #[must_use]
    pub fn metadata(&self) -> Option<eas_core::processor::ModelMetadata> {
        let metadata = self.shared.current_processor()?.metadata();
        let described = !(metadata.inputs.is_empty() && metadata.outputs.is_empty());
        described.then_some(metadata)
    }

    /// Admits a request, or says why not. The answer arrives on the returned channel.
    pub fn submit(&self, request: Request) -> Result<oneshot::Receiver<Reply>, ReplicaError> {
        match self.admit(request)? {
            Admitted::Queued(answer) => Ok(answer),
            Admitted::Answered(reply) => {
                let (sender, answer) = oneshot::channel();
                let _ = sender.send(reply);
                Ok(answer)
            }
        }
    }

    /// Admits a request, or says why not: an inline processor answers it at once, on this
    /// thread; else it is queued ([`submit`](Self::submit) gives both as a channel).
    pub(crate) fn admit(&self, request: Request) -> Result<Admitted, ReplicaError> {
        let shared = &self.shared;
        if !self.is_ready() {
            return Err(ReplicaError::NotReady {
                service: shared.service.clone(),
                index: shared.index,
                state: describe_state(&shared.state()),
            });
        }
        if let Some(limiter) = &shared.limiter
            && !limiter.try_acquire()
        {
            return Err(ReplicaError::RateLimited {
                service: shared.service.clone(),
                index: shared.index,
                rate: limiter.rate(),
            });
        }
        if shared.config.inline {
            return self.run_inline(request);
        }
        let before = shared.waiting.fetch_add(1, Ordering::AcqRel);
        if before >= shared.config.max_queue_size {
            shared.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ReplicaError::QueueFull {
                service: shared.service.clone(),
                index: shared.index,
                size: shared.config.max_queue_size as u32,
            });
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            enqueued_at: std::time::Instant::now(),
            reply,
        };
        let queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.as_ref().map(|q| q.send(job)) {
            Some(true) => Ok(Admitted::Queued(answer)),
            _ => {
                shared.waiting.fetch_sub(1, Ordering::AcqRel);
                Err(shared.shutting_down())
            }
        }
    }

    /// Runs one request on this thread (an inline processor).
    fn run_inline(&self, request: Request) -> Result<Admitted, ReplicaError> {
        let shared = &self.shared;
        let open = shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !open {
            return Err(shared.shutting_down());
        }
        shared.running.fetch_add(1, Ordering::AcqRel);
        let reply = worker::run_one(shared, &request);
        shared.running.fetch_sub(1, Ordering::AcqRel);
        Ok(Admitted::Answered(reply))
    }

    /// Stops taking requests, lets what is queued finish (up to `grace`), then stops the
    /// workers. Returns how many requests were still unfinished when the grace ran out.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let shared = &self.shared;
        shared.ready.store(false, Ordering::Release);
        drop(
            shared
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let deadline = crate::limit::deadline(grace);
        while self.load() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let left = self.load();
        shared.set_state(ReplicaState::Stopped);
        let workers =
            std::mem::take(&mut *shared.workers.lock().unwrap_or_else(|e| e.into_inner()));
        if left == 0 {
            // The queue is closed and empty, so the workers are on their way out.
            let _ = tokio::task::spawn_blocking(move || {
                for worker in workers {
                    let _ = worker.join();
                }
            })
            .await;
        }
        // The processor goes now, not when the last handle of the instance does (a worker
        // process stops here); a batch still running keeps its own reference.
        drop(
            shared
                .processor
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        // Its GPUs are free for the next instance once its processor is gone.
        drop(shared.gpu.lock().unwrap_or_else(|e| e.into_inner()).take());
        left
    }
}

impl Shared {
    fn shutting_down(&self) -> ReplicaError {
        ReplicaError::ShuttingDown {
            service: self.service.clone(),
            index: self.index,
        }
    }

    fn state(&self) -> ReplicaState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_state(&self, state: ReplicaState) {
        let ready = state == ReplicaState::Ready;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.ready.store(ready, Ordering::Release);
        self.publish_readiness();
    }

    /// Whether its metric series may be published (not removed yet).
    fn publishes_metrics(&self) -> bool {
        !self.metrics_removed.load(Ordering::Acquire)
    }

    fn add_cpu_time(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn publish_readiness(&self) {
        if !self.publishes_metrics() {
            return;
        }
        let ready = i64::from(self.ready.load(Ordering::Acquire));
        self.metrics
            .instance_ready
            .get_or_create(&self.labels)
            .set(ready);
    }

    fn current_processor(&self) -> Option<Arc<dyn Processor>> {
        self.processor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Describes an instance state in words, for error messages and status pages.
#[must_use]
pub fn describe_state(state: &ReplicaState) -> String {
    match state {
        ReplicaState::Starting => "starting".into(),
        ReplicaState::Ready => "ready".into(),
        ReplicaState::Restarting => "restarting after a crash".into(),
        ReplicaState::CrashBlocked(why) => {
            format!("down after a crash (runtime.enable_crash_block is set): {why}")
        }
        ReplicaState::Failed(why) => format!("failed to start: {why}"),
        ReplicaState::Stopped => "stopped".into(),
    }
}

#[cfg(test)]
mod tests {
    use eas_core::processor::{ProcessError, Response};

    use super::*;

    /// Echoes; `burn:MS` first burns MS milliseconds of its thread's CPU, `fail` fails, `panic`
    /// panics, `none` makes it return no result for the batch. Reports how many requests it
    /// has seen as the custom metric `seen`.
    #[derive(Default)]
    struct Busy {
        metrics: Option<MetricReporter>,
        seen: AtomicU64,
    }

    impl Processor for Busy {
        fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
            self.metrics = Some(ctx.metrics().clone());
            Ok(())
        }

        fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
            let seen = self.seen.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.report("seen", (seen + batch.len() as u64) as f64);
                metrics.report("not a name", 1.0);
            }
            if batch.iter().any(|r| r.body == "none") {
                return Vec::new();
            }
            batch
                .iter()
                .map(|request| {
                    let body = std::str::from_utf8(&request.body).unwrap_or_default();
                    if let Some(ms) = body.strip_prefix("burn:") {
                        burn(Duration::from_millis(ms.parse().unwrap_or(0)));
                    }
                    assert_ne!(body, "panic", "asked to panic");
                    if body == "fail" {
                        return Err(ProcessError::bad_request("asked to fail"));
                    }
                    Ok(Response::ok(request.body.clone()))
                })
                .collect()
        }
    }

    /// Spins until this thread has used `cpu` of CPU time (not wall time: a busy machine
    /// only makes it take longer).
    fn burn(cpu: Duration) {
        let start = cpu_time::ThreadTime::now();
        let mut x = 0u64;
        while start.elapsed() < cpu {
            for i in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
    }

    fn config(inline: bool) -> ReplicaConfig {
        ReplicaConfig {
            max_batch_size: 1,
            max_batch_timeout: Duration::ZERO,
            max_queue_size: 64,
            worker_threads: 2,
            rate_limit: None,
            crash_block: false,
            inline,
        }
    }

    async fn started(config: ReplicaConfig, metrics: &Arc<Metrics>) -> Replica {
        let replica = Replica::start(ReplicaParts {
            service: "svc".into(),
            index: 0,
            version: 1,
            config,
            make_processor: Arc::new(|| Ok(Box::new(Busy::default()))),
            init: InitContext::new("svc"),
            warm_up: vec![Request::new("warm")],
            metrics: Arc::clone(metrics),
            spec: Arc::new(ServiceSpec::new(eas_core::spec::Metadata::new("svc", 1))),
            process_cpu: None,
            process_memory: None,
            gpu: None,
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !replica.is_ready() {
            assert!(std::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        replica
    }

    async fn ask(replica: &Replica, body: &'static str) -> Reply {
        let answer = replica.submit(Request::new(body)).expect("admitted");
        answer.await.expect("answered")
    }

    /// Waits until nothing is in flight, so that the last batch is counted.
    async fn idle(replica: &Replica) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while replica.load() > 0 {
            assert!(std::time::Instant::now() < deadline, "still busy");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// [`Busy`] that says it runs one batch at a time well.
    struct OneAtATime(Busy);

    impl Processor for OneAtATime {
        fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
            self.0.initialize(ctx)
        }

        fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
            self.0.process(batch)
        }

        fn max_concurrent_batches(&self) -> Option<usize> {
            Some(1)
        }
    }

    #[tokio::test]
    async fn a_processor_that_runs_one_batch_at_a_time_should_get_one_worker() {
        let metrics = Arc::new(Metrics::new());
        let four = ReplicaConfig {
            worker_threads: 4,
            ..config(false)
        };
        let plain = started(four.clone(), &metrics).await;
        assert_eq!(plain.shared.workers.lock().expect("lock").len(), 4);
        let mut parts = ReplicaParts {
            service: "one".into(),
            index: 0,
            version: 1,
            config: four,
            make_processor: Arc::new(|| Ok(Box::new(OneAtATime(Busy::default())))),
            init: InitContext::new("one"),
            warm_up: Vec::new(),
            metrics,
            spec: Arc::new(ServiceSpec::new(eas_core::spec::Metadata::new("one", 1))),
            process_cpu: None,
            process_memory: None,
            gpu: None,
        };
        parts.config.max_batch_size = 8;
        let one = Replica::start(parts);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !one.is_ready() {
            assert!(std::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(one.shared.workers.lock().expect("lock").len(), 1);
        assert_eq!(
            ask(&one, "a").await.expect("answered").body,
            "a",
            "it serves"
        );
    }

    #[tokio::test]
    async fn usage_should_count_answered_requests_successes_and_failures() {
        let created = SystemTime::now();
        let replica = started(config(false), &Arc::new(Metrics::new())).await;
        assert_eq!(replica.usage().completed, 0, "warm-up is not counted");
        for body in ["a", "b", "fail", "c"] {
            let _ = ask(&replica, body).await;
        }
        let usage = replica.usage();
        assert_eq!(usage.completed, 4);
        assert!(usage.started_at >= created, "{usage:?}");
        idle(&replica).await;
        assert_eq!(replica.usage().in_flight, 0);
    }

    #[tokio::test]
    async fn usage_should_count_restarts_after_a_crash() {
        for inline in [false, true] {
            let replica = started(config(inline), &Arc::new(Metrics::new())).await;
            let answer = ask(&replica, "panic").await;
            assert!(matches!(answer, Err(Failure::Panicked(_))), "{answer:?}");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while replica.usage().restarts == 0 || !replica.is_ready() {
                assert!(std::time::Instant::now() < deadline, "never restarted");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let usage = replica.usage();
            assert_eq!(
                (usage.restarts, usage.completed),
                (1, 1),
                "inline {inline}: {usage:?}"
            );
            assert_eq!(
                ask(&replica, "after").await.ok(),
                Some(Response::ok("after"))
            );
        }
    }

    #[tokio::test]
    async fn a_processor_without_a_result_per_request_should_fail_the_request_and_say_so() {
        for inline in [false, true] {
            let replica = started(config(inline), &Arc::new(Metrics::new())).await;
            let answer = ask(&replica, "none").await;
            let Err(Failure::Internal(why)) = &answer else {
                panic!("inline {inline}: {answer:?}");
            };
            assert!(why.contains("returned 0 results for a batch of 1"), "{why}");
            assert_eq!(ask(&replica, "next").await.ok(), Some(Response::ok("next")));
        }
    }

    #[tokio::test]
    async fn usage_should_grow_cpu_time_when_the_processor_burns_cpu() {
        for inline in [false, true] {
            let replica = started(config(inline), &Arc::new(Metrics::new())).await;
            let before = replica.usage().cpu_time;
            let answer = ask(&replica, "burn:50").await;
            assert!(answer.is_ok(), "{answer:?}");
            idle(&replica).await;
            let spent = replica.usage().cpu_time - before;
            assert!(
                spent > Duration::from_millis(20),
                "inline {inline}: {spent:?}"
            );
        }
    }

    #[tokio::test]
    async fn usage_should_show_custom_metrics_reported_from_process() {
        let replica = started(config(false), &Arc::new(Metrics::new())).await;
        for body in ["a", "b", "c"] {
            let _ = ask(&replica, body).await;
        }
        let usage = replica.usage();
        // The warm-up request was seen too.
        assert_eq!(usage.custom, BTreeMap::from([("seen".to_owned(), 4.0)]));
        assert_eq!(usage.custom_rejected, 4, "`not a name`, once per call");
    }

    #[tokio::test]
    async fn removed_metrics_should_stay_removed_after_shutdown() {
        let metrics = Arc::new(Metrics::new());
        let replica = started(config(false), &metrics).await;
        let _ = ask(&replica, "a").await;
        assert!(
            metrics
                .encode()
                .contains(r#"eas_instance_ready{service="svc",instance="0"} 1"#)
        );
        assert_eq!(replica.shutdown(Duration::from_secs(1)).await, 0);
        replica.remove_metrics();
        let text = metrics.encode();
        assert!(!text.contains(r#"instance="0""#), "{text}");
    }
}
