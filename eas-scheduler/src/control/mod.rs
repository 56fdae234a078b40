//! The controller's decisions for one service, shared by the live control loop (eas-runtime)
//! and the simulator ([`sim`](crate::sim)): both build an
//! [`Observation`](eas_core::autoscaler::Observation) every round and call the same code.
//!
//! - [`ReplicaController`] ([`controller`]): the desired replica count and why
//!   ([`ScaleDecision`]), from a fixed count, an [`Autoscaler`](eas_core::Autoscaler) (the
//!   spec's or any trait object) or a stop, with a bounded history;
//! - [`autoscaler_for`] ([`select`]): the autoscaler an `autoscaler` block selects with its
//!   `algorithm` (`eas` or `hpa`, an eas extension of the spec);
//! - [`plan()`] ([`mod@plan`]): which local instances to start and stop to reach the desired count
//!   on one machine ([`NodeCapacity`]), and why some could not start;
//! - [`rollout_step`] ([`rollout`]): a rolling update's round within `max_surge` and
//!   `max_unavailable`.
//!
//! Everything is pure: time comes only from the observations, no I/O.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::autoscaler::{metric, Observation};
//! use eas_core::resources::Resources;
//! use eas_core::spec::ServiceSpec;
//! use eas_scheduler::control::{plan, NodeCapacity, ReplicaController};
//!
//! let spec = ServiceSpec::from_json_str(r#"{
//!     "metadata": {"name": "demo", "instance": 1, "cpu": 1},
//!     "containers": [{"image": "i", "command": "run"}],
//!     "autoscaler": {"min": 1, "max": 4, "strategies": {"qps": 10}}
//! }"#)?;
//! let mut controller = ReplicaController::from_spec(&spec)?;
//! let busy = Observation::new(SystemTime::UNIX_EPOCH + Duration::from_secs(60), 1)
//!     .with_service_metric(metric::QPS, 35.0);
//! let decision = controller.decide(&busy);
//! assert_eq!(decision.desired, 4);
//! let steps = plan(decision.desired, &Resources::per_instance(&spec), &[],
//!     &NodeCapacity::new(2_000, 8_192, 0));
//! assert_eq!(steps.start, 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod controller;
pub mod plan;
pub mod rollout;
pub mod select;

pub use controller::{HISTORY_LEN, ReplicaController, ScaleDecision};
pub use plan::{DEFAULT_CPU_OVERCOMMIT, NodeCapacity, ReplicaView, ScalePlan, plan};
pub use rollout::{RolloutLimits, RolloutStep, VersionCounts, rollout_step};
pub use select::autoscaler_for;
