//! `BucketMount` against a real S3-compatible server (moto) on loopback.

mod support;

use std::sync::Arc;

use eas_core::StorageMount;
use eas_core::storage::{MountMode, TransferProgress};
use eas_storage::{BucketMount, Error, TransferOptions};
use support::{CountingStore, Moto, bytes, credentials};

async fn moto_with(test: &str, objects: &[(&str, &[u8])]) -> Option<Moto> {
    let moto = Moto::start(test).await?;
    moto.create_bucket("models").await;
    moto.put("models", objects).await;
    Some(moto)
}

fn mount(moto: &Moto, prefix: &str, target: &std::path::Path) -> BucketMount {
    BucketMount::builder(moto.location("models", prefix), target)
        .credentials(credentials())
        .build()
        .expect("mount")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_mount_should_pass_the_storage_conformance_suite() {
    let big = bytes(3 << 20, 1);
    let files: [(&str, &[u8]); 3] = [
        ("model.onnx", b"onnx!"),
        ("tok/vocab.txt", &[9u8; 1000]),
        ("weights.bin", &big),
    ];
    let objects: Vec<(String, &[u8])> = files
        .iter()
        .map(|(k, v)| (format!("resnet/{k}"), *v))
        .collect();
    let objects: Vec<(&str, &[u8])> = objects.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let Some(moto) = moto_with(
        "bucket_mount_should_pass_the_storage_conformance_suite",
        &objects,
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TransferOptions::default().with_part_size(1 << 20);
    let mount = BucketMount::builder(moto.location("models", "resnet/"), dir.path().join("m"))
        .credentials(credentials())
        .options(options)
        .build()
        .expect("mount");
    eas_core::conformance::storage_mount(&mount, &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_objects_should_be_listed_with_size_and_etag() {
    let Some(moto) = moto_with(
        "put_objects_should_be_listed_with_size_and_etag",
        &[
            ("p/a.bin", b"abc"),
            ("p/d/b.bin", b"hello"),
            ("other/c", b"x"),
        ],
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let listed = mount(&moto, "p", dir.path()).list().await.expect("list");
    let paths: Vec<(&str, u64)> = listed.iter().map(|o| (o.path.as_str(), o.size)).collect();
    assert_eq!(paths, vec![("a.bin", 3), ("d/b.bin", 5)]);
    assert_eq!(
        listed[0].etag.as_deref(),
        Some("\"900150983cd24fb0d6963f7d28e17f72\""),
        "moto's ETag is the MD5"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_mount_should_fetch_every_file_and_report_progress() {
    let Some(moto) = moto_with(
        "eager_mount_should_fetch_every_file_and_report_progress",
        &[("m/a.bin", &bytes(100_000, 2)), ("m/b/c.bin", b"ccc")],
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let events = std::sync::Mutex::new(Vec::new());
    let sink = |p: &TransferProgress| events.lock().expect("lock").push(p.clone());
    let report = mount(&moto, "m/", dir.path())
        .mount(MountMode::Eager, Some(&sink))
        .await
        .expect("mount");
    assert_eq!(
        (
            report.files,
            report.bytes,
            report.fetched_bytes,
            report.reused_files
        ),
        (2, 100_003, 100_003, 0)
    );
    assert_eq!(
        std::fs::read(dir.path().join("a.bin")).expect("a"),
        bytes(100_000, 2)
    );
    assert_eq!(
        std::fs::read(dir.path().join("b/c.bin")).expect("c"),
        b"ccc"
    );
    let last = events
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("progress reported");
    assert_eq!(
        (last.bytes_done, last.bytes_total),
        (100_003, Some(100_003))
    );
    assert_eq!(last.eta(), Some(std::time::Duration::ZERO));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".eas-partial"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_mount_should_fetch_a_file_on_first_read_only() {
    let Some(moto) = moto_with(
        "lazy_mount_should_fetch_a_file_on_first_read_only",
        &[("m/a.bin", b"aaa"), ("m/b.bin", b"bbb")],
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let m = mount(&moto, "m/", dir.path());
    let report = m.mount(MountMode::Lazy, None).await.expect("mount");
    assert_eq!((report.files, report.fetched_bytes), (2, 0));
    assert!(!dir.path().join("a.bin").exists(), "nothing fetched yet");
    assert_eq!(&m.read("a.bin").await.expect("read")[..], b"aaa");
    assert!(
        dir.path().join("a.bin").is_file(),
        "kept after the first read"
    );
    assert!(
        !dir.path().join("b.bin").exists(),
        "unread files stay remote"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_should_reuse_valid_files_after_a_restart() {
    let Some(moto) = moto_with(
        "mount_should_reuse_valid_files_after_a_restart",
        &[("m/a.bin", b"aaa"), ("m/b.bin", b"bbb")],
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    mount(&moto, "m/", dir.path())
        .mount(MountMode::Eager, None)
        .await
        .expect("first");
    // A restart: a new mount over the same directory.
    let again = mount(&moto, "m/", dir.path())
        .mount(MountMode::Eager, None)
        .await
        .expect("again");
    assert_eq!((again.reused_files, again.fetched_bytes), (2, 0));
    // One object changes in the store: only it is fetched again.
    moto.put("models", &[("m/b.bin", b"BBBB")]).await;
    let changed = mount(&moto, "m/", dir.path())
        .mount(MountMode::Eager, None)
        .await
        .expect("changed");
    assert_eq!((changed.reused_files, changed.fetched_bytes), (1, 4));
    assert_eq!(std::fs::read(dir.path().join("b.bin")).expect("b"), b"BBBB");
    // A damaged local copy (wrong size) is fetched again too.
    std::fs::write(dir.path().join("a.bin"), b"a").expect("damage");
    let repaired = mount(&moto, "m/", dir.path())
        .mount(MountMode::Eager, None)
        .await
        .expect("repair");
    assert_eq!(repaired.fetched_bytes, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_should_come_as_parallel_ranged_reads() {
    let big = bytes(5 << 20 | 123, 3);
    let Some(moto) = moto_with(
        "large_objects_should_come_as_parallel_ranged_reads",
        &[("m/big.bin", &big), ("m/small.bin", b"s")],
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CountingStore::new(moto.store("models"));
    let m = BucketMount::builder(moto.location("models", "m/"), dir.path())
        .store(Arc::clone(&store) as Arc<dyn object_store::ObjectStore>)
        .options(
            TransferOptions::default()
                .with_part_size(1 << 20)
                .with_concurrency(4),
        )
        .build()
        .expect("mount");
    m.mount(MountMode::Eager, None).await.expect("mount");
    assert_eq!(std::fs::read(dir.path().join("big.bin")).expect("big"), big);
    assert_eq!(
        store.ranged_gets.load(std::sync::atomic::Ordering::SeqCst),
        6,
        "5 MiB + 123 B in 1 MiB parts"
    );
    assert_eq!(
        store.whole_gets.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the small file in one GET"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_should_be_a_clear_error() {
    let Some(moto) = moto_with(
        "refused_credentials_should_be_a_clear_error",
        &[("m/a.bin", b"a")],
    )
    .await
    else {
        return;
    };
    // moto accepts any key until told to check them; then unknown keys are refused.
    moto.enforce_auth().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let error = Error::from(
        mount(&moto, "m/", dir.path())
            .mount(MountMode::Eager, None)
            .await
            .expect_err("refused"),
    );
    assert!(
        matches!(error, Error::CredentialsRefused { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("s3://models/m/") && text.contains("credentials refused"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_prefix_or_object_should_be_not_found() {
    let Some(moto) = moto_with(
        "missing_bucket_prefix_or_object_should_be_not_found",
        &[("m/a.bin", b"a")],
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let no_prefix = Error::from(
        mount(&moto, "nothing-here/", dir.path())
            .mount(MountMode::Eager, None)
            .await
            .expect_err("empty prefix"),
    );
    assert!(matches!(no_prefix, Error::NotFound { .. }), "{no_prefix:?}");
    assert!(
        no_prefix.to_string().contains("s3://models/nothing-here/"),
        "{no_prefix}"
    );
    let no_bucket = BucketMount::builder(moto.location("no-such-bucket", "m/"), dir.path())
        .credentials(credentials())
        .build()
        .expect("mount");
    let error = Error::from(
        no_bucket
            .mount(MountMode::Eager, None)
            .await
            .expect_err("no bucket"),
    );
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    let missing = Error::from(
        mount(&moto, "m/", dir.path())
            .read("nope.bin")
            .await
            .expect_err("no object"),
    );
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
    assert!(
        missing.to_string().contains("s3://models/m/nope.bin"),
        "{missing}"
    );
}
