//! Conformance suites that every implementation of a trait runs in its tests (feature
//! `conformance`).
//!
//! [`storage_mount`] checks a [`StorageMount`] that serves a known set of files: listing,
//! lazy and eager mounts, reads, refusals of missing and escaping paths, cumulative progress,
//! files on disk after an eager mount (when the target is a real directory), and a second
//! eager mount that fetches nothing. The suite is `async` and brings no runtime: drive it
//! with the caller's (`#[tokio::test]`, or [`testing::block_on`](crate::testing::block_on) for
//! mounts that never wait).
//!
//! ```
//! # #[cfg(feature = "testing")] {
//! use eas_core::testing::{block_on, MemoryMount};
//!
//! let mount = MemoryMount::new("mem://m/", "/nonexistent/m").with_file("a/b.bin", "abc");
//! block_on(eas_core::conformance::storage_mount(&mount, &[("a/b.bin", b"abc")]));
//! # }
//! ```

use std::sync::Mutex;

use crate::StorageMount;
use crate::storage::{MountMode, TransferProgress};

/// Runs every check on `mount`, which must serve exactly the files `expected` (relative path,
/// content), and must not have been mounted before. Panics with a message naming the mount,
/// the check and what differed.
pub async fn storage_mount(mount: &dyn StorageMount, expected: &[(&str, &[u8])]) {
    let uri = mount.uri().to_owned();
    assert!(!uri.is_empty(), "a mount must name its source");
    let total: u64 = expected.iter().map(|(_, b)| b.len() as u64).sum();
    let count = expected.len() as u64;

    // list
    let mut listed: Vec<(String, u64)> = match mount.list().await {
        Ok(list) => list.into_iter().map(|o| (o.path, o.size)).collect(),
        Err(e) => panic!("{uri}: list failed: {e}"),
    };
    listed.sort();
    let mut wanted: Vec<(String, u64)> = expected
        .iter()
        .map(|(p, b)| ((*p).to_owned(), b.len() as u64))
        .collect();
    wanted.sort();
    assert_eq!(
        listed, wanted,
        "{uri}: list() must give every file with its size"
    );

    // lazy mount, then reads
    let lazy = match mount.mount(MountMode::Lazy, None).await {
        Ok(report) => report,
        Err(e) => panic!("{uri}: lazy mount failed: {e}"),
    };
    assert_eq!(
        (lazy.files, lazy.bytes),
        (count, total),
        "{uri}: a lazy mount reports every file"
    );
    for (path, bytes) in expected {
        match mount.read(path).await {
            Ok(got) => assert_eq!(&got[..], *bytes, "{uri}: read({path}) gave other bytes"),
            Err(e) => panic!("{uri}: read({path}) failed: {e}"),
        }
    }
    let missing = "no/such/file.bin";
    match mount.read(missing).await {
        Ok(_) => panic!("{uri}: read({missing}) must fail"),
        Err(e) => assert!(
            e.to_string().contains(missing),
            "{uri}: the error for a missing file must name it: {e}"
        ),
    }
    for escaping in ["../outside.bin", "/etc/passwd"] {
        assert!(
            mount.read(escaping).await.is_err(),
            "{uri}: read({escaping}) must be refused"
        );
    }

    // eager mount with progress
    let events: Mutex<Vec<TransferProgress>> = Mutex::new(Vec::new());
    let sink = |p: &TransferProgress| {
        events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(p.clone());
    };
    let eager = match mount.mount(MountMode::Eager, Some(&sink)).await {
        Ok(report) => report,
        Err(e) => panic!("{uri}: eager mount failed: {e}"),
    };
    assert_eq!(
        (eager.files, eager.bytes),
        (count, total),
        "{uri}: an eager mount reports every file"
    );
    let events = events
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for pair in events.windows(2) {
        assert!(
            pair[0].bytes_done <= pair[1].bytes_done,
            "{uri}: progress must be cumulative: {pair:?}"
        );
    }
    for event in &events {
        if let Some(t) = event.bytes_total {
            assert!(
                event.bytes_done <= t,
                "{uri}: progress past its total: {event:?}"
            );
        }
    }
    if eager.fetched_bytes > 0 {
        let last = events.last().map(|e| e.bytes_done);
        assert_eq!(
            last,
            Some(eager.fetched_bytes),
            "{uri}: the last progress report must count every fetched byte"
        );
    }
    let target = mount.target();
    if target.is_dir() {
        for (path, bytes) in expected {
            let on_disk = target.join(path);
            match std::fs::read(&on_disk) {
                Ok(got) => assert_eq!(&got[..], *bytes, "{uri}: {} differs", on_disk.display()),
                Err(e) => panic!("{uri}: {} after an eager mount: {e}", on_disk.display()),
            }
        }
    }

    // remount: everything reused
    let again = match mount.mount(MountMode::Eager, None).await {
        Ok(report) => report,
        Err(e) => panic!("{uri}: second eager mount failed: {e}"),
    };
    assert_eq!(
        (again.fetched_bytes, again.reused_files),
        (0, count),
        "{uri}: a second eager mount must reuse every file"
    );
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use crate::testing::{MemoryMount, block_on};

    #[test]
    fn memory_mount_should_pass_the_storage_conformance_suite() {
        let mount = MemoryMount::new("mem://models/", "/nonexistent/eas/models")
            .with_file("model.onnx", "onnx!")
            .with_file("tokenizer/vocab.txt", vec![7u8; 1000]);
        block_on(super::storage_mount(
            &mount,
            &[
                ("model.onnx", b"onnx!"),
                ("tokenizer/vocab.txt", &[7u8; 1000]),
            ],
        ));
    }
}
