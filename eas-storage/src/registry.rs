//! Storage mounts by URI scheme: the built-in `oss`, `s3`, `http` and `https`, and any
//! [`StorageMount`](eas_core::StorageMount) an application registers for a scheme of its own.
//!
//! The resolver ([`resolve`](crate::resolve::resolve)) reads a spec path with
//! [`PathKind::parse`] (the rule the spec validator applies too), then asks the registry of its
//! [`ResolveOptions`](crate::resolve::ResolveOptions) for the mount of the path's scheme. The
//! built-in schemes go through the same seam, so an application may also replace one (say, its
//! own `oss` client). Paths without a scheme are this host's: they are used in place, or
//! unpacked when they name an archive file, and no registration changes that.
//!
//! The spec validator accepts any syntactically valid `scheme://...`; a scheme nobody
//! registered fails here, when the service starts, with [`Error::UnsupportedScheme`] naming
//! the scheme and the registered ones.
//!
//! ```
//! use std::sync::Arc;
//!
//! use eas_core::testing::MemoryMount;
//! use eas_storage::{MountRegistry, MountRequest};
//!
//! let mut mounts = MountRegistry::with_builtins();
//! mounts.register("mem", |request: &MountRequest| {
//!     let mount = MemoryMount::new(&request.uri, &request.target).with_file("m.onnx", "onnx!");
//!     Ok(Arc::new(mount))
//! });
//! assert_eq!(mounts.schemes(), ["http", "https", "mem", "oss", "s3"]);
//!
//! let mount = mounts.build(&MountRequest::new("mem://models/resnet/", "/tmp/eas/resnet"))?;
//! assert_eq!(mount.uri(), "mem://models/resnet/");
//!
//! let unknown = mounts.build(&MountRequest::new("gs://models/resnet/", "/tmp/eas/resnet"));
//! let message = unknown.unwrap_err().to_string();
//! assert!(message.contains("unsupported scheme `gs://`"), "{message}");
//! assert!(message.contains("mem://, oss://, s3://"), "{message}");
//! # Ok::<(), eas_storage::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use eas_core::spec::PathKind;
use eas_core::storage::{Access, DynStorageMount};

use crate::archive::UnpackLimits;
use crate::location::Source;
use crate::{
    ArchiveMount, BucketMount, Credentials, Error, LocalMount, MemoryCache, Result, TransferOptions,
};

/// Makes the mount of one URI (see [`MountRequest`]); called once per spec path, before the
/// service's instances start.
pub type MountFactory = Arc<dyn Fn(&MountRequest) -> Result<DynStorageMount> + Send + Sync>;

/// What a [`MountFactory`] is asked to mount: a URI, where its files must appear, and what the
/// resolver was configured with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MountRequest {
    /// The URI as the spec writes it (`model_path`, `processor_path`, `storage[].oss.path`).
    pub uri: String,
    /// The endpoint the spec gives for it (`oss_endpoint`, or the mount's `endpoint`).
    pub endpoint: Option<String>,
    /// The local directory where the files must appear (a directory of the resolver's work
    /// directory, kept across restarts).
    pub target: PathBuf,
    /// Read-only (models, code) or read-write (as a `storage[]` entry says).
    pub access: Access,
    /// The resolver's credentials.
    pub credentials: Credentials,
    /// The resolver's transfer options.
    pub transfer: TransferOptions,
    /// The memory cache reads should go through, when the spec asks for one.
    pub cache: Option<Arc<MemoryCache>>,
    /// The resolver's limits on what an archive may unpack to.
    pub unpack: UnpackLimits,
}

impl MountRequest {
    /// A request to mount `uri` under `target`: read-only, no endpoint, anonymous credentials,
    /// default transfer options, no cache.
    #[must_use]
    pub fn new(uri: impl Into<String>, target: impl Into<PathBuf>) -> Self {
        Self {
            uri: uri.into(),
            endpoint: None,
            target: target.into(),
            access: Access::ReadOnly,
            credentials: Credentials::anonymous(),
            transfer: TransferOptions::default(),
            cache: None,
            unpack: UnpackLimits::default(),
        }
    }

    /// The same with the endpoint that serves the URI.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The same with other access.
    #[must_use]
    pub const fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// The same with credentials.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The same with other transfer options.
    #[must_use]
    pub const fn with_transfer(mut self, transfer: TransferOptions) -> Self {
        self.transfer = transfer;
        self
    }

    /// The same with a memory cache to read through.
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<MemoryCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The same with other limits on what an archive may unpack to.
    #[must_use]
    pub const fn with_unpack_limits(mut self, limits: UnpackLimits) -> Self {
        self.unpack = limits;
        self
    }
}

/// Storage mounts by URI scheme. [`Default`] is [`with_builtins`](Self::with_builtins).
#[derive(Clone)]
pub struct MountRegistry {
    factories: BTreeMap<String, MountFactory>,
}

impl std::fmt::Debug for MountRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountRegistry")
            .field("schemes", &self.schemes())
            .finish()
    }
}

impl Default for MountRegistry {
    fn default() -> Self {
        Self::with_builtins()
    }
}

impl MountRegistry {
    /// A registry without any scheme: only paths on this host can be mounted.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            factories: BTreeMap::new(),
        }
    }

    /// A registry with the built-in mounts: `oss` and `s3` ([`BucketMount`]), `http` and
    /// `https` ([`ArchiveMount`]).
    #[must_use]
    pub fn with_builtins() -> Self {
        let mut registry = Self::empty();
        for scheme in ["oss", "s3", "http", "https"] {
            registry.register(scheme, builtin);
        }
        registry
    }

    /// Adds (or replaces) the mount of URIs with `scheme` (`"mem"`; a trailing `://` and
    /// case are ignored). A scheme is a letter followed by letters, digits, `+`, `-` or `.`;
    /// URIs of any other form never reach a factory.
    pub fn register<F>(&mut self, scheme: impl AsRef<str>, factory: F) -> &mut Self
    where
        F: Fn(&MountRequest) -> Result<DynStorageMount> + Send + Sync + 'static,
    {
        self.factories
            .insert(normalize(scheme.as_ref()), Arc::new(factory));
        self
    }

    /// The registered schemes, lowercase and sorted.
    #[must_use]
    pub fn schemes(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// The factory registered for `scheme` (case and a trailing `://` ignored).
    #[must_use]
    pub fn get(&self, scheme: &str) -> Option<MountFactory> {
        self.factories.get(&normalize(scheme)).cloned()
    }

    /// The mount for `request`: a path on this host is used in place (or unpacked, for an
    /// archive file); a URI goes to the factory of its scheme.
    ///
    /// # Errors
    /// [`Error::InvalidUri`] for a malformed path, [`Error::UnsupportedScheme`] (naming the
    /// scheme and the registered ones) for a scheme without factory, or the factory's error.
    pub fn build(&self, request: &MountRequest) -> Result<DynStorageMount> {
        let kind =
            PathKind::parse(&request.uri).map_err(|reason| Error::invalid(&request.uri, reason))?;
        let Some(scheme) = kind.scheme() else {
            return builtin(request);
        };
        let scheme = normalize(scheme);
        match self.factories.get(&scheme) {
            Some(factory) => factory(request),
            None => Err(Error::UnsupportedScheme {
                uri: request.uri.clone(),
                scheme,
                known: self.schemes(),
            }),
        }
    }
}

fn normalize(scheme: &str) -> String {
    scheme.trim().trim_end_matches("://").to_ascii_lowercase()
}

/// The mounts of this crate: OSS/S3 prefixes, HTTP(S) archives, local paths and archives.
fn builtin(request: &MountRequest) -> Result<DynStorageMount> {
    let target = request.target.clone();
    Ok(
        match Source::parse(&request.uri, request.endpoint.as_deref())? {
            Source::Bucket(location) => {
                let mut builder = BucketMount::builder(location, target)
                    .credentials(request.credentials.clone())
                    .options(request.transfer)
                    .access(request.access);
                if let Some(cache) = &request.cache {
                    builder = builder.cache(Arc::clone(cache));
                }
                Arc::new(builder.build()?)
            }
            Source::Archive { url, format } => Arc::new(
                ArchiveMount::remote(url, format, target)?.with_unpack_limits(request.unpack),
            ),
            Source::LocalArchive { path, format } => Arc::new(
                ArchiveMount::local(path, format, target)?.with_unpack_limits(request.unpack),
            ),
            Source::Local(path) => Arc::new(LocalMount::new(path, request.access)),
            Source::Other { uri, scheme } => {
                return Err(Error::invalid(
                    uri,
                    format!("the built-in mounts do not handle {scheme}://"),
                ));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use eas_core::testing::MemoryMount;

    use super::*;

    fn memory(request: &MountRequest) -> Result<DynStorageMount> {
        Ok(Arc::new(MemoryMount::new(&request.uri, &request.target)))
    }

    #[test]
    fn schemes_should_be_found_ignoring_case_and_a_trailing_separator() {
        let mut registry = MountRegistry::with_builtins();
        registry.register("MEM://", memory);
        assert_eq!(registry.schemes(), ["http", "https", "mem", "oss", "s3"]);
        assert!(registry.get("mem").is_some() && registry.get("Mem://").is_some());
        let mount = registry
            .build(&MountRequest::new("MEM://b/m/", "/t"))
            .expect("registered");
        assert_eq!(mount.uri(), "MEM://b/m/");
        assert!(MountRegistry::empty().schemes().is_empty());
        assert_eq!(MountRegistry::default().schemes().len(), 4);
    }

    #[test]
    fn unknown_schemes_should_fail_naming_the_scheme_and_the_known_ones() {
        let error = MountRegistry::with_builtins()
            .build(&MountRequest::new("mem://b/m/", "/t"))
            .expect_err("not registered");
        assert!(
            matches!(&error, Error::UnsupportedScheme { scheme, .. } if scheme == "mem"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("`mem://b/m/`"), "{message}");
        assert!(message.contains("unsupported scheme `mem://`"), "{message}");
        assert!(
            message.contains("registered: http://, https://, oss://, s3://"),
            "{message}"
        );
        let none = MountRegistry::empty()
            .build(&MountRequest::new("s3://b/p/", "/t"))
            .expect_err("empty");
        assert!(none.to_string().contains("registered: none"), "{none}");
    }

    #[test]
    fn builtins_should_be_replaceable_and_local_paths_always_local() {
        let mut registry = MountRegistry::with_builtins();
        registry.register("oss", memory);
        // No endpoint: the built-in would refuse; the replacement does not need one.
        let mount = registry
            .build(&MountRequest::new("oss://b/p/", "/t"))
            .expect("replaced");
        assert_eq!(mount.uri(), "oss://b/p/");
        let local = MountRegistry::empty()
            .build(&MountRequest::new("/srv/models", "/t"))
            .expect("local paths need no scheme");
        assert_eq!(local.target(), std::path::Path::new("/srv/models"));
        let malformed = registry
            .build(&MountRequest::new("1x://b", "/t"))
            .expect_err("malformed");
        assert!(matches!(malformed, Error::InvalidUri { .. }), "{malformed}");
    }
}
