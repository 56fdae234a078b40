//! [`AvailabilityTrace`]: spot availability and preemption traces in the SkyPilot format
//! (`skypilot-org/spot-traces`, Wu et al., NSDI 2024).
//!
//! A file is `{"metadata": {"gap_seconds": G, ...}, "data": [n0, n1, ...], "prices": [...]?}`.
//! Tick *i* covers `[start + i*G, start + (i+1)*G)`; `n_i` is how many spot instances were
//! available (availability probes) or alive (preemption runs) in it: 0 or 1 for one-node
//! traces, 0 to 4 for four-node ones. In this data **1 means available** (an older simulator
//! used the inverse). `prices`, when present, is the spot price in USD per hour at each tick.
//!
//! The files carry no start time, only a date in their name (`aws-02-15-2023`): the caller
//! gives the start ([`start_from_name`] reads that date as midnight UTC).
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use eas_scheduler::pricing::AvailabilityTrace;
//!
//! let json = r#"{"metadata": {"gap_seconds": 60}, "data": [1, 1, 0, 1], "prices": [0.9, 0.9, 0.9, 1.1]}"#;
//! let start = SystemTime::UNIX_EPOCH;
//! let trace = AvailabilityTrace::from_json_str(json, "demo.json", start)?;
//! let t = |s: u64| start + Duration::from_secs(s);
//! assert!(trace.is_available(t(119)));
//! assert!(!trace.is_available(t(120)), "tick 2 is down");
//! assert!(!trace.is_available(t(240)), "past the end");
//! assert_eq!(trace.preemptions(), [t(120)]);
//! assert_eq!(trace.availability_fraction(), 0.75);
//! assert_eq!(trace.price_at(t(200)), Some(1.1));
//! # Ok::<(), eas_scheduler::Error>(())
//! ```

use std::io::Read;
use std::time::{Duration, SystemTime};

use eas_core::pricing::PricePoint;
use eas_core::resources::Zone;
use serde::Deserialize;

use super::input::trace_error;
use crate::Error;

#[derive(Deserialize)]
struct RawTrace {
    metadata: RawMetadata,
    data: Vec<u32>,
    #[serde(default)]
    prices: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct RawMetadata {
    gap_seconds: f64,
}

/// How many spot instances were available at each tick of a trace, and optionally their price.
#[derive(Debug, Clone, PartialEq)]
pub struct AvailabilityTrace {
    name: String,
    start: SystemTime,
    gap: Duration,
    counts: Vec<u32>,
    prices: Option<Vec<f64>>,
}

impl AvailabilityTrace {
    /// A trace named `name` from `start`, one count per tick of `gap`.
    ///
    /// # Errors
    /// [`Error::Trace`] (line 0) when `gap` is zero.
    pub fn new(
        name: impl Into<String>,
        start: SystemTime,
        gap: Duration,
        counts: Vec<u32>,
    ) -> Result<Self, Error> {
        let name = name.into();
        if gap.is_zero() {
            return Err(trace_error(&name, 0, "the tick length is zero"));
        }
        Ok(Self {
            name,
            start,
            gap,
            counts,
            prices: None,
        })
    }

    /// The same with a spot price (USD per hour) for each tick.
    ///
    /// # Errors
    /// [`Error::Trace`] (line 0) when there is not one price per tick, or a price is negative
    /// or not finite.
    pub fn with_prices(mut self, prices: Vec<f64>) -> Result<Self, Error> {
        if prices.len() != self.counts.len() {
            return Err(trace_error(
                &self.name,
                0,
                format!("{} prices for {} ticks", prices.len(), self.counts.len()),
            ));
        }
        if let Some((i, p)) = prices
            .iter()
            .enumerate()
            .find(|(_, p)| !p.is_finite() || **p < 0.0)
        {
            return Err(trace_error(&self.name, 0, format!("price {p} at tick {i}")));
        }
        self.prices = Some(prices);
        Ok(self)
    }

    /// Reads a SkyPilot JSON trace that starts at `start`; `name` names it in errors.
    ///
    /// # Errors
    /// [`Error::Trace`] when the text is not such a trace (with the JSON line), or its
    /// `gap_seconds` is not positive, or `prices` does not match `data` (line 0).
    pub fn from_json_str(json: &str, name: &str, start: SystemTime) -> Result<Self, Error> {
        let raw: RawTrace = serde_json::from_str(json).map_err(|e| json_error(name, &e))?;
        Self::from_raw(raw, name, start)
    }

    /// As [`from_json_str`](Self::from_json_str), from a reader.
    ///
    /// # Errors
    /// As [`from_json_str`](Self::from_json_str).
    pub fn from_reader(reader: impl Read, name: &str, start: SystemTime) -> Result<Self, Error> {
        let raw: RawTrace = serde_json::from_reader(reader).map_err(|e| json_error(name, &e))?;
        Self::from_raw(raw, name, start)
    }

    fn from_raw(raw: RawTrace, name: &str, start: SystemTime) -> Result<Self, Error> {
        let gap = Duration::try_from_secs_f64(raw.metadata.gap_seconds)
            .ok()
            .filter(|g| !g.is_zero())
            .ok_or_else(|| {
                trace_error(
                    name,
                    0,
                    format!(
                        "`gap_seconds` is {}, not a positive number",
                        raw.metadata.gap_seconds
                    ),
                )
            })?;
        let trace = Self::new(name, start, gap, raw.data)?;
        match raw.prices {
            Some(prices) => trace.with_prices(prices),
            None => Ok(trace),
        }
    }

    /// The trace's name, as given.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When tick 0 starts.
    #[must_use]
    pub const fn start(&self) -> SystemTime {
        self.start
    }

    /// The length of a tick.
    #[must_use]
    pub const fn gap(&self) -> Duration {
        self.gap
    }

    /// When the last tick ends.
    #[must_use]
    pub fn end(&self) -> SystemTime {
        self.tick_start(self.counts.len())
    }

    /// The number of ticks.
    #[must_use]
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether the trace has no ticks.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The count of each tick.
    #[must_use]
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// The most instances available at once: 1 for one-node traces, 4 for four-node ones
    /// (the files do not say how many were asked for; this is read from the data).
    #[must_use]
    pub fn capacity(&self) -> u32 {
        self.counts.iter().copied().max().unwrap_or(0)
    }

    /// The tick in force at `t`; `None` before the start or from the end on.
    #[must_use]
    pub fn tick_at(&self, t: SystemTime) -> Option<usize> {
        let since = t.duration_since(self.start).ok()?;
        let tick = usize::try_from(since.as_nanos() / self.gap.as_nanos()).ok()?;
        (tick < self.counts.len()).then_some(tick)
    }

    /// When tick `tick` starts.
    #[must_use]
    pub fn tick_start(&self, tick: usize) -> SystemTime {
        let n = u32::try_from(tick).unwrap_or(u32::MAX);
        self.start + self.gap.saturating_mul(n)
    }

    /// How many instances were available at `t`; `None` outside the trace.
    #[must_use]
    pub fn count_at(&self, t: SystemTime) -> Option<u32> {
        self.tick_at(t).and_then(|i| self.counts.get(i).copied())
    }

    /// Whether at least one spot instance was available at `t` (false outside the trace).
    #[must_use]
    pub fn is_available(&self, t: SystemTime) -> bool {
        self.count_at(t).is_some_and(|n| n > 0)
    }

    /// The fraction of ticks with at least one instance available.
    #[must_use]
    pub fn availability_fraction(&self) -> f64 {
        self.fraction(|n| n > 0)
    }

    /// The fraction of ticks with [`capacity`](Self::capacity) instances available (the same as
    /// [`availability_fraction`](Self::availability_fraction) for one-node traces).
    #[must_use]
    pub fn full_availability_fraction(&self) -> f64 {
        let capacity = self.capacity();
        self.fraction(|n| n >= capacity && n > 0)
    }

    #[allow(clippy::cast_precision_loss)]
    fn fraction(&self, keep: impl Fn(u32) -> bool) -> f64 {
        if self.counts.is_empty() {
            return 0.0;
        }
        let kept = self.counts.iter().filter(|&&n| keep(n)).count();
        kept as f64 / self.counts.len() as f64
    }

    /// When instances were lost: the start of each tick whose count is below the previous
    /// tick's (a preemption in preemption runs, the market closing in availability probes).
    /// A tick that loses several instances appears once.
    #[must_use]
    pub fn preemptions(&self) -> Vec<SystemTime> {
        self.counts
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1] < w[0])
            .map(|(i, _)| self.tick_start(i + 1))
            .collect()
    }

    /// The price of each tick, when the file has them.
    #[must_use]
    pub fn prices(&self) -> Option<&[f64]> {
        self.prices.as_deref()
    }

    /// The spot price at `t`, when the file has prices; `None` outside the trace.
    #[must_use]
    pub fn price_at(&self, t: SystemTime) -> Option<f64> {
        let tick = self.tick_at(t)?;
        self.prices.as_ref()?.get(tick).copied()
    }

    /// The prices as a step curve of changes (for [`TraceOracle::with_series`]), when the file
    /// has prices.
    ///
    /// [`TraceOracle::with_series`]: super::TraceOracle::with_series
    #[must_use]
    pub fn price_series(&self) -> Option<Vec<PricePoint>> {
        let prices = self.prices.as_ref()?;
        let mut points: Vec<PricePoint> = Vec::new();
        for (i, &price) in prices.iter().enumerate() {
            if points.last().is_none_or(|p| p.usd_per_hour != price) {
                points.push(PricePoint::new(self.tick_start(i), price));
            }
        }
        Some(points)
    }
}

fn json_error(name: &str, error: &serde_json::Error) -> Error {
    trace_error(name, error.line(), format!("not a SkyPilot trace: {error}"))
}

/// The start date in a SkyPilot trace name (`..._aws-02-15-2023_...`, month-day-year) as
/// midnight UTC; `None` when the name has none.
#[must_use]
pub fn start_from_name(name: &str) -> Option<SystemTime> {
    name.split(['_', '/']).find_map(|part| {
        let date = part.strip_prefix("aws-")?;
        let day = chrono::NaiveDate::parse_from_str(date, "%m-%d-%Y").ok()?;
        Some(SystemTime::from(day.and_hms_opt(0, 0, 0)?.and_utc()))
    })
}

/// The zone in a SkyPilot trace name (`..._us-east-1a_v100_1.json` gives `us-east-1a`).
#[must_use]
pub fn zone_from_name(name: &str) -> Option<Zone> {
    let file = name.rsplit('/').next()?;
    file.split('_')
        .find(|part| {
            let mut pieces = part.split('-');
            let region = pieces
                .next()
                .is_some_and(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_lowercase()));
            let last = part.chars().last().is_some_and(|c| c.is_ascii_lowercase());
            region && last && pieces.count() == 2
        })
        .map(Zone::from)
}

/// The AWS instance type of a SkyPilot trace, from its name: `v100_1` is `p3.2xlarge`,
/// `intel_64` is `r5.16xlarge` (as the traces' README says); `None` for others.
#[must_use]
pub fn instance_type_from_name(name: &str) -> Option<&'static str> {
    let file = name.rsplit('/').next()?.trim_end_matches(".json");
    if file.ends_with("_v100_1") {
        Some("p3.2xlarge")
    } else if file.ends_with("_intel_64") {
        Some("r5.16xlarge")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn ticks_should_cover_half_open_intervals() {
        let trace =
            AvailabilityTrace::new("x", t(1000), Duration::from_secs(10), vec![4, 4, 1, 0, 2])
                .expect("valid");
        assert_eq!(trace.count_at(t(999)), None);
        assert_eq!(trace.count_at(t(1000)), Some(4));
        assert_eq!(trace.count_at(t(1019)), Some(4));
        assert_eq!(trace.count_at(t(1020)), Some(1));
        assert_eq!(trace.count_at(t(1049)), Some(2));
        assert_eq!(trace.count_at(t(1050)), None);
        assert_eq!(trace.end(), t(1050));
        assert_eq!(trace.capacity(), 4);
        assert_eq!(trace.preemptions(), [t(1020), t(1030)]);
        assert_eq!(trace.availability_fraction(), 0.8);
        assert_eq!(trace.full_availability_fraction(), 0.4);
        assert_eq!(trace.price_series(), None);
    }

    #[test]
    fn prices_should_become_a_step_curve_of_changes() {
        let json = r#"{"metadata": {"gap_seconds": 34, "other": 1}, "data": [0, 1, 1], "prices": [1.5, 1.5, 1.25]}"#;
        let trace = AvailabilityTrace::from_json_str(json, "p.json", t(0)).expect("valid");
        assert_eq!(
            trace.price_series(),
            Some(vec![
                PricePoint::new(t(0), 1.5),
                PricePoint::new(t(68), 1.25)
            ])
        );
        assert_eq!(trace.preemptions(), Vec::<SystemTime>::new());
    }

    #[test]
    fn malformed_traces_should_be_refused() {
        let cases = [
            (r#"{"metadata": {"gap_seconds": 0}, "data": [1]}"#, 0),
            (
                r#"{"metadata": {"gap_seconds": 60}, "data": [1, 0], "prices": [1.0]}"#,
                0,
            ),
            (r#"{"metadata": {"gap_seconds": 60}, "data": [1, -1]}"#, 1),
            (
                "{\"metadata\": {\"gap_seconds\": 60},\n \"data\": [1, \"x\"]}",
                2,
            ),
            (r#"{"metadata": {}, "data": [1]}"#, 1),
            ("not json", 1),
        ];
        for (json, want) in cases {
            match AvailabilityTrace::from_json_str(json, "bad.json", t(0)) {
                Err(Error::Trace { line, trace, .. }) => {
                    assert_eq!((line, trace.as_str()), (want, "bad.json"), "{json}");
                }
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_should_give_the_start_zone_and_type() {
        let name = "availability_1node_aws-02-15-2023_us-east-1a_v100_1.json";
        assert_eq!(start_from_name(name), Some(t(1_676_419_200)));
        assert_eq!(zone_from_name(name), Some(Zone::from("us-east-1a")));
        assert_eq!(instance_type_from_name(name), Some("p3.2xlarge"));
        let name = "data/preemption_1node_aws-04-19-2023_us-east-1b_intel_64.json";
        assert_eq!(zone_from_name(name), Some(Zone::from("us-east-1b")));
        assert_eq!(instance_type_from_name(name), Some("r5.16xlarge"));
        assert_eq!(start_from_name("trace.json"), None);
        assert_eq!(zone_from_name("trace.json"), None);
    }
}
