//! [`EasAutoscaler`]: the PAI-EAS `autoscaler` block (strategies, bounds, schedules) on top
//! of the HPA machinery.
//!
//! Each strategy becomes an HPA metric target for the observation at hand:
//!
//! | strategy | target |
//! |---|---|
//! | `qps` | per-instance [`metric::QPS`] average; the service's [`metric::QPS`] over the target when no instance reports it |
//! | `cpu` | CPU utilisation in percent of the request; the instances' own [`metric::CPU_UTILIZATION`] average when none has a request |
//! | `gpu` | per-instance [`metric::GPU_UTILIZATION`] average |
//! | `queue` | the service's [`metric::QUEUE_BACKLOG`] per instance: `ceil(backlog / target)` (KEDA-style) |
//! | custom | per-instance average of the metric of that name; the service value over the target when no instance reports it |
//!
//! The largest count wins, then the HPA tolerance, behaviour (from `autoscaler.behavior`)
//! and bounds apply; the bounds are `min`/`max` or those of the schedule entry in force
//! ([`bounds_at`]). Two EAS rules come on top: with `min` 0 and no load (QPS and backlog
//! sampled and 0) the service goes to zero (after the scale-down window), and from zero any
//! QPS or backlog asks for at least one instance.
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::autoscaler::{metric, Observation};
//! use eas_core::spec::AutoscalerSpec;
//! use eas_core::Autoscaler;
//! use eas_scheduler::autoscale::EasAutoscaler;
//!
//! let mut spec = AutoscalerSpec::new(0, 10);
//! spec.strategies.queue = Some(5.0);
//! let mut autoscaler = EasAutoscaler::from_spec(&spec).expect("valid spec");
//! let observation = Observation::new(SystemTime::UNIX_EPOCH, 0)
//!     .with_service_metric(metric::QUEUE_BACKLOG, 12.0);
//! assert_eq!(autoscaler.recommend(&observation).replicas, 3); // ceil(12 / 5)
//! ```

use std::time::Duration;

use eas_core::Autoscaler;
use eas_core::autoscaler::{Observation, Recommendation, metric};
use eas_core::spec::AutoscalerSpec;

use super::behavior::HpaBehavior;
use super::calc::MetricTarget;
use super::hpa::{Engine, Proposal};
use super::schedule::{Bounds, DEFAULT_SCHEDULE_LOOKBACK, bounds_at};
use crate::{Error, Result};

/// The PAI-EAS autoscaler: strategies, bounds and scheduled scaling from an
/// [`AutoscalerSpec`], with HPA tolerance and behaviour underneath.
#[derive(Debug, Clone)]
pub struct EasAutoscaler {
    spec: AutoscalerSpec,
    lookback: Duration,
    engine: Engine,
}

impl EasAutoscaler {
    /// The autoscaler that `spec` describes, with the default tolerance (0.1) and the
    /// behaviour of `spec.behavior` (Kubernetes defaults for what it leaves out).
    ///
    /// # Errors
    ///
    /// [`Error::Policy`] when `min > max`, or a target is not a positive number.
    pub fn from_spec(spec: &AutoscalerSpec) -> Result<Self> {
        check_spec(spec)?;
        let mut engine = Engine::new();
        if let Some(behavior) = &spec.behavior {
            engine.behavior = HpaBehavior::from_spec(behavior);
        }
        Ok(Self {
            spec: spec.clone(),
            lookback: DEFAULT_SCHEDULE_LOOKBACK,
            engine,
        })
    }

    /// This autoscaler with another tolerance (default 0.1).
    #[must_use]
    pub const fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.engine.tolerance = tolerance;
        self
    }

    /// This autoscaler with another behaviour (replacing the one from the spec).
    #[must_use]
    pub fn with_behavior(mut self, behavior: HpaBehavior) -> Self {
        self.engine.behavior = behavior;
        self
    }

    /// This autoscaler looking back `lookback` for schedule occurrences (default 8 days).
    #[must_use]
    pub const fn with_schedule_lookback(mut self, lookback: Duration) -> Self {
        self.lookback = lookback;
        self
    }

    /// The spec it follows.
    #[must_use]
    pub const fn spec(&self) -> &AutoscalerSpec {
        &self.spec
    }

    /// The bounds in force for `observation` (`min`/`max` or a schedule entry's).
    #[must_use]
    pub fn bounds(&self, observation: &Observation) -> Bounds {
        bounds_at(&self.spec, observation.at, self.lookback)
    }

    /// The HPA metric targets that the strategies become for `observation`, labelled by
    /// strategy name.
    #[must_use]
    pub fn metric_targets(&self, observation: &Observation) -> Vec<(String, MetricTarget)> {
        let reported = |name: &str| {
            observation
                .instances
                .iter()
                .any(|i| i.metric(name).is_some())
        };
        let per_instance = |name: &str, target: f64| {
            if !reported(name) && observation.service_metric(name).is_some() {
                MetricTarget::external_average(name, target)
            } else {
                MetricTarget::pods_average(name, target)
            }
        };
        self.spec
            .strategies
            .targets()
            .into_iter()
            .map(|(strategy, target)| {
                let metric_target = match strategy {
                    "qps" => per_instance(metric::QPS, target),
                    "cpu" => {
                        if observation
                            .instances
                            .iter()
                            .any(|i| i.cpu_request_millis.is_some())
                        {
                            MetricTarget::cpu_utilization(target)
                        } else {
                            MetricTarget::pods_average(metric::CPU_UTILIZATION, target)
                        }
                    }
                    "gpu" => MetricTarget::pods_average(metric::GPU_UTILIZATION, target),
                    "queue" => MetricTarget::external_average(metric::QUEUE_BACKLOG, target),
                    custom => per_instance(custom, target),
                };
                (strategy.to_owned(), metric_target)
            })
            .collect()
    }

    /// Total QPS, if sampled: the service value, else the sum over instances reporting it.
    fn qps(observation: &Observation) -> Option<f64> {
        observation.service_metric(metric::QPS).or_else(|| {
            observation
                .instances
                .iter()
                .any(|i| i.metric(metric::QPS).is_some())
                .then(|| observation.instance_metric_sum(metric::QPS))
        })
    }

    /// The EAS rules on top of the metric proposal: to zero without load, from zero with it.
    fn zero_rules(
        &self,
        observation: &Observation,
        bounds: &Bounds,
        proposal: Proposal,
    ) -> Proposal {
        let qps = Self::qps(observation);
        let backlog = observation.service_metric(metric::QUEUE_BACKLOG);
        let load = [qps, backlog];
        let sampled = load.iter().any(Option::is_some);
        let busy = load.iter().flatten().any(|v| *v > 0.0);
        let describe = || {
            let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
            format!("qps {}, backlog {}", show(qps), show(backlog))
        };
        if bounds.min == 0 && sampled && !busy && !self.spec.strategies.targets().is_empty() {
            return Ok((0, format!("no load ({}): scale to zero", describe())));
        }
        if observation.current_replicas == 0 && busy {
            return Ok(match proposal {
                Ok((n, why)) if n >= 1 => (n, why),
                Ok((_, why)) | Err(why) => (
                    1,
                    format!("load from zero ({}): at least 1 ({why})", describe()),
                ),
            });
        }
        proposal
    }
}

/// Whether `spec` can drive an autoscaler: `min <= max` and every target positive.
pub(crate) fn check_spec(spec: &AutoscalerSpec) -> Result<()> {
    if spec.min > spec.max {
        return Err(Error::Policy(format!(
            "autoscaler min {} is above max {}",
            spec.min, spec.max
        )));
    }
    for (name, target) in spec.strategies.targets() {
        if !(target.is_finite() && target > 0.0) {
            return Err(Error::Policy(format!(
                "autoscaler strategy {name}: the target {target} must be positive"
            )));
        }
    }
    Ok(())
}

impl Autoscaler for EasAutoscaler {
    fn recommend(&mut self, observation: &Observation) -> Recommendation {
        let bounds = self.bounds(observation);
        let targets = self.metric_targets(observation);
        let proposal = self.engine.propose(observation, &targets);
        let proposal = self.zero_rules(observation, &bounds, proposal);
        self.engine.decide(observation, &bounds, proposal)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use eas_core::autoscaler::InstanceSample;
    use eas_core::resources::InstanceId;

    use super::*;

    #[test]
    fn from_spec_should_reject_bad_targets_and_bounds() {
        assert!(EasAutoscaler::from_spec(&AutoscalerSpec::new(3, 2)).is_err());
        assert!(EasAutoscaler::from_spec(&AutoscalerSpec::new(1, 2).with_qps(0.0)).is_err());
        assert!(EasAutoscaler::from_spec(&AutoscalerSpec::new(1, 2).with_qps(-1.0)).is_err());
    }

    #[test]
    fn qps_should_read_instances_first_then_the_service() {
        let a = EasAutoscaler::from_spec(&AutoscalerSpec::new(1, 10).with_qps(10.0)).expect("spec");
        let with_instances = Observation::new(SystemTime::UNIX_EPOCH, 1).with_instance(
            InstanceSample::new(InstanceId::from("p0")).with_metric(metric::QPS, 3.0),
        );
        let targets = a.metric_targets(&with_instances);
        assert_eq!(targets[0].1, MetricTarget::pods_average(metric::QPS, 10.0));
        let service_only =
            Observation::new(SystemTime::UNIX_EPOCH, 1).with_service_metric(metric::QPS, 30.0);
        let targets = a.metric_targets(&service_only);
        assert_eq!(
            targets[0].1,
            MetricTarget::external_average(metric::QPS, 10.0)
        );
    }
}
