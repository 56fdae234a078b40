//! The memory cache and its peer protocol: three instances, the second and third read from
//! the first's memory over HTTP; a corrupted peer answer is detected and refetched from the
//! store.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use eas_core::StorageMount;
use eas_core::storage::MountMode;
use eas_storage::cache::CachedObject;
use eas_storage::{BucketMount, MemoryCache, TransferOptions};
use support::{CountingStore, Moto, bytes};

struct Instance {
    cache: Arc<MemoryCache>,
    store: Arc<CountingStore>,
    mount: BucketMount,
    _dir: tempfile::TempDir,
}

fn instance(moto: &Moto, peers: &[String]) -> Instance {
    let cache = Arc::new(MemoryCache::new(64 << 20).with_peers(peers.iter().cloned()));
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

use object_store::ObjectStoreExt as _;
