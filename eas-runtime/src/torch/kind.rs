//! Element types the `torch` processor exchanges: libtorch kinds and their names in the EAS
//! PyTorch protobuf (`ArrayDataType`) and in JSON (the Open Inference Protocol names).

use tch::Kind;

use crate::proto::pytorch::ArrayDataType;

/// The kinds a request may send, with their JSON (OIP) names and protobuf codes.
const KINDS: [(Kind, &str, ArrayDataType); 8] = [
    (Kind::Float, "FP32", ArrayDataType::DtFloat),
    (Kind::Double, "FP64", ArrayDataType::DtDouble),
    (Kind::Int8, "INT8", ArrayDataType::DtInt8),
    (Kind::Uint8, "UINT8", ArrayDataType::DtUint8),
    (Kind::Int16, "INT16", ArrayDataType::DtInt16),
    (Kind::Int, "INT32", ArrayDataType::DtInt32),
    (Kind::Int64, "INT64", ArrayDataType::DtInt64),
    (Kind::Bool, "BOOL", ArrayDataType::DtBool),
];

/// The kind of a protobuf element type, when the processor takes it.
pub(crate) fn from_proto(dtype: ArrayDataType) -> Option<Kind> {
    KINDS.iter().find(|k| k.2 == dtype).map(|k| k.0)
}

/// The protobuf element type of a kind the processor exchanges.
pub(crate) fn to_proto(kind: Kind) -> Option<ArrayDataType> {
    KINDS.iter().find(|k| k.0 == kind).map(|k| k.2)
}

/// The kind with this JSON (OIP) name, compared case-insensitively.
pub(crate) fn from_name(name: &str) -> Option<Kind> {
    KINDS
        .iter()
        .find(|k| k.1.eq_ignore_ascii_case(name))
        .map(|k| k.0)
}

/// The JSON (OIP) name of a kind the processor exchanges.
pub(crate) fn name(kind: Kind) -> Option<&'static str> {
    KINDS.iter().find(|k| k.0 == kind).map(|k| k.1)
}

/// The JSON names, for error messages.
pub(crate) fn supported() -> String {
    KINDS.iter().map(|k| k.1).collect::<Vec<_>>().join(", ")
}

/// The kind an output is sent as: itself when the protocol has it, FP32 for half floats,
/// `None` for kinds it cannot carry (complex, quantized).
pub(crate) fn sendable(kind: Kind) -> Option<Kind> {
    match kind {
        Kind::Half | Kind::BFloat16 => Some(Kind::Float),
        other => to_proto(other).map(|_| other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_should_round_trip_through_both_protocols() {
        for (kind, oip, proto) in KINDS {
            assert_eq!(from_proto(proto), Some(kind));
            assert_eq!(to_proto(kind), Some(proto));
            assert_eq!(from_name(&oip.to_lowercase()), Some(kind));
            assert_eq!(name(kind), Some(oip));
        }
        assert_eq!(from_proto(ArrayDataType::DtString), None);
        assert_eq!(sendable(Kind::Half), Some(Kind::Float));
        assert_eq!(sendable(Kind::ComplexFloat), None);
    }
}
