//! GPUs through served specs.
//!
//! Everywhere (no GPU needed):
//! - a spec with `metadata.gpu: 1` on a machine without an NVIDIA driver (or a build without
//!   the `cuda` feature) fails at start, and the instance's failure names what is missing;
//! - slices (`gpu_memory`, `gpu_core_percentage`) of three instances on a one-GPU test
//!   inventory: two are packed onto GPU 0 with their limits in the processor's `InitContext`,
//!   the third fails saying the GPU is full, and a stopped instance gives its slice back.
//!
//! On a GPU (`EAS_REQUIRE_GPU=1`, which `scripts/gpu-check` sets; built with `--features cuda` and run
//! with the GPU build of ONNX Runtime in `ORT_DYLIB_PATH`):
//! - the first spec runs on GPU 0 instead;
//! - ONNX on CUDA answers as ONNX on the CPU within 1e-4;
//! - two sliced `onnx` instances share the real GPU 0, each within its memory limit, and the
//!   NVML series (`eas_gpu_*`) appear in `/metrics`.
//!
//! The GPU-only tests are gated on `EAS_REQUIRE_GPU=1` rather than on finding a GPU, so that a GPU
//! host where something is missing (driver, NVML, the GPU build of ONNX Runtime) fails them
//! instead of skipping them; without `EAS_REQUIRE_GPU=1` they only print why they did not run (even
//! under `EAS_REQUIRE_ALL=1`: CI has no GPU to require).

#[path = "support/json_merge.rs"]
mod json_merge;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eas_core::processor::{Device, InitContext, ProcessError, Processor, Request, Response};
use eas_core::spec::ServiceSpec;
use eas_runtime::gpu::{GpuInfo, GpuInventory};
use eas_runtime::platform::{Platform, RunningPlatform};
use eas_runtime::provider::InProcess;
use eas_runtime::registry::ProcessorRegistry;
use eas_runtime::replica::ReplicaState;
use eas_scheduler::control::NodeCapacity;
use serde_json::{Value, json};

const TOKEN: &str = "gpu-token";
const GIB: u64 = 1 << 30;

/// Whether this run is on a GPU host that must pass the GPU tests (`scripts/gpu-check`).
fn gpu_expected() -> bool {
    std::env::var("EAS_REQUIRE_GPU").as_deref() == Ok("1")
}

/// Prints why a GPU-only test did not run (no panic: see the module docs).
fn not_on_a_gpu(test: &str) -> bool {
    if gpu_expected() {
        return false;
    }
    println!("SKIPPED: {test}: no GPU expected here (scripts/gpu-check sets EAS_REQUIRE_GPU=1)");
    true
}

/// A processor that keeps the contexts it was initialized with, and echoes.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<InitContext>>>,
}

impl Processor for Recorder {
    fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
        self.seen.lock().expect("lock").push(ctx.clone());
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        batch
            .iter()
            .map(|r| Ok(Response::ok(r.body.clone())))
            .collect()
    }
}

fn spec(name: &str, processor: &str, extra: Value) -> ServiceSpec {
    let mut doc = json!({
        "metadata": {"name": name, "instance": 1},
        "processor": processor,
        "model_path": ".",
        "token": TOKEN,
    });
    json_merge::merge(&mut doc, extra);
    ServiceSpec::from_json_value(doc).expect("test spec is valid")
}

fn registry(recorder: &Recorder) -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::with_builtins();
    let recorder = recorder.clone();
    registry.register("recorder", move |_| Ok(Box::new(recorder.clone())));
    registry
}

async fn start(
    recorder: &Recorder,
    provider: Option<InProcess>,
    spec: ServiceSpec,
) -> RunningPlatform {
    // Long: the failed instances stay there to be looked at.
    start_with_period(recorder, provider, spec, Duration::from_secs(30)).await
}

async fn start_with_period(
    recorder: &Recorder,
    provider: Option<InProcess>,
    spec: ServiceSpec,
    period: Duration,
) -> RunningPlatform {
    let mut builder = Platform::builder()
        .registry(registry(recorder))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .control_period(period)
        .service(spec);
    if let Some(provider) = provider {
        builder = builder.provider(Arc::new(provider));
    }
    builder.start().await.expect("server starts")
}

/// The states of the service's instances once none is starting, within 20 s.
async fn settled(server: &RunningPlatform, name: &str) -> Vec<ReplicaState> {
    let start = Instant::now();
    loop {
        let states: Vec<ReplicaState> = server.services()[name]
            .instances()
            .iter()
            .map(eas_runtime::replica::Replica::state)
            .collect();
        if !states.is_empty() && !states.contains(&ReplicaState::Starting) {
            return states;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Both ways a GPU instance is turned down without a GPU: the control loop's placement on a
/// node without GPUs refuses it (the default provider counts the GPUs it finds), and where a
/// node says it has one (a configured capacity), the lease at start fails the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_asking_for_a_gpu_should_fail_at_start_naming_what_is_missing() {
    let claims_a_gpu = InProcess::with_node(NodeCapacity::new(16_000, 65_536, 1));
    for provider in [None, Some(claims_a_gpu)] {
        let leased = provider.is_some();
        let recorder = Recorder::default();
        let server = start(
            &recorder,
            provider,
            spec("whole", "recorder", json!({"metadata": {"gpu": 1}})),
        )
        .await;
        if gpu_expected() {
            let states = settled(&server, "whole").await;
            assert_eq!(states, [ReplicaState::Ready], "EAS_REQUIRE_GPU=1");
            let seen = recorder.seen.lock().expect("lock").clone();
            assert_eq!(seen[0].device, Device::Cuda { ordinal: 0 });
            server.shutdown().await;
            continue;
        }
        let start = Instant::now();
        let why = loop {
            let failed =
                server.services()["whole"]
                    .instances()
                    .iter()
                    .find_map(|r| match r.state() {
                        ReplicaState::Failed(why) => Some(why),
                        _ => None,
                    });
            if let Some(why) = failed {
                assert!(leased, "the placement should have refused it: {why}");
                assert!(why.contains("asks for 1 whole GPU"), "{why}");
                break why;
            }
            let refused = server
                .control()
                .describe("whole")
                .ok()
                .and_then(|v| v.refused);
            if let Some(why) = refused.filter(|_| !leased) {
                assert!(why.contains("gpu: each asks 1 GPU"), "{why}");
                break why;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "neither failed nor refused"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if !leased {
            // Nothing to wait for: the node cannot hold the one instance it wants.
            let waited =
                tokio::time::timeout(Duration::from_secs(30), server.wait_ready(Duration::MAX))
                    .await;
            assert_eq!(waited, Ok(false), "wait_ready ends, not ready");
        }
        println!("the start error: {why}");
        assert!(
            why.contains("no NVIDIA driver was found") || why.contains("`cuda` feature"),
            "{why}"
        );
        assert!(
            recorder.seen.lock().expect("lock").is_empty(),
            "its processor never ran (not on the CPU instead)"
        );
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_should_share_one_gpu_and_be_given_back_when_an_instance_stops() {
    let recorder = Recorder::default();
    let gpus = GpuInventory::with_devices(vec![GpuInfo::new(0, "test GPU", 16 * GIB, "GPU-t")]);
    let provider =
        InProcess::with_node(NodeCapacity::new(16_000, 65_536, 1)).with_gpus(gpus.clone());
    let server = start(
        &recorder,
        Some(provider),
        spec(
            "sliced",
            "recorder",
            json!({"metadata": {"instance": 3, "gpu_memory": 6, "gpu_core_percentage": 30}}),
        ),
    )
    .await;
    let states = settled(&server, "sliced").await;
    let ready = states.iter().filter(|s| **s == ReplicaState::Ready).count();
    assert_eq!(ready, 2, "{states:?}");
    let failed: Vec<&String> = states
        .iter()
        .filter_map(|s| match s {
            ReplicaState::Failed(why) => Some(why),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{states:?}");
    assert!(
        failed[0].contains("no GPU has that much left"),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("GPU 0: 2 slices"), "{}", failed[0]);
    let seen = recorder.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    for ctx in &seen {
        assert_eq!(ctx.device, Device::Cuda { ordinal: 0 });
        assert_eq!(ctx.gpu_memory_limit, Some(6 * GIB));
        assert_eq!(ctx.gpu_core_percentage, Some(30));
    }
    assert_eq!(gpus.usage()[0].memory_bytes, 12 * GIB);
    // Stopping one gives its slice back.
    let service = Arc::clone(&server.services()["sliced"]);
    let first_ready = service
        .instances()
        .iter()
        .find(|r| r.is_ready())
        .map(eas_runtime::replica::Replica::index)
        .expect("a ready instance");
    assert_eq!(service.retire(&[first_ready]), 1);
    let start = Instant::now();
    while gpus.usage()[0].memory_bytes != 6 * GIB {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            gpus.usage()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
    assert!(gpus.usage()[0].is_free(), "{:?}", gpus.usage());
}

/// Without NVML (no driver here) the autoscaler's `gpu` strategy has no samples, and the
/// scaling decisions say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gpu_strategy_without_nvml_should_say_why_it_has_no_data() {
    if gpu_expected() {
        println!(
            "SKIPPED: the_gpu_strategy_without_nvml_should_say_why_it_has_no_data: NVML is there"
        );
        return;
    }
    let recorder = Recorder::default();
    let gpus = GpuInventory::with_devices(vec![GpuInfo::new(0, "test GPU", 16 * GIB, "GPU-t")]);
    let provider = InProcess::with_node(NodeCapacity::new(16_000, 65_536, 1)).with_gpus(gpus);
    let server = start_with_period(
        &recorder,
        Some(provider),
        spec(
            "gpu_scaled",
            "recorder",
            json!({
                "metadata": {"gpu_memory": 2},
                "autoscaler": {"min": 1, "max": 2, "strategies": {"gpu": 50}},
            }),
        ),
        Duration::from_millis(100),
    )
    .await;
    // The service's warnings say it from the start, ...
    let view = server.control().describe("gpu_scaled").expect("described");
    let warning = view
        .warnings
        .iter()
        .find(|w| w.starts_with("autoscaler.strategies.gpu"))
        .unwrap_or_else(|| panic!("{:?}", view.warnings));
    println!("the warning: {warning}");
    assert!(
        warning.contains("no NVIDIA driver was found") || warning.contains("`cuda` feature"),
        "{warning}"
    );
    // ... and each scaling decision keeps the count for want of samples.
    let start = Instant::now();
    loop {
        let view = server.control().describe("gpu_scaled").expect("described");
        let reasons: Vec<&String> = view.decisions.iter().map(|d| &d.reason).collect();
        if reasons
            .iter()
            .any(|r| r.contains("gpu: invalid policy: did not receive samples"))
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{reasons:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

/// Every number in `value`, in document order.
#[cfg(feature = "onnx")]
fn numbers(value: &Value, out: &mut Vec<f64>) {
    match value {
        Value::Number(n) => out.extend(n.as_f64()),
        Value::Array(items) => items.iter().for_each(|v| numbers(v, out)),
        Value::Object(map) => map.values().for_each(|v| numbers(v, out)),
        _ => {}
    }
}

/// `examples/models/mlp.onnx`, or the copy in `$EAS_EXAMPLE_MODELS` (scripts/gpu-check runs
/// these tests from a bundle, away from the checkout).
#[cfg(feature = "onnx")]
fn mlp() -> std::path::PathBuf {
    std::env::var_os("EAS_EXAMPLE_MODELS")
        .map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models"),
            std::path::PathBuf::from,
        )
        .join("mlp.onnx")
}

#[cfg(feature = "onnx")]
#[test]
fn onnx_on_cuda_should_match_the_cpu() {
    if not_on_a_gpu("onnx_on_cuda_should_match_the_cpu") {
        return;
    }
    let body = r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}"#;
    let run = |device: Device| {
        let mut onnx = eas_runtime::onnx::OnnxProcessor::new();
        onnx.initialize(
            &InitContext::new("s")
                .with_model_entry(mlp())
                .with_device(device),
        )
        .unwrap_or_else(|e| panic!("{device:?}: {e}"));
        let answer = onnx.process(&[Request::new(body)]).remove(0);
        let answer = answer.unwrap_or_else(|e| panic!("{device:?}: {e}"));
        let json: Value = serde_json::from_slice(&answer.body).expect("json answer");
        let mut out = Vec::new();
        numbers(&json, &mut out);
        out
    };
    let cpu = run(Device::Cpu);
    let gpu = run(Device::Cuda { ordinal: 0 });
    assert_eq!(cpu.len(), gpu.len());
    for (c, g) in cpu.iter().zip(&gpu) {
        assert!(
            (c - g).abs() <= 1e-4 * c.abs().max(1.0),
            "cpu {cpu:?} gpu {gpu:?}"
        );
    }
}

#[cfg(feature = "onnx")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sliced_onnx_instances_should_share_a_real_gpu_within_their_limits() {
    if not_on_a_gpu("two_sliced_onnx_instances_should_share_a_real_gpu_within_their_limits") {
        return;
    }
    let devices = GpuInventory::shared()
        .devices()
        .unwrap_or_else(|e| panic!("EAS_REQUIRE_GPU=1: {e}"));
    assert!(!devices.is_empty(), "EAS_REQUIRE_GPU=1 but no GPU found");
    let limit_gb = 2;
    let recorder = Recorder::default();
    let server = start(
        &recorder,
        None,
        spec(
            "onnx_sliced",
            "onnx",
            json!({
                "metadata": {"instance": 2, "gpu_memory": limit_gb, "gpu_core_percentage": 40},
                "model_path": mlp().to_string_lossy(),
            }),
        ),
    )
    .await;
    let states = settled(&server, "onnx_sliced").await;
    assert_eq!(states, [ReplicaState::Ready, ReplicaState::Ready]);
    let usage = GpuInventory::shared().usage();
    assert_eq!(
        (usage[0].slices, usage[0].core_percent),
        (2, 80),
        "{usage:?}"
    );
    // Load both instances, then read NVML through /metrics.
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/predict/onnx_sliced", server.local_addr());
    for _ in 0..200 {
        let answer = client
            .post(&url)
            .header("Authorization", TOKEN)
            .body(r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}}"#)
            .send()
            .await
            .expect("sent");
        assert_eq!(answer.status().as_u16(), 200);
    }
    let metrics_url = format!("http://{}/metrics", server.local_addr());
    let start = Instant::now();
    let text = loop {
        let text = reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.contains("eas_gpu_process_memory_bytes{") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no GPU series:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        text.contains("eas_gpu_utilization_ratio{device=\"0\"}"),
        "{text}"
    );
    assert!(
        text.contains("eas_gpu_memory_total_bytes{device=\"0\"}"),
        "{text}"
    );
    // The two instances share this process: its GPU memory stays within both arenas' limits
    // plus what CUDA itself takes per process (context, cuDNN/cuBLAS workspaces: under 2 GiB).
    let pid = std::process::id().to_string();
    let used: f64 = text
        .lines()
        .filter(|l| l.starts_with("eas_gpu_process_memory_bytes{") && l.contains(&pid))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    #[allow(clippy::cast_precision_loss)]
    let bound = (2 * limit_gb * GIB + 2 * GIB) as f64;
    assert!(
        used > 0.0 && used <= bound,
        "{used} bytes of GPU memory, bound {bound}"
    );
    server.shutdown().await;
}
