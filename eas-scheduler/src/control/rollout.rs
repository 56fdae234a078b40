//! Rolling updates: how many instances of the new version to start and how many of the old to
//! stop in one round, within `rolling_strategy.max_surge` and `max_unavailable`.
//!
//! The rule is Kubernetes' Deployment rule: the instances of both versions together stay at
//! most `desired + surge`, and the ready ones at least `desired - unavailable`. A percentage
//! surge rounds up and a percentage unavailability down (a rollout of one instance with the
//! public-group defaults, surge 2% and unavailability 0, starts one new instance, then stops
//! the old one once the new one is ready). When both come to 0 the surge is taken as 1, so a
//! rollout always makes progress. Old instances that are not ready count as unavailable
//! already and may always go.
//!
//! ```
//! use eas_core::spec::CountOrPercent;
//! use eas_scheduler::control::{RolloutLimits, VersionCounts, rollout_step};
//!
//! let limits = RolloutLimits::resolve(1, CountOrPercent::Percent(2.0), CountOrPercent::Count(0));
//! assert_eq!((limits.surge, limits.unavailable), (1, 0));
//! // One old, ready: start one new, stop nothing yet.
//! let step = rollout_step(1, limits, VersionCounts::new(1, 1), VersionCounts::new(0, 0));
//! assert_eq!((step.start_new, step.stop_old_ready, step.stop_old_not_ready), (1, 0, 0));
//! // The new one is ready: the old one goes.
//! let step = rollout_step(1, limits, VersionCounts::new(1, 1), VersionCounts::new(1, 1));
//! assert_eq!((step.start_new, step.stop_old_ready), (0, 1));
//! ```

use eas_core::spec::CountOrPercent;
use serde::Serialize;

/// A rollout's bounds for one desired count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RolloutLimits {
    /// How many instances may run above the desired count.
    pub surge: u32,
    /// How many of the desired count may be unavailable.
    pub unavailable: u32,
}

impl RolloutLimits {
    /// The bounds `max_surge` and `max_unavailable` give for `desired` instances: a surge
    /// percentage rounded up, an unavailability percentage rounded down, and a surge of 1 when
    /// both come to 0.
    #[must_use]
    pub fn resolve(
        desired: u32,
        max_surge: CountOrPercent,
        max_unavailable: CountOrPercent,
    ) -> Self {
        let surge = max_surge.resolve_ceil(desired);
        let unavailable = max_unavailable.resolve_floor(desired).min(desired);
        Self {
            surge: if surge == 0 && unavailable == 0 {
                1
            } else {
                surge
            },
            unavailable,
        }
    }
}

/// The instances of one version: all of them, and the ready ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct VersionCounts {
    /// Every instance (starting, ready, failed).
    pub total: u32,
    /// Those taking requests.
    pub ready: u32,
}

impl VersionCounts {
    /// `total` instances of which `ready` are ready.
    #[must_use]
    pub const fn new(total: u32, ready: u32) -> Self {
        Self { total, ready }
    }
}

/// One round of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct RolloutStep {
    /// New-version instances to start.
    pub start_new: u32,
    /// Ready old-version instances to stop.
    pub stop_old_ready: u32,
    /// Old-version instances that are not ready, to stop (all of them).
    pub stop_old_not_ready: u32,
    /// No old-version instance is left: the rollout is over.
    pub done: bool,
}

/// The round that moves `old` towards 0 and `new` towards `desired` within `limits`.
#[must_use]
pub fn rollout_step(
    desired: u32,
    limits: RolloutLimits,
    old: VersionCounts,
    new: VersionCounts,
) -> RolloutStep {
    if old.total == 0 {
        return RolloutStep {
            done: true,
            ..RolloutStep::default()
        };
    }
    let ceiling = desired.saturating_add(limits.surge);
    let start_new = desired
        .saturating_sub(new.total)
        .min(ceiling.saturating_sub(old.total.saturating_add(new.total)));
    let floor = desired.saturating_sub(limits.unavailable);
    let available = old.ready.saturating_add(new.ready);
    let stop_old_ready = old.ready.min(available.saturating_sub(floor));
    RolloutStep {
        start_new,
        stop_old_ready,
        stop_old_not_ready: old.total.saturating_sub(old.ready),
        done: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a rollout to its end, new instances becoming ready one round after they start;
    /// returns the rounds and checks the bounds at every round.
    fn run(desired: u32, limits: RolloutLimits, mut old: u32) -> u32 {
        let (mut starting, mut ready) = (0u32, 0u32);
        for round in 1..100 {
            let step = rollout_step(
                desired,
                limits,
                VersionCounts::new(old, old),
                VersionCounts::new(starting + ready, ready),
            );
            if step.done {
                return round;
            }
            ready += starting;
            starting = step.start_new;
            old -= step.stop_old_ready;
            assert!(
                old + starting + ready <= desired + limits.surge,
                "round {round}"
            );
            assert!(
                old + ready + limits.unavailable >= desired,
                "round {round}: {old} old + {ready} new ready"
            );
        }
        panic!("no end");
    }

    #[test]
    fn percentages_should_round_surge_up_and_unavailability_down() {
        let limits = |d, s, u| RolloutLimits::resolve(d, s, u);
        let p = CountOrPercent::Percent;
        let c = CountOrPercent::Count;
        assert_eq!(
            limits(1, p(2.0), c(0)),
            RolloutLimits {
                surge: 1,
                unavailable: 0
            }
        );
        assert_eq!(
            limits(10, p(25.0), p(25.0)),
            RolloutLimits {
                surge: 3,
                unavailable: 2
            }
        );
        assert_eq!(
            limits(3, c(0), c(0)),
            RolloutLimits {
                surge: 1,
                unavailable: 0
            }
        );
        assert_eq!(
            limits(1, c(0), c(1)),
            RolloutLimits {
                surge: 0,
                unavailable: 1
            }
        );
        assert_eq!(
            limits(2, c(0), c(5)),
            RolloutLimits {
                surge: 0,
                unavailable: 2
            }
        );
    }

    #[test]
    fn every_rollout_should_end_within_its_bounds() {
        for desired in 1..6 {
            for (surge, unavailable) in [(1, 0), (0, 1), (2, 1), (3, 3), (0, 5)] {
                let limits = RolloutLimits::resolve(
                    desired,
                    CountOrPercent::Count(surge),
                    CountOrPercent::Count(unavailable),
                );
                let rounds = run(desired, limits, desired);
                assert!(rounds <= 3 * desired + 2, "{desired} {limits:?}: {rounds}");
            }
        }
    }

    #[test]
    fn old_instances_that_are_not_ready_should_always_go() {
        let limits = RolloutLimits::resolve(2, CountOrPercent::Count(1), CountOrPercent::Count(0));
        let step = rollout_step(
            2,
            limits,
            VersionCounts::new(2, 1),
            VersionCounts::new(0, 0),
        );
        assert_eq!(
            (step.start_new, step.stop_old_ready, step.stop_old_not_ready),
            (1, 0, 1)
        );
    }
}
