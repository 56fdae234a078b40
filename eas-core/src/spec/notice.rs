//! Notices: the fields of a valid spec that take no effect on a single-machine eas platform,
//! each with the reason.
//!
//! Every field of `service.json` either takes effect or is reported: [`ServiceSpec::notices`]
//! lists the fields that are set in a spec and that nothing here acts on, so that `eas
//! validate` and the platform at start can say so instead of ignoring them in silence.
//!
//! ```
//! use eas_core::spec::{CONTAINERS_NOT_SUPPORTED, FieldNotice, ServiceSpec};
//!
//! let spec = ServiceSpec::from_json_str(r#"{
//!     "metadata": {"name": "demo", "instance": 1},
//!     "cloud": {"networking": {"vpc_id": "vpc-1"}},
//!     "containers": [{"image": "python:3.11", "script": "python app.py", "port": 8000}]
//! }"#).unwrap();
//! let notices = spec.notices();
//! assert_eq!(notices[0].field, "cloud.networking.vpc_id");
//! assert_eq!(notices[1], FieldNotice::new("containers", CONTAINERS_NOT_SUPPORTED));
//! assert!(notices[1].to_string().starts_with("containers: running container images"));
//! ```
//!
//! What counts as set, the order of the notices and the status of every field of the
//! reference (effective here, read by the simulator only, or reported) are documented on
//! [`ServiceSpec::notices`].

use std::fmt;

use serde::Serialize;

use super::error::JsonPath;
use super::{Metadata, ServiceSpec, SinkerType};
use crate::resources::SpreadPolicy;

/// Why `containers` has no effect; also the reason the runtime gives when it refuses to
/// start a service that has containers and no processor.
pub const CONTAINERS_NOT_SUPPORTED: &str = "running container images is not in scope for eas; \
     use a `processor` (built-in or registered in Rust) instead";

/// Why `processor_type` (a cpp, java or python processor package) has no effect; also the
/// reason the runtime can give when it refuses to start such a service.
pub const CUSTOM_PROCESSORS_NOT_SUPPORTED: &str = "eas does not load cpp, java or python \
     processor packages, so a service that names one fails to start; implement the processor \
     in Rust, register it and name it in `processor`";

/// Fields of a cloud deployment with no counterpart on one machine.
const CLOUD_ONLY: &str = "applies to a cloud deployment; the local provider ignores it";

/// Fields that only the placement policies read.
const POOLS: &str = "used by `eas simulate` and cluster providers; the local node is the only \
     resource pool here";

/// Fields that describe a deployment spanning machines.
const ONE_MACHINE: &str = "configures inference spread over several machines; eas runs each \
     instance on one machine";

/// One field of a valid spec that takes no effect here, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldNotice {
    /// Where, as a JSON path written as the spec's errors write it, such as
    /// `cloud.networking.vpc_id` or `features["eas.aliyun.com/gpu-driver-version"]`.
    pub field: String,
    /// Why the field has no effect, and what to do instead where there is something.
    pub reason: String,
}

impl FieldNotice {
    /// A notice for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl ServiceSpec {
    /// The fields set in this spec that take no effect on a single-machine eas platform, each
    /// with the reason. The spec is expected to be valid; nothing here checks it.
    ///
    /// # What is set
    /// A field is set when its value differs from what leaving it out means. The typed spec
    /// cannot tell `"enable_grpc": false` from no key at all, and a value that asks for the
    /// default asks for nothing this platform fails to do, so a field written at its default is
    /// not reported: `"rpc": {"io_threads": 4, "enable_sigterm": false}`, `"qos": ""`, `"rdma": 0`,
    /// `"gpu_memory": 0`, `"scheduling": {"spread": {"policy": "default"}}`, an empty
    /// `cloud.computing.instances`, `"aimaster": {"enable": false}` and empty `labels` or
    /// `features` give no notice. An object that asks for something by being there is set
    /// whatever its contents: `unit` (2 machines by default) and `confidential`.
    ///
    /// # Order
    /// Notices come in the order the fields are declared in [`ServiceSpec`] (the order of the
    /// JSON Schema and of the EAS reference's sections): `metadata` (its own fields in their
    /// order), `cloud`, `containers`, `dockerAuth`, `networking`, `storage`, ..., `labels`,
    /// `unit`, `sinker`, `confidential`, `features` (keys in sorted order). The same spec always
    /// gives the same list.
    ///
    /// # Every field
    /// "Effective" means that eas-runtime, eas-storage or the `eas` CLI acts on the field on the
    /// local platform (the grep that shows where is in the last column); "simulator" means
    /// eas-scheduler reads it (`eas simulate`, placement policies for cluster providers) while the
    /// local platform does not; "reported" fields give a notice with the reason quoted in this
    /// function's source. Greps ran over `eas-runtime/src`, `eas-storage/src`,
    /// `src/` and `eas-scheduler/src`.
    ///
    /// | field | status | where (or grep with no hit) |
    /// |---|---|---|
    /// | `metadata.name`, `metadata.instance` | effective | `service.rs` (`metadata.name`, `instance`), control plane |
    /// | `metadata.group` (eas addition) | effective | `traffic.rs` (group weights), control plane |
    /// | `metadata.workspace_id` | reported | `workspace_id`: no hit |
    /// | `metadata.cpu` | effective | `service.rs` `init_context` (threads), node capacity |
    /// | `metadata.memory` | reported in process; effective with child processes | node capacity; `provider/limits.rs` (cgroup or rlimit) for child processes |
    /// | `metadata.gpu` | effective | whole GPUs leased at instance start (`gpu/inventory.rs`, `placement/gpu.rs`), the device in `InitContext`; without a GPU, driver or the `cuda` feature the instance fails to start saying which |
    /// | `metadata.gpu_memory` | effective | a slice packed onto one GPU within its memory (`placement/gpu.rs`), `InitContext::gpu_memory_limit`; enforced by the processor (onnx: the CUDA execution provider's `gpu_mem_limit`) |
    /// | `metadata.gpu_core_percentage` | packed, reported unless enforced | packed onto one GPU up to 100% (`placement/gpu.rs`), `InitContext::gpu_core_percentage`; enforced only for child-process instances while a CUDA MPS daemon runs (`gpu/mps.rs`, `InstanceProvider::honours`) |
    /// | `metadata.qos` | simulator, reported | `best_effort` in `placement/round.rs` only |
    /// | `metadata.resource` | simulator, reported | `resource_group` in `placement/round.rs` only |
    /// | `metadata.cuda` | reported | `\.cuda\b`: no hit |
    /// | `metadata.rdma` | reported | `\.rdma`: no hit |
    /// | `metadata.enable_grpc` | effective | `http/grpc.rs` (`serves_grpc`): the service's model takes Open Inference Protocol gRPC calls on the HTTP port (HTTP stays served too); `eas serve` prints the address |
    /// | `metadata.enable_webservice` | reported | `webservice`: no hit |
    /// | `metadata.type` | `Async` effective, `LLMGatewayService` reported | `is_async` in `service.rs`; `LlmGateway`: no hit |
    /// | `metadata.rpc.{batching, max_batch_size, max_batch_timeout, max_queue_size, worker_threads, rate_limit, keepalive}` | effective | `ReplicaConfig::from_spec`, `queue/consumer.rs`, `admission/mod.rs` |
    /// | `metadata.rpc.io_threads` | reported | `io_threads`: no hit |
    /// | `metadata.rpc.enable_sigterm` | reported in process; effective with child processes | `provider/child.rs` (`sigterm`) |
    /// | `metadata.rolling_strategy.{max_surge, max_unavailable}` | reported | `rolling_strategy`, `max_surge`, `max_unavailable`: no hit (eas-scheduler included) |
    /// | `metadata["eas.termination_grace_period"]` | effective | `server.rs`, `service.rs` (`grace`) |
    /// | `metadata.scheduling.spread.policy` | simulator, reported | `spread_policy()` via `ServiceDemand::from_spec` |
    /// | `metadata.resource_rebalancing` | simulator, reported | `rebalancing` in `placement/scheduler.rs` only |
    /// | `metadata.workload_type` | effective | `src/bin/eas/serve.rs` (`eas serve --job-input`) |
    /// | `metadata.resource_burstable` | simulator, reported | `burstable` in `placement/round.rs` only |
    /// | `metadata.shm_size` | reported | `shm_size`: no hit |
    /// | `cloud.computing.instances`, `cloud.computing.disable_spot_protection_period` | simulator, reported | `ServiceDemand::from_spec`, `sim/` |
    /// | `cloud.networking.{vpc_id, vswitch_id, security_group_id, destination_cidrs}` | reported | `vpc_id`, `\.cloud\b` outside eas-scheduler: no hit |
    /// | `containers` | reported ([`CONTAINERS_NOT_SUPPORTED`]) | `\.containers`: no hit; a service with no `processor` fails at start |
    /// | `dockerAuth` | reported | `docker_auth`: no hit |
    /// | `networking.gateway` | reported | `\.gateway\b`: no hit |
    /// | `networking.gateway_policy.{rate_limit, concurrency_limit}` | effective | `admission/mod.rs` `build` |
    /// | `storage[]`: `mount_path`, `oss.{path, endpoint, readOnly}`, `nfs.{server, path, readOnly}`, `local.{path, readOnly}`, `cache.{capacity, path}` | effective | every sub-field read in `eas-storage/src/resolve.rs` |
    /// | `token` | effective | `service.rs` (`spec.token`) |
    /// | `aimaster.enable` | reported | `aimaster`: no hit |
    /// | `model_path`, `oss_endpoint`, `model_entry`, `model_config`, `processor` | effective | `service.rs`, `server.rs`, `resolve.rs` |
    /// | `processor_path`, `processor_entry` | effective: fetched and checked | `resolve.rs`; `processor_path` requires `processor_type`, which is reported |
    /// | `processor_mainclass` | reported | `processor_mainclass`: no hit |
    /// | `processor_type` | reported ([`CUSTOM_PROCESSORS_NOT_SUPPORTED`]) | only in the "unknown processor" error of `service.rs` |
    /// | `warm_up_data_path` | effective for a local path; a URI is reported | `LocalPaths::local` drops paths with `://` |
    /// | `runtime.enable_crash_block` | effective | `ReplicaConfig::from_spec` (`crash_block`) |
    /// | `autoscaler.*` (strategies, behavior, schedules, algorithm) | effective | live autoscaling (eas-scheduler `autoscale/`, `control/`) |
    /// | `labels` | reported | `\.labels\b`: only metric labels, never the spec's |
    /// | `unit` | reported | `\.unit\b`: no hit |
    /// | `sinker` | effective (`file`); other types refused at start | `open_sink` in `service.rs`; a `config` section other than the one `type` names is reported |
    /// | `confidential` | reported | `confidential`: no hit |
    /// | `features` | reported, one notice per key | `\.features\b`: no hit |
    #[must_use]
    pub fn notices(&self) -> Vec<FieldNotice> {
        let mut out = Vec::new();
        let mut note = |field: &str, reason: &str| out.push(FieldNotice::new(field, reason));

        metadata_notices(&self.metadata, &mut note);

        if let Some(cloud) = &self.cloud {
            if let Some(computing) = &cloud.computing {
                // grep `computing`: ServiceDemand::from_spec and eas-scheduler's sim/ only.
                if !computing.instances.is_empty() {
                    note(
                        "cloud.computing.instances",
                        "applies to a cloud deployment (instance types, spot bids, capacity \
                         caps); used by `eas simulate`; the local provider ignores it",
                    );
                }
                if computing.disable_spot_protection_period {
                    note(
                        "cloud.computing.disable_spot_protection_period",
                        "applies to spot instances of a cloud deployment; used by `eas \
                         simulate`; the local provider ignores it",
                    );
                }
            }
            if let Some(net) = &cloud.networking {
                // grep `vpc_id|vswitch_id|security_group_id|destination_cidrs`: no hit.
                for (name, value) in [
                    ("vpc_id", &net.vpc_id),
                    ("vswitch_id", &net.vswitch_id),
                    ("security_group_id", &net.security_group_id),
                    ("destination_cidrs", &net.destination_cidrs),
                ] {
                    if value.is_some() {
                        note(&format!("cloud.networking.{name}"), CLOUD_ONLY);
                    }
                }
            }
        }

        // grep `\.containers`: no hit in eas-runtime; without a processor, start fails.
        if !self.containers.is_empty() {
            note("containers", CONTAINERS_NOT_SUPPORTED);
        }
        // grep `docker_auth`: no hit.
        if self.docker_auth.is_some() {
            note(
                "dockerAuth",
                "credentials to pull container images; eas runs no images",
            );
        }
        // grep `\.gateway\b`: no hit; gateway_policy is read by admission/mod.rs `build`.
        if self
            .networking
            .as_ref()
            .is_some_and(|n| n.gateway.is_some())
        {
            note(
                "networking.gateway",
                "a dedicated gateway is a cloud resource; `eas serve` is its own gateway \
                 (networking.gateway_policy limits do apply)",
            );
        }
        // storage[]: every sub-field is read by eas-storage's resolve.rs. token: service.rs.
        // grep `aimaster`: no hit.
        if self.aimaster.as_ref().is_some_and(|a| a.enable) {
            note(
                "aimaster.enable",
                "AIMaster checks and recovers distributed inference over several machines; eas \
                 runs each instance on one machine",
            );
        }
        // model_path, oss_endpoint, model_entry, model_config, processor: service.rs,
        // server.rs, resolve.rs. processor_path, processor_entry: fetched and checked by
        // resolve.rs (and processor_path requires processor_type, reported below).
        // grep `processor_mainclass`: no hit.
        if self.processor_mainclass.is_some() {
            note(
                "processor_mainclass",
                "eas does not load java processors (see processor_type)",
            );
        }
        // grep `processor_type`: only the "unknown processor" error of service.rs.
        if self.processor_type.is_some() {
            note("processor_type", CUSTOM_PROCESSORS_NOT_SUPPORTED);
        }
        // LocalPaths::local (service.rs) reads only paths without `://`; nothing fetches
        // the others.
        if self
            .warm_up_data_path
            .as_deref()
            .is_some_and(|p| p.contains("://"))
        {
            note(
                "warm_up_data_path",
                "only a local file is read: a URI is not fetched, so instances start without \
                 warm-up; give a local path",
            );
        }
        // runtime.enable_crash_block: ReplicaConfig::from_spec. autoscaler: live autoscaling.
        // grep `\.labels\b`: only metric labels, never the spec's.
        if !self.labels.is_empty() {
            note(
                "labels",
                "labels tag a service in the EAS console and cloud APIs; nothing in eas reads \
                 them",
            );
        }
        // grep `\.unit\b`: no hit.
        if self.unit.is_some() {
            note("unit", ONE_MACHINE);
        }
        // open_sink (service.rs) reads the section `type` names; other types are refused at
        // start with their own error.
        if let Some(sinker) = &self.sinker {
            let config = &sinker.config;
            for (kind, present) in [
                (SinkerType::MaxCompute, config.maxcompute.is_some()),
                (SinkerType::Sls, config.sls.is_some()),
                (SinkerType::File, config.file.is_some()),
            ] {
                if present && kind != sinker.sink_type {
                    note(
                        &format!("sinker.config.{kind}"),
                        &format!(
                            "only the section that sinker.type names ({}) is read",
                            sinker.sink_type
                        ),
                    );
                }
            }
        }
        // grep `confidential`: no hit.
        if self.confidential.is_some() {
            note(
                "confidential",
                "confidential inference goes through a cloud trust management service \
                 (Trustee); eas has no client for it and ignores it",
            );
        }
        // grep `\.features\b`: no hit. Keys are written as the spec's errors write them.
        let mut features = JsonPath::default();
        features.push_key("features");
        for key in self.features.keys() {
            note(
                &features.with_key(key),
                "a feature of EAS cloud deployments; the local provider ignores it",
            );
        }
        out
    }
}

/// The notices of `metadata`, in its declaration order.
fn metadata_notices(m: &Metadata, note: &mut impl FnMut(&str, &str)) {
    // name, instance, cpu, gpu: effective (see the module table).
    // grep `workspace_id`: no hit.
    if m.workspace_id.is_some() {
        note(
            "metadata.workspace_id",
            "a PAI workspace belongs to a cloud account; eas has no workspaces",
        );
    }
    // Counted by the node's capacity accounting; enforced by the child-process provider only
    // (eas-runtime `provider/limits.rs`, `InstanceProvider::honours`).
    if m.memory.is_some() {
        note(
            "metadata.memory",
            "counted against the node's capacity, but not enforced: in-process instances \
             share the server's memory (`eas serve --provider child` enforces it)",
        );
    }
    // gpu_memory: packed onto a GPU at instance start (eas-runtime `gpu/inventory.rs`,
    // eas-scheduler `placement/gpu.rs`) and handed to the processor as its memory limit
    // (onnx: the CUDA execution provider's `gpu_mem_limit`): effective, no notice.
    // gpu_core_percentage: packed too, but only an MPS daemon can hold a process to its share
    // (`gpu/mps.rs`; the child-process provider honours it while one runs).
    if m.gpu_core_percentage.is_some_and(|p| p > 0) {
        note(
            "metadata.gpu_core_percentage",
            "slices are packed onto a GPU up to 100% of its compute, but the share is not \
             enforced: only child-process instances get it (`eas serve --provider child`), and \
             only while a CUDA MPS daemon runs (eas does not start one)",
        );
    }
    // grep `best_effort`: placement/round.rs only.
    if m.qos.is_some() {
        note(
            "metadata.qos",
            "CPU sharing is a placement rule of `eas simulate` and cluster providers; \
             in-process instances already share the server's CPUs",
        );
    }
    // grep `resource_group`: placement/round.rs only.
    if m.resource.is_some() {
        note("metadata.resource", POOLS);
    }
    // grep `\.cuda\b`: no hit.
    if m.cuda.is_some() {
        note(
            "metadata.cuda",
            "mounts a CUDA toolkit into an EAS image; in-process instances use the host's CUDA, \
             if any",
        );
    }
    // grep `\.rdma`: no hit.
    if m.rdma.is_some_and(|r| r > 0) {
        note("metadata.rdma", ONE_MACHINE);
    }
    // `enable_grpc` takes effect: `serves_grpc` in eas-runtime's http/grpc.rs.
    // grep `webservice`: no hit.
    if m.enable_webservice {
        note(
            "metadata.enable_webservice",
            "eas serves a service through its processor; it runs no AI-Web server in an \
             instance",
        );
    }
    // `is_async` (service.rs) handles Async; grep `LlmGateway`: no hit.
    if m.service_type == Some(super::ServiceType::LlmGatewayService) {
        note(
            "metadata.type",
            "the LLM intelligent router is an EAS cloud component that eas does not include; \
             such a service has nothing to run here",
        );
    }
    let rpc = &m.rpc;
    let default_rpc = super::Rpc::default();
    // grep `io_threads`: no hit.
    if rpc.io_threads != default_rpc.io_threads {
        note(
            "metadata.rpc.io_threads",
            "network I/O runs on the server's shared async runtime; there are no per-instance \
             I/O threads to size",
        );
    }
    // `enable_sigterm`: the child-process provider only (eas-runtime `provider/child.rs`).
    if rpc.enable_sigterm {
        note(
            "metadata.rpc.enable_sigterm",
            "in-process instances have no process to signal (`eas serve --provider child` \
             sends SIGTERM to an instance's worker process when it stops)",
        );
    }
    // grep `rolling_strategy|max_surge|max_unavailable` (eas-scheduler too): no hit.
    if let Some(rolling) = &m.rolling_strategy {
        for (name, set) in [
            ("max_surge", rolling.max_surge.is_some()),
            ("max_unavailable", rolling.max_unavailable.is_some()),
        ] {
            if set {
                note(
                    &format!("metadata.rolling_strategy.{name}"),
                    "eas has no rolling update yet: instances are not replaced step by step, \
                     so there is nothing for this to bound",
                );
            }
        }
    }
    // termination_grace_period: server.rs, service.rs.
    // grep `spread`: ServiceDemand::from_spec (placement, eas simulate) only.
    if m.spread_policy() != SpreadPolicy::Default {
        note(
            "metadata.scheduling.spread.policy",
            "used by `eas simulate` and cluster providers; one local node has nothing to \
             spread over",
        );
    }
    // grep `rebalancing`: placement/scheduler.rs only.
    if m.resource_rebalancing {
        note(
            "metadata.resource_rebalancing",
            "used by `eas simulate` and cluster providers; one local node has no other \
             resources to migrate to",
        );
    }
    // workload_type: `eas serve --job-input` (src/bin/eas/serve.rs).
    // grep `burstable`: placement/round.rs only.
    if m.resource_burstable {
        note("metadata.resource_burstable", POOLS);
    }
    // grep `shm_size`: no hit.
    if m.shm_size.is_some() {
        note(
            "metadata.shm_size",
            "sets /dev/shm of an instance's container; in-process instances use the host's \
             shared memory",
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(value: serde_json::Value) -> ServiceSpec {
        ServiceSpec::from_json_value(value).expect("a valid spec")
    }

    fn fields(spec: &ServiceSpec) -> Vec<String> {
        spec.notices().into_iter().map(|n| n.field).collect()
    }

    /// A minimal valid service with `extra` merged into it (objects merged one level deep; a
    /// `null` removes the key).
    fn with(extra: serde_json::Value) -> ServiceSpec {
        let mut base = json!({
            "metadata": {"name": "demo", "instance": 1},
            "processor": "echo",
            "model_path": "/models"
        });
        for (key, value) in extra.as_object().expect("an object") {
            match (base.get_mut(key), value) {
                (Some(serde_json::Value::Object(into)), serde_json::Value::Object(from)) => {
                    into.extend(from.clone());
                }
                (_, serde_json::Value::Null) => {
                    base.as_object_mut().expect("an object").remove(key);
                }
                _ => {
                    base[key] = value.clone();
                }
            }
        }
        spec(base)
    }

    #[test]
    fn a_minimal_spec_should_have_no_notices() {
        assert_eq!(with(json!({})).notices(), []);
    }

    #[test]
    fn effective_fields_should_give_no_notice() {
        let s = with(json!({
            "metadata": {
                "cpu": 2, "gpu": 0, "type": "Async", "workload_type": "elasticjob",
                "eas.termination_grace_period": 10,
                "rpc": {"batching": true, "max_batch_size": 4, "max_batch_timeout": 5,
                        "max_queue_size": 8, "worker_threads": 2, "rate_limit": 10,
                        "keepalive": 1000}
            },
            "token": "secret",
            "oss_endpoint": "http://127.0.0.1:9000",
            "model_entry": "m.onnx",
            "model_config": "{}",
            "warm_up_data_path": "warm.jsonl",
            "runtime": {"enable_crash_block": true},
            "networking": {"gateway_policy": {"rate_limit": {"enable": true, "limit": 5},
                                              "concurrency_limit": {"enable": true, "limit": 2}}},
            "storage": [
                {"mount_path": "/data",
                 "oss": {"path": "oss://b/p/", "endpoint": "e", "readOnly": true}},
                {"mount_path": "/local", "local": {"path": "/tmp", "readOnly": true}},
                {"mount_path": "/nas", "nfs": {"server": "nas.example", "path": "/x"}},
                {"mount_path": "/cached", "cache": {"capacity": "1G", "path": "/data"}}
            ],
            "autoscaler": {"min": 0, "max": 3, "strategies": {"qps": 10},
                           "behavior": {"scale_down": {"stabilization_window_seconds": 60}},
                           "schedules": [{"schedule": "0 8 * * *", "replicas": 2}]},
            "sinker": {"type": "file", "config": {"file": {"path": "/tmp/sink.jsonl"}}}
        }));
        assert_eq!(s.notices(), []);
    }

    #[test]
    fn each_category_should_be_reported_at_its_path() {
        let cases = [
            (
                json!({"cloud": {"networking": {"vpc_id": "vpc-1"}}}),
                "cloud.networking.vpc_id",
                CLOUD_ONLY,
            ),
            (
                json!({"cloud": {"networking": {"destination_cidrs": "10.0.0.0/8"}}}),
                "cloud.networking.destination_cidrs",
                CLOUD_ONLY,
            ),
            (
                json!({"containers": [{"image": "x", "script": "run", "port": 8000}]}),
                "containers",
                CONTAINERS_NOT_SUPPORTED,
            ),
            (
                json!({"metadata": {"resource": "eas-r-1"}}),
                "metadata.resource",
                POOLS,
            ),
            (json!({"unit": {}}), "unit", ONE_MACHINE),
            (
                json!({"metadata": {"rdma": 1}}),
                "metadata.rdma",
                ONE_MACHINE,
            ),
            (
                json!({"processor": null, "processor_path": "/p", "processor_type": "python",
                       "processor_entry": "app.py"}),
                "processor_type",
                CUSTOM_PROCESSORS_NOT_SUPPORTED,
            ),
        ];
        for (extra, field, reason) in cases {
            let notices = with(extra.clone()).notices();
            assert_eq!(notices, [FieldNotice::new(field, reason)], "{extra}");
        }
        // Bursting needs a resource group, so the two come together.
        let burst = with(json!({"metadata": {"resource": "eas-r-1", "resource_burstable": true}}));
        assert_eq!(
            burst.notices(),
            [
                FieldNotice::new("metadata.resource", POOLS),
                FieldNotice::new("metadata.resource_burstable", POOLS),
            ]
        );
    }

    #[test]
    fn every_reported_field_should_have_its_own_path() {
        let single = [
            (
                json!({"metadata": {"workspace_id": "1"}}),
                "metadata.workspace_id",
            ),
            (json!({"metadata": {"memory": 1024}}), "metadata.memory"),
            (
                json!({"metadata": {"gpu_core_percentage": 50}}),
                "metadata.gpu_core_percentage",
            ),
            (json!({"metadata": {"qos": "BestEffort"}}), "metadata.qos"),
            (json!({"metadata": {"cuda": "11.2"}}), "metadata.cuda"),
            (
                json!({"metadata": {"enable_webservice": true}}),
                "metadata.enable_webservice",
            ),
            (
                json!({"metadata": {"type": "LLMGatewayService"}}),
                "metadata.type",
            ),
            (
                json!({"metadata": {"rpc": {"io_threads": 8}}}),
                "metadata.rpc.io_threads",
            ),
            (
                json!({"metadata": {"rpc": {"enable_sigterm": true}}}),
                "metadata.rpc.enable_sigterm",
            ),
            (
                json!({"metadata": {"rolling_strategy": {"max_unavailable": 1}}}),
                "metadata.rolling_strategy.max_unavailable",
            ),
            (
                json!({"metadata": {"scheduling": {"spread": {"policy": "zone"}}}}),
                "metadata.scheduling.spread.policy",
            ),
            (
                json!({"metadata": {"resource_rebalancing": true}}),
                "metadata.resource_rebalancing",
            ),
            (json!({"metadata": {"shm_size": 16}}), "metadata.shm_size"),
            (
                json!({"cloud": {"computing": {"instances": [{"type": "ecs.c7.large"}]}}}),
                "cloud.computing.instances",
            ),
            (
                json!({"cloud": {"computing": {"disable_spot_protection_period": true}}}),
                "cloud.computing.disable_spot_protection_period",
            ),
            (json!({"dockerAuth": "dXNlcjpwYXNz"}), "dockerAuth"),
            (
                json!({"networking": {"gateway": "gw-1"}}),
                "networking.gateway",
            ),
            (json!({"aimaster": {"enable": true}}), "aimaster.enable"),
            (
                json!({"warm_up_data_path": "oss://b/warm.jsonl"}),
                "warm_up_data_path",
            ),
            (json!({"labels": {"team": "search"}}), "labels"),
            (
                json!({"sinker": {"type": "file", "config": {
                    "file": {"path": "/tmp/s"},
                    "sls": {"project": "p", "logstore": "l"}
                }}}),
                "sinker.config.sls",
            ),
            (
                json!({"confidential": {"trustee_endpoint": "t", "decryption_key": "k"}}),
                "confidential",
            ),
            (
                json!({"features": {"eas.aliyun.com/extra-ephemeral-storage": "100Gi"}}),
                "features[\"eas.aliyun.com/extra-ephemeral-storage\"]",
            ),
        ];
        for (extra, field) in single {
            let s = with(extra.clone());
            assert_eq!(fields(&s), [field], "{extra}");
            assert!(!s.notices()[0].reason.is_empty());
        }
    }

    #[test]
    fn enable_grpc_should_take_effect_without_a_notice() {
        assert_eq!(
            with(json!({"metadata": {"enable_grpc": true}})).notices(),
            []
        );
    }

    #[test]
    fn fields_written_at_their_default_should_give_no_notice() {
        let s = with(json!({
            "metadata": {
                "gpu": 0, "gpu_memory": 0, "rdma": 0, "qos": "", "enable_grpc": false,
                "enable_webservice": false, "resource_rebalancing": false,
                "resource_burstable": false,
                "rpc": {"io_threads": 4, "enable_sigterm": false},
                "rolling_strategy": {},
                "scheduling": {"spread": {"policy": "default"}}
            },
            "cloud": {"computing": {"instances": [], "disable_spot_protection_period": false},
                      "networking": {}},
            "networking": {},
            "aimaster": {"enable": false},
            "labels": {},
            "features": {},
            "runtime": {"enable_crash_block": false}
        }));
        assert_eq!(s.notices(), []);
    }

    #[test]
    fn notices_should_follow_the_declaration_order() {
        let s = with(json!({
            "features": {"b.c": "2", "a": "1"},
            "unit": {"size": 2},
            "labels": {"k": "v"},
            "containers": [{"image": "x", "command": "run"}],
            "cloud": {"networking": {"vswitch_id": "vsw", "vpc_id": "vpc"}},
            "metadata": {"shm_size": 1, "memory": 10, "workspace_id": "w"}
        }));
        assert_eq!(
            fields(&s),
            [
                "metadata.workspace_id",
                "metadata.memory",
                "metadata.shm_size",
                "cloud.networking.vpc_id",
                "cloud.networking.vswitch_id",
                "containers",
                "labels",
                "unit",
                "features.a",
                "features[\"b.c\"]",
            ]
        );
        assert_eq!(s.notices(), s.clone().notices());
    }

    #[test]
    fn a_notice_should_display_as_field_colon_reason() {
        let notice = FieldNotice::new("unit", "why");
        assert_eq!(notice.to_string(), "unit: why");
        assert_eq!(
            serde_json::to_value(&notice).expect("serializes"),
            json!({"field": "unit", "reason": "why"})
        );
    }
}
