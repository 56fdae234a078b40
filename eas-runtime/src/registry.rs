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
use eas_core::spec::ServiceSpec;

/// Makes a fresh processor for a service (once per instance, and again after a crash).
pub type ProcessorFactory =
    Arc<dyn Fn(&ServiceSpec) -> eas_core::Result<DynProcessor> + Send + Sync>;

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
            name.split('_').next().unwrap_or(name)
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
            .or_else(|| {
                let family = name.split('_').next()?;
                self.factories.get(family)
            })
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
