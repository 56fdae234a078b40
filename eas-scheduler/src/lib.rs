//! `eas-scheduler`: the control-plane policies of eas. Placement over resource groups, spot
//! bidding against a `PricingOracle`, autoscalers, release plans and the trace-driven
//! simulator live here as plain functions of state and time: no I/O, no runtime, time only
//! from a [`Clock`](eas_core::Clock).
//!
//! The policies arrive with their own issues; this crate already owns its [`Error`].

pub mod error;

pub use error::{Error, Result};
