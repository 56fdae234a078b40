//! The load generator: HTTP/1.1 keep-alive connections on hyper, in an open loop (requests on
//! a schedule at a target QPS) or a closed loop (a fixed number of connections, each sending
//! its next request when the last answer is in).
//!
//! **Open loop.** A dispatcher task walks the schedule: request `k` of a rate `r` is due at
//! `t0 + k / r` (the schedule restarts from "now" when the rate changes). Each time it wakes
//! (its timer has about 1 ms resolution) it hands every request now due, with its intended
//! time, to the connection workers through a queue; a worker that is free takes the next one.
//! When requests wait in the queue and no worker is free it opens more connections, up to
//! [`LoadOptions::max_connections`]; a request that finds the queue full (the target fell more
//! than a few seconds of load behind) is counted as an `overload` error rather than sent late.
//! Latency runs from the intended time, so time spent waiting for a connection counts:
//! coordinated omission (a stalled server slowing the sender and so hiding its own stall) does
//! not apply.
//!
//! **Closed loop.** `concurrency` workers, each on its own connection, send back to back; the
//! latency is from the actual send. It measures the throughput a fixed number of clients gets,
//! and by construction it cannot show a stall as more than one slow answer per connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HOST};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use super::StressError;
use super::data::Bodies;
use super::record::{Outcome, Recorder, What};
use crate::auth;

/// How requests carry the service token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// No `Authorization` header.
    None,
    /// `Authorization: <token>`.
    Token(String),
    /// The EAS SDK's signature: `Authorization: EAS <sig>` with `Date` and `Content-MD5`.
    Hmac(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Token(_) => "Token(<redacted>)",
            Self::Hmac(_) => "Hmac(<redacted>)",
        })
    }
}

/// One request body with what signing needs of it.
struct Body {
    bytes: Bytes,
    md5: HeaderValue,
    md5_text: String,
}

/// Where the requests go and what they carry.
#[derive(Clone)]
pub struct Target {
    url: String,
    authority: String,
    path: String,
    uri: Uri,
    credentials: Credentials,
    content_type: HeaderValue,
    bodies: Arc<[Body]>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .field("bodies", &self.bodies.len())
            .finish_non_exhaustive()
    }
}

impl Target {
    /// `POST`s to `url` (`http://host:port/path`; plain HTTP, put TLS in front elsewhere),
    /// sending `bodies` round-robin as `application/octet-stream` without credentials.
    pub fn new(url: &str, bodies: &Bodies) -> Result<Self, StressError> {
        let bad = |why: &str| StressError::Target(format!("`{url}`: {why}"));
        let uri: Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported; give an http:// URL")),
            _ => return Err(bad("give an http:// URL")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let authority = if authority.port().is_some() {
            authority.as_str().to_owned()
        } else {
            format!("{}:80", authority.host())
        };
        let path = uri.path().to_owned();
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        if bodies.is_empty() {
            return Err(StressError::Data("no request bodies".into()));
        }
        let bodies: Vec<Body> = bodies
            .as_slice()
            .iter()
            .map(|bytes| {
                let md5_text = auth::content_md5(bytes);
                Body {
                    bytes: bytes.clone(),
                    md5: HeaderValue::from_str(&md5_text)
                        .unwrap_or_else(|_| HeaderValue::from_static("")),
                    md5_text,
                }
            })
            .collect();
        let request_uri: Uri = path_and_query.parse().map_err(|_| bad("a bad path"))?;
        Ok(Self {
            url: url.trim().to_owned(),
            authority,
            path,
            uri: request_uri,
            credentials: Credentials::None,
            content_type: HeaderValue::from_static("application/octet-stream"),
            bodies: bodies.into(),
        })
    }

    /// Sends the token as `credentials` say.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sends `content_type` (it is part of an HMAC signature).
    pub fn with_content_type(mut self, content_type: &str) -> Result<Self, StressError> {
        self.content_type = HeaderValue::from_str(content_type).map_err(|_| {
            StressError::Target(format!(
                "content type `{content_type}` is not a header value"
            ))
        })?;
        Ok(self)
    }

    /// The URL requests go to.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether requests carry an HMAC signature.
    #[must_use]
    pub fn is_signed(&self) -> bool {
        matches!(self.credentials, Credentials::Hmac(_))
    }
}

/// Bounds of a load run.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// The most connections (so requests in flight) the open loop opens.
    pub max_connections: usize,
    /// How long one request may take from its send to its whole answer (`timeout` past it).
    pub request_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl LoadOptions {
    /// Opens at most `max` connections.
    #[must_use]
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Gives each request `timeout`.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// What every worker shares.
struct Shared {
    target: Target,
    addr: SocketAddr,
    host: HeaderValue,
    recorder: Recorder,
    options: LoadOptions,
    next_body: AtomicUsize,
    stopping: AtomicBool,
    idle: AtomicUsize,
    workers: AtomicUsize,
    /// Idle open-loop workers that should close their connections.
    retire: AtomicUsize,
}

/// A running load; stop it with [`Load::finish`].
pub struct Load {
    shared: Arc<Shared>,
    rate: Option<watch::Sender<f64>>,
    driver: Option<tokio::task::JoinHandle<JoinSet<()>>>,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

/// Idle connections the open loop keeps however few are in use.
const SPARE_CONNECTIONS: usize = 8;
/// The queue between the dispatcher and the workers holds at most this many seconds of load.
const QUEUE_SECS: f64 = 5.0;
const MIN_QUEUE: usize = 1024;
const MAX_QUEUE: usize = 1 << 20;

impl Load {
    async fn shared(
        target: Target,
        recorder: Recorder,
        options: LoadOptions,
    ) -> Result<Arc<Shared>, StressError> {
        let addr = tokio::net::lookup_host(&target.authority)
            .await
            .map_err(|e| StressError::Target(format!("{}: {e}", target.authority)))?
            .next()
            .ok_or_else(|| StressError::Target(format!("{}: no address", target.authority)))?;
        let host = HeaderValue::from_str(&target.authority)
            .map_err(|_| StressError::Target(format!("bad host `{}`", target.authority)))?;
        Ok(Arc::new(Shared {
            target,
            addr,
            host,
            recorder,
            options,
            next_body: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            retire: AtomicUsize::new(0),
        }))
    }

    /// Starts an open loop at 0 QPS; [`set_rate`](Self::set_rate) starts the schedule.
    pub async fn open(
        target: Target,
        recorder: Recorder,
        options: LoadOptions,
    ) -> Result<Self, StressError> {
        let shared = Self::shared(target, recorder, options).await?;
        let (rate, rates) = watch::channel(0.0);
        let driver = tokio::spawn(dispatch(Arc::clone(&shared), rates));
        Ok(Self {
            shared,
            rate: Some(rate),
            driver: Some(driver),
        })
    }

    /// Starts a closed loop of `concurrency` connections.
    pub async fn closed(
        target: Target,
        recorder: Recorder,
        options: LoadOptions,
        concurrency: usize,
    ) -> Result<Self, StressError> {
        let shared = Self::shared(target, recorder, options).await?;
        let mut workers = JoinSet::new();
        for _ in 0..concurrency.max(1) {
            workers.spawn(closed_worker(Arc::clone(&shared)));
        }
        Ok(Self {
            shared,
            rate: None,
            driver: Some(tokio::spawn(async move { workers })),
        })
    }

    /// Moves the open loop to `qps` from now on (0 pauses it); no effect on a closed loop.
    pub fn set_rate(&self, qps: f64) {
        if let Some(rate) = &self.rate {
            rate.send_replace(if qps.is_finite() { qps.max(0.0) } else { 0.0 });
        }
    }

    /// Open-loop requests being sent or waiting for their answer (connections not idle).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        let workers = self.shared.workers.load(Ordering::Relaxed);
        workers.saturating_sub(self.shared.idle.load(Ordering::Relaxed))
    }

    /// Connections open now (one per worker).
    #[must_use]
    pub fn connections(&self) -> usize {
        self.shared.workers.load(Ordering::Relaxed)
    }

    /// Stops sending, waits up to `drain` for the answers in flight, then drops the rest.
    pub async fn finish(mut self, drain: Duration) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        // Dropping the rate ends the dispatcher, which closes the queue.
        drop(self.rate.take());
        let Some(driver) = self.driver.take() else {
            return;
        };
        let Ok(mut workers) = driver.await else {
            return;
        };
        let drained = tokio::time::timeout(drain, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            workers.abort_all();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

/// The open loop's schedule at one rate: request `k` is due at `start + k / rate` (computed
/// from `k`, so it does not drift however long it runs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    taken: u64,
}

impl Schedule {
    /// `rate` requests per second from `start` (none at a rate of 0).
    #[must_use]
    pub fn new(start: Instant, rate: f64) -> Self {
        Self {
            start,
            rate: if rate.is_finite() { rate.max(0.0) } else { 0.0 },
            taken: 0,
        }
    }

    /// When the next request is due (`None` at a rate of 0).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn next_due(&self) -> Option<Instant> {
        if self.rate <= 0.0 {
            return None;
        }
        Some(self.start + Duration::from_secs_f64(self.taken as f64 / self.rate))
    }

    /// The intended time of the next request if it is due by `now`, and moves past it.
    pub fn pop_due(&mut self, now: Instant) -> Option<Instant> {
        let due = self.next_due().filter(|t| *t <= now)?;
        self.taken += 1;
        Some(due)
    }
}

/// The open loop's schedule: hands each due request to the workers, opening connections as
/// the queue needs them; returns the workers when the rate's sender is dropped.
async fn dispatch(shared: Arc<Shared>, mut rates: watch::Receiver<f64>) -> JoinSet<()> {
    let mut workers = JoinSet::new();
    let mut capacity = MIN_QUEUE;
    let (mut jobs, mut queue) = async_channel::bounded::<Instant>(capacity);
    let mut schedule = Schedule::new(Instant::now(), 0.0);
    loop {
        if schedule.next_due().is_some() {
            let now = Instant::now();
            let mut due = 0;
            while let Some(intended) = schedule.pop_due(now) {
                match jobs.try_send(intended) {
                    Ok(()) => due += 1,
                    Err(_) => shared.recorder.error(now, "overload"),
                }
            }
            shared.recorder.sent(now, due);
            let waiting = jobs.len();
            let idle = shared.idle.load(Ordering::Relaxed);
            let open = shared.workers.load(Ordering::Relaxed);
            let wanted = waiting
                .saturating_sub(idle)
                .min(shared.options.max_connections.saturating_sub(open));
            for _ in 0..wanted {
                shared.workers.fetch_add(1, Ordering::Relaxed);
                workers.spawn(open_worker(Arc::clone(&shared), queue.clone()));
            }
            // Connections beyond twice those in use (and a few) close as they go idle: a
            // burst (a stalled target, a probe past capacity) would otherwise leave hundreds
            // open, and the queue hands jobs to every one of them in turn, so none would ever
            // idle out, and the target would pay for them all in later steps.
            let busy = open.saturating_sub(idle);
            let excess = idle.saturating_sub((2 * busy).max(SPARE_CONNECTIONS));
            shared.retire.store(excess, Ordering::Relaxed);
            // Reap finished workers (their connections failed) so the set stays small.
            while workers.try_join_next().is_some() {}
        }
        let next = schedule.next_due();
        tokio::select! {
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
            changed = rates.changed() => {
                if changed.is_err() {
                    return workers;
                }
                let rate = *rates.borrow_and_update();
                schedule = Schedule::new(Instant::now(), rate);
                // Room for QUEUE_SECS of the new rate: a larger queue for a larger rate (the
                // old one drains into the workers that hold it).
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let wanted = ((rate * QUEUE_SECS) as usize).clamp(MIN_QUEUE, MAX_QUEUE);
                if wanted > capacity {
                    capacity = wanted;
                    jobs.close();
                    (jobs, queue) = async_channel::bounded(capacity);
                }
            }
        }
    }
}

/// One connection of the open loop: takes due requests off the queue until it closes.
async fn open_worker(shared: Arc<Shared>, queue: async_channel::Receiver<Instant>) {
    let mut worker = Worker::new(&shared);
    loop {
        if queue.is_empty() {
            shared.recorder.record_all(&mut worker.pending);
        }
        // Fewer connections when many stand idle (see `dispatch`).
        if shared
            .retire
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
            .is_ok()
        {
            break;
        }
        shared.idle.fetch_add(1, Ordering::Relaxed);
        let job = queue.recv().await;
        shared.idle.fetch_sub(1, Ordering::Relaxed);
        let Ok(intended) = job else {
            break;
        };
        if shared.stopping.load(Ordering::Relaxed) {
            continue;
        }
        shared.exchange(&mut worker, intended).await;
    }
    shared.workers.fetch_sub(1, Ordering::Relaxed);
}

/// One connection of the closed loop: sends back to back until the load stops.
async fn closed_worker(shared: Arc<Shared>) {
    shared.workers.fetch_add(1, Ordering::Relaxed);
    let mut worker = Worker::new(&shared);
    while !shared.stopping.load(Ordering::Relaxed) {
        let failed_to_connect = shared.exchange(&mut worker, Instant::now()).await;
        if failed_to_connect {
            // Do not spin on a refused connect.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    shared.workers.fetch_sub(1, Ordering::Relaxed);
}

/// What one worker keeps between its requests.
struct Worker {
    connection: Option<Connection>,
    /// The next body to send (each worker starts at another one).
    next_body: usize,
    /// The request timeout's timer, re-armed only when it fires early (see `exchange`), so
    /// that a request costs no timer registration.
    timer: Pin<Box<Sleep>>,
    /// Outcomes not yet handed to the recorder.
    pending: Vec<Outcome>,
    recorder: Recorder,
    /// The `Date` of signed requests, formatted once a second.
    second: u64,
    date: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.recorder.record_all(&mut self.pending);
    }
}

/// A worker hands its outcomes to the recorder in batches of this many...
const FLUSH_BATCH: usize = 64;
/// ... or once the oldest is this old, and whenever it goes idle.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

impl Worker {
    fn new(shared: &Shared) -> Self {
        Self {
            connection: None,
            next_body: shared.next_body.fetch_add(1, Ordering::Relaxed),
            timer: Box::pin(tokio::time::sleep(shared.options.request_timeout)),
            pending: Vec::with_capacity(FLUSH_BATCH),
            recorder: shared.recorder.clone(),
            second: 0,
            date: String::new(),
        }
    }

    fn date(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.date.is_empty() {
            self.second = second;
            self.date = httpdate::fmt_http_date(now);
        }
        &self.date
    }
}

type Connection = SendRequest<Full<Bytes>>;

/// Why an exchange failed, as recorded.
enum Failure {
    Status(http::StatusCode),
    Connect,
    Io,
}

impl Shared {
    /// One request and its answer, recorded; `true` when it could not connect.
    async fn exchange(&self, worker: &mut Worker, intended: Instant) -> bool {
        let request = self.request(worker);
        let limit = Instant::now() + self.options.request_timeout;
        let outcome = {
            let connection = &mut worker.connection;
            let timer = &mut worker.timer;
            let send = self.send(connection, request);
            tokio::pin!(send);
            // The timer was armed for an earlier request, so it fires at or before `limit`; when
            // it fires early it is re-armed at `limit`.
            loop {
                tokio::select! {
                    biased;
                    outcome = &mut send => break Ok(outcome),
                    () = timer.as_mut() => {
                        if Instant::now() >= limit {
                            break Err(());
                        }
                        timer.as_mut().reset(limit);
                    }
                }
            }
        };
        let done = Instant::now();
        let (what, connect_failed) = match outcome {
            Ok(Ok(())) => (
                What::Ok(
                    u64::try_from(done.saturating_duration_since(intended).as_micros())
                        .unwrap_or(u64::MAX),
                ),
                false,
            ),
            Ok(Err(Failure::Status(status))) => (What::Status(status.as_u16()), false),
            Ok(Err(Failure::Connect)) => (What::Kind("connect"), true),
            Ok(Err(Failure::Io)) => (What::Kind("io"), false),
            // The connection still has the request on it: a fresh one for the next.
            Err(()) => (What::Kind("timeout"), false),
        };
        if !matches!(what, What::Ok(_) | What::Status(_)) {
            worker.connection = None;
        }
        worker.pending.push(Outcome { at: done, what });
        // One lock per batch of outcomes; within FLUSH_EVERY of the outcome, so each lands in
        // the second it completed in before that second is closed.
        if worker.pending.len() >= FLUSH_BATCH
            || done.saturating_duration_since(worker.pending[0].at) >= FLUSH_EVERY
        {
            self.recorder.record_all(&mut worker.pending);
        }
        connect_failed
    }

    fn request(&self, worker: &mut Worker) -> Request<Full<Bytes>> {
        let bodies = &self.target.bodies;
        let body = &bodies[worker.next_body % bodies.len()];
        worker.next_body = worker.next_body.wrapping_add(1);
        let mut request = Request::post(self.target.uri.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, self.target.content_type.clone());
        match &self.target.credentials {
            Credentials::None => {}
            Credentials::Token(token) => {
                if let Ok(value) = HeaderValue::from_str(token) {
                    request = request.header(AUTHORIZATION, value);
                }
            }
            Credentials::Hmac(token) => {
                let date = worker.date();
                let content_type = self.target.content_type.to_str().unwrap_or_default();
                let signature = auth::sign(
                    token,
                    "POST",
                    &body.md5_text,
                    content_type,
                    date,
                    &self.target.path,
                );
                request = request
                    .header("content-md5", body.md5.clone())
                    .header(DATE, date)
                    .header(AUTHORIZATION, format!("EAS {signature}"));
            }
        }
        request
            .body(Full::new(body.bytes.clone()))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    async fn send(
        &self,
        connection: &mut Option<Connection>,
        request: Request<Full<Bytes>>,
    ) -> Result<(), Failure> {
        let sender = match connection {
            Some(sender) if !sender.is_closed() => sender,
            _ => connection.insert(self.connect().await.ok_or(Failure::Connect)?),
        };
        sender.ready().await.map_err(|_| Failure::Io)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Failure::Io)?;
        let status = response.status();
        let mut body = response.into_body();
        // Read the answer through (the connection is reused) without keeping it.
        while let Some(frame) = body.frame().await {
            frame.map_err(|_| Failure::Io)?;
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Status(status))
        }
    }

    async fn connect(&self) -> Option<Connection> {
        let stream = TcpStream::connect(self.addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(connection);
        Some(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn schedule_should_space_requests_evenly_without_drift() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, 3000.0);
        // Woken late, at 1 s: every request due by then, each with its own intended time.
        let due: Vec<Instant> =
            std::iter::from_fn(|| schedule.pop_due(start + Duration::from_secs(1))).collect();
        assert_eq!(due.len(), 3001, "0 s through 1 s inclusive");
        assert_eq!(due[0], start);
        assert_eq!(due[3000], start + Duration::from_secs(1));
        let gap = due[1] - due[0];
        assert!(gap >= Duration::from_nanos(333_333) && gap <= Duration::from_nanos(333_334));
        // Far into the run there is no accumulated rounding.
        let mut long = Schedule::new(start, 3000.0);
        long.taken = 3000 * 3600;
        assert_eq!(long.next_due(), Some(start + Duration::from_secs(3600)));
        assert_eq!(Schedule::new(start, 0.0).next_due(), None);
        assert_eq!(Schedule::new(start, f64::NAN).pop_due(start), None);
    }

    /// A server that accepts and never answers: each request times out, after its own
    /// timeout, not earlier (the timer is re-armed lazily) nor much later.
    #[tokio::test]
    async fn requests_should_time_out_after_the_request_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let target = Target::new(&format!("http://{addr}/x"), &Bodies::one("x")).unwrap();
        let start = Instant::now();
        let recorder = Recorder::new(start);
        let options = LoadOptions::default().with_request_timeout(Duration::from_millis(300));
        let load = Load::closed(target, recorder.clone(), options, 2)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1050)).await;
        load.finish(Duration::from_millis(500)).await;
        let total = recorder.total(Instant::now());
        held.abort();
        // 2 connections x 3 timeouts of 300 ms in 1.05 s (a fourth may end in the drain).
        let timeouts = total.errors_by_status.get("timeout").copied().unwrap_or(0);
        assert!((6..=8).contains(&timeouts), "{total:?}");
        assert_eq!(total.ok, 0);
    }

    #[test]
    fn targets_should_want_plain_http_with_a_host() {
        let bodies = Bodies::one("x");
        let target = Target::new("http://127.0.0.1:8080/api/predict/echo?a=1", &bodies).unwrap();
        assert_eq!(target.authority, "127.0.0.1:8080");
        assert_eq!(target.path, "/api/predict/echo");
        assert_eq!(target.uri, "/api/predict/echo?a=1");
        let default_port = Target::new("http://localhost/x", &bodies).unwrap();
        assert_eq!(default_port.authority, "localhost:80");
        for bad in ["https://h/x", "h:1/x", "not a url", "http:///x"] {
            assert!(Target::new(bad, &bodies).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn signed_requests_should_verify_against_the_server_check() {
        let bodies = Bodies::one("hello");
        let target = Target::new("http://127.0.0.1:1/api/predict/echo", &bodies)
            .unwrap()
            .with_credentials(Credentials::Hmac("secret".into()));
        let shared = Shared {
            target,
            addr: "127.0.0.1:1".parse().unwrap(),
            host: HeaderValue::from_static("127.0.0.1:1"),
            recorder: Recorder::new(Instant::now()),
            options: LoadOptions::default(),
            next_body: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            retire: AtomicUsize::new(0),
        };
        let request = shared.request(&mut Worker::new(&shared));
        let checker = auth::Authenticator::new("secret");
        assert!(
            checker
                .check(
                    request.method(),
                    request.uri().path(),
                    request.headers(),
                    b"hello"
                )
                .is_ok()
        );
        let wrong = auth::Authenticator::new("other");
        assert!(
            wrong
                .check(
                    request.method(),
                    request.uri().path(),
                    request.headers(),
                    b"hello"
                )
                .is_err()
        );
    }
}
