//! Statistics of a step price curve over a window, each price weighted by how long it held.
//!
//! A curve is a slice of [`PricePoint`]s sorted oldest first; each price holds from its point
//! until the next point (the last one holds for ever). Over a window `[from, to]` a price counts
//! for the time it was in force *inside* the window: a price that held 47 hours weighs 47 times
//! more than one that held an hour, however many change events each produced. The window starts
//! at `from`, or at the first point when the curve starts later.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::pricing::PricePoint;
//! use eas_scheduler::pricing::stats::{percentile, window_stats};
//!
//! let t = |h: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(h * 3600);
//! // 0.10 for 9 hours, then 0.50 for 1 hour.
//! let curve = [PricePoint::new(t(0), 0.10), PricePoint::new(t(9), 0.50)];
//! let stats = window_stats(&curve, t(0), t(10)).expect("a price in the window");
//! assert!((stats.mean - 0.14).abs() < 1e-12);
//! assert_eq!((stats.min, stats.max), (0.10, 0.50));
//! assert_eq!(percentile(&curve, t(0), t(10), 50.0), Some(0.10));
//! assert_eq!(percentile(&curve, t(0), t(10), 95.0), Some(0.50));
//! ```

use std::time::{Duration, SystemTime};

use eas_core::pricing::PricePoint;

/// What a step curve did over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct WindowStats {
    /// The lowest price in force at some time in the window.
    pub min: f64,
    /// The highest price in force at some time in the window.
    pub max: f64,
    /// The mean price, weighted by how long each price held in the window.
    pub mean: f64,
    /// How much of the window the curve covers (less than `to - from` when it starts later).
    pub covered: Duration,
}

/// Each price in force within `[from, to]` and how long it held there, oldest first.
///
/// When the window has no length (`from == to`, or the only point is dated `to`), the price in
/// force at `to` comes back alone with a zero duration, so a degenerate window still has a price.
fn segments(points: &[PricePoint], from: SystemTime, to: SystemTime) -> Vec<(f64, Duration)> {
    if to < from {
        return Vec::new();
    }
    let first = points.partition_point(|p| p.at <= from).saturating_sub(1);
    let last = points.partition_point(|p| p.at <= to);
    let Some(window) = points.get(first..last) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(window.len());
    for (i, point) in window.iter().enumerate() {
        let start = point.at.max(from);
        let end = window.get(i + 1).map_or(to, |next| next.at.min(to));
        if let Ok(held) = end.duration_since(start)
            && !held.is_zero()
        {
            out.push((point.usd_per_hour, held));
        }
    }
    if out.is_empty()
        && let Some(price) = eas_core::pricing::price_at(points, to)
    {
        out.push((price, Duration::ZERO));
    }
    out
}

/// Min, max and time-weighted mean of `points` over `[from, to]`; `None` when no price is in
/// force at any time in the window (empty curve, window before the first point, `to < from`).
#[must_use]
pub fn window_stats(
    points: &[PricePoint],
    from: SystemTime,
    to: SystemTime,
) -> Option<WindowStats> {
    let segments = segments(points, from, to);
    let (first, _) = *segments.first()?;
    let (mut min, mut max) = (first, first);
    let (mut weighted, mut total, mut plain) = (0.0, Duration::ZERO, 0.0);
    for &(price, held) in &segments {
        min = min.min(price);
        max = max.max(price);
        weighted += price * held.as_secs_f64();
        total += held;
        plain += price;
    }
    let mean = if total.is_zero() {
        #[allow(clippy::cast_precision_loss)]
        let n = segments.len() as f64;
        plain / n
    } else {
        weighted / total.as_secs_f64()
    };
    Some(WindowStats {
        min,
        max,
        mean,
        covered: total,
    })
}

/// The `pct`-th percentile (0 to 100) of `points` over `[from, to]`, weighted by time: the
/// lowest price `p` such that the curve was at or below `p` for at least `pct` % of the covered
/// window. It is always a price the curve actually took (no interpolation between prices), so
/// a bid set to it is one the market has met. `pct` outside 0..=100 is clamped.
///
/// `None` when no price is in force in the window, as for [`window_stats`].
#[must_use]
pub fn percentile(
    points: &[PricePoint],
    from: SystemTime,
    to: SystemTime,
    pct: f64,
) -> Option<f64> {
    let mut segments = segments(points, from, to);
    segments.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (highest, _) = *segments.last()?;
    let total: f64 = segments.iter().map(|(_, held)| held.as_secs_f64()).sum();
    let target = pct.clamp(0.0, 100.0) / 100.0 * total;
    let mut seen = 0.0;
    for &(price, held) in &segments {
        seen += held.as_secs_f64();
        if seen >= target {
            return Some(price);
        }
    }
    // Rounding kept `seen` a hair below `total`: the answer is the highest price.
    Some(highest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn curve() -> Vec<PricePoint> {
        vec![
            PricePoint::new(t(100), 1.0),
            PricePoint::new(t(200), 3.0),
            PricePoint::new(t(210), 2.0),
        ]
    }

    #[test]
    fn stats_should_weight_each_price_by_the_time_it_held() {
        let s = window_stats(&curve(), t(100), t(300)).expect("covered");
        // 1.0 for 100 s, 3.0 for 10 s, 2.0 for 90 s.
        assert!((s.mean - (100.0 + 30.0 + 180.0) / 200.0).abs() < 1e-12);
        assert_eq!((s.min, s.max), (1.0, 3.0));
        assert_eq!(s.covered, Duration::from_secs(200));
    }

    #[test]
    fn stats_should_start_with_the_price_in_force_at_from() {
        let s = window_stats(&curve(), t(150), t(205)).expect("covered");
        assert!((s.mean - (50.0 + 15.0) / 55.0).abs() < 1e-12);
        assert_eq!(s.covered, Duration::from_secs(55));
    }

    #[test]
    fn stats_should_be_none_before_the_first_point_or_for_a_reversed_window() {
        assert_eq!(window_stats(&curve(), t(0), t(99)), None);
        assert_eq!(window_stats(&curve(), t(300), t(200)), None);
        assert_eq!(window_stats(&[], t(0), t(10)), None);
        assert_eq!(percentile(&curve(), t(0), t(99), 50.0), None);
    }

    #[test]
    fn stats_should_cover_only_the_part_after_the_first_point() {
        let s = window_stats(&curve(), t(0), t(150)).expect("covered");
        assert_eq!(s.covered, Duration::from_secs(50));
        assert_eq!(s.mean, 1.0);
    }

    #[test]
    fn a_zero_length_window_should_give_the_price_in_force() {
        let s = window_stats(&curve(), t(205), t(205)).expect("in force");
        assert_eq!((s.min, s.max, s.mean), (3.0, 3.0, 3.0));
        assert_eq!(percentile(&curve(), t(200), t(200), 95.0), Some(3.0));
        assert_eq!(percentile(&curve(), t(100), t(100), 0.0), Some(1.0));
    }

    #[test]
    fn percentiles_should_follow_the_time_weighted_distribution() {
        // 1.0 held 50 % of the window, 2.0 held 45 %, 3.0 held 5 %.
        let c = curve();
        let p = |pct| percentile(&c, t(100), t(300), pct);
        assert_eq!(p(0.0), Some(1.0));
        assert_eq!(p(50.0), Some(1.0));
        assert_eq!(p(50.1), Some(2.0));
        assert_eq!(p(95.0), Some(2.0));
        assert_eq!(p(95.1), Some(3.0));
        assert_eq!(p(100.0), Some(3.0));
        assert_eq!(p(250.0), Some(3.0), "clamped");
    }
}
