#!/usr/bin/env python3
"""Benchmark: `compress info` against `onnx.load` on a ResNet-50-sized model, same run.

The model is written by `compress build-reference resnet50` (torchvision layout, random
weights, ~100 MB, all inline). Measured, each RUNS times (median reported):

  compress          `compress info MODEL` as a whole process (start, map, decode, print).
  python+onnx.load  `python -c "import onnx; onnx.load(MODEL)"` as a whole process: the
                    interpreter's and onnx's import time are part of this figure.
  onnx.load only    onnx.load(MODEL) timed inside one Python process after `import onnx`
                    (the fair figure for the library itself).

Peak memory is each process's maximum resident set size (ru_maxrss from wait4 on that child,
launched from a small Python process so a large parent cannot inflate it), plus compress's
peak private (anonymous) memory sampled from /proc. Mapped model pages compress touches count
in RSS; it touches only the structure, so its peak stays far below the file size.

Targets (issue #2): compress ≥ 5× faster than python+onnx.load, and compress's peak memory
≤ 1.5× the file size. Not a test: prints figures and ratios, exits 0 unless a step crashed.

Run alone: COMPRESS_BIN=.build/release/compress .venv/bin/python Tests/Bench/bench_info.py
"""
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("COMPRESS_BIN", os.path.join(ROOT, ".build", "release", "compress"))
RUNS = int(os.environ.get("BENCH_RUNS", "7"))

# Runs argv[1:] as a child of this small process; prints wall seconds, peak RSS (KiB, from
# wait4), peak RssAnon (KiB, sampled every 0.5 ms) and the exit status.
MEASURE = r"""
import os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
anon = 0
while True:
    pid, status, usage = os.wait4(p.pid, os.WNOHANG)
    if pid == p.pid:
        break
    try:
        for line in open(f"/proc/{p.pid}/status"):
            if line.startswith("RssAnon:"):
                anon = max(anon, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.0005)
wall = time.perf_counter() - t
print(wall, usage.ru_maxrss, anon, os.waitstatus_to_exitcode(status))
"""

# onnx.load timed inside the process, after the import.
LOAD_ONLY = r"""
import sys, time
import onnx
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    m = onnx.load(sys.argv[1])
    times.append(time.perf_counter() - t)
    del m
print(" ".join(map(str, times)))
"""


def measure(argv):
    out = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, check=True).stdout.split()
    wall, rss, anon, rc = float(out[0]), int(out[1]), int(out[2]), int(out[3])
    if rc != 0:
        raise SystemExit(f"{argv[0]} exited with status {rc}")
    return wall, rss * 1024, anon * 1024


def summarize(samples):
    walls = [s[0] for s in samples]
    return statistics.median(walls), max(s[1] for s in samples), max(s[2] for s in samples)


def mib(b):
    return f"{b / 1048576:.1f} MiB"


def main():
    if not os.path.exists(BIN):
        raise SystemExit(f"compress binary not found at {BIN} (build with `swift build -c release` or set COMPRESS_BIN)")
    with tempfile.TemporaryDirectory(prefix="bench-info-") as tmp:
        model = os.path.join(tmp, "r50.onnx")
        subprocess.run([BIN, "build-reference", "resnet50", "-o", model], check=True)
        size = os.path.getsize(model)
        print(f"model: ResNet-50 (build-reference, random weights), {size:,} bytes ({mib(size)}); {RUNS} runs each, median")

        # Warm the page cache and both tools once, so every figure below is a warm-cache run.
        measure([BIN, "info", model])
        measure([sys.executable, "-c", "import onnx, sys; onnx.load(sys.argv[1])", model])

        comp = summarize([measure([BIN, "info", model]) for _ in range(RUNS)])
        peer = summarize([measure([sys.executable, "-c", "import onnx, sys; onnx.load(sys.argv[1])", model]) for _ in range(RUNS)])
        load_times = [float(x) for x in subprocess.run([sys.executable, "-c", LOAD_ONLY, model, str(RUNS)],
                                                        capture_output=True, text=True, check=True).stdout.split()]
        load_only = statistics.median(load_times)
        startup = summarize([measure([sys.executable, "-c", "import onnx"]) for _ in range(RUNS)])

        print()
        print(f"{'':22}{'time (median)':>15}{'peak RSS':>14}{'peak private':>15}")
        print(f"{'compress info':22}{comp[0] * 1000:>12.1f} ms{mib(comp[1]):>14}{mib(comp[2]):>15}")
        print(f"{'python+onnx.load':22}{peer[0] * 1000:>12.1f} ms{mib(peer[1]):>14}{mib(peer[2]):>15}")
        print(f"{'  of which import onnx':22}{startup[0] * 1000:>12.1f} ms{mib(startup[1]):>14}")
        print(f"{'onnx.load only':22}{load_only * 1000:>12.1f} ms{'(in-process)':>14}")
        print()
        speed = peer[0] / comp[0]
        mem = comp[1] / size
        print(f"speed: compress info is {speed:.1f}x faster than python+onnx.load (target >= 5x: "
              f"{'met' if speed >= 5 else 'NOT met'}); {load_only / comp[0]:.1f}x faster than onnx.load alone")
        print(f"memory: compress peak RSS = {mem:.2f}x the file size (target <= 1.5x: {'met' if mem <= 1.5 else 'NOT met'}); "
              f"python+onnx.load peak RSS = {peer[1] / size:.2f}x; ratio {peer[1] / comp[1]:.1f}x")


if __name__ == "__main__":
    main()
