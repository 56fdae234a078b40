//! Where a service's files come from: local paths as they are, remote models, archives and
//! `storage[]` mounts fetched through `eas-storage` into a work directory, before any of its
//! instances starts. One [`Fetcher`] serves the services of a platform, at start and when
//! the control API creates one.

use std::path::PathBuf;
use std::sync::Arc;

use eas_core::spec::ServiceSpec;
use eas_core::storage::Progress;
use eas_storage::resolve::{ResolveOptions, resolve};
use eas_storage::{Credentials, MemoryCache, MountRegistry};

use crate::error::{Error, Result};
use crate::service::LocalPaths;

/// Fetches the files of services.
#[derive(Clone)]
pub struct Fetcher {
    /// The directory relative local paths are resolved against.
    pub base_dir: PathBuf,
    /// Where fetched files go, one directory per service.
    pub work_dir: PathBuf,
    /// The mounts of URI schemes.
    pub mounts: MountRegistry,
    /// Receives transfer progress.
    pub progress: Option<Arc<dyn Progress>>,
    /// The memory cache fetched files go through.
    pub cache: Option<Arc<MemoryCache>>,
    /// OSS/S3 credentials (default: from the environment).
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("base_dir", &self.base_dir)
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// The local paths of `spec`: fetched through `eas-storage` when it names remote files,
    /// archives or mounts, else its local paths.
    pub async fn paths(&self, spec: &ServiceSpec) -> Result<LocalPaths> {
        let local = LocalPaths::local(spec, &self.base_dir);
        if !LocalPaths::needs_storage(spec) {
            return Ok(local);
        }
        let name = &spec.metadata.name;
        let mut options =
            ResolveOptions::new(self.work_dir.join(name)).with_mounts(self.mounts.clone());
        if let Some(progress) = &self.progress {
            options = options.with_progress(Arc::clone(progress));
        }
        if let Some(cache) = &self.cache {
            options = options.with_cache(Arc::clone(cache));
        }
        if let Some(credentials) = &self.credentials {
            options = options.with_credentials(credentials.clone());
        }
        let resolved = resolve(spec, &options)
            .await
            .map_err(|source| Error::Storage {
                service: name.clone(),
                source,
            })?;
        let mut paths = LocalPaths::new();
        if let Some(dir) = resolved.model_dir {
            paths = paths.with_model_dir(dir);
        }
        if let Some(entry) = resolved.model_entry {
            paths = paths.with_model_entry(entry);
        }
        if let Some(warm_up) = local.warm_up {
            paths = paths.with_warm_up(warm_up);
        }
        Ok(paths)
    }
}
