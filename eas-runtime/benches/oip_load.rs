//! The Open Inference Protocol load bench: the ONNX MLP (`bench_mlp.onnx`, 256 -> 1024 -> 1024
//! -> 10, FP32, written by `onnx::testing::cached_models`) behind the eas server through four
//! protocols, against KServe's own Python model server (`kserve.ModelServer` 0.21 with an
//! onnxruntime model class implementing the V2 `predict`, `benches/support/kserve_onnx.py`) on
//! the same model and the same load, in one run; one row per request. Goal: eas >= 3x KServe's
//! rows/s.
//!
//! | protocol | body | eas | KServe |
//! |---|---|---|---|
//! | EAS protobuf | `DataProto`, `POST /api/predict/mlp` | yes | (none: compared to KServe's fastest) |
//! | OIP REST JSON | `{"inputs": [{"data": [...]}]}`, `POST /v2/models/mlp/infer` | yes | yes |
//! | OIP REST binary | binary tensor data extension, in and out | yes | yes |
//! | OIP gRPC | `ModelInfer`, `raw_input_contents` | yes | yes (its gRPC port) |
//!
//! The eas server runs in this process (its own tokio runtime, threads `srv-io`): one `onnx`
//! service with `enable_grpc`, `cpu: 2` and dynamic batching. KServe runs as a child process
//! (one uvicorn worker; its onnxruntime intra-op threads, 1 or 2, are tried first and the faster
//! kept).
//!
//! The load generator is in this file (copied from `benches/http_load.rs`): one tokio task per
//! connection (threads `load-gen`), each sending its next request as soon as the previous
//! answer is in; HTTP on hyper 1 (`client::conn::http1`, keep-alive), gRPC on tonic (one HTTP/2
//! channel per connection, the client generated from the server's own proto,
//! `src/http/grpc/inference.rs`, included with `#[path]`). Each measurement opens its
//! connections, warms up, then counts the answers completed in a fixed window; at each
//! concurrency the targets take turns window by window, and the figures are the medians over
//! the windows (latency percentiles over every answer of the measured windows). The CPU the
//! client, the server and the rest of the machine used is read from `/proc` and printed: the
//! machine is shared, so its load average is printed too.
//!
//! Run (about 3 minutes):
//! ```text
//! source scripts/test-env.sh && cargo bench -p eas-runtime --bench oip_load
//! ```
//! Settings (env): `EAS_BENCH_SECS` (window, 2 s), `EAS_BENCH_WARMUP_SECS` (0.5 s),
//! `EAS_BENCH_ROUNDS` (windows per figure, 3), `EAS_BENCH_CONNECTIONS` (a list, `16,64`),
//! `EAS_BENCH_CLIENT_THREADS` and `EAS_BENCH_SERVER_THREADS` (tokio threads, 2 each). Without
//! `EAS_PYTHON` (which writes the model) or ONNX Runtime the bench prints `SKIPPED`; without
//! `EAS_OIP_PYTHON` (a Python with kserve and onnxruntime, `.ci/requirements-oip.txt`) only
//! KServe is skipped.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

/// The protocol's messages and client, as the server's are generated (scripts/gen-proto).
#[path = "../src/http/grpc/inference.rs"]
#[allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::nursery
)]
mod inference;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use eas_core::spec::ServiceSpec;
use eas_runtime::onnx::{runtime, testing};
use eas_runtime::platform::{Platform, RunningPlatform};
use eas_runtime::proto::{DataProto, DataType, Message, TensorProto};
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName};
use hyper_util::rt::TokioIo;
use inference::ModelInferRequest;
use inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use inference::model_infer_request::InferInputTensor;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tonic::metadata::{Ascii, MetadataValue};

const TOKEN: &str = "bench-token";
/// The model's name on both servers (the eas service, the KServe model).
const MODEL: &str = "mlp";
const FEATURES: usize = 256;
const OUTPUTS: usize = 10;
/// The intra-op threads of the eas session (`cpu: 2`).
const ORT_THREADS: usize = 2;
/// eas batching: (max_batch_size, max_batch_timeout ms, worker_threads), http_load's third
/// configuration (the one its child-process part measures).
const EAS_BATCHING: (u32, u64, u32) = (32, 2, 2);
/// KServe's onnxruntime intra-op threads tried (one uvicorn worker each).
const KSERVE_THREADS: [u32; 2] = [1, 2];
/// The OIP binary extension's header: the length of the JSON part of a body.
const HEADER_LENGTH: &str = "inference-header-content-length";
const GENERATOR: &str = "Rust client, one tokio task per connection, next request as soon as \
                         the answer is in: hyper 1 (client::conn::http1, keep-alive) for HTTP, \
                         tonic (one HTTP/2 channel per connection) for gRPC";

fn main() {
    let bench = Bench::new(Settings::from_env());
    bench.header();
    let summary = bench.run();
    println!();
    println!("== summary ({}) ==", bench.settings.describe());
    println!(
        "machine load average now: {} (shared, busy machine: the figures move with it)",
        load_average()
    );
    for line in summary {
        println!("{line}");
    }
}

/// The run's settings, from the environment.
struct Settings {
    window: Duration,
    warmup: Duration,
    rounds: usize,
    connections: Vec<usize>,
    client_threads: usize,
    server_threads: usize,
}

impl Settings {
    fn from_env() -> Self {
        let secs = |name: &str, default: f64| {
            Duration::from_secs_f64(env_parse(name).unwrap_or(default).max(0.05))
        };
        let mut connections: Vec<usize> = std::env::var("EAS_BENCH_CONNECTIONS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .filter(|&c| c > 0)
            .collect();
        if connections.is_empty() {
            connections = vec![16, 64];
        }
        Self {
            window: secs("EAS_BENCH_SECS", 2.0),
            warmup: secs("EAS_BENCH_WARMUP_SECS", 0.5),
            rounds: env_parse::<usize>("EAS_BENCH_ROUNDS").unwrap_or(3).max(1),
            connections,
            client_threads: env_parse::<usize>("EAS_BENCH_CLIENT_THREADS")
                .unwrap_or(2)
                .max(1),
            server_threads: env_parse::<usize>("EAS_BENCH_SERVER_THREADS")
                .unwrap_or(2)
                .max(1),
        }
    }

    fn describe(&self) -> String {
        let connections: Vec<String> = self.connections.iter().map(usize::to_string).collect();
        format!(
            "{} connections, medians of {} windows of {:.1} s after {:.1} s warm-up; {} client + \
             {} server tokio threads",
            connections.join(" and "),
            self.rounds,
            self.window.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.client_threads,
            self.server_threads
        )
    }
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The protocols measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Eas,
    RestJson,
    RestBinary,
    Grpc,
}

impl Protocol {
    const OIP: [Self; 3] = [Self::RestJson, Self::RestBinary, Self::Grpc];

    const fn label(self) -> &'static str {
        match self {
            Self::Eas => "EAS protobuf",
            Self::RestJson => "OIP REST JSON",
            Self::RestBinary => "OIP REST binary",
            Self::Grpc => "OIP gRPC",
        }
    }
}

struct Bench {
    settings: Settings,
    servers: Runtime,
    clients: Runtime,
}

impl Bench {
    fn new(settings: Settings) -> Self {
        let runtime = |threads: usize, name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(name)
                .enable_all()
                .build()
                .expect("a tokio runtime can be built")
        };
        Self {
            servers: runtime(settings.server_threads, "srv-io"),
            clients: runtime(settings.client_threads, "load-gen"),
            settings,
        }
    }

    fn header(&self) {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        println!("oip_load: {}", self.settings.describe());
        println!(
            "machine: {cores} cores available, {cpu}; load average {} (a shared machine, busy \
             with other work: the figures move with it)",
            load_average()
        );
        println!("generator: {GENERATOR}");
        println!(
            "note: the generator runs on the same machine and competes with the servers for the \
             CPU; each figure says how many cores the client (load-gen threads), the server and \
             everything else on the machine used during the measured windows."
        );
    }

    /// The whole run: the servers, their answers checked, then each concurrency.
    fn run(&self) -> Vec<String> {
        let Some(python) = testing::python_from_env() else {
            let why = "EAS_PYTHON is not set (the Python that writes the model)";
            println!("SKIPPED: oip_load: {why}");
            return vec![format!("oip_load: SKIPPED ({why})")];
        };
        let runtime = match runtime() {
            Ok(runtime) => runtime,
            Err(e) => {
                println!("SKIPPED: oip_load: {e}");
                return vec![format!("oip_load: SKIPPED ({e})")];
            }
        };
        let dir = testing::cached_models(&python, Path::new(env!("CARGO_TARGET_TMPDIR")), true)
            .expect("the bench model is written");
        let model = dir.join("bench_mlp.onnx");
        println!(
            "model: {} (256-1024-1024-10 FP32, one row per request); ONNX Runtime: {}",
            model.display(),
            runtime.library()
        );
        let row = inputs(1, 3);

        let eas = self.servers.block_on(start_eas(&dir));
        let (size, timeout, workers) = EAS_BATCHING;
        println!(
            "eas: one `onnx` service, cpu {ORT_THREADS} ({ORT_THREADS} intra-op threads), \
             batching max_batch_size {size}, max_batch_timeout {timeout} ms, worker_threads \
             {workers}, enable_grpc; in this process"
        );
        let all = [
            Protocol::Eas,
            Protocol::RestJson,
            Protocol::RestBinary,
            Protocol::Grpc,
        ];
        let addr = eas.local_addr();
        let eas_targets: Vec<Target> = all
            .iter()
            .map(|&p| Target::new("eas", p, addr, addr, Some(TOKEN), &row).in_process())
            .collect();
        // The EAS protocol's answer is the reference the others must match.
        let (expected, len) = self.clients.block_on(answer_once(&eas_targets[0]));
        let mut eas_targets = self.checked(eas_targets, &expected);
        eas_targets[0].answer_len = Some(len);

        let kserve = self.kserve(&model, &row, &expected);

        let mut summary = Vec::new();
        for &connections in &self.settings.connections {
            println!();
            println!(
                "== {connections} connections (load average {}) ==",
                load_average()
            );
            let mut targets: Vec<&Target> = eas_targets.iter().collect();
            if let Some((theirs, _)) = &kserve {
                targets.extend(theirs);
            }
            let figures = self.alternate(&targets, connections);
            for figure in &figures {
                println!("{}", figure.line("rows/s"));
            }
            summary.extend(compare(connections, &figures, kserve.is_some()));
        }
        self.servers.block_on(eas.shutdown());
        drop(kserve);
        summary
    }

    /// `targets` after checking that each answers `expected`, with the length of their answers
    /// set where it cannot change (binary bodies).
    fn checked(&self, targets: Vec<Target>, expected: &[f32]) -> Vec<Target> {
        targets
            .into_iter()
            .map(|mut target| {
                let (y, len) = self.clients.block_on(answer_once(&target));
                check_close(&target.name, &y, expected);
                if target.protocol == Protocol::RestBinary {
                    target.answer_len = Some(len);
                }
                target
            })
            .collect()
    }

    /// KServe's targets (and its running server) at its faster onnxruntime thread count, after
    /// checking its answers; `None` (having said why) without `EAS_OIP_PYTHON`.
    fn kserve(
        &self,
        model: &Path,
        row: &[f32],
        expected: &[f32],
    ) -> Option<(Vec<Target>, PyServer)> {
        let Some(python) = std::env::var_os("EAS_OIP_PYTHON").filter(|p| !p.is_empty()) else {
            println!(
                "SKIPPED: KServe baseline: EAS_OIP_PYTHON is not set (`source \
                 scripts/test-env.sh` makes the venv with kserve and onnxruntime)"
            );
            return None;
        };
        let connections = self
            .settings
            .connections
            .iter()
            .copied()
            .max()
            .unwrap_or(64);
        println!(
            "KServe ModelServer (kserve 0.21, one uvicorn worker, V2 protocol, onnxruntime, no \
             batching); one OIP REST JSON window at {connections} connections per onnxruntime \
             thread count:"
        );
        let mut best: Option<(Vec<Target>, PyServer, f64)> = None;
        for threads in KSERVE_THREADS {
            let server = match PyServer::start(&python, model, threads) {
                Ok(server) => server,
                Err(why) => {
                    println!("SKIPPED: KServe baseline: {why}");
                    return None;
                }
            };
            let targets: Vec<Target> = Protocol::OIP
                .iter()
                .map(|&p| {
                    Target::new("KServe", p, server.http, server.grpc, None, row)
                        .with_pids(server.pids())
                })
                .collect();
            let targets = self.checked(targets, expected);
            let figure = Figure::of(&targets[0], vec![self.window(&targets[0], connections)]);
            println!(
                "  {threads} ort thread(s): {}",
                figure.line("rows/s").trim()
            );
            if best.as_ref().is_none_or(|b| figure.rate > b.2) {
                best = Some((targets, server, figure.rate));
            }
        }
        best.map(|(targets, server, _)| (targets, server))
    }

    /// The figures of `targets`, their windows taking turns for `rounds` rounds.
    fn alternate(&self, targets: &[&Target], connections: usize) -> Vec<Figure> {
        let mut windows: Vec<Vec<Window>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..self.settings.rounds {
            for (target, windows) in targets.iter().zip(&mut windows) {
                windows.push(self.window(target, connections));
            }
        }
        targets
            .iter()
            .zip(windows)
            .map(|(target, windows)| Figure::of(target, windows))
            .collect()
    }

    /// One measurement: fresh connections, warm-up, then the measured window.
    fn window(&self, target: &Target, connections: usize) -> Window {
        let target = Arc::new(target.clone());
        let settings = &self.settings;
        self.clients.block_on(async {
            let start = Instant::now();
            let from = start + settings.warmup;
            let until = from + settings.window;
            let tasks: Vec<_> = (0..connections)
                .map(|_| {
                    let target = Arc::clone(&target);
                    tokio::spawn(async move {
                        match &target.wire {
                            Wire::Http { .. } => http_connection(&target, from, until).await,
                            Wire::Grpc { .. } => grpc_connection(&target, from, until).await,
                        }
                    })
                })
                .collect();
            tokio::time::sleep_until(from.into()).await;
            let before = CpuSnapshot::take(&target.pids);
            tokio::time::sleep_until(until.into()).await;
            let after = CpuSnapshot::take(&target.pids);
            let mut window = Window {
                rate: 0.0,
                latencies_us: Vec::new(),
                errors: 0,
                first_error: None,
                cpu: after.since(&before),
            };
            let mut answers = 0u64;
            for task in tasks {
                let done = task.await.expect("a connection task does not panic");
                answers += done.answers;
                window.latencies_us.extend(done.latencies_us);
                window.errors += done.errors;
                if window.first_error.is_none() {
                    window.first_error = done.first_error;
                }
            }
            window.rate = answers as f64 / settings.window.as_secs_f64();
            window
        })
    }
}

/// The summary lines of one concurrency: eas vs KServe per OIP protocol, and the EAS protocol
/// vs KServe's fastest.
fn compare(connections: usize, figures: &[Figure], with_kserve: bool) -> Vec<String> {
    let of = |server: &str, protocol: Protocol| {
        figures
            .iter()
            .find(|f| f.server == server && f.protocol == protocol)
    };
    let describe =
        |f: &Figure| format!("{:.0} rows/s (p50 {} p99 {})", f.rate, ms(f.p50), ms(f.p99));
    let verdict = |ratio: f64| {
        if ratio >= 3.0 {
            "goal >= 3x: met"
        } else {
            "goal >= 3x: NOT met"
        }
    };
    let fastest_kserve = figures
        .iter()
        .filter(|f| f.server == "KServe")
        .max_by(|a, b| a.rate.total_cmp(&b.rate));
    let mut lines = Vec::new();
    for protocol in [
        Protocol::Eas,
        Protocol::RestJson,
        Protocol::RestBinary,
        Protocol::Grpc,
    ] {
        let Some(ours) = of("eas", protocol) else {
            continue;
        };
        let theirs = if protocol == Protocol::Eas {
            fastest_kserve
        } else {
            of("KServe", protocol)
        };
        let errors = if ours.errors + theirs.map_or(0, |t| t.errors) > 0 {
            format!(
                "; ERRORS: eas {}, KServe {}",
                ours.errors,
                theirs.map_or(0, |t| t.errors)
            )
        } else {
            String::new()
        };
        let line = match theirs {
            Some(theirs) if with_kserve => {
                let ratio = ours.rate / theirs.rate.max(1e-9);
                let against = if protocol == Protocol::Eas {
                    format!("KServe's fastest ({})", theirs.protocol.label())
                } else {
                    "KServe".to_owned()
                };
                format!(
                    "{connections:>3} conns, {:<15}: eas {} vs {against} {} = {ratio:.2}x ({}){errors}",
                    protocol.label(),
                    describe(ours),
                    describe(theirs),
                    verdict(ratio)
                )
            }
            _ => format!(
                "{connections:>3} conns, {:<15}: eas {}; KServe SKIPPED{errors}",
                protocol.label(),
                describe(ours)
            ),
        };
        lines.push(line);
    }
    lines
}

/// How a target's requests go on the wire.
#[derive(Clone)]
enum Wire {
    Http {
        path: String,
        authorization: Option<String>,
        content_type: &'static str,
        /// The `Inference-Header-Content-Length` of a binary OIP body.
        header_length: Option<usize>,
        body: Bytes,
    },
    Grpc {
        authorization: Option<MetadataValue<Ascii>>,
        request: ModelInferRequest,
    },
}

/// Where and what a load sends.
#[derive(Clone)]
struct Target {
    /// `eas` or `KServe`.
    server: &'static str,
    protocol: Protocol,
    name: String,
    addr: SocketAddr,
    wire: Wire,
    /// The length every answer must have.
    answer_len: Option<usize>,
    /// Whether the server runs in this process (its threads are shown).
    in_process: bool,
    /// The server's processes, whose CPU counts as the server's.
    pids: Vec<u32>,
}

impl Target {
    /// `protocol` to `server`'s `http` or `grpc` address, one `row` per request.
    fn new(
        server: &'static str,
        protocol: Protocol,
        http: SocketAddr,
        grpc: SocketAddr,
        token: Option<&str>,
        row: &[f32],
    ) -> Self {
        let raw: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        let infer = format!("/v2/models/{MODEL}/infer");
        let http_wire = |path: String, content_type, header_length, body: Vec<u8>| Wire::Http {
            path,
            authorization: token.map(str::to_owned),
            content_type,
            header_length,
            body: Bytes::from(body),
        };
        let wire = match protocol {
            Protocol::Eas => http_wire(
                format!("/api/predict/{MODEL}"),
                "application/octet-stream",
                None,
                request_proto(row),
            ),
            Protocol::RestJson => {
                let body = json!({"id": "1", "inputs": [{
                    "name": "x", "shape": [1, FEATURES], "datatype": "FP32", "data": row,
                }]});
                http_wire(
                    infer,
                    "application/json",
                    None,
                    body.to_string().into_bytes(),
                )
            }
            Protocol::RestBinary => {
                let header = json!({
                    "id": "1",
                    "inputs": [{"name": "x", "shape": [1, FEATURES], "datatype": "FP32",
                                "parameters": {"binary_data_size": raw.len()}}],
                    "parameters": {"binary_data_output": true},
                })
                .to_string()
                .into_bytes();
                let length = header.len();
                let body = [header, raw].concat();
                http_wire(infer, "application/octet-stream", Some(length), body)
            }
            Protocol::Grpc => Wire::Grpc {
                authorization: token.map(|t| t.parse().expect("an ASCII token")),
                request: ModelInferRequest {
                    model_name: MODEL.to_owned(),
                    id: "1".to_owned(),
                    inputs: vec![InferInputTensor {
                        name: "x".to_owned(),
                        datatype: "FP32".to_owned(),
                        shape: vec![1, FEATURES as i64],
                        ..Default::default()
                    }],
                    raw_input_contents: vec![Bytes::from(raw)],
                    ..Default::default()
                },
            },
        };
        Self {
            server,
            protocol,
            name: format!("{server} {}", protocol.label()),
            addr: if protocol == Protocol::Grpc {
                grpc
            } else {
                http
            },
            wire,
            answer_len: None,
            in_process: false,
            pids: Vec::new(),
        }
    }

    fn in_process(mut self) -> Self {
        self.in_process = true;
        self
    }

    fn with_pids(mut self, pids: Vec<u32>) -> Self {
        self.pids = pids;
        self
    }

    /// The HTTP request (a target of the HTTP wire).
    fn request(&self) -> hyper::Request<Full<Bytes>> {
        let Wire::Http {
            path,
            authorization,
            content_type,
            header_length,
            body,
        } = &self.wire
        else {
            unreachable!("an HTTP request of a gRPC target");
        };
        let mut request = hyper::Request::post(path.as_str())
            .header(HOST, "127.0.0.1")
            .header(CONTENT_TYPE, *content_type);
        if let Some(token) = authorization {
            request = request.header(AUTHORIZATION, token.as_str());
        }
        if let Some(length) = header_length {
            request = request.header(HeaderName::from_static(HEADER_LENGTH), *length);
        }
        request
            .body(Full::new(body.clone()))
            .expect("the request is well-formed")
    }

    /// The gRPC request (a target of the gRPC wire).
    fn grpc_request(&self) -> tonic::Request<ModelInferRequest> {
        let Wire::Grpc {
            authorization,
            request,
        } = &self.wire
        else {
            unreachable!("a gRPC request of an HTTP target");
        };
        let mut request = tonic::Request::new(request.clone());
        if let Some(token) = authorization {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }
}

/// What one connection did during a window.
#[derive(Default)]
struct Connection {
    answers: u64,
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Connection {
    fn error(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    /// Counts an answer completed in `[from, until)`, or the error.
    fn record(
        &mut self,
        outcome: Result<(), String>,
        sent: Instant,
        from: Instant,
        until: Instant,
    ) {
        let finished = Instant::now();
        match outcome {
            Ok(()) if finished >= from && finished < until => {
                self.answers += 1;
                let us = finished.duration_since(sent).as_micros();
                self.latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(()) => {}
            Err(why) => self.error(why),
        }
    }
}

/// One keep-alive HTTP/1.1 connection sending request after request until `until`.
async fn http_connection(target: &Target, from: Instant, until: Instant) -> Connection {
    let mut done = Connection::default();
    let stream = match TcpStream::connect(target.addr).await {
        Ok(stream) => stream,
        Err(e) => {
            done.error(format!("connect to {}: {e}", target.addr));
            return done;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => {
            done.error(format!("handshake: {e}"));
            return done;
        }
    };
    tokio::spawn(conn);
    while Instant::now() < until {
        let sent = Instant::now();
        let outcome = async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(target.request())
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            match target.answer_len {
                Some(len) if body.len() != len => {
                    Err(format!("an answer of {} bytes, not {len}", body.len()))
                }
                _ => Ok(()),
            }
        }
        .await;
        let failed = outcome.is_err();
        done.record(outcome, sent, from, until);
        if failed && sender.is_closed() {
            break;
        }
    }
    done
}

/// One HTTP/2 channel sending `ModelInfer` call after call until `until`.
async fn grpc_connection(target: &Target, from: Instant, until: Instant) -> Connection {
    let mut done = Connection::default();
    let channel = match tonic::transport::Endpoint::from_shared(format!("http://{}", target.addr))
        .map(|e| e.tcp_nodelay(true))
    {
        Ok(endpoint) => endpoint.connect().await,
        Err(e) => {
            done.error(format!("endpoint: {e}"));
            return done;
        }
    };
    let mut client = match channel {
        Ok(channel) => GrpcInferenceServiceClient::new(channel),
        Err(e) => {
            done.error(format!("connect to {}: {e}", target.addr));
            return done;
        }
    };
    while Instant::now() < until {
        let sent = Instant::now();
        let outcome = client
            .model_infer(target.grpc_request())
            .await
            .map(drop)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()));
        done.record(outcome, sent, from, until);
    }
    done
}

/// One request on a fresh connection, its `y` and the length of its answer; panics (the bench
/// cannot go on) unless it succeeds.
async fn answer_once(target: &Target) -> (Vec<f32>, usize) {
    if let Wire::Grpc { .. } = target.wire {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", target.addr))
            .unwrap()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{}: connect: {e}", target.name));
        let answer = GrpcInferenceServiceClient::new(channel)
            .model_infer(target.grpc_request())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", target.name))
            .into_inner();
        let y = match (answer.raw_output_contents.first(), answer.outputs.first()) {
            (Some(raw), _) => f32s(raw),
            (None, Some(output)) => output
                .contents
                .as_ref()
                .map(|c| c.fp32_contents.clone())
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        return (y, answer.encoded_len());
    }
    let stream = TcpStream::connect(target.addr)
        .await
        .expect("the server accepts");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1 handshake");
    tokio::spawn(conn);
    let response = sender
        .send_request(target.request())
        .await
        .expect("an answer");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status.is_success(),
        "{}: {status}: {}",
        target.name,
        String::from_utf8_lossy(&body)
    );
    let y = match target.protocol {
        Protocol::Eas => decode_proto(&body),
        Protocol::RestJson => decode_json(&body),
        Protocol::RestBinary | Protocol::Grpc => decode_binary(&headers, &body),
    };
    (y, body.len())
}

/// The `y` of a `DataProto` answer.
fn decode_proto(body: &[u8]) -> Vec<f32> {
    let answer = DataProto::decode(body).expect("the answer is a DataProto");
    let y = answer
        .tensors
        .iter()
        .find(|t| t.name == "y")
        .expect("the answer has y");
    f32s(&y.raw_data)
}

/// The first output's `data` of an OIP JSON answer.
fn decode_json(body: &[u8]) -> Vec<f32> {
    let answer: Value = serde_json::from_slice(body).expect("a JSON answer");
    answer["outputs"][0]["data"]
        .as_array()
        .expect("the answer's first output has data")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

/// The first output's binary data of an OIP answer with the binary tensor data extension.
fn decode_binary(headers: &HeaderMap, body: &[u8]) -> Vec<f32> {
    let length: usize = headers
        .get(HEADER_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("a binary answer says its header length");
    let header: Value = serde_json::from_slice(&body[..length]).expect("a JSON header");
    let size = header["outputs"][0]["parameters"]["binary_data_size"]
        .as_u64()
        .expect("the first output is binary") as usize;
    f32s(&body[length..length + size])
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn check_close(name: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{name}: answer length");
    assert_eq!(got.len(), OUTPUTS, "{name}: answer length");
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g - e).abs() <= 1e-4 * e.abs().max(1.0),
            "{name}: {got:?} vs {expected:?}"
        );
    }
}

/// `batch` rows of inputs, different for each `seed`.
fn inputs(batch: usize, seed: usize) -> Vec<f32> {
    (0..batch * FEATURES)
        .map(|k| (((k + seed * 7919) % 97) as f32 / 97.0) - 0.5)
        .collect()
}

/// A `DataProto` with input `x` of one row.
fn request_proto(x: &[f32]) -> Vec<u8> {
    let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensor = TensorProto::new("x", vec![1, FEATURES as i64], DataType::Float, raw);
    DataProto {
        tensors: vec![tensor],
    }
    .encode_to_vec()
}

/// The eas server with one `onnx` service of the bench MLP that also takes gRPC.
async fn start_eas(dir: &Path) -> RunningPlatform {
    let (size, timeout, workers) = EAS_BATCHING;
    let spec = ServiceSpec::from_json_value(json!({
        "metadata": {
            "name": MODEL, "instance": 1, "cpu": ORT_THREADS, "enable_grpc": true,
            "rpc": {"batching": true, "max_batch_size": size, "max_batch_timeout": timeout,
                    "worker_threads": workers, "max_queue_size": 1024},
        },
        "processor": "onnx", "model_path": dir.to_string_lossy(),
        "model_entry": "bench_mlp.onnx", "token": TOKEN,
    }))
    .expect("the onnx spec is valid");
    let server = Platform::builder()
        .service(spec)
        .bind("127.0.0.1:0".parse().expect("an address"))
        .start()
        .await
        .expect("the eas server starts");
    assert!(
        server.wait_ready(Duration::from_secs(60)).await,
        "the onnx service becomes ready"
    );
    server
}

/// The KServe server process; stopped (SIGTERM, then SIGKILL) when dropped.
struct PyServer {
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
}

impl PyServer {
    fn start(python: &std::ffi::OsStr, model: &Path, threads: u32) -> Result<Self, String> {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/support/kserve_onnx.py");
        let port = || {
            StdListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| format!("no free port: {e}"))
        };
        let (http, grpc) = (port()?, port()?);
        let child = Command::new(python)
            .arg(&script)
            .arg(model)
            .arg(MODEL)
            .arg(http.to_string())
            .arg(grpc.to_string())
            .arg("--threads")
            .arg(threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.to_string_lossy()))?;
        let mut server = Self {
            child,
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            grpc: SocketAddr::from(([127, 0, 0, 1], grpc)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} (are kserve and onnxruntime installed there?)",
                    script.display()
                ));
            }
            if ready(server.http) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        server.stop();
        Err(format!("{} did not answer within 60 s", script.display()))
    }

    fn pids(&self) -> Vec<u32> {
        vec![self.child.id()]
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `GET /v2/health/ready` answers 200 (a blocking probe).
fn ready(addr: SocketAddr) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// A measured window.
struct Window {
    rate: f64,
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    cpu: CpuUse,
}

/// The medians over a target's windows.
struct Figure {
    server: &'static str,
    protocol: Protocol,
    name: String,
    rate: f64,
    /// Latency percentiles over every answer of the windows, in microseconds.
    p50: u32,
    p99: u32,
    errors: u64,
    first_error: Option<String>,
    cpu: CpuUse,
    windows: usize,
    /// Whether to show the server's threads (an eas server in this process).
    threads: bool,
}

impl Figure {
    fn of(target: &Target, windows: Vec<Window>) -> Self {
        let count = windows.len();
        let rate = median(windows.iter().map(|w| w.rate).collect());
        let mut groups = BTreeMap::new();
        for window in &windows {
            for (name, cores) in &window.cpu.groups {
                *groups.entry(name.clone()).or_insert(0.0) += cores / count as f64;
            }
        }
        let cpu = CpuUse {
            client: median(windows.iter().map(|w| w.cpu.client).collect()),
            server: median(windows.iter().map(|w| w.cpu.server).collect()),
            other: median(windows.iter().map(|w| w.cpu.other).collect()),
            groups,
        };
        let errors = windows.iter().map(|w| w.errors).sum();
        let first_error = windows.iter().find_map(|w| w.first_error.clone());
        let mut latencies: Vec<u32> = windows.into_iter().flat_map(|w| w.latencies_us).collect();
        latencies.sort_unstable();
        Self {
            server: target.server,
            protocol: target.protocol,
            name: target.name.clone(),
            rate,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            errors,
            first_error,
            cpu,
            windows: count,
            threads: target.in_process,
        }
    }

    /// Microseconds of server CPU per answer: steadier than rates on a shared machine.
    fn cpu_per_answer(&self) -> f64 {
        self.cpu.server * 1e6 / self.rate.max(1.0)
    }

    fn line(&self, unit: &str) -> String {
        let mut line = format!(
            "  {:<26} {:>7.0} {unit} (median of {}), p50 {} p99 {}; cores: client {:.2}, server \
             {:.2}, others {:.2}; server CPU {:.0} us per answer",
            self.name,
            self.rate,
            self.windows,
            ms(self.p50),
            ms(self.p99),
            self.cpu.client,
            self.cpu.server,
            self.cpu.other,
            self.cpu_per_answer()
        );
        if self.threads {
            let mut groups: Vec<_> = self.cpu.groups.iter().filter(|g| *g.1 >= 0.01).collect();
            groups.sort_by(|a, b| b.1.total_cmp(a.1));
            let groups: Vec<String> = groups
                .iter()
                .map(|(name, cores)| format!("{name}* {cores:.2}"))
                .collect();
            line.push_str(&format!(
                "\n    server threads (cores): {}",
                groups.join(", ")
            ));
        }
        if self.errors > 0 {
            line.push_str(&format!(
                "; {} ERRORS, first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        line
    }
}

fn ms(us: u32) -> String {
    format!("{:.2} ms", f64::from(us) / 1000.0)
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Cores used during a window: by the generator's threads, by the server (the other threads
/// of this process, or the server processes), and by everything else on the machine.
#[derive(Clone, Default)]
struct CpuUse {
    client: f64,
    server: f64,
    other: f64,
    /// Cores by group of server threads of this process (names without their trailing digits).
    groups: BTreeMap<String, f64>,
}

/// CPU time so far, in clock ticks (`/proc` counts in USER_HZ, 100 a second on Linux).
struct CpuSnapshot {
    at: Instant,
    client: u64,
    server: u64,
    machine_busy: u64,
    groups: BTreeMap<String, u64>,
}

const TICKS_PER_SEC: f64 = 100.0;

impl CpuSnapshot {
    /// This process's threads (`load-gen*` and the main thread count as the client, the rest
    /// as the server), plus `server_pids` and their descendants as the server.
    fn take(server_pids: &[u32]) -> Self {
        let me = std::process::id().to_string();
        let (mut client, mut server) = (0, 0);
        let mut groups = BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let tid = task.file_name().to_string_lossy().into_owned();
                let Some((comm, ticks)) = read_stat(&task.path().join("stat")) else {
                    continue;
                };
                if comm.starts_with("load-gen") || tid == me {
                    client += ticks;
                } else {
                    server += ticks;
                    let group = comm.trim_end_matches(|c: char| c.is_ascii_digit());
                    *groups.entry(group.to_owned()).or_insert(0) += ticks;
                }
            }
        }
        for pid in descendants(server_pids) {
            if let Some((_, ticks)) = read_stat(Path::new(&format!("/proc/{pid}/stat"))) {
                server += ticks;
            }
        }
        Self {
            at: Instant::now(),
            client,
            server,
            machine_busy: machine_busy().unwrap_or(0),
            groups,
        }
    }

    fn since(&self, before: &Self) -> CpuUse {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-3) * TICKS_PER_SEC;
        let cores = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let client = cores(self.client, before.client);
        let server = cores(self.server, before.server);
        let machine = cores(self.machine_busy, before.machine_busy);
        let groups = self
            .groups
            .iter()
            .map(|(name, &ticks)| {
                let earlier = before.groups.get(name).copied().unwrap_or(0);
                (name.clone(), cores(ticks, earlier))
            })
            .collect();
        CpuUse {
            client,
            server,
            other: (machine - client - server).max(0.0),
            groups,
        }
    }
}

/// The command name and user + system ticks of a `/proc/.../stat` file.
fn read_stat(path: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the command: state (field 3) ... utime (14), stime (15).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// The parent process id in a `/proc/PID/stat` file.
fn parent_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    text.get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `roots` and every process descended from them.
fn descendants(roots: &[u32]) -> BTreeSet<u32> {
    let mut found: BTreeSet<u32> = roots.iter().copied().collect();
    if roots.is_empty() {
        return found;
    }
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let parents: Vec<(u32, u32)> = all
        .into_iter()
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    loop {
        let before = found.len();
        for (pid, parent) in &parents {
            if found.contains(parent) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// Busy ticks of the whole machine (all but idle and iowait), from `/proc/stat`.
fn machine_busy() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    Some(total - ticks.get(3)? - ticks.get(4)?)
}
