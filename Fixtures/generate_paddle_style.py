#!/usr/bin/env python3
"""Write Fixtures/digits_cnn_paddle.onnx: digits_cnn_bn.onnx re-spelled the way paddle2onnx and
older exporters write models, so the tests see those conventions on a trained network.

- every dynamic dimension is `dim_value: -1` (paddle2onnx), not a `dim_param`: the input is
  `[-1, 1, 8, 8]` and value_info entries carry -1 batch dims. (Spatial -1 dims, as in PaddleOCR's
  `[-1, 3, 48, -1]`, make onnx's own shape inference compute sizes from the literal -1 and the
  full checker fail, so this fixture keeps them fixed; unit tests cover -1 spatial dims.)
- every weight lives in a `Constant` node instead of an initializer (older torch/tf exporters);
- Flatten is written as `Reshape(x, Constant([0, -1]))` and the Gemm weight is read through an
  `Identity` node (as torch.onnx.export does for shared weights).

Deterministic: derived from digits_cnn_bn.onnx only. Called by generate.py; also runnable alone:
    python Fixtures/generate_paddle_style.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

HERE = Path(__file__).resolve().parent


def make_paddle_style(out: Path) -> Path:
    src = onnx.load(str(out / "digits_cnn_bn.onnx"))
    g = src.graph
    weights = {i.name for i in g.initializer}
    # Intermediate types (before any edit), recorded below with -1 dims as paddle2onnx does.
    inferred = [vi for vi in onnx.shape_inference.infer_shapes(src).graph.value_info if vi.name not in weights]
    nodes = []
    for i, init in enumerate(g.initializer):
        nodes.append(helper.make_node("Constant", [], [init.name], name=f"Constant_{i}", value=init))
    rest = []
    for n in g.node:
        if n.op_type == "Flatten":
            shape_name = n.name + "/shape"
            nodes.append(helper.make_node("Constant", [], [shape_name], name=n.name + "/shape_const",
                                          value=numpy_helper.from_array(np.array([0, -1], np.int64), shape_name)))
            rest.append(helper.make_node("Reshape", [n.input[0], shape_name], list(n.output), name=n.name))
        elif n.op_type == "Gemm":
            w = n.input[1]
            alias = w + "/identity"
            rest.append(helper.make_node("Identity", [w], [alias], name=w + "/Identity"))
            m = onnx.NodeProto()
            m.CopyFrom(n)
            m.input[1] = alias
            rest.append(m)
        else:
            rest.append(n)
    del g.initializer[:]
    del g.node[:]
    g.node.extend(nodes + rest)

    def minus_one(vi, dims):
        shape = vi.type.tensor_type.shape
        for k, d in enumerate(shape.dim):
            if k in dims:
                d.Clear()
                d.dim_value = -1

    minus_one(g.input[0], {0})
    minus_one(g.output[0], {0})
    # Intermediate 4-D types with -1 batch dims, as paddle2onnx records them.
    for vi in inferred:
        if vi.type.tensor_type.HasField("shape") and len(vi.type.tensor_type.shape.dim) == 4:
            v = g.value_info.add()
            v.CopyFrom(vi)
            minus_one(v, {0})
    src.producer_name = "compress-fixtures (paddle2onnx style)"
    onnx.checker.check_model(src, full_check=True)
    path = out / "digits_cnn_paddle.onnx"
    onnx.save(src, str(path))
    return path


if __name__ == "__main__":
    print(make_paddle_style(HERE))
