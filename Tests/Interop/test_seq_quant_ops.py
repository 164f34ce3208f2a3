"""Conformance of compress's recurrent, quantization and control-flow operators.

Operators: LSTM, GRU, QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger,
ConvInteger, QLinearMatMul, QLinearConv, If, Loop, Scan.

Two parts:
1. ONNX backend tests. Every backend case (node, light, pytorch-converted, pytorch-operator,
   simple; collected by conformance.collect_cases) whose model uses one of the operators above is
   run through `compress _eval MODEL --inputs input_*.pb --outputs-dir DIR` (compress's default
   thread count; a light model on the runner's dummy input), and each output_k.pb is compared with
   the expected one by conformance.py's compare_tensors: floats with rtol 1e-3, atol 1e-7;
   integers, bools and the quantized small types (int4/uint4/int2/uint2, float8, float4) exactly
   (NaN equal to NaN); dtype and shape must match. Which cases are claimed is decided at
   collection time from the committed claim list (conformance.committed_claims()): a case is
   claimed when conformance.missing_outside is empty, and must pass. A case with sequence/optional
   graph inputs or outputs must be refused cleanly (exit 1, one `error: ` line, no crash). Cases
   blocked only by operators outside this family (a Loop body's SequenceInsert, say) or listed in
   conformance.NOT_CLAIMED_CASES are not parametrized; the summary says how many and why.
   Nothing is skipped at run time.
2. Differential tests against ONNX Runtime on models built here: the LSTM/GRU variants the
   backend data does not cover (reverse, bidirectional, sequence_lens, initial states,
   activation lists with alpha/beta, clip, input_forget, linear_before_reset, layout 1 — the
   latter checked against ONNX Runtime on the transposed layout-0 problem, as ONNX Runtime's CPU
   kernels reject layout 1), per-axis quantization with ties, random integer matmuls and
   convolutions, and If/Loop/Scan programs. QLinearMatMul, QLinearConv and DynamicQuantizeLinear
   are compared exactly with a NumPy implementation of the ONNX reference arithmetic (see
   _requantize), and with ONNX Runtime at most one step apart on a small fraction of elements.

A per-op table of backend pass counts is printed at the end.
Run: COMPRESS_BIN=.build/release/compress pytest -q Tests/Interop/test_seq_quant_ops.py
"""
import collections
import os
import tempfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxruntime as ort

import conformance
from conftest import COMPRESS_BIN as COMPRESS, assert_clean_failure, crash_description

DATA = conformance.DATA
SUITES = ("node", "light", "pytorch-converted", "pytorch-operator", "simple")
RTOL, ATOL = 1e-3, 1e-7

OPS = set("""
LSTM GRU QuantizeLinear DequantizeLinear DynamicQuantizeLinear MatMulInteger ConvInteger
QLinearMatMul QLinearConv If Loop Scan
""".split())

# Besides conformance's exact types (integers, bool, int4/uint4/int2/uint2): the 8- and 4-bit
# float types quantization produces, compared exactly (the runner would allow rtol 1e-3).
EXACT_TYPES = conformance.EXACT_TYPES | {
    TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ,
    TensorProto.FLOAT4E2M1, TensorProto.INT4, TensorProto.UINT4, TensorProto.INT2, TensorProto.UINT2,
}

CLAIMS = conformance.committed_claims()
_FAMILY = [c for c in conformance.collect_cases(SUITES) if c.op_types & OPS]
# Sequence/optional graph inputs or outputs (not modeled by compress): must be refused cleanly.
REFUSED = [c for c in _FAMILY if c.io_kinds - {"tensor_type"}]
CASES, LEFT_OUT = conformance.claimed_family_cases([c for c in _FAMILY if c not in REFUSED], CLAIMS, OPS)
RESULTS = collections.defaultdict(collections.Counter)  # op -> Counter(pass/fail/refused)


def _case_id(case):
    return case.id


def _eval(model_path, input_paths, out_dir):
    return conformance._eval(model_path, list(input_paths), out_dir, COMPRESS, threads=None)


def _check_backend_case(case):
    """Every data set of a claimed case must match; assertion errors fail it."""
    assert case.data_sets or case.light_expected, f"{case.name}: no test data"
    failures = conformance.data_set_failures(case, COMPRESS, threads=None, rtol=RTOL, atol=ATOL, exact_types=EXACT_TYPES)
    assert not failures, f"{case.name}: " + "; ".join(failures)


def _check_refused(case):
    """Sequence/optional inputs or outputs (not modeled by compress): a clean one-line refusal."""
    assert case.data_sets, f"{case.name}: no test data"
    inputs, _ = conformance.data_set_files(case.data_sets[0])
    with tempfile.TemporaryDirectory() as out:
        r = _eval(case.model_path, inputs, out)
    assert crash_description(r) is None, f"{case.name}: crashed ({crash_description(r)}): {r.stderr[-2000:]}"
    assert_clean_failure(r)


def _record(ops, outcome):
    for op in ops:
        if op in OPS:
            RESULTS[op][outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def _binary(compress_bin):
    """A missing binary fails every test of the module (conftest's compress_bin)."""
    return compress_bin


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["", "recurrent/quantization/control-flow backend cases per op (pass / fail / refused):"]
    for op in sorted(RESULTS):
        c = RESULTS[op]
        lines.append(f"  {op:22s} {c['pass']:4d} {c['fail']:4d} {c['refused']:4d}")
    lines += conformance.left_out_summary(LEFT_OUT, "test_seq_quant_ops")
    text = "\n".join(lines)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            tr.write_line(text)
    else:
        print(text)


def test_binary_exists():
    assert os.path.exists(COMPRESS), f"compress binary not found at {COMPRESS} (set COMPRESS_BIN)"


def test_collection_found_the_cases():
    assert len(CASES) >= 70 and len(REFUSED) >= 5, (len(CASES), len(REFUSED))
    assert {op for c in CASES for op in c.op_types} >= OPS, sorted(OPS - {op for c in CASES for op in c.op_types})


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_backend_case(case):
    try:
        _check_backend_case(case)
    except AssertionError:
        _record(case.op_types, "fail")
        raise
    _record(case.op_types, "pass")


@pytest.mark.parametrize("case", REFUSED, ids=_case_id)
def test_backend_sequence_case_is_refused(case):
    try:
        _check_refused(case)
    except AssertionError:
        _record(case.op_types, "fail")
        raise
    _record(case.op_types, "refused")


# ---------------------------------------------------------------------------------------------
# Differential tests against ONNX Runtime.

def _model(nodes, inputs, outputs, opset, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset < 21 else 10
    return m


def _run_compress(model, feeds):
    """Runs `model` on `feeds` (name -> array, in graph input order) with compress."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path)
        paths = []
        for i, (name, value) in enumerate(feeds.items()):
            p = os.path.join(tmp, f"input_{i}.pb")
            onnx.save_tensor(numpy_helper.from_array(value, name), p)
            paths.append(p)
        out = os.path.join(tmp, "out")
        r = _eval(path, paths, out)
        assert r.returncode == 0, f"compress failed: {r.stderr.strip()}"
        return [numpy_helper.to_array(onnx.load_tensor(os.path.join(out, f"output_{k}.pb")))
                for k in range(len(model.graph.output))]


def _run_ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _assert_close(got, want, what, exact=False):
    """Each output as compare_tensors sees it, at rtol 1e-3, atol 1e-6 (0 and 0 when `exact`)."""
    assert len(got) == len(want), f"{what}: {len(got)} outputs, reference has {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        conformance.assert_match(w, g, f"{what} output {k}", 0.0 if exact else RTOL, 0.0 if exact else 1e-6)


RNG = np.random.default_rng(7)


def _f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _rnn_problem(op, seq, batch, inp, hidden, dirs, peepholes=False):
    g = 4 if op == "LSTM" else 3
    arrays = {
        "X": _f32(seq, batch, inp),
        "W": _f32(dirs, g * hidden, inp, scale=0.5),
        "R": _f32(dirs, g * hidden, hidden, scale=0.5),
        "B": _f32(dirs, 2 * g * hidden, scale=0.3),
        "sequence_lens": np.array(RNG.integers(1, seq + 1, size=batch), dtype=np.int32),
        "initial_h": _f32(dirs, batch, hidden, scale=0.5),
    }
    if op == "LSTM":
        arrays["initial_c"] = _f32(dirs, batch, hidden, scale=0.5)
        if peepholes:
            arrays["P"] = _f32(dirs, 3 * hidden, scale=0.5)
    return arrays


def _rnn_model(op, arrays, hidden, attrs, layout=0, opset=14):
    names = ["X", "W", "R", "B", "sequence_lens", "initial_h"] + (["initial_c", "P"] if op == "LSTM" else [])
    names = [n for n in names if n in arrays]
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=hidden, layout=layout, **attrs)
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(arrays[n].dtype), arrays[n].shape) for n in names]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs]
    return _model([node], inputs, outputs, opset)


RNN_CASES = [
    ("LSTM", "forward_all_inputs", 1, dict(), True),
    ("LSTM", "reverse", 1, dict(direction="reverse"), True),
    ("LSTM", "bidirectional", 2, dict(direction="bidirectional"), True),
    ("LSTM", "clip", 1, dict(clip=0.4), False),
    ("LSTM", "input_forget", 1, dict(input_forget=1), True),
    ("LSTM", "activations_relu", 1, dict(activations=["Sigmoid", "Relu", "Tanh"]), False),
    ("LSTM", "activations_alpha_beta", 2, dict(direction="bidirectional",
                                                 activations=["HardSigmoid", "LeakyRelu", "Tanh", "Sigmoid", "Tanh", "LeakyRelu"],
                                                 activation_alpha=[0.3, 0.05, 0.2], activation_beta=[0.4]), False),
    ("GRU", "forward_all_inputs", 1, dict(), False),
    ("GRU", "linear_before_reset", 1, dict(linear_before_reset=1), False),
    ("GRU", "reverse_lbr", 1, dict(direction="reverse", linear_before_reset=1), False),
    ("GRU", "bidirectional", 2, dict(direction="bidirectional"), False),
    ("GRU", "clip", 2, dict(direction="bidirectional", clip=0.3, linear_before_reset=1), False),
    ("GRU", "activations_alpha_beta", 1, dict(activations=["HardSigmoid", "LeakyRelu"], activation_alpha=[0.25, 0.1],
                                               activation_beta=[0.45]), False),
]


@pytest.mark.parametrize("op,name,dirs,attrs,peepholes", RNN_CASES, ids=[f"{c[0]}-{c[1]}" for c in RNN_CASES])
def test_rnn_against_onnxruntime(op, name, dirs, attrs, peepholes):
    hidden = 5
    arrays = _rnn_problem(op, seq=4, batch=3, inp=3, hidden=hidden, dirs=dirs, peepholes=peepholes)
    model = _rnn_model(op, arrays, hidden, attrs)
    _assert_close(_run_compress(model, arrays), _run_ort(model, arrays), f"{op} {name}")


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_rnn_zero_length_sequence(op):
    """A row with sequence length 0 has zero outputs and zero final states, as in ONNX Runtime."""
    arrays = _rnn_problem(op, seq=3, batch=3, inp=2, hidden=2, dirs=2)
    arrays["sequence_lens"] = np.array([0, 3, 1], np.int32)
    model = _rnn_model(op, arrays, 2, dict(direction="bidirectional"))
    _assert_close(_run_compress(model, arrays), _run_ort(model, arrays), f"{op} zero-length row")


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_rnn_layout_1_matches_layout_0(op):
    """Layout 1 (batch-major) equals ONNX Runtime's layout-0 result with the axes transposed."""
    hidden, dirs = 4, 2
    arrays = _rnn_problem(op, seq=5, batch=2, inp=3, hidden=hidden, dirs=dirs, peepholes=(op == "LSTM"))
    attrs = dict(direction="bidirectional")
    want = _run_ort(_rnn_model(op, arrays, hidden, attrs), arrays)
    batch_major = dict(arrays)
    batch_major["X"] = np.ascontiguousarray(arrays["X"].transpose(1, 0, 2))
    for s in ("initial_h", "initial_c"):
        if s in arrays:
            batch_major[s] = np.ascontiguousarray(arrays[s].transpose(1, 0, 2))
    got = _run_compress(_rnn_model(op, batch_major, hidden, attrs, layout=1), batch_major)
    want_t = [want[0].transpose(2, 0, 1, 3)] + [w.transpose(1, 0, 2) for w in want[1:]]
    _assert_close(got, [np.ascontiguousarray(w) for w in want_t], f"{op} layout 1")


def test_quantize_linear_per_axis_with_ties():
    x = np.array([[2.5, 3.5, -2.5, -3.5], [300, -300, 0.5, 1.5], [7.5, -0.5, 64, 1000]], dtype=np.float32)
    for zp_type, axis, scale, zp in [
        (np.int8, 0, np.array([1, 2, 0.5], np.float32), np.array([0, 1, -3], np.int8)),
        (np.uint8, 1, np.array([1, 0.25, 2, 4], np.float32), np.array([128, 0, 3, 255], np.uint8)),
    ]:
        node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=axis)
        model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                       [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(zp_type)), x.shape)], 13,
                       [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "z")])
        _assert_close(_run_compress(model, {"x": x}), _run_ort(model, {"x": x}), f"QuantizeLinear axis {axis}", exact=True)


def test_dequantize_linear_per_axis():
    for dtype in (np.int8, np.uint8, np.int32):
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -1000), min(info.max, 1000)
        x = RNG.integers(lo, hi, size=(2, 3, 4)).astype(dtype)
        scale = np.array([0.5, 0.1, 3.0], np.float32)
        zp = np.zeros(3, dtype) if dtype == np.int32 else RNG.integers(lo, hi, size=3).astype(dtype)
        node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1)
        model = _model([node], [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), x.shape)],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)], 13,
                       [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "z")])
        _assert_close(_run_compress(model, {"x": x}), _run_ort(model, {"x": x}), f"DequantizeLinear {dtype.__name__}")


# ---- exact references for the requantizing operators -------------------------------------------
#
# The ONNX specification (and onnx.reference, which the backend data comes from) defines the
# QLinear ops as: accumulate (a - a_zero_point)·(b - b_zero_point) in int32, multiply by
# a_scale·b_scale/y_scale, add y_zero_point, round half to even and saturate to the output type.
# The multiplier is evaluated in the scales' type (float32), the product in float64 (NumPy's
# int32 × float32 promotion). compress must equal this bit for bit.
#
# ONNX Runtime is not exact: it requantizes in fixed point / with a float32 multiply (MLAS), and
# DynamicQuantizeLinear divides with a reciprocal multiply, so a value within an ulp of a .5 tie
# can round the other way. It is still compared, at most one step apart, and on at most
# ORT_OFF_BY_ONE_MAX of the elements: real ties are rare, and an error in compress's rounding or
# zero point would move far more elements.
ORT_OFF_BY_ONE_MAX = 0.01


def _requantize(acc, multiplier, y_zero_point, dtype):
    """round_half_even(acc · multiplier + y_zero_point), saturated to `dtype` (ONNX reference)."""
    assert acc.dtype == np.int32
    info = np.iinfo(dtype)
    d = acc.astype(np.float64) * np.asarray(multiplier, np.float64) + float(y_zero_point)
    return np.clip(np.rint(d), info.min, info.max).astype(dtype)


def _multiplier(s_a, s_b, s_y):
    """a_scale · b_scale / y_scale, rounded to float32 after each operation as NumPy does."""
    return (np.float32(s_a) * np.asarray(s_b, np.float32)) / np.float32(s_y)


def _int32_matmul(a, b):
    """int32 accumulation of an integer matmul (checked to fit: no wrap-around hides here)."""
    acc = np.matmul(a.astype(np.int64), b.astype(np.int64))
    assert np.abs(acc).max() < 2 ** 31
    return acc.astype(np.int32)


def _int32_conv2d(x, w, pads, strides):
    """int32 accumulation of a 2-D convolution (group 1, dilation 1) of zero-point-free values."""
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), np.int64)
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    oh = (xp.shape[2] - kh) // strides[0] + 1
    ow = (xp.shape[3] - kw) // strides[1] + 1
    acc = np.zeros((n, m, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + strides[0] * oh:strides[0], j:j + strides[1] * ow:strides[1]]
            acc += np.einsum("nchw,mc->nmhw", patch, w[:, :, i, j].astype(np.int64))
    assert np.abs(acc).max() < 2 ** 31
    return acc.astype(np.int32)


def _dynamic_quantize_reference(x):
    """DynamicQuantizeLinear as the ONNX reference computes it, in float32: the range widened to
    include 0, scale = (max - min) / 255, zero point = saturate(round(0 - min / scale)),
    y = saturate(round(x / scale) + zero point); rounding half to even."""
    hi, lo = np.float32(max(0.0, x.max())), np.float32(min(0.0, x.min()))
    scale = np.float32(1.0) if hi == lo else np.float32(hi - lo) / np.float32(255)
    zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255)).astype(np.float32)
    y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
    return y, np.float32(scale), np.uint8(zp)


def _assert_near_ort(got, want, what):
    """At most one quantization step from ONNX Runtime, on at most ORT_OFF_BY_ONE_MAX of elements."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert diff.max(initial=0) <= 1, f"{what}: {int((diff > 1).sum())} elements differ from ONNX Runtime by more than 1"
    frac = float((diff == 1).mean()) if diff.size else 0.0
    assert frac <= ORT_OFF_BY_ONE_MAX, f"{what}: {frac:.1%} of elements are one step from ONNX Runtime"


def test_requantize_reference_matches_onnx_reference():
    """The NumPy reference above is the ONNX reference: checked on ties, saturation and both
    output types against onnx.reference's QLinearMatMul."""
    from onnx.reference import ReferenceEvaluator
    for qtype, a_zp, b_zp, y_zp, ys in [(np.uint8, 3, 7, 10, 0.9), (np.int8, -3, -2, 10, 0.05), (np.uint8, 0, 0, 0, 1.0)]:
        info = np.iinfo(qtype)
        a = RNG.integers(info.min, info.max, size=(3, 8, 9), endpoint=True).astype(qtype)
        b = RNG.integers(info.min, info.max, size=(9, 5), endpoint=True).astype(qtype)
        node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
        t = helper.np_dtype_to_tensor_dtype(np.dtype(qtype))
        scalars = {"as": np.float32(0.5), "az": qtype(a_zp), "bs": np.float32(0.25), "bz": qtype(b_zp),
                   "ys": np.float32(ys), "yz": qtype(y_zp)}
        inits = [numpy_helper.from_array(np.array(v), n) for n, v in scalars.items()]
        model = _model([node], [helper.make_tensor_value_info("a", t, a.shape), helper.make_tensor_value_info("b", t, b.shape)],
                       [helper.make_tensor_value_info("y", t, None)], 13, inits)
        onnx_ref = ReferenceEvaluator(model).run(None, {"a": a, "b": b})[0]
        acc = _int32_matmul(a.astype(np.int32) - a_zp, b.astype(np.int32) - b_zp)
        ours = _requantize(acc, _multiplier(0.5, 0.25, ys), y_zp, qtype)
        np.testing.assert_array_equal(ours, onnx_ref)
        # Scales 0.5·0.25/1.0 make every odd accumulator an exact tie: half to even, both ways.
        if ys == 1.0:
            assert (acc % 8 == 4).any()


def test_dynamic_quantize_linear_random():
    shapes = [((3, 7), -1.0, 2.0), ((50,), 0.5, 3.0), ((4, 4), -5.0, -0.1), ((40, 50), -3.0, 7.0), ((1000,), -0.2, 0.1)]
    for shape, lo, hi in shapes:
        x = RNG.uniform(lo, hi, size=shape).astype(np.float32)
        node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
        model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                       [helper.make_tensor_value_info("y", TensorProto.UINT8, shape),
                        helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
                        helper.make_tensor_value_info("z", TensorProto.UINT8, [])], 11)
        got, want = _run_compress(model, {"x": x}), _run_ort(model, {"x": x})
        y, scale, zp = _dynamic_quantize_reference(x)
        assert got[0].dtype == np.uint8 and got[2].dtype == np.uint8 and got[1].dtype == np.float32
        np.testing.assert_array_equal(got[0], y, err_msg=f"DynamicQuantizeLinear y {shape}")
        assert got[1] == scale and got[2] == zp, (got[1], scale, got[2], zp)
        np.testing.assert_array_equal(got[2], want[2])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
        _assert_near_ort(got[0], want[0], f"DynamicQuantizeLinear {shape}")


# ONNX Runtime's u8×s8 kernels add pairs of products in saturating int16 (x86 pmaddubsw), so
# with full-range int8 weights it is not a reference; weights stay in [-64, 64) where it is exact,
# and every integer result is also checked against NumPy's int64 arithmetic.
def _s8_weights(size):
    return RNG.integers(-64, 64, size=size).astype(np.int8)


@pytest.mark.parametrize("a_type,b_type", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)])
def test_matmul_integer_random(a_type, b_type):
    a = RNG.integers(np.iinfo(a_type).min, np.iinfo(a_type).max, size=(2, 3, 5)).astype(a_type)
    b = (_s8_weights((5, 4)) if b_type == np.int8
         else RNG.integers(np.iinfo(b_type).min, np.iinfo(b_type).max, size=(5, 4)).astype(b_type))
    azp = np.array(RNG.integers(0, 20), dtype=a_type)
    bzp = RNG.integers(0, 20, size=4).astype(b_type)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    model = _model([node], [helper.make_tensor_value_info("a", helper.np_dtype_to_tensor_dtype(np.dtype(a_type)), a.shape),
                            helper.make_tensor_value_info("b", helper.np_dtype_to_tensor_dtype(np.dtype(b_type)), b.shape)],
                   [helper.make_tensor_value_info("y", TensorProto.INT32, None)], 13,
                   [numpy_helper.from_array(azp, "az"), numpy_helper.from_array(bzp, "bz")])
    got = _run_compress(model, {"a": a, "b": b})
    _assert_close(got, _run_ort(model, {"a": a, "b": b}), "MatMulInteger")
    ref = (a.astype(np.int64) - azp.astype(np.int64)) @ (b.astype(np.int64) - bzp.astype(np.int64))
    np.testing.assert_array_equal(got[0], ref.astype(np.int32))


def test_matmul_integer_full_range_against_numpy():
    """Full-range int8 weights and per-row A zero points, against NumPy only (see above)."""
    a = RNG.integers(0, 256, size=(4, 6)).astype(np.uint8)
    b = RNG.integers(-128, 128, size=(6, 3)).astype(np.int8)
    azp = RNG.integers(0, 256, size=4).astype(np.uint8)
    node = helper.make_node("MatMulInteger", ["a", "b", "az"], ["y"])
    model = _model([node], [helper.make_tensor_value_info("a", TensorProto.UINT8, a.shape),
                            helper.make_tensor_value_info("b", TensorProto.INT8, b.shape)],
                   [helper.make_tensor_value_info("y", TensorProto.INT32, None)], 13, [numpy_helper.from_array(azp, "az")])
    got = _run_compress(model, {"a": a, "b": b})
    ref = (a.astype(np.int64) - azp.astype(np.int64)[:, None]) @ b.astype(np.int64)
    np.testing.assert_array_equal(got[0], ref.astype(np.int32))


@pytest.mark.parametrize("qtype", [np.uint8, np.int8])
def test_qlinear_matmul_random(qtype):
    info = np.iinfo(qtype)
    a = RNG.integers(info.min, info.max, size=(2, 16, 32)).astype(qtype)
    b = _s8_weights((32, 24)) if qtype == np.int8 else RNG.integers(info.min, info.max, size=(32, 24)).astype(qtype)
    az, bz, yz = 3, (-2 if qtype == np.int8 else 7), 10
    inits = [numpy_helper.from_array(np.array(v, dtype=t), n) for n, v, t in [
        ("as", 0.02, np.float32), ("az", az, qtype), ("bs", 0.013, np.float32), ("bz", bz, qtype),
        ("ys", 0.9, np.float32), ("yz", yz, qtype)]]
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    t = helper.np_dtype_to_tensor_dtype(np.dtype(qtype))
    model = _model([node], [helper.make_tensor_value_info("a", t, a.shape), helper.make_tensor_value_info("b", t, b.shape)],
                   [helper.make_tensor_value_info("y", t, None)], 13, inits)
    got, want = _run_compress(model, {"a": a, "b": b}), _run_ort(model, {"a": a, "b": b})
    acc = _int32_matmul(a.astype(np.int32) - az, b.astype(np.int32) - bz)
    ref = _requantize(acc, _multiplier(0.02, 0.013, 0.9), yz, qtype)
    assert len(got) == 1
    assert got[0].dtype == ref.dtype and got[0].shape == ref.shape, (got[0].dtype, got[0].shape)
    np.testing.assert_array_equal(got[0], ref, err_msg="QLinearMatMul vs the exact ONNX reference")
    # The output must not be saturated everywhere (that would make the comparison trivial).
    assert len(np.unique(ref)) > 20
    _assert_near_ort(got[0], want[0], "QLinearMatMul")


def test_conv_integer_random():
    x = RNG.integers(0, 255, size=(2, 4, 6, 5)).astype(np.uint8)
    w = RNG.integers(0, 255, size=(6, 2, 3, 2)).astype(np.uint8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], group=2, pads=[1, 0, 1, 1], strides=[2, 1])
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape),
                            helper.make_tensor_value_info("w", TensorProto.UINT8, w.shape)],
                   [helper.make_tensor_value_info("y", TensorProto.INT32, None)], 13,
                   [numpy_helper.from_array(np.array(100, np.uint8), "xz"), numpy_helper.from_array(np.array(120, np.uint8), "wz")])
    _assert_close(_run_compress(model, {"x": x, "w": w}), _run_ort(model, {"x": x, "w": w}), "ConvInteger")


def test_qlinear_conv_per_channel():
    x = RNG.integers(0, 255, size=(1, 8, 15, 15)).astype(np.uint8)
    w = _s8_weights((8, 8, 3, 3))
    bias = RNG.integers(-500, 500, size=8).astype(np.int32)
    ws = np.array([0.01, 0.02, 0.005, 0.03, 0.0025, 0.015, 0.007, 0.011], np.float32)
    inits = [numpy_helper.from_array(v, n) for n, v in [
        ("xs", np.array(0.05, np.float32)), ("xz", np.array(128, np.uint8)), ("w", w),
        ("ws", ws), ("wz", np.zeros(8, np.int8)),
        ("ys", np.array(0.2, np.float32)), ("yz", np.array(100, np.uint8)), ("b", bias)]]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[1, 1, 1, 1], strides=[2, 2])
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
                   [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], 13, inits)
    got, want = _run_compress(model, {"x": x}), _run_ort(model, {"x": x})
    acc = _int32_conv2d(x.astype(np.int32) - 128, w, pads=[1, 1, 1, 1], strides=[2, 2]) + bias[None, :, None, None]
    ref = _requantize(acc, _multiplier(0.05, ws, 0.2)[None, :, None, None], 100, np.uint8)
    assert len(got) == 1
    assert got[0].dtype == np.uint8 and got[0].shape == ref.shape == (1, 8, 8, 8), (got[0].dtype, got[0].shape)
    np.testing.assert_array_equal(got[0], ref, err_msg="QLinearConv vs the exact ONNX reference")
    from onnx.reference import ReferenceEvaluator
    np.testing.assert_array_equal(ReferenceEvaluator(model).run(None, {"x": x})[0], ref, err_msg="NumPy reference vs onnx.reference")
    assert len(np.unique(ref)) > 20
    _assert_near_ort(got[0], want[0], "QLinearConv")


def _scalar_info(name, t, shape=()):
    return helper.make_tensor_value_info(name, t, list(shape))


def test_if_selects_branch_reading_outer_scope():
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    then_g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3])])
    else_g = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 3])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)
    model = _model([node], [_scalar_info("c", TensorProto.BOOL), x_info],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], 13)
    x = _f32(2, 3)
    for c in (True, False):
        feeds = {"c": np.array(c), "x": x}
        _assert_close(_run_compress(model, feeds), _run_ort(model, feeds), f"If cond={c}")


def _loop_model():
    """y = x; for i in 0..<M while sum(y) < limit: y = y * 2 + i; scan out y, i."""
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["y_in", "two"], ["y2"]),
         helper.make_node("Add", ["y2", "fi"], ["y_out"]),
         helper.make_node("ReduceSum", ["y_out"], ["s"], keepdims=0),
         helper.make_node("Less", ["s", "limit"], ["c_out"]),
         helper.make_node("Identity", ["y_out"], ["scan_y"]),
         helper.make_node("Identity", ["i"], ["scan_i"])],
        "body",
        [_scalar_info("i", TensorProto.INT64), _scalar_info("c_in", TensorProto.BOOL),
         helper.make_tensor_value_info("y_in", TensorProto.FLOAT, [3])],
        [_scalar_info("c_out", TensorProto.BOOL), helper.make_tensor_value_info("y_out", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("scan_y", TensorProto.FLOAT, [3]), _scalar_info("scan_i", TensorProto.INT64)],
        initializer=[numpy_helper.from_array(np.array(2, np.float32), "two")])
    node = helper.make_node("Loop", ["M", "c", "x"], ["y", "ys", "is"], body=body)
    return _model([node], [_scalar_info("M", TensorProto.INT64), _scalar_info("c", TensorProto.BOOL),
                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]), _scalar_info("limit", TensorProto.FLOAT)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
                   helper.make_tensor_value_info("ys", TensorProto.FLOAT, None),
                   helper.make_tensor_value_info("is", TensorProto.INT64, None)], 13)


@pytest.mark.parametrize("m,cond,limit", [(5, True, 1e9), (10, True, 40.0), (0, True, 1e9), (3, False, 1e9)],
                         ids=["trip-count", "condition-stops", "zero-trips", "cond-false"])
def test_loop_against_onnxruntime(m, cond, limit):
    model = _loop_model()
    feeds = {"M": np.array(m, np.int64), "c": np.array(cond), "x": np.array([1, -0.5, 2], np.float32),
             "limit": np.array(limit, np.float32)}
    _assert_close(_run_compress(model, feeds), _run_ort(model, feeds), f"Loop M={m} cond={cond}")


def test_scan_directions_and_axes():
    """Cumulative sum over axis 1 of x, read in reverse, the scan output stacked on axis 1."""
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x_t"], ["acc_out"]), helper.make_node("Identity", ["acc_out"], ["out_t"])],
        "body", [helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [2]),
                 helper.make_tensor_value_info("x_t", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("out_t", TensorProto.FLOAT, [2])])
    node = helper.make_node("Scan", ["init", "x"], ["final", "outs"], body=body, num_scan_inputs=1,
                            scan_input_axes=[1], scan_input_directions=[1], scan_output_axes=[1], scan_output_directions=[0])
    model = _model([node], [helper.make_tensor_value_info("init", TensorProto.FLOAT, [2]),
                            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                   [helper.make_tensor_value_info("final", TensorProto.FLOAT, [2]),
                    helper.make_tensor_value_info("outs", TensorProto.FLOAT, [2, 5])], 16)
    feeds = {"init": np.array([0.5, -1], np.float32), "x": _f32(2, 5)}
    _assert_close(_run_compress(model, feeds), _run_ort(model, feeds), "Scan")


def test_unsupported_sequence_body_is_refused_in_one_line():
    model_dir = os.path.join(DATA, "node", "test_loop13_seq")
    inputs, _ = conformance.data_set_files(os.path.join(model_dir, "test_data_set_0"))
    with tempfile.TemporaryDirectory() as out:
        r = _eval(os.path.join(model_dir, "model.onnx"), inputs, out)
    # A refusal: exit status 1, one `error: ` line, no trap (a status >= 128 is a crash).
    assert crash_description(r) is None, f"crashed ({crash_description(r)}): {r.stderr[-2000:]}"
    assert_clean_failure(r)
