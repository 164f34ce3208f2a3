"""Conformance harness: compress's executor against the ONNX project's own backend test data.

The `onnx` wheel ships the backend tests on disk under onnx/backend/test/data:
- node/               one directory per operator test (model.onnx + test_data_set_N/{input,output}_k.pb)
- pytorch-converted/, pytorch-operator/, simple/   the same layout, small multi-op models
- light/              light_NAME.onnx + light_NAME_output_0.pb: real architectures (AlexNet,
                      ResNet-50, …) whose weights are ConstantOfShape fills; the input is the
                      runner's dummy data, arange(n)/n in float32 (`generate_dummy_data`), and the
                      tolerances come from real/test_NAME/data.json.

For each case this module
1. collects the operators the model uses, recursing into graph attributes (If/Loop/Scan bodies),
   each with the model's opset for its domain;
2. asks whether the committed claim list (Tests/Interop/claimed_ops.txt) claims every
   (domain, op, opset): an op is claimed at opset v when it has an implementation whose
   since-version is <= v. The list is what the project promises, so it cannot drift with the
   registry: test_conformance holds `compress ops --format json` equal to it (an op leaving the
   registry fails, and so does one added without being claimed here), and the number of passed
   cases has a floor. `python conformance.py --write-claims` rewrites the list from the binary;
   review the diff before committing it;
3. if so, runs every data set through `compress _eval MODEL --inputs input_*.pb --outputs-dir D`
   and compares each expected output_k.pb with what compress wrote, as the ONNX backend runner
   does (`onnx.backend.test.runner.Runner.assert_similar_outputs`): equal shape and dtype, then
   `numpy.testing.assert_allclose(actual, expected, rtol, atol)` with NaN equal to NaN — rtol 1e-3,
   atol 1e-7 unless the case's data.json says otherwise (the loader's `load_model_tests` rule).
   Integer, bool and 4/2-bit integer outputs are compared exactly (stricter than the runner, which
   applies the float tolerance to them too), strings by equality.

Outcomes: passed, failed (claimed but wrong, refused, or impossible to check), not-claimed
(some op/opset missing from the claim list, attributed to the missing op; or a case named in
NOT_CLAIMED_CASES, a committed list of variants compress does not model although it claims their
operators: string tensors, sequence/optional values, outputs drawn from a random generator).
There is no "skipped": a claimed case that cannot be checked (sequence/optional/map graph inputs
or outputs the TensorProto loader cannot read) fails until it is listed with its reason.

Each case is attributed to one operator for the per-op table: the operator the test is named
after (test_reduce_sum_keepdims -> ReduceSum, test_Conv2d_groups -> Conv, test_softmax_example_expanded
-> Softmax), else the model's most frequent operator; light models get their own rows
("light:resnet50"). A not-claimed case is counted under its first missing operator.

The per-family tests (test_nn_ops.py, test_elementwise_ops.py, test_tensor_ops.py,
test_seq_quant_ops.py) use the same pieces: collect_cases, missing_ops / missing_outside,
data_set_failures (compress on every data set, outputs compared by compare_outputs), _eval and
compare_tensors / assert_match for their own ONNX Runtime cross-checks.

Also a script: `python Tests/Interop/conformance.py [--workers N] [--filter REGEX] [--failures]`.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnx.defs
from onnx import TensorProto, numpy_helper

# This checkout's release binary unless COMPRESS_BIN names another (as conftest.py resolves it).
COMPRESS = os.path.abspath(os.environ.get("COMPRESS_BIN", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", ".build", "release", "compress")))
DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
SUITES = ("node", "light", "pytorch-converted", "pytorch-operator", "simple")
RTOL, ATOL = 1e-3, 1e-7
DEFAULT_DOMAIN = "ai.onnx"
EVAL_TIMEOUT = 300

# Cases no deterministic backend can reproduce: the expected outputs come from one random draw.
RANDOM_CASES = {
    "test_training_dropout": "training-mode Dropout draws a random mask",
    "test_training_dropout_default": "training-mode Dropout draws a random mask",
    "test_training_dropout_default_mask": "training-mode Dropout draws a random mask",
    "test_training_dropout_mask": "training-mode Dropout draws a random mask",
    "test_bernoulli": "Bernoulli draws random samples",
    "test_bernoulli_double": "Bernoulli draws random samples",
    "test_bernoulli_double_expanded": "Bernoulli draws random samples",
    "test_bernoulli_expanded": "Bernoulli draws random samples",
    "test_bernoulli_seed": "Bernoulli draws random samples (the seed is implementation-defined)",
    "test_bernoulli_seed_expanded": "Bernoulli draws random samples (the seed is implementation-defined)",
}

# Cases whose operators are claimed but whose variant compress does not model. Listing one here
# is a decision reviewed in a diff, not a silent skip; each is counted as not-claimed.
NOT_CLAIMED_CASES = {
    "node/test_equal_string": "string tensors are not modeled by the executor",
    "node/test_equal_string_broadcast": "string tensors are not modeled by the executor",
    "node/test_identity_opt": "optional values are not modeled by the executor",
    "node/test_identity_sequence": "sequence values are not modeled by the executor",
    "node/test_training_dropout": "training-mode Dropout draws a random mask",
    "node/test_training_dropout_default": "training-mode Dropout draws a random mask",
    "node/test_training_dropout_default_mask": "training-mode Dropout draws a random mask",
    "node/test_training_dropout_mask": "training-mode Dropout draws a random mask",
}

CLAIMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "claimed_ops.txt")

# Element types compared exactly (after conversion to float64 or int64 where NumPy needs it).
EXACT_TYPES = {
    TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16, TensorProto.INT32,
    TensorProto.UINT32, TensorProto.INT64, TensorProto.UINT64, TensorProto.BOOL, TensorProto.STRING,
    TensorProto.INT4, TensorProto.UINT4,
}
for _name in ("INT2", "UINT2"):
    if hasattr(TensorProto, _name):
        EXACT_TYPES.add(getattr(TensorProto, _name))


def _norm_domain(domain: str) -> str:
    return DEFAULT_DOMAIN if domain in ("", DEFAULT_DOMAIN) else domain


def op_key(domain: str, op: str) -> str:
    """Table key of an operator: the bare name in the default domain, DOMAIN::Op elsewhere."""
    d = _norm_domain(domain)
    return op if d == DEFAULT_DOMAIN else f"{d}::{op}"


# ---- what compress claims ----------------------------------------------------------------------

def claimed_ops(binary: str = COMPRESS) -> dict[tuple[str, str], list[int]]:
    """(domain, op) -> sorted since-versions, from `compress ops --format json`."""
    r = subprocess.run([binary, "ops", "--format", "json"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"`compress ops --format json` failed (exit {r.returncode}): {r.stderr.strip()}")
    rows = json.loads(r.stdout)
    return {(_norm_domain(row["domain"]), row["op"]): sorted(row["since_versions"]) for row in rows}


def committed_claims(path: str = CLAIMS_FILE) -> dict[tuple[str, str], list[int]]:
    """(domain, op) -> since-versions, from the committed claim list: one `DOMAIN OP V1,V2,…`
    line per operator; `#` starts a comment."""
    claims = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3:
                raise ValueError(f"{path}:{n}: expected 'DOMAIN OP VERSIONS', got {line!r}")
            key = (_norm_domain(parts[0]), parts[1])
            if key in claims:
                raise ValueError(f"{path}:{n}: {op_key(*key)} is listed twice")
            claims[key] = sorted(int(v) for v in parts[2].split(","))
    return claims


def format_claims(claims) -> str:
    """The claim list file's text for `claims` (sorted by domain, then op)."""
    lines = ["# Operators compress's executor claims, with the since-versions it implements.",
             "# Tests/Interop/test_conformance.py holds `compress ops --format json` equal to this list",
             "# and runs every backend case of these operators. Regenerate with",
             "#   COMPRESS_BIN=... python Tests/Interop/conformance.py --write-claims",
             "# and review the diff: a removed line is a capability users lose."]
    for (domain, op), versions in sorted(claims.items()):
        lines.append(f"{domain} {op} {','.join(map(str, versions))}")
    return "\n".join(lines) + "\n"


def is_claimed(claims, domain: str, op: str, opset: int | None) -> bool:
    versions = claims.get((_norm_domain(domain), op))
    return bool(versions) and opset is not None and any(v <= opset for v in versions)


# ---- cases -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    suite: str
    name: str
    model_path: str
    data_sets: list[str]            # test_data_set_N directories (empty for light models)
    ops: dict[tuple[str, str], int | None]   # (domain, op) -> the model's opset for the domain
    op_counts: collections.Counter
    rtol: float = RTOL
    atol: float = ATOL
    skip_reason: str | None = None
    light_expected: str | None = None  # light models: the expected output_0.pb
    # Kinds of the graph's inputs and outputs ("tensor_type", "sequence_type", "optional_type",
    # "map_type", ...; None for an untyped value).
    io_kinds: frozenset = frozenset()

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.name}"

    @property
    def op_types(self) -> set[str]:
        """The operator names the model uses (subgraphs included), whatever their domain."""
        return {op for _, op in self.ops}


def _graph_nodes(graph):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _graph_nodes(a.g)
            for g in a.graphs:
                yield from _graph_nodes(g)


def _non_tensor_io(graph) -> str | None:
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for v in values:
            which = v.type.WhichOneof("value")
            if which != "tensor_type":
                return f"{which or 'untyped'} graph {kind} '{v.name}' (only TensorProto data is loaded)"
            if v.type.tensor_type.elem_type == onnx.TensorProto.STRING:
                return f"string graph {kind} '{v.name}' (the executor holds numeric tensors only)"
    return None


def _case_from_model(suite, name, model_path, data_sets) -> Case:
    model = onnx.load(model_path, load_external_data=False)
    opsets = {_norm_domain(o.domain): o.version for o in model.opset_import}
    ops, counts = {}, collections.Counter()
    for n in _graph_nodes(model.graph):
        d = _norm_domain(n.domain)
        ops[(d, n.op_type)] = opsets.get(d)
        counts[op_key(d, n.op_type)] += 1
    case = Case(suite, name, model_path, data_sets, ops, counts)
    case.skip_reason = RANDOM_CASES.get(name) or _non_tensor_io(model.graph)
    case.io_kinds = frozenset(v.type.WhichOneof("value") for v in [*model.graph.input, *model.graph.output])
    return case


def collect_cases(suites=SUITES, data=DATA) -> list[Case]:
    """Every backend test case under `suites` (directories without model.onnx are ignored)."""
    cases = []
    for suite in suites:
        root = os.path.join(data, suite)
        if suite == "light":
            for path in sorted(glob.glob(os.path.join(root, "light_*.onnx"))):
                stem = os.path.basename(path)[:-len(".onnx")]
                name = stem[len("light_"):]
                expected = os.path.join(root, f"{stem}_output_0.pb")
                if not os.path.exists(expected):
                    continue
                c = _case_from_model(suite, name, path, [])
                c.light_expected = expected
                meta = os.path.join(data, "real", f"test_{name}", "data.json")
                if os.path.exists(meta):
                    with open(meta) as f:
                        j = json.load(f)
                    c.rtol, c.atol = j.get("rtol", RTOL), j.get("atol", ATOL)
                cases.append(c)
            continue
        for d in sorted(glob.glob(os.path.join(root, "*", ""))):
            model_path = os.path.join(d, "model.onnx")
            if not os.path.exists(model_path):
                continue
            name = os.path.basename(os.path.dirname(d))
            sets = sorted(glob.glob(os.path.join(d, "test_data_set_*")), key=lambda p: int(p.rsplit("_", 1)[1]))
            c = _case_from_model(suite, name, model_path, sets)
            meta = os.path.join(d, "data.json")
            if os.path.exists(meta):
                with open(meta) as f:
                    j = json.load(f)
                c.rtol, c.atol = j.get("rtol", RTOL), j.get("atol", ATOL)
            cases.append(c)
    return cases


_SCHEMA_NAMES = None


def _op_lookup():
    """lowercase name without underscores -> op name, over every ONNX schema."""
    global _SCHEMA_NAMES
    if _SCHEMA_NAMES is None:
        _SCHEMA_NAMES = {}
        for s in onnx.defs.get_all_schemas_with_history():
            _SCHEMA_NAMES.setdefault(s.name.lower(), op_key(s.domain, s.name))
    return _SCHEMA_NAMES


# Test-name spellings that are not an op name run together.
NAME_ALIASES = {
    "lessequal": "LessOrEqual", "greaterequal": "GreaterOrEqual", "sce": "SoftmaxCrossEntropyLoss",
    "nllloss": "NegativeLogLikelihoodLoss",
}


def primary_op(case: Case) -> str:
    """The operator a case is about (see the module docstring)."""
    if case.suite == "light":
        return f"light:{case.name}"
    tokens = [t for t in case.name.split("_")[1:] if t]
    if tokens and tokens[0].lower() == "operator":  # pytorch-operator: test_operator_NAME
        tokens = tokens[1:]
    model_ops = {k.split("::")[-1].lower(): k for k in case.op_counts}

    def leading(names):
        # The longest run of leading tokens that spells a name (test_reduce_sum_x -> ReduceSum).
        for k in range(len(tokens), 0, -1):
            hit = names.get("".join(tokens[:k]).lower())
            if hit:
                return hit
        return None

    hit = leading(model_ops) or leading(NAME_ALIASES)
    if hit:
        return hit
    # pytorch-converted names: test_Conv2d_groups -> Conv (an op of the model prefixing the name).
    first = tokens[0].lower() if tokens else ""
    prefixed = [name for name in model_ops if first.startswith(name)]
    if prefixed:
        return model_ops[max(prefixed, key=len)]
    # A function-expanded test names the op its body replaces (test_softmax_example_expanded).
    if "_expanded" in case.name:
        hit = leading(_op_lookup())
        if hit:
            return hit
    # Any later token naming one of the model's ops (test_basic_conv_with_padding -> Conv).
    for t in tokens:
        if t.lower() in model_ops:
            return model_ops[t.lower()]
    hit = leading(_op_lookup())
    if hit:
        return hit
    if case.op_counts:
        return case.op_counts.most_common(1)[0][0]
    return "(no ops)"


def missing_ops(case: Case, claims) -> list[str]:
    """Operators of the case compress does not claim at the model's opset, as 'Op' or 'Op@opsetN'."""
    out = []
    for (domain, op), opset in sorted(case.ops.items(), key=lambda kv: op_key(*kv[0])):
        if not is_claimed(claims, domain, op, opset):
            versions = claims.get((domain, op))
            out.append(op_key(domain, op) + (f"@opset{opset}" if versions else ""))
    return out


def missing_outside(case: Case, claims, family) -> list[str]:
    """The case's unclaimed operators when none of them is in `family` (op names): the case is
    blocked only by another family's gap. Empty when everything is claimed or a missing operator
    belongs to `family` (which must then fail, not be skipped)."""
    missing = missing_ops(case, claims)
    if any(m.split("@")[0].split("::")[-1] in family for m in missing):
        return []
    return missing


def claimed_family_cases(cases, claims, family) -> tuple[list[Case], dict[str, str]]:
    """Splits a family's backend cases at collection time into (claimed, left_out).

    A case is claimed when missing_outside(case, claims, family) is empty: everything is claimed,
    or a missing operator belongs to `family` (the case then runs and must fail). It is left out
    (left_out: case id -> why) when only other families' operators are missing, or when
    NOT_CLAIMED_CASES lists it. No claimed case may be skipped at run time."""
    claimed, left_out = [], {}
    for c in cases:
        if c.id in NOT_CLAIMED_CASES:
            left_out[c.id] = f"NOT_CLAIMED_CASES: {NOT_CLAIMED_CASES[c.id]}"
            continue
        missing = missing_outside(c, claims, family)
        if missing:
            left_out[c.id] = f"needs other families' operators: {', '.join(missing)}"
            continue
        claimed.append(c)
    return claimed, left_out


def left_out_summary(left_out: dict[str, str], what: str) -> list[str]:
    """Summary lines for claimed_family_cases' left-out cases: how many and why."""
    listed = sum(r.startswith("NOT_CLAIMED_CASES") for r in left_out.values())
    lines = [f"{what}: {len(left_out)} backend cases left out as not claimed ({len(left_out) - listed} need "
             f"other families' unclaimed operators, {listed} listed in conformance.NOT_CLAIMED_CASES)"]
    blockers = collections.Counter(m for r in left_out.values() if r.startswith("needs")
                                   for m in r.split(": ", 1)[1].split(", "))
    if blockers:
        lines.append("  blocking: " + ", ".join(f"{op} ({n})" for op, n in blockers.most_common(12)))
    return lines


# ---- running and comparing ---------------------------------------------------------------------

def read_tensor(path: str) -> TensorProto:
    t = TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t


def _type_name(code: int) -> str:
    try:
        return TensorProto.DataType.Name(code)
    except ValueError:
        return str(code)


def compare_tensors(expected, actual, rtol: float = RTOL, atol: float = ATOL,
                    exact_types=EXACT_TYPES) -> str | None:
    """None when `actual` matches `expected` as the backend runner requires, else the first mismatch.
    Either may be a TensorProto or a NumPy array (taken as the TensorProto `from_array` makes).
    Element types in `exact_types` are compared exactly (NaN equal to NaN for float types)."""
    if not isinstance(expected, TensorProto):
        expected = numpy_helper.from_array(np.asarray(expected))
    if not isinstance(actual, TensorProto):
        actual = numpy_helper.from_array(np.asarray(actual))
    if actual.data_type != expected.data_type:
        return f"dtype {_type_name(actual.data_type)}, expected {_type_name(expected.data_type)}"
    exp, got = numpy_helper.to_array(expected), numpy_helper.to_array(actual)
    if got.shape != exp.shape:
        return f"shape {list(got.shape)}, expected {list(exp.shape)}"
    if exp.size == 0:
        return None
    if expected.data_type in exact_types:
        if expected.data_type == TensorProto.STRING:
            bad = np.asarray(got != exp)
        else:
            e64 = exp.astype(np.int64) if exp.dtype.kind in "iub" else exp.astype(np.float64)
            g64 = got.astype(np.int64) if got.dtype.kind in "iub" else got.astype(np.float64)
            bad = e64 != g64
            if e64.dtype.kind == "f" and g64.dtype.kind == "f":
                bad &= ~(np.isnan(e64) & np.isnan(g64))
        if not bad.any():
            return None
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return f"{int(bad.sum())}/{exp.size} elements differ; first at {list(idx)}: got {got[idx]!r}, expected {exp[idx]!r}"
    e64, g64 = exp.astype(np.float64), got.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(g64 - e64)
        # numpy.testing.assert_allclose: infinities must match in place and sign, NaN equals NaN.
        inf = np.isinf(e64) | np.isinf(g64)
        ok = np.where(inf, g64 == e64, diff <= atol + rtol * np.abs(e64))
        ok |= np.isnan(e64) & np.isnan(g64)
    if ok.all():
        return None
    bad = ~ok
    finite = np.where(np.isfinite(diff), diff, 0)
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"{int(bad.sum())}/{exp.size} elements off (rtol {rtol:g}, atol {atol:g}), max abs err "
            f"{finite.max():.3g}; first at {list(idx)}: got {g64[idx]!r}, expected {e64[idx]!r}")


def assert_match(expected, actual, what: str, rtol: float = RTOL, atol: float = ATOL, exact_types=EXACT_TYPES):
    """Asserts compare_tensors finds no mismatch; the message starts with `what`."""
    msg = compare_tensors(expected, actual, rtol, atol, exact_types)
    assert msg is None, f"{what}: {msg}"


@dataclasses.dataclass
class Result:
    case: Case
    outcome: str              # passed | failed | not-claimed
    detail: str = ""
    label: str = ""           # the table row


def _eval(model_path, inputs, out_dir, binary=COMPRESS, threads: int | None = 1, timeout: float = EVAL_TIMEOUT):
    """`compress _eval` on `inputs` (.pb paths), outputs to `out_dir`; threads None: compress's default."""
    cmd = [binary, "_eval", model_path]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    cmd += ["--outputs-dir", out_dir]
    if inputs:
        cmd += ["--inputs", *inputs]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _numbered(paths):
    return sorted(paths, key=lambda p: int(os.path.basename(p).rsplit("_", 1)[1].split(".")[0]))


def data_set_files(data_set: str) -> tuple[list[str], list[str]]:
    """The input_k.pb and output_k.pb paths of a test_data_set directory, in k order."""
    return (_numbered(glob.glob(os.path.join(data_set, "input_*.pb"))),
            _numbered(glob.glob(os.path.join(data_set, "output_*.pb"))))


def compare_outputs(expected, out_dir: str, rtol: float = RTOL, atol: float = ATOL, exact_types=EXACT_TYPES) -> str | None:
    """Compares each expected output_k.pb with out_dir/output_k.pb; None, or the first mismatch."""
    for k, exp_path in enumerate(expected):
        got_path = os.path.join(out_dir, f"output_{k}.pb")
        if not os.path.exists(got_path):
            return f"output_{k} was not written"
        msg = compare_tensors(read_tensor(exp_path), read_tensor(got_path), rtol, atol, exact_types)
        if msg:
            return f"output_{k}: {msg}"
    return None


def _light_inputs(case: Case, tmp: str) -> list[str]:
    """The runner's dummy inputs for a light model: arange(n)/n (float32), unknown dims 1."""
    model = onnx.load(case.model_path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    paths = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        x = (np.arange(n).reshape(shape) / n).astype(np.float32)
        p = os.path.join(tmp, f"input_{len(paths)}.pb")
        with open(p, "wb") as f:
            f.write(numpy_helper.from_array(x, v.name).SerializeToString())
        paths.append(p)
    return paths


def _run_data_set(case: Case, inputs, expected, binary, threads: int | None = 1, timeout: float = EVAL_TIMEOUT,
                  rtol: float | None = None, atol: float | None = None, exact_types=EXACT_TYPES) -> str | None:
    """Runs one data set; None when every output matches (at the case's tolerances unless given)."""
    with tempfile.TemporaryDirectory(prefix="conf-") as out:
        try:
            r = _eval(case.model_path, inputs, out, binary, threads, timeout)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout}s"
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines()
            return f"exit {r.returncode}: " + (lines[-1] if lines else "(no message)")[:300]
        return compare_outputs(expected, out, case.rtol if rtol is None else rtol, case.atol if atol is None else atol,
                               exact_types)


def data_set_failures(case: Case, binary: str = COMPRESS, **kwargs) -> list[str]:
    """Runs every data set of `case` (a light model: its dummy input) and returns one message per
    failing set ("test_data_set_N exit 1: ...", "test_data_set_N output_0: ..."); empty when all
    pass. `kwargs` go to _run_data_set (threads, timeout, rtol, atol, exact_types)."""
    if case.light_expected:
        with tempfile.TemporaryDirectory(prefix="conf-in-") as tmp:
            msg = _run_data_set(case, _light_inputs(case, tmp), [case.light_expected], binary, **kwargs)
        return [f"light input {msg}"] if msg else []
    failures = []
    for ds in case.data_sets:
        msg = _run_data_set(case, *data_set_files(ds), binary, **kwargs)
        if msg:
            failures.append(f"{os.path.basename(ds)} {msg}")
    return failures


# Cases whose expected output is numerically ill-conditioned, with what is checked instead.
# light/squeezenet: every output channel of its last conv has identical weights and the logits
# reach ~9.5e9, where one float32 ulp is 1024; the final Softmax turns a 1-2 ulp difference in
# summation order (OpenBLAS vs MLAS) into a completely different distribution. The logits that
# feed the Softmax are compared with ONNX Runtime's instead (rtol 1e-5 of the largest).
ILL_CONDITIONED = {
    "light/squeezenet": "its pre-Softmax logits match ONNX Runtime's within 1e-5 of the largest",
}


def _pre_softmax_check(case: Case, inputs, tmp: str, binary) -> str | None:
    """Runs `case`'s model cut before its final Softmax in compress and in ONNX Runtime."""
    import onnxruntime as ort
    model = onnx.load(case.model_path)
    out = model.graph.output[0].name
    soft = [n for n in model.graph.node if n.op_type == "Softmax" and out in n.output]
    if not soft:
        return "no final Softmax to cut"
    logits = soft[0].input[0]
    model.graph.node.remove(soft[0])
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(logits))
    cut = os.path.join(tmp, "pre_softmax.onnx")
    onnx.save(model, cut)
    feeds = {}
    for p in inputs:
        t = onnx.TensorProto()
        with open(p, "rb") as f:
            t.ParseFromString(f.read())
        feeds[t.name] = numpy_helper.to_array(t)
    ref = ort.InferenceSession(cut, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with tempfile.TemporaryDirectory(prefix="conf-cut-") as outdir:
        r = _eval(cut, inputs, outdir, binary)
        if r.returncode != 0:
            return f"exit {r.returncode}"
        got = numpy_helper.to_array(read_tensor(os.path.join(outdir, "output_0.pb")))
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) if got.shape == ref.shape else float("inf")
    bound = 1e-5 * float(np.max(np.abs(ref)))
    return None if err <= bound else f"max abs err {err:.4g} > {bound:.4g}"


def run_case(case: Case, claims, binary: str = COMPRESS) -> Result:
    label = primary_op(case)
    missing = missing_ops(case, claims)
    if missing:
        bare = [m.split("@")[0] for m in missing]
        return Result(case, "not-claimed", ", ".join(missing), label if label in bare else bare[0])
    if case.id in NOT_CLAIMED_CASES:
        return Result(case, "not-claimed", NOT_CLAIMED_CASES[case.id], label)
    if case.skip_reason:
        return Result(case, "failed", f"claimed but cannot be checked ({case.skip_reason}); list it in "
                      "NOT_CLAIMED_CASES with the reason or make it checkable", label)
    if case.light_expected:
        with tempfile.TemporaryDirectory(prefix="conf-in-") as tmp:
            inputs = _light_inputs(case, tmp)
            msg = _run_data_set(case, inputs, [case.light_expected], binary)
            if msg and case.id in ILL_CONDITIONED:
                pre = _pre_softmax_check(case, inputs, tmp, binary)
                if pre is None:
                    return Result(case, "passed", f"ill-conditioned final Softmax ({msg}); {ILL_CONDITIONED[case.id]}", label)
                msg += f"; pre-Softmax logits also differ: {pre}"
        return Result(case, "failed" if msg else "passed", msg or "", label)
    if not case.data_sets:
        return Result(case, "failed", "claimed but has no test data sets", label)
    for ds in case.data_sets:
        msg = _run_data_set(case, *data_set_files(ds), binary)
        if msg:
            return Result(case, "failed", f"{os.path.basename(ds)} {msg}", label)
    return Result(case, "passed", "", label)


def run_all(cases, claims, binary: str = COMPRESS, workers: int | None = None, progress=None) -> list[Result]:
    """Runs the cases on a pool of `workers` threads (each waits on its own compress process;
    default min(4, CPUs + 1), at least 2). Results come back in `cases` order."""
    workers = workers or max(2, min(4, (os.cpu_count() or 2) + 1))
    # Light models are the slowest; start them first so they do not form the tail.
    order = sorted(range(len(cases)), key=lambda i: cases[i].suite != "light")
    results: list[Result | None] = [None] * len(cases)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_case, cases[i], claims, binary): i for i in order}
        for f in concurrent.futures.as_completed(futures):
            results[futures[f]] = f.result()
            if progress:
                progress(results[futures[f]])
    return results  # type: ignore[return-value]


# ---- reporting ---------------------------------------------------------------------------------

OUTCOMES = ("passed", "failed", "not-claimed")


def table(results: list[Result], claims) -> str:
    counts = collections.defaultdict(collections.Counter)
    for r in results:
        counts[r.label][r.outcome] += 1

    def claimed(label):
        if label.startswith("light:"):
            return "-"
        d, _, op = label.rpartition("::")
        return "yes" if (_norm_domain(d), op) in claims else "no"

    width = max([len("op")] + [len(k) for k in counts]) + 2
    lines = [f"{'op':<{width}}{'claimed':>8}{'passed':>8}{'failed':>8}{'not-claimed':>13}"]
    for label in sorted(counts, key=lambda k: (k.startswith("light:"), "::" in k, k.lower())):
        c = counts[label]
        lines.append(f"{label:<{width}}{claimed(label):>8}{c['passed']:>8}{c['failed']:>8}{c['not-claimed']:>13}")
    total = collections.Counter(r.outcome for r in results)
    lines.append(f"{'TOTAL cases':<{width}}{'':>8}{total['passed']:>8}{total['failed']:>8}{total['not-claimed']:>13}")
    return "\n".join(lines)


def summary_line(results: list[Result]) -> str:
    total = collections.Counter(r.outcome for r in results)
    by_suite = collections.defaultdict(collections.Counter)
    for r in results:
        by_suite[r.case.suite][r.outcome] += 1
    suites = "; ".join(f"{s} {c['passed']}/{c['passed'] + c['failed']}" for s, c in sorted(by_suite.items()))
    return (f"ONNX backend conformance: {total['passed']} passed, {total['failed']} failed, "
            f"{total['not-claimed']} not claimed of {len(results)} cases "
            f"(passed/claimed by suite: {suites})")


def blocking_ops(results: list[Result], top: int = 15) -> str:
    """The missing operators that keep the most cases from being claimed."""
    c = collections.Counter()
    for r in results:
        if r.outcome == "not-claimed":
            for m in r.detail.split(", "):
                c[m] += 1
    return ", ".join(f"{op} ({n})" for op, n in c.most_common(top))


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--filter", default=None, help="run only cases whose suite/name matches this regex")
    ap.add_argument("--failures", action="store_true", help="also list not-claimed cases")
    ap.add_argument("--registry", action="store_true",
                    help="claim what `compress ops` lists instead of the committed claimed_ops.txt")
    ap.add_argument("--write-claims", action="store_true", help="rewrite claimed_ops.txt from `compress ops` and exit")
    args = ap.parse_args(argv)
    if args.write_claims:
        with open(CLAIMS_FILE, "w") as f:
            f.write(format_claims(claimed_ops()))
        print(f"wrote {CLAIMS_FILE}")
        return 0
    claims = claimed_ops() if args.registry else committed_claims()
    cases = collect_cases()
    if args.filter:
        cases = [c for c in cases if re.search(args.filter, c.id)]
    results = run_all(cases, claims, workers=args.workers)
    print(table(results, claims))
    for r in results:
        if r.outcome == "failed" or (args.failures and r.outcome != "passed"):
            print(f"{r.outcome.upper():12s} {r.case.id} [{r.label}]: {r.detail}")
    print("most blocking missing ops:", blocking_ops(results))
    print(summary_line(results))
    return 1 if any(r.outcome == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
