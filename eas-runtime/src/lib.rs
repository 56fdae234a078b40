//! `eas-runtime`: what runs. HTTP serving of the EAS predict protocol, dynamic batching,
//! worker pools, limits, metrics, request logs and processor backends.
//!
//! Modules, top-down (each uses only those below it):
//!
//! | module | concern |
//! |---|---|
//! | [`platform`] | composes a platform: storage, the control plane, the store, the control API, the listener |
//! | [`http`] | the edge: routes, the queue protocol, status codes (the only module that knows HTTP statuses) |
//! | [`control`] | the control plane: services' desired state, operations, the control loop |
//! | [`series`] | second-level series of every service and instance (the console's charts), sampled from [`metrics`] |
//! | [`controller`] | one service's live controller: observe, decide (eas-scheduler), plan, act |
//! | [`directory`] | the services by name, swapped as a whole while requests flow |
//! | [`traffic`] | service groups (weights) and mirroring between services |
//! | [`admission`] | tower layers per service: auth, body, rate, concurrency, routing, keepalive, instance admission |
//! | [`job`] | elastic (batch) jobs: inputs through an async service's queues into a results file |
//! | [`fetch`] | a service's files: local, or fetched through `eas-storage` |
//! | [`service`] | one service: spec, token, its changing replica set, request log, async queues |
//! | [`store`] | desired state across restarts (redb) |
//! | [`queue`] | the queue service's backends, consumers and batch jobs (beside the instances) |
//! | [`provider`] | where instances run: in process (default), child processes, later clusters |
//! | [`worker`] | worker mode: the far end of the child-process provider, and its wire protocol |
//! | [`replica`] | one running replica of a service (an EAS "instance"; eas-core's `Instance` is the control plane's record of one): batcher, workers, crash recovery, instance-level admission |
//! | [`stress`] | stress tests: the load generator, fixed/scan/auto modes, reports, benchmark tasks |
//! | [`registry`], `onnx` | processors by name; the ONNX Runtime processor |
//! | [`auth`], [`limit`], [`request`], [`metrics`], [`request_log`], [`proto`] | leaves: signatures, token bucket, the request builder, metrics, request logs, EAS protobufs |
//!
//! Compose a server in your own binary:
//!
//! ```no_run
//! use eas_core::spec::ServiceSpec;
//! use eas_runtime::registry::ProcessorRegistry;
//! use eas_runtime::platform::Platform;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = ServiceSpec::from_json_str(
//!     r#"{"metadata": {"name": "echo", "instance": 1}, "processor": "echo", "token": "t"}"#,
//! )?;
//! let server = Platform::builder()
//!     .registry(ProcessorRegistry::with_builtins())
//!     .service(spec)
//!     .bind("127.0.0.1:8080".parse()?)
//!     .start()
//!     .await?;
//! println!("serving on http://{}", server.local_addr());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod admission;
pub mod auth;
pub mod control;
pub mod controller;
pub mod directory;
pub mod error;
pub mod fetch;
/// GPUs (feature `cuda`): discovery, the live ledger of grants, MPS core shares, NVML metrics.
pub mod gpu;
pub mod http;
pub mod job;
#[cfg(any(feature = "onnx", feature = "torch"))]
mod json_tensor;
pub mod limit;
pub mod metrics;
#[cfg(any(feature = "onnx", feature = "torch"))]
mod model_file;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod outcome;
pub mod platform;
pub mod proto;
pub mod provider;
pub mod queue;
pub mod registry;
pub mod replica;
pub mod request;
pub mod request_log;
pub mod series;
pub mod service;
pub mod store;
pub mod stress;
/// The `torch` processor: TorchScript models through libtorch (`tch`).
#[cfg(feature = "torch")]
pub mod torch;
pub mod traffic;
pub mod worker;

pub use error::{Error, Result};
