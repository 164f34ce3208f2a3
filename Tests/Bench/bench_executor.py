"""Executor latency: compress vs ONNX Runtime on reference models (not a test).

Builds the models with `compress build-reference` (torchvision layouts, random weights):
ResNet-18 and MobileNetV2 at batch 1 and 8; MobileNetV3 small/large and EfficientNet-B0, which
are written as torch.onnx.export writes them (BN folded, HardSwish, SE blocks, SiLU as
Sigmoid·Mul, 5×5 depthwise), at batch 1. Also the real detector
../shared/models/yolox_det_416.onnx at its fixed batch 1 (skipped with a note when absent).
For each model and batch it times

  * compress: `compress _eval MODEL --random-input NAME=BxCxHxW --repeat N --threads T`
    (one warm-up run, then N timed runs inside one process; the kernels' thread pool, which also
    runs OpenBLAS's products single-threaded, limited to T threads),
  * ONNX Runtime: InferenceSession(intra_op_num_threads=T, inter_op_num_threads=1, default graph
    optimizations), one warm-up run, then N timed runs,

and prints both medians (and p90) in milliseconds with the ratio compress / ONNX Runtime. The
two are measured in alternating rounds so that a busy machine slows both alike; the figure
reported for each is its best round median (the least disturbed), and every round is printed.

Usage:
    COMPRESS_BIN=.build/release/compress python Tests/Bench/bench_executor.py [--runs 20] [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

COMPRESS = os.environ.get("COMPRESS_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "release", "compress"))
SHARED_MODELS = os.environ.get("COMPRESS_SHARED_MODELS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "models"))
# name -> default batches; a name ending in .onnx is a file in SHARED_MODELS, the others are
# built with `compress build-reference`.
MODELS = {"resnet18": [1, 8], "mobilenet_v2": [1, 8], "mobilenet_v3_small": [1], "mobilenet_v3_large": [1],
          "efficientnet_b0": [1], "yolox_det_416.onnx": [1]}


def build(arch: str, out_dir: str) -> str | None:
    if arch.endswith(".onnx"):
        path = os.path.join(SHARED_MODELS, arch)
        if not os.path.exists(path):
            print(f"  {arch}: skipped, not found at {os.path.normpath(path)}", flush=True)
            return None
        return path
    path = os.path.join(out_dir, f"{arch}.onnx")
    subprocess.run([COMPRESS, "build-reference", arch, "-o", path], check=True)
    return path


def input_shape(model: onnx.ModelProto, batch: int) -> tuple[str, list[int]]:
    """The first graph input's name and dims with the batch dimension set to `batch`."""
    inits = {i.name for i in model.graph.initializer}
    v = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in v.type.tensor_type.shape.dim]
    if dims[0] is None or dims[0] == batch:
        dims[0] = batch
    else:
        raise ValueError(f"{v.name}: fixed batch {dims[0]}, asked for {batch}")
    if any(d is None for d in dims):
        raise ValueError(f"{v.name}: unknown non-batch dimension in {dims}")
    return v.name, dims


def time_compress(path: str, input_name: str, shape: list[int], runs: int, threads: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    r = subprocess.run([COMPRESS, "_eval", path, "--random-input", f"{input_name}={'x'.join(map(str, shape))}",
                        "--repeat", str(runs), "--threads", str(threads)],
                       capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"compress failed on {path}: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def time_ort(sess: ort.InferenceSession, input_name: str, shape: list[int], runs: int) -> dict:
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    sess.run(None, {input_name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {input_name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[min(len(times) - 1, int(np.ceil(0.9 * len(times))) - 1)],
            "min_ms": times[0], "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per round (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating compress/ORT rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="*", default=list(MODELS),
                    help="reference architectures, or NAME.onnx files in ../shared/models")
    ap.add_argument("--batches", nargs="*", type=int, default=None,
                    help="batches for every model (default: 1 and 8 for resnet18/mobilenet_v2, 1 for the others)")
    args = ap.parse_args()
    print(f"compress: {COMPRESS}; onnxruntime {ort.__version__}; threads {args.threads}; "
          f"{args.runs} runs x {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models:
            path = build(arch, tmp)
            if path is None:
                continue
            model = onnx.load(path, load_external_data=False)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            for batch in args.batches or MODELS.get(arch, [1]):
                input_name, shape = input_shape(model, batch)
                ours, theirs = [], []
                for rnd in range(args.rounds):
                    c = time_compress(path, input_name, shape, args.runs, args.threads)
                    o = time_ort(sess, input_name, shape, args.runs)
                    ours.append(c)
                    theirs.append(o)
                    print(f"  {arch} batch {batch} round {rnd + 1}: compress {c['median_ms']:.1f} ms "
                          f"(p90 {c['p90_ms']:.1f}), onnxruntime {o['median_ms']:.1f} ms (p90 {o['p90_ms']:.1f})", flush=True)
                c = min(ours, key=lambda r: r["median_ms"])
                o = min(theirs, key=lambda r: r["median_ms"])
                rows.append((arch, batch, c, o))
    print()
    print(f"{'model':<20}{'batch':>6}{'compress ms':>14}{'onnxruntime ms':>17}{'ratio':>8}")
    for arch, batch, c, o in rows:
        print(f"{arch.removesuffix('.onnx'):<20}{batch:>6}{c['median_ms']:>14.1f}{o['median_ms']:>17.1f}{c['median_ms'] / o['median_ms']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
