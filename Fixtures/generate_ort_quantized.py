"""Models written by ONNX Runtime's own quantizers, for the com.microsoft quantized operators.

Writes (deterministic: fixed inputs, MinMax calibration, no randomness after the seeded tiny models):
- digits_cnn_qoperator.onnx  quantize_static(digits_cnn.onnx, QuantFormat.QOperator, uint8 activations,
                             int8 per-tensor weights, MinMax calibration on the first 32 digits samples)
- digits_cnn_dynamic.onnx    quantize_dynamic(digits_cnn.onnx) (uint8 weights)
- tiny_mlp_lstm_dynamic.onnx quantize_dynamic of a small seeded MatMul + LSTM model (the CNN has no
                             MatMul/LSTM, so DynamicQuantizeMatMul / DynamicQuantizeLSTM appear only here);
                             input `x` float32 [5, 2, 8] (seq, batch, features), outputs `y` [5, 2, 6]
                             and `h` [1, 2, 6].
- tiny_mlp_lstm.onnx         the float model it was quantized from.
- digits_cnn_dynamic_ort.onnx, tiny_mlp_lstm_dynamic_ort.onnx
                             the two dynamic models as ONNX Runtime's CPU session writes them after its
                             extended graph optimizations (`optimized_model_filepath`): its fusions turn
                             DynamicQuantizeLinear + MatMulInteger + Cast + Mul (+ Add) into
                             com.microsoft DynamicQuantizeMatMul, the form ORT itself runs.

Run from the repository root (generate.py calls it): python Fixtures/generate_ort_quantized.py
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
CALIBRATION_SAMPLES = 32


class DigitsReader:
    """Calibration data: the first 32 digits samples (sorted file names)."""

    def __init__(self, folder: Path, count: int = CALIBRATION_SAMPLES):
        files = sorted(p for p in folder.iterdir() if p.suffix == ".npy")[:count]
        self.items = iter([{"input": np.load(p).astype(np.float32)} for p in files])

    def get_next(self):
        return next(self.items, None)

    def rewind(self):  # not needed by MinMax, kept for the interface
        pass


def tiny_mlp_lstm(seed: int = 7) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    seq, batch, feat, hid, hidden = 5, 2, 8, 12, 6
    w1 = (rng.standard_normal((feat, hid)) * 0.4).astype(np.float32)
    b1 = (rng.standard_normal(hid) * 0.1).astype(np.float32)
    W = (rng.standard_normal((1, 4 * hidden, hid)) * 0.3).astype(np.float32)
    R = (rng.standard_normal((1, 4 * hidden, hidden)) * 0.3).astype(np.float32)
    B = (rng.standard_normal((1, 8 * hidden)) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["mm"], name="fc/matmul"),
        helper.make_node("Add", ["mm", "b1"], ["fc"], name="fc/add"),
        helper.make_node("Relu", ["fc"], ["act"], name="fc/relu"),
        helper.make_node("LSTM", ["act", "W", "R", "B"], ["y4", "h"], name="lstm", hidden_size=hidden),
        helper.make_node("Squeeze", ["y4", "axes"], ["y"], name="squeeze"),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w1, "w1"), (b1, "b1"), (W, "W"), (R, "R"), (B, "B"), (np.array([1], np.int64), "axes")]]
    graph = helper.make_graph(nodes, "tiny_mlp_lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, feat])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, batch, hidden]),
                               helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, batch, hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="compress-fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def ort_optimized(src: Path, dst: Path) -> None:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.intra_op_num_threads = 1
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def op_histogram(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        key = (n.domain + "::" if n.domain else "") + n.op_type
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def main(out: Path = HERE) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    src = out / "digits_cnn.onnx"
    quantize_static(str(src), str(out / "digits_cnn_qoperator.onnx"), DigitsReader(out / "digits"),
                    quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    quantize_dynamic(str(src), str(out / "digits_cnn_dynamic.onnx"), weight_type=QuantType.QUInt8)
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(tiny_mlp_lstm(), str(out / "tiny_mlp_lstm.onnx"))
        quantize_dynamic(str(out / "tiny_mlp_lstm.onnx"), str(out / "tiny_mlp_lstm_dynamic.onnx"), weight_type=QuantType.QInt8)
    for name in ["digits_cnn_dynamic", "tiny_mlp_lstm_dynamic"]:
        ort_optimized(out / f"{name}.onnx", out / f"{name}_ort.onnx")
    for name in ["digits_cnn_qoperator.onnx", "digits_cnn_dynamic.onnx", "tiny_mlp_lstm_dynamic.onnx",
                 "digits_cnn_dynamic_ort.onnx", "tiny_mlp_lstm_dynamic_ort.onnx"]:
        print(name, op_histogram(out / name))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
