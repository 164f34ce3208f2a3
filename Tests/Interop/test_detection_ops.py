"""NonMaxSuppression, RoiAlign, GridSample and Attention against ONNX Runtime (CPU).

The ONNX backend node tests of these operators run in conformance.py / test_conformance.py; this
file adds differential cases on small one-node graphs built with onnx.helper from seeded random
inputs, covering what the backend tests leave out: NonMaxSuppression over several batches and
classes, tied scores, center-point boxes and score thresholds; RoiAlign in both modes and
coordinate conventions with adaptive sampling (sampling_ratio 0); GridSample in every mode x
padding x align_corners at opsets 16 and 20 (and 3-D volumes); Attention with causal masks, float
and boolean masks, grouped-query heads, KV caches, softcap and every qk_matmul_output mode. ONNX
Runtime 1.32 implements Attention-23/24, so it is the reference throughout; the few cases where it
departs from the ONNX reference evaluator (onnx.reference), which compress follows, use the
evaluator instead and say why.

Tolerances (compare_tensors: |got - expected| <= atol + rtol * |expected|):
- NonMaxSuppression: indices, compared exactly. IoU is computed in float32 in the reference's
  order, as ONNX Runtime does, so random boxes cannot land on different sides of a threshold.
- RoiAlign, GridSample: rtol 1e-4, atol 1e-5. Both are weighted sums of at most 16 float32 terms
  (bicubic: 4x4 weights up to 1.25 in magnitude) over N(0, 1) data; compress computes RoiAlign's
  sample positions in float64 and forms tensor-product weights where ONNX Runtime nests 1-D
  passes, a difference of a few float32 ulps (~1e-6) of values of order 1.
- Attention: rtol 1e-4, atol 1e-5. Scores are dot products of 8-16 float32 terms and the output
  a convex combination of V rows; BLAS and MLAS sum in different orders and compress scales the
  product once instead of scaling Q and K by sqrt(scale) each, which moves results by a few
  ulps; the softmax amplifies a score error e by at most e in relative terms.
Any stricter and the test would be checking summation order; any looser (1e-3) and an
off-by-one-pixel or wrong-head bug could hide in small values.

A compress exit status >= 128 or negative (a signal, a trap) is never accepted, not even where a
refusal is expected: refusals must be exit 1 with a message naming the node.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import conformance
from conftest import COMPRESS_BIN as COMPRESS

RNG = np.random.default_rng(20261202)
SAMPLE_TOL = dict(rtol=1e-4, atol=1e-5)     # RoiAlign, GridSample (see the module docstring)
ATTN_TOL = dict(rtol=1e-4, atol=1e-5)       # Attention
EXACT = dict(rtol=0.0, atol=0.0)             # NonMaxSuppression (int64 indices: compared exactly anyway)


class Case:
    """One node at one opset. `inputs` maps node input names to arrays in node order; a None
    value is an omitted optional input (its key is only a placeholder: "", " ", ...).
    `outputs` names the node outputs."""

    def __init__(self, cid, op, opset, inputs, attrs=None, outputs=("y",), tol=SAMPLE_TOL, ref="ort"):
        self.id, self.op, self.opset = cid, op, opset
        self.inputs, self.attrs, self.outputs, self.tol, self.ref = inputs, attrs or {}, list(outputs), tol, ref



def _f(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _i64(*v):
    return np.array(v, dtype=np.int64)


# ---- NonMaxSuppression -------------------------------------------------------------------------

def _corner_boxes(b, n, flip=False):
    y0, x0 = RNG.uniform(0, 10, (b, n)), RNG.uniform(0, 10, (b, n))
    h, w = RNG.uniform(0.5, 4, (b, n)), RNG.uniform(0.5, 4, (b, n))
    boxes = np.stack([y0, x0, y0 + h, x0 + w], axis=-1)
    if flip:  # either corner may come first
        swap = RNG.random((b, n)) < 0.5
        boxes[swap] = boxes[swap][:, [2, 3, 0, 1]]
    return boxes.astype(np.float32)


def _nms_cases():
    c = []
    for opset in (10, 11):
        b, n, k = 3, 40, 4
        boxes = _corner_boxes(b, n, flip=True)
        scores = RNG.random((b, k, n)).astype(np.float32)
        c.append(Case(f"nms_batches_classes_opset{opset}", "NonMaxSuppression", opset,
                      {"boxes": boxes, "scores": scores, "max": _i64(7), "iou": np.array([0.3], np.float32),
                       "score_th": np.array([0.2], np.float32)}, tol=EXACT))
    # Tied scores: four levels only, so the lower box index must win every tie.
    boxes = _corner_boxes(2, 30)
    tied = (RNG.integers(0, 4, (2, 3, 30)) / 4).astype(np.float32)
    c.append(Case("nms_tied_scores", "NonMaxSuppression", 11,
                  {"boxes": boxes, "scores": tied, "max": _i64(30), "iou": np.array([0.4], np.float32)}, tol=EXACT))
    # Identical boxes with identical scores: only the first survives at any threshold below 1.
    same = np.tile(np.array([[[0, 0, 1, 1]]], np.float32), (1, 6, 1))
    c.append(Case("nms_identical_ties", "NonMaxSuppression", 11,
                  {"boxes": same, "scores": np.full((1, 2, 6), 0.5, np.float32), "max": _i64(6),
                   "iou": np.array([0.5], np.float32)}, tol=EXACT))
    # center_point_box=1: [x_center, y_center, width, height].
    cb = np.concatenate([RNG.uniform(0, 10, (2, 25, 2)), RNG.uniform(0.5, 4, (2, 25, 2))], axis=-1).astype(np.float32)
    c.append(Case("nms_center_point_box", "NonMaxSuppression", 11,
                  {"boxes": cb, "scores": RNG.random((2, 3, 25)).astype(np.float32), "max": _i64(10),
                   "iou": np.array([0.25], np.float32), "score_th": np.array([0.1], np.float32)},
                  attrs={"center_point_box": 1}, tol=EXACT))
    # Optional inputs left out: max_output_boxes_per_class absent selects nothing.
    c.append(Case("nms_no_max_output", "NonMaxSuppression", 11,
                  {"boxes": _corner_boxes(1, 5), "scores": RNG.random((1, 2, 5)).astype(np.float32)}, tol=EXACT))
    # No iou_threshold (0): any overlap suppresses; max larger than the box count.
    c.append(Case("nms_iou_default", "NonMaxSuppression", 11,
                  {"boxes": _corner_boxes(2, 20), "scores": RNG.random((2, 2, 20)).astype(np.float32), "max": _i64(100)},
                  tol=EXACT))
    return c


# ---- RoiAlign ----------------------------------------------------------------------------------

def _rois(r, h, w, scale):
    """Well-formed boxes in input-image coordinates (x1 < x2, y1 < y2), some partly outside."""
    x0, y0 = RNG.uniform(-2, w / scale, r), RNG.uniform(-2, h / scale, r)
    bw, bh = RNG.uniform(1, w / scale / 1.5, r), RNG.uniform(1, h / scale / 1.5, r)
    return np.stack([x0, y0, x0 + bw, y0 + bh], axis=-1).astype(np.float32)


def _roi_cases():
    c = []
    x = _f(2, 3, 12, 10)
    for opset, modes in ((10, (None,)), (16, ("half_pixel", "output_half_pixel"))):
        for ct in modes:
            for mode in ("avg", "max"):
                for ratio in (0, 2):
                    attrs = {"mode": mode, "output_height": 3, "output_width": 4, "sampling_ratio": ratio, "spatial_scale": 0.5}
                    if ct:
                        attrs["coordinate_transformation_mode"] = ct
                    rois = _rois(5, 12, 10, 0.5)
                    # ONNX Runtime, not the reference evaluator: onnx.reference reads RoiAlign-10
                    # with RoiAlign-16's default (half_pixel), but RoiAlign-10 has no such
                    # attribute and samples as output_half_pixel, as ONNX Runtime and compress do.
                    # (At opset 16 the two agree bit for bit, max mode included.)
                    c.append(Case(f"roialign_opset{opset}_{ct or 'default'}_{mode}_ratio{ratio}", "RoiAlign", opset,
                                  {"X": x, "rois": rois, "batch_indices": _i64(0, 1, 1, 0, 1)}, attrs=attrs))
    return c


# ---- GridSample --------------------------------------------------------------------------------

def _grid_cases():
    c = []
    x = _f(2, 3, 5, 6)
    grid = RNG.uniform(-1.3, 1.3, (2, 4, 7, 2)).astype(np.float32)  # beyond [-1, 1]: padding matters
    for opset, modes in ((16, ("bilinear", "nearest", "bicubic")), (20, ("linear", "nearest", "cubic"))):
        for mode in modes:
            for pad in ("zeros", "border", "reflection"):
                for ac in (0, 1):
                    # Cubic with border padding: ONNX Runtime (like PyTorch) clamps each of the
                    # four taps but not the sampling point; the reference evaluator, which the
                    # backend tests and compress follow, clamps the point into [0, d-1] first.
                    # Off the image the two differ by up to ~0.4 here, so that pair is checked
                    # against the reference evaluator.
                    ref = "onnx" if mode in ("bicubic", "cubic") and pad == "border" else "ort"
                    c.append(Case(f"gridsample_opset{opset}_{mode}_{pad}_ac{ac}", "GridSample", opset,
                                  {"X": x, "grid": grid}, attrs={"mode": mode, "padding_mode": pad, "align_corners": ac},
                                  ref=ref))
    # Volumes (opset 20 N-D): ONNX Runtime implements linear and nearest for 5-D inputs.
    xv = _f(1, 2, 4, 5, 3)
    gv = RNG.uniform(-1.2, 1.2, (1, 3, 2, 4, 3)).astype(np.float32)
    for mode in ("linear", "nearest"):
        for pad in ("zeros", "border", "reflection"):
            for ac in (0, 1):
                c.append(Case(f"gridsample_3d_{mode}_{pad}_ac{ac}", "GridSample", 20, {"X": xv, "grid": gv},
                              attrs={"mode": mode, "padding_mode": pad, "align_corners": ac}))
    # 3-D cubic: ONNX Runtime refuses ("Only support GridSample Cubic mode in 4-D cases"), so the
    # reference evaluator (which interpolates any rank) is the expected value.
    c.append(Case("gridsample_3d_cubic_border", "GridSample", 20, {"X": xv, "grid": gv},
                  attrs={"mode": "cubic", "padding_mode": "border", "align_corners": 0}, ref="onnx"))
    # 1-D signal (N-D from opset 20 covers rank 1 too): reference evaluator only.
    c.append(Case("gridsample_1d_linear_reflection", "GridSample", 20,
                  {"X": _f(2, 3, 7), "grid": RNG.uniform(-1.5, 1.5, (2, 5, 1)).astype(np.float32)},
                  attrs={"mode": "linear", "padding_mode": "reflection"}, ref="onnx"))
    # Exact half-pixel positions for nearest: ties round half to even on both sides.
    ties = np.array([[[[-1, -1], [-0.6, -0.2], [0.2, 0.6], [1, 1]]]], np.float32)
    c.append(Case("gridsample_nearest_ties", "GridSample", 20, {"X": _f(1, 1, 5, 5), "grid": ties},
                  attrs={"mode": "nearest", "padding_mode": "zeros", "align_corners": 0}))
    return c


# ---- Attention ---------------------------------------------------------------------------------

MASKED = -1e4   # an additive mask value that hides a key: exp(score - 1e4) is 0 in float32
LARGE_NEGATIVE = -1e3


def _float_mask(*shape):
    """An additive float mask: N(0, 1) biases, with the entries below -0.5 (about 30%) set to
    MASKED so those keys are hidden; key 0 is never hidden, so no row is fully masked. MASKED is
    finite: ONNX Runtime writes -FLT_MAX where the reference evaluator and compress hold -inf, a
    difference the qk_matmul_output modes would report."""
    m = _f(*shape)
    m[m < -0.5] = MASKED
    m[..., 0] = np.abs(m[..., 0])
    return m


def _attn_cases():
    c = []
    t = ATTN_TOL
    b, hq, hkv, sq, skv, d = 2, 4, 2, 5, 7, 8
    q4, k4, v4 = _f(b, hq, sq, d), _f(b, hkv, skv, d), _f(b, hkv, skv, d)
    kf, vf = _f(b, hq, skv, d), _f(b, hq, skv, 12)
    c.append(Case("attention_4d_causal", "Attention", 23, {"Q": q4, "K": kf, "V": vf}, {"is_causal": 1}, tol=t))
    c.append(Case("attention_4d_gqa_causal", "Attention", 23, {"Q": q4, "K": k4, "V": v4}, {"is_causal": 1}, tol=t))
    c.append(Case("attention_4d_float_mask_4d", "Attention", 23, {"Q": q4, "K": kf, "V": vf, "M": _float_mask(b, 1, sq, skv)}, tol=t))
    bool_mask = RNG.random((sq, skv)) < 0.7
    bool_mask[:, 0] = True  # no fully masked row (softmax of all -inf is NaN everywhere)
    c.append(Case("attention_4d_gqa_bool_mask", "Attention", 23, {"Q": q4, "K": k4, "V": v4, "M": bool_mask}, tol=t))
    c.append(Case("attention_4d_causal_float_mask", "Attention", 23, {"Q": q4, "K": k4, "V": v4, "M": _float_mask(sq, skv)},
                  {"is_causal": 1}, tol=t))
    # 3-D inputs, GQA (8 query heads over 2 KV heads), explicit scale, causal, different V head size.
    q3, k3, v3 = _f(b, sq, 8 * 4), _f(b, skv, 2 * 4), _f(b, skv, 2 * 6)
    c.append(Case("attention_3d_gqa_causal_scaled", "Attention", 23, {"Q": q3, "K": k3, "V": v3},
                  {"q_num_heads": 8, "kv_num_heads": 2, "is_causal": 1, "scale": 0.3}, tol=t))
    c.append(Case("attention_3d_gqa_float_mask", "Attention", 23, {"Q": q3, "K": k3, "V": v3, "M": _float_mask(b, 1, sq, skv)},
                  {"q_num_heads": 8, "kv_num_heads": 2}, tol=t))
    # KV cache: past 3 + new 7 = 10 keys, causal offset by the past, all four outputs.
    past_k, past_v = _f(b, hkv, 3, d), _f(b, hkv, 3, d)
    outs4 = ("y", "present_key", "present_value", "qk")
    for mode in (0, 1, 2, 3):
        # Mode 2 returns the masked scores: the reference evaluator (and compress) hold -inf
        # where ONNX Runtime writes -FLT_MAX, so that mode is checked against the evaluator. Mode
        # 0 with a softcap is the product before the softcap (the operator's text, and ONNX
        # Runtime); the evaluator returns it after, so modes 0, 1, 3 stay with ONNX Runtime.
        c.append(Case(f"attention_gqa_past_causal_qk_mode{mode}", "Attention", 23,
                      {"Q": q4, "K": k4, "V": v4, "M": _float_mask(sq, 10), "past_key": past_k, "past_value": past_v},
                      {"is_causal": 1, "qk_matmul_output_mode": mode, "softcap": 3.0}, outputs=outs4, tol=t,
                      ref="onnx" if mode == 2 else "ort"))
    c.append(Case("attention_3d_past_bool_mask", "Attention", 23,
                  {"Q": q3, "K": k3, "V": v3, "M": np.concatenate([np.ones((sq, 3), bool), bool_mask], axis=1),
                   "past_key": _f(b, 2, 3, 4), "past_value": _f(b, 2, 3, 6)},
                  {"q_num_heads": 8, "kv_num_heads": 2}, outputs=("y", "present_key", "present_value"), tol=t))
    # A mask shorter than the total sequence: the missing keys are masked (Attention-24's text;
    # the reference evaluator pads it for opset 23 too). ONNX Runtime refuses the shape.
    c.append(Case("attention_short_mask", "Attention", 24, {"Q": q4, "K": k4, "V": v4, "M": _float_mask(b, hq, sq, 4)}, tol=t,
                  ref="onnx"))
    c.append(Case("attention_softcap", "Attention", 23, {"Q": q4 * 3, "K": k4 * 3, "V": v4}, {"softcap": 2.5}, tol=t))
    # Single query step against a cache (decode): causal lets the query see every key.
    c.append(Case("attention_decode_step", "Attention", 23,
                  {"Q": _f(b, hq, 1, d), "K": _f(b, hkv, 1, d), "V": _f(b, hkv, 1, d), "": None,
                   "past_key": _f(b, hkv, 9, d), "past_value": _f(b, hkv, 9, d)},
                  {"is_causal": 1}, outputs=("y", "present_key", "present_value"), tol=t))
    # Attention-24: nonpad_kv_seqlen masks each batch's padded tail.
    c.append(Case("attention24_nonpad_kv_seqlen", "Attention", 24,
                  {"Q": q4, "K": k4, "V": v4, "": None, " ": None, "  ": None, "nonpad": _i64(4, 7)}, tol=t))
    return c


def _fix_omitted(case):
    """Turn the placeholder keys ("", " ", ...) of omitted optional inputs into "" node inputs."""
    names, feeds = [], {}
    for n, a in case.inputs.items():
        if a is None:
            names.append("")
        else:
            names.append(n)
            feeds[n] = a
    case.node_inputs, case.feed_map = names, feeds
    return case


def _large_cases():
    """Big enough that the kernels split their loops across threads (compress runs with its
    default thread count here): channels for RoiAlign and GridSample, heads for Attention."""
    return [
        Case("roialign_parallel_channels", "RoiAlign", 16,
             {"X": _f(2, 64, 32, 32), "rois": _rois(6, 32, 32, 1.0), "batch_indices": _i64(0, 1, 0, 1, 1, 0)},
             attrs={"output_height": 7, "output_width": 7, "sampling_ratio": 2}),
        Case("gridsample_parallel_channels", "GridSample", 20,
             {"X": _f(1, 16, 32, 32), "grid": RNG.uniform(-1.1, 1.1, (1, 24, 24, 2)).astype(np.float32)},
             attrs={"mode": "cubic", "padding_mode": "reflection"}),
        Case("attention_parallel_heads", "Attention", 23,
             {"Q": _f(2, 8, 64, 32), "K": _f(2, 2, 64, 32), "V": _f(2, 2, 64, 32)}, {"is_causal": 1}, tol=ATTN_TOL),
    ]


CASES = [_fix_omitted(c) for c in _nms_cases() + _roi_cases() + _grid_cases() + _attn_cases() + _large_cases()]


def _model(case):
    node = helper.make_node(case.op, case.node_inputs, case.outputs, **case.attrs)
    vi = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in case.feed_map.items()]
    outs = [helper.make_empty_tensor_value_info(o) for o in case.outputs if o]
    g = helper.make_graph([node], "g", vi, outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", case.opset)], ir_version=10)


def _expected(case, model):
    if case.ref == "onnx":
        from onnx.reference import ReferenceEvaluator
        if case.op == "GridSample" and case.opset < 20:
            # The evaluator only knows GridSample-20's mode names; GridSample-16's bilinear and
            # bicubic are the same interpolations under the old names.
            renamed = {"bilinear": "linear", "bicubic": "cubic"}
            attrs = dict(case.attrs, mode=renamed.get(case.attrs.get("mode"), case.attrs.get("mode", "linear")))
            model = _model(_fix_omitted(Case(case.id, case.op, 20, case.inputs, attrs, case.outputs)))
        return ReferenceEvaluator(model).run(None, case.feed_map)
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, case.feed_map)


def _run_compress(model, feeds, tmp):
    path = os.path.join(tmp, "model.onnx")
    onnx.save(model, path)
    ins = []
    for i, (n, a) in enumerate(feeds.items()):
        p = os.path.join(tmp, f"input_{i}.pb")
        onnx.save_tensor(numpy_helper.from_array(a, n), p)
        ins.append(p)
    out = os.path.join(tmp, "out")
    os.makedirs(out)
    return conformance._eval(path, ins, out, COMPRESS, threads=None), out


@pytest.fixture(scope="module", autouse=True)
def _binary():
    if not os.path.exists(COMPRESS):
        pytest.fail(f"compress binary not found at {COMPRESS} (set COMPRESS_BIN)")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_against_reference(case):
    model = _model(case)
    expected = _expected(case, model)
    with tempfile.TemporaryDirectory() as tmp:
        r, out = _run_compress(model, case.feed_map, tmp)
        assert 0 <= r.returncode < 128, f"{case.id}: compress crashed (exit {r.returncode}): {r.stderr[-2000:]}"
        assert r.returncode == 0, f"{case.id}: compress failed: {r.stderr.strip()}"
        for k, e in enumerate(expected):
            got = conformance.read_tensor(os.path.join(out, f"output_{k}.pb"))
            conformance.assert_match(np.asarray(e), got, f"{case.id}/output_{k}", **case.tol)


def test_cases_are_not_trivial():
    """The differential cases must exercise what they claim: NMS keeps some boxes and drops
    others, GridSample grids leave the image, Attention masks hide some keys (a boolean mask has
    a False, a float mask a large negative value) and leave every query at least one key."""
    nms = [c for c in CASES if c.op == "NonMaxSuppression" and "max" in c.feed_map and c.feed_map["max"][0] > 0]
    for c in nms:
        sel = _expected(c, _model(c))[0]
        n_boxes = c.feed_map["scores"].shape[0] * c.feed_map["scores"].shape[1] * c.feed_map["scores"].shape[2]
        assert 0 < len(sel) < n_boxes, f"{c.id}: {len(sel)} of {n_boxes} selected"
    grids = [c for c in CASES if c.op == "GridSample"]
    assert all(np.abs(c.feed_map["grid"]).max() > 1 for c in grids if "ties" not in c.id)
    masked = [c for c in CASES if c.op == "Attention" and "M" in c.feed_map]
    assert len(masked) >= 10, [c.id for c in masked]
    for c in masked:
        m = c.feed_map["M"]
        hidden = ~m if m.dtype == np.bool_ else m <= LARGE_NEGATIVE
        assert hidden.any(), f"{c.id}: the mask hides no key"
        assert not hidden.all(axis=-1).any(), f"{c.id}: the mask hides every key of some query"


# ---- refusals: exit 1 with a message, never a crash ---------------------------------------------

REFUSALS = [
    ("gridsample16_5d", "GridSample", 16, {"X": _f(1, 1, 2, 2, 2), "grid": _f(1, 2, 2, 2, 3)}, {}, "4-D"),
    ("gridsample_bad_mode_opset20", "GridSample", 20, {"X": _f(1, 1, 3, 3), "grid": _f(1, 2, 2, 2)}, {"mode": "bilinear"}, "mode"),
    ("gridsample_grid_rank", "GridSample", 20, {"X": _f(1, 1, 3, 3), "grid": _f(1, 2, 2, 3)}, {}, "grid"),
    ("roialign_batch_index", "RoiAlign", 16, {"X": _f(1, 2, 4, 4), "rois": np.array([[0, 0, 2, 2]], np.float32),
                                               "batch_indices": _i64(3)}, {}, "batch index"),
    ("roialign_infinite_roi", "RoiAlign", 16, {"X": _f(1, 2, 4, 4), "rois": np.array([[0, 0, np.inf, 2]], np.float32),
                                                "batch_indices": _i64(0)}, {}, "not finite"),
    ("roialign_huge_roi", "RoiAlign", 16, {"X": _f(1, 2, 4, 4), "rois": np.array([[0, 0, 1e30, 1e30]], np.float32),
                                            "batch_indices": _i64(0)}, {}, "too many"),
    ("nms_boxes_shape", "NonMaxSuppression", 11, {"boxes": _f(1, 4, 3), "scores": _f(1, 1, 4)}, {}, "boxes"),
    ("attention_heads", "Attention", 23, {"Q": _f(1, 3, 2, 4), "K": _f(1, 2, 2, 4), "V": _f(1, 2, 2, 4)}, {}, "multiple"),
    ("attention_3d_no_heads", "Attention", 23, {"Q": _f(1, 2, 8), "K": _f(1, 2, 8), "V": _f(1, 2, 8)}, {}, "q_num_heads"),
    ("attention_mask_shape", "Attention", 23, {"Q": _f(1, 2, 3, 4), "K": _f(1, 2, 5, 4), "V": _f(1, 2, 5, 4),
                                               "M": _f(4, 5)}, {}, "attn_mask"),
]


@pytest.mark.parametrize("cid,op,opset,feeds,attrs,words", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_errors_not_crashes(cid, op, opset, feeds, attrs, words):
    case = _fix_omitted(Case(cid, op, opset, feeds, attrs))
    with tempfile.TemporaryDirectory() as tmp:
        r, _ = _run_compress(_model(case), case.feed_map, tmp)
    assert r.returncode == 1, f"{cid}: expected exit 1, got {r.returncode}: {r.stderr[-2000:]}"
    assert words in r.stderr and op in r.stderr, f"{cid}: message does not explain the refusal: {r.stderr.strip()}"


# ---- what compress claims ----------------------------------------------------------------------

def test_ops_lists_the_new_operators():
    r = subprocess.run([COMPRESS, "ops", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = {(row["domain"], row["op"]): row["since_versions"] for row in json.loads(r.stdout)}
    assert rows.get(("ai.onnx", "NonMaxSuppression")) == [10, 11]
    assert rows.get(("ai.onnx", "RoiAlign")) == [10, 16, 22]
    assert rows.get(("ai.onnx", "GridSample")) == [16, 20, 22]
    assert rows.get(("ai.onnx", "Attention")) == [23, 24]


# ---- extreme values: an answer or a refusal, never a crash --------------------------------------

def _extreme_cases():
    bad = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 3.0, -7.5, 0.0], np.float32)
    grid = np.stack([bad, bad[::-1]], axis=-1).reshape(1, 2, 4, 2)
    c = [Case(f"gridsample_extreme_{m}_{p}_ac{a}", "GridSample", 20, {"X": _f(1, 2, 3, 4), "grid": grid},
              attrs={"mode": m, "padding_mode": p, "align_corners": a})
         for m in ("linear", "nearest", "cubic") for p in ("zeros", "border", "reflection") for a in (0, 1)]
    # A one-pixel axis with align_corners: the reflection range is empty.
    c.append(Case("gridsample_one_pixel_reflection", "GridSample", 20, {"X": _f(1, 1, 1, 1), "grid": grid},
                  attrs={"mode": "cubic", "padding_mode": "reflection", "align_corners": 1}))
    scores = RNG.random((1, 2, 6)).astype(np.float32)
    scores[0, 0, [1, 4]] = np.nan
    c.append(Case("nms_nan_scores", "NonMaxSuppression", 11,
                  {"boxes": _corner_boxes(1, 6), "scores": scores, "max": _i64(6), "iou": np.array([0.5], np.float32)}))
    c.append(Case("roialign_empty_image", "RoiAlign", 16, {"X": _f(1, 2, 0, 4), "rois": np.array([[0, 0, 2, 2]], np.float32),
                                                           "batch_indices": _i64(0)}))
    mask = np.zeros((3, 5), bool)  # every key masked: NaN rows, as in the reference
    c.append(Case("attention_all_masked", "Attention", 23, {"Q": _f(1, 2, 3, 4), "K": _f(1, 2, 5, 4), "V": _f(1, 2, 5, 4), "M": mask}))
    return [_fix_omitted(x) for x in c]


@pytest.mark.parametrize("case", _extreme_cases(), ids=lambda c: c.id)
def test_extreme_inputs_never_crash(case):
    with tempfile.TemporaryDirectory() as tmp:
        r, out = _run_compress(_model(case), case.feed_map, tmp)
        assert 0 <= r.returncode < 128, f"{case.id}: compress crashed (exit {r.returncode}): {r.stderr[-2000:]}"
        assert r.returncode == 0, f"{case.id}: compress refused: {r.stderr.strip()}"
        got = numpy_helper.to_array(conformance.read_tensor(os.path.join(out, "output_0.pb")))
    if case.id == "attention_all_masked":
        assert np.isnan(got).all()
    elif case.op == "GridSample" and case.feed_map["X"].shape == (1, 2, 3, 4):
        # Points (1e30, -1e30) and (-1e30, 1e30) lie far beyond the top-right and bottom-left
        # corners: border padding gives exactly those corner pixels, zero padding gives 0.
        x = case.feed_map["X"]
        far = np.stack([got[0, :, 0, 3], got[0, :, 1, 0]])
        if case.attrs["padding_mode"] == "border":
            np.testing.assert_array_equal(far, np.stack([x[0, :, 0, 3], x[0, :, 2, 0]]))
        elif case.attrs["padding_mode"] == "zeros":
            np.testing.assert_array_equal(far, 0)
