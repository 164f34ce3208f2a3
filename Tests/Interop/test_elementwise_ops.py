"""Conformance of compress's elementwise and reduction kernels against the ONNX backend tests.

For every backend test directory (node, pytorch-converted, pytorch-operator, simple) whose model
uses one of the operators below, each test_data_set is run through
`compress _eval MODEL --inputs input_*.pb --outputs-dir DIR` and every output_k.pb is compared
with the expected one: floating outputs with rtol 1e-3, atol 1e-7 (NaN must match NaN), integer
and bool outputs exactly, and the dtype and shape must match.

Cases are grouped:
- own: every op of the model is one of ours -> must pass.
- unsupported: cases outside what compress claims (string tensors, models whose inputs or
  outputs are sequences/optionals, random training-mode Dropout) -> compress must refuse them
  with a one-line error, not crash.
- mixed: the model also uses other families' ops (Constant, Reshape, MatMul, ...) -> must pass
  when every op is supported; skipped (with the missing op named) otherwise.

A per-op table of case counts (a case counts for every listed op its model uses) is printed at
the end of the module.
Run: COMPRESS_BIN=.build/release/compress pytest -q Tests/Interop/test_elementwise_ops.py
"""
import collections
import glob
import os
import subprocess
import tempfile

import numpy as np
import onnx
import onnx.backend.test
import pytest
from onnx import numpy_helper

from conftest import crash_description

COMPRESS = os.environ.get("COMPRESS_BIN", "/work/main/.build/release/compress")
DATA = os.path.join(os.path.dirname(onnx.backend.test.__file__), "data")
SUITES = ["node", "pytorch-converted", "pytorch-operator", "simple"]
RTOL, ATOL = 1e-3, 1e-7

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
UNSUPPORTED = {
    "test_equal_string": "string tensors",
    "test_equal_string_broadcast": "string tensors",
    "test_identity_sequence": "sequence values",
    "test_identity_opt": "optional values",
    "test_training_dropout": "random training-mode Dropout",
    "test_training_dropout_default": "random training-mode Dropout",
    "test_training_dropout_default_mask": "random training-mode Dropout",
    "test_training_dropout_mask": "random training-mode Dropout",
}


def _graph_ops(graph):
    for n in graph.node:
        yield n.op_type
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _graph_ops(a.g)
            for g in a.graphs:
                yield from _graph_ops(g)


def _has_non_tensor_io(graph):
    """Whether a graph input or output is a sequence, optional or map (not a tensor)."""
    return any(v.type.WhichOneof("value") != "tensor_type" for v in list(graph.input) + list(graph.output))


def _collect():
    own, unsupported, mixed = [], [], []
    for suite in SUITES:
        for d in sorted(glob.glob(os.path.join(DATA, suite, "*"))):
            path = os.path.join(d, "model.onnx")
            if not os.path.exists(path):
                continue
            model = onnx.load(path, load_external_data=False)
            ops = set(_graph_ops(model.graph))
            if not ops & OPS:
                continue
            name = os.path.basename(d)
            case = (suite, name, tuple(sorted(ops)))
            if name in UNSUPPORTED or _has_non_tensor_io(model.graph):
                unsupported.append(case)
            elif ops <= OPS:
                own.append(case)
            else:
                mixed.append(case)
    return own, unsupported, mixed


OWN, UNSUPPORTED_CASES, MIXED = _collect()
RESULTS = collections.defaultdict(lambda: collections.Counter())  # op -> Counter(pass/fail/skip)


def _case_id(case):
    return f"{case[0]}/{case[1]}"


def _run(model_dir, data_dir, out_dir):
    inputs = sorted(glob.glob(os.path.join(data_dir, "input_*.pb")), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
    cmd = [COMPRESS, "_eval", os.path.join(model_dir, "model.onnx"), "--outputs-dir", out_dir]
    if inputs:
        cmd += ["--inputs"] + inputs
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _compare(expected, actual, what):
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype}, expected {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    kind = expected.dtype.kind
    if kind in "iub":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    else:
        np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=RTOL, atol=ATOL,
                                   equal_nan=True, err_msg=what)


def _check_case(case):
    suite, name, _ = case
    model_dir = os.path.join(DATA, suite, name)
    sets = sorted(glob.glob(os.path.join(model_dir, "test_data_set_*")))
    assert sets, f"{name}: no test data"
    for data_dir in sets:
        with tempfile.TemporaryDirectory() as out:
            r = _run(model_dir, data_dir, out)
            assert r.returncode == 0, f"{name}: compress failed: {r.stderr.strip()}"
            for exp_path in sorted(glob.glob(os.path.join(data_dir, "output_*.pb"))):
                k = os.path.basename(exp_path)
                got_path = os.path.join(out, k)
                assert os.path.exists(got_path), f"{name}: {k} was not written"
                expected = numpy_helper.to_array(onnx.load_tensor(exp_path))
                actual = numpy_helper.to_array(onnx.load_tensor(got_path))
                _compare(expected, actual, f"{name}/{os.path.basename(data_dir)}/{k}")


def _record(case, outcome):
    for op in case[2]:
        if op in OPS:
            RESULTS[op][outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    lines = ["", "elementwise/reduction backend cases per op (pass / fail / refused / skipped):"]
    for op in sorted(RESULTS):
        c = RESULTS[op]
        lines.append(f"  {op:18s} {c['pass']:4d} {c['fail']:4d} {c['refused']:4d} {c['skip']:4d}")
    text = "\n".join(lines)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(text)
    else:
        print(text)


def test_binary_exists():
    assert os.path.exists(COMPRESS), f"compress binary not found at {COMPRESS} (set COMPRESS_BIN)"


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
    suite, name, _ = case
    model_dir = os.path.join(DATA, suite, name)
    data_dir = sorted(glob.glob(os.path.join(model_dir, "test_data_set_*")))[0]
    with tempfile.TemporaryDirectory() as out:
        r = _run(model_dir, data_dir, out)
    lines = r.stderr.splitlines()
    crash = crash_description(r)
    ok = crash is None and r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ")
    _record(case, "refused" if ok else "fail")
    why = UNSUPPORTED.get(name, "sequence/optional values")
    assert crash is None, f"{name} ({why}): crashed ({crash}): {r.stderr[-2000:]}"
    assert r.returncode == 1, f"{name} ({why}): expected a refusal, got rc={r.returncode}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: expected one 'error: ' line, got {r.stderr!r}"


@pytest.mark.parametrize("case", MIXED, ids=_case_id)
def test_mixed_case(case):
    suite, name, _ = case
    model_dir = os.path.join(DATA, suite, name)
    data_dir = sorted(glob.glob(os.path.join(model_dir, "test_data_set_*")))[0]
    with tempfile.TemporaryDirectory() as out:
        r = _run(model_dir, data_dir, out)
    if r.returncode != 0 and "unsupported operator" in r.stderr:
        _record(case, "skip")
        pytest.skip(r.stderr.strip())
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
    ort = pytest.importorskip("onnxruntime")
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
    r = subprocess.run([COMPRESS, "_eval", str(path), "--inputs", *paths, "--outputs-dir", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(outs, feeds)
    for k, (name, want) in enumerate(zip(outs, expected)):
        got = numpy_helper.to_array(onnx.load_tensor(str(tmp_path / "out" / f"output_{k}.pb")))
        _compare(want, got, name)
