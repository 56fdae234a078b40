//! probe
#![allow(clippy::unwrap_used, missing_docs)]
#[test]
fn probe() {
    std::fs::write(
        "/tmp/probe/schema.json",
        serde_json::to_string_pretty(eas_core::spec::json_schema()).unwrap(),
    )
    .unwrap();
}
