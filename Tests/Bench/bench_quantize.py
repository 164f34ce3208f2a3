#!/usr/bin/env python3
"""Benchmark: end-to-end `compress quantize` against ONNX Runtime's `quantize_static` on the same
model (MobileNetV2, torchvision layout, written by `compress build-reference`), the same 64
calibration samples (seeded random 1x3x224x224 .npy files) and the same method (minmax; entropy),
QDQ, per-channel. Whole-process wall time and peak RSS for both, in the same run. Target (issue):
compress at least 3x faster.

compress's time includes its quality pass (quantized vs float on the samples, per-tensor SQNR),
which quantize_static does not do.
"""
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import BIN, measure, require_bin  # noqa: E402

ORT_SCRIPT = r"""
import glob, sys, numpy as np
from onnxruntime.quantization import quantize_static, QuantFormat, QuantType, CalibrationMethod, CalibrationDataReader
model, folder, out, method = sys.argv[1:5]
files = sorted(glob.glob(folder + "/*.npy"))
class R(CalibrationDataReader):
    def __init__(self): self.it = iter(files)
    def get_next(self):
        f = next(self.it, None)
        return None if f is None else {"input": np.load(f)}
extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
if method == "entropy":
    extra.update({"CalibNumBins": 2048, "CalibNumQuantizedBins": 128})
quantize_static(model, out, R(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "Gemm", "MatMul"],
                calibrate_method=CalibrationMethod.MinMax if method == "minmax" else CalibrationMethod.Entropy, extra_options=extra)
"""

ROUNDS = 2


def main():
    require_bin()
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "mobilenet_v2.onnx")
        subprocess.run([BIN, "build-reference", "mobilenet_v2", "-o", model], check=True, stdout=subprocess.DEVNULL)
        calib = os.path.join(d, "calib")
        os.mkdir(calib)
        rng = np.random.default_rng(0)
        for k in range(64):
            np.save(os.path.join(calib, f"s{k:02d}.npy"), rng.uniform(-2, 2, (1, 3, 224, 224)).astype(np.float32))
        script = os.path.join(d, "ort_quantize.py")
        with open(script, "w") as f:
            f.write(ORT_SCRIPT)
        print(f"model: MobileNetV2 (build-reference), 64 samples 1x3x224x224; QDQ per-channel int8; best of {ROUNDS}")
        print(f"{'method':8s} {'compress s':>11s} {'RSS MiB':>8s} {'ORT s':>9s} {'RSS MiB':>8s} {'speed-up':>9s}")
        for method in ("minmax", "entropy"):
            ours = [measure([BIN, "quantize", model, "--calib", calib, "-o", os.path.join(d, "c.onnx"), "--method", method, "--force"])
                    for _ in range(ROUNDS)]
            theirs = [measure([sys.executable, script, model, calib, os.path.join(d, "o.onnx"), method]) for _ in range(ROUNDS)]
            a, b = min(r[0] for r in ours), min(r[0] for r in theirs)
            ra, rb = max(r[1] for r in ours) / 2**20, max(r[1] for r in theirs) / 2**20
            print(f"{method:8s} {a:11.2f} {ra:8.0f} {b:9.2f} {rb:8.0f} {b / a:8.2f}x  ({'met' if b / a >= 3 else 'NOT met'}: target >= 3x)")


if __name__ == "__main__":
    main()
