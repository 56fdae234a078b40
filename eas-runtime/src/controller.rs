//! The live controller of one service: every tick it samples the service's replicas, builds
//! the autoscaler's [`Observation`], asks eas-scheduler's [`ReplicaController`] for the
//! desired count (the very code `eas simulate` runs in virtual time), asks [`plan()`] which
//! replicas to start or stop on this node, and carries the plan out through the service's
//! [`InstanceProvider`](crate::provider::InstanceProvider).
//!
//! # What the autoscaler sees
//!
//! Per replica ([`InstanceSample`]), over the last tick (rates from monotonic counters, so a
//! slow tick averages instead of losing samples):
//! - `qps`: requests its processor answered per second;
//! - `cpu_millis` and `cpu_util`: CPU time of its processor threads, in milli-cores and in
//!   percent of its CPU request (`metadata.cpu`, one core when unset);
//! - `gpu_util`: the utilisation of the GPUs it holds, in percent, from the latest NVML sample
//!   ([`GpuMonitor`], once a second; a GPU shared by slices gives each the GPU's figure); none
//!   without NVML or GPUs: the `gpu` strategy then keeps the count for want of samples, and
//!   the service's warnings say why;
//! - every custom metric its processor reported through `InitContext::metrics` (latest value);
//! - phase and readiness from its state (starting: pending; failed: failed).
//!
//! For the service: total `qps`, `queue_backlog` (async services: the input queue's length)
//! and the custom metrics clients report to the service
//! ([`ServiceController::report_metric`]).
//!
//! Time: decisions read [`Clock::now`](eas_core::Clock::now) (a `ManualClock` in tests moves
//! cron schedules and stabilisation windows); rates use the monotonic clock.
//!
//! # Replacing failed replicas
//!
//! A replica whose processor failed to start is stopped and replaced, with a back-off that
//! doubles from 1 s to 60 s while replacements keep failing (crash-looping is reported in
//! the decision's reason and in the log). A crash-blocked replica
//! (`runtime.enable_crash_block`) is left down: it counts as an instance and is not replaced.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use eas_core::Autoscaler;
use eas_core::autoscaler::{InstanceSample, Observation, PodPhase, metric};
use eas_core::resources::{InstanceId, Resources};
use eas_core::spec::ServiceSpec;
use eas_scheduler::control::{
    NodeCapacity, ReplicaController, ReplicaView, RolloutLimits, ScaleDecision, ScalePlan,
    VersionCounts, plan, rollout_step,
};
use eas_scheduler::placement::gpu::GpuDemand;

use crate::gpu::{GpuInventory, GpuMonitor};
use crate::replica::{Replica, ReplicaState, ReplicaUsage};
use crate::service::Service;

/// The shortest wait before a failed replica is replaced.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait before a failed replica is replaced.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The most custom metric names clients may report for one service.
const MAX_SERVICE_METRICS: usize = 32;

/// What the controller remembers of one replica between ticks.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    completed: u64,
    cpu: Duration,
}

/// The controller of one service.
#[derive(Debug)]
pub struct ServiceController {
    decisions: ReplicaController,
    per_instance: Resources,
    seen: BTreeMap<u32, Seen>,
    last_observed: Option<Instant>,
    reported: BTreeMap<String, f64>,
    failures: u32,
    replace_after: Option<Instant>,
    refused: Option<String>,
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Tick {
    /// The decision.
    pub decision: ScaleDecision,
    /// Replicas started.
    pub started: Vec<u32>,
    /// Replicas retired.
    pub stopped: Vec<u32>,
    /// Why fewer replicas than desired were started, if so.
    pub refused: Option<String>,
    /// Each replica's CPU use over the tick, in percent of its request, by index.
    pub cpu_utilization: Vec<(u32, f64)>,
    /// Each replica's custom metrics as its processor last reported them, by index.
    pub custom_metrics: Vec<(u32, BTreeMap<String, f64>)>,
    /// A rolling update under way (replicas of another version than the current one run),
    /// or one that just failed.
    pub rollout: Option<Rollout>,
}

/// Where a rolling update stands after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rollout {
    /// The version being rolled out.
    pub to: u32,
    /// Replicas of other versions, and how many of them are ready.
    pub old: VersionCounts,
    /// Replicas of the new version, and how many of them are ready.
    pub new: VersionCounts,
    /// Set when the new version failed (a replica could not start, or crashed
    /// [`ROLLOUT_MAX_RESTARTS`] times): the service went back to `back_to`, and why.
    pub failed: Option<(u32, String)>,
}

/// The restarts after which a replica of a version being rolled out counts as failed.
pub const ROLLOUT_MAX_RESTARTS: u64 = 3;

impl ServiceController {
    /// The controller `spec` describes ([`ReplicaController::from_spec`]).
    ///
    /// # Errors
    ///
    /// When its autoscaler block cannot work.
    pub fn from_spec(spec: &ServiceSpec) -> eas_scheduler::Result<Self> {
        Ok(Self::new(spec, ReplicaController::from_spec(spec)?))
    }

    /// A controller of `spec`'s service deciding with `decisions` (say, around a custom
    /// [`Autoscaler`]).
    #[must_use]
    pub fn new(spec: &ServiceSpec, decisions: ReplicaController) -> Self {
        Self {
            decisions,
            per_instance: Resources::per_instance(spec),
            seen: BTreeMap::new(),
            last_observed: None,
            reported: BTreeMap::new(),
            failures: 0,
            replace_after: None,
            refused: None,
        }
    }

    /// The pure decisions: desired count, history, stopped flag.
    #[must_use]
    pub fn decisions(&self) -> &ReplicaController {
        &self.decisions
    }

    /// The same, to change (autoscaler, fixed count, stopped).
    pub fn decisions_mut(&mut self) -> &mut ReplicaController {
        &mut self.decisions
    }

    /// Replaces the autoscaler (`None`: the fixed count).
    pub fn set_autoscaler(&mut self, autoscaler: Option<Box<dyn Autoscaler>>) {
        self.decisions.set_autoscaler(autoscaler);
    }

    /// Records a service-level custom metric a client reported; the autoscaler sees it from
    /// the next tick on. Refuses a name that is not 1 to 64 characters of `[a-zA-Z0-9_:]`, a
    /// value that is not finite, and a new name past 32 per service.
    ///
    /// # Errors
    ///
    /// The reason it was refused.
    pub fn report_metric(&mut self, name: &str, value: f64) -> Result<(), String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
        if !valid {
            return Err(format!(
                "metric name {name:?}: 1 to 64 characters of [a-zA-Z0-9_:]"
            ));
        }
        if !value.is_finite() {
            return Err(format!("metric {name}: the value must be a finite number"));
        }
        if !self.reported.contains_key(name) && self.reported.len() >= MAX_SERVICE_METRICS {
            return Err(format!(
                "metric {name}: at most {MAX_SERVICE_METRICS} custom metrics per service"
            ));
        }
        self.reported.insert(name.to_owned(), value);
        Ok(())
    }

    /// How many of the desired replicas a new service starts with on `node` (none of its own
    /// running yet): the placement of every tick applies to the first replicas too, so a spec
    /// the node cannot hold (a GPU on a node without one) is refused, with the reason in
    /// [`refused`](Self::refused), instead of launched to fail.
    pub fn initial(&mut self, node: &NodeCapacity, gpus: &GpuInventory) -> u32 {
        let mut scale = plan(self.decisions.desired(), &self.per_instance, &[], node);
        self.explain_refusal(&mut scale, gpus);
        if let Some(why) = &scale.refused {
            tracing::warn!("start refused: {why}");
        }
        self.refused.clone_from(&scale.refused);
        scale.start
    }

    /// A node without GPUs refuses GPU instances: adds to the refusal what is missing.
    fn explain_refusal(&self, scale: &mut ScalePlan, gpus: &GpuInventory) {
        if let Some(why) = &mut scale.refused
            && GpuDemand::of(&self.per_instance).wants_gpu()
            && let Err(e) = gpus.devices()
        {
            why.push_str(&format!(" ({e})"));
        }
    }

    /// Why the last tick started fewer replicas than desired, if it did.
    #[must_use]
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// What the autoscaler would see of `service` now.
    pub fn observe(
        &mut self,
        service: &Service,
        at: SystemTime,
        backlog: Option<u64>,
    ) -> Observation {
        self.sample(&service.instances(), at, backlog).0
    }

    /// The observation of `instances` (one snapshot of the replica set), and the usage each
    /// replica reported for it, in the same order.
    fn sample(
        &mut self,
        instances: &[Replica],
        at: SystemTime,
        backlog: Option<u64>,
    ) -> (Observation, Vec<ReplicaUsage>) {
        let now = Instant::now();
        let request_millis = if self.per_instance.cpu_millis > 0 {
            self.per_instance.cpu_millis
        } else {
            1000
        };
        let mut samples = Vec::with_capacity(instances.len());
        let mut usages = Vec::with_capacity(instances.len());
        let mut total_qps = 0.0;
        let mut seen = BTreeMap::new();
        for replica in instances {
            let usage = replica.usage();
            let current = Seen {
                at: now,
                completed: usage.completed,
                cpu: usage.cpu_time,
            };
            let mut sample = InstanceSample::new(instance_id(replica))
                .with_started_at(usage.started_at)
                .with_cpu_request_millis(request_millis);
            let (phase, ready) = phase(&replica.state());
            sample = sample.with_phase(phase).with_ready(ready);
            if let Some(before) = self.seen.get(&replica.index()) {
                let seconds = now.duration_since(before.at).as_secs_f64();
                if seconds > 0.0 {
                    #[allow(clippy::cast_precision_loss)]
                    let qps = usage.completed.saturating_sub(before.completed) as f64 / seconds;
                    let cpu_millis =
                        usage.cpu_time.saturating_sub(before.cpu).as_secs_f64() * 1e3 / seconds;
                    total_qps += qps;
                    #[allow(clippy::cast_precision_loss)]
                    let util = 100.0 * cpu_millis / request_millis as f64;
                    sample = sample
                        .with_metric(metric::QPS, qps)
                        .with_metric(metric::CPU_MILLIS, cpu_millis)
                        .with_metric(metric::CPU_UTILIZATION, util);
                }
            } else if let Some(last) = self.last_observed {
                // Started since the last round: it had answered nothing then, so its rate is
                // exact from there (its CPU time includes `initialize`, so no CPU sample yet).
                let seconds = now.duration_since(last).as_secs_f64();
                if seconds > 0.0 {
                    #[allow(clippy::cast_precision_loss)]
                    let qps = usage.completed as f64 / seconds;
                    total_qps += qps;
                    sample = sample.with_metric(metric::QPS, qps);
                }
            }
            let gpus = replica.gpu_ordinals();
            if !gpus.is_empty()
                && let Some(util) = GpuMonitor::shared().utilization_percent(&gpus)
            {
                sample = sample.with_metric(metric::GPU_UTILIZATION, util);
            }
            for (name, value) in &usage.custom {
                sample = sample.with_metric(name.clone(), *value);
            }
            seen.insert(replica.index(), current);
            samples.push(sample);
            usages.push(usage);
        }
        self.seen = seen;
        self.last_observed = Some(now);
        let mut observation = Observation::new(at, self.decisions.desired())
            .with_instances(samples)
            .with_service_metric(metric::QPS, total_qps);
        if let Some(backlog) = backlog {
            #[allow(clippy::cast_precision_loss)]
            let backlog = backlog as f64;
            observation = observation.with_service_metric(metric::QUEUE_BACKLOG, backlog);
        }
        for (name, value) in &self.reported {
            observation = observation.with_service_metric(name.clone(), *value);
        }
        (observation, usages)
    }

    /// One round: observe, decide, plan on `node`, start and retire replicas.
    pub fn tick(
        &mut self,
        service: &Service,
        at: SystemTime,
        backlog: Option<u64>,
        node: &NodeCapacity,
    ) -> Tick {
        // One snapshot of the replica set for the whole round: observed, planned and acted on.
        let instances = service.instances();
        let (observation, usages) = self.sample(&instances, at, backlog);
        let cpu_utilization = instances
            .iter()
            .zip(&observation.instances)
            .filter_map(|(r, s)| Some((r.index(), s.metric(metric::CPU_UTILIZATION)?)))
            .collect();
        let mut decision = self.decisions.decide(&observation);
        let now = Instant::now();
        let failed: Vec<u32> = instances
            .iter()
            .filter(|r| matches!(r.state(), ReplicaState::Failed(_)))
            .map(Replica::index)
            .collect();
        // Failed replicas are replaced after the back-off; until then they count as there.
        let replace = !failed.is_empty() && self.replace_after.is_none_or(|t| now >= t);
        if failed.is_empty() {
            self.failures = 0;
            self.replace_after = None;
        } else if replace {
            self.failures = self.failures.saturating_add(1);
            let backoff = BACKOFF_MIN
                .saturating_mul(1 << self.failures.min(6).saturating_sub(1))
                .min(BACKOFF_MAX);
            self.replace_after = Some(now + backoff);
            if self.failures > 1 {
                let reason = format!(
                    "; replicas keep failing to start ({} times in a row), next try in {} s",
                    self.failures,
                    backoff.as_secs()
                );
                decision.reason.push_str(&reason);
                tracing::warn!(service = service.name(), "crash loop{reason}");
            }
        }
        let current = service.version();
        if instances.iter().any(|r| r.version() != current) {
            let (started, stopped, rollout) =
                roll(service, &instances, &usages, decision.desired, current);
            let custom_metrics = instances
                .iter()
                .zip(usages)
                .map(|(r, usage)| (r.index(), usage.custom))
                .collect();
            return Tick {
                decision,
                started,
                stopped,
                refused: None,
                cpu_utilization,
                custom_metrics,
                rollout: Some(rollout),
            };
        }
        let views: Vec<ReplicaView> = instances
            .iter()
            .zip(&usages)
            .map(|(r, usage)| {
                ReplicaView::new(instance_id(r), usage.started_at, self.per_instance)
                    .with_ready(r.is_ready())
                    .with_failed(replace && failed.contains(&r.index()))
                    .with_in_flight(usage.in_flight)
            })
            .collect();
        let mut scale = plan(decision.desired, &self.per_instance, &views, node);
        self.explain_refusal(&mut scale, service.provider().gpus());
        let stop: Vec<u32> = instances
            .iter()
            .filter(|r| scale.stop.contains(&instance_id(r)))
            .map(Replica::index)
            .collect();
        let started = service.scale_up(scale.start);
        service.retire(&stop);
        if scale.refused != self.refused {
            if let Some(why) = &scale.refused {
                tracing::warn!(service = service.name(), "scale-up refused: {why}");
            }
            self.refused.clone_from(&scale.refused);
        }
        let custom_metrics = instances
            .iter()
            .zip(usages)
            .map(|(r, usage)| (r.index(), usage.custom))
            .collect();
        Tick {
            decision,
            started,
            stopped: stop,
            refused: scale.refused,
            cpu_utilization,
            custom_metrics,
            rollout: None,
        }
    }
}

/// One round of a rolling update to `current`: start new-version replicas and retire old ones
/// within the spec's `max_surge` and `max_unavailable`; or, when a new-version replica failed,
/// go back to the version before and retire the new ones. Returns the replicas started and
/// retired, and where the rollout stands.
fn roll(
    service: &Service,
    instances: &[Replica],
    usages: &[ReplicaUsage],
    desired: u32,
    current: u32,
) -> (Vec<u32>, Vec<u32>, Rollout) {
    let count = |f: &dyn Fn(&Replica) -> bool| {
        let matching: Vec<&Replica> = instances.iter().filter(|r| f(r)).collect();
        let ready = matching.iter().filter(|r| r.is_ready()).count();
        VersionCounts::new(
            u32::try_from(matching.len()).unwrap_or(u32::MAX),
            u32::try_from(ready).unwrap_or(u32::MAX),
        )
    };
    let old = count(&|r| r.version() != current);
    let new = count(&|r| r.version() == current);
    let failure = instances
        .iter()
        .zip(usages)
        .filter(|(r, _)| r.version() == current)
        .find_map(|(r, usage)| match r.state() {
            ReplicaState::Failed(why) | ReplicaState::CrashBlocked(why) => Some(why),
            _ if usage.restarts >= ROLLOUT_MAX_RESTARTS => Some(format!(
                "replica {} crashed {} times",
                r.index(),
                usage.restarts
            )),
            _ => None,
        });
    if let Some(why) = failure
        && let Some(back) = service.abort_rollout()
    {
        let stop: Vec<u32> = instances
            .iter()
            .filter(|r| r.version() == current)
            .map(Replica::index)
            .collect();
        service.retire(&stop);
        let why = format!("version {current} failed to roll out: {why}");
        tracing::error!(
            service = service.name(),
            "{why}; back to version {back}, which keeps serving"
        );
        let rollout = Rollout {
            to: current,
            old,
            new,
            failed: Some((back, why)),
        };
        return (Vec::new(), stop, rollout);
    }
    let spec = service.spec();
    let limits = RolloutLimits::resolve(
        desired,
        spec.metadata.max_surge(),
        spec.metadata.max_unavailable(),
    );
    let step = rollout_step(desired, limits, old, new);
    // Old replicas that are not ready first, then the ready ones with the least work.
    let mut candidates: Vec<(&Replica, &ReplicaUsage)> = instances
        .iter()
        .zip(usages)
        .filter(|(r, _)| r.version() != current)
        .collect();
    candidates.sort_by_key(|(r, usage)| (r.is_ready(), usage.in_flight));
    let stop: Vec<u32> = candidates
        .iter()
        .take((step.stop_old_not_ready + step.stop_old_ready) as usize)
        .map(|(r, _)| r.index())
        .collect();
    let started = service.scale_up(step.start_new);
    service.retire(&stop);
    let rollout = Rollout {
        to: current,
        old,
        new,
        failed: None,
    };
    (started, stop, rollout)
}

/// The id a replica has in observations and plans: `{service}-{index}`.
#[must_use]
pub fn instance_id(replica: &Replica) -> InstanceId {
    InstanceId::from(format!("{}-{}", replica.service(), replica.index()).as_str())
}

/// A replica's state as a pod phase and readiness.
fn phase(state: &ReplicaState) -> (PodPhase, bool) {
    match state {
        ReplicaState::Starting => (PodPhase::Pending, false),
        ReplicaState::Ready => (PodPhase::Running, true),
        ReplicaState::Restarting => (PodPhase::Running, false),
        ReplicaState::Failed(_) | ReplicaState::CrashBlocked(_) => (PodPhase::Failed, false),
        ReplicaState::Stopped => (PodPhase::Succeeded, false),
    }
}
