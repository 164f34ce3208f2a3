"""Conformance of compress's NN operators against the ONNX backend node tests.

Every backend test directory (node, pytorch-converted, pytorch-operator) whose model uses only
operators of the NN family (Conv, ConvTranspose, Gemm, MatMul, BatchNormalization,
InstanceNormalization, LayerNormalization, LRN, MaxPool, AveragePool, GlobalAveragePool,
GlobalMaxPool) is run through `compress _eval` (compress's default thread count) and each output
is compared with the stored `output_k.pb` by conformance.py's compare_tensors at the backend
runner's tolerances (rtol 1e-3, atol 1e-7, numpy.testing semantics:
|actual - expected| <= atol + rtol * |expected|; integer outputs exactly), plus exact dtype and
shape. Each case counts for its operator as conformance.primary_op names it.

Which cases are claimed is decided at collection time from the committed claim list
(conformance.committed_claims(), Tests/Interop/claimed_ops.txt): a case runs when
conformance.missing_outside is empty, and must pass; cases blocked only by other families'
unclaimed operators, or listed in conformance.NOT_CLAIMED_CASES, are not parametrized (the module
summary says how many and why). Nothing is skipped at run time; a missing binary fails.

A second group checks the float16 / float64 paths (computed through float32) against ONNX
Runtime on the same models with their types changed (where ONNX Runtime has no kernel for the
type, against ONNX Runtime's float32 result on the same rounded values, at a stated tolerance);
further groups compare larger Convs and whole reference networks with ONNX Runtime.

Run as a script to print a per-operator pass count:
    COMPRESS_BIN=.build/release/compress python Tests/Interop/test_nn_ops.py
"""
from __future__ import annotations

import collections
import os
import subprocess
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest

import conformance
from conftest import COMPRESS_BIN as COMPRESS

DATA = conformance.DATA
SUITES = ("node", "pytorch-converted", "pytorch-operator")
RTOL, ATOL = 1e-3, 1e-7

NN_OPS = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "InstanceNormalization",
    "LayerNormalization", "LRN", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
}

CLAIMS = conformance.committed_claims()
# Every backend test whose ops are all NN ops and that the committed list claims (decided here,
# at collection), with the operator it is about.
_CLAIMED, LEFT_OUT = conformance.claimed_family_cases(
    [c for c in conformance.collect_cases(SUITES) if c.op_types and c.op_types <= NN_OPS], CLAIMS, NN_OPS)
CASES = [(c, conformance.primary_op(c)) for c in _CLAIMED]


def read_pb(path):
    return onnx.numpy_helper.to_array(conformance.read_tensor(path))


def run_compress(model_path, input_paths, out_dir):
    return conformance._eval(model_path, input_paths, out_dir, COMPRESS, threads=None)


def check_case(case):
    """Runs every data set of a backend test; returns a list of failure messages."""
    return conformance.data_set_failures(case, COMPRESS, threads=None, rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module", autouse=True)
def _binary(compress_bin):
    """A missing binary fails every test of the module (conftest's compress_bin), never skips."""
    return compress_bin


@pytest.fixture(scope="module", autouse=True)
def _left_out_summary(request):
    yield
    text = "\n".join([""] + conformance.left_out_summary(LEFT_OUT, "test_nn_ops"))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(text)
    else:
        print(text)


RESULTS: dict[str, bool] = {}


@pytest.mark.parametrize("case,op", CASES, ids=[c.id for c, _ in CASES])
def test_backend_node(case, op):
    failures = check_case(case)
    RESULTS[case.id] = not failures
    assert not failures, f"{case.id} ({op}): " + "; ".join(failures)


def test_every_nn_op_has_cases():
    assert len(CASES) >= 150, f"only {len(CASES)} claimed NN backend cases were collected"
    covered = {op for _, op in CASES}
    assert covered == NN_OPS, f"no backend test found for {sorted(NN_OPS - covered)}"


# ---- float16 / float64 through float32 -----------------------------------------------------

def retyped(model_path, dtype):
    """The model with every float32 input, output and initializer changed to `dtype`."""
    m = onnx.load(model_path)
    code = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    # LayerNormalization's Mean and InvStdDev stay float32 (stash_type 1).
    stats = {o for n in m.graph.node if n.op_type == "LayerNormalization" for o in n.output[1:]}
    for v in list(m.graph.input) + [o for o in m.graph.output if o.name not in stats]:
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            v.type.tensor_type.elem_type = code
    for i, init in enumerate(m.graph.initializer):
        if init.data_type == onnx.TensorProto.FLOAT:
            arr = onnx.numpy_helper.to_array(init).astype(dtype)
            m.graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    return m


# Ops and (dtype) for which ONNX Runtime's CPU provider has a kernel, so it can be the reference.
TYPED_CASES = [
    ("node/test_gemm_all_attributes", np.float64), ("node/test_matmul_4d", np.float64),
    ("node/test_matmul_bcast", np.float16), ("node/test_gemm_transposeB", np.float16),
    ("node/test_conv_with_strides_padding", np.float16), ("pytorch-converted/test_Conv2d_groups", np.float16),
    ("pytorch-converted/test_Conv2d_depthwise_strided", np.float16), ("node/test_convtranspose_pads", np.float16),
    ("node/test_maxpool_2d_pads", np.float16), ("node/test_maxpool_2d_pads", np.float64),
    ("node/test_averagepool_2d_pads", np.float16), ("pytorch-converted/test_MaxPool3d_stride_padding", np.float16),
    ("node/test_batchnorm_example", np.float64), ("node/test_batchnorm_example", np.float16),
    ("node/test_instancenorm_example", np.float16), ("node/test_layer_normalization_3d_axis1_epsilon", np.float16),
    ("node/test_globalaveragepool", np.float16), ("node/test_lrn", np.float16),
]


def rounded_float32(model_path, dtype):
    """The float32 model whose float32 initializers hold exactly the values `retyped(model_path,
    dtype)` holds (rounded to `dtype` and back): the same problem, computed in float32."""
    m = onnx.load(model_path)
    for i, init in enumerate(m.graph.initializer):
        if init.data_type == onnx.TensorProto.FLOAT:
            arr = onnx.numpy_helper.to_array(init).astype(dtype).astype(np.float32)
            m.graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    return m


# When ONNX Runtime has no `dtype` kernel, the reference is its float32 result on the same
# (rounded) weights and inputs. compress computes these types through float32 and rounds each
# output once, so the difference is that final rounding plus float32 summation-order noise:
# float16: half an ulp of the result, 2^-11 relative; allowed one float16 ulp (rtol 2^-10) and,
# near zero, float16's smallest subnormal 2^-24 plus 1e-6 of the output's scale (float32 noise of
# sums that cancel). float64: the float32 computation itself, at the runner's rtol 1e-3, atol 1e-7.
def fallback_tolerance(dtype, reference):
    if dtype == np.float16:
        return 2.0 ** -10, 2.0 ** -24 + 1e-6 * float(np.abs(reference).max(initial=0.0))
    return RTOL, ATOL


def _ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _run_converted(name, dtype, tmp_path):
    """Runs the `dtype` version of backend case `name` in compress on test_data_set_0; returns
    (the retyped model, the feeds, compress's outputs as arrays)."""
    directory = os.path.join(DATA, name)
    model = retyped(os.path.join(directory, "model.onnx"), dtype)
    model_path = str(tmp_path / "model.onnx")
    onnx.save(model, model_path)
    ds = os.path.join(directory, "test_data_set_0")
    feeds, paths = {}, []
    for k, inp in enumerate(i for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}):
        arr = read_pb(os.path.join(ds, f"input_{k}.pb"))
        if arr.dtype == np.float32:
            arr = arr.astype(dtype)
        feeds[inp.name] = arr
        p = str(tmp_path / f"input_{k}.pb")
        with open(p, "wb") as f:
            f.write(onnx.numpy_helper.from_array(arr).SerializeToString())
        paths.append(p)
    out = tmp_path / "out"
    r = run_compress(model_path, paths, str(out))
    assert r.returncode == 0, r.stderr
    got = [onnx.numpy_helper.to_array(conformance.read_tensor(str(out / f"output_{k}.pb")))
           for k in range(len(model.graph.output))]
    return model, feeds, got


def _check_against_float32(name, dtype, model, feeds, got, why):
    """compress's `dtype` outputs against ONNX Runtime's float32 run on the same rounded values."""
    ref_model = rounded_float32(os.path.join(DATA, name, "model.onnx"), dtype)
    ref_feeds = {k: (v.astype(np.float32) if v.dtype == dtype else v) for k, v in feeds.items()}
    expected = _ort_run(ref_model, ref_feeds)
    assert len(expected) == len(got) == len(model.graph.output)
    for k, (exp, g) in enumerate(zip(expected, got)):
        want_dtype = onnx.helper.tensor_dtype_to_np_dtype(model.graph.output[k].type.tensor_type.elem_type)
        assert g.dtype == want_dtype, f"{name} output_{k}: dtype {g.dtype}, want {np.dtype(want_dtype)}"
        rtol, atol = fallback_tolerance(dtype, exp)
        conformance.assert_match(exp, g.astype(exp.dtype),
                                 f"{name} {np.dtype(dtype).name} output_{k} vs ONNX Runtime float32 ({why})", rtol, atol)


@pytest.mark.parametrize("name,dtype", TYPED_CASES, ids=[f"{n}-{np.dtype(t).name}" for n, t in TYPED_CASES])
def test_converted_dtype_matches_onnxruntime(name, dtype, tmp_path):
    model, feeds, got = _run_converted(name, dtype, tmp_path)
    try:
        expected = _ort_run(model, feeds)
    except Exception as e:  # no ONNX Runtime kernel for this type: its float32 result instead
        _check_against_float32(name, dtype, model, feeds, got,
                               f"ONNX Runtime cannot run {np.dtype(dtype).name}: {str(e).splitlines()[0][:120]}")
        return
    assert len(expected) == len(got)
    # float16 results are compared at float16 resolution: both sides round to the nearest half.
    rtol, atol = (RTOL, ATOL) if dtype == np.float64 else (2e-3, 1e-3)
    for k, (exp, g) in enumerate(zip(expected, got)):
        conformance.assert_match(exp, g, f"{name} {np.dtype(dtype).name} output_{k}", rtol, atol)


@pytest.mark.parametrize("name,dtype", TYPED_CASES, ids=[f"{n}-{np.dtype(t).name}" for n, t in TYPED_CASES])
def test_converted_dtype_matches_float32_reference(name, dtype, tmp_path):
    """The fallback reference, checked on every typed case (so the fallback and its tolerance are
    known to work, whether or not this ONNX Runtime has the typed kernels)."""
    model, feeds, got = _run_converted(name, dtype, tmp_path)
    _check_against_float32(name, dtype, model, feeds, got, "always checked")


# ---- larger shapes than the backend tests: every kernel path against ONNX Runtime -------------

def conv_model(x_shape, w_shape, bias, **attrs):
    """A one-Conv model with seeded random weights (and bias) as initializers."""
    rng = np.random.default_rng(sum(x_shape) * 31 + sum(w_shape))
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    inits = [onnx.numpy_helper.from_array(w, "W")]
    inputs = ["X", "W"]
    if bias:
        inits.append(onnx.numpy_helper.from_array(rng.standard_normal(w_shape[0]).astype(np.float32), "B"))
        inputs.append("B")
    node = onnx.helper.make_node("Conv", inputs, ["Y"], **attrs)
    graph = onnx.helper.make_graph([node], "conv", [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, x_shape)],
                                   [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)], inits)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


# (X shape, W shape, bias, attributes): depthwise 3x3 stride 1/2 on odd, even, tiny and
# MobileNet-sized planes (the SIMD path and its tails), a depthwise multiplier, 5x5 depthwise,
# im2col convs, 1x1 (no im2col), grouped,
# dilated, asymmetric padding, batch > 1 with small planes (several images per GEMM), a plane
# large enough to be split into GEMM chunks, 1-D and 3-D.
CONV_CONFIGS = [
    ((1, 32, 112, 112), (32, 1, 3, 3), True, dict(group=32, pads=[1, 1, 1, 1])),
    ((2, 8, 13, 13), (8, 1, 3, 3), True, dict(group=8, pads=[1, 1, 1, 1], strides=[2, 2])),
    ((1, 16, 7, 7), (16, 1, 3, 3), False, dict(group=16, pads=[1, 1, 1, 1])),
    ((1, 6, 9, 20), (6, 1, 3, 3), True, dict(group=6, pads=[0, 2, 1, 0], strides=[1, 2])),
    ((1, 4, 3, 2), (4, 1, 3, 3), True, dict(group=4, pads=[1, 1, 1, 1])),
    ((1, 96, 112, 112), (96, 1, 3, 3), False, dict(group=96, pads=[1, 1, 1, 1], strides=[2, 2])),
    ((1, 4, 11, 11), (8, 1, 3, 3), True, dict(group=4, pads=[1, 1, 1, 1])),
    ((1, 8, 17, 17), (8, 1, 5, 5), True, dict(group=8, pads=[2, 2, 2, 2], strides=[2, 2])),
    ((1, 64, 56, 56), (64, 64, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((2, 3, 64, 64), (16, 3, 7, 7), False, dict(pads=[3, 3, 3, 3], strides=[2, 2])),
    ((1, 40, 28, 28), (24, 40, 1, 1), True, {}),
    ((2, 16, 30, 30), (96, 16, 1, 1), False, {}),
    ((3, 32, 7, 7), (48, 32, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((4, 8, 5, 5), (12, 4, 1, 1), False, dict(group=2)),
    ((1, 3, 300, 300), (8, 3, 3, 3), True, dict(pads=[1, 1, 1, 1])),
    ((1, 8, 20, 20), (12, 4, 3, 3), True, dict(group=2, pads=[1, 0, 2, 1], dilations=[2, 1])),
    ((1, 6, 15, 15), (10, 6, 3, 3), True, dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    ((3, 5, 40), (7, 5, 4), True, dict(pads=[2, 1], strides=[3])),
    ((1, 4, 6, 7, 8), (6, 2, 3, 3, 2), True, dict(group=2, pads=[1, 0, 1, 1, 1, 0])),
]


@pytest.mark.parametrize("x_shape,w_shape,bias,attrs", CONV_CONFIGS,
                         ids=[f"x{'x'.join(map(str, c[0]))}-w{'x'.join(map(str, c[1]))}" for c in CONV_CONFIGS])
def test_conv_matches_onnxruntime(x_shape, w_shape, bias, attrs, tmp_path):
    model = conv_model(x_shape, w_shape, bias, **attrs)
    path = str(tmp_path / "conv.onnx")
    onnx.save(model, path)
    x = np.random.default_rng(7).standard_normal(x_shape).astype(np.float32)
    xp = str(tmp_path / "x.pb")
    with open(xp, "wb") as f:
        f.write(onnx.numpy_helper.from_array(x).SerializeToString())
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    r = run_compress(path, [xp], str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    got = conformance.read_tensor(str(tmp_path / "out" / "output_0.pb"))
    # Both sum in float32 in different orders: relative 1e-4 of the output's scale.
    conformance.assert_match(expected, got, "Y", rtol=1e-3, atol=1e-4 * float(np.abs(expected).max()))


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "mobilenet_v3_large"])
def test_reference_model_matches_onnxruntime(arch, tmp_path):
    """A whole network (needs the elementwise/shape ops of other families too)."""
    path = str(tmp_path / f"{arch}.onnx")
    subprocess.run([COMPRESS, "build-reference", arch, "-o", path], check=True)
    x = np.random.default_rng(3).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    xp = str(tmp_path / "x.pb")
    with open(xp, "wb") as f:
        f.write(onnx.numpy_helper.from_array(x).SerializeToString())
    # compress builds this network itself, so every operator in it must be claimed.
    missing = conformance.missing_ops(conformance._case_from_model("reference", arch, path, []), CLAIMS)
    assert not missing, f"{arch} (built by compress build-reference) uses operators claimed_ops.txt does not claim: {missing}"
    r = run_compress(path, [xp], str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    name = onnx.load(path, load_external_data=False).graph.input[0].name
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
    got = conformance.read_tensor(str(tmp_path / "out" / "output_0.pb"))
    conformance.assert_match(expected, got, arch, rtol=1e-3, atol=1e-4 * float(np.abs(expected).max()))


def test_zz_per_op_summary(capsys):
    """Prints the per-operator pass count of the backend cases run above (last in the file)."""
    counts = collections.defaultdict(lambda: [0, 0])
    for case, op in CASES:
        if case.id in RESULTS:
            counts[op][1] += 1
            counts[op][0] += RESULTS[case.id]
    with capsys.disabled():
        print()
        for op in sorted(counts):
            print(f"  {op:<22} {counts[op][0]}/{counts[op][1]} backend cases passed")
    # The backend cases above must have run and been counted: every NN op with at least one case.
    assert counts, "no backend case was run and counted"
    uncounted = sorted(NN_OPS - {op for op, (_, t) in counts.items() if t > 0})
    assert not uncounted, f"no backend case of {uncounted} was run and counted"
    assert all(p == t for p, t in counts.values()), {op: f"{p}/{t}" for op, (p, t) in counts.items() if p != t}


def per_op_summary():
    counts = collections.defaultdict(lambda: [0, 0])
    failed = []
    for case, op in CASES:
        f = check_case(case)
        counts[op][1] += 1
        if f:
            failed.append(f"{case.id}: {'; '.join(f)}")
        else:
            counts[op][0] += 1
    return counts, failed


if __name__ == "__main__":
    counts, failed = per_op_summary()
    width = max(len(op) for op in counts)
    for op in sorted(counts):
        p, t = counts[op]
        print(f"{op:<{width}}  {p}/{t} passed")
    for f in failed:
        print("FAIL", f)
    total = sum(t for _, t in counts.values())
    passed = sum(p for p, _ in counts.values())
    print(f"{passed} passed, {total - passed} failed")
    sys.exit(1 if failed else 0)
