//! The memory cache (cachefs): hot files kept in memory up to a byte budget, least recently
//! used first out, and shared with the other instances of a service through the
//! [`peer`](crate::peer) protocol.
//!
//! Entries are keyed by the object's URI (`s3://bucket/key`) and carry its ETag and the
//! CRC-32C of the bytes, computed when the bytes entered the cache (after they were verified
//! against their source).
//!
//! ```
//! use bytes::Bytes;
//! use eas_storage::MemoryCache;
//!
//! let cache = MemoryCache::new(10);
//! cache.insert("s3://b/a", Bytes::from_static(b"12345"), Some("e1".into()));
//! cache.insert("s3://b/b", Bytes::from_static(b"67890"), None);
//! assert!(cache.get("s3://b/a", Some("e1")).is_some()); // `a` is now the most recent
//! cache.insert("s3://b/c", Bytes::from_static(b"xy"), None); // evicts `b`
//! assert!(cache.get("s3://b/b", None).is_none());
//! assert!(cache.get("s3://b/a", Some("e2")).is_none(), "another version");
//! assert_eq!(cache.stats().bytes, 7);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use bytes::Bytes;
use lru::LruCache;

use crate::peer::PeerSecret;
use crate::verify::crc32c;

/// One cached object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedObject {
    /// The bytes.
    pub bytes: Bytes,
    /// The source's ETag, when it has one.
    pub etag: Option<String>,
    /// The CRC-32C of `bytes`, computed on insertion.
    pub crc32c: u32,
}

/// Counters of a [`MemoryCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Bytes held now.
    pub bytes: u64,
    /// Objects held now.
    pub objects: u64,
    /// Reads answered from this cache's memory (local reads and peer requests).
    pub hits: u64,
    /// Reads this cache could not answer.
    pub misses: u64,
    /// Objects evicted to make room.
    pub evictions: u64,
    /// Objects fetched from a peer and verified ("remote hits").
    pub peer_hits: u64,
    /// Peer answers refused because they failed verification.
    pub peer_corrupt: u64,
}

#[derive(Debug)]
struct Inner {
    entries: LruCache<String, CachedObject>,
    bytes: u64,
}

/// A byte-budgeted LRU cache of whole objects, with the peers (other instances of the same
/// service) to ask on a miss and the secret they share ([`with_peer_secret`]). Share it as
/// `Arc<MemoryCache>`.
///
/// [`with_peer_secret`]: Self::with_peer_secret
#[derive(Debug)]
pub struct MemoryCache {
    capacity: u64,
    inner: Mutex<Inner>,
    peers: RwLock<Vec<String>>,
    peer_secret: Option<PeerSecret>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    peer_hits: AtomicU64,
    peer_corrupt: AtomicU64,
}

impl MemoryCache {
    /// An empty cache holding at most `capacity_bytes`.
    #[must_use]
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            capacity: capacity_bytes,
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
            peers: RwLock::new(Vec::new()),
            peer_secret: None,
            counters: Counters::default(),
        }
    }

    /// The same, asking `peers` (base URLs such as `http://10.0.0.2:8080`) on a miss.
    #[must_use]
    pub fn with_peers(self, peers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.set_peers(peers);
        self
    }

    /// The same, sharing `secret` with its peers: requests to them carry it, and the peer
    /// endpoint over this cache ([`peer::router`](crate::peer::router)) serves only requests
    /// that carry it. Without a secret, its requests carry no credential (peers refuse them)
    /// and its endpoint refuses every peer.
    #[must_use]
    pub fn with_peer_secret(mut self, secret: PeerSecret) -> Self {
        self.peer_secret = Some(secret);
        self
    }

    /// The secret shared with the peers, if any.
    #[must_use]
    pub fn peer_secret(&self) -> Option<&PeerSecret> {
        self.peer_secret.as_ref()
    }

    /// Replaces the peers (instances come and go).
    pub fn set_peers(&self, peers: impl IntoIterator<Item = impl Into<String>>) {
        let peers = peers.into_iter().map(Into::into).collect();
        *self
            .peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = peers;
    }

    /// The peers asked on a miss.
    #[must_use]
    pub fn peers(&self) -> Vec<String> {
        self.peers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The byte budget.
    #[must_use]
    pub const fn capacity(&self) -> u64 {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The object under `key`, if cached with this ETag (`None` matches any); marks it recently
    /// used.
    #[must_use]
    pub fn get(&self, key: &str, etag: Option<&str>) -> Option<CachedObject> {
        let found = self
            .lock()
            .entries
            .get(key)
            .filter(|o| etag.is_none() || o.etag.as_deref() == etag)
            .cloned();
        let counter = if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches `bytes` under `key` (replacing any older version), evicting the least recently
    /// used objects to stay within the budget. An object larger than the budget is not cached.
    /// Returns whether it was cached.
    pub fn insert(&self, key: impl Into<String>, bytes: Bytes, etag: Option<String>) -> bool {
        let crc32c = crc32c(&bytes);
        self.insert_object(
            key.into(),
            CachedObject {
                bytes,
                etag,
                crc32c,
            },
        )
    }

    /// Caches an object whose CRC-32C is already known (it must be the bytes' CRC-32C).
    pub(crate) fn insert_object(&self, key: String, object: CachedObject) -> bool {
        let size = object.bytes.len() as u64;
        if size > self.capacity {
            return false;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.entries.pop(&key) {
            inner.bytes -= old.bytes.len() as u64;
        }
        while inner.bytes + size > self.capacity {
            let Some((_, evicted)) = inner.entries.pop_lru() else {
                break;
            };
            inner.bytes -= evicted.bytes.len() as u64;
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        inner.bytes += size;
        inner.entries.put(key, object);
        true
    }

    /// Drops the object under `key`, if any.
    pub fn remove(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(old) = inner.entries.pop(key) {
            inner.bytes -= old.bytes.len() as u64;
        }
    }

    pub(crate) fn count_peer_hit(&self) {
        self.counters.peer_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_peer_corrupt(&self) {
        self.counters.peer_corrupt.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let (bytes, objects) = {
            let inner = self.lock();
            (inner.bytes, inner.entries.len() as u64)
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            bytes,
            objects,
            hits: load(&self.counters.hits),
            misses: load(&self.counters.misses),
            evictions: load(&self.counters.evictions),
            peer_hits: load(&self.counters.peer_hits),
            peer_corrupt: load(&self.counters.peer_corrupt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_should_evict_least_recently_used_to_stay_within_budget() {
        let cache = MemoryCache::new(8);
        assert!(cache.insert("a", Bytes::from_static(b"aaaa"), None));
        assert!(cache.insert("b", Bytes::from_static(b"bbbb"), None));
        assert!(cache.get("a", None).is_some());
        assert!(cache.insert("c", Bytes::from_static(b"cc"), None));
        let stats = cache.stats();
        assert_eq!((stats.bytes, stats.objects, stats.evictions), (6, 2, 1));
        assert!(cache.get("b", None).is_none(), "b was least recently used");
        assert!(
            !cache.insert("big", Bytes::from(vec![0; 9]), None),
            "over budget"
        );
        assert!(cache.get("c", None).is_some());
    }

    #[test]
    fn replacing_an_object_should_not_leak_budget() {
        let cache = MemoryCache::new(10);
        cache.insert("a", Bytes::from_static(b"12345678"), Some("v1".into()));
        cache.insert("a", Bytes::from_static(b"1234"), Some("v2".into()));
        assert_eq!(cache.stats().bytes, 4);
        assert!(cache.get("a", Some("v1")).is_none());
        let hit = cache.get("a", Some("v2")).expect("the new version");
        assert_eq!(hit.crc32c, crc32c(b"1234"));
        cache.remove("a");
        assert_eq!(cache.stats().bytes, 0);
    }
}
