//! The server's metrics, exposed at `/metrics` in the Prometheus text format.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `eas_requests_total` | counter | service, instance, code |
//! | `eas_request_duration_seconds` | histogram | service |
//! | `eas_queue_wait_seconds` | histogram | service, instance |
//! | `eas_process_duration_seconds` | histogram (one sample per batch) | service, instance |
//! | `eas_batch_size` | histogram | service, instance |
//! | `eas_inflight_requests` | gauge | service |
//! | `eas_queue_depth` | gauge | service, instance |
//! | `eas_instance_ready` | gauge (1 ready, 0 not) | service, instance |
//! | `eas_instance_restarts_total` | counter | service, instance |
//! | `eas_sink_dropped_total` | counter | service |
//! | `eas_queue_backlog` | gauge: items in an async service's input queue, waiting or in process | service |
//! | `eas_queue_sink_held_results` | gauge: results held by an async service's consumers because its sink queue is full | service |
//! | `eas_queue_sink_stalls` | gauge: times the sink queue stopped taking results since start | service |
//! | `eas_request_body_bytes_buffered` | gauge: bytes of request bodies being read, all services | |
//! | `eas_connections` | gauge: open client connections | |
//! | `eas_connections_evicted_total` | counter: idle connections closed to make room for new ones (the connection limit) | |
//! | `eas_connections_refused_total` | counter: connections closed at once because every open one was busy (the connection limit) | |
//! | `eas_replicas_desired` | gauge: replicas the controller wants | service |
//! | `eas_replicas_ready` | gauge: replicas taking requests | service |
//! | `eas_replicas` | gauge: replicas that exist, in any state | service |
//! | `eas_scaling_decisions_total` | counter: changes of the desired replica count | service, direction (`up`, `down`) |
//! | `eas_instance_cpu_utilization` | gauge: CPU in use, in percent of the instance's CPU request | service, instance |
//! | `eas_instance_memory_bytes` | gauge: resident memory of an instance's own process (child-process provider; in-process instances share the server's) | service, instance |
//! | `eas_server_memory_bytes` | gauge: resident memory of the server process, in-process instances included | |
//! | `eas_custom_metric` | gauge: the latest value a processor reported | service, instance, name |
//! | `eas_rollout_replicas` | gauge: replicas of the version being rolled out (`new`) and of the versions before (`old`), while a rollout runs | service, side, state (`ready`, `all`) |
//! | `eas_group_weight` | gauge: a member's weight in its group's traffic (0 when standalone) | group, service |
//! | `eas_gpu_utilization_ratio` | gauge: share of the last NVML sample period a kernel ran on the GPU, 0 to 1 (feature `cuda`, with NVML) | device |
//! | `eas_gpu_memory_used_bytes` | gauge: GPU memory in use, all processes | device |
//! | `eas_gpu_memory_total_bytes` | gauge: GPU memory installed | device |
//! | `eas_gpu_process_memory_bytes` | gauge: GPU memory a compute process holds (the server, or an instance's worker process) | device, pid |
//! | `eas_mirror_copies_total` | counter: copies of a service's requests for a mirror target, by what became of them | service, target, outcome (`attempted`, `shed`, `answered`, `failed`) |
//!
//! `instance` is `-` where a request was answered before reaching an instance (a 401, 429, ...).
//!
//! Replicas come and go: [`Metrics::remove_instance`] drops the series of one that is gone
//! (`Replica::remove_metrics` calls it), [`Metrics::remove_service_scaling`] those of a
//! service's replica counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a per-service metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// The service name.
    pub service: String,
}

/// Labels of a per-GPU metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    /// The CUDA device ordinal in this process.
    pub device: String,
}

/// Labels of a per-process GPU metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuProcessLabels {
    /// The CUDA device ordinal in this process.
    pub device: String,
    /// The process id.
    pub pid: String,
}

/// Labels of a per-instance metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// The service name.
    pub service: String,
    /// The instance index, or `-`.
    pub instance: String,
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The service name.
    pub service: String,
    /// The instance index, or `-` when no instance was reached.
    pub instance: String,
    /// The HTTP status code answered.
    pub code: u16,
}

/// Labels of a custom metric a processor reported.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CustomMetricLabels {
    /// The service name.
    pub service: String,
    /// The instance index.
    pub instance: String,
    /// The metric's name, as the processor reported it.
    pub name: String,
}

/// Labels of the scaling-decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScalingLabels {
    /// The service name.
    pub service: String,
    /// Which way the desired replica count went.
    pub direction: ScaleDirection,
}

/// Which way a scaling decision moved the desired replica count.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ScaleDirection {
    /// More replicas.
    Up,
    /// Fewer replicas.
    Down,
}

impl ScaleDirection {
    /// The direction from `from` to `to` replicas; `None` when they are equal.
    #[must_use]
    pub const fn between(from: u32, to: u32) -> Option<Self> {
        if to > from {
            Some(Self::Up)
        } else if to < from {
            Some(Self::Down)
        } else {
            None
        }
    }

    /// The label value: `up` or `down`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

impl EncodeLabelValue for ScaleDirection {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// A service's replica counts, as the controller sees them on one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// Replicas the controller wants.
    pub desired: u32,
    /// Replicas taking requests.
    pub ready: u32,
    /// Replicas that exist, in any state (starting, ready, restarting, failed, stopping).
    pub total: u32,
}

/// A gauge that holds an `f64`.
pub type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

fn batch_histogram() -> Histogram {
    // 1, 2, 4, ... 1024.
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of a server, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by service, instance and status code.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from the request's arrival to its answer.
    pub request_duration: HistogramFamily<ServiceLabels>,
    /// Time a request waited at its instance before a worker took it.
    pub queue_wait: HistogramFamily<InstanceLabels>,
    /// Time one processor call took (one sample per batch).
    pub process_duration: HistogramFamily<InstanceLabels>,
    /// Requests per processor call.
    pub batch_size: HistogramFamily<InstanceLabels>,
    /// Requests being handled now.
    pub inflight: Family<ServiceLabels, Gauge>,
    /// Requests waiting at an instance for a worker.
    pub queue_depth: Family<InstanceLabels, Gauge>,
    /// 1 when an instance takes requests, 0 otherwise.
    pub instance_ready: Family<InstanceLabels, Gauge>,
    /// Times an instance's processor was rebuilt after a crash.
    pub instance_restarts: Family<InstanceLabels, Counter>,
    /// Sink records dropped because the sink fell behind.
    pub sink_dropped: Family<ServiceLabels, Counter<u64, AtomicU64>>,
    /// Items in an async service's input queue, waiting or being processed.
    pub queue_backlog: Family<ServiceLabels, Gauge>,
    /// Results held by an async service's consumers because its sink queue is full.
    pub sink_held: Family<ServiceLabels, Gauge>,
    /// Times the sink queue stopped taking results since the service started.
    pub sink_stalls: Family<ServiceLabels, Gauge>,
    /// Bytes of request bodies being read now (set at scrape time).
    pub body_bytes_buffered: Gauge,
    /// Open client connections.
    pub connections: Gauge,
    /// Idle connections closed to make room under the connection limit.
    pub connections_evicted: Counter,
    /// Connections closed at once because the limit was reached and none was idle.
    pub connections_refused: Counter,
    /// Replicas the controller wants, by service.
    pub replicas_desired: Family<ServiceLabels, Gauge>,
    /// Replicas taking requests, by service.
    pub replicas_ready: Family<ServiceLabels, Gauge>,
    /// Replicas that exist, in any state, by service.
    pub replicas_total: Family<ServiceLabels, Gauge>,
    /// Changes of the desired replica count, by service and direction.
    pub scaling_decisions: Family<ScalingLabels, Counter>,
    /// CPU an instance uses, in percent of its CPU request.
    pub instance_cpu_utilization: Family<InstanceLabels, FloatGauge>,
    /// Resident memory of an instance's own process (a worker process), in bytes.
    pub instance_memory_bytes: Family<InstanceLabels, Gauge>,
    /// Resident memory of the server process, in bytes (set once a second by the series
    /// sampler).
    pub server_memory_bytes: Gauge,
    /// The latest value of each custom metric an instance's processor reported.
    pub custom_metric: Family<CustomMetricLabels, FloatGauge>,
    /// Share of the last sample period a kernel ran on each GPU, 0 to 1.
    pub gpu_utilization: Family<DeviceLabels, FloatGauge>,
    /// GPU memory in use, in bytes.
    pub gpu_memory_used: Family<DeviceLabels, Gauge>,
    /// GPU memory installed, in bytes.
    pub gpu_memory_total: Family<DeviceLabels, Gauge>,
    /// GPU memory each compute process holds, in bytes.
    pub gpu_process_memory: Family<GpuProcessLabels, Gauge>,
    /// Replicas of each side of a rollout under way.
    pub rollout_replicas: Family<Vec<(String, String)>, Gauge>,
    /// Each group member's weight.
    pub group_weight: Family<Vec<(String, String)>, Gauge>,
    /// Mirror copies by outcome.
    pub mirror_copies: Family<Vec<(String, String)>, Counter>,
    /// The custom metric names set per instance, so that its series can be removed.
    custom_names: Mutex<HashMap<InstanceLabels, BTreeSet<String>>>,
    /// The pids with a `gpu_process_memory` series, per device, so that gone ones are removed.
    gpu_pids: Mutex<HashMap<u32, BTreeSet<u32>>>,
}

/// The `eas_mirror_copies_total` series of one (service, target) pair, by outcome. They count
/// from the server's start: a mirror that is set again keeps counting.
#[derive(Debug, Clone, Default)]
pub struct MirrorCounters {
    /// Copies that were due.
    pub attempted: Counter,
    /// Copies dropped (too many in flight, the target backing off after failures, or gone).
    pub shed: Counter,
    /// Copies the target answered (any status).
    pub answered: Counter,
    /// Copies the target refused or failed.
    pub failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered and at zero.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("eas");
        let requests = Family::default();
        registry.register("requests", "Requests answered", requests.clone());
        let request_duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer",
            request_duration.clone(),
        );
        let queue_wait = HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "queue_wait_seconds",
            "Time a request waited at its instance for a worker",
            queue_wait.clone(),
        );
        let process_duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "process_duration_seconds",
            "Time one processor call took",
            process_duration.clone(),
        );
        let batch_size = HistogramFamily::new_with_constructor(batch_histogram as fn() -> _);
        registry.register(
            "batch_size",
            "Requests per processor call",
            batch_size.clone(),
        );
        let inflight = Family::default();
        registry.register(
            "inflight_requests",
            "Requests being handled now",
            inflight.clone(),
        );
        let queue_depth = Family::default();
        registry.register(
            "queue_depth",
            "Requests waiting at an instance for a worker",
            queue_depth.clone(),
        );
        let instance_ready = Family::default();
        registry.register(
            "instance_ready",
            "1 when an instance takes requests, 0 otherwise",
            instance_ready.clone(),
        );
        let instance_restarts = Family::default();
        registry.register(
            "instance_restarts",
            "Times an instance's processor was rebuilt after a crash",
            instance_restarts.clone(),
        );
        let sink_dropped = Family::default();
        registry.register(
            "sink_dropped",
            "Sink records dropped because the sink fell behind",
            sink_dropped.clone(),
        );
        let queue_backlog = Family::default();
        registry.register(
            "queue_backlog",
            "Items in an async service's input queue, waiting or being processed",
            queue_backlog.clone(),
        );
        let sink_held = Family::default();
        registry.register(
            "queue_sink_held_results",
            "Results held by an async service's consumers because its sink queue is full",
            sink_held.clone(),
        );
        let sink_stalls = Family::default();
        registry.register(
            "queue_sink_stalls",
            "Times the sink queue stopped taking results since the service started",
            sink_stalls.clone(),
        );
        let body_bytes_buffered = Gauge::default();
        registry.register(
            "request_body_bytes_buffered",
            "Bytes of request bodies being read, all services together",
            body_bytes_buffered.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let connections_evicted = Counter::default();
        registry.register(
            "connections_evicted",
            "Idle connections closed to make room under the connection limit",
            connections_evicted.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed at once: the connection limit was reached and none was idle",
            connections_refused.clone(),
        );
        let replicas_desired = Family::default();
        registry.register(
            "replicas_desired",
            "Replicas the controller wants",
            replicas_desired.clone(),
        );
        let replicas_ready = Family::default();
        registry.register(
            "replicas_ready",
            "Replicas taking requests",
            replicas_ready.clone(),
        );
        let replicas_total = Family::default();
        registry.register(
            "replicas",
            "Replicas that exist, in any state",
            replicas_total.clone(),
        );
        let scaling_decisions = Family::default();
        registry.register(
            "scaling_decisions",
            "Changes of the desired replica count",
            scaling_decisions.clone(),
        );
        let instance_cpu_utilization = Family::default();
        registry.register(
            "instance_cpu_utilization",
            "CPU an instance uses, in percent of its CPU request",
            instance_cpu_utilization.clone(),
        );
        let instance_memory_bytes = Family::default();
        registry.register(
            "instance_memory_bytes",
            "Resident memory of an instance's own process (in-process instances share the server's)",
            instance_memory_bytes.clone(),
        );
        let server_memory_bytes = Gauge::default();
        registry.register(
            "server_memory_bytes",
            "Resident memory of the server process, in-process instances included",
            server_memory_bytes.clone(),
        );
        let custom_metric = Family::default();
        registry.register(
            "custom_metric",
            "The latest value of a metric the instance's processor reported",
            custom_metric.clone(),
        );
        let gpu_utilization = Family::default();
        registry.register(
            "gpu_utilization_ratio",
            "Share of the last sample period a kernel ran on the GPU (NVML), 0 to 1",
            gpu_utilization.clone(),
        );
        let gpu_memory_used = Family::default();
        registry.register(
            "gpu_memory_used_bytes",
            "GPU memory in use, all processes (NVML)",
            gpu_memory_used.clone(),
        );
        let gpu_memory_total = Family::default();
        registry.register(
            "gpu_memory_total_bytes",
            "GPU memory installed (NVML)",
            gpu_memory_total.clone(),
        );
        let gpu_process_memory = Family::default();
        registry.register(
            "gpu_process_memory_bytes",
            "GPU memory a compute process holds (NVML)",
            gpu_process_memory.clone(),
        );
        let rollout_replicas = Family::default();
        registry.register(
            "rollout_replicas",
            "Replicas of the version being rolled out (new) and of the older ones (old)",
            rollout_replicas.clone(),
        );
        let group_weight = Family::default();
        registry.register(
            "group_weight",
            "A member's weight in its service group's traffic (0: standalone)",
            group_weight.clone(),
        );
        let mirror_copies = Family::default();
        registry.register(
            "mirror_copies",
            "Copies of a service's requests for a mirror target, by outcome",
            mirror_copies.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            queue_wait,
            process_duration,
            batch_size,
            inflight,
            queue_depth,
            instance_ready,
            instance_restarts,
            sink_dropped,
            queue_backlog,
            sink_held,
            sink_stalls,
            body_bytes_buffered,
            connections,
            connections_evicted,
            connections_refused,
            replicas_desired,
            replicas_ready,
            replicas_total,
            scaling_decisions,
            instance_cpu_utilization,
            instance_memory_bytes,
            server_memory_bytes,
            custom_metric,
            gpu_utilization,
            gpu_memory_used,
            gpu_memory_total,
            gpu_process_memory,
            rollout_replicas,
            group_weight,
            mirror_copies,
            custom_names: Mutex::new(HashMap::new()),
            gpu_pids: Mutex::new(HashMap::new()),
        }
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    #[must_use]
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        openmetrics_to_prometheus(&text)
    }

    /// Labels of one service.
    #[must_use]
    pub fn service(service: &str) -> ServiceLabels {
        ServiceLabels {
            service: service.to_owned(),
        }
    }

    /// Labels of one instance (`None`: no instance).
    #[must_use]
    pub fn instance(service: &str, instance: Option<u32>) -> InstanceLabels {
        InstanceLabels {
            service: service.to_owned(),
            instance: instance.map_or_else(|| "-".to_owned(), |i| i.to_string()),
        }
    }

    /// Sets a service's replica gauges.
    pub fn set_replicas(&self, service: &str, counts: ReplicaCounts) {
        let labels = Self::service(service);
        let gauges = [
            (&self.replicas_desired, counts.desired),
            (&self.replicas_ready, counts.ready),
            (&self.replicas_total, counts.total),
        ];
        for (family, count) in gauges {
            family.get_or_create(&labels).set(i64::from(count));
        }
    }

    /// Counts a scaling decision that moved a service's desired replicas from `from` to `to`;
    /// one that changes nothing is not counted. Returns the direction counted.
    pub fn record_scaling(&self, service: &str, from: u32, to: u32) -> Option<ScaleDirection> {
        let direction = ScaleDirection::between(from, to)?;
        self.scaling_decisions
            .get_or_create(&ScalingLabels {
                service: service.to_owned(),
                direction,
            })
            .inc();
        Some(direction)
    }

    /// Sets an instance's CPU use, in percent of its CPU request.
    pub fn set_instance_cpu_utilization(&self, service: &str, index: u32, percent: f64) {
        self.instance_cpu_utilization
            .get_or_create(&Self::instance(service, Some(index)))
            .set(percent);
    }

    /// Sets the resident memory of an instance's own process, in bytes.
    pub fn set_instance_memory(&self, service: &str, index: u32, bytes: u64) {
        self.instance_memory_bytes
            .get_or_create(&Self::instance(service, Some(index)))
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Sets one GPU's sample: utilisation (0 to 1), memory used and total in bytes, and the
    /// memory each compute process on it holds (`(pid, bytes)`; processes not listed lose
    /// their series).
    pub fn set_gpu(
        &self,
        device: u32,
        utilization: f64,
        memory: (u64, u64),
        processes: &[(u32, u64)],
    ) {
        let labels = DeviceLabels {
            device: device.to_string(),
        };
        let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
        self.gpu_utilization.get_or_create(&labels).set(utilization);
        self.gpu_memory_used
            .get_or_create(&labels)
            .set(bytes(memory.0));
        self.gpu_memory_total
            .get_or_create(&labels)
            .set(bytes(memory.1));
        let mut pids = self.gpu_pids.lock().unwrap_or_else(|e| e.into_inner());
        let now: BTreeSet<u32> = processes.iter().map(|(pid, _)| *pid).collect();
        for gone in pids.remove(&device).unwrap_or_default().difference(&now) {
            self.gpu_process_memory.remove(&GpuProcessLabels {
                device: labels.device.clone(),
                pid: gone.to_string(),
            });
        }
        for (pid, used) in processes {
            self.gpu_process_memory
                .get_or_create(&GpuProcessLabels {
                    device: labels.device.clone(),
                    pid: pid.to_string(),
                })
                .set(bytes(*used));
        }
        pids.insert(device, now);
    }

    /// Sets an instance's custom metrics to the latest values its processor reported.
    pub fn set_custom_metrics(&self, service: &str, index: u32, values: &BTreeMap<String, f64>) {
        if values.is_empty() {
            return;
        }
        let instance = Self::instance(service, Some(index));
        for (name, value) in values {
            let labels = CustomMetricLabels {
                service: instance.service.clone(),
                instance: instance.instance.clone(),
                name: name.clone(),
            };
            self.custom_metric.get_or_create(&labels).set(*value);
        }
        let mut names = self.custom_names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .entry(instance)
            .or_default()
            .extend(values.keys().cloned());
    }

    /// Drops the per-instance series of an instance that is gone: its histograms, gauges,
    /// restarts, CPU use and custom metrics. `eas_requests_total` stays: a service's request
    /// metrics hold handles to its counters, and a counter that no longer grows does no harm.
    ///
    /// Call it once the instance has stopped (see `Replica::remove_metrics`), or it may
    /// publish some of them again.
    pub fn remove_instance(&self, service: &str, index: u32) {
        let labels = Self::instance(service, Some(index));
        for family in [&self.queue_wait, &self.process_duration, &self.batch_size] {
            family.remove(&labels);
        }
        for family in [&self.queue_depth, &self.instance_ready] {
            family.remove(&labels);
        }
        self.instance_restarts.remove(&labels);
        self.instance_cpu_utilization.remove(&labels);
        self.instance_memory_bytes.remove(&labels);
        let names = self
            .custom_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&labels);
        for name in names.into_iter().flatten() {
            self.custom_metric.remove(&CustomMetricLabels {
                service: labels.service.clone(),
                instance: labels.instance.clone(),
                name,
            });
        }
    }

    /// Sets the rollout gauges of a service: (ready, all) replicas of the new version and of
    /// the older ones; `None` (no rollout) removes them.
    pub fn set_rollout(&self, service: &str, sides: Option<[(u32, u32); 2]>) {
        for (side, index) in [("new", 0), ("old", 1)] {
            for (state, pick) in [("ready", 0), ("all", 1)] {
                let labels = vec![
                    ("service".to_owned(), service.to_owned()),
                    ("side".to_owned(), side.to_owned()),
                    ("state".to_owned(), state.to_owned()),
                ];
                match sides {
                    Some(sides) => {
                        let (ready, all) = sides[index];
                        let value = if pick == 0 { ready } else { all };
                        self.rollout_replicas
                            .get_or_create(&labels)
                            .set(i64::from(value));
                    }
                    None => {
                        self.rollout_replicas.remove(&labels);
                    }
                }
            }
        }
    }

    /// Replaces the group weights with `weights`: (group, service, weight) each.
    pub fn set_group_weights(&self, weights: &[(String, String, u32)]) {
        self.group_weight.clear();
        for (group, service, weight) in weights {
            let labels = vec![
                ("group".to_owned(), group.clone()),
                ("service".to_owned(), service.clone()),
            ];
            self.group_weight
                .get_or_create(&labels)
                .set(i64::from(*weight));
        }
    }

    /// The counters of the copies of `service`'s requests sent to `target`, looked up once
    /// (a mirror keeps them, so that a copy costs no label lookup).
    #[must_use]
    pub fn mirror_counters(&self, service: &str, target: &str) -> MirrorCounters {
        let counter = |outcome: &str| {
            self.mirror_copies
                .get_or_create(&vec![
                    ("service".to_owned(), service.to_owned()),
                    ("target".to_owned(), target.to_owned()),
                    ("outcome".to_owned(), outcome.to_owned()),
                ])
                .clone()
        };
        MirrorCounters {
            attempted: counter("attempted"),
            shed: counter("shed"),
            answered: counter("answered"),
            failed: counter("failed"),
        }
    }

    /// Drops a service's replica gauges, scaling counters and rollout gauges (the service is
    /// gone).
    pub fn remove_service_scaling(&self, service: &str) {
        self.set_rollout(service, None);
        let labels = Self::service(service);
        for family in [
            &self.replicas_desired,
            &self.replicas_ready,
            &self.replicas_total,
        ] {
            family.remove(&labels);
        }
        for direction in [ScaleDirection::Up, ScaleDirection::Down] {
            self.scaling_decisions.remove(&ScalingLabels {
                service: service.to_owned(),
                direction,
            });
        }
    }
}

/// A service's request metrics, looked up once so that a request records them without
/// building label strings.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    metrics: Arc<Metrics>,
    service: String,
    inflight: Gauge,
    duration: Histogram,
    /// `eas_requests_total{code="200"}` by instance index, made on first use (replicas come
    /// and go; their indices grow), for the first [`OK_SLOTS`] indices.
    ok: Box<[std::sync::OnceLock<Counter>]>,
}

/// Instance indices whose 200 counter is kept at hand (one atomic load per answer); later
/// ones (a service restarted or rescaled hundreds of times) look theirs up in the family.
const OK_SLOTS: usize = 256;

impl ServiceMetrics {
    /// The handles of `service`; `instances` is how many it starts with (their counters are
    /// made now, so that they show at 0 before the first request).
    #[must_use]
    pub fn new(metrics: &Arc<Metrics>, service: &str, instances: u32) -> Self {
        let labels = Metrics::service(service);
        let this = Self {
            inflight: metrics.inflight.get_or_create(&labels).clone(),
            duration: metrics.request_duration.get_or_create(&labels).clone(),
            ok: (0..OK_SLOTS).map(|_| std::sync::OnceLock::new()).collect(),
            metrics: Arc::clone(metrics),
            service: service.to_owned(),
        };
        for index in 0..instances {
            let _ = this.ok_counter(index);
        }
        this
    }

    /// The 200 counter of instance `index`, when it has a slot.
    fn ok_counter(&self, index: u32) -> Option<&Counter> {
        let slot = self.ok.get(index as usize)?;
        Some(slot.get_or_init(|| {
            self.metrics
                .requests
                .get_or_create(&RequestLabels {
                    service: self.service.clone(),
                    instance: index.to_string(),
                    code: 200,
                })
                .clone()
        }))
    }

    /// The in-flight gauge.
    #[must_use]
    pub fn inflight(&self) -> &Gauge {
        &self.inflight
    }

    /// Records one answered request: its status, the instance reached, how long it took.
    pub fn answered(&self, instance: Option<u32>, code: u16, seconds: f64) {
        self.duration.observe(seconds);
        if code == 200
            && let Some(counter) = instance.and_then(|i| self.ok_counter(i))
        {
            counter.inc();
            return;
        }
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                service: self.service.clone(),
                instance: instance.map_or_else(|| "-".to_owned(), |i| i.to_string()),
                code,
            })
            .inc();
    }
}

/// The encoder writes OpenMetrics, where a counter family `x` has samples `x_total`; the
/// Prometheus text format names the family `x_total` itself, or its parsers see samples
/// without HELP or TYPE. Renames the HELP and TYPE lines of counters accordingly.
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + counters.len() * 12);
    for line in text.lines() {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_should_name_every_family_with_prometheus_conventions() {
        let metrics = Metrics::new();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                service: "echo".into(),
                instance: "0".into(),
                code: 200,
            })
            .inc();
        metrics
            .batch_size
            .get_or_create(&Metrics::instance("echo", Some(0)))
            .observe(4.0);
        let text = metrics.encode();
        assert!(
            text.contains(r#"eas_requests_total{service="echo",instance="0",code="200"} 1"#),
            "{text}"
        );
        assert!(text.contains("# TYPE eas_batch_size histogram"), "{text}");
        assert!(
            text.contains(r#"eas_batch_size_bucket{le="4.0",service="echo",instance="0"} 1"#)
                || text
                    .contains(r#"eas_batch_size_bucket{service="echo",instance="0",le="4.0"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("# EOF"),
            "plain Prometheus text has no EOF marker"
        );
        assert!(text.contains("# TYPE eas_requests_total counter"), "{text}");
        assert!(
            text.contains("# HELP eas_requests_total Requests answered"),
            "{text}"
        );
    }

    #[test]
    fn encoding_should_show_replica_counts_scaling_cpu_and_custom_metrics() {
        let metrics = Metrics::new();
        metrics.set_replicas(
            "echo",
            ReplicaCounts {
                desired: 3,
                ready: 1,
                total: 2,
            },
        );
        assert_eq!(
            metrics.record_scaling("echo", 2, 3),
            Some(ScaleDirection::Up)
        );
        assert_eq!(metrics.record_scaling("echo", 3, 3), None);
        metrics.record_scaling("echo", 3, 1);
        metrics.record_scaling("echo", 1, 2);
        metrics.set_instance_cpu_utilization("echo", 1, 42.5);
        metrics.set_instance_memory("echo", 1, 1 << 20);
        metrics.set_custom_metrics("echo", 1, &BTreeMap::from([("tokens".to_owned(), 7.25)]));
        let text = metrics.encode();
        for line in [
            r#"eas_replicas_desired{service="echo"} 3"#,
            r#"eas_replicas_ready{service="echo"} 1"#,
            r#"eas_replicas{service="echo"} 2"#,
            "# TYPE eas_scaling_decisions_total counter",
            r#"eas_scaling_decisions_total{service="echo",direction="up"} 2"#,
            r#"eas_scaling_decisions_total{service="echo",direction="down"} 1"#,
            "# TYPE eas_instance_cpu_utilization gauge",
            r#"eas_instance_cpu_utilization{service="echo",instance="1"} 42.5"#,
            "# TYPE eas_instance_memory_bytes gauge",
            r#"eas_instance_memory_bytes{service="echo",instance="1"} 1048576"#,
            "# TYPE eas_custom_metric gauge",
            r#"eas_custom_metric{service="echo",instance="1",name="tokens"} 7.25"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn removing_an_instance_should_drop_its_series_and_keep_the_others() {
        let metrics = Metrics::new();
        for index in [0, 1] {
            let labels = Metrics::instance("echo", Some(index));
            metrics.instance_ready.get_or_create(&labels).set(1);
            metrics.batch_size.get_or_create(&labels).observe(1.0);
            metrics.set_instance_cpu_utilization("echo", index, 10.0);
            metrics.set_custom_metrics("echo", index, &BTreeMap::from([("m".to_owned(), 1.0)]));
        }
        metrics.set_replicas("echo", ReplicaCounts::default());
        metrics.record_scaling("echo", 1, 2);

        metrics.remove_instance("echo", 0);
        let text = metrics.encode();
        assert!(!text.contains(r#"instance="0""#), "{text}");
        for line in [
            r#"eas_instance_ready{service="echo",instance="1"} 1"#,
            r#"eas_instance_cpu_utilization{service="echo",instance="1"} 10.0"#,
            r#"eas_custom_metric{service="echo",instance="1",name="m"} 1.0"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }

        metrics.remove_service_scaling("echo");
        let text = metrics.encode();
        assert!(!text.contains("eas_replicas_desired{"), "{text}");
        assert!(!text.contains("eas_scaling_decisions_total{"), "{text}");
    }

    #[test]
    fn gpu_samples_should_set_device_series_and_drop_gone_processes() {
        let metrics = Metrics::new();
        metrics.set_gpu(
            0,
            0.25,
            (4 << 30, 16 << 30),
            &[(10, 1 << 30), (11, 2 << 30)],
        );
        metrics.set_gpu(0, 0.5, (4 << 30, 16 << 30), &[(11, 3 << 30)]);
        let text = metrics.encode();
        for line in [
            r#"eas_gpu_utilization_ratio{device="0"} 0.5"#,
            r#"eas_gpu_memory_used_bytes{device="0"} 4294967296"#,
            r#"eas_gpu_memory_total_bytes{device="0"} 17179869184"#,
            r#"eas_gpu_process_memory_bytes{device="0",pid="11"} 3221225472"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains(r#"pid="10""#), "{text}");
    }
}
