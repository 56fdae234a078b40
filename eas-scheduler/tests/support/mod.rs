//! Helpers shared by the integration tests: the one way a test skips when a part it needs is
//! missing, and the shared traces (`shared/data` beside the checkout).

// Each test crate that includes this module uses only some of it.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};

/// Skips the test: prints `SKIPPED: <test>: <why>`, or panics with the reason when
/// `EAS_REQUIRE_ALL=1` (README's test command, `scripts/test`, sets it).
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("EAS_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test}: {why} (required: EAS_REQUIRE_ALL=1)"
    );
    println!("SKIPPED: {test}: {why}");
}

/// The shared folder: `$EAS_SHARED_DIR`, or `shared/` beside the checkout.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("EAS_SHARED_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
        PathBuf::from,
    )
}

/// The path of a shared data file, or `None` after [`skip`] when it is not there.
pub fn data(test: &str, relative: &str) -> Option<PathBuf> {
    let path = shared_dir().join("data").join(relative);
    if path.exists() {
        return Some(path);
    }
    skip(test, &format!("{} not found", path.display()));
    None
}

/// Opens a file the test needs.
pub fn open(path: &Path) -> File {
    File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
