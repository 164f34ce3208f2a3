#!/usr/bin/env python3
"""Benchmark: `compress prune` on a ResNet-50-sized model (torchvision layout, ~100 MB, written
by `compress build-reference resnet50`) at ratio 0.5, total time as a whole process including
reading the model and writing the pruned one. Targets (issue): L1 under 1 s, FPGM under 3 s.

The peer figure beside it is the time NumPy takes for the same criterion over the same weights
(the importance computation alone, no graph analysis, no surgery, no I/O) after onnx.load: what a
script that ranks filters itself would spend before it could even start cutting the graph.
"""
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import BIN, build_resnet50, measure, require_bin  # noqa: E402

ROUNDS = 3


def numpy_peer(path, method):
    import onnx
    from onnx import numpy_helper
    t = time.perf_counter()
    m = onnx.load(path)
    for init in m.graph.initializer:
        if len(init.dims) != 4:
            continue
        w = numpy_helper.to_array(init).reshape(init.dims[0], -1).astype(np.float64)
        if method == "l1":
            np.abs(w).sum(1)
        else:
            sq = (w * w).sum(1)
            d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * w @ w.T, 0)
            np.sqrt(d2).sum(1)
    return time.perf_counter() - t


def main():
    require_bin()
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "resnet50.onnx")
        size = build_resnet50(model)
        print(f"model: ResNet-50 (build-reference), {size / 2**20:.1f} MiB; ratio 0.5; medians of {ROUNDS}")
        print(f"{'method':8s} {'compress s':>11s} {'peak RSS MiB':>13s} {'target s':>9s} {'numpy criterion only s':>23s}")
        for method, target in (("l1", 1.0), ("fpgm", 3.0)):
            out = os.path.join(d, f"pruned-{method}.onnx")
            runs = [measure([BIN, "prune", model, "-o", out, "--method", method, "--ratio", "0.5", "--force"]) for _ in range(ROUNDS)]
            wall = statistics.median(r[0] for r in runs)
            rss = max(r[1] for r in runs)
            peer = statistics.median(numpy_peer(model, method) for _ in range(ROUNDS))
            verdict = "met" if wall < target else "NOT met"
            print(f"{method:8s} {wall:11.3f} {rss / 2**20:13.1f} {target:9.1f} {peer:23.3f}   ({verdict})")


if __name__ == "__main__":
    main()
