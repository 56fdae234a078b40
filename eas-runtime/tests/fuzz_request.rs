//! Fuzzing the request path, without a socket (`Router::oneshot` on a real [`Edge`]):
//!
//! 1. the predict body: arbitrary bytes, generated and mutated JSON (`{"inputs": ...}` with
//!    random names, nested arrays of random depth and shape, numbers such as `1e400`, `NaN`
//!    or `18446744073709551616`, the object form with any `shape` and `datatype`) and
//!    generated and mutated `DataProto` bytes (any dims, including ones whose product
//!    overflows or claims 10^12 elements, any data type and data length), sent together to
//!    the built-in `echo` and to the `onnx` processor on `examples/models/mlp.onnx` with
//!    batching on, mixed with valid requests. Every answer is a 2xx, or a 4xx with the JSON
//!    error body; never a 5xx; within a time bound; a valid request gets its outputs whatever
//!    it was batched with; the process's peak memory stays small (a shape claiming 10^12
//!    elements is refused before anything is allocated for it);
//! 2. the queue protocol: random methods, queue paths and query strings (control keys,
//!    tags, repeated and unknown keys, huge, negative, fractional and non-UTF-8 values) and
//!    bodies against an async `echo` service: never a 5xx, every answer in bounded time
//!    (`_timeout_` values are small, or over the limit and refused);
//! 3. the HMAC header parser: [`Authenticator::check`] with arbitrary `Authorization`,
//!    `Content-MD5`, `Date` and `Content-Type` values, among them correct signatures and
//!    near misses, against an independent oracle written from the protocol: a request passes
//!    exactly when it carries the token or a correct signature with a matching body MD5 and a
//!    Date in the window.
//!
//! The `onnx` part needs ONNX Runtime (`ORT_DYLIB_PATH` or `EAS_PYTHON`, as `tests/onnx.rs`);
//! without it the predict property prints `SKIPPED` for it (or fails under
//! `EAS_REQUIRE_ALL=1`) and fuzzes `echo` alone. CI runs each property briefly (the case
//! counts below); run them long by hand with `PROPTEST_CASES=20000 cargo test -p eas-runtime
//! --all-features --test fuzz_request -- --nocapture` (which also prints what the answers
//! were, by status and error).

#[cfg(feature = "onnx")]
#[path = "support/require.rs"]
mod require;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request};
use base64::Engine as _;
use eas_core::spec::ServiceSpec;
use eas_runtime::admission::BodyLimits;
use eas_runtime::auth::Authenticator;
use eas_runtime::http::Edge;
use eas_runtime::metrics::Metrics;
use eas_runtime::proto::{DataProto, Message, TensorProto};
use eas_runtime::registry::ProcessorRegistry;
use eas_runtime::service::{LocalPaths, Service};
use hmac::Mac as _;
use http_body_util::BodyExt as _;
use md5::Digest as _;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-token";
/// The longest any one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most resident memory the test process may have reached (VmHWM).
const MAX_RESIDENT_BYTES: u64 = 2 << 30;
/// The body limit of the edge.
const MAX_BODY_BYTES: usize = 1 << 20;

/// `PROPTEST_CASES` cases from a random seed when set (a long run by hand); else `brief`
/// cases from a fixed seed, so that CI runs the same cases every time and the checks that the
/// generators reach every outcome cannot fail by chance.
fn config(brief: u32) -> Config {
    let long = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    Config {
        cases: long.unwrap_or(brief),
        rng_seed: match long {
            Some(_) => proptest::test_runner::RngSeed::Random,
            None => proptest::test_runner::RngSeed::Fixed(0x00ea_5eed),
        },
        failure_persistence: None,
        ..Config::default()
    }
}

fn run<S: Strategy>(brief: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config(brief));
    if let Err(error) = runner.run(&strategy, test) {
        panic!("{error}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The peak resident memory of this process (VmHWM), in bytes.
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn check_memory() -> Result<(), TestCaseError> {
    if let Some(peak) = peak_resident_bytes() {
        prop_assert!(
            peak < MAX_RESIDENT_BYTES,
            "the process reached {peak} resident bytes"
        );
    }
    Ok(())
}

/// An edge over `specs` (started and ready), its services' paths resolved from the workspace.
async fn edge(specs: Vec<Value>) -> axum::Router {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let metrics = Arc::new(Metrics::new());
    let registry = ProcessorRegistry::with_builtins();
    let services = specs
        .into_iter()
        .map(|doc| {
            let spec = ServiceSpec::from_json_value(doc).expect("valid spec");
            let paths = LocalPaths::local(&spec, &base);
            Service::start(spec, &registry, &paths, Arc::clone(&metrics)).expect("service starts")
        })
        .collect();
    let mut body = BodyLimits::default();
    body.max_bytes = MAX_BODY_BYTES;
    let edge = Arc::new(Edge::new(services, metrics, body).expect("edge"));
    for _ in 0..3000 {
        if edge.is_ready() {
            return edge.router();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the services never became ready");
}

/// One answer: status, content type and body.
#[derive(Debug)]
struct Answer {
    /// Whether it answers a HEAD request (whose answers have no body).
    head: bool,
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Sends `request`; fails the case when no answer comes within [`ANSWER_TIMEOUT`].
async fn call(router: &axum::Router, request: Request<Body>) -> Result<Answer, TestCaseError> {
    let head = request.method() == Method::HEAD;
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec());
        (status, content_type, body)
    })
    .await
    .map_err(|_| TestCaseError::fail(format!("no answer within {ANSWER_TIMEOUT:?}")))?;
    let (status, content_type, body) = answer;
    let body = body.map_err(|e| TestCaseError::fail(format!("the body failed: {e}")))?;
    Ok(Answer {
        head,
        status,
        content_type,
        body,
    })
}

/// A 2xx, or a 4xx with the server's JSON error body (no body at all for HEAD); never a 5xx.
fn check_answer(what: &str, answer: &Answer) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(&answer.body);
    prop_assert!(
        (200..300).contains(&answer.status) || (400..500).contains(&answer.status),
        "{what}: answered {} {text}",
        answer.status
    );
    if answer.status >= 400 && !(answer.head && answer.body.is_empty()) {
        let body: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            TestCaseError::fail(format!(
                "{what}: the {} answer is not JSON ({e}): {text}",
                answer.status
            ))
        })?;
        prop_assert_eq!(&body["code"], &json!(answer.status), "{}: {}", what, text);
        prop_assert!(body["error"].is_string(), "{what}: {text}");
        prop_assert!(body["message"].is_string(), "{what}: {text}");
    }
    Ok(())
}

/// Answers by service, status and error kind: what the generators reached.
#[derive(Default)]
struct Stats(std::sync::Mutex<std::collections::BTreeMap<String, u32>>);

impl Stats {
    fn count(&self, service: &str, answer: &Answer) {
        // The error kind and the start of its message, digits left out.
        let kind = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .filter(|v| v["error"].is_string())
            .map(|v| {
                // Names in backticks, numbers and anything after `[`, `(` or `{` left out.
                let message = v["message"].as_str().unwrap_or_default();
                let message: String = message
                    .split('`')
                    .step_by(2)
                    .collect::<String>()
                    .split(['[', '(', '{'])
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .take(60)
                    .collect();
                format!("{} {message}", v["error"].as_str().unwrap_or_default())
            })
            .unwrap_or_default();
        let key = format!("{service} {} {kind}", answer.status);
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(key).or_default() += 1;
    }

    /// Prints the counts (seen with `--nocapture`).
    fn print(&self) {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        println!("answers (service or method, status, error):");
        for (key, n) in counts.iter() {
            println!("  {key}: {n}");
        }
    }

    /// How many answers of `service` had a status in `statuses`.
    fn report(&self, service: &str, statuses: std::ops::Range<u16>) -> u32 {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .filter(|(key, _)| {
                let mut parts = key.split(' ');
                parts.next() == Some(service)
                    && parts
                        .next()
                        .and_then(|s| s.parse().ok())
                        .is_some_and(|s| statuses.contains(&s))
            })
            .map(|(_, n)| n)
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Predict bodies.

/// Number literals as text, many of which no JSON number type holds.
const NUMBER_TEXTS: [&str; 18] = [
    "0",
    "1",
    "-1",
    "2.5",
    "-0",
    "1e400",
    "-1e400",
    "1e-400",
    "18446744073709551616",
    "-9223372036854775809",
    "3.4028236e38",
    "1.7976931348623157e308",
    "\"NaN\"",
    "\"Infinity\"",
    "null",
    "true",
    "\"1\"",
    "{}",
];

fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(NUMBER_TEXTS.to_vec()).prop_map(str::to_owned),
        3 => (-1000.0_f64..1000.0).prop_map(|f| format!("{f}")),
        1 => any::<i64>().prop_map(|i| i.to_string()),
        1 => any::<u64>().prop_map(|i| i.to_string()),
        1 => any::<f64>().prop_map(|f| serde_json::to_string(&f).unwrap_or_default()),
    ]
}

fn input_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("x".to_owned()),
        1 => prop::sample::select(vec!["y", "", "X", "x ", "inputs"]).prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
}

/// A nested array of `shape` with leaves from `leaves` (cycled); `ragged` shortens or
/// lengthens one array.
fn nested(shape: &[usize], leaves: &[String], ragged: Option<usize>, at: &mut usize) -> String {
    let Some((&first, rest)) = shape.split_first() else {
        let leaf = leaves
            .get(*at % leaves.len().max(1))
            .cloned()
            .unwrap_or_else(|| "0".to_owned());
        *at += 1;
        return leaf;
    };
    let mut len = first;
    if ragged == Some(*at) {
        len = if len > 0 { len - 1 } else { 2 };
    }
    let items: Vec<String> = (0..len).map(|_| nested(rest, leaves, ragged, at)).collect();
    format!("[{}]", items.join(","))
}

fn nested_array() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop_oneof![4 => Just(4_usize), 4 => 0..4_usize, 1 => 5..40_usize],
            0..5,
        ),
        prop::collection::vec(number_text(), 1..8),
        prop::option::weighted(0.2, 0..50_usize),
    )
        .prop_map(|(shape, leaves, ragged)| nested(&shape, &leaves, ragged, &mut 0))
}

fn dim_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..6_i64).prop_map(|d| d.to_string()),
        1 => prop::sample::select(vec![
            "-1", "1000000000000", "9223372036854775807", "-9223372036854775808",
            "18446744073709551616", "4611686018427387904", "2.0", "\"4\"", "null", "1e3",
        ])
        .prop_map(str::to_owned),
    ]
}

/// The object form: `{"shape": [...], "data": ..., "datatype": ...}`, any of them off.
fn object_input() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(dim_text(), 0..5),
        prop_oneof![
            nested_array(),
            prop::collection::vec(number_text(), 0..20).prop_map(|v| format!("[{}]", v.join(","))),
            number_text(),
        ],
        prop::option::of(prop::sample::select(vec![
            "\"FP32\"",
            "\"FP64\"",
            "\"INT64\"",
            "\"BOOL\"",
            "\"\"",
            "7",
            "null",
            "\"BYTES\"",
        ])),
        any::<bool>(),
    )
        .prop_map(|(shape, data, datatype, with_shape)| {
            let mut fields = vec![format!("\"data\": {data}")];
            if with_shape {
                fields.push(format!("\"shape\": [{}]", shape.join(",")));
            }
            if let Some(datatype) = datatype {
                fields.push(format!("\"datatype\": {datatype}"));
            }
            format!("{{{}}}", fields.join(", "))
        })
}

/// Any JSON value (for the shape of the whole body).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON body as text.
fn json_body() -> impl Strategy<Value = String> {
    let input = prop_oneof![
        4 => nested_array(),
        3 => object_input(),
        1 => number_text(),
        1 => any_json().prop_map(|v| v.to_string()),
    ];
    let inputs = prop::collection::vec((input_name(), input), 0..3).prop_map(|inputs| {
        let fields: Vec<String> = inputs
            .iter()
            .map(|(name, value)| format!("{}: {value}", Value::from(name.as_str())))
            .collect();
        format!("{{{}}}", fields.join(", "))
    });
    prop_oneof![
        8 => inputs.prop_map(|inputs| format!("{{\"inputs\": {inputs}}}")),
        1 => any_json().prop_map(|v| v.to_string()),
        // Nesting far deeper than any parser should follow.
        1 => (1..3000_usize).prop_map(|depth| {
            format!("{{\"inputs\": {{\"x\": {}1{}}}}}", "[".repeat(depth), "]".repeat(depth))
        }),
    ]
}

fn dim() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0..6_i64,
        3 => Just(4_i64),
        1 => prop::sample::select(vec![
            -1,
            1 << 40,
            1_000_000_000_000,
            i64::MAX,
            i64::MIN,
            1 << 62,
            1 << 61,
            (1 << 61) + 1,
        ]),
    ]
}

/// A tensor: any name, dims and data type, data of the right length (when it fits) or not.
fn tensor() -> impl Strategy<Value = TensorProto> {
    (
        input_name(),
        prop::collection::vec(dim(), 0..4),
        prop_oneof![4 => Just(1_i32), 2 => -2..20_i32, 1 => any::<i32>()],
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..128),
    )
        .prop_map(|(name, dims, data_type, exact, random)| {
            // The element size of the data type (4 for codes the protocol does not define).
            let size = match data_type {
                2 | 3 => 1,
                4 | 5 | 10 => 2,
                7 | 11 | 13 => 8,
                _ => 4,
            };
            let elements = dims.iter().try_fold(1_usize, |n, &d| {
                usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
            });
            let raw_data = match elements {
                Some(n) if exact && n.checked_mul(size).is_some_and(|b| b <= 1 << 16) => {
                    vec![0x3f_u8; n * size]
                }
                _ => random,
            };
            TensorProto {
                name,
                dims,
                data_type,
                raw_data: raw_data.into(),
            }
        })
}

fn proto_body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(tensor(), 0..3).prop_map(|tensors| DataProto { tensors }.encode_to_vec())
}

/// A byte mutation.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Delete(Index),
    Insert(Index, Vec<u8>),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (
            any::<Index>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                prop::sample::select(vec!["[", "]", ",", "{", "}", "\"", "1e999", ":", "-"])
                    .prop_map(|s| s.as_bytes().to_vec()),
            ]
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Insert(i, b) => {
                let at = if len == 0 { 0 } else { i.index(len + 1) };
                bytes.splice(at..at, b.iter().copied());
            }
            _ if len == 0 => {}
            Mutation::Set(i, b) => bytes[i.index(len)] = *b,
            Mutation::Delete(i) => {
                bytes.remove(i.index(len));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(len)),
        }
    }
    bytes
}

/// A request to `mlp` that must succeed: `rows` rows of 4 finite floats, as proto or JSON.
#[derive(Debug, Clone)]
struct Valid {
    rows: Vec<[f32; 4]>,
    json: bool,
}

impl Valid {
    fn body(&self) -> Vec<u8> {
        if self.json {
            let rows: Vec<Value> = self.rows.iter().map(|r| json!(r)).collect();
            json!({"inputs": {"x": rows}}).to_string().into_bytes()
        } else {
            let raw: Vec<u8> = self
                .rows
                .iter()
                .flatten()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let tensor = TensorProto {
                name: "x".into(),
                dims: vec![self.rows.len() as i64, 4],
                data_type: 1,
                raw_data: raw.into(),
            };
            DataProto {
                tensors: vec![tensor],
            }
            .encode_to_vec()
        }
    }

    /// Checks the answer holds `y` with one row of 3 probabilities per input row.
    fn check(&self, answer: &Answer) -> Result<(), TestCaseError> {
        let text = String::from_utf8_lossy(&answer.body);
        prop_assert_eq!(answer.status, 200, "a valid request: {}", text);
        let want = if self.json {
            "application/json"
        } else {
            "application/octet-stream"
        };
        prop_assert_eq!(answer.content_type.as_deref(), Some(want));
        let (dims, values): (Vec<i64>, Vec<f32>) = if self.json {
            let body: Value = serde_json::from_slice(&answer.body)
                .map_err(|e| TestCaseError::fail(format!("not JSON: {e}: {text}")))?;
            let y = &body["outputs"]["y"];
            let dims = y["shape"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let values = y["data"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_f64().map_or(f32::NAN, |f| f as f32))
                        .collect()
                })
                .unwrap_or_default();
            (dims, values)
        } else {
            let body = DataProto::decode(answer.body.as_slice())
                .map_err(|e| TestCaseError::fail(format!("not a DataProto: {e}")))?;
            let y = body
                .tensors
                .iter()
                .find(|t| t.name == "y")
                .ok_or_else(|| TestCaseError::fail("no output y"))?;
            let values = y
                .raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (y.dims.clone(), values)
        };
        prop_assert_eq!(dims, vec![self.rows.len() as i64, 3]);
        for row in values.chunks(3) {
            let sum: f32 = row.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-3, "softmax row {row:?}");
        }
        Ok(())
    }
}

fn valid() -> impl Strategy<Value = Valid> {
    (
        prop::collection::vec(prop::array::uniform4(-100.0_f32..100.0), 1..5),
        any::<bool>(),
    )
        .prop_map(|(rows, json)| Valid { rows, json })
}

/// One predict call of a case.
#[derive(Debug, Clone)]
enum Call {
    /// Must get outputs.
    Valid(Valid),
    /// Anything: must get a 2xx or a 4xx.
    Any {
        service: &'static str,
        content_type: Option<String>,
        content_length: Option<String>,
        body: Vec<u8>,
    },
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        prop::sample::select(vec![
            "application/json",
            "application/octet-stream",
            "text/plain",
            "Application/JSON; charset=utf-8",
            "application/x-protobuf",
            "",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,16}",
    ])
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..256),
        4 => json_body().prop_map(String::into_bytes),
        3 => (json_body(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(body, m)| mutate(body.into_bytes(), &m)),
        4 => proto_body(),
        3 => (proto_body(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(body, m)| mutate(body, &m)),
        1 => (valid(), prop::collection::vec(mutation(), 1..3))
            .prop_map(|(v, m)| mutate(v.body(), &m)),
    ]
}

/// A `Content-Length` that may lie about the body, or none.
fn content_length() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.1,
        prop::sample::select(vec![
            "0",
            "1",
            "3",
            "abc",
            "-1",
            "+5",
            " 7",
            "1048577",
            "18446744073709551615",
            "99999999999999999999",
        ])
        .prop_map(str::to_owned),
    )
}

fn predict_call(services: &'static [&'static str]) -> impl Strategy<Value = Call> {
    let any = (
        prop::sample::select(services),
        content_type(),
        content_length(),
        any_body(),
    )
        .prop_map(|(service, content_type, content_length, body)| Call::Any {
            service,
            content_type,
            content_length,
            body,
        });
    prop_oneof![3 => any, 1 => valid().prop_map(Call::Valid)]
}

fn predict_request(
    service: &str,
    content_type: Option<&str>,
    content_length: Option<&str>,
    body: Vec<u8>,
) -> Request<Body> {
    let mut request =
        Request::post(format!("/api/predict/{service}")).header("authorization", TOKEN);
    if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(ct).ok()) {
        request = request.header("content-type", ct);
    }
    if let Some(length) = content_length {
        request = request.header("content-length", length);
    }
    request.body(Body::from(body)).expect("request")
}

/// Sends the calls of a case at once (so that the `onnx` service batches them) and checks
/// every answer.
async fn predict_case(
    router: &axum::Router,
    onnx: bool,
    calls: &[Call],
    stats: &Stats,
) -> Result<(), TestCaseError> {
    let answers = futures::future::join_all(calls.iter().map(|c| async move {
        match c {
            Call::Valid(v) if onnx => {
                call(
                    router,
                    predict_request(
                        "mlp",
                        Some("application/json").filter(|_| v.json),
                        None,
                        v.body(),
                    ),
                )
                .await
            }
            Call::Valid(v) => call(router, predict_request("echo", None, None, v.body())).await,
            Call::Any {
                service,
                content_type,
                content_length,
                body,
            } => {
                let service = if *service == "mlp" && !onnx {
                    "echo"
                } else {
                    service
                };
                call(
                    router,
                    predict_request(
                        service,
                        content_type.as_deref(),
                        content_length.as_deref(),
                        body.clone(),
                    ),
                )
                .await
            }
        }
    }))
    .await;
    for (i, (c, answer)) in calls.iter().zip(answers).enumerate() {
        let answer = answer?;
        let service = match c {
            Call::Valid(_) if onnx => "mlp (valid)",
            Call::Valid(_) => "echo (valid)",
            Call::Any { service, .. } if onnx || *service == "echo" => service,
            Call::Any { .. } => "echo",
        };
        stats.count(service, &answer);
        check_answer(&format!("call {i}"), &answer)?;
        match c {
            Call::Valid(v) if onnx => v.check(&answer)?,
            Call::Valid(v) => prop_assert_eq!(&answer.body, &v.body()),
            Call::Any {
                service,
                body,
                content_length,
                ..
            } => {
                if *service == "echo" && content_length.is_none() {
                    prop_assert_eq!(answer.status, 200);
                    prop_assert_eq!(&answer.body, body);
                }
            }
        }
    }
    check_memory()
}

#[test]
fn predict_bodies_should_get_an_answer_or_a_4xx_never_a_5xx() {
    let runtime = runtime();
    let mut specs = vec![json!({
        "metadata": {"name": "echo", "instance": 1},
        "processor": "echo", "model_path": ".", "token": TOKEN,
    })];
    #[cfg(feature = "onnx")]
    let onnx = match eas_runtime::onnx::runtime() {
        Ok(_) => true,
        Err(e) => {
            require::skip(
                "predict_bodies_should_get_an_answer_or_a_4xx_never_a_5xx (the onnx part)",
                &format!("no ONNX Runtime: {e}"),
            );
            false
        }
    };
    #[cfg(not(feature = "onnx"))]
    let onnx = false;
    if onnx {
        specs.push(json!({
            "metadata": {"name": "mlp", "instance": 1,
                         "rpc": {"batching": true, "max_batch_size": 8, "max_batch_timeout": 5}},
            "processor": "onnx", "model_path": "examples/models/mlp.onnx", "token": TOKEN,
        }));
    }
    let router = runtime.block_on(edge(specs));
    const SERVICES: &[&str] = &["mlp", "mlp", "mlp", "echo"];
    let stats = Stats::default();
    run(
        96,
        prop::collection::vec(predict_call(SERVICES), 1..7),
        |calls| runtime.block_on(predict_case(&router, onnx, &calls, &stats)),
    );
    stats.print();
    // The generators reach both outcomes of the model.
    if onnx {
        assert!(
            stats.report("mlp", 200..300) > 0,
            "no generated body was answered"
        );
        assert!(
            stats.report("mlp", 400..500) > 0,
            "no generated body was refused"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The queue protocol.

/// A query key, as text.
fn query_key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "_index_", "_length_", "_timeout_", "_indexes_", "_trunc_", "_watch_", "_raw_",
            "_auto_delete_", "_attrs_", "_search_", "_window_", "_index_only_",
            "_auto_commit_", "requestId",
        ])
        .prop_map(str::to_owned),
        2 => prop::sample::select(vec!["tag", "k", "_bogus_", "", "_", "__", "___", "_x"])
            .prop_map(str::to_owned),
        1 => "\\PC{0,6}",
    ]
}

/// A query value: numbers of every size and sign, flags, lists, durations, text.
fn query_value(key: &str) -> BoxedStrategy<String> {
    let numbers = prop_oneof![
        (0..20_u64).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "0",
            "1.5",
            "1e3",
            " 3 ",
            "+3",
            "0x10",
            "NaN",
            "",
            "١٢",
        ])
        .prop_map(str::to_owned),
    ];
    if key == "_timeout_" {
        // Small enough to wait out, or over the limit (refused), or not a duration.
        return prop::sample::select(vec![
            "0",
            "0.01",
            "20ms",
            "0.02s",
            "1h",
            "601",
            "11m",
            "700s",
            "-1",
            "abc",
            "NaN",
            "inf",
            "1e3",
            "",
            " 5ms ",
            "..",
            "0x10",
            "1.5.5",
            "5 s",
            "99999999999999999999",
        ])
        .prop_map(str::to_owned)
        .boxed();
    }
    prop_oneof![
        4 => numbers,
        2 => prop::sample::select(vec!["true", "false", "TRUE", "1", "0", "yes", ""])
            .prop_map(str::to_owned),
        2 => prop::collection::vec(any::<u32>().prop_map(|n| (n % 50).to_string()), 0..6)
            .prop_map(|v| v.join(",")),
        1 => (1..12_000_usize).prop_map(|n| vec!["1"; n].join(",")),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

fn query_pair() -> impl Strategy<Value = (String, String)> {
    query_key().prop_flat_map(|key| {
        let value = query_value(&key);
        (Just(key), value)
    })
}

/// Percent-encodes everything but unreserved characters; with `raw`, some bytes pass as they
/// are (so the query may hold `%zz`, `%ff`, `+` or a stray `=`).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct QueueCall {
    method: Method,
    path: &'static str,
    query: Vec<(String, String)>,
    /// Raw text appended to the query.
    raw: Option<&'static str>,
    body: Vec<u8>,
    authorization: Option<&'static str>,
    upgrade: bool,
}

impl QueueCall {
    fn request(&self) -> Option<Request<Body>> {
        let mut query: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if let Some(raw) = self.raw {
            query.push(raw.to_owned());
        }
        let uri = format!("/api/predict/{}?{}", self.path, query.join("&"));
        let mut request = Request::builder().method(self.method.clone()).uri(uri);
        if let Some(auth) = self.authorization {
            request = request.header("authorization", auth);
        }
        if self.upgrade {
            request = request
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        }
        request.body(Body::from(self.body.clone())).ok()
    }
}

fn queue_call() -> impl Strategy<Value = QueueCall> {
    (
        prop_oneof![
            3 => Just(Method::GET),
            3 => Just(Method::POST),
            2 => Just(Method::PUT),
            2 => Just(Method::DELETE),
            1 => Just(Method::PATCH),
            1 => Just(Method::HEAD),
            1 => Just(Method::OPTIONS),
        ],
        prop_oneof![
            6 => Just("aq"),
            3 => Just("aq/sink"),
            1 => prop::sample::select(vec!["aq/other", "aq/sink/x", "aq//sink", "aq/"]),
        ],
        prop::collection::vec(query_pair(), 0..5),
        prop::option::weighted(
            0.15,
            prop::sample::select(vec![
                "%zz",
                "%ff%fe=1",
                "_index_=%ff",
                "a=%",
                "+",
                "&&",
                "==",
                "_index_",
                "=1",
                "_indexes_=1,,2",
                "tag=%E2%82%AC",
            ]),
        ),
        prop::collection::vec(any::<u8>(), 0..64),
        prop_oneof![
            10 => Just(Some(TOKEN)),
            1 => Just(None),
            1 => Just(Some("wrong")),
        ],
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(method, path, query, raw, body, authorization, upgrade)| QueueCall {
                method,
                path,
                query,
                raw,
                body,
                authorization,
                upgrade,
            },
        )
}

#[test]
fn queue_calls_should_get_an_answer_or_a_4xx_never_a_5xx() {
    let runtime = runtime();
    let router = runtime.block_on(edge(vec![json!({
        "metadata": {"name": "aq", "instance": 1, "type": "Async",
                     "rpc": {"max_queue_size": 50}},
        "processor": "echo", "model_path": ".", "token": TOKEN,
    })]));
    let stats = Stats::default();
    run(256, prop::collection::vec(queue_call(), 1..6), |calls| {
        runtime.block_on(async {
            for (i, c) in calls.iter().enumerate() {
                let Some(request) = c.request() else {
                    continue;
                };
                let answer = call(&router, request).await?;
                stats.count(c.method.as_str(), &answer);
                check_answer(&format!("call {i}"), &answer)?;
            }
            check_memory()
        })
    });
    stats.print();
    // The generators reach both outcomes of every call.
    for method in ["GET", "POST", "PUT", "DELETE"] {
        assert!(
            stats.report(method, 200..300) > 0,
            "no {method} was answered"
        );
        assert!(
            stats.report(method, 400..500) > 0,
            "no {method} was refused"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The HMAC header parser.

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// The Date window of the authenticator under test.
const SKEW: Duration = Duration::from_secs(3600);

/// The EAS signature, written here from the protocol (not with the library's `sign`).
fn signature(
    token: &str,
    method: &str,
    md5: &str,
    content_type: &str,
    date: &str,
    path: &str,
) -> String {
    let message = format!("{method}\n{md5}\n{content_type}\n{date}\n{path}");
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("any key");
    mac.update(message.trim().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn hex_md5(body: &[u8]) -> String {
    md5::Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a request should pass: it carries the token, or a correct signature over its
/// signed headers (each of them text when present) with a body whose MD5 is the one it claims
/// and a Date in the window.
fn oracle(token: &str, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(authorization) = header("authorization")
        .map(str::trim)
        .filter(|a| !a.is_empty())
    else {
        return false;
    };
    let Some(signed) = authorization.strip_prefix("EAS ") else {
        return authorization == token;
    };
    // A signed header that is there but is not text cannot be what was signed.
    let unreadable = |name: &str| headers.get(name).is_some() && header(name).is_none();
    if ["content-md5", "content-type", "date"]
        .into_iter()
        .any(unreadable)
    {
        return false;
    }
    let (Some(md5), Some(date)) = (header("content-md5"), header("date")) else {
        return false;
    };
    let (md5, date) = (md5.trim(), date.trim());
    let Ok(sent) = httpdate::parse_http_date(date) else {
        return false;
    };
    let now = SystemTime::now();
    let skew = sent.duration_since(now).unwrap_or_else(|e| e.duration());
    if skew > SKEW {
        return false;
    }
    let content_type = header("content-type").unwrap_or(DEFAULT_CONTENT_TYPE);
    signed.trim() == signature(token, method.as_str(), md5, content_type, date, path)
        && md5.eq_ignore_ascii_case(&hex_md5(body))
}

/// How the generated `Authorization` is made.
#[derive(Debug, Clone)]
enum AuthForm {
    None,
    Token {
        pad: (&'static str, &'static str),
    },
    Signed,
    /// A correct signature with one character replaced.
    NearMiss(Index, char),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Md5Form {
    None,
    Right { upper: bool, pad: &'static str },
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
enum DateForm {
    None,
    /// Now, plus or minus seconds (kept away from the window's edge).
    Offset(i64),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Signed {
    token: String,
    method: Method,
    path: String,
    body: Vec<u8>,
    authorization: AuthForm,
    md5: Md5Form,
    date: DateForm,
    content_type: Option<Vec<u8>>,
    /// Sign a different body, path or method than the one sent.
    tamper: Option<u8>,
}

/// Header bytes: visible ASCII, tabs, spaces and obs-text.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[ -~]{0,40}".prop_map(String::into_bytes),
        1 => prop::collection::vec(
            prop_oneof![0x20_u8..0x7f, Just(b'\t'), 0x80_u8..=0xff],
            0..40,
        ),
    ]
}

fn signed_request() -> impl Strategy<Value = Signed> {
    let authorization = prop_oneof![
        1 => Just(AuthForm::None),
        2 => prop::sample::select(vec![("", ""), (" ", ""), ("", "\t"), ("  ", "  ")])
            .prop_map(|pad| AuthForm::Token { pad }),
        4 => Just(AuthForm::Signed),
        2 => (any::<Index>(), prop::char::range('+', 'z'))
            .prop_map(|(i, c)| AuthForm::NearMiss(i, c)),
        2 => prop_oneof![
            header_bytes(),
            header_bytes().prop_map(|b| [b"EAS ".as_slice(), &b].concat()),
        ]
        .prop_map(AuthForm::Raw),
    ];
    let md5 = prop_oneof![
        1 => Just(Md5Form::None),
        4 => (any::<bool>(), prop::sample::select(vec!["", " ", "\t"]))
            .prop_map(|(upper, pad)| Md5Form::Right { upper, pad }),
        1 => header_bytes().prop_map(Md5Form::Raw),
    ];
    let date = prop_oneof![
        1 => Just(DateForm::None),
        4 => prop_oneof![
            -3000_i64..3000,
            prop::sample::select(vec![-4000_i64, 4000, -86_400 * 3, 86_400 * 3, -(1 << 30), 1 << 33]),
        ]
        .prop_map(DateForm::Offset),
        1 => prop_oneof![
            header_bytes(),
            prop::sample::select(vec![
                "Mon, 01 Jan 1900 00:00:00 GMT",
                "Fri, 31 Dec 9999 23:59:59 GMT",
                "Thu, 01 Jan 1970 00:00:00 GMT",
                "Sunday, 06-Nov-94 08:49:37 GMT",
                "Sun Nov  6 08:49:37 1994",
                "Sun, 06 Nov 1994 08:49:37 GMT",
                "Sun, 31 Feb 2025 08:49:37 GMT",
                "Sun, 06 Nov 1994 24:60:61 GMT",
            ])
            .prop_map(|d| d.as_bytes().to_vec()),
        ]
        .prop_map(DateForm::Raw),
    ];
    (
        prop_oneof![
            3 => "[A-Za-z0-9+/=]{1,40}",
            1 => "[ -~]{0,20}",
            1 => Just("EAS token".to_owned()),
        ],
        prop::sample::select(vec![Method::POST, Method::GET, Method::PUT, Method::DELETE]),
        "/api/predict/[a-z/._-]{0,20}",
        prop::collection::vec(any::<u8>(), 0..64),
        authorization,
        md5,
        date,
        prop::option::of(header_bytes()),
        prop::option::weighted(0.2, 0_u8..3),
    )
        .prop_map(
            |(token, method, path, body, authorization, md5, date, content_type, tamper)| Signed {
                token,
                method,
                path,
                body,
                authorization,
                md5,
                date,
                content_type,
                tamper,
            },
        )
}

impl Signed {
    /// The headers this request is sent with.
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, bytes: &[u8]| {
            if let Ok(value) = HeaderValue::from_bytes(bytes) {
                headers.insert(name, value);
            }
        };
        if let Some(ct) = &self.content_type {
            put("content-type", ct);
        }
        let md5 = match &self.md5 {
            Md5Form::None => None,
            Md5Form::Right { upper, pad } => {
                let md5 = hex_md5(&self.body);
                let md5 = if *upper { md5.to_uppercase() } else { md5 };
                Some(format!("{pad}{md5}{pad}").into_bytes())
            }
            Md5Form::Raw(bytes) => Some(bytes.clone()),
        };
        if let Some(md5) = &md5 {
            put("content-md5", md5);
        }
        let date = match &self.date {
            DateForm::None => None,
            DateForm::Offset(seconds) => {
                let now = SystemTime::now();
                let magnitude = Duration::from_secs(seconds.unsigned_abs());
                let at = if *seconds >= 0 {
                    now.checked_add(magnitude)
                } else {
                    now.checked_sub(magnitude)
                };
                at.map(|at| httpdate::fmt_http_date(at).into_bytes())
            }
            DateForm::Raw(bytes) => Some(bytes.clone()),
        };
        if let Some(date) = &date {
            put("date", date);
        }
        // What the request is signed over (maybe not what is sent).
        let text = |v: &Option<Vec<u8>>| {
            v.as_deref()
                .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        };
        let signed_md5 = match self.tamper {
            Some(0) => hex_md5(b"another body"),
            _ => text(&md5).unwrap_or_default(),
        };
        let signed_path = match self.tamper {
            Some(1) => format!("{}/x", self.path),
            _ => self.path.clone(),
        };
        let signed_method = match self.tamper {
            Some(2) => "PATCH",
            _ => self.method.as_str(),
        };
        let signed_ct = self
            .content_type
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or(DEFAULT_CONTENT_TYPE);
        let sig = signature(
            &self.token,
            signed_method,
            &signed_md5,
            signed_ct,
            &text(&date).unwrap_or_default(),
            &signed_path,
        );
        let authorization = match &self.authorization {
            AuthForm::None => None,
            AuthForm::Token {
                pad: (before, after),
            } => Some(format!("{before}{}{after}", self.token).into_bytes()),
            AuthForm::Signed => Some(format!("EAS {sig}").into_bytes()),
            AuthForm::NearMiss(i, c) => {
                let mut chars: Vec<char> = sig.chars().collect();
                let at = i.index(chars.len());
                chars[at] = *c;
                Some(format!("EAS {}", chars.into_iter().collect::<String>()).into_bytes())
            }
            AuthForm::Raw(bytes) => Some(bytes.clone()),
        };
        if let Some(authorization) = &authorization {
            put("authorization", authorization);
        }
        headers
    }
}

#[test]
fn only_the_token_or_a_correct_signature_should_pass() {
    let passed = std::cell::Cell::new(0_u32);
    run(2048, signed_request(), |request| {
        let auth = Authenticator::new(request.token.clone()).with_max_date_skew(SKEW);
        let headers = request.headers();
        let want = oracle(
            &request.token,
            &request.method,
            &request.path,
            &headers,
            &request.body,
        );
        let got = auth.check(&request.method, &request.path, &headers, &request.body);
        let staged = auth
            .check_headers(&request.method, &request.path, &headers)
            .and_then(|check| check.verify(&request.body));
        prop_assert_eq!(
            got.is_ok(),
            want,
            "check says {:?}; headers {:?}",
            got,
            headers
        );
        prop_assert_eq!(
            got.is_ok(),
            staged.is_ok(),
            "check and check_headers disagree"
        );
        if want {
            passed.set(passed.get() + 1);
        }
        Ok(())
    });
    // The generator reaches both sides of the property.
    assert!(passed.get() > 0, "no generated request passed");
}
