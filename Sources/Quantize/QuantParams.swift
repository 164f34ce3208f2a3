import Foundation
import TensorCore

/// The integer type and range a tensor is quantized to.
public struct QuantRange: Equatable, Sendable {
    public var dtype: DType
    public var qmin: Int
    public var qmax: Int

    /// ONNX Runtime's ranges (`get_qmin_qmax_for_qType`): int8 is [−128, 127], or [−127, 127]
    /// when symmetric (so +x and −x quantize alike and the zero point is 0); uint8 is [0, 255].
    public static func of(_ dtype: DType, symmetric: Bool) -> QuantRange {
        switch dtype {
        case .uint8: return QuantRange(dtype: .uint8, qmin: 0, qmax: 255)
        default: return symmetric ? QuantRange(dtype: .int8, qmin: -127, qmax: 127) : QuantRange(dtype: .int8, qmin: -128, qmax: 127)
        }
    }
}

/// A scale and zero point: `x ≈ (q − zeroPoint)·scale`.
public struct QuantParams: Equatable, Sendable {
    public var scale: Float
    public var zeroPoint: Int

    /// Scale and zero point for the real range [rmin, rmax], computed exactly as ONNX Runtime's
    /// `compute_scale_zp` does, so a model calibrated on the same data gets the same numbers:
    /// the range is widened to include 0; symmetric makes it [−absmax, absmax]; the scale is
    /// (rmax − rmin)/(qmax − qmin) in Double, stored as Float (1 when below Float's smallest
    /// normal); the zero point is round-half-even((qmin + qmax)/2) when symmetric, else
    /// round-half-even(qmin − rmin/scale) with the Double scale.
    public init(rmin r0: Float, rmax r1: Float, range: QuantRange, symmetric: Bool) {
        var rmin = min(r0, 0), rmax = max(r1, 0)
        if symmetric {
            let absmax = max(abs(rmin), abs(rmax))
            rmin = -absmax
            rmax = absmax
        }
        let scale = (Double(rmax) - Double(rmin)) / (Double(range.qmax) - Double(range.qmin))
        if scale < Double(Float.leastNormalMagnitude) {
            self.scale = 1
            zeroPoint = 0
            return
        }
        if symmetric {
            zeroPoint = Int((Double(range.qmin + range.qmax) / 2).rounded(.toNearestOrEven))
        } else {
            zeroPoint = Int((Double(range.qmin) - Double(rmin) / scale).rounded(.toNearestOrEven))
        }
        self.scale = Float(scale)
    }

    public init(scale: Float, zeroPoint: Int) { self.scale = scale; self.zeroPoint = zeroPoint }
}

/// Quantizing weights, as ONNX Runtime's `quantize_nparray`: q = clip(round-half-even(w / scale)
/// + zero point, qmin, qmax), the division in Float.
public enum WeightQuantizer {
    /// Per-output-channel symmetric (or per-tensor) quantization of `w` along `axis`: the
    /// integer tensor and one parameter set per channel (one in all when `perChannel` is false).
    public static func quantize(_ w: Tensor, axis: Int, perChannel: Bool, range: QuantRange, symmetric: Bool) -> (Tensor, [QuantParams]) {
        let v = w.converted(to: .float32).scalars(as: Float.self)
        let outer = w.shape[..<axis].reduce(1, *), n = w.shape[axis], inner = w.shape[(axis + 1)...].reduce(1, *)
        var params: [QuantParams] = []
        if perChannel {
            for c in 0..<n {
                var lo = Float.infinity, hi = -Float.infinity
                for o in 0..<outer { for i in 0..<inner { let x = v[(o * n + c) * inner + i]; lo = min(lo, x); hi = max(hi, x) } }
                params.append(QuantParams(rmin: lo, rmax: hi, range: range, symmetric: symmetric))
            }
        } else {
            params = [QuantParams(rmin: v.min() ?? 0, rmax: v.max() ?? 0, range: range, symmetric: symmetric)]
        }
        var q = [Int32](repeating: 0, count: v.count)
        for o in 0..<outer {
            for c in 0..<n {
                let p = params[perChannel ? c : 0]
                for i in 0..<inner {
                    let k = (o * n + c) * inner + i
                    let r = (v[k] / p.scale).rounded(.toNearestOrEven)
                    q[k] = Int32(min(max(Double(r) + Double(p.zeroPoint), Double(range.qmin)), Double(range.qmax)))
                }
            }
        }
        let t = range.dtype == .uint8 ? Tensor(shape: w.shape, scalars: q.map { UInt8($0) }) : Tensor(shape: w.shape, scalars: q.map { Int8($0) })
        return (t, params)
    }

    /// Bias as int32 with scale = input scale × weight scale (the product in Float; one scale
    /// per channel, or one in all for per-tensor weights), zero point 0, as ONNX Runtime's
    /// `quantize_bias_static`: q = clip(round-half-even(b / scale) in Double, int32 range).
    public static func quantizeBias(_ b: Tensor, inputScale: Float, weightScales: [Float]) -> (Tensor, [Float]) {
        let v = b.converted(to: .float32).scalars(as: Float.self)
        let scales = weightScales.map { inputScale * $0 }
        let q = v.indices.map { i -> Int32 in
            let r = (Double(v[i]) / Double(scales[scales.count == 1 ? 0 : i])).rounded(.toNearestOrEven)
            return Int32(min(max(r, Double(Int32.min)), Double(Int32.max)))
        }
        return (Tensor(shape: b.shape, scalars: q), scales)
    }
}
