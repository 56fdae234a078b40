//! The `onnx` processor: ONNX models run by ONNX Runtime through `ort`.
//!
//! ONNX Runtime is a shared library loaded at run time, once per process, by [`runtime`]:
//! [`LibraryDiscovery`] says where it is looked for (`ORT_DYLIB_PATH`, then the
//! `onnxruntime` wheel of `EAS_PYTHON` or `python3`) and the error says how to install it.
//! [`OnnxProcessor`] is the [`Processor`](eas_core::Processor) an instance hosts.
//!
//! # Request and answer bodies
//! - **Protobuf** (the default; what the `eas-prediction` SDK's `OnnxRequest` sends): a
//!   `hie.processor.DataProto` ([`crate::proto::DataProto`]) with one tensor per input, its
//!   `raw_data` little-endian and row-major. The answer is a `DataProto` with one tensor per
//!   output, in the model's order (`Content-Type: application/octet-stream`).
//! - **JSON**, for curl users (`Content-Type` containing `json`, or a body starting with `{`):
//!   `{"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}`, each input a nested array (its nesting is
//!   the shape), a number, or `{"shape": [1, 4], "data": [...], "datatype": "FP32"}` (flat,
//!   row-major; `datatype` optional). Element types come from the model; a number the type
//!   cannot hold (past FP32's largest value, past an integer type's bounds, a fraction for an
//!   integer) is a 400 naming the input and the element, never wrapped nor made infinite.
//!   Floats round to the nearest value (a tiny one may become 0). The answer is
//!   `{"outputs": {"y": {"datatype": "FP32", "shape": [1, 3], "data": [...]}}}` with `data`
//!   flat and row-major (`Content-Type: application/json`; NaN and infinities as `null`).
//!
//! Element types: FP32, FP64, INT8, UINT8, INT16, UINT16, INT32, UINT32, INT64, UINT64.
//! A model with another type (bool, string, float16) among its inputs or outputs fails to
//! initialize, saying which.
//!
//! # Batching
//! A batch given to [`process`](eas_core::Processor::process) runs as one inference for all
//! its requests whose inputs agree on trailing dimensions (when every model input has a
//! dynamic first dimension): they are stacked along the first dimension and every output is
//! split back by each request's row count. Other requests run on their own. A request that is
//! malformed, names an unknown input, lacks one, or has the wrong type or shape fails alone
//! with a 400 that says so.
//!
//! ```no_run
//! use eas_core::Processor;
//! use eas_core::processor::{InitContext, Request};
//! use eas_runtime::onnx::OnnxProcessor;
//!
//! let mut onnx = OnnxProcessor::new();
//! onnx.initialize(&InitContext::new("mlp").with_model_entry("examples/models/mlp.onnx"))?;
//! let answer = onnx.process(&[Request::new(r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}}"#)]);
//! println!("{:?}", answer[0]);
//! # Ok::<(), eas_core::Error>(())
//! ```

mod codec;
mod cuda;
mod element;
mod error;
mod library;
mod model;
mod pool;
mod processor;
mod provision;
mod tensor;
#[doc(hidden)]
pub mod testing;

pub use element::ElementType;
pub use error::{GPU_INSTALL_HINT, INSTALL_HINT, OnnxError};
pub use library::{
    DYLIB_ENV, FoundLibrary, LibraryDiscovery, LibrarySource, OrtRuntime, PYTHON_ENV, runtime,
};
pub use processor::OnnxProcessor;
