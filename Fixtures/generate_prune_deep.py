"""digits_cnn_deep.onnx: a plain four-convolution CNN on sklearn's 8x8 digits, for `compress
prune`'s sensitivity-guided vs uniform comparison.

digits_cnn.onnx has two channel groups of 8 and 16 channels: too few and too coarse for two
pruning plans to keep the same fraction of MACs. This network has four groups of different
widths and depths (MACs per group differ), as a sensitivity allocation needs:

  conv1 3x3 1->16, Relu; conv2 3x3 16->32, Relu, MaxPool 2; conv3 3x3 32->32, Relu;
  conv4 3x3 32->48, Relu, MaxPool 2; Flatten; fc Gemm 192->10

No BatchNormalization (what a BN-folded export looks like). Trained with generate.py's numpy
primitives and loop (im2col convolutions, hand-written backward, Adam, cosine decay, seed 0) on
the same training split of sklearn's digits; its test split is Fixtures/digits. About 120 kB.

Run from Fixtures/: python generate_prune_deep.py   (needs requirements.txt: scikit-learn)
"""
from __future__ import annotations

import os

# Single-threaded BLAS before numpy loads (as generate.py): bit-for-bit repeatable training.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
from pathlib import Path

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate as G  # noqa: E402

WIDTHS = (16, 32, 32, 48)


def init_params(rng: np.random.Generator) -> dict:
    p, cin = {}, 1
    for i, c in enumerate(WIDTHS, 1):
        p[f"conv{i}_w"] = rng.normal(0.0, np.sqrt(2.0 / (cin * 9)), size=(c, cin, 3, 3))
        p[f"conv{i}_b"] = rng.normal(0.0, 0.05, size=c)
        cin = c
    p["fc_w"] = rng.normal(0.0, np.sqrt(1.0 / (cin * 4)), size=(10, cin * 4))
    p["fc_b"] = np.zeros(10)
    return p


def forward(p: dict, x: np.ndarray, train: bool = False, stats=None):
    cache, h = {}, x
    for i in range(1, 5):
        z, cache[f"conv{i}"] = G.conv_fwd(h, p[f"conv{i}_w"], p[f"conv{i}_b"])
        cache[f"pre{i}"] = z
        h = np.maximum(z, 0.0)
        if i in (2, 4):
            h, cache[f"pool{i}"] = G.maxpool_fwd(h)
    cache["hshape"] = h.shape
    cache["flat"] = h.reshape(h.shape[0], -1)
    return cache["flat"] @ p["fc_w"].T + p["fc_b"], cache, {}


def backward(p: dict, cache: dict, dlogits: np.ndarray) -> dict:
    g = {"fc_w": dlogits.T @ cache["flat"], "fc_b": dlogits.sum(axis=0)}
    dh = (dlogits @ p["fc_w"]).reshape(cache["hshape"])
    for i in range(4, 0, -1):
        if i in (2, 4):
            dh = G.maxpool_bwd(dh, cache[f"pool{i}"])
        dz = dh * (cache[f"pre{i}"] > 0)
        dh, g[f"conv{i}_w"], g[f"conv{i}_b"] = G.conv_bwd(dz, p[f"conv{i}_w"], cache[f"conv{i}"])
    return g


def build(p: dict) -> onnx.ModelProto:
    nodes, inits, x = [], [], "input"
    for i in range(1, 5):
        w, b = f"conv{i}.weight", f"conv{i}.bias"
        inits += [G.init(w, G.f32(p[f"conv{i}_w"])), G.init(b, G.f32(p[f"conv{i}_b"]))]
        nodes.append(helper.make_node("Conv", [x, w, b], [f"conv{i}_out"], name=f"conv{i}", kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"conv{i}_out"], [f"relu{i}_out"], name=f"relu{i}"))
        x = f"relu{i}_out"
        if i in (2, 4):
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}_out"], name=f"pool{i}", kernel_shape=[2, 2],
                                          strides=[2, 2]))
            x = f"pool{i}_out"
    nodes.append(helper.make_node("Flatten", [x], ["flatten_out"], name="flatten", axis=1))
    inits += [G.init("fc.weight", G.f32(p["fc_w"])), G.init("fc.bias", G.f32(p["fc_b"]))]
    nodes.append(helper.make_node("Gemm", ["flatten_out", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "digits_cnn_deep",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], initializer=inits)
    return G.finish_model(graph)


def main() -> None:
    G.init_params, G.forward, G.backward = init_params, forward, backward  # generate.train_cnn trains this network
    ds = G.load_digits()
    x = (ds.data.astype(np.float64) / 16.0).reshape(-1, 1, 8, 8)
    y = ds.target.astype(np.int64)
    xtr, xte, ytr, yte = G.train_test_split(x, y, test_size=0.2, stratify=y, random_state=G.SEED)
    # The test split is Fixtures/digits: check that it is the same data.
    labels = (HERE / "digits" / "labels.txt").read_text().split()
    assert [int(v) for v in labels[1::2]] == list(yte), "Fixtures/digits is not this test split"
    np.testing.assert_allclose(np.load(HERE / "digits" / "sample_0000.npy")[0], G.f32(xte[0]))
    p, _ = G.train_cnn(xtr, ytr)
    path = HERE / "digits_cnn_deep.onnx"
    G.save_checked(build(p), path)
    logits_np, _, _ = forward(p, xte)
    lg = G.ort_session(path).run(["logits"], {"input": G.f32(xte)})[0]
    np.testing.assert_allclose(lg, logits_np, atol=1e-3, rtol=0)
    acc = float((lg.argmax(1) == yte).mean())
    print(f"digits_cnn_deep.onnx: ORT test accuracy {acc:.4f}, {path.stat().st_size} bytes")
    assert acc >= 0.9 and path.stat().st_size < 1_000_000


if __name__ == "__main__":
    main()
