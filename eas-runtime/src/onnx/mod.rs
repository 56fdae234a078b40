//! The `onnx` processor: ONNX models run by ONNX Runtime through `ort` (being written).
