//! The service model: a deterministic fluid FIFO queue in front of the serving instances.
//!
//! Time advances in ticks (the simulator uses 1 s). In a tick `[t, t + dt)`:
//!
//! - the tick's `A` requests arrive evenly spread over it (a *cohort*, density `A / dt`);
//! - the serving instances drain the queue at `mu = n * instance_qps` requests per second, oldest
//!   first; a request is never served before it arrives (when the queue is empty the service
//!   keeps pace with arrivals and requests wait 0);
//! - a request's latency is its wait in the queue plus the fixed service time `service_ms`
//!   (by default `1000 / instance_qps`: one request at a time per instance).
//!
//! Arrival and departure curves are piecewise linear, so the waits of the requests served in
//! one piece are spread evenly between two values: each piece goes into the latency
//! distribution as a uniform segment (exactly, for the share within the SLO; into
//! logarithmic bins 0.5 % wide for percentiles). Requests still queued at the end count as
//! missing the SLO, with their wait so far. This is the deterministic (fluid) limit of an
//! M/D/c queue: it captures queueing from bursts at the tick scale and from missing capacity
//! (scale-up lag, preemptions), not the random queueing within a tick.
//!
//! ```
//! use eas_scheduler::sim::FluidQueue;
//!
//! // 2 instances of 1 QPS each, service time 1000 ms, SLO 2000 ms.
//! let mut q = FluidQueue::new(1000.0, 2000.0);
//! q.step(0.0, 1.0, 4.0, 2.0); // 4 arrive in a second, 2 can be served
//! assert_eq!(q.backlog(), 2.0);
//! q.step(1.0, 1.0, 0.0, 2.0); // the 2 left are served in the next second
//! assert_eq!(q.backlog(), 0.0);
//! let s = q.summary();
//! assert_eq!(s.requests, 4.0);
//! assert!(s.p99_ms > 1000.0 && s.p99_ms < 2000.0);
//! assert_eq!(s.availability, 1.0);
//! ```

use std::collections::VecDeque;

/// Requests that arrived evenly over `[a0, a1]` and are not served yet.
#[derive(Debug, Clone, Copy)]
struct Cohort {
    count: f64,
    a0: f64,
    a1: f64,
}

impl Cohort {
    /// When the `x`-th request of the cohort arrived.
    fn arrival(&self, x: f64) -> f64 {
        if self.count <= 0.0 {
            self.a0
        } else {
            self.a0 + (self.a1 - self.a0) * (x / self.count)
        }
    }

    /// The cohort without its first `x` requests.
    fn without(&self, x: f64) -> Self {
        Self {
            count: self.count - x,
            a0: self.arrival(x),
            a1: self.a1,
        }
    }
}

const TINY: f64 = 1e-9;
/// Lowest wait a bin holds, in ms; smaller positive waits go into the first bin.
const MIN_WAIT_MS: f64 = 1e-3;
/// Bin growth: each bin is 0.5 % wider than the one before.
const GROWTH: f64 = 1.005;
/// Bins from 1 µs to about 1e9 ms (11 days); longer waits go into the last.
const BINS: usize = 5_541;

/// The latency summary of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Requests that arrived.
    pub requests: f64,
    /// The share of requests served within the SLO.
    pub availability: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th-percentile latency, ms.
    pub p99_ms: f64,
}

/// A fluid FIFO queue in front of the serving instances, with the latency distribution of the
/// requests it served (see the `sim::queue` module docs).
#[derive(Debug, Clone)]
pub struct FluidQueue {
    service_ms: f64,
    slo_ms: f64,
    cohorts: VecDeque<Cohort>,
    /// Requests served without waiting.
    no_wait: f64,
    /// Requests that waited, by wait bin: mass put straight into a bin...
    bins: Vec<f64>,
    /// ... and changes of a density (requests per ms of wait) spread over whole bins, so a
    /// segment over many bins costs O(1).
    density: Vec<f64>,
    /// Where each bin starts, in ms (one more entry than bins).
    edges: Vec<f64>,
    within_slo: f64,
    requests: f64,
}

impl FluidQueue {
    /// An empty queue; `service_ms` is added to every wait, `slo_ms` is the latency goal.
    #[must_use]
    pub fn new(service_ms: f64, slo_ms: f64) -> Self {
        Self {
            service_ms,
            slo_ms,
            cohorts: VecDeque::new(),
            no_wait: 0.0,
            bins: vec![0.0; BINS],
            density: vec![0.0; BINS + 1],
            edges: (0..=BINS).map(bin_start).collect(),
            within_slo: 0.0,
            requests: 0.0,
        }
    }

    /// Requests waiting.
    #[must_use]
    pub fn backlog(&self) -> f64 {
        // `+ 0.0` turns a -0.0 into 0.0 for the report.
        self.cohorts.iter().map(|c| c.count).sum::<f64>().max(0.0) + 0.0
    }

    /// One tick `[t, t + dt)` (seconds): `arrivals` arrive evenly, served at `rate` per second.
    pub fn step(&mut self, t: f64, dt: f64, arrivals: f64, rate: f64) {
        let end = t + dt;
        if arrivals > 0.0 {
            self.requests += arrivals;
            self.cohorts.push_back(Cohort {
                count: arrivals,
                a0: t,
                a1: end,
            });
        }
        if rate <= 0.0 {
            return;
        }
        let mut tau = t;
        while tau < end - TINY {
            let Some(c) = self.cohorts.front().copied() else {
                break;
            };
            if c.count <= TINY {
                self.cohorts.pop_front();
                continue;
            }
            let width = c.a1 - c.a0;
            if c.a1 <= tau + TINY || width <= TINY {
                // Fully arrived: serve at `rate` from `tau`.
                let m = c.count.min(rate * (end - tau));
                let done = tau + m / rate;
                self.record(m, tau - c.a0, done - c.arrival(m));
                tau = done;
                self.take(m);
                continue;
            }
            // Still arriving (the tick's own cohort): never ahead of arrivals.
            let density = c.count / width;
            let start = tau.max(c.a0);
            let waiting = density * (start - c.a0);
            if rate > density {
                let catch_up = start + waiting / (rate - density);
                if catch_up <= c.a1.min(end) {
                    let m = rate * (catch_up - start);
                    self.record(m, start - c.a0, 0.0);
                    let rest = c.count - m;
                    self.record(rest, 0.0, 0.0);
                    self.cohorts.pop_front();
                    break;
                }
            }
            let m = (rate * (end - start)).min(c.count);
            self.record(m, start - c.a0, end - c.arrival(m));
            self.take(m);
            break;
        }
    }

    /// Drops the first `m` requests of the front cohort.
    fn take(&mut self, m: f64) {
        if let Some(front) = self.cohorts.front_mut() {
            *front = front.without(m);
            if front.count <= TINY {
                self.cohorts.pop_front();
            }
        }
    }

    /// Ends the run at `end`: requests still queued miss the SLO, with their wait so far.
    pub fn finish(&mut self, end: f64) {
        let left: Vec<Cohort> = self.cohorts.drain(..).collect();
        for c in left {
            self.spread(c.count, (end - c.a0) * 1000.0, (end - c.a1) * 1000.0);
        }
    }

    /// `weight` requests whose waits (seconds) go evenly from `w0` to `w1`.
    fn record(&mut self, weight: f64, w0: f64, w1: f64) {
        if weight <= TINY {
            return;
        }
        let (w0, w1) = (w0.max(0.0) * 1000.0, w1.max(0.0) * 1000.0);
        let budget = self.slo_ms - self.service_ms;
        let (lo, hi) = if w0 <= w1 { (w0, w1) } else { (w1, w0) };
        self.within_slo += if hi <= budget {
            weight
        } else if lo > budget {
            0.0
        } else {
            weight * (budget - lo) / (hi - lo)
        };
        self.spread(weight, lo, hi);
    }

    /// Adds `weight` spread evenly over waits `[a, b]` (ms, either order) to the bins.
    fn spread(&mut self, weight: f64, a: f64, b: f64) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        if hi <= 0.0 {
            self.no_wait += weight;
            return;
        }
        let (first, last) = (bin_of(lo), bin_of(hi));
        if first == last || hi - lo <= TINY {
            self.bins[last] += weight;
            return;
        }
        let d = weight / (hi - lo);
        self.bins[first] += d * (self.edges[first + 1] - lo);
        self.bins[last] += d * (hi - self.edges[last]);
        self.density[first + 1] += d;
        self.density[last] -= d;
    }

    /// Requests per wait bin.
    fn masses(&self) -> Vec<f64> {
        let mut d = 0.0;
        self.bins
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                d += self.density[i];
                m + d.max(0.0) * (self.edges[i + 1] - self.edges[i])
            })
            .collect()
    }

    /// The latency (ms) below which a share `q` of the requests lies.
    #[must_use]
    pub fn percentile(&self, q: f64) -> f64 {
        let masses = self.masses();
        let total = self.no_wait + masses.iter().sum::<f64>();
        if total <= 0.0 {
            return 0.0;
        }
        let want = q * total;
        if want <= self.no_wait {
            return self.service_ms;
        }
        let mut seen = self.no_wait;
        for (i, &w) in masses.iter().enumerate() {
            if w > 0.0 && seen + w >= want {
                let frac = (want - seen) / w;
                let wait = self.edges[i] + frac * (self.edges[i + 1] - self.edges[i]);
                return self.service_ms + wait;
            }
            seen += w;
        }
        self.service_ms + bin_start(BINS)
    }

    /// Requests, share within the SLO, p50 and p99 so far.
    #[must_use]
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            requests: self.requests,
            availability: if self.requests > 0.0 {
                (self.within_slo / self.requests).min(1.0)
            } else {
                1.0
            },
            p50_ms: self.percentile(0.50),
            p99_ms: self.percentile(0.99),
        }
    }
}

/// The bin of a positive wait in ms.
fn bin_of(wait_ms: f64) -> usize {
    if wait_ms <= MIN_WAIT_MS {
        return 0;
    }
    let i = ((wait_ms / MIN_WAIT_MS).ln() / GROWTH.ln()).floor();
    // A finite, non-negative float, capped: the cast cannot lose anything that matters.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = i as usize;
    i.min(BINS - 1)
}

/// Where bin `i` starts, in ms (bin 0 starts at 0).
fn bin_start(i: usize) -> f64 {
    if i == 0 {
        0.0
    } else {
        MIN_WAIT_MS * GROWTH.powi(i32::try_from(i).unwrap_or(i32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ample_capacity_should_serve_every_request_without_waiting() {
        let mut q = FluidQueue::new(100.0, 200.0);
        for s in 0..10 {
            q.step(f64::from(s), 1.0, 5.0, 10.0);
        }
        let s = q.summary();
        assert_eq!((s.requests, s.availability), (50.0, 1.0));
        assert_eq!((s.p50_ms, s.p99_ms), (100.0, 100.0));
    }

    #[test]
    fn no_capacity_should_keep_requests_queued_until_the_end() {
        let mut q = FluidQueue::new(100.0, 200.0);
        q.step(0.0, 1.0, 5.0, 0.0);
        q.step(1.0, 1.0, 5.0, 0.0);
        assert!((q.backlog() - 10.0).abs() < 1e-9);
        q.finish(2.0);
        let s = q.summary();
        assert_eq!(s.availability, 0.0);
        assert!(s.p50_ms > 100.0 + 900.0, "{s:?}");
    }

    #[test]
    fn bins_should_hold_their_edges() {
        for wait in [0.002, 1.0, 37.5, 5_000.0, 1e8] {
            let i = bin_of(wait);
            assert!(
                bin_start(i) <= wait * (1.0 + 1e-12) && wait < bin_start(i + 1),
                "{wait}"
            );
        }
    }
}
