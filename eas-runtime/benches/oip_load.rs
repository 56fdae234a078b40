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
//! The load generator is `support/load.rs` (shared with `benches/http_load.rs`, the gRPC
//! connection is here): one tokio task per connection (threads `load-gen`), each sending its
//! next request as soon as the previous answer is in; HTTP on hyper 1 (`client::conn::http1`, keep-alive), gRPC on tonic (one HTTP/2
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
#[path = "support/load.rs"]
mod load;
#[path = "support/mlp.rs"]
mod mlp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, RunningPlatform};
use eas_runtime::proto::Message;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName};
use inference::ModelInferRequest;
use inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use inference::model_infer_request::InferInputTensor;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tonic::metadata::{Ascii, MetadataValue};

use load::{Connection, Layout, Load, ServerProcess, Window, env_parse, free_port, loadavg, ms};
use mlp::{FEATURES, OUTPUTS, decode_answer, inputs, request_proto};

const TOKEN: &str = "bench-token";
/// The model's name on both servers (the eas service, the KServe model).
const MODEL: &str = "mlp";
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
/// How a figure is printed.
const LAYOUT: Layout = Layout {
    name: 26,
    rate: 7,
    us_digits: 0,
    switches: false,
};

fn main() {
    let bench = Bench::new(Settings::from_env());
    bench.header();
    let summary = bench.run();
    println!();
    println!("== summary ({}) ==", bench.settings.describe());
    println!(
        "machine load average now: {} (shared, busy machine: the figures move with it)",
        loadavg()
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
        Self {
            servers: load::runtime(settings.server_threads, "srv-io"),
            clients: load::runtime(settings.client_threads, "load-gen"),
            settings,
        }
    }

    fn header(&self) {
        println!("oip_load: {}", self.settings.describe());
        println!(
            "machine: {}; load average {} (a shared machine, busy with other work: the figures \
             move with it)",
            load::cores_and_cpu(),
            loadavg()
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
        let (runtime, dir) = match mlp::setup() {
            Ok(setup) => setup,
            Err(why) => {
                println!("SKIPPED: oip_load: {why}");
                return vec![format!("oip_load: SKIPPED ({why})")];
            }
        };
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
                loadavg()
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
        let load = Load {
            clients: &self.clients,
            connections,
            warmup: settings.warmup,
            window: settings.window,
        };
        load.measure_with(&target.pids, |from, until| {
            let target = Arc::clone(&target);
            async move {
                match &target.wire {
                    Wire::Http { .. } => {
                        load::http_connection(
                            target.addr,
                            target.answer_len,
                            || target.request(),
                            from,
                            until,
                        )
                        .await
                    }
                    Wire::Grpc { .. } => grpc_connection(&target, from, until).await,
                }
            }
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
    let (status, headers, body) = load::send_once(target.addr, target.request()).await;
    assert!(
        status.is_success(),
        "{}: {status}: {}",
        target.name,
        String::from_utf8_lossy(&body)
    );
    let y = match target.protocol {
        Protocol::Eas => decode_answer(&body),
        Protocol::RestJson => decode_json(&body),
        Protocol::RestBinary | Protocol::Grpc => decode_binary(&headers, &body),
    };
    (y, body.len())
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

/// Panics unless `got` is `expected` within float tolerance, and a whole answer.
fn check_close(name: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{name}: answer length");
    assert_eq!(got.len(), OUTPUTS, "{name}: answer length");
    mlp::check_close(name, got, expected);
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
    process: ServerProcess,
    http: SocketAddr,
    grpc: SocketAddr,
}

impl PyServer {
    fn start(python: &std::ffi::OsStr, model: &Path, threads: u32) -> Result<Self, String> {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/support/kserve_onnx.py");
        let (http, grpc) = (free_port()?, free_port()?);
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
        let (http, grpc) = (
            SocketAddr::from(([127, 0, 0, 1], http)),
            SocketAddr::from(([127, 0, 0, 1], grpc)),
        );
        let hint = "are kserve and onnxruntime installed there?";
        Ok(Self {
            process: ServerProcess::ready(child, &script, http, "/v2/health/ready", hint)?,
            http,
            grpc,
        })
    }

    fn pids(&self) -> Vec<u32> {
        self.process.pids()
    }
}

/// A target's figure, with the server and protocol it is of.
struct Figure {
    server: &'static str,
    protocol: Protocol,
    figure: load::Figure,
}

impl std::ops::Deref for Figure {
    type Target = load::Figure;

    fn deref(&self) -> &load::Figure {
        &self.figure
    }
}

impl Figure {
    fn of(target: &Target, windows: Vec<Window>) -> Self {
        Self {
            server: target.server,
            protocol: target.protocol,
            figure: load::Figure::of_windows(&target.name, target.in_process, windows),
        }
    }

    fn line(&self, unit: &str) -> String {
        self.figure.line_as(unit, &LAYOUT)
    }
}
