#!/usr/bin/env python3
"""Held-out accuracy of `compress prune` repair on the digits fixture (the table in Docs/prune.md).

The 360 digits test samples are split in two halves: compress calibrates on the first 180
(`--calib-samples 180`: it reads the folder in name order), and top-1 accuracy is computed here
with ONNX Runtime on the other 180, labels from Fixtures/digits/labels.txt. Every method, ratio
0.3, for the BN-kept and the BN-folded export: plain, --calib, --calib --reconstruct, and the
refit alone (--reconstruct --calib-rounds 0).

Then on digits_cnn_deep.onnx (four conv groups): sensitivity on the first half (l1, --max-drop
0.02) emits per-group ratios; at each --target-macs budget the guided model (--ratios FILE,
scaled by one factor) and the uniform one (one searched ratio) are scored on the second half,
plain and with --calib --reconstruct.

Usage: COMPRESS_BIN=.build/debug/compress .venv/bin/python Tests/Bench/prune_accuracy.py [RATIO]
"""
import json
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


def guided_vs_uniform():
    labels = {l.split()[0]: int(l.split()[1]) for l in (FIX / "digits" / "labels.txt").read_text().splitlines()}
    files = sorted((FIX / "digits").glob("*.npy"))
    held = files[CALIB:]
    model = FIX / "digits_cnn_deep.onnx"
    print(f"\ndigits_cnn_deep.onnx (original {100 * accuracy(model, held, labels):.1f} %), l1, top-1 on the held-out {len(held)}:")
    print("| --target-macs | uniform: MACs kept, plain, repaired | guided: MACs kept, plain, repaired |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        calib = Path(tmp) / "calib"
        calib.mkdir()
        for f in files[:CALIB]:
            (calib / f.name).write_bytes(f.read_bytes())
        (calib / "labels.txt").write_text("".join(f"{f.name} {labels[f.name]}\n" for f in files[:CALIB]))
        ratios = Path(tmp) / "ratios.txt"
        subprocess.run([BIN, "prune", model, "--method", "l1", "--sensitivity", "--data", calib, "--max-samples", str(CALIB),
                        "--emit-ratios", ratios, "--max-drop", "0.02", "--quiet"], check=True, capture_output=True)
        for target in ("0.7", "0.5", "0.4", "0.3"):
            cells = []
            for extra in ([], ["--ratios", ratios]):
                row = []
                for repair in ([], ["--calib", calib, "--reconstruct"]):
                    out = Path(tmp) / "p.onnx"
                    r = subprocess.run([BIN, "prune", model, "-o", out, "--method", "l1", "--target-macs", target, "--quiet",
                                        "--format", "json", *extra, *repair], check=True, capture_output=True, text=True)
                    t = json.loads(r.stdout)["totals"]
                    row.append((t["macs_after"] / t["macs_before"], accuracy(out, held, labels)))
                cells.append(f"{100 * row[0][0]:.1f} %, {100 * row[0][1]:.1f} %, {100 * row[1][1]:.1f} %")
            print(f"| {target} | " + " | ".join(cells) + " |")
        print("emitted: " + ", ".join(l for l in ratios.read_text().splitlines() if not l.startswith("#")))


if __name__ == "__main__":
    main()
    guided_vs_uniform()
