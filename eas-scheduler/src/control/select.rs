//! [`autoscaler_for`]: the [`Autoscaler`] an `autoscaler` block selects with its `algorithm`
//! (an eas extension of the spec; `eas` when unset).
//!
//! | `algorithm` | autoscaler |
//! |---|---|
//! | `eas` (default) | [`EasAutoscaler::from_spec`] |
//! | `hpa` | an [`HpaAutoscaler`] between `min` and `max` with the targets below, tolerance 0.1, the HPA's default behaviour unless `behavior` overrides it, and the same `schedules` |
//!
//! The HPA's metric targets are fixed when it is built, as Kubernetes metric specs are:
//!
//! | strategy | HPA metric target |
//! |---|---|
//! | `qps` | Pods metric [`metric::QPS`], average value |
//! | `cpu` | Resource CPU, utilisation in percent of the request |
//! | `gpu` | Pods metric [`metric::GPU_UTILIZATION`], average value |
//! | `queue` | External metric [`metric::QUEUE_BACKLOG`], average value per replica |
//! | custom | Pods metric of that name, average value |
//!
//! Unlike `eas`, `hpa` does not fall back to whole-service values when no instance reports a
//! per-instance metric (it keeps the current count, as Kubernetes does when a metric cannot
//! be read), and it has no scale-to-zero rules: from zero replicas only the `queue` target
//! (an External metric) can ask for instances.
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::autoscaler::{metric, Observation};
//! use eas_core::spec::AutoscalerSpec;
//! use eas_scheduler::control::autoscaler_for;
//!
//! let mut spec = AutoscalerSpec::new(1, 10);
//! spec.strategies.queue = Some(5.0);
//! spec.algorithm = Some("hpa".parse().expect("known algorithm"));
//! let mut hpa = autoscaler_for(&spec).expect("valid block");
//! let observation = Observation::new(SystemTime::UNIX_EPOCH, 2)
//!     .with_service_metric(metric::QUEUE_BACKLOG, 40.0);
//! assert_eq!(hpa.recommend(&observation).replicas, 6); // ceil(40 / 5), at most +4 at once
//! ```

use eas_core::Autoscaler;
use eas_core::autoscaler::metric;
use eas_core::spec::AutoscalerSpec;

use crate::autoscale::{EasAutoscaler, HpaAutoscaler, HpaBehavior, MetricTarget};
use crate::{Error, Result};

/// The autoscaler that `spec.algorithm` selects, built from `spec`.
///
/// # Errors
///
/// [`Error::Policy`] when `min > max`, a target is not a positive number, or the algorithm
/// is one this version does not know.
pub fn autoscaler_for(spec: &AutoscalerSpec) -> Result<Box<dyn Autoscaler>> {
    // Matched by name: the enum is `#[non_exhaustive]`, a later algorithm lands in the error.
    match spec.algorithm().as_str() {
        "eas" => Ok(Box::new(EasAutoscaler::from_spec(spec)?)),
        "hpa" => Ok(Box::new(hpa_for(spec)?)),
        other => Err(Error::Policy(format!(
            "autoscaler algorithm `{other}` is not supported here; use eas or hpa"
        ))),
    }
}

/// The `hpa` reading of an `autoscaler` block.
fn hpa_for(spec: &AutoscalerSpec) -> Result<HpaAutoscaler> {
    crate::autoscale::strategies::check_spec(spec)?;
    let mut hpa = HpaAutoscaler::new(spec.min, spec.max)?;
    for (strategy, target) in spec.strategies.targets() {
        let metric_target = match strategy {
            "qps" => MetricTarget::pods_average(metric::QPS, target),
            "cpu" => MetricTarget::cpu_utilization(target),
            "gpu" => MetricTarget::pods_average(metric::GPU_UTILIZATION, target),
            "queue" => MetricTarget::external_average(metric::QUEUE_BACKLOG, target),
            custom => MetricTarget::pods_average(custom, target),
        };
        hpa = hpa.with_metric(metric_target);
    }
    if let Some(behavior) = &spec.behavior {
        hpa = hpa.with_behavior(HpaBehavior::from_spec(behavior));
    }
    Ok(hpa.with_schedules(spec.schedules.clone()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use eas_core::autoscaler::{InstanceSample, Observation};
    use eas_core::resources::InstanceId;
    use eas_core::spec::{Behavior, ScheduledScaling};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn qps(at_s: u64, current: u32, per_instance: &[f64]) -> Observation {
        let pods = per_instance
            .iter()
            .enumerate()
            .map(|(i, q)| {
                InstanceSample::new(InstanceId::new(format!("p{i}"))).with_metric(metric::QPS, *q)
            })
            .collect();
        Observation::new(at(at_s), current).with_instances(pods)
    }

    fn hpa(spec: AutoscalerSpec) -> AutoscalerSpec {
        spec.with_algorithm("hpa".parse().expect("known"))
    }

    /// `behavior` with no scale-down window.
    fn no_scale_down_window() -> Behavior {
        serde_json::from_str(r#"{"scale_down": {"stabilization_window_seconds": 0}}"#)
            .expect("valid behavior")
    }

    #[test]
    fn autoscaler_for_should_follow_the_algorithm() {
        let busy = qps(0, 2, &[30.0, 30.0]);
        // (spec, expected replicas, words in the reason)
        let cases = [
            (AutoscalerSpec::new(1, 10).with_qps(10.0), 6, "qps"),
            (
                AutoscalerSpec::new(1, 10)
                    .with_qps(10.0)
                    .with_algorithm("eas".parse().expect("known")),
                6,
                "qps",
            ),
            (hpa(AutoscalerSpec::new(1, 10).with_qps(10.0)), 6, "qps"),
            (hpa(AutoscalerSpec::new(1, 4).with_qps(10.0)), 4, "[1, 4]"),
        ];
        for (spec, want, word) in cases {
            let mut a = autoscaler_for(&spec).expect("valid");
            let r = a.recommend(&busy);
            assert_eq!(r.replicas, want, "{spec:?}: {}", r.reason);
            assert!(r.reason.contains(word), "{}", r.reason);
        }
    }

    #[test]
    fn autoscaler_for_should_refuse_what_cannot_work() {
        let cases = [
            AutoscalerSpec::new(3, 2).with_qps(1.0),
            AutoscalerSpec::new(1, 2).with_qps(0.0),
            hpa(AutoscalerSpec::new(3, 2).with_qps(1.0)),
            hpa(AutoscalerSpec::new(1, 2).with_qps(-1.0)),
        ];
        for spec in cases {
            assert!(autoscaler_for(&spec).is_err(), "{spec:?}");
        }
    }

    #[test]
    fn hpa_should_not_scale_to_zero_where_eas_does() {
        let idle = Observation::new(at(0), 2)
            .with_service_metric(metric::QPS, 0.0)
            .with_service_metric(metric::QUEUE_BACKLOG, 0.0);
        let mut spec = AutoscalerSpec::new(0, 5).with_qps(10.0);
        spec.behavior = Some(no_scale_down_window());
        let mut eas = autoscaler_for(&spec).expect("valid");
        let mut hpa = autoscaler_for(&hpa(spec)).expect("valid");
        let r = eas.recommend(&idle);
        assert_eq!(r.replicas, 0, "{}", r.reason);
        let r = hpa.recommend(&idle);
        assert_eq!(r.replicas, 2, "no pod reports qps: {}", r.reason);
    }

    #[test]
    fn hpa_should_take_the_behavior_of_the_block() {
        let mut spec = hpa(AutoscalerSpec::new(1, 10).with_qps(10.0));
        let idle = qps(0, 4, &[1.0, 1.0, 1.0, 1.0]);
        let r = autoscaler_for(&spec).expect("valid").recommend(&idle);
        assert_eq!(r.replicas, 4, "300 s scale-down window: {}", r.reason);
        spec.behavior = Some(no_scale_down_window());
        let r = autoscaler_for(&spec).expect("valid").recommend(&idle);
        assert_eq!(r.replicas, 1, "no scale-down window: {}", r.reason);
    }

    #[test]
    fn hpa_should_take_the_schedules_of_the_block() {
        // From 08:00 UTC at least 3; from 20:00 UTC exactly 1.
        let morning = ScheduledScaling::bounds("0 8 * * *".parse().expect("cron"), Some(3), None);
        let evening = ScheduledScaling::fixed("0 20 * * *".parse().expect("cron"), 1);
        let spec = hpa(AutoscalerSpec::new(1, 10).with_qps(10.0))
            .with_schedule(morning)
            .with_schedule(evening);
        let mut a = autoscaler_for(&spec).expect("valid");
        let day = 86_400 * 10;
        // (seconds into the day, current, per-instance qps, expected, word in the reason)
        let cases = [
            (7 * 3_600, 1, vec![5.0], 1, "schedule #1"),
            (8 * 3_600, 1, vec![5.0], 3, "schedule #0"),
            (12 * 3_600, 3, vec![50.0; 3], 7, "qps"), // 15 wanted, at most +4 per 15 s
            (21 * 3_600, 7, vec![50.0; 7], 1, "fixed at 1"),
        ];
        for (s, current, load, want, word) in cases {
            let r = a.recommend(&qps(day + s, current, &load));
            assert_eq!(r.replicas, want, "at {s} s: {}", r.reason);
            assert!(r.reason.contains(word), "at {s} s: {}", r.reason);
        }
    }
}
