//! [`ModelSpec`]: a model's inputs and outputs, and the checks every request passes before it
//! reaches ONNX Runtime.

use std::fmt::Write as _;

use eas_core::processor::{ModelMetadata, ProcessError, TensorInfo};
use ort::session::Session;
use ort::value::ValueType;

use super::element::ElementType;
use super::tensor::{Tensor, element_count};

/// One input or output: name, element type and shape (`-1` for a dynamic dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorSpec {
    /// The name.
    pub name: String,
    /// The element type.
    pub dtype: ElementType,
    /// The shape; `-1` marks a dynamic dimension.
    pub shape: Vec<i64>,
    /// The name of each dynamic dimension (empty when unnamed): inputs that share a name must
    /// agree on its size.
    pub symbols: Vec<String>,
}

impl TensorSpec {
    fn describe(&self) -> String {
        format!("`{}` ({} {:?})", self.name, self.dtype, self.shape)
    }
}

/// What a model takes and returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelSpec {
    /// The inputs, in the model's order.
    pub inputs: Vec<TensorSpec>,
    /// The outputs, in the model's order.
    pub outputs: Vec<TensorSpec>,
    /// Whether requests can be stacked: every input has a dynamic first dimension.
    pub batchable: bool,
}

impl ModelSpec {
    /// Reads a session's inputs and outputs.
    ///
    /// # Errors
    /// A message naming the first input or output that is not a tensor of a supported type.
    pub fn from_session(session: &Session) -> Result<Self, String> {
        let read = |kind: &str, outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|outlet| match outlet.dtype() {
                    ValueType::Tensor {
                        ty,
                        shape,
                        dimension_symbols,
                    } => match ElementType::from_ort(*ty) {
                        Some(dtype) => Ok(TensorSpec {
                            name: outlet.name().to_owned(),
                            dtype,
                            shape: shape.to_vec(),
                            symbols: dimension_symbols.to_vec(),
                        }),
                        None => Err(format!(
                            "{kind} `{}` has element type {ty}, which the onnx processor does \
                             not exchange (it supports {})",
                            outlet.name(),
                            supported()
                        )),
                    },
                    other => Err(format!(
                        "{kind} `{}` is a {other}, not a tensor; the onnx processor exchanges \
                         tensors only",
                        outlet.name()
                    )),
                })
                .collect::<Result<Vec<_>, String>>()
        };
        let inputs = read("input", session.inputs())?;
        let outputs = read("output", session.outputs())?;
        let batchable = inputs
            .iter()
            .all(|i| i.shape.first().is_some_and(|&d| d < 0));
        Ok(Self {
            inputs,
            outputs,
            batchable,
        })
    }

    /// The OIP metadata of this model.
    pub fn metadata(&self, name: &str) -> ModelMetadata {
        let info = |t: &TensorSpec| TensorInfo::new(&t.name, t.dtype.oip_name(), t.shape.clone());
        ModelMetadata {
            name: name.to_owned(),
            platform: "onnxruntime".to_owned(),
            inputs: self.inputs.iter().map(info).collect(),
            outputs: self.outputs.iter().map(info).collect(),
        }
    }

    /// The input named `name`.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// `` `a` (FP32 [-1, 3]), `b` (...) ``: the inputs, for error messages.
    pub fn describe_inputs(&self) -> String {
        let mut out = String::new();
        for (i, input) in self.inputs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}", input.describe());
        }
        out
    }

    /// Checks a request's tensors against the inputs and returns them in the model's order.
    ///
    /// # Errors
    /// A 400 naming the first tensor that is unknown, repeated, of the wrong type or shape, or
    /// whose data does not match its shape, or the first input the request lacks.
    pub fn check(&self, tensors: Vec<Tensor>) -> Result<Vec<Tensor>, ProcessError> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.inputs.len()];
        for tensor in tensors {
            let Some(index) = self.inputs.iter().position(|i| i.name == tensor.name) else {
                return Err(ProcessError::bad_request(format!(
                    "unknown input `{}`; the model's inputs are {}",
                    tensor.name,
                    self.describe_inputs()
                )));
            };
            if slots[index].is_some() {
                return Err(ProcessError::bad_request(format!(
                    "input `{}` is given twice",
                    tensor.name
                )));
            }
            check_tensor(&self.inputs[index], &tensor)?;
            slots[index] = Some(tensor);
        }
        let tensors = slots
            .into_iter()
            .zip(&self.inputs)
            .map(|(slot, spec)| {
                slot.ok_or_else(|| {
                    ProcessError::bad_request(format!(
                        "missing input `{}`; the model's inputs are {}",
                        spec.name,
                        self.describe_inputs()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.check_symbols(&tensors)?;
        Ok(tensors)
    }

    /// Checks that dynamic dimensions sharing a name have one size across the inputs.
    fn check_symbols(&self, tensors: &[Tensor]) -> Result<(), ProcessError> {
        let mut seen: Vec<(&str, i64, &str, usize)> = Vec::new();
        for (spec, tensor) in self.inputs.iter().zip(tensors) {
            for (axis, (symbol, &size)) in spec.symbols.iter().zip(&tensor.dims).enumerate() {
                if symbol.is_empty() || spec.shape.get(axis).is_some_and(|&d| d >= 0) {
                    continue;
                }
                match seen.iter().find(|(s, ..)| s == symbol) {
                    Some(&(_, first, first_input, first_axis)) if first != size => {
                        return Err(ProcessError::bad_request(format!(
                            "input `{}`: dimension {axis} is {size}, but input `{first_input}` \
                             has {first} at dimension {first_axis}; the model names both `{symbol}`",
                            spec.name
                        )));
                    }
                    Some(_) => {}
                    None => seen.push((symbol, size, &spec.name, axis)),
                }
            }
        }
        Ok(())
    }

    /// How a checked request stacks with others: its row count and the trailing dimensions of
    /// each input, or `None` when it must run on its own.
    pub fn stack_key(&self, inputs: &[Tensor]) -> Option<(usize, Vec<Vec<i64>>)> {
        if !self.batchable {
            return None;
        }
        let rows = inputs.first()?.rows()?;
        if inputs.iter().any(|t| t.rows() != Some(rows)) {
            return None;
        }
        Some((rows, inputs.iter().map(|t| t.dims[1..].to_vec()).collect()))
    }
}

/// The supported element types, for error messages.
pub(crate) fn supported() -> String {
    ElementType::ALL
        .iter()
        .map(|t| t.oip_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks one tensor against its input.
fn check_tensor(spec: &TensorSpec, tensor: &Tensor) -> Result<(), ProcessError> {
    let bad = |why: String| {
        Err(ProcessError::bad_request(format!(
            "input `{}`: {why}",
            spec.name
        )))
    };
    if tensor.dtype != spec.dtype {
        return bad(format!(
            "data type {}, but the model takes {}",
            tensor.dtype, spec.dtype
        ));
    }
    if tensor.dims.len() != spec.shape.len() {
        return bad(format!(
            "shape {:?} has {} dimensions, but the model takes {} ({:?})",
            tensor.dims,
            tensor.dims.len(),
            spec.shape.len(),
            spec.shape
        ));
    }
    if let Some(d) = tensor.dims.iter().find(|&&d| d < 0) {
        return bad(format!(
            "shape {:?} has a negative dimension {d}",
            tensor.dims
        ));
    }
    for (axis, (&got, &want)) in tensor.dims.iter().zip(&spec.shape).enumerate() {
        if want >= 0 && got != want {
            return bad(format!(
                "shape {:?} does not match the model's {:?} at dimension {axis} ({got} instead \
                 of {want})",
                tensor.dims, spec.shape
            ));
        }
    }
    let Some(elements) = element_count(&tensor.dims) else {
        return bad(format!("shape {:?} is too large", tensor.dims));
    };
    let want = elements.checked_mul(spec.dtype.size());
    if want != Some(tensor.data.len()) {
        return bad(format!(
            "raw_data has {} bytes, but shape {:?} of {} needs {} ({elements} elements of {} \
             bytes)",
            tensor.data.len(),
            tensor.dims,
            spec.dtype,
            want.map_or_else(|| "more".to_owned(), |w| w.to_string()),
            spec.dtype.size()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn spec() -> ModelSpec {
        let t = |name: &str, shape: Vec<i64>| TensorSpec {
            name: name.into(),
            dtype: ElementType::F32,
            symbols: vec!["N".into(), String::new()],
            shape,
        };
        ModelSpec {
            inputs: vec![t("a", vec![-1, 3]), t("b", vec![-1, 3])],
            outputs: vec![t("y", vec![-1, 3])],
            batchable: true,
        }
    }

    fn tensor(name: &str, dims: Vec<i64>, bytes: usize) -> Tensor {
        Tensor {
            name: name.into(),
            dtype: ElementType::F32,
            dims,
            data: Bytes::from(vec![0; bytes]),
        }
    }

    fn message(result: Result<Vec<Tensor>, ProcessError>) -> String {
        let err = result.expect_err("refused");
        assert_eq!(err.status, 400);
        err.message
    }

    #[test]
    fn check_should_order_inputs_as_the_model_does() {
        let checked = spec()
            .check(vec![
                tensor("b", vec![1, 3], 12),
                tensor("a", vec![1, 3], 12),
            ])
            .expect("valid");
        assert_eq!(checked[0].name, "a");
        assert_eq!(
            spec().stack_key(&checked),
            Some((1, vec![vec![3], vec![3]]))
        );
    }

    #[test]
    fn check_should_name_each_kind_of_bad_input() {
        let s = spec();
        let a = || tensor("a", vec![1, 3], 12);
        let cases: Vec<(Vec<Tensor>, &str)> = vec![
            (vec![a(), tensor("c", vec![1, 3], 12)], "unknown input `c`"),
            (vec![a(), a()], "input `a` is given twice"),
            (vec![a()], "missing input `b`"),
            (
                vec![a(), tensor("b", vec![3], 12)],
                "has 1 dimensions, but the model takes 2",
            ),
            (
                vec![a(), tensor("b", vec![1, 4], 16)],
                "at dimension 1 (4 instead of 3)",
            ),
            (
                vec![a(), tensor("b", vec![-1, 3], 12)],
                "negative dimension -1",
            ),
            (
                vec![a(), tensor("b", vec![2, 3], 12)],
                "raw_data has 12 bytes",
            ),
        ];
        for (tensors, want) in cases {
            let got = message(s.check(tensors));
            assert!(got.contains(want), "{got:?} should contain {want:?}");
        }
        let mut wrong_type = tensor("b", vec![1, 3], 24);
        wrong_type.dtype = ElementType::I64;
        let got = message(s.check(vec![a(), wrong_type]));
        assert!(
            got.contains("data type INT64, but the model takes FP32"),
            "{got}"
        );
    }

    #[test]
    fn stack_key_should_refuse_requests_whose_inputs_disagree_on_rows() {
        let s = spec();
        let inputs = vec![tensor("a", vec![1, 3], 12), tensor("b", vec![2, 3], 24)];
        assert_eq!(s.stack_key(&inputs), None);
        let fixed = ModelSpec {
            batchable: false,
            ..spec()
        };
        let inputs = vec![tensor("a", vec![1, 3], 12), tensor("b", vec![1, 3], 12)];
        assert_eq!(fixed.stack_key(&inputs), None);
    }
}
