//! The three modes, as in EAS: **fixed** holds a QPS (open loop) or a concurrency (closed
//! loop) for a duration; **scan** raises the QPS from `min_qps` by `qps_growth_delta` every
//! `adjust_interval` until a level misses the goal (`maxRT` or errors) or `max_qps` passed;
//! **auto** searches for the capacity ([`AutoSearch`]).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::StressError;
use super::load::{Load, LoadOptions, Target};
use super::record::{Recorder, Second};
use super::report::{Report, Step};
use super::search::{AutoSearch, Goal, Next, ProbeKind, judge};

/// The load a fixed test holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Pace {
    /// Requests per second on a schedule (open loop).
    Qps(f64),
    /// Connections sending back to back (closed loop).
    Concurrency(usize),
}

/// `fixed`: hold one load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FixedPlan {
    /// What to hold.
    pub pace: Pace,
    /// For how long.
    #[serde(with = "secs")]
    pub duration: Duration,
}

impl FixedPlan {
    /// Holds `pace` for `duration`.
    #[must_use]
    pub fn new(pace: Pace, duration: Duration) -> Self {
        Self { pace, duration }
    }
}

/// `scan`: raise the QPS step by step until the goal is missed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScanPlan {
    /// The first level.
    pub min_qps: f64,
    /// The last level.
    pub max_qps: f64,
    /// How much each level adds.
    pub qps_growth_delta: f64,
    /// How long each level lasts.
    #[serde(with = "secs")]
    pub adjust_interval: Duration,
    /// What a level must meet (`maxRT`, errors: no error by default).
    pub goal: Goal,
}

impl ScanPlan {
    /// From `min_qps` to `max_qps` by `delta` every `interval`, stopping at the first error.
    #[must_use]
    pub fn new(min_qps: f64, max_qps: f64, delta: f64, interval: Duration) -> Self {
        Self {
            min_qps,
            max_qps,
            qps_growth_delta: delta,
            adjust_interval: interval,
            goal: Goal::new(0.0),
        }
    }

    /// Levels must meet `goal`.
    #[must_use]
    pub fn with_goal(mut self, goal: Goal) -> Self {
        self.goal = goal;
        self
    }

    /// The levels in order (at most [`MAX_LEVELS`]).
    #[must_use]
    pub fn levels(&self) -> Vec<f64> {
        let mut levels = Vec::new();
        let mut qps = self.min_qps.max(0.01);
        while qps <= self.max_qps + 1e-9 && levels.len() < MAX_LEVELS {
            levels.push(qps);
            if self.qps_growth_delta <= 0.0 {
                break;
            }
            qps += self.qps_growth_delta;
        }
        levels
    }
}

/// The most levels a scan holds.
pub const MAX_LEVELS: usize = 10_000;

/// `auto`: find the capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AutoPlan {
    /// The first probe's QPS.
    pub start_qps: f64,
    /// Never probe above this.
    pub max_qps: f64,
    /// What a probe must meet (errors within 1% by default; set `maxRT` for a latency goal).
    pub goal: Goal,
    /// How long the judged part of a probe lasts.
    #[serde(with = "secs")]
    pub probe: Duration,
    /// How long the confirmation's judged part lasts.
    #[serde(with = "secs")]
    pub confirm: Duration,
    /// How long each probe runs before its judged part starts.
    #[serde(with = "secs")]
    pub settle: Duration,
    /// Stop bisecting when `hi - lo <= precision * lo`.
    pub precision: f64,
    /// Give up past this much time.
    #[serde(with = "secs")]
    pub max_duration: Duration,
}

impl Default for AutoPlan {
    fn default() -> Self {
        Self {
            start_qps: 10.0,
            max_qps: 100_000.0,
            goal: Goal::new(0.01),
            probe: Duration::from_secs(3),
            confirm: Duration::from_secs(6),
            settle: Duration::from_secs(1),
            precision: 0.05,
            max_duration: Duration::from_secs(600),
        }
    }
}

impl AutoPlan {
    /// Probes from `start` QPS, never above `max`.
    #[must_use]
    pub fn with_qps_range(mut self, start: f64, max: f64) -> Self {
        self.start_qps = start;
        self.max_qps = max;
        self
    }

    /// Probes must meet `goal`.
    #[must_use]
    pub fn with_goal(mut self, goal: Goal) -> Self {
        self.goal = goal;
        self
    }

    /// Each probe runs `settle` then is judged over `probe`; the confirmation over `confirm`.
    #[must_use]
    pub fn with_timing(mut self, settle: Duration, probe: Duration, confirm: Duration) -> Self {
        self.settle = settle;
        self.probe = probe;
        self.confirm = confirm;
        self
    }

    /// Bisects down to `hi - lo <= precision * lo`.
    #[must_use]
    pub fn with_precision(mut self, precision: f64) -> Self {
        self.precision = precision;
        self
    }

    /// Gives up after `max`.
    #[must_use]
    pub fn with_max_duration(mut self, max: Duration) -> Self {
        self.max_duration = max;
        self
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

/// A stress test's mode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Plan {
    /// Hold one load.
    Fixed(FixedPlan),
    /// Raise the QPS step by step.
    Scan(ScanPlan),
    /// Find the capacity.
    Auto(AutoPlan),
}

impl Plan {
    /// `auto`, `scan` or `fixed`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Fixed(_) => "fixed",
            Self::Scan(_) => "scan",
            Self::Auto(_) => "auto",
        }
    }

    /// The longest it can run, for bounding it.
    #[must_use]
    pub fn longest(&self) -> Duration {
        match self {
            Self::Fixed(p) => p.duration,
            Self::Scan(p) => p
                .adjust_interval
                .saturating_mul(u32::try_from(p.levels().len()).unwrap_or(u32::MAX)),
            Self::Auto(p) => p.max_duration,
        }
    }
}

/// Called with each second's row as it closes (a progress display).
pub type Progress = Arc<dyn Fn(&Second) + Send + Sync>;

/// How a test runs besides its plan.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// The report's name.
    pub name: String,
    /// Connection and timeout bounds.
    pub load: LoadOptions,
    /// Each second's row, as it closes.
    pub progress: Option<Progress>,
    /// Set to `true` to stop the test early (it still reports what it measured).
    pub stop: Option<watch::Receiver<bool>>,
    /// Rows of the run as they close, for a live view (replaced whole each second).
    pub live: Option<watch::Sender<Vec<Second>>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("name", &self.name)
            .field("load", &self.load)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// A test called `name`.
    #[must_use]
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// With these connection and timeout bounds.
    #[must_use]
    pub fn with_load(mut self, load: LoadOptions) -> Self {
        self.load = load;
        self
    }

    /// Calls `progress` with each second's row.
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Stops when `stop` turns `true`.
    #[must_use]
    pub fn with_stop(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Publishes the rows so far to `live` each second.
    #[must_use]
    pub fn with_live(mut self, live: watch::Sender<Vec<Second>>) -> Self {
        self.live = Some(live);
        self
    }
}

/// Runs `plan` against `target` and reports.
pub async fn run(target: Target, plan: Plan, options: RunOptions) -> Result<Report, StressError> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let start = Instant::now();
    let recorder = Recorder::new(start);
    let mut ctx = Ctx {
        recorder: recorder.clone(),
        stop: options.stop.clone(),
        steps: Vec::new(),
        start,
    };
    let ticker = tokio::spawn(tick(
        recorder.clone(),
        options.progress.clone(),
        options.live.clone(),
    ));
    let url = target.url().to_owned();
    let outcome = match plan {
        Plan::Fixed(p) => fixed(target, &p, &options, &mut ctx).await,
        Plan::Scan(p) => scan(target, &p, &options, &mut ctx).await,
        Plan::Auto(p) => auto(target, &p, &options, &mut ctx).await,
    };
    ticker.abort();
    let (capacity_qps, stopped_because, load) = outcome?;
    let end = Instant::now();
    let last = recorder.close(end, true);
    if let Some(progress) = &options.progress {
        for row in &last {
            progress(row);
        }
    }
    let seconds = recorder.rows();
    if let Some(live) = &options.live {
        live.send_replace(seconds.clone());
    }
    Ok(Report {
        name: options.name.clone(),
        target: url,
        mode: plan.name().to_owned(),
        load: load.to_owned(),
        config: serde_json::to_value(plan).unwrap_or_default(),
        started_at,
        duration_secs: end.duration_since(start).as_secs_f64(),
        capacity_qps,
        stopped_because,
        summary: recorder.total(end),
        seconds,
        steps: ctx.steps,
    })
}

/// Closes each second as it ends and hands its row on.
async fn tick(
    recorder: Recorder,
    progress: Option<Progress>,
    live: Option<watch::Sender<Vec<Second>>>,
) {
    let mut next = recorder.start() + Duration::from_millis(1020);
    loop {
        tokio::time::sleep_until(next).await;
        next += Duration::from_secs(1);
        let rows = recorder.close(Instant::now(), false);
        if let Some(progress) = &progress {
            for row in &rows {
                progress(row);
            }
        }
        if let Some(live) = &live
            && !rows.is_empty()
        {
            live.send_replace(recorder.rows());
        }
    }
}

/// What the modes share while they run.
struct Ctx {
    recorder: Recorder,
    stop: Option<watch::Receiver<bool>>,
    steps: Vec<Step>,
    start: Instant,
}

/// What a mode found: the capacity, why it stopped, and `open` or `closed`.
type Outcome = Result<(Option<f64>, String, &'static str), StressError>;

/// Answers still in flight after the last step get this long.
const DRAIN: Duration = Duration::from_secs(2);

impl Ctx {
    /// Waits `duration`; `false` if the test was stopped meanwhile.
    async fn wait(&mut self, duration: Duration) -> bool {
        let Some(stop) = &mut self.stop else {
            tokio::time::sleep(duration).await;
            return true;
        };
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    /// Holds `qps` for `settle` then `hold`, judges the held part (also on keeping up with
    /// `qps` when `keep_up`), and records the step; `None` if stopped.
    async fn step(
        &mut self,
        load: &Load,
        (qps, keep_up): (f64, bool),
        kind: Option<ProbeKind>,
        (settle, hold): (Duration, Duration),
        goal: &Goal,
    ) -> Option<Step> {
        let started = Instant::now();
        load.set_rate(qps);
        self.recorder.set_target(qps);
        if !settle.is_zero() && !self.wait(settle).await {
            return None;
        }
        self.recorder.take_window(Instant::now());
        if !self.wait(hold).await {
            return None;
        }
        let stats = self.recorder.take_window(Instant::now());
        let verdict = judge(&stats, keep_up.then_some(qps), goal);
        let step = Step {
            start_second: started.duration_since(self.start).as_secs_f64(),
            target: qps,
            kind,
            stats,
            passed: verdict.passed,
            reason: verdict.reason,
        };
        self.steps.push(step.clone());
        Some(step)
    }
}

async fn fixed(target: Target, plan: &FixedPlan, options: &RunOptions, ctx: &mut Ctx) -> Outcome {
    let (load, kind) = match plan.pace {
        Pace::Qps(qps) => {
            let load = Load::open(target, ctx.recorder.clone(), options.load).await?;
            load.set_rate(qps);
            ctx.recorder.set_target(qps);
            (load, "open")
        }
        Pace::Concurrency(n) => {
            ctx.recorder.set_target(n as f64);
            let load = Load::closed(target, ctx.recorder.clone(), options.load, n).await?;
            (load, "closed")
        }
    };
    ctx.recorder.take_window(Instant::now());
    let finished = ctx.wait(plan.duration).await;
    load.finish(DRAIN).await;
    let stats = ctx.recorder.take_window(Instant::now());
    let (offered, target_value) = match plan.pace {
        Pace::Qps(q) => (Some(q), q),
        #[allow(clippy::cast_precision_loss)]
        Pace::Concurrency(n) => (None, n as f64),
    };
    let verdict = judge(&stats, offered, &Goal::new(1.0));
    ctx.steps.push(Step {
        start_second: 0.0,
        target: target_value,
        kind: None,
        stats,
        passed: verdict.passed,
        reason: verdict.reason,
    });
    let why = if finished {
        format!("held for {:.0} s", plan.duration.as_secs_f64())
    } else {
        "stopped".to_owned()
    };
    Ok((None, why, kind))
}

async fn scan(target: Target, plan: &ScanPlan, options: &RunOptions, ctx: &mut Ctx) -> Outcome {
    let load = Load::open(target, ctx.recorder.clone(), options.load).await?;
    let mut capacity = None;
    let mut why = format!("reached maxQPS {:.1}", plan.max_qps);
    for qps in plan.levels() {
        let Some(step) = ctx
            .step(
                &load,
                // EAS's scan stops on maxRT or errors; only without a maxRT does a service
                // that falls behind stop it.
                (qps, plan.goal.max_rt.is_none()),
                None,
                (Duration::ZERO, plan.adjust_interval),
                &plan.goal,
            )
            .await
        else {
            why = "stopped".to_owned();
            break;
        };
        if !step.passed {
            why = format!("at {qps:.1} QPS: {}", step.reason);
            break;
        }
        capacity = Some(qps);
    }
    load.finish(DRAIN).await;
    Ok((capacity, why, "open"))
}

async fn auto(target: Target, plan: &AutoPlan, options: &RunOptions, ctx: &mut Ctx) -> Outcome {
    let load = Load::open(target, ctx.recorder.clone(), options.load).await?;
    let mut search = AutoSearch::new(plan.start_qps, plan.max_qps, plan.precision);
    let deadline = ctx.start + plan.max_duration;
    let why = loop {
        let (qps, kind) = match search.next() {
            Next::Probe { qps, kind } => (qps, kind),
            Next::Done { capacity: Some(c) } => {
                break format!("capacity {c:.1} QPS confirmed");
            }
            Next::Done { capacity: None } => {
                break "no rate met the goal".to_owned();
            }
        };
        if Instant::now() >= deadline {
            break format!(
                "maxDuration {:.0} s reached",
                plan.max_duration.as_secs_f64()
            );
        }
        let hold = if kind == ProbeKind::Confirm {
            plan.confirm
        } else {
            plan.probe
        };
        let Some(step) = ctx
            .step(
                &load,
                (qps, true),
                Some(kind),
                (plan.settle, hold),
                &plan.goal,
            )
            .await
        else {
            break "stopped".to_owned();
        };
        search.record(step.passed);
        if !step.passed {
            // Let the backlog of the failed probe drain before the next one, so that a probe
            // starts with no queue from the one before (bounded by the request timeout).
            load.set_rate(0.0);
            let until = Instant::now() + options.load.request_timeout;
            while load.in_flight() > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    load.finish(DRAIN).await;
    let capacity = match search.next() {
        Next::Done { capacity } => capacity,
        Next::Probe { .. } => None,
    };
    Ok((capacity, why, "open"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_levels_should_run_from_min_to_max_by_delta() {
        let plan = ScanPlan::new(50.0, 200.0, 50.0, Duration::from_secs(1));
        assert_eq!(plan.levels(), vec![50.0, 100.0, 150.0, 200.0]);
        assert_eq!(
            ScanPlan::new(5.0, 100.0, 0.0, Duration::from_secs(1)).levels(),
            vec![5.0]
        );
        assert_eq!(
            ScanPlan::new(0.0, 1e12, 1.0, Duration::from_secs(1))
                .levels()
                .len(),
            MAX_LEVELS
        );
    }

    #[test]
    fn plans_should_round_trip_through_json() {
        let plan = Plan::Auto(AutoPlan::default());
        let json = serde_json::to_value(plan).unwrap();
        assert_eq!(json["mode"], "auto");
        assert_eq!(json["goal"]["error_budget"], 0.01);
        let back: Plan = serde_json::from_value(json).unwrap();
        assert_eq!(back, plan);
    }
}
