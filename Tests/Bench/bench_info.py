#!/usr/bin/env python3
"""Benchmark: `compress info` against `onnx.load` on a ResNet-50-sized model, same run.

The model is written by `compress build-reference resnet50` (torchvision layout, random
weights, ~100 MB, all inline). Measured, each RUNS times (median reported):

  compress          `compress info MODEL` as a whole process (start, map, decode, print).
  python+onnx.load  `python -c "import onnx; onnx.load(MODEL)"` as a whole process: the
                    interpreter's and onnx's import time are part of this figure.
  onnx.load only    onnx.load(MODEL) timed inside one Python process after `import onnx`
                    (the fair figure for the library itself).
  compress --version  process start alone, beside /bin/true (a C program that does nothing),
                    alternately, STARTUP_RUNS times each (default 201): spawned straight from
                    this process (posix_spawn + waitpid, no helper process, which would add
                    its own milliseconds), median and 10th/90th percentiles. The difference is
                    compress's own start-up (dynamic loading, Swift runtime and static
                    initialisation). Target: <= 5 ms whole process. Peak RSS from measure().

Peak memory is each process's maximum resident set size (ru_maxrss from wait4 on that child,
launched from a small Python process so a large parent cannot inflate it), plus compress's
peak private (anonymous) memory sampled from /proc. Mapped model pages compress touches count
in RSS; it touches only the structure, so its peak stays far below the file size. The
measuring helpers are shared with bench_profile.py in _measure.py.

Targets (issue #2): compress ≥ 5× faster than python+onnx.load, and compress's peak memory
≤ 1.5× the file size. Not a test: prints figures and ratios, exits 0 unless a step crashed.

Run alone: COMPRESS_BIN=.build/release/compress .venv/bin/python Tests/Bench/bench_info.py
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _measure import BIN, build_resnet50, measure, require_bin

RUNS = int(os.environ.get("BENCH_RUNS", "7"))
STARTUP_RUNS = int(os.environ.get("STARTUP_RUNS", "201"))

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


def spawn_wall(cmd):
    """Wall seconds of one run of cmd, spawned directly (stdout to /dev/null)."""
    t = time.perf_counter()
    pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status = os.waitpid(pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with status {os.waitstatus_to_exitcode(status)}")
    return wall


def summarize(samples):
    walls = [s[0] for s in samples]
    return statistics.median(walls), max(s[1] for s in samples), max(s[2] for s in samples)


def mib(b):
    return f"{b / 1048576:.1f} MiB"


def main():
    require_bin()
    with tempfile.TemporaryDirectory(prefix="bench-info-") as tmp:
        model = os.path.join(tmp, "r50.onnx")
        size = build_resnet50(model)
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
        # Process start: compress --version and /bin/true alternately, so both see the same load.
        v_walls, t_walls = [], []
        for _ in range(STARTUP_RUNS):
            v_walls.append(spawn_wall([BIN, "--version"]))
            t_walls.append(spawn_wall(["/bin/true"]))
        v_walls.sort()
        t_walls.sort()
        v_rss = measure([BIN, "--version"])[1]

        print()
        print(f"{'':22}{'time (median)':>15}{'peak RSS':>14}{'peak private':>15}")
        print(f"{'compress info':22}{comp[0] * 1000:>12.1f} ms{mib(comp[1]):>14}{mib(comp[2]):>15}")
        print(f"{'python+onnx.load':22}{peer[0] * 1000:>12.1f} ms{mib(peer[1]):>14}{mib(peer[2]):>15}")
        print(f"{'  of which import onnx':22}{startup[0] * 1000:>12.1f} ms{mib(startup[1]):>14}")
        print(f"{'onnx.load only':22}{load_only * 1000:>12.1f} ms{'(in-process)':>14}")
        p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000
        print(f"{'compress --version':22}{statistics.median(v_walls) * 1000:>12.2f} ms{mib(v_rss):>14}"
              f"   (p10 {p(v_walls, 0.1):.2f}, p90 {p(v_walls, 0.9):.2f} ms; {STARTUP_RUNS} runs)")
        print(f"{'/bin/true (C)':22}{statistics.median(t_walls) * 1000:>12.2f} ms{'':>14}"
              f"   (p10 {p(t_walls, 0.1):.2f}, p90 {p(t_walls, 0.9):.2f} ms)")
        print()
        start = statistics.median(v_walls)
        print(f"start-up: compress --version {start * 1000:.1f} ms whole process, "
              f"{(start - statistics.median(t_walls)) * 1000:.1f} ms more than /bin/true (target <= 5 ms: "
              f"{'met' if start <= 0.005 else 'NOT met'})")
        speed = peer[0] / comp[0]
        mem = comp[1] / size
        print(f"speed: compress info is {speed:.1f}x faster than python+onnx.load (target >= 5x: "
              f"{'met' if speed >= 5 else 'NOT met'}); {load_only / comp[0]:.1f}x faster than onnx.load alone")
        print(f"memory: compress peak RSS = {mem:.2f}x the file size (target <= 1.5x: {'met' if mem <= 1.5 else 'NOT met'}); "
              f"python+onnx.load peak RSS = {peer[1] / size:.2f}x; ratio {peer[1] / comp[1]:.1f}x")


if __name__ == "__main__":
    main()
