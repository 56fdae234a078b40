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

/// Past the file system's timestamp tick, so that a write shows in the file's times.
async fn next_tick() {
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
}

/// Flips one byte of `path` in place: same size, same inode.
fn damage_in_place(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).expect("read");
    file.write_all_at(&[byte[0] ^ 0xff], at).expect("write");
}

fn set_mtime(path: &std::path::Path, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .expect("set mtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_copy_damaged_in_place_should_be_fetched_again_after_a_restart() {
    let weights = bytes(200_000, 7);
    let Some(moto) = moto_with(
        "a_local_copy_damaged_in_place_should_be_fetched_again_after_a_restart",
        &[("m/w.bin", &weights), ("m/config.json", b"{}")],
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.bin");
    let remount = || async {
        let report = mount(&moto, "m/", dir.path())
            .mount(MountMode::Eager, None)
            .await
            .expect("mount");
        (report.reused_files, report.fetched_bytes)
    };
    assert_eq!(remount().await, (0, 200_002));
    assert_eq!(remount().await, (2, 0), "unchanged: reused without a fetch");

    // One byte damaged in place, size kept: the file changed, is read again, and the
    // damage found.
    next_tick().await;
    damage_in_place(&path, 123_456);
    assert_eq!(remount().await, (1, 200_000));
    assert_eq!(std::fs::read(&path).expect("w"), weights);

    // Damaged again, its modification time put back: the status-change time still moved.
    let recorded = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    next_tick().await;
    damage_in_place(&path, 7);
    set_mtime(&path, recorded);
    assert_eq!(remount().await, (1, 200_000));
    assert_eq!(std::fs::read(&path).expect("w"), weights);

    // Touched only: read again, found intact, reused; then trusted again.
    next_tick().await;
    set_mtime(&path, std::time::SystemTime::now());
    assert_eq!(remount().await, (2, 0));
    assert_eq!(remount().await, (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_download_should_be_removed_when_the_mount_starts() {
    let Some(moto) = moto_with(
        "leftovers_of_a_killed_download_should_be_removed_when_the_mount_starts",
        &[("m/a.bin", b"aaa"), ("m/b/c.bin", b"ccc")],
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // What a `kill -9` during downloads leaves: temporary files nobody holds any more.
    std::fs::create_dir_all(dir.path().join("b")).expect("dir");
    std::fs::write(dir.path().join(".eas-partial-a1B2c3"), b"half").expect("orphan");
    std::fs::write(dir.path().join("b/.eas-partial-d4E5f6"), b"half").expect("orphan");
    // A download still running (another mount of this process, or another process) holds
    // its file's lock: it stays.
    let live_path = dir.path().join("b/.eas-partial-live00");
    let live = std::fs::File::create(&live_path).expect("live");
    live.lock().expect("lock");
    mount(&moto, "m/", dir.path())
        .mount(MountMode::Eager, None)
        .await
        .expect("mount");
    assert!(!dir.path().join(".eas-partial-a1B2c3").exists());
    assert!(!dir.path().join("b/.eas-partial-d4E5f6").exists());
    assert!(live_path.exists(), "a live download's file is left alone");
    assert_eq!(
        std::fs::read(dir.path().join("b/c.bin")).expect("c"),
        b"ccc"
    );
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
async fn large_objects_should_be_checked_by_the_crc64_the_store_keeps() {
    let Some(moto) = moto_with(
        "large_objects_should_be_checked_by_the_crc64_the_store_keeps",
        &[],
    )
    .await
    else {
        return;
    };
    let big = bytes(9 << 20 | 77, 5); // above STORE_CHECKSUM_MIN
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &big);
    moto.put_with_crc64("models", "good/model.bin", &big, crc)
        .await;
    // The bytes match their ETag's MD5, not the CRC the store keeps: only the CRC check sees it.
    moto.put_with_crc64("models", "bad/model.bin", &big, crc ^ 1)
        .await;
    let ranged = TransferOptions::default()
        .with_part_size(4 << 20)
        .with_concurrency(2);
    let build = |prefix: &str, dir: &std::path::Path, options: TransferOptions| {
        BucketMount::builder(moto.location("models", prefix), dir)
            .credentials(credentials())
            .options(options)
            .build()
            .expect("mount")
    };

    let dir = tempfile::tempdir().expect("tempdir");
    build("good/", dir.path(), ranged)
        .mount(MountMode::Eager, None)
        .await
        .expect("the CRCs of three ranges combine to the store's");
    assert_eq!(
        std::fs::read(dir.path().join("model.bin")).expect("read"),
        big
    );

    for options in [ranged, TransferOptions::default().with_part_size(u64::MAX)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = Error::from(
            build("bad/", dir.path(), options)
                .mount(MountMode::Eager, None)
                .await
                .expect_err("a CRC-64 mismatch"),
        );
        let text = error.to_string();
        assert!(
            matches!(error, Error::Corrupted { .. }) && text.contains("CRC-64/NVME"),
            "{text}"
        );
        assert!(
            !dir.path().join("model.bin").exists(),
            "nothing unverified is left"
        );
    }
    // Without the store's checksum the MD5 of the ETag is checked, and it matches.
    let dir = tempfile::tempdir().expect("tempdir");
    build("bad/", dir.path(), ranged.with_verify_crc64(false))
        .mount(MountMode::Eager, None)
        .await
        .expect("the MD5 matches");
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
