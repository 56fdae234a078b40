//! Where a spec path points: the one owner of the rule "which schemes and archive suffixes
//! exist".
//!
//! `model_path`, `processor_path` and `storage[].oss.path` are read here, from their text
//! alone (no file system, no network), by the validator and by `eas-storage`'s resolver alike,
//! so that what `eas validate` accepts is what the runtime can resolve and the reasons read the
//! same in both:
//!
//! | path | [`PathKind`] |
//! |---|---|
//! | `oss://bucket/prefix/`, `s3://bucket/prefix/` | [`Bucket`](PathKind::Bucket) |
//! | `http(s)://host/m.tar.gz` (any [`ArchiveFormat`] suffix; query and fragment ignored) | [`HttpArchive`](PathKind::HttpArchive) |
//! | `/models/resnet`, `models/m.onnx`, `/models/m.tar.gz` | [`Local`](PathKind::Local) |
//! | any other `scheme://...`, such as `mem://bucket/model/` | [`Other`](PathKind::Other) |
//!
//! A scheme this module does not know is *not* an error: applications register their own
//! storage mounts by scheme (`eas_storage::MountRegistry`), and only the runtime knows which
//! are registered. Validation therefore accepts any syntactically valid `scheme://rest` and
//! the resolver refuses an unregistered scheme when the service starts, naming the scheme and
//! the registered ones. The validator has no warning channel, so `eas validate` accepts such
//! a path silently. Malformed paths are still refused: a scheme that is not a letter followed
//! by letters, digits, `+`, `-` or `.`; nothing after `://`; a bucket URI without bucket; an
//! HTTP(S) URL without host or that does not name an archive.
//!
//! ```
//! use eas_core::spec::{ArchiveFormat, BucketScheme, PathKind};
//!
//! assert_eq!(
//!     PathKind::parse("oss://models/resnet/"),
//!     Ok(PathKind::Bucket { scheme: BucketScheme::Oss, bucket: "models", prefix: "resnet/" })
//! );
//! assert_eq!(
//!     PathKind::parse("https://host/m.tbz2?sig=1"),
//!     Ok(PathKind::HttpArchive { secure: true, format: ArchiveFormat::TarBz2 })
//! );
//! assert_eq!(PathKind::parse("mem://bucket/model/").map(|p| p.scheme()), Ok(Some("mem")));
//! // A bare .bz2 compresses one file; it is not an archive of a model directory.
//! let refused = PathKind::parse("https://host/model.bz2").unwrap_err();
//! assert!(refused.contains(".tar.bz2 or .tbz2"), "{refused}");
//! ```

use std::fmt;

/// The archive formats a model or processor package may come as, with the name suffixes that
/// say which (compared case-insensitively).
///
/// A bare `.bz2` or `.gz` is not an archive: it compresses a single file, while a model is a
/// directory.
///
/// ```
/// use eas_core::spec::ArchiveFormat;
///
/// assert_eq!(ArchiveFormat::from_name("M.TGZ"), Some(ArchiveFormat::TarGz));
/// assert_eq!(ArchiveFormat::from_name("m.tbz2"), Some(ArchiveFormat::TarBz2));
/// assert_eq!(ArchiveFormat::from_name("m.bz2"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveFormat {
    /// `.tar.gz` or `.tgz`.
    TarGz,
    /// `.tar`.
    Tar,
    /// `.tar.bz2` or `.tbz2`.
    TarBz2,
    /// `.zip`.
    Zip,
}

impl ArchiveFormat {
    /// Every format, in the order messages list them.
    pub const ALL: [Self; 4] = [Self::TarGz, Self::Tar, Self::TarBz2, Self::Zip];

    /// The name suffixes of this format, lowercase, the usual one first.
    #[must_use]
    pub const fn suffixes(self) -> &'static [&'static str] {
        match self {
            Self::TarGz => &[".tar.gz", ".tgz"],
            Self::Tar => &[".tar"],
            Self::TarBz2 => &[".tar.bz2", ".tbz2"],
            Self::Zip => &[".zip"],
        }
    }

    /// The format a file name (or URL path) ends with, if any, ignoring case.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|format| format.suffixes().iter().any(|s| name.ends_with(s)))
    }

    /// Every suffix, for messages: `.tar.gz, .tgz, .tar, .tar.bz2, .tbz2, .zip`.
    #[must_use]
    pub fn suffix_list() -> String {
        Self::ALL
            .iter()
            .flat_map(|format| format.suffixes())
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// For a name that is a compressed single file (`.bz2`, `.gz`) rather than an archive,
    /// the archive format that was probably meant.
    fn meant_by(name: &str) -> Option<(&'static str, Self)> {
        let name = name.to_ascii_lowercase();
        [(".bz2", Self::TarBz2), (".gz", Self::TarGz)]
            .into_iter()
            .find(|(suffix, _)| name.ends_with(suffix))
    }
}

/// Its usual suffix without the dot: `tar.gz`, `tar`, `tar.bz2`, `zip`.
impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffixes()[0].trim_start_matches('.'))
    }
}

/// The object store an `oss://` or `s3://` URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketScheme {
    /// `oss://`: Alibaba Cloud OSS (S3-compatible, virtual-hosted by default).
    Oss,
    /// `s3://`: AWS S3 or any S3-compatible server.
    S3,
}

impl BucketScheme {
    /// The scheme as written in a URI: `oss` or `s3`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Oss => "oss",
            Self::S3 => "s3",
        }
    }
}

impl fmt::Display for BucketScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a spec path points at, read from its text alone. See the module docs of `eas_core::spec` (`location.rs`) for the
/// forms and for why an unknown scheme is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind<'a> {
    /// An OSS or S3 prefix.
    Bucket {
        /// `oss://` or `s3://`.
        scheme: BucketScheme,
        /// The bucket (never empty).
        bucket: &'a str,
        /// Everything after the bucket's `/`, as written (may be empty).
        prefix: &'a str,
    },
    /// An archive to download over HTTP(S) and unpack.
    HttpArchive {
        /// `https://` rather than `http://`.
        secure: bool,
        /// The archive's format, from the URL's path.
        format: ArchiveFormat,
    },
    /// A path on this host (a directory, a file, or an archive to unpack).
    Local {
        /// The path as written.
        path: &'a str,
        /// The archive format its name ends with, if any (whether it is a file is for the
        /// caller to find out).
        archive: Option<ArchiveFormat>,
    },
    /// A URI with a scheme eas does not know itself: resolved, when the service starts, by the
    /// storage mount registered for the scheme.
    Other {
        /// The scheme as written (compare it ignoring case).
        scheme: &'a str,
        /// Everything after `://` (never empty).
        rest: &'a str,
    },
}

impl<'a> PathKind<'a> {
    /// Reads a `model_path` or `processor_path`.
    ///
    /// # Errors
    /// Why the path is malformed, naming it (without the field, which the caller knows).
    pub fn parse(path: &'a str) -> Result<Self, String> {
        let Some((scheme, rest)) = path.split_once("://") else {
            return Ok(Self::Local {
                path,
                archive: ArchiveFormat::from_name(path),
            });
        };
        check_scheme(path, scheme)?;
        match scheme.to_ascii_lowercase().as_str() {
            "oss" => bucket(path, BucketScheme::Oss, rest),
            "s3" => bucket(path, BucketScheme::S3, rest),
            lower @ ("http" | "https") => http_archive(path, lower == "https", rest),
            _ if rest.is_empty() => Err(format!(
                "\"{path}\" names nothing after {scheme}://; expected {scheme}://<location>"
            )),
            _ => Ok(Self::Other { scheme, rest }),
        }
    }

    /// Reads a `storage[].oss.path`: an OSS/S3 prefix, or a URI of a scheme left to a
    /// registered mount ([`PathKind::Other`]); neither a local path (that is `storage[].local`)
    /// nor an HTTP(S) archive.
    ///
    /// # Errors
    /// Why the path is malformed or of the wrong kind, naming it.
    pub fn parse_mount(path: &'a str) -> Result<Self, String> {
        match Self::parse(path)? {
            kind @ (Self::Bucket { .. } | Self::Other { .. }) => Ok(kind),
            Self::Local { .. } | Self::HttpArchive { .. } => Err(format!(
                "expected oss://bucket/prefix/, s3://bucket/prefix/ or a URI whose scheme has a registered storage mount, found \"{path}\""
            )),
        }
    }

    /// The scheme: `oss`, `s3`, `http`, `https`, the scheme of an [`Other`](Self::Other) URI
    /// as written, or `None` for a local path.
    #[must_use]
    pub const fn scheme(&self) -> Option<&'a str> {
        match self {
            Self::Bucket { scheme, .. } => Some(scheme.as_str()),
            Self::HttpArchive { secure: true, .. } => Some("https"),
            Self::HttpArchive { secure: false, .. } => Some("http"),
            Self::Local { .. } => None,
            Self::Other { scheme, .. } => Some(scheme),
        }
    }
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn check_scheme(path: &str, scheme: &str) -> Result<(), String> {
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if valid {
        Ok(())
    } else if scheme.is_empty() {
        Err(format!("\"{path}\" names no scheme before ://"))
    } else {
        Err(format!(
            "\"{path}\" has a malformed scheme \"{scheme}\": a scheme is a letter followed by letters, digits, '+', '-' or '.'"
        ))
    }
}

fn bucket<'a>(path: &str, scheme: BucketScheme, rest: &'a str) -> Result<PathKind<'a>, String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "\"{path}\" names no bucket; expected {scheme}://bucket/prefix/"
        ));
    }
    Ok(PathKind::Bucket {
        scheme,
        bucket,
        prefix,
    })
}

fn http_archive(path: &str, secure: bool, rest: &str) -> Result<PathKind<'static>, String> {
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (host, url_path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(format!("\"{path}\" names no host"));
    }
    if let Some(format) = ArchiveFormat::from_name(url_path) {
        return Ok(PathKind::HttpArchive { secure, format });
    }
    let mut reason = format!(
        "an HTTP(S) URL must name an archive ({}), found \"{path}\"",
        ArchiveFormat::suffix_list()
    );
    if let Some((suffix, meant)) = ArchiveFormat::meant_by(url_path) {
        reason.push_str(&format!(
            "; a bare {suffix} compresses a single file, not a model directory: pack it as {}",
            meant.suffixes().join(" or ")
        ));
    }
    Err(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suffix_should_name_exactly_one_format() {
        for format in ArchiveFormat::ALL {
            for suffix in format.suffixes() {
                assert_eq!(
                    ArchiveFormat::from_name(&format!("m{suffix}")),
                    Some(format)
                );
                let upper = format!("M{}", suffix.to_ascii_uppercase());
                assert_eq!(ArchiveFormat::from_name(&upper), Some(format), "{upper}");
            }
        }
        for name in ["m.bz2", "m.gz", "m.onnx", "m.tar/", "tar", "m.tar.xz", ""] {
            assert_eq!(ArchiveFormat::from_name(name), None, "{name}");
        }
        assert_eq!(
            ArchiveFormat::suffix_list(),
            ".tar.gz, .tgz, .tar, .tar.bz2, .tbz2, .zip"
        );
        assert_eq!(ArchiveFormat::TarBz2.to_string(), "tar.bz2");
    }

    #[test]
    fn the_published_schema_should_list_every_suffix() {
        // The description of `model_path` (doc comment -> JSON Schema) repeats the list for
        // readers; this keeps it from drifting.
        let schema = super::super::json_schema();
        let description = schema["properties"]["model_path"]["description"]
            .as_str()
            .expect("model_path is described");
        for suffix in ArchiveFormat::ALL.iter().flat_map(|f| f.suffixes()) {
            assert!(description.contains(suffix), "{suffix}: {description}");
        }
    }

    #[test]
    fn paths_should_be_classified_by_scheme_and_suffix() {
        let cases = [
            (
                "oss://b/p/q",
                PathKind::Bucket {
                    scheme: BucketScheme::Oss,
                    bucket: "b",
                    prefix: "p/q",
                },
            ),
            (
                "S3://b",
                PathKind::Bucket {
                    scheme: BucketScheme::S3,
                    bucket: "b",
                    prefix: "",
                },
            ),
            (
                "http://h:80/a/m.zip?x=1#f",
                PathKind::HttpArchive {
                    secure: false,
                    format: ArchiveFormat::Zip,
                },
            ),
            (
                "/m/model.tar",
                PathKind::Local {
                    path: "/m/model.tar",
                    archive: Some(ArchiveFormat::Tar),
                },
            ),
            (
                "rel/m.onnx",
                PathKind::Local {
                    path: "rel/m.onnx",
                    archive: None,
                },
            ),
            (
                "mem://bucket/model/",
                PathKind::Other {
                    scheme: "mem",
                    rest: "bucket/model/",
                },
            ),
            (
                "file:///models",
                PathKind::Other {
                    scheme: "file",
                    rest: "/models",
                },
            ),
        ];
        for (path, kind) in cases {
            assert_eq!(PathKind::parse(path), Ok(kind), "{path}");
        }
    }

    #[test]
    fn malformed_paths_should_be_refused_with_the_reason() {
        let cases = [
            (
                "oss:///dir",
                "names no bucket; expected oss://bucket/prefix/",
            ),
            ("https:///m.tar.gz", "names no host"),
            ("https://h.zip", "must name an archive"),
            ("https://h/m.tar.gz/", "must name an archive"),
            ("https://h/m.zip.onnx?f=m.zip", "must name an archive"),
            ("https://h/m.bz2", "pack it as .tar.bz2 or .tbz2"),
            ("https://h/m.gz", "pack it as .tar.gz or .tgz"),
            ("://x", "names no scheme"),
            ("1mem://x", "malformed scheme \"1mem\""),
            ("./a://b", "malformed scheme"),
            ("mem://", "names nothing after mem://"),
        ];
        for (path, reason) in cases {
            let error = PathKind::parse(path).expect_err(path);
            assert!(error.contains(reason), "{path}: {error}");
            assert!(
                error.contains(path),
                "{path}: the reason names the path: {error}"
            );
        }
    }

    #[test]
    fn mount_paths_should_be_buckets_or_other_schemes() {
        assert!(PathKind::parse_mount("oss://b/p/").is_ok());
        assert!(PathKind::parse_mount("mem://b/p/").is_ok());
        for path in ["/local", "https://h/m.tar.gz"] {
            let error = PathKind::parse_mount(path).expect_err(path);
            assert!(error.contains("expected oss://bucket/prefix/"), "{error}");
        }
        assert!(PathKind::parse_mount("oss://").is_err());
    }
}
