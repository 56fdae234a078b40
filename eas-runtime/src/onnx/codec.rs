//! Request and answer bodies of the `onnx` processor: the EAS `DataProto` protobuf and a JSON
//! form for curl users.
//!
//! Protobuf (the default, what the `eas-prediction` SDK's `OnnxRequest` sends): a
//! `hie.processor.DataProto` with one `TensorProto` per input; the answer is a `DataProto` with
//! one tensor per output, in the model's order, `Content-Type: application/octet-stream`.
//!
//! JSON (when `Content-Type` contains `json`, or the body starts with `{`):
//! ```json
//! {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}
//! {"inputs": {"x": {"shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0], "datatype": "FP32"}}}
//! ```
//! Each input is a nested array (its nesting gives the shape), a number (a scalar), or an object
//! with `shape` and row-major `data` (`datatype` optional; when given it must be the model's).
//! Element types come from the model. The answer, `Content-Type: application/json`:
//! ```json
//! {"outputs": {"y": {"datatype": "FP32", "shape": [1, 3], "data": [0.1, 0.2, 0.7]}}}
//! ```
//! with `data` flat, row-major (non-finite floats are written as `null`).

use bytes::Bytes;
use eas_core::processor::{ProcessError, Request, Response};
use prost::Message;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::json_tensor::nested_shape;

use super::element::{Element, ElementType, with_element};
use super::model::{ModelSpec, supported};
use super::tensor::{Tensor, element_count};
use crate::proto::{DataProto, DataType};

/// The form of a request, and so of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `hie.processor.DataProto`.
    Proto,
    /// `{"inputs": ...}` / `{"outputs": ...}`.
    Json,
}

/// The `Content-Type` of protobuf answers.
pub(crate) const PROTO_CONTENT_TYPE: &str = "application/octet-stream";
/// The `Content-Type` of JSON answers.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json";

impl Format {
    /// JSON when the content type says so, when the body starts with `{`, or when it starts
    /// with white space then `{` and is not a valid `DataProto` (a protobuf body may start
    /// with `\n{`: field 1, 123 bytes long); else protobuf.
    pub fn of(request: &Request) -> Self {
        if crate::request::is_json(request, |body| DataProto::decode(body.clone()).is_ok()) {
            Self::Json
        } else {
            Self::Proto
        }
    }
}

/// Decodes a request body into tensors; does not check them against the model's shapes.
///
/// # Errors
/// A 400 saying what is malformed.
pub(crate) fn decode(
    format: Format,
    body: &Bytes,
    model: &ModelSpec,
) -> Result<Vec<Tensor>, ProcessError> {
    match format {
        Format::Proto => decode_proto(body, model),
        Format::Json => decode_json(body, model),
    }
}

/// Encodes outputs as the answer to a request of `format`.
pub(crate) fn encode(format: Format, outputs: &[Tensor]) -> Response {
    match format {
        Format::Proto => {
            let message = DataProto {
                tensors: outputs.iter().map(Tensor::to_proto).collect(),
            };
            Response::ok(message.encode_to_vec()).with_content_type(PROTO_CONTENT_TYPE)
        }
        Format::Json => match serde_json::to_vec(&JsonOutputs(outputs)) {
            Ok(body) => Response::ok(body).with_content_type(JSON_CONTENT_TYPE),
            Err(e) => Response::with_status(500, format!("cannot write the answer as JSON: {e}")),
        },
    }
}

fn decode_proto(body: &Bytes, model: &ModelSpec) -> Result<Vec<Tensor>, ProcessError> {
    if body.is_empty() {
        return Err(ProcessError::bad_request(format!(
            "empty body: expected a hie.processor.DataProto with the inputs {}",
            model.describe_inputs()
        )));
    }
    let message = DataProto::decode(body.clone()).map_err(|e| {
        ProcessError::bad_request(format!(
            "the body is not a hie.processor.DataProto protobuf ({e}); send DataProto bytes, or \
             JSON {{\"inputs\": {{...}}}} with Content-Type: application/json"
        ))
    })?;
    message
        .tensors
        .into_iter()
        .map(|t| {
            let dtype = match DataType::try_from(t.data_type) {
                Ok(code) => ElementType::from_proto(code).ok_or_else(|| {
                    ProcessError::bad_request(format!(
                        "input `{}`: data type {} is not supported (supported: {})",
                        t.name,
                        code.as_str_name(),
                        supported()
                    ))
                })?,
                Err(_) => {
                    return Err(ProcessError::bad_request(format!(
                        "input `{}`: data_type {} is not a TensorProto.DataType code",
                        t.name, t.data_type
                    )));
                }
            };
            Ok(Tensor {
                name: t.name,
                dtype,
                dims: t.dims,
                data: t.raw_data,
            })
        })
        .collect()
}

fn decode_json(body: &Bytes, model: &ModelSpec) -> Result<Vec<Tensor>, ProcessError> {
    let bad = |why: String| ProcessError::bad_request(why);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not valid JSON: {e}")))?;
    let Some(inputs) = value.get("inputs") else {
        return Err(bad(format!(
            "JSON body without \"inputs\": expected {{\"inputs\": {{\"name\": [[...]]}}}} for the \
             inputs {}",
            model.describe_inputs()
        )));
    };
    let Value::Object(inputs) = inputs else {
        return Err(bad(
            "\"inputs\" must be an object of input name to array".to_owned()
        ));
    };
    inputs
        .iter()
        .map(|(name, value)| {
            let Some(spec) = model.input(name) else {
                return Err(bad(format!(
                    "unknown input `{name}`; the model's inputs are {}",
                    model.describe_inputs()
                )));
            };
            json_tensor(name, spec.dtype, value)
                .map_err(|why| bad(format!("input `{name}`: {why}")))
        })
        .collect()
}

/// One JSON input: a nested array, a number, or `{"shape", "data", "datatype"?}`.
fn json_tensor(name: &str, dtype: ElementType, value: &Value) -> Result<Tensor, String> {
    let mut data = Vec::new();
    let dims = if let Value::Object(fields) = value {
        if let Some(given) = fields.get("datatype") {
            let given = given.as_str().unwrap_or_default();
            if ElementType::from_oip_name(given) != Some(dtype) {
                return Err(format!("datatype {given:?}, but the model takes {dtype}"));
            }
        }
        let shape = fields
            .get("shape")
            .and_then(Value::as_array)
            .ok_or("an object input needs \"shape\": [...] and \"data\": [...]")?;
        let dims = shape
            .iter()
            .map(|d| {
                d.as_i64()
                    .ok_or(format!("shape {shape:?} is not a list of integers"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let values = fields
            .get("data")
            .ok_or("an object input needs \"data\": [...]")?;
        let mut count = 0;
        flatten(values, dtype, &mut Vec::new(), &mut data, &mut count, None)?;
        if element_count(&dims) != Some(count) {
            return Err(format!(
                "\"data\" has {count} elements, but shape {dims:?} needs {}",
                element_count(&dims).map_or_else(|| "a valid shape".to_owned(), |n| n.to_string())
            ));
        }
        dims
    } else {
        let shape = nested_shape(value);
        let mut count = 0;
        flatten(
            value,
            dtype,
            &mut Vec::new(),
            &mut data,
            &mut count,
            Some(&shape),
        )?;
        shape
            .iter()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect()
    };
    Ok(Tensor {
        name: name.to_owned(),
        dtype,
        dims,
        data: Bytes::from(data),
    })
}

/// Appends the elements of `value` as little-endian `dtype`; with `shape`, checks that every
/// array at depth `d` has `shape[d]` items and numbers sit at depth `shape.len()`. An element
/// that is not a `dtype` value (out of range included: no wrapping, no infinity) is an error
/// naming its position, nested and flat.
fn flatten(
    value: &Value,
    dtype: ElementType,
    path: &mut Vec<usize>,
    out: &mut Vec<u8>,
    count: &mut usize,
    shape: Option<&[usize]>,
) -> Result<(), String> {
    let depth = path.len();
    match value {
        Value::Array(items) => {
            if let Some(shape) = shape
                && shape.get(depth) != Some(&items.len())
            {
                return Err(format!(
                    "not a rectangular array: the array at {path:?} has {} items where the first \
                     at this depth has {}",
                    items.len(),
                    shape
                        .get(depth)
                        .map_or_else(|| "none".to_owned(), ToString::to_string)
                ));
            }
            for (i, item) in items.iter().enumerate() {
                path.push(i);
                flatten(item, dtype, path, out, count, shape)?;
                path.pop();
            }
            Ok(())
        }
        _ => {
            if let Some(shape) = shape
                && depth != shape.len()
            {
                return Err(format!(
                    "not a rectangular array: a number at {path:?} where arrays of {} items \
                     are expected",
                    shape[depth]
                ));
            }
            with_element!(dtype, T => match T::from_json(value) {
                Ok(v) => v.write_le(out),
                Err(why) => {
                    return Err(format!(
                        "element {path:?} (flat index {count}) is {value}, {}",
                        why.reason(dtype)
                    ));
                }
            });
            *count += 1;
            Ok(())
        }
    }
}

/// `{"outputs": {name: {datatype, shape, data}}}`, in the model's output order.
struct JsonOutputs<'a>(&'a [Tensor]);

impl Serialize for JsonOutputs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Outputs<'a>(&'a [Tensor]);
        impl Serialize for Outputs<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for tensor in self.0 {
                    map.serialize_entry(&tensor.name, &JsonTensor(tensor))?;
                }
                map.end()
            }
        }
        let mut root = serializer.serialize_map(Some(1))?;
        root.serialize_entry("outputs", &Outputs(self.0))?;
        root.end()
    }
}

/// One output: `{"datatype", "shape", "data"}`.
struct JsonTensor<'a>(&'a Tensor);

impl Serialize for JsonTensor<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Data<'a>(&'a Tensor);
        impl Serialize for Data<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let t = self.0;
                with_element!(t.dtype, T => {
                    serializer.collect_seq(t.data.chunks_exact(T::SIZE).map(T::read_le))
                })
            }
        }
        let mut s = serializer.serialize_struct("Tensor", 3)?;
        s.serialize_field("datatype", self.0.dtype.oip_name())?;
        s.serialize_field("shape", &self.0.dims)?;
        s.serialize_field("data", &Data(self.0))?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::onnx::model::TensorSpec;

    fn model() -> ModelSpec {
        ModelSpec {
            inputs: vec![
                TensorSpec {
                    name: "x".into(),
                    dtype: ElementType::F32,
                    shape: vec![-1, 2],
                    symbols: vec![],
                },
                TensorSpec {
                    name: "n".into(),
                    dtype: ElementType::I64,
                    shape: vec![],
                    symbols: vec![],
                },
            ],
            outputs: vec![],
            batchable: false,
        }
    }

    fn json_body(value: &Value) -> Bytes {
        Bytes::from(value.to_string())
    }

    #[test]
    fn format_should_follow_content_type_then_first_byte() {
        assert_eq!(
            Format::of(&Request::new("\n {\"inputs\":{}}")),
            Format::Json
        );
        assert_eq!(
            Format::of(&Request::new("x").with_content_type("application/json; charset=utf-8")),
            Format::Json
        );
        assert_eq!(Format::of(&Request::new(vec![0x0a, 0x00])), Format::Proto);
        // A DataProto whose first tensor is 123 (`{`) bytes long starts with "\n{".
        let tensor =
            crate::proto::TensorProto::new("x", vec![1, 28], DataType::Float, vec![0; 112]);
        let body = DataProto {
            tensors: vec![tensor],
        }
        .encode_to_vec();
        assert_eq!(&body[..2], b"\n{");
        assert_eq!(Format::of(&Request::new(body)), Format::Proto);
    }

    #[test]
    fn json_nested_arrays_should_give_shape_and_model_types() {
        let body = json_body(&json!({"inputs": {"x": [[1, 2.5], [3, 4]], "n": 7}}));
        let tensors = decode(Format::Json, &body, &model()).expect("decodes");
        assert_eq!(tensors[0].dims, vec![2, 2]);
        assert_eq!(tensors[0].dtype, ElementType::F32);
        assert_eq!(f32::read_le(&tensors[0].data[4..8]), 2.5);
        assert_eq!(tensors[1].dims, Vec::<i64>::new());
        assert_eq!(i64::read_le(&tensors[1].data), 7);
    }

    #[test]
    fn json_object_form_should_take_shape_and_flat_data() {
        let body = json_body(&json!({"inputs": {
            "x": {"shape": [1, 2], "data": [1, 2], "datatype": "FP32"}}}));
        let tensors = decode(Format::Json, &body, &model()).expect("decodes");
        assert_eq!(tensors[0].dims, vec![1, 2]);
        assert_eq!(tensors[0].data.len(), 8);
    }

    #[test]
    fn json_errors_should_say_what_is_wrong() {
        let cases = [
            (
                json!({"inputs": {"x": [[1, 2], [3]]}}),
                "not a rectangular array",
            ),
            (
                json!({"inputs": {"x": [[1, "a"]]}}),
                "input `x`: element [0, 1] (flat index 1) is \"a\", not a number",
            ),
            (
                json!({"inputs": {"n": 1.5}}),
                "input `n`: element [] (flat index 0) is 1.5, not an integer",
            ),
            (
                json!({"inputs": {"x": [[1, 2], [3, 3.5e38]]}}),
                "input `x`: element [1, 1] (flat index 3) is 3.5e+38, out of the range of FP32 \
                 (-3.4028235e38 to 3.4028235e38)",
            ),
            (
                json!({"inputs": {"x": {"shape": [1, 2], "data": [-3.5e38, 1]}}}),
                "input `x`: element [0] (flat index 0) is -3.5e+38, out of the range of FP32",
            ),
            (
                json!({"inputs": {"n": 9_223_372_036_854_775_808_u64}}),
                "input `n`: element [] (flat index 0) is 9223372036854775808, out of the range \
                 of INT64",
            ),
            (json!({"inputs": {"y": [1]}}), "unknown input `y`"),
            (json!({"input": {}}), "without \"inputs\""),
            (
                json!({"inputs": {"x": {"shape": [1, 2], "data": [1, 2, 3]}}}),
                "\"data\" has 3 elements, but shape [1, 2] needs 2",
            ),
            (
                json!({"inputs": {"x": {"shape": [1, 2], "data": [1, 2], "datatype": "INT64"}}}),
                "datatype \"INT64\", but the model takes FP32",
            ),
        ];
        for (value, want) in cases {
            let err = decode(Format::Json, &json_body(&value), &model()).expect_err("refused");
            assert_eq!(err.status, 400);
            assert!(
                err.message.contains(want),
                "{:?} should contain {want:?}",
                err.message
            );
        }
        let err = decode(Format::Json, &Bytes::from("{nope"), &model()).expect_err("bad JSON");
        assert!(err.message.contains("not valid JSON"), "{}", err.message);
    }

    #[test]
    fn proto_errors_should_say_what_is_wrong() {
        let err = decode(
            Format::Proto,
            &Bytes::from_static(&[0x0a, 0x05, 0x01]),
            &model(),
        )
        .expect_err("truncated");
        assert!(
            err.message.contains("not a hie.processor.DataProto"),
            "{}",
            err.message
        );
        let err = decode(Format::Proto, &Bytes::new(), &model()).expect_err("empty");
        assert!(err.message.contains("empty body"), "{}", err.message);
        let half = DataProto {
            tensors: vec![crate::proto::TensorProto::new(
                "x",
                vec![1],
                DataType::Float16,
                vec![0, 0],
            )],
        };
        let err =
            decode(Format::Proto, &Bytes::from(half.encode_to_vec()), &model()).expect_err("fp16");
        assert!(
            err.message.contains("FLOAT16 is not supported"),
            "{}",
            err.message
        );
    }

    #[test]
    fn json_answer_should_list_outputs_in_order_with_short_floats() {
        let mut data = Vec::new();
        0.1_f32.write_le(&mut data);
        f32::NAN.write_le(&mut data);
        let outputs = [
            Tensor {
                name: "z".into(),
                dtype: ElementType::F32,
                dims: vec![1, 2],
                data: data.into(),
            },
            Tensor {
                name: "a".into(),
                dtype: ElementType::U8,
                dims: vec![1],
                data: Bytes::from_static(&[200]),
            },
        ];
        let answer = encode(Format::Json, &outputs);
        assert_eq!(answer.content_type.as_deref(), Some(JSON_CONTENT_TYPE));
        assert_eq!(
            std::str::from_utf8(&answer.body).expect("utf-8"),
            r#"{"outputs":{"z":{"datatype":"FP32","shape":[1,2],"data":[0.1,null]},"a":{"datatype":"UINT8","shape":[1],"data":[200]}}}"#
        );
    }
}
