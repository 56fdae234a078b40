//! Support for the `onnx` processor's tests: the skip convention, the generated models and
//! their expected outputs (from onnxruntime in Python), and building and reading bodies.

#![allow(dead_code, clippy::unwrap_used)]

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use bytes::Bytes;
use eas_core::Processor;
use eas_core::processor::{InitContext, Request, Response};
use eas_runtime::onnx::{OnnxProcessor, testing};
use eas_runtime::proto::{DataProto, DataType, Message, TensorProto};
use serde_json::Value;

/// The skip convention (`require.rs` beside this file).
#[path = "require.rs"]
mod require;
pub use require::skip;

/// The generated models and `expected.json`, or `None` after printing why the test skips.
pub fn models(test: &str) -> Option<&'static Models> {
    static MODELS: OnceLock<Result<Models, String>> = OnceLock::new();
    let models = MODELS.get_or_init(|| {
        let python = testing::python_from_env()
            .ok_or("EAS_PYTHON is not set (a Python with onnx, numpy and onnxruntime)")?;
        eas_runtime::onnx::runtime().map_err(|e| e.to_string())?;
        let dir = testing::cached_models(&python, Path::new(env!("CARGO_TARGET_TMPDIR")), false)?;
        let text = std::fs::read_to_string(dir.join("expected.json")).map_err(|e| e.to_string())?;
        let expected = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Ok(Models { dir, expected })
    });
    match models {
        Ok(models) => Some(models),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

/// The SDK's Python (`EAS_SDK_PYTHON`), or `None` after printing why the test skips.
pub fn sdk_python(test: &str) -> Option<OsString> {
    let python = std::env::var_os("EAS_SDK_PYTHON").filter(|p| !p.is_empty());
    if python.is_none() {
        skip(
            test,
            "EAS_SDK_PYTHON is not set (a Python with eas-prediction)",
        );
    }
    python
}

/// Runs Python code with `stdin`; its stdout, or a panic with its stderr.
pub fn run_python(python: &OsString, code: &str, stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(python)
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The models directory and the expected outputs.
pub struct Models {
    /// Where the `.onnx` files are.
    pub dir: PathBuf,
    /// `expected.json`: `{"cases": [{"model", "inputs", "outputs"}]}`.
    pub expected: Value,
}

impl Models {
    /// A processor for `model` (a file name in the directory), with `threads` threads.
    pub fn processor(&self, model: &str, threads: usize) -> OnnxProcessor {
        let mut p = OnnxProcessor::new();
        p.initialize(
            &InitContext::new(model)
                .with_model_entry(self.dir.join(model))
                .with_threads(threads),
        )
        .unwrap();
        p
    }

    /// The expected cases.
    pub fn cases(&self) -> &[Value] {
        self.expected["cases"].as_array().unwrap()
    }

    /// The first case for `model`.
    pub fn case(&self, model: &str) -> &Value {
        self.cases().iter().find(|c| c["model"] == model).unwrap()
    }
}

/// An element value: integers exactly, floats as f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
}

/// A tensor to compare: name, OIP type, shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    pub name: String,
    pub datatype: String,
    pub dims: Vec<i64>,
    pub values: Vec<Num>,
}

const TYPES: [(&str, DataType, usize); 6] = [
    ("FP32", DataType::Float, 4),
    ("FP64", DataType::Double, 8),
    ("INT32", DataType::Int32, 4),
    ("INT64", DataType::Int64, 8),
    ("UINT8", DataType::Uint8, 1),
    ("INT8", DataType::Int8, 1),
];

/// Little-endian bytes of `values` as `datatype`.
pub fn le_bytes(datatype: &str, values: &[Num]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        let (f, i) = match *v {
            Num::Int(i) => (i as f64, i),
            Num::Float(f) => (f, f as i128),
        };
        match datatype {
            "FP32" => out.extend((f as f32).to_le_bytes()),
            "FP64" => out.extend(f.to_le_bytes()),
            "INT32" => out.extend(i32::try_from(i).unwrap().to_le_bytes()),
            "INT64" => out.extend(i64::try_from(i).unwrap().to_le_bytes()),
            "UINT8" => out.extend(u8::try_from(i).unwrap().to_le_bytes()),
            "INT8" => out.extend(i8::try_from(i).unwrap().to_le_bytes()),
            other => panic!("type {other}"),
        }
    }
    out
}

/// The values of little-endian `bytes` of `datatype`.
pub fn from_le_bytes(datatype: &str, bytes: &[u8]) -> Vec<Num> {
    let size = TYPES.iter().find(|t| t.0 == datatype).unwrap().2;
    bytes
        .chunks_exact(size)
        .map(|c| match datatype {
            "FP32" => Num::Float(f32::from_le_bytes(c.try_into().unwrap()).into()),
            "FP64" => Num::Float(f64::from_le_bytes(c.try_into().unwrap())),
            "INT32" => Num::Int(i32::from_le_bytes(c.try_into().unwrap()).into()),
            "INT64" => Num::Int(i64::from_le_bytes(c.try_into().unwrap()).into()),
            "UINT8" => Num::Int(c[0].into()),
            "INT8" => Num::Int(i8::from_le_bytes([c[0]]).into()),
            other => panic!("type {other}"),
        })
        .collect()
}

/// The values of a JSON array of `datatype`.
pub fn json_values(datatype: &str, data: &Value) -> Vec<Num> {
    data.as_array()
        .unwrap()
        .iter()
        .map(|v| {
            if datatype.starts_with("FP") {
                Num::Float(v.as_f64().unwrap_or(f64::NAN))
            } else {
                Num::Int(
                    v.as_i64()
                        .map_or_else(|| v.as_u64().unwrap().into(), i128::from),
                )
            }
        })
        .collect()
}

/// A tensor given as `{"datatype", "shape", "data"}` (expected.json and our JSON answers).
pub fn out_from_json(name: &str, tensor: &Value) -> Out {
    let datatype = tensor["datatype"].as_str().unwrap().to_owned();
    Out {
        name: name.to_owned(),
        dims: tensor["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect(),
        values: json_values(&datatype, &tensor["data"]),
        datatype,
    }
}

/// Every tensor of a `{name: {"datatype", "shape", "data"}}` object, in order.
pub fn outs_from_json(tensors: &Value) -> Vec<Out> {
    tensors
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| out_from_json(name, t))
        .collect()
}

/// A DataProto tensor of `out`.
pub fn tensor_proto(out: &Out) -> TensorProto {
    let code = TYPES.iter().find(|t| t.0 == out.datatype).unwrap().1;
    TensorProto::new(
        &out.name,
        out.dims.clone(),
        code,
        le_bytes(&out.datatype, &out.values),
    )
}

/// A protobuf request with these inputs, as the SDK sends it.
pub fn proto_request(inputs: &[Out]) -> Request {
    let message = DataProto {
        tensors: inputs.iter().map(tensor_proto).collect(),
    };
    Request::new(message.encode_to_vec()).with_content_type("application/octet-stream")
}

/// The tensors of a protobuf answer.
pub fn outs_from_proto(body: &Bytes) -> Vec<Out> {
    DataProto::decode(body.clone())
        .unwrap()
        .tensors
        .into_iter()
        .map(|t| {
            let datatype = TYPES
                .iter()
                .find(|x| x.1 as i32 == t.data_type)
                .unwrap()
                .0
                .to_owned();
            Out {
                name: t.name,
                dims: t.dims,
                values: from_le_bytes(&datatype, &t.raw_data),
                datatype,
            }
        })
        .collect()
}

/// The tensors of a successful answer, protobuf or JSON.
pub fn outs(answer: &Response) -> Vec<Out> {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    if answer.content_type.as_deref() == Some("application/json") {
        let value: Value = serde_json::from_slice(&answer.body).unwrap();
        outs_from_json(&value["outputs"])
    } else {
        outs_from_proto(&answer.body)
    }
}

/// Asserts same names, types, shapes, integers, and floats within a relative 1e-5.
pub fn assert_close(got: &[Out], want: &[Out], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (&g.name, &g.datatype, &g.dims),
            (&w.name, &w.datatype, &w.dims),
            "{what}"
        );
        assert_eq!(g.values.len(), w.values.len(), "{what}: {}", g.name);
        for (i, (a, b)) in g.values.iter().zip(&w.values).enumerate() {
            let ok = match (a, b) {
                (Num::Int(a), Num::Int(b)) => a == b,
                (Num::Float(a), Num::Float(b)) => {
                    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1.0)
                }
                _ => false,
            };
            assert!(
                ok,
                "{what}: output {} element {i}: got {a:?}, want {b:?}",
                g.name
            );
        }
    }
}

/// A float tensor `name` [rows, cols] whose values are `seed + k / 8`, distinct per seed.
pub fn rows(name: &str, rows: usize, cols: usize, seed: f64) -> Out {
    Out {
        name: name.to_owned(),
        datatype: "FP32".to_owned(),
        dims: vec![rows as i64, cols as i64],
        values: (0..rows * cols)
            .map(|k| Num::Float(seed + k as f64 / 8.0))
            .collect(),
    }
}
