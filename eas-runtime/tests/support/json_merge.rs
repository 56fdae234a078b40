//! Shared by the runtime's integration tests: test specs are a base document with the
//! test's own fields merged in.

use serde_json::Value;

/// Merges `from` into `into`: objects key by key (recursively), anything else replaced.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}
