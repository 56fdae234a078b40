//! Readers for AWS price files: `describe-spot-price-history` as CSV, and on-demand list prices.
//!
//! Spot CSV columns (by name, in any order, others ignored): `instance_type`,
//! `availability_zone`, `timestamp_utc` (RFC 3339), `product_description`,
//! `spot_price_usd_per_hour`. Each row is a price change for (type, zone). Only Linux rows
//! (`Linux/UNIX`, `Linux/UNIX (Amazon VPC)`) are kept: other operating systems are priced
//! apart and would interleave with them.
//!
//! On-demand CSV columns: `instance_type`, `on_demand_usd_per_hour` (one region per file).
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::PricingOracle;
//! use eas_core::resources::Zone;
//! use eas_scheduler::pricing::aws;
//!
//! let spot = "instance_type,availability_zone,timestamp_utc,region,product_description,spot_price_usd_per_hour,capture
//! c5.large,us-east-1a,2021-03-02T02:38:36Z,us-east-1,Linux/UNIX,0.035000,2021-05-30
//! ";
//! let on_demand = "instance_type,region,on_demand_usd_per_hour\nc5.large,us-east-1,0.085\n";
//! let oracle = aws::load(spot.as_bytes(), "spot.csv", on_demand.as_bytes(), "od.csv")?;
//! assert_eq!(oracle.series_count(), 1);
//! assert_eq!(oracle.on_demand_price("c5.large")?, 0.085);
//! assert_eq!(oracle.spot_price("c5.large", &Zone::from("us-east-1a"), SystemTime::now())?, 0.035);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::io::Read;

use eas_core::pricing::PricePoint;
use eas_core::resources::Zone;

use super::input::CsvTrace;
use super::trace::TraceOracle;
use crate::Error;

const SPOT_COLUMNS: [&str; 5] = [
    "instance_type",
    "availability_zone",
    "timestamp_utc",
    "product_description",
    "spot_price_usd_per_hour",
];

/// The spot series of a `describe-spot-price-history` CSV, one per (type, zone), without
/// on-demand prices. `trace` names the file in errors.
///
/// # Errors
/// [`Error::Trace`] naming the line of the first row with a missing column, an empty type or
/// zone, a bad timestamp or a price that is not a finite number, zero or more.
pub fn read_spot_csv(reader: impl Read, trace: &str) -> Result<TraceOracle, Error> {
    let mut series: BTreeMap<(String, Zone), Vec<PricePoint>> = BTreeMap::new();
    CsvTrace::open(reader, trace, &SPOT_COLUMNS)?.for_each(|row| {
        let instance_type = row.text(0, SPOT_COLUMNS[0])?;
        let zone = row.text(1, SPOT_COLUMNS[1])?;
        let at = row.time(2, SPOT_COLUMNS[2])?;
        let product = row.text(3, SPOT_COLUMNS[3])?;
        let price = row.price(4, SPOT_COLUMNS[4])?;
        if matches!(product, "Linux/UNIX" | "Linux/UNIX (Amazon VPC)") {
            series
                .entry((instance_type.to_owned(), Zone::from(zone)))
                .or_default()
                .push(PricePoint::new(at, price));
        }
        Ok(())
    })?;
    Ok(series
        .into_iter()
        .fold(TraceOracle::new(), |oracle, ((t, z), points)| {
            oracle.with_series(t, z, points)
        }))
}

/// On-demand prices by instance type from an on-demand CSV of one region.
///
/// # Errors
/// [`Error::Trace`] naming the line of a bad row, or of a type listed twice with two prices.
pub fn read_on_demand_csv(reader: impl Read, trace: &str) -> Result<BTreeMap<String, f64>, Error> {
    let mut prices = BTreeMap::new();
    CsvTrace::open(reader, trace, &["instance_type", "on_demand_usd_per_hour"])?.for_each(
        |row| {
            let instance_type = row.text(0, "instance_type")?;
            let price = row.price(1, "on_demand_usd_per_hour")?;
            match prices.insert(instance_type.to_owned(), price) {
            Some(earlier) if earlier != price => Err(row.error(format!(
                "`{instance_type}` is listed again at {price} (was {earlier}): one region per file"
            ))),
            _ => Ok(()),
        }
        },
    )?;
    Ok(prices)
}

/// A [`TraceOracle`] from a spot CSV and an on-demand CSV (see [`read_spot_csv`] and
/// [`read_on_demand_csv`]).
///
/// # Errors
/// [`Error::Trace`] as those do.
pub fn load(
    spot: impl Read,
    spot_trace: &str,
    on_demand: impl Read,
    on_demand_trace: &str,
) -> Result<TraceOracle, Error> {
    let prices = read_on_demand_csv(on_demand, on_demand_trace)?;
    Ok(read_spot_csv(spot, spot_trace)?.with_on_demand_prices(prices))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "instance_type,availability_zone,timestamp_utc,region,product_description,spot_price_usd_per_hour,capture\n";

    fn spot(rows: &str) -> Result<TraceOracle, Error> {
        read_spot_csv(format!("{HEADER}{rows}").as_bytes(), "spot.csv")
    }

    fn line_of(result: Result<TraceOracle, Error>) -> (usize, String) {
        match result {
            Err(Error::Trace {
                trace,
                line,
                reason,
            }) => {
                assert_eq!(trace, "spot.csv");
                (line, reason)
            }
            other => panic!("expected a trace error, got {other:?}"),
        }
    }

    #[test]
    fn rows_should_become_one_series_per_type_and_zone() {
        let o = spot(
            "c5.large,us-east-1a,2021-03-02T00:00:00Z,us-east-1,Linux/UNIX,0.03,x\n\
             c5.large,us-east-1b,2021-03-02T00:00:00Z,us-east-1,Linux/UNIX,0.04,x\n\
             c5.large,us-east-1a,2021-03-01T00:00:00Z,us-east-1,Linux/UNIX,0.02,x\n\
             c5.large,us-east-1a,2021-03-03T00:00:00Z,us-east-1,Windows,0.09,x\n",
        )
        .expect("valid");
        assert_eq!(o.series_count(), 2);
        let a = o.series("c5.large", &Zone::from("us-east-1a")).expect("a");
        assert_eq!(
            a.iter().map(|p| p.usd_per_hour).collect::<Vec<_>>(),
            [0.02, 0.03]
        );
    }

    #[test]
    fn bad_rows_should_name_their_line() {
        let ok = "c5.large,us-east-1a,2021-03-02T00:00:00Z,us-east-1,Linux/UNIX,0.03,x\n";
        let (line, reason) = line_of(spot(&format!(
            "{ok}{ok}c5.large,us-east-1a,2021-03-02T00:00:00Z,us-east-1,Linux/UNIX,abc,x\n"
        )));
        assert_eq!(line, 4);
        assert!(
            reason.contains("`spot_price_usd_per_hour` is `abc`"),
            "{reason}"
        );
        let (line, reason) = line_of(spot(&format!(
            "{ok}c5.large,us-east-1a,2021-03-02 00:00,us-east-1,Linux/UNIX,0.03,x\n"
        )));
        assert_eq!(line, 3);
        assert!(reason.contains("timestamp_utc"), "{reason}");
        let (line, reason) = line_of(spot("c5.large,us-east-1a,2021-03-02T00:00:00Z,us-east-1\n"));
        assert_eq!(line, 2);
        assert!(
            reason.contains("missing column `product_description`"),
            "{reason}"
        );
        let (line, _) = line_of(spot(
            "c5.large,us-east-1a,2021-03-02T00:00:00Z,us-east-1,Linux/UNIX,-1,x\n",
        ));
        assert_eq!(line, 2);
        let (line, _) = line_of(spot(
            "c5.large,us-east-1a,2021-03-02T00:00:00Z,us-east-1,Linux/UNIX,NaN,x\n",
        ));
        assert_eq!(line, 2);
        let (line, reason) = line_of(spot(
            ",us-east-1a,2021-03-02T00:00:00Z,us-east-1,Linux/UNIX,0.1,x\n",
        ));
        assert_eq!((line, reason.as_str()), (2, "empty `instance_type`"));
    }

    #[test]
    fn a_header_without_a_column_should_fail_at_line_1() {
        let result = read_spot_csv("instance_type,availability_zone\n".as_bytes(), "spot.csv");
        let (line, reason) = line_of(result);
        assert_eq!(line, 1);
        assert!(reason.contains("timestamp_utc"), "{reason}");
        let (line, _) = line_of(read_spot_csv(&b""[..], "spot.csv"));
        assert_eq!(line, 1);
    }

    #[test]
    fn on_demand_prices_should_be_read_by_type() {
        let csv = "instance_type,region,on_demand_usd_per_hour\na,r,1.5\nb,r,2\na,r,1.5\n";
        let prices = read_on_demand_csv(csv.as_bytes(), "od.csv").expect("valid");
        assert_eq!(prices.get("b"), Some(&2.0));
        let csv = "instance_type,region,on_demand_usd_per_hour\na,r,1.5\na,s,1.6\n";
        let err = read_on_demand_csv(csv.as_bytes(), "od.csv").expect_err("two prices");
        assert!(matches!(err, Error::Trace { line: 3, .. }), "{err}");
    }
}
