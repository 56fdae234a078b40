//! [`PricingOracle`]: what machines cost, on demand and on the spot market.
//!
//! Prices are in USD per hour of one machine. Spot prices vary by instance type, zone and time;
//! [`PricingOracle::spot_history`] gives the price curve for a window (EAS bids look at the
//! last [`HISTORY_WINDOW`]), and [`PricingOracle::recommend_bid`] proposes a maximum price,
//! by default [`DEFAULT_BID_FRACTION`] of the on-demand price.
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::{Error, PricingOracle, Result};
//! use eas_core::pricing::PricePoint;
//! use eas_core::resources::Zone;
//!
//! /// One type, spot always at a tenth of on-demand.
//! #[derive(Debug)]
//! struct Flat;
//!
//! impl PricingOracle for Flat {
//!     fn on_demand_price(&self, instance_type: &str) -> Result<f64> {
//!         match instance_type {
//!             "ecs.gn6i" => Ok(2.0),
//!             _ => Err(Error::NoPrice { instance_type: instance_type.into(), zone: None }),
//!         }
//!     }
//!     fn spot_price(&self, instance_type: &str, _zone: &Zone, _at: SystemTime) -> Result<f64> {
//!         Ok(self.on_demand_price(instance_type)? / 10.0)
//!     }
//!     fn spot_history(&self, instance_type: &str, zone: &Zone, from: SystemTime, _to: SystemTime)
//!         -> Result<Vec<PricePoint>> {
//!         Ok(vec![PricePoint::new(from, self.spot_price(instance_type, zone, from)?)])
//!     }
//! }
//!
//! let zone = Zone::from("cn-hangzhou-h");
//! let bid = Flat.recommend_bid("ecs.gn6i", &zone, SystemTime::UNIX_EPOCH)?;
//! assert!((bid - 0.4).abs() < 1e-9, "20% of on-demand");
//! assert!(Flat.on_demand_price("ecs.unknown").is_err());
//! # Ok::<(), eas_core::Error>(())
//! ```

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::resources::Zone;

/// How far back spot-price history is looked at when bidding: 48 hours.
pub const HISTORY_WINDOW: Duration = Duration::from_secs(48 * 3600);

/// The default bid as a fraction of the on-demand price (the EAS best-practice rule: 20 %).
pub const DEFAULT_BID_FRACTION: f64 = 0.2;

/// Where prices come from: a static table, a recorded trace, or a cloud API.
pub trait PricingOracle: Send + Sync + std::fmt::Debug {
    /// The on-demand price of one machine of `instance_type`, in USD per hour.
    ///
    /// # Errors
    /// [`Error::NoPrice`](crate::Error::NoPrice) when the type is unknown.
    fn on_demand_price(&self, instance_type: &str) -> Result<f64>;

    /// The spot price of `instance_type` in `zone` in force at time `at`, in USD per hour.
    /// Prices are step functions: a price holds from its time until the next one.
    ///
    /// # Errors
    /// [`Error::NoPrice`](crate::Error::NoPrice) when there is no spot market for them, or
    /// no price is known yet at `at` (before the first point of a history).
    fn spot_price(&self, instance_type: &str, zone: &Zone, at: SystemTime) -> Result<f64>;

    /// The spot price changes between `from` and `to`, oldest first. The first point is the
    /// price in force at `from` (it may be dated earlier); each point holds until the next.
    ///
    /// # Errors
    /// [`Error::NoPrice`](crate::Error::NoPrice) when there is no spot market for them.
    fn spot_history(
        &self,
        instance_type: &str,
        zone: &Zone,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<PricePoint>>;

    /// A maximum spot price to bid for `instance_type` in `zone` at `at`. By default
    /// [`DEFAULT_BID_FRACTION`] of the on-demand price.
    ///
    /// # Errors
    /// [`Error::NoPrice`](crate::Error::NoPrice) when the type is unknown.
    fn recommend_bid(&self, instance_type: &str, zone: &Zone, at: SystemTime) -> Result<f64> {
        let _ = (zone, at);
        Ok(self.on_demand_price(instance_type)? * DEFAULT_BID_FRACTION)
    }
}

/// A price from a moment on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PricePoint {
    /// From when the price holds.
    pub at: SystemTime,
    /// The price, in USD per hour.
    pub usd_per_hour: f64,
}

impl PricePoint {
    /// A price point.
    #[must_use]
    pub const fn new(at: SystemTime, usd_per_hour: f64) -> Self {
        Self { at, usd_per_hour }
    }
}

/// The price in force at `at` in a step curve sorted oldest first: that of the last point at or
/// before `at`; `None` when every point is later.
#[must_use]
pub fn price_at(points: &[PricePoint], at: SystemTime) -> Option<f64> {
    let after = points.partition_point(|p| p.at <= at);
    after.checked_sub(1).map(|i| points[i].usd_per_hour)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[derive(Debug)]
    struct OnlyOnDemand;

    impl PricingOracle for OnlyOnDemand {
        fn on_demand_price(&self, instance_type: &str) -> Result<f64> {
            if instance_type == "t" {
                Ok(1.5)
            } else {
                Err(Error::NoPrice {
                    instance_type: instance_type.into(),
                    zone: None,
                })
            }
        }
        fn spot_price(&self, instance_type: &str, zone: &Zone, _at: SystemTime) -> Result<f64> {
            Err(Error::NoPrice {
                instance_type: instance_type.into(),
                zone: Some(zone.to_string()),
            })
        }
        fn spot_history(
            &self,
            t: &str,
            z: &Zone,
            from: SystemTime,
            _to: SystemTime,
        ) -> Result<Vec<PricePoint>> {
            self.spot_price(t, z, from).map(|_| Vec::new())
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn default_bid_should_be_a_fifth_of_on_demand() {
        let bid = OnlyOnDemand
            .recommend_bid("t", &Zone::from("z"), t(0))
            .expect("known type");
        assert!((bid - 0.3).abs() < 1e-12);
        assert_eq!(HISTORY_WINDOW, Duration::from_secs(172_800));
    }

    #[test]
    fn unknown_types_should_have_no_price() {
        let err = OnlyOnDemand
            .recommend_bid("x", &Zone::from("z"), t(0))
            .expect_err("unknown");
        assert!(matches!(err, Error::NoPrice { .. }));
        let err = OnlyOnDemand
            .spot_price("t", &Zone::from("z"), t(0))
            .expect_err("no spot");
        assert_eq!(
            err.to_string(),
            "no price for instance type `t` in zone `z`"
        );
    }

    #[test]
    fn price_at_should_follow_the_step_curve() {
        let curve = [PricePoint::new(t(10), 1.0), PricePoint::new(t(20), 2.0)];
        assert_eq!(price_at(&curve, t(5)), None);
        assert_eq!(price_at(&curve, t(10)), Some(1.0));
        assert_eq!(price_at(&curve, t(19)), Some(1.0));
        assert_eq!(price_at(&curve, t(25)), Some(2.0));
    }
}
