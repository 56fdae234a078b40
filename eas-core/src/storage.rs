//! [`StorageMount`]: a remote path made available under a local directory.
//!
//! A mount has a URI (`oss://bucket/prefix/`, `s3://...`, a NAS path such as `/mnt/nas`, or
//! `https://host/model.tar.gz`) and a local [`target`](StorageMount::target) directory.
//! [`mount`](StorageMount::mount) makes the files appear there, either all at once
//! ([`MountMode::Eager`]) or on first read ([`MountMode::Lazy`]), going through the model
//! cache; [`read`](StorageMount::read) reads one file through the cache. The trait is
//! object-safe (`#[async_trait]`) and mounts travel as [`DynStorageMount`].
//!
//! `eas-core` has no async runtime; this example drives the futures by polling them once,
//! which is enough because an in-memory mount never waits.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::path::{Path, PathBuf};
//!
//! use bytes::Bytes;
//! use eas_core::{Error, Result, StorageMount};
//! use eas_core::storage::{MountMode, MountReport, ObjectInfo, Progress};
//!
//! #[derive(Debug)]
//! struct InMemory {
//!     target: PathBuf,
//!     files: BTreeMap<String, Bytes>,
//! }
//!
//! #[async_trait::async_trait]
//! impl StorageMount for InMemory {
//!     fn uri(&self) -> &str {
//!         "mem://models/"
//!     }
//!     fn target(&self) -> &Path {
//!         &self.target
//!     }
//!     async fn mount(&self, _: MountMode, _: Option<&dyn Progress>) -> Result<MountReport> {
//!         let bytes = self.files.values().map(|b| b.len() as u64).sum();
//!         let files = self.files.len() as u64;
//!         Ok(MountReport { files, bytes, fetched_bytes: bytes, ..MountReport::default() })
//!     }
//!     async fn read(&self, relative: &str) -> Result<Bytes> {
//!         let missing = || Error::storage(self.uri(), format!("{relative}: not found"));
//!         self.files.get(relative).cloned().ok_or_else(missing)
//!     }
//!     async fn list(&self) -> Result<Vec<ObjectInfo>> {
//!         let info = |(p, b): (&String, &Bytes)| ObjectInfo::new(p.as_str(), b.len() as u64);
//!         Ok(self.files.iter().map(info).collect())
//!     }
//! }
//!
//! # fn poll_once<F: std::future::Future>(future: F) -> F::Output {
//! #     let mut future = std::pin::pin!(future);
//! #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//! #     match future.as_mut().poll(&mut cx) {
//! #         std::task::Poll::Ready(out) => out,
//! #         std::task::Poll::Pending => unreachable!("an in-memory mount never waits"),
//! #     }
//! # }
//! let mount = InMemory {
//!     target: PathBuf::from("/home/admin/model"),
//!     files: BTreeMap::from([("model.onnx".to_owned(), Bytes::from_static(b"onnx!"))]),
//! };
//! let report = poll_once(mount.mount(MountMode::Eager, None))?;
//! assert_eq!((report.files, report.bytes), (1, 5));
//! assert_eq!(poll_once(mount.read("model.onnx"))?, Bytes::from_static(b"onnx!"));
//! assert!(poll_once(mount.read("missing")).is_err());
//! # Ok::<(), eas_core::Error>(())
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Result;

/// A remote path made available under a local directory, through the model cache.
#[async_trait::async_trait]
pub trait StorageMount: Send + Sync + std::fmt::Debug + 'static {
    /// The remote URI or source path, e.g. `oss://bucket/prefix/`, `/mnt/nas`,
    /// `https://host/model.tar.gz`.
    fn uri(&self) -> &str;

    /// The local directory where the files appear.
    fn target(&self) -> &Path;

    /// Whether the mount may be written to; read-only unless an implementation says otherwise.
    fn access(&self) -> Access {
        Access::ReadOnly
    }

    /// Makes the files available under [`target`](Self::target): all of them now
    /// ([`MountMode::Eager`]) or on first read ([`MountMode::Lazy`]). Reports cumulative
    /// progress (see [`TransferProgress`]) when `progress` is given. A second eager mount
    /// reuses what is already present and valid.
    ///
    /// # Errors
    /// [`Error::Storage`](crate::Error::Storage) when the URI cannot be resolved or fetched,
    /// [`Error::Io`](crate::Error::Io) when the local directory cannot be written.
    async fn mount(&self, mode: MountMode, progress: Option<&dyn Progress>) -> Result<MountReport>;

    /// Reads one file, by its path relative to the mount root, through the cache.
    ///
    /// # Errors
    /// [`Error::Storage`](crate::Error::Storage) when the file does not exist or cannot be
    /// fetched.
    async fn read(&self, relative: &str) -> Result<Bytes>;

    /// Lists every file under the mount root.
    ///
    /// # Errors
    /// [`Error::Storage`](crate::Error::Storage) when the listing fails.
    async fn list(&self) -> Result<Vec<ObjectInfo>>;
}

/// A shared mount.
pub type DynStorageMount = Arc<dyn StorageMount>;

/// When a mount fetches its files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountMode {
    /// Fetch everything during [`StorageMount::mount`] (the instance starts with every file
    /// local).
    #[default]
    Eager,
    /// Fetch each file on its first read.
    Lazy,
}

/// Whether a mount may be written to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Read only (models).
    #[default]
    ReadOnly,
    /// Read and write (NAS or OSS working directories).
    ReadWrite,
}

/// What a [`StorageMount::mount`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountReport {
    /// Files under the mount.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Files already in the local cache, not fetched again.
    pub reused_files: u64,
    /// Bytes fetched from the remote store (or a peer) during this mount.
    pub fetched_bytes: u64,
    /// How long the mount took.
    pub elapsed: Duration,
}

/// One file of a mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The path relative to the mount root, `/`-separated.
    pub path: String,
    /// The size in bytes.
    pub size: u64,
    /// The store's entity tag, when it gives one (used to tell whether a cached copy is fresh).
    pub etag: Option<String>,
}

impl ObjectInfo {
    /// A file without etag.
    #[must_use]
    pub fn new(path: impl Into<String>, size: u64) -> Self {
        Self {
            path: path.into(),
            size,
            etag: None,
        }
    }

    /// The same with an etag.
    #[must_use]
    pub fn with_etag(mut self, etag: impl Into<String>) -> Self {
        self.etag = Some(etag.into());
        self
    }
}

/// Receives progress while a mount fetches files. Any `Fn(&TransferProgress)` is one.
pub trait Progress: Send + Sync {
    /// Called as a transfer advances (at least once per file, when it completes).
    fn on_progress(&self, progress: &TransferProgress);
}

impl<F> Progress for F
where
    F: Fn(&TransferProgress) + Send + Sync,
{
    fn on_progress(&self, progress: &TransferProgress) {
        self(progress);
    }
}

/// How far a mount's transfer has come. A mount reports as one transfer: the byte counts and
/// the time cover the whole mount (cumulative, never decreasing), `path` names the file that
/// advanced last, so a progress bar needs no bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferProgress {
    /// The file that advanced last, relative to the mount root.
    pub path: String,
    /// Bytes transferred so far by the mount.
    pub bytes_done: u64,
    /// The bytes the mount transfers in all, when known.
    pub bytes_total: Option<u64>,
    /// Time since the mount's transfer started.
    pub elapsed: Duration,
}

impl TransferProgress {
    /// Average rate so far, in bytes per second (0 before any time has passed).
    #[must_use]
    pub fn rate_bytes_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes_done as f64 / secs
        } else {
            0.0
        }
    }

    /// Time left at the average rate so far: zero when done, `None` when the size or the rate
    /// is unknown.
    #[must_use]
    pub fn eta(&self) -> Option<Duration> {
        let total = self.bytes_total?;
        let left = total.saturating_sub(self.bytes_done);
        if left == 0 {
            return Some(Duration::ZERO);
        }
        let rate = self.rate_bytes_per_sec();
        (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn progress(done: u64, total: Option<u64>, secs: u64) -> TransferProgress {
        TransferProgress {
            path: "a".into(),
            bytes_done: done,
            bytes_total: total,
            elapsed: Duration::from_secs(secs),
        }
    }

    #[test]
    fn transfer_rate_should_be_bytes_over_elapsed_time() {
        assert!((progress(1_000, None, 4).rate_bytes_per_sec() - 250.0).abs() < 1e-9);
        assert!(progress(1_000, None, 0).rate_bytes_per_sec().abs() < f64::EPSILON);
    }

    #[test]
    fn eta_should_extrapolate_the_average_rate() {
        assert_eq!(
            progress(250, Some(1_000), 1).eta(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(progress(1_000, Some(1_000), 1).eta(), Some(Duration::ZERO));
        assert_eq!(progress(0, Some(1_000), 0).eta(), None, "no rate yet");
        assert_eq!(progress(10, None, 1).eta(), None, "unknown size");
    }

    #[test]
    fn closures_should_receive_progress() {
        let seen = Mutex::new(Vec::new());
        let sink = |p: &TransferProgress| seen.lock().expect("not poisoned").push(p.bytes_done);
        let progress_sink: &dyn Progress = &sink;
        progress_sink.on_progress(&progress(7, None, 1));
        assert_eq!(*seen.lock().expect("not poisoned"), vec![7]);
    }

    #[test]
    fn defaults_should_be_eager_and_read_only() {
        assert_eq!(MountMode::default(), MountMode::Eager);
        assert_eq!(Access::default(), Access::ReadOnly);
        assert_eq!(
            ObjectInfo::new("m/a.bin", 3)
                .with_etag("e1")
                .etag
                .as_deref(),
            Some("e1")
        );
    }
}
