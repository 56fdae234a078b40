//! The tensor element types an Open Inference Protocol request may name, with their codes in
//! the EAS tensor form ([`DataType`]) and their two OIP forms: JSON numbers and little-endian
//! bytes (the binary tensor data extension, and DataProto's `raw_data`).
//!
//! JSON numbers are taken as the OIP rules for each type say: exactly for integer types (a
//! fraction, an exponent or a value past the type's bounds is refused, never wrapped), to the
//! nearest value for float types (a value past FP32's largest is refused, never made
//! infinite). `FP16` travels as binary data only (the clients say the same); BOOL, BYTES and
//! BF16 have no code in the EAS tensor form and are refused.

use serde::{Serialize, Serializer};

use crate::proto::DataType;

/// An element type: the OIP names the EAS tensor form has a code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Datatype {
    /// `FP16` (binary data only).
    Fp16,
    /// `FP32`.
    Fp32,
    /// `FP64`.
    Fp64,
    /// `INT8`.
    Int8,
    /// `UINT8`.
    Uint8,
    /// `INT16`.
    Int16,
    /// `UINT16`.
    Uint16,
    /// `INT32`.
    Int32,
    /// `UINT32`.
    Uint32,
    /// `INT64`.
    Int64,
    /// `UINT64`.
    Uint64,
}

/// A JSON number as the parser read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    /// A negative integer.
    Signed(i64),
    /// A non-negative integer.
    Unsigned(u64),
    /// A number with a fraction or an exponent, or an integer past `u64`.
    Float(f64),
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Signed(v) => v.fmt(f),
            Self::Unsigned(v) => v.fmt(f),
            Self::Float(v) => write!(f, "{v:e}"),
        }
    }
}

impl Datatype {
    const ALL: [Self; 11] = [
        Self::Fp16,
        Self::Fp32,
        Self::Fp64,
        Self::Int8,
        Self::Uint8,
        Self::Int16,
        Self::Uint16,
        Self::Int32,
        Self::Uint32,
        Self::Int64,
        Self::Uint64,
    ];

    /// The OIP name.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Int8 => "INT8",
            Self::Uint8 => "UINT8",
            Self::Int16 => "INT16",
            Self::Uint16 => "UINT16",
            Self::Int32 => "INT32",
            Self::Uint32 => "UINT32",
            Self::Int64 => "INT64",
            Self::Uint64 => "UINT64",
        }
    }

    /// The type an OIP `datatype` names, or why it cannot be taken.
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        if let Some(t) = Self::ALL.into_iter().find(|t| t.name() == name) {
            return Ok(t);
        }
        let names = Self::ALL.map(Self::name).join(", ");
        Err(match name {
            "BOOL" | "BYTES" | "BF16" => {
                format!("datatype {name} is not supported here (supported: {names})")
            }
            _ => format!("datatype {name:?} is not an OIP datatype (supported: {names})"),
        })
    }

    /// Bytes per element.
    pub(crate) const fn size(self) -> usize {
        match self {
            Self::Int8 | Self::Uint8 => 1,
            Self::Fp16 | Self::Int16 | Self::Uint16 => 2,
            Self::Fp32 | Self::Int32 | Self::Uint32 => 4,
            Self::Fp64 | Self::Int64 | Self::Uint64 => 8,
        }
    }

    /// The code of the EAS tensor form.
    pub(crate) const fn to_proto(self) -> DataType {
        match self {
            Self::Fp16 => DataType::Float16,
            Self::Fp32 => DataType::Float,
            Self::Fp64 => DataType::Double,
            Self::Int8 => DataType::Int8,
            Self::Uint8 => DataType::Uint8,
            Self::Int16 => DataType::Int16,
            Self::Uint16 => DataType::Uint16,
            Self::Int32 => DataType::Int32,
            Self::Uint32 => DataType::Uint32,
            Self::Int64 => DataType::Int64,
            Self::Uint64 => DataType::Uint64,
        }
    }

    /// The type of an EAS tensor form code (`None` for `UNDEFINED` and unknown codes).
    pub(crate) fn from_proto(code: i32) -> Option<Self> {
        let code = DataType::try_from(code).ok()?;
        Self::ALL.into_iter().find(|t| t.to_proto() == code)
    }

    /// Whether JSON numbers may carry it (all but `FP16`).
    pub(crate) const fn takes_json(self) -> bool {
        !matches!(self, Self::Fp16)
    }

    /// Appends `number` as one little-endian element, or says why it is not one (the words
    /// after "element N is VALUE, ").
    pub(crate) fn push(self, number: Number, out: &mut Vec<u8>) -> Result<(), String> {
        macro_rules! int {
            ($t:ty) => {{
                let v: $t = match number {
                    Number::Signed(v) => <$t>::try_from(v).map_err(|_| self.out_of_range())?,
                    Number::Unsigned(v) => <$t>::try_from(v).map_err(|_| self.out_of_range())?,
                    Number::Float(v) => {
                        // Past the type's bounds even if read exactly: out of range; else it
                        // has a fraction or was written with one (`1.0`), which integer
                        // types refuse (a float such as 9007199254740993.0 lost digits).
                        #[allow(clippy::cast_precision_loss)]
                        let outside = v.fract() == 0.0
                            && (v < <$t>::MIN as f64 || v >= <$t>::MAX as f64 + 1.0);
                        return Err(if outside {
                            self.out_of_range()
                        } else {
                            format!(
                                "not an integer ({} elements are written without a fraction \
                                 or exponent)",
                                self.name()
                            )
                        });
                    }
                };
                out.extend_from_slice(&v.to_le_bytes());
            }};
        }
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let float = match number {
            Number::Signed(v) => v as f64,
            Number::Unsigned(v) => v as f64,
            Number::Float(v) => v,
        };
        match self {
            Self::Fp16 => return Err("FP16 elements travel as binary data only".to_owned()),
            Self::Fp32 => {
                #[allow(clippy::cast_possible_truncation)]
                let v = float as f32;
                if !v.is_finite() {
                    return Err(self.out_of_range());
                }
                out.extend_from_slice(&v.to_le_bytes());
            }
            Self::Fp64 => out.extend_from_slice(&float.to_le_bytes()),
            Self::Int8 => int!(i8),
            Self::Uint8 => int!(u8),
            Self::Int16 => int!(i16),
            Self::Uint16 => int!(u16),
            Self::Int32 => int!(i32),
            Self::Uint32 => int!(u32),
            Self::Int64 => int!(i64),
            Self::Uint64 => int!(u64),
        }
        Ok(())
    }

    fn out_of_range(self) -> String {
        let range = match self {
            Self::Fp16 => format!("{:e} to {:e}", -65504.0_f32, 65504.0_f32),
            Self::Fp32 => format!("{:e} to {:e}", f32::MIN, f32::MAX),
            Self::Fp64 => format!("{:e} to {:e}", f64::MIN, f64::MAX),
            Self::Int8 => format!("{} to {}", i8::MIN, i8::MAX),
            Self::Uint8 => format!("{} to {}", u8::MIN, u8::MAX),
            Self::Int16 => format!("{} to {}", i16::MIN, i16::MAX),
            Self::Uint16 => format!("{} to {}", u16::MIN, u16::MAX),
            Self::Int32 => format!("{} to {}", i32::MIN, i32::MAX),
            Self::Uint32 => format!("{} to {}", u32::MIN, u32::MAX),
            Self::Int64 => format!("{} to {}", i64::MIN, i64::MAX),
            Self::Uint64 => format!("{} to {}", u64::MIN, u64::MAX),
        };
        format!("out of the range of {} ({range})", self.name())
    }
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Little-endian elements written as a flat JSON array (non-finite floats as `null`, as
/// `serde_json` writes them; FP16 widened to FP32). The length is a whole number of elements
/// (the caller checked).
pub(crate) struct Elements<'a> {
    /// Their type.
    pub dtype: Datatype,
    /// Their bytes.
    pub bytes: &'a [u8],
}

impl Serialize for Elements<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        macro_rules! seq {
            ($t:ty) => {{
                const N: usize = std::mem::size_of::<$t>();
                serializer.collect_seq(
                    self.bytes
                        .chunks_exact(N)
                        .map(|c| <$t>::from_le_bytes(<[u8; N]>::try_from(c).unwrap_or([0; N]))),
                )
            }};
        }
        match self.dtype {
            Datatype::Fp16 => serializer.collect_seq(
                self.bytes
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
            ),
            Datatype::Fp32 => seq!(f32),
            Datatype::Fp64 => seq!(f64),
            Datatype::Int8 => seq!(i8),
            Datatype::Uint8 => seq!(u8),
            Datatype::Int16 => seq!(i16),
            Datatype::Uint16 => seq!(u16),
            Datatype::Int32 => seq!(i32),
            Datatype::Uint32 => seq!(u32),
            Datatype::Int64 => seq!(i64),
            Datatype::Uint64 => seq!(u64),
        }
    }
}

/// The value of IEEE 754 half-precision bits.
fn f16_to_f32(half: u16) -> f32 {
    let sign = u32::from(half >> 15) << 31;
    let exponent = u32::from((half >> 10) & 0x1f);
    let mantissa = u32::from(half & 0x3ff);
    match (exponent, mantissa) {
        (0, 0) => f32::from_bits(sign),
        (0, m) => {
            // Subnormal: m * 2^-24, exact in f32.
            #[allow(clippy::cast_precision_loss)]
            let v = m as f32 * f32::from_bits(0x3380_0000);
            if sign == 0 { v } else { -v }
        }
        (0x1f, m) => f32::from_bits(sign | 0x7f80_0000 | (m << 13)),
        (e, m) => f32::from_bits(sign | ((e + 112) << 23) | (m << 13)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(dtype: Datatype, number: Number) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        dtype.push(number, &mut out).map(|()| out)
    }

    #[test]
    fn names_sizes_and_codes_should_round_trip() {
        for t in Datatype::ALL {
            assert_eq!(Datatype::parse(t.name()), Ok(t));
            assert_eq!(Datatype::from_proto(t.to_proto() as i32), Some(t));
        }
        assert_eq!(Datatype::from_proto(0), None);
        assert_eq!(Datatype::from_proto(99), None);
        assert!(Datatype::parse("BYTES").is_err_and(|e| e.contains("not supported")));
        assert!(Datatype::parse("fp32").is_err_and(|e| e.contains("not an OIP datatype")));
    }

    #[test]
    fn numbers_should_be_typed_exactly_or_refused() {
        type Case = (Datatype, Number, Result<Vec<u8>, &'static str>);
        let table: [Case; 10] = [
            (
                Datatype::Fp32,
                Number::Float(1.5),
                Ok(1.5_f32.to_le_bytes().to_vec()),
            ),
            (
                Datatype::Fp32,
                Number::Unsigned(3),
                Ok(3.0_f32.to_le_bytes().to_vec()),
            ),
            (
                Datatype::Fp32,
                Number::Float(3.5e38),
                Err("out of the range of FP32"),
            ),
            (
                Datatype::Fp64,
                Number::Float(3.5e38),
                Ok(3.5e38_f64.to_le_bytes().to_vec()),
            ),
            (Datatype::Uint8, Number::Unsigned(255), Ok(vec![255])),
            (
                Datatype::Uint8,
                Number::Unsigned(256),
                Err("out of the range of UINT8 (0 to 255)"),
            ),
            (
                Datatype::Uint8,
                Number::Signed(-1),
                Err("out of the range of UINT8"),
            ),
            (Datatype::Int64, Number::Float(1.0), Err("not an integer")),
            (
                Datatype::Int64,
                Number::Float(1e30),
                Err("out of the range of INT64"),
            ),
            (Datatype::Fp16, Number::Float(1.0), Err("binary data only")),
        ];
        for (dtype, number, want) in table {
            match (pushed(dtype, number), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{dtype} {number}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{dtype} {number}: {got}"),
                (got, want) => panic!("{dtype} {number}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn elements_should_be_written_flat_with_null_for_non_finite() {
        let mut bytes = Vec::new();
        for v in [0.1_f32, f32::NAN] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let json = serde_json::to_string(&Elements {
            dtype: Datatype::Fp32,
            bytes: &bytes,
        })
        .expect("serializes");
        assert_eq!(json, "[0.1,null]");
        // 1.0, -2.0, the smallest subnormal, infinity.
        let half = [0x3c00_u16, 0xc000, 0x0001, 0x7c00]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect::<Vec<_>>();
        let json = serde_json::to_string(&Elements {
            dtype: Datatype::Fp16,
            bytes: &half,
        })
        .expect("serializes");
        assert_eq!(json, "[1.0,-2.0,5.9604645e-8,null]");
    }
}
