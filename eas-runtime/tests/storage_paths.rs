//! Specs whose model comes through `eas-storage`: a model archive is unpacked into the work
//! directory and served; an archive with an escaping entry stops the service from starting,
//! naming the entry, and writes nothing outside the target.

#[path = "support/require.rs"]
mod require;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use eas_core::spec::ServiceSpec;
use eas_runtime::platform::Platform;
use serde_json::json;

fn models() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models")
}

fn tar(args: &[&str], dir: &Path) {
    let status = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar {args:?}");
}

fn spec(model_path: &Path) -> ServiceSpec {
    ServiceSpec::from_json_value(json!({
        "metadata": {"name": "packed", "instance": 1},
        "processor": "onnx",
        "model_path": model_path.to_string_lossy(),
        "model_entry": "model/mlp.onnx",
        "token": "t",
    }))
    .expect("valid spec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_archive_should_be_unpacked_and_served() {
    let test = "a_model_archive_should_be_unpacked_and_served";
    if let Err(e) = eas_runtime::onnx::runtime() {
        return require::skip(test, &format!("no ONNX Runtime library: {e}"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("model")).expect("mkdir");
    std::fs::copy(models().join("mlp.onnx"), dir.path().join("model/mlp.onnx")).expect("copy");
    tar(&["czf", "model.tar.gz", "model"], dir.path());

    let work = dir.path().join("work");
    let server = Platform::builder()
        .service(spec(&dir.path().join("model.tar.gz")))
        .work_dir(&work)
        .bind("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(30)).await, "ready");
    let answer = reqwest::Client::new()
        .post(format!("http://{}/api/predict/packed", server.local_addr()))
        .header("Authorization", "t")
        .header("Content-Type", "application/json")
        .body(r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = answer.json().await.expect("json");
    let y = body["outputs"]["y"]["data"][0].as_f64().expect("a number");
    assert!((y - 0.338158).abs() < 1e-5, "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_escaping_archive_should_stop_the_service_naming_the_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inside = dir.path().join("inside");
    std::fs::create_dir(&inside).expect("mkdir");
    std::fs::write(inside.join("evil.txt"), "x").expect("write");
    // GNU tar: store evil.txt as ../evil.txt.
    tar(
        &[
            "czf",
            "../evil.tar.gz",
            "--transform",
            "s,^,../,",
            "evil.txt",
        ],
        &inside,
    );
    let work = dir.path().join("work");
    let error = Platform::builder()
        .service(spec(&dir.path().join("evil.tar.gz")))
        .work_dir(&work)
        .bind("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect_err("the archive escapes");
    let message = error.to_string();
    assert!(message.contains("packed"), "{message}");
    assert!(message.contains("../evil.txt"), "{message}");
    assert!(message.contains("escapes"), "{message}");
    assert!(!work.join("evil.txt").exists() && !work.join("packed/evil.txt").exists());
}
