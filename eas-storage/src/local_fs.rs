//! Local-file helpers shared by the mounts: safe relative paths, atomic writes, directory
//! listings, the small manifest that lets a restarted instance reuse what it fetched, and the
//! temporary files and directories a mount writes before renaming them into place.
//!
//! **Reuse after a restart.** The [`Manifest`] records, for each complete file, the store's
//! size and ETag, the CRC-32C of the content (computed while it streamed in), and a
//! [`FileStamp`] of the file on disk: device, inode, size, modification and status-change
//! times (nanoseconds). A file is reused when the store still shows the same size and ETag and
//! then ([`Manifest::check`]):
//! - its stamp is unchanged: it is trusted without being read (a `stat`, microseconds);
//! - else (touched, copied, restored from a backup, written to): it is read again and its
//!   CRC-32C compared with the recorded one ([`file_crc32c`], at disk speed); equal, it is
//!   reused and stamped anew; different, it is fetched again.
//!
//! The trust boundary is the stamp. Any write through the file system changes the
//! status-change time (`ctime`), which no process can set back (unlike the modification time,
//! which `touch -d` or [`std::fs::File::set_modified`] can), so damage made by a program is
//! caught even when it keeps the size and restores the mtime. Not caught: damage that bypasses
//! the file system (media errors, writes to the raw device, a clock set back), and a write
//! within the same timestamp tick (a few milliseconds) as the download. CRC-32C finds accidental
//! damage, not a forgery: whoever can write the work directory can rewrite the manifest too.
//!
//! **Leftovers.** Temporary files are named `.eas-partial-*` and unpacking directories
//! `.eas-extract-*`; whoever writes one holds an exclusive `flock` on it while it lives
//! ([`partial_file`], [`staging_dir`]). A process killed mid-download leaves them behind, its
//! locks released; [`sweep_leftovers`] removes those nobody holds, and the mounts call it
//! when they start.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use eas_core::storage::ObjectInfo;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The manifest file a mount keeps in its target directory.
pub const MANIFEST: &str = ".eas-mount.json";

/// How the names of temporary files begin (see [`partial_file`]).
pub const PARTIAL_PREFIX: &str = ".eas-partial-";

/// How the names of unpacking directories begin (see [`staging_dir`]).
pub const STAGING_PREFIX: &str = ".eas-extract-";

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
    let mut file = partial_file(dir).map_err(|e| Error::io(dir, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Every regular file under `root`, as `/`-separated relative paths with sizes, sorted;
/// the mounts' own bookkeeping files (`.eas-*`) are left out. Symbolic links are listed when
/// they point to a file (links that lead nowhere are left out).
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
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                // A link that leads nowhere (dangling, or a loop) is not a file.
                Err(_) if entry.file_type().is_ok_and(|t| t.is_symlink()) => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
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
    /// The CRC-32C of its content, when it was fetched (`None` in manifests written before
    /// content was recorded: such files are fetched again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<u32>,
    /// The file on disk when its content was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<FileStamp>,
}

/// What `stat` says about a file: unchanged, the file has not been written since (see the
/// [module docs](self) for what this does and does not cover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// The device holding it.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// Its size.
    pub size: u64,
    /// Its modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Its status-change time (any write, rename or change of mode), nanoseconds since the
    /// epoch; processes cannot set it.
    pub ctime_ns: i64,
}

impl FileStamp {
    /// The stamp of `meta`.
    #[must_use]
    pub fn of(meta: &std::fs::Metadata) -> Self {
        let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The stamp of the regular file at `path` (not following a final symbolic link).
    ///
    /// # Errors
    /// When it cannot be read, or is not a regular file.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        Ok(Self::of(&meta))
    }
}

/// Whether a local copy can be reused: [`Manifest::check`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Recorded with this CRC-32C, and unchanged on disk since: reuse it without reading it.
    Trusted(u32),
    /// Recorded, but changed on disk since (or never stamped): reuse it only if its CRC-32C
    /// is still this one (then [`Manifest::restamp`] it).
    Rehash(u32),
    /// Not recorded, another version, the wrong size, or no content record: fetch it.
    Stale,
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

    /// Whether the local copy of `info` (at `path`) is the recorded version, and what must be
    /// done to trust its content: see [`Reuse`] and the [module docs](self). Only `stat`s the
    /// file.
    #[must_use]
    pub fn check(&self, info: &ObjectInfo, path: &Path) -> Reuse {
        let Some(entry) = self.files.get(&info.path) else {
            return Reuse::Stale;
        };
        let (Some(crc), Ok(now)) = (entry.crc32c, FileStamp::read(path)) else {
            return Reuse::Stale;
        };
        if entry.size != info.size || entry.etag != info.etag || now.size != info.size {
            return Reuse::Stale;
        }
        if entry.stamp == Some(now) {
            Reuse::Trusted(crc)
        } else {
            Reuse::Rehash(crc)
        }
    }

    /// [`check`](Self::check), reading the file when its stamp changed: whether it can be
    /// reused. A file found intact is stamped anew (save the manifest to keep that).
    #[must_use]
    pub fn verify(&mut self, info: &ObjectInfo, path: &Path) -> bool {
        match self.check(info, path) {
            Reuse::Trusted(_) => true,
            Reuse::Stale => false,
            Reuse::Rehash(crc) => {
                let intact = file_crc32c(path).is_ok_and(|got| got == crc);
                if intact {
                    self.restamp(info, path, crc);
                }
                intact
            }
        }
    }

    /// Records a complete file of content `crc32c`, now at `path`, and its stamp. A file
    /// that cannot be `stat`ed is recorded without a stamp (its next reuse reads it).
    pub fn record(&mut self, info: &ObjectInfo, crc32c: u32, path: &Path) {
        self.files.insert(
            info.path.clone(),
            ManifestEntry {
                size: info.size,
                etag: info.etag.clone(),
                crc32c: Some(crc32c),
                stamp: FileStamp::read(path).ok(),
            },
        );
    }

    /// Stamps anew a file whose content was found to be the recorded one (`crc32c`); nothing
    /// changes when the record is of another version by now.
    pub fn restamp(&mut self, info: &ObjectInfo, path: &Path, crc32c: u32) {
        if let Some(entry) = self.files.get_mut(&info.path)
            && entry.size == info.size
            && entry.etag == info.etag
            && entry.crc32c == Some(crc32c)
        {
            entry.stamp = FileStamp::read(path).ok();
        }
    }
}

/// The CRC-32C of the file at `path`, read in 1 MiB blocks.
///
/// # Errors
/// When it cannot be read.
pub fn file_crc32c(path: &Path) -> std::io::Result<u32> {
    let mut file = std::fs::File::open(path)?;
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        digest.update(&buffer[..n]);
    }
    // A CRC-32 fits in 32 bits; the library returns it widened to u64.
    Ok(u32::try_from(digest.finalize()).unwrap_or(0))
}

/// A new temporary file in `dir` named `.eas-partial-*`, holding an exclusive `flock` for as
/// long as it is open, so that [`sweep_leftovers`] leaves it alone. Dropping it removes it;
/// `persist` renames it.
///
/// # Errors
/// When it cannot be created or locked.
pub fn partial_file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    for _ in 0..8 {
        let file = tempfile::Builder::new()
            .prefix(PARTIAL_PREFIX)
            .tempfile_in(dir)?;
        file.as_file().lock()?;
        // A sweep may have removed it between its creation and the lock: then make another.
        if is_same_file(file.path(), file.as_file()) {
            return Ok(file);
        }
    }
    Err(std::io::Error::other(
        "temporary files keep being removed as they are made",
    ))
}

/// A new directory in `dir` named `.eas-extract-*` (removed when the `TempDir` is dropped),
/// and the handle that holds its exclusive `flock`: while the handle is open,
/// [`sweep_leftovers`] leaves the directory alone.
///
/// # Errors
/// When it cannot be created or locked.
pub fn staging_dir(dir: &Path) -> std::io::Result<(tempfile::TempDir, std::fs::File)> {
    for _ in 0..8 {
        let staging = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(dir)?;
        let handle = std::fs::File::open(staging.path())?;
        handle.lock()?;
        if is_same_file(staging.path(), &handle) {
            return Ok((staging, handle));
        }
    }
    Err(std::io::Error::other(
        "unpacking directories keep being removed as they are made",
    ))
}

fn is_same_file(path: &Path, handle: &std::fs::File) -> bool {
    match (std::fs::symlink_metadata(path), handle.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes the temporary files (`.eas-partial-*`) and unpacking directories
/// (`.eas-extract-*`) in `dir` (and, when `recursive`, in its subdirectories, not following
/// links) that no live writer holds: what a killed process left. Best effort: what cannot be
/// read or removed is logged and left. Returns how many were removed.
pub fn sweep_leftovers(dir: &Path, recursive: bool) -> usize {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let leftover = (kind.is_file() && name.starts_with(PARTIAL_PREFIX))
                || (kind.is_dir() && name.starts_with(STAGING_PREFIX));
            if leftover {
                match remove_unheld(&path, kind.is_dir()) {
                    Ok(true) => {
                        tracing::info!(path = %path.display(), "removed a leftover of an interrupted download");
                        removed += 1;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "could not remove a leftover of an interrupted download");
                    }
                }
            } else if recursive && kind.is_dir() {
                stack.push(path);
            }
        }
    }
    removed
}

/// Removes `path` when nobody holds its lock; `false` when someone does (or it is gone).
fn remove_unheld(path: &Path, is_dir: bool) -> std::io::Result<bool> {
    let handle = match std::fs::File::open(path) {
        Ok(handle) => handle,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match handle.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    // Holding the lock of what is at `path` now: its writer is gone.
    if !is_same_file(path, &handle) {
        return Ok(false);
    }
    if is_dir {
        std::fs::remove_dir_all(path)?;
    } else {
        std::fs::remove_file(path)?;
    }
    Ok(true)
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
        assert_eq!(
            manifest.check(&info, &path),
            Reuse::Stale,
            "not recorded yet"
        );
        let crc = crate::verify::crc32c(b"1234");
        manifest.record(&info, crc, &path);
        manifest.save(dir.path()).expect("save");
        let manifest = Manifest::load(dir.path(), "s3://b/p/");
        assert_eq!(manifest.check(&info, &path), Reuse::Trusted(crc));
        assert_eq!(
            manifest.check(&info.clone().with_etag("e2"), &path),
            Reuse::Stale
        );
        assert_eq!(
            Manifest::load(dir.path(), "s3://other/").check(&info, &path),
            Reuse::Stale
        );
        assert_eq!(
            list_files(dir.path()).expect("list"),
            vec![ObjectInfo::new("a/f.bin", 4)]
        );
    }

    /// Waits past the file system's timestamp tick, so that a write shows in the stamp.
    fn next_tick() {
        std::thread::sleep(std::time::Duration::from_millis(30));
    }

    fn damage_in_place(path: &Path, at: u64) {
        use std::os::unix::fs::FileExt as _;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open");
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).expect("read");
        file.write_all_at(&[byte[0] ^ 0x55], at).expect("write");
    }

    #[test]
    fn a_file_changed_on_disk_should_be_rehashed_before_reuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.bin");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        write_atomic(&path, &data).expect("write");
        let info = ObjectInfo::new("w.bin", data.len() as u64).with_etag("e1");
        let crc = crate::verify::crc32c(&data);
        let mut manifest = Manifest::load(dir.path(), "s3://b/p/");
        manifest.record(&info, crc, &path);
        assert_eq!(manifest.check(&info, &path), Reuse::Trusted(crc));

        // Touched, content intact: read again, found intact, stamped anew.
        next_tick();
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_modified(std::time::SystemTime::now())
            .expect("touch");
        drop(file);
        assert_eq!(manifest.check(&info, &path), Reuse::Rehash(crc));
        assert!(manifest.verify(&info, &path), "intact");
        assert_eq!(
            manifest.check(&info, &path),
            Reuse::Trusted(crc),
            "stamped anew"
        );

        // One byte damaged in place, size kept: caught.
        next_tick();
        damage_in_place(&path, 5_000);
        assert_eq!(manifest.check(&info, &path), Reuse::Rehash(crc));
        assert!(!manifest.verify(&info, &path), "damage found");

        // Damaged again with the modification time put back: the status-change time still
        // moved, so it is caught too.
        std::fs::write(&path, &data).expect("repair");
        manifest.record(&info, crc, &path);
        let recorded = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        next_tick();
        damage_in_place(&path, 7);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(recorded))
            .expect("restore mtime");
        assert_eq!(manifest.check(&info, &path), Reuse::Rehash(crc));
        assert!(!manifest.verify(&info, &path), "damage found");

        // A manifest from before content was recorded: no CRC, fetched again.
        let mut old = manifest.clone();
        if let Some(entry) = old.files.get_mut("w.bin") {
            entry.crc32c = None;
        }
        assert_eq!(old.check(&info, &path), Reuse::Stale);
    }

    #[test]
    fn leftovers_nobody_holds_should_be_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).expect("dirs");
        // What a killed process leaves: files and a directory with our prefixes, unlocked.
        std::fs::write(dir.path().join(".eas-partial-dead1"), b"x").expect("orphan");
        std::fs::write(nested.join(".eas-partial-dead2"), b"x").expect("orphan");
        std::fs::create_dir_all(dir.path().join(".eas-extract-dead3/m")).expect("orphan dir");
        // Live ones, held by their writers.
        let live = partial_file(dir.path()).expect("live file");
        let (live_dir, _lock) = staging_dir(dir.path()).expect("live dir");
        // Others' files are not ours.
        std::fs::write(dir.path().join("partial-model.bin"), b"x").expect("other");

        assert_eq!(sweep_leftovers(dir.path(), false), 2, "top level only");
        assert!(nested.join(".eas-partial-dead2").exists());
        assert_eq!(sweep_leftovers(dir.path(), true), 1, "then the nested one");
        assert!(live.path().exists() && live_dir.path().exists());
        assert!(dir.path().join("partial-model.bin").exists());
        assert!(!dir.path().join(".eas-partial-dead1").exists());
        assert!(!dir.path().join(".eas-extract-dead3").exists());
    }
}
