#!/usr/bin/env python3
"""Benchmark: `compress distill` over 256 samples against the sum of the two models' executor time
on the same samples (`compress run --format json`, timing_ms.total of each), in the same run.
Teacher ResNet-18, student MobileNetV2 (both `compress build-reference`, 1000 classes), seeded
random 1x3x224x224 inputs. Target (issue): distill's whole process at most 1.2x that sum.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import BIN, require_bin  # noqa: E402

N = 256


def main():
    require_bin()
    with tempfile.TemporaryDirectory() as d:
        t, s = os.path.join(d, "resnet18.onnx"), os.path.join(d, "mobilenet_v2.onnx")
        subprocess.run([BIN, "build-reference", "resnet18", "-o", t], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([BIN, "build-reference", "mobilenet_v2", "-o", s], check=True, stdout=subprocess.DEVNULL)
        data = os.path.join(d, "data")
        os.mkdir(data)
        rng = np.random.default_rng(0)
        for k in range(N):
            np.save(os.path.join(data, f"s{k:03d}.npy"), rng.uniform(-2, 2, (1, 3, 224, 224)).astype(np.float32))
        runs = {}
        for name, m in (("teacher", t), ("student", s)):
            out = subprocess.run([BIN, "run", m, "--data", data, "--format", "json", "--quiet"], check=True, capture_output=True, text=True).stdout
            runs[name] = json.loads(out)["timing_ms"]["total"] / 1e3
        start = time.perf_counter()
        subprocess.run([BIN, "distill", "--teacher", t, "--student", s, "--data", data, "--format", "json", "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        total = runs["teacher"] + runs["student"]
        print(f"{N} samples: teacher executor {runs['teacher']:.2f} s + student {runs['student']:.2f} s = {total:.2f} s; "
              f"compress distill whole process {wall:.2f} s = {wall / total:.2f}x (target <= 1.2x: {'met' if wall / total <= 1.2 else 'NOT met'})")


if __name__ == "__main__":
    main()
