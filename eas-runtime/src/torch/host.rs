//! [`Outputs`]: a model's outputs read back to the host once per `forward`, and split by rows
//! there (slices of host memory, no libtorch call per request).

use serde::Serialize;
use tch::Kind;

use super::feed::Fetched;
use super::kind;
use crate::proto::pytorch::{ArrayDataType, ArrayProto, ArrayShape};

/// One output on the host: its kind, shape and elements.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Elements {
    /// The kind it is sent as.
    pub kind: Kind,
    /// The dimensions.
    pub dims: Vec<i64>,
    /// The elements, row-major.
    pub values: Values,
}

/// Elements by how the protocols carry them (in JSON, a flat array; serde_json writes f32
/// values short and non-finite floats as `null`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Values {
    /// FP32.
    F32(Vec<f32>),
    /// FP64.
    F64(Vec<f64>),
    /// INT32, INT16, INT8 and UINT8 (the protobuf's `int_val`).
    I32(Vec<i32>),
    /// INT64.
    I64(Vec<i64>),
    /// BOOL.
    Bool(Vec<bool>),
}

impl Values {
    /// Elements `range` of the same kind.
    fn slice(&self, range: std::ops::Range<usize>) -> Option<Self> {
        Some(match self {
            Self::F32(v) => Self::F32(v.get(range)?.to_vec()),
            Self::F64(v) => Self::F64(v.get(range)?.to_vec()),
            Self::I32(v) => Self::I32(v.get(range)?.to_vec()),
            Self::I64(v) => Self::I64(v.get(range)?.to_vec()),
            Self::Bool(v) => Self::Bool(v.get(range)?.to_vec()),
        })
    }
}

impl Elements {
    /// Reads a tensor (on any device) back to the host.
    fn read(tensor: &tch::Tensor) -> Result<Self, String> {
        let kind = kind::sendable(tensor.kind()).ok_or_else(|| {
            format!(
                "the model returned a {:?} tensor, which the protocol cannot carry (supported: {})",
                tensor.kind(),
                kind::supported()
            )
        })?;
        let dims = tensor.size();
        let read = |e: tch::TchError| format!("cannot read it back: {e}");
        let wire = if kind == Kind::Int8 || kind == Kind::Int16 || kind == Kind::Uint8 {
            Kind::Int
        } else {
            kind
        };
        let flat = tensor
            .f_to_device(tch::Device::Cpu)
            .and_then(|t| t.f_to_kind(wire))
            .and_then(|t| t.f_reshape([-1]))
            .map_err(read)?;
        let values = match wire {
            Kind::Float => Values::F32(Vec::<f32>::try_from(&flat).map_err(read)?),
            Kind::Double => Values::F64(Vec::<f64>::try_from(&flat).map_err(read)?),
            Kind::Int64 => Values::I64(Vec::<i64>::try_from(&flat).map_err(read)?),
            Kind::Bool => Values::Bool(Vec::<bool>::try_from(&flat).map_err(read)?),
            _ => Values::I32(Vec::<i32>::try_from(&flat).map_err(read)?),
        };
        Ok(Self { kind, dims, values })
    }

    /// Rows `start..start + rows`, or `None` when it has fewer rows.
    fn rows(&self, start: usize, rows: usize) -> Option<Self> {
        let row = self.dims[1..].iter().try_fold(1_usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })?;
        let mut dims = self.dims.clone();
        *dims.first_mut()? = i64::try_from(rows).ok()?;
        Some(Self {
            kind: self.kind,
            dims,
            values: self.values.slice(start * row..(start + rows) * row)?,
        })
    }

    /// The output as an `ArrayProto`.
    pub fn to_proto(&self) -> ArrayProto {
        let mut array = ArrayProto {
            dtype: kind::to_proto(self.kind).unwrap_or(ArrayDataType::DtInvalid) as i32,
            array_shape: Some(ArrayShape {
                dim: self.dims.clone(),
            }),
            ..ArrayProto::default()
        };
        match &self.values {
            Values::F32(v) => array.float_val.clone_from(v),
            Values::F64(v) => array.double_val.clone_from(v),
            Values::I32(v) => array.int_val.clone_from(v),
            Values::I64(v) => array.int64_val.clone_from(v),
            Values::Bool(v) => array.int_val = v.iter().map(|&b| i32::from(b)).collect(),
        }
        array
    }
}

/// A model's outputs on the host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outputs {
    /// The names, when `forward` returned a dict; `None` for positional outputs.
    pub keys: Option<Vec<String>>,
    /// The outputs, in the model's order.
    pub elements: Vec<Elements>,
}

impl Outputs {
    /// Reads every output of `fetched` back to the host.
    pub fn read(fetched: &Fetched) -> Result<Self, String> {
        let elements = fetched
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| Elements::read(t).map_err(|e| format!("output {i}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            keys: fetched.keys.clone(),
            elements,
        })
    }

    /// Each part's outputs: the next `rows` rows of every output, one part per entry of
    /// `rows`. `None` when an output does not have one row per input row (the model does not
    /// treat rows independently).
    pub fn split(&self, rows: &[usize]) -> Option<Vec<Self>> {
        let total: usize = rows.iter().sum();
        if self
            .elements
            .iter()
            .any(|e| e.dims.first().and_then(|&d| usize::try_from(d).ok()) != Some(total))
        {
            return None;
        }
        let mut start = 0;
        rows.iter()
            .map(|&n| {
                let elements = self
                    .elements
                    .iter()
                    .map(|e| e.rows(start, n))
                    .collect::<Option<Vec<_>>>()?;
                start += n;
                Some(Self {
                    keys: self.keys.clone(),
                    elements,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use tch::Tensor;

    use super::*;

    #[test]
    fn outputs_should_split_by_rows_on_the_host() {
        let fetched = Fetched {
            keys: None,
            tensors: vec![
                Tensor::from_slice(&[1_i64, 2, 3, 4, 5, 6]).reshape([3, 2]),
                Tensor::from_slice(&[1_i8, 2, 3]),
            ],
        };
        let outputs = Outputs::read(&fetched).expect("reads");
        assert_eq!(outputs.elements[1].kind, Kind::Int8);
        assert_eq!(outputs.elements[1].values, Values::I32(vec![1, 2, 3]));
        let parts = outputs.split(&[1, 2]).expect("splits");
        assert_eq!(parts[1].elements[0].dims, vec![2, 2]);
        assert_eq!(parts[1].elements[0].values, Values::I64(vec![3, 4, 5, 6]));
        assert_eq!(parts[1].elements[1].values, Values::I32(vec![2, 3]));
        assert!(outputs.split(&[1, 1]).is_none(), "rows must add up");
    }
}
