//! The resolver: a spec's `model_path`, `model_entry`, `processor_path` and `storage[]` to
//! local paths, against moto and a local HTTP server.

mod support;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use eas_core::ServiceSpec;
use eas_core::storage::{Access, TransferProgress};
use eas_storage::Error;
use eas_storage::resolve::{ResolveOptions, resolve};
use support::{FileServer, Moto, credentials};

fn spec(json: &serde_json::Value) -> ServiceSpec {
    ServiceSpec::from_json_str(&json.to_string()).expect("a valid spec")
}

fn options(dir: &std::path::Path) -> ResolveOptions {
    ResolveOptions::new(dir).with_credentials(credentials())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_should_resolve_model_entry_and_mounts_to_local_paths() {
    let Some(moto) =
        Moto::start("a_spec_should_resolve_model_entry_and_mounts_to_local_paths").await
    else {
        return;
    };
    moto.create_bucket("models").await;
    moto.put(
        "models",
        &[
            ("resnet/model.onnx", b"onnx!"),
            ("resnet/labels.txt", b"cat"),
            ("data/x.csv", b"1,2"),
        ],
    )
    .await;
    let host_dir = tempfile::tempdir().expect("tempdir");
    let spec = spec(&serde_json::json!({
        "metadata": {"name": "demo", "instance": 1},
        "processor": "onnx",
        "model_path": "s3://models/resnet/",
        "oss_endpoint": moto.endpoint,
        "model_entry": "model.onnx",
        "storage": [
            {"mount_path": "/data", "oss": {"path": "s3://models/data/", "readOnly": true}},
            {"mount_path": "/host", "local": {"path": host_dir.path().display().to_string()}},
            {"mount_path": "/cache", "cache": {"capacity": "10M", "path": "/data"}}
        ]
    }));
    let work = tempfile::tempdir().expect("tempdir");
    let events = Arc::new(Mutex::new(Vec::<TransferProgress>::new()));
    let sink = Arc::clone(&events);
    let options = options(work.path()).with_progress(Arc::new(move |p: &TransferProgress| {
        sink.lock().expect("lock").push(p.clone())
    }));
    let resolved = resolve(&spec, &options).await.expect("resolve");

    let entry = resolved.model_entry.clone().expect("model entry");
    assert!(entry.starts_with(work.path()), "{}", entry.display());
    assert_eq!(std::fs::read(&entry).expect("entry"), b"onnx!");
    assert_eq!(resolved.model_dir.as_deref(), entry.parent());
    let mounts: Vec<(&str, Access)> = resolved
        .mounts
        .iter()
        .map(|m| (m.mount_path.as_str(), m.access))
        .collect();
    assert_eq!(
        mounts,
        vec![
            ("/data", Access::ReadOnly),
            ("/host", Access::ReadWrite),
            ("/cache", Access::ReadOnly)
        ]
    );
    assert_eq!(
        std::fs::read(resolved.mounts[0].local_dir.join("x.csv")).expect("csv"),
        b"1,2"
    );
    assert_eq!(resolved.mounts[1].local_dir, host_dir.path());
    assert_eq!(
        resolved.mounts[2].local_dir, resolved.mounts[0].local_dir,
        "a cache shows the mount it caches"
    );
    let cache = resolved
        .cache
        .clone()
        .expect("a cache from storage[].cache");
    assert_eq!(
        (cache.capacity(), cache.stats().objects),
        (10 << 20, 3),
        "the model files and the cached mount's file are in memory"
    );
    assert_eq!(resolved.report.fetched_bytes, 5 + 3 + 3);
    assert!(
        !events.lock().expect("lock").is_empty(),
        "progress was reported"
    );

    // A restart with the same work directory fetches nothing.
    let again = resolve(&spec, &options).await.expect("again");
    assert_eq!(
        (again.report.fetched_bytes, again.report.reused_files),
        (0, 3)
    );
}

#[tokio::test]
async fn an_archive_model_path_should_resolve_its_entry_inside_the_archive() {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_cksum();
    tar.append_data(&mut header, "m/model.onnx", &b"abc"[..])
        .expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().expect("tar")).expect("gz");
    let files = HashMap::from([(
        "model.tar.gz".to_owned(),
        Bytes::from(gz.finish().expect("gz")),
    )]);
    let server = FileServer::start(files).await;
    let work = tempfile::tempdir().expect("tempdir");
    let spec = spec(&serde_json::json!({
        "metadata": {"name": "demo", "instance": 1},
        "processor": "onnx",
        "model_path": format!("{}/model.tar.gz", server.base),
        "model_entry": "m/model.onnx"
    }));
    let resolved = resolve(&spec, &options(work.path()))
        .await
        .expect("resolve");
    assert_eq!(
        std::fs::read(resolved.model_entry.expect("entry")).expect("read"),
        b"abc"
    );
}

#[tokio::test]
async fn bad_paths_should_fail_naming_the_field_or_uri_and_the_reason() {
    let work = tempfile::tempdir().expect("tempdir");
    let model_dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            serde_json::json!("ftp://host/model.tar.gz"),
            None,
            "unsupported scheme",
        ),
        (
            serde_json::json!("oss://bucket/p/"),
            None,
            "needs an endpoint",
        ),
        (
            serde_json::json!("/no/such/dir/eas-test"),
            None,
            "does not exist",
        ),
        (
            serde_json::json!(model_dir.path().display().to_string()),
            Some("missing.onnx"),
            "model_entry",
        ),
    ];
    for (model_path, entry, reason) in cases {
        let mut json = serde_json::json!({"metadata": {"name": "demo", "instance": 1}, "processor": "onnx", "model_path": model_path});
        if let Some(entry) = entry {
            json["model_entry"] = serde_json::json!(entry);
        }
        // Unvalidated on purpose: the resolver must not rely on the spec checks.
        let spec: ServiceSpec = serde_json::from_value(json).expect("deserializes");
        let error = resolve(&spec, &options(work.path()))
            .await
            .expect_err(reason);
        let text = error.to_string();
        assert!(text.contains(reason), "{model_path}: {text}");
        if entry.is_some() {
            assert!(
                matches!(error, Error::Spec { .. }) && text.contains("missing.onnx"),
                "{text}"
            );
        }
    }
}
