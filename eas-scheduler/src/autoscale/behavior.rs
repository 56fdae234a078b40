//! Scaling behaviour: stabilisation windows and rate policies, as Kubernetes HPA
//! `spec.behavior` defines them.
//!
//! A recommendation first goes through the stabilisation windows (scaling up takes the
//! lowest recommendation of the scale-up window, scaling down the highest of the scale-down
//! window), then through the rate policies (how many replicas may be added or removed per
//! period, given the scale events of that period), then within `[min, max]`.
//!
//! Defaults, as in `pkg/apis/autoscaling/v2/defaults.go`: scale up with no stabilisation,
//! by at most `max(4 pods, 100 %)` per 15 s; scale down after a 300 s window, by at most
//! 100 % per 15 s.
//!
//! ```
//! use std::time::Duration;
//!
//! use eas_core::spec::Behavior;
//! use eas_scheduler::autoscale::{HpaBehavior, ScalingPolicy, SelectPolicy};
//!
//! let behavior = HpaBehavior::default();
//! assert_eq!(behavior.scale_down.stabilization_window, Duration::from_secs(300));
//! assert_eq!(behavior.scale_up.select, SelectPolicy::Max);
//! assert_eq!(behavior.scale_up.policies[0], ScalingPolicy::pods(4, 15));
//! assert_eq!(HpaBehavior::from_spec(&Behavior::default()), behavior);
//! ```

use std::time::{Duration, SystemTime};

use eas_core::spec::Behavior;

/// One rate policy: how much may change within a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScalingPolicy {
    /// At most `value` instances per `period`.
    Pods {
        /// Instances.
        value: u32,
        /// The period.
        period: Duration,
    },
    /// At most `value` percent of the instances at the start of the period, per `period`.
    Percent {
        /// Percent.
        value: u32,
        /// The period.
        period: Duration,
    },
}

impl ScalingPolicy {
    /// At most `value` instances per `period_seconds`.
    #[must_use]
    pub const fn pods(value: u32, period_seconds: u64) -> Self {
        Self::Pods {
            value,
            period: Duration::from_secs(period_seconds),
        }
    }

    /// At most `value` percent per `period_seconds`.
    #[must_use]
    pub const fn percent(value: u32, period_seconds: u64) -> Self {
        Self::Percent {
            value,
            period: Duration::from_secs(period_seconds),
        }
    }

    /// The policy's period.
    #[must_use]
    pub const fn period(&self) -> Duration {
        match self {
            Self::Pods { period, .. } | Self::Percent { period, .. } => *period,
        }
    }
}

/// How several policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SelectPolicy {
    /// The policy that allows the largest change.
    #[default]
    Max,
    /// The policy that allows the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// The rules for one direction of scaling.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScalingRules {
    /// Recommendations within this past window are considered before scaling.
    pub stabilization_window: Duration,
    /// How the policies combine.
    pub select: SelectPolicy,
    /// The rate policies.
    pub policies: Vec<ScalingPolicy>,
}

impl ScalingRules {
    /// Kubernetes' scale-up default: no window; `max(4 pods, 100 %)` per 15 s.
    #[must_use]
    pub fn default_scale_up() -> Self {
        Self {
            stabilization_window: Duration::ZERO,
            select: SelectPolicy::Max,
            policies: vec![ScalingPolicy::pods(4, 15), ScalingPolicy::percent(100, 15)],
        }
    }

    /// Kubernetes' scale-down default: a 300 s window; 100 % per 15 s.
    #[must_use]
    pub fn default_scale_down() -> Self {
        Self {
            stabilization_window: Duration::from_secs(300),
            select: SelectPolicy::Max,
            policies: vec![ScalingPolicy::percent(100, 15)],
        }
    }

    /// These rules with another stabilisation window.
    #[must_use]
    pub const fn with_stabilization_window(mut self, window: Duration) -> Self {
        self.stabilization_window = window;
        self
    }

    /// These rules with another way of combining policies.
    #[must_use]
    pub const fn with_select(mut self, select: SelectPolicy) -> Self {
        self.select = select;
        self
    }

    /// These rules with these policies (replacing the ones before).
    #[must_use]
    pub fn with_policies(mut self, policies: Vec<ScalingPolicy>) -> Self {
        self.policies = policies;
        self
    }

    fn longest_period(&self) -> Duration {
        self.policies
            .iter()
            .map(ScalingPolicy::period)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// Scale-up and scale-down rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HpaBehavior {
    /// Rules for scaling up.
    pub scale_up: ScalingRules,
    /// Rules for scaling down.
    pub scale_down: ScalingRules,
}

impl Default for HpaBehavior {
    fn default() -> Self {
        Self {
            scale_up: ScalingRules::default_scale_up(),
            scale_down: ScalingRules::default_scale_down(),
        }
    }
}

impl HpaBehavior {
    /// The defaults with the windows that `autoscaler.behavior` sets.
    #[must_use]
    pub fn from_spec(spec: &Behavior) -> Self {
        let mut behavior = Self::default();
        let window = |rules: &Option<eas_core::spec::ScaleRules>| {
            rules
                .as_ref()
                .and_then(|r| r.stabilization_window_seconds)
                .map(|s| Duration::from_secs(u64::from(s)))
        };
        if let Some(w) = window(&spec.scale_up) {
            behavior.scale_up.stabilization_window = w;
        }
        if let Some(w) = window(&spec.scale_down) {
            behavior.scale_down.stabilization_window = w;
        }
        behavior
    }

    /// This behaviour with other scale-up rules.
    #[must_use]
    pub fn with_scale_up(mut self, rules: ScalingRules) -> Self {
        self.scale_up = rules;
        self
    }

    /// This behaviour with other scale-down rules.
    #[must_use]
    pub fn with_scale_down(mut self, rules: ScalingRules) -> Self {
        self.scale_down = rules;
        self
    }
}

/// What the behaviour remembers between calls: past recommendations and scale events.
#[derive(Debug, Clone, Default)]
pub(crate) struct BehaviorState {
    started: bool,
    recommendations: Vec<(SystemTime, u32)>,
    scale_up_events: Vec<(SystemTime, u32)>,
    scale_down_events: Vec<(SystemTime, u32)>,
}

/// `at - window`, or `None` when that is before anything a `SystemTime` holds.
fn cutoff(at: SystemTime, window: Duration) -> Option<SystemTime> {
    at.checked_sub(window)
}

/// Whether `t` is strictly after `cutoff` (everything is, when there is no cutoff).
fn after(t: SystemTime, cutoff: Option<SystemTime>) -> bool {
    cutoff.is_none_or(|c| t > c)
}

impl BehaviorState {
    /// The first time the autoscaler runs, the current count counts as a recommendation, so
    /// a fresh autoscaler does not scale down before a full window has passed.
    pub(crate) fn record_initial(&mut self, at: SystemTime, current: u32) {
        if !self.started {
            self.started = true;
            self.recommendations.push((at, current));
        }
    }

    /// `desired` after the stabilisation windows, and why; records `desired`.
    pub(crate) fn stabilize(
        &mut self,
        behavior: &HpaBehavior,
        at: SystemTime,
        current: u32,
        desired: u32,
    ) -> (u32, Option<String>) {
        let up_cutoff = cutoff(at, behavior.scale_up.stabilization_window);
        let down_cutoff = cutoff(at, behavior.scale_down.stabilization_window);
        let mut up = desired;
        let mut down = desired;
        for &(t, r) in &self.recommendations {
            if after(t, up_cutoff) {
                up = up.min(r);
            }
            if after(t, down_cutoff) {
                down = down.max(r);
            }
        }
        let stabilized = current.max(up).min(down);
        self.recommendations
            .retain(|&(t, _)| after(t, up_cutoff) || after(t, down_cutoff));
        self.recommendations.push((at, desired));
        let note = if stabilized == desired {
            None
        } else if desired > current {
            Some(format!(
                "scale-up stabilized at {stabilized}: the lowest recommendation in the last {}s",
                behavior.scale_up.stabilization_window.as_secs()
            ))
        } else {
            Some(format!(
                "scale-down stabilized at {stabilized}: the highest recommendation in the last {}s",
                behavior.scale_down.stabilization_window.as_secs()
            ))
        };
        (stabilized, note)
    }

    fn change_within(events: &[(SystemTime, u32)], at: SystemTime, period: Duration) -> i64 {
        let c = cutoff(at, period);
        events
            .iter()
            .filter(|(t, _)| after(*t, c))
            .map(|(_, n)| i64::from(*n))
            .sum()
    }

    fn period_start(&self, at: SystemTime, current: u32, period: Duration) -> i64 {
        i64::from(current) - Self::change_within(&self.scale_up_events, at, period)
            + Self::change_within(&self.scale_down_events, at, period)
    }

    fn scale_up_limit(&self, rules: &ScalingRules, at: SystemTime, current: u32) -> i64 {
        let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select {
            SelectPolicy::Disabled => return i64::from(current),
            SelectPolicy::Min => (i64::from(i32::MAX), i64::min),
            SelectPolicy::Max => (i64::from(i32::MIN), i64::max),
        };
        for policy in &rules.policies {
            let start = self.period_start(at, current, policy.period());
            let proposed = match *policy {
                ScalingPolicy::Pods { value, .. } => start + i64::from(value),
                ScalingPolicy::Percent { value, .. } => {
                    (start as f64 * (1.0 + f64::from(value) / 100.0)).ceil() as i64
                }
            };
            result = pick(result, proposed);
        }
        result
    }

    fn scale_down_limit(&self, rules: &ScalingRules, at: SystemTime, current: u32) -> i64 {
        let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select {
            SelectPolicy::Disabled => return i64::from(current),
            SelectPolicy::Min => (i64::from(i32::MIN), i64::max),
            SelectPolicy::Max => (i64::from(i32::MAX), i64::min),
        };
        for policy in &rules.policies {
            let start = self.period_start(at, current, policy.period());
            let proposed = match *policy {
                ScalingPolicy::Pods { value, .. } => start - i64::from(value),
                ScalingPolicy::Percent { value, .. } => {
                    (start as f64 * (1.0 - f64::from(value) / 100.0)) as i64
                }
            };
            result = pick(result, proposed);
        }
        result
    }

    /// `desired` within the rate policies and `[min, max]`, and why it was limited.
    pub(crate) fn limit_rate(
        &self,
        behavior: &HpaBehavior,
        at: SystemTime,
        current: u32,
        desired: u32,
        bounds: (u32, u32),
    ) -> (u32, Option<String>) {
        let (min, max) = bounds;
        let to_u32 = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        if desired > current {
            let limit = to_u32(self.scale_up_limit(&behavior.scale_up, at, current)).max(current);
            let (allowed, why) = if max > limit {
                (
                    limit,
                    format!("scale-up limited to {limit} by the rate policies"),
                )
            } else {
                (max, format!("limited to max {max}"))
            };
            if desired > allowed {
                return (allowed, Some(why));
            }
        } else if desired < current {
            let limit =
                to_u32(self.scale_down_limit(&behavior.scale_down, at, current)).min(current);
            let (allowed, why) = if min < limit {
                (
                    limit,
                    format!("scale-down limited to {limit} by the rate policies"),
                )
            } else {
                (min, format!("limited to min {min}"))
            };
            if desired < allowed {
                return (allowed, Some(why));
            }
        }
        (desired, None)
    }

    /// Remembers a change from `from` to `to` replicas at `at`, for the rate policies.
    pub(crate) fn record_scale(
        &mut self,
        behavior: &HpaBehavior,
        at: SystemTime,
        from: u32,
        to: u32,
    ) {
        let (events, rules, change) = match to.cmp(&from) {
            std::cmp::Ordering::Greater => {
                (&mut self.scale_up_events, &behavior.scale_up, to - from)
            }
            std::cmp::Ordering::Less => {
                (&mut self.scale_down_events, &behavior.scale_down, from - to)
            }
            std::cmp::Ordering::Equal => return,
        };
        let c = cutoff(at, rules.longest_period());
        events.retain(|(t, _)| after(*t, c));
        events.push((at, change));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn scale_up_should_allow_the_larger_of_four_pods_and_doubling() {
        let b = HpaBehavior::default();
        let s = BehaviorState::default();
        assert_eq!(s.limit_rate(&b, t(0), 2, 100, (1, 100)).0, 6);
        assert_eq!(s.limit_rate(&b, t(0), 10, 100, (1, 100)).0, 20);
        assert_eq!(s.limit_rate(&b, t(0), 10, 100, (1, 15)).0, 15);
    }

    #[test]
    fn scale_up_should_count_events_within_the_period() {
        let b = HpaBehavior::default();
        let mut s = BehaviorState::default();
        s.record_scale(&b, t(0), 2, 6);
        // 10 s later the period started at 2: max(2 + 4, 2 × 2) = 6, no further growth.
        assert_eq!(s.limit_rate(&b, t(10), 6, 50, (1, 100)).0, 6);
        // After the 15 s period it may double again.
        assert_eq!(s.limit_rate(&b, t(16), 6, 50, (1, 100)).0, 12);
    }

    #[test]
    fn select_min_should_take_the_smaller_change() {
        let b = HpaBehavior::default()
            .with_scale_up(ScalingRules::default_scale_up().with_select(SelectPolicy::Min));
        let s = BehaviorState::default();
        assert_eq!(s.limit_rate(&b, t(0), 10, 100, (1, 100)).0, 14);
    }

    #[test]
    fn disabled_scale_down_should_keep_current() {
        let b = HpaBehavior::default().with_scale_down(
            ScalingRules::default_scale_down().with_select(SelectPolicy::Disabled),
        );
        let s = BehaviorState::default();
        assert_eq!(s.limit_rate(&b, t(0), 10, 1, (1, 100)).0, 10);
    }

    #[test]
    fn scale_down_percent_policy_should_truncate() {
        let b = HpaBehavior::default().with_scale_down(
            ScalingRules::default_scale_down().with_policies(vec![ScalingPolicy::percent(50, 60)]),
        );
        let s = BehaviorState::default();
        assert_eq!(s.limit_rate(&b, t(0), 5, 1, (1, 100)).0, 2);
    }

    #[test]
    fn stabilization_should_take_the_highest_recent_recommendation() {
        let b = HpaBehavior::default();
        let mut s = BehaviorState::default();
        s.record_initial(t(0), 5);
        assert_eq!(s.stabilize(&b, t(100), 5, 2).0, 5);
        assert_eq!(s.stabilize(&b, t(299), 5, 3).0, 5);
        // The initial 5 left the window: the highest since is 3.
        assert_eq!(s.stabilize(&b, t(300), 5, 1).0, 3);
        assert_eq!(s.stabilize(&b, t(600), 5, 1).0, 1);
    }
}
