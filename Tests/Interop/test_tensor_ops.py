"""Conformance of compress's shape, movement, indexing, constant, Resize, TopK and Einsum kernels.

Two sources of truth:

1. The ONNX backend test data (node, pytorch-converted, pytorch-operator, simple). For every
   test directory whose model uses one of the operators below (cases collected by
   conformance.collect_cases), each test_data_set is run through
   `compress _eval MODEL --inputs input_*.pb --outputs-dir DIR` (compress's default thread count)
   and each output_k.pb is compared with the expected one by conformance.py's compare_tensors:
   floating outputs with rtol 1e-3, atol 1e-7 (NaN matches NaN), integer and bool outputs
   exactly; dtype and shape must match.
   - own: every op of the model is one of ours -> must pass.
   - mixed: the model also uses other families' ops -> must pass.
   - refused: the model passes sequence or optional values, which compress does not model ->
     compress must refuse it with a one-line error (exit 1, `error: `), not crash.
   Which cases are claimed is decided at collection time from the committed claim list
   (conformance.committed_claims()): claimed when conformance.missing_outside is empty. Cases
   blocked only by other families' unclaimed operators, or listed in
   conformance.NOT_CLAIMED_CASES, are not parametrized (the summary says how many and why);
   nothing is skipped at run time.
2. Opset versions the backend data does not cover (the backend data holds mostly the newest
   version of each op): small models built here at older opsets (Slice-1 attributes, Pad-2,
   Squeeze/Unsqueeze-11, Split-2/13, Resize-10/11/13, Upsample-7/9, TopK-1/10, ...) and other
   dtypes, compared with ONNX Runtime on the same inputs, same tolerances (compare_tensors).

A per-op table of pass counts is printed at the end.
Run: COMPRESS_BIN=.build/release/compress pytest -q Tests/Interop/test_tensor_ops.py
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
from conftest import COMPRESS_BIN as COMPRESS, crash_description

SUITES = ("node", "pytorch-converted", "pytorch-operator", "simple")
RTOL, ATOL = 1e-3, 1e-7

OPS = set("""
Flatten Reshape Transpose Squeeze Unsqueeze Concat Split Slice Gather GatherElements ScatterND
Expand Tile Pad Resize Upsample DepthToSpace SpaceToDepth Shape Size Constant ConstantOfShape
Range EyeLike NonZero TopK Einsum
""".split())


CLAIMS = conformance.committed_claims()


def _collect():
    rest, refused = [], []
    for case in conformance.collect_cases(SUITES):
        if not case.op_types & OPS:
            continue
        # A graph input or output is a sequence or optional value.
        if case.io_kinds & {"sequence_type", "optional_type"}:
            refused.append(case)
        else:
            rest.append(case)
    claimed, left_out = conformance.claimed_family_cases(rest, CLAIMS, OPS)
    own = [c for c in claimed if c.op_types <= OPS]
    mixed = [c for c in claimed if not c.op_types <= OPS]
    return own, mixed, refused, left_out


OWN, MIXED, REFUSED, LEFT_OUT = _collect()
RESULTS = collections.defaultdict(collections.Counter)  # op -> Counter(pass/fail/refused)


def _case_id(case):
    return case.id


def _eval(model_path, input_paths, out_dir):
    return conformance._eval(model_path, list(input_paths), out_dir, COMPRESS, threads=None)


def _check_backend_case(case):
    assert case.data_sets, f"{case.name}: no test data"
    failures = conformance.data_set_failures(case, COMPRESS, threads=None, rtol=RTOL, atol=ATOL)
    assert not failures, f"{case.name}: " + "; ".join(failures)


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
    lines = ["", "tensor-op cases per op (backend data + ONNX Runtime comparisons): pass / fail / refused"]
    for op in sorted(RESULTS):
        c = RESULTS[op]
        lines.append(f"  {op:16s} {c['pass']:4d} {c['fail']:4d} {c['refused']:4d}")
    lines += conformance.left_out_summary(LEFT_OUT, "test_tensor_ops")
    text = "\n".join(lines)
    # Printed past pytest's output capture, so the table shows without -s.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(text)
    elif tr is not None:
        tr.write_line(text)
    else:
        print(text)


def _tracked(ops, body):
    try:
        body()
    except BaseException:
        _record(ops, "fail")
        raise
    _record(ops, "pass")


def test_binary_exists():
    assert os.path.exists(COMPRESS), f"compress binary not found at {COMPRESS} (set COMPRESS_BIN)"


def test_collection_found_the_cases():
    assert len(OWN) >= 180 and len(MIXED) >= 250 and len(REFUSED) >= 10, (len(OWN), len(MIXED), len(REFUSED))


@pytest.mark.parametrize("case", OWN, ids=_case_id)
def test_backend_own(case):
    _tracked(case.op_types, lambda: _check_backend_case(case))


@pytest.mark.parametrize("case", MIXED, ids=_case_id)
def test_backend_mixed(case):
    _tracked(case.op_types, lambda: _check_backend_case(case))


@pytest.mark.parametrize("case", REFUSED, ids=_case_id)
def test_backend_sequences_refused(case):
    inputs, _ = conformance.data_set_files(case.data_sets[0])
    with tempfile.TemporaryDirectory() as out:
        r = _eval(case.model_path, inputs, out)
    lines = r.stderr.splitlines()
    crash = crash_description(r)
    ok = crash is None and r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ")
    _record(case.op_types, "refused" if ok else "fail")
    assert ok, (f"{case.name}: expected a one-line 'error: ' refusal (exit 1), got rc={r.returncode}"
                f"{f' (crash: {crash})' if crash else ''}: {r.stderr.strip()!r}")


# ---------------------------------------------------------------------------------------------
# Older opsets and other dtypes, against ONNX Runtime.

RNG = np.random.default_rng(7)
_NP = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.FLOAT16: np.float16,
       TensorProto.INT64: np.int64, TensorProto.INT32: np.int32, TensorProto.INT8: np.int8,
       TensorProto.UINT8: np.uint8, TensorProto.BOOL: np.bool_, TensorProto.INT16: np.int16,
       TensorProto.UINT64: np.uint64}


def _data(shape, dtype=TensorProto.FLOAT):
    t = _NP[dtype]
    if t == np.bool_:
        return RNG.random(shape) > 0.5
    if np.issubdtype(t, np.integer):
        lo = 0 if np.issubdtype(t, np.unsignedinteger) else -50
        return RNG.integers(lo, 50, size=shape).astype(t)
    return RNG.standard_normal(shape).astype(t)


class Case:
    """One node at one opset: runtime inputs (name -> array), constant inputs as initializers."""

    def __init__(self, cid, op, opset, inputs, attrs=None, consts=None, outputs=1, order=None, ref="ort"):
        self.id, self.op, self.opset, self.ref = cid, op, opset, ref
        self.inputs = inputs            # dict name -> np.ndarray (runtime inputs)
        self.consts = consts or {}      # dict name -> np.ndarray (initializers)
        self.attrs = attrs or {}
        self.outputs = outputs
        self.order = order              # node input names in order ("" for omitted)
        # "ort": ONNX Runtime; "onnx": the ONNX reference evaluator, for the few cases where the
        # two disagree and compress follows the specification's reference (noted at each case).

    def model(self):
        names = self.order or (list(self.inputs) + list(self.consts))
        outs = [f"y{i}" for i in range(self.outputs)]
        node = helper.make_node(self.op, names, outs, **self.attrs)
        vi = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in self.inputs.items()]
        init = [numpy_helper.from_array(a, n) for n, a in self.consts.items()]
        g = helper.make_graph([node], "g", vi, [helper.make_empty_tensor_value_info(o) for o in outs], init)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)], ir_version=8)


def _cases():
    c = []
    f = TensorProto.FLOAT
    x4 = _data((2, 3, 4, 5))
    # Flatten / Reshape / Transpose / Squeeze / Unsqueeze at older opsets and other dtypes.
    c.append(Case("flatten9_axis0", "Flatten", 9, {"x": x4}, {"axis": 0}))
    c.append(Case("flatten11_neg", "Flatten", 11, {"x": _data((2, 3, 4), TensorProto.INT8)}, {"axis": -1}))
    c.append(Case("reshape5", "Reshape", 5, {"x": x4}, consts={"s": np.array([0, -1, 5], np.int64)}))
    c.append(Case("reshape13_int32", "Reshape", 13, {"x": _data((6, 4), TensorProto.INT32)}, consts={"s": np.array([2, 0, -1], np.int64)}))
    for dt in (TensorProto.UINT8, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.BOOL, TensorProto.DOUBLE):
        c.append(Case(f"transpose_dtype{dt}", "Transpose", 13, {"x": _data((2, 3, 4, 5), dt)}, {"perm": [0, 2, 3, 1]}))
        # Large enough for the tiled plane copy (last two merged dims read with strides 1, s).
        c.append(Case(f"transpose_tiled_dtype{dt}", "Transpose", 13, {"x": _data((2, 17, 9, 10), dt)}, {"perm": [0, 2, 3, 1]}))
    c.append(Case("transpose_large", "Transpose", 13, {"x": _data((1, 32, 56, 56))}, {"perm": [0, 2, 3, 1]}))
    c.append(Case("transpose_attn", "Transpose", 13, {"x": _data((2, 7, 4, 8))}, {"perm": [0, 2, 1, 3]}))
    c.append(Case("squeeze11_attr", "Squeeze", 11, {"x": _data((1, 3, 1, 5))}, {"axes": [0, -2]}))
    c.append(Case("squeeze1_all", "Squeeze", 1, {"x": _data((1, 3, 1, 5))}))
    c.append(Case("squeeze13_noaxes", "Squeeze", 13, {"x": _data((1, 3, 1, 5))}))
    c.append(Case("unsqueeze11_attr", "Unsqueeze", 11, {"x": _data((3, 5))}, {"axes": [0, -1]}))
    c.append(Case("unsqueeze1_attr", "Unsqueeze", 1, {"x": _data((3, 5))}, {"axes": [1, 3]}))
    # Concat / Split.
    c.append(Case("concat4_int64", "Concat", 4, {"a": _data((2, 3), TensorProto.INT64), "b": _data((2, 1), TensorProto.INT64)}, {"axis": 1}))
    c.append(Case("concat13_empty", "Concat", 13, {"a": _data((0, 3)), "b": _data((2, 3))}, {"axis": 0}))
    c.append(Case("split2_attr", "Split", 2, {"x": _data((6, 4))}, {"axis": 0, "split": [1, 2, 3]}, outputs=3))
    c.append(Case("split11_equal", "Split", 11, {"x": _data((4, 6))}, {"axis": -1}, outputs=3))
    c.append(Case("split13_input", "Split", 13, {"x": _data((4, 6))}, {"axis": 1}, consts={"s": np.array([2, 4], np.int64)}, outputs=2))
    c.append(Case("split18_uneven", "Split", 18, {"x": _data((7, 2))}, {"axis": 0, "num_outputs": 3}, outputs=3))
    # Slice-1 attributes; Slice-10/13 inputs with negative steps, clamping and INT_MAX.
    c.append(Case("slice1_attr", "Slice", 1, {"x": x4}, {"starts": [1, -3], "ends": [100, -1], "axes": [1, 3]}))
    c.append(Case("slice1_noaxes", "Slice", 1, {"x": _data((5, 6))}, {"starts": [1, 0], "ends": [3, 4]}))
    big = np.iinfo(np.int64).max
    c.append(Case("slice10_negstep", "Slice", 10, {"x": _data((5, 6), TensorProto.INT32)},
                  consts={"s": np.array([-1, big], np.int64), "e": np.array([-big, -7], np.int64),
                          "a": np.array([0, 1], np.int64), "t": np.array([-2, -1], np.int64)}))
    c.append(Case("slice13_int32_args", "Slice", 13, {"x": _data((5, 6))},
                  consts={"s": np.array([4], np.int32), "e": np.array([0], np.int32), "a": np.array([-1], np.int32),
                          "t": np.array([-3], np.int32)}))
    c.append(Case("slice13_empty", "Slice", 13, {"x": _data((5, 6))},
                  consts={"s": np.array([3], np.int64), "e": np.array([1], np.int64)}))
    # Gather / GatherElements / ScatterND at older opsets and other dtypes.
    c.append(Case("gather1_axis1", "Gather", 1, {"x": _data((3, 4, 5))}, {"axis": 1}, consts={"i": np.array([[0, 3], [2, 2]], np.int64)}))
    c.append(Case("gather11_neg_bool", "Gather", 11, {"x": _data((4, 3), TensorProto.BOOL)}, {"axis": 0}, consts={"i": np.array([-1, 0], np.int32)}))
    c.append(Case("gather13_scalar", "Gather", 13, {"x": _data((4, 3))}, {"axis": 1}, consts={"i": np.array(2, np.int64)}))
    c.append(Case("gatherel11_axis2", "GatherElements", 11, {"x": _data((2, 3, 4))}, {"axis": 2},
                  consts={"i": RNG.integers(-4, 4, (2, 3, 2)).astype(np.int64)}))
    c.append(Case("gatherel13_smaller", "GatherElements", 13, {"x": _data((4, 5), TensorProto.INT64)}, {"axis": 0},
                  consts={"i": RNG.integers(0, 4, (2, 3)).astype(np.int64)}))
    for red, ver in (("none", 11), ("add", 16), ("mul", 16), ("max", 18), ("min", 18)):
        attrs = {} if red == "none" else {"reduction": red}
        c.append(Case(f"scatternd{ver}_{red}", "ScatterND", ver, {"x": _data((4, 3, 2))}, attrs,
                      consts={"i": np.array([[1], [3], [1]] if red != "none" else [[1], [3]], np.int64),
                              "u": _data((3 if red != "none" else 2, 3, 2))}))
    c.append(Case("scatternd_int32_pairs", "ScatterND", 16, {"x": _data((4, 3), TensorProto.INT32)}, {"reduction": "add"},
                  consts={"i": np.array([[0, 1], [3, 2], [0, 1]], np.int64), "u": _data((3,), TensorProto.INT32)}))
    # Expand / Tile / Pad.
    c.append(Case("expand8", "Expand", 8, {"x": _data((3, 1))}, consts={"s": np.array([2, 1, 4], np.int64)}))
    c.append(Case("expand13_f16", "Expand", 13, {"x": _data((1, 3), TensorProto.FLOAT16)}, consts={"s": np.array([4, 1], np.int64)}))
    c.append(Case("tile6", "Tile", 6, {"x": _data((2, 3), TensorProto.INT64)}, consts={"r": np.array([2, 3], np.int64)}))
    for mode in ("constant", "reflect", "edge"):
        c.append(Case(f"pad2_{mode}", "Pad", 2, {"x": _data((1, 2, 4, 5))},
                      {"mode": mode, "pads": [0, 0, 1, 2, 0, 0, 3, 1], **({"value": 1.5} if mode == "constant" else {})}))
        c.append(Case(f"pad11_{mode}", "Pad", 11, {"x": _data((2, 4, 5))}, {"mode": mode},
                      consts={"p": np.array([0, 2, 3, 0, 1, 4], np.int64), **({"v": np.array(-2.0, np.float32)} if mode == "constant" else {})}))
    c.append(Case("pad11_negative", "Pad", 11, {"x": _data((4, 5), TensorProto.INT32)}, consts={"p": np.array([-1, 2, 0, -2], np.int64)}))
    c.append(Case("pad19_wrap", "Pad", 19, {"x": _data((3, 4))}, {"mode": "wrap"}, consts={"p": np.array([1, 2, 2, 3], np.int64)}))
    c.append(Case("pad18_axes", "Pad", 18, {"x": _data((2, 3, 4))}, {"mode": "edge"},
                  consts={"p": np.array([1, 2, 0, 3], np.int64), "v": np.array(0, np.float32), "a": np.array([-1, 0], np.int64)},
                  order=["x", "p", "", "a"]))
    # DepthToSpace / SpaceToDepth.
    c.append(Case("d2s1", "DepthToSpace", 1, {"x": _data((1, 8, 2, 3))}, {"blocksize": 2}))
    c.append(Case("d2s11_crd", "DepthToSpace", 11, {"x": _data((2, 18, 2, 2))}, {"blocksize": 3, "mode": "CRD"}))
    c.append(Case("s2d1_int8", "SpaceToDepth", 1, {"x": _data((1, 2, 4, 6), TensorProto.INT8)}, {"blocksize": 2}))
    # Shape / Size / constants.
    c.append(Case("shape1", "Shape", 1, {"x": x4}))
    c.append(Case("size1", "Size", 1, {"x": x4}))
    c.append(Case("constant12_ints", "Constant", 12, {}, {"value_ints": [3, -1, 7]}))
    c.append(Case("constant12_float", "Constant", 12, {}, {"value_float": 2.5}))
    c.append(Case("cos9_int64", "ConstantOfShape", 9, {}, {"value": helper.make_tensor("v", TensorProto.INT64, [1], [7])},
                  consts={"s": np.array([2, 3], np.int64)}))
    c.append(Case("cos9_scalar", "ConstantOfShape", 9, {}, consts={"s": np.zeros((0,), np.int64)}))
    c.append(Case("range11_int64", "Range", 11, {}, consts={"a": np.array(10, np.int64), "b": np.array(-3, np.int64), "d": np.array(-4, np.int64)}))
    c.append(Case("range11_float", "Range", 11, {}, consts={"a": np.array(0.5, np.float32), "b": np.array(3.0, np.float32), "d": np.array(0.3, np.float32)}))
    c.append(Case("range11_runtime", "Range", 11, {"a": np.array(1, np.int32), "b": np.array(9, np.int32), "d": np.array(3, np.int32)}))
    c.append(Case("eyelike9_k", "EyeLike", 9, {"x": _data((3, 5))}, {"k": -1}))
    c.append(Case("eyelike9_dtype", "EyeLike", 9, {"x": _data((4, 4), TensorProto.INT32)}, {"dtype": TensorProto.DOUBLE, "k": 2}))
    # NonZero: -0.0 is zero, NaN is not.
    nz = np.array([[0.0, -0.0, 1.0], [np.nan, 0.0, -2.0]], np.float32)
    c.append(Case("nonzero9_float", "NonZero", 9, {"x": nz}))
    c.append(Case("nonzero13_scalar", "NonZero", 13, {"x": np.array(3.0, np.float32)}))  # [1, count], as ONNX Runtime
    c.append(Case("nonzero13_int", "NonZero", 13, {"x": _data((3, 4, 2), TensorProto.INT32) % 2}))
    # TopK: attribute k (opset 1), input k (10), smallest (11), ties keep the lower index first.
    c.append(Case("topk1_attr", "TopK", 1, {"x": _data((3, 6))}, {"k": 2}, outputs=2))
    c.append(Case("topk10_axis0", "TopK", 10, {"x": _data((5, 4))}, {"axis": 0}, consts={"k": np.array([3], np.int64)}, outputs=2))
    ties = np.array([[1, 3, 3, 2, 3, 1], [0, 0, 0, 0, 0, 0]], np.float32)
    c.append(Case("topk11_ties_largest", "TopK", 11, {"x": ties}, consts={"k": np.array([4], np.int64)}, outputs=2))
    c.append(Case("topk11_ties_smallest", "TopK", 11, {"x": ties}, {"largest": 0}, consts={"k": np.array([4], np.int64)}, outputs=2))
    c.append(Case("topk11_int32_mid", "TopK", 11, {"x": _data((2, 40, 3), TensorProto.INT32)}, {"axis": 1, "largest": 0},
                  consts={"k": np.array([3], np.int64)}, outputs=2))
    # Resize-10 / Upsample-7/9: asymmetric coordinates, legacy nearest rounding.
    img = _data((1, 2, 5, 6))
    for mode in ("nearest", "linear"):
        c.append(Case(f"resize10_{mode}_up", "Resize", 10, {"x": img}, {"mode": mode}, consts={"s": np.array([1, 1, 2.0, 1.5], np.float32)}))
        c.append(Case(f"resize10_{mode}_down", "Resize", 10, {"x": img}, {"mode": mode}, consts={"s": np.array([1, 1, 0.6, 0.5], np.float32)}))
        c.append(Case(f"upsample7_{mode}", "Upsample", 7, {"x": img}, {"mode": mode, "scales": [1.0, 1.0, 2.0, 3.0]}))
        c.append(Case(f"upsample9_{mode}", "Upsample", 9, {"x": img}, {"mode": mode}, consts={"s": np.array([1, 1, 2.0, 2.0], np.float32)}))
    c.append(Case("resize10_nearest_uint8", "Resize", 10, {"x": _data((1, 3, 4, 4), TensorProto.UINT8)}, {"mode": "nearest"},
                  consts={"s": np.array([1, 1, 2, 2], np.float32)}))
    # Resize-11/13: every coordinate mode and nearest rounding, cubic options, scales and sizes.
    modes = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
    for ct in modes:
        # align_corners with a scale whose output length is fractional: the reference (and
        # compress, and the backend data) divide by the unrounded length s*n - 1, ONNX Runtime by
        # the rounded one; integer lengths here keep the comparison meaningful.
        s = [1, 1, 2.0, 0.5] if ct == "align_corners" else [1, 1, 1.7, 0.75]
        for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
            c.append(Case(f"resize11_nearest_{ct}_{nm}", "Resize", 11, {"x": img},
                          {"mode": "nearest", "coordinate_transformation_mode": ct, "nearest_mode": nm},
                          consts={"roi": np.zeros(0, np.float32), "s": np.array(s, np.float32)}))
        for mode in ("linear", "cubic"):
            c.append(Case(f"resize11_{mode}_{ct}_sizes", "Resize", 11, {"x": img}, {"mode": mode, "coordinate_transformation_mode": ct},
                          consts={"roi": np.zeros(0, np.float32), "s": np.zeros(0, np.float32), "z": np.array([1, 2, 9, 4], np.int64)}))
            c.append(Case(f"resize13_{mode}_{ct}_scales", "Resize", 13, {"x": img}, {"mode": mode, "coordinate_transformation_mode": ct},
                          consts={"s": np.array([1, 1, 0.8, 2.5], np.float32)}, order=["x", "", "s"]))
    # Scale 0.7f: the source coordinate 4.5 of output 3 is 4.50000008 in double (the reference,
    # which rounds it up) but 4.5 in ONNX Runtime's float arithmetic (which rounds it down).
    c.append(Case("resize11_nearest_tie_reference", "Resize", 11, {"x": img}, {"mode": "nearest"},
                  consts={"roi": np.zeros(0, np.float32), "s": np.array([1, 1, 1.7, 0.7], np.float32)}, ref="onnx"))
    c.append(Case("resize13_cubic_exclude", "Resize", 13, {"x": img}, {"mode": "cubic", "exclude_outside": 1, "cubic_coeff_a": -0.5},
                  consts={"s": np.array([1, 1, 2.0, 0.5], np.float32)}, order=["x", "", "s"]))
    c.append(Case("resize13_tf_crop", "Resize", 13, {"x": img}, {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
                                                                "extrapolation_value": 5.0},
                  consts={"roi": np.array([0, 0, -0.2, 0.3, 1, 1, 0.9, 1.4], np.float32), "s": np.zeros(0, np.float32),
                          "z": np.array([1, 2, 4, 5], np.int64)}))
    c.append(Case("resize13_linear_3d", "Resize", 13, {"x": _data((2, 3, 4))}, {"mode": "linear"},
                  consts={"s": np.array([1, 2.0, 0.5], np.float32)}, order=["x", "", "s"]))
    c.append(Case("resize18_axes_sizes", "Resize", 18, {"x": img}, {"mode": "linear", "axes": [3, 2]},
                  consts={"z": np.array([9, 3], np.int64)}, order=["x", "", "", "z"]))
    # Integer outputs of linear resize: the reference rounds half to even and saturates; ONNX
    # Runtime truncates (-23.5 -> -23), so this case is checked against the reference.
    c.append(Case("resize18_int8_linear", "Resize", 18, {"x": _data((1, 1, 4, 4), TensorProto.INT8)}, {"mode": "linear"},
                  consts={"s": np.array([1, 1, 1.5, 1.5], np.float32)}, order=["x", "", "s"], ref="onnx"))
    c.append(Case("resize18_uint8_nearest", "Resize", 18, {"x": _data((1, 1, 4, 4), TensorProto.UINT8)}, {"mode": "nearest"},
                  consts={"s": np.array([1, 1, 1.5, 2.5], np.float32)}, order=["x", "", "s"]))
    # Einsum patterns attention exports use.
    q, k = _data((2, 3, 5, 4)), _data((2, 3, 6, 4))
    c.append(Case("einsum_bhid_bhjd", "Einsum", 12, {"q": q, "k": k}, {"equation": "bhid,bhjd->bhij"}))
    c.append(Case("einsum_bmm", "Einsum", 12, {"a": _data((3, 4, 5)), "b": _data((3, 5, 2))}, {"equation": "bij,bjk->bik"}))
    c.append(Case("einsum_attn_v", "Einsum", 12, {"p": _data((2, 3, 5, 6)), "v": _data((2, 3, 6, 4))}, {"equation": "bhij,bhjd->bhid"}))
    c.append(Case("einsum_outer", "Einsum", 12, {"a": _data((4,)), "b": _data((3,))}, {"equation": "i,j->ij"}))
    c.append(Case("einsum_reduce", "Einsum", 12, {"a": _data((3, 4, 5))}, {"equation": "bij->bj"}))
    c.append(Case("einsum_transpose_implicit", "Einsum", 12, {"a": _data((3, 4, 5))}, {"equation": "ijk"}))
    c.append(Case("einsum_ellipsis_bcast", "Einsum", 12, {"a": _data((2, 1, 3, 4)), "b": _data((1, 5, 4, 6))}, {"equation": "...ij,...jk->...ik"}))
    c.append(Case("einsum_three", "Einsum", 12, {"a": _data((3, 4)), "b": _data((4, 5)), "c": _data((5, 2))}, {"equation": "ij,jk,kl->il"}))
    c.append(Case("einsum_trace", "Einsum", 12, {"a": _data((4, 4))}, {"equation": "ii->"}))
    c.append(Case("einsum_bld_linear", "Einsum", 12, {"x": _data((2, 7, 8)), "w": _data((6, 8))}, {"equation": "bld,od->blo"}))
    c.append(Case("einsum_transposed_operands", "Einsum", 12, {"a": _data((3, 5, 4)), "b": _data((3, 6, 5))}, {"equation": "bji,bkj->bik"}))
    c.append(Case("einsum_f64_trace_batch", "Einsum", 12, {"a": _data((2, 3, 3), TensorProto.DOUBLE)}, {"equation": "bii->b"}))
    c.append(Case("einsum_int64", "Einsum", 12, {"a": _data((3, 4), TensorProto.INT64), "b": _data((4, 2), TensorProto.INT64)}, {"equation": "ij,jk->ik"}))
    return c


EXTRA = _cases()


@pytest.mark.parametrize("case", EXTRA, ids=lambda c: c.id)
def test_against_onnxruntime(case):
    def body():
        model = case.model()
        if case.ref == "onnx":
            from onnx.reference import ReferenceEvaluator
            expected = ReferenceEvaluator(model).run(None, case.inputs)
        else:
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            expected = sess.run(None, case.inputs)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            onnx.save(model, path)
            ins = []
            for i, (n, a) in enumerate(case.inputs.items()):
                p = os.path.join(tmp, f"input_{i}.pb")
                onnx.save_tensor(numpy_helper.from_array(a, n), p)
                ins.append(p)
            out = os.path.join(tmp, "out")
            r = _eval(path, ins, out)
            assert r.returncode == 0, f"{case.id}: compress failed: {r.stderr.strip()}"
            assert len(expected) == case.outputs, f"{case.id}: the reference gave {len(expected)} outputs"
            for k, e in enumerate(expected):
                got = conformance.read_tensor(os.path.join(out, f"output_{k}.pb"))
                conformance.assert_match(np.asarray(e), got, f"{case.id}/output_{k}", RTOL, ATOL)
    _tracked([case.op], body)
