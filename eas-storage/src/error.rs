//! The error type of `eas-storage`.

use std::path::PathBuf;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while mounting or reading storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URI names a scheme no mount handles.
    #[error(
        "`{uri}`: unsupported scheme; use oss://, s3://, http(s):// (an archive) or a local path"
    )]
    UnsupportedScheme {
        /// The URI as given.
        uri: String,
    },

    /// An archive entry would land outside the target directory; nothing was extracted.
    #[error("archive `{archive}`: entry `{entry}` escapes the target directory")]
    ArchiveEscape {
        /// The archive.
        archive: String,
        /// The offending entry, as written in the archive.
        entry: String,
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

impl Error {
    /// The URI or path this error is about.
    #[must_use]
    pub fn subject(&self) -> String {
        match self {
            Self::UnsupportedScheme { uri } => uri.clone(),
            Self::ArchiveEscape { archive, .. } => archive.clone(),
            Self::Io { path, .. } => path.display().to_string(),
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
        assert!(core.to_string().contains("../etc/passwd"));
        assert!(std::error::Error::source(&core).is_some());
    }
}
