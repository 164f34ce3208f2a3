"""Conformance against the ONNX project's own backend test data (see conformance.py).

Every case under onnx/backend/test/data/{node,light,pytorch-converted,pytorch-operator,simple}
whose operators the committed claim list (claimed_ops.txt) claims at the model's opset must pass:
every output of every test_data_set within the backend runner's tolerances (rtol 1e-3, atol 1e-7
or the case's own). The list cannot drift: `compress ops` must list exactly its operators and
versions, no claimed case is skipped, and the number of passed cases may not fall below
PASS_FLOOR. The per-op table (passed / failed / not-claimed) is printed (`pytest -s` shows it,
and a failing run includes it); a one-line summary is added to pytest's terminal summary.

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

# Backend cases that passed when the claim list last grew. Raise it with every new claim; a run
# that passes fewer (a case turned not-claimed, an op dropped from the list) fails.
PASS_FLOOR = 1534


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

def test_registry_matches_committed_claims(compress_bin):
    listed = conformance.claimed_ops(compress_bin)
    committed = conformance.committed_claims()
    assert len(committed) >= 130, "claimed_ops.txt is missing operators"
    gone = sorted(conformance.op_key(*k) + f" {committed[k]}" for k in committed if listed.get(k) != committed[k])
    new = sorted(conformance.op_key(*k) + f" {listed[k]}" for k in listed if k not in committed)
    assert not gone and not new, (
        f"`compress ops` and Tests/Interop/claimed_ops.txt disagree: claimed but not registered as claimed: {gone}; "
        f"registered but not claimed: {new} (add new ops with conformance.py --write-claims)")


def test_claim_file_format(tmp_path):
    good = tmp_path / "c.txt"
    good.write_text("# comment\nai.onnx Conv 1,11  # trailing\ncom.microsoft QGemm 1\n")
    assert conformance.committed_claims(str(good)) == {("ai.onnx", "Conv"): [1, 11], ("com.microsoft", "QGemm"): [1]}
    assert conformance.committed_claims(str(good)) == conformance.committed_claims(str(good))
    text = conformance.format_claims({("ai.onnx", "Conv"): [1, 11]})
    (tmp_path / "d.txt").write_text(text)
    assert conformance.committed_claims(str(tmp_path / "d.txt")) == {("ai.onnx", "Conv"): [1, 11]}
    for bad in ("ai.onnx Conv\n", "ai.onnx Conv 1\nai.onnx Conv 11\n", "ai.onnx Conv one\n"):
        (tmp_path / "b.txt").write_text(bad)
        with pytest.raises(ValueError):
            conformance.committed_claims(str(tmp_path / "b.txt"))


def test_claimed_case_is_never_skipped():
    cases = {c.id: c for c in conformance.collect_cases(suites=("node",))}
    claims = conformance.committed_claims()
    # A claimed case with a reason it cannot be checked fails unless listed in NOT_CLAIMED_CASES.
    case = cases["node/test_identity_sequence"]
    assert case.skip_reason and not conformance.missing_ops(case, claims)
    listed = conformance.run_case(case, claims, binary="/nonexistent")
    assert listed.outcome == "not-claimed" and "sequence" in listed.detail
    saved = conformance.NOT_CLAIMED_CASES.pop(case.id)
    try:
        assert conformance.run_case(case, claims, binary="/nonexistent").outcome == "failed"
    finally:
        conformance.NOT_CLAIMED_CASES[case.id] = saved
    # Every listed exception names a case whose operators are all claimed (else it is dead).
    for cid in conformance.NOT_CLAIMED_CASES:
        assert not conformance.missing_ops(cases[cid], claims), cid


def test_backend_conformance(compress_bin, summary):
    claims = conformance.committed_claims()
    cases = conformance.collect_cases()
    assert len([c for c in cases if c.suite == "node"]) >= 1700, "the onnx wheel's node tests are missing"
    results = conformance.run_all(cases, claims, binary=compress_bin)

    print()
    print(conformance.table(results, claims))
    print("most blocking missing ops:", conformance.blocking_ops(results))
    line = conformance.summary_line(results)
    print(line)
    summary.lines.append(line)

    passed = sum(r.outcome == "passed" for r in results)
    assert {r.outcome for r in results} <= set(conformance.OUTCOMES)
    failed = [r for r in results if r.outcome == "failed"]
    if failed:
        by_op = sorted({r.label for r in failed})
        summary.lines.append(f"conformance failures in claimed ops: {', '.join(by_op)}")
        listing = "\n".join(f"  {r.case.id} [{r.label}]: {r.detail}" for r in failed)
        pytest.fail(f"{len(failed)} backend cases of claimed ops fail ({', '.join(by_op)}):\n{listing}", pytrace=False)
    assert passed >= PASS_FLOOR, f"only {passed} backend cases pass; the floor is {PASS_FLOOR}"
