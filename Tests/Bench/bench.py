#!/usr/bin/env python3
"""`make bench`: every benchmark, each measuring compress against its peer in the same run.

Benchmarks are not tests: they print figures and ratios (and exit 0 unless a benchmark
itself crashed). Each script runs on its own (bench_info.py and bench_profile.py import
their shared measuring helpers from _measure.py, next to them); run one alone with
`COMPRESS_BIN=.build/release/compress .venv/bin/python Tests/Bench/bench_<name>.py`.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = ["bench_info.py", "bench_profile.py", "bench_executor.py", "bench_run_images.py", "bench_prune.py", "bench_quantize.py", "bench_fuse.py", "bench_distill.py"]

def main():
    failed = []
    for name in SCRIPTS:
        path = os.path.join(HERE, name)
        if not os.path.exists(path):
            print(f"== {name}: missing, skipped")
            continue
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, path])
        if rc != 0:
            failed.append(name)
    if failed:
        print("benchmarks that failed to run: " + ", ".join(failed))
        sys.exit(1)

if __name__ == "__main__":
    main()
