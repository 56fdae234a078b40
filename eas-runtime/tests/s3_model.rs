//! A model on an S3-compatible server (moto on loopback): the server fetches it before the
//! instance starts and serves it; a second server of the same service (and the same cache
//! secret) gets the model from the first one's memory cache (a peer hit) instead of the store;
//! a request without the secret gets nothing from that cache.

#[path = "support/require.rs"]
mod require;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, RunningPlatform};
use eas_storage::Credentials;
use eas_storage::peer::PeerSecret;
use require::skip;
use serde_json::json;

/// `moto_server` on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto(test: &str) -> Option<Moto> {
    let binary = std::env::var_os("EAS_PYTHON")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(|d| d.join("moto_server")))
        .filter(|p| p.is_file());
    let Some(binary) = binary else {
        skip(test, "moto_server not found next to $EAS_PYTHON");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(&moto.endpoint).await.is_err() {
        assert!(Instant::now() < deadline, "moto did not answer in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(moto)
}

/// The cache secret both servers share.
const CACHE_SECRET: &str = "5d0c8e9b2f4a4c1e8b7a6f3d2c1b0a99";

async fn start(spec: ServiceSpec, work: &Path, peers: Vec<String>) -> RunningPlatform {
    let server = Platform::builder()
        .service(spec)
        .work_dir(work)
        .memory_cache(64 << 20)
        .storage_credentials(Credentials::new("test-key", "test-secret"))
        .cache_peers(peers)
        .cache_secret(PeerSecret::new(CACHE_SECRET).expect("a valid secret"))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect("server starts");
    assert!(server.wait_ready(Duration::from_secs(30)).await, "ready");
    server
}

async fn predict(server: &RunningPlatform) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("http://{}/api/predict/remote", server.local_addr()))
        .header("Authorization", "t")
        .header("Content-Type", "application/json")
        .body(r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}}"#)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_on_s3_should_be_served_and_shared_with_a_peer() {
    let test = "a_model_on_s3_should_be_served_and_shared_with_a_peer";
    if let Err(e) = eas_runtime::onnx::runtime() {
        return skip(test, &format!("no ONNX Runtime library: {e}"));
    }
    let Some(moto) = moto(test).await else { return };
    let client = reqwest::Client::new();
    let model =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/mlp.onnx"))
            .expect("example model");
    // Unsigned PUTs: moto creates the bucket and object (private; reads must be signed).
    for (path, body) in [
        ("/models", Vec::new()),
        ("/models/mlp/v1/mlp.onnx", model.clone()),
    ] {
        let status = client
            .put(format!("{}{path}", moto.endpoint))
            .body(body)
            .send()
            .await
            .expect("put")
            .status();
        assert!(status.is_success(), "PUT {path}: {status}");
    }
    let spec = ServiceSpec::from_json_value(json!({
        "metadata": {"name": "remote", "instance": 1},
        "processor": "onnx",
        "model_path": "oss://models/mlp/v1/",
        "oss_endpoint": moto.endpoint,
        "model_entry": "mlp.onnx",
        "token": "t",
    }))
    .expect("valid spec");

    let dir = tempfile::tempdir().expect("tempdir");
    let first = start(spec.clone(), &dir.path().join("a"), Vec::new()).await;
    let y = &predict(&first).await["outputs"]["y"]["data"][0];
    assert!((y.as_f64().expect("number") - 0.338158).abs() < 1e-5, "{y}");
    assert!(
        dir.path().join("a/remote").exists(),
        "fetched under the work dir"
    );

    let peer = format!("http://{}", first.local_addr());
    // Anyone who reaches the public port but lacks the secret gets a 401 and no model bytes.
    let key = "oss://models/mlp/v1/mlp.onnx";
    let endpoint = format!("{peer}{}", eas_storage::peer::PATH);
    let hits_before = first.cache().expect("a cache").stats().hits;
    for authorization in [None, Some("Bearer not-the-secret")] {
        let mut request = client.get(&endpoint).query(&[("key", key)]);
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let response = request.send().await.expect("sent");
        assert_eq!(response.status().as_u16(), 401, "{authorization:?}");
        let body = response.bytes().await.expect("body");
        assert!(
            body.len() < 200,
            "{authorization:?}: a reason, not the model"
        );
    }
    assert_eq!(
        first.cache().expect("a cache").stats().hits,
        hits_before,
        "refused requests never reach the cache"
    );
    let response = client
        .get(&endpoint)
        .query(&[("key", key)])
        .header("Authorization", format!("Bearer {CACHE_SECRET}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200, "the secret opens it");
    assert_eq!(response.bytes().await.expect("body"), model);
    let second = start(spec, &dir.path().join("b"), vec![peer]).await;
    let stats = second.cache().expect("a cache").stats();
    assert!(
        stats.peer_hits >= 1,
        "the model came from the first server's memory: {stats:?}"
    );
    let y = &predict(&second).await["outputs"]["y"]["data"][0];
    assert!((y.as_f64().expect("number") - 0.338158).abs() < 1e-5, "{y}");
    second.shutdown().await;
    first.shutdown().await;
}
