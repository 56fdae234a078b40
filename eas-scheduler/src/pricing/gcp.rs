//! Reader for weekly snapshots of Google Cloud on-demand and Spot VM prices.
//!
//! Columns (by name, in any order, others ignored): `snapshot_utc` (RFC 3339, offsets allowed),
//! `machine_type`, `region`, `on_demand_usd_per_hour`, `spot_usd_per_hour`.
//!
//! GCP prices by region, so the zone of each series is the region (`us-central1`). Spot prices
//! become a step series per (machine type, region), each snapshot a point. On-demand prices
//! come from each (type, region)'s latest snapshot; as [`PricingOracle::on_demand_price`] has no
//! zone, it answers the highest of those regional prices (a cap that is never too low), while
//! [`TraceOracle::on_demand_price_in`] and bids use the region's own.
//!
//! GCP Spot has no bidding: a recommended bid here only says which price the policy would stop
//! at.
//!
//! ```
//! use eas_core::PricingOracle;
//! use eas_scheduler::pricing::gcp;
//!
//! let csv = "snapshot_utc,machine_type,region,on_demand_usd_per_hour,spot_usd_per_hour
//! 2023-05-08T06:42:48Z,g2-standard-4,us-central1,0.7068,0.212
//! 2023-05-08T06:42:48Z,g2-standard-4,asia-east1,0.78,0.25
//! ";
//! let oracle = gcp::read_weekly_csv(csv.as_bytes(), "gcp.csv")?;
//! assert_eq!(oracle.series_count(), 2);
//! assert_eq!(oracle.on_demand_price("g2-standard-4")?, 0.78);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`PricingOracle::on_demand_price`]: eas_core::PricingOracle::on_demand_price

use std::collections::BTreeMap;
use std::io::Read;
use std::time::SystemTime;

use eas_core::pricing::PricePoint;
use eas_core::resources::Zone;

use super::input::CsvTrace;
use super::trace::TraceOracle;
use crate::Error;

const COLUMNS: [&str; 5] = [
    "snapshot_utc",
    "machine_type",
    "region",
    "on_demand_usd_per_hour",
    "spot_usd_per_hour",
];

/// A [`TraceOracle`] from a weekly GCP price CSV. `trace` names the file in errors.
///
/// # Errors
/// [`Error::Trace`] naming the line of the first row with a missing column, a bad snapshot time
/// or a price that is not a finite number, zero or more.
pub fn read_weekly_csv(reader: impl Read, trace: &str) -> Result<TraceOracle, Error> {
    let mut spot: BTreeMap<(String, Zone), Vec<PricePoint>> = BTreeMap::new();
    let mut on_demand: BTreeMap<(String, Zone), (SystemTime, f64)> = BTreeMap::new();
    CsvTrace::open(reader, trace, &COLUMNS)?.for_each(|row| {
        let at = row.time(0, COLUMNS[0])?;
        let key = (
            row.text(1, COLUMNS[1])?.to_owned(),
            Zone::from(row.text(2, COLUMNS[2])?),
        );
        let od = row.price(3, COLUMNS[3])?;
        let price = row.price(4, COLUMNS[4])?;
        let latest = on_demand.entry(key.clone()).or_insert((at, od));
        if at >= latest.0 {
            *latest = (at, od);
        }
        spot.entry(key)
            .or_default()
            .push(PricePoint::new(at, price));
        Ok(())
    })?;
    let mut oracle = TraceOracle::new();
    let mut highest: BTreeMap<String, f64> = BTreeMap::new();
    for ((machine, region), (_, price)) in on_demand {
        let top = highest.entry(machine.clone()).or_insert(price);
        *top = top.max(price);
        oracle = oracle.with_zone_on_demand(machine, region, price);
    }
    oracle = oracle.with_on_demand_prices(highest);
    Ok(spot.into_iter().fold(oracle, |oracle, ((t, z), points)| {
        oracle.with_series(t, z, points)
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use eas_core::PricingOracle;

    use super::*;

    const HEADER: &str = "snapshot_utc,generated_unix,source_commit,machine_type,region,on_demand_usd_per_hour,spot_usd_per_hour\n";

    #[test]
    fn on_demand_should_come_from_the_latest_snapshot_of_each_region() {
        let csv = format!(
            "{HEADER}2023-05-09T14:08:28+02:00,1,c,n1,us,1.0,0.2\n\
             2023-05-08T06:42:48Z,1,c,n1,us,0.9,0.1\n\
             2023-05-08T06:42:48Z,1,c,n1,eu,1.1,0.3\n"
        );
        let o = read_weekly_csv(csv.as_bytes(), "gcp.csv").expect("valid");
        assert_eq!(o.on_demand_price("n1").ok(), Some(1.1));
        assert_eq!(
            o.on_demand_price_in("n1", &Zone::from("us")).ok(),
            Some(1.0)
        );
        let us = o.series("n1", &Zone::from("us")).expect("us");
        assert_eq!(us.len(), 2);
        // +02:00 is read as an offset: 12:08:28 UTC.
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_683_634_108);
        assert_eq!(us[1], PricePoint::new(at, 0.2));
    }

    #[test]
    fn bad_rows_should_name_their_line() {
        let csv = format!(
            "{HEADER}2023-05-08T06:42:48Z,1,c,n1,us,1.0,0.2\n2023-05-08T06:42:48Z,1,c,n1,us,1.0,\n"
        );
        let err = read_weekly_csv(csv.as_bytes(), "gcp.csv").expect_err("empty spot");
        assert!(
            matches!(&err, Error::Trace { line: 3, reason, .. } if reason == "empty `spot_usd_per_hour`"),
            "{err}"
        );
        let csv = format!("{HEADER}yesterday,1,c,n1,us,1.0,0.2\n");
        let err = read_weekly_csv(csv.as_bytes(), "gcp.csv").expect_err("bad time");
        assert!(matches!(err, Error::Trace { line: 2, .. }), "{err}");
    }
}
