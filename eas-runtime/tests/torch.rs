//! The `torch` processor against real libtorch: TorchScript models traced in the test setup
//! (tests/support/torch_models.rs) with outputs compared to an independent reference, the
//! real `eas-prediction` SDK's `TorchRequest` against a served model, batching, bad input,
//! and a CUDA device on a machine whose libtorch has none.
//!
//! Built only with the `torch` feature, which needs libtorch (`source scripts/libtorch.sh`);
//! so it never skips for want of libtorch. The SDK test needs EAS_SDK_PYTHON (skipped without
//! it, failing instead with `EAS_REQUIRE_ALL=1`).

#![allow(clippy::unwrap_used)]
#![cfg(feature = "torch")]

#[path = "support/python_client.rs"]
mod python_client;
#[path = "support/require.rs"]
mod require;
#[path = "support/torch_models.rs"]
mod torch_models;

use std::time::Duration;

use eas_core::Processor;
use eas_core::processor::{Device, InitContext, Request};
use eas_core::spec::ServiceSpec;
use eas_runtime::platform::Platform;
use eas_runtime::proto::Message;
use eas_runtime::proto::pytorch::{
    ArrayDataType, ArrayProto, ArrayShape, PredictRequest, PredictResponse,
};
use eas_runtime::torch::TorchProcessor;
use serde_json::{Value, json};
use torch_models::{Models, assert_close, mlp_reference};

const TOKEN: &str = "dG9yY2gtdGVzdC10b2tlbi1mb3ItZWFzLXByZWRpY3Q=";

/// Rows of MLP input, distinct per `seed`.
fn rows(seed: usize, n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|r| {
            (0..4)
                .map(|c| ((seed * 31 + r * 7 + c) as f32 * 0.29).sin() * 3.0)
                .collect()
        })
        .collect()
}

fn processor(models: &Models, name: &str) -> TorchProcessor {
    let mut torch = TorchProcessor::new();
    torch
        .initialize(
            &InitContext::new(name)
                .with_model_entry(models.path(name))
                .with_threads(2),
        )
        .expect("initializes");
    torch
}

fn json_request(x: &[Vec<f32>]) -> Request {
    Request::new(json!({"inputs": {"x": x}}).to_string())
}

fn proto_request(x: &[Vec<f32>]) -> Request {
    let flat: Vec<f32> = x.iter().flatten().copied().collect();
    let request = PredictRequest {
        inputs: vec![ArrayProto::floats(vec![x.len() as i64, 4], flat)],
        ..PredictRequest::default()
    };
    Request::new(request.encode_to_vec())
}

/// The flat FP32 data of the first output of a JSON answer.
fn json_output(body: &[u8]) -> (Vec<i64>, Vec<f64>) {
    let value: Value = serde_json::from_slice(body).unwrap();
    let out = &value["outputs"]["output_0"];
    assert_eq!(out["datatype"], "FP32", "{value}");
    let shape = out["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap());
    let data = out["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap());
    (shape.collect(), data.collect())
}

/// The flat FP32 data of the first output of an answer, JSON or protobuf.
fn answer_values(answer: &eas_core::processor::Response) -> Vec<f64> {
    if answer.content_type.as_deref() == Some("application/json") {
        return json_output(&answer.body).1;
    }
    let response = PredictResponse::decode(answer.body.clone()).unwrap();
    response.outputs[0]
        .float_val
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

fn reference(x: &[Vec<f32>]) -> Vec<f64> {
    x.iter().flat_map(|row| mlp_reference(row)).collect()
}

#[test]
fn torchscript_outputs_should_match_an_independent_reference() {
    let models = torch_models::make();
    let mlp = processor(&models, "mlp.pt");
    for n in [1, 3] {
        let x = rows(n, n);
        let answers = mlp.process(&[json_request(&x), proto_request(&x)]);
        let json = answers[0].as_ref().expect("json answer");
        assert_eq!(json.content_type.as_deref(), Some("application/json"));
        let (shape, data) = json_output(&json.body);
        assert_eq!(shape, vec![n as i64, 3]);
        assert_close(&data, &reference(&x), 1e-5, "json");

        let proto = answers[1].as_ref().expect("proto answer");
        let response = PredictResponse::decode(proto.body.clone()).unwrap();
        let y = &response.outputs[0];
        assert_eq!(y.dtype(), ArrayDataType::DtFloat);
        assert_eq!(y.dims(), [n as i64, 3]);
        let data: Vec<f64> = y.float_val.iter().map(|&v| f64::from(v)).collect();
        assert_close(&data, &reference(&x), 1e-5, "proto");
    }

    // Two inputs, and the output filter.
    let pair = processor(&models, "pair.pt");
    let a = ArrayProto::floats(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = ArrayProto::floats(vec![2, 3], vec![0.5, 0.5, 0.5, 2.0, 2.0, 2.0]);
    let both = PredictRequest {
        inputs: vec![a, b],
        ..PredictRequest::default()
    };
    let first = PredictRequest {
        output_filter: vec![0],
        ..both.clone()
    };
    let second = PredictRequest {
        output_filter: vec![1],
        ..both.clone()
    };
    let answers = pair.process(&[
        Request::new(both.encode_to_vec()),
        Request::new(first.encode_to_vec()),
        Request::new(second.encode_to_vec()),
    ]);
    for answer in &answers[..2] {
        let response = PredictResponse::decode(answer.as_ref().unwrap().body.clone()).unwrap();
        assert_eq!(response.outputs.len(), 1);
        assert_eq!(response.outputs[0].dims(), [2, 3]);
        assert_eq!(
            response.outputs[0].float_val,
            vec![2.5, 4.5, 6.5, 10.0, 12.0, 14.0]
        );
    }
    let err = answers[2].as_ref().expect_err("no output 1");
    assert_eq!(err.status, 400, "{err}");
    assert!(
        err.message.contains("output_filter asks for output 1"),
        "{err}"
    );

    // INT64 in and out, by protobuf and by JSON.
    let ints = processor(&models, "ints.pt");
    let request = PredictRequest {
        inputs: vec![ArrayProto {
            dtype: ArrayDataType::DtInt64 as i32,
            array_shape: Some(ArrayShape { dim: vec![1, 3] }),
            int64_val: vec![1, -2, 1 << 40],
            ..ArrayProto::default()
        }],
        ..PredictRequest::default()
    };
    let json = json!({"inputs": {"x": {"shape": [1, 2], "data": [5, 6], "datatype": "INT64"}}});
    let answers = ints.process(&[
        Request::new(request.encode_to_vec()),
        Request::new(json.to_string()),
    ]);
    let response = PredictResponse::decode(answers[0].as_ref().unwrap().body.clone()).unwrap();
    assert_eq!(response.outputs[0].dtype(), ArrayDataType::DtInt64);
    assert_eq!(
        response.outputs[0].int64_val,
        vec![4, -5, 3 * (1 << 40) + 1]
    );
    let value: Value = serde_json::from_slice(&answers[1].as_ref().unwrap().body).unwrap();
    assert_eq!(
        value,
        json!({"outputs": {"output_0": {"datatype": "INT64", "shape": [1, 2], "data": [16, 19]}}})
    );
}

#[test]
fn a_batch_should_give_each_request_the_answer_it_gets_alone() {
    let models = torch_models::make();
    let mlp = processor(&models, "mlp.pt");
    // Rows of 1, 2 and 3, JSON and protobuf mixed: one stacked forward of 6 rows.
    let inputs: Vec<Vec<Vec<f32>>> = (1..=3).map(|n| rows(10 + n, n)).collect();
    let batch: Vec<Request> = inputs
        .iter()
        .enumerate()
        .map(|(k, x)| {
            if k % 2 == 0 {
                json_request(x)
            } else {
                proto_request(x)
            }
        })
        .collect();
    let together = mlp.process(&batch);
    for (k, x) in inputs.iter().enumerate() {
        let alone = mlp.process(&[batch[k].clone()]);
        let together = answer_values(together[k].as_ref().unwrap());
        // Not bit for bit: the matrix kernels block a 6-row product differently.
        assert_close(
            &together,
            &answer_values(alone[0].as_ref().unwrap()),
            1e-6,
            "alone",
        );
        assert_close(&together, &reference(x), 1e-5, "batched");
    }

    // They did run as one forward: `probe` answers every row with the sum of all rows.
    let probe = processor(&models, "probe.pt");
    let answers = probe.process(&[
        json_request(&[vec![1.0]]),
        json_request(&[vec![2.0], vec![3.0]]),
    ]);
    assert_eq!(answer_values(answers[0].as_ref().unwrap()), vec![6.0]);
    assert_eq!(answer_values(answers[1].as_ref().unwrap()), vec![6.0, 6.0]);

    // A model that does not keep rows apart (it sums everything): each request alone.
    let total = processor(&models, "total.pt");
    let answers = total.process(&[
        json_request(&[vec![1.0; 4]]),
        json_request(&[vec![2.0; 4], vec![2.0; 4]]),
    ]);
    let sums: Vec<f64> = answers
        .iter()
        .map(|a| json_output(&a.as_ref().unwrap().body).1[0])
        .collect();
    assert_eq!(sums, vec![4.0, 16.0]);

    // A bad request in a batch fails alone.
    let answers = mlp.process(&[
        json_request(&rows(1, 1)),
        Request::new(json!({"inputs": {"x": [[1.0, 2.0, 3.0]]}}).to_string()),
        json_request(&rows(2, 2)),
    ]);
    assert!(answers[0].is_ok() && answers[2].is_ok());
    let err = answers[1].as_ref().expect_err("3 columns");
    assert_eq!(err.status, 400, "{err}");
    assert!(
        err.message.contains("the model refused the inputs"),
        "{err}"
    );
    assert!(
        err.message
            .contains("mat1 and mat2 shapes cannot be multiplied"),
        "{err}"
    );
}

#[test]
fn a_cuda_device_should_fail_at_start_naming_what_is_missing() {
    let models = torch_models::make();
    let mut torch = TorchProcessor::new();
    let ctx = InitContext::new("mlp")
        .with_model_entry(models.path("mlp.pt"))
        .with_device(Device::Cuda { ordinal: 0 });
    if tch::Cuda::is_available() {
        // A CUDA libtorch on a GPU machine: it runs there instead (checked by the GPU script).
        torch.initialize(&ctx).expect("runs on the GPU");
        assert_eq!(torch.device(), Some(tch::Device::Cuda(0)));
        return;
    }
    let err = torch
        .initialize(&ctx)
        .expect_err("no CUDA here")
        .to_string();
    assert!(err.contains("CUDA device 0"), "{err}");
    assert!(err.contains("libtorch finds no CUDA"), "{err}");
    assert!(err.contains("CPU-only"), "{err}");
    assert!(
        torch.model_path().is_none(),
        "not loaded on the CPU instead"
    );
}

#[test]
fn a_file_that_is_not_torchscript_should_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pt");
    std::fs::write(&path, b"not a zip").unwrap();
    let err = TorchProcessor::new()
        .initialize(&InitContext::new("bad").with_model_entry(&path))
        .expect_err("garbage")
        .to_string();
    assert!(err.contains("bad.pt"), "{err}");
}

fn spec(doc: &Value) -> ServiceSpec {
    ServiceSpec::from_json_value(doc.clone()).expect("valid spec")
}

/// A server with `mlp` (as `pytorch_cpu_1.10`, batching), `pair` (as `torch`) and `ints`.
async fn serve(models: &Models) -> eas_runtime::platform::RunningPlatform {
    let dir = models.dir.path().to_string_lossy().into_owned();
    let server = Platform::builder()
        .service(spec(&json!({
            "metadata": {"name": "mlp", "instance": 1, "cpu": 2,
                         "rpc": {"batching": true, "max_batch_size": 16, "max_batch_timeout": 20}},
            "processor": "pytorch_cpu_1.10", "model_path": dir, "model_entry": "mlp.pt",
            "token": TOKEN,
        })))
        .service(spec(&json!({
            "metadata": {"name": "pair", "instance": 1, "cpu": 1},
            "processor": "torch", "model_path": dir, "model_entry": "pair.pt", "token": TOKEN,
        })))
        .service(spec(&json!({
            "metadata": {"name": "ints", "instance": 1, "cpu": 1},
            "processor": "pytorch", "model_path": dir, "model_entry": "ints.pt", "token": TOKEN,
        })))
        .bind("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(60)).await, "ready");
    server
}

async fn post(
    server: &eas_runtime::platform::RunningPlatform,
    service: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/api/predict/{service}",
            server.local_addr()
        ))
        .header("Authorization", TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_requests_should_batch_and_bad_ones_should_get_a_clear_4xx() {
    let models = torch_models::make();
    let server = serve(&models).await;

    // Concurrent requests of different sizes, batched by the instance: each its own answer.
    let calls = (1..=8).map(|k| {
        let x = rows(100 + k, 1 + k % 3);
        let body = proto_request(&x).body.to_vec();
        let server = &server;
        async move { (x, post(server, "mlp", body).await) }
    });
    for (x, (status, body)) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let response = PredictResponse::decode(body.as_slice()).unwrap();
        let data: Vec<f64> = response.outputs[0]
            .float_val
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_close(&data, &reference(&x), 1e-5, "served");
    }

    let int64 = PredictRequest {
        inputs: vec![ArrayProto {
            dtype: ArrayDataType::DtInt64 as i32,
            array_shape: Some(ArrayShape { dim: vec![1, 4] }),
            int64_val: vec![1, 2, 3, 4],
            ..ArrayProto::default()
        }],
        ..PredictRequest::default()
    };
    let short = PredictRequest {
        inputs: vec![ArrayProto::floats(vec![1, 4], vec![1.0, 2.0])],
        ..PredictRequest::default()
    };
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "mlp",
            vec![0x0a, 0x05, 0x01, 0xff],
            "not a pytorch.eas.PredictRequest protobuf",
        ),
        ("mlp", int64.encode_to_vec(), "the model refused the inputs"),
        (
            "mlp",
            short.encode_to_vec(),
            "float_val holds 2 elements, but shape [1, 4] needs 4",
        ),
        (
            "mlp",
            proto_request(&[vec![1.0; 4]; 1]).body.to_vec()[..5].to_vec(),
            "not a pytorch.eas.PredictRequest protobuf",
        ),
        (
            "mlp",
            b"{\"inputs\": {\"x\": [[1, 2], [3]]}}".to_vec(),
            "not a rectangular array",
        ),
        ("pair", short.encode_to_vec(), "float_val holds 2 elements"),
    ];
    for (service, body, want) in cases {
        let (status, answer) = post(&server, service, body).await;
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "{service}: {answer}");
        assert!(
            answer.contains(want),
            "{service}: {answer:?} should contain {want:?}"
        );
    }
    server.shutdown().await;
}

/// The SDK's `TorchRequest` against the served models; one `name<TAB>result` line per check.
const CLIENT: &str = r#"
import sys
from eas_prediction import PredictClient, TorchRequest
from eas_prediction.exception import PredictException

endpoint, token = sys.argv[1], sys.argv[2]
x = [float(v) for v in sys.argv[3].split(',')]

def client(name):
    c = PredictClient(endpoint, name)
    c.set_token(token)
    c.init()
    return c

def values(resp, i):
    return ' '.join('%.6f' % v for v in resp.get_values(i))

req = TorchRequest()
req.add_feed(0, [len(x) // 4, 4], TorchRequest.DT_FLOAT, x)
resp = client('mlp').predict(req)
print('mlp\t%s %s' % (resp.get_tensor_shape(0), values(resp, 0)))

req = TorchRequest()
req.add_feed(0, [1, 3], TorchRequest.DT_FLOAT, [1, 2, 3])
req.add_feed(1, [1, 3], TorchRequest.DT_FLOAT, [4, 5, 6])
req.add_fetch(0)
resp = client('pair').predict(req)
print('pair\t%s %s' % (resp.get_tensor_shape(0), values(resp, 0)))

req = TorchRequest()
req.add_feed(0, [2], TorchRequest.DT_INT64, [7, -8])
resp = client('ints').predict(req)
print('ints\t%s %s' % (resp.get_tensor_shape(0), list(resp.get_values(0))))

req = TorchRequest()
req.add_feed(0, [1, 2], TorchRequest.DT_FLOAT, [1, 2])
try:
    client('mlp').predict(req)
    print('bad\tno error')
except PredictException as e:
    print('bad\t%d %s' % (e.code, e.message))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_sdk_torch_request_should_get_the_model_answers() {
    let test = "the_real_sdk_torch_request_should_get_the_model_answers";
    let Ok(python) = std::env::var("EAS_SDK_PYTHON") else {
        return require::skip(
            test,
            "EAS_SDK_PYTHON is not set (a Python with eas-prediction)",
        );
    };
    let models = torch_models::make();
    let server = serve(&models).await;
    let x = rows(7, 2);
    let flat: Vec<String> = x.iter().flatten().map(|v| format!("{v:.9}")).collect();
    let printed = python_client::run(
        python.into(),
        CLIENT,
        vec![
            format!("http://{}", server.local_addr()).into(),
            TOKEN.into(),
            flat.join(",").into(),
        ],
        "the SDK client",
    )
    .await;

    let mlp = printed.get("mlp");
    let (shape, values) = mlp.split_once("] ").unwrap();
    assert_eq!(shape, "[2, 3");
    let values: Vec<f64> = values.split(' ').map(|v| v.parse().unwrap()).collect();
    assert_close(&values, &reference(&x), 2e-6, "sdk mlp");
    assert_eq!(printed.get("pair"), "[1, 3] 6.000000 9.000000 12.000000");
    assert_eq!(printed.get("ints"), "[2] [22, -23]");
    let bad = printed.get("bad");
    assert!(bad.starts_with("400 "), "{bad}");
    assert!(bad.contains("the model refused the inputs"), "{bad}");
    server.shutdown().await;
}
