//! Element types: the ones the `onnx` processor exchanges, with their names in each protocol
//! (DataProto codes, OIP names, ONNX Runtime types) and their little-endian byte forms.

use ort::value::{PrimitiveTensorElementType, TensorElementType};
use serde::Serialize;

use crate::proto::DataType;

/// An element type the `onnx` processor accepts and returns.
///
/// Float16, bool and string tensors are not supported: the EAS protocol has no code for the
/// last two, and half floats would need the `half` crate on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// 32-bit float (`FP32`, DataProto `FLOAT`).
    F32,
    /// 64-bit float (`FP64`, DataProto `DOUBLE`).
    F64,
    /// Signed 8-bit integer (`INT8`).
    I8,
    /// Unsigned 8-bit integer (`UINT8`).
    U8,
    /// Signed 16-bit integer (`INT16`).
    I16,
    /// Unsigned 16-bit integer (`UINT16`).
    U16,
    /// Signed 32-bit integer (`INT32`).
    I32,
    /// Unsigned 32-bit integer (`UINT32`).
    U32,
    /// Signed 64-bit integer (`INT64`).
    I64,
    /// Unsigned 64-bit integer (`UINT64`).
    U64,
}

impl ElementType {
    /// Every supported type.
    pub const ALL: [Self; 10] = [
        Self::F32,
        Self::F64,
        Self::I8,
        Self::U8,
        Self::I16,
        Self::U16,
        Self::I32,
        Self::U32,
        Self::I64,
        Self::U64,
    ];

    /// Bytes per element.
    #[must_use]
    pub const fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::F64 | Self::I64 | Self::U64 => 8,
        }
    }

    /// The Open Inference Protocol name (`FP32`, `INT64`, ...).
    #[must_use]
    pub const fn oip_name(self) -> &'static str {
        match self {
            Self::F32 => "FP32",
            Self::F64 => "FP64",
            Self::I8 => "INT8",
            Self::U8 => "UINT8",
            Self::I16 => "INT16",
            Self::U16 => "UINT16",
            Self::I32 => "INT32",
            Self::U32 => "UINT32",
            Self::I64 => "INT64",
            Self::U64 => "UINT64",
        }
    }

    /// The type with this OIP name, compared case-insensitively.
    #[must_use]
    pub fn from_oip_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.oip_name().eq_ignore_ascii_case(name))
    }

    /// The `hie.processor.TensorProto.DataType` code.
    #[must_use]
    pub const fn to_proto(self) -> DataType {
        match self {
            Self::F32 => DataType::Float,
            Self::F64 => DataType::Double,
            Self::I8 => DataType::Int8,
            Self::U8 => DataType::Uint8,
            Self::I16 => DataType::Int16,
            Self::U16 => DataType::Uint16,
            Self::I32 => DataType::Int32,
            Self::U32 => DataType::Uint32,
            Self::I64 => DataType::Int64,
            Self::U64 => DataType::Uint64,
        }
    }

    /// The type of a DataProto code, or `None` for `UNDEFINED` and `FLOAT16`.
    #[must_use]
    pub const fn from_proto(data_type: DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Float => Self::F32,
            DataType::Double => Self::F64,
            DataType::Int8 => Self::I8,
            DataType::Uint8 => Self::U8,
            DataType::Int16 => Self::I16,
            DataType::Uint16 => Self::U16,
            DataType::Int32 => Self::I32,
            DataType::Uint32 => Self::U32,
            DataType::Int64 => Self::I64,
            DataType::Uint64 => Self::U64,
            DataType::Undefined | DataType::Float16 => return None,
        })
    }

    /// The type of an ONNX Runtime element type, or `None` when unsupported.
    #[must_use]
    pub const fn from_ort(t: TensorElementType) -> Option<Self> {
        Some(match t {
            TensorElementType::Float32 => Self::F32,
            TensorElementType::Float64 => Self::F64,
            TensorElementType::Int8 => Self::I8,
            TensorElementType::Uint8 => Self::U8,
            TensorElementType::Int16 => Self::I16,
            TensorElementType::Uint16 => Self::U16,
            TensorElementType::Int32 => Self::I32,
            TensorElementType::Uint32 => Self::U32,
            TensorElementType::Int64 => Self::I64,
            TensorElementType::Uint64 => Self::U64,
            _ => return None,
        })
    }
}

impl ElementType {
    /// The values an element holds, for messages: `0 to 255`, `-3.4028235e38 to 3.4028235e38`.
    #[must_use]
    pub(crate) fn range(self) -> String {
        with_element!(self, T => <T as Element>::range())
    }
}

impl std::fmt::Display for ElementType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.oip_name())
    }
}

/// A Rust element type: its little-endian bytes, its JSON form and ONNX Runtime's view of it.
pub(crate) trait Element:
    PrimitiveTensorElementType + Copy + Default + Serialize + std::fmt::Debug + 'static
{
    /// Bytes per element.
    const SIZE: usize;
    /// Reads one element from exactly [`Self::SIZE`] little-endian bytes.
    fn read_le(bytes: &[u8]) -> Self;
    /// Appends the little-endian bytes of `self`.
    fn write_le(self, out: &mut Vec<u8>);
    /// The element a JSON number stands for, exactly for integer types and to the nearest
    /// value for float types; never a wrapped integer nor an infinity.
    fn from_json(value: &serde_json::Value) -> Result<Self, NotAnElement>;
    /// The values an element holds, for messages.
    fn range() -> String;
}

/// Why a JSON value is not an element of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAnElement {
    /// A string, a boolean, null, an array or an object where a number belongs.
    NotANumber,
    /// A number with a fraction or an exponent for an integer type: integers are taken exactly,
    /// and a float such as `9007199254740993.0` has already lost digits.
    NotAnInteger,
    /// A number outside the type's range; for a float type, one that would become infinite.
    OutOfRange,
}

impl NotAnElement {
    /// What is wrong, after "element ... is VALUE, ".
    pub(crate) fn reason(self, dtype: ElementType) -> String {
        match self {
            Self::NotANumber => format!("not a number ({dtype} elements are numbers)"),
            Self::NotAnInteger => format!(
                "not an integer ({dtype} elements are written without a fraction or exponent)"
            ),
            Self::OutOfRange => format!("out of the range of {dtype} ({})", dtype.range()),
        }
    }
}

macro_rules! element {
    ($t:ty, $json:ident) => {
        impl Element for $t {
            const SIZE: usize = std::mem::size_of::<$t>();

            fn read_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().unwrap_or([0; std::mem::size_of::<$t>()]))
            }

            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }

            fn from_json(value: &serde_json::Value) -> Result<Self, NotAnElement> {
                let serde_json::Value::Number(number) = value else {
                    return Err(NotAnElement::NotANumber);
                };
                element!(@$json, $t, number)
            }

            fn range() -> String {
                element!(@range $json, $t)
            }
        }
    };
    (@int, $t:ty, $number:ident) => {
        if let Some(v) = $number.as_i64() {
            <$t>::try_from(v).map_err(|_| NotAnElement::OutOfRange)
        } else if let Some(v) = $number.as_u64() {
            <$t>::try_from(v).map_err(|_| NotAnElement::OutOfRange)
        } else {
            // Written with a fraction or an exponent, or past u64::MAX: refused either way,
            // as out of range when even an exact reading would not fit.
            let v = $number.as_f64().unwrap_or(f64::NAN);
            #[allow(clippy::cast_precision_loss)]
            let outside = v.fract() == 0.0
                && (v < <$t>::MIN as f64 || v >= <$t>::MAX as f64 + 1.0);
            Err(if outside {
                NotAnElement::OutOfRange
            } else {
                NotAnElement::NotAnInteger
            })
        }
    };
    (@float, $t:ty, $number:ident) => {{
        // Rounding to the nearest float is what a client means by a decimal literal; past
        // the largest finite value it would round to an infinity, which nobody means.
        #[allow(clippy::cast_possible_truncation)]
        let v = $number.as_f64().map_or(<$t>::NAN, |v| v as $t);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(NotAnElement::OutOfRange)
        }
    }};
    (@range int, $t:ty) => {
        format!("{} to {}", <$t>::MIN, <$t>::MAX)
    };
    (@range float, $t:ty) => {
        format!("{:e} to {:e}", <$t>::MIN, <$t>::MAX)
    };
}

element!(f32, float);
element!(f64, float);
element!(i8, int);
element!(u8, int);
element!(i16, int);
element!(u16, int);
element!(i32, int);
element!(u32, int);
element!(i64, int);
element!(u64, int);

/// Runs `$body` with `$t` bound to the Rust type of element type `$dtype`.
macro_rules! with_element {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            $crate::onnx::element::ElementType::F32 => {
                type $t = f32;
                $body
            }
            $crate::onnx::element::ElementType::F64 => {
                type $t = f64;
                $body
            }
            $crate::onnx::element::ElementType::I8 => {
                type $t = i8;
                $body
            }
            $crate::onnx::element::ElementType::U8 => {
                type $t = u8;
                $body
            }
            $crate::onnx::element::ElementType::I16 => {
                type $t = i16;
                $body
            }
            $crate::onnx::element::ElementType::U16 => {
                type $t = u16;
                $body
            }
            $crate::onnx::element::ElementType::I32 => {
                type $t = i32;
                $body
            }
            $crate::onnx::element::ElementType::U32 => {
                type $t = u32;
                $body
            }
            $crate::onnx::element::ElementType::I64 => {
                type $t = i64;
                $body
            }
            $crate::onnx::element::ElementType::U64 => {
                type $t = u64;
                $body
            }
        }
    };
}
pub(crate) use with_element;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn element_types_should_agree_on_size_and_names() {
        for t in ElementType::ALL {
            assert_eq!(ElementType::from_oip_name(t.oip_name()), Some(t));
            assert_eq!(ElementType::from_proto(t.to_proto()), Some(t));
            with_element!(t, T => assert_eq!(<T as Element>::SIZE, t.size(), "{t}"));
        }
        assert_eq!(ElementType::from_proto(DataType::Float16), None);
        assert_eq!(ElementType::from_oip_name("fp32"), Some(ElementType::F32));
        assert_eq!(ElementType::from_oip_name("BOOL"), None);
    }

    #[test]
    fn json_numbers_should_convert_only_when_they_fit() {
        use NotAnElement::{NotANumber, NotAnInteger, OutOfRange};
        assert_eq!(u8::from_json(&json!(255)), Ok(255));
        assert_eq!(u8::from_json(&json!(256)), Err(OutOfRange));
        assert_eq!(u8::from_json(&json!(-1)), Err(OutOfRange));
        assert_eq!(i8::from_json(&json!(-1)), Ok(-1));
        assert_eq!(i8::from_json(&json!(-129)), Err(OutOfRange));
        assert_eq!(i16::from_json(&json!(32768)), Err(OutOfRange));
        assert_eq!(u16::from_json(&json!(65536)), Err(OutOfRange));
        assert_eq!(
            i32::from_json(&json!(i64::from(i32::MIN) - 1)),
            Err(OutOfRange)
        );
        assert_eq!(
            u32::from_json(&json!(u64::from(u32::MAX) + 1)),
            Err(OutOfRange)
        );
        assert_eq!(i64::from_json(&json!(u64::MAX)), Err(OutOfRange));
        assert_eq!(u64::from_json(&json!(-1)), Err(OutOfRange));
        assert_eq!(u64::from_json(&json!(u64::MAX)), Ok(u64::MAX));
        assert_eq!(i64::from_json(&json!(1.5)), Err(NotAnInteger));
        assert_eq!(i64::from_json(&json!(3.0)), Err(NotAnInteger));
        assert_eq!(u8::from_json(&json!(300.0)), Err(OutOfRange));
        assert_eq!(u64::from_json(&json!(1e20)), Err(OutOfRange));
        assert_eq!(
            u64::from_json(&serde_json::from_str("18446744073709551616").expect("a number")),
            Err(OutOfRange)
        );
        assert_eq!(i64::from_json(&json!(-9.3e18)), Err(OutOfRange));
        assert_eq!(f32::from_json(&json!(1.5)), Ok(1.5));
        assert_eq!(f32::from_json(&json!(-1e-50)), Ok(-0.0));
        assert_eq!(f32::from_json(&json!(f64::from(f32::MAX))), Ok(f32::MAX));
        assert_eq!(f32::from_json(&json!(3.5e38)), Err(OutOfRange));
        assert_eq!(f32::from_json(&json!(-3.5e38)), Err(OutOfRange));
        assert_eq!(f32::from_json(&json!(f64::MAX)), Err(OutOfRange));
        assert_eq!(f32::from_json(&json!(u64::MAX)), Ok(u64::MAX as f32));
        assert_eq!(f64::from_json(&json!(3)), Ok(3.0));
        assert_eq!(f64::from_json(&json!(f64::MAX)), Ok(f64::MAX));
        assert_eq!(f64::from_json(&json!("3")), Err(NotANumber));
        assert_eq!(f64::from_json(&json!(null)), Err(NotANumber));
    }

    #[test]
    fn ranges_should_read_as_numbers() {
        assert_eq!(ElementType::U8.range(), "0 to 255");
        assert_eq!(ElementType::I16.range(), "-32768 to 32767");
        assert_eq!(ElementType::F32.range(), "-3.4028235e38 to 3.4028235e38");
        assert_eq!(
            NotAnElement::OutOfRange.reason(ElementType::F32),
            "out of the range of FP32 (-3.4028235e38 to 3.4028235e38)"
        );
    }

    #[test]
    fn little_endian_bytes_should_round_trip() {
        let mut out = Vec::new();
        (-2_i32).write_le(&mut out);
        1.5_f64.write_le(&mut out);
        assert_eq!(i32::read_le(&out[..4]), -2);
        assert_eq!(f64::read_le(&out[4..]), 1.5);
        assert_eq!(out[..4], [0xfe, 0xff, 0xff, 0xff]);
    }
}
