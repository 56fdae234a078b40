"""Writes the ONNX models the `onnx` processor's tests and benches use, with expected outputs.

Usage: python make_models.py OUT_DIR [--bench]

Needs the `onnx`, `numpy` and `onnxruntime` packages (.ci/requirements.txt). Nothing is
downloaded: every model is built here from fixed, seeded weights.

Writes into OUT_DIR:
- add_mul.onnx: a, b FLOAT [N, 3] -> sum = a + b, prod = a * b.
- mlp.onnx: x FLOAT [N, 4] -> y FLOAT [N, 3], Gemm-Relu-Gemm with seeded weights.
- types.onnx: x_f32, x_f64, x_i32, x_i64, x_u8, x_i8 [N, 2] -> y_<same> = x + 1, same type.
- fixed.onnx: x FLOAT [1, 4] (static first dimension) -> y = 2 * x.
- reduce.onnx: x FLOAT [N, 3] -> total FLOAT [] = sum of all elements (not per row).
- gather.onnx: idx INT64 [N] -> y FLOAT [N, 2], rows of a fixed 5 x 2 table (an index out
  of 0..5 fails inside ONNX Runtime).
- expected.json: {"cases": [{"model", "inputs", "outputs"}]}, each tensor as
  {"datatype": OIP name, "shape": [...], "data": [flat, row-major]}; outputs come from
  onnxruntime (Python) on the same inputs.
- with --bench: bench_mlp.onnx: x FLOAT [N, 256] -> y FLOAT [N, 10], 256-1024-1024-10 MLP.
"""

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8

OIP = {
    np.dtype("float32"): "FP32",
    np.dtype("float64"): "FP64",
    np.dtype("int32"): "INT32",
    np.dtype("int64"): "INT64",
    np.dtype("uint8"): "UINT8",
    np.dtype("int8"): "INT8",
}


def save(model, path):
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, path)


def graph_model(nodes, name, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    return helper.make_model(
        graph, producer_name="eas-tests", opset_imports=[helper.make_opsetid("", OPSET)]
    )


def add_mul():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3])
    p = helper.make_tensor_value_info("prod", TensorProto.FLOAT, ["N", 3])
    nodes = [
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Mul", ["a", "b"], ["prod"]),
    ]
    return graph_model(nodes, "add_mul", [a, b], [s, p])


def mlp(sizes, seed, name):
    """Gemm + Relu layers with seeded weights: x [N, sizes[0]] -> y [N, sizes[-1]]."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    prev = "x"
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        bias = (rng.standard_normal(fan_out) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        last = i == len(sizes) - 2
        out = "y" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out if last else f"g{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        prev = out
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", sizes[-1]])
    return graph_model(nodes, name, [x], [y], inits)


TYPES = [
    ("f32", np.float32, TensorProto.FLOAT),
    ("f64", np.float64, TensorProto.DOUBLE),
    ("i32", np.int32, TensorProto.INT32),
    ("i64", np.int64, TensorProto.INT64),
    ("u8", np.uint8, TensorProto.UINT8),
    ("i8", np.int8, TensorProto.INT8),
]


def types():
    inputs, outputs, nodes, inits = [], [], [], []
    for suffix, np_type, onnx_type in TYPES:
        inputs.append(helper.make_tensor_value_info(f"x_{suffix}", onnx_type, ["N", 2]))
        outputs.append(helper.make_tensor_value_info(f"y_{suffix}", onnx_type, ["N", 2]))
        inits.append(numpy_helper.from_array(np.array(1, dtype=np_type), f"one_{suffix}"))
        nodes.append(helper.make_node("Add", [f"x_{suffix}", f"one_{suffix}"], [f"y_{suffix}"]))
    return graph_model(nodes, "types", inputs, outputs, inits)


def fixed():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    two = numpy_helper.from_array(np.array(2, dtype=np.float32), "two")
    return graph_model([helper.make_node("Mul", ["x", "two"], ["y"])], "fixed", [x], [y], [two])


def reduce():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    total = helper.make_tensor_value_info("total", TensorProto.FLOAT, [])
    node = helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0)
    return graph_model([node], "reduce", [x], [total])


def gather():
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    table = numpy_helper.from_array(np.arange(10, dtype=np.float32).reshape(5, 2), "table")
    node = helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)
    return graph_model([node], "gather", [idx], [y], [table])


def tensor_json(array):
    return {
        "datatype": OIP[array.dtype],
        "shape": list(array.shape),
        "data": array.reshape(-1).tolist(),
    }


def case(out_dir, model, inputs):
    session = ort.InferenceSession(os.path.join(out_dir, model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, inputs)
    return {
        "model": model,
        "inputs": {k: tensor_json(v) for k, v in inputs.items()},
        "outputs": {k: tensor_json(v) for k, v in zip(names, outputs)},
    }


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: make_models.py OUT_DIR [--bench]")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    save(add_mul(), os.path.join(out_dir, "add_mul.onnx"))
    save(mlp([4, 16, 3], seed=7, name="mlp"), os.path.join(out_dir, "mlp.onnx"))
    save(types(), os.path.join(out_dir, "types.onnx"))
    save(fixed(), os.path.join(out_dir, "fixed.onnx"))
    save(reduce(), os.path.join(out_dir, "reduce.onnx"))
    save(gather(), os.path.join(out_dir, "gather.onnx"))
    if "--bench" in sys.argv[2:]:
        save(mlp([256, 1024, 1024, 10], seed=11, name="bench_mlp"), os.path.join(out_dir, "bench_mlp.onnx"))

    rng = np.random.default_rng(2024)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    cases = [
        case(out_dir, "add_mul.onnx", {"a": f32(2, 3), "b": f32(2, 3)}),
        case(out_dir, "mlp.onnx", {"x": f32(1, 4)}),
        case(out_dir, "mlp.onnx", {"x": f32(5, 4)}),
        case(
            out_dir,
            "types.onnx",
            {
                "x_f32": np.array([[1.5, -2.25], [0.0, 3.0]], dtype=np.float32),
                "x_f64": np.array([[1e-300, -2.5], [4.0, 1e10]], dtype=np.float64),
                "x_i32": np.array([[-5, 2147483646], [0, 7]], dtype=np.int32),
                "x_i64": np.array([[-(2**40), 9007199254740993], [0, 1]], dtype=np.int64),
                "x_u8": np.array([[0, 254], [7, 100]], dtype=np.uint8),
                "x_i8": np.array([[-128, 126], [-1, 0]], dtype=np.int8),
            },
        ),
        case(out_dir, "fixed.onnx", {"x": f32(1, 4)}),
        case(out_dir, "reduce.onnx", {"x": f32(2, 3)}),
        case(out_dir, "gather.onnx", {"idx": np.array([4, 0, 2], dtype=np.int64)}),
    ]
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"cases": cases}, f)


if __name__ == "__main__":
    main()
