//! The EAS queue service (asynchronous inference): queues of items behind one object-safe
//! [`QueueBackend`] trait, the HTTP/WebSocket protocol the `eas-prediction` SDK's
//! `QueueClient` speaks ([`http`]), and the consumers that feed a service's input queue through
//! its instances into its sink queue ([`consumer`]).
//!
//! ```text
//! client --put--> input queue --watch (consumer per instance)--> Replica::submit --> processor
//!                                                                                      |
//! client <--watch/get-- sink queue <--put (same requestId), then commit the input item--+
//! ```
//!
//! Delivery is at-least-once. An item delivered to a consumer (a WebSocket watcher or an
//! instance's consumer) stays in the queue until it is committed; when its consumer goes away
//! first (socket closed, consumer task aborted, process died) it is delivered again. A
//! delivery after the first carries the tag [`REDELIVERED_TAG`] with the number of earlier
//! deliveries, and a sink result for such an input carries it too: a client that sees it may
//! have seen a result with the same `requestId` already.
//!
//! ```
//! use bytes::Bytes;
//! use eas_runtime::queue::{GetQuery, MemoryQueue, NewItem, QueueBackend};
//!
//! # async fn run() -> Result<(), eas_runtime::queue::QueueError> {
//! let queue = MemoryQueue::new("demo", Some(100));
//! let put = queue.put(NewItem::new(Bytes::from_static(b"hello"))).await?;
//! let items = queue.get(&GetQuery::at_index(put.index)).await?;
//! assert_eq!(items[0].data.as_ref(), b"hello");
//! assert_eq!(items[0].request_id(), Some(put.request_id.as_str()));
//! # Ok(())
//! # }
//! ```

pub mod conformance;
pub mod consumer;
mod error;
mod memory;
#[cfg(feature = "redis")]
pub mod redis_stream;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use error::QueueError;
pub use memory::MemoryQueue;
#[cfg(feature = "redis")]
pub use redis_stream::{RedisQueue, RedisQueues};

use crate::proto::streaming::DataFrameProto;

/// An item's tags, by name.
pub type Tags = BTreeMap<String, String>;

/// A queue backend shared by handlers and consumers.
pub type DynQueue = Arc<dyn QueueBackend>;

/// The tag every item carries: the id its result is found by in the sink queue.
pub const REQUEST_ID_TAG: &str = "requestId";

/// The tag a redelivered item carries: how many times it was delivered before. Sink results
/// for such an item carry it too (a possible duplicate of an earlier result).
pub const REDELIVERED_TAG: &str = "_redelivered_";

/// The response header that carries a put item's `requestId` (and the request header the
/// consumer hands the processor with each item).
pub const REQUEST_ID_HEADER: &str = "X-Eas-Queueservice-Request-Id";
/// The request header naming the client (the consumer name of a watcher).
pub const UID_HEADER: &str = "X-EAS-QueueService-Redis-Uid";
/// The request header naming the client's consumer group.
pub const GID_HEADER: &str = "X-EAS-QueueService-Redis-Gid";
/// The content type of protobuf answers.
pub const PROTOBUF: &str = "application/vnd.google.protobuf";
/// The longest `_timeout_` a get may wait.
pub const MAX_GET_TIMEOUT: Duration = Duration::from_secs(600);
/// The most items one get returns, and the widest watch window.
pub const MAX_LENGTH: usize = 10_000;

/// One item of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its index in the queue: positive, increasing in the order items were put.
    pub index: u64,
    /// Its tags (always `requestId`).
    pub tags: Tags,
    /// The payload.
    pub data: Bytes,
    /// A message about the item (the error text of a failed inference in a sink queue).
    pub message: String,
}

impl Item {
    /// Its `requestId` tag.
    #[must_use]
    pub fn request_id(&self) -> Option<&str> {
        self.tags.get(REQUEST_ID_TAG).map(String::as_str)
    }

    /// The item as the wire message.
    #[must_use]
    pub fn into_proto(self) -> DataFrameProto {
        DataFrameProto {
            index: self.index,
            tags: self.tags,
            data: self.data,
            message: self.message,
        }
    }

    /// Whether every tag of `filter` is on this item with the same value.
    #[must_use]
    pub fn matches(&self, filter: &Tags) -> bool {
        filter.iter().all(|(k, v)| self.tags.get(k) == Some(v))
    }
}

/// An item to put: payload, tags and message. A `requestId` is generated when the tags lack one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewItem {
    /// The payload.
    pub data: Bytes,
    /// Its tags.
    pub tags: Tags,
    /// A message about it.
    pub message: String,
}

impl NewItem {
    /// An item with a payload, no tags and no message.
    #[must_use]
    pub fn new(data: Bytes) -> Self {
        Self {
            data,
            ..Self::default()
        }
    }

    /// The same with its tags.
    #[must_use]
    pub fn with_tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// The same with a message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// Where a put landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// The new item's index.
    pub index: u64,
    /// Its `requestId` tag.
    pub request_id: String,
}

/// What a `get` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetQuery {
    /// The first index to read (0: from the oldest item).
    pub index: u64,
    /// The most items to return.
    pub length: usize,
    /// How long to wait for a first matching item when there is none yet.
    pub timeout: Duration,
    /// Remove the items returned.
    pub auto_delete: bool,
    /// Only items with these tags (`requestId` included).
    pub tags: Tags,
}

impl GetQuery {
    /// One item at `index` (or after it), not waiting, not deleting.
    #[must_use]
    pub fn at_index(index: u64) -> Self {
        Self {
            index,
            length: 1,
            timeout: Duration::ZERO,
            auto_delete: false,
            tags: Tags::new(),
        }
    }

    /// The item tagged with this `requestId`, not waiting, not deleting.
    #[must_use]
    pub fn by_request_id(request_id: impl Into<String>) -> Self {
        let mut query = Self::at_index(0);
        query
            .tags
            .insert(REQUEST_ID_TAG.to_owned(), request_id.into());
        query
    }

    /// The same, waiting up to `timeout` for a first item.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same, returning up to `length` items.
    #[must_use]
    pub fn with_length(mut self, length: usize) -> Self {
        self.length = length;
        self
    }

    /// The same, removing what it returns.
    #[must_use]
    pub fn with_auto_delete(mut self, auto_delete: bool) -> Self {
        self.auto_delete = auto_delete;
        self
    }
}

/// How a consumer watches a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchOptions {
    /// The consumer's name (the client's `X-EAS-QueueService-Redis-Uid`).
    pub consumer: String,
    /// Its group (`X-EAS-QueueService-Redis-Gid`, default `eas`).
    pub group: String,
    /// Deliver items from this index on (0: from the oldest).
    pub index: u64,
    /// The most items delivered to this consumer and not yet committed (at least 1).
    pub window: usize,
    /// Remove items as they are delivered (at-most-once) instead of waiting for a commit.
    pub auto_commit: bool,
    /// Only items with these tags.
    pub tags: Tags,
}

impl WatchOptions {
    /// A consumer named `consumer` in group `eas`, from the oldest item, window 1, manual commit.
    #[must_use]
    pub fn new(consumer: impl Into<String>) -> Self {
        Self {
            consumer: consumer.into(),
            group: "eas".to_owned(),
            index: 0,
            window: 1,
            auto_commit: false,
            tags: Tags::new(),
        }
    }

    /// The same with a window.
    #[must_use]
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// The same with auto-commit on or off.
    #[must_use]
    pub fn with_auto_commit(mut self, auto_commit: bool) -> Self {
        self.auto_commit = auto_commit;
        self
    }

    /// The same from this index on.
    #[must_use]
    pub fn from_index(mut self, index: u64) -> Self {
        self.index = index;
        self
    }

    /// The same, only items with these tags.
    #[must_use]
    pub fn with_tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }
}

/// A queue: put, read, watch, commit, delete, truncate, attributes and search. Errors say why
/// in the queue's terms ([`QueueError`]); the HTTP edge turns them into statuses.
///
/// A third-party backend proves itself with the conformance suite in
/// [`conformance`], which every built-in backend runs too.
#[async_trait]
pub trait QueueBackend: Send + Sync + Debug + 'static {
    /// The queue's name (`service` or `service/sink`).
    fn name(&self) -> &str;

    /// Appends an item; fails with [`QueueError::Full`] when the queue is at its bound.
    async fn put(&self, item: NewItem) -> Result<Put, QueueError>;

    /// Items from `query.index` on that match its tags, up to `query.length`, waiting up to
    /// `query.timeout` for the first; removes them when `query.auto_delete`.
    async fn get(&self, query: &GetQuery) -> Result<Vec<Item>, QueueError>;

    /// Marks delivered items done: they leave the queue. Returns how many were there.
    async fn commit(&self, indexes: &[u64]) -> Result<usize, QueueError>;

    /// Removes items whether delivered or not. Returns how many were there.
    async fn delete(&self, indexes: &[u64]) -> Result<usize, QueueError>;

    /// Removes every item with an index below `before`. Returns how many.
    async fn truncate(&self, before: u64) -> Result<usize, QueueError>;

    /// Items in the queue now, delivered or not (the backlog of an input queue).
    async fn length(&self) -> Result<u64, QueueError>;

    /// The queue's attributes as strings: `stream.length`, `stream.lastEntry` (once anything
    /// was put), `stream.firstEntry`, `stream.maxLength`, `stream.pending`, `consumers`.
    async fn attributes(&self) -> Result<Tags, QueueError>;

    /// What is known of the item at `index` (JSON), or `None` when there is none.
    async fn search(&self, index: u64) -> Result<Option<serde_json::Value>, QueueError>;

    /// Starts a consumer. Dropping the [`Watch`] ends it: its uncommitted items are delivered
    /// again to other consumers.
    async fn watch(&self, options: WatchOptions) -> Result<Box<dyn Watch>, QueueError>;
}

/// A consumer of a queue.
#[async_trait]
pub trait Watch: Send + Debug {
    /// Waits until items can be delivered to this consumer, then delivers at least one and at
    /// most `max`, never more uncommitted ones than its window. Cancel-safe: a future dropped
    /// before it completes delivers nothing.
    async fn next(&mut self, max: usize) -> Result<Vec<Item>, QueueError>;
}

/// Opens the queues of async services: the input queue `service` and the sink queue
/// `service/sink`, each bounded by `rpc.max_queue_size`.
pub trait QueueFactory: Send + Sync + Debug {
    /// The queue called `name`, holding at most `max_length` items (`None`: unbounded).
    fn open(&self, name: &str, max_length: Option<usize>) -> crate::Result<DynQueue>;
}

/// Opens [`MemoryQueue`]s: the embedded default.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryQueues;

impl QueueFactory for MemoryQueues {
    fn open(&self, name: &str, max_length: Option<usize>) -> crate::Result<DynQueue> {
        Ok(Arc::new(MemoryQueue::new(name, max_length)))
    }
}

/// A fresh random `requestId` (a version 4 UUID).
pub(crate) fn new_request_id() -> String {
    let mut bytes = [0_u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to time and a counter, still unique in this process.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&t.to_le_bytes());
        bytes[8..].copy_from_slice(&n.to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_should_be_distinct_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4", "{a}");
    }
}
