//! The edge's routing and refusals that need no socket, through `Router::oneshot`: unknown
//! routes and services (404), the wrong method (405), a body over the limit (413), a missing
//! or wrong token (401), and an answer for a right one.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use eas_core::spec::ServiceSpec;
use eas_runtime::admission::BodyLimits;
use eas_runtime::http::Edge;
use eas_runtime::metrics::Metrics;
use eas_runtime::registry::ProcessorRegistry;
use eas_runtime::service::{LocalPaths, Service};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

async fn router() -> axum::Router {
    let spec = ServiceSpec::from_json_str(
        r#"{"metadata": {"name": "echo", "instance": 1}, "processor": "echo",
            "model_path": ".", "token": "t"}"#,
    )
    .expect("spec");
    let metrics = Arc::new(Metrics::new());
    let service = Service::start(
        spec,
        &ProcessorRegistry::with_builtins(),
        &LocalPaths::new(),
        Arc::clone(&metrics),
    )
    .expect("service starts");
    let mut body = BodyLimits::default();
    body.max_bytes = 16;
    let edge = Arc::new(Edge::new(vec![service], metrics, body).expect("edge"));
    for _ in 0..500 {
        if edge.is_ready() {
            return edge.router();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("echo never became ready");
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn post(path: &str, token: Option<&str>, body: &'static str) -> Request<Body> {
    let mut request = Request::post(path);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    request.body(Body::from(body)).expect("request")
}

#[tokio::test]
async fn each_refusal_should_get_its_status_and_reason_without_a_socket() {
    let router = router().await;

    let (status, body) = call(&router, post("/nowhere", Some("t"), "x")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = call(&router, post("/api/predict/nope", Some("t"), "x")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("no service named `nope`"), "{body}");

    let get = Request::get("/api/predict/echo")
        .header("authorization", "t")
        .body(Body::empty())
        .expect("request");
    let (status, body) = call(&router, get).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");

    let (status, body) = call(
        &router,
        post("/api/predict/echo", Some("t"), "seventeen bytes!!"),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("16 bytes"), "{body}");

    let (status, body) = call(&router, post("/api/predict/echo", None, "x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("missing Authorization"), "{body}");

    let (status, body) = call(&router, post("/api/predict/echo", Some("wrong"), "x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let (status, body) = call(&router, post("/api/predict/echo", Some("t"), "hello")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
}

#[tokio::test]
async fn a_wrong_token_should_be_refused_before_the_body_is_read() {
    let router = router().await;
    // A body that never ends: were it read before the token is checked, this would hang.
    let (_tx, rx) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>(1);
    let mut rx = rx;
    let endless =
        http_body_util::StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let request = Request::post("/api/predict/echo")
        .header("authorization", "wrong")
        .body(Body::new(endless))
        .expect("request");
    let answered = tokio::time::timeout(Duration::from_secs(5), call(&router, request)).await;
    let (status, body) = answered.expect("refused without waiting for the body");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}
