//! The error type of `eas-storage`.

use std::path::PathBuf;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while mounting or reading storage. Every variant names the URI or path it
/// is about ([`Error::subject`]) and says why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URI names a scheme no mount is registered for (see
    /// [`MountRegistry`](crate::MountRegistry)).
    #[error(
        "`{uri}`: unsupported scheme `{scheme}://`: no storage mount is registered for it (registered: {}); register one with MountRegistry::register",
        scheme_list(.known)
    )]
    UnsupportedScheme {
        /// The URI as given.
        uri: String,
        /// Its scheme, lowercase.
        scheme: String,
        /// The schemes that have a mount, sorted.
        known: Vec<String>,
    },

    /// The URI or endpoint is malformed (no bucket, bad URL, unknown archive suffix...).
    #[error("`{uri}`: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The bucket, prefix, object or archive does not exist.
    #[error("`{uri}`: not found{}", detail_suffix(.detail))]
    NotFound {
        /// The URI (or object) asked for.
        uri: String,
        /// More context, such as the server's message.
        detail: String,
    },

    /// The store refused the credentials (or they are missing).
    #[error("`{uri}`: credentials refused: {reason}")]
    CredentialsRefused {
        /// The URI being accessed.
        uri: String,
        /// The store's answer.
        reason: String,
    },

    /// Fewer (or more) bytes arrived than the source announced.
    #[error("`{uri}`: truncated download: expected {expected} bytes, got {got}")]
    Truncated {
        /// The object or archive.
        uri: String,
        /// The announced size.
        expected: u64,
        /// What arrived.
        got: u64,
    },

    /// The bytes do not match their size, checksum or ETag.
    #[error("`{uri}`: corrupted data: {reason}")]
    Corrupted {
        /// The object, or the peer answer, that failed verification.
        uri: String,
        /// Which check failed.
        reason: String,
    },

    /// An archive could not be read (bad compression, bad headers, unsupported entry).
    #[error("archive `{archive}`: corrupted or unreadable: {reason}")]
    BadArchive {
        /// The archive.
        archive: String,
        /// What failed.
        reason: String,
    },

    /// An archive entry would land outside the target directory; nothing was extracted.
    #[error("archive `{archive}`: entry `{entry}` escapes the target")]
    ArchiveEscape {
        /// The archive.
        archive: String,
        /// The offending entry, as written in the archive.
        entry: String,
    },

    /// An archive would unpack to more than its
    /// [`UnpackLimits`](crate::archive::UnpackLimits) allow (an archive bomb, or limits set too
    /// low for it); nothing was kept.
    #[error("archive `{archive}`: refused{}: {limit}", entry_suffix(.entry))]
    ArchiveLimit {
        /// The archive.
        archive: String,
        /// The entry being unpacked when the limit was crossed, as written in the archive
        /// (empty when it was crossed while downloading).
        entry: String,
        /// Which limit was crossed, and its value.
        limit: String,
    },

    /// The object store (or an HTTP server) answered with an error not covered above.
    #[error("`{uri}`: {reason}")]
    Remote {
        /// The URI being accessed.
        uri: String,
        /// The error, for a person.
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The spec asks for something that cannot be resolved (missing entry file, mounts that
    /// collide, a cache in front of an unknown mount...).
    #[error("`{subject}`: {reason}")]
    Spec {
        /// The spec field or path concerned.
        subject: String,
        /// What is wrong.
        reason: String,
    },

    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn scheme_list(known: &[String]) -> String {
    if known.is_empty() {
        return "none".to_owned();
    }
    known
        .iter()
        .map(|scheme| format!("{scheme}://"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn entry_suffix(entry: &str) -> String {
    if entry.is_empty() {
        String::new()
    } else {
        format!(" at entry `{entry}`")
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl Error {
    /// The URI or path this error is about.
    #[must_use]
    pub fn subject(&self) -> String {
        match self {
            Self::UnsupportedScheme { uri, .. }
            | Self::InvalidUri { uri, .. }
            | Self::NotFound { uri, .. }
            | Self::CredentialsRefused { uri, .. }
            | Self::Truncated { uri, .. }
            | Self::Corrupted { uri, .. }
            | Self::Remote { uri, .. } => uri.clone(),
            Self::BadArchive { archive, .. }
            | Self::ArchiveEscape { archive, .. }
            | Self::ArchiveLimit { archive, .. } => archive.clone(),
            Self::Spec { subject, .. } => subject.clone(),
            Self::Io { path, .. } => path.display().to_string(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::InvalidUri`].
    pub fn invalid(uri: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidUri {
            uri: uri.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Corrupted`].
    pub fn corrupted(uri: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupted {
            uri: uri.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Spec`].
    pub fn spec(subject: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Spec {
            subject: subject.into(),
            reason: reason.into(),
        }
    }

    /// Maps an `object_store` error about `uri` to the variant that says what happened.
    pub fn from_store(uri: impl Into<String>, error: object_store::Error) -> Self {
        let uri = uri.into();
        match error {
            object_store::Error::NotFound { source, .. } => Self::NotFound {
                uri,
                detail: source.to_string(),
            },
            object_store::Error::Unauthenticated { source, .. }
            | object_store::Error::PermissionDenied { source, .. } => Self::CredentialsRefused {
                uri,
                reason: source.to_string(),
            },
            object_store::Error::Precondition { source, .. } => Self::Corrupted {
                uri,
                reason: format!("the object changed while it was read ({source})"),
            },
            other => {
                let text = other.to_string();
                if looks_like_auth_failure(&text) {
                    Self::CredentialsRefused { uri, reason: text }
                } else if text.contains("NoSuchBucket") || text.contains("NoSuchKey") {
                    Self::NotFound { uri, detail: text }
                } else {
                    Self::Remote {
                        uri,
                        reason: text,
                        source: Some(Box::new(other)),
                    }
                }
            }
        }
    }
}

/// S3 servers answer refused credentials with 403 and one of these codes; object_store does
/// not always map them to `Unauthenticated`.
fn looks_like_auth_failure(text: &str) -> bool {
    [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "403 Forbidden",
    ]
    .iter()
    .any(|code| text.contains(code))
}

impl From<eas_core::Error> for Error {
    /// Recovers this crate's error from a [`eas_core::Error::Storage`] that carries one (what
    /// the mounts return through the trait); other errors become [`Error::Remote`].
    fn from(error: eas_core::Error) -> Self {
        match error {
            eas_core::Error::Storage {
                source: Some(source),
                uri,
                reason,
            } => match source.downcast::<Self>() {
                Ok(inner) => *inner,
                Err(source) => Self::Remote {
                    uri,
                    reason,
                    source: Some(source),
                },
            },
            eas_core::Error::Io { path, source } => Self::Io { path, source },
            other => Self::Remote {
                uri: String::new(),
                reason: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}

impl From<Error> for eas_core::Error {
    fn from(error: Error) -> Self {
        Self::Storage {
            uri: error.subject(),
            reason: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_should_keep_their_subject_and_source_across_the_trait_boundary() {
        let error = Error::ArchiveEscape {
            archive: "m.tar.gz".into(),
            entry: "../etc/passwd".into(),
        };
        let core: eas_core::Error = error.into();
        assert!(core.to_string().contains("m.tar.gz"));
        assert!(
            core.to_string()
                .contains("entry `../etc/passwd` escapes the target")
        );
        assert!(std::error::Error::source(&core).is_some());
    }

    #[test]
    fn refused_credentials_should_be_recognised_in_generic_store_errors() {
        let error = object_store::Error::Generic {
            store: "S3",
            source: "Client error with status 403 Forbidden: <Code>InvalidAccessKeyId</Code>"
                .into(),
        };
        assert!(matches!(
            Error::from_store("s3://b/p", error),
            Error::CredentialsRefused { .. }
        ));
    }
}
