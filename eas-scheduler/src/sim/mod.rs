//! The trace-driven simulator: the same policies as in production (the
//! [`PlacementScheduler`](crate::placement::PlacementScheduler), the autoscaler the spec
//! selects through the same [`ReplicaController`](crate::control::ReplicaController) the live
//! control loop uses, prices from a [`TraceOracle`](crate::pricing::TraceOracle)) driven in
//! virtual time against a simulated cloud and a recorded arrival trace. Deterministic: the
//! same inputs and seed give the same [`Report`], byte for byte.
//!
//! Any policy can take their place: an autoscaler factory
//! ([`Simulation::with_autoscaler`]), a scheduler factory ([`Simulation::with_scheduler`]),
//! and any [`PricingOracle`](eas_core::PricingOracle) under the cloud ([`SimCloud::from_oracle`]). Factories, because a
//! run may simulate twice (the on-demand shadow run below) and each run starts from a fresh
//! policy.
//!
//! # The models
//!
//! - **Time.** A virtual clock moves one second a tick from `start` for `duration`. Every
//!   `control_period` (15 s, the HPA sync period) the controller observes the service, asks the
//!   [`ReplicaController`](crate::control::ReplicaController) for a replica count (the
//!   autoscaler's, or `metadata.instance` without one; plus the hedge's extra, if any) and the
//!   scheduler for actions, and applies them. Nothing reads the wall clock.
//! - **Arrivals** ([`Arrivals`]): requests per second from the Azure or Mooncake trace,
//!   shifted to `start` and repeated to fill the duration.
//! - **Cloud** ([`SimCloud`]): spot prices from the trace (billing at market, not at the bid;
//!   10 % off without the one-hour protection); spot markets closed where a SkyPilot
//!   availability trace says so (the scheduler then sees no price and falls through to the next
//!   zone or type); on-demand machines always available at list price. A launch takes
//!   `launch_delay` (3 min) times a seeded jitter (±25 %); the first round's launches are ready
//!   at once (the service was running before the window). A spot machine is reclaimed when the
//!   price goes above its bid or its availability slot is lost, never within its first hour with
//!   protection; the cloud warns `preemption_notice` (5 min) ahead. On the notice the scheduler
//!   launches a replacement in the configured order; the warned instance keeps serving until
//!   the reclaim (it drains while the replacement starts). Drops in one zone reclaim every
//!   machine above the new count at once (correlated). Rebalancing migrations keep the old
//!   instance until the new one is ready. Billing is per second at the price of the last
//!   control round.
//! - **Service** ([`FluidQueue`]): every serving instance sustains `instance_qps`; a fluid FIFO
//!   queue gives each request its wait, and the latency is wait plus `service_ms`.
//! - **Autoscaler input**: per ready instance the arrival rate over the last control period
//!   divided among ready instances (`qps`) and the utilisation it implies (`cpu_util`,
//!   `cpu_millis`, `gpu_util`: 100 % while requests queue); for the service, the arrival rate
//!   and the backlog (`queue_backlog`).
//!
//! # The figures
//!
//! - `cost_usd`: what the fleet was billed.
//! - `on_demand_cost_usd`: a second run of the same spec with every instance type bought on
//!   demand (first listed order, bids dropped, no hedge): the same demand through the same
//!   autoscaler, served only on demand. For an all-on-demand spec it is the same run.
//! - `optimal_cost_usd`: an offline lower bound. Serving `r` requests per second takes at least
//!   `r / instance_qps` instances; the bound pays that many (fractional, no launch delay, no
//!   minimum, no spare) each second at the cheapest price of any of the service's types at that
//!   second: on demand, or any open spot market in any zone at 10 % under its price (spot
//!   without protection). It knows every future price and closure, so no policy that keeps its
//!   capacity at the arrival rate pays less.
//! - `availability`: the share of requests served within `slo_ms` (default: `service_ms` plus
//!   one second); `p50_ms`, `p99_ms` from the same distribution.
//!
//! # Randomness
//!
//! Only the launch delays are drawn, from a `Pcg64Mcg` (`rand_pcg`) seeded with `seed`: a small
//! generator whose output is fixed by its algorithm, the same on every platform and version
//! (unlike `rand::rngs::StdRng`, which may change between releases), and cheap.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::pricing::PricePoint;
//! use eas_core::spec::ServiceSpec;
//! use eas_scheduler::pricing::TraceOracle;
//! use eas_scheduler::sim::{Arrivals, SimCloud, SimConfig, Simulation};
//!
//! let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
//! let spec = ServiceSpec::from_json_str(r#"{
//!     "metadata": {"name": "demo", "instance": 1},
//!     "containers": [{"image": "i", "command": "run"}],
//!     "cloud": {"computing": {"instances": [
//!         {"type": "c5.large", "spot_price_limit": 0.05}, {"type": "c5.large"}]}},
//!     "autoscaler": {"min": 1, "max": 10, "strategies": {"qps": 8}}}"#)?;
//! let oracle = TraceOracle::new()
//!     .with_on_demand("c5.large", 0.085)
//!     .with_series("c5.large", "us-east-1a", [PricePoint::new(start, 0.035)]);
//! let arrivals = Arrivals::from_counts("flat", vec![20; 60])?;
//! let config = SimConfig::new(start, Duration::from_secs(3_600), 10.0);
//! let report = Simulation::new(spec, SimCloud::new(oracle), arrivals, config)?.run()?;
//! assert_eq!(report.requests, 72_000.0);
//! assert!(report.cost_usd < report.on_demand_cost_usd, "spot is cheaper");
//! assert!(report.optimal_cost_usd <= report.cost_usd);
//! assert_eq!(report.availability, 1.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod arrivals;
mod cloud;
mod engine;
mod plot;
mod queue;
mod report;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eas_core::resources::Zone;
use eas_core::spec::{InstanceTypeSpec, ServiceSpec};
use eas_core::{Autoscaler, Scheduler};

pub use arrivals::Arrivals;
pub use cloud::{Availability, SimCloud};
pub use plot::render_svg;
pub use queue::{FluidQueue, LatencySummary};
pub use report::{MarketHours, Report, TimelinePoint};

use crate::{Error, Result};

/// How much cheaper a spot machine is without the one-hour protection period: 10 %.
pub const SPOT_UNPROTECTED_DISCOUNT: f64 = 0.1;

/// Policy knobs the spec has no field for: a SkyServe-like hedge keeps `over_provision`
/// instances beyond what the autoscaler asks for (spread across zones and falling back to
/// on demand come from the spec: `scheduling.spread.policy: zone` and an ordered instance list
/// ending with an on-demand type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgePolicy {
    /// Extra instances over the autoscaler's count (when it asks for any).
    pub over_provision: u32,
}

impl HedgePolicy {
    /// No hedge.
    pub const NONE: Self = Self { over_provision: 0 };

    /// Keep `n` instances beyond the autoscaler's count.
    #[must_use]
    pub const fn over_provision(n: u32) -> Self {
        Self { over_provision: n }
    }
}

/// How a simulation runs. [`SimConfig::new`] gives the defaults described in the
/// [module docs](self); change them with the `with_*` methods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SimConfig {
    /// When the run starts.
    pub start: SystemTime,
    /// How long it runs (whole seconds).
    pub duration: Duration,
    /// Requests one instance sustains per second.
    pub instance_qps: f64,
    /// Service time of one request, ms (`None`: `1000 / instance_qps`).
    pub service_ms: Option<f64>,
    /// Latency goal, ms (`None`: service time plus 1000 ms).
    pub slo_ms: Option<f64>,
    /// Seed of the random draws.
    pub seed: u64,
    /// Mean time from launch to serving.
    pub launch_delay: Duration,
    /// Launch delays are uniform in `launch_delay * [1 - jitter, 1 + jitter]`.
    pub launch_jitter: f64,
    /// How long before a reclaim the cloud warns.
    pub preemption_notice: Duration,
    /// How often the autoscaler and scheduler run.
    pub control_period: Duration,
    /// The timeline's step.
    pub report_step: Duration,
    /// Extra instances beyond the autoscaler's count.
    pub hedge: HedgePolicy,
}

impl SimConfig {
    /// A run from `start` for `duration` with instances sustaining `instance_qps`; seed 0,
    /// 3-minute launches (±25 %), 5-minute notices, 15-second control rounds, 5-minute
    /// timeline steps, no hedge.
    #[must_use]
    pub const fn new(start: SystemTime, duration: Duration, instance_qps: f64) -> Self {
        Self {
            start,
            duration,
            instance_qps,
            service_ms: None,
            slo_ms: None,
            seed: 0,
            launch_delay: Duration::from_secs(180),
            launch_jitter: 0.25,
            preemption_notice: Duration::from_secs(300),
            control_period: Duration::from_secs(15),
            report_step: Duration::from_secs(300),
            hedge: HedgePolicy::NONE,
        }
    }

    /// The same with this seed.
    #[must_use]
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same with this latency goal in ms.
    #[must_use]
    pub const fn with_slo_ms(mut self, slo_ms: f64) -> Self {
        self.slo_ms = Some(slo_ms);
        self
    }

    /// The same with this service time in ms.
    #[must_use]
    pub const fn with_service_ms(mut self, service_ms: f64) -> Self {
        self.service_ms = Some(service_ms);
        self
    }

    /// The same with this mean launch delay.
    #[must_use]
    pub const fn with_launch_delay(mut self, delay: Duration) -> Self {
        self.launch_delay = delay;
        self
    }

    /// The same with this launch jitter (0 for fixed delays).
    #[must_use]
    pub const fn with_launch_jitter(mut self, jitter: f64) -> Self {
        self.launch_jitter = jitter;
        self
    }

    /// The same with this preemption notice.
    #[must_use]
    pub const fn with_preemption_notice(mut self, notice: Duration) -> Self {
        self.preemption_notice = notice;
        self
    }

    /// The same with this timeline step.
    #[must_use]
    pub const fn with_report_step(mut self, step: Duration) -> Self {
        self.report_step = step;
        self
    }

    /// The same with this hedge.
    #[must_use]
    pub const fn with_hedge(mut self, hedge: HedgePolicy) -> Self {
        self.hedge = hedge;
        self
    }

    /// The service time in ms.
    #[must_use]
    pub fn service_ms(&self) -> f64 {
        self.service_ms.unwrap_or(1_000.0 / self.instance_qps)
    }

    /// The latency goal in ms.
    #[must_use]
    pub fn slo_ms(&self) -> f64 {
        self.slo_ms.unwrap_or(self.service_ms() + 1_000.0)
    }

    fn check(&self) -> Result<()> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let problem = if !positive(self.instance_qps) {
            Some(format!(
                "instance_qps is {}, not a positive number",
                self.instance_qps
            ))
        } else if self.duration.as_secs() == 0 {
            Some("the duration is under one second".to_owned())
        } else if !positive(self.service_ms()) {
            Some(format!(
                "service_ms is {}, not a positive number",
                self.service_ms()
            ))
        } else if !positive(self.slo_ms()) {
            Some(format!(
                "slo_ms is {}, not a positive number",
                self.slo_ms()
            ))
        } else if !(0.0..=1.0).contains(&self.launch_jitter) {
            Some(format!(
                "launch_jitter is {}, not in [0, 1]",
                self.launch_jitter
            ))
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(Error::Policy(format!("simulation: {p}"))))
    }
}

/// Builds the autoscaler of one run from the spec it simulates (the on-demand shadow run
/// passes its own copy of the spec).
pub type AutoscalerFactory = Arc<dyn Fn(&ServiceSpec) -> Box<dyn Autoscaler> + Send + Sync>;

/// Builds the scheduler of one run from the spec it simulates.
pub type SchedulerFactory = Arc<dyn Fn(&ServiceSpec) -> Box<dyn Scheduler> + Send + Sync>;

/// A simulation of one service spec on a simulated cloud and an arrival trace.
#[derive(Clone)]
pub struct Simulation {
    spec: ServiceSpec,
    cloud: SimCloud,
    arrivals: Arrivals,
    config: SimConfig,
    autoscaler: Option<AutoscalerFactory>,
    scheduler: Option<SchedulerFactory>,
}

impl fmt::Debug for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("spec", &self.spec)
            .field("cloud", &self.cloud)
            .field("arrivals", &self.arrivals)
            .field("config", &self.config)
            .field("custom_autoscaler", &self.autoscaler.is_some())
            .field("custom_scheduler", &self.scheduler.is_some())
            .finish()
    }
}

impl Simulation {
    /// A simulation of `spec`'s `cloud.computing.instances` and `autoscaler`.
    ///
    /// # Errors
    /// [`Error::Policy`] when the spec lists no instance types, when a listed type has no
    /// on-demand price or a spot entry's type no spot price in any zone (naming every such
    /// type), when the configuration is out of range, or when the autoscaler is invalid.
    pub fn new(
        spec: ServiceSpec,
        cloud: SimCloud,
        arrivals: Arrivals,
        config: SimConfig,
    ) -> Result<Self> {
        config.check()?;
        let entries = instance_entries(&spec);
        if entries.is_empty() {
            return Err(Error::Policy(format!(
                "service {}: cloud.computing.instances is empty: nothing to buy",
                spec.metadata.name
            )));
        }
        let mut missing: BTreeSet<String> = BTreeSet::new();
        for entry in entries {
            let t = entry.instance_type.as_str();
            if cloud.oracle().on_demand_price(t).is_err() {
                missing.insert(format!("{t} (no on-demand price)"));
            }
            let has_spot = cloud.spot_markets().any(|(ty, _)| ty == t);
            if entry.is_spot() && !has_spot {
                missing.insert(format!("{t} (no spot price in any zone)"));
            }
        }
        if !missing.is_empty() {
            return Err(Error::Policy(format!(
                "instance types without a price in the price files: {}",
                missing.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        if let Some(a) = &spec.autoscaler {
            crate::control::autoscaler_for(a)?;
        }
        Ok(Self {
            spec,
            cloud,
            arrivals,
            config,
            autoscaler: None,
            scheduler: None,
        })
    }

    /// The same with every run's autoscaler built by `factory` instead of the one the spec
    /// selects ([`autoscaler_for`](crate::control::autoscaler_for)); it decides even for a
    /// spec without an `autoscaler` block. The first desired count stays `metadata.instance`
    /// (clamped to the block's bounds when there is one).
    #[must_use]
    pub fn with_autoscaler(mut self, factory: AutoscalerFactory) -> Self {
        self.autoscaler = Some(factory);
        self
    }

    /// The same with every run's scheduler built by `factory` instead of a
    /// [`PlacementScheduler`](crate::placement::PlacementScheduler).
    #[must_use]
    pub fn with_scheduler(mut self, factory: SchedulerFactory) -> Self {
        self.scheduler = Some(factory);
        self
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The zones machines are bought in: those with a spot price or an availability trace for
    /// one of the spec's types; else every zone with a price; else one zone, `default`.
    #[must_use]
    pub fn zones(&self) -> Vec<Zone> {
        let types = self.instance_types(&self.spec);
        let mut zones: BTreeSet<Zone> = self
            .cloud
            .spot_markets()
            .chain(self.cloud.availability_keys())
            .filter(|(t, _)| types.iter().any(|ty| ty == t))
            .map(|(_, z)| z.clone())
            .collect();
        if zones.is_empty() {
            zones = self.cloud.spot_markets().map(|(_, z)| z.clone()).collect();
        }
        if zones.is_empty() {
            zones.insert(Zone::from("default"));
        }
        zones.into_iter().collect()
    }

    /// The instance types `spec` lists, each once, in order.
    fn instance_types(&self, spec: &ServiceSpec) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for e in instance_entries(spec) {
            if !types.contains(&e.instance_type) {
                types.push(e.instance_type.clone());
            }
        }
        types
    }

    /// Runs the policy, and the same demand on demand only, and reports.
    ///
    /// # Errors
    /// [`Error::Policy`] when the autoscaler cannot be built (checked in [`Simulation::new`]).
    pub fn run(&self) -> Result<Report> {
        let main = engine::Engine::new(self, self.spec.clone(), self.config.hedge)?.run();
        let od_spec = on_demand_only(&self.spec);
        let on_demand_cost = if od_spec == self.spec && self.config.hedge == HedgePolicy::NONE {
            main.cost_usd
        } else {
            engine::Engine::new(self, od_spec, HedgePolicy::NONE)?
                .run()
                .cost_usd
        };
        let start = chrono::DateTime::<chrono::Utc>::from(self.config.start)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(Report {
            service: self.spec.metadata.name.clone(),
            policy: self.describe(),
            start,
            duration_s: self.config.duration.as_secs(),
            seed: self.config.seed,
            instance_qps: self.config.instance_qps,
            service_ms: self.config.service_ms(),
            slo_ms: self.config.slo_ms(),
            requests: main.latency.requests,
            cost_usd: main.cost_usd,
            on_demand_cost_usd: on_demand_cost,
            optimal_cost_usd: main.optimal_cost_usd,
            savings_vs_on_demand: if on_demand_cost > 0.0 {
                1.0 - main.cost_usd / on_demand_cost
            } else {
                0.0
            },
            availability: main.latency.availability,
            p50_ms: main.latency.p50_ms,
            p99_ms: main.latency.p99_ms,
            preemptions: main.preemptions,
            preemption_notices: main.notices,
            launches: main.launches,
            launch_failures: main.launch_failures,
            instance_hours: main.instance_hours,
            timeline: main.timeline,
        })
    }

    /// The policy for a person: the ordered list, the spread, the hedge, custom policies.
    fn describe(&self) -> String {
        let list: Vec<String> = instance_entries(&self.spec)
            .iter()
            .map(|e| match e.spot_price_limit {
                Some(bid) => format!("spot {} (bid {bid})", e.instance_type),
                None => format!("on-demand {}", e.instance_type),
            })
            .collect();
        let mut text = list.join(" > ");
        let spread = eas_core::scheduler::ServiceDemand::from_spec(&self.spec, 0).spread;
        text.push_str(&format!("; spread {spread:?}"));
        if self.config.hedge.over_provision > 0 {
            text.push_str(&format!("; hedge +{}", self.config.hedge.over_provision));
        }
        if self.autoscaler.is_some() {
            text.push_str("; custom autoscaler");
        }
        if self.scheduler.is_some() {
            text.push_str("; custom scheduler");
        }
        text
    }
}

fn instance_entries(spec: &ServiceSpec) -> &[InstanceTypeSpec] {
    spec.cloud
        .as_ref()
        .and_then(|c| c.computing.as_ref())
        .map_or(&[], |c| c.instances.as_slice())
}

/// The same spec buying each listed type on demand only (first listed order, each once).
fn on_demand_only(spec: &ServiceSpec) -> ServiceSpec {
    let mut out = spec.clone();
    if let Some(computing) = out.cloud.as_mut().and_then(|c| c.computing.as_mut()) {
        let mut seen: Vec<String> = Vec::new();
        computing.instances.retain(|e| {
            let first = !seen.contains(&e.instance_type);
            seen.push(e.instance_type.clone());
            first
        });
        for e in &mut computing.instances {
            e.spot_price_limit = None;
        }
    }
    out
}
