//! [`Processor`]: the code a model server runs for each instance of a service.
//!
//! An instance calls [`Processor::initialize`] once, with the resolved model path, the
//! `model_config` text, the device and the thread count, then [`Processor::process`] for each
//! batch of requests (a batch of one when batching is off). `process` returns exactly one
//! result per request, in order. Processors run on worker threads, never on async threads, so
//! `process` is a plain blocking method and may take as long as inference takes.
//!
//! ```
//! use bytes::Bytes;
//! use eas_core::Processor;
//! use eas_core::processor::{InitContext, ProcessError, Request, Response};
//!
//! /// Echoes the body in upper case.
//! #[derive(Default)]
//! struct Upper {
//!     ready: bool,
//! }
//!
//! impl Processor for Upper {
//!     fn initialize(&mut self, _ctx: &InitContext) -> eas_core::Result<()> {
//!         self.ready = true;
//!         Ok(())
//!     }
//!
//!     fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
//!         batch
//!             .iter()
//!             .map(|request| {
//!                 let text = std::str::from_utf8(&request.body)
//!                     .map_err(|_| ProcessError::bad_request("body is not UTF-8"))?;
//!                 Ok(Response::ok(text.to_uppercase()))
//!             })
//!             .collect()
//!     }
//! }
//!
//! let mut processor = Upper::default();
//! processor.initialize(&InitContext::new("upper").with_threads(2))?;
//! let out = processor.process(&[Request::new("hello"), Request::new(vec![0xff])]);
//! assert_eq!(out[0].as_ref().map(|r| r.body.clone()), Ok(Bytes::from("HELLO")));
//! assert_eq!(out[1].as_ref().map_err(|e| e.status), Err(400));
//! # Ok::<(), eas_core::Error>(())
//! ```
//!
//! # Custom metrics
//!
//! A processor can report gauges of its own (a cache hit ratio, tokens per second, a GPU
//! queue's length) through the [`MetricReporter`] in its [`InitContext`]: it keeps a clone from
//! `initialize` and calls [`MetricReporter::report`] from `process`. The runtime reads the
//! latest values of each instance, exports them as `eas_custom_metric{name=...}` and hands them
//! to the autoscaler, which can scale on them by name.
//!
//! ```
//! use eas_core::Processor;
//! use eas_core::processor::{InitContext, MetricReporter, ProcessError, Request, Response};
//!
//! /// Echoes, and reports the size of the last batch it saw.
//! #[derive(Default)]
//! struct Echo {
//!     metrics: Option<MetricReporter>,
//! }
//!
//! impl Processor for Echo {
//!     fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
//!         self.metrics = Some(ctx.metrics().clone());
//!         Ok(())
//!     }
//!
//!     fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
//!         if let Some(metrics) = &self.metrics {
//!             metrics.report("last_batch_size", batch.len() as f64);
//!         }
//!         batch.iter().map(|r| Ok(Response::ok(r.body.clone()))).collect()
//!     }
//! }
//!
//! // Without a runtime, the context's own reporter keeps the values.
//! let ctx = InitContext::new("echo");
//! let mut echo = Echo::default();
//! echo.initialize(&ctx)?;
//! echo.process(&[Request::new("a"), Request::new("b")]);
//! assert_eq!(ctx.metrics().get("last_batch_size"), Some(2.0));
//! # Ok::<(), eas_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
/// The header types of [`Request::headers`], from the `http` crate (re-exported so that a
/// processor needs no dependency of its own to read them).
pub use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::Result;

/// The code a model server runs: initialized once per instance, then called per batch.
///
/// Object-safe; instances hold it as a [`DynProcessor`].
pub trait Processor: Send + Sync + 'static {
    /// Loads the model. Called once per instance, before any [`process`](Self::process).
    ///
    /// # Errors
    /// [`Error::ProcessorInit`](crate::Error::ProcessorInit) (or another variant) when the model
    /// cannot be loaded; the instance then fails to start.
    fn initialize(&mut self, ctx: &InitContext) -> Result<()>;

    /// Runs one batch. Returns one result per request, in the same order as `batch`.
    ///
    /// May report custom metrics through the [`MetricReporter`] of the [`InitContext`] it
    /// was initialized with (see [the module docs](self#custom-metrics)).
    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>>;

    /// Describes the model's inputs and outputs, in the Open Inference Protocol's terms (shown
    /// on the server's `/api/services` page).
    fn metadata(&self) -> ModelMetadata {
        ModelMetadata::default()
    }

    /// The most batches worth running at once on one instance, for a processor whose every
    /// call already keeps all the instance's cores busy (ONNX Runtime on the CPU with
    /// [`InitContext::threads`] intra-op threads): more calls at once only contend for the
    /// cores. Once it is initialized, the instance starts no more worker threads than this,
    /// whatever `rpc.worker_threads` says (and says so at start). `None`, the default: as many
    /// as `rpc.worker_threads`.
    fn max_concurrent_batches(&self) -> Option<usize> {
        None
    }
}

/// A boxed processor, as instances hold it.
pub type DynProcessor = Box<dyn Processor>;

/// The device a processor runs its model on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// A CUDA GPU.
    Cuda {
        /// The GPU's index on the machine.
        ordinal: u32,
    },
}

/// What a processor learns when it is initialized.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InitContext {
    /// The service's name.
    pub service: String,
    /// The index of this instance within the service (0-based).
    pub instance_index: u32,
    /// The model entry file, resolved to a local path (EAS `model_entry` under `model_path`).
    pub model_entry: Option<PathBuf>,
    /// The local directory where the model was mounted or downloaded.
    pub model_dir: Option<PathBuf>,
    /// The spec's `model_config` text, as given.
    pub model_config: Option<String>,
    /// The device to run on.
    pub device: Device,
    /// The GPU memory this instance may use on its device, in bytes, when the spec slices a
    /// GPU (`metadata.gpu_memory`); `None` for a whole GPU or the CPU. A processor enforces it
    /// where its backend can (a memory limit or an allocator fraction) and says so where not.
    pub gpu_memory_limit: Option<u64>,
    /// The share of its device's compute this instance may use, in percent (1 to 100), when
    /// the spec slices a GPU (`metadata.gpu_core_percentage`); `None` for a whole GPU or the CPU.
    pub gpu_core_percentage: Option<u32>,
    /// The number of threads the processor may use for inference.
    pub threads: usize,
    /// Where the processor reports custom metrics; see [`InitContext::metrics`].
    pub metrics: MetricReporter,
}

impl InitContext {
    /// A context for instance 0 of `service` on the CPU, one thread, no model paths.
    #[must_use]
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            instance_index: 0,
            model_entry: None,
            model_dir: None,
            model_config: None,
            device: Device::Cpu,
            threads: 1,
            gpu_memory_limit: None,
            gpu_core_percentage: None,
            metrics: MetricReporter::new(),
        }
    }

    /// Where the processor reports custom metrics: keep a clone and call
    /// [`MetricReporter::report`] from [`Processor::process`]. A context made with
    /// [`new`](Self::new) has a reporter of its own that only keeps the values (read them with
    /// [`MetricReporter::values`]); the runtime gives each instance its own and reads it.
    #[must_use]
    pub const fn metrics(&self) -> &MetricReporter {
        &self.metrics
    }

    /// The same, reporting custom metrics to `reporter`.
    #[must_use]
    pub fn with_metrics(mut self, reporter: MetricReporter) -> Self {
        self.metrics = reporter;
        self
    }

    /// The same for instance `index`.
    #[must_use]
    pub fn with_instance_index(mut self, index: u32) -> Self {
        self.instance_index = index;
        self
    }

    /// The same with a resolved model entry file.
    #[must_use]
    pub fn with_model_entry(mut self, path: impl Into<PathBuf>) -> Self {
        self.model_entry = Some(path.into());
        self
    }

    /// The same with a local model directory.
    #[must_use]
    pub fn with_model_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.model_dir = Some(path.into());
        self
    }

    /// The same with `model_config` text.
    #[must_use]
    pub fn with_model_config(mut self, config: impl Into<String>) -> Self {
        self.model_config = Some(config.into());
        self
    }

    /// The same on `device`.
    #[must_use]
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The same with a GPU slice: at most `memory_limit` bytes of the device's memory and
    /// `core_percentage` percent of its compute (each `None` when not sliced).
    #[must_use]
    pub fn with_gpu_slice(
        mut self,
        memory_limit: Option<u64>,
        core_percentage: Option<u32>,
    ) -> Self {
        self.gpu_memory_limit = memory_limit;
        self.gpu_core_percentage = core_percentage;
        self
    }

    /// The same with `threads` inference threads (at least one).
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
}

/// Where a processor reports custom metrics: named gauges, each holding its latest value.
///
/// Cheap to clone; clones share the gauges. Reporting a name seen before takes no lock and
/// allocates nothing (a scan of at most [`MAX_NAMES`](Self::MAX_NAMES) short names and one
/// atomic store), so it can be called from [`Processor::process`] on every batch.
///
/// Bounded, because each name becomes a time series: at most [`MAX_NAMES`](Self::MAX_NAMES)
/// distinct names, each 1 to [`MAX_NAME_LEN`](Self::MAX_NAME_LEN) characters of
/// `[a-zA-Z0-9_:]`. A report that breaks a bound, or whose value is NaN or infinite, is
/// ignored and counted in [`rejected`](Self::rejected).
///
/// Two reporters are equal when they are clones of one another.
///
/// ```
/// use eas_core::processor::MetricReporter;
///
/// let metrics = MetricReporter::new();
/// metrics.report("cache_hit_ratio", 0.25);
/// metrics.report("cache_hit_ratio", 0.75);
/// metrics.report("bad name!", 1.0);
/// assert_eq!(metrics.get("cache_hit_ratio"), Some(0.75));
/// assert_eq!(metrics.values().len(), 1);
/// assert_eq!(metrics.rejected(), 1);
/// ```
#[derive(Clone, Default)]
pub struct MetricReporter {
    gauges: Arc<Gauges>,
}

/// The gauges of one reporter. A slot, once named, keeps its name: readers scan the named
/// slots without a lock; only naming a new slot takes `naming`.
#[derive(Default)]
struct Gauges {
    slots: [OnceLock<Gauge>; MetricReporter::MAX_NAMES],
    /// Slots `0..named` have a name.
    named: AtomicUsize,
    naming: Mutex<()>,
    rejected: AtomicU64,
}

/// One named gauge; the value is an `f64`'s bits.
struct Gauge {
    name: Box<str>,
    value: AtomicU64,
}

impl MetricReporter {
    /// The most distinct names one reporter keeps.
    pub const MAX_NAMES: usize = 32;
    /// The longest name, in characters.
    pub const MAX_NAME_LEN: usize = 64;

    /// A reporter with no gauges.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the gauge `name` to `value`. Ignored, and counted in
    /// [`rejected`](Self::rejected), when `value` is NaN or infinite, the name is empty, too
    /// long or has characters outside `[a-zA-Z0-9_:]`, or it is new and the reporter already
    /// has [`MAX_NAMES`](Self::MAX_NAMES) names.
    pub fn report(&self, name: &str, value: f64) {
        if !value.is_finite() {
            self.reject();
            return;
        }
        match self.find(name) {
            Some(gauge) => gauge.value.store(value.to_bits(), Ordering::Relaxed),
            None => {
                if !self.name_slot(name, value) {
                    self.reject();
                }
            }
        }
    }

    /// The latest value of `name`, if it was ever reported.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<f64> {
        self.find(name)
            .map(|gauge| f64::from_bits(gauge.value.load(Ordering::Relaxed)))
    }

    /// The latest value of every name reported so far.
    #[must_use]
    pub fn values(&self) -> BTreeMap<String, f64> {
        self.named()
            .map(|gauge| {
                let value = f64::from_bits(gauge.value.load(Ordering::Relaxed));
                (gauge.name.to_string(), value)
            })
            .collect()
    }

    /// Reports ignored so far: a bad name or value, or a new name past the limit.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.gauges.rejected.load(Ordering::Relaxed)
    }

    /// Whether `name` may name a gauge: 1 to [`MAX_NAME_LEN`](Self::MAX_NAME_LEN)
    /// characters of `[a-zA-Z0-9_:]`.
    #[must_use]
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= Self::MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    }

    fn reject(&self) {
        self.gauges.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The slots that have a name, in the order they were named.
    fn named(&self) -> impl Iterator<Item = &Gauge> {
        let named = self.gauges.named.load(Ordering::Acquire);
        self.gauges.slots[..named].iter().filter_map(OnceLock::get)
    }

    fn find(&self, name: &str) -> Option<&Gauge> {
        self.named().find(|gauge| &*gauge.name == name)
    }

    /// Names a new slot `name` holding `value` (or sets it, if another thread just named it);
    /// `false` when the name is not valid or every slot is taken.
    fn name_slot(&self, name: &str, value: f64) -> bool {
        if !Self::is_valid_name(name) {
            return false;
        }
        let _naming = self
            .gauges
            .naming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(gauge) = self.find(name) {
            gauge.value.store(value.to_bits(), Ordering::Relaxed);
            return true;
        }
        let named = self.gauges.named.load(Ordering::Acquire);
        let Some(slot) = self.gauges.slots.get(named) else {
            return false;
        };
        let _ = slot.set(Gauge {
            name: name.into(),
            value: AtomicU64::new(value.to_bits()),
        });
        self.gauges.named.store(named + 1, Ordering::Release);
        true
    }
}

impl std::fmt::Debug for MetricReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricReporter")
            .field("values", &self.values())
            .field("rejected", &self.rejected())
            .finish()
    }
}

impl PartialEq for MetricReporter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.gauges, &other.gauges)
    }
}

/// One inference request, as the processor sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The request body, as received.
    pub body: Bytes,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The path after the service name (`/api/predict/{service}/{path}`); may be empty.
    pub path: String,
    /// The request headers (HTTP names are case-insensitive: the map compares them so). For an
    /// EAS predict request, those the client sent: the runtime hands over the map it parsed,
    /// without a copy; several `Content-Type` headers: [`content_type`](Self::content_type) is
    /// the first, when it is text.
    pub headers: HeaderMap,
}

impl Request {
    /// A request with this body and nothing else.
    #[must_use]
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// The same with a content type.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// The same with a sub-path.
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The same with one more header (added to any already named so).
    ///
    /// # Panics
    /// When `name` is not an HTTP header name or `value` not a header value: this builder is
    /// for requests written in code (tests, warm-up); build a [`HeaderMap`] for others.
    #[must_use]
    pub fn with_header<N, V>(mut self, name: N, value: V) -> Self
    where
        N: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
        N::Error: std::fmt::Debug,
        V::Error: std::fmt::Debug,
    {
        let name = name.try_into().expect("an HTTP header name");
        let value = value.try_into().expect("an HTTP header value");
        self.headers.append(name, value);
        self
    }

    /// The first header named `name`, compared case-insensitively, if its value is text
    /// (visible ASCII; [`headers`](Self::headers) has the raw bytes).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// The answer to one request: EAS processors return `(data, code)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The response body.
    pub body: Bytes,
    /// The `Content-Type` to send, if any.
    pub content_type: Option<String>,
    /// The HTTP status code; 200 unless the processor says otherwise.
    pub status: u16,
}

impl Response {
    /// A 200 response with this body.
    #[must_use]
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::with_status(200, body)
    }

    /// A response with this status and body.
    #[must_use]
    pub fn with_status(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            content_type: None,
            status,
        }
    }

    /// The same with a content type.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Whether the status is 2xx.
    #[must_use]
    pub const fn is_success(&self) -> bool {
        self.status >= 200 && self.status < 300
    }
}

/// A request that failed inside the processor; the other requests of the batch are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (status {status})")]
pub struct ProcessError {
    /// What went wrong, returned to the client.
    pub message: String,
    /// The HTTP status code to answer with; 500 unless said otherwise.
    pub status: u16,
}

impl ProcessError {
    /// An error with this status.
    #[must_use]
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status,
        }
    }

    /// A 400: the request itself is wrong.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// A 500: the processor failed.
    #[must_use]
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
}

impl From<String> for ProcessError {
    fn from(message: String) -> Self {
        Self::internal(message)
    }
}

impl From<&str> for ProcessError {
    fn from(message: &str) -> Self {
        Self::internal(message)
    }
}

/// What a model takes and returns (OIP v2 model metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// The framework or runtime, e.g. `onnxruntime`, `pytorch`, `custom`.
    pub platform: String,
    /// The inputs.
    pub inputs: Vec<TensorInfo>,
    /// The outputs.
    pub outputs: Vec<TensorInfo>,
}

/// One input or output tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// The OIP data type name: `BOOL`, `UINT8`, `INT32`, `INT64`, `FP16`, `FP32`, `BYTES`, ...
    pub datatype: String,
    /// The shape; `-1` marks a dynamic dimension.
    pub shape: Vec<i64>,
}

impl TensorInfo {
    /// A tensor description.
    #[must_use]
    pub fn new(name: impl Into<String>, datatype: impl Into<String>, shape: Vec<i64>) -> Self {
        Self {
            name: name.into(),
            datatype: datatype.into(),
            shape,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lengths;

    impl Processor for Lengths {
        fn initialize(&mut self, ctx: &InitContext) -> Result<()> {
            if ctx.model_entry.is_none() {
                return Err(crate::Error::processor_init("lengths", "no model_entry"));
            }
            Ok(())
        }

        fn process(&self, batch: &[Request]) -> Vec<std::result::Result<Response, ProcessError>> {
            batch
                .iter()
                .map(|r| Ok(Response::ok(r.body.len().to_string())))
                .collect()
        }
    }

    #[test]
    fn processor_should_answer_one_result_per_request_in_order() {
        let mut p: DynProcessor = Box::new(Lengths);
        p.initialize(&InitContext::new("s").with_model_entry("/m/model.onnx"))
            .expect("initializes");
        let out = p.process(&[Request::new("a"), Request::new("abc")]);
        let bodies: Vec<_> = out.into_iter().map(|r| r.expect("ok").body).collect();
        assert_eq!(bodies, vec![Bytes::from("1"), Bytes::from("3")]);
        assert_eq!(p.metadata(), ModelMetadata::default());
    }

    #[test]
    fn processor_initialize_should_report_a_missing_model() {
        let err = Lengths
            .initialize(&InitContext::new("s"))
            .expect_err("no model entry");
        assert!(err.to_string().contains("no model_entry"), "{err}");
    }

    #[test]
    fn init_context_builder_should_set_every_field() {
        let ctx = InitContext::new("svc")
            .with_instance_index(3)
            .with_model_dir("/m")
            .with_model_entry("/m/a.onnx")
            .with_model_config("{}")
            .with_device(Device::Cuda { ordinal: 1 })
            .with_threads(0);
        assert_eq!(ctx.instance_index, 3);
        assert_eq!(ctx.model_dir, Some(PathBuf::from("/m")));
        assert_eq!(ctx.device, Device::Cuda { ordinal: 1 });
        assert_eq!(ctx.threads, 1, "at least one thread");
    }

    #[test]
    fn metric_reporter_should_keep_the_latest_value_of_each_name() {
        let ctx = InitContext::new("s");
        let reporter = ctx.metrics().clone();
        reporter.report("tokens_per_second", 10.0);
        reporter.report("gpu:queue", 3.0);
        reporter.report("tokens_per_second", 12.5);
        assert_eq!(ctx.metrics().get("tokens_per_second"), Some(12.5));
        assert_eq!(
            ctx.metrics().values(),
            BTreeMap::from([
                ("gpu:queue".to_owned(), 3.0),
                ("tokens_per_second".to_owned(), 12.5),
            ])
        );
        assert_eq!(reporter.rejected(), 0);
        assert_eq!(ctx.metrics(), &reporter, "clones are the same reporter");
        assert_ne!(&MetricReporter::new(), &reporter);
    }

    #[test]
    fn metric_reporter_should_ignore_a_33rd_name() {
        let reporter = MetricReporter::new();
        for i in 0..MetricReporter::MAX_NAMES {
            reporter.report(&format!("m{i}"), i as f64);
        }
        reporter.report("one_too_many", 1.0);
        assert_eq!(reporter.values().len(), MetricReporter::MAX_NAMES);
        assert_eq!(reporter.get("one_too_many"), None);
        assert_eq!(reporter.rejected(), 1);
        reporter.report("m31", -1.0);
        assert_eq!(reporter.get("m31"), Some(-1.0), "known names still update");
        assert_eq!(reporter.rejected(), 1);
    }

    #[test]
    fn metric_reporter_should_ignore_bad_names_and_values() {
        let reporter = MetricReporter::new();
        let longest = "x".repeat(MetricReporter::MAX_NAME_LEN);
        reporter.report(&longest, 1.0);
        reporter.report(&"x".repeat(MetricReporter::MAX_NAME_LEN + 1), 1.0);
        reporter.report("", 1.0);
        reporter.report("has space", 1.0);
        reporter.report("dash-ed", 1.0);
        reporter.report("ok", f64::NAN);
        reporter.report("ok", f64::INFINITY);
        reporter.report("ok", f64::NEG_INFINITY);
        assert_eq!(reporter.values().keys().collect::<Vec<_>>(), vec![&longest]);
        assert_eq!(reporter.rejected(), 7);
    }

    #[test]
    fn metric_reporter_should_count_each_name_once_across_threads() {
        let reporter = MetricReporter::new();
        std::thread::scope(|scope| {
            for t in 0..8 {
                let reporter = reporter.clone();
                scope.spawn(move || {
                    for i in 0..40 {
                        reporter.report(&format!("m{i}"), f64::from(t));
                    }
                });
            }
        });
        assert_eq!(reporter.values().len(), MetricReporter::MAX_NAMES);
        assert_eq!(
            reporter.rejected(),
            8 * 8,
            "names m32..m39, from each thread"
        );
    }

    #[test]
    fn request_header_lookup_should_ignore_case() {
        let r = Request::new("x")
            .with_header("Content-Type", "text/plain")
            .with_path("v1/x");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("accept"), None);
        assert_eq!(r.path, "v1/x");
    }

    #[test]
    fn response_and_error_should_default_to_200_and_500() {
        assert_eq!(Response::ok("x").status, 200);
        assert!(Response::ok("x").is_success());
        assert!(!Response::with_status(404, "").is_success());
        assert_eq!(ProcessError::from("boom").status, 500);
        assert_eq!(ProcessError::bad_request("no").status, 400);
        assert_eq!(
            ProcessError::internal("boom").to_string(),
            "boom (status 500)"
        );
    }
}
