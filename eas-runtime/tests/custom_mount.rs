//! A storage mount an application registers for its own URI scheme: a server started with
//! `storage_mounts` fetches a `mem://` model through the user's mount and serves it; a spec
//! naming a scheme nobody registered does not start, and the error names the scheme.
//!
//! The mount holds `examples/models/mlp.onnx`; a small processor answers with the bytes of
//! its model file, so the answer proves the file came through the custom mount (and the test
//! needs no ONNX Runtime).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eas_core::StorageMount;
use eas_core::processor::{InitContext, ProcessError, Processor, Request, Response};
use eas_core::spec::ServiceSpec;
use eas_core::storage::{MountMode, MountReport, ObjectInfo, Progress, TransferProgress};
use eas_runtime::platform::Platform;
use eas_runtime::registry::ProcessorRegistry;
use eas_storage::{MountRegistry, MountRequest};
use serde_json::json;

fn model_bytes() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/mlp.onnx");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The user's mount: an in-memory map of file name to bytes, written under the target on an
/// eager mount.
#[derive(Debug)]
struct MemMount {
    uri: String,
    target: PathBuf,
    files: BTreeMap<String, Bytes>,
}

#[async_trait::async_trait]
impl StorageMount for MemMount {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn target(&self) -> &Path {
        &self.target
    }

    async fn mount(
        &self,
        mode: MountMode,
        progress: Option<&dyn Progress>,
    ) -> eas_core::Result<MountReport> {
        let mut report = MountReport {
            files: self.files.len() as u64,
            bytes: self.files.values().map(|b| b.len() as u64).sum(),
            ..MountReport::default()
        };
        if mode == MountMode::Lazy {
            return Ok(report);
        }
        for (name, bytes) in &self.files {
            let local = self.target.join(name);
            if std::fs::read(&local).is_ok_and(|on_disk| on_disk == bytes.as_ref()) {
                report.reused_files += 1;
                continue;
            }
            let failed =
                |e: std::io::Error| eas_core::Error::storage(&self.uri, format!("{name}: {e}"));
            let dir = local.parent().unwrap_or(&self.target);
            std::fs::create_dir_all(dir).map_err(failed)?;
            std::fs::write(&local, bytes).map_err(failed)?;
            report.fetched_bytes += bytes.len() as u64;
            if let Some(progress) = progress {
                progress.on_progress(&TransferProgress {
                    path: name.clone(),
                    bytes_done: report.fetched_bytes,
                    bytes_total: Some(report.bytes),
                    elapsed: Duration::ZERO,
                });
            }
        }
        Ok(report)
    }

    async fn read(&self, relative: &str) -> eas_core::Result<Bytes> {
        let inside = Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        let found = inside.then(|| self.files.get(relative)).flatten();
        found
            .cloned()
            .ok_or_else(|| eas_core::Error::storage(&self.uri, format!("`{relative}` not found")))
    }

    async fn list(&self) -> eas_core::Result<Vec<ObjectInfo>> {
        Ok(self
            .files
            .iter()
            .map(|(name, bytes)| ObjectInfo::new(name.as_str(), bytes.len() as u64))
            .collect())
    }
}

/// Answers every request with the bytes of its model file, read once at initialize.
#[derive(Default)]
struct ModelBytes {
    model: Bytes,
}

impl Processor for ModelBytes {
    fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
        let entry = ctx
            .model_entry
            .as_ref()
            .ok_or_else(|| eas_core::Error::storage("model_entry", "no model entry"))?;
        self.model = std::fs::read(entry)
            .map_err(|e| eas_core::Error::storage(entry.display().to_string(), e.to_string()))?
            .into();
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        batch
            .iter()
            .map(|_| Ok(Response::ok(self.model.clone())))
            .collect()
    }
}

fn mounts_with_mem(model: Vec<u8>) -> MountRegistry {
    let model = Bytes::from(model);
    let mut mounts = MountRegistry::with_builtins();
    mounts.register("mem", move |request: &MountRequest| {
        Ok(Arc::new(MemMount {
            uri: request.uri.clone(),
            target: request.target.clone(),
            files: BTreeMap::from([("mlp.onnx".to_owned(), model.clone())]),
        }))
    });
    mounts
}

fn spec(model_path: &str) -> ServiceSpec {
    ServiceSpec::from_json_value(json!({
        "metadata": {"name": "custom_mount", "instance": 1},
        "processor": "model_bytes",
        "model_path": model_path,
        "model_entry": "mlp.onnx",
        "token": "t",
    }))
    .expect("valid: the validator leaves unknown schemes to the runtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_should_come_through_a_mount_registered_for_its_scheme() {
    let model = model_bytes();
    let mut processors = ProcessorRegistry::with_builtins();
    processors.register("model_bytes", |_spec| Ok(Box::new(ModelBytes::default())));
    let work = tempfile::tempdir().expect("tempdir");
    let server = Platform::builder()
        .storage_mounts(mounts_with_mem(model.clone()))
        .registry(processors)
        .service(spec("mem://models/mlp/"))
        .work_dir(work.path())
        .bind("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(30)).await, "ready");
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{}/api/predict/custom_mount",
            server.local_addr()
        ))
        .header("Authorization", "t")
        .body("which model?")
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status().as_u16(), 200);
    let body = answer.bytes().await.expect("body");
    assert_eq!(
        body.as_ref(),
        model.as_slice(),
        "the answer is the model file that came through the mem:// mount"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_scheme_without_mount_should_stop_the_start_naming_it() {
    let mut processors = ProcessorRegistry::with_builtins();
    processors.register("model_bytes", |_spec| Ok(Box::new(ModelBytes::default())));
    let work = tempfile::tempdir().expect("tempdir");
    let error = Platform::builder()
        .storage_mounts(mounts_with_mem(model_bytes()))
        .registry(processors)
        .service(spec("gs://models/mlp/"))
        .work_dir(work.path())
        .bind("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect_err("no mount for gs://");
    let message = error.to_string();
    assert!(
        message.contains("custom_mount"),
        "names the service: {message}"
    );
    assert!(
        message.contains("unsupported scheme `gs://`"),
        "names the scheme: {message}"
    );
    assert!(
        message.contains("mem://") && message.contains("oss://"),
        "lists the registered schemes: {message}"
    );
}
