//! The Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`) against a running
//! server with the example ONNX model (`examples/models/mlp.onnx`, input `x` FP32 `[batch, 4]`,
//! output `y`), on the HTTP port: health, metadata and readiness; inferences with raw and typed
//! tensor contents; hostile calls answered with the right status code and a reason (a Rust
//! tonic client); a gRPC and an HTTP request in one dynamic batch; and the real
//! `tritonclient[grpc]` against onnxruntime in Python.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH` or `EAS_PYTHON`); the client test also
//! needs `EAS_OIP_PYTHON` (a Python with tritonclient[grpc], onnxruntime and numpy:
//! `scripts/test-env.sh`). Without them a test prints `SKIPPED: ...`, or fails when
//! `EAS_REQUIRE_ALL=1`.

#![cfg(feature = "onnx")]

#[path = "support/batches.rs"]
mod batches;
#[path = "support/python_client.rs"]
mod python_client;
#[path = "support/require.rs"]
mod require;

/// The protocol's messages and client, as the server's are generated (scripts/gen-proto).
#[path = "../src/http/grpc/inference.rs"]
#[allow(dead_code, missing_docs, clippy::all, clippy::pedantic)]
mod inference;

use std::path::{Path, PathBuf};
use std::time::Duration;

use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, RunningPlatform};
use inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerReadyRequest,
};
use require::skip;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Status};

const TOKEN: &str = "Z3JwYy10ZXN0LXRva2VuLWZvci1lYXMtb2lw";

/// `x` rows and the `y` rows onnxruntime 1.31.1 gives for them (examples/models/README.md).
const ROW_A: [f32; 4] = [5.1, 3.5, 1.4, 0.2];
const Y_A: [f32; 3] = [0.33816, 0.27547, 0.38637];
const ROW_B: [f32; 4] = [6.7, 3.0, 5.2, 2.3];
const Y_B: [f32; 3] = [0.37047, 0.26244, 0.36709];

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models")
}

/// An `onnx` service of the example model that takes gRPC calls, `rpc` and `extra` merged
/// into its spec.
fn mlp(name: &str, rpc: Value, extra: Value) -> ServiceSpec {
    let mut doc = json!({
        "metadata": {"name": name, "instance": 1, "cpu": 1, "rpc": rpc, "enable_grpc": true},
        "processor": "onnx", "model_path": models().to_string_lossy(),
        "model_entry": "mlp.onnx", "token": TOKEN,
    });
    if let (Value::Object(doc), Value::Object(extra)) = (&mut doc, extra) {
        for (key, value) in extra {
            match (doc.get_mut(&key), value) {
                (Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
                (_, value) => {
                    doc.insert(key, value);
                }
            }
        }
    }
    ServiceSpec::from_json_value(doc).expect("valid spec")
}

/// A server with `services` and a body limit of 64 KiB, or `None` after saying why the test
/// skips (no ONNX Runtime).
async fn serve(test: &str, services: Vec<ServiceSpec>) -> Option<RunningPlatform> {
    if let Err(e) = eas_runtime::onnx::runtime() {
        skip(test, &format!("no ONNX Runtime library: {e}"));
        return None;
    }
    let mut builder = Platform::builder()
        .max_body_bytes(64 << 10)
        .bind("127.0.0.1:0".parse().expect("addr"));
    for spec in services {
        builder = builder.service(spec);
    }
    let server = builder.start().await.expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(60)).await, "ready");
    Some(server)
}

async fn channel(server: &RunningPlatform) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr()))
        .expect("an endpoint")
        .connect()
        .await
        .expect("connects over HTTP/2 to the HTTP port")
}

async fn client(server: &RunningPlatform) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::new(channel(server).await)
}

/// `message` with the `authorization` metadata `token`, if any.
fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", token.parse().expect("ASCII"));
    }
    request
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], case: &str) {
    assert_eq!(got.len(), want.len(), "{case}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-4, "{case}: {got:?} vs {want:?}");
    }
}

fn x_input(datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: "x".into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        ..InferInputTensor::default()
    }
}

/// An inference of `model` on the rows `x` sent as raw contents.
fn raw_infer(model: &str, rows: &[f32]) -> ModelInferRequest {
    let batch = i64::try_from(rows.len() / 4).expect("small");
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![x_input("FP32", &[batch, 4])],
        raw_input_contents: vec![f32_bytes(rows).into()],
        ..ModelInferRequest::default()
    }
}

/// The `y` of an answer, raw or typed.
fn y(answer: &ModelInferResponse) -> Vec<f32> {
    assert_eq!(answer.outputs[0].name, "y");
    assert_eq!(answer.outputs[0].datatype, "FP32");
    match answer.raw_output_contents.first() {
        Some(raw) => f32s(raw),
        None => answer.outputs[0]
            .contents
            .as_ref()
            .expect("typed contents")
            .fp32_contents
            .clone(),
    }
}

/// Checks that `result` failed with `code` and a message containing `want`.
fn assert_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    want: &str,
    case: &str,
) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), code, "{case}: {status:?}");
    assert!(
        status.message().contains(want),
        "{case}: {:?} should contain {want:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_and_inference_should_follow_the_protocol_on_the_http_port() {
    let test = "health_metadata_and_inference_should_follow_the_protocol_on_the_http_port";
    let Some(server) = serve(test, vec![mlp("mlp", json!({}), json!({}))]).await else {
        return;
    };
    let mut c = client(&server).await;
    let live = c.server_live(ServerLiveRequest {}).await.expect("live");
    assert!(live.into_inner().live);
    let ready = c.server_ready(ServerReadyRequest {}).await.expect("ready");
    assert!(ready.into_inner().ready);
    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .expect("metadata")
        .into_inner();
    assert_eq!(meta.name, "eas");
    assert_eq!(meta.extensions, ["binary_tensor_data"]);

    for version in ["", "1"] {
        let ask = ModelMetadataRequest {
            name: "mlp".into(),
            version: version.into(),
        };
        let model = c
            .model_metadata(with_token(ask, Some(TOKEN)))
            .await
            .expect("model metadata")
            .into_inner();
        assert_eq!(
            (model.name.as_str(), model.versions, model.platform.as_str()),
            ("mlp", vec!["1".to_owned()], "onnxruntime")
        );
        let input = &model.inputs[0];
        assert_eq!(
            (
                input.name.as_str(),
                input.datatype.as_str(),
                &input.shape[..]
            ),
            ("x", "FP32", &[-1, 4][..])
        );
        assert_eq!(model.outputs[0].name, "y");
        let ask = ModelReadyRequest {
            name: "mlp".into(),
            version: version.into(),
        };
        let ready = c.model_ready(with_token(ask, Some(TOKEN))).await;
        assert!(ready.expect("model ready").into_inner().ready);
    }

    // Raw in, raw out (what tritonclient sends and reads), with the request's id.
    let rows = [ROW_A, ROW_B].concat();
    let mut raw = raw_infer("mlp", &rows);
    raw.id = "g-1".into();
    raw.model_version = "1".into();
    let answer = c
        .model_infer(with_token(raw, Some(TOKEN)))
        .await
        .expect("raw inference")
        .into_inner();
    assert_eq!(
        (
            answer.model_name.as_str(),
            answer.model_version.as_str(),
            answer.id.as_str()
        ),
        ("mlp", "1", "g-1")
    );
    assert_eq!(answer.outputs[0].shape, [2, 3]);
    assert!(answer.outputs[0].contents.is_none());
    assert_close(&y(&answer), &[Y_A, Y_B].concat(), "raw");

    // Typed in, typed out, the output asked for by name.
    let typed = ModelInferRequest {
        model_name: "mlp".into(),
        inputs: vec![InferInputTensor {
            contents: Some(InferTensorContents {
                fp32_contents: ROW_B.to_vec(),
                ..InferTensorContents::default()
            }),
            ..x_input("FP32", &[1, 4])
        }],
        outputs: vec![InferRequestedOutputTensor {
            name: "y".into(),
            ..InferRequestedOutputTensor::default()
        }],
        ..ModelInferRequest::default()
    };
    let answer = c
        .model_infer(with_token(typed, Some(TOKEN)))
        .await
        .expect("typed inference")
        .into_inner();
    assert!(answer.raw_output_contents.is_empty());
    assert_close(&y(&answer), &Y_B, "typed");

    // HTTP/1.1 on the same port still answers.
    let http = reqwest::get(format!("http://{}/v2/health/live", server.local_addr()))
        .await
        .expect("an HTTP answer");
    assert_eq!(http.status().as_u16(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_calls_should_get_the_right_status_with_a_reason() {
    let test = "hostile_calls_should_get_the_right_status_with_a_reason";
    let limited =
        json!({"networking": {"gateway_policy": {"rate_limit": {"enable": true, "limit": 1}}}});
    let http_only = json!({"metadata": {"enable_grpc": false}});
    let other_token = json!({"token": "another-services-token"});
    let services = vec![
        mlp("mlp", json!({}), json!({})),
        mlp("limited", json!({}), limited),
        mlp("http_only", json!({}), http_only),
        mlp("other", json!({}), other_token),
    ];
    let Some(server) = serve(test, services).await else {
        return;
    };
    let mut c = client(&server).await;

    let with_raw = |raw: Vec<u8>| {
        let mut request = raw_infer("mlp", &ROW_A);
        request.raw_input_contents = vec![raw.into()];
        request
    };
    let renamed = {
        let mut request = raw_infer("mlp", &ROW_A);
        request.inputs[0].name = "z".into();
        request
    };
    let retyped = {
        let mut request = raw_infer("mlp", &ROW_A);
        request.inputs[0].datatype = "FP64".into();
        request.raw_input_contents = vec![
            ROW_A
                .iter()
                .flat_map(|v| f64::from(*v).to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        ];
        request
    };
    let reshaped = {
        let mut request = raw_infer("mlp", &ROW_A);
        request.inputs[0].shape = vec![2, 2];
        request
    };
    let mut wrong_version = raw_infer("mlp", &ROW_A);
    wrong_version.model_version = "2".into();
    let mut unknown_output = raw_infer("mlp", &ROW_A);
    unknown_output.outputs.push(InferRequestedOutputTensor {
        name: "nope".into(),
        ..InferRequestedOutputTensor::default()
    });
    let typed_as_int = ModelInferRequest {
        model_name: "mlp".into(),
        inputs: vec![InferInputTensor {
            contents: Some(InferTensorContents {
                int_contents: vec![1, 2, 3, 4],
                ..InferTensorContents::default()
            }),
            ..x_input("FP32", &[1, 4])
        }],
        ..ModelInferRequest::default()
    };
    // 20,000 rows: 320,000 bytes, past the body limit of 64 KiB.
    let huge = raw_infer("mlp", &ROW_A.repeat(20_000));

    // What is wrong, the call, its token, the code, the reason.
    type Case<'a> = (&'a str, ModelInferRequest, Option<&'a str>, Code, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "wrong input name",
            renamed,
            Some(TOKEN),
            Code::InvalidArgument,
            "unknown input `z`",
        ),
        (
            "wrong datatype",
            retyped,
            Some(TOKEN),
            Code::InvalidArgument,
            "data type FP64, but the model takes FP32",
        ),
        (
            "wrong shape",
            reshaped,
            Some(TOKEN),
            Code::InvalidArgument,
            "input `x`",
        ),
        (
            "truncated raw contents",
            with_raw(f32_bytes(&ROW_A)[..15].to_vec()),
            Some(TOKEN),
            Code::InvalidArgument,
            "input `x`: its raw_input_contents entry is 15 bytes, but shape [1, 4] of FP32 needs 16",
        ),
        (
            "raw contents past the shape",
            with_raw(f32_bytes(&[ROW_A, ROW_B].concat())),
            Some(TOKEN),
            Code::InvalidArgument,
            "is 32 bytes",
        ),
        (
            "typed contents of another type",
            typed_as_int,
            Some(TOKEN),
            Code::InvalidArgument,
            "FP32 elements go in fp32_contents",
        ),
        (
            "unknown output",
            unknown_output,
            Some(TOKEN),
            Code::InvalidArgument,
            "unknown output `nope`",
        ),
        (
            "wrong version",
            wrong_version,
            Some(TOKEN),
            Code::NotFound,
            "no version `2`",
        ),
        (
            "unknown model",
            raw_infer("nope", &ROW_A),
            Some(TOKEN),
            Code::NotFound,
            "no service named `nope`",
        ),
        (
            "model that takes no gRPC",
            raw_infer("http_only", &ROW_A),
            Some(TOKEN),
            Code::NotFound,
            "does not take gRPC calls",
        ),
        (
            "missing token",
            raw_infer("mlp", &ROW_A),
            None,
            Code::Unauthenticated,
            "unauthorized",
        ),
        (
            "wrong token",
            raw_infer("mlp", &ROW_A),
            Some("wrong"),
            Code::Unauthenticated,
            "unauthorized",
        ),
        (
            "another service's token",
            raw_infer("mlp", &ROW_A),
            Some("another-services-token"),
            Code::Unauthenticated,
            "does not match",
        ),
        (
            "no model name",
            raw_infer("", &ROW_A),
            Some(TOKEN),
            Code::InvalidArgument,
            "names no model",
        ),
        (
            "body over the limit",
            huge,
            Some(TOKEN),
            Code::ResourceExhausted,
            "too large",
        ),
    ];
    for (case, request, token, code, want) in cases {
        let result = c.model_infer(with_token(request, token)).await;
        assert_status(result, code, want, case);
    }
    let refused = c
        .model_infer(with_token(raw_infer("mlp", &ROW_A), None))
        .await
        .expect_err("refused");
    assert_eq!(
        refused
            .metadata()
            .get("eas-error")
            .and_then(|v| v.to_str().ok()),
        Some("unauthorized")
    );

    let ready = |token: Option<&str>| {
        with_token(
            ModelReadyRequest {
                name: "mlp".into(),
                version: String::new(),
            },
            token,
        )
    };
    let refused = c.model_ready(ready(None)).await;
    assert_status(
        refused,
        Code::Unauthenticated,
        "unauthorized",
        "ready without a token",
    );
    let metadata = ModelMetadataRequest {
        name: "mlp".into(),
        version: "2".into(),
    };
    let refused = c.model_metadata(with_token(metadata, Some(TOKEN))).await;
    assert_status(
        refused,
        Code::NotFound,
        "it runs 1",
        "metadata of version 2",
    );

    // Triton's other methods: UNIMPLEMENTED, naming what is.
    let mut raw = tonic::client::Grpc::new(channel(&server).await);
    raw.ready().await.expect("ready");
    let unimplemented = raw
        .unary(
            tonic::Request::new(ServerLiveRequest {}),
            http::uri::PathAndQuery::from_static("/inference.GRPCInferenceService/ModelConfig"),
            tonic_prost::ProstCodec::<ServerLiveRequest, ServerLiveResponse>::default(),
        )
        .await;
    assert_status(
        unimplemented,
        Code::Unimplemented,
        "implements ServerLive",
        "ModelConfig",
    );

    // The service's gateway rate limit (1 per second): one of two is refused.
    let mut other = c.clone();
    let (a, b) = tokio::join!(
        c.model_infer(with_token(raw_infer("limited", &ROW_A), Some(TOKEN))),
        other.model_infer(with_token(raw_infer("limited", &ROW_A), Some(TOKEN)))
    );
    let (ok, refused) = if a.is_ok() { (a, b) } else { (b, a) };
    assert_close(&y(&ok.expect("one passes").into_inner()), &Y_A, "limited");
    assert_status(
        refused,
        Code::ResourceExhausted,
        "rate limited",
        "gateway rate limit",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_and_an_http_request_should_share_one_batch() {
    let test = "a_grpc_and_an_http_request_should_share_one_batch";
    // Four gRPC and four HTTP clients, each sending its next request as soon as it has the
    // answer to the last: at most four requests of a protocol are in flight at a time, so a
    // batch of more than four holds both. Batches of up to 8: the batcher fills them as the
    // eight clients keep it busy (it may send the first requests alone while it learns that).
    let clients = 4;
    let rpc = json!({"batching": true, "max_batch_size": 2 * clients, "max_batch_timeout": 2_000});
    let Some(server) = serve(test, vec![mlp("batched", rpc, json!({}))]).await else {
        return;
    };
    let rounds = 50;
    let channel = channel(&server).await;
    let grpc = |_| {
        let mut c = GrpcInferenceServiceClient::new(channel.clone());
        async move {
            for _ in 0..rounds {
                let request = with_token(raw_infer("batched", &ROW_B), Some(TOKEN));
                let answer = c.model_infer(request).await.expect("a gRPC answer");
                assert_close(&y(&answer.into_inner()), &Y_B, "gRPC");
            }
        }
    };
    let http_client = reqwest::Client::new();
    let url = format!("http://{}/v2/models/batched/infer", server.local_addr());
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW_A}]})
            .to_string();
    let http = |_| async {
        for _ in 0..rounds {
            let answer = http_client
                .post(&url)
                .header("authorization", TOKEN)
                .body(body.clone())
                .send()
                .await
                .expect("an HTTP answer");
            let answer: Value = answer.json().await.expect("JSON");
            #[allow(clippy::cast_possible_truncation)]
            let floats: Vec<f32> = answer["outputs"][0]["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|v| v.as_f64().expect("a number") as f32)
                .collect();
            assert_close(&floats, &Y_A, "HTTP");
        }
    };
    tokio::join!(
        futures::future::join_all((0..clients).map(grpc)),
        futures::future::join_all((0..clients).map(http))
    );
    let (batches, mixed) = batches::batches_over(&server, "batched", clients).await;
    assert!(
        mixed > 0.0,
        "no batch held both gRPC and HTTP requests: {batches} batches of at most {clients}"
    );
    server.shutdown().await;
}

/// Drives the server with tritonclient[grpc]; prints one line per check: `name<TAB>result`.
const CLIENT: &str = r#"
import sys
import numpy as np
import onnxruntime as ort
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

host, token, model = sys.argv[1], sys.argv[2], sys.argv[3]
auth = {"authorization": token}
x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [4.9, 3.0, 1.4, 0.2]], dtype=np.float32)
want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

def same(name, got):
    ok = got.shape == want.shape and got.dtype == want.dtype and np.allclose(got, want, rtol=0, atol=1e-6)
    print("%s\t%s" % (name, "same" if ok else "differs: %r vs %r" % (got, want)))

def failure(name, call):
    try:
        call()
        print("%s\tno error" % name)
    except InferenceServerException as e:
        print("%s\t%s %s" % (name, e.status(), e.message()))

client = triton.InferenceServerClient(url=host)
print("triton_live\t%s" % client.is_server_live())
print("triton_ready\t%s" % client.is_server_ready())
meta = client.get_server_metadata(as_json=True)
print("triton_server\t%s %s" % (meta["name"], meta["extensions"]))
print("triton_model_ready\t%s" % client.is_model_ready("mlp", headers=auth))
failure("triton_model_ready_without_token", lambda: client.is_model_ready("mlp"))
m = client.get_model_metadata("mlp", model_version="1", headers=auth, as_json=True)
print("triton_metadata\t%s %s %s %s" % (m["name"], m["versions"], m["platform"], m["inputs"]))

def infer(token=token, datatype="FP32", outputs=None, **kw):
    inp = triton.InferInput("x", list(x.shape), datatype)
    inp.set_data_from_numpy(x.astype(triton_to_np_dtype(datatype)))
    return client.infer("mlp", [inp], outputs=outputs, headers={"authorization": token}, **kw)

r = infer(request_id="g-1")
same("triton_infer", r.as_numpy("y"))
print("triton_infer_id\t%s" % r.get_response().id)
r = infer(outputs=[triton.InferRequestedOutput("y")], model_version="1")
same("triton_infer_output_asked", r.as_numpy("y"))
failure("triton_wrong_token", lambda: infer(token="wrong"))
failure("triton_wrong_version", lambda: infer(model_version="2"))
failure("triton_wrong_datatype", lambda: infer(datatype="FP64"))
failure("triton_model_config", lambda: client.get_model_config("mlp", headers=auth))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_triton_grpc_client_should_get_onnxruntime_outputs() {
    let test = "the_real_triton_grpc_client_should_get_onnxruntime_outputs";
    let Some(python) = std::env::var_os("EAS_OIP_PYTHON").filter(|p| !p.is_empty()) else {
        return skip(
            test,
            "EAS_OIP_PYTHON is not set (a Python with tritonclient[grpc], onnxruntime)",
        );
    };
    let rpc = json!({"batching": true, "max_batch_size": 8, "max_batch_timeout": 5});
    let Some(server) = serve(test, vec![mlp("mlp", rpc, json!({}))]).await else {
        return;
    };
    let host = server.local_addr().to_string();
    let model = models().join("mlp.onnx");
    let printed = python_client::run(
        python,
        CLIENT,
        vec![host.into(), TOKEN.into(), model.into()],
        "the client",
    )
    .await;
    let result = |name: &str| printed.get(name);
    for name in ["triton_live", "triton_ready", "triton_model_ready"] {
        assert_eq!(result(name), "True", "{name}");
    }
    assert_eq!(result("triton_server"), "eas ['binary_tensor_data']");
    assert_eq!(
        result("triton_metadata"),
        "mlp ['1'] onnxruntime [{'name': 'x', 'datatype': 'FP32', 'shape': ['-1', '4']}]"
    );
    for name in ["triton_infer", "triton_infer_output_asked"] {
        assert_eq!(result(name), "same", "{name}");
    }
    assert_eq!(result("triton_infer_id"), "g-1");
    let expect = |name: &str, code: &str, reason: &str| {
        let got = result(name);
        assert!(
            got.starts_with(&format!("StatusCode.{code} ")) && got.contains(reason),
            "{name}: {got}"
        );
    };
    expect(
        "triton_model_ready_without_token",
        "UNAUTHENTICATED",
        "missing",
    );
    expect("triton_wrong_token", "UNAUTHENTICATED", "does not match");
    expect("triton_wrong_version", "NOT_FOUND", "no version `2`");
    expect("triton_wrong_datatype", "INVALID_ARGUMENT", "FP64");
    expect("triton_model_config", "UNIMPLEMENTED", "ModelConfig");
    server.shutdown().await;
}
