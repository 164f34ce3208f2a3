"""The export-style reference models (`compress build-reference mobilenet_v3_small|
mobilenet_v3_large|efficientnet_b0`): written as torch.onnx.export writes them, valid ONNX,
and the executor's outputs equal ONNX Runtime's.

References are independent of compress: onnx.checker (full check), ONNX Runtime's outputs,
parameter counts summed with numpy over the initializers onnx decodes, compared with
torchvision's `sum(p.numel() for p in model.parameters())` (BN-kept build; BN running mean and
variance are buffers there).
"""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from conftest import run_compress

MODELS = {"mobilenet_v3_small": 2_542_856, "mobilenet_v3_large": 5_483_032, "efficientnet_b0": 5_288_548}
# Conv + Linear MACs without bias, recounted from torchvision's layer configuration; its docs
# publish them rounded as "GFLOPS" 0.06, 0.22 and 0.39.
MACS = {"mobilenet_v3_small": (56_510_400, 0.06), "mobilenet_v3_large": (216_589_760, 0.22),
        "efficientnet_b0": (385_814_752, 0.39)}


def build(tmp_path, arch, *extra):
    path = tmp_path / f"{arch}{'_'.join(extra)}.onnx"
    p = run_compress("build-reference", arch, "-o", path, *extra)
    assert p.returncode == 0, p.stderr
    return path


def ops(model):
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("bn", ["folded", "kept"])
@pytest.mark.parametrize("arch", MODELS)
def test_executor_matches_ort(tmp_path, arch, bn):
    """The default build (BN folded) at batch 1; the BN-kept build at batch 2."""
    path = build(tmp_path, arch, *(("--batch-norm", "kept") if bn == "kept" else ()))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 14
    assert ("BatchNormalization" in ops(model)) == (bn == "kept"), "folded by default, as an eval-mode export"

    batch = 1 if bn == "folded" else 2
    rng = np.random.default_rng(1)
    x, x2 = (rng.uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32) for _ in range(2))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ref, ref2 = (sess.run(None, {"input": v})[0] for v in (x, x2))
    assert ref.shape == (batch, 1000) and np.isfinite(ref).all()
    # The random weights keep the signal alive: the logits depend on the input far beyond the
    # tolerance below (otherwise they are the last biases and the comparison proves nothing).
    assert np.abs(ref - ref2).max() > 1e-2 * np.abs(ref).max(), "logits do not depend on the input"

    inp = tmp_path / "input_0.pb"
    inp.write_bytes(numpy_helper.from_array(x, "input").SerializeToString())
    out = tmp_path / "out"
    p = run_compress("_eval", path, "--threads", "2", "--inputs", inp, "--outputs-dir", out)
    assert p.returncode == 0, p.stderr
    t = onnx.TensorProto()
    t.ParseFromString((out / "output_0.pb").read_bytes())
    got = numpy_helper.to_array(t)
    assert got.shape == ref.shape
    err = float(np.abs(got - ref).max())
    assert err <= 1e-4 * float(np.abs(ref).max()), f"{arch}: max abs err {err:.3g}, max |ref| {np.abs(ref).max():.3g}"


def test_export_style_structure(tmp_path):
    small = onnx.load(str(build(tmp_path, "mobilenet_v3_small")))
    large = onnx.load(str(build(tmp_path, "mobilenet_v3_large")))
    effnet = onnx.load(str(build(tmp_path, "efficientnet_b0")))

    # Scalars in Constant nodes between the producing Conv and the Clip / Div that read them.
    o = ops(small)
    clip = o.index("Clip")
    conv = max(i for i in range(clip) if o[i] == "Conv")
    assert "Constant" in o[conv + 1:clip], o[conv:clip + 1]
    node = small.graph.node[clip]
    produced_at = {out: i for i, n in enumerate(small.graph.node) for out in n.output}
    for bound in node.input[1:]:
        assert small.graph.node[produced_at[bound]].op_type == "Constant" and conv < produced_at[bound] < clip
    assert o.count("Clip") == 9 and "HardSwish" not in o
    hs = [n for n in small.graph.node if n.op_type == "HardSigmoid"]
    assert hs and all({a.name: a.f for a in n.attribute} == pytest.approx({"alpha": 1 / 6, "beta": 0.5}) for n in hs)

    assert "HardSwish" in ops(large) and "HardSigmoid" in ops(large) and "Clip" not in ops(large)
    o = ops(effnet)
    assert "Sigmoid" in o and "HardSwish" not in o and "HardSigmoid" not in o
    sig = next(n for n in effnet.graph.node if n.op_type == "Sigmoid")
    assert any(n.op_type == "Mul" and set(n.input) == {sig.input[0], sig.output[0]} for n in effnet.graph.node), "SiLU as x * Sigmoid(x)"

    for m in (small, large, effnet):
        inits = {i.name for i in m.graph.initializer}
        assert any(n.op_type == "Identity" and n.input[0] in inits for n in m.graph.node), "a weight read through Identity"
        o = ops(m)
        assert o[o.index("Flatten") + 1] == "Gemm"
        assert o.count("Conv") > 50 and any(
            n.op_type == "Conv" and any(a.name == "kernel_shape" and list(a.ints) == [5, 5] for a in n.attribute) and
            any(a.name == "group" and a.i > 1 for a in n.attribute) for n in m.graph.node), "5x5 depthwise"


@pytest.mark.parametrize("arch,want", MODELS.items())
def test_parameter_counts_match_torchvision(tmp_path, arch, want):
    kept = onnx.load(str(build(tmp_path, arch, "--batch-norm", "kept", "--zero-weights")))
    running = {n.input[k] for n in kept.graph.node if n.op_type == "BatchNormalization" for k in (3, 4)}
    params = sum(numpy_helper.to_array(t).size for t in kept.graph.initializer if t.name not in running)
    assert params == want
    folded = onnx.load(str(build(tmp_path, arch, "--zero-weights")))
    bn_channels = sum(numpy_helper.to_array(t).size for t in kept.graph.initializer if t.name.endswith(".bn.scale"))
    assert sum(numpy_helper.to_array(t).size for t in folded.graph.initializer) == want - bn_channels


@pytest.mark.parametrize("arch", MODELS)
def test_profile_through_the_cli(tmp_path, arch):
    """`compress profile` on the BN-kept build gives torchvision's figures; on the default
    (folded) build the same MACs."""
    macs, gflops = MACS[arch]
    assert abs(macs / 1e9 - gflops) <= 0.005
    for extra, params in ((("--batch-norm", "kept"), MODELS[arch]), ((), None)):
        p = run_compress("profile", build(tmp_path, arch, "--zero-weights", *extra), "--format", "json")
        assert p.returncode == 0, p.stderr
        t = json.loads(p.stdout)["totals"]
        assert t["macs"] == macs
        if params is not None:
            assert t["params"] == params
