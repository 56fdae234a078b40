//! The processor's `DataProto` answer translated into OIP's: `model_name`, `model_version`,
//! the request's `id`, and the outputs asked for (all of them, in the processor's order, when
//! none were), each as JSON `data` or, with the binary tensor data extension, as
//! `parameters.binary_data_size` and its bytes after the JSON (whose length goes into
//! `Inference-Header-Content-Length`). An answer that breaks the processor's side of the
//! protocol (not a `DataProto`, an output missing or the wrong size) is the server's fault.
//!
//! Reading and checking the answer ([`parse`], [`choose`]) is shared with the gRPC form of the
//! protocol (`http::grpc`), which writes the outputs chosen as protobuf instead of JSON.

use bytes::Bytes;
use prost::Message as _;
use serde::Serialize;

use super::datatype::{Datatype, Elements};
use super::request::Translated;
use crate::proto::{DataProto, TensorProto};

/// An answer, ready to send.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// The body: the JSON answer, then the binary outputs.
    pub body: Vec<u8>,
    /// The length of the JSON part when binary outputs follow it (the
    /// `Inference-Header-Content-Length` to send), else `None`.
    pub header_length: Option<usize>,
}

#[derive(Serialize)]
struct Answer<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<Output<'a>>,
}

#[derive(Serialize)]
struct Output<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Elements<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// One output of an answer that the request asked for, checked.
#[derive(Debug)]
pub(crate) struct Chosen<'a> {
    /// The tensor, its bytes the number its shape and type need.
    pub tensor: &'a TensorProto,
    /// Its element type.
    pub dtype: Datatype,
    /// Whether it goes as binary data.
    pub binary: bool,
}

/// The processor's answer, a `DataProto`.
///
/// # Errors
/// When it is not one (the processor's fault, for a 500).
pub(crate) fn parse(answer: &Bytes) -> Result<DataProto, String> {
    DataProto::decode(answer.clone())
        .map_err(|e| format!("the processor's answer is not a hie.processor.DataProto: {e}"))
}

/// The outputs of `message` that `asked` wants (all of them, in the processor's order, when
/// it names none), each checked.
///
/// # Errors
/// How the answer breaks the processor's side of the protocol (an output missing, of a type OIP
/// cannot name, or with the wrong number of bytes), for a 500.
pub(crate) fn choose<'a>(
    message: &'a DataProto,
    asked: &Translated,
) -> Result<Vec<Chosen<'a>>, String> {
    let chosen: Vec<(&TensorProto, bool)> = if asked.outputs.is_empty() {
        message
            .tensors
            .iter()
            .map(|t| (t, asked.binary_output))
            .collect()
    } else {
        asked
            .outputs
            .iter()
            .map(|(name, binary)| {
                message
                    .tensors
                    .iter()
                    .find(|t| t.name == *name)
                    .map(|t| (t, binary.unwrap_or(asked.binary_output)))
                    .ok_or_else(|| format!("the processor's answer has no output `{name}`"))
            })
            .collect::<Result<_, _>>()?
    };
    chosen
        .into_iter()
        .map(|(tensor, binary)| {
            let name = &tensor.name;
            let dtype = Datatype::from_proto(tensor.data_type).ok_or_else(|| {
                format!(
                    "output `{name}` has data type code {}, which OIP cannot name",
                    tensor.data_type
                )
            })?;
            let needed = tensor
                .dims
                .iter()
                .try_fold(1_usize, |n, &d| {
                    usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
                })
                .and_then(|n| n.checked_mul(dtype.size()));
            if needed != Some(tensor.raw_data.len()) {
                return Err(format!(
                    "output `{name}` has {} bytes, but shape {:?} of {dtype} needs {needed:?}",
                    tensor.raw_data.len(),
                    tensor.dims
                ));
            }
            Ok(Chosen {
                tensor,
                dtype,
                binary,
            })
        })
        .collect()
}

/// Translates the processor's `DataProto` answer to the request `asked`.
///
/// # Errors
/// How the answer breaks the processor's side of the protocol ([`parse`], [`choose`]), for a
/// 500.
pub(crate) fn encode(
    answer: &Bytes,
    asked: &Translated,
    model: &str,
    version: &str,
) -> Result<Encoded, String> {
    let message = parse(answer)?;
    let chosen = choose(&message, asked)?;
    let mut outputs = Vec::with_capacity(chosen.len());
    let mut binary: Vec<&[u8]> = Vec::new();
    for Chosen {
        tensor,
        dtype,
        binary: as_binary,
    } in chosen
    {
        let bytes = &tensor.raw_data[..];
        outputs.push(Output {
            name: &tensor.name,
            datatype: dtype.name(),
            shape: &tensor.dims,
            parameters: as_binary.then_some(BinarySize {
                binary_data_size: bytes.len(),
            }),
            data: (!as_binary).then_some(Elements { dtype, bytes }),
        });
        if as_binary {
            binary.push(bytes);
        }
    }
    let answer = Answer {
        model_name: model,
        model_version: version,
        id: asked.id.as_deref(),
        outputs,
    };
    let mut body = serde_json::to_vec(&answer).map_err(|e| e.to_string())?;
    let header_length = (!binary.is_empty()).then_some(body.len());
    for bytes in binary {
        body.extend_from_slice(bytes);
    }
    Ok(Encoded {
        body,
        header_length,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::proto::DataType;

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn answers_should_hold_the_outputs_asked_for_as_json_or_binary() {
        let answer = DataProto {
            tensors: vec![
                TensorProto::new("y", vec![1, 2], DataType::Float, f32s(&[0.5, 0.25])),
                TensorProto::new("z", vec![1], DataType::Int64, 9_i64.to_le_bytes().to_vec()),
            ],
        };
        let answer = Bytes::from(answer.encode_to_vec());
        let mut asked = Translated {
            id: Some("r1".into()),
            body: Vec::new(),
            outputs: Vec::new(),
            binary_output: false,
        };
        let json = encode(&answer, &asked, "mlp", "1").expect("encodes");
        assert_eq!(json.header_length, None);
        assert_eq!(
            serde_json::from_slice::<Value>(&json.body).expect("JSON"),
            json!({"model_name": "mlp", "model_version": "1", "id": "r1", "outputs": [
                {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.25]},
                {"name": "z", "datatype": "INT64", "shape": [1], "data": [9]}]})
        );
        asked.outputs = vec![("y".into(), Some(true))];
        let binary = encode(&answer, &asked, "mlp", "1").expect("encodes");
        let n = binary.header_length.expect("binary");
        assert_eq!(
            serde_json::from_slice::<Value>(&binary.body[..n]).expect("JSON")["outputs"],
            json!([{"name": "y", "datatype": "FP32", "shape": [1, 2],
                    "parameters": {"binary_data_size": 8}}])
        );
        assert_eq!(&binary.body[n..], &f32s(&[0.5, 0.25])[..]);
        let short = DataProto {
            tensors: vec![TensorProto::new(
                "y",
                vec![1, 3],
                DataType::Float,
                f32s(&[0.5]),
            )],
        };
        let err =
            encode(&Bytes::from(short.encode_to_vec()), &asked, "mlp", "1").expect_err("short");
        assert!(err.contains("has 4 bytes"), "{err}");
    }
}
