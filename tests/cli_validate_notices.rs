//! `eas validate` on specs with fields that take no effect here: a warning per field on
//! stderr (`warning: FIELD: REASON`), the summary on stdout, and exit status 0.

use std::path::PathBuf;
use std::process::{Command, Output};

fn eas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eas"))
        .args(args)
        .output()
        .expect("the eas binary runs")
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/services")
}

/// Writes `contents` to a file of its own under the system temp directory.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("eas-cli-notices-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("temp dir is writable");
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The field of each `warning: FIELD: REASON` line, in order.
fn warned_fields(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("warning: "))
        .map(|rest| rest.split(": ").next().unwrap_or(rest).to_owned())
        .collect()
}

#[test]
fn validate_should_warn_about_fields_with_no_effect_and_exit_0() {
    let spec = temp_file(
        "silent.json",
        r#"{"metadata": {"name": "demo", "instance": 1, "memory": 2048},
            "cloud": {"networking": {"vpc_id": "vpc-1"}},
            "processor": "echo",
            "model_path": "/models",
            "containers": [{"image": "python:3.11", "script": "python app.py", "port": 8000}]}"#,
    );
    let out = eas(&["validate", spec.to_str().expect("utf-8 path")]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("valid: service demo"), "{stdout}");
    for expected in [
        "warning: metadata.memory: counted against the node's capacity, but not enforced",
        "warning: cloud.networking.vpc_id: applies to a cloud deployment; the local provider \
         ignores it",
        "warning: containers: running container images is not in scope for eas; use a \
         `processor`",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert_eq!(
        warned_fields(&stderr),
        ["metadata.memory", "cloud.networking.vpc_id", "containers"],
        "{stderr}"
    );
}

#[test]
fn validate_should_not_warn_about_a_spec_whose_fields_all_take_effect() {
    let spec = temp_file(
        "effective.json",
        r#"{"metadata": {"name": "demo", "instance": 2, "cpu": 1,
                         "rpc": {"batching": true, "max_batch_size": 8, "io_threads": 4}},
            "processor": "echo",
            "model_path": "/models"}"#,
    );
    let out = eas(&["validate", spec.to_str().expect("utf-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning:"), "{stderr}");
}

#[test]
fn validate_should_warn_about_exactly_these_fields_of_the_examples() {
    const MEMORY_CLOUD_CONTAINERS: &[&str] =
        &["metadata.memory", "cloud.computing.instances", "containers"];
    let expected: &[(&str, &[&str])] = &[
        ("echo.json", &["metadata.memory"]),
        ("mlp.json", &["metadata.memory"]),
        (
            "reference-full.json",
            &[
                "metadata.workspace_id",
                "metadata.memory",
                "metadata.gpu_core_percentage",
                "metadata.resource",
                "metadata.cuda",
                "metadata.rdma",
                "metadata.rolling_strategy.max_surge",
                "metadata.rolling_strategy.max_unavailable",
                "metadata.scheduling.spread.policy",
                "metadata.shm_size",
                "cloud.computing.instances",
                "cloud.computing.disable_spot_protection_period",
                "cloud.networking.vpc_id",
                "cloud.networking.vswitch_id",
                "cloud.networking.security_group_id",
                "containers",
                "dockerAuth",
                "networking.gateway",
                "unit",
                "confidential",
                "features[\"eas.aliyun.com/extra-ephemeral-storage\"]",
                "features[\"eas.aliyun.com/gpu-driver-version\"]",
            ],
        ),
        (
            "reference-quickstart.json",
            &[
                "metadata.workspace_id",
                "cloud.computing.instances",
                "containers",
            ],
        ),
        ("sim-eas-spot.json", MEMORY_CLOUD_CONTAINERS),
        ("sim-on-demand.json", MEMORY_CLOUD_CONTAINERS),
        (
            "sim-skyserve-hedge.json",
            &[
                "metadata.memory",
                "metadata.scheduling.spread.policy",
                "metadata.resource_rebalancing",
                "cloud.computing.instances",
                "containers",
            ],
        ),
    ];

    // Every example is listed, so a new one cannot bring unexpected warnings unseen.
    let mut on_disk: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples/services is readable")
        .map(|entry| entry.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    assert_eq!(on_disk, listed, "list every example spec here");

    for (name, fields) in expected {
        let path = examples_dir().join(name);
        let out = eas(&["validate", path.to_str().expect("utf-8 path")]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        assert!(text(&out.stdout).contains("valid: service "), "{name}");
        assert_eq!(warned_fields(&stderr), *fields, "{name}:\n{stderr}");
    }
}
