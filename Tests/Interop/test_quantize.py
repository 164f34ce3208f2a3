"""`compress quantize` (minmax, QDQ) against ONNX Runtime's own quantize_static on the same samples.

Every written model passes the full onnx checker and runs in ONNX Runtime. Scales, zero points,
int8 weights and int32 biases are compared with what `onnxruntime.quantization.quantize_static`
writes (QDQ, MinMax, op_types Conv/Gemm, WeightSymmetric, symmetric or asymmetric activations,
per channel or per tensor), tensor by tensor under ONNX Runtime's own names.

Tolerance: zero points and every integer tensor must be identical. Scales must be identical
except where a tensor's calibrated range differs by the float rounding of the two executors
(compress computes the activations with its kernels, ONNX Runtime with MLAS: a convolution's max
can differ in its last bit): activation scales may differ by at most 2 ulp, and the bias scales
derived from them (input scale × weight scale, rounded again) by at most 4. Weight scales (computed from the weights alone) and the graph input's
scale (computed from the samples alone) must be bit-identical.
"""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

import conformance
from conftest import FIXTURES, assert_clean_failure, run_compress

FOLDED = FIXTURES / "digits_cnn.onnx"
BN = FIXTURES / "digits_cnn_bn.onnx"
FILES = sorted((FIXTURES / "digits").glob("*.npy"))[:64]


class Reader(CalibrationDataReader):
    def __init__(self, files):
        self.it = iter(files)

    def get_next(self):
        f = next(self.it, None)
        return None if f is None else {"input": np.load(f)}


def ours(model, out, *flags):
    p = run_compress("quantize", model, "--calib", FIXTURES / "digits", "--max-samples", len(FILES), "-o", out, "--format", "json", *flags)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
@pytest.mark.parametrize("model", [FOLDED, BN], ids=["folded", "bn"])
def test_scales_and_integers_equal_onnxruntime(model, per_channel, symmetric, tmp_path):
    """For the BN-kept model compress quantizes its deployed form (BN folded by the shared pass,
    in Double); ONNX Runtime gets the fixture's own folded export (folded by NumPy), so weights
    can differ in their last float bit there: only the activation tensors (same names in both)
    are compared for it."""
    mine, theirs = tmp_path / "mine.onnx", tmp_path / "ort.onnx"
    flags = ([] if per_channel else ["--per-tensor"]) + ([] if symmetric else ["--asymmetric"])
    report = ours(model, mine, *flags)
    # ONNX Runtime folds BN itself when it optimizes; give it the same deployed graph compress
    # quantizes (BN folded) so tensor names line up: for the BN model that is digits_cnn.onnx.
    source = FOLDED if model == BN else model
    quantize_static(str(source), str(theirs), Reader(FILES), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv", "Gemm"],
                    extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})
    a, b = initializers(theirs), initializers(mine)
    names = [k for k in b if k.endswith(("_scale", "_zero_point", "_quantized"))]
    if model == BN:
        acts = [x["name"] for x in report["summary"]["activations"]]
        assert len(acts) == 5
        names = [k for k in names if k[: -len("_scale")] in acts or k[: -len("_zero_point")] in acts]
        assert len(names) == 10
    else:
        assert len(names) >= 30
    missing = [k for k in names if k not in a]
    assert not missing, f"tensors ONNX Runtime does not write: {missing}"
    weights = {n.input[1] for n in onnx.load(str(source)).graph.node if n.op_type in ("Conv", "Gemm")}
    for k in names:
        x, y = a[k].ravel(), b[k].ravel()
        assert x.dtype == y.dtype and x.size == y.size, (k, x.dtype, y.dtype, x.shape, y.shape)
        exact = not k.endswith("_scale") or k == "input_scale" or k[: -len("_scale")] in weights
        if exact:
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            # An activation's range may differ in its last bit (2 ulp of scale); a bias scale is that
            # scale times a weight scale, rounded again (4 ulp).
            np.testing.assert_array_max_ulp(x, y, maxulp=4 if k.endswith("_quantized_scale") else 2)
    assert report["summary"]["samples"] == len(FILES)
    assert len(report["summary"]["nodes"]) == 5 and report["summary"]["weights"] == 5


@pytest.mark.parametrize("flags", [[], ["--asymmetric"], ["--per-tensor"]], ids=["default", "asym", "per-tensor"])
def test_written_model_runs_and_matches(flags, tmp_path):
    out = tmp_path / "q.onnx"
    report = ours(BN, out, *flags)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert {n.op_type for n in m.graph.node} >= {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"}
    assert not any(n.op_type == "BatchNormalization" for n in m.graph.node), "quantized as deployed: BN folded"
    # No QDQ between a Conv and the Relu it feeds (fuse-friendly placement).
    producers = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type == "Relu":
            assert producers[n.input[0]].op_type != "DequantizeLinear", n.name
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    float_sess = ort.InferenceSession(str(BN), providers=["CPUExecutionProvider"])
    x = np.concatenate([np.load(f) for f in FILES[:32]])
    q_ort = sess.run(None, {"input": x})[0]
    ref = float_sess.run(None, {"input": x})[0]
    # compress's executor on the quantized model, against ONNX Runtime's integer kernels.
    xp = tmp_path / "x.pb"
    xp.write_bytes(numpy_helper.from_array(x).SerializeToString())
    r = conformance._eval(str(out), [str(xp)], str(tmp_path))
    assert r.returncode == 0, r.stderr
    q_ours = numpy_helper.to_array(onnx.load_tensor(str(tmp_path / "output_0.pb")))
    assert (q_ours.argmax(1) == q_ort.argmax(1)).mean() >= 0.96
    step = float(np.abs(ref).max()) / 127
    assert np.abs(q_ours - q_ort).max() <= 4 * step, (np.abs(q_ours - q_ort).max(), step)
    # The report's SQNR is the one NumPy computes from compress's outputs on the samples.
    assert report["output_sqnr_db"] > 25
    assert report["top1_agreement"] >= 0.95


def test_report_sqnr_equals_numpy(tmp_path):
    out = tmp_path / "q.onnx"
    p = run_compress("quantize", FOLDED, "--calib", FIXTURES / "digits", "--max-samples", 16, "-o", out, "--format", "json")
    report = json.loads(p.stdout)
    signal = noise = 0.0
    for f in sorted((FIXTURES / "digits").glob("*.npy"))[:16]:
        outs = []
        for model in (FOLDED, out):
            d = tmp_path / f"e-{model.name}"
            d.mkdir(exist_ok=True)
            xp = d / "x.pb"
            xp.write_bytes(numpy_helper.from_array(np.load(f)).SerializeToString())
            r = conformance._eval(str(model), [str(xp)], str(d))
            assert r.returncode == 0, r.stderr
            outs.append(numpy_helper.to_array(onnx.load_tensor(str(d / "output_0.pb"))).astype(np.float64))
        signal += (outs[0] ** 2).sum()
        noise += ((outs[0] - outs[1]) ** 2).sum()
    assert report["output_sqnr_db"] == pytest.approx(10 * np.log10(signal / noise), rel=1e-9)


def test_bad_input(tmp_path):
    out = tmp_path / "q.onnx"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_failure(run_compress("quantize", FOLDED, "--calib", empty, "-o", out), str(empty))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.save(wrong / "a.npy", np.zeros((1, 1, 9, 9), np.float32))
    assert_clean_failure(run_compress("quantize", FOLDED, "--calib", wrong, "-o", out), "a.npy")
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    plain = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(plain))
    data = tmp_path / "d"
    data.mkdir()
    np.save(data / "a.npy", np.ones((1, 4), np.float32))
    assert_clean_failure(run_compress("quantize", plain, "--calib", data, "-o", out), "nothing to quantize")
    assert not out.exists()
