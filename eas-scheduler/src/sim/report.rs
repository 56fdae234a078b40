//! [`Report`]: what a simulation found, as JSON.
//!
//! The same inputs and seed give the same report, byte for byte ([`Report::to_json`]): maps are
//! ordered, and numbers are formatted by `serde_json` (shortest round-trip form).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Hours of instances of one type, by market.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MarketHours {
    /// Spot instance-hours.
    pub spot: f64,
    /// On-demand instance-hours.
    pub on_demand: f64,
}

/// One step of the timeline (by default 5 minutes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TimelinePoint {
    /// Seconds from the start of the run to the start of the step.
    pub t_s: u64,
    /// Mean arrival rate over the step, requests per second.
    pub demand_qps: f64,
    /// Instances the demand needs at `instance_qps` each (fractional).
    pub needed: f64,
    /// Instances the autoscaler (plus any hedge) asked for at the end of the step.
    pub desired: u32,
    /// Spot instances up (starting or serving) at the end of the step.
    pub spot: u32,
    /// On-demand instances up at the end of the step.
    pub on_demand: u32,
    /// The cheapest open spot price of the service's types at the end of the step, USD/h
    /// (`null` when every spot market is closed or unpriced).
    pub spot_usd_per_hour: Option<f64>,
    /// What the fleet cost per hour at the end of the step.
    pub fleet_usd_per_hour: f64,
    /// Requests queued at the end of the step.
    pub backlog: f64,
}

/// What a simulation found. See the [simulator docs](super) for the models behind each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// The service simulated.
    pub service: String,
    /// The policy (the spec's instance list, plus a hedge if any), for a person.
    pub policy: String,
    /// Start of the run, RFC 3339.
    pub start: String,
    /// Length of the run, seconds.
    pub duration_s: u64,
    /// The seed of the random draws (launch delays).
    pub seed: u64,
    /// Requests one instance sustains per second.
    pub instance_qps: f64,
    /// Service time of one request, ms.
    pub service_ms: f64,
    /// The latency goal, ms.
    pub slo_ms: f64,
    /// Requests that arrived.
    pub requests: f64,
    /// What the fleet cost, USD.
    pub cost_usd: f64,
    /// What the same autoscaler would have cost buying the same types only on demand, USD.
    pub on_demand_cost_usd: f64,
    /// An offline lower bound: the demand's instance-hours (fractional) at the cheapest price
    /// of the service's types at each moment, knowing every price and preemption, USD.
    pub optimal_cost_usd: f64,
    /// `1 - cost_usd / on_demand_cost_usd`.
    pub savings_vs_on_demand: f64,
    /// Share of requests served within the SLO.
    pub availability: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th-percentile latency, ms.
    pub p99_ms: f64,
    /// Spot instances reclaimed while up.
    pub preemptions: u64,
    /// Preemption notices given (each leads to a replacement launch when one can be placed).
    pub preemption_notices: u64,
    /// Launches asked for by the scheduler.
    pub launches: u64,
    /// Launches the cloud refused (spot price above the bid, market closed).
    pub launch_failures: u64,
    /// Instance-hours by instance type and market.
    pub instance_hours: BTreeMap<String, MarketHours>,
    /// The run, step by step.
    pub timeline: Vec<TimelinePoint>,
}

impl Report {
    /// The report as pretty JSON.
    ///
    /// # Errors
    /// Never in practice (every field serializes); a `serde_json` error otherwise.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// Spot and on-demand instance-hours summed over types.
    #[must_use]
    pub fn total_hours(&self) -> MarketHours {
        self.instance_hours
            .values()
            .fold(MarketHours::default(), |acc, h| MarketHours {
                spot: acc.spot + h.spot,
                on_demand: acc.on_demand + h.on_demand,
            })
    }
}
