//! The `eas` binary as a user runs it: exit codes and what it prints.

use std::path::PathBuf;
use std::process::{Command, Output};

fn eas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eas"))
        .args(args)
        .output()
        .expect("the eas binary runs")
}

fn example(name: &str) -> String {
    format!("{}/examples/services/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Writes `contents` to a file of its own under the system temp directory.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("eas-cli-test-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("temp dir is writable");
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_should_print_a_summary_and_exit_0_for_a_valid_spec() {
    for name in [
        "reference-full.json",
        "reference-quickstart.json",
        "echo.json",
    ] {
        let out = eas(&["validate", &example(name)]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("valid: service "),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn validate_should_print_every_problem_with_its_path_and_exit_1() {
    let spec = temp_file(
        "bad.json",
        r#"{"metadata": {"name": "demo", "instance": 1, "rpc": {"max_batch_sise": 8}},
            "containers": [{"image": "x", "script": "run", "port": 9090}],
            "autoscaler": {"min": 3, "max": 1, "strategies": {"qps": 10}}}"#,
    );
    let out = eas(&["validate", spec.to_str().expect("utf-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "metadata.rpc.max_batch_sise: unknown field; did you mean max_batch_size?",
        "containers[0].port: port 9090 is reserved",
        "autoscaler.min: min (3) is greater than max (1)",
        "3 problems",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn validate_should_report_the_line_and_column_of_invalid_json() {
    let spec = temp_file(
        "syntax.json",
        "{\n  \"metadata\": {\"name\": \"demo\",,}\n}\n",
    );
    let out = eas(&["validate", spec.to_str().expect("utf-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("syntax.json:2:"), "{stderr}");
    assert!(stderr.contains("invalid JSON"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn validate_should_say_why_an_unreadable_file_cannot_be_checked() {
    let out = eas(&["validate", "/nonexistent/service.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn schema_should_print_a_json_schema_that_describes_the_spec() {
    let out = eas(&["schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the schema is JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(schema["properties"]["metadata"].is_object());
    assert!(schema["$defs"]["Rpc"]["properties"]["max_batch_size"]["description"].is_string());
}
