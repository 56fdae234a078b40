//! The simulation loop: one pass over virtual time, one second a tick, driving the replica
//! controller (and its autoscaler) and the scheduler every control period and the cloud and
//! the queue every tick.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use eas_core::autoscaler::{InstanceSample, Observation, PodPhase, metric};
use eas_core::resources::{
    Instance, InstanceId, InstanceState, Market, Placement, Resources, Zone,
};
use eas_core::scheduler::{Action, ClusterState, ScheduleInput, ServiceDemand};
use eas_core::spec::ServiceSpec;
use eas_core::{PricingOracle, Scheduler};
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::queue::{FluidQueue, LatencySummary};
use super::report::{MarketHours, TimelinePoint};
use super::{HedgePolicy, SPOT_UNPROTECTED_DISCOUNT, Simulation};
use crate::control::ReplicaController;
use crate::placement::PlacementScheduler;

/// Machines the simulated cloud can sell of each (type, zone) in one round: plenty.
const INVENTORY: u32 = 100_000;
/// How long a spot machine bought with protection cannot be reclaimed.
const PROTECTION: Duration = Duration::from_secs(3_600);

/// One instance as the simulated cloud sees it.
#[derive(Debug)]
struct SimInstance {
    inner: Instance,
    /// When it starts serving.
    ready_at: SystemTime,
    serving: bool,
    /// When its spot machine is reclaimed, if ever in the run.
    reclaim_at: Option<SystemTime>,
    /// When the cloud warns of the reclaim.
    notice_at: Option<SystemTime>,
    /// When it is released after draining (migration source: its replacement's ready time).
    release_at: Option<SystemTime>,
    /// What it costs now, USD per hour.
    rate: f64,
}

impl SimInstance {
    fn next_event(&self) -> Option<SystemTime> {
        let pending = (!self.serving).then_some(self.ready_at);
        let notice = self
            .notice_at
            .filter(|_| self.inner.preemption_notice_at.is_none());
        [pending, notice, self.reclaim_at, self.release_at]
            .into_iter()
            .flatten()
            .min()
    }
}

/// What one run found (the shadow on-demand run uses only its cost).
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) cost_usd: f64,
    pub(crate) optimal_cost_usd: f64,
    pub(crate) latency: LatencySummary,
    pub(crate) preemptions: u64,
    pub(crate) notices: u64,
    pub(crate) launches: u64,
    pub(crate) launch_failures: u64,
    pub(crate) instance_hours: BTreeMap<String, MarketHours>,
    pub(crate) timeline: Vec<TimelinePoint>,
}

/// One run of one policy.
pub(crate) struct Engine<'s> {
    sim: &'s Simulation,
    spec: ServiceSpec,
    hedge: HedgePolicy,
    controller: ReplicaController,
    scheduler: Box<dyn Scheduler>,
    rng: Pcg64Mcg,
    zones: Vec<Zone>,
    types: Vec<String>,
    end: SystemTime,
    fleet: Vec<SimInstance>,
    next_id: u64,
    slots: BTreeMap<(String, Zone), u32>,
    desired: u32,
    asked: u32,
    spot_factor: f64,
    queue: FluidQueue,
    out: Outcome,
}

impl<'s> Engine<'s> {
    pub(crate) fn new(
        sim: &'s Simulation,
        spec: ServiceSpec,
        hedge: HedgePolicy,
    ) -> crate::Result<Self> {
        let config = &sim.config;
        let mut controller = ReplicaController::from_spec(&spec)?;
        if let Some(factory) = &sim.autoscaler {
            controller.set_autoscaler(Some(factory(&spec)));
        }
        let desired = controller.desired();
        let scheduler = sim.scheduler.as_ref().map_or_else(
            || Box::new(PlacementScheduler::new()) as Box<dyn Scheduler>,
            |factory| factory(&spec),
        );
        let spot_factor = if ServiceDemand::from_spec(&spec, 0).spot_protection {
            1.0
        } else {
            1.0 - SPOT_UNPROTECTED_DISCOUNT
        };
        Ok(Self {
            sim,
            hedge,
            controller,
            scheduler,
            rng: Pcg64Mcg::seed_from_u64(config.seed),
            zones: sim.zones(),
            types: sim.instance_types(&spec),
            end: config.start + config.duration,
            fleet: Vec::new(),
            next_id: 0,
            slots: BTreeMap::new(),
            desired,
            asked: 0,
            spot_factor,
            queue: FluidQueue::new(config.service_ms(), config.slo_ms()),
            out: Outcome {
                cost_usd: 0.0,
                optimal_cost_usd: 0.0,
                latency: FluidQueue::new(0.0, 0.0).summary(),
                preemptions: 0,
                notices: 0,
                launches: 0,
                launch_failures: 0,
                instance_hours: BTreeMap::new(),
                timeline: Vec::new(),
            },
            spec,
        })
    }

    /// Runs from the start to the end of the simulation.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn run(mut self) -> Outcome {
        let config = &self.sim.config;
        let start = config.start;
        let seconds = config.duration.as_secs();
        let control = config.control_period.as_secs().max(1);
        let step = config.report_step.as_secs().max(1);
        let qps = config.instance_qps;
        let arrivals = &self.sim.arrivals;
        let mut next_event = start;
        let mut window = 0_u64;
        let mut step_arrivals = 0_u64;
        let mut cheapest = 0.0;
        let mut serving = 0_u32;
        let mut fleet_rate = 0.0;
        for s in 0..seconds {
            let now = start + Duration::from_secs(s);
            let mut changed = false;
            if now >= next_event {
                self.events(now);
                changed = true;
            }
            if s % control == 0 {
                let lambda = if s == 0 {
                    (0..control)
                        .map(|k| u64::from(arrivals.count_at(k)))
                        .sum::<u64>() as f64
                        / control as f64
                } else {
                    window as f64 / control as f64
                };
                window = 0;
                self.control(now, lambda, s == 0);
                cheapest = self.sim.cloud.cheapest(
                    &self.types.iter().map(String::as_str).collect::<Vec<_>>(),
                    &self.zones,
                    now,
                    1.0 - SPOT_UNPROTECTED_DISCOUNT,
                );
                changed = true;
            }
            if changed {
                serving = u32::try_from(self.fleet.iter().filter(|i| i.serving).count())
                    .unwrap_or(u32::MAX);
                fleet_rate = self.fleet.iter().map(|i| i.rate).sum();
                next_event = self
                    .fleet
                    .iter()
                    .filter_map(SimInstance::next_event)
                    .min()
                    .unwrap_or(self.end)
                    .max(now + Duration::from_secs(1));
            }
            let count = arrivals.count_at(s);
            window += u64::from(count);
            step_arrivals += u64::from(count);
            self.queue
                .step(s as f64, 1.0, f64::from(count), f64::from(serving) * qps);
            self.out.cost_usd += fleet_rate / 3_600.0;
            self.out.optimal_cost_usd += f64::from(count) / qps * cheapest / 3_600.0;
            if (s + 1) % step == 0 || s + 1 == seconds {
                let len = (s % step) + 1;
                let demand_qps = step_arrivals as f64 / len as f64;
                step_arrivals = 0;
                self.push_point(
                    s + 1 - len,
                    now + Duration::from_secs(1),
                    demand_qps,
                    fleet_rate,
                );
            }
        }
        for i in std::mem::take(&mut self.fleet) {
            self.close(&i, self.end);
        }
        self.queue.finish(seconds as f64);
        self.out.latency = self.queue.summary();
        self.out
    }

    fn push_point(&mut self, t_s: u64, at: SystemTime, demand_qps: f64, fleet_rate: f64) {
        let (mut spot, mut on_demand) = (0, 0);
        for i in self.fleet.iter().filter(|i| i.inner.state.is_active()) {
            if i.inner.placement.is_spot() {
                spot += 1;
            } else {
                on_demand += 1;
            }
        }
        let (cloud, zones) = (&self.sim.cloud, &self.zones);
        let spot_price = self
            .types
            .iter()
            .flat_map(|t| {
                zones
                    .iter()
                    .filter_map(move |z| cloud.spot_price(t, z, at).ok())
            })
            .reduce(f64::min);
        self.out.timeline.push(TimelinePoint {
            t_s,
            demand_qps,
            needed: demand_qps / self.sim.config.instance_qps,
            desired: self.asked,
            spot,
            on_demand,
            spot_usd_per_hour: spot_price,
            fleet_usd_per_hour: fleet_rate,
            backlog: self.queue.backlog(),
        });
    }

    /// Readiness, notices, reclaims and releases due at `now`.
    fn events(&mut self, now: SystemTime) {
        let mut ended: Vec<SimInstance> = Vec::new();
        let mut kept: Vec<SimInstance> = Vec::with_capacity(self.fleet.len());
        for mut i in std::mem::take(&mut self.fleet) {
            if i.reclaim_at.is_some_and(|r| r <= now) {
                i.inner.state = InstanceState::Preempted;
                self.out.preemptions += 1;
                ended.push(i);
                continue;
            }
            if i.release_at.is_some_and(|r| r <= now) {
                i.inner.state = InstanceState::Terminating;
                ended.push(i);
                continue;
            }
            if i.notice_at.is_some_and(|n| n <= now) && i.inner.preemption_notice_at.is_none() {
                i.inner.preemption_notice_at = Some(now);
                self.out.notices += 1;
            }
            if !i.serving && i.ready_at <= now {
                i.serving = true;
                if i.inner.state == InstanceState::Pending {
                    i.inner.state = InstanceState::Ready;
                }
            }
            kept.push(i);
        }
        self.fleet = kept;
        for i in ended {
            let at = [i.reclaim_at, i.release_at].into_iter().flatten().min();
            self.close(&i, at.unwrap_or(now).min(now));
        }
    }

    /// Adds an instance's hours from launch to `at`.
    fn close(&mut self, i: &SimInstance, at: SystemTime) {
        let Placement::Public { instance_type, .. } = &i.inner.placement else {
            return;
        };
        let hours = at
            .duration_since(i.inner.launched_at)
            .unwrap_or_default()
            .as_secs_f64()
            / 3_600.0;
        let entry = self
            .out
            .instance_hours
            .entry(instance_type.clone())
            .or_default();
        if i.inner.placement.is_spot() {
            entry.spot += hours;
        } else {
            entry.on_demand += hours;
        }
    }

    /// One control round: observe, ask the controller, ask the scheduler, apply its actions.
    fn control(&mut self, now: SystemTime, lambda: f64, warm: bool) {
        let observation = self.observe(now, lambda);
        self.desired = self.controller.decide(&observation).desired;
        self.asked = if self.desired > 0 {
            self.desired.saturating_add(self.hedge.over_provision)
        } else {
            0
        };
        let demand = [ServiceDemand::from_spec(&self.spec, self.asked)];
        let mut cluster = ClusterState {
            zones: self.zones.clone(),
            instances: self.fleet.iter().map(|i| i.inner.clone()).collect(),
            ..ClusterState::default()
        };
        for t in &self.types {
            for z in &self.zones {
                cluster.inventory.insert((t.clone(), z.clone()), INVENTORY);
            }
        }
        let input = ScheduleInput::new(now, &demand, &cluster, &self.sim.cloud);
        let actions = self.scheduler.schedule(&input);
        for action in actions {
            self.apply(now, action, warm);
        }
        for i in &mut self.fleet {
            if let Placement::Public {
                instance_type,
                zone,
                market: Market::Spot { .. },
            } = &i.inner.placement
                && let Ok(p) = self.sim.cloud.oracle().spot_price(instance_type, zone, now)
            {
                i.rate = p * self.spot_factor;
            }
        }
    }

    /// What the controller sees: per instance, readiness and load; for the service, the
    /// arrival rate and the backlog.
    fn observe(&self, now: SystemTime, lambda: f64) -> Observation {
        let qps = self.sim.config.instance_qps;
        let request = Resources::per_instance(&self.spec).cpu_millis;
        let ready = self
            .fleet
            .iter()
            .filter(|i| i.serving && i.inner.state == InstanceState::Ready)
            .count();
        let backlog = self.queue.backlog();
        #[allow(clippy::cast_precision_loss)]
        let per_instance = if ready > 0 {
            lambda / ready as f64
        } else {
            0.0
        };
        let util = if backlog > 1.0 {
            100.0
        } else {
            (100.0 * per_instance / qps).min(100.0)
        };
        let samples = self
            .fleet
            .iter()
            .filter(|i| i.inner.state.is_active())
            .map(|i| {
                let mut s = InstanceSample::new(i.inner.id.clone());
                if request > 0 {
                    s = s.with_cpu_request_millis(request);
                }
                if i.serving && i.inner.state == InstanceState::Ready {
                    #[allow(clippy::cast_precision_loss)]
                    let millis = util / 100.0 * request as f64;
                    s.with_started_at(i.ready_at)
                        .with_metric(metric::QPS, per_instance)
                        .with_metric(metric::CPU_UTILIZATION, util)
                        .with_metric(metric::CPU_MILLIS, millis)
                        .with_metric(metric::GPU_UTILIZATION, util)
                } else {
                    s.with_phase(PodPhase::Pending).with_ready(false)
                }
            })
            .collect();
        Observation::new(now, self.desired)
            .with_instances(samples)
            .with_service_metric(metric::QPS, lambda)
            .with_service_metric(metric::QUEUE_BACKLOG, backlog)
    }

    fn apply(&mut self, now: SystemTime, action: Action, warm: bool) {
        match action {
            Action::Launch { placement, .. } => {
                self.launch(now, placement, warm);
            }
            Action::Terminate { instance, .. } => {
                let Some(k) = self.fleet.iter().position(|i| i.inner.id == instance) else {
                    return;
                };
                if self.fleet[k].inner.preemption_notice_at.is_some() {
                    // Drained as its replacement comes up; the machine goes at the reclaim.
                    let i = &mut self.fleet[k];
                    i.inner.state = InstanceState::Draining;
                    i.release_at = i.reclaim_at;
                } else {
                    let done = self.fleet.remove(k);
                    self.close(&done, now);
                }
            }
            Action::Migrate { instance, to, .. } => {
                if let Some(ready_at) = self.launch(now, to, warm)
                    && let Some(old) = self.fleet.iter_mut().find(|i| i.inner.id == instance)
                {
                    old.inner.state = InstanceState::Draining;
                    old.release_at = Some(ready_at);
                }
            }
        }
    }

    /// Buys a machine at `placement`; when it becomes ready, or `None` when the cloud refuses.
    fn launch(&mut self, now: SystemTime, placement: Placement, warm: bool) -> Option<SystemTime> {
        self.out.launches += 1;
        let Placement::Public {
            instance_type,
            zone,
            market,
        } = &placement
        else {
            self.out.launch_failures += 1;
            return None;
        };
        let sim = self.sim;
        let cloud: &'s super::SimCloud = &sim.cloud;
        let (rate, reclaim_at) = match market {
            Market::Spot { bid_usd_per_hour } => {
                let Ok(price) = cloud.spot_price(instance_type, zone, now) else {
                    self.out.launch_failures += 1;
                    return None;
                };
                if price > *bid_usd_per_hour {
                    self.out.launch_failures += 1;
                    return None;
                }
                let key = (instance_type.clone(), zone.clone());
                let counter = self.slots.entry(key).or_default();
                let slot = *counter % cloud.slots(instance_type, zone);
                *counter = counter.wrapping_add(1);
                let protected = self.spot_factor >= 1.0;
                let from = if protected { now + PROTECTION } else { now };
                let reclaim =
                    cloud.reclaim_at(instance_type, zone, *bid_usd_per_hour, slot, from, self.end);
                (price * self.spot_factor, reclaim)
            }
            Market::OnDemand => (cloud.on_demand_price(instance_type).unwrap_or(0.0), None),
        };
        let ready_at = if warm { now } else { now + self.launch_delay() };
        let notice = self.sim.config.preemption_notice;
        let notice_at = reclaim_at.map(|r| r.checked_sub(notice).unwrap_or(now).max(now));
        let id = InstanceId::new(format!("{}-{}", self.spec.metadata.name, self.next_id));
        self.next_id += 1;
        let resources = Resources::per_instance(&self.spec);
        let inner = Instance::new(id, &self.spec.metadata.name, placement, resources, now);
        self.fleet.push(SimInstance {
            inner,
            ready_at,
            serving: false,
            reclaim_at,
            notice_at,
            release_at: None,
            rate,
        });
        if warm && let Some(i) = self.fleet.last_mut() {
            i.serving = true;
            i.inner.state = InstanceState::Ready;
        }
        Some(ready_at)
    }

    /// The launch delay with its seeded jitter: uniform in `delay * [1 - j, 1 + j]`.
    fn launch_delay(&mut self) -> Duration {
        let config = &self.sim.config;
        #[allow(clippy::cast_precision_loss)]
        let u = (self.rng.next_u64() >> 11) as f64 / (1_u64 << 53) as f64;
        let factor = 1.0 + config.launch_jitter * (2.0 * u - 1.0);
        Duration::from_secs_f64((config.launch_delay.as_secs_f64() * factor).max(0.0))
    }
}
