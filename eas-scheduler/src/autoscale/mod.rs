//! Autoscalers: HPA-compatible replica calculation, EAS strategies and scheduled scaling.
//!
//! - [`replica_count`] ([`calc`]): the Kubernetes HPA replica calculation for
//!   one [`MetricTarget`] and one [`Observation`](eas_core::autoscaler::Observation), pure;
//! - [`HpaBehavior`] ([`behavior`]): stabilisation windows and rate policies;
//! - [`HpaAutoscaler`] ([`hpa`]): several metric targets, the largest wins, through the
//!   behaviour and `[min, max]`;
//! - [`EasAutoscaler`] ([`strategies`]): the PAI-EAS `autoscaler` block (`qps`, `cpu`,
//!   `gpu`, `queue`, custom metrics, scale to and from zero) on the same machinery;
//! - [`bounds_at`] ([`schedule`]): the `schedules` entry in force and the bounds it sets.
//!
//! Everything is a pure function of the observations: time comes only from
//! [`Observation::at`](eas_core::autoscaler::Observation::at), and each
//! [`Recommendation`](eas_core::autoscaler::Recommendation) says why.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::autoscaler::{metric, InstanceSample, Observation};
//! use eas_core::resources::InstanceId;
//! use eas_core::spec::AutoscalerSpec;
//! use eas_core::Autoscaler;
//! use eas_scheduler::autoscale::EasAutoscaler;
//!
//! let mut autoscaler =
//!     EasAutoscaler::from_spec(&AutoscalerSpec::new(1, 10).with_qps(10.0)).expect("valid");
//! let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
//! let busy = Observation::new(at(0), 2)
//!     .with_instance(InstanceSample::new(InstanceId::from("a")).with_metric(metric::QPS, 25.0))
//!     .with_instance(InstanceSample::new(InstanceId::from("b")).with_metric(metric::QPS, 35.0));
//! let r = autoscaler.recommend(&busy);
//! assert_eq!(r.replicas, 6); // average 30 against 10 per instance
//! assert!(r.reason.starts_with("6 replicas: qps"));
//! ```

pub mod behavior;
pub mod calc;
pub mod hpa;
pub mod schedule;
pub mod strategies;

pub use behavior::{HpaBehavior, ScalingPolicy, ScalingRules, SelectPolicy};
pub use calc::{
    DEFAULT_TOLERANCE, MetricSource, MetricTarget, ReplicaCount, Target, replica_count,
};
pub use hpa::HpaAutoscaler;
pub use schedule::{
    ActiveSchedule, Bounds, DEFAULT_SCHEDULE_LOOKBACK, active_schedule, bounds_at, last_occurrence,
};
pub use strategies::EasAutoscaler;
