//! The decisions of the stress modes, as plain functions of what was measured: whether a step
//! met the goal ([`judge`]), and where auto mode probes next ([`AutoSearch`]).
//!
//! **Auto mode's search.** A probe holds one rate for a while (open loop) and passes when the
//! service answered it within the goal: errors within the error budget, the chosen response
//! time statistic within `maxRT` (if set), and answers keeping up with the offered rate (at
//! least [`MIN_KEEP_UP`] of it, so a queue that grows without bound fails even with no `maxRT`).
//! 1. *Ramp*: from `start` double the rate until a probe fails or `max` passes.
//! 2. *Bisect* between the highest rate that passed (`lo`) and the lowest that failed (`hi`)
//!    until `hi - lo <= precision * lo`.
//! 3. *Confirm*: hold `lo` for a longer probe. Probes run back to back, so a service can carry
//!    slack from one probe to the next (a token bucket refilled during a slow probe, an idle
//!    queue) and pass a short probe above its capacity; the confirmation runs right after a
//!    failed probe (no slack left) and for longer. If it fails, `lo` becomes the new `hi`, the
//!    search steps down by [`CONFIRM_BACKOFF`] and bisects again; after [`CONFIRM_ROUNDS`]
//!    failed confirmations it gives up without a capacity.
//!
//! Why it converges: if passing is monotone in the rate (a service that sustains `r` sustains
//! any lower rate), the ramp ends after at most `log2(max / start) + 1` probes, each bisection
//! probe halves `hi - lo`, so at most `log2(1 / precision) + 1` of them reach the precision, and
//! confirmation rounds are bounded; [`AutoSearch::MAX_PROBES`] bounds the whole search even for
//! a noisy service. The capacity found lies within `precision` below the true one, less any
//! slack carried into the confirmation (bounded by the slack divided by its duration).

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::record::Stats;

/// A probe passes only if answers (2xx or not) came at this share of the offered rate.
pub const MIN_KEEP_UP: f64 = 0.95;
/// How much lower auto mode looks after a failed confirmation.
pub const CONFIRM_BACKOFF: f64 = 0.8;
/// Auto mode never probes below this rate.
pub const MIN_QPS: f64 = 0.01;
/// Failed confirmations before auto mode gives up.
pub const CONFIRM_ROUNDS: u32 = 3;

/// Which response time statistic `maxRT` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RtStat {
    /// The mean.
    Avg,
    /// The median.
    P50,
    /// The 90th percentile.
    P90,
    /// The 99th percentile.
    #[default]
    P99,
}

impl RtStat {
    /// Its value in `stats`, in milliseconds.
    #[must_use]
    pub fn of(self, stats: &Stats) -> f64 {
        let l = &stats.latency_ms;
        match self {
            Self::Avg => l.avg,
            Self::P50 => l.p50,
            Self::P90 => l.p90,
            Self::P99 => l.p99,
        }
    }

    /// Its name, as written in reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Avg => "avg",
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P99 => "p99",
        }
    }
}

impl std::str::FromStr for RtStat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avg" | "mean" => Ok(Self::Avg),
            "p50" | "50" => Ok(Self::P50),
            "p90" | "90" => Ok(Self::P90),
            "p99" | "99" => Ok(Self::P99),
            other => Err(format!("`{other}`: use avg, p50, p90 or p99")),
        }
    }
}

/// What a step must meet to pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Goal {
    /// The bound on the response time statistic `rt`, if any.
    #[serde(with = "opt_ms", rename = "max_rt_ms")]
    pub max_rt: Option<Duration>,
    /// Which statistic `max_rt` bounds.
    pub rt: RtStat,
    /// The largest share of errors that still passes (0: none may fail).
    pub error_budget: f64,
}

impl Goal {
    /// Errors within `error_budget`, no response time bound, bounding the p99 when one is set.
    #[must_use]
    pub fn new(error_budget: f64) -> Self {
        Self {
            max_rt: None,
            rt: RtStat::P99,
            error_budget: error_budget.clamp(0.0, 1.0),
        }
    }

    /// Bounds the response time statistic `rt` by `max_rt`.
    #[must_use]
    pub fn with_max_rt(mut self, max_rt: Option<Duration>, rt: RtStat) -> Self {
        self.max_rt = max_rt;
        self.rt = rt;
        self
    }
}

mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let ms: Option<f64> = Option::deserialize(d)?;
        Ok(ms
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| Duration::from_secs_f64(v / 1000.0)))
    }
}

/// Whether a step passed, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether it met the goal.
    pub passed: bool,
    /// What failed, for a person (empty when it passed).
    pub reason: String,
}

/// Judges the `stats` of a step that offered `offered_qps` (open loop; `None` for the closed
/// loop, which has no rate to keep up with) against `goal`.
#[must_use]
pub fn judge(stats: &Stats, offered_qps: Option<f64>, goal: &Goal) -> Verdict {
    let mut reasons = Vec::new();
    let error_rate = stats.error_rate();
    if stats.errors > 0 && error_rate > goal.error_budget {
        let kinds: Vec<String> = stats
            .errors_by_status
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect();
        reasons.push(format!(
            "errors {:.2}% > budget {:.2}% ({})",
            error_rate * 100.0,
            goal.error_budget * 100.0,
            kinds.join(", ")
        ));
    }
    if let Some(max_rt) = goal.max_rt {
        let rt = goal.rt.of(stats);
        let max_ms = max_rt.as_secs_f64() * 1000.0;
        if rt > max_ms {
            reasons.push(format!(
                "{} {rt:.1} ms > maxRT {max_ms:.1} ms",
                goal.rt.name()
            ));
        }
    }
    if let Some(offered) = offered_qps {
        let answered = stats.outcomes_per_sec();
        if answered < MIN_KEEP_UP * offered {
            reasons.push(format!(
                "answered {answered:.1}/s of {offered:.1} QPS offered (the service falls behind)"
            ));
        }
    }
    Verdict {
        passed: reasons.is_empty(),
        reason: reasons.join("; "),
    }
}

/// What kind of probe auto mode runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProbeKind {
    /// Doubling the rate.
    Ramp,
    /// Halving the interval between `lo` and `hi`, or stepping down below `hi`.
    Bisect,
    /// Holding the best rate for longer.
    Confirm,
}

/// Auto mode's next move.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Next {
    /// Hold `qps` for a probe of `kind`.
    Probe {
        /// The rate.
        qps: f64,
        /// The probe's kind (confirmations are longer).
        kind: ProbeKind,
    },
    /// The search is over: the capacity, if one was confirmed.
    Done {
        /// The highest rate confirmed to meet the goal.
        capacity: Option<f64>,
    },
}

/// Auto mode's search for the highest rate that meets the goal (see the module docs).
#[derive(Debug, Clone)]
pub struct AutoSearch {
    max: f64,
    min: f64,
    precision: f64,
    lo: Option<f64>,
    hi: Option<f64>,
    failed_confirmations: u32,
    probes: u32,
    next: Next,
}

impl AutoSearch {
    /// The most probes one search runs.
    pub const MAX_PROBES: u32 = 48;

    /// A search starting at `start` QPS, never above `max`, to a relative `precision`.
    #[must_use]
    pub fn new(start: f64, max: f64, precision: f64) -> Self {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1e6
        };
        let start = if start.is_finite() && start > 0.0 {
            start.min(max)
        } else {
            1.0_f64.min(max)
        };
        Self {
            max,
            min: MIN_QPS,
            precision: precision.clamp(0.001, 1.0),
            lo: None,
            hi: None,
            failed_confirmations: 0,
            probes: 0,
            next: Next::Probe {
                qps: start,
                kind: ProbeKind::Ramp,
            },
        }
    }

    /// What to do next.
    #[must_use]
    pub fn next(&self) -> Next {
        self.next
    }

    /// Probes run so far.
    #[must_use]
    pub fn probes(&self) -> u32 {
        self.probes
    }

    /// Records whether the probe [`next`](Self::next) asked for passed.
    pub fn record(&mut self, passed: bool) {
        let Next::Probe { qps, kind } = self.next else {
            return;
        };
        self.probes += 1;
        self.next = match (kind, passed) {
            (ProbeKind::Confirm, true) => Next::Done {
                capacity: Some(qps),
            },
            (ProbeKind::Confirm, false) => {
                self.failed_confirmations += 1;
                self.hi = Some(qps);
                self.lo = None;
                if self.failed_confirmations >= CONFIRM_ROUNDS {
                    Next::Done { capacity: None }
                } else {
                    self.bounded(CONFIRM_BACKOFF)
                }
            }
            (ProbeKind::Ramp, true) if qps >= self.max => {
                self.lo = Some(qps);
                Next::Probe {
                    qps,
                    kind: ProbeKind::Confirm,
                }
            }
            (ProbeKind::Ramp, true) => {
                self.lo = Some(qps);
                Next::Probe {
                    qps: (qps * 2.0).min(self.max),
                    kind: ProbeKind::Ramp,
                }
            }
            (_, true) => {
                self.lo = Some(qps);
                self.bounded(0.5)
            }
            (_, false) => {
                self.hi = Some(qps);
                self.bounded(0.5)
            }
        };
        if self.probes >= Self::MAX_PROBES && matches!(self.next, Next::Probe { .. }) {
            self.next = Next::Done { capacity: None };
        }
    }

    /// The next probe once `hi` (and maybe `lo`) are known; without `lo`, step down by
    /// `factor`.
    fn bounded(&self, factor: f64) -> Next {
        match (self.lo, self.hi) {
            (Some(lo), Some(hi)) if hi - lo <= self.precision * lo => Next::Probe {
                qps: lo,
                kind: ProbeKind::Confirm,
            },
            (Some(lo), Some(hi)) => Next::Probe {
                qps: (lo + hi) / 2.0,
                kind: ProbeKind::Bisect,
            },
            (None, Some(hi)) if hi * factor >= self.min => Next::Probe {
                qps: hi * factor,
                kind: ProbeKind::Bisect,
            },
            _ => Next::Done { capacity: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stress::record::Latency;

    fn stats(ok: u64, errors: u64, secs: f64, p99: f64) -> Stats {
        let mut by = BTreeMap::new();
        if errors > 0 {
            by.insert("429".to_owned(), errors);
        }
        Stats {
            secs,
            sent: ok + errors,
            ok,
            errors,
            errors_by_status: by,
            #[allow(clippy::cast_precision_loss)]
            qps: ok as f64 / secs,
            latency_ms: Latency {
                avg: p99 / 2.0,
                p50: p99 / 2.0,
                p90: p99,
                p99,
                max: p99,
            },
        }
    }

    #[test]
    fn judge_should_name_each_failed_bound() {
        let goal = Goal::new(0.01).with_max_rt(Some(Duration::from_millis(100)), RtStat::P99);
        assert!(judge(&stats(1000, 5, 1.0, 50.0), Some(1000.0), &goal).passed);
        let errors = judge(&stats(900, 100, 1.0, 50.0), Some(1000.0), &goal);
        assert!(
            !errors.passed && errors.reason.contains("429 x100"),
            "{errors:?}"
        );
        let slow = judge(&stats(1000, 0, 1.0, 150.0), Some(1000.0), &goal);
        assert!(
            slow.reason.contains("p99 150.0 ms > maxRT 100.0 ms"),
            "{slow:?}"
        );
        let behind = judge(&stats(800, 0, 1.0, 50.0), Some(1000.0), &goal);
        assert!(behind.reason.contains("falls behind"), "{behind:?}");
        assert!(judge(&stats(800, 0, 1.0, 50.0), None, &goal).passed);
        let strict = Goal::new(0.0);
        assert!(!judge(&stats(1000, 1, 1.0, 1.0), None, &strict).passed);
    }

    /// Runs a search against `passes` and returns the capacity and the probes it took.
    fn search(
        start: f64,
        max: f64,
        mut passes: impl FnMut(f64, ProbeKind) -> bool,
    ) -> (Option<f64>, u32) {
        let mut s = AutoSearch::new(start, max, 0.05);
        loop {
            match s.next() {
                Next::Probe { qps, kind } => s.record(passes(qps, kind)),
                Next::Done { capacity } => return (capacity, s.probes()),
            }
        }
    }

    #[test]
    fn search_should_find_a_fixed_capacity_within_precision_from_below() {
        for capacity in [0.5, 3.0, 47.0, 300.0, 1234.0, 20_000.0] {
            for start in [1.0, 10.0, 100.0, 5000.0] {
                let (found, probes) = search(start, 100_000.0, |qps, _| qps <= capacity);
                let found = found.unwrap_or_else(|| panic!("c={capacity} start={start}"));
                assert!(found <= capacity, "c={capacity} start={start}: {found}");
                assert!(
                    found >= capacity * 0.95,
                    "c={capacity} start={start}: {found}"
                );
                assert!(probes <= 30, "c={capacity} start={start}: {probes} probes");
            }
        }
    }

    #[test]
    fn search_should_stop_at_max_and_give_up_on_nothing() {
        assert_eq!(search(10.0, 80.0, |_, _| true).0, Some(80.0));
        let (found, probes) = search(10.0, 80.0, |_, _| false);
        assert_eq!(found, None);
        assert!(probes < AutoSearch::MAX_PROBES, "{probes}");
    }

    /// A token bucket (burst = one second of the rate, full at the start) under the search,
    /// probes back to back as auto mode runs them: a probe that ends with tokens left passes.
    #[test]
    fn search_should_see_through_a_token_buckets_burst() {
        for limit in [50.0, 300.0, 2000.0] {
            let mut tokens: f64 = limit;
            let (found, _) = search(10.0, 1e5, |qps, kind| {
                let secs = if kind == ProbeKind::Confirm { 4.0 } else { 2.0 };
                tokens += (limit - qps) * secs;
                let passed = tokens >= 0.0;
                tokens = tokens.clamp(0.0, limit);
                passed
            });
            let found = found.expect("a capacity");
            assert!(
                (found - limit).abs() <= 0.15 * limit,
                "limit {limit}: found {found}"
            );
        }
    }

    #[test]
    fn search_should_survive_a_flaky_service() {
        let mut n = 0u32;
        let (_, probes) = search(1.0, 1e6, |qps, _| {
            n += 1;
            qps < 100.0 && !n.is_multiple_of(3)
        });
        assert!(probes <= AutoSearch::MAX_PROBES);
    }
}
