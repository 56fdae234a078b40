//! `eas-scheduler`: the control-plane policies of eas. Placement over resource groups, spot
//! bidding against a `PricingOracle`, autoscalers and the trace-driven simulator live here as
//! plain functions of state and time: no I/O, no runtime, and no wall clock: every decision
//! takes the time it is made at from its caller (the simulator's virtual time, or a
//! [`Clock`](eas_core::Clock) reading).
//!
//! - [`autoscale`]: `Autoscaler`s (Kubernetes-HPA-compatible, EAS strategies, schedules);
//! - [`control`]: the controller's decisions per service (desired replicas and why, which
//!   local instances to start and stop), the same for the live loop and the simulator;
//! - [`placement`]: the default `Scheduler` (dedicated first, bursting, ordered instance
//!   types with spot bids and capacity caps, spread, preemption, rebalancing);
//! - [`pricing`]: `PricingOracle`s (static tables, replays of real price traces);
//! - [`sim`]: the trace-driven simulator that drives these policies in virtual time.

pub mod autoscale;
pub mod control;
pub mod error;
pub mod placement;
pub mod pricing;
pub mod sim;

pub use error::{Error, Result};
