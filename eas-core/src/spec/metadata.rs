//! `metadata`: the service's name, size, resources and advanced runtime settings.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{CountOrPercent, EmptyOr, duration, empty_as_none};
use crate::resources::SpreadPolicy;

/// Service metadata: name, instance count, resources per instance and runtime settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Metadata {
    /// The service name, unique within a region: a lowercase letter first, then lowercase
    /// letters, digits or underscores, 64 characters at most.
    pub name: String,

    /// The number of service instances to launch.
    pub instance: u32,

    /// The service group it belongs to (an eas addition; EAS sets it through its console):
    /// the group's endpoint (`/api/predict/{group}`) splits traffic by weight among the
    /// members released into it. Named like a service, and unlike any service.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub group: Option<String>,

    /// The ID of the PAI workspace the service is restricted to.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub workspace_id: Option<String>,

    /// The number of CPU cores required by each instance (fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,

    /// The memory for each instance, in megabytes (MB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,

    /// The number of GPUs required by each instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,

    /// GPU memory per instance in GB, for GPU slicing: several instances share one GPU.
    /// Available only with an EAS resource group or resource quotas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<u32>,

    /// The share of a GPU's compute per instance, in percent (1 to 100), for GPU slicing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub gpu_core_percentage: Option<u32>,

    /// Quality of service: empty (the default) or `BestEffort`, which enables CPU sharing:
    /// instances are scheduled on memory and GPU memory only and `cpu` is a ceiling.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    #[schemars(with = "EmptyOr<Qos>")]
    pub qos: Option<Qos>,

    /// The ID of a dedicated resource group; omitted for the public resource group.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub resource: Option<String>,

    /// The CUDA version mounted at /usr/local/cuda: one of 8.0, 9.0, 10.0, 10.1, 10.2, 11.0,
    /// 11.1 or 11.2.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub cuda: Option<String>,

    /// Set to 1 to enable RDMA networking for distributed inference (Lingjun resources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub rdma: Option<u32>,

    /// Enables gRPC connections to the service (EAS: on the gateway instead of HTTP; eas: the
    /// Open Inference Protocol over gRPC on the HTTP port, beside HTTP).
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_grpc: bool,

    /// Deploys the service as an AI-Web application with a web server.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_webservice: bool,

    /// The kind of service: `Async` for an asynchronous queue service, `LLMGatewayService`
    /// for an LLM intelligent router; omitted for a synchronous service.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,

    /// Advanced per-instance serving settings.
    #[serde(default)]
    pub rpc: Rpc,

    /// Rolling update settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_strategy: Option<RollingStrategy>,

    /// The graceful termination period for an instance, in seconds. Default: 30; at most
    /// 86400 (a day).
    #[serde(
        rename = "eas.termination_grace_period",
        default = "default_termination_grace_period",
        with = "duration::secs"
    )]
    #[schemars(with = "u64")]
    pub termination_grace_period: Duration,

    /// How instances are spread when scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,

    /// Periodically probes higher-priority resources (dedicated, spot) and migrates instances
    /// from lower-priority ones once a probe succeeds.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resource_rebalancing: bool,

    /// `elasticjob` deploys the service as an Elastic Job (offline batch inference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_type: Option<WorkloadType>,

    /// Lets a service in a dedicated resource group overflow into the public pool.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resource_burstable: bool,

    /// Shared memory per instance, in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u32>,
}

impl Metadata {
    /// Metadata with a name, an instance count and every other field at its default.
    #[must_use]
    pub fn new(name: impl Into<String>, instance: u32) -> Self {
        Self {
            name: name.into(),
            instance,
            group: None,
            workspace_id: None,
            cpu: None,
            memory: None,
            gpu: None,
            gpu_memory: None,
            gpu_core_percentage: None,
            qos: None,
            resource: None,
            cuda: None,
            rdma: None,
            enable_grpc: false,
            enable_webservice: false,
            service_type: None,
            rpc: Rpc::default(),
            rolling_strategy: None,
            termination_grace_period: default_termination_grace_period(),
            scheduling: None,
            resource_rebalancing: false,
            workload_type: None,
            resource_burstable: false,
            shm_size: None,
        }
    }

    /// Whether the service runs in a dedicated resource group (`resource` is set).
    #[must_use]
    pub fn is_dedicated(&self) -> bool {
        self.resource.is_some()
    }

    /// Whether this is an asynchronous (queue) service.
    #[must_use]
    pub fn is_async(&self) -> bool {
        self.service_type == Some(ServiceType::Async)
    }

    /// The rolling-update surge: `rolling_strategy.max_surge`, else 2%.
    #[must_use]
    pub fn max_surge(&self) -> CountOrPercent {
        self.rolling_strategy
            .as_ref()
            .and_then(|r| r.max_surge)
            .unwrap_or(CountOrPercent::Percent(2.0))
    }

    /// The rolling-update unavailability: `rolling_strategy.max_unavailable`, else 1 in a
    /// dedicated resource group and 0 in the public one.
    #[must_use]
    pub fn max_unavailable(&self) -> CountOrPercent {
        let default = CountOrPercent::Count(u32::from(self.is_dedicated()));
        self.rolling_strategy
            .as_ref()
            .and_then(|r| r.max_unavailable)
            .unwrap_or(default)
    }

    /// The spread policy, `default` when none is set.
    #[must_use]
    pub fn spread_policy(&self) -> SpreadPolicy {
        self.scheduling
            .as_ref()
            .and_then(|s| s.spread.as_ref())
            .map(|s| s.policy)
            .unwrap_or_default()
    }
}

/// The CUDA versions EAS can mount.
pub const SUPPORTED_CUDA_VERSIONS: [&str; 8] =
    ["8.0", "9.0", "10.0", "10.1", "10.2", "11.0", "11.1", "11.2"];

fn is_false(value: &bool) -> bool {
    !value
}

const fn default_termination_grace_period() -> Duration {
    Duration::from_secs(30)
}

/// Quality of service for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[non_exhaustive]
pub enum Qos {
    /// CPU sharing: scheduled on memory and GPU memory only; `cpu` is a ceiling.
    BestEffort,
}

impl std::str::FromStr for Qos {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "BestEffort" => Ok(Self::BestEffort),
            other => Err(format!(
                "unknown qos \"{other}\"; expected \"\" or \"BestEffort\""
            )),
        }
    }
}

/// The kind of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub enum ServiceType {
    /// An asynchronous inference service: an input queue and a sink queue.
    Async,
    /// An LLM intelligent router in front of LLM services.
    #[serde(rename = "LLMGatewayService")]
    LlmGatewayService,
}

/// The kind of workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub enum WorkloadType {
    /// An Elastic Job: offline batch inference through the queue, exits when done.
    #[serde(rename = "elasticjob")]
    ElasticJob,
}

/// Advanced per-instance serving settings (`metadata.rpc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Rpc {
    /// Server-side batching: requests are gathered into batches for the processor.
    pub batching: bool,

    /// The maximum processing time of one request, in milliseconds; past it the server
    /// answers 408. Default: 600000; at most 86400000 (a day).
    #[serde(with = "duration::millis")]
    #[schemars(with = "u64", range(min = 1))]
    pub keepalive: Duration,

    /// Network I/O threads per instance. Default: 4.
    #[schemars(range(min = 1))]
    pub io_threads: u32,

    /// The maximum size of a batch, with batching on. Default: 16.
    #[schemars(range(min = 1))]
    pub max_batch_size: u32,

    /// The longest a batch waits for more requests after its first, in milliseconds, with
    /// batching on. Default: 50; at most 60000 (a minute).
    #[serde(with = "duration::millis")]
    #[schemars(with = "u64")]
    pub max_batch_timeout: Duration,

    /// The maximum number of requests queued at an instance; past it the server answers 450.
    /// For an async service (`type: "Async"`) it also bounds its input queue and its sink
    /// queue, each. Default: 64.
    #[schemars(range(min = 1))]
    pub max_queue_size: u32,

    /// Worker threads per instance that run the processor. Default: 5.
    #[schemars(range(min = 1))]
    pub worker_threads: u32,

    /// Maximum QPS per instance; past it the server answers 429. 0 (the default) disables it.
    pub rate_limit: u32,

    /// Sends SIGTERM to the main process when an instance starts terminating.
    pub enable_sigterm: bool,
}

impl Default for Rpc {
    fn default() -> Self {
        Self {
            batching: false,
            keepalive: Duration::from_millis(600_000),
            io_threads: 4,
            max_batch_size: 16,
            max_batch_timeout: Duration::from_millis(50),
            max_queue_size: 64,
            worker_threads: 5,
            rate_limit: 0,
            enable_sigterm: false,
        }
    }
}

/// Rolling update settings (`metadata.rolling_strategy`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RollingStrategy {
    /// Instances created above the desired count during an update: a number or a
    /// percentage. Default: 2%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<CountOrPercent>,

    /// Instances that may be unavailable during an update. Default: 1 in a dedicated
    /// resource group, 0 in the public one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<CountOrPercent>,
}

/// Scheduling settings (`metadata.scheduling`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Scheduling {
    /// How instances are spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
}

/// `metadata.scheduling.spread`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Spread {
    /// The spread policy.
    #[serde(default)]
    pub policy: SpreadPolicy,
}
