"""Round trips through `compress convert`, checked by onnx and ONNX Runtime; `compress info`
checked against values computed from the onnx protobuf.

Models: every fixture in Fixtures (*.onnx and external/model.onnx), every model in the onnx
package's bundled test data (light/*.onnx; pytorch-converted, pytorch-operator and simple:
*/model.onnx), /work/shared/models/*.onnx (skipped with a message when absent) and three
reference architectures written by `compress build-reference` (GraphBuilder's output).

For each model, five conversions:
    inline    compress convert M -o inline.onnx
    external  compress convert M -o ext/ext.onnx --external-data        (default threshold 1 KiB)
    back      compress convert ext/ext.onnx -o back.onnx --inline
    external0 compress convert M -o ext0/ext0.onnx --external-data --external-threshold 0
    back0     compress convert ext0/ext0.onnx -o back0.onnx --inline
and for each output:
  * the ModelProto equals the original field by field (`onnx.load` results compared with ==).
    The only normalization (documented in Docs/convert.md): for a tensor that the file on disk
    stores as external data, `onnx.load` copies the bytes into raw_data, deletes external_data
    and sets data_location = DEFAULT explicitly; that explicit DEFAULT is cleared again on
    exactly those tensors (found by loading the same file with load_external_data=False).
  * the side file holds each moved tensor's exact bytes at a 64-byte aligned offset; tensors
    below the threshold, and tensors stored in typed fields, stay inline;
  * onnx.checker.check_model(path, full_check=True) accepts it when it accepts the original;
  * ONNX Runtime gives outputs bit-identical to the original's, when ORT can run the original
    (inputs: test_data_set_0/input_*.pb beside the model, the fixture's .npy, else random).
    For external0 one refusal is accepted from both tools: with threshold 0, tiny shape tensors
    (Reshape's shape, Slice's starts, ConstantOfShape's input) move out too, and onnx shape
    inference and ORT refuse to read those from external data ("Cannot parse data from external
    tensors"); any other failure, or different outputs, is an error. An output whose bytes equal
    the original file's (no external data on either side) is the same input to both tools, so
    their verdict on the original is reused instead of loading it again (inline outputs are
    byte-identical; an external output is not whenever a tensor moved);
  * `compress info --format json` reports what the protobuf says (I/O, op histogram, parameter
    count = sum of initializer element counts, bytes by dtype, opsets, metadata, …).

Each pytest case converts a whole group of models (the binary is fast; Python dominates).
"""
from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from conftest import FIXTURES, SHARED_MODELS, onnx_test_data, run_compress

import onnxruntime as ort  # noqa: E402  (in the Makefile's PY_PACKAGES: missing is a failure, not a skip)
ort.set_default_logger_severity(4)

# ONNX TensorProto.DataType -> (compress's dtype name, bits per element; None: no payload bytes).
DTYPES = {
    1: ("float", 32), 2: ("uint8", 8), 3: ("int8", 8), 4: ("uint16", 16), 5: ("int16", 16), 6: ("int32", 32),
    7: ("int64", 64), 8: ("string", None), 9: ("bool", 8), 10: ("float16", 16), 11: ("double", 64),
    12: ("uint32", 32), 13: ("uint64", 64), 14: ("complex64", 64), 15: ("complex128", 128), 16: ("bfloat16", 16),
    17: ("float8e4m3fn", 8), 18: ("float8e4m3fnuz", 8), 19: ("float8e5m2", 8), 20: ("float8e5m2fnuz", 8),
    21: ("uint4", 4), 22: ("int4", 4), 23: ("float4e2m1", 4), 24: ("float8e8m0", 8), 25: ("uint2", 2), 26: ("int2", 2),
}

# What onnx shape inference (also inside ORT) says about a shape input stored externally.
EXTERNAL_SHAPE_TENSOR = "Cannot parse data from external tensors"

INFO_KEYS = {"file", "file_bytes", "ir_version", "opsets", "producer_name", "producer_version", "graph_name",
             "inputs", "outputs", "nodes", "ops", "initializers", "initializer_bytes", "initializers_by_dtype",
             "parameters", "external_data_files", "functions", "metadata",
             # Constant-node weights (Docs/info.md, since d211cb6: older exporters keep weights there).
             "constant_nodes", "constant_node_bytes", "constant_nodes_by_dtype", "initializer_parameters",
             "constant_node_parameters"}


# ---------------------------------------------------------------------------------------------
# Model sets

def _group_models(group: str) -> list[Path]:
    data = onnx_test_data()
    if group == "fixtures":
        return sorted(FIXTURES.glob("*.onnx")) + [FIXTURES / "external" / "model.onnx"]
    if group == "light":
        return sorted((data / "light").glob("*.onnx"))
    if group in ("pytorch-converted", "pytorch-operator", "simple"):
        return sorted((data / group).glob("*/model.onnx"))
    if group == "shared":
        return sorted(SHARED_MODELS.glob("*.onnx"))
    raise ValueError(group)


# ---------------------------------------------------------------------------------------------
# ModelProto traversal and normalization

def _graph_tensors(g: onnx.GraphProto):
    yield from g.initializer
    for s in g.sparse_initializer:
        yield s.values
        yield s.indices
    yield from _node_tensors(g.node)


def _node_tensors(nodes):
    for n in nodes:
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from _graph_tensors(a.g)
            for sg in a.graphs:
                yield from _graph_tensors(sg)
            if a.HasField("sparse_tensor"):
                yield a.sparse_tensor.values
                yield a.sparse_tensor.indices


def all_tensors(m: onnx.ModelProto):
    """Every TensorProto in the model, in a fixed order (graphs, subgraphs, attributes, functions)."""
    yield from _graph_tensors(m.graph)
    for f in m.functions:
        yield from _node_tensors(f.node)


def load_normalized(path: Path) -> onnx.ModelProto:
    """onnx.load(path) with exactly what the external-data loader adds undone: on each tensor the
    file stores as EXTERNAL, the loader leaves data_location = DEFAULT set explicitly; clear it."""
    full = onnx.load(str(path))
    shallow = onnx.load(str(path), load_external_data=False)
    for s, f in zip(all_tensors(shallow), all_tensors(full), strict=True):
        if s.data_location == TensorProto.EXTERNAL:
            assert f.HasField("data_location") and f.data_location == TensorProto.DEFAULT and not f.external_data, f.name
            f.ClearField("data_location")
    return full


def proto_difference(a: onnx.ModelProto, b: onnx.ModelProto) -> str:
    """A short description of the first differing top-level/graph field (for failure messages)."""
    for field in a.DESCRIPTOR.fields:
        va, vb = getattr(a, field.name), getattr(b, field.name)
        if va != vb:
            if field.name == "graph":
                for gf in a.graph.DESCRIPTOR.fields:
                    ga, gb = getattr(a.graph, gf.name), getattr(b.graph, gf.name)
                    if ga != gb:
                        if gf.label == gf.LABEL_REPEATED:
                            for i, (x, y) in enumerate(zip(ga, gb)):
                                if x != y:
                                    return f"graph.{gf.name}[{i}]: {str(x)[:300]!r} != {str(y)[:300]!r}"
                            return f"graph.{gf.name}: lengths {len(ga)} != {len(gb)}"
                        return f"graph.{gf.name} differs"
            return f"{field.name} differs"
    return "HasField/presence differs"


# ---------------------------------------------------------------------------------------------
# ONNX Runtime

def _session(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 4  # quiet: a refusal is reported by the test itself
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _read_pb(path: Path, vi: onnx.ValueInfoProto | None):
    data = path.read_bytes()
    kind = vi.type.WhichOneof("value") if vi is not None else "tensor_type"
    if kind == "sequence_type":
        seq = onnx.SequenceProto()
        seq.ParseFromString(data)
        return numpy_helper.to_list(seq)
    if kind == "optional_type":
        opt = onnx.OptionalProto()
        opt.ParseFromString(data)
        return numpy_helper.to_optional(opt)
    t = TensorProto()
    t.ParseFromString(data)
    return numpy_helper.to_array(t)


_NP = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
       "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
       "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
       "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_}


def _random_feed(arg, rng: np.random.Generator):
    shape = [d if isinstance(d, int) and d >= 0 else 1 for d in (arg.shape or [])]
    if arg.type == "tensor(string)":
        return np.array(rng.choice(["alpha", "Beta", "gamma"], size=shape), dtype=object)
    dt = _NP.get(arg.type)
    if dt is None:
        raise TypeError(f"cannot make a random {arg.type}")
    if dt is np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dt, np.integer):
        return rng.integers(0, 3, size=shape).astype(dt)
    return rng.standard_normal(shape).astype(dt)


def make_feeds(model_path: Path, model: onnx.ModelProto, sess) -> dict:
    args = sess.get_inputs()
    by_name = {vi.name: vi for vi in model.graph.input}
    data_dir = model_path.parent / "test_data_set_0"
    if data_dir.is_dir() and (data_dir / "input_0.pb").exists():
        return {a.name: _read_pb(data_dir / f"input_{i}.pb", by_name.get(a.name)) for i, a in enumerate(args)}
    npy = {
        "typed_fields.onnx": FIXTURES / "typed_fields_input_0.npy",
        "model.onnx": model_path.parent / "input_0.npy",
        "digits_cnn.onnx": FIXTURES / "digits" / "sample_0000.npy",
        "digits_cnn_bn.onnx": FIXTURES / "digits" / "sample_0000.npy",
    }.get(model_path.name)
    if npy is not None and npy.exists() and len(args) == 1:
        return {args[0].name: np.load(npy)}
    rng = np.random.default_rng(0)
    return {a.name: _random_feed(a, rng) for a in args}


def same_bits(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------------------------
# compress info vs the protobuf

def expected_info(m: onnx.ModelProto) -> dict:
    g = m.graph
    init_names = {t.name for t in g.initializer}

    def io(vi):
        out = {"name": vi.name}
        if vi.type.WhichOneof("value") == "tensor_type":
            tt = vi.type.tensor_type
            if tt.HasField("elem_type") and tt.elem_type in DTYPES:
                out["dtype"] = DTYPES[tt.elem_type][0]
            if tt.HasField("shape"):
                # A negative dim_value (paddle2onnx's -1) is dynamic, like a dimension with
                # neither value nor name: JSON null (Docs/info.md, "dynamic dimensions").
                out["shape"] = [(d.dim_value if d.dim_value >= 0 else None) if d.HasField("dim_value")
                                else d.dim_param if d.HasField("dim_param") else None for d in tt.shape.dim]
        return out

    ops: dict[str, int] = {}
    for n in g.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        ops[key] = ops.get(key, 0) + 1
    def tally(tensors):
        by_dtype: dict[str, list[int]] = {}
        for t in tensors:
            name, bits = DTYPES[t.data_type]
            count = math.prod(t.dims)
            e = by_dtype.setdefault(name, [0, 0, 0])
            e[0] += 1
            e[1] += count
            e[2] += 0 if bits is None else (count * bits + 7) // 8
        return by_dtype

    by_dtype = tally(g.initializer)
    # Main-graph Constant nodes holding a (non-string) tensor in `value`.
    constants = [a.t for n in g.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
                 for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR
                 and a.t.data_type != TensorProto.STRING]
    const_by_dtype = tally(constants)
    init_params = sum(v[1] for v in by_dtype.values())
    const_params = sum(v[1] for v in const_by_dtype.values())
    return {
        "ir_version": m.ir_version,
        "opsets": [{"domain": o.domain or "ai.onnx", "version": o.version} for o in m.opset_import],
        "producer_name": m.producer_name,
        "producer_version": m.producer_version,
        "graph_name": g.name,
        "inputs": [io(v) for v in g.input if v.name not in init_names],
        "outputs": [io(v) for v in g.output],
        "nodes": len(g.node),
        "ops": ops,
        "initializers": len(g.initializer),
        "initializers_by_dtype": {k: tuple(v) for k, v in by_dtype.items()},
        "initializer_bytes": sum(v[2] for v in by_dtype.values()),
        "initializer_parameters": init_params,
        "constant_nodes": len(constants),
        "constant_nodes_by_dtype": {k: tuple(v) for k, v in const_by_dtype.items()},
        "constant_node_bytes": sum(v[2] for v in const_by_dtype.values()),
        "constant_node_parameters": const_params,
        "parameters": init_params + const_params,
        "functions": [f"{f.domain}.{f.name}" if f.domain else f.name for f in m.functions],
        "metadata": {p.key: p.value for p in m.metadata_props},
    }


def external_locations(path: Path) -> list[str]:
    seen: list[str] = []
    for t in onnx.load(str(path), load_external_data=False).graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            loc = next(e.value for e in t.external_data if e.key == "location")
            if loc not in seen:
                seen.append(loc)
    return seen


def check_info(path: Path, model: onnx.ModelProto) -> list[str]:
    r = run_compress("info", path, "--format", "json")
    if r.returncode != 0:
        return [f"info failed: {r.stderr.strip()}"]
    got = json.loads(r.stdout)
    problems = []
    if set(got) != INFO_KEYS:
        problems.append(f"info keys {sorted(set(got) ^ INFO_KEYS)} differ from the schema")
    want = expected_info(model)
    got_ops = {o["op"]: o["count"] for o in got.get("ops", [])}
    counts = [o["count"] for o in got.get("ops", [])]
    if counts != sorted(counts, reverse=True):
        problems.append("ops not sorted by count")
    got_dt = {d["dtype"]: (d["tensors"], d["elements"], d["bytes"]) for d in got.get("initializers_by_dtype", [])}
    got_cdt = {d["dtype"]: (d["tensors"], d["elements"], d["bytes"]) for d in got.get("constant_nodes_by_dtype", [])}
    for k, v in want.items():
        g = (got_ops if k == "ops" else got_dt if k == "initializers_by_dtype" else got_cdt if k == "constant_nodes_by_dtype"
             else got.get(k))
        if g != v:
            problems.append(f"info {k}: {str(g)[:200]} != onnx {str(v)[:200]}")
    if got.get("file_bytes") != path.stat().st_size:
        problems.append(f"info file_bytes {got.get('file_bytes')} != {path.stat().st_size}")
    if got.get("external_data_files") != external_locations(path):
        problems.append(f"info external_data_files {got.get('external_data_files')} != {external_locations(path)}")
    return problems


# ---------------------------------------------------------------------------------------------
# One model

class Tally:
    def __init__(self):
        self.models = self.checker = self.ort = self.identical = self.external_runs = self.external0_refused = 0
        self.not_runnable: list[str] = []


def check_external_layout(ext: Path, original: onnx.ModelProto, threshold: int) -> list[str]:
    """Tensors with at least `threshold` (and > 0) bytes of raw_data must be external at 64-byte
    aligned offsets in one file; tensors stored in typed fields stay inline (as onnx's
    convert_model_to_external_data)."""
    problems = []
    shallow = onnx.load(str(ext), load_external_data=False)
    data_file = ext.parent / (ext.name + ".data")
    for o, t in zip(original.graph.initializer, shallow.graph.initializer, strict=True):
        moved = t.data_location == TensorProto.EXTERNAL
        should = (o.HasField("raw_data") and len(o.raw_data) >= max(threshold, 1)
                  and o.data_type != TensorProto.STRING)
        if moved != should:
            problems.append(f"tensor {o.name!r}: external={moved}, expected {should}")
        if moved:
            kv = {e.key: e.value for e in t.external_data}
            off, length = int(kv.get("offset", 0)), int(kv["length"])
            if kv["location"] != data_file.name or off % 64 or length != len(o.raw_data):
                problems.append(f"tensor {o.name!r}: external entry {kv}")
            elif data_file.read_bytes()[off:off + length] != o.raw_data:
                problems.append(f"tensor {o.name!r}: bytes in {data_file.name} differ")
    return problems


def check_model(src: Path, work: Path, tally: Tally) -> list[str]:
    """All checks for one model; returns the problems found (empty: all good)."""
    tally.models += 1
    work.mkdir(parents=True, exist_ok=True)
    (work / "ext").mkdir(exist_ok=True)
    (work / "ext0").mkdir(exist_ok=True)
    inline, ext, back = work / "inline.onnx", work / "ext" / "ext.onnx", work / "back.onnx"
    ext0, back0 = work / "ext0" / "ext0.onnx", work / "back0.onnx"
    before = (src.read_bytes(), src.stat().st_mtime_ns)
    for args in (["convert", src, "-o", inline],
                 ["convert", src, "-o", ext, "--external-data"],
                 ["convert", ext, "-o", back, "--inline"],
                 ["convert", src, "-o", ext0, "--external-data", "--external-threshold", "0"],
                 ["convert", ext0, "-o", back0, "--inline"]):
        r = run_compress(*args)
        if r.returncode != 0:
            return [f"{' '.join(map(str, args[:1] + args[3:]))}: exit {r.returncode}: {r.stderr.strip()}"]
    if (src.read_bytes(), src.stat().st_mtime_ns) != before:
        return ["the input model was modified"]
    problems: list[str] = []

    original = load_normalized(src)
    for name, out in (("inline", inline), ("external", ext), ("back", back), ("external0", ext0), ("back0", back0)):
        got = load_normalized(out)
        if got != original:
            problems.append(f"{name}: ModelProto differs: {proto_difference(original, got)}")
    problems += [f"external: {p}" for p in check_external_layout(ext, original, 1024)]
    problems += [f"external0: {p}" for p in check_external_layout(ext0, original, 0)]
    if external_locations(back) or external_locations(inline) or external_locations(back0):
        problems.append("inline output still references external data")

    # Outputs byte-identical to a self-contained original need no second opinion (see above).
    src_bytes = before[0] if not external_locations(src) else None
    candidates = (("inline", inline), ("external", ext), ("back", back), ("external0", ext0), ("back0", back0))
    outputs = [(name, out) for name, out in candidates if out.read_bytes() != src_bytes]
    tally.identical += len(candidates) - len(outputs)
    tally.external_runs += sum(1 for name, out in outputs if external_locations(out))

    # onnx.checker, where the original passes.
    try:
        onnx.checker.check_model(str(src), full_check=True)
        original_ok = True
    except Exception:
        original_ok = False
    if original_ok:
        tally.checker += 1
        for name, out in outputs:
            try:
                onnx.checker.check_model(str(out), full_check=True)
            except Exception as e:
                if name == "external0" and EXTERNAL_SHAPE_TENSOR in str(e):
                    continue
                problems.append(f"{name}: onnx.checker rejects it: {str(e).splitlines()[0][:200]}")

    # ONNX Runtime, where it runs the original.
    try:
        sess = _session(src)
        feeds = make_feeds(src, original, sess)
        want = sess.run(None, feeds)
    except Exception as e:
        tally.not_runnable.append(f"{src.parent.name}/{src.name}: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
    else:
        tally.ort += 1
        for name, out in outputs:
            try:
                got = _session(out).run(None, feeds)
            except Exception as e:
                if name == "external0" and EXTERNAL_SHAPE_TENSOR in str(e):
                    tally.external0_refused += 1
                    continue
                problems.append(f"{name}: ONNX Runtime fails on the converted model: {str(e).splitlines()[0][:200]}")
                continue
            if not same_bits(want, got):
                problems.append(f"{name}: ONNX Runtime outputs differ from the original's")

    problems += [f"info: {p}" for p in check_info(src, original)]
    problems += [f"info (external0): {p}" for p in check_info(ext0, original) if "file_bytes" not in p]
    return problems


def run_group(models: list[Path], tmp_path: Path) -> Tally:
    """Checks every model (several at once: the time goes to waiting on subprocesses) and fails
    with the list of problems."""
    def one(i: int, m: Path):
        t = Tally()
        return m, check_model(m, tmp_path / f"m{i:03d}", t), t

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda im: one(*im), enumerate(models)))
    tally = Tally()
    failures = []
    for m, problems, t in results:
        failures += [f"{m}: {p}" for p in problems]
        tally.models += t.models
        tally.checker += t.checker
        tally.ort += t.ort
        tally.identical += t.identical
        tally.external_runs += t.external_runs
        tally.external0_refused += t.external0_refused
        tally.not_runnable += t.not_runnable
    print(f"\n{tally.models} models; onnx.checker compared on {tally.checker}; ONNX Runtime compared on {tally.ort}; "
          f"not runnable by ORT: {len(tally.not_runnable)}; outputs byte-identical to the original: {tally.identical}; "
          f"outputs with external data checked: {tally.external_runs} (external0 refused by ORT for external shape "
          f"tensors: {tally.external0_refused})")
    for n in tally.not_runnable:
        print("  not runnable:", n)
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:50])
    return tally


# ---------------------------------------------------------------------------------------------
# Tests

# Models ORT may decline (custom ops, training ops, random inputs a model cannot take); a group
# whose runnable count falls below its floor means the harness broke, not the models.
# (onnxruntime 1.32: 4 of 5, 9 of 9, 59 of 82, 24 of 35, 17 of 23; the rest use opset-1/6 kernels
# ORT no longer has, training ops, or StringNormalizer locales missing here.)
MIN_ORT_RUNS = {"fixtures": 4, "light": 9, "pytorch-converted": 55, "pytorch-operator": 22, "simple": 15}


@pytest.mark.parametrize("group", ["fixtures", "simple", "pytorch-operator", "pytorch-converted", "light"])
def test_round_trip_group(group, tmp_path, compress_bin):
    models = _group_models(group)
    assert models, f"no models found for {group}"
    tally = run_group(models, tmp_path)
    assert tally.ort >= MIN_ORT_RUNS[group], f"ONNX Runtime ran only {tally.ort} of {tally.models} models"


def test_round_trip_shared_models(tmp_path, compress_bin):
    models = _group_models("shared")
    if not models:
        pytest.skip(f"no shared models in {SHARED_MODELS} (real third-party exports; optional)")
    tally = run_group(models, tmp_path)
    assert tally.ort == len(models)


@pytest.mark.parametrize("arch", ["squeezenet1_1", "mobilenet_v2", "resnet18", "mobilenet_v3_small", "efficientnet_b0"])
def test_graph_builder_models_are_valid_and_run(arch, tmp_path, compress_bin):
    """GraphBuilder output (via build-reference): passes onnx.checker with full_check, runs in
    ONNX Runtime with finite logits of the declared shape, and round-trips like any model."""
    path = tmp_path / f"{arch}.onnx"
    r = run_compress("build-reference", arch, "-o", path)
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(str(path), full_check=True)
    sess = _session(path)
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    (logits,) = sess.run(None, {"input": x})
    assert logits.shape == (2, 1000)
    assert np.isfinite(logits).all()
    assert logits.std() > 0
    run_group([path], tmp_path / "rt")
