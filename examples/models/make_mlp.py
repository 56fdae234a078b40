"""Writes mlp.onnx, the example model of the README, byte for byte.

Usage: python make_mlp.py [OUT_PATH]   (default: mlp.onnx beside this script)

Needs the `onnx` and `numpy` packages (.ci/requirements.txt). The weights come from a fixed
formula (no random generator), rounded to 4 decimals, so every run writes the same bytes.
"""

import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def weights(rows, cols, phase):
    """A fixed, well-spread matrix: 0.5 * sin(k + phase), rounded to 4 decimals."""
    values = [round(0.5 * math.sin(k + phase), 4) for k in range(rows * cols)]
    return np.array(values, dtype=np.float32).reshape(rows, cols)


def model():
    inits = [
        numpy_helper.from_array(weights(4, 16, 1.0), "w0"),
        numpy_helper.from_array(weights(1, 16, 2.0).reshape(16), "b0"),
        numpy_helper.from_array(weights(16, 3, 3.0), "w1"),
        numpy_helper.from_array(weights(1, 3, 4.0).reshape(3), "b1"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w0", "b0"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w1", "b1"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=inits,
    )
    m = helper.make_model(
        graph, producer_name="eas-examples", opset_imports=[helper.make_opsetid("", 17)]
    )
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "mlp.onnx")
    with open(out, "wb") as f:
        f.write(model().SerializeToString())
