"""Conformance against the ONNX project's own backend test data (see conformance.py).

Every case under onnx/backend/test/data/{node,light,pytorch-converted,pytorch-operator,simple}
whose operators `compress ops` claims at the model's opset must pass: every output of every
test_data_set within the backend runner's tolerances (rtol 1e-3, atol 1e-7 or the case's own).
The per-op table (passed / failed / not-claimed / skipped) is printed (`pytest -s` shows it, and
a failing run includes it); a one-line summary is added to pytest's terminal summary.

Run: COMPRESS_BIN=.build/release/compress pytest -q Tests/Interop/test_conformance.py
Or, for the table alone: COMPRESS_BIN=... python Tests/Interop/conformance.py [--filter REGEX]
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance  # noqa: E402


class _Summary:
    """A pytest plugin registered at run time: adds lines to the terminal summary."""

    def __init__(self):
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter):
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def summary(request):
    plugin = _Summary()
    request.config.pluginmanager.register(plugin, "conformance-summary")
    return plugin


# ---- the comparison itself -----------------------------------------------------------------------

def _t(a, dtype=None):
    return numpy_helper.from_array(np.asarray(a, dtype=dtype))


def test_compare_float_within_runner_tolerance():
    exp = _t([1.0, 1000.0, 0.0, np.nan, np.inf], np.float32)
    assert conformance.compare_tensors(exp, _t([1.0005, 1000.9, 0.0, np.nan, np.inf], np.float32)) is None
    msg = conformance.compare_tensors(exp, _t([1.0, 1002.0, 0.0, np.nan, np.inf], np.float32))
    assert msg and "1/5" in msg and "[1]" in msg
    assert conformance.compare_tensors(exp, _t([1.0, 1000.0, 1e-6, np.nan, np.inf], np.float32))  # atol 1e-7
    assert conformance.compare_tensors(exp, _t([1.0, 1000.0, 0.0, 0.0, np.inf], np.float32))      # NaN vs 0
    assert conformance.compare_tensors(exp, _t([1.0, 1000.0, 0.0, np.nan, -np.inf], np.float32))  # inf sign
    # A case's own tolerance (data.json) is honored.
    assert conformance.compare_tensors(exp, _t([1.0, 1002.0, 0.0, np.nan, np.inf], np.float32), rtol=3e-3) is None


def test_compare_exact_types_and_metadata():
    assert conformance.compare_tensors(_t([1, 2, 3], np.int64), _t([1, 2, 3], np.int64)) is None
    assert "differ" in conformance.compare_tensors(_t([5000], np.int64), _t([5001], np.int64))
    assert "differ" in conformance.compare_tensors(_t([True, False]), _t([True, True]))
    assert "dtype" in conformance.compare_tensors(_t([1.0], np.float32), _t([1.0], np.float64))
    assert "shape" in conformance.compare_tensors(_t([[1.0, 2.0]], np.float32), _t([1.0, 2.0], np.float32))
    s = helper.make_tensor("s", TensorProto.STRING, [2], [b"a", b"b"])
    assert conformance.compare_tensors(s, helper.make_tensor("s", TensorProto.STRING, [2], [b"a", b"b"])) is None
    assert conformance.compare_tensors(s, helper.make_tensor("s", TensorProto.STRING, [2], [b"a", b"c"]))
    # float16 compares at the runner's tolerance through float64.
    assert conformance.compare_tensors(_t([0.1], np.float16), _t([0.1], np.float16)) is None


def test_case_attribution():
    cases = {c.id: c for c in conformance.collect_cases(suites=("node", "pytorch-converted", "light"))}
    expect = {
        "node/test_reduce_sum_keepdims_example": "ReduceSum",
        "node/test_less_equal_bcast": "LessOrEqual",
        "node/test_softmax_example_expanded": "Softmax",
        "node/test_constant_pad": "Pad",
        "node/test_basic_conv_with_padding": "Conv",
        "pytorch-converted/test_Conv2d_groups": "Conv",
        "light/resnet50": "light:resnet50",
    }
    for cid, op in expect.items():
        assert conformance.primary_op(cases[cid]) == op, cid
    assert cases["light/densenet121"].rtol == 2e-3  # real/test_densenet121/data.json
    assert cases["node/test_training_dropout"].skip_reason
    assert "sequence" in (cases["node/test_sequence_insert_at_back"].skip_reason or "")
    # Ops of If/Loop bodies count, with the model's opset.
    loop = cases["node/test_loop11"]
    assert ("ai.onnx", "Loop") in loop.ops and ("ai.onnx", "Add") in loop.ops


def test_claim_rule():
    claims = {("ai.onnx", "Conv"): [1, 11], ("ai.onnx", "Split"): [13, 18]}
    assert conformance.is_claimed(claims, "", "Conv", 9)
    assert conformance.is_claimed(claims, "ai.onnx", "Split", 13)
    assert not conformance.is_claimed(claims, "", "Split", 11)
    assert not conformance.is_claimed(claims, "", "Relu", 13)
    assert not conformance.is_claimed(claims, "", "Conv", None)


# ---- the backend test data -----------------------------------------------------------------------

def test_backend_conformance(compress_bin, summary):
    claims = conformance.claimed_ops(compress_bin)
    assert claims, "`compress ops` lists no operators"
    cases = conformance.collect_cases()
    assert len([c for c in cases if c.suite == "node"]) >= 1700, "the onnx wheel's node tests are missing"
    results = conformance.run_all(cases, claims, binary=compress_bin)

    print()
    print(conformance.table(results, claims))
    print("most blocking missing ops:", conformance.blocking_ops(results))
    line = conformance.summary_line(results)
    print(line)
    summary.lines.append(line)

    failed = [r for r in results if r.outcome == "failed"]
    if failed:
        by_op = sorted({r.label for r in failed})
        summary.lines.append(f"conformance failures in claimed ops: {', '.join(by_op)}")
        listing = "\n".join(f"  {r.case.id} [{r.label}]: {r.detail}" for r in failed)
        pytest.fail(f"{len(failed)} backend cases of claimed ops fail ({', '.join(by_op)}):\n{listing}", pytrace=False)
