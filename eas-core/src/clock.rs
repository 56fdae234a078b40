//! Where time comes from: [`Clock`], with [`SystemClock`] for real time and [`ManualClock`] for
//! virtual time (tests and the simulator).
//!
//! Every policy and controller reads the time through a `Clock`, never from
//! [`SystemTime::now`] directly, so the same code runs live and in virtual time and a run can be
//! replayed exactly.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::Clock;
//! use eas_core::clock::ManualClock;
//!
//! let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let manual = Arc::new(ManualClock::new(start));
//! let clock: Arc<dyn Clock> = manual.clone();
//!
//! manual.advance(Duration::from_secs(15));
//! assert_eq!(clock.now(), start + Duration::from_secs(15));
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A source of the current time, shared as `Arc<dyn Clock>`.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// Real time: [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl SystemClock {
    /// The real-time clock.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Virtual time that moves only when told to: [`advance`](Self::advance) or [`set`](Self::set).
///
/// Shared between threads through interior mutability, so one `Arc<ManualClock>` can drive
/// several components that hold it as `Arc<dyn Clock>`.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    #[must_use]
    pub const fn new(start: SystemTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// A clock stopped at the Unix epoch.
    #[must_use]
    pub const fn at_epoch() -> Self {
        Self::new(SystemTime::UNIX_EPOCH)
    }

    /// Moves the clock forward by `by` and returns the new time.
    pub fn advance(&self, by: Duration) -> SystemTime {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
        *now
    }

    /// Sets the clock to `to`, which may be earlier than the current time.
    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::at_epoch()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn manual_clock_should_stay_where_it_was_started() {
        let clock = ManualClock::new(t(100));
        assert_eq!(clock.now(), t(100));
        assert_eq!(clock.now(), t(100));
    }

    #[test]
    fn manual_clock_should_advance_by_the_given_duration() {
        let clock = ManualClock::new(t(100));
        assert_eq!(clock.advance(Duration::from_secs(5)), t(105));
        clock.advance(Duration::from_millis(500));
        assert_eq!(clock.now(), t(105) + Duration::from_millis(500));
    }

    #[test]
    fn manual_clock_should_jump_to_a_set_time_even_backwards() {
        let clock = ManualClock::new(t(100));
        clock.set(t(50));
        assert_eq!(clock.now(), t(50));
    }

    #[test]
    fn manual_clock_should_be_shared_as_a_dyn_clock() {
        let manual = Arc::new(ManualClock::default());
        let shared: Arc<dyn Clock> = manual.clone();
        manual.advance(Duration::from_secs(1));
        assert_eq!(shared.now(), t(1));
    }

    #[test]
    fn system_clock_should_not_go_backwards() {
        let clock = SystemClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }
}
