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
//!
//! `instance` is `-` where a request was answered before reaching an instance (a 401, 429, ...).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
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
}

/// A service's request metrics, looked up once so that a request records them without
/// building label strings.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    metrics: Arc<Metrics>,
    service: String,
    inflight: Gauge,
    duration: Histogram,
    /// `eas_requests_total{code="200"}` by instance index.
    ok: Vec<Counter>,
}

impl ServiceMetrics {
    /// The handles of `service`, whose instances are numbered `0..instances`.
    #[must_use]
    pub fn new(metrics: &Arc<Metrics>, service: &str, instances: u32) -> Self {
        let labels = Metrics::service(service);
        Self {
            inflight: metrics.inflight.get_or_create(&labels).clone(),
            duration: metrics.request_duration.get_or_create(&labels).clone(),
            ok: (0..instances)
                .map(|i| {
                    metrics
                        .requests
                        .get_or_create(&RequestLabels {
                            service: service.to_owned(),
                            instance: i.to_string(),
                            code: 200,
                        })
                        .clone()
                })
                .collect(),
            metrics: Arc::clone(metrics),
            service: service.to_owned(),
        }
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
            && let Some(counter) = instance.and_then(|i| self.ok.get(i as usize))
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
}
