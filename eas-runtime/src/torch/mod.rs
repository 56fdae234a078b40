//! The `torch` processor: TorchScript models (`torch.jit.save` files) run by libtorch through
//! `tch`.
//!
//! libtorch 2.13.0 must be present at build and at run time: `scripts/libtorch.sh` provisions
//! a CPU-only one from PyPI wheels and exports `LIBTORCH`, `LIBTORCH_CXX11_ABI` and
//! `LD_LIBRARY_PATH`. [`TorchProcessor`](crate::torch::TorchProcessor) is the
//! [`Processor`](eas_core::Processor) an instance hosts; the registry finds it as `torch` and
//! as the EAS `pytorch` family (`pytorch_cpu_1.10`, `pytorch_gpu_1.10`, ...).
//!
//! # Request and answer bodies
//! - **Protobuf** (the default; what the `eas-prediction` SDK's `TorchRequest` sends): a
//!   `pytorch.eas.PredictRequest` ([`crate::proto::pytorch`]): `inputs` are `forward`'s
//!   positional arguments (elements in the value field of their `dtype`: `float_val`,
//!   `double_val`, `int_val`, `int64_val`), or `map_inputs` the entries of its one
//!   `Dict[str, Tensor]` argument; `output_filter` picks outputs by index. The answer is a
//!   `PredictResponse`: `outputs` in the model's order, or `map_outputs` when `forward`
//!   returns a dict (`Content-Type: application/octet-stream`). Snappy-compressed bodies (the
//!   SDK's `TorchRequest(True)`) are not understood.
//! - **JSON**, for curl users: the `onnx` processor's form, `{"inputs": {"x": [[1.0, 2.0]]}}`
//!   (or `{"shape": [1, 2], "data": [...], "datatype": "FP32"}` per input), the inputs being
//!   `forward`'s positional arguments in the order written, FP32 unless `datatype` says
//!   otherwise; the answer `{"outputs": {"output_0": {"datatype", "shape", "data"}}}`.
//!
//! Element types: FP32, FP64, INT8, UINT8, INT16, INT32, INT64, BOOL; half-float outputs are
//! sent as FP32.
//!
//! # Batching
//! Requests of a batch whose inputs agree on kinds and trailing dimensions run as one
//! `forward`, stacked along the first dimension; every output is split back by each
//! request's rows (when an output lacks one row per input row, each request runs alone).
//!
//! ```no_run
//! use eas_core::Processor;
//! use eas_core::processor::{InitContext, Request};
//! use eas_runtime::torch::TorchProcessor;
//!
//! let mut torch = TorchProcessor::new();
//! torch.initialize(&InitContext::new("mlp").with_model_entry("mlp.pt").with_threads(2))?;
//! let answer = torch.process(&[Request::new(r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}}"#)]);
//! println!("{:?}", answer[0]);
//! # Ok::<(), eas_core::Error>(())
//! ```

mod codec;
mod error;
mod feed;
mod host;
mod kind;
mod processor;

pub use error::TorchError;
pub use processor::TorchProcessor;
