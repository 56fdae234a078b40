//! `ModelInferRequest` into the EAS tensor form and the processor's answer into
//! `ModelInferResponse`, through the same checks as the REST form ([`crate::http::oip`]'s
//! `request` and `answer`): only the carriage differs.
//!
//! An input's elements come either all as `raw_input_contents` (one entry per input, in the
//! order of `inputs`, little-endian: what `tritonclient` sends, taken as it came, without a
//! copy) or each as the `InferTensorContents` field of its type:
//!
//! | datatype | field |
//! |---|---|
//! | `FP32`, `FP64` | `fp32_contents`, `fp64_contents` |
//! | `INT8`, `INT16`, `INT32` | `int_contents` (each element within the type's range) |
//! | `INT64` | `int64_contents` |
//! | `UINT8`, `UINT16`, `UINT32` | `uint_contents` (each element within the type's range) |
//! | `UINT64` | `uint64_contents` |
//! | `FP16` | none: raw contents only |
//!
//! The answer's outputs come the way the inputs came: `raw_output_contents` for raw inputs
//! (what Triton always answers and `tritonclient` reads), typed contents otherwise, unless an
//! output is `FP16` (no typed field: every output goes raw, as the two forms do not mix).

use bytes::Bytes;
use eas_core::processor::TensorInfo;

use super::inference::model_infer_request::InferInputTensor;
use super::inference::model_infer_response::InferOutputTensor;
use super::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::http::oip::answer::{self, Chosen};
use crate::http::oip::datatype::{Datatype, Number};
use crate::http::oip::request::{self, Translated};
use crate::proto::TensorProto;

/// Translates a `ModelInferRequest`, given the model's `outputs`.
///
/// # Errors
/// What is wrong with the request, for `INVALID_ARGUMENT`.
pub(super) fn decode(
    message: ModelInferRequest,
    outputs: &[TensorInfo],
) -> Result<Translated, String> {
    let ModelInferRequest {
        id,
        inputs,
        outputs: asked,
        raw_input_contents: raw,
        ..
    } = message;
    if inputs.is_empty() {
        return Err("`inputs` is empty: the request needs one tensor per model input".into());
    }
    let is_raw = !raw.is_empty();
    if is_raw && raw.len() != inputs.len() {
        return Err(format!(
            "raw_input_contents has {} entries, but there are {} inputs: send one entry per \
             input, in the order of `inputs`",
            raw.len(),
            inputs.len()
        ));
    }
    let mut raw = raw.into_iter();
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let InferInputTensor {
            name,
            datatype,
            shape,
            contents,
            ..
        } = input;
        let typed = request::input_type(&name, &datatype, &shape)?;
        let data = match (raw.next(), contents) {
            (Some(_), Some(contents)) if count(&contents).is_some() => {
                return Err(format!(
                    "input `{name}` has contents, but the request has raw_input_contents: send \
                     every input one way"
                ));
            }
            (Some(bytes), _) => {
                let what = "its raw_input_contents entry";
                request::check_bytes(&name, what, bytes.len(), typed, &shape)?;
                bytes
            }
            (None, Some(contents)) => typed_bytes(&name, typed, &shape, &contents)?,
            (None, None) if typed.1 == 0 => Bytes::new(),
            (None, None) => {
                return Err(format!(
                    "input `{name}` has no contents, and the request no raw_input_contents"
                ));
            }
        };
        tensors.push(TensorProto::new(name, shape, typed.0.to_proto(), data));
    }
    let asked = asked.into_iter().map(|o| (o.name, None)).collect();
    let wanted = request::wanted_outputs(asked, outputs)?;
    let id = (!id.is_empty()).then_some(id);
    Ok(Translated::new(id, tensors, wanted, is_raw))
}

/// The elements of `contents` and the name of the one field that has them, or `None` when
/// none has any. Elements in several fields are counted in the first.
fn count(contents: &InferTensorContents) -> Option<(&'static str, usize)> {
    [
        ("bool_contents", contents.bool_contents.len()),
        ("int_contents", contents.int_contents.len()),
        ("int64_contents", contents.int64_contents.len()),
        ("uint_contents", contents.uint_contents.len()),
        ("uint64_contents", contents.uint64_contents.len()),
        ("fp32_contents", contents.fp32_contents.len()),
        ("fp64_contents", contents.fp64_contents.len()),
        ("bytes_contents", contents.bytes_contents.len()),
    ]
    .into_iter()
    .find(|(_, n)| *n > 0)
}

/// The field of `InferTensorContents` that carries `dtype`, if any.
const fn field(dtype: Datatype) -> Option<&'static str> {
    Some(match dtype {
        Datatype::Fp16 => return None,
        Datatype::Fp32 => "fp32_contents",
        Datatype::Fp64 => "fp64_contents",
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => "int_contents",
        Datatype::Int64 => "int64_contents",
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => "uint_contents",
        Datatype::Uint64 => "uint64_contents",
    })
}

/// The little-endian bytes of input `name`'s typed `contents`.
fn typed_bytes(
    name: &str,
    (dtype, elements): (Datatype, usize),
    shape: &[i64],
    contents: &InferTensorContents,
) -> Result<Bytes, String> {
    let Some(want) = field(dtype) else {
        return Err(format!(
            "input `{name}`: {dtype} has no InferTensorContents field; send it in \
             raw_input_contents"
        ));
    };
    let (got, count) = count(contents).unwrap_or((want, 0));
    if got != want {
        return Err(format!(
            "input `{name}`: {dtype} elements go in {want} (or raw_input_contents), but the \
             request has {got}"
        ));
    }
    if count != elements {
        return Err(format!(
            "input `{name}`: {want} has {count} elements, but shape {shape:?} needs {elements}"
        ));
    }
    let mut out = Vec::with_capacity(elements.saturating_mul(dtype.size()));
    // Elements of a narrower type than their field are checked against the type's range.
    let narrow = |out: &mut Vec<u8>, i: usize, number: Number| {
        dtype
            .push(number, out)
            .map_err(|why| format!("input `{name}`: element {i} of {want} is {number}, {why}"))
    };
    match dtype {
        Datatype::Fp32 => extend(&mut out, &contents.fp32_contents, |v| v.to_le_bytes()),
        Datatype::Fp64 => extend(&mut out, &contents.fp64_contents, |v| v.to_le_bytes()),
        Datatype::Int32 => extend(&mut out, &contents.int_contents, |v| v.to_le_bytes()),
        Datatype::Int64 => extend(&mut out, &contents.int64_contents, |v| v.to_le_bytes()),
        Datatype::Uint32 => extend(&mut out, &contents.uint_contents, |v| v.to_le_bytes()),
        Datatype::Uint64 => extend(&mut out, &contents.uint64_contents, |v| v.to_le_bytes()),
        Datatype::Int8 | Datatype::Int16 => {
            for (i, &v) in contents.int_contents.iter().enumerate() {
                let number = match u64::try_from(v) {
                    Ok(u) => Number::Unsigned(u),
                    Err(_) => Number::Signed(i64::from(v)),
                };
                narrow(&mut out, i, number)?;
            }
        }
        Datatype::Uint8 | Datatype::Uint16 => {
            for (i, &v) in contents.uint_contents.iter().enumerate() {
                narrow(&mut out, i, Number::Unsigned(u64::from(v)))?;
            }
        }
        Datatype::Fp16 => {}
    }
    Ok(out.into())
}

fn extend<T: Copy, const N: usize>(out: &mut Vec<u8>, values: &[T], le: fn(T) -> [u8; N]) {
    for &v in values {
        out.extend_from_slice(&le(v));
    }
}

/// The elements of little-endian `bytes` (a whole number of `N`-byte elements), read by `le`.
fn elements<T, const N: usize>(bytes: &[u8], le: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| le(<[u8; N]>::try_from(c).unwrap_or([0; N])))
        .collect()
}

/// The typed contents of one output (not `FP16`, which has no field).
fn contents(dtype: Datatype, bytes: &[u8]) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match dtype {
        Datatype::Fp32 => c.fp32_contents = elements(bytes, f32::from_le_bytes),
        Datatype::Fp64 => c.fp64_contents = elements(bytes, f64::from_le_bytes),
        Datatype::Int8 => c.int_contents = elements(bytes, |b| i32::from(i8::from_le_bytes(b))),
        Datatype::Int16 => c.int_contents = elements(bytes, |b| i32::from(i16::from_le_bytes(b))),
        Datatype::Int32 => c.int_contents = elements(bytes, i32::from_le_bytes),
        Datatype::Int64 => c.int64_contents = elements(bytes, i64::from_le_bytes),
        Datatype::Uint8 => c.uint_contents = elements(bytes, |b| u32::from(u8::from_le_bytes(b))),
        Datatype::Uint16 => {
            c.uint_contents = elements(bytes, |b| u32::from(u16::from_le_bytes(b)));
        }
        Datatype::Uint32 => c.uint_contents = elements(bytes, u32::from_le_bytes),
        Datatype::Uint64 => c.uint64_contents = elements(bytes, u64::from_le_bytes),
        Datatype::Fp16 => {}
    }
    c
}

/// Translates the processor's `DataProto` answer to the request `asked` of `model` at
/// `version`.
///
/// # Errors
/// How the answer breaks the processor's side of the protocol, for `INTERNAL`.
pub(super) fn encode(
    answer: &Bytes,
    asked: &Translated,
    model: &str,
    version: &str,
) -> Result<ModelInferResponse, String> {
    let message = answer::parse(answer)?;
    let chosen = answer::choose(&message, asked)?;
    let raw = asked.binary_output || chosen.iter().any(|c| field(c.dtype).is_none());
    let mut response = ModelInferResponse {
        model_name: model.to_owned(),
        model_version: version.to_owned(),
        id: asked.id.clone().unwrap_or_default(),
        ..ModelInferResponse::default()
    };
    for Chosen { tensor, dtype, .. } in chosen {
        response.outputs.push(InferOutputTensor {
            name: tensor.name.clone(),
            datatype: dtype.name().to_owned(),
            shape: tensor.dims.clone(),
            contents: (!raw).then(|| contents(dtype, &tensor.raw_data)),
            ..InferOutputTensor::default()
        });
        if raw {
            response.raw_output_contents.push(tensor.raw_data.clone());
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto::{DataProto, DataType};

    fn model_outputs() -> Vec<TensorInfo> {
        vec![TensorInfo::new("y", "FP32", vec![-1, 3])]
    }

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            ..InferInputTensor::default()
        }
    }

    fn with_contents(mut input: InferInputTensor, c: InferTensorContents) -> InferInputTensor {
        input.contents = Some(c);
        input
    }

    fn tensors(t: &Translated) -> Vec<TensorProto> {
        DataProto::decode(&t.body[..]).expect("a DataProto").tensors
    }

    #[test]
    fn raw_and_typed_inputs_should_become_the_same_tensors() {
        let raw = ModelInferRequest {
            model_name: "mlp".into(),
            id: "r1".into(),
            inputs: vec![input("x", "FP32", &[1, 2])],
            raw_input_contents: vec![f32s(&[1.0, 2.5]).into()],
            ..ModelInferRequest::default()
        };
        let t = decode(raw, &model_outputs()).expect("decodes");
        assert_eq!(t.id.as_deref(), Some("r1"));
        assert!(t.binary_output, "raw in, raw out");
        let from_raw = tensors(&t);
        let typed = ModelInferRequest {
            inputs: vec![with_contents(
                input("x", "FP32", &[1, 2]),
                InferTensorContents {
                    fp32_contents: vec![1.0, 2.5],
                    ..InferTensorContents::default()
                },
            )],
            ..ModelInferRequest::default()
        };
        let t = decode(typed, &model_outputs()).expect("decodes");
        assert_eq!(t.id, None);
        assert!(!t.binary_output);
        assert_eq!(tensors(&t), from_raw);
        assert_eq!(from_raw[0].data_type, DataType::Float as i32);
        assert_eq!(from_raw[0].raw_data, f32s(&[1.0, 2.5]));

        let narrow = ModelInferRequest {
            inputs: vec![with_contents(
                input("n", "INT8", &[2]),
                InferTensorContents {
                    int_contents: vec![-128, 127],
                    ..InferTensorContents::default()
                },
            )],
            ..ModelInferRequest::default()
        };
        let t = decode(narrow, &model_outputs()).expect("decodes");
        assert_eq!(tensors(&t)[0].raw_data, vec![0x80, 0x7f]);
    }

    #[test]
    fn bad_requests_should_say_what_is_wrong() {
        let fp32 = |values: Vec<f32>| InferTensorContents {
            fp32_contents: values,
            ..InferTensorContents::default()
        };
        let x = || input("x", "FP32", &[1, 2]);
        let request = |inputs, raw: Vec<Vec<u8>>| ModelInferRequest {
            inputs,
            raw_input_contents: raw.into_iter().map(Bytes::from).collect(),
            ..ModelInferRequest::default()
        };
        let mut unknown_output = request(vec![x()], vec![f32s(&[1.0, 2.0])]);
        unknown_output.outputs.push(Default::default());
        unknown_output.outputs[0].name = "z".into();
        let cases = vec![
            (request(vec![], vec![]), "`inputs` is empty"),
            (
                request(vec![x()], vec![f32s(&[1.0])]),
                "input `x`: its raw_input_contents entry is 4 bytes, but shape [1, 2] of FP32 needs 8",
            ),
            (
                request(vec![x(), x()], vec![f32s(&[1.0, 2.0])]),
                "raw_input_contents has 1 entries, but there are 2 inputs",
            ),
            (request(vec![x()], vec![]), "input `x` has no contents"),
            (
                request(
                    vec![with_contents(x(), fp32(vec![1.0, 2.0]))],
                    vec![f32s(&[1.0, 2.0])],
                ),
                "send every input one way",
            ),
            (
                request(vec![with_contents(x(), fp32(vec![1.0]))], vec![]),
                "fp32_contents has 1 elements, but shape [1, 2] needs 2",
            ),
            (
                request(
                    vec![with_contents(
                        x(),
                        InferTensorContents {
                            int_contents: vec![1, 2],
                            ..Default::default()
                        },
                    )],
                    vec![],
                ),
                "FP32 elements go in fp32_contents (or raw_input_contents), but the request has int_contents",
            ),
            (
                request(
                    vec![with_contents(
                        input("n", "UINT8", &[1]),
                        InferTensorContents {
                            uint_contents: vec![256],
                            ..Default::default()
                        },
                    )],
                    vec![],
                ),
                "input `n`: element 0 of uint_contents is 256, out of the range of UINT8",
            ),
            (
                request(
                    vec![with_contents(input("h", "FP16", &[1]), fp32(vec![1.0]))],
                    vec![],
                ),
                "FP16 has no InferTensorContents field",
            ),
            (
                request(vec![input("x", "BYTES", &[1])], vec![b"a".to_vec()]),
                "datatype BYTES is not supported",
            ),
            (
                request(vec![input("x", "FP32", &[-1, 2])], vec![vec![]]),
                "negative dimension -1",
            ),
            (
                unknown_output,
                "unknown output `z`; the model's outputs are `y`",
            ),
        ];
        for (request, want) in cases {
            let err = decode(request, &model_outputs()).expect_err(want);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn answers_should_come_the_way_the_inputs_came() {
        let answer = DataProto {
            tensors: vec![
                TensorProto::new("y", vec![1, 2], DataType::Float, f32s(&[0.5, 0.25])),
                TensorProto::new("z", vec![1], DataType::Int8, vec![0xff]),
            ],
        };
        let answer = Bytes::from(answer.encode_to_vec());
        let mut asked = Translated::new(Some("r1".into()), vec![], vec![], true);
        let raw = encode(&answer, &asked, "mlp", "1").expect("encodes");
        assert_eq!((raw.model_name.as_str(), raw.id.as_str()), ("mlp", "r1"));
        assert_eq!(raw.raw_output_contents[0], f32s(&[0.5, 0.25]));
        assert_eq!(raw.raw_output_contents[1], vec![0xff]);
        assert_eq!(raw.outputs[1].datatype, "INT8");
        assert!(raw.outputs.iter().all(|o| o.contents.is_none()));

        asked.binary_output = false;
        asked.outputs = vec![("z".into(), None), ("y".into(), None)];
        let typed = encode(&answer, &asked, "mlp", "1").expect("encodes");
        assert!(typed.raw_output_contents.is_empty());
        let contents = |i: usize| typed.outputs[i].contents.clone().expect("typed");
        assert_eq!(contents(0).int_contents, vec![-1]);
        assert_eq!(contents(1).fp32_contents, vec![0.5, 0.25]);
        assert_eq!(typed.outputs[1].shape, vec![1, 2]);

        let half = DataProto {
            tensors: vec![TensorProto::new(
                "h",
                vec![1],
                DataType::Float16,
                vec![0, 0x3c],
            )],
        };
        asked.outputs.clear();
        let half = encode(&Bytes::from(half.encode_to_vec()), &asked, "m", "1").expect("encodes");
        assert_eq!(half.raw_output_contents.len(), 1, "FP16 has no typed field");
    }
}
