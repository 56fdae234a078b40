//! A storage mount an application writes for its own URI scheme (`mem://`), registered in a
//! `MountRegistry`: it passes the conformance suite, and the resolver mounts a spec's
//! `model_path` and `storage[].oss.path` of that scheme through it. A scheme nobody registered
//! fails to resolve, naming the scheme and the registered ones.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use eas_core::conformance::storage_mount;
use eas_core::storage::{MountMode, MountReport, ObjectInfo, Progress, TransferProgress};
use eas_core::{ServiceSpec, StorageMount};
use eas_storage::resolve::{ResolveOptions, resolve};
use eas_storage::{Error, MountRegistry, MountRequest};
use serde_json::json;

/// What a user writes: files from an in-memory map, written under the target on an eager
/// mount.
#[derive(Debug)]
struct MapMount {
    uri: String,
    target: PathBuf,
    files: BTreeMap<String, Bytes>,
}

impl MapMount {
    fn new(uri: &str, target: &Path, files: &[(&str, &[u8])]) -> Self {
        Self {
            uri: uri.to_owned(),
            target: target.to_path_buf(),
            files: files
                .iter()
                .map(|(path, bytes)| ((*path).to_owned(), Bytes::copy_from_slice(bytes)))
                .collect(),
        }
    }

    fn bytes(&self) -> u64 {
        self.files.values().map(|b| b.len() as u64).sum()
    }
}

#[async_trait::async_trait]
impl StorageMount for MapMount {
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
            bytes: self.bytes(),
            ..MountReport::default()
        };
        if mode == MountMode::Lazy {
            return Ok(report);
        }
        for (path, bytes) in &self.files {
            let local = self.target.join(path);
            if std::fs::read(&local).is_ok_and(|on_disk| on_disk == bytes.as_ref()) {
                report.reused_files += 1;
                continue;
            }
            let io = |e| eas_core::Error::storage(&self.uri, format!("{path}: {e}"));
            std::fs::create_dir_all(local.parent().unwrap_or(&self.target)).map_err(io)?;
            std::fs::write(&local, bytes).map_err(io)?;
            report.fetched_bytes += bytes.len() as u64;
            if let Some(progress) = progress {
                progress.on_progress(&TransferProgress {
                    path: path.clone(),
                    bytes_done: report.fetched_bytes,
                    bytes_total: Some(report.bytes),
                    elapsed: std::time::Duration::ZERO,
                });
            }
        }
        Ok(report)
    }

    async fn read(&self, relative: &str) -> eas_core::Result<Bytes> {
        let inside = Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            return Err(eas_core::Error::storage(
                &self.uri,
                format!("`{relative}` is outside the mount"),
            ));
        }
        self.files
            .get(relative)
            .cloned()
            .ok_or_else(|| eas_core::Error::storage(&self.uri, format!("`{relative}` not found")))
    }

    async fn list(&self) -> eas_core::Result<Vec<ObjectInfo>> {
        Ok(self
            .files
            .iter()
            .map(|(path, bytes)| ObjectInfo::new(path.as_str(), bytes.len() as u64))
            .collect())
    }
}

/// "Buckets" of the `mem://` store: `mem://<bucket>/<prefix>` serves the files under it.
fn mem_registry(store: &'static [(&'static str, &'static [u8])]) -> MountRegistry {
    let mut mounts = MountRegistry::with_builtins();
    mounts.register("mem", move |request: &MountRequest| {
        let prefix = request.uri.trim_start_matches("mem://");
        let files: Vec<(&str, &[u8])> = store
            .iter()
            .filter_map(|(path, bytes)| Some((path.strip_prefix(prefix)?, *bytes)))
            .collect();
        if files.is_empty() {
            return Err(Error::NotFound {
                uri: request.uri.clone(),
                detail: "no such prefix in the mem store".into(),
            });
        }
        Ok(Arc::new(MapMount::new(
            &request.uri,
            &request.target,
            &files,
        )))
    });
    mounts
}

const STORE: &[(&str, &[u8])] = &[
    ("models/resnet/model.onnx", b"onnx!"),
    ("models/resnet/labels.txt", b"cat dog"),
    ("data/train/x.csv", b"1,2"),
];

#[tokio::test]
async fn a_user_mount_should_pass_the_storage_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files: [(&str, &[u8]); 2] = [("model.onnx", b"onnx!"), ("sub/dir/vocab.txt", b"a b")];
    storage_mount(&MapMount::new("mem://m/", dir.path(), &files), &files).await;
}

#[tokio::test]
async fn a_registered_scheme_should_resolve_through_the_users_mount() {
    let work = tempfile::tempdir().expect("tempdir");
    let spec = ServiceSpec::from_json_value(json!({
        "metadata": {"name": "demo", "instance": 1},
        "processor": "echo",
        "model_path": "mem://models/resnet/",
        "model_entry": "model.onnx",
        "storage": [{"mount_path": "/data", "oss": {"path": "mem://data/train/", "readOnly": false}}],
    }))
    .expect("a valid spec: the validator leaves mem:// to the runtime");
    let options = ResolveOptions::new(work.path()).with_mounts(mem_registry(STORE));
    let resolved = resolve(&spec, &options).await.expect("resolves");

    let model_dir = resolved.model_dir.expect("model dir");
    assert!(
        model_dir.starts_with(work.path().join("model")),
        "{model_dir:?}"
    );
    let entry = resolved.model_entry.expect("model entry");
    assert_eq!(std::fs::read(&entry).expect("entry on disk"), b"onnx!");
    assert_eq!(
        std::fs::read(model_dir.join("labels.txt")).expect("labels"),
        b"cat dog"
    );
    assert_eq!(resolved.mounts.len(), 1);
    let data = &resolved.mounts[0];
    assert_eq!(data.mount.uri(), "mem://data/train/");
    assert_eq!(data.mount_path, "/data");
    assert_eq!(
        std::fs::read(data.local_dir.join("x.csv")).expect("mounted"),
        b"1,2"
    );
    assert_eq!(resolved.report.files, 3);
}

#[tokio::test]
async fn an_unregistered_scheme_should_fail_naming_it_and_the_registered_ones() {
    let work = tempfile::tempdir().expect("tempdir");
    for (model_path, mounts, registered) in [
        (
            "mem://models/resnet/",
            MountRegistry::with_builtins(),
            "registered: http://, https://, oss://, s3://",
        ),
        (
            "gs://models/resnet/",
            mem_registry(STORE),
            "registered: http://, https://, mem://, oss://, s3://",
        ),
    ] {
        let spec = ServiceSpec::from_json_value(json!({
            "metadata": {"name": "demo", "instance": 1},
            "processor": "echo",
            "model_path": model_path,
        }))
        .expect("valid: only the runtime knows which schemes are registered");
        let options = ResolveOptions::new(work.path()).with_mounts(mounts);
        let error = resolve(&spec, &options).await.expect_err("unregistered");
        let scheme = model_path.split("://").next().expect("a scheme");
        assert!(
            matches!(&error, Error::UnsupportedScheme { scheme: s, .. } if s == scheme),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(model_path), "{message}");
        assert!(
            message.contains(&format!("unsupported scheme `{scheme}://`")),
            "{message}"
        );
        assert!(message.contains(registered), "{message}");
    }
}

#[tokio::test]
async fn a_users_mount_error_should_reach_the_caller() {
    let work = tempfile::tempdir().expect("tempdir");
    let spec = ServiceSpec::from_json_value(json!({
        "metadata": {"name": "demo", "instance": 1},
        "processor": "echo",
        "model_path": "mem://nothing/here/",
    }))
    .expect("valid");
    let options = ResolveOptions::new(work.path()).with_mounts(mem_registry(STORE));
    let error = resolve(&spec, &options).await.expect_err("no such prefix");
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("mem://nothing/here/"), "{error}");
}
