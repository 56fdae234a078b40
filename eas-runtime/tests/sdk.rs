//! The real `eas-prediction` Python SDK against a running server: `PredictClient` with a
//! token (so every request is HMAC-signed), `StringRequest` to `echo`, `OnnxRequest` to
//! `onnx`, the direct (service discovery) endpoint mode, and a wrong token.
//!
//! Needs `EAS_SDK_PYTHON` (a Python with `eas-prediction` 0.36 and numpy) and, for the ONNX
//! part, the ONNX Runtime library (`ORT_DYLIB_PATH` or `EAS_PYTHON`). Without them the test
//! prints `SKIPPED: ...`, or fails when `EAS_REQUIRE_ALL=1`.

#[path = "support/python_client.rs"]
mod python_client;
#[path = "support/require.rs"]
mod require;

use std::path::Path;
use std::time::Duration;

use eas_core::spec::ServiceSpec;
use eas_runtime::platform::Platform;
use require::skip;
use serde_json::json;

const TOKEN: &str = "c2RrLXRlc3QtdG9rZW4tZm9yLWVhcy1wcmVkaWN0aW9u";

/// Runs every SDK call and prints one line per check: `name<TAB>result`.
const CLIENT: &str = r#"
import sys
import numpy as np
from eas_prediction import PredictClient, StringRequest, OnnxRequest, OnnxDataHelper
from eas_prediction import ENDPOINT_TYPE_DIRECT
from eas_prediction.exception import PredictException

endpoint, token = sys.argv[1], sys.argv[2]

echo = PredictClient(endpoint, 'echo')
echo.set_token(token)
echo.init()
print('echo\t' + echo.predict(StringRequest('hello eas')).response_data.decode())
print('echo_binary\t' + echo.predict(StringRequest(b'\x00\x01\xfe'.decode('latin-1'))).response_data.hex())

direct = PredictClient(endpoint, 'echo')
direct.set_endpoint_type(ENDPOINT_TYPE_DIRECT)
direct.set_token(token)
direct.init()
print('direct\t' + direct.predict(StringRequest('via discovery')).response_data.decode())

mlp = PredictClient(endpoint, 'mlp')
mlp.set_token(token)
mlp.init()
req = OnnxRequest()
x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
req.add_tensor(OnnxDataHelper.from_array(x, 'x'))
resp = mlp.predict(req)
y = OnnxDataHelper.to_array(resp.get_tensor(0))
print('onnx\t%s %s %s' % (resp.get_name(0), list(y.shape), ' '.join('%.5f' % v for v in y.reshape(-1))))

wrong = PredictClient(endpoint, 'echo')
wrong.set_token('not-the-token')
wrong.init()
try:
    wrong.predict(StringRequest('x'))
    print('wrong_token\tno error')
except PredictException as e:
    print('wrong_token\t%d %s' % (e.code, e.message))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_sdk_should_get_correct_answers_with_hmac_signed_requests() {
    let test = "the_real_sdk_should_get_correct_answers_with_hmac_signed_requests";
    let Ok(python) = std::env::var("EAS_SDK_PYTHON") else {
        return skip(
            test,
            "EAS_SDK_PYTHON is not set (a Python with eas-prediction)",
        );
    };
    if let Err(e) = eas_runtime::onnx::runtime() {
        return skip(test, &format!("no ONNX Runtime library: {e}"));
    }
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models");
    let spec = |doc: serde_json::Value| ServiceSpec::from_json_value(doc).expect("valid spec");
    let server = Platform::builder()
        .service(spec(json!({
            "metadata": {"name": "echo", "instance": 2},
            "processor": "echo", "model_path": ".", "token": TOKEN,
        })))
        .service(spec(json!({
            "metadata": {"name": "mlp", "instance": 1, "cpu": 1,
                         "rpc": {"batching": true, "max_batch_size": 8, "max_batch_timeout": 5}},
            "processor": "onnx", "model_path": models.to_string_lossy(),
            "model_entry": "mlp.onnx", "token": TOKEN,
        })))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(30)).await, "ready");

    let endpoint = format!("http://{}", server.local_addr());
    let printed = python_client::run(
        python.into(),
        CLIENT,
        vec![endpoint.into(), TOKEN.into()],
        "the SDK client",
    )
    .await;
    let result = |name: &str| printed.get(name);
    assert_eq!(result("echo"), "hello eas");
    assert_eq!(
        result("echo_binary"),
        "0001c3be",
        "latin-1 text sent as UTF-8 by the SDK"
    );
    assert_eq!(result("direct"), "via discovery");
    // onnxruntime 1.31.1 in Python gives these (examples/models/README.md).
    assert_eq!(
        result("onnx"),
        "y [2, 3] 0.33816 0.27547 0.38637 0.37047 0.26244 0.36709"
    );
    let wrong = result("wrong_token");
    assert!(wrong.starts_with("401 "), "{wrong}");
    assert!(wrong.contains("signature does not match"), "{wrong}");
    server.shutdown().await;
}
