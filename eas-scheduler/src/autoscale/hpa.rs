//! [`HpaAutoscaler`]: the Kubernetes Horizontal Pod Autoscaler as an
//! [`eas_core::Autoscaler`].
//!
//! Each call: the bounds are `[min, max]`, or those of the `schedules` entry in force when
//! the HPA was given schedules ([`HpaAutoscaler::with_schedules`], read as [`bounds_at`]
//! reads them for the EAS autoscaler); a current count above `max` or below `min` goes
//! straight to the bound; otherwise every metric target gives a count ([`replica_count`]),
//! the largest wins, and the behaviour ([`HpaBehavior`]) stabilises it, limits its rate and
//! keeps it within `[min, max]`. If every metric fails, or some fail and the others would scale down, the
//! current count is kept (as Kubernetes does).
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::autoscaler::{InstanceSample, Observation};
//! use eas_core::resources::InstanceId;
//! use eas_core::Autoscaler;
//! use eas_scheduler::autoscale::{HpaAutoscaler, MetricTarget};
//!
//! let mut hpa = HpaAutoscaler::new(1, 10)
//!     .expect("min <= max")
//!     .with_metric(MetricTarget::pods_average("qps", 15.0));
//! let pod = |i: u32, qps: f64| {
//!     InstanceSample::new(InstanceId::new(format!("p{i}"))).with_metric("qps", qps)
//! };
//! let observation = Observation::new(SystemTime::UNIX_EPOCH, 3)
//!     .with_instances(vec![pod(0, 20.0), pod(1, 10.0), pod(2, 30.0)]);
//! let recommendation = hpa.recommend(&observation);
//! assert_eq!(recommendation.replicas, 4);
//! assert!(recommendation.reason.contains("qps"));
//! ```

use std::time::Duration;

use eas_core::Autoscaler;
use eas_core::autoscaler::{Observation, Recommendation};
use eas_core::spec::{AutoscalerSpec, ScheduledScaling};

use super::behavior::{BehaviorState, HpaBehavior};
use super::calc::{DEFAULT_TOLERANCE, MetricTarget, replica_count};
use super::schedule::{Bounds, DEFAULT_SCHEDULE_LOOKBACK, bounds_at};
use crate::{Error, Result};

/// A metric proposal (or why there is none), before behaviour.
pub(crate) type Proposal = std::result::Result<(u32, String), String>;

/// The machinery shared by every autoscaler here: metric combination, behaviour, bounds.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    pub(crate) tolerance: f64,
    pub(crate) behavior: HpaBehavior,
    state: BehaviorState,
}

impl Engine {
    pub(crate) fn new() -> Self {
        Self {
            tolerance: DEFAULT_TOLERANCE,
            behavior: HpaBehavior::default(),
            state: BehaviorState::default(),
        }
    }

    /// The largest count of `metrics`, labelled, with Kubernetes' rule for failed metrics.
    pub(crate) fn propose(
        &self,
        observation: &Observation,
        metrics: &[(String, MetricTarget)],
    ) -> Proposal {
        let current = observation.current_replicas;
        if metrics.is_empty() {
            return Ok((current, format!("no metric targets, keeping {current}")));
        }
        let mut best: Option<(u32, String)> = None;
        let mut errors = Vec::new();
        for (label, target) in metrics {
            match replica_count(observation, target, self.tolerance) {
                Ok(count) => {
                    if best.as_ref().is_none_or(|(r, _)| count.replicas > *r) {
                        best = Some((count.replicas, format!("{label}: {}", count.reason)));
                    }
                }
                Err(e) => errors.push(format!("{label}: {e}")),
            }
        }
        match best {
            None => Err(format!("no metric could be read ({})", errors.join("; "))),
            Some((replicas, reason)) if !errors.is_empty() && replicas < current => Err(format!(
                "{reason}, but not scaling down while {} of {} metrics cannot be read ({})",
                errors.len(),
                metrics.len(),
                errors.join("; ")
            )),
            Some((replicas, reason)) if !errors.is_empty() => Ok((
                replicas,
                format!(
                    "{reason} ({} unreadable: {})",
                    errors.len(),
                    errors.join("; ")
                ),
            )),
            Some(best) => Ok(best),
        }
    }

    /// The recommendation for `proposal` within `bounds`, through the behaviour.
    pub(crate) fn decide(
        &mut self,
        observation: &Observation,
        bounds: &Bounds,
        proposal: Proposal,
    ) -> Recommendation {
        let at = observation.at;
        let current = observation.current_replicas;
        let (min, max) = (bounds.min, bounds.max.max(bounds.min));
        self.state.record_initial(at, current);
        let (replicas, reason) = if current > max {
            (
                max,
                format!("{current} above max {max} ({})", bounds.reason),
            )
        } else if current < min {
            (
                min,
                format!("{current} below min {min} ({})", bounds.reason),
            )
        } else {
            match proposal {
                Err(why) => (current, format!("keeping {current}: {why}")),
                Ok((desired, why)) => {
                    let mut reason = format!("{why}; {}", bounds.reason);
                    let (stabilized, note) =
                        self.state.stabilize(&self.behavior, at, current, desired);
                    if let Some(note) = note {
                        reason.push_str("; ");
                        reason.push_str(&note);
                    }
                    let (limited, note) =
                        self.state
                            .limit_rate(&self.behavior, at, current, stabilized, (min, max));
                    if let Some(note) = note {
                        reason.push_str("; ");
                        reason.push_str(&note);
                    }
                    (limited, reason)
                }
            }
        };
        self.state
            .record_scale(&self.behavior, at, current, replicas);
        Recommendation::new(replicas, format!("{replicas} replicas: {reason}"))
    }
}

/// The Kubernetes HPA: metric targets, `[min, max]`, tolerance and behaviour.
#[derive(Debug, Clone)]
pub struct HpaAutoscaler {
    min: u32,
    max: u32,
    metrics: Vec<(String, MetricTarget)>,
    /// `[min, max]` with the schedules, when there are any (what [`bounds_at`] reads).
    schedules: Option<AutoscalerSpec>,
    lookback: Duration,
    engine: Engine,
}

impl HpaAutoscaler {
    /// An HPA between `min` and `max` replicas with no metric yet, the default tolerance
    /// (0.1) and the default behaviour.
    ///
    /// # Errors
    ///
    /// [`Error::Policy`] when `min > max`.
    pub fn new(min: u32, max: u32) -> Result<Self> {
        if min > max {
            return Err(Error::Policy(format!(
                "autoscaler min {min} is above max {max}"
            )));
        }
        Ok(Self {
            min,
            max,
            metrics: Vec::new(),
            schedules: None,
            lookback: DEFAULT_SCHEDULE_LOOKBACK,
            engine: Engine::new(),
        })
    }

    /// This HPA with scheduled scaling: from each occurrence of an entry's cron expression
    /// on, the entry's bounds (or fixed count) replace `[min, max]`, as for the EAS
    /// autoscaler ([`bounds_at`]). Replaces any schedules before; none removes them.
    #[must_use]
    pub fn with_schedules(mut self, schedules: Vec<ScheduledScaling>) -> Self {
        self.schedules = (!schedules.is_empty()).then(|| {
            let mut spec = AutoscalerSpec::new(self.min, self.max);
            spec.schedules = schedules;
            spec
        });
        self
    }

    /// This HPA looking back `lookback` for schedule occurrences (default 8 days).
    #[must_use]
    pub const fn with_schedule_lookback(mut self, lookback: Duration) -> Self {
        self.lookback = lookback;
        self
    }

    /// The bounds in force for `observation`: `[min, max]`, or a schedule entry's.
    #[must_use]
    pub fn bounds(&self, observation: &Observation) -> Bounds {
        match &self.schedules {
            Some(spec) => bounds_at(spec, observation.at, self.lookback),
            None => Bounds::new(
                self.min,
                self.max,
                format!("bounds [{}, {}]", self.min, self.max),
            ),
        }
    }

    /// This HPA with one more metric target.
    #[must_use]
    pub fn with_metric(mut self, target: MetricTarget) -> Self {
        self.metrics.push((target.to_string(), target));
        self
    }

    /// This HPA with another tolerance (Kubernetes: 0.1).
    #[must_use]
    pub const fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.engine.tolerance = tolerance;
        self
    }

    /// This HPA with another behaviour.
    #[must_use]
    pub fn with_behavior(mut self, behavior: HpaBehavior) -> Self {
        self.engine.behavior = behavior;
        self
    }

    /// Its metric targets.
    pub fn metrics(&self) -> impl Iterator<Item = &MetricTarget> {
        self.metrics.iter().map(|(_, t)| t)
    }

    /// Its behaviour.
    #[must_use]
    pub const fn behavior(&self) -> &HpaBehavior {
        &self.engine.behavior
    }
}

impl Autoscaler for HpaAutoscaler {
    fn recommend(&mut self, observation: &Observation) -> Recommendation {
        let bounds = self.bounds(observation);
        let proposal = self.engine.propose(observation, &self.metrics);
        self.engine.decide(observation, &bounds, proposal)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use eas_core::autoscaler::InstanceSample;
    use eas_core::resources::InstanceId;

    use super::*;

    fn qps_obs(secs: u64, current: u32, qps: &[f64]) -> Observation {
        let pods = qps
            .iter()
            .enumerate()
            .map(|(i, q)| {
                InstanceSample::new(InstanceId::new(format!("p{i}"))).with_metric("qps", *q)
            })
            .collect();
        Observation::new(SystemTime::UNIX_EPOCH + Duration::from_secs(secs), current)
            .with_instances(pods)
    }

    #[test]
    fn new_should_reject_min_above_max() {
        assert!(HpaAutoscaler::new(5, 2).is_err());
    }

    #[test]
    fn unreadable_metrics_should_block_scale_down_only() {
        let mut hpa = HpaAutoscaler::new(1, 20)
            .expect("bounds")
            .with_metric(MetricTarget::pods_average("qps", 10.0))
            .with_metric(MetricTarget::external_value("absent", 1.0));
        // Would scale down to 1: blocked.
        let r = hpa.recommend(&qps_obs(0, 4, &[1.0, 1.0, 1.0, 1.0]));
        assert_eq!(r.replicas, 4, "{}", r.reason);
        // Would scale up to 8: allowed.
        let r = hpa.recommend(&qps_obs(15, 4, &[20.0, 20.0, 20.0, 20.0]));
        assert_eq!(r.replicas, 8, "{}", r.reason);
    }

    #[test]
    fn no_readable_metric_should_keep_current() {
        let mut hpa = HpaAutoscaler::new(1, 20)
            .expect("bounds")
            .with_metric(MetricTarget::external_value("absent", 1.0));
        let r = hpa.recommend(&qps_obs(0, 3, &[]));
        assert_eq!(r.replicas, 3);
        assert!(r.reason.contains("absent"), "{}", r.reason);
    }
}
