//! [`BucketMount`]: an OSS or S3 prefix made available under a local directory, through
//! `object_store`.
//!
//! - **Eager** ([`MountMode::Eager`]): lists the prefix and fetches every file, several at a
//!   time; objects larger than [`TransferOptions::part_size`] come as parallel ranged GETs.
//!   At most [`TransferOptions::concurrency`] requests are in flight.
//! - **Lazy** ([`MountMode::Lazy`]): lists the prefix; each file is fetched on its first
//!   [`read`](StorageMount::read) and kept under the target.
//! - **Restart reuse**: a manifest in the target (`.eas-mount.json`) records each complete file
//!   with the size and ETag it had, the CRC-32C of its content and the `stat` of the file; a
//!   file whose listing still shows that size and ETag is not fetched again, when its `stat` is
//!   unchanged (trusted without reading it) or, if it changed, when its content still has the
//!   recorded CRC-32C (read again, at disk speed). See [`local_fs`](crate::local_fs) for the
//!   trust boundary.
//! - **Leftovers**: a mount starts by removing the temporary files (`.eas-partial-*`) a killed
//!   process left under the target; live downloads hold a lock on theirs and are left alone.
//! - **Sources**, in order: the [`MemoryCache`] (when attached), the file already under the
//!   target, the cache's peers, the store. Bodies stream into a temporary file (renamed once
//!   verified) and, when kept, into memory; ranges are written at their offsets as they
//!   arrive; checksums are computed as they stream.
//! - **What is verified**, per source: *store*: the size, the ETag (every GET is `If-Match`
//!   the listed ETag), and the content: by the whole-object CRC-64 the store keeps, when
//!   [`TransferOptions::verify_crc64`] and the object has at least [`STORE_CHECKSUM_MIN`]
//!   bytes (asked with one signed `HEAD`: S3's `x-amz-checksum-crc64nvme`, which every object
//!   S3 stores since 2025 has, multipart uploads included; OSS's `x-oss-hash-crc64ecma`, read
//!   from the same answer; computed as the bytes stream in, at many GB/s), else, when
//!   [`TransferOptions::verify_md5`] and the ETag stands for an MD5 (single-part uploads), by
//!   the MD5 of the bytes (computed in its own thread, overlapping the download; it is the
//!   slowest check, ~0.5 GB/s a core). Mounts without credentials, or on a store given with
//!   [`BucketMountBuilder::store`], cannot sign the `HEAD` and check the MD5. Multipart
//!   uploads without a store CRC-64 have no content check. *Peer*: the size, the ETag,
//!   the CRC-32C the peer announces (computed here while streaming), and the MD5 of the ETag
//!   for objects up to 64 MiB. *Memory cache*: the ETag of the entry (its bytes were verified
//!   on the way in). *File under the target*: the size and ETag the manifest recorded, and the
//!   content's CRC-32C when the file changed on disk since it was checked (or when its bytes
//!   are read into memory anyway).
//!
//! ```no_run
//! # async fn demo() -> eas_storage::Result<()> {
//! use eas_core::StorageMount;
//! use eas_core::storage::MountMode;
//! use eas_storage::{BucketMount, Credentials};
//! use eas_storage::location::Source;
//!
//! let Source::Bucket(location) = Source::parse("s3://models/resnet/", Some("http://127.0.0.1:9000"))? else {
//!     unreachable!()
//! };
//! let mount = BucketMount::builder(location, "/tmp/models/resnet")
//!     .credentials(Credentials::from_env())
//!     .build()?;
//! let report = mount.mount(MountMode::Eager, None).await?;
//! println!("{} files, {} bytes fetched", report.files, report.fetched_bytes);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eas_core::StorageMount;
use eas_core::storage::{Access, MountMode, MountReport, ObjectInfo, Progress};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::{SignedUrlOptions, Signer as _};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt as _,
    RetryConfig,
};
use reqwest::header::{HeaderName, HeaderValue};
use tokio::sync::Semaphore;

use crate::cache::CachedObject;
use crate::download::Download;
use crate::local_fs::{Manifest, Reuse, file_crc32c, join_relative, sweep_leftovers};
use crate::location::{BucketLocation, Endpoint};
use crate::progress::Meter;
use crate::verify::{StoreChecksum, check_md5, check_size, crc32c, etag_md5};
use crate::{Credentials, Error, MemoryCache, Result, peer};

/// How a mount transfers objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferOptions {
    /// Requests in flight at once (files and ranges together). Default 8.
    pub concurrency: usize,
    /// Objects larger than this come as parallel ranged GETs of this size; smaller ones as one
    /// streamed GET. Default 16 MiB, what S3 and OSS serve fastest (one connection is limited
    /// to ~100 MB/s there). Servers that re-read the whole object for every range (moto) want
    /// one GET: `with_part_size(u64::MAX)`.
    pub part_size: u64,
    /// Check the MD5 of objects whose ETag is one (single-part uploads), when the store's
    /// CRC-64 is not checked instead. Default on.
    pub verify_md5: bool,
    /// Check the whole-object CRC-64 the store keeps, for objects of at least
    /// [`STORE_CHECKSUM_MIN`] bytes (one more `HEAD` each; see the [module docs](self)).
    /// Default on.
    pub verify_crc64: bool,
}

/// The size from which a mount asks the store for an object's CRC-64 (a `HEAD`) rather than
/// computing its MD5: below it the MD5 costs less than the round trip.
pub const STORE_CHECKSUM_MIN: u64 = 8 << 20;

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            part_size: 16 << 20,
            verify_md5: true,
            verify_crc64: true,
        }
    }
}

impl TransferOptions {
    /// The same with another concurrency (at least 1).
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The same with another part size (at least 1 MiB).
    #[must_use]
    pub fn with_part_size(mut self, part_size: u64) -> Self {
        self.part_size = part_size.max(1 << 20);
        self
    }

    /// The same, checking MD5 ETags or not.
    #[must_use]
    pub const fn with_verify_md5(mut self, verify: bool) -> Self {
        self.verify_md5 = verify;
        self
    }

    /// The same, checking the store's CRC-64 or not.
    #[must_use]
    pub const fn with_verify_crc64(mut self, verify: bool) -> Self {
        self.verify_crc64 = verify;
        self
    }
}

/// Builds a [`BucketMount`].
#[derive(Debug)]
#[must_use]
pub struct BucketMountBuilder {
    location: BucketLocation,
    target: PathBuf,
    credentials: Credentials,
    access: Access,
    options: TransferOptions,
    cache: Option<Arc<MemoryCache>>,
    store: Option<Arc<dyn ObjectStore>>,
}

impl BucketMountBuilder {
    /// Credentials (default: anonymous; use [`Credentials::from_env`] for the environment's).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Read-only (default) or read-write. Files written under the target are not uploaded.
    pub const fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Transfer options.
    pub const fn options(mut self, options: TransferOptions) -> Self {
        self.options = options;
        self
    }

    /// Reads and fetches go through this memory cache and its peers.
    pub fn cache(mut self, cache: Arc<MemoryCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Uses this store instead of building an S3 client from the location (for wrappers such
    /// as `object_store::limit::LimitStore`, or other backends).
    pub fn store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The mount.
    ///
    /// # Errors
    /// [`Error::InvalidUri`] when the S3 client cannot be configured from the location.
    pub fn build(self) -> Result<BucketMount> {
        let uri = self.location.uri();
        let (store, signer): (Arc<dyn ObjectStore>, _) = match self.store {
            Some(store) => (store, None),
            None => {
                let s3 = Arc::new(s3_store(&self.location, &self.credentials)?);
                // Without keys the signer would look for credentials elsewhere (instance
                // metadata): an anonymous mount does not sign.
                let signed = self.credentials.access_key_id.is_some()
                    && self.credentials.secret_access_key.is_some();
                (Arc::clone(&s3) as _, signed.then_some(s3))
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::invalid(&uri, format!("HTTP client: {e}")))?;
        Ok(BucketMount {
            manifest: Arc::new(Mutex::new(Manifest::load(&self.target, &uri))),
            uri,
            location: self.location,
            target: self.target,
            access: self.access,
            options: self.options,
            cache: self.cache,
            requests: Arc::new(Semaphore::new(self.options.concurrency.max(1))),
            store,
            signer,
            http,
            listing: Mutex::new(None),
        })
    }
}

/// The S3 client for `location`: path style for URL endpoints, virtual-hosted for bare hosts
/// (OSS), AWS for `s3://` without endpoint. No signature without credentials.
///
/// # Errors
/// [`Error::InvalidUri`] when `object_store` refuses the configuration.
pub fn s3_store(
    location: &BucketLocation,
    credentials: &Credentials,
) -> Result<object_store::aws::AmazonS3> {
    let allow_http = matches!(&location.endpoint, Endpoint::Url(url) if url.scheme() == "http");
    // `with_client_options` replaces every client option, allow_http included: set it first.
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(300))
        .with_allow_http(allow_http);
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
    };
    let mut builder = AmazonS3Builder::new()
        .with_client_options(client)
        .with_allow_http(allow_http)
        .with_retry(retry)
        .with_bucket_name(&location.bucket)
        .with_region(location.region(credentials.region.as_deref()));
    if let Some(endpoint) = location.client_endpoint() {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(location.endpoint.virtual_hosted());
    }
    builder = match (&credentials.access_key_id, &credentials.secret_access_key) {
        (Some(id), Some(secret)) => {
            let builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            match &credentials.session_token {
                Some(token) => builder.with_token(token),
                None => builder,
            }
        }
        _ => builder.with_skip_signature(true),
    };
    builder
        .build()
        .map_err(|e| Error::invalid(location.uri(), e.to_string()))
}

/// An OSS/S3 prefix under a local directory. See the [module docs](self).
#[derive(Debug)]
pub struct BucketMount {
    uri: String,
    location: BucketLocation,
    target: PathBuf,
    access: Access,
    options: TransferOptions,
    cache: Option<Arc<MemoryCache>>,
    store: Arc<dyn ObjectStore>,
    /// The store as S3, to sign the `HEAD` that asks for its checksum (when built here, with
    /// credentials).
    signer: Option<Arc<AmazonS3>>,
    requests: Arc<Semaphore>,
    http: reqwest::Client,
    manifest: Arc<Mutex<Manifest>>,
    listing: Mutex<Option<Arc<BTreeMap<String, ObjectInfo>>>>,
}

/// Where a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Memory,
    Remote,
}

impl BucketMount {
    /// A builder for the prefix `location`, mounted at `target`.
    pub fn builder(location: BucketLocation, target: impl Into<PathBuf>) -> BucketMountBuilder {
        BucketMountBuilder {
            location,
            target: target.into(),
            credentials: Credentials::anonymous(),
            access: Access::ReadOnly,
            options: TransferOptions::default(),
            cache: None,
            store: None,
        }
    }

    /// The object store this mount reads from.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The memory cache, when one is attached.
    #[must_use]
    pub const fn cache(&self) -> Option<&Arc<MemoryCache>> {
        self.cache.as_ref()
    }

    fn key(&self, relative: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{relative}", self.location.prefix))
    }

    /// The cache key (and peer-protocol key) of a file: `s3://bucket/key`.
    fn cache_key(&self, relative: &str) -> String {
        format!("{}{relative}", self.uri)
    }

    fn object_uri(&self, relative: &str) -> String {
        self.cache_key(relative)
    }

    fn lock_manifest(&self) -> std::sync::MutexGuard<'_, Manifest> {
        self.manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn fetch_listing(&self) -> Result<Arc<BTreeMap<String, ObjectInfo>>> {
        let prefix = self.location.prefix.trim_end_matches('/');
        let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        let metas: Vec<_> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| Error::from_store(&self.uri, e))?;
        let mut files = BTreeMap::new();
        for meta in metas {
            let key = meta.location.as_ref();
            let Some(relative) = key.strip_prefix(self.location.prefix.as_str()) else {
                continue;
            };
            if relative.is_empty() || relative.ends_with('/') {
                continue; // "directory" placeholder objects
            }
            join_relative(&self.uri, &self.target, relative)?; // refuse keys that would escape
            let mut info = ObjectInfo::new(relative, meta.size);
            info.etag = meta.e_tag;
            files.insert(relative.to_owned(), info);
        }
        if files.is_empty() {
            return Err(Error::NotFound {
                uri: self.uri.clone(),
                detail: "no objects under this prefix".into(),
            });
        }
        let files = Arc::new(files);
        *self
            .listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&files));
        Ok(files)
    }

    /// The object's size and ETag: from the mount's listing, else from a HEAD request.
    async fn info(&self, relative: &str) -> Result<ObjectInfo> {
        let listed = self
            .listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .and_then(|l| l.get(relative).cloned());
        if let Some(info) = listed {
            return Ok(info);
        }
        let meta = self
            .store
            .head(&self.key(relative))
            .await
            .map_err(|e| Error::from_store(self.object_uri(relative), e))?;
        let mut info = ObjectInfo::new(relative, meta.size);
        info.etag = meta.e_tag;
        Ok(info)
    }

    /// Makes one file present and verified under the target; returns its bytes when `keep`
    /// (or when they were in memory anyway), and where they came from.
    async fn materialize(
        &self,
        info: &ObjectInfo,
        meter: &Meter<'_>,
        keep: bool,
    ) -> Result<(Option<Bytes>, Origin)> {
        let path = join_relative(&self.uri, &self.target, &info.path)?;
        let key = self.cache_key(&info.path);
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(&key, info.etag.as_deref())
        {
            if !self.reusable(info, &path).await {
                write_file(&path, hit.bytes.clone()).await?;
                self.record(info, hit.crc32c, &path);
            }
            meter.advance(&info.path, 0, true);
            return Ok((Some(hit.bytes), Origin::Memory));
        }
        if let Some(crc) = self.reusable_crc(info, &path).await {
            if !(keep || self.cache.is_some()) {
                return Ok((None, Origin::Local));
            }
            let bytes = read_file(&path).await?;
            check_size(&path.display().to_string(), info.size, bytes.len() as u64)?;
            // Read anyway: check the content too, whatever the stamp said.
            let got = crc32c(&bytes);
            if got == crc {
                self.cache_insert(&key, &bytes, info, got);
                return Ok((Some(bytes), Origin::Local));
            }
            tracing::warn!(
                uri = self.object_uri(&info.path),
                path = %path.display(),
                "the local copy was damaged on disk (CRC-32C {got:08x}, recorded {crc:08x}); fetching it again"
            );
        }
        if let Some(cache) = &self.cache {
            // A read wants the bytes now: they land in memory and reach the disk in the
            // background. A mount wants the file: it is written while the answer streams in.
            let dir = (!keep).then(|| path.parent().unwrap_or(&self.target));
            if let Some(fetched) = peer::fetch(&self.http, cache, &key, info, dir).await {
                let bytes = fetched.object.bytes.clone();
                match fetched.file {
                    Some(file) => {
                        file.persist(&path).map_err(|e| Error::io(&path, e.error))?;
                        self.record(info, fetched.object.crc32c, &path);
                    }
                    None => self.persist_in_background(
                        info.clone(),
                        path,
                        bytes.clone(),
                        fetched.object.crc32c,
                    ),
                }
                meter.advance(&info.path, info.size, true);
                cache.insert_object(key, fetched.object);
                return Ok((Some(bytes), Origin::Remote));
            }
        }
        let keep = keep || self.cache.is_some();
        let (bytes, crc32c) = self.download(info, &path, meter, keep).await?;
        if let (Some(cache), Some(bytes)) = (&self.cache, &bytes) {
            cache.insert_object(
                key,
                CachedObject {
                    bytes: bytes.clone(),
                    etag: info.etag.clone(),
                    crc32c,
                },
            );
        }
        self.record(info, crc32c, &path);
        Ok((bytes, Origin::Remote))
    }

    /// Whether the file under the target at `path` is a complete copy of `info`: see
    /// [`Manifest::check`]. A changed file is read again (off the async threads) and, found
    /// intact, stamped anew.
    async fn reusable(&self, info: &ObjectInfo, path: &Path) -> bool {
        self.reusable_crc(info, path).await.is_some()
    }

    /// [`reusable`](Self::reusable), with the recorded CRC-32C of the reusable copy.
    async fn reusable_crc(&self, info: &ObjectInfo, path: &Path) -> Option<u32> {
        let check = self.lock_manifest().check(info, path);
        let crc = match check {
            Reuse::Stale => return None,
            Reuse::Trusted(crc) => return Some(crc),
            Reuse::Rehash(crc) => crc,
        };
        let file = path.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || file_crc32c(&file)).await;
        match hashed {
            Ok(Ok(got)) if got == crc => {
                self.lock_manifest().restamp(info, path, crc);
                Some(crc)
            }
            Ok(Ok(got)) => {
                tracing::warn!(
                    uri = self.object_uri(&info.path),
                    path = %path.display(),
                    "the local copy changed on disk (CRC-32C {got:08x}, recorded {crc:08x}); fetching it again"
                );
                None
            }
            Ok(Err(error)) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the local copy; fetching it again");
                None
            }
            Err(_) => None,
        }
    }

    /// Writes verified bytes to `path` off the caller's path (atomically), then records the
    /// file in the manifest and saves it; a failure only costs a refetch after a restart.
    fn persist_in_background(&self, info: ObjectInfo, path: PathBuf, bytes: Bytes, crc32c: u32) {
        let manifest = Arc::clone(&self.manifest);
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || {
            let saved = crate::local_fs::write_atomic(&path, &bytes).and_then(|()| {
                let mut manifest = manifest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                manifest.record(&info, crc32c, &path);
                manifest.save(&target)
            });
            if let Err(error) = saved {
                tracing::warn!(%error, "could not keep a file fetched from a peer on disk");
            }
        });
    }

    fn cache_insert(&self, key: &str, bytes: &Bytes, info: &ObjectInfo, crc32c: u32) {
        if let Some(cache) = &self.cache {
            cache.insert_object(
                key.to_owned(),
                CachedObject {
                    bytes: bytes.clone(),
                    etag: info.etag.clone(),
                    crc32c,
                },
            );
        }
    }

    fn record(&self, info: &ObjectInfo, crc32c: u32, path: &Path) {
        self.lock_manifest().record(info, crc32c, path);
    }

    fn save_manifest(&self) -> Result<()> {
        let manifest = self.lock_manifest().clone();
        manifest.save(&self.target)
    }

    /// Downloads one object from the store into a temporary file renamed to `path` once
    /// verified (size, and the MD5 its ETag stands for when `verify_md5`); with `keep`, also
    /// into memory. One streamed GET for objects up to the part size, else parallel ranged
    /// GETs (each `If-Match` the listed ETag), each streamed into its place in the file (and
    /// in memory) as it arrives: no part is collected first, nothing is copied twice. Returns
    /// the bytes when kept, and their CRC-32C (computed as they streamed in).
    async fn download(
        &self,
        info: &ObjectInfo,
        path: &Path,
        meter: &Meter<'_>,
        keep: bool,
    ) -> Result<(Option<Bytes>, u32)> {
        let uri = self.object_uri(&info.path);
        let dir = path.parent().unwrap_or(&self.target);
        let checksum = self.store_checksum(info).await;
        let md5 = checksum.is_none()
            && self.options.verify_md5
            && info.etag.as_deref().and_then(etag_md5).is_some();
        let mut download = Download::new(&uri, info.size, Some(dir), keep, md5);
        if let Some(checksum) = checksum {
            download = download.with_crc64(checksum.algorithm());
        }
        let location = self.key(&info.path);
        let ranges = split(info.size, self.options.part_size);
        let done = if let [None] = ranges.as_slice() {
            let _permit = self.requests.acquire().await;
            let options = GetOptions {
                if_match: info.etag.clone(),
                ..GetOptions::default()
            };
            let mut body = self
                .store
                .get_opts(&location, options)
                .await
                .map_err(|e| Error::from_store(&uri, e))?
                .into_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Error::from_store(&uri, e))?;
                meter.advance(&info.path, chunk.len() as u64, false);
                download.push(chunk).await?;
            }
            download.finish().await?
        } else {
            // Every range streams into its place (file and memory) from its own task; the
            // tasks wait for a request slot in order, so the MD5 rarely waits for a range.
            let mut tasks = tokio::task::JoinSet::new();
            for range in ranges.into_iter().flatten() {
                let mut part = download.part(range.clone());
                let store = Arc::clone(&self.store);
                let requests = Arc::clone(&self.requests);
                let location = location.clone();
                let uri = uri.clone();
                let options = GetOptions {
                    if_match: info.etag.clone(),
                    range: Some(GetRange::Bounded(range)),
                    ..GetOptions::default()
                };
                tasks.spawn(async move {
                    let _permit = requests.acquire_owned().await;
                    let mut body = store
                        .get_opts(&location, options)
                        .await
                        .map_err(|e| Error::from_store(&uri, e))?
                        .into_stream();
                    while let Some(chunk) = body.next().await {
                        part.push(chunk.map_err(|e| Error::from_store(&uri, e))?)
                            .await?;
                    }
                    part.finish_whole().await
                });
            }
            let mut parts = Vec::with_capacity(tasks.len());
            // The first failure ends the download (dropping the set aborts the other ranges).
            while let Some(part) = tasks.join_next().await {
                let part = part.map_err(|e| Error::io(path, std::io::Error::other(e)))??;
                meter.advance(&info.path, part.len(), false);
                parts.push(part);
            }
            download.finish_parts(parts).await?
        };
        check_size(&uri, info.size, done.len)?;
        if let (Some(checksum), Some(computed)) = (checksum, done.crc64) {
            checksum.check(&uri, computed)?;
        }
        if let (Some(md5), Some(etag)) = (&done.md5, info.etag.as_deref()) {
            check_md5(&uri, etag, md5)?;
        }
        if let Some(file) = done.file {
            file.persist(path).map_err(|e| Error::io(path, e.error))?;
        }
        meter.advance(&info.path, 0, true);
        Ok((done.memory, done.crc32c))
    }

    /// The whole-object CRC-64 the store keeps for `info` (see the [module docs](self)), from
    /// a signed `HEAD` whose answer still shows the listed ETag; `None` when not asked for, not
    /// signable, or not there (the MD5 is checked instead).
    async fn store_checksum(&self, info: &ObjectInfo) -> Option<StoreChecksum> {
        if !self.options.verify_crc64 || info.size < STORE_CHECKSUM_MIN {
            return None;
        }
        let signer = self.signer.as_ref()?;
        let mode = HeaderName::from_static("x-amz-checksum-mode");
        let enabled = HeaderValue::from_static("ENABLED");
        // S3 refuses `x-amz-*` headers that the signature does not cover.
        let options = SignedUrlOptions::default().with_signed_header(mode.clone(), enabled.clone());
        let uri = self.object_uri(&info.path);
        let url = signer
            .signed_url_opts(
                reqwest::Method::HEAD,
                &self.key(&info.path),
                Duration::from_secs(60),
                &options,
            )
            .await;
        let url = match url {
            Ok(url) => url,
            Err(error) => {
                tracing::debug!(uri, %error, "cannot sign a HEAD for the store's checksum");
                return None;
            }
        };
        let answer = {
            let _permit = self.requests.acquire().await;
            self.http
                .head(url)
                .header(mode, enabled)
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(uri, %error, "HEAD for the store's checksum failed: the MD5 is checked where the ETag is one");
                return None;
            }
        };
        let headers = answer.headers();
        let etag = headers
            .get(reqwest::header::ETAG)
            .map(HeaderValue::as_bytes);
        if etag != info.etag.as_deref().map(str::as_bytes) {
            return None; // another version: its GETs will fail `If-Match`
        }
        let checksum = StoreChecksum::from_headers(headers);
        if checksum.is_none() {
            tracing::debug!(
                uri,
                "the store keeps no whole-object CRC-64 for this object"
            );
        }
        checksum
    }

    async fn mount_inner(
        &self,
        mode: MountMode,
        progress: Option<&dyn Progress>,
    ) -> Result<MountReport> {
        let start = Instant::now();
        tokio::fs::create_dir_all(&self.target)
            .await
            .map_err(|e| Error::io(&self.target, e))?;
        let target = self.target.clone();
        let _ = tokio::task::spawn_blocking(move || sweep_leftovers(&target, true)).await;
        let listing = self.fetch_listing().await?;
        let mut report = MountReport {
            files: listing.len() as u64,
            bytes: listing.values().map(|i| i.size).sum(),
            ..MountReport::default()
        };
        // Checking a changed file reads it: several at a time, off the async threads.
        let checked: Vec<(ObjectInfo, bool)> = futures::stream::iter(listing.values().cloned())
            .map(move |info: ObjectInfo| async move {
                let reusable = match join_relative(&self.uri, &self.target, &info.path) {
                    Ok(path) => self.reusable(&info, &path).await,
                    Err(_) => false,
                };
                (info, reusable)
            })
            .buffered(self.options.concurrency.max(1))
            .collect()
            .await;
        let (fresh, stale): (Vec<_>, Vec<_>) = checked.into_iter().partition(|(_, ok)| *ok);
        let stale: Vec<ObjectInfo> = stale.into_iter().map(|(info, _)| info).collect();
        report.reused_files = fresh.len() as u64;
        if mode == MountMode::Lazy {
            if !fresh.is_empty() {
                self.save_manifest()?; // new stamps of files found intact
            }
            report.elapsed = start.elapsed();
            return Ok(report);
        }
        let to_fetch: u64 = stale.iter().map(|i| i.size).sum();
        let meter = Meter::new(progress, Some(to_fetch));
        let meter_ref = &meter;
        let results: Vec<Result<Origin>> = futures::stream::iter(stale)
            .map(move |info: ObjectInfo| async move {
                let (_, origin) = self.materialize(&info, meter_ref, false).await?;
                Ok(origin)
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        self.save_manifest()?;
        for result in results {
            if result? == Origin::Local {
                report.reused_files += 1;
            }
        }
        report.fetched_bytes = meter.done();
        report.elapsed = start.elapsed();
        Ok(report)
    }
}

#[async_trait::async_trait]
impl StorageMount for BucketMount {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn target(&self) -> &Path {
        &self.target
    }

    fn access(&self) -> Access {
        self.access
    }

    async fn mount(
        &self,
        mode: MountMode,
        progress: Option<&dyn Progress>,
    ) -> eas_core::Result<MountReport> {
        Ok(self.mount_inner(mode, progress).await?)
    }

    async fn read(&self, relative: &str) -> eas_core::Result<Bytes> {
        join_relative(&self.uri, &self.target, relative)?;
        let info = self.info(relative).await?;
        let meter = Meter::new(None, Some(info.size));
        let (bytes, origin) = self.materialize(&info, &meter, true).await?;
        if origin != Origin::Local {
            self.save_manifest()?;
        }
        match bytes {
            Some(bytes) => Ok(bytes),
            None => Ok(read_file(&join_relative(&self.uri, &self.target, relative)?).await?),
        }
    }

    async fn list(&self) -> eas_core::Result<Vec<ObjectInfo>> {
        Ok(self.fetch_listing().await?.values().cloned().collect())
    }
}

/// `None` (one whole GET) for objects up to `part`, else ranges of `part` bytes.
fn split(size: u64, part: u64) -> Vec<Option<std::ops::Range<u64>>> {
    if size <= part {
        return vec![None];
    }
    (0..size.div_ceil(part))
        .map(|i| Some(i * part..((i + 1) * part).min(size)))
        .collect()
}

async fn write_file(path: &Path, bytes: Bytes) -> Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || crate::local_fs::write_atomic(&path, &bytes))
        .await
        .map_err(|e| Error::io("write", std::io::Error::other(e)))?
}

async fn read_file(path: &Path) -> Result<Bytes> {
    tokio::fs::read(path)
        .await
        .map(Bytes::from)
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_objects_should_split_into_bounded_ranges() {
        assert_eq!(split(10, 16), vec![None]);
        assert_eq!(split(16, 16), vec![None]);
        assert_eq!(split(33, 16), vec![Some(0..16), Some(16..32), Some(32..33)]);
    }
}
