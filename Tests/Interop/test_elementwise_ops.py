"""Conformance of compress's elementwise and reduction kernels against the ONNX backend tests.

For every backend test directory (node, pytorch-converted, pytorch-operator, simple) whose model
uses one of the operators below (cases collected by conformance.collect_cases), each test_data_set
is run through `compress _eval MODEL --inputs input_*.pb --outputs-dir DIR` (compress's default
thread count) and every output_k.pb is compared with the expected one by conformance.py's
compare_tensors: floating outputs with rtol 1e-3, atol 1e-7 (NaN must match NaN), integer and
bool outputs exactly, and the dtype and shape must match.

Cases are grouped:
- own: every op of the model is one of ours -> must pass.
- unsupported: cases outside what compress claims (those listed in conformance.NOT_CLAIMED_CASES:
  string tensors, sequences/optionals, random training-mode Dropout; and models whose inputs or
  outputs are sequences/optionals) -> compress must refuse them with a one-line error, not crash.
- mixed: the model also uses other families' ops (Constant, Reshape, MatMul, ...) -> must pass.

Which cases are claimed is decided at collection time from the committed claim list
(conformance.committed_claims()): a case is claimed when conformance.missing_outside is empty.
Cases blocked only by other families' unclaimed operators are not parametrized at all (the
module summary says how many and which operators block them); nothing is skipped at run time.

A per-op table of case counts (a case counts for every listed op its model uses) is printed at
the end of the module.
Run: COMPRESS_BIN=.build/release/compress pytest -q Tests/Interop/test_elementwise_ops.py
"""
import collections
import os
import tempfile

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxruntime as ort

import conformance
from conftest import COMPRESS_BIN as COMPRESS, crash_description

SUITES = ("node", "pytorch-converted", "pytorch-operator", "simple")
RTOL, ATOL = 1e-3, 1e-7
EVAL_TIMEOUT = 120

OPS = set("""
Relu LeakyRelu PRelu Elu Selu Celu Sigmoid HardSigmoid HardSwish Tanh Softplus Softsign Mish Erf Gelu
ThresholdedRelu Shrink Exp Log Sqrt Reciprocal Neg Abs Floor Ceil Round Sign Not Identity Dropout
Clip Cast CastLike IsNaN IsInf Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh
Add Sub Mul Div Pow Mod Sum Mean Max Min Equal Greater GreaterOrEqual Less LessOrEqual
And Or Xor Where
ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare ReduceLogSum
ReduceLogSumExp ArgMax ArgMin Softmax LogSoftmax Hardmax CumSum
""".split())

# Cases compress does not claim, with the reason; compress must refuse them cleanly.
UNSUPPORTED = conformance.NOT_CLAIMED_CASES
CLAIMS = conformance.committed_claims()


def _collect():
    unsupported, rest = [], []
    for case in conformance.collect_cases(SUITES):
        if not case.op_types & OPS:
            continue
        # Listed as not claimed, or a sequence, optional or map graph input or output (not a tensor).
        if case.id in UNSUPPORTED or case.io_kinds - {"tensor_type"}:
            unsupported.append(case)
        else:
            rest.append(case)
    claimed, left_out = conformance.claimed_family_cases(rest, CLAIMS, OPS)
    own = [c for c in claimed if c.op_types <= OPS]
    mixed = [c for c in claimed if not c.op_types <= OPS]
    return own, unsupported, mixed, left_out


OWN, UNSUPPORTED_CASES, MIXED, LEFT_OUT = _collect()
RESULTS = collections.defaultdict(lambda: collections.Counter())  # op -> Counter(pass/fail/refused)


def _case_id(case):
    return case.id


def _run(case, data_dir, out_dir):
    return conformance._eval(case.model_path, conformance.data_set_files(data_dir)[0], out_dir, COMPRESS,
                             threads=None, timeout=EVAL_TIMEOUT)


def _check_case(case):
    assert case.data_sets, f"{case.name}: no test data"
    failures = conformance.data_set_failures(case, COMPRESS, threads=None, timeout=EVAL_TIMEOUT, rtol=RTOL, atol=ATOL)
    assert not failures, f"{case.name}: " + "; ".join(failures)


def _record(case, outcome):
    for op in case.op_types:
        if op in OPS:
            RESULTS[op][outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def _binary(compress_bin):
    """A missing binary fails every test of the module (conftest's compress_bin)."""
    return compress_bin


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    lines = ["", "elementwise/reduction backend cases per op (pass / fail / refused):"]
    for op in sorted(RESULTS):
        c = RESULTS[op]
        lines.append(f"  {op:18s} {c['pass']:4d} {c['fail']:4d} {c['refused']:4d}")
    lines += conformance.left_out_summary(LEFT_OUT, "test_elementwise_ops")
    text = "\n".join(lines)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(text)
    else:
        print(text)


def test_binary_exists():
    assert os.path.exists(COMPRESS), f"compress binary not found at {COMPRESS} (set COMPRESS_BIN)"


def test_collection_found_the_cases():
    assert len(OWN) >= 700 and len(MIXED) >= 200 and len(UNSUPPORTED_CASES) >= 10, \
        (len(OWN), len(MIXED), len(UNSUPPORTED_CASES))
    assert not {c.id for c in OWN + MIXED} & set(conformance.NOT_CLAIMED_CASES)


@pytest.mark.parametrize("case", OWN, ids=_case_id)
def test_own_case(case):
    try:
        _check_case(case)
    except AssertionError:
        _record(case, "fail")
        raise
    _record(case, "pass")


@pytest.mark.parametrize("case", UNSUPPORTED_CASES, ids=_case_id)
def test_unsupported_case_is_refused(case):
    name = case.name
    with tempfile.TemporaryDirectory() as out:
        r = _run(case, case.data_sets[0], out)
    lines = r.stderr.splitlines()
    crash = crash_description(r)
    ok = crash is None and r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ")
    _record(case, "refused" if ok else "fail")
    why = UNSUPPORTED.get(case.id, "sequence/optional values")
    assert crash is None, f"{name} ({why}): crashed ({crash}): {r.stderr[-2000:]}"
    assert r.returncode == 1, f"{name} ({why}): expected a refusal, got rc={r.returncode}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: expected one 'error: ' line, got {r.stderr!r}"


@pytest.mark.parametrize("case", MIXED, ids=_case_id)
def test_mixed_case(case):
    try:
        _check_case(case)
    except AssertionError:
        _record(case, "fail")
        raise
    _record(case, "pass")


def test_large_broadcasts_match_onnxruntime(tmp_path):
    """Shapes large enough to split across threads (segments that start mid-row), with
    channel, scalar, middle-axis and 3-way broadcasts, and lane ops along inner and outer axes,
    checked against ONNX Runtime on the same inputs."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 70, 33, 37)).astype(np.float32)
    c = rng.standard_normal((70, 1, 37)).astype(np.float32)
    s = rng.standard_normal((1, 70, 1, 1)).astype(np.float32)
    m = rng.random((33, 1)) > 0.5
    i = rng.integers(-1000, 1000, (3, 70, 33, 37)).astype(np.int64)
    j = rng.integers(1, 50, (33, 37)).astype(np.int64)
    feeds = {"x": x, "c": c, "s": s, "m": m, "i": i, "j": j}

    def info(name, arr):
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape)

    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [0, 2])
    one = helper.make_tensor("one", TensorProto.INT64, [], [2])
    nodes = [
        helper.make_node("Add", ["x", "c"], ["add"]),
        helper.make_node("Mul", ["x", "s"], ["mul"]),
        helper.make_node("Where", ["m", "add", "mul"], ["where"]),
        helper.make_node("Sigmoid", ["where"], ["sig"]),
        helper.make_node("Softmax", ["x"], ["soft1"], axis=1),
        helper.make_node("LogSoftmax", ["x"], ["lsoft"], axis=-1),
        helper.make_node("ReduceSum", ["x", "axes"], ["rsum"], keepdims=0),
        helper.make_node("ReduceMax", ["x"], ["rmax"], axes=[1, 3], keepdims=1),
        helper.make_node("ArgMax", ["x"], ["amax"], axis=2, keepdims=0),
        helper.make_node("CumSum", ["x", "one"], ["csum"]),
        helper.make_node("Div", ["i", "j"], ["idiv"]),
        helper.make_node("Mod", ["i", "j"], ["imod"]),
        helper.make_node("Greater", ["x", "c"], ["gt"]),
    ]
    outs = ["add", "mul", "where", "sig", "soft1", "lsoft", "rsum", "rmax", "amax", "csum", "idiv", "imod", "gt"]
    graph = helper.make_graph(nodes, "large", [info(k, v) for k, v in feeds.items()],
                              [helper.make_empty_tensor_value_info(o) for o in outs],
                              initializer=[axes, one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "large.onnx"
    onnx.save(model, path)
    paths = []
    for k, v in feeds.items():
        p = tmp_path / f"{k}.pb"
        p.write_bytes(numpy_helper.from_array(v, k).SerializeToString())
        paths.append(str(p))
    r = conformance._eval(str(path), paths, str(tmp_path / "out"), COMPRESS, threads=None)
    assert r.returncode == 0, r.stderr
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(outs, feeds)
    assert len(expected) == len(outs)
    for k, (name, want) in enumerate(zip(outs, expected)):
        got = conformance.read_tensor(str(tmp_path / "out" / f"output_{k}.pb"))
        conformance.assert_match(want, got, name, RTOL, ATOL)
