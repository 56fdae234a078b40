//! `hie.processor` (file `hie_processor_data.proto`): tensors as the EAS `onnx` processor
//! exchanges them.
//!
//! ```text
//! message TensorProto {
//!   enum DataType { UNDEFINED = 0; FLOAT = 1; UINT8 = 2; INT8 = 3; UINT16 = 4; INT16 = 5;
//!                   INT32 = 6; INT64 = 7; FLOAT16 = 10; DOUBLE = 11; UINT32 = 12; UINT64 = 13; }
//!   string name = 1;  repeated int64 dims = 2;  int32 data_type = 3;  bytes raw_data = 5;
//! }
//! message DataProto { repeated TensorProto tensors = 1; }
//! ```
//!
//! `raw_data` holds the elements little-endian, row-major.

use bytes::Bytes;

/// One named tensor: its dimensions, element type and little-endian row-major bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// The input or output name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The dimensions, outermost first.
    #[prost(int64, repeated, tag = "2")]
    pub dims: Vec<i64>,
    /// The element type, a [`DataType`] code (kept as `i32` so unknown codes survive decoding).
    #[prost(int32, tag = "3")]
    pub data_type: i32,
    /// The elements, little-endian, row-major.
    #[prost(bytes = "bytes", tag = "5")]
    pub raw_data: Bytes,
}

impl TensorProto {
    /// A tensor with these parts.
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        dims: Vec<i64>,
        data_type: DataType,
        raw_data: impl Into<Bytes>,
    ) -> Self {
        Self {
            name: name.into(),
            dims,
            data_type: data_type as i32,
            raw_data: raw_data.into(),
        }
    }

    /// The element type, or `None` for a code this protocol does not define.
    #[must_use]
    pub fn known_data_type(&self) -> Option<DataType> {
        DataType::try_from(self.data_type).ok()
    }
}

/// A list of tensors: the inputs of a request or the outputs of an answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataProto {
    /// The tensors, each with a distinct name.
    #[prost(message, repeated, tag = "1")]
    pub tensors: Vec<TensorProto>,
}

/// `TensorProto.DataType`: the element types the protocol names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set: a request with it is refused.
    Undefined = 0,
    /// 32-bit float.
    Float = 1,
    /// Unsigned 8-bit integer.
    Uint8 = 2,
    /// Signed 8-bit integer.
    Int8 = 3,
    /// Unsigned 16-bit integer.
    Uint16 = 4,
    /// Signed 16-bit integer.
    Int16 = 5,
    /// Signed 32-bit integer.
    Int32 = 6,
    /// Signed 64-bit integer.
    Int64 = 7,
    /// 16-bit float (IEEE half).
    Float16 = 10,
    /// 64-bit float.
    Double = 11,
    /// Unsigned 32-bit integer.
    Uint32 = 12,
    /// Unsigned 64-bit integer.
    Uint64 = 13,
}

impl DataType {
    /// The name the `.proto` file gives the value (`FLOAT`, `INT64`, ...).
    #[must_use]
    pub const fn as_str_name(self) -> &'static str {
        match self {
            Self::Undefined => "UNDEFINED",
            Self::Float => "FLOAT",
            Self::Uint8 => "UINT8",
            Self::Int8 => "INT8",
            Self::Uint16 => "UINT16",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Float16 => "FLOAT16",
            Self::Double => "DOUBLE",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn data_proto_should_encode_fields_with_the_reference_tags() {
        let msg = DataProto {
            tensors: vec![TensorProto::new(
                "x",
                vec![1, 2],
                DataType::Int64,
                vec![7_u8],
            )],
        };
        // tensors(1, LEN) { name(1)="x", dims(2, packed)=[1,2], data_type(3)=7, raw_data(5)=[7] }
        let expected = [
            0x0a, 0x0c, 0x0a, 0x01, b'x', 0x12, 0x02, 0x01, 0x02, 0x18, 0x07, 0x2a, 0x01, 0x07,
        ];
        assert_eq!(msg.encode_to_vec(), expected);
        let back = DataProto::decode(expected.as_slice()).expect("decodes");
        assert_eq!(back, msg);
        assert_eq!(back.tensors[0].known_data_type(), Some(DataType::Int64));
    }

    #[test]
    fn tensor_proto_should_keep_unknown_data_type_codes() {
        let t = TensorProto {
            data_type: 99,
            ..TensorProto::default()
        };
        let back = TensorProto::decode(t.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(back.data_type, 99);
        assert_eq!(back.known_data_type(), None);
    }

    #[test]
    fn data_type_codes_should_match_the_reference() {
        let codes: Vec<(DataType, i32)> = [
            DataType::Undefined,
            DataType::Float,
            DataType::Uint8,
            DataType::Int8,
            DataType::Uint16,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::Float16,
            DataType::Double,
            DataType::Uint32,
            DataType::Uint64,
        ]
        .into_iter()
        .map(|d| (d, d as i32))
        .collect();
        let expected = [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13];
        assert_eq!(codes.iter().map(|c| c.1).collect::<Vec<_>>(), expected);
        assert_eq!(DataType::Double.as_str_name(), "DOUBLE");
    }
}
