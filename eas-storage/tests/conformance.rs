//! The `StorageMount` conformance suite on the mounts that need no server: the `MemoryMount`
//! fake and `LocalMount`. (`BucketMount` runs it in `s3.rs`, `ArchiveMount` in `archive.rs`.)

use eas_core::conformance::storage_mount;
use eas_core::storage::Access;
use eas_core::testing::MemoryMount;
use eas_storage::LocalMount;

const FILES: [(&str, &[u8]); 2] = [("model.onnx", b"onnx!"), ("sub/dir/vocab.txt", b"a b c")];

#[tokio::test]
async fn memory_mount_should_pass_the_storage_conformance_suite() {
    let mut mount = MemoryMount::new("mem://m/", "/nonexistent/eas/m");
    for (path, bytes) in FILES {
        mount = mount.with_file(path, bytes);
    }
    storage_mount(&mount, &FILES).await;
}

#[tokio::test]
async fn local_mount_should_pass_the_storage_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, bytes) in FILES {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }
    storage_mount(&LocalMount::new(dir.path(), Access::ReadWrite), &FILES).await;
}

#[tokio::test]
async fn local_mount_should_refuse_a_missing_directory() {
    use eas_core::StorageMount as _;
    let mount = LocalMount::new("/no/such/eas/dir", Access::ReadOnly);
    let error = mount
        .mount(eas_core::storage::MountMode::Eager, None)
        .await
        .expect_err("missing");
    assert!(error.to_string().contains("/no/such/eas/dir"), "{error}");
}
