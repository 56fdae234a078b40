//! Live scaling over real sockets on 127.0.0.1: a platform with a short control period, real
//! HTTP load from the test, and the replica count sampled while it runs. QPS above the target
//! scales a sync service up to `max` and, once the load stops and the scale-down window has
//! passed, back down to `min`; `examples/services/echo.json` reaches its 4 instances on the
//! default provider; `instance: 0` serves nothing and `min: 3` starts 3; a cron schedule moves
//! the count when a `ManualClock` passes it; an async service scales on its queue backlog and
//! loses no item while it scales; an application's own `Autoscaler` sees reported and
//! processor metrics; `/metrics` and describe show the counts and the decisions.
//!
//! The tests take turns ([`LOAD`]): on a 2-core machine a load generator next to another
//! test's server would starve it, and these tests wait on the control loop's rounds.

#[path = "support/json_merge.rs"]
mod json_merge;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use eas_core::Autoscaler;
use eas_core::autoscaler::{Observation, Recommendation};
use eas_core::clock::ManualClock;
use eas_core::processor::{
    InitContext, MetricReporter, ProcessError, Processor, Request, Response,
};
use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, PlatformBuilder, RunningPlatform};
use eas_runtime::registry::ProcessorRegistry;
use eas_runtime::service::Service;
use json_merge::merge;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const TOKEN: &str = "autoscale-token";
const ADMIN: &str = "autoscale-admin";
/// The control period of every platform here: short, so that scaling shows within seconds.
const PERIOD: Duration = Duration::from_millis(100);
/// 2024-01-02 00:00 UTC, a Tuesday (08:00 in Shanghai).
const TUESDAY: u64 = 1_704_153_600;

/// Held by each test for its whole run: the tests take turns.
static LOAD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Echoes after sleeping 50 ms per request (a slow model).
struct Slow;

impl Processor for Slow {
    fn initialize(&mut self, _ctx: &InitContext) -> eas_core::Result<()> {
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        batch
            .iter()
            .map(|r| {
                std::thread::sleep(Duration::from_millis(50));
                Ok(Response::ok(r.body.clone()))
            })
            .collect()
    }
}

/// Echoes and reports how many requests its instance answered as the custom metric
/// `requests_seen`.
#[derive(Default)]
struct Metered {
    metrics: Option<MetricReporter>,
    seen: AtomicU64,
}

impl Processor for Metered {
    fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
        self.metrics = Some(ctx.metrics().clone());
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        let seen = self.seen.fetch_add(batch.len() as u64, Ordering::SeqCst) + batch.len() as u64;
        if let Some(metrics) = &self.metrics {
            #[allow(clippy::cast_precision_loss)]
            metrics.report("requests_seen", seen as f64);
        }
        batch
            .iter()
            .map(|r| Ok(Response::ok(r.body.clone())))
            .collect()
    }
}

fn registry() -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::with_builtins();
    registry.register("slow", |_| Ok(Box::new(Slow)));
    registry.register("metered", |_| Ok(Box::new(Metered::default())));
    registry
}

/// A service `name` running `processor`, with `extra` merged into its spec.
fn spec(name: &str, processor: &str, extra: Value) -> ServiceSpec {
    let mut doc = json!({
        "metadata": {"name": name, "instance": 1},
        "processor": processor,
        "model_path": ".",
        "token": TOKEN,
    });
    merge(&mut doc, extra);
    ServiceSpec::from_json_value(doc).expect("test spec is valid")
}

/// A builder on a free port with the test processors, the short control period and the
/// control API on.
fn builder() -> PlatformBuilder {
    Platform::builder()
        .registry(registry())
        .bind("127.0.0.1:0".parse().expect("addr"))
        .control_period(PERIOD)
        .admin_token(ADMIN)
}

async fn start(builder: PlatformBuilder) -> RunningPlatform {
    let server = builder.start().await.expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(20)).await, "ready");
    server
}

fn service(server: &RunningPlatform, name: &str) -> Arc<Service> {
    Arc::clone(&server.services()[name])
}

fn count(server: &RunningPlatform, name: &str) -> usize {
    service(server, name).instances().len()
}

/// The replica count and the newest decision, for probes whose failure should say why.
fn count_and_why(server: &RunningPlatform, name: &str) -> (usize, String) {
    let view = server.control().describe(name).expect("described");
    let why = view
        .decisions
        .iter()
        .rev()
        .take(4)
        .map(|d| {
            format!(
                "{} -> {}: {} (x{})",
                d.current, d.desired, d.reason, d.repeats
            )
        })
        .collect::<Vec<_>>()
        .join(" | ");
    (view.replicas.len(), why)
}

fn url(server: &RunningPlatform, path: &str) -> String {
    format!("http://{}{path}", server.local_addr())
}

async fn post(server: &RunningPlatform, path: &str, token: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url(server, path))
        .header("Authorization", token)
        .body(body.to_owned())
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn metrics(server: &RunningPlatform) -> String {
    reqwest::get(url(server, "/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the sample `name{labels} value` whose line contains every `parts`, if any.
fn sample(text: &str, name: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

/// Probes until `done` holds, for up to `within`; panics with `what` and the last value seen.
/// Returns the value and how long it took.
async fn eventually<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        let value = probe().await;
        if done(&value) {
            return (value, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "{what}: still {value:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `probe` gives `want` at every look for `during`.
async fn stays<T: std::fmt::Debug + PartialEq>(
    what: &str,
    during: Duration,
    probe: impl Fn() -> T,
    want: &T,
) {
    let start = Instant::now();
    while start.elapsed() < during {
        let value = probe();
        assert_eq!(&value, want, "{what}: changed after {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// HTTP load: `connections` keep-alive connections, each posting to one service in a loop
/// until stopped. A bare hyper client: on 2 shared cores the client's own cost decides how
/// much load the server sees.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<BTreeMap<u16, u64>>>,
    started: Instant,
}

/// What a load answered: count by status (0: the connection failed).
#[derive(Debug)]
struct LoadReport {
    statuses: BTreeMap<u16, u64>,
    qps: f64,
}

impl Load {
    fn start(server: &RunningPlatform, name: &str, token: &str, connections: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = server.local_addr();
        let tasks = (0..connections)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let (path, token) = (format!("/api/predict/{name}"), token.to_owned());
                tokio::spawn(async move {
                    let mut statuses = BTreeMap::new();
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(error) =
                            connection(addr, &path, &token, &stop, &mut statuses).await
                        {
                            println!("load connection: {error}");
                            *statuses.entry(0).or_insert(0) += 1;
                        }
                    }
                    statuses
                })
            })
            .collect();
        Self {
            stop,
            tasks,
            started: Instant::now(),
        }
    }

    async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut statuses = BTreeMap::new();
        for task in self.tasks {
            for (status, n) in task.await.expect("load task") {
                *statuses.entry(status).or_insert(0) += n;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let qps = statuses.values().sum::<u64>() as f64 / self.started.elapsed().as_secs_f64();
        LoadReport { statuses, qps }
    }
}

/// One keep-alive connection posting until `stop`, counting statuses.
async fn connection(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
    stop: &AtomicBool,
    statuses: &mut BTreeMap<u16, u64>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::{BodyExt as _, Full};
    use hyper::header::{AUTHORIZATION, HOST};

    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    while !stop.load(Ordering::Relaxed) {
        let request = hyper::Request::post(path)
            .header(HOST, addr.to_string())
            .header(AUTHORIZATION, token)
            .body(Full::new(bytes::Bytes::from_static(b"load")))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        *statuses.entry(status).or_insert(0) += 1;
    }
    drop(sender);
    let _ = driver.await;
    Ok(())
}

/// What a [`Sampler`] saw: the replica count (routing set, any state) and the desired count.
#[derive(Debug, Default)]
struct Seen {
    count: (usize, usize),
    desired: (u32, u32),
    /// Every change: (ms since the start, count, desired).
    changes: Vec<(u128, usize, u32)>,
}

/// Samples a service's replica count and desired count every 5 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Seen>,
}

impl Sampler {
    fn start(server: &RunningPlatform, name: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let service = service(server, name);
        let plane = Arc::clone(server.control());
        let name = name.to_owned();
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut seen = Seen {
                count: (usize::MAX, 0),
                desired: (u32::MAX, 0),
                changes: Vec::new(),
            };
            while !flag.load(Ordering::Relaxed) {
                let count = service.instances().len();
                let desired = plane.describe(&name).expect("described").desired;
                seen.count = (seen.count.0.min(count), seen.count.1.max(count));
                seen.desired = (seen.desired.0.min(desired), seen.desired.1.max(desired));
                if seen
                    .changes
                    .last()
                    .is_none_or(|&(_, c, d)| (c, d) != (count, desired))
                {
                    seen.changes
                        .push((start.elapsed().as_millis(), count, desired));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        });
        Self { stop, task }
    }

    async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler")
    }
}

fn at(seconds_after_tuesday: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(TUESDAY + seconds_after_tuesday)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qps_above_target_should_scale_up_to_max_then_down_to_min_after_the_window() {
    let _turn = LOAD.lock().await;
    // instance 1 is below min: the service starts at min 2.
    let server = start(builder().service(spec(
        "qps",
        "echo",
        json!({"autoscaler": {
            "min": 2, "max": 4, "strategies": {"qps": 20},
            "behavior": {"scale_up": {"stabilization_window_seconds": 0},
                         "scale_down": {"stabilization_window_seconds": 3}}}}),
    )))
    .await;
    assert_eq!(count(&server, "qps"), 2, "starts at min");
    let sampler = Sampler::start(&server, "qps");
    stays(
        "no load: min",
        Duration::from_millis(500),
        || count(&server, "qps"),
        &2,
    )
    .await;

    // Any load here is far above 20 QPS per instance: it asks for more than max.
    let load = Load::start(&server, "qps", TOKEN, 4);
    let (_, up) = eventually(
        "scaled up to max 4 under load",
        Duration::from_secs(10),
        || async { count_and_why(&server, "qps") },
        |(n, _)| *n == 4,
    )
    .await;
    stays(
        "at max while the load goes on",
        Duration::from_secs(1),
        || count(&server, "qps"),
        &4,
    )
    .await;
    let report = load.stop().await;

    // The 3 s scale-down window keeps the count while the busy recommendations are in it.
    let (_, down) = eventually(
        "scaled back down to min 2",
        Duration::from_secs(20),
        || async { count_and_why(&server, "qps") },
        |(n, _)| *n == 2,
    )
    .await;
    stays(
        "no load: stays at min",
        Duration::from_millis(500),
        || count(&server, "qps"),
        &2,
    )
    .await;
    let seen = sampler.stop().await;
    println!("up after {up:?}, down {down:?} after the load stopped; load {report:?}; {seen:?}");
    assert!(
        down >= Duration::from_secs(2),
        "scaled down {down:?} after the load stopped, inside the 3 s window: {seen:?}"
    );
    assert_eq!(seen.count, (2, 4), "replicas within [min, max]: {seen:?}");
    assert_eq!(seen.desired, (2, 4), "desired within [min, max]: {seen:?}");
    assert_eq!(
        report.statuses.keys().collect::<Vec<_>>(),
        vec![&200],
        "every request answered while scaling: {report:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_example_should_reach_its_max_of_four_instances_under_load() {
    let _turn = LOAD.lock().await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text =
        std::fs::read_to_string(root.join("examples/services/echo.json")).expect("echo.json");
    let spec = ServiceSpec::from_json_str(&text).expect("echo.json is valid");
    // The spec's schedules: from 08:00 Shanghai on weekdays min 2, from 20:00 exactly 1. At
    // 10:00 Shanghai on a Tuesday the bounds are [2, 4], whatever the real time of day.
    let server = start(
        Platform::builder()
            .registry(registry())
            .bind("127.0.0.1:0".parse().expect("addr"))
            .base_dir(&root)
            .control_period(PERIOD)
            .clock(Arc::new(ManualClock::new(at(2 * 3_600))))
            .service(spec),
    )
    .await;
    assert_eq!(count(&server, "echo"), 2, "metadata.instance 2");
    let token = service(&server, "echo").token().to_owned();
    let sampler = Sampler::start(&server, "echo");
    // 500 QPS per instance: 4 instances want more than 1,500 QPS in all.
    let load = Load::start(&server, "echo", &token, 8);
    let (_, reached) = eventually(
        "echo.json reaches its max of 4 instances",
        Duration::from_secs(20),
        || async { count_and_why(&server, "echo") },
        |(n, _)| *n == 4,
    )
    .await;
    let report = load.stop().await;
    let seen = sampler.stop().await;
    let view = server.control().describe("echo").expect("described");
    println!(
        "4 instances after {reached:?} at {:.0} QPS; load {report:?}; {seen:?}; refused {:?}",
        report.qps, view.refused
    );
    assert!(
        seen.count.1 <= 4 && seen.desired.1 <= 4,
        "never above max: {seen:?}"
    );
    assert_eq!(view.refused, None, "the node holds 4 instances of 1 cpu");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_instances_should_serve_503_and_min_three_should_start_three() {
    let _turn = LOAD.lock().await;
    let server = start(
        builder()
            .service(spec("none", "echo", json!({"metadata": {"instance": 0}})))
            .service(spec(
                "three",
                "echo",
                json!({"autoscaler": {"min": 3, "max": 5, "strategies": {"qps": 1000}}}),
            )),
    )
    .await;
    assert_eq!(count(&server, "three"), 3, "min 3 starts 3");
    assert_eq!(count(&server, "none"), 0, "instance 0 starts none");
    let (status, text) = post(&server, "/api/predict/none", TOKEN, "hello").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("no ready instance"), "{text}");
    assert_eq!(
        post(&server, "/api/predict/three", TOKEN, "hi").await,
        (200, "hi".into())
    );
    stays(
        "over several control periods",
        Duration::from_millis(10 * PERIOD.as_millis() as u64),
        || (count(&server, "none"), count(&server, "three")),
        &(0, 3),
    )
    .await;
    let plane = server.control();
    assert_eq!(plane.describe("none").expect("none").desired, 0);
    assert_eq!(plane.describe("three").expect("three").desired, 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_should_change_the_count_when_the_manual_clock_passes_it() {
    let _turn = LOAD.lock().await;
    // A daily entry alone is always in force (yesterday's occurrence counts), so an evening
    // entry gives the morning one a "before": from 18:00 the block's own bounds again.
    let clock = Arc::new(ManualClock::new(at(8 * 3_600 + 30 * 60)));
    let server = start(builder().clock(clock.clone()).service(spec(
        "cron",
        "echo",
        json!({"autoscaler": {
            "min": 1, "max": 5, "strategies": {"qps": 1000},
            "schedules": [{"schedule": "0 9 * * *", "replicas": 3},
                          {"schedule": "0 18 * * *", "min": 1}]}}),
    )))
    .await;
    stays(
        "08:30: the base count",
        Duration::from_millis(5 * PERIOD.as_millis() as u64),
        || count(&server, "cron"),
        &1,
    )
    .await;

    clock.set(at(9 * 3_600 + 30));
    let (_, took) = eventually(
        "09:00:30: 3 replicas",
        Duration::from_secs(5),
        || async { count(&server, "cron") },
        |&n| n == 3,
    )
    .await;
    let view = server.control().describe("cron").expect("described");
    let last = view.decisions.last().expect("a decision");
    assert_eq!((last.current, last.desired), (1, 3), "{last:?}");
    assert!(last.reason.contains("schedule #0"), "{last:?}");
    // Some control periods at 09:00:30 first: the clock stands still, so a recommendation
    // made at 18:00:30 stays in the 300 s scale-down window for good, and the first round
    // after a scale-up sees the new replicas without a QPS sample yet (the HPA then counts
    // them at the target and asks for 2).
    stays(
        "09:00:30: 3 replicas",
        Duration::from_millis(5 * PERIOD.as_millis() as u64),
        || count(&server, "cron"),
        &3,
    )
    .await;

    clock.set(at(18 * 3_600 + 30));
    eventually(
        "18:00:30: back to 1",
        Duration::from_secs(5),
        || async { count_and_why(&server, "cron") },
        |(n, _)| *n == 1,
    )
    .await;
    println!("3 replicas {took:?} after the clock passed 09:00");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_backlog_should_scale_an_async_service_and_lose_no_item() {
    let _turn = LOAD.lock().await;
    // One consumer window of 1 per instance, and no scale-down window: instances retire
    // while the others still work, with items in flight.
    let server = start(builder().service(spec(
        "jobs",
        "slow",
        json!({
            "metadata": {"type": "Async", "eas.termination_grace_period": 5,
                         "rpc": {"worker_threads": 1, "max_queue_size": 1000}},
            "autoscaler": {"min": 1, "max": 4, "strategies": {"queue": 10},
                           "behavior": {"scale_down": {"stabilization_window_seconds": 0}}}}),
    )))
    .await;
    assert_eq!(count(&server, "jobs"), 1);
    let sampler = Sampler::start(&server, "jobs");
    let client = reqwest::Client::new();
    // Every result, read (and deleted) from the sink while the service scales up and down.
    let (first, second) = (200, 100);
    let reader = tokio::spawn(read_sink(
        client.clone(),
        url(&server, "/api/predict/jobs/sink?_length_=100&_timeout_=1s"),
        first + second,
    ));

    // One instance answers 20 a second: 200 items would take it 10 s.
    let bodies: Vec<String> = (0..first + second).map(|n| format!("item-{n}")).collect();
    put_all(&client, &server, &bodies[..first]).await;
    let (_, up) = eventually(
        "scaled up to max 4 on the backlog",
        Duration::from_secs(10),
        || async { count_and_why(&server, "jobs") },
        |(n, _)| *n == 4,
    )
    .await;
    // As the backlog shrinks, instances retire; then a second wave scales it up again.
    let (_, draining) = eventually(
        "scaling down as the backlog shrinks",
        Duration::from_secs(20),
        || async { count_and_why(&server, "jobs") },
        |(n, _)| *n < 4,
    )
    .await;
    put_all(&client, &server, &bodies[first..]).await;
    let (results, failures) = reader.await.expect("sink reader");
    let (_, down) = eventually(
        "back to min 1 once the backlog is gone",
        Duration::from_secs(20),
        || async { count_and_why(&server, "jobs") },
        |(n, _)| *n == 1,
    )
    .await;
    let seen = sampler.stop().await;
    let input = attributes(&client, &server, "jobs").await;
    println!("max after {up:?}, scaling down after {draining:?}, min after {down:?}; {seen:?}");
    assert!(failures.is_empty(), "failed items: {failures:?}");
    let mut got = results.clone();
    got.sort();
    got.dedup();
    let missing: Vec<&String> = bodies.iter().filter(|b| !got.contains(b)).collect();
    assert_eq!(
        (results.len(), got.len()),
        (bodies.len(), bodies.len()),
        "one result per item; missing {missing:?}; the input queue: {input}; {seen:?}"
    );
    let ups = seen.changes.windows(2).filter(|w| w[1].1 > w[0].1).count();
    assert!(ups >= 2, "scaled up for each wave: {seen:?}");
    assert_eq!(seen.count, (1, 4), "within [min, max]: {seen:?}");
    assert_eq!(
        input["stream.length"], "0",
        "every input committed: {input}"
    );
    server.shutdown().await;
}

/// Puts every body into the `jobs` queue, one after the other.
async fn put_all(client: &reqwest::Client, server: &RunningPlatform, bodies: &[String]) {
    for body in bodies {
        let response = client
            .post(url(server, "/api/predict/jobs"))
            .header("Authorization", TOKEN)
            .body(body.clone())
            .send()
            .await
            .expect("put sent");
        assert_eq!(response.status().as_u16(), 200, "put {body}");
    }
}

/// Reads a sink at `get` until `total` items came or 20 s passed: the data of the results,
/// and the failures as `data: message`.
async fn read_sink(
    client: reqwest::Client,
    get: String,
    total: usize,
) -> (Vec<String>, Vec<String>) {
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while results.len() + failures.len() < total && Instant::now() < deadline {
        for (data, message) in get_items(&client, &get).await {
            if message.is_empty() {
                results.push(data);
            } else {
                failures.push(format!("{data}: {message}"));
            }
        }
    }
    (results, failures)
}

/// The items of a raw queue get at `get`: data and message (an error, empty on success).
async fn get_items(client: &reqwest::Client, get: &str) -> Vec<(String, String)> {
    use eas_runtime::proto::Message as _;
    use eas_runtime::proto::streaming::DataFrameListProto;

    let response = client
        .get(get)
        .header("Authorization", TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200, "GET {get}");
    let list = DataFrameListProto::decode(response.bytes().await.expect("body")).expect("protobuf");
    list.index
        .into_iter()
        .map(|f| (String::from_utf8_lossy(&f.data).into_owned(), f.message))
        .collect()
}

/// A queue's attributes (`stream.length`, `stream.pending`, `consumers`, ...).
async fn attributes(client: &reqwest::Client, server: &RunningPlatform, queue: &str) -> Value {
    let response = client
        .get(url(server, &format!("/api/predict/{queue}?_attrs_=true")))
        .header("Authorization", TOKEN)
        .send()
        .await
        .expect("sent");
    response.json().await.expect("json")
}

/// Two replicas while the service metric `load` is at least 1, else one; keeps every
/// observation it is given.
#[derive(Debug)]
struct LoadAutoscaler {
    seen: Arc<Mutex<Vec<Observation>>>,
}

impl Autoscaler for LoadAutoscaler {
    fn recommend(&mut self, observation: &Observation) -> Recommendation {
        self.seen
            .lock()
            .expect("observations")
            .push(observation.clone());
        let load = observation.service_metric("load").unwrap_or(0.0);
        let replicas = if load >= 1.0 { 2 } else { 1 };
        Recommendation::new(replicas, format!("load {load}: {replicas} replicas"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_autoscaler_should_scale_on_reported_metrics_and_see_processor_metrics() {
    let _turn = LOAD.lock().await;
    let seen: Arc<Mutex<Vec<Observation>>> = Arc::default();
    let observations = Arc::clone(&seen);
    let server = start(
        builder()
            .autoscalers(Arc::new(move |spec: &ServiceSpec| {
                (spec.metadata.name == "custom").then(|| {
                    Box::new(LoadAutoscaler {
                        seen: Arc::clone(&observations),
                    }) as Box<dyn Autoscaler>
                })
            }))
            .service(spec("custom", "metered", json!({}))),
    )
    .await;
    let plane = Arc::clone(server.control());
    let observed =
        |test: &dyn Fn(&Observation) -> bool| seen.lock().expect("observations").iter().any(test);

    // A metric the processor reports reaches the autoscaler in its instance's sample.
    assert_eq!(
        post(&server, "/api/predict/custom", TOKEN, "x").await,
        (200, "x".into())
    );
    eventually(
        "the processor's requests_seen in an observation",
        Duration::from_secs(5),
        || async {
            observed(&|o: &Observation| {
                o.instances
                    .iter()
                    .any(|i| i.metric("requests_seen") == Some(1.0))
            })
        },
        |&found| found,
    )
    .await;

    plane
        .report_metric("custom", "load", 1.0)
        .expect("reported");
    eventually(
        "load 1 reported in code: 2 replicas",
        Duration::from_secs(5),
        || async { count(&server, "custom") },
        |&n| n == 2,
    )
    .await;
    plane
        .report_metric("custom", "load", 0.0)
        .expect("reported");
    eventually(
        "load 0: 1 replica",
        Duration::from_secs(5),
        || async { count(&server, "custom") },
        |&n| n == 1,
    )
    .await;

    // The same through the control API, behind the admin token.
    let path = "/api/v2/services/local/custom/metrics";
    let (status, text) = post(&server, path, TOKEN, r#"{"load": 1}"#).await;
    assert_eq!(
        status, 401,
        "a service token is not the admin token: {text}"
    );
    let (status, text) = post(&server, path, ADMIN, r#"{"load": 1}"#).await;
    assert_eq!(status, 200, "{text}");
    eventually(
        "load 1 reported over HTTP: 2 replicas",
        Duration::from_secs(5),
        || async { count(&server, "custom") },
        |&n| n == 2,
    )
    .await;
    assert!(observed(
        &|o: &Observation| o.service_metric("load") == Some(1.0)
    ));
    let view = plane.describe("custom").expect("described");
    let last = view.decisions.last().expect("a decision");
    assert_eq!(
        (last.desired, last.reason.as_str()),
        (2, "load 1: 2 replicas")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_describe_should_show_the_counts_and_decisions_after_scaling() {
    let _turn = LOAD.lock().await;
    let server = start(builder().service(spec(
        "gauged",
        "echo",
        json!({"autoscaler": {
            "min": 1, "max": 4, "strategies": {"custom": {"load": 1}},
            "behavior": {"scale_down": {"stabilization_window_seconds": 0}}}}),
    )))
    .await;
    let counts = |text: &str| {
        ["eas_replicas_desired", "eas_replicas_ready", "eas_replicas"]
            .map(|name| sample(text, name, &[r#"service="gauged""#]))
    };
    eventually(
        "1 replica in /metrics",
        Duration::from_secs(5),
        || async { counts(&metrics(&server).await) },
        |c| *c == [Some(1.0); 3],
    )
    .await;

    // The custom strategy reads the reported value over the target: 3 / 1 = 3 replicas.
    let plane = server.control();
    plane
        .report_metric("gauged", "load", 3.0)
        .expect("reported");
    eventually(
        "3 replicas, all ready, in /metrics",
        Duration::from_secs(10),
        || async { counts(&metrics(&server).await) },
        |c| *c == [Some(3.0); 3],
    )
    .await;
    assert_eq!(count(&server, "gauged"), 3);
    plane
        .report_metric("gauged", "load", 1.0)
        .expect("reported");
    let (text, _) = eventually(
        "back to 1 in /metrics",
        Duration::from_secs(10),
        || metrics(&server),
        |text| counts(text) == [Some(1.0); 3],
    )
    .await;
    let scaled = |direction: &str| {
        sample(
            &text,
            "eas_scaling_decisions_total",
            &[
                r#"service="gauged""#,
                &format!(r#"direction="{direction}""#),
            ],
        )
    };
    assert_eq!(
        (scaled("up"), scaled("down")),
        (Some(1.0), Some(1.0)),
        "{text}"
    );

    let view = plane.describe("gauged").expect("described");
    assert_eq!(view.desired, 1);
    let changes: Vec<_> = view.decisions.iter().filter(|d| d.is_change()).collect();
    let moves: Vec<(u32, u32)> = changes.iter().map(|d| (d.current, d.desired)).collect();
    assert_eq!(moves, vec![(1, 3), (3, 1)], "{changes:#?}");
    for decision in changes {
        assert!(decision.reason.contains("load"), "{decision:?}");
    }
    server.shutdown().await;
}
