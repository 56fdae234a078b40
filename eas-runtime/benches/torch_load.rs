//! The `torch` processor under load: a TorchScript MLP (256 -> 1024 -> 1024 -> 10, FP32, ReLU,
//! like the ONNX benches) served by eas with batching, single-row `TorchRequest` protobuf
//! requests, vs the same module run in-process by `tch` at its best batch size (goal >= 0.9x
//! rows/s), both measured in the same run, windows taking turns.
//!
//! The model is traced with `tch` in the bench setup (random weights from a fixed seed). The
//! load generator is `support/load.rs`, as for `http_load`; `support/mlp.rs` gives the inputs
//! and the batch-size metric (it uses the `onnx` module, hence `required-features`).
//!
//! Run (about a minute):
//! ```text
//! source scripts/libtorch.sh && cargo bench -p eas-runtime --features torch --bench torch_load
//! ```
//! libtorch's OpenMP threads spin while they wait; on a shared or busy machine
//! `OMP_WAIT_POLICY=passive` gives steadier (and here higher) figures, in process and served.
//! Settings (env) as `http_load`: `EAS_BENCH_SECS` (window, 2 s), `EAS_BENCH_WARMUP_SECS`
//! (0.5 s), `EAS_BENCH_ROUNDS` (5), `EAS_BENCH_CONNECTIONS` (64), `EAS_BENCH_CLIENT_THREADS`
//! and `EAS_BENCH_SERVER_THREADS` (2 each).

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

#[path = "support/load.rs"]
mod load;
#[path = "support/mlp.rs"]
mod mlp;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, RunningPlatform};
use eas_runtime::proto::Message;
use eas_runtime::proto::pytorch::{ArrayProto, PredictRequest, PredictResponse};
use serde_json::json;
use tch::{CModule, Kind, Tensor};

use load::{CpuSnapshot, Figure, GENERATOR, Load, Target, env_parse, median, ms, post_once};
use mlp::{FEATURES, OUTPUTS, batch_stats, check_close, inputs};

const TOKEN: &str = "bench-token";
/// libtorch's intra-op threads in-process and in the eas service (`cpu: 2`).
const THREADS: usize = 2;
const BATCHES: [usize; 5] = [1, 8, 32, 64, 128];
/// Batching configurations tried: (max_batch_size, max_batch_timeout ms, worker_threads).
const EAS_CONFIGS: [(u32, u64, u32); 4] = [(32, 2, 1), (64, 2, 1), (64, 5, 2), (128, 5, 2)];
const HIDDEN: i64 = 1024;

fn main() {
    let secs = |name: &str, default: f64| {
        Duration::from_secs_f64(env_parse(name).unwrap_or(default).max(0.05))
    };
    let window = secs("EAS_BENCH_SECS", 2.0);
    let warmup = secs("EAS_BENCH_WARMUP_SECS", 0.5);
    let rounds = env_parse::<usize>("EAS_BENCH_ROUNDS").unwrap_or(5).max(1);
    let connections = env_parse::<usize>("EAS_BENCH_CONNECTIONS")
        .unwrap_or(64)
        .max(1);
    let clients = load::runtime(
        env_parse("EAS_BENCH_CLIENT_THREADS").unwrap_or(2),
        "load-gen",
    );
    let servers = load::runtime(env_parse("EAS_BENCH_SERVER_THREADS").unwrap_or(2), "srv-io");
    println!(
        "torch_load: {connections} connections, medians of {rounds} windows of {:.1} s after \
         {:.1} s warm-up",
        window.as_secs_f64(),
        warmup.as_secs_f64()
    );
    println!(
        "machine: {}; load average {}",
        load::cores_and_cpu(),
        load::loadavg()
    );
    println!("generator: {GENERATOR}");
    println!("== TorchScript MLP 256-1024-1024-10 FP32, single-row TorchRequest protobuf ==");

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("bench_mlp.pt");
    write_model(&model);
    tch::set_num_threads(THREADS as i32);
    let module = CModule::load(&model).unwrap();
    let row = inputs(1, 3);
    let expected = run(&module, 1, &row);

    println!("in-process tch CModule::forward_ts ({THREADS} intra-op threads), one sample each:");
    let mut best = (0, 0.0);
    for batch in BATCHES {
        let rate = rate_for(&module, batch, &inputs(batch, 0), window / 2);
        println!("  batch {batch:>3}: {rate:>8.0} rows/s");
        if rate > best.1 {
            best = (batch, rate);
        }
    }
    let best_batch = best.0;

    let eas = servers.block_on(start_server(dir.path()));
    let body = Bytes::from(request(&row));
    let load = Load {
        clients: &clients,
        connections,
        warmup,
        window,
    };
    let mut candidates = Vec::new();
    for (size, timeout, workers) in EAS_CONFIGS {
        let name = config_name(size, timeout, workers);
        let path = format!("/api/predict/{name}");
        let answer = clients.block_on(post_once(eas.local_addr(), &path, Some(TOKEN), &body));
        check_close(&name, &decode(&answer), &expected);
        candidates.push(
            Target::new(
                &format!("eas {name}"),
                eas.local_addr(),
                &path,
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
        "eas server, processor pytorch, cpu {THREADS}; one window per batching configuration \
         (b = max_batch_size, t = max_batch_timeout ms, w = worker_threads):"
    );
    let mut ours = 0;
    let mut best_rate = 0.0;
    for (i, target) in candidates.iter().enumerate() {
        let before = batches(&eas, target);
        let figure = Figure::of(target, vec![load.measure(target, &[])]);
        let after = batches(&eas, target);
        println!(
            "{}; mean batch {:.1}",
            figure.line("rows/s"),
            (after.0 - before.0) / (after.1 - before.1).max(1.0)
        );
        if figure.rate > best_rate {
            best_rate = figure.rate;
            ours = i;
        }
    }
    let ours = &candidates[ours];

    println!(
        "measured rounds: in-process tch at batch {best_batch}, {}",
        ours.name
    );
    let batch_input = inputs(best_batch, 0);
    let mut tch_rates = Vec::new();
    let mut tch_cores = Vec::new();
    let mut windows = Vec::new();
    let before = batches(&eas, ours);
    for _ in 0..rounds {
        let cpu = CpuSnapshot::take(&[]);
        tch_rates.push(rate_for(&module, best_batch, &batch_input, window));
        let used = CpuSnapshot::take(&[]).since(&cpu);
        tch_cores.push(used.client + used.server);
        windows.push(load.measure(ours, &[]));
    }
    let after = batches(&eas, ours);
    let mean_batch = (after.0 - before.0) / (after.1 - before.1).max(1.0);
    let in_process = median(tch_rates);
    let figure = Figure::of(ours, windows);
    println!(
        "  in-process tch batch {best_batch:>3}: {in_process:>8.0} rows/s (median of {rounds}); \
         cores {:.2}",
        median(tch_cores)
    );
    println!("{}; mean batch {mean_batch:.1}", figure.line("rows/s"));
    println!();
    println!("== summary ==");
    println!(
        "torch: eas ({}) {:.0} rows/s (p50 {} p99 {}, mean batch {mean_batch:.1}) vs in-process \
         tch at batch {best_batch} {in_process:.0} rows/s = {:.2}x (goal >= 0.9x)",
        ours.name,
        figure.rate,
        ms(figure.p50),
        ms(figure.p99),
        figure.rate / in_process
    );
    servers.block_on(eas.shutdown());
}

/// Traces the MLP (weights from a fixed seed) and saves it to `path`.
fn write_model(path: &Path) {
    tch::manual_seed(7);
    let options = (Kind::Float, tch::Device::Cpu);
    let layer = |fan_in: i64, fan_out: i64| {
        let scale = (1.0 / fan_in as f64).sqrt();
        (
            Tensor::randn([fan_in, fan_out], options) * scale,
            Tensor::randn([1, fan_out], options) * 0.01,
        )
    };
    let (w1, b1) = layer(FEATURES as i64, HIDDEN);
    let (w2, b2) = layer(HIDDEN, HIDDEN);
    let (w3, b3) = layer(HIDDEN, OUTPUTS as i64);
    let x = Tensor::zeros([2, FEATURES as i64], options);
    let module = CModule::create_by_tracing("Mlp", "forward", &[x], &mut |xs| {
        let h = (xs[0].matmul(&w1) + &b1).relu();
        let h = (h.matmul(&w2) + &b2).relu();
        vec![h.matmul(&w3) + &b3]
    })
    .unwrap();
    module.save(path).unwrap();
}

/// One forward of `batch` rows.
fn run(module: &CModule, batch: usize, x: &[f32]) -> Vec<f32> {
    let _no_grad = tch::no_grad_guard();
    let input = Tensor::from_slice(x).reshape([batch as i64, FEATURES as i64]);
    let y = module.forward_ts(&[input]).unwrap();
    let y = Vec::<f32>::try_from(&y.reshape([-1])).unwrap();
    assert_eq!(y.len(), batch * OUTPUTS);
    y
}

/// Rows per second of forwards of `batch` rows for about `time`, after a short warm-up.
fn rate_for(module: &CModule, batch: usize, x: &[f32], time: Duration) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(100) {
        run(module, batch, x);
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < time {
        run(module, batch, x);
        calls += 1;
    }
    (calls * batch as u64) as f64 / start.elapsed().as_secs_f64()
}

/// A `TorchRequest` of one row.
fn request(x: &[f32]) -> Vec<u8> {
    PredictRequest {
        inputs: vec![ArrayProto::floats(vec![1, FEATURES as i64], x.to_vec())],
        ..PredictRequest::default()
    }
    .encode_to_vec()
}

/// The first output of a `PredictResponse`.
fn decode(body: &[u8]) -> Vec<f32> {
    PredictResponse::decode(body).unwrap().outputs[0]
        .float_val
        .clone()
}

fn config_name(size: u32, timeout_ms: u64, workers: u32) -> String {
    format!("mlp_b{size}_t{timeout_ms}_w{workers}")
}

/// The eas server with one `pytorch` service per entry of [`EAS_CONFIGS`].
async fn start_server(dir: &Path) -> RunningPlatform {
    let mut builder = Platform::builder().bind("127.0.0.1:0".parse().unwrap());
    for (size, timeout, workers) in EAS_CONFIGS {
        let spec = ServiceSpec::from_json_value(json!({
            "metadata": {
                "name": config_name(size, timeout, workers), "instance": 1, "cpu": THREADS,
                "rpc": {"batching": true, "max_batch_size": size, "max_batch_timeout": timeout,
                        "worker_threads": workers, "max_queue_size": 1024},
            },
            "processor": "pytorch_cpu_1.10", "model_path": dir.to_string_lossy(),
            "model_entry": "bench_mlp.pt", "token": TOKEN,
        }))
        .unwrap();
        builder = builder.service(spec);
    }
    let server = builder.start().await.unwrap();
    assert!(
        server.wait_ready(Duration::from_secs(60)).await,
        "the torch services become ready"
    );
    server
}

/// The sum and count of the batch-size histogram of `target`'s eas service.
fn batches(server: &RunningPlatform, target: &Target) -> (f64, f64) {
    target
        .service
        .as_deref()
        .map_or((0.0, 0.0), |service| batch_stats(server, service))
}
