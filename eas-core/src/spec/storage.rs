//! `storage`: mounts that make OSS/S3 prefixes, NAS exports, local directories or a memory
//! cache appear under a path inside the instance.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::ByteSize;

/// One entry of `storage`: exactly one source (`oss`, `nfs`, `local` or `cache`) mounted at
/// `mount_path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MountSpec {
    /// Where the source appears inside the instance: an absolute path, distinct from and not
    /// nested in any other mount path.
    pub mount_path: String,

    /// An OSS (or S3-compatible) prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oss: Option<OssMount>,

    /// A NAS (NFS) export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NfsMount>,

    /// A directory of the host, for local runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalDir>,

    /// A memory cache (cachefs) in front of another mount: hot files are kept in memory and
    /// shared with the other instances of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheMount>,
}

/// The source of a mount, once the spec is validated.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum MountSource<'a> {
    /// An OSS or S3 prefix.
    Oss(&'a OssMount),
    /// A NAS export.
    Nfs(&'a NfsMount),
    /// A local directory.
    Local(&'a LocalDir),
    /// A memory cache.
    Cache(&'a CacheMount),
}

impl MountSpec {
    fn at(mount_path: impl Into<String>) -> Self {
        Self {
            mount_path: mount_path.into(),
            oss: None,
            nfs: None,
            local: None,
            cache: None,
        }
    }

    /// Mounts an OSS or S3 prefix (`oss://bucket/prefix/`) at `mount_path`, read-write,
    /// through the spec's `oss_endpoint`.
    #[must_use]
    pub fn oss(mount_path: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            oss: Some(OssMount {
                path: path.into(),
                endpoint: None,
                read_only: false,
            }),
            ..Self::at(mount_path)
        }
    }

    /// Mounts the NAS export `server:path` at `mount_path`, read-write.
    #[must_use]
    pub fn nfs(
        mount_path: impl Into<String>,
        server: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        let nfs = NfsMount {
            server: server.into(),
            path: path.into(),
            read_only: false,
        };
        Self {
            nfs: Some(nfs),
            ..Self::at(mount_path)
        }
    }

    /// Mounts the host directory `path` at `mount_path`, read-write.
    #[must_use]
    pub fn local(mount_path: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            local: Some(LocalDir {
                path: path.into(),
                read_only: false,
            }),
            ..Self::at(mount_path)
        }
    }

    /// A memory cache of at most `capacity` in front of the mount at `cached_path`.
    #[must_use]
    pub fn cache(
        mount_path: impl Into<String>,
        capacity: ByteSize,
        cached_path: impl Into<String>,
    ) -> Self {
        Self {
            cache: Some(CacheMount {
                capacity,
                path: cached_path.into(),
            }),
            ..Self::at(mount_path)
        }
    }

    /// Every source this entry names (a valid spec names exactly one).
    #[must_use]
    pub fn sources(&self) -> Vec<MountSource<'_>> {
        let mut sources = Vec::with_capacity(1);
        sources.extend(self.oss.as_ref().map(MountSource::Oss));
        sources.extend(self.nfs.as_ref().map(MountSource::Nfs));
        sources.extend(self.local.as_ref().map(MountSource::Local));
        sources.extend(self.cache.as_ref().map(MountSource::Cache));
        sources
    }

    /// The one source of this mount; `None` only for a spec that failed validation.
    #[must_use]
    pub fn source(&self) -> Option<MountSource<'_>> {
        match self.sources().as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// `storage[].oss`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OssMount {
    /// The prefix to mount: `oss://bucket/prefix/`, or `s3://bucket/prefix/` for an
    /// S3-compatible store; or a URI of a scheme the application registered a storage mount
    /// for (checked when the service starts).
    pub path: String,

    /// The endpoint: a bare host (`oss-cn-shanghai-internal.aliyuncs.com`, virtual-hosted
    /// style over HTTPS) or a URL (`http://127.0.0.1:9000`, path style). Default: the
    /// top-level `oss_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Mounts read-only.
    #[serde(rename = "readOnly", default)]
    pub read_only: bool,
}

/// `storage[].nfs`: a NAS export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NfsMount {
    /// The NAS mount target, such as `xxx.cn-shanghai.nas.aliyuncs.com`.
    pub server: String,

    /// The exported directory, an absolute path.
    pub path: String,

    /// Mounts read-only.
    #[serde(rename = "readOnly", default)]
    pub read_only: bool,
}

/// `storage[].local`: a directory that already exists on the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LocalDir {
    /// The host directory.
    pub path: String,

    /// Mounts read-only.
    #[serde(rename = "readOnly", default)]
    pub read_only: bool,
}

/// `storage[].cache`: a memory cache of another mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheMount {
    /// The most memory the cache uses, such as `"20G"`.
    pub capacity: ByteSize,

    /// The mount path whose files are cached (another entry's `mount_path`).
    pub path: String,
}
