//! `eas-storage`: the [`StorageMount`](eas_core::StorageMount)s of eas (OSS/S3 through
//! `object_store`, NAS and local paths, HTTP archives) and the memory cache that instances of
//! a service share.
//!
//! The mounts arrive with their own issue; this crate already owns its [`Error`], which
//! converts into [`eas_core::Error::Storage`] at the trait boundary.

pub mod error;

pub use error::{Error, Result};
