//! Pricing oracles: static tables and replays of real spot price traces.
//!
//! - [`PriceTable`]: prices constant in time, spot per zone or as a fraction of on-demand.
//! - [`TraceOracle`]: recorded spot prices replayed as step curves per (type, zone), read by
//!   [`aws`] (`describe-spot-price-history` CSV + on-demand list) and [`gcp`] (weekly
//!   snapshots); bids from history.
//! - [`AvailabilityTrace`] ([`skypilot`]): when spot capacity was there and when it was lost,
//!   for the simulator; some traces carry prices too.
//! - Bids ([`bid`]): [`FractionBid`] (EAS's 20 % of on-demand) and [`HistoryBid`] (a
//!   time-weighted percentile of the last 48 h, capped at on-demand), both [`BidPolicy`]s.
//! - [`stats`]: min, max, time-weighted mean and percentiles of a step curve over a window.
//!
//! Nothing here reads files: readers take any [`std::io::Read`] and a name for errors.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::PricingOracle;
//! use eas_core::resources::Zone;
//! use eas_scheduler::pricing::aws;
//!
//! let spot = "\
//! instance_type,availability_zone,timestamp_utc,product_description,spot_price_usd_per_hour
//! c5.large,us-east-1a,2021-03-01T00:00:00Z,Linux/UNIX,0.030
//! c5.large,us-east-1a,2021-03-02T00:00:00Z,Linux/UNIX,0.040
//! c5.large,us-east-1a,2021-03-02T12:00:00Z,Linux/UNIX,0.035
//! ";
//! let on_demand = "instance_type,on_demand_usd_per_hour\nc5.large,0.085\n";
//! let oracle = aws::load(spot.as_bytes(), "spot", on_demand.as_bytes(), "on-demand")?;
//! let zone = Zone::from("us-east-1a");
//! let (_, last) = oracle.span().expect("one series");
//! let at = last + Duration::from_secs(3600);
//! // The window starts before the trace: 0.030 for 24 h, 0.040 for 12 h, 0.035 for 1 h.
//! // Above 95 % of those 37 h lies 0.040.
//! assert_eq!(oracle.recommend_bid("c5.large", &zone, at)?, 0.040);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aws;
pub mod bid;
pub mod gcp;
pub(crate) mod input;
pub mod skypilot;
pub mod stats;
pub mod table;
pub mod trace;

pub use bid::{BidPolicy, FractionBid, HistoryBid};
pub use skypilot::AvailabilityTrace;
pub use stats::{WindowStats, percentile, window_stats};
pub use table::{PriceTable, PriceTableBuilder};
pub use trace::TraceOracle;
