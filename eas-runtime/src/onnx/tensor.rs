//! [`Tensor`]: a named tensor as little-endian row-major bytes, and its conversions to and from
//! ONNX Runtime values, stacking along the first dimension and splitting back.

use bytes::Bytes;
use ort::value::{DynValue, Tensor as OrtTensor};

use super::element::{Element, ElementType, with_element};
use crate::proto::TensorProto;

/// A named tensor; `data` holds `elements(dims)` elements, little-endian, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tensor {
    /// The input or output name.
    pub name: String,
    /// The element type.
    pub dtype: ElementType,
    /// The dimensions, outermost first; never negative.
    pub dims: Vec<i64>,
    /// The elements.
    pub data: Bytes,
}

/// The number of elements of `dims`, or `None` when a dimension is negative or the product
/// overflows.
pub(crate) fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1_usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    })
}

impl Tensor {
    /// The number of rows (the first dimension), or `None` for a scalar.
    pub fn rows(&self) -> Option<usize> {
        self.dims.first().and_then(|&d| usize::try_from(d).ok())
    }

    /// The tensor as a DataProto tensor (the bytes are shared, not copied).
    pub fn to_proto(&self) -> TensorProto {
        TensorProto {
            name: self.name.clone(),
            dims: self.dims.clone(),
            data_type: self.dtype.to_proto() as i32,
            raw_data: self.data.clone(),
        }
    }

    /// One ONNX Runtime tensor holding a copy of the parts stacked along the first dimension
    /// (a single part is the tensor itself). All parts have the same name, type and trailing
    /// dimensions (the caller checked).
    pub fn stacked_to_ort(parts: &[&Self]) -> ort::Result<DynValue> {
        let Some(first) = parts.first() else {
            return Err(ort::Error::new("no tensor to stack"));
        };
        let mut dims = first.dims.clone();
        if let Some(rows) = dims.first_mut() {
            *rows = parts.iter().map(|t| t.dims[0]).sum();
        }
        with_element!(first.dtype, T => {
            let len = parts.iter().map(|t| t.data.len()).sum::<usize>() / T::SIZE;
            let mut values: Vec<T> = Vec::with_capacity(len);
            for part in parts {
                values.extend(part.data.chunks_exact(T::SIZE).map(T::read_le));
            }
            Ok(OrtTensor::from_array((dims, values))?.into_dyn())
        })
    }

    /// The tensor ONNX Runtime returned as output `name`, of element type `dtype`.
    pub fn from_ort(name: &str, dtype: ElementType, value: &DynValue) -> ort::Result<Self> {
        with_element!(dtype, T => {
            let (shape, values) = value.try_extract_tensor::<T>()?;
            let mut data = Vec::with_capacity(values.len() * T::SIZE);
            for &v in values {
                v.write_le(&mut data);
            }
            Ok(Self {
                name: name.to_owned(),
                dtype,
                dims: shape.to_vec(),
                data: Bytes::from(data),
            })
        })
    }

    /// Rows `start..start + rows` (shares the bytes). The tensor has at least that many rows.
    pub fn rows_slice(&self, start: usize, rows: usize) -> Self {
        let row_bytes = element_count(&self.dims[1..]).unwrap_or(0) * self.dtype.size();
        let mut dims = self.dims.clone();
        dims[0] = i64::try_from(rows).unwrap_or(i64::MAX);
        Self {
            name: self.name.clone(),
            dtype: self.dtype,
            dims,
            data: self
                .data
                .slice(start * row_bytes..(start + rows) * row_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(dims: Vec<i64>, values: &[i32]) -> Tensor {
        let mut data = Vec::new();
        for v in values {
            v.write_le(&mut data);
        }
        Tensor {
            name: "x".into(),
            dtype: ElementType::I32,
            dims,
            data: data.into(),
        }
    }

    #[test]
    fn rows_slice_should_share_each_part_of_a_stack() {
        let stacked = tensor(vec![3, 2], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(stacked.rows_slice(0, 1), tensor(vec![1, 2], &[1, 2]));
        assert_eq!(stacked.rows_slice(1, 2), tensor(vec![2, 2], &[3, 4, 5, 6]));
        assert_eq!(stacked.rows_slice(3, 0), tensor(vec![0, 2], &[]));
    }

    #[test]
    fn element_count_should_refuse_negative_and_overflowing_dims() {
        assert_eq!(element_count(&[2, 3]), Some(6));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[2, -1]), None);
        assert_eq!(element_count(&[i64::MAX, i64::MAX]), None);
    }
}
