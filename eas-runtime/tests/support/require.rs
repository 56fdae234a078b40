//! The one way an eas-runtime test skips when a part it needs (the SDK's Python, ONNX Runtime,
//! moto, redis-server, promtool) is missing. Included where needed:
//! `#[path = "support/require.rs"] mod require;`.

/// Skips the test: prints `SKIPPED: <test>: <why>`, or panics with the reason when
/// `EAS_REQUIRE_ALL=1` (README's test command, `scripts/test`, sets it).
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("EAS_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test}: {why} (required: EAS_REQUIRE_ALL=1)"
    );
    println!("SKIPPED: {test}: {why}");
}
