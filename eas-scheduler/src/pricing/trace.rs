//! [`TraceOracle`]: a pricing oracle that replays recorded spot prices.
//!
//! Each (instance type, zone) has a step curve: a price holds from its point until the next
//! point, and the last point holds for ever. Lookups are binary searches.
//!
//! **Before the first point** of a series there is no price: [`PricingOracle::spot_price`]
//! answers [`eas_core::Error::NoPrice`] rather than guess (a recorded history says nothing about
//! the time before it began), and [`PricingOracle::spot_history`] starts at the first point.
//! Use [`TraceOracle::span`] to start a replay where every series has a price.
//!
//! Series are kept as price *changes*: points are sorted, a later point at the same instant
//! replaces an earlier one, and a point at the price already in force is dropped. That changes
//! no price at any time.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::PricingOracle;
//! use eas_core::pricing::PricePoint;
//! use eas_core::resources::Zone;
//! use eas_scheduler::pricing::TraceOracle;
//!
//! let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
//! let oracle = TraceOracle::new()
//!     .with_on_demand("c5.large", 0.085)
//!     .with_series("c5.large", "us-east-1a", [
//!         PricePoint::new(t(100), 0.035),
//!         PricePoint::new(t(200), 0.040),
//!     ]);
//! let zone = Zone::from("us-east-1a");
//! assert!(oracle.spot_price("c5.large", &zone, t(99)).is_err(), "before the trace");
//! assert_eq!(oracle.spot_price("c5.large", &zone, t(100))?, 0.035);
//! assert_eq!(oracle.spot_price("c5.large", &zone, t(200))?, 0.040);
//! let history = oracle.spot_history("c5.large", &zone, t(150), t(250))?;
//! assert_eq!(history.len(), 2, "starts with the point in force at `from`");
//! # Ok::<(), eas_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::time::SystemTime;

use eas_core::PricingOracle;
use eas_core::pricing::{PricePoint, price_at};
use eas_core::resources::Zone;

use super::bid::HistoryBid;

/// Spot prices replayed from traces, on-demand prices from a list; bids from a
/// [`HistoryBid`] (the 95th percentile of the last 48 h by default).
///
/// Built with [`TraceOracle::new`] and the `with_*` methods, or by the readers in
/// [`aws`](super::aws) and [`gcp`](super::gcp).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceOracle {
    on_demand: BTreeMap<String, f64>,
    zone_on_demand: BTreeMap<String, BTreeMap<Zone, f64>>,
    series: BTreeMap<String, BTreeMap<Zone, Vec<PricePoint>>>,
    bid: HistoryBid,
}

impl TraceOracle {
    /// An oracle without prices: every lookup is [`eas_core::Error::NoPrice`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The same with the on-demand price of `instance_type`, in USD per hour.
    #[must_use]
    pub fn with_on_demand(mut self, instance_type: impl Into<String>, usd_per_hour: f64) -> Self {
        self.on_demand.insert(instance_type.into(), usd_per_hour);
        self
    }

    /// The same with on-demand prices for several types.
    #[must_use]
    pub fn with_on_demand_prices(
        mut self,
        prices: impl IntoIterator<Item = (String, f64)>,
    ) -> Self {
        self.on_demand.extend(prices);
        self
    }

    /// The same with the on-demand price of `instance_type` in one zone (or region), for
    /// clouds whose list prices differ by region. [`TraceOracle::on_demand_price_in`] and the
    /// bid cap use it; [`PricingOracle::on_demand_price`], which has no zone, does not.
    #[must_use]
    pub fn with_zone_on_demand(
        mut self,
        instance_type: impl Into<String>,
        zone: impl Into<Zone>,
        usd_per_hour: f64,
    ) -> Self {
        self.zone_on_demand
            .entry(instance_type.into())
            .or_default()
            .insert(zone.into(), usd_per_hour);
        self
    }

    /// The same with spot price points for `instance_type` in `zone`, added to those already
    /// there, in any order (see the [module docs](self) for how they are kept).
    #[must_use]
    pub fn with_series(
        mut self,
        instance_type: impl Into<String>,
        zone: impl Into<Zone>,
        points: impl IntoIterator<Item = PricePoint>,
    ) -> Self {
        let series = self
            .series
            .entry(instance_type.into())
            .or_default()
            .entry(zone.into())
            .or_default();
        series.extend(points);
        normalize(series);
        self
    }

    /// The same bidding with `policy`.
    #[must_use]
    pub const fn with_bid_policy(mut self, policy: HistoryBid) -> Self {
        self.bid = policy;
        self
    }

    /// The prices of `self` and `other` together; for a type or zone in both, `other`'s
    /// on-demand prices win and spot points are merged.
    #[must_use]
    pub fn merge(mut self, other: Self) -> Self {
        self.on_demand.extend(other.on_demand);
        for (t, zones) in other.zone_on_demand {
            self.zone_on_demand.entry(t).or_default().extend(zones);
        }
        for (t, zones) in other.series {
            for (z, points) in zones {
                self = self.with_series(t.clone(), z, points);
            }
        }
        self
    }

    /// How many (instance type, zone) spot series there are.
    #[must_use]
    pub fn series_count(&self) -> usize {
        self.series.values().map(BTreeMap::len).sum()
    }

    /// Every (instance type, zone) with a spot series, in order.
    pub fn series_keys(&self) -> impl Iterator<Item = (&str, &Zone)> {
        self.series
            .iter()
            .flat_map(|(t, zones)| zones.keys().map(move |z| (t.as_str(), z)))
    }

    /// The spot series of `instance_type` in `zone`, oldest first.
    #[must_use]
    pub fn series(&self, instance_type: &str, zone: &Zone) -> Option<&[PricePoint]> {
        self.series
            .get(instance_type)
            .and_then(|zones| zones.get(zone))
            .map(Vec::as_slice)
    }

    /// The instance types with a spot series or an on-demand price, in name order.
    #[must_use]
    pub fn instance_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self
            .series
            .keys()
            .chain(self.on_demand.keys())
            .map(String::as_str)
            .collect();
        types.sort_unstable();
        types.dedup();
        types
    }

    /// When every series has a price, and when the last change was: from the latest first point
    /// to the latest last point. `None` without series, or when one series is empty.
    #[must_use]
    pub fn span(&self) -> Option<(SystemTime, SystemTime)> {
        let mut span: Option<(SystemTime, SystemTime)> = None;
        for zones in self.series.values() {
            for points in zones.values() {
                let (first, last) = (points.first()?.at, points.last()?.at);
                span = Some(span.map_or((first, last), |(a, b)| (a.max(first), b.max(last))));
            }
        }
        span
    }

    /// The on-demand price of `instance_type` in `zone`: the zone's own price if there is one,
    /// else the type's.
    ///
    /// # Errors
    /// [`eas_core::Error::NoPrice`] when there is neither.
    pub fn on_demand_price_in(&self, instance_type: &str, zone: &Zone) -> eas_core::Result<f64> {
        match self
            .zone_on_demand
            .get(instance_type)
            .and_then(|z| z.get(zone))
        {
            Some(&price) => Ok(price),
            None => self.on_demand_price(instance_type),
        }
    }

    /// The bid policy.
    #[must_use]
    pub const fn bid_policy(&self) -> &HistoryBid {
        &self.bid
    }

    fn spot_series(&self, instance_type: &str, zone: &Zone) -> eas_core::Result<&[PricePoint]> {
        self.series(instance_type, zone)
            .ok_or_else(|| no_price(instance_type, Some(zone)))
    }
}

impl PricingOracle for TraceOracle {
    fn on_demand_price(&self, instance_type: &str) -> eas_core::Result<f64> {
        self.on_demand
            .get(instance_type)
            .copied()
            .ok_or_else(|| no_price(instance_type, None))
    }

    /// The price of the last point at or before `at`; [`eas_core::Error::NoPrice`] before the
    /// first point.
    fn spot_price(
        &self,
        instance_type: &str,
        zone: &Zone,
        at: SystemTime,
    ) -> eas_core::Result<f64> {
        price_at(self.spot_series(instance_type, zone)?, at)
            .ok_or_else(|| no_price(instance_type, Some(zone)))
    }

    /// The point in force at `from` (dated at or before it), then every point up to and
    /// including `to`. Empty when `to < from` or the series starts after `to`.
    fn spot_history(
        &self,
        instance_type: &str,
        zone: &Zone,
        from: SystemTime,
        to: SystemTime,
    ) -> eas_core::Result<Vec<PricePoint>> {
        let points = self.spot_series(instance_type, zone)?;
        if to < from {
            return Ok(Vec::new());
        }
        let first = points.partition_point(|p| p.at <= from).saturating_sub(1);
        let last = points.partition_point(|p| p.at <= to);
        Ok(points.get(first..last).unwrap_or_default().to_vec())
    }

    /// The [`HistoryBid`] of the series, capped at [`TraceOracle::on_demand_price_in`]; the
    /// policy's fraction rule when the window holds no price.
    fn recommend_bid(
        &self,
        instance_type: &str,
        zone: &Zone,
        at: SystemTime,
    ) -> eas_core::Result<f64> {
        let points = self.spot_series(instance_type, zone)?;
        let on_demand = self.on_demand_price_in(instance_type, zone)?;
        Ok(self.bid.bid(points, at, on_demand))
    }
}

fn no_price(instance_type: &str, zone: Option<&Zone>) -> eas_core::Error {
    eas_core::Error::NoPrice {
        instance_type: instance_type.to_owned(),
        zone: zone.map(ToString::to_string),
    }
}

/// Sorts `points` by time, keeps the last of points at one instant, drops repeated prices.
fn normalize(points: &mut Vec<PricePoint>) {
    points.sort_by_key(|p| p.at);
    let mut kept: Vec<PricePoint> = Vec::with_capacity(points.len());
    for &point in points.iter() {
        match kept.last_mut() {
            Some(last) if last.at == point.at => *last = point,
            _ => kept.push(point),
        }
    }
    kept.dedup_by(|later, earlier| later.usd_per_hour == earlier.usd_per_hour);
    *points = kept;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn oracle() -> TraceOracle {
        TraceOracle::new().with_on_demand("a", 1.0).with_series(
            "a",
            "z",
            [
                PricePoint::new(t(30), 0.3),
                PricePoint::new(t(10), 0.1),
                PricePoint::new(t(20), 0.2),
            ],
        )
    }

    #[test]
    fn series_should_be_sorted_and_keep_only_changes() {
        let o = TraceOracle::new().with_series(
            "a",
            "z",
            [
                PricePoint::new(t(20), 0.2),
                PricePoint::new(t(10), 0.1),
                PricePoint::new(t(15), 0.1),
                PricePoint::new(t(20), 0.25),
                PricePoint::new(t(30), 0.25),
            ],
        );
        assert_eq!(
            o.series("a", &Zone::from("z")),
            Some(&[PricePoint::new(t(10), 0.1), PricePoint::new(t(20), 0.25)][..])
        );
    }

    #[test]
    fn spot_price_should_step_at_exact_boundaries() {
        let (o, z) = (oracle(), Zone::from("z"));
        let cases = [
            (9, None),
            (10, Some(0.1)),
            (19, Some(0.1)),
            (20, Some(0.2)),
            (30, Some(0.3)),
            (10_000, Some(0.3)),
        ];
        for (secs, want) in cases {
            assert_eq!(o.spot_price("a", &z, t(secs)).ok(), want, "at {secs}");
        }
    }

    #[test]
    fn history_should_start_with_the_point_in_force_at_from() {
        let (o, z) = (oracle(), Zone::from("z"));
        let at = |from, to| {
            o.spot_history("a", &z, t(from), t(to))
                .expect("known")
                .iter()
                .map(|p| p.usd_per_hour)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(15, 25), [0.1, 0.2]);
        assert_eq!(at(20, 25), [0.2], "a point at `from` is the one in force");
        assert_eq!(at(21, 30), [0.2, 0.3], "a point at `to` is included");
        assert_eq!(at(0, 15), [0.1], "before the trace: from the first point");
        assert_eq!(at(0, 5), Vec::<f64>::new());
        assert_eq!(at(25, 15), Vec::<f64>::new());
    }

    #[test]
    fn unknown_types_and_zones_should_have_no_price() {
        let o = oracle();
        let err = o
            .spot_price("b", &Zone::from("z"), t(20))
            .expect_err("unknown type");
        assert_eq!(
            err.to_string(),
            "no price for instance type `b` in zone `z`"
        );
        let err = o
            .spot_history("a", &Zone::from("y"), t(0), t(20))
            .expect_err("unknown zone");
        assert_eq!(
            err.to_string(),
            "no price for instance type `a` in zone `y`"
        );
        let err = o
            .recommend_bid("a", &Zone::from("y"), t(20))
            .expect_err("unknown zone");
        assert!(matches!(err, eas_core::Error::NoPrice { .. }));
        assert!(o.on_demand_price("b").is_err());
    }

    #[test]
    fn bids_should_use_history_and_fall_back_before_it() {
        let (o, z) = (oracle(), Zone::from("z"));
        assert_eq!(o.recommend_bid("a", &z, t(40)).ok(), Some(0.3));
        let bid = o.recommend_bid("a", &z, t(5)).expect("known");
        assert!((bid - 0.2).abs() < 1e-12, "20 % of on-demand");
        let capped = o.clone().with_zone_on_demand("a", "z", 0.25);
        assert_eq!(capped.recommend_bid("a", &z, t(40)).ok(), Some(0.25));
        assert_eq!(capped.on_demand_price("a").ok(), Some(1.0));
    }

    #[test]
    fn merge_should_keep_every_series() {
        let other = TraceOracle::new()
            .with_on_demand("b", 2.0)
            .with_series("a", "z", [PricePoint::new(t(40), 0.4)])
            .with_series("b", "y", [PricePoint::new(t(50), 1.0)]);
        let o = oracle().merge(other);
        assert_eq!(o.series_count(), 2);
        assert_eq!(o.series("a", &Zone::from("z")).map(<[_]>::len), Some(4));
        assert_eq!(o.instance_types(), ["a", "b"]);
        assert_eq!(o.span(), Some((t(50), t(50))));
        assert_eq!(
            o.series_keys()
                .map(|(t, z)| format!("{t}/{z}"))
                .collect::<Vec<_>>(),
            ["a/z", "b/y"]
        );
    }
}
