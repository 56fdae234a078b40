//! The load benches of the data plane: the eas server under 64 keep-alive connections, against
//! baselines measured in the same run on the same machine.
//!
//! 1. **echo**: the `echo` processor behind the eas server (plain token auth) vs a bare axum
//!    echo server (`POST` answers the body), ~100-byte bodies: requests/s (goal >= 0.8x) and
//!    server CPU per answer (goal <= 1.15x the bare server's).
//! 2. **ONNX MLP** (256 -> 1024 -> 1024 -> 10, FP32): the eas server with `processor: onnx`
//!    and batching, single-row protobuf (`DataProto`) requests, vs the same model run
//!    in-process by `ort` at its best batch size (goal >= 0.9x rows/s), and vs a FastAPI +
//!    onnxruntime server under uvicorn (`benches/support/fastapi_onnx.py`, raw float32 bodies;
//!    goal >= 3x). A few batching configurations are tried first and the best is measured.
//!
//! The load generator is `support/load.rs` (shared with the other load benches): a Rust
//! client on hyper 1 (`client::conn::http1`), one task per connection, each sending its next
//! request as soon as the previous answer is in.
//! Each measurement opens its connections, warms up, then counts the answers completed in a
//! fixed window; the compared servers take turns window by window, and the figures are the
//! medians over the windows (latency percentiles over every answer of the measured windows).
//! Servers run in this process on their own tokio runtime (threads `srv-io`), the generator on
//! another (threads `load-gen`), so the CPU each side used is read from `/proc` and printed:
//! on a small machine the generator takes CPU from the server.
//!
//! 3. **child**: echo and the MLP with instances in worker processes (the child-process
//!    provider) vs in this process: the rate and the server CPU per answer (the workers'
//!    CPU included) of each, windows taking turns.
//!
//! Run (a few minutes):
//! ```text
//! EAS_PYTHON=... ORT_DYLIB_PATH=... EAS_BENCH_PYTHON=$PWD/target/eas-bench-venv/bin/python \
//!     cargo bench -p eas-runtime --bench http_load
//! ```
//! Settings (env): `EAS_BENCH_SECS` (window, 2 s), `EAS_BENCH_WARMUP_SECS` (0.5 s),
//! `EAS_BENCH_ROUNDS` (windows per figure, 5), `EAS_BENCH_CONNECTIONS` (64),
//! `EAS_BENCH_CLIENT_THREADS` and `EAS_BENCH_SERVER_THREADS` (tokio threads, 2 each),
//! `EAS_BENCH_PARTS` (`echo,onnx,child`), `EAS_BENCH_ECHO_ONLY` (`eas` or `bare`: that echo
//! server alone, for a profiler attached to the process). Without `EAS_PYTHON` or ONNX Runtime the ONNX part prints
//! `SKIPPED`; without `EAS_BENCH_PYTHON` (FastAPI, uvicorn, onnxruntime, numpy from
//! `.ci/requirements-bench.txt`) only the FastAPI baseline is skipped.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

#[path = "support/load.rs"]
mod load;
#[path = "support/mlp.rs"]
mod mlp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use eas_core::spec::ServiceSpec;
use eas_runtime::onnx::{runtime, testing};
use eas_runtime::platform::{Platform, RunningPlatform};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ort::session::Session;
use ort::value::TensorRef;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use load::{
    CpuSnapshot, Figure, GENERATOR, Load, ServerProcess, Target, Window, children_of, env_parse,
    free_port, median, ms, post_once,
};
use mlp::{FEATURES, OUTPUTS, check_close, decode_answer, inputs, request_proto};

const TOKEN: &str = "bench-token";
/// The intra-op threads of the in-process baseline and of the eas sessions (`cpu: 2`).
const ORT_THREADS: usize = 2;
const ORT_BATCHES: [usize; 5] = [1, 8, 32, 64, 128];
/// Batching configurations tried: (max_batch_size, max_batch_timeout ms, worker_threads).
const EAS_CONFIGS: [(u32, u64, u32); 4] = [(32, 2, 1), (64, 2, 1), (32, 2, 2), (64, 5, 2)];
/// FastAPI configurations tried: (uvicorn workers, onnxruntime intra-op threads).
const FASTAPI_CONFIGS: [(u32, u32); 3] = [(1, 1), (1, 2), (2, 1)];

fn main() {
    // The `child` part runs instances as worker processes of this binary.
    eas_runtime::worker::run_if_worker(&eas_runtime::registry::ProcessorRegistry::with_builtins());
    let settings = Settings::from_env();
    let bench = Bench::new(settings);
    bench.header();
    let parts = std::env::var("EAS_BENCH_PARTS").unwrap_or_else(|_| "echo,onnx,child".into());
    let mut summary = Vec::new();
    if parts.contains("echo") {
        summary.extend(bench.echo());
    }
    if parts.contains("onnx") {
        summary.extend(bench.onnx());
    }
    if parts.contains("child") {
        summary.extend(bench.child());
    }
    println!();
    println!("== summary ({}) ==", bench.settings.describe());
    for line in summary {
        println!("{line}");
    }
}

/// The run's settings, from the environment.
struct Settings {
    window: Duration,
    warmup: Duration,
    rounds: usize,
    connections: usize,
    client_threads: usize,
    server_threads: usize,
}

impl Settings {
    fn from_env() -> Self {
        let secs = |name: &str, default: f64| {
            Duration::from_secs_f64(env_parse(name).unwrap_or(default).max(0.05))
        };
        Self {
            window: secs("EAS_BENCH_SECS", 2.0),
            warmup: secs("EAS_BENCH_WARMUP_SECS", 0.5),
            rounds: env_parse::<usize>("EAS_BENCH_ROUNDS").unwrap_or(5).max(1),
            connections: env_parse::<usize>("EAS_BENCH_CONNECTIONS")
                .unwrap_or(64)
                .max(1),
            client_threads: env_parse::<usize>("EAS_BENCH_CLIENT_THREADS")
                .unwrap_or(2)
                .max(1),
            server_threads: env_parse::<usize>("EAS_BENCH_SERVER_THREADS")
                .unwrap_or(2)
                .max(1),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} connections, medians of {} windows of {:.1} s after {:.1} s warm-up; {} client + \
             {} server tokio threads",
            self.connections,
            self.rounds,
            self.window.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.client_threads,
            self.server_threads
        )
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
        println!("http_load: {}", self.settings.describe());
        println!(
            "machine: {}; load average {}",
            load::cores_and_cpu(),
            load::loadavg()
        );
        println!("generator: {GENERATOR}");
        println!(
            "note: the generator runs on the same machine and competes with the server for the \
             CPU; each figure says how many cores the client (load-gen threads), the server \
             and everything else on the machine used during the measured windows."
        );
    }

    /// Part 1: the echo processor vs a bare axum echo server.
    fn echo(&self) -> Vec<String> {
        println!();
        println!("== echo: eas `echo` processor (token auth) vs a bare axum echo server ==");
        let body = Bytes::from(
            "{\"id\": 12345, \"text\": \"a small request body of about one hundred bytes, \
             echoed back\"}",
        );
        let (bare_addr, eas) = self.servers.block_on(async {
            let bare = start_bare_echo().await;
            let spec = ServiceSpec::from_json_value(json!({
                "metadata": {"name": "echo", "instance": 1},
                "processor": "echo", "model_path": ".", "token": TOKEN,
            }))
            .expect("the echo spec is valid");
            let server = Platform::builder()
                .service(spec)
                .bind("127.0.0.1:0".parse().expect("an address"))
                .start()
                .await
                .expect("the eas server starts");
            assert!(
                server.wait_ready(Duration::from_secs(30)).await,
                "echo ready"
            );
            (bare, server)
        });
        let bare = Target::new(
            "bare axum echo",
            bare_addr,
            "/echo",
            None,
            "text/plain",
            &body,
        )
        .expecting(body.len())
        .in_process();
        let ours = Target::new(
            "eas echo",
            eas.local_addr(),
            "/api/predict/echo",
            Some(TOKEN),
            "text/plain",
            &body,
        )
        .expecting(body.len())
        .in_process();
        println!("body: {} bytes", body.len());
        // One server alone, for a profiler attached to this process: no ratio.
        let alone = match std::env::var("EAS_BENCH_ECHO_ONLY").as_deref() {
            Ok("eas") => Some(&ours),
            Ok("bare") => Some(&bare),
            _ => None,
        };
        if let Some(target) = alone {
            let figures = self.alternate(&[target], &[]);
            self.servers.block_on(eas.shutdown());
            return vec![format!("echo alone: {}", figures[0].line("req/s"))];
        }
        let figures = self.alternate(&[&bare, &ours], &[]);
        for f in &figures {
            println!("{}", f.line("req/s"));
        }
        let ratio = figures[1].rate / figures[0].rate;
        self.servers.block_on(eas.shutdown());
        vec![
            format!(
                "echo: eas {:.0} req/s (p50 {} p99 {}) vs bare axum {:.0} req/s (p50 {} p99 {}) \
                 = {ratio:.2}x (goal >= 0.8x)",
                figures[1].rate,
                ms(figures[1].p50),
                ms(figures[1].p99),
                figures[0].rate,
                ms(figures[0].p50),
                ms(figures[0].p99),
            ),
            format!(
                "echo server CPU per answer: eas {:.1} us vs bare axum {:.1} us = {:.2}x the \
                 bare server's (goal <= 1.15x)",
                figures[1].cpu_per_answer(),
                figures[0].cpu_per_answer(),
                figures[1].cpu_per_answer() / figures[0].cpu_per_answer().max(1e-9)
            ),
        ]
    }

    /// Part 2: the ONNX MLP behind eas vs in-process ort and vs FastAPI.
    fn onnx(&self) -> Vec<String> {
        println!();
        println!("== ONNX MLP 256-1024-1024-10 FP32, single-row requests ==");
        let (runtime, dir) = match mlp::setup() {
            Ok(setup) => setup,
            Err(why) => {
                println!("SKIPPED: http_load onnx: {why}");
                return vec![format!("onnx: SKIPPED ({why})")];
            }
        };
        let model = dir.join("bench_mlp.onnx");
        println!(
            "model: {}; ONNX Runtime: {}",
            model.display(),
            runtime.library()
        );
        let mut session = Session::builder(runtime.environment())
            .unwrap()
            .with_intra_threads(ORT_THREADS)
            .unwrap()
            .with_inter_threads(1)
            .unwrap()
            .commit_from_file(&model)
            .unwrap();
        let row = inputs(1, 3);
        let expected = run_ort(&mut session, 1, &row);

        // In-process ort: find its best batch size.
        println!("in-process ort::Session::run ({ORT_THREADS} intra-op threads), one sample each:");
        let mut best_batch = (0, 0.0);
        for batch in ORT_BATCHES {
            let rate = ort_rate(&mut session, batch, self.settings.window / 2);
            println!("  batch {batch:>3}: {rate:>8.0} rows/s");
            if rate > best_batch.1 {
                best_batch = (batch, rate);
            }
        }
        let best_batch = best_batch.0;

        // The eas server: one service per batching configuration; the best one is measured.
        let eas = self.servers.block_on(start_onnx_server(&dir));
        let body = Bytes::from(request_proto(&row));
        let mut candidates = Vec::new();
        for (size, timeout, workers) in EAS_CONFIGS {
            let name = config_name(size, timeout, workers);
            let answer = self.clients.block_on(post_once(
                eas.local_addr(),
                &format!("/api/predict/{name}"),
                Some(TOKEN),
                &body,
            ));
            check_close(&name, &decode_answer(&answer), &expected);
            candidates.push(
                Target::new(
                    &format!("eas {name}"),
                    eas.local_addr(),
                    &format!("/api/predict/{name}"),
                    Some(TOKEN),
                    "application/octet-stream",
                    &body,
                )
                .expecting(answer.len())
                .with_service(&name)
                .in_process(),
            );
        }
        println!(
            "eas server, cpu 2 (2 intra-op threads per session), protobuf DataProto bodies of {} \
             bytes; one window per batching configuration (b = max_batch_size, t = \
             max_batch_timeout ms, w = worker_threads):",
            body.len()
        );
        let mut best_eas = 0;
        let mut best_rate = 0.0;
        for (i, target) in candidates.iter().enumerate() {
            let before = batches(&eas, target);
            let figure = Figure::of(target, vec![self.window(target, &[])]);
            let after = batches(&eas, target);
            println!(
                "{}; mean batch {:.1}",
                figure.line("rows/s"),
                (after.0 - before.0) / (after.1 - before.1).max(1.0)
            );
            if figure.rate > best_rate {
                best_rate = figure.rate;
                best_eas = i;
            }
        }
        let ours = &candidates[best_eas];

        // FastAPI: the best of a few uvicorn/onnxruntime configurations.
        let fastapi = self.fastapi(&model, &row, &expected);

        // The measured rounds: in-process ort, eas and FastAPI take turns.
        println!(
            "measured rounds: in-process ort at batch {best_batch}, {}{}",
            ours.name,
            fastapi
                .as_ref()
                .map_or(String::new(), |(t, _)| format!(", {}", t.name))
        );
        let batch_input = inputs(best_batch, 0);
        let mut ort_rates = Vec::new();
        let mut ort_others = Vec::new();
        let mut ort_used = Vec::new();
        let mut eas_windows = Vec::new();
        let mut fastapi_windows = Vec::new();
        let before = batches(&eas, ours);
        for _ in 0..self.settings.rounds {
            let (rate, used, others) =
                ort_rate_and_others(&mut session, best_batch, &batch_input, self.settings.window);
            ort_rates.push(rate);
            ort_others.push(others);
            ort_used.push(used);
            eas_windows.push(self.window(ours, &[]));
            if let Some((target, server)) = &fastapi {
                fastapi_windows.push(self.window(target, &server.pids()));
            }
        }
        let after = batches(&eas, ours);
        let mean_batch = (after.0 - before.0) / (after.1 - before.1).max(1.0);
        let cpu_terms = self.cpu_terms(&mut session, &model, &body, mean_batch);
        let ort = median(ort_rates);
        let ours_figure = Figure::of(ours, eas_windows);
        let ort_cores = median(ort_used);
        println!(
            "  in-process ort batch {best_batch:>3}: {ort:>8.0} rows/s (median of {}); cores: \
             ort {ort_cores:.2}, others {:.2}",
            ort_others.len(),
            median(ort_others)
        );
        println!("{}; mean batch {mean_batch:.1}", ours_figure.line("rows/s"));
        let mut summary = vec![format!(
            "onnx: eas ({}) {:.0} rows/s (p50 {} p99 {}, mean batch {mean_batch:.1}) vs \
             in-process ort at batch {best_batch} {ort:.0} rows/s = {:.2}x (goal >= 0.9x)",
            ours.name,
            ours_figure.rate,
            ms(ours_figure.p50),
            ms(ours_figure.p99),
            ours_figure.rate / ort
        )];
        // Per core used: the machine is shared, so the CPU each side got differs.
        let per_core = ours_figure.rate / ours_figure.cpu.server.max(0.01);
        let ort_per_core = ort / ort_cores.max(0.01);
        summary.push(format!(
            "onnx per core used: eas {per_core:.0} rows/s per server core ({:.2} cores) vs \
             in-process ort {ort_per_core:.0} rows/s per core ({ort_cores:.2} cores) = {:.2}x",
            ours_figure.cpu.server,
            per_core / ort_per_core
        ));
        let (bare_cpu, ort_batch, ort_cpu) = cpu_terms;
        let eas_cpu = ours_figure.cpu_per_answer();
        summary.push(format!(
            "onnx server CPU per row: eas {eas_cpu:.1} us vs bare axum {bare_cpu:.1} us per \
             request + in-process ort {ort_cpu:.1} us per row at batch {ort_batch} (eas's mean \
             batch) = {:.2}x (goal <= 1.05x)",
            eas_cpu / (bare_cpu + ort_cpu).max(1e-9)
        ));
        match fastapi {
            Some((target, server)) => {
                let figure = Figure::of(&target, fastapi_windows);
                println!("{}", figure.line("rows/s"));
                summary.push(format!(
                    "onnx: eas {:.0} rows/s vs {} {:.0} rows/s (p50 {} p99 {}) = {:.2}x \
                     (goal >= 3x)",
                    ours_figure.rate,
                    target.name,
                    figure.rate,
                    ms(figure.p50),
                    ms(figure.p99),
                    ours_figure.rate / figure.rate
                ));
                drop(server);
            }
            None => summary.push("onnx vs FastAPI: SKIPPED (see above)".into()),
        }
        self.servers.block_on(eas.shutdown());
        summary
    }

    /// The baseline of the MLP's CPU per row, measured now: a bare axum server's CPU per
    /// request answering `body` (echoed: it reads and writes as many bytes as eas reads) and
    /// in-process ort's CPU per row at `mean_batch` rows (rounded), with the session options
    /// eas runs `model` with (`ORT_THREADS` intra-op threads that do not spin; `session`, with
    /// ort's defaults, is measured too and printed), the medians over the rounds. Returns
    /// (bare us per request, the batch size, ort us per row).
    fn cpu_terms(
        &self,
        session: &mut Session,
        model: &Path,
        body: &Bytes,
        mean_batch: f64,
    ) -> (f64, usize, f64) {
        let batch = (mean_batch.round() as usize).max(1);
        let input = inputs(batch, 0);
        let mut as_eas = Session::builder(runtime().unwrap().environment())
            .unwrap()
            .with_intra_threads(ORT_THREADS)
            .unwrap()
            .with_inter_threads(1)
            .unwrap()
            .with_intra_op_spinning(false)
            .unwrap()
            .commit_from_file(model)
            .unwrap();
        let bare_addr = self.servers.block_on(start_bare_echo());
        let bare = Target::new(
            "bare axum echo (the MLP's body)",
            bare_addr,
            "/echo",
            None,
            "application/octet-stream",
            body,
        )
        .expecting(body.len())
        .in_process();
        let mut bare_windows = Vec::new();
        let (mut ort_cpu, mut spinning_cpu) = (Vec::new(), Vec::new());
        let per_row = |session: &mut Session| {
            let (rate, used, _) =
                ort_rate_and_others(session, batch, &input, self.settings.window / 2);
            used * 1e6 / rate.max(1.0)
        };
        for _ in 0..self.settings.rounds {
            bare_windows.push(self.window(&bare, &[]));
            ort_cpu.push(per_row(&mut as_eas));
            spinning_cpu.push(per_row(session));
        }
        let bare = Figure::of(&bare, bare_windows);
        println!("{}", bare.line("req/s"));
        let ort_cpu = median(ort_cpu);
        println!(
            "  in-process ort batch {batch:>3}: {ort_cpu:.1} us of CPU per row (median), eas's \
             session options; {:.1} us with ort's defaults (threads that spin)",
            median(spinning_cpu)
        );
        (bare.cpu_per_answer(), batch, ort_cpu)
    }

    /// Part 3: the same services with instances in worker processes (the child-process
    /// provider) vs in this process: echo, and the ONNX MLP at one batching configuration.
    fn child(&self) -> Vec<String> {
        println!();
        println!("== child-process provider vs in-process: echo and the ONNX MLP ==");
        let mut summary = Vec::new();
        let echo = ServiceSpec::from_json_value(json!({
            "metadata": {"name": "echo", "instance": 1},
            "processor": "echo", "model_path": ".", "token": TOKEN,
        }))
        .expect("the echo spec is valid");
        let body = Bytes::from(
            "{\"id\": 12345, \"text\": \"a small request body of about one hundred bytes, \
             echoed back\"}",
        );
        summary.push(self.compare_providers("echo", "req/s", &echo, &body));
        let models = testing::python_from_env().and_then(|python| {
            runtime().ok()?;
            testing::cached_models(&python, Path::new(env!("CARGO_TARGET_TMPDIR")), true).ok()
        });
        match models {
            Some(dir) => {
                let (size, timeout, workers) = EAS_CONFIGS[2];
                let mlp = ServiceSpec::from_json_value(json!({
                    "metadata": {
                        "name": "mlp", "instance": 1, "cpu": ORT_THREADS,
                        "rpc": {"batching": true, "max_batch_size": size,
                                "max_batch_timeout": timeout, "worker_threads": workers,
                                "max_queue_size": 1024},
                    },
                    "processor": "onnx", "model_path": dir.to_string_lossy(),
                    "model_entry": "bench_mlp.onnx", "token": TOKEN,
                }))
                .expect("the onnx spec is valid");
                let body = Bytes::from(request_proto(&inputs(1, 3)));
                let name = format!("onnx {}", config_name(size, timeout, workers));
                summary.push(self.compare_providers(&name, "rows/s", &mlp, &body));
            }
            None => {
                println!("SKIPPED: child onnx: EAS_PYTHON or ONNX Runtime missing");
                summary.push("child onnx: SKIPPED (EAS_PYTHON or ONNX Runtime missing)".into());
            }
        }
        summary
    }

    /// One service in process and in a worker process, windows taking turns; the summary line.
    fn compare_providers(
        &self,
        what: &str,
        unit: &str,
        spec: &ServiceSpec,
        body: &Bytes,
    ) -> String {
        let name = spec.metadata.name.clone();
        let (inproc, child) = self.servers.block_on(async {
            let start = |provider: Option<Arc<dyn eas_runtime::provider::InstanceProvider>>| {
                let mut builder = Platform::builder()
                    .service(spec.clone())
                    .bind("127.0.0.1:0".parse().expect("an address"));
                if let Some(provider) = provider {
                    builder = builder.provider(provider);
                }
                async move {
                    let server = builder.start().await.expect("the eas server starts");
                    assert!(server.wait_ready(Duration::from_secs(60)).await, "ready");
                    server
                }
            };
            let child = eas_runtime::provider::ChildProcess::new().expect("child provider");
            (start(None).await, start(Some(Arc::new(child))).await)
        });
        let path = format!("/api/predict/{name}");
        let answer =
            self.clients
                .block_on(post_once(inproc.local_addr(), &path, Some(TOKEN), body));
        let target = |label: &str, server: &RunningPlatform| {
            Target::new(
                label,
                server.local_addr(),
                &path,
                Some(TOKEN),
                "application/octet-stream",
                body,
            )
            .expecting(answer.len())
            .in_process()
        };
        let ours = target(&format!("{what}, in-process"), &inproc);
        let theirs = target(&format!("{what}, child process"), &child);
        // The workers are this process's children; their CPU counts as the server's.
        let workers = children_of(std::process::id());
        let figures = self.alternate(&[&ours, &theirs], &workers);
        for f in &figures {
            println!("{}", f.line(unit));
        }
        self.servers.block_on(async {
            inproc.shutdown().await;
            child.shutdown().await;
        });
        let (a, b) = (&figures[0], &figures[1]);
        format!(
            "child {what}: child process {:.0} {unit} (p50 {} p99 {}, {:.1} us server CPU per \
             answer) vs in-process {:.0} {unit} (p50 {} p99 {}, {:.1} us) = {:.2}x the rate, \
             {:.2}x the CPU per answer",
            b.rate,
            ms(b.p50),
            ms(b.p99),
            b.cpu_per_answer(),
            a.rate,
            ms(a.p50),
            ms(a.p99),
            a.cpu_per_answer(),
            b.rate / a.rate.max(1e-9),
            b.cpu_per_answer() / a.cpu_per_answer().max(1e-9),
        )
    }

    /// The best FastAPI configuration as a target (and its running server), after checking
    /// its answer; `None` (having said why) when `EAS_BENCH_PYTHON` is missing.
    fn fastapi(&self, model: &Path, row: &[f32], expected: &[f32]) -> Option<(Target, PyServer)> {
        let Some(python) = std::env::var_os("EAS_BENCH_PYTHON").filter(|p| !p.is_empty()) else {
            println!(
                "SKIPPED: FastAPI baseline: EAS_BENCH_PYTHON is not set; install it with \
                 `python3 -m venv target/eas-bench-venv && target/eas-bench-venv/bin/pip install \
                 -r .ci/requirements-bench.txt` and export \
                 EAS_BENCH_PYTHON=$PWD/target/eas-bench-venv/bin/python"
            );
            return None;
        };
        let body = Bytes::from(
            row.iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        println!(
            "FastAPI + onnxruntime under uvicorn (uvloop, httptools), raw little-endian float32 \
             bodies of {} bytes, no batching; one window per configuration:",
            body.len()
        );
        let mut best: Option<(Target, PyServer, f64)> = None;
        for (workers, threads) in FASTAPI_CONFIGS {
            let server = match PyServer::start(&python, model, workers, threads) {
                Ok(server) => server,
                Err(why) => {
                    println!("SKIPPED: FastAPI baseline: {why}");
                    return None;
                }
            };
            let answer = self
                .clients
                .block_on(post_once(server.addr, "/predict", None, &body));
            let y: Vec<f32> = answer
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let name = format!("FastAPI {workers} worker(s) x {threads} ort thread(s)");
            check_close(&name, &y, expected);
            let target = Target::new(
                &name,
                server.addr,
                "/predict",
                None,
                "application/octet-stream",
                &body,
            )
            .expecting(answer.len());
            let figure = Figure::of(&target, vec![self.window(&target, &server.pids())]);
            println!("{}", figure.line("rows/s"));
            if best.as_ref().is_none_or(|b| figure.rate > b.2) {
                best = Some((target, server, figure.rate));
            }
        }
        best.map(|(target, server, _)| (target, server))
    }

    /// The figures of `targets`, their windows taking turns for `rounds` rounds.
    fn alternate(&self, targets: &[&Target], pids: &[u32]) -> Vec<Figure> {
        let mut windows: Vec<Vec<Window>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..self.settings.rounds {
            for (target, windows) in targets.iter().zip(&mut windows) {
                windows.push(self.window(target, pids));
            }
        }
        targets
            .iter()
            .zip(windows)
            .map(|(target, windows)| Figure::of(target, windows))
            .collect()
    }

    /// One measurement: fresh connections, warm-up, then the measured window.
    fn window(&self, target: &Target, pids: &[u32]) -> Window {
        let settings = &self.settings;
        Load {
            clients: &self.clients,
            connections: settings.connections,
            warmup: settings.warmup,
            window: settings.window,
        }
        .measure(target, pids)
    }
}

/// A bare axum echo server on hyper, served like the eas server (HTTP/1.1 keep-alive,
/// `TCP_NODELAY`, a header read timeout) but with no auth, queue, worker or metrics.
async fn start_bare_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/echo", post(|body: Bytes| async move { body }));
    tokio::spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .keep_alive(true);
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let connection = builder.serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            );
            tokio::spawn(connection);
        }
    });
    addr
}

fn config_name(size: u32, timeout_ms: u64, workers: u32) -> String {
    format!("mlp_b{size}_t{timeout_ms}_w{workers}")
}

/// The eas server with one `onnx` service per entry of [`EAS_CONFIGS`].
async fn start_onnx_server(dir: &Path) -> RunningPlatform {
    let mut builder = Platform::builder().bind("127.0.0.1:0".parse().expect("an address"));
    for (size, timeout, workers) in EAS_CONFIGS {
        let spec = ServiceSpec::from_json_value(json!({
            "metadata": {
                "name": config_name(size, timeout, workers), "instance": 1, "cpu": ORT_THREADS,
                "rpc": {"batching": true, "max_batch_size": size, "max_batch_timeout": timeout,
                        "worker_threads": workers, "max_queue_size": 1024},
            },
            "processor": "onnx", "model_path": dir.to_string_lossy(),
            "model_entry": "bench_mlp.onnx", "token": TOKEN,
        }))
        .expect("the onnx spec is valid");
        builder = builder.service(spec);
    }
    let server = builder.start().await.expect("the eas server starts");
    assert!(
        server.wait_ready(Duration::from_secs(60)).await,
        "the onnx services become ready"
    );
    server
}

/// The sum and count of the batch-size histogram of `target`'s eas service (none without one).
fn batches(server: &RunningPlatform, target: &Target) -> (f64, f64) {
    target
        .service
        .as_deref()
        .map_or((0.0, 0.0), |service| mlp::batch_stats(server, service))
}

/// The output of one run of `batch` rows.
fn run_ort(session: &mut Session, batch: usize, x: &[f32]) -> Vec<f32> {
    let input = TensorRef::from_array_view(([batch, FEATURES], x)).unwrap();
    let out = session.run(ort::inputs!["x" => input]).unwrap();
    let y = out["y"].try_extract_tensor::<f32>().unwrap().1.to_vec();
    assert_eq!(y.len(), batch * OUTPUTS);
    y
}

/// Rows per second of runs at `batch` for about `time`, after a short warm-up.
fn ort_rate(session: &mut Session, batch: usize, time: Duration) -> f64 {
    let x = inputs(batch, 0);
    ort_rate_for(session, batch, &x, time)
}

fn ort_rate_for(session: &mut Session, batch: usize, x: &[f32], time: Duration) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(100) {
        run_ort(session, batch, x);
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < time {
        run_ort(session, batch, x);
        calls += 1;
    }
    (calls * batch as u64) as f64 / start.elapsed().as_secs_f64()
}

/// As [`ort_rate_for`], with the cores this process and the rest of the machine used
/// meanwhile.
fn ort_rate_and_others(
    session: &mut Session,
    batch: usize,
    x: &[f32],
    time: Duration,
) -> (f64, f64, f64) {
    let before = CpuSnapshot::take(&[]);
    let rate = ort_rate_for(session, batch, x, time);
    let cpu = CpuSnapshot::take(&[]).since(&before);
    (rate, cpu.client + cpu.server, cpu.other)
}

/// The FastAPI server process; stopped (SIGTERM, then SIGKILL) when dropped.
struct PyServer {
    process: ServerProcess,
    addr: SocketAddr,
}

impl PyServer {
    fn start(
        python: &std::ffi::OsStr,
        model: &Path,
        workers: u32,
        threads: u32,
    ) -> Result<Self, String> {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/support/fastapi_onnx.py");
        let port = free_port()?;
        let child = Command::new(python)
            .arg(&script)
            .arg(model)
            .arg(port.to_string())
            .arg("--workers")
            .arg(workers.to_string())
            .arg("--threads")
            .arg(threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.to_string_lossy()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let hint = "is fastapi/uvicorn installed there?";
        Ok(Self {
            process: ServerProcess::ready(child, &script, addr, "/healthz", hint)?,
            addr,
        })
    }

    fn pids(&self) -> Vec<u32> {
        self.process.pids()
    }
}
