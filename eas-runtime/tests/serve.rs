//! The server over real sockets on 127.0.0.1: auth, every limit's status code, batching,
//! crashes, metrics, sinks, discovery and shutdown.

#[path = "support/json_merge.rs"]
mod json_merge;
#[path = "support/require.rs"]
mod require;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eas_core::processor::{InitContext, ProcessError, Processor, Request, Response};
use eas_core::spec::ServiceSpec;
use eas_runtime::auth::{content_md5, sign};
use eas_runtime::platform::{Platform, RunningPlatform};
use eas_runtime::registry::ProcessorRegistry;
use json_merge::merge;
use serde_json::{Value, json};

const TOKEN: &str = "test-token";

/// Echoes the body after sleeping the milliseconds the body names (`sleep:200`); panics on
/// `panic`; fails on `fail`. Counts its calls and remembers batch sizes.
#[derive(Default)]
struct TestProcessor {
    calls: Arc<AtomicUsize>,
}

impl Processor for TestProcessor {
    fn initialize(&mut self, _ctx: &InitContext) -> eas_core::Result<()> {
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut sleep = 0;
        for request in batch {
            let body = String::from_utf8_lossy(&request.body);
            if body == "panic" {
                panic!("asked to panic");
            }
            if let Some(ms) = body.strip_prefix("sleep:") {
                sleep = sleep.max(ms.parse::<u64>().unwrap_or(0));
            }
        }
        std::thread::sleep(Duration::from_millis(sleep));
        batch
            .iter()
            .map(|r| {
                if r.body.as_ref() == b"fail" {
                    Err(ProcessError::bad_request("asked to fail"))
                } else {
                    let mut body = r.body.to_vec();
                    if !r.path.is_empty() {
                        body.extend_from_slice(format!(" path={}", r.path).as_bytes());
                    }
                    Ok(Response::ok(body))
                }
            })
            .collect()
    }
}

fn registry(calls: &Arc<AtomicUsize>) -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::with_builtins();
    let calls = Arc::clone(calls);
    registry.register("test", move |_| {
        Ok(Box::new(TestProcessor {
            calls: Arc::clone(&calls),
        }))
    });
    registry
}

fn spec(extra: Value) -> ServiceSpec {
    let mut doc = json!({
        "metadata": {"name": "svc", "instance": 1},
        "processor": "test",
        "model_path": ".",
        "token": TOKEN,
    });
    merge(&mut doc, extra);
    ServiceSpec::from_json_value(doc).expect("test spec is valid")
}

async fn start(specs: Vec<ServiceSpec>) -> (RunningPlatform, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut builder = Platform::builder()
        .registry(registry(&calls))
        .bind("127.0.0.1:0".parse().expect("addr"));
    for spec in specs {
        builder = builder.service(spec);
    }
    let server = builder.start().await.expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(10)).await, "ready");
    (server, calls)
}

fn url(server: &RunningPlatform, path: &str) -> String {
    format!("http://{}{path}", server.local_addr())
}

async fn post(server: &RunningPlatform, service: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url(server, &format!("/api/predict/{service}")))
        .header("Authorization", TOKEN)
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

/// The value of a sample line `name{labels} value` whose line contains every `parts`.
fn sample(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn plain_token_and_hmac_signature_should_both_be_served() {
    let (server, _) = start(vec![spec(json!({}))]).await;
    assert_eq!(post(&server, "svc", "hello").await, (200, "hello".into()));

    let body = b"signed body";
    let md5 = content_md5(body);
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let sig = sign(TOKEN, "POST", &md5, "text/plain", &date, "/api/predict/svc");
    let response = reqwest::Client::new()
        .post(url(&server, "/api/predict/svc"))
        .header("Authorization", format!("EAS {sig}"))
        .header("Content-MD5", &md5)
        .header("Content-Type", "text/plain")
        .header("Date", &date)
        .body(body.to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.bytes().await.expect("body").as_ref(), body);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_token_tampered_body_and_stale_date_should_get_401_saying_why() {
    let (server, _) = start(vec![spec(json!({}))]).await;
    let client = reqwest::Client::new();
    let send = |authz: String, md5: String, date: String, body: &'static str| {
        client
            .post(url(&server, "/api/predict/svc"))
            .header("Authorization", authz)
            .header("Content-MD5", md5)
            .header("Date", date)
            .header("Content-Type", "text/plain")
            .body(body)
            .send()
    };
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    let stale =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(3 * 86400));
    let md5 = content_md5(b"body");
    let good = |date: &str| {
        format!(
            "EAS {}",
            sign(TOKEN, "POST", &md5, "text/plain", date, "/api/predict/svc")
        )
    };
    let wrong = format!(
        "EAS {}",
        sign(
            "not-the-token",
            "POST",
            &md5,
            "text/plain",
            &now,
            "/api/predict/svc"
        )
    );
    let cases = [
        (
            "wrong token",
            wrong,
            md5.clone(),
            now.clone(),
            "body",
            "signature does not match",
        ),
        (
            "tampered body",
            good(&now),
            md5.clone(),
            now.clone(),
            "BODY",
            "does not match the body",
        ),
        (
            "stale date",
            good(&stale),
            md5.clone(),
            stale.clone(),
            "body",
            "away from the server's clock",
        ),
        (
            "wrong plain token",
            "nope".into(),
            md5.clone(),
            now.clone(),
            "body",
            "does not match the service's token",
        ),
    ];
    for (name, authz, md5, date, body, reason) in cases {
        let response = send(authz, md5, date, body).await.expect("sent");
        assert_eq!(response.status().as_u16(), 401, "{name}");
        let answer: Value = response.json().await.expect("json body");
        assert_eq!(answer["error"], "unauthorized", "{name}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{name}: {message}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn batching_should_group_concurrent_requests_and_map_answers_back() {
    let (server, calls) = start(vec![spec(json!({"metadata": {
        "rpc": {"batching": true, "max_batch_size": 8, "max_batch_timeout": 50, "worker_threads": 1}
    }}))])
    .await;
    let requests = (0..32).map(|i| {
        let server = &server;
        async move { (i, post(server, "svc", &format!("request-{i}")).await) }
    });
    for (i, (status, body)) in futures_join_all(requests).await {
        assert_eq!(status, 200);
        assert_eq!(
            body,
            format!("request-{i}"),
            "answer mapped to its own request"
        );
    }
    let text = metrics(&server).await;
    let sum = sample(&text, "eas_batch_size_sum", &["service=\"svc\""]);
    let count = sample(&text, "eas_batch_size_count", &["service=\"svc\""]);
    assert_eq!(sum, 32.0, "{text}");
    assert!(
        count < 32.0 && sum / count > 1.0,
        "mean batch size {}",
        sum / count
    );
    assert_eq!(calls.load(Ordering::SeqCst) as f64, count);
    server.shutdown().await;
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    futures::future::join_all(futures).await
}

#[tokio::test]
async fn each_limit_should_answer_its_status_with_a_json_reason() {
    // Per-instance rate limit: 2 per second.
    let (server, _) = start(vec![
        spec(json!({"metadata": {"name": "rate", "rpc": {"rate_limit": 2}}})),
        spec(json!({"metadata": {"name": "gw"}, "networking": {"gateway_policy": {
            "rate_limit": {"enable": true, "limit": 1}}}})),
        spec(json!({"metadata": {"name": "conc", "rpc": {"worker_threads": 2}}, "networking": {"gateway_policy": {
            "concurrency_limit": {"enable": true, "limit": 1}}}})),
        spec(json!({"metadata": {"name": "queue", "rpc": {"worker_threads": 1, "max_queue_size": 1}}})),
        spec(json!({"metadata": {"name": "slow", "rpc": {"keepalive": 100}}})),
    ])
    .await;

    let statuses: Vec<u16> = futures_join_all((0..5).map(|_| post(&server, "rate", "x")))
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        3,
        "{statuses:?}"
    );

    let (first, second) = tokio::join!(post(&server, "gw", "x"), post(&server, "gw", "x"));
    assert_eq!([first.0, second.0].iter().filter(|&&s| s == 429).count(), 1);
    let answer: Value =
        serde_json::from_str(if first.0 == 429 { &first.1 } else { &second.1 }).expect("json");
    assert_eq!(answer["error"], "rate_limited");

    let (a, b) = tokio::join!(post(&server, "conc", "sleep:300"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post(&server, "conc", "x").await
    });
    assert_eq!(a.0, 200);
    assert_eq!(b.0, 429, "{}", b.1);
    assert!(b.1.contains("concurrency_limited"), "{}", b.1);

    // One worker busy for 400 ms, one request waiting: the third finds the queue full.
    let (a, b, c) = tokio::join!(
        post(&server, "queue", "sleep:400"),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            post(&server, "queue", "x").await
        },
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            post(&server, "queue", "x").await
        }
    );
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(c.0, 450, "{}", c.1);
    assert!(c.1.contains("queue_full"), "{}", c.1);

    let (status, body) = post(&server, "slow", "sleep:1000").await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("keepalive of 100 ms"), "{body}");

    let (status, body) = post(&server, "nope", "x").await;
    assert_eq!(status, 404);
    assert!(body.contains("no service named `nope`"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_body_should_get_413_and_slow_headers_should_be_cut_off() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = Platform::builder()
        .registry(registry(&calls))
        .service(spec(json!({})))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .max_body_bytes(1024)
        .header_read_timeout(Duration::from_millis(300))
        .start()
        .await
        .expect("start");
    assert!(server.wait_ready(Duration::from_secs(10)).await);
    let (status, body) = post(&server, "svc", &"x".repeat(4096)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1024 bytes"), "{body}");

    // A client that never finishes its headers is disconnected.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"POST /api/predict/svc HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the slow connection");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no worker was used");
    assert_eq!(post(&server, "svc", "still fine").await.0, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn panicking_processor_should_fail_only_its_request_and_come_back() {
    let (server, _) = start(vec![spec(json!({"metadata": {
        "rpc": {"batching": true, "max_batch_size": 4, "max_batch_timeout": 100, "worker_threads": 1}
    }}))])
    .await;
    let (bad, good) = tokio::join!(post(&server, "svc", "panic"), post(&server, "svc", "good"));
    assert_eq!(bad.0, 500);
    assert!(
        bad.1.contains("processor panicked: asked to panic"),
        "{}",
        bad.1
    );
    assert_eq!(good, (200, "good".into()), "its batch-mate still succeeds");
    assert!(
        server.wait_ready(Duration::from_secs(5)).await,
        "instance comes back"
    );
    assert_eq!(post(&server, "svc", "after").await, (200, "after".into()));
    let text = metrics(&server).await;
    assert_eq!(
        sample(&text, "eas_instance_restarts_total", &["service=\"svc\""]),
        1.0,
        "{text}"
    );
    let (status, body) = post(&server, "svc", "fail").await;
    assert_eq!(status, 400);
    assert!(body.contains("asked to fail"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn crash_block_should_keep_the_instance_down_and_say_so() {
    let (server, _) = start(vec![spec(json!({"runtime": {"enable_crash_block": true}}))]).await;
    assert_eq!(post(&server, "svc", "panic").await.0, 500);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, body) = post(&server, "svc", "hello").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("enable_crash_block"), "{body}");
    let ready = reqwest::get(url(&server, "/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    server.shutdown().await;
}

#[tokio::test]
async fn sub_paths_should_route_to_the_service_and_reach_the_processor() {
    let (server, _) = start(vec![spec(json!({"metadata": {"name": "model_v2"}}))]).await;
    assert_eq!(post(&server, "model_v2", "a").await, (200, "a".into()));
    assert_eq!(
        post(&server, "model_v2/v1/score", "b").await,
        (200, "b path=v1/score".into())
    );
    let (status, body) = post(&server, "group.model_v3/x", "c").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("group.model_v3/x"), "{body}");
    // The path is percent-decoded before it is matched and handed over.
    assert_eq!(
        post(&server, "model%5Fv2/v1%2Fscore%20x", "d").await,
        (200, "d path=v1/score x".into())
    );
    let (status, body) = post(&server, "model_v2/%FF", "e").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not UTF-8"), "{body}");
    let (status, body) = post(&server, "", "f").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no such route"), "{body}");
    let discovery: Value =
        reqwest::get(url(&server, "/api/v1/servicediscovery/upstreams/model_v2"))
            .await
            .expect("discovery")
            .json()
            .await
            .expect("json");
    let items = discovery["endpoints"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["port"], server.local_addr().port());
    assert_eq!(items[0]["ip"], "127.0.0.1");
    server.shutdown().await;
}

#[tokio::test]
async fn an_answer_to_head_should_have_no_body_over_http2_too() {
    use http_body_util::BodyExt as _;

    let (server, _) = start(vec![spec(json!({}))]).await;
    let stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 connection");
    tokio::spawn(connection);
    for method in [http::Method::HEAD, http::Method::GET] {
        let request = http::Request::builder()
            .method(method.clone())
            .uri(format!("http://{}/api/predict/svc", server.local_addr()))
            .header("authorization", TOKEN)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("a request");
        let response = sender.send_request(request).await.expect("answered");
        assert_eq!(response.status(), 405, "{method}");
        let body = response.into_body().collect().await.expect("a body");
        // GET gets the reason; HEAD the same status and no body.
        assert_eq!(
            body.to_bytes().is_empty(),
            method == http::Method::HEAD,
            "{method}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_should_pass_promtool_and_count_by_code() {
    let (server, _) = start(vec![spec(json!({}))]).await;
    post(&server, "svc", "x").await;
    post(&server, "svc", "fail").await;
    let text = metrics(&server).await;
    assert_eq!(
        sample(
            &text,
            "eas_requests_total",
            &["code=\"200\"", "instance=\"0\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "eas_requests_total", &["code=\"400\""]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "eas_instance_ready", &["service=\"svc\""]),
        1.0,
        "{text}"
    );
    assert!(
        text.contains("eas_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("eas_queue_depth{"), "{text}");

    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write");
            let out = child.wait_with_output().expect("promtool ran");
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => require::skip(
            "metrics_should_pass_promtool_and_count_by_code",
            &format!("promtool cannot run: {e}"),
        ),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn warm_up_should_run_before_ready_and_sink_should_record_pairs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warm = dir.path().join("warm.jsonl");
    std::fs::write(
        &warm,
        "{\"body\": \"w1\"}\n{\"body\": \"w2\"}\n{\"body\": \"w3\"}\n",
    )
    .expect("write");
    let sink = dir.path().join("sink.jsonl");
    let (server, calls) = start(vec![spec(json!({
        "warm_up_data_path": warm.to_string_lossy(),
        "sinker": {"type": "file", "config": {"file": {"path": sink.to_string_lossy()}}},
    }))])
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "three warm-up calls before ready"
    );
    post(&server, "svc", "recorded").await;
    post(&server, "svc", "fail").await;
    server.shutdown().await;
    let lines: Vec<Value> = std::fs::read_to_string(&sink)
        .expect("sink file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2, "every processor answer is sunk: {lines:?}");
    assert_eq!(lines[0]["request"], "recorded");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[1]["status"], 400);
    assert!(
        lines[1]["response"]
            .as_str()
            .unwrap_or_default()
            .contains("asked to fail")
    );
}

#[tokio::test]
async fn shutdown_should_finish_in_flight_requests_then_refuse_connections() {
    let (server, _) = start(vec![spec(json!({}))]).await;
    let addr = server.local_addr();
    let in_flight = tokio::spawn({
        let url = format!("http://{addr}/api/predict/svc");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("Authorization", TOKEN)
                .body("sleep:300")
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
    let report = server.shutdown().await;
    assert_eq!(report.abandoned, 0);
    assert_eq!(in_flight.await.expect("joined"), (200, "sleep:300".into()));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn inline_processor_should_answer_on_the_io_thread_and_recover_from_a_panic() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut registry = registry(&calls);
    let inline_calls = Arc::clone(&calls);
    registry.register_inline("inline", move |_| {
        Ok(Box::new(TestProcessor {
            calls: Arc::clone(&inline_calls),
        }))
    });
    let server = Platform::builder()
        .registry(registry)
        .service(spec(
            json!({"processor": "inline", "metadata": {"rpc": {"rate_limit": 100}}}),
        ))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect("start");
    assert!(server.wait_ready(Duration::from_secs(10)).await);
    assert_eq!(post(&server, "svc", "hello").await, (200, "hello".into()));
    let (status, body) = post(&server, "svc", "panic").await;
    assert_eq!(status, 500);
    assert!(body.contains("asked to panic"), "{body}");
    assert!(
        server.wait_ready(Duration::from_secs(5)).await,
        "comes back"
    );
    assert_eq!(post(&server, "svc", "again").await, (200, "again".into()));
    let text = metrics(&server).await;
    assert_eq!(
        sample(&text, "eas_instance_restarts_total", &["service=\"svc\""]),
        1.0,
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn new_limits_should_apply_at_once_without_dropping_requests_in_flight() {
    let (server, _) = start(vec![spec(
        json!({"metadata": {"rpc": {"worker_threads": 4}}}),
    )])
    .await;
    let admission = server.edge().admission("svc").expect("svc is served");

    // In flight on the old, unlimited stack while the new one (one at a time, 1 per second)
    // is swapped in.
    let in_flight = tokio::spawn({
        let url = url(&server, "/api/predict/svc");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("Authorization", TOKEN)
                .body("sleep:400")
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
    admission.update(&spec(json!({"networking": {"gateway_policy": {
        "rate_limit": {"enable": true, "limit": 1},
        "concurrency_limit": {"enable": true, "limit": 1}}}})));

    let (first, second) = tokio::join!(post(&server, "svc", "sleep:200"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        post(&server, "svc", "x").await
    });
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(second.0, 429, "{}", second.1);
    assert_eq!(
        in_flight.await.expect("join"),
        (200, "sleep:400".to_owned())
    );
    server.shutdown().await;
}

async fn start_with(
    spec: ServiceSpec,
    configure: impl FnOnce(
        eas_runtime::platform::PlatformBuilder,
    ) -> eas_runtime::platform::PlatformBuilder,
) -> RunningPlatform {
    let calls = Arc::new(AtomicUsize::new(0));
    let builder = Platform::builder()
        .registry(registry(&calls))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .service(spec);
    let server = configure(builder).start().await.expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(10)).await, "ready");
    server
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Sends the head of a predict request with a Content-Length and `sent` bytes of its body,
/// then stalls: the connection is returned open.
async fn stalled_upload(
    server: &RunningPlatform,
    length: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    let head = format!(
        "POST /api/predict/svc HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&vec![b'x'; sent])
        .await
        .expect("part of the body");
    stream
}

/// The attack: clients with a valid token start large uploads and stall. The bytes held by
/// bodies being read stay under the server's bound (shown by the metric), and the request
/// that does not fit gets 503 at once instead of growing the server's memory.
#[tokio::test]
async fn bodies_being_read_should_stay_within_the_servers_bound() {
    let server = start_with(spec(json!({})), |b| b.max_buffered_body_bytes(1 << 20)).await;
    let first = stalled_upload(&server, 600 << 10, 100 << 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        metric(&metrics(&server).await, "eas_request_body_bytes_buffered"),
        f64::from(600 << 10),
        "the first upload holds its declared length"
    );
    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(url(&server, "/api/predict/svc"))
        .header("Authorization", TOKEN)
        .body(vec![b'y'; 600 << 10])
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 503);
    let body = response.text().await.expect("body");
    assert!(body.contains("busy"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Small requests still fit beside it.
    assert_eq!(post(&server, "svc", "small").await.0, 200);
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        metric(&metrics(&server).await, "eas_request_body_bytes_buffered"),
        0.0,
        "a dropped upload gives its bytes back"
    );
    server.shutdown().await;
}

/// The attack: a flood of connections that never send a request. They cannot take every
/// descriptor: past the bound the oldest idle ones are closed, and a real client still gets
/// its answer.
#[tokio::test]
async fn a_flood_of_idle_connections_should_not_lock_out_real_clients() {
    let server = start_with(spec(json!({})), |b| b.max_connections(16)).await;
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(
            tokio::net::TcpStream::connect(server.local_addr())
                .await
                .expect("connects"),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered = tokio::time::timeout(Duration::from_secs(5), post(&server, "svc", "real")).await;
    assert_eq!(
        answered.expect("answered in time"),
        (200, "real".to_owned())
    );
    let text = metrics(&server).await;
    assert!(metric(&text, "eas_connections") <= 16.0, "{text}");
    assert!(
        metric(&text, "eas_connections_evicted_total") >= 44.0,
        "{text}"
    );
    drop(idle);
    server.shutdown().await;
}

/// The attack: a connection that sent half its headers held shutdown for the whole grace
/// period. A connection with no request in service now closes at once.
#[tokio::test]
async fn shutdown_should_not_wait_for_connections_without_a_request_in_service() {
    use tokio::io::AsyncWriteExt as _;
    let server = start_with(
        spec(json!({"metadata": {"eas.termination_grace_period": 30}})),
        |b| b,
    )
    .await;
    let mut half = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    half.write_all(b"POST /api/predict/svc HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half a head");
    let idle = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let report = server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(report.abandoned, 0);
    drop((half, idle));
}

/// A spec built in code skips the parser: its bounds are checked when the service starts
/// (a `Duration::MAX` grace once panicked `eas serve` on SIGTERM).
#[tokio::test]
async fn a_spec_built_in_code_should_be_validated_at_start() {
    let mut spec = spec(json!({}));
    spec.metadata.termination_grace_period = Duration::MAX;
    let refused = Platform::builder()
        .registry(registry(&Arc::new(AtomicUsize::new(0))))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .service(spec)
        .start()
        .await
        .expect_err("refused at start");
    let message = refused.to_string();
    assert!(message.contains("termination_grace_period"), "{message}");
}
