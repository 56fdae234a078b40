//! `autoscaler`: replica bounds, metric strategies and scheduled scaling.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{CronExpr, TimeZone};

/// Horizontal auto scaling (`autoscaler`).
///
/// Each strategy recommends `ceil(current × observed / target)` replicas (queue backlog:
/// `ceil(backlog / target)`); the largest recommendation wins, within the bounds in force:
/// `min`/`max`, or those of the latest scheduled entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AutoscalerSpec {
    /// The fewest replicas; 0 allows scaling to zero.
    pub min: u32,

    /// The most replicas.
    pub max: u32,

    /// Metric targets.
    #[serde(default)]
    pub strategies: Strategies,

    /// How fast to scale up and down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<Behavior>,

    /// Scheduled scaling: from each occurrence of its cron expression on, an entry sets the
    /// bounds (or a fixed count) until the next entry's occurrence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduledScaling>,
}

impl AutoscalerSpec {
    /// Bounds with no strategy yet: add targets to `strategies` or a schedule.
    #[must_use]
    pub fn new(min: u32, max: u32) -> Self {
        Self {
            min,
            max,
            strategies: Strategies::default(),
            behavior: None,
            schedules: Vec::new(),
        }
    }

    /// This autoscaler with a QPS-per-instance target.
    #[must_use]
    pub fn with_qps(mut self, per_instance: f64) -> Self {
        self.strategies.qps = Some(per_instance);
        self
    }

    /// This autoscaler with a scheduled entry.
    #[must_use]
    pub fn with_schedule(mut self, entry: ScheduledScaling) -> Self {
        self.schedules.push(entry);
        self
    }
}

/// `autoscaler.strategies`: the targets, per instance, that trigger scaling.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Strategies {
    /// Queries per second per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps: Option<f64>,

    /// CPU utilisation per instance, in percent of its request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,

    /// GPU utilisation per instance, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<f64>,

    /// Queue backlog (queued plus in-flight requests) per instance, for async services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<f64>,

    /// Custom metrics by name, each with its per-instance target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, f64>,
}

impl Strategies {
    /// Every target as `(metric name, target)`, built-in metrics first; custom metrics keep
    /// their own names.
    #[must_use]
    pub fn targets(&self) -> Vec<(&str, f64)> {
        let builtin = [
            ("qps", self.qps),
            ("cpu", self.cpu),
            ("gpu", self.gpu),
            ("queue", self.queue),
        ];
        builtin
            .into_iter()
            .filter_map(|(name, target)| target.map(|t| (name, t)))
            .chain(
                self.custom
                    .iter()
                    .map(|(name, target)| (name.as_str(), *target)),
            )
            .collect()
    }
}

/// `autoscaler.behavior`: stabilization windows, as Kubernetes HPA defines them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Behavior {
    /// Scale-up rules. Default window: 0 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScaleRules>,

    /// Scale-down rules. Default window: 300 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScaleRules>,
}

/// Rules for one direction of scaling.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScaleRules {
    /// Recommendations over this many past seconds are considered before scaling, to
    /// avoid flapping. At most 3600 (an hour), as in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<u32>,
}

/// One entry of `autoscaler.schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScheduledScaling {
    /// When the entry takes effect: a cron expression (5 fields, or 6 with seconds first).
    pub schedule: CronExpr,

    /// The time zone of `schedule`. Default: UTC.
    #[serde(default)]
    pub timezone: TimeZone,

    /// The fewest replicas from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,

    /// The most replicas from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,

    /// A fixed number of replicas from then on (instead of `min`/`max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

impl ScheduledScaling {
    /// An entry that fixes the replica count from each occurrence of `schedule` (UTC) on.
    #[must_use]
    pub fn fixed(schedule: CronExpr, replicas: u32) -> Self {
        Self {
            schedule,
            timezone: TimeZone::UTC,
            min: None,
            max: None,
            replicas: Some(replicas),
        }
    }

    /// An entry that sets the bounds from each occurrence of `schedule` (UTC) on.
    #[must_use]
    pub fn bounds(schedule: CronExpr, min: Option<u32>, max: Option<u32>) -> Self {
        Self {
            schedule,
            timezone: TimeZone::UTC,
            min,
            max,
            replicas: None,
        }
    }

    /// This entry in another time zone.
    #[must_use]
    pub fn in_timezone(mut self, timezone: TimeZone) -> Self {
        self.timezone = timezone;
        self
    }
}
