//! Where a spec's path points: an OSS/S3 prefix, an HTTP(S) archive, a local path, or a URI
//! of another scheme (for a registered mount, see [`MountRegistry`](crate::MountRegistry));
//! and how an OSS/S3 endpoint becomes request URLs (virtual-hosted or path style).
//!
//! Which schemes and archive suffixes exist is decided in one place,
//! [`eas_core::spec::PathKind`], which the spec validator calls too; [`Source::parse`] adds
//! what needs more than the text: the endpoint, a parsed URL, whether a local archive is a
//! file.
//!
//! ```
//! use eas_storage::location::{ArchiveFormat, Endpoint, Source};
//!
//! let source = Source::parse("oss://models/resnet/", Some("oss-cn-beijing.aliyuncs.com"))?;
//! let Source::Bucket(bucket) = source else { unreachable!() };
//! assert_eq!(bucket.object_url("resnet/model.onnx"),
//!            "https://models.oss-cn-beijing.aliyuncs.com/resnet/model.onnx");
//!
//! let local = Endpoint::parse("http://127.0.0.1:9000")?;
//! assert!(!local.virtual_hosted());
//!
//! let Source::Archive { format, .. } = Source::parse("https://h/m.tar.gz", None)? else {
//!     unreachable!()
//! };
//! assert_eq!(format, ArchiveFormat::TarGz);
//!
//! let Source::Other { scheme, .. } = Source::parse("mem://bucket/model/", None)? else {
//!     unreachable!()
//! };
//! assert_eq!(scheme, "mem");
//! # Ok::<(), eas_storage::Error>(())
//! ```

use std::path::PathBuf;

use eas_core::spec::PathKind;
pub use eas_core::spec::{ArchiveFormat, BucketScheme};
use url::Url;

use crate::{Error, Result};

/// Where an OSS/S3 server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A bare host such as `oss-cn-beijing.aliyuncs.com`: HTTPS, virtual-hosted style
    /// (`https://bucket.host/key`).
    Host(String),
    /// A full URL such as `http://127.0.0.1:9000`: path style (`http://127.0.0.1:9000/bucket/key`),
    /// for local S3-compatible servers.
    Url(Url),
    /// No endpoint given: AWS S3 of the region in `AWS_REGION` (`s3://` only).
    Aws,
}

impl Endpoint {
    /// Parses an endpoint as written in a spec (`oss_endpoint` or a mount's `endpoint`).
    ///
    /// # Errors
    /// [`Error::InvalidUri`] when it is neither a host nor an `http(s)://` URL.
    pub fn parse(endpoint: &str) -> Result<Self> {
        let endpoint = endpoint.trim().trim_end_matches('/');
        if endpoint.contains("://") {
            let url = Url::parse(endpoint).map_err(|e| Error::invalid(endpoint, e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(Error::invalid(
                    endpoint,
                    "an endpoint URL must be http:// or https:// with a host",
                ));
            }
            return Ok(Self::Url(url));
        }
        let valid = !endpoint.is_empty()
            && endpoint
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !valid {
            return Err(Error::invalid(
                endpoint,
                "an endpoint is a host (oss-cn-beijing.aliyuncs.com) or a URL (http://127.0.0.1:9000)",
            ));
        }
        Ok(Self::Host(endpoint.to_owned()))
    }

    /// Whether requests name the bucket in the host (`true`) or in the path.
    #[must_use]
    pub const fn virtual_hosted(&self) -> bool {
        !matches!(self, Self::Url(_))
    }
}

/// An OSS/S3 bucket and prefix, with the endpoint that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLocation {
    /// `oss://` or `s3://`.
    pub scheme: BucketScheme,
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading slash; ends with `/` unless empty.
    pub prefix: String,
    /// Where the server answers.
    pub endpoint: Endpoint,
}

impl BucketLocation {
    /// The URI as a person writes it: `oss://bucket/prefix/`.
    #[must_use]
    pub fn uri(&self) -> String {
        format!("{}://{}/{}", self.scheme, self.bucket, self.prefix)
    }

    /// The base URL given to the S3 client: `https://bucket.host` (virtual-hosted) or the
    /// endpoint URL (path style); `None` for AWS S3's default endpoint.
    #[must_use]
    pub fn client_endpoint(&self) -> Option<String> {
        match &self.endpoint {
            Endpoint::Host(host) => Some(format!("https://{}.{host}", self.bucket)),
            Endpoint::Url(url) => Some(url.as_str().trim_end_matches('/').to_owned()),
            Endpoint::Aws => None,
        }
    }

    /// The URL of the object with key `key`, as requests address it.
    #[must_use]
    pub fn object_url(&self, key: &str) -> String {
        let key = key.trim_start_matches('/');
        match &self.endpoint {
            Endpoint::Host(host) => format!("https://{}.{host}/{key}", self.bucket),
            Endpoint::Url(url) => {
                format!(
                    "{}/{}/{key}",
                    url.as_str().trim_end_matches('/'),
                    self.bucket
                )
            }
            Endpoint::Aws => format!("https://{}.s3.amazonaws.com/{key}", self.bucket),
        }
    }

    /// The signing region: `oss-cn-beijing` for `oss-cn-beijing[-internal].aliyuncs.com`,
    /// else `fallback` (the `AWS_REGION`), else `us-east-1`.
    #[must_use]
    pub fn region(&self, fallback: Option<&str>) -> String {
        if let Endpoint::Host(host) = &self.endpoint
            && let Some(region) = host.strip_suffix(".aliyuncs.com")
        {
            return region.trim_end_matches("-internal").to_owned();
        }
        fallback.unwrap_or("us-east-1").to_owned()
    }
}

/// What a spec path points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An OSS/S3 prefix.
    Bucket(BucketLocation),
    /// An archive to download (`http(s)://`) and unpack.
    Archive {
        /// The archive's URL.
        url: Url,
        /// Its format.
        format: ArchiveFormat,
    },
    /// An archive file on this host, to unpack.
    LocalArchive {
        /// The archive file.
        path: PathBuf,
        /// Its format.
        format: ArchiveFormat,
    },
    /// A directory (or file) on this host, NAS exports included; used in place.
    Local(PathBuf),
    /// A URI of a scheme this crate has no mount of its own for (`mem://bucket/model/`): a
    /// mount registered for the scheme in a [`MountRegistry`](crate::MountRegistry) resolves
    /// it, or resolving fails naming the scheme.
    Other {
        /// The scheme, lowercase.
        scheme: String,
        /// The URI as written.
        uri: String,
    },
}

impl Source {
    /// Parses a spec path (`model_path`, `processor_path`, `storage[].oss.path`), with the
    /// endpoint that serves `oss://`/`s3://` URIs. The schemes and archive suffixes are
    /// [`PathKind::parse`]'s, the rule the spec validator applies.
    ///
    /// # Errors
    /// [`Error::InvalidUri`] for a malformed path (a malformed scheme, a URI without bucket or
    /// host, an HTTP URL that is not an archive) or an `oss://` URI without endpoint.
    pub fn parse(uri: &str, endpoint: Option<&str>) -> Result<Self> {
        match PathKind::parse(uri).map_err(|reason| Error::invalid(uri, reason))? {
            PathKind::Local { path, archive } => Ok(Self::local(PathBuf::from(path), archive)),
            PathKind::Bucket {
                scheme,
                bucket,
                prefix,
            } => {
                let endpoint = match (endpoint, scheme) {
                    (Some(endpoint), _) => Endpoint::parse(endpoint)?,
                    (None, BucketScheme::S3) => Endpoint::Aws,
                    (None, BucketScheme::Oss) => {
                        return Err(Error::invalid(
                            uri,
                            "an oss:// path needs an endpoint (`oss_endpoint`, or the mount's `endpoint`)",
                        ));
                    }
                };
                let mut prefix = prefix.trim_start_matches('/').to_owned();
                if !prefix.is_empty() && !prefix.ends_with('/') {
                    prefix.push('/');
                }
                Ok(Self::Bucket(BucketLocation {
                    scheme,
                    bucket: bucket.to_owned(),
                    prefix,
                    endpoint,
                }))
            }
            PathKind::HttpArchive { format, .. } => {
                let url = Url::parse(uri).map_err(|e| Error::invalid(uri, e.to_string()))?;
                Ok(Self::Archive { url, format })
            }
            PathKind::Other { scheme, .. } => Ok(Self::Other {
                scheme: scheme.to_ascii_lowercase(),
                uri: uri.to_owned(),
            }),
        }
    }

    /// The scheme a [`MountRegistry`](crate::MountRegistry) finds this source's mount by:
    /// `oss`, `s3`, `http`, `https` or the other scheme; `None` for a path on this host.
    #[must_use]
    pub fn scheme(&self) -> Option<&str> {
        match self {
            Self::Bucket(location) => Some(location.scheme.as_str()),
            Self::Archive { url, .. } => Some(url.scheme()),
            Self::LocalArchive { .. } | Self::Local(_) => None,
            Self::Other { scheme, .. } => Some(scheme),
        }
    }

    fn local(path: PathBuf, archive: Option<ArchiveFormat>) -> Self {
        match archive {
            Some(format) if path.is_file() => Self::LocalArchive { path, format },
            _ => Self::Local(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(uri: &str, endpoint: Option<&str>) -> BucketLocation {
        match Source::parse(uri, endpoint).expect("valid") {
            Source::Bucket(b) => b,
            other => panic!("not a bucket: {other:?}"),
        }
    }

    #[test]
    fn bare_host_endpoints_should_use_virtual_hosted_https_urls() {
        let b = bucket("oss://models/resnet", Some("oss-cn-beijing.aliyuncs.com"));
        assert_eq!(b.prefix, "resnet/");
        assert!(b.endpoint.virtual_hosted());
        assert_eq!(
            b.client_endpoint().as_deref(),
            Some("https://models.oss-cn-beijing.aliyuncs.com")
        );
        assert_eq!(
            b.object_url("resnet/a.onnx"),
            "https://models.oss-cn-beijing.aliyuncs.com/resnet/a.onnx"
        );
        assert_eq!(b.region(None), "oss-cn-beijing");
        let internal = bucket("oss://m/", Some("oss-cn-shanghai-internal.aliyuncs.com"));
        assert_eq!(internal.region(Some("x")), "oss-cn-shanghai");
    }

    #[test]
    fn url_endpoints_should_use_path_style() {
        let b = bucket("s3://models/a/b/", Some("http://127.0.0.1:9000/"));
        assert!(!b.endpoint.virtual_hosted());
        assert_eq!(
            b.client_endpoint().as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            b.object_url("a/b/c.bin"),
            "http://127.0.0.1:9000/models/a/b/c.bin"
        );
        assert_eq!(b.region(Some("eu-west-1")), "eu-west-1");
        assert_eq!(b.uri(), "s3://models/a/b/");
    }

    #[test]
    fn s3_without_endpoint_should_mean_aws() {
        let b = bucket("s3://data", None);
        assert_eq!(b.endpoint, Endpoint::Aws);
        assert_eq!(b.prefix, "");
        assert_eq!(b.object_url("k"), "https://data.s3.amazonaws.com/k");
    }

    #[test]
    fn bad_uris_should_be_refused_with_the_reason() {
        let cases = [
            ("1ftp://host/m.tar.gz", None, "malformed scheme"),
            ("oss:///prefix", Some("h.com"), "no bucket"),
            ("oss://b/p", None, "needs an endpoint"),
            ("https://host/model.onnx", None, "must name an archive"),
            ("https://host/model.bz2", None, ".tar.bz2 or .tbz2"),
            ("https://host:99999/m.zip", None, "invalid port"),
            ("s3://b/p", Some("not a host!"), "an endpoint is a host"),
            ("s3://b/p", Some("ftp://h"), "http:// or https://"),
        ];
        for (uri, endpoint, reason) in cases {
            let error = Source::parse(uri, endpoint).expect_err(uri).to_string();
            assert!(error.contains(reason), "{uri}: {error}");
        }
    }

    #[test]
    fn other_schemes_should_be_left_to_registered_mounts() {
        let source = Source::parse("MEM://bucket/model/", None).expect("syntactically valid");
        assert_eq!(
            source,
            Source::Other {
                scheme: "mem".into(),
                uri: "MEM://bucket/model/".into()
            }
        );
        assert_eq!(source.scheme(), Some("mem"));
        let https = Source::parse("https://h/m.tbz2", None).expect("an archive");
        assert_eq!(https.scheme(), Some("https"));
        assert!(matches!(
            https,
            Source::Archive {
                format: ArchiveFormat::TarBz2,
                ..
            }
        ));
    }

    #[test]
    fn local_paths_should_be_archives_only_when_they_are_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("m.tbz2");
        std::fs::write(&archive, b"x").expect("write");
        let uri = archive.to_string_lossy();
        assert_eq!(
            Source::parse(&uri, None).expect("local"),
            Source::LocalArchive {
                path: archive.clone(),
                format: ArchiveFormat::TarBz2
            }
        );
        assert_eq!(Source::parse(&uri, None).expect("local").scheme(), None);
        assert!(matches!(
            Source::parse("/no/such/dir.tar", None),
            Ok(Source::Local(_))
        ));
    }
}
