//! The Kubernetes HPA replica calculation, as a pure function of one [`Observation`].
//!
//! A port of `pkg/controller/podautoscaler/replica_calculator.go` (Kubernetes, Apache-2.0):
//! the same grouping of pods, the same integer arithmetic on milli-values and the same
//! floating-point steps, so the same inputs give the same replica counts.
//!
//! - Instances that are being deleted or have failed are ignored.
//! - Pending instances are set aside; for CPU, so are unready instances and instances whose
//!   CPU sample is not trusted yet ([`InstanceSample::cpu_initializing`]). Custom per-instance
//!   metrics do not set unready instances aside.
//! - If nothing is set aside or missing, `desired = ceil(ratio × ready)` unless the ratio is
//!   within the tolerance. Otherwise the ratio is recomputed with missing instances at 100 %
//!   of their request (or of the target) when scaling down and 0 when scaling up, and set-aside
//!   instances at 0 when scaling up; a recomputed ratio within the tolerance or on the other
//!   side of 1 keeps the current count.
//!
//! Values are compared as Kubernetes quantities are: CPU in whole milli-cores, other metrics
//! in milli-units (a QPS of `20.5` is `20500`), utilisation in whole percent.
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::autoscaler::{metric, InstanceSample, Observation};
//! use eas_core::resources::InstanceId;
//! use eas_scheduler::autoscale::{replica_count, MetricTarget, DEFAULT_TOLERANCE};
//!
//! let pod = |i: u32, usage: f64| {
//!     InstanceSample::new(InstanceId::new(format!("p{i}")))
//!         .with_cpu_request_millis(1_000)
//!         .with_metric(metric::CPU_MILLIS, usage)
//! };
//! let observation = Observation::new(SystemTime::UNIX_EPOCH, 3)
//!     .with_instance(pod(0, 300.0))
//!     .with_instance(pod(1, 500.0))
//!     .with_instance(pod(2, 700.0));
//! let count = replica_count(&observation, &MetricTarget::cpu_utilization(30.0), DEFAULT_TOLERANCE)
//!     .expect("cpu samples and requests are there");
//! assert_eq!(count.replicas, 5); // 50 % against 30 % on 3 instances
//! ```

use std::fmt;

use eas_core::autoscaler::{InstanceSample, Observation, PodPhase, metric};

use crate::{Error, Result};

/// The Kubernetes default tolerance: ratios within 10 % of 1 do not scale.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// Where a metric's values come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricSource {
    /// CPU per instance: [`metric::CPU_MILLIS`] (or [`metric::CPU_UTILIZATION`] of the
    /// instance's request), in milli-cores.
    ResourceCpu,
    /// A per-instance metric of this name ([`InstanceSample::metrics`]).
    Pods(String),
    /// One value for the whole service describing an object, by name
    /// ([`Observation::service_metrics`]).
    Object(String),
    /// One value for the whole service from outside it, by name
    /// ([`Observation::service_metrics`]).
    External(String),
}

impl MetricSource {
    /// The metric's name: `cpu` for CPU, the given name otherwise.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::ResourceCpu => "cpu",
            Self::Pods(name) | Self::Object(name) | Self::External(name) => name,
        }
    }
}

/// What a metric is compared against.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Target {
    /// Percent of the instances' CPU request ([`MetricSource::ResourceCpu`] only).
    Utilization(f64),
    /// A value per instance: the average over instances (resource and pods metrics) or the
    /// total divided by the instance count (object and external metrics).
    AverageValue(f64),
    /// A value for the whole object (object and external metrics only).
    Value(f64),
}

/// One metric target of an autoscaler: a source and what it should be.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricTarget {
    /// Where the values come from.
    pub source: MetricSource,
    /// What they should be.
    pub target: Target,
}

impl MetricTarget {
    /// A target for `source`.
    #[must_use]
    pub const fn new(source: MetricSource, target: Target) -> Self {
        Self { source, target }
    }

    /// CPU at `percent` of the instances' request.
    #[must_use]
    pub const fn cpu_utilization(percent: f64) -> Self {
        Self::new(MetricSource::ResourceCpu, Target::Utilization(percent))
    }

    /// CPU at `millis` milli-cores per instance on average.
    #[must_use]
    pub const fn cpu_average_millis(millis: f64) -> Self {
        Self::new(MetricSource::ResourceCpu, Target::AverageValue(millis))
    }

    /// Per-instance metric `name` at `value` on average.
    #[must_use]
    pub fn pods_average(name: impl Into<String>, value: f64) -> Self {
        Self::new(MetricSource::Pods(name.into()), Target::AverageValue(value))
    }

    /// Object metric `name` at `value` in total.
    #[must_use]
    pub fn object_value(name: impl Into<String>, value: f64) -> Self {
        Self::new(MetricSource::Object(name.into()), Target::Value(value))
    }

    /// Object metric `name` at `value` per instance.
    #[must_use]
    pub fn object_average(name: impl Into<String>, value: f64) -> Self {
        Self::new(
            MetricSource::Object(name.into()),
            Target::AverageValue(value),
        )
    }

    /// External metric `name` at `value` in total.
    #[must_use]
    pub fn external_value(name: impl Into<String>, value: f64) -> Self {
        Self::new(MetricSource::External(name.into()), Target::Value(value))
    }

    /// External metric `name` at `value` per instance (KEDA-style: `ceil(total / value)`).
    #[must_use]
    pub fn external_average(name: impl Into<String>, value: f64) -> Self {
        Self::new(
            MetricSource::External(name.into()),
            Target::AverageValue(value),
        )
    }
}

impl fmt::Display for MetricTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.source {
            MetricSource::ResourceCpu => "resource",
            MetricSource::Pods(_) => "pods",
            MetricSource::Object(_) => "object",
            MetricSource::External(_) => "external",
        };
        let name = self.source.name();
        match self.target {
            Target::Utilization(p) => write!(f, "{kind} {name} utilization {p}%"),
            Target::AverageValue(v) => write!(f, "{kind} {name} average {v}"),
            Target::Value(v) => write!(f, "{kind} {name} value {v}"),
        }
    }
}

/// The outcome of [`replica_count`] for one metric.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplicaCount {
    /// The replica count this metric asks for.
    pub replicas: u32,
    /// Measured over target, before missing or set-aside instances were accounted for.
    pub ratio: f64,
    /// The measured value: utilisation in percent, average per instance, or total.
    pub value: f64,
    /// How the count was reached, for a person.
    pub reason: String,
}

impl ReplicaCount {
    fn new(replicas: u32, ratio: f64, value: f64, reason: String) -> Self {
        Self {
            replicas,
            ratio,
            value,
            reason,
        }
    }
}

/// The replica count that `target` asks for given `observation`: the Kubernetes HPA
/// replica calculation (see the [module docs](self)).
///
/// # Errors
///
/// [`Error::Policy`] when the target does not fit the source (utilisation of a custom
/// metric, a non-positive target), when there are no instances to measure, when no counted
/// instance has a sample, when a counted instance has no CPU request for a utilisation
/// target, or when a whole-service metric was not sampled.
pub fn replica_count(
    observation: &Observation,
    target: &MetricTarget,
    tolerance: f64,
) -> Result<ReplicaCount> {
    let current = observation.current_replicas;
    match (&target.source, target.target) {
        (MetricSource::ResourceCpu, Target::Utilization(percent)) => {
            positive(target, percent)?;
            resource_utilization(observation, percent, tolerance)
        }
        (MetricSource::ResourceCpu, Target::AverageValue(millis)) => {
            let target_milli = quantize(positive(target, millis)?);
            plain(observation, cpu_millis, target_milli, true, tolerance, 1.0)
        }
        (MetricSource::Pods(name), Target::AverageValue(value)) => {
            let target_milli = quantize(positive(target, value)? * 1000.0);
            let value_of = |i: &InstanceSample| i.metric(name).map(|v| quantize(v * 1000.0));
            plain(
                observation,
                value_of,
                target_milli,
                false,
                tolerance,
                1000.0,
            )
        }
        (
            MetricSource::Object(name) | MetricSource::External(name),
            Target::Value(value) | Target::AverageValue(value),
        ) => {
            let target_milli = quantize(positive(target, value)? * 1000.0);
            let total = observation.service_metric(name).ok_or_else(|| {
                Error::Policy(format!("{target}: no whole-service value \"{name}\""))
            })?;
            let total_milli = quantize(total * 1000.0);
            if matches!(target.target, Target::Value(_)) {
                whole_value(observation, total_milli, target_milli, tolerance)
            } else {
                Ok(per_instance_value(
                    current,
                    total_milli,
                    target_milli,
                    tolerance,
                ))
            }
        }
        _ => Err(Error::Policy(format!(
            "{target}: utilization targets apply to CPU only, value targets to object and \
             external metrics only"
        ))),
    }
}

fn positive(target: &MetricTarget, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::Policy(format!(
            "{target}: the target must be positive"
        )))
    }
}

/// A value rounded to a whole number of milli-units, as a Kubernetes quantity holds it.
fn quantize(value: f64) -> i64 {
    value.round() as i64
}

/// `ceil(x)` as a replica count (negative and NaN give 0, as Go's conversion gives for the
/// values that reach it).
fn ceil_replicas(x: f64) -> u32 {
    x.ceil() as u32
}

fn within(ratio: f64, tolerance: f64) -> bool {
    (1.0 - ratio).abs() <= tolerance
}

/// The CPU sample of an instance in milli-cores.
fn cpu_millis(instance: &InstanceSample) -> Option<i64> {
    instance
        .metric(metric::CPU_MILLIS)
        .or_else(|| {
            let percent = instance.metric(metric::CPU_UTILIZATION)?;
            let request = instance.cpu_request_millis?;
            Some(percent * request as f64 / 100.0)
        })
        .map(quantize)
}

/// How the calculation sees each instance.
struct Groups<'a> {
    /// Instances whose samples count, with their values.
    counted: Vec<(&'a InstanceSample, i64)>,
    /// Pending instances and, for CPU, unready or initializing ones.
    set_aside: Vec<&'a InstanceSample>,
    /// Instances with no sample.
    missing: Vec<&'a InstanceSample>,
}

fn group(
    observation: &Observation,
    value_of: impl Fn(&InstanceSample) -> Option<i64>,
    cpu: bool,
) -> Groups<'_> {
    let mut groups = Groups {
        counted: Vec::new(),
        set_aside: Vec::new(),
        missing: Vec::new(),
    };
    for instance in &observation.instances {
        if instance.deleting || instance.phase == PodPhase::Failed {
            continue;
        }
        if instance.phase == PodPhase::Pending {
            groups.set_aside.push(instance);
            continue;
        }
        let Some(value) = value_of(instance) else {
            groups.missing.push(instance);
            continue;
        };
        if cpu && (!instance.ready || instance.cpu_initializing) {
            groups.set_aside.push(instance);
            continue;
        }
        groups.counted.push((instance, value));
    }
    groups
}

fn no_instances(observation: &Observation) -> Result<()> {
    if observation.instances.is_empty() {
        Err(Error::Policy(
            "no instances to measure while calculating the replica count".into(),
        ))
    } else {
        Ok(())
    }
}

fn request_of(instance: &InstanceSample) -> Result<i64> {
    instance
        .cpu_request_millis
        .map(|r| i64::try_from(r).unwrap_or(i64::MAX))
        .ok_or_else(|| {
            Error::Policy(format!(
                "missing CPU request for instance {}",
                instance.id.as_str()
            ))
        })
}

/// Whole-percent utilisation of `(usage, request)` pairs (Kubernetes truncates).
fn utilization(entries: &[(i64, i64)]) -> Result<i64> {
    let usage: i64 = entries.iter().map(|e| e.0).sum();
    let requests: i64 = entries.iter().map(|e| e.1).sum();
    if requests == 0 {
        return Err(Error::Policy(
            "no metrics returned matched known instances".into(),
        ));
    }
    Ok(usage * 100 / requests)
}

fn resource_utilization(
    observation: &Observation,
    target_percent: f64,
    tolerance: f64,
) -> Result<ReplicaCount> {
    let current = observation.current_replicas;
    no_instances(observation)?;
    let groups = group(observation, cpu_millis, true);
    if groups.counted.is_empty() {
        return Err(Error::Policy(
            "did not receive CPU samples for any ready instance".into(),
        ));
    }
    let mut entries = Vec::with_capacity(observation.instances.len());
    for (instance, usage) in &groups.counted {
        entries.push((*usage, request_of(instance)?));
    }
    let ready = entries.len();
    let util = utilization(&entries)?;
    let ratio = util as f64 / target_percent;
    let value = util as f64;
    let what = format!("CPU {util}% of request against {target_percent}%");

    let rebalance = !groups.set_aside.is_empty() && ratio > 1.0;
    if !rebalance && groups.missing.is_empty() {
        return Ok(from_ready(&what, ratio, value, current, ready, tolerance));
    }

    if !groups.missing.is_empty() {
        for instance in &groups.missing {
            let request = request_of(instance)?;
            if ratio < 1.0 {
                entries.push((request, request));
            } else if ratio > 1.0 {
                entries.push((0, request));
            }
        }
    }
    if rebalance {
        for instance in &groups.set_aside {
            entries.push((0, request_of(instance)?));
        }
    }
    let new_ratio = utilization(&entries)? as f64 / target_percent;
    let note = format!(
        "{} missing at {} and {} set aside{}: ratio {new_ratio:.3}",
        groups.missing.len(),
        if ratio < 1.0 { "100%" } else { "0%" },
        groups.set_aside.len(),
        if rebalance { " at 0%" } else { "" },
    );
    if recheck_keeps_current(ratio, new_ratio, tolerance) {
        return Ok(ReplicaCount::new(
            current,
            ratio,
            value,
            format!("{what}; {note} is within tolerance or changes direction, keeping {current}"),
        ));
    }
    let replicas = ceil_replicas(new_ratio * entries.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(ReplicaCount::new(
            current,
            ratio,
            value,
            format!(
                "{what}; {note} asks {replicas} over {} instances, the wrong way, keeping {current}",
                entries.len()
            ),
        ));
    }
    Ok(ReplicaCount::new(
        replicas,
        ratio,
        value,
        format!(
            "{what}; {note} over {} instances: {replicas}",
            entries.len()
        ),
    ))
}

/// `GetRawResourceReplicas` / `GetMetricReplicas`: an average per instance against a target.
fn plain(
    observation: &Observation,
    value_of: impl Fn(&InstanceSample) -> Option<i64>,
    target_milli: i64,
    cpu: bool,
    tolerance: f64,
    unit: f64,
) -> Result<ReplicaCount> {
    let current = observation.current_replicas;
    no_instances(observation)?;
    let groups = group(observation, value_of, cpu);
    if groups.counted.is_empty() {
        return Err(Error::Policy(
            "did not receive samples for any ready instance".into(),
        ));
    }
    let mut values: Vec<i64> = groups.counted.iter().map(|(_, v)| *v).collect();
    let ready = values.len();
    let average = |values: &[i64]| values.iter().sum::<i64>() / values.len() as i64;
    let avg = average(&values);
    let ratio = avg as f64 / target_milli as f64;
    let value = avg as f64 / unit;
    let what = format!(
        "average {value} per instance against {}",
        target_milli as f64 / unit
    );

    let rebalance = !groups.set_aside.is_empty() && ratio > 1.0;
    if !rebalance && groups.missing.is_empty() {
        return Ok(from_ready(&what, ratio, value, current, ready, tolerance));
    }

    let fill = if ratio < 1.0 { target_milli } else { 0 };
    values.extend(groups.missing.iter().map(|_| fill));
    if rebalance {
        values.extend(groups.set_aside.iter().map(|_| 0));
    }
    let new_ratio = average(&values) as f64 / target_milli as f64;
    let note = format!(
        "{} missing at {} and {} set aside{}: ratio {new_ratio:.3}",
        groups.missing.len(),
        if ratio < 1.0 { "the target" } else { "0" },
        groups.set_aside.len(),
        if rebalance { " at 0" } else { "" },
    );
    if recheck_keeps_current(ratio, new_ratio, tolerance) {
        return Ok(ReplicaCount::new(
            current,
            ratio,
            value,
            format!("{what}; {note} is within tolerance or changes direction, keeping {current}"),
        ));
    }
    let replicas = ceil_replicas(new_ratio * values.len() as f64);
    Ok(ReplicaCount::new(
        replicas,
        ratio,
        value,
        format!("{what}; {note} over {} instances: {replicas}", values.len()),
    ))
}

/// The count when every counted instance has a trusted sample: `current` within tolerance,
/// else the ready count scaled by the ratio.
fn from_ready(
    what: &str,
    ratio: f64,
    value: f64,
    current: u32,
    ready: usize,
    tolerance: f64,
) -> ReplicaCount {
    if within(ratio, tolerance) {
        return ReplicaCount::new(
            current,
            ratio,
            value,
            format!("{what}: within tolerance {tolerance}, keeping {current}"),
        );
    }
    let replicas = ceil_replicas(ratio * ready as f64);
    ReplicaCount::new(
        replicas,
        ratio,
        value,
        format!("{what} on {ready} ready instances: {replicas}"),
    )
}

/// After recomputing with missing and set-aside instances, whether the count stays: the new
/// ratio is within tolerance, or it points the other way than the first one did.
fn recheck_keeps_current(ratio: f64, new_ratio: f64, tolerance: f64) -> bool {
    within(new_ratio, tolerance)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
}

/// `GetObjectMetricReplicas` / `GetExternalMetricReplicas`: a total against a total.
fn whole_value(
    observation: &Observation,
    total_milli: i64,
    target_milli: i64,
    tolerance: f64,
) -> Result<ReplicaCount> {
    let current = observation.current_replicas;
    let ratio = total_milli as f64 / target_milli as f64;
    let value = total_milli as f64 / 1000.0;
    let what = format!("total {value} against {}", target_milli as f64 / 1000.0);
    if current == 0 {
        let replicas = ceil_replicas(ratio);
        return Ok(ReplicaCount::new(
            replicas,
            ratio,
            value,
            format!("{what} from zero: {replicas}"),
        ));
    }
    if within(ratio, tolerance) {
        return Ok(ReplicaCount::new(
            current,
            ratio,
            value,
            format!("{what}: within tolerance {tolerance}, keeping {current}"),
        ));
    }
    no_instances(observation)?;
    let ready = observation
        .instances
        .iter()
        .filter(|i| i.phase == PodPhase::Running && i.ready)
        .count();
    let replicas = ceil_replicas(ratio * ready as f64);
    Ok(ReplicaCount::new(
        replicas,
        ratio,
        value,
        format!("{what} on {ready} ready instances: {replicas}"),
    ))
}

/// `GetObjectPerPodMetricReplicas` / `GetExternalPerPodMetricReplicas`: a total against a
/// target per instance.
fn per_instance_value(
    current: u32,
    total_milli: i64,
    target_milli: i64,
    tolerance: f64,
) -> ReplicaCount {
    let ratio = total_milli as f64 / (target_milli as f64 * f64::from(current));
    let value = total_milli as f64 / 1000.0;
    let what = format!(
        "total {value} against {} per instance",
        target_milli as f64 / 1000.0
    );
    if within(ratio, tolerance) {
        return ReplicaCount::new(
            current,
            ratio,
            value,
            format!("{what}: within tolerance {tolerance}, keeping {current}"),
        );
    }
    let replicas = ceil_replicas(total_milli as f64 / target_milli as f64);
    ReplicaCount::new(replicas, ratio, value, format!("{what}: {replicas}"))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use eas_core::resources::InstanceId;

    use super::*;

    fn cpu_pod(i: usize, request: u64, usage: Option<f64>) -> InstanceSample {
        let s =
            InstanceSample::new(InstanceId::new(format!("p{i}"))).with_cpu_request_millis(request);
        match usage {
            Some(u) => s.with_metric(metric::CPU_MILLIS, u),
            None => s,
        }
    }

    fn obs(current: u32, pods: Vec<InstanceSample>) -> Observation {
        Observation::new(SystemTime::UNIX_EPOCH, current).with_instances(pods)
    }

    fn count(o: &Observation, t: &MetricTarget) -> u32 {
        replica_count(o, t, DEFAULT_TOLERANCE)
            .expect("replica count")
            .replicas
    }

    #[test]
    fn cpu_should_scale_up_by_the_utilization_ratio() {
        let o = obs(
            3,
            vec![
                cpu_pod(0, 1000, Some(300.0)),
                cpu_pod(1, 1000, Some(500.0)),
                cpu_pod(2, 1000, Some(700.0)),
            ],
        );
        let c = replica_count(&o, &MetricTarget::cpu_utilization(30.0), 0.1).expect("count");
        assert_eq!(c.replicas, 5);
        assert!((c.value - 50.0).abs() < 1e-9);
    }

    #[test]
    fn cpu_should_count_missing_pods_as_zero_when_scaling_up() {
        // TestReplicaCalcMissingMetricsUnreadyScaleUp: 1 unready, 1 missing, 1 at 200%.
        let o = obs(
            3,
            vec![
                cpu_pod(0, 1000, Some(100.0)).with_ready(false),
                cpu_pod(1, 1000, Some(2000.0)),
                cpu_pod(2, 1000, None),
            ],
        );
        assert_eq!(count(&o, &MetricTarget::cpu_utilization(50.0)), 4);
    }

    #[test]
    fn cpu_should_keep_current_when_missing_pods_flip_the_direction() {
        // TestReplicaCalcMissingMetricsUnreadyChange.
        let o = obs(
            3,
            vec![
                cpu_pod(0, 1000, Some(100.0)).with_ready(false),
                cpu_pod(1, 1000, Some(450.0)),
                cpu_pod(2, 1000, None),
            ],
        );
        assert_eq!(count(&o, &MetricTarget::cpu_utilization(50.0)), 3);
    }

    #[test]
    fn cpu_should_set_aside_initializing_pods() {
        // TestReplicaCalcScaleDownIgnoreHotCpuPods.
        let usage = [100.0, 300.0, 500.0, 250.0, 250.0];
        let pods = usage
            .iter()
            .enumerate()
            .map(|(i, u)| cpu_pod(i, 1000, Some(*u)).with_cpu_initializing(i >= 3))
            .collect();
        assert_eq!(
            count(&obs(5, pods), &MetricTarget::cpu_utilization(50.0)),
            2
        );
    }

    #[test]
    fn cpu_should_derive_usage_from_percent_of_request() {
        let pod = |i: usize| {
            InstanceSample::new(InstanceId::new(format!("p{i}")))
                .with_cpu_request_millis(2000)
                .with_metric(metric::CPU_UTILIZATION, 90.0)
        };
        let o = obs(2, vec![pod(0), pod(1)]);
        assert_eq!(count(&o, &MetricTarget::cpu_utilization(45.0)), 4);
    }

    #[test]
    fn cpu_utilization_should_fail_without_requests() {
        let pod =
            InstanceSample::new(InstanceId::from("p0")).with_metric(metric::CPU_MILLIS, 200.0);
        let err = replica_count(
            &obs(1, vec![pod]),
            &MetricTarget::cpu_utilization(100.0),
            0.1,
        );
        assert!(err.is_err());
    }

    #[test]
    fn pods_metric_should_not_set_aside_unready_pods() {
        // TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown.
        let levels = [50.0, 15.0, 30.0];
        let pods = levels
            .iter()
            .enumerate()
            .map(|(i, v)| {
                InstanceSample::new(InstanceId::new(format!("p{i}")))
                    .with_metric("qps", *v)
                    .with_ready(i == 1)
                    .with_cpu_initializing(i != 1)
            })
            .collect();
        assert_eq!(
            count(&obs(3, pods), &MetricTarget::pods_average("qps", 15.0)),
            7
        );
    }

    #[test]
    fn object_value_should_scale_by_ready_pods() {
        // TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods.
        let pods = (0..3)
            .map(|i| InstanceSample::new(InstanceId::new(format!("p{i}"))).with_ready(i == 1))
            .collect();
        let o = obs(3, pods).with_service_metric("qps", 50.0);
        assert_eq!(count(&o, &MetricTarget::object_value("qps", 10.0)), 5);
    }

    #[test]
    fn per_instance_targets_should_respect_tolerance() {
        // TestReplicaCalcTolerancePerPodCMObject and TestReplicaCalcScaleUpCMPerPodObject.
        let o = obs(4, vec![]).with_service_metric("qps", 20.166);
        assert_eq!(count(&o, &MetricTarget::object_average("qps", 5.0)), 4);
        let o = obs(3, vec![]).with_service_metric("qps", 20.0);
        assert_eq!(count(&o, &MetricTarget::object_average("qps", 5.0)), 4);
    }

    #[test]
    fn external_value_should_scale_from_zero_by_the_ratio() {
        let o = obs(0, vec![]).with_service_metric("backlog", 25.0);
        assert_eq!(count(&o, &MetricTarget::external_value("backlog", 10.0)), 3);
    }

    #[test]
    fn mismatched_targets_should_be_policy_errors() {
        let o = obs(1, vec![]).with_service_metric("x", 1.0);
        for t in [
            MetricTarget::new(MetricSource::Pods("x".into()), Target::Utilization(50.0)),
            MetricTarget::new(MetricSource::ResourceCpu, Target::Value(1.0)),
            MetricTarget::external_value("x", 0.0),
            MetricTarget::external_value("missing", 1.0),
        ] {
            assert!(
                matches!(replica_count(&o, &t, 0.1), Err(Error::Policy(_))),
                "{t}"
            );
        }
    }
}
