"""Measuring helpers shared by the benchmarks (bench_info.py, bench_profile.py).

measure(cmd) runs one command as a child of a small Python process (so the child's peak RSS
is not inflated by a large parent at exec time) and reports its wall time, its peak resident
set size (ru_maxrss from wait4 on that child) and the peak of its private (anonymous) memory,
RssAnon sampled from /proc every 0.5 ms. File-backed pages of a memory-mapped model count in
RSS once mapped; how many get mapped depends on how the kernel holds the file in its page
cache (bench_profile.py measures with the file evicted and cached).

Also: the compress binary (COMPRESS_BIN, else .build/release/compress), and the ResNet-50
model the benchmarks measure on, written by `compress build-reference resnet50`.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("COMPRESS_BIN", os.path.join(ROOT, ".build", "release", "compress"))

# Runs argv[1:] as a child of this small process; prints wall seconds, peak RSS (KiB, from
# wait4), peak RssAnon (KiB, sampled every 0.5 ms) and the exit status.
MEASURE = r"""
import os, subprocess, sys, time
sample = sys.argv[1] == "1"
t = time.perf_counter()
p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL)
anon = 0
while True:
    pid, status, usage = os.wait4(p.pid, 0 if not sample else os.WNOHANG)
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


def measure(cmd, sample_anon=True):
    """One run of cmd under MEASURE: (wall seconds, peak RSS bytes, peak private bytes).
    Exits with a message if cmd fails. `sample_anon=False`: no RssAnon sampling (peak private
    bytes 0), only wait4 — the sampling loop wakes every 0.5 ms and takes CPU time from a
    command that keeps every core busy (on a 2-core machine, a tenth of its speed)."""
    out = subprocess.check_output([sys.executable, "-c", MEASURE, "1" if sample_anon else "0", *cmd], text=True).split()
    wall, rss_kib, anon_kib, rc = float(out[0]), int(out[1]), int(out[2]), int(out[3])
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with status {rc}")
    return wall, rss_kib * 1024, anon_kib * 1024


def require_bin():
    if not os.path.exists(BIN):
        raise SystemExit(f"compress binary not found at {BIN} (make release, or set COMPRESS_BIN)")


def build_resnet50(path, zero_weights=False):
    """Writes ResNet-50 (torchvision layout, all weights inline, ~100 MB) to path with
    `compress build-reference`; random weights unless zero_weights. Returns the file's size."""
    subprocess.run([BIN, "build-reference", "resnet50", "-o", path, *(["--zero-weights"] if zero_weights else [])],
                   check=True)
    return os.path.getsize(path)
