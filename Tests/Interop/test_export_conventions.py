"""Models as paddle2onnx and older exporters write them, through info, profile, run and convert.

Fixture: Fixtures/digits_cnn_paddle.onnx (Fixtures/generate_paddle_style.py): the trained
digits CNN with `dim_value: -1` dynamic dims, every weight in a `Constant` node, Flatten written
as Reshape(x, [0, -1]) and the Gemm weight read through an Identity. Its plain twin,
digits_cnn_bn.onnx, keeps the weights in initializers and computes the same function.

References are independent of compress: parameter counts summed with numpy over the tensors
onnx decodes; outputs from ONNX Runtime; -1 dims read back with onnx.load.
"""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from conftest import FIXTURES, run_compress, assert_clean_failure

PADDLE = FIXTURES / "digits_cnn_paddle.onnx"
PLAIN = FIXTURES / "digits_cnn_bn.onnx"


def ok(*args, **kw):
    p = run_compress(*args, **kw)
    assert p.returncode == 0, f"compress {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr}"
    return p


def constant_node_arrays(path):
    m = onnx.load(str(path))
    return [numpy_helper.to_array(a.t) for n in m.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]


def test_fixture_is_what_it_claims():
    m = onnx.load(str(PADDLE))
    onnx.checker.check_model(m, full_check=True)
    assert len(m.graph.initializer) == 0
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [-1, 1, 8, 8]
    assert sum(n.op_type == "Constant" for n in m.graph.node) == 27


def test_info_counts_constant_node_weights():
    arrays = constant_node_arrays(PADDLE)
    want = sum(a.size for a in arrays)
    info = json.loads(ok("info", PADDLE, "--format", "json").stdout)
    assert info["parameters"] == want == info["constant_node_parameters"]
    assert info["initializer_parameters"] == 0 and info["initializers"] == 0
    assert info["constant_nodes"] == len(arrays) == 27
    assert info["constant_node_bytes"] == sum(a.nbytes for a in arrays)
    assert info["inputs"][0]["shape"] == [None, 1, 8, 8], "a -1 dim is dynamic (null), not -1"
    assert info["outputs"][0]["shape"] == [None, 10]
    plain = json.loads(ok("info", PLAIN, "--format", "json").stdout)
    ref = sum(numpy_helper.to_array(t).size for t in onnx.load(str(PLAIN)).graph.initializer)
    assert plain["parameters"] == plain["initializer_parameters"] == ref and plain["constant_nodes"] == 0
    assert want == ref + 2, "the paddle fixture holds the same weights plus Reshape's [0, -1]"
    table = ok("info", PADDLE).stdout
    assert "in 27 Constant nodes" in table and "[?, 1, 8, 8]" in table, table


@pytest.mark.parametrize("pin", [None, "input=1x1x8x8", "input=3x1x8x8"])
def test_profile_counts_match_the_plain_export(pin):
    extra = ["--input", pin] if pin else []
    a = json.loads(ok("profile", PADDLE, "--format", "json", *extra).stdout)["totals"]
    b = json.loads(ok("profile", PLAIN, "--format", "json", *extra).stdout)["totals"]
    for key in ("macs", "flops", "params"):
        assert a[key] == b[key], (key, a[key], b[key])
    batch = int(pin.split("=")[1].split("x")[0]) if pin else 1
    # Independent: Conv/Gemm MACs counted with NumPy from onnx's own shape inference.
    from test_prune import recount
    assert a["macs"] == batch * recount(PLAIN)[1]


def test_profile_refuses_a_pin_that_contradicts_a_fixed_dim():
    assert_clean_failure(run_compress("profile", PADDLE, "--input", "input=1x1x9x8"), "dimension 2 is fixed to 8")


def test_run_matches_onnxruntime(tmp_path):
    out = tmp_path / "out"
    ok("run", PADDLE, "--data", FIXTURES / "digits", "--out", out, "--quiet", "--input", "input=1x1x8x8")
    sess = ort.InferenceSession(str(PADDLE), providers=["CPUExecutionProvider"])
    files = sorted((FIXTURES / "digits").glob("*.npy"))[:60]
    assert len(files) == 60  # else the loop below checks nothing
    for f in files:
        ref = sess.run(None, {"input": np.load(f)})[0]
        got = np.load(out / f"{f.stem}.0.npy")
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), f.name
    expected = json.loads((FIXTURES / "digits_expected.json").read_text())["digits_cnn_bn.onnx"]
    res = json.loads(ok("run", PADDLE, "--data", FIXTURES / "digits", "--format", "json").stdout)
    assert res["accuracy"]["top1_correct"] == expected["correct"]


def test_convert_writes_minus_one_back(tmp_path):
    out = tmp_path / "converted.onnx"
    ok("convert", PADDLE, "-o", out)
    assert out.read_bytes() == PADDLE.read_bytes(), "an unchanged model is written back byte for byte"
    ext = tmp_path / "ext.onnx"
    ok("convert", PADDLE, "-o", ext, "--external-data", "--external-threshold", "64")
    m = onnx.load(str(ext))
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [-1, 1, 8, 8]
    assert len(m.graph.value_info) == len(onnx.load(str(PADDLE)).graph.value_info) > 0
    assert all(vi.type.tensor_type.shape.dim[0].dim_value == -1 for vi in m.graph.value_info)
    onnx.checker.check_model(m, full_check=True)
    x = np.load(sorted((FIXTURES / "digits").glob("*.npy"))[0])
    a = ort.InferenceSession(str(ext), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    b = ort.InferenceSession(str(PADDLE), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_array_equal(a, b)
