//! Shared helpers for the spec tests: a valid base spec, edits of it, and paths to examples.

#![allow(dead_code)]

use std::path::PathBuf;

use eas_core::spec::{ServiceSpec, SpecErrors};
use serde_json::{Value, json};

/// A small valid spec that exercises most sections; tests edit it into invalid ones.
pub fn base() -> Value {
    json!({
        "metadata": {
            "name": "demo_service",
            "instance": 2,
            "cpu": 2,
            "memory": 4096,
            "rpc": {"batching": true, "max_batch_size": 8},
            "scheduling": {"spread": {"policy": "zone"}}
        },
        "processor": "echo",
        "model_path": "oss://bucket/models/demo/",
        "containers": [{"image": "python:3.11", "script": "python app.py", "port": 8000}],
        "cloud": {"computing": {"instances": [
            {"type": "ecs.gn6i-c4g1.xlarge", "spot_price_limit": 0.5, "capacity": "20%"},
            {"type": "ecs.gn6i-c8g1.2xlarge"}
        ]}},
        "storage": [
            {"mount_path": "/data_oss", "oss": {"path": "oss://bucket/data/", "endpoint": "oss-cn-hangzhou.aliyuncs.com"}},
            {"mount_path": "/data_nas", "nfs": {"server": "x.cn-hangzhou.nas.aliyuncs.com", "path": "/"}}
        ],
        "autoscaler": {"min": 1, "max": 10, "strategies": {"qps": 100, "cpu": 70}}
    })
}

/// `base()` with `edit` applied.
pub fn edited(edit: impl FnOnce(&mut Value)) -> Value {
    let mut spec = base();
    edit(&mut spec);
    spec
}

/// Parses a JSON value as a spec.
pub fn parse(value: Value) -> Result<ServiceSpec, SpecErrors> {
    ServiceSpec::from_json_str(&value.to_string())
}

/// Parses a JSON value that must be refused, and returns the errors.
pub fn refused(value: Value) -> SpecErrors {
    match parse(value.clone()) {
        Ok(_) => panic!("expected the spec to be refused:\n{value:#}"),
        Err(errors) => errors,
    }
}

/// Asserts that `errors` has an error at `path` whose message contains `word`.
pub fn assert_error(errors: &SpecErrors, path: &str, word: &str) {
    let error = errors
        .at(path)
        .unwrap_or_else(|| panic!("no error at {path:?}; errors:\n{errors}"));
    assert!(
        error.message.contains(word),
        "error at {path} says {:?}, expected it to mention {word:?}",
        error.message
    );
}

/// The workspace's example specs.
pub fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/services")
        .join(name)
}

/// Reads an example spec as text.
pub fn example_text(name: &str) -> String {
    std::fs::read_to_string(example(name)).expect("the example exists")
}
