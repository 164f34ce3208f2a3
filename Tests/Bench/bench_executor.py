"""Executor latency: compress vs ONNX Runtime on ResNet-18 and MobileNetV2 (not a test).

Builds the models with `compress build-reference` (torchvision layouts, random weights), then for
batch 1 and 8 times

  * compress: `compress _eval MODEL --random-input input=Bx3x224x224 --repeat N --threads T`
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
MODELS = ["resnet18", "mobilenet_v2"]
BATCHES = [1, 8]


def build(arch: str, out_dir: str) -> str:
    path = os.path.join(out_dir, f"{arch}.onnx")
    subprocess.run([COMPRESS, "build-reference", arch, "-o", path], check=True)
    return path


def time_compress(path: str, input_name: str, batch: int, runs: int, threads: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    r = subprocess.run([COMPRESS, "_eval", path, "--random-input", f"{input_name}={batch}x3x224x224",
                        "--repeat", str(runs), "--threads", str(threads)],
                       capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"compress failed on {path}: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def time_ort(sess: ort.InferenceSession, input_name: str, batch: int, runs: int) -> dict:
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32)
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
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--batches", nargs="*", type=int, default=BATCHES)
    args = ap.parse_args()
    print(f"compress: {COMPRESS}; onnxruntime {ort.__version__}; threads {args.threads}; "
          f"{args.runs} runs x {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models:
            path = build(arch, tmp)
            input_name = onnx.load(path, load_external_data=False).graph.input[0].name
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            for batch in args.batches:
                ours, theirs = [], []
                for rnd in range(args.rounds):
                    c = time_compress(path, input_name, batch, args.runs, args.threads)
                    o = time_ort(sess, input_name, batch, args.runs)
                    ours.append(c)
                    theirs.append(o)
                    print(f"  {arch} batch {batch} round {rnd + 1}: compress {c['median_ms']:.1f} ms "
                          f"(p90 {c['p90_ms']:.1f}), onnxruntime {o['median_ms']:.1f} ms (p90 {o['p90_ms']:.1f})", flush=True)
                c = min(ours, key=lambda r: r["median_ms"])
                o = min(theirs, key=lambda r: r["median_ms"])
                rows.append((arch, batch, c, o))
    print()
    print(f"{'model':<14}{'batch':>6}{'compress ms':>14}{'onnxruntime ms':>17}{'ratio':>8}")
    for arch, batch, c, o in rows:
        print(f"{arch:<14}{batch:>6}{c['median_ms']:>14.1f}{o['median_ms']:>17.1f}{c['median_ms'] / o['median_ms']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
