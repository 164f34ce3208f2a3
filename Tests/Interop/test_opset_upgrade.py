"""`compress convert --opset 13` and quantize's opset raise (Sources/Passes/OpsetUpgrade.swift).

Each converted operator is built in the test at its old opset (11, 9 or 7); the upgraded model must
pass onnx.checker's full check at opset 13 and give ONNX Runtime's outputs for the original model
(the independent reference). The default quantize (per-channel QDQ) on the opset-11 YOLOX export
must write a model that passes the checker and runs in ONNX Runtime.
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import SHARED_MODELS, assert_clean_failure, run_compress

YOLOX = SHARED_MODELS / "yolox_det_416.onnx"
F = TensorProto.FLOAT


def vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def model_opset11():
    x = vi("x", [2, 3, 4, 5])
    nodes = [
        helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0]),                # [1,2,3,4,5]
        helper.make_node("Squeeze", ["u"], ["sq"], axes=[0]),                 # [2,3,4,5]
        helper.make_node("Split", ["sq"], ["s0", "s1"], axis=3, split=[2, 3]),
        helper.make_node("ReduceSum", ["s1"], ["rs"], axes=[1, -1], keepdims=1),
        helper.make_node("ReduceSum", ["s0"], ["rs_all"], keepdims=0),
        helper.make_node("Softmax", ["x"], ["sm_last"], axis=-1),
        helper.make_node("Softmax", ["x"], ["sm_mid"], axis=1),              # non-last axis: 2-D coercion
        helper.make_node("Softmax", ["x"], ["sm_default"]),                   # default axis 1 at opset 11
        helper.make_node("LogSoftmax", ["x"], ["lsm"], axis=2),
        helper.make_node("Hardmax", ["x"], ["hm"], axis=1),
        helper.make_node("Resize", ["x", "roi", "scales"], ["rz"], mode="nearest"),
        helper.make_node("Clip", ["x", "lo", "hi"], ["cl"]),
    ]
    inits = [numpy_helper.from_array(np.zeros(0, np.float32), "roi"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array(-0.5, np.float32), "lo"),
             numpy_helper.from_array(np.array(0.5, np.float32), "hi")]
    outs = [helper.make_tensor_value_info(n, F, None) for n in
            ["s0", "rs", "rs_all", "sm_last", "sm_mid", "sm_default", "lsm", "hm", "rz", "cl"]]
    g = helper.make_graph(nodes, "g11", [x], outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 11), helper.make_opsetid("com.microsoft", 1)], ir_version=6)


def model_opset9():
    x = vi("x", [1, 2, 4, 4])
    nodes = [
        helper.make_node("Clip", ["x"], ["cl"], min=-0.3, max=0.4),
        helper.make_node("Pad", ["x"], ["pd"], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=1.5),
        helper.make_node("Pad", ["x"], ["pr"], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="reflect"),
        helper.make_node("Slice", ["x"], ["sl"], starts=[1, 0], ends=[3, 100], axes=[2, 3]),
        helper.make_node("TopK", ["x"], ["tv", "ti"], k=2, axis=3),
        helper.make_node("Upsample", ["x", "up_scales"], ["up"], mode="nearest"),
        helper.make_node("Upsample", ["x", "up_scales3"], ["upl"], mode="linear"),
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["bn"], epsilon=1e-3),
        helper.make_node("Dropout", ["bn"], ["dr"], ratio=0.3),
        helper.make_node("Softmax", ["x"], ["sm"], axis=2),
    ]
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 3], np.float32), "up_scales"),
             numpy_helper.from_array(np.array([1, 1, 2.5, 1.5], np.float32), "up_scales3"),
             numpy_helper.from_array(np.array([1.5, 0.5], np.float32), "g"),
             numpy_helper.from_array(np.array([0.1, -0.2], np.float32), "b"),
             numpy_helper.from_array(np.array([0.3, -0.1], np.float32), "m"),
             numpy_helper.from_array(np.array([2.0, 0.5], np.float32), "v")]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in
            [("cl", F), ("pd", F), ("pr", F), ("sl", F), ("tv", F), ("ti", TensorProto.INT64), ("up", F), ("upl", F), ("dr", F), ("sm", F)]]
    g = helper.make_graph(nodes, "g9", [x], outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=4)


def model_opset10():
    x = vi("x", [1, 2, 3, 4])
    nodes = [helper.make_node("Resize", ["x", "rs"], ["rn"], mode="nearest"),
             helper.make_node("Resize", ["x", "rs"], ["rl"], mode="linear"),
             helper.make_node("Clip", ["x"], ["cl"], max=0.25),
             helper.make_node("Dropout", ["x"], ["dr"], ratio=0.2)]
    inits = [numpy_helper.from_array(np.array([1, 1, 1.5, 2.5], np.float32), "rs")]
    outs = [helper.make_tensor_value_info(n, F, None) for n in ["rn", "rl", "cl", "dr"]]
    return helper.make_model(helper.make_graph(nodes, "g10", [x], outs, inits), opset_imports=[helper.make_opsetid("", 10)], ir_version=5)


def model_opset7():
    x = vi("x", [1, 2, 3, 3])
    nodes = [helper.make_node("Upsample", ["x"], ["up"], mode="nearest", scales=[1.0, 1.0, 2.0, 2.0]),
             helper.make_node("Upsample", ["x"], ["upl"], mode="linear", scales=[1.0, 1.0, 1.5, 2.0]),
             helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["bn"], spatial=1),
             helper.make_node("Dropout", ["bn"], ["dr"], ratio=0.5)]
    inits = [numpy_helper.from_array(np.array(a, np.float32), n) for n, a in
             [("g", [1.5, 0.5]), ("b", [0.1, -0.2]), ("m", [0.3, -0.1]), ("v", [2.0, 0.5])]]
    outs = [helper.make_tensor_value_info(n, F, None) for n in ["up", "upl", "dr"]]
    g = helper.make_graph(nodes, "g7", [x], outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 7)], ir_version=4)


def typed(m):
    """The outputs declared with the types and shapes onnx's shape inference gives them."""
    outs = list(onnx.shape_inference.infer_shapes(m).graph.output)
    del m.graph.output[:]
    m.graph.output.extend(outs)
    onnx.checker.check_model(m, full_check=True)
    return m


def ort_run(path, feeds):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


@pytest.mark.parametrize("make,shape", [(model_opset11, (2, 3, 4, 5)), (model_opset9, (1, 2, 4, 4)), (model_opset10, (1, 2, 3, 4)), (model_opset7, (1, 2, 3, 3))])
def test_upgraded_model_matches_original_in_onnxruntime(make, shape, tmp_path):
    src, dst = tmp_path / "old.onnx", tmp_path / "new.onnx"
    m = typed(make())
    onnx.save(m, src)
    r = run_compress("convert", src, "-o", dst, "--opset", "13")
    assert r.returncode == 0, r.stderr
    up = onnx.load(dst)
    onnx.checker.check_model(up, full_check=True)
    opsets = {o.domain: o.version for o in up.opset_import}
    assert opsets[""] == 13
    for o in m.opset_import:  # other domains keep their opsets
        if o.domain:
            assert opsets[o.domain] == o.version
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
    want, got = ort_run(src, feeds), ort_run(dst, feeds)
    assert set(want) == set(got)
    for k in want:
        assert got[k].shape == want[k].shape, k
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, err_msg=k)


def test_old_attribute_forms_are_gone(tmp_path):
    src, dst = tmp_path / "old.onnx", tmp_path / "new.onnx"
    onnx.save(typed(model_opset9()), src)
    assert run_compress("convert", src, "-o", dst, "--opset", "13").returncode == 0
    for n in onnx.load(dst).graph.node:
        names = {a.name for a in n.attribute}
        assert n.op_type != "Upsample"
        assert not names & {"pads", "starts", "ends", "k", "min", "max", "spatial", "ratio", "split"}, (n.op_type, names)


def test_refusals_name_the_op(tmp_path):
    old = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [vi("x", [1])], [vi("y", [1])]),
                            opset_imports=[helper.make_opsetid("", 6)], ir_version=3)
    onnx.save(old, tmp_path / "six.onnx")
    assert_clean_failure(run_compress("convert", tmp_path / "six.onnx", "-o", tmp_path / "o.onnx", "--opset", "13"), "opset 6", "Relu")
    assert not (tmp_path / "o.onnx").exists()
    exp = helper.make_model(helper.make_graph([helper.make_node("ImageScaler", ["x"], ["y"], name="scaler", scale=2.0)], "g",
                                              [vi("x", [1, 1, 1, 1])], [vi("y", [1, 1, 1, 1])]),
                            opset_imports=[helper.make_opsetid("", 7)], ir_version=3)
    onnx.save(exp, tmp_path / "exp.onnx")
    assert_clean_failure(run_compress("convert", tmp_path / "exp.onnx", "-o", tmp_path / "o.onnx", "--opset", "13"), "ImageScaler", "scaler")
    assert not (tmp_path / "o.onnx").exists()


def test_default_quantize_on_opset11_yolox(tmp_path):
    if not YOLOX.exists():
        pytest.skip(f"{YOLOX} is not present (shared models are beside the checkout on developer machines)")
    assert onnx.load(YOLOX, load_external_data=False).opset_import[0].version == 11
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    samples = [rng.uniform(0, 255, (1, 3, 416, 416)).astype(np.float32) for _ in range(2)]
    for i, s in enumerate(samples):
        np.save(calib / f"{i}.npy", s)
    out = tmp_path / "q.onnx"
    r = run_compress("quantize", YOLOX, "--calib", calib, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "raised from 11 to 13" in r.stdout
    q = onnx.load(out)
    onnx.checker.check_model(q, full_check=True)
    assert {o.domain: o.version for o in q.opset_import}[""] == 13
    assert any(n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute) for n in q.graph.node)
    got = ort_run(out, {"images": samples[0]})
    want = ort_run(YOLOX, {"images": samples[0]})
    (name, g), = got.items()
    assert g.shape == want[name].shape and np.isfinite(g).all()
