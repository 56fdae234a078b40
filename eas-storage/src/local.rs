//! [`LocalMount`]: a directory that already exists on this host (a local path, or a NAS
//! export the OS has mounted), used in place: nothing is copied.
//!
//! [`mount`](StorageMount::mount) checks that the directory exists, and for
//! [`Access::ReadWrite`] that it can be written; the instance then uses the directory itself
//! (the mount's [`target`](StorageMount::target) is the source path). Read-only is advisory:
//! the runtime is told through [`access`](StorageMount::access); enforcing it needs an OS
//! mount.
//!
//! NAS exports (`storage[].nfs`) are found in `/proc/mounts` with [`find_nfs_mount`].
//!
//! ```no_run
//! # async fn demo() -> eas_core::Result<()> {
//! use eas_core::StorageMount;
//! use eas_core::storage::{Access, MountMode};
//! use eas_storage::LocalMount;
//!
//! let data = LocalMount::new("/mnt/data", Access::ReadOnly);
//! let report = data.mount(MountMode::Eager, None).await?;
//! assert_eq!(report.fetched_bytes, 0);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use eas_core::StorageMount;
use eas_core::storage::{Access, MountMode, MountReport, ObjectInfo, Progress};

use crate::local_fs::{join_relative, list_files};
use crate::{Error, Result};

/// A host directory used in place. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct LocalMount {
    uri: String,
    path: PathBuf,
    access: Access,
}

impl LocalMount {
    /// The directory `path`, with the given access.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, access: Access) -> Self {
        let path = path.into();
        Self {
            uri: path.display().to_string(),
            path,
            access,
        }
    }

    /// The same, naming the source differently in errors (such as `nas-host:/export`).
    #[must_use]
    pub fn with_uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }

    /// Checks the directory: it exists, is a directory, and is writable when read-write.
    ///
    /// # Errors
    /// [`Error::NotFound`] or [`Error::Io`] naming the path.
    pub fn check(&self) -> Result<()> {
        let meta = std::fs::metadata(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                uri: self.uri.clone(),
                detail: format!("directory {} does not exist", self.path.display()),
            },
            _ => Error::io(&self.path, e),
        })?;
        if !meta.is_dir() {
            return Err(Error::invalid(&self.uri, "not a directory"));
        }
        if self.access == Access::ReadWrite {
            tempfile::tempfile_in(&self.path).map_err(|e| {
                Error::io(
                    &self.path,
                    std::io::Error::new(
                        e.kind(),
                        format!("mounted read-write but not writable: {e}"),
                    ),
                )
            })?;
        }
        Ok(())
    }
}

/// The mount point of the NFS export `server:path`, read from the text of `/proc/mounts`.
#[must_use]
pub fn find_nfs_mount(proc_mounts: &str, server: &str, path: &str) -> Option<PathBuf> {
    let wanted = format!("{server}:{}", path.trim_end_matches('/'));
    proc_mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (source, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind.starts_with("nfs") && source.trim_end_matches('/') == wanted)
            .then(|| PathBuf::from(point.replace("\\040", " ")))
    })
}

#[async_trait::async_trait]
impl StorageMount for LocalMount {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn target(&self) -> &Path {
        &self.path
    }

    fn access(&self) -> Access {
        self.access
    }

    async fn mount(
        &self,
        _mode: MountMode,
        _progress: Option<&dyn Progress>,
    ) -> eas_core::Result<MountReport> {
        let start = Instant::now();
        let this = self.clone();
        let files = tokio::task::spawn_blocking(move || {
            this.check()?;
            list_files(&this.path)
        })
        .await
        .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))??;
        Ok(MountReport {
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
            reused_files: files.len() as u64,
            fetched_bytes: 0,
            elapsed: start.elapsed(),
        })
    }

    async fn read(&self, relative: &str) -> eas_core::Result<Bytes> {
        let path = join_relative(&self.uri, &self.path, relative)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                uri: self.uri.clone(),
                detail: format!("`{relative}` does not exist"),
            }
            .into()),
            Err(e) => Err(Error::io(path, e).into()),
        }
    }

    async fn list(&self) -> eas_core::Result<Vec<ObjectInfo>> {
        let path = self.path.clone();
        Ok(tokio::task::spawn_blocking(move || list_files(&path))
            .await
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfs_exports_should_be_found_in_proc_mounts() {
        let mounts = "\
proc /proc proc rw 0 0
nas.example.com:/export/models /mnt/my\\040models nfs4 rw,vers=4.1 0 0
other:/x /mnt/x nfs rw 0 0
";
        assert_eq!(
            find_nfs_mount(mounts, "nas.example.com", "/export/models/"),
            Some(PathBuf::from("/mnt/my models"))
        );
        assert_eq!(
            find_nfs_mount(mounts, "other", "/x"),
            Some(PathBuf::from("/mnt/x"))
        );
        assert_eq!(find_nfs_mount(mounts, "nas.example.com", "/other"), None);
    }
}
