//! What the JSON tensor forms of the model processors (`onnx`, `torch`) share.

use serde_json::Value;

/// The shape of a nested array, read along its first elements.
pub(crate) fn nested_shape(mut value: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    while let Value::Array(items) = value {
        shape.push(items.len());
        match items.first() {
            Some(first) => value = first,
            None => break,
        }
    }
    shape
}
