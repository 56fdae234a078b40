//! The simulated cloud's markets: [`SimCloud`] (prices, spot availability, when a spot machine
//! is reclaimed) and [`Availability`] (a SkyPilot trace replayed from the simulation start).
//!
//! - **Prices** come from a [`PricingOracle`]: a [`TraceOracle`] ([`SimCloud::new`]: spot
//!   prices per (type, zone) as step curves, on-demand list prices per type, its series
//!   naming the spot markets), or any oracle with the spot markets listed by the caller
//!   ([`SimCloud::from_oracle`]).
//! - **Availability**: where a SkyPilot trace is given for a (type, zone), the spot market is
//!   open while the trace's count is above 0; otherwise it is always open. While it is closed
//!   [`SimCloud`] (as the [`PricingOracle`] the scheduler sees) has no spot price there, so the
//!   scheduler falls through to the next zone or type, exactly as for a failed bid; on-demand
//!   machines are never short.
//! - **Reclaims**: a spot machine bought with bid `b` is reclaimed at the first moment, once its
//!   protection is over, when the price is above `b` or when its slot of the availability trace
//!   is lost. Multi-node traces (counts 0..k) give each machine a slot `0..k` in launch order,
//!   and a tick with count `c` reclaims every machine whose slot is `>= c`: a drop reclaims all
//!   the machines of that zone above the new count at once (correlated preemptions).
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_core::pricing::PricePoint;
//! use eas_core::resources::Zone;
//! use eas_scheduler::pricing::{AvailabilityTrace, TraceOracle};
//! use eas_scheduler::sim::{Availability, SimCloud};
//!
//! let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
//! let oracle = TraceOracle::new()
//!     .with_on_demand("c5", 1.0)
//!     .with_series("c5", "a", [PricePoint::new(t(0), 0.3), PricePoint::new(t(7_200), 0.6)]);
//! let trace = AvailabilityTrace::new("a.json", t(0), Duration::from_secs(600), vec![1, 1, 1, 0])?;
//! let cloud = SimCloud::new(oracle).with_availability(Availability::new("c5", "a", &trace, t(0)));
//! // Bid 0.5, protection until 1 h. The price goes above the bid at 2 h; the trace (10-minute
//! // ticks, closed in its 4th) repeats from the start, so the zone closes again at 70 min.
//! let reclaim = cloud.reclaim_at("c5", &Zone::from("a"), 0.5, 0, t(3_600), t(86_400));
//! assert_eq!(reclaim, Some(t(4_200)));
//! # Ok::<(), eas_scheduler::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eas_core::PricingOracle;
use eas_core::pricing::PricePoint;
use eas_core::resources::Zone;

use crate::pricing::{AvailabilityTrace, TraceOracle};

/// Spot availability of one (instance type, zone): a SkyPilot trace replayed from `start`,
/// from its first tick, again and again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    instance_type: String,
    zone: Zone,
    start: SystemTime,
    gap: Duration,
    counts: Vec<u32>,
    capacity: u32,
}

impl Availability {
    /// `trace`'s counts for `instance_type` in `zone`, tick 0 at `start` (the trace's own start
    /// is ignored: the files carry only a date, not aligned with price histories).
    #[must_use]
    pub fn new(
        instance_type: impl Into<String>,
        zone: impl Into<Zone>,
        trace: &AvailabilityTrace,
        start: SystemTime,
    ) -> Self {
        Self {
            instance_type: instance_type.into(),
            zone: zone.into(),
            start,
            gap: trace.gap(),
            counts: trace.counts().to_vec(),
            capacity: trace.capacity().max(1),
        }
    }

    /// The instance type.
    #[must_use]
    pub fn instance_type(&self) -> &str {
        &self.instance_type
    }

    /// The zone.
    #[must_use]
    pub const fn zone(&self) -> &Zone {
        &self.zone
    }

    /// How many machines the trace held at most (the number of slots).
    #[must_use]
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The tick in force at `t`, counting from `start` without wrapping (0 before it).
    fn tick(&self, t: SystemTime) -> u64 {
        let since = t.duration_since(self.start).unwrap_or_default();
        u64::try_from(since.as_nanos() / self.gap.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    fn count_of_tick(&self, tick: u64) -> u32 {
        if self.counts.is_empty() {
            return self.capacity;
        }
        let i = usize::try_from(tick % self.counts.len() as u64).unwrap_or(0);
        self.counts[i]
    }

    fn tick_start(&self, tick: u64) -> SystemTime {
        let nanos = u128::from(tick) * self.gap.as_nanos();
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many machines were available at `t`.
    #[must_use]
    pub fn count_at(&self, t: SystemTime) -> u32 {
        self.count_of_tick(self.tick(t))
    }

    /// Whether spot machines can be bought at `t`.
    #[must_use]
    pub fn is_open(&self, t: SystemTime) -> bool {
        self.count_at(t) > 0
    }

    /// The first moment at or after `from` and before `until` when a machine in `slot` is lost
    /// (the count is at or below its slot).
    #[must_use]
    pub fn first_loss(&self, slot: u32, from: SystemTime, until: SystemTime) -> Option<SystemTime> {
        let slot = slot % self.capacity;
        let mut tick = self.tick(from);
        loop {
            let at = self.tick_start(tick).max(from);
            if at >= until {
                return None;
            }
            if self.count_of_tick(tick) <= slot {
                return Some(at);
            }
            tick += 1;
        }
    }
}

/// The simulated cloud's markets: prices from a [`PricingOracle`], spot availability from
/// [`Availability`] traces. As a [`PricingOracle`] it hides the spot price of a closed market.
#[derive(Debug, Clone)]
pub struct SimCloud {
    oracle: Arc<dyn PricingOracle>,
    /// The (type, zone) pairs with a spot market.
    markets: BTreeSet<(String, Zone)>,
    availability: BTreeMap<(String, Zone), Availability>,
}

impl Default for SimCloud {
    /// No prices, no markets.
    fn default() -> Self {
        Self::new(TraceOracle::new())
    }
}

impl SimCloud {
    /// A cloud with these prices, a spot market for each of the oracle's series, and every
    /// spot market always open.
    #[must_use]
    pub fn new(oracle: TraceOracle) -> Self {
        let markets = oracle
            .series_keys()
            .map(|(t, z)| (t.to_owned(), z.clone()))
            .collect();
        Self {
            oracle: Arc::new(oracle),
            markets,
            availability: BTreeMap::new(),
        }
    }

    /// A cloud with prices from any oracle and spot markets for these (type, zone) pairs
    /// (the [`PricingOracle`] trait cannot list them), every one always open.
    #[must_use]
    pub fn from_oracle(
        oracle: Arc<dyn PricingOracle>,
        spot_markets: impl IntoIterator<Item = (String, Zone)>,
    ) -> Self {
        Self {
            oracle,
            markets: spot_markets.into_iter().collect(),
            availability: BTreeMap::new(),
        }
    }

    /// The same with the availability of one (type, zone) from a trace (replacing any before).
    #[must_use]
    pub fn with_availability(mut self, availability: Availability) -> Self {
        let key = (
            availability.instance_type.clone(),
            availability.zone.clone(),
        );
        self.availability.insert(key, availability);
        self
    }

    /// The price oracle underneath (spot prices regardless of availability).
    #[must_use]
    pub fn oracle(&self) -> &dyn PricingOracle {
        self.oracle.as_ref()
    }

    /// The (type, zone) pairs with a spot market, by type then zone.
    pub fn spot_markets(&self) -> impl Iterator<Item = (&str, &Zone)> {
        self.markets.iter().map(|(t, z)| (t.as_str(), z))
    }

    /// The availability trace of (type, zone), if one was given.
    #[must_use]
    pub fn availability(&self, instance_type: &str, zone: &Zone) -> Option<&Availability> {
        self.availability
            .get(&(instance_type.to_owned(), zone.clone()))
    }

    /// The (type, zone) pairs with an availability trace.
    pub fn availability_keys(&self) -> impl Iterator<Item = (&str, &Zone)> {
        self.availability.keys().map(|(t, z)| (t.as_str(), z))
    }

    /// Whether spot machines of `instance_type` can be bought in `zone` at `t`.
    #[must_use]
    pub fn is_open(&self, instance_type: &str, zone: &Zone, t: SystemTime) -> bool {
        self.availability(instance_type, zone)
            .is_none_or(|a| a.is_open(t))
    }

    /// The slots of the availability trace of (type, zone): 1 when there is none.
    #[must_use]
    pub fn slots(&self, instance_type: &str, zone: &Zone) -> u32 {
        self.availability(instance_type, zone)
            .map_or(1, Availability::capacity)
    }

    /// When a spot machine of `instance_type` in `zone` bought with `bid`, holding `slot`, is
    /// reclaimed: the first moment in `[from, until)` when the price is above the bid or its
    /// availability slot is lost; `None` when neither happens. `from` is when its protection
    /// ends (its launch, without protection).
    #[must_use]
    pub fn reclaim_at(
        &self,
        instance_type: &str,
        zone: &Zone,
        bid: f64,
        slot: u32,
        from: SystemTime,
        until: SystemTime,
    ) -> Option<SystemTime> {
        let by_price = self
            .oracle
            .spot_history(instance_type, zone, from, until)
            .ok()
            .and_then(|points| above(&points, bid, from));
        let by_loss = self
            .availability(instance_type, zone)
            .and_then(|a| a.first_loss(slot, from, until));
        match (by_price, by_loss) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The cheapest way to run one machine of any of `types` at `t`, in USD per hour: an open
    /// spot market (times `spot_factor`) in any of `zones`, or on demand.
    #[must_use]
    pub fn cheapest(&self, types: &[&str], zones: &[Zone], t: SystemTime, spot_factor: f64) -> f64 {
        let mut best = f64::INFINITY;
        for ty in types {
            if let Ok(p) = self.oracle.on_demand_price(ty) {
                best = best.min(p);
            }
            for zone in zones {
                if let Ok(p) = self.spot_price(ty, zone, t) {
                    best = best.min(p * spot_factor);
                }
            }
        }
        if best.is_finite() { best } else { 0.0 }
    }
}

/// The first point priced above `bid` (at `from` or later).
fn above(points: &[PricePoint], bid: f64, from: SystemTime) -> Option<SystemTime> {
    points
        .iter()
        .find(|p| p.usd_per_hour > bid)
        .map(|p| p.at.max(from))
}

impl PricingOracle for SimCloud {
    fn on_demand_price(&self, instance_type: &str) -> eas_core::Result<f64> {
        self.oracle.on_demand_price(instance_type)
    }

    /// The trace's price while the market is open; [`eas_core::Error::NoPrice`] while closed.
    fn spot_price(
        &self,
        instance_type: &str,
        zone: &Zone,
        at: SystemTime,
    ) -> eas_core::Result<f64> {
        if !self.is_open(instance_type, zone, at) {
            return Err(eas_core::Error::NoPrice {
                instance_type: instance_type.to_owned(),
                zone: Some(zone.to_string()),
            });
        }
        self.oracle.spot_price(instance_type, zone, at)
    }

    fn spot_history(
        &self,
        instance_type: &str,
        zone: &Zone,
        from: SystemTime,
        to: SystemTime,
    ) -> eas_core::Result<Vec<PricePoint>> {
        self.oracle.spot_history(instance_type, zone, from, to)
    }

    fn recommend_bid(
        &self,
        instance_type: &str,
        zone: &Zone,
        at: SystemTime,
    ) -> eas_core::Result<f64> {
        self.oracle.recommend_bid(instance_type, zone, at)
    }
}
