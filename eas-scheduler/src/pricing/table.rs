//! [`PriceTable`]: a pricing oracle from a table of prices that do not change with time.
//!
//! On-demand prices per instance type; spot prices either given per (type, zone), or as a
//! fraction of the on-demand price (per type, or for every type), valid in every zone.
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::PricingOracle;
//! use eas_core::resources::Zone;
//! use eas_scheduler::pricing::PriceTable;
//!
//! let table = PriceTable::builder()
//!     .with_on_demand("ecs.gn6i-c4g1.xlarge", 2.58)
//!     .with_on_demand("ecs.gn6v-c8g1.2xlarge", 9.0)
//!     .with_spot("ecs.gn6i-c4g1.xlarge", "cn-hangzhou-h", 0.40)
//!     .with_default_spot_fraction(0.3) // a 70 % discount everywhere else
//!     .build()?;
//! let now = SystemTime::now();
//! let h = Zone::from("cn-hangzhou-h");
//! assert_eq!(table.spot_price("ecs.gn6i-c4g1.xlarge", &h, now)?, 0.40);
//! assert!((table.spot_price("ecs.gn6v-c8g1.2xlarge", &h, now)? - 2.7).abs() < 1e-12);
//! assert!((table.recommend_bid("ecs.gn6i-c4g1.xlarge", &h, now)? - 0.516).abs() < 1e-12);
//! assert!(table.on_demand_price("ecs.unknown").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::time::SystemTime;

use eas_core::PricingOracle;
use eas_core::pricing::PricePoint;
use eas_core::resources::Zone;

use crate::Error;

/// Prices constant in time: on-demand per type, spot per (type, zone) or as a fraction of
/// on-demand. Built with [`PriceTable::builder`].
///
/// Spot lookup order: the (type, zone) price, else the type's spot fraction times its
/// on-demand price, else the default spot fraction times the on-demand price, else
/// [`eas_core::Error::NoPrice`]. The bid is the trait's default, [`DEFAULT_BID_FRACTION`] of
/// on-demand.
///
/// [`DEFAULT_BID_FRACTION`]: eas_core::pricing::DEFAULT_BID_FRACTION
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    on_demand: BTreeMap<String, f64>,
    spot: BTreeMap<String, BTreeMap<Zone, f64>>,
    spot_fraction: BTreeMap<String, f64>,
    default_spot_fraction: Option<f64>,
}

impl PriceTable {
    /// An empty builder.
    pub fn builder() -> PriceTableBuilder {
        PriceTableBuilder::default()
    }

    /// The instance types with an on-demand price, in name order.
    pub fn instance_types(&self) -> impl Iterator<Item = &str> {
        self.on_demand.keys().map(String::as_str)
    }

    fn no_price(instance_type: &str, zone: Option<&Zone>) -> eas_core::Error {
        eas_core::Error::NoPrice {
            instance_type: instance_type.to_owned(),
            zone: zone.map(ToString::to_string),
        }
    }
}

impl PricingOracle for PriceTable {
    fn on_demand_price(&self, instance_type: &str) -> eas_core::Result<f64> {
        self.on_demand
            .get(instance_type)
            .copied()
            .ok_or_else(|| Self::no_price(instance_type, None))
    }

    fn spot_price(
        &self,
        instance_type: &str,
        zone: &Zone,
        _at: SystemTime,
    ) -> eas_core::Result<f64> {
        if let Some(&price) = self.spot.get(instance_type).and_then(|z| z.get(zone)) {
            return Ok(price);
        }
        let fraction = self
            .spot_fraction
            .get(instance_type)
            .copied()
            .or(self.default_spot_fraction);
        match (fraction, self.on_demand.get(instance_type)) {
            (Some(fraction), Some(on_demand)) => Ok(on_demand * fraction),
            _ => Err(Self::no_price(instance_type, Some(zone))),
        }
    }

    /// One point at `from` (the price never changes); empty when `to` is before `from`.
    fn spot_history(
        &self,
        instance_type: &str,
        zone: &Zone,
        from: SystemTime,
        to: SystemTime,
    ) -> eas_core::Result<Vec<PricePoint>> {
        let price = self.spot_price(instance_type, zone, from)?;
        Ok(if to < from {
            Vec::new()
        } else {
            vec![PricePoint::new(from, price)]
        })
    }
}

/// Builds a [`PriceTable`]; [`build`](Self::build) checks the prices.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct PriceTableBuilder {
    table: PriceTable,
}

impl PriceTableBuilder {
    /// The same with the on-demand price of `instance_type`, in USD per hour.
    pub fn with_on_demand(mut self, instance_type: impl Into<String>, usd_per_hour: f64) -> Self {
        self.table
            .on_demand
            .insert(instance_type.into(), usd_per_hour);
        self
    }

    /// The same with the spot price of `instance_type` in `zone`, in USD per hour.
    pub fn with_spot(
        mut self,
        instance_type: impl Into<String>,
        zone: impl Into<Zone>,
        usd_per_hour: f64,
    ) -> Self {
        self.table
            .spot
            .entry(instance_type.into())
            .or_default()
            .insert(zone.into(), usd_per_hour);
        self
    }

    /// The same with the spot price of `instance_type`, in every zone without a price of its
    /// own, at `fraction` of its on-demand price (a 70 % discount is 0.3).
    pub fn with_spot_fraction(mut self, instance_type: impl Into<String>, fraction: f64) -> Self {
        self.table
            .spot_fraction
            .insert(instance_type.into(), fraction);
        self
    }

    /// The same with a spot price for every type with an on-demand price and no other spot
    /// price, at `fraction` of on-demand.
    pub fn with_default_spot_fraction(mut self, fraction: f64) -> Self {
        self.table.default_spot_fraction = Some(fraction);
        self
    }

    /// The table.
    ///
    /// # Errors
    /// [`Error::Policy`] when a price is negative or not finite, a fraction is not a finite
    /// positive number, or a type has a spot fraction but no on-demand price.
    pub fn build(self) -> Result<PriceTable, Error> {
        let table = self.table;
        let bad_price = |p: f64| !p.is_finite() || p < 0.0;
        let bad_fraction = |f: f64| !f.is_finite() || f <= 0.0;
        for (t, &p) in &table.on_demand {
            if bad_price(p) {
                return Err(Error::Policy(format!("on-demand price of `{t}` is {p}")));
            }
        }
        for (t, zones) in &table.spot {
            for (z, &p) in zones {
                if bad_price(p) {
                    return Err(Error::Policy(format!(
                        "spot price of `{t}` in `{z}` is {p}"
                    )));
                }
            }
        }
        for (t, &f) in &table.spot_fraction {
            if bad_fraction(f) {
                return Err(Error::Policy(format!("spot fraction of `{t}` is {f}")));
            }
            if !table.on_demand.contains_key(t) {
                return Err(Error::Policy(format!(
                    "`{t}` has a spot fraction but no on-demand price"
                )));
            }
        }
        if let Some(f) = table.default_spot_fraction.filter(|&f| bad_fraction(f)) {
            return Err(Error::Policy(format!("default spot fraction is {f}")));
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::builder()
            .with_on_demand("a", 1.0)
            .with_on_demand("b", 2.0)
            .with_on_demand("c", 4.0)
            .with_spot("a", "z1", 0.3)
            .with_spot("x", "z1", 0.1)
            .with_spot_fraction("b", 0.5)
            .build()
            .expect("valid")
    }

    #[test]
    fn spot_prices_should_come_from_the_zone_then_the_fraction() {
        let (t, now) = (table(), SystemTime::UNIX_EPOCH);
        let z1 = Zone::from("z1");
        assert_eq!(t.spot_price("a", &z1, now).ok(), Some(0.3));
        assert_eq!(t.spot_price("b", &Zone::from("any"), now).ok(), Some(1.0));
        assert_eq!(
            t.spot_price("x", &z1, now).ok(),
            Some(0.1),
            "spot without on-demand"
        );
        let err = t
            .spot_price("a", &Zone::from("z2"), now)
            .expect_err("no zone");
        assert_eq!(
            err.to_string(),
            "no price for instance type `a` in zone `z2`"
        );
        assert!(t.spot_price("c", &z1, now).is_err(), "no fraction for c");
        assert!(t.on_demand_price("x").is_err());
        assert_eq!(t.instance_types().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn the_default_fraction_should_price_every_type_with_on_demand() {
        let t = PriceTable::builder()
            .with_on_demand("c", 4.0)
            .with_default_spot_fraction(0.25)
            .build()
            .expect("valid");
        let z = Zone::from("z");
        assert_eq!(
            t.spot_price("c", &z, SystemTime::UNIX_EPOCH).ok(),
            Some(1.0)
        );
        assert!(t.spot_price("d", &z, SystemTime::UNIX_EPOCH).is_err());
    }

    #[test]
    fn history_should_be_one_point_at_from() {
        let t = table();
        let (from, to) = (SystemTime::UNIX_EPOCH, SystemTime::now());
        let z = Zone::from("z1");
        assert_eq!(
            t.spot_history("a", &z, from, to).ok(),
            Some(vec![PricePoint::new(from, 0.3)])
        );
        assert_eq!(t.spot_history("a", &z, to, from).ok(), Some(vec![]));
    }

    #[test]
    fn bad_prices_should_be_refused() {
        let cases = [
            PriceTable::builder().with_on_demand("a", -1.0),
            PriceTable::builder().with_on_demand("a", f64::NAN),
            PriceTable::builder().with_spot("a", "z", f64::INFINITY),
            PriceTable::builder().with_spot_fraction("a", 0.5),
            PriceTable::builder()
                .with_on_demand("a", 1.0)
                .with_spot_fraction("a", 0.0),
            PriceTable::builder().with_default_spot_fraction(-0.1),
        ];
        for case in cases {
            assert!(
                matches!(case.clone().build(), Err(Error::Policy(_))),
                "{case:?}"
            );
        }
    }
}
