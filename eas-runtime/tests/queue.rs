//! The queue service (asynchronous inference) over real sockets, driven by the real
//! `eas-prediction` SDK's `QueueClient`: put/get, truncate, watch with auto and manual commit,
//! requests through the input queue to the sink, 2,000 puts against a watcher, 450 when full,
//! consumers that crash or vanish mid-batch, and bad input; and attacks over raw HTTP: a full
//! sink (results held back, nothing lost, 450), signed queue calls replayed with another query
//! (401), extreme and malformed indexes, and identical signed predict requests in one second.
//!
//! Each SDK scenario runs on the in-memory backend (`<test>::memory`) and, with the `redis`
//! feature, on the Redis Streams backend (`<test>::redis`) against a `redis-server` started on a
//! free loopback port for the test. The SDK parts need `EAS_SDK_PYTHON` (a Python with
//! `eas-prediction` 0.36 and `websocket-client`), the Redis parts `redis-server` on the PATH
//! (`.ci/setup/40-redis.sh`); without them they print `SKIPPED: ...`, or fail when
//! `EAS_REQUIRE_ALL=1`.

#[path = "support/json_merge.rs"]
mod json_merge;
#[cfg(feature = "redis")]
mod queue_support;
#[path = "support/require.rs"]
mod require;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eas_core::processor::{InitContext, ProcessError, Processor, Request, Response};
use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, RunningPlatform};
use eas_runtime::queue::{MemoryQueues, QueueFactory};
use eas_runtime::registry::ProcessorRegistry;
use json_merge::merge;
use require::skip;
use serde_json::{Value, json};

const TOKEN: &str = "queue-test-token";

/// Echoes; `sleep:N` sleeps N ms, `panic` panics, `fail` fails. With `model_config`
/// `flaky` it panics on its first batch of more than one request; with `slow-start` its
/// initialization takes 3 s.
struct TestProcessor {
    flaky: Option<Arc<AtomicBool>>,
}

impl Processor for TestProcessor {
    fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
        if ctx.model_config.as_deref() == Some("slow-start") {
            std::thread::sleep(Duration::from_secs(3));
        }
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        if let Some(panicked) = &self.flaky
            && batch.len() > 1
            && !panicked.swap(true, Ordering::SeqCst)
        {
            panic!("flaky processor: first batch of {}", batch.len());
        }
        batch
            .iter()
            .map(|r| {
                let body = String::from_utf8_lossy(&r.body);
                if body == "panic" {
                    panic!("asked to panic");
                }
                if body == "fail" {
                    return Err(ProcessError::bad_request("asked to fail"));
                }
                if let Some(ms) = body.strip_prefix("sleep:") {
                    std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
                }
                Ok(Response::ok(r.body.clone()))
            })
            .collect()
    }
}

fn registry() -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::with_builtins();
    let flaky = Arc::new(AtomicBool::new(false));
    registry.register("test", move |spec| {
        let flaky = (spec.model_config.as_deref() == Some("flaky")).then(|| Arc::clone(&flaky));
        Ok(Box::new(TestProcessor { flaky }))
    });
    registry
}

/// An async service `name` with the `test` processor and `extra` merged into its spec.
fn spec(name: &str, extra: Value) -> ServiceSpec {
    let mut doc = json!({
        "metadata": {"name": name, "instance": 2, "type": "Async",
                     "eas.termination_grace_period": 1,
                     "rpc": {"max_queue_size": 10000}},
        "processor": "test",
        "model_path": ".",
        "token": TOKEN,
    });
    merge(&mut doc, extra);
    ServiceSpec::from_json_value(doc).expect("test spec is valid")
}

async fn start(env: &Env, specs: Vec<ServiceSpec>, wait_ready: bool) -> RunningPlatform {
    let mut builder = Platform::builder()
        .registry(registry())
        .queues(Arc::clone(&env.queues))
        .max_body_bytes(4096)
        .bind("127.0.0.1:0".parse().expect("addr"));
    for spec in specs {
        builder = builder.service(spec);
    }
    let server = builder.start().await.expect("server starts");
    if wait_ready {
        assert!(server.wait_ready(Duration::from_secs(20)).await, "ready");
    }
    server
}

/// Which queue backend a scenario runs on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    #[cfg(feature = "redis")]
    Redis,
}

/// The queues a test's servers use, and the Redis server behind them (stopped on drop).
struct Env {
    queues: Arc<dyn QueueFactory>,
    #[cfg(feature = "redis")]
    _redis: Option<queue_support::RedisServer>,
}

impl Env {
    fn memory() -> Self {
        Self {
            queues: Arc::new(MemoryQueues),
            #[cfg(feature = "redis")]
            _redis: None,
        }
    }
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            #[cfg(feature = "redis")]
            Self::Redis => "redis",
        }
    }

    fn test(self, name: &str) -> String {
        match self {
            Self::Memory => format!("{name}::memory"),
            #[cfg(feature = "redis")]
            Self::Redis => format!("{name}::redis"),
        }
    }

    /// The SDK's Python and the environment, or `None` after saying why the test is skipped.
    fn sdk_env(self, test: &str) -> Option<(String, Env)> {
        let python = sdk_python(test)?;
        Some((python, self.env(test)?))
    }

    /// The environment, or `None` after saying why the test is skipped.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn env(self, test: &str) -> Option<Env> {
        match self {
            Self::Memory => Some(Env::memory()),
            #[cfg(feature = "redis")]
            Self::Redis => match queue_support::RedisServer::start(false) {
                Ok(redis) => Some(Env {
                    queues: Arc::new(redis.queues()),
                    _redis: Some(redis),
                }),
                Err(why) => {
                    skip(test, &why);
                    None
                }
            },
        }
    }
}

/// A scenario as two tests: `name::memory` and, with the `redis` feature, `name::redis`.
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::Backend::Memory).await;
            }

            #[cfg(feature = "redis")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(super::Backend::Redis).await;
            }
        }
    };
}

/// The SDK's Python, or `None` after saying why the test is skipped.
fn sdk_python(test: &str) -> Option<String> {
    match std::env::var("EAS_SDK_PYTHON") {
        Ok(python) => Some(python),
        Err(_) => {
            skip(
                test,
                "EAS_SDK_PYTHON is not set (a Python with eas-prediction and websocket-client)",
            );
            None
        }
    }
}

/// What every script starts with: `client(name)`, `out(name, value)`, `endpoint`, `token`.
const PREAMBLE: &str = r#"
import sys, json, threading, time
from eas_prediction import QueueClient
from eas_prediction.exception import PredictException
endpoint, token = sys.argv[1], sys.argv[2]
def client(name):
    c = QueueClient(endpoint, name)
    c.set_token(token)
    c.init()
    return c
def out(name, value):
    print('%s\t%s' % (name, value), flush=True)
"#;

/// Runs `script` with the SDK against `server`, killed after `limit`; its stdout.
async fn run_sdk(
    python: String,
    server: &RunningPlatform,
    script: &str,
    limit: Duration,
) -> String {
    let endpoint = format!("http://{}", server.local_addr());
    let script = format!("{PREAMBLE}{script}");
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(python)
            .args(["-c", &script, &endpoint, TOKEN])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the SDK's Python runs");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut stdout);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut stderr);
        }
        match status {
            Some(status) if status.success() => stdout,
            Some(status) => panic!("SDK script failed ({status}):\n{stdout}\n{stderr}"),
            None => panic!("SDK script still running after {limit:?}:\n{stdout}\n{stderr}"),
        }
    })
    .await
    .expect("joined")
}

/// The value printed for `name`.
fn line(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}\t")))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{stdout}"))
        .to_owned()
}

both_backends!(sdk_should_put_get_truncate_and_read_attributes);
async fn sdk_should_put_get_truncate_and_read_attributes(backend: Backend) {
    let test = backend.test("sdk_should_put_get_truncate_and_read_attributes");
    let Some((python, env)) = backend.sdk_env(&test) else {
        return;
    };
    let server = start(&env, vec![spec("q", json!({}))], true).await;
    let script = r#"
sink = client('q/sink')
index, rid = sink.put('abc', {'color': 'red'})
out('index', index)
out('rid_len', len(rid))
by_rid = sink.get(request_id=rid, auto_delete=False)
out('by_rid', '%d %s %s %s' % (len(by_rid), by_rid[0].data.decode(), by_rid[0].tags['requestId'] == rid, by_rid[0].tags['color']))
by_index = sink.get(index=index)
out('by_index', '%d %s %d' % (len(by_index), by_index[0].data.decode(), by_index[0].index))
out('after_auto_delete', sink.attributes()['stream.length'])
out('search_gone', json.dumps(sink.search(index)))
latest = 0
for x in range(10):
    latest, _ = sink.put('abc')
found = sink.search(int(latest))
out('search', '%s %s %d' % (found['state'], found['index'] == int(latest), found['position']))
out('length_before', sink.attributes()['stream.length'])
sink.truncate(int(latest) + 1)
attrs = sink.attributes()
out('length_after', attrs['stream.length'])
out('last_entry', attrs['stream.lastEntry'] == str(latest))
out('empty_get', len(sink.get(index=0, timeout='0s')))
out('backend', sink.attributes()['meta.backend'])
"#;
    let stdout = run_sdk(python, &server, script, Duration::from_secs(60)).await;
    assert!(
        line(&stdout, "index")
            .parse::<u64>()
            .expect("decimal index")
            >= 1
    );
    assert_eq!(line(&stdout, "rid_len"), "36", "a UUID requestId");
    assert_eq!(line(&stdout, "by_rid"), "1 abc True red");
    let by_index = line(&stdout, "by_index");
    assert!(by_index.starts_with("1 abc "), "{by_index}");
    assert_eq!(line(&stdout, "after_auto_delete"), "0");
    assert_eq!(line(&stdout, "search_gone"), "{}", "404 -> the SDK's {{}}");
    assert_eq!(line(&stdout, "search"), "queued True 9");
    assert_eq!(line(&stdout, "length_before"), "10");
    assert_eq!(line(&stdout, "length_after"), "0");
    assert_eq!(line(&stdout, "last_entry"), "True");
    assert_eq!(line(&stdout, "empty_get"), "0");
    assert_eq!(line(&stdout, "backend"), backend.name());
    server.shutdown().await;
}

both_backends!(sdk_watch_should_deliver_in_order_with_auto_and_manual_commit);
async fn sdk_watch_should_deliver_in_order_with_auto_and_manual_commit(backend: Backend) {
    let test = backend.test("sdk_watch_should_deliver_in_order_with_auto_and_manual_commit");
    let Some((python, env)) = backend.sdk_env(&test) else {
        return;
    };
    let server = start(&env, vec![spec("q", json!({}))], true).await;
    let script = r#"
sink = client('q/sink')
for x in range(10):
    sink.put(str(x))
got = []
watcher = sink.watch(0, 5, auto_commit=True)
for x in watcher.run():
    got.append(int(x.data.decode()))
    if len(got) == 10:
        break
watcher.close()
time.sleep(0.5)
out('auto', ' '.join(map(str, got)))
out('auto_length', sink.attributes()['stream.length'])

for x in range(10):
    sink.put(str(x))
got = []
watcher = sink.watch(0, 5, auto_commit=False)
for x in watcher.run():
    got.append(int(x.data.decode()))
    sink.commit(x.index)
    if len(got) == 10:
        break
watcher.close()
out('manual', ' '.join(map(str, got)))
out('manual_length', sink.attributes()['stream.length'])

index, _ = sink.put('payload')
watcher = sink.watch(0, 1, index_only=True, auto_commit=True)
for x in watcher.run():
    out('index_only', '%s %d' % (x.index == int(index), len(x.data)))
    break
watcher.close()
"#;
    let stdout = run_sdk(python, &server, script, Duration::from_secs(60)).await;
    let in_order = "0 1 2 3 4 5 6 7 8 9";
    assert_eq!(line(&stdout, "auto"), in_order);
    assert_eq!(line(&stdout, "auto_length"), "0");
    assert_eq!(line(&stdout, "manual"), in_order);
    assert_eq!(line(&stdout, "manual_length"), "0");
    assert_eq!(line(&stdout, "index_only"), "True 0", "an index, no data");
    server.shutdown().await;
}

both_backends!(sdk_requests_should_go_through_the_processor_into_the_sink);
async fn sdk_requests_should_go_through_the_processor_into_the_sink(backend: Backend) {
    let test = backend.test("sdk_requests_should_go_through_the_processor_into_the_sink");
    let Some((python, env)) = backend.sdk_env(&test) else {
        return;
    };
    let server = start(
        &env,
        vec![spec(
            "q",
            json!({"processor": "echo",
                   "metadata": {"rpc": {"batching": true, "max_batch_size": 8, "max_batch_timeout": 5}}}),
        )],
        true,
    )
    .await;
    let script = r#"
inq, sink = client('q'), client('q/sink')
sent = {}
for x in range(100):
    index, rid = inq.put('[{"n": %d}]' % x)
    sent[rid] = '[{"n": %d}]' % x
seen = {}
watcher = sink.watch(0, 5, auto_commit=False)
for x in watcher.run():
    seen[x.tags['requestId']] = x.data.decode()
    sink.commit(x.index)
    if len(seen) == 100:
        break
watcher.close()
out('matched', sum(1 for rid, body in sent.items() if seen.get(rid) == body))
out('sink_length', sink.attributes()['stream.length'])
out('input_length', inq.attributes()['stream.length'])
"#;
    let stdout = run_sdk(python, &server, script, Duration::from_secs(60)).await;
    assert_eq!(
        line(&stdout, "matched"),
        "100",
        "every result under its requestId"
    );
    assert_eq!(line(&stdout, "sink_length"), "0");
    assert_eq!(
        line(&stdout, "input_length"),
        "0",
        "inputs removed once done"
    );
    server.shutdown().await;
}

both_backends!(sdk_watchers_should_receive_2000_concurrent_puts_exactly_once);
async fn sdk_watchers_should_receive_2000_concurrent_puts_exactly_once(backend: Backend) {
    let test = backend.test("sdk_watchers_should_receive_2000_concurrent_puts_exactly_once");
    let Some((python, env)) = backend.sdk_env(&test) else {
        return;
    };
    let server = start(&env, vec![spec("q", json!({"processor": "echo"}))], true).await;
    // Both SDK scenarios: straight into the sink, and through the input queue and processor.
    // A scenario that has not finished within its deadline prints `<name>_stalled` with what
    // tells a lost item from a slow machine (counts, the sender's and watcher's errors, SDK
    // reconnects, the queue's attributes, where the missing items are) and exits 3.
    let script = r#"
import logging, os
count = 2000
deadline_s = 140
class Reconnects(logging.Handler):
    def __init__(self):
        logging.Handler.__init__(self, logging.WARNING)
        self.count, self.last = 0, None
    def emit(self, record):
        self.count += 1
        self.last = record.getMessage()
reconnects = Reconnects()
logging.getLogger('eas_prediction.queue_client').addHandler(reconnects)
def scenario(name, put_queue, watch_queue):
    sent, received, dupes = set(), set(), [0]
    started = time.time()
    state = {'sender_error': None, 'watcher_error': None, 'sender_done_s': None,
             'last_received_s': None}
    def send():
        try:
            put_queue.set_timeout(30000)
            for x in range(count):
                index, rid = put_queue.put('[{}]')
                sent.add(rid)
            state['sender_done_s'] = round(time.time() - started, 1)
        except Exception as e:
            state['sender_error'] = repr(e)
    def watch():
        try:
            watcher = watch_queue.watch(0, 5, auto_commit=True)
            for x in watcher.run():
                rid = x.tags['requestId']
                if rid in received:
                    dupes[0] += 1
                received.add(rid)
                state['last_received_s'] = round(time.time() - started, 1)
                if len(received) == count:
                    break
            watcher.close()
        except Exception as e:
            state['watcher_error'] = repr(e)
    threads = [threading.Thread(target=watch, daemon=True),
               threading.Thread(target=send, daemon=True)]
    for t in threads: t.start()
    for t in threads: t.join(max(0.0, started + deadline_s - time.time()))
    if any(t.is_alive() for t in threads) or state['sender_error'] or state['watcher_error']:
        sent, received = set(sent), set(received)
        missing = sorted(sent - received)
        state.update({'sdk_warnings': reconnects.count, 'last_sdk_warning': reconnects.last})
        where = []
        for rid in missing[:5]:
            seen = {'requestId': rid}
            for key, queue in [('in_put_queue', put_queue), ('in_watch_queue', watch_queue)]:
                found = queue.get(request_id=rid, auto_delete=False, timeout='0s')
                seen[key] = found and queue.search(found[0].index)
            where.append(seen)
        state.update({'after_s': round(time.time() - started, 1), 'sent': len(sent),
                      'received': len(received), 'missing': len(missing),
                      'unexpected': len(received - sent), 'dupes': dupes[0],
                      'watch_queue_attributes': watch_queue.attributes(),
                      'put_queue_attributes': put_queue.attributes(),
                      'first_missing': where})
        out(name + '_stalled', json.dumps(state, sort_keys=True))
        sys.stdout.flush()
        os._exit(3)
    out(name, '%d %d %s %d' % (len(sent), len(received), sent == received, dupes[0]))
sink = client('q/sink')
scenario('sink', sink, sink)
scenario('inference', client('q'), client('q/sink'))
"#;
    let stdout = run_sdk(python, &server, script, Duration::from_secs(300)).await;
    assert_eq!(line(&stdout, "sink"), "2000 2000 True 0");
    assert_eq!(line(&stdout, "inference"), "2000 2000 True 0");
    server.shutdown().await;
}

both_backends!(sdk_put_into_a_full_input_queue_should_get_450_and_backlog_is_a_metric);
async fn sdk_put_into_a_full_input_queue_should_get_450_and_backlog_is_a_metric(backend: Backend) {
    let test =
        backend.test("sdk_put_into_a_full_input_queue_should_get_450_and_backlog_is_a_metric");
    let Some((python, env)) = backend.sdk_env(&test) else {
        return;
    };
    let server = start(
        &env,
        vec![spec(
            "tiny",
            json!({"metadata": {"instance": 1, "rpc": {"max_queue_size": 3}}}),
        )],
        true,
    )
    .await;
    let script = r#"
inq = client('tiny')
inq.set_retry_count(0)
for x in range(3):
    inq.put('sleep:1500')
try:
    inq.put('one too many')
    out('full', 'accepted')
except PredictException as e:
    out('full', '%d %s' % (e.code, e.message))
"#;
    let stdout = run_sdk(python, &server, script, Duration::from_secs(60)).await;
    let full = line(&stdout, "full");
    assert!(full.starts_with("450 "), "{full}");
    assert!(
        full.contains("queue full") && full.contains("`tiny`"),
        "{full}"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", server.local_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"eas_queue_backlog{service="tiny"} 3"#),
        "three items queued or in process:\n{metrics}"
    );
    server.shutdown().await;
}

both_backends!(a_consumer_that_panics_mid_batch_should_lose_nothing);
async fn a_consumer_that_panics_mid_batch_should_lose_nothing(backend: Backend) {
    let test = backend.test("a_consumer_that_panics_mid_batch_should_lose_nothing");
    let Some((python, env)) = backend.sdk_env(&test) else {
        return;
    };
    let server = start(
        &env,
        vec![spec(
            "crashy",
            json!({"model_config": "flaky",
                   "metadata": {"instance": 1,
                                "rpc": {"batching": true, "max_batch_size": 4, "max_batch_timeout": 50}}}),
        )],
        true,
    )
    .await;
    let script = r#"
inq, sink = client('crashy'), client('crashy/sink')
sent = {}
for x in range(20):
    index, rid = inq.put('item-%d' % x)
    sent[rid] = 'item-%d' % x
index, panic_rid = inq.put('panic')
results = {}
watcher = sink.watch(0, 5, auto_commit=True)
for x in watcher.run():
    results[x.tags['requestId']] = (x.data.decode(), x.message)
    if len(results) == 21:
        break
watcher.close()
out('delivered', sum(1 for rid, body in sent.items() if results.get(rid) == (body, '')))
out('panic_message', results[panic_rid][1])
out('input_length', inq.attributes()['stream.length'])
"#;
    let stdout = run_sdk(python, &server, script, Duration::from_secs(90)).await;
    assert_eq!(
        line(&stdout, "delivered"),
        "20",
        "every item reached the sink"
    );
    let message = line(&stdout, "panic_message");
    assert!(message.contains("panicked"), "{message}");
    assert_eq!(line(&stdout, "input_length"), "0");
    let metrics = reqwest::get(format!("http://{}/metrics", server.local_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"eas_instance_restarts_total{service="crashy",instance="0"}"#),
        "the crash restarted the processor:\n{metrics}"
    );
    server.shutdown().await;
}

both_backends!(items_of_a_consumer_that_vanishes_should_be_redelivered_and_marked);
async fn items_of_a_consumer_that_vanishes_should_be_redelivered_and_marked(backend: Backend) {
    let test = backend.test("items_of_a_consumer_that_vanishes_should_be_redelivered_and_marked");
    let Some((python, env)) = backend.sdk_env(&test) else {
        return;
    };
    // The instance takes 3 s to start, so the SDK watcher gets the items first, then vanishes
    // without committing: the service's consumer must get them again.
    let server = start(
        &env,
        vec![spec(
            "late",
            json!({"model_config": "slow-start", "metadata": {"instance": 1}}),
        )],
        false,
    )
    .await;
    let script = r#"
inq, sink = client('late'), client('late/sink')
sent = {}
for x in range(10):
    index, rid = inq.put('late-%d' % x)
    sent[rid] = 'late-%d' % x
thief = inq.watch(0, 5, auto_commit=False)
taken = []
for x in thief.run():
    taken.append(x.tags['requestId'])
    if len(taken) == 5:
        break
thief.close()
results = {}
watcher = sink.watch(0, 5, auto_commit=True)
for x in watcher.run():
    results[x.tags['requestId']] = (x.data.decode(), x.tags.get('_redelivered_', ''))
    if len(results) == 10:
        break
watcher.close()
out('delivered', sum(1 for rid, body in sent.items() if results.get(rid, ('',))[0] == body))
out('marked', sum(1 for rid in taken if results[rid][1] == '1'))
out('unmarked', sum(1 for rid in sent if rid not in taken and results[rid][1] == ''))
"#;
    let stdout = run_sdk(python, &server, script, Duration::from_secs(60)).await;
    assert_eq!(line(&stdout, "delivered"), "10");
    assert_eq!(line(&stdout, "marked"), "5", "redelivered items say so");
    assert_eq!(line(&stdout, "unmarked"), "5");
    server.shutdown().await;
}

/// A raw call to a queue; status and body.
async fn call(
    server: &RunningPlatform,
    method: reqwest::Method,
    path_and_query: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let response = reqwest::Client::new()
        .request(
            method,
            format!(
                "http://{}/api/predict/{path_and_query}",
                server.local_addr()
            ),
        )
        .header("Authorization", TOKEN)
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queue_calls_should_get_a_clear_status_and_message() {
    let env = Env::memory();
    let server = start(
        &env,
        vec![spec("q", json!({})), {
            let mut sync = spec("plain", json!({}));
            sync.metadata.service_type = None;
            sync
        }],
        true,
    )
    .await;
    use reqwest::Method;
    let cases: Vec<(Method, &str, &'static str, u16, &str)> = vec![
        (
            Method::GET,
            "q/nope?_attrs_=true",
            "",
            404,
            "no queue `nope`",
        ),
        (
            Method::GET,
            "q/sink?_index_=abc",
            "",
            400,
            "`_index_`: `abc`",
        ),
        (Method::GET, "q/sink?_index_=-1", "", 400, "`_index_`"),
        (Method::GET, "q/sink?_timeout_=soon", "", 400, "`_timeout_`"),
        (Method::GET, "q/sink?_length_=0", "", 400, "`_length_`"),
        (
            Method::GET,
            "q/sink?_auto_delete_=maybe",
            "",
            400,
            "`_auto_delete_`",
        ),
        (
            Method::GET,
            "q/sink?_bogus_=1",
            "",
            400,
            "unknown parameter `_bogus_`",
        ),
        (
            Method::PUT,
            "q/sink?_indexes_=1,x",
            "",
            400,
            "`x` is not an index",
        ),
        (Method::PUT, "q/sink", "", 400, "`_indexes_`"),
        (
            Method::DELETE,
            "q/sink?_trunc_=true",
            "",
            400,
            "`_index_` is required",
        ),
        (
            Method::GET,
            "q/sink?_search_=true&_index_=99",
            "",
            404,
            "no item at index 99",
        ),
        (
            Method::GET,
            "q/sink?_watch_=true",
            "",
            400,
            "WebSocket upgrade",
        ),
        (Method::PATCH, "q/sink", "", 405, "not PATCH"),
        (Method::GET, "plain", "", 405, "predict with POST"),
        (
            Method::GET,
            "nosuch?_attrs_=true",
            "",
            404,
            "no service named",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let (got, text) = call(&server, method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(text.contains(needle), "{method} {path}: {text}");
    }
    // `_raw_=true`: the first item's bytes, or 204 when there is none.
    let (status, _) = call(&server, Method::POST, "q/sink", "raw bytes").await;
    assert_eq!(status, 200);
    let (status, text) = call(&server, Method::GET, "q/sink?_raw_=true", "").await;
    assert_eq!((status, text.as_str()), (200, "raw bytes"));
    let (status, text) = call(&server, Method::GET, "q/sink?_raw_=true", "").await;
    assert_eq!(
        (status, text.as_str()),
        (204, ""),
        "auto-deleted by the first get"
    );
    // Over the server's 4 KiB body limit.
    let big = reqwest::Client::new()
        .post(format!("http://{}/api/predict/q", server.local_addr()))
        .header("Authorization", TOKEN)
        .body(vec![b'x'; 8192])
        .send()
        .await
        .expect("sent");
    assert_eq!(big.status().as_u16(), 413);
    // A wrong token.
    let denied = reqwest::Client::new()
        .get(format!(
            "http://{}/api/predict/q/sink?_attrs_=true",
            server.local_addr()
        ))
        .header("Authorization", "wrong")
        .send()
        .await
        .expect("sent");
    assert_eq!(denied.status().as_u16(), 401);
    // None of it touched the queues.
    let (status, attrs) = call(&server, Method::GET, "q/sink?_attrs_=true", "").await;
    assert_eq!(status, 200);
    let attrs: Value = serde_json::from_str(&attrs).expect("json");
    assert_eq!(attrs["stream.length"], "0");
    assert_eq!(
        attrs["stream.lastEntry"], "1",
        "only the raw item was ever put: {attrs}"
    );
    server.shutdown().await;
}

both_backends!(a_watcher_sending_garbage_should_be_closed_and_its_items_go_back);
async fn a_watcher_sending_garbage_should_be_closed_and_its_items_go_back(backend: Backend) {
    let test = backend.test("a_watcher_sending_garbage_should_be_closed_and_its_items_go_back");
    let Some((python, env)) = backend.sdk_env(&test) else {
        return;
    };
    let server = start(&env, vec![spec("q", json!({}))], true).await;
    let script = r#"
import websocket
sink = client('q/sink')
for x in range(3):
    sink.put('kept-%d' % x)
url = endpoint.replace('http://', 'ws://') + '/api/predict/q/sink?_watch_=true&_index_=0&_window_=2&_auto_commit_=false'
ws = websocket.create_connection(url, header={'Authorization': token})
first = ws.recv()
ws.send('garbage')
opcode, frame = ws.recv_data(control_frame=True)
while opcode != 8:  # items already on their way come first
    opcode, frame = ws.recv_data(control_frame=True)
out('close', '%d %d %s' % (opcode, int.from_bytes(frame[:2], 'big'), frame[2:].decode()))
ws.close()
time.sleep(0.3)
out('length', sink.attributes()['stream.length'])
items = sink.get(index=0, length=10, auto_delete=False)
out('items', ' '.join(sorted(x.data.decode() for x in items)))
"#;
    let stdout = run_sdk(python, &server, script, Duration::from_secs(60)).await;
    let close = line(&stdout, "close");
    assert!(
        close.starts_with("8 1003 "),
        "close frame, code 1003: {close}"
    );
    assert!(close.contains("takes no messages"), "{close}");
    assert_eq!(line(&stdout, "length"), "3", "nothing lost");
    assert_eq!(line(&stdout, "items"), "kept-0 kept-1 kept-2");
    server.shutdown().await;
}

/// A Redis test's server, or `None` after saying why the test is skipped.
#[cfg(feature = "redis")]
fn redis_or_skip(test: &str) -> Option<queue_support::RedisServer> {
    match queue_support::RedisServer::start(false) {
        Ok(redis) => Some(redis),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_should_reclaim_the_items_of_a_consumer_that_died_silently() {
    use bytes::Bytes;
    use eas_runtime::queue::{NewItem, REDELIVERED_TAG, WatchOptions};

    let Some(redis) =
        redis_or_skip("redis_should_reclaim_the_items_of_a_consumer_that_died_silently")
    else {
        return;
    };
    let queue = redis.queues().open("q", Some(100)).expect("opens");
    for n in 0..3 {
        queue
            .put(NewItem::new(Bytes::from(format!("item-{n}"))))
            .await
            .expect("put");
    }
    let mut dead = queue
        .watch(WatchOptions::new("dead").with_window(3))
        .await
        .expect("watch");
    assert_eq!(dead.next(3).await.expect("next").len(), 3);
    // A crash: the consumer never says goodbye.
    std::mem::forget(dead);

    let mut alive = queue
        .watch(WatchOptions::new("alive").with_window(3))
        .await
        .expect("watch");
    let early = tokio::time::timeout(Duration::from_millis(800), alive.next(3)).await;
    assert!(
        early.is_err(),
        "not reclaimed before {:?}",
        queue_support::RECLAIM_AFTER
    );
    let again = tokio::time::timeout(Duration::from_secs(10), alive.next(3))
        .await
        .expect("reclaimed in time")
        .expect("next");
    let mut bodies: Vec<String> = again
        .iter()
        .map(|i| String::from_utf8_lossy(&i.data).into_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["item-0", "item-1", "item-2"]);
    assert!(
        again
            .iter()
            .all(|i| i.tags.get(REDELIVERED_TAG).map(String::as_str) == Some("1")),
        "{again:?}"
    );
    let indexes: Vec<u64> = again.iter().map(|i| i.index).collect();
    assert_eq!(queue.commit(&indexes).await.expect("commit"), 3);
    assert_eq!(queue.length().await.expect("length"), 0);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_items_should_survive_a_server_restart_on_redis() {
    use eas_runtime::proto::Message as _;
    use eas_runtime::proto::streaming::DataFrameListProto;

    let Some(redis) = redis_or_skip("queued_items_should_survive_a_server_restart_on_redis") else {
        return;
    };
    let env = Env {
        queues: Arc::new(redis.queues()),
        _redis: None,
    };
    // First server: its instance never gets to consume (it takes 3 s to start).
    let first = start(
        &env,
        vec![spec(
            "durable",
            json!({"model_config": "slow-start", "metadata": {"instance": 1}}),
        )],
        false,
    )
    .await;
    let mut sent = Vec::new();
    for n in 0..5 {
        let body: &'static str = ["a", "b", "c", "d", "e"][n];
        let (status, index) = call(&first, reqwest::Method::POST, "durable", body).await;
        assert_eq!(status, 200, "{index}");
        sent.push(body.to_owned());
    }
    first.shutdown().await;

    // Second server on the same Redis, with a processor that starts at once.
    let second = start(
        &env,
        vec![spec("durable", json!({"metadata": {"instance": 1}}))],
        true,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let results = loop {
        let response = reqwest::Client::new()
            .get(format!(
                "http://{}/api/predict/durable/sink?_index_=0&_length_=10&_auto_delete_=false&_timeout_=1s",
                second.local_addr()
            ))
            .header("Authorization", TOKEN)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status().as_u16(), 200);
        let list =
            DataFrameListProto::decode(response.bytes().await.expect("body")).expect("protobuf");
        if list.index.len() >= 5 || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut got: Vec<String> = results
        .index
        .iter()
        .map(|f| String::from_utf8_lossy(&f.data).into_owned())
        .collect();
    got.sort();
    assert_eq!(got, sent, "every queued item processed after the restart");
    let (_, attrs) = call(&second, reqwest::Method::GET, "durable?_attrs_=true", "").await;
    let attrs: Value = serde_json::from_str(&attrs).expect("json");
    assert_eq!(attrs["stream.length"], "0", "{attrs}");
    second.shutdown().await;
}

both_backends!(a_batch_job_should_write_every_result_and_resume_where_it_stopped);
async fn a_batch_job_should_write_every_result_and_resume_where_it_stopped(backend: Backend) {
    use eas_runtime::job::{ElasticJob, run};

    let test = backend.test("a_batch_job_should_write_every_result_and_resume_where_it_stopped");
    let Some(env) = backend.env(&test) else {
        return;
    };
    // A small input queue, so that the job has to wait for room.
    let server = start(
        &env,
        vec![spec(
            "job",
            json!({"metadata": {"workload_type": "elasticjob", "rpc": {"max_queue_size": 16}}}),
        )],
        true,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = dir.path().join("inputs.txt");
    let lines: Vec<String> = (1..=60)
        .map(|n| {
            if n == 30 {
                "fail".to_owned()
            } else {
                format!("in-{n}")
            }
        })
        .collect();
    std::fs::write(&inputs, lines.join("\n")).expect("write inputs");
    // An earlier run that crashed: one result written, the next cut short.
    let output = dir.path().join("results.jsonl");
    std::fs::write(
        &output,
        "{\"key\":\"line:1\",\"ok\":true,\"data\":\"earlier\"}\n{\"key\":\"line:2\",\"ok\"",
    )
    .expect("write output");
    let service = Arc::clone(&server.services()["job"]);
    let job = ElasticJob::new(&inputs, &output);

    let summary = tokio::time::timeout(Duration::from_secs(60), run(&service, &job))
        .await
        .expect("finishes")
        .expect("runs");
    assert_eq!(
        (
            summary.total,
            summary.skipped,
            summary.succeeded,
            summary.failed
        ),
        (60, 1, 58, 1),
        "{summary}"
    );
    let written = std::fs::read_to_string(&output).expect("read output");
    let results: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is whole JSON"))
        .collect();
    assert_eq!(results.len(), 60, "{written}");
    let by_key: std::collections::HashMap<&str, &Value> = results
        .iter()
        .map(|r| (r["key"].as_str().expect("key"), r))
        .collect();
    assert_eq!(by_key.len(), 60, "each key once");
    assert_eq!(by_key["line:1"]["data"], "earlier", "earlier results kept");
    assert_eq!(by_key["line:30"]["ok"], false);
    let message = by_key["line:30"]["message"].as_str().expect("message");
    assert!(message.contains("asked to fail"), "{message}");
    for n in (2..=60).filter(|&n| n != 30) {
        assert_eq!(
            by_key[format!("line:{n}").as_str()]["data"],
            format!("in-{n}")
        );
    }

    let again = run(&service, &job).await.expect("runs again");
    assert_eq!((again.skipped, again.succeeded, again.failed), (60, 0, 0));
    server.shutdown().await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_a_consumer_aborted_mid_batch_should_reach_the_sink_through_another_server() {
    use eas_runtime::proto::Message as _;
    use eas_runtime::proto::streaming::DataFrameListProto;

    let Some(redis) = redis_or_skip(
        "items_of_a_consumer_aborted_mid_batch_should_reach_the_sink_through_another_server",
    ) else {
        return;
    };
    let env = Env {
        queues: Arc::new(redis.queues()),
        _redis: None,
    };
    let service = || {
        spec(
            "shared",
            json!({"metadata": {"instance": 1,
                                "rpc": {"batching": true, "max_batch_size": 4, "max_batch_timeout": 20}}}),
        )
    };
    let first = start(&env, vec![service()], true).await;
    for n in 0..4 {
        let body: &'static str = ["sleep:1500", "sleep:1501", "sleep:1502", "sleep:1503"][n];
        let (status, text) = call(&first, reqwest::Method::POST, "shared", body).await;
        assert_eq!(status, 200, "{text}");
    }
    // Wait until the first server's consumer holds them, then abort it mid-batch (the grace
    // period of 1 s is shorter than any item: 1.5 s each).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, attrs) = call(&first, reqwest::Method::GET, "shared?_attrs_=true", "").await;
        let attrs: Value = serde_json::from_str(&attrs).expect("json");
        if attrs["stream.pending"] == "4" {
            break;
        }
        assert!(Instant::now() < deadline, "never delivered: {attrs}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.shutdown().await;

    let second = start(&env, vec![service()], true).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let results = loop {
        let response = reqwest::Client::new()
            .get(format!(
                "http://{}/api/predict/shared/sink?_index_=0&_length_=10&_auto_delete_=false&_timeout_=1s",
                second.local_addr()
            ))
            .header("Authorization", TOKEN)
            .send()
            .await
            .expect("sent");
        let list =
            DataFrameListProto::decode(response.bytes().await.expect("body")).expect("protobuf");
        if list.index.len() >= 4 || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut got: Vec<(String, Option<String>)> = results
        .index
        .iter()
        .map(|f| {
            (
                String::from_utf8_lossy(&f.data).into_owned(),
                f.tags.get("_redelivered_").cloned(),
            )
        })
        .collect();
    got.sort();
    let redelivered = Some("1".to_owned());
    assert_eq!(
        got,
        vec![
            ("sleep:1500".to_owned(), redelivered.clone()),
            ("sleep:1501".to_owned(), redelivered.clone()),
            ("sleep:1502".to_owned(), redelivered.clone()),
            ("sleep:1503".to_owned(), redelivered),
        ],
        "each aborted item processed once more, marked as a redelivery"
    );
    second.shutdown().await;
}

/// The items of a raw get (`path_and_query` after `/api/predict/`): each one's data and tags.
async fn get_items(
    server: &RunningPlatform,
    path_and_query: &str,
) -> Vec<(String, std::collections::HashMap<String, String>)> {
    use eas_runtime::proto::Message as _;
    use eas_runtime::proto::streaming::DataFrameListProto;

    let response = reqwest::Client::new()
        .get(format!(
            "http://{}/api/predict/{path_and_query}",
            server.local_addr()
        ))
        .header("Authorization", TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200, "GET {path_and_query}");
    let list = DataFrameListProto::decode(response.bytes().await.expect("body")).expect("protobuf");
    list.index
        .into_iter()
        .map(|f| {
            (
                String::from_utf8_lossy(&f.data).into_owned(),
                f.tags.into_iter().collect(),
            )
        })
        .collect()
}

/// A queue's attributes over HTTP (`queue`: `name` or `name/sink`).
async fn attributes(server: &RunningPlatform, queue: &str) -> Value {
    let (status, text) = call(
        server,
        reqwest::Method::GET,
        &format!("{queue}?_attrs_=true"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("json")
}

/// Waits up to 20 s for `done`, panicking with `what` and the last value seen.
async fn eventually<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: still {value:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_backends!(a_full_sink_should_hold_results_back_lose_nothing_and_refuse_puts_with_450);
async fn a_full_sink_should_hold_results_back_lose_nothing_and_refuse_puts_with_450(
    backend: Backend,
) {
    use reqwest::Method;

    let test =
        backend.test("a_full_sink_should_hold_results_back_lose_nothing_and_refuse_puts_with_450");
    let Some(env) = backend.env(&test) else {
        return;
    };
    // Both queues hold 3 items; the one consumer's window is 3 too.
    let server = start(
        &env,
        vec![spec(
            "tight",
            json!({"metadata": {"instance": 1, "rpc": {"max_queue_size": 3}}}),
        )],
        true,
    )
    .await;
    let service = Arc::clone(&server.services()["tight"]);
    let queues = service.queues().expect("an async service");
    let total = 12;
    let bodies: Vec<String> = (0..total).map(|n| format!("item-{n}")).collect();
    let put = |n: usize| call(&server, Method::POST, "tight", bodies[n].clone());

    // Three results fill the sink; three more are processed and held by the consumer.
    for n in 0..3 {
        assert_eq!(put(n).await.0, 200);
    }
    eventually(
        "the sink holds the first three results",
        || attributes(&server, "tight/sink"),
        |a| a["stream.length"] == "3",
    )
    .await;
    for n in 3..6 {
        assert_eq!(put(n).await.0, 200);
    }
    eventually(
        "the consumer holds three results the sink cannot take",
        || async { queues.held_results() },
        |&held| held == 3,
    )
    .await;
    assert_eq!(queues.sink_stalls(), 1, "one stall, however many results");
    let input = attributes(&server, "tight").await;
    assert_eq!(
        (&input["stream.length"], &input["stream.pending"]),
        (&json!("3"), &json!("3")),
        "their inputs stay delivered and uncommitted: {input}"
    );
    assert_eq!(
        attributes(&server, "tight/sink").await["stream.length"],
        "3"
    );

    // A client put into the full sink, and into the input queue the stall filled.
    let (status, text) = call(&server, Method::POST, "tight/sink", "from a client").await;
    assert_eq!(status, 450, "{text}");
    assert!(
        text.contains("queue full") && text.contains("`tight/sink`"),
        "{text}"
    );
    let (status, text) = put(6).await;
    assert_eq!(status, 450, "{text}");
    assert!(text.contains("`tight`"), "{text}");

    // The client drains the sink while it puts the rest: every result comes, once.
    let mut next = 6;
    let mut results: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while results.len() < total {
        while next < total {
            match put(next).await {
                (200, _) => next += 1,
                (450, _) => break,
                (status, text) => panic!("put {next}: {status} {text}"),
            }
        }
        let got = get_items(&server, "tight/sink?_length_=10&_timeout_=1s").await;
        results.extend(got.into_iter().map(|(data, _)| data));
        assert!(
            Instant::now() < deadline,
            "{} of {total} results after 30 s (put {next}): {results:?}",
            results.len()
        );
    }
    results.sort();
    let mut expected = bodies.clone();
    expected.sort();
    assert_eq!(results, expected, "every result exactly once");
    eventually(
        "the inputs are committed",
        || attributes(&server, "tight"),
        |a| a["stream.length"] == "0",
    )
    .await;
    assert_eq!(queues.held_results(), 0);
    assert_eq!(
        attributes(&server, "tight/sink").await["stream.length"],
        "0"
    );
    server.shutdown().await;
}

/// The headers of a request signed as the SDK's `PredictClient` signs it (the Date in UTC;
/// the SDK writes its local time, which the server's window allows for).
fn signed_headers(method: &str, path: &str, body: &[u8]) -> reqwest::header::HeaderMap {
    use eas_runtime::auth::{content_md5, sign};

    let md5 = content_md5(body);
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let content_type = "application/octet-stream";
    let signature = sign(TOKEN, method, &md5, content_type, &date, path);
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in [
        ("Authorization", format!("EAS {signature}")),
        ("Content-MD5", md5),
        ("Date", date),
        ("Content-Type", content_type.to_owned()),
    ] {
        headers.insert(name, value.parse().expect("a header value"));
    }
    headers
}

/// Sends `headers` (a captured signed request) to `path_and_query`; status and body.
async fn replay(
    server: &RunningPlatform,
    method: reqwest::Method,
    path_and_query: &str,
    headers: &reqwest::header::HeaderMap,
    body: &'static [u8],
) -> (u16, String) {
    let response = reqwest::Client::new()
        .request(
            method,
            format!("http://{}{path_and_query}", server.local_addr()),
        )
        .headers(headers.clone())
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

both_backends!(a_signed_queue_call_with_a_query_should_get_401_and_change_nothing);
async fn a_signed_queue_call_with_a_query_should_get_401_and_change_nothing(backend: Backend) {
    use reqwest::Method;

    let test = backend.test("a_signed_queue_call_with_a_query_should_get_401_and_change_nothing");
    let Some(env) = backend.env(&test) else {
        return;
    };
    let server = start(&env, vec![spec("q", json!({}))], true).await;
    for n in 0..3 {
        let (status, text) = call(&server, Method::POST, "q/sink", format!("kept-{n}")).await;
        assert_eq!(status, 200, "{text}");
    }
    // A captured signed `DELETE ?_indexes_=999`: the signature covers the path, not the query.
    let captured = signed_headers("DELETE", "/api/predict/q/sink", b"");
    for query in ["_trunc_=true&_index_=1000000", "_indexes_=999"] {
        let path = format!("/api/predict/q/sink?{query}");
        let (status, text) = replay(&server, Method::DELETE, &path, &captured, b"").await;
        assert_eq!(status, 401, "signed DELETE ?{query}: {text}");
        assert!(
            text.contains("unauthorized") && text.contains("plain `Authorization: <token>`"),
            "{text}"
        );
    }
    assert_eq!(
        attributes(&server, "q/sink").await["stream.length"],
        "3",
        "the queue is intact"
    );
    // A signed get without a query reads and deletes an item: refused too.
    let get = signed_headers("GET", "/api/predict/q/sink", b"");
    let (status, text) = replay(&server, Method::GET, "/api/predict/q/sink", &get, b"").await;
    assert_eq!(status, 401, "signed GET: {text}");
    // A signed put with tags in the query: refused; without a query: what was signed, accepted.
    let put = signed_headers("POST", "/api/predict/q/sink", b"signed");
    let (status, text) = replay(
        &server,
        Method::POST,
        "/api/predict/q/sink?color=red",
        &put,
        b"signed",
    )
    .await;
    assert_eq!(status, 401, "signed POST with tags: {text}");
    let (status, text) = replay(
        &server,
        Method::POST,
        "/api/predict/q/sink",
        &put,
        b"signed",
    )
    .await;
    assert_eq!(status, 200, "signed POST without a query: {text}");
    // A bad signature is refused by admission first, for its own reason.
    let mut forged = captured.clone();
    forged.insert("Authorization", "EAS Zm9yZ2Vk".parse().expect("value"));
    let (status, text) = replay(
        &server,
        Method::DELETE,
        "/api/predict/q/sink?_trunc_=true&_index_=1000000",
        &forged,
        b"",
    )
    .await;
    assert_eq!(status, 401);
    assert!(text.contains("signature does not match"), "{text}");
    let left = get_items(&server, "q/sink?_length_=10&_auto_delete_=false").await;
    let mut left: Vec<String> = left.into_iter().map(|(data, _)| data).collect();
    left.sort();
    assert_eq!(left, ["kept-0", "kept-1", "kept-2", "signed"]);
    server.shutdown().await;
}

both_backends!(malformed_and_extreme_indexes_should_get_400_or_change_only_what_they_name);
async fn malformed_and_extreme_indexes_should_get_400_or_change_only_what_they_name(
    backend: Backend,
) {
    use reqwest::Method;

    let test =
        backend.test("malformed_and_extreme_indexes_should_get_400_or_change_only_what_they_name");
    let Some(env) = backend.env(&test) else {
        return;
    };
    let server = start(&env, vec![spec("q", json!({}))], true).await;
    let mut indexes = Vec::new();
    for n in 0..3 {
        let (status, index) = call(&server, Method::POST, "q/sink", format!("kept-{n}")).await;
        assert_eq!(status, 200, "{index}");
        indexes.push(index.parse::<u64>().expect("an index"));
    }
    let max = u64::MAX.to_string();
    let over = "18446744073709551616"; // u64::MAX + 1
    let ten_thousand_and_one: Vec<String> = (1..=10_001).map(|n| n.to_string()).collect();
    let refused: Vec<(Method, String, &str)> = vec![
        (Method::PUT, "_indexes_=abc".into(), "`abc` is not an index"),
        (
            Method::DELETE,
            "_indexes_=abc".into(),
            "`abc` is not an index",
        ),
        (
            Method::DELETE,
            "_indexes_=-1".into(),
            "`-1` is not an index",
        ),
        (Method::DELETE, format!("_indexes_={over}"), over),
        (
            Method::DELETE,
            "_indexes_=99999999999999999999999999".into(),
            "not an index",
        ),
        (
            Method::DELETE,
            "_indexes_=1,,2".into(),
            "`` is not an index",
        ),
        (Method::DELETE, "_indexes_=".into(), "not an index"),
        (
            Method::DELETE,
            "_indexes_=1.5".into(),
            "`1.5` is not an index",
        ),
        (Method::DELETE, format!("_trunc_=true&_index_={over}"), over),
        (Method::DELETE, "_trunc_=true&_index_=-5".into(), "`-5`"),
        (Method::GET, format!("_index_={over}"), over),
        (Method::GET, format!("_search_=true&_index_={over}"), over),
        (
            Method::DELETE,
            format!("_indexes_={}", ten_thousand_and_one.join(",")),
            "10001 indexes; at most 10000",
        ),
    ];
    for (method, query, needle) in &refused {
        let (status, text) = call(&server, method.clone(), &format!("q/sink?{query}"), "").await;
        let shown = &query[..query.len().min(60)];
        assert_eq!(status, 400, "{method} ?{shown}: {text}");
        assert!(text.contains(needle), "{method} ?{shown}: {text}");
    }
    assert_eq!(attributes(&server, "q/sink").await["stream.length"], "3");

    // Valid but far away: nothing found, nothing removed.
    let harmless: Vec<(Method, String, u16)> = vec![
        (Method::DELETE, format!("_indexes_={max}"), 200),
        (Method::PUT, format!("_indexes_={max}"), 200),
        (Method::DELETE, format!("_indexes_=0,{max},{max}"), 200),
        (Method::GET, format!("_search_=true&_index_={max}"), 404),
        (Method::DELETE, "_trunc_=true&_index_=0".into(), 200),
        (Method::DELETE, "_trunc_=true&_index_=1".into(), 200),
    ];
    for (method, query, expected) in &harmless {
        let (status, text) = call(&server, method.clone(), &format!("q/sink?{query}"), "").await;
        assert_eq!(status, *expected, "{method} ?{query}: {text}");
    }
    let far = get_items(&server, &format!("q/sink?_index_={max}&_auto_delete_=true")).await;
    assert!(far.is_empty(), "{far:?}");
    assert_eq!(attributes(&server, "q/sink").await["stream.length"], "3");

    // 10,000 indexes (the most one call takes; short ones, so that the URI stays under the
    // 64 KiB an `http::Uri` holds), one of them there: that one goes.
    let mut listed: Vec<String> = (10_000..10_000 + 9_999)
        .map(|n: u64| n.to_string())
        .collect();
    listed.push(indexes[0].to_string());
    let (status, text) = call(
        &server,
        Method::DELETE,
        &format!("q/sink?_indexes_={}", listed.join(",")),
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let left = get_items(&server, "q/sink?_length_=10&_auto_delete_=false").await;
    let left: Vec<String> = left.into_iter().map(|(data, _)| data).collect();
    assert_eq!(left, ["kept-1", "kept-2"]);

    // Truncate below u64::MAX: everything, and the queue goes on.
    let (status, text) = call(
        &server,
        Method::DELETE,
        &format!("q/sink?_trunc_=true&_index_={max}"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(attributes(&server, "q/sink").await["stream.length"], "0");
    let (status, index) = call(&server, Method::POST, "q/sink", "after").await;
    assert_eq!(status, 200);
    assert!(index.parse::<u64>().expect("an index") > indexes[2]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_signed_predict_requests_in_the_same_second_should_all_pass() {
    // The HMAC form has no replay cache by design: the SDK sends identical requests in the
    // same second with identical signatures, and every one of them must be served.
    let env = Env::memory();
    let mut sync = spec("plain", json!({}));
    sync.metadata.service_type = None;
    let server = start(&env, vec![sync], true).await;
    let body: &'static [u8] = b"same request";
    let headers = signed_headers("POST", "/api/predict/plain", body);
    let sends = (0..20).map(|_| {
        replay(
            &server,
            reqwest::Method::POST,
            "/api/predict/plain",
            &headers,
            body,
        )
    });
    let answers = futures::future::join_all(sends).await;
    for (status, text) in &answers {
        assert_eq!((*status, text.as_str()), (200, "same request"));
    }
    server.shutdown().await;
}
