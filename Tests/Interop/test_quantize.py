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
        # ONNX Runtime also quantizes each Conv/Gemm *output* (before the Relu); compress places
        # QDQ only where a quantized node reads (fuse-friendly: no QDQ between Conv and Relu).
        # Everything else ORT writes, compress must write too.
        outputs = {o for n in onnx.load(str(source)).graph.node if n.op_type in ("Conv", "Gemm") for o in n.output}
        theirs_names = {k for k in a if k.endswith(("_scale", "_zero_point", "_quantized"))
                        and k.rsplit("_scale", 1)[0] not in outputs and k.rsplit("_zero_point", 1)[0] not in outputs}
        assert set(names) == theirs_names, (sorted(set(names) ^ theirs_names))
        assert len(names) == 40  # 5 weights × 3 + 5 biases × 3 + 5 activations × 2
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
    assert any(n.op_type == "Relu" for n in m.graph.node)
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
    # The same QDQ arithmetic in both executors: the outputs agree to float rounding (measured
    # 5e-6 of the logits' ~18), every top class included.
    assert (q_ours.argmax(1) == q_ort.argmax(1)).all()
    assert np.abs(q_ours - q_ort).max() <= 1e-4 * np.abs(q_ort).max(), np.abs(q_ours - q_ort).max()
    assert np.abs(q_ours - ref).max() > 1e-3, "the quantized model is not the float one"
    assert report["output_sqnr_db"] > 25  # (its exact value: test_report_sqnr_equals_numpy)
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


# ---- saturating calibration against NumPy references ---------------------------------------------

def np_percentile(hist, width, pct):
    cdf = np.cumsum(hist) / hist.sum()
    return (np.argmax(cdf >= pct / 100.0) + 1) * width


def np_smooth(p, eps=1e-4):
    zeros = p == 0
    n_zeros, n_nonzeros = zeros.sum(), p.size - zeros.sum()
    if n_nonzeros == 0:
        return None
    return np.where(zeros, eps, p - eps * n_zeros / n_nonzeros)


def np_entropy(hist, width, levels=128):
    """TensorRT's calibration as MXNet's _get_optimal_threshold writes it, on a |x| histogram."""
    n = hist.size
    best_kl, best_i = np.inf, n
    for i in range(levels, n + 1):
        p = hist[:i].astype(np.float64).copy()
        p[i - 1] += hist[i:].sum()
        merged = i // levels
        q = np.zeros(i)
        for j in range(levels):
            start = j * merged
            stop = i if j == levels - 1 else start + merged
            nz = p[start:stop] != 0
            if nz.sum():
                q[start:stop][nz] = hist[start:stop].sum() / nz.sum()
        ps, qs = np_smooth(p), np_smooth(q)
        if ps is None or qs is None:
            continue
        ps, qs = ps / ps.sum(), qs / qs.sum()
        m = ps > 0
        kl = np.inf if np.any(qs[m] <= 0) else float(np.sum(ps[m] * np.log(ps[m] / qs[m])))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return (best_i + 0.5) * width


def np_mse(hist, width, qmax=127):
    centres = (np.arange(hist.size) + 0.5) * width
    best_err, best_t = np.inf, hist.size * width
    for i in range(1, hist.size + 1):
        t = i * width
        s = t / qmax
        e = np.where(centres > t, centres - t, centres - np.round(centres / s) * s)
        err = float((hist * e * e).sum())
        if err < best_err:
            best_err, best_t = err, t
    return best_t


def conv_model(path, channels=4):
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((3, channels, 3, 3)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 6, 6])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))


@pytest.mark.parametrize("data", ["digits", "heavy-tailed"])
@pytest.mark.parametrize("method", ["percentile", "entropy", "mse"])
def test_saturating_thresholds_equal_numpy(method, data, tmp_path):
    """The graph input is calibrated from the samples alone, so NumPy sees exactly the values
    compress does: histogram of |x| over [0, 2^e) in 2048 bins (2^e the power of two above
    max|x|), then each method."""
    if data == "digits":
        model, folder, name, files = FOLDED, FIXTURES / "digits", "input", FILES
    else:
        model, folder, name = tmp_path / "conv.onnx", tmp_path / "samples", "x"
        conv_model(model)
        folder.mkdir()
        rng = np.random.default_rng(7)
        for k in range(40):  # Student-t: a long tail for the saturating methods to cut
            np.save(folder / f"s{k:02d}.npy", rng.standard_t(3, (1, 4, 8, 8)).astype(np.float32))
        files = sorted(folder.glob("*.npy"))
    p = run_compress("quantize", model, "--calib", folder, "--max-samples", len(files), "-o", tmp_path / "q.onnx",
                     "--method", method, "--percentile", "99.9", "--format", "json")
    assert p.returncode == 0, p.stderr
    got = next(a for a in json.loads(p.stdout)["summary"]["activations"] if a["name"] == name)
    x = np.abs(np.concatenate([np.load(f).ravel() for f in files]))
    top = np.float32(x.max())
    # The histogram's range is the smallest power of two above max|x| (so partial histograms
    # merge exactly, Docs/quantize.md): frexp gives top = m·2^e with 0.5 <= m < 1, so 2^e > top.
    hist_range = float(2.0 ** np.frexp(float(top))[1])
    hist, _ = np.histogram(x, bins=2048, range=(0, hist_range))
    width = hist_range / 2048
    want = {"percentile": lambda: np_percentile(hist, width, 99.9), "entropy": lambda: np_entropy(hist, width),
            "mse": lambda: np_mse(hist, width)}[method]()
    assert got["threshold"] == pytest.approx(float(np.float32(want)), rel=1e-6), (got["threshold"], want)
    assert got["threshold"] <= hist_range and got["max"] == pytest.approx(min(float(top), got["threshold"]), rel=1e-6)
    if data == "heavy-tailed" and method != "mse":  # (MSE weighs the tail's clipping error and keeps most of it)
        assert got["threshold"] < 0.9 * top, "a long tail is cut"


def test_quality_gate_exports_and_per_tensor_sqnr(tmp_path):
    out, cache, table = tmp_path / "q.onnx", tmp_path / "calib.cache", tmp_path / "model.table"
    base = ["quantize", FOLDED, "--calib", FIXTURES / "digits", "--max-samples", 32, "-o", out, "--format", "json"]
    r = run_compress(*base, "--min-sqnr", 200)
    assert r.returncode == 3 and "quality gate failed: --min-sqnr 200" in r.stderr and "nothing written" in r.stderr
    assert json.loads(r.stdout)["output_sqnr_db"] < 200, "the report is still printed"
    assert not out.exists()
    r = run_compress(*base, "--min-sqnr", 200, "--force")
    assert r.returncode == 3 and out.exists()
    out.unlink()
    r = run_compress(*base, "--min-sqnr", 10, "--trt-cache", cache, "--ncnn-table", table)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    scales = initializers(out)
    # TensorRT cache: header, then name: big-endian float32 bits in hex, equal to the model's scales.
    lines = cache.read_text().splitlines()
    assert lines[0].startswith("TRT-") and lines[0].endswith("-EntropyCalibration2")
    parsed = {}
    for line in lines[1:]:
        name, hexbits = line.rsplit(": ", 1)
        parsed[name] = np.frombuffer(bytes.fromhex(hexbits), dtype=">f4")[0]
    acts = [a["name"] for a in report["summary"]["activations"]]
    assert sorted(parsed) == sorted(acts)
    for name in acts:
        assert parsed[name] == scales[name + "_scale"], name
    # ncnn table: name and 127 / threshold, the inverse of the ONNX scale.
    ncnn = dict(line.split(" ") for line in table.read_text().splitlines())
    for a in report["summary"]["activations"]:
        assert float(ncnn[a["name"]]) == pytest.approx(127 / max(abs(a["min"]), abs(a["max"])), rel=1e-6)
        assert float(ncnn[a["name"]]) == pytest.approx(1 / scales[a["name"] + "_scale"], rel=1e-5)
    # Per-tensor SQNR of the graph input, against NumPy's quantize-dequantize of the same samples.
    x = np.concatenate([np.load(f).ravel() for f in FILES[:32]]).astype(np.float32)
    s = scales["input_scale"]
    xq = np.clip(np.round(x / s), -127, 127) * s
    want = 10 * np.log10((x.astype(np.float64) ** 2).sum() / ((x.astype(np.float64) - xq) ** 2).sum())
    got = next(a for a in report["summary"]["activations"] if a["name"] == "input")["sqnr_db"]
    assert got == pytest.approx(want, rel=1e-6)


def test_exclude_keeps_nodes_in_float(tmp_path):
    out = tmp_path / "q.onnx"
    r = json.loads(run_compress("quantize", FOLDED, "--calib", FIXTURES / "digits", "--max-samples", 16, "-o", out,
                                "--exclude", "head/*", "--exclude", "fc", "--format", "json").stdout)
    assert sorted(r["summary"]["nodes"]) == ["block/dw/conv", "block/pw/conv", "stem/conv"]
    m = onnx.load(str(out))
    producers = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.name in ("head/conv", "fc"):
            assert all(i not in producers or producers[i].op_type != "DequantizeLinear" for i in n.input), n.name
        if n.name == "stem/conv":
            assert producers[n.input[1]].op_type == "DequantizeLinear"
    onnx.checker.check_model(m, full_check=True)


@pytest.mark.parametrize("args", [
    ["quantize", FOLDED, "--calib", "DATA", "-o", "OUT"],
    ["distill", "--teacher", FOLDED, "--student", FOLDED, "--data", "DATA"],
    ["prune", FOLDED, "-o", "OUT", "--method", "l1", "--ratio", "0.3", "--calib", "DATA"],
    ["prune", FOLDED, "--method", "l1", "--sensitivity", "--data", "DATA"],
    ["fuse", FOLDED, "-o", "OUT", "--data", "DATA"],
], ids=["quantize", "distill", "prune-calib", "prune-sensitivity", "fuse"])
def test_a_sample_that_does_not_fit_is_named_once(args, tmp_path):
    data, out = tmp_path / "wrong", tmp_path / "out.onnx"
    data.mkdir()
    np.save(data / "a.npy", np.zeros((1, 1, 9, 9), np.float32))
    r = run_compress(*[data if a == "DATA" else out if a == "OUT" else a for a in args])
    line = assert_clean_failure(r, "a.npy", "does not fit")
    assert line.count("a.npy") == 1, line
    assert not out.exists()
