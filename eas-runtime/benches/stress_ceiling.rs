//! The stress load generator's ceiling (`eas_runtime::stress`) against the project's own hyper
//! bench client (`benches/support/load.rs`), in the same run, against the eas `echo` service:
//!
//! - **bench client**: 64 keep-alive connections, closed loop (as `http_load`);
//! - **stress closed**: `stress::run` in fixed mode at a concurrency of 64 (closed loop);
//! - **stress open**: `stress::run` in fixed mode at 1.5x the bench client's rate (open loop,
//!   at most as many connections): more than the server can take, so the rate it reaches is
//!   the most the generator (schedule, queue, workers) and the server together deliver.
//!
//! The three take turns, round after round; each figure is the median over the rounds of the
//! answers per second in the measured window (after a warm-up), with the cores the generator's
//! threads used (`load-gen*`, from `/proc`). The ratios stress/bench are printed: the
//! generator must not be the bottleneck (goal >= 1.0x for the closed loop).
//!
//! **onnx** (with ONNX Runtime, as `http_load` finds it): the ONNX example
//! (`examples/services/mlp.json`, `examples/models/mlp.onnx`, JSON requests) served in this
//! process; auto mode's capacity (errors within 1%, answers keeping up with the rate; no
//! `maxRT`) next to the bench client's closed-loop rate at 64 connections, the `http_load`
//! method (goal: within ±20%). Auto mode runs twice: with at most as many connections as the
//! bench client (like for like: at most that many requests in flight), then with the
//! generator's default (1024), where the open loop's bursts (any stall of server or generator
//! on this shared machine) meet the example's `rpc.max_queue_size` (64) and are answered 450,
//! which 64 closed-loop connections never see. `EAS_BENCH_MLP_QUEUE` sets another
//! `rpc.max_queue_size` for the run.
//!
//! Run: `cargo bench -p eas-runtime --bench stress_ceiling`. Settings (env):
//! `EAS_BENCH_SECS` (window, 3 s), `EAS_BENCH_WARMUP_SECS` (1 s), `EAS_BENCH_ROUNDS` (3),
//! `EAS_BENCH_CONNECTIONS` (64), `EAS_BENCH_PARTS` (`echo,onnx`).

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

#[path = "support/load.rs"]
mod load;

use std::time::Duration;

use axum::body::Bytes;
use eas_core::spec::ServiceSpec;
use eas_runtime::platform::Platform;
use eas_runtime::stress::{
    self, AutoPlan, Bodies, Credentials, FixedPlan, LoadOptions, Pace, Plan, RunOptions,
};
use load::{CpuSnapshot, env_parse, median};
use serde_json::json;

const TOKEN: &str = "bench-token";

fn main() {
    let window = Duration::from_secs_f64(env_parse("EAS_BENCH_SECS").unwrap_or(3.0_f64).max(1.0));
    let warmup = Duration::from_secs_f64(
        env_parse("EAS_BENCH_WARMUP_SECS")
            .unwrap_or(1.0_f64)
            .max(0.5),
    );
    let rounds = env_parse::<usize>("EAS_BENCH_ROUNDS").unwrap_or(3).max(1);
    let connections = env_parse::<usize>("EAS_BENCH_CONNECTIONS")
        .unwrap_or(64)
        .max(1);
    let servers = load::runtime(2, "srv-io");
    let clients = load::runtime(2, "load-gen");
    println!(
        "stress_ceiling: {connections} connections, medians of {rounds} rounds of {:.1} s after \
         {:.1} s warm-up; 2 client + 2 server tokio threads",
        window.as_secs_f64(),
        warmup.as_secs_f64()
    );
    println!("machine: {}", load::machine());
    println!("bench client: {}", load::GENERATOR);

    let parts = std::env::var("EAS_BENCH_PARTS").unwrap_or_else(|_| "echo,onnx".into());
    if parts.contains("echo") {
        echo(&servers, &clients, connections, warmup, window, rounds);
    }
    if parts.contains("onnx") {
        onnx(&servers, &clients, connections, warmup, window, rounds);
    }
}

/// The generator's ceiling against the echo service, next to the bench client's.
fn echo(
    servers: &tokio::runtime::Runtime,
    clients: &tokio::runtime::Runtime,
    connections: usize,
    warmup: Duration,
    window: Duration,
    rounds: usize,
) {
    let body = Bytes::from(
        "{\"id\": 12345, \"text\": \"a small request body of about one hundred bytes, echoed back\"}",
    );
    let server = servers.block_on(async {
        let spec = ServiceSpec::from_json_value(json!({
            "metadata": {"name": "echo", "instance": 1},
            "processor": "echo", "model_path": ".", "token": TOKEN,
        }))
        .unwrap();
        let server = Platform::builder()
            .service(spec)
            .bind("127.0.0.1:0".parse().unwrap())
            .start()
            .await
            .unwrap();
        assert!(server.wait_ready(Duration::from_secs(30)).await);
        server
    });
    let addr = server.local_addr();
    let bench_target = load::Target::new(
        "bench client",
        addr,
        "/api/predict/echo",
        Some(TOKEN),
        "text/plain",
        &body,
    )
    .expecting(body.len());
    let url = format!("http://{addr}/api/predict/echo");
    let stress_target = stress::Target::new(&url, &Bodies::one(body.clone()))
        .unwrap()
        .with_credentials(Credentials::Token(TOKEN.into()))
        .with_content_type("text/plain")
        .unwrap();

    // One stress run: the mean answers/s over the seconds after the warm-up, the client's cores.
    let stress_once = |pace: Pace| -> (f64, f64, u64) {
        let plan = Plan::Fixed(FixedPlan::new(pace, warmup + window));
        let before = CpuSnapshot::take(&[]);
        let report = clients
            .block_on(stress::run(
                stress_target.clone(),
                plan,
                RunOptions::named("ceiling")
                    .with_load(LoadOptions::default().with_max_connections(connections)),
            ))
            .unwrap();
        let after = CpuSnapshot::take(&[]);
        let skip = warmup.as_secs_f64().ceil() as u64;
        let rows: Vec<f64> = report
            .seconds
            .iter()
            .filter(|r| r.second >= skip && r.stats.secs >= 0.999)
            .map(|r| r.stats.qps)
            .collect();
        let rate = rows.iter().sum::<f64>() / rows.len().max(1) as f64;
        (rate, after.since(&before).client, report.summary.errors)
    };

    let (mut bench, mut closed, mut open) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bench_cpu, mut closed_cpu, mut open_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = 0;
    for round in 0..rounds {
        // The three take turns in a rotating order, so none always runs first.
        let mut line = Vec::new();
        for turn in 0..3 {
            match (round + turn) % 3 {
                0 => {
                    let measured = load::Load {
                        clients,
                        connections,
                        warmup,
                        window,
                    }
                    .measure(&bench_target, &[]);
                    errors += measured.errors;
                    bench.push(measured.rate);
                    bench_cpu.push(measured.cpu.client);
                    line.push(format!("bench client {:.0}/s", measured.rate));
                }
                1 => {
                    let (rate, cpu, e) = stress_once(Pace::Concurrency(connections));
                    closed.push(rate);
                    closed_cpu.push(cpu);
                    errors += e;
                    line.push(format!("stress closed {rate:.0}/s"));
                }
                _ => {
                    // 1.5x what the bench client reached last (or a first guess): past capacity.
                    let last = bench.last().copied().unwrap_or(40_000.0);
                    let (rate, cpu, _) = stress_once(Pace::Qps(last * 1.5));
                    open.push(rate);
                    open_cpu.push(cpu);
                    line.push(format!("stress open {rate:.0}/s"));
                }
            }
        }
        println!("round {}: {}", round + 1, line.join(", "));
    }
    let (b, c, o) = (median(bench), median(closed), median(open));
    println!();
    println!("== summary ==");
    let per = |cores: f64, rate: f64| cores * 1e6 / rate.max(1.0);
    let (bc, cc, oc) = (median(bench_cpu), median(closed_cpu), median(open_cpu));
    println!(
        "  bench client (closed, {connections} conns)  {b:>8.0} req/s; client cores {bc:.2} \
         ({:.1} us per answer)",
        per(bc, b)
    );
    println!(
        "  stress closed ({connections} conns)         {c:>8.0} req/s; client cores {cc:.2} \
         ({:.1} us per answer); {:.2}x the bench client (goal >= 1.0x)",
        per(cc, c),
        c / b.max(1.0)
    );
    println!(
        "  stress open (1.5x, {connections} conns)      {o:>8.0} req/s; client cores {oc:.2} \
         ({:.1} us per answer); {:.2}x the bench client",
        per(oc, o),
        o / b.max(1.0)
    );
    if errors > 0 {
        println!("  {errors} errors in the closed-loop runs");
    }
    servers.block_on(server.shutdown());
}

/// Auto mode's capacity on the ONNX example against the bench client's closed-loop rate.
fn onnx(
    servers: &tokio::runtime::Runtime,
    clients: &tokio::runtime::Runtime,
    connections: usize,
    warmup: Duration,
    window: Duration,
    rounds: usize,
) {
    println!();
    println!(
        "== onnx: the ONNX example (examples/services/mlp.json), auto mode vs the bench client =="
    );
    if let Err(e) = eas_runtime::onnx::runtime() {
        println!("SKIPPED: stress_ceiling onnx: {e}");
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let spec_text = std::fs::read_to_string(format!("{root}/examples/services/mlp.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&spec_text).unwrap();
    // `EAS_BENCH_MLP_QUEUE`: another `rpc.max_queue_size` (64 by default) for the run.
    if let Some(queue) = env_parse::<u32>("EAS_BENCH_MLP_QUEUE") {
        doc["metadata"]["rpc"]["max_queue_size"] = json!(queue);
        println!("rpc.max_queue_size: {queue}");
    }
    let spec = ServiceSpec::from_json_value(doc).unwrap();
    let token = spec.token.clone().unwrap_or_default();
    let server = servers.block_on(async {
        let server = Platform::builder()
            .service(spec)
            .base_dir(root)
            .bind("127.0.0.1:0".parse().unwrap())
            .start()
            .await
            .unwrap();
        assert!(
            server.wait_ready(Duration::from_secs(60)).await,
            "mlp ready"
        );
        server
    });
    let addr = server.local_addr();
    let body = Bytes::from(r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}}"#);
    let bench_target = load::Target::new(
        "bench client",
        addr,
        "/api/predict/mlp",
        Some(&token),
        "application/json",
        &body,
    );
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let measured = load::Load {
            clients,
            connections,
            warmup,
            window,
        }
        .measure(&bench_target, &[]);
        assert_eq!(measured.errors, 0, "{:?}", measured.first_error);
        rates.push(measured.rate);
    }
    let bench = median(rates);
    let target = stress::Target::new(
        &format!("http://{addr}/api/predict/mlp"),
        &Bodies::one(body),
    )
    .unwrap()
    .with_credentials(Credentials::Token(token))
    .with_content_type("application/json")
    .unwrap();
    // Like for like: as many connections as the bench client (so at most that many requests
    // in flight, as in `http_load`); then the generator's default (1024), where the open
    // loop's bursts meet the example's `rpc.max_queue_size` (64) and count as 450 errors.
    for cap in [connections, LoadOptions::default().max_connections] {
        let plan = AutoPlan::default()
            .with_qps_range(100.0, 200_000.0)
            .with_timing(
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4),
            )
            .with_max_duration(Duration::from_secs(180));
        let report = clients
            .block_on(stress::run(
                target.clone(),
                Plan::Auto(plan),
                RunOptions::named("onnx auto")
                    .with_load(LoadOptions::default().with_max_connections(cap)),
            ))
            .unwrap();
        let probes: Vec<String> = report
            .steps
            .iter()
            .map(|s| format!("{:.0}{}", s.target, if s.passed { "+" } else { "-" }))
            .collect();
        println!(
            "  auto, at most {cap} connections: probes {}",
            probes.join(" ")
        );
        for step in report.steps.iter().filter(|s| !s.passed) {
            println!("    {:.0} QPS failed: {}", step.target, step.reason);
        }
        match report.capacity_qps {
            Some(capacity) => println!(
                "  bench client (closed, {connections} conns) {bench:.0} req/s; auto capacity \
                 ({cap} conns) {capacity:.0} QPS = {:.2}x (goal 0.8x to 1.2x); {}",
                capacity / bench.max(1.0),
                report.stopped_because
            ),
            None => println!(
                "  bench client {bench:.0} req/s; auto ({cap} conns) found no capacity: {}",
                report.stopped_because
            ),
        }
    }
    servers.block_on(server.shutdown());
}
