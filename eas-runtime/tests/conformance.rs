//! The conformance suites against every built-in implementation: the queue backends
//! ([`eas_runtime::queue::conformance`]) and the processors ([`eas_core::conformance`]).
//!
//! - `MemoryQueue`, and `RedisQueue` (feature `redis`) against a `redis-server` started on a
//!   free loopback port for the test (`.ci/setup/40-redis.sh` installs it);
//! - the built-in `echo`, and `onnx` (feature `onnx`, on by default) on the example model
//!   `examples/models/mlp.onnx`, with ONNX Runtime found through `ORT_DYLIB_PATH` or
//!   `EAS_PYTHON` (`scripts/test-env.sh`).
//!
//! CI runs `cargo test --all-features`, so every part runs there. Without `redis-server` or ONNX
//! Runtime a part prints `SKIPPED: ...`, or fails when `EAS_REQUIRE_ALL=1`.

#[cfg(feature = "redis")]
#[path = "queue_support/mod.rs"]
mod queue_support;
#[cfg(any(feature = "redis", feature = "onnx"))]
#[path = "support/require.rs"]
mod require;

use std::sync::Arc;

use async_trait::async_trait;
use eas_core::processor::{DynProcessor, InitContext, Request};
use eas_core::spec::ServiceSpec;
use eas_runtime::queue::conformance::{self, Capabilities};
use eas_runtime::queue::{
    DynQueue, GetQuery, Item, MemoryQueue, MemoryQueues, NewItem, Put, QueueBackend, QueueError,
    QueueFactory, Tags, Watch, WatchOptions,
};
use eas_runtime::registry::ProcessorRegistry;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_queue_should_pass_the_queue_conformance_suite() {
    conformance::queue_backend(&MemoryQueues, &Capabilities::default()).await;
}

/// Needs `--features redis` (CI runs `--all-features`).
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queue_should_pass_the_queue_conformance_suite() {
    let test = "redis_queue_should_pass_the_queue_conformance_suite";
    let redis = match queue_support::RedisServer::start(false) {
        Ok(redis) => redis,
        Err(why) => return require::skip(test, &why),
    };
    // Documented differences of the Redis Streams backend: a watch cannot filter by tags
    // (refused with QueueError::Invalid, which the suite checks) and follows its consumer
    // group's order rather than WatchOptions::index (that check is skipped, and says so).
    let capabilities = Capabilities::default()
        .with_watch_filters_tags(false)
        .with_watch_from_index(false);
    conformance::queue_backend(&redis.queues(), &capabilities).await;
}

/// A backend that says it is bounded but never refuses a put: the suite must catch it.
#[derive(Debug)]
struct Unbounded {
    inner: MemoryQueue,
    bound: Option<usize>,
}

#[async_trait]
impl QueueBackend for Unbounded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn put(&self, item: NewItem) -> Result<Put, QueueError> {
        self.inner.put(item).await
    }
    async fn get(&self, query: &GetQuery) -> Result<Vec<Item>, QueueError> {
        self.inner.get(query).await
    }
    async fn commit(&self, indexes: &[u64]) -> Result<usize, QueueError> {
        self.inner.commit(indexes).await
    }
    async fn delete(&self, indexes: &[u64]) -> Result<usize, QueueError> {
        self.inner.delete(indexes).await
    }
    async fn truncate(&self, before: u64) -> Result<usize, QueueError> {
        self.inner.truncate(before).await
    }
    async fn length(&self) -> Result<u64, QueueError> {
        self.inner.length().await
    }
    async fn attributes(&self) -> Result<Tags, QueueError> {
        let mut attributes = self.inner.attributes().await?;
        if let Some(bound) = self.bound {
            attributes.insert("stream.maxLength".into(), bound.to_string());
        }
        Ok(attributes)
    }
    async fn search(&self, index: u64) -> Result<Option<serde_json::Value>, QueueError> {
        self.inner.search(index).await
    }
    async fn watch(&self, options: WatchOptions) -> Result<Box<dyn Watch>, QueueError> {
        self.inner.watch(options).await
    }
}

#[derive(Debug)]
struct UnboundedQueues;

impl QueueFactory for UnboundedQueues {
    fn open(&self, name: &str, max_length: Option<usize>) -> eas_runtime::Result<DynQueue> {
        Ok(Arc::new(Unbounded {
            inner: MemoryQueue::new(name, None),
            bound: max_length,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "must fail with QueueError::Full")]
async fn a_queue_that_ignores_its_bound_should_fail_the_queue_conformance_suite() {
    conformance::queue_backend(&UnboundedQueues, &Capabilities::default()).await;
}

/// A built-in processor, as a service named `service` would get it.
fn builtin(processor: &str, service: &str) -> DynProcessor {
    let registry = ProcessorRegistry::with_builtins();
    let factory = registry
        .get(processor)
        .unwrap_or_else(|| panic!("`{processor}` is built in"));
    let spec = ServiceSpec::from_json_value(json!({
        "metadata": {"name": service, "instance": 1},
        "processor": processor,
        "model_path": ".",
    }))
    .expect("a valid spec");
    factory(&spec).unwrap_or_else(|e| panic!("the `{processor}` factory failed: {e}"))
}

#[test]
fn echo_should_pass_the_processor_conformance_suite() {
    let good = [
        Request::new("hello"),
        Request::new(r#"{"a": 1}"#).with_content_type("application/json"),
        Request::new(vec![0_u8, 0xff, 0x80, 10]).with_content_type("application/octet-stream"),
        Request::new(""),
        Request::new("with a path and a header")
            .with_path("v1/x")
            .with_header("X-Test", "1"),
    ];
    // echo answers anything: there is no bad request for it.
    eas_core::conformance::processor(
        builtin("echo", "echo"),
        &InitContext::new("echo"),
        &good,
        &[],
    );
}

/// Needs the `onnx` feature (on by default) and ONNX Runtime.
#[cfg(feature = "onnx")]
#[test]
fn onnx_should_pass_the_processor_conformance_suite() {
    use eas_runtime::proto::{DataProto, DataType, Message, TensorProto};

    let test = "onnx_should_pass_the_processor_conformance_suite";
    if let Err(e) = eas_runtime::onnx::runtime() {
        return require::skip(test, &e.to_string());
    }
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/mlp.onnx");
    let json_request = |body: serde_json::Value| {
        Request::new(body.to_string()).with_content_type("application/json")
    };
    let proto_request = |rows: &[[f32; 4]]| {
        let raw: Vec<u8> = rows
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let tensor = TensorProto::new("x", vec![rows.len() as i64, 4], DataType::Float, raw);
        let message = DataProto {
            tensors: vec![tensor],
        };
        Request::new(message.encode_to_vec()).with_content_type("application/octet-stream")
    };
    let good = [
        json_request(json!({"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}})),
        json_request(json!({"inputs": {"x": [[6.7, 3.0, 5.2, 2.3], [4.9, 3.0, 1.4, 0.2]]}})),
        json_request(json!({"inputs": {"x": {
            "shape": [1, 4], "data": [5.9, 3.0, 5.1, 1.8], "datatype": "FP32"
        }}})),
        // The body starts with `{`: JSON without a content type.
        Request::new(r#"{"inputs": {"x": [[0.0, 0.0, 0.0, 0.0]]}}"#),
        proto_request(&[[5.1, 3.5, 1.4, 0.2]]),
        proto_request(&[
            [1.0, -1.0, 2.0, -2.0],
            [0.5, 0.5, 0.5, 0.5],
            [9.0, 8.0, 7.0, 6.0],
        ]),
    ];
    let bad = [
        json_request(json!({"inputs": {"z": [[5.1, 3.5, 1.4, 0.2]]}})),
        json_request(json!({"inputs": {"x": [[5.1, 3.5, 1.4]]}})),
        json_request(json!({"inputs": {"x": [5.1, 3.5, 1.4, 0.2]}})),
        json_request(json!({"inputs": {"x": [["a", "b", "c", "d"]]}})),
        Request::new("not JSON").with_content_type("application/json"),
        Request::new("{not JSON either"),
        Request::new(vec![0xff_u8, 0xff, 0xff]).with_content_type("application/octet-stream"),
        Request::new(""),
    ];
    let ctx = InitContext::new("mlp")
        .with_model_entry(model)
        .with_threads(1);
    eas_core::conformance::processor(builtin("onnx", "mlp"), &ctx, &good, &bad);
}
