//! Simple fakes of every trait, for tests of code that uses them (feature `testing`).
//!
//! - [`CountingEcho`], [`FailingProcessor`]: processors.
//! - [`FixedScheduler`]: a scheduler with preset actions.
//! - [`MemoryMount`]: a storage mount over an in-memory map.
//! - [`FixedAutoscaler`]: always the same replica count.
//! - [`StaticPrices`]: a pricing table, spot constant in time.
//! - [`block_on`]: drives a future to completion without an async runtime.
//!
//! ```
//! use eas_core::Processor;
//! use eas_core::processor::{InitContext, Request};
//! use eas_core::testing::{block_on, CountingEcho, MemoryMount};
//! use eas_core::StorageMount;
//!
//! let mut echo = CountingEcho::new();
//! echo.initialize(&InitContext::new("echo"))?;
//! let out = echo.process(&[Request::new("hi")]);
//! assert_eq!(out[0].as_ref().map(|r| r.body.clone()).ok(), Some("hi".into()));
//! assert_eq!(echo.batches_seen(), 1);
//!
//! let mount = MemoryMount::new("mem://m/", "/models").with_file("a.bin", "abc");
//! assert_eq!(block_on(mount.read("a.bin"))?, "abc");
//! # Ok::<(), eas_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::autoscaler::{Observation, Recommendation};
use crate::pricing::PricePoint;
use crate::processor::{InitContext, ProcessError, Request, Response};
use crate::resources::Zone;
use crate::scheduler::{Action, ScheduleInput, ServiceDemand};
use crate::storage::{MountMode, MountReport, ObjectInfo, Progress, TransferProgress};
use crate::{Autoscaler, Error, PricingOracle, Processor, Result, Scheduler, StorageMount};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on the current thread, parking it while the future waits.
///
/// Enough for the fakes here, which never wait, and for futures woken from other threads; not
/// a runtime (no timers, no I/O reactor).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Answers each request with its own body and content type; counts batches and requests.
#[derive(Debug, Default)]
pub struct CountingEcho {
    initialized: Option<InitContext>,
    batches: AtomicUsize,
    requests: AtomicUsize,
}

impl CountingEcho {
    /// A fresh echo processor.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many batches [`Processor::process`] has seen.
    #[must_use]
    pub fn batches_seen(&self) -> usize {
        self.batches.load(Ordering::SeqCst)
    }

    /// How many requests [`Processor::process`] has seen.
    #[must_use]
    pub fn requests_seen(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The context it was initialized with, if it was.
    #[must_use]
    pub const fn init_context(&self) -> Option<&InitContext> {
        self.initialized.as_ref()
    }
}

impl Processor for CountingEcho {
    fn initialize(&mut self, ctx: &InitContext) -> Result<()> {
        self.initialized = Some(ctx.clone());
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(batch.len(), Ordering::SeqCst);
        batch
            .iter()
            .map(|r| {
                Ok(Response {
                    body: r.body.clone(),
                    content_type: r.content_type.clone(),
                    status: 200,
                })
            })
            .collect()
    }
}

/// How a [`FailingProcessor`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureMode {
    Error,
    Panic,
    Initialize,
}

/// Echoes requests, except those whose body equals a marker: those fail (500) or make
/// `process` panic. Can also refuse to initialize.
#[derive(Debug)]
pub struct FailingProcessor {
    marker: Bytes,
    mode: FailureMode,
}

impl FailingProcessor {
    /// Answers requests whose body is `marker` with a 500 [`ProcessError`].
    #[must_use]
    pub fn erroring_on(marker: impl Into<Bytes>) -> Self {
        Self {
            marker: marker.into(),
            mode: FailureMode::Error,
        }
    }

    /// Panics inside `process` when a batch holds a request whose body is `marker`.
    #[must_use]
    pub fn panicking_on(marker: impl Into<Bytes>) -> Self {
        Self {
            marker: marker.into(),
            mode: FailureMode::Panic,
        }
    }

    /// Fails [`Processor::initialize`] with [`Error::ProcessorInit`].
    #[must_use]
    pub fn failing_to_initialize() -> Self {
        Self {
            marker: Bytes::new(),
            mode: FailureMode::Initialize,
        }
    }
}

impl Processor for FailingProcessor {
    fn initialize(&mut self, ctx: &InitContext) -> Result<()> {
        if self.mode == FailureMode::Initialize {
            return Err(Error::processor_init(
                &ctx.service,
                "FailingProcessor refuses to initialize",
            ));
        }
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        batch
            .iter()
            .map(|r| {
                if r.body != self.marker {
                    return Ok(Response::ok(r.body.clone()));
                }
                assert!(
                    self.mode != FailureMode::Panic,
                    "FailingProcessor: panic marker received"
                );
                Err(ProcessError::internal(
                    "FailingProcessor: error marker received",
                ))
            })
            .collect()
    }
}

/// Returns the same actions every round; counts rounds and keeps the last demand.
#[derive(Debug, Default)]
pub struct FixedScheduler {
    actions: Vec<Action>,
    calls: usize,
    last_demand: Vec<ServiceDemand>,
}

impl FixedScheduler {
    /// A scheduler answering `actions` every round.
    #[must_use]
    pub const fn new(actions: Vec<Action>) -> Self {
        Self {
            actions,
            calls: 0,
            last_demand: Vec::new(),
        }
    }

    /// How many times [`Scheduler::schedule`] was called.
    #[must_use]
    pub const fn calls(&self) -> usize {
        self.calls
    }

    /// The demand of the last round.
    #[must_use]
    pub fn last_demand(&self) -> &[ServiceDemand] {
        &self.last_demand
    }
}

impl Scheduler for FixedScheduler {
    fn schedule(&mut self, input: &ScheduleInput<'_>) -> Vec<Action> {
        self.calls += 1;
        self.last_demand = input.demand.to_vec();
        self.actions.clone()
    }
}

/// A storage mount over an in-memory map of relative path to bytes.
///
/// The first eager [`mount`](StorageMount::mount) reports cumulative progress, one event per
/// file, and counts every byte as fetched; later eager mounts reuse every file, and lazy mounts
/// fetch nothing; [`read`](StorageMount::read) fails with
/// [`Error::Storage`] for unknown paths. Reads are counted.
#[derive(Debug)]
pub struct MemoryMount {
    uri: String,
    target: PathBuf,
    files: BTreeMap<String, Bytes>,
    reads: AtomicUsize,
    mounted: AtomicBool,
}

impl MemoryMount {
    /// An empty mount of `uri` at `target`.
    #[must_use]
    pub fn new(uri: impl Into<String>, target: impl Into<PathBuf>) -> Self {
        Self {
            uri: uri.into(),
            target: target.into(),
            files: BTreeMap::new(),
            reads: AtomicUsize::new(0),
            mounted: AtomicBool::new(false),
        }
    }

    /// The same with one more file.
    #[must_use]
    pub fn with_file(mut self, relative: impl Into<String>, content: impl Into<Bytes>) -> Self {
        self.files.insert(relative.into(), content.into());
        self
    }

    /// How many successful or failed [`read`](StorageMount::read)s there were.
    #[must_use]
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn total_bytes(&self) -> u64 {
        self.files.values().map(|b| b.len() as u64).sum()
    }
}

#[async_trait::async_trait]
impl StorageMount for MemoryMount {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn target(&self) -> &Path {
        &self.target
    }

    async fn mount(&self, mode: MountMode, progress: Option<&dyn Progress>) -> Result<MountReport> {
        let bytes = self.total_bytes();
        let files = self.files.len() as u64;
        if mode == MountMode::Lazy || self.mounted.swap(true, Ordering::SeqCst) {
            let reused = if self.mounted.load(Ordering::SeqCst) {
                files
            } else {
                0
            };
            return Ok(MountReport {
                files,
                bytes,
                reused_files: reused,
                ..MountReport::default()
            });
        }
        if let Some(progress) = progress {
            let mut done = 0;
            for (path, content) in &self.files {
                done += content.len() as u64;
                progress.on_progress(&TransferProgress {
                    path: path.clone(),
                    bytes_done: done,
                    bytes_total: Some(bytes),
                    elapsed: Duration::ZERO,
                });
            }
        }
        Ok(MountReport {
            files,
            bytes,
            reused_files: 0,
            fetched_bytes: bytes,
            elapsed: Duration::ZERO,
        })
    }

    async fn read(&self, relative: &str) -> Result<Bytes> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.files
            .get(relative)
            .cloned()
            .ok_or_else(|| Error::storage(&self.uri, format!("`{relative}` not found")))
    }

    async fn list(&self) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .files
            .iter()
            .map(|(path, bytes)| ObjectInfo::new(path.as_str(), bytes.len() as u64))
            .collect())
    }
}

/// Always recommends the same replica count; counts calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedAutoscaler {
    replicas: u32,
    calls: usize,
}

impl FixedAutoscaler {
    /// An autoscaler that always answers `replicas`.
    #[must_use]
    pub const fn new(replicas: u32) -> Self {
        Self { replicas, calls: 0 }
    }

    /// How many times [`Autoscaler::recommend`] was called.
    #[must_use]
    pub const fn calls(&self) -> usize {
        self.calls
    }
}

impl Autoscaler for FixedAutoscaler {
    fn recommend(&mut self, _observation: &Observation) -> Recommendation {
        self.calls += 1;
        Recommendation::new(self.replicas, format!("fixed at {}", self.replicas))
    }
}

/// A price table: on-demand per type, spot per type and zone, constant in time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StaticPrices {
    on_demand: BTreeMap<String, f64>,
    spot: BTreeMap<(String, Zone), f64>,
}

impl StaticPrices {
    /// An empty table: every lookup is [`Error::NoPrice`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The same with an on-demand price.
    #[must_use]
    pub fn with_on_demand(mut self, instance_type: impl Into<String>, usd_per_hour: f64) -> Self {
        self.on_demand.insert(instance_type.into(), usd_per_hour);
        self
    }

    /// The same with a spot price in `zone`.
    #[must_use]
    pub fn with_spot(
        mut self,
        instance_type: impl Into<String>,
        zone: impl Into<Zone>,
        usd_per_hour: f64,
    ) -> Self {
        self.spot
            .insert((instance_type.into(), zone.into()), usd_per_hour);
        self
    }
}

impl PricingOracle for StaticPrices {
    fn on_demand_price(&self, instance_type: &str) -> Result<f64> {
        self.on_demand
            .get(instance_type)
            .copied()
            .ok_or_else(|| Error::NoPrice {
                instance_type: instance_type.to_owned(),
                zone: None,
            })
    }

    fn spot_price(&self, instance_type: &str, zone: &Zone, _at: SystemTime) -> Result<f64> {
        self.spot
            .get(&(instance_type.to_owned(), zone.clone()))
            .copied()
            .ok_or_else(|| Error::NoPrice {
                instance_type: instance_type.to_owned(),
                zone: Some(zone.to_string()),
            })
    }

    /// One point at `from` (the price never changes); empty when `to` is before `from`.
    fn spot_history(
        &self,
        instance_type: &str,
        zone: &Zone,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<PricePoint>> {
        let price = self.spot_price(instance_type, zone, from)?;
        Ok(if to < from {
            Vec::new()
        } else {
            vec![PricePoint::new(from, price)]
        })
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::{Mutex, PoisonError};

    use super::*;
    use crate::resources::{InstanceId, Resources};
    use crate::scheduler::ClusterState;

    #[test]
    fn echo_processor_should_return_bodies_and_count_batches() {
        let mut p = CountingEcho::new();
        p.initialize(&InitContext::new("svc")).expect("initializes");
        assert_eq!(p.init_context().map(|c| c.service.as_str()), Some("svc"));
        let out = p.process(&[
            Request::new("a").with_content_type("text/plain"),
            Request::new("b"),
        ]);
        p.process(&[Request::new("c")]);
        let first = out[0].as_ref().expect("ok");
        assert_eq!(
            (first.body.as_ref(), first.content_type.as_deref()),
            (&b"a"[..], Some("text/plain"))
        );
        assert_eq!((p.batches_seen(), p.requests_seen()), (2, 3));
    }

    #[test]
    fn failing_processor_should_fail_only_the_marked_request() {
        let p = FailingProcessor::erroring_on("boom");
        let out = p.process(&[Request::new("ok"), Request::new("boom")]);
        assert!(out[0].is_ok());
        assert_eq!(out[1].as_ref().map_err(|e| e.status), Err(500));
    }

    #[test]
    fn failing_processor_should_panic_on_the_panic_marker() {
        let p = FailingProcessor::panicking_on("die");
        assert!(p.process(&[Request::new("fine")])[0].is_ok());
        let result = catch_unwind(AssertUnwindSafe(|| p.process(&[Request::new("die")])));
        assert!(result.is_err());
    }

    #[test]
    fn failing_processor_should_refuse_to_initialize_when_asked() {
        let err = FailingProcessor::failing_to_initialize()
            .initialize(&InitContext::new("s"))
            .expect_err("fails");
        assert!(matches!(err, Error::ProcessorInit { .. }));
    }

    #[test]
    fn fixed_scheduler_should_repeat_its_actions_and_count_rounds() {
        let actions = vec![Action::terminate(InstanceId::from("i"), "test")];
        let mut s = FixedScheduler::new(actions.clone());
        let demand = [ServiceDemand::new("a", 2, Resources::ZERO)];
        let cluster = ClusterState::default();
        let prices = StaticPrices::new();
        let input = ScheduleInput::new(SystemTime::UNIX_EPOCH, &demand, &cluster, &prices);
        assert_eq!(s.schedule(&input), actions);
        assert_eq!(s.schedule(&input), actions);
        assert_eq!(s.calls(), 2);
        assert_eq!(s.last_demand()[0].replicas, 2);
    }

    #[test]
    fn memory_mount_should_report_sizes_and_read_files() {
        let mount = MemoryMount::new("mem://b/", "/m")
            .with_file("a", "12345")
            .with_file("d/b", "67");
        let seen = Mutex::new(Vec::new());
        let sink = |p: &TransferProgress| {
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(p.path.clone())
        };
        let report = block_on(mount.mount(MountMode::Eager, Some(&sink))).expect("mounts");
        assert_eq!(
            (report.files, report.bytes, report.fetched_bytes),
            (2, 7, 7)
        );
        assert_eq!(*seen.lock().expect("not poisoned"), ["a", "d/b"]);
        let lazy = block_on(mount.mount(MountMode::Lazy, None)).expect("mounts");
        assert_eq!(lazy.fetched_bytes, 0);
        assert_eq!(block_on(mount.read("d/b")).expect("exists"), "67");
        let listed: Vec<_> = block_on(mount.list())
            .expect("lists")
            .into_iter()
            .map(|o| (o.path, o.size))
            .collect();
        assert_eq!(listed, [("a".to_owned(), 5), ("d/b".to_owned(), 2)]);
        assert_eq!((mount.uri(), mount.target()), ("mem://b/", Path::new("/m")));
    }

    #[test]
    fn memory_mount_should_fail_to_read_a_missing_file() {
        let mount: crate::storage::DynStorageMount = Arc::new(MemoryMount::new("mem://b/", "/m"));
        let err = block_on(mount.read("nope")).expect_err("missing");
        assert!(
            matches!(&err, Error::Storage { uri, .. } if uri == "mem://b/"),
            "{err}"
        );
        assert!(err.to_string().contains("not found"));
    }

    #[test]
    fn block_on_should_wait_for_a_wake_from_another_thread() {
        struct Flag(Arc<std::sync::atomic::AtomicBool>, bool);
        impl Future for Flag {
            type Output = ();
            fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                if self.0.load(Ordering::SeqCst) {
                    return Poll::Ready(());
                }
                if !self.1 {
                    self.1 = true;
                    let (flag, waker) = (self.0.clone(), cx.waker().clone());
                    std::thread::spawn(move || {
                        flag.store(true, Ordering::SeqCst);
                        waker.wake();
                    });
                }
                Poll::Pending
            }
        }
        block_on(Flag(Arc::default(), false));
    }

    #[test]
    fn fixed_autoscaler_should_always_answer_the_same() {
        let mut a = FixedAutoscaler::new(3);
        let obs = Observation::new(SystemTime::UNIX_EPOCH, 10);
        assert_eq!(a.recommend(&obs).replicas, 3);
        assert_eq!(a.recommend(&obs).replicas, 3);
        assert_eq!(a.calls(), 2);
    }

    #[test]
    fn static_prices_should_be_constant_in_time() {
        let prices = StaticPrices::new()
            .with_on_demand("t", 1.0)
            .with_spot("t", "z", 0.3);
        let z = Zone::from("z");
        let late = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(prices.on_demand_price("t").ok(), Some(1.0));
        assert_eq!(prices.spot_price("t", &z, late).ok(), Some(0.3));
        assert!(prices.spot_price("t", &Zone::from("y"), late).is_err());
        assert!(prices.on_demand_price("u").is_err());
        let history = prices
            .spot_history("t", &z, SystemTime::UNIX_EPOCH, late)
            .expect("known");
        assert_eq!(history, [PricePoint::new(SystemTime::UNIX_EPOCH, 0.3)]);
        assert!((prices.recommend_bid("t", &z, late).expect("known") - 0.2).abs() < 1e-12);
    }
}
