//! The vocabulary of eas: the `service.json` spec, the resource model, the five traits
//! ([`Processor`], [`Scheduler`], [`StorageMount`], [`Autoscaler`], [`PricingOracle`]), the
//! [`Clock`] and the crate's [`Error`].
//!
//! `eas-core` does no I/O and starts no runtime. Everything that runs lives in `eas-runtime`
//! and `eas-storage`; every policy lives in `eas-scheduler`.
//!
//! ```
//! use eas_core::spec::ServiceSpec;
//!
//! let spec = ServiceSpec::from_json_str(r#"{
//!     "metadata": {"name": "demo", "instance": 2},
//!     "processor": "echo",
//!     "model_path": "/models/demo"
//! }"#).expect("a valid spec");
//! assert_eq!(spec.metadata.name, "demo");
//! assert_eq!(spec.metadata.rpc.max_batch_size, 16);
//! ```

pub mod autoscaler;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod control;
pub mod error;
pub mod pricing;
pub mod processor;
pub mod resources;
pub mod scheduler;
pub mod spec;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;

pub use autoscaler::Autoscaler;
pub use clock::Clock;
pub use error::{BoxError, Error, Result};
pub use pricing::PricingOracle;
pub use processor::Processor;
pub use scheduler::Scheduler;
pub use spec::ServiceSpec;
pub use storage::StorageMount;
