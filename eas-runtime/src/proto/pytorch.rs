//! `pytorch.eas` (file `pytorch_predict.proto`): tensors as the EAS PyTorch processor exchanges
//! them (what the `eas-prediction` SDK's `TorchRequest` sends and `TorchResponse` parses).
//!
//! ```text
//! enum ArrayDataType { DT_INVALID = 0; DT_FLOAT = 1; DT_DOUBLE = 2; DT_INT32 = 3; DT_UINT8 = 4;
//!   DT_INT16 = 5; DT_INT8 = 6; DT_STRING = 7; DT_COMPLEX64 = 8; DT_INT64 = 9; DT_BOOL = 10;
//!   DT_QINT8 = 11; DT_QUINT8 = 12; DT_QINT32 = 13; DT_BFLOAT16 = 14; DT_QINT16 = 15;
//!   DT_QUINT16 = 16; DT_UINT16 = 17; DT_COMPLEX128 = 18; DT_HALF = 19; DT_RESOURCE = 20;
//!   DT_VARIANT = 21; }
//! message ArrayShape { repeated int64 dim = 1 [packed = true]; }
//! message ArrayProto {
//!   ArrayDataType dtype = 1;  ArrayShape array_shape = 2;
//!   repeated float float_val = 3 [packed = true];  repeated double double_val = 4 [packed = true];
//!   repeated int32 int_val = 5 [packed = true];  repeated bytes string_val = 6;
//!   repeated int64 int64_val = 7 [packed = true];
//! }
//! message PredictRequest {
//!   repeated ArrayProto inputs = 1;  repeated int32 output_filter = 2;
//!   map<string, ArrayProto> map_inputs = 3;  int32 debug_level = 100;
//! }
//! message PredictResponse {
//!   repeated ArrayProto outputs = 1;  map<string, ArrayProto> map_outputs = 2;
//! }
//! ```
//!
//! The elements are row-major in the value field of their type: `float_val` (FLOAT),
//! `double_val` (DOUBLE), `int_val` (INT32, INT16, INT8, UINT8, BOOL), `int64_val` (INT64).
//!
//! ```
//! use eas_runtime::proto::Message;
//! use eas_runtime::proto::pytorch::{ArrayDataType, ArrayProto, PredictRequest};
//!
//! let request = PredictRequest {
//!     inputs: vec![ArrayProto::floats(vec![1, 2], vec![0.5, 1.5])],
//!     ..PredictRequest::default()
//! };
//! let decoded = PredictRequest::decode(request.encode_to_vec().as_slice())?;
//! assert_eq!(decoded.inputs[0].dtype(), ArrayDataType::DtFloat);
//! # Ok::<(), prost::DecodeError>(())
//! ```

use std::collections::HashMap;

/// A tensor's dimensions, outermost first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayShape {
    /// The dimensions.
    #[prost(int64, repeated, tag = "1")]
    pub dim: Vec<i64>,
}

/// One tensor: its element type, shape and elements.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayProto {
    /// The element type, an [`ArrayDataType`] code (kept as `i32` so unknown codes survive
    /// decoding).
    #[prost(enumeration = "ArrayDataType", tag = "1")]
    pub dtype: i32,
    /// The shape.
    #[prost(message, optional, tag = "2")]
    pub array_shape: Option<ArrayShape>,
    /// FLOAT elements.
    #[prost(float, repeated, tag = "3")]
    pub float_val: Vec<f32>,
    /// DOUBLE elements.
    #[prost(double, repeated, tag = "4")]
    pub double_val: Vec<f64>,
    /// INT32, INT16, INT8, UINT8 and BOOL elements.
    #[prost(int32, repeated, tag = "5")]
    pub int_val: Vec<i32>,
    /// STRING elements (not exchanged by the `torch` processor).
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_val: Vec<Vec<u8>>,
    /// INT64 elements.
    #[prost(int64, repeated, tag = "7")]
    pub int64_val: Vec<i64>,
}

impl ArrayProto {
    /// A FLOAT tensor of this shape.
    #[must_use]
    pub fn floats(dims: Vec<i64>, values: Vec<f32>) -> Self {
        Self {
            dtype: ArrayDataType::DtFloat as i32,
            array_shape: Some(ArrayShape { dim: dims }),
            float_val: values,
            ..Self::default()
        }
    }

    /// The dimensions (empty for a scalar, or when no shape was sent).
    #[must_use]
    pub fn dims(&self) -> &[i64] {
        self.array_shape.as_ref().map_or(&[], |s| s.dim.as_slice())
    }
}

/// A request: positional inputs (or named ones) and which outputs to return.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PredictRequest {
    /// The model's inputs, in the order `forward` takes them.
    #[prost(message, repeated, tag = "1")]
    pub inputs: Vec<ArrayProto>,
    /// The indexes of the outputs to return; all of them when empty.
    #[prost(int32, repeated, tag = "2")]
    pub output_filter: Vec<i32>,
    /// Named inputs, for a model whose `forward` takes one `Dict[str, Tensor]`.
    #[prost(map = "string, message", tag = "3")]
    pub map_inputs: HashMap<String, ArrayProto>,
    /// The SDK's debug level (ignored).
    #[prost(int32, tag = "100")]
    pub debug_level: i32,
}

/// An answer: the outputs, positional or named.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PredictResponse {
    /// The outputs, in the model's order (filtered by the request's `output_filter`).
    #[prost(message, repeated, tag = "1")]
    pub outputs: Vec<ArrayProto>,
    /// Named outputs, for a model whose `forward` returns a `Dict[str, Tensor]`.
    #[prost(map = "string, message", tag = "2")]
    pub map_outputs: HashMap<String, ArrayProto>,
}

/// `ArrayDataType`: the element types the protocol names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ArrayDataType {
    /// Not set.
    DtInvalid = 0,
    /// 32-bit float.
    DtFloat = 1,
    /// 64-bit float.
    DtDouble = 2,
    /// Signed 32-bit integer.
    DtInt32 = 3,
    /// Unsigned 8-bit integer.
    DtUint8 = 4,
    /// Signed 16-bit integer.
    DtInt16 = 5,
    /// Signed 8-bit integer.
    DtInt8 = 6,
    /// Byte strings.
    DtString = 7,
    /// Complex of two 32-bit floats.
    DtComplex64 = 8,
    /// Signed 64-bit integer.
    DtInt64 = 9,
    /// Boolean.
    DtBool = 10,
    /// Quantized signed 8-bit integer.
    DtQint8 = 11,
    /// Quantized unsigned 8-bit integer.
    DtQuint8 = 12,
    /// Quantized signed 32-bit integer.
    DtQint32 = 13,
    /// bfloat16.
    DtBfloat16 = 14,
    /// Quantized signed 16-bit integer.
    DtQint16 = 15,
    /// Quantized unsigned 16-bit integer.
    DtQuint16 = 16,
    /// Unsigned 16-bit integer.
    DtUint16 = 17,
    /// Complex of two 64-bit floats.
    DtComplex128 = 18,
    /// 16-bit float.
    DtHalf = 19,
    /// A resource handle.
    DtResource = 20,
    /// A variant.
    DtVariant = 21,
}

impl ArrayDataType {
    /// The name the `.proto` file gives the value (`DT_FLOAT`, `DT_INT64`, ...).
    #[must_use]
    pub const fn as_str_name(self) -> &'static str {
        match self {
            Self::DtInvalid => "DT_INVALID",
            Self::DtFloat => "DT_FLOAT",
            Self::DtDouble => "DT_DOUBLE",
            Self::DtInt32 => "DT_INT32",
            Self::DtUint8 => "DT_UINT8",
            Self::DtInt16 => "DT_INT16",
            Self::DtInt8 => "DT_INT8",
            Self::DtString => "DT_STRING",
            Self::DtComplex64 => "DT_COMPLEX64",
            Self::DtInt64 => "DT_INT64",
            Self::DtBool => "DT_BOOL",
            Self::DtQint8 => "DT_QINT8",
            Self::DtQuint8 => "DT_QUINT8",
            Self::DtQint32 => "DT_QINT32",
            Self::DtBfloat16 => "DT_BFLOAT16",
            Self::DtQint16 => "DT_QINT16",
            Self::DtQuint16 => "DT_QUINT16",
            Self::DtUint16 => "DT_UINT16",
            Self::DtComplex128 => "DT_COMPLEX128",
            Self::DtHalf => "DT_HALF",
            Self::DtResource => "DT_RESOURCE",
            Self::DtVariant => "DT_VARIANT",
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn messages_should_encode_fields_with_the_reference_tags() {
        // The bytes python protobuf writes for TorchRequest().add_feed(0, [1, 2],
        // DT_FLOAT, [1, 2]) then add_fetch(0).
        let request = PredictRequest {
            inputs: vec![ArrayProto::floats(vec![1, 2], vec![1.0, 2.0])],
            output_filter: vec![0],
            ..PredictRequest::default()
        };
        let want: &[u8] = &[
            0x0a, 0x12, 0x08, 0x01, 0x12, 0x04, 0x0a, 0x02, 0x01, 0x02, 0x1a, 0x08, 0x00, 0x00,
            0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x12, 0x01, 0x00,
        ];
        assert_eq!(request.encode_to_vec(), want);
        assert_eq!(ArrayDataType::DtInt64.as_str_name(), "DT_INT64");
    }
}
