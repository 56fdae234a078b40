//! Gathers queued requests into batches of at most `max_batch_size`, and decides itself how
//! long a batch waits for more: only while more requests are on their way, and never past
//! `max_batch_timeout` after its first request (the bound the EAS reference describes).
//!
//! # When a batch waits
//!
//! A batch takes what is queued at once. Then it goes to the workers unless the batcher
//! expects more requests soon, which it judges from online estimates:
//!
//! - **the concurrency**: the most requests in flight at the instance at once lately (admitted
//!   and not answered: queued, gathered, waiting for a worker or running), read from the
//!   replica's counters each time the batcher decides. A batch smaller than that (and than
//!   `max_batch_size`) is short of requests that clients are about to send: the clients of a
//!   batch that just ran send their next requests as soon as they have their answers, so the
//!   batch waits for them instead of going with a few now and the rest in another batch later.
//! - **the arrival rate**: the mean time between arrivals (an exponentially weighted moving
//!   average). A batch waits only when requests arrive more often than once per wait budget;
//!   sparse traffic goes at once.
//! - **the wait budget**: twice the mean time of the waits that filled their batch, at least
//!   [`MIN_BUDGET`] (the resolution of tokio's timer) and at most `max_batch_timeout`.
//!
//! A wait that runs out lowers the concurrency to what is in flight then, so a client that
//! left costs one wait, not one per batch. So: with one client every request goes at once; with
//! 8 clients and `max_batch_size` 16, a batch of 8 goes as soon as the 8th request is in, whether
//! the instance has 1 worker or 5; beyond `max_batch_size` clients, batches go full, to as many
//! workers as are free. While every worker is busy the batcher waits to hand its batch over, so
//! requests pile up in the queue and the next batch fills at once. A batch whose missing
//! requests belong to clients of a batch that runs longer than the budget goes without them.
//!
//! The replica counts a running batch down only after its answers are out, so a client may send
//! its next request before: the requests running are the smaller of that count and what the
//! batcher handed over minus what was answered (counted before the answers go out; requests
//! whose client gave up before they ran are never answered, and are subtracted each time
//! nothing runs).
//!
//! # Cost
//!
//! Per wake-up of the batcher task (one or more requests): one or two reads of the clock, four
//! atomic loads and a few integer operations; per batch, at most one timer (only when it waits)
//! and the batch's vector. No lock, no allocation and no timer per request.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::Instant;

use super::{Job, Shared};

/// The least wait budget: tokio's timer ticks in milliseconds, so a shorter wait would run
/// out at the next tick anyway.
const MIN_BUDGET: Duration = Duration::from_millis(1);

/// What the batcher reads of its instance.
pub(super) trait Counters: Send + Sync + 'static {
    /// Requests admitted and not yet taken by a worker.
    fn waiting(&self) -> usize;
    /// Requests a worker is running, counted down after their answers are out.
    fn running(&self) -> usize;
    /// Requests answered, counted before their answers go out.
    fn completed(&self) -> u64;
}

impl Counters for Shared {
    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }
}

/// Runs until the queue is closed and drained, or the workers are gone.
pub(super) async fn run(
    queue: mpsc::UnboundedReceiver<Job>,
    batches: async_channel::Sender<Vec<Job>>,
    max_batch_size: usize,
    max_batch_timeout: Duration,
    instance: Arc<impl Counters>,
) {
    let mut batcher = Batcher {
        queue,
        batches,
        instance,
        policy: Policy::new(max_batch_size, max_batch_timeout),
        handed: 0,
        last_size: 0,
        never_answered: 0,
    };
    while let Some(first) = batcher.queue.recv().await {
        let batch = batcher.gather(first).await;
        let size = batch.len();
        if batcher.batches.send(batch).await.is_err() {
            return;
        }
        batcher.handed += size as u64;
        batcher.last_size = size;
    }
}

/// The batcher task's state.
struct Batcher<C> {
    queue: mpsc::UnboundedReceiver<Job>,
    batches: async_channel::Sender<Vec<Job>>,
    instance: Arc<C>,
    policy: Policy,
    /// Requests handed to the workers so far.
    handed: u64,
    /// The size of the batch handed over last.
    last_size: usize,
    /// Requests handed over that were never answered (their client gave up before they ran),
    /// as of the last time nothing ran.
    never_answered: u64,
}

impl<C: Counters> Batcher<C> {
    /// One batch starting with `first`.
    async fn gather(&mut self, first: Job) -> Vec<Job> {
        let opened = Instant::now();
        self.policy.arrived(opened, 1);
        let mut batch = Vec::with_capacity(self.policy.max_size);
        batch.push(first);
        let mut waited = false;
        loop {
            let mut closed = false;
            let before = batch.len();
            while batch.len() < self.policy.max_size {
                match self.queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let now = Instant::now();
            self.policy.arrived(now, batch.len() - before);
            if closed {
                break;
            }
            let in_flight = self.in_flight();
            let deadline = match self.policy.decide(opened, now, batch.len(), in_flight) {
                Decision::Wait(deadline) => deadline,
                Decision::Send(why) => {
                    if waited {
                        let spent = now.saturating_duration_since(opened);
                        self.policy.waited(why, spent, in_flight);
                    }
                    break;
                }
            };
            waited = true;
            match tokio::time::timeout_at(deadline, self.queue.recv()).await {
                Ok(Some(job)) => {
                    self.policy.arrived(Instant::now(), 1);
                    batch.push(job);
                }
                // Closed: send what there is.
                Ok(None) => break,
                Err(_) => {
                    let spent = deadline.saturating_duration_since(opened);
                    let in_flight = self.in_flight();
                    self.policy.waited(Why::Expired, spent, in_flight);
                    break;
                }
            }
        }
        batch
    }

    /// Requests in flight at the instance now: waiting (the batch being gathered included) and
    /// running.
    fn in_flight(&mut self) -> usize {
        let instance = &*self.instance;
        let completed = instance.completed();
        let staged = if self.batches.is_empty() {
            0
        } else {
            self.last_size
        };
        let running = instance.running();
        let taken = self.handed.saturating_sub(staged as u64);
        let unanswered = taken.saturating_sub(completed);
        if running == 0 {
            self.never_answered = unanswered;
        }
        let not_lagging = unanswered.saturating_sub(self.never_answered);
        let running = running.min(usize::try_from(not_lagging).unwrap_or(usize::MAX));
        instance.waiting() + running
    }
}

/// Why a batch is sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// It has `max_batch_size` requests, or as many as are in flight lately.
    Full,
    /// Requests arrive too seldom to wait for one.
    Sparse,
    /// Its wait budget (or `max_batch_timeout`) ran out.
    Expired,
}

/// What to do with the batch being gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Send it now.
    Send(Why),
    /// Wait for more requests until then.
    Wait(Instant),
}

/// The batcher's online estimates, and its decisions from them.
#[derive(Debug)]
struct Policy {
    /// `max_batch_size`.
    max_size: usize,
    /// `max_batch_timeout`.
    max_wait: Duration,
    /// The most requests in flight at once lately: the size a batch waits for.
    concurrency: usize,
    /// Mean time between arrivals.
    gap: Ewma,
    /// Mean time a wait that filled its batch took.
    fill: Ewma,
    /// When the latest request arrived.
    last_arrival: Option<Instant>,
}

impl Policy {
    fn new(max_size: usize, max_wait: Duration) -> Self {
        Self {
            max_size: max_size.max(1),
            max_wait,
            concurrency: 0,
            gap: Ewma::default(),
            fill: Ewma::default(),
            last_arrival: None,
        }
    }

    /// `count` requests arrived (were taken from the queue) at `now`.
    fn arrived(&mut self, now: Instant, count: usize) {
        if count == 0 {
            return;
        }
        if let Some(last) = self.last_arrival {
            // A gap longer than any wait says no more than that: capped, so that after a
            // pause the arrival rate is known again within a few requests.
            self.gap
                .add(now.saturating_duration_since(last).min(self.max_wait));
        }
        for _ in 1..count {
            self.gap.add(Duration::ZERO);
        }
        self.last_arrival = Some(now);
    }

    /// The longest a batch may wait for more requests.
    fn budget(&self) -> Duration {
        (self.fill.get() * 2).max(MIN_BUDGET).min(self.max_wait)
    }

    /// Whether a batch of `size` requests, gathered since `opened`, is sent at `now`, when
    /// `in_flight` requests are in flight at the instance.
    fn decide(&mut self, opened: Instant, now: Instant, size: usize, in_flight: usize) -> Decision {
        self.concurrency = self.concurrency.max(in_flight);
        if size >= self.max_size.min(self.concurrency) {
            return Decision::Send(Why::Full);
        }
        let budget = self.budget();
        if self.gap.get() > budget {
            return Decision::Send(Why::Sparse);
        }
        let deadline = opened + budget;
        if now >= deadline {
            return Decision::Send(Why::Expired);
        }
        Decision::Wait(deadline)
    }

    /// A batch that waited `waited` goes, for `why`, with `in_flight` requests in flight.
    fn waited(&mut self, why: Why, waited: Duration, in_flight: usize) {
        match why {
            Why::Full => self.fill.add(waited),
            // The requests it waited for did not come: wait for as many as are here now.
            Why::Expired => self.concurrency = in_flight,
            Why::Sparse => {}
        }
    }
}

/// An exponentially weighted moving average of durations, each new one weighing 1/8.
#[derive(Debug, Default, Clone, Copy)]
struct Ewma {
    nanos: u64,
}

impl Ewma {
    fn add(&mut self, sample: Duration) {
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        self.nanos = self.nanos - self.nanos / 8 + sample / 8;
    }

    fn get(self) -> Duration {
        Duration::from_nanos(self.nanos)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize};

    use eas_core::processor::{Request, Response};
    use tokio::sync::oneshot;

    use super::*;

    /// The counters of a fake instance.
    #[derive(Default)]
    struct Gauge {
        waiting: AtomicUsize,
        running: AtomicUsize,
        completed: AtomicU64,
    }

    impl Counters for Gauge {
        fn waiting(&self) -> usize {
            self.waiting.load(Ordering::Acquire)
        }

        fn running(&self) -> usize {
            self.running.load(Ordering::Acquire)
        }

        fn completed(&self) -> u64 {
            self.completed.load(Ordering::Acquire)
        }
    }

    fn job(body: String) -> (Job, oneshot::Receiver<super::super::Reply>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request: Request::new(body),
            enqueued_at: std::time::Instant::now(),
            reply,
        };
        (job, answer)
    }

    fn ms_since(start: Instant) -> u64 {
        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The batches formed from `arrivals` (ms from the start), each with the ms it was sent
    /// at and the arrival times of its requests. The gauge reads `in_flight`, or with `None`
    /// every request that arrived so far.
    async fn batches_for(
        arrivals: Vec<u64>,
        max: usize,
        timeout_ms: u64,
        in_flight: Option<usize>,
    ) -> Vec<(u64, Vec<u64>)> {
        let start = Instant::now();
        let gauge = Arc::new(Gauge::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let (btx, brx) = async_channel::unbounded();
        let timeout = Duration::from_millis(timeout_ms);
        let batcher = tokio::spawn(run(rx, btx, max, timeout, Arc::clone(&gauge)));
        let collector = tokio::spawn(async move {
            let mut out = Vec::new();
            while let Ok(batch) = brx.recv().await {
                let arrived = batch
                    .iter()
                    .map(|j| {
                        String::from_utf8_lossy(&j.request.body)
                            .parse()
                            .unwrap_or(0)
                    })
                    .collect();
                out.push((ms_since(start), arrived));
            }
            out
        });
        let mut answers = Vec::new();
        for at_ms in arrivals {
            tokio::time::sleep_until(start + Duration::from_millis(at_ms)).await;
            match in_flight {
                Some(n) => gauge.waiting.store(n, Ordering::Release),
                None => {
                    gauge.waiting.fetch_add(1, Ordering::AcqRel);
                }
            }
            let (job, answer) = job(at_ms.to_string());
            answers.push(answer);
            tx.send(job).ok();
        }
        drop(tx);
        batcher.await.ok();
        collector.await.unwrap_or_default()
    }

    fn sizes(batches: &[(u64, Vec<u64>)]) -> Vec<usize> {
        batches.iter().map(|(_, b)| b.len()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn batch_should_close_when_full() {
        let batches = batches_for(vec![0; 5], 2, 1000, None).await;
        assert_eq!(sizes(&batches), vec![2, 2, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_batching_every_request_should_be_its_own_batch() {
        let batches = batches_for(vec![0, 0, 0], 1, 0, None).await;
        assert_eq!(sizes(&batches), vec![1, 1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_should_go_at_once() {
        // One client: each request is the only one in flight.
        let batches = batches_for(vec![0, 10, 20], 16, 50, Some(1)).await;
        assert_eq!(batches, vec![(0, vec![0]), (10, vec![10]), (20, vec![20])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_should_wait_for_requests_in_flight_but_never_past_max_batch_timeout() {
        // 100 in flight, but requests arrive one a ms: each batch waits its budget for them.
        for timeout_ms in [1, 2, 5] {
            let batches = batches_for((0..12).collect(), 16, timeout_ms, Some(100)).await;
            assert!(sizes(&batches).iter().any(|&n| n > 1), "{batches:?}");
            for (sent, arrived) in &batches {
                assert!(
                    *sent <= arrived[0] + timeout_ms,
                    "timeout {timeout_ms} ms: {batches:?}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_zero_timeout_a_batch_should_take_only_what_is_queued() {
        let batches = batches_for(vec![0, 0, 1], 8, 0, Some(10)).await;
        assert_eq!(batches, vec![(0, vec![0, 0]), (1, vec![1])]);
    }

    #[test]
    fn a_wait_that_runs_out_should_lower_the_concurrency_it_waits_for() {
        let start = Instant::now();
        let mut policy = Policy::new(16, Duration::from_millis(50));
        // 8 were in flight once: a batch of 3 waits for more, up to the least budget.
        assert_eq!(
            policy.decide(start, start, 1, 8),
            Decision::Wait(start + MIN_BUDGET)
        );
        assert_eq!(
            policy.decide(start, start + MIN_BUDGET, 3, 3),
            Decision::Send(Why::Expired)
        );
        policy.waited(Why::Expired, MIN_BUDGET, 3);
        assert_eq!(policy.decide(start, start, 3, 3), Decision::Send(Why::Full));
    }

    #[test]
    fn after_a_pause_the_first_requests_should_not_wait() {
        let start = Instant::now();
        let mut policy = Policy::new(16, Duration::from_millis(50));
        for k in 0..32 {
            policy.arrived(start + Duration::from_micros(50 * k), 1);
        }
        assert!(matches!(
            policy.decide(start, start, 1, 8),
            Decision::Wait(_)
        ));
        let later = start + Duration::from_secs(10);
        policy.arrived(later, 1);
        assert_eq!(
            policy.decide(later, later, 1, 1),
            Decision::Send(Why::Sparse)
        );
        // Quick arrivals again: a few requests later the batcher waits again.
        for k in 1..=16 {
            policy.arrived(later + Duration::from_micros(50 * k), 1);
        }
        assert!(matches!(
            policy.decide(later, later, 1, 8),
            Decision::Wait(_)
        ));
    }

    #[test]
    fn sparse_arrivals_should_not_be_waited_for() {
        let start = Instant::now();
        let mut policy = Policy::new(16, Duration::from_millis(50));
        for k in 0..32 {
            policy.arrived(start + Duration::from_millis(10 * k), 1);
        }
        assert_eq!(
            policy.decide(start, start, 1, 8),
            Decision::Send(Why::Sparse)
        );
    }

    #[test]
    fn the_budget_should_follow_the_waits_that_fill_their_batch_up_to_max_batch_timeout() {
        let start = Instant::now();
        let mut policy = Policy::new(16, Duration::from_millis(50));
        assert_eq!(policy.budget(), MIN_BUDGET);
        for _ in 0..64 {
            policy.waited(Why::Full, Duration::from_millis(3), 0);
        }
        let budget = policy.budget();
        assert!(
            budget > Duration::from_millis(5) && budget <= Duration::from_millis(6),
            "{budget:?}"
        );
        assert_eq!(
            policy.decide(start, start, 1, 8),
            Decision::Wait(start + budget)
        );
        let mut short = Policy::new(16, Duration::from_millis(2));
        for _ in 0..64 {
            short.waited(Why::Full, Duration::from_millis(3), 0);
        }
        assert_eq!(short.budget(), Duration::from_millis(2));
        let mut none = Policy::new(16, Duration::ZERO);
        assert_eq!(
            none.decide(start, start, 1, 8),
            Decision::Send(Why::Expired)
        );
    }

    #[tokio::test]
    async fn requests_in_flight_should_not_count_answered_ones_nor_ones_never_answered() {
        let (_tx, queue) = mpsc::unbounded_channel();
        let (batches, _rx) = async_channel::bounded(1);
        let instance = Arc::new(Gauge::default());
        let mut batcher = Batcher {
            queue,
            batches,
            instance: Arc::clone(&instance),
            policy: Policy::new(16, Duration::from_millis(50)),
            handed: 10,
            last_size: 5,
            never_answered: 0,
        };
        let set = |waiting: usize, running: usize, completed: u64| {
            instance.waiting.store(waiting, Ordering::Release);
            instance.running.store(running, Ordering::Release);
            instance.completed.store(completed, Ordering::Release);
        };
        // 10 handed over, 7 answered, nothing running: 3 were never answered.
        set(2, 0, 7);
        assert_eq!(batcher.in_flight(), 2);
        // 5 more handed over and running.
        batcher.handed = 15;
        set(2, 5, 7);
        assert_eq!(batcher.in_flight(), 7);
        // They are answered, and still counted as running for a moment.
        set(3, 5, 12);
        assert_eq!(batcher.in_flight(), 3);
    }

    /// A closed loop of `clients` clients, each sending its next request as soon as it has its
    /// answer (after yielding a few times, its "network"), and `workers` workers, each taking
    /// `service` a batch (`None`: no time, a few yields) and counting as the replica's do: a
    /// batch stays counted as running a little after its answers are out. Returns when each
    /// batch was handed to a worker (ms from the start) and its size.
    async fn closed_loop(
        clients: usize,
        workers: usize,
        service: Option<Duration>,
        rounds: usize,
    ) -> Vec<(u64, usize)> {
        let start = Instant::now();
        let gauge = Arc::new(Gauge::default());
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let (btx, brx) = async_channel::bounded::<Vec<Job>>(1);
        let timeout = Duration::from_millis(50);
        tokio::spawn(run(rx, btx, 16, timeout, Arc::clone(&gauge)));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        for _ in 0..workers {
            let brx = brx.clone();
            let gauge = Arc::clone(&gauge);
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                while let Ok(batch) = brx.recv().await {
                    let n = batch.len();
                    gauge.running.fetch_add(n, Ordering::AcqRel);
                    gauge.waiting.fetch_sub(n, Ordering::AcqRel);
                    if let Ok(mut log) = log.lock() {
                        log.push((ms_since(start), n));
                    }
                    match service {
                        Some(service) => tokio::time::sleep(service).await,
                        None => {
                            for _ in 0..10 {
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                    gauge.completed.fetch_add(n as u64, Ordering::AcqRel);
                    for job in batch {
                        job.reply.send(Ok(Response::ok(""))).ok();
                    }
                    for _ in 0..20 {
                        tokio::task::yield_now().await;
                    }
                    gauge.running.fetch_sub(n, Ordering::AcqRel);
                }
            });
        }
        let mut tasks = Vec::new();
        for c in 0..clients {
            let tx = tx.clone();
            let gauge = Arc::clone(&gauge);
            tasks.push(tokio::spawn(async move {
                for _ in 0..rounds {
                    for _ in 0..c % 4 {
                        tokio::task::yield_now().await;
                    }
                    gauge.waiting.fetch_add(1, Ordering::AcqRel);
                    let (job, answer) = job(String::new());
                    if tx.send(job).is_err() {
                        return;
                    }
                    answer.await.ok();
                }
            }));
        }
        drop(tx);
        for task in tasks {
            task.await.ok();
        }
        log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_loop_should_get_one_batch_of_all_its_clients_without_waiting() {
        for (clients, workers) in [(8, 1), (8, 5), (5, 2), (16, 5), (1, 1)] {
            let log = closed_loop(clients, workers, None, 30).await;
            // The last batch waits for clients that have sent all their requests.
            let settled = &log[3..log.len() - 1];
            assert!(
                settled.iter().all(|&(_, size)| size == clients),
                "{clients} clients, {workers} workers: {log:?}"
            );
            // No batch waits for its timer once the batcher knows its clients.
            let first = settled[0].0;
            assert!(
                settled.iter().all(|&(at, _)| at == first),
                "{clients} clients, {workers} workers: {log:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_loop_beyond_max_batch_size_should_get_full_batches() {
        for workers in [1, 2, 5] {
            let log = closed_loop(40, workers, None, 30).await;
            let settled = &log[3..log.len() - 3];
            let full = settled.iter().filter(|&&(_, size)| size == 16).count();
            assert!(full * 10 >= settled.len() * 6, "{workers} workers: {log:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_requests_of_a_running_batch_should_never_idle_the_worker() {
        // A batch runs longer than the wait budget: the batch gathered meanwhile goes when
        // its budget is spent, and the worker takes it as soon as it is free.
        let log = closed_loop(8, 1, Some(Duration::from_millis(5)), 20).await;
        assert_eq!(log.iter().map(|&(_, size)| size).sum::<usize>(), 8 * 20);
        for pair in log.windows(2) {
            assert_eq!(pair[1].0 - pair[0].0, 5, "{log:?}");
        }
    }
}
