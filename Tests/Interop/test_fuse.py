"""`compress fuse` on the fixtures and the onnx package's `light` models: the written model passes
the full checker, ONNX Runtime's outputs on it match the original's, BatchNormalization after a
Conv is gone (unless a precondition keeps it), the verification gate refuses to write when
the tolerance cannot be met, and the fused model has no more nodes than onnxsim's and onnxslim's
simplification of the same model (run here, in the same test) except where PEER_EXCEPTIONS says
why. The per-pass differential tests are in test_fuse_passes.py."""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import conformance
from conftest import FIXTURES, assert_clean_failure, run_compress

LIGHT = sorted((Path(conformance.DATA) / "light").glob("light_*.onnx"))


def is_float_model(path):
    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    runtime = [i for i in m.graph.input if i.name not in inits]
    return bool(runtime) and all(i.type.tensor_type.elem_type == TensorProto.FLOAT for i in runtime)


# The fixtures that are float models (float inputs); custom_if.onnx has a custom operator.
FLOAT_FIXTURES = [p for p in sorted(FIXTURES.glob("*.onnx")) if is_float_model(p) and p.name != "custom_if.onnx"]

# Models where compress fuse may write more nodes than a peer, with the reason (Docs/fuse.md,
# "Against onnxsim and onnxslim"). Empty: on every model here compress writes no more nodes.
PEER_EXCEPTIONS: dict[str, str] = {}


def peer_node_counts(path):
    """Nodes in onnxsim's and onnxslim's output for the model at path (in-process, not saved)."""
    import onnxsim
    import onnxslim
    sim, ok_ = onnxsim.simplify(onnx.load(str(path)))
    assert ok_, f"onnxsim could not check its result on {path.name}"
    with contextlib.redirect_stdout(io.StringIO()):
        slim = onnxslim.slim(onnx.load(str(path)))
    return {"onnxsim": len(sim.graph.node), "onnxslim": len(slim.graph.node)}


def assert_no_more_nodes_than_peers(path, ours):
    peers = peer_node_counts(path)
    if path.name in PEER_EXCEPTIONS:
        return
    for peer, n in peers.items():
        assert ours <= n, f"{path.name}: compress fuse writes {ours} nodes, {peer} {n}"


def test_light_models_are_there():
    assert len(LIGHT) == 9, "the onnx wheel's light models are missing"


def ok(*args):
    p = run_compress(*args)
    assert p.returncode == 0, p.stderr
    return p


def ort_run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def random_feeds(path, seed=0):
    rng = np.random.default_rng(seed)
    m = onnx.load(str(path))
    inits = {t.name for t in m.graph.initializer}
    feeds = {}
    for i in m.graph.input:
        if i.name in inits:
            continue
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim]
        feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32)
    return feeds


def op_count(path, op):
    return sum(n.op_type == op for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("fixture", ["digits_cnn_bn.onnx", "digits_cnn_paddle.onnx"])
def test_fixtures(fixture, tmp_path):
    src, out = FIXTURES / fixture, tmp_path / "f.onnx"
    r = json.loads(ok("fuse", src, "-o", out, "--format", "json").stdout)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert r["verified"] and op_count(out, "BatchNormalization") == 0 and op_count(src, "BatchNormalization") == 4
    assert {p["pass"]: p["rewrites"] for p in r["passes"]}["BatchNormIntoConv"] == 4
    assert r["nodes_after"] == len(m.graph.node) == 13 and r["nodes_before"] == len(onnx.load(str(src)).graph.node)
    assert r["traffic_bytes_after"] < r["traffic_bytes_before"]
    if fixture == "digits_cnn_paddle.onnx":
        assert op_count(out, "Constant") == 0 and op_count(out, "Identity") == 0
    x = np.concatenate([np.load(f) for f in sorted((FIXTURES / "digits").glob("*.npy"))[:16]])
    a, b = ort_run(src, {"input": x})[0], ort_run(out, {"input": x})[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


@pytest.mark.parametrize("model", LIGHT, ids=[p.stem for p in LIGHT])
def test_light_models(model, tmp_path):
    out = tmp_path / "f.onnx"
    r = json.loads(ok("fuse", model, "-o", out, "--samples", 1, "--format", "json").stdout)
    assert r["verified"]
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert r["nodes_after"] == len(m.graph.node) <= r["nodes_before"]
    feeds = random_feeds(model)
    for a, b in zip(ort_run(model, feeds), ort_run(out, feeds)):
        scale = max(float(np.abs(a).max()), 1e-30)
        assert np.abs(a.astype(np.float64) - b).max() <= 1e-4 * scale
    assert_no_more_nodes_than_peers(model, len(m.graph.node))


@pytest.mark.parametrize("fixture", FLOAT_FIXTURES, ids=[p.stem for p in FLOAT_FIXTURES])
def test_fixtures_against_peers(fixture, tmp_path):
    out = tmp_path / "f.onnx"
    r = json.loads(ok("fuse", fixture, "-o", out, "--format", "json").stdout)
    assert r["verified"]
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    feeds = random_feeds(fixture)
    for a, b in zip(ort_run(fixture, feeds), ort_run(out, feeds)):
        scale = max(float(np.abs(a).max()), 1e-30)
        assert np.abs(a.astype(np.float64) - b).max() <= 1e-4 * scale
    assert_no_more_nodes_than_peers(fixture, len(m.graph.node))


def test_float_fixtures_are_found():
    assert len(FLOAT_FIXTURES) >= 8, [p.name for p in FLOAT_FIXTURES]


def test_skip_and_passes(tmp_path):
    src = FIXTURES / "digits_cnn_bn.onnx"
    out = tmp_path / "f.onnx"
    r = json.loads(ok("fuse", src, "-o", out, "--skip", "BatchNormIntoConv", "--format", "json").stdout)
    assert op_count(out, "BatchNormalization") == 4 and "BatchNormIntoConv" not in [p["pass"] for p in r["passes"]]
    r = json.loads(ok("fuse", src, "-o", out, "--passes", "batchnormintoconv", "--format", "json").stdout)
    assert [p["pass"] for p in r["passes"]] == ["BatchNormIntoConv"] and op_count(out, "BatchNormalization") == 0
    assert_clean_failure(run_compress("fuse", src, "-o", tmp_path / "x.onnx", "--skip", "NoSuchPass"), "NoSuchPass", "BatchNormIntoConv")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("named", [False, True], ids=["unnamed-temporary", "named-temporary"])
def test_verification_gate(named, tmp_path):
    # The output is written and flushed while verification runs (Docs/fuse.md): a failed
    # verification must still leave nothing — no output, no temporary file (also where
    # temporaries have names, COMPRESS_TEST_NAMED_TEMPORARIES) — and an existing file untouched.
    import os
    env = {**os.environ, **({"COMPRESS_TEST_NAMED_TEMPORARIES": "1"} if named else {})}
    src, out = FIXTURES / "digits_cnn_bn.onnx", tmp_path / "f.onnx"
    r = run_compress("fuse", src, "-o", out, "--rtol", 0, "--atol", 0, env=env)
    assert r.returncode == 3 and "verification failed" in r.stderr and "nothing written" in r.stderr
    assert "DIFFERENT" in r.stdout and not out.exists() and list(tmp_path.iterdir()) == []
    out.write_bytes(b"previous")
    r = run_compress("fuse", src, "-o", out, "--rtol", 0, "--atol", 0, env=env)
    assert r.returncode == 3 and out.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [out]
    r = run_compress("fuse", src, "-o", out, "--rtol", 0, "--atol", 0, "--force", env=env)
    assert r.returncode == 3 and list(tmp_path.iterdir()) == [out]
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    # Verification passes: the file written during it is the one put in place, byte-identical
    # from run to run.
    again = tmp_path / "g.onnx"
    ok("fuse", src, "-o", again)
    assert again.read_bytes() == out.read_bytes() and sorted(tmp_path.iterdir()) == [out, again]


def test_conv_read_twice_keeps_its_batchnorm(tmp_path):
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")]
    for name, v in (("g", 1.5), ("b", 0.1), ("m", 0.2), ("v", 2.0)):
        init.append(numpy_helper.from_array(np.full(4, v, np.float32), name))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["bn", "r"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], init)
    src, out = tmp_path / "m.onnx", tmp_path / "f.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(src))
    r = json.loads(ok("fuse", src, "-o", out, "--format", "json").stdout)
    assert {p["pass"]: p["rewrites"] for p in r["passes"]}["BatchNormIntoConv"] == 0
    assert op_count(out, "BatchNormalization") == 1


def repvgg_block(path, groups=1, identity="bn", order="3-1-id", stride=1, extra_reader=False):
    """Relu(BN(Conv3x3(x)) + BN(Conv1x1(x)) [+ BN(x)]) with non-zero conv biases, non-default
    epsilon and trained-looking BN statistics; `order` chooses the nesting of the Adds."""
    rng = np.random.default_rng(3)
    c = 8
    init, nodes = [], []
    def t(name, a):
        init.append(numpy_helper.from_array(a.astype(np.float32), name))
        return name
    def bn(src, dst, tag):
        nodes.append(helper.make_node("BatchNormalization", [src, t(tag + ".g", rng.uniform(0.5, 1.5, c)), t(tag + ".b", rng.normal(0, .1, c)),
                                      t(tag + ".m", rng.normal(0, .1, c)), t(tag + ".v", rng.uniform(0.5, 2, c))], [dst], name=tag, epsilon=1e-3))
    nodes.append(helper.make_node("Conv", ["x", t("w3", rng.normal(0, .2, (c, c // groups, 3, 3))), t("b3", rng.normal(0, .1, c))], ["c3"],
                                  name="conv3", pads=[1, 1, 1, 1], group=groups, strides=[stride, stride]))
    bn("c3", "n3", "bn3")
    nodes.append(helper.make_node("Conv", ["x", t("w1", rng.normal(0, .2, (c, c // groups, 1, 1))), t("b1", rng.normal(0, .1, c))], ["c1"],
                                  name="conv1", group=groups, strides=[stride, stride]))
    bn("c1", "n1", "bn1")
    terms = ["n3", "n1"]
    if identity == "bn":
        bn("x", "nid", "bnid")
        terms.append("nid")
    elif identity == "x":
        terms.append("x")
    if order == "id-1-3":
        terms = terms[::-1]
    acc = terms[0]
    for k, term in enumerate(terms[1:]):
        nodes.append(helper.make_node("Add", [acc, term], [f"s{k}"], name=f"add{k}"))
        acc = f"s{k}"
    nodes.append(helper.make_node("Relu", [acc], ["y"], name="relu"))
    side = 6 // stride
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, side, side])]
    if extra_reader:
        outs.append(helper.make_tensor_value_info("n1", TensorProto.FLOAT, [1, c, side, side]))
    g = helper.make_graph(nodes, "repvgg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 6, 6])], outs, init)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("identity,order", [("bn", "3-1-id"), ("bn", "id-1-3"), ("x", "3-1-id"), (None, "3-1-id")])
def test_repvgg_block_becomes_one_conv(groups, identity, order, tmp_path):
    src, out = tmp_path / "block.onnx", tmp_path / "fused.onnx"
    repvgg_block(src, groups, identity, order)
    r = json.loads(ok("fuse", src, "-o", out, "--format", "json").stdout)
    assert {p["pass"]: p["rewrites"] for p in r["passes"]}["RepVGGMerge"] == 1
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert [n.op_type for n in m.graph.node] == ["Conv", "Relu"]
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 8, 6, 6)).astype(np.float32)}
    a, b = ort_run(src, feeds)[0], ort_run(out, feeds)[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


@pytest.mark.parametrize("case", ["stride-2", "branch-read-twice"])
def test_repvgg_preconditions(case, tmp_path):
    src, out = tmp_path / "block.onnx", tmp_path / "fused.onnx"
    if case == "stride-2":
        # Two strided convolution branches still merge (no identity branch, which needs stride 1).
        repvgg_block(src, identity=None, stride=2)
        r = json.loads(ok("fuse", src, "-o", out, "--format", "json").stdout)
        assert {p["pass"]: p["rewrites"] for p in r["passes"]}["RepVGGMerge"] == 1
        feeds = {"x": np.random.default_rng(2).standard_normal((1, 8, 6, 6)).astype(np.float32)}
        a, b = ort_run(src, feeds)[0], ort_run(out, feeds)[0]
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    else:
        # A branch whose output is also a graph output is left alone.
        repvgg_block(src, extra_reader=True)
        r = json.loads(ok("fuse", src, "-o", out, "--format", "json").stdout)
        assert {p["pass"]: p["rewrites"] for p in r["passes"]}["RepVGGMerge"] == 0
        assert sum(n.op_type == "Conv" for n in onnx.load(str(out)).graph.node) == 2


def test_profile_fused_is_the_profile_of_the_fused_model(tmp_path):
    src, out = FIXTURES / "digits_cnn_paddle.onnx", tmp_path / "f.onnx"
    ok("fuse", src, "-o", out)
    a = json.loads(ok("profile", src, "--fused", "--format", "json").stdout)["totals"]
    b = json.loads(ok("profile", out, "--format", "json").stdout)["totals"]
    c = json.loads(ok("profile", src, "--format", "json").stdout)["totals"]
    assert a == b
    assert a["traffic_bytes"] < c["traffic_bytes"] and a["macs"] == c["macs"]


def test_inference_dropout_is_removed(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Dropout", ["r"], ["d"], name="drop"),
             helper.make_node("Sigmoid", ["d"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    src, out = tmp_path / "m.onnx", tmp_path / "f.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(src))
    r = json.loads(ok("fuse", src, "-o", out, "--format", "json").stdout)
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["Relu", "Sigmoid"] and r["verified"]
