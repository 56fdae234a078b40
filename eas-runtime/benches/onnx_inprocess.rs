//! In-process ONNX bench (being written).

fn main() {}
