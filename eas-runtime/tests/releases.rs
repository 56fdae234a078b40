//! Releases under continuous load on a real server: an update that needs new instances makes
//! version 2 and rolls it out replica by replica, with zero failed answers, every answer
//! naming its version (`x-eas-version`) and the body agreeing; the same with
//! `max_unavailable: 0, max_surge: 1` on one instance and with the child-process provider; a
//! rollback to version 1 through the control API; a version 2 that fails to start leaves
//! version 1 serving and says why; a request in flight on a replica that is being retired
//! gets its answer.
//!
//! The processor `tag` answers its spec's `model_config` (so `"model_config": "v2"` is a new
//! version that answers `v2`), after `delay` ms when the body is `slow`; `broken` as the
//! model_config fails its initialization. The tests take turns ([`TURN`]).

#[path = "support/json_merge.rs"]
mod json_merge;

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

const TOKEN: &str = "release-token";
const ADMIN: &str = "release-admin";

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a child-process worker runs (the child-process case).
#[test]
fn worker_entry() {
    eas_runtime::worker::run_if_worker(&registry());
}

/// Answers its tag; `slow` waits 600 ms first.
struct Tag {
    tag: String,
}

impl Processor for Tag {
    fn initialize(&mut self, _ctx: &InitContext) -> eas_core::Result<()> {
        if self.tag == "broken" {
            return Err(eas_core::Error::Unsupported(
                "this version cannot load".into(),
            ));
        }
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        batch
            .iter()
            .map(|request| {
                if request.body.as_ref() == b"slow" {
                    std::thread::sleep(Duration::from_millis(600));
                }
                Ok(Response::ok(self.tag.clone()))
            })
            .collect()
    }
}

fn registry() -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::with_builtins();
    registry.register("tag", |spec: &ServiceSpec| {
        Ok(Box::new(Tag {
            tag: spec.model_config.clone().unwrap_or_default(),
        }))
    });
    registry
}

fn spec(extra: Value) -> Value {
    let mut doc = json!({
        "metadata": {"name": "svc", "instance": 2, "eas.termination_grace_period": 5},
        "processor": "tag",
        "model_path": ".",
        "model_config": "v1",
        "token": TOKEN,
    });
    json_merge::merge(&mut doc, extra);
    doc
}

async fn start(doc: Value, child: bool) -> RunningPlatform {
    let mut builder = Platform::builder()
        .registry(registry())
        .bind("127.0.0.1:0".parse().expect("addr"))
        .control_period(Duration::from_millis(100))
        .admin_token(ADMIN)
        .service(ServiceSpec::from_json_value(doc).expect("valid spec"));
    if child {
        let exe = std::env::current_exe().expect("test binary");
        let provider = ChildProcess::with_command(
            exe,
            [
                "worker_entry",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ],
        )
        .expect("provider");
        builder = builder.provider(Arc::new(provider));
    }
    let server = builder.start().await.expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(30)).await, "ready");
    server
}

fn url(server: &RunningPlatform, path: &str) -> String {
    format!("http://{}{path}", server.local_addr())
}

/// One answer seen by the load: when, status, `x-eas-version`, body.
#[derive(Debug, Clone)]
struct Seen {
    status: u16,
    version: Option<String>,
    body: String,
}

/// Clients sending requests back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Seen>>>,
}

impl Load {
    fn start(server: &RunningPlatform, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::new();
        let tasks = (0..clients)
            .map(|_| {
                let (client, stop) = (client.clone(), Arc::clone(&stop));
                let url = url(server, "/api/predict/svc");
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let response = client
                            .post(&url)
                            .header("Authorization", TOKEN)
                            .body("hi")
                            .send()
                            .await
                            .expect("sent");
                        let status = response.status().as_u16();
                        let version = response
                            .headers()
                            .get("x-eas-version")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let body = response.text().await.expect("body");
                        seen.push(Seen {
                            status,
                            version,
                            body,
                        });
                    }
                    seen
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("load task"));
        }
        all
    }
}

/// Waits until every replica of `svc` runs `version`, its count is `count` and no rollout is
/// under way; panics after 30 s with what describe says.
async fn settled(server: &RunningPlatform, version: u32, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = server.control().describe("svc").expect("described");
        let versions: Vec<u32> = server.services()["svc"]
            .instances()
            .iter()
            .map(|r| r.version())
            .collect();
        let ready = server.services()["svc"]
            .instances()
            .iter()
            .all(eas_runtime::replica::Replica::is_ready);
        if view.rollout.is_none()
            && ready
            && versions.len() == count
            && versions.iter().all(|v| *v == version)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled on version {version} x{count}: replicas {versions:?}, {:?} {:?}",
            view.rollout,
            view.rollout_failure
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every answer a 200 whose body and version header agree; the count of each version.
fn check(seen: &[Seen]) -> BTreeMap<String, usize> {
    let mut statuses = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for s in seen {
        *statuses.entry(s.status).or_insert(0usize) += 1;
        if s.status == 200 {
            let header = s.version.clone().unwrap_or_default();
            assert_eq!(
                format!("v{header}"),
                s.body,
                "version header and body: {s:?}"
            );
            *versions.entry(s.body.clone()).or_insert(0usize) += 1;
        }
    }
    let failed: Vec<&Seen> = seen.iter().filter(|s| s.status != 200).take(5).collect();
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "zero failed answers: {statuses:?}, e.g. {failed:?}"
    );
    versions
}

async fn rolling_update(extra: Value, count: usize, child: bool) {
    let server = start(spec(extra), child).await;
    let load = Load::start(&server, 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let done = server
        .control()
        .update("svc", |spec| {
            spec["model_config"] = json!("v2");
            Ok(())
        })
        .await
        .expect("updated");
    assert!(done.contains("version 2"), "{done}");
    settled(&server, 2, count).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.stop().await;
    let versions = check(&seen);
    println!(
        "{count} instance(s), child {child}: {} answers, {versions:?}",
        seen.len()
    );
    assert!(
        versions.contains_key("v1") && versions.contains_key("v2"),
        "{versions:?}"
    );
    // After the rollout, only v2 answers.
    let tail: Vec<&String> = seen.iter().rev().take(20).map(|s| &s.body).collect();
    assert!(tail.iter().all(|b| *b == "v2"), "{tail:?}");
    let view = server.control().describe("svc").expect("described");
    assert_eq!((view.service_version, view.latest_version), (2, 2));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_with_the_default_strategy_should_fail_no_request() {
    let _turn = TURN.lock().await;
    rolling_update(json!({}), 2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_of_one_instance_with_no_unavailability_should_fail_no_request() {
    let _turn = TURN.lock().await;
    rolling_update(
        json!({"metadata": {"instance": 1,
                            "rolling_strategy": {"max_surge": 1, "max_unavailable": 0}}}),
        1,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_of_child_processes_should_fail_no_request() {
    let _turn = TURN.lock().await;
    rolling_update(json!({}), 2, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_through_the_api_should_fail_no_request() {
    let _turn = TURN.lock().await;
    let server = start(spec(json!({})), false).await;
    server
        .control()
        .update("svc", |spec| {
            spec["model_config"] = json!("v2");
            Ok(())
        })
        .await
        .expect("updated");
    settled(&server, 2, 2).await;
    let client = reqwest::Client::new();
    let versions: Value = client
        .get(url(&server, "/api/v2/services/local/svc/versions"))
        .header("Authorization", ADMIN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let listed: Vec<(u64, bool)> = versions
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| {
            (
                v["Version"].as_u64().unwrap_or(0),
                v["Current"] == json!(true),
            )
        })
        .collect();
    assert_eq!(listed, vec![(1, false), (2, true)], "{versions}");
    assert_eq!(versions[1]["ServiceConfig"]["model_config"], "v2");
    assert!(
        versions[1]["ServiceConfig"].get("token").is_none(),
        "no token"
    );

    let load = Load::start(&server, 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = client
        .put(url(&server, "/api/v2/services/local/svc/version"))
        .header("Authorization", ADMIN)
        .body(r#"{"Version": 1}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status().as_u16(),
        200,
        "{:?}",
        response.text().await
    );
    settled(&server, 1, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.stop().await;
    let versions = check(&seen);
    assert!(
        versions.contains_key("v1") && versions.contains_key("v2"),
        "{versions:?}"
    );
    let view = server.control().describe("svc").expect("described");
    assert_eq!((view.service_version, view.latest_version), (1, 2));
    // The version that runs already, or one never made: refused.
    for (body, status) in [(r#"{"Version": 1}"#, 400), (r#"{"Version": 7}"#, 404)] {
        let response = client
            .put(url(&server, "/api/v2/services/local/svc/version"))
            .header("Authorization", ADMIN)
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status().as_u16(), status, "{body}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_to_start_should_leave_the_old_one_serving() {
    let _turn = TURN.lock().await;
    let server = start(spec(json!({})), false).await;
    let load = Load::start(&server, 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .control()
        .update("svc", |spec| {
            spec["model_config"] = json!("broken");
            Ok(())
        })
        .await
        .expect("updated");
    let deadline = Instant::now() + Duration::from_secs(20);
    let view = loop {
        let view = server.control().describe("svc").expect("described");
        if view.rollout_failure.is_some() {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "no failure reported: {:?}",
            view.rollout
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let why = view.rollout_failure.clone().unwrap_or_default();
    assert!(
        why.contains("version 2 failed") && why.contains("cannot load"),
        "{why}"
    );
    settled(&server, 1, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.stop().await;
    let versions = check(&seen);
    assert_eq!(
        versions.keys().collect::<Vec<_>>(),
        vec!["v1"],
        "{versions:?}"
    );
    let view = server.control().describe("svc").expect("described");
    assert_eq!((view.service_version, view.latest_version), (1, 2));
    assert_eq!(
        view.spec["model_config"], "v1",
        "the desired state is version 1 again"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_on_a_retired_replica_should_get_its_answer() {
    let _turn = TURN.lock().await;
    let server = start(spec(json!({"metadata": {"instance": 1}})), false).await;
    let client = reqwest::Client::new();
    let slow = tokio::spawn({
        let client = client.clone();
        let url = url(&server, "/api/predict/svc");
        async move {
            let response = client
                .post(url)
                .header("Authorization", TOKEN)
                .body("slow")
                .send()
                .await
                .expect("sent");
            (
                response.status().as_u16(),
                response.text().await.expect("body"),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server
        .control()
        .update("svc", |spec| {
            spec["model_config"] = json!("v2");
            Ok(())
        })
        .await
        .expect("updated");
    settled(&server, 2, 1).await;
    let (status, body) = slow.await.expect("slow request");
    assert_eq!((status, body.as_str()), (200, "v1"));
    server.shutdown().await;
}
