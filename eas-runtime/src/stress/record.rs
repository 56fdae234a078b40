//! What a stress test measured: answers and errors counted per second (by the second they
//! completed in), latencies in histograms, plus a window the modes read and reset to judge a
//! step, and the whole run.
//!
//! A latency is the time from the request's *intended* send time (its slot in the open-loop
//! schedule) to its complete answer; the closed loop's intended time is when it sent. Only
//! answers with a 2xx status count in the latencies; every other outcome counts in
//! `errors_by_status`, under its status code (`"429"`) or `connect`, `io`, `timeout`,
//! `overload` (the client had no connection to send on in time: the target fell behind by more
//! than the generator's connection bound).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::histogram::Histogram;

/// A last, partial second shorter than this gets no row (its outcomes count in the total).
pub const MIN_PARTIAL_SECS: f64 = 0.25;

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Latency {
    /// Mean.
    pub avg: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// The figures of a histogram in microseconds.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn of(h: &Histogram) -> Self {
        let ms = |us: f64| (us / 1000.0 * 1000.0).round() / 1000.0;
        Self {
            avg: ms(h.mean()),
            p50: ms(h.quantile(0.50) as f64),
            p90: ms(h.quantile(0.90) as f64),
            p99: ms(h.quantile(0.99) as f64),
            max: ms(h.max() as f64),
        }
    }
}

/// What a stretch of time measured.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Its length in seconds.
    pub secs: f64,
    /// Requests whose scheduled time fell in it (the open loop's offered load).
    pub sent: u64,
    /// 2xx answers completed in it.
    pub ok: u64,
    /// Other outcomes completed in it.
    pub errors: u64,
    /// `errors` by status code or kind (`connect`, `io`, `timeout`, `overload`).
    pub errors_by_status: BTreeMap<String, u64>,
    /// 2xx answers per second.
    pub qps: f64,
    /// Latencies of the 2xx answers, from their intended send time, in milliseconds.
    pub latency_ms: Latency,
}

impl Stats {
    /// Errors as a share of all outcomes (0 when there were none).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn error_rate(&self) -> f64 {
        let all = self.ok + self.errors;
        if all == 0 {
            0.0
        } else {
            self.errors as f64 / all as f64
        }
    }

    /// Outcomes (answers and errors) per second.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn outcomes_per_sec(&self) -> f64 {
        if self.secs <= 0.0 {
            0.0
        } else {
            (self.ok + self.errors) as f64 / self.secs
        }
    }
}

/// One second of a run, the report's row.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Second {
    /// Seconds since the run started (this row covers `[second, second + 1)`).
    pub second: u64,
    /// The load asked for then: QPS in the open loop, connections in the closed loop.
    pub target: f64,
    /// What it measured.
    #[serde(flatten)]
    pub stats: Stats,
}

/// One outcome a worker buffers before [`Recorder::record_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// When it completed.
    pub at: Instant,
    /// What it was.
    pub what: What,
}

/// What an outcome was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum What {
    /// A 2xx answer, its latency in microseconds.
    Ok(u64),
    /// Another HTTP status.
    Status(u16),
    /// No answer: `connect`, `io`, `timeout`, `overload`.
    Kind(&'static str),
}

impl Outcome {
    /// A 2xx answer at `at`, `latency` after its intended time.
    #[must_use]
    pub fn ok(at: Instant, latency: Duration) -> Self {
        Self {
            at,
            what: What::Ok(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)),
        }
    }
}

/// Counts for one stretch.
#[derive(Default)]
struct Acc {
    sent: u64,
    ok: u64,
    errors: u64,
    errors_by_status: BTreeMap<String, u64>,
    latencies: Option<Box<Histogram>>,
}

impl Acc {
    fn stats(&self, secs: f64) -> Stats {
        let empty = Histogram::new();
        let h = self.latencies.as_deref().unwrap_or(&empty);
        #[allow(clippy::cast_precision_loss)]
        let qps = if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        };
        Stats {
            secs,
            sent: self.sent,
            ok: self.ok,
            errors: self.errors,
            errors_by_status: self.errors_by_status.clone(),
            qps,
            latency_ms: Latency::of(h),
        }
    }

    fn ok(&mut self, micros: u64) {
        self.ok += 1;
        self.latencies
            .get_or_insert_with(|| Box::new(Histogram::new()))
            .record(micros);
    }

    fn error(&mut self, kind: &str) {
        self.errors += 1;
        match self.errors_by_status.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.errors_by_status.insert(kind.to_owned(), 1);
            }
        }
    }
}

struct Inner {
    /// The seconds not yet closed, from `first_open` on.
    open: VecDeque<(Acc, f64)>,
    first_open: u64,
    rows: Vec<Second>,
    window: Acc,
    window_from: Instant,
    total: Acc,
    target: f64,
}

/// Where the load generator's workers record outcomes; cheap to clone (one shared table).
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder whose second 0 starts at `start`.
    #[must_use]
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            inner: Arc::new(Mutex::new(Inner {
                open: VecDeque::new(),
                first_open: 0,
                rows: Vec::new(),
                window: Acc::default(),
                window_from: start,
                total: Acc::default(),
                target: 0.0,
            })),
        }
    }

    /// When second 0 started.
    #[must_use]
    pub fn start(&self) -> Instant {
        self.start
    }

    fn with<R>(&self, at: Instant, f: impl Fn(&mut Acc) -> R) -> R {
        let second = at.saturating_duration_since(self.start).as_secs();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
        f(&mut inner.window);
        f(&mut inner.total);
        // An outcome of a second already closed counts in the oldest open one.
        let index = usize::try_from(second.saturating_sub(inner.first_open)).unwrap_or(0);
        while inner.open.len() <= index {
            inner.open.push_back((Acc::default(), inner.target));
        }
        f(&mut inner.open[index].0)
    }

    /// Records a worker's buffered outcomes under one lock (and empties the buffer).
    pub fn record_all(&self, outcomes: &mut Vec<Outcome>) {
        if outcomes.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
        let mut status = String::new();
        for outcome in outcomes.drain(..) {
            let second = outcome.at.saturating_duration_since(self.start).as_secs();
            let index = usize::try_from(second.saturating_sub(inner.first_open)).unwrap_or(0);
            while inner.open.len() <= index {
                inner.open.push_back((Acc::default(), inner.target));
            }
            let kind = match outcome.what {
                What::Ok(micros) => {
                    inner.window.ok(micros);
                    inner.total.ok(micros);
                    inner.open[index].0.ok(micros);
                    continue;
                }
                What::Status(code) => {
                    status.clear();
                    let _ = std::fmt::Write::write_fmt(&mut status, format_args!("{code}"));
                    status.as_str()
                }
                What::Kind(kind) => kind,
            };
            inner.window.error(kind);
            inner.total.error(kind);
            inner.open[index].0.error(kind);
        }
    }

    /// A 2xx answer completed at `at`, `latency` after its intended send time.
    pub fn ok(&self, at: Instant, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.with(at, |acc| acc.ok(micros));
    }

    /// Another outcome at `at`: a status code (`"503"`) or a kind (`timeout`, ...).
    pub fn error(&self, at: Instant, kind: &str) {
        self.with(at, |acc| acc.error(kind));
    }

    /// `n` requests were scheduled at `at`.
    pub fn sent(&self, at: Instant, n: u64) {
        if n > 0 {
            self.with(at, |acc| acc.sent += n);
        }
    }

    /// The load asked for from now on, written into the rows of the seconds to come.
    pub fn set_target(&self, target: f64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.target = target;
        for (_, t) in &mut inner.open {
            *t = target;
        }
    }

    /// Closes every second that ended before `now` (all of them when `all`, the last one
    /// partial unless shorter than [`MIN_PARTIAL_SECS`]) and returns their rows.
    pub fn close(&self, now: Instant, all: bool) -> Vec<Second> {
        let elapsed = now.saturating_duration_since(self.start);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let target = inner.target;
        let mut closed = Vec::new();
        loop {
            let second = inner.first_open;
            let ended = Duration::from_secs(second + 1) <= elapsed;
            let partial = all && Duration::from_secs(second) < elapsed;
            if !ended && !partial {
                break;
            }
            let secs = if ended {
                1.0
            } else {
                (elapsed - Duration::from_secs(second)).as_secs_f64()
            };
            let (acc, t) = inner.open.pop_front().unwrap_or((Acc::default(), target));
            if !ended && secs < MIN_PARTIAL_SECS {
                // A sliver after the load stopped (answers draining): in the total only.
                inner.first_open += 1;
                break;
            }
            let row = Second {
                second,
                target: t,
                stats: acc.stats(secs),
            };
            inner.rows.push(row.clone());
            closed.push(row);
            inner.first_open += 1;
            if !ended {
                break;
            }
        }
        closed
    }

    /// What happened since the last call (or since the start), and starts a new window.
    pub fn take_window(&self, now: Instant) -> Stats {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let secs = now
            .saturating_duration_since(inner.window_from)
            .as_secs_f64();
        let acc = std::mem::take(&mut inner.window);
        inner.window_from = now;
        acc.stats(secs)
    }

    /// The whole run so far, as if `now` ended it.
    #[must_use]
    pub fn total(&self, now: Instant) -> Stats {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .total
            .stats(now.saturating_duration_since(self.start).as_secs_f64())
    }

    /// The rows of the closed seconds.
    #[must_use]
    pub fn rows(&self) -> Vec<Second> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rows
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn outcomes_should_land_in_the_second_they_completed_in() {
        let start = Instant::now();
        let recorder = Recorder::new(start);
        recorder.set_target(100.0);
        recorder.sent(start, 3);
        recorder.ok(start + Duration::from_millis(200), Duration::from_millis(5));
        recorder.ok(
            start + Duration::from_millis(900),
            Duration::from_millis(15),
        );
        recorder.error(start + Duration::from_millis(1500), "429");
        let rows = recorder.close(start + Duration::from_millis(1999), false);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].stats.ok, 2);
        assert_eq!(rows[0].stats.sent, 3);
        assert!((rows[0].stats.latency_ms.max - 15.0).abs() < 0.2);
        assert!((rows[0].target - 100.0).abs() < f64::EPSILON);
        // A late outcome of second 0 counts in second 1.
        recorder.ok(start + Duration::from_millis(500), Duration::from_millis(1));
        let rows = recorder.close(start + Duration::from_millis(2500), true);
        assert_eq!(rows.len(), 2, "second 1, and the partial second 2");
        assert_eq!(rows[0].stats.errors_by_status.get("429"), Some(&1));
        assert_eq!(rows[0].stats.ok, 1);
        assert!((rows[1].stats.secs - 0.5).abs() < 1e-9);
        // A sliver of a last second (answers draining) gets no row, only the total.
        recorder.ok(
            start + Duration::from_millis(3050),
            Duration::from_millis(1),
        );
        assert!(
            recorder
                .close(start + Duration::from_millis(3100), true)
                .is_empty()
        );
        let total = recorder.total(start + Duration::from_secs(2));
        assert_eq!((total.ok, total.errors), (4, 1));
        assert!((total.error_rate() - 0.2).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn windows_should_reset_when_taken() {
        let start = Instant::now();
        let recorder = Recorder::new(start);
        recorder.ok(start, Duration::from_millis(1));
        let first = recorder.take_window(start + Duration::from_secs(2));
        assert_eq!(first.ok, 1);
        assert!((first.qps - 0.5).abs() < 1e-9);
        recorder.error(start + Duration::from_secs(2), "timeout");
        let second = recorder.take_window(start + Duration::from_secs(3));
        assert_eq!((second.ok, second.errors), (0, 1));
    }
}
