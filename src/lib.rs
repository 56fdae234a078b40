//! eas: an embeddable platform for elastic model serving, in the spirit of PAI-EAS.
//!
//! This crate re-exports the workspace's crates under short names and gathers the names most
//! programs need in [`prelude`]:
//! - [`core`] (`eas-core`): the `service.json` spec, the resource model, the five traits
//!   (`Processor`, `Scheduler`, `StorageMount`, `Autoscaler`, `PricingOracle`) and `Clock`;
//! - [`scheduler`] (`eas-scheduler`): placement, spot bidding, autoscaling and simulation;
//! - [`storage`] (`eas-storage`): OSS/S3, NAS and HTTP-archive mounts and the model cache;
//! - [`runtime`] (`eas-runtime`): HTTP serving, batching, queues and backends.
//!
//! ```
//! use eas::prelude::*;
//!
//! let spec = ServiceSpec::from_json_str(r#"{
//!     "metadata": {"name": "demo", "instance": 1},
//!     "processor": "echo",
//!     "model_path": "/models/demo"
//! }"#)?;
//! assert_eq!(spec.metadata.rpc.worker_threads, 5);
//! # Ok::<(), eas::core::spec::SpecErrors>(())
//! ```

pub use eas_core as core;
pub use eas_runtime as runtime;
pub use eas_scheduler as scheduler;
pub use eas_storage as storage;

pub use eas_core::{Error, Result};

/// The names most programs that embed eas need.
pub mod prelude {
    pub use eas_core::autoscaler::{Autoscaler, Observation, Recommendation};
    pub use eas_core::clock::{Clock, ManualClock, SystemClock};
    pub use eas_core::pricing::PricingOracle;
    pub use eas_core::processor::{
        InitContext, MetricReporter, ProcessError, Processor, Request, Response,
    };
    pub use eas_core::scheduler::{Action, ScheduleInput, Scheduler};
    pub use eas_core::spec::{ServiceSpec, SpecError, SpecErrors};
    pub use eas_core::storage::StorageMount;
    pub use eas_core::{Error, Result};
    pub use eas_runtime::platform::{Platform, RunningPlatform};
    pub use eas_runtime::provider::{ChildProcess, InProcess, InstanceProvider};
    pub use eas_runtime::registry::ProcessorRegistry;
}
