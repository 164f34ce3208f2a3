import Foundation
import ModelIR
import Runtime
import TensorCore

/// Per-tensor quantization noise measured inside the quantized model: each QuantizeLinear's input
/// x (the activation as the quantized model computes it) against its quantize-dequantize x̂ with
/// the model's scale and zero point, summed over the samples. This is ONNX Runtime's
/// `qdq_loss_debug` "qdq_err" (pre-QDQ vs post-QDQ): SQNR = 10·log10(Σx² / Σ(x − x̂)²).
/// QuantizeLinear's semantics: x/scale in Float, round half to even, add the zero point, saturate;
/// dequantize (q − z)·scale. NaN values are left out.
public struct QDQNoise: Sendable {
    public private(set) var signal: [String: Double] = [:], noise: [String: Double] = [:]
    public init() {}

    public mutating func add(_ name: String, _ t: Tensor, scale: Float, zeroPoint: Int, range: QuantRange) {
        guard t.dtype.isFloatingPoint else { return }
        let f = t.dtype == .float32 ? t : t.converted(to: .float32)
        let (s, n) = f.withUnsafeBufferPointer(as: Float.self) { Self.noise($0, scale: scale, zeroPoint: zeroPoint, range: range) }
        signal[name, default: 0] += s
        noise[name, default: 0] += n
    }

    /// Σx² and Σ(x − x̂)² of one buffer, eight lanes at a time. Clamping x/scale to
    /// [qmin − z, qmax − z] before rounding equals rounding then saturating (the bounds are
    /// integers); rounding half to even is (t + 1.5·2²³) − 1.5·2²³, exact for |t| < 2²², which
    /// the clamp ensures.
    static func noise(_ v: UnsafeBufferPointer<Float>, scale: Float, zeroPoint: Int, range: QuantRange) -> (Double, Double) {
        let z = Float(zeroPoint)
        let lo = SIMD8<Float>(repeating: Float(range.qmin) - z), hi = SIMD8<Float>(repeating: Float(range.qmax) - z)
        let magic = SIMD8<Float>(repeating: 12_582_912), s8 = SIMD8<Float>(repeating: scale)
        var s = 0.0, n = 0.0
        let count = v.count
        guard let base = v.baseAddress else { return (0, 0) }
        let raw = UnsafeRawPointer(base)
        var i = 0
        while i + 8 <= count {
            let end = min(i + 512, count - count % 8)
            var ps = SIMD8<Float>(), pn = SIMD8<Float>()
            while i < end {
                var x = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                x.replace(with: 0, where: .!(x .== x))
                var t = x / s8
                t.replace(with: lo, where: t .< lo)
                t.replace(with: hi, where: t .> hi)
                let r = (t + magic) - magic
                let d = x - r * s8
                ps += x * x
                pn += d * d
                i += 8
            }
            s += Double(ps.sum()); n += Double(pn.sum())
        }
        while i < count {
            let x = v[i]
            i += 1
            guard !x.isNaN else { continue }
            let t = min(max(x / scale, Float(range.qmin) - z), Float(range.qmax) - z)
            let d = x - t.rounded(.toNearestOrEven) * scale
            s += Double(x * x); n += Double(d * d)
        }
        return (s, n)
    }

    /// nil when there is no noise (or the tensor was never seen).
    public func sqnr(_ name: String) -> Double? {
        guard let n = noise[name], n > 0, let s = signal[name] else { return nil }
        return 10 * log10(max(s, .leastNormalMagnitude) / n)
    }
}

/// End-to-end quality of a quantized model against the float one, over samples: output SQNR
/// 10·log10(Σ float² / Σ (float − quantized)²) over every float output element; cosine
/// similarity per sample (all float outputs flattened together), averaged over samples; top-1
/// agreement of the first output when it holds class scores; top-1 accuracy of both models when
/// the samples have labels.
public struct OutputQuality: Sendable {
    public private(set) var signal = 0.0, noise = 0.0, cosineSum = 0.0, samples = 0
    public private(set) var same = 0, rows = 0, labelled = 0, floatCorrect = 0, quantCorrect = 0
    private var classifier = true
    public init() {}

    public mutating func add(reference: [Tensor], candidate: [Tensor], label: Int?) {
        var dot = 0.0, aa = 0.0, bb = 0.0
        for (x, y) in zip(reference, candidate) where x.dtype.isFloatingPoint && x.shape == y.shape {
            let u = x.converted(to: .float64).scalars(as: Double.self), v = y.converted(to: .float64).scalars(as: Double.self)
            for (p, q) in zip(u, v) {
                signal += p * p; noise += (p - q) * (p - q)
                dot += p * q; aa += p * p; bb += q * q
            }
        }
        samples += 1
        cosineSum += aa > 0 && bb > 0 ? dot / (aa.squareRoot() * bb.squareRoot()) : (aa == bb ? 1 : 0)
        if classifier, let a = reference.first.flatMap(ClassScores.argmax), let b = candidate.first.flatMap(ClassScores.argmax), a.count == b.count {
            same += zip(a, b).filter { $0 == $1 }.count
            rows += a.count
            if let label {
                labelled += a.count
                floatCorrect += a.filter { $0 == label }.count
                quantCorrect += b.filter { $0 == label }.count
            }
        } else {
            classifier = false
        }
    }

    /// nil when the outputs are identical (infinite SQNR).
    public var sqnrDB: Double? { noise > 0 ? 10 * log10(max(signal, .leastNormalMagnitude) / noise) : nil }
    public var cosine: Double? { samples > 0 ? cosineSum / Double(samples) : nil }
    public var agreement: Double? { classifier && rows > 0 ? Double(same) / Double(rows) : nil }
    public var floatAccuracy: Double? { classifier && labelled > 0 ? Double(floatCorrect) / Double(labelled) : nil }
    public var quantizedAccuracy: Double? { classifier && labelled > 0 ? Double(quantCorrect) / Double(labelled) : nil }
}

/// One evaluation of a quantized model on samples against the float model's outputs.
public struct QualityResult: Sendable {
    public var output = OutputQuality()
    public var tensors = QDQNoise()
    public init() {}
}

/// Runs the quantized model (QDQ simulated in float by compress's executor, constant
/// DequantizeLinear folded) over samples, measuring each activation's QDQ noise in it and its
/// outputs against the float reference outputs.
public struct QualityPass {
    public let executor: Executor
    let params: [String: QuantParams]
    let range: QuantRange
    let outputs: [String]

    /// `activations`: name → the scale and zero point the quantized model uses for it.
    public init(quantized q: Model, activations: [String: QuantParams], range: QuantRange) throws {
        let folded = Quantizer.withConstantDequantizeFolded(q)
        // Only float values the quantized model computes (a QOperator model keeps many of the
        // activations in integers inside its QLinear operators: no QDQ noise to measure there).
        var present = Set(folded.graph.inputs.map(\.name))
        for n in folded.graph.nodes where n.opType == "QuantizeLinear" && !n.inputs.isEmpty { present.insert(n.inputs[0]) }
        let observed = activations.filter { present.contains($0.key) }
        executor = try Quantizer.observing(folded, names: Array(observed.keys))
        params = observed
        self.range = range
        outputs = q.graph.outputs.map(\.name)
    }

    /// One sample: `reference` are the float model's outputs in graph-output order.
    public func add(_ feeds: [String: Tensor], reference: [Tensor], label: Int?, into r: inout QualityResult, perTensor: Bool = true) throws {
        var noise = r.tensors
        let names = perTensor ? Set(params.keys) : []
        let out = try executor.run(feeds, hooks: ExecutionHooks(names: names) { name, t in
            if let p = params[name] { noise.add(name, t, scale: p.scale, zeroPoint: p.zeroPoint, range: range) }
        })
        r.tensors = noise
        r.output.add(reference: reference, candidate: outputs.map { out[$0]! }, label: label)
    }
}

/// The float side of the report: the deployed float model's outputs per sample, kept from the
/// calibration pass while they fit in a memory budget (so the report does not run the float
/// model again), else recomputed.
public struct ReferenceOutputs {
    public private(set) var kept: [[Tensor]] = []
    public private(set) var bytes = 0
    public private(set) var complete = true
    public let budget: Int
    public init(budget: Int = 256 << 20) { self.budget = budget }

    public mutating func keep(_ outputs: [Tensor]) {
        guard complete else { return }
        let b = outputs.reduce(0) { $0 + $1.count * 4 }
        if bytes + b > budget { complete = false; kept = []; return }
        bytes += b
        kept.append(outputs)
    }
}
