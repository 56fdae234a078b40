//! Scheduled scaling: which `autoscaler.schedules` entry is in force at a time, and the
//! bounds it sets.
//!
//! Each entry takes effect at every occurrence of its cron expression, read in its time
//! zone. At time `t` the entry whose most recent occurrence at or before `t` is the latest
//! is in force (on a tie, the later entry in the list). Occurrences are looked for within a
//! bounded window before `t` ([`DEFAULT_SCHEDULE_LOOKBACK`], 8 days, enough for daily and
//! weekly schedules); an entry with no occurrence in the window is not in force.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::spec::{AutoscalerSpec, ScheduledScaling};
//! use eas_scheduler::autoscale::{bounds_at, DEFAULT_SCHEDULE_LOOKBACK};
//!
//! let morning = ScheduledScaling::bounds("0 8 * * *".parse().expect("cron"), Some(5), None)
//!     .in_timezone("Asia/Shanghai".parse().expect("zone"));
//! let spec = AutoscalerSpec::new(1, 10).with_qps(15.0).with_schedule(morning);
//! // 2024-01-02 00:30 UTC is 08:30 in Shanghai.
//! let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_155_400);
//! let bounds = bounds_at(&spec, at, DEFAULT_SCHEDULE_LOOKBACK);
//! assert_eq!((bounds.min, bounds.max), (5, 10));
//! ```

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use eas_core::spec::{AutoscalerSpec, ScheduledScaling};

/// How far back occurrences of schedules are looked for: 8 days.
pub const DEFAULT_SCHEDULE_LOOKBACK: Duration = Duration::from_secs(8 * 24 * 3600);

/// The schedule entry in force at a time.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ActiveSchedule {
    /// Its index in `autoscaler.schedules`.
    pub index: usize,
    /// Its most recent occurrence, the time it took effect.
    pub since: DateTime<Utc>,
    /// The entry.
    pub entry: ScheduledScaling,
}

/// The replica bounds in force, and where they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bounds {
    /// The fewest replicas.
    pub min: u32,
    /// The most replicas.
    pub max: u32,
    /// Where they come from, for a person.
    pub reason: String,
}

impl Bounds {
    /// Bounds `[min, max]` for `reason`.
    #[must_use]
    pub fn new(min: u32, max: u32, reason: impl Into<String>) -> Self {
        Self {
            min,
            max,
            reason: reason.into(),
        }
    }

    /// Whether the bounds fix the count (`min == max`).
    #[must_use]
    pub const fn is_fixed(&self) -> bool {
        self.min == self.max
    }
}

/// The most recent occurrence of `entry` at or before `at`, if within `lookback`.
#[must_use]
pub fn last_occurrence(
    entry: &ScheduledScaling,
    at: SystemTime,
    lookback: Duration,
) -> Option<DateTime<Utc>> {
    let at_utc = DateTime::<Utc>::from(at);
    let local = at_utc.with_timezone(&entry.timezone.tz());
    let previous = entry
        .schedule
        .schedule()
        .find_previous_occurrence(&local, true)
        .ok()?
        .with_timezone(&Utc);
    let earliest = at.checked_sub(lookback).map(DateTime::<Utc>::from);
    match earliest {
        Some(earliest) if previous < earliest => None,
        _ => Some(previous),
    }
}

/// The entry of `schedules` in force at `at`: the one whose most recent occurrence (within
/// `lookback`) is the latest; on a tie, the later one in the list.
#[must_use]
pub fn active_schedule(
    schedules: &[ScheduledScaling],
    at: SystemTime,
    lookback: Duration,
) -> Option<ActiveSchedule> {
    schedules
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            last_occurrence(entry, at, lookback).map(|since| ActiveSchedule {
                index,
                since,
                entry: entry.clone(),
            })
        })
        .max_by_key(|a| (a.since, a.index))
}

/// The bounds in force at `at`: those of the active schedule entry (a fixed `replicas`
/// count, or its `min`/`max` over the spec's), else the spec's `min`/`max`. What the entry
/// sets wins over the spec when they cross (an entry's `max` below the spec's `min` lowers
/// the `min`); an entry whose own `min` is above its own `max` raises the `max`.
#[must_use]
pub fn bounds_at(spec: &AutoscalerSpec, at: SystemTime, lookback: Duration) -> Bounds {
    let Some(active) = active_schedule(&spec.schedules, at, lookback) else {
        return Bounds::new(
            spec.min,
            spec.max,
            format!("bounds [{}, {}]", spec.min, spec.max),
        );
    };
    let entry = &active.entry;
    let source = format!(
        "schedule #{} \"{}\" ({}) since {}",
        active.index,
        entry.schedule,
        entry.timezone,
        active.since.format("%Y-%m-%dT%H:%M:%SZ")
    );
    if let Some(n) = entry.replicas {
        return Bounds::new(n, n, format!("{source}: fixed at {n}"));
    }
    let (min, max) = match (entry.min, entry.max) {
        (Some(min), Some(max)) => (min, max.max(min)),
        (Some(min), None) => (min, spec.max.max(min)),
        (None, Some(max)) => (spec.min.min(max), max),
        (None, None) => (spec.min, spec.max),
    };
    Bounds::new(min, max, format!("{source}: bounds [{min}, {max}]"))
}

#[cfg(test)]
mod tests {
    use eas_core::spec::CronExpr;

    use super::*;

    fn cron(s: &str) -> CronExpr {
        s.parse().expect("valid cron")
    }

    fn utc(s: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(s).expect("rfc3339").into()
    }

    #[test]
    fn last_occurrence_should_read_the_cron_in_its_timezone() {
        let entry = ScheduledScaling::fixed(cron("0 8 * * *"), 3)
            .in_timezone("Asia/Shanghai".parse().expect("zone"));
        let got = last_occurrence(
            &entry,
            utc("2024-03-05T00:30:00Z"),
            DEFAULT_SCHEDULE_LOOKBACK,
        );
        assert_eq!(
            got,
            Some(DateTime::<Utc>::from(utc("2024-03-05T00:00:00Z")))
        );
    }

    #[test]
    fn last_occurrence_should_include_the_exact_instant() {
        let entry = ScheduledScaling::fixed(cron("0 8 * * *"), 3);
        let at = utc("2024-03-05T08:00:00Z");
        assert_eq!(
            last_occurrence(&entry, at, DEFAULT_SCHEDULE_LOOKBACK),
            Some(DateTime::<Utc>::from(at))
        );
    }

    #[test]
    fn entries_older_than_the_lookback_should_not_be_in_force() {
        let entry = ScheduledScaling::fixed(cron("0 0 1 1 *"), 3);
        let at = utc("2024-03-05T08:00:00Z");
        assert_eq!(last_occurrence(&entry, at, DEFAULT_SCHEDULE_LOOKBACK), None);
        assert!(last_occurrence(&entry, at, Duration::from_secs(100 * 86_400)).is_some());
    }

    #[test]
    fn ties_should_go_to_the_later_entry() {
        let a = ScheduledScaling::fixed(cron("0 8 * * *"), 3);
        let b = ScheduledScaling::fixed(cron("0 8 * * *"), 4);
        let active = active_schedule(
            &[a, b],
            utc("2024-03-05T09:00:00Z"),
            DEFAULT_SCHEDULE_LOOKBACK,
        )
        .expect("in force");
        assert_eq!(active.index, 1);
    }

    #[test]
    fn an_entry_should_win_over_the_spec_bounds_it_crosses() {
        let at = utc("2024-03-05T09:00:00Z");
        let night = ScheduledScaling::bounds(cron("0 8 * * *"), None, Some(3));
        let spec = AutoscalerSpec::new(5, 10).with_schedule(night);
        let b = bounds_at(&spec, at, DEFAULT_SCHEDULE_LOOKBACK);
        assert_eq!((b.min, b.max), (3, 3));
        let peak = ScheduledScaling::bounds(cron("0 8 * * *"), Some(12), None);
        let spec = AutoscalerSpec::new(1, 10).with_schedule(peak);
        let b = bounds_at(&spec, at, DEFAULT_SCHEDULE_LOOKBACK);
        assert_eq!((b.min, b.max), (12, 12));
        assert!(!b.reason.is_empty());
    }
}
