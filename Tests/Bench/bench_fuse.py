#!/usr/bin/env python3
"""Benchmark: `compress fuse` on a ResNet-50-sized model with BatchNormalization kept (torchvision
layout, `compress build-reference resnet50`, ~100 MB) against onnxsim and onnxslim, whole process
each (reading, simplifying, verifying where the tool does, writing), in the same run. Target
(issue): at least 5x faster than the faster peer. Also the node count each writes.

compress verifies by running the model before and after on 1 seeded random input (its default);
onnxsim checks with ONNX Runtime by default (as run here); onnxslim does not verify. The tools run
interleaved, round by round, so a busy machine slows all alike; `cp` of the model file is
measured in the same rounds as the floor every tool pays (reading and writing ~100 MB).
"""
import os
import statistics
import subprocess
import sys
import tempfile

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import BIN, build_resnet50, measure, require_bin  # noqa: E402

ROUNDS = 3
ONNXSIM = "import onnx, onnxsim, sys; m, ok = onnxsim.simplify(onnx.load(sys.argv[1])); assert ok; onnx.save(m, sys.argv[2])"
ONNXSLIM = "import onnxslim, sys; onnxslim.slim(sys.argv[1], sys.argv[2])"


def main():
    require_bin()
    try:
        import onnxsim  # noqa: F401
        import onnxslim  # noqa: F401
    except ImportError:
        raise SystemExit("onnxsim / onnxslim are not installed (make venv installs them: they are in the Makefile's PY_PACKAGES)")
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "resnet50.onnx")
        size = build_resnet50(model)
        before = len(onnx.load(model, load_external_data=False).graph.node)
        print(f"model: ResNet-50 with BatchNormalization kept, {size / 2**20:.1f} MiB, {before} nodes; medians of {ROUNDS}")
        tools = (
            ("compress fuse", lambda o: [BIN, "fuse", model, "-o", o, "--force"], os.path.join(d, "c.onnx")),
            ("onnxsim", lambda o: [sys.executable, "-c", ONNXSIM, model, o], os.path.join(d, "s.onnx")),
            ("onnxslim", lambda o: [sys.executable, "-c", ONNXSLIM, model, o], os.path.join(d, "l.onnx")),
            ("cp (floor)", lambda o: ["cp", model, o], os.path.join(d, "copy.onnx")),
        )
        runs = {name: [] for name, _, _ in tools}
        for _ in range(ROUNDS):
            for name, cmd, out in tools:
                runs[name].append(measure(cmd(out), sample_anon=False))  # (wait4 peak RSS; no /proc sampling)
        rows = []
        for name, _, out in tools:
            nodes = len(onnx.load(out, load_external_data=False).graph.node)
            rows.append((name, statistics.median(r[0] for r in runs[name]), max(r[1] for r in runs[name]) / 2**20, nodes))
        print(f"{'tool':14s} {'seconds':>8s} {'peak RSS MiB':>13s} {'nodes':>6s}")
        for name, t, rss, nodes in rows:
            print(f"{name:14s} {t:8.3f} {rss:13.1f} {nodes:6d}")
        ours, peers = rows[0][1], min(r[1] for r in rows[1:3])
        print(f"speed-up vs the faster peer: {peers / ours:.1f}x (target >= 5x: {'met' if peers / ours >= 5 else 'NOT met'})")


if __name__ == "__main__":
    main()
