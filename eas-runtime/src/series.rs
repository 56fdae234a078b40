//! Second-level series for people to look at: what each service did over the last
//! [`WINDOW_SECONDS`], kept in memory, with no Prometheus server needed.
//!
//! A [`Sampler`] started with the platform reads the counters and histograms of
//! [`Metrics`] once a second and turns their deltas into one point per service:
//!
//! | field | from |
//! |---|---|
//! | `qps` | `eas_requests_total`, all codes, per second |
//! | `p50_ms`, `p90_ms`, `p99_ms` | bucket deltas of `eas_request_duration_seconds`, interpolated within a bucket as Prometheus's `histogram_quantile` does (`null` in a second without requests) |
//! | `batch` | mean requests per processor call: sum and count deltas of `eas_batch_size` over the service's instances |
//! | `errors_4xx`, `errors_5xx` | `eas_requests_total` by status class, per second |
//! | `ready`, `desired` | replicas taking requests; `eas_replicas_desired` |
//!
//! and one per instance: `cpu_percent` (`eas_instance_cpu_utilization`, which the controller
//! sets each tick) and `memory_bytes` (the resident memory of the instance's own worker process;
//! an in-process instance shares the server's, which it shows with `shared_memory: true`).
//!
//! It also samples the GPUs through NVML ([`crate::gpu::monitor`]: `eas_gpu_*` in
//! `/metrics`, and the latest sample the controller reads for the autoscaler's `gpu_util`).
//!
//! A request does no extra work for it: the sampler reads what requests record anyway. Memory is
//! bounded: [`WINDOW_SECONDS`] points per series, at most [`MAX_SERVICES`] services and
//! [`MAX_INSTANCES`] instance series (the rest are left out, and the answer says so).
//!
//! The control API serves them as JSON ([`Series::to_json`]) at `GET /api/v2/series`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::directory::Directory;
use crate::metrics::Metrics;

/// How far back the series go, in seconds (one point a second).
pub const WINDOW_SECONDS: usize = 15 * 60;
/// The most services with series; those beyond (in name order) are not sampled.
pub const MAX_SERVICES: usize = 128;
/// The most instance series, all services together.
pub const MAX_INSTANCES: usize = 256;
/// How often the sampler reads the metrics.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One second of one service. `NaN` (JSON `null`) where there is nothing to say.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ServicePoint {
    t: u64,
    qps: f32,
    p50_ms: f32,
    p90_ms: f32,
    p99_ms: f32,
    batch: f32,
    errors_4xx: f32,
    errors_5xx: f32,
    ready: u16,
    desired: u16,
}

/// One second of one instance.
#[derive(Debug, Clone, Copy, PartialEq)]
struct InstancePoint {
    t: u64,
    cpu_percent: f32,
    memory_bytes: u64,
}

#[derive(Debug, Default)]
struct InstanceRing {
    shared_memory: bool,
    points: VecDeque<InstancePoint>,
}

#[derive(Debug, Default)]
struct ServiceRing {
    points: VecDeque<ServicePoint>,
    instances: BTreeMap<u32, InstanceRing>,
}

fn push<T>(ring: &mut VecDeque<T>, point: T) {
    if ring.len() == WINDOW_SECONDS {
        ring.pop_front();
    }
    ring.push_back(point);
}

#[derive(Debug, Default)]
struct Rings {
    services: BTreeMap<String, ServiceRing>,
    truncated: bool,
    server_memory_bytes: u64,
}

/// The series of every service, shared between the sampler and the routes that read them.
#[derive(Debug, Default)]
pub struct Series {
    rings: Mutex<Rings>,
}

/// The series of one service, one array per field (index `i` of each is second `t[i]`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[non_exhaustive]
pub struct ServiceSeries {
    /// The service.
    pub name: String,
    /// Unix seconds of each point.
    pub t: Vec<u64>,
    /// Requests answered per second.
    pub qps: Vec<f32>,
    /// Median latency, ms (`NaN`: no request that second).
    pub p50_ms: Vec<f32>,
    /// 90th percentile latency, ms.
    pub p90_ms: Vec<f32>,
    /// 99th percentile latency, ms.
    pub p99_ms: Vec<f32>,
    /// Mean requests per processor call (`NaN`: no call that second).
    pub batch: Vec<f32>,
    /// Answers with a 4xx status per second.
    pub errors_4xx: Vec<f32>,
    /// Answers with a 5xx status per second.
    pub errors_5xx: Vec<f32>,
    /// Replicas taking requests.
    pub ready: Vec<u16>,
    /// Replicas the controller wants.
    pub desired: Vec<u16>,
    /// Each instance's series.
    pub instances: Vec<InstanceSeries>,
}

/// The series of one instance.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[non_exhaustive]
pub struct InstanceSeries {
    /// The instance's index within its service.
    pub index: u32,
    /// Whether it runs in the server's process, so that its memory is the server's.
    pub shared_memory: bool,
    /// Unix seconds of each point.
    pub t: Vec<u64>,
    /// CPU in use, in percent of its CPU request (`NaN` before the controller measured it).
    pub cpu_percent: Vec<f32>,
    /// Resident memory of its process, in bytes.
    pub memory_bytes: Vec<u64>,
}

/// What `GET /api/v2/series` answers.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[non_exhaustive]
pub struct SeriesSnapshot {
    /// Seconds between points.
    pub interval_s: u64,
    /// How many seconds the series hold at most.
    pub window_s: u64,
    /// Whether services or instances were left out (past [`MAX_SERVICES`] or
    /// [`MAX_INSTANCES`]).
    pub truncated: bool,
    /// The server process's resident memory now, in bytes.
    pub server_memory_bytes: u64,
    /// The services' series, by name.
    pub services: Vec<ServiceSeries>,
}

impl Series {
    /// No series yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn rings(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The series of every service, or of the one called `service`.
    #[must_use]
    pub fn snapshot(&self, service: Option<&str>) -> SeriesSnapshot {
        let rings = self.rings();
        let services = rings
            .services
            .iter()
            .filter(|(name, _)| service.is_none_or(|s| s == name.as_str()))
            .map(|(name, ring)| {
                let mut out = ServiceSeries {
                    name: name.clone(),
                    ..ServiceSeries::default()
                };
                for p in &ring.points {
                    out.t.push(p.t);
                    out.qps.push(p.qps);
                    out.p50_ms.push(p.p50_ms);
                    out.p90_ms.push(p.p90_ms);
                    out.p99_ms.push(p.p99_ms);
                    out.batch.push(p.batch);
                    out.errors_4xx.push(p.errors_4xx);
                    out.errors_5xx.push(p.errors_5xx);
                    out.ready.push(p.ready);
                    out.desired.push(p.desired);
                }
                out.instances = ring
                    .instances
                    .iter()
                    .map(|(index, ring)| InstanceSeries {
                        index: *index,
                        shared_memory: ring.shared_memory,
                        t: ring.points.iter().map(|p| p.t).collect(),
                        cpu_percent: ring.points.iter().map(|p| p.cpu_percent).collect(),
                        memory_bytes: ring.points.iter().map(|p| p.memory_bytes).collect(),
                    })
                    .collect();
                out
            })
            .collect();
        SeriesSnapshot {
            interval_s: INTERVAL.as_secs(),
            window_s: WINDOW_SECONDS as u64,
            truncated: rings.truncated,
            server_memory_bytes: rings.server_memory_bytes,
            services,
        }
    }

    /// [`snapshot`](Self::snapshot) as JSON (`NaN` as `null`).
    #[must_use]
    pub fn to_json(&self, service: Option<&str>) -> serde_json::Value {
        serde_json::to_value(self.snapshot(service)).unwrap_or_default()
    }
}

/// The cumulative figures of one service at one sample.
#[derive(Debug, Clone, Default)]
struct Totals {
    answered: u64,
    client_errors: u64,
    server_errors: u64,
    /// `(upper bound, cumulative count)`, the last one `+Inf`.
    buckets: Vec<(f64, u64)>,
    /// Batch-size sum and count, by instance.
    batches: BTreeMap<u32, (f64, u64)>,
}

/// Reads [`Metrics`] once a second into a [`Series`].
pub struct Sampler {
    series: Arc<Series>,
    directory: Arc<Directory>,
    /// The request counter, latency and batch-size families (shared with [`Metrics`]), in a
    /// registry of their own, so that reading them encodes nothing else.
    registry: Registry,
    before: HashMap<String, Totals>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

impl Sampler {
    /// A sampler of the services of `directory` into `series`.
    #[must_use]
    pub fn new(series: Arc<Series>, directory: Arc<Directory>) -> Self {
        let metrics = directory.metrics();
        let mut registry = Registry::default();
        registry.register("requests", "", metrics.requests.clone());
        registry.register("duration", "", metrics.request_duration.clone());
        registry.register("batch", "", metrics.batch_size.clone());
        Self {
            series,
            directory,
            registry,
            before: HashMap::new(),
        }
    }

    /// Samples every [`INTERVAL`] until `stop` turns true (or its sender is gone).
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
            let now = tokio::time::Instant::now();
            let elapsed = now.duration_since(last);
            last = now;
            self.sample(SystemTime::now(), elapsed);
        }
    }

    /// Takes one sample at `at`, `elapsed` after the one before (rates divide by it). The first
    /// sample of a service only records where its counters stand.
    pub fn sample(&mut self, at: SystemTime, elapsed: Duration) {
        let metrics = Arc::clone(self.directory.metrics());
        let server_memory = crate::provider::resident_memory(std::process::id()).unwrap_or(0);
        metrics
            .server_memory_bytes
            .set(i64::try_from(server_memory).unwrap_or(i64::MAX));
        // GPUs (feature `cuda`, with NVML): one NVML read per device, published in /metrics
        // and kept as the latest sample the controller gives the autoscaler (`gpu_util`).
        // Without NVML this is one check of a flag.
        if let Ok(devices) = crate::gpu::GpuMonitor::shared().sample() {
            for d in &devices {
                metrics.set_gpu(
                    d.ordinal,
                    d.utilization,
                    (d.memory_used_bytes, d.memory_total_bytes),
                    &d.processes,
                );
            }
        }
        let t = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let seconds = elapsed.as_secs_f64().max(1e-3);
        let services = self.directory.services();
        let truncated_services = services.len() > MAX_SERVICES;
        let services: Vec<_> = services.into_iter().take(MAX_SERVICES).collect();
        let mut totals = self.read_requests();
        let mut rings = self.series.rings();
        rings.server_memory_bytes = server_memory;
        rings.truncated = truncated_services;
        rings
            .services
            .retain(|name, _| services.iter().any(|(n, _)| n == name));
        self.before
            .retain(|name, _| services.iter().any(|(n, _)| n == name));
        let mut instance_budget = MAX_INSTANCES;
        let mut left_out = false;
        for (name, service) in &services {
            let replicas = service.instances();
            let now = totals.remove(name).unwrap_or_default();
            let ring = rings.services.entry(name.clone()).or_default();
            // Instances.
            ring.instances
                .retain(|index, _| replicas.iter().any(|r| r.index() == *index));
            for replica in replicas.iter() {
                if instance_budget == 0 {
                    ring.instances.remove(&replica.index());
                    left_out = true;
                    continue;
                }
                instance_budget -= 1;
                let labels = Metrics::instance(name, Some(replica.index()));
                let cpu = metrics
                    .instance_cpu_utilization
                    .get(&labels)
                    .map_or(f32::NAN, |g| g.get() as f32);
                let own = replica.resident_memory();
                let entry = ring.instances.entry(replica.index()).or_default();
                entry.shared_memory = own.is_none();
                push(
                    &mut entry.points,
                    InstancePoint {
                        t,
                        cpu_percent: cpu,
                        memory_bytes: own.unwrap_or(server_memory),
                    },
                );
            }
            // The service.
            let Some(before) = self.before.insert(name.clone(), now.clone()) else {
                continue;
            };
            let rate = |now: u64, before: u64| (now.saturating_sub(before) as f64 / seconds) as f32;
            let deltas = bucket_deltas(&before.buckets, &now.buckets);
            let (mut calls, mut requests) = (0u64, 0.0f64);
            for (index, (sum, count)) in &now.batches {
                let (sum0, count0) = before.batches.get(index).copied().unwrap_or((0.0, 0));
                calls += count.saturating_sub(count0);
                requests += (sum - sum0).max(0.0);
            }
            let ready = replicas.iter().filter(|r| r.is_ready()).count();
            let desired = metrics
                .replicas_desired
                .get(&Metrics::service(name))
                .map_or(replicas.len() as i64, |g| g.get());
            push(
                &mut ring.points,
                ServicePoint {
                    t,
                    qps: rate(now.answered, before.answered),
                    p50_ms: quantile_ms(&deltas, 0.50),
                    p90_ms: quantile_ms(&deltas, 0.90),
                    p99_ms: quantile_ms(&deltas, 0.99),
                    batch: if calls == 0 {
                        f32::NAN
                    } else {
                        (requests / calls as f64) as f32
                    },
                    errors_4xx: rate(now.client_errors, before.client_errors),
                    errors_5xx: rate(now.server_errors, before.server_errors),
                    ready: u16::try_from(ready).unwrap_or(u16::MAX),
                    desired: u16::try_from(desired.max(0)).unwrap_or(u16::MAX),
                },
            );
        }
        rings.truncated |= left_out;
    }

    /// The request counters, latency buckets and batch sizes of every service, from the private registry's
    /// text (service names hold no quotes: `[a-z][a-z0-9_]*`).
    fn read_requests(&self) -> HashMap<String, Totals> {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        let mut totals: HashMap<String, Totals> = HashMap::new();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some((metric, labels)) = series.split_once('{') else {
                continue;
            };
            let labels = parse_labels(labels.trim_end_matches('}'));
            let Some(service) = labels.get("service") else {
                continue;
            };
            match metric {
                "requests_total" => {
                    let Ok(count) = value.parse::<u64>() else {
                        continue;
                    };
                    let code: u16 = labels.get("code").and_then(|c| c.parse().ok()).unwrap_or(0);
                    let entry = totals.entry((*service).to_owned()).or_default();
                    entry.answered += count;
                    match code {
                        400..=499 => entry.client_errors += count,
                        500..=599 => entry.server_errors += count,
                        _ => {}
                    }
                }
                "duration_bucket" => {
                    let (Some(le), Ok(count)) = (labels.get("le"), value.parse::<u64>()) else {
                        continue;
                    };
                    let bound = if *le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap_or(f64::INFINITY)
                    };
                    totals
                        .entry((*service).to_owned())
                        .or_default()
                        .buckets
                        .push((bound, count));
                }
                "batch_sum" | "batch_count" => {
                    let Some(index) = labels.get("instance").and_then(|i| i.parse().ok()) else {
                        continue;
                    };
                    let Ok(value) = value.parse::<f64>() else {
                        continue;
                    };
                    let entry = totals
                        .entry((*service).to_owned())
                        .or_default()
                        .batches
                        .entry(index)
                        .or_default();
                    if metric == "batch_sum" {
                        entry.0 = value;
                    } else {
                        entry.1 = value as u64;
                    }
                }
                _ => {}
            }
        }
        totals
    }
}

/// `k="v",k="v"` as a map (values hold no `"`).
fn parse_labels(text: &str) -> HashMap<&str, &str> {
    let mut labels = HashMap::new();
    let mut rest = text;
    while let Some((key, tail)) = rest.split_once("=\"") {
        let Some((value, tail)) = tail.split_once('"') else {
            break;
        };
        labels.insert(key.trim_start_matches(','), value);
        rest = tail;
    }
    labels
}

/// Per-bucket counts between two cumulative histograms with the same bounds: `(upper bound,
/// cumulative count of the interval)`. Empty when the bounds differ (a new histogram).
fn bucket_deltas(before: &[(f64, u64)], now: &[(f64, u64)]) -> Vec<(f64, u64)> {
    if before.is_empty() {
        return now.to_vec();
    }
    if before.len() != now.len() {
        return Vec::new();
    }
    now.iter()
        .zip(before)
        .map(|((bound, n), (_, b))| (*bound, n.saturating_sub(*b)))
        .collect()
}

/// The `q` quantile of cumulative buckets in ms, interpolated linearly within its bucket (as
/// Prometheus's `histogram_quantile`); past the last finite bound, that bound. `NaN` when
/// empty.
fn quantile_ms(buckets: &[(f64, u64)], q: f64) -> f32 {
    let Some(&(_, total)) = buckets.last() else {
        return f32::NAN;
    };
    if total == 0 {
        return f32::NAN;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return (lower.0 * 1e3) as f32;
            }
            let within = (count - lower.1) as f64;
            let fraction = if within == 0.0 {
                1.0
            } else {
                (rank - lower.1 as f64) / within
            };
            return ((lower.0 + (bound - lower.0) * fraction) * 1e3) as f32;
        }
        lower = (bound, count);
    }
    (lower.0 * 1e3) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::BodyLimits;

    #[test]
    fn quantiles_should_interpolate_within_the_bucket_as_prometheus_does() {
        // 10 requests: 5 under 1 ms, 4 in (1, 2] ms, 1 in (2, 4] ms.
        let buckets = [(0.001, 5), (0.002, 9), (0.004, 10), (f64::INFINITY, 10)];
        assert!((quantile_ms(&buckets, 0.5) - 1.0).abs() < 1e-6);
        assert!((quantile_ms(&buckets, 0.9) - 2.0).abs() < 1e-6);
        assert!((quantile_ms(&buckets, 0.99) - 3.8).abs() < 1e-4);
        assert!(quantile_ms(&[(0.001, 0), (f64::INFINITY, 0)], 0.5).is_nan());
        // Everything past the last bound: the last bound.
        assert!((quantile_ms(&[(0.001, 0), (f64::INFINITY, 3)], 0.5) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn labels_should_parse_in_any_order() {
        let labels = parse_labels(r#"le="0.5",service="echo",code="200""#);
        assert_eq!(labels.get("le"), Some(&"0.5"));
        assert_eq!(labels.get("service"), Some(&"echo"));
        assert_eq!(labels.get("code"), Some(&"200"));
    }

    #[test]
    fn rings_should_keep_the_last_window_only() {
        let mut ring = VecDeque::new();
        for i in 0..WINDOW_SECONDS + 10 {
            push(&mut ring, i);
        }
        assert_eq!(ring.len(), WINDOW_SECONDS);
        assert_eq!(ring.front(), Some(&10));
    }

    #[tokio::test]
    async fn a_sample_should_turn_counter_deltas_into_rates_and_percentiles() {
        let metrics = Arc::new(Metrics::new());
        let directory = Arc::new(Directory::new(Arc::clone(&metrics), BodyLimits::default()));
        let spec = eas_core::spec::ServiceSpec::from_json_str(
            r#"{"metadata": {"name": "echo", "instance": 1}, "processor": "echo", "model_path": "."}"#,
        )
        .expect("spec");
        let service = crate::service::Service::start(
            spec,
            &crate::registry::ProcessorRegistry::with_builtins(),
            &crate::service::LocalPaths::new(),
            Arc::clone(&metrics),
        )
        .expect("starts");
        directory.insert(service).expect("inserted");
        let series = Arc::new(Series::new());
        let mut sampler = Sampler::new(Arc::clone(&series), Arc::clone(&directory));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        sampler.sample(t0, INTERVAL);
        assert!(series.snapshot(None).services[0].t.is_empty(), "a baseline");

        let handles = crate::metrics::ServiceMetrics::new(&metrics, "echo", 1);
        for _ in 0..8 {
            handles.answered(Some(0), 200, 0.0015);
        }
        handles.answered(None, 429, 0.0001);
        handles.answered(Some(0), 500, 0.003);
        let batches = metrics
            .batch_size
            .get_or_create_owned(&Metrics::instance("echo", Some(0)));
        batches.observe(2.0);
        batches.observe(4.0);
        sampler.sample(t0 + Duration::from_secs(2), Duration::from_secs(2));
        let snapshot = series.snapshot(Some("echo"));
        let echo = &snapshot.services[0];
        assert_eq!(echo.t, vec![1_002]);
        assert!((echo.qps[0] - 5.0).abs() < 1e-6, "{:?}", echo.qps);
        assert!((echo.errors_4xx[0] - 0.5).abs() < 1e-6);
        assert!((echo.errors_5xx[0] - 0.5).abs() < 1e-6);
        assert!(
            echo.p50_ms[0] > 1.0 && echo.p50_ms[0] <= 2.0,
            "{:?}",
            echo.p50_ms
        );
        assert!(
            echo.p99_ms[0] > 2.0 && echo.p99_ms[0] <= 4.0,
            "{:?}",
            echo.p99_ms
        );
        assert_eq!(echo.instances.len(), 1);
        assert!(echo.instances[0].shared_memory);
        assert!(echo.instances[0].memory_bytes[0] > 0);
        assert!((echo.batch[0] - 3.0).abs() < 1e-6, "{:?}", echo.batch);
        sampler.sample(t0 + Duration::from_secs(3), INTERVAL);
        let json = series.to_json(None).to_string();
        assert!(json.contains(r#""batch":[3.0,null]"#), "{json}");
        assert!(json.contains(r#""p50_ms":["#), "{json}");
        assert!(series.snapshot(Some("other")).services.is_empty());
    }
}
