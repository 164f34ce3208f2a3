"""Differential tests of every `compress fuse` pass on small graphs: the fused model passes the
full checker, ONNX Runtime gives the same outputs on it as on the original (1e-5 of the output's
scale; ONNX Runtime is the reference, not compress), the node count falls as expected, and each
do-not-apply guard leaves its node alone and lists it in the report's `left_alone`."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_compress

RNG = np.random.default_rng(7)


def ok(*args):
    p = run_compress(*args)
    assert p.returncode == 0, p.stderr
    return p


def model(nodes, inputs, outputs, inits, opset=13):
    """inputs/outputs: [(name, shape)] float32; inits: {name: array}."""
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def bn_params(prefix, c):
    """Trained-looking BN statistics (γ ≠ 1, β ≠ 0, mean ≠ 0, var ≠ 1)."""
    return {prefix + ".g": RNG.uniform(0.5, 1.5, c).astype(np.float32), prefix + ".b": RNG.normal(0, .2, c).astype(np.float32),
            prefix + ".m": RNG.normal(0, .2, c).astype(np.float32), prefix + ".v": RNG.uniform(0.3, 2, c).astype(np.float32)}


def bn(x, y, prefix, eps=1e-3, **attrs):
    return helper.make_node("BatchNormalization", [x] + [prefix + s for s in (".g", ".b", ".m", ".v")], [y], name=prefix,
                            epsilon=eps, **attrs)


def fuse(tmp_path, m, *extra):
    src, out = tmp_path / "m.onnx", tmp_path / "f.onnx"
    onnx.save(m, str(src))
    r = json.loads(ok("fuse", src, "-o", out, "--format", "json", *extra).stdout)
    f = onnx.load(str(out))
    onnx.checker.check_model(f, full_check=True)
    return src, out, f, r


def same_in_ort(src, out, shapes, seed=1):
    rng = np.random.default_rng(seed)
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(run(src), run(out)):
        assert a.shape == b.shape
        assert np.abs(a.astype(np.float64) - b).max() <= 1e-5 * max(np.abs(a).max(), 1e-6)


def rewrites(r):
    return {p["pass"]: p["rewrites"] for p in r["passes"]}


def ops(f):
    return [n.op_type for n in f.graph.node]


@pytest.mark.parametrize("groups,bias", [(1, True), (1, False), (2, True), (8, True)])
def test_batchnorm_into_conv(groups, bias, tmp_path):
    c = 8
    inits = {"w": RNG.normal(0, .3, (c, c // groups, 3, 3)).astype(np.float32), **bn_params("bn", c)}
    if bias:
        inits["b"] = RNG.normal(0, .3, c).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], pads=[1, 1, 1, 1], group=groups),
             bn("c", "y", "bn", eps=1e-2)]
    src, out, f, r = fuse(tmp_path, model(nodes, [("x", [2, c, 6, 6])], [("y", [2, c, 6, 6])], inits))
    assert ops(f) == ["Conv"] and rewrites(r)["BatchNormIntoConv"] == 1
    same_in_ort(src, out, {"x": [2, c, 6, 6]})


@pytest.mark.parametrize("groups,bias,stride", [(1, True, 2), (2, True, 2), (4, False, 1)])
def test_batchnorm_into_conv_transpose(groups, bias, stride, tmp_path):
    cin, cout = 8, 12
    inits = {"w": RNG.normal(0, .3, (cin, cout // groups, 3, 3)).astype(np.float32), **bn_params("bn", cout)}
    if bias:
        inits["b"] = RNG.normal(0, .3, cout).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if bias else []), ["c"], group=groups, strides=[stride, stride]),
             bn("c", "y", "bn", eps=1e-4)]
    side = (5 - 1) * stride + 3
    src, out, f, r = fuse(tmp_path, model(nodes, [("x", [1, cin, 5, 5])], [("y", [1, cout, side, side])], inits))
    assert ops(f) == ["ConvTranspose"] and rewrites(r)["BatchNormIntoConvTranspose"] == 1
    same_in_ort(src, out, {"x": [1, cin, 5, 5]})


@pytest.mark.parametrize("trans_b,c_shape", [(0, [6]), (1, [1, 6]), (1, None), (0, [1])])
def test_batchnorm_into_gemm(trans_b, c_shape, tmp_path):
    k, m = 5, 6
    inits = {"B": RNG.normal(0, .5, (m, k) if trans_b else (k, m)).astype(np.float32), **bn_params("bn", m)}
    ins = ["a", "B"]
    if c_shape:
        inits["C"] = RNG.normal(0, .5, c_shape).astype(np.float32)
        ins.append("C")
    nodes = [helper.make_node("Gemm", ins, ["g"], transB=trans_b, alpha=0.7, beta=1.3), bn("g", "y", "bn")]
    src, out, f, r = fuse(tmp_path, model(nodes, [("a", [3, k])], [("y", [3, m])], inits))
    assert ops(f) == ["Gemm"] and rewrites(r)["BatchNormIntoGemm"] == 1
    same_in_ort(src, out, {"a": [3, k]})


def test_batchnorm_into_matmul_becomes_gemm(tmp_path):
    inits = {"B": RNG.normal(0, .5, (5, 6)).astype(np.float32), **bn_params("bn", 6)}
    nodes = [helper.make_node("MatMul", ["a", "B"], ["g"]), bn("g", "y", "bn")]
    src, out, f, r = fuse(tmp_path, model(nodes, [("a", [3, 5])], [("y", [3, 6])], inits))
    assert ops(f) == ["Gemm"] and rewrites(r)["BatchNormIntoGemm"] == 1
    same_in_ort(src, out, {"a": [3, 5]})


@pytest.mark.parametrize("where,rank", [("after-add", 4), ("input", 4), ("input", 2), ("after-add", 3)])
def test_lone_batchnorm_becomes_mul_add(where, rank, tmp_path):
    c = 6
    shape = [2, c, 4, 5][:rank]
    nodes = [helper.make_node("Add", ["x", "z"], ["s"])] if where == "after-add" else []
    nodes.append(bn("s" if where == "after-add" else "x", "y", "bn", eps=0.1))
    inputs = [("x", shape)] + ([("z", shape)] if where == "after-add" else [])
    src, out, f, r = fuse(tmp_path, model(nodes, inputs, [("y", shape)], bn_params("bn", c)))
    assert rewrites(r)["BatchNormToMulAdd"] == 1 and ops(f)[-2:] == ["Mul", "Add"] and "BatchNormalization" not in ops(f)
    scale = next(numpy_helper.to_array(t) for t in f.graph.initializer if t.name.endswith("#scale"))
    assert list(scale.shape) == [c] + [1] * (rank - 2)
    same_in_ort(src, out, dict(inputs))


def test_mul_add_into_conv_and_batchnorm(tmp_path):
    """Caffe2's BN + scale layer: Conv → BN → Mul → Add becomes one Conv; a lone BN → Mul → Add
    (after a Concat) becomes one Mul and one Add."""
    c = 4
    inits = {"w": RNG.normal(0, .3, (c, c, 3, 3)).astype(np.float32), "b": RNG.normal(0, .3, c).astype(np.float32),
             **bn_params("bn1", c), **bn_params("bn2", 2 * c),
             "s1": RNG.uniform(.5, 2, (c, 1, 1)).astype(np.float32), "t1": RNG.normal(0, 1, (1, c, 1, 1)).astype(np.float32),
             "s2": RNG.uniform(.5, 2, (2 * c, 1, 1)).astype(np.float32), "t2": RNG.normal(0, 1, (2 * c, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), bn("c", "n1", "bn1"),
             helper.make_node("Mul", ["n1", "s1"], ["m1"]), helper.make_node("Add", ["t1", "m1"], ["a1"]),
             helper.make_node("Concat", ["a1", "x"], ["cat"], axis=1), bn("cat", "n2", "bn2"),
             helper.make_node("Mul", ["n2", "s2"], ["m2"]), helper.make_node("Add", ["m2", "t2"], ["y"])]
    src, out, f, r = fuse(tmp_path, model(nodes, [("x", [1, c, 5, 5])], [("y", [1, 2 * c, 5, 5])], inits))
    assert ops(f) == ["Conv", "Concat", "Mul", "Add"]
    assert rewrites(r)["MulAddIntoConv"] == 4 and rewrites(r)["BatchNormToMulAdd"] == 1
    same_in_ort(src, out, {"x": [1, c, 5, 5]})


def test_constant_folding_of_weights(tmp_path):
    """A weight computed in the graph (ConstantOfShape, Cast, Transpose, Unsqueeze of a bias) is
    folded with the executor's kernels; the model then is one Conv."""
    w16 = RNG.normal(0, .3, (3, 3, 4, 2)).astype(np.float16)  # stored [kh, kw, cin, cout] in float16
    shape = numpy_helper.from_array(np.array([2], np.int64))
    nodes = [helper.make_node("Cast", ["w16"], ["w32"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["w32"], ["w"], perm=[3, 2, 0, 1]),
             helper.make_node("Constant", [], ["shape"], value=shape),
             helper.make_node("ConstantOfShape", ["shape"], ["b"], value=numpy_helper.from_array(np.array([0.25], np.float32))),
             helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])]
    src, out, f, r = fuse(tmp_path, model(nodes, [("x", [1, 4, 5, 5])], [("y", [1, 2, 5, 5])], {"w16": w16}))
    assert ops(f) == ["Conv"] and rewrites(r)["ConstantFolding"] == 3
    same_in_ort(src, out, {"x": [1, 4, 5, 5]})


def shape_arithmetic_model():
    """Flatten written as exporters write it: Reshape(x, Concat(Gather(Shape(x), 0), [-1]))."""
    g = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
         helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]), helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
         helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12])],
        [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "axes"),
         numpy_helper.from_array(np.array([-1], np.int64), "minus1")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_shape_arithmetic_folds_only_with_known_shapes(tmp_path):
    # Dynamic batch, nothing pinned: the Shape chain stays (a batch of 1 is not baked in).
    src, out, f, r = fuse(tmp_path, shape_arithmetic_model())
    assert ops(f) == ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Relu"] and rewrites(r)["ConstantFolding"] == 0
    same_in_ort(src, out, {"x": [3, 3, 4]})
    # Pinned with --input: the chain folds to a constant shape for that batch.
    src, out, f, r = fuse(tmp_path, shape_arithmetic_model(), "--input", "x=2x3x4")
    assert ops(f) == ["Reshape", "Relu"] and rewrites(r)["ConstantFolding"] == 4
    assert [numpy_helper.to_array(t).tolist() for t in f.graph.initializer if t.name == f.graph.node[0].input[1]] == [[2, -1]]
    same_in_ort(src, out, {"x": [2, 3, 4]})


def test_noop_reshape_and_transpose_pairs(tmp_path):
    inits = {"same": np.array([2, 3, 4], np.int64), "flat": np.array([6, 4], np.int64), "back": np.array([4, 6], np.int64)}
    nodes = [helper.make_node("Reshape", ["x", "same"], ["r0"]),                  # to its own shape: removed
             helper.make_node("Transpose", ["r0"], ["t1"], perm=[1, 2, 0]),
             helper.make_node("Transpose", ["t1"], ["t2"], perm=[2, 0, 1]),        # composes to the identity: both go
             helper.make_node("Transpose", ["t2"], ["t3"], perm=[0, 2, 1]),
             helper.make_node("Transpose", ["t3"], ["t4"], perm=[1, 0, 2]),        # merged into one Transpose
             helper.make_node("Reshape", ["t4", "flat"], ["r1"]),
             helper.make_node("Reshape", ["r1", "back"], ["r2"]),                  # Reshape of a Reshape: one
             helper.make_node("Relu", ["r2"], ["y"])]
    src, out, f, r = fuse(tmp_path, model(nodes, [("x", [2, 3, 4])], [("y", [4, 6])], inits))
    assert ops(f) == ["Transpose", "Reshape", "Relu"] and rewrites(r)["ReshapeTransposeElimination"] == 4
    assert list(f.graph.node[0].attribute[0].ints) == [2, 0, 1]
    same_in_ort(src, out, {"x": [2, 3, 4]})


def test_identity_and_dropout_with_unread_mask(tmp_path):
    nodes = [helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Dropout", ["i"], ["d", "mask"], ratio=0.5),
             helper.make_node("Relu", ["d"], ["y"])]
    src, out, f, r = fuse(tmp_path, model(nodes, [("x", [2, 3])], [("y", [2, 3])], {}, opset=9))
    assert ops(f) == ["Relu"] and rewrites(r)["IdentityElimination"] == 2
    same_in_ort(src, out, {"x": [2, 3]})


def test_equal_subexpressions_are_computed_once(tmp_path):
    w = RNG.normal(0, .3, (4, 4, 1, 1)).astype(np.float32)
    inits = {"w1": w, "w2": w.copy(), "w3": w + 1}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Conv", ["x", "w2"], ["b"]),
             helper.make_node("Conv", ["x", "w3"], ["c"]), helper.make_node("Sum", ["a", "b", "c"], ["y"])]
    src, out, f, r = fuse(tmp_path, model(nodes, [("x", [1, 4, 3, 3])], [("y", [1, 4, 3, 3])], inits), "--skip", "RepVGGMerge")
    assert ops(f) == ["Conv", "Conv", "Sum"] and rewrites(r)["CommonSubexpressionElimination"] == 2  # w2 ≡ w1, then b ≡ a
    same_in_ort(src, out, {"x": [1, 4, 3, 3]})


def test_unused_initializers_are_dropped(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    src, out, f, r = fuse(tmp_path, model(nodes, [("x", [2])], [("y", [2])], {"unused": np.ones(3, np.float32)}))
    assert len(f.graph.initializer) == 0 and rewrites(r)["DeadCodeElimination"] >= 1


@pytest.mark.parametrize("case", ["second-reader", "training-mode", "runtime-scale", "conv-output-is-graph-output"])
def test_guards_leave_the_batchnorm_and_say_why(case, tmp_path):
    c = 4
    inits = {"w": RNG.normal(0, .3, (c, c, 3, 3)).astype(np.float32), **bn_params("bn", c)}
    inputs, outputs = [("x", [2, c, 5, 5])], [("y", [2, c, 5, 5])]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), bn("c", "n", "bn")]
    opset = 13
    if case == "second-reader":
        nodes += [helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Add", ["n", "r"], ["y"])]
        reason = "another reader"
    elif case == "training-mode":
        nodes[1] = bn("c", "y", "bn", training_mode=1)
        nodes[1].output.extend(["running_mean", "running_var"])  # (opset 15 wants all three in training mode)
        opset, reason = 15, "training_mode"
    elif case == "runtime-scale":
        inputs.append(("bn.g", [c]))
        del inits["bn.g"]
        nodes[1] = bn("c", "y", "bn")
        reason = "not a float32 constant"
    else:
        nodes[1] = bn("c", "y", "bn")
        outputs.append(("c", [2, c, 5, 5]))
        reason = "graph output"
    m = model(nodes, inputs, outputs, inits, opset=opset)
    src, out, f, r = fuse(tmp_path, m)
    assert ops(f).count("BatchNormalization") == 1 and rewrites(r)["BatchNormIntoConv"] == 0
    assert [e["node"] for e in r["left_alone"]] == ["BatchNormalization 'bn'"] and reason in r["left_alone"][0]["reason"]
    if case != "training-mode":  # (ONNX Runtime's inference sessions do not run training-mode BN)
        same_in_ort(src, out, dict(inputs))
