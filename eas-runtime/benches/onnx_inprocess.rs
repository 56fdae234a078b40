//! The in-process baseline of the ONNX benchmarks: the MLP 256 -> 1024 -> 1024 -> 10 (FP32)
//! run by `ort` with 2 intra-op threads at batch sizes 1, 8, 32 and 128, then the same model
//! through `OnnxProcessor::process` (protobuf requests decoded, stacked, run, split and
//! encoded), as a ratio to the raw run at the same batch size. Prints medians of rows/s.
//!
//! Run: `EAS_PYTHON=... ORT_DYLIB_PATH=... cargo bench -p eas-runtime --bench onnx_inprocess`
//! (`EAS_BENCH_SAMPLES` sets the samples per figure, 11 by default). The model is written by
//! `eas_runtime::onnx::testing::cached_models(python, dir, true)` as `dir/bench_mlp.onnx`;
//! other benches reuse it the same way.

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::path::Path;
use std::time::{Duration, Instant};

use eas_core::Processor;
use eas_core::processor::{InitContext, Request};
use eas_runtime::onnx::{OnnxProcessor, runtime, testing};
use eas_runtime::proto::{DataProto, DataType, Message, TensorProto};
use ort::session::Session;
use ort::value::TensorRef;

const FEATURES: usize = 256;
const THREADS: usize = 2;
const BATCHES: [usize; 4] = [1, 8, 32, 128];
/// How long one sample runs.
const SAMPLE: Duration = Duration::from_millis(300);

fn main() {
    let Some(python) = testing::python_from_env() else {
        println!("SKIPPED: onnx_inprocess: EAS_PYTHON is not set");
        return;
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            println!("SKIPPED: onnx_inprocess: {e}");
            return;
        }
    };
    let samples: usize = std::env::var("EAS_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let dir =
        testing::cached_models(&python, Path::new(env!("CARGO_TARGET_TMPDIR")), true).unwrap();
    let model = dir.join("bench_mlp.onnx");
    println!(
        "onnx_inprocess: {} ({THREADS} intra-op threads, {samples} samples of {SAMPLE:?}, medians)",
        model.display()
    );
    println!("ONNX Runtime: {}", runtime.library());

    let mut session = Session::builder(runtime.environment())
        .unwrap()
        .with_intra_threads(THREADS)
        .unwrap()
        .with_inter_threads(1)
        .unwrap()
        .commit_from_file(&model)
        .unwrap();
    let mut raw_run = |batch: usize, x: &[f32]| {
        let input = TensorRef::from_array_view(([batch, FEATURES], x)).unwrap();
        let out = session.run(ort::inputs!["x" => input]).unwrap();
        assert_eq!(
            out["y"].try_extract_tensor::<f32>().unwrap().1.len(),
            batch * 10
        );
    };
    for batch in BATCHES {
        let x = inputs(batch, 0);
        let rate = median_rate(samples, batch, || raw_run(batch, &x));
        println!("ort::Session::run               batch {batch:>3}: {rate:>8.0} rows/s");
    }

    let mut onnx = OnnxProcessor::new();
    onnx.initialize(
        &InitContext::new("bench")
            .with_model_entry(&model)
            .with_threads(THREADS),
    )
    .unwrap();
    // Samples of the processor and of raw ort alternate, so that load from elsewhere on the
    // machine weighs on both alike.
    for requests in [1, 32] {
        let batch: Vec<Request> = (0..requests).map(|i| request(&inputs(1, i))).collect();
        let x = inputs(requests, 0);
        let mut process = || {
            let answers = onnx.process(&batch);
            assert!(answers.iter().all(Result::is_ok));
        };
        let (ours, base) = median_rates(samples, requests, &mut process, &mut || {
            raw_run(requests, &x)
        });
        println!(
            "OnnxProcessor::process {requests:>3} x 1 row: {ours:>8.0} rows/s = {:.3}x ort at batch \
             {requests} ({base:.0} rows/s, alternating samples)",
            ours / base
        );
    }
}

/// `batch` rows of inputs, different for each `seed`.
fn inputs(batch: usize, seed: usize) -> Vec<f32> {
    (0..batch * FEATURES)
        .map(|k| (((k + seed * 7919) % 97) as f32 / 97.0) - 0.5)
        .collect()
}

/// A protobuf request with input `x` of one row.
fn request(x: &[f32]) -> Request {
    let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensor = TensorProto::new("x", vec![1, FEATURES as i64], DataType::Float, raw);
    Request::new(
        DataProto {
            tensors: vec![tensor],
        }
        .encode_to_vec(),
    )
}

/// Calls per sample so that one sample of `f` runs for about [`SAMPLE`] (after warming up).
fn calls_per_sample(f: &mut impl FnMut()) -> u32 {
    let start = Instant::now();
    let mut calls = 0_u32;
    while start.elapsed() < SAMPLE / 2 || calls < 3 {
        f();
        calls += 1;
    }
    calls.saturating_mul(2)
}

/// Rows per second of `calls` calls of `f`, each handling `rows` rows.
fn rate(calls: u32, rows: usize, f: &mut impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    f64::from(calls) * rows as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median over `samples` of rows per second of `f` (which handles `rows` rows a call).
fn median_rate(samples: usize, rows: usize, mut f: impl FnMut()) -> f64 {
    let calls = calls_per_sample(&mut f);
    median((0..samples).map(|_| rate(calls, rows, &mut f)).collect())
}

/// The medians of `a` and `b`, their samples alternating.
fn median_rates(
    samples: usize,
    rows: usize,
    a: &mut impl FnMut(),
    b: &mut impl FnMut(),
) -> (f64, f64) {
    let (calls_a, calls_b) = (calls_per_sample(a), calls_per_sample(b));
    let (mut rates_a, mut rates_b) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        rates_a.push(rate(calls_a, rows, a));
        rates_b.push(rate(calls_b, rows, b));
    }
    (median(rates_a), median(rates_b))
}
