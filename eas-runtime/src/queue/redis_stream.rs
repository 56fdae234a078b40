//! The Redis Streams queue backend (cargo feature `redis`): several processes on several
//! machines share one queue.
//!
//! A queue `name` is three keys, all with the hash tag `{name}` so that they live in one slot:
//!
//! | key | what |
//! |---|---|
//! | `eas:queue:{name}:stream` | the stream; an item with index N is the entry `N-0`, fields `rid`, `data`, `tags` (JSON), `message` |
//! | `eas:queue:{name}:seq` | the last index given out (`INCR`) |
//! | `eas:queue:{name}:rid` | hash `requestId` -> index |
//!
//! Puts, removals and truncation are Lua scripts, so the bound and the three keys stay
//! consistent between processes. Consumers are consumer-group members (`XREADGROUP`); a commit
//! is `XACK` (in every group) and `XDEL`. A consumer that goes away cleanly hands its pending
//! entries back at once (`XCLAIM ... IDLE` to a placeholder owner, so that the next
//! `XAUTOCLAIM` takes them); one that dies silently keeps them until they have been idle for
//! [`RedisQueues::reclaim_after`] (a live consumer refreshes its entries every second), then
//! `XAUTOCLAIM` hands them to another consumer. Delivery counts come from `XPENDING`.
//!
//! Differences from the in-memory backend: a watch cannot filter by tags (refused with 400)
//! and follows its group's order, not `_index_`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingCountReply,
    StreamRangeReply, StreamReadReply,
};
use redis::{AsyncConnectionConfig, Client, RedisError, Script, Value};
use serde_json::json;
use tokio::sync::OnceCell;

use super::QueueError;
use super::{
    DynQueue, GetQuery, Item, NewItem, Put, QueueBackend, QueueFactory, REDELIVERED_TAG,
    REQUEST_ID_TAG, Tags, Watch, WatchOptions, new_request_id,
};

/// How long a silent consumer's entries stay with it by default.
pub const DEFAULT_RECLAIM_AFTER: Duration = Duration::from_secs(30);

/// How often a live consumer refreshes its pending entries (well under `reclaim_after`).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long one blocking read waits before the consumer looks around again.
const BLOCK_MS: u64 = 200;

/// The owner of entries a consumer handed back.
const RELEASED: &str = "eas-released";

const PUT: &str = r"
local max = tonumber(ARGV[1])
if max > 0 and redis.call('XLEN', KEYS[1]) >= max then return -1 end
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], n .. '-0', 'rid', ARGV[2], 'data', ARGV[3], 'tags', ARGV[4], 'message', ARGV[5])
redis.call('HSET', KEYS[3], ARGV[2], n)
return n
";

/// Removes entries by index (ARGV; an index listed twice counts once) or, with
/// ARGV[1] == 'below', every index below ARGV[2].
const REMOVE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
local entries = {}
if ARGV[1] == 'below' then
  if tonumber(ARGV[2]) <= 1 then return 0 end
  entries = redis.call('XRANGE', KEYS[1], '-', '(' .. ARGV[2] .. '-0')
else
  local seen = {}
  for i = 1, #ARGV do
    if not seen[ARGV[i]] then
      seen[ARGV[i]] = true
      local e = redis.call('XRANGE', KEYS[1], ARGV[i] .. '-0', ARGV[i] .. '-0')
      if #e > 0 then table.insert(entries, e[1]) end
    end
  end
end
for _, e in ipairs(entries) do
  local id, fields = e[1], e[2]
  local n = string.match(id, '^(%d+)')
  for j = 1, #fields, 2 do
    if fields[j] == 'rid' and redis.call('HGET', KEYS[2], fields[j + 1]) == n then
      redis.call('HDEL', KEYS[2], fields[j + 1])
    end
  end
  for _, g in ipairs(groups) do
    redis.call('XACK', KEYS[1], g[2], id)
  end
  redis.call('XDEL', KEYS[1], id)
end
return #entries
";

/// Opens queues on one Redis server.
#[derive(Debug, Clone)]
pub struct RedisQueues {
    client: Client,
    reclaim_after: Duration,
}

impl RedisQueues {
    /// Queues on the Redis server at `url` (`redis://host:port/db`); nothing connects until a
    /// queue is first used. Fails when the URL does not parse.
    pub fn new(url: &str) -> crate::Result<Self> {
        let client = Client::open(url).map_err(|e| crate::Error::QueueBackend {
            backend: format!("redis at `{url}`"),
            reason: e.to_string(),
        })?;
        Ok(Self {
            client,
            reclaim_after: DEFAULT_RECLAIM_AFTER,
        })
    }

    /// The same, taking back a silent consumer's entries after `idle` (default 30 s).
    #[must_use]
    pub fn reclaim_after(mut self, idle: Duration) -> Self {
        self.reclaim_after = idle;
        self
    }
}

impl QueueFactory for RedisQueues {
    fn open(&self, name: &str, max_length: Option<usize>) -> crate::Result<DynQueue> {
        Ok(Arc::new(RedisQueue::new(
            self.client.clone(),
            name,
            max_length,
            self.reclaim_after,
        )))
    }
}

/// One queue in Redis. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisQueue {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    max_length: Option<usize>,
    client: Client,
    reclaim_after: Duration,
    stream: String,
    seq: String,
    rid: String,
    connection: OnceCell<ConnectionManager>,
    groups: Mutex<HashSet<String>>,
    put: Script,
    remove: Script,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("name", &self.shared.name)
            .field("stream", &self.shared.stream)
            .field("max_length", &self.shared.max_length)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// The queue `name` on `client`'s server.
    #[must_use]
    pub fn new(
        client: Client,
        name: &str,
        max_length: Option<usize>,
        reclaim_after: Duration,
    ) -> Self {
        let key = |part: &str| format!("eas:queue:{{{name}}}:{part}");
        Self {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                max_length,
                client,
                reclaim_after,
                stream: key("stream"),
                seq: key("seq"),
                rid: key("rid"),
                connection: OnceCell::new(),
                groups: Mutex::new(HashSet::new()),
                put: Script::new(PUT),
                remove: Script::new(REMOVE),
            }),
        }
    }
}

impl Shared {
    fn unavailable(&self, error: &RedisError) -> QueueError {
        QueueError::Unavailable(format!("queue `{}`: Redis: {error}", self.name))
    }

    async fn connection(&self) -> Result<ConnectionManager, QueueError> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(10)))
                    .set_connection_timeout(Some(Duration::from_secs(5)));
                self.client.get_connection_manager_with_config(config).await
            })
            .await
            .cloned()
            .map_err(|e| self.unavailable(&e))
    }

    async fn ensure_group(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
        group: &str,
    ) -> Result<(), QueueError> {
        if self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(group)
        {
            return Ok(());
        }
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(connection)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(self.unavailable(&e)),
        }
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group.to_owned());
        Ok(())
    }

    async fn remove(&self, indexes: &[u64]) -> Result<usize, QueueError> {
        if indexes.is_empty() {
            return Ok(0);
        }
        let mut connection = self.connection().await?;
        let mut invocation = self.remove.key(&self.stream);
        invocation.key(&self.rid);
        for index in indexes {
            invocation.arg(*index);
        }
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    async fn range(
        &self,
        connection: &mut ConnectionManager,
        from: u64,
        to: Option<u64>,
        count: usize,
    ) -> Result<Vec<Item>, QueueError> {
        let end = to.map_or_else(|| "+".to_owned(), |n| format!("{n}-0"));
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg(format!("{}-0", from.max(1)))
            .arg(end)
            .arg("COUNT")
            .arg(count)
            .query_async(connection)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(reply.ids.iter().filter_map(to_item).collect())
    }

    async fn matching(&self, query: &GetQuery) -> Result<Vec<Item>, QueueError> {
        let mut connection = self.connection().await?;
        let only_request_id = query.tags.len() == 1 && query.tags.contains_key(REQUEST_ID_TAG);
        if only_request_id {
            let id = &query.tags[REQUEST_ID_TAG];
            let index: Option<u64> = redis::cmd("HGET")
                .arg(&self.rid)
                .arg(id)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.unavailable(&e))?;
            return match index.filter(|&i| i >= query.index) {
                Some(i) => self.range(&mut connection, i, Some(i), 1).await,
                None => Ok(Vec::new()),
            };
        }
        if query.tags.is_empty() {
            return self
                .range(&mut connection, query.index, None, query.length)
                .await;
        }
        let mut found = Vec::new();
        let mut from = query.index;
        loop {
            let chunk = self.range(&mut connection, from, None, 1000).await?;
            let Some(last) = chunk.last().map(|i| i.index) else {
                return Ok(found);
            };
            found.extend(chunk.into_iter().filter(|i| i.matches(&query.tags)));
            if found.len() >= query.length {
                found.truncate(query.length);
                return Ok(found);
            }
            from = last + 1;
        }
    }
}

/// The index of an entry id `N-0`.
fn index_of(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

fn field<T: redis::FromRedisValue>(entry: &StreamId, name: &str) -> Option<T> {
    entry
        .map
        .get(name)
        .and_then(|v| redis::from_redis_value_ref(v).ok())
}

fn to_item(entry: &StreamId) -> Option<Item> {
    let tags: Tags = field::<String>(entry, "tags")
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    Some(Item {
        index: index_of(&entry.id)?,
        tags,
        data: Bytes::from(field::<Vec<u8>>(entry, "data").unwrap_or_default()),
        message: field::<String>(entry, "message").unwrap_or_default(),
    })
}

#[async_trait]
impl QueueBackend for RedisQueue {
    fn name(&self) -> &str {
        &self.shared.name
    }

    async fn put(&self, item: NewItem) -> Result<Put, QueueError> {
        let shared = &self.shared;
        let NewItem {
            data,
            mut tags,
            message,
        } = item;
        let request_id = tags
            .entry(REQUEST_ID_TAG.to_owned())
            .or_insert_with(new_request_id)
            .clone();
        let tags = serde_json::to_string(&tags)
            .map_err(|e| QueueError::Internal(format!("cannot encode tags: {e}")))?;
        let mut connection = shared.connection().await?;
        let index: i64 = shared
            .put
            .key(&shared.stream)
            .key(&shared.seq)
            .key(&shared.rid)
            .arg(shared.max_length.unwrap_or(0))
            .arg(&request_id)
            .arg(data.as_ref())
            .arg(tags)
            .arg(message)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| shared.unavailable(&e))?;
        match u64::try_from(index) {
            Ok(index) => Ok(Put { index, request_id }),
            Err(_) => Err(QueueError::Full {
                queue: shared.name.clone(),
                size: shared.max_length.unwrap_or(0) as u64,
            }),
        }
    }

    async fn get(&self, query: &GetQuery) -> Result<Vec<Item>, QueueError> {
        let deadline = crate::limit::deadline(query.timeout);
        loop {
            let items = self.shared.matching(query).await?;
            if !items.is_empty() {
                if query.auto_delete {
                    let indexes: Vec<u64> = items.iter().map(|i| i.index).collect();
                    self.shared.remove(&indexes).await?;
                }
                return Ok(items);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn commit(&self, indexes: &[u64]) -> Result<usize, QueueError> {
        self.shared.remove(indexes).await
    }

    async fn delete(&self, indexes: &[u64]) -> Result<usize, QueueError> {
        self.shared.remove(indexes).await
    }

    async fn truncate(&self, before: u64) -> Result<usize, QueueError> {
        let shared = &self.shared;
        let mut connection = shared.connection().await?;
        shared
            .remove
            .key(&shared.stream)
            .key(&shared.rid)
            .arg("below")
            .arg(before)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| shared.unavailable(&e))
    }

    async fn length(&self) -> Result<u64, QueueError> {
        let shared = &self.shared;
        let mut connection = shared.connection().await?;
        redis::cmd("XLEN")
            .arg(&shared.stream)
            .query_async(&mut connection)
            .await
            .map_err(|e| shared.unavailable(&e))
    }

    async fn attributes(&self) -> Result<Tags, QueueError> {
        let shared = &self.shared;
        let mut connection = shared.connection().await?;
        let length = self.length().await?;
        let last: Option<u64> = redis::cmd("GET")
            .arg(&shared.seq)
            .query_async(&mut connection)
            .await
            .map_err(|e| shared.unavailable(&e))?;
        let first = shared.range(&mut connection, 0, None, 1).await?;
        let groups: StreamInfoGroupsReply = if length > 0 || last.is_some() {
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&shared.stream)
                .query_async(&mut connection)
                .await
                .unwrap_or_default()
        } else {
            StreamInfoGroupsReply::default()
        };
        let mut attributes = Tags::new();
        attributes.insert("meta.name".into(), shared.name.clone());
        attributes.insert("meta.backend".into(), "redis".into());
        attributes.insert("stream.length".into(), length.to_string());
        let pending: usize = groups.groups.iter().map(|g| g.pending).sum();
        let consumers: usize = groups.groups.iter().map(|g| g.consumers).sum();
        attributes.insert("stream.pending".into(), pending.to_string());
        attributes.insert("consumers".into(), consumers.to_string());
        if let Some(last) = last.filter(|&l| l > 0) {
            attributes.insert("stream.lastEntry".into(), last.to_string());
        }
        if let Some(first) = first.first() {
            attributes.insert("stream.firstEntry".into(), first.index.to_string());
        }
        if let Some(max) = shared.max_length {
            attributes.insert("stream.maxLength".into(), max.to_string());
        }
        Ok(attributes)
    }

    async fn search(&self, index: u64) -> Result<Option<serde_json::Value>, QueueError> {
        let shared = &self.shared;
        let mut connection = shared.connection().await?;
        let Some(item) = shared
            .range(&mut connection, index, Some(index), 1)
            .await?
            .pop()
        else {
            return Ok(None);
        };
        let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&shared.stream)
            .query_async(&mut connection)
            .await
            .unwrap_or_default();
        let id = format!("{index}-0");
        let mut owner = None;
        for group in &groups.groups {
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&shared.stream)
                .arg(&group.name)
                .arg(&id)
                .arg(&id)
                .arg(1)
                .query_async(&mut connection)
                .await
                .map_err(|e| shared.unavailable(&e))?;
            if let Some(p) = pending.ids.into_iter().next() {
                owner = Some((p.consumer, p.times_delivered));
            }
        }
        let position: usize = if index > 1 {
            let before: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&shared.stream)
                .arg("-")
                .arg(format!("({index}-0"))
                .query_async(&mut connection)
                .await
                .map_err(|e| shared.unavailable(&e))?;
            before.ids.len()
        } else {
            0
        };
        let delivered = owner.as_ref().is_some_and(|(c, _)| c != RELEASED);
        Ok(Some(json!({
            "index": index,
            "requestId": item.request_id(),
            "tags": item.tags,
            "size": item.data.len(),
            "state": if delivered { "delivered" } else { "queued" },
            "consumer": owner.as_ref().filter(|_| delivered).map(|(c, _)| c.clone()),
            "deliveries": owner.map_or(0, |(_, n)| n),
            "position": position,
        })))
    }

    async fn watch(&self, options: WatchOptions) -> Result<Box<dyn Watch>, QueueError> {
        let shared = &self.shared;
        if !options.tags.is_empty() {
            return Err(QueueError::Invalid(format!(
                "queue `{}` is kept in Redis, whose watch cannot filter by tags",
                shared.name
            )));
        }
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let mut connection = shared
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| shared.unavailable(&e))?;
        shared.ensure_group(&mut connection, &options.group).await?;
        let consumer = format!("{}-{}", options.consumer, &new_request_id()[..8]);
        Ok(Box::new(RedisWatch {
            shared: Arc::clone(shared),
            connection,
            consumer,
            options,
            known: HashSet::new(),
            last_heartbeat: Instant::now(),
        }))
    }
}

/// A consumer-group member. Dropping it hands its pending entries back.
struct RedisWatch {
    shared: Arc<Shared>,
    /// Its own connection: blocking reads would hold up a shared one.
    connection: MultiplexedConnection,
    consumer: String,
    options: WatchOptions,
    /// Entries handed to the caller and not yet committed (as far as it knows).
    known: HashSet<String>,
    last_heartbeat: Instant,
}

impl std::fmt::Debug for RedisWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWatch")
            .field("queue", &self.shared.name)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisWatch {
    fn unavailable(&self, error: &RedisError) -> QueueError {
        self.shared.unavailable(error)
    }

    /// This consumer's pending entries: id -> times delivered.
    async fn pending(&mut self) -> Result<BTreeMap<String, usize>, QueueError> {
        let reply: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.shared.stream)
            .arg(&self.options.group)
            .arg("-")
            .arg("+")
            .arg(super::MAX_LENGTH)
            .arg(&self.consumer)
            .query_async(&mut self.connection)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(reply
            .ids
            .into_iter()
            .map(|p| (p.id, p.times_delivered))
            .collect())
    }

    /// Resets the idle time of this consumer's entries, so that no one reclaims them.
    async fn heartbeat(&mut self, ids: &[String]) -> Result<(), QueueError> {
        self.last_heartbeat = Instant::now();
        if ids.is_empty() {
            return Ok(());
        }
        let _: Value = redis::cmd("XCLAIM")
            .arg(&self.shared.stream)
            .arg(&self.options.group)
            .arg(&self.consumer)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async(&mut self.connection)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(())
    }

    /// Turns entries into items (marking redeliveries), removing them under auto-commit.
    async fn deliver(
        &mut self,
        entries: Vec<StreamId>,
        counts: &BTreeMap<String, usize>,
    ) -> Result<Vec<Item>, QueueError> {
        let mut items = Vec::with_capacity(entries.len());
        for entry in &entries {
            let Some(mut item) = to_item(entry) else {
                continue;
            };
            let times = counts.get(&entry.id).copied().unwrap_or(1);
            if times > 1 {
                item.tags
                    .insert(REDELIVERED_TAG.to_owned(), (times - 1).to_string());
            }
            items.push(item);
        }
        if self.options.auto_commit {
            let indexes: Vec<u64> = items.iter().map(|i| i.index).collect();
            self.shared.remove(&indexes).await?;
        } else {
            self.known.extend(entries.into_iter().map(|e| e.id));
        }
        Ok(items)
    }

    async fn try_next(&mut self, max: usize) -> Result<Vec<Item>, QueueError> {
        let pending = self.pending().await?;
        self.known.retain(|id| pending.contains_key(id));
        if self.last_heartbeat.elapsed() >= HEARTBEAT {
            let ids: Vec<String> = pending.keys().cloned().collect();
            self.heartbeat(&ids).await?;
        }
        // Entries this consumer was given but whose delivery was interrupted (a cancelled call).
        let orphans: Vec<&String> = pending
            .keys()
            .filter(|id| !self.known.contains(*id))
            .collect();
        if !orphans.is_empty() {
            let take = orphans.len().min(max.max(1));
            let reply: StreamReadReply = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.options.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(pending.len())
                .arg("STREAMS")
                .arg(&self.shared.stream)
                .arg("0")
                .query_async(&mut self.connection)
                .await
                .map_err(|e| self.unavailable(&e))?;
            let entries: Vec<StreamId> = reply
                .keys
                .into_iter()
                .flat_map(|k| k.ids)
                .filter(|e| !self.known.contains(&e.id))
                .take(take)
                .collect();
            if !entries.is_empty() {
                return self.deliver(entries, &pending).await;
            }
        }
        let uncommitted = if self.options.auto_commit {
            0
        } else {
            pending.len()
        };
        let room = self
            .options
            .window
            .saturating_sub(uncommitted)
            .min(max.max(1));
        if room == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Ok(Vec::new());
        }
        // Entries of consumers that went away.
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.shared.stream)
            .arg(&self.options.group)
            .arg(&self.consumer)
            .arg(self.shared.reclaim_after.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(room)
            .query_async(&mut self.connection)
            .await
            .map_err(|e| self.unavailable(&e))?;
        if !claimed.claimed.is_empty() {
            let counts = self.pending().await?;
            return self.deliver(claimed.claimed, &counts).await;
        }
        let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.options.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(room)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&self.shared.stream)
            .arg(">")
            .query_async(&mut self.connection)
            .await
            .map_err(|e| self.unavailable(&e))?;
        let entries: Vec<StreamId> = read
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        self.deliver(entries, &BTreeMap::new()).await
    }
}

#[async_trait]
impl Watch for RedisWatch {
    async fn next(&mut self, max: usize) -> Result<Vec<Item>, QueueError> {
        loop {
            let items = self.try_next(max).await?;
            if !items.is_empty() {
                return Ok(items);
            }
        }
    }
}

impl Drop for RedisWatch {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut connection = self.connection.clone();
        let stream = self.shared.stream.clone();
        let group = self.options.group.clone();
        let consumer = self.consumer.clone();
        runtime.spawn(async move {
            // Hand the pending entries to a placeholder, idle for long, so that the next
            // XAUTOCLAIM of any consumer takes them; then forget this consumer.
            let pending: Result<StreamPendingCountReply, _> = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(&group)
                .arg("-")
                .arg("+")
                .arg(super::MAX_LENGTH)
                .arg(&consumer)
                .query_async(&mut connection)
                .await;
            let ids: Vec<String> = pending
                .map(|p| p.ids.into_iter().map(|p| p.id).collect())
                .unwrap_or_default();
            if !ids.is_empty() {
                let _: Result<Value, _> = redis::cmd("XCLAIM")
                    .arg(&stream)
                    .arg(&group)
                    .arg(RELEASED)
                    .arg(0)
                    .arg(&ids)
                    .arg("IDLE")
                    .arg(u64::from(u32::MAX))
                    .arg("JUSTID")
                    .query_async(&mut connection)
                    .await;
            }
            let _: Result<Value, _> = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&stream)
                .arg(&group)
                .arg(&consumer)
                .query_async(&mut connection)
                .await;
        });
    }
}
