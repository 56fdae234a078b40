//! Benchmark tasks: stress tests the control API starts, describes, stops and reports on
//! (`/api/v2/benchmark-tasks`, the HTTP side is `http::benchmark`).
//!
//! A task is aimed at one of this platform's own services (`service.serviceName`, with its own
//! token unless `requestToken` is given) unless the operator allows other targets
//! ([`TaskConfig::allowed_targets`]). Everything an admin sends is bounded: the tasks kept and
//! running at once, a test's duration, rate, connections and data, and a task name's length
//! and alphabet; past a bound the error says which and what to do.
//!
//! The request body follows EAS's `CreateBenchmarkTask`:
//!
//! ```json
//! {"name": "echo-auto",
//!  "base": {"mode": "auto", "duration": 60, "qps": 100, "concurrency": 8},
//!  "service": {"serviceName": "echo", "requestToken": "...", "url": "http://...", "hmac": false},
//!  "data": {"content": "<the file, base64>", "dataType": "lines|base64|binary", "contentType": "..."},
//!  "optional": {"maxRt": 100, "rtPercentile": "p99", "errorBudget": 0.01, "minQps": 10,
//!               "maxQps": 1000, "qpsGrowthDelta": 10, "adjustInterval": 5}}
//! ```
//!
//! `base.mode` is `fixed` (the default; `qps`, or `concurrency` for the closed loop, for
//! `duration` seconds), `scan` (`minQps`, `maxQps`, `qpsGrowthDelta`, `adjustInterval`, `maxRt`)
//! or `auto` (`minQps` as the first probe, `maxQps`, `maxRt`, `errorBudget`; `duration` bounds it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::modes::{self, AutoPlan, FixedPlan, Pace, Plan, RunOptions, ScanPlan};
use super::record::{Second, Stats};
use super::search::{Goal, RtStat};
use super::{Bodies, Credentials, DataFormat, LoadOptions, Report, Target};

/// The operator's bounds on benchmark tasks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskConfig {
    /// URLs other than this platform's services that tasks may aim at: a task's `service.url`
    /// must have the same scheme, host and port as one of them and a path under its path.
    /// Empty (the default): only this platform's own services.
    pub allowed_targets: Vec<String>,
    /// Tasks kept (finished ones are dropped oldest first to make room).
    pub max_tasks: usize,
    /// Tasks running at once.
    pub max_running: usize,
    /// The longest a task may run.
    pub max_duration: Duration,
    /// The highest rate a task may ask for.
    pub max_qps: f64,
    /// The most connections a task may open.
    pub max_connections: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            allowed_targets: Vec::new(),
            max_tasks: 32,
            max_running: 2,
            max_duration: Duration::from_secs(3600),
            max_qps: 100_000.0,
            max_connections: 1024,
        }
    }
}

impl TaskConfig {
    /// Also allows tasks aimed under `url` (`http://host:port/prefix`).
    #[must_use]
    pub fn allow_target(mut self, url: impl Into<String>) -> Self {
        self.allowed_targets.push(url.into());
        self
    }

    /// Keeps at most `kept` tasks, `running` of them running at once.
    #[must_use]
    pub fn with_limits(mut self, kept: usize, running: usize) -> Self {
        self.max_tasks = kept.max(1);
        self.max_running = running.max(1);
        self
    }

    /// Bounds a task's duration.
    #[must_use]
    pub fn with_max_duration(mut self, max: Duration) -> Self {
        self.max_duration = max;
        self
    }

    fn allows(&self, url: &str) -> bool {
        let Ok(wanted) = url.parse::<http::Uri>() else {
            return false;
        };
        self.allowed_targets.iter().any(|allowed| {
            let Ok(allowed) = allowed.parse::<http::Uri>() else {
                return false;
            };
            let port = |u: &http::Uri| u.port_u16().unwrap_or(80);
            allowed.scheme_str() == wanted.scheme_str()
                && allowed
                    .host()
                    .zip(wanted.host())
                    .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
                && port(&allowed) == port(&wanted)
                && wanted
                    .path()
                    .starts_with(allowed.path().trim_end_matches('/'))
        })
    }
}

/// Why a task operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The body or a field is wrong.
    #[error("{0}")]
    Invalid(String),
    /// No such task, or no such service.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or too many tasks are kept or running.
    #[error("{0}")]
    Conflict(String),
    /// The target is not one of this platform's services and not allowed by configuration.
    #[error("{0}")]
    Forbidden(String),
}

/// `POST /api/v2/benchmark-tasks`'s body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TaskRequest {
    /// The task's name (default: `{service}-{n}`).
    #[serde(default, alias = "TaskName", alias = "taskName")]
    pub name: Option<String>,
    /// Mode and load.
    #[serde(default)]
    pub base: TaskBase,
    /// What to aim at.
    pub service: TaskService,
    /// The request bodies.
    pub data: TaskData,
    /// Mode settings.
    #[serde(default)]
    pub optional: TaskOptional,
}

/// `base`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct TaskBase {
    /// `fixed` (default), `scan` or `auto`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Seconds: how long fixed mode holds, the bound of auto mode.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Fixed mode's rate.
    #[serde(default)]
    pub qps: Option<f64>,
    /// Fixed mode's connections (closed loop), instead of a rate.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// `service`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct TaskService {
    /// One of this platform's services.
    #[serde(default)]
    pub service_name: Option<String>,
    /// The token to send (default: the service's own).
    #[serde(default)]
    pub request_token: Option<String>,
    /// Another endpoint, if the operator allows it.
    #[serde(default)]
    pub url: Option<String>,
    /// Sign requests (EAS HMAC) instead of sending the token.
    #[serde(default)]
    pub hmac: bool,
}

/// `data`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct TaskData {
    /// The data file, base64.
    #[serde(default)]
    pub content: Option<String>,
    /// EAS's OSS path: not supported (refused with a hint).
    #[serde(default)]
    pub path: Option<String>,
    /// `lines` (default), `base64` or `binary`.
    #[serde(default)]
    pub data_type: Option<String>,
    /// The requests' `Content-Type`.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// `optional`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct TaskOptional {
    /// Response time bound, milliseconds.
    #[serde(default)]
    pub max_rt: Option<f64>,
    /// Which statistic `maxRt` bounds (`p99` by default).
    #[serde(default)]
    pub rt_percentile: Option<String>,
    /// The share of errors that still passes.
    #[serde(default)]
    pub error_budget: Option<f64>,
    /// Scan's first level; auto's first probe.
    #[serde(default)]
    pub min_qps: Option<f64>,
    /// Scan's last level; auto's ceiling.
    #[serde(default)]
    pub max_qps: Option<f64>,
    /// Scan's step.
    #[serde(default)]
    pub qps_growth_delta: Option<f64>,
    /// Seconds per scan level.
    #[serde(default)]
    pub adjust_interval: Option<f64>,
    /// Connections at most.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Request timeout, milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// A task's state, as EAS writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TaskStatus {
    /// Sending load.
    Running,
    /// Asked to stop; finishing.
    Stopping,
    /// Stopped before its end.
    Stopped,
    /// Ran to its end.
    Completed,
    /// Could not run (the reason says why).
    Error,
}

impl TaskStatus {
    fn is_finished(self) -> bool {
        matches!(self, Self::Stopped | Self::Completed | Self::Error)
    }
}

/// What `describe` and `list` answer of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct TaskView {
    /// The task's name.
    pub task_name: String,
    /// The service it aims at (or the URL).
    pub service_name: String,
    /// Where requests go.
    pub endpoint: String,
    /// `auto`, `scan` or `fixed`.
    pub mode: String,
    /// Its state.
    pub status: TaskStatus,
    /// Why it is in that state.
    pub reason: String,
    /// When it was created (RFC 3339).
    pub create_time: String,
    /// When its state last changed (RFC 3339).
    pub update_time: String,
    /// The capacity found, once finished.
    pub capacity_qps: Option<f64>,
    /// The last second measured.
    pub current: Option<Second>,
}

struct Task {
    name: String,
    service: String,
    endpoint: String,
    mode: &'static str,
    created: SystemTime,
    state: Mutex<TaskState>,
    stop: watch::Sender<bool>,
    live: watch::Receiver<Vec<Second>>,
}

struct TaskState {
    status: TaskStatus,
    reason: String,
    updated: SystemTime,
    report: Option<Report>,
}

impl Task {
    fn view(&self) -> TaskView {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        TaskView {
            task_name: self.name.clone(),
            service_name: self.service.clone(),
            endpoint: self.endpoint.clone(),
            mode: self.mode.to_owned(),
            status: state.status,
            reason: state.reason.clone(),
            create_time: rfc3339(self.created),
            update_time: rfc3339(state.updated),
            capacity_qps: state.report.as_ref().and_then(|r| r.capacity_qps),
            current: self.live.borrow().last().cloned(),
        }
    }

    fn finish(&self, status: TaskStatus, reason: String, report: Option<Report>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.status = if status == TaskStatus::Completed && *self.stop.borrow() {
            TaskStatus::Stopped
        } else {
            status
        };
        state.reason = reason;
        state.updated = SystemTime::now();
        state.report = report;
    }
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// This platform's service for a task: its predict URL and token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnService {
    /// `http://addr/api/predict/{name}`.
    pub url: String,
    /// Its token.
    pub token: String,
}

/// The benchmark tasks of a platform.
#[derive(Debug)]
pub struct BenchmarkTasks {
    config: TaskConfig,
    tasks: Mutex<VecDeque<Arc<Task>>>,
    counter: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Longest task name.
const MAX_NAME: usize = 64;

impl BenchmarkTasks {
    /// No tasks yet, within `config`'s bounds.
    #[must_use]
    pub fn new(config: TaskConfig) -> Self {
        Self {
            config,
            tasks: Mutex::new(VecDeque::new()),
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The bounds.
    #[must_use]
    pub fn config(&self) -> &TaskConfig {
        &self.config
    }

    /// Checks `request`, resolves its target (`own` finds this platform's services by name)
    /// and starts it on the current tokio runtime; its name.
    pub fn create(
        &self,
        request: TaskRequest,
        own: &dyn Fn(&str) -> Option<OwnService>,
    ) -> Result<String, TaskError> {
        let invalid = |m: String| TaskError::Invalid(m);
        let (service, endpoint, token) = match (&request.service.url, &request.service.service_name)
        {
            (Some(url), _) => {
                if !self.config.allows(url) {
                    return Err(TaskError::Forbidden(format!(
                        "service.url `{url}` is not one of this platform's services; the operator \
                         allows other targets by configuration (allowed: {})",
                        if self.config.allowed_targets.is_empty() {
                            "none".to_owned()
                        } else {
                            self.config.allowed_targets.join(", ")
                        }
                    )));
                }
                let token = request.service.request_token.clone().unwrap_or_default();
                (url.clone(), url.clone(), token)
            }
            (None, Some(name)) => {
                let found = own(name).ok_or_else(|| {
                    TaskError::NotFound(format!("no service `{name}` on this platform"))
                })?;
                let token = request.service.request_token.clone().unwrap_or(found.token);
                (name.clone(), found.url, token)
            }
            (None, None) => {
                return Err(invalid(
                    "service.serviceName is required (or service.url where allowed)".into(),
                ));
            }
        };
        let name = match &request.name {
            Some(name) => name.clone(),
            None => {
                let n = self
                    .counter
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                let base: String = service
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .take(40)
                    .collect();
                format!("{base}-{n}")
            }
        };
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(format!(
                "name: 1 to {MAX_NAME} characters of A-Z, a-z, 0-9, `-`, `_`, `.`"
            )));
        }
        let bodies = self.bodies(&request.data)?;
        let plan = self.plan(&request)?;
        let load = LoadOptions::default()
            .with_max_connections(
                request
                    .optional
                    .max_connections
                    .unwrap_or(self.config.max_connections)
                    .min(self.config.max_connections),
            )
            .with_request_timeout(Duration::from_millis(
                request
                    .optional
                    .timeout_ms
                    .unwrap_or(10_000)
                    .clamp(1, 600_000),
            ));
        let credentials = match (token.is_empty(), request.service.hmac) {
            (true, _) => Credentials::None,
            (false, false) => Credentials::Token(token),
            (false, true) => Credentials::Hmac(token),
        };
        let mut target = Target::new(&endpoint, &bodies)
            .map_err(|e| invalid(e.to_string()))?
            .with_credentials(credentials);
        if let Some(ct) = &request.data.content_type {
            target = target
                .with_content_type(ct)
                .map_err(|e| invalid(e.to_string()))?;
        }

        let (stop, stopped) = watch::channel(false);
        let (live_tx, live) = watch::channel(Vec::new());
        let task = Arc::new(Task {
            name: name.clone(),
            service,
            endpoint,
            mode: plan.name(),
            created: SystemTime::now(),
            state: Mutex::new(TaskState {
                status: TaskStatus::Running,
                reason: "running".to_owned(),
                updated: SystemTime::now(),
                report: None,
            }),
            stop,
            live,
        });
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            if tasks.iter().any(|t| t.name == name) {
                return Err(TaskError::Conflict(format!(
                    "a task called `{name}` exists; delete it or pick another name"
                )));
            }
            let running = tasks
                .iter()
                .filter(|t| {
                    !t.state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .status
                        .is_finished()
                })
                .count();
            if running >= self.config.max_running {
                return Err(TaskError::Conflict(format!(
                    "{running} tasks are running (at most {}); stop one first",
                    self.config.max_running
                )));
            }
            while tasks.len() >= self.config.max_tasks {
                let oldest_finished = tasks.iter().position(|t| {
                    t.state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .status
                        .is_finished()
                });
                match oldest_finished {
                    Some(i) => {
                        tasks.remove(i);
                    }
                    None => {
                        return Err(TaskError::Conflict(format!(
                            "{} tasks are kept (at most {}); delete one first",
                            tasks.len(),
                            self.config.max_tasks
                        )));
                    }
                }
            }
            tasks.push_back(Arc::clone(&task));
        }
        let options = RunOptions::named(name.clone())
            .with_load(load)
            .with_stop(stopped)
            .with_live(live_tx);
        tokio::spawn(async move {
            match modes::run(target, plan, options).await {
                Ok(report) => {
                    let reason = report.stopped_because.clone();
                    task.finish(TaskStatus::Completed, reason, Some(report));
                }
                Err(e) => task.finish(TaskStatus::Error, e.to_string(), None),
            }
        });
        Ok(name)
    }

    fn bodies(&self, data: &TaskData) -> Result<Bodies, TaskError> {
        if data.path.is_some() {
            return Err(TaskError::Invalid(
                "data.path (an OSS path in EAS) is not supported: send the file in data.content, \
                 base64"
                    .into(),
            ));
        }
        let content = data.content.as_deref().ok_or_else(|| {
            TaskError::Invalid("data.content (the request data file, base64) is required".into())
        })?;
        let bytes = BASE64
            .decode(content.trim())
            .map_err(|e| TaskError::Invalid(format!("data.content is not base64: {e}")))?;
        let format: DataFormat = data
            .data_type
            .as_deref()
            .unwrap_or("lines")
            .parse()
            .map_err(|e: super::StressError| TaskError::Invalid(format!("data.dataType: {e}")))?;
        Bodies::parse(&bytes, format, "data.content").map_err(|e| TaskError::Invalid(e.to_string()))
    }

    fn plan(&self, request: &TaskRequest) -> Result<Plan, TaskError> {
        let invalid = |m: String| Err(TaskError::Invalid(m));
        let o = &request.optional;
        let b = &request.base;
        let max_secs = self.config.max_duration.as_secs_f64();
        let positive = |name: &str, v: Option<f64>| -> Result<Option<f64>, TaskError> {
            match v {
                Some(v) if !(v.is_finite() && v > 0.0) => Err(TaskError::Invalid(format!(
                    "{name} must be a positive number"
                ))),
                other => Ok(other),
            }
        };
        let duration = positive("base.duration", b.duration)?;
        if let Some(d) = duration
            && d > max_secs
        {
            return invalid(format!(
                "base.duration {d} s is over the bound of {max_secs} s"
            ));
        }
        for (name, v) in [
            ("base.qps", b.qps),
            ("optional.minQps", o.min_qps),
            ("optional.maxQps", o.max_qps),
            ("optional.qpsGrowthDelta", o.qps_growth_delta),
        ] {
            if let Some(v) = positive(name, v)?
                && v > self.config.max_qps
            {
                return invalid(format!(
                    "{name} {v} is over the bound of {} QPS",
                    self.config.max_qps
                ));
            }
        }
        let max_rt =
            positive("optional.maxRt", o.max_rt)?.map(|ms| Duration::from_secs_f64(ms / 1000.0));
        let rt = match &o.rt_percentile {
            Some(s) => s
                .parse::<RtStat>()
                .map_err(|e| TaskError::Invalid(format!("optional.rtPercentile: {e}")))?,
            None => RtStat::P99,
        };
        let budget = |default: f64| -> Result<f64, TaskError> {
            match o.error_budget {
                Some(v) if !(0.0..=1.0).contains(&v) => Err(TaskError::Invalid(
                    "optional.errorBudget must lie in 0..=1".into(),
                )),
                Some(v) => Ok(v),
                None => Ok(default),
            }
        };
        let mode = b.mode.as_deref().unwrap_or("fixed").to_ascii_lowercase();
        let plan = match mode.as_str() {
            "fixed" => {
                let duration = Duration::from_secs_f64(duration.unwrap_or(60.0));
                let pace = match (b.qps, b.concurrency) {
                    (Some(q), None) => Pace::Qps(q),
                    (None, Some(c)) if (1..=self.config.max_connections).contains(&c) => {
                        Pace::Concurrency(c)
                    }
                    (None, Some(_)) => {
                        return invalid(format!(
                            "base.concurrency must lie in 1..={}",
                            self.config.max_connections
                        ));
                    }
                    _ => return invalid("fixed mode wants base.qps or base.concurrency".into()),
                };
                Plan::Fixed(FixedPlan::new(pace, duration))
            }
            "scan" => {
                let min = o.min_qps.unwrap_or(10.0);
                let max = o.max_qps.unwrap_or(1000.0);
                let delta = o.qps_growth_delta.unwrap_or(10.0);
                let interval =
                    positive("optional.adjustInterval", o.adjust_interval)?.unwrap_or(5.0);
                let plan = ScanPlan::new(min, max, delta, Duration::from_secs_f64(interval))
                    .with_goal(Goal::new(budget(0.0)?).with_max_rt(max_rt, rt));
                if min > max {
                    return invalid("optional.minQps is above optional.maxQps".into());
                }
                let plan = Plan::Scan(plan);
                if plan.longest() > self.config.max_duration {
                    return invalid(format!(
                        "the scan would run {:.0} s, over the bound of {max_secs} s: raise \
                         qpsGrowthDelta or lower adjustInterval",
                        plan.longest().as_secs_f64()
                    ));
                }
                plan
            }
            "auto" => {
                let defaults = AutoPlan::default();
                Plan::Auto(AutoPlan {
                    start_qps: o.min_qps.unwrap_or(defaults.start_qps),
                    max_qps: o.max_qps.unwrap_or(self.config.max_qps),
                    goal: Goal::new(budget(0.01)?).with_max_rt(max_rt, rt),
                    max_duration: Duration::from_secs_f64(
                        duration
                            .unwrap_or(defaults.max_duration.as_secs_f64())
                            .min(max_secs),
                    ),
                    ..defaults
                })
            }
            other => return invalid(format!("base.mode `{other}`: use auto, scan or fixed")),
        };
        Ok(plan)
    }

    /// Every task, oldest first.
    #[must_use]
    pub fn list(&self) -> Vec<TaskView> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|t| t.view())
            .collect()
    }

    fn find(&self, name: &str) -> Result<Arc<Task>, TaskError> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(format!("no benchmark task `{name}`")))
    }

    /// One task.
    pub fn describe(&self, name: &str) -> Result<TaskView, TaskError> {
        self.find(name).map(|t| t.view())
    }

    /// A task's report: the final one once it finished, else what it measured so far (its
    /// seconds, and counts summed over them; `stopped_because` is `running`).
    pub fn report(&self, name: &str) -> Result<Report, TaskError> {
        let task = self.find(name)?;
        let state = task.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(report) = &state.report {
            return Ok(report.clone());
        }
        let seconds = task.live.borrow().clone();
        let mut summary = Stats::default();
        for row in &seconds {
            summary.secs += row.stats.secs;
            summary.sent += row.stats.sent;
            summary.ok += row.stats.ok;
            summary.errors += row.stats.errors;
            for (k, n) in &row.stats.errors_by_status {
                *summary.errors_by_status.entry(k.clone()).or_insert(0) += n;
            }
        }
        if summary.secs > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let qps = summary.ok as f64 / summary.secs;
            summary.qps = qps;
        }
        Ok(Report {
            name: task.name.clone(),
            target: task.endpoint.clone(),
            mode: task.mode.to_owned(),
            load: String::new(),
            config: serde_json::Value::Null,
            started_at: rfc3339(task.created),
            duration_secs: summary.secs,
            capacity_qps: None,
            stopped_because: if state.status == TaskStatus::Error {
                state.reason.clone()
            } else {
                "running".to_owned()
            },
            summary,
            seconds,
            steps: Vec::new(),
        })
    }

    /// Asks a running task to stop (it keeps its report); a finished one stays as it is.
    pub fn stop(&self, name: &str) -> Result<TaskView, TaskError> {
        let task = self.find(name)?;
        {
            let mut state = task.state.lock().unwrap_or_else(|e| e.into_inner());
            if !state.status.is_finished() {
                task.stop.send_replace(true);
                state.status = TaskStatus::Stopping;
                state.reason = "stopping".to_owned();
                state.updated = SystemTime::now();
            }
        }
        Ok(task.view())
    }

    /// Asks every running task to stop (the platform is shutting down).
    pub fn stop_all(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            task.stop.send_replace(true);
        }
    }

    /// Stops a task and forgets it.
    pub fn delete(&self, name: &str) -> Result<(), TaskError> {
        let task = self.find(name)?;
        task.stop.send_replace(true);
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|t| !Arc::ptr_eq(t, &task));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_targets_should_match_origin_and_path_prefix() {
        let config = TaskConfig::default().allow_target("http://10.0.0.5:8080/api/predict/");
        assert!(config.allows("http://10.0.0.5:8080/api/predict/echo"));
        assert!(!config.allows("http://10.0.0.5:80/api/predict/echo"));
        assert!(!config.allows("http://10.0.0.50:8080/api/predict/echo"));
        assert!(!config.allows("http://10.0.0.5:8080/metrics"));
        assert!(!TaskConfig::default().allows("http://10.0.0.5:8080/api/predict/echo"));
    }
}
