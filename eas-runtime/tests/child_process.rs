//! The child-process provider with real worker processes: this test binary is its own worker
//! (`worker_entry` below, the only test a worker runs), so the processors here run in
//! processes the tests can kill.
//!
//! - `kill -9` of one worker during load: the service keeps answering from the other
//!   instance, the requests that were on the dead worker get a 502 naming the signal, and the
//!   instance comes back with a new worker.
//! - An async service loses no accepted item when a worker is killed mid-run, and a request
//!   that kills its worker every time is answered in the sink with an error after a bounded
//!   number of tries, while the requests batched with it get their answers.
//! - Load above the autoscaler's target scales worker processes up (within 20 s) and back down.
//! - `metadata.cpu` bites (a CFS quota: 300 ms of CPU at 0.25 cores takes over 0.9 s), or the
//!   start-up description says it is not enforced;
//! - `metadata.memory` bites (cgroup OOM kill or the worker's rlimit, whichever the machine
//!   has), and the 502 says so; `rpc.enable_sigterm` sends SIGTERM to a stopping worker and
//!   its absence does not; a worker's CPU time counts as its instance's.
//!
//! The tests take turns ([`TURN`]): they start processes and load a 2-core machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eas_core::processor::{InitContext, ProcessError, Processor, Request, Response};
use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, RunningPlatform};
use eas_runtime::provider::ChildProcess;
use eas_runtime::registry::ProcessorRegistry;
use serde_json::{Value, json};

#[path = "support/json_merge.rs"]
mod json_merge;

const TOKEN: &str = "child-token";

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a worker process runs: only this test, which never returns there.
#[test]
fn worker_entry() {
    eas_runtime::worker::run_if_worker(&registry());
}

/// Answers `PID BODY` after 5 ms; a body `abort` aborts the process (a segfault's kin),
/// `grow:MB` touches MB megabytes, `burn:MS` spins for MS milliseconds of CPU.
struct Pid {
    /// Where to leave a file when SIGTERM arrives (the `term` processor).
    on_sigterm: Option<std::path::PathBuf>,
}

impl Processor for Pid {
    fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
        if let Some(dir) = &self.on_sigterm {
            let dir = dir.join(ctx.instance_index.to_string());
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&flag))
                .map_err(|e| eas_core::Error::Unsupported(e.to_string()))?;
            std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = std::fs::write(dir, "sigterm");
            });
        }
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        let pid = std::process::id();
        batch
            .iter()
            .map(|request| {
                let body = String::from_utf8_lossy(&request.body).into_owned();
                if body == "abort" {
                    std::process::abort();
                }
                if let Some(mb) = body.strip_prefix("grow:") {
                    let mb: usize = mb.parse().unwrap_or(0);
                    let mut held = Vec::new();
                    for _ in 0..mb {
                        held.push(vec![1u8; 1 << 20]);
                    }
                    return Ok(Response::ok(format!("{pid} held {}", held.len())));
                }
                if let Some(ms) = body.strip_prefix("burn:") {
                    // MS milliseconds of this thread's CPU, however busy the machine is.
                    let want = Duration::from_millis(ms.parse().unwrap_or(0));
                    let start = cpu_time::ThreadTime::now();
                    let mut x = 0u64;
                    while start.elapsed() < want {
                        for _ in 0..10_000 {
                            x = x.wrapping_mul(31).wrapping_add(1);
                        }
                    }
                    return Ok(Response::ok(format!("{pid} {x}")));
                }
                std::thread::sleep(Duration::from_millis(5));
                Ok(Response::ok(format!("{pid} {body}")))
            })
            .collect()
    }
}

fn registry() -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::with_builtins();
    registry.register("pid", |_| Ok(Box::new(Pid { on_sigterm: None })));
    registry.register("term", |spec: &ServiceSpec| {
        Ok(Box::new(Pid {
            on_sigterm: spec.model_path.as_deref().map(std::path::PathBuf::from),
        }))
    });
    registry
}

/// Workers run this test binary's `worker_entry` alone.
fn provider() -> ChildProcess {
    let exe = std::env::current_exe().expect("test binary");
    ChildProcess::with_command(
        exe,
        [
            "worker_entry",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ],
    )
    .expect("provider")
}

fn spec(name: &str, processor: &str, extra: Value) -> ServiceSpec {
    let mut doc = json!({
        "metadata": {"name": name, "instance": 1},
        "processor": processor,
        "model_path": ".",
        "token": TOKEN,
    });
    json_merge::merge(&mut doc, extra);
    ServiceSpec::from_json_value(doc).expect("test spec is valid")
}

async fn start(specs: Vec<ServiceSpec>) -> RunningPlatform {
    let mut builder = Platform::builder()
        .registry(registry())
        .provider(Arc::new(provider()))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .control_period(Duration::from_millis(100))
        .admin_token("child-admin");
    for spec in specs {
        builder = builder.service(spec);
    }
    let server = builder.start().await.expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(30)).await, "ready");
    server
}

fn url(server: &RunningPlatform, path: &str) -> String {
    format!("http://{}{path}", server.local_addr())
}

async fn post(
    client: &reqwest::Client,
    server: &RunningPlatform,
    path: &str,
    body: &str,
) -> (u16, String) {
    let response = client
        .post(url(server, path))
        .header("Authorization", TOKEN)
        .body(body.to_owned())
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn kill9(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill -9");
}

/// The pid in a `PID ...` answer.
fn pid_of(answer: &str) -> u32 {
    answer
        .split(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_worker_during_load_should_cost_only_its_requests_and_replace_it() {
    let _turn = TURN.lock().await;
    let server = start(vec![spec(
        "svc",
        "pid",
        json!({"metadata": {"instance": 2}}),
    )])
    .await;
    let client = reqwest::Client::new();
    // Both workers, by their answers.
    let mut pids = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.len() < 2 {
        assert!(Instant::now() < deadline, "two workers: {pids:?}");
        let (status, body) = post(&client, &server, "/api/predict/svc", "hi").await;
        assert_eq!(status, 200, "{body}");
        pids.insert(pid_of(&body));
    }
    assert!(
        !pids.contains(&std::process::id()),
        "the processor runs elsewhere"
    );
    let victim = *pids.iter().next().expect("a pid");

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|n| {
            let client = client.clone();
            let url = url(&server, "/api/predict/svc");
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut seen: Vec<(Instant, u16, String)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let response = client
                        .post(&url)
                        .header("Authorization", TOKEN)
                        .body(format!("load-{n}"))
                        .send()
                        .await
                        .expect("sent");
                    let status = response.status().as_u16();
                    seen.push((Instant::now(), status, response.text().await.expect("body")));
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill9(victim);
    // Answers the victim sent before it died may still be on their way.
    let killed_at = Instant::now() + Duration::from_millis(100);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for task in load {
        seen.extend(task.await.expect("load task"));
    }
    let mut statuses = BTreeMap::new();
    for (_, status, _) in &seen {
        *statuses.entry(*status).or_insert(0u32) += 1;
    }
    let failed: Vec<&String> = seen.iter().filter(|s| s.1 != 200).map(|s| &s.2).collect();
    println!("statuses {statuses:?}; failures {failed:?}");
    // Only the requests on the dead worker failed (at most one per client), each naming why.
    assert!(failed.len() <= 4, "{statuses:?}");
    for body in &failed {
        assert!(
            body.contains(&format!("pid {victim}"))
                && body.contains("killed by signal 9 (SIGKILL)"),
            "{body}"
        );
    }
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );
    // The other instance kept answering all along, and the dead one came back as a new
    // process.
    let after: std::collections::BTreeSet<u32> = seen
        .iter()
        .filter(|(at, status, _)| *at > killed_at && *status == 200)
        .map(|(_, _, body)| pid_of(body))
        .collect();
    assert!(!after.contains(&victim), "{after:?}");
    let replaced = after.iter().any(|p| !pids.contains(p));
    assert!(
        replaced,
        "a new worker answered after the kill: {after:?} vs {pids:?}"
    );
    let restarts: u64 = server.services()["svc"]
        .instances()
        .iter()
        .map(|r| r.usage().restarts)
        .sum();
    assert_eq!(restarts, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_service_should_lose_no_item_when_a_worker_dies_and_bound_a_poison_request() {
    let _turn = TURN.lock().await;
    let server = start(vec![spec(
        "jobs",
        "pid",
        json!({"metadata": {"instance": 2, "type": "Async",
                            "rpc": {"batching": true, "max_batch_size": 4, "max_batch_timeout": 20,
                                    "worker_threads": 1, "max_queue_size": 1000}}}),
    )])
    .await;
    let client = reqwest::Client::new();
    let total = 120;
    let mut bodies: Vec<String> = (0..total).map(|n| format!("item-{n}")).collect();
    // One request kills its worker every time it runs.
    bodies.insert(60, "abort".to_owned());
    for body in &bodies[..30] {
        let (status, answer) = post(&client, &server, "/api/predict/jobs", body).await;
        assert_eq!(status, 200, "{answer}");
    }
    // A worker, killed while items are in flight.
    let first = loop {
        let items = sink_items(&client, &server, 1).await;
        if let Some((data, message)) = items.first() {
            assert!(message.is_empty(), "{message}");
            break data.clone();
        }
    };
    let victim = pid_of(&first);
    kill9(victim);
    for body in &bodies[30..] {
        let (status, answer) = post(&client, &server, "/api/predict/jobs", body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let mut results = vec![first];
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while results.len() + failures.len() < bodies.len() && Instant::now() < deadline {
        for (data, message) in sink_items(&client, &server, 100).await {
            if message.is_empty() {
                results.push(data);
            } else {
                failures.push(message);
            }
        }
    }
    let mut answered: Vec<String> = results
        .iter()
        .map(|r| r.split_once(' ').map_or(r.clone(), |(_, b)| b.to_owned()))
        .collect();
    answered.sort();
    answered.dedup();
    let missing: Vec<&String> = bodies
        .iter()
        .filter(|b| *b != "abort" && !answered.contains(b))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}; failures {failures:?}"
    );
    assert_eq!(
        failures.len(),
        1,
        "only the poison request failed: {failures:?}"
    );
    assert!(
        failures[0].contains("SIGABRT") && failures[0].contains("tried 3 times"),
        "{failures:?}"
    );
    server.shutdown().await;
}

/// Up to `length` results from the `jobs` sink (removed as read): data and message.
async fn sink_items(
    client: &reqwest::Client,
    server: &RunningPlatform,
    length: usize,
) -> Vec<(String, String)> {
    use eas_runtime::proto::Message as _;
    use eas_runtime::proto::streaming::DataFrameListProto;

    let get = url(
        server,
        &format!("/api/predict/jobs/sink?_length_={length}&_timeout_=1s"),
    );
    let response = client
        .get(&get)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_should_bite_and_the_answer_should_say_so() {
    let _turn = TURN.lock().await;
    let provider = provider();
    let how = provider.limits().describe();
    let server = start(vec![spec(
        "small",
        "pid",
        // 256 MB: the worker is this test binary, which with `--all-features` maps libtorch
        // (its start alone takes tens of MB).
        json!({"metadata": {"memory": 256}}),
    )])
    .await;
    let client = reqwest::Client::new();
    let (status, body) = post(&client, &server, "/api/predict/small", "grow:16").await;
    assert_eq!(status, 200, "within the limit: {body}");
    let (status, body) = post(&client, &server, "/api/predict/small", "grow:1024").await;
    println!("{how}\n{status} {body}");
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("memory limit is 256 MB"),
        "the answer names the limit ({how}): {body}"
    );
    // The instance comes back.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = post(&client, &server, "/api/predict/small", "again").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_should_get_sigterm_only_when_the_spec_asks() {
    let _turn = TURN.lock().await;
    let marks = tempfile::tempdir().expect("tempdir");
    let with = marks.path().join("with");
    let without = marks.path().join("without");
    std::fs::create_dir_all(&with).expect("dir");
    std::fs::create_dir_all(&without).expect("dir");
    let server = start(vec![
        spec(
            "with",
            "term",
            json!({"model_path": with, "metadata": {"rpc": {"enable_sigterm": true},
                   "eas.termination_grace_period": 2}}),
        ),
        spec(
            "without",
            "term",
            json!({"model_path": without, "metadata": {"eas.termination_grace_period": 2}}),
        ),
    ])
    .await;
    for name in ["with", "without"] {
        server.control().delete(name).await.expect("deleted");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !with.join("0").exists() {
        assert!(Instant::now() < deadline, "no SIGTERM reached the worker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !without.join("0").exists(),
        "SIGTERM without enable_sigterm"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_cpu_time_should_count_as_its_instances() {
    let _turn = TURN.lock().await;
    let server = start(vec![spec("burn", "pid", json!({}))]).await;
    let instance = server.services()["burn"].instances()[0].clone();
    let before = instance.usage().cpu_time;
    let client = reqwest::Client::new();
    let (status, body) = post(&client, &server, "/api/predict/burn", "burn:300").await;
    assert_eq!(status, 200, "{body}");
    let spent = instance.usage().cpu_time - before;
    assert!(spent >= Duration::from_millis(200), "{spent:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_above_the_target_should_scale_worker_processes_up_then_down() {
    let _turn = TURN.lock().await;
    let server = start(vec![spec(
        "busy",
        "pid",
        json!({"autoscaler": {"min": 1, "max": 3, "strategies": {"qps": 20},
                              "behavior": {"scale_up": {"stabilization_window_seconds": 0},
                                           "scale_down": {"stabilization_window_seconds": 1}}}}),
    )])
    .await;
    println!(
        "at start: {} instance(s); {:?}",
        server.services()["busy"].instances().len(),
        server
            .control()
            .describe("busy")
            .expect("described")
            .decisions
            .iter()
            .map(|d| d.reason.clone())
            .collect::<Vec<_>>()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let load: Vec<_> = (0..6)
        .map(|_| {
            let (client, stop) = (client.clone(), Arc::clone(&stop));
            let url = url(&server, "/api/predict/busy");
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let response = client
                        .post(&url)
                        .header("Authorization", TOKEN)
                        .body("x")
                        .send()
                        .await
                        .expect("sent");
                    assert_eq!(response.status().as_u16(), 200);
                }
            })
        })
        .collect();
    let workers = |server: &RunningPlatform| -> (usize, usize) {
        let instances = server.services()["busy"].instances();
        let ready = instances.iter().filter(|r| r.is_ready()).count();
        (instances.len(), ready)
    };
    while workers(&server) != (3, 3) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not scaled to 3 worker processes within 20 s: {:?}",
            workers(&server)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "up to 3 worker processes in {:?}: {:?}",
        started.elapsed(),
        workers(&server)
    );
    // Three distinct worker processes answer.
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (status, body) = post(&client, &server, "/api/predict/busy", "who").await;
        assert_eq!(status, 200);
        pids.insert(pid_of(&body));
    }
    assert_eq!(pids.len(), 3, "{pids:?}");
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let idle = Instant::now();
    while workers(&server).0 != 1 {
        assert!(
            idle.elapsed() < Duration::from_secs(20),
            "not back to 1: {:?}",
            workers(&server)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_should_bite_or_be_reported() {
    let _turn = TURN.lock().await;
    let provider = provider();
    if !provider.limits().limits_cpu() {
        // No usable cgroup: the start-up description says CPU is not enforced, and why.
        let how = provider.limits().describe();
        assert!(how.contains("metadata.cpu: not enforced"), "{how}");
        return;
    }
    let server = start(vec![spec(
        "slow",
        "pid",
        json!({"metadata": {"cpu": 0.25}}),
    )])
    .await;
    let client = reqwest::Client::new();
    // 300 ms of CPU at a quarter of a core takes at least about 1.2 s; unthrottled, 0.3 s.
    let started = Instant::now();
    let (status, body) = post(&client, &server, "/api/predict/slow", "burn:300").await;
    let took = started.elapsed();
    println!("300 ms of CPU under cpu 0.25 took {took:?}");
    assert_eq!(status, 200, "{body}");
    assert!(
        took >= Duration::from_millis(900),
        "not throttled: {took:?}"
    );
    server.shutdown().await;
}
