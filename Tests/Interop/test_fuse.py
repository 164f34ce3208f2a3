"""`compress fuse` on the fixtures and the onnx package's `light` models: the written model passes
the full checker, ONNX Runtime's outputs on it match the original's, BatchNormalization after a
Conv is gone (unless a precondition keeps it), and the verification gate refuses to write when
the tolerance cannot be met."""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import conformance
from conftest import FIXTURES, assert_clean_failure, run_compress

LIGHT = sorted((Path(conformance.DATA) / "light").glob("light_*.onnx"))


def test_light_models_are_there():
    assert len(LIGHT) == 9, "the onnx wheel's light models are missing"


def ok(*args):
    p = run_compress(*args)
    assert p.returncode == 0, p.stderr
    return p


def ort_run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def random_feeds(path, seed=0):
    rng = np.random.default_rng(seed)
    m = onnx.load(str(path))
    inits = {t.name for t in m.graph.initializer}
    feeds = {}
    for i in m.graph.input:
        if i.name in inits:
            continue
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim]
        feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32)
    return feeds


def op_count(path, op):
    return sum(n.op_type == op for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("fixture", ["digits_cnn_bn.onnx", "digits_cnn_paddle.onnx"])
def test_fixtures(fixture, tmp_path):
    src, out = FIXTURES / fixture, tmp_path / "f.onnx"
    r = json.loads(ok("fuse", src, "-o", out, "--format", "json").stdout)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert r["verified"] and op_count(out, "BatchNormalization") == 0 and op_count(src, "BatchNormalization") == 4
    assert {p["pass"]: p["rewrites"] for p in r["passes"]}["BatchNormIntoConv"] == 4
    assert r["nodes_after"] == len(m.graph.node) == 13 and r["nodes_before"] == len(onnx.load(str(src)).graph.node)
    assert r["traffic_bytes_after"] < r["traffic_bytes_before"]
    if fixture == "digits_cnn_paddle.onnx":
        assert op_count(out, "Constant") == 0 and op_count(out, "Identity") == 0
    x = np.concatenate([np.load(f) for f in sorted((FIXTURES / "digits").glob("*.npy"))[:16]])
    a, b = ort_run(src, {"input": x})[0], ort_run(out, {"input": x})[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


@pytest.mark.parametrize("model", LIGHT, ids=[p.stem for p in LIGHT])
def test_light_models(model, tmp_path):
    out = tmp_path / "f.onnx"
    r = json.loads(ok("fuse", model, "-o", out, "--samples", 1, "--format", "json").stdout)
    assert r["verified"]
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert r["nodes_after"] <= r["nodes_before"]
    feeds = random_feeds(model)
    for a, b in zip(ort_run(model, feeds), ort_run(out, feeds)):
        scale = max(float(np.abs(a).max()), 1e-30)
        assert np.abs(a.astype(np.float64) - b).max() <= 1e-4 * scale


def test_skip_and_passes(tmp_path):
    src = FIXTURES / "digits_cnn_bn.onnx"
    out = tmp_path / "f.onnx"
    r = json.loads(ok("fuse", src, "-o", out, "--skip", "BatchNormIntoConv", "--format", "json").stdout)
    assert op_count(out, "BatchNormalization") == 4 and "BatchNormIntoConv" not in [p["pass"] for p in r["passes"]]
    r = json.loads(ok("fuse", src, "-o", out, "--passes", "batchnormintoconv", "--format", "json").stdout)
    assert [p["pass"] for p in r["passes"]] == ["BatchNormIntoConv"] and op_count(out, "BatchNormalization") == 0
    assert_clean_failure(run_compress("fuse", src, "-o", tmp_path / "x.onnx", "--skip", "NoSuchPass"), "NoSuchPass", "BatchNormIntoConv")
    assert not (tmp_path / "x.onnx").exists()


def test_verification_gate(tmp_path):
    src, out = FIXTURES / "digits_cnn_bn.onnx", tmp_path / "f.onnx"
    r = run_compress("fuse", src, "-o", out, "--rtol", 0, "--atol", 0)
    assert r.returncode == 3 and "verification failed" in r.stderr and "nothing written" in r.stderr
    assert "DIFFERENT" in r.stdout and not out.exists()
    r = run_compress("fuse", src, "-o", out, "--rtol", 0, "--atol", 0, "--force")
    assert r.returncode == 3 and out.exists()


def test_conv_read_twice_keeps_its_batchnorm(tmp_path):
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")]
    for name, v in (("g", 1.5), ("b", 0.1), ("m", 0.2), ("v", 2.0)):
        init.append(numpy_helper.from_array(np.full(4, v, np.float32), name))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["bn", "r"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], init)
    src, out = tmp_path / "m.onnx", tmp_path / "f.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(src))
    r = json.loads(ok("fuse", src, "-o", out, "--format", "json").stdout)
    assert {p["pass"]: p["rewrites"] for p in r["passes"]}["BatchNormIntoConv"] == 0
    assert op_count(out, "BatchNormalization") == 1
