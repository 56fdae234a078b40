//! Protobuf messages of the EAS wire protocols, written by hand with `prost` derives (no
//! `protoc`, no build script).
//!
//! - [`hie`]: `hie.processor.DataProto`, the body of requests to and answers from the `onnx`
//!   processor (what the `eas-prediction` SDK's `OnnxRequest` sends and `OnnxResponse` parses).
//! - [`pytorch`]: `pytorch.eas.PredictRequest` and `PredictResponse`, the bodies of the `torch`
//!   processor (what the SDK's `TorchRequest` sends and `TorchResponse` parses).
//! - [`streaming`]: the queue service's `DataFrameProto`, `DataFrameListProto` and
//!   `AttributesProto`.
//!
//! ```
//! use eas_runtime::proto::{DataProto, DataType, Message, TensorProto};
//!
//! let request = DataProto {
//!     tensors: vec![TensorProto::new("x", vec![1, 2], DataType::Float, vec![0_u8; 8])],
//! };
//! let bytes = request.encode_to_vec();
//! assert_eq!(DataProto::decode(bytes.as_slice())?, request);
//! # Ok::<(), prost::DecodeError>(())
//! ```

pub mod hie;
pub mod pytorch;
pub mod streaming;

pub use hie::{DataProto, DataType, TensorProto};
pub use prost::Message;
