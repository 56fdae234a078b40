//! The queues of an async service and the consumers that drain its input queue: one consumer
//! per instance watches the input queue (window `max_batch_size * worker_threads`, at most
//! `max_queue_size`), hands each item to its instance through the keepalive and
//! instance-level admission ([`crate::replica::admission`]: the instance's batcher
//! gathers up to `max_batch_size` of them per processor call), puts the answer into the
//! sink queue with the item's tags (its `requestId` among them; the error text in `message`
//! when processing failed), and only then commits the input item.
//!
//! A consumer that ends before committing (its task aborted, its instance dead, the process
//! gone) leaves its items uncommitted: the queue delivers them again, tagged
//! [`REDELIVERED_TAG`](super::REDELIVERED_TAG), and their sink results keep that tag.
//!
//! An item whose instance's process dies while running it (a worker of the child-process
//! provider) is run again once the instance has restarted, at most [`MAX_ATTEMPTS`] times in
//! all (earlier deliveries count); then the error goes into the sink as its result.
//!
//! The sink queue is bounded like the input queue (`rpc.max_queue_size` each). A result that
//! does not fit (the sink is full because no client drains it, or its backend is unreachable)
//! is never dropped: its consumer keeps it and retries the put (every 200 ms at first, then
//! every second) while its input item stays uncommitted, so the consumer's window fills, it
//! takes no more input, the input queue fills and clients putting into it get 450. Once a
//! client drains the sink the held results go in and their input items are committed; if the
//! process ends first, the uncommitted input items are delivered again. Such a stall is logged
//! once at warn when it begins (not at every retry) and once at info when every held result
//! went in; [`AsyncQueues::sink_stalls`] counts stalls and [`AsyncQueues::held_results`]
//! says how many results wait now.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eas_core::spec::ServiceSpec;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt as _;

use super::{DynQueue, Item, NewItem, QueueError, REQUEST_ID_HEADER, WatchOptions};
use crate::outcome::PredictError;
use crate::replica::admission::{self, Routed};
use crate::replica::{Failure, Replica, ReplicaState};

/// How long a consumer waits before trying again after a refusal it can outlive (an instance
/// restarting, a full instance queue, a backend that failed).
const RETRY: Duration = Duration::from_millis(20);

/// The most times an item is run on an instance whose process dies while running it (counting
/// earlier deliveries, [`REDELIVERED_TAG`](super::REDELIVERED_TAG)): after that its result is
/// the error, so that a request that kills its worker every time cannot crash-loop the
/// service.
pub const MAX_ATTEMPTS: u32 = 3;

/// The first wait before a result that did not fit into the sink is put again; it doubles up
/// to [`SINK_RETRY_MAX`] (each retry of a Redis put sends the whole result again).
const SINK_RETRY: Duration = Duration::from_millis(200);

/// The longest wait between two tries to put a held result into the sink.
const SINK_RETRY_MAX: Duration = Duration::from_secs(1);

/// The input and sink queues of an async service, and the consumers feeding its instances.
pub struct AsyncQueues {
    input: DynQueue,
    sink: DynQueue,
    config: ConsumerConfig,
    consumers: Mutex<Vec<Consumer>>,
    closing: watch::Sender<bool>,
    stalls: Arc<SinkStalls>,
}

impl std::fmt::Debug for AsyncQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncQueues")
            .field("input", &self.input)
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

/// One consumer's task, the replica it feeds, and its own stop signal.
struct Consumer {
    index: u32,
    task: JoinHandle<()>,
    retire: watch::Sender<bool>,
}

/// How a consumer takes work.
#[derive(Debug, Clone, Copy)]
struct ConsumerConfig {
    batch: usize,
    window: usize,
    keepalive: Duration,
}

impl AsyncQueues {
    /// Starts one consumer per instance on `input`, writing to `sink`; more join with
    /// [`add_consumer`](Self::add_consumer). Must be called within a tokio runtime.
    #[must_use]
    pub fn start(
        spec: &ServiceSpec,
        instances: &[Replica],
        input: DynQueue,
        sink: DynQueue,
    ) -> Self {
        let rpc = &spec.metadata.rpc;
        let batch = if rpc.batching {
            (rpc.max_batch_size as usize).max(1)
        } else {
            1
        };
        let config = ConsumerConfig {
            batch,
            window: (batch * (rpc.worker_threads as usize).max(1))
                .clamp(1, (rpc.max_queue_size as usize).max(1)),
            keepalive: rpc.keepalive,
        };
        let (closing, _) = watch::channel(false);
        let queues = Self {
            input,
            sink,
            config,
            consumers: Mutex::new(Vec::new()),
            closing,
            stalls: Arc::new(SinkStalls::default()),
        };
        for instance in instances {
            queues.add_consumer(instance);
        }
        queues
    }

    /// Starts a consumer feeding `instance` (a replica the controller just added). It takes
    /// items once the instance is ready and stops when the instance stops or the service
    /// shuts down; what it took and did not commit goes back to the queue.
    pub fn add_consumer(&self, instance: &Replica) {
        let (retire, retired) = watch::channel(false);
        let task = tokio::spawn(run(
            instance.clone(),
            Queues {
                input: self.input.clone(),
                sink: self.sink.clone(),
                stalls: Arc::clone(&self.stalls),
            },
            self.config,
            Stops {
                closing: self.closing.subscribe(),
                retired,
            },
        ));
        let mut consumers = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        consumers.retain(|c| !c.task.is_finished());
        consumers.push(Consumer {
            index: instance.index(),
            task,
            retire,
        });
    }

    /// Stops the consumer of the replica numbered `index` (the controller retires it): it
    /// takes nothing more, finishes the items it holds on its replica (which keeps running
    /// until they are done), and gives back what it did not commit. Returns its task, to await.
    pub fn retire_consumer(&self, index: u32) -> Option<JoinHandle<()>> {
        let mut consumers = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        let at = consumers.iter().position(|c| c.index == index)?;
        let consumer = consumers.swap_remove(at);
        consumer.retire.send_replace(true);
        Some(consumer.task)
    }

    /// How many times results stopped fitting into the sink (a stall begins when a first
    /// result is held back and ends when every held result went in).
    #[must_use]
    pub fn sink_stalls(&self) -> u64 {
        self.stalls.stalls.load(Ordering::Relaxed)
    }

    /// Results processed and held by the consumers now because the sink did not take them
    /// (their input items stay uncommitted until they go in).
    #[must_use]
    pub fn held_results(&self) -> usize {
        self.stalls.held.load(Ordering::Relaxed)
    }

    /// The input queue.
    #[must_use]
    pub fn input(&self) -> &DynQueue {
        &self.input
    }

    /// The sink queue.
    #[must_use]
    pub fn sink(&self) -> &DynQueue {
        &self.sink
    }

    /// The queue at a path after the service name: `` (input) or `sink`.
    #[must_use]
    pub fn queue(&self, path: &str) -> Option<&DynQueue> {
        match path.trim_matches('/') {
            "" => Some(&self.input),
            "sink" => Some(&self.sink),
            _ => None,
        }
    }

    /// Items in the input queue: waiting plus being processed (the backlog autoscaling reads).
    pub async fn backlog(&self) -> Result<u64, QueueError> {
        self.input.length().await
    }

    /// Turns `true` when the service shuts down (watch sockets close then).
    #[must_use]
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Stops the consumers: they take nothing more and finish what they hold within `grace`;
    /// what is unfinished then stays uncommitted in the input queue.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.send_replace(true);
        let consumers: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.consumers.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .map(|c| c.task)
                .collect();
        let aborts: Vec<_> = consumers.iter().map(JoinHandle::abort_handle).collect();
        let all = futures_join(consumers);
        if tokio::time::timeout(grace, all).await.is_err() {
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

/// What stops a consumer: the service shutting down, or its replica retired.
struct Stops {
    closing: watch::Receiver<bool>,
    retired: watch::Receiver<bool>,
}

/// What a consumer and its tasks work on.
#[derive(Debug, Clone)]
struct Queues {
    input: DynQueue,
    sink: DynQueue,
    stalls: Arc<SinkStalls>,
}

/// The results held back because the sink did not take them, across a service's consumers.
#[derive(Debug, Default)]
struct SinkStalls {
    /// Results held now.
    held: AtomicUsize,
    /// Stalls so far.
    stalls: AtomicU64,
    /// When the current stall began.
    since: Mutex<Option<Instant>>,
}

impl SinkStalls {
    /// A result could not be put: holds it (until the [`Held`] is dropped). Logs at warn when
    /// this begins a stall.
    fn hold(self: &Arc<Self>, sink: &str, error: &QueueError) -> Held {
        if self.held.fetch_add(1, Ordering::SeqCst) == 0 {
            self.stalls.fetch_add(1, Ordering::Relaxed);
            *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            tracing::warn!(
                queue = sink,
                "results do not fit into the sink ({error}); the consumers hold them and retry, \
                 their input items stay uncommitted until a client drains the sink"
            );
        } else {
            tracing::debug!(queue = sink, "holding another result: {error}");
        }
        Held {
            stalls: Arc::clone(self),
            sink: sink.to_owned(),
        }
    }
}

/// A result held back from the sink; dropping it (put at last, or its task aborted) releases it.
struct Held {
    stalls: Arc<SinkStalls>,
    sink: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.stalls.held.fetch_sub(1, Ordering::SeqCst) == 1 {
            let since = self
                .stalls
                .since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let waited = since.map_or(Duration::ZERO, |t| t.elapsed());
            tracing::info!(
                queue = %self.sink,
                "the sink takes results again; the stall lasted {:.1} s",
                waited.as_secs_f64()
            );
        }
    }
}

fn is_dead(instance: &Replica) -> bool {
    matches!(
        instance.state(),
        ReplicaState::Failed(_) | ReplicaState::CrashBlocked(_) | ReplicaState::Stopped
    )
}

/// One consumer: waits for its instance, then takes items until the service closes or the
/// instance is gone for good.
async fn run(instance: Replica, queues: Queues, config: ConsumerConfig, stops: Stops) {
    let Stops {
        mut closing,
        mut retired,
    } = stops;
    let input = &queues.input;
    while !instance.is_ready() {
        if is_dead(&instance) || *closing.borrow() || *retired.borrow() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
    let name = format!("{}#{}", instance.service(), instance.index());
    let mut consumer = loop {
        match input
            .watch(WatchOptions::new(name.clone()).with_window(config.window))
            .await
        {
            Ok(consumer) => break consumer,
            Err(error) => {
                tracing::warn!(consumer = %name, "cannot watch the input queue: {error}");
                tokio::select! {
                    () = tokio::time::sleep(RETRY * 10) => {}
                    _ = closing.changed() => return,
                    _ = retired.changed() => return,
                }
            }
        }
    };
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        if is_dead(&instance) {
            tracing::warn!(consumer = %name, "instance is down; its items go to other consumers");
            break;
        }
        // Only a shutdown interrupts a delivery (commits from the tasks open the window).
        tokio::select! {
            biased;
            _ = closing.changed() => break,
            _ = retired.changed() => break,
            items = consumer.next(config.batch) => match items {
                Ok(items) => {
                    for item in items {
                        tasks.spawn(handle(item, instance.clone(), queues.clone(), config.keepalive));
                    }
                }
                Err(error) => {
                    tracing::warn!(consumer = %name, "input queue: {error}");
                    tokio::time::sleep(RETRY * 10).await;
                }
            },
        }
    }
    // Finish what was taken (the caller bounds this with the grace period), then drop the
    // consumer: anything still uncommitted goes back to the queue.
    while tasks.join_next().await.is_some() {}
    drop(consumer);
}

/// One item: through the instance, into the sink, then out of the input queue.
async fn handle(item: Item, instance: Replica, queues: Queues, keepalive: Duration) {
    let Queues {
        input,
        sink,
        stalls,
    } = queues;
    let mut headers = http::HeaderMap::new();
    if let Some(id) = item
        .request_id()
        .and_then(|id| http::HeaderValue::from_str(id).ok())
    {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    let request = crate::request::build(item.data.clone(), "", headers);
    let stack = admission::stack(keepalive);
    // Runs so far, this delivery's included.
    let mut attempts = 1 + item
        .tags
        .get(super::REDELIVERED_TAG)
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    let answer = loop {
        let routed = Routed {
            request: request.clone(),
            instance: instance.clone(),
        };
        match stack.clone().oneshot(routed).await {
            Err(PredictError::Replica(refused))
                if refused.is_transient() && !is_dead(&instance) =>
            {
                tokio::time::sleep(RETRY).await;
            }
            // Its process died with it: run it again (the instance restarts), up to a bound.
            Err(PredictError::Failed {
                failure: Failure::Died(why),
                instance,
            }) => {
                if attempts >= MAX_ATTEMPTS {
                    break Err(PredictError::Failed {
                        failure: Failure::Died(format!(
                            "{why}; it was tried {attempts} times and its process died each \
                             time, so it is not tried again"
                        )),
                        instance,
                    });
                }
                attempts += 1;
                tokio::time::sleep(RETRY).await;
            }
            // The instance is gone, or dropped the item (shutting down, no processor): leave
            // it uncommitted for another consumer.
            Err(
                PredictError::Replica(_)
                | PredictError::Failed {
                    failure: Failure::Dropped(_),
                    ..
                },
            ) => return,
            answer => break answer,
        }
    };
    let (data, message) = match answer {
        Ok(answered) if answered.response.status == 200 => (answered.response.body, String::new()),
        Ok(answered) => {
            let response = answered.response;
            let message = format!(
                "the processor answered status {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
            (response.body, message)
        }
        Err(error) => (bytes::Bytes::new(), error.to_string()),
    };
    let result = NewItem::new(data)
        .with_tags(item.tags.clone())
        .with_message(message);
    // Never dropped: held (and its input item left uncommitted) until the sink takes it.
    let mut held = None;
    let mut wait = SINK_RETRY;
    while let Err(error) = sink.put(result.clone()).await {
        if held.is_none() {
            held = Some(stalls.hold(sink.name(), &error));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(SINK_RETRY_MAX);
    }
    drop(held);
    while let Err(error) = input.commit(&[item.index]).await {
        tracing::warn!(
            queue = input.name(),
            "cannot commit {}, retrying: {error}",
            item.index
        );
        tokio::time::sleep(RETRY * 10).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_should_be_counted_once_however_many_results_it_holds() {
        let stalls = Arc::new(SinkStalls::default());
        let full = QueueError::Full {
            queue: "s/sink".to_owned(),
            size: 1,
        };
        let first = stalls.hold("s/sink", &full);
        let second = stalls.hold("s/sink", &full);
        assert_eq!(stalls.stalls.load(Ordering::Relaxed), 1);
        assert_eq!(stalls.held.load(Ordering::Relaxed), 2);
        drop(first);
        assert!(
            stalls.since.lock().expect("lock").is_some(),
            "still stalled"
        );
        drop(second);
        assert_eq!(stalls.held.load(Ordering::Relaxed), 0);
        assert!(stalls.since.lock().expect("lock").is_none(), "stall over");
        drop(stalls.hold("s/sink", &full));
        assert_eq!(stalls.stalls.load(Ordering::Relaxed), 2, "a new stall");
    }
}
