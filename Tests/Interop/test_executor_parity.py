"""The executor's outputs against ONNX Runtime's on the fixtures and the shared real models.

For every model and every input set (real samples where the fixture has them, seeded random
data, and for the detector a smooth synthetic image), the model runs through
`compress _eval MODEL --inputs in.pb --outputs-dir D` and through ONNX Runtime's CPU provider;
each float32 output must satisfy max |compress − ORT| <= 1e-4 · max |ORT| (the bound the issue
states), with the same dtype and shape; non-float outputs must be equal.

Models: Fixtures/digits_cnn_bn.onnx and digits_cnn.onnx (dynamic batch N: single samples and a
batch of 8), Fixtures/external/model.onnx (weights in external data), Fixtures/typed_fields.onnx
(typed TensorProto fields), and ../shared/models/yolox_det_416.onnx (skipped with a message
when absent).

Run: COMPRESS_BIN=.build/release/compress pytest -q Tests/Interop/test_executor_parity.py
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxruntime as ort  # noqa: E402  (in the Makefile's PY_PACKAGES: missing is a failure, not a skip)

from conftest import COMPRESS_BIN as COMPRESS  # noqa: E402  (this checkout's binary unless COMPRESS_BIN says otherwise)
ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "Fixtures"
SHARED = Path(os.environ.get("COMPRESS_SHARED_MODELS", str(ROOT.parent / "shared" / "models")))
REL_BOUND = 1e-4


def _digits(indices):
    files = sorted((FIX / "digits").glob("sample_*.npy"))
    return np.concatenate([np.load(files[i]) for i in indices], axis=0)


def _uniform(shape, seed, lo=0.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)


def _normal(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _synthetic_image(h, w, seed):
    """A smooth image-like [1,3,H,W] input in [0,1]: colour gradients, soft blobs, low-frequency
    waves and a little noise — closer to what a detector sees than white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = y / h, x / w
    img = np.empty((3, h, w))
    for c in range(3):
        a, b = rng.uniform(-1, 1, 2)
        img[c] = 0.5 + 0.25 * (a * x + b * y)
        for _ in range(4):
            cy, cx, r, amp = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.2), rng.uniform(-0.4, 0.4)
            img[c] += amp * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img[c] += 0.05 * np.sin(2 * np.pi * (3 * x + 2 * y + rng.uniform()))
    img += rng.normal(0, 0.01, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)[None]


def _cases():
    """pytest params (id, model path, {input name: array}) for every model and input set; an
    absent shared model gives skip-marked params."""
    cases = []
    for name in ("digits_cnn_bn", "digits_cnn"):
        path = FIX / f"{name}.onnx"
        for i in (0, 1, 7, 123):
            cases.append((f"{name}-real{i}", path, {"input": _digits([i])}))
        cases.append((f"{name}-real-batch8", path, {"input": _digits(range(40, 48))}))
        # Pixels are 0..16 / 16; random data covers that range and beyond it.
        cases.append((f"{name}-uniform", path, {"input": _uniform((1, 1, 8, 8), 1)}))
        cases.append((f"{name}-normal-batch3", path, {"input": _normal((3, 1, 8, 8), 2, scale=2.0)}))
    ext = FIX / "external" / "model.onnx"
    cases.append(("external-real", ext, {"input": np.load(FIX / "external" / "input_0.npy")}))
    for seed in (3, 4):
        cases.append((f"external-normal{seed}", ext, {"input": _normal((1, 1, 8, 8), seed)}))
    typed = FIX / "typed_fields.onnx"
    cases.append(("typed_fields-real", typed, {"input": np.load(FIX / "typed_fields_input_0.npy")}))
    for seed in (5, 6):
        cases.append((f"typed_fields-normal{seed}", typed, {"input": _normal((2, 3), seed, scale=10.0)}))
    yolox = SHARED / "yolox_det_416.onnx"
    yolox_inputs = [("uniform", lambda: _uniform((1, 3, 416, 416), 7)),
                    ("uniform2", lambda: _uniform((1, 3, 416, 416), 8)),
                    ("synthetic-image", lambda: _synthetic_image(416, 416, 9))]
    for tag, make in yolox_inputs:
        if yolox.exists():
            cases.append((f"yolox_det_416-{tag}", yolox, {"images": make()}))
        else:
            cases.append((f"yolox_det_416-{tag}", yolox, {}, pytest.mark.skip(reason=f"{yolox} is absent (shared real models)")))
    return [pytest.param(*c[:3], id=c[0], marks=c[3:]) for c in cases]


CASES = _cases()
_SESSIONS: dict[str, "ort.InferenceSession"] = {}


def _session(path: Path):
    key = str(path)
    if key not in _SESSIONS:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        _SESSIONS[key] = ort.InferenceSession(key, opts, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def _runtime_inputs(path: Path):
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits], [o.name for o in m.graph.output]


@pytest.mark.parametrize("cid,model,feeds", CASES)
def test_outputs_match_onnxruntime(cid, model, feeds, tmp_path):
    if not os.path.exists(COMPRESS):
        pytest.fail(f"compress binary not found at {COMPRESS} (set COMPRESS_BIN)")
    in_names, out_names = _runtime_inputs(model)
    assert set(in_names) == set(feeds), f"{cid}: model inputs {in_names}, feeds {sorted(feeds)}"
    paths = []
    for k, name in enumerate(in_names):
        p = tmp_path / f"input_{k}.pb"
        p.write_bytes(numpy_helper.from_array(feeds[name], name).SerializeToString())
        paths.append(str(p))
    out_dir = tmp_path / "out"
    r = subprocess.run([COMPRESS, "_eval", str(model), "--inputs", *paths, "--outputs-dir", str(out_dir)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{cid}: compress _eval exited {r.returncode}: {r.stderr.strip()[-2000:]}"
    expected = _session(model).run(None, feeds)
    assert len(expected) == len(out_names)
    for k, (name, ref) in enumerate(zip(out_names, expected)):
        got = numpy_helper.to_array(onnx.load_tensor(str(out_dir / f"output_{k}.pb")))
        assert got.dtype == ref.dtype and got.shape == ref.shape, \
            f"{cid} output '{name}': {got.dtype}{list(got.shape)}, ONNX Runtime {ref.dtype}{list(ref.shape)}"
        if ref.dtype.kind != "f":
            np.testing.assert_array_equal(got, ref, err_msg=f"{cid} output '{name}'")
            continue
        assert np.isfinite(ref).all(), f"{cid}: ONNX Runtime's output '{name}' is not finite"
        scale = float(np.abs(ref).max())
        err = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
        assert np.isfinite(got).all() and err <= REL_BOUND * scale, \
            f"{cid} output '{name}': max abs error {err:.3g} > {REL_BOUND:g} x max|ref| ({scale:.4g})"


def test_profile_nodes_reports_each_step_of_the_fused_plan(tmp_path):
    """`_eval --profile-ops --profile-nodes`: one line per step of the plan as it runs, slowest first,
    an unnamed node by its label, a Relu fused into its Conv not timed apart, the per-node times
    adding up to the per-operator-type ones; without --profile-ops it refuses."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.standard_normal((3, 3, 3, 3)).astype(np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="c1", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="r1"),
         helper.make_node("Add", ["r", "x"], ["y"]),           # unnamed: reported by its label
         helper.make_node("Sigmoid", ["y"], ["z"], name="s1")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        # r is also a graph output, so the Add stays a step of its own (not moved into c1).
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 16, 16]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 3, 16, 16])], [w])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    base = [COMPRESS, "_eval", str(path), "--random-input", "x=1x3x16x16", "--repeat", "20", "--threads", "1"]
    r = subprocess.run(base + ["--profile-ops", "--profile-nodes"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    nodes = [ln.split() for ln in r.stderr.splitlines() if ln.startswith("node ")]
    names, times = [n[1] for n in nodes], [float(n[2]) for n in nodes]
    assert all(n[3] == "ms/run" and n[4] == "median" and len(n) == 6 and float(n[5]) >= 0 for n in nodes), nodes
    assert sorted(names) == sorted(["c1", "Add(y)", "s1"]), names   # r1 runs inside c1
    assert times == sorted(times, reverse=True) and all(t >= 0 for t in times)
    per_type = [ln for ln in r.stderr.splitlines() if ln.endswith("ms/run") and not ln.startswith("node ")]
    type_total = sum(float(ln.split()[-2]) for ln in per_type)
    assert len(per_type) == 3, per_type   # Conv, Add, Sigmoid
    assert abs(sum(times) - type_total) <= 0.01 * len(per_type) + 1e-9, (times, per_type)
    refused = subprocess.run(base + ["--profile-nodes"], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "--profile-nodes needs --profile-ops" in refused.stderr
