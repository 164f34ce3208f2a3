#!/usr/bin/env python3
"""Generate the ONNX test fixtures used by the `compress` test suite.

Run (from the repository root):

    python3 -m venv /tmp/fixvenv
    /tmp/fixvenv/bin/pip install -r Fixtures/requirements.txt
    /tmp/fixvenv/bin/python Fixtures/generate.py

Everything is deterministic (fixed seeds, single-threaded BLAS) and every
output is rewritten from scratch on each run. Outputs (all under Fixtures/):

  digits_cnn_bn.onnx     trained CNN on sklearn's 8x8 digits, BatchNormalization
                         nodes kept (opset 13, inference form)
  digits_cnn.onnx        the same network with every BN folded into its Conv
  digits/                the test split: sample_NNNN.npy ([1,1,8,8] float32)
                         and labels.txt ("sample_NNNN.npy <label>")
  digits_expected.json   ORT test accuracy of both digits models
  external/              model.onnx + model.onnx.data (external initializers),
                         input_0.npy / output_0.npy reference I/O
  custom_if.onnx         structure round-trip model: custom-domain op with many
                         attribute kinds, If with subgraphs, Loop, model-local
                         FunctionProto, metadata_props, doc_strings, value_info
                         (checked with full_check=False: it uses an op of an
                         unregistered domain; it is not meant to run)
  digits_cnn_paddle.onnx digits_cnn_bn.onnx as paddle2onnx/older exporters write
                         it (-1 dims, weights in Constant nodes; generate_paddle_style.py)
  typed_fields.onnx      runnable model whose initializers use the typed
                         TensorProto fields (float_data, int64_data,
                         int32_data, double_data) instead of raw_data, plus
                         typed_fields_input_0.npy / typed_fields_output_0.npy

Training approach for the digits CNN: real backpropagation written by hand in
numpy (im2col convolutions, depthwise conv, BatchNorm in training mode with
batch statistics, max-pool, softmax cross-entropy), optimised with Adam in
float64. After training, the BN statistics are re-estimated exactly over the
whole training set (one full-batch forward pass in training mode), so the
inference-mode network reproduces the full-batch training-mode function on
the training data. `--gradcheck` runs a numerical gradient check of the
hand-written backward pass and exits.
"""

from __future__ import annotations

import os

# Single-threaded BLAS: keeps floating-point reductions bit-for-bit repeatable.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
OPSET = 13
IR_VERSION = 8
SEED = 0
BN_EPS = 1e-5
PRODUCER = "compress-fixtures"
PRODUCER_VERSION = "1.0"


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------


def f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def init(name: str, arr) -> TensorProto:
    """Initializer stored as raw_data (the usual exporter layout)."""
    return numpy_helper.from_array(np.asarray(arr), name=name)


def finish_model(graph: onnx.GraphProto, extra_opsets=(), functions=()) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", OPSET)] + [
        helper.make_opsetid(d, v) for d, v in extra_opsets
    ]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        functions=list(functions),
    )
    model.ir_version = IR_VERSION
    return model


def ort_session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def save_checked(model: onnx.ModelProto, path: Path, full_check: bool = True) -> None:
    onnx.checker.check_model(model, full_check=full_check)
    onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path), full_check=full_check)


# ----------------------------------------------------------------------------
# numpy CNN with hand-written backward pass
# ----------------------------------------------------------------------------


def im2col(x: np.ndarray, k: int, pad: int) -> np.ndarray:
    """[N,C,H,W] -> [N,C,k*k,H*W] for stride 1, 'same' padding (pad = k//2)."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    cols = np.stack(
        [xp[:, :, i : i + ho, j : j + wo] for i in range(k) for j in range(k)], axis=2
    )
    return cols.reshape(n, c, k * k, ho * wo)


def col2im(dcols: np.ndarray, shape, k: int, pad: int) -> np.ndarray:
    n, c, h, w = shape
    ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dcols.dtype)
    dcols = dcols.reshape(n, c, k * k, ho, wo)
    idx = 0
    for i in range(k):
        for j in range(k):
            dxp[:, :, i : i + ho, j : j + wo] += dcols[:, :, idx]
            idx += 1
    return dxp[:, :, pad : pad + h, pad : pad + w]


def conv_fwd(x, w, b):
    """Dense conv, stride 1, same padding. w: [O,C,k,k]."""
    o, c, k, _ = w.shape
    pad = k // 2
    cols = im2col(x, k, pad)  # [N,C,kk,P]
    n = x.shape[0]
    cols2 = cols.reshape(n, c * k * k, -1)  # [N,K,P]
    out = np.matmul(w.reshape(o, -1), cols2) + b[None, :, None]
    return out.reshape(n, o, x.shape[2], x.shape[3]), (x.shape, cols2)


def conv_bwd(dout, w, cache):
    xshape, cols2 = cache
    o, c, k, _ = w.shape
    n = dout.shape[0]
    d = dout.reshape(n, o, -1)  # [N,O,P]
    dw = np.einsum("nop,nkp->ok", d, cols2).reshape(w.shape)
    db = d.sum(axis=(0, 2))
    dcols = np.matmul(w.reshape(o, -1).T, d)  # [N,K,P]
    dx = col2im(dcols.reshape(n, c, k * k, -1), xshape, k, k // 2)
    return dx, dw, db


def dwconv_fwd(x, w, b):
    """Depthwise conv (group = channels). w: [C,1,k,k]."""
    c, _, k, _ = w.shape
    cols = im2col(x, k, k // 2)  # [N,C,kk,P]
    out = np.einsum("nckp,ck->ncp", cols, w.reshape(c, k * k)) + b[None, :, None]
    return out.reshape(x.shape), (x.shape, cols)


def dwconv_bwd(dout, w, cache):
    xshape, cols = cache
    c, _, k, _ = w.shape
    n = dout.shape[0]
    d = dout.reshape(n, c, -1)
    dw = np.einsum("nckp,ncp->ck", cols, d).reshape(w.shape)
    db = d.sum(axis=(0, 2))
    dcols = np.einsum("ck,ncp->nckp", w.reshape(c, k * k), d)
    dx = col2im(dcols, xshape, k, k // 2)
    return dx, dw, db


def bn_fwd_train(x, g, beta):
    mu = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    inv = 1.0 / np.sqrt(var + BN_EPS)
    xhat = (x - mu[None, :, None, None]) * inv[None, :, None, None]
    y = g[None, :, None, None] * xhat + beta[None, :, None, None]
    return y, (xhat, inv, g), mu, var


def bn_fwd_eval(x, g, beta, mean, var):
    inv = 1.0 / np.sqrt(var + BN_EPS)
    return (x - mean[None, :, None, None]) * (g * inv)[None, :, None, None] + beta[None, :, None, None]


def bn_bwd(dy, cache):
    xhat, inv, g = cache
    m = dy.shape[0] * dy.shape[2] * dy.shape[3]
    dg = (dy * xhat).sum(axis=(0, 2, 3))
    dbeta = dy.sum(axis=(0, 2, 3))
    dxhat = dy * g[None, :, None, None]
    s1 = dxhat.sum(axis=(0, 2, 3))[None, :, None, None]
    s2 = (dxhat * xhat).sum(axis=(0, 2, 3))[None, :, None, None]
    dx = inv[None, :, None, None] / m * (m * dxhat - s1 - xhat * s2)
    return dx, dg, dbeta


def maxpool_fwd(x):
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = win.argmax(axis=-1)
    out = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    return out, (x.shape, arg)


def maxpool_bwd(dout, cache):
    (n, c, h, w), arg = cache
    dwin = np.zeros((n, c, h // 2, w // 2, 4), dtype=dout.dtype)
    np.put_along_axis(dwin, arg[..., None], dout[..., None], axis=-1)
    return dwin.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


BN_LAYERS = ("stem", "dw", "pw", "head")


def init_params(rng: np.random.Generator) -> dict:
    def he(shape, fan_in):
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)

    p = {
        "stem_w": he((8, 1, 3, 3), 9),
        "dw_w": he((8, 1, 3, 3), 9),
        "pw_w": he((8, 8, 1, 1), 8),
        "head_w": he((16, 16, 1, 1), 16),
        "fc_w": rng.normal(0.0, np.sqrt(1.0 / 256), size=(10, 256)),
        "fc_b": np.zeros(10),
    }
    for name, ch in zip(BN_LAYERS, (8, 8, 8, 16)):
        # Conv biases are kept (and non-zero) so BN folding has a bias to fold.
        # Under training-mode BN their gradient is exactly zero, so they stay put.
        p[f"{name}_b"] = rng.normal(0.0, 0.1, size=ch)
        p[f"{name}_g"] = np.ones(ch) + rng.normal(0.0, 0.05, size=ch)
        p[f"{name}_beta"] = rng.normal(0.0, 0.05, size=ch)
    return p


def forward(p: dict, x: np.ndarray, train: bool, stats: dict | None = None):
    """Returns logits and (if train) a cache for backward plus the batch BN stats."""
    cache = {}
    batch_stats = {}

    def bn(name, z):
        if train:
            y, c, mu, var = bn_fwd_train(z, p[f"{name}_g"], p[f"{name}_beta"])
            cache[f"{name}_bn"] = c
            batch_stats[name] = (mu, var)
            return y
        mean, var = stats[name]
        return bn_fwd_eval(z, p[f"{name}_g"], p[f"{name}_beta"], mean, var)

    z, cache["stem_conv"] = conv_fwd(x, p["stem_w"], p["stem_b"])
    s_pre = bn("stem", z)
    s = np.maximum(s_pre, 0.0)
    z, cache["dw_conv"] = dwconv_fwd(s, p["dw_w"], p["dw_b"])
    a_pre = bn("dw", z)
    a = np.maximum(a_pre, 0.0)
    z, cache["pw_conv"] = conv_fwd(a, p["pw_w"], p["pw_b"])
    pw = bn("pw", z)
    r_pre = pw + s
    r = np.maximum(r_pre, 0.0)
    cat = np.concatenate([s, r], axis=1)
    pooled, cache["pool"] = maxpool_fwd(cat)
    z, cache["head_conv"] = conv_fwd(pooled, p["head_w"], p["head_b"])
    h_pre = bn("head", z)
    h = np.maximum(h_pre, 0.0)
    flat = h.reshape(h.shape[0], -1)
    logits = flat @ p["fc_w"].T + p["fc_b"]
    cache.update(s_pre=s_pre, a_pre=a_pre, r_pre=r_pre, h_pre=h_pre, flat=flat, hshape=h.shape)
    return logits, cache, batch_stats


def softmax_xent(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    prob = e / e.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = -np.log(prob[np.arange(n), y] + 1e-300).mean()
    d = prob.copy()
    d[np.arange(n), y] -= 1.0
    return loss, d / n


def backward(p: dict, cache: dict, dlogits: np.ndarray) -> dict:
    g = {}
    g["fc_w"] = dlogits.T @ cache["flat"]
    g["fc_b"] = dlogits.sum(axis=0)
    dh = (dlogits @ p["fc_w"]).reshape(cache["hshape"])
    dh_pre = dh * (cache["h_pre"] > 0)
    dz, g["head_g"], g["head_beta"] = bn_bwd(dh_pre, cache["head_bn"])
    dpooled, g["head_w"], g["head_b"] = conv_bwd(dz, p["head_w"], cache["head_conv"])
    dcat = maxpool_bwd(dpooled, cache["pool"])
    ds = dcat[:, :8].copy()
    dr = dcat[:, 8:]
    dr_pre = dr * (cache["r_pre"] > 0)
    ds += dr_pre  # residual branch
    dz, g["pw_g"], g["pw_beta"] = bn_bwd(dr_pre, cache["pw_bn"])
    da, g["pw_w"], g["pw_b"] = conv_bwd(dz, p["pw_w"], cache["pw_conv"])
    da_pre = da * (cache["a_pre"] > 0)
    dz, g["dw_g"], g["dw_beta"] = bn_bwd(da_pre, cache["dw_bn"])
    ds2, g["dw_w"], g["dw_b"] = dwconv_bwd(dz, p["dw_w"], cache["dw_conv"])
    ds += ds2
    ds_pre = ds * (cache["s_pre"] > 0)
    dz, g["stem_g"], g["stem_beta"] = bn_bwd(ds_pre, cache["stem_bn"])
    _, g["stem_w"], g["stem_b"] = conv_bwd(dz, p["stem_w"], cache["stem_conv"])
    return g


def gradcheck() -> None:
    rng = np.random.default_rng(123)
    p = init_params(rng)
    x = rng.random((6, 1, 8, 8))
    y = rng.integers(0, 10, size=6)

    def loss_of(params):
        logits, _, _ = forward(params, x, train=True)
        return softmax_xent(logits, y)[0]

    logits, cache, _ = forward(p, x, train=True)
    _, d = softmax_xent(logits, y)
    grads = backward(p, cache, d)
    worst = 0.0
    for name in sorted(p):
        flat = p[name].reshape(-1)
        idxs = rng.choice(flat.size, size=min(6, flat.size), replace=False)
        worst_here = 0.0
        for i in idxs:
            old = flat[i]
            h = 1e-6
            flat[i] = old + h
            lp = loss_of(p)
            flat[i] = old - h
            lm = loss_of(p)
            flat[i] = old
            num = (lp - lm) / (2 * h)
            ana = grads[name].reshape(-1)[i]
            err = abs(num - ana) / max(1e-4, abs(num) + abs(ana))
            worst = max(worst, err)
            worst_here = max(worst_here, err)
        print(f"  {name:10s} max relative error {worst_here:.2e}  (|grad| ~ {np.abs(grads[name]).max():.2e})")
    print(f"gradcheck worst relative error: {worst:.2e}")
    if worst > 1e-4:
        sys.exit("gradcheck FAILED")


def train_cnn(xtr, ytr, epochs=30, batch=32, lr=3e-3, seed=SEED):
    rng = np.random.default_rng(seed)
    p = init_params(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(val) for k, val in p.items()}
    b1, b2, eps = 0.9, 0.999, 1e-8
    t = 0
    n = xtr.shape[0]
    steps_per_epoch = (n + batch - 1) // batch
    total = epochs * steps_per_epoch
    for ep in range(epochs):
        perm = rng.permutation(n)
        tot_loss = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * batch : (s + 1) * batch]
            if idx.size < 2:
                continue
            logits, cache, _ = forward(p, xtr[idx], train=True)
            loss, d = softmax_xent(logits, ytr[idx])
            grads = backward(p, cache, d)
            t += 1
            cur_lr = lr * 0.5 * (1.0 + np.cos(np.pi * (t - 1) / total))  # cosine decay
            for k in p:
                gk = grads[k]
                if k.endswith("_w"):
                    gk = gk + 1e-4 * p[k]  # small L2 on weights
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk * gk
                mh = m[k] / (1 - b1**t)
                vh = v[k] / (1 - b2**t)
                p[k] -= cur_lr * mh / (np.sqrt(vh) + eps)
            tot_loss += loss * idx.size
        if ep % 5 == 4 or ep == epochs - 1:
            print(f"  epoch {ep + 1:2d}/{epochs}  train loss {tot_loss / n:.4f}")
    # Exact BN statistics over the full training set (population variance), so
    # inference mode == full-batch training mode on the training data.
    _, _, stats = forward(p, xtr, train=True)
    return p, stats


# ----------------------------------------------------------------------------
# ONNX export of the digits CNN
# ----------------------------------------------------------------------------


def build_digits_graph(p: dict, stats: dict, fold_bn: bool) -> onnx.ModelProto:
    nodes, inits = [], []

    def conv(name, x, w, b, out, group=1):
        k = w.shape[2]
        inits.extend([init(f"{name}.weight", f32(w)), init(f"{name}.bias", f32(b))])
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}.weight", f"{name}.bias"],
                [out],
                name=name,
                kernel_shape=[k, k],
                pads=[k // 2] * 4,
                strides=[1, 1],
                dilations=[1, 1],
                group=group,
            )
        )

    def conv_bn(prefix, x, key, out, group=1):
        """Conv (+ BatchNormalization unless folded). Returns output name."""
        w = p[f"{key}_w"].astype(np.float32).astype(np.float64)
        b = p[f"{key}_b"].astype(np.float32).astype(np.float64)
        gamma = p[f"{key}_g"].astype(np.float32).astype(np.float64)
        beta = p[f"{key}_beta"].astype(np.float32).astype(np.float64)
        mean = stats[key][0].astype(np.float32).astype(np.float64)
        var = stats[key][1].astype(np.float32).astype(np.float64)
        if fold_bn:
            s = gamma / np.sqrt(var + BN_EPS)
            conv(f"{prefix}/conv", x, w * s[:, None, None, None], s * (b - mean) + beta, out, group)
        else:
            conv(f"{prefix}/conv", x, w, b, f"{prefix}/conv_out", group)
            bn = f"{prefix}/bn"
            inits.extend(
                [
                    init(f"{bn}.scale", f32(gamma)),
                    init(f"{bn}.bias", f32(beta)),
                    init(f"{bn}.mean", f32(mean)),
                    init(f"{bn}.var", f32(var)),
                ]
            )
            nodes.append(
                helper.make_node(
                    "BatchNormalization",
                    [f"{prefix}/conv_out", f"{bn}.scale", f"{bn}.bias", f"{bn}.mean", f"{bn}.var"],
                    [out],
                    name=bn,
                    epsilon=BN_EPS,
                    momentum=0.9,
                )
            )
        return out

    relu = lambda name, x, out: nodes.append(helper.make_node("Relu", [x], [out], name=name))

    # stem: conv3x3(1->8) + BN + Relu
    conv_bn("stem", "input", "stem", "stem/bn_out")
    relu("stem/relu", "stem/bn_out", "stem/out")
    # branch A: depthwise3x3(8) + BN + Relu -> pointwise1x1(8->8) + BN
    conv_bn("block/dw", "stem/out", "dw", "block/dw/bn_out", group=8)
    relu("block/dw/relu", "block/dw/bn_out", "block/dw/out")
    conv_bn("block/pw", "block/dw/out", "pw", "block/pw/bn_out")
    # residual Add with the stem output, then Relu
    nodes.append(helper.make_node("Add", ["block/pw/bn_out", "stem/out"], ["block/add_out"], name="block/add"))
    relu("block/relu", "block/add_out", "block/out")
    # Concat(stem, block) along channels -> 16 ch
    nodes.append(helper.make_node("Concat", ["stem/out", "block/out"], ["concat_out"], name="concat", axis=1))
    nodes.append(
        helper.make_node("MaxPool", ["concat_out"], ["pool_out"], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    )
    # head conv1x1(16->16) + BN + Relu
    conv_bn("head", "pool_out", "head", "head/bn_out")
    relu("head/relu", "head/bn_out", "head/out")
    nodes.append(helper.make_node("Flatten", ["head/out"], ["flatten_out"], name="flatten", axis=1))
    inits.extend([init("fc.weight", f32(p["fc_w"])), init("fc.bias", f32(p["fc_b"]))])
    nodes.append(
        helper.make_node(
            "Gemm", ["flatten_out", "fc.weight", "fc.bias"], ["logits"], name="fc", alpha=1.0, beta=1.0, transB=1
        )
    )
    graph = helper.make_graph(
        nodes,
        "digits_cnn_bn" if not fold_bn else "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    names = [t.name for t in inits]
    assert len(names) == len(set(names)), "initializer names must be unique"
    return finish_model(graph)


def make_digits(out: Path) -> dict:
    print("[digits] loading sklearn digits and training CNN (numpy backprop)")
    ds = load_digits()
    x = (ds.data.astype(np.float64) / 16.0).reshape(-1, 1, 8, 8)
    y = ds.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=SEED)
    p, stats = train_cnn(xtr, ytr)

    logits_np, _, _ = forward(p, xte, train=False, stats=stats)
    acc_np = float((logits_np.argmax(1) == yte).mean())
    print(f"  numpy (float64, inference mode) test accuracy: {acc_np:.4f}")

    bn_path, fold_path = out / "digits_cnn_bn.onnx", out / "digits_cnn.onnx"
    save_checked(build_digits_graph(p, stats, fold_bn=False), bn_path)
    save_checked(build_digits_graph(p, stats, fold_bn=True), fold_path)

    xte32 = f32(xte)
    res = {}
    for tag, path in (("bn", bn_path), ("folded", fold_path)):
        sess = ort_session(path)
        lg = sess.run(["logits"], {"input": xte32})[0]
        res[tag] = lg
        # also check batch-1 runs agree (symbolic batch dim)
        one = sess.run(["logits"], {"input": xte32[:1]})[0]
        np.testing.assert_allclose(one, lg[:1], atol=1e-5)
    np.testing.assert_allclose(res["bn"], res["folded"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(res["bn"], logits_np, atol=1e-3, rtol=0)
    acc_bn = float((res["bn"].argmax(1) == yte).mean())
    acc_fold = float((res["folded"].argmax(1) == yte).mean())
    max_diff = float(np.abs(res["bn"] - res["folded"]).max())
    print(f"  ORT accuracy bn={acc_bn:.4f} folded={acc_fold:.4f}  max |logit diff| = {max_diff:.2e}")
    assert acc_bn >= 0.90 and acc_fold >= 0.90, "CNN must reach >= 90% test accuracy"

    ddir = out / "digits"
    if ddir.exists():
        shutil.rmtree(ddir)
    ddir.mkdir()
    lines = []
    for i in range(xte32.shape[0]):
        fname = f"sample_{i:04d}.npy"
        np.save(ddir / fname, xte32[i : i + 1])
        lines.append(f"{fname} {int(yte[i])}")
    (ddir / "labels.txt").write_text("\n".join(lines) + "\n")

    expected = {
        "num_samples": int(xte32.shape[0]),
        "input_name": "input",
        "output_name": "logits",
        "digits_cnn_bn.onnx": {"accuracy": acc_bn, "correct": int((res["bn"].argmax(1) == yte).sum())},
        "digits_cnn.onnx": {"accuracy": acc_fold, "correct": int((res["folded"].argmax(1) == yte).sum())},
        "max_abs_logit_diff_bn_vs_folded": float(f"{max_diff:.3g}"),
        "split": {"test_size": 0.2, "stratify": True, "random_state": SEED, "scale": "pixel / 16"},
    }
    (out / "digits_expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return {"acc_numpy": acc_np, "acc_bn": acc_bn, "acc_folded": acc_fold, "n": int(xte32.shape[0])}


# ----------------------------------------------------------------------------
# (d) external data model
# ----------------------------------------------------------------------------


def make_external(out: Path) -> None:
    print("[external] building model with external initializers")
    edir = out / "external"
    if edir.exists():
        shutil.rmtree(edir)  # onnx appends to the .data file: start clean
    edir.mkdir()
    rng = np.random.default_rng(SEED + 1)
    conv_w = f32(rng.normal(0, 0.5, size=(4, 1, 3, 3)))  # 144 bytes -> external
    conv_b = f32(rng.normal(0, 0.1, size=(4,)))  # 16 bytes -> inline
    fc_w = f32(rng.normal(0, 0.2, size=(3, 64)))  # 768 bytes -> external
    fc_b = f32(rng.normal(0, 0.1, size=(3,)))  # 12 bytes -> inline
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv_out"], name="conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node("MaxPool", ["relu_out"], ["pool_out"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool_out"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "external_data_model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
        initializer=[init("conv.weight", conv_w), init("conv.bias", conv_b),
                     init("fc.weight", fc_w), init("fc.bias", fc_b)],
    )
    model = finish_model(graph)
    onnx.checker.check_model(model, full_check=True)
    path = edir / "model.onnx"
    # NB: onnx compares sys.getsizeof(raw_data) (= len + ~33 bytes) with the
    # threshold, so raw tensors of >= ~31 bytes go external here; the two
    # biases (16 and 12 bytes) stay inline.
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=64)
    onnx.checker.check_model(str(path), full_check=True)
    raw = onnx.load(str(path), load_external_data=False)
    where = {t.name: t.data_location == TensorProto.EXTERNAL for t in raw.graph.initializer}
    assert where == {"conv.weight": True, "conv.bias": False, "fc.weight": True, "fc.bias": False}, where
    x = f32(rng.random((1, 1, 8, 8)))
    y = ort_session(path).run(["output"], {"input": x})[0]
    np.save(edir / "input_0.npy", x)
    np.save(edir / "output_0.npy", y)


# ----------------------------------------------------------------------------
# (e) custom_if.onnx: structure that an IR may not model
# ----------------------------------------------------------------------------


def make_custom_if(out: Path) -> bool:
    print("[custom_if] building structural round-trip model")
    FLOAT = TensorProto.FLOAT
    my_op = helper.make_node(
        "MyOp",
        ["x"],
        ["myop_out"],
        name="custom/myop",
        domain="com.example",
        doc_string="A custom-domain op with one attribute of every common kind.",
        alpha=0.5,  # float
        count=3,  # int
        mode="fast",  # string
        axes=[0, -1],  # ints
        weights=[0.25, 0.5, 1.5],  # floats
        tags=["a", "bc", "déf"],  # strings
        table=helper.make_tensor("table", TensorProto.INT32, [2, 2], [1, 2, 3, 4]),  # tensor
    )

    # If: then-branch uses a Constant node, else-branch its own initializer.
    then_graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["then/c"], name="then/const",
                             value=helper.make_tensor("then/c_value", FLOAT, [3], [1.0, 2.0, 3.0])),
            helper.make_node("Add", ["myop_out", "then/c"], ["then/out"], name="then/add"),
        ],
        "then_branch",
        [],
        [helper.make_tensor_value_info("then/out", FLOAT, [2, 3])],
        doc_string="then branch: myop_out + constant",
    )
    else_graph = helper.make_graph(
        [helper.make_node("Mul", ["myop_out", "else/k"], ["else/out"], name="else/mul")],
        "else_branch",
        [],
        [helper.make_tensor_value_info("else/out", FLOAT, [2, 3])],
        initializer=[init("else/k", np.array([2.0], dtype=np.float32))],
        doc_string="else branch: myop_out * initializer",
    )
    if_node = helper.make_node("If", ["cond"], ["if_out"], name="branch/if",
                               then_branch=then_graph, else_branch=else_graph,
                               doc_string="If with two subgraphs")

    # Loop: trip count from input, accumulates +1 each iteration, also scans.
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["body/one"], name="body/const",
                             value=helper.make_tensor("body/one_value", FLOAT, [], [1.0])),
            helper.make_node("Add", ["body/v_in", "body/one"], ["body/v_out"], name="body/add"),
            helper.make_node("Identity", ["body/cond_in"], ["body/cond_out"], name="body/cond"),
            helper.make_node("Identity", ["body/v_out"], ["body/scan_out"], name="body/scan"),
        ],
        "loop_body",
        [
            helper.make_tensor_value_info("body/iter", TensorProto.INT64, []),
            helper.make_tensor_value_info("body/cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("body/v_in", FLOAT, [2, 3]),
        ],
        [
            helper.make_tensor_value_info("body/cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("body/v_out", FLOAT, [2, 3]),
            helper.make_tensor_value_info("body/scan_out", FLOAT, [2, 3]),
        ],
    )
    loop_node = helper.make_node("Loop", ["trip_count", "loop_cond", "if_out"], ["loop_final", "loop_scan"],
                                 name="loop/loop", body=body, doc_string="Loop with a scan output")

    # Model-local function com.example.fn::ScaleAdd(X, Y) = X * X + Y
    fn = helper.make_function(
        "com.example.fn",
        "ScaleAdd",
        ["X", "Y"],
        ["Z"],
        [
            helper.make_node("Mul", ["X", "X"], ["XX"], name="fn/mul"),
            helper.make_node("Add", ["XX", "Y"], ["Z"], name="fn/add"),
        ],
        [helper.make_opsetid("", OPSET)],
        doc_string="Z = X * X + Y",
    )
    fn_node = helper.make_node("ScaleAdd", ["x", "loop_final"], ["fn_out"], name="fn/call",
                               domain="com.example.fn", doc_string="calls a model-local function")

    graph = helper.make_graph(
        [my_op, if_node, loop_node, fn_node],
        "custom_if",
        [
            helper.make_tensor_value_info("x", FLOAT, [2, 3]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("if_out", FLOAT, [2, 3]),
            helper.make_tensor_value_info("loop_scan", FLOAT, [None, 2, 3]),
            helper.make_tensor_value_info("fn_out", FLOAT, [2, 3]),
        ],
        initializer=[
            init("trip_count", np.array(2, dtype=np.int64)),
            init("loop_cond", np.array(True)),
        ],
        doc_string="Graph doc_string: exercises custom ops, subgraphs and functions.",
        value_info=[helper.make_tensor_value_info("myop_out", FLOAT, [2, 3]),
                    helper.make_tensor_value_info("loop_final", FLOAT, [2, 3])],
    )
    model = finish_model(graph, extra_opsets=[("com.example", 1), ("com.example.fn", 1)], functions=[fn])
    model.doc_string = "Model doc_string: round-trip fixture, not meant to run (custom op)."
    model.domain = "com.example.fixtures"
    model.model_version = 7
    helper.set_model_props(model, {"author": "compress fixtures", "purpose": "round-trip", "unicode": "ünïcødé"})
    path = out / "custom_if.onnx"
    try:
        onnx.checker.check_model(model, full_check=True)
        full = True
    except Exception as e:  # pragma: no cover - depends on onnx version
        print(f"  full_check=True failed ({type(e).__name__}: {str(e).splitlines()[0]}); using full_check=False")
        full = False
    save_checked(model, path, full_check=full)
    return full


# ----------------------------------------------------------------------------
# (f) typed_fields.onnx: initializers in typed proto fields, not raw_data
# ----------------------------------------------------------------------------


def make_typed_fields(out: Path) -> None:
    print("[typed_fields] building model with typed-field initializers")
    T = TensorProto
    tensors = [
        helper.make_tensor("w_f32", T.FLOAT, [2, 3], [0.5, -1.0, 2.0, 1.5, 0.25, -0.75], raw=False),
        helper.make_tensor("w_i64", T.INT64, [3], [1, -2, 3_000_000_000], raw=False),
        helper.make_tensor("w_i8", T.INT8, [3], [-128, 5, 127], raw=False),
        helper.make_tensor("w_u8", T.UINT8, [3], [0, 200, 255], raw=False),
        helper.make_tensor("w_f16", T.FLOAT16, [3], np.array([0.5, -2.0, 1.25], dtype=np.float16), raw=False),
        helper.make_tensor("w_f64", T.DOUBLE, [3], [0.125, 1e-3, -4.5], raw=False),
        helper.make_tensor("w_i32", T.INT32, [3], [7, -8, 9], raw=False),
    ]
    expected_field = {"w_f32": "float_data", "w_i64": "int64_data", "w_i8": "int32_data", "w_u8": "int32_data",
                      "w_f16": "int32_data", "w_f64": "double_data", "w_i32": "int32_data"}
    for t in tensors:
        assert not t.HasField("raw_data") and len(getattr(t, expected_field[t.name])) > 0, t.name
    nodes = []
    for name in ("w_i64", "w_i8", "w_u8", "w_f16", "w_f64", "w_i32"):
        nodes.append(helper.make_node("Cast", [name], [f"{name}_f"], name=f"cast/{name}", to=T.FLOAT))
    nodes += [
        helper.make_node("Mul", ["input", "w_f32"], ["t0"], name="mul/f32"),
        helper.make_node("Add", ["t0", "w_i64_f"], ["t1"], name="add/i64"),
        helper.make_node("Add", ["t1", "w_i8_f"], ["t2"], name="add/i8"),
        helper.make_node("Mul", ["t2", "w_f16_f"], ["t3"], name="mul/f16"),
        helper.make_node("Add", ["t3", "w_f64_f"], ["t4"], name="add/f64"),
        helper.make_node("Sub", ["t4", "w_u8_f"], ["t5"], name="sub/u8"),
        helper.make_node("Add", ["t5", "w_i32_f"], ["output"], name="add/i32"),
    ]
    graph = helper.make_graph(
        nodes,
        "typed_fields",
        [helper.make_tensor_value_info("input", T.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("output", T.FLOAT, [2, 3])],
        initializer=tensors,
    )
    path = out / "typed_fields.onnx"
    save_checked(finish_model(graph), path)
    x = f32(np.random.default_rng(SEED + 2).normal(size=(2, 3)))
    y = ort_session(path).run(["output"], {"input": x})[0]
    # independent numpy reference
    c = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in tensors}
    ref = (((x * c["w_f32"] + c["w_i64"]) + c["w_i8"]) * c["w_f16"] + c["w_f64"] - c["w_u8"]) + c["w_i32"]
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-3)
    np.save(out / "typed_fields_input_0.npy", x)
    np.save(out / "typed_fields_output_0.npy", y)


# ----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gradcheck", action="store_true", help="check the numpy backward pass and exit")
    ap.add_argument("--out", type=Path, default=HERE, help="output directory (default: Fixtures/)")
    args = ap.parse_args()
    if args.gradcheck:
        gradcheck()
        return
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    digits = make_digits(out)
    make_external(out)
    full = make_custom_if(out)
    make_typed_fields(out)
    from generate_paddle_style import make_paddle_style
    make_paddle_style(out)
    import generate_ort_quantized  # ONNX Runtime's quantizers on digits_cnn.onnx, plus a tiny MatMul+LSTM model
    generate_ort_quantized.main(out)

    print("\nSummary")
    print(f"  digits test samples: {digits['n']}")
    print(f"  accuracy numpy={digits['acc_numpy']:.4f}  ORT digits_cnn_bn={digits['acc_bn']:.4f}  "
          f"ORT digits_cnn={digits['acc_folded']:.4f}")
    print(f"  custom_if.onnx checked with full_check={full}")
    files = sorted(f for f in out.rglob("*") if f.is_file() and not f.match("sample_*.npy") and f.suffix != ".py")
    for f in files:
        print(f"  {f.stat().st_size:9d}  {f.relative_to(out)}")
    samples = sorted((out / "digits").glob("sample_*.npy"))
    print(f"  {sum(s.stat().st_size for s in samples):9d}  digits/sample_*.npy ({len(samples)} files)")
    biggest = max(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert biggest < 1_000_000, "a fixture file exceeds 1 MB"


if __name__ == "__main__":
    main()
