//! The in-memory queue backend: one process, items in a `BTreeMap` by index under a mutex,
//! waiters woken through a `Notify`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Notify;

use super::QueueError;
use super::{
    GetQuery, Item, NewItem, Put, QueueBackend, REDELIVERED_TAG, REQUEST_ID_TAG, Tags, Watch,
    WatchOptions, new_request_id,
};

/// A queue held in this process's memory: the embedded default. Cheap to clone: clones share
/// the queue.
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("name", &self.inner.name)
            .field("max_length", &self.inner.max_length)
            .finish_non_exhaustive()
    }
}

struct Inner {
    name: String,
    max_length: Option<usize>,
    state: Mutex<State>,
    /// Woken on every change a waiter may care about: a put, a removal, a redelivery.
    changed: Notify,
}

#[derive(Default)]
struct State {
    items: BTreeMap<u64, Slot>,
    /// Indexes of items not delivered to any consumer now.
    ready: BTreeSet<u64>,
    by_request_id: HashMap<String, u64>,
    last_index: u64,
    consumers: HashMap<u64, Consumer>,
    next_consumer: u64,
}

struct Slot {
    item: Item,
    delivered_to: Option<u64>,
    deliveries: u32,
}

struct Consumer {
    name: String,
    /// Delivered to it and not yet committed.
    pending: BTreeSet<u64>,
}

impl MemoryQueue {
    /// An empty queue called `name`; `max_length` bounds it (a put beyond answers 450).
    #[must_use]
    pub fn new(name: impl Into<String>, max_length: Option<usize>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                max_length,
                state: Mutex::new(State {
                    next_consumer: 1,
                    ..State::default()
                }),
                changed: Notify::new(),
            }),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Removes an item wherever it is; whether it was there.
    fn remove(&mut self, index: u64) -> Option<Slot> {
        let slot = self.items.remove(&index)?;
        self.ready.remove(&index);
        if let Some(consumer) = slot.delivered_to
            && let Some(c) = self.consumers.get_mut(&consumer)
        {
            c.pending.remove(&index);
        }
        if let Some(id) = slot.item.request_id()
            && self.by_request_id.get(id) == Some(&index)
        {
            self.by_request_id.remove(id);
        }
        Some(slot)
    }

    fn matching(&self, query: &GetQuery) -> Vec<u64> {
        let only_request_id = query.tags.len() == 1 && query.tags.contains_key(REQUEST_ID_TAG);
        if only_request_id {
            return query
                .tags
                .get(REQUEST_ID_TAG)
                .and_then(|id| self.by_request_id.get(id))
                .filter(|&&i| i >= query.index)
                .map(|&i| vec![i])
                .unwrap_or_default();
        }
        self.items
            .range(query.index..)
            .filter(|(_, slot)| slot.item.matches(&query.tags))
            .take(query.length)
            .map(|(&i, _)| i)
            .collect()
    }
}

fn delivered(slot: &Slot) -> Item {
    let mut item = slot.item.clone();
    if slot.deliveries > 1 {
        item.tags.insert(
            REDELIVERED_TAG.to_owned(),
            (slot.deliveries - 1).to_string(),
        );
    }
    item
}

#[async_trait]
impl QueueBackend for MemoryQueue {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn put(&self, item: NewItem) -> Result<Put, QueueError> {
        let NewItem {
            data,
            mut tags,
            message,
        } = item;
        let request_id = tags
            .entry(REQUEST_ID_TAG.to_owned())
            .or_insert_with(new_request_id)
            .clone();
        let put = {
            let mut state = self.inner.lock();
            if let Some(max) = self.inner.max_length
                && state.items.len() >= max
            {
                return Err(QueueError::Full {
                    queue: self.inner.name.clone(),
                    size: max as u64,
                });
            }
            state.last_index += 1;
            let index = state.last_index;
            state.by_request_id.insert(request_id.clone(), index);
            state.ready.insert(index);
            state.items.insert(
                index,
                Slot {
                    item: Item {
                        index,
                        tags,
                        data,
                        message,
                    },
                    delivered_to: None,
                    deliveries: 0,
                },
            );
            Put { index, request_id }
        };
        self.inner.changed.notify_waiters();
        Ok(put)
    }

    async fn get(&self, query: &GetQuery) -> Result<Vec<Item>, QueueError> {
        let deadline = crate::limit::deadline(query.timeout);
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.inner.lock();
                let found = state.matching(query);
                if !found.is_empty() {
                    let items = if query.auto_delete {
                        let items: Vec<Item> = found
                            .iter()
                            .filter_map(|&i| state.remove(i))
                            .map(|s| s.item)
                            .collect();
                        drop(state);
                        self.inner.changed.notify_waiters();
                        items
                    } else {
                        found
                            .iter()
                            .filter_map(|i| state.items.get(i))
                            .map(|s| s.item.clone())
                            .collect()
                    };
                    return Ok(items);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn commit(&self, indexes: &[u64]) -> Result<usize, QueueError> {
        self.delete(indexes).await
    }

    async fn delete(&self, indexes: &[u64]) -> Result<usize, QueueError> {
        let removed = {
            let mut state = self.inner.lock();
            indexes
                .iter()
                .filter(|&&i| state.remove(i).is_some())
                .count()
        };
        if removed > 0 {
            self.inner.changed.notify_waiters();
        }
        Ok(removed)
    }

    async fn truncate(&self, before: u64) -> Result<usize, QueueError> {
        let removed = {
            let mut state = self.inner.lock();
            let doomed: Vec<u64> = state.items.range(..before).map(|(&i, _)| i).collect();
            for &index in &doomed {
                state.remove(index);
            }
            doomed.len()
        };
        if removed > 0 {
            self.inner.changed.notify_waiters();
        }
        Ok(removed)
    }

    async fn length(&self) -> Result<u64, QueueError> {
        Ok(self.inner.lock().items.len() as u64)
    }

    async fn attributes(&self) -> Result<Tags, QueueError> {
        let state = self.inner.lock();
        let mut attributes = Tags::new();
        attributes.insert("meta.name".into(), self.inner.name.clone());
        attributes.insert("meta.backend".into(), "memory".into());
        attributes.insert("stream.length".into(), state.items.len().to_string());
        let pending: usize = state.consumers.values().map(|c| c.pending.len()).sum();
        attributes.insert("stream.pending".into(), pending.to_string());
        attributes.insert("consumers".into(), state.consumers.len().to_string());
        if state.last_index > 0 {
            attributes.insert("stream.lastEntry".into(), state.last_index.to_string());
        }
        if let Some((&first, _)) = state.items.first_key_value() {
            attributes.insert("stream.firstEntry".into(), first.to_string());
        }
        if let Some(max) = self.inner.max_length {
            attributes.insert("stream.maxLength".into(), max.to_string());
        }
        Ok(attributes)
    }

    async fn search(&self, index: u64) -> Result<Option<serde_json::Value>, QueueError> {
        let state = self.inner.lock();
        let Some(slot) = state.items.get(&index) else {
            return Ok(None);
        };
        let consumer = slot
            .delivered_to
            .and_then(|c| state.consumers.get(&c))
            .map(|c| c.name.clone());
        Ok(Some(json!({
            "index": index,
            "requestId": slot.item.request_id(),
            "tags": slot.item.tags,
            "size": slot.item.data.len(),
            "state": if consumer.is_some() { "delivered" } else { "queued" },
            "consumer": consumer,
            "deliveries": slot.deliveries,
            "position": state.items.range(..index).count(),
        })))
    }

    async fn watch(&self, options: WatchOptions) -> Result<Box<dyn Watch>, QueueError> {
        let id = {
            let mut state = self.inner.lock();
            let id = state.next_consumer;
            state.next_consumer += 1;
            state.consumers.insert(
                id,
                Consumer {
                    name: options.consumer.clone(),
                    pending: BTreeSet::new(),
                },
            );
            id
        };
        Ok(Box::new(MemoryWatch {
            inner: Arc::clone(&self.inner),
            id,
            options,
        }))
    }
}

/// A consumer of a [`MemoryQueue`]; dropping it hands its uncommitted items back.
struct MemoryWatch {
    inner: Arc<Inner>,
    id: u64,
    options: WatchOptions,
}

impl std::fmt::Debug for MemoryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWatch")
            .field("queue", &self.inner.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl MemoryWatch {
    /// Takes what can be delivered now (nothing is awaited while the lock is held).
    fn take(&self, max: usize) -> Vec<Item> {
        let options = &self.options;
        let mut state = self.inner.lock();
        let room = if options.auto_commit {
            options.window
        } else {
            let pending = state.consumers.get(&self.id).map_or(0, |c| c.pending.len());
            options.window.saturating_sub(pending)
        }
        .min(max.max(1));
        if room == 0 {
            return Vec::new();
        }
        let chosen: Vec<u64> = if options.tags.is_empty() {
            state
                .ready
                .range(options.index..)
                .take(room)
                .copied()
                .collect()
        } else {
            state
                .ready
                .range(options.index..)
                .filter(|i| {
                    state
                        .items
                        .get(i)
                        .is_some_and(|s| s.item.matches(&options.tags))
                })
                .take(room)
                .copied()
                .collect()
        };
        let mut out = Vec::with_capacity(chosen.len());
        for index in chosen {
            state.ready.remove(&index);
            if options.auto_commit {
                if let Some(mut slot) = state.remove(index) {
                    slot.deliveries += 1;
                    out.push(delivered(&slot));
                }
            } else if let Some(slot) = state.items.get_mut(&index) {
                slot.deliveries += 1;
                slot.delivered_to = Some(self.id);
                out.push(delivered(slot));
                if let Some(c) = state.consumers.get_mut(&self.id) {
                    c.pending.insert(index);
                }
            }
        }
        out
    }
}

#[async_trait]
impl Watch for MemoryWatch {
    async fn next(&mut self, max: usize) -> Result<Vec<Item>, QueueError> {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let items = self.take(max);
            if !items.is_empty() {
                if self.options.auto_commit {
                    // Room freed for bounded puts.
                    self.inner.changed.notify_waiters();
                }
                return Ok(items);
            }
            notified.await;
        }
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        let returned = {
            let mut state = self.inner.lock();
            let Some(consumer) = state.consumers.remove(&self.id) else {
                return;
            };
            for &index in &consumer.pending {
                if let Some(slot) = state.items.get_mut(&index) {
                    slot.delivered_to = None;
                }
                state.ready.insert(index);
            }
            consumer.pending.len()
        };
        if returned > 0 {
            self.inner.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn item(text: &'static str) -> NewItem {
        NewItem::new(Bytes::from_static(text.as_bytes()))
    }

    #[tokio::test]
    async fn put_should_assign_increasing_indexes_and_a_request_id() {
        let queue = MemoryQueue::new("q", None);
        let a = queue.put(item("a")).await.expect("put");
        let b = queue.put(item("b")).await.expect("put");
        assert!(a.index >= 1 && b.index > a.index);
        assert_ne!(a.request_id, b.request_id);
        let got = queue
            .get(&GetQuery::by_request_id(&b.request_id))
            .await
            .expect("get");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data.as_ref(), b"b");
        let got = queue
            .get(&GetQuery::at_index(0).with_length(10))
            .await
            .expect("get");
        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn put_beyond_the_bound_should_be_refused_as_full() {
        let queue = MemoryQueue::new("q", Some(2));
        queue.put(item("a")).await.expect("put");
        let b = queue.put(item("b")).await.expect("put");
        let full = queue.put(item("c")).await.expect_err("full");
        assert!(matches!(full, QueueError::Full { size: 2, .. }), "{full:?}");
        assert!(full.to_string().contains("`q`"), "{full}");
        queue.delete(&[b.index]).await.expect("delete");
        queue.put(item("c")).await.expect("room again");
    }

    #[tokio::test]
    async fn get_should_wait_for_an_item_until_its_timeout() {
        let queue = MemoryQueue::new("q", None);
        let empty = queue
            .get(&GetQuery::at_index(0).with_timeout(Duration::from_millis(20)))
            .await
            .expect("get");
        assert!(empty.is_empty());
        let writer = queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            writer.put(item("late")).await.expect("put");
        });
        let got = queue
            .get(
                &GetQuery::at_index(0)
                    .with_timeout(Duration::from_secs(5))
                    .with_auto_delete(true),
            )
            .await
            .expect("get");
        assert_eq!(got[0].data.as_ref(), b"late");
        assert_eq!(queue.length().await.expect("length"), 0, "auto-deleted");
    }

    #[tokio::test]
    async fn a_dropped_consumer_should_hand_its_items_to_another_marked_redelivered() {
        let queue = MemoryQueue::new("q", None);
        for text in ["a", "b", "c"] {
            queue.put(item(text)).await.expect("put");
        }
        let mut first = queue
            .watch(WatchOptions::new("first").with_window(2))
            .await
            .expect("watch");
        let taken = first.next(10).await.expect("next");
        assert_eq!(taken.len(), 2, "window of 2");
        assert!(taken.iter().all(|i| !i.tags.contains_key(REDELIVERED_TAG)));
        let mut second = queue
            .watch(WatchOptions::new("second").with_window(10))
            .await
            .expect("watch");
        let rest = second.next(10).await.expect("next");
        assert_eq!(rest.len(), 1, "only c is free");
        drop(first);
        let again = second.next(10).await.expect("next");
        let indexes: Vec<u64> = again.iter().map(|i| i.index).collect();
        assert_eq!(indexes, taken.iter().map(|i| i.index).collect::<Vec<_>>());
        assert!(
            again
                .iter()
                .all(|i| i.tags.get(REDELIVERED_TAG).map(String::as_str) == Some("1"))
        );
        assert_eq!(
            queue.length().await.expect("length"),
            3,
            "nothing committed"
        );
        queue.commit(&[1, 2, 3]).await.expect("commit");
        assert_eq!(queue.length().await.expect("length"), 0);
    }

    #[tokio::test]
    async fn a_full_window_should_wait_for_a_commit() {
        let queue = MemoryQueue::new("q", None);
        for text in ["a", "b"] {
            queue.put(item(text)).await.expect("put");
        }
        let mut watch = queue
            .watch(WatchOptions::new("w").with_window(1))
            .await
            .expect("watch");
        let first = watch.next(5).await.expect("next");
        let blocked = tokio::time::timeout(Duration::from_millis(30), watch.next(5)).await;
        assert!(blocked.is_err(), "window full");
        queue.commit(&[first[0].index]).await.expect("commit");
        let second = watch.next(5).await.expect("next");
        assert_eq!(second[0].data.as_ref(), b"b");
    }

    #[tokio::test]
    async fn auto_commit_should_remove_items_as_they_are_delivered() {
        let queue = MemoryQueue::new("q", None);
        for text in ["a", "b", "c"] {
            queue.put(item(text)).await.expect("put");
        }
        let mut watch = queue
            .watch(WatchOptions::new("w").with_window(5).with_auto_commit(true))
            .await
            .expect("watch");
        assert_eq!(watch.next(5).await.expect("next").len(), 3);
        assert_eq!(queue.length().await.expect("length"), 0);
    }

    #[tokio::test]
    async fn truncate_should_remove_items_below_the_index_and_attributes_say_so() {
        let queue = MemoryQueue::new("q", Some(10));
        let mut last = 0;
        for text in ["a", "b", "c"] {
            last = queue.put(item(text)).await.expect("put").index;
        }
        assert_eq!(queue.truncate(last).await.expect("truncate"), 2);
        let attributes = queue.attributes().await.expect("attributes");
        assert_eq!(attributes["stream.length"], "1");
        assert_eq!(attributes["stream.lastEntry"], last.to_string());
        assert_eq!(attributes["stream.firstEntry"], last.to_string());
        let found = queue.search(last).await.expect("search").expect("found");
        assert_eq!(found["state"], "queued");
        assert_eq!(found["position"], 0);
        assert!(queue.search(1).await.expect("search").is_none());
    }
}
