"""`compress prune` against independent references.

- Every written model passes onnx.checker (full check) and runs in ONNX Runtime, and ONNX
  Runtime's outputs equal compress's executor outputs on it (max abs error <= 1e-4 x max |ref|).
- Channel counts in the written model equal the plan; the reported parameter and MAC totals
  equal a NumPy recount of the written model (Conv/Gemm MACs from onnx shape inference).
- Channel choice equals a NumPy implementation of each criterion (L1, L2, FPGM, Slim), for a
  single-producer group and for the residual group of the digits fixture.
- Surgery: ratio 0 keeps the function; a model whose to-be-removed channels are zeroed (weights,
  biases, BN beta / conv bias) computes exactly what the pruned model computes.
- Bad input: one line, exit status 1 or a usage error, nothing written.
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper, shape_inference

import conformance
from conftest import FIXTURES, SHARED_MODELS, assert_clean_failure, crash_description, run_compress

BN = FIXTURES / "digits_cnn_bn.onnx"
FOLDED = FIXTURES / "digits_cnn.onnx"
PADDLE = FIXTURES / "digits_cnn_paddle.onnx"
YOLOX = SHARED_MODELS / "yolox_det_416.onnx"
METHODS = ["l1", "l2", "fpgm", "slim"]


def ok(*args):
    p = run_compress(*args)
    assert p.returncode == 0, f"compress {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr}"
    return p


def prune(model, out, method, ratio, *extra):
    return json.loads(ok("prune", model, "-o", out, "--method", method, "--ratio", ratio, "--format", "json", *extra).stdout)


# ---- independent references --------------------------------------------------------------------

def constants(model):
    """value name -> array for initializers and Constant nodes, Identity hops resolved."""
    g = model.graph
    out = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in out:
            out[n.output[0]] = out[n.input[0]]
    return out


def node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def filters(w, axis):
    return np.moveaxis(w.astype(np.float64), axis, 0).reshape(w.shape[axis], -1)


def criterion(method, F):
    if method == "l1":
        return np.abs(F).sum(1)
    if method == "l2":
        return np.sqrt((F * F).sum(1))
    d = np.sqrt(((F[:, None, :] - F[None, :, :]) ** 2).sum(-1))
    return d.sum(1)  # FPGM: sum of Euclidean distances to the layer's other filters


def reference_choice(model, group, method, ratio):
    """The channels NumPy removes from `group` (the report's producers / members name the layers)."""
    c = constants(model)
    scores = []
    if method == "slim":
        for name in group["members"]:
            n = node(model, name)
            if n.op_type == "BatchNormalization":
                scores.append(np.abs(c[n.input[1]].astype(np.float64)))
    else:
        for name in group["producers"]:
            n = node(model, name)
            w = c[n.input[1]]
            if n.op_type == "Conv":
                axis = 0
            else:
                trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
                axis = 0 if trans_b else 1
            s = criterion(method, filters(w, axis))
            scores.append(s / s.mean())
    imp = np.mean(scores, axis=0)
    C = group["channels_before"]
    k = C - max(C - int(np.floor(C * ratio)), 1)
    return sorted(np.lexsort((np.arange(C), imp))[:k].tolist())


def recount(path):
    """Parameters of Conv/Gemm/BN weights and Conv/Gemm MACs, from onnx's shape inference."""
    m = shape_inference.infer_shapes(onnx.load(str(path)))
    c = constants(m)
    shapes = {v.name: [d.dim_value if d.dim_value > 0 else 1 for d in v.type.tensor_type.shape.dim]
              for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    params, macs, seen = 0, 0, set()
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            ws = [i for i in n.input[1:] if i in c]
        elif n.op_type == "BatchNormalization":
            ws = n.input[1:3]  # scale and bias; mean/var are buffers
        else:
            continue
        for w in ws:
            if w and w not in seen:
                seen.add(w)
                params += c[w].size
        if n.op_type == "Conv":
            w = c[n.input[1]]
            macs += int(np.prod(shapes[n.output[0]])) * int(np.prod(w.shape[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            a = shapes[n.input[0]]
            macs += int(np.prod(shapes[n.output[0]])) * a[-1]
    return params, macs


def ort_outputs(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def compress_outputs(path, x, tmp):
    d = tmp / f"eval-{os.path.basename(str(path))}"
    d.mkdir(exist_ok=True)
    xp = d / "x.pb"
    xp.write_bytes(numpy_helper.from_array(x).SerializeToString())
    r = conformance._eval(str(path), [str(xp)], str(d))
    assert r.returncode == 0, r.stderr
    outs, k = [], 0
    while (d / f"output_{k}.pb").exists():
        outs.append(numpy_helper.to_array(onnx.load_tensor(str(d / f"output_{k}.pb"))))
        k += 1
    return outs


def digits_batch(n=16):
    files = sorted((FIXTURES / "digits").glob("*.npy"))[:n]
    return np.concatenate([np.load(f) for f in files])


def check_written(path, tmp, x):
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    name = m.graph.input[0].name
    ref = ort_outputs(path, {name: x})
    got = compress_outputs(path, x, tmp)
    assert len(got) == len(ref)
    for r, g in zip(ref, got):
        assert g.shape == r.shape
        assert np.abs(g - r).max() <= 1e-4 * np.abs(r).max()
    return ref


def check_counts(path, report):
    c = constants(onnx.load(str(path)))
    for g in report["groups"]:
        for s in g["slices"]:
            if s["role"] == "output" and s["start"] == 0:
                assert c[s["tensor"]].shape[s["axis"]] == g["channels_after"], (g["label"], s["tensor"])
    params, macs = recount(path)
    assert report["totals"]["params_after"] == params
    assert report["totals"]["macs_after"] == macs


# ---- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fixture", [BN, PADDLE], ids=["digits_bn", "paddle_style"])
def test_pruned_fixture_runs_and_counts(method, fixture, tmp_path):
    out = tmp_path / "pruned.onnx"
    report = prune(fixture, out, method, 0.3)
    assert len(report["groups"]) == 2
    assert all(g["channels_after"] < g["channels_before"] for g in report["groups"])
    check_written(out, tmp_path, digits_batch())
    check_counts(out, report)
    before_params, before_macs = recount(fixture)
    assert report["totals"]["params_before"] == before_params and report["totals"]["macs_before"] == before_macs
    assert report["totals"]["macs_after"] < before_macs


@pytest.mark.parametrize("method", ["l1", "l2", "fpgm"])
def test_folded_export_prunes_and_slim_says_why_not(method, tmp_path):
    out = tmp_path / "p.onnx"
    report = prune(FOLDED, out, method, 0.3)
    check_written(out, tmp_path, digits_batch())
    check_counts(out, report)
    bad = run_compress("prune", FOLDED, "-o", tmp_path / "s.onnx", "--method", "slim", "--ratio", "0.3")
    assert_clean_failure(bad, "BatchNormalization", "l1, l2 or fpgm")
    assert not (tmp_path / "s.onnx").exists()


@pytest.mark.parametrize("method", METHODS)
def test_channel_choice_equals_numpy(method, tmp_path):
    model = onnx.load(str(BN))
    for ratio in (0.25, 0.5):
        report = prune(BN, tmp_path / "p.onnx", method, ratio)
        groups = {g["label"]: g for g in report["groups"]}
        assert len(groups["stem/conv"]["producers"]) == 2, "the residual group joins stem/conv and block/pw/conv"
        assert groups["head/conv"]["producers"] == ["head/conv"], "a single-layer group"
        for label in ("stem/conv", "head/conv"):
            want = reference_choice(model, groups[label], method, ratio)
            assert groups[label]["removed"] == want, (method, ratio, label)


def test_ratio_zero_keeps_the_function(tmp_path):
    out = tmp_path / "p.onnx"
    report = prune(BN, out, "l1", 0)
    assert all(not g["removed"] for g in report["groups"])
    x = digits_batch()
    np.testing.assert_array_equal(ort_outputs(out, {"input": x})[0], ort_outputs(BN, {"input": x})[0])


def masked(model_path, report, keep_biases=False):
    """The model with every removed channel zeroed on its producing and pass-through side (with
    keep_biases: only the producers' filters zeroed, so the channels emit their bias as a constant)."""
    m = onnx.load(str(model_path))
    arrays = {t.name: t for t in m.graph.initializer}
    for g in report["groups"]:
        for s in g["slices"]:
            if s["role"] == "input":
                continue
            t = arrays[s["tensor"]]
            a = numpy_helper.to_array(t).copy()
            if keep_biases and (a.ndim == 1 or s["role"] != "output"):
                continue  # only the producers' filters are zeroed; biases, BN and depthwise kept
            idx = [s["offset"] + (c - s["start"]) * s["block"] + b
                   for c in g["removed"] if s["start"] <= c < s["start"] + s["count"] for b in range(s["block"])]
            if not idx:
                continue
            is_bn = any(n.name == s["node"] and n.op_type == "BatchNormalization" for n in m.graph.node)
            bn_input = next((list(n.input).index(t.name) for n in m.graph.node if n.name == s["node"]), None)
            if is_bn and bn_input in (3, 4):
                continue  # running mean/var: a zero scale and bias already make the channel emit 0
            sl = [slice(None)] * a.ndim
            sl[s["axis"]] = idx
            a[tuple(sl)] = 0
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    return m


@pytest.mark.parametrize("method", ["l1", "fpgm"])
@pytest.mark.parametrize("fixture", [BN, FOLDED], ids=["bn", "folded"])
def test_zeroed_channels_prune_exactly(method, fixture, tmp_path):
    """A model whose to-be-removed channels already emit exactly zero (weights, bias and BN beta
    zeroed) computes after pruning exactly what it computed before: the surgery removes only them."""
    plan = json.loads(ok("prune", fixture, "--method", method, "--ratio", "0.4", "--dry-run", "--format", "json").stdout)
    masked_path = tmp_path / "masked.onnx"
    onnx.save(masked(fixture, plan), str(masked_path))
    out = tmp_path / "p.onnx"
    report = prune(masked_path, out, method, 0.4)
    assert len(plan["groups"]) == len(report["groups"]) == 2
    # The zeroed filters are the least important (for FPGM: the closest to the geometric median,
    # as the zero filter is), so the same channels go.
    assert [g["removed"] for g in plan["groups"]] == [g["removed"] for g in report["groups"]]
    x = digits_batch(32)
    a, b = ort_outputs(masked_path, {"input": x})[0], ort_outputs(out, {"input": x})[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    # And the channels mattered: the unmasked model differs.
    assert np.abs(ort_outputs(fixture, {"input": x})[0] - a).max() > 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_yolox(method, tmp_path):
    if not YOLOX.exists():
        pytest.skip(f"{YOLOX} is not present (shared models are beside the checkout on developer machines)")
    out = tmp_path / "y.onnx"
    if method == "slim":  # exported with BN folded into the convolutions
        assert_clean_failure(run_compress("prune", YOLOX, "-o", out, "--method", "slim", "--ratio", "0.3"), "BatchNormalization")
        assert not out.exists()
        return
    report = prune(YOLOX, out, method, 0.3)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 416, 416)).astype(np.float32)
    check_written(out, tmp_path, x)
    check_counts(out, report)
    assert report["totals"]["macs_after"] < 0.6 * report["totals"]["macs_before"]
    reasons = " ".join(r for u in report["unprunable"] for r in u["reasons"])
    assert "Reshape" in reasons, "the detection head's Reshape stops its groups"


def test_dry_run_writes_nothing_and_plan_matches(tmp_path):
    out = tmp_path / "p.onnx"
    p = ok("prune", BN, "-o", out, "--method", "fpgm", "--ratio", "0.5", "--dry-run", "--format", "json")
    assert not out.exists()
    dry = json.loads(p.stdout)
    real = prune(BN, out, "fpgm", 0.5)
    assert [g["removed"] for g in dry["groups"]] == [g["removed"] for g in real["groups"]]
    assert dry["totals"] == real["totals"]


def test_round_to_min_channels_exclude_and_ratios_file(tmp_path):
    # 0.3 of 8 and 16 removes 2 and 4: 6 kept rounds up to 8, 12 is a multiple of 4 already.
    r = prune(BN, tmp_path / "a.onnx", "l1", 0.3, "--round-to", "4")
    assert {g["label"]: g["channels_after"] for g in r["groups"]} == {"stem/conv": 8, "head/conv": 12}
    # 0.9 would keep 1 and 2: the floor of 5 holds for both groups.
    r = prune(BN, tmp_path / "b.onnx", "l1", 0.9, "--min-channels", "5")
    assert {g["label"]: g["channels_after"] for g in r["groups"]} == {"stem/conv": 5, "head/conv": 5}
    check_written(tmp_path / "b.onnx", tmp_path, digits_batch())
    r = prune(BN, tmp_path / "c.onnx", "l1", 0.5, "--exclude", "head/*")
    head = next(g for g in r["groups"] if g["label"] == "head/conv")
    assert head["channels_after"] == head["channels_before"] and "exclude" in head["skipped"]
    ratios = tmp_path / "ratios.txt"
    ratios.write_text("# per group\nhead/conv 0.5\n")
    r = json.loads(ok("prune", BN, "-o", tmp_path / "d.onnx", "--method", "l2", "--ratios", ratios, "--format", "json").stdout)
    groups = {g["label"]: g for g in r["groups"]}
    assert groups["head/conv"]["channels_after"] == 8 and groups["stem/conv"]["channels_after"] == 8
    check_written(tmp_path / "d.onnx", tmp_path, digits_batch())


def test_global_and_target_macs(tmp_path):
    r = prune(BN, tmp_path / "g.onnx", "slim", 0.3, "--global")
    removed = sum(g["channels_before"] - g["channels_after"] for g in r["groups"])
    assert removed == int(np.floor(0.3 * sum(g["channels_before"] for g in r["groups"])))
    check_written(tmp_path / "g.onnx", tmp_path, digits_batch())
    t = json.loads(ok("prune", BN, "-o", tmp_path / "t.onnx", "--method", "l1", "--target-macs", "0.6", "--format", "json").stdout)
    kept = t["totals"]["macs_after"] / t["totals"]["macs_before"]
    assert abs(kept - 0.6) < 0.08, kept
    check_counts(tmp_path / "t.onnx", t)


def test_exclude_matching_nothing_warns(tmp_path):
    p = ok("prune", BN, "-o", tmp_path / "p.onnx", "--method", "l1", "--ratio", "0.2", "--exclude", "no-such-node*")
    assert "warning: --exclude 'no-such-node*' matches no node" in p.stderr


@pytest.mark.parametrize("args,phrase", [
    (["--method", "l3", "--ratio", "0.3"], "l3"),
    (["--method", "l1", "--ratio", "1.0"], "[0, 1)"),
    (["--method", "l1", "--ratio", "-0.1"], "[0, 1)"),
    (["--method", "l1"], "--ratio"),
    (["--method", "l1", "--ratio", "0.3", "--target-macs", "0.5"], "contradict"),
    (["--method", "l1", "--ratio", "0.3", "--global", "--ratios", "Fixtures/digits/labels.txt"], "does not combine"),
])
def test_bad_flags_are_usage_errors(args, phrase, tmp_path):
    out = tmp_path / "p.onnx"
    r = run_compress("prune", BN, "-o", out, *args)
    assert crash_description(r) is None
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert phrase in r.stderr
    assert not out.exists()


def test_all_unprunable_model_is_refused_with_reasons(tmp_path):
    from onnx import TensorProto, helper
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="only")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], [w])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    out = tmp_path / "p.onnx"
    assert_clean_failure(run_compress("prune", path, "-o", out, "--method", "l1", "--ratio", "0.5"),
                         "no channel group can be pruned", "graph output")
    assert not out.exists()


@pytest.mark.parametrize("fixture", [BN, FOLDED], ids=["bn", "folded"])
def test_removed_channels_constant_folds_into_the_gemm_exactly(fixture, tmp_path):
    """head/conv's channels reach the Gemm through Flatten, where folding is exact: in a model whose
    to-be-removed filters are zeroed but whose biases (and BN) are kept, those channels emit
    non-zero constants; pruning it folds them into the Gemm's bias and computes the same outputs."""
    ratios = tmp_path / "r.txt"
    ratios.write_text("head/conv 0.5\n")
    plan = json.loads(ok("prune", fixture, "--method", "l1", "--ratios", ratios, "--dry-run", "--format", "json").stdout)
    masked_path = tmp_path / "masked.onnx"
    onnx.save(masked(fixture, plan, keep_biases=True), str(masked_path))
    out = tmp_path / "p.onnx"
    report = json.loads(ok("prune", masked_path, "-o", out, "--method", "l1", "--ratios", ratios, "--format", "json").stdout)
    head = next(g for g in report["groups"] if g["label"] == "head/conv")
    assert head["removed"] == next(g for g in plan["groups"] if g["label"] == "head/conv")["removed"]
    assert len(head["removed"]) == 8 and report["approximations"] == []
    x = digits_batch(32)
    a, b = ort_outputs(masked_path, {"input": x})[0], ort_outputs(out, {"input": x})[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    # The constants were not zero: dropping them (the fc bias left as it was) changes the outputs.
    fc_bias = next(n for n in onnx.load(str(out)).graph.node if n.name == "fc").input[2]
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(masked_path)).graph.initializer}[fc_bias]
    after = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}[fc_bias]
    assert np.abs(after - before).max() > 1e-3


def test_non_constant_removed_inputs_are_reported_as_approximations(tmp_path):
    """The residual group passes a padded depthwise convolution: the pointwise convolution after it
    reads removed channels that vary over positions, so nothing is folded there and the report says so."""
    report = prune(FOLDED, tmp_path / "p.onnx", "l1", 0.3)
    assert any(a.startswith("block/pw/conv:") for a in report["approximations"]), report["approximations"]


# ---- --calib repair ------------------------------------------------------------------------------

def with_outputs(path, names, tmp, tag):
    """A copy of the model that also outputs the values `names` (for ORT-side statistics)."""
    m = onnx.load(str(path))
    m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    p = tmp / f"{tag}.onnx"
    onnx.save(m, str(p))
    return p


def channel_moments(path, names, files, tmp, tag):
    """Per-channel mean and (population) variance of each value over batch and space, in float64."""
    sess = ort.InferenceSession(str(with_outputs(path, names, tmp, tag)), providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    acc = {n: [] for n in names}
    for f in files:
        res = dict(zip(outs, sess.run(None, {"input": np.load(f)})))
        for n in names:
            a = res[n].astype(np.float64)
            acc[n].append(np.moveaxis(a, 1, 0).reshape(a.shape[1], -1))
    return {n: (np.concatenate(v, 1).mean(1), np.concatenate(v, 1).var(1)) for n, v in acc.items()}


CALIB_FILES = sorted((FIXTURES / "digits").glob("*.npy"))[:64]


def test_calib_reestimates_batchnorm_statistics(tmp_path):
    plain, repaired = tmp_path / "plain.onnx", tmp_path / "repaired.onnx"
    prune(BN, plain, "fpgm", 0.3)
    report = json.loads(ok("prune", BN, "-o", repaired, "--method", "fpgm", "--ratio", "0.3", "--calib", FIXTURES / "digits",
                           "--calib-samples", 64, "--calib-rounds", 1, "--format", "json").stdout)
    bns = report["repair"]["summary"]["batchnorms"]
    assert sorted(bns) == ["block/pw/bn", "head/bn"] and report["repair"]["summary"]["samples"] == 64
    m = onnx.load(str(plain))
    inputs = {n.name: n.input for n in m.graph.node if n.op_type == "BatchNormalization"}
    ref = channel_moments(plain, [inputs[b][0] for b in bns], CALIB_FILES, tmp_path, "plain")
    c = constants(onnx.load(str(repaired)))
    for b in bns:
        mean, var = ref[inputs[b][0]]
        np.testing.assert_allclose(c[inputs[b][3]], mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(c[inputs[b][4]], var, rtol=1e-4, atol=1e-5)


def test_calib_restores_channel_statistics_of_a_folded_export(tmp_path):
    plain, repaired = tmp_path / "plain.onnx", tmp_path / "repaired.onnx"
    rp = prune(FOLDED, plain, "l1", 0.3)
    report = json.loads(ok("prune", FOLDED, "-o", repaired, "--method", "l1", "--ratio", "0.3", "--calib", FIXTURES / "digits",
                           "--calib-samples", 64, "--calib-rounds", 1, "--format", "json").stdout)
    layers = report["repair"]["summary"]["layers"]
    assert sorted(layers) == ["block/pw/conv", "fc", "head/conv"]
    # One round: each corrected layer's statistics are measured on the pruned model as written
    # without --calib, and matched to the unpruned model's on the surviving channels.
    m = onnx.load(str(plain))
    outs = {n.name: n.output[0] for n in m.graph.node if n.name in layers}
    got = channel_moments(plain, list(outs.values()), CALIB_FILES, tmp_path, "plain")
    want = channel_moments(FOLDED, list(outs.values()), CALIB_FILES, tmp_path, "orig")
    cp, cr = constants(m), constants(onnx.load(str(repaired)))
    kept = {p: [i for i in range(g["channels_before"]) if i not in g["removed"]] for g in rp["groups"] for p in g["producers"]}
    for name, value in outs.items():
        node = next(n for n in m.graph.node if n.name == name)
        pm, pv = got[value]
        keep = kept.get(name, list(range(len(want[value][0]))))
        rm, rv = want[value][0][keep], want[value][1][keep]
        s = np.sqrt(rv) / np.sqrt(pv)
        axis = 0 if node.op_type == "Conv" else 1  # fc: Gemm with transB=0 keeps outputs on axis 1
        if node.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in node.attribute):
            axis = 0
        w0, w1 = cp[node.input[1]], cr[node.input[1]]
        shape = [1] * w0.ndim
        shape[axis] = -1
        np.testing.assert_allclose(w1, w0 * s.reshape(shape), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(cr[node.input[2]], s * cp[node.input[2]] + rm - s * pm, rtol=1e-4, atol=1e-4)


def test_calib_accuracy_is_measured_and_improves(tmp_path):
    out = tmp_path / "r.onnx"
    report = json.loads(ok("prune", FOLDED, "-o", out, "--method", "l1", "--ratio", "0.3", "--calib", FIXTURES / "digits",
                           "--format", "json").stdout)
    r = report["repair"]
    labels = dict(l.split() for l in (FIXTURES / "digits" / "labels.txt").read_text().splitlines())
    files = sorted((FIXTURES / "digits").glob("*.npy"))[:256]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    correct = sum(int(sess.run(None, {"input": np.load(f)})[0].argmax()) == int(labels[f.name]) for f in files)
    assert r["accuracy_repaired"] == pytest.approx(correct / len(files), abs=1e-12)
    plain = tmp_path / "plain.onnx"
    prune(FOLDED, plain, "l1", 0.3)
    assert r["accuracy_pruned"] == pytest.approx(sum(
        int(ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).run(None, {"input": np.load(f)})[0].argmax()) == int(labels[f.name])
        for f in files) / len(files), abs=1e-12)
    orig = ort.InferenceSession(str(FOLDED), providers=["CPUExecutionProvider"])
    assert r["accuracy_original"] == pytest.approx(sum(
        int(orig.run(None, {"input": np.load(f)})[0].argmax()) == int(labels[f.name]) for f in files) / len(files), abs=1e-12)
    assert r["accuracy_repaired"] > r["accuracy_pruned"] + 0.2, r
    check_written(out, tmp_path, digits_batch())


def test_calib_on_an_empty_folder_fails_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "r.onnx"
    r = run_compress("prune", FOLDED, "-o", out, "--method", "l1", "--ratio", "0.3", "--calib", empty)
    assert_clean_failure(r, str(empty))
    assert not out.exists()


# ---- --sensitivity -------------------------------------------------------------------------------

def ort_accuracy(path, files, labels):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sum(int(sess.run(None, {"input": np.load(f)})[0].argmax()) == labels[f.name] for f in files) / len(files)


def test_sensitivity_points_equal_onnxruntime_and_emitted_ratios_follow_the_rule(tmp_path):
    files = sorted((FIXTURES / "digits").glob("*.npy"))[:120]
    labels = {l.split()[0]: int(l.split()[1]) for l in (FIXTURES / "digits" / "labels.txt").read_text().splitlines()}
    emitted = tmp_path / "ratios.txt"
    r = json.loads(ok("prune", BN, "--method", "l1", "--sensitivity", "--data", FIXTURES / "digits", "--max-samples", 120,
                      "--ratios", "0.25,0.5,0.75", "--emit-ratios", emitted, "--max-drop", "0.05", "--format", "json").stdout)
    assert r["schema"] == "compress.prune-sensitivity/1" and r["samples"] == 120
    assert r["baseline_accuracy"] == pytest.approx(ort_accuracy(BN, files, labels), abs=1e-12)
    assert sorted(row["group"] for row in r["rows"]) == ["head/conv", "stem/conv"]
    for row in r["rows"]:
        assert [p["ratio"] for p in row["points"]] == [0.25, 0.5, 0.75]
        for p in row["points"]:
            # Independent: the same single-group pruning written by prune, scored by ONNX Runtime.
            single = tmp_path / "single.txt"
            single.write_text(f"{row['group']} {p['ratio']}\n")
            out = tmp_path / "single.onnx"
            rep = json.loads(ok("prune", BN, "-o", out, "--method", "l1", "--ratios", single, "--format", "json").stdout)
            assert rep["totals"]["macs_after"] == p["macs_after"]
            assert p["accuracy"] == pytest.approx(ort_accuracy(out, files, labels), abs=1e-12)
        # The emitted ratio is the largest whose accuracy (and every smaller ratio's) is within 5 points.
        within = [p["ratio"] for p in row["points"] if r["baseline_accuracy"] - p["accuracy"] <= 0.05 + 1e-12]
        prefix = 0.0
        for p in row["points"]:
            if p["ratio"] not in within:
                break
            prefix = p["ratio"]
        assert r["emitted"][row["group"]] == prefix
    lines = [l for l in emitted.read_text().splitlines() if not l.startswith("#")]
    assert {l.split()[0]: float(l.split()[1]) for l in lines} == r["emitted"]
    # The file drives a real prune.
    ok("prune", BN, "-o", tmp_path / "guided.onnx", "--method", "l1", "--ratios", emitted)
    check_written(tmp_path / "guided.onnx", tmp_path, digits_batch())


def test_sensitivity_plot_renders(tmp_path):
    import shutil
    import subprocess
    from PIL import Image
    svg, png = tmp_path / "s.svg", tmp_path / "s.png"
    ok("prune", FOLDED, "--method", "fpgm", "--sensitivity", "--data", FIXTURES / "digits", "--max-samples", 40, "--plot", svg)
    rsvg = shutil.which("rsvg-convert")
    assert rsvg, "rsvg-convert (Debian librsvg2-bin, installed by `make deps`) is needed to check the chart"
    subprocess.run([rsvg, "-o", str(png), str(svg)], check=True)
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[:2] == (560, 900)
    coloured = (np.abs(img[:, :, 0] - img[:, :, 2]) > 60).sum()  # the blue and orange lines
    assert coloured > 500, coloured
    text = svg.read_text()
    assert text.count("<polyline") == 2 and "stem/conv" in text and "head/conv" in text


@pytest.mark.parametrize("args,phrase", [
    (["--sensitivity"], "--data"),
    (["--sensitivity", "--data", "Fixtures/digits", "--ratios", "0.2,1.5"], "(0, 1)"),
    (["--sensitivity", "--data", "Fixtures/digits", "--ratio", "0.3"], "writes no model"),
    (["--ratio", "0.3", "--plot", "x.svg", "-o", "OUT"], "--sensitivity"),
])
def test_sensitivity_bad_flags(args, phrase, tmp_path):
    out = tmp_path / "never.onnx"
    r = run_compress("prune", BN, "--method", "l1", *[out if a == "OUT" else a for a in args])
    assert not out.exists()
    assert crash_description(r) is None and r.returncode == 64, (r.returncode, r.stderr)
    assert phrase in r.stderr


def test_device_estimate_and_measured_latency(tmp_path):
    out = tmp_path / "p.onnx"
    r = json.loads(ok("prune", BN, "-o", out, "--method", "l1", "--ratio", "0.5", "--device", "aws-graviton3",
                      "--measure", "--measure-runs", 5, "--format", "json").stdout)
    sp = r["speed"]
    assert sp["device"] == "aws-graviton3" and sp["runs"] == 5 and sp["threads"] >= 1
    # The estimates are profile's for each model on that device.
    for key, path in (("before", BN), ("after", out)):
        t = json.loads(ok("profile", path, "--device", "aws-graviton3", "--format", "json").stdout)["totals"]
        assert sp[f"estimated_ms_{key}"] == pytest.approx(t["time_ms"], rel=1e-9)
        assert sp[f"memory_bound_share_{key}"] == pytest.approx(t["memory_bound_time_share"], rel=1e-9)
    assert sp["estimated_ms_after"] < sp["estimated_ms_before"]
    assert sp["measured_ms_before"] > 0 and sp["measured_ms_after"] > 0
    fresh = tmp_path / "never.onnx"
    bad = run_compress("prune", BN, "-o", fresh, "--method", "l1", "--ratio", "0.5", "--device", "no-such-device")
    assert crash_description(bad) is None and bad.returncode == 64 and "--list-devices" in bad.stderr
    assert not fresh.exists()


def ridge_cv(X1, Y, fold, prior, grid=(1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10)):
    """NumPy: [W; b] = argmin |Y - X1 [W; b]|^2 + lam*s*|W - W0|^2 (bias row free), s the mean
    diagonal of X1'X1, lam the grid value with the least 4-fold cross-validation error (samples
    assigned to folds by `fold`)."""
    def fit(X, T, lam):
        D = np.eye(X1.shape[1]) * lam * np.trace(X1.T @ X1) / X1.shape[1]
        D[-1, -1] = 0
        return np.linalg.solve(X.T @ X + D, X.T @ T + D @ prior)
    errs = [sum(((X1[fold == f] @ fit(X1[fold != f], Y[fold != f], lam) - Y[fold == f]) ** 2).sum() for f in range(4)) for lam in grid]
    lam = grid[int(np.argmin(errs))]
    return fit(X1, Y, lam), lam


def test_reconstruct_is_the_cross_validated_ridge_refit(tmp_path):
    """--reconstruct alone (--calib-rounds 0): the first refit layer's weights and bias are the
    ridge least-squares solution NumPy finds from the same samples (its input columns in the
    pruned model, the unpruned layer's output as target), pulled towards the pruned weights with
    the strength 4-fold cross-validation picks; the fc layer (192 inputs, 64 samples) needs a
    strong pull, the 1x1 convolution (64 positions a sample) a weak one."""
    plain, refit = tmp_path / "plain.onnx", tmp_path / "refit.onnx"
    rp = prune(FOLDED, plain, "l1", 0.3)
    r = json.loads(ok("prune", FOLDED, "-o", refit, "--method", "l1", "--ratio", "0.3", "--calib", FIXTURES / "digits",
                      "--calib-samples", 64, "--calib-rounds", 0, "--reconstruct", "--format", "json").stdout)
    assert r["repair"]["reconstruction"]["layers"] == ["block/pw/conv", "head/conv", "fc"]
    assert r["repair"]["summary"]["rounds"] == 0
    # block/pw/conv is 1x1: its input columns are the channel values at each position.
    m = onnx.load(str(plain))
    pw = next(n for n in m.graph.node if n.name == "block/pw/conv")
    xs = ort.InferenceSession(str(with_outputs(plain, [pw.input[0]], tmp_path, "px")), providers=["CPUExecutionProvider"])
    ys = ort.InferenceSession(str(with_outputs(FOLDED, [pw.output[0]], tmp_path, "py")), providers=["CPUExecutionProvider"])
    kept = [i for i in range(8) if i not in next(g for g in rp["groups"] if "block/pw/conv" in g["producers"])["removed"]]
    X, Y, fold = [], [], []
    for i, f in enumerate(CALIB_FILES):
        x = dict(zip([o.name for o in xs.get_outputs()], xs.run(None, {"input": np.load(f)})))[pw.input[0]].astype(np.float64)
        y = dict(zip([o.name for o in ys.get_outputs()], ys.run(None, {"input": np.load(f)})))[pw.output[0]].astype(np.float64)
        X.append(x[0].reshape(x.shape[1], -1).T)
        Y.append(y[0][kept].reshape(len(kept), -1).T)
        fold += [i % 4] * X[-1].shape[0]
    X = np.concatenate(X)
    X1 = np.hstack([X, np.ones((len(X), 1))])
    Y = np.concatenate(Y)
    c0 = constants(m)
    prior = np.vstack([c0[pw.input[1]].reshape(len(kept), -1).T.astype(np.float64), np.zeros((1, len(kept)))])
    sol, lam = ridge_cv(X1, Y, np.array(fold), prior)
    assert r["repair"]["reconstruction"]["lambdas"]["block/pw/conv"] == pytest.approx(lam)
    c = constants(onnx.load(str(refit)))
    np.testing.assert_allclose(c[pw.input[1]].reshape(len(kept), -1), sol[:-1].T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(c[pw.input[2]], sol[-1], rtol=1e-3, atol=1e-4)
    # fc, refit last: its input columns are the flattened features of the written model (the
    # layers before it refit already), one row a sample, the unpruned model's logits the target.
    xs = ort.InferenceSession(str(with_outputs(refit, ["flatten_out"], tmp_path, "rx")), providers=["CPUExecutionProvider"])
    ys = ort.InferenceSession(str(FOLDED), providers=["CPUExecutionProvider"])
    Xf = np.concatenate([xs.run(["flatten_out"], {"input": np.load(f)})[0] for f in CALIB_FILES]).astype(np.float64)
    Yf = np.concatenate([ys.run(None, {"input": np.load(f)})[0] for f in CALIB_FILES]).astype(np.float64)
    fc = next(n for n in m.graph.node if n.name == "fc")
    prior = np.vstack([c0[fc.input[1]].T.astype(np.float64), np.zeros((1, Yf.shape[1]))])
    sol, lam_fc = ridge_cv(np.hstack([Xf, np.ones((len(Xf), 1))]), Yf, np.arange(len(Xf)) % 4, prior)
    assert r["repair"]["reconstruction"]["lambdas"]["fc"] == pytest.approx(lam_fc)
    np.testing.assert_allclose(c[fc.input[1]], sol[:-1].T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(c[fc.input[2]], sol[-1], rtol=1e-3, atol=1e-4)
    assert lam_fc > lam


HALF = 180  # the digits test split halves: calibrate on the first, score on the second


@pytest.mark.parametrize("method", ["l1", "l2", "fpgm"])
def test_calib_reconstruct_keeps_held_out_accuracy_of_the_folded_export_within_3_points(method, tmp_path):
    """Calibrate on the first 180 digits samples, score on the other 180 with ONNX Runtime (labels
    from labels.txt): at ratio 0.3 the BN-folded export with --calib --reconstruct loses at most
    3 points of top-1 accuracy, while the plain pruned model loses over 25."""
    labels = {l.split()[0]: int(l.split()[1]) for l in (FIXTURES / "digits" / "labels.txt").read_text().splitlines()}
    held = sorted((FIXTURES / "digits").glob("*.npy"))[HALF:]
    assert len(held) == 180
    plain, fixed = tmp_path / "plain.onnx", tmp_path / "fixed.onnx"
    prune(FOLDED, plain, method, 0.3)
    r = json.loads(ok("prune", FOLDED, "-o", fixed, "--method", method, "--ratio", "0.3", "--calib", FIXTURES / "digits",
                      "--reconstruct", "--calib-samples", HALF, "--format", "json").stdout)
    assert r["repair"]["reconstruction"]["samples"] == HALF
    a0, a1, a2 = ort_accuracy(FOLDED, held, labels), ort_accuracy(plain, held, labels), ort_accuracy(fixed, held, labels)
    assert a0 - a1 > 0.25 and a0 - a2 <= 0.03, (a0, a1, a2)
    check_written(fixed, tmp_path, digits_batch())


def split_model(path, opset, form):
    """Conv(3→8) → Relu → Split(axis 1: 3 + 5, or equal halves) → one Conv per branch → Concat
    → Conv(→4): the stem's channels reach two consumers at offsets through the Split."""
    rng = np.random.default_rng(5)
    w = lambda name, *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.5, name)
    sizes = [3, 5] if form != "equal" else [4, 4]
    inits = [w("w0", 8, 3, 3, 3), w("b0", 8), w("wa", 6, sizes[0], 1, 1), w("wb", 6, sizes[1], 3, 3), w("w2", 4, 12, 1, 1)]
    attrs, split_inputs = {}, ["r"]
    if form == "input":
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        split_inputs.append("sizes")
    elif form == "attribute":
        attrs["split"] = sizes
    elif opset >= 18:
        attrs["num_outputs"] = 2
    nodes = [onnx.helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="stem", pads=[1, 1, 1, 1]),
             onnx.helper.make_node("Relu", ["c0"], ["r"], name="relu"),
             onnx.helper.make_node("Split", split_inputs, ["s0", "s1"], name="split", axis=1, **attrs),
             onnx.helper.make_node("Conv", ["s0", "wa"], ["a"], name="branch_a"),
             onnx.helper.make_node("Conv", ["s1", "wb"], ["b"], name="branch_b", pads=[1, 1, 1, 1]),
             onnx.helper.make_node("Concat", ["a", "b"], ["cat"], name="concat", axis=1),
             onnx.helper.make_node("Conv", ["cat", "w2"], ["y"], name="head")]
    g = onnx.helper.make_graph(nodes, "split", [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                               [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", opset)]), str(path))


@pytest.mark.parametrize("opset,form", [(13, "input"), (11, "attribute"), (11, "equal"), (18, "equal")])
def test_split_on_channels_follows_the_pruned_group(opset, form, tmp_path):
    src, out = tmp_path / "m.onnx", tmp_path / "p.onnx"
    split_model(src, opset, form)
    report = prune(src, out, "l1", 0.5)
    stem = next(g for g in report["groups"] if g["label"] == "stem")
    assert stem["channels_after"] == 4 and set(stem["members"]) >= {"stem", "branch_a", "branch_b"}
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    # The split sizes are the kept channels on each side of the original boundary.
    boundary = 3 if form != "equal" else 4
    kept = [c for c in range(8) if c not in stem["removed"]]
    want = [sum(c < boundary for c in kept), sum(c >= boundary for c in kept)]
    node = next(n for n in m.graph.node if n.op_type == "Split")
    consts = constants(m)
    got = list(next((a.ints for a in node.attribute if a.name == "split"), [])) or consts[node.input[1]].tolist()
    assert got == want
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    check_written(out, tmp_path, x)
    # Surgery through the Split: a source whose removed channels emit exactly zero computes
    # after pruning what it computed before.
    masked_path, masked_out = tmp_path / "masked.onnx", tmp_path / "masked_pruned.onnx"
    onnx.save(masked(src, report), str(masked_path))
    again = prune(masked_path, masked_out, "l1", 0.5)
    assert next(g for g in again["groups"] if g["label"] == "stem")["removed"] == stem["removed"]
    a, b = ort_outputs(masked_path, {"x": x})[0], ort_outputs(masked_out, {"x": x})[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


def test_reconstruct_refits_a_padded_3x3_convolution(tmp_path):
    """The im2col path: in split_model, branch_b is a padded 3x3 convolution reading the Split's
    second part. Its refit weights equal NumPy's ridge least squares over explicitly built
    columns (zero padding, stride 1)."""
    src, out = tmp_path / "m.onnx", tmp_path / "r.onnx"
    split_model(src, 13, "input")
    data = tmp_path / "d"
    data.mkdir()
    rng = np.random.default_rng(11)
    for k in range(12):
        np.save(data / f"s{k:02d}.npy", rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    plain = tmp_path / "plain.onnx"
    rp = prune(src, plain, "l1", 0.5)
    r = json.loads(ok("prune", src, "-o", out, "--method", "l1", "--ratio", "0.5", "--calib", data, "--reconstruct",
                      "--calib-rounds", 0, "--format", "json").stdout)
    assert "branch_b" in r["repair"]["reconstruction"]["layers"]
    # Columns from the pruned model's s1 (compress's own values, exposed as an output), target
    # from the unpruned model's branch_b output (its channels are not pruned).
    xs = ort.InferenceSession(str(with_outputs(plain, ["s1"], tmp_path, "px")), providers=["CPUExecutionProvider"])
    ys = ort.InferenceSession(str(with_outputs(src, ["b"], tmp_path, "py")), providers=["CPUExecutionProvider"])
    cols, targets, fold = [], [], []
    for n, f in enumerate(sorted(data.glob("*.npy"))):
        x = np.load(f)
        s1 = dict(zip([o.name for o in xs.get_outputs()], xs.run(None, {"x": x})))["s1"][0].astype(np.float64)
        y = dict(zip([o.name for o in ys.get_outputs()], ys.run(None, {"x": x})))["b"][0].astype(np.float64)
        c, h, w = s1.shape
        padded = np.pad(s1, ((0, 0), (1, 1), (1, 1)))
        for i in range(h):
            for j in range(w):
                cols.append(padded[:, i:i + 3, j:j + 3].ravel())
                targets.append(y[:, i, j])
                fold.append(n % 4)
    X = np.hstack([np.array(cols), np.ones((len(cols), 1))])
    # branch_b's own outputs are a group too: the refit targets its surviving channels.
    group = next(g for g in rp["groups"] if "branch_b" in g["producers"])
    out_kept = [k for k in range(6) if k not in group["removed"]]
    Y = np.array(targets)[:, out_kept]
    m = onnx.load(str(out))
    node = next(n for n in m.graph.node if n.name == "branch_b")
    c = constants(m)
    kept_c = s1.shape[0]
    w0 = constants(onnx.load(str(plain)))[node.input[1]].astype(np.float64)
    prior = np.vstack([w0.reshape(len(out_kept), kept_c * 9).T, np.zeros((1, len(out_kept)))])
    sol, lam = ridge_cv(X, Y, np.array(fold), prior)
    assert r["repair"]["reconstruction"]["lambdas"]["branch_b"] == pytest.approx(lam)
    np.testing.assert_allclose(c[node.input[1]].reshape(len(out_kept), kept_c * 9), sol[:-1].T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(c[node.input[2]], sol[-1], rtol=1e-3, atol=1e-4)
    check_written(out, tmp_path, np.load(sorted(data.glob("*.npy"))[0]))


# ---- grouped (non-depthwise) convolutions ------------------------------------------------------

def grouped_model(path, pad):
    """Conv(4→8) → Relu → Conv(8→12, group 4, 3x3) → Relu → Conv(12→5, 1x1): the stem's channels
    are read in 4 blocks of 2, the grouped conv makes 4 blocks of 3."""
    rng = np.random.default_rng(21)
    w = lambda name, *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.5, name)
    inits = [w("w0", 8, 4, 3, 3), w("b0", 8), w("wg", 12, 2, 3, 3), w("bg", 12), w("w2", 5, 12, 1, 1), w("b2", 5)]
    nodes = [onnx.helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="stem", pads=[1, 1, 1, 1]),
             onnx.helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             onnx.helper.make_node("Conv", ["r0", "wg", "bg"], ["cg"], name="grouped", group=4, pads=[pad] * 4),
             onnx.helper.make_node("Relu", ["cg"], ["rg"], name="relu1"),
             onnx.helper.make_node("Conv", ["rg", "w2", "b2"], ["y"], name="head")]
    side = 8 if pad else 6
    g = onnx.helper.make_graph(nodes, "grouped", [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8, 8])],
                               [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, side, side])], inits)
    onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(path))


@pytest.mark.parametrize("method", ["l1", "l2", "fpgm"])
def test_grouped_conv_prunes_the_same_count_from_every_convolution_group(method, tmp_path):
    src, out = tmp_path / "g.onnx", tmp_path / "p.onnx"
    grouped_model(src, 1)
    r = prune(src, out, method, 0.5)
    groups = {g["label"]: g for g in r["groups"]}
    assert sorted(groups) == ["grouped", "stem"] and [u["label"] for u in r["unprunable"]] == ["head"]
    c = constants(onnx.load(str(src)))
    # NumPy: the stem's channels are read by the grouped conv in 4 blocks of 2, so each block loses
    # the same positions: the position with the lowest mean normalized score over the blocks.
    s = criterion(method, filters(c["w0"], 0))
    s = (s / s.mean()).reshape(4, 2).mean(0)
    pos = int(np.argmin(s))
    assert groups["stem"]["removed"] == [b * 2 + pos for b in range(4)]
    # The grouped conv makes 4 blocks of 3: floor(12 * 0.5) = 6 asked, 6 // 4 = 1 from each block,
    # its lowest.
    s = criterion(method, filters(c["wg"], 0)).reshape(4, 3)
    assert groups["grouped"]["removed"] == [b * 3 + int(np.argmin(s[b])) for b in range(4)]
    m = onnx.load(str(out))
    gnode = next(n for n in m.graph.node if n.name == "grouped")
    assert next(a.i for a in gnode.attribute if a.name == "group") == 4
    assert constants(m)["wg"].shape == (8, 1, 3, 3)
    x = np.random.default_rng(3).standard_normal((2, 4, 8, 8)).astype(np.float32)
    check_written(out, tmp_path, x)
    check_counts(out, r)


@pytest.mark.parametrize("keep_biases", [False, True], ids=["zeroed", "constant_folded"])
def test_grouped_conv_surgery_is_exact_on_masked_channels(keep_biases, tmp_path):
    """Removed channels zeroed: pruning computes exactly what the masked model computes. With the
    biases kept the stem's removed channels emit constants, which the unpadded grouped conv folds
    into the bias of its own convolution group's outputs only."""
    src = tmp_path / "g.onnx"
    grouped_model(src, 0)
    plan = json.loads(ok("prune", src, "--method", "l1", "--ratio", "0.5", "--dry-run", "--format", "json").stdout)
    masked_path, out = tmp_path / "masked.onnx", tmp_path / "p.onnx"
    onnx.save(masked(src, plan, keep_biases=keep_biases), str(masked_path))
    report = prune(masked_path, out, "l1", 0.5)
    assert [g["removed"] for g in plan["groups"]] == [g["removed"] for g in report["groups"]]
    assert report["approximations"] == []
    x = np.random.default_rng(4).standard_normal((2, 4, 8, 8)).astype(np.float32)
    a, b = ort_outputs(masked_path, {"x": x})[0], ort_outputs(out, {"x": x})[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    assert np.abs(ort_outputs(src, {"x": x})[0] - a).max() > 1e-3
    check_written(out, tmp_path, x)


def test_grouped_conv_reading_part_of_a_group_is_left_whole(tmp_path):
    """A grouped conv reading a Concat of two groups cannot keep its blocks aligned: both groups
    are left whole with the reason."""
    rng = np.random.default_rng(2)
    w = lambda name, *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
    nodes = [onnx.helper.make_node("Conv", ["x", "wa"], ["a"], name="a"),
             onnx.helper.make_node("Conv", ["x", "wb"], ["b"], name="b"),
             onnx.helper.make_node("Concat", ["a", "b"], ["ab"], name="cat", axis=1),
             onnx.helper.make_node("Conv", ["ab", "wg"], ["g"], name="grouped", group=2),
             onnx.helper.make_node("Conv", ["g", "wh"], ["y"], name="head")]
    g = onnx.helper.make_graph(nodes, "part", [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                               [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
                               [w("wa", 4, 3, 1, 1), w("wb", 4, 3, 1, 1), w("wg", 6, 4, 1, 1), w("wh", 2, 6, 1, 1)])
    src = tmp_path / "part.onnx"
    onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(src))
    r = prune(src, tmp_path / "p.onnx", "l1", 0.5)
    whole = {u["label"]: u["reasons"] for u in r["unprunable"]}
    assert "only part of a group" in " ".join(whole["a"]) and "only part of a group" in " ".join(whole["b"])
    assert [g["label"] for g in r["groups"]] == ["grouped"]
    check_written(tmp_path / "p.onnx", tmp_path, rng.standard_normal((1, 3, 4, 4)).astype(np.float32))


# ---- sensitivity-guided ratios at a MAC budget ---------------------------------------------------

DEEP = FIXTURES / "digits_cnn_deep.onnx"  # four conv groups (16, 32, 32, 48 channels), no BN


def first_half(tmp):
    """Fixtures/digits' first 180 samples with their labels, as a folder."""
    d = tmp / "calib"
    d.mkdir()
    files = sorted((FIXTURES / "digits").glob("*.npy"))[:HALF]
    lines = (FIXTURES / "digits" / "labels.txt").read_text().splitlines()
    keep = {f.name for f in files}
    for f in files:
        (d / f.name).write_bytes(f.read_bytes())
    (d / "labels.txt").write_text("\n".join(l for l in lines if l.split()[0] in keep) + "\n")
    return d


def test_sensitivity_guided_ratios_beat_uniform_at_the_same_mac_budget(tmp_path):
    """Sensitivity on the first half of digits (l1, --max-drop 0.02) emits per-group ratios;
    `--target-macs 0.5 --ratios FILE` scales them by one factor to keep at most half the MACs,
    `--target-macs 0.5` alone searches one uniform ratio. On the other half, scored by ONNX
    Runtime, the guided model is at least as accurate with at most the uniform model's MACs
    (the MACs recounted from the written models)."""
    labels = {l.split()[0]: int(l.split()[1]) for l in (FIXTURES / "digits" / "labels.txt").read_text().splitlines()}
    held = sorted((FIXTURES / "digits").glob("*.npy"))[HALF:]
    emitted = tmp_path / "ratios.txt"
    ok("prune", DEEP, "--method", "l1", "--sensitivity", "--data", first_half(tmp_path), "--max-samples", HALF,
       "--emit-ratios", emitted, "--max-drop", "0.02", "--quiet")
    wanted = {l.split()[0]: float(l.split()[1]) for l in emitted.read_text().splitlines() if not l.startswith("#")}
    assert sorted(wanted) == ["conv1", "conv2", "conv3", "conv4"] and len(set(wanted.values())) > 1, wanted
    guided, uniform = tmp_path / "guided.onnx", tmp_path / "uniform.onnx"
    g = json.loads(ok("prune", DEEP, "-o", guided, "--method", "l1", "--target-macs", "0.5", "--ratios", emitted,
                      "--format", "json").stdout)
    u = json.loads(ok("prune", DEEP, "-o", uniform, "--method", "l1", "--target-macs", "0.5", "--format", "json").stdout)
    # One factor scales every emitted ratio (none reaches the 0.99 cap here).
    alpha = {k: g["ratios"][k] / v for k, v in wanted.items()}
    assert max(alpha.values()) - min(alpha.values()) < 1e-9, alpha
    _, mg = recount(guided)
    _, mu = recount(uniform)
    _, m0 = recount(DEEP)
    assert mg == g["totals"]["macs_after"] and mu == u["totals"]["macs_after"]
    assert mg <= 0.5 * m0 and mu <= 0.5 * m0 and mg <= mu, (mg / m0, mu / m0)
    ag, au = ort_accuracy(guided, held, labels), ort_accuracy(uniform, held, labels)
    assert ag >= au, (ag, au)
    check_written(guided, tmp_path, digits_batch())


def test_target_macs_with_all_zero_ratios_is_refused(tmp_path):
    zero = tmp_path / "zero.txt"
    zero.write_text("conv1 0\nconv2 0\n")
    out = tmp_path / "p.onnx"
    r = run_compress("prune", DEEP, "-o", out, "--method", "l1", "--target-macs", "0.5", "--ratios", zero)
    assert_clean_failure(r, "every ratio")
    assert not out.exists()
