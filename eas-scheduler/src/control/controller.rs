//! [`ReplicaController`]: how many replicas one service should have at each control round,
//! and why ([`ScaleDecision`]).
//!
//! The desired count comes from, in order:
//! 1. **stopped** ([`ReplicaController::set_stopped`]): 0, reason `stopped`; the autoscaler
//!    is not asked (its windows do not see the stop);
//! 2. **an autoscaler** (the spec's, [`autoscaler_for`], or any
//!    [`Autoscaler`] trait object): its [`Recommendation`](eas_core::autoscaler::Recommendation);
//! 3. **a fixed count** (`metadata.instance`, or [`ReplicaController::set_fixed`]): reason
//!    `fixed at N`.
//!
//! **History.** The last [`HISTORY_LEN`] decisions are kept, oldest first. A decision with
//! the same `current`, `desired` and `reason` as the newest entry is folded into it: the
//! entry keeps the time it was first made (`at`) and counts the folded ones in `repeats`, so
//! a steady service (fixed, stopped, or an autoscaler holding with the same reason) does not
//! push the changes out of the history.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::autoscaler::Observation;
//! use eas_core::spec::ServiceSpec;
//! use eas_scheduler::control::ReplicaController;
//!
//! let spec = ServiceSpec::from_json_str(r#"{
//!     "metadata": {"name": "demo", "instance": 2},
//!     "containers": [{"image": "i", "command": "run"}]
//! }"#)?;
//! let mut controller = ReplicaController::from_spec(&spec)?;
//! let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
//! assert_eq!(controller.decide(&Observation::new(at(0), 0)).desired, 2);
//! controller.set_stopped(true);
//! let stopped = controller.decide(&Observation::new(at(15), 2));
//! assert_eq!((stopped.desired, stopped.reason.as_str()), (0, "stopped"));
//! assert_eq!(controller.history().count(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::time::SystemTime;

use eas_core::Autoscaler;
use eas_core::autoscaler::Observation;
use eas_core::spec::ServiceSpec;
use serde::Serialize;

use super::autoscaler_for;

/// How many decisions [`ReplicaController::history`] keeps.
pub const HISTORY_LEN: usize = 100;

/// One decision: the desired replica count at a time, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ScaleDecision {
    /// When it was made ([`Observation::at`]); in the history, when it was first made.
    pub at: SystemTime,
    /// The replica count asked for before it ([`Observation::current_replicas`]).
    pub current: u32,
    /// The replica count asked for from now on.
    pub desired: u32,
    /// Why, for a person.
    pub reason: String,
    /// In the history: how many identical decisions after this one were folded into it.
    pub repeats: u32,
}

impl ScaleDecision {
    /// A decision made at `at`.
    #[must_use]
    pub fn new(at: SystemTime, current: u32, desired: u32, reason: impl Into<String>) -> Self {
        Self {
            at,
            current,
            desired,
            reason: reason.into(),
            repeats: 0,
        }
    }

    /// Whether it changes the count.
    #[must_use]
    pub const fn is_change(&self) -> bool {
        self.current != self.desired
    }

    fn same_as(&self, other: &Self) -> bool {
        self.current == other.current
            && self.desired == other.desired
            && self.reason == other.reason
    }
}

/// The replica decisions of one service: a fixed count, or an autoscaler, or stopped.
/// Pure and deterministic: time comes only from [`Observation::at`].
#[derive(Debug)]
pub struct ReplicaController {
    fixed: u32,
    autoscaler: Option<Box<dyn Autoscaler>>,
    stopped: bool,
    desired: u32,
    history: VecDeque<ScaleDecision>,
}

impl ReplicaController {
    /// A controller with `fixed` replicas when `autoscaler` is `None`, else the autoscaler's
    /// count. Its first desired count ([`ReplicaController::desired`]) is `fixed`.
    #[must_use]
    pub fn new(fixed: u32, autoscaler: Option<Box<dyn Autoscaler>>) -> Self {
        Self {
            fixed,
            autoscaler,
            stopped: false,
            desired: fixed,
            history: VecDeque::new(),
        }
    }

    /// The controller a spec describes: the autoscaler its `autoscaler` block selects
    /// ([`autoscaler_for`]) with `metadata.instance` clamped to `[min, max]` as the first
    /// desired count, or `metadata.instance` replicas (0 allowed) without the block.
    ///
    /// # Errors
    ///
    /// [`Error::Policy`](crate::Error::Policy) when the autoscaler block cannot work
    /// ([`autoscaler_for`]).
    pub fn from_spec(spec: &ServiceSpec) -> crate::Result<Self> {
        let instance = spec.metadata.instance;
        match &spec.autoscaler {
            Some(block) => {
                let mut controller = Self::new(instance, Some(autoscaler_for(block)?));
                controller.desired = instance.clamp(block.min, block.max.max(block.min));
                Ok(controller)
            }
            None => Ok(Self::new(instance, None)),
        }
    }

    /// Replaces the autoscaler (`None`: the fixed count from now on).
    pub fn set_autoscaler(&mut self, autoscaler: Option<Box<dyn Autoscaler>>) {
        self.autoscaler = autoscaler;
    }

    /// Sets the fixed count, used while there is no autoscaler.
    pub const fn set_fixed(&mut self, replicas: u32) {
        self.fixed = replicas;
    }

    /// Stops the service (desired 0, reason `stopped`) or lets it run again.
    pub const fn set_stopped(&mut self, stopped: bool) {
        self.stopped = stopped;
    }

    /// Whether the service is stopped.
    #[must_use]
    pub const fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Whether an autoscaler decides (rather than the fixed count).
    #[must_use]
    pub const fn has_autoscaler(&self) -> bool {
        self.autoscaler.is_some()
    }

    /// The fixed count.
    #[must_use]
    pub const fn fixed(&self) -> u32 {
        self.fixed
    }

    /// The desired count of the last decision (before any: the first desired count).
    #[must_use]
    pub const fn desired(&self) -> u32 {
        self.desired
    }

    /// Decides the desired count for `observation`, records it and returns it.
    pub fn decide(&mut self, observation: &Observation) -> ScaleDecision {
        let (desired, reason) = if self.stopped {
            (0, "stopped".to_owned())
        } else if let Some(autoscaler) = self.autoscaler.as_mut() {
            let r = autoscaler.recommend(observation);
            (r.replicas, r.reason)
        } else {
            (self.fixed, format!("fixed at {}", self.fixed))
        };
        self.desired = desired;
        let decision = ScaleDecision::new(
            observation.at,
            observation.current_replicas,
            desired,
            reason,
        );
        self.record(&decision);
        decision
    }

    /// The last [`HISTORY_LEN`] decisions, oldest first, identical ones folded (see the
    /// [module docs](self)).
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &ScaleDecision> + ExactSizeIterator {
        self.history.iter()
    }

    /// The newest decision, if any.
    #[must_use]
    pub fn last(&self) -> Option<&ScaleDecision> {
        self.history.back()
    }

    fn record(&mut self, decision: &ScaleDecision) {
        if let Some(newest) = self.history.back_mut()
            && newest.same_as(decision)
        {
            newest.repeats = newest.repeats.saturating_add(1);
            return;
        }
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(decision.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use eas_core::autoscaler::{InstanceSample, Recommendation, metric};
    use eas_core::resources::InstanceId;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn spec(instance: u32, autoscaler: Option<&str>) -> ServiceSpec {
        let block = autoscaler.map_or_else(String::new, |a| format!(r#", "autoscaler": {a}"#));
        ServiceSpec::from_json_str(&format!(
            r#"{{"metadata": {{"name": "svc", "instance": {instance}}},
                "containers": [{{"image": "i", "command": "run"}}]{block}}}"#
        ))
        .unwrap_or_else(|e| panic!("test spec: {e}"))
    }

    /// An observation of `current` ready instances sharing `qps`.
    fn load(secs: u64, current: u32, qps: f64) -> Observation {
        let per = if current > 0 {
            qps / f64::from(current)
        } else {
            0.0
        };
        let samples = (0..current)
            .map(|i| {
                InstanceSample::new(InstanceId::new(format!("p{i}"))).with_metric(metric::QPS, per)
            })
            .collect();
        Observation::new(at(secs), current)
            .with_instances(samples)
            .with_service_metric(metric::QPS, qps)
            .with_service_metric(metric::QUEUE_BACKLOG, 0.0)
    }

    /// Asks for `current + 1`, always.
    #[derive(Debug)]
    struct OneMore;

    impl Autoscaler for OneMore {
        fn recommend(&mut self, observation: &Observation) -> Recommendation {
            let n = observation.current_replicas + 1;
            Recommendation::new(n, format!("one more: {n}"))
        }
    }

    #[test]
    fn from_spec_should_start_from_the_instance_count_within_the_bounds() {
        let bounded = r#"{"min": 2, "max": 4, "strategies": {"qps": 10}}"#;
        // (instance, autoscaler block, first desired, has autoscaler)
        let cases = [
            (3, None, 3, false),
            (0, None, 0, false),
            (3, Some(bounded), 3, true),
            (1, Some(bounded), 2, true),
            (9, Some(bounded), 4, true),
            (
                0,
                Some(r#"{"min": 0, "max": 4, "strategies": {"qps": 10}}"#),
                0,
                true,
            ),
        ];
        for (instance, block, want, has) in cases {
            let c = ReplicaController::from_spec(&spec(instance, block)).expect("valid");
            assert_eq!(c.desired(), want, "instance {instance} {block:?}");
            assert_eq!(c.has_autoscaler(), has);
            assert_eq!(c.fixed(), instance);
        }
    }

    #[test]
    fn decide_should_follow_stopped_then_autoscaler_then_fixed() {
        // (fixed, autoscaler, stopped, current, desired, reason)
        type Case = (
            u32,
            Option<Box<dyn Autoscaler>>,
            bool,
            u32,
            u32,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (2, None, false, 0, 2, "fixed at 2"),
            (0, None, false, 3, 0, "fixed at 0"),
            (2, None, true, 2, 0, "stopped"),
            (2, Some(Box::new(OneMore)), false, 5, 6, "one more: 6"),
            (2, Some(Box::new(OneMore)), true, 5, 0, "stopped"),
        ];
        for (fixed, autoscaler, stopped, current, want, reason) in cases {
            let mut c = ReplicaController::new(fixed, autoscaler);
            c.set_stopped(stopped);
            assert_eq!(c.is_stopped(), stopped);
            let d = c.decide(&Observation::new(at(7), current));
            assert_eq!(
                (d.at, d.current, d.desired, d.reason.as_str()),
                (at(7), current, want, reason)
            );
            assert_eq!(c.desired(), want);
            assert_eq!(c.last(), Some(&d));
        }
    }

    #[test]
    fn decide_should_keep_the_autoscaler_within_its_bounds() {
        let block = r#"{"min": 1, "max": 4, "strategies": {"qps": 10},
            "behavior": {"scale_down": {"stabilization_window_seconds": 0}}}"#;
        let zero = r#"{"min": 0, "max": 4, "strategies": {"qps": 10},
            "behavior": {"scale_down": {"stabilization_window_seconds": 0}}}"#;
        // (block, current, total qps, desired)
        let cases = [
            (block, 2, 30.0, 3),
            (block, 2, 200.0, 4), // max
            (block, 2, 1.0, 1),   // min
            (block, 6, 60.0, 4),  // above max: straight to max
            (block, 0, 0.0, 1),   // below min: straight to min
            (zero, 2, 0.0, 0),    // no load with min 0: to zero
            (zero, 0, 5.0, 1),    // load from zero: at least one
            (zero, 0, 0.0, 0),
        ];
        for (block, current, qps, want) in cases {
            let mut c = ReplicaController::from_spec(&spec(1, Some(block))).expect("valid");
            let d = c.decide(&load(0, current, qps));
            assert_eq!(d.desired, want, "current {current} qps {qps}: {}", d.reason);
        }
    }

    #[test]
    fn decide_should_follow_the_schedules_through_the_eas_autoscaler() {
        // echo.json's schedules: weekdays from 08:00 Shanghai at least 2; 20:00 exactly 1.
        let block = r#"{"min": 1, "max": 4, "strategies": {"qps": 500}, "schedules": [
            {"schedule": "0 8 * * MON-FRI", "timezone": "Asia/Shanghai", "min": 2},
            {"schedule": "0 20 * * *", "timezone": "Asia/Shanghai", "replicas": 1}]}"#;
        let mut c = ReplicaController::from_spec(&spec(2, Some(block))).expect("valid");
        // 2024-01-02 is a Tuesday; 00:00 UTC is 08:00 in Shanghai.
        let tuesday = 1_704_153_600;
        // (seconds from Tuesday 00:00 UTC, current, qps, desired, words in the reason)
        let cases = [
            (0, 2, 10.0, 2, "schedule #0"),
            (3_600, 2, 1_500.0, 3, "qps"),
            (12 * 3_600, 3, 10.0, 1, "fixed at 1"), // 20:00 Shanghai
            (24 * 3_600, 1, 10.0, 2, "below min 2"), // Wednesday 08:00 Shanghai
        ];
        for (s, current, qps, want, word) in cases {
            let d = c.decide(&load(tuesday + s, current, qps));
            assert_eq!(d.desired, want, "at +{s} s: {}", d.reason);
            assert!(d.reason.contains(word), "at +{s} s: {}", d.reason);
        }
    }

    #[test]
    fn history_should_fold_repeats_and_keep_the_last_hundred() {
        let mut c = ReplicaController::new(2, None);
        for s in 0..5 {
            c.decide(&Observation::new(at(s), 2));
        }
        let only: Vec<_> = c.history().collect();
        assert_eq!(only.len(), 1, "identical decisions fold");
        assert_eq!((only[0].at, only[0].repeats), (at(0), 4));
        c.decide(&Observation::new(at(5), 1));
        assert_eq!(
            c.history().count(),
            2,
            "another current is another decision"
        );

        let mut c = ReplicaController::new(0, Some(Box::new(OneMore)));
        for s in 0..250 {
            c.decide(&Observation::new(at(s), u32::try_from(s).expect("small")));
        }
        assert_eq!(c.history().len(), HISTORY_LEN);
        assert_eq!(c.history().next().map(|d| d.desired), Some(151));
        assert_eq!(c.last().map(|d| d.desired), Some(250), "newest last");
    }

    #[test]
    fn set_autoscaler_and_set_fixed_should_take_effect_at_the_next_decision() {
        let mut c = ReplicaController::new(1, Some(Box::new(OneMore)));
        assert_eq!(c.decide(&Observation::new(at(0), 3)).desired, 4);
        c.set_autoscaler(None);
        c.set_fixed(5);
        let d = c.decide(&Observation::new(at(15), 4));
        assert_eq!((d.desired, d.reason.as_str()), (5, "fixed at 5"));
        c.set_autoscaler(Some(Box::new(OneMore)));
        assert_eq!(c.decide(&Observation::new(at(30), 5)).desired, 6);
        c.set_stopped(true);
        assert_eq!(c.decide(&Observation::new(at(45), 6)).desired, 0);
        c.set_stopped(false);
        assert_eq!(c.decide(&Observation::new(at(60), 0)).desired, 1);
    }

    #[test]
    fn decisions_should_serialize_for_the_control_api() {
        let d = ScaleDecision::new(at(1), 1, 2, "why");
        let json = serde_json::to_value(&d).expect("serializes");
        assert_eq!(json["desired"], 2);
        assert_eq!(json["reason"], "why");
        assert!(d.is_change());
    }
}
