//! Conformance suites that every implementation of a trait runs in its tests (feature
//! `conformance`).
//!
//! [`storage_mount`] checks a [`StorageMount`] that serves a known set of files: listing,
//! lazy and eager mounts, reads, refusals of missing and escaping paths, cumulative progress,
//! files on disk after an eager mount (when the target is a real directory), and a second
//! eager mount that fetches nothing. The suite is `async` and brings no runtime: drive it
//! with the caller's (`#[tokio::test]`, or [`testing::block_on`](crate::testing::block_on) for
//! mounts that never wait).
//!
//! ```
//! # #[cfg(feature = "testing")] {
//! use eas_core::testing::{block_on, MemoryMount};
//!
//! let mount = MemoryMount::new("mem://m/", "/nonexistent/m").with_file("a/b.bin", "abc");
//! block_on(eas_core::conformance::storage_mount(&mount, &[("a/b.bin", b"abc")]));
//! # }
//! ```
//!
//! [`processor`] checks a [`Processor`] with requests it must answer (`good`) and requests it
//! must refuse (`bad`): it initializes; an empty batch gives no results; a batch gives one
//! result per request, in order; a request gets the same answer alone, again, and inside
//! batches with others in any order (batching must not change answers); a bad request fails
//! with a 4xx status and a message, alone and inside a batch, without spoiling the good
//! requests batched with it; `process` gives the same answers from several threads at once;
//! `metadata()` does not panic. It is a plain blocking function, as `process` is.
//!
//! ```
//! use eas_core::processor::{InitContext, ProcessError, Processor, Request, Response};
//!
//! /// Echoes the body in upper case; refuses bodies that are not UTF-8.
//! struct Upper;
//!
//! impl Processor for Upper {
//!     fn initialize(&mut self, _ctx: &InitContext) -> eas_core::Result<()> {
//!         Ok(())
//!     }
//!
//!     fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
//!         batch
//!             .iter()
//!             .map(|request| {
//!                 let text = std::str::from_utf8(&request.body)
//!                     .map_err(|_| ProcessError::bad_request("the body is not UTF-8"))?;
//!                 Ok(Response::ok(text.to_uppercase()))
//!             })
//!             .collect()
//!     }
//! }
//!
//! eas_core::conformance::processor(
//!     Box::new(Upper),
//!     &InitContext::new("upper"),
//!     &[Request::new("hello"), Request::new("world")],
//!     &[Request::new(vec![0xff, 0xfe])],
//! );
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use crate::processor::{DynProcessor, InitContext, ProcessError, Request, Response};
use crate::storage::{MountMode, TransferProgress};
use crate::{Processor, StorageMount};

/// Runs every check on `mount`, which must serve exactly the files `expected` (relative path,
/// content), and must not have been mounted before. Panics with a message naming the mount,
/// the check and what differed.
pub async fn storage_mount(mount: &dyn StorageMount, expected: &[(&str, &[u8])]) {
    let uri = mount.uri().to_owned();
    assert!(!uri.is_empty(), "a mount must name its source");
    let total: u64 = expected.iter().map(|(_, b)| b.len() as u64).sum();
    let count = expected.len() as u64;

    // list
    let mut listed: Vec<(String, u64)> = match mount.list().await {
        Ok(list) => list.into_iter().map(|o| (o.path, o.size)).collect(),
        Err(e) => panic!("{uri}: list failed: {e}"),
    };
    listed.sort();
    let mut wanted: Vec<(String, u64)> = expected
        .iter()
        .map(|(p, b)| ((*p).to_owned(), b.len() as u64))
        .collect();
    wanted.sort();
    assert_eq!(
        listed, wanted,
        "{uri}: list() must give every file with its size"
    );

    // lazy mount, then reads
    let lazy = match mount.mount(MountMode::Lazy, None).await {
        Ok(report) => report,
        Err(e) => panic!("{uri}: lazy mount failed: {e}"),
    };
    assert_eq!(
        (lazy.files, lazy.bytes),
        (count, total),
        "{uri}: a lazy mount reports every file"
    );
    for (path, bytes) in expected {
        match mount.read(path).await {
            Ok(got) => assert_eq!(&got[..], *bytes, "{uri}: read({path}) gave other bytes"),
            Err(e) => panic!("{uri}: read({path}) failed: {e}"),
        }
    }
    let missing = "no/such/file.bin";
    match mount.read(missing).await {
        Ok(_) => panic!("{uri}: read({missing}) must fail"),
        Err(e) => assert!(
            e.to_string().contains(missing),
            "{uri}: the error for a missing file must name it: {e}"
        ),
    }
    for escaping in ["../outside.bin", "/etc/passwd"] {
        assert!(
            mount.read(escaping).await.is_err(),
            "{uri}: read({escaping}) must be refused"
        );
    }

    // eager mount with progress
    let events: Mutex<Vec<TransferProgress>> = Mutex::new(Vec::new());
    let sink = |p: &TransferProgress| {
        events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(p.clone());
    };
    let eager = match mount.mount(MountMode::Eager, Some(&sink)).await {
        Ok(report) => report,
        Err(e) => panic!("{uri}: eager mount failed: {e}"),
    };
    assert_eq!(
        (eager.files, eager.bytes),
        (count, total),
        "{uri}: an eager mount reports every file"
    );
    let events = events
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for pair in events.windows(2) {
        assert!(
            pair[0].bytes_done <= pair[1].bytes_done,
            "{uri}: progress must be cumulative: {pair:?}"
        );
    }
    for event in &events {
        if let Some(t) = event.bytes_total {
            assert!(
                event.bytes_done <= t,
                "{uri}: progress past its total: {event:?}"
            );
        }
    }
    if eager.fetched_bytes > 0 {
        let last = events.last().map(|e| e.bytes_done);
        assert_eq!(
            last,
            Some(eager.fetched_bytes),
            "{uri}: the last progress report must count every fetched byte"
        );
    }
    let target = mount.target();
    if target.is_dir() {
        for (path, bytes) in expected {
            let on_disk = target.join(path);
            match std::fs::read(&on_disk) {
                Ok(got) => assert_eq!(&got[..], *bytes, "{uri}: {} differs", on_disk.display()),
                Err(e) => panic!("{uri}: {} after an eager mount: {e}", on_disk.display()),
            }
        }
    }

    // remount: everything reused
    let again = match mount.mount(MountMode::Eager, None).await {
        Ok(report) => report,
        Err(e) => panic!("{uri}: second eager mount failed: {e}"),
    };
    assert_eq!(
        (again.fetched_bytes, again.reused_files),
        (0, count),
        "{uri}: a second eager mount must reuse every file"
    );
}

/// How many threads call `process` at once in the concurrency check.
const THREADS: usize = 4;

/// How many batches each of those threads runs.
const ROUNDS: usize = 8;

/// Initializes `processor` with `ctx` and runs every check, with requests it must answer
/// with a 2xx (`good`, at least one) and requests it must refuse with a 4xx (`bad`; empty for
/// a processor that accepts anything, such as an echo). Panics with a message naming the
/// service of `ctx`, the check and the request.
///
/// Answers are compared whole (body, content type and status), so the processor must be
/// deterministic: the same request gets the same bytes whether it runs alone or batched.
pub fn processor(
    mut processor: DynProcessor,
    ctx: &InitContext,
    good: &[Request],
    bad: &[Request],
) {
    let who = format!("processor for `{}`", ctx.service);
    assert!(
        !good.is_empty(),
        "{who}: the suite needs at least one good request"
    );
    if let Err(e) = processor.initialize(ctx) {
        panic!("{who}: initialize failed: {e}");
    }
    let processor: &dyn Processor = &*processor;
    let suite = Suite {
        who: &who,
        processor,
    };

    if std::panic::catch_unwind(AssertUnwindSafe(|| processor.metadata())).is_err() {
        panic!("{who}: metadata() panicked");
    }

    let out = processor.process(&[]);
    assert!(
        out.is_empty(),
        "{who}: an empty batch must give no results, got {out:?}"
    );

    // Alone, twice: the reference answers.
    let alone: Vec<Response> = good
        .iter()
        .map(|request| suite.answer("a good request alone", request))
        .collect();
    for (request, first) in good.iter().zip(&alone) {
        let again = suite.answer("a good request alone, a second time", request);
        assert!(
            again == *first,
            "{who}: the same request must get the same answer twice (the suite compares \
             answers alone and batched): {} gave {first:?}, then {again:?}",
            describe(request)
        );
    }

    // Batches of good requests: all, reversed, each twice.
    let indexed: Vec<usize> = (0..good.len()).collect();
    let reversed: Vec<usize> = indexed.iter().rev().copied().collect();
    let doubled: Vec<usize> = indexed.iter().chain(&indexed).copied().collect();
    for (what, order) in [
        ("a batch of every good request", &indexed),
        ("a batch of every good request, reversed", &reversed),
        ("a batch of every good request, twice", &doubled),
    ] {
        let batch: Vec<Request> = order.iter().map(|&i| good[i].clone()).collect();
        let expected: Vec<Result<&Response, ()>> = order.iter().map(|&i| Ok(&alone[i])).collect();
        suite.batch(what, &batch, &expected);
    }

    // Bad requests, alone and batched with good ones (a bad one first, then alternating).
    for request in bad {
        suite.batch(
            "a bad request alone",
            std::slice::from_ref(request),
            &[Err(())],
        );
    }
    let mixed = mixed(good.len(), bad.len());
    if !bad.is_empty() {
        let batch: Vec<Request> = mixed
            .iter()
            .map(|m| match *m {
                Ok(i) => good[i].clone(),
                Err(j) => bad[j].clone(),
            })
            .collect();
        let expected: Vec<Result<&Response, ()>> = mixed
            .iter()
            .map(|m| m.map(|i| &alone[i]).map_err(|_| ()))
            .collect();
        suite.batch(
            "a batch of good and bad requests (bad ones must not spoil the good ones)",
            &batch,
            &expected,
        );
    }

    // Several threads at once, each with batches in its own order.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let suite = &suite;
                let (alone, mixed) = (&alone, &mixed);
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        let shift = thread + round;
                        let mut order: Vec<Result<usize, usize>> =
                            if bad.is_empty() || round % 2 == 0 {
                                (0..good.len()).map(Ok).collect()
                            } else {
                                mixed.clone()
                            };
                        let len = order.len();
                        order.rotate_left(shift % len);
                        let batch: Vec<Request> = order
                            .iter()
                            .map(|m| match *m {
                                Ok(i) => good[i].clone(),
                                Err(j) => bad[j].clone(),
                            })
                            .collect();
                        let expected: Vec<Result<&Response, ()>> = order
                            .iter()
                            .map(|m| m.map(|i| &alone[i]).map_err(|_| ()))
                            .collect();
                        suite.batch(
                            &format!(
                                "concurrent process calls ({THREADS} threads; thread {thread}, \
                                 round {round})"
                            ),
                            &batch,
                            &expected,
                        );
                    }
                })
            })
            .collect();
        for handle in handles {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// A good request's index (`Ok`) or a bad one's (`Err`): a bad one first, then alternating,
/// until every request of both kinds was placed.
fn mixed(good: usize, bad: usize) -> Vec<Result<usize, usize>> {
    if bad == 0 {
        return Vec::new();
    }
    (0..good.max(bad))
        .flat_map(|k| [Err(k % bad), Ok(k % good)])
        .collect()
}

/// The processor under test, and how failures name it.
struct Suite<'a> {
    who: &'a str,
    processor: &'a dyn Processor,
}

impl Suite<'_> {
    /// The answer to `request` alone, which must succeed.
    fn answer(&self, what: &str, request: &Request) -> Response {
        let who = self.who;
        let mut out = self.processor.process(std::slice::from_ref(request));
        assert!(
            out.len() == 1,
            "{who}: {what}: one request must give one result, got {}: {out:?}",
            out.len()
        );
        match out.remove(0) {
            Ok(response) if response.is_success() => response,
            Ok(response) => panic!(
                "{who}: {what}: {} must succeed, got status {}: {response:?}",
                describe(request),
                response.status
            ),
            Err(e) => panic!("{who}: {what}: {} must succeed, got {e}", describe(request)),
        }
    }

    /// Runs `batch` and checks each result: `Ok(answer)` (the same as alone) or `Err(())` (a
    /// refusal with a 4xx status and a message).
    fn batch(&self, what: &str, batch: &[Request], expected: &[Result<&Response, ()>]) {
        let who = self.who;
        let out = self.processor.process(batch);
        assert!(
            out.len() == batch.len(),
            "{who}: {what}: a batch of {} must give one result per request, got {}: {out:?}",
            batch.len(),
            out.len()
        );
        for (position, ((request, got), want)) in batch.iter().zip(&out).zip(expected).enumerate() {
            match (got, want) {
                (Ok(got), Ok(want)) => assert!(
                    got == *want,
                    "{who}: {what}: request {position} ({}) must get the answer it gets \
                     alone (batching must not change answers, results must keep the order of \
                     the requests): got {got:?}, alone {want:?}",
                    describe(request)
                ),
                (Err(e), Ok(_)) => panic!(
                    "{who}: {what}: request {position} ({}) must succeed as it does alone, got \
                     {e}",
                    describe(request)
                ),
                (Err(e), Err(())) => refusal(who, what, position, request, e),
                (Ok(got), Err(())) => panic!(
                    "{who}: {what}: request {position} ({}) is bad and must fail with a 4xx, \
                     got {got:?}",
                    describe(request)
                ),
            }
        }
    }
}

/// Checks that a bad request's error is a 4xx with a message.
fn refusal(who: &str, what: &str, position: usize, request: &Request, error: &ProcessError) {
    assert!(
        (400..500).contains(&error.status),
        "{who}: {what}: request {position} ({}) is bad and must fail with a 4xx status (the \
         client's fault), got {error}",
        describe(request)
    );
    assert!(
        !error.message.trim().is_empty(),
        "{who}: {what}: the refusal of request {position} ({}) must say why: {error:?}",
        describe(request)
    );
}

/// A request, short enough for a panic message.
fn describe(request: &Request) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(&request.body);
    let mut body: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        body.push_str("...");
    }
    match &request.content_type {
        Some(ct) => format!("body {body:?}, content type {ct:?}"),
        None => format!("body {body:?}"),
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use crate::testing::{MemoryMount, block_on};

    #[test]
    fn memory_mount_should_pass_the_storage_conformance_suite() {
        let mount = MemoryMount::new("mem://models/", "/nonexistent/eas/models")
            .with_file("model.onnx", "onnx!")
            .with_file("tokenizer/vocab.txt", vec![7u8; 1000]);
        block_on(super::storage_mount(
            &mount,
            &[
                ("model.onnx", b"onnx!"),
                ("tokenizer/vocab.txt", &[7u8; 1000]),
            ],
        ));
    }
}

#[cfg(test)]
mod processor_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::Processor;
    use crate::processor::{InitContext, ProcessError, Request, Response};

    /// Upper-cases UTF-8 bodies, refuses others with a 400; `sick` makes it misbehave.
    #[derive(Default)]
    struct Upper {
        sick: Sickness,
        calls: AtomicUsize,
    }

    #[derive(Default, Clone, Copy, PartialEq, Eq)]
    enum Sickness {
        #[default]
        None,
        /// Answers with the batch size appended.
        BatchDependent,
        /// Fails the whole batch when one request is bad.
        Spoils,
        /// Refuses bad requests with a 500.
        Refuses500,
        /// Answers a batch in reverse order.
        Reversed,
        /// Answers differently every other call.
        Flaky,
    }

    impl Upper {
        fn sick(sick: Sickness) -> Box<Self> {
            Box::new(Self {
                sick,
                ..Self::default()
            })
        }
    }

    impl Processor for Upper {
        fn initialize(&mut self, _ctx: &InitContext) -> crate::Result<()> {
            Ok(())
        }

        fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let any_bad = batch.iter().any(|r| std::str::from_utf8(&r.body).is_err());
            let mut out: Vec<_> = batch
                .iter()
                .map(|r| {
                    let Ok(text) = std::str::from_utf8(&r.body) else {
                        let status = if self.sick == Sickness::Refuses500 {
                            500
                        } else {
                            400
                        };
                        return Err(ProcessError::new(status, "the body is not UTF-8"));
                    };
                    if self.sick == Sickness::Spoils && any_bad {
                        return Err(ProcessError::bad_request("a bad neighbour"));
                    }
                    let mut answer = text.to_uppercase();
                    if self.sick == Sickness::BatchDependent {
                        answer.push_str(&batch.len().to_string());
                    }
                    if self.sick == Sickness::Flaky && call % 2 == 1 {
                        answer.push('!');
                    }
                    Ok(Response::ok(answer))
                })
                .collect();
            if self.sick == Sickness::Reversed {
                out.reverse();
            }
            out
        }
    }

    fn run(processor: Box<Upper>) {
        super::processor(
            processor,
            &InitContext::new("upper"),
            &[Request::new("a"), Request::new("bc"), Request::new("def")],
            &[Request::new(vec![0xff]), Request::new(vec![0xc3, 0x28])],
        );
    }

    #[test]
    fn a_well_behaved_processor_should_pass_the_processor_conformance_suite() {
        run(Upper::sick(Sickness::None));
    }

    #[cfg(feature = "testing")]
    #[test]
    fn the_testing_echo_should_pass_the_processor_conformance_suite() {
        super::processor(
            Box::new(crate::testing::CountingEcho::new()),
            &InitContext::new("echo"),
            &[
                Request::new("a"),
                Request::new("b").with_content_type("text/plain"),
            ],
            &[],
        );
    }

    #[test]
    #[should_panic(expected = "batching must not change answers")]
    fn the_suite_should_catch_answers_that_depend_on_the_batch() {
        run(Upper::sick(Sickness::BatchDependent));
    }

    #[test]
    #[should_panic(expected = "must succeed as it does alone")]
    fn the_suite_should_catch_a_bad_request_spoiling_its_batch() {
        run(Upper::sick(Sickness::Spoils));
    }

    #[test]
    #[should_panic(expected = "must fail with a 4xx status")]
    fn the_suite_should_catch_a_bad_request_refused_with_a_5xx() {
        run(Upper::sick(Sickness::Refuses500));
    }

    #[test]
    #[should_panic(expected = "must keep the order")]
    fn the_suite_should_catch_results_out_of_order() {
        run(Upper::sick(Sickness::Reversed));
    }

    #[test]
    #[should_panic(expected = "the same answer twice")]
    fn the_suite_should_catch_a_processor_that_is_not_deterministic() {
        run(Upper::sick(Sickness::Flaky));
    }
}
