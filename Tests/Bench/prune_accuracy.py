#!/usr/bin/env python3
"""Held-out accuracy of `compress prune` repair on the digits fixture (the table in Docs/prune.md).

The 360 digits test samples are split in two halves: compress calibrates on the first 180
(`--calib-samples 180`: it reads the folder in name order), and top-1 accuracy is computed here
with ONNX Runtime on the other 180, labels from Fixtures/digits/labels.txt. Every method, ratio
0.3, for the BN-kept and the BN-folded export: plain, --calib, --calib --reconstruct, and the
refit alone (--reconstruct --calib-rounds 0).

Usage: COMPRESS_BIN=.build/debug/compress .venv/bin/python Tests/Bench/prune_accuracy.py [RATIO]
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "Fixtures"
BIN = os.environ.get("COMPRESS_BIN", str(ROOT / ".build" / "debug" / "compress"))
CALIB = 180


def accuracy(path, files, labels):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.concatenate([np.load(f) for f in files])
    pred = np.array([s.run(None, {"input": x[i:i + 1]})[0].argmax() for i in range(len(x))])
    return float(np.mean(pred == np.array([labels[f.name] for f in files])))


def main():
    ratio = sys.argv[1] if len(sys.argv) > 1 else "0.3"
    labels = {l.split()[0]: int(l.split()[1]) for l in (FIX / "digits" / "labels.txt").read_text().splitlines()}
    held = sorted((FIX / "digits").glob("*.npy"))[CALIB:]
    variants = [("plain", []), ("--calib", ["--calib", FIX / "digits"]),
                ("--calib --reconstruct", ["--calib", FIX / "digits", "--reconstruct"]),
                ("--reconstruct alone", ["--calib", FIX / "digits", "--reconstruct", "--calib-rounds", "0"])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, tag in (("digits_cnn.onnx", "BN folded"), ("digits_cnn_bn.onnx", "BN kept")):
            base = accuracy(FIX / model, held, labels)
            for method in ("l1", "l2", "fpgm", "slim"):
                if method == "slim" and tag == "BN folded":
                    continue
                cells = []
                for _, extra in variants:
                    out = Path(tmp) / "p.onnx"
                    subprocess.run([BIN, "prune", FIX / model, "-o", out, "--method", method, "--ratio", ratio, "--quiet",
                                    "--calib-samples", str(CALIB), *extra], check=True, capture_output=True)
                    cells.append(accuracy(out, held, labels))
                rows.append((tag, method, base, cells))
    print(f"ratio {ratio}; calibrated on the first {CALIB} digits samples, top-1 by ONNX Runtime on the other {len(held)}")
    print("| export | method | original | " + " | ".join(v for v, _ in variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    for tag, method, base, cells in rows:
        print(f"| {tag} | {method} | {100 * base:.1f} % | " + " | ".join(f"{100 * c:.1f} %" for c in cells) + " |")


if __name__ == "__main__":
    main()
