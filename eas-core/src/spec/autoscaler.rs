//! `autoscaler`: replica bounds, metric strategies and scheduled scaling.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{CronExpr, TimeZone};

/// Horizontal auto scaling (`autoscaler`).
///
/// Each strategy recommends `ceil(current × observed / target)` replicas (queue backlog:
/// `ceil(backlog / target)`); the largest recommendation wins, within the bounds in force:
/// `min`/`max`, or those of the latest scheduled entry. `algorithm` (an eas extension)
/// chooses the policy that reads the block: the EAS autoscaler (default) or the Kubernetes
/// HPA.
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

    /// Which autoscaler reads this block: `eas` (default: the EAS strategies, scaling to and
    /// from zero) or `hpa` (the Kubernetes Horizontal Pod Autoscaler on the same targets).
    /// An eas extension, not in the EAS reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<AutoscalerAlgorithm>,
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
            algorithm: None,
        }
    }

    /// The algorithm in force: `algorithm`, or `eas` when unset.
    ///
    /// ```
    /// use eas_core::spec::ServiceSpec;
    ///
    /// let spec = ServiceSpec::from_json_str(r#"{
    ///     "metadata": {"name": "demo", "instance": 1},
    ///     "containers": [{"image": "i", "command": "run"}],
    ///     "autoscaler": {"min": 1, "max": 4, "strategies": {"qps": 10}, "algorithm": "hpa"}
    /// }"#).expect("valid");
    /// let algorithm = spec.autoscaler.expect("present").algorithm();
    /// assert_eq!(algorithm.as_str(), "hpa");
    /// assert_eq!(algorithm, "hpa".parse().expect("known"));
    /// ```
    #[must_use]
    pub fn algorithm(&self) -> AutoscalerAlgorithm {
        self.algorithm.unwrap_or_default()
    }

    /// This autoscaler read by `algorithm`.
    #[must_use]
    pub const fn with_algorithm(mut self, algorithm: AutoscalerAlgorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
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

/// `autoscaler.algorithm`: which autoscaler reads the block. An eas extension, not in the
/// EAS reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AutoscalerAlgorithm {
    /// The EAS autoscaler: each strategy's target, the largest count wins, with the HPA's
    /// tolerance and behaviour; scales to zero without load (`min` 0) and from zero on load.
    #[default]
    Eas,
    /// The Kubernetes Horizontal Pod Autoscaler: each strategy as an HPA metric target
    /// (tolerance 0.1 and the HPA's default behaviour unless `behavior` overrides it).
    Hpa,
}

impl AutoscalerAlgorithm {
    /// Every algorithm, in the order they are documented.
    pub const ALL: [Self; 2] = [Self::Eas, Self::Hpa];

    /// Its name in a spec: `eas` or `hpa`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Eas => "eas",
            Self::Hpa => "hpa",
        }
    }
}

impl std::fmt::Display for AutoscalerAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AutoscalerAlgorithm {
    type Err = String;

    /// `eas` or `hpa`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown autoscaler algorithm `{s}`; expected eas or hpa"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ServiceSpec;

    fn read(autoscaler: &str) -> Result<ServiceSpec, Vec<String>> {
        ServiceSpec::from_json_str(&format!(
            r#"{{"metadata": {{"name": "demo", "instance": 1}},
                "containers": [{{"image": "i", "command": "run"}}],
                "autoscaler": {autoscaler}}}"#
        ))
        .map_err(|errors| errors.errors().iter().map(ToString::to_string).collect())
    }

    #[test]
    fn algorithm_should_default_to_eas_and_read_hpa() {
        // (block, algorithm field, algorithm in force)
        let cases = [
            (
                r#"{"min": 1, "max": 2, "strategies": {"qps": 5}}"#,
                None,
                "eas",
            ),
            (
                r#"{"min": 1, "max": 2, "strategies": {"qps": 5}, "algorithm": "eas"}"#,
                Some(AutoscalerAlgorithm::Eas),
                "eas",
            ),
            (
                r#"{"min": 1, "max": 2, "strategies": {"qps": 5}, "algorithm": "hpa"}"#,
                Some(AutoscalerAlgorithm::Hpa),
                "hpa",
            ),
        ];
        for (block, field, in_force) in cases {
            let spec = read(block).unwrap_or_else(|e| panic!("{block}: {e:?}"));
            let autoscaler = spec.autoscaler.expect("present");
            assert_eq!(autoscaler.algorithm, field, "{block}");
            assert_eq!(autoscaler.algorithm().to_string(), in_force, "{block}");
        }
    }

    #[test]
    fn unknown_algorithms_should_be_refused_naming_the_field() {
        for value in [r#""keda""#, r#""HPA""#, "1"] {
            let block = format!(
                r#"{{"min": 1, "max": 2, "strategies": {{"qps": 5}}, "algorithm": {value}}}"#
            );
            let errors = read(&block).expect_err("refused");
            assert!(
                errors.iter().any(|e| e.starts_with("autoscaler.algorithm")),
                "{value}: {errors:?}"
            );
        }
    }

    #[test]
    fn algorithm_should_round_trip_and_parse_by_name() {
        let spec = AutoscalerSpec::new(1, 2).with_algorithm(AutoscalerAlgorithm::Hpa);
        let json = serde_json::to_value(&spec).expect("serializes");
        assert_eq!(json["algorithm"], "hpa");
        let unset = serde_json::to_value(AutoscalerSpec::new(1, 2)).expect("serializes");
        assert!(unset.get("algorithm").is_none(), "left out when unset");
        for algorithm in AutoscalerAlgorithm::ALL {
            assert_eq!(algorithm.as_str().parse(), Ok(algorithm));
        }
        assert!("keda".parse::<AutoscalerAlgorithm>().is_err());
    }
}
