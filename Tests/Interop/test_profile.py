"""`compress profile` against independent references.

- Per-node MACs of every Conv, ConvTranspose, Gemm and MatMul equal a NumPy computation from
  the shapes ONNX Runtime produces when it runs the model (fixtures, ../shared/models, the onnx
  package's light models).
- Totals against onnx-tool 1.0.1: every difference is one of the conventions or defects listed
  in Docs/profile.md, and each defect case has a test showing the compress figure is right.
- Hand-computed traffic and intensity; a QDQ Conv's int8 weight bytes; torchvision's published
  figures through the CLI; budgets exit 3; JSON validates against the schema in Docs/profile.md;
  the roofline SVG renders.
"""
import glob
import json
import math
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("COMPRESS_BIN", os.path.join(ROOT, ".build", "release", "compress"))
SHARED_MODELS = os.path.join(os.path.dirname(ROOT), "shared", "models")
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
DOC = os.path.join(ROOT, "Docs", "profile.md")


def run(*args, check=True):
    p = subprocess.run([BIN, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"compress {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def profile_json(path, *args):
    return json.loads(run("profile", path, "--format", "json", *args).stdout)


@pytest.fixture(scope="module")
def tmp():
    d = tempfile.mkdtemp(prefix="profile-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def save(nodes, inputs, outputs, inits, path, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def zeros(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.zeros(shape, dtype), name)


def node_label(n):
    return n.name if n.name else f"{n.op_type}({n.output[0] if n.output else ''})"


# ---------------------------------------------------------------- models for the per-node check

def reference_models():
    out = [os.path.join(ROOT, "Fixtures", f) for f in ("digits_cnn.onnx", "digits_cnn_bn.onnx")]
    out.append(os.path.join(ROOT, "Fixtures", "external", "model.onnx"))
    out += sorted(glob.glob(os.path.join(SHARED_MODELS, "*.onnx")))
    out += sorted(glob.glob(os.path.join(LIGHT, "*.onnx")))
    return out


COUNTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Weight positions of Docs/profile.md ("Parameters"), for the ops of the models checked here
# (BatchNormalization's 3 and 4 are the buffers), and the elementwise ops whose constant float
# inputs of more than one element are parameters.
WEIGHT_SLOTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
                "BatchNormalization": (1, 2, 3, 4), "InstanceNormalization": (1, 2), "PRelu": (1,)}
ELEMENTWISE_WEIGHTS = ("Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean")


def ort_shapes(path):
    """Runs the model in ONNX Runtime with every input and output of the counted nodes exposed,
    and returns {value name: shape} as ONNX Runtime produced it (initializers: their dims)."""
    import onnxruntime as ort
    m = onnx.load(path)
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    wanted = []
    for n in m.graph.node:
        if n.op_type in COUNTED_OPS or n.op_type in WEIGHT_SLOTS or n.op_type in ELEMENTWISE_WEIGHTS:
            wanted += [v for v in list(n.input) + list(n.output) if v and v not in inits]
    existing = {o.name for o in m.graph.output}
    for v in dict.fromkeys(wanted):
        if v not in existing:
            m.graph.output.append(onnx.ValueInfoProto(name=v))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}[i.type]
        feeds[i.name] = np.random.default_rng(0).standard_normal(dims).astype(dtype)
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, feeds)
    shapes = dict(inits)
    shapes.update({n: list(v.shape) for n, v in zip(names, values)})
    shapes.update({k: list(v.shape) for k, v in feeds.items()})
    return m, shapes


def attr(n, name, default):
    for a in n.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def numpy_macs(n, shapes):
    """MACs of one node from ONNX Runtime's shapes, written out from the definitions."""
    prod = lambda xs: int(np.prod(xs, dtype=np.int64))
    if n.op_type == "Conv":
        x, w, y = shapes[n.input[0]], shapes[n.input[1]], shapes[n.output[0]]
        group = attr(n, "group", 1)
        return y[0] * y[1] * prod(y[2:]) * (x[1] // group) * prod(w[2:])
    if n.op_type == "ConvTranspose":
        x, w, y = shapes[n.input[0]], shapes[n.input[1]], shapes[n.output[0]]
        group = attr(n, "group", 1)
        return x[0] * x[1] * prod(x[2:]) * (y[1] // group) * prod(w[2:])
    if n.op_type == "Gemm":
        a, y = shapes[n.input[0]], shapes[n.output[0]]
        k = a[0] if attr(n, "transA", 0) else a[1]
        return y[0] * y[1] * k
    if n.op_type == "MatMul":
        a, b = shapes[n.input[0]], shapes[n.input[1]]
        m_ = a[-2] if len(a) >= 2 else 1
        n_ = b[-1] if len(b) >= 2 else 1
        batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])) if len(a) >= 2 and len(b) >= 2 else ()
        return prod(batch) * m_ * n_ * a[-1]
    raise ValueError(n.op_type)


@pytest.mark.parametrize("path", reference_models(), ids=os.path.basename)
def test_per_node_macs_match_numpy_from_onnxruntime_shapes(path):
    # Committed fixtures and globbed files: an absent one is a broken checkout, not a skip.
    assert os.path.exists(path), f"{path} is absent"
    m, shapes = ort_shapes(path)
    report = profile_json(path)
    assert report["warnings"] == [], report["warnings"]
    ours = {(n["scope"], n["name"]): n for n in report["nodes"]}
    checked = 0
    for n in m.graph.node:
        if n.op_type not in COUNTED_OPS:
            continue
        row = ours[("", node_label(n))]
        assert row["op"] == n.op_type
        assert row["output_shape"] == shapes[n.output[0]], node_label(n)
        assert row["macs"] == numpy_macs(n, shapes), node_label(n)
        checked += 1
    assert checked > 0


# ---------------------------------------------------------------- onnx-tool

def onnx_tool_profile(path, feeds=None):
    import onnx_tool  # in the Makefile's PY_PACKAGES (onnx-tool==1.0.1): missing fails, not skips
    model = onnx_tool.Model(path, {"verbose": False})
    g = model.graph
    g.graph_reorder_nodes()
    g.shape_infer(feeds)
    g.profile()
    return g


def first_input_feed(path):
    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    i = [x for x in m.graph.input if x.name not in inits][0]
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim]
    return {i.name: np.zeros(dims, np.float32)}




@pytest.mark.parametrize("path", reference_models(), ids=os.path.basename)
def test_totals_against_onnx_tool_differ_only_by_documented_conventions(path):
    """Per op type, onnx-tool's MACs = compress's + the bias additions onnx-tool counts as MACs
    (Conv: output elements; Gemm: M·N). onnx-tool's parameters = the elements of every
    initializer a node reads (shape constants and BN statistics included, weights made by
    Constant/ConstantOfShape nodes left out); compress's parameters + buffers = the elements
    of the constants in weight positions, wherever they come from."""
    # Committed fixtures and globbed files: an absent one is a broken checkout, not a skip.
    assert os.path.exists(path), f"{path} is absent"
    g = onnx_tool_profile(path, first_input_feed(path))
    m, shapes = ort_shapes(path)
    report = profile_json(path)
    ours = {n["name"]: n for n in report["nodes"] if n["scope"] == ""}
    tool = {}
    for n in g.nodemap.values():
        tool[n.op_type] = tool.get(n.op_type, 0) + int(n.macs[0])
    for op in COUNTED_OPS:
        nodes = [n for n in m.graph.node if n.op_type == op]
        if not nodes:
            continue
        bias = sum(int(np.prod(shapes[n.output[0]])) for n in nodes if len(n.input) > 2 and n.input[2])
        mine = sum(ours[node_label(n)]["macs"] for n in nodes)
        if op == "ConvTranspose":
            continue  # onnx-tool's ConvTranspose defect, tested below
        assert tool.get(op, 0) == mine + bias, (op, tool.get(op), mine, bias)

    inits = {i.name: int(np.prod(i.dims, dtype=np.int64)) for i in m.graph.initializer}
    consumed = {v for n in m.graph.node for v in n.input if v in inits}
    assert int(g.params) == sum(inits[v] for v in consumed)
    # Constants: initializers, Constant outputs, and outputs of nodes whose inputs all are.
    constant = set(inits)
    float_init = {i.name for i in m.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)}
    for n in m.graph.node:
        live = [v for v in n.input if v]
        if n.op_type == "Constant" or (live and all(v in constant for v in live)):
            constant.update(n.output)
    weights = {}
    for n in m.graph.node:
        slots = WEIGHT_SLOTS.get(n.op_type, ())
        if n.op_type in ELEMENTWISE_WEIGHTS:
            slots = [k for k, v in enumerate(n.input) if v in constant and int(np.prod(shapes[v])) > 1
                     and (v not in inits or v in float_init)]
        for slot in slots:
            if slot < len(n.input) and n.input[slot] in constant:
                weights[n.input[slot]] = int(np.prod(shapes[n.input[slot]], dtype=np.int64))
    assert report["totals"]["params"] + report["totals"]["buffers"] == sum(weights.values())


def test_onnx_tool_defect_convtranspose_stride2(tmp):
    """A 3-D ConvTranspose, stride 2, Cin = Cout = 4, kernel 2³, input 4³: every input element
    meets (Cout/group)·∏k = 32 weights: 1·4·64·32 = 8,192 MACs. onnx-tool 1.0.1 multiplies the
    output volume instead: 8× too high."""
    p = save([helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[2, 2, 2], kernel_shape=[2, 2, 2],
                               pads=[0] * 6, dilations=[1, 1, 1], output_padding=[0, 0, 0])],
             [vi("x", [1, 4, 4, 4, 4])], [vi("y", [1, 4, 8, 8, 8])], [zeros("W", [4, 4, 2, 2, 2])],
             os.path.join(tmp, "convt3d.onnx"))
    m, shapes = ort_shapes(p)
    truth = numpy_macs(m.graph.node[0], shapes)
    assert truth == 8192
    assert profile_json(p)["totals"]["macs"] == truth
    g = onnx_tool_profile(p)
    assert int(list(g.nodemap.values())[0].macs[0]) == 8 * truth


def test_onnx_tool_defect_3d_maxpool(tmp):
    """3-D MaxPool 2×2×2 over [1,4,8,8,8]: 256 outputs × 8 comparisons = 2,048 FLOPs.
    onnx-tool 1.0.1 multiplies by the first kernel axis only: 512, 4× too low."""
    p = save([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2], strides=[2, 2, 2])],
             [vi("x", [1, 4, 8, 8, 8])], [vi("y", [1, 4, 4, 4, 4])], [], os.path.join(tmp, "maxpool3d.onnx"))
    import onnxruntime as ort
    y = ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"x": np.zeros((1, 4, 8, 8, 8), np.float32)})[0]
    truth = y.size * 8
    row = profile_json(p)["nodes"][0]
    assert (row["flops"], row["macs"]) == (truth, 0)
    g = onnx_tool_profile(p)
    assert int(list(g.nodemap.values())[0].macs[0]) == truth // 4


@pytest.mark.parametrize("layout", [0, 1])
def test_lstm_counts_every_step(tmp, layout):
    """LSTM, seq 10, batch 2, H 16, I 8: 10·2·4·16·(8+16) = 30,720 MACs in either layout. The
    REFERENCES note says onnx-tool leaves out the time steps; 1.0.1 does multiply its gate
    products by seq·batch here, and its larger figure is its convention of adding the bias,
    activation and gate arithmetic into MACs (its B term alone is 8H·seq·batch)."""
    H, I, S, B = 16, 8, 10, 2
    xs = [S, B, I] if layout == 0 else [B, S, I]
    ys = [S, 1, B, H] if layout == 0 else [B, S, 1, H]
    p = save([helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "yh"], hidden_size=H, layout=layout)],
             [vi("x", xs)], [vi("y", ys), vi("yh", [B, 1, H] if layout else [1, B, H])],
             [zeros("W", [1, 4 * H, I]), zeros("R", [1, 4 * H, H]), zeros("B", [1, 8 * H])],
             os.path.join(tmp, f"lstm{layout}.onnx"), opset=14)
    if layout == 0:
        import onnxruntime as ort
        y = ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"x": np.zeros(xs, np.float32)})[0]
        assert list(y.shape) == ys
    # (ONNX Runtime 1.32 and the ONNX reference evaluator both refuse layout 1; ys is the
    # spec's Y shape [batch, seq, directions, hidden].)
    truth = S * B * 4 * H * (I + H)
    row = profile_json(p)["nodes"][0]
    assert row["macs"] == truth
    assert row["output_shape"] == ys
    if layout == 0:
        g = onnx_tool_profile(p)
        tool = int(list(g.nodemap.values())[0].macs[0])
        gemm = (4 * H * I + 4 * H * H) * B * S
        assert gemm == truth
        assert tool > truth and tool - truth >= 8 * H * S * B


# ---------------------------------------------------------------- hand-computed figures

def test_traffic_and_intensity_by_hand(tmp):
    """Conv 3×3 3→4 + bias, pad 1 on [1,3,8,8]: 6,912 MACs; 14,080 FLOPs; weights 448 B,
    input 768 B, output 1,024 B: traffic 2,240 B, intensity 6.2857.
    Depthwise 3×3 on [1,8,8,8]: 4,608 MACs; 9,216 FLOPs; 288 + 2,048 + 2,048 = 4,384 B.
    Gemm [2,16]·[8,16]ᵀ + [8]: 256 MACs; 528 FLOPs; 544 + 128 + 64 = 736 B.
    Add [1,8,4,4] + [1,8,4,4]: 128 FLOPs; 1,024 + 512 = 1,536 B."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["d", "wd"], ["dw_out"], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Gemm", ["a", "wg", "bg"], ["g"], name="gemm", transB=1),
        helper.make_node("Add", ["p", "q"], ["s"], name="add"),
    ]
    p = save(nodes, [vi("x", [1, 3, 8, 8]), vi("d", [1, 8, 8, 8]), vi("a", [2, 16]), vi("p", [1, 8, 4, 4]), vi("q", [1, 8, 4, 4])],
             [vi("c", [1, 4, 8, 8]), vi("dw_out", [1, 8, 8, 8]), vi("g", [2, 8]), vi("s", [1, 8, 4, 4])],
             [zeros("w", [4, 3, 3, 3]), zeros("b", [4]), zeros("wd", [8, 1, 3, 3]), zeros("wg", [8, 16]), zeros("bg", [8])],
             os.path.join(tmp, "hand.onnx"))
    rows = {n["name"]: n for n in profile_json(p)["nodes"]}
    expect = {
        "conv": (6912, 14080, 448, 768, 1024),
        "dw": (4608, 9216, 288, 2048, 2048),
        "gemm": (256, 528, 544, 128, 64),
        "add": (0, 128, 0, 1024, 512),
    }
    for name, (macs, flops, w, i, o) in expect.items():
        r = rows[name]
        assert (r["macs"], r["flops"], r["weight_bytes"], r["input_bytes"], r["output_bytes"]) == (macs, flops, w, i, o), name
        assert r["traffic_bytes"] == w + i + o
        assert math.isclose(r["intensity"], flops / (w + i + o), rel_tol=1e-12)


def test_qdq_conv_reads_int8_weights(tmp):
    """x → Q → DQ → Conv(DQ(int8 W, per-channel), DQ(int32 B)) → Q → DQ: the Conv reads 192 B
    of int8 activations, 108 B of int8 weights + 16 B scales + 4 B zero points, 16 B of int32
    bias + 16 B scales, and writes 256 B of int8; its precision is int8."""
    s = numpy_helper.from_array(np.array(0.05, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    wq = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.int8), "wq")
    ws = numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws")
    wz = numpy_helper.from_array(np.zeros(4, np.int8), "wz")
    bq = numpy_helper.from_array(np.zeros(4, np.int32), "bq")
    bs = numpy_helper.from_array(np.full(4, 0.0005, np.float32), "bs")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="dq_w", axis=0),
        helper.make_node("DequantizeLinear", ["bq", "bs"], ["bd"], name="dq_b", axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["y", "s", "z"], ["yq"], name="q_out"),
        helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["out"], name="dq_out"),
    ]
    p = save(nodes, [vi("x", [1, 3, 8, 8])], [vi("out", [1, 4, 8, 8])], [s, z, wq, ws, wz, bq, bs],
             os.path.join(tmp, "qdq.onnx"), opset=13)
    import onnxruntime as ort
    ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"x": np.zeros((1, 3, 8, 8), np.float32)})
    rows = {n["name"]: n for n in profile_json(p, "--device", "nvidia-t4")["nodes"]}
    conv = rows["conv"]
    assert conv["weight_bytes"] == 108 + 16 + 4 + 16 + 16
    assert conv["input_bytes"] == 192 and conv["output_bytes"] == 256
    assert conv["params"] == 112 and conv["macs"] == 6912
    assert conv["precision"] == "int8" and conv["roofline"]["precision"] == "int8"
    assert {k: rows[k]["status"] for k in rows} == {
        "q_in": "counted", "dq_in": "fused", "dq_w": "constant", "dq_b": "constant",
        "conv": "counted", "q_out": "fused", "dq_out": "counted"}


# ---------------------------------------------------------------- published figures, CLI

PUBLISHED = {
    "resnet18": (1_814_073_344, 11_689_512),
    "resnet50": (4_089_184_256, 25_557_032),
    "mobilenet_v2": (300_774_272, 3_504_872),
    "vgg16": (15_470_264_320, 138_357_544),
    "squeezenet1_1": (349_151_936, 1_235_496),
}


@pytest.fixture(scope="module")
def resnet18(tmp):
    p = os.path.join(tmp, "resnet18.onnx")
    run("build-reference", "resnet18", "-o", p, "--zero-weights")
    return p


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_published_figures_through_the_cli(tmp, arch):
    p = os.path.join(tmp, f"{arch}.onnx")
    if not os.path.exists(p):
        run("build-reference", arch, "-o", p, "--zero-weights")
    t = profile_json(p)["totals"]
    assert (t["macs"], t["params"]) == PUBLISHED[arch]


def test_budget_breach_exits_3_and_prints_the_report(resnet18):
    p = run("profile", resnet18, "--max-gmacs", "1", "--max-params", "2e7", check=False)
    assert p.returncode == 3
    assert "MACs        1,814,073,344" in p.stdout
    assert "budget exceeded: --max-gmacs 1 (resnet18.onnx: 1.814)" in p.stderr
    assert "max-params" not in p.stderr
    assert run("profile", resnet18, "--max-gmacs", "2", "--max-params", "2e7").returncode == 0
    p = run("profile", resnet18, "--max-time-ms", "0.001", "--device", "raspberry-pi-5", "--format", "json", check=False)
    assert p.returncode == 3
    budgets = json.loads(p.stdout)["budgets"]
    assert budgets[0]["budget"] == "max-time-ms" and budgets[0]["breached"] is True
    # Usage errors keep ArgumentParser's status.
    assert run("profile", resnet18, "--max-time-ms", "5", check=False).returncode == 64
    assert run("profile", resnet18, "--device", "no-such-gpu", check=False).returncode == 64
    assert run("profile", resnet18, "--device", "jetson-nano", "--precision", "int8", check=False).returncode == 64
    bad = run("profile", "/nonexistent.onnx", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "/nonexistent.onnx" in bad.stderr


def schemas():
    text = open(DOC).read()
    found = dict(re.findall(r"<!-- schema: (\S+) -->\s*```json\n(.*?)```", text, re.S))
    return {k: json.loads(v) for k, v in found.items()}


def validate(value, schema, root, registry, path="$"):
    """A small JSON Schema validator for the keywords Docs/profile.md uses."""
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref.startswith("#/"):
            target = root
            for part in ref[2:].split("/"):
                target = target[part]
            return validate(value, target, root, registry, path)
        return validate(value, registry[ref], registry[ref], registry, path)
    if "const" in schema:
        assert value == schema["const"], f"{path}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    if "oneOf" in schema:
        ok = 0
        for s in schema["oneOf"]:
            try:
                validate(value, s, root, registry, path)
                ok += 1
            except AssertionError:
                pass
        assert ok == 1, f"{path}: matches {ok} of oneOf"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        check = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
                 "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
                 "null": lambda v: v is None,
                 "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
                 "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert any(check[t](value) for t in types), f"{path}: {value!r} is not {types}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            assert value >= schema["minimum"], path
        if "maximum" in schema:
            assert value <= schema["maximum"], path
        if "exclusiveMinimum" in schema:
            assert value > schema["exclusiveMinimum"], path
    if isinstance(value, dict):
        for k in schema.get("required", []):
            assert k in value, f"{path}: missing {k}"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                validate(v, props[k], root, registry, f"{path}.{k}")
            elif extra is False:
                raise AssertionError(f"{path}: unexpected key {k}")
            elif isinstance(extra, dict):
                validate(v, extra, root, registry, f"{path}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            validate(v, schema["items"], root, registry, f"{path}[{i}]")


def test_json_validates_against_the_documented_schema(resnet18, tmp):
    registry = schemas()
    assert set(registry) == {"compress.profile/1", "compress.profile-compare/1"}
    single = registry["compress.profile/1"]
    for args in ([], ["--device", "nvidia-t4"], ["--by", "op", "--top", "3", "--sort", "traffic"],
                 ["--peak-gflops", "100", "--bandwidth-gbs", "10", "--max-gmacs", "9"]):
        doc = profile_json(resnet18, *args)
        validate(doc, single, single, registry)
    custom_if = os.path.join(ROOT, "Fixtures", "custom_if.onnx")
    doc = profile_json(custom_if)
    validate(doc, single, single, registry)
    assert any("not counted" in w and "MyOp" in w for w in doc["warnings"])
    assert doc["totals"]["uncounted_nodes"] == 2
    top = profile_json(resnet18, "--top", "3", "--sort", "params")
    assert [n["params"] for n in top["nodes"]] == sorted((n["params"] for n in profile_json(resnet18)["nodes"]), reverse=True)[:3]
    pair = json.loads(run("profile", resnet18, os.path.join(ROOT, "Fixtures", "digits_cnn.onnx"), "--format", "json",
                          "--device", "nvidia-t4").stdout)
    compare = registry["compress.profile-compare/1"]
    validate(pair, compare, compare, registry)


def test_two_models_side_by_side(tmp):
    """Halving a Conv's output channels halves its MACs and parameters: the comparison says
    -50.0% on that node, and names the node that only exists in B."""
    def model(cout, extra, path):
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])]
        outs = [vi("y", [1, cout, 6, 6])]
        if extra:
            nodes.append(helper.make_node("Relu", ["y"], ["r"], name="relu"))
            outs = [vi("r", [1, cout, 6, 6])]
        return save(nodes, [vi("x", [1, 3, 8, 8])], outs, [zeros("w", [cout, 3, 3, 3])], os.path.join(tmp, path))
    a, b = model(8, False, "a.onnx"), model(4, True, "b.onnx")
    out = run("profile", a, b).stdout
    line = next(l for l in out.splitlines() if l.startswith("conv "))
    assert line.count("-50.0%") == 2
    assert "only in B: relu (Relu)" in out
    doc = json.loads(run("profile", a, b, "--format", "json").stdout)
    macs = next(m for m in doc["totals"] if m["metric"] == "macs")
    assert (macs["a"], macs["b"], macs["change"]) == (8 * 36 * 27, 4 * 36 * 27, -0.5)
    csv = run("profile", a, b, "--format", "csv").stdout.splitlines()
    assert csv[1].startswith("conv,,Conv,Conv,7776,3888,")


def test_roofline_chart_renders(resnet18, tmp):
    svg = os.path.join(tmp, "roofline.svg")
    run("profile", resnet18, "--device", "jetson-orin-nano-8gb", "--plot", svg)
    text = open(svg).read()
    assert text.startswith("<svg") and text.rstrip().endswith("</svg>")
    assert text.count("<title>") >= 40  # one point per node with arithmetic
    import xml.dom.minidom
    xml.dom.minidom.parseString(text)
    # The chart must render with a real SVG renderer (librsvg, in the Makefile's APT_PACKAGES):
    # a missing renderer fails, it does not skip.
    assert shutil.which("rsvg-convert") is not None, \
        "rsvg-convert is not installed: apt-get install librsvg2-bin (make deps installs it)"
    png = os.path.join(tmp, "roofline.png")
    r = subprocess.run(["rsvg-convert", "-o", png, svg], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), f"rsvg-convert failed ({r.returncode}): {r.stderr}"
    data = open(png, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    with Image.open(png) as im:
        assert im.size == (980, 620)
        rgb = np.asarray(im.convert("RGBA").convert("RGB"), dtype=np.int16)
    # Drawn, not blank: a background color plus lines, points and text in several colors,
    # spread over the canvas.
    background = np.array([int(v) for v in np.median(rgb.reshape(-1, 3), axis=0)])
    ink = np.abs(rgb - background).sum(axis=2) > 60
    assert 0.01 < ink.mean() < 0.6, f"{ink.mean():.2%} of pixels differ from the background"
    colors = {tuple(c) for c in rgb[ink][:: max(1, int(ink.sum()) // 5000)]}
    assert len(colors) >= 4, f"only {len(colors)} ink colors"
    rows, cols = np.nonzero(ink)
    assert rows.max() - rows.min() > 620 // 2 and cols.max() - cols.min() > 980 // 2, "the drawing covers a corner only"


def test_devices_are_listed_with_sources():
    doc = json.loads(run("profile", "--list-devices", "--format", "json").stdout)
    assert len(doc) >= 10
    for d in doc:
        assert set(d["sources"]) >= set(d["peak_gflops"]) | {"bandwidth"}, d["name"]
    table = run("profile", "--list-devices").stdout
    assert "raspberry-pi-5" in table and "datasheet" in table


def test_dynamic_shapes_are_pinned_with_input(tmp):
    """Attention scores Q·Kᵀ with a symbolic sequence length S: without --input the error names
    the input and the flag; with --input q=1x4x32x16 (and k) MACs = 4·32·32·16, as ONNX Runtime's
    shapes give."""
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
             helper.make_node("Softmax", ["scores"], ["p"], name="softmax", axis=-1)]
    p = save(nodes, [vi("q", [1, 4, "S", 16]), vi("k", [1, 4, "S", 16])], [vi("p", [1, 4, "S", "S"])], [],
             os.path.join(tmp, "attention.onnx"))
    bad = run("profile", p, check=False)
    assert bad.returncode == 1 and "--input q=" in bad.stderr and bad.stderr.count("\n") == 1
    doc = profile_json(p, "--input", "q=1x4x32x16", "--input", "k=1x4x32x16")
    rows = {n["name"]: n for n in doc["nodes"]}
    import onnxruntime as ort
    x = np.zeros((1, 4, 32, 16), np.float32)
    scores = ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"q": x, "k": x})[0]
    assert rows["scores"]["macs"] == scores.size * 16 == 4 * 32 * 32 * 16
    assert rows["softmax"]["flops"] == 5 * scores.size
    assert rows["kt"]["flops"] == 0 and rows["kt"]["traffic_bytes"] == 2 * x.nbytes
