"""Trilu-14, GroupNormalization-18/21 and RMSNormalization-23 beyond the ONNX backend node tests
(which cover them at opsets 14, 21 and 23 in float32 only, checked by test_conformance.py):
opset 18's per-group scale, more shapes and group counts, float16 / float64 inputs, scale
broadcasts, every Trilu element type and diagonal offset. Each case runs through `compress _eval`
and ONNX Runtime's CPU provider and is compared with both and with a NumPy reference
(conformance.compare_tensors), using the one-node helpers of test_ms_contrib_ops.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import conformance
from test_ms_contrib_ops import check, expect_refusal, feeds_of, one_node_model, run_compress, run_ort

# Tolerances (rtol, atol):
# - float32 norms: compress sums in float64 (two passes), ORT in float32; outputs are O(1) after
#   scale and bias, so a few float32 ulp on each side: rtol 1e-5, atol 1e-5 against ORT (its
#   float32 variance of up to 5·64 values carries ~1e-6 relative error), rtol 1e-5 / atol 1e-6
#   against the float64 NumPy reference.
NORM_ORT_TOL = (1e-5, 1e-5)
NORM_NUMPY_TOL = (1e-5, 1e-6)
# - float16 in and out: both compute in float32 and round once to float16, so they may differ
#   by one float16 ulp (2^-10 relative): rtol 2e-3, atol 1e-3.
# - float64: compress computes through float32 (as its other norm ops do): float32 precision,
#   rtol 1e-5, atol 1e-6 against the float64 results of ORT and NumPy.
TOL_BY_TYPE = {np.float32: (NORM_ORT_TOL, NORM_NUMPY_TOL), np.float16: ((2e-3, 1e-3), (2e-3, 1e-3)),
               np.float64: ((1e-5, 1e-6), (1e-5, 1e-6))}
EXACT = (0.0, 0.0)


# ---- GroupNormalization ------------------------------------------------------------------------------

def np_group_norm(x, scale, bias, groups, eps, per_channel):
    n, c = x.shape[:2]
    xr = x.astype(np.float64).reshape(n, groups, -1)
    mean = xr.mean(-1, keepdims=True)
    var = ((xr - mean) ** 2).mean(-1, keepdims=True)
    y = ((xr - mean) / np.sqrt(var + eps)).reshape(x.shape)
    s, b = scale.astype(np.float64), bias.astype(np.float64)
    if not per_channel:
        s, b = np.repeat(s, c // groups), np.repeat(b, c // groups)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return y * s.reshape(shape) + b.reshape(shape)


# (X shape, num_groups, epsilon): one group, one channel per group, in between; rank 2, 3, 4, 5.
GN_CASES = [((2, 6, 5, 5), 3, None), ((1, 8, 4, 4), 1, 1e-3), ((3, 4, 7), 4, 1e-5), ((2, 6), 2, None),
            ((1, 6, 2, 3, 4), 2, 1e-2), ((2, 32, 8, 8), 8, 1e-6)]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64], ids=["f32", "f16", "f64"])
@pytest.mark.parametrize("opset", [18, 21])
@pytest.mark.parametrize("case", range(len(GN_CASES)))
def test_group_normalization(case, opset, dtype, tmp_path):
    shape, groups, eps = GN_CASES[case]
    rng = np.random.default_rng(400 + case)
    per_channel = opset >= 21
    n_params = shape[1] if per_channel else groups
    # A per-sample offset and spread the normalization must remove.
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    scale = (1 + 0.5 * rng.standard_normal(n_params)).astype(dtype)
    bias = rng.standard_normal(n_params).astype(dtype)
    attrs = {"num_groups": groups, **({} if eps is None else {"epsilon": eps})}
    inputs = {"X": x, "scale": scale, "bias": bias}
    model = one_node_model("GroupNormalization", inputs, ["Y"], attrs, domain="", opset=opset)
    ref = np_group_norm(x, scale, bias, groups, 1e-5 if eps is None else eps, per_channel)
    ort_tol, np_tol = TOL_BY_TYPE[dtype]
    # float64 at opset 18 too: ONNX Runtime 1.32 (pinned in Fixtures/requirements.txt) runs it,
    # so every combination is compared with both ORT and NumPy.
    check(model, inputs, [ref], tmp_path, ort_tol, np_tol)


@pytest.mark.parametrize("opset,groups,n_params,fragment", [
    (21, 4, 6, "does not divide"), (21, 3, 3, "one per channel"), (18, 3, 6, "one per group")],
    ids=["groups-divide", "opset21-per-group-scale", "opset18-per-channel-scale"])
def test_group_normalization_refusals(opset, groups, n_params, fragment, tmp_path):
    inputs = {"X": np.ones((1, 6, 2, 2), np.float32), "scale": np.ones(n_params, np.float32),
              "bias": np.zeros(n_params, np.float32)}
    model = one_node_model("GroupNormalization", inputs, ["Y"], {"num_groups": groups}, domain="", opset=opset)
    expect_refusal(model, inputs, tmp_path, fragment)


# ---- RMSNormalization ---------------------------------------------------------------------------------

def np_rms_norm(x, scale, axis, eps):
    x64 = x.astype(np.float64)
    axes = tuple(range(axis % x.ndim, x.ndim))
    ms = (x64 ** 2).mean(axis=axes, keepdims=True)
    return x64 / np.sqrt(ms + eps) * scale.astype(np.float64)


# (X shape, axis, scale shape, epsilon, magnitude of X): last axis, several axes, scale of the full
# normalized shape or broadcast along it ([1, W] over [H, W]), a leading-1 scale rank; the small
# magnitude (mean square ~1e-6, near epsilon) makes a wrong epsilon show.
RMS_CASES = [((2, 5, 16), None, (16,), None, 1.0), ((2, 5, 16), 1, (5, 16), 1e-3, 1.0), ((3, 4, 6, 8), -2, (1, 8), 1e-6, 1.0),
             ((3, 4, 6, 8), 1, (4, 1, 8), None, 1.0), ((7, 64), 0, (7, 64), 1e-5, 1.0), ((4, 3), -1, (1, 3), None, 1.0),
             ((3, 24), -1, (24,), None, 1e-3)]


# Every case in every type, float16 included for the small-magnitude case: its mean square
# (~1e-6) is below float16's normal range, but both runtimes accumulate it in float32 and only
# the inputs and the output are float16 (O(1e-3) and O(1), both representable), so it is compared
# like the others (measured: 2.3e-4 from the float64 reference, within the float16 tolerance).
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64], ids=["f32", "f16", "f64"])
@pytest.mark.parametrize("case", range(len(RMS_CASES)))
def test_rms_normalization(case, dtype, tmp_path):
    shape, axis, scale_shape, eps, magnitude = RMS_CASES[case]
    rng = np.random.default_rng(500 + case)
    x = ((rng.standard_normal(shape) * 1.5 + 0.3) * magnitude).astype(dtype)
    scale = (1 + 0.5 * rng.standard_normal(scale_shape)).astype(dtype)
    attrs = {**({} if axis is None else {"axis": axis}), **({} if eps is None else {"epsilon": eps})}
    inputs = {"X": x, "scale": scale}
    model = one_node_model("RMSNormalization", inputs, ["Y"], attrs, domain="", opset=23)
    ref = np_rms_norm(x, scale, -1 if axis is None else axis, 1e-5 if eps is None else eps)
    ort_tol, np_tol = TOL_BY_TYPE[dtype]
    check(model, inputs, [ref], tmp_path, ort_tol, np_tol)


def test_rms_normalization_refuses_bad_scale(tmp_path):
    inputs = {"X": np.ones((2, 5, 16), np.float32), "scale": np.ones((5,), np.float32)}
    model = one_node_model("RMSNormalization", inputs, ["Y"], {}, domain="", opset=23)
    expect_refusal(model, inputs, tmp_path, "does not broadcast")


# ---- Trilu ----------------------------------------------------------------------------------------------

TRILU_TYPES = [np.float32, np.float16, np.float64, np.int64, np.int32, np.int8, np.uint8, np.bool_]
# Element types ONNX Runtime 1.32's CPU Trilu lacks: compared with NumPy only.
NOT_IN_ORT = {np.int8, np.uint8}


def trilu_input(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(shape) < 0.7  # mostly True, so cleared entries show
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 3).astype(dtype)
    return rng.integers(1, 100, shape).astype(dtype)  # no zeros: a cleared entry shows


def np_trilu(x, k, upper):
    r, c = x.shape[-2:]
    k = max(-(r + c), min(r + c, k))  # the same triangle; keeps NumPy's arange(-k, …) in range
    return np.triu(x, k) if upper else np.tril(x, k)  # both act on the last two axes


@pytest.mark.parametrize("dtype", TRILU_TYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("upper", [1, 0], ids=["upper", "lower"])
@pytest.mark.parametrize("shape,k", [((4, 5), None), ((5, 4), 2), ((2, 3, 6), -1), ((2, 2, 3, 3), 7),
                                     ((3, 4), -9), ((1, 6), -1), ((4, 0), 1), ((3, 3), 2 ** 63 - 1), ((3, 3), -2 ** 63)],
                         ids=["4x5", "5x4-k2", "batch-k-1", "4d-k7", "k-9", "one-row", "empty", "k-max", "k-min"])
def test_trilu(shape, k, upper, dtype, tmp_path):
    x = trilu_input(shape, dtype, sum(shape) + abs(k or 0) % 1000 + 50)
    inputs = {"input": x, "k": None if k is None else np.array(k, np.int64)}
    attrs = {} if upper == 1 and k == 2 else {"upper": upper}  # the default (upper) once, implicitly
    model = one_node_model("Trilu", inputs, ["output"], attrs, domain="", opset=14)
    # Trilu moves values: exact equality with ORT and NumPy.
    want = np_trilu(x, k or 0, upper)
    if dtype in NOT_IN_ORT:
        r, got = run_compress(model, feeds_of(inputs), tmp_path)
        assert r.returncode == 0, r.stderr
        conformance.assert_match(want, got[0], "output vs NumPy", *EXACT)
    else:
        check(model, feeds_of(inputs), [want], tmp_path, EXACT, EXACT)


def test_trilu_refuses_rank_1(tmp_path):
    inputs = {"input": np.ones(5, np.float32)}
    model = one_node_model("Trilu", inputs, ["output"], {}, domain="", opset=14)
    with pytest.raises(Exception):
        run_ort(model, inputs)
    expect_refusal(model, inputs, tmp_path, "rank ≥ 2")
