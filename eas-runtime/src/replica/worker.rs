//! The threads that run the processor, off the async threads: starting the instance
//! (build, initialize, warm up), running batches, and recovering from crashes.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use eas_core::processor::{ProcessError, Processor, Request, Response};

use tokio::sync::oneshot;

use super::{Failure, Job, ProcessDied, ReplicaState, Reply, Shared};

/// Builds the processor, replays the warm-up, starts the workers and marks the instance
/// ready; or marks it failed and says why.
pub(super) fn start(shared: &Arc<Shared>, batches: async_channel::Receiver<Vec<Job>>) {
    let processor = match build(shared) {
        Ok(processor) => processor,
        Err(why) => {
            tracing::error!(service = %shared.service, instance = shared.index, "{why}");
            shared.set_state(ReplicaState::Failed(why));
            return;
        }
    };
    warm_up(shared, processor.as_ref());
    let count = worker_count(shared, processor.as_ref());
    *shared.processor.write().unwrap_or_else(|e| e.into_inner()) = Some(processor);

    let mut workers = shared.workers.lock().unwrap_or_else(|e| e.into_inner());
    for n in 0..count {
        let worker_shared = Arc::clone(shared);
        let batches = batches.clone();
        let name = format!("eas-{}-{}-w{n}", shared.service, shared.index);
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || run(&worker_shared, &batches))
        {
            Ok(handle) => workers.push(handle),
            Err(e) => {
                drop(workers);
                shared.set_state(ReplicaState::Failed(format!("cannot start a worker: {e}")));
                return;
            }
        }
    }
    drop(workers);
    shared.set_state(ReplicaState::Ready);
    tracing::info!(service = %shared.service, instance = shared.index, "ready");
}

/// The worker threads to start: `rpc.worker_threads`, or fewer when the processor runs no
/// more batches than that well at once ([`Processor::max_concurrent_batches`]; said in the
/// log).
fn worker_count(shared: &Shared, processor: &dyn Processor) -> usize {
    let configured = shared.config.worker_threads.max(1);
    let most = processor
        .max_concurrent_batches()
        .map_or(configured, |most| most.clamp(1, configured));
    if most < configured {
        tracing::info!(
            service = %shared.service,
            instance = shared.index,
            "rpc.worker_threads {configured}: the processor runs at most {most} batch(es) \
             well at once (each already uses the instance's cores); {most} worker(s) started"
        );
    }
    most
}

/// A new processor, initialized; `Err` says why not (a panic included).
fn build(shared: &Shared) -> Result<Arc<dyn Processor>, String> {
    let made = catch_unwind(AssertUnwindSafe(|| {
        let mut processor = (shared.make_processor)().map_err(|e| e.to_string())?;
        processor
            .initialize(&shared.init)
            .map_err(|e| format!("processor initialization failed: {e}"))?;
        Ok::<_, String>(processor)
    }));
    match made {
        Ok(Ok(processor)) => Ok(Arc::from(processor)),
        Ok(Err(why)) => Err(why),
        Err(panic) => Err(format!(
            "processor panicked while starting: {}",
            panic_message(&*panic)
        )),
    }
}

/// Replays the warm-up requests one at a time; failures are logged, not fatal.
fn warm_up(shared: &Shared, processor: &dyn Processor) {
    let mut failed = 0usize;
    for request in &shared.warm_up {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            processor.process(std::slice::from_ref(request))
        }));
        if !matches!(outcome.as_deref(), Ok([Ok(_)])) {
            failed += 1;
        }
    }
    if !shared.warm_up.is_empty() {
        tracing::info!(
            service = %shared.service,
            instance = shared.index,
            requests = shared.warm_up.len(),
            failed,
            "warm-up done"
        );
    }
}

/// The CPU time the current thread has used; `None` where the OS cannot say.
pub(super) fn thread_cpu_time() -> Option<std::time::Duration> {
    cpu_time::ThreadTime::try_now()
        .ok()
        .map(|t| t.as_duration())
}

/// One worker: takes batches until the batcher is gone. After each batch it charges the
/// instance with the thread's CPU time since the last one: one clock read per batch, and the
/// time spent waiting for batches is (nearly) no CPU.
fn run(shared: &Arc<Shared>, batches: &async_channel::Receiver<Vec<Job>>) {
    let mut charged = thread_cpu_time();
    while let Ok(batch) = batches.recv_blocking() {
        let taken = batch.len();
        // Requests whose client already gave up (keepalive expired) are not run.
        let jobs: Vec<Job> = batch.into_iter().filter(|j| !j.reply.is_closed()).collect();
        shared.running.fetch_add(jobs.len(), Ordering::AcqRel);
        shared.waiting.fetch_sub(taken, Ordering::AcqRel);
        let count = jobs.len();
        if count > 0 {
            run_batch(shared, jobs);
        }
        let now = thread_cpu_time();
        if let (Some(before), Some(now)) = (charged, now) {
            shared.add_cpu_time(now.saturating_sub(before));
        }
        charged = now.or(charged);
        // After the CPU time: once `load()` reads 0, `usage()` includes this batch.
        shared.running.fetch_sub(count, Ordering::AcqRel);
    }
}

pub(super) fn run_batch(shared: &Arc<Shared>, jobs: Vec<Job>) {
    let metrics = &shared.histograms;
    let mut requests = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        metrics
            .queue_wait
            .observe(job.enqueued_at.elapsed().as_secs_f64());
        requests.push(job.request);
        replies.push(job.reply);
    }
    let Some(processor) = shared.current_processor() else {
        for reply in replies {
            let _ = reply.send(Err(no_processor(shared)));
        }
        return;
    };

    metrics.batch_size.observe(requests.len() as f64);
    let started = std::time::Instant::now();
    let outcome = call(processor.as_ref(), &requests);
    metrics
        .process_duration
        .observe(started.elapsed().as_secs_f64());

    let (answers, crash) = match outcome {
        Ok(answers) => (answers, None),
        Err(Crash::Died(died)) => {
            // Counted and answered by `after_death`.
            return after_death(shared, &processor, &requests, replies, died);
        }
        Err(Crash::Panicked(why)) if requests.len() > 1 => {
            // Find the requests that make it panic: run each alone.
            let mut crash = Some(why);
            let answers = requests
                .iter()
                .map(
                    |request| match call(processor.as_ref(), std::slice::from_ref(request)) {
                        Ok(mut one) => one
                            .pop()
                            .unwrap_or_else(|| Err(Failure::Internal("no answer".into()))),
                        Err(Crash::Panicked(why)) => {
                            crash = Some(why.clone());
                            Err(Failure::Panicked(why))
                        }
                        Err(Crash::Died(died)) => {
                            crash = Some(died.why.clone());
                            Err(Failure::Died(died.why))
                        }
                    },
                )
                .collect();
            (answers, crash)
        }
        Err(Crash::Panicked(why)) => (vec![Err(Failure::Panicked(why.clone()))], Some(why)),
    };
    answer(shared, replies, answers);
    if let Some(why) = crash {
        recover(shared, &processor, why);
    }
}

/// Runs one request of an inline processor on this thread and returns its answer: what
/// [`run_batch`] does for a batch of one (the same metrics, the same recovery from a panic;
/// an inline processor has no process to lose, so none to restart),
/// without a queue, a channel or the batch's vectors; the call's time is charged to the
/// instance as its CPU time.
pub(super) fn run_one(shared: &Arc<Shared>, request: &Request) -> Reply {
    let metrics = &shared.histograms;
    // It waited for nothing: it runs where it arrived.
    metrics.queue_wait.observe(0.0);
    let Some(processor) = shared.current_processor() else {
        return Err(no_processor(shared));
    };
    metrics.batch_size.observe(1.0);
    let started = std::time::Instant::now();
    let outcome = call_raw(processor.as_ref(), std::slice::from_ref(request));
    let spent = started.elapsed();
    metrics.process_duration.observe(spent.as_secs_f64());
    // An inline processor runs on the I/O thread and must not block (see `register_inline`),
    // so the wall time of its call is its CPU time; `Instant` reads a vDSO clock, where a
    // thread CPU clock is a system call (about 1.4 us here) per request.
    shared.add_cpu_time(spent);
    let (reply, crash) = match outcome {
        Ok(mut answers) => match (answers.len(), answers.pop()) {
            (1, Some(answer)) => (to_reply(answer), None),
            (count, _) => (Err(Failure::Internal(wrong_count(count, 1))), None),
        },
        Err(Crash::Panicked(why)) => (Err(Failure::Panicked(why.clone())), Some(why)),
        // Inline processors run in this process (the child-process provider turns inline off),
        // so none has a process to lose; were one to say so, it fails like a panic.
        Err(Crash::Died(died)) => (Err(Failure::Died(died.why.clone())), Some(died.why)),
    };
    shared.completed.fetch_add(1, Ordering::Relaxed);
    if let Some(why) = crash {
        recover(shared, &processor, why);
    }
    reply
}

/// Why a request found the instance without a processor (stopped, or down after a crash).
fn no_processor(shared: &Shared) -> Failure {
    let why = super::describe_state(&shared.state());
    Failure::Dropped(format!(
        "instance {} of service `{}` is {why}",
        shared.index, shared.service
    ))
}

/// Counts the answers, then sends them.
fn answer(shared: &Shared, replies: Vec<oneshot::Sender<Reply>>, answers: Vec<Reply>) {
    // Counted before the answers go out: a client that has its answer sees it counted.
    shared
        .completed
        .fetch_add(replies.len() as u64, Ordering::Relaxed);
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

/// After the process running a batch died: the instance restarts its processor (or stays
/// down under crash block). A batch that never reached the dead process runs again whole on
/// the new one; of a batch that did, each request runs again alone when there were several
/// (so that the one that kills the process fails alone), and a lone request fails with
/// [`Failure::Died`]: it may have run, and may kill the process again.
fn after_death(
    shared: &Arc<Shared>,
    dead: &Arc<dyn Processor>,
    requests: &[Request],
    replies: Vec<oneshot::Sender<Reply>>,
    died: ProcessDied,
) {
    recover(shared, dead, died.why.clone());
    let retry = !died.delivered || requests.len() > 1;
    let fresh = if retry { restarted(shared) } else { None };
    let Some(fresh) = fresh else {
        // A lone request that reached the process, or the instance stays down.
        let answers = requests
            .iter()
            .map(|_| Err(Failure::Died(died.why.clone())))
            .collect();
        return answer(shared, replies, answers);
    };
    if !died.delivered {
        // Nothing ran; one more try on the new process (`restarted` bounds a crash loop).
        return match call(fresh.as_ref(), requests) {
            Err(Crash::Died(again)) => after_death(
                shared,
                &fresh,
                requests,
                replies,
                ProcessDied {
                    delivered: true,
                    ..again
                },
            ),
            Err(Crash::Panicked(why)) => {
                let answers = requests
                    .iter()
                    .map(|_| Err(Failure::Panicked(why.clone())))
                    .collect();
                answer(shared, replies, answers);
                recover(shared, &fresh, why);
            }
            Ok(answers) => answer(shared, replies, answers),
        };
    }
    let mut why = died.why;
    for (request, reply) in requests.iter().zip(replies) {
        let Some(current) = shared.current_processor() else {
            // Down for good (crash block, or the restart failed).
            answer(shared, vec![reply], vec![Err(Failure::Died(why.clone()))]);
            continue;
        };
        match call(current.as_ref(), std::slice::from_ref(request)) {
            Ok(mut one) => {
                let one = one
                    .pop()
                    .unwrap_or_else(|| Err(Failure::Internal("no answer".into())));
                answer(shared, vec![reply], vec![one]);
            }
            Err(Crash::Panicked(panic)) => {
                answer(
                    shared,
                    vec![reply],
                    vec![Err(Failure::Panicked(panic.clone()))],
                );
                recover(shared, &current, panic);
                let _ = restarted(shared);
            }
            Err(Crash::Died(again)) => {
                why = again.why;
                answer(shared, vec![reply], vec![Err(Failure::Died(why.clone()))]);
                recover(shared, &current, why.clone());
                let _ = restarted(shared);
            }
        }
    }
}

/// Waits for the restart another thread or `recover` started; the new processor, or `None`
/// when the instance stays down.
fn restarted(shared: &Shared) -> Option<Arc<dyn Processor>> {
    while shared.state() == ReplicaState::Restarting {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    shared.current_processor()
}

/// How a processor call ended without answers.
enum Crash {
    /// The processor panicked; the message.
    Panicked(String),
    /// The process that ran it died.
    Died(ProcessDied),
}

/// Runs the processor on a batch. A processor that returns the wrong number of results fails
/// every request of the batch.
fn call(processor: &dyn Processor, requests: &[Request]) -> Result<Vec<Reply>, Crash> {
    let results = call_raw(processor, requests)?;
    if results.len() != requests.len() {
        let why = wrong_count(results.len(), requests.len());
        return Ok(requests
            .iter()
            .map(|_| Err(Failure::Internal(why.clone())))
            .collect());
    }
    Ok(results.into_iter().map(to_reply).collect())
}

/// The processor's results for `requests`, as it returned them, or how it crashed.
fn call_raw(
    processor: &dyn Processor,
    requests: &[Request],
) -> Result<Vec<Result<Response, ProcessError>>, Crash> {
    catch_unwind(AssertUnwindSafe(|| processor.process(requests))).map_err(|panic| match panic
        .downcast::<ProcessDied>(
    ) {
        Ok(died) => Crash::Died(*died),
        Err(panic) => Crash::Panicked(panic_message(&*panic)),
    })
}

/// Why a batch fails when the processor returned `results` results for `batch` requests.
fn wrong_count(results: usize, batch: usize) -> String {
    format!("the processor returned {results} results for a batch of {batch}")
}

fn to_reply(result: Result<Response, ProcessError>) -> Reply {
    result.map_err(Failure::Processor)
}

/// After a crash: stay down (crash block) or rebuild the processor. Only the first worker to
/// see the crash of a given processor does it.
fn recover(shared: &Arc<Shared>, crashed: &Arc<dyn Processor>, why: String) {
    {
        let mut current = shared.processor.write().unwrap_or_else(|e| e.into_inner());
        match current.as_ref() {
            // Someone else is rebuilding it (the crashed processor stays in place until the
            // new one is ready, so that what is queued meanwhile is not dropped).
            Some(p) if Arc::ptr_eq(p, crashed) && shared.state() == ReplicaState::Restarting => {
                return;
            }
            Some(p) if Arc::ptr_eq(p, crashed) => {}
            _ => return, // someone else already handled this crash
        }
        if shared.config.crash_block {
            *current = None;
            drop(current);
            tracing::error!(service = %shared.service, instance = shared.index, "crashed, blocked: {why}");
            shared.set_state(ReplicaState::CrashBlocked(why));
            return;
        }
        // Still under the lock: a second worker seeing the same crash finds it restarting.
        shared.set_state(ReplicaState::Restarting);
    }
    tracing::warn!(service = %shared.service, instance = shared.index, "crashed, restarting: {why}");
    shared.restarts.fetch_add(1, Ordering::Relaxed);
    if shared.publishes_metrics() {
        shared
            .metrics
            .instance_restarts
            .get_or_create(&shared.labels)
            .inc();
    }
    if shared.config.inline {
        // An inline processor crashed on an I/O thread: rebuild it elsewhere.
        let shared = Arc::clone(shared);
        let name = format!("eas-{}-{}-restart", shared.service, shared.index);
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || rebuild(&shared, &why));
        if let Err(e) = spawned {
            tracing::error!("cannot start a thread to restart an instance: {e}");
        }
    } else {
        rebuild(shared, &why);
    }
}

/// Builds a fresh processor after a crash and marks the instance ready, or failed.
fn rebuild(shared: &Arc<Shared>, why: &str) {
    match build(shared) {
        Ok(fresh) => {
            *shared.processor.write().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
            shared.set_state(ReplicaState::Ready);
        }
        Err(error) => {
            *shared.processor.write().unwrap_or_else(|e| e.into_inner()) = None;
            shared.set_state(ReplicaState::Failed(format!(
                "restart after a crash ({why}) failed: {error}"
            )));
        }
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
