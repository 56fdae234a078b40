//! Test support: a real S3-compatible server (`moto_server`) on loopback, a counting store
//! wrapper, small HTTP servers, and the skip rule.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of the support

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use eas_storage::Credentials;
use eas_storage::location::{BucketLocation, Source};
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Prints `SKIPPED: <test>: <why>`, or panics when `EAS_REQUIRE_ALL=1`.
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("EAS_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test}: {why} (EAS_REQUIRE_ALL=1)"
    );
    eprintln!("SKIPPED: {test}: {why}");
}

/// The credentials the tests sign with (moto accepts any unless auth is enforced).
pub fn credentials() -> Credentials {
    Credentials::new("test-key", "test-secret")
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `moto_server` on a free loopback port; killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto from `EAS_PYTHON`'s venv; `None` (after printing SKIPPED) when absent.
    pub async fn start(test: &str) -> Option<Self> {
        let Some(binary) = std::env::var_os("EAS_PYTHON")
            .map(PathBuf::from)
            .and_then(|p| p.parent().map(|d| d.join("moto_server")))
            .filter(|p| p.is_file())
        else {
            skip(
                test,
                "moto_server not found next to $EAS_PYTHON (`source scripts/test-env.sh` sets it)",
            );
            return None;
        };
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get(&moto.endpoint).send().await.is_ok() {
                return Some(moto);
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a bucket (unsigned PUT, as moto allows).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.status()
        );
    }

    /// From now on, moto refuses requests signed with keys it does not know.
    pub async fn enforce_auth(&self) {
        let response = reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            .header("content-type", "text/plain")
            .body("0")
            .send()
            .await
            .expect("reset-auth");
        assert!(response.status().is_success());
    }

    /// `s3://bucket/prefix` at this server.
    pub fn location(&self, bucket: &str, prefix: &str) -> BucketLocation {
        match Source::parse(&format!("s3://{bucket}/{prefix}"), Some(&self.endpoint)) {
            Ok(Source::Bucket(location)) => location,
            other => panic!("not a bucket: {other:?}"),
        }
    }

    /// An S3 client for `bucket`, signed with [`credentials`].
    pub fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            eas_storage::bucket::s3_store(&self.location(bucket, ""), &credentials())
                .expect("client"),
        )
    }

    /// Puts objects (through the real S3 API).
    pub async fn put(&self, bucket: &str, objects: &[(&str, &[u8])]) {
        let store = self.store(bucket);
        for (key, bytes) in objects {
            store
                .put(
                    &ObjectPath::from(*key),
                    PutPayload::from(Bytes::copy_from_slice(bytes)),
                )
                .await
                .expect("put");
        }
    }

    /// Uploads one object the way S3 clients have since 2025, with a CRC-64/NVME checksum
    /// (`x-amz-sdk-checksum-algorithm`), announcing `announced` as its value (the bytes' own
    /// CRC for an honest upload); moto keeps what is announced.
    pub async fn put_with_crc64(&self, bucket: &str, key: &str, bytes: &[u8], announced: u64) {
        use base64::Engine as _;
        use object_store::signer::{SignedUrlOptions, Signer as _};
        use reqwest::header::{HeaderName, HeaderValue};
        let value = base64::engine::general_purpose::STANDARD.encode(announced.to_be_bytes());
        let headers = [
            ("x-amz-sdk-checksum-algorithm", "CRC64NVME".to_owned()),
            ("x-amz-checksum-crc64nvme", value),
        ];
        let mut options = SignedUrlOptions::default();
        for (name, value) in &headers {
            options = options.with_signed_header(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let url = eas_storage::bucket::s3_store(&self.location(bucket, ""), &credentials())
            .unwrap()
            .signed_url_opts(
                reqwest::Method::PUT,
                &ObjectPath::from(key),
                Duration::from_secs(600),
                &options,
            )
            .await
            .unwrap();
        let mut request = reqwest::Client::new()
            .put(url)
            .body(Bytes::copy_from_slice(bytes));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("put");
        assert!(response.status().is_success(), "put: {}", response.status());
    }
}

/// Counts the GET requests (whole and ranged) that reach the wrapped store.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    /// Whole-object GETs.
    pub whole_gets: AtomicUsize,
    /// Ranged GETs.
    pub ranged_gets: AtomicUsize,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            whole_gets: AtomicUsize::new(0),
            ranged_gets: AtomicUsize::new(0),
        })
    }

    /// Every GET so far.
    pub fn gets(&self) -> usize {
        self.whole_gets.load(Ordering::SeqCst) + self.ranged_gets.load(Ordering::SeqCst)
    }
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if !options.head {
            let counter = if options.range.is_some() {
                &self.ranged_gets
            } else {
                &self.whole_gets
            };
            counter.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Serves byte blobs over HTTP at `/{name}` (GET and HEAD, with an ETag); stops on drop.
pub struct FileServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    /// Serves `files`.
    pub async fn start(files: HashMap<String, Bytes>) -> Self {
        use axum::extract::{Path, State};
        use axum::http::{StatusCode, header};
        use axum::response::IntoResponse;
        let files = Arc::new(files);
        let app =
            axum::Router::new()
                .route(
                    "/{name}",
                    axum::routing::get(
                        |State(files): State<Arc<HashMap<String, Bytes>>>,
                         Path(name): Path<String>| async move {
                            match files.get(&name) {
                                Some(bytes) => {
                                    let etag =
                                        format!("\"{:08x}\"", eas_storage::verify::crc32c(bytes));
                                    ([(header::ETAG, etag)], bytes.clone()).into_response()
                                }
                                None => StatusCode::NOT_FOUND.into_response(),
                            }
                        },
                    ),
                )
                .with_state(files);
        serve(app).await
    }
}

/// Serves `app` on a free loopback port.
pub async fn serve(app: axum::Router) -> FileServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FileServer { base, task }
}

/// A server that announces `announced` bytes, sends `sent` of them, and hangs up.
pub async fn truncating_server(announced: usize, sent: &'static [u8]) -> FileServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {announced}\r\nconnection: close\r\n\r\n"
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(sent).await;
            let _ = socket.shutdown().await;
        }
    });
    FileServer { base, task }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}
