//! Processors by name: the built-in `echo`, `onnx` (feature `onnx`) and `torch` (feature
//! `torch`, also registered as `pytorch`), and any processor an application registers in Rust.
//!
//! A spec's `processor` names an entry: the exact name first, then its part before the first
//! `_` (so the EAS names `onnx_cu121` or `onnx_cpu` find `onnx`, and `pytorch_cpu_1.10` or
//! `pytorch_gpu_1.10` find `pytorch`).
//!
//! ```
//! use eas_core::processor::{InitContext, Processor, ProcessError, Request, Response};
//! use eas_runtime::registry::ProcessorRegistry;
//!
//! struct Upper;
//! impl Processor for Upper {
//!     fn initialize(&mut self, _ctx: &InitContext) -> eas_core::Result<()> {
//!         Ok(())
//!     }
//!     fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
//!         batch.iter().map(|r| Ok(Response::ok(r.body.to_ascii_uppercase()))).collect()
//!     }
//! }
//!
//! let mut registry = ProcessorRegistry::with_builtins();
//! registry.register("upper", |_spec| Ok(Box::new(Upper)));
//! assert!(registry.names().contains(&"upper".to_owned()));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use eas_core::processor::{DynProcessor, InitContext, ProcessError, Processor, Request, Response};
use eas_core::spec::{FieldNotice, ServiceSpec};

/// Makes a fresh processor for a service (once per instance, and again after a crash).
pub type ProcessorFactory =
    Arc<dyn Fn(&ServiceSpec) -> eas_core::Result<DynProcessor> + Send + Sync>;

/// How the built-in processors narrow a spec's fields, as notices (`eas validate` prints them;
/// a service started in process shows them among its warnings): an `onnx` service on the CPU
/// runs one batch at a time whatever `rpc.worker_threads` says
/// ([`Processor::max_concurrent_batches`]). A processor registered under a built-in's name in
/// its place is not told apart.
#[must_use]
pub fn builtin_notices(spec: &ServiceSpec) -> Vec<FieldNotice> {
    let family = family(spec.processor.as_deref().unwrap_or_default());
    let on_cpu = spec.metadata.gpu.unwrap_or(0) == 0 && spec.metadata.gpu_memory.is_none();
    let workers = spec.metadata.rpc.worker_threads;
    let mut notices = Vec::new();
    if family == "onnx" && on_cpu && workers > 1 {
        notices.push(FieldNotice::new(
            "metadata.rpc.worker_threads",
            format!(
                "an onnx instance on the CPU runs one batch at a time: each run already uses \
                 the instance's `cpu` cores (its intra-op threads), and {workers} at once only \
                 contend for them; it starts 1 worker (more instances, or a larger \
                 `max_batch_size`, add throughput)"
            ),
        ));
    }
    notices
}

/// A processor name's family: its part before the first `_` (`onnx_cu121` -> `onnx`).
fn family(name: &str) -> &str {
    name.split('_').next().unwrap_or(name)
}

/// Processors by name.
#[derive(Clone, Default)]
pub struct ProcessorRegistry {
    factories: BTreeMap<String, ProcessorFactory>,
    inline: BTreeSet<String>,
}

impl std::fmt::Debug for ProcessorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorRegistry")
            .field("names", &self.names())
            .finish()
    }
}

impl ProcessorRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the built-in processors: `echo`, `onnx` with the `onnx` feature, and
    /// `torch` (also as `pytorch`, the EAS family name) with the `torch` feature.
    #[must_use]
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry.register_inline("echo", |_spec| Ok(Box::new(EchoProcessor)));
        #[cfg(feature = "onnx")]
        registry.register("onnx", |_spec| {
            Ok(Box::new(crate::onnx::OnnxProcessor::new()))
        });
        #[cfg(feature = "torch")]
        for name in ["torch", "pytorch"] {
            registry.register(name, |_spec| {
                Ok(Box::new(crate::torch::TorchProcessor::new()))
            });
        }
        registry
    }

    /// Adds (or replaces) the processor called `name`.
    pub fn register<F>(&mut self, name: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(&ServiceSpec) -> eas_core::Result<DynProcessor> + Send + Sync + 'static,
    {
        let name = name.into();
        self.inline.remove(&name);
        self.factories.insert(name, Arc::new(factory));
        self
    }

    /// Adds (or replaces) a processor that runs on the server's I/O threads instead of the
    /// instance's worker threads: one thread hop less per request, no batching. Only for
    /// processors that never block and answer in microseconds (such as `echo`); anything
    /// heavier stalls every connection of the server.
    pub fn register_inline<F>(&mut self, name: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(&ServiceSpec) -> eas_core::Result<DynProcessor> + Send + Sync + 'static,
    {
        let name = name.into();
        self.register(name.clone(), factory);
        self.inline.insert(name);
        self
    }

    /// Whether the processor `get(name)` finds runs inline (see
    /// [`register_inline`](Self::register_inline)).
    #[must_use]
    pub fn is_inline(&self, name: &str) -> bool {
        let found = if self.factories.contains_key(name) {
            name
        } else {
            family(name)
        };
        self.inline.contains(found)
    }

    /// The registered names, sorted.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// The factory for `name`: the exact name, else its part before the first `_`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<ProcessorFactory> {
        self.factories
            .get(name)
            .or_else(|| self.factories.get(family(name)))
            .cloned()
    }
}

/// The built-in `echo` processor: answers every request with its own body and content type.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoProcessor;

impl Processor for EchoProcessor {
    fn initialize(&mut self, _ctx: &InitContext) -> eas_core::Result<()> {
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        batch
            .iter()
            .map(|request| {
                let response = Response::ok(request.body.clone());
                Ok(match &request.content_type {
                    Some(ct) => response.with_content_type(ct.clone()),
                    None => response,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_onnx_service_on_the_cpu_should_be_told_it_runs_one_batch_at_a_time() {
        let spec = |processor: &str, extra: serde_json::Value| {
            let mut doc = serde_json::json!({
                "metadata": {"name": "m", "instance": 1, "rpc": {"worker_threads": 5}},
                "processor": processor, "model_path": "/m",
            });
            if let (Some(metadata), Some(extra)) =
                (doc["metadata"].as_object_mut(), extra.as_object())
            {
                metadata.extend(extra.clone());
            }
            ServiceSpec::from_json_value(doc).expect("valid")
        };
        let notices = builtin_notices(&spec("onnx_cpu", serde_json::json!({})));
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(notices[0].field, "metadata.rpc.worker_threads");
        assert!(
            notices[0].reason.contains("one batch at a time"),
            "{notices:?}"
        );
        for quiet in [
            spec("onnx", serde_json::json!({"gpu": 1})),
            spec("echo", serde_json::json!({})),
            spec("onnx", serde_json::json!({"rpc": {"worker_threads": 1}})),
        ] {
            assert_eq!(builtin_notices(&quiet), [], "{:?}", quiet.processor);
        }
    }

    #[test]
    fn registry_should_find_eas_style_names_by_family() {
        let registry = ProcessorRegistry::with_builtins();
        assert!(registry.get("echo").is_some());
        assert!(registry.get("echo_v2").is_some());
        assert!(registry.get("tensorflow_cpu_1.15").is_none());
        #[cfg(feature = "onnx")]
        assert!(registry.get("onnx_cu121").is_some());
    }

    #[test]
    fn inline_marks_should_follow_the_latest_registration() {
        let mut registry = ProcessorRegistry::with_builtins();
        assert!(registry.is_inline("echo") && registry.is_inline("echo_v2"));
        registry.register("echo", |_spec| Ok(Box::new(EchoProcessor)));
        assert!(
            !registry.is_inline("echo"),
            "replaced by a worker-pool processor"
        );
        registry.register_inline("mine", |_spec| Ok(Box::new(EchoProcessor)));
        assert!(registry.is_inline("mine"));
    }

    #[test]
    fn echo_should_answer_each_request_with_its_body() {
        let batch = [
            Request::new("a"),
            Request::new("bb").with_content_type("text/plain"),
        ];
        let out = EchoProcessor.process(&batch);
        assert_eq!(out.len(), 2);
        let second = out[1].as_ref().expect("echo never fails");
        assert_eq!(second.body.as_ref(), b"bb");
        assert_eq!(second.content_type.as_deref(), Some("text/plain"));
    }
}
