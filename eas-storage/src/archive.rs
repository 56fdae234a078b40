//! Archives: [`ArchiveMount`] downloads an HTTP(S) archive (or takes a local one) and unpacks
//! it under a directory; [`extract`] unpacks safely.
//!
//! **Safety.** An archive is refused as a whole ([`Error::ArchiveEscape`], naming the entry)
//! when any entry would land outside the target: an absolute path, a `..` component, a
//! symbolic link that resolves outside the directory, a hard link to a path outside it, or an
//! entry under a symbolic link of the archive. Unpacking goes to a fresh temporary directory
//! beside the target, renamed into place only when every entry is written; on any error it is
//! removed, so nothing half-written is left and nothing is written outside the target.
//! Device files and FIFOs are refused too, and so is a hard link to anything but a regular
//! file of the archive.
//!
//! **Symbolic links** are created last, once every other entry is written, so no write ever
//! goes through one. Before any is created, each is resolved as the kernel would, against
//! all the archive's links: its target is walked from the link's directory, and a component
//! that is another link of the archive is replaced by where that link resolves (links to
//! links, and paths through links, are followed). A link is refused when the walk leaves the
//! target at any point (a `..` above it, an absolute target), even if a later step would come
//! back in: `a -> .`, `up -> a/..` is refused at `up`, whatever is built on it. A link the
//! kernel could not follow (a loop, more than 40 links deep) is kept: it leads nowhere. A
//! link's target may not be longer than 4,095 bytes.
//!
//! **Limits** ([`UnpackLimits`]): the total size of the files written, their size against the
//! archive's (the expansion ratio), and the number of entries are bounded; crossing one
//! refuses the archive ([`Error::ArchiveLimit`], naming the limit and the entry) and leaves
//! nothing behind. A download larger than the most the archive may unpack to is refused too,
//! and so are tar headers (long names, PAX records) over 1 MiB for one entry, or over 1 MiB
//! plus 8 KiB per entry in all, so memory stays bounded whatever the archive holds.
//!
//! **Leftovers.** A mount starts by removing, beside its target, the temporary archive files
//! (`.eas-partial-*`) and unpacking directories (`.eas-extract-*`) that a killed process left
//! (live ones are locked by their writer: see [`sweep_leftovers`]).
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

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{Read, Write as _};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eas_core::StorageMount;
use eas_core::storage::{MountMode, MountReport, ObjectInfo, Progress};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::local_fs::{
    join_relative, list_files, partial_file, staging_dir, sweep_leftovers, write_atomic,
};
use crate::location::ArchiveFormat;
use crate::progress::Meter;
use crate::{Error, Result};

const MARKER: &str = ".eas-archive.json";

/// Tar headers (long names, PAX records, padding) one entry may take.
const HEADERS_PER_ENTRY: u64 = 1 << 20;
/// Tar headers all entries may take together: this much...
const HEADERS_BASE: u64 = 1 << 20;
/// ...plus this much per entry.
const HEADERS_AVERAGE: u64 = 8 << 10;
/// The longest target a symbolic link may have (`PATH_MAX` less its NUL).
const MAX_LINK_TARGET: usize = 4095;
/// The most links the kernel follows to resolve one path (`MAXSYMLINKS`).
const MAX_LINK_HOPS: u32 = 40;

/// How large an archive may unpack: [`ArchiveMount::with_unpack_limits`],
/// [`ResolveOptions::with_unpack_limits`](crate::resolve::ResolveOptions::with_unpack_limits)
/// and [`extract_with`]. Crossing a limit refuses the archive ([`Error::ArchiveLimit`]).
///
/// The defaults fit real models and refuse bombs:
/// - [`max_bytes`](Self::max_bytes), 256 GiB: the largest models served from one host (a
///   70B-parameter model in 16 bits is 140 GB) fit with room to spare; past it an archive
///   is filling the disk, not delivering a model.
/// - [`max_ratio`](Self::max_ratio), 100: model weights (16-bit or quantized floats) barely
///   compress (1.1 to 1.5 : 1) and text assets (vocabularies, configs) reach 10 : 1, so a
///   whole archive that unpacks to more than 100 times its size is runs of one byte: a
///   bomb (deflate manages 1,030 : 1 on zeros, bzip2 far more). With it a 1 MB archive
///   unpacks to at most 100 MB.
/// - [`max_entries`](Self::max_entries), 100,000: model repositories hold tens to thousands
///   of files; the bound keeps an archive of empty files from exhausting inodes and time.
///
/// The archive itself may be at most `max_bytes` plus its headers' allowance
/// (1 MiB + 8 KiB per entry) long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackLimits {
    /// The most bytes the files of the archive may hold together. Default 256 GiB.
    pub max_bytes: u64,
    /// The most bytes unpacked per byte of archive (the whole archive, compressed as it
    /// came). Default 100.
    pub max_ratio: u64,
    /// The most entries (files, directories, links) the archive may have. Default 100,000.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 30,
            max_ratio: 100,
            max_entries: 100_000,
        }
    }
}

impl UnpackLimits {
    /// The defaults with another total size and expansion ratio (at least 1).
    #[must_use]
    pub fn new(max_bytes: u64, max_ratio: u64) -> Self {
        Self::default()
            .with_max_bytes(max_bytes)
            .with_max_ratio(max_ratio)
    }

    /// The same with another total size.
    #[must_use]
    pub const fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The same with another expansion ratio (at least 1).
    #[must_use]
    pub fn with_max_ratio(mut self, max_ratio: u64) -> Self {
        self.max_ratio = max_ratio.max(1);
        self
    }

    /// The same with another number of entries.
    #[must_use]
    pub const fn with_max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// The longest archive these limits let through.
    fn max_archive_bytes(&self) -> u64 {
        self.max_bytes
            .saturating_add(HEADERS_BASE)
            .saturating_add(HEADERS_AVERAGE.saturating_mul(self.max_entries))
    }

    /// What an archive of `archive_len` bytes may unpack to, and how to name that limit.
    fn content_budget(&self, archive_len: u64) -> (u64, String) {
        let by_ratio = archive_len.saturating_mul(self.max_ratio.max(1));
        if by_ratio < self.max_bytes {
            (
                by_ratio,
                format!(
                    "it unpacks to more than {} times its {archive_len} bytes \
                     (UnpackLimits::max_ratio: {by_ratio} bytes)",
                    self.max_ratio.max(1)
                ),
            )
        } else {
            (
                self.max_bytes,
                format!(
                    "it unpacks to more than {} bytes (UnpackLimits::max_bytes)",
                    self.max_bytes
                ),
            )
        }
    }
}

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
    limits: UnpackLimits,
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
            limits: UnpackLimits::default(),
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
            limits: UnpackLimits::default(),
        })
    }

    /// The same with other limits on what the archive may unpack to (default
    /// [`UnpackLimits::default`]).
    #[must_use]
    pub const fn with_unpack_limits(mut self, limits: UnpackLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits on what the archive may unpack to.
    #[must_use]
    pub const fn unpack_limits(&self) -> UnpackLimits {
        self.limits
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
        let most = self.limits.max_archive_bytes();
        let too_large = |size: u64| Error::ArchiveLimit {
            archive: self.uri.clone(),
            entry: String::new(),
            limit: format!(
                "the archive is larger than the {most} bytes its limits allow \
                 ({size} bytes; UnpackLimits::max_bytes plus headers)"
            ),
        };
        if let Some(size) = expected.filter(|&size| size > most) {
            return Err(too_large(size));
        }
        let marker = self.marker_of(response.headers(), expected);
        *meter = Meter::new(meter.receiver(), expected);
        let mut file = partial_file(dir).map_err(|e| Error::io(dir, e))?;
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
            if got > most {
                return Err(too_large(got));
            }
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
        if let Some(parent) = self.target.parent().filter(|p| p.is_dir()) {
            sweep_leftovers(parent, false);
        }
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
        // Locked while it lives, so that another mount's sweep leaves it alone.
        let (staging, _staging_lock) = staging_dir(&parent).map_err(|e| Error::io(&parent, e))?;
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
        let limits = self.limits;
        tokio::task::spawn_blocking(move || {
            extract_with(&archive_path, format, &name, &dest, &limits)
        })
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
/// refusing any entry that would escape it, within the default [`UnpackLimits`]. `name` is how
/// errors name the archive. Returns the number of entries written.
///
/// On error, `dest` may hold part of the archive: callers unpack into a temporary directory
/// and drop it (as [`ArchiveMount`] does).
///
/// # Errors
/// As [`extract_with`].
pub fn extract(archive: &Path, format: ArchiveFormat, name: &str, dest: &Path) -> Result<u64> {
    extract_with(archive, format, name, dest, &UnpackLimits::default())
}

/// [`extract`] within `limits`.
///
/// # Errors
/// [`Error::ArchiveEscape`] naming the first escaping entry, [`Error::ArchiveLimit`] naming
/// the limit crossed and the entry where it was, [`Error::BadArchive`] for a corrupted archive
/// or an unsupported entry, [`Error::Io`] when `dest` cannot be written.
pub fn extract_with(
    archive: &Path,
    format: ArchiveFormat,
    name: &str,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<u64> {
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let archive_len = file.metadata().map_err(|e| Error::io(archive, e))?.len();
    let (budget, budget_limit) = limits.content_budget(archive_len);
    let file = std::io::BufReader::new(file);
    let mut unpacker = Unpacker {
        name,
        dest,
        limits: *limits,
        budget,
        budget_limit,
        links: Links::new(),
        written: 0,
        seen: 0,
        count: 0,
        buffer: vec![0; 64 << 10],
    };
    match format {
        ArchiveFormat::Tar => unpacker.tar(file)?,
        ArchiveFormat::TarGz => unpacker.tar(flate2::bufread::GzDecoder::new(file))?,
        ArchiveFormat::TarBz2 => unpacker.tar(bzip2::bufread::BzDecoder::new(file))?,
        ArchiveFormat::Zip => unpacker.zip(file)?,
    }
    unpacker.finish_links()?;
    Ok(unpacker.count)
}

struct Unpacker<'a> {
    name: &'a str,
    dest: &'a Path,
    limits: UnpackLimits,
    /// The most content bytes the archive may unpack to...
    budget: u64,
    /// ...and how to name that limit.
    budget_limit: String,
    /// Symbolic links seen so far, created at the end: nothing may be written under them.
    links: Links,
    /// Content bytes written.
    written: u64,
    /// Entries seen.
    seen: u64,
    /// Entries written.
    count: u64,
    buffer: Vec<u8>,
}

/// Counts what the tar reader takes from the decompressed stream and stops it at a limit (the
/// headers' allowance), so that a huge long name or PAX record is never held in memory.
#[derive(Debug, Default)]
struct Gate {
    read: Cell<u64>,
    limit: Cell<u64>,
    tripped: Cell<bool>,
}

struct Gated<R> {
    inner: R,
    gate: Rc<Gate>,
}

impl<R: Read> Read for Gated<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = self.gate.limit.get().saturating_sub(self.gate.read.get());
        if room == 0 && !buf.is_empty() {
            self.gate.tripped.set(true);
            return Err(std::io::Error::other("tar headers over their allowance"));
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.gate.read.set(self.gate.read.get() + n as u64);
        Ok(n)
    }
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

    fn limit(&self, entry: &str, limit: impl Into<String>) -> Error {
        Error::ArchiveLimit {
            archive: self.name.to_owned(),
            entry: entry.to_owned(),
            limit: limit.into(),
        }
    }

    /// Counts one more entry, refusing it past [`UnpackLimits::max_entries`].
    fn admit(&mut self, raw: &str) -> Result<()> {
        if self.seen >= self.limits.max_entries {
            return Err(self.limit(
                raw,
                format!(
                    "it has more than {} entries (UnpackLimits::max_entries)",
                    self.limits.max_entries
                ),
            ));
        }
        self.seen += 1;
        Ok(())
    }

    /// The entry's path inside the target, refusing escapes (including through links) and
    /// entries that would replace a link of the archive.
    fn place(&self, raw: &str) -> Result<PathBuf> {
        let rel = plain_relative(raw).ok_or_else(|| self.escape(raw))?;
        if self.links.under_link(&rel) {
            return Err(self.escape(raw));
        }
        if self.links.is_link(&rel) {
            return Err(self.bad(format!("entry `{raw}` would replace a link")));
        }
        Ok(rel)
    }

    fn tar(&mut self, reader: impl Read) -> Result<()> {
        let gate = Rc::new(Gate::default());
        let reader = Gated {
            inner: reader,
            gate: Rc::clone(&gate),
        };
        let mut archive = tar::Archive::new(reader);
        let mut entries = archive.entries().map_err(|e| self.bad(e))?;
        let mut last = String::new();
        loop {
            // The next entry's headers, and what is left of this one's: bounded.
            let read = gate.read.get();
            let overall = self
                .written
                .saturating_add(HEADERS_BASE)
                .saturating_add(HEADERS_AVERAGE.saturating_mul(self.seen + 1));
            let room = overall.saturating_sub(read).min(HEADERS_PER_ENTRY);
            gate.limit.set(read.saturating_add(room));
            let Some(entry) = entries.next() else {
                break;
            };
            let mut entry = entry.map_err(|e| {
                if gate.tripped.get() {
                    let after = if last.is_empty() {
                        "the first entry".to_owned()
                    } else {
                        format!("the entry after `{last}`")
                    };
                    self.limit(
                        "",
                        format!(
                            "the tar headers of {after} take more than {HEADERS_PER_ENTRY} \
                             bytes, or more than {HEADERS_BASE} plus {HEADERS_AVERAGE} per \
                             entry in all"
                        ),
                    )
                } else {
                    self.bad(e)
                }
            })?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            self.admit(&raw)?;
            let kind = entry.header().entry_type();
            if kind.is_pax_global_extensions()
                || kind.is_pax_local_extensions()
                || kind.is_gnu_longname()
                || kind.is_gnu_longlink()
            {
                continue;
            }
            let rel = self.place(&raw)?;
            let mode = entry.header().mode().unwrap_or(0o644);
            if kind.is_dir() {
                self.dir(&rel)?;
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                // Content is bounded by the budget, not by the headers' allowance.
                gate.limit.set(u64::MAX);
                self.file(&raw, &rel, &mut entry)?;
                set_mode(&self.dest.join(&rel), mode)?;
            } else if kind.is_symlink() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.bad(format!("link `{raw}` has no target")))?;
                self.symlink(&raw, rel, &String::from_utf8_lossy(&target))?;
            } else if kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.bad(format!("link `{raw}` has no target")))?;
                let target = String::from_utf8_lossy(&target).into_owned();
                self.hard_link(&raw, &rel, &target)?;
            } else {
                return Err(self.bad(format!("entry `{raw}`: unsupported type {kind:?}")));
            }
            self.count += 1;
            last = raw;
        }
        Ok(())
    }

    fn zip(&mut self, mut reader: impl Read + std::io::Seek) -> Result<()> {
        // The zip reader holds the whole central directory in memory: count its entries from
        // the end record first, so a directory of millions of empty entries costs nothing.
        if let Some(entries) = zip_entry_count(&mut reader).map_err(|e| self.bad(e))?
            && entries > self.limits.max_entries
        {
            return Err(self.limit(
                "(central directory)",
                format!(
                    "it has {entries} entries, more than {} (UnpackLimits::max_entries)",
                    self.limits.max_entries
                ),
            ));
        }
        let mut archive = zip::ZipArchive::new(reader).map_err(|e| self.bad(e))?;
        for index in 0..archive.len() {
            let mut file = archive.by_index(index).map_err(|e| self.bad(e))?;
            let raw = file.name().map_err(|e| self.bad(e))?.into_owned();
            self.admit(&raw)?;
            let rel = self.place(&raw)?;
            if file.is_dir() {
                self.dir(&rel)?;
            } else if file.is_symlink() {
                let mut target = String::new();
                (&mut file)
                    .take(MAX_LINK_TARGET as u64 + 1)
                    .read_to_string(&mut target)
                    .map_err(|e| self.bad(format!("link `{raw}`: {e}")))?;
                self.symlink(&raw, rel, &target)?;
            } else {
                self.file(&raw, &rel, &mut file)?;
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

    /// A regular file at `rel` with the content `reader` gives, counted against the budget.
    fn file(&mut self, raw: &str, rel: &Path, reader: &mut dyn Read) -> Result<()> {
        let mut out = self.create(raw, rel)?;
        let mut buffer = std::mem::take(&mut self.buffer);
        let copied = loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(self.bad(format!("entry `{raw}`: {e}"))),
            };
            self.written += n as u64;
            if self.written > self.budget {
                break Err(self.limit(raw, self.budget_limit.clone()));
            }
            if let Err(e) = out.write_all(&buffer[..n]) {
                break Err(Error::io(self.dest.join(rel), e));
            }
        };
        self.buffer = buffer;
        copied
    }

    /// A new regular file at `rel` (an existing regular file of the same name is replaced;
    /// a directory there is refused).
    fn create(&self, raw: &str, rel: &Path) -> Result<std::fs::File> {
        let path = self.dest.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
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

    /// A hard link at `rel` to the archive's regular file `target`.
    fn hard_link(&self, raw: &str, rel: &Path, target: &str) -> Result<()> {
        let source = self.place(target).map_err(|_| self.escape(raw))?;
        let from = self.dest.join(&source);
        // Only to a regular file: a hard link to a symbolic link would be a copy of it that
        // resolves from another directory.
        if !std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_file()) {
            return Err(self.bad(format!(
                "hard link `{raw}` -> `{target}`: not a regular file of the archive"
            )));
        }
        self.create(raw, rel)?;
        let to = self.dest.join(rel);
        std::fs::remove_file(&to).map_err(|e| Error::io(&to, e))?;
        std::fs::hard_link(&from, &to)
            .map_err(|e| self.bad(format!("hard link `{raw}` -> `{target}`: {e}")))
    }

    /// Records the symbolic link `rel` -> `target`, created by [`finish_links`](Self::finish_links).
    fn symlink(&mut self, raw: &str, rel: PathBuf, target: &str) -> Result<()> {
        if target.len() > MAX_LINK_TARGET {
            return Err(self.bad(format!(
                "link `{raw}`: target longer than {MAX_LINK_TARGET} bytes"
            )));
        }
        if target.is_empty() || target.starts_with('/') {
            return Err(self.escape(raw));
        }
        let path = self.dest.join(&rel);
        if rel.as_os_str().is_empty() || std::fs::symlink_metadata(&path).is_ok() {
            return Err(self.bad(format!("link `{raw}` would replace an existing entry")));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        self.links.insert(raw, rel, target);
        Ok(())
    }

    /// Resolves every link of the archive against all of them, refusing the archive at the
    /// first (in archive order) that leaves the target; then creates them.
    fn finish_links(&self) -> Result<()> {
        if let Some(raw) = self.links.first_escape() {
            return Err(self.escape(raw));
        }
        for (_, rel, target) in self.links.iter() {
            let path = self.dest.join(rel);
            std::os::unix::fs::symlink(target, &path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}

/// The archive's symbolic links, as a tree of their paths (node 0 is the target's root;
/// inner nodes are directories, leaves the links).
struct Links {
    nodes: Vec<LinkNode>,
    /// The links in archive order: the entry as written and its node.
    order: Vec<(String, usize)>,
}

struct LinkNode {
    parent: usize,
    name: String,
    children: HashMap<String, usize>,
    /// The link's target, for a link.
    target: Option<String>,
}

/// Where a walk stands: the node of the tree, then `extra` names below it that are not in
/// the tree (so no link is at or under them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spot {
    node: usize,
    extra: usize,
}

/// Where a link resolves.
enum Walk {
    Inside(Spot),
    Escapes,
    /// The kernel could not resolve it (a loop, or too many links): it leads nowhere.
    Nowhere,
}

const ROOT: usize = 0;

impl Links {
    fn new() -> Self {
        Self {
            nodes: vec![LinkNode {
                parent: ROOT,
                name: String::new(),
                children: HashMap::new(),
                target: None,
            }],
            order: Vec::new(),
        }
    }

    fn names(rel: &Path) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        rel.components().map(|c| c.as_os_str().to_string_lossy())
    }

    fn find(&self, rel: &Path) -> Option<usize> {
        let mut node = ROOT;
        for name in Self::names(rel) {
            node = *self.nodes[node].children.get(name.as_ref())?;
        }
        Some(node)
    }

    fn is_link(&self, rel: &Path) -> bool {
        self.find(rel)
            .is_some_and(|n| self.nodes[n].target.is_some())
    }

    /// Whether a proper ancestor of `rel` is a link.
    fn under_link(&self, rel: &Path) -> bool {
        let mut node = ROOT;
        let names: Vec<_> = Self::names(rel).collect();
        for name in names.iter().take(names.len().saturating_sub(1)) {
            match self.nodes[node].children.get(name.as_ref()) {
                Some(&child) if self.nodes[child].target.is_some() => return true,
                Some(&child) => node = child,
                None => return false,
            }
        }
        false
    }

    fn insert(&mut self, raw: &str, rel: PathBuf, target: &str) {
        let mut node = ROOT;
        for name in Self::names(&rel) {
            node = match self.nodes[node].children.get(name.as_ref()) {
                Some(&child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(LinkNode {
                        parent: node,
                        name: name.clone().into_owned(),
                        children: HashMap::new(),
                        target: None,
                    });
                    self.nodes[node].children.insert(name.into_owned(), child);
                    child
                }
            };
        }
        self.nodes[node].target = Some(target.to_owned());
        self.order.push((raw.to_owned(), node));
    }

    /// The links in archive order: entry, relative path, target.
    fn iter(&self) -> impl Iterator<Item = (&str, PathBuf, &str)> {
        self.order.iter().filter_map(|(raw, node)| {
            let target = self.nodes[*node].target.as_deref()?;
            Some((raw.as_str(), self.path(*node), target))
        })
    }

    fn path(&self, mut node: usize) -> PathBuf {
        let mut names = Vec::new();
        while node != ROOT {
            names.push(self.nodes[node].name.as_str());
            node = self.nodes[node].parent;
        }
        names.iter().rev().collect()
    }

    /// The first link, in archive order, whose resolution leaves the root.
    fn first_escape(&self) -> Option<&str> {
        let mut resolved = HashMap::new();
        self.order.iter().find_map(|(raw, node)| {
            let mut hops = MAX_LINK_HOPS;
            matches!(self.follow(*node, &mut resolved, &mut hops), Walk::Escapes)
                .then_some(raw.as_str())
        })
    }

    /// Where the link `link` resolves, as the kernel walks it: from the link's directory,
    /// each component of its target in turn, a link of the archive replaced by where it
    /// resolves. `resolved` remembers the links resolved so far (where a link resolves does
    /// not depend on how it was reached); `hops` is how many more links may be followed.
    fn follow(&self, link: usize, resolved: &mut HashMap<usize, Spot>, hops: &mut u32) -> Walk {
        if let Some(spot) = resolved.get(&link) {
            return Walk::Inside(*spot);
        }
        let Some(target) = self.nodes[link].target.as_deref() else {
            return Walk::Inside(Spot {
                node: link,
                extra: 0,
            });
        };
        if *hops == 0 {
            return Walk::Nowhere;
        }
        *hops -= 1;
        if target.starts_with('/') {
            return Walk::Escapes;
        }
        let mut at = Spot {
            node: self.nodes[link].parent,
            extra: 0,
        };
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." if at.extra > 0 => at.extra -= 1,
                ".." if at.node == ROOT => return Walk::Escapes,
                ".." => at.node = self.nodes[at.node].parent,
                _ if at.extra > 0 => at.extra += 1,
                name => match self.nodes[at.node].children.get(name) {
                    None => at.extra = 1,
                    Some(&child) if self.nodes[child].target.is_some() => {
                        match self.follow(child, resolved, hops) {
                            Walk::Inside(spot) => at = spot,
                            other => return other,
                        }
                    }
                    Some(&child) => at.node = child,
                },
            }
        }
        resolved.insert(link, at);
        Walk::Inside(at)
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

/// The number of entries a zip's end-of-central-directory record declares (its zip64 record's
/// when the 16-bit field is full), read from the last 64 KiB; `None` when there is no such
/// record (the zip reader then says what is wrong). Leaves the reader at its start.
fn zip_entry_count(reader: &mut (impl Read + std::io::Seek)) -> std::io::Result<Option<u64>> {
    use std::io::SeekFrom;
    const EOCD: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const ZIP64_LOCATOR: [u8; 4] = [0x50, 0x4b, 0x06, 0x07];
    const ZIP64_EOCD: [u8; 4] = [0x50, 0x4b, 0x06, 0x06];
    let size = reader.seek(SeekFrom::End(0))?;
    let tail_len = size.min(22 + 0xFFFF);
    reader.seek(SeekFrom::Start(size - tail_len))?;
    let mut tail = vec![0; tail_len as usize];
    reader.read_exact(&mut tail)?;
    reader.seek(SeekFrom::Start(0))?;
    let Some(at) = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == EOCD)
    else {
        return Ok(None);
    };
    let entries = u16::from_le_bytes([tail[at + 10], tail[at + 11]]);
    if entries != u16::MAX {
        return Ok(Some(u64::from(entries)));
    }
    // Zip64: the locator (20 bytes) stands just before the end record and names the zip64
    // end record, whose total entry count is at offset 32.
    let Some(locator) = at
        .checked_sub(20)
        .filter(|&l| tail[l..l + 4] == ZIP64_LOCATOR)
    else {
        return Ok(Some(u64::from(entries)));
    };
    let mut offset = [0; 8];
    offset.copy_from_slice(&tail[locator + 8..locator + 16]);
    let offset = u64::from_le_bytes(offset);
    let mut record = [0; 40];
    reader.seek(SeekFrom::Start(offset))?;
    let read = reader.read_exact(&mut record);
    reader.seek(SeekFrom::Start(0))?;
    if read.is_err() || record[..4] != ZIP64_EOCD {
        return Ok(None);
    }
    let mut total = [0; 8];
    total.copy_from_slice(&record[32..40]);
    Ok(Some(u64::from_le_bytes(total)))
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

    fn first_escape(links: &[(&str, &str)]) -> Option<String> {
        let mut tree = Links::new();
        for (path, target) in links {
            tree.insert(path, PathBuf::from(path), target);
        }
        tree.first_escape().map(str::to_owned)
    }

    #[test]
    fn links_should_resolve_inside_the_root_through_other_links() {
        // The archive's links (path, target), and the first that should be refused.
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (&[("a/l", "b")], None),
            (&[("a/l", "../b")], None),
            (&[("a/l", "../../b")], Some("a/l")),
            (&[("l", "..")], Some("l")),
            (&[("l", "/etc")], Some("l")),
            (&[("a/b/l", "../../c/./d")], None),
            // Through a link that stays put, `..` climbs from where the link points.
            (&[("a", "."), ("up", "a/..")], Some("up")),
            (&[("up", "a/.."), ("a", ".")], Some("up")),
            (&[("s/d", ".."), ("x", "s/d/..")], Some("x")),
            (&[("s/d", ".."), ("x", "s/d/y")], None),
            // Links to links, and paths through links, that stay inside.
            (&[("l2", "l1"), ("l1", "real.txt")], None),
            (&[("d", "sub"), ("x", "d/../y")], None),
            (&[("d", "sub/deeper"), ("x", "d/../../y")], None),
            (&[("d", "sub"), ("x", "d/../../y")], Some("x")),
            // Loops lead nowhere: kept.
            (&[("a", "b"), ("b", "a")], None),
            (&[("a", "a/x")], None),
        ];
        for (links, escape) in cases {
            assert_eq!(first_escape(links).as_deref(), *escape, "{links:?}");
        }
    }

    #[test]
    fn a_chain_of_climbing_links_should_be_refused_where_it_first_leaves() {
        let mut links = vec![
            ("a".to_owned(), ".".to_owned()),
            ("up1".to_owned(), "a/..".to_owned()),
        ];
        for n in 2..=11 {
            links.push((format!("up{n}"), format!("up{}/..", n - 1)));
        }
        links.push(("leak".to_owned(), "up11/etc/passwd".to_owned()));
        let refs: Vec<(&str, &str)> = links
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(first_escape(&refs).as_deref(), Some("up1"));
        let reversed: Vec<_> = refs.iter().rev().copied().collect();
        assert_eq!(first_escape(&reversed).as_deref(), Some("leak"));
    }

    #[test]
    fn a_link_the_kernel_would_follow_past_its_limit_should_not_be_judged_by_it() {
        // l1 -> l2 -> ... -> l50 -> "..": l50 escapes, and so does every link of the chain
        // that the kernel can follow to it within 40 hops.
        let mut links: Vec<(String, String)> = (1..50)
            .map(|i| (format!("l{i}"), format!("l{}", i + 1)))
            .collect();
        links.push(("l50".to_owned(), "..".to_owned()));
        let refs: Vec<(&str, &str)> = links
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(first_escape(&refs).as_deref(), Some("l11"));
    }

    #[test]
    fn default_limits_should_name_the_tighter_bound() {
        let limits = UnpackLimits::default();
        let (budget, limit) = limits.content_budget(1 << 20);
        assert_eq!(budget, 100 << 20);
        assert!(limit.contains("max_ratio"), "{limit}");
        let (budget, limit) = limits.content_budget(10 << 30);
        assert_eq!(budget, 256 << 30);
        assert!(limit.contains("max_bytes"), "{limit}");
    }
}
