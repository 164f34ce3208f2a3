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
from onnxruntime.quantization.quant_utils import compute_scale_zp
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

import conformance
from conftest import FIXTURES, ORT_INT8_EXACT, assert_clean_failure, run_compress

FOLDED = FIXTURES / "digits_cnn.onnx"
BN = FIXTURES / "digits_cnn_bn.onnx"
FILES = sorted((FIXTURES / "digits").glob("*.npy"))[:64]


class Reader(CalibrationDataReader):
    def __init__(self, files, name="input"):
        self.it, self.name = iter(files), name

    def get_next(self):
        f = next(self.it, None)
        return None if f is None else {self.name: np.load(f)}


def ours(model, out, *flags):
    p = run_compress("quantize", model, "--calib", FIXTURES / "digits", "--max-samples", len(FILES), "-o", out, "--format", "json", *flags)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


# compress's quantized ops; ONNX Runtime is given the same list (plus Relu/Clip, which ORT's QDQ
# registry treats as removable activations that pass quantization through).
OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Concat", "GlobalAveragePool", "Sigmoid", "HardSigmoid",
       "HardSwish", "LeakyRelu", "Softmax", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "MaxPool",
       "AveragePool", "Resize"]


def ort_quantize(source, out, files, per_channel, symmetric, reduce_range=False, fmt=QuantFormat.QDQ, ops=OPS, name="input"):
    quantize_static(str(source), str(out), Reader(files, name), quant_format=fmt, per_channel=per_channel, reduce_range=reduce_range,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=ops + ["Relu", "Clip"],
                    extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})


def ort_ranges(model, names, files, input_name, mean=False):
    """min and max of each named tensor of the float model over `files`, run by ONNX Runtime (the
    calibration compress reports, computed independently); with `mean`, the means over the files
    of each file's min and max instead (mean-minmax)."""
    m = onnx.load(str(model))
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have and n != input_name:
            m.graph.output.append(helper.make_empty_tensor_value_info(n))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    lo, hi = {}, {}
    for f in files:
        x = np.load(f)
        vals = dict(zip(outs, sess.run(None, {input_name: x})))
        vals[input_name] = x
        for n in names:
            if mean:
                lo.setdefault(n, []).append(float(vals[n].min()))
                hi.setdefault(n, []).append(float(vals[n].max()))
            else:
                lo[n] = min(lo.get(n, np.inf), float(vals[n].min()))
                hi[n] = max(hi.get(n, -np.inf), float(vals[n].max()))
    if mean:
        return {n: float(np.mean(v)) for n, v in lo.items()}, {n: float(np.mean(v)) for n, v in hi.items()}
    return lo, hi


def ort_agreement(float_model, quantized, files, input_name):
    """Top-1 agreement and output SQNR (dB) of `quantized` against `float_model`, both run by ONNX
    Runtime (graph optimizations off: the quantized arithmetic as written) on `files`, in NumPy."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    f = ort.InferenceSession(str(float_model), so, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(quantized), so, providers=["CPUExecutionProvider"])
    same = rows = 0
    signal = noise = 0.0
    for p in files:
        x = np.load(p)
        a, b = f.run(None, {input_name: x}), q.run(None, {input_name: x})
        same += int((a[0].argmax(-1) == b[0].argmax(-1)).sum())
        rows += a[0].reshape(-1, a[0].shape[-1]).shape[0]
        for u, v in zip(a, b):
            signal += (u.astype(np.float64) ** 2).sum()
            noise += ((u.astype(np.float64) - v.astype(np.float64)) ** 2).sum()
    return same / rows, 10 * np.log10(signal / noise)


def compare_with_ort(mine, theirs, source, weights, maxulp=2, ops=OPS):
    """Every scale, zero point and integer tensor compress writes is one ONNX Runtime writes, under
    the same name, with the same value (activation scales within `maxulp`: see the module doc)."""
    a, b = initializers(theirs), initializers(mine)
    names = [k for k in b if k.endswith(("_scale", "_zero_point", "_quantized"))]
    missing = [k for k in names if k not in a]
    assert not missing, f"tensors ONNX Runtime does not write: {missing}"
    # and the other way round: nothing ONNX Runtime quantizes is left in float by compress, but
    # for the placement that differs by design (compress puts QDQ where a quantized node reads,
    # ORT also after each quantized node's output): an activation no node of `ops` reads, as a
    # Conv output read only by its Relu, or a graph output nothing reads.
    g = onnx.load(str(source)).graph
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.op_type)
    by_design = {o for n in g.node for o in n.output if not any(op in ops for op in readers.get(o, []))}
    skipped = sorted(k for k in a if k.endswith(("_scale", "_zero_point")) and k not in b
                     and k.removesuffix("_scale").removesuffix("_zero_point") not in by_design)
    skipped += sorted(k for k in a if k.endswith("_quantized") and k not in b)
    assert not skipped, f"tensors only ONNX Runtime writes: {skipped}"
    for k in names:
        x, y = a[k].ravel(), b[k].ravel()
        assert x.dtype == y.dtype and x.size == y.size, (k, x.dtype, y.dtype, x.shape, y.shape)
        exact = not k.endswith("_scale") or k in ("input_scale", "x_scale") or k[: -len("_scale")] in weights
        if exact:
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            # An activation's range may differ in its last bit (2 ulp of scale); a bias scale is that
            # scale times a weight scale, rounded again (4 ulp).
            limit = 2 * maxulp if k.endswith("_quantized_scale") else maxulp
            ulps = np.testing.assert_array_max_ulp(x, y, maxulp=1 << 30)
            assert ulps.max() <= limit, f"{k}: {ulps.max()} ulp apart (at most {limit})"
    return names


# The activations compress calibrates on the digits model (consumers quantize their inputs):
# Conv/Gemm inputs, both Add inputs, the Concat inputs, MaxPool's and Flatten's inputs (their
# outputs share those scales: pool_out and flatten_out get no scale of their own).
DIGITS_ACTS = {"input", "stem/out", "block/dw/out", "block/pw/bn_out", "block/out", "concat_out", "head/out"}


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
@pytest.mark.parametrize("model,reduce_range", [(FOLDED, False), (FOLDED, True), (BN, False)], ids=["folded", "folded-reduce-range", "bn"])
def test_scales_and_integers_equal_onnxruntime(model, per_channel, symmetric, reduce_range, tmp_path):
    """For the BN-kept model compress quantizes its deployed form (BN folded by the shared pass,
    in Double); ONNX Runtime gets the fixture's own folded export (folded by NumPy), so weights
    can differ in their last float bit there: only the activation tensors (same names in both)
    are compared for it."""
    mine, theirs = tmp_path / "mine.onnx", tmp_path / "ort.onnx"
    flags = ([] if per_channel else ["--per-tensor"]) + ([] if symmetric else ["--asymmetric"]) + (["--reduce-range"] if reduce_range else [])
    report = ours(model, mine, *flags)
    # ONNX Runtime folds BN itself when it optimizes; give it the same deployed graph compress
    # quantizes (BN folded) so tensor names line up: for the BN model that is digits_cnn.onnx.
    source = FOLDED if model == BN else model
    ort_quantize(source, theirs, FILES, per_channel, symmetric, reduce_range)
    acts = {x["name"] for x in report["summary"]["activations"]}
    assert acts == DIGITS_ACTS
    weights = {n.input[1] for n in onnx.load(str(source)).graph.node if n.op_type in ("Conv", "Gemm")}
    if model == BN:
        b = initializers(mine)
        a = initializers(theirs)
        names = [k for k in b if k.endswith(("_scale", "_zero_point")) and k.rsplit("_", 1)[0].removesuffix("_zero") in acts]
        assert len(names) == 2 * len(DIGITS_ACTS)
        for k in names:
            assert a[k].dtype == b[k].dtype
            if k.endswith("_zero_point"):
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            else:  # (weights folded in Double by compress, by NumPy in the export: 4 ulp)
                np.testing.assert_array_max_ulp(a[k].ravel(), b[k].ravel(), maxulp=0 if k.startswith("input") else 4)
    else:
        names = compare_with_ort(mine, theirs, source, weights)
        # 5 weights × 3 + 5 biases × 3 + 7 activations × 2
        assert len(names) == 44, sorted(names)
        q = initializers(mine)
        w = q["fc.weight_quantized"]
        assert w.min() >= (-64 if reduce_range else -127) and w.max() <= (64 if reduce_range else 127)
        assert np.abs(w).max() == (64 if reduce_range else 127)
    assert report["summary"]["samples"] == len(FILES)
    # 5 weighted nodes, the Add, the Concat, MaxPool and Flatten (pass-through)
    assert sorted(report["summary"]["nodes"]) == sorted(["stem/conv", "block/dw/conv", "block/pw/conv", "block/add", "concat", "pool",
                                                         "head/conv", "flatten", "fc"])
    assert report["summary"]["weights"] == 5
    m = onnx.load(str(mine))
    onnx.checker.check_model(m, full_check=True)
    # Pass-through ops read and write QDQ with one scale: MaxPool between DQ and Q of concat_out's scale.
    producers = {o: n for n in m.graph.node for o in n.output}
    readers = {}
    for n in m.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    pool = next(n for n in m.graph.node if n.name == "pool")
    assert producers[pool.input[0]].op_type == "DequantizeLinear" and producers[pool.input[0]].input[1] == "concat_out_scale"
    q_after = [r for r in readers[pool.output[0]] if r.op_type == "QuantizeLinear"]
    assert len(q_after) == 1 and q_after[0].input[1] == "concat_out_scale"


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
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    as_written = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    float_sess = ort.InferenceSession(str(BN), providers=["CPUExecutionProvider"])
    x = np.concatenate([np.load(f) for f in FILES[:32]])
    ref = float_sess.run(None, {"input": x})[0]
    xp = tmp_path / "x.pb"
    xp.write_bytes(numpy_helper.from_array(x).SerializeToString())
    r = conformance._eval(str(out), [str(xp)], str(tmp_path))
    assert r.returncode == 0, r.stderr
    q_ours = numpy_helper.to_array(onnx.load_tensor(str(tmp_path / "output_0.pb")))
    # compress's executor on the quantized model against ONNX Runtime running the same QDQ
    # arithmetic as written, and (where its kernels are exact, see conftest.ORT_INT8_EXACT) with its
    # QDQ fusions into integer kernels: the outputs agree to float rounding (measured 5e-6 of the
    # logits' ~18), every top class included.
    sessions = [as_written] + ([ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])] if ORT_INT8_EXACT else [])
    for sess in sessions:
        q_ort = sess.run(None, {"input": x})[0]
        assert (q_ours.argmax(1) == q_ort.argmax(1)).all()
        assert np.abs(q_ours - q_ort).max() <= 1e-4 * np.abs(q_ort).max(), np.abs(q_ours - q_ort).max()
    assert np.abs(q_ours - ref).max() > 1e-3, "the quantized model is not the float one"
    assert report["output_sqnr_db"] > 25  # (its exact value: test_report_sqnr_equals_numpy)
    assert report["top1_agreement"] >= 0.95


def test_report_sqnr_equals_numpy(tmp_path):
    """The report's output SQNR and top-1 agreement, against the float and the quantized model both
    run by ONNX Runtime on the same 16 samples, in NumPy (compress computes both with its own
    executor: the two agree to float rounding, measured 2e-7 dB)."""
    out = tmp_path / "q.onnx"
    p = run_compress("quantize", FOLDED, "--calib", FIXTURES / "digits", "--max-samples", 16, "-o", out, "--format", "json")
    report = json.loads(p.stdout)
    top1, sqnr = ort_agreement(FOLDED, out, sorted((FIXTURES / "digits").glob("*.npy"))[:16], "input")
    assert report["output_sqnr_db"] == pytest.approx(sqnr, abs=1e-3)
    assert report["top1_agreement"] == top1


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
    # A ConvTranspose has a QDQ form but no integer operator: nothing for --quant-format qoperator.
    w = numpy_helper.from_array(np.ones((4, 2, 2, 2), np.float32), "w")
    g = helper.make_graph([helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [w])
    up = tmp_path / "up.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(up))
    up_data = tmp_path / "up"
    up_data.mkdir()
    np.save(up_data / "a.npy", np.ones((1, 4, 3, 3), np.float32))
    assert_clean_failure(run_compress("quantize", up, "--calib", up_data, "-o", out, "--quant-format", "qoperator"),
                         "nothing to quantize", "--quant-format qoperator", "ConvTranspose")
    assert not out.exists()
    # An operator the executor does not run, met when calibration plans the model: the node and
    # the operator are named, nothing is written.
    w = numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w")
    g = helper.make_graph([helper.make_node("Mystery", ["x"], ["m"], name="odd", domain="com.example"),
                           helper.make_node("Conv", ["m", "w"], ["y"], name="conv")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])], [w])
    odd = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)]), str(odd))
    for fmt in ("qdq", "qoperator"):
        assert_clean_failure(run_compress("quantize", odd, "--calib", up_data, "-o", out, "--quant-format", fmt),
                             "unsupported operator", "com.example::Mystery", "odd")
        assert not out.exists()
    assert_clean_failure(run_compress("quantize", FOLDED, "--calib", data, "-o", out, "--equalized-model", tmp_path / "e.onnx"),
                         "--equalized-model needs --equalize", status=1)
    assert not out.exists() and not (tmp_path / "e.onnx").exists()


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


@pytest.mark.parametrize("asymmetric", [False, True])
def test_mean_minmax_ranges_equal_onnxruntime_means(asymmetric, tmp_path):
    """--method mean-minmax: each activation's range is the mean over the samples of each sample's
    minimum and maximum, as ONNX Runtime's run of the float model gives them (NNCF's MEAN_MINMAX),
    and its scale and zero point are ORT's compute_scale_zp of that range."""
    files = FILES[:24]
    calib = tmp_path / "calib"
    calib.mkdir()
    for f in files:
        (calib / f.name).write_bytes(f.read_bytes())
    p = run_compress("quantize", FOLDED, "--calib", calib, "-o", tmp_path / "q.onnx", "--method", "mean-minmax",
                     "--format", "json", *(["--asymmetric"] if asymmetric else []))
    assert p.returncode == 0, p.stderr
    acts = json.loads(p.stdout)["summary"]["activations"]
    lo, hi = ort_ranges(FOLDED, [a["name"] for a in acts], files, "input", mean=True)
    glo, ghi = ort_ranges(FOLDED, [a["name"] for a in acts], files, "input")
    cut = 0
    for a in acts:
        n = a["name"]
        assert a["min"] == pytest.approx(lo[n], rel=1e-6, abs=1e-7) and a["max"] == pytest.approx(hi[n], rel=1e-6, abs=1e-7), (n, a, lo[n], hi[n])
        assert a["threshold"] == pytest.approx(max(abs(lo[n]), abs(hi[n])), rel=1e-5), n
        qmin, qmax = (np.uint8(0), np.uint8(255)) if asymmetric else (np.int8(-127), np.int8(127))
        zp, scale = compute_scale_zp(np.float32(lo[n]), np.float32(hi[n]), qmin, qmax, symmetric=not asymmetric)
        assert a["scale"] == pytest.approx(float(scale), rel=1e-5) and a["zero_point"] == int(zp), (n, a, scale, zp)
        cut += hi[n] < ghi[n] * 0.999
    assert cut > len(acts) // 2, "most ranges are below the largest value seen (saturating)"


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
    # (pool is not: its only quantized reader, head/conv, is excluded)
    assert sorted(r["summary"]["nodes"]) == ["block/add", "block/dw/conv", "block/pw/conv", "concat", "stem/conv"]
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


# ---- the other quantized ops, on a small model with each of them ----------------------------------

def ops_model(path):
    """Conv→Relu, ConvTranspose (weights quantized on axis 1), MaxPool→Resize→SiLU (Sigmoid·Mul),
    HardSwish, HardSigmoid·x, AveragePool, Concat, Add, GlobalAveragePool, Flatten, Gemm, Softmax,
    Reshape→Transpose→Squeeze, MatMul: every op compress quantizes, in a graph ORT also quantizes."""
    rng = np.random.default_rng(3)

    def w(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [w("c1.w", 8, 3, 3, 3), w("c1.b", 8, scale=0.1), w("ct.w", 8, 4, 2, 2), w("ct.b", 4, scale=0.1),
             w("c2.w", 8, 8, 1, 1), w("c2.b", 8, scale=0.1), w("c3.w", 8, 20, 1, 1), w("c3.b", 8, scale=0.1),
             w("fc.w", 5, 8), w("fc.b", 5, scale=0.1), w("mm.w", 5, 3),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "rs.scales"),
             numpy_helper.from_array(np.array([1, 5, 1], np.int64), "shape"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    N = helper.make_node
    nodes = [
        N("Conv", ["x", "c1.w", "c1.b"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        N("Relu", ["c1"], ["r1"], name="r1"),
        N("ConvTranspose", ["r1", "ct.w", "ct.b"], ["ct"], name="ct", strides=[2, 2]),
        N("AveragePool", ["ct"], ["ap"], name="ap", kernel_shape=[2, 2], strides=[2, 2]),
        N("MaxPool", ["r1"], ["mp"], name="mp", kernel_shape=[2, 2], strides=[2, 2]),
        N("Resize", ["mp", "", "rs.scales"], ["rs"], name="rs", mode="nearest"),
        N("Sigmoid", ["rs"], ["sg"], name="sg"),
        N("Mul", ["rs", "sg"], ["silu"], name="silu"),
        N("Conv", ["r1", "c2.w", "c2.b"], ["c2"], name="c2"),
        N("HardSwish", ["c2"], ["hs"], name="hs"),
        N("HardSigmoid", ["hs"], ["hsg"], name="hsg"),
        N("Mul", ["hs", "hsg"], ["hm"], name="hm"),
        N("Add", ["silu", "hm"], ["sum"], name="sum"),
        N("Concat", ["ap", "silu", "sum"], ["cat"], name="cat", axis=1),
        N("Conv", ["cat", "c3.w", "c3.b"], ["c3"], name="c3"),
        N("GlobalAveragePool", ["c3"], ["gap"], name="gap"),
        N("Flatten", ["gap"], ["flat"], name="flat"),
        N("Gemm", ["flat", "fc.w", "fc.b"], ["fc"], name="fc", transB=1),
        N("Softmax", ["fc"], ["sm"], name="sm", axis=1),
        N("Reshape", ["sm", "shape"], ["rsh"], name="rsh"),
        N("Transpose", ["rsh"], ["tr"], name="tr", perm=[0, 2, 1]),
        N("Squeeze", ["tr", "axes"], ["sq"], name="sq"),
        N("MatMul", ["sq", "mm.w"], ["y"], name="mm"),
    ]
    g = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))


@pytest.fixture(scope="module")
def ops_fixture(tmp_path_factory):
    d = tmp_path_factory.mktemp("ops")
    ops_model(d / "ops.onnx")
    (d / "calib").mkdir()
    rng = np.random.default_rng(11)
    for k in range(12):
        np.save(d / "calib" / f"s{k:02d}.npy", rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    return d


OPS_WEIGHTS = {"c1.w", "ct.w", "c2.w", "c3.w", "fc.w", "mm.w"}


@pytest.mark.parametrize("reduce_range", [False, True], ids=["8bit", "reduce-range"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_other_ops_equal_onnxruntime(ops_fixture, per_channel, symmetric, reduce_range, tmp_path):
    model, calib = ops_fixture / "ops.onnx", ops_fixture / "calib"
    files = sorted(calib.glob("*.npy"))
    mine, theirs = tmp_path / "mine.onnx", tmp_path / "ort.onnx"
    flags = ([] if per_channel else ["--per-tensor"]) + ([] if symmetric else ["--asymmetric"]) + (["--reduce-range"] if reduce_range else [])
    # (--quantize-epilogues: ONNX Runtime's placement of the HardSwish after c2 too.)
    p = run_compress("quantize", model, "--calib", calib, "-o", mine, "--format", "json", "--quantize-epilogues", *flags)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    ort_quantize(model, theirs, files, per_channel, symmetric, reduce_range, name="x")
    # Activation ranges come from two executors; after a GlobalAveragePool (sums in another order)
    # they differ by a few ulp: 8 ulp of scale allowed, zero points and integers exact.
    names = compare_with_ort(mine, theirs, model, OPS_WEIGHTS, maxulp=8)
    q = initializers(mine)
    # The ranges compress reports are the float model's minimum and maximum over the samples as
    # ONNX Runtime computes them (Softmax's fixed to [0, 1], as ORT does), and ONNX Runtime's own
    # compute_scale_zp turns those independent ranges into the written scales and zero points.
    qmin, qmax = (-127, 127) if symmetric else (0, 255)
    lo, hi = ort_ranges(model, [a["name"] for a in report["summary"]["activations"]], files, "x")
    lo["sm"], hi["sm"] = 0.0, 1.0
    for a in report["summary"]["activations"]:
        n = a["name"]
        np.testing.assert_array_max_ulp(np.float32([a["min"], a["max"]]), np.float32([lo[n], hi[n]]), maxulp=8)
        zp, scale = compute_scale_zp(np.float32(lo[n]), np.float32(hi[n]), np.int8(qmin) if symmetric else np.uint8(qmin),
                                     np.int8(qmax) if symmetric else np.uint8(qmax), symmetric=symmetric)
        np.testing.assert_array_max_ulp(q[n + "_scale"], np.float32(scale), maxulp=8)
        assert q[n + "_zero_point"] == zp, a
    # Pass-through chains take their root's scale: Resize ← MaxPool ← r1, AveragePool ← ct,
    # Squeeze ← Transpose ← Reshape ← Softmax (whose range is [0, 1], as ORT fixes it).
    acts = {a["name"]: a for a in report["summary"]["activations"]}
    assert set(acts) == {"x", "r1", "ct", "sg", "c2", "hs", "hsg", "silu", "hm", "sum", "cat", "c3", "gap", "fc", "sm"}
    assert acts["sm"]["min"] == 0 and acts["sm"]["max"] == 1
    assert not any(k.startswith(("rs_", "mp_", "ap_", "rsh_", "tr_", "sq_", "flat_")) for k in q if k.endswith("_scale")), sorted(q)
    # ConvTranspose's weight is per channel on axis 1 (4 output channels).
    assert q["ct.w_scale"].size == (4 if per_channel else 1)
    for w in OPS_WEIGHTS:
        assert np.abs(q[w + "_quantized"]).max() == (64 if reduce_range else 127), w
    m = onnx.load(str(mine))
    onnx.checker.check_model(m, full_check=True)
    by_name = {n.name: n for n in m.graph.node}
    producers = {o: n for n in m.graph.node for o in n.output}
    dq_axis = {a.name: a.i for a in producers[by_name["ct"].input[1]].attribute}
    assert dq_axis.get("axis", 1) == 1
    # No QDQ between c1 and the Relu it feeds.
    assert producers[by_name["r1"].input[0]].op_type == "Conv"
    assert {n.op_type for n in m.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")} == \
        {n.op_type for n in onnx.load(str(model)).graph.node}
    quantized_nodes = set(report["summary"]["nodes"])
    assert quantized_nodes == {n.name for n in onnx.load(str(model)).graph.node} - {"r1"}
    for n in m.graph.node:  # every input of a quantized node comes through a DequantizeLinear
        if n.name in quantized_nodes:
            ins = n.input[:1] if n.op_type in ("Reshape", "Squeeze", "Resize") else [i for i in n.input if i]
            assert all(producers[i].op_type == "DequantizeLinear" for i in ins), n.name
    # ONNX Runtime runs it (optimized: its QDQ fusions into integer kernels), and compress's
    # executor computes what ONNX Runtime computes with the QDQ arithmetic as written (no fusion).
    x = np.load(files[0])
    ort.InferenceSession(str(mine), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got_ort = ort.InferenceSession(str(mine), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    xp = tmp_path / "x.pb"
    xp.write_bytes(numpy_helper.from_array(x).SerializeToString())
    r = conformance._eval(str(mine), [str(xp)], str(tmp_path))
    assert r.returncode == 0, r.stderr
    got = numpy_helper.to_array(onnx.load_tensor(str(tmp_path / "output_0.pb")))
    np.testing.assert_allclose(got, got_ort, rtol=1e-4, atol=1e-5)
    assert len(names) > 40


# ---- activation functions after a Conv: the layer's fused epilogue, left in float ---------------

def epilogue_model(path):
    """Each activation-function pattern a Conv feeds: SiLU written out (Sigmoid·Mul), HardSwish,
    HardSigmoid·x, LeakyRelu, a Sigmoid alone (read by a Concat), and a SiLU whose Conv output an
    Add also reads (not an epilogue: quantized where the Add reads it, as before)."""
    rng = np.random.default_rng(5)

    def w(name, *shape, scale=0.4):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    N = helper.make_node
    inits, nodes = [w("mm.w", 12, 5)], []
    for k in range(9):
        inits += [w(f"c{k}.w", 4, 4, 3, 3), w(f"c{k}.b", 4, scale=0.1)]
    nodes += [
        N("Conv", ["x", "c0.w", "c0.b"], ["c0"], name="c0", pads=[1, 1, 1, 1]),
        N("Sigmoid", ["c0"], ["s0"], name="s0"), N("Mul", ["c0", "s0"], ["silu0"], name="silu0"),
        N("Conv", ["silu0", "c1.w", "c1.b"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        N("HardSwish", ["c1"], ["hs1"], name="hs1"),
        N("Conv", ["hs1", "c2.w", "c2.b"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
        N("HardSigmoid", ["c2"], ["hg2"], name="hg2"), N("Mul", ["hg2", "c2"], ["hm2"], name="hm2"),
        N("Conv", ["hm2", "c3.w", "c3.b"], ["c3"], name="c3", pads=[1, 1, 1, 1]),
        N("LeakyRelu", ["c3"], ["lr3"], name="lr3", alpha=0.1),
        N("Conv", ["lr3", "c4.w", "c4.b"], ["c4"], name="c4", pads=[1, 1, 1, 1]),
        N("Sigmoid", ["c4"], ["s4"], name="s4"), N("Mul", ["c4", "s4"], ["silu4"], name="silu4"),
        N("Add", ["c4", "silu4"], ["res"], name="res"),
        N("Conv", ["res", "c5.w", "c5.b"], ["c5"], name="c5", pads=[1, 1, 1, 1]),
        N("Sigmoid", ["c5"], ["s5"], name="s5"),
        # GLU-like: Mul(c6, Sigmoid(c7)) is no SiLU (the Sigmoid reads another Conv): only the
        # Sigmoid is c7's epilogue, the Mul quantizes both its inputs.
        N("Conv", ["res", "c6.w", "c6.b"], ["c6"], name="c6", pads=[1, 1, 1, 1]),
        N("Conv", ["res", "c7.w", "c7.b"], ["c7"], name="c7", pads=[1, 1, 1, 1]),
        N("Sigmoid", ["c7"], ["s7"], name="s7"), N("Mul", ["c6", "s7"], ["glu"], name="glu"),
        # A SiLU whose Sigmoid output the Concat also reads: not an epilogue.
        N("Conv", ["res", "c8.w", "c8.b"], ["c8"], name="c8", pads=[1, 1, 1, 1]),
        N("Sigmoid", ["c8"], ["s8"], name="s8"), N("Mul", ["c8", "s8"], ["m8"], name="m8"),
        N("Concat", ["s5", "res", "glu", "s8", "m8"], ["y"], name="cat", axis=1),
        # A MatMul with a constant weight feeding a Sigmoid: its epilogue (output z, read by
        # nothing quantized).
        N("MatMul", ["res", "mm.w"], ["mm"], name="mm"),
        N("Sigmoid", ["mm"], ["z"], name="sz"),
    ]
    g = helper.make_graph(nodes, "epilogues", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 20, 12, 12]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 12, 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))


def quantized_activations(path):
    """The activations a QuantizeLinear reads (weights aside)."""
    m = onnx.load(str(path))
    inits = {t.name for t in m.graph.initializer}
    return {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def test_activation_functions_after_a_conv_stay_in_float_as_its_epilogue(tmp_path):
    model = tmp_path / "epi.onnx"
    epilogue_model(model)
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(9)
    for k in range(8):
        np.save(calib / f"s{k}.npy", rng.standard_normal((1, 4, 12, 12)).astype(np.float32))
    default, ort_like, theirs = tmp_path / "d.onnx", tmp_path / "o.onnx", tmp_path / "ort.onnx"
    p = run_compress("quantize", model, "--calib", calib, "-o", default, "--format", "json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    # Default: only what a Conv, the Add and the Concat read; nothing inside Conv → activation,
    # but c4, which the Add reads too, is quantized there (and so for its Sigmoid and Mul).
    assert quantized_activations(default) == {"x", "silu0", "hs1", "hm2", "lr3", "c4", "s4", "silu4", "res", "s5",
                                              "c6", "s7", "glu", "c8", "s8", "m8"}
    assert set(report["summary"]["nodes"]) == {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "mm", "s4", "silu4", "res",
                                               "glu", "s8", "m8", "cat"}
    # --quantize-epilogues: ONNX Runtime's placement, every scale ONNX Runtime's own.
    p = run_compress("quantize", model, "--calib", calib, "-o", ort_like, "--quantize-epilogues")
    assert p.returncode == 0, p.stderr
    ort_quantize(model, theirs, sorted(calib.glob("*.npy")), True, True, name="x")
    assert quantized_activations(ort_like) == {"x", "c0", "s0", "silu0", "c1", "hs1", "c2", "hg2", "hm2", "c3", "lr3", "c4", "s4",
                                               "silu4", "res", "c5", "s5", "c6", "c7", "s7", "glu", "c8", "s8", "m8", "mm"}
    assert quantized_activations(ort_like) <= quantized_activations(theirs)
    compare_with_ort(ort_like, theirs, model, {f"c{k}.w" for k in range(9)} | {"mm.w"}, maxulp=8)  # (two executors: see the ops test)
    # Both run in ONNX Runtime and agree with compress's executor; fewer rounding points, closer
    # to the float model on these samples.
    x = np.load(calib / "s0.npy")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = np.concatenate([o.ravel() for o in ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})])
    errs = {}
    for q in (default, ort_like):
        onnx.checker.check_model(onnx.load(str(q)), full_check=True)
        got = np.concatenate([o.ravel() for o in ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})])
        ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        xp = tmp_path / "x.pb"
        xp.write_bytes(numpy_helper.from_array(x).SerializeToString())
        r = conformance._eval(str(q), [str(xp)], str(tmp_path))
        assert r.returncode == 0, r.stderr
        mine = np.concatenate([numpy_helper.to_array(onnx.load_tensor(str(tmp_path / f"output_{k}.pb"))).ravel() for k in range(2)])
        np.testing.assert_allclose(mine, got, rtol=1e-4, atol=1e-5)
        errs[q.name] = float(((got - ref) ** 2).sum())
    assert errs["d.onnx"] < errs["o.onnx"], errs


def test_an_activation_function_after_a_float_product_is_quantized_as_usual(tmp_path):
    """Only a product compress quantizes as a weighted op has an epilogue: a Sigmoid after a
    MatMul of two activations, or after a Conv left in float by --exclude, is an activation op
    like any other (its input quantized)."""
    rng = np.random.default_rng(2)
    N = helper.make_node
    inits = [numpy_helper.from_array((rng.standard_normal((4, 4, 3, 3)) * 0.4).astype(np.float32), n) for n in ("ca.w", "cb.w")]
    nodes = [N("Transpose", ["x"], ["xt"], name="xt", perm=[0, 1, 3, 2]),
             N("MatMul", ["x", "xt"], ["aa"], name="aa"),
             N("Sigmoid", ["aa"], ["sa"], name="sa"),
             N("Conv", ["sa", "ca.w"], ["ca"], name="ca", pads=[1, 1, 1, 1]),
             N("Sigmoid", ["ca"], ["sc"], name="sc"),
             N("Conv", ["sc", "cb.w"], ["y"], name="cb", pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "act-matmul", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), str(model))
    calib = tmp_path / "calib"
    calib.mkdir()
    for k in range(4):
        np.save(calib / f"s{k}.npy", rng.standard_normal((1, 4, 8, 8)).astype(np.float32))
    out = tmp_path / "q.onnx"
    p = run_compress("quantize", model, "--calib", calib, "-o", out)
    assert p.returncode == 0, p.stderr
    assert quantized_activations(out) == {"aa", "sa", "sc"}  # ca's Sigmoid is its epilogue
    p = run_compress("quantize", model, "--calib", calib, "-o", out, "--exclude", "ca")
    assert p.returncode == 0, p.stderr
    # ca in float: its Sigmoid quantized at its input (and sa, which only ca reads, not at all)
    assert quantized_activations(out) == {"aa", "ca", "sc"}
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


# ---- QOperator ------------------------------------------------------------------------------------

INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool",
               "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu"}


def single_node_model(m, node, values):
    """`node` alone, its constant inputs from `m`'s initializers, the others graph inputs."""
    inits = {t.name: t for t in m.graph.initializer}
    ins = [i for i in node.input if i and i not in inits]
    graph_inputs = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(values[i].dtype), values[i].shape) for i in ins]
    g = helper.make_graph([node], "one", graph_inputs, [helper.make_empty_tensor_value_info(o) for o in node.output],
                          [inits[i] for i in node.input if i in inits])
    return helper.make_model(g, opset_imports=list(m.opset_import)), ins


def np_requantize(acc, multiplier, zp, dtype):
    """int32 accumulators to the output type: round half to even of acc · multiplier (float32, as
    ONNX Runtime's requantization multiplies), plus the zero point, saturated."""
    info = np.iinfo(dtype)
    y = np.rint(acc.astype(np.float32) * np.float32(multiplier).astype(np.float32)) + np.int64(zp)
    return np.clip(y, info.min, info.max).astype(dtype)


def np_conv_int32(x, w, group, pads, strides, dilations):
    """Integer convolution of int64 operands (NCHW, OIHW), accumulated in int64 (exact)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (x.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (x.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, o, oh, ow), np.int64)
    og = o // group
    for g in range(group):
        xs = x[:, g * cg:(g + 1) * cg]
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = ky * dilations[0], kx * dilations[1]
                patch = xs[:, :, y0:y0 + strides[0] * (oh - 1) + 1:strides[0], x0:x0 + strides[1] * (ow - 1) + 1:strides[1]]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[g * og:(g + 1) * og, :, ky, kx])
    return out


def np_integer_op(node, v):
    """NumPy reference of the uint8/int8 product operators (QLinearConv, QLinearMatMul, QGemm),
    exact integer products, for CPUs where ONNX Runtime's uint8 × int8 kernels saturate."""
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    i = [v[n] if n else None for n in node.input]
    if node.op_type == "QLinearConv":
        x, xs, xz, w, ws, wz, ys, yz = i[:8]
        rank = x.ndim - 2
        assert rank == 2 and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        acc = np_conv_int32(x.astype(np.int64) - np.int64(xz), w.astype(np.int64) - np.asarray(wz, np.int64).reshape(-1, 1, 1, 1),
                            a.get("group", 1), a.get("pads", [0] * 4), a.get("strides", [1, 1]), a.get("dilations", [1, 1]))
        if len(i) > 8 and i[8] is not None:
            acc += i[8].astype(np.int64).reshape(1, -1, 1, 1)
        mult = (np.float32(xs) * np.asarray(ws, np.float32) / np.float32(ys)).astype(np.float32).reshape(1, -1, 1, 1)
        return np_requantize(acc, mult, yz, yz.dtype)
    if node.op_type == "QLinearMatMul":
        x, xs, xz, w, ws, wz, ys, yz = i
        acc = np.matmul(x.astype(np.int64) - np.int64(xz), w.astype(np.int64) - np.asarray(wz, np.int64))
        return np_requantize(acc, np.float32(xs) * np.asarray(ws, np.float32) / np.float32(ys), yz, yz.dtype)
    if node.op_type == "QGemm":
        x, xs, xz, w, ws, wz = i[:6]
        c = i[6] if len(i) > 6 else None
        ys = i[7] if len(i) > 7 else None
        yz = i[8] if len(i) > 8 else None
        xa = x.astype(np.int64) - np.int64(xz)
        wa = w.astype(np.int64) - np.asarray(wz, np.int64).reshape(-1, 1) if a.get("transB", 0) else w.astype(np.int64) - np.asarray(wz, np.int64)
        acc = np.matmul(xa.T if a.get("transA", 0) else xa, wa.T if a.get("transB", 0) else wa)
        if c is not None:
            acc = acc + c.astype(np.int64)
        scale = np.float32(a.get("alpha", 1.0)) * np.float32(xs) * np.asarray(ws, np.float32)
        if ys is None:
            return (acc.astype(np.float32) * scale).astype(np.float32)
        return np_requantize(acc, (scale / np.float32(ys)).astype(np.float32), yz, yz.dtype)
    raise AssertionError(node.op_type)


NUMPY_INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "QGemm"}


def per_op_agreement(path, feeds, tmp_path, numpy_products=False):
    """Runs every integer operator of `path` alone, on the inputs ONNX Runtime computed for it, in
    ONNX Runtime and in compress; returns {op: largest |difference| in quantization steps}. With
    `numpy_products`, QLinearConv, QLinearMatMul and QGemm are compared with `np_integer_op`
    instead of ONNX Runtime (whose uint8 × int8 kernels saturate on CPUs without VNNI)."""
    m = onnx.load(str(path))
    all_out = onnx.load(str(path))
    outputs = {o.name for o in all_out.graph.output}
    for n in all_out.graph.node:
        for o in n.output:
            if o and o not in outputs:
                all_out.graph.output.append(helper.make_empty_tensor_value_info(o))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(all_out.SerializeToString(), so, providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    values.update(feeds)
    steps = {}
    for k, n in enumerate(m.graph.node):
        if n.op_type not in INTEGER_OPS:
            continue
        one, ins = single_node_model(m, n, values)
        if numpy_products and n.op_type in NUMPY_INTEGER_OPS:
            inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
            want = np_integer_op(n, {**inits, **values})
        else:
            want = ort.InferenceSession(one.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {i: values[i] for i in ins})[0]
        d = tmp_path / f"op{k}"
        d.mkdir()
        onnx.save(one, str(d / "m.onnx"))
        paths = []
        for j, i in enumerate(ins):
            (d / f"in{j}.pb").write_bytes(numpy_helper.from_array(values[i]).SerializeToString())
            paths.append(str(d / f"in{j}.pb"))
        r = conformance._eval(str(d / "m.onnx"), paths, str(d))
        assert r.returncode == 0, (n.name, r.stderr)
        got = numpy_helper.to_array(onnx.load_tensor(str(d / "output_0.pb")))
        assert got.dtype == want.dtype and got.shape == want.shape, n.name
        steps[n.name] = int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max())
    return steps


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("which", ["digits", "ops"])
def test_qoperator_runs_in_both_and_agrees_per_op(which, symmetric, ops_fixture, tmp_path):
    if which == "digits":
        model, calib, name, n = FOLDED, FIXTURES / "digits", "input", 32
    else:
        model, calib, name, n = ops_fixture / "ops.onnx", ops_fixture / "calib", "x", 12
    out = tmp_path / "q.onnx"
    # ONNX Runtime's uint8 × int8 kernels saturate on x86 without VNNI unless the weights are 7-bit
    # (conftest.ORT_INT8_EXACT): there the asymmetric form is written as ORT's docs advise.
    flags = [] if symmetric else ["--asymmetric"] + ([] if ORT_INT8_EXACT else ["--reduce-range"])
    p = run_compress("quantize", model, "--calib", calib, "--max-samples", n, "-o", out, "--quant-format", "qoperator",
                     "--format", "json", *flags)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    ops = {nd.op_type for nd in m.graph.node}
    want = {"QLinearConv", "QGemm", "QLinearAdd", "QLinearConcat"} if which == "digits" else \
        {"QLinearConv", "QGemm", "QLinearMatMul", "QLinearMul", "QLinearAdd", "QLinearConcat", "QLinearGlobalAveragePool",
         "QLinearAveragePool", "QLinearSigmoid"}
    assert want <= ops, ops
    assert not ({"Conv", "Gemm", "Add", "Concat"} & ops), "every convertible node is an integer operator"
    ms = {nd.op_type for nd in m.graph.node if nd.domain == "com.microsoft"}
    assert ms and ms <= {"QGemm", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid"}
    assert not any(nd.op_type == "DequantizeLinear" and nd.input[0] in {t.name for t in m.graph.initializer} for nd in m.graph.node), \
        "weights are integer inputs of the operators, not dequantized"
    if which == "digits" and not symmetric:
        assert "Relu" not in ops, "asymmetric: each Relu after an integer operator is absorbed into its output range"
    x = np.concatenate([np.load(f) for f in sorted(calib.glob("*.npy"))[:4]]) if which == "digits" else np.load(sorted(calib.glob("*.npy"))[0])
    steps = per_op_agreement(out, {name: x}, tmp_path)
    assert len(steps) == len([nd for nd in m.graph.node if nd.op_type in INTEGER_OPS]) >= len(want)
    assert max(steps.values()) <= 1, steps
    # The whole model: ONNX Runtime (its optimized session) and compress's executor.
    y_ort = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
    xp = tmp_path / "x.pb"
    xp.write_bytes(numpy_helper.from_array(x).SerializeToString())
    r = conformance._eval(str(out), [str(xp)], str(tmp_path))
    assert r.returncode == 0, r.stderr
    y = numpy_helper.to_array(onnx.load_tensor(str(tmp_path / "output_0.pb")))
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
    spread = np.abs(ref).max()
    # Measured identical; 2 % of the output range (about 2.5 int8 steps of it) leaves room for
    # ORT's kernels on another CPU rounding an intermediate step apart.
    assert np.abs(y - y_ort).max() <= 0.02 * spread, (np.abs(y - y_ort).max(), spread)
    # The report's quality figures, on the samples compress calibrated on, against ONNX Runtime
    # running the float and the written model.
    top1, sqnr = ort_agreement(model, out, sorted(calib.glob("*.npy"))[:n], name)
    # (measured: equal to 1e-5 dB and the same agreement; compress computes the quantized model
    # with its executor, whose integer operators may round one step apart from ORT's)
    assert report["top1_agreement"] == pytest.approx(top1, abs=1 / n) and report["output_sqnr_db"] == pytest.approx(sqnr, abs=0.01), \
        (report["top1_agreement"], top1, report["output_sqnr_db"], sqnr)
    if which == "digits":
        assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.75 and top1 >= 0.9


@pytest.mark.parametrize("which", ["digits", "ops"])
def test_qoperator_8bit_asymmetric_products_equal_numpy(which, ops_fixture, tmp_path):
    """The asymmetric QOperator model with 8-bit weights (uint8 activations × int8 weights, no
    --reduce-range), which ONNX Runtime computes exactly only on CPUs with VNNI: each QLinearConv,
    QLinearMatMul and QGemm against exact integer products in NumPy, the other operators against
    ONNX Runtime, on the same inputs; every element within one quantization step."""
    if which == "digits":
        model, calib, name, n = FOLDED, FIXTURES / "digits", "input", 32
    else:
        model, calib, name, n = ops_fixture / "ops.onnx", ops_fixture / "calib", "x", 12
    out = tmp_path / "q.onnx"
    p = run_compress("quantize", model, "--calib", calib, "--max-samples", n, "-o", out, "--quant-format", "qoperator",
                     "--asymmetric", "--quiet")
    assert p.returncode == 0, p.stderr
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    products = [nd for nd in m.graph.node if nd.op_type in NUMPY_INTEGER_OPS]
    assert {nd.op_type for nd in products} >= ({"QLinearConv", "QGemm"} if which == "digits" else {"QLinearConv", "QGemm", "QLinearMatMul"})
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    weights = [inits[nd.input[3]] for nd in products if nd.input[3] in inits]
    assert weights and all(w.dtype == np.int8 for w in weights) and max(int(np.abs(w).max()) for w in weights) > 63, \
        "8-bit weights (beyond the 7 bits --reduce-range keeps)"
    x = np.concatenate([np.load(f) for f in sorted(calib.glob("*.npy"))[:4]]) if which == "digits" else np.load(sorted(calib.glob("*.npy"))[0])
    steps = per_op_agreement(out, {name: x}, tmp_path, numpy_products=True)
    assert len(steps) == len([nd for nd in m.graph.node if nd.op_type in INTEGER_OPS])
    assert max(steps.values()) <= 1, steps
    # The NumPy reference itself against ONNX Runtime where ORT is exact on every x86 CPU: the same
    # model with 7-bit weights (--reduce-range) and with int8 activations (symmetric).
    for flags in (["--asymmetric", "--reduce-range"], []):
        ref = tmp_path / f"r{len(flags)}.onnx"
        p = run_compress("quantize", model, "--calib", calib, "--max-samples", n, "-o", ref, "--quant-format", "qoperator", "--quiet", *flags)
        assert p.returncode == 0, p.stderr
        rm = onnx.load(str(ref))
        everything = onnx.load(str(ref))
        for nd in everything.graph.node:
            everything.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in nd.output if o)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(everything.SerializeToString(), so, providers=["CPUExecutionProvider"])
        values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {name: x})))
        values[name] = x
        values.update({t.name: numpy_helper.to_array(t) for t in rm.graph.initializer})
        checked = 0
        for nd in rm.graph.node:
            if nd.op_type in NUMPY_INTEGER_OPS:
                got, want = np_integer_op(nd, values), values[nd.output[0]]
                assert got.dtype == want.dtype and got.shape == want.shape, nd.name
                assert np.abs(got.astype(np.float64) - want.astype(np.float64)).max() <= (1 if got.dtype != np.float32 else 1e-4 * np.abs(want).max()), nd.name
                checked += 1
        assert checked == len(products), (flags, checked)


# ---- cross-layer equalization and bias correction --------------------------------------------------

def depthwise_model(path):
    """A MobileNet-style block whose depthwise channels' weight ranges spread over ~2.5 decades (as
    BN folding leaves them): the case cross-layer equalization is for."""
    rng = np.random.default_rng(5)
    spread = (10 ** rng.uniform(-2, 0.5, 16)).astype(np.float32)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32), "c1.w"),
             numpy_helper.from_array((rng.standard_normal(16) * 0.1).astype(np.float32), "c1.b"),
             numpy_helper.from_array((rng.standard_normal((16, 1, 3, 3)) * spread[:, None, None, None]).astype(np.float32), "dw.w"),
             numpy_helper.from_array((rng.standard_normal(16) * 0.1 * spread).astype(np.float32), "dw.b"),
             # the pointwise layer reads each depthwise channel at the inverse of its scale, so every
             # channel matters to the output (as a BN-folded network's next layer does)
             numpy_helper.from_array((rng.standard_normal((8, 16, 1, 1)) * 0.3 / spread[None, :, None, None]).astype(np.float32), "pw.w"),
             numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "pw.b"),
             numpy_helper.from_array((rng.standard_normal((4, 8)) * 0.3).astype(np.float32), "fc.w"),
             numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(np.float32), "fc.b")]
    N = helper.make_node
    nodes = [N("Conv", ["x", "c1.w", "c1.b"], ["c1"], name="c1", pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["r1"], name="r1"),
             N("Conv", ["r1", "dw.w", "dw.b"], ["dw"], name="dw", pads=[1, 1, 1, 1], group=16), N("Relu", ["dw"], ["r2"], name="r2"),
             N("Conv", ["r2", "pw.w", "pw.b"], ["pw"], name="pw"), N("GlobalAveragePool", ["pw"], ["gap"], name="gap"),
             N("Flatten", ["gap"], ["flat"], name="flat"), N("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))


@pytest.fixture(scope="module")
def dw_fixture(tmp_path_factory):
    d = tmp_path_factory.mktemp("dw")
    depthwise_model(d / "dw.onnx")
    rng = np.random.default_rng(21)
    for part in ("calib", "eval"):
        (d / part).mkdir()
        for k in range(16):
            np.save(d / part / f"s{k:02d}.npy", rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    return d


def output_sqnr(float_model, quantized, x, name):
    """Output SQNR (dB) of the quantized model as ONNX Runtime runs it (with its integer kernels
    where they are exact, conftest.ORT_INT8_EXACT; elsewhere the QDQ arithmetic as written), against
    the float model."""
    so = ort.SessionOptions()
    if not ORT_INT8_EXACT:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(float_model), providers=["CPUExecutionProvider"]).run(None, {name: x})[0].astype(np.float64)
    y = ort.InferenceSession(str(quantized), so, providers=["CPUExecutionProvider"]).run(None, {name: x})[0].astype(np.float64)
    return 10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum())


def held_out(which, dw_fixture):
    if which == "digits":
        files = sorted((FIXTURES / "digits").glob("*.npy"))
        return FOLDED, FIXTURES / "digits", 64, "input", np.concatenate([np.load(f) for f in files[64:160]])
    return (dw_fixture / "dw.onnx", dw_fixture / "calib", 16, "x",
            np.concatenate([np.load(f) for f in sorted((dw_fixture / "eval").glob("*.npy"))]))


def test_equalization_keeps_the_float_function_and_balances_ranges(dw_fixture, tmp_path):
    model, calib, n, name, x = held_out("dw", dw_fixture)
    eq = tmp_path / "eq.onnx"
    r = run_compress("quantize", model, "--calib", calib, "--max-samples", n, "-o", tmp_path / "q.onnx", "--equalize",
                     "--equalized-model", eq, "--quiet")
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(onnx.load(str(eq)), full_check=True)
    a = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
    b = ort.InferenceSession(str(eq), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())
    w0, w1 = initializers(model), initializers(eq)
    assert not np.allclose(w0["dw.w"], w1["dw.w"]), "the depthwise weights were rescaled"
    # After the sweeps each pair's ranges meet: Conv₁'s output channel range = Conv₂'s input channel range.
    for first, second, depthwise in (("c1.w", "dw.w", True), ("dw.w", "pw.w", False)):
        r1 = np.abs(w1[first]).reshape(w1[first].shape[0], -1).max(1)
        r2 = np.abs(w1[second]).reshape(16, -1).max(1) if depthwise else np.abs(w1[second]).max(axis=(0, 2, 3))
        np.testing.assert_allclose(r1, r2, rtol=2e-3)
    # The spread of the depthwise channels' ranges shrinks (that is what per-tensor scales need).
    spread = lambda w: np.abs(w).reshape(16, -1).max(1).max() / np.abs(w).reshape(16, -1).max(1).min()
    assert spread(w1["dw.w"]) < spread(w0["dw.w"]) / 10


# Every combination but one: equalization on the digits model with per-tensor weights and symmetric
# activations measures 34.1 dB against 34.5 dB without (its one pair, block/dw → block/pw, has
# balanced weights already and the rescaling widens block/dw/out's per-tensor activation range);
# Docs/quantize.md gives the figures.
@pytest.mark.parametrize("flag,which,granularity", [
    (f, w, g) for f in ("--equalize", "--bias-correction") for w in ("digits", "dw") for g in ("--per-tensor", "--per-channel")
    if (f, w, g) != ("--equalize", "digits", "--per-tensor")])
def test_equalize_and_bias_correction_do_not_worsen_sqnr(flag, which, granularity, dw_fixture, tmp_path):
    """Output SQNR on held-out samples, each model run by ONNX Runtime, computed here with NumPy."""
    model, calib, n, name, x = held_out(which, dw_fixture)
    extra = ["--per-tensor"] if granularity == "--per-tensor" else []
    got = {}
    for variant in ([], [flag]):
        out = tmp_path / f"q{len(variant)}.onnx"
        r = run_compress("quantize", model, "--calib", calib, "--max-samples", n, "-o", out, "--quiet", *extra, *variant)
        assert r.returncode == 0, r.stderr
        onnx.checker.check_model(onnx.load(str(out)), full_check=True)
        got[bool(variant)] = output_sqnr(model, out, x, name)
    assert got[True] >= got[False], got
    if which == "dw" and granularity == "--per-tensor" and flag == "--equalize":
        assert got[True] >= got[False] + 20, got  # the imbalanced depthwise layer is what CLE repairs (1.5 → 35 dB)


def test_bias_correction_equals_numpy(tmp_path):
    """Each corrected bias = b − (W_q − W)·E[x], E[x] the per-channel mean of the layer's input on
    the calibration samples (computed here by ONNX Runtime on the float model)."""
    files = FILES[:32]
    out = tmp_path / "q.onnx"
    r = run_compress("quantize", FOLDED, "--calib", FIXTURES / "digits", "--max-samples", len(files), "-o", out,
                     "--per-tensor", "--bias-correction", "--quiet")
    assert r.returncode == 0, r.stderr
    plain = tmp_path / "plain.onnx"
    assert run_compress("quantize", FOLDED, "--calib", FIXTURES / "digits", "--max-samples", len(files), "-o", plain,
                        "--per-tensor", "--quiet").returncode == 0
    f = onnx.load(str(FOLDED))
    inits = {t.name: numpy_helper.to_array(t) for t in f.graph.initializer}
    probe = onnx.load(str(FOLDED))
    convs = [n for n in f.graph.node if n.op_type in ("Conv", "Gemm")]
    for n in convs:
        if n.input[0] not in {o.name for o in probe.graph.output} and n.input[0] != "input":
            probe.graph.output.append(helper.make_empty_tensor_value_info(n.input[0]))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    sums, count = {}, {}
    for fpath in files:
        x = np.load(fpath)
        vals = dict(zip(names, sess.run(None, {"input": x})))
        vals["input"] = x
        for n in convs:
            v = vals[n.input[0]].astype(np.float64)
            sums[n.input[0]] = sums.get(n.input[0], 0) + v.sum(axis=0)
            count[n.input[0]] = count.get(n.input[0], 0) + v.shape[0]
    q, p = initializers(out), initializers(plain)
    changed = 0
    for n in convs:
        mean = sums[n.input[0]] / count[n.input[0]]  # E[x] per channel and position
        w = inits[n.input[1]].astype(np.float64)
        wq = q[n.input[1] + "_quantized"].astype(np.float32) * q[n.input[1] + "_scale"]
        d = wq.astype(np.float64) - w
        if n.op_type == "Conv":
            # E over positions of (ΔW ∗ x) = ΔW ∗ E[x] averaged over the output positions, zero padding included.
            at = {a.name: (list(a.ints) if a.ints else a.i) for a in n.attribute}
            group, (sh, sw), (pt, pl, pb, pr) = at.get("group", 1), at.get("strides", [1, 1]), at.get("pads", [0, 0, 0, 0])
            kh, kw = w.shape[2:]
            xp = np.pad(mean, ((0, 0), (pt, pb), (pl, pr)))
            ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
            taps = np.stack([np.stack([xp[:, i:i + sh * ho:sh, j:j + sw * wo:sw].mean(axis=(1, 2)) for j in range(kw)], -1)
                             for i in range(kh)], -2)  # [C, kh, kw]
            cout, cpg = w.shape[0], w.shape[1]
            opg = cout // group
            shift = np.array([(d[c] * taps[(c // opg) * cpg:(c // opg + 1) * cpg]).sum() for c in range(cout)])
        else:  # Gemm, transB = 1: [N, K]
            shift = d @ mean
        want = inits[n.input[2]].astype(np.float64) - shift
        s = q[n.input[2] + "_quantized_scale"].astype(np.float64)
        got = q[n.input[2] + "_quantized"].astype(np.float64) * s
        assert np.all(np.abs(got - want) <= 0.5 * s + 1e-6 * np.abs(want)), n.name
        changed += int((q[n.input[2] + "_quantized"] != p[n.input[2] + "_quantized"]).sum())
    assert changed > 0, "the correction changed the integers"


def test_op_types_restricts_like_onnxruntime(tmp_path):
    """--op-types Conv,Gemm quantizes what quantize_static(op_types_to_quantize=[Conv, Gemm]) does."""
    mine, theirs = tmp_path / "mine.onnx", tmp_path / "ort.onnx"
    report = ours(FOLDED, mine, "--op-types", "Conv,Gemm")
    assert sorted(report["summary"]["nodes"]) == ["block/dw/conv", "block/pw/conv", "fc", "head/conv", "stem/conv"]
    ort_quantize(FOLDED, theirs, FILES, True, True, ops=["Conv", "Gemm"])
    weights = {n.input[1] for n in onnx.load(str(FOLDED)).graph.node if n.op_type in ("Conv", "Gemm")}
    names = compare_with_ort(mine, theirs, FOLDED, weights, ops=["Conv", "Gemm"])
    assert {x["name"] for x in report["summary"]["activations"]} == {"input", "stem/out", "block/dw/out", "pool_out", "flatten_out"}
    assert len(names) == 40  # 5 weights × 3 + 5 biases × 3 + 5 activations × 2
    assert_clean_failure(run_compress("quantize", FOLDED, "--calib", FIXTURES / "digits", "-o", tmp_path / "x.onnx", "--op-types", "Conv,Foo"),
                         "--op-types", "Foo")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_qoperator_equals_onnxruntime(per_channel, symmetric, tmp_path):
    """--quant-format qoperator against quantize_static(quant_format=QOperator) on the digits model:
    every scale, zero point and integer tensor compress writes is ORT's (same names), including
    the outputs whose range is their Relu's (ORT's adjust_tensor_ranges)."""
    mine, theirs = tmp_path / "mine.onnx", tmp_path / "ort.onnx"
    ours(FOLDED, mine, "--quant-format", "qoperator", *([] if per_channel else ["--per-tensor"]), *([] if symmetric else ["--asymmetric"]))
    qops = ["Conv", "Gemm", "Add", "Concat", "MaxPool", "Flatten"]
    ort_quantize(FOLDED, theirs, FILES, per_channel, symmetric, fmt=QuantFormat.QOperator, ops=qops)
    weights = {n.input[1] for n in onnx.load(str(FOLDED)).graph.node if n.op_type in ("Conv", "Gemm")}
    # 4 ulp: the QOperator form also quantizes the logits, a Gemm output whose 192-term sums the
    # two executors add in different orders (compress's batch-1 Gemm is a gemv).
    names = compare_with_ort(mine, theirs, FOLDED, weights, ops=qops, maxulp=4)
    assert {"block/add_out_scale", "stem/bn_out_scale", "logits_scale", "fc.weight_quantized", "fc.bias_quantized"} <= set(names)
    a, b = onnx.load(str(theirs)), onnx.load(str(mine))
    count = lambda m: sorted(n.op_type for n in m.graph.node if n.op_type.startswith(("QLinear", "QGemm")))
    assert count(a) == count(b)
