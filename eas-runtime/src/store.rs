//! The control plane's desired state across restarts: which services exist, their spec as
//! given, whether they are stopped, and their version.
//!
//! # Why redb
//!
//! The store is one [redb](https://docs.rs/redb) file: a pure-Rust embedded ACID key-value
//! store built from copy-on-write B-trees with checksummed commits.
//!
//! - Against SQLite: the same guarantees without a C library to build, link or ship.
//! - Against hand-rolled files (one JSON file per service, write-temp-then-rename): atomicity,
//!   crash safety and recovery are redb's design and tested there, not something each caller
//!   re-derives (a rename is atomic, but the directory fsync, the torn write of a large file and
//!   the half-done multi-file update are each a bug waiting).
//!
//! # What is durable when [`StateStore::put`] returns
//!
//! Each `put` or `delete` is one write transaction committed with
//! [`redb::Durability::Immediate`] and two-phase commit: when it returns `Ok`, the change has
//! been `fsync`ed and survives a `kill -9` of the server and, as far as the disk honours
//! `fsync`, a power cut. A crash in the middle of a `put` leaves the previous record or the
//! new one, never a mixture: the next [`StateStore::open`] repairs the file back to its last
//! commit. Two-phase commit costs one more `fsync` per write; writes here are rare (a user
//! creates, updates or stops a service), and specs carry user-supplied bytes, which is the case
//! redb's two-phase commit is meant for.
//!
//! # File layout
//!
//! ```text
//! <dir>/state.redb          the one file; <dir> is StateStore::default_dir() unless given
//!   table "services"        key: service name (UTF-8), value: ServiceRecord as JSON bytes
//! ```
//!
//! Records are JSON, not a binary layout, so that a record written by an older eas still reads
//! in a newer one (fields it lacks take their defaults) and a record written by a newer eas
//! keeps the fields this one does not know when it is written back ([`ServiceRecord::extra`]).
//! A record that does not decode is reported with its key ([`StoreError::Decode`]) and does not
//! hide the others ([`Listing::errors`]).
//!
//! The file is locked while open: a second server opening the same directory gets
//! [`StoreError::Locked`] naming the file. A file that is not a redb file, or is truncated or
//! corrupt, gives [`StoreError::Corrupt`] naming the file; a panic inside redb on a hostile file
//! is caught and reported the same way (unless the binary is built with `panic = "abort"`).
//!
//! The API is synchronous: a write waits for the disk. From async code call it through
//! `tokio::task::spawn_blocking`; [`StateStore`] is `Clone` (an `Arc` inside), `Send` and `Sync`.
//!
//! ```no_run
//! use eas_runtime::store::{ServiceRecord, StateStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = StateStore::open(&StateStore::default_dir())?;
//! let spec = serde_json::json!({"metadata": {"name": "echo", "instance": 1}, "processor": "echo"});
//! let record = ServiceRecord::new(spec).with_version(1).with_updated_at_unix_ms(1_700_000_000_000);
//!
//! let writer = store.clone();
//! tokio::task::spawn_blocking(move || writer.put("echo", &record)).await??;
//!
//! let listing = store.list()?;
//! for error in &listing.errors {
//!     eprintln!("skipping a stored service: {error}");
//! }
//! for (name, record) in &listing.records {
//!     println!("{name}: version {}, stopped {}", record.version, record.stopped);
//! }
//! # Ok(())
//! # }
//! ```

use std::ffi::OsString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    CommitError, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable,
    StorageError, TableDefinition, TableError, TransactionError,
};
use serde::{Deserialize, Serialize};

/// The file name of the store inside its directory.
pub const FILE_NAME: &str = "state.redb";

/// The largest record, as encoded JSON, that [`StateStore::put`] accepts and that a read
/// decodes: 16 MiB. A service spec is a few KiB; anything near this is a mistake or an attack.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The longest service name, in bytes, that the store accepts as a key. This bounds a key's
/// size only; what a valid service name is belongs to the spec, not to the store.
pub const MAX_NAME_BYTES: usize = 1024;

/// The one table: service name -> [`ServiceRecord`] as JSON.
const SERVICES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("services");

/// How often, and how far apart, [`StateStore::open`] retries a locked file before it says
/// another server holds it (200 ms in all; see the comment there).
const LOCKED_RETRIES: u32 = 10;
const LOCKED_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// redb's page cache. The default (1 GiB) suits a database; desired state is a few MiB.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// What can go wrong with the state store. Every variant names the file or the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store's directory could not be created.
    #[error("cannot create state directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },

    /// Another process (another eas server) has the store open.
    #[error(
        "state store {} is in use: another eas server holds it (stop that server, or give \
         this one another state directory)",
        path.display()
    )]
    Locked {
        /// The store file.
        path: PathBuf,
    },

    /// The file is not a redb file, or is truncated or corrupt, or was written by a redb
    /// file format this one cannot read.
    #[error("state store {} is corrupt or not a state store: {reason}", path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What redb found.
        reason: String,
    },

    /// Reading or writing the file failed (I/O, a full disk, a failed commit).
    #[error("state store {}: {op} failed: {reason}", path.display())]
    Io {
        /// The store file.
        path: PathBuf,
        /// What was being done (`open`, `put "name"`, `list`, ...).
        op: String,
        /// Why it failed.
        reason: String,
    },

    /// A record to store, or a stored record, is larger than [`MAX_RECORD_BYTES`].
    #[error("service `{key}`: record of {size} bytes is larger than the limit of {limit} bytes")]
    RecordTooLarge {
        /// The service name.
        key: String,
        /// The record's size as JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A service name is longer than [`MAX_NAME_BYTES`].
    #[error("service name `{prefix}...` is {size} bytes, longer than the limit of {limit}")]
    NameTooLong {
        /// The name's first few characters.
        prefix: String,
        /// The name's length in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A record could not be encoded as JSON.
    #[error("service `{key}`: cannot encode record: {reason}")]
    Encode {
        /// The service name.
        key: String,
        /// Why not.
        reason: String,
    },

    /// A stored record is not a [`ServiceRecord`] (damaged, or written by something else).
    #[error("state store {}: service `{key}`: cannot decode record: {reason}", path.display())]
    Decode {
        /// The store file.
        path: PathBuf,
        /// The service name.
        key: String,
        /// Why not.
        reason: String,
    },
}

/// One service's desired state, as stored.
///
/// Fields a record lacks take their defaults when read (all but `spec`), so records written by
/// an older eas still read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceRecord {
    /// The service spec (service.json) as the user gave it. Kept as JSON so that the store does
    /// not depend on the spec types' layout; the control plane parses it.
    pub spec: serde_json::Value,
    /// Whether the service is stopped (kept, but with no replicas running).
    #[serde(default)]
    pub stopped: bool,
    /// The desired state's version, set by the control plane (the store does not check it).
    #[serde(default)]
    pub version: u64,
    /// When the control plane last changed this record, in milliseconds since the Unix epoch.
    /// Set by the caller from its clock: the store reads no time.
    #[serde(default)]
    pub updated_at_unix_ms: u64,
    /// A human-readable note about the last change (why it stopped, who updated it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The versions of what runs, oldest first (the control plane keeps the last few). Empty
    /// in records of an earlier eas: `spec` is then version 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionRecord>,
    /// The version that runs (or is being rolled out); 0 in records of an earlier eas.
    #[serde(default)]
    pub service_version: u32,
    /// How it takes its group's traffic (`metadata.group`), once released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::traffic::Release>,
    /// Where copies of its requests go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorRecord>,
    /// Fields this version of eas does not know, kept as they were read and written back as
    /// they are. Without it, an older eas that rewrites a record (to stop a service, say) would
    /// silently drop what a newer eas stored in it. New fields get their own member in a later
    /// version; this is not a place to put data on purpose.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A service's mirror: the share of its requests copied to each target service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MirrorRecord {
    /// The share copied, in percent (0-100).
    pub ratio: u32,
    /// The services copies go to.
    pub targets: Vec<String>,
}

/// One version of a service: what runs, as the spec gave it when the version was made.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VersionRecord {
    /// Its number: 1 for the spec the service was created with, one more for each update
    /// that needed new instances.
    pub version: u32,
    /// The spec (service.json) of this version.
    pub spec: serde_json::Value,
    /// When it was made, in milliseconds since the Unix epoch.
    pub built_at_unix_ms: u64,
    /// What made it (created, which fields an update changed).
    pub message: String,
}

impl ServiceRecord {
    /// A running service at version 0, updated at time 0, with no message.
    #[must_use]
    pub fn new(spec: serde_json::Value) -> Self {
        Self {
            spec,
            stopped: false,
            version: 0,
            updated_at_unix_ms: 0,
            message: None,
            versions: Vec::new(),
            service_version: 0,
            release: None,
            mirror: None,
            extra: serde_json::Map::new(),
        }
    }

    /// This record with its traffic settings: its release into its group, its mirror.
    #[must_use]
    pub fn with_traffic(
        mut self,
        release: Option<crate::traffic::Release>,
        mirror: Option<MirrorRecord>,
    ) -> Self {
        self.release = release;
        self.mirror = mirror;
        self
    }

    /// This record with its service's versions, `current` the one that runs.
    #[must_use]
    pub fn with_versions(mut self, versions: Vec<VersionRecord>, current: u32) -> Self {
        self.versions = versions;
        self.service_version = current;
        self
    }

    /// This record, stopped or not.
    #[must_use]
    pub fn with_stopped(mut self, stopped: bool) -> Self {
        self.stopped = stopped;
        self
    }

    /// This record at `version`.
    #[must_use]
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// This record, changed at `unix_ms` milliseconds since the Unix epoch.
    #[must_use]
    pub fn with_updated_at_unix_ms(mut self, unix_ms: u64) -> Self {
        self.updated_at_unix_ms = unix_ms;
        self
    }

    /// This record with a message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// What [`StateStore::list`] found: the records that decode, sorted by name, and one error for
/// each that does not (each naming its key), so one damaged record hides none of the others.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Listing {
    /// The records that decode, by service name (iterates in name order).
    pub records: std::collections::BTreeMap<String, ServiceRecord>,
    /// One [`StoreError::Decode`] or [`StoreError::RecordTooLarge`] per record that does not
    /// decode, in name order.
    pub errors: Vec<StoreError>,
}

/// The desired-state store: one redb file, see the [module docs](self).
///
/// Cheap to clone (an `Arc` inside); `Send` and `Sync`. Each call is one transaction; calls from
/// several threads are serialised by redb (one writer at a time, readers alongside).
#[derive(Clone)]
pub struct StateStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens the store in `dir` (creating the directory and `dir/state.redb` if needed).
    ///
    /// After a crash this repairs the file back to its last commit, which reads the whole file
    /// (fast for desired state, which is small).
    ///
    /// # Errors
    ///
    /// [`StoreError::CreateDir`] if the directory cannot be created, [`StoreError::Locked`] if
    /// another process has the store open (after retrying for 200 ms), [`StoreError::Corrupt`] if the file is not a
    /// readable state store, [`StoreError::Io`] otherwise.
    pub fn open(dir: &Path) -> Result<StateStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let mut tries = 0;
        let db = loop {
            let opened = guard(&path, "open", || {
                Database::builder()
                    .set_cache_size(CACHE_BYTES)
                    .create(&path)
                    .map_err(|e| open_error(&path, e))
            });
            match opened {
                // The lock is on the open file, and a child process this process spawns holds
                // a copy of every descriptor between its fork and its exec: a file this
                // process has just closed can look locked for that instant. Another server
                // holds it for good; retry briefly to tell the two apart.
                Err(StoreError::Locked { .. }) if tries < LOCKED_RETRIES => {
                    tries += 1;
                    std::thread::sleep(LOCKED_RETRY_PAUSE);
                }
                other => break other?,
            }
        };
        let store = StateStore {
            inner: Arc::new(Inner { db, path }),
        };
        // Create the table now, so that reads of a new store find it and a file that opens but
        // cannot be written fails here rather than at the first put.
        store.write("open", |_| Ok(()))?;
        Ok(store)
    }

    /// The default directory, in order of precedence:
    ///
    /// 1. `$EAS_STATE_DIR`, as given;
    /// 2. `$XDG_STATE_HOME/eas` (ignored when not absolute, as the XDG spec says);
    /// 3. `$HOME/.local/state/eas` (the XDG default);
    /// 4. `./eas-state`, relative to the working directory.
    ///
    /// An empty variable counts as unset.
    #[must_use]
    pub fn default_dir() -> PathBuf {
        default_dir_from(
            std::env::var_os("EAS_STATE_DIR"),
            std::env::var_os("XDG_STATE_HOME"),
            std::env::var_os("HOME"),
        )
    }

    /// The store file (`<dir>/state.redb`).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stores `record` under `name`, replacing any record there, in one durable write
    /// transaction: when this returns `Ok` the record is on disk (see the module docs).
    ///
    /// # Errors
    ///
    /// [`StoreError::NameTooLong`] or [`StoreError::RecordTooLarge`] (nothing is written),
    /// [`StoreError::Encode`], or [`StoreError::Io`] if the transaction fails (nothing is
    /// written either: the previous record stays).
    pub fn put(&self, name: &str, record: &ServiceRecord) -> Result<(), StoreError> {
        check_name(name)?;
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Encode {
            key: name.to_owned(),
            reason: e.to_string(),
        })?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(StoreError::RecordTooLarge {
                key: name.to_owned(),
                size: bytes.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        self.write(&format!("put {name:?}"), |table| {
            table.insert(name, bytes.as_slice()).map(drop)
        })
    }

    /// The record stored under `name`, if any (a name longer than [`MAX_NAME_BYTES`] is never
    /// stored, so it is not found).
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] or [`StoreError::RecordTooLarge`] if the stored record is not a
    /// [`ServiceRecord`], [`StoreError::Io`] or [`StoreError::Corrupt`] if the file cannot be
    /// read.
    pub fn get(&self, name: &str) -> Result<Option<ServiceRecord>, StoreError> {
        if name.len() > MAX_NAME_BYTES {
            return Ok(None);
        }
        let op = format!("get {name:?}");
        let path = &self.inner.path;
        guard(path, &op, || {
            let txn = self
                .inner
                .db
                .begin_read()
                .map_err(|e| txn_error(path, &op, e))?;
            let table = match txn.open_table(SERVICES) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(table_error(path, &op, e)),
            };
            match table.get(name).map_err(|e| storage_error(path, &op, e))? {
                Some(value) => decode(path, name, value.value()).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Removes the record stored under `name`, in one durable write transaction. Returns
    /// whether there was one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if the transaction fails (the record stays).
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        if name.len() > MAX_NAME_BYTES {
            return Ok(false);
        }
        let mut existed = false;
        self.write(&format!("delete {name:?}"), |table| {
            existed = table.remove(name)?.is_some();
            Ok(())
        })?;
        Ok(existed)
    }

    /// Every stored record, sorted by name. A record that does not decode is reported in
    /// [`Listing::errors`] with its key and hides none of the others; only a failure to read
    /// the file at all is an `Err`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] or [`StoreError::Corrupt`] if the file cannot be read.
    pub fn list(&self) -> Result<Listing, StoreError> {
        let op = "list";
        let path = &self.inner.path;
        guard(path, op, || {
            let txn = self
                .inner
                .db
                .begin_read()
                .map_err(|e| txn_error(path, op, e))?;
            let table = match txn.open_table(SERVICES) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Listing::default()),
                Err(e) => return Err(table_error(path, op, e)),
            };
            let mut listing = Listing::default();
            for entry in table.iter().map_err(|e| storage_error(path, op, e))? {
                let (key, value) = entry.map_err(|e| storage_error(path, op, e))?;
                let key = key.value();
                match decode(path, key, value.value()) {
                    Ok(record) => {
                        listing.records.insert(key.to_owned(), record);
                    }
                    Err(error) => listing.errors.push(error),
                }
            }
            Ok(listing)
        })
    }

    /// Runs `change` on the services table in one write transaction and commits it durably.
    fn write(
        &self,
        op: &str,
        change: impl FnOnce(&mut redb::Table<'_, &str, &[u8]>) -> Result<(), StorageError>,
    ) -> Result<(), StoreError> {
        let path = &self.inner.path;
        guard(path, op, || {
            let mut txn = self
                .inner
                .db
                .begin_write()
                .map_err(|e| txn_error(path, op, e))?;
            txn.set_two_phase_commit(true);
            // Immediate is redb's default; say it, since the module docs promise it.
            txn.set_durability(Durability::Immediate)
                .map_err(|e| io_error(path, op, e))?;
            {
                let mut table = txn
                    .open_table(SERVICES)
                    .map_err(|e| table_error(path, op, e))?;
                change(&mut table).map_err(|e| storage_error(path, op, e))?;
            }
            txn.commit().map_err(|e| commit_error(path, op, e))
        })
    }
}

/// [`StateStore::default_dir`] with the environment passed in (testable without touching the
/// process environment).
fn default_dir_from(
    eas_state_dir: Option<OsString>,
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(eas_state_dir) {
        return dir;
    }
    if let Some(dir) = set(xdg_state_home).filter(|d| d.is_absolute()) {
        return dir.join("eas");
    }
    if let Some(home) = set(home) {
        return home.join(".local").join("state").join("eas");
    }
    PathBuf::from("eas-state")
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.len() <= MAX_NAME_BYTES {
        return Ok(());
    }
    Err(StoreError::NameTooLong {
        prefix: name.chars().take(32).collect(),
        size: name.len(),
        limit: MAX_NAME_BYTES,
    })
}

fn decode(path: &Path, key: &str, bytes: &[u8]) -> Result<ServiceRecord, StoreError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(StoreError::RecordTooLarge {
            key: key.to_owned(),
            size: bytes.len(),
            limit: MAX_RECORD_BYTES,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        path: path.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// Runs `f`, turning a panic inside redb (a hostile file can reach an assertion) into
/// [`StoreError::Corrupt`] naming the file.
fn guard<T>(
    path: &Path,
    op: &str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("{op} panicked inside redb: {what}"),
        })
    })
}

fn open_error(path: &Path, error: DatabaseError) -> StoreError {
    match error {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_owned(),
        },
        DatabaseError::UpgradeRequired(version) => StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("file format version {version} is not one this eas can read"),
        },
        DatabaseError::Storage(e) => storage_error(path, "open", e),
        other => io_error(path, "open", other),
    }
}

fn storage_error(path: &Path, op: &str, error: StorageError) -> StoreError {
    match error {
        StorageError::Corrupted(reason) => StoreError::Corrupt {
            path: path.to_owned(),
            reason,
        },
        // Reading past the end of a truncated file.
        StorageError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            StoreError::Corrupt {
                path: path.to_owned(),
                reason: format!("truncated: {e}"),
            }
        }
        other => io_error(path, op, other),
    }
}

fn txn_error(path: &Path, op: &str, error: TransactionError) -> StoreError {
    match error {
        TransactionError::Storage(e) => storage_error(path, op, e),
        other => io_error(path, op, other),
    }
}

fn table_error(path: &Path, op: &str, error: TableError) -> StoreError {
    match error {
        TableError::Storage(e) => storage_error(path, op, e),
        other => io_error(path, op, other),
    }
}

fn commit_error(path: &Path, op: &str, error: CommitError) -> StoreError {
    match error {
        CommitError::Storage(e) => storage_error(path, op, e),
        other => io_error(path, op, other),
    }
}

fn io_error(path: &Path, op: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        op: op.to_owned(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_should_follow_its_precedence() {
        // (EAS_STATE_DIR, XDG_STATE_HOME, HOME) -> directory
        let cases = [
            (Some("/srv/eas"), Some("/x"), Some("/home/u"), "/srv/eas"),
            (Some("rel/dir"), Some("/x"), Some("/home/u"), "rel/dir"),
            (None, Some("/x"), Some("/home/u"), "/x/eas"),
            (Some(""), Some("/x"), Some("/home/u"), "/x/eas"),
            (
                None,
                Some("relative"),
                Some("/home/u"),
                "/home/u/.local/state/eas",
            ),
            (None, Some(""), Some("/home/u"), "/home/u/.local/state/eas"),
            (None, None, Some("/home/u"), "/home/u/.local/state/eas"),
            (None, None, Some(""), "eas-state"),
            (None, None, None, "eas-state"),
        ];
        let os = |v: Option<&str>| v.map(OsString::from);
        for (eas, xdg, home, want) in cases {
            let got = default_dir_from(os(eas), os(xdg), os(home));
            assert_eq!(got, PathBuf::from(want), "{eas:?} {xdg:?} {home:?}");
        }
    }

    #[test]
    fn a_record_should_keep_fields_it_does_not_know() {
        let json = r#"{"spec": {"a": 1}, "version": 3, "owner": "newer-eas"}"#;
        let record: ServiceRecord = serde_json::from_str(json).expect("decode");
        assert_eq!(record.version, 3);
        assert!(!record.stopped);
        assert_eq!(record.extra["owner"], "newer-eas");
        let again = serde_json::to_value(&record).expect("encode");
        assert_eq!(again["owner"], "newer-eas");
    }

    #[test]
    fn the_store_should_be_send_and_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<StateStore>();
    }
}
