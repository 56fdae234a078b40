//! Stress testing, as EAS's one-click stress tool does it: a load generator (open loop at a
//! scheduled QPS, or closed loop at a fixed concurrency) against an EAS endpoint with the
//! service token (plain or HMAC-signed) and request bodies from a file, per-second figures
//! (QPS, latency avg/p50/p90/p99/max from the *intended* send time, errors by status), three
//! modes (fixed, scan, auto), and a report in JSON and self-contained HTML.
//!
//! | file | what |
//! |---|---|
//! | [`data`] | request bodies from a file: lines, base64 lines, or one binary body |
//! | [`load`] | the generator: hyper HTTP/1.1 connections, open and closed loop |
//! | [`record`] | per-second rows, judged windows, the whole run |
//! | [`histogram`] | the latency histogram |
//! | [`search`] | the decisions: judging a step, auto mode's capacity search (pure) |
//! | [`modes`] | fixed, scan and auto on the generator |
//! | [`report`] | the report, its JSON and its HTML page |
//! | [`tasks`] | the benchmark tasks the control API runs (bounded, stoppable) |
//!
//! ```no_run
//! use std::time::Duration;
//! use eas_runtime::stress::{self, Bodies, Credentials, Plan, AutoPlan, RunOptions, Target};
//!
//! # async fn run() -> Result<(), stress::StressError> {
//! let bodies = Bodies::one(r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}}"#);
//! let target = Target::new("http://127.0.0.1:8080/api/predict/mlp", &bodies)?
//!     .with_credentials(Credentials::Token("local-dev-token".into()));
//! let report = stress::run(target, Plan::Auto(AutoPlan::default()), RunOptions::named("mlp")).await?;
//! println!("capacity: {:?} QPS", report.capacity_qps);
//! std::fs::write("report.html", report.to_html()).ok();
//! # Ok(())
//! # }
//! ```

pub mod data;
pub mod histogram;
pub mod load;
pub mod modes;
pub mod record;
pub mod report;
pub mod search;
pub mod tasks;

pub use data::{Bodies, DataFormat};
pub use load::{Credentials, Load, LoadOptions, Target};
pub use modes::{AutoPlan, FixedPlan, Pace, Plan, Progress, RunOptions, ScanPlan, run};
pub use record::{Latency, Recorder, Second, Stats};
pub use report::{Report, Step};
pub use search::{AutoSearch, Goal, RtStat};
pub use tasks::{BenchmarkTasks, TaskConfig};

/// What can go wrong setting up or running a stress test.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StressError {
    /// The request bodies: an empty file, a line that is not base64, an unreadable file.
    #[error("request data: {0}")]
    Data(String),
    /// The target URL or its address.
    #[error("target: {0}")]
    Target(String),
    /// The mode's settings.
    #[error("settings: {0}")]
    Plan(String),
}
