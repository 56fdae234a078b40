//! Local-file helpers shared by the mounts: safe relative paths, atomic writes, directory
//! listings and the small manifest that lets a restarted instance reuse what it fetched.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use eas_core::storage::ObjectInfo;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The manifest file a mount keeps in its target directory.
pub const MANIFEST: &str = ".eas-mount.json";

/// Joins a `/`-separated relative path to `root`, refusing absolute paths, `..`, and empty
/// or `.` components (they could leave the root or alias another file).
///
/// # Errors
/// [`Error::InvalidUri`] naming the path.
pub fn join_relative(uri: &str, root: &Path, relative: &str) -> Result<PathBuf> {
    let bad = || Error::invalid(uri, format!("`{relative}` is not a plain relative path"));
    if relative.is_empty() || relative.starts_with('/') || relative.contains('\\') {
        return Err(bad());
    }
    let mut path = root.to_path_buf();
    for part in relative.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(bad());
        }
        path.push(part);
    }
    // Belt and braces: what `Path` parsed must be plain names only.
    let rel = path.strip_prefix(root).map_err(|_| bad())?;
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    Ok(path)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, renamed into
/// place once complete (a crash leaves no half-written file under the final name).
///
/// # Errors
/// [`Error::Io`] naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut file = tempfile::Builder::new()
        .prefix(".eas-partial-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Every regular file under `root`, as `/`-separated relative paths with sizes, sorted;
/// the mounts' own bookkeeping files (`.eas-*`) are left out. Symbolic links are listed when
/// they point to a file.
///
/// # Errors
/// [`Error::Io`] naming the directory that could not be read.
pub fn list_files(root: &Path) -> Result<Vec<ObjectInfo>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with(".eas-") {
                continue;
            }
            let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
            if meta.is_dir() {
                if !entry
                    .file_type()
                    .map_err(|e| Error::io(&path, e))?
                    .is_symlink()
                {
                    stack.push(path);
                }
            } else if meta.is_file()
                && let Ok(rel) = path.strip_prefix(root)
            {
                let rel: Vec<_> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect();
                out.push(ObjectInfo::new(rel.join("/"), meta.len()));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// What a mount fetched into its target, by relative path: enough to reuse a file after a
/// restart when the store still has the same size and ETag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The source URI.
    pub uri: String,
    /// Complete, verified files.
    pub files: BTreeMap<String, ManifestEntry>,
}

/// One fetched file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Its size.
    pub size: u64,
    /// The store's ETag when it was fetched.
    pub etag: Option<String>,
}

impl Manifest {
    /// The manifest in `target` for `uri`; empty when absent, unreadable or for another URI.
    #[must_use]
    pub fn load(target: &Path, uri: &str) -> Self {
        std::fs::read(target.join(MANIFEST))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Self>(&bytes).ok())
            .filter(|m| m.uri == uri)
            .unwrap_or_else(|| Self {
                uri: uri.to_owned(),
                files: BTreeMap::new(),
            })
    }

    /// Writes it into `target`, atomically.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn save(&self, target: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::io(target.join(MANIFEST), std::io::Error::other(e)))?;
        write_atomic(&target.join(MANIFEST), &bytes)
    }

    /// Whether the local copy of `info` (at `path`) is complete and the same version: same
    /// size and ETag as recorded, and the file on disk has that size.
    #[must_use]
    pub fn is_fresh(&self, info: &ObjectInfo, path: &Path) -> bool {
        self.files.get(&info.path).is_some_and(|entry| {
            entry.size == info.size
                && entry.etag == info.etag
                && std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == info.size)
        })
    }

    /// Records a complete file.
    pub fn record(&mut self, info: &ObjectInfo) {
        self.files.insert(
            info.path.clone(),
            ManifestEntry {
                size: info.size,
                etag: info.etag.clone(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_should_never_leave_the_root() {
        let root = Path::new("/m");
        assert_eq!(
            join_relative("u", root, "a/b.onnx").expect("plain"),
            PathBuf::from("/m/a/b.onnx")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\..\\b",
        ] {
            assert!(join_relative("u", root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifest_should_reuse_only_same_size_and_etag() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_atomic(&dir.path().join("a/f.bin"), b"1234").expect("write");
        let mut manifest = Manifest::load(dir.path(), "s3://b/p/");
        let info = ObjectInfo::new("a/f.bin", 4).with_etag("e1");
        let path = dir.path().join("a/f.bin");
        assert!(!manifest.is_fresh(&info, &path), "not recorded yet");
        manifest.record(&info);
        manifest.save(dir.path()).expect("save");
        let manifest = Manifest::load(dir.path(), "s3://b/p/");
        assert!(manifest.is_fresh(&info, &path));
        assert!(!manifest.is_fresh(&info.clone().with_etag("e2"), &path));
        assert!(!Manifest::load(dir.path(), "s3://other/").is_fresh(&info, &path));
        assert_eq!(
            list_files(dir.path()).expect("list"),
            vec![ObjectInfo::new("a/f.bin", 4)]
        );
    }
}
