//! Helpers shared by `tests/spec.rs` and `tests/fuzz.rs`: the one way a test skips when a part
//! it needs is missing, the reference examples (as files and as printed in the EAS reference
//! text), a minimal valid spec and rich valid specs to edit, and assertions on the errors a
//! refused spec gives.

// Each test crate that includes this module uses only some of it.
#![allow(dead_code)]

use std::path::PathBuf;

use eas_core::spec::{ServiceSpec, SpecErrors};
use serde_json::{Value, json};

/// The two examples of the EAS reference, as copied to `examples/services/`.
pub const REFERENCE_EXAMPLES: [&str; 2] = ["reference-quickstart.json", "reference-full.json"];

/// `examples/services/` of the workspace.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/services")
}

/// The text of `examples/services/<name>`.
pub fn example_text(name: &str) -> String {
    let path = examples_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `examples/services/<name>` as a JSON value.
pub fn example_value(name: &str) -> Value {
    serde_json::from_str(&example_text(name)).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// Skips the test: prints `SKIPPED: <test>: <why>`, or panics with the reason when
/// `EAS_REQUIRE_ALL=1` (README's test command, `scripts/test`, sets it).
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("EAS_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test}: {why} (required: EAS_REQUIRE_ALL=1)"
    );
    println!("SKIPPED: {test}: {why}");
}

/// The shared folder: `$EAS_SHARED_DIR`, or `shared/` beside the checkout.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("EAS_SHARED_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
        PathBuf::from,
    )
}

/// Where the EAS `service.json` reference text lives (in the shared folder).
pub fn reference_text_path() -> PathBuf {
    shared_dir().join("reference/eas-service-json-reference.txt")
}

/// The first JSON object printed after `marker` in `text`: from the first `{` after the
/// marker to its matching `}`, skipping braces inside strings.
pub fn json_object_after<'t>(text: &'t str, marker: &str) -> Option<&'t str> {
    let after = text.find(marker)? + marker.len();
    let start = after + text[after..].find('{')?;
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, c) in text[start..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..=start + offset]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The smallest valid spec: a name, one instance and one container running a script.
pub fn minimal() -> Value {
    json!({
        "metadata": {"name": "demo", "instance": 1},
        "containers": [{"image": "python:3.11", "script": "python app.py", "port": 8000}]
    })
}

/// `minimal()` with `edit` applied.
pub fn minimal_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut spec = minimal();
    edit(&mut spec);
    spec
}

/// `minimal()` running the built-in `echo` processor instead of a container.
pub fn with_processor(edit: impl FnOnce(&mut Value)) -> Value {
    let mut spec = json!({
        "metadata": {"name": "demo", "instance": 1},
        "processor": "echo",
        "model_path": "oss://bucket/models/"
    });
    edit(&mut spec);
    spec
}

/// Valid specs that together set every section and most fields, by name.
pub fn rich_specs() -> Vec<(&'static str, Value)> {
    vec![
        (
            "custom python processor, every section",
            json!({
                "metadata": {
                    "name": "rich_python_1",
                    "instance": 3,
                    "workspace_id": "1405",
                    "cpu": 2.5,
                    "memory": 8192,
                    "gpu": 1,
                    "qos": "BestEffort",
                    "cuda": "11.0",
                    "rdma": 1,
                    "enable_grpc": true,
                    "enable_webservice": true,
                    "type": "Async",
                    "rpc": {
                        "batching": true, "keepalive": 1000, "io_threads": 8,
                        "max_batch_size": 32, "max_batch_timeout": 20, "max_queue_size": 128,
                        "worker_threads": 10, "rate_limit": 2000, "enable_sigterm": true
                    },
                    "rolling_strategy": {"max_surge": "10%", "max_unavailable": "0"},
                    "eas.termination_grace_period": 60,
                    "scheduling": {"spread": {"policy": "zone"}},
                    "resource_rebalancing": true,
                    "shm_size": 8
                },
                "processor_path": "oss://bucket/processors/py/",
                "processor_type": "python",
                "processor_entry": "app.py",
                "model_path": "https://example.com/models/m.tar.gz",
                "model_entry": "model.onnx",
                "model_config": "{\"threshold\": 0.5}",
                "oss_endpoint": "oss-cn-beijing.aliyuncs.com",
                "warm_up_data_path": "/data_oss/warmup.bin",
                "token": "secret-token",
                "runtime": {"enable_crash_block": true},
                "aimaster": {"enable": true},
                "unit": {},
                "labels": {"team": "search", "tier": "gold"},
                "features": {"eas.aliyun.com/extra-ephemeral-storage": "100Gi"},
                "networking": {
                    "gateway": "gw-123",
                    "gateway_policy": {
                        "rate_limit": {"enable": true, "limit": 100},
                        "concurrency_limit": {"enable": false, "limit": 0}
                    }
                },
                "sinker": {"type": "file", "config": {"file": {"path": "/tmp/sink.jsonl"}}},
                "confidential": {
                    "trustee_endpoint": "https://trustee.example.com",
                    "decryption_key": "kbs:///default/key/test-key"
                },
                "storage": [
                    {"mount_path": "/data_oss", "oss": {"path": "oss://bucket/data/", "endpoint": "http://127.0.0.1:9000", "readOnly": true}},
                    {"mount_path": "/data_nas", "nfs": {"server": "x.cn-hangzhou.nas.aliyuncs.com", "path": "/exports"}},
                    {"mount_path": "/host", "local": {"path": "/var/lib/models"}},
                    {"mount_path": "/cache", "cache": {"capacity": "20G", "path": "/data_oss"}}
                ],
                "autoscaler": {
                    "min": 1,
                    "max": 10,
                    "strategies": {"qps": 100, "cpu": 70, "gpu": 50, "queue": 4, "custom": {"tokens_per_second": 900.5}},
                    "behavior": {
                        "scale_up": {"stabilization_window_seconds": 0},
                        "scale_down": {"stabilization_window_seconds": 300}
                    },
                    "schedules": [
                        {"schedule": "0 8 * * MON-FRI", "timezone": "Asia/Shanghai", "min": 4, "max": 10},
                        {"schedule": "0 0 20 * * *", "replicas": 2}
                    ]
                }
            }),
        ),
        (
            "java processor in a dedicated group with spot instances",
            json!({
                "metadata": {
                    "name": "java_dedicated",
                    "instance": 200,
                    "resource": "eas-r-6dbzve8ip0xnzt",
                    "resource_burstable": true,
                    "rolling_strategy": {"max_surge": 3},
                    "workload_type": "elasticjob"
                },
                "processor_path": "/opt/processors/proc.jar",
                "processor_type": "java",
                "processor_mainclass": "com.aliyun.TestProcessor",
                "model_path": "/models",
                "cloud": {
                    "computing": {
                        "instances": [
                            {"type": "ecs.c8i.2xlarge", "spot_price_limit": 1},
                            {"type": "ecs.c8i.xlarge", "capacity": "20%"},
                            {"type": "ecs.c8i.4xlarge", "capacity": "500"},
                            {"type": "ecs.c8i.8xlarge", "capacity": 800, "spot_price_limit": 3.6}
                        ],
                        "disable_spot_protection_period": false
                    },
                    "networking": {
                        "vpc_id": "vpc-1", "vswitch_id": "vsw-1",
                        "security_group_id": "sg-1", "destination_cidrs": "10.241.28.0/22"
                    }
                },
                "sinker": {"type": "SLS", "config": {"sls": {"project": "k8s-log", "logstore": "d1"}}}
            }),
        ),
        (
            "LLM gateway with nothing else to run",
            json!({"metadata": {"name": "llm_gateway", "instance": 2, "type": "LLMGatewayService"}}),
        ),
        (
            "two containers, GPU slicing, private registry",
            json!({
                "metadata": {
                    "name": "sliced",
                    "instance": 1,
                    "gpu_memory": 16,
                    "gpu_core_percentage": 50,
                    "memory": 4096
                },
                "dockerAuth": "dXNlcjpwYXNz",
                "containers": [
                    {
                        "image": "registry.example.com/app:1",
                        "command": "/app/server",
                        "port": 8000,
                        "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY"}]
                    },
                    {
                        "image": "registry.example.com/sidecar:1",
                        "script": "cd /app && python side.py; echo done",
                        "prepare": {
                            "pythonRequirements": ["numpy==1.16.4"],
                            "pythonRequirementsPath": "/data_oss/requirements.txt"
                        }
                    }
                ]
            }),
        ),
    ]
}

/// Reads `value` as a spec that must be accepted.
pub fn accepted(value: &Value) -> ServiceSpec {
    ServiceSpec::from_json_str(&value.to_string()).unwrap_or_else(|errors| {
        panic!("expected the spec to be accepted:\n{value:#}\nerrors:\n{errors}")
    })
}

/// Reads `value` as a spec that must be refused, and returns the errors.
pub fn refused(value: &Value) -> SpecErrors {
    match ServiceSpec::from_json_str(&value.to_string()) {
        Ok(spec) => panic!("expected the spec to be refused:\n{value:#}\nread as:\n{spec:#?}"),
        Err(errors) => errors,
    }
}

/// Asserts that `errors` holds an error at exactly `path` whose message mentions `word`.
pub fn assert_error(errors: &SpecErrors, path: &str, word: &str) {
    let error = errors
        .at(path)
        .unwrap_or_else(|| panic!("no error at {path:?}; the errors are:\n{errors}"));
    assert!(
        error.message.contains(word),
        "the error at {path:?} says {:?}; expected it to mention {word:?}",
        error.message
    );
}

/// Asserts that `spec` survives `to_json_pretty` and back unchanged, and that printing the
/// copy gives the same text again.
pub fn assert_round_trip(label: &str, spec: &ServiceSpec) {
    let text = spec.to_json_pretty();
    let copy = ServiceSpec::from_json_str(&text)
        .unwrap_or_else(|e| panic!("{label}: the printed spec is refused:\n{e}\n{text}"));
    assert_eq!(&copy, spec, "{label}: the spec changed on the way:\n{text}");
    assert_eq!(
        copy.to_json_pretty(),
        text,
        "{label}: printing the copy gave other text"
    );
}
