//! Bid recommendations: how much to offer, at most, for a spot machine.
//!
//! Two policies, both usable with any [`PricingOracle`] through [`BidPolicy`]:
//!
//! - [`FractionBid`]: a fixed fraction of the on-demand price, by default
//!   [`DEFAULT_BID_FRACTION`] (the EAS best-practice rule: bid 20 % of the pay-as-you-go price).
//! - [`HistoryBid`]: a high percentile (by default the 95th) of the spot price over the last
//!   [`HISTORY_WINDOW`] (48 hours, what the EAS console shows next to the bid), weighted by
//!   time, capped at the on-demand price; the fraction rule when there is no history.
//!
//! Why time-weighted: spot prices are step functions and change at irregular moments. Counting
//! change events would let a price that flickered five times in ten minutes outweigh one that
//! held for two days. Weighted by time, the 95th percentile is the price the market stayed at or
//! under for 95 % of the window: a bid at it would have kept a machine for at least that share
//! of the last 48 hours. See [`stats::percentile`].
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::pricing::PricePoint;
//! use eas_scheduler::pricing::{FractionBid, HistoryBid};
//!
//! let t = |h: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(h * 3600);
//! let history = [PricePoint::new(t(0), 0.30), PricePoint::new(t(40), 0.45)];
//! // 0.30 for 40 h, 0.45 for the last 8 h of the 48 h window: above 95 % lies 0.45.
//! assert_eq!(HistoryBid::new().bid(&history, t(48), 1.0), 0.45);
//! // Capped at on-demand.
//! assert_eq!(HistoryBid::new().bid(&history, t(48), 0.40), 0.40);
//! // No history before the first point: 20 % of on-demand.
//! assert!((HistoryBid::new().bid(&[], t(48), 1.0) - 0.2).abs() < 1e-12);
//! assert!((FractionBid::default().bid(2.58) - 0.516).abs() < 1e-12);
//! # Ok::<(), eas_scheduler::Error>(())
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use eas_core::PricingOracle;
use eas_core::pricing::{DEFAULT_BID_FRACTION, HISTORY_WINDOW, PricePoint};
use eas_core::resources::Zone;

use super::stats;
use crate::Error;

/// A way to choose a maximum spot price from what a [`PricingOracle`] knows.
pub trait BidPolicy: Send + Sync + fmt::Debug {
    /// The bid for one machine of `instance_type` in `zone` at `at`, in USD per hour.
    ///
    /// # Errors
    /// [`eas_core::Error::NoPrice`] when `oracle` has no price for them.
    fn recommend(
        &self,
        oracle: &dyn PricingOracle,
        instance_type: &str,
        zone: &Zone,
        at: SystemTime,
    ) -> eas_core::Result<f64>;
}

/// Bid a fixed fraction of the on-demand price (by default [`DEFAULT_BID_FRACTION`], 20 %).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FractionBid {
    fraction: f64,
}

impl FractionBid {
    /// Bid `fraction` of the on-demand price (0.2 is 20 %).
    #[must_use]
    pub const fn new(fraction: f64) -> Self {
        Self { fraction }
    }

    /// The fraction of the on-demand price bid.
    #[must_use]
    pub const fn fraction(&self) -> f64 {
        self.fraction
    }

    /// The bid when on-demand costs `on_demand` USD per hour.
    #[must_use]
    pub fn bid(&self, on_demand: f64) -> f64 {
        on_demand * self.fraction
    }
}

impl Default for FractionBid {
    fn default() -> Self {
        Self::new(DEFAULT_BID_FRACTION)
    }
}

impl BidPolicy for FractionBid {
    fn recommend(
        &self,
        oracle: &dyn PricingOracle,
        instance_type: &str,
        _zone: &Zone,
        _at: SystemTime,
    ) -> eas_core::Result<f64> {
        Ok(self.bid(oracle.on_demand_price(instance_type)?))
    }
}

/// Bid a high percentile of the recent spot price, weighted by time, capped at on-demand.
///
/// Over the window `[at - window, at]` (by default [`HISTORY_WINDOW`], 48 h), the bid is the
/// lowest price the market stayed at or under for `percentile` % of the time (by default 95),
/// never more than the on-demand price (past that, on-demand is the better buy). When no spot
/// price was in force in the window (before a trace starts) the [`FractionBid`] fallback
/// decides.
///
/// The bid can be below the price in force at `at` when the price has just jumped: then the
/// policy says "wait" rather than "pay whatever the market asks now".
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HistoryBid {
    percentile: f64,
    window: Duration,
    fallback: FractionBid,
}

impl HistoryBid {
    /// The 95th percentile over [`HISTORY_WINDOW`], falling back to [`FractionBid::default`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            percentile: 95.0,
            window: HISTORY_WINDOW,
            fallback: FractionBid::default(),
        }
    }

    /// The same with another percentile, from 0 (the window's minimum) to 100 (its maximum).
    ///
    /// # Errors
    /// [`Error::Policy`] when `percentile` is not within 0..=100.
    pub fn with_percentile(mut self, percentile: f64) -> Result<Self, Error> {
        if !(0.0..=100.0).contains(&percentile) {
            return Err(Error::Policy(format!(
                "bid percentile {percentile} is not within 0..=100"
            )));
        }
        self.percentile = percentile;
        Ok(self)
    }

    /// The same looking back `window` instead of [`HISTORY_WINDOW`].
    #[must_use]
    pub const fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The same with another rule for when there is no history.
    #[must_use]
    pub const fn with_fallback(mut self, fallback: FractionBid) -> Self {
        self.fallback = fallback;
        self
    }

    /// The percentile bid, 0 to 100.
    #[must_use]
    pub const fn percentile(&self) -> f64 {
        self.percentile
    }

    /// How far back the policy looks.
    #[must_use]
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// The rule used when there is no history.
    #[must_use]
    pub const fn fallback(&self) -> FractionBid {
        self.fallback
    }

    /// The bid at `at` given the spot price curve `history` (sorted oldest first; the whole
    /// series or only the window, as long as it has the point in force at the window's start)
    /// and the on-demand price.
    #[must_use]
    pub fn bid(&self, history: &[PricePoint], at: SystemTime, on_demand: f64) -> f64 {
        let from = at
            .checked_sub(self.window)
            .unwrap_or(SystemTime::UNIX_EPOCH)
            .min(at);
        match stats::percentile(history, from, at, self.percentile) {
            Some(price) => price.min(on_demand),
            None => self.fallback.bid(on_demand),
        }
    }
}

impl Default for HistoryBid {
    fn default() -> Self {
        Self::new()
    }
}

impl BidPolicy for HistoryBid {
    fn recommend(
        &self,
        oracle: &dyn PricingOracle,
        instance_type: &str,
        zone: &Zone,
        at: SystemTime,
    ) -> eas_core::Result<f64> {
        let from = at
            .checked_sub(self.window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let history = oracle.spot_history(instance_type, zone, from, at)?;
        let on_demand = oracle.on_demand_price(instance_type)?;
        Ok(self.bid(&history, at, on_demand))
    }
}

#[cfg(test)]
mod tests {
    use eas_core::testing::StaticPrices;

    use super::*;

    fn h(hours: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(hours * 3600)
    }

    #[test]
    fn the_fraction_rule_should_bid_a_fifth_of_on_demand_by_default() {
        assert!((FractionBid::default().bid(2.58) - 0.516).abs() < 1e-12);
        assert_eq!(FractionBid::new(0.5).bid(3.0), 1.5);
    }

    #[test]
    fn the_history_bid_should_ignore_prices_before_the_window() {
        // 0.9 until hour 100, then 0.3 for the last 48 hours and more.
        let history = [PricePoint::new(h(0), 0.9), PricePoint::new(h(100), 0.3)];
        assert_eq!(HistoryBid::new().bid(&history, h(148), 1.0), 0.3);
        // One hour earlier, 0.9 held 1 h of 48 (2 %): under the 95th percentile, above the 99th.
        assert_eq!(HistoryBid::new().bid(&history, h(147), 1.0), 0.3);
        let p99 = HistoryBid::new().with_percentile(99.0).expect("valid");
        assert_eq!(p99.bid(&history, h(147), 1.0), 0.9);
    }

    #[test]
    fn the_history_bid_should_fall_back_when_the_window_is_before_the_trace() {
        let history = [PricePoint::new(h(10), 0.5)];
        let policy = HistoryBid::new().with_fallback(FractionBid::new(0.1));
        assert!((policy.bid(&history, h(5), 2.0) - 0.2).abs() < 1e-12);
        assert_eq!(
            policy.bid(&history, h(10), 2.0),
            0.5,
            "a point at `at` counts"
        );
    }

    #[test]
    fn the_history_bid_should_use_a_shorter_window_when_asked() {
        let history = [PricePoint::new(h(0), 0.2), PricePoint::new(h(10), 0.4)];
        let policy = HistoryBid::new().with_window(Duration::from_secs(3600));
        assert_eq!(policy.bid(&history, h(12), 1.0), 0.4);
        assert_eq!(
            HistoryBid::new()
                .with_percentile(50.0)
                .map(|p| p.bid(&history, h(12), 1.0))
                .ok(),
            Some(0.2)
        );
    }

    #[test]
    fn percentiles_outside_0_to_100_should_be_refused() {
        assert!(matches!(
            HistoryBid::new().with_percentile(101.0),
            Err(Error::Policy(_))
        ));
        assert!(matches!(
            HistoryBid::new().with_percentile(f64::NAN),
            Err(Error::Policy(_))
        ));
        assert!(HistoryBid::new().with_percentile(0.0).is_ok());
    }

    #[test]
    fn policies_should_work_with_any_oracle() {
        let prices = StaticPrices::new()
            .with_on_demand("t", 1.0)
            .with_spot("t", "z", 0.35);
        let zone = Zone::from("z");
        let bid = HistoryBid::new()
            .recommend(&prices, "t", &zone, h(100))
            .expect("known");
        assert_eq!(bid, 0.35);
        let bid = FractionBid::default()
            .recommend(&prices, "t", &zone, h(100))
            .expect("known");
        assert!((bid - 0.2).abs() < 1e-12);
        let err = HistoryBid::new()
            .recommend(&prices, "t", &Zone::from("y"), h(1))
            .expect_err("no zone");
        assert!(matches!(err, eas_core::Error::NoPrice { .. }));
    }
}
