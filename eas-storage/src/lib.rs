//! `eas-storage`: the [`StorageMount`](eas_core::StorageMount)s of eas and the memory cache
//! that instances of a service share.
//!
//! - [`BucketMount`]: an OSS or S3 prefix (`oss://bucket/prefix/`, `s3://...`) through
//!   `object_store`; eager (parallel, ranged GETs) or lazy; reuses verified files after a
//!   restart.
//! - [`LocalMount`]: a local directory or a NAS export the OS has mounted, used in place.
//! - [`ArchiveMount`]: an HTTP(S) or local archive (the suffixes of
//!   [`ArchiveFormat`](location::ArchiveFormat)), unpacked safely within [`UnpackLimits`].
//! - [`MountRegistry`]: mounts by URI scheme, the built-in ones and any an application
//!   registers for its own scheme (`mem://...`).
//! - [`MemoryCache`] and [`peer`]: hot files in memory up to a byte budget, served to and
//!   fetched from the other instances over HTTP, verified whatever their source.
//! - [`resolve`](resolve::resolve): a spec's `model_path`, `model_entry`, `processor_path`
//!   and `storage[]` to local paths, before an instance starts.
//!
//! Errors are this crate's [`Error`], which converts into [`eas_core::Error::Storage`] at the
//! trait boundary.
//!
//! ```no_run
//! # async fn demo(spec: &eas_core::ServiceSpec) -> eas_storage::Result<()> {
//! use eas_storage::resolve::{resolve, ResolveOptions};
//!
//! let resolved = resolve(spec, &ResolveOptions::new("/var/lib/eas/my-service")).await?;
//! println!("{:?} {:?}", resolved.model_dir, resolved.model_entry);
//! # Ok(()) }
//! ```

pub mod archive;
pub mod bucket;
pub mod cache;
pub mod credentials;
mod download;
pub mod error;
pub mod local;
pub mod local_fs;
pub mod location;
pub mod peer;
pub mod progress;
pub mod registry;
pub mod resolve;
pub mod verify;

pub use archive::{ArchiveMount, UnpackLimits};
pub use bucket::{BucketMount, TransferOptions};
pub use cache::{CacheStats, MemoryCache};
pub use credentials::Credentials;
pub use error::{Error, Result};
pub use local::LocalMount;
pub use registry::{MountFactory, MountRegistry, MountRequest};
