"""Shape inference (`compress _shapes`, i.e. `ShapeInference(model:pins:strict: false)`) against
the shapes ONNX Runtime actually produces.

For every model — the fixtures, ../shared/models/yolox_det_416.onnx (skipped when absent) and the
ONNX package's bundled `light` architectures (AlexNet, DenseNet-121, Inception v1/v2, ResNet-50,
ShuffleNet, SqueezeNet, VGG-19, ZFNet-512) — a copy of the model with every node output of the
main graph added as a graph output is run once in ONNX Runtime (optimizations off, so no value
is fused away), and:
- every graph output must be resolved by compress with ORT's dtype and shape;
- every other value compress resolved (node outputs, inputs) must have ORT's dtype and shape;
- no node may be left unresolved.

Inputs are pinned the way a user would: dynamic batch left to the default 1 and, for the digits
models, also pinned to 4 (`--input input=4x1x8x8`).

Run: COMPRESS_BIN=.build/release/compress pytest -q Tests/Interop/test_shape_inference.py
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import onnxruntime as ort  # noqa: E402  (in the Makefile's PY_PACKAGES: missing is a failure, not a skip)

from conftest import COMPRESS_BIN as COMPRESS  # noqa: E402  (this checkout's binary unless COMPRESS_BIN says otherwise)
ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "Fixtures"
SHARED = Path(os.environ.get("COMPRESS_SHARED_MODELS", str(ROOT.parent / "shared" / "models")))
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _models():
    """pytest params (model path, pins {input: dims} or {})."""
    out = [
        pytest.param(FIX / "digits_cnn_bn.onnx", {}, id="digits_cnn_bn"),
        pytest.param(FIX / "digits_cnn_bn.onnx", {"input": [4, 1, 8, 8]}, id="digits_cnn_bn-batch4"),
        pytest.param(FIX / "digits_cnn.onnx", {}, id="digits_cnn"),
        pytest.param(FIX / "digits_cnn.onnx", {"input": [4, 1, 8, 8]}, id="digits_cnn-batch4"),
        pytest.param(FIX / "external" / "model.onnx", {}, id="external"),
        pytest.param(FIX / "typed_fields.onnx", {}, id="typed_fields"),
    ]
    yolox = SHARED / "yolox_det_416.onnx"
    out.append(pytest.param(yolox, {}, id="yolox_det_416",
                            marks=() if yolox.exists() else pytest.mark.skip(reason=f"{yolox} is absent (shared real models)")))
    for p in sorted(LIGHT.glob("light_*.onnx")):
        out.append(pytest.param(p, {}, id=p.stem))
    return out


def _ort_shapes(model_path: Path, pins: dict) -> tuple[dict, list[str]]:
    """{value: (TensorProto type, shape)} for every node output of the main graph and every
    graph input, from one ONNX Runtime run; and the graph output names."""
    model = onnx.load(str(model_path))  # external data included
    g = model.graph
    outputs = [o.name for o in g.output]
    inits = {i.name for i in g.initializer}
    present = set(outputs)
    for n in g.node:
        for o in n.output:
            if o and o not in present:
                g.output.append(onnx.ValueInfoProto(name=o))
                present.add(o)
    feeds = {}
    rng = np.random.default_rng(0)
    for v in g.input:
        if v.name in inits:
            continue
        tt = v.type.tensor_type
        dims = pins.get(v.name) or [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        feeds[v.name] = rng.uniform(0, 1, size=dims).astype(dtype)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, feeds)
    shapes = {}
    for name, arr in list(zip(names, values)) + list(feeds.items()):
        arr = np.asarray(arr)
        shapes[name] = (onnx.helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape))
    return shapes, outputs


def _compress_shapes(model_path: Path, pins: dict) -> dict:
    args = [COMPRESS, "_shapes", str(model_path)]
    for name, dims in pins.items():
        args += ["--input", f"{name}={'x'.join(map(str, dims))}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"compress _shapes exited {r.returncode}: {r.stderr.strip()}"
    return json.loads(r.stdout)


def _dtype_code(name: str) -> int:
    return TensorProto.DataType.Value(name.upper())


@pytest.mark.parametrize("model,pins", _models())
def test_shapes_match_onnxruntime(model, pins):
    if not os.path.exists(COMPRESS):
        pytest.fail(f"compress binary not found at {COMPRESS} (set COMPRESS_BIN)")
    got = _compress_shapes(model, pins)
    unresolved = got.pop("unresolved")
    ref, outputs = _ort_shapes(model, pins)

    problems = []
    for o in outputs:
        if o not in got:
            problems.append(f"graph output '{o}' is not resolved (ORT: {ref[o][1]})")
    compared = 0
    for name, entry in sorted(got.items()):
        if name not in ref:
            continue  # initializers: not produced by a run
        compared += 1
        code, shape = ref[name]
        mine = (_dtype_code(entry["dtype"]), entry["shape"])
        if mine != (code, shape):
            problems.append(f"'{name}': compress {entry['dtype']}{entry['shape']}, "
                            f"ORT {TensorProto.DataType.Name(code).lower()}{shape}")
    missing = [n for n in ref if n not in got and n not in outputs]
    if missing:
        problems.append(f"{len(missing)} intermediate values not resolved, first: '{missing[0]}' (ORT: {ref[missing[0]][1]})")
    if unresolved:
        problems.append(f"{len(unresolved)} nodes unresolved, first: {unresolved[0][0]}: {unresolved[0][1]}")
    print(f"{model.name}: {compared} of {len(ref)} values ORT produced compared")
    assert compared >= len(outputs) and compared > 0, f"{model.name}: only {compared} values compared"
    assert not problems, f"{model.name}: {len(problems)} problems:\n  " + "\n  ".join(problems[:20])
