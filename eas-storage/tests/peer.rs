//! The memory cache and its peer protocol: three instances, the second and third read from
//! the first's memory over HTTP; a corrupted peer answer is detected and refetched from the
//! store; the endpoint serves only requests that carry the deployment's secret.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use eas_core::StorageMount;
use eas_core::storage::MountMode;
use eas_storage::cache::CachedObject;
use eas_storage::peer::PeerSecret;
use eas_storage::{BucketMount, MemoryCache, TransferOptions};
use support::{CountingStore, Moto, bytes};

struct Instance {
    cache: Arc<MemoryCache>,
    store: Arc<CountingStore>,
    mount: BucketMount,
    _dir: tempfile::TempDir,
}

/// The secret the instances of these tests share.
fn secret() -> PeerSecret {
    PeerSecret::new("0f8e3c2b9a7d4e5f8a1b2c3d4e5f6a7b").expect("a valid secret")
}

fn instance(moto: &Moto, peers: &[String]) -> Instance {
    instance_with(moto, peers, secret())
}

fn instance_with(moto: &Moto, peers: &[String], secret: PeerSecret) -> Instance {
    let cache = Arc::new(
        MemoryCache::new(64 << 20)
            .with_peers(peers.iter().cloned())
            .with_peer_secret(secret),
    );
    let store = CountingStore::new(moto.store("models"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = BucketMount::builder(moto.location("models", "m/"), dir.path())
        .store(Arc::clone(&store) as Arc<dyn object_store::ObjectStore>)
        .options(TransferOptions::default().with_part_size(1 << 20))
        .cache(Arc::clone(&cache))
        .build()
        .expect("mount");
    Instance {
        cache,
        store,
        mount,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_and_third_instances_should_read_from_the_first_ones_memory() {
    let big = bytes(3 << 20, 5);
    let Some(moto) =
        Moto::start("second_and_third_instances_should_read_from_the_first_ones_memory").await
    else {
        return;
    };
    moto.create_bucket("models").await;
    moto.put(
        "models",
        &[("m/model.onnx", &big), ("m/config.json", b"{}")],
    )
    .await;

    let first = instance(&moto, &[]);
    let first_server = support::serve(eas_storage::peer::router(Arc::clone(&first.cache))).await;
    first
        .mount
        .mount(MountMode::Eager, None)
        .await
        .expect("first mount");
    assert_eq!(
        first.cache.stats().objects,
        2,
        "the first instance keeps both files in memory"
    );
    let first_gets = first.store.gets();
    assert!(first_gets >= 2, "the first instance read the store");

    let peers = vec![first_server.base.clone()];
    for name in ["second", "third"] {
        let other = instance(&moto, &peers);
        let report = other.mount.mount(MountMode::Eager, None).await.expect(name);
        assert_eq!(report.fetched_bytes, big.len() as u64 + 2, "{name}");
        assert_eq!(other.store.gets(), 0, "{name}: no GET reached the store");
        assert_eq!(
            other.cache.stats().peer_hits,
            2,
            "{name}: both files from the peer"
        );
        assert_eq!(
            &other.mount.read("model.onnx").await.expect("read")[..],
            &big[..],
            "{name}"
        );
    }
    // A lazy read served by the peer lands in memory at once; the file follows on disk.
    let lazy = instance(&moto, &peers);
    let got = lazy.mount.read("model.onnx").await.expect("lazy read");
    assert_eq!(&got[..], &big[..], "lazy read from the peer");
    assert_eq!(lazy.store.gets(), 0, "lazy: no GET reached the store");
    let on_disk = lazy._dir.path().join("model.onnx");
    for _ in 0..200 {
        if std::fs::read(&on_disk).is_ok_and(|b| b == big) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read(&on_disk).expect("kept on disk in the background"),
        big
    );
    assert_eq!(
        first.cache.stats().hits,
        5,
        "the first cache answered two peers twice, then the lazy reader"
    );
    assert_eq!(
        first.store.gets(),
        first_gets,
        "the first instance did not go back to the store"
    );
    // An instance of another deployment (another secret) is refused and reads the store.
    let stranger = instance_with(
        &moto,
        &peers,
        PeerSecret::new("another-deployment").expect("valid"),
    );
    let got = stranger
        .mount
        .read("model.onnx")
        .await
        .expect("stranger read");
    assert_eq!(
        &got[..],
        &big[..],
        "the stranger's bytes come from the store"
    );
    let stats = stranger.cache.stats();
    assert_eq!(
        (stats.peer_hits, stats.peer_corrupt),
        (0, 0),
        "refused, not corrupt"
    );
    assert!(stranger.store.gets() > 0, "the stranger read the store");
    assert_eq!(
        first.cache.stats().hits,
        5,
        "the refused ask never reached the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_peer_answer_should_be_detected_and_refetched_from_the_store() {
    let content = bytes(200_000, 9);
    let Some(moto) =
        Moto::start("a_corrupted_peer_answer_should_be_detected_and_refetched_from_the_store")
            .await
    else {
        return;
    };
    moto.create_bucket("models").await;
    moto.put("models", &[("m/model.onnx", &content)]).await;
    let etag = moto
        .store("models")
        .head(&"m/model.onnx".into())
        .await
        .expect("head")
        .e_tag;

    // A faulty peer: right headers (size, ETag, the CRC-32C of the true bytes), one flipped byte.
    let honest = CachedObject {
        bytes: Bytes::from(content.clone()),
        etag,
        crc32c: eas_storage::verify::crc32c(&content),
    };
    let faulty = axum::Router::new().route(
        eas_storage::peer::PATH,
        axum::routing::get(move || {
            let mut object = honest.clone();
            let mut flipped = object.bytes.to_vec();
            flipped[1234] ^= 0x01;
            object.bytes = Bytes::from(flipped);
            async move { eas_storage::peer::answer(&object) }
        }),
    );
    let faulty = support::serve(faulty).await;

    let reader = instance(&moto, std::slice::from_ref(&faulty.base));
    let got = reader.mount.read("model.onnx").await.expect("read");
    assert_eq!(&got[..], &content[..], "the true bytes, from the store");
    let stats = reader.cache.stats();
    assert_eq!(
        (stats.peer_corrupt, stats.peer_hits),
        (1, 0),
        "the peer answer was refused"
    );
    assert_eq!(
        reader.store.whole_gets.load(Ordering::SeqCst),
        1,
        "refetched from the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_should_serve_only_requests_with_the_deployment_secret() {
    let cache = Arc::new(MemoryCache::new(1 << 20).with_peer_secret(secret()));
    cache.insert(
        "s3://models/m/model.onnx",
        Bytes::from_static(b"weights"),
        None,
    );
    let server = support::serve(eas_storage::peer::router(Arc::clone(&cache))).await;
    let client = reqwest::Client::new();
    let url = format!("{}{}", server.base, eas_storage::peer::PATH);
    let get = |key: &str, authorization: Option<&str>| {
        let mut request = client.get(&url).query(&[("key", key)]);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        async move {
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            let challenge = response.headers().get("www-authenticate").cloned();
            let body = response.text().await.expect("body");
            (status, challenge, body)
        }
    };
    let key = "s3://models/m/model.onnx";
    let right = "Bearer 0f8e3c2b9a7d4e5f8a1b2c3d4e5f6a7b";
    for (authorization, why) in [
        (None, "missing credential"),
        (
            Some("Bearer 0f8e3c2b9a7d4e5f8a1b2c3d4e5f6a7c"),
            "wrong cache secret",
        ),
        (
            Some("Bearer 0f8e3c2b9a7d4e5f8a1b2c3d4e5f6a7"),
            "wrong cache secret",
        ),
        // (HTTP drops the trailing space: the server sees a bare `Bearer`.)
        (Some("Bearer "), "expected `Authorization: Bearer"),
        (
            Some("Basic 0f8e3c2b9a7d4e5f8a1b2c3d4e5f6a7b"),
            "expected `Authorization: Bearer",
        ),
        (
            Some("0f8e3c2b9a7d4e5f8a1b2c3d4e5f6a7b"),
            "expected `Authorization: Bearer",
        ),
    ] {
        let (status, challenge, body) = get(key, authorization).await;
        assert_eq!(status, 401, "{authorization:?}");
        assert!(
            challenge.is_some(),
            "{authorization:?}: a WWW-Authenticate challenge"
        );
        assert!(body.contains(why), "{authorization:?}: {body}");
        assert!(
            !body.contains("weights"),
            "{authorization:?}: no body bytes"
        );
    }
    // A refused request does not even reach the cache (no hit, no miss, no LRU touch).
    let (status, _, _) = get("no-such-key", None).await;
    assert_eq!(
        status, 401,
        "a refused miss is a 401 too: nothing is learnt"
    );
    assert_eq!((cache.stats().hits, cache.stats().misses), (0, 0));

    let (status, _, body) = get(key, Some(right)).await;
    assert_eq!((status, body.as_str()), (200, "weights"));
    let (status, ..) = get(key, Some("bearer 0f8e3c2b9a7d4e5f8a1b2c3d4e5f6a7b")).await;
    assert_eq!(status, 200, "the scheme is case-insensitive");
    // The key is only ever looked up in memory: no path is read.
    for key in [
        "../../../../etc/passwd",
        "/etc/passwd",
        "file:///etc/passwd",
    ] {
        let (status, _, body) = get(key, Some(right)).await;
        assert_eq!(status, 404, "{key}: {body}");
    }

    // A cache without a secret shares with no one.
    let closed = Arc::new(MemoryCache::new(1 << 20));
    closed.insert(key, Bytes::from_static(b"weights"), None);
    let closed = support::serve(eas_storage::peer::router(closed)).await;
    let response = client
        .get(format!("{}{}", closed.base, eas_storage::peer::PATH))
        .query(&[("key", key)])
        .header("authorization", right)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 403);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("started without a cache secret")
    );
}

#[test]
fn secrets_should_be_visible_ascii_and_never_printed() {
    for bad in ["", "has space", "tab\there", "line\nbreak", "caf\u{e9}"] {
        let err = PeerSecret::new(bad).expect_err(bad);
        assert!(bad.is_empty() || !err.to_string().contains(bad), "{err}");
    }
    assert!(PeerSecret::new("x".repeat(1025)).is_err(), "too long");
    let secret: PeerSecret = "s3cr3t-!~".parse().expect("valid");
    assert_eq!(format!("{secret:?}"), "PeerSecret(***)");
    assert!(secret.matches(b"s3cr3t-!~"));
    assert!(!secret.matches(b"s3cr3t-!"));
    assert!(!secret.matches(b"s3cr3t-!~~"));
    let cache = MemoryCache::new(1).with_peer_secret(secret);
    assert!(
        format!("{cache:?}").contains("PeerSecret(***)"),
        "{cache:?}"
    );
    assert!(!format!("{cache:?}").contains("s3cr3t"), "{cache:?}");
}

use object_store::ObjectStoreExt as _;
