//! An OIP inference request translated into the EAS tensor form (its answer: `answer.rs`).
//!
//! The request: a JSON header, then (binary tensor data extension) the raw bytes of the
//! inputs that say `parameters.binary_data_size`, in the order of the inputs; the header's
//! length is `Inference-Header-Content-Length`, or the whole body without it. It becomes a
//! `hie.processor.DataProto` with one tensor per input (binary data is the `raw_data` as it
//! came, JSON numbers are typed by the input's `datatype`), the body the EAS protocol's
//! `OnnxRequest` sends, so every processor with tensor inputs understands it and an OIP
//! request joins the same batches as EAS ones. The processor checks the tensors against its
//! model (names, types, shapes) and answers a `DataProto` ([`super::answer`]). The outputs
//! asked for are checked here against the model's, before the model runs.
//!
//! The checks of an input's type and shape ([`input_type`], [`check_bytes`]), of the outputs
//! asked for ([`wanted_outputs`]) and the result ([`Translated`]) are shared with the gRPC
//! form of the protocol (`http::grpc`), whose inputs come as protobuf instead of JSON.
//!
//! Nothing the client says about sizes is trusted: the header length and every
//! `binary_data_size` are checked against the body (which the body limit bounds), element
//! counts against the data, with overflow-checked arithmetic; JSON `data` is read in a second
//! pass straight into typed bytes, never into a tree of JSON values.

use std::fmt;

use bytes::Bytes;
use eas_core::processor::TensorInfo;
use prost::Message as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::datatype::{Datatype, Number};
use crate::proto::{DataProto, TensorProto};

/// The header that gives the length of the JSON part of a body with binary tensor data.
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

/// An inference request in the EAS tensor form, and what its answer should hold.
#[derive(Debug)]
pub(crate) struct Translated {
    /// The request's `id`, echoed in the answer.
    pub id: Option<String>,
    /// The `DataProto` body for the processor.
    pub body: Vec<u8>,
    /// The outputs asked for, in order, with whether each goes as binary data; empty: all.
    pub outputs: Vec<(String, Option<bool>)>,
    /// Whether outputs go as binary data unless they say otherwise (`binary_data_output`).
    pub binary_output: bool,
}

/// The JSON header of a request, without the elements of its `data` (read in a second pass).
#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<InputHeader>,
    #[serde(default)]
    outputs: Option<Vec<OutputHeader>>,
}

#[derive(Deserialize)]
struct InputHeader {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct OutputHeader {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// One input as it is being read.
struct Slot {
    name: String,
    dtype: Datatype,
    /// Whether its elements come as JSON `data` (else as binary data).
    json: bool,
    /// The element count its shape gives.
    expected: usize,
    /// The elements read so far.
    count: usize,
    bytes: Vec<u8>,
}

impl Translated {
    /// An inference of `tensors` (the inputs, in the request's order) that wants `outputs` (all
    /// of them when empty; each with whether it goes as binary data, if it says), binary
    /// unless they say otherwise when `binary_output`.
    pub(crate) fn new(
        id: Option<String>,
        tensors: Vec<TensorProto>,
        outputs: Vec<(String, Option<bool>)>,
        binary_output: bool,
    ) -> Self {
        Self {
            id,
            body: DataProto { tensors }.encode_to_vec(),
            outputs,
            binary_output,
        }
    }
}

/// The element type of input `name` and the number of elements its `shape` holds, or what is
/// wrong with them (an unknown or unsupported `datatype`, a negative dimension, a count past
/// `usize`), starting with the input's name.
pub(crate) fn input_type(
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<(Datatype, usize), String> {
    let bad = |why: String| format!("input `{name}`: {why}");
    let dtype = Datatype::parse(datatype).map_err(bad)?;
    if let Some(d) = shape.iter().find(|&&d| d < 0) {
        return Err(bad(format!("shape {shape:?} has a negative dimension {d}")));
    }
    let elements = shape
        .iter()
        .try_fold(1_usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })
        .ok_or_else(|| bad(format!("shape {shape:?} has too many elements")))?;
    Ok((dtype, elements))
}

/// Checks that the `size` bytes of input `name` (`what` says where the client gave them) are
/// what `elements` elements of `shape` and `dtype` need.
pub(crate) fn check_bytes(
    name: &str,
    what: &str,
    size: usize,
    (dtype, elements): (Datatype, usize),
    shape: &[i64],
) -> Result<(), String> {
    let needed = elements.checked_mul(dtype.size());
    if needed == Some(size) {
        return Ok(());
    }
    Err(format!(
        "input `{name}`: {what} is {size} bytes, but shape {shape:?} of {dtype} needs {}",
        needed.map_or_else(|| "more".to_owned(), |n| n.to_string())
    ))
}

/// A boolean parameter, if given.
fn flag(
    parameters: Option<&Map<String, Value>>,
    key: &str,
    whose: &str,
) -> Result<Option<bool>, String> {
    match parameters.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(format!(
            "{whose}: parameter {key} is {other}, not true or false"
        )),
    }
}

/// Splits `body` into its JSON header and binary part, as `header_length` (the value of
/// [`HEADER_LENGTH`], if sent) says.
fn split<'a>(header_length: Option<&[u8]>, body: &'a Bytes) -> Result<(&'a [u8], Bytes), String> {
    let Some(value) = header_length else {
        return Ok((body, Bytes::new()));
    };
    let text = String::from_utf8_lossy(value);
    let length = text
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("Inference-Header-Content-Length {text:?} is not a byte count"))?;
    match usize::try_from(length) {
        Ok(n) if n <= body.len() => Ok((&body[..n], body.slice(n..))),
        _ => Err(format!(
            "Inference-Header-Content-Length says the JSON header is {length} bytes, but the \
             body has only {} bytes",
            body.len()
        )),
    }
}

/// Translates an OIP inference request, given the model's `outputs`.
///
/// # Errors
/// What is wrong with the request, for a 400.
pub(crate) fn decode(
    header_length: Option<&[u8]>,
    body: &Bytes,
    outputs: &[TensorInfo],
) -> Result<Translated, String> {
    let (json, binary) = split(header_length, body)?;
    let header: Header = serde_json::from_slice(json)
        .map_err(|e| format!("the JSON is not an inference request: {e}"))?;
    if header.inputs.is_empty() {
        return Err("\"inputs\" is empty: the request needs one tensor per model input".into());
    }
    let binary_output = flag(
        header.parameters.as_ref(),
        "binary_data_output",
        "the request",
    )?
    .unwrap_or(false);
    let mut asked = Vec::new();
    for output in header.outputs.unwrap_or_default() {
        let whose = format!("output `{}`", output.name);
        let binary = flag(output.parameters.as_ref(), "binary_data", &whose)?;
        asked.push((output.name, binary));
    }
    let wanted = wanted_outputs(asked, outputs)?;

    let mut slots = Vec::with_capacity(header.inputs.len());
    let mut raw = Vec::with_capacity(header.inputs.len());
    let mut offset = 0_usize;
    let mut any_json = false;
    for input in &header.inputs {
        let name = &input.name;
        let bad = |why: String| format!("input `{name}`: {why}");
        let (dtype, expected) = input_type(name, &input.datatype, &input.shape)?;
        let size = binary_size(input.parameters.as_ref()).map_err(bad)?;
        match (size, &input.data) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "has both \"data\" and parameters.binary_data_size".into()
                ));
            }
            (None, None) => {
                return Err(bad(
                    "has no \"data\" and no parameters.binary_data_size".into()
                ));
            }
            (Some(size), None) => {
                let typed = (dtype, expected);
                check_bytes(name, "binary_data_size", size, typed, &input.shape)?;
                let left = binary.len() - offset;
                if size > left {
                    return Err(bad(format!(
                        "truncated binary data: it needs {size} bytes, but only {left} of the \
                         {} bytes after the JSON header are left",
                        binary.len()
                    )));
                }
                raw.push(binary.slice(offset..offset + size));
                offset += size;
                slots.push(Slot::new(name, dtype, false, expected));
            }
            (None, Some(_)) => {
                if !dtype.takes_json() {
                    return Err(bad(format!(
                        "{dtype} data must be sent as binary data (parameters.binary_data_size)"
                    )));
                }
                any_json = true;
                raw.push(Bytes::new());
                slots.push(Slot::new(name, dtype, true, expected));
            }
        }
    }
    if offset != binary.len() {
        return Err(format!(
            "{} of the {} bytes after the JSON header belong to no input (the inputs' \
             binary_data_size add up to {offset})",
            binary.len() - offset,
            binary.len()
        ));
    }
    if any_json {
        let mut reader = serde_json::Deserializer::from_slice(json);
        Root(&mut slots)
            .deserialize(&mut reader)
            .map_err(|e| e.to_string())?;
        for slot in &slots {
            if slot.json && slot.count != slot.expected {
                return Err(format!(
                    "input `{}`: \"data\" has {} elements, but its shape needs {}",
                    slot.name, slot.count, slot.expected
                ));
            }
        }
    }
    let tensors = header
        .inputs
        .into_iter()
        .zip(slots)
        .zip(raw)
        .map(|((input, slot), raw)| {
            let data = if slot.json {
                Bytes::from(slot.bytes)
            } else {
                raw
            };
            TensorProto::new(input.name, input.shape, slot.dtype.to_proto(), data)
        })
        .collect();
    Ok(Translated::new(header.id, tensors, wanted, binary_output))
}

/// `parameters.binary_data_size`, if given.
fn binary_size(parameters: Option<&Map<String, Value>>) -> Result<Option<usize>, String> {
    match parameters.and_then(|p| p.get("binary_data_size")) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("binary_data_size {value} is not a byte count")),
    }
}

/// The outputs asked for (each with whether it goes as binary data, if it says), checked
/// against the model's: known, each once.
pub(crate) fn wanted_outputs(
    asked: Vec<(String, Option<bool>)>,
    model: &[TensorInfo],
) -> Result<Vec<(String, Option<bool>)>, String> {
    let mut wanted: Vec<(String, Option<bool>)> = Vec::with_capacity(asked.len());
    for (name, binary) in asked {
        if !model.iter().any(|o| o.name == name) {
            let names: Vec<String> = model.iter().map(|o| format!("`{}`", o.name)).collect();
            return Err(format!(
                "unknown output `{name}`; the model's outputs are {}",
                names.join(", ")
            ));
        }
        if wanted.iter().any(|(n, _)| *n == name) {
            return Err(format!("output `{name}` is asked for twice"));
        }
        wanted.push((name, binary));
    }
    Ok(wanted)
}

impl Slot {
    fn new(name: &str, dtype: Datatype, json: bool, expected: usize) -> Self {
        Self {
            name: name.to_owned(),
            dtype,
            json,
            expected,
            count: 0,
            bytes: Vec::new(),
        }
    }
}

/// The second pass over the header: the `data` of each JSON input, into its slot.
struct Root<'a>(&'a mut [Slot]);

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an inference request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "inputs" {
                map.next_value_seed(Inputs(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Inputs<'a>(&'a mut [Slot]);

impl<'de> DeserializeSeed<'de> for Inputs<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Inputs<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of inputs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut slots = self.0.iter_mut();
        loop {
            let Some(slot) = slots.next() else {
                // The first pass read as many; anything more is not a valid request.
                return match seq.next_element::<IgnoredAny>()? {
                    None => Ok(()),
                    Some(_) => Err(de::Error::custom("more inputs than on the first reading")),
                };
            };
            if seq.next_element_seed(Input(slot))?.is_none() {
                return Ok(());
            }
        }
    }
}

struct Input<'a>(&'a mut Slot);

impl<'de> DeserializeSeed<'de> for Input<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Input<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an input tensor")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "data" && self.0.json {
                map.next_value_seed(Data(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// The elements of one input's `data`: a flat or nested array of numbers, or one number.
struct Data<'a>(&'a mut Slot);

impl Data<'_> {
    fn push<E: de::Error>(self, number: Number) -> Result<(), E> {
        let slot = self.0;
        if slot.count >= slot.expected {
            // Stop reading: the data is longer than the shape says (counted exactly once
            // everything is read would mean holding all of it).
            return Err(E::custom(format!(
                "input `{}`: \"data\" has more than the {} elements its shape needs",
                slot.name, slot.expected
            )));
        }
        slot.dtype.push(number, &mut slot.bytes).map_err(|why| {
            E::custom(format!(
                "input `{}`: element {} is {number}, {why}",
                slot.name, slot.count
            ))
        })?;
        slot.count += 1;
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Data<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Data<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} numbers for input `{}` (an array, flat or nested)",
            self.0.dtype, self.0.name
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(match u64::try_from(v) {
            Ok(u) => Number::Unsigned(u),
            Err(_) => Number::Signed(v),
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(Number::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(Number::Float(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let slot = self.0;
        while seq.next_element_seed(Data(&mut *slot))?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::proto::DataType;

    fn model_outputs() -> Vec<TensorInfo> {
        vec![TensorInfo::new("y", "FP32", vec![-1, 3])]
    }

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn decoded(header_length: Option<&str>, body: impl Into<Bytes>) -> Result<Translated, String> {
        decode(
            header_length.map(str::as_bytes),
            &body.into(),
            &model_outputs(),
        )
    }

    fn tensors(t: &Translated) -> Vec<TensorProto> {
        DataProto::decode(&t.body[..]).expect("a DataProto").tensors
    }

    fn with_binary(header: &Value, binary: &[u8]) -> (String, Vec<u8>) {
        let mut body = header.to_string().into_bytes();
        let length = body.len().to_string();
        body.extend_from_slice(binary);
        (length, body)
    }

    #[test]
    fn json_inputs_should_become_typed_tensors() {
        let body = json!({"id": "r1", "inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [[1, 2.5]]},
            {"data": [7], "datatype": "INT64", "shape": [1], "name": "n"}]});
        let t = decoded(None, body.to_string()).expect("decodes");
        assert_eq!(t.id.as_deref(), Some("r1"));
        let got = tensors(&t);
        assert_eq!(got[0].name, "x");
        assert_eq!(got[0].dims, vec![1, 2]);
        assert_eq!(got[0].data_type, DataType::Float as i32);
        assert_eq!(got[0].raw_data, f32s(&[1.0, 2.5]));
        assert_eq!(got[1].raw_data, 7_i64.to_le_bytes().to_vec());
    }

    #[test]
    fn binary_inputs_should_be_taken_as_they_came() {
        let header = json!({"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP32",
             "parameters": {"binary_data_size": 8}},
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [3]}],
            "parameters": {"binary_data_output": true},
            "outputs": [{"name": "y", "parameters": {"binary_data": false}}]});
        let (length, body) = with_binary(&header, &f32s(&[1.0, 2.0]));
        let t = decoded(Some(&length), body).expect("decodes");
        assert_eq!(tensors(&t)[0].raw_data, f32s(&[1.0, 2.0]));
        assert!(t.binary_output);
        assert_eq!(t.outputs, vec![("y".to_owned(), Some(false))]);
    }

    #[test]
    fn bad_requests_should_say_what_is_wrong() {
        let x = |extra: Value| {
            let mut input = json!({"name": "x", "shape": [1, 2], "datatype": "FP32"});
            if let (Value::Object(input), Value::Object(extra)) = (&mut input, extra) {
                input.extend(extra);
            }
            json!({"inputs": [input]})
        };
        let binary = x(json!({"parameters": {"binary_data_size": 8}}));
        let (length, full) = with_binary(&binary, &f32s(&[1.0, 2.0]));
        let huge = with_binary(
            &x(json!({"parameters": {"binary_data_size": u64::MAX}})),
            &[],
        );
        let huge = (Some(huge.0), huge.1);
        let cases: Vec<(Option<String>, Vec<u8>, &str)> = vec![
            (None, b"{nope".to_vec(), "not an inference request"),
            (None, json!({"inputs": []}).to_string().into(), "\"inputs\" is empty"),
            (None, x(json!({"data": [1, 2, 3]})).to_string().into(), "more than the 2 elements"),
            (None, x(json!({"data": [1]})).to_string().into(), "\"data\" has 1 elements, but its shape needs 2"),
            (None, x(json!({"data": [1, "a"]})).to_string().into(), "expected FP32 numbers for input `x`"),
            (None, x(json!({"data": [1, 3.5e38]})).to_string().into(), "input `x`: element 1 is 3.5e38, out of the range of FP32"),
            (None, x(json!({"datatype": "BYTES", "data": ["a", "b"]})).to_string().into(), "datatype BYTES is not supported"),
            (None, x(json!({"shape": [1, -2], "data": []})).to_string().into(), "negative dimension -2"),
            (None, x(json!({"shape": [i64::MAX, i64::MAX], "data": []})).to_string().into(), "too many elements"),
            (None, x(json!({})).to_string().into(), "no \"data\""),
            (None, x(json!({"data": [1, 2], "parameters": {"binary_data_size": 8}})).to_string().into(), "both"),
            (Some(length.clone()), full[..full.len() - 1].to_vec(), "truncated binary data: it needs 8 bytes, but only 7"),
            (Some(length.clone()), [&full[..], b"!"].concat(), "1 of the 9 bytes after the JSON header belong to no input"),
            (None, binary.to_string().into(), "truncated binary data"),
            (Some("99999999999999999999999".into()), full.clone(), "is not a byte count"),
            (Some("18446744073709551615".into()), full.clone(), "says the JSON header is 18446744073709551615 bytes, but the body has only"),
            (huge.0, huge.1, "binary_data_size is 18446744073709551615 bytes, but shape [1, 2] of FP32 needs 8"),
            (None, json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "outputs": [{"name": "z"}]}).to_string().into(), "unknown output `z`; the model's outputs are `y`"),
            (None, json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP16", "data": [1]}]}).to_string().into(), "FP16 data must be sent as binary data"),
        ];
        for (length, body, want) in cases {
            let err = decoded(length.as_deref(), body).expect_err(want);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }
}
