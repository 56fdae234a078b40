//! Archives: [`ArchiveMount`] downloads an HTTP(S) archive (or takes a local one) and unpacks
//! it under a directory; [`extract`] unpacks safely.
//!
//! **Safety.** An archive is refused as a whole ([`Error::ArchiveEscape`], naming the entry)
//! when any entry would land outside the target: an absolute path, a `..` component, a
//! symbolic link whose target leaves the directory, a hard link to a path outside it, or an
//! entry under a symbolic link of the archive. Unpacking goes to a fresh temporary directory
//! beside the target, renamed into place only when every entry is written; on any error it is
//! removed, so nothing half-written is left and nothing is written outside the target.
//! Device files and FIFOs are refused too.
//!
//! **Restart reuse.** The target keeps a marker (`.eas-archive.json`) with the archive's URL,
//! size, ETag and Last-Modified; a remount whose `HEAD` answers the same reuses the directory.
//! When the server cannot be reached, the directory is reused with a warning.
//!
//! Archives are fetched whole: [`MountMode::Lazy`] behaves as [`MountMode::Eager`].
//!
//! ```no_run
//! # async fn demo() -> eas_core::Result<()> {
//! use eas_core::StorageMount;
//! use eas_core::storage::MountMode;
//! use eas_storage::ArchiveMount;
//! use eas_storage::location::ArchiveFormat;
//!
//! let url = "https://example.com/models/resnet.tar.gz".parse().expect("a URL");
//! let mount = ArchiveMount::remote(url, ArchiveFormat::TarGz, "/tmp/eas/resnet")?;
//! mount.mount(MountMode::Eager, None).await?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::io::{Read, Write as _};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eas_core::StorageMount;
use eas_core::storage::{MountMode, MountReport, ObjectInfo, Progress};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::local_fs::{join_relative, list_files, write_atomic};
use crate::location::ArchiveFormat;
use crate::progress::Meter;
use crate::{Error, Result};

const MARKER: &str = ".eas-archive.json";

/// Where the archive comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Http(Url),
    File(PathBuf),
}

/// What the target was unpacked from (the restart-reuse marker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    uri: String,
    size: Option<u64>,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// An archive unpacked under a local directory. See the [module docs](self).
#[derive(Debug)]
pub struct ArchiveMount {
    uri: String,
    origin: Origin,
    format: ArchiveFormat,
    target: PathBuf,
    http: reqwest::Client,
}

impl ArchiveMount {
    /// The archive at `url` (HTTP or HTTPS), unpacked at `target`.
    ///
    /// # Errors
    /// [`Error::InvalidUri`] when the HTTP client cannot be built.
    pub fn remote(url: Url, format: ArchiveFormat, target: impl Into<PathBuf>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::invalid(url.as_str(), format!("HTTP client: {e}")))?;
        Ok(Self {
            uri: url.to_string(),
            origin: Origin::Http(url),
            format,
            target: target.into(),
            http,
        })
    }

    /// The archive file `path` on this host, unpacked at `target`.
    ///
    /// # Errors
    /// [`Error::InvalidUri`] when the HTTP client cannot be built.
    pub fn local(
        path: impl Into<PathBuf>,
        format: ArchiveFormat,
        target: impl Into<PathBuf>,
    ) -> Result<Self> {
        let path = path.into();
        Ok(Self {
            uri: path.display().to_string(),
            origin: Origin::File(path),
            format,
            target: target.into(),
            http: reqwest::Client::new(),
        })
    }

    /// What the source says about the archive now (`None`: unreachable).
    async fn current(&self) -> Result<Option<Marker>> {
        match &self.origin {
            Origin::File(path) => {
                let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Error::NotFound {
                        uri: self.uri.clone(),
                        detail: "no such archive file".into(),
                    },
                    _ => Error::io(path, e),
                })?;
                let modified = meta.modified().ok().map(|t| format!("{t:?}"));
                Ok(Some(Marker {
                    uri: self.uri.clone(),
                    size: Some(meta.len()),
                    etag: None,
                    last_modified: modified,
                }))
            }
            Origin::Http(url) => {
                let Ok(response) = self.http.head(url.clone()).send().await else {
                    return Ok(None);
                };
                if !response.status().is_success() {
                    return Ok(None);
                }
                // reqwest's `content_length()` is the body's size hint, 0 for a HEAD answer.
                let size = response
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                Ok(Some(self.marker_of(response.headers(), size)))
            }
        }
    }

    fn marker_of(&self, headers: &reqwest::header::HeaderMap, size: Option<u64>) -> Marker {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Marker {
            uri: self.uri.clone(),
            size,
            etag: text(reqwest::header::ETAG),
            last_modified: text(reqwest::header::LAST_MODIFIED),
        }
    }

    fn stored_marker(&self) -> Option<Marker> {
        let bytes = std::fs::read(self.target.join(MARKER)).ok()?;
        serde_json::from_slice::<Marker>(&bytes)
            .ok()
            .filter(|m| m.uri == self.uri)
    }

    /// Downloads the archive into a temporary file in `dir`; checks its length.
    async fn download(
        &self,
        url: &Url,
        dir: &Path,
        meter: &mut Meter<'_>,
    ) -> Result<(tempfile::NamedTempFile, Marker)> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| Error::Remote {
                uri: self.uri.clone(),
                reason: format!("request failed: {e}"),
                source: Some(Box::new(e)),
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::NotFound {
                uri: self.uri.clone(),
                detail: "HTTP 404".into(),
            });
        }
        if matches!(status.as_u16(), 401 | 403) {
            return Err(Error::CredentialsRefused {
                uri: self.uri.clone(),
                reason: format!("HTTP {status}"),
            });
        }
        if !status.is_success() {
            return Err(Error::Remote {
                uri: self.uri.clone(),
                reason: format!("HTTP {status}"),
                source: None,
            });
        }
        let expected = response.content_length();
        let marker = self.marker_of(response.headers(), expected);
        *meter = Meter::new(meter.receiver(), expected);
        let mut file = tempfile::Builder::new()
            .prefix(".eas-partial-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let mut got = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| match expected {
                Some(expected) => Error::Truncated {
                    uri: self.uri.clone(),
                    expected,
                    got,
                },
                None => Error::Remote {
                    uri: self.uri.clone(),
                    reason: format!("download failed: {e}"),
                    source: Some(Box::new(e)),
                },
            })?;
            got += chunk.len() as u64;
            file.write_all(&chunk)
                .map_err(|e| Error::io(file.path(), e))?;
            meter.advance(&self.uri, chunk.len() as u64, false);
        }
        if let Some(expected) = expected {
            crate::verify::check_size(&self.uri, expected, got)?;
        }
        meter.advance(&self.uri, 0, true);
        Ok((
            file,
            Marker {
                size: Some(got),
                ..marker
            },
        ))
    }

    async fn mount_inner(&self, progress: Option<&dyn Progress>) -> Result<MountReport> {
        let start = Instant::now();
        let stored = self.stored_marker();
        if let Some(stored) = &stored {
            match self.current().await? {
                Some(now) if &now == stored => return self.report(start, 0, true),
                None if self.target.is_dir() => {
                    tracing::warn!(
                        uri = self.uri,
                        "archive source unreachable; reusing the unpacked copy"
                    );
                    return self.report(start, 0, true);
                }
                _ => {}
            }
        }
        let parent = self
            .target
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".eas-extract-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        let mut meter = Meter::new(progress, None);
        let (archive_path, _download, marker) = match &self.origin {
            Origin::Http(url) => {
                let (file, marker) = self.download(url, &parent, &mut meter).await?;
                (file.path().to_path_buf(), Some(file), marker)
            }
            Origin::File(path) => {
                let marker = self.current().await?.ok_or_else(|| Error::NotFound {
                    uri: self.uri.clone(),
                    detail: String::new(),
                })?;
                (path.clone(), None, marker)
            }
        };
        let (format, name, dest) = (self.format, self.uri.clone(), staging.path().to_path_buf());
        tokio::task::spawn_blocking(move || extract(&archive_path, format, &name, &dest))
            .await
            .map_err(|e| Error::io(staging.path(), std::io::Error::other(e)))??;
        let marker_bytes = serde_json::to_vec_pretty(&marker)
            .map_err(|e| Error::io(MARKER, std::io::Error::other(e)))?;
        write_atomic(&staging.path().join(MARKER), &marker_bytes)?;
        if self.target.exists() {
            std::fs::remove_dir_all(&self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, &self.target).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            Error::io(&self.target, e)
        })?;
        self.report(start, meter.done(), false)
    }

    fn report(&self, start: Instant, fetched: u64, reused: bool) -> Result<MountReport> {
        let files = list_files(&self.target)?;
        Ok(MountReport {
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
            reused_files: if reused { files.len() as u64 } else { 0 },
            fetched_bytes: fetched,
            elapsed: start.elapsed(),
        })
    }

    async fn ensure_mounted(&self) -> Result<()> {
        if self.stored_marker().is_none() {
            self.mount_inner(None).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl StorageMount for ArchiveMount {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn target(&self) -> &Path {
        &self.target
    }

    async fn mount(
        &self,
        _mode: MountMode,
        progress: Option<&dyn Progress>,
    ) -> eas_core::Result<MountReport> {
        Ok(self.mount_inner(progress).await?)
    }

    async fn read(&self, relative: &str) -> eas_core::Result<Bytes> {
        self.ensure_mounted().await?;
        let path = join_relative(&self.uri, &self.target, relative)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                uri: self.uri.clone(),
                detail: format!("`{relative}` is not in the archive"),
            }
            .into()),
            Err(e) => Err(Error::io(path, e).into()),
        }
    }

    async fn list(&self) -> eas_core::Result<Vec<ObjectInfo>> {
        self.ensure_mounted().await?;
        Ok(list_files(&self.target)?)
    }
}

/// Unpacks the archive file `archive` (of `format`) into the existing, empty directory `dest`,
/// refusing any entry that would escape it. `name` is how errors name the archive. Returns
/// the number of entries written.
///
/// On error, `dest` may hold part of the archive: callers unpack into a temporary directory
/// and drop it (as [`ArchiveMount`] does).
///
/// # Errors
/// [`Error::ArchiveEscape`] naming the first escaping entry, [`Error::BadArchive`] for a
/// corrupted archive or an unsupported entry, [`Error::Io`] when `dest` cannot be written.
pub fn extract(archive: &Path, format: ArchiveFormat, name: &str, dest: &Path) -> Result<u64> {
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let file = std::io::BufReader::new(file);
    let mut unpacker = Unpacker {
        name,
        dest,
        links: HashSet::new(),
        count: 0,
    };
    match format {
        ArchiveFormat::Tar => unpacker.tar(file)?,
        ArchiveFormat::TarGz => unpacker.tar(flate2::bufread::GzDecoder::new(file))?,
        ArchiveFormat::TarBz2 => unpacker.tar(bzip2::bufread::BzDecoder::new(file))?,
        ArchiveFormat::Zip => unpacker.zip(file)?,
    }
    Ok(unpacker.count)
}

struct Unpacker<'a> {
    name: &'a str,
    dest: &'a Path,
    /// Symbolic links written so far (relative paths): nothing may be written under them.
    links: HashSet<PathBuf>,
    count: u64,
}

impl Unpacker<'_> {
    fn escape(&self, entry: &str) -> Error {
        Error::ArchiveEscape {
            archive: self.name.to_owned(),
            entry: entry.to_owned(),
        }
    }

    fn bad(&self, reason: impl std::fmt::Display) -> Error {
        Error::BadArchive {
            archive: self.name.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// The entry's path inside the target, refusing escapes (including through links).
    fn place(&self, raw: &str) -> Result<PathBuf> {
        let rel = plain_relative(raw).ok_or_else(|| self.escape(raw))?;
        if rel.ancestors().skip(1).any(|a| self.links.contains(a)) {
            return Err(self.escape(raw));
        }
        Ok(rel)
    }

    fn tar(&mut self, reader: impl Read) -> Result<()> {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(|e| self.bad(e))? {
            let mut entry = entry.map_err(|e| self.bad(e))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let rel = self.place(&raw)?;
            let kind = entry.header().entry_type();
            let mode = entry.header().mode().unwrap_or(0o644);
            if kind.is_dir() {
                self.dir(&rel)?;
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                let mut file = self.create(&raw, &rel)?;
                std::io::copy(&mut entry, &mut file)
                    .map_err(|e| self.bad(format!("entry `{raw}`: {e}")))?;
                set_mode(&self.dest.join(&rel), mode)?;
            } else if kind.is_symlink() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.bad(format!("link `{raw}` has no target")))?;
                self.symlink(&raw, &rel, &String::from_utf8_lossy(&target))?;
            } else if kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.bad(format!("link `{raw}` has no target")))?;
                let target = String::from_utf8_lossy(&target).into_owned();
                let source = self.place(&target).map_err(|_| self.escape(&raw))?;
                self.create(&raw, &rel)?;
                let (from, to) = (self.dest.join(&source), self.dest.join(&rel));
                std::fs::remove_file(&to).map_err(|e| Error::io(&to, e))?;
                std::fs::hard_link(&from, &to)
                    .map_err(|e| self.bad(format!("hard link `{raw}` -> `{target}`: {e}")))?;
            } else if kind.is_pax_global_extensions()
                || kind.is_pax_local_extensions()
                || kind.is_gnu_longname()
                || kind.is_gnu_longlink()
            {
                continue;
            } else {
                return Err(self.bad(format!("entry `{raw}`: unsupported type {kind:?}")));
            }
            self.count += 1;
        }
        Ok(())
    }

    fn zip(&mut self, reader: impl Read + std::io::Seek) -> Result<()> {
        let mut archive = zip::ZipArchive::new(reader).map_err(|e| self.bad(e))?;
        for index in 0..archive.len() {
            let mut file = archive.by_index(index).map_err(|e| self.bad(e))?;
            let raw = file.name().map_err(|e| self.bad(e))?.into_owned();
            let rel = self.place(&raw)?;
            if file.is_dir() {
                self.dir(&rel)?;
            } else if file.is_symlink() {
                let mut target = String::new();
                file.read_to_string(&mut target)
                    .map_err(|e| self.bad(format!("link `{raw}`: {e}")))?;
                self.symlink(&raw, &rel, &target)?;
            } else {
                let mut out = self.create(&raw, &rel)?;
                std::io::copy(&mut file, &mut out)
                    .map_err(|e| self.bad(format!("entry `{raw}`: {e}")))?;
                if let Some(mode) = file.unix_mode() {
                    set_mode(&self.dest.join(&rel), mode)?;
                }
            }
            self.count += 1;
        }
        Ok(())
    }

    fn dir(&self, rel: &Path) -> Result<()> {
        let path = self.dest.join(rel);
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))
    }

    /// A new regular file at `rel` (an existing regular file of the same name is replaced;
    /// a link or directory there is refused).
    fn create(&self, raw: &str, rel: &Path) -> Result<std::fs::File> {
        let path = self.dest.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?
            }
            Ok(_) => {
                return Err(self.bad(format!("entry `{raw}` would replace a directory or link")));
            }
            Err(_) => {}
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))
    }

    fn symlink(&mut self, raw: &str, rel: &Path, target: &str) -> Result<()> {
        if !link_stays_inside(rel, target) {
            return Err(self.escape(raw));
        }
        let path = self.dest.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(self.bad(format!("link `{raw}` would replace an existing entry")));
        }
        std::os::unix::fs::symlink(target, &path).map_err(|e| Error::io(&path, e))?;
        self.links.insert(rel.to_path_buf());
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(path, e))
}

/// `raw` as a relative path of plain names (`.` and empty parts dropped), or `None` when it is
/// absolute or has a `..`.
fn plain_relative(raw: &str) -> Option<PathBuf> {
    if raw.starts_with('/') || raw.contains('\0') {
        return None;
    }
    let mut rel = PathBuf::new();
    for part in raw.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return None,
            name => rel.push(name),
        }
    }
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(rel)
}

/// Whether a link at `rel` pointing to `target` resolves inside the root, read lexically
/// (sound because nothing is ever written under a link: see [`Unpacker::place`]).
fn link_stays_inside(rel: &Path, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return false;
    }
    let mut depth: Vec<&str> = rel
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| c.as_os_str().to_str())
                .collect()
        })
        .unwrap_or_default();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            name => depth.push(name),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_should_be_plain_relative_names() {
        assert_eq!(plain_relative("./a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(plain_relative("a//b/"), Some(PathBuf::from("a/b")));
        assert_eq!(plain_relative("./"), Some(PathBuf::new()));
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", "a\\..\\x"] {
            assert_eq!(plain_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn links_should_resolve_inside_the_root() {
        let at = |p: &str| PathBuf::from(p);
        assert!(link_stays_inside(&at("a/l"), "b"));
        assert!(link_stays_inside(&at("a/l"), "../b"));
        assert!(!link_stays_inside(&at("a/l"), "../../b"));
        assert!(!link_stays_inside(&at("l"), ".."));
        assert!(!link_stays_inside(&at("l"), "/etc"));
        assert!(link_stays_inside(&at("a/b/l"), "../../c/./d"));
    }
}
