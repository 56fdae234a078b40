//! TorchScript models for the `torch` tests, traced with `tch` in the test setup, and an
//! independent reference of what they compute (plain Rust in f64, no libtorch).
//!
//! Why not Python torch: the PyPI torch 2.13.0 wheel is the CUDA build, and its Python bindings
//! (`libtorch_python.so`) link libtorch_cuda, cuDNN, NCCL and cuFile, gigabytes of nvidia
//! wheels; the CPU-only libtorch that scripts/libtorch.sh provisions has no Python side.
//! Tracing a closure in Rust writes the same kind of `torch.jit.save` file.

use std::path::{Path, PathBuf};

use tch::{CModule, Kind, Tensor};

/// The MLP's sizes: 4 inputs, 8 hidden (ReLU), 3 outputs.
pub const MLP: (usize, usize, usize) = (4, 8, 3);

/// Deterministic weights, so that the reference can recompute them.
fn w1(o: usize, i: usize) -> f64 {
    (0.37 * (o * MLP.0 + i + 1) as f64).sin() * 0.5
}
fn b1(o: usize) -> f64 {
    (0.11 * (o + 1) as f64).cos() * 0.1
}
fn w2(o: usize, i: usize) -> f64 {
    (0.23 * (o * MLP.1 + i + 1) as f64).cos() * 0.5
}
fn b2(o: usize) -> f64 {
    (0.19 * (o + 1) as f64).sin() * 0.1
}

/// A 2-D f32 tensor of `rows` x `cols` from `f(row, col)`.
fn matrix(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f64) -> Tensor {
    let values: Vec<f32> = (0..rows * cols)
        .map(|k| f(k / cols, k % cols) as f32)
        .collect();
    Tensor::from_slice(&values).reshape([rows as i64, cols as i64])
}

/// The MLP on one row, in f64: `relu(x W1^T + b1) W2^T + b2`.
pub fn mlp_reference(x: &[f32]) -> Vec<f64> {
    let hidden: Vec<f64> = (0..MLP.1)
        .map(|o| {
            let z: f64 = (0..MLP.0).map(|i| w1(o, i) * f64::from(x[i])).sum::<f64>() + b1(o);
            z.max(0.0)
        })
        .collect();
    (0..MLP.2)
        .map(|o| (0..MLP.1).map(|i| w2(o, i) * hidden[i]).sum::<f64>() + b2(o))
        .collect()
}

/// Where the models were written.
pub struct Models {
    /// The directory holding them (kept while this lives).
    pub dir: tempfile::TempDir,
}

impl Models {
    /// The path of model `name` (`mlp.pt`, `pair.pt`, `ints.pt`, `total.pt`, `probe.pt`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn trace(dir: &Path, name: &str, inputs: &[Tensor], f: &mut dyn FnMut(&[Tensor]) -> Vec<Tensor>) {
    let module =
        CModule::create_by_tracing("Model", "forward", inputs, &mut |xs| f(xs)).expect("traces");
    module
        .save(dir.join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// Writes the models:
/// - `mlp.pt`: the MLP, `x [N, 4] f32 -> y [N, 3] f32`;
/// - `pair.pt`: `(a [N, 3], b [N, 3]) -> 2a + b` (two arguments; tch's tracing cannot
///   return a tuple, "Exportable methods must have a single return value", so tuple and dict
///   outputs are covered by the unit tests of `torch::feed`);
/// - `ints.pt`: `x [N, K] i64 -> 3x + 1`;
/// - `total.pt`: `x [N, 4] f32 -> the sum of all of x` (a scalar: no row per input row, so
///   requests must not be stacked);
/// - `probe.pt`: `x [N, 1] f32 -> every row the sum of all of x` (rows match, so stacked
///   requests see each other: the test that a batch ran as one `forward`).
pub fn make() -> Models {
    let dir = tempfile::tempdir().expect("temp dir");
    let (n_in, n_hidden, n_out) = MLP;
    let w1t = matrix(n_hidden, n_in, w1).tr();
    let b1 = matrix(1, n_hidden, |_, o| b1(o));
    let w2t = matrix(n_out, n_hidden, w2).tr();
    let b2 = matrix(1, n_out, |_, o| b2(o));
    let x = Tensor::zeros([2, n_in as i64], (Kind::Float, tch::Device::Cpu));
    trace(dir.path(), "mlp.pt", &[x.shallow_clone()], &mut |xs| {
        vec![(xs[0].matmul(&w1t) + &b1).relu().matmul(&w2t) + &b2]
    });
    // Distinct tensors: the tracer tells inputs apart by their storage.
    let a = Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu));
    let b = Tensor::ones([2, 3], (Kind::Float, tch::Device::Cpu));
    trace(dir.path(), "pair.pt", &[a, b], &mut |xs| {
        vec![&xs[0] * 2 + &xs[1]]
    });
    let i = Tensor::zeros([2, 2], (Kind::Int64, tch::Device::Cpu));
    trace(dir.path(), "ints.pt", &[i], &mut |xs| vec![&xs[0] * 3 + 1]);
    let one = Tensor::zeros([2, 1], (Kind::Float, tch::Device::Cpu));
    trace(dir.path(), "probe.pt", &[one], &mut |xs| {
        vec![xs[0].zeros_like() + xs[0].sum(Kind::Float)]
    });
    trace(dir.path(), "total.pt", &[x], &mut |xs| {
        vec![xs[0].sum(Kind::Float)]
    });
    Models { dir }
}

/// Asserts that `got` is within `tol` of `want`, element by element.
pub fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{k}]: {g} vs {w} (got {got:?}, want {want:?})"
        );
    }
}
