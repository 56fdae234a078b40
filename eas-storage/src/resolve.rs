//! The resolver: before an instance starts, turn a spec's `model_path`, `model_entry`,
//! `processor_path`, `processor_entry` and `storage[]` into local paths.
//!
//! [`resolve`] mounts each source under [`ResolveOptions::work_dir`] (or uses it in place, for
//! local paths and NAS exports) and returns a [`ResolvedService`]:
//!
//! | spec | becomes |
//! |---|---|
//! | `model_path: oss://b/p/` or `s3://b/p/` (endpoint: `oss_endpoint`) | `work_dir/model/<slug>/`, every file fetched ([`BucketMount`](crate::BucketMount), eager) |
//! | `model_path: https://h/m.tar.gz` (any [`ArchiveFormat`](crate::location::ArchiveFormat) suffix) | `work_dir/model/<slug>/`, unpacked safely ([`ArchiveMount`](crate::ArchiveMount)) |
//! | `model_path: mem://b/p/` (a scheme registered in [`ResolveOptions::mounts`]) | `work_dir/model/<slug>/`, through the registered mount, eager |
//! | `model_path: /local/dir` | that directory, checked ([`LocalMount`]) |
//! | `model_path: /local/m.tar.gz` | unpacked under `work_dir/model/<slug>/` |
//! | `model_path: /local/model.onnx` (a file) | its directory; `model_entry` defaults to the file |
//! | `model_entry: rel/path` | `model_dir/rel/path`, which must exist |
//! | `processor_path` / `processor_entry` | the same, under `work_dir/processor/` |
//! | `storage[i].oss` (`oss://`, `s3://` or a registered scheme) | `work_dir/storage/<slug>/`, mounted per [`ResolveOptions::storage_mode`] |
//! | `storage[i].nfs` | where the OS mounted `server:path` (from `/proc/mounts`) |
//! | `storage[i].local` | that directory |
//! | `storage[i].cache` | the directory of the mount it caches; its OSS reads go through the [`MemoryCache`] |
//!
//! Credentials come from [`ResolveOptions::credentials`] (by default
//! [`Credentials::from_env`]: `OSS_ACCESS_KEY_ID`/`OSS_ACCESS_KEY_SECRET`, else
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, and `AWS_REGION`). The same `work_dir` across
//! restarts reuses what was fetched (same size and ETag). Errors name the spec field or URI
//! and the reason; a scheme without registered mount fails naming the scheme and the
//! registered ones ([`Error::UnsupportedScheme`]).
//!
//! ```no_run
//! # async fn demo(spec: &eas_core::ServiceSpec) -> eas_storage::Result<()> {
//! use std::sync::Arc;
//! use eas_core::storage::TransferProgress;
//! use eas_storage::resolve::{resolve, ResolveOptions};
//!
//! let progress = Arc::new(|p: &TransferProgress| {
//!     eprint!("\r{} / {:?} bytes, {:.0} B/s, ETA {:?}", p.bytes_done, p.bytes_total,
//!             p.rate_bytes_per_sec(), p.eta());
//! });
//! let options = ResolveOptions::new("/var/lib/eas/demo").with_progress(progress);
//! let resolved = resolve(spec, &options).await?;
//! println!("model entry: {:?}", resolved.model_entry);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eas_core::ServiceSpec;
use eas_core::spec::{MountSource, MountSpec, PathKind};
use eas_core::storage::{Access, DynStorageMount, MountMode, MountReport, Progress};

use crate::archive::UnpackLimits;
use crate::local::find_nfs_mount;
use crate::verify::crc32c;
use crate::{
    Credentials, Error, LocalMount, MemoryCache, MountRegistry, MountRequest, Result,
    TransferOptions,
};

/// How [`resolve`] works: where to put fetched files, with which credentials, reporting
/// progress where.
#[derive(Clone)]
#[non_exhaustive]
pub struct ResolveOptions {
    /// Where fetched and unpacked files go (kept across restarts for reuse).
    pub work_dir: PathBuf,
    /// OSS/S3 credentials. Default: [`Credentials::from_env`].
    pub credentials: Credentials,
    /// Receives transfer progress (bytes, rate, ETA) for each mount in turn.
    pub progress: Option<Arc<dyn Progress>>,
    /// The instance's memory cache (with its peers): model and OSS reads go through it. When
    /// `None` and the spec has `storage[].cache` entries, one is made with their capacity.
    pub cache: Option<Arc<MemoryCache>>,
    /// Concurrency, part size, MD5 checks.
    pub transfer: TransferOptions,
    /// How `storage[].oss` mounts fetch (default eager; `model_path` is always eager).
    pub storage_mode: MountMode,
    /// The mounts of URI schemes (default: the built-in `oss`, `s3`, `http`, `https`).
    pub mounts: MountRegistry,
    /// What archives may unpack to (default [`UnpackLimits::default`]).
    pub unpack: UnpackLimits,
}

impl std::fmt::Debug for ResolveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolveOptions")
            .field("work_dir", &self.work_dir)
            .field("credentials", &self.credentials)
            .field("progress", &self.progress.is_some())
            .field("cache", &self.cache)
            .field("transfer", &self.transfer)
            .field("storage_mode", &self.storage_mode)
            .field("mounts", &self.mounts)
            .field("unpack", &self.unpack)
            .finish()
    }
}

impl ResolveOptions {
    /// Options with `work_dir`, credentials from the environment, and the defaults.
    #[must_use]
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
            credentials: Credentials::from_env(),
            progress: None,
            cache: None,
            transfer: TransferOptions::default(),
            storage_mode: MountMode::Eager,
            mounts: MountRegistry::with_builtins(),
            unpack: UnpackLimits::default(),
        }
    }

    /// The same with explicit credentials.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The same with a progress callback.
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The same with the instance's memory cache.
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<MemoryCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The same with other transfer options.
    #[must_use]
    pub const fn with_transfer(mut self, transfer: TransferOptions) -> Self {
        self.transfer = transfer;
        self
    }

    /// The same with another mode for `storage[].oss`.
    #[must_use]
    pub const fn with_storage_mode(mut self, mode: MountMode) -> Self {
        self.storage_mode = mode;
        self
    }

    /// The same with other mounts of URI schemes: start from
    /// [`MountRegistry::with_builtins`] and register yours to keep `oss://`, `s3://` and
    /// `http(s)://`.
    #[must_use]
    pub fn with_mounts(mut self, mounts: MountRegistry) -> Self {
        self.mounts = mounts;
        self
    }

    /// The same with other limits on what an archive (`model_path: .../m.tar.gz`) may unpack
    /// to: total size, expansion ratio, entries. See [`UnpackLimits`] for the defaults.
    #[must_use]
    pub const fn with_unpack_limits(mut self, limits: UnpackLimits) -> Self {
        self.unpack = limits;
        self
    }
}

/// A spec's paths, resolved to local ones.
#[derive(Debug)]
#[non_exhaustive]
pub struct ResolvedService {
    /// The local directory holding `model_path`.
    pub model_dir: Option<PathBuf>,
    /// `model_entry` inside it (checked to exist).
    pub model_entry: Option<PathBuf>,
    /// The local directory holding `processor_path`.
    pub processor_dir: Option<PathBuf>,
    /// `processor_entry` inside it (checked to exist).
    pub processor_entry: Option<PathBuf>,
    /// One per `storage[]` entry, in spec order.
    pub mounts: Vec<ResolvedMount>,
    /// The memory cache reads went through, if any: serve it to peers with
    /// [`peer::router`](crate::peer::router).
    pub cache: Option<Arc<MemoryCache>>,
    /// What all mounts did together.
    pub report: MountReport,
}

/// One `storage[]` entry, resolved.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResolvedMount {
    /// The spec's `mount_path` (where the instance expects the files).
    pub mount_path: String,
    /// The local directory that holds them.
    pub local_dir: PathBuf,
    /// Read-only or read-write, as the spec says.
    pub access: Access,
    /// The mount itself (for lazy reads through the cache).
    pub mount: DynStorageMount,
}

/// The mount for one spec path (`model_path`, `processor_path` or a `storage[].oss` path),
/// under `target` unless it is used in place, from [`ResolveOptions::mounts`].
///
/// # Errors
/// [`Error::UnsupportedScheme`] for a scheme without registered mount, [`Error::InvalidUri`]
/// for a path that cannot be mounted, or the registered factory's error.
pub fn mount_for(
    uri: &str,
    endpoint: Option<&str>,
    target: PathBuf,
    access: Access,
    options: &ResolveOptions,
    cache: Option<&Arc<MemoryCache>>,
) -> Result<DynStorageMount> {
    let mut request = MountRequest::new(uri, target)
        .with_access(access)
        .with_credentials(options.credentials.clone())
        .with_transfer(options.transfer)
        .with_unpack_limits(options.unpack);
    if let Some(endpoint) = endpoint {
        request = request.with_endpoint(endpoint);
    }
    if let Some(cache) = cache {
        request = request.with_cache(Arc::clone(cache));
    }
    options.mounts.build(&request)
}

/// Resolves every path of `spec` to a local one, fetching what must be fetched. See the
/// [module docs](self) for what each field becomes.
///
/// # Errors
/// The first failure, naming the spec field or URI and the reason: an unknown scheme, a
/// bucket or prefix that does not exist, refused credentials, a truncated download, a
/// corrupted or escaping archive, an entry file that is not there, a NAS export that is not
/// mounted.
pub async fn resolve(spec: &ServiceSpec, options: &ResolveOptions) -> Result<ResolvedService> {
    let cache = options.cache.clone().or_else(|| {
        let capacity: u64 = spec
            .storage
            .iter()
            .filter_map(|m| m.cache.as_ref())
            .map(|c| c.capacity.bytes())
            .sum();
        (capacity > 0).then(|| Arc::new(MemoryCache::new(capacity)))
    });
    let mut report = MountReport::default();
    let progress = options.progress.as_deref();

    let (model_dir, model_entry) = match &spec.model_path {
        Some(uri) => {
            let (dir, entry) = resolve_code(
                "model_path",
                uri,
                spec,
                "model",
                options,
                cache.as_ref(),
                progress,
                &mut report,
            )
            .await?;
            let entry = entry_in("model_entry", spec.model_entry.as_deref(), &dir, uri)?.or(entry);
            (Some(dir), entry)
        }
        None => (None, None),
    };
    let (processor_dir, processor_entry) = match &spec.processor_path {
        Some(uri) => {
            let (dir, entry) = resolve_code(
                "processor_path",
                uri,
                spec,
                "processor",
                options,
                cache.as_ref(),
                progress,
                &mut report,
            )
            .await?;
            let entry = entry_in(
                "processor_entry",
                spec.processor_entry.as_deref(),
                &dir,
                uri,
            )?
            .or(entry);
            (Some(dir), entry)
        }
        None => (None, None),
    };

    let cached_paths: Vec<String> = spec
        .storage
        .iter()
        .filter_map(|m| m.cache.as_ref())
        .map(|c| normalize(&c.path))
        .collect();
    let mut mounts: Vec<ResolvedMount> = Vec::with_capacity(spec.storage.len());
    for (index, entry) in spec.storage.iter().enumerate() {
        if let Some(resolved) = resolve_storage(
            index,
            entry,
            spec,
            options,
            &cached_paths,
            cache.as_ref(),
            progress,
            &mut report,
        )
        .await?
        {
            mounts.push(resolved);
        }
    }
    // Cache entries resolve to the directory of the mount they cache.
    for (index, entry) in spec.storage.iter().enumerate() {
        let Some(MountSource::Cache(c)) = entry.source() else {
            continue;
        };
        let cached = mounts
            .iter()
            .find(|m| normalize(&m.mount_path) == normalize(&c.path))
            .cloned()
            .ok_or_else(|| {
                Error::spec(
                    format!("storage[{index}].cache.path"),
                    format!(
                        "`{}` is not the mount_path of another storage entry",
                        c.path
                    ),
                )
            })?;
        mounts.insert(
            index.min(mounts.len()),
            ResolvedMount {
                mount_path: entry.mount_path.clone(),
                ..cached
            },
        );
    }
    Ok(ResolvedService {
        model_dir,
        model_entry,
        processor_dir,
        processor_entry,
        mounts,
        cache,
        report,
    })
}

#[allow(clippy::too_many_arguments)] // private plumbing of `resolve`
async fn resolve_code(
    field: &str,
    uri: &str,
    spec: &ServiceSpec,
    kind: &str,
    options: &ResolveOptions,
    cache: Option<&Arc<MemoryCache>>,
    progress: Option<&dyn Progress>,
    report: &mut MountReport,
) -> Result<(PathBuf, Option<PathBuf>)> {
    // A plain local file: its directory, with the file as default entry.
    if let Ok(PathKind::Local {
        path,
        archive: None,
    }) = PathKind::parse(uri)
    {
        let path = Path::new(path);
        if path.is_file() {
            let dir = path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            return Ok((dir, Some(path.to_path_buf())));
        }
    }
    let target = options.work_dir.join(kind).join(slug(uri));
    let mount = mount_for(
        uri,
        spec.oss_endpoint.as_deref(),
        target,
        Access::ReadOnly,
        options,
        cache,
    )
    .map_err(|e| in_field(field, e))?;
    let done = mount
        .mount(MountMode::Eager, progress)
        .await
        .map_err(|e| in_field(field, e.into()))?;
    add(report, &done);
    Ok((mount.target().to_path_buf(), None))
}

#[allow(clippy::too_many_arguments)] // private plumbing of `resolve`
async fn resolve_storage(
    index: usize,
    entry: &MountSpec,
    spec: &ServiceSpec,
    options: &ResolveOptions,
    cached_paths: &[String],
    cache: Option<&Arc<MemoryCache>>,
    progress: Option<&dyn Progress>,
    report: &mut MountReport,
) -> Result<Option<ResolvedMount>> {
    let field = format!("storage[{index}]");
    let access = |read_only: bool| {
        if read_only {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        }
    };
    let (mount, mode): (DynStorageMount, MountMode) = match entry.source() {
        Some(MountSource::Oss(oss)) => {
            // The rule the spec validator applies: a bucket URI or a registered scheme.
            PathKind::parse_mount(&oss.path)
                .map_err(|reason| Error::spec(format!("{field}.oss.path"), reason))?;
            let target = options
                .work_dir
                .join("storage")
                .join(slug(&entry.mount_path));
            let endpoint = oss.endpoint.as_deref().or(spec.oss_endpoint.as_deref());
            let cache = cache.filter(|_| cached_paths.contains(&normalize(&entry.mount_path)));
            let mount = mount_for(
                &oss.path,
                endpoint,
                target,
                access(oss.read_only),
                options,
                cache,
            )
            .map_err(|e| in_field(&format!("{field}.oss.path"), e))?;
            (mount, options.storage_mode)
        }
        Some(MountSource::Nfs(nfs)) => {
            let export = format!("{}:{}", nfs.server, nfs.path);
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
            let dir = find_nfs_mount(&mounts, &nfs.server, &nfs.path).ok_or_else(|| Error::NotFound {
                uri: export.clone(),
                detail: format!("{field}.nfs: this NAS export is not mounted on the host; mount it first (mount -t nfs {export} <dir>)"),
            })?;
            (
                Arc::new(LocalMount::new(dir, access(nfs.read_only)).with_uri(export)),
                MountMode::Eager,
            )
        }
        Some(MountSource::Local(local)) => (
            Arc::new(LocalMount::new(&local.path, access(local.read_only))),
            MountMode::Eager,
        ),
        Some(MountSource::Cache(_)) => return Ok(None),
        _ => {
            return Err(Error::spec(
                &field,
                "name exactly one of oss, nfs, local or cache",
            ));
        }
    };
    let done = mount
        .mount(mode, progress)
        .await
        .map_err(|e| in_field(&field, e.into()))?;
    add(report, &done);
    Ok(Some(ResolvedMount {
        mount_path: entry.mount_path.clone(),
        local_dir: mount.target().to_path_buf(),
        access: mount.access(),
        mount,
    }))
}

/// `entry` inside `dir`, checked: a plain relative path to an existing file or directory.
fn entry_in(field: &str, entry: Option<&str>, dir: &Path, uri: &str) -> Result<Option<PathBuf>> {
    let Some(entry) = entry else { return Ok(None) };
    let path =
        crate::local_fs::join_relative(uri, dir, entry.trim_start_matches("./")).map_err(|_| {
            Error::spec(
                field,
                format!("`{entry}` must be a relative path inside {uri}"),
            )
        })?;
    if !path.exists() {
        return Err(Error::spec(
            field,
            format!(
                "`{entry}` not found in `{uri}` (looked at {})",
                path.display()
            ),
        ));
    }
    Ok(Some(path))
}

/// Keeps the variant, adding the spec field to errors that would not otherwise say where.
fn in_field(field: &str, error: Error) -> Error {
    match error {
        Error::Io { path, source } => Error::Io {
            path,
            source: std::io::Error::new(source.kind(), format!("{field}: {source}")),
        },
        other => other,
    }
}

fn add(total: &mut MountReport, one: &MountReport) {
    total.files += one.files;
    total.bytes += one.bytes;
    total.reused_files += one.reused_files;
    total.fetched_bytes += one.fetched_bytes;
    total.elapsed += one.elapsed;
}

fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// A directory name for a URI: readable, unique (a CRC-32C suffix), stable across restarts.
fn slug(uri: &str) -> String {
    let readable: String = uri
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let readable = readable.trim_matches(['_', '.']);
    let readable: String = readable
        .chars()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{readable}-{:08x}", crc32c(uri.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_should_be_stable_distinct_and_safe() {
        let a = slug("oss://models/resnet/");
        assert_eq!(a, slug("oss://models/resnet/"));
        assert_ne!(a, slug("oss://models/resnet"));
        assert!(a.starts_with("oss___models_resnet-"), "{a}");
        assert!(!slug("https://h/../../etc.tar.gz").contains('/'));
        assert!(slug(&"x".repeat(500)).len() < 80);
    }

    #[test]
    fn entries_should_be_checked_inside_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("m.onnx"), b"x").expect("write");
        assert_eq!(
            entry_in("model_entry", Some("./m.onnx"), dir.path(), "u").expect("present"),
            Some(dir.path().join("m.onnx"))
        );
        let missing =
            entry_in("model_entry", Some("n.onnx"), dir.path(), "u").expect_err("missing");
        assert!(
            missing.to_string().contains("`n.onnx` not found"),
            "{missing}"
        );
        assert!(entry_in("model_entry", Some("../x"), dir.path(), "u").is_err());
        assert_eq!(
            entry_in("model_entry", None, dir.path(), "u").expect("none"),
            None
        );
    }
}
