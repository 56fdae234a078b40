//! Stress testing against a real server (`eas_runtime::stress`), one test at a time (they
//! measure time, so they do not share the machine with each other).
//!
//! - Auto mode against echo behind a gateway rate limit of 300 QPS finds 300 within ±15%.
//! - Scan against a processor that takes 20 ms a request (one worker, capacity under 50 QPS)
//!   stops at the level whose p99 passes maxRT (300 ms), below maxQPS.
//! - A processor that stalls once for a second: the open loop's p99 shows the stall (>= 0.9 s,
//!   latency counted from the intended send time), the closed loop's mean hides it.
//! - Plain and HMAC tokens: all answered; a wrong token: all 401, counted by status.
//! - The report has its fields; the HTML page fetches nothing and escapes a hostile name.
//! - The benchmark-task API: admin token, own services only, bounded, stoppable, reports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eas_core::processor::{InitContext, ProcessError, Processor, Request, Response};
use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, RunningPlatform};
use eas_runtime::registry::ProcessorRegistry;
use eas_runtime::stress::{
    self, AutoPlan, Bodies, Credentials, FixedPlan, Goal, Pace, Plan, RtStat, RunOptions, ScanPlan,
    Target, TaskConfig,
};
use serde_json::{Value, json};

const TOKEN: &str = "stress-token";
const ADMIN: &str = "stress-admin";
const RATE_LIMIT: f64 = 300.0;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static STALL: AtomicBool = AtomicBool::new(false);

/// Answers the body after sleeping `model_config` milliseconds; the `stall` one sleeps a
/// second once when [`STALL`] is set.
struct Sleepy {
    millis: u64,
    stall: bool,
}

impl Processor for Sleepy {
    fn initialize(&mut self, _ctx: &InitContext) -> eas_core::Result<()> {
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        if self.stall && STALL.swap(false, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(1));
        }
        if self.millis > 0 {
            std::thread::sleep(Duration::from_millis(self.millis));
        }
        batch
            .iter()
            .map(|r| Ok(Response::ok(r.body.clone())))
            .collect()
    }
}

fn spec(doc: Value) -> ServiceSpec {
    ServiceSpec::from_json_value(doc).expect("a valid spec")
}

async fn start() -> RunningPlatform {
    let mut registry = ProcessorRegistry::with_builtins();
    registry.register("sleepy", |spec: &ServiceSpec| {
        let config = spec.model_config.clone().unwrap_or_default();
        Ok(Box::new(Sleepy {
            millis: config.trim_start_matches("stall").parse().unwrap_or(0),
            stall: config.starts_with("stall"),
        }))
    });
    let one_worker = json!({"worker_threads": 1, "max_queue_size": 100_000});
    let server = Platform::builder()
        .registry(registry)
        .bind("127.0.0.1:0".parse().expect("addr"))
        .admin_token(ADMIN)
        .benchmarks(TaskConfig::default().with_limits(8, 2))
        .service(spec(json!({
            "metadata": {"name": "limited", "instance": 1, "rpc": {"worker_threads": 2}},
            "processor": "echo", "model_path": ".", "token": TOKEN,
            "networking": {"gateway_policy": {"rate_limit": {"enable": true, "limit": 300}}},
        })))
        .service(spec(json!({
            "metadata": {"name": "slow", "instance": 1, "rpc": one_worker},
            "processor": "sleepy", "model_path": ".", "model_config": "20", "token": TOKEN,
        })))
        .service(spec(json!({
            "metadata": {"name": "stall", "instance": 1, "rpc": one_worker},
            "processor": "sleepy", "model_path": ".", "model_config": "stall0", "token": TOKEN,
        })))
        .service(spec(json!({
            "metadata": {"name": "echo", "instance": 1, "rpc": {"worker_threads": 2}},
            "processor": "echo", "model_path": ".", "token": TOKEN,
        })))
        .start()
        .await
        .expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(20)).await, "ready");
    server
}

fn target(server: &RunningPlatform, service: &str) -> Target {
    let url = format!("http://{}/api/predict/{service}", server.local_addr());
    Target::new(&url, &Bodies::one("hello stress"))
        .expect("a target")
        .with_credentials(Credentials::Token(TOKEN.into()))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_should_find_a_rate_limit_within_fifteen_percent() {
    let _turn = TURN.lock().await;
    let server = start().await;
    let plan = AutoPlan::default()
        .with_qps_range(75.0, 3000.0)
        .with_goal(Goal::new(0.01))
        .with_timing(secs(0.5), secs(1.5), secs(3.0))
        .with_max_duration(secs(50.0));
    let report = stress::run(
        target(&server, "limited"),
        Plan::Auto(plan),
        RunOptions::named("auto"),
    )
    .await
    .expect("runs");
    let capacity = report.capacity_qps.unwrap_or_else(|| {
        panic!(
            "no capacity: {}; steps {:#?}",
            report.stopped_because, report.steps
        )
    });
    let steps: Vec<String> = report
        .steps
        .iter()
        .map(|s| format!("{:.0}{}", s.target, if s.passed { "+" } else { "-" }))
        .collect();
    println!(
        "auto: capacity {capacity:.1} QPS against a limit of {RATE_LIMIT} ({}), probes {}",
        report.stopped_because,
        steps.join(" ")
    );
    assert!(
        (capacity - RATE_LIMIT).abs() <= 0.15 * RATE_LIMIT,
        "capacity {capacity:.1} vs limit {RATE_LIMIT}; probes {}",
        steps.join(" ")
    );
    assert!(
        report.summary.errors_by_status.contains_key("429"),
        "probes above the limit were refused with 429"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_should_stop_at_max_rt() {
    let _turn = TURN.lock().await;
    let server = start().await;
    let goal = Goal::new(0.0).with_max_rt(Some(Duration::from_millis(300)), RtStat::P99);
    let plan = ScanPlan::new(10.0, 200.0, 10.0, secs(1.5)).with_goal(goal);
    let levels = plan.levels().len();
    let report = stress::run(
        target(&server, "slow"),
        Plan::Scan(plan),
        RunOptions::named("scan"),
    )
    .await
    .expect("runs");
    let last = report.steps.last().expect("steps");
    println!(
        "scan: stopped {}; capacity {:?}",
        report.stopped_because, report.capacity_qps
    );
    assert!(!last.passed);
    assert!(
        report.stopped_because.contains("maxRT"),
        "{}",
        report.stopped_because
    );
    assert!(
        last.stats.latency_ms.p99 > 50.0,
        "{:?}",
        last.stats.latency_ms
    );
    assert!(report.steps.len() < levels, "stopped before maxQPS");
    let capacity = report.capacity_qps.expect("lower levels passed");
    assert!(
        (20.0..=50.0).contains(&capacity),
        "a 20 ms processor on one worker passes up to 50 QPS: {capacity}"
    );
    for step in &report.steps[..report.steps.len() - 1] {
        assert!(
            step.passed && step.stats.latency_ms.p99 <= 300.0,
            "{step:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_p99_should_show_a_stall_that_a_closed_loop_mean_hides() {
    let _turn = TURN.lock().await;
    let server = start().await;
    let arm = || {
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            STALL.store(true, Ordering::SeqCst);
        })
    };
    arm();
    let open = stress::run(
        target(&server, "stall"),
        Plan::Fixed(FixedPlan::new(Pace::Qps(200.0), secs(3.0))),
        RunOptions::named("open"),
    )
    .await
    .expect("runs");
    arm();
    let closed = stress::run(
        target(&server, "stall"),
        Plan::Fixed(FixedPlan::new(Pace::Concurrency(4), secs(3.0))),
        RunOptions::named("closed"),
    )
    .await
    .expect("runs");
    let (o, c) = (&open.summary, &closed.summary);
    println!(
        "stall: open loop {} answers, p99 {:.1} ms, max {:.1}; closed loop {} answers, mean \
         {:.2} ms, p99 {:.2}, max {:.1}",
        o.ok,
        o.latency_ms.p99,
        o.latency_ms.max,
        c.ok,
        c.latency_ms.avg,
        c.latency_ms.p99,
        c.latency_ms.max
    );
    assert_eq!(o.errors + c.errors, 0, "{o:?} {c:?}");
    assert!(o.latency_ms.p99 >= 900.0, "open p99 {:?}", o.latency_ms);
    assert!(
        c.latency_ms.max >= 900.0,
        "the closed loop met the stall too"
    );
    assert!(
        c.latency_ms.avg < 100.0,
        "the closed loop's mean hides it: {:?}",
        c.latency_ms
    );
    let stalled_second = open
        .seconds
        .iter()
        .map(|s| s.stats.latency_ms.p99)
        .fold(0.0, f64::max);
    assert!(stalled_second >= 900.0, "a second's p99 shows it");
    assert_eq!(open.load, "open");
    assert_eq!(closed.load, "closed");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_plain_and_signed_should_be_accepted_and_wrong_ones_counted() {
    let _turn = TURN.lock().await;
    let server = start().await;
    let url = format!("http://{}/api/predict/echo", server.local_addr());
    let bodies = Bodies::parse(
        b"one\ntwo\n{\"three\": 3}\n",
        stress::DataFormat::Lines,
        "t",
    )
    .expect("bodies");
    let plan = Plan::Fixed(FixedPlan::new(Pace::Qps(100.0), secs(1.0)));
    for (credentials, ok) in [
        (Credentials::Token(TOKEN.into()), true),
        (Credentials::Hmac(TOKEN.into()), true),
        (Credentials::Hmac("wrong".into()), false),
        (Credentials::Token("wrong".into()), false),
    ] {
        let target = Target::new(&url, &bodies)
            .expect("target")
            .with_credentials(credentials.clone())
            .with_content_type("text/plain")
            .expect("content type");
        let report = stress::run(target, plan, RunOptions::named("auth"))
            .await
            .expect("runs");
        let s = &report.summary;
        assert!(s.ok + s.errors >= 90, "{credentials:?}: {s:?}");
        if ok {
            assert_eq!(s.errors, 0, "{credentials:?}: {s:?}");
        } else {
            assert_eq!((s.ok, s.errors_by_status.get("401")), (0, Some(&s.errors)));
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_should_have_their_fields_and_a_self_contained_page() {
    let _turn = TURN.lock().await;
    let server = start().await;
    let hostile = "<script>alert('x')</script>&\"";
    let report = stress::run(
        target(&server, "echo"),
        Plan::Fixed(FixedPlan::new(Pace::Qps(50.0), secs(2.0))),
        RunOptions::named(hostile),
    )
    .await
    .expect("runs");
    let json = report.to_json();
    for field in [
        "name",
        "target",
        "mode",
        "capacity_qps",
        "summary",
        "seconds",
        "steps",
    ] {
        assert!(json.get(field).is_some(), "{field} in {json:#}");
    }
    let row = &json["seconds"][0];
    for field in ["second", "target", "qps", "errors_by_status", "sent", "ok"] {
        assert!(row.get(field).is_some(), "{field} in {row:#}");
    }
    for p in ["avg", "p50", "p90", "p99", "max"] {
        assert!(row["latency_ms"][p].is_number(), "{p} in {row:#}");
    }
    assert!(json["capacity_qps"].is_null(), "fixed mode has no capacity");
    assert!(report.seconds.len() >= 2);
    let html = report.to_html();
    for external in ["src=", "href=", "<link", "<script", "@import", "url("] {
        assert!(!html.contains(external), "`{external}` in the page");
    }
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
    assert!(html.matches("<svg").count() >= 3, "plots");
    let dir = std::env::var_os("EAS_TEST_ARTIFACTS")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let _ = std::fs::write(dir.join("stress-report.html"), &html);
    server.shutdown().await;
}

/// Calls the API; the status and the JSON answer.
async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_tasks_should_run_bounded_behind_the_admin_token() {
    use base64::Engine as _;
    let _turn = TURN.lock().await;
    let server = start().await;
    let base = format!("http://{}/api/v2/benchmark-tasks", server.local_addr());
    let client = reqwest::Client::new();
    let data = base64::engine::general_purpose::STANDARD.encode("a\nb\n");
    let task = |name: &str, service: Value, duration: u32| {
        json!({"name": name, "base": {"mode": "fixed", "qps": 50, "duration": duration},
               "service": service, "data": {"content": data, "dataType": "lines"}})
    };
    let post = reqwest::Method::POST;
    let own = json!({"serviceName": "echo"});

    let (status, _) = call(
        &client,
        post.clone(),
        &base,
        None,
        Some(task("t", own.clone(), 1)),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(&client, post.clone(), &base, Some("wrong"), None).await;
    assert_eq!(status, 401);
    let elsewhere = json!({"url": "http://192.0.2.1:8080/api/predict/x"});
    let (status, body) = call(
        &client,
        post.clone(),
        &base,
        Some(ADMIN),
        Some(task("t", elsewhere, 1)),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &client,
        post.clone(),
        &base,
        Some(ADMIN),
        Some(task("t", json!({"serviceName": "nope"}), 1)),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(
        &client,
        post.clone(),
        &base,
        Some(ADMIN),
        Some(task("<b>", own.clone(), 1)),
    )
    .await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidParameter")),
        "{body}"
    );
    let (status, body) = call(
        &client,
        post.clone(),
        &base,
        Some(ADMIN),
        Some(task("t", own.clone(), 100_000)),
    )
    .await;
    assert!(
        status == 400 && body["Message"].as_str().unwrap_or("").contains("bound"),
        "{body}"
    );
    let mut bad = task("t", own.clone(), 1);
    bad["data"]["content"] = json!("!!!");
    let (status, body) = call(&client, post.clone(), &base, Some(ADMIN), Some(bad)).await;
    assert!(
        status == 400 && body["Message"].as_str().unwrap_or("").contains("base64"),
        "{body}"
    );
    let (status, body) = call(
        &client,
        post.clone(),
        &base,
        Some(ADMIN),
        Some(json!({"service": own, "data": {}, "extra": 1})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // A short fixed task runs to its end and reports.
    let (status, body) = call(
        &client,
        post.clone(),
        &base,
        Some(ADMIN),
        Some(task("short", own.clone(), 2)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["TaskName"], "short");
    let describe = format!("{base}/local/short");
    let mut view = Value::Null;
    for _ in 0..100 {
        view = call(&client, reqwest::Method::GET, &describe, Some(ADMIN), None)
            .await
            .1;
        if view["Status"] == "Completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["Status"], "Completed", "{view}");
    let (status, report) = call(
        &client,
        reqwest::Method::GET,
        &format!("{describe}/report"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        report["summary"]["ok"].as_u64().unwrap_or(0) >= 80,
        "{report}"
    );
    assert_eq!(report["summary"]["errors"], 0, "{report}");
    assert!(
        report["seconds"].as_array().is_some_and(|s| s.len() >= 2),
        "{report}"
    );
    let page = client
        .get(format!("{describe}/report?Format=html"))
        .header("authorization", ADMIN)
        .send()
        .await
        .expect("page");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );

    // Two long tasks run; a third is refused; stopping ends them with their reports.
    for name in ["long1", "long2"] {
        let (status, body) = call(
            &client,
            post.clone(),
            &base,
            Some(ADMIN),
            Some(task(name, own.clone(), 600)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = call(
        &client,
        post.clone(),
        &base,
        Some(ADMIN),
        Some(task("long3", own.clone(), 600)),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["Message"].as_str().unwrap_or("").contains("running"),
        "{body}"
    );
    let (status, body) = call(
        &client,
        post.clone(),
        &base,
        Some(ADMIN),
        Some(task("short", own.clone(), 1)),
    )
    .await;
    assert_eq!(status, 409, "a taken name: {body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for name in ["long1", "long2"] {
        let (status, body) = call(
            &client,
            reqwest::Method::PUT,
            &format!("{base}/local/{name}/stop"),
            Some(ADMIN),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for name in ["long1", "long2"] {
        let mut view = Value::Null;
        for _ in 0..100 {
            view = call(
                &client,
                reqwest::Method::GET,
                &format!("{base}/local/{name}"),
                Some(ADMIN),
                None,
            )
            .await
            .1;
            if view["Status"] == "Stopped" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(view["Status"], "Stopped", "{view}");
    }
    let (_, list) = call(&client, reqwest::Method::GET, &base, Some(ADMIN), None).await;
    assert_eq!(list["TotalCount"], 3, "{list}");
    let (status, _) = call(
        &client,
        reqwest::Method::DELETE,
        &format!("{base}/local/long1"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &client,
        reqwest::Method::GET,
        &format!("{base}/local/long1"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404);
    server.shutdown().await;
}
