//! The Open Inference Protocol v2 over REST against a running server with the example ONNX
//! model (`examples/models/mlp.onnx`, input `x` FP32 `[batch, 4]`, output `y`): health,
//! metadata and readiness; hostile requests answered in OIP's error form with the right
//! status; an OIP and an EAS request in one dynamic batch; the service's admission (token,
//! body limit, rate limit) in front of OIP; and the real clients, `tritonclient[http]` and
//! KServe's `InferenceRESTClient`, with JSON and binary tensors, against onnxruntime in Python.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH` or `EAS_PYTHON`); the client test also
//! needs `EAS_OIP_PYTHON` (a Python with tritonclient[http], kserve, onnxruntime and numpy:
//! `scripts/test-env.sh`). Without them a test prints `SKIPPED: ...`, or fails when
//! `EAS_REQUIRE_ALL=1`.

#![cfg(feature = "onnx")]

#[path = "support/batches.rs"]
mod batches;
#[path = "support/python_client.rs"]
mod python_client;
#[path = "support/require.rs"]
mod require;

use std::path::{Path, PathBuf};
use std::time::Duration;

use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, RunningPlatform};
use require::skip;
use serde_json::{Value, json};

const TOKEN: &str = "b2lwLXRlc3QtdG9rZW4tZm9yLWVhcy1vaXA";

/// `x` rows and the `y` rows onnxruntime 1.31.1 gives for them (examples/models/README.md).
const ROW_A: [f32; 4] = [5.1, 3.5, 1.4, 0.2];
const Y_A: [f32; 3] = [0.33816, 0.27547, 0.38637];
const ROW_B: [f32; 4] = [6.7, 3.0, 5.2, 2.3];
const Y_B: [f32; 3] = [0.37047, 0.26244, 0.36709];

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models")
}

/// An `onnx` service of the example model, `rpc` and `extra` merged into its spec.
fn mlp(name: &str, rpc: Value, extra: Value) -> ServiceSpec {
    let mut doc = json!({
        "metadata": {"name": name, "instance": 1, "cpu": 1, "rpc": rpc},
        "processor": "onnx", "model_path": models().to_string_lossy(),
        "model_entry": "mlp.onnx", "token": TOKEN,
    });
    if let (Value::Object(doc), Value::Object(extra)) = (&mut doc, extra) {
        doc.extend(extra);
    }
    ServiceSpec::from_json_value(doc).expect("valid spec")
}

fn echo() -> ServiceSpec {
    ServiceSpec::from_json_value(json!({
        "metadata": {"name": "echo", "instance": 1},
        "processor": "echo", "model_path": ".", "token": TOKEN,
    }))
    .expect("valid spec")
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

fn url(server: &RunningPlatform, path: &str) -> String {
    format!("http://{}{path}", server.local_addr())
}

/// A response's status, headers and body.
struct Answer {
    status: u16,
    content_type: String,
    header_length: Option<usize>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        let json = self
            .header_length
            .map_or(&self.body[..], |n| &self.body[..n]);
        serde_json::from_slice(json)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// Checks that this is an OIP error with `status` whose message contains `want`.
    fn assert_error(&self, status: u16, want: &str, case: &str) {
        assert_eq!(
            self.status,
            status,
            "{case}: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type, "application/json", "{case}");
        let body = self.json();
        let object = body.as_object().expect("an object");
        assert_eq!(object.len(), 1, "{case}: only \"error\": {body}");
        let message = body["error"].as_str().expect("a string");
        assert!(
            message.contains(want),
            "{case}: {message:?} should contain {want:?}"
        );
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("an answer");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let header_length =
        header("inference-header-content-length").map(|v| v.parse().expect("a length"));
    Answer {
        status: response.status().as_u16(),
        content_type,
        header_length,
        body: response.bytes().await.expect("a body").to_vec(),
    }
}

async fn get(server: &RunningPlatform, path: &str, token: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().get(url(server, path));
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    send(request).await
}

/// Posts an inference with the token, `body` and (if given) `Inference-Header-Content-Length`.
async fn infer(
    server: &RunningPlatform,
    model: &str,
    body: Vec<u8>,
    length: Option<&str>,
) -> Answer {
    let mut request = reqwest::Client::new()
        .post(url(server, &format!("/v2/models/{model}/infer")))
        .header("authorization", TOKEN)
        .body(body);
    if let Some(length) = length {
        request = request.header("inference-header-content-length", length);
    }
    send(request).await
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A body with the JSON `header` then `binary`, and the header's length.
fn with_binary(header: &Value, binary: &[u8]) -> (Vec<u8>, String) {
    let mut body = header.to_string().into_bytes();
    let length = body.len().to_string();
    body.extend_from_slice(binary);
    (body, length)
}

fn assert_close(got: &[f32], want: &[f32], case: &str) {
    assert_eq!(got.len(), want.len(), "{case}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-4, "{case}: {got:?} vs {want:?}");
    }
}

fn floats(value: &Value) -> Vec<f32> {
    #[allow(clippy::cast_possible_truncation)]
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_and_readiness_should_follow_the_protocol() {
    let test = "health_metadata_and_readiness_should_follow_the_protocol";
    let Some(server) = serve(test, vec![mlp("mlp", json!({}), json!({})), echo()]).await else {
        return;
    };
    let live = get(&server, "/v2/health/live", None).await;
    assert_eq!((live.status, live.json()), (200, json!({"live": true})));
    let ready = get(&server, "/v2/health/ready", None).await;
    assert_eq!((ready.status, ready.json()), (200, json!({"ready": true})));
    let meta = get(&server, "/v2", None).await;
    assert_eq!(meta.status, 200);
    assert_eq!(meta.json()["name"], "eas");
    assert_eq!(meta.json()["extensions"], json!(["binary_tensor_data"]));

    for path in ["/v2/models/mlp", "/v2/models/mlp/versions/1"] {
        let model = get(&server, path, Some(TOKEN)).await;
        assert_eq!(model.status, 200, "{path}");
        let model = model.json();
        assert_eq!(model["name"], "mlp");
        assert_eq!(model["versions"], json!(["1"]));
        assert_eq!(model["platform"], "onnxruntime");
        assert_eq!(
            model["inputs"],
            json!([{"name": "x", "datatype": "FP32", "shape": [-1, 4]}])
        );
        assert_eq!(model["outputs"][0]["name"], "y");
        assert_eq!(model["outputs"][0]["datatype"], "FP32");
    }
    for path in ["/v2/models/mlp/ready", "/v2/models/mlp/versions/1/ready"] {
        let ready = get(&server, path, Some(TOKEN)).await;
        assert_eq!(
            (ready.status, ready.json()),
            (200, json!({"name": "mlp", "ready": true}))
        );
    }

    let cases = [
        ("/v2/models/mlp", None, 401, "unauthorized"),
        ("/v2/models/mlp/ready", Some("wrong"), 401, "unauthorized"),
        (
            "/v2/models/mlp/versions/2",
            Some(TOKEN),
            404,
            "no version `2`",
        ),
        (
            "/v2/models/mlp/versions/2/ready",
            Some(TOKEN),
            404,
            "it runs 1",
        ),
        ("/v2/models/nope", Some(TOKEN), 404, "`nope`"),
        ("/v2/models/echo", Some(TOKEN), 404, "not an OIP model"),
        (
            "/v2/models/echo/ready",
            Some(TOKEN),
            404,
            "describes no tensor inputs",
        ),
        ("/v2/models/mlp/infer", Some(TOKEN), 405, "use POST"),
    ];
    for (path, token, status, want) in cases {
        get(&server, path, token)
            .await
            .assert_error(status, want, path);
    }
    let echo = reqwest::Client::new()
        .post(url(&server, "/v2/models/echo/infer"))
        .header("authorization", TOKEN)
        .body(
            json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
                .to_string(),
        );
    send(echo)
        .await
        .assert_error(404, "not an OIP model", "echo infer");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_binary_inferences_should_give_the_model_outputs() {
    let test = "json_and_binary_inferences_should_give_the_model_outputs";
    let Some(server) = serve(test, vec![mlp("mlp", json!({}), json!({}))]).await else {
        return;
    };
    let rows = [ROW_A, ROW_B].concat();
    let want = [Y_A, Y_B].concat();

    let json_body = json!({"id": "req-7", "inputs": [
        {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": rows}]});
    let answer = infer(&server, "mlp", json_body.to_string().into_bytes(), None).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.header_length, None);
    let body = answer.json();
    assert_eq!(body["model_name"], "mlp");
    assert_eq!(body["model_version"], "1");
    assert_eq!(body["id"], "req-7");
    assert_eq!(body["outputs"][0]["name"], "y");
    assert_eq!(body["outputs"][0]["datatype"], "FP32");
    assert_eq!(body["outputs"][0]["shape"], json!([2, 3]));
    assert_close(&floats(&body["outputs"][0]["data"]), &want, "JSON");

    // Binary in, binary out (request-level binary_data_output), through /versions/1.
    let header = json!({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
        "parameters": {"binary_data_size": 32}}], "parameters": {"binary_data_output": true}});
    let (body, length) = with_binary(&header, &f32_bytes(&rows));
    let answer = infer(&server, "mlp/versions/1", body, Some(&length)).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.content_type, "application/octet-stream");
    let n = answer
        .header_length
        .expect("Inference-Header-Content-Length");
    let output = &answer.json()["outputs"][0];
    assert_eq!(output["parameters"]["binary_data_size"], 24);
    assert!(output.get("data").is_none(), "{output}");
    let got: Vec<f32> = answer.body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_close(&got, &want, "binary");

    // Binary in, the one output asked for as JSON.
    let header = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
        "parameters": {"binary_data_size": 16}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": false}}]});
    let (body, length) = with_binary(&header, &f32_bytes(&ROW_A));
    let answer = infer(&server, "mlp", body, Some(&length)).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header_length, None);
    assert_close(
        &floats(&answer.json()["outputs"][0]["data"]),
        &Y_A,
        "binary in, JSON out",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inferences_should_get_oip_errors_with_the_right_status() {
    let test = "hostile_inferences_should_get_oip_errors_with_the_right_status";
    let limited =
        json!({"networking": {"gateway_policy": {"rate_limit": {"enable": true, "limit": 1}}}});
    let services = vec![
        mlp("mlp", json!({}), json!({})),
        mlp("limited", json!({}), limited),
    ];
    let Some(server) = serve(test, services).await else {
        return;
    };
    let x = |shape: Value, datatype: &str, data: Value| {
        json!({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]})
            .to_string()
            .into_bytes()
    };
    let binary = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
        "parameters": {"binary_data_size": 16}}]});
    let (full, length) = with_binary(&binary, &f32_bytes(&ROW_A));
    let truncated = full[..full.len() - 1].to_vec();
    let huge_size = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
        "parameters": {"binary_data_size": u64::MAX}}]});
    let (huge_size, huge_size_length) = with_binary(&huge_size, &[]);

    // What is wrong, the body, its Inference-Header-Content-Length, the status, the message.
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            b"{\"inputs\": [".to_vec(),
            None,
            400,
            "not an inference request",
        ),
        (
            "not JSON at all",
            vec![0xff, 0x00, 0x12],
            None,
            400,
            "not an inference request",
        ),
        (
            "no inputs",
            b"{\"inputs\": []}".to_vec(),
            None,
            400,
            "\"inputs\" is empty",
        ),
        (
            "wrong input name",
            json!({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": ROW_A}]})
                .to_string()
                .into_bytes(),
            None,
            400,
            "unknown input `z`",
        ),
        (
            "wrong datatype",
            x(json!([1, 4]), "FP64", json!(ROW_A)),
            None,
            400,
            "data type FP64, but the model takes FP32",
        ),
        (
            "unsupported datatype",
            x(json!([1, 4]), "BYTES", json!(["a", "b", "c", "d"])),
            None,
            400,
            "BYTES is not supported",
        ),
        (
            "wrong shape",
            x(json!([1, 3]), "FP32", json!([1, 2, 3])),
            None,
            400,
            "input `x`",
        ),
        (
            "too few elements",
            x(json!([1, 4]), "FP32", json!([1, 2, 3])),
            None,
            400,
            "has 3 elements, but its shape needs 4",
        ),
        (
            "too many elements",
            x(json!([1, 4]), "FP32", json!([1, 2, 3, 4, 5])),
            None,
            400,
            "more than the 4 elements",
        ),
        (
            "not a number",
            x(json!([1, 4]), "FP32", json!([1, 2, "3", 4])),
            None,
            400,
            "expected FP32 numbers for input `x`",
        ),
        (
            "past FP32",
            x(json!([1, 4]), "FP32", json!([1, 2, 3, 4e39])),
            None,
            400,
            "out of the range of FP32",
        ),
        (
            "a shape of 2^126 elements",
            x(json!([i64::MAX, i64::MAX]), "FP32", json!([1])),
            None,
            400,
            "too many elements",
        ),
        (
            "unknown output",
            {
                let mut r = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW_A}],
                               "outputs": [{"name": "nope"}]});
                r["id"] = json!("x");
                r.to_string().into_bytes()
            },
            None,
            400,
            "unknown output `nope`",
        ),
        (
            "truncated binary data",
            truncated,
            Some(&length),
            400,
            "truncated binary data",
        ),
        (
            "binary data without its header length",
            full.clone(),
            None,
            400,
            "not an inference request",
        ),
        (
            "binary data past the inputs",
            [&full[..], b"xx"].concat(),
            Some(&length),
            400,
            "belong to no input",
        ),
        (
            "huge Inference-Header-Content-Length",
            full.clone(),
            Some("18446744073709551615"),
            400,
            "but the body has only",
        ),
        (
            "Inference-Header-Content-Length past u64",
            full.clone(),
            Some("99999999999999999999999999"),
            400,
            "not a byte count",
        ),
        (
            "negative Inference-Header-Content-Length",
            full.clone(),
            Some("-5"),
            400,
            "not a byte count",
        ),
        (
            "huge binary_data_size",
            huge_size,
            Some(&huge_size_length),
            400,
            "binary_data_size is 18446744073709551615 bytes",
        ),
        (
            "body over the limit",
            vec![b' '; 80 << 10],
            None,
            413,
            "too large",
        ),
    ];
    for (case, body, length, status, want) in cases {
        infer(&server, "mlp", body, length)
            .await
            .assert_error(status, want, case);
    }

    // The token, as for the EAS predict route: missing or wrong, a 401 before the body.
    for token in [None, Some("wrong")] {
        let mut request = reqwest::Client::new()
            .post(url(&server, "/v2/models/mlp/infer"))
            .body(x(json!([1, 4]), "FP32", json!(ROW_A)));
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        send(request)
            .await
            .assert_error(401, "unauthorized", "token");
    }
    // The service's gateway rate limit (1 per second): one of two is refused.
    let body = || x(json!([1, 4]), "FP32", json!(ROW_A));
    let (a, b) = tokio::join!(
        infer(&server, "limited", body(), None),
        infer(&server, "limited", body(), None)
    );
    let (ok, refused) = if a.status == 200 { (a, b) } else { (b, a) };
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    refused.assert_error(429, "rate limited", "gateway rate limit");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oip_and_an_eas_request_should_share_one_batch() {
    let test = "an_oip_and_an_eas_request_should_share_one_batch";
    // Four EAS and four OIP clients, each sending its next request as soon as it has the
    // answer to the last: at most four requests of a protocol are in flight at a time, so a
    // batch of more than four holds both. Batches of up to 8: the batcher fills them as the
    // eight clients keep it busy (it may send the first requests alone while it learns that).
    let clients = 4;
    let rpc = json!({"batching": true, "max_batch_size": 2 * clients, "max_batch_timeout": 2_000});
    let Some(server) = serve(test, vec![mlp("batched", rpc, json!({}))]).await else {
        return;
    };
    let rounds = 50;
    let client = reqwest::Client::new();
    let eas_body = json!({"inputs": {"x": [ROW_A]}}).to_string();
    let eas = |_| async {
        for _ in 0..rounds {
            let answer = send(
                client
                    .post(url(&server, "/api/predict/batched"))
                    .header("authorization", TOKEN)
                    .header("content-type", "application/json")
                    .body(eas_body.clone()),
            )
            .await;
            assert_eq!(
                answer.status,
                200,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
            assert_close(&floats(&answer.json()["outputs"]["y"]["data"]), &Y_A, "EAS");
        }
    };
    let oip_body =
        json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW_B}]})
            .to_string();
    let oip = |_| async {
        for _ in 0..rounds {
            let answer = infer(&server, "batched", oip_body.clone().into_bytes(), None).await;
            assert_eq!(
                answer.status,
                200,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
            assert_close(&floats(&answer.json()["outputs"][0]["data"]), &Y_B, "OIP");
        }
    };
    tokio::join!(
        futures::future::join_all((0..clients).map(eas)),
        futures::future::join_all((0..clients).map(oip))
    );
    let (batches, mixed) = batches::batches_over(&server, "batched", clients).await;
    assert!(
        mixed > 0.0,
        "no batch held both EAS and OIP requests: {batches} batches of at most {clients}"
    );
    server.shutdown().await;
}

/// Drives the server with the real clients; prints one line per check: `name<TAB>result`.
const CLIENTS: &str = r#"
import asyncio, sys
import numpy as np
import onnxruntime as ort
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException
import httpx
from kserve import InferenceRESTClient, RESTConfig, InferRequest, InferInput

host, token, model = sys.argv[1], sys.argv[2], sys.argv[3]
auth = {"Authorization": token}  # copied where a client adds its own headers to the dict
x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [4.9, 3.0, 1.4, 0.2]], dtype=np.float32)
want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

def same(name, got):
    ok = got.shape == want.shape and got.dtype == want.dtype and np.allclose(got, want, rtol=0, atol=1e-6)
    print("%s\t%s" % (name, "same" if ok else "differs: %r vs %r" % (got, want)))

client = triton.InferenceServerClient(url=host)
print("triton_live\t%s" % client.is_server_live())
print("triton_ready\t%s" % client.is_server_ready())
meta = client.get_server_metadata()
print("triton_server\t%s %s" % (meta["name"], meta["extensions"]))
print("triton_model_ready\t%s" % client.is_model_ready("mlp", headers=auth))
print("triton_model_ready_without_token\t%s" % client.is_model_ready("mlp"))
m = client.get_model_metadata("mlp", model_version="1", headers=auth)
print("triton_metadata\t%s %s %s %s" % (m["name"], m["versions"], m["platform"], m["inputs"]))

def triton_infer(binary_in, outputs, token=token, **kw):
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    return client.infer("mlp", [inp], outputs=outputs, headers={"Authorization": token}, **kw)

r = triton_infer(False, [triton.InferRequestedOutput("y", binary_data=False)], request_id="t-json")
same("triton_json", r.as_numpy("y"))
print("triton_json_id\t%s" % r.get_response()["id"])
r = triton_infer(True, None, model_version="1")
same("triton_binary", r.as_numpy("y"))
r = triton_infer(True, [triton.InferRequestedOutput("y", binary_data=False)])
same("triton_binary_in_json_out", r.as_numpy("y"))
r = triton_infer(False, [triton.InferRequestedOutput("y", binary_data=True)])
same("triton_json_in_binary_out", r.as_numpy("y"))
for name, kw in [("triton_wrong_token", {"token": "wrong"}), ("triton_wrong_version", {"model_version": "2"})]:
    try:
        triton_infer(True, None, **kw)
        print("%s\tno error" % name)
    except InferenceServerException as e:
        print("%s\t%s %s" % (name, e.status(), e.message()))
try:
    inp = triton.InferInput("x", list(x.shape), "FP64")
    inp.set_data_from_numpy(x.astype(np.float64), binary_data=True)
    client.infer("mlp", [inp], headers=dict(auth))
    print("triton_wrong_datatype\tno error")
except InferenceServerException as e:
    print("triton_wrong_datatype\t%s %s" % (e.status(), e.message()))

async def kserve_checks():
    base = "http://" + host
    async with InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=60)) as c:
        print("kserve_live\t%s" % await c.is_server_live(base))
        print("kserve_ready\t%s" % await c.is_server_ready(base))
        print("kserve_model_ready\t%s" % await c.is_model_ready(base, "mlp", headers=dict(auth)))
        for binary in (False, True):
            inp = InferInput(name="x", shape=list(x.shape), datatype="FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            params = {"binary_data_output": True} if binary else None
            req = InferRequest(model_name="mlp", infer_inputs=[inp], request_id="k-%s" % binary, parameters=params)
            res = await c.infer(base, req, model_name="mlp", headers=dict(auth))
            name = "kserve_binary" if binary else "kserve_json"
            same(name, res.outputs[0].as_numpy())
            print("%s_id\t%s %s" % (name, res.id, res.model_name))
        inp = InferInput(name="x", shape=list(x.shape), datatype="FP32")
        inp.set_data_from_numpy(x, binary_data=False)
        try:
            await c.infer(base, InferRequest(model_name="mlp", infer_inputs=[inp]), model_name="mlp", headers={"Authorization": "wrong"})
            print("kserve_wrong_token\tno error")
        except httpx.HTTPStatusError as e:
            print("kserve_wrong_token\t%s %s" % (e.response.status_code, e.response.json()["error"]))

asyncio.run(kserve_checks())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_triton_and_kserve_clients_should_get_onnxruntime_outputs() {
    let test = "the_real_triton_and_kserve_clients_should_get_onnxruntime_outputs";
    let Some(python) = std::env::var_os("EAS_OIP_PYTHON").filter(|p| !p.is_empty()) else {
        return skip(
            test,
            "EAS_OIP_PYTHON is not set (a Python with tritonclient[http], kserve, onnxruntime)",
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
        CLIENTS,
        vec![host.into(), TOKEN.into(), model.into()],
        "the clients",
    )
    .await;
    let result = |name: &str| printed.get(name);
    for name in [
        "triton_live",
        "triton_ready",
        "triton_model_ready",
        "kserve_live",
        "kserve_ready",
        "kserve_model_ready",
    ] {
        assert_eq!(result(name), "True", "{name}");
    }
    assert_eq!(result("triton_model_ready_without_token"), "False");
    assert_eq!(result("triton_server"), "eas ['binary_tensor_data']");
    assert_eq!(
        result("triton_metadata"),
        "mlp ['1'] onnxruntime [{'name': 'x', 'datatype': 'FP32', 'shape': [-1, 4]}]"
    );
    for name in [
        "triton_json",
        "triton_binary",
        "triton_binary_in_json_out",
        "triton_json_in_binary_out",
        "kserve_json",
        "kserve_binary",
    ] {
        assert_eq!(result(name), "same", "{name}");
    }
    assert_eq!(result("triton_json_id"), "t-json");
    assert_eq!(result("kserve_json_id"), "k-False mlp");
    assert_eq!(result("kserve_binary_id"), "k-True mlp");
    let wrong = result("triton_wrong_token");
    assert!(wrong.starts_with("401 unauthorized"), "{wrong}");
    let wrong = result("triton_wrong_version");
    assert!(
        wrong.starts_with("404 ") && wrong.contains("no version `2`"),
        "{wrong}"
    );
    let wrong = result("triton_wrong_datatype");
    assert!(
        wrong.starts_with("400 ") && wrong.contains("FP64"),
        "{wrong}"
    );
    let wrong = result("kserve_wrong_token");
    assert!(wrong.starts_with("401 unauthorized"), "{wrong}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_group_should_split_oip_requests_and_versions_should_follow_releases() {
    let test = "a_group_should_split_oip_requests_and_versions_should_follow_releases";
    let group = || json!({"metadata": {"name": "x", "instance": 1, "cpu": 1, "group": "mlps"}});
    let member = |name: &str| {
        let mut spec = group();
        spec["metadata"]["name"] = json!(name);
        mlp(name, json!({}), json!({"metadata": spec["metadata"]}))
    };
    let Some(server) = serve(test, vec![member("one"), member("two")]).await else {
        return;
    };
    for name in ["one", "two"] {
        server
            .control()
            .release(name, 500, "grouping")
            .await
            .expect("released");
    }
    let body = serde_json::to_vec(&json!({"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW_A}]}))
    .expect("json");
    let mut served = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let answer = infer(&server, "mlps", body.clone(), None).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let json = answer.json();
        assert_close(&floats(&json["outputs"][0]["data"]), &Y_A, "via the group");
        assert_eq!(json["model_version"], "1");
        *served
            .entry(json["model_name"].as_str().unwrap_or("").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(served.get("one"), Some(&5), "{served:?}");
    assert_eq!(served.get("two"), Some(&5), "{served:?}");

    // Version 2 of `one` (a new cpu count makes new instances): its answers say so, and its
    // metadata lists the version it runs.
    server
        .control()
        .update("one", |spec| {
            spec["metadata"]["cpu"] = json!(2);
            Ok(())
        })
        .await
        .expect("updated");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = server.control().describe("one").expect("described");
        let all_new = view.replicas.iter().all(|r| r.version() == 2);
        if view.rollout.is_none() && all_new && !view.replicas.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not rolled out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = infer(&server, "one", body.clone(), None).await;
    assert_eq!(answer.json()["model_version"], "2");
    let metadata = get(&server, "/v2/models/one", Some(TOKEN)).await.json();
    assert_eq!(metadata["versions"], json!(["2"]), "{metadata}");
    get(&server, "/v2/models/one/versions/1", Some(TOKEN))
        .await
        .assert_error(404, "runs 2", "version 1 is gone");
    server.shutdown().await;
}
