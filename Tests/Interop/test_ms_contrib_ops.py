"""compress's com.microsoft contrib operators against ONNX Runtime and against NumPy.

Each test builds a one-node graph with onnx.helper (domain com.microsoft, opset 1), feeds seeded
random inputs, runs it through `compress _eval` (conformance._eval) and through ONNX Runtime's
CPU provider (graph optimizations off, so ORT runs the contrib kernel itself), and compares the
outputs of compress with both ORT and an independent NumPy reference written here in float64
(conformance.compare_tensors: numpy.testing semantics, |got - want| <= atol + rtol·|want|).

Operators: FusedConv (every activation ORT's CPU kernel accepts, with and without the sum input
Z, bias, groups, strides, padding, dilation, 1-D), Gelu, FastGelu (with and without bias),
BiasGelu, QuickGelu (alpha), SkipLayerNormalization (beta, bias, broadcast skip, the optional
outputs mean / inv_std_var / input_skip_bias_sum). Malformed nodes must be refused with exit
status 1 and a message, never a crash (a status >= 128 or a negative one is a signal).
`compress ops --format json` must list every one of them.
"""
from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import onnx
import onnxruntime as ort  # required: a missing ONNX Runtime fails the module instead of skipping it
import pytest
from onnx import TensorProto, helper, numpy_helper

import conformance
from conftest import COMPRESS_BIN as COMPRESS

MS = "com.microsoft"

# Tolerances (rtol, atol), per comparison; all outputs are O(1) by construction.
# - Elementwise Gelu family, float32: ORT evaluates erf / tanh / e^x with MLAS polynomials
#   (a few ulp), compress with libm's erff / tanhf / expf (<= 1-2 ulp); both round every
#   intermediate to float32, so results agree to a few ulp: rtol 1e-5 and atol 1e-6 for the
#   values near 0 where a relative bound is meaningless. The float64 NumPy reference differs
#   from a correctly rounded float32 result by <= 0.5 ulp plus the intermediates' rounding:
#   the same bound holds.
ELEMENTWISE_TOL = (1e-5, 1e-6)
# - FusedConv: sums of up to C/group·k² = 72 float32 products in an order that differs between
#   compress (register-tiled GEMM), ORT (MLAS) and NumPy (float64): each result carries about
#   sqrt(72)·2^-24·Σ|terms| of rounding, Σ|terms| <= ~10 here, so ~5e-6 absolute: rtol 1e-4,
#   atol 1e-5. The activations themselves are within a few ulp (as above).
CONV_TOL = (1e-4, 1e-5)
# - SkipLayerNormalization: ORT accumulates E[x] and E[x²] in float32 (one pass) and divides by
#   sqrt(var + eps); compress accumulates two passes in float64 and multiplies by the reciprocal.
#   With H <= 768 values of spread ~1.5 ORT's variance is relatively off by ~H·2^-24 ≈ 5e-5 at
#   worst (typically far less), i.e. ~2.5e-5 on the normalized value: rtol 1e-4, atol 1e-5.
#   Against the float64 NumPy reference compress is within a few float32 ulp: rtol 1e-5, atol 1e-6.
SLN_ORT_TOL = (1e-4, 1e-5)
SLN_NUMPY_TOL = (1e-5, 1e-6)
# - float16 inputs: compress and ORT both compute in float32 and round once to float16 (ORT's
#   float16 SkipLayerNormalization and QuickGelu kernels convert to float, as compress does), so
#   they may differ by one float16 ulp (2^-10 relative): rtol 2e-3, atol 1e-3.
HALF_TOL = (2e-3, 1e-3)

NP_TO_ONNX = {np.dtype(t): helper.np_dtype_to_tensor_dtype(np.dtype(t))
              for t in (np.float32, np.float16, np.float64, np.int64, np.int32, np.int8, np.uint8, np.bool_)}


# ---- running one node through compress and ORT ----------------------------------------------------

def one_node_model(op, inputs, outputs, attrs=None, initializers=None, output_types=None, domain=MS, opset=1):
    """A model of one node (default: com.microsoft at its opset 1; the default domain at `opset`
    when `domain` is ""). `inputs` maps graph-input names to arrays, in the node's
    input order; a None value is an omitted optional input (empty name in the node). `outputs`
    lists the node's output names ("" for an omitted optional output); `output_types` the element
    type of each named output (default: that of the first input). `initializers` maps names that
    are node inputs but not graph inputs to arrays."""
    initializers = initializers or {}
    node_inputs = [name if (value is not None or name in initializers) else "" for name, value in inputs.items()]
    while node_inputs and node_inputs[-1] == "":
        node_inputs.pop()
    node = helper.make_node(op, node_inputs, outputs, domain=domain, **(attrs or {}))
    graph_inputs = [helper.make_tensor_value_info(n, NP_TO_ONNX[v.dtype], list(v.shape))
                    for n, v in inputs.items() if v is not None and n not in initializers]
    first = next(v for v in inputs.values() if v is not None)
    named = [o for o in outputs if o]
    types = output_types or [NP_TO_ONNX[first.dtype]] * len(named)
    graph_outputs = [helper.make_tensor_value_info(o, t, None) for o, t in zip(named, types)]
    inits = [numpy_helper.from_array(v, n) for n, v in initializers.items()]
    graph = helper.make_graph([node], op.lower(), graph_inputs, graph_outputs, inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, opset)] if domain == MS else [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=opsets)


def feeds_of(inputs, initializers=None):
    initializers = initializers or {}
    return {n: v for n, v in inputs.items() if v is not None and n not in initializers}


def run_compress(model, feeds, tmp_path):
    """compress _eval on the model; returns (completed process, list of output arrays or None)."""
    path = str(tmp_path / "model.onnx")
    onnx.save(model, path)
    paths = []
    for k, (name, value) in enumerate(feeds.items()):
        p = str(tmp_path / f"input_{k}.pb")
        with open(p, "wb") as f:
            f.write(numpy_helper.from_array(value, name).SerializeToString())
        paths.append(p)
    out = tmp_path / "out"
    r = conformance._eval(path, paths, str(out), COMPRESS, threads=None)
    assert r.returncode >= 0 and r.returncode < 128, f"compress crashed (status {r.returncode}): {r.stderr[-2000:]}"
    if r.returncode != 0:
        return r, None
    n = len(model.graph.output)
    return r, [numpy_helper.to_array(conformance.read_tensor(str(out / f"output_{k}.pb"))) for k in range(n)]


def run_ort(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check_numpy(model, feeds, references, tmp_path, numpy_tol, names=None):
    """Runs compress only; each output must match its NumPy reference (numpy_tol; None leaves one
    output unchecked). Returns compress's outputs."""
    r, got = run_compress(model, feeds, tmp_path)
    assert r.returncode == 0, r.stderr
    names = names or [o.name for o in model.graph.output]
    assert len(got) == len(references) == len(names)
    for name, g, ref in zip(names, got, references):
        if ref is not None:
            # The reference is float64: compare in the output's own type (shape, values).
            conformance.assert_match(np.asarray(ref).astype(g.dtype), g, f"{name} vs NumPy", *numpy_tol)
    return got


def check(model, feeds, references, tmp_path, ort_tol, numpy_tol, names=None):
    """Runs compress and ORT; each compress output must match the NumPy reference (numpy_tol; None
    leaves one output to ORT alone), checked first and without ORT, then ORT's output (ort_tol).
    Dtype and shape must be equal too."""
    got = check_numpy(model, feeds, references, tmp_path, numpy_tol, names)
    names = names or [o.name for o in model.graph.output]
    want_ort = run_ort(model, feeds)
    assert len(want_ort) == len(got)
    for name, g, o in zip(names, got, want_ort):
        conformance.assert_match(o, g, f"{name} vs ONNX Runtime", *ort_tol)


def expect_refusal(model, feeds, tmp_path, fragment):
    r, _ = run_compress(model, feeds, tmp_path)
    assert r.returncode == 1, f"status {r.returncode}, expected 1 (a refusal): {r.stderr[-1000:]}"
    assert fragment in r.stderr, r.stderr


# ---- NumPy references (float64) ------------------------------------------------------------------

def np_conv(x, w, b, strides, pads, dilations, group):
    """Direct N-d (1-D or 2-D) convolution, float64, by summing shifted strided windows."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    one_d = x.ndim == 3
    if one_d:
        x, w = x[:, :, None, :], w[:, :, None, :]
        strides, dilations = [1] + list(strides), [1] + list(dilations)
        pads = [0, pads[0], 0, pads[1]]
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    mg = m // group
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    y = np.zeros((n, m, oh, ow))
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * mg:(g + 1) * mg]
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dilations[0], j * dilations[1]
                patch = xs[:, :, r0:r0 + strides[0] * (oh - 1) + 1:strides[0], c0:c0 + strides[1] * (ow - 1) + 1:strides[1]]
                y[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, ws[:, :, i, j])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y[:, :, 0, :] if one_d else y


def np_sigmoid(v):
    return 1 / (1 + np.exp(-v))


ACTIVATIONS = {
    # name: (activation_params, NumPy function)
    None: (None, lambda v: v),
    "Relu": (None, lambda v: np.maximum(v, 0)),
    "Tanh": (None, np.tanh),
    "Sigmoid": (None, np_sigmoid),
    "LeakyRelu": ([0.15], lambda v: np.where(v >= 0, v, 0.15 * v)),
    "Clip": ([-0.4, 0.7], lambda v: np.clip(v, -0.4, 0.7)),
    "HardSigmoid": ([0.3, 0.45], lambda v: np.clip(0.3 * v + 0.45, 0, 1)),
}

_erf = np.vectorize(math.erf)


def np_gelu(v):
    v = v.astype(np.float64)
    return 0.5 * v * (1 + _erf(v / math.sqrt(2)))


def np_fast_gelu(v):
    v = v.astype(np.float64)
    return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))


def np_quick_gelu(v, alpha):
    v = v.astype(np.float64)
    return v * np_sigmoid(alpha * v)


def np_skip_layer_norm(x, skip, gamma, beta, bias, eps):
    s = x.astype(np.float64) + skip.astype(np.float64)  # skip broadcasts over the batch
    if bias is not None:
        s = s + bias.astype(np.float64)
    mean = s.mean(-1, keepdims=True)
    var = ((s - mean) ** 2).mean(-1, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    y = (s - mean) * inv * gamma.astype(np.float64)
    if beta is not None:
        y = y + beta.astype(np.float64)
    return y, mean, inv, s


# ---- FusedConv ------------------------------------------------------------------------------------

# (X shape, W shape, bias, Conv attributes): plain 3x3 with padding, strided, dilated with
# asymmetric padding, grouped, depthwise (its own kernel path), 1x1 over a batch (the in-place
# product), no bias, 1-D, auto_pad.
CONV_SHAPES = [
    ((1, 3, 8, 8), (4, 3, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((2, 4, 9, 7), (6, 4, 3, 3), True, dict(strides=[2, 2], pads=[1, 0, 1, 2])),
    ((1, 4, 10, 10), (4, 4, 3, 3), False, dict(dilations=[2, 1], pads=[2, 0, 1, 1])),
    ((1, 8, 6, 6), (6, 4, 3, 3), True, dict(group=2, pads=[1, 1, 1, 1])),
    ((2, 8, 7, 7), (8, 1, 3, 3), True, dict(group=8, pads=[1, 1, 1, 1])),
    ((3, 16, 5, 5), (8, 16, 1, 1), True, {}),
    ((1, 6, 12), (4, 3, 5), True, dict(group=2, pads=[2, 1], strides=[2])),
    ((1, 3, 7, 7), (5, 3, 2, 2), True, dict(auto_pad="SAME_UPPER")),
]


def conv_output_shape(x_shape, w_shape, attrs):
    x = np.zeros(x_shape, np.float32)
    w = np.zeros(w_shape, np.float32)
    m = onnx.helper.make_model(onnx.helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], "c",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape), helper.make_tensor_value_info("w", TensorProto.FLOAT, w_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x, "w": w})[0].shape


def explicit_pads(x_shape, w_shape, attrs):
    """The pads NumPy's reference uses (auto_pad SAME_UPPER resolved as ONNX defines it)."""
    rank = len(x_shape) - 2
    if attrs.get("auto_pad") == "SAME_UPPER":
        begins, ends = [], []
        for d in range(rank):
            s = attrs.get("strides", [1] * rank)[d]
            out = -(-x_shape[2 + d] // s)
            total = max(0, (out - 1) * s + w_shape[2 + d] - x_shape[2 + d])
            begins.append(total // 2)
            ends.append(total - total // 2)
        return begins + ends
    return attrs.get("pads", [0] * (2 * rank))


@pytest.mark.parametrize("with_z", [False, True], ids=["noZ", "Z"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS), ids=[a or "none" for a in ACTIVATIONS])
@pytest.mark.parametrize("shape_index", range(len(CONV_SHAPES)))
def test_fused_conv(shape_index, activation, with_z, tmp_path):
    x_shape, w_shape, bias, attrs = CONV_SHAPES[shape_index]
    rng = np.random.default_rng(1000 + shape_index)
    fan_in = int(np.prod(w_shape[1:]))
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) * 1.5 / np.sqrt(fan_in)).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if bias else None
    y_shape = conv_output_shape(x_shape, w_shape, attrs)
    z = rng.standard_normal(y_shape).astype(np.float32) if with_z else None
    params, fn = ACTIVATIONS[activation]
    node_attrs = dict(attrs)
    if activation:
        node_attrs["activation"] = activation
    if params is not None:
        node_attrs["activation_params"] = params
    # Weights as initializers on even shapes (the packed-weight path), graph inputs on odd ones.
    inits = {"W": w, **({"B": b} if bias else {})} if shape_index % 2 == 0 else {}
    inputs = {"X": x, "W": w, "B": b, "Z": z}
    model = one_node_model("FusedConv", inputs, ["Y"], node_attrs, initializers=inits)
    rank = len(x_shape) - 2
    ref = np_conv(x, w, b, attrs.get("strides", [1] * rank), explicit_pads(x_shape, w_shape, attrs),
                  attrs.get("dilations", [1] * rank), attrs.get("group", 1))
    if z is not None:
        ref = ref + z.astype(np.float64)
    assert ref.shape == tuple(y_shape)
    check(model, feeds_of(inputs, inits), [fn(ref)], tmp_path, CONV_TOL, CONV_TOL)


def test_fused_conv_activation_changes_the_result(tmp_path):
    """Guards the test above against an activation silently ignored: Relu must zero negatives."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    inputs = {"X": x, "W": w}
    (tmp_path / "a").mkdir()
    plain = run_compress(one_node_model("FusedConv", inputs, ["Y"]), inputs, tmp_path / "a")[1][0]
    (tmp_path / "b").mkdir()
    relu = run_compress(one_node_model("FusedConv", inputs, ["Y"], {"activation": "Relu"}), inputs, tmp_path / "b")[1][0]
    assert (plain < 0).any() and np.array_equal(relu, np.maximum(plain, 0))


@pytest.mark.parametrize("attrs,z_shape,fragment", [
    ({"activation": "Swish"}, None, "activation 'Swish'"),
    ({"activation": "LeakyRelu"}, None, "takes 1 activation_params"),
    ({"activation": "Clip", "activation_params": [0.0]}, None, "takes 2 activation_params"),
    ({"activation": "Relu"}, (1, 3, 3, 1), "Z has shape"),
], ids=["unknown-activation", "missing-params", "param-count", "z-shape"])
def test_fused_conv_refusals(attrs, z_shape, fragment, tmp_path):
    """Nodes ONNX Runtime refuses are refused by compress too (exit 1, a message naming why)."""
    rng = np.random.default_rng(9)
    inputs = {"X": rng.standard_normal((1, 2, 5, 5)).astype(np.float32),
              "W": rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "B": None,
              "Z": rng.standard_normal(z_shape).astype(np.float32) if z_shape else None}
    model = one_node_model("FusedConv", inputs, ["Y"], attrs)
    with pytest.raises(Exception):
        run_ort(model, feeds_of(inputs))
    expect_refusal(model, feeds_of(inputs), tmp_path, fragment)


# ---- Gelu family -----------------------------------------------------------------------------------

GELU_SHAPES = [(7,), (2, 5, 16), (3, 4, 33), (1, 128, 64)]


def gelu_input(shape, seed):
    # Spread ~2 reaches the tails of erf/tanh; a few exact zeros and large magnitudes too.
    x = (np.random.default_rng(seed).standard_normal(shape) * 2).astype(np.float32)
    flat = x.reshape(-1)
    flat[:3] = [0.0, 9.0, -9.0][:flat.size]
    return x


@pytest.mark.parametrize("shape", GELU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gelu(shape, tmp_path):
    x = gelu_input(shape, 11)
    check(one_node_model("Gelu", {"X": x}, ["Y"]), {"X": x}, [np_gelu(x)], tmp_path, ELEMENTWISE_TOL, ELEMENTWISE_TOL)


@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("shape", GELU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fast_gelu(shape, with_bias, tmp_path):
    x = gelu_input(shape, 12)
    b = np.random.default_rng(13).standard_normal(shape[-1]).astype(np.float32) if with_bias else None
    v = x.astype(np.float64) + (b if b is not None else 0)
    inputs = {"X": x, "bias": b}
    check(one_node_model("FastGelu", inputs, ["Y"]), feeds_of(inputs), [np_fast_gelu(v)], tmp_path,
          ELEMENTWISE_TOL, ELEMENTWISE_TOL)


@pytest.mark.parametrize("shape", GELU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bias_gelu(shape, tmp_path):
    x = gelu_input(shape, 14)
    b = np.random.default_rng(15).standard_normal(shape[-1]).astype(np.float32)
    inputs = {"A": x, "B": b}
    check(one_node_model("BiasGelu", inputs, ["C"]), inputs, [np_gelu(x.astype(np.float64) + b)], tmp_path,
          ELEMENTWISE_TOL, ELEMENTWISE_TOL)


@pytest.mark.parametrize("alpha", [None, 1.0, 0.5, -1.3], ids=["default", "1", "0.5", "-1.3"])
@pytest.mark.parametrize("shape", GELU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_quick_gelu(shape, alpha, tmp_path):
    x = gelu_input(shape, 16)
    attrs = {} if alpha is None else {"alpha": alpha}
    ref = np_quick_gelu(x, 1.702 if alpha is None else alpha)
    check(one_node_model("QuickGelu", {"X": x}, ["Y"], attrs), {"X": x}, [ref], tmp_path, ELEMENTWISE_TOL, ELEMENTWISE_TOL)


def test_quick_gelu_float16(tmp_path):
    x = gelu_input((4, 40), 17).astype(np.float16)
    ref = np_quick_gelu(x.astype(np.float32), 1.702)
    check(one_node_model("QuickGelu", {"X": x}, ["Y"]), {"X": x}, [ref], tmp_path, HALF_TOL, HALF_TOL)


@pytest.mark.parametrize("op,bias_shape", [("FastGelu", (5,)), ("BiasGelu", (2, 8)), ("BiasGelu", None)],
                         ids=["fastgelu-length", "biasgelu-rank", "biasgelu-missing"])
def test_gelu_bias_refusals(op, bias_shape, tmp_path):
    x = np.ones((2, 8), np.float32)
    inputs = {"X": x, "bias": np.ones(bias_shape, np.float32) if bias_shape else None}
    model = one_node_model(op, inputs, ["Y"])
    expect_refusal(model, feeds_of(inputs), tmp_path, "bias" if bias_shape else "input 1")


# ---- SkipLayerNormalization ---------------------------------------------------------------------------

# (input shape, skip shape, beta, bias, epsilon, scale of input and skip). The small-scale cases
# have a variance (~1e-6) near epsilon, so a wrong default or a misplaced epsilon shows.
SLN_CASES = [
    ((2, 3, 8), (2, 3, 8), True, True, None, 1.0),
    ((2, 3, 8), (2, 3, 8), False, False, 1e-5, 1.0),
    ((1, 16, 768), (1, 16, 768), True, True, 1e-12, 1.0),
    ((3, 5, 32), (1, 5, 32), True, False, 1e-6, 1.0),
    ((3, 5, 32), (5, 32), False, True, None, 1.0),
    ((7, 64), (7, 64), True, True, 1e-5, 1.0),
    ((2, 4, 16), (2, 4, 16), True, False, None, 1e-3),
    ((2, 4, 16), (2, 4, 16), False, False, 1e-6, 1e-3),
]


@pytest.mark.parametrize("extra_outputs", ["all", "sum-only", "none"])
@pytest.mark.parametrize("case", range(len(SLN_CASES)))
def test_skip_layer_norm(case, extra_outputs, tmp_path):
    x_shape, skip_shape, with_beta, with_bias, eps, scale = SLN_CASES[case]
    rng = np.random.default_rng(200 + case)
    h = x_shape[-1]
    # A mean offset per row (0.5 here) keeps the one-pass float32 variance of ORT well conditioned.
    x = ((rng.standard_normal(x_shape) + 0.5) * scale).astype(np.float32)
    skip = (rng.standard_normal(skip_shape) * scale).astype(np.float32)
    gamma = (1 + 0.2 * rng.standard_normal(h)).astype(np.float32)
    beta = rng.standard_normal(h).astype(np.float32) if with_beta else None
    bias = (rng.standard_normal(h) * scale).astype(np.float32) if with_bias else None
    attrs = {} if eps is None else {"epsilon": eps}
    y, mean, inv, s = np_skip_layer_norm(x, skip, gamma, beta, bias, 1e-12 if eps is None else eps)
    outputs, types, refs = {
        "all": (["Y", "mean", "inv_std_var", "sum"], [TensorProto.FLOAT] * 4, [y, mean, inv, s]),
        "sum-only": (["Y", "", "", "sum"], [TensorProto.FLOAT] * 2, [y, s]),
        "none": (["Y"], [TensorProto.FLOAT], [y]),
    }[extra_outputs]
    inputs = {"input": x, "skip": skip, "gamma": gamma, "beta": beta, "bias": bias}
    model = one_node_model("SkipLayerNormalization", inputs, outputs, attrs, output_types=types)
    check(model, feeds_of(inputs), refs, tmp_path, SLN_ORT_TOL, SLN_NUMPY_TOL)


def test_skip_layer_norm_float16(tmp_path):
    rng = np.random.default_rng(300)
    x = rng.standard_normal((2, 4, 48)).astype(np.float16)
    skip = rng.standard_normal((2, 4, 48)).astype(np.float16)
    gamma = (1 + 0.2 * rng.standard_normal(48)).astype(np.float16)
    beta = rng.standard_normal(48).astype(np.float16)
    bias = rng.standard_normal(48).astype(np.float16)
    y, mean, inv, s = np_skip_layer_norm(x, skip, gamma, beta, bias, 1e-5)
    inputs = {"input": x, "skip": skip, "gamma": gamma, "beta": beta, "bias": bias}
    types = [TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT16]
    model = one_node_model("SkipLayerNormalization", inputs, ["Y", "mean", "inv_std_var", "sum"], {"epsilon": 1e-5},
                           output_types=types)
    # mean / inv_std_var are float32 statistics of the float16 sums: compared at float16 resolution too.
    check(model, feeds_of(inputs), [y, mean, inv, s], tmp_path, HALF_TOL, HALF_TOL)


@pytest.mark.parametrize("x_shape,skip_shape,gamma_len,fragment", [
    ((2, 3, 8), (2, 3, 7), 8, "skip has shape"),
    ((2, 3, 8), (2, 3, 8), 7, "gamma has shape"),
    ((2, 2, 3, 8), (2, 2, 3, 8), 8, "input has shape"),
    ((3, 8), (2, 3, 8), 8, "must equal input"),
], ids=["skip-hidden", "gamma", "rank-4", "skip-batch"])
def test_skip_layer_norm_refusals(x_shape, skip_shape, gamma_len, fragment, tmp_path):
    inputs = {"input": np.ones(x_shape, np.float32), "skip": np.ones(skip_shape, np.float32),
              "gamma": np.ones(gamma_len, np.float32)}
    model = one_node_model("SkipLayerNormalization", inputs, ["Y"])
    with pytest.raises(Exception):
        run_ort(model, feeds_of(inputs))
    expect_refusal(model, feeds_of(inputs), tmp_path, fragment)


# ---- the registry lists them ------------------------------------------------------------------------

REGISTERED = [
    (MS, "FusedConv", 1), (MS, "Gelu", 1), (MS, "FastGelu", 1), (MS, "BiasGelu", 1), (MS, "QuickGelu", 1),
    (MS, "SkipLayerNormalization", 1),
    ("ai.onnx", "Trilu", 14), ("ai.onnx", "GroupNormalization", 18), ("ai.onnx", "GroupNormalization", 21),
    ("ai.onnx", "RMSNormalization", 23),
]


def test_ops_json_lists_new_ops():
    r = subprocess.run([COMPRESS, "ops", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = {(e["domain"], e["op"]): e["since_versions"] for e in json.loads(r.stdout)}
    for domain, op, since in REGISTERED:
        assert since in listed.get((domain, op), []), f"{domain}::{op} since {since} missing from compress ops: {listed.get((domain, op))}"
    # com.microsoft is listed under its own domain, not the default one.
    assert ("ai.onnx", "FusedConv") not in listed and ("ai.onnx", "SkipLayerNormalization") not in listed


# ---- graphs ONNX Runtime's own optimizer writes ------------------------------------------------------

def ort_optimized(model, tmp_path):
    """The model as ORT's extended graph optimizations rewrite it (saved, then loaded back)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return onnx.load(str(tmp_path / "optimized.onnx"))


def _f32(name, a):
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def test_ort_fused_conv_chain(tmp_path):
    """Conv+Relu, Conv+Tanh and Conv+HardSigmoid become FusedConv under ORT's optimizer (a Conv
    followed by a residual Add stays); compress runs the rewritten model and matches ORT on the
    original and a NumPy forward pass."""
    rng = np.random.default_rng(21)
    w1 = rng.standard_normal((8, 3, 3, 3)) / np.sqrt(27)
    w2 = rng.standard_normal((8, 8, 3, 3)) / np.sqrt(72)
    w3 = rng.standard_normal((8, 8, 1, 1)) / np.sqrt(8)
    b1, b2, b3 = (rng.standard_normal(8) for _ in range(3))
    inits = [_f32("w1", w1), _f32("w2", w2), _f32("w3", w3), _f32("b1", b1), _f32("b2", b2), _f32("b3", b3)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c2", "r1"], ["a2"]),
             helper.make_node("Relu", ["a2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]), helper.make_node("Tanh", ["c3"], ["t3"]),
             helper.make_node("Conv", ["t3", "w3", "b3"], ["c4"]), helper.make_node("HardSigmoid", ["c4"], ["y"], alpha=0.3, beta=0.4)]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    optimized = ort_optimized(model, tmp_path)
    fused = [n for n in optimized.graph.node if n.op_type == "FusedConv" and n.domain == MS]
    assert len(fused) == 3, [(n.domain, n.op_type) for n in optimized.graph.node]
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    f = [np.asarray(a, np.float32) for a in (w1, w2, w3, b1, b2, b3)]
    r1 = np.maximum(np_conv(x, f[0], f[3], [1, 1], [1, 1, 1, 1], [1, 1], 1), 0)
    r2 = np.maximum(np_conv(r1, f[1], f[4], [1, 1], [1, 1, 1, 1], [1, 1], 1) + r1, 0)
    t3 = np.tanh(np_conv(r2, f[2], f[5], [1, 1], [0, 0, 0, 0], [1, 1], 1))
    ref = np.clip(0.3 * np_conv(t3, f[2], f[5], [1, 1], [0, 0, 0, 0], [1, 1], 1) + 0.4, 0, 1)
    # Compared with ORT running the original graph (its own plain Conv/activation kernels).
    check(optimized, {"x": x}, [ref], tmp_path, CONV_TOL, CONV_TOL)
    (tmp_path / "plain").mkdir()
    _, got = run_compress(optimized, {"x": x}, tmp_path / "plain")
    conformance.assert_match(run_ort(model, {"x": x})[0], got[0], "y vs ONNX Runtime (original graph)", *CONV_TOL)


def test_ort_fused_transformer_block(tmp_path):
    """A BERT-style block (MatMul + bias, erf Gelu, MatMul + bias, residual Add, LayerNorm) becomes
    com.microsoft Gelu and SkipLayerNormalization under ORT's optimizer; compress runs it."""
    rng = np.random.default_rng(22)
    h = 32
    w, bb = rng.standard_normal((h, h)) / np.sqrt(h), rng.standard_normal(h)
    w2, b2 = rng.standard_normal((h, h)) / np.sqrt(h), rng.standard_normal(h)
    g, be = 1 + 0.1 * rng.standard_normal(h), rng.standard_normal(h)
    inits = [_f32("W", w), _f32("bb", bb), _f32("W2", w2), _f32("b2", b2), _f32("g", g), _f32("be", be),
             _f32("sq2", np.sqrt(2)), _f32("one", 1), _f32("half", 0.5)]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "bb"], ["mb"]),
             helper.make_node("Div", ["mb", "sq2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["mb", "e1"], ["p"]),
             helper.make_node("Mul", ["p", "half"], ["gl"]),
             helper.make_node("MatMul", ["gl", "W2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["m2b"]),
             helper.make_node("Add", ["m2b", "x"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "g", "be"], ["y"], axis=-1, epsilon=1e-5)]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, h])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    optimized = ort_optimized(model, tmp_path)
    ms_ops = sorted(n.op_type for n in optimized.graph.node if n.domain == MS)
    assert ms_ops == ["Gelu", "SkipLayerNormalization"], [(n.domain, n.op_type) for n in optimized.graph.node]
    x = rng.standard_normal((2, 5, h)).astype(np.float32)
    f = {k: np.asarray(v, np.float32).astype(np.float64) for k, v in dict(w=w, bb=bb, w2=w2, b2=b2, g=g, be=be).items()}
    mb = x.astype(np.float64) @ f["w"] + f["bb"]
    s = np_gelu(mb) @ f["w2"] + f["b2"] + x
    mean = s.mean(-1, keepdims=True)
    ref = (s - mean) / np.sqrt(((s - mean) ** 2).mean(-1, keepdims=True) + 1e-5) * f["g"] + f["be"]
    # Two chained float32 matrix products before the normalization: the product tolerance.
    check(optimized, {"x": x}, [ref], tmp_path, CONV_TOL, CONV_TOL)
