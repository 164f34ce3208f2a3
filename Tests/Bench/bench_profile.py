#!/usr/bin/env python3
"""Benchmark: `compress profile` against onnx-tool 1.0.1 on a ResNet-50-sized model, same run.

compress is timed as a whole process (start, read, shape inference, profile, JSON out).
onnx-tool is timed two ways: its load + shape inference + profile inside one Python process
(imports excluded: the figure the target compares against), and as a whole process.
Peak memory is each process's maximum resident set size (getrusage of the child), measured
with the model file evicted from the page cache and again with it cached, plus compress's
peak private (anonymous) memory (measured by _measure.py, shared with bench_info.py).

Target (issue #4): compress ≥ 50× faster than onnx-tool's load + shape inference + profile,
and compress's peak memory below half the model file's size.

Run alone: COMPRESS_BIN=.build/release/compress .venv/bin/python Tests/Bench/bench_profile.py
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _measure import BIN, build_resnet50, measure, require_bin

RUNS = int(os.environ.get("BENCH_RUNS", "11"))

# onnx-tool's own work, timed inside its process after the imports.
ONNX_TOOL = r"""
import sys, time, io, contextlib
import numpy as np
import onnx_tool
t = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    model = onnx_tool.Model(sys.argv[1], {"verbose": False})
    g = model.graph
    g.graph_reorder_nodes()
    g.shape_infer({"input": np.zeros((1, 3, 224, 224), np.float32)})
    g.profile()
print(time.perf_counter() - t, int(g.macs[0]), int(g.params))
"""


def wall(cmd):
    """Wall time of one run, measured here without sampling (the /proc sampling of measure()
    competes with the child for the CPU)."""
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def evict(path):
    """Drops the file from the page cache (no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_through(path):
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def main():
    require_bin()
    try:
        import onnx_tool  # noqa: F401
    except ImportError:
        raise SystemExit("onnx-tool is not installed (pip install onnx-tool==1.0.1)")
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as d:
        model = os.path.join(d, "resnet50.onnx")
        size = build_resnet50(model, zero_weights=True)
        doc = json.loads(subprocess.check_output([BIN, "profile", model, "--format", "json"]))
        print(f"model: ResNet-50 (torchvision layout, BatchNormalization kept), {size / 1e6:.1f} MB, "
              f"{len(doc['nodes'])} nodes; compress: {doc['totals']['macs']:,} MACs, {doc['totals']['params']:,} params")

        # Timing with the file in the page cache (read through once, as after a download).
        evict(model)
        read_through(model)
        ours = [wall([BIN, "profile", model, "--format", "json"]) for _ in range(RUNS)]
        table = [wall([BIN, "profile", model, "--device", "nvidia-t4"]) for _ in range(RUNS)]
        version = [wall([BIN, "--version"]) for _ in range(RUNS)]
        tool_inner, tool_whole = [], []
        for _ in range(max(3, RUNS // 2)):
            t = time.perf_counter()
            out = subprocess.check_output([sys.executable, "-c", ONNX_TOOL, model], text=True).split()
            tool_whole.append(time.perf_counter() - t)
            tool_inner.append(float(out[0]))
        mem_warm = [measure([BIN, "profile", model, "--format", "json"]) for _ in range(3)]
        tool_warm = measure([sys.executable, "-c", ONNX_TOOL, model])
        # Memory with the file not in the page cache: RSS then holds what the process itself
        # faulted in. With the file cached in large folios (a file just written, on kernels that
        # map whole cached folios on a fault), touching one byte per tensor header maps most of
        # the file, which RSS counts although no memory is allocated.
        evict(model)
        cold = measure([BIN, "profile", model, "--format", "json"])
        evict(model)
        tool_cold = measure([sys.executable, "-c", ONNX_TOOL, model])
        baseline = measure([BIN, "--version"])

        c_time = statistics.median(ours)
        c_table = statistics.median(table)
        c_version = statistics.median(version)
        c_rss_warm = max(r[1] for r in mem_warm)
        c_anon = max(r[2] for r in mem_warm + [cold])
        t_inner = statistics.median(tool_inner)
        t_whole = statistics.median(tool_whole)
        t_rss_warm = tool_warm[1]
        mb = lambda b: f"{b / 1e6:6.1f} MB"
        print(f"compress profile (whole process, json), median of {RUNS}: {c_time * 1e3:8.1f} ms")
        print(f"compress profile (whole process, table + roofline):  {c_table * 1e3:8.1f} ms")
        print(f"compress --version (process start alone):            {c_version * 1e3:8.1f} ms")
        print(f"onnx-tool load + shape_infer + profile (in process):  {t_inner * 1e3:8.1f} ms")
        print(f"onnx-tool whole process (python start, imports too):  {t_whole * 1e3:8.1f} ms")
        ratio = t_inner / c_time
        print(f"speed-up: {ratio:.0f}x vs onnx-tool's work, {t_whole / c_time:.0f}x vs its whole process "
              f"(target >= 50x: {'met' if ratio >= 50 else 'NOT met'})")
        print(f"peak RSS, file not cached:  compress {mb(cold[1])} ({cold[1] / size:.2f} of the file; "
              f"`compress --version` alone: {mb(baseline[1])}), onnx-tool {mb(tool_cold[1])} ({tool_cold[1] / size:.2f})")
        print(f"peak RSS, file cached:      compress {mb(c_rss_warm)} ({c_rss_warm / size:.2f}), "
              f"onnx-tool {mb(t_rss_warm)} ({t_rss_warm / size:.2f})")
        print(f"compress peak private (anonymous) memory: {mb(c_anon)}")
        print(f"memory target (< 0.5 of the file): {'met' if cold[1] < size / 2 else 'NOT met'} with the file not cached, "
              f"{'met' if c_rss_warm < size / 2 else 'NOT met'} with it cached")


if __name__ == "__main__":
    main()
