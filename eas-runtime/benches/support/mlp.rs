//! The bench MLP (`bench_mlp.onnx` of `testing::cached_models`: x FP32 [N, 256] -> y FP32
//! [N, 10], 256-1024-1024-10) as the load benches send it: single-row `DataProto` requests,
//! their answers, and the batch sizes an eas service ran. Included with
//! `#[path = "support/mlp.rs"] mod mlp;`.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

use std::path::{Path, PathBuf};

use eas_runtime::onnx::{OrtRuntime, runtime, testing};
use eas_runtime::platform::RunningPlatform;
use eas_runtime::proto::{DataProto, DataType, Message, TensorProto};

/// Input features of a row.
pub const FEATURES: usize = 256;
/// Outputs of a row.
pub const OUTPUTS: usize = 10;

/// The ONNX Runtime and the folder of the bench models (written by `EAS_PYTHON` if not cached);
/// or why the bench cannot run them.
pub fn setup() -> Result<(&'static OrtRuntime, PathBuf), String> {
    let Some(python) = testing::python_from_env() else {
        return Err("EAS_PYTHON is not set (the Python that writes the model)".to_owned());
    };
    let runtime = runtime().map_err(|e| e.to_string())?;
    let dir = testing::cached_models(&python, Path::new(env!("CARGO_TARGET_TMPDIR")), true)
        .expect("the bench model is written");
    Ok((runtime, dir))
}

/// `batch` rows of inputs, different for each `seed`.
pub fn inputs(batch: usize, seed: usize) -> Vec<f32> {
    (0..batch * FEATURES)
        .map(|k| (((k + seed * 7919) % 97) as f32 / 97.0) - 0.5)
        .collect()
}

/// A `DataProto` with input `x` of one row.
pub fn request_proto(x: &[f32]) -> Vec<u8> {
    let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensor = TensorProto::new("x", vec![1, FEATURES as i64], DataType::Float, raw);
    DataProto {
        tensors: vec![tensor],
    }
    .encode_to_vec()
}

/// The `y` of a `DataProto` answer.
pub fn decode_answer(body: &[u8]) -> Vec<f32> {
    let answer = DataProto::decode(body).expect("the answer is a DataProto");
    let y = answer
        .tensors
        .iter()
        .find(|t| t.name == "y")
        .expect("the answer has y");
    y.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Panics unless `got` is `expected` within float tolerance.
pub fn check_close(name: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{name}: answer length");
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g - e).abs() <= 1e-4 * e.abs().max(1.0),
            "{name}: {got:?} vs {expected:?}"
        );
    }
}

/// The sum and count of the batch-size histogram of `service`.
pub fn batch_stats(server: &RunningPlatform, service: &str) -> (f64, f64) {
    let text = server.edge().metrics().encode();
    let label = format!("service=\"{service}\"");
    let value = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (value("eas_batch_size_sum"), value("eas_batch_size_count"))
}
