//! [`Autoscaler`]: how many instances a service should have, and why.
//!
//! The controller samples the service periodically and hands the autoscaler an
//! [`Observation`]: per-instance samples ([`InstanceSample`]: phase, readiness, CPU request
//! and per-instance metrics such as CPU usage, QPS or GPU utilisation) and whole-service
//! values (total QPS, queue backlog, custom or external metrics). The autoscaler answers with a
//! [`Recommendation`]. It is pure but stateful across calls (stabilisation windows, cooldowns,
//! schedules), and reads time only from [`Observation::at`].
//!
//! The samples carry everything the Kubernetes HPA replica calculation looks at (unready,
//! pending, failed and deleting pods, pods whose CPU is still initializing, missing metrics),
//! so an HPA-compatible policy and the EAS strategies (QPS per instance, CPU, GPU, backlog)
//! can both be written against it. Metric names are in [`metric`].
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::Autoscaler;
//! use eas_core::autoscaler::{metric, InstanceSample, Observation, Recommendation};
//! use eas_core::resources::InstanceId;
//!
//! /// Always asks for the same number of replicas.
//! #[derive(Debug)]
//! struct Fixed(u32);
//!
//! impl Autoscaler for Fixed {
//!     fn recommend(&mut self, observation: &Observation) -> Recommendation {
//!         let now = observation.current_replicas;
//!         Recommendation::new(self.0, format!("fixed at {} (now {now})", self.0))
//!     }
//! }
//!
//! let sample = |id: &str, qps: f64| {
//!     InstanceSample::new(InstanceId::from(id)).with_metric(metric::QPS, qps)
//! };
//! let observation = Observation::new(SystemTime::UNIX_EPOCH, 2)
//!     .with_instance(sample("demo-0", 40.0))
//!     .with_instance(sample("demo-1", 60.0))
//!     .with_service_metric(metric::QUEUE_BACKLOG, 0.0);
//! assert_eq!(observation.instance_metric_sum(metric::QPS), 100.0);
//! assert_eq!(Fixed(3).recommend(&observation).replicas, 3);
//! ```

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::resources::InstanceId;

/// Metric names used in [`InstanceSample::metrics`] and [`Observation::service_metrics`].
///
/// Custom metrics use any other name.
pub mod metric {
    /// Requests per second (per instance, or for the whole service).
    pub const QPS: &str = "qps";
    /// CPU in use, in milli-cores (per instance).
    pub const CPU_MILLIS: &str = "cpu_millis";
    /// CPU in use, in percent of the instance's CPU request (per instance).
    pub const CPU_UTILIZATION: &str = "cpu_util";
    /// GPU utilisation in percent (per instance).
    pub const GPU_UTILIZATION: &str = "gpu_util";
    /// Requests waiting in the service's queue (whole service).
    pub const QUEUE_BACKLOG: &str = "queue_backlog";
}

/// A scaling policy: from observations to a desired replica count.
pub trait Autoscaler: Send + std::fmt::Debug {
    /// The desired replica count given this observation (and the ones before it).
    fn recommend(&mut self, observation: &Observation) -> Recommendation;
}

/// The lifecycle phase of an instance, as Kubernetes names pod phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodPhase {
    /// Accepted but not running yet (unscheduled, pulling, mounting).
    Pending,
    /// Running.
    Running,
    /// Exited successfully.
    Succeeded,
    /// Exited with an error.
    Failed,
    /// The state could not be read.
    Unknown,
}

/// One instance at one sampling time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InstanceSample {
    /// The instance.
    pub id: InstanceId,
    /// Its phase.
    pub phase: PodPhase,
    /// Whether it passes its readiness check.
    pub ready: bool,
    /// Whether it is being deleted (Kubernetes: deletion timestamp set).
    pub deleting: bool,
    /// When it started running, if it has.
    pub started_at: Option<SystemTime>,
    /// Its CPU request in milli-cores, if it has one (utilisation targets need it).
    pub cpu_request_millis: Option<u64>,
    /// Per-instance metric values, by name ([`metric`]); a missing name means no sample.
    pub metrics: BTreeMap<String, f64>,
    /// Its CPU sample is not trusted yet: it started within the CPU initialization period
    /// (Kubernetes: 5 minutes) and its usage may be a start-up spike.
    pub cpu_initializing: bool,
}

impl InstanceSample {
    /// A running, ready instance that is not being deleted, with no metrics.
    #[must_use]
    pub fn new(id: InstanceId) -> Self {
        Self {
            id,
            phase: PodPhase::Running,
            ready: true,
            deleting: false,
            started_at: None,
            cpu_request_millis: None,
            metrics: BTreeMap::new(),
            cpu_initializing: false,
        }
    }

    /// The same in `phase`.
    #[must_use]
    pub fn with_phase(mut self, phase: PodPhase) -> Self {
        self.phase = phase;
        self
    }

    /// The same, ready or not.
    #[must_use]
    pub fn with_ready(mut self, ready: bool) -> Self {
        self.ready = ready;
        self
    }

    /// The same, being deleted or not.
    #[must_use]
    pub fn with_deleting(mut self, deleting: bool) -> Self {
        self.deleting = deleting;
        self
    }

    /// The same, started at `at`.
    #[must_use]
    pub fn with_started_at(mut self, at: SystemTime) -> Self {
        self.started_at = Some(at);
        self
    }

    /// The same with a CPU request in milli-cores.
    #[must_use]
    pub fn with_cpu_request_millis(mut self, millis: u64) -> Self {
        self.cpu_request_millis = Some(millis);
        self
    }

    /// The same with one more metric value.
    #[must_use]
    pub fn with_metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(name.into(), value);
        self
    }

    /// The same with its CPU sample trusted or not.
    #[must_use]
    pub fn with_cpu_initializing(mut self, initializing: bool) -> Self {
        self.cpu_initializing = initializing;
        self
    }

    /// The value of metric `name`, if sampled.
    #[must_use]
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }
}

/// What the controller saw of one service at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Observation {
    /// When it was sampled.
    pub at: SystemTime,
    /// The replica count currently asked for (Kubernetes: the scale's `spec.replicas`); may
    /// differ from the number of samples during a rollout.
    pub current_replicas: u32,
    /// One sample per existing instance, in any phase.
    pub instances: Vec<InstanceSample>,
    /// Whole-service values by name: total QPS, queue backlog, object or external metrics.
    pub service_metrics: BTreeMap<String, f64>,
}

impl Observation {
    /// An observation with no samples.
    #[must_use]
    pub const fn new(at: SystemTime, current_replicas: u32) -> Self {
        Self {
            at,
            current_replicas,
            instances: Vec::new(),
            service_metrics: BTreeMap::new(),
        }
    }

    /// The same with one more instance sample.
    #[must_use]
    pub fn with_instance(mut self, sample: InstanceSample) -> Self {
        self.instances.push(sample);
        self
    }

    /// The same with these instance samples (replacing any before).
    #[must_use]
    pub fn with_instances(mut self, samples: Vec<InstanceSample>) -> Self {
        self.instances = samples;
        self
    }

    /// The same with one more whole-service value.
    #[must_use]
    pub fn with_service_metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.service_metrics.insert(name.into(), value);
        self
    }

    /// The whole-service value `name`, if sampled.
    #[must_use]
    pub fn service_metric(&self, name: &str) -> Option<f64> {
        self.service_metrics.get(name).copied()
    }

    /// The sum of per-instance metric `name` over the instances that have it.
    #[must_use]
    pub fn instance_metric_sum(&self, name: &str) -> f64 {
        self.instances.iter().filter_map(|i| i.metric(name)).sum()
    }

    /// Instances that are running, ready and not being deleted.
    pub fn ready_instances(&self) -> impl Iterator<Item = &InstanceSample> {
        self.instances
            .iter()
            .filter(|i| i.phase == PodPhase::Running && i.ready && !i.deleting)
    }
}

/// The desired replica count and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// How many instances the service should have.
    pub replicas: u32,
    /// Why, for a person (which metric, which rule, which window).
    pub reason: String,
}

impl Recommendation {
    /// A recommendation.
    #[must_use]
    pub fn new(replicas: u32, reason: impl Into<String>) -> Self {
        Self {
            replicas,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pod(i: usize, request: u64, usage: Option<f64>) -> InstanceSample {
        let s =
            InstanceSample::new(InstanceId::new(format!("p{i}"))).with_cpu_request_millis(request);
        match usage {
            Some(u) => s.with_metric(metric::CPU_MILLIS, u),
            None => s,
        }
    }

    #[test]
    fn observation_should_express_an_hpa_cpu_case_with_unready_failed_and_missing_pods() {
        // TestReplicaCalcScaleUpIgnoresFailedPods plus an unready pod and a deleting pod.
        let obs = Observation::new(SystemTime::UNIX_EPOCH, 2)
            .with_instance(pod(0, 1_000, Some(500.0)))
            .with_instance(pod(1, 1_000, Some(700.0)))
            .with_instance(
                pod(2, 1_000, None)
                    .with_phase(PodPhase::Failed)
                    .with_ready(false),
            )
            .with_instance(
                pod(3, 1_000, Some(0.0))
                    .with_ready(false)
                    .with_cpu_initializing(true),
            )
            .with_instance(pod(4, 1_000, Some(900.0)).with_deleting(true));
        let ready: Vec<_> = obs.ready_instances().map(|i| i.id.as_str()).collect();
        assert_eq!(ready, ["p0", "p1"]);
        let usage: f64 = obs
            .ready_instances()
            .filter_map(|i| i.metric(metric::CPU_MILLIS))
            .sum();
        let requests: u64 = obs
            .ready_instances()
            .filter_map(|i| i.cpu_request_millis)
            .sum();
        assert!((usage / requests as f64 - 0.6).abs() < 1e-9);
        assert_eq!(
            obs.instances[2].metric(metric::CPU_MILLIS),
            None,
            "missing metric"
        );
    }

    #[test]
    fn observation_should_carry_whole_service_values() {
        let obs = Observation::new(SystemTime::UNIX_EPOCH + Duration::from_secs(15), 3)
            .with_service_metric("external_qps", 8.6)
            .with_service_metric(metric::QUEUE_BACKLOG, 12.0);
        assert_eq!(obs.service_metric("external_qps"), Some(8.6));
        assert_eq!(obs.service_metric(metric::QPS), None);
        assert!(obs.instance_metric_sum(metric::QPS).abs() < f64::EPSILON);
    }

    #[test]
    fn instance_sample_should_default_to_running_and_ready() {
        let s = InstanceSample::new(InstanceId::from("x"));
        assert_eq!(s.phase, PodPhase::Running);
        assert!(s.ready && !s.deleting && !s.cpu_initializing);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(3);
        assert_eq!(s.with_started_at(at).started_at, Some(at));
    }

    #[test]
    fn recommendation_should_round_trip_through_json() {
        let r = Recommendation::new(4, "qps 20 > 15 per instance");
        let back: Recommendation =
            serde_json::from_str(&serde_json::to_string(&r).expect("serializes")).expect("parses");
        assert_eq!(back, r);
    }
}
