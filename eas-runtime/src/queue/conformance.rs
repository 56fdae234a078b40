//! The conformance suite every [`QueueBackend`](super::QueueBackend) runs: the semantics the
//! queue service, its consumers and the `eas-prediction` SDK's `QueueClient` rely on, checked
//! on fresh queues that the backend's [`QueueFactory`] opens.
//!
//! [`queue_backend`] opens one queue per check, named `conformance-<check>` (bounded where the
//! check is about the bound), and checks:
//!
//! - **put and get**: puts get positive, increasing indexes and a `requestId` (generated and
//!   distinct when absent, kept when given); a get reads at an index (or the next one after
//!   it), from the oldest, up to a length, by `requestId`, by other tags; messages are kept;
//! - **waiting gets**: an empty get waits for its timeout, and a waiting get (from an index or
//!   by `requestId`) returns as soon as a matching item is put;
//! - **auto-delete**: a get with `auto_delete` removes what it returns;
//! - **commit, delete, truncate**: they return how many items were there and remove them (a
//!   get at a removed index reads the next item, a removed `requestId` is not found); indexes
//!   are never reused; `truncate(n)` removes exactly the items below `n`;
//! - **extreme indexes**: any `u64` is a valid index to get, search, commit, delete or
//!   truncate at (`u64::MAX` included: no error, nothing found or removed but what is there), a
//!   removal lists up to [`MAX_LENGTH`] indexes (repeats counted once);
//! - **attributes**: `stream.length` agrees with [`length`](super::QueueBackend::length),
//!   `stream.maxLength` is the bound, `stream.lastEntry` is absent before the first put and
//!   then the last index, `stream.firstEntry` the oldest index, `stream.pending` and
//!   `consumers` count delivered-uncommitted items and consumers;
//! - **search**: the JSON of an item has its `index`, `requestId`, `state` (`queued` or
//!   `delivered`) and `position` (items before it), which the SDK reads; a missing index gives
//!   `None`;
//! - **the bound**: a bounded queue refuses a put at its bound with [`QueueError::Full`]
//!   naming it, adds nothing, and accepts again after a delete, a commit, an auto-deleting get
//!   or an auto-committing watch;
//! - **watch**: items are delivered in put order, never more than `max` per call nor more
//!   uncommitted ones than the window; a full window waits for a commit; delivered items stay
//!   until committed; a waiting watch gets a later put; a cancelled `next` loses nothing;
//! - **redelivery**: an item delivered to a live consumer is not delivered to another; a
//!   dropped [`Watch`] hands its uncommitted items to the next consumer, tagged
//!   [`REDELIVERED_TAG`] with the number of earlier deliveries (1, then 2, ...);
//! - **auto-commit**: a watch with `auto_commit` removes items as it delivers them;
//! - **watch by tags** and **watch from an index**, as [`Capabilities`] says the backend
//!   supports them (a backend that cannot filter by tags must refuse with
//!   [`QueueError::Invalid`]; a skipped check says so on stdout).
//!
//! Each failure panics with a message that names the backend type, the queue, the check and
//! what differed. The suite needs a Tokio runtime with time enabled (it waits with
//! [`tokio::time`], real time: use short timeouts, the whole suite takes about a second or
//! two) and queues that start empty: a factory on a shared server should add a unique prefix
//! to the names.
//!
//! A third-party backend runs it in its own tests:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use eas_runtime::queue::conformance::{self, Capabilities};
//! use eas_runtime::queue::{DynQueue, MemoryQueue, QueueFactory};
//!
//! /// A backend under test (here a stand-in that opens memory queues).
//! #[derive(Debug)]
//! struct MyQueues;
//!
//! impl QueueFactory for MyQueues {
//!     fn open(&self, name: &str, max_length: Option<usize>) -> eas_runtime::Result<DynQueue> {
//!         Ok(Arc::new(MemoryQueue::new(name, max_length)))
//!     }
//! }
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_queues_should_pass_the_queue_conformance_suite() {
//!     // A backend whose watch cannot filter by tags says so; the suite then checks that it
//!     // refuses such a watch with `QueueError::Invalid`.
//!     let capabilities = Capabilities::default().with_watch_filters_tags(false);
//!     conformance::queue_backend(&MyQueues, &capabilities).await;
//! }
//! # fn main() {}
//! ```

use std::fmt::Display;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    DynQueue, GetQuery, Item, MAX_LENGTH, NewItem, Put, QueueError, QueueFactory, REDELIVERED_TAG,
    REQUEST_ID_TAG, Tags, Watch, WatchOptions,
};

/// How long the suite waits for something that must happen (a delivery, a waiting get's
/// item) before it fails the check.
const PATIENCE: Duration = Duration::from_secs(5);

/// How long the suite watches for something that must not happen (a delivery past the
/// window).
const QUIET: Duration = Duration::from_millis(150);

/// The timeout of a get that must come back empty.
const SHORT: Duration = Duration::from_millis(100);

/// How long after a waiting call starts the suite puts the item it waits for.
const LATE: Duration = Duration::from_millis(50);

/// What a backend supports beyond the common core, where a built-in backend differs by
/// design. The default says everything is supported (as [`MemoryQueue`](super::MemoryQueue)
/// does); turn off what the backend documents it cannot do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// A watch delivers only items with [`WatchOptions::tags`]. When `false` the suite checks
    /// instead that such a watch is refused with [`QueueError::Invalid`] (the Redis Streams
    /// backend: consumer groups cannot filter).
    pub watch_filters_tags: bool,
    /// A watch starts at [`WatchOptions::index`]. When `false` that check is skipped, and the
    /// suite prints that it was (the Redis Streams backend follows its group's order).
    pub watch_from_index: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            watch_filters_tags: true,
            watch_from_index: true,
        }
    }
}

impl Capabilities {
    /// The same with [`watch_filters_tags`](Self::watch_filters_tags) set.
    #[must_use]
    pub const fn with_watch_filters_tags(mut self, supported: bool) -> Self {
        self.watch_filters_tags = supported;
        self
    }

    /// The same with [`watch_from_index`](Self::watch_from_index) set.
    #[must_use]
    pub const fn with_watch_from_index(mut self, supported: bool) -> Self {
        self.watch_from_index = supported;
        self
    }
}

/// Runs every check on queues that `factory` opens (one fresh, empty queue per check), as
/// far as `capabilities` says the backend goes. Panics with a message naming the backend, the
/// queue, the check and what differed.
pub async fn queue_backend(factory: &dyn QueueFactory, capabilities: &Capabilities) {
    put_and_get(factory).await;
    waiting_gets(factory).await;
    auto_delete(factory).await;
    commit_delete_truncate(factory).await;
    extreme_indexes(factory).await;
    attributes(factory).await;
    search(factory).await;
    bound(factory).await;
    watch_in_order(factory).await;
    watch_cancelled(factory).await;
    redelivery(factory).await;
    auto_commit(factory).await;
    if capabilities.watch_filters_tags {
        watch_by_tags(factory).await;
    } else {
        watch_by_tags_refused(factory).await;
    }
    if capabilities.watch_from_index {
        watch_from_index(factory).await;
    } else {
        let queue = Under::open(factory, "conformance-watch-from-index", None).await;
        println!(
            "{}: watch from an index: SKIPPED (Capabilities::watch_from_index is false)",
            queue.who
        );
    }
}

async fn put_and_get(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-put-get", None).await;
    let check = "put and get";
    let a = q.put(check, "a", &[]).await;
    let b = q
        .put(
            check,
            "b",
            &[(REQUEST_ID_TAG, "given-id"), ("color", "red")],
        )
        .await;
    let c = q
        .put_item(
            check,
            NewItem::new(Bytes::from_static(b"c")).with_message("note"),
        )
        .await;
    q.expect(a.index >= 1, check, format!("indexes are positive: {a:?}"));
    q.expect(
        a.index < b.index && b.index < c.index,
        check,
        format!("indexes increase in put order: {a:?} {b:?} {c:?}"),
    );
    q.expect(
        !a.request_id.is_empty() && a.request_id != c.request_id,
        check,
        format!("generated requestIds are distinct and not empty: {a:?} {c:?}"),
    );
    q.same(
        b.request_id.as_str(),
        "given-id",
        check,
        "a given requestId is kept",
    );

    let got = q.get(check, GetQuery::at_index(a.index)).await;
    q.same(indexes(&got), vec![a.index], check, "get at an index");
    q.same(datas(&got), vec!["a"], check, "the data put");
    q.same(
        got[0].request_id(),
        Some(a.request_id.as_str()),
        check,
        "every item carries its requestId tag",
    );
    q.same(got[0].message.as_str(), "", check, "no message put");
    let got = q.get(check, GetQuery::at_index(c.index)).await;
    q.same(
        got.first().map(|i| i.message.as_str()),
        Some("note"),
        check,
        "the message put is kept",
    );

    let all = GetQuery::at_index(0).with_length(10);
    q.same(
        indexes(&q.get(check, all).await),
        vec![a.index, b.index, c.index],
        check,
        "a get from 0 reads from the oldest item, in order",
    );
    q.same(
        indexes(
            &q.get(check, GetQuery::at_index(b.index).with_length(10))
                .await,
        ),
        vec![b.index, c.index],
        check,
        "a get from an index reads that item and the later ones",
    );
    q.same(
        indexes(&q.get(check, GetQuery::at_index(0).with_length(2)).await),
        vec![a.index, b.index],
        check,
        "a get returns at most its length",
    );
    q.same(
        indexes(&q.get(check, GetQuery::at_index(c.index + 1)).await),
        vec![],
        check,
        "a get past the last item finds nothing",
    );

    let got = q.get(check, GetQuery::by_request_id("given-id")).await;
    q.same(indexes(&got), vec![b.index], check, "a get by requestId");
    q.same(
        got.first()
            .and_then(|i| i.tags.get("color"))
            .map(String::as_str),
        Some("red"),
        check,
        "the tags put are kept",
    );
    q.same(
        indexes(&q.get(check, GetQuery::by_request_id(&a.request_id)).await),
        vec![a.index],
        check,
        "a get by a generated requestId",
    );
    q.same(
        indexes(&q.get(check, GetQuery::by_request_id("no-such-id")).await),
        vec![],
        check,
        "a get by an unknown requestId finds nothing",
    );

    for (tags, want, what) in [
        (vec![("color", "red")], vec![b.index], "a get by a tag"),
        (
            vec![("color", "blue")],
            vec![],
            "a get by a tag value no item has",
        ),
        (
            vec![("color", "red"), (REQUEST_ID_TAG, "given-id")],
            vec![b.index],
            "a get by a tag and the requestId",
        ),
        (
            vec![("color", "red"), (REQUEST_ID_TAG, a.request_id.as_str())],
            vec![],
            "a get by a tag and the requestId of an item without that tag",
        ),
    ] {
        let mut query = GetQuery::at_index(0).with_length(10);
        query.tags = tags_of(&tags);
        let got = q.get(check, query).await;
        q.same(indexes(&got), want, check, format!("{what} {tags:?}"));
    }
    q.same(q.length(check).await, 3, check, "length() after three puts");
}

async fn waiting_gets(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-waiting-get", None).await;
    let check = "waiting get";
    let started = Instant::now();
    let got = q
        .get(check, GetQuery::at_index(0).with_timeout(SHORT))
        .await;
    q.same(indexes(&got), vec![], check, "an empty queue gives nothing");
    q.expect(
        started.elapsed() >= SHORT / 2,
        check,
        format!(
            "an empty get must wait for its timeout ({SHORT:?}), returned after {:?}",
            started.elapsed()
        ),
    );

    let started = Instant::now();
    let (got, late) = tokio::join!(
        q.get(check, GetQuery::at_index(0).with_timeout(PATIENCE)),
        async {
            tokio::time::sleep(LATE).await;
            q.put(check, "late", &[]).await
        }
    );
    q.same(
        indexes(&got),
        vec![late.index],
        check,
        "a waiting get returns the item put while it waits",
    );
    q.expect(
        started.elapsed() < PATIENCE,
        check,
        "a waiting get returns when the item is put, not at its timeout",
    );

    let (got, (_, wanted)) = tokio::join!(
        q.get(
            check,
            GetQuery::by_request_id("wanted").with_timeout(PATIENCE)
        ),
        async {
            tokio::time::sleep(LATE).await;
            let other = q.put(check, "other", &[]).await;
            tokio::time::sleep(LATE).await;
            (
                other,
                q.put(check, "wanted", &[(REQUEST_ID_TAG, "wanted")]).await,
            )
        }
    );
    q.same(
        indexes(&got),
        vec![wanted.index],
        check,
        "a get waiting by requestId returns that item, not another put meanwhile",
    );

    let got = q
        .get(
            check,
            GetQuery::at_index(wanted.index + 1).with_timeout(SHORT),
        )
        .await;
    q.same(
        indexes(&got),
        vec![],
        check,
        "a get from past the last index ignores the earlier items",
    );
}

async fn auto_delete(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-auto-delete", None).await;
    let check = "get with auto_delete";
    let a = q.put(check, "a", &[]).await;
    let b = q.put(check, "b", &[]).await;
    let c = q.put(check, "c", &[(REQUEST_ID_TAG, "rid-c")]).await;
    let got = q
        .get(
            check,
            GetQuery::at_index(0).with_length(2).with_auto_delete(true),
        )
        .await;
    q.same(
        indexes(&got),
        vec![a.index, b.index],
        check,
        "what it returns",
    );
    q.same(
        q.length(check).await,
        1,
        check,
        "it removes what it returns",
    );
    q.same(
        indexes(&q.get(check, GetQuery::at_index(0).with_length(10)).await),
        vec![c.index],
        check,
        "only what it returned is gone",
    );
    let got = q
        .get(
            check,
            GetQuery::by_request_id("rid-c").with_auto_delete(true),
        )
        .await;
    q.same(indexes(&got), vec![c.index], check, "by requestId");
    q.same(q.length(check).await, 0, check, "removed by requestId");
    q.same(
        indexes(&q.get(check, GetQuery::by_request_id("rid-c")).await),
        vec![],
        check,
        "a removed requestId is not found again",
    );
    let found = q.ok(check, q.queue.search(a.index).await);
    q.expect(
        found.is_none(),
        check,
        format!("search of an auto-deleted item: {found:?}"),
    );
}

async fn commit_delete_truncate(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-remove", None).await;
    let check = "commit, delete and truncate";
    let mut p = Vec::new();
    for data in ["0", "1", "2", "3", "4"] {
        p.push(q.put(check, data, &[]).await);
    }
    let deleted = q.ok(
        check,
        q.queue
            .delete(&[p[0].index, p[1].index, p[4].index + 1000])
            .await,
    );
    q.same(deleted, 2, check, "delete counts the items that were there");
    q.same(q.length(check).await, 3, check, "length() after a delete");
    q.same(
        indexes(&q.get(check, GetQuery::at_index(p[0].index)).await),
        vec![p[2].index],
        check,
        "a get at a deleted index reads the next item",
    );
    q.same(
        indexes(
            &q.get(check, GetQuery::by_request_id(&p[0].request_id))
                .await,
        ),
        vec![],
        check,
        "a deleted item is not found by its requestId",
    );
    let committed = q.ok(check, q.queue.commit(&[p[2].index]).await);
    q.same(
        committed,
        1,
        check,
        "commit counts the items that were there",
    );
    let committed = q.ok(check, q.queue.commit(&[p[2].index]).await);
    q.same(
        committed,
        0,
        check,
        "a second commit of an item counts nothing",
    );
    q.same(
        q.ok(check, q.queue.delete(&[]).await),
        0,
        check,
        "delete([])",
    );
    q.same(
        q.ok(check, q.queue.commit(&[]).await),
        0,
        check,
        "commit([])",
    );
    q.same(
        indexes(&q.get(check, GetQuery::at_index(0).with_length(10)).await),
        vec![p[3].index, p[4].index],
        check,
        "what is left after delete and commit",
    );

    let truncated = q.ok(check, q.queue.truncate(p[4].index).await);
    q.same(truncated, 1, check, "truncate(n) counts the items below n");
    q.same(
        indexes(&q.get(check, GetQuery::at_index(0).with_length(10)).await),
        vec![p[4].index],
        check,
        "truncate(n) removes the items below n, not n",
    );
    let truncated = q.ok(check, q.queue.truncate(p[4].index).await);
    q.same(truncated, 0, check, "a second truncate(n) removes nothing");
    q.same(
        q.ok(check, q.queue.truncate(0).await),
        0,
        check,
        "truncate(0)",
    );

    let attributes = q.attributes(check).await;
    let last = p[4].index.to_string();
    q.same(
        attribute(&attributes, "stream.length"),
        Some("1"),
        check,
        "one item left",
    );
    q.same(
        attribute(&attributes, "stream.firstEntry"),
        Some(last.as_str()),
        check,
        "the oldest item left",
    );
    q.same(
        attribute(&attributes, "stream.lastEntry"),
        Some(last.as_str()),
        check,
        "the last index put",
    );

    let next = q.put(check, "5", &[]).await;
    q.expect(
        next.index > p[4].index,
        check,
        format!(
            "indexes are never reused: {} after {} was put and removals",
            next.index, p[4].index
        ),
    );
    let truncated = q.ok(check, q.queue.truncate(next.index + 1).await);
    q.same(
        truncated,
        2,
        check,
        "truncate past the last item removes all",
    );
    q.same(q.length(check).await, 0, check, "length() when emptied");
    let attributes = q.attributes(check).await;
    let last = next.index.to_string();
    q.same(
        attribute(&attributes, "stream.firstEntry"),
        None,
        check,
        "an empty queue has no oldest item",
    );
    q.same(
        attribute(&attributes, "stream.lastEntry"),
        Some(last.as_str()),
        check,
        "the last index put, even when it is gone",
    );
}

async fn extreme_indexes(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-extreme-indexes", None).await;
    let check = "extreme indexes";
    let mut p = Vec::new();
    for data in ["0", "1", "2", "3"] {
        p.push(q.put(check, data, &[]).await);
    }
    q.same(
        indexes(&q.get(check, GetQuery::at_index(u64::MAX)).await),
        vec![],
        check,
        "a get at u64::MAX finds nothing",
    );
    let found = q.search(check, u64::MAX).await;
    q.expect(
        found.is_none(),
        check,
        format!("search(u64::MAX) gives None, not {found:?}"),
    );
    for (what, removed) in [
        ("delete([u64::MAX])", q.queue.delete(&[u64::MAX]).await),
        ("commit([u64::MAX])", q.queue.commit(&[u64::MAX]).await),
        (
            "delete([u64::MAX - 1, u64::MAX])",
            q.queue.delete(&[u64::MAX - 1, u64::MAX]).await,
        ),
    ] {
        q.same(q.ok(check, removed), 0, check, what);
    }
    q.same(q.length(check).await, 4, check, "nothing removed by them");

    let repeated = q.ok(check, q.queue.delete(&[p[0].index, p[0].index]).await);
    q.same(repeated, 1, check, "an index listed twice is removed once");
    // The longest list the HTTP edge passes on: one item that is there, the rest not.
    let mut many: Vec<u64> = (p[3].index + 1..).take(MAX_LENGTH - 1).collect();
    many.push(p[1].index);
    let removed = q.ok(check, q.queue.commit(&many).await);
    q.same(
        removed,
        1,
        check,
        "a commit of MAX_LENGTH indexes counts those that were there",
    );
    q.same(
        indexes(&q.get(check, GetQuery::at_index(0).with_length(10)).await),
        vec![p[2].index, p[3].index],
        check,
        "what is left after a commit of MAX_LENGTH indexes",
    );
    let truncated = q.ok(check, q.queue.truncate(u64::MAX).await);
    q.same(truncated, 2, check, "truncate(u64::MAX) removes every item");
    q.same(
        q.length(check).await,
        0,
        check,
        "length() after truncate(u64::MAX)",
    );
    let next = q.put(check, "after", &[]).await;
    q.expect(
        next.index > p[3].index,
        check,
        format!(
            "puts go on after extreme indexes: {} after {}",
            next.index, p[3].index
        ),
    );
}

async fn attributes(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-attributes", Some(7)).await;
    let check = "attributes";
    let attributes = q.attributes(check).await;
    q.same(
        attribute(&attributes, "stream.length"),
        Some("0"),
        check,
        "a fresh queue",
    );
    q.same(
        attribute(&attributes, "stream.maxLength"),
        Some("7"),
        check,
        "the bound it was opened with",
    );
    q.same(
        attribute(&attributes, "stream.lastEntry"),
        None,
        check,
        "no lastEntry before the first put",
    );
    q.same(
        attribute(&attributes, "stream.pending"),
        Some("0"),
        check,
        "nothing delivered yet",
    );
    let mut p = Vec::new();
    for data in ["a", "b", "c"] {
        p.push(q.put(check, data, &[]).await);
    }
    let attributes = q.attributes(check).await;
    let length = q.length(check).await.to_string();
    q.same(length.as_str(), "3", check, "length() after three puts");
    q.same(
        attribute(&attributes, "stream.length"),
        Some(length.as_str()),
        check,
        "stream.length agrees with length()",
    );
    let (first, last) = (p[0].index.to_string(), p[2].index.to_string());
    q.same(
        attribute(&attributes, "stream.firstEntry"),
        Some(first.as_str()),
        check,
        "the oldest index",
    );
    q.same(
        attribute(&attributes, "stream.lastEntry"),
        Some(last.as_str()),
        check,
        "the last index",
    );

    let mut watch = q.watch(check, WatchOptions::new("attributes")).await;
    let got = q.gather(check, &mut watch, 1, 1).await;
    q.same(indexes(&got), vec![p[0].index], check, "the first delivery");
    let attributes = q.attributes(check).await;
    q.same(
        attribute(&attributes, "stream.pending"),
        Some("1"),
        check,
        "one item delivered and not committed",
    );
    q.same(
        attribute(&attributes, "consumers"),
        Some("1"),
        check,
        "one consumer that received an item",
    );
    q.same(
        attribute(&attributes, "stream.length"),
        Some("3"),
        check,
        "a delivered item stays until it is committed",
    );
    q.ok(check, q.queue.commit(&[p[0].index]).await);
    let attributes = q.attributes(check).await;
    let first = p[1].index.to_string();
    q.same(
        attribute(&attributes, "stream.pending"),
        Some("0"),
        check,
        "after the commit",
    );
    q.same(
        attribute(&attributes, "stream.length"),
        Some("2"),
        check,
        "after the commit",
    );
    q.same(
        attribute(&attributes, "stream.firstEntry"),
        Some(first.as_str()),
        check,
        "after the commit",
    );
}

async fn search(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-search", None).await;
    let check = "search";
    let mut p = Vec::new();
    for data in ["a", "b", "c"] {
        p.push(q.put(check, data, &[]).await);
    }
    let found = q.search(check, p[1].index).await;
    let found = found.unwrap_or_else(|| q.fail(check, "an item that is there gives None"));
    q.same(
        &found["index"],
        &serde_json::json!(p[1].index),
        check,
        "its index",
    );
    q.same(
        &found["requestId"],
        &serde_json::json!(p[1].request_id),
        check,
        "its requestId",
    );
    q.same(
        &found["state"],
        &serde_json::json!("queued"),
        check,
        "an item not delivered",
    );
    q.same(
        &found["position"],
        &serde_json::json!(1),
        check,
        "the number of items before it",
    );
    for missing in [0, p[2].index + 1] {
        let found = q.search(check, missing).await;
        q.expect(
            found.is_none(),
            check,
            format!("search({missing}) of no item gives None, not {found:?}"),
        );
    }
    q.ok(check, q.queue.delete(&[p[1].index]).await);
    let found = q.search(check, p[1].index).await;
    q.expect(
        found.is_none(),
        check,
        format!("search of a deleted item gives None, not {found:?}"),
    );

    let mut watch = q.watch(check, WatchOptions::new("search")).await;
    let got = q.gather(check, &mut watch, 1, 1).await;
    q.same(indexes(&got), vec![p[0].index], check, "the first delivery");
    let found = q.search(check, p[0].index).await;
    q.same(
        found.as_ref().map(|f| &f["state"]),
        Some(&serde_json::json!("delivered")),
        check,
        "an item delivered and not committed",
    );
    let found = q.search(check, p[2].index).await;
    q.same(
        found.as_ref().map(|f| &f["position"]),
        Some(&serde_json::json!(1)),
        check,
        "the position after a deletion before it",
    );
}

async fn bound(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-bound", Some(2)).await;
    let check = "a bounded queue";
    let a = q.put(check, "a", &[]).await;
    let b = q.put(check, "b", &[]).await;
    q.refused(check, "at its bound").await;
    q.same(
        q.length(check).await,
        2,
        check,
        "a refused put adds nothing",
    );

    q.ok(check, q.queue.delete(&[a.index]).await);
    let c = q.put(check, "after a delete", &[]).await;
    q.refused(check, "at its bound again").await;

    q.ok(check, q.queue.commit(&[b.index]).await);
    q.put(check, "after a commit", &[]).await;
    q.refused(check, "at its bound again").await;

    let got = q
        .get(check, GetQuery::at_index(0).with_auto_delete(true))
        .await;
    q.same(indexes(&got), vec![c.index], check, "the auto-deleting get");
    q.put(check, "after an auto-deleting get", &[]).await;
    q.refused(check, "at its bound again").await;

    let mut watch = q
        .watch(
            check,
            WatchOptions::new("bound")
                .with_window(2)
                .with_auto_commit(true),
        )
        .await;
    q.gather(check, &mut watch, 2, 2).await;
    q.put(check, "after an auto-committing watch", &[]).await;
}

async fn watch_in_order(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-watch", None).await;
    let check = "watch";
    let mut p = Vec::new();
    for data in ["0", "1", "2", "3", "4"] {
        p.push(q.put(check, data, &[]).await);
    }
    let mut watch = q
        .watch(check, WatchOptions::new("watcher").with_window(2))
        .await;
    let first = q.gather(check, &mut watch, 2, 10).await;
    q.same(
        indexes(&first),
        vec![p[0].index, p[1].index],
        check,
        "the oldest items first, in put order, up to the window",
    );
    q.same(datas(&first), vec!["0", "1"], check, "the data put");
    q.same(
        first.iter().map(Item::request_id).collect::<Vec<_>>(),
        vec![
            Some(p[0].request_id.as_str()),
            Some(p[1].request_id.as_str()),
        ],
        check,
        "delivered items carry their requestId",
    );
    q.expect(
        first.iter().all(|i| !i.tags.contains_key(REDELIVERED_TAG)),
        check,
        format!("a first delivery is not tagged {REDELIVERED_TAG}: {first:?}"),
    );
    q.idle(
        check,
        &mut watch,
        "a full window delivers nothing until a commit",
    )
    .await;
    q.same(
        q.length(check).await,
        5,
        check,
        "delivered items stay until committed",
    );

    q.ok(check, q.queue.commit(&[p[0].index]).await);
    let got = q.gather(check, &mut watch, 1, 10).await;
    q.same(
        indexes(&got),
        vec![p[2].index],
        check,
        "one commit makes room for one more",
    );
    q.ok(check, q.queue.commit(&[p[1].index, p[2].index]).await);
    let got = q.gather(check, &mut watch, 2, 10).await;
    q.same(
        indexes(&got),
        vec![p[3].index, p[4].index],
        check,
        "the rest, in order",
    );
    q.ok(check, q.queue.commit(&[p[3].index, p[4].index]).await);
    q.idle(check, &mut watch, "nothing left to deliver").await;

    let (got, late) = tokio::join!(q.gather(check, &mut watch, 1, 10), async {
        tokio::time::sleep(LATE).await;
        q.put(check, "late", &[]).await
    });
    q.same(
        indexes(&got),
        vec![late.index],
        check,
        "a waiting watch gets an item put later",
    );
    q.ok(check, q.queue.commit(&[late.index]).await);

    for data in ["x", "y"] {
        q.put(check, data, &[]).await;
    }
    let got = q.gather(check, &mut watch, 1, 1).await;
    q.same(datas(&got), vec!["x"], check, "next(1) delivers one item");
}

async fn watch_cancelled(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-watch-cancel", None).await;
    let check = "a cancelled watch call";
    let mut watch = q.watch(check, WatchOptions::new("cancelled")).await;
    q.idle(check, &mut watch, "an empty queue delivers nothing")
        .await;
    let a = q.put(check, "a", &[]).await;
    let got = q.gather(check, &mut watch, 1, 1).await;
    q.same(
        indexes(&got),
        vec![a.index],
        check,
        "an item put after a cancelled next() is delivered by the next call",
    );
    q.expect(
        !got[0].tags.contains_key(REDELIVERED_TAG),
        check,
        format!(
            "the first delivery to the caller is not tagged {REDELIVERED_TAG}: {:?}",
            got[0]
        ),
    );
}

async fn redelivery(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-redelivery", None).await;
    let check = "redelivery";
    let mut p = Vec::new();
    for data in ["a", "b", "c"] {
        p.push(q.put(check, data, &[]).await);
    }
    let mut first = q
        .watch(check, WatchOptions::new("first").with_window(2))
        .await;
    let taken = q.gather(check, &mut first, 2, 10).await;
    q.same(
        indexes(&taken),
        vec![p[0].index, p[1].index],
        check,
        "the first consumer's window",
    );
    let mut second = q
        .watch(check, WatchOptions::new("second").with_window(10))
        .await;
    let rest = q.gather(check, &mut second, 1, 10).await;
    q.same(
        indexes(&rest),
        vec![p[2].index],
        check,
        "a second consumer gets only what the first does not hold",
    );
    q.idle(
        check,
        &mut second,
        "items held by a live consumer are not delivered to another",
    )
    .await;

    drop(first);
    let again = q.gather(check, &mut second, 2, 10).await;
    q.same(
        indexes(&again),
        indexes(&taken),
        check,
        "a dropped consumer's uncommitted items go to another, in order",
    );
    q.same(datas(&again), datas(&taken), check, "the same data");
    q.same(
        redelivered(&again),
        vec![Some("1"), Some("1")],
        check,
        "a second delivery is tagged with one earlier delivery",
    );
    q.same(
        q.length(check).await,
        3,
        check,
        "redelivery removes nothing",
    );

    drop(second);
    let mut third = q
        .watch(check, WatchOptions::new("third").with_window(10))
        .await;
    let all = q.gather(check, &mut third, 3, 10).await;
    let mut by_index: Vec<(u64, Option<&str>)> =
        indexes(&all).into_iter().zip(redelivered(&all)).collect();
    by_index.sort_unstable();
    q.same(
        by_index,
        vec![
            (p[0].index, Some("2")),
            (p[1].index, Some("2")),
            (p[2].index, Some("1")),
        ],
        check,
        "each redelivery counts the earlier deliveries",
    );
    let committed = q.ok(
        check,
        q.queue.commit(&[p[0].index, p[1].index, p[2].index]).await,
    );
    q.same(committed, 3, check, "commit of redelivered items");
    q.same(q.length(check).await, 0, check, "everything committed");
}

async fn auto_commit(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-auto-commit", None).await;
    let check = "a watch with auto_commit";
    let mut p = Vec::new();
    for data in ["a", "b", "c"] {
        p.push(q.put(check, data, &[]).await);
    }
    let mut watch = q
        .watch(
            check,
            WatchOptions::new("auto")
                .with_window(2)
                .with_auto_commit(true),
        )
        .await;
    let got = q.gather(check, &mut watch, 3, 10).await;
    q.same(
        indexes(&got),
        p.iter().map(|p| p.index).collect::<Vec<_>>(),
        check,
        "every item, in order",
    );
    q.same(
        q.length(check).await,
        0,
        check,
        "items are removed as they are delivered",
    );
    drop(watch);
    let mut other = q.watch(check, WatchOptions::new("other")).await;
    q.idle(
        check,
        &mut other,
        "auto-committed items are not delivered again after their consumer is dropped",
    )
    .await;
    let attributes = q.attributes(check).await;
    q.same(
        attribute(&attributes, "stream.pending"),
        Some("0"),
        check,
        "nothing waits for a commit",
    );
}

async fn watch_by_tags(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-watch-tags", None).await;
    let check = "a watch by tags";
    let a = q.put(check, "a", &[("color", "red")]).await;
    let b = q.put(check, "b", &[("color", "blue")]).await;
    let c = q.put(check, "c", &[("color", "red")]).await;
    let mut red = q
        .watch(
            check,
            WatchOptions::new("red")
                .with_window(5)
                .with_tags(tags_of(&[("color", "red")])),
        )
        .await;
    let got = q.gather(check, &mut red, 2, 10).await;
    q.same(
        indexes(&got),
        vec![a.index, c.index],
        check,
        "only the items with the tags",
    );
    q.idle(check, &mut red, "no other item").await;
    let mut any = q
        .watch(check, WatchOptions::new("any").with_window(5))
        .await;
    let got = q.gather(check, &mut any, 1, 10).await;
    q.same(
        indexes(&got),
        vec![b.index],
        check,
        "the item without the tags is left for other consumers",
    );
}

async fn watch_by_tags_refused(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-watch-tags", None).await;
    let check = "a watch by tags (refused: Capabilities::watch_filters_tags is false)";
    let options = WatchOptions::new("red").with_tags(tags_of(&[("color", "red")]));
    match q.queue.watch(options).await {
        Err(QueueError::Invalid(why)) => {
            q.expect(!why.is_empty(), check, "the refusal must say why")
        }
        Err(other) => q.fail(
            check,
            format!("must be refused with QueueError::Invalid, not {other:?}"),
        ),
        Ok(watch) => q.fail(
            check,
            format!("must be refused with QueueError::Invalid, but started {watch:?}"),
        ),
    }
}

async fn watch_from_index(factory: &dyn QueueFactory) {
    let q = Under::open(factory, "conformance-watch-from-index", None).await;
    let check = "a watch from an index";
    q.put(check, "a", &[]).await;
    let b = q.put(check, "b", &[]).await;
    let c = q.put(check, "c", &[]).await;
    let mut watch = q
        .watch(
            check,
            WatchOptions::new("later")
                .with_window(5)
                .from_index(b.index),
        )
        .await;
    let got = q.gather(check, &mut watch, 2, 10).await;
    q.same(
        indexes(&got),
        vec![b.index, c.index],
        check,
        "the items from that index on",
    );
    q.idle(check, &mut watch, "nothing before that index").await;
}

/// A queue under test, and how failures name it.
struct Under {
    queue: DynQueue,
    bound: Option<usize>,
    who: String,
}

impl Under {
    /// Opens the queue `name` and checks that it is fresh.
    async fn open(factory: &dyn QueueFactory, name: &str, bound: Option<usize>) -> Self {
        let queue = factory
            .open(name, bound)
            .unwrap_or_else(|e| panic!("{factory:?}: open(`{name}`, {bound:?}) failed: {e}"));
        let debug = format!("{queue:?}");
        let kind = debug.split([' ', '{', '(']).next().unwrap_or("queue");
        let under = Self {
            who: format!("{kind} `{name}`"),
            queue,
            bound,
        };
        let check = "a fresh queue";
        under.same(under.queue.name(), name, check, "name() is the name opened");
        let length = under.length(check).await;
        under.same(
            length,
            0,
            check,
            "the suite needs an empty queue (on a shared server, prefix the names)",
        );
        under
    }

    fn fail(&self, check: &str, what: impl Display) -> ! {
        panic!("{}: {check}: {what}", self.who)
    }

    fn expect(&self, condition: bool, check: &str, what: impl Display) {
        if !condition {
            self.fail(check, what);
        }
    }

    fn same<T: PartialEq + std::fmt::Debug>(
        &self,
        got: T,
        want: T,
        check: &str,
        what: impl Display,
    ) {
        if got != want {
            self.fail(check, format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    fn ok<T>(&self, check: &str, result: Result<T, QueueError>) -> T {
        result.unwrap_or_else(|e| self.fail(check, format!("unexpected error: {e} ({e:?})")))
    }

    async fn put(&self, check: &str, data: &str, tags: &[(&str, &str)]) -> Put {
        let item = NewItem::new(Bytes::copy_from_slice(data.as_bytes())).with_tags(tags_of(tags));
        self.put_item(check, item).await
    }

    async fn put_item(&self, check: &str, item: NewItem) -> Put {
        let result = self.queue.put(item).await;
        self.ok(check, result)
    }

    /// Checks that a put is refused with [`QueueError::Full`] naming the queue and its bound.
    async fn refused(&self, check: &str, when: &str) {
        let bound = self.bound.map(|b| b as u64);
        match self
            .queue
            .put(NewItem::new(Bytes::from_static(b"over")))
            .await
        {
            Err(QueueError::Full { queue, size }) => {
                self.same(
                    (queue.as_str(), Some(size)),
                    (self.queue.name(), bound),
                    check,
                    "QueueError::Full names the queue and its bound",
                );
            }
            Err(other) => self.fail(
                check,
                format!("a put {when} must fail with QueueError::Full, not {other:?}"),
            ),
            Ok(put) => self.fail(
                check,
                format!("a put {when} must fail with QueueError::Full, but it was put: {put:?}"),
            ),
        }
    }

    async fn get(&self, check: &str, query: GetQuery) -> Vec<Item> {
        let result = self.queue.get(&query).await;
        let items = self.ok(check, result);
        self.expect(
            items.len() <= query.length.max(1),
            check,
            format!("a get returns at most its length: {query:?} gave {items:?}"),
        );
        items
    }

    async fn length(&self, check: &str) -> u64 {
        let result = self.queue.length().await;
        self.ok(check, result)
    }

    async fn attributes(&self, check: &str) -> Tags {
        let result = self.queue.attributes().await;
        self.ok(check, result)
    }

    async fn search(&self, check: &str, index: u64) -> Option<serde_json::Value> {
        let result = self.queue.search(index).await;
        self.ok(check, result)
    }

    async fn watch(&self, check: &str, options: WatchOptions) -> Box<dyn Watch> {
        let result = self.queue.watch(options).await;
        self.ok(check, result)
    }

    /// Calls `next(max)` until `count` items came, each call within [`PATIENCE`]; checks
    /// that each call delivers at least one item and at most `max`.
    async fn gather(
        &self,
        check: &str,
        watch: &mut Box<dyn Watch>,
        count: usize,
        max: usize,
    ) -> Vec<Item> {
        let mut items = Vec::new();
        while items.len() < count {
            let got = match tokio::time::timeout(PATIENCE, watch.next(max)).await {
                Ok(result) => self.ok(check, result),
                Err(_) => self.fail(
                    check,
                    format!(
                        "waited {PATIENCE:?} for {} more item(s) after {:?}",
                        count - items.len(),
                        indexes(&items)
                    ),
                ),
            };
            self.expect(
                !got.is_empty() && got.len() <= max.max(1),
                check,
                format!("next({max}) must deliver from 1 to {max} items, not {got:?}"),
            );
            items.extend(got);
        }
        self.expect(
            items.len() == count,
            check,
            format!("{count} item(s) expected, got {:?}", indexes(&items)),
        );
        items
    }

    /// Checks that `next` delivers nothing within [`QUIET`] (the call is then cancelled).
    async fn idle(&self, check: &str, watch: &mut Box<dyn Watch>, what: &str) {
        if let Ok(result) = tokio::time::timeout(QUIET, watch.next(10)).await {
            let got = self.ok(check, result);
            self.fail(check, format!("{what}, but next() delivered {got:?}"));
        }
    }
}

fn tags_of(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn indexes(items: &[Item]) -> Vec<u64> {
    items.iter().map(|i| i.index).collect()
}

fn datas(items: &[Item]) -> Vec<&str> {
    items
        .iter()
        .map(|i| std::str::from_utf8(&i.data).unwrap_or("<not UTF-8>"))
        .collect()
}

fn attribute<'a>(attributes: &'a Tags, name: &str) -> Option<&'a str> {
    attributes.get(name).map(String::as_str)
}

fn redelivered(items: &[Item]) -> Vec<Option<&str>> {
    items
        .iter()
        .map(|i| i.tags.get(REDELIVERED_TAG).map(String::as_str))
        .collect()
}
