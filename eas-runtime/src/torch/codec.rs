//! Request and answer bodies of the `torch` processor: the EAS PyTorch protobuf and the JSON
//! form the `onnx` processor also takes.
//!
//! Protobuf (the default, what the `eas-prediction` SDK's `TorchRequest` sends): a
//! `pytorch.eas.PredictRequest` ([`crate::proto::pytorch`]) whose `inputs` are `forward`'s
//! arguments in order (or whose `map_inputs` are the entries of its one `Dict[str, Tensor]`
//! argument), `output_filter` the indexes of the outputs to return. The answer is a
//! `PredictResponse`: `outputs` in the model's order, or `map_outputs` when `forward` returns a
//! dict (`Content-Type: application/octet-stream`).
//!
//! JSON (when `Content-Type` contains `json`, or the body starts with `{`):
//! ```json
//! {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}
//! {"inputs": {"x": {"shape": [1, 4], "data": [1, 2, 3, 4], "datatype": "FP32"}}}
//! ```
//! TorchScript does not name `forward`'s arguments to its callers, so the inputs are its
//! positional arguments in the order written (the names are only labels). Each is a nested
//! array (its nesting is the shape), a number, or an object with `shape`, row-major `data`
//! and `datatype` (FP32 when not given, as for arrays and numbers). The answer,
//! `Content-Type: application/json`:
//! ```json
//! {"outputs": {"output_0": {"datatype": "FP32", "shape": [1, 3], "data": [0.1, 0.2, 0.7]}}}
//! ```
//! named `output_<i>` in the model's order, or by their keys when `forward` returns a dict;
//! `data` flat and row-major, non-finite floats as `null`.

use bytes::Bytes;
use eas_core::processor::{ProcessError, Request, Response};
use prost::Message;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::json_tensor::nested_shape;
use tch::{Kind, Tensor};

use super::feed::Feed;
use super::host::{Elements, Outputs, Values};
use super::kind;
use crate::proto::pytorch::{ArrayDataType, ArrayProto, PredictRequest, PredictResponse};

/// The `Content-Type` of protobuf answers.
const PROTO_CONTENT_TYPE: &str = "application/octet-stream";
/// The `Content-Type` of JSON answers.
const JSON_CONTENT_TYPE: &str = "application/json";

/// The form of a request, and so of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `pytorch.eas.PredictRequest` / `PredictResponse`.
    Proto,
    /// `{"inputs": ...}` / `{"outputs": ...}`.
    Json,
}

impl Format {
    /// JSON when the content type says so, when the body starts with `{`, or when it starts
    /// with white space then `{` and is not a valid `PredictRequest`; else protobuf.
    pub fn of(request: &Request) -> Self {
        if crate::request::is_json(request, |body| PredictRequest::decode(body.clone()).is_ok()) {
            Self::Json
        } else {
            Self::Proto
        }
    }
}

/// A decoded request: its inputs and which outputs it wants.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The inputs.
    pub feed: Feed,
    /// The indexes of the outputs to return; all when empty.
    pub filter: Vec<i32>,
}

/// Decodes a request body.
///
/// # Errors
/// A 400 saying what is malformed.
pub(crate) fn decode(format: Format, body: &Bytes) -> Result<Decoded, ProcessError> {
    match format {
        Format::Proto => decode_proto(body),
        Format::Json => decode_json(body),
    }
    .map_err(ProcessError::bad_request)
}

/// Encodes the outputs (the `filter`ed ones) as the answer to a request of `format`.
///
/// # Errors
/// A 400 when `filter` names an output the model does not return; a 500 when an output
/// cannot be read or sent.
pub(crate) fn encode(
    format: Format,
    outputs: &Outputs,
    filter: &[i32],
) -> Result<Response, ProcessError> {
    let count = outputs.elements.len();
    let chosen: Vec<usize> = if filter.is_empty() {
        (0..count).collect()
    } else {
        filter
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < count)
                    .ok_or_else(|| {
                        ProcessError::bad_request(format!(
                            "output_filter asks for output {i}, but the model returned {} \
                             output(s)",
                            count
                        ))
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let name = |i: usize| match &outputs.keys {
        Some(keys) => keys[i].clone(),
        None => format!("output_{i}"),
    };
    let keyed = outputs.keys.is_some();
    let outputs: Vec<(String, &Elements)> = chosen
        .iter()
        .map(|&i| (name(i), &outputs.elements[i]))
        .collect();
    Ok(match format {
        Format::Proto => {
            let mut answer = PredictResponse::default();
            for (name, elements) in outputs {
                if keyed {
                    answer.map_outputs.insert(name, elements.to_proto());
                } else {
                    answer.outputs.push(elements.to_proto());
                }
            }
            Response::ok(answer.encode_to_vec()).with_content_type(PROTO_CONTENT_TYPE)
        }
        Format::Json => match serde_json::to_vec(&JsonOutputs(&outputs)) {
            Ok(body) => Response::ok(body).with_content_type(JSON_CONTENT_TYPE),
            Err(e) => {
                return Err(ProcessError::internal(format!(
                    "cannot write the answer as JSON: {e}"
                )));
            }
        },
    })
}

fn decode_proto(body: &Bytes) -> Result<Decoded, String> {
    if body.is_empty() {
        return Err(
            "empty body: expected a pytorch.eas.PredictRequest protobuf (the SDK's TorchRequest) \
             or JSON {\"inputs\": {...}}"
                .to_owned(),
        );
    }
    let request = PredictRequest::decode(body.clone()).map_err(|e| {
        format!(
            "the body is not a pytorch.eas.PredictRequest protobuf ({e}); send TorchRequest \
             bytes, or JSON {{\"inputs\": {{...}}}} with Content-Type: application/json"
        )
    })?;
    let feed = match (request.inputs.is_empty(), request.map_inputs.is_empty()) {
        (false, false) => {
            return Err("the request has both inputs and map_inputs; send one of them".to_owned());
        }
        (true, true) => return Err("the request has no inputs".to_owned()),
        (false, true) => Feed {
            keys: None,
            tensors: request
                .inputs
                .iter()
                .enumerate()
                .map(|(i, a)| proto_tensor(a).map_err(|e| format!("input {i}: {e}")))
                .collect::<Result<_, _>>()?,
        },
        (true, false) => {
            let mut entries: Vec<_> = request.map_inputs.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Feed {
                keys: Some(entries.iter().map(|(k, _)| (*k).clone()).collect()),
                tensors: entries
                    .iter()
                    .map(|(k, a)| proto_tensor(a).map_err(|e| format!("input `{k}`: {e}")))
                    .collect::<Result<_, _>>()?,
            }
        }
    };
    Ok(Decoded {
        feed,
        filter: request.output_filter,
    })
}

/// The number of elements of `dims`, or `None` when a dimension is negative or the product
/// overflows.
fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1_usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    })
}

/// One protobuf tensor as a CPU tensor of its shape.
fn proto_tensor(array: &ArrayProto) -> Result<Tensor, String> {
    let code = array.dtype;
    let dtype = ArrayDataType::try_from(code)
        .map_err(|_| format!("dtype {code} is not an ArrayDataType code"))?;
    let kind = kind::from_proto(dtype).ok_or_else(|| {
        format!(
            "dtype {} is not supported (supported: {})",
            dtype.as_str_name(),
            kind::supported()
        )
    })?;
    let dims = array.dims();
    let count = element_count(dims)
        .ok_or_else(|| format!("shape {dims:?} has a negative dimension or is too large"))?;
    let ints = |field: &str| -> Result<(), String> {
        if array.int_val.len() == count {
            Ok(())
        } else {
            Err(format!(
                "{field} holds {} elements, but shape {dims:?} needs {count}",
                array.int_val.len()
            ))
        }
    };
    let narrow = |min: i64, max: i64| -> Result<(), String> {
        match array
            .int_val
            .iter()
            .position(|&v| i64::from(v) < min || i64::from(v) > max)
        {
            Some(i) => Err(format!(
                "int_val[{i}] is {}, out of the range of {} ({min} to {max})",
                array.int_val[i],
                kind::name(kind).unwrap_or("its type")
            )),
            None => Ok(()),
        }
    };
    let check = |len: usize, field: &str| -> Result<(), String> {
        if len == count {
            Ok(())
        } else {
            Err(format!(
                "{field} holds {len} elements, but shape {dims:?} needs {count}"
            ))
        }
    };
    let tensor = match kind {
        Kind::Float => {
            check(array.float_val.len(), "float_val")?;
            Tensor::f_from_slice(&array.float_val)
        }
        Kind::Double => {
            check(array.double_val.len(), "double_val")?;
            Tensor::f_from_slice(&array.double_val)
        }
        Kind::Int64 => {
            check(array.int64_val.len(), "int64_val")?;
            Tensor::f_from_slice(&array.int64_val)
        }
        Kind::Int => {
            ints("int_val")?;
            Tensor::f_from_slice(&array.int_val)
        }
        Kind::Int16 => {
            ints("int_val")?;
            narrow(i16::MIN.into(), i16::MAX.into())?;
            let v: Vec<i16> = array.int_val.iter().map(|&v| v as i16).collect();
            Tensor::f_from_slice(&v)
        }
        Kind::Int8 => {
            ints("int_val")?;
            narrow(i8::MIN.into(), i8::MAX.into())?;
            let v: Vec<i8> = array.int_val.iter().map(|&v| v as i8).collect();
            Tensor::f_from_slice(&v)
        }
        Kind::Uint8 => {
            ints("int_val")?;
            narrow(0, u8::MAX.into())?;
            let v: Vec<u8> = array.int_val.iter().map(|&v| v as u8).collect();
            Tensor::f_from_slice(&v)
        }
        _ => {
            ints("int_val")?;
            narrow(0, 1)?;
            let v: Vec<bool> = array.int_val.iter().map(|&v| v != 0).collect();
            Tensor::f_from_slice(&v)
        }
    };
    tensor
        .and_then(|t| t.f_reshape(dims))
        .map_err(|e| format!("cannot build the tensor: {e}"))
}

fn decode_json(body: &Bytes) -> Result<Decoded, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Some(inputs) = value.get("inputs") else {
        return Err(
            "JSON body without \"inputs\": expected {\"inputs\": {\"x\": [[...]]}}, one entry per \
             argument of the model's forward, in order"
                .to_owned(),
        );
    };
    let Value::Object(inputs) = inputs else {
        return Err("\"inputs\" must be an object of input name to array".to_owned());
    };
    if inputs.is_empty() {
        return Err("\"inputs\" is empty".to_owned());
    }
    let tensors = inputs
        .iter()
        .map(|(name, value)| json_tensor(value).map_err(|why| format!("input `{name}`: {why}")))
        .collect::<Result<_, _>>()?;
    Ok(Decoded {
        feed: Feed {
            keys: None,
            tensors,
        },
        filter: Vec::new(),
    })
}

/// One JSON input: a nested array, a number, or `{"shape", "data", "datatype"?}`.
fn json_tensor(value: &Value) -> Result<Tensor, String> {
    let mut elements = Vec::new();
    let (dims, kind) = if let Value::Object(fields) = value {
        let kind = match fields.get("datatype") {
            None => Kind::Float,
            Some(given) => given.as_str().and_then(kind::from_name).ok_or_else(|| {
                format!(
                    "datatype {given} is not supported (supported: {})",
                    kind::supported()
                )
            })?,
        };
        let shape = fields
            .get("shape")
            .and_then(Value::as_array)
            .ok_or("an object input needs \"shape\": [...] and \"data\": [...]")?;
        let dims = shape
            .iter()
            .map(|d| {
                d.as_i64()
                    .filter(|d| *d >= 0)
                    .ok_or(format!("shape {shape:?} is not a list of sizes"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let data = fields
            .get("data")
            .ok_or("an object input needs \"data\": [...]")?;
        flatten(data, &mut Vec::new(), &mut elements, None)?;
        let count = element_count(&dims).ok_or(format!("shape {dims:?} is too large"))?;
        if elements.len() != count {
            return Err(format!(
                "\"data\" has {} elements, but shape {dims:?} needs {count}",
                elements.len()
            ));
        }
        (dims, kind)
    } else {
        let shape = nested_shape(value);
        flatten(value, &mut Vec::new(), &mut elements, Some(&shape))?;
        let dims = shape
            .iter()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect();
        (dims, Kind::Float)
    };
    let tensor = build(kind, &elements)?;
    tensor
        .f_reshape(dims.as_slice())
        .map_err(|e| format!("cannot build the tensor: {e}"))
}

/// Collects the leaves of `value` with their positions; with `shape`, checks that the array
/// is rectangular.
fn flatten<'a>(
    value: &'a Value,
    path: &mut Vec<usize>,
    out: &mut Vec<(Vec<usize>, &'a Value)>,
    shape: Option<&[usize]>,
) -> Result<(), String> {
    let depth = path.len();
    if let Value::Array(items) = value {
        if let Some(shape) = shape
            && shape.get(depth) != Some(&items.len())
        {
            return Err(format!(
                "not a rectangular array: the array at {path:?} has {} items where the first at \
                 this depth has {}",
                items.len(),
                shape
                    .get(depth)
                    .map_or_else(|| "none".to_owned(), ToString::to_string)
            ));
        }
        for (i, item) in items.iter().enumerate() {
            path.push(i);
            flatten(item, path, out, shape)?;
            path.pop();
        }
        return Ok(());
    }
    if let Some(shape) = shape
        && depth != shape.len()
    {
        return Err(format!(
            "not a rectangular array: a number at {path:?} where arrays of {} items are expected",
            shape[depth]
        ));
    }
    out.push((path.clone(), value));
    Ok(())
}

/// A CPU tensor of `kind` from JSON leaves; an element the kind cannot hold is an error naming
/// its position.
fn build(kind: Kind, elements: &[(Vec<usize>, &Value)]) -> Result<Tensor, String> {
    let name = kind::name(kind).unwrap_or("its type");
    let bad = |i: usize, why: &str| {
        let (path, value) = &elements[i];
        format!("element {path:?} (flat index {i}) is {value}, {why}")
    };
    let floats = || {
        elements
            .iter()
            .enumerate()
            .map(|(i, (_, v))| v.as_f64().ok_or_else(|| bad(i, "not a number")))
            .collect::<Result<Vec<f64>, String>>()
    };
    let ints = |min: i64, max: i64| {
        elements
            .iter()
            .enumerate()
            .map(|(i, (_, v))| {
                let n = v.as_i64().ok_or_else(|| {
                    bad(
                        i,
                        if v.is_number() {
                            "not an integer in range"
                        } else {
                            "not a number"
                        },
                    )
                })?;
                if n < min || n > max {
                    return Err(bad(
                        i,
                        &format!("out of the range of {name} ({min} to {max})"),
                    ));
                }
                Ok(n)
            })
            .collect::<Result<Vec<i64>, String>>()
    };
    let made = match kind {
        Kind::Float => {
            let values = floats()?;
            if let Some(i) = values.iter().position(|v| v.abs() > f64::from(f32::MAX)) {
                return Err(bad(i, "out of the range of FP32"));
            }
            let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            Tensor::f_from_slice(&values)
        }
        Kind::Double => Tensor::f_from_slice(&floats()?),
        Kind::Int64 => Tensor::f_from_slice(&ints(i64::MIN, i64::MAX)?),
        Kind::Int => {
            let v: Vec<i32> = ints(i32::MIN.into(), i32::MAX.into())?
                .iter()
                .map(|&v| v as i32)
                .collect();
            Tensor::f_from_slice(&v)
        }
        Kind::Int16 => {
            let v: Vec<i16> = ints(i16::MIN.into(), i16::MAX.into())?
                .iter()
                .map(|&v| v as i16)
                .collect();
            Tensor::f_from_slice(&v)
        }
        Kind::Int8 => {
            let v: Vec<i8> = ints(i8::MIN.into(), i8::MAX.into())?
                .iter()
                .map(|&v| v as i8)
                .collect();
            Tensor::f_from_slice(&v)
        }
        Kind::Uint8 => {
            let v: Vec<u8> = ints(0, u8::MAX.into())?.iter().map(|&v| v as u8).collect();
            Tensor::f_from_slice(&v)
        }
        _ => {
            let v = elements
                .iter()
                .enumerate()
                .map(|(i, (_, v))| match v {
                    Value::Bool(b) => Ok(*b),
                    _ => match v.as_i64() {
                        Some(0) => Ok(false),
                        Some(1) => Ok(true),
                        _ => Err(bad(i, "not a bool (true, false, 0 or 1)")),
                    },
                })
                .collect::<Result<Vec<bool>, String>>()?;
            Tensor::f_from_slice(&v)
        }
    };
    made.map_err(|e| format!("cannot build the tensor: {e}"))
}

/// `{"outputs": {name: {datatype, shape, data}}}`, in the model's output order.
struct JsonOutputs<'a>(&'a [(String, &'a Elements)]);

impl Serialize for JsonOutputs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Named<'a>(&'a [(String, &'a Elements)]);
        impl Serialize for Named<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (name, elements) in self.0 {
                    map.serialize_entry(
                        name,
                        &JsonTensor {
                            datatype: kind::name(elements.kind).unwrap_or("FP32"),
                            shape: &elements.dims,
                            data: &elements.values,
                        },
                    )?;
                }
                map.end()
            }
        }
        let mut root = serializer.serialize_map(Some(1))?;
        root.serialize_entry("outputs", &Named(self.0))?;
        root.end()
    }
}

/// One JSON output.
#[derive(Serialize)]
struct JsonTensor<'a> {
    datatype: &'static str,
    shape: &'a [i64],
    data: &'a Values,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::proto::pytorch::ArrayShape;

    fn json_body(value: &Value) -> Bytes {
        Bytes::from(value.to_string())
    }

    #[test]
    fn json_inputs_should_be_positional_with_their_shapes_and_types() {
        let body = json_body(&json!({"inputs": {"b": [[1, 2.5], [3, 4]], "a": {
            "shape": [3], "data": [1, 2, 3], "datatype": "INT64"}}}));
        let decoded = decode(Format::Json, &body).expect("decodes");
        let t = &decoded.feed.tensors;
        assert_eq!(t[0].size(), vec![2, 2]);
        assert_eq!(t[0].kind(), Kind::Float);
        assert_eq!(t[1].kind(), Kind::Int64);
        assert_eq!(Vec::<i64>::try_from(&t[1]).expect("ints"), vec![1, 2, 3]);
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
                json!({"inputs": {"x": {"shape": [1], "data": [1.5], "datatype": "INT32"}}}),
                "is 1.5, not an integer",
            ),
            (
                json!({"inputs": {"x": {"shape": [1], "data": [300], "datatype": "UINT8"}}}),
                "out of the range of UINT8",
            ),
            (
                json!({"inputs": {"x": [3.5e38]}}),
                "out of the range of FP32",
            ),
            (
                json!({"inputs": {"x": {"shape": [1, 2], "data": [1]}}}),
                "\"data\" has 1 elements, but shape [1, 2] needs 2",
            ),
            (
                json!({"inputs": {"x": {"shape": [1], "data": [1], "datatype": "FP16"}}}),
                "datatype \"FP16\" is not supported",
            ),
            (json!({"input": {}}), "without \"inputs\""),
            (json!({"inputs": {}}), "\"inputs\" is empty"),
        ];
        for (value, want) in cases {
            let err = decode(Format::Json, &json_body(&value)).expect_err("refused");
            assert_eq!(err.status, 400);
            assert!(
                err.message.contains(want),
                "{:?} should contain {want:?}",
                err.message
            );
        }
    }

    #[test]
    fn proto_errors_should_say_what_is_wrong() {
        let err = decode(Format::Proto, &Bytes::from_static(&[0x0a, 0x05, 0x01])).expect_err("x");
        assert!(
            err.message.contains("not a pytorch.eas.PredictRequest"),
            "{}",
            err.message
        );
        let request = |array: ArrayProto| {
            Bytes::from(
                PredictRequest {
                    inputs: vec![array],
                    ..PredictRequest::default()
                }
                .encode_to_vec(),
            )
        };
        let short = request(ArrayProto::floats(vec![2, 2], vec![1.0; 3]));
        let err = decode(Format::Proto, &short).expect_err("short");
        assert!(
            err.message
                .contains("input 0: float_val holds 3 elements, but shape [2, 2] needs 4"),
            "{}",
            err.message
        );
        let strings = request(ArrayProto {
            dtype: ArrayDataType::DtString as i32,
            ..ArrayProto::default()
        });
        let err = decode(Format::Proto, &strings).expect_err("strings");
        assert!(
            err.message.contains("DT_STRING is not supported"),
            "{}",
            err.message
        );
        let bytes = request(ArrayProto {
            dtype: ArrayDataType::DtUint8 as i32,
            array_shape: Some(ArrayShape { dim: vec![1] }),
            int_val: vec![256],
            ..ArrayProto::default()
        });
        let err = decode(Format::Proto, &bytes).expect_err("out of range");
        assert!(err.message.contains("int_val[0] is 256"), "{}", err.message);
    }

    #[test]
    fn answers_should_follow_the_filter_and_the_format() {
        let fetched = crate::torch::feed::Fetched {
            keys: None,
            tensors: vec![
                Tensor::from_slice(&[0.5_f32, f32::NAN]).reshape([1, 2]),
                Tensor::from_slice(&[7_i64]),
            ],
        };
        let fetched = Outputs::read(&fetched).expect("reads");
        let answer = encode(Format::Json, &fetched, &[]).expect("json");
        assert_eq!(
            std::str::from_utf8(&answer.body).expect("utf-8"),
            r#"{"outputs":{"output_0":{"datatype":"FP32","shape":[1,2],"data":[0.5,null]},"output_1":{"datatype":"INT64","shape":[1],"data":[7]}}}"#
        );
        let answer = encode(Format::Proto, &fetched, &[1]).expect("proto");
        let response = PredictResponse::decode(answer.body).expect("decodes");
        assert_eq!(response.outputs.len(), 1);
        assert_eq!(response.outputs[0].int64_val, vec![7]);
        let err = encode(Format::Proto, &fetched, &[2]).expect_err("no output 2");
        assert_eq!(err.status, 400);
        assert!(
            err.message.contains("returned 2 output(s)"),
            "{}",
            err.message
        );
    }
}
